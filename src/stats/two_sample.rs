//! Fixed-horizon two-sample comparisons, A = stable (control), B = candidate: θ = μ_B − μ_A.
//!
//! - z-test for means: θ̂ / SE with SE² = s_A²/n_A + s_B²/n_B (large samples).
//! - Welch's t-test: the same statistic against Student's t with Welch-Satterthwaite degrees of
//!   freedom ν = SE⁴ / Σ (s²/n)²/(n − 1) (unequal variances, small samples; Welch 1947).
//! - Two-proportion z-test with the pooled rate under H₀: z = (p̂_B − p̂_A)/√(p̄(1−p̄)(1/n_A+1/n_B)).
//!
//! These p-values are valid for one look at a fixed sample size only; a canary checked repeatedly
//! needs the always-valid tests of [`super::msprt`] or the boundaries of
//! [`super::group_sequential`].

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, StudentsT};

use super::moments::{Counts, Moments};
use super::{phi_inv, two_sided_p, Interval, PValue};

/// A two-sample comparison.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Comparison {
    /// θ̂ = B − A.
    pub estimate: f64,
    pub standard_error: f64,
    pub statistic: f64,
    pub p_value: PValue,
    /// Degrees of freedom for t-tests.
    pub df: Option<f64>,
}

impl Comparison {
    /// The two-sided `1 − alpha` normal (or t) interval for θ.
    pub fn interval(&self, alpha: f64) -> Interval {
        let q = match self.df {
            Some(df) => StudentsT::new(0.0, 1.0, df).map(|t| t.inverse_cdf(1.0 - alpha / 2.0)).unwrap_or(f64::INFINITY),
            None => phi_inv(1.0 - alpha / 2.0),
        };
        Interval::around(self.estimate, q * self.standard_error)
    }
}

/// Large-sample z-test of μ_B − μ_A; `None` without two values per arm or with zero variance.
pub fn z_test(a: &Moments, b: &Moments) -> Option<Comparison> {
    let (se2, estimate) = (a.variance_of_mean()? + b.variance_of_mean()?, b.mean()? - a.mean()?);
    (se2 > 0.0).then(|| {
        let se = se2.sqrt();
        Comparison { estimate, standard_error: se, statistic: estimate / se, p_value: two_sided_p(estimate / se), df: None }
    })
}

/// Welch's t-test of μ_B − μ_A.
pub fn welch(a: &Moments, b: &Moments) -> Option<Comparison> {
    let (va, vb) = (a.variance_of_mean()?, b.variance_of_mean()?);
    let se2 = va + vb;
    if se2 <= 0.0 {
        return None;
    }
    let df = se2 * se2 / (va * va / (a.n as f64 - 1.0) + vb * vb / (b.n as f64 - 1.0));
    let estimate = b.mean()? - a.mean()?;
    let t = estimate / se2.sqrt();
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    Some(Comparison { estimate, standard_error: se2.sqrt(), statistic: t, p_value: PValue::new(2.0 * dist.sf(t.abs())), df: Some(df) })
}

/// Two-proportion z-test of p_B − p_A (pooled variance for the test, unpooled for the interval).
pub fn two_proportions(a: Counts, b: Counts) -> Option<Comparison> {
    let (pa, pb) = (a.rate()?, b.rate()?);
    let pooled = (a.successes + b.successes) as f64 / (a.trials + b.trials) as f64;
    let se0 = (pooled * (1.0 - pooled) * (1.0 / a.trials as f64 + 1.0 / b.trials as f64)).sqrt();
    if se0 == 0.0 {
        return None;
    }
    let se = (a.variance_of_rate()? + b.variance_of_rate()?).sqrt();
    let z = (pb - pa) / se0;
    Some(Comparison { estimate: pb - pa, standard_error: se, statistic: z, p_value: two_sided_p(z), df: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    const X: [f64; 10] = [12.1, 14.3, 11.8, 15.2, 13.9, 16.4, 14.8, 13.1, 15.9, 17.2];
    const Y: [f64; 10] = [11.2, 12.4, 10.9, 13.0, 12.2, 11.7, 13.5, 12.8, 11.5, 12.9];

    #[test]
    fn welch_matches_scipy() {
        // scipy.stats.ttest_ind(x, y, equal_var=False): t 3.598957301800891, p 0.0032605577047519585, df 12.940296095004733
        let r = welch(&Moments::of(&Y), &Moments::of(&X)).unwrap();
        assert!((r.statistic - 3.598_957_301_800_891).abs() < 1e-10);
        assert!((r.p_value.get() - 0.003_260_557_704_751_958_5).abs() < 1e-10);
        assert!((r.df.unwrap() - 12.940_296_095_004_733).abs() < 1e-9);
        assert!(r.interval(0.05).contains(r.estimate));
    }

    #[test]
    fn proportions_and_z() {
        // statsmodels proportions_ztest([130, 100], [1000, 1000]): z 2.0942..., p 0.03623...
        let r = two_proportions(Counts::new(100, 1000), Counts::new(130, 1000)).unwrap();
        let pooled: f64 = 0.115;
        let z = 0.03 / (pooled * (1.0 - pooled) * 0.002).sqrt();
        assert!((r.statistic - z).abs() < 1e-12);
        assert!((r.p_value.get() - 2.0 * (1.0 - crate::stats::phi(z))).abs() < 1e-12);
        let m = z_test(&Moments::of(&Y), &Moments::of(&X)).unwrap();
        assert!((m.statistic - 3.598_957_301_800_891).abs() < 1e-10, "same statistic as Welch");
        assert!(z_test(&Moments::of(&[1.0, 1.0]), &Moments::of(&[1.0, 1.0])).is_none());
    }
}
