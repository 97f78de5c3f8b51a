//! The scenario's `[controller]` section: which controller files to emulate, how their metrics map
//! onto canary-replay's, and the canary-stage settings a Kayenta config does not hold. Every
//! problem names the file and key (or YAML/JSON path) and the fix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod loaded;
pub(crate) mod yaml;

#[cfg(test)]
pub(super) use loaded::metric_for;
use loaded::{kayenta_settings, unmapped, validate_mapping, Loaded};

use super::{flagger, kayenta, rollout};
use crate::error::{did_you_mean, Problem};
use crate::policy::Metric;
use crate::time::{parse_duration, Micros};

pub use crate::scenario::raw::{RawController, RawKayenta, RawMapping};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMappingFile {
    #[serde(default)]
    metrics: BTreeMap<String, RawMapping>,
    kayenta: Option<RawKayenta>,
    resume_paused_after: Option<String>,
}

/// Which arm a controller's query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arm {
    Candidate,
    Stable,
    /// candidate − stable.
    Difference,
    /// candidate / stable.
    Ratio,
}

/// One controller metric as a canary-replay metric: `value × scale + offset` on `arm`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    pub metric: Metric,
    pub arm: Arm,
    pub scale: f64,
    pub offset: f64,
    /// The query's lookback; default: the range selector in the query (`[5m]`), else the interval.
    pub window: Option<Micros>,
}

impl Mapping {
    pub fn describe(&self) -> String {
        let arm = match self.arm {
            Arm::Candidate => "candidate",
            Arm::Stable => "stable",
            Arm::Difference => "candidate − stable",
            Arm::Ratio => "candidate / stable",
        };
        let mut s = format!("{} ({arm})", self.metric.name());
        if self.scale != 1.0 || self.offset != 0.0 {
            s.push_str(&format!(" × {} + {}", self.scale, self.offset));
        }
        s
    }
}

/// What Spinnaker's canary stage holds and Kayenta's config does not.
#[derive(Debug, Clone, PartialEq)]
pub struct KayentaSettings {
    /// Candidate traffic share during the canary (a fraction).
    pub weight: f64,
    /// Time between interim judgments.
    pub interval: Micros,
    pub lifetime: Micros,
    pub begin_after: Micros,
    /// Judge only the last `lookback` (default: everything since the analysis began).
    pub lookback: Option<Micros>,
    /// The metric series' resolution.
    pub step: Micros,
    pub pass: f64,
    pub marginal: f64,
    /// Whether `[controller.kayenta]` or an execution request set `pass` and `marginal`; if not, a
    /// canary config's own `classifier.scoreThresholds` apply to it, else Kayenta's 95 / 75.
    pub thresholds_given: bool,
}

#[derive(Debug, Clone)]
pub enum Controller {
    Argo(rollout::Rollout),
    Flagger(flagger::Canary),
    Kayenta(kayenta::CanaryConfig),
}

/// Which controller: as `summary.json` names it (`argo_rollouts`, `flagger`, `kayenta`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControllerKind {
    ArgoRollouts,
    Flagger,
    Kayenta,
}

impl Controller {
    pub fn kind(&self) -> ControllerKind {
        match self {
            Controller::Argo(_) => ControllerKind::ArgoRollouts,
            Controller::Flagger(_) => ControllerKind::Flagger,
            Controller::Kayenta(_) => ControllerKind::Kayenta,
        }
    }

    /// The names of the metrics it measures, each once, in the order the files give them.
    pub fn metric_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        let all: Vec<&String> = match self {
            Controller::Argo(r) => r.metrics().map(|m| &m.name).collect(),
            Controller::Flagger(c) => c.metrics.iter().map(|m| &m.name).collect(),
            Controller::Kayenta(k) => k.metrics.iter().map(|m| &m.config.name).collect(),
        };
        for name in all {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }

    /// The candidate weights it can route at (the fast path's summaries cut their hash bands there).
    pub fn weights(&self, spec: &Spec) -> Vec<f64> {
        match self {
            Controller::Argo(r) => {
                r.steps.iter().filter_map(|s| if let rollout::Step::SetWeight(w) = s { Some(*w) } else { None }).collect()
            }
            Controller::Flagger(c) => c.weights(),
            Controller::Kayenta(_) => spec.kayenta.iter().map(|k| k.weight).collect(),
        }
    }

    /// The mapping of its metric `name`: the scenario's ([`Spec::mapping_of`]), else — for a
    /// Flagger canary — Flagger's built-in `request-success-rate` and `request-duration`.
    pub fn mapping(&self, spec: &Spec, name: &str) -> Option<Mapping> {
        spec.mapping_of(self.file(), name).or_else(|| if matches!(self, Controller::Flagger(_)) { flagger::builtin(name) } else { None })
    }

    /// The file it was read from, as listed.
    pub fn file(&self) -> &str {
        match self {
            Controller::Argo(r) => &r.file,
            Controller::Flagger(c) => &c.file,
            Controller::Kayenta(k) => &k.file,
        }
    }

    /// "Rollout x", "Canary x", "canary config x": the resource, for messages.
    pub fn owner(&self) -> String {
        match self {
            Controller::Argo(r) => format!("Rollout {}", r.name),
            Controller::Flagger(c) => format!("Canary {}", c.name),
            Controller::Kayenta(k) => format!("canary config {}", k.name),
        }
    }

    /// "Argo Rollouts: Rollout x (file)".
    pub fn title(&self) -> String {
        let (product, file) = match self {
            Controller::Argo(r) => ("Argo Rollouts", &r.file),
            Controller::Flagger(c) => ("Flagger", &c.file),
            Controller::Kayenta(k) => ("Kayenta", &k.file),
        };
        format!("{product}: {} ({file})", self.owner())
    }
}

/// What one controller metric's queries see ([`Spec::traffic_notes`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficNote {
    pub text: String,
    /// Fewer than [`SPARSE_QUERY`] candidate requests a window: a warning.
    pub sparse: bool,
}

/// Candidate requests a query window should hold for a rate or quantile over it to mean much;
/// fewer, and `check` and the report warn.
pub const SPARSE_QUERY: f64 = 30.0;

/// The validated `[controller]` section.
#[derive(Debug, Clone)]
pub struct Spec {
    pub controllers: Vec<Controller>,
    pub mapping: BTreeMap<String, Mapping>,
    pub kayenta: Option<KayentaSettings>,
    pub resume_paused_after: Option<Micros>,
    /// The segment (column, values) standing for Flagger's `match`.
    pub ab_segment: Option<(String, Vec<String>)>,
}

impl Spec {
    /// The candidate weights its controllers route at and the canary-replay metrics their queries
    /// read: what the fast path's index must cut at and keep for them.
    pub fn reads(&self) -> (Vec<f64>, Vec<Metric>) {
        let weights = self.controllers.iter().flat_map(|c| c.weights(self)).collect();
        let metrics = self
            .controllers
            .iter()
            .flat_map(|c| c.metric_names().into_iter().filter_map(|name| c.mapping(self, &name)))
            .map(|m| m.metric)
            .collect();
        (weights, metrics)
    }

    /// Per controller metric, the window one query reads: the mapping's `window`, else the query's
    /// range selector or the metric's interval (Argo), the analysis interval (Flagger), the series
    /// step (Kayenta); `default_window` where none says.
    pub fn query_windows(&self, default_window: Micros) -> Vec<(&Controller, String, Micros)> {
        let mut out: Vec<(&Controller, String, Micros)> = Vec::new();
        for c in &self.controllers {
            let windows: Vec<(&str, Micros)> = match c {
                Controller::Argo(r) => {
                    r.metrics().map(|m| (m.name.as_str(), m.lookback.or(m.interval).unwrap_or(default_window))).collect()
                }
                Controller::Flagger(f) => f.metrics.iter().map(|m| (m.name.as_str(), m.interval)).collect(),
                Controller::Kayenta(k) => {
                    k.metrics.iter().map(|m| (m.config.name.as_str(), self.kayenta.as_ref().map_or(default_window, |s| s.step))).collect()
                }
            };
            for (name, window) in windows {
                let window = c.mapping(self, name).and_then(|m| m.window).unwrap_or(window);
                if !out.iter().any(|(o, n, _)| std::ptr::eq(*o, c) && n == name) {
                    out.push((c, name.to_string(), window));
                }
            }
        }
        out
    }

    /// What each controller metric's queries see at the log's traffic (`per_hour` requests an
    /// hour, latency measured on `latency_sample` of them): the candidate's requests expected in
    /// one query window at the controller's first canary weight, and a warning where that is too
    /// few — the live controller would see no data, or a rate of a handful of requests, and fail
    /// or stall on it within minutes, as the emulation then does.
    pub fn traffic_notes(&self, per_hour: f64, latency_sample: f64, default_window: Micros) -> Vec<TrafficNote> {
        let mut notes = Vec::new();
        for (controller, name, window) in self.query_windows(default_window) {
            let Some(mapping) = controller.mapping(self, &name) else { continue };
            let owner = controller.owner();
            let weight = controller.weights(self).into_iter().find(|w| *w > 0.0).unwrap_or(1.0);
            let latency = mapping.metric.name().starts_with("latency");
            let measured = if latency { latency_sample } else { 1.0 };
            let expected = per_hour * window as f64 / crate::time::MICROS_PER_HOUR as f64 * weight * measured;
            let what = if latency { "requests with a measured latency" } else { "requests" };
            let base = format!(
                "{owner}: metric \"{name}\" ({}) queries {} at a time: about {expected:.1} candidate {what} a window at {:.0}% of this log's {per_hour:.0} requests an hour",
                mapping.metric.name(),
                crate::time::format_duration(window),
                weight * 100.0
            );
            let text = if expected < 1.0 {
                format!("{base}; most windows hold none, so the query returns no data and the controller errors or waits, as the real one would on this traffic (widen the query window, or map the metric with a longer `window`)")
            } else if expected < SPARSE_QUERY {
                format!("{base}; a rate or quantile over so few swings widely, so the condition can fail or pass by chance")
            } else {
                base
            };
            notes.push(TrafficNote { text, sparse: expected < SPARSE_QUERY });
        }
        notes
    }

    /// The scenario's mapping of metric `name` of the controller in `file`: `"<file>:<name>"` (the
    /// file as listed, or its name alone) first, so two controllers' metrics of one name — a
    /// latency in ms and one in s — can map apart; then `name`. (Flagger's built-in metrics are
    /// added by [`Controller::mapping`], for Flagger canaries only.)
    pub fn mapping_of(&self, file: &str, name: &str) -> Option<Mapping> {
        let base = Path::new(file).file_name().and_then(|f| f.to_str()).unwrap_or(file);
        [format!("{file}:{name}"), format!("{base}:{name}"), name.to_string()].iter().find_map(|key| self.mapping.get(key).cloned())
    }
}

/// Problems of one file, each at a key path.
pub(crate) struct Reader<'p> {
    pub file: String,
    pub problems: &'p mut Vec<Problem>,
}

impl Reader<'_> {
    pub fn problem(&mut self, path: &str, message: impl Into<String>, fix: Option<&str>) {
        let mut p = Problem::new(if path.is_empty() { self.file.clone() } else { format!("{}: {path}", self.file) }, message);
        p.fix = fix.map(str::to_string);
        self.problems.push(p);
    }

    pub fn duration(&mut self, path: &str, text: &str) -> Option<Micros> {
        match parse_duration(text) {
            Ok(d) if d >= 0 => Some(d),
            Ok(_) => {
                self.problem(path, format!("\"{text}\" is negative"), None);
                None
            }
            Err(e) => {
                self.problem(path, e, None);
                None
            }
        }
    }
}

/// Reads `[controller]`: the files it names, the mapping, and the settings. Paths are relative to
/// `dir` (the scenario's folder); `file` names the scenario in messages.
/// `segments` are the traffic's segment columns (for `ab_segment`).
pub fn load(
    raw: &RawController,
    dir: &Path,
    file: &str,
    default_step: Micros,
    segments: &[String],
    problems: &mut Vec<Problem>,
) -> Option<Spec> {
    let before = problems.len();
    let mut r = Reader { file: file.to_string(), problems };
    let mut metrics = BTreeMap::new();
    let mut kayenta_raw = raw.kayenta.clone();
    let mut resume = raw.resume_paused_after.clone();
    if let Some(mapping) = &raw.mapping {
        let path = dir.join(mapping);
        let key = format!("{file}: controller.mapping");
        match std::fs::read_to_string(&path) {
            Err(e) => r.problems.push(
                Problem::new(key, format!("cannot read \"{mapping}\" ({}): {e}", path.display()))
                    .fix("relative paths are resolved against the scenario file's folder"),
            ),
            Ok(text) => match toml::from_str::<RawMappingFile>(&text) {
                Err(e) => r
                    .problems
                    .push(Problem::new(path.display().to_string(), format!("is not a mapping file: {}", e.to_string().trim_end()))),
                Ok(shared) => {
                    let shown = path.display().to_string();
                    for (name, m) in &shared.metrics {
                        if let Some(m) =
                            validate_mapping(&mut Reader { file: shown.clone(), problems: r.problems }, &format!("metrics.{name}"), m)
                        {
                            metrics.insert(name.clone(), m);
                        }
                    }
                    kayenta_raw = match (kayenta_raw, shared.kayenta) {
                        (Some(own), Some(file)) => Some(own.over(file)),
                        (own, file) => own.or(file),
                    };
                    resume = resume.or(shared.resume_paused_after);
                }
            },
        }
    }
    // The scenario's own entries override the shared file's.
    for (name, m) in &raw.metrics {
        if let Some(m) = validate_mapping(&mut r, &format!("controller.metrics.{name}"), m) {
            metrics.insert(name.clone(), m);
        }
    }
    let resume_paused_after = resume.as_deref().and_then(|d| r.duration("controller.resume_paused_after", d));

    let mut loaded = Loaded::default();
    let from_scenario = raw.files.len().saturating_sub(raw.from_flag);
    for (i, name) in raw.files.iter().enumerate() {
        let path: PathBuf = dir.join(name);
        let shown = name.clone();
        match std::fs::read_to_string(&path) {
            Err(e) if i >= from_scenario => r.problems.push(
                Problem::new(format!("--controller {name}"), format!("cannot be read: {e}"))
                    .fix("paths given with --controller are relative to the working folder"),
            ),
            Err(e) => r.problems.push(
                Problem::new(format!("{file}: controller.files[{i}]"), format!("cannot read \"{name}\" ({}): {e}", path.display()))
                    .fix("relative paths are resolved against the scenario file's folder"),
            ),
            Ok(text) => loaded.read(&mut Reader { file: shown, problems: r.problems }, &text),
        }
    }
    let controllers = loaded.resolve(&mut r, if raw.from_flag > 0 && from_scenario == 0 { "--controller" } else { "controller.files" });
    let kayenta = if controllers.iter().any(|c| matches!(c, Controller::Kayenta(_))) {
        kayenta_settings(&mut r, kayenta_raw.unwrap_or_default(), loaded.thresholds, default_step)
    } else {
        None
    };
    let ab_segment = match raw.ab_segment.as_ref().map(|m| m.iter().collect::<Vec<_>>()) {
        None => None,
        Some(entries) if entries.len() == 1 && segments.contains(entries[0].0) && !entries[0].1.is_empty() => {
            Some((entries[0].0.clone(), entries[0].1.clone()))
        }
        Some(_) => {
            r.problem(
                "controller.ab_segment",
                "must name one segment column of traffic.segments with at least one value",
                Some(&format!(
                    "e.g. ab_segment = {{ {} = [\"...\"] }}; the segments: {}",
                    segments.first().map_or("origin", String::as_str),
                    if segments.is_empty() { "none".to_string() } else { segments.join(", ") }
                )),
            );
            None
        }
    };
    if controllers.iter().any(|c| matches!(c, Controller::Flagger(f) if f.ab)) && ab_segment.is_none() && raw.ab_segment.is_none() {
        r.problem(
            "controller.ab_segment",
            "is missing: a Flagger canary tests A/B (analysis.match), which routes requests by HTTP headers or cookies that the replayed log does not carry",
            Some("name the segment that stands for the matched requests, e.g. ab_segment = { carrier = [\"UA\"] }"),
        );
    }
    let spec = Spec { controllers, mapping: metrics, kayenta, resume_paused_after, ab_segment };
    for c in &spec.controllers {
        unmapped(&mut r, &spec, c);
    }
    (r.problems.len() == before).then_some(spec)
}
