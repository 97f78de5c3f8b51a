//! Guardrail verdicts: non-inferiority and deterioration with a margin relative to the stable
//! mean (Schultzberg, Ankargren, Frånberg, "Risk-aware product decisions in A/B tests with
//! multiple metrics", arXiv 2402.11609).
//!
//! For θ = candidate − stable on a metric where one direction is harm, with margin
//! Δ = margin·|μ_stable| and an interval for θ (a confidence sequence for repeated looks):
//! - NON-INFERIOR when the harmful-side end of the interval is inside the margin — even when the
//!   whole interval lies on the harmful side of 0: a candidate surely worse, but surely by less
//!   than the margin, is non-inferior (the textbook rule, and what the margin is for);
//! - REGRESSION when the deterioration test rejects and non-inferiority is not shown: the whole
//!   interval lies on the harmful side of 0 and reaches past the margin (with, when the estimate
//!   is inside the margin, the observations per arm that would likely shrink the interval inside
//!   it, as for NEEDS_MORE_DATA);
//! - otherwise INCONCLUSIVE, split by the minimum detectable effect now,
//!   MDE = (z_{1−α/2} + z_{1−β})·SE: UNDERPOWERED when MDE > Δ (the sample cannot yet resolve
//!   effects of the margin's size; about n·(MDE/Δ)² per arm would), else NEEDS_MORE_DATA (the
//!   estimate sits too close to the margin; about n·(h/(Δ − |θ̂|))² per arm would settle it, h the
//!   interval's half-width, when the estimate is inside the margin).
//!
//! Guardrails need no α correction among themselves (promotion requires all of them:
//! intersection-union); power is corrected instead (per-guardrail power 1 − β/G).

use serde::{Deserialize, Serialize};

use super::power::{minimum_detectable_effect, sample_needed};
use super::Interval;

/// Which direction of the metric is good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
}

/// What a non-inferiority guardrail concludes at one look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Conclusion {
    Regression,
    NonInferior,
    Underpowered,
    NeedsMoreData,
}

/// What the data say about θ at one look.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evidence {
    pub estimate: f64,
    /// Two-sided interval at the test's level (valid for the way the data are looked at).
    pub interval: Interval,
    pub standard_error: f64,
    /// Observations per arm (the smaller arm).
    pub n: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Assessment {
    pub verdict: Conclusion,
    /// Δ in the metric's units.
    pub margin: f64,
    /// The interval's end on the harmful side.
    pub harmful_bound: f64,
    /// The minimum detectable effect, worked out when the interval alone does not settle the verdict.
    pub mde: Option<f64>,
    /// Observations per arm that would likely settle an inconclusive verdict.
    pub n_required: Option<f64>,
}

/// Judges one guardrail. `margin` is relative to |stable mean|; `power` is per guardrail.
pub fn assess(evidence: &Evidence, stable_mean: f64, margin: f64, better: Better, alpha: f64, power: f64) -> Assessment {
    let delta = margin * stable_mean.abs();
    // Work on the harm scale: positive = worse.
    let sign = match better {
        Better::Lower => 1.0,
        Better::Higher => -1.0,
    };
    let harm = Interval::new(sign * evidence.interval.lower, sign * evidence.interval.upper);
    let estimate = sign * evidence.estimate;
    let harmful_bound = sign * harm.upper;
    if harm.upper < delta {
        return Assessment { verdict: Conclusion::NonInferior, margin: delta, harmful_bound, mde: None, n_required: None };
    }
    // Observations per arm that would likely bring the harmful end inside the margin (none would
    // when the estimate itself is past it).
    let settling = || {
        let (half, room) = (evidence.interval.width() / 2.0, delta - estimate);
        (room > 0.0).then(|| sample_needed(evidence.n, half, room))
    };
    if harm.lower > 0.0 {
        return Assessment { verdict: Conclusion::Regression, margin: delta, harmful_bound, mde: None, n_required: settling() };
    }
    let mde = minimum_detectable_effect(evidence.standard_error, alpha, power);
    let (verdict, n_required) = if mde > delta {
        (Conclusion::Underpowered, (delta > 0.0).then(|| sample_needed(evidence.n, mde, delta)))
    } else {
        (Conclusion::NeedsMoreData, settling())
    };
    Assessment { verdict, margin: delta, harmful_bound, mde: Some(mde), n_required }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence(estimate: f64, se: f64, n: f64) -> Evidence {
        Evidence { estimate, interval: Interval::around(estimate, 1.96 * se), standard_error: se, n }
    }

    #[test]
    fn the_four_verdicts() {
        // Log loss (lower is better), stable mean 0.5, margin 2% → Δ = 0.01.
        let a = |e: Evidence| assess(&e, 0.5, 0.02, Better::Lower, 0.05, 0.8);
        assert_eq!(a(evidence(0.03, 0.005, 10_000.0)).verdict, Conclusion::Regression);
        assert_eq!(a(evidence(0.0, 0.002, 10_000.0)).verdict, Conclusion::NonInferior);
        let under = a(evidence(0.0, 0.02, 100.0));
        assert_eq!(under.verdict, Conclusion::Underpowered);
        // MDE = 2.8016·0.02 = 0.056; n ≈ 100·(0.056/0.01)² ≈ 3139.
        assert!((under.n_required.unwrap() - 100.0 * (under.mde.unwrap() / 0.01f64).powi(2)).abs() < 1e-9);
        let close = a(evidence(0.005, 0.003, 10_000.0));
        assert_eq!(close.verdict, Conclusion::NeedsMoreData);
        assert!(close.n_required.unwrap() > 10_000.0);
        // AUC (higher is better): a drop is harm.
        let auc = assess(&evidence(-0.05, 0.01, 5000.0), 0.7, 0.01, Better::Higher, 0.05, 0.8);
        assert_eq!(auc.verdict, Conclusion::Regression);
        assert!((auc.harmful_bound - (-0.05 - 1.96 * 0.01)).abs() < 1e-12);
    }

    /// Issue 18, item 8: Δ̂ = 2, SE = 0.917, margin 5 (5% of a stable mean of 100). The candidate is
    /// significantly worse (lower end 2 − 1.96·0.917 = 0.203 > 0) but its harmful end 3.797 is
    /// inside the margin: non-inferior, as the textbook rule and this module's documentation say.
    #[test]
    fn significantly_worse_but_inside_the_margin_is_non_inferior() {
        let within = assess(&evidence(2.0, 0.917, 400.0), 100.0, 0.05, Better::Lower, 0.05, 0.8);
        assert_eq!(within.verdict, Conclusion::NonInferior);
        assert!((within.harmful_bound - (2.0 + 1.96 * 0.917)).abs() < 1e-12);
        // The same difference with a margin of 3: worse, and not shown to be within the margin —
        // a regression, with the sample that would likely settle it (half-width 1.797 into the
        // room of 1 left by the estimate: 400·1.797² ≈ 1292 per arm).
        let past = assess(&evidence(2.0, 0.917, 400.0), 100.0, 0.03, Better::Lower, 0.05, 0.8);
        assert_eq!(past.verdict, Conclusion::Regression);
        assert!((past.n_required.unwrap() - 400.0 * (1.96f64 * 0.917).powi(2)).abs() < 1e-6);
        // Past the margin even at the estimate: no sample makes it non-inferior.
        let beyond = assess(&evidence(4.0, 0.917, 400.0), 100.0, 0.03, Better::Lower, 0.05, 0.8);
        assert_eq!((beyond.verdict, beyond.n_required), (Conclusion::Regression, None));
    }
}
