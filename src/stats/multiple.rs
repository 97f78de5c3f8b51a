//! Multiple-testing adjustments of p-values across metrics and segments.
//!
//! - Bonferroni: p̃ᵢ = min(1, m pᵢ) — family-wise error rate (FWER), any dependence.
//! - Holm (1979): step-down, p̃₍ᵢ₎ = max_{j≤i} min(1, (m − j + 1) p₍ⱼ₎) — FWER, any dependence,
//!   uniformly more powerful than Bonferroni.
//! - Benjamini-Hochberg (1995): step-up, p̃₍ᵢ₎ = min_{j≥i} min(1, m p₍ⱼ₎ / j) — false discovery rate
//!   under independence or positive dependence.
//! - Benjamini-Yekutieli (2001): BH × Σ₁ᵐ 1/k — FDR under any dependence.
//!
//! Applied to always-valid p-values, Bonferroni and Holm stay valid at any stopping time. Adjusted
//! p-values are returned in the input order (as statsmodels' `multipletests`).

use super::PValue;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Correction {
    None,
    Bonferroni,
    Holm,
    BenjaminiHochberg,
    BenjaminiYekutieli,
}

/// Adjusted p-values, in input order.
pub fn adjust(p: &[PValue], correction: Correction) -> Vec<PValue> {
    let m = p.len();
    if m == 0 {
        return Vec::new();
    }
    let mf = m as f64;
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].get().total_cmp(&p[b].get()).then(a.cmp(&b)));
    let mut out = vec![PValue::new(1.0); m];
    match correction {
        Correction::None => return p.to_vec(),
        Correction::Bonferroni => {
            for (i, v) in p.iter().enumerate() {
                out[i] = PValue::new(v.get() * mf);
            }
        }
        Correction::Holm => {
            let mut running: f64 = 0.0;
            for (rank, &i) in order.iter().enumerate() {
                running = running.max(((mf - rank as f64) * p[i].get()).min(1.0));
                out[i] = PValue::new(running);
            }
        }
        Correction::BenjaminiHochberg | Correction::BenjaminiYekutieli => {
            let factor = if correction == Correction::BenjaminiYekutieli { (1..=m).map(|k| 1.0 / k as f64).sum() } else { 1.0 };
            let mut running: f64 = 1.0;
            for (rank, &i) in order.iter().enumerate().rev() {
                running = running.min((mf * factor * p[i].get() / (rank + 1) as f64).min(1.0));
                out[i] = PValue::new(running);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ps(values: &[f64]) -> Vec<PValue> {
        values.iter().map(|v| PValue::new(*v)).collect()
    }

    fn close(a: &[PValue], b: &[f64]) -> bool {
        a.iter().zip(b).all(|(x, y)| (x.get() - y).abs() < 1e-12)
    }

    #[test]
    fn match_statsmodels_multipletests() {
        let p = ps(&[0.01, 0.04, 0.03, 0.005, 0.2, 0.04]);
        assert!(close(&adjust(&p, Correction::Bonferroni), &[0.06, 0.24, 0.18, 0.03, 1.0, 0.24]));
        assert!(close(&adjust(&p, Correction::Holm), &[0.05, 0.12, 0.12, 0.03, 0.2, 0.12]));
        assert!(close(&adjust(&p, Correction::BenjaminiHochberg), &[0.03, 0.048, 0.048, 0.03, 0.2, 0.048]));
        assert!(close(&adjust(&p, Correction::BenjaminiYekutieli), &[0.0735, 0.1176, 0.1176, 0.0735, 0.49, 0.1176]));
    }

    proptest! {
        #[test]
        fn holm_rejects_what_bonferroni_rejects_and_nothing_unadjusted_keeps(raw in prop::collection::vec(0.0f64..1.0, 1..40), alpha in 0.001f64..0.2) {
            let p = ps(&raw);
            let bonferroni = adjust(&p, Correction::Bonferroni);
            let holm = adjust(&p, Correction::Holm);
            for i in 0..p.len() {
                if bonferroni[i].get() <= alpha { prop_assert!(holm[i].get() <= alpha); }
                if p[i].get() > alpha { prop_assert!(holm[i].get() > alpha); }
                prop_assert!(holm[i].get() >= p[i].get() && holm[i].get() <= bonferroni[i].get() + 1e-15);
                for q in [&bonferroni[i], &holm[i]] { prop_assert!((0.0..=1.0).contains(&q.get())); }
            }
            let bh = adjust(&p, Correction::BenjaminiHochberg);
            let by = adjust(&p, Correction::BenjaminiYekutieli);
            for i in 0..p.len() {
                prop_assert!(bh[i].get() <= holm[i].get() + 1e-15, "BH is never more conservative than Holm");
                prop_assert!(by[i].get() >= bh[i].get() - 1e-15);
            }
        }
    }
}
