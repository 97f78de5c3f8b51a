//! One policy evaluation on the demo: the fast path against the row-by-row reference.
//!
//! `cargo bench --bench simulation` scores the demo log once (or reuses the score cache), then
//! evaluates `scenarios/flights-2013-monitored.toml`'s policy — about 1,300 hourly checks of three
//! gates on all traffic and 19 segment values — with each simulator, `BENCH_REPEATS` times
//! (default 5), and prints the medians. The fast path's one-off index build is reported apart:
//! a sweep builds it once and evaluates many policies on it. Then the scenario's live controllers
//! (`[controller]`: Argo Rollouts, Flagger, Kayenta), emulated and graded as `run` does, against
//! the same policy's fast evaluation.

use std::path::Path;
use std::time::Instant;

use canary_replay::run::{prepare, run, RunOptions};
use canary_replay::runtime::RuntimeOptions;
use canary_replay::simulate::reference::Reference;
use canary_replay::simulate::replay::Replay;
use canary_replay::simulate::Setup;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scenario_path = root.join("scenarios/flights-2013-monitored.toml");
    let repeats: usize = std::env::var("BENCH_REPEATS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let out = tempfile::tempdir().unwrap();
    let options = RunOptions { out: Some(out.path().join("out")), runtime: RuntimeOptions::from_env(), quiet: true, ..Default::default() };
    let output = run(&scenario_path, &options).unwrap_or_else(|e| panic!("{e}"));
    let prepared = prepare(&scenario_path, &RuntimeOptions::from_env()).unwrap();
    let policy = &prepared.scenario.policy;
    let started = Instant::now();
    let replay = Replay::scan(&output.scored.parts, &prepared.layout, &prepared.scenario.faults).unwrap();
    let scan = started.elapsed().as_secs_f64();
    let setup = Setup::new(policy, &replay);

    let mut builds = Vec::new();
    let mut summaries = None;
    for _ in 0..repeats {
        let t = Instant::now();
        summaries = Some(setup.summaries(&replay).unwrap());
        builds.push(t.elapsed().as_secs_f64());
    }
    let summaries = summaries.unwrap();
    let rows = replay.rows(&policy.ramp.salt).unwrap();
    let mut fast_runs = Vec::new();
    let mut reference_runs = Vec::new();
    let mut checks = 0;
    for _ in 0..repeats {
        let t = Instant::now();
        let a = setup.simulate(&mut setup.fast(&summaries));
        fast_runs.push(t.elapsed().as_secs_f64());
        if std::env::var_os("BENCH_FAST_ONLY").is_some() {
            reference_runs.push(f64::NAN);
            checks = a.checks.len();
            continue;
        }
        let t = Instant::now();
        let b = setup.simulate(&mut Reference::new(&rows, &setup.scopes, setup.scale));
        reference_runs.push(t.elapsed().as_secs_f64());
        assert_eq!(a, b, "the simulators disagree");
        checks = a.checks.len();
    }
    let (keys, label_keys) = summaries.size();
    let (f, r) = (median(fast_runs), median(reference_runs));
    println!(
        "{} rows, {} cells, {} checks of {} gates on {} scopes",
        replay.rows,
        replay.cells.len(),
        checks,
        policy.gates.len(),
        setup.scopes.len()
    );
    println!("scan of the score cache (once per replay):      {:>9.1} ms", scan * 1e3);
    println!(
        "fast-path index build (once per salt):          {:>9.1} ms ({keys} request and {label_keys} label keys)",
        median(builds) * 1e3
    );
    println!("one policy evaluation, fast path:               {:>9.1} ms", f * 1e3);
    println!("one policy evaluation, row-by-row reference:    {:>9.1} ms", r * 1e3);
    println!("reference / fast:                               {:>9.1}×", r / f);

    if let Some(spec) = &prepared.controller {
        let mut source = setup.fast(&summaries);
        let (run, grade, exposure) = canary_replay::run::evaluate(&setup, &mut source);
        let mut times = Vec::new();
        for _ in 0..repeats {
            let t = Instant::now();
            let (weights, metrics) = spec.reads();
            let summaries = setup.summaries_with(&replay, &weights, &metrics).unwrap();
            let ranged = canary_replay::simulate::ranged::Ranged::new(&summaries, &replay, &policy.ramp.salt);
            let traffic = canary_replay::run::Traffic::Ranged(&ranged);
            let c = canary_replay::run::emulate_controllers(
                spec,
                &setup,
                &replay,
                traffic,
                prepared.scenario.scoring.latency_sample,
                (&run, &grade, &exposure),
            )
            .unwrap();
            times.push(t.elapsed().as_secs_f64());
            assert_eq!(c.emulated.len(), spec.controllers.len());
        }
        let e = median(times);
        println!(
            "{} live controllers emulated and graded:        {:>9.1} ms ({:.1}× one fast policy evaluation)",
            spec.controllers.len(),
            e * 1e3,
            e / f
        );
    }
}
