//! Kayenta: a canary config (JSON, as Kayenta's API stores it) judged by the NetflixACAJudge rules
//! ([`crate::stats::kayenta`]) the way Spinnaker's canary stage runs it.
//!
//! The candidate serves a fixed share (`controller.kayenta.weight`) from the first request. After
//! `begin_after`, a judgment every `interval` compares the two arms' metric series (one value per
//! `step`, the resolution a Kayenta metrics query returns) over everything since the analysis began,
//! or the last `lookback`. Per metric: NaN steps are removed (`nanStrategy: remove`, the default)
//! or set to 0 (`replace`); with `outliers.strategy: remove` values beyond `outlierFactor` (3)
//! interquartile ranges from the quartiles go (Kayenta's IQR detector as its judge runs it,
//! [`crate::stats::kayenta::iqr_outliers`]); then the Mann-Whitney classifier and the weighted
//! group score. An interim score
//! below `marginal` fails the canary at once; the last judgment, at the end of `lifetime`, must reach
//! `pass` to promote.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::probe::{Probe, Schedule};
use super::spec::{KayentaSettings, Mapping, Reader, Spec};
use super::{Emulated, Events};
use crate::simulate::Outcome;
use crate::stats::kayenta::{transform, Direction, EffectMeasure, Judge, MetricConfig};
use crate::time::{format_duration, Micros};

#[derive(Debug, Clone, PartialEq)]
pub struct KayentaMetric {
    pub config: MetricConfig,
    /// `outliers.strategy: remove` with this factor.
    pub outlier_factor: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CanaryConfig {
    pub name: String,
    pub file: String,
    pub metrics: Vec<KayentaMetric>,
    pub group_weights: BTreeMap<String, f64>,
    /// `classifier.scoreThresholds`: (pass, marginal), used when neither `[controller.kayenta]` nor
    /// an execution request sets them (as Kayenta uses them when the request does not).
    pub thresholds: Option<(f64, f64)>,
}

/// `thresholds` of an execution request: (pass, marginal).
pub(crate) fn thresholds(r: &mut Reader, json: &Json) -> Option<(f64, f64)> {
    let t = &json["thresholds"];
    match (t["pass"].as_f64(), t["marginal"].as_f64()) {
        (Some(p), Some(m)) => Some((p, m)),
        _ => {
            r.problem(
                "thresholds",
                "needs numeric pass and marginal scores",
                Some("write \"thresholds\": {\"pass\": 95, \"marginal\": 75}"),
            );
            None
        }
    }
}

pub(crate) fn read(r: &mut Reader, json: &Json) -> Option<CanaryConfig> {
    let before = r.problems.len();
    let Some(metrics) = json["metrics"].as_array() else {
        r.problem(
            "metrics",
            "is missing: not a Kayenta canary config",
            Some("a canary config lists metrics with analysisConfigurations.canary; an execution request holds thresholds"),
        );
        return None;
    };
    let number = |r: &mut Reader, v: &Json, path: &str, default: f64| -> f64 {
        match v {
            Json::Null => default,
            other => other.as_f64().unwrap_or_else(|| {
                r.problem(path, format!("expected a number, found {other}"), None);
                default
            }),
        }
    };
    // Only Kayenta's NetflixACAJudge is emulated; another judge (the dummy `dredd-v1.0`, one of
    // your own) would decide differently.
    if let Some(judge) = json["judge"]["name"].as_str().filter(|j| !j.starts_with("NetflixACAJudge")) {
        r.problem(
            "judge.name",
            format!("\"{judge}\" is not a judge canary-replay emulates"),
            Some("canary-replay emulates Kayenta's NetflixACAJudge-v1.0: use it, or leave judge out"),
        );
    }
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, m) in metrics.iter().enumerate() {
        let name = m["name"].as_str().unwrap_or("").to_string();
        let path = format!("metrics[{i}] ({name})");
        if name.is_empty() {
            r.problem(&format!("metrics[{i}].name"), "is missing", None);
        } else if !seen.insert(name.clone()) {
            // Kayenta refuses such a config: a metric's results are keyed by its name.
            r.problem(
                &format!("metrics[{i}].name"),
                format!("\"{name}\" names a second metric; Kayenta refuses a canary config whose metric names repeat"),
                Some("give each metric its own name"),
            );
        }
        let canary = &m["analysisConfigurations"]["canary"];
        let direction = match canary["direction"].as_str().unwrap_or("either") {
            "increase" => Direction::Increase,
            "decrease" => Direction::Decrease,
            "either" => Direction::Either,
            other => {
                r.problem(
                    &format!("{path}.analysisConfigurations.canary.direction"),
                    format!("\"{other}\" is not a direction"),
                    Some("use increase, decrease or either"),
                );
                Direction::Either
            }
        };
        let effect = &canary["effectSize"];
        let at = |k: &str| format!("{path}.analysisConfigurations.canary.effectSize.{k}");
        let effect_size = (
            number(r, &effect["allowedDecrease"], &at("allowedDecrease"), 1.0),
            number(r, &effect["allowedIncrease"], &at("allowedIncrease"), 1.0),
        );
        let critical_effect_size = (
            number(r, &effect["criticalDecrease"], &at("criticalDecrease"), 1.0),
            number(r, &effect["criticalIncrease"], &at("criticalIncrease"), 1.0),
        );
        let measure = match effect["measure"].as_str().unwrap_or("meanRatio") {
            "meanRatio" => EffectMeasure::MeanRatio,
            "cles" => EffectMeasure::Cles,
            other => {
                r.problem(
                    &at("measure"),
                    format!("\"{other}\" is not an effect-size measure Kayenta knows"),
                    Some("use meanRatio (the default) or cles"),
                );
                EffectMeasure::MeanRatio
            }
        };
        let replace_nan = match canary["nanStrategy"].as_str().unwrap_or("remove") {
            "remove" => false,
            "replace" => true,
            other => {
                r.problem(
                    &format!("{path}.analysisConfigurations.canary.nanStrategy"),
                    format!("\"{other}\" is not a NaN strategy"),
                    Some("use remove or replace"),
                );
                false
            }
        };
        let outliers = &canary["outliers"];
        let outlier_factor = match outliers["strategy"].as_str().unwrap_or("keep") {
            "keep" => None,
            "remove" => {
                Some(number(r, &outliers["outlierFactor"], &format!("{path}.analysisConfigurations.canary.outliers.outlierFactor"), 3.0))
            }
            other => {
                r.problem(
                    &format!("{path}.analysisConfigurations.canary.outliers.strategy"),
                    format!("\"{other}\" is not an outlier strategy"),
                    Some("use keep or remove"),
                );
                None
            }
        };
        let groups: Vec<String> =
            m["groups"].as_array().map(|g| g.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default();
        out.push(KayentaMetric {
            config: MetricConfig {
                name,
                groups: if groups.is_empty() { vec!["default".into()] } else { groups },
                direction,
                critical: canary["critical"].as_bool().unwrap_or(false),
                must_have_data: canary["mustHaveData"].as_bool().unwrap_or(false),
                effect_size,
                measure,
                critical_effect_size,
                // Muted at the metric (as Spinnaker's UI stores it) or in its canary analysis settings.
                muted: m["muted"].as_bool().or(canary["muted"].as_bool()).unwrap_or(false),
                replace_nan,
            },
            outlier_factor,
        });
    }
    let mut group_weights = BTreeMap::new();
    if let Some(w) = json["classifier"]["groupWeights"].as_object() {
        for (g, v) in w {
            group_weights.insert(g.clone(), number(r, v, &format!("classifier.groupWeights.{g}"), 0.0));
        }
    }
    let total: f64 = group_weights.values().sum();
    if total > 100.0 + 1e-9 {
        r.problem("classifier.groupWeights", format!("the weights add up to {total}, over 100"), None);
    }
    let score_thresholds = &json["classifier"]["scoreThresholds"];
    let thresholds = match score_thresholds {
        Json::Null => None,
        t => match (t["pass"].as_f64(), t["marginal"].as_f64()) {
            (Some(p), Some(m)) => Some((p, m)),
            _ => {
                r.problem(
                    "classifier.scoreThresholds",
                    format!("needs numeric pass and marginal scores, found {t}"),
                    Some("write \"scoreThresholds\": {\"pass\": 95, \"marginal\": 75}"),
                );
                None
            }
        },
    };
    let name = json["name"].as_str().unwrap_or("unnamed").to_string();
    (r.problems.len() == before).then(|| CanaryConfig { name, file: r.file.clone(), metrics: out, group_weights, thresholds })
}

pub fn emulate(config: &CanaryConfig, spec: &Spec, probe: &Probe, origin: Micros, end: Micros) -> Emulated {
    let settings: &KayentaSettings = spec.kayenta.as_ref().expect("validated: a Kayenta config comes with settings");
    // The request's thresholds (or [controller.kayenta]'s), else the config's own, else Kayenta's.
    let (pass, marginal, caveats) = match (settings.thresholds_given, config.thresholds) {
        (false, Some((pass, marginal))) => (pass, marginal, Vec::new()),
        (false, None) => (
            settings.pass,
            settings.marginal,
            vec![format!("no score thresholds given (classifier.scoreThresholds, an execution request, or pass and marginal in [controller.kayenta]): pass {} and marginal {} assumed", settings.pass, settings.marginal)],
        ),
        (true, _) => (settings.pass, settings.marginal, Vec::new()),
    };
    let judge =
        Judge { group_weights: config.group_weights.clone(), pass_threshold: pass, marginal_threshold: marginal, ..Judge::default() };
    let configs: Vec<MetricConfig> = config.metrics.iter().map(|m| m.config.clone()).collect();
    let mappings: Vec<Mapping> =
        config.metrics.iter().map(|m| spec.mapping_of(&config.file, &m.config.name).expect("validated: every metric is mapped")).collect();
    let mut events = Events::default();
    let mut schedule = Schedule::default();
    schedule.set(origin, settings.weight);
    events.push(
        origin,
        &schedule,
        format!(
            "canary at {}% of traffic; judged every {} over a lifetime of {}",
            settings.weight * 100.0,
            format_duration(settings.interval),
            format_duration(settings.lifetime)
        ),
    );
    let start = origin + settings.begin_after;
    let last = start + settings.lifetime;
    let finish = |outcome: Outcome, at: Micros, reason: String, window: (Micros, Micros), schedule: Schedule, events: Events| {
        Emulated::decided(outcome, at, reason, window, schedule, events, caveats.clone())
    };
    let mut t = start;
    loop {
        t = (t + settings.interval).min(last);
        if t > end {
            let reason = format!("the traffic ended before the canary's lifetime of {}", format_duration(settings.lifetime));
            return finish(Outcome::Held, end, reason, (start, end), schedule, events);
        }
        let from = settings.lookback.map_or(start, |l| (t - l).max(start));
        let series = probe.series(&mappings, from, t, settings.step, &schedule);
        let classified = config
            .metrics
            .iter()
            .zip(&series)
            .map(|(m, [stable, candidate])| {
                judge.classify(
                    &m.config,
                    &transform(stable, m.config.replace_nan, m.outlier_factor),
                    &transform(candidate, m.config.replace_nan, m.outlier_factor),
                )
            })
            .collect();
        let result = judge.score(&configs, classified);
        let failing: Vec<String> = result
            .metrics
            .iter()
            .filter(|m| !matches!(m.label, crate::stats::kayenta::Label::Pass))
            .map(|m| format!("{} {:?}", m.metric, m.label))
            .collect();
        let detail = if failing.is_empty() { "every metric passes".to_string() } else { failing.join(", ") };
        let why = result.reason.as_ref().map_or(String::new(), |r| format!(" ({r})"));
        let final_judgment = t >= last;
        events.measurement(
            t,
            &schedule,
            format!("{} judgment: score {}{why}; {detail}", if final_judgment { "final" } else { "interim" }, result.score),
            true,
        );
        if final_judgment {
            return if result.score >= pass {
                finish(Outcome::Promoted, t, format!("final score {} reaches pass {pass}", result.score), (from, t), schedule, events)
            } else {
                finish(
                    Outcome::RolledBack,
                    t,
                    format!("final score {} is below pass {pass}{why}: {detail}", result.score),
                    (from, t),
                    schedule,
                    events,
                )
            };
        }
        if result.score < marginal {
            return finish(
                Outcome::RolledBack,
                t,
                format!("interim score {} is below marginal {marginal}{why}: {detail}", result.score),
                (from, t),
                schedule,
                events,
            );
        }
    }
}
