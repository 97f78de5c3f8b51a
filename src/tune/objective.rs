//! What a policy did over the scenario set and how the objective reads it: the score, the early
//! cuts (missed incidents, false rollbacks, promotion in time, dominance) and feasibility.

use serde::Serialize;

use super::search::{salts_of, starts};
use super::space::Space;
use super::{Case, Replayed};
use crate::policy::Policy;
use crate::scenario::Expect;
use crate::simulate::{Outcome, Setup};
use crate::stats::binomial::wilson;
use crate::stats::moments::Counts;
use crate::time::Micros;

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

pub(super) const OBJECTIVE: &str = "no missed incident; false-rollback rate at most the budget; at least min_promoted of the good replays promoted within promote_within; then the least exposure (candidate requests served on the incidents until the rollback, summed), ties broken by the shortest mean time to promotion of the good replays (a replay never promoted counts its whole span)";

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
    pub(super) fn new(case: &Case) -> Self {
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

    pub(super) fn add(&mut self, r: &Replayed) {
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
pub(super) struct Tally {
    pub(super) s: Score,
    pub(super) rollback_hours: Vec<f64>,
    pub(super) promotion_hours: Vec<f64>,
    /// False rollbacks the budget allows over all planned good replays.
    pub(super) allowed: usize,
    /// Good replays that may fail to promote in time, over all planned ones.
    pub(super) late_allowed: usize,
    /// `search.promote_within` and `search.min_promoted`.
    pub(super) promote_within_hours: f64,
    pub(super) min_promoted: f64,
    /// Whether to stop at the first missed incident and once the false rollbacks exceed `allowed`.
    pub(super) cut: bool,
    /// Where the evaluation stopped, once it has.
    pub(super) stopped: Option<Stage>,
    /// When dominated variants are cut, per planned good replay in the tally's order, the least it
    /// can add to the time to promotion ([`promotion_floors`]).
    pub(super) floors: Vec<f64>,
}

impl Tally {
    pub(super) fn new(policies: &[Policy], cases: &[Case], space: &Space, cut: bool) -> Self {
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
    pub(super) fn false_rollback_rate(&self) -> Option<f64> {
        (self.s.good_replays > 0).then(|| self.s.false_rollbacks as f64 / self.s.good_replays as f64)
    }

    /// Replayed to the end, and feasible as [`feasible`] will judge its score.
    pub(super) fn finished_feasible(&self, budget: f64) -> bool {
        self.stopped.is_none()
            && within_budget(self.s.missed_incidents, self.false_rollback_rate(), budget)
            && promotes_enough(self.promoted_in_time_share(), self.min_promoted)
    }

    /// The share of the good replays so far promoted within `promote_within`.
    pub(super) fn promoted_in_time_share(&self) -> Option<f64> {
        (self.s.good_replays > 0).then(|| self.s.promoted_in_time as f64 / self.s.good_replays as f64)
    }

    /// The mean time to promotion over the good replays so far.
    pub(super) fn mean_hours(&self) -> f64 {
        self.promotion_hours.iter().sum::<f64>() / self.promotion_hours.len() as f64
    }

    /// The least mean time to promotion the variant can still reach: the replays so far, and each
    /// one left at its floor. Summed in the same order as the final mean, each term at most the
    /// one it stands for, so (floating-point addition being monotone) never above the final mean.
    pub(super) fn least_hours(&self) -> f64 {
        let seen = self.promotion_hours.len().min(self.floors.len());
        self.promotion_hours.iter().chain(&self.floors[seen..]).sum::<f64>() / self.floors.len().max(1) as f64
    }

    /// Whether a finished feasible variant at `points` (exposure, mean hours to promotion) is
    /// sure to dominate this one on the frontier: no more exposure (this one's is final once the
    /// incidents are replayed) and no longer than the least this one can reach, one of them
    /// strictly less. Such a variant can be on no frontier nor win (and whatever it would have
    /// dominated, the other dominates too), so it is cut without changing either.
    pub(super) fn dominated_by(&self, points: &[(f64, f64)]) -> bool {
        let (e, h) = (self.s.exposure as f64, self.least_hours());
        points.iter().any(|&(pe, ph)| pe <= e && ph <= h && (pe < e || ph < h))
    }

    pub(super) fn incident(&mut self, case: &Case, r: &Replayed) {
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

    pub(super) fn good(&mut self, case: &Case, r: &Replayed) {
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

    pub(super) fn finish(mut self) -> (Score, Stage) {
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
pub(super) fn promotion_floors(policies: &[Policy], cases: &[Case], space: &Space) -> Vec<f64> {
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

pub(super) fn feasible(s: &Score, space: &Space) -> bool {
    within_budget(s.missed_incidents, s.false_rollback_rate, space.false_rollback_budget)
        && promotes_enough(s.promoted_in_time_share, space.min_promoted)
}

/// At least `min_promoted` of the good replays promoted in time (there were good replays).
pub(super) fn promotes_enough(share: Option<f64>, min_promoted: f64) -> bool {
    share.is_some_and(|share| share + 1e-12 >= min_promoted)
}

/// The `q`-quantile of ascending `sorted` by nearest rank: the smallest value with at least q of
/// them at or below it.
pub(super) fn nearest_rank(sorted: &[f64], q: f64) -> Option<f64> {
    let rank = ((q * sorted.len() as f64 - 1e-9).ceil() as usize).max(1);
    sorted.get(rank - 1).copied()
}

/// No missed incident, and a false-rollback rate (there were good replays) within the budget.
pub(super) fn within_budget(missed_incidents: usize, false_rollback_rate: Option<f64>, budget: f64) -> bool {
    missed_incidents == 0 && false_rollback_rate.is_some_and(|r| r <= budget)
}
