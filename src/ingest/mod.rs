//! Ingest: the traffic log, streamed from Parquet in bounded batches.
//!
//! [`open`] resolves the scenario's path (a file, a folder or a glob) and reads each file's footer;
//! [`check_columns`] checks the roles' columns exist with usable types; [`survey`] reads only the
//! time column to check order and count the rows in the window before anything expensive starts;
//! [`Batches`] then streams the needed columns, converted to the pipeline's types, one batch at a
//! time. Files are read in time order (by their time statistics, then name); rows must be sorted
//! by time within and across files.

mod columns;
mod survey;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;

pub use columns::{to_f64, to_f64_nan, to_micros, to_utf8, type_problem, utf8, ColumnRole};
pub use survey::{survey, FileSurvey, Survey};

use crate::error::{did_you_mean, Error, Problem, Result};
use crate::scenario::{display_name, Traffic};
use crate::time::Micros;

/// One Parquet file of the traffic log, with its footer read.
#[derive(Debug, Clone)]
pub struct TrafficFile {
    pub path: PathBuf,
    pub metadata: ArrowReaderMetadata,
    /// Per row group: the time column's (min, max) from statistics, when present.
    pub time_ranges: Vec<Option<(Micros, Micros)>>,
}

impl TrafficFile {
    pub fn schema(&self) -> &SchemaRef {
        self.metadata.schema()
    }

    pub fn rows(&self) -> i64 {
        self.metadata.metadata().file_metadata().num_rows()
    }

    pub fn name(&self) -> String {
        display_name(&self.path)
    }

    /// Row groups that may hold requests inside the window (all, without statistics).
    pub fn row_groups_in(&self, traffic: &Traffic) -> Vec<usize> {
        self.time_ranges
            .iter()
            .enumerate()
            .filter(|(_, range)| match range {
                Some((min, max)) => traffic.start.is_none_or(|s| *max >= s) && traffic.end.is_none_or(|e| *min <= e),
                None => true,
            })
            .map(|(i, _)| i)
            .collect()
    }
}

/// The Parquet files a path names: a file, a folder's `.parquet` files, or a glob's matches.
pub fn resolve_path(path: &Path) -> Result<Vec<PathBuf>> {
    let text = path.to_string_lossy();
    let mut files: Vec<PathBuf> = if text.contains(['*', '?', '[']) {
        glob::glob(&text)
            .map_err(|e| Error::invalid(Problem::new(format!("traffic.path = \"{text}\""), format!("not a valid glob: {e}"))))?
            .filter_map(|p| p.ok())
            .filter(|p| p.is_file())
            .collect()
    } else if path.is_dir() {
        std::fs::read_dir(path)
            .map_err(|e| Error::invalid(Problem::new(path.display().to_string(), format!("cannot list the folder: {e}"))))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "parquet" || x == "parq"))
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    files.sort();
    if files.is_empty() {
        return Err(Error::invalid(
            Problem::new(format!("traffic.path = \"{text}\""), "names no Parquet files")
                .fix("point it at a .parquet file, a folder of them, or a glob such as logs/*.parquet"),
        ));
    }
    Ok(files)
}

/// Opens every traffic file (reading footers only) and orders them by time.
pub fn open(traffic: &Traffic) -> Result<Vec<TrafficFile>> {
    let mut problems = Vec::new();
    let mut files = Vec::new();
    for path in resolve_path(&traffic.path)? {
        match open_file(&path, &traffic.time) {
            Ok(f) => files.push(f),
            Err(p) => problems.push(p),
        }
    }
    if !problems.is_empty() {
        return Err(Error::Invalid(problems));
    }
    let first_time = |f: &TrafficFile| f.time_ranges.iter().flatten().map(|r| r.0).min();
    files.sort_by(|a, b| first_time(a).cmp(&first_time(b)).then_with(|| a.path.cmp(&b.path)));
    Ok(files)
}

fn open_file(path: &Path, time_column: &str) -> std::result::Result<TrafficFile, Problem> {
    let location = path.display().to_string();
    let file = File::open(path).map_err(|e| Problem::new(&location, format!("cannot open: {e}")))?;
    let metadata = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(|e| {
        Problem::new(&location, format!("not a readable Parquet file: {e}"))
            .fix("the file may be truncated or still being written; re-export it")
    })?;
    let time_ranges = row_group_time_ranges(&metadata, time_column).unwrap_or_else(|| vec![None; metadata.metadata().num_row_groups()]);
    Ok(TrafficFile { path: path.to_path_buf(), metadata, time_ranges })
}

/// The time column's min and max per row group from Parquet statistics, in UTC microseconds.
fn row_group_time_ranges(metadata: &ArrowReaderMetadata, time_column: &str) -> Option<Vec<Option<(Micros, Micros)>>> {
    let schema = metadata.schema();
    let (_, field) = schema.column_with_name(time_column)?;
    if type_problem(ColumnRole::Time, field.data_type()).is_some() {
        return None;
    }
    let converter = StatisticsConverter::try_new(time_column, schema, metadata.parquet_schema()).ok()?;
    let groups = metadata.metadata().row_groups();
    let mins = to_micros(&converter.row_group_mins(groups.iter()).ok()?).ok()?;
    let maxes = to_micros(&converter.row_group_maxes(groups.iter()).ok()?).ok()?;
    Some(mins.into_iter().zip(maxes).map(|(a, b)| a.zip(b)).collect())
}

/// Which columns to read, and as what.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub time: String,
    pub id: String,
    pub entity: String,
    pub segments: Vec<String>,
    pub label: Option<String>,
    pub label_time: Option<String>,
    pub label_delay: Micros,
    /// Feature columns (the union of both models' inputs), in a fixed order.
    pub features: Vec<String>,
}

impl Layout {
    pub fn new(traffic: &Traffic, features: Vec<String>) -> Self {
        Self {
            time: traffic.time.clone(),
            id: traffic.id.clone(),
            entity: traffic.entity.clone(),
            segments: traffic.segments.clone(),
            label: traffic.label.clone(),
            label_time: traffic.label_time.clone(),
            label_delay: traffic.label_delay,
            features,
        }
    }

    /// Every column read, with the key that names it in the scenario and its role.
    fn columns(&self) -> Vec<(String, &str, ColumnRole)> {
        let mut out = vec![
            ("traffic.time".to_string(), self.time.as_str(), ColumnRole::Time),
            ("traffic.id".to_string(), self.id.as_str(), ColumnRole::Key),
            ("traffic.entity".to_string(), self.entity.as_str(), ColumnRole::Key),
        ];
        out.extend(self.segments.iter().enumerate().map(|(i, s)| (format!("traffic.segments[{i}]"), s.as_str(), ColumnRole::Key)));
        out.extend(self.label.iter().map(|l| ("traffic.label".to_string(), l.as_str(), ColumnRole::Number)));
        out.extend(self.label_time.iter().map(|l| ("traffic.label_time".to_string(), l.as_str(), ColumnRole::Time)));
        out.extend(self.features.iter().map(|f| ("a feature of the models".to_string(), f.as_str(), ColumnRole::Number)));
        out
    }
}

/// Checks every needed column exists in every file with a type its role accepts.
pub fn check_columns(files: &[TrafficFile], layout: &Layout) -> Vec<Problem> {
    let mut problems = Vec::new();
    for file in files {
        let schema = file.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        for (key, column, role) in layout.columns() {
            match schema.column_with_name(column) {
                None => {
                    let mut p = Problem::new(
                        format!("{}: column \"{column}\"", file.path.display()),
                        format!("is missing ({key})"),
                    );
                    p.fix = Some(match did_you_mean(column, names.iter().copied()) {
                        Some(s) => format!("did you mean \"{s}\"?"),
                        None => format!("the file has: {}", names.join(", ")),
                    });
                    problems.push(p);
                }
                Some((_, field)) => {
                    if let Some((message, fix)) = type_problem(role, field.data_type()) {
                        problems.push(Problem::new(format!("{}: column \"{column}\" ({key})", file.path.display()), message).fix(fix));
                    }
                }
            }
        }
    }
    problems
}

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

    pub fn is_empty(&self) -> bool {
        self.time.is_empty()
    }
}

/// Streams the traffic in the window, file after file, one batch at a time.
pub struct Batches<'a> {
    files: &'a [TrafficFile],
    traffic: &'a Traffic,
    layout: &'a Layout,
    batch_rows: usize,
    next_file: usize,
    current: Option<(usize, ParquetRecordBatchReader)>,
}

impl<'a> Batches<'a> {
    pub fn new(files: &'a [TrafficFile], traffic: &'a Traffic, layout: &'a Layout, batch_rows: usize) -> Self {
        Self { files, traffic, layout, batch_rows, next_file: 0, current: None }
    }

    fn open_next(&mut self) -> Result<bool> {
        let Some(file) = self.files.get(self.next_file) else { return Ok(false) };
        let index = self.next_file;
        self.next_file += 1;
        let handle = File::open(&file.path).map_err(|e| Error::io(&file.path, e))?;
        let schema = file.schema();
        let wanted: Vec<usize> = self
            .layout
            .columns()
            .iter()
            .filter_map(|(_, name, _)| schema.index_of(name).ok())
            .collect();
        let mask = ProjectionMask::roots(file.metadata.parquet_schema(), wanted);
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(handle, file.metadata.clone())
            .with_projection(mask)
            .with_row_groups(file.row_groups_in(self.traffic))
            .with_batch_size(self.batch_rows)
            .build()
            .map_err(|e| data_error(&file.path, e))?;
        self.current = Some((index, reader));
        Ok(true)
    }

    fn convert(&self, file: &TrafficFile, batch: &RecordBatch) -> Result<TrafficBatch> {
        let column = |name: &str| -> ArrayRef { batch.column_by_name(name).expect("projected column is present").clone() };
        let bad = |name: &str, e: String| Error::invalid(Problem::new(format!("{}: column \"{name}\"", file.path.display()), e));

        let times = to_micros(&column(&self.layout.time)).map_err(|e| bad(&self.layout.time, e))?;
        let keep: Vec<bool> = times.iter().map(|t| t.is_some_and(|t| self.traffic.in_window(t))).collect();
        let all = keep.iter().all(|k| *k);
        let filter = BooleanArray::from(keep);
        let select = |array: ArrayRef| -> Result<ArrayRef> {
            if all {
                Ok(array)
            } else {
                arrow::compute::filter(&array, &filter).map_err(|e| Error::Internal(e.to_string()))
            }
        };
        let time: Vec<Micros> = times.iter().zip(filter.values().iter()).filter(|(_, k)| *k).map(|(t, _)| t.expect("kept rows have a time")).collect();
        let key = |name: &str| -> Result<ArrayRef> { select(to_utf8(&column(name)).map_err(|e| bad(name, e))?) };
        let id = key(&self.layout.id)?;
        let entity = key(&self.layout.entity)?;
        let segments = self.layout.segments.iter().map(|s| key(s)).collect::<Result<Vec<_>>>()?;
        let label = match &self.layout.label {
            Some(name) => {
                let values = to_f64(&column(name)).map_err(|e| bad(name, e))?;
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

impl Iterator for Batches<'_> {
    type Item = Result<TrafficBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.current.is_none() {
                match self.open_next() {
                    Ok(true) => {}
                    Ok(false) => return None,
                    Err(e) => return Some(Err(e)),
                }
            }
            let (index, reader) = self.current.as_mut().expect("a reader is open");
            let file = &self.files[*index];
            match reader.next() {
                None => self.current = None,
                Some(Err(e)) => return Some(Err(data_error(&file.path, e))),
                Some(Ok(batch)) => {
                    let converted = self.convert(file, &batch);
                    match converted {
                        Ok(b) if b.is_empty() => continue,
                        other => return Some(other),
                    }
                }
            }
        }
    }
}

/// A Parquet or Arrow error while reading a user's file is invalid input, named by the file.
pub fn data_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::invalid(
        Problem::new(path.display().to_string(), format!("cannot read the data: {e}"))
            .fix("the file may be truncated or corrupt; re-export it"),
    )
}

/// The arrow type the score cache stores times in.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}
