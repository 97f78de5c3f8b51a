//! `frontier.png` and `tune.html`: what a reviewer needs to trust a tuned policy — the objective,
//! the tuned policy against the scenario's own and the default policy on every scenario, the
//! Pareto frontier, the search's cuts, and the policy itself with its exports. Like `report.html`
//! the page is one self-contained, well-formed XHTML file without scripts.

use askama::Template;
use plotters::prelude::*;

use super::{Score, Stage, TuneSummary, VariantResult};
use crate::error::Result;
use crate::report::charts::{legend, legend_room, legend_size, render, style, Chart, ChartKind, CANDIDATE, FAIL, OPEN, PASS, STABLE};
use crate::report::page::{Figure, STYLE};

/// (exposure, mean hours to promotion) of a score that reached the good scenarios.
fn point(s: &Score) -> Option<(f64, f64)> {
    Some(((s.exposure as f64).max(1.0), s.hours_to_promotion?))
}

/// The variants in exposure × time to promotion, the frontier joined, the winner ringed, the
/// baselines marked.
pub fn frontier_chart(t: &TuneSummary) -> Result<Chart> {
    // A variant cut as dominated has a time to promotion over part of its replays only: not drawn.
    let scored: Vec<(&VariantResult, (f64, f64))> =
        t.variants.iter().filter(|v| v.stage != Stage::Dominated).filter_map(|v| Some((v, point(v.score.as_ref()?)?))).collect();
    let baselines: Vec<(&str, (f64, f64))> = t.baselines.iter().filter_map(|(name, s)| Some((*name, point(s)?))).collect();
    let xs = scored.iter().map(|(_, p)| p.0).chain(baselines.iter().map(|(_, p)| p.0));
    let ys = scored.iter().map(|(_, p)| p.1).chain(baselines.iter().map(|(_, p)| p.1));
    let range = |values: &mut dyn Iterator<Item = f64>| values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    // Exposure spans decades (a policy that misses incidents serves the candidate to the end): log scale.
    let (x0, x1) = range(&mut xs.into_iter());
    let (y0, y1) = range(&mut ys.into_iter());
    let (x, y) = if x0.is_finite() {
        let d = (y1 - y0).max(1.0);
        ((x0 / 1.4, x1 * 1.4), ((y0 - 0.06 * d).max(0.0), y1 + 0.06 * d))
    } else {
        ((1.0, 10.0), (0.0, 1.0))
    };
    let mut frontier: Vec<(f64, f64)> = scored.iter().filter(|(v, _)| v.frontier).map(|(_, p)| *p).collect();
    frontier.sort_by(|a, b| a.0.total_cmp(&b.0));
    let winner = t.winner.and_then(|w| scored.iter().find(|(v, _)| v.id == w)).map(|(_, p)| *p);
    let infeasible: Vec<(f64, f64)> = scored.iter().filter(|(v, _)| !v.feasible).map(|(_, p)| *p).collect();
    let feasible: Vec<(f64, f64)> = scored.iter().filter(|(v, _)| v.feasible && !v.frontier).map(|(_, p)| *p).collect();
    let mut labels = vec![
        format!("infeasible: over the false-rollback budget, or too few promoted in time ({})", infeasible.len()),
        format!("feasible, dominated ({})", feasible.len()),
        format!("Pareto frontier ({})", frontier.len()),
    ];
    labels.extend(winner.map(|_| "tuned policy (least exposure on the frontier)".to_string()));
    labels.extend(baselines.iter().map(|(name, _)| format!("{name} policy")));
    // The legend where it hides no variant: exposure is on a log scale.
    let fx = |v: f64| (v.ln() - x.0.ln()) / (x.1.ln() - x.0.ln());
    let drawn: Vec<(f64, f64)> =
        scored.iter().map(|(_, p)| *p).chain(baselines.iter().map(|(_, p)| *p)).map(|(px, py)| (fx(px), py)).collect();
    let corners =
        [SeriesLabelPosition::UpperRight, SeriesLabelPosition::UpperLeft, SeriesLabelPosition::LowerRight, SeriesLabelPosition::LowerLeft];
    let (place, y) = legend_room(&drawn, y, legend_size(&labels, 14, (996, 514)), &corners);
    let png = render(1100, 620, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Policies tried: exposure to bad candidates against time to promote good ones", style(21))
            .margin(14)
            .x_label_area_size(48)
            .y_label_area_size(76)
            .build_cartesian_2d((x.0..x.1).log_scale(), y.0..y.1)?;
        chart
            .configure_mesh()
            .x_desc("candidate requests served on the incidents until rollback, summed (log scale)")
            .y_desc("mean hours to promotion of the good replays")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style(style(14))
            .axis_desc_style(style(15))
            .light_line_style(WHITE)
            .draw()?;
        chart
            .draw_series(infeasible.iter().map(|p| Cross::new(*p, 5, FAIL.stroke_width(2))))?
            .label(&labels[0])
            .legend(|(x, y)| Cross::new((x + 9, y), 5, FAIL.stroke_width(2)));
        chart
            .draw_series(feasible.iter().map(|p| Circle::new(*p, 4, OPEN.filled())))?
            .label(&labels[1])
            .legend(|(x, y)| Circle::new((x + 9, y), 4, OPEN.filled()));
        chart.draw_series(LineSeries::new(frontier.clone(), PASS.stroke_width(2)))?;
        chart
            .draw_series(frontier.iter().map(|p| Circle::new(*p, 6, PASS.filled())))?
            .label(&labels[2])
            .legend(|(x, y)| Circle::new((x + 9, y), 6, PASS.filled()));
        // The labels after the first three, in the order they were listed above.
        let mut more = labels[3..].iter();
        if let Some(p) = winner {
            chart
                .draw_series(std::iter::once(Circle::new(p, 12, BLACK.stroke_width(3))))?
                .label(more.next().expect("a label for the winner"))
                .legend(|(x, y)| Circle::new((x + 9, y), 8, BLACK.stroke_width(3)));
        }
        for ((name, p), label) in baselines.iter().zip(more) {
            let color = if *name == "default" { CANDIDATE } else { STABLE };
            chart
                .draw_series(std::iter::once(TriangleMarker::new(*p, 9, color.filled())))?
                .label(label)
                .legend(move |(x, y)| TriangleMarker::new((x + 9, y), 7, color.filled()));
        }
        legend(&mut chart, place, 14)?;
        Ok(())
    })?;
    let cut = t.variants.iter().filter(|v| v.stage == Stage::Incidents).count();
    let dominated = t.variants.iter().filter(|v| v.stage == Stage::Dominated).count();
    Ok(Chart {
        kind: ChartKind::Frontier,
        file: "frontier.png".into(),
        title: "Pareto frontier".into(),
        caption: format!(
            "Each variant that reached the good scenarios; lower left is better on both counts. {cut} variant(s) missed an incident and were cut before the good scenarios, so they have no time to promotion, and {dominated} were cut once a feasible variant was sure to dominate them: neither is drawn. Triangles: the base policy and canary-replay's default policy."
        ),
        png,
    })
}

fn hours(h: Option<f64>) -> String {
    match h {
        Some(h) if h.is_finite() => format!("{h:.0} h"),
        _ => "–".into(),
    }
}

/// "41h (30h, 90h; 18/20)": the mean time to promotion, its median and 90th percentile, and the
/// good replays promoted within `promote_within`.
fn promotion(s: &Score) -> String {
    match s.promoted_in_time_share {
        Some(_) => format!(
            "{} ({}, {}; {}/{})",
            hours(s.hours_to_promotion),
            hours(s.hours_to_promotion_median),
            hours(s.hours_to_promotion_p90),
            s.promoted_in_time,
            s.good_replays
        ),
        None => hours(s.hours_to_promotion),
    }
}

fn false_rollbacks(s: &Score) -> String {
    match (s.false_rollback_rate, s.false_rollback_interval) {
        (Some(r), Some([lo, hi])) => {
            format!("{}/{} ({:.1}%, 95% [{:.1}%, {:.1}%])", s.false_rollbacks, s.good_replays, r * 100.0, lo * 100.0, hi * 100.0)
        }
        _ => "not replayed".into(),
    }
}

/// One row of the comparison table: a policy's score.
struct PolicyRow {
    name: String,
    caught_class: &'static str,
    caught: usize,
    incidents: usize,
    exposure: u64,
    hours_to_rollback: String,
    false_rollbacks_class: &'static str,
    false_rollbacks: String,
    promotion: String,
}

impl PolicyRow {
    fn of(name: String, score: &Score) -> Self {
        let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
        PolicyRow {
            name,
            caught_class: verdict(score.missed_incidents == 0),
            caught: score.incidents - score.missed_incidents,
            incidents: score.incidents,
            exposure: score.exposure,
            hours_to_rollback: hours(score.hours_to_rollback),
            false_rollbacks_class: verdict(score.false_rollbacks == 0),
            false_rollbacks: false_rollbacks(score),
            promotion: promotion(score),
        }
    }
}

fn params(v: &VariantResult) -> String {
    if v.params.is_empty() {
        return "the base policy unchanged".into();
    }
    v.params.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", ")
}

/// `templates/tune.html` filled in.
#[derive(Template)]
#[template(path = "tune.html")]
struct TunePage<'a> {
    t: &'a TuneSummary,
    style: &'static str,
    base_file: &'a str,
    /// The tuned policy's parameters, when a variant was feasible.
    winner: Option<String>,
    reference_check: &'a str,
    /// The false-rollback budget in percent, one decimal.
    budget: String,
    /// The baselines, then the tuned policy.
    policies: Vec<PolicyRow>,
    scenarios: Vec<ScenarioRow<'a>>,
    f: Figure<'a>,
    frontier: Vec<FrontierRow>,
    tuned_toml: Option<&'a str>,
    exports: &'a [(String, String)],
    /// (what, value)
    search: Vec<(String, String)>,
    version: &'static str,
}

struct ScenarioRow<'a> {
    name: &'a str,
    file: &'a str,
    expect: &'static str,
    /// Per policy; none where it was not replayed (cut early).
    cells: Vec<Option<ScenarioCell>>,
}

struct ScenarioCell {
    class: &'static str,
    rolled_back: usize,
    promoted: usize,
    held: usize,
    replays: usize,
    hours: String,
    candidate_requests: u64,
}

struct FrontierRow {
    id: usize,
    tuned: bool,
    params: String,
    exposure: u64,
    false_rollbacks: String,
    promotion: String,
}

/// The whole page. `tuned_toml`: the tuned sections; `exports`: (file, what it holds).
pub fn page(t: &TuneSummary, chart: &Chart, tuned_toml: Option<&str>, exports: &[(String, String)]) -> String {
    let winner = t.winner.map(|w| &t.variants[w]);
    let scores: Vec<(String, &Score)> = t
        .baselines
        .iter()
        .map(|(n, sc)| (format!("{n} policy"), sc))
        .chain(winner.and_then(|v| v.score.as_ref()).map(|sc| ("tuned policy".to_string(), sc)))
        .collect();
    let scenarios = t
        .scenarios
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let rollback = c.expect == crate::scenario::Expect::Rollback;
            let cells = scores
                .iter()
                .map(|(_, score)| {
                    score.scenarios.get(i).filter(|x| x.replays > 0).map(|x| {
                        let right = if rollback { x.rolled_back == x.replays } else { x.rolled_back == 0 };
                        ScenarioCell {
                            class: if right { "PASS" } else { "FAIL" },
                            rolled_back: x.rolled_back,
                            promoted: x.promoted,
                            held: x.held,
                            replays: x.replays,
                            hours: hours(Some(x.mean_hours)),
                            candidate_requests: x.candidate_requests,
                        }
                    })
                })
                .collect();
            ScenarioRow { name: &c.name, file: &c.file, expect: if rollback { "rollback" } else { "promote" }, cells }
        })
        .collect();
    let mut frontier: Vec<&VariantResult> = t.variants.iter().filter(|v| v.frontier).collect();
    frontier.sort_by_key(|v| v.score.as_ref().map(|s| s.exposure));
    let frontier = frontier
        .into_iter()
        .map(|v| {
            let score = v.score.as_ref().expect("frontier variants are scored");
            FrontierRow {
                id: v.id,
                tuned: Some(v.id) == t.winner,
                params: params(v),
                exposure: score.exposure,
                false_rollbacks: false_rollbacks(score),
                promotion: promotion(score),
            }
        })
        .collect();
    let page = TunePage {
        t,
        style: STYLE,
        base_file: t.scenarios.first().map_or("", |c| c.file.as_str()),
        winner: winner.map(params),
        reference_check: t.reference_check.as_deref().unwrap_or("not run"),
        budget: format!("{:.1}", t.search.false_rollback_budget * 100.0),
        policies: scores.iter().map(|(name, score)| PolicyRow::of(name.clone(), score)).collect(),
        scenarios,
        f: Figure::of(chart, false),
        frontier,
        tuned_toml,
        exports,
        search: search_rows(&t.search),
        version: env!("CARGO_PKG_VERSION"),
    };
    page.render().expect("the tune template writes to a String")
}

/// The search's settings, cuts and time, as (what, value) rows.
fn search_rows(search: &super::SearchInfo) -> Vec<(String, String)> {
    let (share, within) = (search.min_promoted * 100.0, &search.promote_within);
    [
        ("method", search.method.to_string()),
        ("variants (the base policy included)", search.variants.to_string()),
        ("routing salts per good scenario", search.salts.to_string()),
        ("time windows per good scenario", search.windows.to_string()),
        ("false-rollback budget", format!("{:.1}%", search.false_rollback_budget * 100.0)),
        ("good replays a feasible variant promotes, and how soon", format!("at least {share:.0}% within {within}")),
        ("not valid policies (see each variant's `invalid` in tune.json)", search.invalid.to_string()),
        ("cut after missing an incident", search.cut_at_incidents.to_string()),
        ("cut once false rollbacks exceeded the budget's allowance", search.cut_at_false_rollbacks.to_string()),
        (
            &format!("cut once fewer than {share:.0}% of the good replays could still promote within {within}"),
            search.cut_at_promotions.to_string(),
        ),
        ("cut once a finished feasible variant was sure to dominate them", search.cut_dominated.to_string()),
        ("feasible", search.feasible.to_string()),
        (
            "time",
            format!(
                "{:.1} s in all; {:.1} s indexing the replays; {:.1} s searching ({:.1} variants/s)",
                search.seconds, search.index_seconds, search.search_seconds, search.variants_per_second
            ),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}
