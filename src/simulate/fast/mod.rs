//! The fast path: every window answered from mergeable summaries instead of rows.
//!
//! One pass over the replay builds summaries keyed by (time bucket × cell × hash band). A time
//! bucket is one check interval; a cell is a combination of segment values; a hash band is the
//! range of routing hashes between two consecutive weights the policy can use, so "u < w" is a set
//! of whole bands for every such w. Each key holds what the stable model and what the candidate
//! returned for its requests (both are known offline; routing picks one per band at query time):
//! the rows themselves while there are few (and the index holds fewer than `KEPT_ROWS`), else
//! two [`Packed`] summaries encoded into the index's arena, keeping only what the metrics read
//! ([`Needs`]): memory grows with the keys, not the requests. Label arrivals are indexed separately
//! by (arrival bucket × request bucket × cell × band), so a check counts exactly the labels that
//! had arrived.
//!
//! A window is the sum of its buckets. Windows only grow during a stage, so each check adds just
//! the buckets since the previous one; a new stage (or a sliding window) starts from its first
//! bucket. The cost of a policy evaluation therefore grows with buckets × cells × bands, not with
//! requests — a day of 10,000 requests per second is 24 hourly buckets per cell. All sums are
//! integers, so the results equal the reference simulator's bit for bit.

mod index;

use std::collections::BTreeMap;

use super::metrics::{ArmStats, Contribution, Needs, Scale};
use super::replay::Replay;
use super::window::{Scopes, WindowStats};
use super::Source;
use crate::error::{Error, Result};
use crate::time::Micros;
pub use index::Footprint;
pub(super) use index::{Each, LabelKey, RequestKey};
use index::{Index, Labelled, Waiting, FOLD_ABOVE, KEPT_ROWS};

/// The summaries of one replay under one routing salt: built once, then read by every policy
/// evaluated on it ([`Fast`]) — a tune shares one across all its variants and threads.
#[derive(Debug)]
pub struct Summaries {
    pub(super) scale: Scale,
    pub(super) origin: Micros,
    pub(super) width: Micros,
    /// Routing weights that start a band, ascending, all in (0, 1).
    cuts: Vec<f64>,
    pub(super) requests: Index<RequestKey, [Contribution; 2]>,
    /// Sorted by arrival.
    pub(super) labels: Index<LabelKey, Labelled>,
    /// The position (in time order) of each bucket's first request, and after the last bucket the
    /// number of requests: a bucket's rows can be read back ([`super::ranged`]).
    pub(super) starts: Vec<u64>,
    /// What the folded summaries keep.
    needs: Needs,
    /// Requests per (cell, band) before every [`CHECKPOINT`]-th bucket, at `(k · cells + cell) ·
    /// bands + band`: a long period's served requests come from two checkpoints and the keys
    /// around them.
    checkpoints: Vec<u64>,
    /// The most buckets a label arrives after its request's: the label keys of requests in a
    /// range of buckets arrive before its end plus this.
    pub(super) label_lag: u32,
    cells: usize,
    /// Passes that built it side by side.
    passes: usize,
}

/// Replays with at least this many requests are indexed in two passes side by side (in unit
/// tests a few hundred, so the property tests, which hold the fast path to the reference
/// simulator, build split indexes).
#[cfg(not(test))]
const SPLIT_ABOVE: u64 = 1 << 20;
#[cfg(test)]
const SPLIT_ABOVE: u64 = 256;

/// Where a replay's index is split: at a request bucket whose first request lies within
/// `positions` (row positions in time order).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Split {
    pub bucket: u32,
    pub positions: (u64, u64),
}

/// One pass of an index build over a range of rows.
struct Pass<'a> {
    replay: &'a Replay,
    salt: &'a str,
    cuts: &'a [f64],
    scale: &'a Scale,
    grid: (Micros, Micros),
    fold_above: usize,
    needs: Needs,
}

/// What a pass built: the keys of its buckets, the position of each bucket's first request from
/// its first bucket on, and the requests it indexed.
struct Built {
    requests: Index<RequestKey, [Contribution; 2]>,
    labels: Index<LabelKey, Labelled>,
    starts: Vec<u64>,
    rows: u64,
}

impl Pass<'_> {
    /// Indexes the requests of buckets [buckets.0, buckets.1) among the rows at `positions` (all
    /// rows: `None`), keeping at most `kept` rows.
    fn build(&self, positions: Option<(u64, u64)>, (first, end): (u32, u32), kept: usize) -> Result<Built> {
        let Pass { replay, salt, cuts, scale, grid: (origin, width), fold_above, needs } = *self;
        let bucket = |t: Micros| -> u32 { (t - origin).div_euclid(width).max(0) as u32 };
        let disorder = || Error::Internal("the score cache is not in time order".into());
        // Rows come in time order, so request buckets never go back: a bucket's requests are
        // indexed when the next bucket starts, and labels once the requests reach their arrival
        // bucket (a label arrives no earlier than its request's bucket). Memory holds the index and
        // the keys of labels still in flight ([`Waiting`]), never the log.
        let (mut requests, mut labels) = (Index::new(needs, kept), Index::new(needs, kept));
        // The current bucket's requests wait like labels, folded per key as they pile up: a busy
        // bucket's requests (150,000 at 1,000×) took 16 MiB as rows.
        let (mut bucket_rows, mut current) = (Waiting::new(), first);
        let mut in_flight: BTreeMap<u32, Waiting<LabelKey, Labelled>> = BTreeMap::new();
        // Allocations of arrivals appended, for the next ones.
        let mut spare: Vec<Vec<(LabelKey, Labelled)>> = Vec::new();
        let mut failed = None;
        let (mut starts, mut position, mut rows) = (Vec::new(), positions.map_or(0, |p| p.0), 0u64);
        // Whether a request of the range was seen, and one past it.
        let (mut inside, mut past) = (false, false);
        replay.rows_in(salt, positions, |row| {
            let at = position;
            position += 1;
            if failed.is_some() {
                return;
            }
            let b = bucket(row.time);
            if b < first || b >= end {
                // Another pass's request; one before the range once inside it is out of order, as
                // is one inside it once past.
                if b < first && inside {
                    failed = Some(disorder());
                }
                past |= b >= end;
                return;
            }
            if past {
                failed = Some(disorder());
                return;
            }
            inside = true;
            let band = cuts.partition_point(|c| *c <= row.u) as u8;
            while first as usize + starts.len() <= b as usize {
                starts.push(at);
            }
            rows += 1;
            if b != current {
                let mut arrived = in_flight.split_off(&b);
                std::mem::swap(&mut arrived, &mut in_flight);
                let flushed = std::mem::replace(&mut bucket_rows, Waiting::new())
                    .append_to(&mut requests, scale, fold_above)
                    .map(|rows| bucket_rows = Waiting::reusing(rows))
                    .and_then(|()| {
                        arrived.into_values().try_for_each(|w| {
                            w.append_to(&mut labels, scale, fold_above).map(|rows| {
                                if spare.len() < SPARE && rows.capacity() <= SPARE_ROWS {
                                    spare.push(rows);
                                }
                            })
                        })
                    });
                if let Err(e) = flushed {
                    failed = Some(e);
                    return;
                }
                current = b;
            }
            bucket_rows.push((b, row.cell, band), row.outputs().map(|out| scale.contribution(&out)), scale, fold_above, &needs);
            if let (Some(label), Some(lt)) = (row.label(), row.label_time()) {
                let arrival = bucket(lt).max(b);
                let labelled = Labelled::new(label, row.outputs().map(|out| out.score));
                in_flight.entry(arrival).or_insert_with(|| Waiting::reusing(spare.pop().unwrap_or_default())).push(
                    (arrival, b, row.cell, band),
                    labelled,
                    scale,
                    fold_above,
                    &needs,
                );
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        bucket_rows.append_to(&mut requests, scale, fold_above)?;
        for w in in_flight.into_values() {
            w.append_to(&mut labels, scale, fold_above)?;
        }
        Ok(Built { requests, labels, starts, rows })
    }
}

/// Adds a key to both arms of every one of `scopes` (a cell's) in the oracle's window, the key read
/// once for all of them.
fn to_every_scope<K: index::Key, R: index::Kept>(
    index: &Index<K, R>,
    group: &index::Group,
    scale: &Scale,
    scopes: &[usize],
    stats: &mut WindowStats,
) {
    for arm in 0..2 {
        index.add_with(
            group,
            scale,
            arm,
            Each(scopes.len(), |add: &mut dyn FnMut(&mut ArmStats)| scopes.iter().for_each(|&s| add(stats.arm(s, 1.0, arm)))),
        );
    }
}

/// Emptied label allocations an index pass keeps for the next arrivals, and the most rows one
/// may have room for (a few MB in all; a larger one is given back).
const SPARE: usize = 8;
const SPARE_ROWS: usize = 1 << 13;

/// Buckets between two checkpoints of the request counts (a few in unit tests, whose replays are short).
#[cfg(not(test))]
const CHECKPOINT: u32 = 64;
#[cfg(test)]
const CHECKPOINT: u32 = 3;

impl Summaries {
    /// Summarises the replay for routing `salt`, any of `weights` and buckets of `width` from `origin`.
    pub fn build(replay: &Replay, salt: &str, weights: &[f64], scale: Scale, origin: Micros, width: Micros) -> Result<Self> {
        Self::build_with(replay, salt, weights, scale, (origin, width), FOLD_ABOVE, Needs::ALL)
    }

    /// [`Summaries::build`] keeping only what `needs` says (see [`Needs`]).
    pub fn build_for(
        replay: &Replay,
        salt: &str,
        weights: &[f64],
        scale: Scale,
        (origin, width): (Micros, Micros),
        needs: Needs,
    ) -> Result<Self> {
        Self::build_with(replay, salt, weights, scale, (origin, width), FOLD_ABOVE, needs)
    }

    /// [`Summaries::build_for`], folding keys with more than `fold_above` rows (tests try several).
    pub(crate) fn build_with(
        replay: &Replay,
        salt: &str,
        weights: &[f64],
        scale: Scale,
        (origin, width): (Micros, Micros),
        fold_above: usize,
        needs: Needs,
    ) -> Result<Self> {
        let split = (replay.rows >= SPLIT_ABOVE).then(|| replay.split_point(origin, width)).flatten();
        Self::build_split(replay, salt, weights, scale, (origin, width), fold_above, needs, split)
    }

    /// Built in one pass, or — with `split`, a bucket and a range of row positions holding its
    /// first request — in two passes side by side, the rows before the bucket and from it on.
    /// Either way the keys are the same (a key's rows all share one request bucket), so the
    /// summaries are too; only which keys keep rows can differ, each pass keeping half as many.
    #[allow(clippy::too_many_arguments)]
    fn build_split(
        replay: &Replay,
        salt: &str,
        weights: &[f64],
        scale: Scale,
        grid: (Micros, Micros),
        fold_above: usize,
        needs: Needs,
        split: Option<Split>,
    ) -> Result<Self> {
        let mut cuts: Vec<f64> = weights.iter().copied().filter(|w| *w > 0.0 && *w < 1.0).collect();
        cuts.sort_by(f64::total_cmp);
        cuts.dedup();
        if cuts.len() > u8::MAX as usize {
            return Err(Error::Internal("too many distinct routing weights".into()));
        }
        let pass = Pass { replay, salt, cuts: &cuts, scale: &scale, grid, fold_above, needs };
        let Built { mut requests, mut labels, mut starts, rows } = match split {
            None => pass.build(None, (0, u32::MAX), KEPT_ROWS)?,
            Some(Split { bucket, positions: (from, to) }) => {
                let (before, after) = std::thread::scope(|s| {
                    let after = s.spawn(|| pass.build(Some((from, replay.rows)), (bucket, u32::MAX), KEPT_ROWS / 2));
                    let before = pass.build(Some((0, to)), (0, bucket), KEPT_ROWS / 2);
                    (before, after.join().expect("an index pass does not panic"))
                });
                let (mut before, after) = (before?, after?);
                before.requests.absorb(after.requests);
                before.labels.absorb(after.labels);
                if after.rows > 0 {
                    before.starts.resize(bucket as usize, before.rows);
                    before.starts.extend(after.starts);
                }
                before.rows += after.rows;
                before
            }
        };
        requests.finish();
        labels.finish();
        if starts.is_empty() {
            starts.push(0);
        }
        starts.push(rows);
        starts.shrink_to_fit();
        let cells = replay.cells.len();
        let checkpoints = checkpoints(&requests, cells, cuts.len() + 1);
        let passes = if split.is_some() { 2 } else { 1 };
        let label_lag = labels.iter().map(|((arrival, requested, ..), _)| arrival - requested).max().unwrap_or(0);
        Ok(Self { scale, origin: grid.0, width: grid.1, cuts, requests, labels, starts, needs, checkpoints, label_lag, cells, passes })
    }

    /// These summaries with every key also held read ([`Index::expand`]), for a tune whose
    /// variants all read them.
    pub fn expanded(mut self) -> Self {
        self.requests.expand();
        self.labels.expand();
        self
    }

    fn bands(&self) -> usize {
        self.cuts.len() + 1
    }

    /// Adds the requests per (cell, band) of request keys in buckets [from, to) to `counts`.
    fn count_keys(&self, from: u32, to: u32, counts: &mut [u64]) {
        let bands = self.bands();
        for ((_, cell, band), group) in self.requests.between(from, to) {
            counts[cell as usize * bands + band as usize] += self.requests.requests(&group);
        }
    }

    /// Requests per (cell, band) in buckets [from, to).
    fn requests_between(&self, from: u32, to: u32) -> Vec<u64> {
        let size = self.cells * self.bands();
        let mut counts = vec![0u64; size];
        let last = (self.checkpoints.len() / size.max(1)).saturating_sub(1) as u32;
        let (a, b) = (from.div_ceil(CHECKPOINT).min(last), (to / CHECKPOINT).min(last));
        if a < b {
            let (lo, hi) = (&self.checkpoints[a as usize * size..][..size], &self.checkpoints[b as usize * size..][..size]);
            for ((c, l), h) in counts.iter_mut().zip(lo).zip(hi) {
                *c = h - l;
            }
            self.count_keys(from, a * CHECKPOINT, &mut counts);
            self.count_keys(b * CHECKPOINT, to, &mut counts);
        } else {
            self.count_keys(from, to, &mut counts);
        }
        counts
    }

    /// Keys stored (for the benchmark): (request keys, label keys).
    pub fn size(&self) -> (usize, usize) {
        (self.requests.len(), self.labels.len())
    }

    /// What the index holds and about how many bytes it takes (`timings.json`, the scale benchmark).
    pub fn footprint(&self) -> Footprint {
        let (rk, rf, rr, rb) = self.requests.footprint();
        let (lk, lf, lr, lb) = self.labels.footprint();
        Footprint {
            buckets: self.starts.len().saturating_sub(1),
            cells: self.cells,
            bands: self.bands(),
            request_keys: rk,
            label_keys: lk,
            folded_keys: rf + lf,
            kept_rows: rr + lr,
            bytes: rb + lb + (self.starts.capacity() + self.checkpoints.capacity()) * 8,
            passes: self.passes,
        }
    }

    /// Whether these summaries can answer a policy routing at `weights` with contributions from
    /// `scale`, checking every `check_every` from `origin`.
    pub fn serves(&self, weights: &[f64], scale: &Scale, origin: Micros, check_every: Micros) -> bool {
        self.needs == Needs::ALL
            && self.scale == *scale
            && (origin - self.origin).rem_euclid(self.width) == 0
            && check_every % self.width == 0
            && weights.iter().all(|w| !(*w > 0.0 && *w < 1.0) || self.cuts.contains(w))
    }

    /// The arm band `band` serves at weight `w` (`None`: `w` is not one of the cuts).
    pub(super) fn arm_of_band(&self, band: u8, w: f64) -> Option<usize> {
        if w <= 0.0 {
            Some(0)
        } else if w >= 1.0 {
            Some(1)
        } else {
            self.cuts.iter().position(|c| *c == w).map(|k| usize::from(band as usize <= k))
        }
    }

    pub(super) fn bucket_of(&self, t: Micros) -> u32 {
        (t - self.origin).div_euclid(self.width).max(0) as u32
    }

    /// The last band that serves the candidate at weight `w` in (0, 1): bands up to the one ending at w.
    fn last_candidate_band(&self, w: f64) -> usize {
        match self.cuts.iter().position(|c| *c == w) {
            Some(k) => k,
            None => panic!("routing weight {w} is not one of the fast path's cuts {:?}", self.cuts),
        }
    }

    /// Whether a band serves the candidate at weight `w`: u < w for every u in the band.
    fn candidate_band(&self, band: u8, w: f64) -> bool {
        w >= 1.0 || band as usize <= self.last_candidate_band(w)
    }
}

/// The requests per (cell, band) before each multiple of [`CHECKPOINT`] buckets, up to the
/// first checkpoint after the last key.
fn checkpoints(requests: &Index<RequestKey, [Contribution; 2]>, cells: usize, bands: usize) -> Vec<u64> {
    let size = cells * bands;
    let last = requests.last_bucket();
    let mut out = vec![0u64; size];
    let mut running = vec![0u64; size];
    let mut k = 1u32;
    for ((bucket, cell, band), group) in requests.iter() {
        while bucket >= k * CHECKPOINT {
            out.extend_from_slice(&running);
            k += 1;
        }
        running[cell as usize * bands + band as usize] += requests.requests(&group);
    }
    while (k - 1) * CHECKPOINT <= last {
        out.extend_from_slice(&running);
        k += 1;
    }
    out.shrink_to_fit();
    out
}

/// Where one cell's requests go at the current weights: the last band that serves the candidate,
/// and the cell's (scope, group) slots in the window statistics.
#[derive(Debug, Clone, Default)]
struct Route {
    last_candidate_band: usize,
    slots: Vec<(usize, usize)>,
}

/// One policy evaluation over shared [`Summaries`]: the window being judged, grown bucket by bucket.
pub struct Fast<'a> {
    summaries: &'a Summaries,
    scopes: &'a Scopes,
    stats: WindowStats,
    /// What `stats` holds: buckets [start, end) at these weights.
    state: Option<(u32, u32, Vec<f64>)>,
    /// Per cell, its route at `routed` weights (`None`: weight 0 or 1, no comparison).
    routes: Vec<Option<Route>>,
    routed: Vec<f64>,
}

impl<'a> Fast<'a> {
    pub fn new(summaries: &'a Summaries, scopes: &'a Scopes) -> Self {
        Self::with_histograms(summaries, scopes, true)
    }

    /// A source whose windows keep histograms or not: a policy none of whose metrics reads one
    /// ([`crate::policy::Metric::reads_histogram`]) is judged on scalars alone, 20 times less
    /// memory to add to and clear (see [`super::Setup::fast`]).
    pub fn with_histograms(summaries: &'a Summaries, scopes: &'a Scopes, histograms: bool) -> Self {
        Self {
            summaries,
            scopes,
            stats: WindowStats::with_histograms(scopes.len(), histograms),
            state: None,
            routes: Vec::new(),
            routed: Vec::new(),
        }
    }

    /// The statistics of the last window asked for.
    pub fn stats(&self) -> &WindowStats {
        &self.stats
    }

    /// Routes every cell at `weights`, creating the groups first so the slots stay valid.
    fn route(&mut self, weights: &[f64]) {
        if self.routed == weights {
            return;
        }
        let compared = |w: f64| w > 0.0 && w < 1.0;
        for (cell, w) in weights.iter().enumerate().filter(|(_, w)| compared(**w)) {
            for &s in &self.scopes.of_cell[cell] {
                self.stats.group(s, *w);
            }
        }
        self.routes = weights
            .iter()
            .enumerate()
            .map(|(cell, &w)| {
                compared(w).then(|| Route {
                    last_candidate_band: self.summaries.last_candidate_band(w),
                    slots: self.scopes.of_cell[cell].iter().map(|&s| (s, self.stats.group(s, w))).collect(),
                })
            })
            .collect();
        self.routed = weights.to_vec();
    }

    fn add_buckets(&mut self, start: u32, from: u32, to: u32, weights: &[f64]) {
        self.route(weights);
        let Self { summaries, stats, routes, .. } = self;
        let Summaries { scale, requests, labels, .. } = summaries;
        for ((_, cell, band), group) in requests.between(from, to) {
            let Some(route) = &routes[cell as usize] else { continue };
            let arm = usize::from(band as usize <= route.last_candidate_band);
            requests.add_to_slots(&group, scale, arm, &route.slots, stats);
        }
        for ((_, requested, cell, band), group) in labels.between(from, to) {
            let Some(route) = routes[cell as usize].as_ref().filter(|_| requested >= start) else { continue };
            let arm = usize::from(band as usize <= route.last_candidate_band);
            labels.add_to_slots(&group, scale, arm, &route.slots, stats);
        }
    }
}

impl Source for Fast<'_> {
    fn window(&mut self, start: Micros, end: Micros, weights: &[f64]) -> &WindowStats {
        let (start, end) = (self.summaries.bucket_of(start), self.summaries.bucket_of(end));
        let extend = matches!(&self.state, Some((s, e, w)) if *s == start && *e <= end && w.as_slice() == weights);
        let from = if extend {
            self.state.as_ref().expect("checked").1
        } else {
            self.stats.clear();
            start
        };
        self.add_buckets(start, from, end, weights);
        match &mut self.state {
            Some((s, e, w)) if w.as_slice() == weights => (*s, *e) = (start, end),
            state => *state = Some((start, end, weights.to_vec())),
        }
        &self.stats
    }

    fn served(&mut self, start: Micros, end: Micros, weights: &[f64]) -> Vec<[u64; 2]> {
        let summaries = self.summaries;
        let counts = summaries.requests_between(summaries.bucket_of(start), summaries.bucket_of(end));
        let mut out = vec![[0u64; 2]; self.scopes.len()];
        for (cell, counts) in counts.chunks(summaries.bands()).enumerate() {
            let w = weights[cell];
            for (band, &n) in counts.iter().enumerate().filter(|(_, n)| **n > 0) {
                let arm = usize::from(w > 0.0 && summaries.candidate_band(band as u8, w));
                for &s in &self.scopes.of_cell[cell] {
                    out[s][arm] += n;
                }
            }
        }
        out
    }

    fn oracle(&mut self, start: Micros, end: Micros) -> WindowStats {
        let (start, end) = (self.summaries.bucket_of(start), self.summaries.bucket_of(end));
        let Summaries { scale, requests, labels, .. } = self.summaries;
        let mut stats = WindowStats::with_histograms(self.scopes.len(), self.stats.histograms());
        for ((_, cell, _), group) in requests.between(start, end) {
            to_every_scope(requests, &group, scale, &self.scopes.of_cell[cell as usize], &mut stats);
        }
        for ((_, requested, cell, _), group) in labels.iter() {
            if requested < start || requested >= end {
                continue;
            }
            to_every_scope(labels, &group, scale, &self.scopes.of_cell[cell as usize], &mut stats);
        }
        stats
    }
}
