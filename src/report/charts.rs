//! The report's charts, drawn with plotters into RGB buffers and encoded as PNG. Text is set in
//! DejaVu Sans, embedded in the binary (see `assets/fonts/`), so no system font library is needed
//! at build or run time and a chart looks the same on every machine.

use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::register_font;

use super::view::{GatePoint, GateSeries, RunView};
use crate::error::{Error, Result};
use crate::policy::raw::RawGate;
use crate::policy::Metric;
use crate::simulate::judge::GateVerdict;
use crate::simulate::{Outcome, StageDecision};
use crate::stats::guardrail::Better;
use crate::time::{parse_timestamp, Micros};

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

pub const STABLE: RGBColor = RGBColor(70, 110, 170);
pub const CANDIDATE: RGBColor = RGBColor(230, 120, 20);
pub const PASS: RGBColor = RGBColor(40, 150, 70);
pub const FAIL: RGBColor = RGBColor(200, 40, 40);
pub const OPEN: RGBColor = RGBColor(160, 160, 160);
const FAULT: RGBColor = RGBColor(220, 60, 60);
const REGRESSED: RGBColor = RGBColor(120, 60, 170);
pub(crate) const INK: RGBColor = RGBColor(40, 40, 40);

/// One rendered chart.
pub struct Chart {
    /// Which chart: where the page places it.
    pub kind: ChartKind,
    /// File name under `charts/`.
    pub file: String,
    pub title: String,
    /// What the chart shows, for the caption and the image's alt text.
    pub caption: String,
    pub png: Vec<u8>,
}

/// The report's charts, by what they show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChartKind {
    Timeline,
    /// One gate on all traffic (its name, as checks name it).
    Gate(String),
    Scores,
    Calibration,
    Latency,
    /// The policy beside the emulated live controllers.
    Controllers,
    /// `tune`'s trade-off between caught incidents and exposure.
    Frontier,
}

pub(crate) type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;
pub(crate) type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

fn register_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for family in ["sans-serif", "serif", "monospace"] {
            for style in [FontStyle::Normal, FontStyle::Bold, FontStyle::Italic, FontStyle::Oblique] {
                register_font(family, style, FONT).unwrap_or_else(|_| panic!("the embedded font is a valid TrueType font"));
            }
        }
    });
}

/// Draws into a `width` × `height` RGB canvas and encodes it as PNG.
pub(crate) fn render(width: u32, height: u32, draw: impl FnOnce(&Area) -> DrawResult) -> Result<Vec<u8>> {
    register_fonts();
    let mut pixels = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        draw(&root).map_err(|e| Error::Internal(format!("drawing a chart: {e}")))?;
        root.present().map_err(chart_error)?;
    }
    let mut png = Vec::new();
    let mut encoder = png::Encoder::new(&mut png, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| Error::Internal(format!("encoding a chart: {e}")))?;
    writer.write_image_data(&pixels).map_err(|e| Error::Internal(format!("encoding a chart: {e}")))?;
    writer.finish().map_err(|e| Error::Internal(format!("encoding a chart: {e}")))?;
    Ok(png)
}

fn chart_error(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("drawing a chart: {e}"))
}

pub(crate) fn style(size: u32) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&INK)
}

/// Days since the Unix epoch: the time axis of every chart over replayed time.
fn days(t: Micros) -> f64 {
    crate::time::days(t)
}

fn day_label(span_days: f64) -> impl Fn(&f64) -> String {
    move |d: &f64| {
        let micros = (d * crate::time::MICROS_PER_DAY as f64).round() as i64;
        let Some(t) = chrono::DateTime::from_timestamp_micros(micros) else { return String::new() };
        if span_days < 3.0 {
            t.format("%m-%d %H:%M").to_string()
        } else {
            t.format("%Y-%m-%d").to_string()
        }
    }
}

fn at(text: &str) -> Option<Micros> {
    parse_timestamp(text).ok()
}

/// Every chart of the report, in the order the page shows them.
pub fn all(view: &RunView) -> Result<Vec<Chart>> {
    let mut charts = vec![timeline(view)?];
    for (i, series) in view.gates.iter().enumerate() {
        let gate = view.summary.policy.gates.iter().find(|g| g.name() == series.gate);
        charts.push(gate_chart(view, i, series, gate)?);
    }
    charts.push(scores(view)?);
    if view.scores.calibration.iter().any(|c| !c.is_empty()) {
        charts.push(calibration(view)?);
    }
    if view.scores.latency_cdf_us.iter().any(|l| !l.is_empty()) {
        charts.push(latency(view)?);
    }
    if let Some(c) = &view.summary.controllers {
        charts.push(controllers(view, c)?);
    }
    Ok(charts)
}

/// The candidate's weight (%) after the policy's decision: all traffic after a promotion, none after a
/// rollback, the weight it held at otherwise.
fn weight_after(outcome: Outcome, held: f64) -> f64 {
    match outcome {
        Outcome::Promoted => 100.0,
        Outcome::RolledBack => 0.0,
        Outcome::Held => held,
    }
}

/// A step path through (time, weight) changes, held to `x1`.
fn steps_through(points: impl IntoIterator<Item = (f64, f64)>, x0: f64, x1: f64) -> Vec<(f64, f64)> {
    let mut path = vec![(x0, 0.0)];
    for (x, w) in points {
        let last = path.last().map_or(0.0, |p| p.1);
        if w != last {
            path.push((x, last));
            path.push((x, w));
        }
    }
    let last = path.last().map_or(0.0, |p| p.1);
    path.push((x1, last));
    path
}

/// The candidate's weight under the policy and under each emulated controller, with each one's
/// decision marked.
fn controllers(view: &RunView, c: &super::controllers::Controllers) -> Result<Chart> {
    let (first, last) = view.span();
    let decided = |t: &str| at(t).map(days);
    // Up to a little after the last decision: what happens after it is a flat line.
    let x0 = days(first);
    let latest =
        std::iter::once(&c.policy).chain(c.emulated.iter().map(|e| &e.verdict)).filter_map(|v| decided(&v.decided_at)).fold(x0, f64::max);
    let x1 = (latest + (latest - x0) * 0.4 + 0.5).min(days(last)).max(x0 + 1.0 / 24.0);
    let simulation = &view.summary.simulation;
    let mut policy: Vec<(f64, f64)> = simulation.stages.iter().filter_map(|st| Some((decided(&st.start)?, st.weight))).collect();
    let after = weight_after(simulation.outcome, policy.last().map_or(0.0, |p| p.1));
    policy.extend(decided(&simulation.decided_at).map(|d| (d, after)));
    let mut lines = vec![(c.policy.who.clone(), INK, steps_through(policy, x0, x1), decided(&c.policy.decided_at), c.policy.outcome)];
    let colors = [CANDIDATE, STABLE, REGRESSED, PASS];
    for (i, e) in c.emulated.iter().enumerate() {
        let points = e.timeline.iter().filter_map(|t| Some((decided(&t.time)?, t.weight)));
        lines.push((
            e.verdict.who.clone(),
            colors[i % colors.len()],
            steps_through(points, x0, x1),
            decided(&e.verdict.decided_at),
            e.verdict.outcome,
        ));
    }
    let faults = fault_windows(view, x0, x1);
    // The key goes under the plot: the lines fill every corner of it.
    let mut key: Vec<(Mark, String)> =
        lines.iter().map(|(who, color, ..)| (Mark::Line(*color, if *color == INK { 3 } else { 2 }), who.clone())).collect();
    key.extend(fault_label(&faults).map(|text| (Mark::Shade(FAULT.mix(0.25)), text)));
    let png = render(1200, 400 + key_height(key.len(), 2), |root| {
        let (plot, below) = root.split_vertically(400);
        let mut chart = weight_panel(&plot, "Candidate weight: the policy and your live controllers", (x0, x1))?;
        shade_faults(&mut chart, &faults, (0.0, 108.0), false)?;
        for (_, color, path, at, outcome) in &lines {
            let color = *color;
            let width = if color == INK { 3 } else { 2 };
            chart.draw_series(LineSeries::new(path.clone(), color.stroke_width(width)))?;
            if let Some(x) = at {
                let y = if *outcome == Outcome::RolledBack { 0.0 } else { path.iter().rev().find(|p| p.0 <= *x).map_or(0.0, |p| p.1) };
                if *outcome == Outcome::RolledBack {
                    chart.draw_series(std::iter::once(Cross::new((*x, y + 2.0), 7, color.stroke_width(3))))?;
                } else {
                    chart.draw_series(std::iter::once(TriangleMarker::new((*x, y), 8, color.filled())))?;
                }
            }
        }
        draw_key(&below, &key, 2)
    })?;
    Ok(Chart {
        kind: ChartKind::Controllers,
        file: "controllers.png".into(),
        title: "Live controllers".into(),
        caption: format!(
            "The candidate's weight over replayed time under the policy (black) and under each emulated controller; a cross marks a rollback, a triangle a promotion or hold{}.",
            if faults.is_empty() { "" } else { "; red shading: injected faults" }
        ),
        png,
    })
}

/// The fault windows, clipped to the replay, in days.
fn fault_windows(view: &RunView, x0: f64, x1: f64) -> Vec<(f64, f64, String)> {
    view.summary
        .faults
        .iter()
        .map(|f| {
            let start = f.start.as_deref().and_then(at).map(days).unwrap_or(x0).max(x0);
            let end = f.end.as_deref().and_then(at).map(days).unwrap_or(x1).min(x1);
            (start, end, f.description.clone())
        })
        .filter(|(s, e, _)| e > s)
        .collect()
}

fn shade_faults<DB: DrawingBackend>(
    chart: &mut ChartContext<DB, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>,
    faults: &[(f64, f64, String)],
    y: (f64, f64),
    legend: bool,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    for (i, (start, end, _)) in faults.iter().enumerate() {
        let drawn = chart.draw_series(std::iter::once(Rectangle::new([(*start, y.0), (*end, y.1)], FAULT.mix(0.12).filled())))?;
        if let Some(text) = fault_label(faults).filter(|_| legend && i == 0) {
            drawn.label(text).legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 18, y + 6)], FAULT.mix(0.25).filled()));
        }
    }
    Ok(())
}

/// What the fault shading stands for, in a legend.
fn fault_label(faults: &[(f64, f64, String)]) -> Option<String> {
    match faults {
        [] => None,
        [(_, _, description)] => Some(format!("fault: {description}")),
        _ => Some(format!("faults ({})", faults.len())),
    }
}

/// The mark of an entry in a key drawn under a plot.
enum Mark {
    Line(RGBColor, u32),
    Dot(RGBColor),
    Triangle(RGBColor),
    /// A vertical line, as a decision is drawn.
    Tick(RGBColor),
    Shade(RGBAColor),
}

/// Height of a key of `entries` entries in `columns` columns.
fn key_height(entries: usize, columns: usize) -> u32 {
    16 + 24 * entries.div_ceil(columns) as u32
}

/// A key under a plot, row by row in `columns` columns, for charts whose data fills every corner.
fn draw_key(area: &Area, entries: &[(Mark, String)], columns: usize) -> DrawResult {
    let column_width = (area.dim_in_pixel().0 as i32 - 140) / columns as i32;
    for (i, (mark, text)) in entries.iter().enumerate() {
        let (x, y) = (70 + column_width * (i % columns) as i32, 12 + 24 * (i / columns) as i32);
        match *mark {
            Mark::Line(color, width) => area.draw(&PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(width)))?,
            Mark::Dot(color) => area.draw(&Circle::new((x + 12, y), 4, color.filled()))?,
            Mark::Triangle(color) => area.draw(&TriangleMarker::new((x + 12, y), 6, color.filled()))?,
            Mark::Tick(color) => area.draw(&PathElement::new(vec![(x + 12, y - 7), (x + 12, y + 7)], color.stroke_width(2)))?,
            Mark::Shade(color) => area.draw(&Rectangle::new([(x, y - 7), (x + 24, y + 7)], color.filled()))?,
        }
        area.draw(&Text::new(text.clone(), (x + 32, y - 8), style(14)))?;
    }
    Ok(())
}

/// The weight staircase over replayed time, every check coloured by how its gates came out,
/// promotions and the decision marked, fault windows shaded.
fn timeline(view: &RunView) -> Result<Chart> {
    let (first, last) = view.span();
    let simulation = &view.summary.simulation;
    let decided = at(&simulation.decided_at).map(days).unwrap_or(days(last));
    let x0 = days(first);
    // After a rollback nothing more happens: show the rollout, not the empty months after it.
    let x1 = match simulation.outcome {
        Outcome::RolledBack => (decided + ((decided - x0) * 0.15).max(0.5)).min(days(last)),
        Outcome::Promoted | Outcome::Held => days(last),
    }
    .max(x0 + 1.0 / 24.0);
    let mut steps: Vec<(f64, f64)> = Vec::new();
    for stage in &simulation.stages {
        let (s, e) = (at(&stage.start).map(days).unwrap_or(x0), at(&stage.end).map(days).unwrap_or(x1));
        steps.push((s, stage.weight));
        steps.push((e, stage.weight));
    }
    let after = weight_after(simulation.outcome, steps.last().map(|p| p.1).unwrap_or(0.0));
    steps.push((decided, after));
    steps.push((x1, after));
    let promotions: Vec<f64> =
        simulation.stages.iter().filter(|s| s.decision == StageDecision::Promote).filter_map(|s| at(&s.end).map(days)).collect();
    let faults = fault_windows(view, x0, x1);
    let mut regressed: Vec<(f64, f64)> = Vec::new();
    for f in &simulation.grade.findings {
        if let (Some(s), Some(e)) = (at(&f.start), at(&f.end)) {
            let window = (days(s).max(x0), days(e).min(x1));
            if window.1 > window.0 && !regressed.contains(&window) {
                regressed.push(window);
            }
        }
    }
    let decision = match simulation.outcome {
        Outcome::Promoted => (PASS, "promoted to 100%"),
        Outcome::RolledBack => (FAIL, "rolled back"),
        Outcome::Held => (OPEN, "held"),
    };
    let kinds = [(PASS, "check: all gates pass"), (OPEN, "check: waiting or inconclusive"), (FAIL, "check: a gate fails")];
    let kind = |c: &super::view::CheckPoint| {
        if c.fails > 0 {
            2
        } else if c.open > 0 {
            1
        } else {
            0
        }
    };
    let mut checks: [Vec<(f64, f64)>; 3] = Default::default();
    for c in &view.checks {
        checks[kind(c)].push((days(c.time), c.weight));
    }
    // The key goes under the plot: the staircase, the shading and the decision fill every corner.
    let mut key: Vec<(Mark, String)> = Vec::new();
    if !regressed.is_empty() {
        key.push((Mark::Shade(REGRESSED.mix(0.3)), "oracle: candidate truly worse here".into()));
    }
    if let Some(fault) = fault_label(&faults) {
        key.push((Mark::Shade(FAULT.mix(0.25)), fault));
    }
    key.push((Mark::Line(INK, 2), "weight".into()));
    for ((color, label), points) in kinds.iter().zip(&checks) {
        if !points.is_empty() {
            key.push((Mark::Dot(*color), (*label).into()));
        }
    }
    if !promotions.is_empty() {
        key.push((Mark::Triangle(PASS), "promoted to the next stage".into()));
    }
    key.push((Mark::Tick(decision.0), format!("decision: {}", decision.1)));
    let png = render(1200, 420 + key_height(key.len(), 3), |root| {
        let (plot, below) = root.split_vertically(420);
        let mut chart = weight_panel(&plot, "Candidate weight over replayed time", (x0, x1))?;
        shade_faults(&mut chart, &faults, (0.0, 108.0), false)?;
        for (start, end) in &regressed {
            chart.draw_series(std::iter::once(Rectangle::new([(*start, 0.0), (*end, 108.0)], REGRESSED.mix(0.16).filled())))?;
        }
        chart.draw_series(LineSeries::new(steps.clone(), INK.stroke_width(2)))?;
        for ((color, _), points) in kinds.iter().zip(&checks) {
            chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
        }
        chart.draw_series(promotions.iter().map(|&x| {
            let y = steps.iter().rev().find(|p| p.0 <= x).map(|p| p.1).unwrap_or(0.0);
            TriangleMarker::new((x, y), 7, PASS.filled())
        }))?;
        chart.draw_series(std::iter::once(PathElement::new(vec![(decided, 0.0), (decided, 108.0)], decision.0.stroke_width(2))))?;
        draw_key(&below, &key, 3)
    })?;
    Ok(Chart {
        kind: ChartKind::Timeline,
        file: "timeline.png".into(),
        title: "Timeline".into(),
        caption: format!(
            "The candidate's weight over replayed time ({} checks); each dot is a check, green when every gate passed, grey while waiting for data or inconclusive, red when a gate failed; triangles mark promotions, the vertical line the decision{}.",
            view.checks.len(),
            [(!faults.is_empty()).then_some("; red shading: injected faults"), (!regressed.is_empty()).then_some("; purple shading: windows where the oracle found the candidate truly worse")]
                .into_iter()
                .flatten()
                .collect::<String>()
        ),
        png,
    })
}

type Panel<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>;

/// One panel of a gate chart: replayed time across, `y` up.
/// The candidate's weight (0–108%) over replayed time `x` (days), under `caption`.
fn weight_panel<'a, 'b>(
    area: &'a Area<'b>,
    caption: &str,
    x: (f64, f64),
) -> std::result::Result<Panel<'a, 'b>, Box<dyn std::error::Error>> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, style(22))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(x.0..x.1, 0.0..108.0)?;
    chart
        .configure_mesh()
        .x_labels(8)
        .x_label_formatter(&day_label(x.1 - x.0))
        .y_desc("candidate weight (%)")
        .label_style(style(15))
        .axis_desc_style(style(16))
        .light_line_style(WHITE)
        .draw()?;
    Ok(chart)
}

fn time_panel<'a, 'b>(
    area: &'a Area<'b>,
    x: (f64, f64),
    y: (f64, f64),
    x_labels: u32,
    y_desc: &str,
) -> std::result::Result<Panel<'a, 'b>, Box<dyn std::error::Error>> {
    let mut panel =
        ChartBuilder::on(area).margin(12).x_label_area_size(x_labels).y_label_area_size(72).build_cartesian_2d(x.0..x.1, y.0..y.1)?;
    panel
        .configure_mesh()
        .x_labels(8)
        .x_label_formatter(&day_label(x.1 - x.0))
        .y_desc(y_desc)
        .label_style(style(14))
        .axis_desc_style(style(15))
        .light_line_style(WHITE)
        .draw()?;
    Ok(panel)
}

/// Where a legend hides no data: the first of `corners` (upper ones first) where no point falls
/// under the legend's box, `size` being its width and height as fractions of the plot; else the
/// first corner with the top of the y range raised until every point stays below the box.
/// `points` are (x as a fraction of the plot's width, y). Returns the corner and the y range.
pub(crate) fn legend_room(
    points: &[(f64, f64)],
    y: (f64, f64),
    size: (f64, f64),
    corners: &[SeriesLabelPosition],
) -> (SeriesLabelPosition, (f64, f64)) {
    let free = |corner: &&SeriesLabelPosition| {
        let (right, upper) = match corner {
            SeriesLabelPosition::UpperRight => (true, true),
            SeriesLabelPosition::LowerLeft => (false, false),
            SeriesLabelPosition::LowerRight => (true, false),
            _ => (false, true),
        };
        points.iter().all(|&(fx, py)| {
            let fy = (py - y.0) / (y.1 - y.0);
            let under_x = if right { fx > 1.0 - size.0 } else { fx < size.0 };
            let under_y = if upper { fy > 1.0 - size.1 } else { fy < size.1 };
            !(under_x && under_y)
        })
    };
    match corners.iter().find(free) {
        Some(corner) => (corner.clone(), y),
        None => (corners[0].clone(), (y.0, y.0 + (y.1 - y.0) / (1.0 - size.1).max(0.1))),
    }
}

/// Points along horizontal lines at `ys` across a whole plot, for [`legend_room`].
fn across(ys: &[f64]) -> impl Iterator<Item = (f64, f64)> + '_ {
    ys.iter().flat_map(|&y| (0..=20).map(move |i| (i as f64 / 20.0, y)))
}

/// The size of a legend box of `labels` in `font`-pixel text inside a plot of `plot` pixels, as
/// fractions of the plot's width and height, with the margin plotters leaves around it.
pub(crate) fn legend_size<S: AsRef<str>>(labels: &[S], font: u32, plot: (u32, u32)) -> (f64, f64) {
    let chars = labels.iter().map(|l| l.as_ref().chars().count()).max().unwrap_or(0) as f64;
    let width = 50.0 + 0.45 * font as f64 * chars;
    let height = 20.0 + labels.len() as f64 * (font as f64 + 6.0);
    ((width / plot.0 as f64).min(1.0), (height / plot.1 as f64).min(0.9))
}

/// The series legend, on a translucent box.
pub(crate) fn legend<'a, DB: DrawingBackend + 'a, C: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, C>,
    position: SeriesLabelPosition,
    size: u32,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(OPEN)
        .label_font(style(size))
        .draw()?;
    Ok(())
}

/// Splits a series into runs of consecutive points where `value` is known.
fn runs(points: &[GatePoint], value: impl Fn(&GatePoint) -> Option<f64>) -> Vec<Vec<(f64, f64)>> {
    let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for p in points {
        match value(p).filter(|v| v.is_finite()) {
            Some(v) => runs.last_mut().expect("one run").push((days(p.time), v)),
            None if !runs.last().expect("one run").is_empty() => runs.push(Vec::new()),
            None => {}
        }
    }
    runs.retain(|r| !r.is_empty());
    runs
}

fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return None;
    }
    let pad = if hi > lo { (hi - lo) * 0.08 } else { lo.abs().max(1e-3) * 0.1 };
    Some((lo - pad, hi + pad))
}

/// One gate on all traffic: both arms' values over the checks (top), and the candidate's
/// difference (or ratio) with its interval against the margin or thresholds (bottom).
fn gate_chart(view: &RunView, index: usize, series: &GateSeries, gate: Option<&RawGate>) -> Result<Chart> {
    let (first, last) = view.span();
    // The checks' span: checks stop at the decision.
    let x0 = days(first);
    let last_check = series.points.last().map(|p| days(p.time)).unwrap_or(days(last));
    let x1 = (last_check + ((last_check - x0) * 0.03).max(1.0 / 24.0)).min(days(last)).max(x0 + 1.0 / 24.0);
    let metric = gate.and_then(|g| Metric::parse(&g.metric));
    let kind = gate.map(|g| g.kind.as_str()).unwrap_or("");
    let ratio = kind == "ratio";
    let higher_better = metric.and_then(|m| m.better()) == Some(Better::Higher);
    let faults = fault_windows(view, x0, x1);
    let points = &series.points;
    // The line the difference must stay on the right side of.
    let limit = |p: &GatePoint| -> Option<f64> {
        match kind {
            "non_inferiority" => p.margin.map(|m| if higher_better { -m } else { m }),
            "regression" => Some(0.0),
            _ => None,
        }
    };
    let thresholds: Vec<f64> =
        gate.filter(|_| kind == "threshold" || ratio).map(|g| [g.min, g.max].into_iter().flatten().collect()).unwrap_or_default();
    let values = bounds(points.iter().flat_map(|p| [p.stable, p.canary]).flatten().chain(if kind == "threshold" {
        thresholds.clone()
    } else {
        Vec::new()
    }));
    let diffs = bounds(
        points
            .iter()
            .flat_map(|p| [p.estimate, p.lower, p.upper, limit(p)])
            .flatten()
            .chain(if ratio { thresholds.clone() } else { Vec::new() })
            .chain(std::iter::once(if ratio { 1.0 } else { 0.0 })),
    );
    let name = series.gate.clone();
    let fx = |p: &GatePoint| (days(p.time) - x0) / (x1 - x0);
    let failing = points.iter().any(|p| p.verdict == GateVerdict::Fail && p.canary.is_some());
    let estimate_label = if kind == "non_inferiority" {
        "rollout estimate (stages combined), with its confidence sequence"
    } else {
        "estimate, with its always-valid interval"
    };
    let limit_label = match kind {
        "non_inferiority" => "non-inferiority margin",
        "regression" => "no worse than stable",
        _ => "threshold",
    };
    // Where each panel's legend hides no line, the value axis raised when every corner has one.
    let corners =
        [SeriesLabelPosition::UpperLeft, SeriesLabelPosition::UpperRight, SeriesLabelPosition::LowerLeft, SeriesLabelPosition::LowerRight];
    let values = values.map(|v| {
        let labels = ["stable".to_string(), "candidate".into()]
            .into_iter()
            .chain(failing.then(|| "failing check".into()))
            .chain(fault_label(&faults));
        let mut drawn: Vec<(f64, f64)> =
            points.iter().flat_map(|p| [p.stable, p.canary].into_iter().flatten().map(move |v| (fx(p), v))).collect();
        if kind == "threshold" {
            drawn.extend(across(&thresholds));
        }
        legend_room(&drawn, v, legend_size(&labels.collect::<Vec<_>>(), 13, (1104, 218)), &corners)
    });
    let diffs = diffs.map(|d| {
        let mut drawn: Vec<(f64, f64)> = points
            .iter()
            .flat_map(|p| [p.estimate, p.lower, p.upper, limit(p)].into_iter().flatten().map(move |v| (fx(p), v.clamp(d.0, d.1))))
            .collect();
        if ratio {
            drawn.extend(across(&thresholds));
        }
        legend_room(&drawn, d, legend_size(&[estimate_label, limit_label], 13, (1104, 254)), &corners)
    });
    let png = render(1200, 620, |root| {
        let title_height = 36;
        let (title, body) = root.split_vertically(title_height);
        title.titled(&format!("Gate: {name} (all traffic)"), style(22))?;
        let (top, bottom) = body.split_vertically(270);
        let Some((upper_legend, (v0, v1))) = values else {
            top.draw_text("no values yet: the gate never had data", &style(16), (80, 120))?;
            return Ok(());
        };
        let mut upper = time_panel(&top, (x0, x1), (v0, v1), 28, &gate.map(|g| g.metric.clone()).unwrap_or_default())?;
        shade_faults(&mut upper, &faults, (v0, v1), true)?;
        for (i, run) in runs(points, |p| p.stable).into_iter().enumerate() {
            let drawn = upper.draw_series(LineSeries::new(run, STABLE.stroke_width(2)))?;
            if i == 0 {
                drawn.label("stable").legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], STABLE.stroke_width(2)));
            }
        }
        for (i, run) in runs(points, |p| p.canary).into_iter().enumerate() {
            let drawn = upper.draw_series(LineSeries::new(run, CANDIDATE.stroke_width(2)))?;
            if i == 0 {
                drawn.label("candidate").legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], CANDIDATE.stroke_width(2)));
            }
        }
        let failing_values: Vec<(f64, f64)> =
            points.iter().filter(|p| p.verdict == GateVerdict::Fail).filter_map(|p| Some((days(p.time), p.canary?))).collect();
        if !failing_values.is_empty() {
            upper
                .draw_series(failing_values.into_iter().map(|p| Cross::new(p, 5, FAIL.stroke_width(2))))?
                .label("failing check")
                .legend(|(x, y)| Cross::new((x + 9, y), 5, FAIL.stroke_width(2)));
        }
        if kind == "threshold" {
            for t in &thresholds {
                upper.draw_series(DashedLineSeries::new(vec![(x0, *t), (x1, *t)], 8, 6, FAIL.stroke_width(2)))?;
            }
        }
        legend(&mut upper, upper_legend, 13)?;

        let Some((lower_legend, (d0, d1))) = diffs.filter(|_| points.iter().any(|p| p.estimate.is_some())) else {
            bottom.draw_text("no difference estimated yet: the arms never both had the minimum sample", &style(15), (90, 110))?;
            return Ok(());
        };
        let mut lower = time_panel(&bottom, (x0, x1), (d0, d1), 36, if ratio { "candidate / stable" } else { "candidate − stable" })?;
        shade_faults(&mut lower, &faults, (d0, d1), false)?;
        let baseline = if ratio { 1.0 } else { 0.0 };
        lower.draw_series(LineSeries::new(vec![(x0, baseline), (x1, baseline)], OPEN.stroke_width(1)))?;
        // The interval as a band: contiguous runs of checks with both ends known.
        let mut band: Vec<(f64, f64, f64)> = Vec::new();
        let flush = |band: &mut Vec<(f64, f64, f64)>, chart: &mut ChartContext<BitMapBackend, _>| -> DrawResult {
            if band.len() > 1 {
                let outline: Vec<(f64, f64)> = band.iter().map(|p| (p.0, p.2)).chain(band.iter().rev().map(|p| (p.0, p.1))).collect();
                chart.draw_series(std::iter::once(Polygon::new(outline, CANDIDATE.mix(0.18).filled())))?;
            }
            band.clear();
            Ok(())
        };
        for p in points {
            match (p.lower.filter(|v| v.is_finite()), p.upper.filter(|v| v.is_finite())) {
                (Some(lo), Some(hi)) => band.push((days(p.time), lo.max(d0), hi.min(d1))),
                _ => flush(&mut band, &mut lower)?,
            }
        }
        flush(&mut band, &mut lower)?;
        for (i, run) in runs(points, |p| p.estimate).into_iter().enumerate() {
            let drawn = lower.draw_series(LineSeries::new(run, CANDIDATE.stroke_width(2)))?;
            if i == 0 {
                drawn.label(estimate_label).legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], CANDIDATE.mix(0.4).filled()));
            }
        }
        let mut labelled = false;
        for run in runs(points, limit) {
            let drawn = lower.draw_series(DashedLineSeries::new(run, 8, 6, FAIL.stroke_width(2)))?;
            if !labelled {
                drawn.label(limit_label).legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], FAIL.stroke_width(2)));
                labelled = true;
            }
        }
        if ratio {
            for t in &thresholds {
                lower.draw_series(DashedLineSeries::new(vec![(x0, *t), (x1, *t)], 8, 6, FAIL.stroke_width(2)))?;
            }
        }
        legend(&mut lower, lower_legend, 13)?;
        Ok(())
    })?;
    let direction = if higher_better { "lower is worse" } else { "higher is worse" };
    Ok(Chart {
        kind: ChartKind::Gate(series.gate.clone()),
        file: format!("gate-{}-{}.png", index + 1, series.gate.replace(' ', "-")),
        title: format!("Gate: {}", series.gate),
        caption: match kind {
            "non_inferiority" => format!(
                "{} on all traffic at each check. Top: both arms over the window the check judged, failing checks crossed (a check fails when the candidate is significantly worse than the margin in that window, after the correction across gates and scopes). Bottom: the difference from stable over the whole rollout, stages combined by inverse-variance weights, with its always-valid confidence sequence (a running intersection, so it can exclude the latest estimate when the effect drifts); the gate passes when the sequence's harmful end stays inside the margin ({direction}).",
                series.gate
            ),
            _ => format!(
                "{} on all traffic at each check (top: both arms over the window the check judged, failing checks crossed; bottom: the candidate's {} with its always-valid interval; {direction}).",
                series.gate,
                if ratio { "ratio to stable" } else { "difference from stable" }
            ),
        },
        png,
    })
}

/// Both models' score distributions.
fn scores(view: &RunView) -> Result<Chart> {
    let s = &view.scores;
    let totals = [0, 1].map(|arm| s.histograms[arm].iter().sum::<u64>().max(1) as f64);
    let (lo, hi) = (s.edges.first().copied().unwrap_or(0.0), s.edges.last().copied().unwrap_or(1.0));
    let width = s.edges.get(1).map(|e| e - lo).unwrap_or(1.0);
    let share = |arm: usize| -> Vec<(f64, f64)> {
        let mut line = vec![(lo, 0.0)];
        for (i, n) in s.histograms[arm].iter().enumerate() {
            let y = *n as f64 / totals[arm];
            line.push((lo + width * i as f64, y));
            line.push((lo + width * (i + 1) as f64, y));
        }
        line.push((hi, 0.0));
        line
    };
    let lines = [share(0), share(1)];
    let top = lines.iter().flatten().map(|p| p.1).fold(0.0, f64::max).max(1e-6) * 1.1;
    let png = render(1200, 460, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Score distributions", style(22))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(lo..hi, 0.0..top)?;
        chart
            .configure_mesh()
            .x_desc("score")
            .y_desc("share of requests")
            .label_style(style(15))
            .axis_desc_style(style(16))
            .light_line_style(WHITE)
            .draw()?;
        for (arm, (color, name)) in [(STABLE, "stable"), (CANDIDATE, "candidate")].into_iter().enumerate() {
            chart
                .draw_series(AreaSeries::new(lines[arm].clone(), 0.0, color.mix(0.15)).border_style(color.stroke_width(2)))?
                .label(name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], color.mix(0.5).filled()));
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight, 14)?;
        Ok(())
    })?;
    let drift = &view.summary.oracle.overall.drift;
    Ok(Chart {
        kind: ChartKind::Scores,
        file: "scores.png".into(),
        title: "Score distributions".into(),
        caption: format!(
            "Histograms of both models' scores on {} ({} bins); PSI {}, Jensen-Shannon distance {} on every replayed request.",
            s.of,
            s.edges.len().saturating_sub(1),
            drift.psi.map(|v| format!("{v:.4}")).unwrap_or_else(|| "n/a".into()),
            drift.jensen_shannon.map(|v| format!("{v:.4}")).unwrap_or_else(|| "n/a".into())
        ),
        png,
    })
}

/// Reliability curves: observed positive rate against mean score per score decile.
fn calibration(view: &RunView) -> Result<Chart> {
    let curves = &view.scores.calibration;
    let png = render(900, 620, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Calibration on labelled requests", style(22))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)?;
        chart
            .configure_mesh()
            .x_desc("mean predicted probability")
            .y_desc("observed rate")
            .label_style(style(15))
            .axis_desc_style(style(16))
            .light_line_style(WHITE)
            .draw()?;
        chart
            .draw_series(DashedLineSeries::new(vec![(0.0, 0.0), (1.0, 1.0)], 6, 6, OPEN.stroke_width(1)))?
            .label("perfectly calibrated")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], OPEN));
        for (arm, (color, name)) in [(STABLE, "stable"), (CANDIDATE, "candidate")].into_iter().enumerate() {
            let points: Vec<(f64, f64)> = curves[arm].iter().map(|c| (c.0, c.1)).collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
            chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft, 14)?;
        Ok(())
    })?;
    Ok(Chart {
        kind: ChartKind::Calibration,
        file: "calibration.png".into(),
        title: "Calibration".into(),
        caption: format!(
            "Reliability curves on the labelled requests of {}: the observed positive rate against the mean score in each score decile; closer to the diagonal is better calibrated.",
            view.scores.of
        ),
        png,
    })
}

/// Cumulative distributions of the measured single-request latencies.
fn latency(view: &RunView) -> Result<Chart> {
    let (cdf, measured) = (&view.scores.latency_cdf_us, view.scores.latency_measured);
    let all = cdf.iter().flatten().map(|p| p.0).filter(|v| *v > 0.0);
    let (lo, hi) = all.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if lo.is_finite() && hi > lo { (lo * 0.9, hi * 1.1) } else { (1.0, 10.0) };
    let png = render(1200, 460, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Measured latency of one request, alone", style(22))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d((lo..hi).log_scale(), 0.0..1.0)?;
        chart
            .configure_mesh()
            .x_desc("latency (µs, log scale)")
            .y_desc("share of requests at most this fast")
            .label_style(style(15))
            .axis_desc_style(style(16))
            .light_line_style(WHITE)
            .draw()?;
        for (arm, (color, name)) in [(STABLE, "stable"), (CANDIDATE, "candidate")].into_iter().enumerate() {
            let line: Vec<(f64, f64)> = cdf[arm].iter().copied().filter(|p| p.0 > 0.0).collect();
            chart
                .draw_series(LineSeries::new(line, color.stroke_width(2)))?
                .label(format!("{name} ({} measured)", measured[arm]))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight, 14)?;
        Ok(())
    })?;
    Ok(Chart {
        kind: ChartKind::Latency,
        file: "latency.png".into(),
        title: "Latency".into(),
        caption: format!(
            "Cumulative distribution of single-request latency measured on the same sampled requests for both models ({}% of requests, interleaved), among {}{}; injected latency faults are not included.",
            view.summary.latency.sample_share * 100.0,
            view.scores.of,
            if view.scores.of == "every replayed request" { " (on 512 logarithmic bins, 64 a decade)" } else { "" }
        ),
        png,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legend_goes_where_it_hides_no_point() {
        let corners = [
            SeriesLabelPosition::UpperRight,
            SeriesLabelPosition::UpperLeft,
            SeriesLabelPosition::LowerRight,
            SeriesLabelPosition::LowerLeft,
        ];
        let (y, size) = ((0.0, 1000.0), (0.4, 0.3));
        let (place, range) = legend_room(&[(0.9, 950.0), (0.1, 100.0)], y, size, &corners);
        assert!(matches!(place, SeriesLabelPosition::UpperLeft), "{place:?}");
        assert_eq!(range, y);
        // A point under every corner: the axis rises so that the data stays below the legend.
        let everywhere = [(0.9, 950.0), (0.1, 950.0), (0.9, 50.0), (0.1, 50.0)];
        let (place, range) = legend_room(&everywhere, y, size, &corners);
        assert!(matches!(place, SeriesLabelPosition::UpperRight), "{place:?}");
        assert!((range.1 - 1000.0 / 0.7).abs() < 1e-9, "{range:?}");
        assert_eq!(legend_room(&everywhere, range, size, &corners).1, range, "the raised range leaves the upper right free");
        // Seven rows of 50 characters take about a third of a 1000 × 500 plot each way.
        let (w, h) = legend_size(&vec!["x".repeat(50); 7], 14, (1000, 500));
        assert!((0.3..0.4).contains(&w) && (0.28..0.36).contains(&h), "{w} × {h}");
    }
}
