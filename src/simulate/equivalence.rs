//! The fast path must decide exactly as the reference simulator: a property test over random
//! traffic (segments, label delays, errors, measured latencies), random policies (stages, windows,
//! holdbacks, caps, waves, every gate kind, both sequential tests, every correction), random
//! faults, and keys kept as rows, folded into summaries, or both.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use parquet::arrow::ArrowWriter;
use proptest::prelude::*;

use super::fast::Summaries;
use super::metrics::Needs;
use super::reference::Reference;
use super::replay::Replay;
use super::{grade, Setup};
use crate::ingest::Layout;
use crate::policy::raw::{RawDecision, RawGate, RawRamp, RawSegmentPolicy, RawStage};
use crate::policy::{Policy, RawPolicy, TrafficShape};
use crate::scenario::fault::RawFault;
use crate::score::cache::part_schema;
use crate::stats::tests::Rng;
use crate::time::RawTime;

const HOUR: i64 = crate::time::MICROS_PER_HOUR;

fn layout() -> Layout {
    Layout {
        time: "ts".into(),
        id: "id".into(),
        entity: "entity".into(),
        segments: vec!["origin".into(), "carrier".into()],
        label: Some("label".into()),
        label_time: Some("label_ts".into()),
        label_delay: 0,
        features: vec![],
    }
}

/// Writes a synthetic score-cache part: `rows` requests over `hours`, the candidate worse by `shift`.
fn write_traffic(path: &Path, seed: u64, rows: usize, hours: i64, shift: f64, errors: f64) {
    let mut rng = Rng::new(seed);
    let start = 1_377_993_600_000_000i64; // 2013-09-01
    let mut times: Vec<i64> = (0..rows).map(|_| start + (rng.uniform() * (hours * HOUR) as f64) as i64).collect();
    times.sort_unstable();
    let origins = ["EWR", "JFK", "LGA"];
    let carriers = ["UA", "B6", "AA", "DL"];
    let mut cols: BTreeMap<&str, Vec<Option<String>>> = BTreeMap::new();
    let (mut label, mut label_ts, mut stable, mut candidate, mut s_err, mut c_err, mut s_lat, mut c_lat) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for (i, t) in times.iter().enumerate() {
        cols.entry("id").or_default().push(Some(format!("r{i}")));
        cols.entry("entity").or_default().push(Some(format!("e{}", (rng.uniform() * 300.0) as u32)));
        cols.entry("origin").or_default().push(Some(origins[(rng.uniform() * 3.0) as usize].into()));
        cols.entry("carrier").or_default().push(Some(carriers[(rng.uniform() * 4.0) as usize].into()));
        let p = rng.uniform();
        let y = f64::from(u8::from(rng.uniform() < p));
        let labelled = rng.uniform() < 0.9;
        label.push(labelled.then_some(y));
        label_ts.push(labelled.then(|| t + (rng.uniform() * 6.0 * HOUR as f64) as i64));
        let failed = |rng: &mut Rng| rng.uniform() < errors;
        let (se, ce) = (failed(&mut rng), failed(&mut rng));
        stable.push((!se).then_some((p + 0.1 * rng.normal()).clamp(0.001, 0.999)));
        candidate.push((!ce).then_some((p + shift + 0.1 * rng.normal()).clamp(0.001, 0.999)));
        s_err.push(se.then(|| "run_failed: x".to_string()));
        c_err.push(ce.then(|| "run_failed: x".to_string()));
        let measured = rng.uniform() < 0.2;
        s_lat.push(measured.then(|| 50.0 + 20.0 * rng.uniform()));
        c_lat.push(measured.then(|| 55.0 + 30.0 * rng.uniform()));
    }
    let text = |v: &Vec<Option<String>>| -> ArrayRef { Arc::new(v.iter().cloned().collect::<StringArray>()) };
    let float = |v: &Vec<Option<f64>>| -> ArrayRef { Arc::new(v.iter().copied().collect::<Float64Array>()) };
    let stamp = |v: Vec<Option<i64>>| -> ArrayRef { Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC")) };
    let schema = part_schema(&layout());
    let arrays: Vec<ArrayRef> = vec![
        text(&cols["id"]),
        stamp(times.iter().map(|t| Some(*t)).collect()),
        text(&cols["entity"]),
        text(&cols["origin"]),
        text(&cols["carrier"]),
        float(&label),
        stamp(label_ts),
        float(&stable),
        float(&candidate),
        text(&s_err),
        text(&c_err),
        float(&s_lat),
        float(&c_lat),
        float(&vec![None; rows]),
        float(&vec![None; rows]),
    ];
    let batch = RecordBatch::try_new(schema.clone(), arrays).unwrap();
    let mut writer = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

fn segments() -> Vec<String> {
    vec!["origin".to_string(), "carrier".to_string()]
}

/// The policy of `raw` on the synthetic traffic's shape, unless it does not validate.
fn validated(raw: &RawPolicy) -> Option<Policy> {
    let segments = segments();
    let mut problems = Vec::new();
    let policy = Policy::from_raw(raw, &TrafficShape { segments: &segments, labelled: true }, "prop.toml", &mut problems);
    problems.is_empty().then_some(policy)
}

/// Synthetic traffic ([`write_traffic`]) scanned with `faults`; the directory keeps the part for
/// as long as the replay reads it.
fn scanned(seed: u64, rows: usize, hours: i64, shift: f64, errors: f64, faults: &[crate::scenario::Fault]) -> (tempfile::TempDir, Replay) {
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("part.parquet");
    write_traffic(&part, seed, rows, hours, shift, errors);
    let replay = Replay::scan(&[part], &layout(), faults).unwrap();
    (dir, replay)
}

prop_compose! {
    fn raw_policy()(
        weights in prop::sample::subsequence(vec![1.0, 5.0, 10.0, 25.0, 50.0, 100.0], 1..5),
        bake in 0i64..4, max_extra in 1i64..30, check in prop::sample::select(vec!["30m", "1h", "2h"]),
        window in 0u8..3, holdback in prop::sample::select(vec![0.0, 10.0]),
        gates in prop::collection::vec((0usize..10, 0usize..4, any::<bool>(), any::<bool>()), 1..5),
        alpha in prop::sample::select(vec![0.01, 0.05, 0.2]),
        correction in prop::sample::select(vec!["holm", "none", "bonferroni", "benjamini_hochberg"]),
        sequential in prop::sample::select(vec!["msprt", "group_sequential"]),
        min_samples in prop::sample::select(vec![5u64, 30, 100]),
        segment in 0u8..4, on_timeout in prop::sample::select(vec!["hold", "rollback", "promote"]),
    ) -> RawPolicy {
        let stages = weights.iter().map(|w| RawStage { weight: *w, bake: Some(format!("{bake}h")), max: Some(format!("{}h", bake + max_extra)) }).collect();
        let metrics = ["error_rate", "latency_p99", "latency_mean", "log_loss", "brier", "auc", "accuracy", "score_js", "ece", "expected_cost"];
        let raw_gates = gates.iter().map(|(m, k, critical, segmented)| {
            let metric = metrics[*m];
            let statistical = !matches!(metric, "latency_p99" | "score_js" | "ece");
            let kind = match k { 0 if statistical => "non_inferiority", 1 if statistical => "regression", 2 if metric != "score_js" => "ratio", _ => "threshold" };
            RawGate {
                metric: metric.into(),
                kind: kind.into(),
                margin: (kind == "non_inferiority").then_some(0.05),
                max: matches!(kind, "ratio" | "threshold").then_some(if kind == "ratio" { 1.2 } else { 0.3 }),
                critical: Some(*critical),
                segments: segmented.then(|| vec!["origin".to_string()]),
                from_weight: (kind == "non_inferiority").then_some(5.0),
                ..Default::default()
            }
        }).collect();
        let segment_policy = match segment {
            1 => vec![RawSegmentPolicy { column: "origin".into(), exclude: vec!["LGA".into()], ..Default::default() }],
            2 => vec![RawSegmentPolicy { column: "origin".into(), caps: BTreeMap::from([("JFK".to_string(), 5.0)]), ..Default::default() }],
            3 => vec![RawSegmentPolicy { column: "carrier".into(), waves: vec![vec!["UA".into(), "B6".into()]], ..Default::default() }],
            _ => vec![],
        };
        RawPolicy {
            ramp: Some(RawRamp {
                stages: Some(stages),
                check_every: Some(check.into()),
                salt: Some("prop".into()),
                max_stage_time: None,
                holdback: Some(holdback),
                window: Some(["rollout", "stage", "sliding"][window as usize].into()),
                sliding: (window == 2).then(|| "4h".into()),
                monitor_window: Some("8h".into()),
            }),
            segment_policy,
            gates: raw_gates,
            decision: Some(RawDecision {
                alpha: Some(alpha),
                correction: Some(correction.into()),
                sequential: Some(sequential.into()),
                min_samples: Some(min_samples),
                on_timeout: Some(on_timeout.into()),
                consecutive_failures: Some(2),
                ..Default::default()
            }),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn the_fast_path_decides_exactly_as_the_reference(
        raw in raw_policy(), seed in 0u64..1_000_000, rows in 300usize..2500, hours in 24i64..120,
        shift in prop::sample::select(vec![0.0, 0.05, 0.3]), errors in prop::sample::select(vec![0.0, 0.01, 0.1]),
        fault in 0u8..4, fold_above in prop::sample::select(vec![0usize, 3, 16, usize::MAX]), lean_index in any::<bool>(),
    ) {
        let policy = validated(&raw);
        prop_assume!(policy.is_some());
        let policy = policy.expect("valid");
        let start = Some(RawTime::Text("2013-09-02T00:00:00Z".into()));
        let raw_faults = match fault {
            1 => vec![RawFault { kind: "error_rate".into(), model: None, start, end: None, segment: None, add_ms: None, multiply: None, rate: Some(0.3), shift: None, value: None, feature: None }],
            2 => vec![RawFault { kind: "latency".into(), model: None, start, end: None, segment: Some(BTreeMap::from([("origin".to_string(), "JFK".to_string())])), add_ms: Some(40.0), multiply: None, rate: None, shift: None, value: None, feature: None }],
            3 => vec![RawFault { kind: "score_shift".into(), model: None, start, end: None, segment: Some(BTreeMap::from([("carrier".to_string(), "UA".to_string())])), add_ms: None, multiply: None, rate: None, shift: Some(0.3), value: None, feature: None }],
            _ => vec![],
        };
        let (segments, mut problems) = (segments(), Vec::new());
        let faults = crate::scenario::fault::faults(&raw_faults, &TrafficShape { segments: &segments, labelled: true }, "prop.toml", &mut problems);
        prop_assert!(problems.is_empty(), "{:?}", problems);
        let (_dir, replay) = scanned(seed, rows, hours, shift, errors, &faults);
        let setup = Setup::new(&policy, &replay);
        let rows = replay.rows(&policy.ramp.salt).unwrap();
        let mut reference = Reference::new(&rows, &setup.scopes, setup.scale);
        // An index keeping only what the gates read decides as one keeping everything.
        let needs = if lean_index { Needs::of(policy.gates.iter().map(|g| g.metric)) } else { Needs::ALL };
        let summaries = Summaries::build_with(&replay, &policy.ramp.salt, &policy.weights(), setup.scale, (setup.origin, policy.ramp.check_every), fold_above, needs).unwrap();
        let mut fast = setup.fast(&summaries);
        let (a, b) = (setup.simulate(&mut reference), setup.simulate(&mut fast));
        prop_assert_eq!(&a.outcome, &b.outcome);
        prop_assert_eq!(a.decided_at, b.decided_at);
        prop_assert_eq!(a.checks.len(), b.checks.len());
        for (x, y) in a.checks.iter().zip(&b.checks) {
            prop_assert_eq!(x, y);
        }
        prop_assert_eq!(&a, &b);
        let (ga, gb) = (grade::grade(&setup, &mut reference, &a), grade::grade(&setup, &mut fast, &b));
        prop_assert_eq!(&ga, &gb);
        prop_assert_eq!(grade::exposure(&setup, &mut reference, &a, &ga), grade::exposure(&setup, &mut fast, &b, &gb));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Policies simulated in lockstep over shared windows run exactly as each simulated alone,
    /// whatever mix of check intervals, segment columns and windows they have.
    #[test]
    fn policies_in_lockstep_run_as_each_alone(
        raws in prop::collection::vec(raw_policy(), 2..7), seed in 0u64..1_000_000, rows in 300usize..2000, hours in 24i64..100,
        shift in prop::sample::select(vec![0.0, 0.05, 0.3]), lean in any::<bool>(),
    ) {
        // Copies of each policy too, so windows are shared.
        let policies: Option<Vec<Policy>> = raws.iter().chain(&raws).map(validated).collect();
        prop_assume!(policies.is_some());
        let policies = policies.expect("valid");
        let (_dir, replay) = scanned(seed, rows, hours, shift, 0.01, &[]);
        let setups: Vec<Setup> = policies.iter().map(|p| if lean { Setup::new(p, &replay).decisions_only() } else { Setup::new(p, &replay) }).collect();
        let weights: Vec<f64> = policies.iter().flat_map(|p| p.weights()).collect();
        let width = policies.iter().map(|p| p.ramp.check_every).fold(0, |a, b| if a == 0 { b } else { num_gcd(a, b) });
        let build = || Summaries::build(&replay, "prop", &weights, setups[0].scale, setups[0].origin, width).unwrap();
        // In lockstep on keys held read, as a tune's are; alone reading them from the stream.
        let (summaries, expanded) = (build(), build().expanded());
        let together = super::lockstep::simulate(&setups.iter().collect::<Vec<_>>(), &expanded);
        for (setup, run) in setups.iter().zip(&together) {
            let alone = setup.simulate(&mut setup.fast(&summaries));
            prop_assert_eq!(&alone, run);
        }
    }
}

fn num_gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        num_gcd(b, a % b)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Simulating for the decision alone ([`Setup::decisions_only`]: skipped looks, intervals,
    /// results and corrections) decides exactly as the full simulation.
    #[test]
    fn deciding_alone_decides_as_the_full_simulation(
        // Sparse enough that a segment often gets nothing new between two checks.
        raw in raw_policy(), seed in 0u64..1_000_000, rows in 60usize..1200, hours in 24i64..120,
        shift in prop::sample::select(vec![0.0, 0.05, 0.3]), errors in prop::sample::select(vec![0.0, 0.01, 0.1]),
    ) {
        let policy = validated(&raw);
        prop_assume!(policy.is_some());
        let policy = policy.expect("valid");
        let (_dir, replay) = scanned(seed, rows, hours, shift, errors, &[]);
        let (full, lean) = (Setup::new(&policy, &replay), Setup::new(&policy, &replay).decisions_only());
        let summaries = full.summaries(&replay).unwrap();
        let (a, b) = (full.simulate(&mut full.fast(&summaries)), lean.simulate(&mut lean.fast(&summaries)));
        prop_assert_eq!((a.outcome, a.decided_at, &a.periods, a.deciding_window), (b.outcome, b.decided_at, &b.periods, b.deciding_window));
        let stages = |r: &super::Run| r.stages.iter().map(|s| (s.wave, s.stage, s.monitoring, s.start, s.end, s.decision)).collect::<Vec<_>>();
        prop_assert_eq!(stages(&a), stages(&b));
        let acting = |r: &super::Run| r.checks.iter().filter(|c| c.action != super::Action::Continue).map(|c| (c.time, c.action)).collect::<Vec<_>>();
        prop_assert_eq!(acting(&a), acting(&b));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Windows at any boundaries under any routing, read from the summaries and the rows of the
    /// buckets they cut ([`super::ranged`]), equal the row-by-row windows: the controllers' queries
    /// (an Argo retry lands 10 s off the check grid, weights change at the controller's own times,
    /// Flagger's A/B routing masks cells, mirroring sends every request to both arms) and their grading.
    #[test]
    fn windows_at_any_time_equal_the_rows(
        seed in 0u64..1_000_000, rows in 200usize..1500, hours in 12i64..60, fold_above in prop::sample::select(vec![0usize, 3, 16, usize::MAX]),
        width in prop::sample::select(vec![HOUR / 2, HOUR, 2 * HOUR]),
        changes in prop::collection::vec((0.0f64..1.0, any::<bool>(), prop::sample::select(vec![0.0, 0.05, 0.1, 0.3, 0.5, 1.0])), 0..6),
        masked in prop::option::of(0.0f64..1.0),
        queries in prop::collection::vec((0.0f64..1.0, 0.0f64..0.5, any::<bool>(), any::<bool>(), 0.0f64..0.3), 1..12),
    ) {
        use crate::controller::probe::{Probe, Schedule};
        use crate::simulate::ranged::{Ranged, RangedSource};
        use crate::simulate::Source;
        let (_dir, replay) = scanned(seed, rows, hours, 0.05, 0.05, &[]);
        let policy = validated(&RawPolicy::default()).expect("the default policy");
        let setup = Setup::new(&policy, &replay);
        let salt = "prop";
        let all = replay.rows(salt).unwrap();
        // Cuts at some weights the schedule uses, not all (0.3 is never one).
        let summaries = Summaries::build_with(&replay, salt, &[0.05, 0.1, 0.5], setup.scale, (setup.origin, width), fold_above, Needs::ALL).unwrap();
        let ranged = Ranged::new(&summaries, &replay, salt);
        let span = (replay.last + 1 - replay.first) as f64;
        // A time anywhere, or on the bucket grid.
        let at = |x: f64, on_grid: bool| -> i64 {
            let t = replay.first + (x * span) as i64;
            if on_grid { setup.origin + (t - setup.origin).div_euclid(width) * width } else { t }
        };
        let mut schedule = Schedule::default();
        let mut times: Vec<(i64, f64)> = changes.iter().map(|(x, g, w)| (at(*x, *g), *w)).collect();
        times.sort_by_key(|(t, _)| *t);
        for (t, w) in times {
            schedule.set(t, w);
        }
        if let Some(until) = masked {
            schedule.1 = Some(((0..replay.cells.len()).map(|c| c % 2 == 0).collect(), at(until, false)));
        }
        let (by_rows, by_summaries) = (Probe::new(&all, setup.scale), Probe::ranged(&ranged));
        let mut reference = Reference::new(&all, &setup.scopes, setup.scale);
        let mut source = RangedSource::new(&ranged, &setup.scopes, true);
        // As a policy without histogram metrics is graded: keys added up per cell first.
        let mut scalars = RangedSource::new(&ranged, &setup.scopes, false);
        for (x, length, on_grid, mirror, step) in queries {
            let start = at(x, on_grid);
            let end = start + 1 + (length * span) as i64;
            prop_assert_eq!(by_rows.arms(start, end, &schedule, mirror), by_summaries.arms(start, end, &schedule, mirror));
            let steps = 1 + (step * span) as i64;
            let mapping = crate::controller::spec::Mapping { metric: crate::policy::Metric::LogLoss, arm: crate::controller::spec::Arm::Ratio, scale: 1.0, offset: 0.0, window: None };
            let (a, b) = (by_rows.series(std::slice::from_ref(&mapping), start, end, steps, &schedule), by_summaries.series(std::slice::from_ref(&mapping), start, end, steps, &schedule));
            prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
            let (a, b) = (by_rows.measure(&mapping, end, end - start, &schedule, mirror), by_summaries.measure(&mapping, end, end - start, &schedule, mirror));
            prop_assert_eq!(a.map(f64::to_bits), b.map(f64::to_bits));
            let weights: Vec<f64> = (0..replay.cells.len() as u32).map(|c| schedule.weight(start, c)).collect();
            prop_assert_eq!(reference.window(start, end, &weights).clone(), source.window(start, end, &weights).clone());
            prop_assert_eq!(reference.served(start, end, &weights), source.served(start, end, &weights));
            prop_assert_eq!(reference.oracle(start, end), source.oracle(start, end));
            prop_assert_eq!(reference.window(start, end, &weights).scalars_only(), scalars.window(start, end, &weights).clone());
            prop_assert_eq!(reference.oracle(start, end).scalars_only(), scalars.oracle(start, end));
            // The grading adds a period's windows up instead of reading it again.
            let mid = start + (end - start) / 3;
            let mut halves = source.oracle(start, mid);
            halves.merge(&source.oracle(mid, end));
            prop_assert_eq!(reference.oracle(start, end), halves);
        }
        prop_assert!(ranged.failure().is_none());
    }
}

/// A cache scanned in pieces side by side (parts cut anywhere) finds what one pass over it does:
/// cells numbered in order of their first request, the same score range, label kind and times,
/// and a mark at every 64th request.
#[test]
fn a_scan_in_pieces_equals_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = [(3, 3, 2), (4, 700, 30), (5, 500, 20)];
    let parts: Vec<std::path::PathBuf> = sizes
        .iter()
        .map(|&(seed, rows, hours)| {
            let part = dir.path().join(format!("part-{seed}.parquet"));
            write_traffic(&part, seed, rows, hours, 0.05, 0.05);
            part
        })
        .collect();
    let part_rows: Vec<u64> = sizes.iter().map(|s| s.1 as u64).collect();
    let one = Replay::scan_in(&parts, &layout(), &[], part_rows.clone(), 1).unwrap();
    let found =
        |r: &Replay| (r.cells.values.clone(), r.score_range, r.binary, r.first, r.last, r.rows, r.part_rows.clone(), r.marks.clone());
    for pieces in [1, 2, 3, 40] {
        let split = Replay::scan_in(&parts, &layout(), &[], part_rows.clone(), pieces).unwrap();
        assert_eq!(found(&split), found(&one), "{pieces} pieces");
        let rows = split.rows("prop").unwrap();
        let mut seen = 0;
        for row in &rows {
            assert!(row.cell <= seen, "cell {} before cell {seen} ({pieces} pieces)", row.cell);
            seen = seen.max(row.cell + 1);
        }
        assert_eq!(seen as usize, split.cells.len());
        let marks: Vec<(u64, i64)> = rows.iter().enumerate().step_by(64).map(|(i, r)| (i as u64, r.time)).collect();
        assert_eq!(split.marks, marks, "{pieces} pieces");
    }
    assert!(one.cells.len() > 5 && one.rows == 1203, "{} cells, {} rows", one.cells.len(), one.rows);
    assert_eq!(found(&Replay::scan(&parts, &layout(), &[]).unwrap()), found(&one));
}

/// A bucket that cannot be read back (its part deleted under the run) is an error the run
/// reports, never a query quietly missing those requests.
#[test]
fn rows_that_cannot_be_read_back_are_an_error() {
    use crate::controller::probe::{Probe, Schedule};
    use crate::simulate::ranged::Ranged;
    let (dir, replay) = scanned(7, 600, 24, 0.0, 0.0, &[]);
    let policy = validated(&RawPolicy::default()).expect("the default policy");
    let setup = Setup::new(&policy, &replay);
    let summaries = Summaries::build_with(&replay, "prop", &[0.5], setup.scale, (setup.origin, HOUR), 16, Needs::ALL).unwrap();
    let ranged = Ranged::new(&summaries, &replay, "prop");
    std::fs::remove_file(dir.path().join("part.parquet")).unwrap();
    let mut schedule = Schedule::default();
    schedule.set(setup.origin, 0.5);
    // Off the bucket grid: the window's edges are read back.
    Probe::ranged(&ranged).arms(setup.origin + HOUR / 3, setup.origin + 5 * HOUR + 7, &schedule, false);
    let failure = ranged.failure().expect("the read failure is kept").to_string();
    assert!(failure.contains("part.parquet"), "{failure}");
}

#[test]
fn the_split_point_brackets_the_first_request_of_its_bucket() {
    // The index is built in two passes side by side above a size (a few hundred requests in unit
    // tests, so the property tests above run split builds): they meet at the bucket holding the
    // middle request, whose first request must lie between the positions the scan's marks give.
    let (_dir, replay) = scanned(7, 2000, 48, 0.05, 0.01, &[]);
    let origin = replay.first;
    let split = replay.split_point(origin, HOUR).expect("the middle request is past the first bucket");
    let rows = replay.rows("s").unwrap();
    let first = rows.iter().position(|r| (r.time - origin).div_euclid(HOUR) >= i64::from(split.bucket)).unwrap() as u64;
    assert!(split.positions.0 <= first && first <= split.positions.1, "{split:?}, first request of the bucket at {first}");
    assert!(split.positions.1 - split.positions.0 <= 2 * 64, "the marks around the bucket's start: {split:?}");
    assert!((first as f64 - 1000.0).abs() < 200.0, "about the middle: {first}");
    let summaries =
        Summaries::build(&replay, "s", &[0.05, 0.5], Setup::new(&validated(&RawPolicy::default()).unwrap(), &replay).scale, origin, HOUR)
            .unwrap();
    assert_eq!(summaries.footprint().passes, 2, "this size is built in two passes");
}
