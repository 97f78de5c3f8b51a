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
//! When that is not known in advance (a fault can add 20 points of errors to a 0.4% error rate),
//! an equally weighted average of the Λ of several τ² is used: an average of martingales with
//! fixed weights is again one, so Ville's inequality still applies, and the test keeps power from
//! small to large effects at the price of a factor K in evidence. Its confidence sequence is
//! {θ₀ : Λ(θ₀) < 1/α}, an interval around θ̂ found by bisection (with one τ² it is the closed form
//! above). A *one-sided* test of "θ is beyond θ₀ on one side" mixes over that side only (a
//! half-normal), Λ⁺ = 2Λ·Φ(s·(θ̂−θ₀)τ/√(V(V+τ²))) with s the side: evidence that θ lies on the
//! other side never accumulates, so an early look that was clearly fine cannot mask a later harm.
//! The *tuned* mixing sets τ² = ρ²·s² at every look, s² = V·n the per-observation
//! variance and ρ from a tuning sample size N as GrowthBook does (see
//! [`super::confidence_sequence`]); the evidence then depends only on z = θ̂/√V and n, so it is
//! unaffected by the metric's units or by a fault changing its variance, and is valid
//! asymptotically (Waudby-Smith et al. 2021). Assumes independent observations and a normal sampling distribution of θ̂; for
//! proportions V is p̂_A q̂_A/n_A + p̂_B q̂_B/n_B. Each update costs O(K) (O(K log) for the interval).

use serde::Serialize;

use super::confidence_sequence::rho;
use super::moments::{Counts, Moments};
use super::{Interval, PValue};

/// Mixture components a test may average (`decision.tuning` sizes, or fixed τ²).
pub const MAX_COMPONENTS: usize = 16;

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

/// How the mixing variances are set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Mixing {
    /// Fixed τ², equally weighted.
    Fixed(Vec<f64>),
    /// τ² = ρ(α, N)²·V·n for each tuning size N, equally weighted.
    Tuned(Vec<f64>),
}

/// The state of one always-valid test across looks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Msprt {
    pub mixing: Mixing,
    /// ρ² of each tuning size (tuned mixing).
    #[serde(skip)]
    rho2: Vec<f64>,
    pub alpha: f64,
    pub theta0: f64,
    /// `Some(s)`: one-sided, testing s·(θ − θ₀) > 0.
    pub side: Option<f64>,
    p: f64,
    interval: Option<Interval>,
    pub looks: u32,
}

impl Msprt {
    pub fn new(tau2: f64, alpha: f64, theta0: f64) -> Self {
        Self::mixture(vec![tau2], alpha, theta0)
    }

    /// A test averaging the likelihood ratios of several fixed mixture variances.
    pub fn mixture(tau2: Vec<f64>, alpha: f64, theta0: f64) -> Self {
        assert!(
            !tau2.is_empty() && tau2.len() <= MAX_COMPONENTS && tau2.iter().all(|t| *t > 0.0) && (0.0..1.0).contains(&alpha),
            "1 to 16 tau2 > 0 and alpha in (0, 1)"
        );
        Self { mixing: Mixing::Fixed(tau2), rho2: Vec::new(), alpha, theta0, side: None, p: 1.0, interval: None, looks: 0 }
    }

    /// A scale-free test: one GrowthBook mixture per tuning sample size, equally weighted.
    pub fn tuned(tuning: Vec<f64>, alpha: f64, theta0: f64) -> Self {
        assert!(
            !tuning.is_empty() && tuning.len() <= MAX_COMPONENTS && tuning.iter().all(|n| *n > 0.0) && (0.0..1.0).contains(&alpha),
            "1 to 16 tuning sizes > 0 and alpha in (0, 1)"
        );
        let rho2 = tuning.iter().map(|size| rho(alpha, *size).powi(2)).collect();
        Self { mixing: Mixing::Tuned(tuning), rho2, alpha, theta0, side: None, p: 1.0, interval: None, looks: 0 }
    }

    /// The same test made one-sided: evidence only for `side`·(θ − θ₀) > 0.
    pub fn one_sided(mut self, side: f64) -> Self {
        self.side = Some(side.signum());
        self
    }

    /// τ²/V of each mixture component at a look with variance `v` from `n` observations, into `out`
    /// (at most [`MAX_COMPONENTS`]); returns how many.
    fn ratios(&self, v: f64, n: f64, out: &mut [f64; MAX_COMPONENTS]) -> usize {
        match &self.mixing {
            Mixing::Fixed(t) => {
                for (o, t) in out.iter_mut().zip(t) {
                    *o = t / v;
                }
                t.len()
            }
            Mixing::Tuned(_) => {
                for (o, r2) in out.iter_mut().zip(&self.rho2) {
                    *o = r2 * n;
                }
                self.rho2.len()
            }
        }
    }

    /// ln of the averaged Λ at z = (θ̂ − θ₀)/√V for components with τ²/V = `ratios` (one-sided
    /// towards `side` when given). Per component, ln Λ = −½·ln(1 + r) + r/(1 + r)·z²/2.
    fn log_lambda_sided(ratios: &[f64], z: f64, side: Option<f64>) -> f64 {
        let mut logs = [0.0; MAX_COMPONENTS];
        for (l, r) in logs.iter_mut().zip(ratios) {
            let b = r / (1.0 + r);
            let two_sided = -0.5 * r.ln_1p() + b * z * z / 2.0;
            *l = match side {
                None => two_sided,
                Some(s) => std::f64::consts::LN_2 + two_sided + ln_phi(s * z * b.sqrt()),
            };
        }
        let logs = &logs[..ratios.len()];
        let top = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        top + (logs.iter().map(|l| (l - top).exp()).sum::<f64>() / logs.len() as f64).ln()
    }

    /// ln of the averaged two-sided Λ at distance `d` from θ₀ with variance `v` and mixture variances `tau2`.
    #[cfg(test)]
    fn log_lambda(tau2: &[f64], d: f64, v: f64) -> f64 {
        let ratios: Vec<f64> = tau2.iter().map(|t| t / v).collect();
        Self::log_lambda_sided(&ratios, d / v.sqrt(), None)
    }

    /// Half-width h of {θ₀ : Λ(θ₀) < 1/α} around θ̂ for mixture variances `tau2`.
    #[cfg(test)]
    fn half_width(tau2: &[f64], v: f64, alpha: f64) -> f64 {
        if let [t] = tau2 {
            return half_width(v, *t, alpha);
        }
        let ratios: Vec<f64> = tau2.iter().map(|t| t / v).collect();
        (2.0 * Self::half_width_u(&ratios, alpha) * v).sqrt()
    }

    /// u = z²/2 at the confidence sequence's end: the root of g(u) = Σ aₖ·exp(bₖu) − K/α with
    /// aₖ = (1 + rₖ)^−½, bₖ = rₖ/(1 + rₖ). g is convex and increasing, and each component alone
    /// reaches K/α at uₖ = ln(K/(α·aₖ))/bₖ, so the root is at most min uₖ; Newton's method from
    /// there falls monotonically onto it (and no exponent exceeds ln(K/(α·aₖ))).
    fn half_width_u(ratios: &[f64], alpha: f64) -> f64 {
        let k = ratios.len() as f64;
        let target = k / alpha;
        if let [r] = ratios {
            return ((1.0 / alpha).ln() + 0.5 * r.ln_1p()) * (1.0 + r) / r;
        }
        let mut u = ratios.iter().map(|r| ((k / alpha).ln() + 0.5 * r.ln_1p()) * (1.0 + r) / r).fold(f64::INFINITY, f64::min);
        for _ in 0..100 {
            let (mut g, mut slope) = (-target, 0.0);
            for r in ratios {
                let b = r / (1.0 + r);
                let term = (b * u - 0.5 * r.ln_1p()).exp();
                g += term;
                slope += b * term;
            }
            if g <= 0.0 || slope <= 0.0 {
                break;
            }
            let step = g / slope;
            u -= step;
            if step <= u.abs() * 1e-15 {
                break;
            }
        }
        u
    }

    /// Adds a look at estimate `theta` with variance `v` (`None` when `v` is not positive).
    pub fn update(&mut self, theta: f64, v: f64) -> Option<Look> {
        self.observe(theta, v, f64::NAN)
    }

    /// Adds a look at estimate `theta` with variance `v` from `n` observations in all (used by
    /// tuned mixing).
    pub fn observe(&mut self, theta: f64, v: f64, n: f64) -> Option<Look> {
        if !(v > 0.0) || !theta.is_finite() || (matches!(self.mixing, Mixing::Tuned(_)) && !(n > 0.0)) {
            return None;
        }
        self.looks += 1;
        let mut buffer = [0.0; MAX_COMPONENTS];
        let k = self.ratios(v, n, &mut buffer);
        let ratios = &buffer[..k];
        let log_lambda = Self::log_lambda_sided(ratios, (theta - self.theta0) / v.sqrt(), self.side);
        self.p = self.p.min((-log_lambda).exp().min(1.0));
        // A one-sided test answers "beyond θ₀?" only; its interval is not needed (nor computed).
        let half = if self.side.is_some() { f64::INFINITY } else { (2.0 * Self::half_width_u(ratios, self.alpha) * v).sqrt() };
        let now = Interval::around(theta, half);
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

/// ln Φ(x), accurate far in the lower tail.
fn ln_phi(x: f64) -> f64 {
    if x > -30.0 {
        super::phi(x).ln()
    } else {
        // Mills ratio: Φ(x) ≈ φ(x)/|x| for very negative x.
        -0.5 * x * x - (-x).ln() - 0.5 * (2.0 * std::f64::consts::PI).ln()
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
    fn a_mixture_keeps_power_across_effect_sizes_and_its_interval_matches_its_p_value() {
        // V = 1e-4: a tiny τ alone has no power against θ̂ = 0.07; the mixture has.
        let mut tiny = Msprt::new(1e-8, 0.05, 0.0);
        let mut mixed = Msprt::mixture(vec![1e-8, 1e-4, 1e-2], 0.05, 0.0);
        assert!(tiny.update(0.07, 1e-4).unwrap().p_value.get() > 0.9);
        let look = mixed.update(0.07, 1e-4).unwrap();
        assert!(look.p_value.get() < 1e-6);
        assert!(!look.interval.contains(0.0));
        // At the interval's end Λ is exactly 1/α.
        let tau2 = [1e-4, 1e-2];
        let h = Msprt::half_width(&tau2, 4e-4, 0.05);
        assert!((Msprt::log_lambda(&tau2, h, 4e-4) - 20f64.ln()).abs() < 1e-9);
        let look = Msprt::mixture(tau2.to_vec(), 0.05, 0.0).update(h * 0.999, 4e-4).unwrap();
        assert!(look.p_value.get() > 0.05 && look.interval.contains(0.0));
        // One component reproduces the closed form.
        assert!((Msprt::half_width(&[0.01], 0.004, 0.05) - half_width(0.004, 0.01, 0.05)).abs() < 1e-15);
    }

    #[test]
    fn one_sided_evidence_only_counts_towards_its_side() {
        let harmful = |theta: f64| Msprt::tuned(vec![2000.0], 0.05, 0.0).one_sided(1.0).observe(theta, 1e-4, 4000.0).unwrap().p_value.get();
        let both = |theta: f64| Msprt::tuned(vec![2000.0], 0.05, 0.0).observe(theta, 1e-4, 4000.0).unwrap().p_value.get();
        assert!(harmful(0.05) < both(0.05), "more power on its side");
        assert!(harmful(-0.05) > 0.99, "no evidence from the other side: {}", harmful(-0.05));
        assert!(both(-0.05) < 1e-3);
        // A clearly fine early look does not hide a later harm.
        let mut t = Msprt::tuned(vec![2000.0], 0.05, 0.0).one_sided(1.0);
        t.observe(-0.1, 1e-4, 1000.0);
        assert!(t.observe(0.06, 1e-4, 2000.0).unwrap().p_value.get() < 0.05);
        assert!(ln_phi(-40.0) < -800.0 && (ln_phi(0.0) - 0.5f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn tuned_mixing_is_growthbooks_sequence_and_scale_free() {
        // One tuning size reproduces the asymptotic confidence sequence of STATS.md:
        // arms of 2500 with variance 1, θ̂ = 0.08: CI [−0.005849, 0.165849], p = 0.085664.
        let mut t = Msprt::tuned(vec![5000.0], 0.05, 0.0);
        let look = t.observe(0.08, 2.0 / 2500.0, 5000.0).unwrap();
        assert!((look.interval.lower + 0.005_849).abs() < 5e-7 && (look.interval.upper - 0.165_849).abs() < 5e-7);
        assert!((look.p_value.get() - 0.085_664).abs() < 5e-7);
        // Rescaling the metric rescales the interval and leaves the p-value alone.
        let mut scaled = Msprt::tuned(vec![200.0, 20_000.0], 0.05, 0.0);
        let mut plain = Msprt::tuned(vec![200.0, 20_000.0], 0.05, 0.0);
        let (a, b) = (plain.observe(0.08, 8e-4, 5000.0).unwrap(), scaled.observe(80.0, 800.0, 5000.0).unwrap());
        assert!((a.p_value.get() - b.p_value.get()).abs() < 1e-12);
        assert!((b.interval.upper / a.interval.upper - 1000.0).abs() < 1e-6);
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
