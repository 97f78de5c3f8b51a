//! Raw scenario → validated [`Scenario`]: value checks, cross-field checks and path resolution,
//! all in one place, each problem named by its key path.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::raw::{RawModel, RawOutput, RawScenario, RawScoring, RawTraffic};
use super::{Class, Duplicates, Grading, ModelSpec, Output, Role, Scenario, ScoresFile, Scoring, Traffic, Transform};
use crate::error::Problem;
use crate::policy::{Policy, RawPolicy, TrafficShape};
use crate::time::RawTime;
use crate::time::{format_timestamp, parse_duration, Micros};

/// Collects problems for one file.
struct Checker<'a> {
    file: String,
    dir: &'a Path,
    problems: &'a mut Vec<Problem>,
}

impl Checker<'_> {
    fn problem(&mut self, key: &str, message: impl Into<String>, fix: Option<String>) {
        let mut p = Problem::new(format!("{}: {key}", self.file), message);
        p.fix = fix;
        self.problems.push(p);
    }

    fn column(&mut self, key: &str, value: &str) -> String {
        if value.trim().is_empty() {
            self.problem(key, "a column name cannot be empty", None);
        }
        value.to_string()
    }

    fn columns(&mut self, key: &str, values: &[String]) -> Vec<String> {
        let mut seen = HashSet::new();
        for (i, v) in values.iter().enumerate() {
            self.column(&format!("{key}[{i}]"), v);
            if !seen.insert(v.as_str()) {
                self.problem(&format!("{key}[{i}]"), format!("\"{v}\" is listed twice"), None);
            }
        }
        values.to_vec()
    }

    /// Resolves a path against the scenario folder; checks it exists unless it is a glob.
    fn path(&mut self, key: &str, value: &str, what: &str) -> PathBuf {
        let path = self.dir.join(value);
        let is_glob = value.contains(['*', '?', '[']);
        if value.trim().is_empty() {
            self.problem(key, format!("the {what} path is empty"), None);
        } else if !is_glob && !path.exists() {
            self.problem(
                key,
                format!("{what} \"{value}\" does not exist (looked for {})", path.display()),
                Some("relative paths are resolved against the scenario file's folder".into()),
            );
        }
        path
    }

    fn time(&mut self, key: &str, value: &Option<RawTime>, parse: fn(&RawTime) -> Result<Micros, String>) -> Option<Micros> {
        match parse(value.as_ref()?) {
            Ok(t) => Some(t),
            Err(e) => {
                self.problem(key, e, None);
                None
            }
        }
    }

    fn int(&mut self, key: &str, value: Option<i64>, default: usize, range: (i64, i64), unit: &str) -> usize {
        match value {
            None => default,
            Some(v) if v >= range.0 && v <= range.1 => v as usize,
            Some(v) => {
                self.problem(&format!("{key} = {v}"), format!("{unit} must be in [{}, {}]", range.0, range.1), None);
                default
            }
        }
    }
}

pub(super) fn validate(raw: RawScenario, file: &Path, problems: &mut Vec<Problem>) -> Scenario {
    let dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut c = Checker { file: file.display().to_string(), dir, problems };

    if raw.name.trim().is_empty() || raw.name.contains(['/', '\\']) || raw.name.starts_with('.') {
        c.problem(
            "name",
            format!("\"{}\" cannot name the output folder reports/<name>/", raw.name),
            Some("use letters, digits, dashes and underscores".into()),
        );
    }

    let traffic = traffic(&mut c, &raw.traffic);
    let stable = model(&mut c, Role::Stable, &raw.models.stable);
    let candidate = model(&mut c, Role::Candidate, &raw.models.candidate);
    let shared_features = raw.features.as_ref().map(|f| {
        if f.columns.is_empty() {
            c.problem("features.columns", "lists no columns", Some("remove [features] to use the models' feature_names metadata".into()));
        }
        c.columns("features.columns", &f.columns)
    });
    let with_shared = |mut m: ModelSpec| {
        if m.features.is_none() {
            m.features = shared_features.clone();
        }
        m
    };
    let (stable, candidate) = (with_shared(stable), with_shared(candidate));
    let scoring = scoring(&mut c, raw.scoring.as_ref());
    let output = output(&mut c, raw.output.as_ref());

    let role_columns = [&traffic.time, &traffic.entity, &traffic.id];
    for model in [&stable, &candidate] {
        for feature in model.features.iter().flatten() {
            if Some(feature) == traffic.label.as_ref() {
                c.problem(
                    &format!("models.{}.features", model.role.name()),
                    format!("the label column \"{feature}\" is used as a feature"),
                    Some("a model must not see its own label".into()),
                );
            }
            if role_columns.contains(&feature) {
                c.problem(
                    &format!("models.{}.features", model.role.name()),
                    format!("\"{feature}\" is the time, entity or id column"),
                    Some("features are model inputs; cast timestamps or ids to a numeric feature column first".into()),
                );
            }
        }
    }

    let expect = raw.expect.as_deref().and_then(|e| match e {
        "rollback" => Some(crate::scenario::Expect::Rollback),
        "promote" => Some(crate::scenario::Expect::Promote),
        other => {
            c.problem(
                "expect",
                format!("\"{other}\" is not an expected outcome"),
                Some("use \"rollback\" (an incident) or \"promote\" (a good release or an A/A replay)".into()),
            );
            None
        }
    });

    let mut warnings = Vec::new();
    let shape = TrafficShape { segments: &traffic.segments, labelled: traffic.label.is_some() };
    let raw_policy = RawPolicy {
        ramp: raw.ramp.clone(),
        segment_policy: raw.segment_policy.clone(),
        gates: raw.gates.clone(),
        decision: raw.decision.clone(),
    };
    let policy = Policy::from_raw(&raw_policy, &shape, &c.file, c.problems);
    let faults = super::fault::faults(&raw.faults, &shape, &c.file, c.problems);
    for fault in &faults {
        if let crate::scenario::Effect::FeatureMissing { feature } = &fault.effect {
            let listed = [&stable, &candidate].iter().any(|m| m.features.as_ref().is_none_or(|f| f.contains(feature)));
            if !listed {
                warnings.push(format!("{}: faults: feature \"{feature}\" is not among the models' listed features", c.file));
            }
        }
    }
    let grading = match raw.grading.as_ref().and_then(|g| g.cells.as_deref()) {
        None | Some("family_wise") => Grading::FamilyWise,
        Some("per_cell") => Grading::PerCell,
        Some(other) => {
            c.problem(
                &format!("grading.cells = \"{other}\""),
                "is not a way to grade",
                Some("use \"family_wise\" (the default: Holm over the cells a grade looks at) or \"per_cell\"".into()),
            );
            Grading::FamilyWise
        }
    };
    if raw.traffic.label_time.is_some() && raw.traffic.label_delay.is_some() {
        warnings.push(format!("{}: traffic.label_delay is ignored because traffic.label_time is set", c.file));
    }

    Scenario {
        name: raw.name,
        description: raw.description,
        file: file.to_path_buf(),
        traffic,
        stable,
        candidate,
        scoring,
        policy,
        faults,
        expect,
        warnings,
        controller: raw.controller,
        output,
        grading,
    }
}

const RESERVED: [&str; 6] =
    ["stable_score", "candidate_score", "stable_error", "candidate_error", "stable_latency_us", "candidate_latency_us"];

fn traffic(c: &mut Checker, raw: &RawTraffic) -> Traffic {
    let path = if crate::storage::is_url(&raw.path) {
        crate::storage::Location::parse(&raw.path, c.dir)
    } else {
        crate::storage::Location::Local(c.path("traffic.path", &raw.path, "traffic"))
    };
    let time = c.column("traffic.time", &raw.time);
    let entity = c.column("traffic.entity", &raw.entity);
    let id = c.column("traffic.id", &raw.id);
    let label = raw.label.as_ref().map(|l| c.column("traffic.label", l));
    let label_time = raw.label_time.as_ref().map(|l| c.column("traffic.label_time", l));
    let segments = c.columns("traffic.segments", &raw.segments);
    let label_delay = match raw.label_delay.as_deref().map(parse_duration) {
        None => 0,
        Some(Ok(d)) if d >= 0 => d,
        Some(Ok(_)) => {
            c.problem("traffic.label_delay", "a delay cannot be negative", None);
            0
        }
        Some(Err(e)) => {
            c.problem("traffic.label_delay", e, None);
            0
        }
    };
    if label_time.is_some() && label.is_none() {
        c.problem("traffic.label_time", "is set but traffic.label is not", Some("name the label column too".into()));
    }
    if label_time.as_ref() == Some(&time) {
        c.problem(
            "traffic.label_time",
            "is the request time column",
            Some("labels arrive after requests: use the column holding when the label became known, or traffic.label_delay".into()),
        );
    }
    let start = c.time("traffic.start", &raw.start, RawTime::parse);
    let end = c.time("traffic.end", &raw.end, RawTime::parse_end);
    if let (Some(s), Some(e)) = (start, end) {
        if s > e {
            c.problem("traffic.start", format!("{} is after traffic.end {}", format_timestamp(s), format_timestamp(e)), None);
        }
    }
    let mut roles: Vec<(&str, &String)> = vec![("traffic.time", &time), ("traffic.entity", &entity), ("traffic.id", &id)];
    roles.extend(label.iter().map(|l| ("traffic.label", l)));
    roles.extend(label_time.iter().map(|l| ("traffic.label_time", l)));
    for (i, (key, column)) in roles.iter().enumerate() {
        if let Some((other, _)) = roles[..i].iter().find(|(_, c)| c == column) {
            // An id column may double as the entity (one request per entity is a valid design).
            if !(*other == "traffic.entity" && *key == "traffic.id") {
                c.problem(key, format!("\"{column}\" is also {other}"), None);
            }
        }
        if RESERVED.contains(&column.as_str()) {
            c.problem(
                key,
                format!("\"{column}\" is a name canary-replay writes into the score cache"),
                Some("rename the column in the traffic log".into()),
            );
        }
    }
    for (i, s) in segments.iter().enumerate() {
        if [&time, &id].contains(&s) || label.as_ref() == Some(s) {
            c.problem(&format!("traffic.segments[{i}]"), format!("\"{s}\" is the time, id or label column"), None);
        }
        if segments[..i].contains(s) {
            c.problem(&format!("traffic.segments[{i}]"), format!("\"{s}\" is listed twice"), Some("list each segment column once".into()));
        }
    }
    let duplicates = match raw.duplicates.as_deref() {
        None | Some("error") => Duplicates::Error,
        Some("keep_first") => Duplicates::KeepFirst,
        Some(other) => {
            c.problem(
                &format!("traffic.duplicates = \"{other}\""),
                "is not a way to handle duplicate ids",
                Some("use \"error\" (the default) or \"keep_first\"".into()),
            );
            Duplicates::Error
        }
    };
    let max_segment_values = c.int("traffic.max_segment_values", raw.max_segment_values, 100, (1, 100_000), "segment values");
    let sort = raw.sort.unwrap_or(false);
    Traffic { path, time, entity, id, label, label_time, label_delay, segments, start, end, duplicates, sort, max_segment_values }
}

fn model(c: &mut Checker, role: Role, raw: &RawModel) -> ModelSpec {
    let prefix = format!("models.{}", role.name());
    let path = c.path(&format!("{prefix}.path"), &raw.path, "model");
    if let Some(Class::Index(class)) = raw.class {
        if class < 0 {
            c.problem(&format!("{prefix}.class = {class}"), "a class column index cannot be negative", None);
        }
    }
    let transform = match raw.transform.as_deref() {
        None | Some("none") => Transform::None,
        Some("sigmoid") => Transform::Sigmoid,
        Some("softmax") => Transform::Softmax,
        Some(other) => {
            c.problem(
                &format!("{prefix}.transform = \"{other}\""),
                "is not a transform",
                Some("use \"sigmoid\" for a logit output, \"softmax\" for one logit per class, or \"none\"".into()),
            );
            Transform::None
        }
    };
    if let Some(output) = &raw.output {
        c.column(&format!("{prefix}.output"), output);
    }
    let features = raw.features.as_ref().map(|f| {
        if f.is_empty() {
            c.problem(&format!("{prefix}.features"), "lists no columns", None);
        }
        c.columns(&format!("{prefix}.features"), f)
    });
    ModelSpec { role, path, output: raw.output.clone(), class: raw.class.clone(), transform, features }
}

fn output(c: &mut Checker, raw: Option<&RawOutput>) -> Output {
    let default = Output::default();
    let Some(raw) = raw else { return default };
    let scores = match raw.scores.as_deref() {
        None | Some("sample") => ScoresFile::Sample,
        Some("all") => ScoresFile::All,
        Some("none") => ScoresFile::None,
        Some(other) => {
            c.problem(
                &format!("output.scores = \"{other}\""),
                "is not a way to write scores.parquet",
                Some("use \"sample\" (the default), \"all\" or \"none\"".into()),
            );
            ScoresFile::Sample
        }
    };
    let max_score_rows = c.int("output.max_score_rows", raw.max_score_rows, default.max_score_rows as usize, (1, i64::MAX), "rows") as u64;
    Output { scores, max_score_rows }
}

fn scoring(c: &mut Checker, raw: Option<&RawScoring>) -> Scoring {
    let default = Scoring::default();
    let Some(raw) = raw else { return default };
    let batch_rows = c.int("scoring.batch_rows", raw.batch_rows, default.batch_rows, (1, 1 << 20), "rows per batch");
    let threads = c.int("scoring.threads", raw.threads, default.threads, (0, 1024), "threads (0 = one per core)");
    let latency_warmup = c.int("scoring.latency_warmup", raw.latency_warmup, default.latency_warmup, (0, 100_000), "warm-up runs");
    let latency_sample = match raw.latency_sample {
        None => default.latency_sample,
        Some(v) if (0.0..=1.0).contains(&v) => v,
        Some(v) => {
            c.problem(
                &format!("scoring.latency_sample = {v}"),
                "a share of requests must be in [0, 1]",
                Some("0.01 measures one request in a hundred".into()),
            );
            default.latency_sample
        }
    };
    Scoring { batch_rows, threads, latency_sample, latency_warmup }
}
