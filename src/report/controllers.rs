//! The emulated live controllers next to the canary-replay policy: `controllers` in
//! `summary.json`, a section of the report and a few printed lines. Every row is graded by the same
//! oracle, so the numbers compare directly: how many requests a truly regressed candidate served
//! (before and after the decision) and how long a good candidate waited for promotion.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::page::{num, Figure};
use crate::controller::spec::{Controller, ControllerKind, Spec};
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
    pub kind: ControllerKind,
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
        kind: controller.kind(),
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
/// The live controllers' section of the page (`templates/controllers.html`).
pub(super) struct Section<'a> {
    pub(super) verdicts: Vec<VerdictRow<'a>>,
    pub(super) chart: Option<Figure<'a>>,
    pub(super) comparison: &'a [String],
    pub(super) query_traffic: &'a [String],
    pub(super) emulated: Vec<EmulatedBlock<'a>>,
}

/// One row of the table: the policy's or a controller's decision, graded.
pub(super) struct VerdictRow<'a> {
    pub(super) who: &'a str,
    pub(super) outcome: String,
    pub(super) hours: String,
    pub(super) grade: String,
    pub(super) before: u64,
    pub(super) regressed_before: u64,
    pub(super) regressed_after: u64,
}

/// One controller: its decision, grade, metrics and timeline.
pub(super) struct EmulatedBlock<'a> {
    pub(super) who: &'a str,
    pub(super) outcome: String,
    pub(super) decided_at: &'a str,
    pub(super) reason: &'a str,
    pub(super) grade: String,
    pub(super) explanation: &'a str,
    pub(super) mapping: String,
    pub(super) measurements: u64,
    pub(super) caveats: String,
    /// (time, weight, what)
    pub(super) timeline: Vec<(&'a str, String, &'a str)>,
    pub(super) omitted: u64,
}

impl<'a> Section<'a> {
    pub(super) fn of(c: &'a Controllers, chart: Option<&'a super::charts::Chart>) -> Self {
        let verdicts = std::iter::once(&c.policy)
            .chain(c.emulated.iter().map(|e| &e.verdict))
            .map(|v| VerdictRow {
                who: &v.who,
                outcome: v.outcome.words(),
                hours: num(Some(v.time_to_decision_hours), 0),
                grade: v.grade.words(),
                before: v.candidate_requests_before_decision,
                regressed_before: v.regressed_before_decision,
                regressed_after: v.regressed_after_decision,
            })
            .collect();
        let emulated = c
            .emulated
            .iter()
            .map(|e| EmulatedBlock {
                who: &e.verdict.who,
                outcome: e.verdict.outcome.words(),
                decided_at: &e.verdict.decided_at,
                reason: &e.verdict.reason,
                grade: e.verdict.grade.words(),
                explanation: &e.verdict.explanation,
                mapping: e.mapping.join("; "),
                measurements: e.measurements,
                caveats: e.caveats.join("; "),
                timeline: e.timeline.iter().map(|t| (t.time.as_str(), num(Some(t.weight), 1), t.what.as_str())).collect(),
                omitted: e.timeline_omitted,
            })
            .collect();
        Section {
            verdicts,
            chart: chart.map(|c| Figure::of(c, false)),
            comparison: &c.comparison,
            query_traffic: &c.query_traffic,
            emulated,
        }
    }
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
