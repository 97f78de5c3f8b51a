//! `inspect`: a profile of a traffic log, computed by polars in one lazy query: rows, time span
//! and order, columns with their types, null rates and (for keys) cardinalities, label coverage
//! and label-delay quantiles.

use std::fmt::Write;
use std::path::Path;

use polars::prelude::*;
use serde::Serialize;

use crate::error::{Error, Problem, Result};
use crate::time::{format_duration, format_timestamp};

/// Which columns play which role; detected when not given.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub time: Option<String>,
    pub label: Option<String>,
    pub label_time: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Profile {
    pub files: Vec<String>,
    pub rows: u64,
    pub columns: Vec<ColumnProfile>,
    pub time: Option<TimeProfile>,
    pub label: Option<LabelProfile>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ColumnProfile {
    pub name: String,
    pub dtype: String,
    pub nulls: u64,
    pub null_rate: f64,
    /// Distinct values, for string, categorical, boolean and integer columns.
    pub distinct: Option<u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TimeProfile {
    pub column: String,
    pub first: Option<String>,
    pub last: Option<String>,
    /// Rows whose time is earlier than the row before (0 when sorted).
    pub out_of_order_rows: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LabelProfile {
    pub column: String,
    /// Share of rows with a label.
    pub coverage: f64,
    pub mean: Option<f64>,
    pub label_time: Option<String>,
    /// Seconds from request to label: p50, p90, p99, max.
    pub delay_seconds: Option<[f64; 4]>,
}

/// Profiles the Parquet file, folder or glob at `path`.
pub fn inspect(path: &Path, options: &Options) -> Result<Profile> {
    let files = crate::ingest::resolve_path(path)?;
    let bad = |e: PolarsError| {
        Error::invalid(
            Problem::new(path.display().to_string(), format!("cannot read the data: {e}"))
                .fix("check the files are complete Parquet files"),
        )
    };
    let frames = files
        .iter()
        .map(|f| LazyFrame::scan_parquet(PlRefPath::new(f.to_string_lossy().as_ref()), ScanArgsParquet::default()))
        .collect::<PolarsResult<Vec<_>>>()
        .map_err(bad)?;
    let lf = concat(frames, UnionArgs::default()).map_err(bad)?;
    let schema = lf.clone().collect_schema().map_err(bad)?;
    let names: Vec<String> = schema.iter_names().map(|n| n.to_string()).collect();
    let has = |name: &Option<String>, what: &str| -> Result<()> {
        match name {
            Some(n) if !names.contains(n) => Err(Error::invalid(
                Problem::new(format!("{}: column \"{n}\"", path.display()), format!("is missing (--{what})"))
                    .fix(format!("the log has: {}", names.join(", "))),
            )),
            _ => Ok(()),
        }
    };
    has(&options.time, "time")?;
    has(&options.label, "label")?;
    has(&options.label_time, "label-time")?;

    let datetimes: Vec<String> =
        schema.iter().filter(|(_, t)| matches!(t, DataType::Datetime(..) | DataType::Date)).map(|(n, _)| n.to_string()).collect();
    let time = options.time.clone().or_else(|| datetimes.first().cloned());
    let label = options.label.clone().or_else(|| ["label", "target", "y"].iter().map(|s| s.to_string()).find(|c| names.contains(c)));
    let label_time = options
        .label_time
        .clone()
        .or_else(|| datetimes.iter().find(|c| Some(*c) != time.as_ref() && c.to_lowercase().contains("label")).cloned());

    let mut exprs = vec![len().cast(DataType::UInt64).alias("__rows")];
    for (name, dtype) in schema.iter() {
        exprs.push(col(name.clone()).null_count().cast(DataType::UInt64).alias(format!("__nulls:{name}")));
        if dtype.is_string() || dtype.is_categorical() || dtype.is_bool() || dtype.is_integer() {
            exprs.push(col(name.clone()).n_unique().cast(DataType::UInt64).alias(format!("__distinct:{name}")));
        }
    }
    if let Some(t) = &time {
        let micros = col(t.as_str()).dt().timestamp(TimeUnit::Microseconds);
        exprs.push(micros.clone().min().alias("__first"));
        exprs.push(micros.clone().max().alias("__last"));
        exprs.push(micros.clone().lt(micros.shift(lit(1))).sum().cast(DataType::UInt64).alias("__unsorted"));
    }
    if let Some(l) = &label {
        exprs.push(col(l.as_str()).is_not_null().mean().alias("__coverage"));
        exprs.push(col(l.as_str()).cast(DataType::Float64).mean().alias("__label_mean"));
    }
    if let (Some(t), Some(lt)) = (&time, &label_time) {
        let delay = (col(lt.as_str()).dt().timestamp(TimeUnit::Microseconds) - col(t.as_str()).dt().timestamp(TimeUnit::Microseconds))
            .cast(DataType::Float64)
            / lit(1e6);
        for (i, p) in [0.5, 0.9, 0.99].iter().enumerate() {
            exprs.push(delay.clone().quantile(lit(*p), QuantileMethod::Linear).alias(format!("__delay{i}")));
        }
        exprs.push(delay.max().alias("__delay3"));
    }
    let df = lf.select(exprs).collect().map_err(bad)?;
    let get = |name: &str| -> Option<AnyValue<'_>> { df.column(name).ok().and_then(|c| c.get(0).ok()) };
    let as_u64 = |name: &str| get(name).and_then(|v| v.extract::<u64>()).unwrap_or(0);
    let as_f64 = |name: &str| get(name).and_then(|v| v.extract::<f64>());
    let as_i64 = |name: &str| get(name).and_then(|v| v.extract::<i64>());

    let rows = as_u64("__rows");
    let columns = schema
        .iter()
        .map(|(name, dtype)| {
            let nulls = as_u64(&format!("__nulls:{name}"));
            ColumnProfile {
                name: name.to_string(),
                dtype: dtype.to_string(),
                nulls,
                null_rate: if rows == 0 { 0.0 } else { nulls as f64 / rows as f64 },
                distinct: get(&format!("__distinct:{name}")).and_then(|v| v.extract::<u64>()),
            }
        })
        .collect();
    let time = time.map(|column| TimeProfile {
        column,
        first: as_i64("__first").map(format_timestamp),
        last: as_i64("__last").map(format_timestamp),
        out_of_order_rows: as_u64("__unsorted"),
    });
    let label = label.map(|column| {
        let delays: Option<Vec<f64>> = (0..4).map(|i| as_f64(&format!("__delay{i}"))).collect();
        LabelProfile {
            column,
            coverage: as_f64("__coverage").unwrap_or(0.0),
            mean: as_f64("__label_mean"),
            label_time,
            delay_seconds: delays.map(|d| [d[0], d[1], d[2], d[3]]),
        }
    });
    Ok(Profile { files: files.iter().map(|f| f.display().to_string()).collect(), rows, columns, time, label })
}

impl Profile {
    /// The profile as a table for the terminal.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{} rows in {} file(s)", self.rows, self.files.len());
        if let Some(t) = &self.time {
            let order = if t.out_of_order_rows == 0 {
                "sorted".to_string()
            } else {
                format!("NOT sorted: {} rows earlier than the row before", t.out_of_order_rows)
            };
            let _ =
                writeln!(s, "time ({}): {} .. {} ({order})", t.column, t.first.as_deref().unwrap_or("-"), t.last.as_deref().unwrap_or("-"));
        } else {
            let _ = writeln!(s, "time: no timestamp column found (pass --time)");
        }
        if let Some(l) = &self.label {
            let _ = write!(s, "label ({}): {:.1}% of rows labelled", l.column, 100.0 * l.coverage);
            if let Some(m) = l.mean {
                let _ = write!(s, ", mean {m:.4}");
            }
            let _ = writeln!(s);
            if let (Some(lt), Some(d)) = (&l.label_time, &l.delay_seconds) {
                let f = |x: f64| format_duration(crate::time::from_seconds(x));
                let _ = writeln!(s, "label delay ({lt}): p50 {}, p90 {}, p99 {}, max {}", f(d[0]), f(d[1]), f(d[2]), f(d[3]));
            }
        }
        let _ = writeln!(s, "\n{:<24} {:<36} {:>9} {:>10}", "column", "type", "null %", "distinct");
        for c in &self.columns {
            let distinct = c.distinct.map_or(String::new(), |d| d.to_string());
            let _ = writeln!(s, "{:<24} {:<36} {:>9.2} {:>10}", c.name, c.dtype, 100.0 * c.null_rate, distinct);
        }
        s
    }
}
