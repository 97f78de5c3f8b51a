//! The score cache: one self-describing Parquet part per traffic file.
//!
//! A part's name is a content hash of everything that decides its rows: the traffic file's bytes,
//! the window, the column roles, both models' bytes and output/feature mapping, the scoring
//! settings that change stored values, and the ONNX Runtime version. A changed input therefore
//! gets a new name and can never reuse a stale part. Parts are written under a temporary name and
//! renamed when complete, so a part that exists is whole. Each part carries its provenance as
//! Parquet key-value metadata (`canary_replay.part`), so parts scored by independent jobs can be
//! merged and checked later.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::Serialize;

use super::model::Model;
use crate::ingest::{timestamp_type, Layout, Rules};
use crate::scenario::Effect;
use crate::scenario::{Scenario, Scoring};

/// Bumped whenever the part format or scoring semantics change.
pub const FORMAT_VERSION: u32 = 2;

/// The metadata key holding a part's provenance (JSON).
pub const METADATA_KEY: &str = "canary_replay.part";

pub const STABLE_SCORE: &str = "stable_score";
pub const CANDIDATE_SCORE: &str = "candidate_score";
pub const STABLE_ERROR: &str = "stable_error";
pub const CANDIDATE_ERROR: &str = "candidate_error";
pub const STABLE_LATENCY: &str = "stable_latency_us";
pub const CANDIDATE_LATENCY: &str = "candidate_latency_us";
/// Scores with a `feature_missing` fault's feature sent as missing, where the fault applies.
pub const STABLE_MISSING: &str = "stable_missing_score";
pub const CANDIDATE_MISSING: &str = "candidate_missing_score";

/// Everything that decides a model's scores.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelKey {
    pub path: String,
    pub hash: String,
    pub output: String,
    pub class: Option<crate::scenario::Class>,
    /// Left out when none, so the keys of parts scored before transforms existed stay the same.
    #[serde(skip_serializing_if = "crate::scenario::Transform::is_none")]
    pub transform: crate::scenario::Transform,
    pub features: Vec<String>,
}

impl ModelKey {
    pub fn of(model: &Model) -> Self {
        Self {
            path: model.spec.path.display().to_string(),
            hash: model.hash.clone(),
            output: model.output.clone(),
            class: model.spec.class.clone(),
            transform: model.spec.transform,
            features: model.features.clone(),
        }
    }
}

/// A part's provenance: what was scored, with what.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PartInfo {
    pub format: u32,
    pub source: String,
    pub source_hash: String,
    /// What the survey's cleaning rules change ("(other)" segment values, dropped duplicates).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<String>,
    pub window: (Option<i64>, Option<i64>),
    pub layout: LayoutKey,
    pub stable: ModelKey,
    pub candidate: ModelKey,
    pub onnxruntime: String,
    pub latency_sample: f64,
    pub latency_warmup: usize,
    /// `feature_missing` faults scored into the part: (model, feature, start, end, segment).
    pub missing: Vec<MissingKey>,
}

/// (model, feature, start, end, segment) of a `feature_missing` fault.
pub type MissingKey = (String, String, Option<i64>, Option<i64>, Option<(String, String)>);

/// The column roles, as they decide the part's columns.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LayoutKey {
    pub time: String,
    pub id: String,
    pub entity: String,
    pub segments: Vec<String>,
    pub label: Option<String>,
    pub label_time: Option<String>,
    pub label_delay: i64,
}

impl PartInfo {
    /// The part of the files `sources` (path, content hash), read together and merged by time.
    fn new(
        scenario: &Scenario,
        layout: &Layout,
        sources: &[(String, String)],
        rules: &Rules,
        models: [&Model; 2],
        onnxruntime: &str,
    ) -> Self {
        let Scoring { latency_sample, latency_warmup, .. } = scenario.scoring;
        // One file keeps the key it always had; files merged by time are keyed by all their hashes.
        let source_hash = match sources {
            [(_, hash)] => hash.clone(),
            _ => blake3::hash(sources.iter().map(|(_, h)| h.as_str()).collect::<Vec<_>>().join(",").as_bytes()).to_hex().to_string(),
        };
        Self {
            format: FORMAT_VERSION,
            source: sources.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>().join(", "),
            source_hash,
            rules: rules.key(),
            window: (scenario.traffic.start, scenario.traffic.end),
            layout: LayoutKey {
                time: layout.time.clone(),
                id: layout.id.clone(),
                entity: layout.entity.clone(),
                segments: layout.segments.clone(),
                label: layout.label.clone(),
                label_time: layout.label_time.clone(),
                label_delay: layout.label_delay,
            },
            stable: ModelKey::of(models[0]),
            candidate: ModelKey::of(models[1]),
            onnxruntime: onnxruntime.to_string(),
            latency_sample,
            latency_warmup,
            missing: scenario
                .faults
                .iter()
                .filter_map(|f| match &f.effect {
                    Effect::FeatureMissing { feature } => {
                        Some((f.model.name().to_string(), feature.clone(), f.start, f.end, f.segment.clone()))
                    }
                    _ => None,
                })
                .collect(),
        }
    }

    /// The part of a group of traffic files (each identified by its content, see
    /// [`crate::storage::Place::content_hash`]).
    pub fn of_files(
        scenario: &Scenario,
        layout: &Layout,
        files: &[&crate::ingest::TrafficFile],
        rules: &Rules,
        models: [&Model; 2],
        onnxruntime: &str,
    ) -> crate::error::Result<Self> {
        let sources = files.iter().map(|f| Ok((f.path.text(), f.path.content_hash()?))).collect::<crate::error::Result<Vec<_>>>()?;
        Ok(Self::new(scenario, layout, &sources, rules, models, onnxruntime))
    }

    /// The content key (hex): everything above except where the files happen to live.
    pub fn key(&self) -> String {
        let mut keyed = self.clone();
        keyed.source.clear();
        keyed.stable.path.clear();
        keyed.candidate.path.clear();
        let json = serde_json::to_vec(&keyed).expect("part info serializes");
        blake3::hash(&json).to_hex()[..32].to_string()
    }
}

/// Where parts live: `<folder>/<key>.parquet` (by default `<cache root>/scores`). A cache in
/// object storage (`--cache-dir s3://bucket/prefix`) shares parts between machines: a part scored
/// here is uploaded as `<url>/<key>.parquet` once it is whole (an upload appears whole or not at
/// all), and a part found there is downloaded once into the local folder, which then mirrors the
/// parts this machine used (`<cache root>/shared/<hash of the URL>`).
#[derive(Debug, Clone)]
pub struct CacheDir {
    pub folder: PathBuf,
    pub shared: Option<String>,
}

impl CacheDir {
    /// Parts in a local folder only.
    pub fn local(folder: impl Into<PathBuf>) -> Self {
        CacheDir { folder: folder.into(), shared: None }
    }

    /// The cache `--cache-dir` names: a folder, a storage URL, or (none) the default folder.
    pub fn from_option(option: Option<&Path>) -> Self {
        let root = crate::runtime::cache_root(None);
        match option.map(|p| p.to_string_lossy().into_owned()) {
            Some(text) if crate::storage::is_url(&text) => {
                let url = text.trim_end_matches('/').to_string();
                // One mirror per store: the same URL on another endpoint is another cache.
                let store = format!("{url}\n{}", crate::storage::endpoint().unwrap_or_default());
                let mirror = root.join("shared").join(&blake3::hash(store.as_bytes()).to_hex()[..16]);
                CacheDir { folder: mirror, shared: Some(url) }
            }
            Some(text) => CacheDir::local(text),
            None => CacheDir::local(root.join("scores")),
        }
    }

    /// Where a part is (or goes) on this machine.
    pub fn part(&self, key: &str) -> PathBuf {
        self.folder.join(format!("{key}.parquet"))
    }

    /// Where a part is shared, for a cache in object storage.
    pub fn shared_part(&self, key: &str) -> Option<String> {
        self.shared.as_ref().map(|url| format!("{url}/{key}.parquet"))
    }

    /// Whether the part is in the cache. With a shared cache, whether it is in the store: fetched
    /// into the mirror when only the store has it, and shared again when only the mirror does (a
    /// part this machine scored for a store that has since lost it).
    pub fn find(&self, key: &str) -> crate::error::Result<bool> {
        let path = self.part(key);
        let Some(url) = self.shared_part(key) else { return Ok(path.is_file()) };
        match (crate::storage::exists(&url)?, path.is_file()) {
            (true, true) => Ok(true),
            (true, false) => {
                std::fs::create_dir_all(&self.folder).map_err(|e| crate::error::Error::io(&self.folder, e))?;
                crate::storage::download(&url, &path)?;
                Ok(true)
            }
            (false, true) => {
                crate::storage::upload(&path, &url)?;
                Ok(true)
            }
            (false, false) => Ok(false),
        }
    }

    /// Shares a part written here, for a cache in object storage.
    pub fn publish(&self, key: &str) -> crate::error::Result<()> {
        match self.shared_part(key) {
            Some(url) => crate::storage::upload(&self.part(key), &url),
            None => Ok(()),
        }
    }

    /// The folder, or the URL and its local mirror.
    pub fn describe(&self) -> String {
        match &self.shared {
            Some(url) => format!("{url} (mirrored in {})", self.folder.display()),
            None => self.folder.display().to_string(),
        }
    }
}

/// The name the label-time column gets in the cache.
pub fn label_time_column(layout: &Layout) -> String {
    layout.label_time.clone().unwrap_or_else(|| "label_time".to_string())
}

/// The columns of a part, in order.
pub fn part_schema(layout: &Layout) -> SchemaRef {
    let mut fields = vec![Field::new(&layout.id, DataType::Utf8, true), Field::new(&layout.time, timestamp_type(), false)];
    if layout.entity != layout.id {
        fields.push(Field::new(&layout.entity, DataType::Utf8, true));
    }
    fields.extend(layout.segments.iter().filter(|s| layout.stores_segment(s)).map(|s| Field::new(s, DataType::Utf8, true)));
    if let Some(label) = &layout.label {
        fields.push(Field::new(label, DataType::Float64, true));
        fields.push(Field::new(label_time_column(layout), timestamp_type(), true));
    }
    for name in [STABLE_SCORE, CANDIDATE_SCORE] {
        fields.push(Field::new(name, DataType::Float64, true));
    }
    for name in [STABLE_ERROR, CANDIDATE_ERROR] {
        fields.push(Field::new(name, DataType::Utf8, true));
    }
    for name in [STABLE_LATENCY, CANDIDATE_LATENCY, STABLE_MISSING, CANDIDATE_MISSING] {
        fields.push(Field::new(name, DataType::Float64, true));
    }
    Arc::new(Schema::new(fields))
}
