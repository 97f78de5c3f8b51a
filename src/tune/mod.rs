//! `tune`: search policy variants against scenarios whose right answer is known — incidents that
//! must be rolled back, good releases and A/A replays that must never be — and emit the best
//! policy as drop-in scenario sections, a report and exports for live controllers.
//!
//! The objective, in order:
//! 1. no missed incident: a variant that fails to roll back any `expect = "rollback"` scenario is
//!    cut there, before the good scenarios (one routing salt per incident) — the first early cut;
//! 2. false rollbacks within the budget: each `expect = "promote"` scenario is replayed under
//!    `search.salts` routing salts from `search.windows` start times, and the share rolled back
//!    (with its 95% Wilson interval) must be at most `search.false_rollback_budget`; a variant is
//!    cut as soon as its false rollbacks exceed what the budget allows over all planned replays —
//!    the second early cut;
//! 3. then the least exposure (candidate requests served on the incidents until the rollback) and
//!    the shortest time to promotion of the good replays (mean hours; a replay that never promotes
//!    counts its whole span). The Pareto frontier over these two is reported; the winner is the
//!    frontier point with the least exposure, ties broken by time to promotion. The base policy
//!    (the first scenario's) competes as a variant with no overrides. The third early cut
//!    (`search.cut_dominated`, on by default) stops a variant once a finished feasible one is
//!    sure to dominate it: no more exposure, and a mean time to promotion no longer than the
//!    least the variant can still reach (see `Tally::dominated_by`); the frontier and the
//!    winner are the same as without it.
//!
//! The replays' fast-path summaries are built once per (scenario, salt) for every routing weight
//! and check interval the variants use, and shared by all of them; variants are simulated for
//! their decisions only ([`Setup::decisions_only`]), many at once in lockstep over shared windows
//! ([`lockstep`]), in parallel; the winner is re-checked with the row-by-row reference simulator
//! on every scenario (its own salt, from the first request).

mod objective;
mod report;
mod search;
pub mod space;
mod summary;
mod variant;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::{Error, Problem, Result};
use crate::policy::{Policy, RawPolicy, TrafficShape};
use crate::runtime::RuntimeOptions;
use crate::scenario::{Expect, Scenario};
use crate::score::{self, cache::CacheDir};
use crate::simulate::replay::Replay;
use crate::simulate::Outcome;
use objective::{feasible, OBJECTIVE};
pub use objective::{ScenarioScore, Score, Stage};
use search::{replay, score_all, Shared};
use space::{Space, Variant};
pub use summary::{to_text, ScenarioRef, SearchInfo, TuneSummary, VariantResult};
use variant::{gates_exist, overridden, validate};

/// Options of `tune` beyond the scenarios and the space.
#[derive(Debug, Clone, Default)]
pub struct TuneOptions {
    /// Output folder; default `reports/tune/`.
    pub out: Option<PathBuf>,
    pub runtime: RuntimeOptions,
    pub cache_dir: Option<PathBuf>,
    pub quiet: bool,
}

/// A scenario ready to replay: scored, scanned, with what should happen.
struct Case {
    /// Position in the scenario list.
    pub(super) index: usize,
    pub(super) scenario: Scenario,
    pub(super) expect: Expect,
    pub(super) replay: Replay,
}

impl Case {
    pub(super) fn shape(&self) -> TrafficShape<'_> {
        TrafficShape { segments: &self.scenario.traffic.segments, labelled: self.scenario.traffic.label.is_some() }
    }
}

/// One replay of one policy.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Replayed {
    pub(super) outcome: Outcome,
    /// From the replay's start to the decision.
    pub(super) hours: f64,
    /// The whole replay.
    pub(super) span_hours: f64,
    /// Candidate requests served over the whole replay: until a rollback, or to its end when the
    /// candidate was promoted or held.
    pub(super) candidate_requests: u64,
}

impl Replayed {
    pub(super) fn of(run: &crate::simulate::Run, candidate_requests: u64) -> Self {
        Replayed {
            outcome: run.outcome,
            hours: crate::time::hours(run.decided_at - run.origin),
            span_hours: crate::time::hours(run.end - run.origin),
            candidate_requests,
        }
    }
}

/// What `tune` produced.
pub struct TuneOutput {
    pub out_dir: PathBuf,
    pub summary: TuneSummary,
    pub tuned: Option<Policy>,
}

/// Loads each scenario and checks the set and the space against them, then scores (or reuses the
/// cache) and scans each.
fn cases(paths: &[PathBuf], space: &Space, space_path: &Path, options: &TuneOptions) -> Result<Vec<Case>> {
    let cache = CacheDir::from_option(options.cache_dir.as_deref());
    // Every scenario checked, and what it should have done known, before any is scored.
    let mut prepared = Vec::new();
    for path in paths {
        let p = crate::run::prepare(path, &options.runtime)?;
        let Some(expect) = p.scenario.expect else {
            return Err(Error::invalid(
                Problem::new(format!("{}: expect", path.display()), "is missing: tune needs to know what should have happened")
                    .fix("add `expect = \"rollback\"` (an incident) or `expect = \"promote\"` (a good release or an A/A replay)"),
            ));
        };
        prepared.push((p, expect));
    }
    if !prepared.iter().any(|(_, expect)| *expect == Expect::Promote) {
        return Err(Error::invalid(
            Problem::new("tune", "no scenario says `expect = \"promote\"`: without a good release or an A/A replay, false rollbacks cannot be measured, and rolling back every candidate at once would win")
                .fix("add a good release or an A/A replay of the same traffic (see scenarios/flights-2013-aa.toml)"),
        ));
    }
    let base = &prepared[0].0.scenario;
    gates_exist(space, space_path, &base.policy, &base.file.display().to_string())?;
    let mut cases = Vec::new();
    for (prepared, expect) in prepared {
        let scenario = &prepared.scenario;
        let settings = score::Settings::new(scenario, cache.clone(), true, options.quiet);
        let scored = prepared.score(&settings)?;
        let replay = Replay::scan(&scored.parts, &prepared.layout, &scenario.faults)?;
        cases.push(Case { index: cases.len(), scenario: prepared.scenario, expect, replay });
    }
    Ok(cases)
}

/// Runs the search and writes `tuned-policy.toml` and `tune.json`.
pub fn tune(scenario_paths: &[PathBuf], space_path: &Path, options: &TuneOptions) -> Result<TuneOutput> {
    let started = std::time::Instant::now();
    let space: Space = space::load(space_path)?;
    let out_dir = options.out.clone().unwrap_or_else(|| Path::new("reports").join("tune"));
    crate::atomic::check_output_folder(&out_dir)?;
    if scenario_paths.is_empty() {
        return Err(Error::invalid(
            Problem::new("tune", "no scenarios given").fix("pass incident and good-release scenarios with `expect` set"),
        ));
    }
    let cases = cases(scenario_paths, &space, space_path, options)?;
    let base = cases[0].scenario.policy.clone();
    // Each variant's overrides applied once to the base policy's sections, then validated per case.
    let base_raw = base.to_raw();
    let per_case = |variant: &Variant| -> std::result::Result<Vec<Policy>, String> {
        let raw = overridden(&base_raw, variant)?;
        cases.iter().map(|c| validate(&raw, c)).collect()
    };
    let base_policies = per_case(&Vec::new()).map_err(|e| Error::invalid(Problem::new(cases[0].scenario.file_name(), e)))?;
    let defaults: Vec<Policy> = cases
        .iter()
        .map(|c| {
            let mut problems = Vec::new();
            Policy::from_raw(&RawPolicy::default(), &c.shape(), &c.scenario.file_name(), &mut problems)
        })
        .collect();
    // The base policy competes too (no overrides), so the winner is never worse than it.
    let mut variants = space.variants();
    if !variants.iter().any(|v| v.is_empty()) {
        variants.insert(0, Vec::new());
    }
    let policies: Vec<std::result::Result<Vec<Policy>, String>> = variants.par_iter().map(per_case).collect();

    let mut by_case: Vec<Vec<&Policy>> = vec![Vec::new(); cases.len()];
    for set in std::iter::once(&base_policies).chain(std::iter::once(&defaults)).chain(policies.iter().flatten()) {
        for (c, policy) in set.iter().enumerate() {
            by_case[c].push(policy);
        }
    }
    let shared = Shared::build(&cases, &by_case, &space, options.quiet)?;
    let indexed = started.elapsed().as_secs_f64();

    let mut baselines = BTreeMap::new();
    let mut scored = score_all(&[&base_policies, &defaults], &cases, &space, &shared, false, &|_| {})?.into_iter().map(|(s, _)| s);
    baselines.insert("base", scored.next().expect("two baselines"));
    baselines.insert("default", scored.next().expect("two baselines"));

    let searching = std::time::Instant::now();
    let bar = crate::progress::bar(variants.len() as u64, "tuning", "variants", options.quiet);
    let valid: Vec<usize> = (0..variants.len()).filter(|&i| policies[i].is_ok()).collect();
    let sets: Vec<&[Policy]> = valid.iter().map(|&i| policies[i].as_deref().expect("valid")).collect();
    bar.inc((variants.len() - valid.len()) as u64);
    let mut scores = score_all(&sets, &cases, &space, &shared, true, &|_| bar.inc(1))?.into_iter();
    let mut results = variant_results(&variants, &policies, &mut scores, &space);
    bar.finish_and_clear();
    let search_seconds = searching.elapsed().as_secs_f64();

    let (feasible_ids, winner) = summary::frontier(&mut results);

    // The winner re-checked with the reference simulator.
    let (tuned, reference_check) = match winner {
        Some(w) => {
            let policies = per_case(&variants[w]).map_err(|e| Error::Internal(format!("the winner no longer validates: {e}")))?;
            let check = reference_check(&policies, &cases, &shared)?;
            (policies.into_iter().next(), Some(check))
        }
        None => (None, None),
    };

    let seconds = started.elapsed().as_secs_f64();
    let summary = TuneSummary {
        scenarios: cases
            .iter()
            .map(|c| ScenarioRef { name: c.scenario.name.clone(), file: c.scenario.file.display().to_string(), expect: c.expect })
            .collect(),
        objective: OBJECTIVE,
        search: search_info(&space, &results, feasible_ids.len(), (seconds, indexed, search_seconds)),
        baselines,
        variants: results,
        winner,
        reference_check,
    };

    summary::write(&out_dir, &summary, tuned.as_ref())?;
    Ok(TuneOutput { out_dir, summary, tuned })
}

/// Every variant's result: why it was not valid, or its score, how far it got and whether it is
/// feasible (`scores`: one per valid variant, in order).
fn variant_results(
    variants: &[Variant],
    policies: &[std::result::Result<Vec<Policy>, String>],
    scores: &mut impl Iterator<Item = (Score, Stage)>,
    space: &Space,
) -> Vec<VariantResult> {
    variants
        .iter()
        .zip(policies)
        .enumerate()
        .map(|(id, (variant, policies))| {
            let params = variant.iter().map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or(serde_json::Value::Null))).collect();
            match policies {
                Err(e) => VariantResult {
                    id,
                    params,
                    invalid: Some(e.clone()),
                    stage: Stage::Invalid,
                    score: None,
                    feasible: false,
                    frontier: false,
                },
                Ok(_) => {
                    let (s, stage) = scores.next().expect("a score per valid variant");
                    VariantResult {
                        id,
                        params,
                        invalid: None,
                        stage,
                        feasible: stage == Stage::Full && feasible(&s, space),
                        score: Some(s),
                        frontier: false,
                    }
                }
            }
        })
        .collect()
}

/// The winner's policies (one per case) replayed on the fast path and by the row-by-row reference
/// simulator: "identical decisions on every scenario", or where they differ.
fn reference_check(policies: &[Policy], cases: &[Case], shared: &Shared) -> Result<String> {
    let mut mismatches = Vec::new();
    for (policy, case) in policies.iter().zip(cases) {
        let (salt, start) = (&policy.ramp.salt, case.replay.first);
        let (fast, slow) = (replay(policy, case, salt, start, Some(shared), false)?, replay(policy, case, salt, start, None, true)?);
        if fast.outcome != slow.outcome || fast.hours != slow.hours {
            mismatches.push(format!(
                "{}: fast {:?} after {:.0}h, reference {:?} after {:.0}h",
                case.scenario.name, fast.outcome, fast.hours, slow.outcome, slow.hours
            ));
        }
    }
    Ok(if mismatches.is_empty() { "identical decisions on every scenario".to_string() } else { mismatches.join("; ") })
}

/// How the search went: its settings, the variants cut at each stage, its time
/// (`(all, indexing, searching)` seconds).
fn search_info(space: &Space, results: &[VariantResult], feasible: usize, (seconds, indexed, searching): (f64, f64, f64)) -> SearchInfo {
    let cut = |stage: Stage| results.iter().filter(|r| r.stage == stage).count();
    SearchInfo {
        method: match space.method {
            space::Method::Grid => "grid",
            space::Method::Random => "random",
        },
        variants: results.len(),
        salts: space.salts,
        windows: space.windows,
        false_rollback_budget: space.false_rollback_budget,
        promote_within: crate::time::format_duration(space.promote_within),
        min_promoted: space.min_promoted,
        invalid: cut(Stage::Invalid),
        cut_at_incidents: cut(Stage::Incidents),
        cut_at_false_rollbacks: cut(Stage::FalseRollbacks),
        cut_at_promotions: cut(Stage::Promotions),
        cut_dominated: cut(Stage::Dominated),
        feasible,
        seconds,
        index_seconds: indexed,
        search_seconds: searching,
        variants_per_second: results.len() as f64 / searching.max(1e-9),
    }
}
