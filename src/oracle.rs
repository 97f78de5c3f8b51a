//! The oracle: what the candidate does on all of the replayed traffic, compared with the stable
//! model, overall and for every segment value.
//!
//! Offline, both models score every request, so the full-traffic effect of the candidate is known;
//! later stages grade a canary policy's decisions against it. Quality is measured on the *paired*
//! rows: those with a label where both models returned a score, so both models are judged on the
//! same requests. Error rates count every row; latency uses the measured sample.
//!
//! The score cache is read in streamed batches into mergeable summaries (counts, sums and sparse
//! fine-bin histograms, see [`crate::stats::sketch`]), so memory does not grow with the log and
//! summaries of shards can be merged. Log loss, Brier, accuracy, MAE, RMSE, error rates and means
//! are exact; AUC comes with the bound on its distance from the row-level AUC; drift uses
//! Evidently's 30 bins over the range of all scores (for segments too, so segment values are
//! comparable); latency quantiles come from the logarithmic histogram the checks read
//! ([`LatencySketch`], within 1.8%).

use std::collections::BTreeMap;
use std::path::Path;

use arrow::array::{Array, AsArray, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::Float64Type;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ingest::Layout;
use crate::scenario::Fault;
use crate::score::cache::{
    CANDIDATE_ERROR, CANDIDATE_LATENCY, CANDIDATE_MISSING, CANDIDATE_SCORE, STABLE_ERROR, STABLE_LATENCY, STABLE_MISSING, STABLE_SCORE,
};
use crate::simulate::metrics::LatencySketch;
use crate::simulate::replay::{apply_faults, dictionaries, Output, Request, Segments};
use crate::stats::sketch::{self, Binning, Histogram};

/// Scores at or above this count as a positive prediction for accuracy.
pub const ACCURACY_THRESHOLD: f64 = 0.5;

/// The full-traffic comparison.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Oracle {
    pub task: Labels,
    pub overall: Comparison,
    /// Per segment column, per value (sorted).
    pub segments: BTreeMap<String, BTreeMap<String, Comparison>>,
    /// What the report's charts of the models' outputs show, on every request (`distributions.json`,
    /// not `summary.json`).
    #[serde(skip)]
    pub distributions: Distributions,
}

/// What the labels make of the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Labels {
    /// Every label is 0 or 1.
    Binary,
    /// Some label is another number.
    Regression,
    /// No label column.
    Unlabelled,
}

impl Labels {
    /// As `summary.json` writes it: `binary`.
    pub fn name(self) -> &'static str {
        match self {
            Labels::Binary => "binary",
            Labels::Regression => "regression",
            Labels::Unlabelled => "unlabelled",
        }
    }
}

impl std::fmt::Display for Labels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Score histograms, reliability curves and latency distributions of both models, from the
/// oracle's pass over every request: the report's charts of the models' outputs, written to the run
/// folder as `distributions.json` (`scores.parquet` may hold a sample, or nothing).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Distributions {
    /// The requests they describe ("every replayed request").
    pub of: String,
    /// Shared bin edges of both models' score histograms.
    pub edges: Vec<f64>,
    /// Requests per bin, [stable, candidate].
    pub histograms: [Vec<u64>; 2],
    /// Reliability curve per model (binary tasks): (mean score, observed positive rate, requests)
    /// per score decile.
    pub calibration: [Vec<(f64, f64, u64)>; 2],
    /// Cumulative distribution of the measured latencies: (µs, share of measured requests at most
    /// that slow).
    pub latency_cdf_us: [Vec<(f64, f64)>; 2],
    pub latency_measured: [u64; 2],
}

/// Score histogram bins of the report's chart.
pub const CHART_SCORE_BINS: usize = 40;
/// Reliability curve bins (deciles of [0, 1]).
pub const CALIBRATION_BINS: usize = 10;

/// The chart histograms while the pass runs: over [0, 1] and over the scores' range (which one is
/// shown is known once every label has been seen), and the reliability sums.
struct ChartSums {
    unit: [[u64; CHART_SCORE_BINS]; 2],
    range: [[u64; CHART_SCORE_BINS]; 2],
    /// Per decile: Σ score, Σ label, requests.
    calibration: [[(f64, f64, u64); CALIBRATION_BINS]; 2],
    lo: f64,
    hi: f64,
}

/// Bin of `x` among `bins` over [lo, hi] (the last bin closed).
fn chart_bin(x: f64, lo: f64, hi: f64, bins: usize) -> usize {
    (((x - lo) / (hi - lo) * bins as f64).floor().max(0.0) as usize).min(bins - 1)
}

impl ChartSums {
    fn new(lo: f64, hi: f64) -> Self {
        let (lo, hi) = if hi > lo { (lo, hi) } else { (lo - 0.5, lo + 0.5) };
        Self {
            unit: [[0; CHART_SCORE_BINS]; 2],
            range: [[0; CHART_SCORE_BINS]; 2],
            calibration: [[(0.0, 0.0, 0); CALIBRATION_BINS]; 2],
            lo,
            hi,
        }
    }

    fn add(&mut self, row: &Row) {
        for (m, model) in row.models.iter().enumerate() {
            let Some((s, _)) = model.score else { continue };
            self.unit[m][chart_bin(s, 0.0, 1.0, CHART_SCORE_BINS)] += 1;
            self.range[m][chart_bin(s, self.lo, self.hi, CHART_SCORE_BINS)] += 1;
            if let Some(y) = row.label {
                let c = &mut self.calibration[m][chart_bin(s, 0.0, 1.0, CALIBRATION_BINS)];
                *c = (c.0 + s, c.1 + y, c.2 + 1);
            }
        }
    }

    fn finish(self, binary: bool, overall: &Sums) -> Distributions {
        let probabilities = binary && self.lo >= 0.0 && self.hi <= 1.0;
        let (lo, hi, histograms) = if probabilities { (0.0, 1.0, self.unit) } else { (self.lo, self.hi, self.range) };
        let width = (hi - lo) / CHART_SCORE_BINS as f64;
        Distributions {
            of: "every replayed request".into(),
            edges: (0..=CHART_SCORE_BINS).map(|i| lo + width * i as f64).collect(),
            histograms: histograms.map(|h| h.to_vec()),
            calibration: self.calibration.map(|bins| {
                if binary {
                    bins.iter().filter(|b| b.2 > 0).map(|(s, y, n)| (s / *n as f64, y / *n as f64, *n)).collect()
                } else {
                    Vec::new()
                }
            }),
            latency_cdf_us: [0, 1].map(|m| overall.sides[m].latency.cdf_ms().into_iter().map(|(ms, share)| (ms * 1000.0, share)).collect()),
            latency_measured: [0, 1].map(|m| overall.sides[m].latency.count()),
        }
    }
}

/// Stable vs candidate on one set of requests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Comparison {
    pub rows: u64,
    /// Rows with a label where both models scored.
    pub paired_labelled: u64,
    pub label_mean: Option<f64>,
    pub stable: Side,
    pub candidate: Side,
    /// candidate − stable for each quality metric.
    pub difference: BTreeMap<String, f64>,
    /// Distance between the two models' score distributions (rows where both scored).
    pub drift: Drift,
}

/// One model on one set of requests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Side {
    pub errors: u64,
    pub error_rate: f64,
    pub mean_score: Option<f64>,
    /// Quality on the paired labelled rows: auc, log_loss, brier, accuracy (binary) or mae, rmse.
    pub quality: BTreeMap<String, f64>,
    /// Bound on |histogram AUC − row-level AUC|.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auc_error_bound: Option<f64>,
    pub latency_us: Latency,
    /// The first recorded row error (in time order), e.g. `run_failed: <message>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub samples: u64,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Drift {
    pub psi: Option<f64>,
    pub jensen_shannon: Option<f64>,
    pub wasserstein_normed: Option<f64>,
}

/// Running sums for one model on one set of rows.
#[derive(Debug, Clone, Default)]
struct SideSums {
    errors: u64,
    first_error: Option<String>,
    scored: u64,
    score_sum: f64,
    /// Histogram of scores on rows where both models scored (drift).
    both: Histogram,
    both_sum: f64,
    both_sum_sq: f64,
    positives: Histogram,
    negatives: Histogram,
    log_loss: f64,
    brier: f64,
    correct: u64,
    abs_error: f64,
    /// Measured latencies (µs) on the logarithmic bins the checks read.
    latency: LatencySketch,
}

#[derive(Debug, Clone, Default)]
struct Sums {
    rows: u64,
    paired: u64,
    label_sum: f64,
    sides: [SideSums; 2],
}

/// One row of the score cache, with each model's per-row terms computed once (a row is added to
/// the overall sums and to one sum per segment column).
struct Row<'a> {
    label: Option<f64>,
    /// Both models scored.
    both: bool,
    /// Both models scored and the row has a label.
    paired: bool,
    models: [ModelRow<'a>; 2],
}

struct ModelRow<'a> {
    error: Option<&'a str>,
    latency: Option<f64>,
    /// The score and its fine bin.
    score: Option<(f64, u32)>,
    /// Per-row quality terms, on paired rows.
    terms: Option<Terms>,
}

struct Terms {
    positive: bool,
    log_loss: f64,
    squared: f64,
    absolute: f64,
    correct: bool,
}

impl Sums {
    fn add(&mut self, row: &Row) {
        self.rows += 1;
        if row.paired {
            self.paired += 1;
            self.label_sum += row.label.unwrap_or_default();
        }
        for (side, m) in self.sides.iter_mut().zip(&row.models) {
            if let Some(e) = m.error {
                side.errors += 1;
                if side.first_error.is_none() {
                    side.first_error = Some(e.to_string());
                }
            }
            if let Some(l) = m.latency {
                side.latency.add_ms(l / 1000.0);
            }
            let Some((s, bin)) = m.score else { continue };
            side.scored += 1;
            side.score_sum += s;
            if row.both {
                side.both.add(bin);
                side.both_sum += s;
                side.both_sum_sq += s * s;
            }
            if let Some(t) = &m.terms {
                if t.positive {
                    side.positives.add(bin)
                } else {
                    side.negatives.add(bin)
                }
                side.log_loss += t.log_loss;
                side.brier += t.squared;
                side.abs_error += t.absolute;
                side.correct += u64::from(t.correct);
            }
        }
    }

    fn finish(&self, binning: &Binning, binary: bool) -> Comparison {
        let paired = self.paired as f64;
        let sides: Vec<Side> = self
            .sides
            .iter()
            .map(|s| {
                let mut quality = BTreeMap::new();
                let mut auc_error_bound = None;
                if self.paired > 0 {
                    if binary {
                        if let Some((auc, bound)) = sketch::auc_from_histograms(&s.positives, &s.negatives) {
                            quality.insert("auc".to_string(), auc);
                            auc_error_bound = Some(bound);
                        }
                        quality.insert("log_loss".to_string(), s.log_loss / paired);
                        quality.insert("brier".to_string(), s.brier / paired);
                        quality.insert("accuracy".to_string(), s.correct as f64 / paired);
                    } else {
                        quality.insert("mae".to_string(), s.abs_error / paired);
                        quality.insert("rmse".to_string(), (s.brier / paired).sqrt());
                    }
                }
                let q = |p: f64| s.latency.quantile_ms(p).map(|ms| ms * 1000.0);
                Side {
                    errors: s.errors,
                    error_rate: if self.rows == 0 { 0.0 } else { s.errors as f64 / self.rows as f64 },
                    mean_score: (s.scored > 0).then(|| s.score_sum / s.scored as f64),
                    quality,
                    auc_error_bound,
                    latency_us: Latency { samples: s.latency.count(), p50: q(0.5), p95: q(0.95), p99: q(0.99) },
                    first_error: s.first_error.clone(),
                }
            })
            .collect();
        let [stable, candidate]: [Side; 2] = sides.try_into().expect("two sides");
        let difference = stable.quality.iter().filter_map(|(k, v)| candidate.quality.get(k).map(|c| (k.clone(), c - v))).collect();
        let reference = &self.sides[0];
        let n = reference.both.total() as f64;
        let std = if n > 0.0 { (reference.both_sum_sq / n - (reference.both_sum / n).powi(2)).max(0.0).sqrt() } else { 0.0 };
        let drift = Drift {
            psi: sketch::psi(&reference.both, &self.sides[1].both),
            jensen_shannon: sketch::jensen_shannon(&reference.both, &self.sides[1].both),
            wasserstein_normed: sketch::wasserstein_normed(binning, &reference.both, &self.sides[1].both, std),
        };
        Comparison {
            rows: self.rows,
            paired_labelled: self.paired,
            label_mean: (self.paired > 0).then(|| self.label_sum / paired),
            stable,
            candidate,
            difference,
            drift,
        }
    }
}

/// The scenario's faults, for an oracle of what users were served.
pub struct Injected<'a> {
    pub faults: &'a [Fault],
    /// Whether every label is 0 or 1 ([`crate::simulate::replay::Replay::binary`]).
    pub binary: bool,
}

/// What an injected error says where the model itself returned none.
const INJECTED_ERROR: &str = "injected fault";

/// Computes the oracle from score-cache files (parts or a run's `scores.parquet`), whose scores of
/// both models lie in `score_range` ([`crate::simulate::replay::Replay::scan`] found it): of what
/// users were served, the scenario's faults applied, when `injected` gives them — with, from the
/// same pass, the models' own overall comparison without them; of the models as they are otherwise.
pub fn compute(
    files: &[impl AsRef<Path>],
    layout: &Layout,
    score_range: (f64, f64),
    injected: Option<&Injected>,
) -> Result<(Oracle, Option<Comparison>)> {
    let injected = injected.filter(|i| !i.faults.is_empty());
    let (lo, hi) = score_range;
    let binning = Binning::new(lo, hi);
    let mut charts = ChartSums::new(lo, hi);
    let mut overall = Sums::default();
    let mut clean = injected.map(|_| Sums::default());
    // Per segment column, each value's sums, and where each value's are.
    let mut segments: Vec<(Vec<Sums>, BTreeMap<String, usize>)> = vec![(Vec::new(), BTreeMap::new()); layout.segments.len()];
    let mut binary = true;
    // Only the columns it reads: ids, times and the missing-feature scores are not decoded.
    let mut wanted = vec![STABLE_SCORE, CANDIDATE_SCORE, STABLE_ERROR, CANDIDATE_ERROR, STABLE_LATENCY, CANDIDATE_LATENCY];
    wanted.extend(layout.segments.iter().map(String::as_str).chain(layout.label.as_deref()));
    if injected.is_some() {
        wanted.extend([layout.time.as_str(), layout.id.as_str(), STABLE_MISSING, CANDIDATE_MISSING]);
    }
    let files: Vec<&Path> = files.iter().map(AsRef::as_ref).collect();
    crate::simulate::replay::for_each_batch(&files, None, Some(&wanted), &dictionaries(layout), |_, batch| {
        let columns = Columns::of(batch, layout, injected)?;
        let slots: Vec<Vec<usize>> = segments
            .iter_mut()
            .enumerate()
            .map(|(c, (sums, at))| {
                columns.segments.ids(c, |value| {
                    *at.entry(value.to_string()).or_insert_with(|| {
                        sums.push(Sums::default());
                        sums.len() - 1
                    })
                })
            })
            .collect();
        for i in 0..batch.num_rows() {
            let row = columns.row(i, &binning, true);
            if let Some(clean) = &mut clean {
                clean.add(&columns.row(i, &binning, false));
            }
            if let Some(y) = row.label {
                binary &= y == 0.0 || y == 1.0;
            }
            overall.add(&row);
            charts.add(&row);
            for ((sums, _), slots) in segments.iter_mut().zip(&slots) {
                sums[slots[i]].add(&row);
            }
        }
        Ok(())
    })?;
    let task = match (layout.label.is_some(), binary) {
        (false, _) => Labels::Unlabelled,
        (true, true) => Labels::Binary,
        (true, false) => Labels::Regression,
    };
    let distributions = charts.finish(task == Labels::Binary, &overall);
    let clean = clean.map(|sums| sums.finish(&binning, binary));
    let served = Oracle {
        task,
        distributions,
        overall: overall.finish(&binning, binary),
        segments: layout
            .segments
            .iter()
            .zip(segments)
            .map(|(name, (sums, at))| (name.clone(), at.into_iter().map(|(v, slot)| (v, sums[slot].finish(&binning, binary))).collect()))
            .collect(),
    };
    Ok((served, clean))
}

struct Columns<'a> {
    label: Option<&'a Float64Array>,
    scores: [&'a Float64Array; 2],
    errors: [&'a StringArray; 2],
    latency: [&'a Float64Array; 2],
    segments: Segments,
    segments_named: &'a [String],
    /// With faults to apply: them, and the columns they read.
    injected: Option<(&'a Injected<'a>, FaultColumns<'a>)>,
}

/// The columns faults read beyond the oracle's own.
struct FaultColumns<'a> {
    time: &'a arrow::array::PrimitiveArray<arrow::datatypes::TimestampMicrosecondType>,
    id: &'a StringArray,
    missing: Option<[&'a Float64Array; 2]>,
}

impl<'a> Columns<'a> {
    fn of(batch: &'a RecordBatch, layout: &'a Layout, injected: Option<&'a Injected<'a>>) -> Result<Self> {
        let get = |name: &str| batch.column_by_name(name).ok_or_else(|| Error::Internal(format!("the score cache has no column {name}")));
        let f64s = |name: &str| -> Result<&'a Float64Array> { Ok(get(name)?.as_primitive::<Float64Type>()) };
        let strs = |name: &str| -> Result<&'a StringArray> { Ok(get(name)?.as_string::<i32>()) };
        let injected = match injected {
            Some(injected) => Some((
                injected,
                FaultColumns {
                    time: get(&layout.time)?.as_primitive(),
                    id: strs(&layout.id)?,
                    missing: match (batch.column_by_name(STABLE_MISSING), batch.column_by_name(CANDIDATE_MISSING)) {
                        (Some(s), Some(c)) => Some([s.as_primitive(), c.as_primitive()]),
                        _ => None,
                    },
                },
            )),
            None => None,
        };
        Ok(Self {
            label: layout.label.as_deref().map(f64s).transpose()?,
            scores: [f64s(STABLE_SCORE)?, f64s(CANDIDATE_SCORE)?],
            errors: [strs(STABLE_ERROR)?, strs(CANDIDATE_ERROR)?],
            latency: [f64s(STABLE_LATENCY)?, f64s(CANDIDATE_LATENCY)?],
            segments: Segments::of(batch, &layout.segments)?,
            segments_named: &layout.segments,
            injected,
        })
    }

    /// Row `i`; `served`: with the injected faults applied, if any.
    fn row(&self, i: usize, binning: &Binning, served: bool) -> Row<'a> {
        let f = |a: &Float64Array| a.is_valid(i).then(|| a.value(i));
        let label = self.label.and_then(f).filter(|y| y.is_finite());
        let mut errors = [0, 1].map(|m| self.errors[m].is_valid(i).then(|| self.errors[m].value(i)));
        let mut latency = [f(self.latency[0]), f(self.latency[1])];
        let mut scores = [f(self.scores[0]), f(self.scores[1])];
        if let Some((injected, c)) = self.injected.as_ref().filter(|_| served) {
            // What users were served: the scenario's faults applied as the replay applies them.
            let id = if c.id.is_valid(i) { c.id.value(i) } else { "" };
            let segment = |column: &str| self.segments_named.iter().position(|n| n == column).map(|k| self.segments.value(k, i));
            let missing = c.missing.map(|missing| [0, 1].map(|m| missing[m].is_valid(i).then(|| missing[m].value(i))));
            let mut outputs =
                [0, 1].map(|m| Output { error: errors[m].is_some(), score: scores[m], latency_ms: latency[m].map(|us| us / 1000.0) });
            let request = Request { time: c.time.value(i), id, segment: &segment, binary: injected.binary, missing };
            apply_faults(injected.faults, request, &mut outputs);
            for (m, out) in outputs.iter().enumerate() {
                errors[m] = errors[m].or(out.error.then_some(INJECTED_ERROR));
                latency[m] = out.latency_ms.map(|ms| ms * 1000.0);
                scores[m] = out.score;
            }
        }
        let both = scores[0].is_some() && scores[1].is_some();
        let paired = both && label.is_some();
        let models = [0, 1].map(|m| {
            let score = scores[m].map(|s| (s, binning.bin(s)));
            let terms = match (paired, label, scores[m]) {
                (true, Some(y), Some(s)) => {
                    let p = s.clamp(f64::EPSILON, 1.0 - f64::EPSILON);
                    Some(Terms {
                        positive: y > 0.5,
                        log_loss: -(y * p.ln() + (1.0 - y) * (1.0 - p).ln()),
                        squared: (s - y) * (s - y),
                        absolute: (s - y).abs(),
                        correct: (s >= ACCURACY_THRESHOLD) == (y > 0.5),
                    })
                }
                _ => None,
            };
            ModelRow { error: errors[m], latency: latency[m], score, terms }
        });
        Row { label, both, paired, models }
    }
}
