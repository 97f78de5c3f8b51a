//! Mergeable summaries of a sample: count, sum and sum of squares (for means and variances) and
//! success counts (for proportions). Two summaries of disjoint rows merge by adding, so any window
//! can be answered by adding pre-aggregated buckets, and shards scored apart can be combined.
//!
//! Variance uses the shifted (two-pass-free) formula with a per-summary shift, which keeps the
//! cancellation error small when values are far from zero; summaries merge exactly when they share
//! the shift (all summaries of one metric use the same one).

use serde::Serialize;

/// n, Σ(x − shift), Σ(x − shift)².
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Moments {
    pub n: u64,
    shift: f64,
    sum: f64,
    sum_sq: f64,
}

impl Moments {
    /// An empty summary whose values are stored relative to `shift` (e.g. a typical value).
    pub fn with_shift(shift: f64) -> Self {
        Self { n: 0, shift, sum: 0.0, sum_sq: 0.0 }
    }

    pub fn of(values: &[f64]) -> Self {
        let mut m = Self::with_shift(values.first().copied().unwrap_or(0.0));
        values.iter().for_each(|v| m.add(*v));
        m
    }

    pub fn add(&mut self, x: f64) {
        let d = x - self.shift;
        self.n += 1;
        self.sum += d;
        self.sum_sq += d * d;
    }

    /// Adds another summary of different rows (recentring it when the shifts differ).
    pub fn merge(&mut self, other: &Moments) {
        if other.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *other;
            return;
        }
        let o = other.recentred(self.shift);
        self.n += o.n;
        self.sum += o.sum;
        self.sum_sq += o.sum_sq;
    }

    fn recentred(&self, shift: f64) -> Moments {
        let delta = self.shift - shift;
        let n = self.n as f64;
        Moments { n: self.n, shift, sum: self.sum + n * delta, sum_sq: self.sum_sq + 2.0 * delta * self.sum + n * delta * delta }
    }

    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.shift + self.sum / self.n as f64)
    }

    /// Sample variance (n − 1 in the denominator).
    pub fn variance(&self) -> Option<f64> {
        (self.n > 1).then(|| {
            let n = self.n as f64;
            ((self.sum_sq - self.sum * self.sum / n) / (n - 1.0)).max(0.0)
        })
    }

    /// Squared standard error of the mean, s²/n.
    pub fn variance_of_mean(&self) -> Option<f64> {
        self.variance().map(|v| v / self.n as f64)
    }
}

/// Successes out of trials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct Counts {
    pub successes: u64,
    pub trials: u64,
}

impl Counts {
    pub fn new(successes: u64, trials: u64) -> Self {
        assert!(successes <= trials, "{successes} successes out of {trials} trials");
        Self { successes, trials }
    }

    pub fn add(&mut self, success: bool) {
        self.trials += 1;
        self.successes += u64::from(success);
    }

    pub fn merge(&mut self, other: &Counts) {
        self.successes += other.successes;
        self.trials += other.trials;
    }

    pub fn rate(&self) -> Option<f64> {
        (self.trials > 0).then(|| self.successes as f64 / self.trials as f64)
    }

    /// p̂(1 − p̂)/n, the squared standard error of the rate.
    pub fn variance_of_rate(&self) -> Option<f64> {
        self.rate().map(|p| p * (1.0 - p) / self.trials as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_match_two_pass_and_merge_exactly() {
        let xs: Vec<f64> = (0..1000).map(|i| 1e6 + (i as f64 * 0.37).sin()).collect();
        let all = Moments::of(&xs);
        let mean = xs.iter().sum::<f64>() / 1000.0;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 999.0;
        assert!((all.mean().unwrap() - mean).abs() < 1e-6);
        assert!((all.variance().unwrap() - var).abs() < 1e-9 * var.max(1.0));
        let (mut a, b) = (Moments::of(&xs[..300]), Moments::of(&xs[300..]));
        a.merge(&b);
        assert!((a.variance().unwrap() - var).abs() < 1e-9);
        let mut empty = Moments::default();
        empty.merge(&all);
        assert!((empty.mean().unwrap() - mean).abs() < 1e-6);
        assert_eq!(Moments::default().mean(), None);
    }

    #[test]
    fn counts_merge() {
        let mut c = Counts::new(3, 10);
        c.merge(&Counts::new(1, 10));
        c.add(true);
        assert_eq!(c, Counts::new(5, 21));
        assert!((c.variance_of_rate().unwrap() - (5.0 / 21.0) * (16.0 / 21.0) / 21.0).abs() < 1e-15);
    }
}
