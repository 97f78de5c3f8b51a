//! Sharded scoring: the log split into shards that separate processes — on one machine, or Ray
//! workers on many — score into a shared cache, then one `run` merges and simulates.
//!
//! `shard plan` checks the scenario as `run` does (the survey and the probe included) and splits
//! the parts a run reads — each a traffic file, or files merged by time — among the shards, the
//! largest first to the shard with the fewest rows, so the same log and shard count always give
//! the same plan. The plan carries everything a shard needs besides the scenario and the files:
//! the row-cleaning rules the survey decided and each part's cache key. `shard run PLAN --index K`
//! scores shard K's parts that are not in the cache yet. A part is written under a temporary name
//! and committed (renamed, or uploaded: an object appears whole or not at all), so a shard that
//! dies leaves nothing a later run reads, and running a shard again only scores what is missing.
//! `run` then finds every part in the cache and scores nothing: its summary is the unsharded
//! run's, since the parts are the same, keyed the same.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Problem, Result};
use crate::ingest::{self, Group, Layout, Rules};
use crate::runtime::{self, RuntimeOptions};
use crate::score::{self, cache::CacheDir, cache::PartInfo, model::Model};
use crate::storage::{Location, Place};

/// Bumped when the plan's fields change.
pub const PLAN_FORMAT: u32 = 1;

/// How a log is split into shards.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    pub format: u32,
    /// The scenario, by absolute path: every shard reads it (and the models it names) there.
    pub scenario: PathBuf,
    /// Where parts go: a folder every shard sees, or a storage URL.
    pub cache_dir: String,
    /// How rows are cleaned (what the survey decided), the same for every shard.
    pub rules: Rules,
    /// Requests replayed in all.
    pub rows: u64,
    pub shards: Vec<Shard>,
}

/// One shard's parts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Shard {
    pub rows: u64,
    pub parts: Vec<PlannedPart>,
}

/// A part of the score cache: its key, its files (read together, merged by time) and rows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlannedPart {
    pub key: String,
    pub rows: u64,
    pub files: Vec<PlannedFile>,
}

/// A traffic file: its path or URL and its Hive partition keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlannedFile {
    pub path: String,
    pub partitions: ingest::Partitions,
}

/// Plans `shards` shards of the scenario's log, parts going to `cache_dir` (the default cache
/// when none).
pub fn plan(scenario_path: &Path, shards: usize, cache_dir: Option<&Path>, runtime_options: &RuntimeOptions) -> Result<Plan> {
    if shards == 0 {
        return Err(Error::invalid(
            Problem::new("--shards", "must be at least 1").fix("give the number of shards to split the log into, e.g. --shards 8"),
        ));
    }
    let scenario_path = std::path::absolute(scenario_path).map_err(|e| Error::io(scenario_path, e))?;
    let prepared = crate::run::prepare(&scenario_path, runtime_options)?;
    let sorted_here: Vec<String> = prepared.survey.unsorted().iter().map(|&i| prepared.files[i].path.text()).collect();
    if !sorted_here.is_empty() {
        return Err(Error::invalid(
            Problem::new(sorted_here.join(", "), "is not sorted by time, and a sharded run cannot share the sorted copy made on this machine")
                .fix("sort the file(s) by the time column where they are written (e.g. ORDER BY in the job that writes them), or run without shards"),
        ));
    }
    let cache = CacheDir::from_option(cache_dir);
    let runtime = prepared.runtime;
    let mut parts = Vec::new();
    for group in &prepared.survey.groups {
        let files: Vec<&ingest::TrafficFile> = group.files.iter().map(|&i| &prepared.files[i]).collect();
        let info =
            PartInfo::of_files(&prepared.scenario, &prepared.layout, &files, &prepared.survey.rules, prepared.models(), &runtime.version)?;
        let planned = files.iter().map(|f| PlannedFile { path: f.path.text(), partitions: f.partitions.clone() }).collect();
        parts.push(PlannedPart { key: info.key(), rows: group.rows, files: planned });
    }
    // The largest part first, to the shard with the fewest rows (the lowest index on ties).
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by(|&a, &b| parts[b].rows.cmp(&parts[a].rows).then(a.cmp(&b)));
    let mut split: Vec<Shard> = vec![Shard { rows: 0, parts: Vec::new() }; shards];
    for i in order {
        let lightest = (0..shards).min_by_key(|&s| (split[s].rows, s)).expect("at least one shard");
        split[lightest].rows += parts[i].rows;
        split[lightest].parts.push(parts[i].clone());
    }
    let cache_dir =
        cache.shared.clone().unwrap_or_else(|| std::path::absolute(&cache.folder).unwrap_or(cache.folder.clone()).display().to_string());
    Ok(Plan {
        format: PLAN_FORMAT,
        scenario: scenario_path,
        cache_dir,
        rules: prepared.survey.rules.clone(),
        rows: prepared.survey.rows_in_window,
        shards: split,
    })
}

/// Refuses a plan's `--out` that holds something other than an earlier plan: it is replaced.
pub fn check_plan_output(out: &Path) -> Result<()> {
    if !out.exists() || read_plan(out).is_ok() {
        return Ok(());
    }
    Err(Error::invalid(
        Problem::new(format!("--out {}", out.display()), "exists and is not a shard plan: it would be replaced")
            .fix("give a new file name, e.g. --out plan.json"),
    ))
}

/// Reads a plan file.
pub fn read_plan(path: &Path) -> Result<Plan> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let plan: Plan = serde_json::from_str(&text).map_err(|e| {
        Error::invalid(
            Problem::new(path.display().to_string(), format!("not a shard plan: {e}"))
                .fix("make one with `canary-replay shard plan SCENARIO --shards N --out PLAN`"),
        )
    })?;
    if plan.format != PLAN_FORMAT {
        return Err(Error::invalid(
            Problem::new(path.display().to_string(), format!("a plan of format {} (this canary-replay reads {PLAN_FORMAT})", plan.format))
                .fix("plan again with this version"),
        ));
    }
    Ok(plan)
}

/// What one shard did.
#[derive(Debug, Clone, Serialize)]
pub struct ShardReport {
    pub shard: usize,
    pub parts: usize,
    pub parts_scored: usize,
    pub parts_reused: usize,
    pub rows: u64,
    pub seconds: f64,
    /// The cache, and where this machine mirrors it.
    pub cache: String,
}

/// Scores shard `index` of `plan` into its cache: the parts not there yet, on `threads` threads in
/// all when given (a Ray task's CPUs), else as the scenario says.
pub fn run(plan: &Plan, index: usize, threads: Option<usize>, runtime_options: &RuntimeOptions, quiet: bool) -> Result<ShardReport> {
    let started = Instant::now();
    let Some(shard) = plan.shards.get(index) else {
        return Err(Error::invalid(
            Problem::new("--index", format!("is {index}, but the plan has {} shards", plan.shards.len()))
                .fix(format!("give an index from 0 to {}", plan.shards.len().saturating_sub(1))),
        ));
    };
    let scenario = crate::scenario::load(&plan.scenario)?;
    let runtime = runtime::load(runtime_options)?;
    let (stable, candidate) = (Model::open(runtime, &scenario.stable)?, Model::open(runtime, &scenario.candidate)?);
    let layout = Layout::new(&scenario.traffic, score::feature_union(&[&stable, &candidate]));
    let mut files = Vec::new();
    let mut groups = Vec::new();
    for part in &shard.parts {
        let first = files.len();
        for file in &part.files {
            let place = match Location::parse(&file.path, Path::new("")) {
                Location::Local(p) => Place::Local(p),
                Location::Url(url) => crate::storage::list(&url)?.into_iter().next().map(|(p, _)| p).ok_or_else(|| {
                    Error::invalid(
                        Problem::new(&url, "is in the plan but not in the store")
                            .fix("the log changed since the plan was made: plan again"),
                    )
                })?,
            };
            let mut opened = ingest::open_file(place, &scenario.traffic.time).map_err(Error::invalid)?;
            opened.partitions = file.partitions.clone();
            files.push(opened);
        }
        groups.push(Group { files: (first..files.len()).collect(), rows: part.rows });
    }
    let cache = CacheDir::from_option(Some(Path::new(&plan.cache_dir)));
    let described = cache.describe();
    let mut settings = score::Settings::new(&scenario, cache, true, quiet);
    if let Some(threads) = threads {
        settings.workers = threads.max(1);
        settings.intra_threads = 1;
    }
    let scored = score::score_groups(runtime, &scenario, &files, &groups, &plan.rules, &layout, [&stable, &candidate], &settings, None)?;
    for (part, path) in shard.parts.iter().zip(&scored.parts) {
        if path.file_stem().and_then(|s| s.to_str()) != Some(part.key.as_str()) {
            let names: Vec<&str> = part.files.iter().map(|f| f.path.as_str()).collect();
            return Err(Error::invalid(
                Problem::new(names.join(", "), "scored under another cache key than the plan's: the files, the scenario, the models or ONNX Runtime changed since the plan was made")
                    .fix("plan again, then run the shards"),
            ));
        }
    }
    Ok(ShardReport {
        shard: index,
        parts: shard.parts.len(),
        parts_scored: scored.parts_scored,
        parts_reused: scored.parts_reused,
        rows: shard.rows,
        seconds: started.elapsed().as_secs_f64(),
        cache: described,
    })
}
