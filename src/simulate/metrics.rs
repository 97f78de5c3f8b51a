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

/// Pre-aggregated statistics of a group of requests (a key of the fast path) while it is folded:
/// the scalars, and the histogram bins each request touched (their positions, one per increment,
/// counted when [encoded](Packed::encode)).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Packed {
    s: Scalars,
    bins: Vec<u32>,
}

impl Packed {
    fn bump(&mut self, hist: Hist, bin: usize) {
        self.bins.push(hist as u32 * HIST_STRIDE + bin as u32);
    }

    pub fn add(&mut self, c: &Contribution) {
        self.s.add(c);
        if let Some((bin, _)) = c.latency() {
            self.bump(Hist::Latency, bin as usize);
        }
        if let Some((bin, _)) = c.score() {
            self.bump(Hist::Drift, bin as usize);
        }
    }

    pub fn add_quality(&mut self, q: &Quality) {
        self.s.add_quality(q);
        self.bump(if q.positive { Hist::AucPositive } else { Hist::AucNegative }, q.auc_bin as usize);
        self.bump(Hist::Ece, q.ece_bin as usize);
        if q.positive {
            self.bump(Hist::EcePositive, q.ece_bin as usize);
        }
    }

    /// Adds these statistics, as they are (the tests' check of the encoding).
    #[cfg(test)]
    pub fn add_to(&self, stats: &mut ArmStats) {
        stats.add_packed(self);
    }

    /// Appends this summary to `out` compactly — the fields that are not zero as variable-length
    /// integers, the histogram bins by their distance from the previous one — about 20 to 150 bytes
    /// instead of a struct of 560 and its bins. [`ArmStats::add_encoded`] reads it back exactly.
    pub fn encode(&self, needs: &Needs, out: &mut Vec<u8>) {
        encode_parts(&self.s, self.runs(needs), needs, out);
    }

    /// [`Packed::encode`] of this summary plus the one encoded (with the same `needs`) at the start
    /// of `earlier` — a key folded in parts, as its labels arrive — byte for byte what encoding all
    /// of it at once gives.
    pub fn encode_after(&self, earlier: &[u8], needs: &Needs, out: &mut Vec<u8>) {
        let mut s = self.s;
        let (bins, _) = read_encoded(earlier, &mut s);
        let (mut merged, mut mine) = (Vec::new(), self.runs(needs).peekable());
        for (position, n) in encoded_runs(bins) {
            while let Some(&(p, m)) = mine.peek().filter(|(p, _)| *p < position) {
                merged.push((p, m));
                mine.next();
            }
            let more = mine.next_if(|(p, _)| *p == position).map_or(0, |(_, m)| m);
            merged.push((position, n + more));
        }
        merged.extend(mine);
        encode_parts(&s, merged.into_iter(), needs, out);
    }

    /// The bins `needs` keeps, as (position, count) in ascending position.
    fn runs(&self, needs: &Needs) -> impl Iterator<Item = (u32, u64)> {
        let mut bins: Vec<u32> = self.bins.iter().copied().filter(|b| needs.keeps_bin(*b)).collect();
        bins.sort_unstable();
        let runs: Vec<(u32, u64)> = bins.chunk_by(|a, b| a == b).map(|run| (run[0], run.len() as u64)).collect();
        runs.into_iter()
    }

    /// The requests of a summary [`Packed::encode`] wrote at the start of `bytes`.
    pub fn encoded_requests(bytes: &[u8]) -> u64 {
        let (mut at, mut mask) = (0, 0u128);
        take(bytes, &mut at, &mut mask);
        if mask & 1 == 0 {
            return 0;
        }
        let mut requests = 0u128;
        take(bytes, &mut at, &mut requests);
        requests as u64
    }
}

/// Bins of one histogram before the next starts, in [`Packed::encode`]'s bin positions.
const HIST_STRIDE: u32 = LATENCY_BINS as u32;
const HISTS: [Hist; 6] = [Hist::Latency, Hist::Drift, Hist::AucPositive, Hist::AucNegative, Hist::Ece, Hist::EcePositive];

/// Appends `v` in LEB128 (7 bits a byte, the high bit saying more follow).
fn put(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a LEB128 integer at `bytes[*at..]` into `v`, moving `at` past it.
fn take(bytes: &[u8], at: &mut usize, v: &mut u128) {
    let (mut x, mut shift) = (0u128, 0);
    loop {
        let b = bytes[*at];
        *at += 1;
        x |= u128::from(b & 0x7f) << shift;
        if b < 0x80 {
            break;
        }
        shift += 7;
    }
    *v = x;
}

/// Writes scalars (the fields `needs` keeps that are not zero, after their mask) and bin runs in [`Packed::encode`]'s form.
fn encode_parts(s: &Scalars, runs: impl Iterator<Item = (u32, u64)>, needs: &Needs, out: &mut Vec<u8>) {
    let fields = s.fields();
    let mask = fields.iter().enumerate().filter(|(k, v)| **v != 0 && needs.fields >> k & 1 == 1).fold(0u64, |m, (k, _)| m | 1 << k);
    put(out, u128::from(mask));
    for (_, v) in fields.iter().enumerate().filter(|(k, _)| mask >> k & 1 == 1) {
        put(out, *v);
    }
    // The bins after their length in bytes, so a reader without histograms skips them.
    let (mut section, mut previous) = (Vec::new(), 0);
    for (position, n) in runs {
        put(&mut section, u128::from(position - previous));
        put(&mut section, u128::from(n));
        previous = position;
    }
    put(out, section.len() as u128);
    out.extend_from_slice(&section);
}

/// The (position, count) runs of encoded bins.
fn encoded_runs(bins: &[u8]) -> impl Iterator<Item = (u32, u64)> + '_ {
    let (mut at, mut position) = (0, 0u32);
    std::iter::from_fn(move || {
        (at < bins.len()).then(|| {
            let (mut step, mut n) = (0u128, 0u128);
            take(bins, &mut at, &mut step);
            take(bins, &mut at, &mut n);
            position += step as u32;
            (position, n as u64)
        })
    })
}

/// Signed sums as unsigned (zigzag: 0, -1, 1, -2 → 0, 1, 2, 3) for [`put`].
fn zigzag(x: i128) -> u128 {
    ((x << 1) ^ (x >> 127)) as u128
}

fn unzigzag(x: u128) -> i128 {
    ((x >> 1) as i128) ^ -((x & 1) as i128)
}

/// The scalars in [`Packed::encode`]'s order: 33 fields.
const FIELDS: usize = 33;

impl Scalars {
    fn fields(&self) -> [u128; FIELDS] {
        let mut f = [0u128; FIELDS];
        let sums = [&self.latency, &self.score, &self.log_loss, &self.brier, &self.cost, &self.absolute];
        f[0] = u128::from(self.requests);
        f[1] = u128::from(self.errors);
        f[2] = u128::from(self.labelled);
        f[3] = u128::from(self.positives);
        f[4] = u128::from(self.correct);
        for (k, s) in sums.iter().enumerate() {
            f[5 + 3 * k] = u128::from(s.n);
            f[6 + 3 * k] = zigzag(s.sum);
            f[7 + 3 * k] = zigzag(s.sum_sq);
        }
        for (k, e) in self.ece_score.iter().enumerate() {
            f[23 + k] = zigzag(*e);
        }
        f
    }

    /// Adds field `k` of [`Scalars::fields`]' order.
    fn add_field(&mut self, k: usize, v: u128) {
        let sum = |s: &mut Sums, part: usize| match part {
            0 => s.n += v as u64,
            1 => s.sum += unzigzag(v),
            _ => s.sum_sq += unzigzag(v),
        };
        match k {
            0 => self.requests += v as u64,
            1 => self.errors += v as u64,
            2 => self.labelled += v as u64,
            3 => self.positives += v as u64,
            4 => self.correct += v as u64,
            5..=7 => sum(&mut self.latency, k - 5),
            8..=10 => sum(&mut self.score, k - 8),
            11..=13 => sum(&mut self.log_loss, k - 11),
            14..=16 => sum(&mut self.brier, k - 14),
            17..=19 => sum(&mut self.cost, k - 17),
            20..=22 => sum(&mut self.absolute, k - 20),
            _ => self.ece_score[k - 23] += unzigzag(v),
        }
    }
}

/// What an index keeps of its folded summaries: the scalar fields (in `Scalars::fields`' order)
/// and histograms some metric reads. A policy's index keeps what its gates, its grading and the
/// live controllers' queries read, so a key of a policy without quality-histogram gates holds no
/// AUC or calibration bins; the fields left out read as zero, and no metric it asks for reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    fields: u64,
    hists: u8,
}

impl Needs {
    /// Everything (an index shared by policies not known in advance).
    pub const ALL: Needs = Needs { fields: (1 << FIELDS) - 1, hists: (1 << HISTS.len()) - 1 };

    /// What `metrics` read: requests, errors, labelled and positive counts always.
    pub fn of(metrics: impl IntoIterator<Item = Metric>) -> Needs {
        let range = |a: u32, b: u32| ((1u64 << (b + 1)) - 1) & !((1u64 << a) - 1);
        let hist = |h: Hist| 1u8 << h as u8;
        let mut needs = Needs { fields: range(0, 3), hists: 0 };
        for metric in metrics {
            let (fields, hists) = match metric {
                Metric::ErrorRate => (0, 0),
                Metric::LatencyMean => (range(5, 7), 0),
                Metric::LatencyP50 | Metric::LatencyP95 | Metric::LatencyP99 => (range(5, 7), hist(Hist::Latency)),
                Metric::ScoreMean => (range(8, 10), 0),
                Metric::ScorePsi | Metric::ScoreJs | Metric::ScoreWasserstein => (range(8, 10), hist(Hist::Drift)),
                Metric::Accuracy => (range(4, 4), 0),
                Metric::LogLoss => (range(11, 13), 0),
                Metric::Brier | Metric::Rmse => (range(14, 16), 0),
                Metric::ExpectedCost => (range(17, 19), 0),
                Metric::Mae => (range(20, 22), 0),
                Metric::Auc => (0, hist(Hist::AucPositive) | hist(Hist::AucNegative)),
                Metric::Ece => (range(23, 32), hist(Hist::Ece) | hist(Hist::EcePositive)),
            };
            needs.fields |= fields;
            needs.hists |= hists;
        }
        needs
    }

    /// Whether everything `other` needs is kept.
    pub fn covers(&self, other: &Needs) -> bool {
        self.fields & other.fields == other.fields && self.hists & other.hists == other.hists
    }

    fn keeps_bin(&self, position: u32) -> bool {
        self.hists >> (position / HIST_STRIDE) & 1 == 1
    }
}

/// A summary [`Packed::encode`] wrote, its scalars read, its bins still encoded.
pub struct Decoded<'b> {
    s: Scalars,
    bins: &'b [u8],
}

impl<'b> Decoded<'b> {
    /// The summary at the start of `bytes`, and the bytes it takes.
    pub fn read(bytes: &'b [u8]) -> (Self, usize) {
        let mut s = Scalars::default();
        let (bins, len) = read_encoded(bytes, &mut s);
        (Decoded { s, bins }, len)
    }
}

/// Adds the scalar fields of the summary at the start of `bytes` to `s`; returns its encoded bins
/// and the bytes the summary takes.
fn read_encoded<'b>(bytes: &'b [u8], s: &mut Scalars) -> (&'b [u8], usize) {
    let (mut at, mut mask) = (0, 0u128);
    take(bytes, &mut at, &mut mask);
    let mut v = 0u128;
    while mask != 0 {
        let k = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        take(bytes, &mut at, &mut v);
        s.add_field(k, v);
    }
    let mut len = 0u128;
    take(bytes, &mut at, &mut len);
    let end = at + len as usize;
    (&bytes[at..end], end)
}

impl Histograms {
    /// Adds encoded bins ([`Packed::encode`]).
    fn add_encoded(&mut self, bins: &[u8]) {
        for (position, n) in encoded_runs(bins) {
            self.bump(position, n);
        }
    }
}

impl ArmStats {
    /// Adds a summary [`Packed::encode`] wrote at the start of `bytes`; returns the bytes it took.
    /// The scalars go straight into this arm (reading them into a [`Decoded`] first, then merging,
    /// made the controllers' queries 1.8× slower at 100×).
    pub fn add_encoded(&mut self, bytes: &[u8]) -> usize {
        let (bins, len) = read_encoded(bytes, &mut self.s);
        if let Some(h) = &mut self.h {
            h.add_encoded(bins);
        }
        len
    }

    /// Adds a read summary (its bins only if this arm keeps histograms).
    pub fn add_decoded(&mut self, d: &Decoded) {
        self.s.merge(&d.s);
        if let Some(h) = &mut self.h {
            h.add_encoded(d.bins);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_point_rounds_exactly_like_round() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        // Exact halves in fixed units (FIXED is a power of two), just below and above them, and extremes.
        let mut values: Vec<f64> =
            [0.5, -0.5, 1.5, 2.5, -2.5, 0.5f64.next_down(), 0.5f64.next_up(), -(2.5f64.next_down())].iter().map(|x| x / FIXED).collect();
        values.extend([0.0, -0.0, 1e300, -1e300, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 123.4567891234, -0.3]);
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            values.push((u - 0.5) * 10f64.powi((state % 24) as i32 - 12));
        }
        for x in values {
            assert_eq!(fixed(x), (x * FIXED).round() as i64, "{x:e}");
        }
        // One logarithm for 0/1 labels gives the same log loss as the general form.
        for p in [1e-12f64, 0.1, 0.37, 0.5, 0.93, 1.0 - 1e-12] {
            for y in [0.0f64, 1.0] {
                let general = -(y * p.ln() + (1.0 - y) * (1.0 - p).ln());
                let one = if y == 1.0 { -p.ln() } else { -(1.0 - p).ln() };
                assert_eq!(general.to_bits(), one.to_bits(), "p {p}, y {y}");
            }
        }
    }
    use crate::simulate::replay::Output;

    fn scale() -> Scale {
        Scale {
            bins: ScoreBins::new((0.0, 1.0)),
            threshold: 0.5,
            cost: Cost { true_positive: 0.0, false_positive: 1.0, false_negative: 5.0, true_negative: 0.0 },
            binary: true,
        }
    }

    #[test]
    fn packed_and_dense_statistics_agree_exactly() {
        let scale = scale();
        let (mut dense, mut packed) = (ArmStats::default(), Packed::default());
        for i in 0..500 {
            let out = Output {
                error: i % 17 == 0,
                score: (i % 17 != 0).then(|| (i as f64 * 0.618).fract()),
                latency_ms: Some(5.0 + (i % 23) as f64),
            };
            let c = scale.contribution(&out);
            dense.add(&c);
            packed.add(&c);
            if let Some(q) = scale.quality(&out, f64::from(u8::from(i % 3 == 0))) {
                dense.add_quality(&q);
                packed.add_quality(&q);
            }
        }
        let mut from_packed = ArmStats::default();
        packed.add_to(&mut from_packed);
        assert_eq!(dense, from_packed);
        // Encoded, after another summary (negative scores and costs included), and read back.
        let mut other = Packed::default();
        let negative = Scale { cost: Cost { true_positive: -2.0, ..scale.cost }, binary: false, ..scale };
        for i in 0..40 {
            let out = Output { error: false, score: Some(-3.0 + i as f64 * 0.1), latency_ms: (i % 3 == 0).then_some(0.5) };
            other.add(&negative.contribution(&out));
            other.add_quality(&negative.quality(&out, 1.0).unwrap());
        }
        let mut bytes = Vec::new();
        other.encode(&Needs::ALL, &mut bytes);
        let first = bytes.len();
        packed.encode(&Needs::ALL, &mut bytes);
        let (mut a, mut b) = (ArmStats::default(), ArmStats::default());
        assert_eq!(a.add_encoded(&bytes), first);
        assert_eq!(a.add_encoded(&bytes[first..]), bytes.len() - first);
        assert_eq!(a, {
            packed.add_to(&mut b);
            other.add_to(&mut b);
            b
        });
        assert_eq!((Packed::encoded_requests(&bytes), Packed::encoded_requests(&bytes[first..])), (40, 500));
        // Folded in parts (a key's labels as they arrive): the same bytes as folded at once.
        for needs in [Needs::ALL, Needs::of([Metric::Auc]), Needs::of([Metric::LatencyP95, Metric::ScoreMean])] {
            let mut both = packed.clone();
            both.s.merge(&other.s);
            both.bins.extend(&other.bins);
            let (mut at_once, mut earlier, mut in_parts) = (Vec::new(), Vec::new(), Vec::new());
            both.encode(&needs, &mut at_once);
            other.encode(&needs, &mut earlier);
            packed.encode_after(&earlier, &needs, &mut in_parts);
            assert_eq!(in_parts, at_once);
        }
        // Kept for log loss alone: log loss and the counts as before, no histogram, fewer bytes.
        let mut lean = Vec::new();
        packed.encode(&Needs::of([Metric::LogLoss]), &mut lean);
        let mut read = ArmStats::default();
        read.add_encoded(&lean);
        assert_eq!(
            (read.value(Metric::LogLoss), read.value(Metric::ErrorRate), read.n(Metric::LogLoss)),
            (dense.value(Metric::LogLoss), dense.value(Metric::ErrorRate), dense.n(Metric::LogLoss))
        );
        assert_eq!((read.value(Metric::Auc), read.value(Metric::LatencyP99), read.value(Metric::Brier)), (None, None, None));
        assert!(lean.len() * 10 < bytes.len() - first, "{} bytes for log loss alone", lean.len());
        assert!(
            Needs::ALL.covers(&Needs::of([Metric::Auc, Metric::Ece])) && !Needs::of([Metric::LogLoss]).covers(&Needs::of([Metric::Auc]))
        );
        let unpacked = std::mem::size_of::<Packed>() + packed.bins.len() * std::mem::size_of::<u32>();
        assert!((bytes.len() - first) * 2 < unpacked, "{} bytes encoded, {unpacked} unpacked", bytes.len() - first);
        assert_eq!(dense.value(Metric::ErrorRate), Some(30.0 / 500.0));
    }

    #[test]
    fn contributions_stay_small_and_round_trip() {
        // The fast path keeps two per request of a sparse key.
        assert_eq!(std::mem::size_of::<Contribution>(), 24);
        let c = scale().contribution(&Output { error: true, score: None, latency_ms: Some(12.5) });
        assert!(c.error());
        assert_eq!(c.score(), None);
        assert_eq!(c.latency().map(|(_, ms)| unfixed(i128::from(ms))), Some(12.5));
        let c = scale().contribution(&Output { error: false, score: Some(0.25), latency_ms: None });
        assert_eq!((c.error(), c.latency()), (false, None));
        assert_eq!(c.score().map(|(bin, s)| (bin, unfixed(i128::from(s)))), Some((7, 0.25)));
    }

    #[test]
    fn metrics_match_direct_computation() {
        let scale = scale();
        let mut arm = ArmStats::default();
        let scores = [0.1, 0.4, 0.35, 0.8, 0.9, 0.2, 0.7, 0.05];
        let labels = [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0];
        for (s, y) in scores.iter().zip(labels) {
            let out = Output { error: false, score: Some(*s), latency_ms: Some(10.0) };
            arm.add(&scale.contribution(&out));
            arm.add_quality(&scale.quality(&out, y).unwrap());
        }
        let ll = crate::stats::quality::log_loss(&labels, &scores).unwrap();
        assert!((arm.value(Metric::LogLoss).unwrap() - ll).abs() < 1e-6);
        assert!((arm.value(Metric::Auc).unwrap() - crate::stats::quality::auc(&labels, &scores).unwrap()).abs() < 1e-12);
        assert_eq!(arm.value(Metric::Accuracy), Some(0.875));
        // Cost: one false negative (0.35, positive) at 5, no false positives.
        assert!((arm.value(Metric::ExpectedCost).unwrap() - 5.0 / 8.0).abs() < 1e-6);
        let p99 = arm.value(Metric::LatencyP99).unwrap();
        assert!((p99 / 10.0 - 1.0).abs() < 0.02, "{p99}");
        let ece = crate::stats::quality::expected_calibration_error(&labels, &scores, 10).unwrap();
        assert!((arm.value(Metric::Ece).unwrap() - ece).abs() < 1e-6);
    }
}
