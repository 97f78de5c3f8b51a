//! The candidate's weight over replayed time: the policy's timeline and the policy beside the
//! emulated live controllers.

// The chart frame, palette and helpers of the parent module.
use super::*;

/// The candidate's weight under the policy and under each emulated controller, with each one's
/// decision marked.
pub(super) fn controllers(view: &RunView, c: &crate::report::controllers::Controllers) -> Result<Chart> {
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

/// The weight staircase over replayed time, every check coloured by how its gates came out,
/// promotions and the decision marked, fault windows shaded.
pub(super) fn timeline(view: &RunView) -> Result<Chart> {
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
    let kind = |c: &crate::report::view::CheckPoint| {
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
