//! Costs of the statistics on the judge's hot paths: `cargo bench --bench stats`.
//!
//! - Mann-Whitney on 1,000,000 vs 1,000,000 latency-like values: the U test (sort + one merge),
//!   and the Hodges-Lehmann shift with its 98% interval (three root searches of ~70 merges each).
//! - One mSPRT update (one look of an always-valid test) and one group-sequential boundary set.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

use canary_replay::stats::group_sequential::{boundaries, Spending};
use canary_replay::stats::mann_whitney;
use canary_replay::stats::msprt::Msprt;

/// Deterministic lognormal-ish latencies (ms), the second sample shifted by 2%.
fn latencies(n: usize, seed: u64, scale: f64) -> Vec<f64> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let u = ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            scale * (20.0 + 5.0 * (-(1.0 - u).ln()))
        })
        .collect()
}

fn mann_whitney_million(c: &mut Criterion) {
    let x = latencies(1_000_000, 1, 1.02);
    let y = latencies(1_000_000, 2, 1.0);
    let mut group = c.benchmark_group("mann_whitney_1e6_vs_1e6");
    group.sample_size(10);
    group.bench_function("u_test", |b| b.iter(|| mann_whitney::test(&x, &y, true).unwrap()));
    group.bench_function("hodges_lehmann_shift_98", |b| b.iter(|| mann_whitney::shift(&x, &y, 0.98).unwrap()));
    group.finish();
}

fn sequential(c: &mut Criterion) {
    c.bench_function("msprt_update", |b| {
        b.iter_batched(|| Msprt::new(0.01, 0.05, 0.0), |mut t| t.update(0.012, 0.0004), BatchSize::SmallInput)
    });
    // What a non-inferiority gate runs at every check: the default four tuned mixtures, two-sided,
    // with the confidence sequence's end found by Newton's method.
    c.bench_function("msprt_update_tuned_4", |b| {
        b.iter_batched(
            || Msprt::tuned(vec![200.0, 2_000.0, 20_000.0, 200_000.0], 0.05, 0.0),
            |mut t| t.observe(0.012, 0.0004, 5_000.0),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("obrien_fleming_5_looks", |b| {
        b.iter(|| boundaries(&[0.01, 0.05, 0.25, 0.5, 1.0], 0.05, Spending::OBrienFleming).unwrap())
    });
}

criterion_group!(benches, mann_whitney_million, sequential);
criterion_main!(benches);
