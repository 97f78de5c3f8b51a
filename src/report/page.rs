//! `report.html`: one self-contained page (styles inline, charts embedded as PNG data, no
//! scripts, no external assets), written as well-formed XML as well as HTML (void elements
//! closed) so tests can parse it strictly, that answers at a glance what the policy would have
//! done, when, why, and how sure we are. The page is `templates/report.html` (with
//! `controllers.html` and `figure.html`), compiled in by askama: every value it writes is escaped
//! by [`Html`] unless the template marks it `|safe` (the style sheet and one fixed sentence).
//! Here the run's record is turned into what the template shows, numbers formatted.

use askama::Template;
use base64::Engine as _;

use super::charts::{Chart, ChartKind};
use super::view::{RunView, SegmentRow};
use crate::oracle::{Comparison, Labels, Latency};
use crate::simulate::grade::Call;
use crate::simulate::judge::GateVerdict;
use crate::simulate::Outcome;

/// The pages' escaping, for element content and quoted attribute values: the templates' escaper
/// (askama.toml), so every value a template writes goes through it.
#[derive(Debug, Clone, Copy)]
pub struct Html;

impl askama::filters::Escaper for Html {
    fn write_escaped_str<W: std::fmt::Write>(&self, mut dest: W, text: &str) -> std::fmt::Result {
        let mut rest = text;
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            dest.write_str(&rest[..at])?;
            dest.write_str(match rest.as_bytes()[at] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[at + 1..];
        }
        dest.write_str(rest)
    }
}

/// The pages' style sheet (`report.html` and `tune.html`).
pub(crate) const STYLE: &str = include_str!("../../templates/style.css");

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

/// A chart as the page shows it: inline PNG data, its title as alt text, its caption.
pub(crate) struct Figure<'a> {
    pub(crate) narrow: bool,
    pub(crate) data: String,
    pub(crate) title: &'a str,
    pub(crate) caption: &'a str,
    pub(crate) file: &'a str,
}

impl<'a> Figure<'a> {
    pub(crate) fn of(chart: &'a Chart, narrow: bool) -> Self {
        let data = base64::engine::general_purpose::STANDARD.encode(&chart.png);
        Figure { narrow, data, title: &chart.title, caption: &chart.caption, file: &chart.file }
    }
}

/// The page: `templates/report.html` filled in. Numbers are formatted here; the template escapes
/// every value it writes.
#[derive(Template)]
#[template(path = "report.html")]
struct Page<'a> {
    name: &'a str,
    style: &'static str,
    description: Option<&'a str>,
    rows_replayed: u64,
    first: String,
    last: String,
    default_policy: bool,
    banner: Banner<'a>,
    grade: GradeLine<'a>,
    figures: Vec<(String, String)>,
    timeline: Option<Figure<'a>>,
    stages: Vec<StageRow<'a>>,
    /// (description, when)
    faults: Vec<(&'a str, String)>,
    gates: Vec<GateBlock<'a>>,
    segment_gates: Vec<String>,
    /// Per scope, a cell per gate (none where the gate did not watch the scope).
    segment_rows: Vec<(&'a str, Vec<Option<SegmentCell>>)>,
    oracle: OracleSection<'a>,
    exposure: ExposureLine,
    controllers: Option<super::controllers::Section<'a>>,
    policy_toml: &'a str,
    provenance: Vec<(String, Provenance<'a>)>,
    tool: &'a str,
    version: &'a str,
    dir: String,
}

struct Banner<'a> {
    class: &'static str,
    outcome: &'static str,
    decided_at: String,
    time_to_decision: &'a str,
    at_stage: String,
    reason: &'a str,
    /// (gate, scope) failing at a rollback, at most six; `more` beyond them.
    deciders: Vec<(&'a str, &'a str)>,
    more: usize,
}

struct GradeLine<'a> {
    class: &'static str,
    words: &'static str,
    explanation: &'a str,
    cells: &'static str,
}

struct StageRow<'a> {
    monitoring: bool,
    weight: f64,
    start: String,
    end: String,
    decision: &'static str,
    reason: &'a str,
}

struct GateBlock<'a> {
    name: String,
    traits: String,
    chart: Option<Figure<'a>>,
}

struct SegmentCell {
    verdict: &'static str,
    fails: u64,
    checks: u64,
    estimate: String,
    interval: String,
}

struct OracleSection<'a> {
    task: &'static str,
    rows: u64,
    labelled: u64,
    /// (metric, stable, candidate, difference), as served and without the injected faults.
    overall: Vec<(String, String, String, String)>,
    clean: Option<Vec<(String, String, String, String)>>,
    psi: String,
    jensen_shannon: String,
    findings: Vec<FindingRow<'a>>,
    /// The metric segment values are ordered by.
    key: &'static str,
    columns: Vec<SegmentColumn<'a>>,
    charts: Vec<Figure<'a>>,
}

struct FindingRow<'a> {
    gate: &'a str,
    scope: &'a str,
    start: String,
    end: String,
    stable: String,
    candidate: String,
}

struct SegmentColumn<'a> {
    name: &'a str,
    /// Values in all; the rows show the worst 30.
    values: usize,
    rows: Vec<ValueRow<'a>>,
}

struct ValueRow<'a> {
    value: &'a str,
    requests: u64,
    stable: String,
    candidate: String,
    difference: String,
    errors_stable: String,
    errors_candidate: String,
}

struct ExposureLine {
    /// Shares of all replayed requests, in percent with two decimals, for the bar.
    regressed: String,
    before: String,
    after: String,
    candidate_requests: u64,
    candidate_share: String,
    in_regressed_windows: u64,
    in_regressed_segments: u64,
    regressed_segments: String,
    candidate_requests_total: u64,
    after_in_regressed_windows: u64,
}

/// A provenance row's value.
enum Provenance<'a> {
    Text(String),
    Code(String),
    /// A file, its hash and what it holds.
    File {
        path: &'a str,
        blake3: &'a str,
        detail: String,
    },
}

/// The whole page.
pub fn render(view: &RunView, charts: &[Chart]) -> String {
    let summary = &view.summary;
    let sim = &summary.simulation;
    let find = |kind: &ChartKind| charts.iter().find(|c| &c.kind == kind);
    let (segment_gates, segment_rows) = segments(view);
    let page = Page {
        name: &summary.scenario.name,
        style: STYLE,
        description: summary.scenario.description.as_deref().map(|d| d.trim_end_matches('.')),
        rows_replayed: summary.rows_replayed,
        first: when(&summary.window.first_request),
        last: when(&summary.window.last_request),
        default_policy: sim.default_policy,
        banner: banner(view),
        grade: {
            let (class, words) = grade_words(sim.grade.grade);
            GradeLine { class, words, explanation: &sim.grade.explanation, cells: cells_words(sim.grade.cells) }
        },
        figures: figures(view),
        timeline: find(&ChartKind::Timeline).map(|c| Figure::of(c, false)),
        stages: sim
            .stages
            .iter()
            .map(|st| StageRow {
                monitoring: st.monitoring,
                weight: st.weight,
                start: when(&st.start),
                end: when(&st.end),
                decision: st.decision.name(),
                reason: &st.reason,
            })
            .collect(),
        faults: summary
            .faults
            .iter()
            .map(|f| {
                let window = match (&f.start, &f.end) {
                    (Some(a), Some(b)) => format!("from {} to {}", when(a), when(b)),
                    (Some(a), None) => format!("from {}", when(a)),
                    (None, Some(b)) => format!("until {}", when(b)),
                    (None, None) => "throughout".to_string(),
                };
                (f.description.as_str(), window)
            })
            .collect(),
        gates: summary
            .policy
            .gates
            .iter()
            .map(|gate| {
                let name = gate.name();
                let chart = find(&ChartKind::Gate(name.clone())).map(|c| Figure::of(c, false));
                GateBlock { traits: gate_traits(gate).join("; "), name, chart }
            })
            .collect(),
        segment_gates,
        segment_rows,
        oracle: oracle(view, charts),
        exposure: exposure(view),
        controllers: summary.controllers.as_ref().map(|c| super::controllers::Section::of(c, find(&ChartKind::Controllers))),
        policy_toml: &view.policy_toml,
        provenance: provenance(view),
        tool: &summary.tool.name,
        version: &summary.tool.version,
        dir: view.dir.display().to_string(),
    };
    page.render().expect("the report template writes to a String")
}

/// What the policy says of a gate beside its name: critical, required, margin, bounds.
fn gate_traits(gate: &crate::policy::raw::RawGate) -> Vec<String> {
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
    traits
}

/// The banner: outcome, when, why, the gates and scopes that decided a rollback.
fn banner(view: &RunView) -> Banner<'_> {
    let sim = &view.summary.simulation;
    let at_stage = sim
        .stages
        .last()
        .map(|st| format!(" at the {}{}% stage", if st.monitoring { "monitored " } else { "" }, st.weight))
        .unwrap_or_default();
    let deciders: Vec<&SegmentRow> = view.segments.iter().filter(|r| r.last_verdict == GateVerdict::Fail).collect();
    let shown = if sim.outcome == Outcome::RolledBack { deciders.len().min(6) } else { 0 };
    Banner {
        class: sim.outcome.name(),
        outcome: outcome_words(sim.outcome),
        decided_at: when(&sim.decided_at),
        time_to_decision: &sim.grade.time_to_decision,
        at_stage,
        reason: sim.reason.trim_end_matches('.'),
        deciders: deciders[..shown].iter().map(|r| (r.gate.as_str(), r.scope.as_str())).collect(),
        more: if shown > 0 { deciders.len() - shown } else { 0 },
    }
}

/// The figures under the grade: (value, what it counts).
fn figures(view: &RunView) -> Vec<(String, String)> {
    let sim = &view.summary.simulation;
    let e = &sim.exposure;
    vec![
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
    ]
}

/// Gates × scopes: the verdict at the last check, how many checks failed, the last estimate —
/// scopes with a failing check first, after "overall".
#[allow(clippy::type_complexity)]
fn segments(view: &RunView) -> (Vec<String>, Vec<(&str, Vec<Option<SegmentCell>>)>) {
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
    let rows = scopes
        .into_iter()
        .map(|(scope, _)| {
            let cells = gates
                .iter()
                .map(|g| {
                    view.segments.iter().find(|r| &r.gate == g && r.scope == scope).map(|r| SegmentCell {
                        verdict: r.last_verdict.name(),
                        fails: r.fails,
                        checks: r.checks,
                        estimate: signed(r.estimate, 4),
                        interval: match (r.lower, r.upper) {
                            (Some(lo), Some(hi)) => format!(" [{}, {}]", signed(Some(lo), 4), signed(Some(hi), 4)),
                            _ => String::new(),
                        },
                    })
                })
                .collect();
            (scope, cells)
        })
        .collect();
    (gates, rows)
}

/// (metric, stable, candidate, difference) rows of a comparison: quality, error rate, latency.
fn comparison_rows(c: &Comparison) -> Vec<(String, String, String, String)> {
    let mut rows = Vec::new();
    for (metric, stable) in &c.stable.quality {
        let candidate = c.candidate.quality.get(metric).copied();
        rows.push((metric.clone(), num(Some(*stable), 4), num(candidate, 4), signed(candidate.map(|c| c - stable), 4)));
    }
    rows.push((
        "error rate".to_string(),
        num(Some(c.stable.error_rate), 4),
        num(Some(c.candidate.error_rate), 4),
        signed(Some(c.candidate.error_rate - c.stable.error_rate), 4),
    ));
    for (name, pick) in [("latency p50 (µs)", 0), ("latency p95 (µs)", 1), ("latency p99 (µs)", 2)] {
        let q = |l: &Latency| [l.p50, l.p95, l.p99][pick];
        let (a, b) = (q(&c.stable.latency_us), q(&c.candidate.latency_us));
        rows.push((name.to_string(), num(a, 1), num(b, 1), signed(a.zip(b).map(|(a, b)| b - a), 1)));
    }
    rows
}

/// The whole-traffic comparison the decisions are graded against, and the models' outputs.
fn oracle<'a>(view: &'a RunView, charts: &'a [Chart]) -> OracleSection<'a> {
    let o = &view.summary.oracle;
    let key = if o.task == Labels::Regression { "rmse" } else { "log_loss" };
    let columns = o
        .segments
        .iter()
        .map(|(column, values)| {
            let mut rows: Vec<(&String, &Comparison)> = values.iter().collect();
            let diff = |c: &Comparison| c.candidate.quality.get(key).zip(c.stable.quality.get(key)).map(|(a, b)| a - b);
            rows.sort_by(|a, b| {
                diff(b.1).unwrap_or(f64::NEG_INFINITY).total_cmp(&diff(a.1).unwrap_or(f64::NEG_INFINITY)).then(a.0.cmp(b.0))
            });
            let values = rows.len();
            let rows = rows
                .into_iter()
                .take(30)
                .map(|(value, c)| ValueRow {
                    value,
                    requests: c.rows,
                    stable: num(c.stable.quality.get(key).copied(), 4),
                    candidate: num(c.candidate.quality.get(key).copied(), 4),
                    difference: signed(diff(c), 4),
                    errors_stable: num(Some(c.stable.error_rate), 4),
                    errors_candidate: num(Some(c.candidate.error_rate), 4),
                })
                .collect();
            SegmentColumn { name: column, values, rows }
        })
        .collect();
    OracleSection {
        task: o.task.name(),
        rows: o.overall.rows,
        labelled: o.overall.paired_labelled,
        overall: comparison_rows(&o.overall),
        clean: view.summary.oracle_clean.as_ref().map(comparison_rows),
        psi: num(o.overall.drift.psi, 4),
        jensen_shannon: num(o.overall.drift.jensen_shannon, 4),
        findings: view
            .summary
            .simulation
            .grade
            .findings
            .iter()
            .map(|f| FindingRow {
                gate: &f.gate,
                scope: &f.scope,
                start: when(&f.start),
                end: when(&f.end),
                stable: num(f.stable, 4),
                candidate: num(f.candidate, 4),
            })
            .collect(),
        key,
        columns,
        charts: charts
            .iter()
            .filter(|c| matches!(c.kind, ChartKind::Scores | ChartKind::Calibration | ChartKind::Latency))
            .map(|c| Figure::of(c, c.kind == ChartKind::Calibration))
            .collect(),
    }
}

fn exposure(view: &RunView) -> ExposureLine {
    let e = &view.summary.simulation.exposure;
    let total = view.summary.rows_replayed.max(1) as f64;
    let worse = e.before_decision_in_regressed_windows.min(e.candidate_requests);
    let percent = |requests: u64| format!("{:.2}", requests as f64 / total * 100.0);
    ExposureLine {
        regressed: percent(worse),
        before: percent(e.candidate_requests.saturating_sub(worse)),
        after: percent(e.candidate_requests_total.saturating_sub(e.candidate_requests)),
        candidate_requests: e.candidate_requests,
        candidate_share: format!("{:.1}", 100.0 * e.candidate_share),
        in_regressed_windows: e.before_decision_in_regressed_windows,
        in_regressed_segments: e.in_regressed_segments,
        regressed_segments: e.regressed_segments.join(", "),
        candidate_requests_total: e.candidate_requests_total,
        after_in_regressed_windows: e.after_decision_in_regressed_windows,
    }
}

fn provenance(view: &RunView) -> Vec<(String, Provenance<'_>)> {
    let summary = &view.summary;
    let mut rows = vec![
        ("tool".to_string(), Provenance::Text(format!("{} {}", summary.tool.name, summary.tool.version))),
        ("scenario".to_string(), Provenance::Code(summary.scenario.file.clone())),
    ];
    if let Some(invocation) = &view.invocation {
        rows.push(("command".to_string(), Provenance::Code(invocation.command.join(" "))));
        rows.push(("working folder".to_string(), Provenance::Code(invocation.working_dir.clone())));
        rows.push(("run at".to_string(), Provenance::Text(invocation.started_at.clone())));
    }
    let runtime = &summary.runtime;
    rows.push((
        "ONNX Runtime".to_string(),
        Provenance::Text(format!("{} from {} ({})", runtime.version, runtime.source.name(), runtime.path)),
    ));
    for input in &summary.inputs {
        rows.push((
            "traffic".to_string(),
            Provenance::File {
                path: &input.file,
                blake3: &input.blake3,
                detail: format!("{} rows, {} in the window", input.rows, input.rows_in_window),
            },
        ));
    }
    let c = &summary.columns;
    rows.push((
        "columns".to_string(),
        Provenance::Text(format!(
            "time {}, entity {}, id {}, label {}, segments {}",
            c.time,
            c.entity,
            c.id,
            c.label.as_deref().unwrap_or("none"),
            if c.segments.is_empty() { "none".to_string() } else { c.segments.join(", ") }
        )),
    ));
    for (role, model) in &summary.models {
        rows.push((
            format!("{role} model"),
            Provenance::File {
                path: &model.path,
                blake3: &model.blake3,
                detail: format!("output {}, {} features", model.output, model.features.len()),
            },
        ));
    }
    let latency = &summary.latency;
    rows.push(("latency".to_string(), Provenance::Text(format!("{} ({}% of requests)", latency.method, latency.sample_share * 100.0))));
    rows
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

    /// A value written by an `.html` template, as the pages write every value.
    #[derive(Template)]
    #[template(source = "<p title=\"{{ text }}\">{{ text }}</p>", ext = "html")]
    struct Value<'a> {
        text: &'a str,
    }

    #[test]
    fn templates_escape_every_value_with_the_pages_escaper() {
        let hostile = r#"<script>alert(1)</script> & "quoted" 'single'"#;
        let escaped = "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quoted&quot; &#39;single&#39;";
        assert_eq!(Value { text: hostile }.render().unwrap(), format!("<p title=\"{escaped}\">{escaped}</p>"));
    }
}
