//! The judge: every gate rated on every scope at a check.
//!
//! - threshold and ratio gates compare point estimates (the candidate's value, or candidate /
//!   stable) with their bounds once both arms have the minimum sample;
//! - non-inferiority and regression gates run a sequential test of θ = candidate − stable per
//!   (gate, scope). By default the mSPRT: its always-valid p-value and confidence sequence stay
//!   valid at every check. The mixture's τ is the gate's `tau` times the metric's scale (the larger
//!   of the two arms' means and the per-request standard deviation) fixed at the test's first look.
//!   With `sequential = "group_sequential"` a Lan-DeMets boundary is computed at each look, at the
//!   information fraction elapsed / maximum stage time, with Bonferroni over the stage's tests.
//! - Deterioration is decided on the always-valid p-values after the multiple-testing correction
//!   across all gates and scopes (Holm by default): REGRESSION when the adjusted p is at most α and
//!   the estimate is on the harmful side. A non-inferiority gate passes when the confidence
//!   sequence's harmful end is inside the margin; otherwise it is inconclusive, split into
//!   UNDERPOWERED and NEEDS_MORE_DATA with the observations (and, at the current traffic, the
//!   hours) that would likely settle it. A regression gate that does not reject passes.
//! With the default `rollout` window one test per (gate, scope) runs across the whole rollout on
//! the stages' estimates combined by inverse-variance weights, at α. With `stage` or `sliding`
//! windows each stage runs fresh tests at α divided by the number of stages that compare the arms,
//! so the whole rollout keeps its false-rollback rate at or below α either way.

use std::collections::HashMap;

use serde::Serialize;

use super::metrics::{drift_between, ScoreBins};
use super::window::{Scopes, WindowStats};
use crate::policy::{Gate, GateKind, Policy, Sequential};
use crate::stats::group_sequential::Looks;
use crate::stats::guardrail::{self, Better, Evidence};
use crate::stats::msprt::Msprt;
use crate::stats::multiple::{adjust, Correction};
use crate::stats::{Interval, PValue};
use crate::time::Micros;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Pass,
    Fail,
    Underpowered,
    NeedsMoreData,
    NoData,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Underpowered => "UNDERPOWERED",
            Verdict::NeedsMoreData => "NEEDS_MORE_DATA",
            Verdict::NoData => "NO_DATA",
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
    pub verdict: Verdict,
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
    /// Time since the stage began.
    pub elapsed: Micros,
    /// The stage's maximum time (for group-sequential information fractions).
    pub max_time: Micros,
    /// α for this stage's tests.
    pub alpha: f64,
}

enum Test {
    Msprt(Msprt),
    GroupSequential(Looks),
}

pub struct Judge<'a> {
    policy: &'a Policy,
    scopes: &'a Scopes,
    bins: ScoreBins,
    tests: HashMap<(usize, usize), Test>,
}

/// A statistical result waiting for the multiple-testing correction.
struct Pending {
    index: usize,
    harmful: bool,
    p: PValue,
    /// Group-sequential: the boundary was crossed on the harmful side.
    crossed: Option<bool>,
}

impl<'a> Judge<'a> {
    pub fn new(policy: &'a Policy, scopes: &'a Scopes, bins: ScoreBins) -> Self {
        Self { policy, scopes, bins, tests: HashMap::new() }
    }

    /// Forgets every running test (a new stage starts new ones).
    pub fn reset(&mut self) {
        self.tests.clear();
    }

    /// Number of statistical (gate, scope) tests a check can run.
    fn statistical_tests(&self) -> usize {
        self.policy.gates.iter().filter(|g| g.kind.is_statistical()).map(|g| self.scopes.for_columns(&g.segments).len()).sum()
    }

    /// Rates every gate on `stats` (the current window). Sequential tests also use `earlier`: the
    /// final statistics of the rollout's earlier stages, combined with the current one by
    /// inverse-variance weights.
    pub fn check(&mut self, stats: &WindowStats, earlier: &[WindowStats], ctx: &Context) -> Vec<GateResult> {
        let decision = &self.policy.decision;
        let mut results = Vec::new();
        let mut pending: Vec<Pending> = Vec::new();
        for (g, gate) in self.policy.gates.iter().enumerate() {
            for scope in self.scopes.for_columns(&gate.segments) {
                let arms = stats.merged(scope);
                let [stable, canary] = &*arms;
                let n = [stable.n(gate.metric), canary.n(gate.metric)];
                if scope != 0 && n == [0, 0] {
                    continue;
                }
                let mut r = GateResult {
                    gate: g,
                    scope,
                    stable: stable.value(gate.metric),
                    canary: canary.value(gate.metric),
                    n,
                    verdict: Verdict::NeedsMoreData,
                    estimate: None,
                    interval: None,
                    p_value: None,
                    adjusted_p: None,
                    margin: None,
                    n_required: None,
                    hours_required: None,
                };
                if gate.metric.is_drift() {
                    r.stable = Some(0.0);
                    r.canary = drift_between(gate.metric, stable, canary, &self.bins);
                }
                if n[0].min(n[1]) < gate.min_samples {
                    r.verdict = if n == [0, 0] { Verdict::NoData } else { Verdict::NeedsMoreData };
                    r.n_required = Some(gate.min_samples as f64);
                    r.hours_required = hours(ctx, n[1], gate.min_samples as f64);
                    results.push(r);
                    continue;
                }
                match gate.kind {
                    GateKind::Threshold { min, max } => {
                        r.verdict = match r.canary {
                            Some(v) => pass_if(min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m)),
                            None => Verdict::NoData,
                        };
                    }
                    GateKind::Ratio { min, max } => {
                        let ratio = match (r.canary, r.stable) {
                            (Some(c), Some(s)) if s != 0.0 => Some(c / s),
                            (Some(c), Some(_)) => Some(if c == 0.0 { 1.0 } else { f64::INFINITY }),
                            _ => None,
                        };
                        r.estimate = ratio;
                        r.verdict = match ratio {
                            Some(v) => pass_if(min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m)),
                            None => Verdict::NoData,
                        };
                    }
                    GateKind::NonInferiority { .. } | GateKind::Regression => {
                        let better = gate.metric.better().expect("validated: statistical metrics have a better side");
                        let harm_sign = if better == Better::Lower { 1.0 } else { -1.0 };
                        let Some((theta, variance, stable_mean, scale)) = combined_difference(earlier, stats, scope, gate) else {
                            r.verdict = Verdict::NoData;
                            results.push(r);
                            continue;
                        };
                        r.estimate = Some(theta);
                        if variance == 0.0 {
                            // Both arms constant (e.g. no errors at all): nothing to test; the
                            // difference is certain.
                            r.verdict = pass_if(harm_sign * theta <= 0.0);
                            results.push(r);
                            continue;
                        }
                        let tests = self.statistical_tests();
                        let test = self.tests.entry((g, scope)).or_insert_with(|| match decision.sequential {
                            Sequential::Msprt => {
                                let tau = gate.tau * scale;
                                Test::Msprt(Msprt::new((tau * tau).max(1e-300), ctx.alpha, 0.0))
                            }
                            Sequential::GroupSequential(spending) => {
                                Test::GroupSequential(Looks::new(ctx.alpha / tests.max(1) as f64, spending, 201))
                            }
                        });
                        let se = variance.sqrt();
                        let (interval, p, crossed) = match test {
                            Test::Msprt(m) => {
                                let look = m.update(theta, variance);
                                let interval = look.map(|l| l.interval).unwrap_or(Interval::around(theta, f64::INFINITY));
                                (interval, m.p_value(), None)
                            }
                            Test::GroupSequential(looks) => {
                                let t = (ctx.elapsed as f64 / ctx.max_time.max(1) as f64).clamp(1e-9, 1.0);
                                let c = looks.next(t);
                                let z = if se > 0.0 { theta / se } else { 0.0 };
                                (Interval::around(theta, c * se), crate::stats::two_sided_p(z), Some(harm_sign * z >= c))
                            }
                        };
                        r.interval = Some(interval);
                        r.p_value = Some(p.get());
                        if let GateKind::NonInferiority { margin } = gate.kind {
                            let assessment = guardrail::assess(
                                &Evidence { estimate: theta, interval, standard_error: se, n: n[0].min(n[1]) as f64 },
                                stable_mean,
                                margin,
                                better,
                                ctx.alpha,
                                decision.power,
                            );
                            r.margin = Some(assessment.margin);
                            r.verdict = match assessment.verdict {
                                guardrail::Verdict::NonInferior => Verdict::Pass,
                                guardrail::Verdict::Underpowered => Verdict::Underpowered,
                                // Worse beyond doubt only after the multiple-testing correction.
                                guardrail::Verdict::NeedsMoreData | guardrail::Verdict::Regression => Verdict::NeedsMoreData,
                            };
                            r.n_required = assessment.n_required;
                            r.hours_required = assessment.n_required.and_then(|req| hours(ctx, n[1], req));
                        } else {
                            r.verdict = Verdict::Pass;
                        }
                        pending.push(Pending { index: results.len(), harmful: harm_sign * theta > 0.0, p, crossed });
                    }
                }
                results.push(r);
            }
        }
        self.decide_regressions(&mut results, &pending, ctx.alpha);
        results
    }

    /// Applies the multiple-testing correction to the deterioration tests.
    fn decide_regressions(&self, results: &mut [GateResult], pending: &[Pending], alpha: f64) {
        let correction = match self.policy.decision.sequential {
            Sequential::Msprt => self.policy.decision.correction,
            // Group-sequential boundaries already split α across the tests.
            Sequential::GroupSequential(_) => Correction::None,
        };
        let adjusted = adjust(&pending.iter().map(|p| p.p).collect::<Vec<_>>(), correction);
        for (p, adj) in pending.iter().zip(adjusted) {
            let r = &mut results[p.index];
            r.adjusted_p = Some(adj.get());
            let rejected = match p.crossed {
                Some(crossed) => crossed,
                None => adj.get() <= alpha && p.harmful,
            };
            if rejected {
                r.verdict = Verdict::Fail;
                r.n_required = None;
                r.hours_required = None;
            }
        }
    }
}

fn pass_if(ok: bool) -> Verdict {
    if ok { Verdict::Pass } else { Verdict::Fail }
}

/// Hours until the canary arm reaches `required` observations at its current rate.
fn hours(ctx: &Context, have: u64, required: f64) -> Option<f64> {
    let elapsed_hours = ctx.elapsed as f64 / 3.6e9;
    if have == 0 || elapsed_hours <= 0.0 {
        return None;
    }
    Some(((required - have as f64).max(0.0)) / (have as f64 / elapsed_hours))
}

/// The difference combined over the rollout's stages by inverse-variance weights (stages whose
/// variance is zero count only when all are).
fn combined_difference(earlier: &[WindowStats], current: &WindowStats, scope: usize, gate: &Gate) -> Option<(f64, f64, f64, f64)> {
    let parts: Vec<(f64, f64, f64, f64)> = earlier.iter().chain(std::iter::once(current)).filter_map(|s| difference(s, scope, gate)).collect();
    if parts.len() <= 1 {
        return parts.into_iter().next();
    }
    let informative: Vec<&(f64, f64, f64, f64)> = parts.iter().filter(|p| p.1 > 0.0).collect();
    if informative.is_empty() {
        return parts.last().copied();
    }
    let precision: f64 = informative.iter().map(|p| 1.0 / p.1).sum();
    let theta = informative.iter().map(|p| p.0 / p.1).sum::<f64>() / precision;
    let stable = informative.iter().map(|p| p.2 / p.1).sum::<f64>() / precision;
    let scale = parts.iter().map(|p| p.3).fold(0.0, f64::max);
    Some((theta, 1.0 / precision, stable, scale))
}

/// θ̂ = candidate − stable and its variance for a scope, combined across routing weights by
/// traffic share; with the stable mean and the metric's scale (for τ).
fn difference(stats: &WindowStats, scope: usize, gate: &Gate) -> Option<(f64, f64, f64, f64)> {
    let groups: Vec<_> = stats.scopes[scope]
        .iter()
        .filter_map(|g| {
            let (s, vs) = g.arms[0].estimate(gate.metric)?;
            let (c, vc) = g.arms[1].estimate(gate.metric)?;
            let traffic = (g.arms[0].s.requests + g.arms[1].s.requests) as f64;
            let sd = (vs * g.arms[0].n(gate.metric) as f64).sqrt();
            Some((traffic, c - s, vs + vc, s, c, sd))
        })
        .collect();
    let total: f64 = groups.iter().map(|g| g.0).sum();
    if groups.is_empty() || total == 0.0 {
        return None;
    }
    let (mut theta, mut variance, mut stable, mut canary, mut sd) = (0.0, 0.0, 0.0, 0.0, 0.0f64);
    for (traffic, d, v, s, c, spread) in &groups {
        let share = traffic / total;
        theta += share * d;
        variance += share * share * v;
        stable += share * s;
        canary += share * c;
        sd = sd.max(*spread);
    }
    let scale = stable.abs().max(canary.abs()).max(sd).max(1e-12);
    Some((theta, variance, stable, scale))
}
