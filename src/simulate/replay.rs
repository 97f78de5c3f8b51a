//! Replay rows: the score cache read back as the simulation sees it — each request's time, cell
//! (its combination of segment values), routing hash, label, and what each model returned after
//! the scenario's faults.
//!
//! Latency exists only where it was measured (a deterministic sample of requests, see
//! `score::latency`): latency metrics are computed on those requests alone, so their sample sizes
//! are honest — filling the other requests in from the measured distribution would make a thousand
//! measurements look like a hundred thousand. Faults then act on the outputs: latency added or
//! multiplied, a share of requests (chosen by hash) failing, the score shifted (probabilities stay
//! in [0, 1]) or replaced by a constant, or the score the model returned when one feature was sent
//! as missing (scored for real into the cache, see `score::Missing`).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{Float64Type, TimestampMicrosecondType};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector};
use parquet::arrow::ProjectionMask;
use parquet::file::metadata::ParquetMetaData;

use crate::error::{Error, Result};
use crate::hash;
use crate::ingest::Layout;
use crate::scenario::Role;
use crate::scenario::{Effect, Fault};
use crate::score::cache::{
    label_time_column, CANDIDATE_ERROR, CANDIDATE_LATENCY, CANDIDATE_MISSING, CANDIDATE_SCORE, STABLE_ERROR, STABLE_LATENCY,
    STABLE_MISSING, STABLE_SCORE,
};
use crate::time::Micros;

/// What one model returned for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Output {
    pub error: bool,
    pub score: Option<f64>,
    /// Milliseconds, on the requests whose latency was measured.
    pub latency_ms: Option<f64>,
}

/// One replayed request, stored compactly: 72 bytes instead of the 136 its `Option` fields would
/// take, as the reference simulator and the controllers' emulation hold every request. A missing
/// value is NaN (label, scores, latencies — present ones are always finite) or `Micros::MIN`
/// (label time); the accessors give the `Option`s back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    pub time: Micros,
    /// Routing hash of the entity, uniform in [0, 1).
    pub u: f64,
    label: f64,
    label_time: Micros,
    /// Stable, candidate.
    scores: [f64; 2],
    latency_ms: [f64; 2],
    pub cell: u32,
    errors: [bool; 2],
}

impl Row {
    /// A request; `label` and `label_time` come together (a label without an arrival time never
    /// arrives), and present values are finite.
    pub fn new(time: Micros, label: Option<f64>, label_time: Option<Micros>, cell: u32, u: f64, outputs: [Output; 2]) -> Self {
        debug_assert!(
            label.is_none_or(f64::is_finite)
                && outputs.iter().all(|o| o.score.is_none_or(f64::is_finite) && o.latency_ms.is_none_or(f64::is_finite))
        );
        Self {
            time,
            u,
            label: label.unwrap_or(f64::NAN),
            label_time: label_time.unwrap_or(Micros::MIN),
            scores: outputs.map(|o| o.score.unwrap_or(f64::NAN)),
            latency_ms: outputs.map(|o| o.latency_ms.unwrap_or(f64::NAN)),
            cell,
            errors: outputs.map(|o| o.error),
        }
    }

    pub fn label(&self) -> Option<f64> {
        (!self.label.is_nan()).then_some(self.label)
    }

    pub fn label_time(&self) -> Option<Micros> {
        (self.label_time != Micros::MIN).then_some(self.label_time)
    }

    /// What model `m` (0 stable, 1 candidate) returned.
    pub fn output(&self, m: usize) -> Output {
        let present = |v: f64| (!v.is_nan()).then_some(v);
        Output { error: self.errors[m], score: present(self.scores[m]), latency_ms: present(self.latency_ms[m]) }
    }

    /// [stable, candidate].
    pub fn outputs(&self) -> [Output; 2] {
        [self.output(0), self.output(1)]
    }

    /// Changes what model `m` returned.
    pub fn update_output(&mut self, m: usize, change: impl FnOnce(&mut Output)) {
        let mut out = self.output(m);
        change(&mut out);
        *self = Row::new(self.time, self.label(), self.label_time(), self.cell, self.u, {
            let mut outputs = self.outputs();
            outputs[m] = out;
            outputs
        });
    }
}

/// The combinations of segment values seen in the traffic.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cells {
    pub columns: Vec<String>,
    /// Per cell, the value of each column ("(null)" for nulls).
    pub values: Vec<Vec<String>>,
    /// Cell ids by their values joined with a unit separator.
    index: HashMap<String, u32, foldhash::fast::FixedState>,
}

impl Cells {
    pub fn new(columns: Vec<String>) -> Self {
        Self { columns, ..Default::default() }
    }

    pub(crate) fn id(&mut self, key: &str) -> u32 {
        if let Some(id) = self.index.get(key) {
            return *id;
        }
        let id = self.values.len() as u32;
        self.index.insert(key.to_string(), id);
        self.values.push(if self.columns.is_empty() { Vec::new() } else { key.split(KEY_SEPARATOR).map(str::to_string).collect() });
        id
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The value of `column` in `cell`.
    pub fn value(&self, cell: u32, column: &str) -> Option<&str> {
        let c = self.columns.iter().position(|x| x == column)?;
        Some(self.values[cell as usize][c].as_str())
    }
}

/// What the replay knows about the traffic before routing any request.
#[derive(Debug, Clone)]
pub struct Replay {
    pub parts: Vec<PathBuf>,
    pub layout: Layout,
    pub faults: Vec<Fault>,
    pub cells: Cells,
    /// Range of all scores (both models), for the shared score bins.
    pub score_range: (f64, f64),
    /// Whether every label is 0 or 1.
    pub binary: bool,
    /// First and last request time; the number of requests.
    pub first: Micros,
    pub last: Micros,
    pub rows: u64,
    /// Rows in each part, for reading a range of rows back ([`Replay::rows_between`]).
    pub part_rows: Vec<u64>,
    /// Whether some request has no entity (it is then routed by its id), or the parts do not say.
    pub entity_nulls: bool,
    /// The position and time of every [`MARK_EVERY`]-th request: where in the parts a time is.
    pub marks: Vec<(u64, Micros)>,
}

/// Caches with at least this many rows are scanned in two halves (in unit tests a few hundred,
/// so their replays come from merged halves).
#[cfg(not(test))]
const SCAN_SPLIT_ABOVE: u64 = 1 << 20;
#[cfg(test)]
const SCAN_SPLIT_ABOVE: u64 = 256;

/// What a scan of a range of the cache's rows found ([`Replay::scan`]).
struct Scanned {
    lo: f64,
    hi: f64,
    binary: bool,
    /// Numbered in order of their first request in the range.
    cells: Cells,
    first: Option<Micros>,
    last: Micros,
    rows: u64,
    marks: Vec<(u64, Micros)>,
}

impl Scanned {
    fn new(layout: &Layout) -> Self {
        let cells = Cells::new(layout.segments.clone());
        Scanned { lo: f64::INFINITY, hi: f64::NEG_INFINITY, binary: true, cells, first: None, last: 0, rows: 0, marks: Vec::new() }
    }

    /// Reads rows [from, to) (positions in time order) of parts holding `part_rows` rows each.
    fn of(parts: &[PathBuf], layout: &Layout, part_rows: &[u64], (from, to): (u64, u64)) -> Result<Self> {
        let mut out = Self::new(layout);
        if from >= to {
            return Ok(out);
        }
        let Scanned { lo, hi, binary, cells, first, last, rows, marks } = &mut out;
        // Only the columns it reads: the time, segments, label and scores.
        let mut wanted: Vec<&str> = vec![layout.time.as_str(), STABLE_SCORE, CANDIDATE_SCORE];
        wanted.extend(layout.segments.iter().map(String::as_str).chain(layout.label.as_deref()));
        for_each_batch(parts, Some(&select(part_rows, from, to)), Some(&wanted), &dictionaries(layout), |_, batch| {
            let get =
                |name: &str| batch.column_by_name(name).ok_or_else(|| Error::Internal(format!("the score cache has no column {name}")));
            let time = get(&layout.time)?.as_primitive::<TimestampMicrosecondType>();
            let score = [get(STABLE_SCORE)?.as_primitive::<Float64Type>(), get(CANDIDATE_SCORE)?.as_primitive::<Float64Type>()];
            let label = layout.label.as_deref().map(get).transpose()?.map(|l| l.as_primitive::<Float64Type>());
            // Every cell is named here, in order of its first request.
            Segments::of(batch, &layout.segments)?.cells(|key| cells.id(key));
            for i in 0..batch.num_rows() {
                for s in &score {
                    if s.is_valid(i) {
                        *lo = lo.min(s.value(i));
                        *hi = hi.max(s.value(i));
                    }
                }
                if let Some(l) = label.filter(|l| l.is_valid(i)) {
                    let y = l.value(i);
                    *binary &= y == 0.0 || y == 1.0;
                }
                let position = from + *rows;
                if position % MARK_EVERY == 0 {
                    marks.push((position, time.value(i)));
                }
                first.get_or_insert(time.value(i));
                *last = time.value(i);
                *rows += 1;
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Adds the rows `later` read, which come after these: its cells numbered on from these, in
    /// the order it met them — as one scan of both ranges numbers them.
    fn append(&mut self, later: Scanned) {
        self.lo = self.lo.min(later.lo);
        self.hi = self.hi.max(later.hi);
        self.binary &= later.binary;
        let mut keys: Vec<(&String, &u32)> = later.cells.index.iter().collect();
        keys.sort_unstable_by_key(|(_, id)| **id);
        for (key, _) in keys {
            self.cells.id(key);
        }
        self.first = self.first.or(later.first);
        if later.rows > 0 {
            self.last = later.last;
        }
        self.rows += later.rows;
        self.marks.extend(later.marks);
    }
}

/// A cache part's footer ([`footer`]).
fn part_footer(part: &Path) -> Result<Arc<ParquetMetaData>> {
    let handle = File::open(part).map_err(|e| Error::io(part, e))?;
    footer(&handle, part).map_err(|e| Error::Internal(format!("{}: {e}", part.display())))
}

/// Requests between two [`Replay::marks`] (a few dozen in unit tests, whose replays are short).
#[cfg(not(test))]
const MARK_EVERY: u64 = 1 << 16;
#[cfg(test)]
const MARK_EVERY: u64 = 64;

const KEY_SEPARATOR: char = '\u{1f}';

impl Replay {
    /// First pass over the score cache: score range, label kind, segment cells. A large cache is
    /// read in two halves side by side, merged in order (at 100× 0.3 s, against 0.45–0.6 s in one pass).
    pub fn scan(parts: &[PathBuf], layout: &Layout, faults: &[Fault]) -> Result<Replay> {
        // Held while the pieces read, so that they share these footers rather than decode them again.
        let footers = parts.iter().map(|p| part_footer(p)).collect::<Result<Vec<_>>>()?;
        let part_rows: Vec<u64> = footers.iter().map(|f| f.file_metadata().num_rows().max(0) as u64).collect();
        let pieces = if part_rows.iter().sum::<u64>() >= SCAN_SPLIT_ABOVE { 2 } else { 1 };
        Self::scan_in(parts, layout, faults, part_rows, pieces)
    }

    /// [`Replay::scan`] in `pieces` ranges of rows side by side.
    pub(super) fn scan_in(parts: &[PathBuf], layout: &Layout, faults: &[Fault], part_rows: Vec<u64>, pieces: u64) -> Result<Replay> {
        let rows: u64 = part_rows.iter().sum();
        let scanned: Vec<Result<Scanned>> = std::thread::scope(|s| {
            let part_rows = &part_rows;
            let handles: Vec<_> = (0..pieces)
                .map(|k| s.spawn(move || Scanned::of(parts, layout, part_rows, (rows * k / pieces, rows * (k + 1) / pieces))))
                .collect();
            handles.into_iter().map(|h| h.join().expect("the scan does not panic")).collect()
        });
        let mut all = Scanned::new(layout);
        for piece in scanned {
            all.append(piece?);
        }
        let entity_nulls = layout.entity != layout.id && may_have_nulls(parts, &layout.entity)?;
        let Scanned { lo, hi, binary, cells, first, last, rows, marks } = all;
        Ok(Replay {
            parts: parts.to_vec(),
            layout: layout.clone(),
            faults: faults.to_vec(),
            cells,
            score_range: if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) },
            binary,
            first: first.unwrap_or(0),
            last,
            rows,
            part_rows,
            entity_nulls,
            marks,
        })
    }

    /// Where to split the index build in two ([`super::fast::Split`]): at the check bucket (of
    /// `width` from `origin`) holding the middle request, with the positions between which that
    /// bucket's first request lies (the marks around its start). `None` when that is the first bucket.
    pub fn split_point(&self, origin: Micros, width: Micros) -> Option<super::fast::Split> {
        let middle = self.marks.partition_point(|(p, _)| *p < self.rows / 2);
        let (_, t) = *self.marks.get(middle)?;
        let bucket = u32::try_from((t - origin).div_euclid(width)).ok().filter(|b| *b > 0)?;
        let start = origin + i64::from(bucket) * width;
        let from = self.marks.iter().rev().find(|(_, t)| *t < start).map_or(0, |m| m.0);
        let to = self.marks.iter().find(|(_, t)| *t >= start).map_or(self.rows, |m| m.0);
        Some(super::fast::Split { bucket, positions: (from, to) })
    }

    /// Second pass: every request in time order, routed with `salt`, faults applied.
    pub fn for_each_row(&self, salt: &str, f: impl FnMut(&Row)) -> Result<()> {
        self.rows_in(salt, None, f)
    }

    /// Requests `from..to` (their positions in time order), as [`Replay::for_each_row`] gives them:
    /// read back from the parts holding them, skipping the rest.
    pub fn rows_between(&self, salt: &str, from: u64, to: u64) -> Result<Vec<Row>> {
        let mut rows = Vec::with_capacity(to.saturating_sub(from) as usize);
        self.rows_in(salt, Some((from, to)), |r| rows.push(*r))?;
        Ok(rows)
    }

    /// Requests at positions `from..to` (all: `None`), as [`Replay::for_each_row`] gives them.
    pub(crate) fn rows_in(&self, salt: &str, range: Option<(u64, u64)>, mut f: impl FnMut(&Row)) -> Result<()> {
        let selection = range.map(|(from, to)| select(&self.part_rows, from, to));
        let wanted = self.columns_read();
        let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
        for_each_batch(&self.parts, selection.as_deref(), Some(&wanted), &dictionaries(&self.layout), |_, batch| {
            let c = Columns::of(batch, &self.layout)?;
            let mut unknown = None;
            let cells = Segments::of(batch, &self.layout.segments)?.cells(|key| {
                self.cells.index.get(key).copied().unwrap_or_else(|| {
                    unknown.get_or_insert_with(|| key.to_string());
                    0
                })
            });
            if let Some(key) = unknown {
                return Err(Error::Internal(format!(
                    "segment values {key:?} the scan of the score cache did not see (did it change during the run?)"
                )));
            }
            for (i, cell) in cells.into_iter().enumerate() {
                f(&self.row(&c, i, cell, salt));
            }
            Ok(())
        })
    }

    /// The cache columns a row is made of: request ids only where they route (no entity column) or
    /// pick the failing requests of an `error_rate` fault, the scores without a feature only for a
    /// `feature_missing` fault — ids are the costliest column to decode.
    fn columns_read(&self) -> Vec<String> {
        let layout = &self.layout;
        let mut wanted = vec![
            layout.time.as_str(),
            STABLE_SCORE,
            CANDIDATE_SCORE,
            STABLE_ERROR,
            CANDIDATE_ERROR,
            STABLE_LATENCY,
            CANDIDATE_LATENCY,
            layout.entity.as_str(),
        ];
        let effects = || self.faults.iter().map(|f| &f.effect);
        if self.entity_nulls || effects().any(|e| matches!(e, Effect::ErrorRate { .. })) {
            wanted.push(&layout.id);
        }
        if effects().any(|e| matches!(e, Effect::FeatureMissing { .. })) {
            wanted.extend([STABLE_MISSING, CANDIDATE_MISSING]);
        }
        wanted.extend(layout.segments.iter().map(String::as_str).chain(layout.label.as_deref()));
        let mut wanted: Vec<String> = wanted.into_iter().map(str::to_string).collect();
        if layout.label.is_some() {
            wanted.push(label_time_column(layout));
        }
        wanted
    }

    /// Row `i` of a batch, routed with `salt`, faults applied.
    fn row(&self, c: &Columns, i: usize, cell: u32, salt: &str) -> Row {
        let id = match c.id {
            Some(ids) if ids.is_valid(i) => ids.value(i),
            _ => "",
        };
        let entity = match c.entity {
            Some(e) if e.is_valid(i) => e.value(i),
            _ => id,
        };
        // A label without an arrival time never arrives: it cannot be used.
        let label_time = c.label_time.filter(|l| l.is_valid(i)).map(|l| l.value(i));
        let label = c.label.filter(|l| l.is_valid(i)).map(|l| l.value(i)).filter(|y| y.is_finite() && label_time.is_some());
        let label_time = label_time.filter(|_| label.is_some());
        let mut outputs = [0, 1].map(|m| Output {
            error: c.error[m].is_valid(i),
            score: c.score[m].is_valid(i).then(|| c.score[m].value(i)),
            latency_ms: c.latency[m].is_valid(i).then(|| c.latency[m].value(i) / 1000.0),
        });
        let time = c.time.value(i);
        let missing = c.missing.map(|missing| [0, 1].map(|m| missing[m].is_valid(i).then(|| missing[m].value(i))));
        apply_faults(
            &self.faults,
            Request { time, id, segment: &|column| self.cells.value(cell, column), binary: self.binary, missing },
            &mut outputs,
        );
        Row::new(time, label, label_time, cell, hash::unit(salt, entity.as_bytes()), outputs)
    }

    /// Every request, collected (for the reference simulator and tests).
    pub fn rows(&self, salt: &str) -> Result<Vec<Row>> {
        let mut rows = Vec::with_capacity(self.rows as usize);
        self.for_each_row(salt, |r| rows.push(*r))?;
        Ok(rows)
    }
}

/// What the faults of a scenario look at in a request.
pub(crate) struct Request<'a> {
    pub time: Micros,
    pub id: &'a str,
    /// The request's value of a segment column.
    pub segment: &'a dyn Fn(&str) -> Option<&'a str>,
    /// Whether every label is 0 or 1 (a shifted probability stays in [0, 1]).
    pub binary: bool,
    /// Each model's score computed without a `feature_missing` fault's feature (scored into the
    /// cache, where the fault applies).
    pub missing: Option<[Option<f64>; 2]>,
}

/// The scenario's faults applied to what the models returned for a request: what users were served.
pub(crate) fn apply_faults(faults: &[Fault], request: Request, outputs: &mut [Output; 2]) {
    let Request { time, id, segment, binary, missing } = request;
    for (k, fault) in faults.iter().enumerate() {
        if !fault.active(time) {
            continue;
        }
        if let Some((column, value)) = &fault.segment {
            if segment(column) != Some(value.as_str()) {
                continue;
            }
        }
        let m = match fault.model {
            Role::Stable => 0,
            Role::Candidate => 1,
        };
        let out = &mut outputs[m];
        match &fault.effect {
            Effect::Latency { add_ms, multiply } => {
                out.latency_ms = out.latency_ms.map(|l| l * multiply + add_ms);
            }
            Effect::ErrorRate { rate } => {
                if hash::unit(&format!("canary-replay/fault-{k}"), id.as_bytes()) < *rate {
                    out.error = true;
                    out.score = None;
                }
            }
            Effect::ScoreShift { shift } => {
                out.score = out.score.map(|s| if binary { (s + shift).clamp(0.0, 1.0) } else { s + shift });
            }
            Effect::ConstantOutput { value } => {
                if !out.error {
                    out.score = Some(*value);
                }
            }
            // Scored into the cache without the feature; a failed or non-finite run is an error.
            Effect::FeatureMissing { .. } => match missing.and_then(|missing| missing[m]) {
                Some(score) if score.is_finite() => out.score = Some(score),
                _ => {
                    out.error = true;
                    out.score = None;
                }
            },
        }
    }
}

/// Whether `column` of some part may hold a null: its row groups' statistics say so, or do not say.
fn may_have_nulls(parts: &[PathBuf], column: &str) -> Result<bool> {
    for part in parts {
        let handle = File::open(part).map_err(|e| Error::io(part, e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(handle).map_err(|e| Error::Internal(format!("{}: {e}", part.display())))?;
        let Ok(index) = builder.schema().index_of(column) else { return Ok(true) };
        let counted = builder.metadata().row_groups().iter().map(|g| g.column(index).statistics().and_then(|s| s.null_count_opt()));
        if counted.into_iter().any(|nulls| nulls != Some(0)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Per part, the rows to read, [a, b) of its own (`None`: the part is skipped), when `from..to`
/// of all rows is wanted.
fn select(part_rows: &[u64], from: u64, to: u64) -> Vec<Option<(u64, u64)>> {
    let mut start = 0u64;
    part_rows
        .iter()
        .map(|&n| {
            let (a, b) = (from.clamp(start, start + n) - start, to.clamp(start, start + n) - start);
            start += n;
            (a < b).then_some((a, b))
        })
        .collect()
}

/// How to read rows [a, b) of a part whose row groups hold `group_rows` rows each: the row groups
/// to read, and those rows among theirs. Only the row groups holding the rows are read, and a
/// row group the range starts inside is read apart, so that batches begin where row groups do:
/// skipping rows row by row made the second half of a split read take twice as long as the first,
/// and a batch across two row groups merges their dictionaries (the segments') by hashing every value.
fn reads(group_rows: impl IntoIterator<Item = u64>, (a, b): (u64, u64)) -> Vec<(Vec<usize>, RowSelection)> {
    let mut start = 0u64;
    let mut holding = Vec::new();
    for (g, n) in group_rows.into_iter().enumerate() {
        if start < b && start + n > a {
            holding.push((g, start, n));
        }
        start += n;
    }
    let mut out = Vec::new();
    let mut rest = holding.as_slice();
    if let Some((&(g, start, n), later)) = rest.split_first().filter(|(first, _)| first.1 < a) {
        let end = (start + n).min(b);
        out.push((vec![g], RowSelection::from(vec![RowSelector::skip((a - start) as usize), RowSelector::select((end - a) as usize)])));
        rest = later;
    }
    if let Some(&(_, start, _)) = rest.first() {
        out.push((rest.iter().map(|h| h.0).collect(), RowSelection::from(vec![RowSelector::select((b - start.max(a)) as usize)])));
    }
    out
}

/// Every batch of every part (`selection`: only rows [a, b) of each part, see [`reads`];
/// `columns`: only these columns; `dictionaries`: these string columns as dictionaries, see
/// [`Segments`]), with the part's index.
pub(crate) fn for_each_batch(
    parts: &[impl AsRef<Path>],
    selection: Option<&[Option<(u64, u64)>]>,
    columns: Option<&[&str]>,
    dictionaries: &[&str],
    mut f: impl FnMut(usize, &RecordBatch) -> Result<()>,
) -> Result<()> {
    for (k, part) in parts.iter().enumerate() {
        let rows = match selection {
            Some(s) => match s.get(k).copied().flatten() {
                Some(rows) => Some(rows),
                None => continue,
            },
            None => None,
        };
        let part = part.as_ref();
        let failed = |e: parquet::errors::ParquetError| Error::Internal(format!("{}: {e}", part.display()));
        let open = || File::open(part).map_err(|e| Error::io(part, e));
        let handle = open()?;
        let metadata = reader_metadata(&handle, part, dictionaries).map_err(failed)?;
        let reads = match rows {
            Some(rows) => {
                reads(metadata.metadata().row_groups().iter().map(|g| g.num_rows().max(0) as u64), rows).into_iter().map(Some).collect()
            }
            None => vec![None],
        };
        for read in reads {
            let mut b = ParquetRecordBatchReaderBuilder::new_with_metadata(open()?, metadata.clone()).with_batch_size(65_536);
            if let Some(names) = columns {
                let schema = b.schema().clone();
                let indices = names.iter().filter_map(|n| schema.index_of(n).ok());
                let mask = ProjectionMask::roots(b.parquet_schema(), indices);
                b = b.with_projection(mask);
            }
            if let Some((groups, selection)) = read {
                b = b.with_row_groups(groups).with_row_selection(selection);
            }
            for batch in b.build().map_err(failed)? {
                f(k, &batch.map_err(|e| Error::Internal(format!("{}: {e}", part.display())))?)?;
            }
        }
    }
    Ok(())
}

/// The segment columns to read as dictionaries ([`Segments`]): all but one that is also the
/// entity or the id, which are read as strings.
pub(crate) fn dictionaries(layout: &Layout) -> Vec<&str> {
    layout.segments.iter().map(String::as_str).filter(|s| *s != layout.entity && *s != layout.id).collect()
}

/// A part's metadata, its string columns `dictionaries` to be read as dictionaries.
fn reader_metadata(handle: &File, part: &Path, dictionaries: &[&str]) -> parquet::errors::Result<ArrowReaderMetadata> {
    use arrow::datatypes::{DataType, Field, Schema};
    let metadata = ArrowReaderMetadata::try_new(footer(handle, part)?, ArrowReaderOptions::new())?;
    let schema = metadata.schema();
    let hinted = |f: &Field| dictionaries.contains(&f.name().as_str()) && f.data_type() == &DataType::Utf8;
    if !schema.fields().iter().any(|f| hinted(f)) {
        return Ok(metadata);
    }
    let dictionary = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| if hinted(f) { f.as_ref().clone().with_data_type(dictionary.clone()) } else { f.as_ref().clone() })
        .collect();
    let hinted = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    ArrowReaderMetadata::try_new(metadata.metadata().clone(), ArrowReaderOptions::new().with_schema(hinted))
}

/// A part's footer, decoded once for the readers that have it open at the same time (the oracle
/// and both passes of the index build read the same parts side by side) and dropped when the last
/// of them is done. A footer holds every row group's column metadata: about 0.4 KB a column chunk,
/// 11 MiB for the 1,707 row groups of 112M requests, which three readers held three times. The
/// column statistics, which these readers never use, are not decoded.
fn footer(handle: &File, part: &Path) -> parquet::errors::Result<Arc<ParquetMetaData>> {
    use parquet::file::metadata::ParquetStatisticsPolicy;
    type Key = (PathBuf, u64, Option<std::time::SystemTime>);
    static OPEN: std::sync::Mutex<Option<HashMap<Key, std::sync::Weak<ParquetMetaData>>>> = std::sync::Mutex::new(None);
    let stat = handle.metadata()?;
    let key = (part.to_path_buf(), stat.len(), stat.modified().ok());
    // Held while a footer is decoded, so readers opening a part together decode it once.
    let mut open = OPEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let open = open.get_or_insert_with(HashMap::new);
    if let Some(shared) = open.get(&key).and_then(std::sync::Weak::upgrade) {
        return Ok(shared);
    }
    let options = ArrowReaderOptions::new()
        .with_column_stats_policy(ParquetStatisticsPolicy::SkipAll)
        .with_encoding_stats_policy(ParquetStatisticsPolicy::SkipAll)
        .with_size_stats_policy(ParquetStatisticsPolicy::SkipAll);
    let loaded = ArrowReaderMetadata::load(handle, options)?.metadata().clone();
    open.retain(|_, footer| footer.strong_count() > 0);
    open.insert(key, Arc::downgrade(&loaded));
    Ok(loaded)
}

/// A batch's segment columns, read as dictionaries ([`for_each_batch`]'s `dictionaries`): what a
/// row's value is worth — its cell, its slot in a per-value sum — is worked out once per distinct
/// value or combination in the batch, not once per row (a string built and hashed per row took
/// about a tenth of the time after scoring).
pub(crate) struct Segments {
    columns: Vec<arrow::array::DictionaryArray<arrow::datatypes::Int32Type>>,
    rows: usize,
}

/// What a null segment value reads as.
pub(crate) const NULL_VALUE: &str = "(null)";

/// Distinct combinations of segment values in a batch up to which a table, not a map, finds a
/// combination's cell.
const TABLE_UP_TO: usize = 1 << 16;

impl Segments {
    /// The columns `names` of `batch`, each a dictionary of strings (a string column is converted).
    pub(crate) fn of(batch: &RecordBatch, names: &[String]) -> Result<Self> {
        use arrow::datatypes::{DataType, Int32Type};
        let dictionary = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        let columns = names
            .iter()
            .map(|name| {
                let column = batch.column_by_name(name).ok_or_else(|| Error::Internal(format!("the score cache has no column {name}")))?;
                let column =
                    arrow::compute::cast(column, &dictionary).map_err(|e| Error::failed(format!("reading segment column {name}"), e))?;
                Ok(column.as_dictionary::<Int32Type>().clone())
            })
            .collect::<Result<_>>()?;
        Ok(Self { columns, rows: batch.num_rows() })
    }

    /// Row `i`'s value in column `column`.
    pub(crate) fn value(&self, column: usize, i: usize) -> &str {
        let column = &self.columns[column];
        let (keys, values) = (column.keys(), column.values().as_string::<i32>());
        match keys.is_valid(i).then(|| keys.value(i) as usize) {
            Some(k) if values.is_valid(k) => values.value(k),
            _ => NULL_VALUE,
        }
    }

    /// Per row, `id` of its value in column `column` ([`NULL_VALUE`] for a null), `id` called in
    /// row order on each distinct value's first row.
    pub(crate) fn ids<'s>(&'s self, column: usize, mut id: impl FnMut(&'s str) -> usize) -> Vec<usize> {
        let column = &self.columns[column];
        let (keys, values) = (column.keys(), column.values().as_string::<i32>());
        let mut known: Vec<Option<usize>> = vec![None; values.len() + 1];
        (0..self.rows)
            .map(|i| {
                let k = if keys.is_valid(i) { keys.value(i) as usize } else { values.len() };
                *known[k].get_or_insert_with(|| id(if k < values.len() && values.is_valid(k) { values.value(k) } else { NULL_VALUE }))
            })
            .collect()
    }

    /// Per row, `id` of its cell key (its values joined by a unit separator, as [`Cells`] knows
    /// them), `id` called in row order on each distinct combination's first row.
    pub(crate) fn cells(&self, mut id: impl FnMut(&str) -> u32) -> Vec<u32> {
        // Each column's values numbered in the batch, a row's combination one number where they fit.
        let mut names: Vec<Vec<&str>> = Vec::with_capacity(self.columns.len());
        let per_column: Vec<Vec<usize>> = (0..self.columns.len())
            .map(|c| {
                let mut seen = Vec::new();
                let ids = self.ids(c, |v| {
                    seen.push(v);
                    seen.len() - 1
                });
                names.push(seen);
                ids
            })
            .collect();
        let key = |i: usize| {
            let mut key = String::new();
            for (c, (ids, seen)) in per_column.iter().zip(&names).enumerate() {
                if c > 0 {
                    key.push(KEY_SEPARATOR);
                }
                key.push_str(seen[ids[i]]);
            }
            key
        };
        let number = |i: usize| per_column.iter().zip(&names).fold(0usize, |n, (ids, seen)| n * seen.len() + ids[i]);
        match names.iter().try_fold(1usize, |n, seen| n.checked_mul(seen.len())) {
            Some(size) if size <= TABLE_UP_TO => {
                let mut table: Vec<Option<u32>> = vec![None; size];
                (0..self.rows).map(|i| *table[number(i)].get_or_insert_with(|| id(&key(i)))).collect()
            }
            Some(_) => {
                let mut map: HashMap<usize, u32, foldhash::fast::FixedState> = HashMap::default();
                (0..self.rows).map(|i| *map.entry(number(i)).or_insert_with(|| id(&key(i)))).collect()
            }
            None => (0..self.rows).map(|i| id(&key(i))).collect(),
        }
    }
}

/// A batch's columns as [`Replay::columns_read`] chose them.
struct Columns<'a> {
    /// Read where it routes or picks failing requests.
    id: Option<&'a StringArray>,
    /// `None`: the id routes.
    entity: Option<&'a StringArray>,
    time: &'a arrow::array::PrimitiveArray<TimestampMicrosecondType>,
    label: Option<&'a Float64Array>,
    label_time: Option<&'a arrow::array::PrimitiveArray<TimestampMicrosecondType>>,
    score: [&'a Float64Array; 2],
    error: [&'a StringArray; 2],
    latency: [&'a Float64Array; 2],
    /// Read for a `feature_missing` fault.
    missing: Option<[&'a Float64Array; 2]>,
}

impl<'a> Columns<'a> {
    fn of(batch: &'a RecordBatch, layout: &Layout) -> Result<Self> {
        let get = |name: &str| batch.column_by_name(name).ok_or_else(|| Error::Internal(format!("the score cache has no column {name}")));
        let f64s = |name: &str| -> Result<&'a Float64Array> { Ok(get(name)?.as_primitive::<Float64Type>()) };
        let strs = |name: &str| -> Result<&'a StringArray> { Ok(get(name)?.as_string::<i32>()) };
        let times = |name: &str| -> Result<&'a arrow::array::PrimitiveArray<TimestampMicrosecondType>> {
            Ok(get(name)?.as_primitive::<TimestampMicrosecondType>())
        };
        Ok(Self {
            id: batch.column_by_name(&layout.id).map(|ids| ids.as_string::<i32>()),
            entity: if layout.entity == layout.id { None } else { Some(strs(&layout.entity)?) },
            time: times(&layout.time)?,
            label: layout.label.as_deref().map(f64s).transpose()?,
            label_time: if layout.label.is_some() { Some(times(&label_time_column(layout))?) } else { None },
            score: [f64s(STABLE_SCORE)?, f64s(CANDIDATE_SCORE)?],
            error: [strs(STABLE_ERROR)?, strs(CANDIDATE_ERROR)?],
            latency: [f64s(STABLE_LATENCY)?, f64s(CANDIDATE_LATENCY)?],
            missing: match (batch.column_by_name(STABLE_MISSING), batch.column_by_name(CANDIDATE_MISSING)) {
                (Some(s), Some(c)) => Some([s.as_primitive::<Float64Type>(), c.as_primitive::<Float64Type>()]),
                _ => None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A range of a part's rows is read from the row groups holding it, a row group it starts inside apart.
    #[test]
    fn a_range_reads_only_the_row_groups_holding_it() {
        let planned = |groups: &[u64], range| {
            reads(groups.iter().copied(), range)
                .into_iter()
                .map(|(g, s)| (g, Vec::<RowSelector>::from(s).into_iter().map(|r| (r.skip, r.row_count)).collect::<Vec<_>>()))
                .collect::<Vec<_>>()
        };
        assert_eq!(planned(&[10, 10, 10], (12, 25)), vec![(vec![1], vec![(true, 2), (false, 8)]), (vec![2], vec![(false, 5)])]);
        assert_eq!(planned(&[10, 10, 10], (0, 10)), vec![(vec![0], vec![(false, 10)])]);
        assert_eq!(planned(&[10, 10, 10], (10, 30)), vec![(vec![1, 2], vec![(false, 20)])]);
        assert_eq!(planned(&[10, 10, 10], (13, 17)), vec![(vec![1], vec![(true, 3), (false, 4)])]);
        assert_eq!(planned(&[10, 0, 10, 10], (19, 21)), vec![(vec![2], vec![(true, 9), (false, 1)]), (vec![3], vec![(false, 1)])]);
    }

    /// A cache part of three requests, the second without an entity.
    fn part_with_a_missing_entity(path: &Path) -> Layout {
        use arrow::array::{ArrayRef, TimestampMicrosecondArray};
        use std::sync::Arc;
        let strings = |v: &[Option<&str>]| Arc::new(StringArray::from(v.to_vec())) as ArrayRef;
        let floats = |v: &[Option<f64>]| Arc::new(Float64Array::from(v.to_vec())) as ArrayRef;
        let (none, nothing): ([Option<&str>; 3], [Option<f64>; 3]) = ([None; 3], [None; 3]);
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("request_id", strings(&[Some("r1"), Some("r2"), Some("r3")])),
            ("entity_id", strings(&[Some("e1"), None, Some("e3")])),
            ("ts", Arc::new(TimestampMicrosecondArray::from(vec![1, 2, 3])) as ArrayRef),
            (STABLE_SCORE, floats(&[Some(0.1), Some(0.2), Some(0.3)])),
            (CANDIDATE_SCORE, floats(&[Some(0.4), Some(0.5), Some(0.6)])),
            (STABLE_ERROR, strings(&none)),
            (CANDIDATE_ERROR, strings(&none)),
            (STABLE_LATENCY, floats(&nothing)),
            (CANDIDATE_LATENCY, floats(&nothing)),
            (STABLE_MISSING, floats(&nothing)),
            (CANDIDATE_MISSING, floats(&nothing)),
        ];
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let mut writer = parquet::arrow::ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        Layout {
            time: "ts".into(),
            id: "request_id".into(),
            entity: "entity_id".into(),
            segments: Vec::new(),
            label: None,
            label_time: None,
            label_delay: 0,
            features: Vec::new(),
        }
    }

    #[test]
    fn a_request_without_an_entity_is_routed_by_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part.parquet");
        let layout = part_with_a_missing_entity(&path);
        let replay = Replay::scan(&[path], &layout, &[]).unwrap();
        assert!(replay.entity_nulls, "the part's statistics count the missing entity");
        let u: Vec<f64> = replay.rows("salt").unwrap().iter().map(|r| r.u).collect();
        assert_eq!(u, vec![hash::unit("salt", b"e1"), hash::unit("salt", b"r2"), hash::unit("salt", b"e3")]);
    }

    /// Rows read back whose segment values the scan did not see (the cache changed under the
    /// run) are an error naming the values, not a panic or a wrong cell.
    #[test]
    fn segment_values_the_scan_did_not_see_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part.parquet");
        let mut layout = part_with_a_missing_entity(&path);
        layout.segments = vec!["entity_id".into()];
        let mut replay = Replay::scan(&[path], &layout, &[]).unwrap();
        assert_eq!(replay.cells.len(), 3);
        replay.cells = Cells::new(layout.segments.clone());
        let error = replay.rows("salt").unwrap_err().to_string();
        assert!(error.contains("segment values \"e1\" the scan of the score cache did not see"), "{error}");
    }

    #[test]
    fn a_row_is_compact_and_gives_its_values_back() {
        assert_eq!(std::mem::size_of::<Row>(), 72);
        let outputs =
            [Output { error: false, score: Some(0.25), latency_ms: None }, Output { error: true, score: None, latency_ms: Some(1.5) }];
        let row = Row::new(10, Some(1.0), Some(20), 3, 0.5, outputs);
        assert_eq!((row.label(), row.label_time(), row.outputs()), (Some(1.0), Some(20), outputs));
        let unlabelled = Row::new(10, None, None, 3, 0.5, outputs);
        assert_eq!((unlabelled.label(), unlabelled.label_time()), (None, None));
        let mut changed = row;
        changed.update_output(0, |out| out.score = None);
        assert_eq!(changed.output(0), Output { error: false, score: None, latency_ms: None });
        assert_eq!(changed.output(1), outputs[1]);
    }

    /// Readers that have a part open at the same time share its footer, decoded without column
    /// statistics; once they are done it is dropped, and a part rewritten since is decoded anew.
    #[test]
    fn readers_of_a_part_share_its_footer_while_they_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part.parquet");
        part_with_a_missing_entity(&path);
        let open = || footer(&File::open(&path).unwrap(), &path).unwrap();
        let (first, second) = (open(), open());
        assert!(Arc::ptr_eq(&first, &second));
        assert!(first.row_group(0).column(1).statistics().is_none(), "statistics are not decoded");
        let gone = Arc::downgrade(&first);
        drop((first, second));
        assert!(gone.upgrade().is_none(), "the footer is dropped with its last reader");
        let held = open();
        // Rewritten with more rows (another length): not the footer held for the old file.
        let batch = RecordBatch::try_from_iter([("x", Arc::new(Float64Array::from(vec![1.0; 100])) as arrow::array::ArrayRef)]).unwrap();
        let mut writer = parquet::arrow::ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let fresh = open();
        assert!(!Arc::ptr_eq(&held, &fresh));
        assert_eq!((held.file_metadata().num_rows(), fresh.file_metadata().num_rows()), (3, 100));
    }

    /// Segment columns written as strings (with nulls) and read back as dictionaries name each
    /// row's cell as joining its values did, numbering cells in order of first appearance — with
    /// few combinations (a table) and with many (a map).
    #[test]
    fn segments_read_as_dictionaries_name_the_cells_of_their_values() {
        use arrow::array::ArrayRef;
        for distinct in [3usize, 300] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("part.parquet");
            let rows = 2 * distinct;
            let a: Vec<Option<String>> = (0..rows).map(|i| (i % 7 != 3).then(|| format!("a{}", i % distinct))).collect();
            let b: Vec<Option<String>> = (0..rows).map(|i| (i % 5 != 1).then(|| format!("b{}", (i * 7) % distinct))).collect();
            let batch = RecordBatch::try_from_iter([
                ("a", Arc::new(StringArray::from(a.clone())) as ArrayRef),
                ("b", Arc::new(StringArray::from(b.clone())) as ArrayRef),
            ])
            .unwrap();
            let mut writer = parquet::arrow::ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), None).unwrap();
            writer.write(&batch).unwrap();
            writer.close().unwrap();
            let names = vec!["a".to_string(), "b".to_string()];
            let (mut expected, mut by_key) = (Vec::new(), HashMap::<String, u32>::new());
            for (x, y) in a.iter().zip(&b) {
                let key = format!("{}{KEY_SEPARATOR}{}", x.as_deref().unwrap_or(NULL_VALUE), y.as_deref().unwrap_or(NULL_VALUE));
                let next = by_key.len() as u32;
                expected.push(*by_key.entry(key).or_insert(next));
            }
            for_each_batch(&[&path], None, None, &["a", "b"], |_, read| {
                assert!(matches!(read.column(0).data_type(), arrow::datatypes::DataType::Dictionary(..)));
                let segments = Segments::of(read, &names).unwrap();
                let mut cells = Cells::new(names.clone());
                assert_eq!(segments.cells(|key| cells.id(key)), expected, "{distinct} distinct values");
                assert_eq!(cells.values.len(), by_key.len());
                assert_eq!(segments.value(0, 3), NULL_VALUE);
                assert_eq!(segments.value(1, 0), "b0");
                Ok(())
            })
            .unwrap();
        }
    }
}
