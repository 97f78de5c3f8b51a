//! The fast path: every window answered from mergeable summaries instead of rows.
//!
//! One pass over the replay builds summaries keyed by (time bucket × cell × hash band). A time
//! bucket is one check interval; a cell is a combination of segment values; a hash band is the
//! range of routing hashes between two consecutive weights the policy can use, so "u < w" is a set
//! of whole bands for every such w. Each key holds two [`Packed`] summaries: what the stable model
//! and what the candidate returned for those requests (both are known offline; routing picks one
//! per band at query time). Label arrivals are summarised separately by (arrival bucket × request
//! bucket × cell × band), so a check counts exactly the labels that had arrived.
//!
//! A window is the sum of its buckets. Windows only grow during a stage, so each check adds just
//! the buckets since the previous one; a new stage (or a sliding window) starts from its first
//! bucket. The cost of a policy evaluation therefore grows with buckets × cells × bands, not with
//! requests — a day of 10,000 requests per second is 24 hourly buckets per cell. All sums are
//! integers, so the results equal the reference simulator's bit for bit.

use super::metrics::{Packed, Scale};
use super::replay::Replay;
use super::window::{Scopes, WindowStats};
use super::Source;
use crate::error::{Error, Result};
use crate::time::Micros;

/// Summaries of one (bucket, cell, band): [stable output, candidate output].
type Pair = [Packed; 2];

pub struct Fast<'a> {
    scopes: &'a Scopes,
    origin: Micros,
    width: Micros,
    /// Routing weights that start a band, ascending, all in (0, 1).
    cuts: Vec<f64>,
    /// (bucket, cell, band) → request summaries, sorted.
    requests: Vec<((u32, u32, u8), Pair)>,
    /// (arrival bucket, request bucket, cell, band) → label summaries, sorted by arrival.
    labels: Vec<((u32, u32, u32, u8), Pair)>,
    stats: WindowStats,
    /// What `stats` holds: buckets [start, end) at these weights.
    state: Option<(u32, u32, Vec<f64>)>,
}

impl<'a> Fast<'a> {
    /// Summarises the replay for routing `salt`, weights `weights` and buckets of `width` from `origin`.
    pub fn build(replay: &Replay, salt: &str, weights: &[f64], scopes: &'a Scopes, scale: Scale, origin: Micros, width: Micros) -> Result<Self> {
        let mut cuts: Vec<f64> = weights.iter().copied().filter(|w| *w > 0.0 && *w < 1.0).collect();
        cuts.sort_by(f64::total_cmp);
        cuts.dedup();
        let bucket = |t: Micros| -> u32 { (t - origin).div_euclid(width).max(0) as u32 };
        let mut requests: std::collections::BTreeMap<(u32, u32, u8), Pair> = Default::default();
        let mut labels: std::collections::BTreeMap<(u32, u32, u32, u8), Pair> = Default::default();
        replay.for_each_row(salt, |row| {
            let band = cuts.partition_point(|c| *c <= row.u) as u8;
            let b = bucket(row.time);
            let pair = requests.entry((b, row.cell, band)).or_default();
            for (m, out) in row.outputs.iter().enumerate() {
                pair[m].add(&scale.contribution(out));
            }
            if let (Some(y), Some(lt)) = (row.label, row.label_time) {
                let arrival = bucket(lt).max(b);
                let pair = labels.entry((arrival, b, row.cell, band)).or_default();
                for (m, out) in row.outputs.iter().enumerate() {
                    if let Some(q) = scale.quality(out, y) {
                        pair[m].add_quality(&q);
                    }
                }
            }
        })?;
        if cuts.len() > u8::MAX as usize {
            return Err(Error::Internal("too many distinct routing weights".into()));
        }
        Ok(Self {
            scopes,
            origin,
            width,
            cuts,
            requests: requests.into_iter().collect(),
            labels: labels.into_iter().collect(),
            stats: WindowStats::new(scopes.len()),
            state: None,
        })
    }

    /// Summaries stored (for the benchmark): (request keys, label keys).
    pub fn size(&self) -> (usize, usize) {
        (self.requests.len(), self.labels.len())
    }

    fn bucket_of(&self, t: Micros) -> u32 {
        (t - self.origin).div_euclid(self.width).max(0) as u32
    }

    /// Whether a band serves the candidate at weight `w`: u < w for every u in the band.
    fn candidate_band(&self, band: u8, w: f64) -> bool {
        if w >= 1.0 {
            return true;
        }
        match self.cuts.iter().position(|c| *c == w) {
            Some(k) => (band as usize) <= k,
            None => panic!("routing weight {w} is not one of the fast path's cuts {:?}", self.cuts),
        }
    }

    fn add_buckets(&mut self, start: u32, from: u32, to: u32, weights: &[f64]) {
        let a = self.requests.partition_point(|(k, _)| k.0 < from);
        let b = self.requests.partition_point(|(k, _)| k.0 < to);
        for i in a..b {
            let ((_, cell, band), _) = self.requests[i];
            let w = weights[cell as usize];
            if !(w > 0.0 && w < 1.0) {
                continue;
            }
            let arm = usize::from(self.candidate_band(band, w));
            for &s in &self.scopes.of_cell[cell as usize] {
                self.requests[i].1[arm].add_to(self.stats.arm(s, w, arm));
            }
        }
        let a = self.labels.partition_point(|(k, _)| k.0 < from);
        let b = self.labels.partition_point(|(k, _)| k.0 < to);
        for i in a..b {
            let ((_, requested, cell, band), _) = self.labels[i];
            let w = weights[cell as usize];
            if requested < start || !(w > 0.0 && w < 1.0) {
                continue;
            }
            let arm = usize::from(self.candidate_band(band, w));
            for &s in &self.scopes.of_cell[cell as usize] {
                self.labels[i].1[arm].add_to(self.stats.arm(s, w, arm));
            }
        }
    }
}

impl Source for Fast<'_> {
    fn window(&mut self, start: Micros, end: Micros, weights: &[f64]) -> &WindowStats {
        let (start, end) = (self.bucket_of(start), self.bucket_of(end));
        let extend = matches!(&self.state, Some((s, e, w)) if *s == start && *e <= end && w.as_slice() == weights);
        let from = if extend {
            self.state.as_ref().expect("checked").1
        } else {
            self.stats.clear();
            start
        };
        self.add_buckets(start, from, end, weights);
        self.state = Some((start, end, weights.to_vec()));
        &self.stats
    }

    fn served(&mut self, start: Micros, end: Micros, weights: &[f64]) -> Vec<[u64; 2]> {
        let (start, end) = (self.bucket_of(start), self.bucket_of(end));
        let mut out = vec![[0u64; 2]; self.scopes.len()];
        let a = self.requests.partition_point(|(k, _)| k.0 < start);
        let b = self.requests.partition_point(|(k, _)| k.0 < end);
        for ((_, cell, band), pair) in &self.requests[a..b] {
            let w = weights[*cell as usize];
            let arm = usize::from(w > 0.0 && self.candidate_band(*band, w));
            for &s in &self.scopes.of_cell[*cell as usize] {
                out[s][arm] += pair[arm].requests();
            }
        }
        out
    }

    fn oracle(&mut self, start: Micros, end: Micros) -> WindowStats {
        let (start, end) = (self.bucket_of(start), self.bucket_of(end));
        let mut stats = WindowStats::new(self.scopes.len());
        let a = self.requests.partition_point(|(k, _)| k.0 < start);
        let b = self.requests.partition_point(|(k, _)| k.0 < end);
        for ((_, cell, _), pair) in &self.requests[a..b] {
            for &s in &self.scopes.of_cell[*cell as usize] {
                for (arm, packed) in pair.iter().enumerate() {
                    packed.add_to(stats.arm(s, 1.0, arm));
                }
            }
        }
        for ((_, requested, cell, _), pair) in &self.labels {
            if *requested < start || *requested >= end {
                continue;
            }
            for &s in &self.scopes.of_cell[*cell as usize] {
                for (arm, packed) in pair.iter().enumerate() {
                    packed.add_to(stats.arm(s, 1.0, arm));
                }
            }
        }
        stats
    }
}
