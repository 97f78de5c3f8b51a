//! Each model judged by what it outputs: logits, ZipMaps keyed by strings, regressions, one class
//! of a multiclass model, and labels or outputs that make no sense together.

use super::*;

#[test]
fn logits_are_refused_as_probabilities_and_replay_with_a_sigmoid() {
    let case = Case::new();
    let logits = format!("path = \"{}\"", model("logits.onnx"));
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| with_models(s, &logits, &logits));
    check_invalid(&scenario, &["logits.onnx: output \"logit\"", "not probabilities", "models.stable.transform = \"sigmoid\""]);
    let sigmoid = format!("{logits}\ntransform = \"sigmoid\"");
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| with_models(s, &sigmoid, &sigmoid));
    case.replayed(&scenario);
    let ours = scores(&case.path("out/scores.parquet"), &["stable_score"]);
    let python = scores(&repo("tests/fixtures/inputs/expected.parquet"), &["sigmoid_score"]);
    assert_close(&ours, &python, 1e-6);
    let summary = case.summary();
    assert_eq!(summary["task"]["task"], "binary_classification");
    assert_eq!(summary["models"]["stable"]["transform"], "sigmoid");
    // A single logit column has no class 1: the fix says so.
    let classed = format!("{logits}\nclass = 1\ntransform = \"sigmoid\"");
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| with_models(s, &classed, &sigmoid));
    check_invalid(
        &scenario,
        &[
            "has 1 column(s), so models.stable.class = 1 is out of range",
            "fix: a single column is the score itself: remove models.stable.class, or set it to 0",
        ],
    );
}

#[test]
fn zipmap_outputs_keyed_by_strings_are_scored_by_their_key() {
    let case = Case::new();
    let late = format!("path = \"{}\"\nclass = \"late\"", model("zipmap_strings.onnx"));
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| with_models(s, &late, &late));
    case.replayed(&scenario);
    let ours = scores(&case.path("out/scores.parquet"), &["stable_score"]);
    let python = scores(&repo("tests/fixtures/inputs/expected.parquet"), &["late_score"]);
    assert_close(&ours, &python, 1e-6);
    let early = format!("path = \"{}\"\nclass = \"early\"", model("zipmap_strings.onnx"));
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| with_models(s, &early, &late));
    check_invalid(
        &scenario,
        &["zipmap_strings.onnx", "has no class \"early\"; its keys are \"late\", \"on_time\"", "fix: set models.stable.class"],
    );
    let unset = format!("path = \"{}\"", model("zipmap_strings.onnx"));
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| with_models(s, &unset, &late));
    check_invalid(&scenario, &["is keyed by class names (\"late\", \"on_time\")", "fix: set models.stable.class"]);
}

#[test]
fn models_that_cannot_give_a_score_are_named_with_the_fix() {
    let case = Case::new();
    let demo = format!("path = \"{}\"", repo("data/flights/candidate.onnx").display());
    let int = format!("path = \"{}\"", model("int_output.onnx"));
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| with_models(s, &int, &demo));
    let stderr = check_invalid(
        &scenario,
        &["int_output.onnx: output \"class_id\"", "is int64 [N]; the score must be a float tensor", "it is the model's only output"],
    );
    assert!(!stderr.contains("several outputs"), "{stderr}");
    let custom = format!("path = \"{}\"", model("custom_domain.onnx"));
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| with_models(s, &custom, &demo));
    let stderr = check_invalid(
        &scenario,
        &["custom_domain.onnx", "uses the operator Score of the domain \"com.example.custom\", which ONNX Runtime"],
    );
    assert!(!stderr.contains("check the file is complete"), "{stderr}");
}

/// The sample with `label` replaced by `values` (one per row).
fn relabelled(case: &Case, name: &str, values: impl Fn(usize, Option<i8>) -> Option<f64>) -> PathBuf {
    rewrite_sample(case, name, |b| {
        let old = b.column_by_name("label").unwrap().as_primitive::<arrow::datatypes::Int8Type>().clone();
        let label: ArrayRef =
            Arc::new(arrow::array::Float64Array::from_iter((0..b.num_rows()).map(|i| values(i, old.is_valid(i).then(|| old.value(i))))));
        replace_column(b, "label", Some(label))
    })
}

#[test]
fn a_numeric_label_is_a_regression_judged_by_mae_not_log_loss() {
    let case = Case::new();
    let traffic = relabelled(&case, "minutes.parquet", |i, y| y.map(|y| f64::from(y) * 40.0 + (i % 17) as f64 - 5.0));
    let regressor = format!("path = \"{}\"", repo("tests/fixtures/models/regressor.onnx").display());
    let scenario = case.scenario(&traffic, |s| with_models(s, &regressor, &regressor));
    let assert = case.replayed(&scenario);
    assert!(stderr_of(&assert).contains("note: task: regression"), "{}", stderr_of(&assert));
    let summary = case.summary();
    assert_eq!(summary["task"]["task"], "regression");
    let gates: Vec<&str> = summary["policy"]["gates"].as_array().unwrap().iter().map(|g| g["metric"].as_str().unwrap()).collect();
    assert!(gates.contains(&"mae") && !gates.contains(&"log_loss"), "{gates:?}");
    // A log-loss gate on a regression is named.
    let scenario = case.scenario(&traffic, |s| with_models(s, &regressor, &regressor) + "\n[[gates]]\nmetric = \"error_rate\"\nkind = \"regression\"\n\n[[gates]]\nmetric = \"log_loss\"\nkind = \"non_inferiority\"\nmargin = 0.02\n");
    check_invalid(&scenario, &["gates[1].metric = \"log_loss\"", "does not fit the task: regression", "fix: gate on mae or rmse"]);
}

#[test]
fn absurd_labels_are_refused_at_check() {
    let case = Case::new();
    let nulls = relabelled(&case, "null-labels.parquet", |_, _| None);
    check_invalid(&case.scenario(&nulls, |s| s), &["traffic.label = \"label\"", "every row of the column is null"]);
    let two = relabelled(&case, "zero-two.parquet", |_, y| y.map(|y| f64::from(y) * 2.0));
    check_invalid(&case.scenario(&two, |s| s), &["takes two values, 0, 2: a binary label must be 0/1"]);
    let minutes = relabelled(&case, "minutes.parquet", |i, y| y.map(|y| f64::from(y) * 40.0 + (i % 17) as f64));
    check_invalid(&case.scenario(&minutes, |s| s), &["takes values such as 0, 1, 2", "the models output probabilities of a class"]);
    // Labels without an arrival time are said to arrive at once, and recorded.
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| s.replace("label_time = \"label_ts\"\n", ""));
    let stderr = stderr_of(&case.replayed(&scenario));
    assert!(stderr.contains("note: labels arrive with their requests"), "{stderr}");
    let assumptions = case.summary()["assumptions"].to_string();
    assert!(assumptions.contains("labels arrive with their requests"), "{assumptions}");
}

#[test]
fn one_class_of_a_multiclass_model_is_judged_as_label_equals_class() {
    let case = Case::new();
    // Class ids 0, 1, 2: the sample's label plus one for long flights.
    let traffic = rewrite_sample(&case, "classes.parquet", |b| {
        let label = b.column_by_name("label").unwrap().as_primitive::<arrow::datatypes::Int8Type>().clone();
        let distance = arrow::compute::cast(b.column_by_name("distance").unwrap(), &arrow::datatypes::DataType::Int64).unwrap();
        let distance = distance.as_primitive::<arrow::datatypes::Int64Type>();
        let classes: ArrayRef = Arc::new(arrow::array::Int8Array::from_iter(
            (0..b.num_rows()).map(|i| label.is_valid(i).then(|| label.value(i) + i8::from(distance.value(i) > 1000))),
        ));
        replace_column(b, "label", Some(classes))
    });
    let multiclass = format!("path = \"{}\"\nclass = 2", model("multiclass.onnx"));
    let scenario = case.scenario(&traffic, |s| with_models(s, &multiclass, &multiclass));
    let stderr = stderr_of(&case.replayed(&scenario));
    assert!(stderr.contains("note: task: one class of a multiclass model") && stderr.contains("judged as label == 2"), "{stderr}");
    let summary = case.summary();
    assert_eq!(summary["task"]["task"], "one_class_of_multiclass");
    assert_eq!(summary["task"]["positive_class"], 2);
    assert_eq!(summary["oracle"]["task"], "binary", "every label is read as label == 2");
    let batch = read_parquet(&case.path("out/scores.parquet"));
    let labels = batch.column_by_name("label").unwrap().as_primitive::<arrow::datatypes::Int8Type>();
    assert!(labels.iter().flatten().all(|y| y == 0 || y == 1) && labels.iter().flatten().any(|y| y == 1));
    // Without a class the three columns are named.
    let unset = format!("path = \"{}\"", model("multiclass.onnx"));
    check_invalid(&case.scenario(&traffic, |s| with_models(s, &unset, &unset)), &["has 3 class columns", "models.stable.class"]);
}

#[test]
fn class_and_transform_that_do_not_fit_the_output_are_named() {
    let case = Case::new();
    let demo = format!("path = \"{}\"", repo("data/flights/candidate.onnx").display());
    let named = format!("{demo}\nclass = \"late\"");
    check_invalid(
        &case.scenario(&repo("data/flights/sample.parquet"), |s| with_models(s, &named, &demo)),
        &[
            "output \"probabilities\": is a tensor, so models.stable.class = \"late\" (a ZipMap key) cannot pick a column",
            "fix: give the column number",
        ],
    );
    let softmax = format!("path = \"{}\"\ntransform = \"softmax\"", model("logits.onnx"));
    check_invalid(
        &case.scenario(&repo("data/flights/sample.parquet"), |s| with_models(s, &softmax, &demo)),
        &["has one column, so models.*.transform = \"softmax\"", "models.stable.transform = \"sigmoid\""],
    );
    let zipmap = format!("path = \"{}\"\nclass = \"late\"\ntransform = \"sigmoid\"", model("zipmap_strings.onnx"));
    check_invalid(
        &case.scenario(&repo("data/flights/sample.parquet"), |s| with_models(s, &zipmap, &demo)),
        &["is a ZipMap of probabilities: there is nothing to transform", "remove models.stable.transform"],
    );
    let int_keys = format!("path = \"{}\"\nclass = \"late\"", repo("tests/fixtures/models/zipmap.onnx").display());
    check_invalid(
        &case.scenario(&repo("data/flights/sample.parquet"), |s| with_models(s, &int_keys, &demo)),
        &["is a ZipMap keyed by int64 class ids, so models.stable.class = \"late\" matches no key"],
    );
}

#[test]
fn a_model_that_fails_on_every_row_is_an_input_error_not_a_verdict() {
    let case = Case::new();
    let demo = format!("path = \"{}\"", repo("data/flights/candidate.onnx").display());
    // faulty.onnx fails on Sundays only: a log of Sundays alone fails on every row.
    let sundays = rewrite_sample(&case, "sundays.parquet", |b| {
        let day = arrow::compute::cast(b.column_by_name("day_of_week").unwrap(), &arrow::datatypes::DataType::Int64).unwrap();
        let day = day.as_primitive::<arrow::datatypes::Int64Type>().clone();
        rows_where(&b, |i| day.value(i) == 6)
    });
    let faulty = format!("path = \"{}\"\noutput = \"score\"", repo("tests/fixtures/models/faulty.onnx").display());
    let scenario =
        case.scenario(&sundays, |s| with_models(s, &faulty, &demo).replace("label = \"label\"\nlabel_time = \"label_ts\"\n", ""));
    let stderr = assert_invalid(
        &case,
        &scenario,
        &["faulty.onnx: output \"score\": scores none of the log's first", "Gather", "fix: check the model runs"],
    );
    assert!(!stderr.contains("ROLLED BACK"), "{stderr}");
}
