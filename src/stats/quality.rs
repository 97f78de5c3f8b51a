//! Model quality against labels: ROC AUC, log loss, Brier score, accuracy, and for regression
//! models MAE and RMSE.
//!
//! AUC is the Mann-Whitney statistic with average ranks for tied scores, O(n log n):
//! AUC = (R₊ − n₊(n₊+1)/2) / (n₊ n₋), equal to scikit-learn's `roc_auc_score`. Log loss clips
//! probabilities to [ε, 1 − ε] with ε the f64 machine epsilon, as scikit-learn ≥ 1.5 does.
//! Accuracy calls a row positive when its score is at least the threshold. Labels are 0/1 for the
//! classification metrics; rows are paired (label, score) with no missing values.

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
                    pairs += if P[i] > P[j] { 1.0 } else if P[i] == P[j] { 0.5 } else { 0.0 };
                }
            }
        }
        assert!((auc(&Y, &P).unwrap() - pairs / total).abs() < 1e-12);
    }

    #[test]
    fn regression_errors() {
        assert_eq!(mae(&[1.0, 3.0], &[2.0, 1.0]), Some(1.5));
        assert!((rmse(&[1.0, 3.0], &[2.0, 1.0]).unwrap() - 2.5f64.sqrt()).abs() < 1e-12);
        assert!(is_binary(&Y) && !is_binary(&[0.5]));
    }
}
