//! Sample size, power and minimum detectable effect for two-sided tests at level α with power 1 − β.
//!
//! - Proportions, per arm (Fleiss, pooled variance under H₀, no continuity correction):
//!   n = [z_{1−α/2}·√(2p̄q̄) + z_{1−β}·√(p₁q₁ + p₂q₂)]² / (p₂ − p₁)².
//! - Means, per arm: n = (z_{1−α/2} + z_{1−β})²(σ₁² + σ₂²)/Δ².
//! - Power of the Wald test for proportions with n per arm (both rejection tails):
//!   Φ(|Δ|√n/√(p₁q₁+p₂q₂) − z_{1−α/2}) + Φ(−|Δ|√n/√(p₁q₁+p₂q₂) − z_{1−α/2}).
//! - Minimum detectable effect now: MDE = (z_{1−α/2} + z_{1−β})·SE_now. Because SE shrinks as
//!   1/√n, the sample needed for an effect Δ is about n_now·(MDE_now/Δ)².

use super::{phi, phi_inv};

/// Per-arm sample size to detect p₁ → p₂.
pub fn sample_size_proportions(p1: f64, p2: f64, alpha: f64, power: f64) -> u64 {
    let (za, zb) = (phi_inv(1.0 - alpha / 2.0), phi_inv(power));
    let pbar = (p1 + p2) / 2.0;
    let numerator = za * (2.0 * pbar * (1.0 - pbar)).sqrt() + zb * (p1 * (1.0 - p1) + p2 * (1.0 - p2)).sqrt();
    (numerator * numerator / ((p2 - p1) * (p2 - p1))).ceil() as u64
}

/// Per-arm sample size to detect a difference Δ in means.
pub fn sample_size_means(sigma1: f64, sigma2: f64, delta: f64, alpha: f64, power: f64) -> u64 {
    let z = phi_inv(1.0 - alpha / 2.0) + phi_inv(power);
    (z * z * (sigma1 * sigma1 + sigma2 * sigma2) / (delta * delta)).ceil() as u64
}

/// Power to detect p₁ → p₂ with `n` per arm.
pub fn power_proportions(p1: f64, p2: f64, n: f64, alpha: f64) -> f64 {
    let z = phi_inv(1.0 - alpha / 2.0);
    let shift = (p2 - p1).abs() * n.sqrt() / (p1 * (1.0 - p1) + p2 * (1.0 - p2)).sqrt();
    phi(shift - z) + phi(-shift - z)
}

/// The smallest true effect detectable now with the given power, from the current standard error.
pub fn minimum_detectable_effect(standard_error: f64, alpha: f64, power: f64) -> f64 {
    (phi_inv(1.0 - alpha / 2.0) + phi_inv(power)) * standard_error
}

/// Sample size at which the MDE shrinks to `target`, from the current sample and MDE.
pub fn sample_needed(n_now: f64, mde_now: f64, target: f64) -> f64 {
    n_now * (mde_now / target).powi(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_md_reference_values() {
        // p 0.02 vs 0.025, α 0.05 two-sided, power 0.8: 13809 per arm. Means σ = 1, Δ = 0.1: 1570.
        assert_eq!(sample_size_proportions(0.02, 0.025, 0.05, 0.8), 13_809);
        assert_eq!(sample_size_means(1.0, 1.0, 0.1, 0.05, 0.8), 1_570);
        // Power with 2500 per arm for 0.02 vs 0.025: 0.222114.
        assert!((power_proportions(0.02, 0.025, 2500.0, 0.05) - 0.222_114).abs() < 5e-7);
    }

    #[test]
    fn mde_and_sample_needed_are_consistent() {
        // σ = 1 per arm, n = 1570: SE = √(2/1570); the MDE is then Δ = 0.1.
        let se = (2.0f64 / 1570.0).sqrt();
        let mde = minimum_detectable_effect(se, 0.05, 0.8);
        assert!((mde - 0.1).abs() < 1e-3);
        assert!((sample_needed(1570.0, mde, mde / 2.0) - 4.0 * 1570.0).abs() < 1e-9);
    }
}
