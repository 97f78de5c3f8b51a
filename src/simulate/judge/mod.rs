//! The judge: every gate rated on every scope at a check.
//!
//! - threshold and ratio gates compare point estimates (the candidate's value, or candidate /
//!   stable) with their bounds once both arms have the minimum sample;
//! - non-inferiority and regression gates run a sequential test of θ = candidate − stable per
//!   (gate, scope). By default the mSPRT: its always-valid p-value and confidence sequence stay
//!   valid at every check. Its mixing is tuned (τ² = ρ²·V·n, averaged over `decision.tuning`
//!   sample sizes), so its evidence depends on z = θ̂/SE and n only: the same for a log loss in
//!   nats and a latency in milliseconds, and undisturbed when a fault multiplies a variance.
//!   With `sequential = "group_sequential"` a Lan-DeMets boundary is computed at each look, at the
//!   information fraction elapsed / maximum stage time, with Bonferroni over the stage's tests.
//! - Failure is decided on the always-valid p-values after the multiple-testing correction across
//!   all gates and scopes (Holm by default): a regression gate fails when the candidate is
//!   significantly worse at all, a non-inferiority gate when it is significantly worse than its
//!   margin (the margin fixed at the test's first look) — adjusted p at most α with the estimate
//!   on the harmful side. A non-inferiority gate passes when the confidence sequence's harmful end
//!   is inside the margin; otherwise it is inconclusive, split into
//!   UNDERPOWERED and NEEDS_MORE_DATA with the observations (and, at the current traffic, the
//!   hours) that would likely settle it. A regression gate that does not reject passes.
//!
//! With the default `rollout` window one test per (gate, scope) runs across the whole rollout on
//! the stages' estimates combined by inverse-variance weights, at α. With `stage` or `sliding`
//! windows each stage runs fresh tests at α divided by the number of stages that compare the arms,
//! so the whole rollout keeps its false-rollback rate at or below α either way.

mod looks;

use std::cell::Cell;

use serde::Serialize;

use super::metrics::{drift_between, ScoreBins};
use super::window::{Scopes, WindowStats};
use crate::policy::{Decision, Gate, GateKind, Metric, Policy, Sequential};
use crate::stats::group_sequential::Looks;
use crate::stats::guardrail::{self, Better, Evidence};
use crate::stats::msprt::Msprt;
use crate::stats::multiple::{adjust, Correction};
use crate::stats::{Interval, PValue};
use crate::time::Micros;
use looks::{combined_difference, difference, harm_look, harm_sign, look_cannot_matter, non_inferiority, Difference};

/// One gate on one scope at one check, as `checks.parquet` and `summary.json` write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GateVerdict {
    Pass,
    Fail,
    Underpowered,
    NeedsMoreData,
    NoData,
}

impl GateVerdict {
    pub fn name(self) -> &'static str {
        match self {
            GateVerdict::Pass => "PASS",
            GateVerdict::Fail => "FAIL",
            GateVerdict::Underpowered => "UNDERPOWERED",
            GateVerdict::NeedsMoreData => "NEEDS_MORE_DATA",
            GateVerdict::NoData => "NO_DATA",
        }
    }
}

/// One gate on one scope at one check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateResult {
    pub gate: usize,
    pub scope: usize,
    pub stable: Option<f64>,
    pub canary: Option<f64>,
    /// Observations [stable, canary].
    pub n: [u64; 2],
    pub verdict: GateVerdict,
    /// candidate − stable (statistical gates), or candidate / stable (ratio gates).
    pub estimate: Option<f64>,
    pub interval: Option<Interval>,
    pub p_value: Option<f64>,
    pub adjusted_p: Option<f64>,
    /// The non-inferiority margin in the metric's units.
    pub margin: Option<f64>,
    /// Observations per arm that would likely settle an inconclusive verdict, and the hours that
    /// takes at the stage's current canary traffic.
    pub n_required: Option<f64>,
    pub hours_required: Option<f64>,
}

/// Where the check happens.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// Stage weight (fraction).
    pub weight: f64,
    /// Time since the window began.
    pub elapsed: Micros,
    /// The stage's maximum time (for group-sequential information fractions).
    pub max_time: Micros,
    /// α of this stage's harm tests.
    pub alpha_fail: f64,
    /// α of the non-inferiority intervals.
    pub alpha_ni: f64,
    /// Whether non-inferiority combines the earlier stages with this one.
    pub combine: bool,
    /// Monitoring after the rollout: only failures matter (nothing waits for a gate to pass).
    pub monitoring: bool,
}

/// The running tests of one (gate, scope).
struct Tests {
    harm: Option<Harm>,
    ni: Option<NonInferiority>,
}

/// For the decision alone, an mSPRT harm test's θ₀ and running p-value, mirrored apart from the
/// tests, densely: a search judges thousands of variants at every check, and a look that cannot
/// matter ([`look_cannot_matter`]) reads nothing else of its variant's state.
#[derive(Clone, Copy)]
struct Mirror {
    /// NaN: no test yet this stage.
    theta0: f64,
    running: f64,
}

impl Mirror {
    const UNSET: Mirror = Mirror { theta0: f64::NAN, running: 1.0 };
}

/// Is the candidate worse (than the margin)? One-sided, over the current stage.
enum Harm {
    Msprt(Msprt),
    GroupSequential { looks: Looks, theta0: f64 },
}

impl Harm {
    fn theta0(&self) -> f64 {
        match self {
            Harm::Msprt(m) => m.theta0,
            Harm::GroupSequential { theta0, .. } => *theta0,
        }
    }
}

/// The interval for θ that non-inferiority is read from.
enum NonInferiority {
    Msprt(Msprt),
    GroupSequential(Looks),
}

/// What the judge reads of one (metric, scope) of a window.
#[derive(Clone, Copy)]
struct Reading {
    /// The state of the window it was read at ([`Readings::clear`] moves on).
    at: u64,
    /// Observations [stable, canary] of the arms merged across routing groups.
    n: [u64; 2],
}

/// A window's readings per (metric, scope): the sample sizes and the difference, worked out at
/// most once per state of the window however many policies judge it (a policy search judges
/// each shared window for every variant that asks for it, see [`super::lockstep`]).
pub struct Readings {
    at: u64,
    scopes: usize,
    slots: Vec<Cell<Reading>>,
    /// The differences, apart (fewer are asked for): the state each was worked out at, and it.
    differences: Vec<Cell<(u64, Option<Difference>)>>,
}

impl Readings {
    pub fn new(scopes: usize) -> Self {
        let stale = Reading { at: 0, n: [0; 2] };
        let slots = Metric::ALL.len() * scopes;
        Readings { at: 1, scopes, slots: vec![Cell::new(stale); slots], differences: vec![Cell::new((0, None)); slots] }
    }

    /// The window changed: every reading is stale.
    pub fn clear(&mut self) {
        self.at += 1;
    }

    fn index(&self, metric: Metric, scope: usize) -> usize {
        metric as usize * self.scopes + scope
    }

    /// The sample sizes of `metric` on `scope` of `stats` (the window these readings are of).
    fn get(&self, stats: &WindowStats, metric: Metric, scope: usize) -> Reading {
        let slot = &self.slots[self.index(metric, scope)];
        let reading = slot.get();
        if reading.at == self.at {
            return reading;
        }
        let arms = stats.merged(scope);
        let reading = Reading { at: self.at, n: [arms[0].n(metric), arms[1].n(metric)] };
        slot.set(reading);
        reading
    }

    /// The difference of `metric` on `scope` of `stats` (see [`difference`]).
    fn difference(&self, stats: &WindowStats, metric: Metric, scope: usize) -> Option<Difference> {
        let slot = &self.differences[self.index(metric, scope)];
        let (at, d) = slot.get();
        if at == self.at {
            return d;
        }
        let d = difference(stats, scope, metric);
        slot.set((self.at, d));
        d
    }
}

pub struct Judge<'a> {
    policy: &'a Policy,
    bins: ScoreBins,
    /// Per gate, the scopes it is rated on.
    gate_scopes: Vec<Vec<usize>>,
    /// Skip what cannot change a decision (see [`super::Setup::decisions_only`]): the
    /// non-inferiority interval of segment scopes and while monitoring, mSPRT looks that cannot
    /// bring their p-value to α, the result of a segment's (and, while monitoring, all traffic's)
    /// statistical gate unless its harm test fails, the correction when no p-value is
    /// at most α, and statistical gates' values no reason shows.
    pub decisions_only: bool,
    /// Per (gate, scope), at `gate × scopes + scope`.
    tests: Vec<Tests>,
    /// Per (gate, scope) likewise, for the decision alone: the harm tests' mirrors.
    mirrors: Vec<Mirror>,
    scopes: usize,
    /// Statistical (gate, scope) tests a check can run.
    statistical: usize,
    /// The last check's results and pending tests (buffers reused from check to check).
    results: Vec<GateResult>,
    pending: Vec<Pending>,
}

/// A statistical result waiting for the multiple-testing correction.
struct Pending {
    /// Its result; `None` for a segment's test that, for the decision alone, can only count in
    /// the correction (its p-value is above α).
    index: Option<usize>,
    harmful: bool,
    p: PValue,
    /// Group-sequential: the boundary was crossed on the harmful side.
    crossed: Option<bool>,
}

impl<'a> Judge<'a> {
    pub fn new(policy: &'a Policy, scopes: &'a Scopes, bins: ScoreBins) -> Self {
        let gate_scopes = policy.gates.iter().map(|g| scopes.for_columns(&g.segments)).collect();
        let tests: Vec<Tests> = (0..policy.gates.len() * scopes.len()).map(|_| Tests { harm: None, ni: None }).collect();
        let mirrors = vec![Mirror::UNSET; tests.len()];
        let statistical = policy
            .gates
            .iter()
            .zip(&gate_scopes)
            .filter(|(g, _)| g.kind.is_statistical())
            .map(|(_, scopes): (_, &Vec<usize>)| scopes.len())
            .sum();
        Self {
            policy,
            bins,
            gate_scopes,
            decisions_only: false,
            tests,
            mirrors,
            scopes: scopes.len(),
            statistical,
            results: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// A new stage: fresh harm tests; the non-inferiority intervals carry over when `keep` (the
    /// rollout window), else start afresh too.
    pub fn new_stage(&mut self, keep: bool) {
        for tests in &mut self.tests {
            tests.harm = None;
            if !keep {
                tests.ni = None;
            }
        }
        self.mirrors.fill(Mirror::UNSET);
    }

    /// Rates every gate on `stats` (the current window, whose `readings` these are).
    /// Non-inferiority also uses `earlier`: the final statistics of the rollout's earlier stages,
    /// combined with the current one by inverse-variance weights when `ctx.combine`.
    pub fn check(&mut self, stats: &WindowStats, readings: &Readings, earlier: &[WindowStats], ctx: &Context) -> &[GateResult] {
        let mut results = std::mem::take(&mut self.results);
        let mut pending = std::mem::take(&mut self.pending);
        results.clear();
        pending.clear();
        // For the decision alone, a one-sided mSPRT look is skipped when it cannot matter: with
        // ln Λ ≤ ln 2 + z²/2 below ln(1/α), the running p-value stays above α whatever the look
        // gives, and a p-value above α is never rejected by any correction nor changes whether
        // another test is (its rank stays after every p-value at most α).
        let skip_below_z2 = 2.0 * (-ctx.alpha_fail.ln() - std::f64::consts::LN_2);
        // (Group-sequential boundaries depend on each look's time: no shortcut.)
        let lean = self.decisions_only && self.policy.decision.sequential == Sequential::Msprt;
        let policy = self.policy;
        for (g, gate) in policy.gates.iter().enumerate() {
            for k in 0..self.gate_scopes[g].len() {
                let scope = self.gate_scopes[g][k];
                let n = readings.get(stats, gate.metric, scope).n;
                if scope != 0 && n == [0, 0] {
                    continue;
                }
                // For the decision alone a segment's statistical gate matters only when its harm
                // test fails (while monitoring, all traffic's too: nothing waits for a pass there).
                if lean && gate.kind.is_statistical() && (scope != 0 || ctx.monitoring) {
                    match self.shortcut(g, scope, n, stats, readings, ctx, skip_below_z2) {
                        Shortcut::Skip => continue,
                        Shortcut::Counted(p) => {
                            pending.push(p);
                            continue;
                        }
                        Shortcut::Rate => {}
                    }
                }
                let r = self.rate(g, scope, n, (stats, readings, earlier), ctx, skip_below_z2, (&mut pending, results.len()));
                results.push(r);
            }
        }
        self.decide_regressions(&mut results, &pending, ctx.alpha_fail);
        if self.decisions_only {
            for r in
                results.iter_mut().filter(|r| r.stable.is_none() && r.canary.is_none() && (r.scope == 0 || r.verdict == GateVerdict::Fail))
            {
                let metric = self.policy.gates[r.gate].metric;
                if metric.is_drift() {
                    continue;
                }
                let arms = stats.merged(r.scope);
                (r.stable, r.canary) = (arms[0].value(metric), arms[1].value(metric));
            }
        }
        self.results = results;
        self.pending = pending;
        &self.results
    }

    /// For the decision alone, whether gate `g`'s statistical result on `scope` needs rating: below
    /// the minimum sample or without a difference it cannot matter, and with a p-value above α it
    /// only counts in the correction — found, where it can be, from the last look without looking.
    #[allow(clippy::too_many_arguments)]
    fn shortcut(
        &mut self,
        g: usize,
        scope: usize,
        n: [u64; 2],
        stats: &WindowStats,
        readings: &Readings,
        ctx: &Context,
        skip_below_z2: f64,
    ) -> Shortcut {
        let policy = self.policy;
        let gate = &policy.gates[g];
        if n[0].min(n[1]) < gate.min_samples {
            return Shortcut::Skip;
        }
        let Some(now) = readings.difference(stats, gate.metric, scope) else { return Shortcut::Skip };
        let index = g * self.scopes + scope;
        let last = self.mirrors[index];
        let (harmful, p) = if !last.theta0.is_nan()
            && now.variance > 0.0
            && look_cannot_matter(gate, &now, last.theta0, last.running, ctx.alpha_fail, skip_below_z2)
        {
            (harm_sign(gate.metric) * (now.theta - last.theta0) > 0.0, PValue::new(last.running))
        } else {
            let entry = &mut self.tests[index];
            let (harmful, p, _) = harm_look(entry, gate, &policy.decision, ctx, &now, self.statistical, Some(skip_below_z2));
            let Some(Harm::Msprt(m)) = &entry.harm else { unreachable!("lean looks are mSPRT harm tests") };
            self.mirrors[index] = Mirror { theta0: m.theta0, running: m.p_value().get() };
            (harmful, p)
        };
        if p.get() > ctx.alpha_fail {
            Shortcut::Counted(Pending { index: None, harmful, p, crossed: None })
        } else {
            // At most α: the full result, whose look at the same estimate repeats this one
            // without changing it.
            Shortcut::Rate
        }
    }

    /// Gate `g` on `scope` at this check; a statistical gate's harm test joins `pending` (as
    /// result `index`) for the correction across gates and scopes.
    #[allow(clippy::too_many_arguments)]
    fn rate(
        &mut self,
        g: usize,
        scope: usize,
        n: [u64; 2],
        (stats, readings, earlier): (&WindowStats, &Readings, &[WindowStats]),
        ctx: &Context,
        skip_below_z2: f64,
        (pending, index): (&mut Vec<Pending>, usize),
    ) -> GateResult {
        let policy = self.policy;
        let gate = &policy.gates[g];
        // For the decision alone a statistical gate's values only describe a failing or
        // all-traffic result; they are filled in after the correction.
        let values = !(self.decisions_only && gate.kind.is_statistical());
        let arms = if values || gate.metric.is_drift() { Some(stats.merged(scope)) } else { None };
        let [stable, canary] = arms.as_deref().map_or([None, None], |[s, c]| [Some(s), Some(c)]);
        let mut r = GateResult {
            gate: g,
            scope,
            stable: stable.filter(|_| values).and_then(|a| a.value(gate.metric)),
            canary: canary.filter(|_| values).and_then(|a| a.value(gate.metric)),
            n,
            verdict: GateVerdict::NeedsMoreData,
            estimate: None,
            interval: None,
            p_value: None,
            adjusted_p: None,
            margin: None,
            n_required: None,
            hours_required: None,
        };
        if let (true, Some(stable), Some(canary)) = (gate.metric.is_drift(), stable, canary) {
            r.stable = Some(0.0);
            r.canary = drift_between(gate.metric, stable, canary, &self.bins);
        }
        if n[0].min(n[1]) < gate.min_samples {
            r.verdict = if n == [0, 0] { GateVerdict::NoData } else { GateVerdict::NeedsMoreData };
            r.n_required = Some(gate.min_samples as f64);
            r.hours_required = hours(ctx, n[1], gate.min_samples as f64);
            return r;
        }
        let within = |v: f64, min: Option<f64>, max: Option<f64>| pass_if(min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m));
        match gate.kind {
            GateKind::Threshold { min, max } => {
                r.verdict = r.canary.map_or(GateVerdict::NoData, |v| within(v, min, max));
            }
            GateKind::Ratio { min, max } => {
                let ratio = match (r.canary, r.stable) {
                    (Some(c), Some(s)) if s != 0.0 => Some(c / s),
                    (Some(c), Some(_)) => Some(if c == 0.0 { 1.0 } else { f64::INFINITY }),
                    _ => None,
                };
                r.estimate = ratio;
                r.verdict = ratio.map_or(GateVerdict::NoData, |v| within(v, min, max));
            }
            GateKind::NonInferiority { .. } | GateKind::Regression => {
                let Some(now) = readings.difference(stats, gate.metric, scope) else {
                    r.verdict = GateVerdict::NoData;
                    return r;
                };
                let entry = &mut self.tests[g * self.scopes + scope];
                let decision = &policy.decision;
                let (harmful, p, crossed) =
                    harm_look(entry, gate, decision, ctx, &now, self.statistical, self.decisions_only.then_some(skip_below_z2));
                r.estimate = Some(now.theta);
                r.p_value = Some(p.get());
                r.verdict = GateVerdict::Pass;
                // For the decision alone, non-inferiority only decides promotions: on all
                // traffic, before the monitoring.
                let decides = !self.decisions_only || (scope == 0 && !ctx.monitoring);
                if let (GateKind::NonInferiority { margin }, true) = (gate.kind, decides) {
                    // The interval over the rollout (or the stage).
                    let pooled = if ctx.combine {
                        let before: Vec<Difference> = earlier.iter().filter_map(|w| difference(w, scope, gate.metric)).collect();
                        combined_difference(&before, now)
                    } else {
                        now
                    };
                    non_inferiority(&mut r, entry, (gate, margin), decision, ctx, self.statistical, &pooled);
                }
                pending.push(Pending { index: Some(index), harmful, p, crossed });
            }
        }
        r
    }

    /// Applies the multiple-testing correction to the deterioration tests.
    fn decide_regressions(&self, results: &mut [GateResult], pending: &[Pending], alpha: f64) {
        // No correction brings a p-value above α to α or below: for the decision alone, nothing to adjust.
        if self.decisions_only && pending.iter().all(|p| p.crossed.is_none() && p.p.get() > alpha) {
            return;
        }
        let correction = match self.policy.decision.sequential {
            Sequential::Msprt => self.policy.decision.correction,
            // Group-sequential boundaries already split α across the tests.
            Sequential::GroupSequential(_) => Correction::None,
        };
        let adjusted = adjust(&pending.iter().map(|p| p.p).collect::<Vec<_>>(), correction);
        for (p, adj) in pending.iter().zip(adjusted) {
            // No correction lowers a p-value: one above α stays above it.
            let Some(index) = p.index else { continue };
            let r = &mut results[index];
            r.adjusted_p = Some(adj.get());
            let rejected = match p.crossed {
                Some(crossed) => crossed,
                None => adj.get() <= alpha && p.harmful,
            };
            if rejected {
                r.verdict = GateVerdict::Fail;
                r.n_required = None;
                r.hours_required = None;
            }
        }
    }
}

/// What a check is for a statistical result the decision alone does not need in full.
enum Shortcut {
    /// It cannot matter.
    Skip,
    /// It only counts in the correction.
    Counted(Pending),
    /// It needs its full result.
    Rate,
}

fn pass_if(ok: bool) -> GateVerdict {
    if ok {
        GateVerdict::Pass
    } else {
        GateVerdict::Fail
    }
}

/// Hours until the canary arm reaches `required` observations at its current rate.
fn hours(ctx: &Context, have: u64, required: f64) -> Option<f64> {
    let elapsed_hours = ctx.elapsed as f64 / 3.6e9;
    if have == 0 || elapsed_hours <= 0.0 {
        return None;
    }
    Some(((required - have as f64).max(0.0)) / (have as f64 / elapsed_hours))
}
