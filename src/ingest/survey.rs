//! A cheap first pass over the time column only: is the log sorted, has every request a time,
//! and how many requests fall in the window. Run before scoring so these errors cost seconds,
//! not a scoring pass, and so progress can show an ETA.

use std::fs::File;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use serde::Serialize;

use super::{data_error, to_micros, TrafficFile};
use crate::error::{Error, Problem, Result};
use crate::scenario::Traffic;
use crate::time::{format_timestamp, Micros};

/// What the time column says about one file.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FileSurvey {
    pub file: String,
    pub rows: i64,
    pub rows_in_window: u64,
}

/// What the time column says about the whole log.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Survey {
    pub files: Vec<FileSurvey>,
    pub rows_in_window: u64,
    /// First and last request time in the window.
    pub first: Micros,
    pub last: Micros,
}

pub fn survey(files: &[TrafficFile], traffic: &Traffic) -> Result<Survey> {
    let column = &traffic.time;
    let mut previous: Option<(Micros, String)> = None;
    let mut out = Vec::new();
    let (mut first, mut last) = (None, None);
    let (mut span_min, mut span_max): (Option<Micros>, Option<Micros>) = (None, None);
    for file in files {
        let handle = File::open(&file.path).map_err(|e| Error::io(&file.path, e))?;
        let index = file.schema().index_of(column).map_err(|e| data_error(&file.path, e))?;
        let mask = ProjectionMask::roots(file.metadata.parquet_schema(), [index]);
        let groups = file.row_groups_in(traffic);
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(handle, file.metadata.clone())
            .with_projection(mask)
            .with_row_groups(groups.clone())
            .with_batch_size(65_536)
            .build()
            .map_err(|e| data_error(&file.path, e))?;
        let mut row = groups.first().map_or(0, |g| rows_before(file, *g));
        let mut in_window = 0u64;
        for batch in reader {
            let batch = batch.map_err(|e| data_error(&file.path, e))?;
            let times = to_micros(batch.column(0)).map_err(|e| data_error(&file.path, e))?;
            for t in times {
                let Some(t) = t else {
                    return Err(Error::invalid(
                        Problem::new(format!("{}: column \"{column}\"", file.path.display()), format!("row {row} has no request time (null)"))
                            .fix("drop or fill requests without a time before replaying"),
                    ));
                };
                if let Some((p, where_)) = &previous {
                    if t < *p {
                        return Err(unsorted(file, column, row, t, *p, where_));
                    }
                }
                previous = Some((t, format!("row {row} of {}", file.name())));
                span_min = Some(span_min.map_or(t, |m| m.min(t)));
                span_max = Some(span_max.map_or(t, |m| m.max(t)));
                if traffic.in_window(t) {
                    in_window += 1;
                    first.get_or_insert(t);
                    last = Some(t);
                }
                row += 1;
            }
        }
        out.push(FileSurvey { file: file.path.display().to_string(), rows: file.rows(), rows_in_window: in_window });
    }
    let rows_in_window: u64 = out.iter().map(|f| f.rows_in_window).sum();
    match (first, last) {
        (Some(first), Some(last)) => Ok(Survey { files: out, rows_in_window, first, last }),
        _ => {
            let window = format!(
                "{} .. {}",
                traffic.start.map_or("(open)".into(), format_timestamp),
                traffic.end.map_or("(open)".into(), format_timestamp)
            );
            let span = match (span_min, span_max) {
                (Some(a), Some(b)) => format!("the data spans {} .. {}", format_timestamp(a), format_timestamp(b)),
                _ => {
                    let all = files.iter().flat_map(|f| f.time_ranges.iter().flatten());
                    let (lo, hi) = all.fold((None::<Micros>, None::<Micros>), |(lo, hi), (a, b)| {
                        (Some(lo.map_or(*a, |l| l.min(*a))), Some(hi.map_or(*b, |h| h.max(*b))))
                    });
                    match (lo, hi) {
                        (Some(a), Some(b)) => format!("the data spans {} .. {}", format_timestamp(a), format_timestamp(b)),
                        _ => "the data has no rows".to_string(),
                    }
                }
            };
            Err(Error::invalid(
                Problem::new("traffic.start/traffic.end", format!("the window {window} selects no requests; {span}"))
                    .fix("move the window onto the data, or remove traffic.start and traffic.end"),
            ))
        }
    }
}

fn rows_before(file: &TrafficFile, group: usize) -> i64 {
    (0..group).map(|g| file.metadata.metadata().row_group(g).num_rows()).sum()
}

fn unsorted(file: &TrafficFile, column: &str, row: i64, t: Micros, previous: Micros, where_previous: &str) -> Error {
    Error::invalid(
        Problem::new(
            format!("{}: column \"{column}\"", file.path.display()),
            format!(
                "is not sorted: row {row} ({}) is earlier than {where_previous} ({})",
                format_timestamp(t),
                format_timestamp(previous)
            ),
        )
        .fix(format!(
            "sort the log by time, e.g. polars: pl.read_parquet(p).sort(\"{column}\").write_parquet(p); \
             across several files, each file must start after the previous one ends"
        )),
    )
}
