//! The faults a scenario injects into one model's outputs to turn a clean log into an incident:
//! as written (`[[faults]]`), validated, and described.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Role;
use crate::error::Problem;
use crate::policy::choice::{named, Choice, Named};
use crate::policy::{Check, TrafficShape};
use crate::time::{format_timestamp, Micros, RawTime};

/// A fault injected into one model's outputs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fault {
    pub effect: Effect,
    pub model: Role,
    pub start: Option<Micros>,
    pub end: Option<Micros>,
    /// (column, value).
    pub segment: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Effect {
    Latency { add_ms: f64, multiply: f64 },
    ErrorRate { rate: f64 },
    ScoreShift { shift: f64 },
    ConstantOutput { value: f64 },
    FeatureMissing { feature: String },
}

impl Fault {
    pub fn active(&self, t: Micros) -> bool {
        self.start.is_none_or(|s| t >= s) && self.end.is_none_or(|e| t < e)
    }

    /// What the fault does, in words: `+40 ms latency on origin=JFK (candidate)`.
    pub fn describe(&self) -> String {
        let effect = match &self.effect {
            Effect::Latency { add_ms, multiply } => match (*add_ms != 0.0, *multiply != 1.0) {
                (true, true) => format!("latency ×{multiply} +{add_ms} ms"),
                (false, true) => format!("latency ×{multiply}"),
                _ => format!("+{add_ms} ms latency"),
            },
            Effect::ErrorRate { rate } => format!("{}% errors", rate * 100.0),
            Effect::ScoreShift { shift } => format!("score shifted by {shift:+}"),
            Effect::ConstantOutput { value } => format!("constant output {value}"),
            Effect::FeatureMissing { feature } => format!("feature {feature} sent missing"),
        };
        let scope = self.segment.as_ref().map(|(c, v)| format!(" on {c}={v}")).unwrap_or_default();
        format!("{effect}{scope} ({})", self.model.name())
    }
}

named! {
    /// A fault's `kind`: what it does to the model's outputs.
    FaultKind {
        Latency = "latency",
        ErrorRate = "error_rate",
        ScoreShift = "score_shift",
        ConstantOutput = "constant_output",
        FeatureMissing = "feature_missing",
    }
}

impl Named for Role {
    const NAMES: &'static [(&'static str, Self)] = &[("stable", Role::Stable), ("candidate", Role::Candidate)];
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawFault {
    pub kind: Choice<FaultKind>,
    /// The candidate (default) or the stable model.
    pub model: Option<Choice<Role>>,
    /// Start of the incident (inclusive); default the start of the data.
    pub start: Option<RawTime>,
    /// End of the incident (exclusive); default none.
    pub end: Option<RawTime>,
    /// Only requests of this segment value: `{ origin = "JFK" }`.
    pub segment: Option<BTreeMap<String, String>>,
    /// latency: milliseconds added.
    pub add_ms: Option<f64>,
    /// latency: factor applied.
    pub multiply: Option<f64>,
    /// error_rate: share of requests that fail.
    pub rate: Option<f64>,
    /// score_shift: added to the score.
    pub shift: Option<f64>,
    /// constant_output: the score returned.
    pub value: Option<f64>,
    /// feature_missing: the feature sent as missing (NaN).
    pub feature: Option<String>,
}

/// Validates the fault sections.
pub fn faults(raw: &[RawFault], shape: &TrafficShape, file: &str, problems: &mut Vec<Problem>) -> Vec<Fault> {
    let mut c = Check { file, problems };
    raw.iter().enumerate().filter_map(|(i, f)| fault(&mut c, i, f, shape)).collect()
}

fn time(c: &mut Check, key: &str, value: &Option<RawTime>) -> Option<Micros> {
    match value.as_ref()?.parse() {
        Ok(t) => Some(t),
        Err(e) => {
            c.problem(key, e, None);
            None
        }
    }
}

fn fault(c: &mut Check, i: usize, raw: &RawFault, shape: &TrafficShape) -> Option<Fault> {
    let key = format!("faults[{i}]");
    // Every number of a fault must be finite (TOML allows nan and inf).
    let finite = |c: &mut Check, name: &str, v: f64| -> f64 {
        if !v.is_finite() {
            c.problem(&format!("{key}.{name} = {v}"), "must be a finite number", None);
        }
        v
    };
    let need = |c: &mut Check, name: &str, v: Option<f64>| -> f64 {
        match v {
            Some(v) => finite(c, name, v),
            None => {
                c.problem(&format!("{key}.{name}"), format!("a {} fault needs {name}", raw.kind), None);
                0.0
            }
        }
    };
    let effect = match c.choice(&format!("{key}.kind"), &raw.kind)? {
        FaultKind::Latency => {
            if raw.add_ms.is_none() && raw.multiply.is_none() {
                c.problem(&key, "a latency fault needs add_ms or multiply", None);
            }
            Effect::Latency {
                add_ms: finite(c, "add_ms", raw.add_ms.unwrap_or(0.0)),
                multiply: finite(c, "multiply", raw.multiply.unwrap_or(1.0)),
            }
        }
        FaultKind::ErrorRate => {
            let rate = need(c, "rate", raw.rate);
            if !(0.0..=1.0).contains(&rate) {
                c.problem(&format!("{key}.rate = {rate}"), "a rate is a share in [0, 1]", None);
            }
            Effect::ErrorRate { rate }
        }
        FaultKind::ScoreShift => Effect::ScoreShift { shift: need(c, "shift", raw.shift) },
        FaultKind::ConstantOutput => Effect::ConstantOutput { value: need(c, "value", raw.value) },
        FaultKind::FeatureMissing => match &raw.feature {
            Some(f) => Effect::FeatureMissing { feature: f.clone() },
            None => {
                c.problem(&format!("{key}.feature"), "a feature_missing fault needs the feature's column name", None);
                return None;
            }
        },
    };
    let model = c.choice_or(&format!("{key}.model"), raw.model.as_ref(), Role::Candidate);
    let start = time(c, &format!("{key}.start"), &raw.start);
    let end = time(c, &format!("{key}.end"), &raw.end);
    if let (Some(s), Some(e)) = (start, end) {
        if e <= s {
            c.problem(&format!("{key}.end"), format!("{} is not after the start {}", format_timestamp(e), format_timestamp(s)), None);
        }
    }
    let segment = match &raw.segment {
        None => None,
        Some(map) if map.len() == 1 => {
            let (column, value) = map.iter().next().expect("one entry");
            if !shape.segments.contains(column) {
                c.problem(&format!("{key}.segment.{column}"), "is not one of traffic.segments", None);
            }
            Some((column.clone(), value.clone()))
        }
        Some(_) => {
            c.problem(&format!("{key}.segment"), "names one column and value, e.g. { origin = \"JFK\" }", None);
            None
        }
    };
    Some(Fault { effect, model, start, end, segment })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems_of(toml_text: &str) -> Vec<String> {
        #[derive(Deserialize)]
        struct File {
            faults: Vec<RawFault>,
        }
        let file: File = toml::from_str(toml_text).unwrap();
        let mut problems = Vec::new();
        faults(&file.faults, &TrafficShape { segments: &[], labelled: true }, "s.toml", &mut problems);
        problems.iter().map(|p| format!("{}: {} ({})", p.location, p.message, p.fix.as_deref().unwrap_or(""))).collect()
    }

    #[test]
    fn an_unknown_fault_kind_or_model_is_named_with_a_suggestion() {
        let said = problems_of("[[faults]]\nkind = \"latncy\"\nadd_ms = 3\n[[faults]]\nkind = \"latency\"\nmodel = \"stabel\"\nadd_ms = 3");
        assert_eq!(
            said,
            [
                "s.toml: faults[0].kind = \"latncy\": is not one of: latency, error_rate, score_shift, constant_output, feature_missing (did you mean \"latency\"?)",
                "s.toml: faults[1].model = \"stabel\": is not one of: stable, candidate (did you mean \"stable\"?)",
            ]
        );
        assert!(problems_of("[[faults]]\nkind = \"latency\"\nmodel = \"stable\"\nadd_ms = 3").is_empty());
    }
}
