//! The emulated live controllers next to the canary-replay policy: `controllers` in
//! `summary.json`, a section of the report and a few printed lines. Every row is graded by the same
//! oracle, so the numbers compare directly: how many requests a truly regressed candidate served
//! (before and after the decision) and how long a good candidate waited for promotion.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::page::{escape, num};
use crate::controller::spec::{Controller, Spec};
use crate::controller::Emulated;
use crate::simulate::grade::{Call, Exposure, Grade};
use crate::simulate::{Outcome, Run};
use crate::time::format_timestamp;

/// One decision maker's outcome, graded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Graded {
    pub who: String,
    pub outcome: Outcome,
    pub decided_at: String,
    pub time_to_decision_hours: f64,
    pub reason: String,
    pub grade: Call,
    pub explanation: String,
    pub candidate_requests_before_decision: u64,
    pub candidate_requests_total: u64,
    /// Candidate requests in the windows and segments the oracle found truly regressed, before and
    /// after the decision: what a bad candidate cost users.
    pub regressed_before_decision: u64,
    pub regressed_after_decision: u64,
}

impl Graded {
    pub fn new(who: String, run: &Run, grade: &Grade, exposure: &Exposure) -> Self {
        Graded {
            who,
            outcome: run.outcome,
            decided_at: format_timestamp(run.decided_at),
            time_to_decision_hours: grade.time_to_decision_hours,
            reason: run.reason.clone(),
            grade: grade.grade,
            explanation: grade.explanation.clone(),
            candidate_requests_before_decision: exposure.candidate_requests,
            candidate_requests_total: exposure.candidate_requests_total,
            regressed_before_decision: exposure.before_decision_in_regressed_windows,
            regressed_after_decision: exposure.after_decision_in_regressed_windows,
        }
    }

    /// Requests served by the candidate where and when it was truly worse.
    pub fn harm(&self) -> u64 {
        self.regressed_before_decision + self.regressed_after_decision
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TimelineEntry {
    pub time: String,
    /// Candidate weight in percent.
    pub weight: f64,
    pub what: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ControllerSummary {
    /// argo_rollouts | flagger | kayenta.
    pub kind: String,
    #[serde(flatten)]
    pub verdict: Graded,
    /// Measurements (Argo, Flagger) or judgments (Kayenta) taken.
    pub measurements: u64,
    /// Weight changes, decisions and every measurement that did not pass.
    pub timeline: Vec<TimelineEntry>,
    pub timeline_omitted: u64,
    /// How each controller metric was computed.
    pub mapping: Vec<String>,
    /// What could not be emulated faithfully.
    pub caveats: Vec<String>,
}

/// `controllers` in `summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Controllers {
    pub policy: Graded,
    pub emulated: Vec<ControllerSummary>,
    /// One sentence per controller: which would have served users better, with the numbers.
    pub comparison: Vec<String>,
    /// Per controller metric, the candidate requests one query window holds at this log's
    /// traffic, with a warning where they are too few ([`crate::controller::spec::Spec::traffic_notes`]).
    #[serde(default)]
    pub query_traffic: Vec<String>,
}

/// `latency_sample`: the share of requests whose latency was measured.
pub fn summary(
    controller: &Controller,
    spec: &Spec,
    emulated: &Emulated,
    run: &Run,
    grade: &Grade,
    exposure: &Exposure,
    latency_sample: f64,
) -> ControllerSummary {
    let names = controller.metric_names();
    let mapping = names.iter().filter_map(|n| controller.mapping(spec, n).map(|m| format!("{n} → {}", m.describe()))).collect();
    let mut caveats = emulated.caveats.clone();
    let latency: Vec<&String> =
        names.iter().filter(|n| controller.mapping(spec, n).is_some_and(|m| m.metric.name().starts_with("latency"))).collect();
    if !latency.is_empty() && latency_sample < 1.0 {
        caveats.push(format!(
            "{}: latency was measured on {}% of the replayed requests (scoring.latency_sample), far fewer points than a live service records",
            latency.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
            latency_sample * 100.0
        ));
    }
    ControllerSummary {
        kind: controller.kind().to_string(),
        verdict: Graded::new(controller.title(), run, grade, exposure),
        measurements: emulated.events.measurements,
        timeline: emulated
            .events
            .list
            .iter()
            .map(|e| TimelineEntry { time: format_timestamp(e.time), weight: e.weight * 100.0, what: e.what.clone() })
            .collect(),
        timeline_omitted: emulated.events.omitted,
        mapping,
        caveats,
    }
}

/// Which would have served users better, the controller (`other`) or the policy.
pub fn better(policy: &Graded, other: &Graded) -> &'static str {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let rank = |g: Call| match g.right() {
        Some(true) => 2,
        None => 1,
        Some(false) => 0,
    };
    let both_promoted = other.grade == Call::CorrectPromotion && policy.grade == Call::CorrectPromotion;
    let by_call = rank(other.grade).cmp(&rank(policy.grade));
    let by_harm = policy.harm().cmp(&other.harm());
    let by_time = if both_promoted { policy.time_to_decision_hours.total_cmp(&other.time_to_decision_hours) } else { Equal };
    match by_call.then(by_harm).then(by_time) {
        Greater => "the controller would have served users better",
        Less => "the policy would have served users better",
        Equal => "no difference for users",
    }
}

/// One sentence: the controller's outcome and grade against the policy's, the requests a truly
/// regressed candidate served under each, and which served users better. The right call beats the
/// wrong one (a false rollback withholds a good model; a missed regression serves a bad one); between
/// two calls equally right or wrong, fewer requests served by a regressed candidate, then the sooner
/// correct promotion.
pub fn compare(policy: &Graded, other: &Graded) -> String {
    let mut s = format!("{}: {} ({})", other.who, other.outcome.words(), other.grade.words());
    let _ = write!(s, " against the policy's {} ({})", policy.outcome.words(), policy.grade.words());
    let (h, hp) = (other.harm(), policy.harm());
    let _ = write!(s, "; {h} requests served by a truly regressed candidate against {hp}");
    let both_promoted = other.grade == Call::CorrectPromotion && policy.grade == Call::CorrectPromotion;
    if both_promoted {
        let _ = write!(s, "; promoted after {:.0} h against {:.0} h", other.time_to_decision_hours, policy.time_to_decision_hours);
    }
    let better = better(policy, other);
    let _ = write!(s, ": {better}.");
    s
}

/// The report's section (with the side-by-side weight chart when drawn).
pub fn section(s: &mut String, c: &Controllers, chart: Option<&super::charts::Chart>) {
    let _ = writeln!(s, "<section id=\"controllers\"><h2>Your live controllers, emulated</h2>");
    let _ = writeln!(
        s,
        "<p>The controller configurations named in the scenario, replayed on the same traffic with each controller's own decision rules, and graded by the same oracle as the policy above. “Regressed” counts the candidate's requests in the windows and segments where, on all traffic, it truly broke a gate.</p>"
    );
    let _ = writeln!(s, "<table><thead><tr><th>Who decided</th><th>Outcome</th><th>When (h)</th><th>Grade</th><th>Candidate requests before</th><th>Regressed before</th><th>Regressed after</th></tr></thead><tbody>");
    let rows = std::iter::once(&c.policy).chain(c.emulated.iter().map(|e| &e.verdict));
    for v in rows {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(&v.who),
            escape(&v.outcome.words()),
            num(Some(v.time_to_decision_hours), 0),
            escape(&v.grade.words()),
            v.candidate_requests_before_decision,
            v.regressed_before_decision,
            v.regressed_after_decision
        );
    }
    let _ = writeln!(s, "</tbody></table>");
    if let Some(chart) = chart {
        super::page::figure(s, chart, false);
    }
    let _ = writeln!(s, "<ul>");
    for line in &c.comparison {
        let _ = writeln!(s, "<li>{}</li>", escape(line));
    }
    let _ = writeln!(s, "</ul>");
    if !c.query_traffic.is_empty() {
        let _ = writeln!(s, "<p>What each controller metric's queries see at this log's traffic:</p><ul>");
        for line in &c.query_traffic {
            let _ = writeln!(s, "<li>{}</li>", escape(line));
        }
        let _ = writeln!(s, "</ul>");
    }
    for e in &c.emulated {
        let _ = writeln!(s, "<h3>{}</h3>", escape(&e.verdict.who));
        let _ = writeln!(
            s,
            "<p><strong>{}</strong> at {}: {}</p>",
            escape(&e.verdict.outcome.words()),
            escape(&e.verdict.decided_at),
            escape(&e.verdict.reason)
        );
        let _ = writeln!(s, "<p>Grade: {} — {}</p>", escape(&e.verdict.grade.words()), escape(&e.verdict.explanation));
        let _ = writeln!(s, "<p>Metrics: {}. {} measurements or judgments.</p>", escape(&e.mapping.join("; ")), e.measurements);
        if !e.caveats.is_empty() {
            let _ = writeln!(s, "<p>Not emulated faithfully: {}</p>", escape(&e.caveats.join("; ")));
        }
        let _ = writeln!(s, "<details><summary>Timeline ({} entries{})</summary><table><thead><tr><th>Time</th><th>Weight %</th><th>What</th></tr></thead><tbody>", e.timeline.len(), if e.timeline_omitted > 0 { format!(", {} more not kept", e.timeline_omitted) } else { String::new() });
        for t in &e.timeline {
            let _ = writeln!(
                s,
                "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                escape(&t.time),
                num(Some(t.weight), 1),
                escape(&t.what)
            );
        }
        let _ = writeln!(s, "</tbody></table></details>");
    }
    let _ = writeln!(s, "</section>");
}

/// The printed lines.
pub fn print(s: &mut String, c: &Controllers) {
    let _ = writeln!(s, "\nYour live controllers, emulated on the same traffic (graded by the same oracle):");
    for line in c.query_traffic.iter().filter(|l| l.starts_with("warning: ")) {
        let _ = writeln!(s, "  {line}");
    }
    let p = &c.policy;
    let _ =
        writeln!(s, "  {}: {}, {}; {} requests served by a truly regressed candidate", p.who, p.outcome.words(), p.grade.words(), p.harm());
    for e in &c.emulated {
        let v = &e.verdict;
        let _ = writeln!(
            s,
            "  {}\n    {} at {} ({:.0} h): {}",
            v.who,
            v.outcome.words().to_uppercase(),
            v.decided_at,
            v.time_to_decision_hours,
            v.reason
        );
        let _ = writeln!(s, "    {}; {} requests served by a truly regressed candidate: {}", v.grade.words(), v.harm(), better(p, v));
    }
}
