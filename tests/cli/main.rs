//! End-to-end tests of the `canary-replay` binary on real Parquet files and real ONNX models
//! through real ONNX Runtime. ONNX Runtime is found or fetched exactly as a user's first run does;
//! when it cannot be provisioned these tests fail, they never skip.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{Field, Float64Type, Schema};
use assert_cmd::Command;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use serde_json::Value;
use tempfile::TempDir;

mod inputs;
mod logs;
mod models;
mod ray;
mod report;
mod storage;

const FEATURES: [&str; 18] = [
    "sched_dep_min",
    "day_of_week",
    "distance",
    "carrier_code",
    "origin_code",
    "dest_code",
    "temp",
    "dewp",
    "humid",
    "wind_dir",
    "wind_speed",
    "wind_gust",
    "precip",
    "pressure",
    "visib",
    "plane_year",
    "seats",
    "dep_load",
];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The binary, with ONNX Runtime provisioned once for the whole test run. The tests run a copy:
/// the Ray test's wheel build runs cargo, which replaces `target/release/canary-replay` (the same
/// binary) while the other tests start it.
fn bin() -> Command {
    static PROVISIONED: OnceLock<PathBuf> = OnceLock::new();
    let copy = PROVISIONED.get_or_init(|| {
        let built = Command::cargo_bin("canary-replay").unwrap().get_program().to_owned();
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        // Earlier runs' links, once their process is gone.
        for entry in std::fs::read_dir(tmp).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("canary-replay-under-test-") {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let copy = tmp.join(format!("canary-replay-under-test-{}", std::process::id()));
        let _ = std::fs::remove_file(&copy);
        if std::fs::hard_link(&built, &copy).is_err() {
            std::fs::copy(&built, &copy).unwrap();
        }
        let out = Command::new(&copy).args(["check"]).arg(repo("scenarios/flights-2013.toml")).output().unwrap();
        assert!(out.status.success(), "ONNX Runtime could not be provisioned:\n{}", String::from_utf8_lossy(&out.stderr));
        copy
    });
    Command::new(copy)
}

/// A temporary folder holding a scenario (and whatever else a test writes).
struct Case {
    dir: TempDir,
}

impl Case {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `scenario.toml`: the sample traffic through the demo models, with `edit` applied.
    fn scenario(&self, traffic: &Path, edit: impl Fn(String) -> String) -> PathBuf {
        self.scenario_as("scenario.toml", traffic, edit)
    }

    /// [`Case::scenario`] written to the file `name`.
    fn scenario_as(&self, name: &str, traffic: &Path, edit: impl Fn(String) -> String) -> PathBuf {
        let text = format!(
            r#"name = "case"
[traffic]
path = "{}"
time = "request_ts"
entity = "entity_id"
id = "request_id"
label = "label"
label_time = "label_ts"
segments = ["origin", "carrier"]

[models.stable]
path = "{}"
output = "probabilities"
class = 1

[models.candidate]
path = "{}"
output = "probabilities"
class = 1
"#,
            traffic.display(),
            repo("data/flights/stable.onnx").display(),
            repo("data/flights/candidate.onnx").display()
        );
        let path = self.path(name);
        std::fs::write(&path, edit(text)).unwrap();
        path
    }

    /// `run` with a private score cache and output folder.
    fn run(&self, scenario: &Path) -> assert_cmd::assert::Assert {
        bin().arg("run").arg(scenario).arg("--out").arg(self.path("out")).arg("--cache-dir").arg(self.path("cache")).arg("-q").assert()
    }

    /// The last run's `timings.json`.
    fn timings(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.path("out/timings.json")).unwrap()).unwrap()
    }

    /// `run` that replayed and decided (promoted 0, rolled back 1, held 3).
    fn replayed(&self, scenario: &Path) -> assert_cmd::assert::Assert {
        let assert = self.run(scenario);
        let code = assert.get_output().status.code();
        assert!(matches!(code, Some(0 | 1 | 3)), "exit {code:?}:\n{}", String::from_utf8_lossy(&assert.get_output().stderr));
        assert
    }

    fn summary(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.path("out/summary.json")).unwrap()).unwrap()
    }
}

fn read_parquet(path: &Path) -> RecordBatch {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap().build().unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

fn write_parquet(path: &Path, batch: &RecordBatch) {
    let mut writer = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

/// Scores by request id from a run's (or a fixture's) Parquet file.
fn scores(path: &Path, columns: &[&str]) -> std::collections::HashMap<String, Vec<Option<f64>>> {
    let batch = read_parquet(path);
    let ids = arrow::compute::cast(batch.column_by_name("request_id").unwrap(), &arrow::datatypes::DataType::Utf8).unwrap();
    let ids = ids.as_string::<i32>();
    let values: Vec<ArrayRef> = columns
        .iter()
        .map(|c| arrow::compute::cast(batch.column_by_name(c).unwrap(), &arrow::datatypes::DataType::Float64).unwrap())
        .collect();
    (0..batch.num_rows())
        .map(|i| {
            let row = values.iter().map(|v| v.as_primitive::<Float64Type>()).map(|v| v.is_valid(i).then(|| v.value(i))).collect();
            (ids.value(i).to_string(), row)
        })
        .collect()
}

/// The sample scenario with its stable model swapped for the test model `fixture`
/// (`tests/fixtures/models/`), its `output`/`class` lines replaced by `output`.
fn with_stable(s: String, fixture: &str, output: &str) -> String {
    s.replacen(
        &repo("data/flights/stable.onnx").display().to_string(),
        &repo(&format!("tests/fixtures/models/{fixture}")).display().to_string(),
        1,
    )
    .replacen("output = \"probabilities\"\nclass = 1", output, 1)
}

fn assert_close(
    actual: &std::collections::HashMap<String, Vec<Option<f64>>>,
    expected: &std::collections::HashMap<String, Vec<Option<f64>>>,
    tolerance: f64,
) {
    assert_eq!(actual.len(), expected.len(), "row counts differ");
    let mut worst = 0.0f64;
    for (id, want) in expected {
        let got = actual.get(id).unwrap_or_else(|| panic!("request {id} missing"));
        for (g, w) in got.iter().zip(want) {
            let (g, w) = (g.expect("scored"), w.expect("expected score"));
            worst = worst.max((g - w).abs());
        }
    }
    assert!(worst <= tolerance, "largest difference {worst} exceeds {tolerance}");
}

fn stderr_of(assert: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&assert.get_output().stderr).into_owned()
}

fn model(name: &str) -> String {
    repo(&format!("tests/fixtures/inputs/{name}")).display().to_string()
}

/// The scenario with `stable` and `candidate` as models (each `[models.*]` table replaced whole).
fn with_models(text: String, stable: &str, candidate: &str) -> String {
    let head = &text[..text.find("[models.stable]").unwrap()];
    format!("{head}[models.stable]\n{stable}\n\n[models.candidate]\n{candidate}\n")
}

/// `check` of a scenario that should fail: exit 2, every needle in stderr, no panic.
fn check_invalid(scenario: &Path, needles: &[&str]) -> String {
    let assert = bin().arg("check").arg(scenario).assert().code(2);
    let stderr = stderr_of(&assert);
    for needle in needles {
        assert!(stderr.contains(needle), "stderr lacks {needle:?}:\n{stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// The rows of `batch` where `keep` holds.
fn rows_where(batch: &RecordBatch, keep: impl Fn(usize) -> bool) -> RecordBatch {
    let mask = arrow::array::BooleanArray::from((0..batch.num_rows()).map(keep).collect::<Vec<_>>());
    arrow::compute::filter_record_batch(batch, &mask).unwrap()
}

/// What must not change when the same requests come in another form: the decision, and the
/// oracle to 10 significant digits (sums over rows in another order differ in the last bits).
fn decisions(summary: &Value) -> (Value, Value, Value) {
    let mut oracle = summary["oracle"].clone();
    comparable(&mut oracle);
    (summary["simulation"]["outcome"].clone(), summary["simulation"]["stages"].clone(), oracle)
}

/// Latency left out (it is measured anew by each scoring), numbers rounded.
fn comparable(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|k, _| !k.contains("latency"));
            map.values_mut().for_each(comparable);
        }
        Value::Array(items) => items.iter_mut().for_each(comparable),
        Value::Number(n) if n.is_f64() => *value = Value::String(format!("{:.9e}", n.as_f64().unwrap())),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Scores are ONNX Runtime's

#[test]
fn scores_equal_python_onnxruntime_on_the_sample() {
    let case = Case::new();
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| s);
    case.replayed(&scenario);
    let ours = scores(&case.path("out/scores.parquet"), &["stable_score", "candidate_score"]);
    let python = scores(&repo("data/flights/sample_expected.parquet"), &["stable_score", "candidate_score"]);
    assert_close(&ours, &python, 1e-6);
    let summary = case.summary();
    assert_eq!(summary["rows_replayed"], 2000);
    assert_eq!(summary["oracle"]["overall"]["stable"]["errors"], 0);
    assert!(summary["runtime"]["version"].as_str().unwrap().starts_with("1."));
}

#[test]
fn zipmap_and_regression_outputs_are_read_like_python_does() {
    let case = Case::new();
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| {
        with_stable(s, "zipmap.onnx", "output = \"output_probability\"\nclass = 1")
            .replacen(
                &repo("data/flights/candidate.onnx").display().to_string(),
                &repo("tests/fixtures/models/regressor.onnx").display().to_string(),
                1,
            )
            .replacen("output = \"probabilities\"\nclass = 1", "output = \"variable\"", 1)
    });
    case.replayed(&scenario);
    let ours = scores(&case.path("out/scores.parquet"), &["stable_score", "candidate_score"]);
    let python = scores(&repo("tests/fixtures/models/expected.parquet"), &["zipmap_score", "regressor_score"]);
    assert_close(&ours, &python, 1e-6);
}

#[test]
fn traffic_written_by_polars_and_pyarrow_in_other_encodings_scores_the_same() {
    let reference = Case::new();
    reference.replayed(&reference.scenario(&repo("data/flights/sample.parquet"), |s| s));
    let expected = scores(&reference.path("out/scores.parquet"), &["stable_score", "candidate_score", "label"]);
    let expected_summary = reference.summary();

    for traffic in [
        "tests/fixtures/formats/polars.parquet",
        "tests/fixtures/formats/pyarrow_naive.parquet",
        "tests/fixtures/split",
        "tests/fixtures/split/*.parquet",
    ] {
        let case = Case::new();
        case.replayed(&case.scenario(&repo(traffic), |s| s));
        let got = scores(&case.path("out/scores.parquet"), &["stable_score", "candidate_score", "label"]);
        assert_eq!(got, expected, "{traffic}: scores or labels differ");
        let summary = case.summary();
        assert_eq!(summary["window"], expected_summary["window"], "{traffic}: times differ");
        assert_eq!(
            summary["oracle"]["overall"]["stable"]["quality"], expected_summary["oracle"]["overall"]["stable"]["quality"],
            "{traffic}"
        );
    }
}

#[test]
fn failing_rows_are_isolated_and_recorded() {
    // faulty.onnx scores NaN on Saturdays and fails any batch holding a Sunday.
    let case = Case::new();
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| {
        with_stable(s, "faulty.onnx", "output = \"score\"")
            // Its scores are no probabilities: compared without a label (against one it is refused).
            .replace("label = \"label\"\nlabel_time = \"label_ts\"\n", "")
    });
    case.replayed(&scenario);
    let batch = read_parquet(&case.path("out/scores.parquet"));
    let sample = read_parquet(&repo("data/flights/sample.parquet"));
    let days = arrow::compute::cast(sample.column_by_name("day_of_week").unwrap(), &arrow::datatypes::DataType::Int64).unwrap();
    let days = days.as_primitive::<arrow::datatypes::Int64Type>();
    let errors = batch.column_by_name("stable_error").unwrap().as_string::<i32>();
    let scores = batch.column_by_name("stable_score").unwrap().as_primitive::<Float64Type>();
    for i in 0..batch.num_rows() {
        match days.value(i) {
            5 => assert_eq!(errors.value(i), "non_finite"),
            6 => assert!(errors.value(i).starts_with("run_failed: ") && errors.value(i).contains("Gather"), "{}", errors.value(i)),
            d => {
                assert!(errors.is_null(i));
                assert!((scores.value(i) - 0.1 * (d + 1) as f64).abs() < 1e-6);
            }
        }
    }
    let expected_errors = (0..days.len()).filter(|&i| days.value(i) >= 5).count() as u64;
    assert_eq!(case.summary()["oracle"]["overall"]["stable"]["errors"], expected_errors);
}

#[test]
fn models_with_one_input_per_feature_are_fed_by_input_name_and_type() {
    // per_feature.onnx: inputs distance (float [N, 1]) and temp (double [N, 1]); no metadata.
    let case = Case::new();
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| {
        with_stable(s, "per_feature.onnx", "output = \"score\"")
            // Its scores are no probabilities: compared without a label (against one it is refused).
            .replace("label = \"label\"\nlabel_time = \"label_ts\"\n", "")
    });
    case.replayed(&scenario);
    let summary = case.summary();
    assert_eq!(summary["models"]["stable"]["features"], serde_json::json!(["distance", "temp"]));
    assert_eq!(summary["models"]["stable"]["feature_source"], "input_names");
    let ours = read_parquet(&case.path("out/scores.parquet"));
    let sample = read_parquet(&repo("data/flights/sample.parquet"));
    let column = |b: &RecordBatch, name: &str| {
        arrow::compute::cast(b.column_by_name(name).unwrap(), &arrow::datatypes::DataType::Float64)
            .unwrap()
            .as_primitive::<Float64Type>()
            .clone()
    };
    let (distance, temp, score) = (column(&sample, "distance"), column(&sample, "temp"), column(&ours, "stable_score"));
    let errors = ours.column_by_name("stable_error").unwrap().as_string::<i32>();
    for i in 0..sample.num_rows() {
        if temp.is_null(i) {
            assert_eq!(errors.value(i), "non_finite", "a null feature must reach the model as NaN");
        } else {
            let expected = ((distance.value(i) as f32) * 0.001f32) as f64 + temp.value(i) * 0.01;
            assert!((score.value(i) - expected).abs() < 1e-9, "row {i}: {} vs {expected}", score.value(i));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The score cache

#[test]
fn a_second_run_reuses_the_cache_and_writes_identical_summaries() {
    let case = Case::new();
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| s);
    case.replayed(&scenario);
    let first = std::fs::read(case.path("out/summary.json")).unwrap();
    let scores_written_while_scoring = read_parquet(&case.path("out/scores.parquet"));
    let timings = case.timings();
    assert_eq!((timings["parts_scored"].as_u64(), timings["parts_reused"].as_u64()), (Some(1), Some(0)));

    case.replayed(&scenario);
    let timings = case.timings();
    assert_eq!((timings["parts_scored"].as_u64(), timings["parts_reused"].as_u64()), (Some(0), Some(1)));
    assert_eq!(std::fs::read(case.path("out/summary.json")).unwrap(), first, "summary.json differs between runs");
    // Written from the rows as they were scored, then from the cache's part: the same file.
    assert_eq!(read_parquet(&case.path("out/scores.parquet")), scores_written_while_scoring);

    // A changed input (another candidate model) cannot reuse the part.
    let other = case.scenario(&repo("data/flights/sample.parquet"), |s| s.replace("candidate.onnx", "stable.onnx"));
    case.replayed(&other);
    let timings = case.timings();
    assert_eq!(timings["parts_scored"].as_u64(), Some(1));
}

// ---------------------------------------------------------------------------------------------
// Bad input: exit 2, a message naming the file, column, key or model input, no output folder

fn rewrite_sample(case: &Case, name: &str, edit: impl Fn(RecordBatch) -> RecordBatch) -> PathBuf {
    let path = case.path(name);
    write_parquet(&path, &edit(read_parquet(&repo("data/flights/sample.parquet"))));
    path
}

fn replace_column(batch: RecordBatch, name: &str, column: Option<ArrayRef>) -> RecordBatch {
    let schema = batch.schema();
    let mut fields: Vec<Field> = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for (field, array) in schema.fields().iter().zip(batch.columns()) {
        if field.name() == name {
            if let Some(c) = &column {
                fields.push(Field::new(name, c.data_type().clone(), true));
                arrays.push(c.clone());
            }
        } else {
            fields.push(field.as_ref().clone());
            arrays.push(array.clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
}

fn assert_invalid(case: &Case, scenario: &Path, needles: &[&str]) -> String {
    let assert = case.run(scenario).code(2);
    let stderr = stderr_of(&assert);
    for needle in needles {
        assert!(stderr.contains(needle), "stderr lacks {needle:?}:\n{stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!case.path("out").exists(), "an output folder was left behind");
    stderr
}

#[test]
fn a_missing_feature_column_is_named() {
    let case = Case::new();
    let traffic = rewrite_sample(&case, "no-temp.parquet", |b| replace_column(b, "temp", None));
    assert_invalid(&case, &case.scenario(&traffic, |s| s), &["no-temp.parquet", "column \"temp\"", "is missing"]);
}

#[test]
fn a_string_column_where_a_number_is_expected_is_named() {
    let case = Case::new();
    let traffic = rewrite_sample(&case, "text-temp.parquet", |b| {
        let text: ArrayRef = Arc::new(StringArray::from_iter_values((0..b.num_rows()).map(|i| format!("{i} F"))));
        replace_column(b, "temp", Some(text))
    });
    assert_invalid(&case, &case.scenario(&traffic, |s| s), &["column \"temp\"", "is Utf8, expected numbers", "encode"]);
}

#[test]
fn a_model_expecting_17_features_for_18_columns_is_named() {
    let case = Case::new();
    let list = format!("features = [{}]", FEATURES.iter().map(|f| format!("\"{f}\"")).collect::<Vec<_>>().join(", "));
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| with_stable(s, "narrow17.onnx", &format!("class = 1\n{list}")));
    assert_invalid(
        &case,
        &scenario,
        &["narrow17.onnx", "input \"input\"", "expects 17 features per row, but the scenario lists 18 columns"],
    );

    // Without a list, the missing metadata is named with the fix.
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| with_stable(s, "narrow17.onnx", "class = 1"));
    assert_invalid(&case, &scenario, &["takes [N, 17] features, but the model has no feature_names metadata", "[features] columns"]);
}

#[test]
fn a_truncated_parquet_file_is_named() {
    let case = Case::new();
    let bytes = std::fs::read(repo("data/flights/sample.parquet")).unwrap();
    let traffic = case.path("truncated.parquet");
    std::fs::write(&traffic, &bytes[..bytes.len() / 2]).unwrap();
    assert_invalid(&case, &case.scenario(&traffic, |s| s), &["truncated.parquet", "not a readable Parquet file"]);
}

#[test]
fn a_file_that_is_not_onnx_is_named() {
    let case = Case::new();
    let fake = case.path("fake.onnx");
    std::fs::write(&fake, "this is not a model\n").unwrap();
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| {
        s.replacen(&repo("data/flights/candidate.onnx").display().to_string(), &fake.display().to_string(), 1)
    });
    assert_invalid(&case, &scenario, &["fake.onnx", "is not a model ONNX Runtime"]);
}

#[test]
fn a_missing_output_lists_the_outputs_the_model_has() {
    let case = Case::new();
    let scenario =
        case.scenario(&repo("data/flights/sample.parquet"), |s| s.replacen("output = \"probabilities\"", "output = \"probs\"", 1));
    assert_invalid(
        &case,
        &scenario,
        &["stable.onnx: output \"probs\"", "label (int64 [N]), probabilities (float [N, 2])", "models.stable.output"],
    );
}

#[test]
fn an_empty_time_window_says_where_the_data_is() {
    let case = Case::new();
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| {
        s.replace("segments = [", "start = \"2014-01-01T00:00:00Z\"\nend = \"2014-02-01T00:00:00Z\"\nsegments = [")
    });
    assert_invalid(&case, &scenario, &["traffic.start/traffic.end", "selects no requests", "the data spans 2013-09-01"]);
}

#[test]
fn unsorted_timestamps_are_named_with_the_row() {
    let case = Case::new();
    let traffic = rewrite_sample(&case, "shuffled.parquet", |b| {
        let indices = arrow::array::UInt32Array::from_iter_values((0..b.num_rows() as u32).rev());
        arrow::compute::take_record_batch(&b, &indices).unwrap()
    });
    assert_invalid(
        &case,
        &case.scenario(&traffic, |s| s),
        &["shuffled.parquet", "column \"request_ts\"", "is not sorted: row 1", "sort the log by time"],
    );
}

#[test]
fn invalid_scenarios_report_every_problem_with_its_key_path() {
    let case = Case::new();
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| {
        s.replace("time = \"request_ts\"", "tme = \"request_ts\"")
            .replace("name = \"case\"", "name = \"case\"\n[scoring]\nlatency_sample = 1.5\nbatch_rows = 0")
    });
    let stderr = assert_invalid(&case, &scenario, &[]);
    let stderr = stderr.replace(&case.path("").display().to_string(), "");
    insta::assert_snapshot!("invalid_scenario", stderr);
}

#[test]
fn a_controller_metric_without_a_mapping_is_named() {
    let case = Case::new();
    let flagger = "kind: Canary\nmetadata: {name: live}\nspec:\n  analysis:\n    interval: 1h\n    stepWeight: 10\n    metrics:\n      - name: p95-latency\n        thresholdRange: {max: 50}\n";
    std::fs::write(case.path("canary.yaml"), flagger).unwrap();
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| {
        s + "\n[controller]\nfiles = [\"canary.yaml\"]\n[controller.metrics.p95-latencyy]\nmetric = \"latency_p95\"\n"
    });
    assert_invalid(
        &case,
        &scenario,
        &[
            "controller.metrics: metric \"p95-latency\" of Canary live is not mapped",
            "\"p95-latencyy\" exists: a typo?",
            "fix: add [controller.metrics.\"p95-latency\"]",
        ],
    );
    // A controller file given on the command line is read with the scenario's mapping.
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| {
        s + "\n[controller]\nfiles = []\n[controller.metrics.p95-latency]\nmetric = \"latency_p95\"\n"
    });
    let assert = bin().arg("check").arg(&scenario).arg("--controller").arg(case.path("canary.yaml")).assert().success();
    let stdout = String::from_utf8_lossy(&assert.get_output().stdout).into_owned();
    assert!(stdout.contains("controller to emulate: Flagger: Canary live"), "{stdout}");
    let stderr = stderr_of(&bin().arg("check").arg(&scenario).arg("--controller").arg(case.path("missing.yaml")).assert().code(2));
    // Named as the flag gave it, not as a scenario key (issue 18, item 3).
    assert!(
        stderr.contains("--controller ") && stderr.contains("missing.yaml: cannot be read") && !stderr.contains("controller.files[0]"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// Other commands

#[test]
fn the_demo_scenario_checks_out() {
    let assert = bin().arg("check").arg(repo("scenarios/flights-2013.toml")).assert().success();
    let stdout = String::from_utf8_lossy(&assert.get_output().stdout).into_owned();
    assert!(stdout.contains("111845 requests in the window"), "{stdout}");
}

#[test]
fn inspect_profiles_the_demo_log() {
    let assert = bin().args(["inspect", "--json"]).arg(repo("data/flights/traffic.parquet")).assert().success();
    let profile: Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    assert_eq!(profile["rows"], 336_776);
    assert_eq!(profile["time"]["column"], "request_ts");
    assert_eq!(profile["time"]["out_of_order_rows"], 0);
    assert_eq!(profile["label"]["label_time"], "label_ts");
    let coverage = profile["label"]["coverage"].as_f64().unwrap();
    assert!((0.97..0.98).contains(&coverage), "{coverage}");
    let delays = profile["label"]["delay_seconds"].as_array().unwrap();
    assert!(delays[0].as_f64().unwrap() > 3600.0, "labels arrive hours after the request");
    let origin = profile["columns"].as_array().unwrap().iter().find(|c| c["name"] == "origin").unwrap();
    assert_eq!(origin["distinct"], 3);
    let temp = profile["columns"].as_array().unwrap().iter().find(|c| c["name"] == "temp").unwrap();
    assert!(temp["null_rate"].as_f64().unwrap() > 0.0);
}

#[test]
fn inspect_flags_unsorted_logs() {
    let case = Case::new();
    let traffic = rewrite_sample(&case, "shuffled.parquet", |b| {
        let indices = arrow::array::UInt32Array::from_iter_values((0..b.num_rows() as u32).rev());
        arrow::compute::take_record_batch(&b, &indices).unwrap()
    });
    let assert = bin().arg("inspect").arg(&traffic).assert().success();
    let stdout = String::from_utf8_lossy(&assert.get_output().stdout).into_owned();
    assert!(stdout.contains("NOT sorted: 1918 rows earlier than the row before"), "{stdout}");
}

#[test]
fn init_prints_a_template_that_checks_out_beside_the_demo_data() {
    let assert = bin().arg("init").assert().success();
    let case = Case::new();
    std::os::unix::fs::symlink(repo("data"), case.path("data")).unwrap();
    let path = case.path("template.toml");
    std::fs::write(&path, &assert.get_output().stdout).unwrap();
    let checked = bin().arg("check").arg(&path).assert().success();
    // Notes say what was decided (the task); warnings would say something is off.
    assert!(!stderr_of(&checked).contains("warning"), "the template produced warnings: {}", stderr_of(&checked));
    assert!(stderr_of(&checked).contains("note: task: binary classification"), "{}", stderr_of(&checked));
}

#[test]
fn an_explicit_runtime_that_does_not_exist_fails_with_the_path() {
    let assert =
        bin().arg("check").arg(repo("scenarios/flights-2013.toml")).args(["--ort-lib", "/nonexistent/libonnxruntime.so"]).assert().code(4);
    assert!(stderr_of(&assert).contains("--ort-lib /nonexistent/libonnxruntime.so"), "{}", stderr_of(&assert));
}

#[test]
fn an_output_folder_that_is_a_file_is_named_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("taken");
    std::fs::write(&file, "not a folder").unwrap();
    let assert = bin().arg("run").arg(repo("scenarios/flights-2013.toml")).arg("--out").arg(&file).arg("-q").assert().code(2);
    let stderr = stderr_of(&assert);
    assert!(
        stderr.contains(&format!("{} is a file, not a folder", file.display())) && stderr.contains("fix: pass a folder with --out"),
        "{stderr}"
    );
    let assert = bin()
        .args(["tune", "--space"])
        .arg(repo("scenarios/tune/space.toml"))
        .arg(repo("scenarios/incidents/errors.toml"))
        .arg("--out")
        .arg(file.join("tune"))
        .assert()
        .code(2);
    assert!(stderr_of(&assert).contains("is a file, not a folder"), "{}", stderr_of(&assert));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a folder", "the file is left as it was");
}
