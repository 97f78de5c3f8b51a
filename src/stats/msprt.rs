//! Always-valid inference by the mixture sequential probability ratio test (mSPRT) with a normal
//! mixture (Johari, Pekelis, Walsh, "Always valid inference", arXiv 1512.04922).
//!
//! With θ̂ the current estimate of θ = μ_B − μ_A, V = SE² its variance and a N(θ₀, τ²) mixing
//! distribution over alternatives, the likelihood ratio against H₀: θ = θ₀ is
//!   Λ = √(V/(V+τ²)) · exp(τ²(θ̂−θ₀)² / (2V(V+τ²))),
//! a nonnegative supermartingale under H₀ (asymptotically, by the CLT), so by Ville's inequality
//! P(sup Λ ≥ 1/α) ≤ α. The always-valid p-value is the running minimum pₙ = min(pₙ₋₁, 1/Λₙ),
//! p₀ = 1, and the confidence sequence is the running intersection of
//!   θ̂ ± √(V(V+τ²)/τ² · (2 ln(1/α) + ln((V+τ²)/V))).
//! Both stay valid however often and whenever the data are looked at, which is what repeated
//! canary checks need. τ² sets where power is concentrated: near the effect sizes that matter.
//! Assumes independent observations and a normal sampling distribution of θ̂; for proportions V is
//! p̂_A q̂_A/n_A + p̂_B q̂_B/n_B. Each update costs O(1).

use serde::Serialize;

use super::moments::{Counts, Moments};
use super::{Interval, PValue};

/// ln Λ for estimate `theta` against `theta0`, with variance `v` and mixture variance `tau2`.
pub fn log_likelihood_ratio(theta: f64, theta0: f64, v: f64, tau2: f64) -> f64 {
    let d = theta - theta0;
    0.5 * (v / (v + tau2)).ln() + tau2 * d * d / (2.0 * v * (v + tau2))
}

/// Half-width of the (single-look) confidence-sequence interval.
pub fn half_width(v: f64, tau2: f64, alpha: f64) -> f64 {
    (v * (v + tau2) / tau2 * (2.0 * (1.0 / alpha).ln() + ((v + tau2) / v).ln())).sqrt()
}

/// One look's result.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Look {
    pub estimate: f64,
    pub variance: f64,
    /// Λ at this look.
    pub likelihood_ratio: f64,
    /// Always-valid p-value (running minimum over looks).
    pub p_value: PValue,
    /// Confidence sequence (running intersection over looks).
    pub interval: Interval,
}

/// The state of one always-valid test across looks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Msprt {
    pub tau2: f64,
    pub alpha: f64,
    pub theta0: f64,
    p: f64,
    interval: Option<Interval>,
    pub looks: u32,
}

impl Msprt {
    pub fn new(tau2: f64, alpha: f64, theta0: f64) -> Self {
        assert!(tau2 > 0.0 && (0.0..1.0).contains(&alpha), "tau2 > 0 and alpha in (0, 1)");
        Self { tau2, alpha, theta0, p: 1.0, interval: None, looks: 0 }
    }

    /// Adds a look at estimate `theta` with variance `v` (`None` when `v` is not positive).
    pub fn update(&mut self, theta: f64, v: f64) -> Option<Look> {
        if !(v > 0.0) || !theta.is_finite() {
            return None;
        }
        self.looks += 1;
        let log_lambda = log_likelihood_ratio(theta, self.theta0, v, self.tau2);
        self.p = self.p.min((-log_lambda).exp().min(1.0));
        let now = Interval::around(theta, half_width(v, self.tau2, self.alpha));
        // An empty intersection can only happen with probability ≤ α; keep the latest interval then.
        self.interval = Some(self.interval.and_then(|i| i.intersect(&now)).unwrap_or(now));
        Some(Look {
            estimate: theta,
            variance: v,
            likelihood_ratio: log_lambda.exp(),
            p_value: PValue::new(self.p),
            interval: self.interval.expect("set above"),
        })
    }

    /// A look at the difference of means B − A.
    pub fn observe_means(&mut self, a: &Moments, b: &Moments) -> Option<Look> {
        self.update(b.mean()? - a.mean()?, a.variance_of_mean()? + b.variance_of_mean()?)
    }

    /// A look at the difference of proportions B − A.
    pub fn observe_proportions(&mut self, a: Counts, b: Counts) -> Option<Look> {
        self.update(b.rate()? - a.rate()?, a.variance_of_rate()? + b.variance_of_rate()?)
    }

    pub fn p_value(&self) -> PValue {
        PValue::new(self.p)
    }

    pub fn rejected(&self) -> bool {
        self.p <= self.alpha
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_md_reference_values() {
        // n = 500 per arm, σ² = 1, θ̂ = 0.15, τ² = 0.01: V = 0.004, Λ = 3.98504, p = 0.250939,
        // 95% CS [−0.051414, 0.351414].
        let mut t = Msprt::new(0.01, 0.05, 0.0);
        let look = t.update(0.15, 0.004).unwrap();
        assert!((look.likelihood_ratio - 3.985_04).abs() < 5e-6);
        assert!((look.p_value.get() - 0.250_939).abs() < 5e-7);
        assert!((look.interval.lower + 0.051_414).abs() < 5e-7 && (look.interval.upper - 0.351_414).abs() < 5e-7);
        // Proportions 0.10 vs 0.13, n = 1000 per arm, τ² = 4e−4: V = 2.031e−4, Λ = 2.52268, p = 0.396405.
        let mut t = Msprt::new(4e-4, 0.05, 0.0);
        let look = t.observe_proportions(Counts::new(100, 1000), Counts::new(130, 1000)).unwrap();
        assert!((look.variance - 2.031e-4).abs() < 1e-12);
        assert!((look.likelihood_ratio - 2.522_68).abs() < 5e-6);
        assert!((look.p_value.get() - 0.396_405).abs() < 5e-7);
    }

    #[test]
    fn p_values_only_fall_and_intervals_only_shrink() {
        let mut t = Msprt::new(0.01, 0.05, 0.0);
        let a = t.update(0.3, 0.004).unwrap();
        let b = t.update(0.0, 0.002).unwrap();
        assert_eq!(b.p_value, a.p_value);
        assert!(b.interval.lower >= a.interval.lower && b.interval.upper <= a.interval.upper);
        assert!(t.update(0.1, 0.0).is_none());
    }
}
