//! The canary policy: the ramp, who may get the candidate, what each check tests and how the
//! verdicts become promote / hold / roll back. It reads nothing above `stats`, `time` and `error`.
//!
//! Two layers as for the scenario: [`raw`] mirrors the TOML, [`Policy::from_raw`] validates every
//! value and cross-field rule at once, and [`Policy::to_raw`] writes the effective policy back with
//! every default spelled out (that is `policy.toml`). When a scenario gives no policy sections the
//! [`Policy::default_for`] policy applies.

pub mod choice;
mod metric;
pub mod raw;
mod validate;

use std::collections::BTreeMap;

use serde::Serialize;

pub use metric::{Metric, Statistic, Task};

use crate::error::Problem;
use crate::stats::group_sequential::Spending;
use crate::stats::msprt::MAX_COMPONENTS;
use crate::stats::multiple::Correction;
use crate::time::{format_duration, parse_duration, Micros};
use choice::{Choice, Kind, SpendingFunction, Test};
use raw::{RawCost, RawDecision, RawGate, RawRamp, RawSections, RawSegmentPolicy, RawStage};
pub(crate) use validate::Check;
use validate::{decision, gate, percent, ramp, segment_policy};

/// A validated policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    pub ramp: Ramp,
    pub segment_policies: Vec<SegmentPolicy>,
    pub gates: Vec<Gate>,
    pub decision: Decision,
    /// True when the scenario gave no gates and the default ones apply.
    pub default_gates: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ramp {
    pub stages: Vec<Stage>,
    pub check_every: Micros,
    pub salt: String,
    pub max_stage_time: Micros,
    /// Fraction kept on stable after the last stage (monitoring), in [0, 1).
    pub holdback: f64,
    pub window: Window,
    /// While monitoring, tests restart every this long (tumbling windows), each at α.
    pub monitor_window: Micros,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stage {
    /// Fraction of eligible traffic on the candidate, in (0, 1].
    pub weight: f64,
    pub bake: Micros,
    pub max_time: Micros,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Window {
    /// Sequential tests run over the whole rollout: each stage's estimate is combined with the
    /// earlier stages' by inverse-variance weights (never pooling rows across weights), so
    /// evidence carries over from stage to stage. Point gates read the current stage.
    Rollout,
    /// Everything since the stage began; each stage runs fresh tests at α / stages.
    Stage,
    /// The last `Micros`, never before the stage began; fresh tests per stage at α / stages.
    Sliding(Micros),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SegmentPolicy {
    pub column: String,
    pub include: Option<Vec<String>>,
    pub exclude: Vec<String>,
    pub waves: Vec<Vec<String>>,
    /// Fractions.
    pub caps: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gate {
    pub metric: Metric,
    pub kind: GateKind,
    pub critical: bool,
    pub segments: Vec<String>,
    pub min_samples: u64,
    /// Required (on all traffic) for promotion from stages of at least this weight (fraction);
    /// `None`: never required, the gate can only fail. Segment scopes can only fail.
    pub required_from: Option<f64>,
}

impl Gate {
    /// A short name: `log_loss non_inferiority`.
    pub fn name(&self) -> String {
        format!("{} {}", self.metric.name(), self.kind.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GateKind {
    Threshold { min: Option<f64>, max: Option<f64> },
    Ratio { min: Option<f64>, max: Option<f64> },
    NonInferiority { margin: f64 },
    Regression,
}

impl GateKind {
    /// The kind as a policy file writes it.
    pub fn form(&self) -> Kind {
        match self {
            GateKind::Threshold { .. } => Kind::Threshold,
            GateKind::Ratio { .. } => Kind::Ratio,
            GateKind::NonInferiority { .. } => Kind::NonInferiority,
            GateKind::Regression => Kind::Regression,
        }
    }

    pub fn name(&self) -> &'static str {
        use choice::Named as _;
        self.form().name()
    }

    /// Whether the gate runs a sequential test on the difference.
    pub fn is_statistical(&self) -> bool {
        matches!(self, GateKind::NonInferiority { .. } | GateKind::Regression)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sequential {
    Msprt,
    GroupSequential(Spending),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    Hold,
    Rollback,
    Promote,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cost {
    pub true_positive: f64,
    pub false_positive: f64,
    pub false_negative: f64,
    pub true_negative: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub alpha: f64,
    pub power: f64,
    pub correction: Correction,
    pub sequential: Sequential,
    /// Sample sizes (both arms together) at which the mSPRT's intervals are tightest; the test
    /// averages one mixture per size (GrowthBook's N).
    pub tuning: Vec<f64>,
    pub min_samples: u64,
    pub consecutive_failures: u32,
    pub total_failures: u32,
    pub on_timeout: OnTimeout,
    pub threshold: f64,
    pub cost: Cost,
}

/// The policy sections of a scenario, as written.
#[derive(Debug, Clone, Default)]
pub struct RawPolicy {
    pub ramp: Option<RawRamp>,
    pub segment_policy: Vec<RawSegmentPolicy>,
    pub gates: Vec<RawGate>,
    pub decision: Option<RawDecision>,
}

/// What the policy needs to know about the traffic to validate against it.
pub struct TrafficShape<'a> {
    pub segments: &'a [String],
    pub labelled: bool,
}

const DEFAULT_STAGES: [(f64, &str); 5] = [(1.0, "6h"), (5.0, "12h"), (25.0, "1d"), (50.0, "1d"), (100.0, "0s")];

impl Policy {
    /// The default policy: a 1 → 5 → 25 → 50 → 100% ramp checked hourly; on all traffic and on
    /// every segment value: error rate as a critical deterioration gate (the circuit breaker),
    /// mean latency failing only when significantly more than 50% worse, and — with labels — log
    /// loss non-inferior within 2%, required from the 25% stage on; mSPRT over the rollout at
    /// α = 0.05 with Holm across gates and segments. No latency quantile gate: per-request latency
    /// of small models is mostly scheduling noise, and quantiles of a few hundred samples swing
    /// past any ratio. No score-drift gate: two different models legitimately score differently
    /// (on the demo the arms' Jensen-Shannon distance ranges from 0.2 to 0.7 by day).
    pub fn default_gates(shape: &TrafficShape) -> Vec<RawGate> {
        let segments = Some(shape.segments.to_vec());
        let mut gates = vec![
            RawGate {
                metric: "error_rate".into(),
                kind: "regression".into(),
                critical: Some(true),
                segments: segments.clone(),
                ..Default::default()
            },
            RawGate {
                metric: "latency_mean".into(),
                kind: "non_inferiority".into(),
                margin: Some(0.5),
                required: Some(false),
                segments: segments.clone(),
                ..Default::default()
            },
        ];
        if shape.labelled {
            gates.push(RawGate {
                metric: "log_loss".into(),
                kind: "non_inferiority".into(),
                margin: Some(0.02),
                segments,
                ..Default::default()
            });
        }
        gates
    }

    /// Fits the policy to the task the data turned out to be: the default policy judges a
    /// regression by MAE instead of log loss (non-inferior within 2%, required from 25% as well);
    /// a scenario's gate on a metric the task has no meaning for is a problem naming the gate.
    pub fn fit_task(&mut self, task: Task, why: &str, file: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.default_gates {
            for gate in self.gates.iter_mut().filter(|g| g.metric == Metric::LogLoss && task == Task::Regression) {
                gate.metric = Metric::Mae;
            }
            self.gates.retain(|g| g.metric.fits(task));
            return problems;
        }
        for (i, gate) in self.gates.iter().enumerate().filter(|(_, g)| !g.metric.fits(task)) {
            let fix = match task {
                Task::Regression => "gate on mae or rmse, which judge a numeric label",
                _ => "name a label column (traffic.label) or gate on error_rate, latency or score metrics",
            };
            problems.push(
                Problem::new(
                    format!("{file}: gates[{i}].metric = \"{}\"", gate.metric.name()),
                    format!("does not fit the task: {} ({why})", task.name()),
                )
                .fix(fix),
            );
        }
        problems
    }

    /// Validates the policy sections; problems are named by key path in `file`.
    pub fn from_raw(raw: &RawPolicy, shape: &TrafficShape, file: &str, problems: &mut Vec<Problem>) -> Policy {
        let mut c = Check { file, problems };
        let ramp = ramp(&mut c, raw.ramp.as_ref().cloned().unwrap_or_default());
        let decision = decision(&mut c, raw.decision.as_ref().cloned().unwrap_or_default());
        let segment_policies = raw.segment_policy.iter().enumerate().map(|(i, p)| segment_policy(&mut c, i, p, shape)).collect();
        let default_gates = raw.gates.is_empty();
        let raw_gates = if default_gates { Self::default_gates(shape) } else { raw.gates.clone() };
        let gates = raw_gates.iter().enumerate().filter_map(|(i, g)| gate(&mut c, i, g, shape, &decision)).collect();
        Policy { ramp, segment_policies, gates, decision, default_gates }
    }

    /// The effective policy as scenario sections, every default written out.
    pub fn to_raw(&self) -> RawSections {
        let ramp = RawRamp {
            stages: Some(
                self.ramp
                    .stages
                    .iter()
                    .map(|s| RawStage {
                        weight: percent(s.weight),
                        bake: Some(format_duration(s.bake)),
                        max: Some(format_duration(s.max_time)),
                    })
                    .collect(),
            ),
            check_every: Some(format_duration(self.ramp.check_every)),
            salt: Some(self.ramp.salt.clone()),
            max_stage_time: Some(format_duration(self.ramp.max_stage_time)),
            holdback: Some(percent(self.ramp.holdback)),
            window: Some(match self.ramp.window {
                Window::Rollout => "rollout".into(),
                Window::Stage => "stage".into(),
                Window::Sliding(_) => "sliding".into(),
            }),
            sliding: match self.ramp.window {
                Window::Sliding(d) => Some(format_duration(d)),
                _ => None,
            },
            monitor_window: Some(format_duration(self.ramp.monitor_window)),
        };
        let segments = self
            .segment_policies
            .iter()
            .map(|p| RawSegmentPolicy {
                column: p.column.clone(),
                include: p.include.clone(),
                exclude: p.exclude.clone(),
                waves: p.waves.clone(),
                caps: p.caps.iter().map(|(k, v)| (k.clone(), percent(*v))).collect(),
            })
            .collect();
        let gates = self
            .gates
            .iter()
            .map(|g| {
                let (margin, min, max) = match g.kind {
                    GateKind::Threshold { min, max } | GateKind::Ratio { min, max } => (None, min, max),
                    GateKind::NonInferiority { margin } => (Some(margin), None, None),
                    GateKind::Regression => (None, None, None),
                };
                RawGate {
                    metric: g.metric.name().into(),
                    kind: Choice::Known(g.kind.form()),
                    margin,
                    min,
                    max,
                    critical: Some(g.critical),
                    segments: Some(g.segments.clone()),
                    min_samples: Some(g.min_samples),
                    required: Some(g.required_from.is_some()),
                    from_weight: g.required_from.map(percent),
                }
            })
            .collect();
        let d = &self.decision;
        let decision = RawDecision {
            alpha: Some(d.alpha),
            power: Some(d.power),
            correction: Some(Choice::Known(d.correction)),
            sequential: Some(Choice::Known(match d.sequential {
                Sequential::Msprt => Test::Msprt,
                Sequential::GroupSequential(_) => Test::GroupSequential,
            })),
            spending: Some(Choice::Known(match d.sequential {
                Sequential::GroupSequential(Spending::Pocock) => SpendingFunction::Pocock,
                _ => SpendingFunction::OBrienFleming,
            })),
            tuning: Some(d.tuning.clone()),
            min_samples: Some(d.min_samples),
            consecutive_failures: Some(d.consecutive_failures),
            total_failures: Some(d.total_failures),
            on_timeout: Some(Choice::Known(d.on_timeout)),
            threshold: Some(d.threshold),
            cost: Some(RawCost {
                true_positive: Some(d.cost.true_positive),
                false_positive: Some(d.cost.false_positive),
                false_negative: Some(d.cost.false_negative),
                true_negative: Some(d.cost.true_negative),
            }),
        };
        RawSections { ramp, segment_policy: segments, gates, decision }
    }

    /// The distinct candidate fractions routing can use (stage weights, the full rollout after the
    /// last stage, the monitoring weight, and each of them capped).
    pub fn weights(&self) -> Vec<f64> {
        let mut w: Vec<f64> = self.ramp.stages.iter().map(|s| s.weight).collect();
        w.push(1.0);
        if self.ramp.holdback > 0.0 {
            w.push(1.0 - self.ramp.holdback);
        }
        for p in &self.segment_policies {
            let caps: Vec<f64> = p.caps.values().copied().collect();
            for cap in caps {
                let capped: Vec<f64> = w.iter().map(|x| x.min(cap)).collect();
                w.extend(capped);
            }
        }
        w.retain(|x| *x > 0.0);
        w.sort_by(f64::total_cmp);
        w.dedup();
        w
    }
}
