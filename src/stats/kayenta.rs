//! What Netflix Kayenta's canary judge (NetflixACAJudge, spinnaker/kayenta) would say, so its
//! verdict can be shown next to canary-replay's. Checked case by case against Kayenta's own judge
//! test suites (`tests/kayenta_suite.rs`).
//!
//! Per metric (`MannWhitneyClassifier`): with no data in either arm the metric is NoData (or
//! NodataFailMetric when data is required and the metric is not critical) — or Pass when NaN are
//! replaced by 0 (`nanStrategy: replace`); identical samples, or a single distinct value overall,
//! Pass. Otherwise the shift canary − baseline and its interval come from the Mann-Whitney rank
//! inversion as Kayenta solves it ([`mann_whitney::shift`], 98% in the NetflixACAJudge), the
//! tolerance band is ±tolerance·|estimate| (0.25), and the metric is High when the direction
//! allows an increase, the interval's lower end exceeds the band's upper end and the effect size
//! reaches its threshold; Low symmetrically; else Pass. The effect size is the mean ratio
//! canary/baseline — NaN when either mean is 0, and then the effect-size and critical thresholds
//! are not checked, as in Kayenta — or, with `measure: cles`, the common-language effect size
//! (the share of canary–baseline pairs where the canary is higher). A critical metric that is
//! High or Low beyond its critical threshold fails the canary.
//! Two constant samples with different values: Kayenta adds Gaussian noise of 1e-5 × the value
//! so the rank test can run; the samples are then completely apart and the interval is the
//! difference up to that noise. Here the difference itself is the estimate and both interval ends
//! (the noise-free limit, deterministic), so an error rate of 0 against 1 is High as in Kayenta.
//! Run score (`WeightedSumScorer`): per group, the share of Pass among Pass/High/Low/
//! NodataFailMetric (×100; a group with none of those scores 100); groups are weighted (unweighted
//! groups share what is left of 100); a critical failure, or NoData on half the metrics or more,
//! forces 0. The score is rounded to two decimals and compared with the pass and marginal
//! thresholds. Known weakness (STATS.md): wide intervals pass even when p is small.
//! Outliers (`outliers.strategy: remove`): Kayenta's `IQRDetector` with the judge's settings —
//! R-7 quartiles, fences at `outlierFactor` IQRs beyond them, widened to the 1st and 99th
//! percentiles when those lie further out (`reduceSensitivity`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::mann_whitney;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Increase,
    Decrease,
    Either,
}

/// How the effect size a shift must also reach is measured (`effectSize.measure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EffectMeasure {
    /// Mean canary / mean baseline.
    #[default]
    MeanRatio,
    /// Common-language effect size: the share of (canary, baseline) pairs where the canary is
    /// higher, ties counting one half.
    Cles,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Label {
    Pass,
    High,
    Low,
    NoData,
    NodataFailMetric,
}

/// A metric's settings in a Kayenta canary config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricConfig {
    pub name: String,
    #[serde(default = "default_groups")]
    pub groups: Vec<String>,
    pub direction: Direction,
    #[serde(default)]
    pub critical: bool,
    #[serde(default)]
    pub must_have_data: bool,
    /// Effect-size thresholds (low, high) a shift must also reach (Kayenta's effectSize).
    #[serde(default = "unit_thresholds")]
    pub effect_size: (f64, f64),
    #[serde(default)]
    pub measure: EffectMeasure,
    /// Mean-ratio thresholds for a critical failure.
    #[serde(default = "unit_thresholds")]
    pub critical_effect_size: (f64, f64),
    /// Classified and reported, but left out of the score (Kayenta's report-only metrics): no
    /// group counts it, it fails nothing as critical, and it is not among the metrics whose NoData
    /// share can force 0.
    #[serde(default)]
    pub muted: bool,
    /// `nanStrategy: replace`: missing values count as 0, and a metric without any passes.
    #[serde(default)]
    pub replace_nan: bool,
}

fn default_groups() -> Vec<String> {
    vec!["default".into()]
}

fn unit_thresholds() -> (f64, f64) {
    (1.0, 1.0)
}

/// The judge's settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judge {
    pub tolerance: f64,
    pub confidence: f64,
    pub group_weights: BTreeMap<String, f64>,
    pub pass_threshold: f64,
    pub marginal_threshold: f64,
}

impl Default for Judge {
    fn default() -> Self {
        Self { tolerance: 0.25, confidence: 0.98, group_weights: BTreeMap::new(), pass_threshold: 95.0, marginal_threshold: 75.0 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Classification {
    pub metric: String,
    pub label: Label,
    pub critical_failure: bool,
    /// Shift canary − baseline and its interval ends as Kayenta's solver finds them, when computed.
    pub estimate: Option<f64>,
    pub interval: Option<(f64, f64)>,
    /// The effect size: mean ratio canary / baseline (NaN when either mean is 0), or the CLES;
    /// 1 when the samples are not compared.
    pub deviation: f64,
}

/// A run's score against `classifier.scoreThresholds`: Kayenta's pass, marginal and fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ScoreClass {
    Pass,
    Marginal,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunResult {
    pub score: f64,
    pub verdict: ScoreClass,
    pub reason: Option<String>,
    pub metrics: Vec<Classification>,
}

impl Judge {
    /// Classifies one metric from the baseline (stable) and canary samples (NaN already removed
    /// or replaced, outliers removed).
    pub fn classify(&self, config: &MetricConfig, baseline: &[f64], canary: &[f64]) -> Classification {
        let mut out = Classification {
            metric: config.name.clone(),
            label: Label::Pass,
            critical_failure: false,
            estimate: None,
            interval: None,
            deviation: 1.0,
        };
        if baseline.is_empty() || canary.is_empty() {
            if config.replace_nan {
                return out;
            }
            out.label = if config.must_have_data && !config.critical { Label::NodataFailMetric } else { Label::NoData };
            out.critical_failure = config.critical;
            return out;
        }
        let mut a = baseline.to_vec();
        let mut b = canary.to_vec();
        a.sort_by(f64::total_cmp);
        b.sort_by(f64::total_cmp);
        let constant = |v: &[f64]| v[0] == v[v.len() - 1];
        if a == b || (constant(&a) && constant(&b) && a[0] == b[0]) {
            return out;
        }
        out.deviation = match config.measure {
            EffectMeasure::MeanRatio => mean_ratio(&a, &b),
            EffectMeasure::Cles => cles(&a, &b),
        };
        let (estimate, lower, upper) = if constant(&a) && constant(&b) {
            // Kayenta's noise, in the limit: the samples lie apart by exactly this much.
            let difference = b[0] - a[0];
            (difference, difference, difference)
        } else {
            let Some(shift) = mann_whitney::shift(&b, &a, self.confidence) else { return out };
            (shift.estimate, shift.lower, shift.upper)
        };
        out.estimate = Some(estimate);
        out.interval = Some((lower, upper));
        let band = self.tolerance * estimate.abs();
        // A NaN effect size (a mean of 0) is not compared with any threshold, as in Kayenta.
        let reaches = |threshold: f64, above: bool| {
            out.deviation.is_nan() || if above { out.deviation >= threshold } else { out.deviation <= threshold }
        };
        let high =
            matches!(config.direction, Direction::Increase | Direction::Either) && lower > band && reaches(config.effect_size.1, true);
        let low =
            matches!(config.direction, Direction::Decrease | Direction::Either) && upper < -band && reaches(config.effect_size.0, false);
        out.label = if high {
            Label::High
        } else if low {
            Label::Low
        } else {
            Label::Pass
        };
        out.critical_failure = config.critical
            && ((out.label == Label::High && reaches(config.critical_effect_size.1, true))
                || (out.label == Label::Low && reaches(config.critical_effect_size.0, false)));
        out
    }

    /// Scores classified metrics into the run verdict.
    pub fn score(&self, configs: &[MetricConfig], metrics: Vec<Classification>) -> RunResult {
        let counted = || configs.iter().zip(&metrics).filter(|(c, _)| !c.muted).map(|(_, m)| m);
        if let Some(failed) = counted().find(|m| m.critical_failure) {
            return RunResult {
                score: 0.0,
                verdict: ScoreClass::Fail,
                reason: Some(format!("critical metric {} was {:?}", failed.metric, failed.label)),
                metrics,
            };
        }
        let (no_data, total) = (counted().filter(|m| m.label == Label::NoData).count(), counted().count());
        if total > 0 && no_data * 100 >= total * 50 {
            return RunResult {
                score: 0.0,
                verdict: ScoreClass::Fail,
                reason: Some("50% or more metrics returned NODATA".into()),
                metrics,
            };
        }
        let mut groups: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
        for (config, metric) in configs.iter().zip(&metrics).filter(|(c, _)| !c.muted) {
            for group in &config.groups {
                let entry = groups.entry(group).or_default();
                match metric.label {
                    Label::Pass => {
                        entry.0 += 1;
                        entry.1 += 1;
                    }
                    Label::High | Label::Low | Label::NodataFailMetric => entry.1 += 1,
                    Label::NoData => {}
                }
            }
        }
        let weighted: f64 = self.group_weights.values().sum();
        let unweighted = groups.keys().filter(|g| !self.group_weights.contains_key(**g)).count();
        let share = if unweighted > 0 { (100.0 - weighted) / unweighted as f64 } else { 0.0 };
        let raw: f64 = groups
            .iter()
            .map(|(g, (pass, total))| {
                let score = if *total == 0 { 100.0 } else { f64::from(*pass) / f64::from(*total) * 100.0 };
                score * self.group_weights.get(*g).copied().unwrap_or(share) / 100.0
            })
            .sum();
        let score = (raw * 100.0).round() / 100.0;
        let verdict = if score >= self.pass_threshold {
            ScoreClass::Pass
        } else if score >= self.marginal_threshold {
            ScoreClass::Marginal
        } else {
            ScoreClass::Fail
        };
        RunResult { score, verdict, reason: None, metrics }
    }
}

/// Mean canary / mean baseline, NaN when either is 0 (Kayenta's `EffectSizes.meanRatio`).
pub fn mean_ratio(baseline: &[f64], canary: &[f64]) -> f64 {
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (control, experiment) = (mean(baseline), mean(canary));
    if control == 0.0 || experiment == 0.0 {
        f64::NAN
    } else {
        experiment / control
    }
}

/// The share of (canary, baseline) pairs where the canary is higher, ties counting one half
/// (Kayenta's `EffectSizes.cles`, Vargha and Delaney's A).
pub fn cles(baseline: &[f64], canary: &[f64]) -> f64 {
    mann_whitney::u(canary, baseline) / (baseline.len() as f64 * canary.len() as f64)
}

/// The p-th percentile (0–100) of sorted values by R's default definition (R-7: linear between
/// the order statistics around position (n − 1)·p/100), as Kayenta's outlier detector takes it.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * p / 100.0;
    let (below, fraction) = (h.floor() as usize, h - h.floor());
    match sorted.get(below + 1) {
        Some(next) if fraction > 0.0 => sorted[below] + fraction * (next - sorted[below]),
        _ => sorted[below],
    }
}

/// Kayenta's `IQRDetector`: which values lie below Q1 − factor·IQR or above Q3 + factor·IQR;
/// with `reduce_sensitivity` (as the judge runs it) a fence moves out to the 1st or 99th
/// percentile when that lies further out.
pub fn iqr_outliers(values: &[f64], factor: f64, reduce_sensitivity: bool) -> Vec<bool> {
    if values.is_empty() {
        return Vec::new();
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (q1, q3) = (percentile(&sorted, 25.0), percentile(&sorted, 75.0));
    let (mut lower, mut upper) = (q1 - factor * (q3 - q1), q3 + factor * (q3 - q1));
    if reduce_sensitivity {
        lower = lower.min(percentile(&sorted, 1.0));
        upper = upper.max(percentile(&sorted, 99.0));
    }
    values.iter().map(|v| *v < lower || *v > upper).collect()
}

/// The values the judge classifies for one arm (NetflixACAJudge's `transformMetric`): NaN removed,
/// or replaced by 0 with `nanStrategy: replace`; then, with `outliers.strategy: remove`, the
/// values its outlier detector flags at `outlier_factor`.
pub fn transform(series: &[f64], replace_nan: bool, outlier_factor: Option<f64>) -> Vec<f64> {
    let values: Vec<f64> = series.iter().filter_map(|v| if v.is_nan() { replace_nan.then_some(0.0) } else { Some(*v) }).collect();
    match outlier_factor {
        Some(factor) => values.iter().zip(iqr_outliers(&values, factor, true)).filter(|(_, out)| !out).map(|(v, _)| *v).collect(),
        None => values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: [f64; 10] = [12.1, 14.3, 11.8, 15.2, 13.9, 16.4, 14.8, 13.1, 15.9, 17.2];
    const BASELINE: [f64; 10] = [11.2, 12.4, 10.9, 13.0, 12.2, 11.7, 13.5, 12.8, 11.5, 12.9];

    fn metric(name: &str, critical: bool) -> MetricConfig {
        MetricConfig {
            name: name.into(),
            groups: default_groups(),
            direction: Direction::Increase,
            critical,
            must_have_data: false,
            effect_size: unit_thresholds(),
            measure: EffectMeasure::MeanRatio,
            critical_effect_size: unit_thresholds(),
            muted: false,
            replace_nan: false,
        }
    }

    #[test]
    fn a_wide_interval_passes_despite_a_significant_shift() {
        // STATS.md: 98% interval lower end 0.40 is not > 0.25·2.30, so Pass although p < 0.01.
        let judge = Judge::default();
        let c = judge.classify(&metric("latency", true), &BASELINE, &CANARY);
        assert_eq!(c.label, Label::Pass);
        assert!((c.interval.unwrap().0 - 0.40).abs() < 1e-4 && (c.estimate.unwrap() - 2.30).abs() < 1e-4);
        assert!(crate::stats::mann_whitney::test(&CANARY, &BASELINE, true).unwrap().p_value.get() < 0.01);
    }

    #[test]
    fn a_clear_shift_is_high_and_a_critical_one_fails_the_run() {
        let judge = Judge::default();
        let shifted: Vec<f64> = CANARY.iter().map(|v| v + 5.0).collect();
        let configs = [metric("latency", true), metric("errors", false)];
        let metrics = vec![judge.classify(&configs[0], &BASELINE, &shifted), judge.classify(&configs[1], &BASELINE, &BASELINE)];
        assert_eq!(metrics[0].label, Label::High);
        let run = judge.score(&configs, metrics);
        assert_eq!((run.score, run.verdict), (0.0, ScoreClass::Fail));
        // Not critical: one of two metrics passes → 50 → Fail below the 75 marginal threshold.
        let configs = [metric("latency", false), metric("errors", false)];
        let metrics = vec![judge.classify(&configs[0], &BASELINE, &shifted), judge.classify(&configs[1], &BASELINE, &BASELINE)];
        let run = judge.score(&configs, metrics);
        assert_eq!((run.score, run.verdict), (50.0, ScoreClass::Fail));
    }

    #[test]
    fn missing_data_rules() {
        let judge = Judge::default();
        let mut required = metric("a", false);
        required.must_have_data = true;
        assert_eq!(judge.classify(&required, &[], &CANARY).label, Label::NodataFailMetric);
        let configs = [metric("a", false), metric("b", false)];
        let metrics = vec![judge.classify(&configs[0], &[], &CANARY), judge.classify(&configs[1], &BASELINE, &BASELINE)];
        let run = judge.score(&configs, metrics);
        assert_eq!(run.verdict, ScoreClass::Fail, "NoData on half of the metrics forces 0");
    }
}
