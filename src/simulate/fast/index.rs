//! The fast path's index: keys (bucket × cell × band, and label arrivals) holding their requests'
//! rows while few, else their summaries, encoded one after another into a stream of bytes — each
//! key written against the one before it, so a key and its summaries' lengths take a few bytes
//! rather than the 28 of a list of keys beside an arena; labels waiting for the check interval
//! they arrive in.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::simulate::metrics::{log_loss, put_varint, take_varint, ArmStats, Contribution, Decoded, Needs, Packed, Quality, Scale};
use crate::simulate::window::WindowStats;

/// Summaries of one key: [stable output, candidate output].
type Pair = [Packed; 2];

/// (bucket, cell, band).
pub(in crate::simulate) type RequestKey = (u32, u32, u8);

/// (arrival bucket, request bucket, cell, band).
pub(in crate::simulate) type LabelKey = (u32, u32, u32, u8);

/// A key of an index: its bucket, and the rest written against the key before it in the bucket.
pub(in crate::simulate) trait Key: Ord + Copy {
    fn bucket(&self) -> u32;
    /// Appends the key, which sorts after `before` (the previous key of its bucket, if any).
    fn put(&self, before: Option<&Self>, out: &mut Vec<u8>);
    /// The key of `bucket` [`Key::put`] wrote at `bytes[*at..]` after `before`; moves `at` past it.
    fn take(bucket: u32, before: Option<&Self>, bytes: &[u8], at: &mut usize) -> Self;
    /// The key as one number that sorts as it does.
    fn rank(&self) -> u128;
}

/// Sorts rows by key: the keys' ranks sorted with the rows' positions, then each row moved once,
/// cycle by cycle. Sorting the rows themselves (72 bytes for a label), comparing keys field by
/// field, was a sixth of the index build's time at 100×; this took a tenth off it.
fn sort_by_key<K: Key, R: Copy>(rows: &mut [(K, R)]) {
    let mut order: Vec<(u128, usize)> = rows.iter().enumerate().map(|(i, (k, _))| (k.rank(), i)).collect();
    order.sort_unstable_by_key(|&(rank, _)| rank);
    // Position `at` takes the row at `order[at].1`, which is then marked as moved.
    for start in 0..rows.len() {
        if order[start].1 == usize::MAX {
            continue;
        }
        let first = rows[start];
        let mut at = start;
        loop {
            let from = std::mem::replace(&mut order[at].1, usize::MAX);
            if from == start {
                rows[at] = first;
                break;
            }
            rows[at] = rows[from];
            at = from;
        }
    }
}

/// The cell as its step from `from` (a key's cells ascend within its bucket), and the band.
fn put_cell(cell: u32, band: u8, from: u32, out: &mut Vec<u8>) {
    put_varint(out, u128::from(cell - from) << 8 | u128::from(band));
}

fn take_cell(from: u32, bytes: &[u8], at: &mut usize) -> (u32, u8) {
    let mut v = 0;
    take_varint(bytes, at, &mut v);
    (from + (v >> 8) as u32, v as u8)
}

/// One byte for the next band of a cell, two for the next cell.
impl Key for RequestKey {
    fn bucket(&self) -> u32 {
        self.0
    }

    fn put(&self, before: Option<&Self>, out: &mut Vec<u8>) {
        put_cell(self.1, self.2, before.map_or(0, |b| b.1), out);
    }

    fn take(bucket: u32, before: Option<&Self>, bytes: &[u8], at: &mut usize) -> Self {
        let (cell, band) = take_cell(before.map_or(0, |b| b.1), bytes, at);
        (bucket, cell, band)
    }

    fn rank(&self) -> u128 {
        u128::from(self.0) << 40 | u128::from(self.1) << 8 | u128::from(self.2)
    }
}

/// The request bucket as its step from the one before (the first of an arrival bucket as its lag),
/// then the cell as a request key's is.
impl Key for LabelKey {
    fn bucket(&self) -> u32 {
        self.0
    }

    fn put(&self, before: Option<&Self>, out: &mut Vec<u8>) {
        let (step, from) = match before {
            Some(b) => (self.1 - b.1, if b.1 == self.1 { b.2 } else { 0 }),
            None => (self.0 - self.1, 0),
        };
        put_varint(out, u128::from(step));
        put_cell(self.2, self.3, from, out);
    }

    fn take(bucket: u32, before: Option<&Self>, bytes: &[u8], at: &mut usize) -> Self {
        let mut step = 0;
        take_varint(bytes, at, &mut step);
        let (requested, from) = match before {
            Some(b) => (b.1 + step as u32, if step == 0 { b.2 } else { 0 }),
            None => (bucket - step as u32, 0),
        };
        let (cell, band) = take_cell(from, bytes, at);
        (bucket, requested, cell, band)
    }

    fn rank(&self) -> u128 {
        u128::from(self.0) << 72 | u128::from(self.1) << 40 | u128::from(self.2) << 8 | u128::from(self.3)
    }
}

/// Keys with at most this many requests keep them as rows while the index keeps fewer than
/// [`KEPT_ROWS`]: a kept row takes 48 bytes (56 for a label) and is added to a window faster than a
/// summary is read, a folded pair of summaries about 30–300 bytes however many requests it holds.
pub(super) const FOLD_ABOVE: usize = 16;

/// Rows an index keeps at most (about 13 MB); beyond, every key is folded, so memory grows with
/// the keys, never with the requests.
#[cfg(not(test))]
pub(super) const KEPT_ROWS: usize = 1 << 18;
#[cfg(test)]
pub(super) const KEPT_ROWS: usize = 400;

/// What a key holds, as [`Keys`] reads it: its rows in the index's row store, or their summaries
/// in its stream (the stable model's, then the candidate's, each [`Packed::encode`]d, the first
/// after its length) — packed into 8 bytes ([`Held`] is what it says).
#[derive(Debug, Clone, Copy)]
pub(in crate::simulate) struct Group(u64);

/// A [`Group`] read.
enum Held {
    Rows { start: u32, len: u32 },
    Folded(u64),
}

/// The bit of a [`Group`] that says it is folded.
const FOLDED: u64 = 1 << 63;

impl Group {
    /// `len` below 2³¹ (an index keeps at most `KEPT_ROWS` rows).
    pub(super) fn rows(start: u32, len: u32) -> Self {
        debug_assert!(len < 1 << 31);
        Group(u64::from(start) << 31 | u64::from(len))
    }

    /// At position `at` of the stream ([`Arena`]; below 2⁶³).
    pub(super) fn folded(at: u64) -> Self {
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
pub(in crate::simulate) trait Kept: Copy {
    /// What the row adds to one arm, worked out once however many scopes it goes to.
    type Term;
    fn fold(&self, scale: &Scale, pair: &mut Pair);
    fn term(&self, scale: &Scale, arm: usize) -> Self::Term;
    fn add_term(term: &Self::Term, stats: &mut ArmStats);
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
pub(in crate::simulate) struct Labelled {
    pub(super) label: f64,
    pub(super) scores: [Option<f64>; 2],
    pub(super) log_loss: [i64; 2],
}

impl Labelled {
    pub(super) fn new(label: f64, scores: [Option<f64>; 2]) -> Self {
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

/// An index's stream in blocks of about [`BLOCK`] bytes that never move: growing takes a new block
/// rather than copying everything into a buffer twice the size (a doubled buffer held up to twice
/// the summaries, and both copies while it grew). A position is its block · 2³² + its offset in
/// the block; an entry never straddles two blocks, and once a block is left nothing more is
/// written to it, so a reader that reaches a block's end goes on at the next block's start.
#[derive(Debug, Default)]
struct Arena {
    pub(super) blocks: Vec<Vec<u8>>,
}

#[cfg(not(test))]
const BLOCK: usize = 1 << 20;
/// Small in unit tests, so the keys read cross blocks often.
#[cfg(test)]
const BLOCK: usize = 64;

impl Arena {
    /// Appends `bytes` whole to one block; returns their position.
    pub(super) fn push(&mut self, bytes: &[u8]) -> u64 {
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
    pub(super) fn at(&self, at: u64) -> &[u8] {
        &self.blocks[(at >> 32) as usize][(at & 0xffff_ffff) as usize..]
    }

    /// `other`'s blocks moved after these; returns what to add to `other`'s positions.
    pub(super) fn absorb(&mut self, other: Arena) -> u64 {
        let shift = (self.blocks.len() as u64) << 32;
        self.blocks.extend(other.blocks);
        shift
    }

    pub(super) fn capacity(&self) -> usize {
        self.blocks.iter().map(Vec::capacity).sum()
    }

    pub(super) fn shrink_to_fit(&mut self) {
        if let Some(last) = self.blocks.last_mut() {
            last.shrink_to_fit();
        }
        self.blocks.shrink_to_fit();
    }
}

/// The keys of one bucket written one after another from position `at` of the stream; their
/// rows, if they keep any, from `rows` on in the row store.
#[derive(Debug, Clone, Copy)]
struct Run {
    bucket: u32,
    keys: u32,
    rows: u32,
    at: u64,
}

/// Keys in order, each with its rows or summaries: a stream of entries, each a key ([`Key::put`]
/// against the one before it in its bucket), then `n · 2 + 1` and a pair of `n` bytes
/// ([`fold_pair`]) if the key is folded, else `n · 2` for its `n` rows in the row store — a run
/// of them per bucket. A key takes about 3 bytes besides its summaries (a list of keys and
/// positions beside an arena took 28).
#[derive(Debug)]
pub(in crate::simulate) struct Index<K, R> {
    runs: Vec<Run>,
    stream: Arena,
    /// The last key appended (appends go in key order).
    last: Option<K>,
    folded: usize,
    pub(super) rows: Vec<R>,
    /// Where a pair is written before it goes into its entry, and the entry before it goes into
    /// the stream.
    scratch: (Vec<u8>, Vec<u8>),
    /// Every key read from the stream once, for an index that many policies read over and over
    /// ([`Index::expand`]).
    expanded: Option<Expanded<K>>,
    /// What folded summaries keep.
    pub(super) needs: Needs,
    /// Rows kept at most; beyond, keys are folded.
    pub(super) kept: usize,
    /// The rows of an index absorbed whole ([`Index::absorb`]), moved rather than copied:
    /// positions past this index's own rows are in these.
    pub(super) later: Vec<R>,
}

impl<K: Key, R: Kept> Index<K, R> {
    pub(super) fn new(needs: Needs, kept: usize) -> Self {
        Self {
            runs: Vec::new(),
            stream: Arena::default(),
            last: None,
            folded: 0,
            rows: Vec::new(),
            scratch: (Vec::new(), Vec::new()),
            expanded: None,
            needs,
            kept,
            later: Vec::new(),
        }
    }

    /// `other`'s keys added to these, every key of either once: `other`'s rows and stream blocks
    /// are moved in whole (copying them doubled them for a moment: 50 MB at 100×) and its runs
    /// shifted to point at them, then the two lists of runs merged by bucket (a stable sort of
    /// two sorted lists), so a bucket may be read in two runs, this index's first (in a split
    /// build its keys of a bucket are the ones with the earlier request buckets, so the order of
    /// the keys is kept).
    pub(super) fn absorb(&mut self, other: Index<K, R>) {
        debug_assert!(self.later.is_empty() && other.later.is_empty(), "an index absorbs one other");
        debug_assert!(self.expanded.is_none() && other.expanded.is_none(), "an index is expanded once built");
        let rows = self.rows.len() as u32;
        let shift = self.stream.absorb(other.stream);
        self.runs.extend(other.runs.into_iter().map(|r| Run { rows: r.rows + rows, at: r.at + shift, ..r }));
        self.runs.sort_by_key(|r| r.bucket);
        self.folded += other.folded;
        self.last = self.last.max(other.last);
        self.later = other.rows;
        self.kept = self.kept.max(self.rows.len() + self.later.len());
    }

    /// The `len` rows kept from position `start`.
    pub(super) fn rows_at(&self, start: u32, len: u32) -> &[R] {
        let (start, len) = (start as usize, len as usize);
        match start.checked_sub(self.rows.len()) {
            Some(later) => &self.later[later..later + len],
            None => &self.rows[start..start + len],
        }
    }

    /// Requests in a request key (either model served all of them).
    pub(in crate::simulate) fn requests(&self, group: &Group) -> u64 {
        match group.held() {
            Held::Rows { len, .. } => u64::from(len),
            Held::Folded(at) => Packed::encoded_requests(self.summary(at, 0)),
        }
    }

    /// The summary of model `arm` of a folded key.
    pub(super) fn summary(&self, at: u64, arm: usize) -> &[u8] {
        pair_arms(self.stream.at(at))[arm]
    }

    /// Appends a batch of rows, and keys folded while they waited ([`Waiting`]), whose keys all
    /// sort after every key already indexed: the rows sorted by key (the order within a key does
    /// not matter, all sums are integers); keys folded before, with more than `fold_above` rows, or
    /// past the kept-rows cap folded, the others' rows kept.
    pub(super) fn append(&mut self, batch: &mut Vec<(K, R)>, folded: BTreeMap<K, Vec<u8>>, scale: &Scale, fold_above: usize) -> Result<()> {
        debug_assert!(self.later.is_empty(), "nothing is appended to an index that absorbed another");
        debug_assert!(self.expanded.is_none(), "nothing is appended to an expanded index");
        sort_by_key(batch);
        let first = match (batch.first(), folded.keys().next()) {
            (Some((a, _)), Some(b)) => Some(*a.min(b)),
            (a, b) => a.map(|(k, _)| *k).or(b.copied()),
        };
        if let (Some(last), Some(first)) = (self.last, first) {
            if first <= last {
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
            let before = self.last.filter(|last| last.bucket() == key.bucket());
            let (pair, entry) = &mut self.scratch;
            entry.clear();
            key.put(before.as_ref(), entry);
            let fold = earlier.is_some() || rows.len() > fold_above || self.rows.len() + rows.len() > self.kept;
            if fold {
                pair.clear();
                fold_pair(rows, earlier.as_deref(), scale, &self.needs, pair);
                put_varint(entry, (pair.len() as u128) << 1 | 1);
                entry.extend_from_slice(pair);
            } else {
                u32::try_from(self.rows.len() + rows.len())
                    .map_err(|_| Error::Internal("more rows than the fast path can index".into()))?;
                put_varint(entry, (rows.len() as u128) << 1);
            }
            let at = self.stream.push(entry);
            if before.is_none() {
                self.runs.push(Run { bucket: key.bucket(), keys: 0, rows: self.rows.len() as u32, at });
            }
            if let Some(run) = self.runs.last_mut() {
                run.keys += 1;
            }
            if fold {
                self.folded += 1;
            } else {
                self.rows.extend(rows.iter().map(|(_, r)| *r));
            }
            self.last = Some(key);
        }
        batch.clear();
        Ok(())
    }

    /// Keys stored.
    pub(super) fn len(&self) -> usize {
        self.runs.iter().map(|r| r.keys as usize).sum()
    }

    /// (keys, folded keys, kept rows, bytes).
    pub(super) fn footprint(&self) -> (usize, usize, usize, usize) {
        let rows = self.rows.capacity() + self.later.capacity();
        let expanded = self
            .expanded
            .as_ref()
            .map_or(0, |e| e.keys.capacity() * std::mem::size_of::<(K, Group)>() + e.starts.capacity() * std::mem::size_of::<usize>());
        let bytes = self.runs.capacity() * std::mem::size_of::<Run>() + rows * std::mem::size_of::<R>() + self.stream.capacity() + expanded;
        (self.len(), self.folded, self.rows.len() + self.later.len(), bytes)
    }

    pub(super) fn finish(&mut self) {
        self.runs.shrink_to_fit();
        self.rows.shrink_to_fit();
        self.stream.shrink_to_fit();
        self.later.shrink_to_fit();
        self.scratch = (Vec::new(), Vec::new());
    }

    /// The keys whose bucket is in [from, to), in order.
    pub(in crate::simulate) fn between(&self, from: u32, to: u32) -> Keys<'_, K> {
        let a = self.runs.partition_point(|r| r.bucket < from);
        let b = self.runs.partition_point(|r| r.bucket < to).max(a);
        match &self.expanded {
            Some(e) => Keys::Expanded(e.keys[e.starts[a]..e.starts[b]].iter()),
            None => Keys::Stream(Stream {
                stream: &self.stream,
                runs: self.runs[a..b].iter(),
                left: 0,
                bucket: 0,
                at: (0, 0),
                before: None,
                rows: 0,
            }),
        }
    }

    /// Keeps every key read from the stream besides it (24 bytes a key more): reading a key
    /// from the stream takes a few dozen instructions, about as many as the rest of adding it,
    /// and a tune's variants read the same keys thousands of times (its search took a fifth
    /// more instructions reading the stream).
    pub(in crate::simulate) fn expand(&mut self) {
        if self.expanded.is_none() {
            let keys: Vec<(K, Group)> = self.iter().collect();
            let mut starts = Vec::with_capacity(self.runs.len() + 1);
            starts.push(0);
            for run in &self.runs {
                starts.push(starts.last().copied().unwrap_or(0) + run.keys as usize);
            }
            self.expanded = Some(Expanded { keys, starts });
        }
    }

    /// Every key, in order.
    pub(in crate::simulate) fn iter(&self) -> Keys<'_, K> {
        self.between(0, u32::MAX)
    }

    /// The bucket of the last key (none: 0).
    pub(super) fn last_bucket(&self) -> u32 {
        self.runs.last().map_or(0, |r| r.bucket)
    }

    /// Adds a group to the `arm` statistics of every target — every row's terms worked out, or the
    /// summary read, once for all of them (none: nothing is read). A summary goes straight into a
    /// single target (reading it into a [`Decoded`] and merging that made the controllers' queries
    /// 1.8× slower at 100×).
    #[inline]
    pub(in crate::simulate) fn add_with(&self, group: &Group, scale: &Scale, arm: usize, mut targets: impl Targets) {
        match group.held() {
            _ if targets.fan_out() == 0 => {}
            Held::Rows { start, len } => {
                for row in self.rows_at(start, len) {
                    let term = row.term(scale, arm);
                    targets.each(|stats| R::add_term(&term, stats));
                }
            }
            Held::Folded(at) if targets.fan_out() == 1 => {
                let summary = self.summary(at, arm);
                targets.each(|stats| {
                    stats.add_encoded(summary, &self.needs);
                });
            }
            Held::Folded(at) => {
                let (summary, _) = Decoded::read(self.summary(at, arm), &self.needs);
                targets.each(|stats| stats.add_decoded(&summary));
            }
        }
    }

    /// Adds a group to the `arm` of each (scope, group) slot of a window ([`Index::add_with`]).
    #[inline]
    pub(super) fn add_to_slots(&self, group: &Group, scale: &Scale, arm: usize, slots: &[(usize, usize)], stats: &mut WindowStats) {
        self.add_with(group, scale, arm, Slots { slots, stats, arm });
    }
}

/// An index's keys read: each with its group, and where each run's keys start among them.
#[derive(Debug)]
struct Expanded<K> {
    keys: Vec<(K, Group)>,
    starts: Vec<usize>,
}

/// The keys of a range of runs, each with its [`Group`]: read from the index's stream, or from its
/// keys read before ([`Index::expand`]).
pub(in crate::simulate) enum Keys<'a, K> {
    Stream(Stream<'a, K>),
    Expanded(std::slice::Iter<'a, (K, Group)>),
}

impl<K: Key> Iterator for Keys<'_, K> {
    type Item = (K, Group);

    #[inline]
    fn next(&mut self) -> Option<(K, Group)> {
        match self {
            Keys::Stream(stream) => stream.next(),
            Keys::Expanded(keys) => keys.next().copied(),
        }
    }
}

/// The keys of a range of runs read from an index's stream.
pub(in crate::simulate) struct Stream<'a, K> {
    stream: &'a Arena,
    runs: std::slice::Iter<'a, Run>,
    /// Keys left in the run being read, its bucket, and where the next key is (block, offset).
    left: u32,
    bucket: u32,
    at: (usize, usize),
    /// The key read last in the run, and where the next key's rows start.
    before: Option<K>,
    rows: u32,
}

impl<K: Key> Iterator for Stream<'_, K> {
    type Item = (K, Group);

    fn next(&mut self) -> Option<(K, Group)> {
        while self.left == 0 {
            let run = self.runs.next()?;
            (self.left, self.bucket, self.before, self.rows) = (run.keys, run.bucket, None, run.rows);
            self.at = ((run.at >> 32) as usize, (run.at & 0xffff_ffff) as usize);
        }
        let blocks = &self.stream.blocks;
        if self.at.1 == blocks[self.at.0].len() {
            self.at = (self.at.0 + 1, 0);
        }
        let (bytes, at) = (&blocks[self.at.0], &mut self.at.1);
        let key = K::take(self.bucket, self.before.as_ref(), bytes, at);
        let mut header = 0;
        take_varint(bytes, at, &mut header);
        let n = (header >> 1) as u32;
        let group = if header & 1 == 1 {
            let group = Group::folded((self.at.0 as u64) << 32 | *at as u64);
            *at += n as usize;
            group
        } else {
            self.rows += n;
            Group::rows(self.rows - n, n)
        };
        self.left -= 1;
        self.before = Some(key);
        Some((key, group))
    }
}

/// Where [`Index::add_with`] adds a key: the arm statistics it passes to `add`, one by one.
pub(in crate::simulate) trait Targets {
    /// How many there are.
    fn fan_out(&self) -> usize;
    fn each(&mut self, add: impl FnMut(&mut ArmStats));
}

/// `fan_out` targets that a closure passes one by one to its argument.
pub(in crate::simulate) struct Each<F>(pub usize, pub F);

impl<F: FnMut(&mut dyn FnMut(&mut ArmStats))> Targets for Each<F> {
    fn fan_out(&self) -> usize {
        self.0
    }

    fn each(&mut self, mut add: impl FnMut(&mut ArmStats)) {
        (self.1)(&mut add);
    }
}

/// The `arm` of (scope, group) slots of a window: the policy's checks, on every key of a tune.
struct Slots<'a> {
    slots: &'a [(usize, usize)],
    stats: &'a mut WindowStats,
    arm: usize,
}

impl Targets for Slots<'_> {
    fn fan_out(&self) -> usize {
        self.slots.len()
    }

    #[inline]
    fn each(&mut self, mut add: impl FnMut(&mut ArmStats)) {
        for &(s, g) in self.slots {
            add(&mut self.stats.scopes[s][g].arms[self.arm]);
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

/// The stable model's and the candidate's summary of a folded pair at the start of `bytes` (the
/// candidate's runs on past its end): the first after its length.
fn pair_arms(bytes: &[u8]) -> [&[u8]; 2] {
    let (mut at, mut first) = (0, 0);
    take_varint(bytes, &mut at, &mut first);
    [&bytes[at..], &bytes[at + first as usize..]]
}

/// Appends the folded pair of `rows`, plus the pair `earlier` holds if the key was folded before,
/// to `out`: the stable model's summary after its length, then the candidate's.
fn fold_pair<K, R: Kept>(rows: &[(K, R)], earlier: Option<&[u8]>, scale: &Scale, needs: &Needs, out: &mut Vec<u8>) {
    let mut pair = Pair::default();
    for packed in &mut pair {
        packed.reserve(rows.len());
    }
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
            put_varint(out, first.len() as u128);
            out.extend_from_slice(&first);
        }
    }
}

/// Labels waiting for the requests to reach the bucket they arrive in (one of these per arrival
/// bucket), and the requests of the bucket being read: their rows, and the keys with many of them
/// folded so far — so what waits grows with the keys in flight, not with the labels (a busy log's
/// labels a few hours late are millions) nor with a bucket's requests.
pub(super) struct Waiting<K, R> {
    pub(super) rows: Vec<(K, R)>,
    /// Each key's pair as [`fold_pair`] writes it.
    pub(super) folded: BTreeMap<K, Vec<u8>>,
    /// The rows at which the next compaction runs.
    pub(super) compact_at: usize,
}

/// The fewest rows a [`Waiting`] holds before it folds the keys with many (a few in unit tests, so
/// they fold labels in parts).
#[cfg(not(test))]
const COMPACT_AT: usize = 4096;
#[cfg(test)]
const COMPACT_AT: usize = 8;

impl<K: Key, R: Kept> Waiting<K, R> {
    pub(super) fn new() -> Self {
        Self::reusing(Vec::new())
    }

    /// Waiting rows in `rows`' allocation (emptied): every bucket and arrival fills one, and
    /// growing a new vector each time (with the bins of folded keys, below) kept 9% of the index
    /// build at 100× in reallocation; 3% now.
    pub(super) fn reusing(mut rows: Vec<(K, R)>) -> Self {
        rows.clear();
        Waiting { rows, folded: BTreeMap::new(), compact_at: COMPACT_AT }
    }

    pub(super) fn push(&mut self, key: K, row: R, scale: &Scale, fold_above: usize, needs: &Needs) {
        self.rows.push((key, row));
        if self.rows.len() >= self.compact_at {
            self.compact(scale, fold_above, needs);
            self.compact_at = (2 * self.rows.len()).max(COMPACT_AT);
        }
    }

    /// Appends what waited to `index` ([`Index::append`]); returns the emptied rows' allocation.
    pub(super) fn append_to(mut self, index: &mut Index<K, R>, scale: &Scale, fold_above: usize) -> Result<Vec<(K, R)>> {
        index.append(&mut self.rows, self.folded, scale, fold_above)?;
        Ok(self.rows)
    }

    /// Folds the rows of keys with more than `fold_above` of them, or folded before, into their pairs.
    pub(super) fn compact(&mut self, scale: &Scale, fold_above: usize, needs: &Needs) {
        sort_by_key(&mut self.rows);
        // The rows kept move to the front, in place.
        let (mut start, mut kept) = (0, 0);
        while start < self.rows.len() {
            let key = self.rows[start].0;
            let end = start + self.rows[start..].partition_point(|(k, _)| *k == key);
            let earlier = self.folded.get(&key);
            if earlier.is_some() || end - start > fold_above {
                let mut bytes = Vec::new();
                fold_pair(&self.rows[start..end], earlier.map(Vec::as_slice), scale, needs, &mut bytes);
                self.folded.insert(key, bytes);
            } else {
                self.rows.copy_within(start..end, kept);
                kept += end - start;
            }
            start = end;
        }
        self.rows.truncate(kept);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::simulate::metrics::tests::scale;

    /// The labels a label key holds, read as a window reads them (rows or summary).
    fn labels_of(index: &Index<LabelKey, Labelled>, group: &Group, scale: &Scale) -> u64 {
        let mut stats = ArmStats::default();
        index.add_with(group, scale, 1, Each(1, |add: &mut dyn FnMut(&mut ArmStats)| add(&mut stats)));
        stats.s.labelled
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Rows sorted through their keys' ranks come out as a sort by key puts them, each row
        /// once (rows of one key in any order); ranks order keys as the keys do.
        #[test]
        fn rows_sort_by_rank_as_by_key(
            raw in prop::collection::vec((0u32..3, prop_oneof![0u32..3, Just(u32::MAX)], prop_oneof![0u32..4, Just(u32::MAX)], prop_oneof![0u8..3, Just(u8::MAX)]), 0..200),
        ) {
            let mut rows: Vec<(LabelKey, usize)> = raw.into_iter().enumerate().map(|(i, k)| (k, i)).collect();
            let mut expected = rows.clone();
            expected.sort();
            sort_by_key(&mut rows);
            prop_assert!(rows.windows(2).all(|w| w[0].0 <= w[1].0));
            rows.sort();
            prop_assert_eq!(&rows, &expected);
            for w in expected.windows(2) {
                prop_assert_eq!(w[0].0.cmp(&w[1].0), w[0].0.rank().cmp(&w[1].0.rank()));
                let (a, b) = ((w[0].0 .0, w[0].0 .2, w[0].0 .3), (w[1].0 .0, w[1].0 .2, w[1].0 .3));
                prop_assert_eq!(a.cmp(&b), a.rank().cmp(&b.rank()));
            }
        }

        /// Label keys (arrival, lag, cell, band, labels) indexed as a split build indexes them —
        /// the keys of requests before the split bucket in one index, the others in another, each
        /// appended arrival bucket by arrival bucket, then merged — read back: every key once, in
        /// key order, holding its labels, and each bucket's keys in `between`. Entries cross the
        /// stream's blocks often (64 bytes in unit tests), kept rows run out at 50.
        #[test]
        fn keys_read_back_in_order_with_what_they_hold(
            raw in prop::collection::vec((0u32..6, 0u32..4, prop_oneof![0u32..3, 0u32..100_000], any::<u8>(), 1usize..20), 1..120),
            split in 0u32..7,
            fold_above in 0usize..4,
        ) {
            let scale = scale();
            let mut keys: BTreeMap<LabelKey, u64> = BTreeMap::new();
            for (arrival, lag, cell, band, n) in raw {
                *keys.entry((arrival, arrival.saturating_sub(lag), cell, band)).or_default() += n as u64;
            }
            let build = |before: bool| {
                let mut index = Index::new(Needs::ALL, 50);
                for arrival in 0..6 {
                    let mut batch: Vec<(LabelKey, Labelled)> = keys
                        .iter()
                        .filter(|(k, _)| k.0 == arrival && (k.1 < split) == before)
                        .flat_map(|(k, n)| std::iter::repeat_n((*k, Labelled::new(1.0, [Some(0.25), Some(0.75)])), *n as usize))
                        .collect();
                    index.append(&mut batch, BTreeMap::new(), &scale, fold_above).unwrap();
                }
                index
            };
            let mut index = build(true);
            index.absorb(build(false));
            let read: Vec<(LabelKey, u64)> = index.iter().map(|(k, g)| (k, labels_of(&index, &g, &scale))).collect();
            prop_assert_eq!(&read, &keys.iter().map(|(k, n)| (*k, *n)).collect::<Vec<_>>());
            prop_assert_eq!(index.len(), keys.len());
            for bucket in 0..7 {
                let of: Vec<LabelKey> = index.between(bucket, bucket + 1).map(|(k, _)| k).collect();
                prop_assert_eq!(of, keys.keys().filter(|k| k.0 == bucket).copied().collect::<Vec<_>>());
            }
            // Expanded: the same keys and groups, by bucket as well.
            let groups = |index: &Index<LabelKey, Labelled>, from, to| index.between(from, to).map(|(k, g)| (k, g.0)).collect::<Vec<_>>();
            let streamed: Vec<_> = (0..8).flat_map(|from| (from..8).map(move |to| (from, to))).map(|(a, b)| groups(&index, a, b)).collect();
            index.expand();
            let held: Vec<_> = (0..8).flat_map(|from| (from..8).map(move |to| (from, to))).map(|(a, b)| groups(&index, a, b)).collect();
            prop_assert_eq!(held, streamed);
        }

        /// Request keys likewise, appended in one index (their requests as a window counts them).
        #[test]
        fn request_keys_read_back_with_their_requests(
            raw in prop::collection::vec((0u32..6, prop_oneof![0u32..3, 0u32..100_000], any::<u8>(), 1usize..20), 1..120),
            fold_above in 0usize..4,
        ) {
            let scale = scale();
            let output = crate::simulate::replay::Output { error: false, score: Some(0.3), latency_ms: Some(5.0) };
            let contribution = [scale.contribution(&output); 2];
            let mut keys: BTreeMap<RequestKey, u64> = BTreeMap::new();
            for (bucket, cell, band, n) in raw {
                *keys.entry((bucket, cell, band)).or_default() += n as u64;
            }
            let mut index = Index::new(Needs::ALL, 50);
            for bucket in 0..6 {
                let mut batch: Vec<(RequestKey, [Contribution; 2])> = keys
                    .iter()
                    .filter(|(k, _)| k.0 == bucket)
                    .flat_map(|(k, n)| std::iter::repeat_n((*k, contribution), *n as usize))
                    .collect();
                index.append(&mut batch, BTreeMap::new(), &scale, fold_above).unwrap();
            }
            let read: Vec<(RequestKey, u64)> = index.iter().map(|(k, g)| (k, index.requests(&g))).collect();
            prop_assert_eq!(read, keys.iter().map(|(k, n)| (*k, *n)).collect::<Vec<_>>());
            prop_assert_eq!(index.last_bucket(), keys.keys().last().map_or(0, |k| k.0));
        }
    }
}
