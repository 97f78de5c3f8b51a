//! Policy search throughput: `cargo bench --bench tune`.
//!
//! Runs `tune` over the bundled scenario set — the four injected incidents, the real late-October
//! regression (flights-2013-monitored), an A/A replay and the good September window — with a
//! random space of `BENCH_VARIANTS` variants (default 200) over stages, bake, α, failure limits and
//! the log-loss margin, 5 salts per good scenario, on every core. It prints variants per second of
//! the search (the one-off scoring and indexing reported apart) against the issue's target of
//! 10,000 variants a minute, and, side by side on the same policy, one fast-path replay against
//! one replay by the row-by-row reference simulator.

use std::path::{Path, PathBuf};
use std::time::Instant;

use canary_replay::run::prepare;
use canary_replay::runtime::RuntimeOptions;
use canary_replay::simulate::reference::Reference;
use canary_replay::simulate::replay::Replay;
use canary_replay::simulate::Setup;
use canary_replay::tune::{tune, TuneOptions};

const SPACE: &str = r#"
[search]
method = "random"
samples = VARIANTS
seed = 7
salts = 5
false_rollback_budget = 0.05

[[param]]
key = "ramp.stages"
values = [[5, 25, 50, 100], [10, 50, 100], [25, 100], [1, 5, 25, 100]]

[[param]]
key = "ramp.bake"
values = ["6h", "12h", "1d", "2d", "3d"]

[[param]]
key = "decision.alpha"
range = [0.005, 0.2]
log = true

[[param]]
key = "decision.consecutive_failures"
range = [1, 6]
integer = true

[[param]]
key = "gates.log_loss.margin"
range = [0.005, 0.1]
log = true
"#;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let variants: usize = std::env::var("BENCH_VARIANTS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let space = dir.path().join("space.toml");
    std::fs::write(&space, SPACE.replace("VARIANTS", &variants.to_string())).unwrap();
    let mut scenarios: Vec<PathBuf> = ["errors", "feature-missing", "latency-jfk", "score-shift-ua"]
        .iter()
        .map(|n| root.join(format!("scenarios/incidents/{n}.toml")))
        .collect();
    scenarios.extend(
        ["flights-2013-monitored", "flights-2013-aa", "flights-2013-september"].iter().map(|n| root.join(format!("scenarios/{n}.toml"))),
    );
    let options = TuneOptions { out: Some(dir.path().join("tune")), runtime: RuntimeOptions::from_env(), cache_dir: None, quiet: true };
    let output = tune(&scenarios, &space, &options).unwrap_or_else(|e| panic!("{e}"));
    let s = &output.summary.search;
    let replays: usize = output
        .summary
        .variants
        .iter()
        .filter_map(|v| v.score.as_ref())
        .map(|sc| sc.scenarios.iter().map(|x| x.replays).sum::<usize>())
        .sum();
    println!(
        "{} variants over {} scenarios on {} threads ({} cut at an incident, {} at the false-rollback allowance, {} once sure to be dominated, {} feasible)",
        s.variants,
        scenarios.len(),
        rayon::current_num_threads(),
        s.cut_at_incidents,
        s.cut_at_false_rollbacks,
        s.cut_dominated,
        s.feasible
    );
    println!("whole tune (scoring from the cache, indexing, baselines, reference re-check): {:>8.1} s", s.seconds);
    println!("indexing the replays (once per scenario and salt):                        {:>8.1} s", s.index_seconds);
    println!("search:                                                                   {:>8.1} s", s.search_seconds);
    println!("variants per second (search):                                             {:>8.1}", s.variants_per_second);
    println!(
        "policy replays per second (search):                                       {:>8.1} ({replays} replays)",
        replays as f64 / s.search_seconds
    );
    println!(
        "target 10,000 variants a minute = 166.7/s; measured / target:             {:>8.3}",
        s.variants_per_second / (10_000.0 / 60.0)
    );

    // Side by side: one replay of the monitored policy, fast path over built summaries vs reference.
    let path = root.join("scenarios/flights-2013-monitored.toml");
    let prepared = prepare(&path, &RuntimeOptions::from_env()).unwrap();
    let cache = canary_replay::runtime::cache_root(None).join("scores");
    let settings = canary_replay::score::Settings::new(&prepared.scenario, canary_replay::score::cache::CacheDir::local(cache), true, true);
    let scored = prepared.score(&settings).unwrap();
    let replay = Replay::scan(&scored.parts, &prepared.layout, &prepared.scenario.faults).unwrap();
    let setup = Setup::new(&prepared.scenario.policy, &replay);
    let summaries = setup.summaries(&replay).unwrap();
    let rows = replay.rows(&prepared.scenario.policy.ramp.salt).unwrap();
    let t = Instant::now();
    let fast = setup.simulate(&mut setup.fast(&summaries));
    let f = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let reference = setup.simulate(&mut Reference::new(&rows, &setup.scopes, setup.scale));
    let r = t.elapsed().as_secs_f64();
    assert_eq!(fast, reference, "the simulators disagree");
    println!(
        "one replay of flights-2013-monitored ({} checks): fast {:.1} ms, reference {:.1} ms, reference / fast {:.1}×",
        fast.checks.len(),
        f * 1e3,
        r * 1e3,
        r / f
    );
}
