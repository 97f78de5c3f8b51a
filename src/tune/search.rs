//! Replaying policies on the scenarios: the fast path's summaries shared by every variant, and the
//! variants scored in lockstep chunks, cut early as the objective allows.

use std::collections::HashMap;

use rayon::prelude::*;

use super::objective::{promotion_floors, Score, Stage, Tally};
use super::space::Space;
use super::{Case, Replayed};
use crate::error::Result;
use crate::policy::Policy;
use crate::scenario::Expect;
use crate::simulate::fast::Summaries;
use crate::simulate::grade::served_before;
use crate::simulate::metrics::Scale;
use crate::simulate::reference::Reference;
use crate::simulate::{lockstep, Setup};
use crate::time::Micros;

/// The fast path's summaries every replay of the search reads, built once per (case, salt) for
/// all the routing weights and check intervals the variants use, and shared across threads.
pub(super) struct Shared {
    pub(super) summaries: HashMap<(usize, String), Summaries>,
}

impl Shared {
    /// `policies[c]`: every policy the search will replay on case `c`.
    pub(super) fn build(cases: &[Case], policies: &[Vec<&Policy>], space: &Space, quiet: bool) -> Result<Shared> {
        let mut jobs: Vec<(usize, String, Vec<f64>, Scale, Micros, Micros)> = Vec::new();
        for (c, case) in cases.iter().enumerate() {
            let Some(first) = policies[c].first() else { continue };
            let setup = Setup::new(first, &case.replay);
            let mut weights: Vec<f64> = policies[c].iter().flat_map(|p| p.weights()).collect();
            weights.sort_by(f64::total_cmp);
            weights.dedup();
            let width = policies[c].iter().map(|p| p.ramp.check_every).fold(0, gcd);
            let mut salts: Vec<String> = policies[c].iter().flat_map(|p| salts_of(p, case.expect, space.salts)).collect();
            salts.sort();
            salts.dedup();
            for salt in salts {
                jobs.push((c, salt, weights.clone(), setup.scale, setup.origin, width));
            }
        }
        let bar = crate::progress::bar(jobs.len() as u64, "indexing", "replays", quiet);
        let built: Vec<((usize, String), Summaries)> = jobs
            .into_par_iter()
            .map(|(c, salt, weights, scale, origin, width)| {
                let summaries = Summaries::build(&cases[c].replay, &salt, &weights, scale, origin, width)?.expanded();
                bar.inc(1);
                Ok(((c, salt), summaries))
            })
            .collect::<Result<_>>()?;
        bar.finish_and_clear();
        Ok(Shared { summaries: built.into_iter().collect() })
    }
}

pub(super) fn gcd(a: Micros, b: Micros) -> Micros {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The routing salts a policy is replayed under on a case: its own for an incident; `n` for a
/// good scenario (its own, then numbered variations of it).
pub(super) fn salts_of(policy: &Policy, expect: Expect, n: usize) -> Vec<String> {
    let n = if expect == Expect::Rollback { 1 } else { n };
    (0..n).map(|k| if k == 0 { policy.ramp.salt.clone() } else { format!("{}-{k}", policy.ramp.salt) }).collect()
}

/// Where a good scenario's replays start: its first request, then each k/windows of its span.
pub(super) fn starts(case: &Case, expect: Expect, windows: usize) -> Vec<Micros> {
    let windows = if expect == Expect::Rollback { 1 } else { windows.max(1) };
    let (first, span) = (case.replay.first, case.replay.last - case.replay.first);
    (0..windows).map(|k| first + span / windows as i64 * k as i64).collect()
}

/// Replays one policy on one case under `salt` from `start`, with the fast path over the shared
/// summaries (or summaries of its own when they cannot serve it), or with the reference.
pub(super) fn replay(
    policy: &Policy,
    case: &Case,
    salt: &str,
    start: Micros,
    shared: Option<&Shared>,
    reference: bool,
) -> Result<Replayed> {
    let setup = Setup::new(policy, &case.replay).starting_at(start).decisions_only();
    let (run, candidate_requests) = if reference {
        let rows = case.replay.rows(salt)?;
        let mut source = Reference::new(&rows, &setup.scopes, setup.scale);
        let run = setup.simulate(&mut source);
        let (_, served) = served_before(&setup, &mut source, &run);
        (run, served)
    } else {
        let key = (case.index, salt.to_string());
        let own;
        let summaries = match shared.and_then(|s| s.summaries.get(&key)) {
            Some(s) if s.serves(&policy.weights(), &setup.scale, setup.origin, policy.ramp.check_every) => s,
            _ => {
                own = Summaries::build(&case.replay, salt, &policy.weights(), setup.scale, setup.origin, policy.ramp.check_every)?;
                &own
            }
        };
        let mut source = setup.fast(summaries);
        let run = setup.simulate(&mut source);
        let (_, served) = served_before(&setup, &mut source, &run);
        (run, served)
    };
    Ok(Replayed::of(&run, candidate_requests))
}

/// Replays each policy on `case` from `start`, each under its salt; the policies that share a salt
/// are simulated in lockstep over the shared summaries ([`lockstep`]).
pub(super) fn replay_many(jobs: &[(&Policy, &str)], case: &Case, start: Micros, shared: &Shared) -> Result<Vec<Replayed>> {
    let setups: Vec<Setup> = jobs.iter().map(|(policy, _)| Setup::new(policy, &case.replay).starting_at(start).decisions_only()).collect();
    let mut out: Vec<Option<Replayed>> = vec![None; jobs.len()];
    let mut salts: Vec<&str> = jobs.iter().map(|(_, salt)| *salt).collect();
    salts.sort_unstable();
    salts.dedup();
    for salt in salts {
        let summaries = shared.summaries.get(&(case.index, salt.to_string()));
        let (served, own): (Vec<usize>, Vec<usize>) = (0..jobs.len()).filter(|&i| jobs[i].1 == salt).partition(|&i| {
            let (policy, setup) = (jobs[i].0, &setups[i]);
            summaries.is_some_and(|s| s.serves(&policy.weights(), &setup.scale, setup.origin, policy.ramp.check_every))
        });
        if let Some(summaries) = summaries.filter(|_| !served.is_empty()) {
            let runs = lockstep::simulate(&served.iter().map(|&i| &setups[i]).collect::<Vec<_>>(), summaries);
            for (&i, run) in served.iter().zip(&runs) {
                let (_, candidate_requests) = served_before(&setups[i], &mut setups[i].fast(summaries), run);
                out[i] = Some(Replayed::of(run, candidate_requests));
            }
        }
        for i in own {
            out[i] = Some(replay(jobs[i].0, case, salt, start, None, false)?);
        }
    }
    Ok(out.into_iter().map(|r| r.expect("every job replayed")).collect())
}

/// Variants in lockstep at most: at every check each reads its own clock, judge and policy, and
/// a few hundred variants' state stays in a core's cache from one check to the next, where
/// thousands miss it on every read (10,000 variants: 77 s of search in chunks of 2,500, 63 s in
/// chunks of 1,000, 44–54 s in chunks of 250–500; windows shared by fewer variants cost less).
pub(super) const CHUNK_VARIANTS: usize = 256;

/// Scores policies (each given per case) over the scenario set. With `cut`, a policy stops at its
/// first missed incident, and once its false rollbacks exceed the budget's allowance.
///
/// The replays go case by case for many policies at once, in lockstep, in parallel over (case,
/// start, salt) and chunks of policies; the incidents all run before any cut (a policy cut at one
/// incident wastes its replays of the later ones), the good replays salt by salt for the
/// policies still in — with cuts, in batches, the most promising first, so that finished
/// feasible variants can cut those they are sure to dominate. Each policy's tally reads its
/// replays in the objective's order, so the scores are those of replaying each policy alone.
pub(super) fn score_all(
    policies: &[&[Policy]],
    cases: &[Case],
    space: &Space,
    shared: &Shared,
    cut: bool,
    progress: &dyn Fn(usize),
) -> Result<Vec<(Score, Stage)>> {
    let mut tallies: Vec<Tally> = policies.iter().map(|p| Tally::new(p, cases, space, cut)).collect();
    // Policies that ramp alike next to each other, so a chunk shares most of its windows.
    let mut order: Vec<usize> = (0..policies.len()).collect();
    order.sort_by_cached_key(|&v| format!("{:?}", policies[v].first().map(|p| (&p.ramp.stages, p.ramp.check_every, p.ramp.window))));
    // At least two chunks a thread: units differ in length (a four-month A/A replay, a one-month
    // window), so more, smaller tasks balance the cores better than the shared windows they split.
    let chunks = 2 * rayon::current_num_threads().max(1);
    // One unit of work: these policies on case `c` from `start`, each under its `k`-th salt.
    let run = |live: &[usize], units: &[(usize, Micros, usize)]| -> Result<Vec<Vec<Replayed>>> {
        let size = live.len().div_ceil(chunks).clamp(1, CHUNK_VARIANTS);
        let tasks: Vec<(usize, &[usize])> =
            units.iter().enumerate().flat_map(|(u, _)| live.chunks(size).map(move |chunk| (u, chunk))).collect();
        let done: Vec<Vec<Replayed>> = tasks
            .par_iter()
            .map(|&(u, chunk)| {
                let (c, start, k) = units[u];
                let case = &cases[c];
                let salts: Vec<String> = chunk.iter().map(|&v| salts_of(&policies[v][c], case.expect, space.salts)[k].clone()).collect();
                let jobs: Vec<(&Policy, &str)> = chunk.iter().zip(&salts).map(|(&v, salt)| (&policies[v][c], salt.as_str())).collect();
                replay_many(&jobs, case, start, shared)
            })
            .collect::<Result<_>>()?;
        // Per unit, the replays of `live` in its order.
        let mut per_unit: Vec<Vec<Replayed>> = vec![Vec::with_capacity(live.len()); units.len()];
        for ((u, _), replays) in tasks.iter().zip(done) {
            per_unit[*u].extend(replays);
        }
        Ok(per_unit)
    };
    let incidents: Vec<(usize, Micros, usize)> =
        cases.iter().enumerate().filter(|(_, c)| c.expect == Expect::Rollback).map(|(i, c)| (i, c.replay.first, 0)).collect();
    let replays = run(&order, &incidents)?;
    for (&(c, _, _), replays) in incidents.iter().zip(&replays) {
        for (&v, r) in order.iter().zip(replays) {
            if tallies[v].stopped.is_none() {
                tallies[v].incident(&cases[c], r);
            }
        }
    }
    // Progress: a variant counts once it is cut or its batch is done.
    let mut reported: Vec<bool> = vec![false; policies.len()];
    let mut report = |tallies: &[Tally], done: &[usize]| {
        for v in done.iter().copied().chain((0..tallies.len()).filter(|&v| tallies[v].stopped.is_some())) {
            if !std::mem::replace(&mut reported[v], true) {
                progress(v);
            }
        }
    };
    report(&tallies, &[]);
    // The good replays, salt by salt, for `batch` (in the ramp order), each salt's replays read
    // by the tallies in order; before each salt, `prune` may stop some.
    let good_units = |k: usize| -> Vec<(usize, Micros, usize)> {
        cases
            .iter()
            .enumerate()
            .filter(|(_, c)| c.expect == Expect::Promote)
            .flat_map(|(i, c)| starts(c, c.expect, space.windows).into_iter().map(move |s| (i, s, k)))
            .collect()
    };
    let mut good = |tallies: &mut [Tally], batch: &[usize], prune: &dyn Fn(&mut Tally)| -> Result<()> {
        for k in 0..space.salts {
            batch.iter().for_each(|&v| prune(&mut tallies[v]));
            let live: Vec<usize> = batch.iter().copied().filter(|&v| tallies[v].stopped.is_none()).collect();
            if live.is_empty() {
                break;
            }
            let units = good_units(k);
            let replays = run(&live, &units)?;
            for (j, &v) in live.iter().enumerate() {
                for (&(c, _, _), replays) in units.iter().zip(&replays) {
                    if tallies[v].stopped.is_none() {
                        tallies[v].good(&cases[c], &replays[j]);
                    }
                }
            }
            report(tallies, &[]);
        }
        report(tallies, batch);
        Ok(())
    };
    let live: Vec<usize> = order.iter().copied().filter(|&v| tallies[v].stopped.is_none()).collect();
    if !cut || !space.cut_dominated {
        good(&mut tallies, &live, &|_| {})?;
        return Ok(tallies.into_iter().map(Tally::finish).collect());
    }
    // With cuts, the most promising variants first (least exposure and earliest possible
    // promotion, by the sum of their ranks), in batches that double: the feasible ones finished
    // so far stop any variant they are sure to dominate (see `Tally::dominated_by`).
    let floors: Vec<Vec<f64>> = live.par_iter().map(|&v| promotion_floors(policies[v], cases, space)).collect();
    for (&v, floors) in live.iter().zip(floors) {
        tallies[v].floors = floors;
    }
    let mut by_exposure = live.clone();
    by_exposure.sort_by_key(|&v| (tallies[v].s.exposure, v));
    let mut by_floor = live.clone();
    by_floor.sort_by(|&a, &b| tallies[a].least_hours().total_cmp(&tallies[b].least_hours()).then(a.cmp(&b)));
    let mut rank = vec![0usize; policies.len()];
    for (i, (&e, &f)) in by_exposure.iter().zip(&by_floor).enumerate() {
        rank[e] += i;
        rank[f] += i;
    }
    let mut promising = live.clone();
    promising.sort_by_key(|&v| (rank[v], v));
    let position: Vec<usize> = {
        let mut p = vec![0usize; policies.len()];
        order.iter().enumerate().for_each(|(i, &v)| p[v] = i);
        p
    };
    let mut finished: Vec<(f64, f64)> = Vec::new();
    let (mut from, mut size) = (0, (2 * rayon::current_num_threads()).max(8));
    while from < promising.len() {
        let mut batch = promising[from..(from + size).min(promising.len())].to_vec();
        batch.sort_by_key(|&v| position[v]);
        let points = std::mem::take(&mut finished);
        good(&mut tallies, &batch, &|t: &mut Tally| {
            if t.stopped.is_none() && t.dominated_by(&points) {
                t.stopped = Some(Stage::Dominated);
            }
        })?;
        finished = points;
        finished.extend(
            batch
                .iter()
                .map(|&v| &tallies[v])
                .filter(|t| t.finished_feasible(space.false_rollback_budget))
                .map(|t| (t.s.exposure as f64, t.mean_hours())),
        );
        from += size;
        size *= 2;
    }
    Ok(tallies.into_iter().map(Tally::finish).collect())
}
