//! The requests of the log as the pipeline reads them: [`TrafficBatch`]es converted to the
//! pipeline's types, streamed file by file ([`FileStream`]) and merged by time across the files of
//! a group ([`Batches`]), cleaned as the survey's [`Rules`] say.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, RecordBatch, StringArray};

use super::{decode, to_f64, to_f64_nan, to_micros, to_utf8, Layout, Rules, TrafficFile};
use crate::error::{Error, Problem, Result};
use crate::scenario::Traffic;
use crate::time::Micros;

/// One batch of requests, converted to the pipeline's types.
#[derive(Debug, Clone)]
pub struct TrafficBatch {
    /// Request ids (Utf8).
    pub id: ArrayRef,
    pub time: Vec<Micros>,
    /// Entities (Utf8; null when unknown).
    pub entity: ArrayRef,
    /// One Utf8 array per segment column.
    pub segments: Vec<ArrayRef>,
    pub label: Option<Float64Array>,
    /// When each label is known (null when the label never arrives).
    pub label_time: Option<Vec<Option<Micros>>>,
    /// One f64 column per layout feature, nulls as NaN.
    pub features: Vec<Vec<f64>>,
}

impl TrafficBatch {
    pub fn len(&self) -> usize {
        self.time.len()
    }

    /// A batch of no rows (stands in for a finished file in a merge).
    fn empty() -> Self {
        let strings = || -> ArrayRef { Arc::new(StringArray::from(Vec::<&str>::new())) };
        Self {
            id: strings(),
            time: Vec::new(),
            entity: strings(),
            segments: Vec::new(),
            label: None,
            label_time: None,
            features: Vec::new(),
        }
    }

    /// Rows `offset..offset + len`.
    fn slice(&self, offset: usize, len: usize) -> Self {
        let range = offset..offset + len;
        Self {
            id: self.id.slice(offset, len),
            time: self.time[range.clone()].to_vec(),
            entity: self.entity.slice(offset, len),
            segments: self.segments.iter().map(|s| s.slice(offset, len)).collect(),
            label: self.label.as_ref().map(|l| l.slice(offset, len)),
            label_time: self.label_time.as_ref().map(|l| l[range.clone()].to_vec()),
            features: self.features.iter().map(|f| f[range.clone()].to_vec()).collect(),
        }
    }

    /// The rows where `keep` is true.
    fn filter(&self, keep: &[bool]) -> Self {
        let mask = BooleanArray::from(keep.to_vec());
        let pick = |a: &dyn Array| arrow::compute::filter(a, &mask).expect("a mask of the batch's length");
        fn kept<T: Copy>(values: &[T], keep: &[bool]) -> Vec<T> {
            values.iter().zip(keep).filter(|(_, k)| **k).map(|(v, _)| *v).collect()
        }
        Self {
            id: pick(&self.id),
            time: kept(&self.time, keep),
            entity: pick(&self.entity),
            segments: self.segments.iter().map(|s| pick(s)).collect(),
            label: self.label.as_ref().map(|l| pick(l).as_primitive::<arrow::datatypes::Float64Type>().clone()),
            label_time: self.label_time.as_ref().map(|l| kept(l, keep)),
            features: self.features.iter().map(|f| kept(f, keep)).collect(),
        }
    }

    /// Rows picked from several batches: `picks` are (source, row) pairs, in output order.
    fn interleave(sources: &[&TrafficBatch], picks: &[(usize, usize)]) -> Result<Self> {
        let arrays = |get: &dyn Fn(&TrafficBatch) -> ArrayRef| -> Result<ArrayRef> {
            let columns: Vec<ArrayRef> = sources.iter().map(|b| get(b)).collect();
            let refs: Vec<&dyn Array> = columns.iter().map(|a| a.as_ref()).collect();
            arrow::compute::interleave(&refs, picks).map_err(|e| Error::failed("merging traffic batches", e))
        };
        let live = sources.iter().find(|b| !b.is_empty()).expect("rows are picked from a batch");
        let typed = |b: &TrafficBatch, k: usize| -> ArrayRef {
            if b.is_empty() {
                arrow::array::new_empty_array(live.segments[k].data_type())
            } else {
                b.segments[k].clone()
            }
        };
        let label = match &live.label {
            None => None,
            Some(_) => {
                let get =
                    |b: &TrafficBatch| -> ArrayRef { Arc::new(b.label.clone().unwrap_or_else(|| Float64Array::from(Vec::<f64>::new()))) };
                Some(arrays(&get)?.as_primitive::<arrow::datatypes::Float64Type>().clone())
            }
        };
        Ok(Self {
            id: arrays(&|b| b.id.clone())?,
            time: picks.iter().map(|&(s, r)| sources[s].time[r]).collect(),
            entity: arrays(&|b| b.entity.clone())?,
            segments: (0..live.segments.len()).map(|k| arrays(&|b| typed(b, k))).collect::<Result<_>>()?,
            label,
            label_time: live
                .label_time
                .as_ref()
                .map(|_| picks.iter().map(|&(s, r)| sources[s].label_time.as_ref().expect("every file has label times")[r]).collect()),
            features: (0..live.features.len()).map(|f| picks.iter().map(|&(s, r)| sources[s].features[f][r]).collect()).collect(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.time.is_empty()
    }
}

/// Streams the requests in the window of one file, one batch at a time, converted to the
/// pipeline's types. The file is opened at the first batch asked for.
struct FileStream<'a> {
    file: &'a TrafficFile,
    traffic: &'a Traffic,
    layout: &'a Layout,
    rules: &'a Rules,
    batch_rows: usize,
    reader: Option<decode::Guarded<'a>>,
    done: bool,
}

impl<'a> FileStream<'a> {
    fn new(file: &'a TrafficFile, traffic: &'a Traffic, layout: &'a Layout, rules: &'a Rules, batch_rows: usize) -> Self {
        Self { file, traffic, layout, rules, batch_rows, reader: None, done: false }
    }

    /// The next batch of the file's reader, opening it first.
    fn read(&mut self) -> Option<Result<RecordBatch>> {
        if self.reader.is_none() {
            let schema = self.file.schema();
            let columns: Vec<usize> = self.layout.columns().iter().filter_map(|(_, name, _)| schema.index_of(name).ok()).collect();
            match decode::Guarded::open(self.file, self.traffic, columns, self.batch_rows) {
                Ok(reader) => self.reader = Some(reader),
                Err(e) => return Some(Err(e)),
            }
        }
        self.reader.as_mut().expect("the reader is open").next()
    }

    fn convert(&self, batch: &RecordBatch) -> Result<TrafficBatch> {
        let file = self.file;
        let column = |name: &str| -> ArrayRef { file.column(batch, name).expect("a column is projected or a partition key") };
        let bad = |name: &str, e: String| Error::invalid(Problem::new(format!("{}: column \"{name}\"", file.path.display()), e));

        let times = to_micros(&column(&self.layout.time)).map_err(|e| bad(&self.layout.time, e))?;
        let keep: Vec<bool> = times.iter().map(|t| t.is_some_and(|t| self.traffic.in_window(t))).collect();
        let all = keep.iter().all(|k| *k);
        let filter = BooleanArray::from(keep);
        let select = |array: ArrayRef| -> Result<ArrayRef> {
            if all {
                Ok(array)
            } else {
                arrow::compute::filter(&array, &filter).map_err(|e| Error::failed("dropping duplicate requests", e))
            }
        };
        let time: Vec<Micros> =
            times.iter().zip(filter.values().iter()).filter(|(_, k)| *k).map(|(t, _)| t.expect("kept rows have a time")).collect();
        let key = |name: &str| -> Result<ArrayRef> { select(to_utf8(&column(name)).map_err(|e| bad(name, e))?) };
        let id = key(&self.layout.id)?;
        let entity = key(&self.layout.entity)?;
        let segments = self
            .layout
            .segments
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let values = key(s)?;
                Ok(match self.rules.kept.get(k) {
                    Some(Some(_)) => {
                        let values = values.as_string::<i32>();
                        Arc::new(values.iter().map(|v| v.map(|v| self.rules.segment(k, v))).collect::<StringArray>()) as ArrayRef
                    }
                    _ => values,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let label = match &self.layout.label {
            Some(name) => {
                let mut values = to_f64(&column(name)).map_err(|e| bad(name, e))?;
                if let Some(k) = self.rules.positive_class {
                    values = values.iter().map(|y| y.map(|y| f64::from(u8::from(y == k)))).collect();
                }
                let selected = select(Arc::new(values))?;
                Some(selected.as_any().downcast_ref::<Float64Array>().expect("f64 stays f64").clone())
            }
            None => None,
        };
        let label_time = match (&self.layout.label_time, &label) {
            (Some(name), _) => {
                let selected = select(column(name))?;
                Some(to_micros(&selected).map_err(|e| bad(name, e))?)
            }
            (None, Some(label)) => {
                Some(time.iter().enumerate().map(|(i, t)| label.is_valid(i).then_some(t + self.layout.label_delay)).collect())
            }
            (None, None) => None,
        };
        let features = self
            .layout
            .features
            .iter()
            .map(|name| to_f64_nan(&select(column(name))?).map_err(|e| bad(name, e)))
            .collect::<Result<Vec<_>>>()?;
        Ok(TrafficBatch { id, time, entity, segments, label, label_time, features })
    }
}

impl Iterator for FileStream<'_> {
    type Item = Result<TrafficBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let converted = self.read().map(|batch| batch.and_then(|b| self.convert(&b)));
            match converted {
                Some(Ok(b)) if b.is_empty() => continue,
                Some(Ok(b)) => return Some(Ok(b)),
                // After an error or the last batch, the file is done.
                other => {
                    self.done = true;
                    return other;
                }
            }
        }
        None
    }
}

/// Streams the requests of files read together (a [`Group`]) in time order: each file is sorted,
/// and the files are merged row by row by time (ties in file order), holding one batch per file.
/// Segment values beyond the kept ones become "(other)", and later copies of duplicated ids are
/// dropped, as the survey's [`Rules`] say.
pub struct Batches<'a> {
    streams: Vec<FileStream<'a>>,
    /// Per file: its current batch and the next row of it to emit.
    heads: Vec<Option<(TrafficBatch, usize)>>,
    rules: &'a Rules,
    /// Duplicated ids already replayed once.
    replayed: HashSet<String>,
    batch_rows: usize,
}

impl<'a> Batches<'a> {
    /// The requests of `files` (each sorted by time), merged by time.
    pub fn new(
        files: impl IntoIterator<Item = &'a TrafficFile>,
        traffic: &'a Traffic,
        layout: &'a Layout,
        rules: &'a Rules,
        batch_rows: usize,
    ) -> Self {
        let streams: Vec<FileStream<'a>> = files.into_iter().map(|f| FileStream::new(f, traffic, layout, rules, batch_rows)).collect();
        let heads = (0..streams.len()).map(|_| None).collect();
        Self { streams, heads, rules, replayed: HashSet::new(), batch_rows }
    }

    /// Refills each head that has no rows left; false once every file is done.
    fn refill(&mut self) -> Result<bool> {
        for (stream, head) in self.streams.iter_mut().zip(&mut self.heads) {
            if head.as_ref().is_none_or(|(b, at)| *at >= b.len()) {
                *head = stream.next().transpose()?.map(|b| (b, 0));
            }
        }
        Ok(self.heads.iter().any(Option::is_some))
    }

    /// The next rows in time order: until a file's batch runs out or `batch_rows` are taken.
    fn merge(&mut self) -> Result<TrafficBatch> {
        let live: Vec<usize> = (0..self.heads.len()).filter(|k| self.heads[*k].is_some()).collect();
        if let [only] = live.as_slice() {
            let (batch, at) = self.heads[*only].take().expect("a live head");
            return Ok(if at == 0 { batch } else { batch.slice(at, batch.len() - at) });
        }
        let mut picks: Vec<(usize, usize)> = Vec::with_capacity(self.batch_rows);
        while picks.len() < self.batch_rows {
            let (k, _) = live
                .iter()
                .map(|&k| {
                    let (b, at) = self.heads[k].as_ref().expect("a live head");
                    (k, b.time[*at])
                })
                .min_by_key(|&(k, t)| (t, k))
                .expect("heads are live");
            let (b, at) = self.heads[k].as_mut().expect("a live head");
            picks.push((k, *at));
            *at += 1;
            if *at >= b.len() {
                break;
            }
        }
        let sources: Vec<&TrafficBatch> = self.heads.iter().map(|h| h.as_ref().map_or(&*EMPTY_SOURCE, |(b, _)| b)).collect();
        TrafficBatch::interleave(&sources, &picks)
    }

    /// Drops the later copies of duplicated ids.
    fn first_copies(&mut self, batch: TrafficBatch) -> TrafficBatch {
        if self.rules.duplicated.is_empty() {
            return batch;
        }
        let ids = batch.id.as_string::<i32>();
        let keep: Vec<bool> = (0..batch.len())
            .map(|i| !ids.is_valid(i) || !self.rules.duplicated.contains(ids.value(i)) || self.replayed.insert(ids.value(i).to_string()))
            .collect();
        if keep.iter().all(|k| *k) {
            batch
        } else {
            batch.filter(&keep)
        }
    }
}

/// Stands in for a finished file among a merge's sources (no row of it is picked).
static EMPTY_SOURCE: std::sync::LazyLock<TrafficBatch> = std::sync::LazyLock::new(TrafficBatch::empty);

impl Iterator for Batches<'_> {
    type Item = Result<TrafficBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.refill() {
                Ok(false) => return None,
                Err(e) => return Some(Err(e)),
                Ok(true) => {}
            }
            let batch = match self.merge() {
                Ok(b) => self.first_copies(b),
                Err(e) => return Some(Err(e)),
            };
            if !batch.is_empty() {
                return Some(Ok(batch));
            }
        }
    }
}
