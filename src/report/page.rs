//! `report.html`: one self-contained page (styles inline, charts embedded as PNG data, no
//! scripts, no external assets), written as well-formed XML as well as HTML (void elements
//! closed) so tests can parse it strictly that answers at a glance what the policy would have done, when,
//! why, and how sure we are. Every string that comes from the data or the scenario (segment
//! values, column, file and gate names, reasons) goes through [`escape`].

use std::fmt::Write as _;

use base64::Engine as _;

use super::charts::{Chart, ChartKind};
use super::view::{RunView, SegmentRow};
use crate::oracle::{Comparison, Labels, Latency};
use crate::simulate::grade::Call;
use crate::simulate::judge::GateVerdict;
use crate::simulate::Outcome;

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(crate) const STYLE: &str = r#"
:root { --pass: #289646; --fail: #c82828; --open: #8a8a8a; --ink: #222; --muted: #666; --line: #ddd; --stable: #466eaa; --candidate: #e67814; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: var(--ink); margin: 0; background: #fafafa; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 60px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
p.lede { color: var(--muted); margin: 0 0 18px; }
.banner { border-radius: 6px; padding: 18px 22px; color: #fff; margin: 10px 0 14px; }
.banner.promoted { background: var(--pass); } .banner.rolled_back { background: var(--fail); } .banner.held { background: var(--open); }
.banner .outcome { font-size: 28px; font-weight: 700; letter-spacing: .02em; }
.banner .why { font-size: 16px; margin-top: 6px; }
.banner .decider { margin-top: 6px; font-size: 15px; }
.grade { border-left: 6px solid var(--open); padding: 10px 16px; background: #f4f4f4; margin: 0 0 16px; }
.grade.good { border-color: var(--pass); } .grade.bad { border-color: var(--fail); }
.grade strong { font-size: 16px; }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 10px; margin: 0 0 8px; }
.figure { border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; }
.figure .value { font-size: 20px; font-weight: 600; }
.figure .label { color: var(--muted); font-size: 13px; }
figure { margin: 12px 0 22px; break-inside: avoid; page-break-inside: avoid; }
figure img { width: 100%; height: auto; border: 1px solid var(--line); }
figure.narrow img { max-width: 720px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13.5px; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.PASS { background: #e3f3e7; } td.FAIL { background: #f8dcdc; font-weight: 600; }
td.NEEDS_MORE_DATA, td.UNDERPOWERED, td.NO_DATA { background: #f1f1f1; color: #555; }
td small { color: var(--muted); display: block; }
.bar { display: flex; height: 14px; border-radius: 3px; overflow: hidden; border: 1px solid var(--line); max-width: 640px; }
.bar span { display: block; height: 100%; }
pre { background: #f6f6f6; border: 1px solid var(--line); padding: 10px 12px; overflow-x: auto; font-size: 12.5px; }
code { font-size: 13px; }
.wide { overflow-x: auto; }
footer { color: var(--muted); font-size: 12.5px; margin-top: 40px; }
@media print {
  body { background: #fff; } main { max-width: none; padding: 0; }
  .banner, .grade, td, .bar span { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  h2 { break-after: avoid; }
}
"#;

fn outcome_words(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Promoted => "PROMOTED",
        Outcome::RolledBack => "ROLLED BACK",
        Outcome::Held => "HELD",
    }
}

fn grade_words(grade: Call) -> (&'static str, &'static str) {
    match grade {
        Call::CorrectPromotion => ("good", "Correct promotion"),
        Call::CorrectRollback => ("good", "Correct rollback"),
        Call::FalseRollback => ("bad", "False rollback"),
        Call::MissedRegression => ("bad", "Missed regression"),
        Call::Held => ("", "Held"),
    }
}

pub(crate) fn num(value: Option<f64>, digits: usize) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:.digits$}"),
        _ => "–".to_string(),
    }
}

fn signed(value: Option<f64>, digits: usize) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:+.digits$}"),
        _ => "–".to_string(),
    }
}

/// A timestamp as a reader wants it: `2013-10-25 03:45 UTC`.
fn when(timestamp: &str) -> String {
    match timestamp.get(..16) {
        Some(prefix) => format!("{} UTC", prefix.replace('T', " ")),
        None => timestamp.to_string(),
    }
}

pub(crate) fn figure(s: &mut String, chart: &Chart, narrow: bool) {
    let data = base64::engine::general_purpose::STANDARD.encode(&chart.png);
    let _ = writeln!(
        s,
        r#"<figure{}><img src="data:image/png;base64,{data}" alt="{}" /><figcaption>{} <span>(also <code>charts/{}</code>)</span></figcaption></figure>"#,
        if narrow { r#" class="narrow""# } else { "" },
        escape(&chart.title),
        escape(&chart.caption),
        escape(&chart.file)
    );
}

/// The whole page.
pub fn render(view: &RunView, charts: &[Chart]) -> String {
    let summary = &view.summary;
    let sim = &summary.simulation;
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\" />\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\" />\n<title>{} — canary-replay report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n",
        escape(&summary.scenario.name)
    );
    let _ = writeln!(s, "<h1>Canary replay: {}</h1>", escape(&summary.scenario.name));
    let policy = if sim.default_policy { "the default policy" } else { "the scenario's policy" };
    let _ = writeln!(
        s,
        "<p class=\"lede\">{}{} requests from {} to {} replayed through the stable and the candidate model; the canary ran under {policy}.</p>",
        summary.scenario.description.as_deref().map(|d| format!("{}. ", escape(d.trim_end_matches('.')))).unwrap_or_default(),
        summary.rows_replayed,
        escape(&when(&summary.window.first_request)),
        escape(&when(&summary.window.last_request)),
    );
    verdict(&mut s, view);
    let charts = charts.iter();
    let _ = writeln!(s, "<section id=\"timeline\"><h2>Timeline</h2>");
    if let Some(timeline) = charts.clone().find(|c| c.kind == ChartKind::Timeline) {
        figure(&mut s, timeline, false);
    }
    stages(&mut s, view);
    let _ = writeln!(s, "</section>");
    let _ = writeln!(s, "<section id=\"gates\"><h2>Gates</h2>");
    let _ = writeln!(s, "<p>Each gate on all traffic at every check. The band is the interval the decision used (always-valid, so looking at every check does not inflate false alarms).</p>");
    for gate in &summary.policy.gates {
        let name = gate.name();
        let mut traits = Vec::new();
        if gate.critical == Some(true) {
            traits.push("critical: one failing check rolls back".to_string());
        }
        if gate.required == Some(true) {
            traits.push(format!("required to pass for promotion{}", gate.from_weight.map(|w| format!(" from {w}%")).unwrap_or_default()));
        }
        if let Some(m) = gate.margin {
            traits.push(format!("margin {m} (relative to stable)"));
        }
        if let Some(m) = gate.min {
            traits.push(format!("min {m}"));
        }
        if let Some(m) = gate.max {
            traits.push(format!("max {m}"));
        }
        let _ = writeln!(s, "<h3>{}</h3><p>{}</p>", escape(&name), escape(&traits.join("; ")));
        if let Some(chart) = charts.clone().find(|c| c.kind == ChartKind::Gate(name.clone())) {
            figure(&mut s, chart, false);
        } else {
            let _ = writeln!(s, "<p><em>No check evaluated this gate on all traffic.</em></p>");
        }
    }
    let _ = writeln!(s, "</section>");
    segments(&mut s, view);
    let rest: Vec<&Chart> =
        charts.clone().filter(|c| matches!(c.kind, ChartKind::Scores | ChartKind::Calibration | ChartKind::Latency)).collect();
    oracle(&mut s, view, &rest);
    exposure(&mut s, view);
    if let Some(c) = &summary.controllers {
        super::controllers::section(&mut s, c, charts.clone().find(|c| c.kind == ChartKind::Controllers));
    }
    effective_policy(&mut s, view);
    provenance(&mut s, view);
    let _ = writeln!(
        s,
        "<footer>Written by {} {} from the run folder's summary.json, distributions.json, checks.parquet and policy.toml. Re-render with <code>canary-replay report {}</code>.</footer>",
        escape(&summary.tool.name),
        escape(&summary.tool.version),
        escape(&view.dir.display().to_string())
    );
    s.push_str("</main>\n</body>\n</html>\n");
    s
}

/// The banner: outcome, when, why, the gate and scope that decided, and the oracle's grade.
fn verdict(s: &mut String, view: &RunView) {
    let sim = &view.summary.simulation;
    let stage = sim.stages.last();
    let at_stage =
        stage.map(|st| format!(" at the {}{}% stage", if st.monitoring { "monitored " } else { "" }, st.weight)).unwrap_or_default();
    let _ = writeln!(
        s,
        "<section class=\"banner {}\" id=\"verdict\"><div class=\"outcome\">{} on {}</div><div class=\"why\">{} after the first request{}. Why: {}.</div>",
        sim.outcome.name(),
        outcome_words(sim.outcome),
        escape(&when(&sim.decided_at)),
        escape(&sim.grade.time_to_decision),
        escape(&at_stage),
        escape(sim.reason.trim_end_matches('.'))
    );
    let deciders: Vec<&SegmentRow> = view.segments.iter().filter(|r| r.last_verdict == GateVerdict::Fail).collect();
    if sim.outcome == Outcome::RolledBack && !deciders.is_empty() {
        let list: Vec<String> = deciders.iter().take(6).map(|r| format!("{} on {}", escape(&r.gate), escape(&r.scope))).collect();
        let more = if deciders.len() > 6 { format!(" and {} more", deciders.len() - 6) } else { String::new() };
        let _ = writeln!(s, "<div class=\"decider\">Failing at the decision: {}{more}.</div>", list.join("; "));
    }
    let _ = writeln!(s, "</section>");
    let (class, words) = grade_words(sim.grade.grade);
    let _ = writeln!(
        s,
        "<section class=\"grade {class}\" id=\"grade\"><strong>Oracle's grade: {words}.</strong> Judged on all replayed traffic, where both models scored every request: {}. {}</section>",
        escape(&sim.grade.explanation),
        cells_words(sim.grade.cells)
    );
    let e = &sim.exposure;
    let figures = [
        (format!("{}", view.summary.rows_replayed), "requests replayed".to_string()),
        (format!("{}", view.checks.len()), "checks".to_string()),
        (sim.grade.time_to_decision.clone(), "from the first request to the decision".to_string()),
        (
            format!("{}", e.candidate_requests),
            format!("candidate requests before the decision ({:.1}% of traffic)", 100.0 * e.candidate_share),
        ),
        (format!("{}", e.before_decision_in_regressed_windows), "of them in windows the oracle found truly worse".to_string()),
        (
            format!("{}", e.after_decision_in_regressed_windows),
            "candidate requests after the decision in truly regressed windows".to_string(),
        ),
    ];
    let _ = writeln!(s, "<div class=\"figures\">");
    for (value, label) in figures {
        let _ = writeln!(
            s,
            "<div class=\"figure\"><div class=\"value\">{}</div><div class=\"label\">{}</div></div>",
            escape(&value),
            escape(&label)
        );
    }
    let _ = writeln!(s, "</div>");
}

fn stages(s: &mut String, view: &RunView) {
    let _ = writeln!(s, "<table><tr><th>stage</th><th>weight</th><th>from</th><th>to</th><th>decision</th><th>why</th></tr>");
    for (i, st) in view.summary.simulation.stages.iter().enumerate() {
        let _ = writeln!(
            s,
            "<tr><td class=\"num\">{}</td><td class=\"num\">{}{}%</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            i + 1,
            if st.monitoring { "monitor " } else { "" },
            st.weight,
            escape(&when(&st.start)),
            escape(&when(&st.end)),
            st.decision.name(),
            escape(&st.reason)
        );
    }
    let _ = writeln!(s, "</table>");
    if !view.summary.faults.is_empty() {
        let _ = writeln!(s, "<p>Injected faults (shaded in the charts):</p><ul>");
        for f in &view.summary.faults {
            let window = match (&f.start, &f.end) {
                (Some(a), Some(b)) => format!("from {} to {}", when(a), when(b)),
                (Some(a), None) => format!("from {}", when(a)),
                (None, Some(b)) => format!("until {}", when(b)),
                (None, None) => "throughout".to_string(),
            };
            let _ = writeln!(s, "<li>{} {}</li>", escape(&f.description), escape(&window));
        }
        let _ = writeln!(s, "</ul>");
    }
}

/// Gates × scopes: the verdict at the last check, how many checks failed, the last estimate.
fn segments(s: &mut String, view: &RunView) {
    let _ = writeln!(s, "<section id=\"segments\"><h2>Per segment</h2>");
    let _ = writeln!(
        s,
        "<p>Every gate on every scope it watched: the verdict at the last check (coloured), failing checks out of all checks, and the last estimate of the candidate's difference from stable with its interval. Segment scopes can only fail a check, never pass a stage on their own.</p>"
    );
    let gates: Vec<String> =
        view.summary.policy.gates.iter().map(|g| g.name()).filter(|g| view.segments.iter().any(|r| &r.gate == g)).collect();
    let mut scopes: Vec<(&str, u64)> = Vec::new();
    for r in &view.segments {
        match scopes.iter_mut().find(|(scope, _)| *scope == r.scope) {
            Some(entry) => entry.1 += r.fails,
            None => scopes.push((&r.scope, r.fails)),
        }
    }
    scopes.sort_by(|a, b| (a.0 != "overall").cmp(&(b.0 != "overall")).then(b.1.min(1).cmp(&a.1.min(1))).then(a.0.cmp(b.0)));
    let _ = write!(s, "<div class=\"wide\"><table><tr><th>scope</th>");
    for g in &gates {
        let _ = write!(s, "<th>{}</th>", escape(g));
    }
    let _ = writeln!(s, "</tr>");
    for (scope, _) in &scopes {
        let _ = write!(s, "<tr><th>{}</th>", escape(scope));
        for g in &gates {
            match view.segments.iter().find(|r| &r.gate == g && r.scope == *scope) {
                Some(r) => {
                    let interval = match (r.lower, r.upper) {
                        (Some(lo), Some(hi)) => format!(" [{}, {}]", signed(Some(lo), 4), signed(Some(hi), 4)),
                        _ => String::new(),
                    };
                    let _ = write!(
                        s,
                        "<td class=\"{}\">{}<small>{} of {} checks failed</small><small>{}{}</small></td>",
                        r.last_verdict.name(),
                        r.last_verdict.name(),
                        r.fails,
                        r.checks,
                        signed(r.estimate, 4),
                        interval
                    );
                }
                None => {
                    let _ = write!(s, "<td></td>");
                }
            }
        }
        let _ = writeln!(s, "</tr>");
    }
    let _ = writeln!(s, "</table></div></section>");
}

fn comparison_rows(s: &mut String, c: &Comparison) {
    for (metric, stable) in &c.stable.quality {
        let candidate = c.candidate.quality.get(metric).copied();
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(metric),
            num(Some(*stable), 4),
            num(candidate, 4),
            signed(candidate.map(|c| c - stable), 4)
        );
    }
    let _ = writeln!(
        s,
        "<tr><td>error rate</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
        num(Some(c.stable.error_rate), 4),
        num(Some(c.candidate.error_rate), 4),
        signed(Some(c.candidate.error_rate - c.stable.error_rate), 4)
    );
    for (name, pick) in [("latency p50 (µs)", 0), ("latency p95 (µs)", 1), ("latency p99 (µs)", 2)] {
        let q = |l: &Latency| [l.p50, l.p95, l.p99][pick];
        let (a, b) = (q(&c.stable.latency_us), q(&c.candidate.latency_us));
        let _ = writeln!(
            s,
            "<tr><td>{name}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            num(a, 1),
            num(b, 1),
            signed(a.zip(b).map(|(a, b)| b - a), 1)
        );
    }
}

/// The whole-traffic comparison the decisions are graded against, and the models' outputs.
fn oracle(s: &mut String, view: &RunView, charts: &[&Chart]) {
    let o = &view.summary.oracle;
    let _ = writeln!(s, "<section id=\"oracle\"><h2>The models on all traffic</h2>");
    let _ = writeln!(
        s,
        "<p>Offline, both models scored every request, so their full-traffic comparison is known: this is the oracle the decision is graded against ({} task, {} requests, {} labelled).</p>",
        o.task.name(),
        o.overall.rows,
        o.overall.paired_labelled
    );
    if view.summary.oracle_clean.is_some() {
        let _ = writeln!(s, "<p>As users were served: the scenario's injected faults applied, as the canary saw them.</p>");
    }
    let _ = writeln!(s, "<table><tr><th>metric</th><th>stable</th><th>candidate</th><th>difference</th></tr>");
    comparison_rows(s, &o.overall);
    let _ = writeln!(s, "</table>");
    if let Some(clean) = &view.summary.oracle_clean {
        let _ = writeln!(s, "<p>The models themselves, without the injected faults:</p>");
        let _ = writeln!(s, "<table><tr><th>metric</th><th>stable</th><th>candidate</th><th>difference</th></tr>");
        comparison_rows(s, clean);
        let _ = writeln!(s, "</table>");
    }
    let _ = writeln!(
        s,
        "<p>Score drift between the models: PSI {}, Jensen-Shannon distance {}.</p>",
        num(o.overall.drift.psi, 4),
        num(o.overall.drift.jensen_shannon, 4)
    );
    let findings = &view.summary.simulation.grade.findings;
    if !findings.is_empty() {
        let _ = writeln!(s, "<p>What the oracle found on the windows the grade is based on:</p>");
        let _ = writeln!(s, "<table><tr><th>gate</th><th>scope</th><th>window</th><th>stable</th><th>candidate</th></tr>");
        for f in findings {
            let _ = writeln!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{} – {}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                escape(&f.gate),
                escape(&f.scope),
                escape(&when(&f.start)),
                escape(&when(&f.end)),
                num(f.stable, 4),
                num(f.candidate, 4)
            );
        }
        let _ = writeln!(s, "</table>");
    }
    let key = if o.task == Labels::Regression { "rmse" } else { "log_loss" };
    for (column, values) in &o.segments {
        let mut rows: Vec<(&String, &Comparison)> = values.iter().collect();
        let diff = |c: &Comparison| c.candidate.quality.get(key).zip(c.stable.quality.get(key)).map(|(a, b)| a - b);
        rows.sort_by(|a, b| diff(b.1).unwrap_or(f64::NEG_INFINITY).total_cmp(&diff(a.1).unwrap_or(f64::NEG_INFINITY)).then(a.0.cmp(b.0)));
        let shown = rows.len().min(30);
        let _ = writeln!(
            s,
            "<p>By <code>{}</code>, worst {key} difference first{}:</p>",
            escape(column),
            if rows.len() > shown { format!(" ({shown} of {} values)", rows.len()) } else { String::new() }
        );
        let _ = writeln!(s, "<table><tr><th>{}</th><th>requests</th><th>stable {key}</th><th>candidate {key}</th><th>difference</th><th>error rate (stable / candidate)</th></tr>", escape(column));
        for (value, c) in rows.into_iter().take(shown) {
            let _ = writeln!(
                s,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{} / {}</td></tr>",
                escape(value),
                c.rows,
                num(c.stable.quality.get(key).copied(), 4),
                num(c.candidate.quality.get(key).copied(), 4),
                signed(diff(c), 4),
                num(Some(c.stable.error_rate), 4),
                num(Some(c.candidate.error_rate), 4)
            );
        }
        let _ = writeln!(s, "</table>");
    }
    for chart in charts {
        let _ = writeln!(s, "<h3>{}</h3>", escape(&chart.title));
        figure(s, chart, chart.file == "calibration.png");
    }
    let _ = writeln!(s, "</section>");
}

fn exposure(s: &mut String, view: &RunView) {
    let e = &view.summary.simulation.exposure;
    let total = view.summary.rows_replayed.max(1) as f64;
    let _ = writeln!(s, "<section id=\"exposure\"><h2>Exposure</h2>");
    let worse = e.before_decision_in_regressed_windows.min(e.candidate_requests);
    let regressed = worse as f64 / total * 100.0;
    let before = e.candidate_requests.saturating_sub(worse) as f64 / total * 100.0;
    let after = e.candidate_requests_total.saturating_sub(e.candidate_requests) as f64 / total * 100.0;
    let _ = writeln!(
        s,
        "<div class=\"bar\" title=\"share of all replayed requests\"><span style=\"width:{regressed:.2}%;background:var(--fail)\"></span><span style=\"width:{before:.2}%;background:var(--candidate)\"></span><span style=\"width:{after:.2}%;background:#f3c9a0\"></span></div>"
    );
    let _ = writeln!(
        s,
        "<p>Of {} replayed requests, the candidate served {} before the decision ({:.1}% of the traffic up to then): {} of them in the windows and segments the oracle found truly worse, and {} in segments truly worse over the whole time before the decision{}. Over the whole replay it served {}, and {} after the decision in windows the oracle found regressed.</p>",
        view.summary.rows_replayed,
        e.candidate_requests,
        100.0 * e.candidate_share,
        e.before_decision_in_regressed_windows,
        e.in_regressed_segments,
        if e.regressed_segments.is_empty() { String::new() } else { format!(" ({})", escape(&e.regressed_segments.join(", "))) },
        e.candidate_requests_total,
        e.after_decision_in_regressed_windows
    );
    let _ = writeln!(s, "</section>");
}

fn effective_policy(s: &mut String, view: &RunView) {
    let _ = writeln!(s, "<section id=\"policy\"><h2>The effective policy</h2>");
    let _ = writeln!(
        s,
        "<p>Every default written out (this is <code>policy.toml</code>; paste it into a scenario to run the same policy).</p>"
    );
    let _ = writeln!(s, "<pre>{}</pre></section>", escape(&view.policy_toml));
}

fn provenance(s: &mut String, view: &RunView) {
    let summary = &view.summary;
    let _ = writeln!(s, "<section id=\"provenance\"><h2>Provenance</h2><table>");
    let mut row = |key: &str, value: String| {
        let _ = writeln!(s, "<tr><th>{}</th><td>{}</td></tr>", escape(key), value);
    };
    row("tool", escape(&format!("{} {}", summary.tool.name, summary.tool.version)));
    row("scenario", format!("<code>{}</code>", escape(&summary.scenario.file)));
    if let Some(invocation) = &view.invocation {
        row("command", format!("<code>{}</code>", escape(&invocation.command.join(" "))));
        row("working folder", format!("<code>{}</code>", escape(&invocation.working_dir)));
        row("run at", escape(&invocation.started_at));
    }
    row("ONNX Runtime", escape(&format!("{} from {} ({})", summary.runtime.version, summary.runtime.source.name(), summary.runtime.path)));
    for input in &summary.inputs {
        row(
            "traffic",
            format!(
                "<code>{}</code><br />blake3 <code>{}</code><br />{} rows, {} in the window",
                escape(&input.file),
                escape(&input.blake3),
                input.rows,
                input.rows_in_window
            ),
        );
    }
    let c = &summary.columns;
    row(
        "columns",
        escape(&format!(
            "time {}, entity {}, id {}, label {}, segments {}",
            c.time,
            c.entity,
            c.id,
            c.label.as_deref().unwrap_or("none"),
            if c.segments.is_empty() { "none".to_string() } else { c.segments.join(", ") }
        )),
    );
    for (role, model) in &summary.models {
        row(
            &format!("{role} model"),
            format!(
                "<code>{}</code><br />blake3 <code>{}</code><br />output {}, {} features",
                escape(&model.path),
                escape(&model.blake3),
                escape(&model.output),
                model.features.len()
            ),
        );
    }
    row("latency", escape(&format!("{} ({}% of requests)", summary.latency.method, summary.latency.sample_share * 100.0)));
    let _ = writeln!(s, "</table></section>");
}

/// How "truly worse" was decided, in a sentence.
pub(crate) fn cells_words(cells: crate::scenario::Grading) -> &'static str {
    match cells {
        crate::scenario::Grading::FamilyWise => {
            "“Truly worse” is family-wise: Holm's step-down at 5% over every (gate, segment, window) cell the grade looked at (`[grading] cells = \"per_cell\"` judges each cell at a one-sided 5%)."
        }
        crate::scenario::Grading::PerCell => "“Truly worse” is per cell: each (gate, segment, window) at a one-sided 5%, uncorrected for how many the grade looked at.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup() {
        let hostile = r#"<script>alert(1)</script> & "quoted" 'single'"#;
        let escaped = escape(hostile);
        assert_eq!(escaped, "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quoted&quot; &#39;single&#39;");
        assert!(!escaped.contains('<') && !escaped.contains('>') && !escaped.contains('"'));
    }
}
