//! The `run` and `check` commands as library calls: scenario → ingest → score → oracle → report.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::controller::{self, probe::Probe, spec::Spec as ControllerSpec};
use crate::error::{Error, Problem, Result};
use crate::ingest::{self, Layout, Survey, TrafficFile};
use crate::memory::release_free_memory;
use crate::oracle;
use crate::report::{self, Summary, Timings};
use crate::runtime::{self, Runtime, RuntimeOptions};
use crate::scenario::{self, Scenario};
use crate::score::{self, cache::CacheDir, model::Model, probe::FirstRows, Scored};
use crate::simulate::grade::{self, Exposure, Grade};
use crate::simulate::ranged::{Ranged, RangedSource};
use crate::simulate::reference::Reference;
use crate::simulate::replay::{Replay, Row};
use crate::simulate::{Run, Setup, Source};
use crate::time::{format_timestamp, Micros};

/// Options of `run` beyond the scenario.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Output folder; default `reports/<scenario name>/`.
    pub out: Option<PathBuf>,
    pub runtime: RuntimeOptions,
    /// Score cache folder; default `<tool cache>/scores`.
    pub cache_dir: Option<PathBuf>,
    /// Score again even when the cache holds the parts.
    pub rescore: bool,
    /// No progress bars.
    pub quiet: bool,
    /// Simulate with the row-by-row reference instead of the fast path.
    pub reference: bool,
    /// The command line, for the report's provenance.
    pub command: Vec<String>,
    /// Controller files to emulate besides those of the scenario's `[controller]` (`--controller`).
    pub controllers: Vec<PathBuf>,
}

/// Everything checked and opened before scoring.
pub struct Prepared {
    pub scenario: Scenario,
    /// The live controllers to emulate next to the policy: `[controller]` and `--controller`.
    pub controller: Option<ControllerSpec>,
    /// The traffic files, then the sorted runs of those that are not sorted (`traffic.sort`).
    pub files: Vec<TrafficFile>,
    pub runtime: &'static Runtime,
    pub stable: Model,
    pub candidate: Model,
    pub layout: Layout,
    pub survey: Survey,
    /// The task, decided from both models' scores on the first rows and the label.
    pub probe: FirstRows,
    /// What was assumed where the scenario is silent, said when it runs and kept in summary.json.
    pub assumptions: Vec<String>,
}

impl Prepared {
    pub fn models(&self) -> [&Model; 2] {
        [&self.stable, &self.candidate]
    }

    /// Scores the scenario's traffic with both models (or reuses the cache's parts).
    pub fn score(&self, settings: &score::Settings) -> Result<Scored> {
        self.score_into(settings, None)
    }

    /// [`Prepared::score`], the batches also given to `tee` when every part is scored now.
    pub fn score_into(&self, settings: &score::Settings, tee: Option<score::Tee>) -> Result<Scored> {
        score::score(self.runtime, &self.scenario, &self.files, &self.survey, &self.layout, self.models(), settings, tee)
    }
}

/// Validates the scenario, the data's schema and order, and the models' signatures, reporting
/// every problem found at once. Nothing is scored.
pub fn prepare(scenario_path: &Path, runtime_options: &RuntimeOptions) -> Result<Prepared> {
    prepare_with(scenario_path, runtime_options, &[])
}

/// [`prepare`] with controller files given on the command line added to `[controller]`.
pub fn prepare_with(scenario_path: &Path, runtime_options: &RuntimeOptions, controllers: &[PathBuf]) -> Result<Prepared> {
    prepare_scenario(scenario::load(scenario_path)?, runtime_options, controllers)
}

/// [`prepare_with`] for a scenario already loaded.
fn prepare_scenario(mut scenario: Scenario, runtime_options: &RuntimeOptions, controllers: &[PathBuf]) -> Result<Prepared> {
    let mut problems: Vec<Problem> = Vec::new();
    let controller = load_controllers(&scenario, controllers, &mut problems)?;
    let files = collect(ingest::open(&scenario.traffic), &mut problems);
    let runtime = runtime::load(runtime_options)?;
    let stable = collect(Model::open(runtime, &scenario.stable), &mut problems);
    let candidate = collect(Model::open(runtime, &scenario.candidate), &mut problems);
    let (Some(files), Some(stable), Some(candidate)) = (files, stable, candidate) else {
        return Err(Error::Invalid(problems));
    };
    let layout = Layout::new(&scenario.traffic, score::feature_union(&[&stable, &candidate]));
    problems.extend(ingest::check_columns(&files, &layout));
    problems.extend(missing_feature_problems(&scenario, [&stable, &candidate]));
    if !problems.is_empty() {
        return Err(Error::Invalid(problems));
    }
    let mut survey = ingest::survey(&files, &scenario.traffic)?;
    keep_named_values(&scenario, &mut survey.rules);
    let mut files = files;
    let sorted = sort_unsorted(&mut files, &mut survey, &scenario.traffic, &layout)?;
    let probe = score::probe::probe(runtime, &scenario, &files, &survey, &layout, [&stable, &candidate])?;
    survey.rules.positive_class = probe.positive_class.map(|k| k as f64);
    let file = scenario.file.display().to_string();
    let problems = scenario.policy.fit_task(probe.task, &probe.why, &file);
    if !problems.is_empty() {
        return Err(Error::Invalid(problems));
    }
    let mut assumptions = assumptions(&scenario, &survey, &probe);
    assumptions.extend(sorted);
    Ok(Prepared { scenario, controller, files, runtime, stable, candidate, layout, survey, probe, assumptions })
}

/// Reads each file that is not sorted by time (`traffic.sort = true`) through sorted runs made in
/// the tool's cache, appended to `files`; says so for each.
fn sort_unsorted(files: &mut Vec<TrafficFile>, survey: &mut Survey, traffic: &scenario::Traffic, layout: &Layout) -> Result<Vec<String>> {
    let mut said = Vec::new();
    for index in survey.unsorted() {
        let runs = ingest::sorted_runs(&files[index], traffic, layout, &runtime::cache_root(None), ingest::RUN_ROWS)?;
        said.push(format!(
            "{} is not sorted by time: read in {} sorted run(s) (traffic.sort = true)",
            files[index].path.display(),
            runs.len()
        ));
        survey.replace_file(index, files.len()..files.len() + runs.len());
        files.extend(runs);
    }
    Ok(said)
}

/// Segment values the scenario names (faults, segment policies) are judged one by one even when
/// they are too rare to be among `traffic.max_segment_values`.
fn keep_named_values(scenario: &Scenario, rules: &mut ingest::Rules) {
    let segments = &scenario.traffic.segments;
    let fault_values = scenario.faults.iter().filter_map(|f| f.segment.clone());
    let policy_values = scenario.policy.segment_policies.iter().flat_map(|p| {
        let values = p.include.iter().flatten().chain(&p.exclude).chain(p.waves.iter().flatten()).chain(p.caps.keys());
        values.map(|v| (p.column.clone(), v.clone()))
    });
    for (column, value) in fault_values.chain(policy_values) {
        if let Some(Some(kept)) = segments.iter().position(|s| *s == column).and_then(|k| rules.kept.get_mut(k)) {
            kept.insert(value);
        }
    }
}

/// What a run takes for granted where the scenario is silent.
fn assumptions(scenario: &Scenario, survey: &Survey, probe: &FirstRows) -> Vec<String> {
    let mut out = vec![format!("task: {} ({})", probe.task.name(), probe.why)];
    for s in survey.segments.iter().filter(|s| s.kept < s.values) {
        out.push(format!(
            "segment column \"{}\" has {} values: the {} with the most requests are judged one by one, the other {} ({} requests) together as \"{}\" (traffic.max_segment_values)",
            s.column,
            s.values,
            s.kept,
            s.values - s.kept,
            s.other_rows,
            crate::scenario::OTHER
        ));
    }
    if survey.duplicates > 0 {
        out.push(format!(
            "{} request(s) repeat an id seen before: only the first request of each id is replayed (traffic.duplicates = \"keep_first\")",
            survey.duplicates
        ));
    }
    let traffic = &scenario.traffic;
    if traffic.label.is_some() && traffic.label_time.is_none() && traffic.label_delay == 0 {
        out.push("labels arrive with their requests: neither traffic.label_time nor traffic.label_delay is set, so a check sees every label of its window at once (set traffic.label_delay, e.g. \"2h\", if labels come later)".into());
    }
    out
}

/// Reads the live controllers of the scenario's `[controller]` with the files given by
/// `--controller` (relative to the working folder) added to it: the mapping and settings stay the
/// scenario's.
fn load_controllers(scenario: &Scenario, files: &[PathBuf], problems: &mut Vec<Problem>) -> Result<Option<ControllerSpec>> {
    if scenario.controller.is_none() && files.is_empty() {
        return Ok(None);
    }
    let mut raw = scenario.controller.clone().unwrap_or_default();
    if !files.is_empty() {
        let cwd = std::env::current_dir().map_err(|e| Error::io(".", e))?;
        raw.files.extend(files.iter().map(|f| cwd.join(f).display().to_string()));
        raw.from_flag += files.len();
    }
    let dir = scenario.file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file = scenario.file.display().to_string();
    Ok(controller::spec::load(&raw, dir, &file, scenario.policy.ramp.check_every, &scenario.traffic.segments, problems))
}

/// A `feature_missing` fault must name a feature its model reads, at most one per model.
fn missing_feature_problems(scenario: &Scenario, models: [&Model; 2]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut seen = [false; 2];
    for (i, fault) in scenario.faults.iter().enumerate() {
        let crate::scenario::Effect::FeatureMissing { feature } = &fault.effect else { continue };
        let m = score::index(fault.model);
        let key = format!("{}: faults[{i}].feature = \"{feature}\"", scenario.file.display());
        if !models[m].features.contains(feature) {
            problems.push(
                Problem::new(key, format!("is not a feature of the {} model", fault.model.name()))
                    .fix(format!("its features: {}", models[m].features.join(", "))),
            );
        } else if std::mem::replace(&mut seen[m], true) {
            problems.push(Problem::new(
                key,
                format!("is a second feature_missing fault on the {} model; one per model is supported", fault.model.name()),
            ));
        }
    }
    problems
}

fn collect<T>(result: Result<T>, problems: &mut Vec<Problem>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(Error::Invalid(p)) => {
            problems.extend(p);
            None
        }
        Err(other) => {
            problems.push(Problem::new("canary-replay", other.to_string()));
            None
        }
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct RunOutput {
    pub out_dir: PathBuf,
    pub summary: Summary,
    pub timings: Timings,
    pub scored: Scored,
    pub warnings: Vec<String>,
}

/// Replays the scenario: prepares it, scores (or reuses cached scores), compares the models on all
/// traffic, simulates the policy and emulates the live controllers, records the run and writes its
/// folder.
pub fn run(scenario_path: &Path, options: &RunOptions) -> Result<RunOutput> {
    let mut watch = Stopwatch::start();
    let scenario = scenario::load(scenario_path)?;
    let out_dir = options.out.clone().unwrap_or_else(|| Path::new("reports").join(&scenario.name));
    crate::atomic::check_output_folder(&out_dir)?;
    let prepared = prepare_scenario(scenario, &options.runtime, &options.controllers)?;
    watch.prepared();
    let cache = CacheDir::from_option(options.cache_dir.as_deref());
    let settings = score::Settings::new(&prepared.scenario, cache.clone(), !options.rescore, options.quiet);
    let folder = crate::output::Folder::create(&out_dir)?;
    // scores.parquet is written as the rows are scored when every part is scored now.
    let plan = report::ScoresInfo::planned(&prepared.scenario.output, prepared.survey.rows_in_window);
    let types = ingest::restorable_types(&prepared.files, &prepared.layout);
    let mut scores = report::ScoresWriter::new(&folder.path().join(report::SCORES_FILE), &prepared.layout, &types, &plan);
    let scored = prepared.score_into(&settings, Some(&mut |batch| scores.add(batch)))?;
    let teed = if scored.teed { Some(scores.finish()?) } else { None };
    failed_everywhere(&prepared, &scored)?;
    watch.scored();
    let scores_file = ScoresFile { plan: plan.clone(), types: &types, teed };
    let evaluated = oracle_and_simulation(&prepared, &scored, &folder, scores_file, options.reference)?;
    let summary = record(&prepared, &evaluated)?;
    let mut timings = watch.timings(&scored, &settings, &cache, &evaluated);
    let invocation = report::Invocation {
        command: options.command.clone(),
        working_dir: std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    let Simulated { setup, run, .. } = &evaluated.simulated;
    let files = report::RunFiles { setup, run, invocation: &invocation, distributions: &evaluated.oracle.distributions };
    report::write_run(folder, &summary, &files, &mut timings, (watch.started, watch.after_scoring()))?;
    Ok(RunOutput { out_dir, summary, timings, scored, warnings: prepared.scenario.warnings.clone() })
}

/// When a run's steps ended, for `timings.json`.
struct Stopwatch {
    started: Instant,
    prepare_seconds: f64,
    scored: Option<Instant>,
    peak_rss_before_simulation_mib: Option<f64>,
}

impl Stopwatch {
    fn start() -> Self {
        Self { started: Instant::now(), prepare_seconds: 0.0, scored: None, peak_rss_before_simulation_mib: None }
    }

    fn prepared(&mut self) {
        self.prepare_seconds = self.started.elapsed().as_secs_f64();
    }

    /// Scoring is done: its peak memory is noted and the memory it freed handed back.
    fn scored(&mut self) {
        self.scored = Some(Instant::now());
        self.peak_rss_before_simulation_mib = report::peak_rss_mib();
        release_free_memory();
    }

    fn after_scoring(&self) -> Instant {
        self.scored.unwrap_or(self.started)
    }

    /// The timings known before the folder is written (which adds the report's, the peak
    /// memory's and the totals).
    fn timings(&self, scored: &Scored, settings: &score::Settings, cache: &CacheDir, evaluated: &Evaluated) -> Timings {
        let mut phases = evaluated.simulated.phases.clone();
        phases.scan_seconds = evaluated.scan_seconds;
        Timings {
            total_seconds: 0.0,
            prepare_seconds: self.prepare_seconds,
            scoring_seconds: scored.seconds,
            scoring_setup_seconds: scored.setup_seconds,
            oracle_seconds: evaluated.oracle_seconds,
            simulation_seconds: evaluated.simulation_seconds + evaluated.scan_seconds,
            report_seconds: 0.0,
            scores_file_seconds: evaluated.scores_file_seconds,
            after_scoring_seconds: 0.0,
            rows: scored.rows,
            rows_scored_per_second: (scored.parts_scored > 0 && scored.streaming_seconds > 0.0)
                .then(|| scored.stable.rows as f64 / scored.streaming_seconds),
            parts_reused: scored.parts_reused,
            parts_scored: scored.parts_scored,
            cache_dir: cache.describe(),
            workers: settings.workers,
            intra_threads: settings.intra_threads,
            peak_rss_mib: None,
            peak_rss_before_simulation_mib: self.peak_rss_before_simulation_mib,
            simulation_phases: phases,
            index: evaluated.simulated.index,
        }
    }
}

/// What the run found after scoring: the oracle, the simulation and `scores.parquet`.
struct Evaluated<'a> {
    /// What users were served (faults applied) and, with faults, the models' own comparison.
    oracle: oracle::Oracle,
    clean: Option<oracle::Comparison>,
    simulated: Simulated<'a>,
    /// What `scores.parquet` holds, as written.
    scores_file: report::ScoresInfo,
    scan_seconds: f64,
    oracle_seconds: f64,
    simulation_seconds: f64,
    scores_file_seconds: f64,
}

/// `scores.parquet`: what it holds, and whether scoring wrote it (the requests written and the
/// seconds it took).
struct ScoresFile<'t> {
    plan: report::ScoresInfo,
    types: &'t [(String, arrow::datatypes::DataType)],
    teed: Option<(u64, f64)>,
}

/// The oracle and the simulation from the score cache. When scoring wrote `scores.parquet` (or
/// there is none) the oracle runs beside the simulation: at 100× that took about 2 s less after
/// scoring and 25–30 MiB more memory (the oracle's histograms, held while the index is built —
/// bounded by the segment values, not the requests), of which its thread hands back what it
/// freed as it ends (peak 205 → 190 MiB at 100×). Otherwise the file is written from the cache
/// beside the oracle (its memory is a batch and a row group whatever the log's size), and the
/// simulation follows the oracle once its memory is handed back.
fn oracle_and_simulation<'a>(
    prepared: &'a Prepared,
    scored: &Scored,
    folder: &crate::output::Folder,
    scores_file: ScoresFile,
    reference: bool,
) -> Result<Evaluated<'a>> {
    let scenario = &prepared.scenario;
    let (replay, scan_seconds) = timed(|| Replay::scan(&scored.parts, &prepared.layout, &scenario.faults));
    let replay = replay?;
    let ScoresFile { plan: mut scores_file, types, teed } = scores_file;
    // With no file to write from the cache, the oracle runs beside the simulation instead.
    let oracle_beside = teed.is_some() || scores_file.mode == crate::scenario::ScoresFile::None;
    let (written, oracle, simulated) = std::thread::scope(|s| {
        let scores = report::Scores { parts: &scored.parts, plan: &scores_file, layout: &prepared.layout, types, written: 0.into() };
        let written = s.spawn(move || match teed {
            Some((rows, seconds)) => (Ok(rows), seconds),
            None => timed(|| folder.write(&scores).map(|()| scores.written.into_inner())),
        });
        let (injected, replay) = (oracle::Injected { faults: &scenario.faults, binary: replay.binary }, &replay);
        let oracle = move || timed(|| oracle::compute(&scored.parts, &prepared.layout, replay.score_range, Some(&injected)));
        let (oracle, simulated) = if oracle_beside {
            let oracle = s.spawn(move || {
                let done = oracle();
                release_free_memory();
                done
            });
            let simulated = timed(|| simulate(prepared, replay, reference));
            (oracle.join().expect("the oracle does not panic"), simulated)
        } else {
            let oracle = oracle();
            let simulated = match &oracle.0 {
                Ok(_) => {
                    release_free_memory();
                    timed(|| simulate(prepared, replay, reference))
                }
                Err(_) => (Err(Error::Internal("not simulated: the oracle failed".into())), 0.0),
            };
            (oracle, simulated)
        };
        (written.join().expect("the scores.parquet writer does not panic"), oracle, simulated)
    });
    let ((written, scores_file_seconds), (oracle, oracle_seconds), (simulated, simulation_seconds)) = (written, oracle, simulated);
    let (oracle, clean) = oracle?;
    scores_file.rows = written?;
    Ok(Evaluated {
        oracle,
        clean,
        simulated: simulated?,
        scores_file,
        scan_seconds,
        oracle_seconds,
        simulation_seconds,
        scores_file_seconds,
    })
}

/// The run's record: `summary.json`.
fn record(prepared: &Prepared, evaluated: &Evaluated) -> Result<Summary> {
    use report::{Columns, FaultInfo, Input, LatencyMethod, ModelInfo, ScenarioInfo, Tool, Window};
    let Simulated { setup, run, grade, exposure, controllers, .. } = &evaluated.simulated;
    let scenario = &prepared.scenario;
    let inputs = prepared
        .files
        .iter()
        .zip(&prepared.survey.files)
        .map(|(f, s)| {
            Ok(Input {
                file: f.path.display().to_string(),
                blake3: f.path.content_hash()?,
                rows: f.rows(),
                rows_in_window: s.rows_in_window,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let t = &scenario.traffic;
    Ok(Summary {
        tool: Tool { name: "canary-replay".into(), version: env!("CARGO_PKG_VERSION").into() },
        scenario: ScenarioInfo {
            name: scenario.name.clone(),
            file: scenario.file.display().to_string(),
            description: scenario.description.clone(),
        },
        rows_replayed: prepared.survey.rows_in_window,
        window: Window {
            start: t.start.map(format_timestamp),
            end: t.end.map(format_timestamp),
            first_request: format_timestamp(prepared.survey.first),
            last_request: format_timestamp(prepared.survey.last),
        },
        columns: Columns {
            time: t.time.clone(),
            entity: t.entity.clone(),
            id: t.id.clone(),
            label: t.label.clone(),
            label_time: t.label_time.clone(),
            segments: t.segments.clone(),
        },
        task: prepared.probe.clone(),
        assumptions: prepared.assumptions.clone(),
        scores_file: evaluated.scores_file.clone(),
        runtime: prepared.runtime.info(),
        inputs,
        models: [("stable", &prepared.stable), ("candidate", &prepared.candidate)]
            .into_iter()
            .map(|(role, model)| (role.to_string(), ModelInfo::of(model)))
            .collect(),
        latency: LatencyMethod {
            method: score::latency::METHOD.to_string(),
            sample_share: scenario.scoring.latency_sample,
            warmup_runs: scenario.scoring.latency_warmup,
        },
        policy: scenario.policy.to_raw(),
        faults: scenario.faults.iter().map(FaultInfo::of).collect(),
        simulation: report::simulation::summary(setup, run, grade.clone(), exposure.clone()),
        oracle: evaluated.oracle.clone(),
        oracle_clean: evaluated.clean.clone(),
        controllers: controllers.clone(),
    })
}

/// The policy's run, graded, and the live controllers' emulation: what the simulation produced.
struct Simulated<'a> {
    setup: Setup<'a>,
    run: Run,
    grade: Grade,
    exposure: Exposure,
    controllers: Option<report::controllers::Controllers>,
    phases: report::SimulationPhases,
    index: Option<crate::simulate::fast::Footprint>,
}

/// Simulates the scenario's policy on the replay and emulates its controllers: on the fast path's
/// index, or row by row with the reference simulator (`--reference`).
fn simulate<'a>(prepared: &'a Prepared, replay: &Replay, reference: bool) -> Result<Simulated<'a>> {
    let scenario = &prepared.scenario;
    let setup = Setup::new(&scenario.policy, replay).graded(scenario.grading);
    let policy = &scenario.policy;
    let controllers = prepared.controller.as_ref().filter(|spec| !spec.controllers.is_empty());
    let latency_sample = scenario.scoring.latency_sample;
    let mut phases = report::SimulationPhases::default();
    let mut index = None;
    let (run, grade, exposure, controllers) = if reference {
        // Every routed row, for the reference simulator and the controllers alike.
        let rows = phases.time(|p| &mut p.index_seconds, || replay.rows(&policy.ramp.salt))?;
        let (run, grade, exposure) =
            phases.time(|p| &mut p.policy_seconds, || evaluate(&setup, &mut Reference::new(&rows, &setup.scopes, setup.scale)));
        let controllers = phases.time(
            |p| &mut p.controllers_seconds,
            || {
                controllers
                    .map(|spec| emulate_controllers(spec, &setup, replay, Traffic::Rows(&rows), latency_sample, (&run, &grade, &exposure)))
                    .transpose()
            },
        )?;
        (run, grade, exposure, controllers)
    } else {
        // One index for the policy and the controllers: cut at every weight either routes at, keeping
        // what either reads.
        let (weights, metrics) = controllers.map(ControllerSpec::reads).unwrap_or_default();
        let summaries = phases.time(|p| &mut p.index_seconds, || setup.summaries_with(replay, &weights, &metrics))?;
        index = Some(summaries.footprint());
        release_free_memory();
        let (run, grade, exposure) = phases.time(|p| &mut p.policy_seconds, || evaluate(&setup, &mut setup.fast(&summaries)));
        let ranged = Ranged::new(&summaries, replay, &policy.ramp.salt);
        let controllers = phases.time(
            |p| &mut p.controllers_seconds,
            || {
                controllers
                    .map(|spec| {
                        emulate_controllers(spec, &setup, replay, Traffic::Ranged(&ranged), latency_sample, (&run, &grade, &exposure))
                    })
                    .transpose()
            },
        )?;
        phases.rows_read_back = Some(ranged.reads());
        (run, grade, exposure, controllers)
    };
    Ok(Simulated { setup, run, grade, exposure, controllers, phases, index })
}

/// `f`'s result and its wall time in seconds.
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let started = Instant::now();
    let out = f();
    (out, started.elapsed().as_secs_f64())
}

/// A model that scored no row at all cannot be compared: an input error, never a verdict.
fn failed_everywhere(prepared: &Prepared, scored: &Scored) -> Result<()> {
    let problems: Vec<Problem> = prepared
        .models()
        .into_iter()
        .zip([&scored.stable, &scored.candidate])
        .filter(|(_, tally)| tally.rows > 0 && tally.run_failed + tally.non_finite == tally.rows)
        .map(|(model, tally)| {
            let first = tally.first_failure.as_deref().unwrap_or("its scores are NaN or infinite");
            Problem::new(model.spec.path.display().to_string(), format!("produced no score on any of the {} rows: {first}", tally.rows))
                .fix("check the model runs on these features in Python ONNX Runtime, and its output and class")
        })
        .collect();
    crate::error::check((), problems)
}

/// Where the controllers' emulation reads the traffic.
#[derive(Clone, Copy)]
pub enum Traffic<'a> {
    /// Every routed row (the reference).
    Rows(&'a [Row]),
    /// The fast path's summaries, with the rows of a few buckets at a time.
    Ranged(&'a Ranged<'a>),
}

/// Replays every controller of `[controller]` on the traffic (routed under the policy's salt) and
/// grades each with the same oracle as the policy's `(run, grade, exposure)`.
pub fn emulate_controllers(
    spec: &ControllerSpec,
    setup: &Setup,
    replay: &Replay,
    traffic: Traffic,
    latency_sample: f64,
    policy: (&Run, &Grade, &Exposure),
) -> Result<report::controllers::Controllers> {
    use rayon::prelude::*;
    let probe = match traffic {
        Traffic::Rows(rows) => Probe::new(rows, setup.scale),
        Traffic::Ranged(ranged) => Probe::ranged(ranged),
    };
    let emulated: Vec<report::controllers::ControllerSummary> = spec
        .controllers
        .par_iter()
        .map(|c| {
            let emulated = controller::emulate(c, spec, &probe, &replay.cells, setup.origin, setup.end, setup.policy.ramp.check_every);
            let run = emulated.run(setup.origin, setup.end, replay.cells.len());
            let mut source: Box<dyn Source> = match traffic {
                Traffic::Rows(rows) => Box::new(Reference::new(rows, &setup.scopes, setup.scale)),
                Traffic::Ranged(ranged) => Box::new(RangedSource::new(ranged, &setup.scopes, setup.reads_histograms())),
            };
            let grade = grade::grade(setup, source.as_mut(), &run);
            let exposure = grade::exposure(setup, source.as_mut(), &run, &grade);
            report::controllers::summary(c, spec, &emulated, &run, &grade, &exposure, latency_sample)
        })
        .collect();
    if let Traffic::Ranged(ranged) = traffic {
        if let Some(e) = ranged.failure() {
            return Err(e);
        }
    }
    let who = if setup.policy.default_gates { "canary-replay: the default policy" } else { "canary-replay: the scenario's policy" };
    let (run, grade, exposure) = policy;
    let policy = report::controllers::Graded::new(who.to_string(), run, grade, exposure);
    let comparison = emulated.iter().map(|e| report::controllers::compare(&policy, &e.verdict)).collect();
    let notes =
        spec.traffic_notes(requests_per_hour(replay.rows, replay.first, replay.last), latency_sample, setup.policy.ramp.check_every);
    let query_traffic = notes.into_iter().map(|n| if n.sparse { format!("warning: {}", n.text) } else { n.text }).collect();
    Ok(report::controllers::Controllers { policy, emulated, comparison, query_traffic })
}

/// `rows` requests from `first` to `last`, an hour (over at least an hour).
pub fn requests_per_hour(rows: u64, first: Micros, last: Micros) -> f64 {
    rows as f64 / crate::time::hours(last - first).max(1.0)
}

/// Simulates the policy and grades the outcome against the oracle.
pub fn evaluate(setup: &Setup, source: &mut dyn Source) -> (Run, Grade, Exposure) {
    let run = setup.simulate(source);
    let grade = grade::grade(setup, source, &run);
    let exposure = grade::exposure(setup, source, &run, &grade);
    (run, grade, exposure)
}
