//! Argo Rollouts: a `Rollout`'s canary steps and its `AnalysisTemplate`s, read as their owners
//! write them and replayed with the controller's rules ([`super::argo`]).
//!
//! - Steps run in order from the first request: `setWeight` sets the candidate's share at once;
//!   `pause` with a duration waits it out; `pause: {}` waits for a person, which a replay cannot
//!   have — the rollout is held there, unless `controller.resume_paused_after` says when someone
//!   would have resumed it; `analysis` starts an AnalysisRun and waits for it to complete. After the
//!   last step the candidate takes all traffic (promoted).
//! - Background analysis (`strategy.canary.analysis`) starts when the rollout reaches
//!   `startingStep` (default 0) and runs until the rollout completes, which terminates it.
//! - In a run, each metric measures after `initialDelay`, then every `interval`; `count`
//!   measurements complete it (no `interval`: one measurement, retried 10 s after an error as the
//!   controller does). As soon as one metric (not a dry run) completes Failed, Error or
//!   Inconclusive, the run terminates: the others complete as Successful unless their own limits
//!   are already exceeded, and the run takes the worst phase.
//! - A Failed or Error run aborts the rollout (the candidate's weight goes to 0: rolled back); an
//!   Inconclusive one pauses it (held).
//! - A measurement is the mapped canary-replay metric over the query's lookback (the `[5m]` range
//!   in a Prometheus query, or the mapping's `window`), on the traffic routed as the rollout routed
//!   it. No data is an empty result: `result[0]` on it is an Error measurement.

use std::collections::BTreeMap;

use serde_yaml::Value as Yaml;

use super::argo::{run_phase, MetricResult, MetricRules, Phase};
use super::condition::{Condition, Value};
use super::probe::{Probe, Schedule};
use super::spec::{yaml, Mapping, Reader, Spec};
use super::{Emulated, Events};
use crate::simulate::Outcome;
use crate::time::{format_duration, Micros};

/// Argo's retry after an errored measurement of a metric without an interval.
const ERROR_RETRY: Micros = 10_000_000;

#[derive(Debug, Clone)]
pub struct RawRollout {
    name: String,
    file: String,
    at: String,
    steps: Vec<(String, RawStep)>,
    background: Option<(Vec<TemplateRef>, usize)>,
}

#[derive(Debug, Clone)]
enum RawStep {
    SetWeight(f64),
    Pause(Option<Micros>),
    Analysis(Vec<TemplateRef>),
    Other(String),
}

/// An AnalysisTemplate metric.
#[derive(Debug, Clone)]
pub struct ArgoMetric {
    pub name: String,
    pub interval: Option<Micros>,
    pub initial_delay: Micros,
    pub rules: MetricRules,
    /// The range selector of a Prometheus query (`[5m]`).
    pub lookback: Option<Micros>,
    /// The conditions index the result (`result[0]`): the query returns a vector.
    pub vector: bool,
    /// The provider, when not Prometheus (the mapping then stands for its result).
    pub provider: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Template {
    pub name: String,
    /// A ClusterAnalysisTemplate (referenced with `clusterScope: true`), not an AnalysisTemplate.
    pub cluster: bool,
    pub metrics: Vec<ArgoMetric>,
}

/// A Rollout's reference to a template: its name, and `clusterScope` (a ClusterAnalysisTemplate).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TemplateRef {
    pub cluster: bool,
    pub name: String,
}

impl TemplateRef {
    pub fn kind(&self) -> &'static str {
        template_kind(self.cluster)
    }
}

/// The kind of a template that is cluster-scoped or not.
pub fn template_kind(cluster: bool) -> &'static str {
    if cluster {
        "ClusterAnalysisTemplate"
    } else {
        "AnalysisTemplate"
    }
}

#[derive(Debug, Clone)]
pub enum Step {
    SetWeight(f64),
    Pause(Option<Micros>),
    Analysis(Vec<ArgoMetric>),
    /// A step that does not change what the candidate serves or when (named in the caveats).
    Skipped(String),
}

#[derive(Debug, Clone)]
pub struct Rollout {
    pub name: String,
    pub file: String,
    pub steps: Vec<Step>,
    pub background: Option<(Vec<ArgoMetric>, usize)>,
    pub caveats: Vec<String>,
}

impl Rollout {
    /// Every metric the rollout measures, inline steps first, then the background analysis.
    pub fn metrics(&self) -> impl Iterator<Item = &ArgoMetric> {
        let inline = self.steps.iter().filter_map(|s| if let Step::Analysis(m) = s { Some(m) } else { None });
        inline.chain(self.background.as_ref().map(|(m, _)| m)).flatten()
    }
}

fn template_names(r: &mut Reader, v: &Yaml, path: &str) -> Vec<TemplateRef> {
    let Some(list) = yaml::get(v, "templates") else {
        r.problem(path, "has no templates", Some("list the AnalysisTemplates to run: templates: [{templateName: ...}]"));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, t) in yaml::seq(r, list, &format!("{path}.templates")).iter().enumerate() {
        let cluster = yaml::get(t, "clusterScope").and_then(Yaml::as_bool).unwrap_or(false);
        match yaml::get(t, "templateName").and_then(Yaml::as_str) {
            Some(name) => out.push(TemplateRef { cluster, name: name.to_string() }),
            None => r.problem(&format!("{path}.templates[{i}]"), "has no templateName", None),
        }
    }
    out
}

pub(crate) fn read_rollout(r: &mut Reader, v: &Yaml, at: &str) -> Option<RawRollout> {
    let name = yaml::get(v, "metadata").and_then(|m| yaml::get(m, "name")).and_then(Yaml::as_str).unwrap_or("unnamed").to_string();
    let strategy = yaml::get(v, "spec").and_then(|s| yaml::get(s, "strategy"));
    if strategy.and_then(|s| yaml::get(s, "blueGreen")).is_some() {
        r.problem(
            &format!("{at}: spec.strategy.blueGreen"),
            "blue-green rollouts switch all traffic at once and are not emulated",
            Some("emulate a canary strategy"),
        );
        return None;
    }
    let Some(canary) = strategy.and_then(|s| yaml::get(s, "canary")) else {
        r.problem(&format!("{at}: spec.strategy.canary"), "is missing", Some("canary-replay emulates the canary strategy"));
        return None;
    };
    let mut steps = Vec::new();
    if let Some(list) = yaml::get(canary, "steps") {
        for (i, step) in yaml::seq(r, list, &format!("{at}: spec.strategy.canary.steps")).iter().enumerate() {
            let path = format!("{at}: spec.strategy.canary.steps[{i}]");
            let Some((key, body)) = step.as_mapping().and_then(|m| m.iter().next()).and_then(|(k, b)| Some((k.as_str()?, b))) else {
                r.problem(&path, "is not a step", None);
                continue;
            };
            let parsed = match key {
                "setWeight" => yaml::number(r, body, &format!("{path}.setWeight")).map(|w| {
                    if !(0.0..=100.0).contains(&w) {
                        r.problem(&format!("{path}.setWeight"), format!("{w} is not a percent in [0, 100]"), None);
                    }
                    RawStep::SetWeight(w / 100.0)
                }),
                "pause" => {
                    Some(RawStep::Pause(yaml::get(body, "duration").and_then(|d| yaml::duration(r, d, &format!("{path}.pause.duration")))))
                }
                "analysis" => Some(RawStep::Analysis(template_names(r, body, &format!("{path}.analysis")))),
                other => Some(RawStep::Other(other.to_string())),
            };
            steps.extend(parsed.map(|s| (path.clone(), s)));
        }
    }
    let background = yaml::get(canary, "analysis").map(|a| {
        let path = format!("{at}: spec.strategy.canary.analysis");
        let start = yaml::get(a, "startingStep").and_then(|s| yaml::int(r, s, &format!("{path}.startingStep"))).unwrap_or(0);
        (template_names(r, a, &path), start.max(0) as usize)
    });
    Some(RawRollout { name, file: r.file.clone(), at: at.to_string(), steps, background })
}

/// The first PromQL range selector (`[5m]`, `[1h:1m]`) in a query.
fn range_selector(query: &str) -> Option<Micros> {
    let mut rest = query;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let close = after.find(']')?;
        let inner = after[..close].split(':').next().unwrap_or("");
        if let Ok(d) = crate::time::parse_duration(inner) {
            return Some(d);
        }
        rest = &after[close..];
    }
    None
}

/// An AnalysisTemplate, or a ClusterAnalysisTemplate (`cluster`).
pub(crate) fn read_template(r: &mut Reader, v: &Yaml, at: &str, cluster: bool) -> Option<Template> {
    let name = yaml::get(v, "metadata").and_then(|m| yaml::get(m, "name")).and_then(Yaml::as_str).unwrap_or("unnamed").to_string();
    let spec = yaml::get(v, "spec");
    let dry: Vec<String> = spec
        .and_then(|s| yaml::get(s, "dryRun"))
        .and_then(Yaml::as_sequence)
        .map(|l| l.iter().filter_map(|d| yaml::get(d, "metricName").and_then(Yaml::as_str).map(str::to_string)).collect())
        .unwrap_or_default();
    let Some(list) = spec.and_then(|s| yaml::get(s, "metrics")) else {
        r.problem(&format!("{at}: spec.metrics"), "is missing", None);
        return None;
    };
    let mut metrics = Vec::new();
    for (i, m) in yaml::seq(r, list, &format!("{at}: spec.metrics")).iter().enumerate() {
        let path = format!("{at}: spec.metrics[{i}]");
        let Some(name) = yaml::get(m, "name").and_then(Yaml::as_str).map(str::to_string) else {
            r.problem(&path, "has no name", None);
            continue;
        };
        let path = format!("{at}: spec.metrics[{i}] ({name})");
        let mut get_int = |key: &str| yaml::get(m, key).and_then(|x| yaml::int(r, x, &format!("{path}.{key}")));
        let (count, failure_limit, inconclusive_limit, error_limit, success_limit) = (
            get_int("count"),
            get_int("failureLimit"),
            get_int("inconclusiveLimit"),
            get_int("consecutiveErrorLimit"),
            get_int("consecutiveSuccessLimit"),
        );
        let interval = yaml::get(m, "interval").and_then(|x| yaml::duration(r, x, &format!("{path}.interval")));
        if interval == Some(0) {
            r.problem(&format!("{path}.interval"), "must be longer than 0", None);
        }
        if interval.is_none() && count.is_some_and(|c| c > 1) {
            r.problem(
                &format!("{path}.count"),
                "more than one measurement needs an interval (Argo Rollouts rejects this metric too)",
                Some("add interval, e.g. interval: 5m"),
            );
        }
        let initial_delay = yaml::get(m, "initialDelay").and_then(|x| yaml::duration(r, x, &format!("{path}.initialDelay"))).unwrap_or(0);
        let mut condition = |key: &str| {
            let text = yaml::get(m, key).and_then(|x| yaml::string(r, x, &format!("{path}.{key}")))?;
            match Condition::parse(&text) {
                Ok(c) => Some(c),
                Err(e) => {
                    r.problem(
                        &format!("{path}.{key}"),
                        format!("cannot be evaluated: {e}"),
                        Some("canary-replay evaluates result, result[i], len(), isNaN(), arithmetic, comparisons, &&, ||, !"),
                    );
                    None
                }
            }
        };
        let (success, failure) = (condition("successCondition"), condition("failureCondition"));
        let vector = [&success, &failure].iter().any(|c| c.as_ref().is_some_and(|c| c.text().contains("result[")));
        let query =
            yaml::get(m, "provider").and_then(|p| yaml::get(p, "prometheus")).and_then(|p| yaml::get(p, "query")).and_then(Yaml::as_str);
        let provider = yaml::get(m, "provider")
            .and_then(Yaml::as_mapping)
            .and_then(|p| p.keys().next())
            .and_then(Yaml::as_str)
            .filter(|p| *p != "prometheus")
            .map(str::to_string);
        let dry_run = dry.iter().any(|d| d == &name || d == ".*");
        let rules = MetricRules {
            success,
            failure,
            failure_limit: failure_limit.unwrap_or(0).max(-1),
            inconclusive_limit: inconclusive_limit.unwrap_or(0).max(0) as u32,
            consecutive_error_limit: error_limit.unwrap_or(4).max(0) as u32,
            consecutive_success_limit: success_limit.unwrap_or(0).max(0) as u32,
            // Argo's effective count: one measurement when the metric has no interval.
            count: count.map(|c| c.max(0) as u32).or(if interval.is_none() { Some(1) } else { None }),
            dry_run,
        };
        metrics.push(ArgoMetric { name, interval, initial_delay, rules, lookback: query.and_then(range_selector), vector, provider });
    }
    Some(Template { name, cluster, metrics })
}

pub(crate) fn resolve(r: &mut Reader, raw: RawRollout, templates: &BTreeMap<TemplateRef, Template>) -> Option<Rollout> {
    let r = &mut Reader { file: raw.file.clone(), problems: &mut *r.problems };
    let mut missing = false;
    let mut metrics_of = |r: &mut Reader, refs: &[TemplateRef], path: &str| -> Vec<ArgoMetric> {
        let mut out = Vec::new();
        for reference in refs {
            match templates.get(reference) {
                Some(t) => out.extend(t.metrics.iter().cloned()),
                None => {
                    missing = true;
                    let (kind, name) = (reference.kind(), &reference.name);
                    let other = TemplateRef { cluster: !reference.cluster, name: name.clone() };
                    let fix = if templates.contains_key(&other) {
                        format!(
                            "the files hold a {} \"{name}\": {}",
                            other.kind(),
                            if reference.cluster {
                                "drop clusterScope: true to use it"
                            } else {
                                "add clusterScope: true to the reference to use it"
                            }
                        )
                    } else if templates.is_empty() {
                        format!("add the {kind}'s YAML to the controller files")
                    } else {
                        format!(
                            "templates found: {}",
                            templates.keys().map(|t| format!("{} {}", t.kind(), t.name)).collect::<Vec<_>>().join(", ")
                        )
                    };
                    r.problem(path, format!("{kind} \"{name}\" is not in the controller files"), Some(&fix));
                }
            }
        }
        out
    };
    let mut caveats = Vec::new();
    let mut steps = Vec::new();
    for (path, step) in &raw.steps {
        steps.push(match step {
            RawStep::SetWeight(w) => Step::SetWeight(*w),
            RawStep::Pause(d) => Step::Pause(*d),
            RawStep::Analysis(names) => Step::Analysis(metrics_of(r, names, path)),
            RawStep::Other(kind) => {
                caveats.push(format!("step `{kind}` ({path}) does not change the candidate's share of requests; it is passed over"));
                Step::Skipped(kind.clone())
            }
        });
    }
    let background =
        raw.background.as_ref().map(|(names, start)| (metrics_of(r, names, &format!("{}: spec.strategy.canary.analysis", raw.at)), *start));
    if missing {
        return None;
    }
    let mut rollout = Rollout { name: raw.name, file: raw.file, steps, background, caveats };
    let providers: Vec<String> = rollout
        .metrics()
        .filter_map(|m| {
            m.provider
                .as_ref()
                .map(|p| format!("metric {} queries the {p} provider: its mapping stands for what that provider returns", m.name))
        })
        .collect();
    for note in providers {
        if !rollout.caveats.contains(&note) {
            rollout.caveats.push(note);
        }
    }
    Some(rollout)
}

/// One metric of a running AnalysisRun.
struct MetricRun<'m> {
    m: &'m ArgoMetric,
    mapping: Mapping,
    lookback: Micros,
    result: MetricResult,
    phase: Phase,
    next: Option<Micros>,
}

struct AnalysisRun<'m> {
    what: &'static str,
    metrics: Vec<MetricRun<'m>>,
    /// The window of the measurement that completed the run, for grading.
    deciding: (Micros, Micros),
}

impl<'m> AnalysisRun<'m> {
    /// `file`: the Rollout's, whose metrics' mappings apply.
    fn start(what: &'static str, metrics: &'m [ArgoMetric], spec: &Spec, file: &str, default_window: Micros, t: Micros) -> Self {
        let metrics = metrics
            .iter()
            .map(|m| {
                let mapping = spec.mapping_of(file, &m.name).expect("validated: every metric is mapped");
                let lookback = mapping.window.or(m.lookback).or(m.interval).unwrap_or(default_window);
                MetricRun { m, mapping, lookback, result: MetricResult::default(), phase: Phase::Pending, next: Some(t + m.initial_delay) }
            })
            .collect();
        AnalysisRun { what, metrics, deciding: (t, t) }
    }

    fn next_time(&self) -> Option<Micros> {
        self.metrics.iter().filter(|m| !m.phase.completed()).filter_map(|m| m.next).min()
    }

    fn phase(&self) -> Phase {
        let phases: Vec<(Phase, bool)> = self.metrics.iter().map(|m| (m.phase, m.m.rules.dry_run)).collect();
        run_phase(&phases)
    }

    /// Takes the measurements due at `t`, then assesses the run as the controller does.
    fn measure(&mut self, t: Micros, probe: &Probe, schedule: &Schedule, events: &mut Events) {
        for run in self.metrics.iter_mut().filter(|m| !m.phase.completed() && m.next == Some(t)) {
            let value = probe.measure(&run.mapping, t, run.lookback, schedule, false);
            let result = match (value, run.m.vector) {
                (Some(v), true) => Value::Vector(vec![v]),
                (Some(v), false) => Value::Number(v),
                (None, _) => Value::Vector(Vec::new()),
            };
            let phase = run.m.rules.judge(&result);
            run.result.record(phase);
            run.next = match (run.m.interval, phase) {
                (Some(i), _) => Some(t + i),
                (None, Phase::Error) => Some(t + ERROR_RETRY),
                (None, _) => None,
            };
            run.phase = run.result.phase(&run.m.rules, false);
            let shown = value.map_or("an empty result (no series yet)".to_string(), crate::simulate::round);
            events.measurement(
                t,
                schedule,
                format!("{} {}: {} = {shown} → {:?}", self.what, run.m.name, run.mapping.describe(), phase),
                phase != Phase::Successful,
            );
            if run.phase.completed() {
                self.deciding = (t - run.lookback, t);
            }
        }
        let terminating =
            self.metrics.iter().any(|m| !m.m.rules.dry_run && matches!(m.phase, Phase::Failed | Phase::Error | Phase::Inconclusive));
        if terminating {
            self.terminate();
        }
    }

    /// Stops the run: metrics still running complete unless their limits say otherwise.
    fn terminate(&mut self) {
        for run in self.metrics.iter_mut().filter(|m| !m.phase.completed()) {
            run.phase = run.result.phase(&run.m.rules, true);
        }
    }

    fn describe(&self) -> String {
        let worst: Vec<String> = self
            .metrics
            .iter()
            .filter(|m| !matches!(m.phase, Phase::Successful) && !m.m.rules.dry_run)
            .map(|m| {
                format!(
                    "{} {:?} after {} measurements ({} failed, {} inconclusive, {} errors)",
                    m.m.name,
                    m.phase,
                    m.result.count + m.result.errors,
                    m.result.failed,
                    m.result.inconclusive,
                    m.result.errors
                )
            })
            .collect();
        worst.join("; ")
    }
}

pub fn emulate(ro: &Rollout, spec: &Spec, probe: &Probe, origin: Micros, end: Micros, default_window: Micros) -> Emulated {
    let mut events = Events::default();
    let mut schedule = Schedule::default();
    let mut t = origin;
    let mut step = 0usize;
    let mut pause_until: Option<Micros> = None;
    let mut inline: Option<AnalysisRun> = None;
    let mut background: Option<AnalysisRun> = None;
    let mut paused: Option<(Micros, String)> = None;
    let finish = |outcome: Outcome, at: Micros, reason: String, window: (Micros, Micros), schedule: Schedule, events: Events| {
        Emulated::decided(outcome, at, reason, window, schedule, events, ro.caveats.clone())
    };
    loop {
        if paused.is_none() {
            while step < ro.steps.len() {
                if background.is_none() {
                    if let Some((metrics, start)) = &ro.background {
                        if step >= *start {
                            background = Some(AnalysisRun::start("background analysis", metrics, spec, &ro.file, default_window, t));
                            events.push(t, &schedule, format!("background analysis starts at step {step}"));
                        }
                    }
                }
                match &ro.steps[step] {
                    Step::SetWeight(w) => {
                        schedule.set(t, *w);
                        events.push(t, &schedule, format!("step {step}: setWeight {}", w * 100.0));
                        step += 1;
                    }
                    Step::Pause(duration) => {
                        let wait = duration.or(spec.resume_paused_after);
                        match wait {
                            Some(d) => {
                                let until = *pause_until.get_or_insert_with(|| {
                                    events.push(t, &schedule, format!("step {step}: pause {}", format_duration(d)));
                                    t + d
                                });
                                if t < until {
                                    break;
                                }
                                pause_until = None;
                                step += 1;
                            }
                            None => {
                                paused =
                                    Some((t, format!("paused indefinitely at step {step} (pause: {{}}), waiting for someone to promote")));
                                break;
                            }
                        }
                    }
                    Step::Analysis(metrics) => {
                        let run = inline.get_or_insert_with(|| {
                            events.push(t, &schedule, format!("step {step}: analysis starts"));
                            AnalysisRun::start("analysis", metrics, spec, &ro.file, default_window, t)
                        });
                        match run.phase() {
                            Phase::Successful => {
                                inline = None;
                                step += 1;
                            }
                            Phase::Failed | Phase::Error => {
                                let reason = format!("step {step} analysis {:?}: {}; the rollout aborts", run.phase(), run.describe());
                                return finish(Outcome::RolledBack, t, reason, run.deciding, schedule, events);
                            }
                            Phase::Inconclusive => {
                                paused = Some((
                                    t,
                                    format!(
                                        "step {step} analysis Inconclusive: {}; the rollout pauses for a person to decide",
                                        run.describe()
                                    ),
                                ));
                                inline = None;
                                break;
                            }
                            Phase::Pending | Phase::Running => break,
                        }
                    }
                    Step::Skipped(_) => step += 1,
                }
            }
            if step == ro.steps.len() && paused.is_none() {
                if let Some(run) = background.as_mut() {
                    run.terminate();
                }
                let last = ro.steps.len();
                return finish(
                    Outcome::Promoted,
                    t,
                    format!("all {last} steps completed; the candidate takes all traffic"),
                    (origin, t),
                    schedule,
                    events,
                );
            }
        }
        let next = [
            pause_until.filter(|_| paused.is_none()),
            inline.as_ref().and_then(AnalysisRun::next_time),
            background.as_ref().and_then(AnalysisRun::next_time),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next.filter(|n| *n < end) else {
            let (at, reason) = paused.unwrap_or((t, "the traffic ended before the rollout completed".to_string()));
            return finish(Outcome::Held, at, reason, (origin, at), schedule, events);
        };
        t = next;
        for run in [&mut inline, &mut background].into_iter().flatten() {
            run.measure(t, probe, &schedule, &mut events);
        }
        if let Some(run) = &background {
            match run.phase() {
                Phase::Failed | Phase::Error => {
                    let reason = format!("background analysis {:?}: {}; the rollout aborts", run.phase(), run.describe());
                    return finish(Outcome::RolledBack, t, reason, run.deciding, schedule, events);
                }
                Phase::Inconclusive if paused.is_none() => {
                    paused = Some((
                        t,
                        format!("background analysis Inconclusive: {}; the rollout pauses for a person to decide", run.describe()),
                    ));
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lookback_comes_from_the_first_range_selector() {
        assert_eq!(range_selector("sum(rate(errors[5m])) / sum(rate(requests[5m]))"), Some(300_000_000));
        assert_eq!(range_selector("max_over_time(x[1h:1m])"), Some(crate::time::MICROS_PER_HOUR));
        assert_eq!(range_selector("x{a=\"[b]\"} + y[10m]"), Some(600_000_000));
        assert_eq!(range_selector("up"), None);
    }
}
