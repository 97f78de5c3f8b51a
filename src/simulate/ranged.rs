//! Windows with any boundaries under any routing, read from the fast path's [`Summaries`]: what
//! the live controllers' queries and their grading need, as a controller measures whenever its own
//! clock says (an Argo retry comes 10 s after an error) and changes weights at those times.
//!
//! A bucket of the summaries that lies inside the window and whose routing does not change inside
//! it is added from its summaries; any other bucket — cut by the window's start or end, by a
//! routing change, or routed at a weight that is not one of the summaries' cuts — is added from
//! its own rows, read back from the score cache ([`Replay::rows_between`]) and kept for the next
//! queries (consecutive windows share their edges). A label counts once it has arrived: from the
//! summaries when its whole arrival bucket is before the window's label time, else from its
//! request's row. Memory holds the summaries and a few buckets of rows, never the log; the
//! statistics equal a row-by-row pass bit for bit (every sum is an integer).

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use super::fast::{Each, Summaries};
use super::metrics::ArmStats;
use super::replay::{Replay, Row};
use super::router::to_candidate;
use super::window::{Scopes, WindowStats};
use super::Source;
use crate::error::Error;
use crate::time::Micros;

/// The candidate's weight per cell over time.
pub trait Routing {
    fn weight(&self, t: Micros, cell: u32) -> f64;
    /// Whether any cell's weight changes at a time in (a, b).
    fn changes_within(&self, a: Micros, b: Micros) -> bool;
}

/// The same weight per cell throughout.
pub struct Fixed<'w>(pub &'w [f64]);

impl Routing for Fixed<'_> {
    fn weight(&self, _: Micros, cell: u32) -> f64 {
        self.0[cell as usize]
    }

    fn changes_within(&self, _: Micros, _: Micros) -> bool {
        false
    }
}

/// Which labels a window counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Labels {
    None,
    /// Those that arrived before this time.
    Before(Micros),
    /// Every label of the window's requests, whenever it arrived (the oracle).
    All,
}

/// Where a window's statistics go.
pub trait Sink {
    /// Adds to the `arm` statistics of `cell`'s requests routed at `weight`: `add` is called on each
    /// target.
    fn add(&mut self, cell: u32, weight: f64, arm: usize, add: &mut dyn FnMut(&mut ArmStats));

    /// How many targets `add` calls its argument on for `cell` at `weight` (0: it leaves them out):
    /// a key going to several is read once for all of them ([`super::fast::Index::add_with`]).
    fn fan_out(&self, _cell: u32, _weight: f64) -> usize {
        1
    }
}

/// Buckets of rows kept after a query.
const RECENT: usize = 16;

pub struct Ranged<'a> {
    summaries: &'a Summaries,
    replay: &'a Replay,
    salt: &'a str,
    /// Buckets of rows read back lately, the most recent last.
    recent: Mutex<VecDeque<(u32, Arc<Vec<Row>>)>>,
    /// The first error reading rows back (a query then sees that bucket empty; see [`Ranged::failure`]).
    failure: Mutex<Option<Error>>,
    /// Buckets read back (for the benchmark and tests).
    reads: Mutex<u64>,
}

/// How a window takes a bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Take {
    /// From the summaries, every cell at the weights of entry `usize` of the window's weight list.
    Summary(usize),
    Rows,
}

/// How each bucket of a window is taken, and the weights per cell of its summarised buckets.
struct Plan {
    first: u32,
    takes: Vec<Take>,
    weights: Vec<Vec<f64>>,
}

impl Plan {
    fn take(&self, bucket: u32) -> Take {
        self.takes[(bucket - self.first) as usize]
    }
}

impl<'a> Ranged<'a> {
    /// `summaries` built from `replay` under routing `salt`.
    pub fn new(summaries: &'a Summaries, replay: &'a Replay, salt: &'a str) -> Self {
        Self { summaries, replay, salt, recent: Mutex::new(VecDeque::new()), failure: Mutex::new(None), reads: Mutex::new(0) }
    }

    /// How outputs become contributions (the summaries').
    pub fn scale(&self) -> super::metrics::Scale {
        self.summaries.scale
    }

    /// The first error met reading rows back, if any: the results since are incomplete.
    pub fn failure(&self) -> Option<Error> {
        self.failure.lock().expect("not poisoned").take()
    }

    /// Buckets of rows read back so far.
    pub fn reads(&self) -> u64 {
        *self.reads.lock().expect("not poisoned")
    }

    fn bucket_start(&self, k: u32) -> Micros {
        self.summaries.origin + Micros::from(k) * self.summaries.width
    }

    /// The rows of bucket `k`.
    fn rows(&self, k: u32) -> Arc<Vec<Row>> {
        {
            let mut recent = self.recent.lock().expect("not poisoned");
            if let Some(i) = recent.iter().position(|(b, _)| *b == k) {
                let entry = recent.remove(i).expect("found");
                let rows = entry.1.clone();
                recent.push_back(entry);
                return rows;
            }
        }
        let starts = &self.summaries.starts;
        let (from, to) = match (starts.get(k as usize), starts.get(k as usize + 1)) {
            (Some(a), Some(b)) => (*a, *b),
            _ => (0, 0),
        };
        let rows = if from < to {
            *self.reads.lock().expect("not poisoned") += 1;
            match self.replay.rows_between(self.salt, from, to) {
                Ok(rows) => rows,
                Err(e) => {
                    self.failure.lock().expect("not poisoned").get_or_insert(e);
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let rows = Arc::new(rows);
        let mut recent = self.recent.lock().expect("not poisoned");
        if recent.len() >= RECENT {
            recent.pop_front();
        }
        recent.push_back((k, rows.clone()));
        rows
    }

    /// The buckets [first, last) that hold [start, end), and how each is taken.
    fn plan(&self, start: Micros, end: Micros, routing: &dyn Routing, mirror: bool) -> Plan {
        let s = self.summaries;
        let (first, last) = (s.bucket_of(start), s.bucket_of(end - 1) + 1);
        let cells = self.replay.cells.len() as u32;
        let mut plan = Plan { first, takes: Vec::with_capacity((last - first) as usize), weights: Vec::new() };
        for k in first..last {
            let (a, b) = (self.bucket_start(k), self.bucket_start(k + 1));
            // Whole when no request of the bucket is outside the window: bucket 0 also holds any
            // request before the origin.
            let clean_start = a >= start || start <= self.replay.first;
            let nothing_earlier = k > 0 || self.replay.first >= a;
            let inside = clean_start && nothing_earlier && b <= end;
            let take = if !inside || (!mirror && routing.changes_within(a, b)) {
                Take::Rows
            } else {
                let weights: Vec<f64> = (0..cells).map(|c| routing.weight(a, c)).collect();
                if !mirror && weights.iter().any(|w| s.arm_of_band(0, *w).is_none()) {
                    Take::Rows
                } else {
                    if plan.weights.last() != Some(&weights) {
                        plan.weights.push(weights);
                    }
                    Take::Summary(plan.weights.len() - 1)
                }
            };
            plan.takes.push(take);
        }
        plan
    }

    /// Adds the requests in [start, end) routed by `routing` (with `mirror` each goes to both arms,
    /// as a mirrored candidate scores every request) and the labels `labels` says to `sink`.
    pub fn visit(&self, start: Micros, end: Micros, labels: Labels, routing: &dyn Routing, mirror: bool, sink: &mut dyn Sink) {
        if end <= start {
            return;
        }
        let s = self.summaries;
        let plan = self.plan(start, end, routing, mirror);
        let last = plan.first + plan.takes.len() as u32;
        // Summarised buckets are routed at weights that are cuts: a band serves one arm.
        let band_arms = |band: u8, w: f64| served_by(mirror, s.arm_of_band(band, w) == Some(1));
        let row_arms = |row: &Row, w: f64| served_by(mirror, to_candidate(row.u, w));
        for ((bucket, cell, band), group) in s.requests.between(plan.first, last) {
            let Take::Summary(i) = plan.take(bucket) else { continue };
            let w = plan.weights[i][cell as usize];
            for &arm in band_arms(band, w) {
                let fan_out = sink.fan_out(cell, w);
                s.requests.add_with(&group, &s.scale, arm, Each(fan_out, |add: &mut dyn FnMut(&mut ArmStats)| sink.add(cell, w, arm, add)));
            }
        }
        // A label of a summarised bucket arriving in the bucket of the label time is told by its row.
        let mut partial = BTreeSet::new();
        let (arrived, cut) = match labels {
            Labels::None => (plan.first, None),
            // No later label key is of a request in the window.
            Labels::All => (last.saturating_add(s.label_lag), None),
            Labels::Before(t) if (t - s.origin).rem_euclid(s.width) == 0 => (s.bucket_of(t), None),
            Labels::Before(t) => (s.bucket_of(t) + 1, Some(s.bucket_of(t))),
        };
        for ((arrival, requested, cell, band), group) in s.labels.between(plan.first, arrived) {
            if requested < plan.first || requested >= last {
                continue;
            }
            let Take::Summary(i) = plan.take(requested) else { continue };
            if Some(arrival) == cut {
                partial.insert(requested);
                continue;
            }
            let w = plan.weights[i][cell as usize];
            for &arm in band_arms(band, w) {
                let fan_out = sink.fan_out(cell, w);
                s.labels.add_with(&group, &s.scale, arm, Each(fan_out, |add: &mut dyn FnMut(&mut ArmStats)| sink.add(cell, w, arm, add)));
            }
        }
        let counts = |lt: Micros| match labels {
            Labels::None => false,
            Labels::All => true,
            Labels::Before(t) => lt < t,
        };
        for k in plan.first..last {
            if plan.take(k) != Take::Rows {
                continue;
            }
            for row in self.rows(k).iter().filter(|r| r.time >= start && r.time < end) {
                let w = routing.weight(row.time, row.cell);
                for &arm in row_arms(row, w) {
                    let out = row.output(arm);
                    let c = s.scale.contribution(&out);
                    sink.add(row.cell, w, arm, &mut |stats| stats.add(&c));
                    let quality = match (row.label(), row.label_time()) {
                        (Some(y), Some(lt)) if counts(lt) => s.scale.quality(&out, y),
                        _ => None,
                    };
                    if let Some(q) = quality {
                        sink.add(row.cell, w, arm, &mut |stats| stats.add_quality(&q));
                    }
                }
            }
        }
        let (Some(cut), Labels::Before(t)) = (cut, labels) else { return };
        for k in partial {
            let Take::Summary(i) = plan.take(k) else { continue };
            for row in self.rows(k).iter() {
                let (Some(y), Some(lt)) = (row.label(), row.label_time()) else { continue };
                if s.bucket_of(lt).max(k) != cut || lt >= t {
                    continue;
                }
                let w = plan.weights[i][row.cell as usize];
                for &arm in row_arms(row, w) {
                    if let Some(q) = s.scale.quality(&row.output(arm), y) {
                        sink.add(row.cell, w, arm, &mut |stats| stats.add_quality(&q));
                    }
                }
            }
        }
    }

    /// Whether `arm` served any request in [from, until) routed by `routing`.
    pub fn served_any(&self, arm: usize, from: Micros, until: Micros, routing: &dyn Routing) -> bool {
        if until <= from {
            return false;
        }
        let s = self.summaries;
        let last = s.bucket_of(until - 1) + 1;
        let mut k = s.bucket_of(from.max(self.replay.first));
        while k < last {
            // Plan one bucket at a time: the answer is usually in the first.
            let (a, b) = (self.bucket_start(k).max(from), self.bucket_start(k + 1).min(until));
            let plan = self.plan(a, b, routing, false);
            let found = match plan.takes.first() {
                Some(Take::Summary(i)) => s.requests.between(k, k + 1).any(|((_, cell, band), group)| {
                    s.requests.requests(&group) > 0 && s.arm_of_band(band, plan.weights[*i][cell as usize]) == Some(arm)
                }),
                _ => self
                    .rows(k)
                    .iter()
                    .any(|r| r.time >= a && r.time < b && usize::from(to_candidate(r.u, routing.weight(r.time, r.cell))) == arm),
            };
            if found {
                return true;
            }
            k += 1;
        }
        false
    }
}

/// The arms a request reaches: both when the candidate is mirrored, else the one serving it.
fn served_by(mirror: bool, candidate: bool) -> &'static [usize] {
    match (mirror, candidate) {
        (true, _) => &[0, 1],
        (false, false) => &[0],
        (false, true) => &[1],
    }
}

/// Window statistics per scope, as the policy's checks read them: cells at weight 0 or 1 have no
/// comparison and are left out. Without histograms a cell's keys are added up first, per weight,
/// and each cell's sums go to its scopes once at the end ([`ScopeSink::finish`]): a key is read
/// once instead of once a scope, and found by its cell instead of by each scope's weight (the demo's
/// three controllers at 100×: 0.6–0.7 → 0.3–0.5 s). Arms with histograms (10 KB each) take every key
/// as it comes.
struct ScopeSink<'s> {
    scopes: &'s Scopes,
    stats: &'s mut WindowStats,
    /// Weight every request is filed under (the oracle's 1), instead of its own.
    file_under: Option<f64>,
    /// Per cell, its arms at each weight so far (empty with histograms).
    cells: Vec<Vec<(f64, [ArmStats; 2])>>,
}

impl Sink for ScopeSink<'_> {
    fn add(&mut self, cell: u32, weight: f64, arm: usize, add: &mut dyn FnMut(&mut ArmStats)) {
        let Some(weight) = self.filed_under(weight) else { return };
        if let Some(sums) = self.cells.get_mut(cell as usize) {
            let at = match sums.iter().position(|(w, _)| *w == weight) {
                Some(at) => at,
                None => {
                    sums.push((weight, [ArmStats::new(false), ArmStats::new(false)]));
                    sums.len() - 1
                }
            };
            return add(&mut sums[at].1[arm]);
        }
        for &s in &self.scopes.of_cell[cell as usize] {
            add(self.stats.arm(s, weight, arm));
        }
    }

    fn fan_out(&self, cell: u32, weight: f64) -> usize {
        match self.filed_under(weight) {
            None => 0,
            Some(_) if self.cells.is_empty() => self.scopes.of_cell[cell as usize].len(),
            Some(_) => 1,
        }
    }
}

impl<'s> ScopeSink<'s> {
    fn new(scopes: &'s Scopes, stats: &'s mut WindowStats, file_under: Option<f64>, cells: usize) -> Self {
        let cells = if stats.histograms() { Vec::new() } else { vec![Vec::new(); cells] };
        Self { scopes, stats, file_under, cells }
    }

    /// The weight requests routed at `weight` are filed under; `None`: left out.
    fn filed_under(&self, weight: f64) -> Option<f64> {
        match self.file_under {
            Some(w) => Some(w),
            None => (weight > 0.0 && weight < 1.0).then_some(weight),
        }
    }

    /// Adds each cell's sums to its scopes.
    fn finish(self) {
        for (cell, sums) in self.cells.iter().enumerate() {
            for (weight, arms) in sums {
                for &s in &self.scopes.of_cell[cell] {
                    for (arm, sums) in arms.iter().enumerate() {
                        self.stats.arm(s, *weight, arm).merge(sums);
                    }
                }
            }
        }
    }
}

/// Requests served per scope.
struct Served<'s> {
    scopes: &'s Scopes,
    out: Vec<[u64; 2]>,
}

impl Sink for Served<'_> {
    fn add(&mut self, cell: u32, _: f64, arm: usize, add: &mut dyn FnMut(&mut ArmStats)) {
        let mut counted = ArmStats::new(false);
        add(&mut counted);
        for &s in &self.scopes.of_cell[cell as usize] {
            self.out[s][arm] += counted.s.requests;
        }
    }
}

/// A [`Source`] over [`Ranged`] windows: the grading of a controller, whose periods start and end
/// at its own times and route at its own weights.
pub struct RangedSource<'r, 'a> {
    ranged: &'r Ranged<'a>,
    scopes: &'r Scopes,
    stats: WindowStats,
}

impl<'r, 'a> RangedSource<'r, 'a> {
    /// Windows whose arms keep histograms or not (a policy that reads none is graded without:
    /// see [`super::Setup::fast`]).
    pub fn new(ranged: &'r Ranged<'a>, scopes: &'r Scopes, histograms: bool) -> Self {
        Self { ranged, scopes, stats: WindowStats::with_histograms(scopes.len(), histograms) }
    }
}

impl Source for RangedSource<'_, '_> {
    fn window(&mut self, start: Micros, end: Micros, weights: &[f64]) -> &WindowStats {
        self.stats.clear();
        let mut sink = ScopeSink::new(self.scopes, &mut self.stats, None, weights.len());
        self.ranged.visit(start, end, Labels::Before(end), &Fixed(weights), false, &mut sink);
        sink.finish();
        &self.stats
    }

    fn served(&mut self, start: Micros, end: Micros, weights: &[f64]) -> Vec<[u64; 2]> {
        let mut sink = Served { scopes: self.scopes, out: vec![[0; 2]; self.scopes.len()] };
        self.ranged.visit(start, end, Labels::None, &Fixed(weights), false, &mut sink);
        sink.out
    }

    fn oracle(&mut self, start: Micros, end: Micros) -> WindowStats {
        let mut stats = WindowStats::with_histograms(self.scopes.len(), self.stats.histograms());
        let everyone = vec![1.0; self.ranged.replay.cells.len()];
        let mut sink = ScopeSink::new(self.scopes, &mut stats, Some(1.0), everyone.len());
        self.ranged.visit(start, end, Labels::All, &Fixed(&everyone), true, &mut sink);
        sink.finish();
        stats
    }
}
