//! Intervals and exact tests for rare events (error rates), where n·p < 10 makes normal
//! approximations unreliable.
//!
//! - Wilson score interval (Wilson 1927): the inversion of the score test; good coverage at small p.
//! - Clopper-Pearson (1934): the inversion of two one-sided binomial tests via Beta quantiles,
//!   [B(α/2; k, n−k+1), B(1−α/2; k+1, n−k)]; conservative, never below nominal coverage.
//! - Exact conditional test for two Poisson/binomial error counts: given k = x_A + x_B errors, under
//!   H₀ (equal rates) x_B ~ Binomial(k, n_B/(n_A+n_B)). The one-sided p-value P(X ≥ x_B) tests
//!   "the candidate errs more". Assumes rare, independent errors (the binomial conditioned on the
//!   total is exact for Poisson counts and a close approximation for binomial ones).

use statrs::distribution::{Beta, Binomial, ContinuousCDF, DiscreteCDF};

use super::{phi_inv, Interval, PValue};
use crate::stats::moments::Counts;

/// Wilson score interval for a proportion at confidence `1 − alpha`.
pub fn wilson(counts: Counts, alpha: f64) -> Option<Interval> {
    if counts.trials == 0 {
        return None;
    }
    let n = counts.trials as f64;
    let p = counts.successes as f64 / n;
    let z = phi_inv(1.0 - alpha / 2.0);
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    // At p̂ = 0 (or 1) the end is exactly 0 (or 1); rounding must not leave p̂ outside.
    let lower = if counts.successes == 0 { 0.0 } else { (centre - half).max(0.0) };
    let upper = if counts.successes == counts.trials { 1.0 } else { (centre + half).min(1.0) };
    Some(Interval::new(lower, upper))
}

/// Clopper-Pearson ("exact") interval for a proportion at confidence `1 − alpha`.
pub fn clopper_pearson(counts: Counts, alpha: f64) -> Option<Interval> {
    if counts.trials == 0 {
        return None;
    }
    let (k, n) = (counts.successes as f64, counts.trials as f64);
    let lower = if counts.successes == 0 { 0.0 } else { Beta::new(k, n - k + 1.0).ok()?.inverse_cdf(alpha / 2.0) };
    let upper = if counts.successes == counts.trials { 1.0 } else { Beta::new(k + 1.0, n - k).ok()?.inverse_cdf(1.0 - alpha / 2.0) };
    Some(Interval::new(lower, upper))
}

/// One-sided exact conditional test that the candidate's error rate exceeds the stable one's:
/// P(X ≥ x_candidate) for X ~ Binomial(x_stable + x_candidate, n_candidate / (n_stable + n_candidate)).
pub fn conditional_test(stable: Counts, candidate: Counts) -> PValue {
    let k = stable.successes + candidate.successes;
    let total = stable.trials + candidate.trials;
    if k == 0 || total == 0 || candidate.successes == 0 {
        return PValue::new(1.0);
    }
    let share = candidate.trials as f64 / total as f64;
    let binomial = Binomial::new(share, k).expect("a valid binomial");
    // P(X ≥ x) = 1 − P(X ≤ x − 1)
    PValue::new(binomial.sf(candidate.successes - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_md_reference_values() {
        // 3 errors in 1000, 95%: Wilson [0.00102078, 0.00878301]; Clopper-Pearson [0.00061910, 0.00874202].
        let c = Counts::new(3, 1000);
        let w = wilson(c, 0.05).unwrap();
        assert!((w.lower - 0.001_020_78).abs() < 5e-9 && (w.upper - 0.008_783_01).abs() < 5e-9, "{w:?}");
        let cp = clopper_pearson(c, 0.05).unwrap();
        assert!((cp.lower - 0.000_619_10).abs() < 5e-9 && (cp.upper - 0.008_742_02).abs() < 5e-9, "{cp:?}");
        // Canary 5 errors in 1000 vs stable 20 in 19000: P(X >= 5) = 0.0071649479.
        let p = conditional_test(Counts::new(20, 19_000), Counts::new(5, 1000));
        assert!((p.get() - 0.007_164_947_9).abs() < 5e-11, "{p:?}");
    }

    #[test]
    fn edges() {
        assert_eq!(clopper_pearson(Counts::new(0, 10), 0.05).unwrap().lower, 0.0);
        assert_eq!(clopper_pearson(Counts::new(10, 10), 0.05).unwrap().upper, 1.0);
        assert_eq!(wilson(Counts::default(), 0.05), None);
        assert_eq!(conditional_test(Counts::new(3, 100), Counts::new(0, 100)).get(), 1.0);
    }
}
