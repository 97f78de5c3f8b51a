//! Scoring: both models on every replayed request, into the score cache.
//!
//! A streaming pipeline with bounded queues, so memory stays flat however long the log: a reader
//! thread decodes traffic batches; worker threads, each owning one session per model
//! (`Session::run` needs `&mut`), take the next batch as soon as they are free, score it and
//! build its output; the calling thread restores batch order and writes the cache part. (Work
//! arrives as an ordered stream, so dedicated workers fit better than rayon's work stealing, which
//! the policy sweeps use.) Sessions get `cores / workers` intra-op threads so the cores are used
//! once, not oversubscribed. Both models share one input matrix when they read the same features.
//! A batch that fails is split in halves until the failing rows are isolated; those rows (and rows
//! with NaN or infinite scores) are recorded as errors rather than stopping the run. Latency is
//! measured on a deterministic sample of requests (see [`latency`]). Results are written in
//! order, one part per traffic file (see [`cache`]).

pub mod cache;
pub mod latency;
pub mod model;
pub mod probe;
mod signature;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use ort::session::Session;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde::Serialize;

use self::cache::{part_schema, CacheDir, PartInfo, CANDIDATE_ERROR, METADATA_KEY, STABLE_ERROR};
use self::model::Model;
use crate::atomic::Pending;
use crate::error::{Error, Result};
use crate::ingest::{Batches, Group, Layout, Rules, Survey, TrafficBatch, TrafficFile};
use crate::runtime::Runtime;
use crate::scenario::{Role, Scenario};

pub use crate::hash::hash_file;
pub use model::feature_union;

/// Rows per row group of `scores.parquet`: small enough that the writer's buffer stays small,
/// large enough for efficient reads.
pub const ROW_GROUP_ROWS: usize = 65_536;

/// Rows per row group of score-cache parts: a part's footer holds about 0.4 KB for every column
/// chunk, and every reader of the part holds it while it reads — with row groups of 65,536 rows,
/// 11 MiB at 112M requests, the one term of the replay's memory left growing with them. Scoring's
/// own peak did not grow with the writer's larger row group (before the simulation at 1,000×:
/// 123 → 117 MiB).
pub const CACHE_ROW_GROUP_ROWS: usize = 4 * ROW_GROUP_ROWS;

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
    /// Wall time of the whole call.
    pub seconds: f64,
    /// Hashing inputs and loading every worker's sessions.
    pub setup_seconds: f64,
    /// Streaming the rows through the workers into the cache (the throughput figure).
    pub streaming_seconds: f64,
    /// Whether the [`Tee`] was given every part's batches (every part was scored now).
    pub teed: bool,
}

/// Where a scoring run's batches go besides the cache, in the cache's order: a run's
/// `scores.parquet` is written while the rows are at hand instead of read back afterwards. It is
/// used only when every part is scored now (none reused), so it sees every request.
pub type Tee<'t> = &'t mut dyn FnMut(&arrow::array::RecordBatch) -> Result<()>;

/// One worker's sessions, and its latency sampler (each worker warms up its own sessions).
struct Worker {
    sessions: [Session; 2],
    sampler: latency::Sampler,
}

/// Scores every traffic file whose part is not cached, and returns all parts; the batches also
/// go to `tee` when every part is scored now.
#[allow(clippy::too_many_arguments)]
pub fn score(
    runtime: &Runtime,
    scenario: &Scenario,
    files: &[TrafficFile],
    survey: &Survey,
    layout: &Layout,
    models: [&Model; 2],
    settings: &Settings,
    tee: Option<Tee>,
) -> Result<Scored> {
    score_groups(runtime, scenario, files, &survey.groups, &survey.rules, layout, models, settings, tee)
}

/// [`score`] for some groups of files, cleaned by `rules` (a shard of a sharded run), the batches
/// also given to `tee` when every part is scored now.
#[allow(clippy::too_many_arguments)]
pub fn score_groups(
    runtime: &Runtime,
    scenario: &Scenario,
    files: &[TrafficFile],
    groups: &[Group],
    rules: &Rules,
    layout: &Layout,
    models: [&Model; 2],
    settings: &Settings,
    tee: Option<Tee>,
) -> Result<Scored> {
    let started = Instant::now();
    let folder = &settings.cache.folder;
    std::fs::create_dir_all(folder).map_err(|e| Error::io(folder, e))?;
    // Parts an interrupted run was writing: whole parts are never left under a temporary name.
    crate::atomic::sweep_stale(folder, |inner| inner.ends_with(".parquet"));
    let mut plan = Vec::new();
    for group in groups {
        let group_files: Vec<&TrafficFile> = group.files.iter().map(|&i| &files[i]).collect();
        let info = PartInfo::of_files(scenario, layout, &group_files, rules, models, &runtime.version)?;
        let key = info.key();
        let path = settings.cache.part(&key);
        let cached = settings.reuse && settings.cache.find(&key)?;
        plan.push((group_files, group.rows, info, path, cached));
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
        setup_seconds: 0.0,
        streaming_seconds: 0.0,
        teed: false,
    };
    let mut tee = tee.filter(|_| plan.iter().all(|p| !p.4));
    scored.teed = tee.is_some();
    if to_score > 0 {
        // Sessions load in parallel, one worker's pair per thread.
        let mut workers = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..settings.workers)
                .map(|_| {
                    scope.spawn(|| -> Result<Worker> {
                        Ok(Worker {
                            sessions: [
                                models[0].session(runtime, settings.intra_threads)?,
                                models[1].session(runtime, settings.intra_threads)?,
                            ],
                            sampler: latency::Sampler::new(&scenario.scoring),
                        })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("session thread")).collect::<Result<Vec<_>>>()
        })?;
        scored.setup_seconds = started.elapsed().as_secs_f64();
        let progress = crate::progress::bar(to_score, "scoring", "rows", settings.quiet);
        let missing = Missing::of(scenario, layout, models);
        for (group_files, _, info, path, cached) in &plan {
            if *cached {
                continue;
            }
            let job = Job { scenario, layout, models, missing: &missing, rules };
            job.score_group(&mut workers, group_files, info, path, &progress, [&mut scored.stable, &mut scored.candidate], &mut tee)?;
            settings.cache.publish(&info.key())?;
            scored.parts_scored += 1;
        }
        progress.finish_and_clear();
    }
    scored.seconds = started.elapsed().as_secs_f64();
    scored.streaming_seconds = scored.seconds - scored.setup_seconds;
    Ok(scored)
}

/// Dictionaries only where values repeat (entity, segments, errors): ids, scores, features and
/// latencies are nearly all distinct, and dictionary-encoding them costs more than it saves (for
/// the score cache and `scores.parquet` alike).
pub fn dictionaries_where_values_repeat(
    properties: parquet::file::properties::WriterPropertiesBuilder,
    layout: &Layout,
) -> parquet::file::properties::WriterPropertiesBuilder {
    let repeating = std::iter::once(layout.entity.as_str()).chain(layout.segments.iter().map(String::as_str));
    repeating
        .chain([STABLE_ERROR, CANDIDATE_ERROR])
        .fold(properties.set_dictionary_enabled(false), |p, column| p.set_column_dictionary_enabled(ColumnPath::from(column), true))
}

/// One model's results for one batch.
struct Column {
    scores: Vec<Option<f64>>,
    errors: Vec<Option<String>>,
    latency: Vec<Option<f64>>,
    /// Scores without a `feature_missing` fault's feature, where it applies.
    missing: Vec<Option<f64>>,
    non_finite: u64,
    run_failed: u64,
    first_failure: Option<String>,
}

impl Column {
    fn new(n: usize) -> Self {
        Self {
            scores: vec![None; n],
            errors: vec![None; n],
            latency: vec![None; n],
            missing: vec![None; n],
            non_finite: 0,
            run_failed: 0,
            first_failure: None,
        }
    }
}

/// A scored batch on its way to the writer: its place in the file, the rows, and the tallies.
struct Done {
    record: RecordBatch,
    rows: u64,
    tallies: [ModelTally; 2],
}

struct Job<'a> {
    scenario: &'a Scenario,
    layout: &'a Layout,
    models: [&'a Model; 2],
    missing: &'a [Option<Missing>; 2],
    rules: &'a crate::ingest::Rules,
}

/// A `feature_missing` fault as scoring applies it: the model's feature sent as NaN on the
/// requests in the fault's window (and segment).
#[derive(Debug, Clone)]
pub struct Missing {
    /// Position of the feature in the model's features.
    feature: usize,
    start: Option<i64>,
    end: Option<i64>,
    /// (index in the layout's segments, value).
    segment: Option<(usize, String)>,
}

impl Missing {
    /// Per model, the scenario's `feature_missing` fault (validated: at most one per model, on a
    /// feature the model reads).
    pub fn of(scenario: &Scenario, layout: &Layout, models: [&Model; 2]) -> [Option<Missing>; 2] {
        let mut out = [None, None];
        for fault in &scenario.faults {
            if let crate::scenario::Effect::FeatureMissing { feature } = &fault.effect {
                let m = index(fault.model);
                if let Some(position) = models[m].features.iter().position(|f| f == feature) {
                    out[m] = Some(Missing {
                        feature: position,
                        start: fault.start,
                        end: fault.end,
                        segment: fault
                            .segment
                            .as_ref()
                            .and_then(|(c, v)| layout.segments.iter().position(|s| s == c).map(|i| (i, v.clone()))),
                    });
                }
            }
        }
        out
    }

    fn applies(&self, batch: &TrafficBatch, row: usize) -> bool {
        let t = batch.time[row];
        let in_time = self.start.is_none_or(|s| t >= s) && self.end.is_none_or(|e| t < e);
        let in_segment = self.segment.as_ref().is_none_or(|(i, v)| {
            let values = batch.segments[*i].as_string::<i32>();
            values.is_valid(row) && values.value(row) == v
        });
        in_time && in_segment
    }
}

impl Job<'_> {
    /// Streams a group of traffic files (merged by time) through the workers into a cache part. A reader thread decodes
    /// batches into a bounded queue; each worker takes the next batch, scores it, measures its
    /// latency sample and builds the output batch; this thread restores the order and writes.
    /// On any error every thread is told to stop and the queues are drained so all of them end.
    #[allow(clippy::too_many_arguments)]
    fn score_group(
        &self,
        workers: &mut [Worker],
        group: &[&TrafficFile],
        info: &PartInfo,
        path: &PathBuf,
        progress: &indicatif::ProgressBar,
        tallies: [&mut ModelTally; 2],
        tee: &mut Option<Tee>,
    ) -> Result<()> {
        let pending = Pending::new(path);
        let handle = File::create(pending.path()).map_err(|e| Error::io(path, e))?;
        let metadata = serde_json::to_string(info).expect("part info serializes");
        let properties = dictionaries_where_values_repeat(WriterProperties::builder(), self.layout)
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(CACHE_ROW_GROUP_ROWS))
            // Statistics per column chunk (the scan reads their null counts), no page index: its
            // entries for every page of every row group wait in the writer until the part is
            // closed — memory that grows with the part's rows — and no reader of the cache uses it.
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_offset_index_disabled(true)
            .set_key_value_metadata(Some(vec![KeyValue::new(METADATA_KEY.to_string(), metadata)]))
            .build();
        let schema = part_schema(self.layout);
        let mut writer =
            ArrowWriter::try_new(handle, schema.clone(), Some(properties)).map_err(|e| Error::failed("starting a score-cache part", e))?;
        let batch_rows = self.scenario.scoring.batch_rows;
        let (traffic, layout, models, missing, rules) = (&self.scenario.traffic, self.layout, self.models, self.missing, self.rules);
        let stop = AtomicBool::new(false);
        // Batches written so far: the reader stays at most `window` batches ahead of the writer,
        // which bounds the reorder buffer even when one batch is slow (e.g. isolating failures).
        let written = AtomicUsize::new(0);
        let window = workers.len() * 4;
        let [stable_tally, candidate_tally] = tallies;
        let (batch_tx, batch_rx) = sync_channel::<(usize, Result<TrafficBatch>)>(workers.len() * 2);
        let (done_tx, done_rx) = sync_channel::<(usize, Result<Done>)>(workers.len() * 2);
        let batch_rx = Mutex::new(batch_rx);
        std::thread::scope(|scope| -> Result<()> {
            let (stop, written) = (&stop, &written);
            scope.spawn(move || {
                for (seq, batch) in Batches::new(group.iter().copied(), traffic, layout, rules, batch_rows).enumerate() {
                    while seq >= written.load(Ordering::Acquire) + window && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    if stop.load(Ordering::Relaxed) || batch_tx.send((seq, batch)).is_err() {
                        break;
                    }
                }
            });
            for (w, worker) in workers.iter_mut().enumerate() {
                let (batch_rx, done_tx, schema) = (&batch_rx, done_tx.clone(), schema.clone());
                std::thread::Builder::new()
                    .name(format!("score-{w}"))
                    .spawn_scoped(scope, move || loop {
                        let next = batch_rx.lock().expect("queue lock").recv();
                        let Ok((seq, batch)) = next else { break };
                        if stop.load(Ordering::Relaxed) {
                            continue;
                        }
                        let done = batch.and_then(|batch| {
                            let columns = score_batch(worker, models, layout, missing, &batch);
                            let tallies = [tally(&columns[0], batch.len()), tally(&columns[1], batch.len())];
                            let record = record_batch(&schema, layout, &batch, columns)?;
                            Ok(Done { record, rows: batch.len() as u64, tallies })
                        });
                        if done_tx.send((seq, done)).is_err() {
                            stop.store(true, Ordering::Relaxed);
                        }
                    })
                    .map_err(|e| Error::Internal(format!("cannot start a scoring thread: {e}")))?;
            }
            drop(done_tx);
            let mut waiting: BTreeMap<usize, Done> = BTreeMap::new();
            let mut next = 0;
            let mut failure = None;
            for (seq, done) in done_rx.iter() {
                if failure.is_some() {
                    continue;
                }
                match done {
                    Err(e) => {
                        stop.store(true, Ordering::Relaxed);
                        failure = Some(e);
                        continue;
                    }
                    Ok(done) => waiting.insert(seq, done),
                };
                while let Some(done) = waiting.remove(&next) {
                    for (total, part) in [&mut *stable_tally, &mut *candidate_tally].into_iter().zip(&done.tallies) {
                        total.add(part);
                    }
                    let wrote = writer
                        .write(&done.record)
                        .map_err(|e| Error::Internal(format!("writing the score cache: {e}")))
                        .and_then(|()| tee.as_mut().map_or(Ok(()), |tee| tee(&done.record)));
                    if let Err(e) = wrote {
                        stop.store(true, Ordering::Relaxed);
                        failure = Some(e);
                        break;
                    }
                    progress.inc(done.rows);
                    next += 1;
                    written.store(next, Ordering::Release);
                }
            }
            failure.map_or(Ok(()), Err)
        })?;
        writer.close().map_err(|e| Error::Internal(format!("writing the score cache: {e}")))?;
        pending.commit()?;
        Ok(())
    }
}

impl ModelTally {
    fn add(&mut self, other: &ModelTally) {
        self.rows += other.rows;
        self.non_finite += other.non_finite;
        self.run_failed += other.run_failed;
        self.latency_samples += other.latency_samples;
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure.clone();
        }
    }
}

fn tally(column: &Column, rows: usize) -> ModelTally {
    ModelTally {
        rows: rows as u64,
        non_finite: column.non_finite,
        run_failed: column.run_failed,
        first_failure: column.first_failure.clone(),
        latency_samples: column.latency.iter().filter(|l| l.is_some()).count() as u64,
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

/// Scores a batch with both models (a failing batch is split until the failing rows are found),
/// scores the rows under a `feature_missing` fault again without the feature, then measures the
/// latency of the batch's sampled requests.
fn score_batch(
    worker: &mut Worker,
    models: [&Model; 2],
    layout: &Layout,
    missing: &[Option<Missing>; 2],
    batch: &TrafficBatch,
) -> [Column; 2] {
    let n = batch.len();
    let mut out = [Column::new(n), Column::new(n)];
    let columns = models.map(|m| model_columns(m, layout, batch));
    let first = models[0].input(&columns[0], 0..n);
    // Models fed the same features the same way share one input (the common case).
    let second = (!models[1].same_input(models[0])).then(|| models[1].input(&columns[1], 0..n));
    for (i, model) in models.iter().enumerate() {
        let input = if i == 0 { &first } else { second.as_ref().unwrap_or(&first) };
        match model.run(&mut worker.sessions[i], input, n) {
            Ok(scores) => record_scores(0..n, scores, &mut out[i]),
            Err(_) => predict_isolated(model, &mut worker.sessions[i], &columns[i], 0..n, &mut out[i]),
        }
    }
    for (m, fault) in missing.iter().enumerate() {
        let Some(fault) = fault else { continue };
        let applies: Vec<bool> = (0..n).map(|r| fault.applies(batch, r)).collect();
        if !applies.contains(&true) {
            continue;
        }
        let nan = vec![f64::NAN; n];
        let mut faulted = columns[m].clone();
        faulted[fault.feature] = &nan;
        let mut column = Column::new(n);
        predict_isolated(models[m], &mut worker.sessions[m], &faulted, 0..n, &mut column);
        out[m].missing = column.scores.into_iter().zip(applies).map(|(s, a)| if a { s } else { None }).collect();
    }
    let [stable, candidate] = &mut out;
    worker.sampler.measure(&mut worker.sessions, models, layout, batch, [&mut stable.latency, &mut candidate.latency]);
    out
}

/// Scores `rows`; on failure splits them in halves until the failing rows are found.
fn predict_isolated(model: &Model, session: &mut Session, columns: &[&[f64]], rows: std::ops::Range<usize>, out: &mut Column) {
    match model.predict(session, columns, rows.clone()) {
        Ok(scores) => record_scores(rows, scores, out),
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

fn record_scores(rows: std::ops::Range<usize>, scores: Vec<f64>, out: &mut Column) {
    for (r, s) in rows.zip(scores) {
        if s.is_finite() {
            out.scores[r] = Some(s);
        } else {
            out.errors[r] = Some(NON_FINITE.to_string());
            out.non_finite += 1;
        }
    }
}

fn record_batch(schema: &arrow::datatypes::SchemaRef, layout: &Layout, batch: &TrafficBatch, columns: [Column; 2]) -> Result<RecordBatch> {
    let time: ArrayRef = Arc::new(TimestampMicrosecondArray::from(batch.time.clone()).with_timezone("UTC"));
    let mut arrays: Vec<ArrayRef> = vec![batch.id.clone(), time];
    if layout.entity != layout.id {
        arrays.push(batch.entity.clone());
    }
    arrays.extend(layout.segments.iter().zip(&batch.segments).filter(|(s, _)| layout.stores_segment(s)).map(|(_, a)| a.clone()));
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
    arrays.push(Arc::new(Float64Array::from(stable.missing)));
    arrays.push(Arc::new(Float64Array::from(candidate.missing)));
    RecordBatch::try_new(schema.clone(), arrays).map_err(|e| Error::Internal(format!("building a score batch: {e}")))
}

/// Model index for a role.
pub fn index(role: Role) -> usize {
    match role {
        Role::Stable => 0,
        Role::Candidate => 1,
    }
}
