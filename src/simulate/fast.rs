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

use std::collections::BTreeMap;

use super::metrics::{log_loss, ArmStats, Contribution, Decoded, Needs, Packed, Quality, Scale};
use super::replay::Replay;
use super::window::{Scopes, WindowStats};
use super::Source;
use crate::error::{Error, Result};
use crate::time::Micros;

/// Summaries of one key: [stable output, candidate output].
type Pair = [Packed; 2];

/// (bucket, cell, band).
pub(super) type RequestKey = (u32, u32, u8);

/// (arrival bucket, request bucket, cell, band).
pub(super) type LabelKey = (u32, u32, u32, u8);

/// Keys with at most this many requests keep them as rows while the index keeps fewer than
/// [`KEPT_ROWS`]: a kept row takes 48 bytes (56 for a label) and is added to a window faster than a
/// summary is read, a folded pair of summaries about 30–300 bytes however many requests it holds.
const FOLD_ABOVE: usize = 16;

/// Rows an index keeps at most (about 13 MB); beyond, every key is folded, so memory grows with
/// the keys, never with the requests.
#[cfg(not(test))]
const KEPT_ROWS: usize = 1 << 18;
#[cfg(test)]
const KEPT_ROWS: usize = 400;

/// What a key holds: its rows in the index's row store, or their summaries in its arena (the
/// stable model's, then the candidate's, each [`Packed::encode`]d, the first after its length) —
/// packed into 8 bytes, as there is one per key ([`Held`] is what it says).
#[derive(Debug, Clone, Copy)]
pub(super) struct Group(u64);

/// A [`Group`] read.
enum Held {
    Rows { start: u32, len: u32 },
    Folded(u64),
}

/// The bit of a [`Group`] that says it is folded.
const FOLDED: u64 = 1 << 63;

impl Group {
    /// `len` below 2³¹ (an index keeps at most `KEPT_ROWS` rows).
    fn rows(start: u32, len: u32) -> Self {
        debug_assert!(len < 1 << 31);
        Group(u64::from(start) << 31 | u64::from(len))
    }

    /// At position `at` of the arena ([`Arena`]; below 2⁶³).
    fn folded(at: u64) -> Self {
        Group(FOLDED | at)
    }

    fn held(self) -> Held {
        if self.0 & FOLDED != 0 {
            Held::Folded(self.0 & !FOLDED)
        } else {
            Held::Rows { start: (self.0 >> 31) as u32, len: (self.0 & ((1 << 31) - 1)) as u32 }
        }
    }
}

/// A row the index keeps: folded into summaries, or added to a window as it is.
pub(super) trait Kept: Copy {
    /// What the row adds to one arm, worked out once however many scopes it goes to.
    type Term;
    fn fold(&self, scale: &Scale, pair: &mut Pair);
    fn term(&self, scale: &Scale, arm: usize) -> Self::Term;
    fn add_term(term: &Self::Term, stats: &mut ArmStats);

    fn add(&self, scale: &Scale, arm: usize, stats: &mut ArmStats) {
        Self::add_term(&self.term(scale, arm), stats);
    }
}

/// A request: what each model returned.
impl Kept for [Contribution; 2] {
    type Term = Contribution;

    fn fold(&self, _: &Scale, pair: &mut Pair) {
        pair[0].add(&self[0]);
        pair[1].add(&self[1]);
    }

    fn term(&self, _: &Scale, arm: usize) -> Contribution {
        self[arm]
    }

    fn add_term(term: &Contribution, stats: &mut ArmStats) {
        stats.add(term);
    }
}

/// An arrived label, each model's score and its log loss (the other quality terms are recomputed
/// when added, which keeps the row at 56 bytes instead of 112; the logarithm is the costly part).
#[derive(Debug, Clone, Copy)]
pub(super) struct Labelled {
    label: f64,
    scores: [Option<f64>; 2],
    log_loss: [i64; 2],
}

impl Labelled {
    fn new(label: f64, scores: [Option<f64>; 2]) -> Self {
        Labelled { label, scores, log_loss: scores.map(|s| s.map_or(0, |s| log_loss(s, label))) }
    }
}

impl Kept for Labelled {
    type Term = Option<Quality>;

    fn fold(&self, scale: &Scale, pair: &mut Pair) {
        for (m, packed) in pair.iter_mut().enumerate() {
            if let Some(q) = self.term(scale, m) {
                packed.add_quality(&q);
            }
        }
    }

    fn term(&self, scale: &Scale, arm: usize) -> Option<Quality> {
        self.scores[arm].map(|s| scale.quality_given(s, self.label, self.log_loss[arm]))
    }

    fn add_term(term: &Option<Quality>, stats: &mut ArmStats) {
        if let Some(q) = term {
            stats.add_quality(q);
        }
    }
}

/// Folded summaries in blocks of about [`BLOCK`] bytes that never move: growing takes a new block
/// rather than copying everything into a buffer twice the size (a doubled buffer held up to twice
/// the summaries, and both copies while it grew). A pair's position is its block · 2³² + its
/// offset in the block, and a pair never straddles two blocks.
#[derive(Debug, Default)]
struct Arena {
    blocks: Vec<Vec<u8>>,
}

const BLOCK: usize = 1 << 20;

impl Arena {
    /// Appends `bytes` whole to one block; returns their position.
    fn push(&mut self, bytes: &[u8]) -> u64 {
        if self.blocks.last().is_none_or(|b| b.capacity() - b.len() < bytes.len()) {
            self.blocks.push(Vec::with_capacity(BLOCK.max(bytes.len())));
        }
        let index = self.blocks.len() - 1;
        let block = &mut self.blocks[index];
        let at = (index as u64) << 32 | block.len() as u64;
        block.extend_from_slice(bytes);
        at
    }

    /// The bytes from position `at` to the end of its block.
    fn at(&self, at: u64) -> &[u8] {
        &self.blocks[(at >> 32) as usize][(at & 0xffff_ffff) as usize..]
    }

    /// `other`'s blocks moved after these; returns what to add to `other`'s positions.
    fn absorb(&mut self, other: Arena) -> u64 {
        let shift = (self.blocks.len() as u64) << 32;
        self.blocks.extend(other.blocks);
        shift
    }

    fn capacity(&self) -> usize {
        self.blocks.iter().map(Vec::capacity).sum()
    }

    fn shrink_to_fit(&mut self) {
        if let Some(last) = self.blocks.last_mut() {
            last.shrink_to_fit();
        }
        self.blocks.shrink_to_fit();
    }
}

/// Keys in order, each with its rows or summaries.
#[derive(Debug)]
pub(super) struct Index<K, R> {
    keys: Vec<(K, Group)>,
    rows: Vec<R>,
    /// The folded keys' summaries.
    arena: Arena,
    /// Where a pair is written before it is placed in the arena.
    scratch: Vec<u8>,
    /// What folded summaries keep.
    needs: Needs,
    /// Rows kept at most; beyond, keys are folded.
    kept: usize,
    /// The rows of an index absorbed whole ([`Index::absorb`]), moved rather than copied:
    /// positions past this index's own rows are in these.
    later: Vec<R>,
}

impl<K: Ord + Copy, R: Kept> Index<K, R> {
    fn new(needs: Needs, kept: usize) -> Self {
        Self { keys: Vec::new(), rows: Vec::new(), arena: Arena::default(), scratch: Vec::new(), needs, kept, later: Vec::new() }
    }

    /// `other`'s keys added to these, every key of either once: `other`'s rows and arena blocks are
    /// moved in whole (copying them doubled them for a moment: 50 MB at 100×) and its groups
    /// shifted to point at them. With `after`, every key of `other` sorts after every key here
    /// and the keys are appended; else the two key lists are merged.
    fn absorb(&mut self, other: Index<K, R>, after: bool) {
        debug_assert!(self.later.is_empty() && other.later.is_empty(), "an index absorbs one other");
        let rows = self.rows.len() as u32;
        let arena = self.arena.absorb(other.arena);
        let shifted = other.keys.into_iter().map(|(k, g)| {
            let g = match g.held() {
                Held::Rows { start, len } => Group::rows(start + rows, len),
                Held::Folded(at) => Group::folded(at + arena),
            };
            (k, g)
        });
        let theirs: Vec<(K, Group)> = shifted.collect();
        let mine = self.keys.len();
        self.keys.reserve_exact(theirs.len());
        self.keys.extend_from_slice(&theirs);
        if !after {
            // Merged in place from the back, so the merged keys take no second copy of the list:
            // the largest remaining key of either goes to the last free slot.
            let (mut i, mut j, mut at) = (mine, theirs.len(), self.keys.len());
            while j > 0 {
                at -= 1;
                if i > 0 && self.keys[i - 1].0 > theirs[j - 1].0 {
                    self.keys[at] = self.keys[i - 1];
                    i -= 1;
                } else {
                    self.keys[at] = theirs[j - 1];
                    j -= 1;
                }
            }
        }
        self.later = other.rows;
        self.kept = self.kept.max(self.rows.len() + self.later.len());
    }

    /// The `len` rows kept from position `start`.
    fn rows_at(&self, start: u32, len: u32) -> &[R] {
        let (start, len) = (start as usize, len as usize);
        match start.checked_sub(self.rows.len()) {
            Some(later) => &self.later[later..later + len],
            None => &self.rows[start..start + len],
        }
    }

    /// Requests in a request key (either model served all of them).
    pub(super) fn requests(&self, group: &Group) -> u64 {
        match group.held() {
            Held::Rows { len, .. } => u64::from(len),
            Held::Folded(at) => Packed::encoded_requests(self.summary(at, 0)),
        }
    }

    /// The summary of model `arm` of a folded key.
    fn summary(&self, at: u64, arm: usize) -> &[u8] {
        pair_arms(self.arena.at(at))[arm]
    }

    /// Appends a batch of rows, and keys folded while they waited ([`Waiting`]), whose keys all
    /// sort after every key already indexed: the rows sorted by key (the order within a key does
    /// not matter, all sums are integers); keys folded before, with more than `fold_above` rows, or
    /// past the kept-rows cap folded, the others' rows kept.
    fn append(&mut self, batch: &mut Vec<(K, R)>, folded: BTreeMap<K, Vec<u8>>, scale: &Scale, fold_above: usize) -> Result<()> {
        batch.sort_unstable_by_key(|(k, _)| *k);
        let first = match (batch.first(), folded.keys().next()) {
            (Some((a, _)), Some(b)) => Some(*a.min(b)),
            (a, b) => a.map(|(k, _)| *k).or(b.copied()),
        };
        if let (Some((last, _)), Some(first)) = (self.keys.last(), first) {
            if first <= *last {
                return Err(Error::Internal("the score cache is not in time order".into()));
            }
        }
        let (mut groups, mut folded) = (batch.chunk_by(|a, b| a.0 == b.0).peekable(), folded.into_iter().peekable());
        loop {
            let key = match (groups.peek(), folded.peek()) {
                (None, None) => break,
                (Some(rows), None) => rows[0].0,
                (None, Some((k, _))) => *k,
                (Some(rows), Some((k, _))) => rows[0].0.min(*k),
            };
            let rows = groups.next_if(|rows| rows[0].0 == key).unwrap_or(&[]);
            let earlier = folded.next_if(|(k, _)| *k == key).map(|(_, bytes)| bytes);
            if earlier.is_some() || rows.len() > fold_above || self.rows.len() + rows.len() > self.kept {
                self.scratch.clear();
                fold_pair(rows, earlier.as_deref(), scale, &self.needs, &mut self.scratch);
                let at = self.arena.push(&self.scratch);
                grow_gently(&mut self.keys);
                self.keys.push((key, Group::folded(at)));
            } else {
                let start = u32::try_from(self.rows.len()).map_err(|_| Error::Internal("more rows than the fast path can index".into()))?;
                self.rows.extend(rows.iter().map(|(_, r)| *r));
                grow_gently(&mut self.keys);
                self.keys.push((key, Group::rows(start, rows.len() as u32)));
            }
        }
        batch.clear();
        Ok(())
    }

    /// (keys, folded keys, kept rows, bytes).
    fn footprint(&self) -> (usize, usize, usize, usize) {
        let folded = self.keys.iter().filter(|(_, g)| matches!(g.held(), Held::Folded(_))).count();
        let rows = self.rows.capacity() + self.later.capacity();
        let bytes = self.keys.capacity() * std::mem::size_of::<(K, Group)>() + rows * std::mem::size_of::<R>() + self.arena.capacity();
        (self.keys.len(), folded, self.rows.len() + self.later.len(), bytes)
    }

    fn finish(&mut self) {
        self.keys.shrink_to_fit();
        self.rows.shrink_to_fit();
        self.arena.shrink_to_fit();
        self.later.shrink_to_fit();
    }

    /// The keys whose bucket (`bucket` of the key) is in [from, to).
    pub(super) fn between(&self, from: u32, to: u32, bucket: impl Fn(&K) -> u32) -> &[(K, Group)] {
        let a = self.keys.partition_point(|(k, _)| bucket(k) < from);
        let b = self.keys.partition_point(|(k, _)| bucket(k) < to);
        &self.keys[a..b.max(a)]
    }

    pub(super) fn add(&self, group: &Group, scale: &Scale, arm: usize, stats: &mut ArmStats) {
        match group.held() {
            Held::Rows { start, len } => {
                for row in self.rows_at(start, len) {
                    row.add(scale, arm, stats);
                }
            }
            Held::Folded(at) => {
                stats.add_encoded(self.summary(at, arm));
            }
        }
    }

    /// Adds a group to the `arm` of each (scope, group) slot of a window, every row's terms worked
    /// out once for all of them.
    fn add_to_slots(&self, group: &Group, scale: &Scale, arm: usize, slots: &[(usize, usize)], stats: &mut WindowStats) {
        match group.held() {
            Held::Rows { start, len } => {
                for row in self.rows_at(start, len) {
                    let term = row.term(scale, arm);
                    for &(s, g) in slots {
                        R::add_term(&term, &mut stats.scopes[s][g].arms[arm]);
                    }
                }
            }
            Held::Folded(at) => {
                let (summary, _) = Decoded::read(self.summary(at, arm));
                for &(s, g) in slots {
                    stats.scopes[s][g].arms[arm].add_decoded(&summary);
                }
            }
        }
    }
}

/// The size of a [`Summaries`] index.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Footprint {
    pub buckets: usize,
    pub cells: usize,
    pub bands: usize,
    pub request_keys: usize,
    pub label_keys: usize,
    /// Keys holding summaries rather than their rows.
    pub folded_keys: usize,
    /// Rows kept by keys with few of them.
    pub kept_rows: usize,
    pub bytes: usize,
    /// Passes over the score cache that built the index side by side (1 or 2).
    pub passes: usize,
}

/// Appends a length as 4 bytes.
fn write_length(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&(len as u32).to_le_bytes());
}

/// The stable model's and the candidate's summary of a folded pair at the start of `bytes` (the
/// candidate's runs on past its end).
fn pair_arms(bytes: &[u8]) -> [&[u8]; 2] {
    let first = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
    [&bytes[4..], &bytes[4 + first..]]
}

/// Appends the folded pair of `rows`, plus the pair `earlier` holds if the key was folded before,
/// to `out`: the stable model's summary after its length, then the candidate's.
fn fold_pair<K, R: Kept>(rows: &[(K, R)], earlier: Option<&[u8]>, scale: &Scale, needs: &Needs, out: &mut Vec<u8>) {
    let mut pair = Pair::default();
    for (_, row) in rows {
        row.fold(scale, &mut pair);
    }
    let mut first = Vec::new();
    let earlier = earlier.map(pair_arms);
    for (arm, packed) in pair.iter().enumerate() {
        let into = if arm == 0 { &mut first } else { &mut *out };
        match earlier {
            Some(e) => packed.encode_after(e[arm], needs, into),
            None => packed.encode(needs, into),
        }
        if arm == 0 {
            write_length(out, first.len());
            out.extend_from_slice(&first);
        }
    }
}

/// Makes room for one more element, growing a full vector by a quarter rather than doubling it: an
/// index's key lists run to millions of entries, and a doubled list is mostly empty.
fn grow_gently<T>(v: &mut Vec<T>) {
    if v.len() == v.capacity() {
        v.reserve_exact((v.capacity() / 4).max(1024));
    }
}

/// Labels waiting for the requests to reach the bucket they arrive in (one of these per arrival
/// bucket): their rows, and the keys with many of them folded so far — so what waits grows with
/// the keys in flight, not with the labels (a busy log's labels a few hours late are millions).
struct Waiting<K, R> {
    rows: Vec<(K, R)>,
    /// Each key's pair as [`fold_pair`] writes it.
    folded: BTreeMap<K, Vec<u8>>,
    /// The rows at which the next compaction runs.
    compact_at: usize,
}

/// The fewest rows a [`Waiting`] holds before it folds the keys with many (a few in unit tests, so
/// they fold labels in parts).
#[cfg(not(test))]
const COMPACT_AT: usize = 4096;
#[cfg(test)]
const COMPACT_AT: usize = 8;

impl<K: Ord + Copy, R: Kept> Waiting<K, R> {
    fn new() -> Self {
        Waiting { rows: Vec::new(), folded: BTreeMap::new(), compact_at: COMPACT_AT }
    }

    fn push(&mut self, key: K, row: R, scale: &Scale, fold_above: usize, needs: &Needs) {
        self.rows.push((key, row));
        if self.rows.len() >= self.compact_at {
            self.compact(scale, fold_above, needs);
            self.compact_at = (2 * self.rows.len()).max(COMPACT_AT);
        }
    }

    /// Folds the rows of keys with more than `fold_above` of them, or folded before, into their pairs.
    fn compact(&mut self, scale: &Scale, fold_above: usize, needs: &Needs) {
        self.rows.sort_unstable_by_key(|(k, _)| *k);
        let mut kept = Vec::new();
        for rows in self.rows.chunk_by(|a, b| a.0 == b.0) {
            let key = rows[0].0;
            let earlier = self.folded.get(&key);
            if earlier.is_some() || rows.len() > fold_above {
                let mut bytes = Vec::new();
                fold_pair(rows, earlier.map(Vec::as_slice), scale, needs, &mut bytes);
                self.folded.insert(key, bytes);
            } else {
                kept.extend_from_slice(rows);
            }
        }
        self.rows = kept;
    }
}

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
        let (mut bucket_rows, mut current) = (Vec::new(), first);
        let mut in_flight: BTreeMap<u32, Waiting<LabelKey, Labelled>> = BTreeMap::new();
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
                let flushed = requests
                    .append(&mut bucket_rows, BTreeMap::new(), scale, fold_above)
                    .and_then(|()| arrived.into_values().try_for_each(|mut w| labels.append(&mut w.rows, w.folded, scale, fold_above)));
                if let Err(e) = flushed {
                    failed = Some(e);
                    return;
                }
                current = b;
            }
            bucket_rows.push(((b, row.cell, band), row.outputs().map(|out| scale.contribution(&out))));
            if let (Some(label), Some(lt)) = (row.label(), row.label_time()) {
                let arrival = bucket(lt).max(b);
                let labelled = Labelled::new(label, row.outputs().map(|out| out.score));
                in_flight.entry(arrival).or_insert_with(Waiting::new).push(
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
        requests.append(&mut bucket_rows, BTreeMap::new(), scale, fold_above)?;
        for mut w in in_flight.into_values() {
            labels.append(&mut w.rows, w.folded, scale, fold_above)?;
        }
        Ok(Built { requests, labels, starts, rows })
    }
}

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
    #[cfg(test)]
    pub(crate) fn build_folding(
        replay: &Replay,
        salt: &str,
        weights: &[f64],
        scale: Scale,
        grid: (Micros, Micros),
        fold_above: usize,
        needs: Needs,
    ) -> Result<Self> {
        Self::build_with(replay, salt, weights, scale, grid, fold_above, needs)
    }

    fn build_with(
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
                before.requests.absorb(after.requests, true);
                before.labels.absorb(after.labels, false);
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
        Ok(Self { scale, origin: grid.0, width: grid.1, cuts, requests, labels, starts, needs, checkpoints, cells, passes })
    }

    fn bands(&self) -> usize {
        self.cuts.len() + 1
    }

    /// Adds the requests per (cell, band) of request keys in buckets [from, to) to `counts`.
    fn count_keys(&self, from: u32, to: u32, counts: &mut [u64]) {
        let bands = self.bands();
        for ((_, cell, band), group) in self.requests.between(from, to, |k| k.0) {
            counts[*cell as usize * bands + *band as usize] += self.requests.requests(group);
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
        (self.requests.keys.len(), self.labels.keys.len())
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
    let last = requests.keys.last().map_or(0, |((b, _, _), _)| *b);
    let mut out = vec![0u64; size];
    let mut running = vec![0u64; size];
    let mut k = 1u32;
    for ((bucket, cell, band), group) in &requests.keys {
        while *bucket >= k * CHECKPOINT {
            out.extend_from_slice(&running);
            k += 1;
        }
        running[*cell as usize * bands + *band as usize] += requests.requests(group);
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
        for ((_, cell, band), group) in requests.between(from, to, |k| k.0) {
            let Some(route) = &routes[*cell as usize] else { continue };
            let arm = usize::from(*band as usize <= route.last_candidate_band);
            requests.add_to_slots(group, scale, arm, &route.slots, stats);
        }
        for ((_, requested, cell, band), group) in labels.between(from, to, |k| k.0) {
            let Some(route) = routes[*cell as usize].as_ref().filter(|_| *requested >= start) else { continue };
            let arm = usize::from(*band as usize <= route.last_candidate_band);
            labels.add_to_slots(group, scale, arm, &route.slots, stats);
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
        let mut stats = WindowStats::new(self.scopes.len());
        for ((_, cell, _), group) in requests.between(start, end, |k| k.0) {
            for &s in &self.scopes.of_cell[*cell as usize] {
                for arm in 0..2 {
                    requests.add(group, scale, arm, stats.arm(s, 1.0, arm));
                }
            }
        }
        for ((_, requested, cell, _), group) in &labels.keys {
            if *requested < start || *requested >= end {
                continue;
            }
            for &s in &self.scopes.of_cell[*cell as usize] {
                for arm in 0..2 {
                    labels.add(group, scale, arm, stats.arm(s, 1.0, arm));
                }
            }
        }
        stats
    }
}
