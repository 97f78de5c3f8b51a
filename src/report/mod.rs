//! Reports of a run: `summary.json` (deterministic: the same inputs give the same bytes),
//! `timings.json` (how long it took; differs run to run), `scores.parquet` (one row per replayed
//! request), and the short terminal summary. The output folder is assembled under a temporary
//! name and renamed into place when complete, so a failed run never leaves a folder that looks
//! finished.

pub(crate) mod charts;
pub mod controllers;
pub(crate) mod page;
pub mod simulation;
mod terminal;
pub mod view;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

pub use terminal::print_run;
pub use view::Invocation;

use crate::error::{Error, Problem, Result};
use crate::oracle::Oracle;
pub use crate::output::to_json;
use crate::output::{Artifact, Bytes, Folder, Json};
use crate::policy::raw::RawSections;
use crate::runtime::RuntimeInfo;
use crate::scenario::{Output, ScoresFile};
use crate::score::model::{FeatureSource, Model};
use crate::time::format_timestamp;

/// `summary.json`: the run's record, written by `run` and read back by `report`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub tool: Tool,
    pub scenario: ScenarioInfo,
    pub rows_replayed: u64,
    pub window: Window,
    /// The traffic's column roles.
    pub columns: Columns,
    /// What the models predict, as decided from the label and the scores on the first rows.
    pub task: crate::score::probe::FirstRows,
    /// What the run took for granted where the scenario is silent.
    pub assumptions: Vec<String>,
    /// What `scores.parquet` holds: every request, a deterministic sample, or nothing (absent in
    /// summaries written before `[output] scores` existed: every request).
    #[serde(default)]
    pub scores_file: ScoresInfo,
    pub runtime: RuntimeInfo,
    pub inputs: Vec<Input>,
    pub models: BTreeMap<String, ModelInfo>,
    pub latency: LatencyMethod,
    /// The canary policy as it ran (every default written out).
    #[serde(serialize_with = "RawSections::serialize_sorted")]
    pub policy: RawSections,
    /// The incidents injected into the replay.
    #[serde(default)]
    pub faults: Vec<FaultInfo>,
    /// What the policy did, when, why, and whether it was right.
    pub simulation: simulation::Simulation,
    /// The models on all traffic as users were served them: the scenario's faults applied.
    pub oracle: Oracle,
    /// With faults: the models' own comparison on all traffic, without them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oracle_clean: Option<crate::oracle::Comparison>,
    /// The live controllers of `[controller]`, emulated and graded next to the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controllers: Option<controllers::Controllers>,
}

/// What `scores.parquet` holds (`[output] scores`).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ScoresInfo {
    pub mode: ScoresFile,
    /// Requests written.
    pub rows: u64,
    /// Share of requests written: a request is in the sample when the XXH64 hash (seed 0) of its
    /// id, read as a fraction of 2^64, falls below it (1: every request, 0: none).
    pub fraction: f64,
}

impl Default for ScoresInfo {
    /// Every request (what a summary without `scores_file` had).
    fn default() -> Self {
        Self { mode: ScoresFile::All, rows: 0, fraction: 1.0 }
    }
}

impl ScoresInfo {
    /// The plan for `rows` requests (`rows` written is filled in once the file is written).
    pub fn planned(output: &Output, rows: u64) -> Self {
        let fraction = match output.scores {
            ScoresFile::All => 1.0,
            ScoresFile::None => 0.0,
            ScoresFile::Sample if rows <= output.max_score_rows => 1.0,
            ScoresFile::Sample => output.max_score_rows as f64 / rows as f64,
        };
        Self { mode: output.scores, rows: 0, fraction }
    }

    /// Which requests the file holds, for captions.
    pub fn describe(&self) -> String {
        match self.mode {
            ScoresFile::None => "no request (scores.parquet was not written: [output] scores = \"none\")".to_string(),
            _ if self.fraction < 1.0 => {
                format!("a deterministic sample of {} requests ({:.2}% of them, by a hash of the id)", self.rows, self.fraction * 100.0)
            }
            _ => "every replayed request".to_string(),
        }
    }

    /// Whether the request with this id is written.
    /// XXH64 rather than BLAKE3: nothing is at stake in which requests are sampled, and at 10⁷
    /// requests BLAKE3 took 1.7 s of the file's 3.2 s.
    pub fn keeps(&self, id: &str) -> bool {
        (twox_hash::XxHash64::oneshot(0, id.as_bytes()) as f64) < self.fraction * 2f64.powi(64)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ScenarioInfo {
    pub name: String,
    pub file: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Window {
    pub start: Option<String>,
    pub end: Option<String>,
    pub first_request: String,
    pub last_request: String,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Columns {
    pub time: String,
    pub entity: String,
    pub id: String,
    pub label: Option<String>,
    pub label_time: Option<String>,
    pub segments: Vec<String>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Input {
    pub file: String,
    pub blake3: String,
    pub rows: i64,
    pub rows_in_window: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    pub path: String,
    pub blake3: String,
    pub output: String,
    pub class: Option<crate::scenario::Class>,
    /// Omitted when the output is the score itself.
    #[serde(default, skip_serializing_if = "crate::scenario::Transform::is_none")]
    pub transform: crate::scenario::Transform,
    pub features: Vec<String>,
    pub feature_source: FeatureSource,
}

impl ModelInfo {
    pub fn of(model: &Model) -> Self {
        Self {
            path: model.spec.path.display().to_string(),
            blake3: model.hash.clone(),
            output: model.output.clone(),
            class: model.spec.class.clone(),
            transform: model.spec.transform,
            features: model.features.clone(),
            feature_source: model.feature_source,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LatencyMethod {
    pub method: String,
    pub sample_share: f64,
    pub warmup_runs: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FaultInfo {
    pub description: String,
    pub model: crate::scenario::Role,
    pub effect: crate::scenario::Effect,
    pub start: Option<String>,
    pub end: Option<String>,
    /// `column=value`.
    pub segment: Option<String>,
}

impl FaultInfo {
    pub fn of(fault: &crate::scenario::Fault) -> Self {
        Self {
            description: fault.describe(),
            model: fault.model,
            effect: fault.effect.clone(),
            start: fault.start.map(format_timestamp),
            end: fault.end.map(format_timestamp),
            segment: fault.segment.as_ref().map(|(c, v)| format!("{c}={v}")),
        }
    }
}

/// `timings.json`: wall-clock figures of this run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Timings {
    pub total_seconds: f64,
    pub prepare_seconds: f64,
    pub scoring_seconds: f64,
    /// Part of `scoring_seconds` spent hashing inputs and loading sessions.
    pub scoring_setup_seconds: f64,
    pub oracle_seconds: f64,
    pub simulation_seconds: f64,
    /// Rendering `report.html` and the charts.
    pub report_seconds: f64,
    /// Writing `scores.parquet`: while scoring when the run scored every part (part of
    /// `scoring_seconds`), else from the cache beside the oracle and the simulation.
    pub scores_file_seconds: f64,
    /// Everything after scoring, wall time: the oracle, the simulation and `scores.parquet` side
    /// by side, then the report and the other files.
    pub after_scoring_seconds: f64,
    pub rows: u64,
    /// Rows scored per second by both models once sessions are loaded (absent when every part
    /// came from the cache).
    pub rows_scored_per_second: Option<f64>,
    pub parts_reused: usize,
    pub parts_scored: usize,
    pub cache_dir: String,
    pub workers: usize,
    pub intra_threads: usize,
    /// Peak resident memory of the process (Linux).
    pub peak_rss_mib: Option<f64>,
    /// Peak resident memory when scoring was done, before the oracle, the simulation and the files.
    pub peak_rss_before_simulation_mib: Option<f64>,
    /// What `simulation_seconds` went to.
    pub simulation_phases: SimulationPhases,
    /// The fast path's index (absent with `--reference`).
    pub index: Option<crate::simulate::fast::Footprint>,
}

/// The parts of the simulation's time.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SimulationPhases {
    /// The first pass over the score cache (score range, labels, segment cells).
    pub scan_seconds: f64,
    /// Building the fast path's index (with `--reference`: reading every row).
    pub index_seconds: f64,
    /// Simulating and grading the policy.
    pub policy_seconds: f64,
    /// Emulating and grading the live controllers.
    pub controllers_seconds: f64,
    /// Buckets of rows the controllers' windows read back from the score cache (see `simulate::ranged`).
    pub rows_read_back: Option<u64>,
}

impl SimulationPhases {
    /// Runs `f`, adding its time to the phase `of` picks.
    pub fn time<T>(&mut self, of: impl Fn(&mut Self) -> &mut f64, f: impl FnOnce() -> T) -> T {
        let started = std::time::Instant::now();
        let out = f();
        *of(self) += started.elapsed().as_secs_f64();
        out
    }
}

/// `scores.parquet` from the cache parts, as the plan says (every request, a sample, or nothing)
/// with the log's column types restored, when scoring did not write it ([`ScoresWriter`]). It
/// reads only the parts, so it is written beside the oracle and the simulation.
pub struct Scores<'a> {
    pub parts: &'a [PathBuf],
    pub plan: &'a ScoresInfo,
    /// The columns (the sample is picked by the hash of the request id).
    pub layout: &'a crate::ingest::Layout,
    pub types: &'a [(String, arrow::datatypes::DataType)],
    /// Requests written, once written.
    pub written: std::sync::atomic::AtomicU64,
}

/// The file's name in a run's folder.
pub const SCORES_FILE: &str = "scores.parquet";

impl Artifact for Scores<'_> {
    fn name(&self) -> &str {
        SCORES_FILE
    }

    fn write_to(&self, path: &Path) -> Result<()> {
        if self.plan.mode == ScoresFile::None {
            return Ok(());
        }
        let rows = concatenate(self.parts, path, self.layout, self.types, self.plan)?;
        self.written.store(rows, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

/// Writes the rest of the run's folder — `summary.json`, `checks.parquet`, `policy.toml`,
/// `distributions.json`, `invocation.json`, the review report (`report.html`, `charts/*.png`) and
/// `timings.json`; `scores.parquet` is there already ([`Scores`]) — and moves it into place.
/// `started` is when the run started, `scored` when scoring ended.
pub fn write_run(
    folder: Folder,
    summary: &Summary,
    extra: &RunFiles,
    timings: &mut Timings,
    (started, scored): (Instant, Instant),
) -> Result<()> {
    folder.write(&Json("summary.json", summary))?;
    folder.write(&Json(view::DISTRIBUTIONS, extra.distributions))?;
    folder.write(&simulation::Checks { setup: extra.setup, run: extra.run })?;
    let policy = extra.setup.policy.to_raw().to_toml("The effective canary policy of this run");
    folder.write(&Bytes("policy.toml", policy.as_bytes()))?;
    folder.write(&Json("invocation.json", extra.invocation))?;
    let report_started = Instant::now();
    render_report(folder.path(), folder.out_dir())?;
    timings.report_seconds = report_started.elapsed().as_secs_f64();
    timings.peak_rss_mib = peak_rss_mib();
    timings.total_seconds = started.elapsed().as_secs_f64();
    timings.after_scoring_seconds = scored.elapsed().as_secs_f64();
    folder.write(&Json("timings.json", timings))?;
    folder.commit("run")?;
    Ok(())
}

/// What the simulation adds to the run's folder.
pub struct RunFiles<'a> {
    pub setup: &'a crate::simulate::Setup<'a>,
    pub run: &'a crate::simulate::Run,
    pub invocation: &'a Invocation,
    /// The report's charts of the models' outputs.
    pub distributions: &'a crate::oracle::Distributions,
}

/// Renders the review report of the run folder `dir` from its files: `report.html` and
/// `charts/*.png`. The charts folder is replaced whole and the page written last, each under a
/// temporary name first, so a failed render never leaves a page that looks complete.
pub fn write_report(dir: &Path) -> Result<PathBuf> {
    // A folder that is not a run is named as such first.
    let view = view::RunView::load(dir)?;
    // The charts folder is replaced whole: only in a folder `run` wrote, holding nothing else.
    crate::atomic::replaceable(dir).map_err(|message| {
        Error::invalid(
            Problem::new(dir.display().to_string(), message)
                .fix("pass a folder `canary-replay run` wrote, holding only the files it wrote"),
        )
    })?;
    crate::atomic::sweep_stale(dir, |_| true);
    let page = render(view, dir)?;
    crate::atomic::write_marker(dir, "run")?;
    Ok(page)
}

/// Renders the report of the run folder `dir`, which will be found at `shown_as` (a run is
/// assembled under a temporary name).
fn render_report(dir: &Path, shown_as: &Path) -> Result<PathBuf> {
    let mut view = view::RunView::load(dir)?;
    view.dir = shown_as.to_path_buf();
    render(view, dir)
}

/// Writes the charts and the page of `view` into `dir`.
fn render(view: view::RunView, dir: &Path) -> Result<PathBuf> {
    let charts = charts::all(&view)?;
    let html = page::render(&view, &charts);
    let folder = Folder::create(&dir.join("charts"))?;
    for chart in &charts {
        folder.write(&Bytes(&chart.file, &chart.png))?;
    }
    folder.commit_inner()?;
    let page = dir.join("report.html");
    crate::atomic::write(&page, html.as_bytes())?;
    Ok(page)
}

/// Copies the cache parts into one Parquet file, batch by batch ([`ScoresWriter`]). Returns the
/// rows written.
fn concatenate(
    parts: &[PathBuf],
    dest: &Path,
    layout: &crate::ingest::Layout,
    types: &[(String, arrow::datatypes::DataType)],
    plan: &ScoresInfo,
) -> Result<u64> {
    let mut writer = ScoresWriter::new(dest, layout, types, plan);
    for part in parts {
        let handle = File::open(part).map_err(|e| Error::io(part, e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(handle)
            .and_then(|b| b.with_batch_size(65_536).build())
            .map_err(|e| Error::Internal(format!("reading {}: {e}", part.display())))?;
        for batch in reader {
            writer.add(&batch.map_err(|e| Error::Internal(format!("reading {}: {e}", part.display())))?)?;
        }
    }
    Ok(writer.finish()?.0)
}

/// `scores.parquet` written batch by batch from score-cache batches: the requests the plan keeps
/// (every one, a sample by the hash of the id, or none), with the columns of `types` cast back to
/// the log's types. From the parts after scoring ([`Scores`]), or from each batch as it is scored
/// (`score::Tee`) when the run scores every part itself.
pub struct ScoresWriter<'a> {
    dest: PathBuf,
    layout: &'a crate::ingest::Layout,
    types: &'a [(String, arrow::datatypes::DataType)],
    plan: &'a ScoresInfo,
    /// Opened with the first batch.
    writer: Option<ArrowWriter<File>>,
    rows: u64,
    /// Time spent in [`ScoresWriter::add`].
    seconds: f64,
}

impl<'a> ScoresWriter<'a> {
    pub fn new(
        dest: &Path,
        layout: &'a crate::ingest::Layout,
        types: &'a [(String, arrow::datatypes::DataType)],
        plan: &'a ScoresInfo,
    ) -> Self {
        Self { dest: dest.to_path_buf(), layout, types, plan, writer: None, rows: 0, seconds: 0.0 }
    }

    pub fn add(&mut self, batch: &arrow::array::RecordBatch) -> Result<()> {
        let started = std::time::Instant::now();
        let added = self.write(batch);
        self.seconds += started.elapsed().as_secs_f64();
        added
    }

    fn write(&mut self, batch: &arrow::array::RecordBatch) -> Result<()> {
        if self.plan.mode == ScoresFile::None {
            return Ok(());
        }
        let batch = if self.plan.fraction < 1.0 { sampled(batch, &self.layout.id, self.plan)? } else { batch.clone() };
        self.rows += batch.num_rows() as u64;
        let dest = &self.dest;
        let io = |e: parquet::errors::ParquetError| Error::Internal(format!("writing {}: {e}", dest.display()));
        let batch = restore_types(batch, self.types).map_err(|e| Error::Internal(format!("writing {}: {e}", dest.display())))?;
        let writer = match &mut self.writer {
            Some(writer) => writer,
            None => {
                let file = File::create(dest).map_err(|e| Error::io(dest, e))?;
                let properties = crate::score::dictionaries_where_values_repeat(WriterProperties::builder(), self.layout)
                    .set_compression(Compression::ZSTD(ZstdLevel::default()))
                    .set_max_row_group_row_count(Some(crate::score::ROW_GROUP_ROWS))
                    .build();
                self.writer.insert(ArrowWriter::try_new(file, batch.schema(), Some(properties)).map_err(io)?)
            }
        };
        writer.write(&batch).map_err(io)
    }

    /// Closes the file: the requests written, and the seconds it took to write them.
    pub fn finish(self) -> Result<(u64, f64)> {
        let started = std::time::Instant::now();
        if let Some(w) = self.writer {
            w.close().map_err(|e| Error::Internal(format!("writing {}: {e}", self.dest.display())))?;
        }
        Ok((self.rows, self.seconds + started.elapsed().as_secs_f64()))
    }
}

/// The rows of a cache part's batch whose request `plan` keeps (ids are text in the cache).
fn sampled(batch: &arrow::array::RecordBatch, id: &str, plan: &ScoresInfo) -> Result<arrow::array::RecordBatch> {
    use arrow::array::{Array, AsArray};
    let ids = batch.column_by_name(id).ok_or_else(|| Error::Internal(format!("the score cache has no column {id}")))?.as_string::<i32>();
    let keep: arrow::array::BooleanArray = (0..ids.len()).map(|i| Some(ids.is_valid(i) && plan.keeps(ids.value(i)))).collect();
    arrow::compute::filter_record_batch(batch, &keep).map_err(|e| Error::failed("sampling scores.parquet", e))
}

/// `batch` with each column named in `types` cast to that type.
fn restore_types(
    batch: arrow::array::RecordBatch,
    types: &[(String, arrow::datatypes::DataType)],
) -> std::result::Result<arrow::array::RecordBatch, arrow::error::ArrowError> {
    use arrow::datatypes::{Field, Schema};
    let schema = batch.schema();
    let mut fields: Vec<Field> = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        match types.iter().find(|(name, _)| name == field.name()).filter(|(_, ty)| ty != field.data_type()) {
            Some((_, ty)) => {
                columns.push(arrow::compute::cast(column, ty)?);
                fields.push(field.as_ref().clone().with_data_type(ty.clone()));
            }
            None => {
                columns.push(column.clone());
                fields.push(field.as_ref().clone());
            }
        }
    }
    arrow::array::RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields).with_metadata(schema.metadata().clone())), columns)
}

/// The process's peak resident set size, from /proc (Linux only).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
