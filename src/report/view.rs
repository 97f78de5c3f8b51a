//! A run folder read back for the review report: `summary.json` (only what the report shows),
//! `distributions.json` (the charts of the models' outputs, on every request), `policy.toml`,
//! `invocation.json`, and polars queries over `checks.parquet` (and over `scores.parquet` for the
//! charts of a folder written before `distributions.json`). The report is rendered from these files
//! alone, so `canary-replay report` re-renders it without rescoring or simulating again.

use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::Deserialize;

use super::Summary;
use crate::error::{Error, Problem, Result};
use crate::oracle::{Distributions, Labels, CALIBRATION_BINS, CHART_SCORE_BINS as SCORE_BINS};
use crate::simulate::judge::GateVerdict;
use crate::simulate::Action;
use crate::time::{parse_timestamp, Micros};

/// Everything the report shows.
pub struct RunView {
    pub dir: PathBuf,
    pub summary: Summary,
    pub policy_toml: String,
    pub invocation: Option<Invocation>,
    pub checks: Vec<CheckPoint>,
    pub gates: Vec<GateSeries>,
    pub segments: Vec<SegmentRow>,
    pub scores: ScoreViews,
}

/// `invocation.json`: how the run was started.
#[derive(Debug, Clone, serde::Serialize, Deserialize, PartialEq)]
pub struct Invocation {
    pub command: Vec<String>,
    pub working_dir: String,
    pub started_at: String,
}

/// One check: its time, weight and how its gates came out.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckPoint {
    pub time: Micros,
    pub weight: f64,
    pub action: Action,
    /// Failing gate results (any scope).
    pub fails: u64,
    /// All-traffic gate results that did not pass.
    pub open: u64,
}

/// One gate on all traffic over the checks.
#[derive(Debug, Clone, PartialEq)]
pub struct GateSeries {
    pub gate: String,
    pub points: Vec<GatePoint>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GatePoint {
    pub time: Micros,
    pub verdict: GateVerdict,
    pub stable: Option<f64>,
    pub canary: Option<f64>,
    pub estimate: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub margin: Option<f64>,
}

/// One gate on one scope over the whole run.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentRow {
    pub gate: String,
    pub scope: String,
    pub checks: u64,
    pub fails: u64,
    pub passes: u64,
    /// The verdict at the scope's last check.
    pub last_verdict: GateVerdict,
    /// The last estimate the gate computed, with its interval.
    pub estimate: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
}

/// What the charts of the models' outputs need: the oracle's [`Distributions`] on every request
/// (`distributions.json`), or for a run folder written before it, what `scores.parquet` holds.
pub type ScoreViews = Distributions;

impl RunView {
    /// Reads the run folder at `dir`.
    pub fn load(dir: &Path) -> Result<RunView> {
        let file = |name: &str| -> Result<PathBuf> {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(Error::invalid(
                    Problem::new(dir.display().to_string(), format!("is not a complete canary-replay run folder: {name} is missing"))
                        .fix("pass the folder `canary-replay run` wrote (reports/<scenario name>/ or its --out)"),
                ))
            }
        };
        let summary_path = file("summary.json")?;
        let text = std::fs::read_to_string(&summary_path).map_err(|e| Error::io(&summary_path, e))?;
        let summary: Summary = serde_json::from_str(&text).map_err(|e| {
            Error::invalid(
                Problem::new(summary_path.display().to_string(), format!("cannot be read as a run summary: {e}"))
                    .fix("re-run the scenario with this version of canary-replay to rewrite it"),
            )
        })?;
        let policy_path = file("policy.toml")?;
        let policy_toml = std::fs::read_to_string(&policy_path).map_err(|e| Error::io(&policy_path, e))?;
        let invocation = std::fs::read_to_string(dir.join("invocation.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
        let checks_path = file("checks.parquet")?;
        let (checks, gates, segments) = read_checks(&checks_path)?;
        let label = summary.columns.label.as_deref().filter(|_| summary.oracle.task == Labels::Binary);
        let written = summary.scores_file.mode != crate::scenario::ScoresFile::None;
        let distributions = dir.join(DISTRIBUTIONS);
        let scores = if distributions.is_file() {
            let text = std::fs::read_to_string(&distributions).map_err(|e| Error::io(&distributions, e))?;
            serde_json::from_str(&text).map_err(|e| {
                Error::invalid(
                    Problem::new(distributions.display().to_string(), format!("cannot be read: {e}"))
                        .fix("re-run the scenario with this version of canary-replay to rewrite it"),
                )
            })?
        } else if written {
            let mut views = read_scores(&file("scores.parquet")?, label)?;
            views.of = summary.scores_file.describe();
            views
        } else {
            ScoreViews::default()
        };
        Ok(RunView { dir: dir.to_path_buf(), summary, policy_toml, invocation, checks, gates, segments, scores })
    }

    /// The first and last request, microseconds.
    pub fn span(&self) -> (Micros, Micros) {
        let at = |t: &str| parse_timestamp(t).unwrap_or(0);
        (at(&self.summary.window.first_request), at(&self.summary.window.last_request))
    }
}

fn unreadable(path: &Path) -> impl Fn(PolarsError) -> Error + '_ {
    move |e| {
        Error::invalid(
            Problem::new(path.display().to_string(), format!("cannot be read: {e}")).fix("re-run the scenario to rewrite the run folder"),
        )
    }
}

fn scan(path: &Path) -> Result<LazyFrame> {
    LazyFrame::scan_parquet(PlRefPath::new(path.to_string_lossy().as_ref()), ScanArgsParquet::default()).map_err(unreadable(path))
}

fn floats(df: &DataFrame, name: &str) -> PolarsResult<Vec<Option<f64>>> {
    Ok(df.column(name)?.cast(&DataType::Float64)?.f64()?.iter().collect())
}

fn counts(df: &DataFrame, name: &str) -> PolarsResult<Vec<u64>> {
    Ok(df.column(name)?.cast(&DataType::UInt64)?.u64()?.iter().map(|v| v.unwrap_or(0)).collect())
}

fn times(df: &DataFrame, name: &str) -> PolarsResult<Vec<Micros>> {
    Ok(df.column(name)?.cast(&DataType::Int64)?.i64()?.iter().map(|v| v.unwrap_or(0)).collect())
}

fn texts(df: &DataFrame, name: &str) -> PolarsResult<Vec<String>> {
    Ok(df.column(name)?.str()?.iter().map(|v| v.unwrap_or_default().to_string()).collect())
}

/// A column of names serde knows (verdicts, actions), as their enum.
fn names<T: serde::de::DeserializeOwned>(df: &DataFrame, name: &str) -> PolarsResult<Vec<T>> {
    df.column(name)?
        .str()?
        .iter()
        .map(|v| {
            let text = v.unwrap_or_default();
            serde_json::from_value(serde_json::Value::String(text.to_string()))
                .map_err(|_| polars_err!(ComputeError: "column {name} holds {text:?}, which this version does not know"))
        })
        .collect()
}

/// Per check, per gate on all traffic, and per gate and scope.
fn read_checks(path: &Path) -> Result<(Vec<CheckPoint>, Vec<GateSeries>, Vec<SegmentRow>)> {
    let bad = unreadable(path);
    let lf = scan(path)?.with_column(col("time").dt().timestamp(TimeUnit::Microseconds).alias("time"));
    let fail = col("verdict").eq(lit("FAIL"));

    let per_check = lf
        .clone()
        .group_by_stable([col("time")])
        .agg([
            col("weight").first(),
            col("action").first(),
            fail.clone().cast(DataType::UInt64).sum().alias("fails"),
            (col("scope").eq(lit("overall")).and(col("verdict").neq(lit("PASS")))).cast(DataType::UInt64).sum().alias("open"),
        ])
        .sort(["time"], SortMultipleOptions::default())
        .collect()
        .map_err(&bad)?;
    let checks = (|| -> PolarsResult<Vec<CheckPoint>> {
        let (time, weight, action) = (times(&per_check, "time")?, floats(&per_check, "weight")?, names(&per_check, "action")?);
        let (fails, open) = (counts(&per_check, "fails")?, counts(&per_check, "open")?);
        Ok((0..time.len())
            .map(|i| CheckPoint { time: time[i], weight: weight[i].unwrap_or(0.0), action: action[i], fails: fails[i], open: open[i] })
            .collect())
    })()
    .map_err(&bad)?;

    let overall = lf
        .clone()
        .filter(col("scope").eq(lit("overall")))
        .select([
            col("gate"),
            col("time"),
            col("verdict"),
            col("stable"),
            col("canary"),
            col("estimate"),
            col("lower"),
            col("upper"),
            col("margin"),
        ])
        .sort(["time"], SortMultipleOptions::default().with_maintain_order(true))
        .collect()
        .map_err(&bad)?;
    let gates = (|| -> PolarsResult<Vec<GateSeries>> {
        let (gate, time, verdict) = (texts(&overall, "gate")?, times(&overall, "time")?, names(&overall, "verdict")?);
        let (stable, canary, estimate) = (floats(&overall, "stable")?, floats(&overall, "canary")?, floats(&overall, "estimate")?);
        let (lower, upper, margin) = (floats(&overall, "lower")?, floats(&overall, "upper")?, floats(&overall, "margin")?);
        let mut series: Vec<GateSeries> = Vec::new();
        for i in 0..gate.len() {
            let point = GatePoint {
                time: time[i],
                verdict: verdict[i],
                stable: stable[i],
                canary: canary[i],
                estimate: estimate[i],
                lower: lower[i],
                upper: upper[i],
                margin: margin[i],
            };
            match series.iter_mut().find(|s| s.gate == gate[i]) {
                Some(s) => s.points.push(point),
                None => series.push(GateSeries { gate: gate[i].clone(), points: vec![point] }),
            }
        }
        Ok(series)
    })()
    .map_err(&bad)?;

    let per_scope = lf
        .sort(["time"], SortMultipleOptions::default().with_maintain_order(true))
        .group_by_stable([col("gate"), col("scope")])
        .agg([
            len().cast(DataType::UInt64).alias("checks"),
            fail.cast(DataType::UInt64).sum().alias("fails"),
            col("verdict").eq(lit("PASS")).cast(DataType::UInt64).sum().alias("passes"),
            col("verdict").last().alias("last_verdict"),
            col("estimate").drop_nulls().last().alias("estimate"),
            col("lower").drop_nulls().last().alias("lower"),
            col("upper").drop_nulls().last().alias("upper"),
        ])
        .collect()
        .map_err(&bad)?;
    let segments = (|| -> PolarsResult<Vec<SegmentRow>> {
        let (gate, scope, last) = (texts(&per_scope, "gate")?, texts(&per_scope, "scope")?, names(&per_scope, "last_verdict")?);
        let (checks, fails, passes) = (counts(&per_scope, "checks")?, counts(&per_scope, "fails")?, counts(&per_scope, "passes")?);
        let (estimate, lower, upper) = (floats(&per_scope, "estimate")?, floats(&per_scope, "lower")?, floats(&per_scope, "upper")?);
        Ok((0..gate.len())
            .map(|i| SegmentRow {
                gate: gate[i].clone(),
                scope: scope[i].clone(),
                checks: checks[i],
                fails: fails[i],
                passes: passes[i],
                last_verdict: last[i],
                estimate: estimate[i],
                lower: lower[i],
                upper: upper[i],
            })
            .collect())
    })()
    .map_err(&bad)?;
    Ok((checks, gates, segments))
}

/// The file of the oracle's distributions in a run folder.
pub const DISTRIBUTIONS: &str = "distributions.json";

/// Score histograms, reliability curves and measured latencies of both models.
/// `label`: the 0/1 label column of a binary task, for the reliability curves.
fn read_scores(path: &Path, label: Option<&str>) -> Result<ScoreViews> {
    let binary = label.is_some();
    let bad = unreadable(path);
    let lf = scan(path)?;
    let arms = ["stable", "candidate"];
    let mut views = ScoreViews::default();

    let range = lf
        .clone()
        .select([
            col("stable_score").min().alias("stable_lo"),
            col("candidate_score").min().alias("candidate_lo"),
            col("stable_score").max().alias("stable_hi"),
            col("candidate_score").max().alias("candidate_hi"),
        ])
        .collect()
        .map_err(&bad)?;
    let value = |name: &str| floats(&range, name).ok().and_then(|v| v.first().copied().flatten());
    let lo = [value("stable_lo"), value("candidate_lo")].into_iter().flatten().reduce(f64::min);
    let hi = [value("stable_hi"), value("candidate_hi")].into_iter().flatten().reduce(f64::max);
    let (lo, hi) = match (lo, hi) {
        (Some(lo), Some(hi)) if binary && lo >= 0.0 && hi <= 1.0 => (0.0, 1.0),
        (Some(lo), Some(hi)) if hi > lo => (lo, hi),
        (Some(lo), _) => (lo - 0.5, lo + 0.5),
        _ => (0.0, 1.0),
    };
    let width = (hi - lo) / SCORE_BINS as f64;
    views.edges = (0..=SCORE_BINS).map(|i| lo + width * i as f64).collect();
    let bin = |score: Expr, bins: usize, lo: f64, width: f64| {
        let raw = ((score - lit(lo)) / lit(width)).floor().cast(DataType::Int64);
        when(raw.clone().gt_eq(lit(bins as i64))).then(lit(bins as i64 - 1)).otherwise(raw).alias("bin")
    };
    for (arm, name) in arms.iter().enumerate() {
        let score = format!("{name}_score");
        let hist = lf
            .clone()
            .filter(col(score.as_str()).is_not_null())
            .group_by([bin(col(score.as_str()), SCORE_BINS, lo, width)])
            .agg([len().cast(DataType::UInt64).alias("n")])
            .collect()
            .map_err(&bad)?;
        let mut counts_per_bin = vec![0u64; SCORE_BINS];
        for (b, n) in times(&hist, "bin").map_err(&bad)?.into_iter().zip(counts(&hist, "n").map_err(&bad)?) {
            if let Some(slot) = usize::try_from(b).ok().and_then(|b| counts_per_bin.get_mut(b)) {
                *slot += n;
            }
        }
        views.histograms[arm] = counts_per_bin;

        if let Some(label) = label {
            let curve = lf
                .clone()
                .filter(col(score.as_str()).is_not_null().and(col(label).is_not_null()))
                .group_by([bin(col(score.as_str()), CALIBRATION_BINS, 0.0, 1.0 / CALIBRATION_BINS as f64)])
                .agg([
                    col(score.as_str()).mean().alias("mean_score"),
                    col(label).cast(DataType::Float64).mean().alias("rate"),
                    len().cast(DataType::UInt64).alias("n"),
                ])
                .sort(["bin"], SortMultipleOptions::default())
                .collect()
                .map_err(&bad)?;
            let (mean, rate, n) =
                (floats(&curve, "mean_score").map_err(&bad)?, floats(&curve, "rate").map_err(&bad)?, counts(&curve, "n").map_err(&bad)?);
            views.calibration[arm] = (0..n.len()).filter_map(|i| Some((mean[i]?, rate[i]?, n[i]))).collect();
        }

        let latency = format!("{name}_latency_us");
        let measured = lf
            .clone()
            .filter(col(latency.as_str()).is_not_null())
            .select([col(latency.as_str())])
            .sort([latency.as_str()], SortMultipleOptions::default())
            .collect()
            .map_err(&bad)?;
        let sorted: Vec<f64> = floats(&measured, &latency).map_err(&bad)?.into_iter().flatten().collect();
        let n = sorted.len();
        views.latency_cdf_us[arm] = sorted.into_iter().enumerate().map(|(i, v)| (v, (i + 1) as f64 / n as f64)).collect();
        views.latency_measured[arm] = n as u64;
    }
    Ok(views)
}
