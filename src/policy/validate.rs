//! Validating the policy's sections: every value and cross-field rule checked at once, each
//! problem keyed by its file and path.

// The policy types and the raw sections of the parent module.
use super::choice::Named;
use super::*;

pub(super) fn percent(fraction: f64) -> f64 {
    (fraction * 100.0 * 1e9).round() / 1e9
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

    /// The value `choice` names; `None` (the problem reported at `key`, with the names it could
    /// be and the likeliest) when it names none.
    pub(crate) fn choice<T: Named>(&mut self, key: &str, choice: &Choice<T>) -> Option<T> {
        match choice {
            Choice::Known(v) => Some(*v),
            Choice::Unknown(text) => {
                let names: Vec<&str> = T::NAMES.iter().map(|(n, _)| *n).collect();
                let hint = crate::error::did_you_mean(text, names.iter().copied()).map(|s| format!("did you mean \"{s}\"?"));
                self.problem(&format!("{key} = \"{text}\""), format!("is not one of: {}", names.join(", ")), hint.as_deref());
                None
            }
        }
    }

    /// [`Check::choice`] of a setting that may be left out: `default` then, and when it names none.
    pub(crate) fn choice_or<T: Named>(&mut self, key: &str, choice: Option<&Choice<T>>, default: T) -> T {
        choice.and_then(|c| self.choice(key, c)).unwrap_or(default)
    }
}

pub(super) fn ramp(c: &mut Check, raw: RawRamp) -> Ramp {
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

pub(super) fn decision(c: &mut Check, raw: RawDecision) -> Decision {
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
    let correction = c.choice_or("decision.correction", raw.correction.as_ref(), Correction::Holm);
    let spending = match c.choice_or("decision.spending", raw.spending.as_ref(), SpendingFunction::OBrienFleming) {
        SpendingFunction::OBrienFleming => Spending::OBrienFleming,
        SpendingFunction::Pocock => Spending::Pocock,
    };
    let sequential = match c.choice_or("decision.sequential", raw.sequential.as_ref(), Test::Msprt) {
        Test::Msprt => Sequential::Msprt,
        Test::GroupSequential => Sequential::GroupSequential(spending),
    };
    let on_timeout = c.choice_or("decision.on_timeout", raw.on_timeout.as_ref(), OnTimeout::Hold);
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

pub(super) fn segment_policy(c: &mut Check, i: usize, raw: &RawSegmentPolicy, shape: &TrafficShape) -> SegmentPolicy {
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

pub(super) fn gate(c: &mut Check, i: usize, raw: &RawGate, shape: &TrafficShape, decision: &Decision) -> Option<Gate> {
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
    let kind = match c.choice(&format!("{key}.kind"), &raw.kind)? {
        Kind::Threshold => GateKind::Threshold { min: raw.min, max: raw.max },
        Kind::Ratio => GateKind::Ratio { min: raw.min, max: raw.max },
        Kind::NonInferiority => {
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
        Kind::Regression => GateKind::Regression,
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
