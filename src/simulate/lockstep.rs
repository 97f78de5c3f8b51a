//! Many policies on one replay, simulated in lockstep: a policy search replays hundreds of
//! variants on the same traffic, and at any check most of them judge the same window — all of
//! them during the first stage at the same weight, and later those that promoted at the same
//! checks. Each window (start, routing weights) is grown once per check from the shared
//! [`Summaries`] and judged by every policy that asks for it, whose judges share what they read
//! of it ([`Readings`]: sample sizes and differences per metric and scope); each policy keeps its
//! own clock, judge and failure counts, so every run is the one [`Setup::simulate`] gives.

use super::fast::{Fast, Summaries};
use super::judge::Readings;
use super::{Clock, Run, Setup};
use crate::time::Micros;

/// Whether two setups' clocks tick together and read the same statistics.
fn compatible(a: &Setup, b: &Setup) -> bool {
    a.origin == b.origin
        && a.end == b.end
        && a.policy.ramp.check_every == b.policy.ramp.check_every
        && a.scale == b.scale
        && a.scopes.scopes == b.scopes.scopes
}

/// The runs of `setups` (in their order) over `summaries`, which must serve every one of them
/// ([`Summaries::serves`]).
pub fn simulate(setups: &[&Setup], summaries: &Summaries) -> Vec<Run> {
    let mut runs: Vec<Option<Run>> = setups.iter().map(|_| None).collect();
    let mut left: Vec<usize> = (0..setups.len()).collect();
    while let Some(&first) = left.first() {
        let (class, rest): (Vec<usize>, Vec<usize>) = left.iter().partition(|&&i| compatible(setups[first], setups[i]));
        for (i, run) in class.iter().zip(simulate_class(&class.iter().map(|&i| setups[i]).collect::<Vec<_>>(), summaries)) {
            runs[*i] = Some(run);
        }
        left = rest;
    }
    runs.into_iter().map(|r| r.expect("every setup is in a class")).collect()
}

/// A window being grown: where it starts, the routing, its statistics so far and what the
/// judges read of them at this check.
struct Shared<'a> {
    start: Micros,
    weights: Vec<f64>,
    fast: Fast<'a>,
    readings: Readings,
    /// Grown to this check.
    grown: bool,
}

/// Setups whose clocks tick together ([`compatible`]).
fn simulate_class(setups: &[&Setup], summaries: &Summaries) -> Vec<Run> {
    let scopes = &setups[0].scopes;
    let histograms = setups.iter().any(|s| s.reads_histograms());
    let mut clocks: Vec<Clock> = setups.iter().map(|s| Clock::new(s)).collect();
    let mut windows: Vec<Shared> = Vec::new();
    loop {
        let mut ticking = false;
        for clock in &mut clocks {
            let Some((start, end, weights)) = clock.tick() else { continue };
            ticking = true;
            let i = match windows.iter().position(|w| w.start == start && w.weights == weights) {
                Some(i) => i,
                None => {
                    let fast = Fast::with_histograms(summaries, scopes, histograms);
                    windows.push(Shared { start, weights: weights.to_vec(), fast, readings: Readings::new(scopes.len()), grown: false });
                    windows.len() - 1
                }
            };
            let window = &mut windows[i];
            if !window.grown {
                super::Source::window(&mut window.fast, start, end, &window.weights);
                window.readings.clear();
                window.grown = true;
            }
            clock.check(window.fast.stats(), &window.readings);
        }
        if !ticking {
            break;
        }
        // Windows only move on: one no clock asked for at this check is dropped (were it asked for
        // again, it would be built afresh).
        windows.retain(|w| w.grown);
        windows.iter_mut().for_each(|w| w.grown = false);
    }
    clocks.into_iter().map(Clock::finish).collect()
}
