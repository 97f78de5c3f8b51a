//! `frontier.png` and `tune.html`: what a reviewer needs to trust a tuned policy — the objective,
//! the tuned policy against the scenario's own and the default policy on every scenario, the
//! Pareto frontier, the search's cuts, and the policy itself with its exports. Like `report.html`
//! the page is one self-contained, well-formed XHTML file without scripts.

use std::fmt::Write as _;

use plotters::prelude::*;

use super::{Score, Stage, TuneSummary, VariantResult};
use crate::error::Result;
use crate::report::charts::{legend, legend_room, legend_size, render, style, Chart, ChartKind, CANDIDATE, FAIL, OPEN, PASS, STABLE};
use crate::report::page::{escape, figure, STYLE};

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

/// One row of the comparison table.
fn score_row(s: &mut String, name: &str, score: &Score) {
    let caught = score.incidents - score.missed_incidents;
    let _ = writeln!(
        s,
        "<tr><th>{}</th><td class=\"num {}\">{caught}/{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num {}\">{}</td><td class=\"num\">{}</td></tr>",
        escape(name),
        if score.missed_incidents == 0 { "PASS" } else { "FAIL" },
        score.incidents,
        score.exposure,
        hours(score.hours_to_rollback),
        if score.false_rollbacks == 0 { "PASS" } else { "FAIL" },
        escape(&false_rollbacks(score)),
        escape(&promotion(score)),
    );
}

fn params(v: &VariantResult) -> String {
    if v.params.is_empty() {
        return "the base policy unchanged".into();
    }
    v.params.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", ")
}

/// The whole page. `tuned_toml`: the tuned sections; `exports`: (file, what it holds).
pub fn page(t: &TuneSummary, chart: &Chart, tuned_toml: Option<&str>, exports: &[(String, String)]) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\" />\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\" />\n<title>Policy tuning — canary-replay</title>\n<style>{STYLE}th small {{ display: block; font-weight: normal; color: var(--muted); }}</style>\n</head>\n<body>\n<main>\n"
    );
    let _ = writeln!(s, "<h1>Policy tuning over {} scenarios</h1>", t.scenarios.len());
    let _ = writeln!(
        s,
        "<p class=\"lede\">{} variants of {}'s policy ({} search), each replayed on every incident once and on every good scenario under {} routing salt(s) × {} time window(s).</p>",
        t.search.variants,
        escape(&t.scenarios.first().map(|c| c.file.clone()).unwrap_or_default()),
        t.search.method,
        t.search.salts,
        t.search.windows
    );
    let winner = t.winner.map(|w| &t.variants[w]);
    let _ = writeln!(s, "<section id=\"verdict\">");
    match winner {
        Some(v) => {
            let _ = writeln!(
                s,
                "<div class=\"banner promoted\"><div class=\"outcome\">TUNED POLICY FOUND</div><div class=\"why\">{}</div><div class=\"decider\">Re-checked with the row-by-row reference simulator: {}.</div></div>",
                escape(&params(v)),
                escape(t.reference_check.as_deref().unwrap_or("not run"))
            );
        }
        None => {
            let _ = writeln!(
                s,
                "<div class=\"banner rolled_back\"><div class=\"outcome\">NO FEASIBLE POLICY</div><div class=\"why\">No variant caught every incident within the false-rollback budget of {:.1}%. Widen the space (smaller margins, higher α, shorter bakes) or check the incidents are detectable.</div></div>",
                t.search.false_rollback_budget * 100.0
            );
        }
    }
    let _ = writeln!(s, "<p><strong>Objective:</strong> {}.</p>", escape(t.objective));
    let _ = writeln!(s, "<table><tr><th>policy</th><th>incidents caught</th><th>exposure (requests)</th><th>mean time to rollback</th><th>false rollbacks</th><th>time to promotion: mean (median, 90th percentile; promoted in time)</th></tr>");
    for (name, score) in &t.baselines {
        score_row(&mut s, &format!("{name} policy"), score);
    }
    if let Some(score) = winner.and_then(|v| v.score.as_ref()) {
        score_row(&mut s, "tuned policy", score);
    }
    let _ = writeln!(s, "</table>");
    let _ = writeln!(
        s,
        "<p>Exposure counts the candidate requests served on each incident until the rollback; a missed incident counts every candidate request to the end of its replay. Time to promotion is the mean over the good replays, counting a replay that never promoted (held or falsely rolled back) as its whole span, so a policy that stalls is not rewarded.</p>"
    );
    let _ = writeln!(s, "</section>");

    let _ = writeln!(s, "<section id=\"scenarios\"><h2>Per scenario</h2><div class=\"wide\"><table><tr><th>scenario</th><th>expect</th>");
    let columns: Vec<(String, &Score)> = t
        .baselines
        .iter()
        .map(|(n, sc)| (format!("{n} policy"), sc))
        .chain(winner.and_then(|v| v.score.as_ref()).map(|sc| ("tuned policy".to_string(), sc)))
        .collect();
    for (name, _) in &columns {
        let _ = write!(s, "<th>{}</th>", escape(name));
    }
    let _ = writeln!(s, "</tr>");
    for (i, c) in t.scenarios.iter().enumerate() {
        let _ = write!(
            s,
            "<tr><th>{}<small>{}</small></th><td>{}</td>",
            escape(&c.name),
            escape(&c.file),
            if c.expect == crate::scenario::Expect::Rollback { "rollback" } else { "promote" }
        );
        for (_, score) in &columns {
            match score.scenarios.get(i).filter(|x| x.replays > 0) {
                Some(x) => {
                    let right = if c.expect == crate::scenario::Expect::Rollback { x.rolled_back == x.replays } else { x.rolled_back == 0 };
                    let _ = write!(
                        s,
                        "<td class=\"{}\">{} rolled back, {} promoted, {} held of {}<small>mean {} to decision (a held replay counts its whole span); {} candidate requests served</small></td>",
                        if right { "PASS" } else { "FAIL" },
                        x.rolled_back,
                        x.promoted,
                        x.held,
                        x.replays,
                        hours(Some(x.mean_hours)),
                        x.candidate_requests
                    );
                }
                None => {
                    let _ = write!(s, "<td class=\"NO_DATA\">not replayed (cut early)</td>");
                }
            }
        }
        let _ = writeln!(s, "</tr>");
    }
    let _ = writeln!(s, "</table></div></section>");

    let _ = writeln!(s, "<section id=\"frontier\"><h2>Pareto frontier</h2>");
    figure(&mut s, chart, false);
    let mut frontier: Vec<&VariantResult> = t.variants.iter().filter(|v| v.frontier).collect();
    frontier.sort_by_key(|v| v.score.as_ref().map(|s| s.exposure));
    let _ = writeln!(s, "<table><tr><th>variant</th><th>parameters</th><th>exposure</th><th>false rollbacks</th><th>time to promotion: mean (median, 90th percentile; promoted in time)</th></tr>");
    for v in frontier {
        let score = v.score.as_ref().expect("frontier variants are scored");
        let _ = writeln!(
            s,
            "<tr><td class=\"num\">{}{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            v.id,
            if Some(v.id) == t.winner { " (tuned)" } else { "" },
            escape(&params(v)),
            score.exposure,
            escape(&false_rollbacks(score)),
            escape(&promotion(score))
        );
    }
    let _ = writeln!(s, "</table></section>");

    let _ = writeln!(s, "<section id=\"policy\"><h2>Tuned policy</h2>");
    match tuned_toml {
        Some(text) => {
            let _ = writeln!(s, "<p>Drop-in sections for a scenario (<code>tuned-policy.toml</code>); <code>canary-replay check</code> accepts them and <code>run</code> uses them.</p><pre>{}</pre>", escape(text));
        }
        None => {
            let _ = writeln!(s, "<p>None: no variant was feasible.</p>");
        }
    }
    if !exports.is_empty() {
        let _ = writeln!(s, "<h3>Exports</h3><p>The tuned policy in the formats live controllers read. Each file begins with how every part was mapped and what the format cannot express; read that before deploying it.</p><ul>");
        for (file, what) in exports {
            let _ = writeln!(s, "<li><code>{}</code>: {}</li>", escape(file), escape(what));
        }
        let _ = writeln!(s, "</ul>");
    }
    let _ = writeln!(s, "</section>");

    let search = &t.search;
    let _ = writeln!(s, "<section id=\"search\"><h2>Search</h2><table>");
    for (k, v) in [
        ("method", search.method.to_string()),
        ("variants (the base policy included)", search.variants.to_string()),
        ("routing salts per good scenario", search.salts.to_string()),
        ("time windows per good scenario", search.windows.to_string()),
        ("false-rollback budget", format!("{:.1}%", search.false_rollback_budget * 100.0)),
        (
            "good replays a feasible variant promotes, and how soon",
            format!("at least {:.0}% within {}", search.min_promoted * 100.0, search.promote_within),
        ),
        ("not valid policies (see each variant's `invalid` in tune.json)", search.invalid.to_string()),
        ("cut after missing an incident", search.cut_at_incidents.to_string()),
        ("cut once false rollbacks exceeded the budget's allowance", search.cut_at_false_rollbacks.to_string()),
        (
            &format!(
                "cut once fewer than {:.0}% of the good replays could still promote within {}",
                search.min_promoted * 100.0,
                search.promote_within
            ),
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
    ] {
        let _ = writeln!(s, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(&v));
    }
    let _ = writeln!(s, "</table><p>Every variant and its per-scenario results are in <code>tune.json</code>.</p></section>");
    let _ = writeln!(s, "<footer>Written by canary-replay {}.</footer>", env!("CARGO_PKG_VERSION"));
    s.push_str("</main>\n</body>\n</html>\n");
    s
}
