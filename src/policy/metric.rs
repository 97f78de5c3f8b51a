//! The metrics a gate can judge, and what kind of statistic each is.

use serde::Serialize;

use crate::stats::guardrail::Better;

/// What the models predict, decided once from the label and the scores: which quality metrics
/// mean anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// A 0/1 label and probabilities of class 1 (or of the scenario's `class`).
    BinaryClassification,
    /// Class ids as the label and the probability of one class (`class = k`): judged as the
    /// binary classification "is it class k" (label == k).
    OneClassOfMulticlass,
    /// A numeric label and predictions of it.
    Regression,
    /// No label column: only errors, latency and the scores themselves can be compared.
    Unlabelled,
}

impl Task {
    pub fn name(self) -> &'static str {
        match self {
            Task::BinaryClassification => "binary classification",
            Task::OneClassOfMulticlass => "one class of a multiclass model",
            Task::Regression => "regression",
            Task::Unlabelled => "unlabelled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    ErrorRate,
    LatencyMean,
    LatencyP50,
    LatencyP95,
    LatencyP99,
    ScoreMean,
    ScorePsi,
    ScoreJs,
    ScoreWasserstein,
    Accuracy,
    LogLoss,
    Brier,
    Auc,
    Ece,
    ExpectedCost,
    Mae,
    Rmse,
}

/// How a metric is estimated, which decides its difference test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statistic {
    /// A share of requests (or labelled requests): binomial variance.
    Proportion,
    /// A mean of per-request values: sample variance.
    Mean,
    /// ROC AUC: Hanley-McNeil variance.
    Auc,
    /// A quantile, a calibration error or a drift distance: point estimates only.
    Point,
}

impl Metric {
    pub const ALL: [Metric; 17] = [
        Metric::ErrorRate,
        Metric::LatencyMean,
        Metric::LatencyP50,
        Metric::LatencyP95,
        Metric::LatencyP99,
        Metric::ScoreMean,
        Metric::ScorePsi,
        Metric::ScoreJs,
        Metric::ScoreWasserstein,
        Metric::Accuracy,
        Metric::LogLoss,
        Metric::Brier,
        Metric::Auc,
        Metric::Ece,
        Metric::ExpectedCost,
        Metric::Mae,
        Metric::Rmse,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::ErrorRate => "error_rate",
            Metric::LatencyMean => "latency_mean",
            Metric::LatencyP50 => "latency_p50",
            Metric::LatencyP95 => "latency_p95",
            Metric::LatencyP99 => "latency_p99",
            Metric::ScoreMean => "score_mean",
            Metric::ScorePsi => "score_psi",
            Metric::ScoreJs => "score_js",
            Metric::ScoreWasserstein => "score_wasserstein",
            Metric::Accuracy => "accuracy",
            Metric::LogLoss => "log_loss",
            Metric::Brier => "brier",
            Metric::Auc => "auc",
            Metric::Ece => "ece",
            Metric::ExpectedCost => "expected_cost",
            Metric::Mae => "mae",
            Metric::Rmse => "rmse",
        }
    }

    pub fn parse(name: &str) -> Option<Metric> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Which direction is good; `None` for metrics with no better side (score mean).
    pub fn better(self) -> Option<Better> {
        match self {
            Metric::Accuracy | Metric::Auc => Some(Better::Higher),
            Metric::ScoreMean => None,
            _ => Some(Better::Lower),
        }
    }

    pub fn statistic(self) -> Statistic {
        match self {
            Metric::ErrorRate | Metric::Accuracy => Statistic::Proportion,
            Metric::LatencyMean | Metric::ScoreMean | Metric::LogLoss | Metric::Brier | Metric::ExpectedCost | Metric::Mae => {
                Statistic::Mean
            }
            Metric::Auc => Statistic::Auc,
            _ => Statistic::Point,
        }
    }

    /// Quality metrics are judged on labels that have arrived by the check.
    pub fn needs_labels(self) -> bool {
        matches!(
            self,
            Metric::Accuracy
                | Metric::LogLoss
                | Metric::Brier
                | Metric::Auc
                | Metric::Ece
                | Metric::ExpectedCost
                | Metric::Mae
                | Metric::Rmse
        )
    }

    /// Whether the metric means anything for `task`: probability metrics need a 0/1 label; errors
    /// of a prediction (MAE, RMSE) fit both kinds of label.
    pub fn fits(self, task: Task) -> bool {
        match task {
            Task::BinaryClassification | Task::OneClassOfMulticlass => true,
            Task::Regression => !self.needs_labels() || matches!(self, Metric::Mae | Metric::Rmse),
            Task::Unlabelled => !self.needs_labels(),
        }
    }

    /// Whether the metric is read from an arm's histograms (latency quantiles, score drift, AUC, ECE).
    pub fn reads_histogram(self) -> bool {
        matches!(self, Metric::LatencyP50 | Metric::LatencyP95 | Metric::LatencyP99 | Metric::Auc | Metric::Ece) || self.is_drift()
    }

    pub fn is_drift(self) -> bool {
        matches!(self, Metric::ScorePsi | Metric::ScoreJs | Metric::ScoreWasserstein)
    }

    pub fn supports_difference_test(self) -> bool {
        self.statistic() != Statistic::Point && self.better().is_some()
    }
}
