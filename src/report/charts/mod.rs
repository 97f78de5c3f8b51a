//! The report's charts, drawn with plotters into RGB buffers and encoded as PNG. Text is set in
//! DejaVu Sans, embedded in the binary (see `assets/fonts/`), so no system font library is needed
//! at build or run time and a chart looks the same on every machine.

use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::register_font;

mod gate;
mod outputs;
mod timeline;

use gate::gate_chart;
use outputs::{calibration, latency, scores};
use timeline::{controllers, timeline};

use super::view::{GatePoint, GateSeries, RunView};
use crate::error::{Error, Result};
use crate::policy::raw::RawGate;
use crate::policy::Metric;
use crate::simulate::judge::GateVerdict;
use crate::simulate::{Outcome, StageDecision};
use crate::stats::guardrail::Better;
use crate::time::{parse_timestamp, Micros};

const FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");
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
