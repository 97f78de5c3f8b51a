//! The fast path's index: keys (bucket × cell × band, and label arrivals) holding their requests'
//! rows while few, else their summaries encoded into an arena; labels waiting for the check
//! interval they arrive in.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::simulate::metrics::{log_loss, ArmStats, Contribution, Decoded, Needs, Packed, Quality, Scale};
use crate::simulate::window::WindowStats;

/// Summaries of one key: [stable output, candidate output].
type Pair = [Packed; 2];

/// (bucket, cell, band).
pub(in crate::simulate) type RequestKey = (u32, u32, u8);

/// (arrival bucket, request bucket, cell, band).
pub(in crate::simulate) type LabelKey = (u32, u32, u32, u8);

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

/// What a key holds: its rows in the index's row store, or their summaries in its arena (the
/// stable model's, then the candidate's, each [`Packed::encode`]d, the first after its length) —
/// packed into 8 bytes, as there is one per key ([`Held`] is what it says).
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

    /// At position `at` of the arena ([`Arena`]; below 2⁶³).
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

/// Folded summaries in blocks of about [`BLOCK`] bytes that never move: growing takes a new block
/// rather than copying everything into a buffer twice the size (a doubled buffer held up to twice
/// the summaries, and both copies while it grew). A pair's position is its block · 2³² + its
/// offset in the block, and a pair never straddles two blocks.
#[derive(Debug, Default)]
struct Arena {
    pub(super) blocks: Vec<Vec<u8>>,
}

const BLOCK: usize = 1 << 20;

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

/// Keys in order, each with its rows or summaries.
#[derive(Debug)]
pub(in crate::simulate) struct Index<K, R> {
    pub(super) keys: Vec<(K, Group)>,
    pub(super) rows: Vec<R>,
    /// The folded keys' summaries.
    arena: Arena,
    /// Where a pair is written before it is placed in the arena.
    pub(super) scratch: Vec<u8>,
    /// What folded summaries keep.
    pub(super) needs: Needs,
    /// Rows kept at most; beyond, keys are folded.
    pub(super) kept: usize,
    /// The rows of an index absorbed whole ([`Index::absorb`]), moved rather than copied:
    /// positions past this index's own rows are in these.
    pub(super) later: Vec<R>,
}

impl<K: Ord + Copy, R: Kept> Index<K, R> {
    pub(super) fn new(needs: Needs, kept: usize) -> Self {
        Self { keys: Vec::new(), rows: Vec::new(), arena: Arena::default(), scratch: Vec::new(), needs, kept, later: Vec::new() }
    }

    /// `other`'s keys added to these, every key of either once: `other`'s rows and arena blocks are
    /// moved in whole (copying them doubled them for a moment: 50 MB at 100×) and its groups
    /// shifted to point at them. With `after`, every key of `other` sorts after every key here
    /// and the keys are appended; else the two key lists are merged.
    pub(super) fn absorb(&mut self, other: Index<K, R>, after: bool) {
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
        pair_arms(self.arena.at(at))[arm]
    }

    /// Appends a batch of rows, and keys folded while they waited ([`Waiting`]), whose keys all
    /// sort after every key already indexed: the rows sorted by key (the order within a key does
    /// not matter, all sums are integers); keys folded before, with more than `fold_above` rows, or
    /// past the kept-rows cap folded, the others' rows kept.
    pub(super) fn append(&mut self, batch: &mut Vec<(K, R)>, folded: BTreeMap<K, Vec<u8>>, scale: &Scale, fold_above: usize) -> Result<()> {
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
    pub(super) fn footprint(&self) -> (usize, usize, usize, usize) {
        let folded = self.keys.iter().filter(|(_, g)| matches!(g.held(), Held::Folded(_))).count();
        let rows = self.rows.capacity() + self.later.capacity();
        let bytes = self.keys.capacity() * std::mem::size_of::<(K, Group)>() + rows * std::mem::size_of::<R>() + self.arena.capacity();
        (self.keys.len(), folded, self.rows.len() + self.later.len(), bytes)
    }

    pub(super) fn finish(&mut self) {
        self.keys.shrink_to_fit();
        self.rows.shrink_to_fit();
        self.arena.shrink_to_fit();
        self.later.shrink_to_fit();
    }

    /// The keys whose bucket (`bucket` of the key) is in [from, to).
    pub(in crate::simulate) fn between(&self, from: u32, to: u32, bucket: impl Fn(&K) -> u32) -> &[(K, Group)] {
        let a = self.keys.partition_point(|(k, _)| bucket(k) < from);
        let b = self.keys.partition_point(|(k, _)| bucket(k) < to);
        &self.keys[a..b.max(a)]
    }

    /// Adds a group to the `arm` statistics of every target — every row's terms worked out, or the
    /// summary read, once for all of them (none: nothing is read). A summary goes straight into a
    /// single target (reading it into a [`Decoded`] and merging that made the controllers' queries
    /// 1.8× slower at 100×).
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
                    stats.add_encoded(summary);
                });
            }
            Held::Folded(at) => {
                let (summary, _) = Decoded::read(self.summary(at, arm));
                targets.each(|stats| stats.add_decoded(&summary));
            }
        }
    }

    /// Adds a group to the `arm` of each (scope, group) slot of a window ([`Index::add_with`]).
    pub(super) fn add_to_slots(&self, group: &Group, scale: &Scale, arm: usize, slots: &[(usize, usize)], stats: &mut WindowStats) {
        self.add_with(group, scale, arm, Slots { slots, stats, arm });
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

impl<K: Ord + Copy, R: Kept> Waiting<K, R> {
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
        self.rows.sort_unstable_by_key(|(k, _)| *k);
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
