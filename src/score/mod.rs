//! Scoring: both models on every replayed request, into the score cache.
//!
//! A reader thread streams traffic batches through a bounded channel; the scoring thread takes one
//! batch per worker at a time and scores them in parallel on a rayon pool whose workers each own a
//! session per model (`Session::run` needs `&mut`). Sessions get `cores / workers` intra-op threads
//! so the cores are used once, not oversubscribed. A batch that fails is split in halves until the
//! failing rows are isolated; those rows (and rows with NaN or infinite scores) are recorded as
//! errors rather than stopping the run. Latency is measured on a deterministic sample of requests
//! (see [`latency`]). Results are written in order, one part per traffic file (see [`cache`]).

pub mod cache;
pub mod latency;
pub mod model;

use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use ort::session::Session;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use rayon::prelude::*;
use serde::Serialize;

use self::cache::{part_schema, CacheDir, PartInfo, METADATA_KEY};
use self::model::Model;
use crate::atomic::Pending;
use crate::error::{Error, Result};
use crate::ingest::{Batches, Layout, Survey, TrafficBatch, TrafficFile};
use crate::runtime::Runtime;
use crate::scenario::{Role, Scenario};

pub use model::{feature_union, hash_file};

/// Row error codes stored in the `*_error` columns (`run_failed: <message>` for failures).
pub const NON_FINITE: &str = "non_finite";
pub const RUN_FAILED: &str = "run_failed";

/// How to score.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Workers; each owns one session per model.
    pub workers: usize,
    /// Intra-op threads per session.
    pub intra_threads: usize,
    pub cache: CacheDir,
    /// Reuse complete parts from the cache.
    pub reuse: bool,
    pub quiet: bool,
}

impl Settings {
    /// Workers from the scenario (0 = one per core), with the cores shared out among them.
    pub fn new(scenario: &Scenario, cache: CacheDir, reuse: bool, quiet: bool) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = if scenario.scoring.threads == 0 { cores } else { scenario.scoring.threads };
        Self { workers, intra_threads: (cores / workers).max(1), cache, reuse, quiet }
    }
}

/// Per-model tallies of a scoring pass.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ModelTally {
    pub rows: u64,
    pub non_finite: u64,
    pub run_failed: u64,
    /// The first inference failure's message, to show the user.
    pub first_failure: Option<String>,
    pub latency_samples: u64,
}

/// What scoring produced.
#[derive(Debug, Clone)]
pub struct Scored {
    /// The cache parts, in time order.
    pub parts: Vec<PathBuf>,
    pub rows: u64,
    pub parts_reused: usize,
    pub parts_scored: usize,
    /// Tallies of rows scored now (empty when everything was reused).
    pub stable: ModelTally,
    pub candidate: ModelTally,
    pub seconds: f64,
}

/// One worker's sessions.
struct Worker {
    sessions: [Session; 2],
}

/// Scores every traffic file whose part is not cached, and returns all parts.
#[allow(clippy::too_many_arguments)]
pub fn score(
    runtime: &Runtime,
    scenario: &Scenario,
    files: &[TrafficFile],
    survey: &Survey,
    layout: &Layout,
    models: [&Model; 2],
    settings: &Settings,
) -> Result<Scored> {
    let started = Instant::now();
    std::fs::create_dir_all(&settings.cache.0).map_err(|e| Error::io(&settings.cache.0, e))?;
    let mut plan = Vec::new();
    for (file, surveyed) in files.iter().zip(&survey.files) {
        if surveyed.rows_in_window == 0 {
            continue;
        }
        let info = PartInfo::new(scenario, layout, &file.path, hash_file(&file.path)?, models, &runtime.version);
        let path = settings.cache.part(&info.key());
        let cached = settings.reuse && path.is_file();
        plan.push((file, surveyed.rows_in_window, info, path, cached));
    }
    let to_score: u64 = plan.iter().filter(|p| !p.4).map(|p| p.1).sum();
    let mut scored = Scored {
        parts: plan.iter().map(|p| p.3.clone()).collect(),
        rows: plan.iter().map(|p| p.1).sum(),
        parts_reused: plan.iter().filter(|p| p.4).count(),
        parts_scored: 0,
        stable: ModelTally::default(),
        candidate: ModelTally::default(),
        seconds: 0.0,
    };
    if to_score > 0 {
        let workers = (0..settings.workers)
            .map(|_| {
                Ok(Mutex::new(Worker {
                    sessions: [models[0].session(runtime, settings.intra_threads)?, models[1].session(runtime, settings.intra_threads)?],
                }))
            })
            .collect::<Result<Vec<_>>>()?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(settings.workers)
            .thread_name(|i| format!("score-{i}"))
            .build()
            .map_err(|e| Error::Internal(format!("cannot start scoring threads: {e}")))?;
        let progress = crate::progress::bar(to_score, "scoring", "rows", settings.quiet);
        let mut sampler = latency::Sampler::new(&scenario.scoring);
        for (file, _, info, path, cached) in &plan {
            if *cached {
                continue;
            }
            let mut job = Job { scenario, layout, models, workers: &workers, pool: &pool, sampler: &mut sampler, tallies: [&mut scored.stable, &mut scored.candidate] };
            job.score_file(file, info, path, settings, &progress)?;
            scored.parts_scored += 1;
        }
        progress.finish_and_clear();
    }
    scored.seconds = started.elapsed().as_secs_f64();
    Ok(scored)
}

/// One model's results for one batch.
struct Column {
    scores: Vec<Option<f64>>,
    errors: Vec<Option<String>>,
    latency: Vec<Option<f64>>,
    non_finite: u64,
    run_failed: u64,
    first_failure: Option<String>,
}

impl Column {
    fn new(n: usize) -> Self {
        Self { scores: vec![None; n], errors: vec![None; n], latency: vec![None; n], non_finite: 0, run_failed: 0, first_failure: None }
    }
}

struct Job<'a> {
    scenario: &'a Scenario,
    layout: &'a Layout,
    models: [&'a Model; 2],
    workers: &'a [Mutex<Worker>],
    pool: &'a rayon::ThreadPool,
    sampler: &'a mut latency::Sampler,
    tallies: [&'a mut ModelTally; 2],
}

impl Job<'_> {
    fn score_file(&mut self, file: &TrafficFile, info: &PartInfo, path: &PathBuf, settings: &Settings, progress: &indicatif::ProgressBar) -> Result<()> {
        let pending = Pending::new(path);
        let handle = File::create(pending.path()).map_err(|e| Error::io(path, e))?;
        let metadata = serde_json::to_string(info).expect("part info serializes");
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_key_value_metadata(Some(vec![KeyValue::new(METADATA_KEY.to_string(), metadata)]))
            .build();
        let schema = part_schema(self.layout);
        let mut writer = ArrowWriter::try_new(handle, schema.clone(), Some(properties)).map_err(|e| Error::Internal(e.to_string()))?;
        let files = std::slice::from_ref(file);
        let batch_rows = self.scenario.scoring.batch_rows;
        let (traffic, layout) = (&self.scenario.traffic, self.layout);
        std::thread::scope(|scope| -> Result<()> {
            let (tx, rx) = sync_channel::<Result<TrafficBatch>>(settings.workers * 2);
            scope.spawn(move || {
                for batch in Batches::new(files, traffic, layout, batch_rows) {
                    if tx.send(batch).is_err() {
                        break;
                    }
                }
            });
            let mut chunk = Vec::with_capacity(settings.workers);
            let mut done = false;
            while !done {
                chunk.clear();
                while chunk.len() < settings.workers {
                    match rx.recv() {
                        Ok(batch) => chunk.push(batch?),
                        Err(_) => {
                            done = true;
                            break;
                        }
                    }
                }
                if chunk.is_empty() {
                    break;
                }
                let models = self.models;
                let workers = self.workers;
                let mut results: Vec<[Column; 2]> = self.pool.install(|| {
                    chunk
                        .par_iter()
                        .map(|batch| {
                            let index = rayon::current_thread_index().unwrap_or(0);
                            let mut worker = workers[index].lock().expect("worker lock");
                            score_batch(&mut worker, models, layout, batch)
                        })
                        .collect()
                });
                {
                    let mut worker = self.workers[0].lock().expect("worker lock");
                    for (batch, columns) in chunk.iter().zip(results.iter_mut()) {
                        let [stable, candidate] = columns;
                        self.sampler.measure(&mut worker.sessions, self.models, layout, batch, [&mut stable.latency, &mut candidate.latency]);
                    }
                }
                for (batch, columns) in chunk.iter().zip(results) {
                    let rows = batch.len() as u64;
                    for (tally, column) in self.tallies.iter_mut().zip(&columns) {
                        tally.rows += rows;
                        tally.non_finite += column.non_finite;
                        tally.run_failed += column.run_failed;
                        tally.latency_samples += column.latency.iter().filter(|l| l.is_some()).count() as u64;
                        if tally.first_failure.is_none() {
                            tally.first_failure = column.first_failure.clone();
                        }
                    }
                    let record = record_batch(&schema, layout, batch, columns)?;
                    writer.write(&record).map_err(|e| Error::Internal(format!("writing the score cache: {e}")))?;
                    progress.inc(rows);
                }
            }
            Ok(())
        })?;
        writer.close().map_err(|e| Error::Internal(format!("writing the score cache: {e}")))?;
        pending.commit()?;
        Ok(())
    }
}

/// The feature columns of `model`, taken from the batch.
fn model_columns<'b>(model: &Model, layout: &Layout, batch: &'b TrafficBatch) -> Vec<&'b [f64]> {
    model
        .features
        .iter()
        .map(|f| batch.features[layout.features.iter().position(|l| l == f).expect("layout holds every model feature")].as_slice())
        .collect()
}

fn score_batch(worker: &mut Worker, models: [&Model; 2], layout: &Layout, batch: &TrafficBatch) -> [Column; 2] {
    let n = batch.len();
    let mut out = [Column::new(n), Column::new(n)];
    for (i, model) in models.iter().enumerate() {
        let columns = model_columns(model, layout, batch);
        predict_isolated(model, &mut worker.sessions[i], &columns, 0..n, &mut out[i]);
    }
    out
}

/// Scores `rows`; on failure splits them in halves until the failing rows are found.
fn predict_isolated(model: &Model, session: &mut Session, columns: &[&[f64]], rows: std::ops::Range<usize>, out: &mut Column) {
    match model.predict(session, columns, rows.clone()) {
        Ok(scores) => {
            for (r, s) in rows.zip(scores) {
                if s.is_finite() {
                    out.scores[r] = Some(s);
                } else {
                    out.errors[r] = Some(NON_FINITE.to_string());
                    out.non_finite += 1;
                }
            }
        }
        Err(message) if rows.len() == 1 => {
            out.errors[rows.start] = Some(format!("{RUN_FAILED}: {message}"));
            out.run_failed += 1;
            if out.first_failure.is_none() {
                out.first_failure = Some(message);
            }
        }
        Err(_) => {
            let mid = rows.start + rows.len() / 2;
            predict_isolated(model, session, columns, rows.start..mid, out);
            predict_isolated(model, session, columns, mid..rows.end, out);
        }
    }
}

fn record_batch(schema: &arrow::datatypes::SchemaRef, layout: &Layout, batch: &TrafficBatch, columns: [Column; 2]) -> Result<RecordBatch> {
    let time: ArrayRef = Arc::new(TimestampMicrosecondArray::from(batch.time.clone()).with_timezone("UTC"));
    let mut arrays: Vec<ArrayRef> = vec![batch.id.clone(), time];
    if layout.entity != layout.id {
        arrays.push(batch.entity.clone());
    }
    arrays.extend(batch.segments.iter().cloned());
    if let (Some(label), Some(label_time)) = (&batch.label, &batch.label_time) {
        arrays.push(Arc::new(label.clone()));
        arrays.push(Arc::new(TimestampMicrosecondArray::from(label_time.clone()).with_timezone("UTC")));
    }
    let [stable, candidate] = columns;
    arrays.push(Arc::new(Float64Array::from(stable.scores)));
    arrays.push(Arc::new(Float64Array::from(candidate.scores)));
    arrays.push(Arc::new(StringArray::from(stable.errors)));
    arrays.push(Arc::new(StringArray::from(candidate.errors)));
    arrays.push(Arc::new(Float64Array::from(stable.latency)));
    arrays.push(Arc::new(Float64Array::from(candidate.latency)));
    RecordBatch::try_new(schema.clone(), arrays).map_err(|e| Error::Internal(format!("building a score batch: {e}")))
}

/// Model index for a role.
pub fn index(role: Role) -> usize {
    match role {
        Role::Stable => 0,
        Role::Candidate => 1,
    }
}
