//! The canary policy: the ramp, who may get the candidate, what each check tests and how the
//! verdicts become promote / hold / roll back. It reads nothing above `stats`, `time` and `error`.
//!
//! Two layers as for the scenario: [`raw`] mirrors the TOML, [`Policy::from_raw`] validates every
//! value and cross-field rule at once, and [`Policy::to_raw`] writes the effective policy back with
//! every default spelled out (that is `policy.toml`). When a scenario gives no policy sections the
//! [`Policy::default_for`] policy applies.

mod metric;
pub mod raw;

use std::collections::BTreeMap;

use serde::Serialize;

pub use metric::{Metric, Statistic, Task};

use crate::error::Problem;
use crate::stats::group_sequential::Spending;
use crate::stats::msprt::MAX_COMPONENTS;
use crate::stats::multiple::Correction;
use crate::time::{format_duration, parse_duration, Micros};
use raw::{RawCost, RawDecision, RawGate, RawRamp, RawSections, RawSegmentPolicy, RawStage};

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
    pub fn name(&self) -> &'static str {
        match self {
            GateKind::Threshold { .. } => "threshold",
            GateKind::Ratio { .. } => "ratio",
            GateKind::NonInferiority { .. } => "non_inferiority",
            GateKind::Regression => "regression",
        }
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
                    kind: g.kind.name().into(),
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
            correction: Some(correction_name(d.correction).into()),
            sequential: Some(match d.sequential {
                Sequential::Msprt => "msprt".into(),
                Sequential::GroupSequential(_) => "group_sequential".into(),
            }),
            spending: Some(match d.sequential {
                Sequential::GroupSequential(Spending::Pocock) => "pocock".into(),
                _ => "obrien_fleming".into(),
            }),
            tuning: Some(d.tuning.clone()),
            min_samples: Some(d.min_samples),
            consecutive_failures: Some(d.consecutive_failures),
            total_failures: Some(d.total_failures),
            on_timeout: Some(
                match d.on_timeout {
                    OnTimeout::Hold => "hold",
                    OnTimeout::Rollback => "rollback",
                    OnTimeout::Promote => "promote",
                }
                .into(),
            ),
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

fn percent(fraction: f64) -> f64 {
    (fraction * 100.0 * 1e9).round() / 1e9
}

fn correction_name(c: Correction) -> &'static str {
    match c {
        Correction::None => "none",
        Correction::Bonferroni => "bonferroni",
        Correction::Holm => "holm",
        Correction::BenjaminiHochberg => "benjamini_hochberg",
        Correction::BenjaminiYekutieli => "benjamini_yekutieli",
    }
}

/// Problems found while validating a file's sections, keyed by the file.
pub(crate) struct Check<'a> {
    pub(crate) file: &'a str,
    pub(crate) problems: &'a mut Vec<Problem>,
}

impl Check<'_> {
    pub(crate) fn problem(&mut self, key: &str, message: impl Into<String>, fix: Option<&str>) {
        let mut p = Problem::new(format!("{}: {key}", self.file), message);
        p.fix = fix.map(str::to_string);
        self.problems.push(p);
    }

    fn duration(&mut self, key: &str, value: Option<&str>, default: &str) -> Micros {
        let text = value.unwrap_or(default);
        match parse_duration(text) {
            Ok(d) if d >= 0 => d,
            Ok(_) => {
                self.problem(key, format!("= \"{text}\" cannot be negative"), None);
                0
            }
            Err(e) => {
                self.problem(key, e, None);
                parse_duration(default).expect("valid default")
            }
        }
    }

    fn share(&mut self, key: &str, value: Option<f64>, default: f64, (lo, hi): (f64, f64), what: &str) -> f64 {
        let v = value.unwrap_or(default);
        if !(v > lo && v < hi) {
            self.problem(&format!("{key} = {v}"), format!("{what} must be in ({lo}, {hi})"), None);
            return default;
        }
        v
    }

    fn choice<T: Copy>(&mut self, key: &str, value: Option<&str>, default: T, options: &[(&str, T)]) -> T {
        let Some(text) = value else { return default };
        match options.iter().find(|(name, _)| *name == text) {
            Some((_, v)) => *v,
            None => {
                let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
                let hint = crate::error::did_you_mean(text, names.iter().copied()).map(|s| format!("did you mean \"{s}\"?"));
                self.problem(&format!("{key} = \"{text}\""), format!("is not one of: {}", names.join(", ")), hint.as_deref());
                default
            }
        }
    }
}

fn ramp(c: &mut Check, raw: RawRamp) -> Ramp {
    let max_stage_time = c.duration("ramp.max_stage_time", raw.max_stage_time.as_deref(), "7d");
    let check_every = c.duration("ramp.check_every", raw.check_every.as_deref(), "1h");
    if check_every == 0 {
        c.problem("ramp.check_every", "must be longer than 0s", Some("checks run on a fixed interval, e.g. \"1h\""));
    }
    let raw_stages: Vec<RawStage> = raw
        .stages
        .clone()
        .unwrap_or_else(|| DEFAULT_STAGES.iter().map(|(w, b)| RawStage { weight: *w, bake: Some((*b).into()), max: None }).collect());
    if raw_stages.is_empty() {
        c.problem("ramp.stages", "lists no stages", Some("e.g. stages = [{ weight = 5, bake = \"1h\" }, { weight = 100 }]"));
    }
    let mut stages = Vec::new();
    let mut previous = 0.0;
    for (i, s) in raw_stages.iter().enumerate() {
        let key = format!("ramp.stages[{i}]");
        if !(s.weight > 0.0 && s.weight <= 100.0) {
            c.problem(&format!("{key}.weight = {}", s.weight), "a weight is a percentage in (0, 100]", None);
        } else if s.weight <= previous {
            c.problem(&format!("{key}.weight = {}", s.weight), format!("weights must increase: the stage before is {previous}"), None);
        }
        previous = s.weight.max(previous);
        let bake = c.duration(&format!("{key}.bake"), s.bake.as_deref(), "0s");
        let max_time = match s.max.as_deref() {
            Some(m) => c.duration(&format!("{key}.max"), Some(m), "7d"),
            None => max_stage_time,
        };
        if max_time < bake {
            c.problem(
                &format!("{key}.max"),
                format!("{} is shorter than the bake time {}", format_duration(max_time), format_duration(bake)),
                None,
            );
        }
        stages.push(Stage { weight: s.weight / 100.0, bake, max_time });
    }
    let holdback = raw.holdback.unwrap_or(0.0);
    if !(0.0..100.0).contains(&holdback) {
        c.problem(&format!("ramp.holdback = {holdback}"), "a holdback is a percentage in [0, 100)", None);
    }
    let window = match raw.window.as_deref().unwrap_or("rollout") {
        name @ ("rollout" | "stage") => {
            if raw.sliding.is_some() {
                c.problem("ramp.sliding", "is set but ramp.window is not \"sliding\"", None);
            }
            if name == "rollout" {
                Window::Rollout
            } else {
                Window::Stage
            }
        }
        "sliding" => {
            let d = c.duration("ramp.sliding", raw.sliding.as_deref(), "1d");
            if check_every > 0 && (d < check_every || d % check_every != 0) {
                c.problem(
                    "ramp.sliding",
                    format!("= \"{}\" must be a whole number of check intervals ({})", format_duration(d), format_duration(check_every)),
                    None,
                );
            }
            Window::Sliding(d)
        }
        other => {
            c.problem(&format!("ramp.window = \"{other}\""), "is not one of: rollout, stage, sliding", None);
            Window::Rollout
        }
    };
    let monitor_window = c.duration("ramp.monitor_window", raw.monitor_window.as_deref(), "7d");
    if check_every > 0 && (monitor_window < check_every || monitor_window % check_every != 0) {
        c.problem(
            "ramp.monitor_window",
            format!(
                "= \"{}\" must be a whole number of check intervals ({})",
                format_duration(monitor_window),
                format_duration(check_every)
            ),
            None,
        );
    }
    Ramp {
        stages,
        check_every: check_every.max(1),
        salt: raw.salt.unwrap_or_else(|| "canary-replay".into()),
        max_stage_time,
        holdback: holdback / 100.0,
        window,
        monitor_window,
    }
}

fn decision(c: &mut Check, raw: RawDecision) -> Decision {
    let alpha = c.share("decision.alpha", raw.alpha, 0.05, (0.0, 0.5), "alpha");
    let power = c.share("decision.power", raw.power, 0.8, (0.0, 1.0), "power");
    let tuning = raw.tuning.clone().unwrap_or_else(|| vec![200.0, 2_000.0, 20_000.0, 200_000.0]);
    if tuning.is_empty() || tuning.iter().any(|n| !(*n >= 1.0)) {
        c.problem("decision.tuning", format!("= {tuning:?}: list sample sizes of at least 1"), None);
    }
    if tuning.len() > MAX_COMPONENTS {
        c.problem(
            "decision.tuning",
            format!("lists {} sample sizes; at most {MAX_COMPONENTS} are mixed", tuning.len()),
            Some("keep a few sizes a decade apart, e.g. [200, 2000, 20000, 200000]"),
        );
    }
    let tuning: Vec<f64> = tuning.into_iter().filter(|n| *n >= 1.0).take(MAX_COMPONENTS).collect();
    let tuning = if tuning.is_empty() { vec![2_000.0] } else { tuning };
    let correction = c.choice(
        "decision.correction",
        raw.correction.as_deref(),
        Correction::Holm,
        &[
            ("none", Correction::None),
            ("bonferroni", Correction::Bonferroni),
            ("holm", Correction::Holm),
            ("benjamini_hochberg", Correction::BenjaminiHochberg),
            ("benjamini_yekutieli", Correction::BenjaminiYekutieli),
        ],
    );
    let spending = c.choice(
        "decision.spending",
        raw.spending.as_deref(),
        Spending::OBrienFleming,
        &[("obrien_fleming", Spending::OBrienFleming), ("pocock", Spending::Pocock)],
    );
    let sequential = c.choice(
        "decision.sequential",
        raw.sequential.as_deref(),
        Sequential::Msprt,
        &[("msprt", Sequential::Msprt), ("group_sequential", Sequential::GroupSequential(spending))],
    );
    let on_timeout = c.choice(
        "decision.on_timeout",
        raw.on_timeout.as_deref(),
        OnTimeout::Hold,
        &[("hold", OnTimeout::Hold), ("rollback", OnTimeout::Rollback), ("promote", OnTimeout::Promote)],
    );
    let threshold = raw.threshold.unwrap_or(0.5);
    let cost = raw.cost.unwrap_or_default();
    let consecutive_failures = raw.consecutive_failures.unwrap_or(3);
    let total_failures = raw.total_failures.unwrap_or(10);
    if consecutive_failures == 0 || total_failures == 0 {
        c.problem("decision.consecutive_failures / decision.total_failures", "must be at least 1", None);
    }
    Decision {
        alpha,
        power,
        correction,
        sequential,
        tuning,
        min_samples: raw.min_samples.unwrap_or(100).max(2),
        consecutive_failures: consecutive_failures.max(1),
        total_failures: total_failures.max(1),
        on_timeout,
        threshold,
        cost: Cost {
            true_positive: cost.true_positive.unwrap_or(0.0),
            false_positive: cost.false_positive.unwrap_or(1.0),
            false_negative: cost.false_negative.unwrap_or(1.0),
            true_negative: cost.true_negative.unwrap_or(0.0),
        },
    }
}

fn segment_policy(c: &mut Check, i: usize, raw: &RawSegmentPolicy, shape: &TrafficShape) -> SegmentPolicy {
    let key = format!("segment_policy[{i}]");
    if !shape.segments.contains(&raw.column) {
        c.problem(
            &format!("{key}.column = \"{}\"", raw.column),
            "is not one of traffic.segments",
            Some("add the column to traffic.segments"),
        );
    }
    let mut caps = BTreeMap::new();
    for (value, cap) in &raw.caps {
        if !(*cap > 0.0 && *cap <= 100.0) {
            c.problem(&format!("{key}.caps.{value} = {cap}"), "a cap is a percentage in (0, 100]", None);
        }
        caps.insert(value.clone(), cap / 100.0);
    }
    SegmentPolicy { column: raw.column.clone(), include: raw.include.clone(), exclude: raw.exclude.clone(), waves: raw.waves.clone(), caps }
}

fn gate(c: &mut Check, i: usize, raw: &RawGate, shape: &TrafficShape, decision: &Decision) -> Option<Gate> {
    let key = format!("gates[{i}]");
    let metric = match Metric::parse(&raw.metric) {
        Some(m) => m,
        None => {
            let hint =
                crate::error::did_you_mean(&raw.metric, Metric::ALL.iter().map(|m| m.name())).map(|s| format!("did you mean \"{s}\"?"));
            c.problem(
                &format!("{key}.metric = \"{}\"", raw.metric),
                format!("is not a metric; metrics: {}", Metric::ALL.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")),
                hint.as_deref(),
            );
            return None;
        }
    };
    if metric.needs_labels() && !shape.labelled {
        c.problem(
            &format!("{key}.metric = \"{}\"", raw.metric),
            "needs labels, but traffic.label is not set",
            Some("name the label column, or gate on error_rate, latency or score drift"),
        );
    }
    let kind = match raw.kind.as_str() {
        "threshold" => GateKind::Threshold { min: raw.min, max: raw.max },
        "ratio" => GateKind::Ratio { min: raw.min, max: raw.max },
        "non_inferiority" => {
            let margin = raw.margin.unwrap_or(-1.0);
            if !(margin >= 0.0) {
                c.problem(
                    &format!("{key}.margin"),
                    "a non-inferiority gate needs margin >= 0 (relative to the stable mean, 0.02 = 2%)",
                    None,
                );
            }
            GateKind::NonInferiority { margin: margin.max(0.0) }
        }
        "regression" => GateKind::Regression,
        other => {
            let hint = crate::error::did_you_mean(other, ["threshold", "ratio", "non_inferiority", "regression"])
                .map(|s| format!("did you mean \"{s}\"?"));
            c.problem(
                &format!("{key}.kind = \"{other}\""),
                "is not one of: threshold, ratio, non_inferiority, regression",
                hint.as_deref(),
            );
            return None;
        }
    };
    if let GateKind::Threshold { min, max } | GateKind::Ratio { min, max } = kind {
        if min.is_none() && max.is_none() {
            c.problem(&key, format!("a {} gate needs min or max", kind.name()), None);
        }
    }
    if raw.margin.is_some() && !matches!(kind, GateKind::NonInferiority { .. }) {
        c.problem(&format!("{key}.margin"), "applies only to non_inferiority gates", None);
    }
    if kind.is_statistical() && !metric.supports_difference_test() {
        c.problem(
            &format!("{key}.kind = \"{}\"", raw.kind),
            format!("{} has no sequential difference test", metric.name()),
            Some("use a threshold or ratio gate for quantiles, drift and calibration"),
        );
    }
    if matches!(kind, GateKind::Ratio { .. }) && metric.is_drift() {
        c.problem(&format!("{key}.kind = \"ratio\""), "drift already compares the arms: use a threshold gate", None);
    }
    let segments = raw.segments.clone().unwrap_or_default();
    for (j, s) in segments.iter().enumerate() {
        if !shape.segments.contains(s) {
            c.problem(&format!("{key}.segments[{j}] = \"{s}\""), "is not one of traffic.segments", None);
        }
    }
    let required = raw.required.unwrap_or(matches!(kind, GateKind::NonInferiority { .. }));
    let required_from = match (required, raw.from_weight) {
        (_, Some(w)) if !(0.0..=100.0).contains(&w) => {
            c.problem(&format!("{key}.from_weight = {w}"), "a weight is a percentage in [0, 100]", None);
            None
        }
        (false, Some(_)) => {
            c.problem(
                &format!("{key}.from_weight"),
                "is set but the gate is not required",
                Some("remove from_weight or set required = true"),
            );
            None
        }
        (false, None) => None,
        (true, Some(w)) => Some(w / 100.0),
        (true, None) => Some(if matches!(kind, GateKind::NonInferiority { .. }) { 0.25 } else { 0.0 }),
    };
    Some(Gate {
        metric,
        kind,
        critical: raw.critical.unwrap_or(false),
        segments,
        min_samples: raw.min_samples.unwrap_or(decision.min_samples).max(2),
        required_from,
    })
}
