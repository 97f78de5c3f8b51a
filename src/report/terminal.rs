//! The short summary printed after a run.

use std::fmt::Write;

use crate::oracle::Comparison;
use crate::report::{Summary, Timings};
use crate::simulate::Outcome;

/// A few lines a person reads first: what was replayed, with what, and how the models compare.
pub fn print_run(summary: &Summary, timings: &Timings, out_dir: &std::path::Path) -> String {
    let mut s = String::new();
    let o = &summary.oracle;
    let _ = writeln!(
        s,
        "{}: replayed {} requests ({} .. {}) through both models",
        summary.scenario.name, summary.rows_replayed, summary.window.first_request, summary.window.last_request
    );
    let cache = if timings.parts_scored == 0 {
        "all scores from the cache".to_string()
    } else {
        format!("{} part(s) scored, {} reused", timings.parts_scored, timings.parts_reused)
    };
    let _ = writeln!(
        s,
        "ONNX Runtime {} from {} ({}); {cache}; {:.1}s",
        summary.runtime.version, summary.runtime.source, summary.runtime.path, timings.total_seconds
    );
    let sim = &summary.simulation;
    let policy = if sim.default_policy { "the default policy" } else { "the scenario's policy" };
    let verdict = match sim.outcome {
        Outcome::Promoted => "PROMOTED",
        Outcome::RolledBack => "ROLLED BACK",
        Outcome::Held => "HELD",
    };
    let _ = writeln!(s, "\n{verdict} at {} by {policy}, {} after the first request", sim.decided_at, sim.grade.time_to_decision);
    let _ = writeln!(s, "  why:   {}", sim.reason);
    let _ = writeln!(
        s,
        "  grade: {} — {} ({})",
        sim.grade.grade,
        sim.grade.explanation,
        match sim.grade.cells {
            crate::scenario::Grading::FamilyWise => "family-wise: Holm over the cells looked at",
            crate::scenario::Grading::PerCell => "per cell, uncorrected",
        }
    );
    let e = &sim.exposure;
    let _ = write!(
        s,
        "  exposure: {} candidate requests before the decision ({:.1}% of traffic)",
        e.candidate_requests,
        100.0 * e.candidate_share
    );
    if e.in_regressed_segments > 0 {
        let _ = write!(s, ", {} in truly regressed segments", e.in_regressed_segments);
    }
    if e.before_decision_in_regressed_windows > 0 {
        let _ = write!(s, ", {} in the windows found truly worse", e.before_decision_in_regressed_windows);
    }
    if e.after_decision_in_regressed_windows > 0 {
        let _ = write!(s, "; {} after it in regressed weeks", e.after_decision_in_regressed_windows);
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "  stages:");
    for st in &sim.stages {
        let what = if st.monitoring { format!("monitor {:>5.1}%", st.weight) } else { format!("{:>5.1}%", st.weight) };
        let _ = writeln!(s, "    {what:<15} {} → {}  {}", &st.start[..16], &st.end[..16], st.decision);
    }
    if let Some(c) = &summary.controllers {
        super::controllers::print(&mut s, c);
    }
    let served = if summary.oracle_clean.is_some() { ", as users were served them with the injected faults" } else { "" };
    let _ = writeln!(s, "\nThe models on all traffic{served} (the oracle; {} task, {} labelled rows):", o.task, o.overall.paired_labelled);
    write_comparison(&mut s, &o.overall);
    if let Some(clean) = &summary.oracle_clean {
        let _ = writeln!(s, "The models themselves, without the injected faults:");
        write_comparison(&mut s, clean);
    }
    for (column, values) in &o.segments {
        let mut worst: Vec<(&String, &Comparison)> = values.iter().collect();
        let key = if o.task == crate::oracle::Labels::Regression { "rmse" } else { "log_loss" };
        worst.sort_by(|a, b| {
            let d = |c: &Comparison| c.difference.get(key).copied().unwrap_or(f64::NEG_INFINITY);
            d(b.1).total_cmp(&d(a.1)).then(a.0.cmp(b.0))
        });
        if let Some((value, c)) = worst.first() {
            if let Some(d) = c.difference.get(key) {
                let _ = writeln!(s, "  worst {column}: {value} ({key} {:+.4} over {} rows)", d, c.rows);
            }
        }
    }
    let scores = match &summary.scores_file {
        f if f.mode == crate::scenario::ScoresFile::None => String::new(),
        f if f.fraction < 1.0 => format!("scores.parquet (a sample of {} requests), ", f.rows),
        _ => "scores.parquet, ".to_string(),
    };
    let _ = writeln!(s, "\nWrote {}/{{report.html, summary.json, distributions.json, checks.parquet, policy.toml, {scores}charts/, invocation.json, timings.json}}", out_dir.display());
    s
}

fn write_comparison(s: &mut String, c: &Comparison) {
    let _ = writeln!(s, "  {:<18} {:>12} {:>12} {:>12}", "", "stable", "candidate", "difference");
    for (metric, stable) in &c.stable.quality {
        let candidate = c.candidate.quality.get(metric).copied().unwrap_or(f64::NAN);
        let _ = writeln!(s, "  {:<18} {:>12.4} {:>12.4} {:>+12.4}", metric, stable, candidate, candidate - stable);
    }
    let _ = writeln!(s, "  {:<18} {:>12.4} {:>12.4}", "error rate", c.stable.error_rate, c.candidate.error_rate);
    if let (Some(a), Some(b)) = (c.stable.latency_us.p99, c.candidate.latency_us.p99) {
        let _ = writeln!(s, "  {:<18} {:>12.1} {:>12.1} {:>+12.1}", "latency p99 (us)", a, b, b - a);
    }
    if let Some(psi) = c.drift.psi {
        let _ = writeln!(s, "  score drift: PSI {psi:.4}, JS {:.4}", c.drift.jensen_shannon.unwrap_or(f64::NAN));
    }
}
