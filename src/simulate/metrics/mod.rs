//! Per-arm statistics of a window, and the metric values and difference estimates read from them.
//!
//! Each request adds a [`Contribution`] to the arm that served it: counts, fixed-point sums and
//! histogram bins, all integers. Integer sums do not depend on the order they are added in, so
//! the row-by-row reference simulator and the fast path, which adds pre-aggregated buckets, reach
//! bit-identical statistics and therefore identical decisions. Values are stored as multiples of
//! 2⁻²⁴ (about 6e-8), far below any gate's resolution.
//!
//! Histograms: latency on 512 logarithmic bins from 1 µs to 100 s (64 per decade, 3.7% wide;
//! quantiles report a bin's geometric centre), scores on Evidently's 30 bins for drift and 256
//! bins by class for AUC (scores in one bin count as ties), and 10 calibration bins over [0, 1].

mod packed;

pub(super) use packed::{put as put_varint, take as take_varint};
pub use packed::{Decoded, Needs, Packed};
use packed::{HISTS, HIST_STRIDE};

use crate::policy::{Cost, Metric, Statistic};
use crate::stats::drift;
use crate::stats::moments::Counts;

const FIXED: f64 = (1u64 << 24) as f64;
pub const LATENCY_BINS: usize = 512;
const LATENCY_PER_DECADE: f64 = 64.0;
const LATENCY_FLOOR_MS: f64 = 0.001;
pub const DRIFT_BINS: usize = drift::DEFAULT_BINS;
pub const AUC_BINS: usize = 256;
pub const ECE_BINS: usize = 10;

/// `(x · FIXED).round() as i64`, without the libm call `round` compiles to on baseline x86-64
/// (the hot path adds millions of these): the truncation's remainder is exact (Sterbenz), so
/// rounding half away from zero on it gives the same integer.
fn fixed(x: f64) -> i64 {
    let y = x * FIXED;
    let t = y as i64;
    let rest = y - t as f64;
    if rest >= 0.5 {
        t.saturating_add(1)
    } else if rest <= -0.5 {
        t.saturating_sub(1)
    } else {
        t
    }
}

fn unfixed(x: i128) -> f64 {
    x as f64 / FIXED
}

/// Where scores fall: shared bins over the range of all scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreBins {
    lo: f64,
    hi: f64,
}

impl ScoreBins {
    pub fn new((lo, hi): (f64, f64)) -> Self {
        if lo < hi {
            Self { lo, hi }
        } else {
            Self { lo: lo - 0.5, hi: lo + 0.5 }
        }
    }

    fn bin(&self, score: f64, bins: usize) -> usize {
        let x = (score - self.lo) / (self.hi - self.lo) * bins as f64;
        (x.max(0.0) as usize).min(bins - 1)
    }

    fn centre(&self, bin: usize, bins: usize) -> f64 {
        self.lo + (bin as f64 + 0.5) * (self.hi - self.lo) / bins as f64
    }
}

/// Settings that turn outputs into contributions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    pub bins: ScoreBins,
    pub threshold: f64,
    pub cost: Cost,
    pub binary: bool,
}

fn latency_bin(ms: f64) -> usize {
    let x = (ms.max(LATENCY_FLOOR_MS) / LATENCY_FLOOR_MS).log10() * LATENCY_PER_DECADE;
    (x.max(0.0) as usize).min(LATENCY_BINS - 1)
}

fn latency_centre(bin: usize) -> f64 {
    LATENCY_FLOOR_MS * 10f64.powf((bin as f64 + 0.5) / LATENCY_PER_DECADE)
}

/// Quantile `p` of the latencies counted in `bins` (the [`LATENCY_BINS`] logarithmic bins), in
/// milliseconds: the geometric centre of the bin holding the ⌈p·n⌉-th smallest.
fn latency_quantile_of(bins: &[u64], p: f64) -> Option<f64> {
    let n: u64 = bins.iter().sum();
    if n == 0 {
        return None;
    }
    let rank = ((p * n as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (bin, count) in bins.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return Some(latency_centre(bin));
        }
    }
    None
}

/// Latency quantiles in bounded memory, as the checks read them: counts on the [`LATENCY_BINS`]
/// logarithmic bins from 1 µs to 100 s, 64 a decade — DDSketch's logarithmic mapping with
/// γ = 10^(1/64), so a quantile is within 1.8% of a latency in its bin (values outside the range
/// go to the end bins). Mergeable by adding counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencySketch {
    /// Empty until the first latency.
    bins: Vec<u64>,
}

impl LatencySketch {
    pub fn add_ms(&mut self, ms: f64) {
        if self.bins.is_empty() {
            self.bins = vec![0; LATENCY_BINS];
        }
        self.bins[latency_bin(ms)] += 1;
    }

    pub fn count(&self) -> u64 {
        self.bins.iter().sum()
    }

    /// Quantile `p` in milliseconds (`None` without latencies).
    pub fn quantile_ms(&self, p: f64) -> Option<f64> {
        latency_quantile_of(&self.bins, p)
    }

    /// The cumulative distribution at the upper edge of each bin holding latencies: (ms, share of
    /// latencies at most that).
    pub fn cdf_ms(&self) -> Vec<(f64, f64)> {
        let n = self.count().max(1) as f64;
        let mut seen = 0;
        let mut out = Vec::new();
        for (bin, count) in self.bins.iter().enumerate().filter(|(_, c)| **c > 0) {
            seen += count;
            out.push((LATENCY_FLOOR_MS * 10f64.powf((bin + 1) as f64 / LATENCY_PER_DECADE), seen as f64 / n));
        }
        out
    }
}

/// What one request adds to the statistics of the arm that served it: 24 bytes, as the fast path
/// keeps one per model for every request of a sparse key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Contribution {
    /// Fixed-point latency and score, meaningful when their bin is set.
    latency: i64,
    score: i64,
    latency_bin: u16,
    score_bin: u8,
    flags: u8,
}

const NO_LATENCY: u16 = u16::MAX;
const ERROR: u8 = 1;
const SCORED: u8 = 2;

impl Contribution {
    pub fn error(&self) -> bool {
        self.flags & ERROR != 0
    }

    /// Latency bin and fixed-point milliseconds, when measured.
    pub fn latency(&self) -> Option<(u16, i64)> {
        (self.latency_bin != NO_LATENCY).then_some((self.latency_bin, self.latency))
    }

    /// Drift bin and fixed-point score, when the model returned one.
    pub fn score(&self) -> Option<(u8, i64)> {
        (self.flags & SCORED != 0).then_some((self.score_bin, self.score))
    }
}

/// What one labelled request adds to an arm's quality statistics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quality {
    pub positive: bool,
    pub correct: bool,
    pub log_loss: i64,
    pub brier: i64,
    pub cost: i64,
    pub absolute: i64,
    pub score: i64,
    pub auc_bin: u16,
    pub ece_bin: u8,
}

impl Scale {
    pub fn contribution(&self, out: &super::replay::Output) -> Contribution {
        let (latency_bin, latency) = out.latency_ms.map_or((NO_LATENCY, 0), |ms| (latency_bin(ms) as u16, fixed(ms)));
        let (score_bin, score) = out.score.map_or((0, 0), |s| (self.bins.bin(s, DRIFT_BINS) as u8, fixed(s)));
        let flags = if out.error { ERROR } else { 0 } | if out.score.is_some() { SCORED } else { 0 };
        Contribution { latency, score, latency_bin, score_bin, flags }
    }

    /// The quality terms of a labelled request the model scored.
    pub fn quality(&self, out: &super::replay::Output, label: f64) -> Option<Quality> {
        self.quality_of(out.score, label)
    }

    /// The quality terms of a label and the score the model returned, if any.
    pub fn quality_of(&self, score: Option<f64>, label: f64) -> Option<Quality> {
        let s = score?;
        Some(self.quality_given(s, label, log_loss(s, label)))
    }

    /// The quality terms of a score and its label, with their [`log_loss`] worked out before.
    pub fn quality_given(&self, s: f64, label: f64, log_loss: i64) -> Quality {
        let positive = label > 0.5;
        let predicted = s >= self.threshold;
        let cost = match (predicted, positive) {
            (true, true) => self.cost.true_positive,
            (true, false) => self.cost.false_positive,
            (false, true) => self.cost.false_negative,
            (false, false) => self.cost.true_negative,
        };
        Quality {
            positive,
            correct: if self.binary { predicted == positive } else { (s - label).abs() < f64::EPSILON },
            log_loss,
            brier: fixed((s - label) * (s - label)),
            cost: fixed(cost),
            absolute: fixed((s - label).abs()),
            score: fixed(s),
            auc_bin: self.bins.bin(s, AUC_BINS) as u16,
            ece_bin: ((s.clamp(0.0, 1.0) * ECE_BINS as f64) as usize).min(ECE_BINS - 1) as u8,
        }
    }
}

/// The fixed-point log loss of a score against its label: the one logarithm of the quality terms.
pub fn log_loss(score: f64, label: f64) -> i64 {
    let p = score.clamp(f64::EPSILON, 1.0 - f64::EPSILON);
    // A 0/1 label needs one logarithm; the general form gives the same value for it.
    fixed(if label == 1.0 {
        -p.ln()
    } else if label == 0.0 {
        -(1.0 - p).ln()
    } else {
        -(label * p.ln() + (1.0 - label) * (1.0 - p).ln())
    })
}

/// n, Σx, Σx² of fixed-point values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sums {
    pub n: u64,
    pub sum: i128,
    pub sum_sq: i128,
}

impl Sums {
    fn add(&mut self, x: i64) {
        self.n += 1;
        self.sum += i128::from(x);
        self.sum_sq += i128::from(x) * i128::from(x);
    }

    fn merge(&mut self, o: &Sums) {
        self.n += o.n;
        self.sum += o.sum;
        self.sum_sq += o.sum_sq;
    }

    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| unfixed(self.sum) / self.n as f64)
    }

    /// (mean, variance of the mean) with the sample variance.
    pub fn mean_and_variance(&self) -> Option<(f64, f64)> {
        if self.n < 2 {
            return None;
        }
        let n = self.n as f64;
        let mean = unfixed(self.sum) / n;
        let centred = self.sum_sq as f64 / (FIXED * FIXED) - n * mean * mean;
        Some((mean, (centred / (n - 1.0)).max(0.0) / n))
    }
}

/// The scalar part of an arm's statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scalars {
    pub requests: u64,
    pub errors: u64,
    pub latency: Sums,
    pub score: Sums,
    pub labelled: u64,
    pub positives: u64,
    pub correct: u64,
    pub log_loss: Sums,
    pub brier: Sums,
    pub cost: Sums,
    pub absolute: Sums,
    pub ece_score: [i128; ECE_BINS],
}

impl Scalars {
    fn merge(&mut self, o: &Scalars) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.latency.merge(&o.latency);
        self.score.merge(&o.score);
        self.labelled += o.labelled;
        self.positives += o.positives;
        self.correct += o.correct;
        self.log_loss.merge(&o.log_loss);
        self.brier.merge(&o.brier);
        self.cost.merge(&o.cost);
        self.absolute.merge(&o.absolute);
        for (a, b) in self.ece_score.iter_mut().zip(&o.ece_score) {
            *a += b;
        }
    }

    fn add(&mut self, c: &Contribution) {
        self.requests += 1;
        self.errors += u64::from(c.error());
        if let Some((_, l)) = c.latency() {
            self.latency.add(l);
        }
        if let Some((_, s)) = c.score() {
            self.score.add(s);
        }
    }

    fn add_quality(&mut self, q: &Quality) {
        self.labelled += 1;
        self.positives += u64::from(q.positive);
        self.correct += u64::from(q.correct);
        self.log_loss.add(q.log_loss);
        self.brier.add(q.brier);
        self.cost.add(q.cost);
        self.absolute.add(q.absolute);
        self.ece_score[q.ece_bin as usize] += i128::from(q.score);
    }
}

/// Which histogram a packed bin count belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Hist {
    Latency,
    Drift,
    AucPositive,
    AucNegative,
    Ece,
    EcePositive,
}

/// One arm's statistics over a window (dense histograms; what checks read).
#[derive(Debug, Clone, PartialEq)]
pub struct ArmStats {
    pub s: Scalars,
    /// `None` when the window was built for policies whose metrics read no histogram
    /// ([`Metric::reads_histogram`]): the metrics that do read them then have no value.
    h: Option<Box<Histograms>>,
}

/// The histograms of an arm: latency quantiles, score drift, AUC, ECE.
#[derive(Debug, Clone, PartialEq)]
struct Histograms {
    latency: [u64; LATENCY_BINS],
    drift: [u64; DRIFT_BINS],
    auc: [[u64; AUC_BINS]; 2],
    ece: [u64; ECE_BINS],
    ece_positive: [u64; ECE_BINS],
}

impl Histograms {
    /// Adds `n` to the bin at `position` ([`Hist`] · [`HIST_STRIDE`] + bin).
    fn bump(&mut self, position: u32, n: u64) {
        let bin = (position % HIST_STRIDE) as usize;
        match HISTS[(position / HIST_STRIDE) as usize] {
            Hist::Latency => self.latency[bin] += n,
            Hist::Drift => self.drift[bin] += n,
            Hist::AucPositive => self.auc[0][bin] += n,
            Hist::AucNegative => self.auc[1][bin] += n,
            Hist::Ece => self.ece[bin] += n,
            Hist::EcePositive => self.ece_positive[bin] += n,
        }
    }

    fn empty() -> Box<Self> {
        Box::new(Self {
            latency: [0; LATENCY_BINS],
            drift: [0; DRIFT_BINS],
            auc: [[0; AUC_BINS]; 2],
            ece: [0; ECE_BINS],
            ece_positive: [0; ECE_BINS],
        })
    }
}

/// All-zero histograms, what an arm without them reads as.
static NO_HISTOGRAMS: Histograms = Histograms {
    latency: [0; LATENCY_BINS],
    drift: [0; DRIFT_BINS],
    auc: [[0; AUC_BINS]; 2],
    ece: [0; ECE_BINS],
    ece_positive: [0; ECE_BINS],
};

impl Default for ArmStats {
    fn default() -> Self {
        Self { s: Scalars::default(), h: Some(Histograms::empty()) }
    }
}

impl ArmStats {
    /// An empty arm, with histograms or without (scalars only: about 500 bytes instead of 10 KB).
    pub fn new(histograms: bool) -> Self {
        Self { s: Scalars::default(), h: histograms.then(Histograms::empty) }
    }

    fn hist(&self) -> &Histograms {
        self.h.as_deref().unwrap_or(&NO_HISTOGRAMS)
    }

    /// Back to empty, keeping the allocations.
    pub fn reset(&mut self) {
        self.s = Scalars::default();
        if let Some(h) = &mut self.h {
            h.latency.fill(0);
            h.drift = [0; DRIFT_BINS];
            h.auc.iter_mut().for_each(|a| a.fill(0));
            h.ece = [0; ECE_BINS];
            h.ece_positive = [0; ECE_BINS];
        }
    }

    pub fn add(&mut self, c: &Contribution) {
        self.s.add(c);
        if let Some(h) = &mut self.h {
            if let Some((bin, _)) = c.latency() {
                h.latency[bin as usize] += 1;
            }
            if let Some((bin, _)) = c.score() {
                h.drift[bin as usize] += 1;
            }
        }
    }

    pub fn add_quality(&mut self, q: &Quality) {
        self.s.add_quality(q);
        if let Some(h) = &mut self.h {
            h.auc[usize::from(!q.positive)][q.auc_bin as usize] += 1;
            h.ece[q.ece_bin as usize] += 1;
            h.ece_positive[q.ece_bin as usize] += u64::from(q.positive);
        }
    }

    /// Adds `o` (its histograms only if this arm keeps them).
    pub fn merge(&mut self, o: &ArmStats) {
        self.s.merge(&o.s);
        let (Some(h), Some(o)) = (&mut self.h, &o.h) else { return };
        for (a, b) in h.latency.iter_mut().zip(o.latency.iter()) {
            *a += b;
        }
        for (a, b) in h.drift.iter_mut().zip(&o.drift) {
            *a += b;
        }
        for k in 0..2 {
            for (a, b) in h.auc[k].iter_mut().zip(o.auc[k].iter()) {
                *a += b;
            }
        }
        for (a, b) in h.ece.iter_mut().zip(&o.ece) {
            *a += b;
        }
        for (a, b) in h.ece_positive.iter_mut().zip(&o.ece_positive) {
            *a += b;
        }
    }

    /// These statistics without their histograms (the tests' comparison of windows built without).
    #[cfg(test)]
    pub fn scalars_only(&self) -> Self {
        Self { s: self.s, h: None }
    }

    #[cfg(test)]
    fn add_packed(&mut self, p: &Packed) {
        self.s.merge(&p.s);
        let Some(h) = &mut self.h else { return };
        for &position in &p.bins {
            h.bump(position, 1);
        }
    }

    /// Sample size for a metric: requests, or labelled requests for quality metrics.
    pub fn n(&self, metric: Metric) -> u64 {
        if metric.needs_labels() {
            self.s.labelled
        } else if matches!(metric, Metric::LatencyMean | Metric::LatencyP50 | Metric::LatencyP95 | Metric::LatencyP99) {
            self.s.latency.n
        } else if matches!(metric, Metric::ScoreMean) || metric.is_drift() {
            self.s.score.n
        } else {
            self.s.requests
        }
    }

    /// The metric's value on this arm (drift metrics need both arms: see [`drift_between`]).
    pub fn value(&self, metric: Metric) -> Option<f64> {
        let s = &self.s;
        let share = |k: u64, n: u64| (n > 0).then(|| k as f64 / n as f64);
        match metric {
            Metric::ErrorRate => share(s.errors, s.requests),
            Metric::LatencyMean => s.latency.mean(),
            Metric::LatencyP50 => self.latency_quantile(0.50),
            Metric::LatencyP95 => self.latency_quantile(0.95),
            Metric::LatencyP99 => self.latency_quantile(0.99),
            Metric::ScoreMean => s.score.mean(),
            Metric::Accuracy => share(s.correct, s.labelled),
            Metric::LogLoss => s.log_loss.mean(),
            Metric::Brier => s.brier.mean(),
            Metric::ExpectedCost => s.cost.mean(),
            Metric::Mae => s.absolute.mean(),
            Metric::Rmse => s.brier.mean().map(f64::sqrt),
            Metric::Auc => self.auc_and_variance().map(|(a, _)| a),
            Metric::Ece => self.ece(),
            Metric::ScorePsi | Metric::ScoreJs | Metric::ScoreWasserstein => None,
        }
    }

    /// (estimate, variance of the estimate) for metrics with a difference test.
    pub fn estimate(&self, metric: Metric) -> Option<(f64, f64)> {
        match metric.statistic() {
            Statistic::Proportion => {
                let c = match metric {
                    Metric::ErrorRate => Counts::new(self.s.errors, self.s.requests),
                    _ => Counts::new(self.s.correct, self.s.labelled),
                };
                Some((c.rate()?, c.variance_of_rate()?))
            }
            Statistic::Mean => match metric {
                Metric::LatencyMean => self.s.latency.mean_and_variance(),
                Metric::ScoreMean => self.s.score.mean_and_variance(),
                Metric::LogLoss => self.s.log_loss.mean_and_variance(),
                Metric::Brier => self.s.brier.mean_and_variance(),
                Metric::ExpectedCost => self.s.cost.mean_and_variance(),
                Metric::Mae => self.s.absolute.mean_and_variance(),
                _ => None,
            },
            Statistic::Auc => self.auc_and_variance(),
            Statistic::Point => None,
        }
    }

    fn latency_quantile(&self, p: f64) -> Option<f64> {
        latency_quantile_of(&self.hist().latency, p)
    }

    /// AUC from the class histograms (ties within a bin) and its Hanley-McNeil variance.
    fn auc_and_variance(&self) -> Option<(f64, f64)> {
        let auc = &self.hist().auc;
        let (p, q) = (auc[0].iter().sum::<u64>() as f64, auc[1].iter().sum::<u64>() as f64);
        if p == 0.0 || q == 0.0 {
            return None;
        }
        let mut below = 0.0;
        let mut wins = 0.0;
        for (&positive, &negative) in auc[0].iter().zip(&auc[1]) {
            wins += positive as f64 * (below + negative as f64 / 2.0);
            below += negative as f64;
        }
        let a = wins / (p * q);
        let (q1, q2) = (a / (2.0 - a), 2.0 * a * a / (1.0 + a));
        let variance = (a * (1.0 - a) + (p - 1.0) * (q1 - a * a) + (q - 1.0) * (q2 - a * a)) / (p * q);
        Some((a, variance.max(0.0)))
    }

    fn ece(&self) -> Option<f64> {
        let h = self.hist();
        let n: u64 = h.ece.iter().sum();
        (n > 0).then(|| {
            (0..ECE_BINS)
                .filter(|&b| h.ece[b] > 0)
                .map(|b| {
                    let k = h.ece[b] as f64;
                    (k / n as f64) * (h.ece_positive[b] as f64 / k - unfixed(self.s.ece_score[b]) / k).abs()
                })
                .sum()
        })
    }
}

/// Drift of the candidate's scores from the stable model's (stable is the reference).
pub fn drift_between(metric: Metric, stable: &ArmStats, candidate: &ArmStats, bins: &ScoreBins) -> Option<f64> {
    let (stable_bins, candidate_bins) = (&stable.hist().drift, &candidate.hist().drift);
    let (ns, nc) = (stable_bins.iter().sum::<u64>() as f64, candidate_bins.iter().sum::<u64>() as f64);
    if ns == 0.0 || nc == 0.0 {
        return None;
    }
    let r: Vec<f64> = stable_bins.iter().map(|c| *c as f64 / ns).collect();
    let c: Vec<f64> = candidate_bins.iter().map(|x| *x as f64 / nc).collect();
    match metric {
        Metric::ScorePsi => {
            let (mut r, mut c) = (r, c);
            drift::fill_zeros(&mut r);
            drift::fill_zeros(&mut c);
            Some(drift::psi_of_shares(&r, &c))
        }
        Metric::ScoreJs => Some(drift::js_of_shares(&r, &c)),
        Metric::ScoreWasserstein => {
            let (_, variance) = stable.s.score.mean_and_variance()?;
            let sd = (variance * stable.s.score.n as f64).sqrt();
            if sd <= 0.0 {
                return None;
            }
            let (mut cr, mut cc, mut total) = (0.0, 0.0, 0.0);
            for bin in 0..DRIFT_BINS - 1 {
                cr += r[bin];
                cc += c[bin];
                total += (cr - cc).abs() * (bins.centre(bin + 1, DRIFT_BINS) - bins.centre(bin, DRIFT_BINS));
            }
            Some(total / sd)
        }
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests;
