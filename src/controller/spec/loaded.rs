//! What the controller files hold once read, and the metric mapping: each controller metric to a
//! canary-replay metric, from the scenario, a shared mapping file, or a fitting suggestion.

// The spec's types and the readers of the parent module.
use super::*;

/// Everything read from the files, before templates are resolved.
#[derive(Default)]
pub(super) struct Loaded {
    pub(super) rollouts: Vec<rollout::RawRollout>,
    pub(super) templates: BTreeMap<rollout::TemplateRef, rollout::Template>,
    pub(super) canaries: Vec<flagger::RawCanary>,
    pub(super) metric_templates: BTreeMap<String, String>,
    pub(super) kayenta: Vec<kayenta::CanaryConfig>,
    pub(super) thresholds: Option<(f64, f64)>,
    pub(super) read_any: bool,
}

impl Loaded {
    /// A Kayenta canary config, an execution request (its `thresholds`), or the ad-hoc request
    /// body `/canary` takes with both (`{canaryConfig, executionRequest}`).
    pub(super) fn read_kayenta(&mut self, r: &mut Reader, json: &serde_json::Value) {
        if let Some(config) = json.get("canaryConfig") {
            if let Some(request) = json.get("executionRequest").filter(|e| e.get("thresholds").is_some()) {
                self.thresholds = kayenta::thresholds(r, request);
            }
            self.kayenta.extend(kayenta::read(r, config));
        } else if json.get("thresholds").is_some() {
            self.thresholds = kayenta::thresholds(r, json);
        } else {
            self.kayenta.extend(kayenta::read(r, json));
        }
    }

    pub(super) fn read(&mut self, r: &mut Reader, text: &str) {
        self.read_any = true;
        if text.trim_start().starts_with('{') {
            match serde_json::from_str::<serde_json::Value>(text) {
                Err(e) => r.problem("", format!("is not valid JSON: {e}"), None),
                Ok(json) => self.read_kayenta(r, &json),
            }
            return;
        }
        // Every document parsed before any is read: a YAML error is the problem to report, not
        // what is missing from the documents before it.
        let mut documents = Vec::new();
        for (d, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            match serde_yaml::Value::deserialize(doc) {
                Ok(v) => documents.push(v),
                Err(e) => {
                    // `...` alone on a line ends a YAML document: in a copied snippet it usually
                    // stands for omitted fields.
                    match text.lines().position(|l| l.trim_end() == "...") {
                        Some(line) if text.lines().skip(line + 1).any(|l| !l.trim().is_empty() && !l.starts_with("---")) => r.problem(
                            &format!("line {}", line + 1),
                            format!("`...` ends the YAML document, and more of it follows ({e})"),
                            Some("if `...` stands for omitted fields, fill them in or delete the line"),
                        ),
                        _ => r.problem(&format!("document {}", d + 1), format!("is not valid YAML: {e}"), None),
                    }
                    return;
                }
            }
        }
        let mut any = false;
        for (d, value) in documents.into_iter().enumerate() {
            if value.is_null() {
                continue;
            }
            any = true;
            let kind = yaml::get(&value, "kind").and_then(|k| k.as_str()).unwrap_or("");
            // A Kayenta canary config (or execution request) written in YAML: no kind, Kayenta's keys.
            if kind.is_empty() && ["metrics", "canaryConfig", "thresholds"].iter().any(|k| yaml::get(&value, k).is_some()) {
                match serde_json::to_value(&value) {
                    Ok(json) => self.read_kayenta(r, &json),
                    Err(e) => r.problem(&format!("document {}", d + 1), format!("cannot be read as a Kayenta canary config: {e}"), None),
                }
                continue;
            }
            let at = format!("document {} (kind {})", d + 1, if kind.is_empty() { "missing" } else { kind });
            match kind {
                "Rollout" => self.rollouts.extend(rollout::read_rollout(r, &value, &at)),
                "AnalysisTemplate" | "ClusterAnalysisTemplate" => {
                    if let Some(t) = rollout::read_template(r, &value, &at, kind == "ClusterAnalysisTemplate") {
                        self.templates.insert(rollout::TemplateRef { cluster: t.cluster, name: t.name.clone() }, t);
                    }
                }
                "Canary" => self.canaries.extend(flagger::read_canary(r, &value, &at)),
                "MetricTemplate" => {
                    if let Some((name, query)) = flagger::read_metric_template(&value) {
                        self.metric_templates.insert(name, query);
                    }
                }
                other => r.problem(
                    &at,
                    format!("kind \"{other}\" is not a controller resource canary-replay emulates"),
                    Some("use Rollout and AnalysisTemplate (Argo Rollouts), Canary and MetricTemplate (Flagger), or a Kayenta canary config in JSON"),
                ),
            }
        }
        if !any {
            r.problem("", "holds no document", None);
        }
    }

    /// `files_key` names where the files were given (`controller.files` or `--controller`).
    pub(super) fn resolve(&mut self, r: &mut Reader, files_key: &str) -> Vec<Controller> {
        let mut out = Vec::new();
        for raw in std::mem::take(&mut self.rollouts) {
            out.extend(rollout::resolve(r, raw, &self.templates).map(Controller::Argo));
        }
        for raw in std::mem::take(&mut self.canaries) {
            out.extend(flagger::resolve(r, raw, &self.metric_templates).map(Controller::Flagger));
        }
        out.extend(std::mem::take(&mut self.kayenta).into_iter().map(Controller::Kayenta));
        if out.is_empty() && r.problems.is_empty() && self.read_any {
            r.problem(files_key, "the files hold no Rollout, Canary or Kayenta canary config", None);
        }
        out
    }
}

pub(super) fn validate_mapping(r: &mut Reader, key: &str, raw: &RawMapping) -> Option<Mapping> {
    let metric = Metric::ALL.iter().copied().find(|m| m.name() == raw.metric);
    if metric.is_none() {
        let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
        let hint = did_you_mean(&raw.metric, names.iter().copied())
            .map_or_else(|| format!("one of {}", names.join(", ")), |m| format!("did you mean \"{m}\"?"));
        r.problem(&format!("{key}.metric"), format!("\"{}\" is not a canary-replay metric", raw.metric), Some(&hint));
    }
    let arm = match raw.arm.as_deref().unwrap_or("candidate") {
        "candidate" => Some(Arm::Candidate),
        "stable" => Some(Arm::Stable),
        "difference" => Some(Arm::Difference),
        "ratio" => Some(Arm::Ratio),
        other => {
            r.problem(
                &format!("{key}.arm"),
                format!("\"{other}\" is not an arm"),
                Some("use candidate, stable, difference (candidate − stable) or ratio (candidate / stable)"),
            );
            None
        }
    };
    let window = raw.window.as_deref().and_then(|w| r.duration(&format!("{key}.window"), w));
    if window == Some(0) {
        r.problem(&format!("{key}.window"), "a query window must be longer than 0", None);
    }
    let scale = raw.scale.unwrap_or(1.0);
    let offset = raw.offset.unwrap_or(0.0);
    if !scale.is_finite() || !offset.is_finite() {
        r.problem(key, "scale and offset must be finite numbers", None);
    }
    Some(Mapping { metric: metric?, arm: arm?, scale, offset, window })
}

pub(super) fn kayenta_settings(
    r: &mut Reader,
    raw: RawKayenta,
    thresholds: Option<(f64, f64)>,
    default_step: Micros,
) -> Option<KayentaSettings> {
    let before = r.problems.len();
    let weight = raw.weight.unwrap_or(10.0);
    if !(weight > 0.0 && weight < 100.0) {
        r.problem(&format!("controller.kayenta.weight = {weight}"), "the canary's traffic share must be a percent in (0, 100)", None);
    }
    let Some(lifetime_text) = raw.lifetime.as_deref() else {
        r.problem(
            "controller.kayenta.lifetime",
            "is missing: how long the canary ran (Spinnaker's lifetimeDuration)",
            Some("add e.g. lifetime = \"3d\" under [controller.kayenta]"),
        );
        return None;
    };
    let lifetime = r.duration("controller.kayenta.lifetime", lifetime_text).unwrap_or(0);
    let interval = raw.interval.as_deref().map_or(Some(lifetime), |d| r.duration("controller.kayenta.interval", d)).unwrap_or(lifetime);
    let begin_after = raw.begin_after.as_deref().and_then(|d| r.duration("controller.kayenta.begin_after", d)).unwrap_or(0);
    let lookback = raw.lookback.as_deref().and_then(|d| r.duration("controller.kayenta.lookback", d));
    let step = raw.step.as_deref().map_or(Some(default_step), |d| r.duration("controller.kayenta.step", d)).unwrap_or(default_step);
    for (key, d) in [("lifetime", lifetime), ("interval", interval), ("step", step)] {
        if d <= 0 {
            r.problem(&format!("controller.kayenta.{key}"), "must be longer than 0", None);
        }
    }
    let (pass, marginal) = match (raw.pass, raw.marginal, thresholds) {
        (Some(p), Some(m), _) => (p, m),
        (p, m, Some((tp, tm))) => (p.unwrap_or(tp), m.unwrap_or(tm)),
        (p, m, None) => (p.unwrap_or(95.0), m.unwrap_or(75.0)),
    };
    if !(0.0..=100.0).contains(&marginal) || !(0.0..=100.0).contains(&pass) || marginal > pass {
        r.problem(
            "controller.kayenta",
            format!("score thresholds pass {pass} and marginal {marginal} must satisfy 0 ≤ marginal ≤ pass ≤ 100"),
            None,
        );
    }
    let thresholds_given = (raw.pass.is_some() && raw.marginal.is_some()) || thresholds.is_some();
    (r.problems.len() == before).then_some(KayentaSettings {
        weight: weight / 100.0,
        interval,
        lifetime,
        begin_after,
        lookback,
        step,
        pass,
        marginal,
        thresholds_given,
    })
}

/// The canary-replay metric a controller metric's name suggests: "request-duration-p99" →
/// latency_p99, "error-rate" → error_rate; error_rate when the name says nothing.
pub fn metric_for(name: &str) -> &'static str {
    let name = name.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| name.contains(w));
    if has(&["latency", "duration", "response-time", "response_time", "responsetime", "elapsed", "_ms", "-ms", "seconds"]) {
        if has(&["p99", "99"]) {
            "latency_p99"
        } else if has(&["p95", "95"]) {
            "latency_p95"
        } else if has(&["p50", "median"]) {
            "latency_p50"
        } else {
            "latency_mean"
        }
    } else if has(&["logloss", "log_loss", "log-loss", "cross-entropy", "crossentropy"]) {
        "log_loss"
    } else if has(&["auc"]) {
        "auc"
    } else if has(&["accuracy"]) {
        "accuracy"
    } else if has(&["brier"]) {
        "brier"
    } else if has(&["psi", "drift"]) {
        "score_psi"
    } else if has(&["score", "prediction"]) {
        "score_mean"
    } else {
        "error_rate"
    }
}

/// A problem for every metric of `controller` with no mapping.
pub(super) fn unmapped(r: &mut Reader, spec: &Spec, controller: &Controller) {
    let owner = controller.owner();
    for name in controller.metric_names() {
        if controller.mapping(spec, &name).is_none() {
            let known: Vec<&str> = spec.mapping.keys().map(String::as_str).collect();
            let hint =
                did_you_mean(&name, known.iter().copied()).map_or(String::new(), |k| format!(" (a mapping named \"{k}\" exists: a typo?)"));
            let metric = metric_for(&name);
            r.problem(
                "controller.metrics",
                format!("metric \"{name}\" of {owner} is not mapped to a canary-replay metric{hint}"),
                Some(&format!("add [controller.metrics.\"{name}\"] with metric = \"{metric}\" (or another), arm = \"candidate\", and scale/offset to match the query's units")),
            );
        }
    }
}
