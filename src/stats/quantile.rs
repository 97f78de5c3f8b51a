//! Sample quantiles by linear interpolation between order statistics (Hyndman & Fan type 7,
//! the default of numpy, R and polars): q(p) = x[h] + (h − ⌊h⌋)(x[⌊h⌋+1] − x[⌊h⌋]), h = (n − 1)p.

/// Quantiles of `values` (any order; NaN ignored) at each probability in `ps`; `None` when empty.
pub fn quantiles(values: &[f64], ps: &[f64]) -> Option<Vec<f64>> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    Some(ps.iter().map(|p| quantile_sorted(&sorted, *p)).collect())
}

/// Quantile of already sorted, NaN-free, non-empty values.
pub fn quantile_sorted(sorted: &[f64], p: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * p.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_linear() {
        // numpy.quantile([1, 2, 3, 4, 10], [0.5, 0.95, 0.99]) = [3.0, 8.8, 9.76]
        let q = quantiles(&[10.0, 1.0, 3.0, 2.0, 4.0], &[0.5, 0.95, 0.99]).unwrap();
        assert!((q[0] - 3.0).abs() < 1e-12 && (q[1] - 8.8).abs() < 1e-12 && (q[2] - 9.76).abs() < 1e-12, "{q:?}");
        assert_eq!(quantiles(&[], &[0.5]), None);
        assert_eq!(quantiles(&[7.0], &[0.0, 1.0]), Some(vec![7.0, 7.0]));
    }
}
