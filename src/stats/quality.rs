//! Model quality against labels: ROC AUC, log loss, Brier score, accuracy, and for regression
//! models MAE and RMSE.
//!
//! AUC is the Mann-Whitney statistic with average ranks for tied scores, O(n log n):
//! AUC = (R₊ − n₊(n₊+1)/2) / (n₊ n₋), equal to scikit-learn's `roc_auc_score`. Log loss clips
//! probabilities to [ε, 1 − ε] with ε the f64 machine epsilon, as scikit-learn ≥ 1.5 does.
//! Accuracy calls a row positive when its score is at least the threshold. Labels are 0/1 for the
//! classification metrics; rows are paired (label, score) with no missing values.
//!
//! Paired comparisons of two models on the same rows (offline, both score every request):
//! - DeLong, DeLong & Clarke-Pearson (1988) test of AUC_A − AUC_B with the structural components
//!   computed from midranks in O(n log n) (Sun & Xu 2014): V₁₀ᵢ = (T_all(i) − T_pos(i))/n₋ for
//!   positives, V₀₁ⱼ = 1 − (T_all(j) − T_neg(j))/n₊ for negatives, and
//!   Var = (S₁₀ᴬᴬ + S₁₀ᴮᴮ − 2S₁₀ᴬᴮ)/n₊ + (S₀₁ᴬᴬ + S₀₁ᴮᴮ − 2S₀₁ᴬᴮ)/n₋ (sample covariances).
//! - McNemar's test of paired accuracy on the discordant pairs b (only A right) and c (only B
//!   right): χ² = (|b − c| − 1)²/(b + c) with one degree of freedom, or the exact binomial test.
//! - Expected calibration error: Σ_bins (n_b/N)·|mean label − mean score| on equal-width bins.

/// ROC AUC of scores against 0/1 labels; `None` when either class is absent.
pub fn auc(labels: &[f64], scores: &[f64]) -> Option<f64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut positives) = (0.0, 0usize);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let average_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            if labels[k] > 0.5 {
                rank_sum += average_rank;
                positives += 1;
            }
        }
        i = j + 1;
    }
    let negatives = scores.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let (p, n) = (positives as f64, negatives as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Mean binary cross-entropy; `None` when empty.
pub fn log_loss(labels: &[f64], scores: &[f64]) -> Option<f64> {
    mean(labels.iter().zip(scores).map(|(&y, &p)| {
        let p = p.clamp(f64::EPSILON, 1.0 - f64::EPSILON);
        -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
    }))
}

/// Mean squared difference between score and label; `None` when empty.
pub fn brier(labels: &[f64], scores: &[f64]) -> Option<f64> {
    mean(labels.iter().zip(scores).map(|(&y, &p)| (p - y) * (p - y)))
}

/// Share of rows where (score ≥ threshold) equals the label; `None` when empty.
pub fn accuracy(labels: &[f64], scores: &[f64], threshold: f64) -> Option<f64> {
    mean(labels.iter().zip(scores).map(|(&y, &p)| f64::from(u8::from((p >= threshold) == (y > 0.5)))))
}

/// Mean absolute error; `None` when empty.
pub fn mae(labels: &[f64], scores: &[f64]) -> Option<f64> {
    mean(labels.iter().zip(scores).map(|(&y, &p)| (p - y).abs()))
}

/// Root mean squared error; `None` when empty.
pub fn rmse(labels: &[f64], scores: &[f64]) -> Option<f64> {
    brier(labels, scores).map(f64::sqrt)
}

/// Arithmetic mean; `None` when empty.
pub fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// Whether every label is 0 or 1 (so the classification metrics apply).
pub fn is_binary(labels: &[f64]) -> bool {
    labels.iter().all(|&y| y == 0.0 || y == 1.0)
}

/// Average ranks (1-based) of `values`, ties sharing their mean rank.
pub fn midranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    ranks
}

/// DeLong's paired test of two models' AUCs on the same rows.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct DeLong {
    pub auc_a: f64,
    pub auc_b: f64,
    /// Covariance matrix entries of (AUC_A, AUC_B).
    pub var_a: f64,
    pub var_b: f64,
    pub covariance: f64,
    /// (AUC_A − AUC_B)/SD.
    pub z: f64,
    pub p_value: super::PValue,
}

pub fn delong(labels: &[f64], a: &[f64], b: &[f64]) -> Option<DeLong> {
    let positives: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] > 0.5).collect();
    let negatives: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] <= 0.5).collect();
    let (m, n) = (positives.len() as f64, negatives.len() as f64);
    if positives.len() < 2 || negatives.len() < 2 {
        return None;
    }
    let components = |scores: &[f64]| {
        let all = midranks(scores);
        let pick = |idx: &[usize]| midranks(&idx.iter().map(|&i| scores[i]).collect::<Vec<_>>());
        let (pos, neg) = (pick(&positives), pick(&negatives));
        let v10: Vec<f64> = positives.iter().zip(&pos).map(|(&i, r)| (all[i] - r) / n).collect();
        let v01: Vec<f64> = negatives.iter().zip(&neg).map(|(&j, r)| 1.0 - (all[j] - r) / m).collect();
        let auc = v10.iter().sum::<f64>() / m;
        (auc, v10, v01)
    };
    let (auc_a, a10, a01) = components(a);
    let (auc_b, b10, b01) = components(b);
    let cov = |x: &[f64], y: &[f64]| {
        let (mx, my) = (x.iter().sum::<f64>() / x.len() as f64, y.iter().sum::<f64>() / y.len() as f64);
        x.iter().zip(y).map(|(u, v)| (u - mx) * (v - my)).sum::<f64>() / (x.len() as f64 - 1.0)
    };
    let var_a = cov(&a10, &a10) / m + cov(&a01, &a01) / n;
    let var_b = cov(&b10, &b10) / m + cov(&b01, &b01) / n;
    let covariance = cov(&a10, &b10) / m + cov(&a01, &b01) / n;
    let var = var_a + var_b - 2.0 * covariance;
    let z = if var > 0.0 { (auc_a - auc_b) / var.sqrt() } else { 0.0 };
    Some(DeLong { auc_a, auc_b, var_a, var_b, covariance, z, p_value: super::two_sided_p(z) })
}

/// McNemar's test from the discordant counts: `b` rows only model A got right, `c` only B.
pub fn mcnemar(b: u64, c: u64, exact: bool) -> super::PValue {
    use statrs::distribution::{Binomial, ChiSquared, ContinuousCDF, DiscreteCDF};
    if b + c == 0 {
        return super::PValue::new(1.0);
    }
    if exact {
        let binomial = Binomial::new(0.5, b + c).expect("valid binomial");
        super::PValue::new(2.0 * binomial.cdf(b.min(c)))
    } else {
        let d = (b as f64 - c as f64).abs() - 1.0;
        let statistic = d.max(0.0).powi(2) / (b + c) as f64;
        super::PValue::new(ChiSquared::new(1.0).expect("valid chi-squared").sf(statistic))
    }
}

/// Expected calibration error on `bins` equal-width bins of the score in [0, 1].
pub fn expected_calibration_error(labels: &[f64], scores: &[f64], bins: usize) -> Option<f64> {
    if labels.is_empty() {
        return None;
    }
    let mut sums = vec![(0.0, 0.0, 0u64); bins];
    for (&y, &p) in labels.iter().zip(scores) {
        let b = ((p.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
        sums[b].0 += y;
        sums[b].1 += p;
        sums[b].2 += 1;
    }
    let n = labels.len() as f64;
    Some(sums.iter().filter(|s| s.2 > 0).map(|(y, p, k)| (*k as f64 / n) * ((y - p) / *k as f64).abs()).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    const Y: [f64; 8] = [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0];
    const P: [f64; 8] = [0.1, 0.4, 0.35, 0.8, 0.8, 0.8, 0.95, 0.05];

    #[test]
    fn match_scikit_learn() {
        // sklearn.metrics: roc_auc_score 0.8125, log_loss 0.47803998347001453, brier 0.16468750000000004
        assert!((auc(&Y, &P).unwrap() - 0.8125).abs() < 1e-12);
        assert!((log_loss(&Y, &P).unwrap() - 0.478_039_983_470_014_5).abs() < 1e-12);
        assert!((brier(&Y, &P).unwrap() - 0.164_687_5).abs() < 1e-12);
        assert_eq!(accuracy(&Y, &P, 0.5), Some(0.75));
    }

    #[test]
    fn auc_needs_both_classes_and_is_brute_force_exact() {
        assert_eq!(auc(&[1.0, 1.0], &[0.2, 0.3]), None);
        // Brute force: share of (positive, negative) pairs ranked right, ties counting half.
        let mut pairs = 0.0;
        let mut total = 0.0;
        for i in 0..8 {
            for j in 0..8 {
                if Y[i] == 1.0 && Y[j] == 0.0 {
                    total += 1.0;
                    pairs += if P[i] > P[j] {
                        1.0
                    } else if P[i] == P[j] {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        assert!((auc(&Y, &P).unwrap() - pairs / total).abs() < 1e-12);
    }

    #[test]
    fn delong_matches_a_numpy_implementation() {
        // Reference: a direct O(n²) numpy DeLong on these 60 rows: AUC 0.673611111111111 and
        // 0.7546296296296297, variances 0.005615213157861105 and 0.00449739776367695,
        // covariance −0.0006936556661043376, z −0.7555041345639535, p 0.4499465524681755.
        let y: [f64; 60] = [
            1., 1., 0., 0., 1., 0., 0., 1., 0., 1., 1., 0., 0., 0., 0., 0., 1., 0., 0., 1., 1., 0., 1., 1., 0., 0., 0., 0., 1., 0., 1., 1.,
            0., 0., 1., 0., 1., 0., 0., 1., 0., 0., 0., 0., 0., 0., 0., 1., 0., 1., 0., 1., 0., 1., 0., 1., 0., 1., 0., 1.,
        ];
        let a: [f64; 60] = [
            1.09, -0.18, 0.04, -0.58, 1.25, -1.22, -0.55, 1.23, 0.69, -0.49, 0.5, 0.2, -0.37, 0.95, -0.71, 0.21, 0.17, 0.84, -0.01, 0.58,
            -0.23, 1.01, 1.25, 1.25, 0.68, 0.21, -0.38, -0.48, 0.32, 0.82, -0.08, 0.44, -0.19, 0.13, 1.15, -0.75, -0.24, -0.0, 0.73, 1.25,
            0.13, -0.19, 0.18, -0.15, 0.49, -0.48, 0.08, 0.73, 0.33, 0.93, 1.53, 1.7, 0.9, -0.42, -0.2, 0.43, 0.32, -0.57, 0.7, 1.44,
        ];
        let b: [f64; 60] = [
            -0.28, -0.09, -0.48, 0.03, 0.88, 1.23, -0.12, 0.96, 0.09, 1.56, 0.95, 0.82, -0.65, -0.12, -0.49, 0.9, 0.89, -0.18, -0.27, 0.79,
            0.08, -0.56, 0.79, 1.98, -0.15, -0.33, -0.7, -0.8, 0.81, 0.51, 0.51, 0.7, 0.07, 0.08, -0.42, -0.27, 0.57, -0.47, -0.29, 0.01,
            -0.2, 0.51, -0.24, -0.09, 0.49, 0.39, 1.02, -0.75, 0.51, 0.21, 0.08, 1.0, 0.65, 1.12, 0.09, 1.47, -0.17, 0.42, 0.48, 0.17,
        ];
        let d = delong(&y, &a, &b).unwrap();
        assert!((d.auc_a - 0.673_611_111_111_111).abs() < 1e-12 && (d.auc_b - 0.754_629_629_629_629_7).abs() < 1e-12);
        assert!((d.var_a - 0.005_615_213_157_861_105).abs() < 1e-15);
        assert!((d.var_b - 0.004_497_397_763_676_95).abs() < 1e-15);
        assert!((d.covariance + 0.000_693_655_666_104_337_6).abs() < 1e-15);
        assert!((d.z + 0.755_504_134_563_953_5).abs() < 1e-9);
        assert!((d.p_value.get() - 0.449_946_552_468_175_5).abs() < 1e-9);
        assert!((d.auc_a - auc(&y, &a).unwrap()).abs() < 1e-15);
    }

    #[test]
    fn mcnemar_and_calibration_match_statsmodels() {
        // statsmodels mcnemar([[50, 12], [5, 33]]): corrected χ² p 0.1456100953968629, exact 0.143463134765625.
        assert!((mcnemar(12, 5, false).get() - 0.145_610_095_396_862_9).abs() < 1e-12);
        assert!((mcnemar(12, 5, true).get() - 0.143_463_134_765_625).abs() < 1e-12);
        let p = [0.05, 0.15, 0.22, 0.38, 0.41, 0.55, 0.67, 0.72, 0.88, 0.95, 0.99, 0.12];
        let y = [0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0];
        assert!((expected_calibration_error(&y, &p, 10).unwrap() - 0.304_166_666_666_666_75).abs() < 1e-12);
    }

    #[test]
    fn regression_errors() {
        assert_eq!(mae(&[1.0, 3.0], &[2.0, 1.0]), Some(1.5));
        assert!((rmse(&[1.0, 3.0], &[2.0, 1.0]).unwrap() - 2.5f64.sqrt()).abs() < 1e-12);
        assert!(is_binary(&Y) && !is_binary(&[0.5]));
    }
}
