//! The canary simulation: what the policy would have done on the replayed traffic, when, and
//! whether it was right.
//!
//! A virtual clock moves from check to check (every `ramp.check_every` from the first request);
//! nothing reads the wall clock. At each check the [`judge`] rates every gate on the window's
//! statistics, and the policy continues, promotes (the stage has baked and every gate required at
//! this weight passes on all traffic — segment verdicts can only fail), rolls back (a critical gate fails — the circuit breaker — or failing checks
//! reach `decision.consecutive_failures` in a row or `decision.total_failures` in all), or, at a
//! stage's maximum time without promotion, does what `decision.on_timeout` says. Requests between
//! two checks are routed at the weight the earlier check left in force ([`router`]). The statistics
//! come from a [`Source`]: the row-by-row [`reference::Reference`] or the bucketed
//! [`fast::Fast`]; both give identical decisions. [`grade`] then compares the outcome with the
//! oracle — the full-traffic comparison over the same windows.

#[cfg(test)]
mod equivalence;
pub mod fast;
pub mod grade;
pub mod judge;
pub mod lockstep;
pub mod metrics;
pub mod ranged;
pub mod reference;
pub mod replay;
pub mod router;
pub mod window;

use serde::{Deserialize, Serialize};

use self::judge::{Context, GateResult, GateVerdict, Judge, Readings};
use self::metrics::{Scale, ScoreBins};
use self::replay::Replay;
use self::router::{Position, Router};
use self::window::{Scopes, WindowStats};
use crate::policy::{OnTimeout, Policy, Window};
use crate::scenario::Grading;
use crate::time::{format_approx, format_duration, Micros};

/// Where window statistics come from.
pub trait Source {
    /// Statistics of requests in [start, end) routed at `weights` (per cell), with the labels that
    /// arrived before `end`.
    fn window(&mut self, start: Micros, end: Micros, weights: &[f64]) -> &WindowStats;
    /// Requests served [stable, candidate] per scope in [start, end) at `weights`.
    fn served(&mut self, start: Micros, end: Micros, weights: &[f64]) -> Vec<[u64; 2]>;
    /// Both models on every request in [start, end), with every label: the oracle.
    fn oracle(&mut self, start: Micros, end: Micros) -> WindowStats;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Promoted,
    RolledBack,
    Held,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Promoted => "promoted",
            Outcome::RolledBack => "rolled_back",
            Outcome::Held => "held",
        }
    }

    /// In words: `rolled back`.
    pub fn words(self) -> String {
        self.name().replace('_', " ")
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Continue,
    /// A gate failed, below the failure limits.
    Failing,
    Promote,
    Rollback,
    Hold,
}

/// One check and what the policy did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub time: Micros,
    pub wave: usize,
    pub stage: usize,
    pub weight: f64,
    pub monitoring: bool,
    pub action: Action,
    pub results: Vec<GateResult>,
}

/// How a stage ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageDecision {
    Promote,
    Rollback,
    Hold,
    /// The traffic ended first.
    EndOfData,
}

impl StageDecision {
    /// As `summary.json` writes it: `end_of_data`.
    pub fn name(self) -> &'static str {
        match self {
            StageDecision::Promote => "promote",
            StageDecision::Rollback => "rollback",
            StageDecision::Hold => "hold",
            StageDecision::EndOfData => "end_of_data",
        }
    }
}

impl std::fmt::Display for StageDecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One stage as it ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageRun {
    pub wave: usize,
    pub stage: usize,
    pub weight: f64,
    pub monitoring: bool,
    pub start: Micros,
    pub end: Micros,
    pub decision: StageDecision,
    pub reason: String,
}

/// Routing in force over a period (for exposure).
#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    pub start: Micros,
    pub end: Micros,
    pub weights: Vec<f64>,
}

/// What the policy did.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub outcome: Outcome,
    pub decided_at: Micros,
    pub reason: String,
    pub origin: Micros,
    /// Just after the last request.
    pub end: Micros,
    pub stages: Vec<StageRun>,
    pub checks: Vec<Check>,
    pub periods: Vec<Period>,
    /// The window the deciding check judged.
    pub deciding_window: (Micros, Micros),
}

/// The inputs every evaluation of a policy on a replay shares.
pub struct Setup<'a> {
    pub policy: &'a Policy,
    pub router: Router,
    pub scopes: Scopes,
    pub scale: Scale,
    pub origin: Micros,
    /// The first check time at or after the last request (so [origin, end) covers every request
    /// with whole check intervals).
    pub end: Micros,
    /// Compute only what decides (see [`Setup::decisions_only`]).
    decisions_only: bool,
    /// How the grade decides "truly worse".
    pub grading: Grading,
}

impl<'a> Setup<'a> {
    pub fn new(policy: &'a Policy, replay: &Replay) -> Setup<'a> {
        let mut columns: Vec<String> = Vec::new();
        for gate in &policy.gates {
            for s in &gate.segments {
                if !columns.contains(s) {
                    columns.push(s.clone());
                }
            }
        }
        // The end on the check grid, so every window (and the fast path's buckets) covers whole intervals.
        let step = policy.ramp.check_every;
        let span = replay.last + 1 - replay.first;
        let end = replay.first + (span + step - 1).div_euclid(step) * step;
        Setup {
            policy,
            router: Router::new(policy, &replay.cells),
            scopes: Scopes::new(&replay.cells, &columns),
            scale: Scale {
                bins: ScoreBins::new(replay.score_range),
                threshold: policy.decision.threshold,
                cost: policy.decision.cost,
                binary: replay.binary,
            },
            origin: replay.first,
            end,
            decisions_only: false,
            grading: Grading::default(),
        }
    }

    /// Grades with `grading` (family-wise by default).
    pub fn graded(mut self, grading: Grading) -> Self {
        self.grading = grading;
        self
    }

    /// Simulates for the decision alone, as a policy search needs: only the checks that did
    /// something besides continuing are kept, without their gate results; non-inferiority
    /// intervals are worked out only where they can block a promotion (all traffic, before the
    /// monitoring: a segment can only fail, which the harm test alone decides); an mSPRT look that
    /// cannot bring its p-value to α is skipped; a segment's statistical gate (and, while
    /// monitoring, all traffic's) has a result only when its harm test fails (above α
    /// its p-value only counts in the correction), and the correction is skipped when no p-value
    /// is at most α; statistical gates' values are worked out only where a reason shows them. The decisions, actions and stages are the same; a reason can differ only in the
    /// adjusted p-value it shows for a gate that did not fail (the skipped looks' p-values, all
    /// above α, enter that adjustment, and without a correction none is shown).
    pub fn decisions_only(mut self) -> Self {
        self.decisions_only = true;
        self
    }

    /// The same evaluation with its clock starting at `start` instead of the first request (moved
    /// back onto the check grid): a later window of the same replay.
    pub fn starting_at(mut self, start: Micros) -> Self {
        let step = self.policy.ramp.check_every;
        self.origin = (self.origin + (start - self.origin).div_euclid(step) * step).clamp(self.origin, self.end);
        self
    }

    /// The fast path's summaries of `replay` for this policy alone, keeping what its gates read (a
    /// sweep builds wider ones once and shares them, see [`fast::Summaries::serves`]).
    pub fn summaries(&self, replay: &Replay) -> crate::error::Result<fast::Summaries> {
        self.summaries_with(replay, &[], &[])
    }

    /// [`Setup::summaries`] also cut at `weights` and keeping what `metrics` read (the live
    /// controllers' routing and queries).
    pub fn summaries_with(
        &self,
        replay: &Replay,
        weights: &[f64],
        metrics: &[crate::policy::Metric],
    ) -> crate::error::Result<fast::Summaries> {
        let ramp = &self.policy.ramp;
        let mut all = self.policy.weights();
        all.extend_from_slice(weights);
        let needs = metrics::Needs::of(self.policy.gates.iter().map(|g| g.metric).chain(metrics.iter().copied()));
        fast::Summaries::build_for(replay, &ramp.salt, &all, self.scale, (self.origin, ramp.check_every), needs)
    }

    /// Whether the policy's gates read histograms (latency quantiles, drift, AUC, ECE).
    pub fn reads_histograms(&self) -> bool {
        self.policy.gates.iter().any(|g| g.metric.reads_histogram())
    }

    /// The fast path over `summaries` for this policy: windows without histograms when its gates
    /// read none.
    pub fn fast<'f>(&'f self, summaries: &'f fast::Summaries) -> fast::Fast<'f> {
        fast::Fast::with_histograms(summaries, &self.scopes, self.reads_histograms())
    }

    /// Runs the policy's clock over the replay with statistics from `source`.
    pub fn simulate(&self, source: &mut dyn Source) -> Run {
        let mut clock = Clock::new(self);
        let mut readings = Readings::new(self.scopes.len());
        while let Some((start, end, weights)) = clock.tick() {
            let stats = source.window(start, end, weights);
            readings.clear();
            clock.check(stats, &readings);
        }
        clock.finish()
    }

    /// "error_rate regression on origin=JFK: candidate 0.2 vs stable 0.01 (p = 0.001)".
    pub fn describe(&self, r: &GateResult) -> String {
        let gate = &self.policy.gates[r.gate];
        let mut s = format!("{} on {}", gate.name(), self.scopes.scopes[r.scope].label());
        match (r.canary, r.stable) {
            (Some(c), Some(st)) => s.push_str(&format!(": candidate {} vs stable {}", round(c), round(st))),
            (Some(c), None) => s.push_str(&format!(": candidate {}", round(c))),
            _ => {}
        }
        if let Some(p) = r.adjusted_p {
            s.push_str(&format!(" (adjusted p {})", round(p)));
        }
        if r.verdict != GateVerdict::Fail && r.verdict != GateVerdict::Pass {
            s.push_str(&format!(" is {}", r.verdict.name()));
            if let Some(h) = r.hours_required {
                s.push_str(&format!(", about {} more at this traffic", format_approx((h * 3.6e9) as i64)));
            }
        }
        s
    }
}

/// A simulation in progress, one check at a time: [`Clock::tick`] says which window the next check
/// judges, [`Clock::check`] judges it. [`Setup::simulate`] drives one clock from a [`Source`]; a
/// policy search drives many in lockstep over shared windows ([`lockstep`]).
pub struct Clock<'s> {
    setup: &'s Setup<'s>,
    judge: Judge<'s>,
    /// α of one stage's harm tests.
    split: f64,
    /// Whether non-inferiority combines the rollout's stages.
    combine: bool,
    earlier: Vec<WindowStats>,
    epoch_start: Micros,
    wave: usize,
    stage: usize,
    monitoring: bool,
    stage_start: Micros,
    consecutive: u32,
    total: u32,
    checks: Vec<Check>,
    stages: Vec<StageRun>,
    periods: Vec<Period>,
    ending: Option<(Outcome, Micros, String, (Micros, Micros))>,
    monitoring_since: Option<(Micros, String, (Micros, Micros))>,
    t: Micros,
    /// The routing at a position, worked out once per position.
    routed: Option<(Position, Vec<f64>)>,
    /// Where the window of the check at `t` starts.
    window_start: Micros,
}

impl<'s> Clock<'s> {
    pub fn new(setup: &'s Setup<'s>) -> Self {
        let policy = setup.policy;
        // Harm tests start afresh every stage, so α is split across the stages that compare the
        // arms; non-inferiority over the whole rollout is one interval at α, or per stage at the
        // split α. Monitoring epochs each run at α.
        let comparison_stages = policy.ramp.stages.iter().filter(|s| s.weight < 1.0).count() * setup.router.waves;
        let mut judge = Judge::new(policy, &setup.scopes, setup.scale.bins);
        judge.decisions_only = setup.decisions_only;
        Clock {
            setup,
            judge,
            split: policy.decision.alpha / comparison_stages.max(1) as f64,
            combine: policy.ramp.window == Window::Rollout,
            earlier: Vec::new(),
            epoch_start: setup.origin,
            wave: 0,
            stage: 0,
            monitoring: false,
            stage_start: setup.origin,
            consecutive: 0,
            total: 0,
            checks: Vec::new(),
            stages: Vec::new(),
            periods: Vec::new(),
            ending: None,
            monitoring_since: None,
            t: setup.origin,
            routed: None,
            window_start: setup.origin,
        }
    }

    /// The stage weight in force.
    fn weight(&self) -> f64 {
        if self.monitoring {
            1.0 - self.setup.policy.ramp.holdback
        } else {
            self.setup.policy.ramp.stages[self.stage].weight
        }
    }

    /// Moves to the next check: the window it judges (start, end, per-cell weights), or `None`
    /// once the policy has decided or the traffic has ended.
    pub fn tick(&mut self) -> Option<(Micros, Micros, &[f64])> {
        if self.ending.is_some() || self.t >= self.setup.end {
            return None;
        }
        let ramp = &self.setup.policy.ramp;
        self.t += ramp.check_every;
        let position = Position { wave: self.wave, weight: self.weight() };
        if self.routed.as_ref().is_none_or(|(at, _)| *at != position) {
            self.routed = Some((position, self.setup.router.weights(position)));
        }
        self.window_start = match (self.monitoring, ramp.window) {
            (true, _) => self.epoch_start,
            (false, Window::Rollout | Window::Stage) => self.stage_start,
            (false, Window::Sliding(d)) => self.stage_start.max(self.t - d),
        };
        Some((self.window_start, self.t, &self.routed.as_ref().expect("set above").1))
    }

    /// Judges the window [`Clock::tick`] asked for, and acts on the verdicts: `readings` are of
    /// `stats` as they are now (cleared since they last changed).
    pub fn check(&mut self, stats: &WindowStats, readings: &Readings) {
        let setup = self.setup;
        let policy = setup.policy;
        let (ramp, decision) = (&policy.ramp, &policy.decision);
        let (t, window_start, monitoring) = (self.t, self.window_start, self.monitoring);
        let weight = self.weight();
        let (bake, max_time) = if monitoring { (0, Micros::MAX) } else { (ramp.stages[self.stage].bake, ramp.stages[self.stage].max_time) };
        let ctx = if monitoring {
            Context {
                weight,
                elapsed: t - window_start,
                max_time,
                alpha_fail: decision.alpha,
                alpha_ni: decision.alpha,
                combine: false,
                monitoring,
            }
        } else {
            let alpha_ni = if self.combine { decision.alpha } else { self.split };
            Context { weight, elapsed: t - window_start, max_time, alpha_fail: self.split, alpha_ni, combine: self.combine, monitoring }
        };
        let results = self.judge.check(stats, readings, &self.earlier, &ctx);
        let critical = results.iter().find(|r| r.verdict == GateVerdict::Fail && policy.gates[r.gate].critical);
        let failing = results.iter().find(|r| r.verdict == GateVerdict::Fail);
        let (action, reason) = if let Some(r) = critical {
            (Action::Rollback, format!("critical gate {} failed", setup.describe(r)))
        } else if let Some(r) = failing {
            self.consecutive += 1;
            self.total += 1;
            if self.consecutive >= decision.consecutive_failures {
                (Action::Rollback, format!("{} failing checks in a row; last: {}", self.consecutive, setup.describe(r)))
            } else if self.total >= decision.total_failures {
                (Action::Rollback, format!("{} failing checks in all; last: {}", self.total, setup.describe(r)))
            } else {
                (Action::Failing, format!("failing: {}", setup.describe(r)))
            }
        } else {
            self.consecutive = 0;
            let blocking = results.iter().find(|r| {
                r.scope == 0
                    && policy.gates[r.gate].required_from.is_some_and(|from| weight >= from - 1e-12)
                    && r.verdict != GateVerdict::Pass
            });
            let elapsed = t - self.stage_start;
            if monitoring {
                (Action::Continue, String::new())
            } else if elapsed >= bake && blocking.is_none() {
                (Action::Promote, format!("baked {} with every required gate passing", format_duration(elapsed)))
            } else if elapsed >= max_time {
                let why = blocking.map_or_else(String::new, |r| format!(": {}", setup.describe(r)));
                match decision.on_timeout {
                    OnTimeout::Hold => {
                        (Action::Hold, format!("inconclusive at the stage's maximum time {}{why}", format_duration(max_time)))
                    }
                    OnTimeout::Rollback => {
                        (Action::Rollback, format!("inconclusive at the stage's maximum time {}{why}", format_duration(max_time)))
                    }
                    OnTimeout::Promote => (
                        Action::Promote,
                        format!("promoted at the stage's maximum time {} although inconclusive{why}", format_duration(max_time)),
                    ),
                }
            } else {
                (Action::Continue, String::new())
            }
        };
        let (wave, stage) = (self.wave, self.stage);
        if !setup.decisions_only {
            self.checks.push(Check { time: t, wave, stage, weight, monitoring, action, results: results.to_vec() });
        } else if action != Action::Continue {
            self.checks.push(Check { time: t, wave, stage, weight, monitoring, action, results: Vec::new() });
        }
        let weights = &self.routed.as_ref().expect("routed by tick").1;
        // A decision ends the stage: it is recorded with the routing it ran under.
        let decision = match action {
            Action::Promote => Some(StageDecision::Promote),
            Action::Rollback => Some(StageDecision::Rollback),
            Action::Hold => Some(StageDecision::Hold),
            Action::Continue | Action::Failing => None,
        };
        if let Some(decision) = decision {
            let (start, reason) = (self.stage_start, reason.clone());
            self.stages.push(StageRun { wave, stage, weight, monitoring, start, end: t, decision, reason });
            self.periods.push(Period { start, end: t, weights: weights.clone() });
        }
        match action {
            Action::Continue | Action::Failing => {
                if monitoring && t - self.epoch_start >= ramp.monitor_window {
                    self.epoch_start = t;
                    self.judge.new_stage(false);
                }
            }
            Action::Rollback | Action::Hold => {
                let outcome = if action == Action::Rollback { Outcome::RolledBack } else { Outcome::Held };
                // After a rollback nothing goes to the candidate; a hold keeps the weight.
                let after = if action == Action::Hold { weights.clone() } else { vec![0.0; weights.len()] };
                self.periods.push(Period { start: t, end: setup.end.max(t), weights: after });
                self.ending = Some((outcome, t, reason, (window_start, t)));
            }
            Action::Promote => {
                if self.combine && !monitoring {
                    self.earlier.push(stats.clone());
                }
                self.stage += 1;
                let ramp_done = self.stage >= ramp.stages.len() || ramp.stages[self.stage].weight >= 1.0;
                if ramp_done {
                    if self.wave + 1 < setup.router.waves {
                        self.wave += 1;
                        self.stage = 0;
                    } else if ramp.holdback > 0.0 {
                        self.monitoring = true;
                        self.monitoring_since = Some((t, reason, (window_start, t)));
                        self.epoch_start = t;
                        self.earlier.clear();
                        self.judge.new_stage(false);
                    } else {
                        let full = setup.router.weights(Position { wave: self.wave, weight: 1.0 });
                        self.periods.push(Period { start: t, end: setup.end.max(t), weights: full });
                        self.ending = Some((Outcome::Promoted, t, reason, (window_start, t)));
                        return;
                    }
                }
                self.stage_start = t;
                self.consecutive = 0;
                self.judge.new_stage(self.combine && !self.monitoring);
            }
        }
    }

    /// What the policy did.
    pub fn finish(mut self) -> Run {
        let setup = self.setup;
        let t = self.t;
        let (outcome, decided_at, reason, deciding_window) = match self.ending {
            Some(e) => e,
            None => {
                let (weight, monitoring) = (self.weight(), self.monitoring);
                let weights = setup.router.weights(Position { wave: self.wave, weight });
                self.periods.push(Period { start: self.stage_start, end: t, weights });
                self.stages.push(StageRun {
                    wave: self.wave,
                    stage: self.stage,
                    weight,
                    monitoring,
                    start: self.stage_start,
                    end: t,
                    decision: StageDecision::EndOfData,
                    reason: if monitoring {
                        "monitored until the traffic ended".into()
                    } else {
                        "the traffic ended before a decision".into()
                    },
                });
                match self.monitoring_since {
                    Some((at, why, window)) => (
                        Outcome::Promoted,
                        at,
                        format!("{why}; monitored with a {}% holdback until the traffic ended", setup.policy.ramp.holdback * 100.0),
                        window,
                    ),
                    None => (Outcome::Held, t, "the traffic ended before the policy decided".into(), (self.stage_start, t)),
                }
            }
        };
        Run {
            outcome,
            decided_at,
            reason,
            origin: setup.origin,
            end: setup.end.max(t),
            stages: self.stages,
            checks: self.checks,
            periods: self.periods,
            deciding_window,
        }
    }
}

/// Four significant digits, for messages.
pub fn round(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let digits = (4 - 1 - x.abs().log10().floor() as i32).clamp(0, 12) as usize;
    format!("{x:.digits$}")
}
