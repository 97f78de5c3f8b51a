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

mod report;
pub mod space;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::controller::export;
use crate::error::{Error, Problem, Result};
use crate::policy::raw::RawSections;
use crate::policy::{Policy, RawPolicy, TrafficShape};
use crate::runtime::RuntimeOptions;
use crate::scenario::{Expect, Scenario};
use crate::score::{self, cache::CacheDir};
use crate::simulate::fast::Summaries;
use crate::simulate::grade::served_before;
use crate::simulate::metrics::Scale;
use crate::simulate::reference::Reference;
use crate::simulate::replay::Replay;
use crate::simulate::{lockstep, Outcome, Setup};
use crate::stats::binomial::wilson;
use crate::stats::moments::Counts;
use crate::time::Micros;
use space::{Space, Variant};

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
    index: usize,
    scenario: Scenario,
    expect: Expect,
    replay: Replay,
}

impl Case {
    fn shape(&self) -> TrafficShape<'_> {
        TrafficShape { segments: &self.scenario.traffic.segments, labelled: self.scenario.traffic.label.is_some() }
    }
}

/// One replay of one policy.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Replayed {
    outcome: Outcome,
    /// From the replay's start to the decision.
    hours: f64,
    /// The whole replay.
    span_hours: f64,
    /// Candidate requests served over the whole replay: until a rollback, or to its end when the
    /// candidate was promoted or held.
    candidate_requests: u64,
}

impl Replayed {
    fn of(run: &crate::simulate::Run, candidate_requests: u64) -> Self {
        Replayed {
            outcome: run.outcome,
            hours: crate::time::hours(run.decided_at - run.origin),
            span_hours: crate::time::hours(run.end - run.origin),
            candidate_requests,
        }
    }
}

/// What a policy did over the scenario set.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Score {
    pub incidents: usize,
    pub missed_incidents: usize,
    /// Candidate requests served on the incidents — until the rollback, or to the end of the replay
    /// when an incident was missed — summed.
    pub exposure: u64,
    /// Mean hours from the first request to the rollback, over the incidents caught.
    pub hours_to_rollback: Option<f64>,
    /// Replays of good scenarios (scenarios × salts × windows, fewer when cut early).
    pub good_replays: usize,
    pub false_rollbacks: usize,
    pub false_rollback_rate: Option<f64>,
    /// 95% Wilson interval of the false-rollback rate.
    pub false_rollback_interval: Option<[f64; 2]>,
    /// Mean hours to promotion over the good replays (never promoted: the replay's span).
    pub hours_to_promotion: Option<f64>,
    /// The median and the 90th percentile of the same hours (nearest rank).
    pub hours_to_promotion_median: Option<f64>,
    pub hours_to_promotion_p90: Option<f64>,
    pub promoted: usize,
    /// Good replays promoted within `search.promote_within`, and their share of the good replays.
    pub promoted_in_time: usize,
    pub promoted_in_time_share: Option<f64>,
    /// Per scenario, in the order given.
    pub scenarios: Vec<ScenarioScore>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VariantResult {
    pub id: usize,
    pub params: BTreeMap<String, serde_json::Value>,
    /// Why the variant could not run (an invalid policy), if so.
    pub invalid: Option<String>,
    pub stage: Stage,
    pub score: Option<Score>,
    pub feasible: bool,
    pub frontier: bool,
}

/// `tune.json`.
#[derive(Debug, Clone, Serialize)]
pub struct TuneSummary {
    pub scenarios: Vec<ScenarioRef>,
    pub objective: &'static str,
    pub search: SearchInfo,
    /// The first scenario's own policy (the base the variants change) and the default policy.
    pub baselines: BTreeMap<&'static str, Score>,
    pub variants: Vec<VariantResult>,
    pub winner: Option<usize>,
    /// The winner's decisions re-checked with the reference simulator on every scenario (its own
    /// salt, from the first request).
    pub reference_check: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioRef {
    pub name: String,
    pub file: String,
    pub expect: Expect,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchInfo {
    pub method: &'static str,
    pub variants: usize,
    pub salts: usize,
    pub windows: usize,
    pub false_rollback_budget: f64,
    /// A good replay counts as promoted when it promotes this soon ("7d").
    pub promote_within: String,
    /// The share of good replays a feasible variant promotes that soon.
    pub min_promoted: f64,
    /// Variants whose parameters do not make a valid policy (each says why in `invalid`).
    pub invalid: usize,
    /// Variants cut after missing an incident, after too many false rollbacks, and once sure to
    /// be dominated on the frontier.
    pub cut_at_incidents: usize,
    pub cut_at_false_rollbacks: usize,
    /// Variants cut once too few good replays could still promote within `promote_within`.
    pub cut_at_promotions: usize,
    pub cut_dominated: usize,
    pub feasible: usize,
    /// The whole tune; loading, scoring and indexing the replays; evaluating the variants.
    pub seconds: f64,
    pub index_seconds: f64,
    pub search_seconds: f64,
    /// Variants evaluated per second of the search (the shared indexing excluded).
    pub variants_per_second: f64,
}

const OBJECTIVE: &str = "no missed incident; false-rollback rate at most the budget; at least min_promoted of the good replays promoted within promote_within; then the least exposure (candidate requests served on the incidents until the rollback, summed), ties broken by the shortest mean time to promotion of the good replays (a replay never promoted counts its whole span)";

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
        let scored =
            score::score(prepared.runtime, scenario, &prepared.files, &prepared.survey, &prepared.layout, prepared.models(), &settings)?;
        let replay = Replay::scan(&scored.parts, &prepared.layout, &scenario.faults)?;
        cases.push(Case { index: cases.len(), scenario: prepared.scenario, expect, replay });
    }
    Ok(cases)
}

/// The policy of `base` with the variant's overrides, validated against the case's traffic.
fn apply(base: &Policy, variant: &Variant, case: &Case) -> std::result::Result<Policy, String> {
    let RawSections { ramp, segment_policy, gates, decision } = base.to_raw();
    let (mut ramp, mut gates, mut decision) = (to_value(&ramp)?, to_value(&gates)?, to_value(&decision)?);
    for (key, value) in variant {
        let parts: Vec<&str> = key.split('.').collect();
        match parts.as_slice() {
            ["ramp", "stages"] => {
                let weights = value.as_array().ok_or_else(|| format!("{key}: give a list of weights, e.g. [5, 25, 100]"))?;
                let old = ramp.get("stages").and_then(|s| s.as_array()).cloned().unwrap_or_default();
                let stages = weights
                    .iter()
                    .enumerate()
                    .map(|(i, w)| {
                        let mut stage = toml::map::Map::new();
                        stage.insert("weight".into(), w.clone());
                        let bake = old.get(i).and_then(|s| s.get("bake")).cloned().unwrap_or_else(|| toml::Value::String("1d".into()));
                        stage.insert("bake".into(), bake);
                        toml::Value::Table(stage)
                    })
                    .collect();
                table(&mut ramp).insert("stages".into(), toml::Value::Array(stages));
            }
            ["ramp", "bake"] => {
                if let Some(stages) = table(&mut ramp).get_mut("stages").and_then(|s| s.as_array_mut()) {
                    for stage in stages.iter_mut().filter(|s| s.get("weight").and_then(as_f64).is_some_and(|w| w < 100.0)) {
                        table(stage).insert("bake".into(), value.clone());
                    }
                }
            }
            ["ramp", field] => {
                table(&mut ramp).insert((*field).into(), value.clone());
            }
            ["decision", field] => {
                table(&mut decision).insert((*field).into(), value.clone());
            }
            ["gates", metric, field] => {
                let mut found = false;
                for gate in gates.as_array_mut().into_iter().flatten().filter(|g| g.get("metric").and_then(|m| m.as_str()) == Some(metric))
                {
                    table(gate).insert((*field).into(), value.clone());
                    found = true;
                }
                if !found {
                    return Err(format!("{key}: the policy has no {metric} gate"));
                }
            }
            _ => return Err(format!("{key}: not a tunable key")),
        }
    }
    let raw = RawPolicy {
        ramp: Some(ramp.try_into().map_err(|e: toml::de::Error| e.message().to_string())?),
        segment_policy,
        gates: gates.try_into().map_err(|e: toml::de::Error| e.message().to_string())?,
        decision: Some(decision.try_into().map_err(|e: toml::de::Error| e.message().to_string())?),
    };
    let mut problems = Vec::new();
    let policy = Policy::from_raw(&raw, &case.shape(), &case.scenario.file_name(), &mut problems);
    if problems.is_empty() {
        Ok(policy)
    } else {
        Err(problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))
    }
}

/// A raw policy section as a TOML value, to apply overrides to.
fn to_value(section: &impl Serialize) -> std::result::Result<toml::Value, String> {
    toml::Value::try_from(section).map_err(|e| e.to_string())
}

fn table(value: &mut toml::Value) -> &mut toml::map::Map<String, toml::Value> {
    if !value.is_table() {
        *value = toml::Value::Table(toml::map::Map::new());
    }
    value.as_table_mut().expect("a table")
}

fn as_f64(value: &toml::Value) -> Option<f64> {
    value.as_float().or_else(|| value.as_integer().map(|i| i as f64))
}

/// Every `gates.<metric>.<field>` parameter names a gate the base policy has: otherwise no variant
/// that sets it would be a valid policy.
fn gates_exist(space: &Space, space_path: &Path, base: &Policy, base_file: &str) -> Result<()> {
    let metrics: Vec<&str> = base.gates.iter().map(|g| g.metric.name()).collect();
    let mut problems = Vec::new();
    for (i, key) in space.params.iter().map(|p| &p.key).enumerate() {
        if let ["gates", metric, _] = key.split('.').collect::<Vec<_>>().as_slice() {
            if !metrics.contains(metric) {
                problems.push(
                    Problem::new(
                        format!("{}: param[{i}].key", space_path.display()),
                        format!("\"{key}\": the base policy ({base_file}'s) has no {metric} gate"),
                    )
                    .fix(format!("tune one of its gates ({}), or add a gate on {metric} to {base_file}", metrics.join(", "))),
                );
            }
        }
    }
    crate::error::check((), problems)
}

/// The fast path's summaries every replay of the search reads, built once per (case, salt) for
/// all the routing weights and check intervals the variants use, and shared across threads.
struct Shared {
    summaries: HashMap<(usize, String), Summaries>,
}

impl Shared {
    /// `policies[c]`: every policy the search will replay on case `c`.
    fn build(cases: &[Case], policies: &[Vec<&Policy>], space: &Space, quiet: bool) -> Result<Shared> {
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
                let summaries = Summaries::build(&cases[c].replay, &salt, &weights, scale, origin, width)?;
                bar.inc(1);
                Ok(((c, salt), summaries))
            })
            .collect::<Result<_>>()?;
        bar.finish_and_clear();
        Ok(Shared { summaries: built.into_iter().collect() })
    }
}

fn gcd(a: Micros, b: Micros) -> Micros {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The routing salts a policy is replayed under on a case: its own for an incident; `n` for a
/// good scenario (its own, then numbered variations of it).
fn salts_of(policy: &Policy, expect: Expect, n: usize) -> Vec<String> {
    let n = if expect == Expect::Rollback { 1 } else { n };
    (0..n).map(|k| if k == 0 { policy.ramp.salt.clone() } else { format!("{}-{k}", policy.ramp.salt) }).collect()
}

/// Where a good scenario's replays start: its first request, then each k/windows of its span.
fn starts(case: &Case, expect: Expect, windows: usize) -> Vec<Micros> {
    let windows = if expect == Expect::Rollback { 1 } else { windows.max(1) };
    let (first, span) = (case.replay.first, case.replay.last - case.replay.first);
    (0..windows).map(|k| first + span / windows as i64 * k as i64).collect()
}

/// Replays one policy on one case under `salt` from `start`, with the fast path over the shared
/// summaries (or summaries of its own when they cannot serve it), or with the reference.
fn replay(policy: &Policy, case: &Case, salt: &str, start: Micros, shared: Option<&Shared>, reference: bool) -> Result<Replayed> {
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

/// What one policy did on one scenario, over its replays.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScenarioScore {
    pub scenario: String,
    pub expect: Expect,
    pub replays: usize,
    pub rolled_back: usize,
    pub promoted: usize,
    pub held: usize,
    /// Mean hours from the replay's start to its decision (the whole replay when held).
    pub mean_hours: f64,
    /// Candidate requests served (until a rollback, else to the end of the replay), summed over the replays.
    pub candidate_requests: u64,
}

impl ScenarioScore {
    fn new(case: &Case) -> Self {
        ScenarioScore {
            scenario: case.scenario.name.clone(),
            expect: case.expect,
            replays: 0,
            rolled_back: 0,
            promoted: 0,
            held: 0,
            mean_hours: 0.0,
            candidate_requests: 0,
        }
    }

    fn add(&mut self, r: &Replayed) {
        let hours = if r.outcome == Outcome::Held { r.span_hours } else { r.hours };
        self.mean_hours = (self.mean_hours * self.replays as f64 + hours) / (self.replays + 1) as f64;
        self.replays += 1;
        self.candidate_requests += r.candidate_requests;
        match r.outcome {
            Outcome::RolledBack => self.rolled_back += 1,
            Outcome::Promoted => self.promoted += 1,
            Outcome::Held => self.held += 1,
        }
    }
}

/// How far a variant's evaluation went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Not a valid policy.
    Invalid,
    /// Cut after missing an incident.
    Incidents,
    /// Cut once its false rollbacks exceeded what the budget allows over all good replays.
    FalseRollbacks,
    /// Cut once more good replays failed to promote within `promote_within` than
    /// `min_promoted` allows over all of them.
    Promotions,
    /// Cut once a finished feasible variant was sure to dominate it on the frontier: no more
    /// exposure and a mean time to promotion no longer than the least it could still reach.
    Dominated,
    Full,
}

/// A policy's score as its replays come in, in the order the objective reads them: the incidents
/// in the order given, then the good replays salt by salt (so an early cut has seen every good
/// scenario), each scenario from each start.
struct Tally {
    s: Score,
    rollback_hours: Vec<f64>,
    promotion_hours: Vec<f64>,
    /// False rollbacks the budget allows over all planned good replays.
    allowed: usize,
    /// Good replays that may fail to promote in time, over all planned ones.
    late_allowed: usize,
    /// `search.promote_within` and `search.min_promoted`.
    promote_within_hours: f64,
    min_promoted: f64,
    /// Whether to stop at the first missed incident and once the false rollbacks exceed `allowed`.
    cut: bool,
    /// Where the evaluation stopped, once it has.
    stopped: Option<Stage>,
    /// When dominated variants are cut, per planned good replay in the tally's order, the least it
    /// can add to the time to promotion ([`promotion_floors`]).
    floors: Vec<f64>,
}

impl Tally {
    fn new(policies: &[Policy], cases: &[Case], space: &Space, cut: bool) -> Self {
        let planned: usize = policies
            .iter()
            .zip(cases)
            .filter(|(_, c)| c.expect == Expect::Promote)
            .map(|(p, c)| salts_of(p, c.expect, space.salts).len() * starts(c, c.expect, space.windows).len())
            .sum();
        let s = Score {
            incidents: 0,
            missed_incidents: 0,
            exposure: 0,
            hours_to_rollback: None,
            good_replays: 0,
            false_rollbacks: 0,
            false_rollback_rate: None,
            false_rollback_interval: None,
            hours_to_promotion: None,
            hours_to_promotion_median: None,
            hours_to_promotion_p90: None,
            promoted: 0,
            promoted_in_time: 0,
            promoted_in_time_share: None,
            scenarios: cases.iter().map(ScenarioScore::new).collect(),
        };
        let allowed = (space.false_rollback_budget * planned as f64 + 1e-9).floor() as usize;
        let late_allowed = planned - (space.min_promoted * planned as f64 - 1e-9).ceil().max(0.0) as usize;
        Tally {
            s,
            rollback_hours: Vec::new(),
            promotion_hours: Vec::new(),
            allowed,
            late_allowed,
            promote_within_hours: crate::time::hours(space.promote_within),
            min_promoted: space.min_promoted,
            cut,
            stopped: None,
            floors: Vec::new(),
        }
    }

    /// The false-rollback rate over the good replays so far.
    fn false_rollback_rate(&self) -> Option<f64> {
        (self.s.good_replays > 0).then(|| self.s.false_rollbacks as f64 / self.s.good_replays as f64)
    }

    /// Replayed to the end, and feasible as [`feasible`] will judge its score.
    fn finished_feasible(&self, budget: f64) -> bool {
        self.stopped.is_none()
            && within_budget(self.s.missed_incidents, self.false_rollback_rate(), budget)
            && promotes_enough(self.promoted_in_time_share(), self.min_promoted)
    }

    /// The share of the good replays so far promoted within `promote_within`.
    fn promoted_in_time_share(&self) -> Option<f64> {
        (self.s.good_replays > 0).then(|| self.s.promoted_in_time as f64 / self.s.good_replays as f64)
    }

    /// The mean time to promotion over the good replays so far.
    fn mean_hours(&self) -> f64 {
        self.promotion_hours.iter().sum::<f64>() / self.promotion_hours.len() as f64
    }

    /// The least mean time to promotion the variant can still reach: the replays so far, and each
    /// one left at its floor. Summed in the same order as the final mean, each term at most the
    /// one it stands for, so (floating-point addition being monotone) never above the final mean.
    fn least_hours(&self) -> f64 {
        let seen = self.promotion_hours.len().min(self.floors.len());
        self.promotion_hours.iter().chain(&self.floors[seen..]).sum::<f64>() / self.floors.len().max(1) as f64
    }

    /// Whether a finished feasible variant at `points` (exposure, mean hours to promotion) is
    /// sure to dominate this one on the frontier: no more exposure (this one's is final once the
    /// incidents are replayed) and no longer than the least this one can reach, one of them
    /// strictly less. Such a variant can be on no frontier nor win (and whatever it would have
    /// dominated, the other dominates too), so it is cut without changing either.
    fn dominated_by(&self, points: &[(f64, f64)]) -> bool {
        let (e, h) = (self.s.exposure as f64, self.least_hours());
        points.iter().any(|&(pe, ph)| pe <= e && ph <= h && (pe < e || ph < h))
    }

    fn incident(&mut self, case: &Case, r: &Replayed) {
        let s = &mut self.s;
        s.scenarios[case.index].add(r);
        s.incidents += 1;
        s.exposure += r.candidate_requests;
        if r.outcome == Outcome::RolledBack {
            self.rollback_hours.push(r.hours);
        } else {
            s.missed_incidents += 1;
        }
        if self.cut && s.missed_incidents > 0 {
            self.stopped = Some(Stage::Incidents);
        }
    }

    fn good(&mut self, case: &Case, r: &Replayed) {
        let s = &mut self.s;
        s.scenarios[case.index].add(r);
        s.good_replays += 1;
        match r.outcome {
            Outcome::RolledBack => {
                s.false_rollbacks += 1;
                self.promotion_hours.push(r.span_hours);
            }
            Outcome::Promoted => {
                s.promoted += 1;
                s.promoted_in_time += usize::from(r.hours <= self.promote_within_hours);
                self.promotion_hours.push(r.hours);
            }
            Outcome::Held => self.promotion_hours.push(r.span_hours),
        }
        if self.cut && s.false_rollbacks > self.allowed {
            self.stopped = Some(Stage::FalseRollbacks);
        } else if self.cut && s.good_replays - s.promoted_in_time > self.late_allowed {
            self.stopped = Some(Stage::Promotions);
        }
    }

    fn finish(mut self) -> (Score, Stage) {
        let (hours_to_promotion, rate, in_time) = (self.mean_hours(), self.false_rollback_rate(), self.promoted_in_time_share());
        let mut sorted = self.promotion_hours.clone();
        sorted.sort_by(f64::total_cmp);
        let s = &mut self.s;
        if self.stopped != Some(Stage::Incidents) && !self.rollback_hours.is_empty() {
            s.hours_to_rollback = Some(self.rollback_hours.iter().sum::<f64>() / self.rollback_hours.len() as f64);
        }
        if s.good_replays > 0 {
            s.false_rollback_rate = rate;
            s.false_rollback_interval =
                wilson(Counts { successes: s.false_rollbacks as u64, trials: s.good_replays as u64 }, 0.05).map(|i| [i.lower, i.upper]);
            s.hours_to_promotion = Some(hours_to_promotion);
            s.hours_to_promotion_median = nearest_rank(&sorted, 0.5);
            s.hours_to_promotion_p90 = nearest_rank(&sorted, 0.9);
            s.promoted_in_time_share = in_time;
        }
        (self.s, self.stopped.unwrap_or(Stage::Full))
    }
}

/// Per planned good replay of a policy (given per case), in a tally's order, the least it can
/// count in the mean time to promotion, in the same units: a promotion needs every stage below
/// 100% (in every wave) to last at least its bake (or its maximum time, if shorter) rounded up to
/// whole check intervals, and a replay that never promotes counts its whole span. The same for
/// every salt: worked out once per (scenario, start), repeated per salt.
fn promotion_floors(policies: &[Policy], cases: &[Case], space: &Space) -> Vec<f64> {
    let floor = |policy: &Policy, case: &Case, start: Micros| {
        let setup = Setup::new(policy, &case.replay).starting_at(start);
        let step = policy.ramp.check_every;
        let wave: Micros = policy
            .ramp
            .stages
            .iter()
            .take_while(|s| s.weight < 1.0)
            .map(|s| (s.bake.min(s.max_time).max(1) + step - 1) / step * step)
            .sum();
        let earliest = wave * setup.router.waves as Micros;
        let span = setup.end.max(setup.origin) - setup.origin;
        crate::time::hours(earliest.min(span))
    };
    let good = policies.iter().zip(cases).filter(|(_, c)| c.expect == Expect::Promote);
    let per_salt: Vec<f64> = good
        .flat_map(|(policy, case)| starts(case, case.expect, space.windows).into_iter().map(move |start| floor(policy, case, start)))
        .collect();
    per_salt.repeat(space.salts)
}

/// Replays each policy on `case` from `start`, each under its salt; the policies that share a salt
/// are simulated in lockstep over the shared summaries ([`lockstep`]).
fn replay_many(jobs: &[(&Policy, &str)], case: &Case, start: Micros, shared: &Shared) -> Result<Vec<Replayed>> {
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
const CHUNK_VARIANTS: usize = 256;

/// Scores policies (each given per case) over the scenario set. With `cut`, a policy stops at its
/// first missed incident, and once its false rollbacks exceed the budget's allowance.
///
/// The replays go case by case for many policies at once, in lockstep, in parallel over (case,
/// start, salt) and chunks of policies; the incidents all run before any cut (a policy cut at one
/// incident wastes its replays of the later ones), the good replays salt by salt for the
/// policies still in — with cuts, in batches, the most promising first, so that finished
/// feasible variants can cut those they are sure to dominate. Each policy's tally reads its
/// replays in the objective's order, so the scores are those of replaying each policy alone.
fn score_all(
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

fn feasible(s: &Score, space: &Space) -> bool {
    within_budget(s.missed_incidents, s.false_rollback_rate, space.false_rollback_budget)
        && promotes_enough(s.promoted_in_time_share, space.min_promoted)
}

/// At least `min_promoted` of the good replays promoted in time (there were good replays).
fn promotes_enough(share: Option<f64>, min_promoted: f64) -> bool {
    share.is_some_and(|share| share + 1e-12 >= min_promoted)
}

/// The `q`-quantile of ascending `sorted` by nearest rank: the smallest value with at least q of
/// them at or below it.
fn nearest_rank(sorted: &[f64], q: f64) -> Option<f64> {
    let rank = ((q * sorted.len() as f64 - 1e-9).ceil() as usize).max(1);
    sorted.get(rank - 1).copied()
}

/// No missed incident, and a false-rollback rate (there were good replays) within the budget.
fn within_budget(missed_incidents: usize, false_rollback_rate: Option<f64>, budget: f64) -> bool {
    missed_incidents == 0 && false_rollback_rate.is_some_and(|r| r <= budget)
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
    // The base policy, as each case validates it (segment columns may differ between logs).
    let per_case =
        |variant: &Variant| -> std::result::Result<Vec<Policy>, String> { cases.iter().map(|c| apply(&base, variant, c)).collect() };
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
    let mut results: Vec<VariantResult> = variants
        .iter()
        .zip(&policies)
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
                        feasible: stage == Stage::Full && feasible(&s, &space),
                        score: Some(s),
                        frontier: false,
                    }
                }
            }
        })
        .collect();
    bar.finish_and_clear();
    let search_seconds = searching.elapsed().as_secs_f64();

    // The Pareto frontier over (exposure, hours to promotion) among the feasible variants.
    let key = |r: &VariantResult| {
        r.score
            .as_ref()
            .map(|s| (s.exposure as f64, s.hours_to_promotion.unwrap_or(f64::INFINITY)))
            .unwrap_or((f64::INFINITY, f64::INFINITY))
    };
    let feasible_ids: Vec<usize> = results.iter().filter(|r| r.feasible).map(|r| r.id).collect();
    for &i in &feasible_ids {
        let (e, h) = key(&results[i]);
        results[i].frontier = !feasible_ids.iter().any(|&j| {
            let (e2, h2) = key(&results[j]);
            (e2 <= e && h2 <= h) && (e2 < e || h2 < h)
        });
    }
    let winner = feasible_ids.iter().copied().filter(|&i| results[i].frontier).min_by(|&a, &b| {
        let (ka, kb) = (key(&results[a]), key(&results[b]));
        ka.0.total_cmp(&kb.0).then(ka.1.total_cmp(&kb.1)).then(a.cmp(&b))
    });

    // The winner re-checked with the reference simulator.
    let mut tuned = None;
    let mut reference_check = None;
    if let Some(w) = winner {
        let policies = per_case(&variants[w]).map_err(|e| Error::Internal(format!("the winner no longer validates: {e}")))?;
        let mut mismatches = Vec::new();
        for (policy, case) in policies.iter().zip(&cases) {
            let (salt, start) = (&policy.ramp.salt, case.replay.first);
            let (fast, slow) = (replay(policy, case, salt, start, Some(&shared), false)?, replay(policy, case, salt, start, None, true)?);
            if fast.outcome != slow.outcome || fast.hours != slow.hours {
                mismatches.push(format!(
                    "{}: fast {:?} after {:.0}h, reference {:?} after {:.0}h",
                    case.scenario.name, fast.outcome, fast.hours, slow.outcome, slow.hours
                ));
            }
        }
        reference_check =
            Some(if mismatches.is_empty() { "identical decisions on every scenario".to_string() } else { mismatches.join("; ") });
        tuned = policies.into_iter().next();
    }

    let seconds = started.elapsed().as_secs_f64();
    let summary = TuneSummary {
        scenarios: cases
            .iter()
            .map(|c| ScenarioRef { name: c.scenario.name.clone(), file: c.scenario.file.display().to_string(), expect: c.expect })
            .collect(),
        objective: OBJECTIVE,
        search: SearchInfo {
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
            invalid: results.iter().filter(|r| r.stage == Stage::Invalid).count(),
            cut_at_incidents: results.iter().filter(|r| r.stage == Stage::Incidents).count(),
            cut_at_false_rollbacks: results.iter().filter(|r| r.stage == Stage::FalseRollbacks).count(),
            cut_at_promotions: results.iter().filter(|r| r.stage == Stage::Promotions).count(),
            cut_dominated: results.iter().filter(|r| r.stage == Stage::Dominated).count(),
            feasible: feasible_ids.len(),
            seconds,
            index_seconds: indexed,
            search_seconds,
            variants_per_second: results.len() as f64 / search_seconds.max(1e-9),
        },
        baselines,
        variants: results,
        winner,
        reference_check,
    };

    if let Some(parent) = out_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let pending = crate::atomic::Pending::new(&out_dir);
    std::fs::create_dir_all(pending.path()).map_err(|e| Error::io(pending.path(), e))?;
    let write = |name: &str, bytes: &[u8]| std::fs::write(pending.path().join(name), bytes).map_err(|e| Error::io(out_dir.join(name), e));
    write("tune.json", crate::report::to_json(&summary).as_bytes())?;
    let tuned_toml = tuned.as_ref().map(|policy| policy.to_raw().to_toml("The policy `canary-replay tune` found best on its scenarios"));
    if let Some(text) = &tuned_toml {
        write("tuned-policy.toml", text.as_bytes())?;
    }
    let mut exports = Vec::new();
    if let Some(policy) = &tuned {
        let name = "canary-replay-tuned";
        for (file, what, text) in [
            ("argo-rollouts.yaml", "Argo Rollouts AnalysisTemplate and the Rollout's canary steps", export::argo(policy, name)),
            ("flagger-canary.yaml", "Flagger Canary analysis and its MetricTemplates", export::flagger(policy, name)),
            (
                "kayenta-canary-config.json",
                "Kayenta canary config (NetflixACAJudge)",
                crate::report::to_json(&export::kayenta_config(policy, name)),
            ),
            (
                "kayenta-execution-request.json",
                "Kayenta execution request: score thresholds and scopes",
                crate::report::to_json(&export::kayenta_request(policy)),
            ),
        ] {
            write(file, text.as_bytes())?;
            exports.push((file.to_string(), what.to_string()));
        }
    }
    let chart = report::frontier_chart(&summary)?;
    write(&chart.file, &chart.png)?;
    write("tune.html", report::page(&summary, &chart, tuned_toml.as_deref(), &exports).as_bytes())?;
    pending.commit_output("tune")?;
    Ok(TuneOutput { out_dir, summary, tuned })
}

fn describe(s: &Score) -> String {
    let hours = |h: Option<f64>| h.map(|h| format!("{h:.0}h")).unwrap_or_else(|| "–".into());
    let fr = match (s.false_rollback_rate, s.false_rollback_interval) {
        (Some(r), Some([lo, hi])) => format!(
            "{}/{} false rollbacks ({:.1}%, 95% [{:.1}%, {:.1}%])",
            s.false_rollbacks,
            s.good_replays,
            r * 100.0,
            lo * 100.0,
            hi * 100.0
        ),
        _ => "good scenarios not replayed (cut early)".into(),
    };
    let promoted = match s.promoted_in_time_share {
        Some(share) => format!(
            "{}/{} promoted in time ({:.0}%); promotion after {} on average, median {}, 90th percentile {}",
            s.promoted_in_time,
            s.good_replays,
            share * 100.0,
            hours(s.hours_to_promotion),
            hours(s.hours_to_promotion_median),
            hours(s.hours_to_promotion_p90)
        ),
        None => format!("promotion after {}", hours(s.hours_to_promotion)),
    };
    format!(
        "{}/{} incidents caught, exposure {} requests, rollback after {} on average; {fr}; {promoted}",
        s.incidents - s.missed_incidents,
        s.incidents,
        s.exposure,
        hours(s.hours_to_rollback)
    )
}

/// The terminal summary of a search.
pub fn to_text(output: &TuneOutput) -> String {
    use std::fmt::Write as _;
    let t = &output.summary;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "tune: {} variants ({} search) over {} scenarios in {:.1}s ({:.1}s indexing the replays, then {:.1} variants/s); cut early: {} after missing an incident, {} after too many false rollbacks, {} once too few could promote within {}, {} once sure to be dominated; {} feasible",
        t.search.variants,
        t.search.method,
        t.scenarios.len(),
        t.search.seconds,
        t.search.index_seconds,
        t.search.variants_per_second,
        t.search.cut_at_incidents,
        t.search.cut_at_false_rollbacks,
        t.search.cut_at_promotions,
        t.search.promote_within,
        t.search.cut_dominated,
        t.search.feasible
    );
    if let Some(first) = t.variants.iter().find_map(|v| v.invalid.as_deref()) {
        let _ = writeln!(s, "  {} variant(s) are not valid policies and were not replayed, e.g. {first}", t.search.invalid);
    }
    for (name, score) in &t.baselines {
        let _ = writeln!(s, "  {name:<8} policy: {}", describe(score));
    }
    match t.winner {
        Some(w) => {
            let v = &t.variants[w];
            let params: Vec<String> = v.params.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            let _ = writeln!(s, "  tuned    policy: {}", v.score.as_ref().map(describe).unwrap_or_default());
            if params.is_empty() {
                let _ = writeln!(s, "    which is the base policy ({}'s) unchanged: no variant did better", t.scenarios[0].file);
            } else {
                let _ = writeln!(s, "    with {}", params.join(", "));
            }
            let frontier = t.variants.iter().filter(|v| v.frontier).count();
            let _ = writeln!(
                s,
                "  Pareto frontier: {frontier} variant(s); reference simulator: {}",
                t.reference_check.as_deref().unwrap_or("not run")
            );
            let _ = writeln!(
                s,
                "Wrote {}/{{tune.html, tuned-policy.toml, tune.json, frontier.png}} and the Argo Rollouts, Flagger and Kayenta exports",
                output.out_dir.display()
            );
        }
        None => {
            let _ = writeln!(
                s,
                "  no variant caught every incident within the false-rollback budget while promoting {:.0}% of the good replays within {}; widen the space (or, if this traffic cannot promote that soon, set [search] promote_within / min_promoted). Wrote {}/{{tune.html, tune.json, frontier.png}}",
                t.search.min_promoted * 100.0,
                t.search.promote_within,
                output.out_dir.display()
            );
        }
    }
    s
}
