//! `tune.json`, the printed summary and the output folder: every variant's parameters, stage and
//! score, the frontier, the baselines, the winner and its exports.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::objective::{Score, Stage};
use super::TuneOutput;
use crate::controller::export;
use crate::error::Result;
use crate::output::{to_json, Bytes, Folder, Json};
use crate::policy::Policy;
use crate::scenario::Expect;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VariantResult {
    pub id: usize,
    pub params: BTreeMap<String, serde_json::Value>,
    /// Why the variant could not run (an invalid policy), if so.
    pub invalid: Option<String>,
    pub stage: Stage,
    pub score: Option<Score>,
    pub feasible: bool,
    pub frontier: bool,
}

/// `tune.json`.
#[derive(Debug, Clone, Serialize)]
pub struct TuneSummary {
    pub scenarios: Vec<ScenarioRef>,
    pub objective: &'static str,
    pub search: SearchInfo,
    /// The first scenario's own policy (the base the variants change) and the default policy.
    pub baselines: BTreeMap<&'static str, Score>,
    pub variants: Vec<VariantResult>,
    pub winner: Option<usize>,
    /// The winner's decisions re-checked with the reference simulator on every scenario (its own
    /// salt, from the first request).
    pub reference_check: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioRef {
    pub name: String,
    pub file: String,
    pub expect: Expect,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchInfo {
    pub method: &'static str,
    pub variants: usize,
    pub salts: usize,
    pub windows: usize,
    pub false_rollback_budget: f64,
    /// A good replay counts as promoted when it promotes this soon ("7d").
    pub promote_within: String,
    /// The share of good replays a feasible variant promotes that soon.
    pub min_promoted: f64,
    /// Variants whose parameters do not make a valid policy (each says why in `invalid`).
    pub invalid: usize,
    /// Variants cut after missing an incident, after too many false rollbacks, and once sure to
    /// be dominated on the frontier.
    pub cut_at_incidents: usize,
    pub cut_at_false_rollbacks: usize,
    /// Variants cut once too few good replays could still promote within `promote_within`.
    pub cut_at_promotions: usize,
    pub cut_dominated: usize,
    pub feasible: usize,
    /// The whole tune; loading, scoring and indexing the replays; evaluating the variants.
    pub seconds: f64,
    pub index_seconds: f64,
    pub search_seconds: f64,
    /// Variants evaluated per second of the search (the shared indexing excluded).
    pub variants_per_second: f64,
}

/// Marks the Pareto frontier over (exposure, hours to promotion) among the feasible variants;
/// the feasible variants and the winner: the frontier point with the least exposure, ties broken by
/// time to promotion, then by id.
pub(super) fn frontier(results: &mut [VariantResult]) -> (Vec<usize>, Option<usize>) {
    let key = |r: &VariantResult| {
        r.score
            .as_ref()
            .map(|s| (s.exposure as f64, s.hours_to_promotion.unwrap_or(f64::INFINITY)))
            .unwrap_or((f64::INFINITY, f64::INFINITY))
    };
    let feasible_ids: Vec<usize> = results.iter().filter(|r| r.feasible).map(|r| r.id).collect();
    for &i in &feasible_ids {
        let (e, h) = key(&results[i]);
        results[i].frontier = !feasible_ids.iter().any(|&j| {
            let (e2, h2) = key(&results[j]);
            (e2 <= e && h2 <= h) && (e2 < e || h2 < h)
        });
    }
    let winner = feasible_ids.iter().copied().filter(|&i| results[i].frontier).min_by(|&a, &b| {
        let (ka, kb) = (key(&results[a]), key(&results[b]));
        ka.0.total_cmp(&kb.0).then(ka.1.total_cmp(&kb.1)).then(a.cmp(&b))
    });
    (feasible_ids, winner)
}

/// Writes `tune.json`, the tuned policy, its exports for the live controllers, the frontier chart
/// and `tune.html` into `out_dir`, assembled under a temporary name.
pub(super) fn write(out_dir: &Path, summary: &TuneSummary, tuned: Option<&Policy>) -> Result<()> {
    let folder = Folder::create(out_dir)?;
    folder.write(&Json("tune.json", summary))?;
    let tuned_toml = tuned.map(|policy| policy.to_raw().to_toml("The policy `canary-replay tune` found best on its scenarios"));
    if let Some(text) = &tuned_toml {
        folder.write(&Bytes("tuned-policy.toml", text.as_bytes()))?;
    }
    let mut exports = Vec::new();
    if let Some(policy) = tuned {
        let name = "canary-replay-tuned";
        for (file, what, text) in [
            ("argo-rollouts.yaml", "Argo Rollouts AnalysisTemplate and the Rollout's canary steps", export::argo(policy, name)),
            ("flagger-canary.yaml", "Flagger Canary analysis and its MetricTemplates", export::flagger(policy, name)),
            ("kayenta-canary-config.json", "Kayenta canary config (NetflixACAJudge)", to_json(&export::kayenta_config(policy, name))),
            (
                "kayenta-execution-request.json",
                "Kayenta execution request: score thresholds and scopes",
                to_json(&export::kayenta_request(policy)),
            ),
        ] {
            folder.write(&Bytes(file, text.as_bytes()))?;
            exports.push((file.to_string(), what.to_string()));
        }
    }
    let chart = super::report::frontier_chart(summary)?;
    folder.write(&Bytes(&chart.file, &chart.png))?;
    let page = super::report::page(summary, &chart, tuned_toml.as_deref(), &exports);
    folder.write(&Bytes("tune.html", page.as_bytes()))?;
    folder.commit("tune")?;
    Ok(())
}

pub(super) fn describe(s: &Score) -> String {
    let hours = |h: Option<f64>| h.map(|h| format!("{h:.0}h")).unwrap_or_else(|| "–".into());
    let fr = match (s.false_rollback_rate, s.false_rollback_interval) {
        (Some(r), Some([lo, hi])) => format!(
            "{}/{} false rollbacks ({:.1}%, 95% [{:.1}%, {:.1}%])",
            s.false_rollbacks,
            s.good_replays,
            r * 100.0,
            lo * 100.0,
            hi * 100.0
        ),
        _ => "good scenarios not replayed (cut early)".into(),
    };
    let promoted = match s.promoted_in_time_share {
        Some(share) => format!(
            "{}/{} promoted in time ({:.0}%); promotion after {} on average, median {}, 90th percentile {}",
            s.promoted_in_time,
            s.good_replays,
            share * 100.0,
            hours(s.hours_to_promotion),
            hours(s.hours_to_promotion_median),
            hours(s.hours_to_promotion_p90)
        ),
        None => format!("promotion after {}", hours(s.hours_to_promotion)),
    };
    format!(
        "{}/{} incidents caught, exposure {} requests, rollback after {} on average; {fr}; {promoted}",
        s.incidents - s.missed_incidents,
        s.incidents,
        s.exposure,
        hours(s.hours_to_rollback)
    )
}

/// The terminal summary of a search.
pub fn to_text(output: &TuneOutput) -> String {
    use std::fmt::Write as _;
    let t = &output.summary;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "tune: {} variants ({} search) over {} scenarios in {:.1}s ({:.1}s indexing the replays, then {:.1} variants/s); cut early: {} after missing an incident, {} after too many false rollbacks, {} once too few could promote within {}, {} once sure to be dominated; {} feasible",
        t.search.variants,
        t.search.method,
        t.scenarios.len(),
        t.search.seconds,
        t.search.index_seconds,
        t.search.variants_per_second,
        t.search.cut_at_incidents,
        t.search.cut_at_false_rollbacks,
        t.search.cut_at_promotions,
        t.search.promote_within,
        t.search.cut_dominated,
        t.search.feasible
    );
    if let Some(first) = t.variants.iter().find_map(|v| v.invalid.as_deref()) {
        let _ = writeln!(s, "  {} variant(s) are not valid policies and were not replayed, e.g. {first}", t.search.invalid);
    }
    for (name, score) in &t.baselines {
        let _ = writeln!(s, "  {name:<8} policy: {}", describe(score));
    }
    match t.winner {
        Some(w) => {
            let v = &t.variants[w];
            let params: Vec<String> = v.params.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            let _ = writeln!(s, "  tuned    policy: {}", v.score.as_ref().map(describe).unwrap_or_default());
            if params.is_empty() {
                let _ = writeln!(s, "    which is the base policy ({}'s) unchanged: no variant did better", t.scenarios[0].file);
            } else {
                let _ = writeln!(s, "    with {}", params.join(", "));
            }
            let frontier = t.variants.iter().filter(|v| v.frontier).count();
            let _ = writeln!(
                s,
                "  Pareto frontier: {frontier} variant(s); reference simulator: {}",
                t.reference_check.as_deref().unwrap_or("not run")
            );
            let _ = writeln!(
                s,
                "Wrote {}/{{tune.html, tuned-policy.toml, tune.json, frontier.png}} and the Argo Rollouts, Flagger and Kayenta exports",
                output.out_dir.display()
            );
        }
        None => {
            let _ = writeln!(
                s,
                "  no variant caught every incident within the false-rollback budget while promoting {:.0}% of the good replays within {}; widen the space (or, if this traffic cannot promote that soon, set [search] promote_within / min_promoted). Wrote {}/{{tune.html, tune.json, frontier.png}}",
                t.search.min_promoted * 100.0,
                t.search.promote_within,
                output.out_dir.display()
            );
        }
    }
    s
}
