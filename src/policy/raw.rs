//! The canary policy as written in a scenario (or in `policy.toml`): serde structs that
//! mirror the TOML. [`super::Policy::from_raw`] validates them; [`super::Policy::to_raw`] writes
//! the effective policy back with every default filled in, so `policy.toml` is a drop-in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::choice::{Choice, Kind, SpendingFunction, Test};
use super::OnTimeout;
use crate::stats::multiple::Correction;

/// A policy's sections of a scenario: what `policy.toml` holds and `summary.json` records.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct RawSections {
    pub ramp: RawRamp,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segment_policy: Vec<RawSegmentPolicy>,
    pub gates: Vec<RawGate>,
    pub decision: RawDecision,
}

impl RawSections {
    /// As scenario sections under a comment naming them (`what`): `policy.toml`, and the tuned
    /// policy `tune` writes.
    pub fn to_toml(&self, what: &str) -> String {
        let body = toml::to_string(self).expect("the policy serializes");
        format!("# {what}, every default written out.\n# Paste these sections into a scenario to run the same policy again.\n\n{body}")
    }

    /// As `summary.json` records them: every key sorted, `segment_policy` always present.
    pub fn serialize_sorted<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Self { ramp, segment_policy, gates, decision } = self;
        serde_json::json!({ "ramp": ramp, "segment_policy": segment_policy, "gates": gates, "decision": decision }).serialize(serializer)
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawRamp {
    /// Stages in order: `{ weight = 5, bake = "12h", max = "3d" }`. Weights are percentages.
    pub stages: Option<Vec<RawStage>>,
    /// Time between checks, e.g. "1h".
    pub check_every: Option<String>,
    /// Salt of the routing hash; change it to route a different set of entities.
    pub salt: Option<String>,
    /// Longest a stage may stay inconclusive before `decision.on_timeout` applies (default "7d").
    pub max_stage_time: Option<String>,
    /// Percentage of traffic kept on the stable model after the last stage and monitored until the
    /// data ends (0 = promotion ends the run).
    pub holdback: Option<f64>,
    /// Data the sequential tests judge: "rollout" (every stage so far, combined per stage),
    /// "stage" (since the stage began) or "sliding".
    pub window: Option<String>,
    /// Length of the sliding window (never reaching back before the stage began).
    pub sliding: Option<String>,
    /// While monitoring the holdback, tests restart every this long (default "7d").
    pub monitor_window: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawStage {
    /// Percentage of eligible traffic on the candidate, in (0, 100].
    pub weight: f64,
    /// Minimum time in the stage before promotion.
    pub bake: Option<String>,
    /// Maximum time in the stage while inconclusive (default `ramp.max_stage_time`).
    pub max: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawSegmentPolicy {
    /// A segment column (one of `traffic.segments`).
    pub column: String,
    /// Only these values may get the candidate.
    pub include: Option<Vec<String>>,
    /// These values never get the candidate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Ordered rollout: the first wave's values ramp first, the next once the previous passed the
    /// last stage. Values in no wave form a final wave.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waves: Vec<Vec<String>>,
    /// Largest candidate percentage per value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub caps: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawGate {
    /// error_rate, latency_mean, latency_p50, latency_p95, latency_p99, score_mean, score_psi,
    /// score_js, score_wasserstein, accuracy, log_loss, brier, auc, ece, expected_cost, mae, rmse.
    pub metric: String,
    pub kind: Choice<Kind>,
    /// non_inferiority: the margin relative to the stable mean (0.02 = 2%).
    pub margin: Option<f64>,
    /// threshold: bounds on the candidate's value; ratio: bounds on candidate / stable.
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// A failure rolls back at once.
    pub critical: Option<bool>,
    /// Also judge each value of these segment columns.
    pub segments: Option<Vec<String>>,
    /// Observations per arm before a verdict (default `decision.min_samples`).
    pub min_samples: Option<u64>,
    /// Whether the gate must pass (on all traffic) for promotion; default true for
    /// non_inferiority gates, false for the others, which can only fail.
    pub required: Option<bool>,
    /// A required gate is required only from stages of at least this weight (default 25 for
    /// non_inferiority gates); below it the gate can only fail.
    pub from_weight: Option<f64>,
}

impl RawGate {
    /// The gate's name as checks name it: `log_loss non_inferiority`.
    pub fn name(&self) -> String {
        format!("{} {}", self.metric, self.kind)
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawDecision {
    /// Error rate of each deterioration decision and of the non-inferiority intervals.
    pub alpha: Option<f64>,
    /// Power the "how much more traffic" estimates aim for.
    pub power: Option<f64>,
    /// Multiple testing across gates and segments.
    pub correction: Option<Choice<Correction>>,
    /// Repeated-look test.
    pub sequential: Option<Choice<Test>>,
    /// Spending function for group_sequential.
    pub spending: Option<Choice<SpendingFunction>>,
    /// Sample sizes (both arms together) at which the always-valid intervals should be tightest
    /// (default [200, 2000, 20000, 200000]).
    pub tuning: Option<Vec<f64>>,
    /// Observations per arm before any verdict.
    pub min_samples: Option<u64>,
    /// Roll back after this many failing checks in a row (non-critical gates).
    pub consecutive_failures: Option<u32>,
    /// Roll back after this many failing checks in all.
    pub total_failures: Option<u32>,
    /// At a stage's maximum time while inconclusive.
    pub on_timeout: Option<Choice<OnTimeout>>,
    /// Decision threshold for accuracy and expected cost.
    pub threshold: Option<f64>,
    /// Cost matrix for expected_cost.
    pub cost: Option<RawCost>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawCost {
    pub true_positive: Option<f64>,
    pub false_positive: Option<f64>,
    pub false_negative: Option<f64>,
    pub true_negative: Option<f64>,
}
