//! The scenario file as written: serde structs that mirror the TOML one to one.
//!
//! Nothing here is checked beyond types and known keys; [`super::validate`] turns these into the
//! validated domain types and reports every problem with its key path.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::fault::RawFault;
use crate::policy::raw::{RawDecision, RawGate, RawRamp, RawSegmentPolicy};
use crate::time::RawTime;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    /// Scenario name; names the default output directory `reports/<name>/`.
    pub name: String,
    /// Free text shown in reports.
    pub description: Option<String>,
    /// What a good policy should do with this replay, for `tune`: "rollback" (an incident) or
    /// "promote" (a good release, an A/A replay).
    pub expect: Option<String>,
    /// Where the logged requests are and which columns play which role.
    pub traffic: RawTraffic,
    /// The two models to compare.
    pub models: RawModels,
    /// Feature columns shared by both models (default: each model's `feature_names` metadata).
    pub features: Option<RawFeatures>,
    /// How scoring runs: batch size, threads, latency sampling.
    pub scoring: Option<RawScoring>,
    /// Ramp schedule: stages, check interval, routing salt (default: the default policy's).
    pub ramp: Option<RawRamp>,
    /// Which segments may get the candidate, in which order, up to which weight.
    #[serde(default)]
    pub segment_policy: Vec<RawSegmentPolicy>,
    /// What each check tests (default: the default policy's gates).
    #[serde(default)]
    pub gates: Vec<RawGate>,
    /// How verdicts become promote, hold or roll back.
    pub decision: Option<RawDecision>,
    /// Incidents injected into a model's outputs.
    #[serde(default)]
    pub faults: Vec<RawFault>,
    /// Live controller configurations (Argo Rollouts, Flagger, Kayenta) to emulate next to the policy.
    pub controller: Option<RawController>,
    /// What `run` writes besides the reports: `scores.parquet` in full, sampled or not at all.
    pub output: Option<RawOutput>,
    /// How the grade decides "truly worse".
    pub grading: Option<RawGrading>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGrading {
    /// "family_wise" (default: Holm over every (gate, scope, window) cell a grade looks at) or
    /// "per_cell" (each cell at a one-sided 5%).
    pub cells: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutput {
    /// "sample" (default: every request up to `max_score_rows`, then a deterministic sample of
    /// about that many), "all" (one row per request, whatever the size) or "none".
    pub scores: Option<String>,
    /// The most rows `scores = "sample"` writes in full (default 2,000,000).
    pub max_score_rows: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTraffic {
    /// A Parquet file, a directory of Parquet files, or a glob; relative to the scenario file.
    pub path: String,
    /// Request time column (a timestamp of any unit, or a date).
    pub time: String,
    /// Sticky-routing key column (strings or integers).
    pub entity: String,
    /// Request id column (strings or integers).
    pub id: String,
    /// Ground-truth label column (0/1 for classifiers, a number for regression).
    pub label: Option<String>,
    /// When each label became known; without it labels arrive at `time + label_delay`.
    pub label_time: Option<String>,
    /// Fixed label delay used when there is no `label_time` column, e.g. "2h" (default "0s").
    pub label_delay: Option<String>,
    /// Columns whose values are segments (origin, country, platform, ...).
    #[serde(default)]
    pub segments: Vec<String>,
    /// First request time to replay (inclusive), RFC 3339.
    pub start: Option<RawTime>,
    /// Last request time to replay (inclusive), RFC 3339; a date alone covers the whole day.
    pub end: Option<RawTime>,
    /// What to do with requests whose id was seen before: "error" (default) or "keep_first".
    pub duplicates: Option<String>,
    /// Sort files that are not sorted by time (an external sort in bounded memory) instead of
    /// refusing them (default false).
    pub sort: Option<bool>,
    /// Segment values judged one by one per segment column, the most frequent first; the rest are
    /// judged together as "(other)" (default 100).
    pub max_segment_values: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModels {
    /// The model serving today.
    pub stable: RawModel,
    /// The model being rolled out.
    pub candidate: RawModel,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// The ONNX file, relative to the scenario file.
    pub path: String,
    /// Output holding the score (default: `probabilities`, or the model's only float output).
    pub output: Option<String>,
    /// Column of a `[N, classes]` output, or key of a ZipMap output: a number, or a string for
    /// models trained on string labels (default 1 for two classes).
    pub class: Option<super::Class>,
    /// "sigmoid" when the output is a logit, "softmax" for one logit per class (default "none").
    pub transform: Option<String>,
    /// Feature columns of this model, in input order (overrides `[features] columns`).
    pub features: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFeatures {
    /// Feature columns in the order the models expect them.
    pub columns: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScoring {
    /// Rows per inference batch (default 4096).
    pub batch_rows: Option<i64>,
    /// Scoring workers, each with its own sessions (default: the number of cores).
    pub threads: Option<i64>,
    /// Share of requests whose single-row latency is measured, in [0, 1] (default 0.01).
    pub latency_sample: Option<f64>,
    /// Untimed single-row runs of each model before latency is measured (default 50).
    pub latency_warmup: Option<i64>,
}

/// `[controller]`: the live controllers to emulate next to the policy, validated when a run is
/// prepared (their files are read then, with any given by `--controller`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawController {
    /// Controller files, relative to the scenario: Argo Rollouts YAML (Rollout and
    /// AnalysisTemplates), Flagger YAML (Canary and MetricTemplates), Kayenta JSON (canary config,
    /// optionally an execution request with thresholds). May be empty when `--controller` names them.
    #[serde(default)]
    pub files: Vec<String>,
    /// A TOML file with `[metrics.<name>]` and `[kayenta]` tables, shared by several scenarios.
    pub mapping: Option<String>,
    #[serde(default)]
    pub metrics: BTreeMap<String, RawMapping>,
    pub kayenta: Option<RawKayenta>,
    /// Argo: when someone would resume an indefinite pause (`pause: {}`); default: never (held).
    pub resume_paused_after: Option<String>,
    /// Flagger A/B testing: the segment values that stand for the requests its `match` selects
    /// (a log has no headers), e.g. `{ carrier = ["UA"] }`.
    pub ab_segment: Option<BTreeMap<String, Vec<String>>>,
    /// How many of `files`, at its end, came from `--controller` (named so in messages).
    #[serde(skip)]
    pub from_flag: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMapping {
    pub metric: String,
    pub arm: Option<String>,
    pub scale: Option<f64>,
    pub offset: Option<f64>,
    pub window: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKayenta {
    pub weight: Option<f64>,
    pub interval: Option<String>,
    pub lifetime: Option<String>,
    pub begin_after: Option<String>,
    pub lookback: Option<String>,
    pub step: Option<String>,
    pub pass: Option<f64>,
    pub marginal: Option<f64>,
}

impl RawKayenta {
    /// These settings, with `file`'s where these leave one out.
    pub(crate) fn over(self, file: RawKayenta) -> RawKayenta {
        RawKayenta {
            weight: self.weight.or(file.weight),
            interval: self.interval.or(file.interval),
            lifetime: self.lifetime.or(file.lifetime),
            begin_after: self.begin_after.or(file.begin_after),
            lookback: self.lookback.or(file.lookback),
            step: self.step.or(file.step),
            pass: self.pass.or(file.pass),
            marginal: self.marginal.or(file.marginal),
        }
    }
}
