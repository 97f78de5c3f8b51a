//! The statistical looks behind a gate's verdict: the harm test's look at this check's difference
//! (mSPRT or group-sequential), the non-inferiority interval, and the differences they read
//! (stages combined by inverse-variance weights).

// The judge's types and tests of the parent module.
use super::*;

/// A non-inferiority gate's verdict from the always-valid interval of the `pooled` difference
/// (the rollout's stages combined, or the stage alone): inside the margin passes; otherwise the
/// sample that would bring it inside. Worse beyond doubt is the harm test's call alone, after the
/// correction across gates ([`Judge::decide_regressions`]).
pub(super) fn non_inferiority(
    r: &mut GateResult,
    entry: &mut Tests,
    (gate, margin): (&Gate, f64),
    decision: &Decision,
    ctx: &Context,
    tests: usize,
    pooled: &Difference,
) {
    let better = gate.metric.better().expect("validated: statistical metrics have a better side");
    let se = pooled.variance.sqrt();
    let interval = if pooled.variance == 0.0 {
        Interval::new(pooled.theta, pooled.theta)
    } else {
        let ni = entry.ni.get_or_insert_with(|| match decision.sequential {
            Sequential::Msprt => NonInferiority::Msprt(Msprt::tuned(decision.tuning.clone(), ctx.alpha_ni, 0.0)),
            Sequential::GroupSequential(spending) => {
                NonInferiority::GroupSequential(Looks::new(2.0 * ctx.alpha_ni / tests.max(1) as f64, spending, 201))
            }
        });
        match ni {
            NonInferiority::Msprt(m) => {
                m.observe(pooled.theta, pooled.variance, pooled.n).map_or(Interval::around(pooled.theta, f64::INFINITY), |l| l.interval)
            }
            NonInferiority::GroupSequential(looks) => {
                let t = (ctx.elapsed as f64 / ctx.max_time.max(1) as f64).clamp(1e-9, 1.0);
                Interval::around(pooled.theta, looks.next(t) * se)
            }
        }
    };
    let n = r.n[0].min(r.n[1]) as f64;
    let assessment = guardrail::assess(
        &Evidence { estimate: pooled.theta, interval, standard_error: se, n },
        pooled.stable,
        margin,
        better,
        ctx.alpha_ni,
        decision.power,
    );
    r.estimate = Some(pooled.theta);
    r.interval = Some(interval);
    r.margin = Some(assessment.margin);
    r.verdict = match assessment.verdict {
        guardrail::Conclusion::NonInferior => GateVerdict::Pass,
        guardrail::Conclusion::Underpowered => GateVerdict::Underpowered,
        // Worse beyond doubt only by the harm test, after the correction across gates; until then,
        // the sample that would bring the interval inside the margin.
        guardrail::Conclusion::NeedsMoreData | guardrail::Conclusion::Regression => GateVerdict::NeedsMoreData,
    };
    r.n_required = assessment.n_required;
    r.hours_required = assessment.n_required.and_then(|req| hours(ctx, r.n[1], req));
}

/// The harm test's look at this check's difference: (harmful, p-value, group-sequential boundary
/// crossed on the harmful side). A non-inferiority gate fails when worse than its margin (fixed at
/// the test's first look), a regression gate when worse at all; the test covers this stage's data.
/// With `skip_below_z2` (the decision alone), an mSPRT look that cannot bring a p-value above α to
/// α is skipped: with ln Λ ≤ ln 2 + z²/2 below ln(1/α) the running p-value stays above α.
pub(super) fn harm_look(
    entry: &mut Tests,
    gate: &Gate,
    decision: &Decision,
    ctx: &Context,
    now: &Difference,
    tests: usize,
    skip_below_z2: Option<f64>,
) -> (bool, PValue, Option<bool>) {
    let harm_sign = harm_sign(gate.metric);
    let harm = entry.harm.get_or_insert_with(|| {
        let theta0 = match gate.kind {
            GateKind::NonInferiority { margin } => harm_sign * margin * now.stable.abs(),
            _ => 0.0,
        };
        match decision.sequential {
            Sequential::Msprt => Harm::Msprt(Msprt::tuned(decision.tuning.clone(), ctx.alpha_fail, theta0).one_sided(harm_sign)),
            Sequential::GroupSequential(spending) => {
                Harm::GroupSequential { looks: Looks::new(2.0 * ctx.alpha_fail / tests.max(1) as f64, spending, 201), theta0 }
            }
        }
    });
    let theta0 = harm.theta0();
    let harmful = harm_sign * (now.theta - theta0) > 0.0;
    if now.variance == 0.0 {
        // Both arms constant (no errors at all, say): the difference is certain.
        return (harmful, PValue::new(if harmful { 0.0 } else { 1.0 }), None);
    }
    match harm {
        Harm::Msprt(m) => {
            if !skip_below_z2.is_some_and(|skip| look_cannot_matter(gate, now, theta0, m.p_value().get(), ctx.alpha_fail, skip)) {
                m.observe(now.theta, now.variance, now.n);
            }
            (harmful, m.p_value(), None)
        }
        Harm::GroupSequential { looks, theta0 } => {
            let t = (ctx.elapsed as f64 / ctx.max_time.max(1) as f64).clamp(1e-9, 1.0);
            let c = looks.next(t);
            let z = (now.theta - *theta0) / now.variance.sqrt();
            (harmful, crate::stats::two_sided_p(z), Some(harm_sign * z >= c))
        }
    }
}

/// +1 when a higher value of a statistical metric is harmful, −1 when a lower one is.
pub(super) fn harm_sign(metric: Metric) -> f64 {
    let better = metric.better().expect("validated: statistical metrics have a better side");
    if better == Better::Lower {
        1.0
    } else {
        -1.0
    }
}

/// For the decision alone, whether a one-sided mSPRT harm look at `now` (variance > 0) against
/// `theta0` cannot bring the running p-value `running` to α. On the harmless side (z ≤ 0 towards
/// harm) every alternative the one-sided mixture weighs has a likelihood ratio below 1, so Λ⁺ < 1
/// and the p-value cannot fall at all; elsewhere ln Λ⁺ ≤ ln 2 + z²/2, below ln(1/α) when z² is
/// below `skip_below_z2`, so a p-value above α stays above it.
pub(super) fn look_cannot_matter(gate: &Gate, now: &Difference, theta0: f64, running: f64, alpha: f64, skip_below_z2: f64) -> bool {
    let z = (now.theta - theta0) / now.variance.sqrt();
    harm_sign(gate.metric) * z <= 0.0 || (running > alpha && z * z < skip_below_z2)
}

/// θ̂ = candidate − stable with its variance, the stable mean and the observations of both arms.
#[derive(Debug, Clone, Copy)]
pub(super) struct Difference {
    pub(super) theta: f64,
    pub(super) variance: f64,
    pub(super) stable: f64,
    pub(super) n: f64,
}

/// The stages' differences combined by inverse-variance weights (stages with zero variance count
/// only when all have it).
pub(super) fn combined_difference(earlier: &[Difference], now: Difference) -> Difference {
    let parts: Vec<Difference> = earlier.iter().copied().chain(std::iter::once(now)).collect();
    let informative: Vec<&Difference> = parts.iter().filter(|p| p.variance > 0.0).collect();
    let n = parts.iter().map(|p| p.n).sum();
    if informative.len() <= 1 {
        return Difference { n, ..informative.first().copied().copied().unwrap_or(now) };
    }
    let precision: f64 = informative.iter().map(|p| 1.0 / p.variance).sum();
    Difference {
        theta: informative.iter().map(|p| p.theta / p.variance).sum::<f64>() / precision,
        variance: 1.0 / precision,
        stable: informative.iter().map(|p| p.stable / p.variance).sum::<f64>() / precision,
        n,
    }
}

/// The difference of `metric` on one window's scope, combined across routing weights by traffic share.
pub(super) fn difference(stats: &WindowStats, scope: usize, metric: Metric) -> Option<Difference> {
    let groups = || {
        stats.scopes[scope].iter().filter_map(|g| {
            let (s, vs) = g.arms[0].estimate(metric)?;
            let (c, vc) = g.arms[1].estimate(metric)?;
            let traffic = (g.arms[0].s.requests + g.arms[1].s.requests) as f64;
            let n = (g.arms[0].n(metric) + g.arms[1].n(metric)) as f64;
            Some((traffic, c - s, vs + vc, s, n))
        })
    };
    // One group is the rule (a scope's cells share a weight): no shares to work out.
    let scopes = &stats.scopes[scope];
    if scopes.len() == 1 {
        let (traffic, theta, variance, stable, n) = groups().next()?;
        return (traffic > 0.0).then_some(Difference { theta, variance, stable, n });
    }
    let (count, total) = groups().fold((0usize, 0.0), |(k, t), g| (k + 1, t + g.0));
    if count == 0 || total == 0.0 {
        return None;
    }
    let mut d = Difference { theta: 0.0, variance: 0.0, stable: 0.0, n: 0.0 };
    for (traffic, theta, v, s, n) in groups() {
        let share = traffic / total;
        d.theta += share * theta;
        d.variance += share * share * v;
        d.stable += share * s;
        d.n += n;
    }
    Some(d)
}
