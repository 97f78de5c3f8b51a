//! Flagger: a `Canary`'s `analysis` block (and the `MetricTemplate`s it references), replayed with
//! the scheduler's rules (fluxcd/flagger `pkg/controller/scheduler.go`).
//!
//! Every `interval`, from the first request:
//! - if the failed-check counter has reached `threshold`, roll back (so the rollback comes one
//!   interval after the failing check that reached it). The counter is cumulative: a passing
//!   check does not reset it; only a new revision would;
//! - the first tick starts the analysis without checking (no traffic yet) and sets the first
//!   weight;
//! - otherwise every metric is checked on its last `interval` of traffic (a metric with no data
//!   fails: "no values found"); any failure adds one to the counter and the weight stays;
//! - when all pass, the weight advances by `stepWeight` (or to the next `stepWeights` entry) up
//!   to `maxWeight`; a passing check at `maxWeight` promotes. `nextStepWeight` is followed to the
//!   letter: with `stepWeights`, a weight listed twice gives a step of 0, and the canary stops
//!   advancing there.
//! - with `iterations` and `mirror: true` (blue/green with mirroring) the candidate scores every
//!   request but serves none for that many passing checks, then takes all traffic for one
//!   interval, then is promoted.
//! - A/B testing (`iterations` with `match`) sends every matched request to the candidate for
//!   that many passing checks, then promotes. A log has no headers or cookies, so a segment stands
//!   for the matched requests (`controller.ab_segment`).

use std::collections::BTreeMap;

use serde_yaml::Value as Yaml;

use super::probe::{Probe, Schedule};
use super::spec::{yaml, Arm, Mapping, Reader, Spec};
use super::{Emulated, Events};
use crate::policy::Metric;
use crate::simulate::replay::Cells;
use crate::simulate::Outcome;
use crate::time::Micros;

const DEFAULT_INTERVAL: Micros = crate::time::MICROS_PER_MINUTE;

#[derive(Debug, Clone)]
pub struct FlaggerMetric {
    pub name: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub interval: Micros,
    /// The MetricTemplate's query, when the metric references one.
    pub query: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RawCanary {
    canary: Canary,
    /// Per metric, the MetricTemplate it references and where (`…metrics[i].templateRef`).
    template_refs: Vec<Option<(String, String)>>,
}

#[derive(Debug, Clone)]
pub struct Canary {
    pub name: String,
    pub file: String,
    pub interval: Micros,
    pub threshold: u32,
    pub max_weight: u32,
    pub step_weight: u32,
    pub step_weights: Vec<u32>,
    pub step_weight_promotion: u32,
    pub iterations: u32,
    pub mirror: bool,
    /// A/B testing: `match` with `iterations`.
    pub ab: bool,
    pub metrics: Vec<FlaggerMetric>,
    pub caveats: Vec<String>,
}

/// Flagger's built-in metrics: the success rate in percent and the P99 duration in milliseconds.
pub fn builtin(name: &str) -> Option<Mapping> {
    match name {
        "request-success-rate" => {
            Some(Mapping { metric: Metric::ErrorRate, arm: Arm::Candidate, scale: -100.0, offset: 100.0, window: None })
        }
        "request-duration" => Some(Mapping { metric: Metric::LatencyP99, arm: Arm::Candidate, scale: 1.0, offset: 0.0, window: None }),
        _ => None,
    }
}

pub fn read_metric_template(v: &Yaml) -> Option<(String, String)> {
    let name = yaml::get(v, "metadata").and_then(|m| yaml::get(m, "name")).and_then(Yaml::as_str)?;
    let query = yaml::get(v, "spec").and_then(|s| yaml::get(s, "query")).and_then(Yaml::as_str).unwrap_or("");
    Some((name.to_string(), query.to_string()))
}

pub(crate) fn read_canary(r: &mut Reader, v: &Yaml, at: &str) -> Option<RawCanary> {
    let name = yaml::get(v, "metadata").and_then(|m| yaml::get(m, "name")).and_then(Yaml::as_str).unwrap_or("unnamed").to_string();
    let spec = yaml::get(v, "spec");
    let (key, analysis) = match spec.and_then(|s| yaml::get(s, "analysis")) {
        Some(a) => ("analysis", a),
        None => match spec.and_then(|s| yaml::get(s, "canaryAnalysis")) {
            Some(a) => ("canaryAnalysis", a),
            None => {
                r.problem(&format!("{at}: spec.analysis"), "is missing", None);
                return None;
            }
        },
    };
    let path = format!("{at}: spec.{key}");
    let before = r.problems.len();
    let int = |r: &mut Reader, k: &str| -> Option<u32> {
        let v = yaml::get(analysis, k).and_then(|x| yaml::int(r, x, &format!("{path}.{k}")))?;
        if v < 0 {
            r.problem(&format!("{path}.{k}"), format!("{v} is negative"), None);
        }
        Some(v.max(0) as u32)
    };
    let threshold = int(r, "threshold").filter(|t| *t > 0).unwrap_or(1);
    let max_weight = int(r, "maxWeight").unwrap_or(0);
    let step_weight = int(r, "stepWeight").unwrap_or(0);
    let step_weight_promotion = int(r, "stepWeightPromotion").unwrap_or(0);
    let iterations = int(r, "iterations").unwrap_or(0);
    let step_weights: Vec<u32> = yaml::get(analysis, "stepWeights")
        .map(|l| {
            yaml::seq(r, l, &format!("{path}.stepWeights"))
                .iter()
                .enumerate()
                .filter_map(|(i, w)| yaml::int(r, w, &format!("{path}.stepWeights[{i}]")))
                .map(|w| w.clamp(0, 100) as u32)
                .collect()
        })
        .unwrap_or_default();
    let interval = yaml::get(analysis, "interval")
        .and_then(|x| yaml::duration(r, x, &format!("{path}.interval")))
        .unwrap_or(DEFAULT_INTERVAL)
        .max(10_000_000);
    let mirror = yaml::get(analysis, "mirror").and_then(|x| yaml::boolean(r, x, &format!("{path}.mirror"))).unwrap_or(false);
    let ab = yaml::get(analysis, "match").is_some();
    if ab && iterations == 0 {
        r.problem(
            &format!("{path}.match"),
            "A/B testing needs iterations",
            Some("add iterations: the number of passing checks before promotion"),
        );
    }
    if step_weight == 0 && step_weights.is_empty() && iterations == 0 {
        r.problem(
            &path,
            "has neither stepWeight, stepWeights nor iterations: Flagger would never shift traffic",
            Some("add stepWeight and maxWeight"),
        );
    }
    let mut caveats = Vec::new();
    if ab {
        caveats.push("A/B testing: the requests `match` selects by header or cookie are stood for by controller.ab_segment".to_string());
    } else if iterations > 0 && !mirror {
        caveats.push("blue/green without mirroring: during the iterations the candidate sees only load-test traffic, which the log does not have, so its checks find no data".to_string());
    }
    if yaml::get(analysis, "webhooks").is_some() {
        caveats.push("webhooks (load tests, gates, rollback hooks) are not replayed".to_string());
    }
    let mut metrics = Vec::new();
    let mut template_refs = Vec::new();
    if let Some(list) = yaml::get(analysis, "metrics") {
        for (i, m) in yaml::seq(r, list, &format!("{path}.metrics")).iter().enumerate() {
            let mpath = format!("{path}.metrics[{i}]");
            let Some(mname) = yaml::get(m, "name").and_then(Yaml::as_str).map(str::to_string) else {
                r.problem(&mpath, "has no name", None);
                continue;
            };
            let range = yaml::get(m, "thresholdRange");
            let bound = |r: &mut Reader, k: &str| {
                range.and_then(|x| yaml::get(x, k)).and_then(|x| yaml::number(r, x, &format!("{mpath}.thresholdRange.{k}")))
            };
            let (mut min, mut max) = (bound(r, "min"), bound(r, "max"));
            // The old form: `threshold` is a minimum for the success rate and a maximum otherwise.
            if let (None, None, Some(t)) =
                (min, max, yaml::get(m, "threshold").and_then(|x| yaml::number(r, x, &format!("{mpath}.threshold"))))
            {
                if mname == "request-success-rate" {
                    min = Some(t);
                } else {
                    max = Some(t);
                }
            }
            let interval =
                yaml::get(m, "interval").and_then(|x| yaml::duration(r, x, &format!("{mpath}.interval"))).unwrap_or(DEFAULT_INTERVAL);
            if interval == 0 {
                r.problem(&format!("{mpath}.interval"), "must be longer than 0", None);
            }
            let reference = yaml::get(m, "templateRef").and_then(|t| yaml::get(t, "name")).and_then(Yaml::as_str);
            template_refs.push(reference.map(|name| (name.to_string(), format!("{mpath}.templateRef"))));
            let query = yaml::get(m, "query").and_then(Yaml::as_str).map(str::to_string);
            metrics.push(FlaggerMetric { name: mname, min, max, interval, query });
        }
    }
    if r.problems.len() > before {
        return None;
    }
    Some(RawCanary {
        canary: Canary {
            name,
            file: r.file.clone(),
            interval,
            threshold,
            max_weight,
            step_weight,
            step_weights,
            step_weight_promotion,
            iterations,
            mirror,
            ab,
            metrics,
            caveats,
        },
        template_refs,
    })
}

/// The canary with its metrics' MetricTemplate queries filled in; a reference to a MetricTemplate
/// that is not in the files is a problem, as Flagger would fail the analysis.
pub(crate) fn resolve(r: &mut Reader, raw: RawCanary, templates: &BTreeMap<String, String>) -> Option<Canary> {
    let r = &mut Reader { file: raw.canary.file.clone(), problems: &mut *r.problems };
    let mut canary = raw.canary;
    let mut missing = false;
    for (m, reference) in canary.metrics.iter_mut().zip(raw.template_refs) {
        let Some((name, path)) = reference else { continue };
        match templates.get(&name) {
            Some(q) => m.query = Some(q.clone()),
            None => {
                missing = true;
                let fix = if templates.is_empty() {
                    "add the MetricTemplate's YAML to the controller files".to_string()
                } else {
                    format!("MetricTemplates found: {}", templates.keys().cloned().collect::<Vec<_>>().join(", "))
                };
                r.problem(&path, format!("MetricTemplate \"{name}\" (metric {}) is not in the controller files", m.name), Some(&fix));
            }
        }
    }
    (!missing).then_some(canary)
}

impl Canary {
    /// Flagger's `maxWeight`: the last `stepWeights` entry, else `maxWeight`, else 100.
    fn max(&self) -> u32 {
        match self.step_weights.last() {
            Some(last) => (*last).min(100),
            None if self.max_weight > 0 => self.max_weight,
            None => 100,
        }
    }

    /// The weights it steps through (as fractions), up to its maximum.
    pub fn weights(&self) -> Vec<f64> {
        let mut weights = Vec::new();
        let mut weight = 0u32;
        while weight < self.max() {
            let step = self.next_step(weight);
            if step == 0 {
                break;
            }
            weight = (weight + step).min(100);
            weights.push(f64::from(weight) / 100.0);
        }
        weights
    }

    /// Flagger's `nextStepWeight`.
    fn next_step(&self, weight: u32) -> u32 {
        if self.step_weight > 0 || self.step_weights.is_empty() {
            return self.step_weight;
        }
        let max_step = 100 - weight.min(100);
        if max_step == 0 {
            return 1;
        }
        if weight == 0 {
            return max_step.min(self.step_weights[0]);
        }
        for pair in self.step_weights.windows(2) {
            if pair[0] == weight {
                return max_step.min(pair[1].saturating_sub(weight));
            }
        }
        max_step
    }
}

pub fn emulate(c: &Canary, spec: &Spec, probe: &Probe, cells: &Cells, origin: Micros, end: Micros) -> Emulated {
    let mut events = Events::default();
    let mut schedule = Schedule::default();
    if let (true, Some((column, values))) = (c.ab, &spec.ab_segment) {
        let mask = (0..cells.len() as u32).map(|cell| cells.value(cell, column).is_some_and(|v| values.iter().any(|x| x == v))).collect();
        schedule.1 = Some((mask, Micros::MAX));
    }
    let (mut weight, mut failed, mut iterations) = (0u32, 0u32, 0u32);
    let mut deciding = (origin, origin);
    let mappings: Vec<Mapping> = c
        .metrics
        .iter()
        .map(|m| spec.mapping_of(&c.file, &m.name).or_else(|| builtin(&m.name)).expect("validated: every metric is mapped"))
        .collect();
    let mut stalled = false;
    let mut t = origin;
    let finish = |outcome: Outcome, at: Micros, reason: String, window: (Micros, Micros), schedule: Schedule, events: Events| {
        Emulated::decided(outcome, at, reason, window, schedule, events, c.caveats.clone())
    };
    let mut first = true;
    while t < end {
        if failed >= c.threshold {
            let reason = format!("{failed} failed checks reached the threshold {}; rolled back at the next tick", c.threshold);
            return finish(Outcome::RolledBack, t, reason, deciding, schedule, events);
        }
        let mirrored = c.iterations > 0 && c.mirror;
        if first {
            first = false;
            events.push(t, &schedule, "new revision detected: analysis starts".into());
        } else {
            let mut failures = Vec::new();
            for (m, mapping) in c.metrics.iter().zip(&mappings) {
                let lookback = mapping.window.unwrap_or(m.interval);
                let value = probe.measure(mapping, t, lookback, &schedule, mirrored);
                let ok = match value {
                    None => false,
                    Some(v) => m.min.is_none_or(|lo| v >= lo) && m.max.is_none_or(|hi| v <= hi),
                };
                events.measurement(
                    t,
                    &schedule,
                    format!(
                        "{} = {} ({})",
                        m.name,
                        value.map_or("no values found".into(), crate::simulate::round),
                        if ok { "pass" } else { "fail" }
                    ),
                    !ok,
                );
                if !ok {
                    failures.push(m.name.clone());
                    deciding = (t - lookback, t);
                }
            }
            if !failures.is_empty() {
                failed += 1;
                events.push(t, &schedule, format!("check failed ({}): failed checks {failed}/{}", failures.join(", "), c.threshold));
                t += c.interval;
                continue;
            }
        }
        if c.ab {
            if iterations < c.iterations {
                iterations += 1;
                schedule.set(t, 1.0);
                events.push(t, &schedule, format!("A/B iteration {iterations}/{}: every matched request to the candidate", c.iterations));
            } else {
                return finish(
                    Outcome::Promoted,
                    t,
                    format!("{} A/B iterations passed; promoted", c.iterations),
                    (origin, t),
                    schedule,
                    events,
                );
            }
        } else if c.iterations > 0 {
            if iterations < c.iterations {
                iterations += 1;
                events.push(t, &schedule, format!("iteration {iterations}/{}", c.iterations));
            } else if iterations == c.iterations {
                iterations += 1;
                schedule.set(t, 1.0);
                events.push(t, &schedule, "all iterations passed: all traffic to the candidate".into());
            } else {
                return finish(
                    Outcome::Promoted,
                    t,
                    format!("{} iterations passed; promoted", c.iterations),
                    (origin, t),
                    schedule,
                    events,
                );
            }
        } else {
            let step = c.next_step(weight);
            if step == 0 {
                if !stalled {
                    stalled = true;
                    events.push(
                        t,
                        &schedule,
                        format!(
                            "next step weight is 0 at weight {weight}: the canary stops advancing (a weight listed twice in stepWeights?)"
                        ),
                    );
                }
            } else if weight < c.max() {
                weight = (weight + step).min(100);
                schedule.set(t, f64::from(weight) / 100.0);
                events.push(t, &schedule, format!("advance canary weight {weight}"));
            } else {
                let promotion = if c.step_weight_promotion > 0 {
                    format!(" (the primary then takes the new version in steps of {}%)", c.step_weight_promotion)
                } else {
                    String::new()
                };
                return finish(
                    Outcome::Promoted,
                    t,
                    format!("checks passed at the maximum weight {weight}%; promoted{promotion}"),
                    (origin, t),
                    schedule,
                    events,
                );
            }
        }
        t += c.interval;
    }
    let reason = if stalled {
        format!("stalled at weight {weight}% until the traffic ended")
    } else {
        format!("the traffic ended with the canary at {weight}% and {failed} failed checks")
    };
    finish(Outcome::Held, t.min(end), reason, (origin, t.min(end)), schedule, events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canary(step_weight: u32, step_weights: Vec<u32>, max_weight: u32) -> Canary {
        Canary {
            name: "c".into(),
            file: "f".into(),
            interval: DEFAULT_INTERVAL,
            threshold: 2,
            max_weight,
            step_weight,
            step_weights,
            step_weight_promotion: 0,
            iterations: 0,
            mirror: false,
            ab: false,
            metrics: Vec::new(),
            caveats: Vec::new(),
        }
    }

    #[test]
    fn step_weights_follow_the_scheduler() {
        let c = canary(0, vec![1, 5, 25, 50], 0);
        assert_eq!(c.max(), 50);
        assert_eq!([c.next_step(0), c.next_step(1), c.next_step(5), c.next_step(25), c.next_step(50)], [1, 4, 20, 25, 50]);
        // A weight listed twice: a step of 0, so Flagger stops advancing there.
        let twice = canary(0, vec![10, 10, 50], 0);
        assert_eq!(twice.next_step(10), 0);
        let linear = canary(10, vec![], 30);
        assert_eq!((linear.max(), linear.next_step(20)), (30, 10));
    }
}
