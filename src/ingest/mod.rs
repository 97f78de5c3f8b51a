//! Ingest: the traffic log, streamed from Parquet in bounded batches.
//!
//! [`open`] resolves the scenario's path (a file, a folder read recursively with its Hive keys, or
//! a glob) and reads each file's footer; [`check_columns`] checks the roles' columns exist with
//! usable types; [`survey`] reads the time, id and segment columns once before anything expensive
//! starts — each file sorted by time, which files overlap, the rows in the window, repeated ids,
//! segment values — and gives the groups of files to read together and the [`Rules`] that clean
//! rows on their way in; [`sorted_runs`] sorts a file that is not sorted (`traffic.sort`);
//! [`Batches`] then streams the needed columns of a group, converted to the pipeline's types and
//! merged by time, one batch at a time. Every read of a user's file is guarded ([`decode`]): a file
//! that cannot be decoded is an input error naming the row group and column, never a crash.

mod batches;
mod columns;
mod decode;
mod duplicates;
mod sort;
mod survey;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};

pub use batches::{Batches, TrafficBatch};
pub use columns::{to_f64, to_f64_nan, to_micros, to_utf8, type_problem, utf8, ColumnRole};
pub use decode::contained;
pub use sort::{sorted_runs, RUN_ROWS};
pub use survey::{survey, FileSurvey, Group, Rules, SegmentValues, Survey};

use crate::error::{did_you_mean, Error, Problem, Result};
use crate::scenario::Traffic;
use crate::storage::{Blob, Location, Place};
use crate::time::Micros;

pub use crate::storage::Partitions;

/// One Parquet file of the traffic log, with its footer read.
#[derive(Debug, Clone)]
pub struct TrafficFile {
    pub path: Place,
    pub metadata: ArrowReaderMetadata,
    /// Per row group: the time column's (min, max) from statistics, when present.
    pub time_ranges: Vec<Option<(Micros, Micros)>>,
    /// Hive partition keys of the file's folders below `traffic.path` (`date=2013-09-01/`): columns
    /// whose value is the same for every row of the file (`None`: Hive's null partition).
    pub partitions: Partitions,
}

impl TrafficFile {
    pub fn schema(&self) -> &SchemaRef {
        self.metadata.schema()
    }

    pub fn rows(&self) -> i64 {
        self.metadata.metadata().file_metadata().num_rows()
    }

    pub fn name(&self) -> String {
        self.path.name()
    }

    /// Column `name` of a batch read from this file: the column itself, or a Hive partition key's
    /// value repeated (`None` when it is neither).
    pub fn column(&self, batch: &RecordBatch, name: &str) -> Option<ArrayRef> {
        match batch.column_by_name(name) {
            Some(array) => Some(array.clone()),
            None => {
                let (_, value) = self.partitions.iter().find(|(k, _)| k == name)?;
                Some(Arc::new(StringArray::from(vec![value.as_deref(); batch.num_rows()])))
            }
        }
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

/// The Parquet files a path names: a file, every `.parquet` file below a folder (Hive and Spark
/// layouts included), or a glob's matches. Hidden files and `_`-prefixed ones (`_SUCCESS`,
/// `_common_metadata`) are skipped, as pyarrow and Spark skip them.
pub fn resolve_path(path: &Path) -> Result<Vec<PathBuf>> {
    let text = path.to_string_lossy();
    let mut files: Vec<PathBuf> = if text.contains(['*', '?', '[']) {
        glob::glob(&text)
            .map_err(|e| Error::invalid(Problem::new(format!("traffic.path = \"{text}\""), format!("not a valid glob: {e}"))))?
            .filter_map(|p| p.ok())
            .filter(|p| p.is_file())
            .collect()
    } else if path.is_dir() {
        let mut found = Vec::new();
        let mut folders = vec![path.to_path_buf()];
        while let Some(folder) = folders.pop() {
            let entries = std::fs::read_dir(&folder)
                .map_err(|e| Error::invalid(Problem::new(folder.display().to_string(), format!("cannot list the folder: {e}"))))?;
            for entry in entries.filter_map(|e| e.ok()) {
                let (entry, name) = (entry.path(), entry.file_name().to_string_lossy().into_owned());
                if name.starts_with(['.', '_']) {
                    continue;
                }
                if entry.is_dir() {
                    folders.push(entry);
                } else if entry.extension().is_some_and(|x| x == "parquet" || x == "parq") {
                    found.push(entry);
                }
            }
        }
        found
    } else {
        vec![path.to_path_buf()]
    };
    files.sort();
    if files.is_empty() {
        return Err(Error::invalid(
            Problem::new(format!("traffic.path = \"{text}\""), "names no Parquet files")
                .fix("point it at a .parquet file, a folder of them (Hive partitions such as date=2013-09-01/ included), or a glob such as logs/*.parquet"),
        ));
    }
    Ok(files)
}

/// The Hive partition keys in the folders between `root` and `file`: `date=2013-09-01` gives
/// (`date`, `2013-09-01`), with `%XX` escapes decoded and `__HIVE_DEFAULT_PARTITION__` as null.
fn hive_partitions(root: &Path, file: &Path) -> Partitions {
    let Ok(relative) = file.strip_prefix(root) else { return Vec::new() };
    let folders: Vec<String> =
        relative.parent().into_iter().flat_map(|p| p.components()).map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    crate::storage::hive_partitions_of(&folders)
}

/// Opens every traffic file (reading footers only) and orders them by time.
pub fn open(traffic: &Traffic) -> Result<Vec<TrafficFile>> {
    let mut problems = Vec::new();
    let mut files = Vec::new();
    let found: Vec<(Place, Partitions)> = match &traffic.path {
        Location::Local(path) => {
            let root = path.is_dir().then_some(path.as_path());
            let partitions = |file: &Path| root.map(|r| hive_partitions(r, file)).unwrap_or_default();
            resolve_path(path)?.into_iter().map(|file| (Place::Local(file.clone()), partitions(&file))).collect()
        }
        Location::Url(url) => {
            let found = crate::storage::list(url)?;
            if found.is_empty() {
                return Err(Error::invalid(Problem::new(format!("traffic.path = \"{url}\""), "names no Parquet objects").fix(
                    "point it at a .parquet object, a prefix holding them (Hive partitions such as date=2013-09-01/ included), or a glob such as s3://bucket/logs/*.parquet",
                )));
            }
            found
        }
    };
    for (place, partitions) in found {
        match open_file(place, &traffic.time) {
            Ok(mut f) => {
                f.partitions = partitions;
                files.push(f);
            }
            Err(p) => problems.push(p),
        }
    }
    crate::error::check((), problems)?;
    let first_time = |f: &TrafficFile| f.time_ranges.iter().flatten().map(|r| r.0).min();
    files.sort_by(|a, b| first_time(a).cmp(&first_time(b)).then_with(|| a.path.cmp(&b.path)));
    Ok(files)
}

/// Opens one traffic file: reads its footer and the time column's statistics.
pub fn open_file(place: Place, time_column: &str) -> std::result::Result<TrafficFile, Problem> {
    let location = place.text();
    let blob = place.open().map_err(|e| Problem::new(&location, format!("cannot open: {e}")))?;
    if let Some(problem) = not_parquet(&blob, &location) {
        return Err(problem);
    }
    let metadata = ArrowReaderMetadata::load(&blob, ArrowReaderOptions::new()).map_err(|e| {
        Problem::new(&location, format!("not a readable Parquet file: {e}"))
            .fix("the file may be truncated or still being written; re-export it")
    })?;
    let time_ranges = row_group_time_ranges(&metadata, time_column).unwrap_or_else(|| vec![None; metadata.metadata().num_row_groups()]);
    Ok(TrafficFile { path: place, metadata, time_ranges, partitions: Vec::new() })
}

/// A file that does not start with Parquet's magic bytes is not Parquet at all (a CSV or JSON log
/// named `.parquet`, an empty file): say what it looks like, not that it may be truncated.
fn not_parquet(blob: &Blob, location: &str) -> Option<Problem> {
    use parquet::file::reader::{ChunkReader, Length};
    let head = blob.get_bytes(0, blob.len().min(64) as usize).ok()?;
    if head.starts_with(b"PAR1") {
        return None;
    }
    let looks = if head.is_empty() {
        "it is empty".to_string()
    } else if let Ok(text) = std::str::from_utf8(&head) {
        let line = text.lines().next().unwrap_or_default();
        let kind = if line.trim_start().starts_with(['{', '[']) {
            "JSON"
        } else if line.contains(',') || line.contains('\t') {
            "CSV"
        } else {
            "plain"
        };
        format!("it holds {kind} text (\"{}\")", line.chars().take(40).collect::<String>())
    } else {
        "it does not start with Parquet's magic bytes PAR1".to_string()
    };
    Some(Problem::new(location, format!("is not a Parquet file: {looks}")).fix(
        "convert it to Parquet (e.g. polars: pl.read_csv(p).write_parquet(\"log.parquet\")), or point traffic.path at the Parquet log",
    ))
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

    /// Whether segment column `s` is stored in the score cache under its own name: a segment that
    /// is also the entity column is stored once, as the entity.
    pub fn stores_segment(&self, s: &str) -> bool {
        s != self.entity
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

/// The log's own types of the columns the score cache stores converted (ids, entities and
/// segments as strings, labels as doubles, times as UTC microseconds), so `scores.parquet` can be
/// written back in them and join the log without casts. Only types a cast restores exactly are
/// listed: integers, floats, booleans and timestamps.
pub fn restorable_types(files: &[TrafficFile], layout: &Layout) -> Vec<(String, DataType)> {
    let Some(schema) = files.first().map(TrafficFile::schema) else { return Vec::new() };
    let names =
        [&layout.id, &layout.time, &layout.entity].into_iter().chain(&layout.segments).chain(&layout.label).chain(&layout.label_time);
    let mut out: Vec<(String, DataType)> = Vec::new();
    for name in names {
        let Ok(field) = schema.field_with_name(name) else { continue };
        let ty = field.data_type();
        let restorable = ty.is_integer() || ty.is_floating() || matches!(ty, DataType::Boolean | DataType::Timestamp(_, _));
        if restorable && !out.iter().any(|(n, _)| n == name) {
            out.push((name.clone(), ty.clone()));
        }
    }
    out
}

/// Checks every needed column exists in every file with a type its role accepts.
pub fn check_columns(files: &[TrafficFile], layout: &Layout) -> Vec<Problem> {
    let mut problems = Vec::new();
    for file in files {
        let schema = file.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        for (key, column, role) in layout.columns() {
            let partition = file.partitions.iter().any(|(k, _)| k == column);
            match schema.column_with_name(column) {
                None if partition && role == ColumnRole::Key => {}
                None if partition => problems.push(
                    Problem::new(
                        format!("{}: column \"{column}\" ({key})", file.path.display()),
                        "is a Hive partition key: its values are text",
                    )
                    .fix("use partition keys as segments, entities or ids; write numbers and times into the files themselves"),
                ),
                None => {
                    let mut p = Problem::new(format!("{}: column \"{column}\"", file.path.display()), format!("is missing ({key})"));
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

/// A Parquet or Arrow error while reading a user's file is invalid input, named by the file.
pub fn data_error(path: &Place, e: impl std::fmt::Display) -> Error {
    Error::invalid(
        Problem::new(path.text(), format!("cannot read the data: {e}")).fix("the file may be truncated or corrupt; re-export it"),
    )
}

/// The arrow type the score cache stores times in.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}
