//! The tuned policy for the controllers teams run live: an Argo Rollouts `AnalysisTemplate` with
//! the `Rollout` canary steps, a Flagger `Canary` analysis, and a Kayenta canary config with its
//! execution request. Every file opens with the mapping and with what the format cannot express.
//!
//! The mapping (also in docs/tuning.md):
//! - stages → Argo `setWeight` + `pause: {duration: bake}` steps; Flagger `stepWeights` rising
//!   strictly (Flagger advances one step per passing check, and a weight listed twice would stop
//!   it for good: its next step would be 0) with `analysis.interval` the longest bake; Kayenta
//!   has no ramp: its execution request covers the whole rollout.
//! - `check_every` → Argo metric `interval`, Kayenta's interval.
//! - a comparison gate (non-inferiority, regression) → a z-score query,
//!   z = (candidate − (1 ± margin)·stable) / SE, built from per-track sums, sums of squares and
//!   counts; it fails above z* = Φ⁻¹(1 − α/(looks × tests)): a Bonferroni bound over every look
//!   the analysis takes, because these controllers judge each measurement on its own and have no
//!   always-valid test. Non-inferiority also gets a success condition (z below −z*: proven inside
//!   the margin), so in Argo neither condition met is Inconclusive, as in canary-replay. Kayenta
//!   gets the metric with its direction and an effect size of 1 ± margin, judged by its own
//!   Mann-Whitney test.
//! - threshold and ratio gates → bounds on the candidate's value or on candidate / stable.
//! - `critical` → Argo `failureLimit: 0`, Kayenta `critical: true`; other gates get
//!   `failureLimit: total_failures − 1` (Argo fails a metric when failures exceed the limit) and
//!   Flagger `threshold: total_failures`.
//! - a monitored holdback → a last Argo `setWeight` at 100 − holdback with an indefinite pause.
//!
//! Queries are templates over recording rules named `model:<metric>:<sum|sum_squares|count>`
//! with a `track` label (`stable` / `canary`), over the check interval: replace them with your
//! own metrics.

use std::fmt::Write as _;

use serde_json::json;

use crate::policy::{Gate, GateKind, Policy};
use crate::stats::guardrail::Better;
use crate::stats::phi_inv;
use crate::time::Micros;

/// What the exports share: the policy, its looks and the z bound.
struct Plan<'a> {
    policy: &'a Policy,
    name: &'a str,
    /// Looks the analysis takes over the ramp (each stage's bake, in check intervals).
    looks: u64,
    /// Tests per look: comparison gates (all traffic only).
    tests: usize,
    z: f64,
}

impl<'a> Plan<'a> {
    fn new(policy: &'a Policy, name: &'a str) -> Self {
        let every = policy.ramp.check_every.max(1);
        let looks: u64 =
            policy.ramp.stages.iter().filter(|s| s.weight < 1.0).map(|s| (s.bake.max(every) / every) as u64).sum::<u64>().max(1);
        let tests = policy.gates.iter().filter(|g| g.kind.is_statistical()).count().max(1);
        let z = phi_inv(1.0 - policy.decision.alpha / (looks as f64 * tests as f64));
        Plan { policy, name, looks, tests, z }
    }

    fn interval(&self) -> String {
        go_duration(self.policy.ramp.check_every)
    }

    /// The parts canary-replay judged that these formats cannot carry.
    fn not_expressible(&self) -> Vec<String> {
        let p = self.policy;
        let mut lost = vec![
            format!(
                "always-valid sequential tests (mSPRT, α = {}) and the {:?} correction across gates and segments: replaced by a fixed z bound of {:.3} per look (Bonferroni over {} looks × {} tests), which is conservative",
                p.decision.alpha,
                p.decision.correction,
                self.z,
                self.looks,
                self.tests
            ),
            format!("consecutive failures ({} in a row roll back): these formats count failed measurements in total", p.decision.consecutive_failures),
        ];
        let segments: Vec<&str> = p.gates.iter().flat_map(|g| g.segments.iter().map(String::as_str)).collect();
        if !segments.is_empty() {
            let mut segments = segments;
            segments.sort_unstable();
            segments.dedup();
            lost.push(format!(
                "per-segment scopes ({}): judged on all traffic only; add one metric per segment value to keep them",
                segments.join(", ")
            ));
        }
        if p.gates.iter().any(|g| g.metric.needs_labels()) {
            lost.push("labels that arrive late: quality metrics must be computed on the labels that have arrived by each measurement, which your recording rules have to do".into());
        }
        lost.push(format!("promotion only when required gates pass after the bake, and `on_timeout = {}` at the maximum stage time {}: the controllers advance after the pause unless a metric failed", format!("{:?}", p.decision.on_timeout).to_lowercase(), go_duration(p.ramp.max_stage_time)));
        if p.ramp.holdback > 0.0 {
            lost.push(format!("the {}% monitored holdback with tests restarting every {}: Argo keeps the weight with an indefinite pause; Flagger and Kayenta cannot hold back", p.ramp.holdback * 100.0, go_duration(p.ramp.monitor_window)));
        }
        lost
    }
}

/// A Go duration (what Argo and Flagger parse): hours, minutes, seconds.
fn go_duration(micros: Micros) -> String {
    let mut secs = micros / crate::time::MICROS_PER_SECOND;
    let mut out = String::new();
    for (unit, size) in [("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            let _ = write!(out, "{}{unit}", secs / size);
            secs %= size;
        }
    }
    if out.is_empty() {
        "0s".into()
    } else {
        out
    }
}

/// A YAML double-quoted scalar.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

/// The gate's Kubernetes-safe name: `log-loss-non-inferiority`.
fn metric_name(gate: &Gate) -> String {
    gate.name().replace(['_', ' '], "-")
}

/// `model:<metric>:<part>{track="<track>"}` over the interval.
fn series(gate: &Gate, part: &str, track: &str, interval: &str) -> String {
    format!("sum(increase(model:{}:{part}{{track=\"{track}\"}}[{interval}]))", gate.metric.name())
}

fn mean(gate: &Gate, track: &str, interval: &str) -> String {
    format!("({} / {})", series(gate, "sum", track, interval), series(gate, "count", track, interval))
}

/// Variance of a track's mean: (Σx²/n − mean²)/n.
fn variance_of_mean(gate: &Gate, track: &str, interval: &str) -> String {
    let n = series(gate, "count", track, interval);
    format!("(({} / {n} - {}^2) / {n})", series(gate, "sum_squares", track, interval), mean(gate, track, interval))
}

/// The z-score of candidate − factor·stable, signed so that positive is harmful.
fn z_query(gate: &Gate, factor: f64, interval: &str) -> String {
    let harm = if gate.metric.better() == Some(Better::Higher) { -1.0 } else { 1.0 };
    format!(
        "{harm} * ({} - {factor} * {}) / sqrt({} + {factor}^2 * {})",
        mean(gate, "canary", interval),
        mean(gate, "stable", interval),
        variance_of_mean(gate, "canary", interval),
        variance_of_mean(gate, "stable", interval)
    )
}

/// (query, success condition, failure condition, what it means) of a gate, in Argo's `result[0]` terms.
fn judged(gate: &Gate, z: f64, interval: &str) -> (String, Option<String>, Option<String>, String) {
    let higher = gate.metric.better() == Some(Better::Higher);
    let bound = |min: Option<f64>, max: Option<f64>| -> Option<String> {
        let parts: Vec<String> =
            min.map(|m| format!("result[0] >= {m}")).into_iter().chain(max.map(|m| format!("result[0] <= {m}"))).collect();
        (!parts.is_empty()).then(|| parts.join(" && "))
    };
    match gate.kind {
        GateKind::Threshold { min, max } => {
            (mean(gate, "canary", interval), bound(min, max), None, "the candidate's value within the bounds".into())
        }
        GateKind::Ratio { min, max } => (
            format!("{} / {}", mean(gate, "canary", interval), mean(gate, "stable", interval)),
            bound(min, max),
            None,
            "candidate / stable within the bounds".into(),
        ),
        GateKind::NonInferiority { margin } => {
            let factor = if higher { 1.0 - margin } else { 1.0 + margin };
            (
                z_query(gate, factor, interval),
                Some(format!("result[0] < -{z:.4}")),
                Some(format!("result[0] > {z:.4}")),
                format!("z of candidate − {factor}·stable: fails when significantly worse than the {}% margin, passes when significantly inside it, else Inconclusive", margin * 100.0),
            )
        }
        GateKind::Regression => (
            z_query(gate, 1.0, interval),
            None,
            Some(format!("result[0] > {z:.4}")),
            "z of candidate − stable: fails when significantly worse".into(),
        ),
    }
}

fn header(plan: &Plan, format: &str) -> String {
    let mut s = format!("# {format}: canary policy tuned by `canary-replay tune` ({}).\n#\n# Not expressible in this format (canary-replay judged these; the controller will not):\n", plan.name);
    for lost in plan.not_expressible() {
        let _ = writeln!(s, "#  - {lost}");
    }
    s.push_str("#\n# Queries are templates over recording rules `model:<metric>:<sum|sum_squares|count>{track=\"stable\"|\"canary\"}`:\n# replace them with your own metrics. Mapping: see canary-replay's docs/tuning.md, \"Exporting a tuned policy\".\n");
    s
}

/// `argo-rollouts.yaml`: an AnalysisTemplate and the Rollout's canary strategy.
pub fn argo(policy: &Policy, name: &str) -> String {
    let plan = Plan::new(policy, name);
    let interval = plan.interval();
    let mut s = header(&plan, "Argo Rollouts AnalysisTemplate + Rollout canary steps");
    let _ = writeln!(s, "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata:\n  name: {name}\nspec:\n  args:\n    - name: prometheus-address\n      value: http://prometheus.monitoring:9090\n  metrics:");
    for gate in &policy.gates {
        let (query, success, failure, meaning) = judged(gate, plan.z, &interval);
        let _ = writeln!(s, "    # {}: {meaning}", gate.name());
        let _ = writeln!(s, "    - name: {}", metric_name(gate));
        let _ = writeln!(s, "      interval: {interval}");
        let _ = writeln!(s, "      failureLimit: {}", if gate.critical { 0 } else { policy.decision.total_failures.saturating_sub(1) });
        // Inconclusive measurements keep the analysis going (canary-replay waits for more data),
        // up to every look the ramp plans.
        let _ = writeln!(s, "      inconclusiveLimit: {}", plan.looks);
        if let Some(c) = success {
            let _ = writeln!(s, "      successCondition: {}", quoted(&c));
        }
        if let Some(c) = failure {
            let _ = writeln!(s, "      failureCondition: {}", quoted(&c));
        }
        let _ = writeln!(
            s,
            "      provider:\n        prometheus:\n          address: \"{{{{args.prometheus-address}}}}\"\n          query: {}",
            quoted(&query)
        );
    }
    let _ = writeln!(s, "---\n# Merge into your Rollout: the analysis runs in the background from the first step until the rollout completes.\napiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata:\n  name: my-model\nspec:\n  strategy:\n    canary:\n      analysis:\n        templates:\n          - templateName: {name}\n        startingStep: 1\n      steps:");
    for stage in policy.ramp.stages.iter().filter(|st| st.weight < 1.0) {
        let _ = writeln!(s, "        - setWeight: {}", percent(stage.weight));
        let _ = writeln!(s, "        - pause: {{duration: {}}}", go_duration(stage.bake));
    }
    if policy.ramp.holdback > 0.0 {
        let _ = writeln!(
            s,
            "        # canary-replay keeps {}% on stable and monitors; promote by hand when satisfied.",
            percent(policy.ramp.holdback)
        );
        let _ = writeln!(s, "        - setWeight: {}", percent(1.0 - policy.ramp.holdback));
        let _ = writeln!(s, "        - pause: {{}}");
    }
    s
}

fn percent(fraction: f64) -> String {
    let p = (fraction * 100.0 * 1e6).round() / 1e6;
    if p.fract() == 0.0 {
        format!("{}", p as i64)
    } else {
        format!("{p}")
    }
}

/// `flagger-canary.yaml`: the Canary's analysis with MetricTemplates.
pub fn flagger(policy: &Policy, name: &str) -> String {
    let plan = Plan::new(policy, name);
    let every = policy.ramp.check_every.max(1);
    let mut s = header(&plan, "Flagger Canary analysis + MetricTemplates");
    // Flagger advances one step per passing check, and a weight listed twice in stepWeights gives
    // a next step of 0 (its nextStepWeight), so the canary would stop there for good: the weights
    // must rise strictly. Bakes become the check interval: the longest bake, so no stage bakes less.
    let mut weights: Vec<String> = Vec::new();
    for stage in policy.ramp.stages.iter().filter(|st| st.weight < 1.0) {
        let w = percent(stage.weight);
        if !weights.contains(&w) {
            weights.push(w);
        }
    }
    let bake = policy.ramp.stages.iter().filter(|st| st.weight < 1.0).map(|st| st.bake.max(every)).max().unwrap_or(every);
    let interval = go_duration(bake);
    let _ = writeln!(s, "apiVersion: flagger.app/v1beta1\nkind: Canary\nmetadata:\n  name: my-model\nspec:\n  analysis:");
    let _ = writeln!(s, "    # One check per stage, as long as the longest bake (Flagger has one interval for all steps).");
    let _ = writeln!(s, "    interval: {interval}");
    let _ = writeln!(s, "    # Failed checks (in total, not in a row) before the rollback.");
    let _ = writeln!(s, "    threshold: {}", policy.decision.total_failures.max(1));
    let _ = writeln!(s, "    stepWeights: [{}]", weights.join(", "));
    let _ = writeln!(s, "    metrics:");
    for gate in &policy.gates {
        let (_, _, _, meaning) = judged(gate, plan.z, &interval);
        let (min, max) = match gate.kind {
            GateKind::Threshold { min, max } | GateKind::Ratio { min, max } => (min, max),
            // Flagger only fails a check: a z above z* fails; being inside the margin cannot be required.
            GateKind::NonInferiority { .. } | GateKind::Regression => (None, Some(plan.z)),
        };
        let _ = writeln!(s, "      # {}: {meaning}", gate.name());
        let _ = writeln!(s, "      - name: {}\n        templateRef:\n          name: {}", metric_name(gate), metric_name(gate));
        let _ = writeln!(s, "        interval: {interval}\n        thresholdRange:");
        if let Some(m) = min {
            let _ = writeln!(s, "          min: {m}");
        }
        if let Some(m) = max {
            let _ = writeln!(s, "          max: {m:.4}");
        }
    }
    for gate in &policy.gates {
        let (query, ..) = judged(gate, plan.z, "{{ interval }}");
        let _ = writeln!(s, "---\napiVersion: flagger.app/v1beta1\nkind: MetricTemplate\nmetadata:\n  name: {}\nspec:\n  provider:\n    type: prometheus\n    address: http://prometheus.monitoring:9090\n  query: {}", metric_name(gate), quoted(&query));
    }
    s
}

/// Kayenta's classifier weights: one group per metric, equal weight per gate, in whole numbers
/// that sum to 100 (Kayenta checks the sum).
fn group_weights(policy: &Policy) -> Vec<(&'static str, u64)> {
    let mut counts: Vec<(&'static str, u64)> = Vec::new();
    for gate in &policy.gates {
        match counts.iter_mut().find(|(m, _)| *m == gate.metric.name()) {
            Some((_, n)) => *n += 1,
            None => counts.push((gate.metric.name(), 1)),
        }
    }
    let gates = policy.gates.len().max(1) as u64;
    let mut weights: Vec<(&'static str, u64)> = counts.iter().map(|(m, n)| (*m, n * 100 / gates)).collect();
    let short = 100 - weights.iter().map(|(_, w)| w).sum::<u64>().min(100);
    for (_, w) in weights.iter_mut().take(short as usize) {
        *w += 1;
    }
    weights
}

/// `kayenta-canary-config.json`: the canary config Kayenta's API stores.
pub fn kayenta_config(policy: &Policy, name: &str) -> serde_json::Value {
    let plan = Plan::new(policy, name);
    let metrics: Vec<serde_json::Value> = policy
        .gates
        .iter()
        .map(|gate| {
            let higher = gate.metric.better() == Some(Better::Higher);
            let mut canary = json!({
                "direction": if higher { "decrease" } else { "increase" },
                "critical": gate.critical,
                "mustHaveData": gate.critical || gate.required_from.is_some(),
                "nanStrategy": "replace",
            });
            let effect = match gate.kind {
                GateKind::NonInferiority { margin } if higher => Some(json!({"allowedDecrease": 1.0 - margin})),
                GateKind::NonInferiority { margin } => Some(json!({"allowedIncrease": 1.0 + margin})),
                GateKind::Ratio { min, max } => {
                    let mut e = serde_json::Map::new();
                    if let Some(m) = min {
                        e.insert("allowedDecrease".into(), json!(m));
                    }
                    if let Some(m) = max {
                        e.insert("allowedIncrease".into(), json!(m));
                    }
                    Some(serde_json::Value::Object(e))
                }
                _ => None,
            };
            if let Some(e) = effect {
                canary["effectSize"] = e;
            }
            json!({
                "name": metric_name(gate),
                "query": {
                    "type": "prometheus",
                    "serviceType": "prometheus",
                    "metricName": format!("model:{}:sample", gate.metric.name()),
                    "labelBindings": [],
                },
                "groups": [gate.metric.name()],
                "analysisConfigurations": { "canary": canary },
                "scopeName": "default",
            })
        })
        .collect();
    let groups: serde_json::Map<String, serde_json::Value> =
        group_weights(policy).into_iter().map(|(m, w)| (m.to_string(), json!(w))).collect();
    json!({
        "name": name,
        "description": format!(
            "Tuned by canary-replay tune. Not expressible here: {}. Threshold gates have no Kayenta equivalent beyond the direction; Kayenta's Mann-Whitney test runs at its own 98% level.",
            plan.not_expressible().join("; ")
        ),
        "configVersion": "1",
        "applications": ["my-model"],
        "judge": { "name": "NetflixACAJudge-v1.0", "judgeConfigurations": {} },
        "metrics": metrics,
        "templates": {},
        "classifier": { "groupWeights": groups },
    })
}

/// `kayenta-execution-request.json`: thresholds and the analysis window for the standalone API.
pub fn kayenta_request(policy: &Policy) -> serde_json::Value {
    let every = policy.ramp.check_every.max(1);
    let lifetime: Micros = policy.ramp.stages.iter().filter(|s| s.weight < 1.0).map(|s| s.bake.max(every)).sum();
    // Every metric must pass to promote; a critical failure fails at once. When more than one
    // failing check is tolerated, one failing group (at most the heaviest group's weight off the
    // score) lands in the marginal band; two fail.
    let heaviest = group_weights(policy).iter().map(|(_, w)| *w).max().unwrap_or(100);
    let tolerated = policy.decision.consecutive_failures > 1 || policy.decision.total_failures > 1;
    let marginal = if tolerated && heaviest < 100 { (100 - heaviest) as f64 - 0.01 } else { 100.0 };
    json!({
        "scopes": {
            "default": {
                "controlScope": { "scope": "my-model", "location": "", "start": "REPLACE_WITH_RFC3339", "end": "REPLACE_WITH_RFC3339", "step": every / crate::time::MICROS_PER_SECOND, "extendedScopeParams": { "track": "stable" } },
                "experimentScope": { "scope": "my-model", "location": "", "start": "REPLACE_WITH_RFC3339", "end": "REPLACE_WITH_RFC3339", "step": every / crate::time::MICROS_PER_SECOND, "extendedScopeParams": { "track": "canary" } }
            }
        },
        "thresholds": { "pass": 100.0, "marginal": (marginal * 100.0_f64).round() / 100.0 },
        "siteLocal": {
            "canary-replay": format!("judge every {} over a lifetime of {} (the ramp's bakes)", go_duration(every), go_duration(lifetime))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_what_go_parses() {
        assert_eq!(go_duration(crate::time::MICROS_PER_DAY), "24h");
        assert_eq!(go_duration(5_400_000_000), "1h30m");
        assert_eq!(go_duration(0), "0s");
    }

    fn default_policy() -> Policy {
        let mut problems = Vec::new();
        let shape = crate::policy::TrafficShape { segments: &[], labelled: true };
        let policy = Policy::from_raw(&crate::policy::RawPolicy::default(), &shape, "s.toml", &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        policy
    }

    #[test]
    fn kayenta_weights_sum_to_100_and_one_failing_group_is_marginal_when_failures_are_tolerated() {
        let mut policy = default_policy();
        policy.decision.total_failures = 3;
        let weights = group_weights(&policy);
        assert_eq!(weights.iter().map(|(_, w)| w).sum::<u64>(), 100);
        let request = kayenta_request(&policy);
        let marginal = request["thresholds"]["marginal"].as_f64().unwrap();
        for (_, w) in &weights {
            let one_failing = (100 - w) as f64;
            assert!(one_failing >= marginal && one_failing < 100.0, "one failing group scores {one_failing}, marginal {marginal}");
        }
        if weights.len() >= 2 {
            let two_failing = (100 - weights[0].1 - weights[1].1) as f64;
            assert!(two_failing < marginal, "two failing groups fail");
        }
        policy.decision.total_failures = 1;
        policy.decision.consecutive_failures = 1;
        assert_eq!(kayenta_request(&policy)["thresholds"]["marginal"], 100.0);
    }

    #[test]
    fn argo_judges_the_exported_conditions_as_canary_replay_means_them() {
        use crate::controller::argo::{MetricRules, Phase};
        use crate::controller::condition::{Condition, Value};
        let policy = default_policy();
        let plan = Plan::new(&policy, "p");
        assert!(
            policy.gates.iter().any(|g| matches!(g.kind, GateKind::NonInferiority { .. }))
                && policy.gates.iter().any(|g| g.kind == GateKind::Regression),
            "the default policy has both kinds"
        );
        for gate in policy.gates.iter().filter(|g| g.kind.is_statistical()) {
            let (_, success, failure, _) = judged(gate, plan.z, "1h");
            let parse = |c: Option<String>| c.map(|c| Condition::parse(&c).unwrap_or_else(|e| panic!("{c}: {e}")));
            let rules = MetricRules { success: parse(success), failure: parse(failure), ..Default::default() };
            let at = |z: f64| rules.judge(&Value::Vector(vec![z]));
            assert_eq!(at(plan.z + 0.1), Phase::Failed, "{}", gate.name());
            assert_eq!(at(-plan.z - 0.1), Phase::Successful, "{}", gate.name());
            let between = if matches!(gate.kind, GateKind::NonInferiority { .. }) { Phase::Inconclusive } else { Phase::Successful };
            assert_eq!(at(0.0), between, "{}", gate.name());
        }
    }

    #[test]
    fn the_z_bound_is_bonferroni_over_looks_and_tests() {
        let policy = default_policy();
        let plan = Plan::new(&policy, "p");
        let expected = phi_inv(1.0 - policy.decision.alpha / (plan.looks as f64 * plan.tests as f64));
        assert!((plan.z - expected).abs() < 1e-12 && plan.z > 2.5, "{}", plan.z);
    }
}
