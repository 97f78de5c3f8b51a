//! Scenario files: what to replay, through which models, and (later) under which canary policy.
//!
//! Loading happens in two layers. The TOML is read into the raw structs of [`raw`] (unknown keys
//! and wrong types are reported with their key paths and a "did you mean"), then [`validate`]
//! checks values and resolves paths into the domain types below. Every problem found in either
//! layer is reported at once.

mod load;
pub mod raw;
mod validate;

use std::path::{Path, PathBuf};

use crate::time::Micros;

pub use load::{load, parse_str};

/// The commented scenario that `canary-replay init` prints.
pub const TEMPLATE: &str = include_str!("template.toml");

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: Option<String>,
    /// The scenario file, as given.
    pub file: PathBuf,
    pub traffic: Traffic,
    pub stable: ModelSpec,
    pub candidate: ModelSpec,
    pub scoring: Scoring,
    /// Things the user should know that do not stop the run.
    pub warnings: Vec<String>,
}

impl Scenario {
    /// The name of the scenario file, for messages.
    pub fn file_name(&self) -> String {
        display_name(&self.file)
    }

    pub fn models(&self) -> [&ModelSpec; 2] {
        [&self.stable, &self.candidate]
    }
}

/// Where the traffic is and which column plays which role.
#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    /// The path as written, resolved against the scenario's folder (may be a glob).
    pub path: PathBuf,
    pub time: String,
    pub entity: String,
    pub id: String,
    pub label: Option<String>,
    pub label_time: Option<String>,
    /// Used when there is no `label_time` column.
    pub label_delay: Micros,
    pub segments: Vec<String>,
    /// Inclusive window of request times.
    pub start: Option<Micros>,
    pub end: Option<Micros>,
}

impl Traffic {
    /// Whether a request time falls inside the replay window.
    pub fn in_window(&self, t: Micros) -> bool {
        self.start.is_none_or(|s| t >= s) && self.end.is_none_or(|e| t <= e)
    }
}

/// Which of the two models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Stable,
    Candidate,
}

impl Role {
    pub const BOTH: [Role; 2] = [Role::Stable, Role::Candidate];

    pub fn name(self) -> &'static str {
        match self {
            Role::Stable => "stable",
            Role::Candidate => "candidate",
        }
    }
}

/// One model of the comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub role: Role,
    pub path: PathBuf,
    /// Output to read the score from; `None` picks it from the model.
    pub output: Option<String>,
    /// Class column or ZipMap key; `None` means 1 for two classes.
    pub class: Option<i64>,
    /// Feature columns in input order; `None` reads the model's `feature_names` metadata.
    pub features: Option<Vec<String>>,
}

/// Scoring settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Scoring {
    pub batch_rows: usize,
    /// Workers; 0 means one per core.
    pub threads: usize,
    pub latency_sample: f64,
    pub latency_warmup: usize,
}

impl Default for Scoring {
    fn default() -> Self {
        Self { batch_rows: 4096, threads: 0, latency_sample: 0.01, latency_warmup: 50 }
    }
}

/// The last component of a path, for short messages; the whole path when it has none.
pub fn display_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}
