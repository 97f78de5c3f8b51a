//! Summaries encoded: a key's arm statistics as variable-length integers and histogram runs,
//! keeping only what the metrics read ([`Needs`]).

use crate::policy::Metric;

use super::{ArmStats, Contribution, Hist, Histograms, Quality, Scalars, Sums, LATENCY_BINS};

/// Pre-aggregated statistics of a group of requests (a key of the fast path) while it is folded:
/// the scalars, and the histogram bins each request touched (their positions, one per increment,
/// counted when [encoded](Packed::encode)).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Packed {
    pub(super) s: Scalars,
    pub(super) bins: Vec<u32>,
}

impl Packed {
    pub(super) fn bump(&mut self, hist: Hist, bin: usize) {
        self.bins.push(hist as u32 * HIST_STRIDE + bin as u32);
    }

    /// Makes room for the bins of `n` more requests or labels (a request touches at most two
    /// histograms, a label three).
    pub fn reserve(&mut self, n: usize) {
        self.bins.reserve(3 * n);
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

    /// Appends this summary to `out` compactly — a mask of the fields `needs` keeps that are not
    /// zero, those fields as variable-length integers (a sum of squares as its excess over the
    /// least it can be), and unless `needs` keeps no histogram the histogram bins by their
    /// distance from the previous one after their length — about 5 to 150 bytes instead of a
    /// struct of 560 and its bins. [`ArmStats::add_encoded`] with the same `needs` reads it back
    /// exactly.
    pub fn encode(&self, needs: &Needs, out: &mut Vec<u8>) {
        encode_parts(&self.s, self.runs(needs), needs, out);
    }

    /// [`Packed::encode`] of this summary plus the one encoded (with the same `needs`) at the start
    /// of `earlier` — a key folded in parts, as its labels arrive — byte for byte what encoding all
    /// of it at once gives.
    pub fn encode_after(&self, earlier: &[u8], needs: &Needs, out: &mut Vec<u8>) {
        let mut s = self.s;
        let (bins, _) = read_encoded(earlier, &mut s, needs);
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
    pub(super) fn runs(&self, needs: &Needs) -> impl Iterator<Item = (u32, u64)> {
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
pub(super) const HIST_STRIDE: u32 = LATENCY_BINS as u32;
pub(super) const HISTS: [Hist; 6] = [Hist::Latency, Hist::Drift, Hist::AucPositive, Hist::AucNegative, Hist::Ece, Hist::EcePositive];

/// Appends `v` in LEB128 (7 bits a byte, the high bit saying more follow).
pub(in crate::simulate) fn put(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a LEB128 integer at `bytes[*at..]` into `v`, moving `at` past it. Most are one byte (an
/// index's keys and lengths, counts) and are read without the loop.
#[inline]
pub(in crate::simulate) fn take(bytes: &[u8], at: &mut usize, v: &mut u128) {
    let first = bytes[*at];
    if first < 0x80 {
        *at += 1;
        *v = u128::from(first);
        return;
    }
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
    put(out, u128::from(needs.narrow(mask)));
    for (_, v) in fields.iter().enumerate().filter(|(k, _)| mask >> k & 1 == 1) {
        put(out, *v);
    }
    if needs.hists == 0 {
        return;
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

/// ⌊(Σx)² / n⌋, the least Σx² of n integers summing to Σx (Cauchy–Schwarz): a summary writes
/// its Σx² as what exceeds this — nothing at all for a single value, a short number for values
/// close together (a key of one label took 7 bytes more a model for its log loss's Σx²). Wrapping
/// as the sums would, so writing and reading agree whatever the values.
pub(super) fn least_sum_sq(n: u64, sum: i128) -> i128 {
    let a = sum.unsigned_abs();
    match n {
        0 => 0,
        1 => a.wrapping_mul(a) as i128,
        // a² / n = q·a + q·r + r² / n for a = q·n + r; in 64 bits when they hold a, n and r² (a
        // 128-bit division is a library call).
        _ if a <= u128::from(u64::MAX) && n <= u64::from(u32::MAX) => {
            let (a, n) = (a as u64, n);
            let (q, r) = (a / n, a % n);
            (u128::from(q) * u128::from(a) + u128::from(q) * u128::from(r) + u128::from(r * r / n)) as i128
        }
        _ => {
            let n = u128::from(n);
            let (q, r) = (a / n, a % n);
            q.wrapping_mul(a).wrapping_add(q.wrapping_mul(r)).wrapping_add(r * r / n) as i128
        }
    }
}

/// The scalars in [`Packed::encode`]'s order: 33 fields, of them six groups of sums (n, Σx, Σx²)
/// from field [`SUMS_AT`] on, then the ECE scores.
const FIELDS: usize = 33;
const SUMS: usize = 6;
const SUMS_AT: usize = 5;
const ECE_AT: usize = SUMS_AT + 3 * SUMS;

/// The group of sums field `k` belongs to and its part (0: n, 1: Σx, 2: Σx²), if it is one.
fn sum_field(k: usize) -> Option<(usize, usize)> {
    (SUMS_AT..ECE_AT).contains(&k).then(|| ((k - SUMS_AT) / 3, (k - SUMS_AT) % 3))
}

impl Scalars {
    pub(super) fn fields(&self) -> [u128; FIELDS] {
        let mut f = [0u128; FIELDS];
        let sums = [&self.latency, &self.score, &self.log_loss, &self.brier, &self.cost, &self.absolute];
        f[0] = u128::from(self.requests);
        f[1] = u128::from(self.errors);
        f[2] = u128::from(self.labelled);
        f[3] = u128::from(self.positives);
        f[4] = u128::from(self.correct);
        for (k, s) in sums.iter().enumerate() {
            f[SUMS_AT + 3 * k] = u128::from(s.n);
            f[SUMS_AT + 1 + 3 * k] = zigzag(s.sum);
            f[SUMS_AT + 2 + 3 * k] = zigzag(s.sum_sq.wrapping_sub(least_sum_sq(s.n, s.sum)));
        }
        for (k, e) in self.ece_score.iter().enumerate() {
            f[ECE_AT + k] = zigzag(*e);
        }
        f
    }

    /// Group `g` of the sums in [`Scalars::fields`]' order.
    fn sums_mut(&mut self, g: usize) -> &mut Sums {
        match g {
            0 => &mut self.latency,
            1 => &mut self.score,
            2 => &mut self.log_loss,
            3 => &mut self.brier,
            4 => &mut self.cost,
            _ => &mut self.absolute,
        }
    }

    /// Adds field `k` of [`Scalars::fields`]' order.
    pub(super) fn add_field(&mut self, k: usize, v: u128) {
        if let Some((g, part)) = sum_field(k) {
            let s = self.sums_mut(g);
            match part {
                0 => s.n += v as u64,
                1 => s.sum += unzigzag(v),
                _ => s.sum_sq = s.sum_sq.wrapping_add(unzigzag(v)),
            }
            return;
        }
        match k {
            0 => self.requests += v as u64,
            1 => self.errors += v as u64,
            2 => self.labelled += v as u64,
            3 => self.positives += v as u64,
            4 => self.correct += v as u64,
            _ => self.ece_score[k - ECE_AT] += unzigzag(v),
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

    /// The fields of `mask` that these keep, one bit each in order (a summary's mask of the
    /// fields it writes: a request key of the default policy's needs one byte for it, not two).
    fn narrow(&self, mask: u64) -> u64 {
        if self.fields == Needs::ALL.fields {
            return mask;
        }
        let (mut out, mut fields, mut bit) = (0, self.fields, 0);
        while fields != 0 {
            let k = fields.trailing_zeros();
            out |= (mask >> k & 1) << bit;
            fields &= fields - 1;
            bit += 1;
        }
        out
    }

    /// The mask that [`Needs::narrow`] gave `narrow`.
    fn widen(&self, mut narrow: u64) -> u64 {
        if self.fields == Needs::ALL.fields {
            return narrow;
        }
        let (mut out, mut fields) = (0, self.fields);
        while narrow != 0 && fields != 0 {
            if narrow & 1 == 1 {
                out |= fields & fields.wrapping_neg();
            }
            narrow >>= 1;
            fields &= fields - 1;
        }
        out
    }

    pub(super) fn keeps_bin(&self, position: u32) -> bool {
        self.hists >> (position / HIST_STRIDE) & 1 == 1
    }
}

/// A summary [`Packed::encode`] wrote, its scalars read, its bins still encoded.
pub struct Decoded<'b> {
    pub(super) s: Scalars,
    bins: &'b [u8],
}

impl<'b> Decoded<'b> {
    /// The summary encoded with `needs` at the start of `bytes`, and the bytes it takes.
    pub fn read(bytes: &'b [u8], needs: &Needs) -> (Self, usize) {
        let mut s = Scalars::default();
        let (bins, len) = read_encoded(bytes, &mut s, needs);
        (Decoded { s, bins }, len)
    }
}

/// Adds the scalar fields of the summary encoded with `needs` at the start of `bytes` to `s`;
/// returns its encoded bins and the bytes the summary takes.
fn read_encoded<'b>(bytes: &'b [u8], s: &mut Scalars, needs: &Needs) -> (&'b [u8], usize) {
    let (mut at, mut narrow) = (0, 0u128);
    take(bytes, &mut at, &mut narrow);
    let mut mask = needs.widen(narrow as u64);
    let mut v = 0u128;
    // This summary's n and Σx of each group of sums, whose least Σx² its Σx² field leaves out.
    let mut own = [(0u64, 0i128); SUMS];
    while mask != 0 {
        let k = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        take(bytes, &mut at, &mut v);
        match sum_field(k) {
            Some((g, 0)) => own[g].0 = v as u64,
            Some((g, 1)) => own[g].1 = unzigzag(v),
            _ => {}
        }
        s.add_field(k, v);
    }
    for (g, (n, sum)) in own.into_iter().enumerate().filter(|(_, (n, _))| *n > 0) {
        let sums = s.sums_mut(g);
        sums.sum_sq = sums.sum_sq.wrapping_add(least_sum_sq(n, sum));
    }
    if needs.hists == 0 {
        return (&[], at);
    }
    let mut len = 0u128;
    take(bytes, &mut at, &mut len);
    let end = at + len as usize;
    (&bytes[at..end], end)
}

impl Histograms {
    /// Adds encoded bins ([`Packed::encode`]).
    pub(super) fn add_encoded(&mut self, bins: &[u8]) {
        for (position, n) in encoded_runs(bins) {
            self.bump(position, n);
        }
    }
}

impl ArmStats {
    /// Adds a summary [`Packed::encode`] wrote at the start of `bytes`; returns the bytes it took.
    /// The scalars go straight into this arm (reading them into a [`Decoded`] first, then merging,
    /// made the controllers' queries 1.8× slower at 100×).
    pub fn add_encoded(&mut self, bytes: &[u8], needs: &Needs) -> usize {
        let (bins, len) = read_encoded(bytes, &mut self.s, needs);
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
