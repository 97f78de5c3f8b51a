//! The simulation's part of the report: outcome, stages, checks, exposure and grade in
//! `summary.json`; every gate verdict of every check in `checks.parquet`; the effective policy in
//! `policy.toml`.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array};
use arrow::datatypes::{Field, Schema};
use parquet::arrow::ArrowWriter;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::simulate::grade::{Exposure, Grade};
use crate::simulate::judge::{GateResult, GateVerdict};
use crate::simulate::{Action, Outcome, Run, Setup, StageDecision};
use crate::time::{format_timestamp, Micros};

/// The simulation in `summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Simulation {
    pub outcome: Outcome,
    pub decided_at: String,
    pub reason: String,
    pub grade: Grade,
    pub exposure: Exposure,
    pub default_policy: bool,
    pub stages: Vec<StageSummary>,
    /// Every check, with the all-traffic verdict of each gate and every segment verdict that is
    /// not a pass (the full table is `checks.parquet`).
    pub checks: Vec<CheckSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StageSummary {
    pub wave: usize,
    /// Percent.
    pub weight: f64,
    pub monitoring: bool,
    pub start: String,
    pub end: String,
    pub decision: StageDecision,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckSummary {
    pub time: String,
    pub stage: usize,
    pub weight: f64,
    pub action: Action,
    pub gates: Vec<GateSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GateSummary {
    pub gate: String,
    pub scope: String,
    pub verdict: GateVerdict,
    pub stable: Option<f64>,
    pub canary: Option<f64>,
    pub n: [u64; 2],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<[f64; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adjusted_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_required: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hours_required: Option<f64>,
}

fn gate_summary(setup: &Setup, r: &GateResult) -> GateSummary {
    GateSummary {
        gate: setup.policy.gates[r.gate].name(),
        scope: setup.scopes.scopes[r.scope].label(),
        verdict: r.verdict,
        stable: r.stable,
        canary: r.canary,
        n: r.n,
        estimate: r.estimate,
        interval: r.interval.map(|i| [i.lower, i.upper]),
        p_value: r.p_value,
        adjusted_p: r.adjusted_p,
        n_required: r.n_required,
        hours_required: r.hours_required,
    }
}

pub fn summary(setup: &Setup, run: &Run, grade: Grade, exposure: Exposure) -> Simulation {
    let stages = run
        .stages
        .iter()
        .map(|s| StageSummary {
            wave: s.wave,
            weight: s.weight * 100.0,
            monitoring: s.monitoring,
            start: format_timestamp(s.start),
            end: format_timestamp(s.end),
            decision: s.decision,
            reason: s.reason.clone(),
        })
        .collect();
    let checks = run
        .checks
        .iter()
        .map(|c| CheckSummary {
            time: format_timestamp(c.time),
            stage: c.stage,
            weight: c.weight * 100.0,
            action: c.action,
            gates: c.results.iter().filter(|r| r.scope == 0 || r.verdict != GateVerdict::Pass).map(|r| gate_summary(setup, r)).collect(),
        })
        .collect();
    Simulation {
        outcome: run.outcome,
        decided_at: format_timestamp(run.decided_at),
        reason: run.reason.clone(),
        grade,
        exposure,
        default_policy: setup.policy.default_gates,
        stages,
        checks,
    }
}

/// `checks.parquet`: one row per check, gate and scope.
pub struct Checks<'a> {
    pub setup: &'a Setup<'a>,
    pub run: &'a Run,
}

impl crate::output::Artifact for Checks<'_> {
    fn name(&self) -> &str {
        "checks.parquet"
    }

    fn write_to(&self, path: &Path) -> Result<()> {
        write_checks(path, self.setup, self.run)
    }
}

/// Rows of `checks.parquet` assembled at a time: a month of 5-minute checks on 100 segment cells
/// is hundreds of thousands of rows, assembled whole about 100 MB of columns at once.
const CHECK_ROWS: usize = 1 << 16;

fn write_checks(path: &Path, setup: &Setup, run: &Run) -> Result<()> {
    let rows: Vec<(&crate::simulate::Check, &GateResult)> = run.checks.iter().flat_map(|c| c.results.iter().map(move |r| (c, r))).collect();
    let schema = checks_batch(setup, &[])?.schema();
    let file = File::create(path).map_err(|e| Error::io(path, e))?;
    let mut writer = ArrowWriter::try_new(file, schema, None).map_err(|e| Error::failed("writing checks.parquet", e))?;
    for rows in rows.chunks(CHECK_ROWS) {
        writer.write(&checks_batch(setup, rows)?).map_err(|e| Error::failed("writing checks.parquet", e))?;
    }
    writer.close().map_err(|e| Error::failed("writing checks.parquet", e))?;
    Ok(())
}

/// The columns of `checks.parquet` for `rows`.
fn checks_batch(setup: &Setup, rows: &[(&crate::simulate::Check, &GateResult)]) -> Result<RecordBatch> {
    let text = |f: &dyn Fn(&(&crate::simulate::Check, &GateResult)) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let float = |f: &dyn Fn(&(&crate::simulate::Check, &GateResult)) -> Option<f64>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<Float64Array>())
    };
    let count =
        |f: &dyn Fn(&(&crate::simulate::Check, &GateResult)) -> u64| -> ArrayRef { Arc::new(rows.iter().map(f).collect::<UInt64Array>()) };
    let time: Vec<Micros> = rows.iter().map(|(c, _)| c.time).collect();
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("time", Arc::new(TimestampMicrosecondArray::from(time).with_timezone("UTC"))),
        ("wave", count(&|(c, _)| c.wave as u64)),
        ("stage", count(&|(c, _)| c.stage as u64)),
        ("weight", float(&|(c, _)| Some(c.weight * 100.0))),
        ("monitoring", Arc::new(rows.iter().map(|(c, _)| Some(c.monitoring)).collect::<BooleanArray>())),
        ("action", text(&|(c, _)| format!("{:?}", c.action).to_lowercase())),
        ("gate", text(&|(_, r)| setup.policy.gates[r.gate].name())),
        ("metric", text(&|(_, r)| setup.policy.gates[r.gate].metric.name().to_string())),
        ("scope", text(&|(_, r)| setup.scopes.scopes[r.scope].label())),
        ("verdict", text(&|(_, r)| r.verdict.name().to_string())),
        ("stable", float(&|(_, r)| r.stable)),
        ("canary", float(&|(_, r)| r.canary)),
        ("n_stable", count(&|(_, r)| r.n[0])),
        ("n_canary", count(&|(_, r)| r.n[1])),
        ("estimate", float(&|(_, r)| r.estimate)),
        ("lower", float(&|(_, r)| r.interval.map(|i| i.lower))),
        ("upper", float(&|(_, r)| r.interval.map(|i| i.upper))),
        ("p_value", float(&|(_, r)| r.p_value)),
        ("adjusted_p", float(&|(_, r)| r.adjusted_p)),
        ("margin", float(&|(_, r)| r.margin)),
        ("n_required", float(&|(_, r)| r.n_required)),
        ("hours_required", float(&|(_, r)| r.hours_required)),
    ];
    let schema =
        Arc::new(Schema::new(columns.iter().map(|(name, array)| Field::new(*name, array.data_type().clone(), true)).collect::<Vec<_>>()));
    RecordBatch::try_new(schema, columns.into_iter().map(|(_, a)| a).collect()).map_err(|e| Error::failed("assembling checks.parquet", e))
}
