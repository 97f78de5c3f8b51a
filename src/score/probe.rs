//! A first look, before anything is scored: both models run on the log's first rows, so what
//! would otherwise fail on every row (a ZipMap key the model lacks, an output that errors) or be
//! judged wrongly (logits taken for probabilities, a regressor against a 0/1 label) is an input
//! problem at `check`, named with its fix. The same look decides the task once — binary
//! classification, regression or unlabelled — from the label and the scores.

use arrow::array::Array;

use super::model::{Model, OutputKind};
use crate::error::{Error, Problem, Result};
use crate::ingest::{Batches, Layout, Survey, TrafficFile};
use crate::policy::Task;
use crate::runtime::Runtime;
use crate::scenario::Scenario;

/// Rows the probe scores.
const PROBE_ROWS: usize = 512;

/// What the first rows showed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct FirstRows {
    pub task: Task,
    /// Why that task, in a sentence.
    pub why: String,
    pub rows: usize,
    /// For one class of a multiclass model: the class whose label is 1 (label == class).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub positive_class: Option<i64>,
}

/// Scores the first rows of the window with both models and decides the task; every problem
/// found is returned at once.
pub fn probe(
    runtime: &Runtime,
    scenario: &Scenario,
    files: &[TrafficFile],
    survey: &Survey,
    layout: &Layout,
    models: [&Model; 2],
) -> Result<FirstRows> {
    let first = survey.groups.first().map(|g| g.files.iter().map(|&i| &files[i]).collect::<Vec<_>>()).unwrap_or_default();
    let batch = match Batches::new(first, &scenario.traffic, layout, &survey.rules, PROBE_ROWS).next() {
        Some(batch) => batch?,
        None => return Err(Error::Internal("the survey found requests the probe cannot read".into())),
    };
    let mut problems = Vec::new();
    let mut scores: Vec<Vec<f64>> = Vec::new();
    for model in models {
        let columns: Vec<&[f64]> = model
            .features
            .iter()
            .map(|f| batch.features[layout.features.iter().position(|x| x == f).expect("a model's feature is in the layout")].as_slice())
            .collect();
        let mut session = model.session(runtime, 1)?;
        // As scoring does: rows that fail are isolated; only a model that scores none of them is refused.
        let mut column = super::Column::new(batch.len());
        super::predict_isolated(model, &mut session, &columns, 0..batch.len(), &mut column);
        if column.scores.iter().any(Option::is_some) {
            scores.push(column.scores.into_iter().flatten().collect());
        } else {
            let message = column.first_failure.unwrap_or_else(|| "every score is NaN or infinite".to_string());
            problems.push(
                Problem::new(
                    format!("{}: output \"{}\"", model.spec.path.display(), model.output),
                    format!("scores none of the log's first {} rows: {message}", batch.len()),
                )
                .fix(failure_fix(model, &message)),
            );
        }
    }
    crate::error::check((), problems)?;
    let labels: Vec<f64> = batch
        .label
        .as_ref()
        .map(|l| (0..l.len()).filter(|i| l.is_valid(*i)).map(|i| l.value(i)).filter(|y| y.is_finite()).collect())
        .unwrap_or_default();
    decide(scenario, layout, files, models, &scores, &labels)
        .map(|(task, why, positive_class)| FirstRows { task, why, rows: batch.len(), positive_class })
        .map_err(Error::Invalid)
}

fn failure_fix(model: &Model, message: &str) -> String {
    let key = format!("models.{}.class", model.spec.role.name());
    if message.contains("ZipMap") {
        format!("set {key} to the key of the class to compare (a string in quotes for string keys)")
    } else {
        "check the model runs on these features in Python ONNX Runtime; a model that fails on every row cannot be compared".to_string()
    }
}

/// The class both models give the probability of, when both name the same class id of a model
/// with more than two classes (declared `[N, C]` columns; a ZipMap's classes show in the labels).
fn common_class(models: [&Model; 2], distinct_labels: usize) -> Option<i64> {
    let class = |m: &Model| match &m.output_kind {
        OutputKind::Tensor { class: Some(c), columns: Some(columns), .. } if *columns > 2 => Some(*c as i64),
        OutputKind::ZipMap { key: Some(super::model::ZipKey::Int(k)) } if distinct_labels > 2 => Some(*k),
        _ => None,
    };
    class(models[0]).filter(|c| Some(*c) == class(models[1]))
}

/// Whether a model's output is a classifier's (probabilities of several classes, or logits).
fn is_classifier(model: &Model) -> bool {
    match &model.output_kind {
        OutputKind::ZipMap { .. } => true,
        OutputKind::Tensor { class, transform, columns } => {
            class.is_some_and(|c| c > 0) || columns.is_some_and(|c| c > 1) || !transform.is_none() || model.output == "probabilities"
        }
    }
}

/// The task, from the label's values on the first rows and both models' outputs there.
fn decide(
    scenario: &Scenario,
    layout: &Layout,
    files: &[TrafficFile],
    models: [&Model; 2],
    scores: &[Vec<f64>],
    labels: &[f64],
) -> std::result::Result<(Task, String, Option<i64>), Vec<Problem>> {
    let Some(label) = &layout.label else {
        return Ok((Task::Unlabelled, "no traffic.label: errors, latency and the scores themselves are compared".into(), None));
    };
    let key = format!("{}: traffic.label = \"{label}\"", scenario.file.display());
    if label_all_null(files, label) {
        return Err(vec![Problem::new(key, "every row of the column is null: there are no labels to judge quality on")
            .fix("name the column holding the labels, or remove traffic.label to compare errors, latency and scores only")]);
    }
    let mut distinct: Vec<f64> = labels.to_vec();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    let shown = distinct.iter().take(5).map(|v| format!("{v}")).collect::<Vec<_>>().join(", ");
    let classifier = models.iter().any(|m| is_classifier(m));
    let binary = !distinct.is_empty() && distinct.iter().all(|v| *v == 0.0 || *v == 1.0);
    if distinct.is_empty() {
        // No label on the first rows (they arrive later, or the first rows lack them): the outputs say.
        return Ok(if classifier {
            (Task::BinaryClassification, "the models output probabilities (no label among the first rows)".into(), None)
        } else {
            (Task::Regression, "the models output one value per row (no label among the first rows)".into(), None)
        });
    }
    let class = common_class(models, distinct.len()).filter(|_| classifier && distinct.iter().all(|v| v.fract() == 0.0 && *v >= 0.0));
    if binary || class.is_some() {
        let mut problems = Vec::new();
        for (model, scores) in models.iter().zip(scores) {
            let (lo, hi) =
                scores.iter().filter(|s| s.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), s| (lo.min(*s), hi.max(*s)));
            if lo < 0.0 || hi > 1.0 {
                let role = model.spec.role.name();
                problems.push(
                    Problem::new(format!("{}: output \"{}\"", model.spec.path.display(), model.output), format!("scores from {lo:.4} to {hi:.4} on the first rows: not probabilities, yet traffic.label \"{label}\" is 0/1"))
                        .fix(format!("if the model outputs logits, set models.{role}.transform = \"sigmoid\" (\"softmax\" for one logit per class); if it is a regressor, name a numeric label")),
                );
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        return Ok(match class.filter(|_| !binary) {
            None => (Task::BinaryClassification, format!("traffic.label \"{label}\" is 0/1 and the scores are probabilities"), None),
            Some(k) => (
                Task::OneClassOfMulticlass,
                format!("traffic.label \"{label}\" holds class ids ({shown}, ...) and both models give the probability of class {k}: judged as label == {k}"),
                Some(k),
            ),
        });
    }
    if distinct.len() == 2 {
        return Err(vec![Problem::new(key, format!("takes two values, {shown}: a binary label must be 0/1"))
            .fix("write the label as 0/1 (1 for the class the scores are the probability of)")]);
    }
    if classifier {
        return Err(vec![Problem::new(key, format!("takes values such as {shown}, but the models output probabilities of a class"))
            .fix("name the 0/1 column of that class as traffic.label (for one class k of a multiclass model: label == k), or compare regressors against this column")]);
    }
    Ok((Task::Regression, format!("traffic.label \"{label}\" takes values such as {shown} and the models output one value per row"), None))
}

/// Whether the label column is null in every row of every file, from the footers' statistics.
fn label_all_null(files: &[TrafficFile], label: &str) -> bool {
    files.iter().all(|file| {
        let Ok(index) = file.schema().index_of(label) else { return false };
        let Some(leaf) = file
            .metadata
            .parquet_schema()
            .columns()
            .iter()
            .position(|c| c.path().parts().first().map(String::as_str) == Some(file.schema().field(index).name()))
        else {
            return false;
        };
        file.metadata
            .metadata()
            .row_groups()
            .iter()
            .all(|g| g.column(leaf).statistics().and_then(|s| s.null_count_opt()).is_some_and(|nulls| nulls as i64 == g.num_rows()))
    })
}
