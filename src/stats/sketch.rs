//! Mergeable summaries of scores: a fixed binning shared by every histogram, and sparse
//! histograms that add and merge exactly, so any group of rows (a segment, a time bucket, a shard
//! scored on another machine) can be summarised once and combined later without the raw rows.
//!
//! The binning has `BINS = 30 × 2048` equal-width bins over [lo, hi] (the range of all scores), so
//! Evidently's 30 drift bins over the same range are exact unions of 2048 fine bins. Statistics
//! that need the order of individual scores (AUC, Wasserstein) are computed from the fine bins and
//! state their approximation: for AUC, scores sharing a fine bin count as ties, and
//! [`auc_from_histograms`] returns the exact bound on the difference from the row-level AUC.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::drift;

/// Fine bins per Evidently bin.
pub const FINE_PER_COARSE: u32 = 2048;
/// Fine bins in all.
pub const BINS: u32 = drift::DEFAULT_BINS as u32 * FINE_PER_COARSE;

/// Equal-width bins over [lo, hi]; values outside are counted in the edge bins.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Binning {
    lo: f64,
    hi: f64,
}

impl Binning {
    /// Bins over [lo, hi], widened as numpy does when the range is a single value.
    pub fn new(lo: f64, hi: f64) -> Self {
        if lo < hi {
            Self { lo, hi }
        } else {
            Self { lo: lo - 0.5, hi: lo + 0.5 }
        }
    }

    pub fn bin(&self, value: f64) -> u32 {
        let position = (value - self.lo) / (self.hi - self.lo) * BINS as f64;
        (position.max(0.0) as u32).min(BINS - 1)
    }

    /// The centre of a fine bin.
    pub fn centre(&self, bin: u32) -> f64 {
        self.lo + (bin as f64 + 0.5) * (self.hi - self.lo) / BINS as f64
    }

    pub fn width(&self) -> f64 {
        (self.hi - self.lo) / BINS as f64
    }
}

/// Multiply-rotate hashing for bin numbers (FxHash's mix): bins are small integers, not attacker
/// input, and the histogram sits on the per-row hot path.
#[derive(Default)]
struct BinHasher(u64);

impl Hasher for BinHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// Counts per fine bin: sparse while few bins are filled, then dense — a filled sparse histogram
/// (an oracle's on millions of requests) took twice the memory of the dense one and a hash insert
/// per request.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: Counts,
    total: u64,
}

#[derive(Debug, Clone)]
enum Counts {
    Sparse(HashMap<u32, u64, BuildHasherDefault<BinHasher>>),
    /// One count per fine bin, in 4 bytes (240 KB) until a bin passes `u32::MAX`...
    Dense(Box<[u32]>),
    /// ...then in 8.
    Wide(Box<[u64]>),
}

impl Default for Counts {
    fn default() -> Self {
        Counts::Sparse(HashMap::default())
    }
}

/// Filled bins beyond which a histogram turns dense: there the hash map (12 bytes and a control
/// byte an entry, at most 7/8 full, grown by doubling) takes about as much memory as 4 bytes for
/// every bin.
const DENSE_ABOVE: usize = BINS as usize / 8;

impl Histogram {
    pub fn add(&mut self, bin: u32) {
        self.add_count(bin, 1);
    }

    fn add_count(&mut self, bin: u32, count: u64) {
        self.total += count;
        let b = bin as usize;
        match &mut self.counts {
            Counts::Wide(counts) => counts[b] += count,
            Counts::Dense(counts) => match u32::try_from(count).ok().and_then(|c| counts[b].checked_add(c)) {
                Some(sum) => counts[b] = sum,
                None => {
                    let mut wide: Box<[u64]> = counts.iter().map(|&c| u64::from(c)).collect();
                    wide[b] += count;
                    self.counts = Counts::Wide(wide);
                }
            },
            Counts::Sparse(map) => {
                *map.entry(bin).or_insert(0) += count;
                if map.len() > DENSE_ABOVE {
                    let mut wide = vec![0u64; BINS as usize].into_boxed_slice();
                    for (b, c) in map.drain() {
                        wide[b as usize] = c;
                    }
                    self.counts = match wide.iter().map(|&c| u32::try_from(c)).collect::<Result<Box<[u32]>, _>>() {
                        Ok(narrow) => Counts::Dense(narrow),
                        Err(_) => Counts::Wide(wide),
                    };
                }
            }
        }
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (bin, count) in other.filled() {
            self.add_count(bin, count);
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn get(&self, bin: u32) -> u64 {
        match &self.counts {
            Counts::Sparse(map) => map.get(&bin).copied().unwrap_or(0),
            Counts::Dense(counts) => u64::from(counts[bin as usize]),
            Counts::Wide(counts) => counts[bin as usize],
        }
    }

    /// (bin, count) of the bins holding a count, in no particular order.
    fn filled(&self) -> Box<dyn Iterator<Item = (u32, u64)> + '_> {
        match &self.counts {
            Counts::Sparse(map) => Box::new(map.iter().map(|(b, c)| (*b, *c))),
            Counts::Dense(counts) => Box::new(counts.iter().enumerate().filter(|(_, c)| **c > 0).map(|(b, c)| (b as u32, u64::from(*c)))),
            Counts::Wide(counts) => Box::new(counts.iter().enumerate().filter(|(_, c)| **c > 0).map(|(b, c)| (b as u32, *c))),
        }
    }

    /// Shares per Evidently (coarse) bin.
    pub fn coarse_shares(&self) -> Vec<f64> {
        let mut counts = vec![0u64; drift::DEFAULT_BINS];
        for (bin, count) in self.filled() {
            counts[(bin / FINE_PER_COARSE) as usize] += count;
        }
        counts.iter().map(|&c| c as f64 / self.total.max(1) as f64).collect()
    }

    /// (bin, count) in bin order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        let mut pairs: Vec<(u32, u64)> = self.filled().collect();
        if matches!(self.counts, Counts::Sparse(_)) {
            pairs.sort_unstable();
        }
        pairs.into_iter()
    }
}

/// Equal when every bin holds the same count, sparse or dense.
impl PartialEq for Histogram {
    fn eq(&self, other: &Self) -> bool {
        self.total == other.total && self.iter().eq(other.iter())
    }
}

/// AUC from per-class histograms, scores sharing a bin counted as ties; with the bound on its
/// distance from the row-level AUC (half the share of positive-negative pairs sharing a bin).
pub fn auc_from_histograms(positives: &Histogram, negatives: &Histogram) -> Option<(f64, f64)> {
    let (p, n) = (positives.total as f64, negatives.total as f64);
    if p == 0.0 || n == 0.0 {
        return None;
    }
    let mut below = 0.0;
    let mut wins = 0.0;
    let mut tied = 0.0;
    let mut negs = negatives.iter().peekable();
    for (bin, count) in positives.iter() {
        while let Some((nb, nc)) = negs.peek().copied() {
            if nb < bin {
                below += nc as f64;
                negs.next();
            } else {
                break;
            }
        }
        let same = negatives.get(bin) as f64;
        wins += count as f64 * (below + same / 2.0);
        tied += count as f64 * same;
    }
    Some((wins / (p * n), tied / (2.0 * p * n)))
}

/// PSI between two histograms on Evidently's 30 bins with its zero fill.
pub fn psi(reference: &Histogram, current: &Histogram) -> Option<f64> {
    if reference.total == 0 || current.total == 0 {
        return None;
    }
    let (mut r, mut c) = (reference.coarse_shares(), current.coarse_shares());
    drift::fill_zeros(&mut r);
    drift::fill_zeros(&mut c);
    Some(drift::psi_of_shares(&r, &c))
}

/// Jensen-Shannon distance between two histograms on Evidently's 30 bins.
pub fn jensen_shannon(reference: &Histogram, current: &Histogram) -> Option<f64> {
    if reference.total == 0 || current.total == 0 {
        return None;
    }
    Some(drift::js_of_shares(&reference.coarse_shares(), &current.coarse_shares()))
}

/// W₁ between two histograms (scores at bin centres) divided by the reference's std, which is
/// passed in exactly (from sums of squares) rather than from the bins.
pub fn wasserstein_normed(binning: &Binning, reference: &Histogram, current: &Histogram, reference_std: f64) -> Option<f64> {
    if reference.total == 0 || current.total == 0 || reference_std <= 0.0 {
        return None;
    }
    let (nr, nc) = (reference.total as f64, current.total as f64);
    let mut bins: Vec<u32> = reference.filled().chain(current.filled()).map(|(bin, _)| bin).collect();
    bins.sort_unstable();
    bins.dedup();
    let (mut cr, mut cc) = (0.0, 0.0);
    let mut total = 0.0;
    for pair in bins.windows(2) {
        cr += reference.get(pair[0]) as f64;
        cc += current.get(pair[0]) as f64;
        total += (cr / nr - cc / nc).abs() * (binning.centre(pair[1]) - binning.centre(pair[0]));
    }
    Some(total / reference_std)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::quality;

    fn sample(n: usize, shift: f64) -> (Vec<f64>, Vec<f64>) {
        let scores: Vec<f64> = (0..n).map(|i| ((i as f64 * 0.618).fract() * 0.8 + shift).min(1.0)).collect();
        let labels: Vec<f64> = (0..n).map(|i| if (i as f64 * 0.382).fract() < scores[i] { 1.0 } else { 0.0 }).collect();
        (labels, scores)
    }

    #[test]
    fn histogram_auc_is_within_its_bound_of_the_exact_auc() {
        let (labels, scores) = sample(5000, 0.1);
        let binning = Binning::new(0.0, 1.0);
        let (mut pos, mut neg) = (Histogram::default(), Histogram::default());
        for (y, s) in labels.iter().zip(&scores) {
            if *y > 0.5 {
                pos.add(binning.bin(*s))
            } else {
                neg.add(binning.bin(*s))
            }
        }
        let (approx, bound) = auc_from_histograms(&pos, &neg).unwrap();
        let exact = quality::auc(&labels, &scores).unwrap();
        assert!((approx - exact).abs() <= bound + 1e-12, "{approx} {exact} {bound}");
        assert!(bound < 1e-3);
    }

    #[test]
    fn merged_histograms_equal_one_histogram_of_all_rows() {
        let binning = Binning::new(-1.0, 1.0);
        let (mut a, mut b, mut all) = (Histogram::default(), Histogram::default(), Histogram::default());
        for i in 0..1000 {
            let v = (i as f64 * 0.77).sin();
            if i % 3 == 0 {
                a.add(binning.bin(v))
            } else {
                b.add(binning.bin(v))
            }
            all.add(binning.bin(v));
        }
        a.merge(&b);
        assert_eq!(a, all);
    }

    #[test]
    fn a_histogram_turned_dense_counts_as_the_sparse_one_did() {
        // Enough values to fill more than DENSE_ABOVE bins, some bins several times.
        let values: Vec<u32> = (0..3 * DENSE_ABOVE as u64).map(|i| (i.wrapping_mul(2_654_435_761) % u64::from(BINS)) as u32).collect();
        let mut filled = Histogram::default();
        let mut expected = std::collections::BTreeMap::new();
        for v in &values {
            filled.add(*v);
            *expected.entry(*v).or_insert(0u64) += 1;
        }
        assert!(matches!(filled.counts, Counts::Dense(_)) && expected.len() > DENSE_ABOVE);
        assert_eq!(filled.iter().collect::<Vec<_>>(), expected.into_iter().collect::<Vec<_>>());
        assert_eq!(filled.total(), values.len() as u64);
        // A sparse histogram merged into a dense one, and the other way round, give the same counts.
        let mut few = Histogram::default();
        values[..100].iter().for_each(|v| few.add(*v));
        let mut dense_first = filled.clone();
        dense_first.merge(&few);
        let mut sparse_first = few.clone();
        sparse_first.merge(&filled);
        assert!(matches!(sparse_first.counts, Counts::Dense(_)));
        assert_eq!(dense_first, sparse_first);
        assert_eq!(dense_first.get(values[0]), filled.get(values[0]) + few.get(values[0]));
        // The statistics read the same counts either way.
        let sparse = Histogram { counts: Counts::Sparse(filled.iter().collect()), total: filled.total() };
        assert_eq!(sparse, filled);
        assert_eq!(psi(&filled, &few), psi(&sparse, &few));
        assert_eq!(auc_from_histograms(&filled, &few), auc_from_histograms(&sparse, &few));
        let binning = Binning::new(0.0, 1.0);
        assert_eq!(wasserstein_normed(&binning, &filled, &few, 0.3), wasserstein_normed(&binning, &sparse, &few, 0.3));
        // Counts are 4 bytes a bin until one passes u32::MAX; then 8, every count kept.
        let mut wide = filled.clone();
        wide.add_count(values[0], u64::from(u32::MAX));
        assert!(matches!(wide.counts, Counts::Wide(_)));
        assert_eq!(wide.get(values[0]), filled.get(values[0]) + u64::from(u32::MAX));
        assert_eq!(wide.total(), filled.total() + u64::from(u32::MAX));
        assert_eq!(wide.get(values[1]), filled.get(values[1]));
        let mut narrow_again = few.clone();
        narrow_again.merge(&wide);
        assert!(matches!(narrow_again.counts, Counts::Wide(_)), "a count past u32::MAX turns it wide");
        assert_eq!(narrow_again.get(values[0]), wide.get(values[0]) + few.get(values[0]));
    }

    #[test]
    fn coarse_drift_equals_evidently_binning_over_the_same_range() {
        let (_, r) = sample(3000, 0.0);
        let (_, c) = sample(2000, 0.15);
        let lo = r.iter().chain(&c).copied().fold(f64::INFINITY, f64::min);
        let hi = r.iter().chain(&c).copied().fold(f64::NEG_INFINITY, f64::max);
        let binning = Binning::new(lo, hi);
        let (mut hr, mut hc) = (Histogram::default(), Histogram::default());
        r.iter().for_each(|v| hr.add(binning.bin(*v)));
        c.iter().for_each(|v| hc.add(binning.bin(*v)));
        let exact_psi = drift::psi(&r, &c, drift::DEFAULT_BINS).unwrap();
        assert!((psi(&hr, &hc).unwrap() - exact_psi).abs() < 1e-9);
        let exact_js = drift::jensen_shannon(&r, &c, drift::DEFAULT_BINS).unwrap();
        assert!((jensen_shannon(&hr, &hc).unwrap() - exact_js).abs() < 1e-9);
        let n = r.len() as f64;
        let mean = r.iter().sum::<f64>() / n;
        let std = (r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        let w = wasserstein_normed(&binning, &hr, &hc, std).unwrap();
        let exact_w = drift::wasserstein_normed(&r, &c).unwrap();
        assert!((w - exact_w).abs() < 2.0 * binning.width() / std, "{w} {exact_w}");
    }
}
