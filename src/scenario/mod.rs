//! Scenario files: what to replay, through which models, and (later) under which canary policy.
//!
//! Loading happens in two layers. The TOML is read into the raw structs of [`raw`] (unknown keys
//! and wrong types are reported with their key paths and a "did you mean"), then [`validate`]
//! checks values and resolves paths into the domain types below. Every problem found in either
//! layer is reported at once.

pub mod fault;
mod load;
pub mod raw;
mod validate;

use std::path::PathBuf;

use crate::policy::Policy;
use crate::time::Micros;

pub use fault::{Effect, Fault};
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
    /// The canary policy to simulate (the default policy when the scenario gives none).
    pub policy: Policy,
    /// Incidents injected into a model's outputs.
    pub faults: Vec<Fault>,
    /// What a good policy should do with this replay (`tune` needs it).
    pub expect: Option<Expect>,
    /// Things the user should know that do not stop the run.
    pub warnings: Vec<String>,
    /// `[controller]` as written: the live controllers to emulate next to the policy, read and
    /// validated once when the run is prepared, with the files `--controller` adds.
    pub controller: Option<raw::RawController>,
    /// What `run` writes besides the reports.
    pub output: Output,
    /// How the grade decides "truly worse" (`[grading] cells`).
    pub grading: Grading,
}

/// How a grade decides which (gate, scope, window) cells the candidate truly breaks: each cell at a
/// one-sided 5%, or family-wise — Holm's step-down over every cell the grade looks at, so that
/// looking at gates × segments × weeks does not turn chance into findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grading {
    #[default]
    FamilyWise,
    PerCell,
}

/// What `run` writes besides the reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    pub scores: ScoresFile,
    /// The most rows [`ScoresFile::Sample`] writes in full.
    pub max_score_rows: u64,
}

impl Default for Output {
    fn default() -> Self {
        Self { scores: ScoresFile::Sample, max_score_rows: 2_000_000 }
    }
}

/// How much of `scores.parquet` (one row per request) is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoresFile {
    /// Every request, whatever the size (about 60 bytes a request).
    All,
    /// Every request up to `max_score_rows`, else a deterministic sample of about that many.
    Sample,
    /// No `scores.parquet`.
    None,
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
    /// The path as written, resolved against the scenario's folder (may be a glob), or an
    /// object-storage URL.
    pub path: crate::storage::Location,
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
    /// What to do with a request id seen before.
    pub duplicates: Duplicates,
    /// Sort files that are not sorted by time, instead of refusing them.
    pub sort: bool,
    /// Values judged one by one per segment column; the rest become [`OTHER`].
    pub max_segment_values: usize,
}

/// The segment value that stands for every value beyond `traffic.max_segment_values`.
pub const OTHER: &str = "(other)";

/// What to do with requests whose id was seen before (a log written twice, a retried export).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Duplicates {
    /// Refuse the log, naming how many and the first.
    #[default]
    Error,
    /// Replay the first request with each id (in time order) and drop the rest.
    KeepFirst,
}

impl Traffic {
    /// Whether a request time falls inside the replay window.
    pub fn in_window(&self, t: Micros) -> bool {
        self.start.is_none_or(|s| t >= s) && self.end.is_none_or(|e| t <= e)
    }
}

/// What should have happened to a scenario's candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// An incident: a good policy rolls it back.
    Rollback,
    /// A good release or an A/A replay: a good policy promotes it, and never rolls it back.
    Promote,
}

/// Which of the two models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
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
    pub class: Option<Class>,
    /// What turns the model's raw output into the score (logits into probabilities).
    pub transform: Transform,
    /// Feature columns in input order; `None` reads the model's `feature_names` metadata.
    pub features: Option<Vec<String>>,
}

/// Which class a model's score is: a column of an `[N, classes]` output, or a ZipMap key (an
/// integer, or a string for pipelines trained on string labels).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Class {
    Index(i64),
    Key(String),
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Class::Index(i) => write!(f, "{i}"),
            Class::Key(k) => write!(f, "\"{k}\""),
        }
    }
}

/// What turns a model's raw output into its score.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transform {
    /// The output is the score (probabilities, or a regressor's prediction).
    #[default]
    None,
    /// The output is a logit: the score is 1 / (1 + e^−x) (a BCEWithLogits-trained head).
    Sigmoid,
    /// The output holds one logit per class: the score is the class's softmax probability.
    Softmax,
}

impl Transform {
    pub fn is_none(&self) -> bool {
        *self == Transform::None
    }
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

pub use crate::storage::display_name;

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn repo_file(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
    }

    #[test]
    fn the_template_parses_with_no_unknown_keys_and_no_warnings() {
        let scenario = parse_str(TEMPLATE, &repo_file("template.toml")).unwrap_or_else(|e| panic!("{e}"));
        assert!(scenario.warnings.is_empty(), "{:?}", scenario.warnings);
        assert_eq!(scenario.traffic.segments, ["origin", "carrier"]);
        assert_eq!(scenario.scoring, Scoring::default());
    }

    #[test]
    fn relative_paths_resolve_against_the_scenario_folder() {
        let scenario = load(&repo_file("scenarios/flights-2013.toml")).unwrap();
        assert!(scenario.traffic.path.local().unwrap().ends_with("scenarios/../data/flights/traffic.parquet"));
        assert!(scenario.stable.path.is_file());
        assert_eq!(scenario.traffic.start, Some(crate::time::parse_timestamp("2013-09-01").unwrap()));
    }

    #[test]
    fn shared_features_apply_unless_a_model_lists_its_own() {
        let text = TEMPLATE
            .replace("# [features]\n# columns = [\"sched_dep_min\", \"day_of_week\", \"distance\"]", "[features]\ncolumns = [\"a\", \"b\"]")
            .replace(
                "output = \"probabilities\"\nclass = 1\n# features",
                "output = \"probabilities\"\nclass = 1\nfeatures = [\"c\"]\n# features",
            );
        let scenario = parse_str(&text, &repo_file("template.toml")).unwrap();
        assert_eq!(scenario.stable.features.as_deref(), Some(&["c".to_string()][..]));
        assert_eq!(scenario.candidate.features.as_deref(), Some(&["a".to_string(), "b".to_string()][..]));
    }

    #[test]
    fn expect_names_the_two_outcomes() {
        let text = TEMPLATE.replace("# expect = \"rollback\"", "expect = \"maybe\"");
        let err = parse_str(&text, &repo_file("template.toml")).unwrap_err().to_string();
        assert!(
            err.contains("expect: \"maybe\" is not an expected outcome") && err.contains("\"rollback\"") && err.contains("\"promote\""),
            "{err}"
        );
        let scenario =
            parse_str(&TEMPLATE.replace("# expect = \"rollback\"", "expect = \"promote\""), &repo_file("template.toml")).unwrap();
        assert_eq!(scenario.expect, Some(Expect::Promote));
    }

    #[test]
    fn more_tuning_sizes_than_the_msprt_mixes_are_named() {
        let sizes: Vec<String> = (1..=17).map(|k| (k * 100).to_string()).collect();
        let text = TEMPLATE.replace("[decision]\nalpha = 0.05", &format!("[decision]\ntuning = [{}]\nalpha = 0.05", sizes.join(", ")));
        assert_ne!(text, TEMPLATE);
        let err = parse_str(&text, &repo_file("template.toml")).unwrap_err().to_string();
        assert!(err.contains("decision.tuning") && err.contains("lists 17 sample sizes; at most 16"), "{err}");
    }

    #[test]
    fn cross_field_problems_are_reported_together() {
        let text = TEMPLATE
            .replace("start = \"2013-09-01T00:00:00Z\"", "start = \"2014-01-01T00:00:00Z\"")
            .replace("label_time = \"label_ts\"", "label_time = \"request_ts\"");
        let err = parse_str(&text, &repo_file("template.toml")).unwrap_err().to_string();
        assert!(err.contains("traffic.label_time: is the request time column"), "{err}");
        assert!(err.contains("traffic.start: 2014-01-01T00:00:00Z is after traffic.end"), "{err}");
    }
}
