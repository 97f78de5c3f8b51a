//! The models' outputs on every request: score histograms, reliability curves, latency.

// The chart frame, palette and helpers of the parent module.
use super::*;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};

/// A chart with coordinates `X` × `Y` on an [`Area`].
type Plot<'a, 'b, X, Y> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<X, Y>>;

/// The frame the three charts share: the title over the plot, the label areas (`x_label_area`
/// high under it), both axes named, no minor grid lines.
fn framed<'a, 'b, X: AsRangedCoord, Y: AsRangedCoord>(
    area: &'a Area<'b>,
    caption: &str,
    x_label_area: u32,
    (x, y): (X, Y),
    (x_desc, y_desc): (&str, &str),
) -> std::result::Result<Plot<'a, 'b, X::CoordDescType, Y::CoordDescType>, Box<dyn std::error::Error>>
where
    X::CoordDescType: ValueFormatter<X::Value>,
    Y::CoordDescType: ValueFormatter<Y::Value>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(caption, style(22))
        .margin(14)
        .x_label_area_size(x_label_area)
        .y_label_area_size(64)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(style(15))
        .axis_desc_style(style(16))
        .light_line_style(WHITE)
        .draw()?;
    Ok(chart)
}

/// Both models' score distributions.
pub(super) fn scores(view: &RunView) -> Result<Chart> {
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
        let mut chart = framed(root, "Score distributions", 40, (lo..hi, 0.0..top), ("score", "share of requests"))?;
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
pub(super) fn calibration(view: &RunView) -> Result<Chart> {
    let curves = &view.scores.calibration;
    let png = render(900, 620, |root| {
        let axes = ("mean predicted probability", "observed rate");
        let mut chart = framed(root, "Calibration on labelled requests", 44, (0.0..1.0, 0.0..1.0), axes)?;
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
pub(super) fn latency(view: &RunView) -> Result<Chart> {
    let (cdf, measured) = (&view.scores.latency_cdf_us, view.scores.latency_measured);
    let all = cdf.iter().flatten().map(|p| p.0).filter(|v| *v > 0.0);
    let (lo, hi) = all.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if lo.is_finite() && hi > lo { (lo * 0.9, hi * 1.1) } else { (1.0, 10.0) };
    let png = render(1200, 460, |root| {
        let axes = ("latency (µs, log scale)", "share of requests at most this fast");
        let mut chart = framed(root, "Measured latency of one request, alone", 44, ((lo..hi).log_scale(), 0.0..1.0), axes)?;
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
