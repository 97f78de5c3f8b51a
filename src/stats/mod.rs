//! Statistics, one file per method. Each file opens with the method, its assumptions and its
//! source, and is tested against published reference values (`STATS.md`, scipy, statsmodels, R).
//!
//! Results use the checked types below: a [`PValue`] is always in [0, 1] and an [`Interval`] has
//! `lower <= upper`.

pub mod binomial;
pub mod confidence_sequence;
pub mod drift;
pub mod group_sequential;
pub mod guardrail;
pub mod kayenta;
pub mod mann_whitney;
pub mod moments;
pub mod msprt;
pub mod multiple;
pub mod power;
pub mod quality;
pub mod sketch;
pub mod two_sample;

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal};

/// A p-value: a probability in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct PValue(f64);

impl PValue {
    /// Clamps rounding noise into [0, 1]; NaN (an undefined test) becomes 1, "no evidence".
    pub fn new(p: f64) -> Self {
        Self(if p.is_nan() { 1.0 } else { p.clamp(0.0, 1.0) })
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

/// A closed interval with `lower <= upper` (either end may be infinite).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub lower: f64,
    pub upper: f64,
}

impl Interval {
    pub fn new(a: f64, b: f64) -> Self {
        Self { lower: a.min(b), upper: a.max(b) }
    }

    /// `centre ± half_width`.
    pub fn around(centre: f64, half_width: f64) -> Self {
        Self::new(centre - half_width.abs(), centre + half_width.abs())
    }

    pub fn contains(&self, x: f64) -> bool {
        self.lower <= x && x <= self.upper
    }

    pub fn width(&self) -> f64 {
        self.upper - self.lower
    }

    /// The intersection, or `None` when the intervals do not overlap.
    pub fn intersect(&self, other: &Interval) -> Option<Interval> {
        let (lower, upper) = (self.lower.max(other.lower), self.upper.min(other.upper));
        (lower <= upper).then_some(Interval { lower, upper })
    }
}

fn standard_normal() -> Normal {
    Normal::new(0.0, 1.0).expect("the standard normal exists")
}

/// Φ(x).
pub fn phi(x: f64) -> f64 {
    standard_normal().cdf(x)
}

/// 1 − Φ(x), accurate in the upper tail.
pub fn phi_upper(x: f64) -> f64 {
    standard_normal().sf(x)
}

/// Φ⁻¹(p).
pub fn phi_inv(p: f64) -> f64 {
    standard_normal().inverse_cdf(p)
}

/// Two-sided p-value of a standard normal statistic.
pub fn two_sided_p(z: f64) -> PValue {
    PValue::new(2.0 * phi_upper(z.abs()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn checked_types_hold_their_invariants() {
        assert_eq!(PValue::new(1.0000001).get(), 1.0);
        assert_eq!(PValue::new(f64::NAN).get(), 1.0);
        let i = Interval::new(3.0, 1.0);
        assert_eq!((i.lower, i.upper), (1.0, 3.0));
        assert_eq!(i.intersect(&Interval::new(2.0, 5.0)), Some(Interval::new(2.0, 3.0)));
        assert_eq!(i.intersect(&Interval::new(4.0, 5.0)), None);
        assert!((phi_inv(0.975) - 1.959_963_984_540_054).abs() < 1e-9);
        // statrs' normal quantile is accurate to about 1e-11 here.
        assert!((two_sided_p(1.959_963_984_540_054).get() - 0.05).abs() < 1e-11);
    }

    /// A small seeded generator for simulations in tests: SplitMix64 and Box-Muller.
    pub(crate) struct Rng(u64);

    impl Rng {
        pub(crate) fn new(seed: u64) -> Self {
            Self(seed)
        }

        pub(crate) fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        pub(crate) fn uniform(&mut self) -> f64 {
            ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }

        pub(crate) fn normal(&mut self) -> f64 {
            let (u, v) = (self.uniform(), self.uniform());
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        }
    }

    /// Why always-valid tests exist: A/A data (no true difference) checked 50 times as it accrues.
    /// A fixed-horizon z-test that rejects at any look rejects far more often than α; the mSPRT
    /// stays at or below α.
    #[test]
    fn peeking_inflates_fixed_horizon_errors_but_not_always_valid_ones() {
        use super::moments::Moments;
        use super::msprt::Msprt;
        use super::two_sample::z_test;
        let (simulations, looks, per_look, alpha) = (2000, 50, 100, 0.05);
        let mut rng = Rng::new(20_131_231);
        let (mut fixed, mut always_valid) = (0u32, 0u32);
        for _ in 0..simulations {
            let (mut a, mut b) = (Moments::with_shift(0.0), Moments::with_shift(0.0));
            let mut test = Msprt::new(0.01, alpha, 0.0);
            let (mut fixed_rejected, mut av_rejected) = (false, false);
            for _ in 0..looks {
                for _ in 0..per_look {
                    a.add(rng.normal());
                    b.add(rng.normal());
                }
                fixed_rejected |= z_test(&a, &b).is_some_and(|r| r.p_value.get() <= alpha);
                test.observe_means(&a, &b);
                av_rejected |= test.rejected();
            }
            fixed += u32::from(fixed_rejected);
            always_valid += u32::from(av_rejected);
        }
        let (fixed_rate, av_rate) = (f64::from(fixed) / simulations as f64, f64::from(always_valid) / simulations as f64);
        println!("A/A, {looks} looks, {simulations} runs: fixed-horizon z-test rejected {fixed_rate:.3}, mSPRT {av_rate:.3} (α = {alpha})");
        assert!(fixed_rate > 3.0 * alpha, "peeking should inflate the fixed-horizon rate: {fixed_rate}");
        assert!(av_rate <= alpha, "the always-valid test exceeded α: {av_rate}");
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn tests_give_probabilities_and_intervals_hold_their_estimates(
                a in prop::collection::vec(-100.0f64..100.0, 2..60),
                b in prop::collection::vec(-100.0f64..100.0, 2..60),
                k in 0u64..50, extra in 0u64..50, alpha in 0.001f64..0.3, tau2 in 1e-4f64..10.0,
            ) {
                let (ma, mb) = (moments::Moments::of(&a), moments::Moments::of(&b));
                if let Some(r) = two_sample::welch(&ma, &mb) {
                    prop_assert!((0.0..=1.0).contains(&r.p_value.get()));
                    prop_assert!(r.interval(alpha).contains(r.estimate));
                }
                if let Some(r) = two_sample::z_test(&ma, &mb) {
                    prop_assert!(r.interval(alpha).contains(r.estimate));
                }
                let mut t = msprt::Msprt::new(tau2, alpha, 0.0);
                if let Some(look) = t.observe_means(&ma, &mb) {
                    prop_assert!((0.0..=1.0).contains(&look.p_value.get()));
                    prop_assert!(look.interval.contains(look.estimate));
                }
                let counts = moments::Counts::new(k, k + extra + 1);
                let rate = counts.rate().unwrap();
                prop_assert!(binomial::wilson(counts, alpha).unwrap().contains(rate));
                prop_assert!(binomial::clopper_pearson(counts, alpha).unwrap().contains(rate));
                let p = binomial::conditional_test(moments::Counts::new(extra, 1000), moments::Counts::new(k, 1000)).get();
                prop_assert!((0.0..=1.0).contains(&p));
                if let Some((d, p)) = drift::kolmogorov_smirnov(&a, &b) {
                    prop_assert!((0.0..=1.0).contains(&d) && (0.0..=1.0).contains(&p.get()));
                }
            }
        }
    }
}
