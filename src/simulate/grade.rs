//! Grading a run against the oracle.
//!
//! Offline both models scored every request and every label is eventually known, so each gate can
//! be evaluated on the full traffic of a window — the truth the canary only sampled. A gate is
//! *truly regressed* on a window when, on all of its traffic, the candidate breaks the gate:
//! beyond the margin for non-inferiority gates (worse at all for regression gates) by more than
//! chance on that much traffic (a one-sided 95% bound, so a segment of a few hundred requests does
//! not count a coin flip as a regression), outside the bounds for threshold and ratio gates. Like
//! the gate, the oracle judges a window only on at least the gate's `min_samples`.
//! - A rollback is *correct* when some gate is truly regressed on the window the deciding check
//!   judged, else a *false rollback*.
//! - A promotion is *correct* when no gate is truly regressed on the traffic the candidate then
//!   serves — over the whole rest of the replay and over each `ramp.monitor_window` of it (a
//!   regression in December is not excused by a good October) — else a *missed regression*.
//! - A hold is graded as held, saying whether the candidate was truly regressed anywhere.
//!
//! Exposure counts the requests the candidate served before the decision and those in segments
//! truly regressed over that time, and after the decision those served in the windows and segments
//! found regressed.

use serde::{Deserialize, Serialize};

use super::metrics::drift_between;
use super::window::WindowStats;
use super::{round, Outcome, Run, Setup, Source};
use crate::policy::GateKind;
pub use crate::scenario::Grading;
use crate::stats::guardrail::Better;
use crate::time::{format_duration, format_timestamp, Micros};

/// A gate the candidate truly breaks on a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub gate: String,
    pub scope: String,
    pub stable: Option<f64>,
    pub candidate: Option<f64>,
    pub start: String,
    pub end: String,
}

/// Whether a decision was right, by the oracle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Call {
    CorrectPromotion,
    MissedRegression,
    CorrectRollback,
    FalseRollback,
    Held,
}

impl Call {
    /// As `summary.json` writes it: `correct_promotion`.
    pub fn name(self) -> &'static str {
        match self {
            Call::CorrectPromotion => "correct_promotion",
            Call::MissedRegression => "missed_regression",
            Call::CorrectRollback => "correct_rollback",
            Call::FalseRollback => "false_rollback",
            Call::Held => "held",
        }
    }

    /// In words: `correct promotion`.
    pub fn words(self) -> String {
        self.name().replace('_', " ")
    }

    /// Whether the decision was right: `None` for a hold.
    pub fn right(self) -> Option<bool> {
        match self {
            Call::CorrectPromotion | Call::CorrectRollback => Some(true),
            Call::FalseRollback | Call::MissedRegression => Some(false),
            Call::Held => None,
        }
    }
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grade {
    pub grade: Call,
    pub explanation: String,
    /// What the oracle found on the window the grade is based on.
    pub findings: Vec<Finding>,
    /// Time from the first request to the decision.
    pub time_to_decision: String,
    pub time_to_decision_hours: f64,
    /// How "truly worse" was decided over the cells the grade looked at (absent in runs written
    /// before grading was family-wise: per cell).
    #[serde(default = "per_cell")]
    pub cells: Grading,
}

fn per_cell() -> Grading {
    Grading::PerCell
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exposure {
    /// Requests the candidate served before the decision.
    pub candidate_requests: u64,
    /// Share of all requests before the decision.
    pub candidate_share: f64,
    /// Of those, requests in segments truly regressed before the decision.
    pub in_regressed_segments: u64,
    pub regressed_segments: Vec<String>,
    /// Requests the candidate serves over the whole replay (after a promotion: all of them).
    pub candidate_requests_total: u64,
    /// Requests the candidate served before the decision in the windows and segments the grade
    /// found truly regressed (for a rollback: the window the deciding check judged).
    #[serde(default)]
    pub before_decision_in_regressed_windows: u64,
    /// Requests the candidate served after the decision in the windows and segments the grade
    /// found truly regressed (what a missed regression cost).
    pub after_decision_in_regressed_windows: u64,
}

/// Gates truly broken on [start, end), as a family of its own.
pub fn findings(setup: &Setup, source: &mut dyn Source, start: Micros, end: Micros) -> Vec<Finding> {
    let tested = if end > start { tested_cells(setup, &source.oracle(start, end), start, end) } else { Vec::new() };
    select(setup.grading, vec![tested]).into_iter().flatten().collect()
}

/// The cells of the oracle's window [start, end) that were tested, each as a [`Finding`] with its test.
fn tested_cells(setup: &Setup, oracle: &WindowStats, start: Micros, end: Micros) -> Vec<(Finding, Test)> {
    broken(setup, oracle)
        .into_iter()
        .map(|c| {
            let finding = Finding {
                gate: setup.policy.gates[c.gate].name(),
                scope: setup.scopes.scopes[c.scope].label(),
                stable: c.stable,
                candidate: c.candidate,
                start: format_timestamp(start),
                end: format_timestamp(end),
            };
            (finding, c.test)
        })
        .collect()
}

/// How a cell (gate, scope, window) was found broken or not.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Test {
    /// A threshold or ratio gate: its bounds say, no chance involved.
    Bounds(bool),
    /// A non-inferiority or regression gate: the one-sided p-value of "beyond the margin".
    Chance(f64),
}

/// One tested cell of a window.
struct Cell {
    gate: usize,
    scope: usize,
    stable: Option<f64>,
    candidate: Option<f64>,
    test: Test,
}

/// Which of the tested cells, per window, are truly broken: each at a one-sided 5% (per cell), or
/// Holm's step-down over every cell with a p-value in all the windows together (family-wise), the
/// threshold and ratio cells as their bounds say.
fn select<T>(grading: Grading, windows: Vec<Vec<(T, Test)>>) -> Vec<Vec<T>> {
    let threshold = match grading {
        Grading::PerCell => ALPHA,
        Grading::FamilyWise => {
            let mut p: Vec<f64> =
                windows.iter().flatten().filter_map(|(_, t)| if let Test::Chance(p) = t { Some(*p) } else { None }).collect();
            p.sort_by(f64::total_cmp);
            let m = p.len();
            // Holm: reject the k-th smallest while p₍k₎ ≤ α/(m − k); every p up to the last rejected.
            let rejected = p.iter().enumerate().take_while(|(k, p)| **p <= ALPHA / (m - k) as f64).count();
            if rejected == 0 {
                -1.0
            } else {
                p[rejected - 1]
            }
        }
    };
    windows
        .into_iter()
        .map(|cells| {
            cells
                .into_iter()
                .filter(|(_, test)| match (grading, test) {
                    (_, Test::Bounds(bad)) => *bad,
                    (Grading::PerCell, Test::Chance(p)) => *p < threshold,
                    (Grading::FamilyWise, Test::Chance(p)) => *p <= threshold,
                })
                .map(|(finding, _)| finding)
                .collect()
        })
        .collect()
}

/// The level of "truly worse": a one-sided 5% per cell, or family-wise over a grade's cells.
const ALPHA: f64 = 0.05;

/// Every cell of the oracle's window a gate can judge, with its test (see [`Test`]).
fn broken(setup: &Setup, oracle: &WindowStats) -> Vec<Cell> {
    let mut out = Vec::new();
    for (g, gate) in setup.policy.gates.iter().enumerate() {
        for scope in setup.scopes.for_columns(&gate.segments) {
            let arms = oracle.merged(scope);
            let [stable, candidate] = &*arms;
            // On less traffic than the gate itself needs to judge, the oracle cannot tell either:
            // a week's latency sample in a small segment is a handful of requests, and one slow
            // one among them is not a regression (an A/A replay showed such "findings").
            let n = candidate.n(gate.metric).min(if matches!(gate.kind, GateKind::Threshold { .. }) {
                u64::MAX
            } else {
                stable.n(gate.metric)
            });
            if stable.s.requests == 0 || n < gate.min_samples {
                continue;
            }
            let (s, c) = if gate.metric.is_drift() {
                (Some(0.0), drift_between(gate.metric, stable, candidate, &setup.scale.bins))
            } else {
                (stable.value(gate.metric), candidate.value(gate.metric))
            };
            let outside = |v: f64, min: Option<f64>, max: Option<f64>| min.is_some_and(|m| v < m) || max.is_some_and(|m| v > m);
            // The chance that a difference this far beyond the margin comes from noise on this much
            // traffic: a small segment's few hundred requests do not make a regression of a coin flip.
            let beyond = |margin: f64| match (stable.estimate(gate.metric), candidate.estimate(gate.metric)) {
                (Some((s, vs)), Some((c, vc))) => {
                    let excess = harm(gate.metric.better(), s, c) - margin * s.abs();
                    let sd = (vs + vc).sqrt();
                    Some(Test::Chance(if sd > 0.0 {
                        crate::stats::phi_upper(excess / sd)
                    } else if excess > 0.0 {
                        0.0
                    } else {
                        1.0
                    }))
                }
                _ => None,
            };
            let test = match (gate.kind, s, c) {
                (GateKind::Threshold { min, max }, _, Some(c)) => Some(Test::Bounds(outside(c, min, max))),
                (GateKind::Ratio { min, max }, Some(s), Some(c)) => Some(Test::Bounds(outside(
                    if s != 0.0 {
                        c / s
                    } else if c == 0.0 {
                        1.0
                    } else {
                        f64::INFINITY
                    },
                    min,
                    max,
                ))),
                (GateKind::NonInferiority { margin }, Some(_), Some(_)) => beyond(margin),
                (GateKind::Regression, Some(_), Some(_)) => beyond(0.0),
                _ => None,
            };
            // Only cells that could be broken are tested: bounds met and estimates missing are not.
            match test {
                Some(Test::Bounds(false)) | None => {}
                Some(test) => out.push(Cell { gate: g, scope, stable: s, candidate: c, test }),
            }
        }
    }
    out
}

fn harm(better: Option<Better>, stable: f64, candidate: f64) -> f64 {
    match better {
        Some(Better::Lower) => candidate - stable,
        Some(Better::Higher) => stable - candidate,
        None => 0.0,
    }
}

/// Findings over [start, end) as a whole and over each `width` of it, one family.
/// The whole is the sum of its windows (every statistic is an integer sum), so the log is read once.
fn findings_by_window(setup: &Setup, source: &mut dyn Source, start: Micros, end: Micros, width: Micros) -> Vec<Finding> {
    if end <= start {
        return Vec::new();
    }
    if width <= 0 || start + width >= end {
        return findings(setup, source, start, end);
    }
    let mut whole: Option<WindowStats> = None;
    let mut windows = vec![Vec::new()];
    let mut a = start;
    while a < end {
        let b = (a + width).min(end);
        let oracle = source.oracle(a, b);
        windows.push(tested_cells(setup, &oracle, a, b));
        match &mut whole {
            Some(whole) => whole.merge(&oracle),
            None => whole = Some(oracle),
        }
        a = b;
    }
    windows[0] = tested_cells(setup, &whole.expect("at least one window"), start, end);
    select(setup.grading, windows).into_iter().flatten().collect()
}

pub fn grade(setup: &Setup, source: &mut dyn Source, run: &Run) -> Grade {
    let hours = (run.decided_at - run.origin) as f64 / 3.6e9;
    let time_to_decision = format_duration(run.decided_at - run.origin);
    let width = setup.policy.ramp.monitor_window;
    let (grade, explanation, findings) = match run.outcome {
        Outcome::RolledBack => {
            let (a, b) = run.deciding_window;
            let f = findings(setup, source, a, b);
            if f.is_empty() {
                (Call::FalseRollback, "on all traffic of the window the deciding check judged, the candidate breaks no gate".to_string(), f)
            } else {
                (Call::CorrectRollback, format!("on all traffic of that window the candidate truly breaks {}", summary(&f)), f)
            }
        }
        Outcome::Promoted => {
            let (a, b) = if run.decided_at < run.end { (run.decided_at, run.end) } else { (run.origin, run.end) };
            let f = findings_by_window(setup, source, a, b, width);
            if f.is_empty() {
                (Call::CorrectPromotion, "on all traffic after the promotion the candidate breaks no gate".to_string(), f)
            } else {
                (Call::MissedRegression, format!("after the promotion the candidate truly breaks {}", summary(&f)), f)
            }
        }
        Outcome::Held => {
            let f = findings_by_window(setup, source, run.origin, run.end, width);
            let text = if f.is_empty() {
                "held a candidate that breaks no gate on all of the replayed traffic".to_string()
            } else {
                format!("held a candidate that truly breaks {}", summary(&f))
            };
            (Call::Held, text, f)
        }
    };
    Grade { grade, explanation, findings, time_to_decision, time_to_decision_hours: hours, cells: setup.grading }
}

fn summary(findings: &[Finding]) -> String {
    let mut parts: Vec<String> = findings
        .iter()
        .take(3)
        .map(|f| {
            format!(
                "{} on {} in {} .. {} (candidate {} vs stable {})",
                f.gate,
                f.scope,
                &f.start[..10],
                &f.end[..10],
                f.candidate.map_or("-".into(), round),
                f.stable.map_or("-".into(), round)
            )
        })
        .collect();
    if findings.len() > 3 {
        parts.push(format!("and {} more", findings.len() - 3));
    }
    parts.join("; ")
}

/// Requests served [stable, candidate] per scope before the decision; and candidate requests in all.
pub fn served_before(setup: &Setup, source: &mut dyn Source, run: &Run) -> (Vec<[u64; 2]>, u64) {
    let mut before = vec![[0u64; 2]; setup.scopes.len()];
    let mut total = 0u64;
    for p in &run.periods {
        let served = source.served(p.start, p.end, &p.weights);
        total += served[0][1];
        if p.start < run.decided_at {
            let served = if p.end <= run.decided_at { served } else { source.served(p.start, run.decided_at, &p.weights) };
            for (b, s) in before.iter_mut().zip(served) {
                b[0] += s[0];
                b[1] += s[1];
            }
        }
    }
    (before, total)
}

pub fn exposure(setup: &Setup, source: &mut dyn Source, run: &Run, grade: &Grade) -> Exposure {
    let (before, total) = served_before(setup, source, run);
    let regressed: Vec<usize> = {
        let oracle = source.oracle(run.origin, run.decided_at);
        let cells = broken(setup, &oracle).into_iter().map(|c| (c.scope, c.test)).collect();
        let mut scopes: Vec<usize> = select(setup.grading, vec![cells]).into_iter().flatten().collect();
        scopes.sort_unstable();
        scopes.dedup();
        scopes
    };
    // A regression on all traffic counts every candidate request; otherwise the segments' requests.
    let in_regressed = if regressed.contains(&0) { before[0][1] } else { regressed.iter().map(|&s| before[s][1]).sum() };
    let all = before[0][0] + before[0][1];
    // Regressed windows after the decision: the shortest windows found (each `monitor_window`),
    // counting all candidate requests when all traffic regressed, else the segments'.
    let mut after = 0u64;
    let mut before_in_windows = 0u64;
    let mut windows: Vec<(&str, &str)> = grade.findings.iter().map(|f| (f.start.as_str(), f.end.as_str())).collect();
    windows.sort_unstable();
    windows.dedup();
    let width = setup.policy.ramp.monitor_window;
    for (a, b) in windows {
        let (Ok(a), Ok(b)) = (crate::time::parse_timestamp(a), crate::time::parse_timestamp(b)) else { continue };
        // Windows before the decision (the one a rollback judged) count up to the decision.
        let (b, count_before) = if a < run.decided_at { (b.min(run.decided_at), true) } else { (b, false) };
        if b <= a || (!count_before && b - a > width) {
            continue;
        }
        let scopes: Vec<usize> = grade
            .findings
            .iter()
            .filter(|f| crate::time::parse_timestamp(&f.start) == Ok(a))
            .filter_map(|f| setup.scopes.scopes.iter().position(|s| s.label() == f.scope))
            .collect();
        let served: Vec<[u64; 2]> =
            run.periods.iter().filter(|p| p.start < b && p.end > a).map(|p| source.served(p.start.max(a), p.end.min(b), &p.weights)).fold(
                vec![[0u64; 2]; setup.scopes.len()],
                |mut acc, s| {
                    for (x, y) in acc.iter_mut().zip(s) {
                        x[1] += y[1];
                    }
                    acc
                },
            );
        let in_window: u64 = if scopes.contains(&0) {
            served[0][1]
        } else {
            scopes.iter().collect::<std::collections::BTreeSet<_>>().iter().map(|&&s| served[s][1]).sum()
        };
        if count_before {
            before_in_windows += in_window;
        } else {
            after += in_window;
        }
    }
    Exposure {
        candidate_requests: before[0][1],
        candidate_share: if all > 0 { before[0][1] as f64 / all as f64 } else { 0.0 },
        in_regressed_segments: in_regressed,
        regressed_segments: regressed.iter().map(|&s| setup.scopes.scopes[s].label()).collect(),
        candidate_requests_total: total,
        before_decision_in_regressed_windows: before_in_windows,
        after_decision_in_regressed_windows: after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 18, item 9: over 60 cells, one at p = 0.01 is a finding per cell (below 5%) but not
    /// family-wise (Holm's first step asks p ≤ 0.05 / 60); one at p = 0.0005 is both; bounds cells
    /// count as they are.
    #[test]
    fn family_wise_grading_corrects_for_the_cells_looked_at() {
        let mut cells: Vec<(&str, Test)> = (0..57).map(|_| ("noise", Test::Chance(0.5))).collect();
        cells.push(("weak", Test::Chance(0.01)));
        cells.push(("strong", Test::Chance(0.0005)));
        cells.push(("bounds", Test::Bounds(true)));
        let found = |grading| select(grading, vec![cells.clone()]).concat();
        assert_eq!(found(Grading::PerCell), vec!["weak", "strong", "bounds"]);
        assert_eq!(found(Grading::FamilyWise), vec!["strong", "bounds"]);
        // Holm steps down: with the strong cell rejected, the next is held to 0.05 / 59 — across
        // windows alike, as one family.
        let split = select(Grading::FamilyWise, vec![cells[..30].to_vec(), cells[30..].to_vec()]);
        assert_eq!(split.concat(), vec!["strong", "bounds"]);
        // A handful of cells: Holm rejects both small p-values (0.01 ≤ 0.05 / 2 after 0.0005 ≤ 0.05 / 3).
        let few = vec![("weak", Test::Chance(0.01)), ("strong", Test::Chance(0.0005)), ("noise", Test::Chance(0.5))];
        assert_eq!(select(Grading::FamilyWise, vec![few]).concat(), vec!["weak", "strong"]);
    }
}
