//! GrowthBook's asymptotic confidence sequence (Waudby-Smith et al., "Time-uniform central limit
//! theory and asymptotic confidence sequences", arXiv 2103.06476; gbstats).
//!
//! It is the normal-mixture test of [`super::msprt`] with the mixture variance tied to the data:
//! τ² = ρ²·s², where n = n_A + n_B, s² = V·n (the per-observation variance) and
//!   ρ = √((−2 ln α + ln(−2 ln α + 1)) / N),
//! with N the sample size at which the sequence should be tightest (default 5000). Its half-width
//! is s·√(2(nρ² + 1)·ln(√(nρ² + 1)/α) / (nρ)²), valid uniformly over n. Same assumptions as the
//! mSPRT: independent observations, asymptotically normal estimate.

use serde::Serialize;

use super::msprt::log_likelihood_ratio;
use super::{Interval, PValue};

/// GrowthBook's default tuning sample size.
pub const DEFAULT_TUNING: f64 = 5000.0;

/// ρ for level α and tuning sample size N.
pub fn rho(alpha: f64, tuning: f64) -> f64 {
    let l = -2.0 * alpha.ln();
    ((l + (l + 1.0).ln()) / tuning).sqrt()
}

/// Half-width at n observations with per-observation variance `s2`.
pub fn half_width(s2: f64, n: f64, rho: f64, alpha: f64) -> f64 {
    let a = n * rho * rho + 1.0;
    s2.sqrt() * (2.0 * a * (a.sqrt() / alpha).ln() / (n * rho).powi(2)).sqrt()
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sequence {
    pub interval: Interval,
    pub e_value: f64,
    /// min(1, 1/E): valid at this look; take the running minimum across looks.
    pub p_value: PValue,
}

/// The confidence sequence for an estimate with variance `v` from `n` observations in all.
pub fn asymptotic(estimate: f64, v: f64, n: f64, alpha: f64, tuning: f64) -> Option<Sequence> {
    if !(v > 0.0 && n > 0.0) {
        return None;
    }
    let r = rho(alpha, tuning);
    let s2 = v * n;
    let e = log_likelihood_ratio(estimate, 0.0, v, r * r * s2).exp();
    Some(Sequence { interval: Interval::around(estimate, half_width(s2, n, r, alpha)), e_value: e, p_value: PValue::new(1.0 / e) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_md_reference_values() {
        // α = 0.05, N = 5000: ρ = 0.0398400668; half-widths for s² = 1 at n = 100, 1000, 5000.
        let r = rho(0.05, DEFAULT_TUNING);
        assert!((r - 0.039_840_066_8).abs() < 5e-11);
        for (n, want) in [(100.0, 0.669_439), (1000.0, 0.106_375), (5000.0, 0.042_924)] {
            assert!((half_width(1.0, n, r, 0.05) - want).abs() < 5e-7, "n = {n}");
        }
        // Two arms of 2500 with variance 1, θ̂ = 0.08: CI [−0.005849, 0.165849], E = 11.673572, p = 0.085664.
        let s = asymptotic(0.08, 1.0 / 2500.0 + 1.0 / 2500.0, 5000.0, 0.05, DEFAULT_TUNING).unwrap();
        assert!((s.interval.lower + 0.005_849).abs() < 5e-7 && (s.interval.upper - 0.165_849).abs() < 5e-7);
        assert!((s.e_value - 11.673_572).abs() < 5e-7);
        assert!((s.p_value.get() - 0.085_664).abs() < 5e-7);
    }
}
