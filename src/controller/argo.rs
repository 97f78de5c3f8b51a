//! Argo Rollouts' analysis rules, as its controller applies them (argo-rollouts
//! `utils/evaluate.EvaluateResult` and `analysis.assessMetricStatus` / `asssessRunStatus`):
//!
//! - a measurement is judged on its conditions: with none it is Successful; with only a success
//!   condition, not meeting it is Failed; with only a failure condition, not meeting it is
//!   Successful; with both, the failure condition wins, and neither met is Inconclusive. A
//!   condition that cannot be evaluated (an empty result indexed, say) makes the measurement
//!   Error, which counts apart from failures;
//! - a metric is Failed once its failed measurements exceed `failureLimit` (default 0), else
//!   Inconclusive once its inconclusive ones exceed `inconclusiveLimit` (default 0), else Error once
//!   its consecutive errors exceed `consecutiveErrorLimit` (default 4), else Successful once `count`
//!   measurements were taken, else still Running; failures count in total, never reset. With
//!   `consecutiveSuccessLimit` (Argo Rollouts 1.8) the metric is Successful as soon as that many
//!   measurements succeed in a row, and reaching `count` without the streak is Failed when it is
//!   the only limit (`failureLimit: -1`) or Inconclusive when a failure limit applies too — the
//!   table of Argo's analysis documentation; the code index held no release with this field to
//!   check it against;
//! - the run is Running while any metric is, and otherwise takes the worst metric phase in the
//!   order Successful < Inconclusive < Error < Failed; a `dryRun` metric is measured but never
//!   decides the run. A Failed (or Error) run aborts the rollout; an Inconclusive one pauses it.
//!
//! This module is the rules alone; [`super::rollout`] reads Rollouts and AnalysisTemplates and
//! replays them on the traffic.

use super::condition::{Condition, Value};

/// A measurement's, a metric's or a run's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Pending,
    Running,
    Successful,
    Inconclusive,
    Error,
    Failed,
}

impl Phase {
    pub fn completed(self) -> bool {
        !matches!(self, Phase::Pending | Phase::Running)
    }
}

/// The parts of an AnalysisTemplate metric that decide.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRules {
    pub success: Option<Condition>,
    pub failure: Option<Condition>,
    /// Failed measurements tolerated; -1 turns the failure limit off (with
    /// `consecutiveSuccessLimit`).
    pub failure_limit: i64,
    pub inconclusive_limit: u32,
    pub consecutive_error_limit: u32,
    /// Successful measurements in a row that complete the metric as Successful (0: off).
    pub consecutive_success_limit: u32,
    /// Measurements to take; `None`: until the run is stopped.
    pub count: Option<u32>,
    pub dry_run: bool,
}

impl Default for MetricRules {
    fn default() -> Self {
        Self {
            success: None,
            failure: None,
            failure_limit: 0,
            inconclusive_limit: 0,
            consecutive_error_limit: 4,
            consecutive_success_limit: 0,
            count: None,
            dry_run: false,
        }
    }
}

impl MetricRules {
    /// One measurement's phase from what the query returned.
    pub fn judge(&self, result: &Value) -> Phase {
        let holds = |c: &Option<Condition>| c.as_ref().map(|c| c.holds(result)).transpose();
        let (success, failure) = match (holds(&self.success), holds(&self.failure)) {
            (Ok(s), Ok(f)) => (s, f),
            _ => return Phase::Error,
        };
        let (success, failure) = match (success, failure) {
            (None, None) => return Phase::Successful,
            (Some(s), None) => (s, !s),
            (None, Some(f)) => (!f, f),
            (Some(s), Some(f)) => (s, f),
        };
        if failure {
            Phase::Failed
        } else if success {
            Phase::Successful
        } else {
            Phase::Inconclusive
        }
    }
}

/// A metric's measurements so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricResult {
    pub count: u32,
    pub successful: u32,
    pub failed: u32,
    pub inconclusive: u32,
    pub errors: u32,
    pub consecutive_errors: u32,
    pub consecutive_successes: u32,
}

impl MetricResult {
    /// Records a completed measurement (an error does not count towards `count`).
    pub fn record(&mut self, phase: Phase) {
        self.consecutive_successes = if phase == Phase::Successful { self.consecutive_successes + 1 } else { 0 };
        match phase {
            Phase::Successful => self.successful += 1,
            Phase::Failed => self.failed += 1,
            Phase::Inconclusive => self.inconclusive += 1,
            Phase::Error => {
                self.errors += 1;
                self.consecutive_errors += 1;
                return;
            }
            Phase::Pending | Phase::Running => return,
        }
        self.count += 1;
        self.consecutive_errors = 0;
    }

    /// The metric's phase under `rules`; `terminating` once the run is being stopped.
    pub fn phase(&self, rules: &MetricRules, terminating: bool) -> Phase {
        if self.count == 0 && self.errors == 0 {
            return if terminating { Phase::Successful } else { Phase::Pending };
        }
        let success_limit = rules.consecutive_success_limit > 0;
        if rules.failure_limit >= 0 && i64::from(self.failed) > rules.failure_limit {
            Phase::Failed
        } else if self.inconclusive > rules.inconclusive_limit {
            Phase::Inconclusive
        } else if self.consecutive_errors > rules.consecutive_error_limit {
            Phase::Error
        } else if success_limit && self.consecutive_successes >= rules.consecutive_success_limit {
            Phase::Successful
        } else if rules.count.is_some_and(|n| self.count >= n) {
            // With a consecutive-success limit, reaching the count without meeting it is not a
            // success: Failed when it is the only limit, Inconclusive when a failure limit applies too.
            match (success_limit, rules.failure_limit >= 0) {
                (false, _) => Phase::Successful,
                (true, false) => Phase::Failed,
                (true, true) => Phase::Inconclusive,
            }
        } else if terminating {
            Phase::Successful
        } else {
            Phase::Running
        }
    }
}

/// The run's phase from its metrics' phases (and whether each is a dry run).
pub fn run_phase(metrics: &[(Phase, bool)]) -> Phase {
    if metrics.iter().any(|(p, _)| !p.completed()) {
        return Phase::Running;
    }
    metrics.iter().filter(|(_, dry)| !dry).map(|(p, _)| *p).max().unwrap_or(Phase::Successful)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(success: Option<&str>, failure: Option<&str>) -> MetricRules {
        MetricRules {
            success: success.map(|s| Condition::parse(s).unwrap()),
            failure: failure.map(|s| Condition::parse(s).unwrap()),
            ..Default::default()
        }
    }

    fn v(x: f64) -> Value {
        Value::Vector(vec![x])
    }

    #[test]
    fn a_metric_with_no_condition_always_succeeds() {
        let r = rules(None, None);
        assert_eq!(r.judge(&v(1e9)), Phase::Successful);
        assert_eq!(r.judge(&v(f64::NAN)), Phase::Successful);
        assert_eq!(r.judge(&Value::Vector(vec![])), Phase::Successful, "nothing is evaluated, so nothing errs");
    }

    #[test]
    fn only_a_success_condition_that_is_not_met_fails() {
        let r = rules(Some("result[0] <= 0.01"), None);
        assert_eq!(r.judge(&v(0.005)), Phase::Successful);
        assert_eq!(r.judge(&v(0.02)), Phase::Failed);
        // No data: NaN compares false, so the success condition is not met — a failure.
        assert_eq!(r.judge(&v(f64::NAN)), Phase::Failed);
        // An empty vector cannot be indexed: an error, not a failure.
        assert_eq!(r.judge(&Value::Vector(vec![])), Phase::Error);
    }

    #[test]
    fn only_a_failure_condition_that_is_not_met_succeeds() {
        let r = rules(None, Some("result[0] > 0.05"));
        assert_eq!(r.judge(&v(0.02)), Phase::Successful);
        assert_eq!(r.judge(&v(0.06)), Phase::Failed);
        assert_eq!(r.judge(&v(f64::NAN)), Phase::Successful, "NaN never meets the failure condition");
    }

    #[test]
    fn with_both_the_failure_condition_wins_and_neither_is_inconclusive() {
        let r = rules(Some("result[0] < 0.01"), Some("result[0] > 0.005"));
        assert_eq!(r.judge(&v(0.008)), Phase::Failed, "both met: failure wins");
        assert_eq!(r.judge(&v(0.002)), Phase::Successful);
        let r = rules(Some("result[0] < 0.01"), Some("result[0] >= 0.05"));
        assert_eq!(r.judge(&v(0.03)), Phase::Inconclusive);
    }

    #[test]
    fn failures_count_in_total_up_to_the_limit() {
        let r = MetricRules { failure_limit: 2, ..rules(Some("result[0] < 1"), None) };
        let mut m = MetricResult::default();
        for (x, expected) in
            [(5.0, Phase::Running), (0.5, Phase::Running), (5.0, Phase::Running), (0.5, Phase::Running), (5.0, Phase::Failed)]
        {
            m.record(r.judge(&v(x)));
            assert_eq!(m.phase(&r, false), expected, "{m:?}");
        }
        // failureLimit 0 (the default): the first failure fails the metric.
        let strict = rules(Some("result[0] < 1"), None);
        let mut m = MetricResult::default();
        m.record(strict.judge(&v(5.0)));
        assert_eq!(m.phase(&strict, false), Phase::Failed);
    }

    #[test]
    fn errors_count_in_a_row_and_a_measurement_resets_them() {
        let r = rules(Some("result[0] < 1"), None);
        let mut m = MetricResult::default();
        for _ in 0..4 {
            m.record(Phase::Error);
        }
        assert_eq!(m.phase(&r, false), Phase::Running, "4 errors in a row are within the default limit of 4");
        m.record(Phase::Successful);
        for _ in 0..4 {
            m.record(Phase::Error);
        }
        assert_eq!(m.phase(&r, false), Phase::Running);
        m.record(Phase::Error);
        assert_eq!(m.phase(&r, false), Phase::Error, "the fifth in a row");
    }

    #[test]
    fn a_count_reached_within_the_limits_succeeds() {
        let r = MetricRules { count: Some(3), failure_limit: 1, ..rules(Some("result[0] < 1"), None) };
        let mut m = MetricResult::default();
        for x in [0.5, 5.0, 0.5] {
            m.record(r.judge(&v(x)));
        }
        assert_eq!(m.phase(&r, false), Phase::Successful);
        let inconclusive = MetricRules { count: Some(3), ..rules(Some("result[0] < 1"), Some("result[0] > 2")) };
        let mut m = MetricResult::default();
        m.record(inconclusive.judge(&v(1.5)));
        assert_eq!(m.phase(&inconclusive, false), Phase::Inconclusive, "inconclusiveLimit 0: the first one pauses");
    }

    #[test]
    fn a_consecutive_success_limit_completes_the_metric_early() {
        let ok = |csl: u32, failure_limit: i64| MetricRules {
            count: Some(4),
            consecutive_success_limit: csl,
            failure_limit,
            ..rules(Some("result[0] < 1"), None)
        };
        // Two successes in a row: Successful before the count.
        let r = ok(2, 3);
        let mut m = MetricResult::default();
        for (x, expected) in [(0.5, Phase::Running), (5.0, Phase::Running), (0.5, Phase::Running), (0.5, Phase::Successful)] {
            m.record(r.judge(&v(x)));
            assert_eq!(m.phase(&r, false), expected, "{m:?}");
        }
        // The count reached without the streak: Inconclusive while a failure limit applies too,
        // Failed when the success limit is the only one (failureLimit -1).
        let mut m = MetricResult::default();
        for x in [0.5, 5.0, 0.5, 5.0] {
            m.record(r.judge(&v(x)));
        }
        assert_eq!(m.phase(&r, false), Phase::Inconclusive);
        assert_eq!(m.phase(&ok(2, -1), false), Phase::Failed);
        // Without a success limit the same measurements succeed at the count (2 failures ≤ 3).
        assert_eq!(m.phase(&ok(0, 3), false), Phase::Successful);
    }

    #[test]
    fn the_run_takes_the_worst_metric_and_dry_runs_never_decide() {
        assert_eq!(run_phase(&[(Phase::Successful, false), (Phase::Running, false)]), Phase::Running);
        assert_eq!(run_phase(&[(Phase::Successful, false), (Phase::Inconclusive, false)]), Phase::Inconclusive);
        assert_eq!(run_phase(&[(Phase::Inconclusive, false), (Phase::Failed, false), (Phase::Error, false)]), Phase::Failed);
        assert_eq!(run_phase(&[(Phase::Successful, false), (Phase::Failed, true)]), Phase::Successful);
    }
}
