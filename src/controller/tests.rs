//! The controllers' documented behaviour, replayed on synthetic traffic through the same reading
//! path as a scenario (files on disk, `[controller]` mapping).

use std::collections::BTreeMap;

use super::probe::Probe;
use super::spec::{self, RawController, RawMapping, Spec};
use super::{emulate, Emulated};
use crate::error::Problem;
use crate::simulate::metrics::tests::scale;
use crate::simulate::replay::{Cells, Output, Row};
use crate::simulate::Outcome;
use crate::time::Micros;

const HOUR: Micros = crate::time::MICROS_PER_HOUR;

/// `per_hour` requests an hour for `hours` hours; in the hours where `bad` says so, every request
/// the candidate serves fails.
fn rows(hours: i64, per_hour: i64, bad: impl Fn(i64) -> bool) -> Vec<Row> {
    (0..hours * per_hour)
        .map(|i| {
            let time = i * HOUR / per_hour;
            let ok = Output { error: false, score: Some(0.3), latency_ms: None };
            let candidate = Output { error: bad(time / HOUR), ..ok };
            Row::new(time, None, None, 0, (i as f64 * 0.618_033_988_749_895).fract(), [ok, candidate])
        })
        .collect()
}

/// `rows`' traffic where the candidate fails the requests `fails` picks (by index and row).
fn failing_where(hours: i64, per_hour: i64, fails: impl Fn(usize, &Row) -> bool) -> Vec<Row> {
    rows(hours, per_hour, |_| false)
        .into_iter()
        .enumerate()
        .map(|(i, mut r)| {
            let fail = fails(i, &r);
            r.update_output(1, |out| out.error = fail);
            r
        })
        .collect()
}

fn errors_mapping() -> BTreeMap<String, RawMapping> {
    let mut m = BTreeMap::new();
    m.insert("errors".to_string(), RawMapping { metric: "error_rate".into(), arm: None, scale: None, offset: None, window: None });
    m
}

/// Loads `files` (name, text) written to a temporary folder, with `metrics` as the mapping.
fn load(files: &[(&str, &str)], metrics: BTreeMap<String, RawMapping>, kayenta: Option<spec::RawKayenta>) -> Result<Spec, Vec<Problem>> {
    load_ab(files, metrics, kayenta, None)
}

fn load_ab(
    files: &[(&str, &str)],
    metrics: BTreeMap<String, RawMapping>,
    kayenta: Option<spec::RawKayenta>,
    ab_segment: Option<BTreeMap<String, Vec<String>>>,
) -> Result<Spec, Vec<Problem>> {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let raw = RawController {
        files: files.iter().map(|(n, _)| n.to_string()).collect(),
        mapping: None,
        metrics,
        kayenta,
        resume_paused_after: None,
        ab_segment,
        from_flag: 0,
    };
    let mut problems = Vec::new();
    let spec = spec::load(&raw, dir.path(), "s.toml", HOUR, &["origin".to_string()], &mut problems);
    spec.ok_or(problems)
}

fn replay(spec: &Spec, rows: &[Row], hours: i64) -> Emulated {
    let probe = Probe::new(rows, scale());
    emulate(&spec.controllers[0], spec, &probe, &Cells::default(), 0, hours * HOUR, HOUR)
}

fn rollout(steps: &str, background: &str) -> String {
    format!("kind: Rollout\nmetadata: {{name: r}}\nspec:\n  strategy:\n    canary:\n{background}      steps:\n{steps}")
}

fn template(name: &str, metrics: &str) -> String {
    format!("---\nkind: AnalysisTemplate\nmetadata: {{name: {name}}}\nspec:\n{metrics}")
}

#[test]
fn argo_a_metric_without_conditions_always_succeeds() {
    let yaml = rollout("        - setWeight: 20\n        - analysis: {templates: [{templateName: t}]}\n        - setWeight: 50\n        - pause: {duration: 1h}\n", "")
        + &template("t", "  metrics:\n    - name: errors\n      provider: {prometheus: {query: 'x[1h]'}}\n");
    let spec = load(&[("r.yaml", &yaml)], errors_mapping(), None).unwrap();
    // Every candidate request fails, yet the measurement without a condition is Successful.
    let run = replay(&spec, &rows(10, 100, |_| true), 10);
    assert_eq!(run.outcome, Outcome::Promoted, "{:?}", run.events.list);
    assert_eq!(run.decided_at, HOUR);
}

#[test]
fn argo_background_failures_count_in_total_and_abort_past_the_limit() {
    let background = "      analysis: {templates: [{templateName: health}]}\n";
    let yaml = rollout("        - setWeight: 10\n        - pause: {duration: 2d}\n", background)
        + &template("health", "  metrics:\n    - name: errors\n      interval: 1h\n      failureLimit: 2\n      successCondition: result[0] <= 0.05\n      provider: {prometheus: {query: 'sum(rate(e[1h]))'}}\n");
    let spec = load(&[("r.yaml", &yaml)], errors_mapping(), None).unwrap();
    // Bad hours 4, 6 and 8 (not in a row): the third failure (measured at 9 h over [8 h, 9 h)) exceeds failureLimit 2.
    let run = replay(&spec, &rows(24, 100, |h| h == 4 || h == 6 || h == 8), 24);
    assert_eq!(run.outcome, Outcome::RolledBack, "{:?}", run.events.list);
    assert_eq!(run.decided_at, 9 * HOUR);
    assert_eq!(run.deciding_window, (8 * HOUR, 9 * HOUR));
    assert!(run.reason.contains("3 failed"), "{}", run.reason);
    assert_eq!(run.schedule.at(9 * HOUR), 0.0, "an abort sends every request back to stable");
}

#[test]
fn argo_both_conditions_unmet_is_inconclusive_and_pauses_the_rollout() {
    let yaml = rollout("        - setWeight: 10\n        - analysis: {templates: [{templateName: t}]}\n        - setWeight: 100\n", "")
        + &template("t", "  metrics:\n    - name: errors\n      interval: 1h\n      count: 3\n      successCondition: result[0] < 0.1\n      failureCondition: result[0] > 0.9\n      provider: {prometheus: {query: 'e[1h]'}}\n");
    let spec = load(&[("r.yaml", &yaml)], errors_mapping(), None).unwrap();
    // Every candidate request of hour 1 fails: measured at 2 h, 1 > 0.9 meets the failure condition.
    let run = replay(&spec, &rows(24, 100, |h| h == 1), 24);
    assert_eq!((run.outcome, run.decided_at), (Outcome::RolledBack, 2 * HOUR), "{:?}", run.events.list);
    // Every second request fails: about 0.5 meets neither condition.
    let half = failing_where(24, 100, |i, _| i % 2 == 0);
    let run = replay(&spec, &half, 24);
    assert_eq!(run.outcome, Outcome::Held, "{:?}", run.events.list);
    assert!(run.reason.contains("Inconclusive"), "{}", run.reason);
    assert_eq!(run.schedule.at(23 * HOUR), 0.1, "a paused rollout keeps its weight");
}

#[test]
fn argo_dry_run_metrics_are_measured_but_never_decide() {
    let yaml = rollout("        - setWeight: 10\n        - analysis: {templates: [{templateName: t}]}\n", "")
        + &template("t", "  dryRun: [{metricName: errors}]\n  metrics:\n    - name: errors\n      interval: 1h\n      count: 3\n      successCondition: result[0] < 0.01\n      provider: {prometheus: {query: 'e[1h]'}}\n");
    let spec = load(&[("r.yaml", &yaml)], errors_mapping(), None).unwrap();
    let run = replay(&spec, &rows(24, 100, |_| true), 24);
    assert_eq!(run.outcome, Outcome::Promoted, "{:?}", run.events.list);
}

#[test]
fn argo_a_series_that_does_not_exist_yet_errs_and_too_many_errors_abort() {
    // The candidate gets no traffic for 10 h: each measurement is an empty result, so result[0]
    // errs; the fifth error in a row exceeds the default consecutiveErrorLimit of 4.
    let background = "      analysis: {templates: [{templateName: t}]}\n";
    let yaml = rollout("        - pause: {duration: 10h}\n        - setWeight: 10\n", background)
        + &template("t", "  metrics:\n    - name: errors\n      interval: 1h\n      successCondition: result[0] < 0.01\n      provider: {prometheus: {query: 'e[1h]'}}\n");
    let spec = load(&[("r.yaml", &yaml)], errors_mapping(), None).unwrap();
    let run = replay(&spec, &rows(24, 100, |_| false), 24);
    assert_eq!(run.outcome, Outcome::RolledBack, "{:?}", run.events.list);
    assert_eq!(run.decided_at, 4 * HOUR);
    assert!(run.reason.contains("Error"), "{}", run.reason);
}

#[test]
fn flagger_counts_failed_checks_that_are_not_consecutive() {
    let canary = "kind: Canary\nmetadata: {name: c}\nspec:\n  analysis:\n    interval: 1h\n    threshold: 2\n    stepWeight: 10\n    maxWeight: 50\n    metrics:\n      - name: errors\n        interval: 1h\n        thresholdRange: {max: 0.05}\n";
    let spec = load(&[("c.yaml", canary)], errors_mapping(), None).unwrap();
    // Hour 1 bad (checked at 2 h), hour 2 fine, hour 3 bad (checked at 4 h): two failures with a
    // pass between; the counter does not reset, and the rollback comes at the next tick.
    let run = replay(&spec, &rows(24, 100, |h| h == 1 || h == 3), 24);
    assert_eq!(run.outcome, Outcome::RolledBack, "{:?}", run.events.list);
    assert_eq!(run.decided_at, 5 * HOUR);
    // The weight advanced on the passing checks only: 10 at 0 h, 20 at 1 h, stays at 2 h, 30 at 3 h.
    assert_eq!(run.schedule.at(4 * HOUR), 0.3);
    // The same failures with threshold 3: the canary goes on to promote at 50%.
    let lenient = canary.replace("threshold: 2", "threshold: 3");
    let spec = load(&[("c.yaml", &lenient)], errors_mapping(), None).unwrap();
    let run = replay(&spec, &rows(24, 100, |h| h == 1 || h == 3), 24);
    assert_eq!(run.outcome, Outcome::Promoted, "{:?}", run.events.list);
}

#[test]
fn flagger_builtin_success_rate_needs_no_mapping() {
    let canary = "kind: Canary\nmetadata: {name: c}\nspec:\n  analysis:\n    interval: 1h\n    threshold: 1\n    stepWeight: 25\n    maxWeight: 50\n    metrics:\n      - name: request-success-rate\n        interval: 1h\n        thresholdRange: {min: 99}\n";
    let spec = load(&[("c.yaml", canary)], BTreeMap::new(), None).unwrap();
    let run = replay(&spec, &rows(24, 100, |_| false), 24);
    assert_eq!((run.outcome, run.decided_at), (Outcome::Promoted, 2 * HOUR), "{:?}", run.events.list);
}

#[test]
fn flagger_ab_testing_sends_the_matched_segment_to_the_candidate() {
    let canary = "kind: Canary\nmetadata: {name: c}\nspec:\n  analysis:\n    interval: 1h\n    threshold: 1\n    iterations: 3\n    match:\n      - headers: {x-airport: {exact: JFK}}\n    metrics:\n      - name: errors\n        interval: 1h\n        thresholdRange: {max: 0.05}\n";
    let text = messages(&load(&[("c.yaml", canary)], errors_mapping(), None).unwrap_err());
    assert!(text.contains("controller.ab_segment: is missing: a Flagger canary tests A/B (analysis.match)"), "{text}");
    let ab = BTreeMap::from([("origin".to_string(), vec!["JFK".to_string()])]);
    let spec = load_ab(&[("c.yaml", canary)], errors_mapping(), None, Some(ab)).unwrap();
    let mut cells = Cells::new(vec!["origin".into()]);
    let (jfk, lga) = (cells.id("JFK"), cells.id("LGA"));
    // Two origins; the candidate fails on `bad` origin's requests only.
    let traffic = |bad: u32| -> Vec<Row> {
        rows(24, 100, |_| false)
            .into_iter()
            .enumerate()
            .map(|(i, mut r)| {
                r.cell = if i % 2 == 0 { jfk } else { lga };
                let fail = r.cell == bad;
                r.update_output(1, |out| out.error = fail);
                r
            })
            .collect()
    };
    let probe_of = |rows: &[Row]| emulate(&spec.controllers[0], &spec, &Probe::new(rows, scale()), &cells, 0, 24 * HOUR, HOUR);
    // Failing on LGA, which A/B never routes to the candidate: 3 passing iterations, then promoted.
    let rows_lga = traffic(lga);
    let run = probe_of(&rows_lga);
    assert_eq!((run.outcome, run.decided_at), (Outcome::Promoted, 3 * HOUR), "{:?}", run.events.list);
    let periods = run.run(0, 24 * HOUR, cells.len()).periods;
    assert_eq!(
        (periods[0].weights.clone(), periods[0].end),
        (vec![1.0, 0.0], 3 * HOUR),
        "every JFK request, no LGA one, until the promotion"
    );
    assert_eq!(periods.last().unwrap().weights, vec![1.0, 1.0]);
    // Failing on JFK: the first check fails, the next tick rolls back.
    let rows_jfk = traffic(jfk);
    let run = probe_of(&rows_jfk);
    assert_eq!((run.outcome, run.decided_at), (Outcome::RolledBack, 2 * HOUR), "{:?}", run.events.list);
}

fn kayenta_settings() -> spec::RawKayenta {
    spec::RawKayenta {
        weight: Some(20.0),
        interval: Some("2h".into()),
        lifetime: Some("8h".into()),
        step: Some("20m".into()),
        ..Default::default()
    }
}

#[test]
fn kayenta_a_critical_failure_at_an_interim_judgment_fails_at_once() {
    let config = r#"{"name": "k", "metrics": [{"name": "errors", "groups": ["health"], "analysisConfigurations": {"canary": {"direction": "increase", "critical": true}}}]}"#;
    let spec = load(&[("k.json", config)], errors_mapping(), Some(kayenta_settings())).unwrap();
    // About 60% of the candidate's requests fail, unevenly from one 20-minute point to the next.
    let failing = failing_where(24, 100, |i, _| (i * 7919) % 10 < 6);
    let run = replay(&spec, &failing, 24);
    assert_eq!((run.outcome, run.decided_at), (Outcome::RolledBack, 2 * HOUR), "{:?}", run.events.list);
    assert!(run.reason.contains("interim score 0"), "{}", run.reason);
    // A healthy candidate passes every judgment and is promoted at the end of the lifetime.
    let run = replay(&spec, &rows(24, 100, |_| false), 24);
    assert_eq!((run.outcome, run.decided_at), (Outcome::Promoted, 8 * HOUR), "{:?}", run.events.list);
}

#[test]
fn kayenta_thresholds_come_from_an_execution_request() {
    let config = r#"{"name": "k", "metrics": [{"name": "errors", "analysisConfigurations": {"canary": {"direction": "increase"}}}]}"#;
    let request = r#"{"scopes": {}, "thresholds": {"pass": 90, "marginal": 50}}"#;
    let spec = load(
        &[("k.json", config), ("request.json", request)],
        errors_mapping(),
        Some(spec::RawKayenta { lifetime: Some("1d".into()), ..Default::default() }),
    )
    .unwrap();
    let k = spec.kayenta.unwrap();
    assert_eq!((k.pass, k.marginal, k.weight, k.interval), (90.0, 50.0, 0.1, 24 * HOUR));
}

fn messages(problems: &[Problem]) -> String {
    problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n")
}

#[test]
fn unmapped_metrics_missing_templates_and_header_routing_are_named() {
    let yaml = rollout("        - analysis: {templates: [{templateName: missing}]}\n", "")
        + &template("t", "  metrics:\n    - name: latency\n      provider: {prometheus: {query: 'x'}}\n");
    let text = messages(&load(&[("r.yaml", &yaml)], errors_mapping(), None).unwrap_err());
    assert!(
        text.contains(
            "r.yaml: document 1 (kind Rollout): spec.strategy.canary.steps[0]: AnalysisTemplate \"missing\" is not in the controller files"
        ),
        "{text}"
    );
    assert!(text.contains("templates found: AnalysisTemplate t"), "{text}");

    let yaml = rollout("        - analysis: {templates: [{templateName: t}]}\n", "")
        + &template("t", "  metrics:\n    - name: latency\n      provider: {prometheus: {query: 'x'}}\n");
    let text = messages(&load(&[("r.yaml", &yaml)], errors_mapping(), None).unwrap_err());
    assert!(text.contains("metric \"latency\" of Rollout r is not mapped"), "{text}");
    assert!(text.contains("fix: add [controller.metrics.\"latency\"]"), "{text}");

    let canary =
        "kind: Canary\nmetadata: {name: c}\nspec:\n  analysis:\n    stepWeight: 10\n    match: [{headers: {x-canary: {exact: insider}}}]\n";
    let text = messages(&load(&[("c.yaml", canary)], errors_mapping(), None).unwrap_err());
    assert!(text.contains("c.yaml: document 1 (kind Canary): spec.analysis.match: A/B testing needs iterations"), "{text}");

    let text = messages(&load(&[("bad.yaml", "kind: Rollout\n  spec: [")], errors_mapping(), None).unwrap_err());
    assert!(text.contains("bad.yaml: document 1: is not valid YAML"), "{text}");

    let text = messages(&load(&[("d.yaml", "kind: Deployment\nmetadata: {name: d}\n")], errors_mapping(), None).unwrap_err());
    assert!(text.contains("kind \"Deployment\" is not a controller resource"), "{text}");

    let yaml = rollout("        - setWeight: 10\n", "")
        + &template("t", "  metrics:\n    - name: errors\n      successCondition: result[0] <<< 1\n");
    let text = messages(&load(&[("r.yaml", &yaml)], errors_mapping(), None).unwrap_err());
    assert!(text.contains("spec.metrics[0] (errors).successCondition: cannot be evaluated"), "{text}");

    let mut bad = errors_mapping();
    bad.get_mut("errors").unwrap().metric = "eror_rate".into();
    let text = messages(&load(&[("r.yaml", &rollout("        - setWeight: 10\n", ""))], bad, None).unwrap_err());
    assert!(
        text.contains("controller.metrics.errors.metric: \"eror_rate\" is not a canary-replay metric")
            && text.contains("did you mean \"error_rate\""),
        "{text}"
    );
}

/// The tune command's exports read back as controller files: every metric is named, and the
/// Flagger canary climbs every stage to promotion on healthy traffic (a weight listed twice in
/// `stepWeights` would stop it for good).
#[test]
fn tuned_exports_replay_as_controllers() {
    let mut problems = Vec::new();
    let shape = crate::policy::TrafficShape { segments: &[], labelled: true };
    let ramp: crate::policy::raw::RawRamp = toml::from_str(
        "stages = [{ weight = 5, bake = \"2h\" }, { weight = 25, bake = \"4h\" }, { weight = 100 }]\ncheck_every = \"1h\"\n",
    )
    .unwrap();
    let gate: crate::policy::raw::RawGate = toml::from_str("metric = \"error_rate\"\nkind = \"regression\"\n").unwrap();
    let raw = crate::policy::RawPolicy { ramp: Some(ramp), gates: vec![gate], ..Default::default() };
    let policy = crate::policy::Policy::from_raw(&raw, &shape, "s.toml", &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    let mut mapping = BTreeMap::new();
    for gate in &policy.gates {
        let name = gate.name().replace(['_', ' '], "-");
        mapping.insert(
            name,
            RawMapping { metric: "error_rate".into(), arm: Some("difference".into()), scale: None, offset: None, window: None },
        );
    }
    let flagger = crate::controller::export::flagger(&policy, "tuned");
    assert!(flagger.contains("stepWeights: [5, 25]") && flagger.contains("interval: 4h"), "{flagger}");
    let spec = load(&[("flagger.yaml", &flagger)], mapping.clone(), None).unwrap();
    let run = replay(&spec, &rows(48, 100, |_| false), 48);
    // 5% at 0 h, 25% at 4 h, promoted at the next passing check (8 h).
    assert_eq!((run.outcome, run.decided_at), (Outcome::Promoted, 8 * HOUR), "{:?}", run.events.list);
    let argo = crate::controller::export::argo(&policy, "tuned");
    let spec = load(&[("argo.yaml", &argo)], mapping, None).unwrap();
    let run = replay(&spec, &rows(48, 100, |_| false), 48);
    assert_eq!(run.outcome, Outcome::Promoted, "{:?}", run.events.list);
}

/// STATS.md's Kayenta example, end to end: ten hourly points per arm whose shift is significant
/// (p < 0.01) but whose 98% interval [0.40, 4.20] does not clear 0.25 × 2.30, so the metric passes
/// and the canary is promoted.
#[test]
fn kayenta_a_wide_interval_passes_despite_a_significant_shift() {
    const CANARY: [f64; 10] = [12.1, 14.3, 11.8, 15.2, 13.9, 16.4, 14.8, 13.1, 15.9, 17.2];
    const BASELINE: [f64; 10] = [11.2, 12.4, 10.9, 13.0, 12.2, 11.7, 13.5, 12.8, 11.5, 12.9];
    let config = r#"{"name": "k", "metrics": [{"name": "latency", "analysisConfigurations": {"canary": {"direction": "increase", "critical": true}}}]}"#;
    let mut metrics = BTreeMap::new();
    metrics.insert("latency".to_string(), RawMapping { metric: "latency_mean".into(), arm: None, scale: None, offset: None, window: None });
    let settings = spec::RawKayenta { weight: Some(50.0), lifetime: Some("10h".into()), step: Some("1h".into()), ..Default::default() };
    let spec = load(&[("k.json", config)], metrics, Some(settings)).unwrap();
    // Each hour one request the candidate serves (u < 0.5) and one the stable model serves.
    let mut traffic = Vec::new();
    for (i, (c, b)) in CANARY.iter().zip(BASELINE).enumerate() {
        let at = |minutes: i64| i as i64 * HOUR + minutes * crate::time::MICROS_PER_MINUTE;
        let output = |ms: f64| Output { error: false, score: Some(0.3), latency_ms: Some(ms) };
        traffic.push(Row::new(at(10), None, None, 0, 0.1, [output(0.0), output(*c)]));
        traffic.push(Row::new(at(20), None, None, 0, 0.9, [output(b), output(0.0)]));
    }
    let run = replay(&spec, &traffic, 12);
    assert_eq!((run.outcome, run.decided_at), (Outcome::Promoted, 10 * HOUR), "{:?}", run.events.list);
    assert!(run.reason.contains("final score 100"), "{}", run.reason);
    // The same points shifted by 5: the interval clears the band, the critical metric fails.
    let shifted: Vec<Row> = traffic
        .iter()
        .map(|r| {
            let mut r = *r;
            if r.u < 0.5 {
                r.update_output(1, |out| out.latency_ms = out.latency_ms.map(|ms| ms + 5.0));
            }
            r
        })
        .collect();
    let run = replay(&spec, &shifted, 12);
    assert_eq!(run.outcome, Outcome::RolledBack, "{:?}", run.events.list);
    assert!(run.reason.contains("critical metric latency was High"), "{}", run.reason);
}

/// What a Prometheus query returns: an empty result while the arm has served nothing (the
/// series does not exist), NaN once it exists but the window is empty, else the value.
#[test]
fn a_query_is_empty_before_the_series_exists_and_nan_on_an_empty_window() {
    use super::probe::Schedule;
    // Requests in hours 0-1 and 4-5 only.
    let traffic: Vec<Row> = rows(6, 100, |_| false).into_iter().filter(|r| !(2 * HOUR..4 * HOUR).contains(&r.time)).collect();
    let probe = Probe::new(&traffic, scale());
    let mut schedule = Schedule::default();
    schedule.set(HOUR, 0.5);
    let errors =
        spec::Mapping { metric: crate::policy::Metric::ErrorRate, arm: spec::Arm::Candidate, scale: 1.0, offset: 0.0, window: None };
    assert_eq!(probe.measure(&errors, HOUR, HOUR, &schedule, false), None, "no candidate request yet");
    assert_eq!(probe.measure(&errors, 2 * HOUR, HOUR, &schedule, false), Some(0.0));
    assert!(probe.measure(&errors, 4 * HOUR, HOUR, &schedule, false).unwrap().is_nan(), "the series exists, the window is empty");
    // The stable model serves from the first request, before any weight is set.
    let stable = spec::Mapping { arm: spec::Arm::Stable, ..errors.clone() };
    assert_eq!(probe.measure(&stable, HOUR, HOUR, &Schedule::default(), false), Some(0.0));
    // A success rate in percent: error rate × −100 + 100.
    let success = spec::Mapping { scale: -100.0, offset: 100.0, ..errors };
    assert_eq!(probe.measure(&success, 2 * HOUR, HOUR, &schedule, false), Some(100.0));
}

#[test]
fn argo_an_indefinite_pause_holds_unless_someone_resumes_it() {
    let yaml = rollout("        - setWeight: 10\n        - pause: {}\n        - setWeight: 50\n", "");
    let spec = load(&[("r.yaml", &yaml)], errors_mapping(), None).unwrap();
    let run = replay(&spec, &rows(24, 100, |_| false), 24);
    assert_eq!((run.outcome, run.decided_at), (Outcome::Held, 0), "{:?}", run.events.list);
    assert!(run.reason.contains("paused indefinitely at step 1"), "{}", run.reason);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.yaml"), &yaml).unwrap();
    let raw = RawController { files: vec!["r.yaml".into()], resume_paused_after: Some("6h".into()), ..Default::default() };
    let mut problems = Vec::new();
    let spec = spec::load(&raw, dir.path(), "s.toml", HOUR, &[], &mut problems).unwrap();
    let run = replay(&spec, &rows(24, 100, |_| false), 24);
    assert_eq!((run.outcome, run.decided_at), (Outcome::Promoted, 6 * HOUR), "{:?}", run.events.list);
}

#[test]
fn argo_more_than_one_measurement_without_an_interval_is_refused() {
    let yaml = rollout("        - analysis: {templates: [{templateName: t}]}\n", "")
        + &template("t", "  metrics:\n    - name: errors\n      count: 3\n      successCondition: result < 1\n");
    let text = messages(&load(&[("r.yaml", &yaml)], errors_mapping(), None).unwrap_err());
    assert!(text.contains("spec.metrics[0] (errors).count: more than one measurement needs an interval"), "{text}");
}

#[test]
fn kayenta_begins_late_and_judges_a_sliding_lookback() {
    let config = r#"{"name": "k", "metrics": [{"name": "errors", "analysisConfigurations": {"canary": {"direction": "increase", "critical": true}}}]}"#;
    let settings = spec::RawKayenta {
        weight: Some(20.0),
        begin_after: Some("2h".into()),
        lifetime: Some("6h".into()),
        interval: Some("2h".into()),
        lookback: Some("2h".into()),
        step: Some("20m".into()),
        ..Default::default()
    };
    let spec = load(&[("k.json", config)], errors_mapping(), Some(settings)).unwrap();
    // Failing requests only in hours 0-1, before the analysis begins: never judged.
    let failing = failing_where(24, 100, |i, r| r.time < 2 * HOUR && (i * 7919) % 10 < 6);
    let run = replay(&spec, &failing, 24);
    assert_eq!((run.outcome, run.decided_at), (Outcome::Promoted, 8 * HOUR), "{:?}", run.events.list);
    // The candidate served its 20% from the first request, analysis or not.
    assert_eq!(run.schedule.at(0), 0.2);
}

#[test]
fn a_shared_mapping_file_is_overridden_key_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"{"name": "k", "metrics": [{"name": "errors", "analysisConfigurations": {"canary": {"direction": "increase"}}}]}"#;
    std::fs::write(dir.path().join("k.json"), config).unwrap();
    std::fs::write(
        dir.path().join("metrics.toml"),
        "[metrics.errors]\nmetric = \"error_rate\"\n\n[kayenta]\nlifetime = \"2d\"\nweight = 5\n",
    )
    .unwrap();
    let raw = RawController {
        files: vec!["k.json".into()],
        mapping: Some("metrics.toml".into()),
        kayenta: Some(spec::RawKayenta { weight: Some(20.0), ..Default::default() }),
        ..Default::default()
    };
    let mut problems = Vec::new();
    let spec = spec::load(&raw, dir.path(), "s.toml", HOUR, &[], &mut problems).unwrap_or_else(|| panic!("{problems:?}"));
    let k = spec.kayenta.unwrap();
    assert_eq!((k.weight, k.lifetime), (0.2, 48 * HOUR), "the scenario's weight, the file's lifetime");
    assert_eq!(spec.mapping["errors"].metric, crate::policy::Metric::ErrorRate);
    // A mapping file that is not TOML is named with the parser's line.
    std::fs::write(dir.path().join("metrics.toml"), "[metrics.errors\nmetric = 1\n").unwrap();
    let mut problems = Vec::new();
    assert!(spec::load(&raw, dir.path(), "s.toml", HOUR, &[], &mut problems).is_none());
    let text = messages(&problems);
    assert!(text.contains("metrics.toml: is not a mapping file: TOML parse error at line 1"), "{text}");
}

#[test]
fn every_other_bad_input_is_named_with_its_key() {
    let expect = |problems: Vec<Problem>, needle: &str| {
        let text = messages(&problems);
        assert!(text.contains(needle), "lacks {needle:?}:\n{text}");
    };
    let kayenta = r#"{"name": "k", "metrics": [{"name": "errors", "analysisConfigurations": {"canary": {"direction": "sideways"}}}]}"#;
    expect(
        load(&[("k.json", kayenta)], errors_mapping(), Some(kayenta_settings())).unwrap_err(),
        "k.json: metrics[0] (errors).analysisConfigurations.canary.direction: \"sideways\" is not a direction",
    );
    let kayenta = r#"{"name": "k", "metrics": [{"name": "errors", "analysisConfigurations": {"canary": {"direction": "increase"}}}]}"#;
    expect(load(&[("k.json", kayenta)], errors_mapping(), None).unwrap_err(), "s.toml: controller.kayenta.lifetime: is missing");
    let odd = spec::RawKayenta { weight: Some(150.0), pass: Some(50.0), marginal: Some(80.0), ..kayenta_settings() };
    let text = messages(&load(&[("k.json", kayenta)], errors_mapping(), Some(odd)).unwrap_err());
    assert!(
        text.contains("controller.kayenta.weight = 150: the canary's traffic share must be a percent in (0, 100)")
            && text.contains("must satisfy 0 ≤ marginal ≤ pass ≤ 100"),
        "{text}"
    );
    expect(
        load(&[("k.json", r#"{"name": "k"}"#)], errors_mapping(), None).unwrap_err(),
        "k.json: metrics: is missing: not a Kayenta canary config",
    );
    expect(
        load(
            &[("bg.yaml", "kind: Rollout\nmetadata: {name: r}\nspec:\n  strategy:\n    blueGreen: {activeService: a}\n")],
            errors_mapping(),
            None,
        )
        .unwrap_err(),
        "spec.strategy.blueGreen: blue-green rollouts switch all traffic at once and are not emulated",
    );
    expect(
        load(&[("c.yaml", "kind: Canary\nmetadata: {name: c}\nspec:\n  analysis:\n    interval: 1h\n")], errors_mapping(), None)
            .unwrap_err(),
        "has neither stepWeight, stepWeights nor iterations",
    );
    expect(load(&[("e.yaml", "# nothing\n")], errors_mapping(), None).unwrap_err(), "e.yaml: holds no document");
    let mut bad = errors_mapping();
    bad.get_mut("errors").unwrap().arm = Some("both".into());
    bad.get_mut("errors").unwrap().window = Some("0s".into());
    let text = messages(&load(&[("r.yaml", &rollout("        - setWeight: 10\n", ""))], bad, None).unwrap_err());
    assert!(
        text.contains("controller.metrics.errors.arm: \"both\" is not an arm")
            && text.contains("controller.metrics.errors.window: a query window must be longer than 0"),
        "{text}"
    );
    let canary = "kind: Canary\nmetadata: {name: c}\nspec:\n  analysis:\n    iterations: 2\n    match: [{headers: {x: {exact: y}}}]\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.yaml"), canary).unwrap();
    let raw = RawController {
        files: vec!["c.yaml".into()],
        ab_segment: Some(BTreeMap::from([("airline".to_string(), vec!["UA".to_string()])])),
        ..Default::default()
    };
    let mut problems = Vec::new();
    assert!(spec::load(&raw, dir.path(), "s.toml", HOUR, &["origin".to_string()], &mut problems).is_none());
    expect(problems, "controller.ab_segment: must name one segment column of traffic.segments");
}

#[test]
fn kayenta_configs_with_another_judge_or_repeated_metric_names_are_refused() {
    let metric = r#"{"name": "errors", "analysisConfigurations": {"canary": {"direction": "increase"}}}"#;
    let dredd = format!(r#"{{"name": "k", "judge": {{"name": "dredd-v1.0", "judgeConfigurations": {{}}}}, "metrics": [{metric}]}}"#);
    let problems = load(&[("k.json", &dredd)], errors_mapping(), Some(kayenta_settings())).unwrap_err();
    assert!(messages(&problems).contains("judge.name: \"dredd-v1.0\" is not a judge canary-replay emulates"), "{}", messages(&problems));
    let twice = format!(r#"{{"name": "k", "metrics": [{metric}, {metric}]}}"#);
    let problems = load(&[("k.json", &twice)], errors_mapping(), Some(kayenta_settings())).unwrap_err();
    assert!(messages(&problems).contains("metrics[1].name: \"errors\" names a second metric"), "{}", messages(&problems));
    // Kayenta's own judge, by its full name, is read as before.
    let netflix =
        format!(r#"{{"name": "k", "judge": {{"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {{}}}}, "metrics": [{metric}]}}"#);
    assert!(load(&[("k.json", &netflix)], errors_mapping(), Some(kayenta_settings())).is_ok());
}

/// Issue 18, item 3: a reference to a template the files do not hold is an input error naming the
/// kind looked for — `clusterScope: true` asks for a ClusterAnalysisTemplate, and a Flagger
/// `templateRef` for a MetricTemplate — not an analysis that silently measures nothing.
#[test]
fn missing_templates_are_refused_naming_their_kind() {
    let metrics = "  metrics:\n    - name: errors\n      successCondition: result[0] < 1\n      provider: {prometheus: {query: 'x'}}\n";
    let cluster = rollout("        - analysis: {templates: [{templateName: t, clusterScope: true}]}\n", "") + &template("t", metrics);
    let text = messages(&load(&[("r.yaml", &cluster)], errors_mapping(), None).unwrap_err());
    assert!(text.contains("ClusterAnalysisTemplate \"t\" is not in the controller files"), "{text}");
    assert!(text.contains("the files hold a AnalysisTemplate \"t\": drop clusterScope: true"), "{text}");
    // The cluster-scoped template is found by the cluster-scoped reference, and only by it.
    let template = format!("---\nkind: ClusterAnalysisTemplate\nmetadata: {{name: t}}\nspec:\n{metrics}");
    let found = rollout("        - analysis: {templates: [{templateName: t, clusterScope: true}]}\n", "") + &template;
    assert!(load(&[("r.yaml", &found)], errors_mapping(), None).is_ok());
    let namespaced = rollout("        - analysis: {templates: [{templateName: t}]}\n", "") + &template;
    let text = messages(&load(&[("r.yaml", &namespaced)], errors_mapping(), None).unwrap_err());
    assert!(text.contains("AnalysisTemplate \"t\" is not in the controller files") && text.contains("add clusterScope: true"), "{text}");

    let canary = "kind: Canary\nmetadata: {name: c}\nspec:\n  analysis:\n    stepWeight: 10\n    metrics:\n      - name: errors\n        templateRef: {name: error-rate, namespace: flagger}\n        thresholdRange: {max: 1}\n";
    let text = messages(&load(&[("c.yaml", canary)], errors_mapping(), None).unwrap_err());
    assert!(text.contains("c.yaml: document 1 (kind Canary): spec.analysis.metrics[0].templateRef: MetricTemplate \"error-rate\" (metric errors) is not in the controller files"), "{text}");
    let with_template =
        format!("{canary}---\nkind: MetricTemplate\nmetadata: {{name: error-rate}}\nspec:\n  query: sum(rate(errors[1m]))\n");
    assert!(load(&[("c.yaml", &with_template)], errors_mapping(), None).is_ok());
}

/// Issue 18, item 3: a copied snippet with `...` standing for omitted fields reports the YAML
/// problem at its line, not a missing field further on.
#[test]
fn yaml_with_ellipsis_placeholders_names_the_placeholder() {
    let snippet =
        "kind: Rollout\nmetadata: {name: r}\nspec:\n  replicas: 5\n...\n  strategy:\n    canary:\n      steps:\n        - setWeight: 20\n";
    let text = messages(&load(&[("r.yaml", snippet)], errors_mapping(), None).unwrap_err());
    assert!(!text.contains("spec.strategy.canary: is missing"), "{text}");
    assert!(text.contains("r.yaml: line 5") && text.contains("`...`"), "{text}");
}

/// Issue 18, item 3: files given with `--controller` are named as such, and an unmapped metric's
/// fix suggests a metric that fits its name.
#[test]
fn controller_flag_files_and_metric_suggestions_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let raw = RawController { files: vec!["scenario.yaml".into(), "/no/such/flag.yaml".into()], from_flag: 1, ..Default::default() };
    std::fs::write(dir.path().join("scenario.yaml"), rollout("        - setWeight: 10\n", "")).unwrap();
    let mut problems = Vec::new();
    assert!(spec::load(&raw, dir.path(), "s.toml", HOUR, &[], &mut problems).is_none());
    let text = messages(&problems);
    assert!(text.contains("--controller /no/such/flag.yaml: cannot be read") && !text.contains("controller.files[1]"), "{text}");

    for (name, metric) in [
        ("request-duration-p99", "latency_p99"),
        ("latency", "latency_mean"),
        ("http_error_rate", "error_rate"),
        ("model-logloss", "log_loss"),
        ("auc", "auc"),
        ("success-rate", "error_rate"),
    ] {
        assert_eq!(spec::metric_for(name), metric, "{name}");
    }
    let yaml = rollout("        - analysis: {templates: [{templateName: t}]}\n", "") + &template("t", "  metrics:\n    - name: http-latency-p99\n      successCondition: result[0] < 500\n      provider: {prometheus: {query: 'x'}}\n");
    let text = messages(&load(&[("r.yaml", &yaml)], errors_mapping(), None).unwrap_err());
    assert!(text.contains("add [controller.metrics.\"http-latency-p99\"] with metric = \"latency_p99\""), "{text}");
}

/// Issue 18, item 2: a canary config's own `classifier.scoreThresholds` apply when neither an
/// execution request nor `[controller.kayenta]` sets them; without any, 95 / 75 are assumed and
/// said. The ad-hoc request body `{canaryConfig, executionRequest}` and a YAML canary config read
/// as the JSON files do.
#[test]
fn kayenta_score_thresholds_request_bodies_and_yaml_configs() {
    let with_thresholds = r#"{"name": "k", "classifier": {"scoreThresholds": {"pass": 60, "marginal": 10}}, "metrics": [{"name": "errors", "analysisConfigurations": {"canary": {"direction": "increase"}}}]}"#;
    // About 30% of the candidate's requests fail: the one metric is High, the score 0 — below
    // any marginal, so the config's thresholds show in the reason.
    let failing = failing_where(24, 100, |i, _| (i * 7919) % 10 < 3);
    let spec = load(&[("k.json", with_thresholds)], errors_mapping(), Some(kayenta_settings())).unwrap();
    let run = replay(&spec, &failing, 24);
    assert!(run.reason.contains("below marginal 10"), "{}", run.reason);
    assert!(run.caveats.is_empty(), "{:?}", run.caveats);
    // The request's thresholds win over the config's.
    let request = r#"{"thresholds": {"pass": 90, "marginal": 50}}"#;
    let spec = load(&[("k.json", with_thresholds), ("request.json", request)], errors_mapping(), Some(kayenta_settings())).unwrap();
    assert!(replay(&spec, &failing, 24).reason.contains("below marginal 50"));
    // None at all: Kayenta's defaults, said as a caveat.
    let plain = r#"{"name": "k", "metrics": [{"name": "errors", "analysisConfigurations": {"canary": {"direction": "increase"}}}]}"#;
    let spec = load(&[("k.json", plain)], errors_mapping(), Some(kayenta_settings())).unwrap();
    let run = replay(&spec, &failing, 24);
    assert!(
        run.reason.contains("below marginal 75") && run.caveats.iter().any(|c| c.contains("pass 95 and marginal 75 assumed")),
        "{run:?}"
    );

    // The ad-hoc body: config and thresholds in one file.
    let body = format!(
        r#"{{"canaryConfig": {with_thresholds}, "executionRequest": {{"scopes": {{}}, "thresholds": {{"pass": 80, "marginal": 40}}}}}}"#
    );
    let spec = load(&[("body.json", &body)], errors_mapping(), Some(kayenta_settings())).unwrap();
    assert_eq!(spec.controllers.len(), 1);
    assert!(replay(&spec, &failing, 24).reason.contains("below marginal 40"));
    // The same config in YAML.
    let yaml = "name: k\nclassifier:\n  scoreThresholds: {pass: 60, marginal: 10}\nmetrics:\n  - name: errors\n    analysisConfigurations:\n      canary: {direction: increase}\n";
    let spec = load(&[("k.yaml", yaml)], errors_mapping(), Some(kayenta_settings())).unwrap();
    assert!(replay(&spec, &failing, 24).reason.contains("below marginal 10"));
    let text = messages(
        &load(
            &[("k.yaml", "name: k\nclassifier: {scoreThresholds: {pass: high}}\nmetrics: []\n")],
            errors_mapping(),
            Some(kayenta_settings()),
        )
        .unwrap_err(),
    );
    assert!(text.contains("k.yaml: classifier.scoreThresholds: needs numeric pass and marginal"), "{text}");
}

/// Issue 18, item 2: a muted metric is classified and reported but left out of the score, so a
/// muted critical metric that fails does not force 0 (it did before).
#[test]
fn kayenta_muted_metrics_are_left_out_of_the_score() {
    let metric = |name: &str, muted: bool| {
        format!(
            r#"{{"name": "{name}", "muted": {muted}, "analysisConfigurations": {{"canary": {{"direction": "increase", "critical": true}}}}}}"#
        )
    };
    let config = |muted: bool| format!(r#"{{"name": "k", "metrics": [{}, {}]}}"#, metric("errors", muted), metric("latency", false));
    let mut mapping = errors_mapping();
    mapping.insert("latency".into(), RawMapping { metric: "latency_mean".into(), arm: None, scale: None, offset: None, window: None });
    let failing = failing_where(24, 100, |i, _| (i * 7919) % 10 < 6);
    let spec = load(&[("k.json", &config(false))], mapping.clone(), Some(kayenta_settings())).unwrap();
    let run = replay(&spec, &failing, 24);
    assert!(run.reason.contains("critical metric errors"), "{}", run.reason);
    let spec = load(&[("k.json", &config(true))], mapping, Some(kayenta_settings())).unwrap();
    let run = replay(&spec, &failing, 24);
    assert!(!run.reason.contains("critical metric errors"), "{}", run.reason);
}

/// Issue 18, item 4: each controller metric's query window, and the candidate requests it holds at
/// the log's traffic — a 1-minute Flagger check at 10% of 900 requests a day sees none.
#[test]
fn sparse_traffic_is_said_per_controller_metric() {
    let canary = "kind: Canary\nmetadata: {name: c}\nspec:\n  analysis:\n    interval: 1m\n    stepWeight: 10\n    maxWeight: 50\n    metrics:\n      - name: errors\n        interval: 1m\n        thresholdRange: {max: 1}\n      - name: request-duration\n        interval: 1h\n        thresholdRange: {max: 500}\n";
    let spec = load(&[("c.yaml", canary)], errors_mapping(), None).unwrap();
    let windows: Vec<(String, String, Micros)> =
        spec.query_windows(HOUR).into_iter().map(|(c, name, window)| (c.owner(), name, window)).collect();
    assert_eq!(
        windows,
        vec![
            ("Canary c".to_string(), "errors".to_string(), crate::time::MICROS_PER_MINUTE),
            ("Canary c".to_string(), "request-duration".to_string(), HOUR)
        ]
    );
    // 900 requests a day: 37.5 an hour; 10% of a minute of it is 0.06 requests.
    let notes = spec.traffic_notes(37.5, 0.01, HOUR);
    assert!(
        notes[0].sparse
            && notes[0].text.contains("about 0.1 candidate requests a window at 10%")
            && notes[0].text.contains("returns no data"),
        "{notes:?}"
    );
    // Latency is measured on 1% of requests: 0.04 a window.
    assert!(notes[1].sparse && notes[1].text.contains("requests with a measured latency"), "{notes:?}");
    // At 100,000 requests an hour a minute holds 167 candidate requests: no warning.
    let busy = spec.traffic_notes(100_000.0, 1.0, HOUR);
    assert!(!busy[0].sparse && busy[0].text.contains("about 166.7 candidate requests"), "{busy:?}");
}

/// Issue 18, item 5: two controllers' metrics of one name map apart with `"<file>:<name>"`
/// mappings (the file as listed or its name alone); the bare name still maps the others.
#[test]
fn metric_mappings_can_be_per_file() {
    let canary = |name: &str| {
        format!("kind: Canary\nmetadata: {{name: {name}}}\nspec:\n  analysis:\n    interval: 1h\n    stepWeight: 10\n    metrics:\n      - name: latency\n        thresholdRange: {{max: 500}}\n")
    };
    let mapping =
        |metric: &str, scale: f64| RawMapping { metric: metric.into(), arm: None, scale: Some(scale), offset: None, window: None };
    let mut metrics = errors_mapping();
    metrics.insert("latency".into(), mapping("latency_mean", 1.0));
    metrics.insert("seconds.yaml:latency".into(), mapping("latency_p99", 0.001));
    let spec = load(&[("ms.yaml", &canary("ms")), ("seconds.yaml", &canary("s"))], metrics, None).unwrap();
    let ms = spec.mapping_of("ms.yaml", "latency").unwrap();
    let s = spec.mapping_of("seconds.yaml", "latency").unwrap();
    assert_eq!((ms.metric.name(), ms.scale), ("latency_mean", 1.0));
    assert_eq!((s.metric.name(), s.scale), ("latency_p99", 0.001));
    // Listed with a folder, the file's name alone still keys it.
    assert_eq!(spec.mapping_of("controllers/seconds.yaml", "latency").unwrap().metric.name(), "latency_p99");
}

/// Flagger's built-in metrics are Flagger's: an Argo metric that happens to be named
/// `request-duration` needs a mapping like any other, instead of silently reading latency P99.
#[test]
fn flagger_builtin_metrics_map_only_flagger_metrics() {
    let yaml = rollout("        - analysis: {templates: [{templateName: t}]}\n", "") + &template("t", "  metrics:\n    - name: request-duration\n      successCondition: result[0] < 500\n      provider: {prometheus: {query: 'x'}}\n");
    let text = messages(&load(&[("r.yaml", &yaml)], errors_mapping(), None).unwrap_err());
    assert!(
        text.contains("metric \"request-duration\" of Rollout r is not mapped") && text.contains("metric = \"latency_mean\""),
        "{text}"
    );
    let canary = "kind: Canary\nmetadata: {name: c}\nspec:\n  analysis:\n    interval: 1h\n    stepWeight: 10\n    metrics:\n      - name: request-duration\n        thresholdRange: {max: 500}\n";
    let spec = load(&[("c.yaml", canary)], errors_mapping(), None).unwrap();
    assert_eq!(spec.controllers[0].mapping(&spec, "request-duration").unwrap().metric.name(), "latency_p99");
}
