//! Distances between two score distributions (reference = stable, current = candidate).
//!
//! At replay sizes every p-value test rejects, so drift is gated on distances (Evidently's
//! defaults, `evidently.calculations.stattests`):
//! - PSI = Σ (rᵢ − cᵢ)·ln(rᵢ/cᵢ) over shared bins; empty bins are filled with 1e-4, or with
//!   min-non-zero/1e6 when that minimum is at most 1e-4, without renormalising.
//! - Jensen-Shannon distance: √JS-divergence with natural logarithms, in [0, √ln 2 ≈ 0.8326], on
//!   the same bins without the zero fill (scipy's `distance.jensenshannon`).
//! - Normed Wasserstein: W₁(reference, current) / std(reference) (population std).
//!
//! - Two-sample Kolmogorov-Smirnov: D = sup |F_r − F_c|, with the asymptotic p-value
//!   Q(√(nm/(n+m))·D), Q(λ) = 2Σ_{k≥1}(−1)^{k−1}e^{−2k²λ²} (scipy's `kstwobign`). At replay sizes it
//!   rejects for negligible differences, so it is reported, not gated on.
//!
//! Bins follow Evidently's numeric binning: `n` equal-width bins over the combined range of both
//! samples (numpy's `histogram_bin_edges`; the last bin is closed), 30 by default.

/// Evidently's default bin count for PSI and Jensen-Shannon.
pub const DEFAULT_BINS: usize = 30;

/// Shares of each sample per bin, on `n` equal-width bins over the combined range.
pub fn binned_shares(reference: &[f64], current: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let all = reference.iter().chain(current);
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    // numpy widens a degenerate range to [v − 0.5, v + 0.5].
    let (lo, hi) = if lo == hi { (lo - 0.5, hi + 0.5) } else { (lo, hi) };
    let width = (hi - lo) / n as f64;
    let shares = |values: &[f64]| {
        let mut counts = vec![0.0; n];
        for &v in values {
            let bin = (((v - lo) / width) as usize).min(n - 1);
            counts[bin] += 1.0;
        }
        counts.iter().map(|c| c / values.len() as f64).collect::<Vec<f64>>()
    };
    (shares(reference), shares(current))
}

/// Evidently's zero fill: empty shares become 1e-4, or min-non-zero/1e6 when that minimum ≤ 1e-4.
pub fn fill_zeros(shares: &mut [f64]) {
    let min = shares.iter().copied().filter(|&s| s != 0.0).fold(f64::INFINITY, f64::min);
    if !min.is_finite() {
        return;
    }
    let fill = if min <= 1e-4 { min / 1e6 } else { 1e-4 };
    for s in shares.iter_mut().filter(|s| **s == 0.0) {
        *s = fill;
    }
}

/// PSI of already binned shares (after any zero fill).
pub fn psi_of_shares(reference: &[f64], current: &[f64]) -> f64 {
    reference.iter().zip(current).map(|(&r, &c)| (r - c) * (r / c).ln()).sum()
}

/// PSI between two samples with Evidently's binning and zero fill; `None` when either is empty.
pub fn psi(reference: &[f64], current: &[f64], bins: usize) -> Option<f64> {
    if reference.is_empty() || current.is_empty() {
        return None;
    }
    let (mut r, mut c) = binned_shares(reference, current, bins);
    fill_zeros(&mut r);
    fill_zeros(&mut c);
    Some(psi_of_shares(&r, &c))
}

/// Jensen-Shannon distance (natural log) of two share vectors, normalised to sum to one.
pub fn js_of_shares(p: &[f64], q: &[f64]) -> f64 {
    let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
    let kl = |a: f64, m: f64| if a > 0.0 { a * (a / m).ln() } else { 0.0 };
    let divergence: f64 = p
        .iter()
        .zip(q)
        .map(|(&a, &b)| {
            let (a, b) = (a / sp, b / sq);
            let m = (a + b) / 2.0;
            (kl(a, m) + kl(b, m)) / 2.0
        })
        .sum();
    divergence.max(0.0).sqrt()
}

/// Jensen-Shannon distance between two samples on shared bins; `None` when either is empty.
pub fn jensen_shannon(reference: &[f64], current: &[f64], bins: usize) -> Option<f64> {
    if reference.is_empty() || current.is_empty() {
        return None;
    }
    let (r, c) = binned_shares(reference, current, bins);
    Some(js_of_shares(&r, &c))
}

/// W₁ distance between two samples divided by the reference's population standard deviation;
/// `None` when either is empty or the reference is constant.
pub fn wasserstein_normed(reference: &[f64], current: &[f64]) -> Option<f64> {
    if reference.is_empty() || current.is_empty() {
        return None;
    }
    let n = reference.len() as f64;
    let mean = reference.iter().sum::<f64>() / n;
    let std = (reference.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt();
    if std == 0.0 {
        return None;
    }
    Some(wasserstein(reference, current) / std)
}

/// W₁ = ∫ |F_r(x) − F_c(x)| dx between the empirical distributions.
pub fn wasserstein(a: &[f64], b: &[f64]) -> f64 {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0, 0);
    let mut x = a[0].min(b[0]);
    let mut total = 0.0;
    while i < a.len() || j < b.len() {
        let next = match (a.get(i), b.get(j)) {
            (Some(&u), Some(&v)) => u.min(v),
            (Some(&u), None) => u,
            (None, Some(&v)) => v,
            (None, None) => unreachable!(),
        };
        total += (i as f64 / na - j as f64 / nb).abs() * (next - x);
        x = next;
        while i < a.len() && a[i] == x {
            i += 1;
        }
        while j < b.len() && b[j] == x {
            j += 1;
        }
    }
    total
}

/// Two-sample Kolmogorov-Smirnov statistic and asymptotic p-value; `None` when either is empty.
pub fn kolmogorov_smirnov(reference: &[f64], current: &[f64]) -> Option<(f64, super::PValue)> {
    if reference.is_empty() || current.is_empty() {
        return None;
    }
    let mut a = reference.to_vec();
    let mut b = current.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut d) = (0, 0, 0.0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] == x {
            i += 1;
        }
        while j < b.len() && b[j] == x {
            j += 1;
        }
        d = d.max((i as f64 / na - j as f64 / nb).abs());
    }
    let lambda = (na * nb / (na + nb)).sqrt() * d;
    Some((d, super::PValue::new(kolmogorov_q(lambda))))
}

/// Q(λ) = P(K > λ) for the Kolmogorov distribution.
fn kolmogorov_q(lambda: f64) -> f64 {
    if lambda < 0.2 {
        return 1.0;
    }
    (1..=100)
        .map(|k| {
            let k = k as f64;
            2.0 * if k as u64 % 2 == 1 { 1.0 } else { -1.0 } * (-2.0 * k * k * lambda * lambda).exp()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_and_js_reference_values() {
        // STATS.md: ref [.1,.2,.3,.4], cur [.15,.25,.25,.35]: PSI 0.04722308, JS 0.07668498.
        let (r, c) = ([0.1, 0.2, 0.3, 0.4], [0.15, 0.25, 0.25, 0.35]);
        assert!((psi_of_shares(&r, &c) - 0.047_223_08).abs() < 5e-9);
        assert!((js_of_shares(&r, &c) - 0.076_684_98).abs() < 5e-9);
        // Counts ref [50,30,20,0], cur [40,30,20,10] with Evidently's zero fill: PSI 0.71239911.
        let mut r = [0.5, 0.3, 0.2, 0.0];
        let mut c = [0.4, 0.3, 0.2, 0.1];
        fill_zeros(&mut r);
        fill_zeros(&mut c);
        assert!((psi_of_shares(&r, &c) - 0.712_399_11).abs() < 5e-9);
    }

    #[test]
    fn wasserstein_matches_scipy() {
        // scipy.stats.wasserstein_distance(r, c) / np.std(r) = 0.37067286653293074
        let r = [0.1, 0.2, 0.2, 0.3, 0.9, 0.5, 0.45];
        let c = [0.15, 0.25, 0.3, 0.6, 0.7];
        assert!((wasserstein_normed(&r, &c).unwrap() - 0.370_672_866_532_930_74).abs() < 1e-12);
        assert_eq!(wasserstein(&r, &r), 0.0);
    }

    #[test]
    fn kolmogorov_smirnov_matches_scipy() {
        // ks_2samp statistics 0.7 and 0.5142857142857142; kstwobign.sf(√en·D) 0.014893159992088918, 0.4233642794358531.
        let x = [12.1, 14.3, 11.8, 15.2, 13.9, 16.4, 14.8, 13.1, 15.9, 17.2];
        let y = [11.2, 12.4, 10.9, 13.0, 12.2, 11.7, 13.5, 12.8, 11.5, 12.9];
        let (d, p) = kolmogorov_smirnov(&x, &y).unwrap();
        assert!((d - 0.7).abs() < 1e-12 && (p.get() - 0.014_893_159_992_088_918).abs() < 1e-12);
        let (d, p) = kolmogorov_smirnov(&[0.1, 0.4, 0.35, 0.8, 0.9, 0.2, 0.25], &[0.3, 0.5, 0.6, 0.7, 0.75]).unwrap();
        assert!((d - 0.514_285_714_285_714_2).abs() < 1e-12 && (p.get() - 0.423_364_279_435_853_1).abs() < 1e-12);
    }

    #[test]
    fn identical_samples_have_no_drift() {
        let x: Vec<f64> = (0..100).map(|i| (i as f64 * 0.37).sin()).collect();
        assert!(psi(&x, &x, DEFAULT_BINS).unwrap().abs() < 1e-12);
        assert!(jensen_shannon(&x, &x, DEFAULT_BINS).unwrap() < 1e-7);
        assert_eq!(psi(&[], &x, 10), None);
    }
}
