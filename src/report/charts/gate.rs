//! One gate on all traffic at every check: both arms, and the difference (or ratio) with its
//! interval against the margin or the thresholds.

// The chart frame, palette and helpers of the parent module.
use super::*;
use crate::policy::choice::Kind;

/// One gate on all traffic: both arms' values over the checks (top), and the candidate's
/// difference (or ratio) with its interval against the margin or thresholds (bottom).
pub(super) fn gate_chart(view: &RunView, index: usize, series: &GateSeries, gate: Option<&RawGate>) -> Result<Chart> {
    let (first, last) = view.span();
    // The checks' span: checks stop at the decision.
    let x0 = days(first);
    let last_check = series.points.last().map(|p| days(p.time)).unwrap_or(days(last));
    let x1 = (last_check + ((last_check - x0) * 0.03).max(1.0 / 24.0)).min(days(last)).max(x0 + 1.0 / 24.0);
    let metric = gate.and_then(|g| Metric::parse(&g.metric));
    let kind = gate.and_then(|g| g.kind.known());
    let ratio = kind == Some(Kind::Ratio);
    let threshold = kind == Some(Kind::Threshold);
    let higher_better = metric.and_then(|m| m.better()) == Some(Better::Higher);
    let faults = fault_windows(view, x0, x1);
    let points = &series.points;
    // The line the difference must stay on the right side of.
    let limit = |p: &GatePoint| -> Option<f64> {
        match kind {
            Some(Kind::NonInferiority) => p.margin.map(|m| if higher_better { -m } else { m }),
            Some(Kind::Regression) => Some(0.0),
            _ => None,
        }
    };
    let thresholds: Vec<f64> =
        gate.filter(|_| threshold || ratio).map(|g| [g.min, g.max].into_iter().flatten().collect()).unwrap_or_default();
    let values =
        bounds(points.iter().flat_map(|p| [p.stable, p.canary]).flatten().chain(if threshold { thresholds.clone() } else { Vec::new() }));
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
    let estimate_label = if kind == Some(Kind::NonInferiority) {
        "rollout estimate (stages combined), with its confidence sequence"
    } else {
        "estimate, with its always-valid interval"
    };
    let limit_label = match kind {
        Some(Kind::NonInferiority) => "non-inferiority margin",
        Some(Kind::Regression) => "no worse than stable",
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
        if threshold {
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
    let panels = Panels {
        points,
        faults: &faults,
        x: (x0, x1),
        thresholds: &thresholds,
        ratio,
        threshold,
        limit: &limit,
        estimate_label,
        limit_label,
    };
    let png = render(1200, 620, |root| {
        let (title, body) = root.split_vertically(36);
        title.titled(&format!("Gate: {name} (all traffic)"), style(22))?;
        let (top, bottom) = body.split_vertically(270);
        let Some((legend_at, range)) = values else {
            top.draw_text("no values yet: the gate never had data", &style(16), (80, 120))?;
            return Ok(());
        };
        panels.upper(&top, legend_at, range, &gate.map(|g| g.metric.clone()).unwrap_or_default())?;
        let Some((legend_at, range)) = diffs.filter(|_| points.iter().any(|p| p.estimate.is_some())) else {
            bottom.draw_text("no difference estimated yet: the arms never both had the minimum sample", &style(15), (90, 110))?;
            return Ok(());
        };
        panels.lower(&bottom, legend_at, range)
    })?;
    let direction = if higher_better { "lower is worse" } else { "higher is worse" };
    Ok(Chart {
        kind: ChartKind::Gate(series.gate.clone()),
        file: format!("gate-{}-{}.png", index + 1, series.gate.replace(' ', "-")),
        title: format!("Gate: {}", series.gate),
        caption: match kind {
            Some(Kind::NonInferiority) => format!(
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

/// What the two panels of a gate chart draw.
struct Panels<'a> {
    points: &'a [GatePoint],
    faults: &'a [(f64, f64, String)],
    /// Replayed time across, in days.
    x: (f64, f64),
    thresholds: &'a [f64],
    ratio: bool,
    threshold: bool,
    /// The line the difference must stay on the right side of, at a check.
    limit: &'a dyn Fn(&GatePoint) -> Option<f64>,
    estimate_label: &'static str,
    limit_label: &'static str,
}

impl Panels<'_> {
    /// Both arms' values of `metric` over the checks (`(v0, v1)` up), failing checks crossed.
    fn upper(&self, area: &Area, legend_at: SeriesLabelPosition, (v0, v1): (f64, f64), metric: &str) -> DrawResult {
        let mut upper = time_panel(area, self.x, (v0, v1), 28, metric)?;
        shade_faults(&mut upper, self.faults, (v0, v1), true)?;
        for (i, run) in runs(self.points, |p| p.stable).into_iter().enumerate() {
            let drawn = upper.draw_series(LineSeries::new(run, STABLE.stroke_width(2)))?;
            if i == 0 {
                drawn.label("stable").legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], STABLE.stroke_width(2)));
            }
        }
        for (i, run) in runs(self.points, |p| p.canary).into_iter().enumerate() {
            let drawn = upper.draw_series(LineSeries::new(run, CANDIDATE.stroke_width(2)))?;
            if i == 0 {
                drawn.label("candidate").legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], CANDIDATE.stroke_width(2)));
            }
        }
        let failing_values: Vec<(f64, f64)> =
            self.points.iter().filter(|p| p.verdict == GateVerdict::Fail).filter_map(|p| Some((days(p.time), p.canary?))).collect();
        if !failing_values.is_empty() {
            upper
                .draw_series(failing_values.into_iter().map(|p| Cross::new(p, 5, FAIL.stroke_width(2))))?
                .label("failing check")
                .legend(|(x, y)| Cross::new((x + 9, y), 5, FAIL.stroke_width(2)));
        }
        if self.threshold {
            for t in self.thresholds {
                upper.draw_series(DashedLineSeries::new(vec![(self.x.0, *t), (self.x.1, *t)], 8, 6, FAIL.stroke_width(2)))?;
            }
        }
        legend(&mut upper, legend_at, 13)
    }

    /// The candidate's difference (or ratio) from stable (`(d0, d1)` up) with its interval as a
    /// band, against the margin or the thresholds.
    fn lower(&self, area: &Area, legend_at: SeriesLabelPosition, (d0, d1): (f64, f64)) -> DrawResult {
        let mut lower = time_panel(area, self.x, (d0, d1), 36, if self.ratio { "candidate / stable" } else { "candidate − stable" })?;
        shade_faults(&mut lower, self.faults, (d0, d1), false)?;
        let baseline = if self.ratio { 1.0 } else { 0.0 };
        lower.draw_series(LineSeries::new(vec![(self.x.0, baseline), (self.x.1, baseline)], OPEN.stroke_width(1)))?;
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
        for p in self.points {
            match (p.lower.filter(|v| v.is_finite()), p.upper.filter(|v| v.is_finite())) {
                (Some(lo), Some(hi)) => band.push((days(p.time), lo.max(d0), hi.min(d1))),
                _ => flush(&mut band, &mut lower)?,
            }
        }
        flush(&mut band, &mut lower)?;
        for (i, run) in runs(self.points, |p| p.estimate).into_iter().enumerate() {
            let drawn = lower.draw_series(LineSeries::new(run, CANDIDATE.stroke_width(2)))?;
            if i == 0 {
                drawn
                    .label(self.estimate_label)
                    .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], CANDIDATE.mix(0.4).filled()));
            }
        }
        let mut labelled = false;
        for run in runs(self.points, self.limit) {
            let drawn = lower.draw_series(DashedLineSeries::new(run, 8, 6, FAIL.stroke_width(2)))?;
            if !labelled {
                drawn.label(self.limit_label).legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], FAIL.stroke_width(2)));
                labelled = true;
            }
        }
        if self.ratio {
            for t in self.thresholds {
                lower.draw_series(DashedLineSeries::new(vec![(self.x.0, *t), (self.x.1, *t)], 8, 6, FAIL.stroke_width(2)))?;
            }
        }
        legend(&mut lower, legend_at, 13)
    }
}
