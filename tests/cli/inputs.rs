//! Inputs as users have them: output folders that hold their files, damaged logs, leftovers of
//! interrupted runs. Each test feeds the input, checks the exit code and the message, and that
//! nothing the tool did not write was touched.

use std::path::Path;

use parquet::file::properties::WriterProperties;

use super::*;

/// Every file below `dir` with its bytes, to show nothing was touched.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn an_output_folder_holding_other_files_is_refused_and_left_as_it_was() {
    let case = Case::new();
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| s);
    std::fs::write(case.path("notes.md"), "mine").unwrap();
    let before = snapshot(case.dir.path());
    // --out at the scenario's own folder (which holds the scenario and the user's notes).
    for out in [case.dir.path().to_path_buf(), case.dir.path().join(".")] {
        let assert = bin().arg("run").arg(&scenario).arg("--out").arg(&out).arg("--cache-dir").arg(case.path("../cache-unused")).arg("-q").assert().code(2);
        let stderr = stderr_of(&assert);
        assert!(stderr.contains("holds files canary-replay did not write") && stderr.contains("notes.md") && stderr.contains("fix: pass a new or empty folder"), "{stderr}");
    }
    let assert = bin().args(["tune", "--space"]).arg(repo("scenarios/tune/space.toml")).arg(repo("scenarios/incidents/errors.toml")).arg("--out").arg(case.dir.path()).assert().code(2);
    assert!(stderr_of(&assert).contains("holds files canary-replay did not write"), "{}", stderr_of(&assert));
    assert_eq!(snapshot(case.dir.path()), before, "nothing in the folder changed");
    assert!(!case.path("../cache-unused").exists(), "refused before any work");
}

#[test]
fn an_earlier_output_folder_is_replaced_unless_files_were_added_to_it() {
    let case = Case::new();
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| s);
    case.replayed(&scenario);
    let marker = std::fs::read_to_string(case.path("out/.canary-replay-output")).unwrap();
    assert!(marker.contains("summary.json\n") && marker.contains("charts/timeline.png\n"), "{marker}");
    case.replayed(&scenario);
    // A file the user put there keeps the folder from being replaced, and survives.
    std::fs::write(case.path("out/charts/review-notes.txt"), "keep").unwrap();
    let assert = case.run(&scenario).code(2);
    assert!(stderr_of(&assert).contains("charts/review-notes.txt"), "{}", stderr_of(&assert));
    assert_eq!(std::fs::read_to_string(case.path("out/charts/review-notes.txt")).unwrap(), "keep");
    let assert = bin().arg("report").arg(case.path("out")).assert().code(2);
    assert!(stderr_of(&assert).contains("charts/review-notes.txt"), "{}", stderr_of(&assert));
    std::fs::remove_file(case.path("out/charts/review-notes.txt")).unwrap();
    bin().arg("report").arg(case.path("out")).assert().success();
    case.replayed(&scenario);
}

#[test]
fn an_unwritable_output_folder_is_named_before_scoring() {
    let case = Case::new();
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| s);
    // Not writable even by root.
    let out = Path::new("/sys/canary-replay-test/out");
    let assert = bin().arg("run").arg(&scenario).arg("--out").arg(out).arg("--cache-dir").arg(case.path("cache")).arg("-q").assert().code(2);
    let stderr = stderr_of(&assert);
    assert!(stderr.contains("--out /sys/canary-replay-test/out: cannot write into /sys/canary-replay-test") && stderr.contains("fix: pass a folder you can write to"), "{stderr}");
    assert!(!stderr.contains(".tmp-"), "no internal temporary is named: {stderr}");
    assert!(!case.path("cache").exists(), "nothing was scored");
}

#[test]
fn temporaries_of_interrupted_runs_are_swept_and_live_ones_kept() {
    let case = Case::new();
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| s);
    std::fs::create_dir_all(case.path("cache")).unwrap();
    // A pid above any Linux pid_max: that process is gone. The test's own pid is running.
    let stale_part = case.path("cache/.0123abcd.parquet.tmp-999999999-0");
    let stale_out = case.path(".out.tmp-999999999-4");
    let live_part = case.path(&format!("cache/.0123abcd.parquet.tmp-{}-0", std::process::id()));
    let users = case.path("cache/.my.tmp-file");
    std::fs::write(&stale_part, vec![0u8; 1024]).unwrap();
    std::fs::create_dir_all(stale_out.join("charts")).unwrap();
    std::fs::write(&live_part, "writing").unwrap();
    std::fs::write(&users, "mine").unwrap();
    case.replayed(&scenario);
    assert!(!stale_part.exists() && !stale_out.exists(), "stale temporaries are swept");
    assert!(live_part.exists() && users.exists(), "a running process's temporary and other files are kept");
}

/// A small xorshift generator: the sweep's positions are the same every run.
struct Seeded(u64);

impl Seeded {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn damaged_data_pages_end_in_exit_2_or_a_verdict_never_a_panic_or_a_cache_part() {
    let case = Case::new();
    // The sample uncompressed in row groups of 500, so byte flips reach the decoders themselves
    // (RLE, dictionary, plain) rather than a decompressor's checks.
    let clean = case.path("clean.parquet");
    let properties = WriterProperties::builder().set_max_row_group_row_count(Some(500)).build();
    let batch = read_parquet(&repo("data/flights/sample.parquet"));
    let mut writer = ArrowWriter::try_new(std::fs::File::create(&clean).unwrap(), batch.schema(), Some(properties)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let bytes = std::fs::read(&clean).unwrap();
    let metadata = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&clean).unwrap()).unwrap().metadata().clone();
    let chunks: Vec<(u64, u64)> = metadata
        .row_groups()
        .iter()
        .flat_map(|g| g.columns().iter())
        .map(|c| {
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset()).min(c.data_page_offset()) as u64;
            (start, c.compressed_size() as u64)
        })
        .collect();
    let mut rng = Seeded(0x9e37_79b9_7f4a_7c15);
    let positions: Vec<(usize, u8)> = (0..60)
        .map(|_| {
            let (start, len) = chunks[rng.below(chunks.len() as u64) as usize];
            ((start + rng.below(len)) as usize, 1u8 << rng.below(8))
        })
        .collect();
    let outcomes = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for worker in 0..2 {
            let (case, positions, bytes, outcomes) = (&case, &positions, &bytes, &outcomes);
            scope.spawn(move || {
                for (k, (at, bit)) in positions.iter().enumerate().filter(|(k, _)| k % 2 == worker) {
                    let name = format!("damaged-{k}.parquet");
                    let mut damaged = bytes.clone();
                    damaged[*at] ^= bit;
                    std::fs::write(case.path(&name), &damaged).unwrap();
                    let scenario = case.scenario_as(&format!("damaged-{k}.toml"), &case.path(&name), |s| s);
                    let (out, cache) = (case.path(&format!("out-{k}")), case.path(&format!("cache-{k}")));
                    let output = bin().arg("run").arg(&scenario).arg("--out").arg(&out).arg("--cache-dir").arg(&cache).arg("-q").output().unwrap();
                    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
                    let code = output.status.code();
                    assert!(matches!(code, Some(0..=3)), "byte {at} ^ {bit}: exit {code:?}\n{stderr}");
                    assert!(!stderr.contains("panicked"), "byte {at} ^ {bit}: {stderr}");
                    if code == Some(2) {
                        assert!(stderr.contains(&name), "byte {at} ^ {bit}: the file is not named\n{stderr}");
                        let parts = std::fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0);
                        assert_eq!(parts, 0, "byte {at} ^ {bit}: a cache part or temporary was left");
                        assert!(!out.exists(), "byte {at} ^ {bit}: an output folder was left");
                    }
                    outcomes.lock().unwrap().push((code, stderr.contains("row group")));
                }
            });
        }
    });
    let outcomes = outcomes.into_inner().unwrap();
    let invalid = outcomes.iter().filter(|(c, _)| *c == Some(2)).count();
    let located = outcomes.iter().filter(|(_, g)| *g).count();
    eprintln!("{} damaged logs: {invalid} invalid (exit 2, {located} naming the row group and column), {} replayed", outcomes.len(), outcomes.len() - invalid);
    assert!(invalid >= 10, "most flips should break decoding: {outcomes:?}");
}

// ---------------------------------------------------------------------------------------------
// Judge each model by what it outputs

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
    check_invalid(&scenario, &["has 1 column(s), so models.stable.class = 1 is out of range", "fix: a single column is the score itself: remove models.stable.class, or set it to 0"]);
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
    check_invalid(&scenario, &["zipmap_strings.onnx", "has no class \"early\"; its keys are \"late\", \"on_time\"", "fix: set models.stable.class"]);
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
    let stderr = check_invalid(&scenario, &["int_output.onnx: output \"class_id\"", "is int64 [N]; the score must be a float tensor", "it is the model's only output"]);
    assert!(!stderr.contains("several outputs"), "{stderr}");
    let custom = format!("path = \"{}\"", model("custom_domain.onnx"));
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| with_models(s, &custom, &demo));
    let stderr = check_invalid(&scenario, &["custom_domain.onnx", "uses the operator Score of the domain \"com.example.custom\", which ONNX Runtime"]);
    assert!(!stderr.contains("check the file is complete"), "{stderr}");
}

/// The sample with `label` replaced by `values` (one per row).
fn relabelled(case: &Case, name: &str, values: impl Fn(usize, Option<i8>) -> Option<f64>) -> PathBuf {
    rewrite_sample(case, name, |b| {
        let old = b.column_by_name("label").unwrap().as_primitive::<arrow::datatypes::Int8Type>().clone();
        let label: ArrayRef = Arc::new(arrow::array::Float64Array::from_iter((0..b.num_rows()).map(|i| values(i, old.is_valid(i).then(|| old.value(i))))));
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

// ---------------------------------------------------------------------------------------------
// Logs as they are written

/// `batch` sorted by `request_ts` (stable: ties keep their order).
fn by_time(batch: &RecordBatch) -> RecordBatch {
    let order = arrow::compute::sort_to_indices(batch.column_by_name("request_ts").unwrap(), None, None).unwrap();
    arrow::compute::take_record_batch(batch, &order).unwrap()
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

#[test]
fn files_that_overlap_in_time_are_merged_and_replay_as_one() {
    let case = Case::new();
    case.replayed(&case.scenario(&repo("data/flights/sample.parquet"), |s| s));
    let whole = decisions(&case.summary());
    // One file per "server": alternate rows, each file sorted, both spanning the whole log.
    let sample = read_parquet(&repo("data/flights/sample.parquet"));
    std::fs::create_dir_all(case.path("servers")).unwrap();
    write_parquet(&case.path("servers/a.parquet"), &rows_where(&sample, |i| i % 3 == 0));
    write_parquet(&case.path("servers/b.parquet"), &rows_where(&sample, |i| i % 3 != 0));
    case.replayed(&case.scenario(&case.path("servers"), |s| s));
    assert_eq!(case.summary()["rows_replayed"], 2000);
    assert_eq!(decisions(&case.summary()), whole);
}

#[test]
fn hive_partitioned_folders_are_read_recursively_with_their_keys_as_columns() {
    let case = Case::new();
    case.replayed(&case.scenario(&repo("data/flights/sample.parquet"), |s| s));
    let whole = decisions(&case.summary());
    let sample = read_parquet(&repo("data/flights/sample.parquet"));
    let origins = arrow::compute::cast(sample.column_by_name("origin").unwrap(), &arrow::datatypes::DataType::Utf8).unwrap();
    let origins = origins.as_string::<i32>().clone();
    for origin in ["EWR", "JFK", "LGA"] {
        let part = rows_where(&sample, |i| origins.value(i) == origin);
        let dir = case.path(&format!("logs/origin={origin}"));
        std::fs::create_dir_all(&dir).unwrap();
        write_parquet(&dir.join("part-00000.parquet"), &replace_column(part, "origin", None));
    }
    std::fs::write(case.path("logs/_SUCCESS"), "").unwrap();
    std::fs::write(case.path("logs/origin=JFK/.part-00000.parquet.crc"), "crc").unwrap();
    case.replayed(&case.scenario(&case.path("logs"), |s| s));
    assert_eq!(case.summary()["rows_replayed"], 2000);
    assert_eq!(decisions(&case.summary()), whole, "origin comes from the folders, and the three files are merged by time");
}

#[test]
fn duplicate_request_ids_are_refused_or_dropped_after_the_first() {
    let case = Case::new();
    case.replayed(&case.scenario(&repo("data/flights/sample.parquet"), |s| s));
    let whole = decisions(&case.summary());
    let sample = read_parquet(&repo("data/flights/sample.parquet"));
    let doubled = by_time(&arrow::compute::concat_batches(&sample.schema(), [&sample, &sample.slice(0, 100)]).unwrap());
    let traffic = case.path("doubled.parquet");
    write_parquet(&traffic, &doubled);
    let first = arrow::compute::cast(sample.column_by_name("request_id").unwrap(), &arrow::datatypes::DataType::Utf8).unwrap();
    let first = first.as_string::<i32>().value(0).to_string();
    let stderr = check_invalid(&case.scenario(&traffic, |s| s), &["column \"request_id\"", "100 request(s) repeat an id seen before; the first: ", "traffic.duplicates = \"keep_first\""]);
    assert!(stderr.contains(&format!("\"{first}\" at row 0 of doubled.parquet and again at row 1")), "{stderr}");
    let scenario = case.scenario(&traffic, |s| s.replace("segments = [", "duplicates = \"keep_first\"\nsegments = ["));
    let stderr = stderr_of(&case.replayed(&scenario));
    assert!(stderr.contains("note: 100 request(s) repeat an id seen before"), "{stderr}");
    assert_eq!(case.summary()["rows_replayed"], 2000);
    assert_eq!(decisions(&case.summary()), whole, "the first copies alone replay as the clean log");
}

#[test]
fn a_segment_column_with_many_values_is_bounded_by_its_most_frequent_values() {
    let case = Case::new();
    // A route per request: 2,000 values.
    let traffic = rewrite_sample(&case, "routes.parquet", |b| {
        let ids = arrow::compute::cast(b.column_by_name("request_id").unwrap(), &arrow::datatypes::DataType::Utf8).unwrap();
        let routes: ArrayRef = Arc::new(ids.as_string::<i32>().iter().map(|v| v.map(|v| format!("route-{}", &v[v.len() - 7..]))).collect::<StringArray>());
        let fields: Vec<Field> = b.schema().fields().iter().map(|f| f.as_ref().clone()).chain([Field::new("route", arrow::datatypes::DataType::Utf8, true)]).collect();
        let mut columns = b.columns().to_vec();
        columns.push(routes);
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    });
    let scenario = case.scenario(&traffic, |s| s.replace("segments = [\"origin\", \"carrier\"]", "segments = [\"origin\", \"route\"]\nmax_segment_values = 20"));
    let stderr = stderr_of(&case.replayed(&scenario));
    assert!(stderr.contains("note: segment column \"route\" has ") && stderr.contains("the 20 with the most requests are judged one by one"), "{stderr}");
    let summary = std::fs::read_to_string(case.path("out/summary.json")).unwrap();
    let parsed: Value = serde_json::from_str(&summary).unwrap();
    let routes = parsed["oracle"]["segments"]["route"].as_object().unwrap();
    assert!(!routes.is_empty() && routes.len() <= 21, "{} route values in the oracle", routes.len());
    assert!(routes.contains_key("(other)"), "the rest is one value");
    let scopes: std::collections::BTreeSet<&str> = parsed["simulation"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["gates"].as_array().unwrap())
        .filter_map(|g| g["scope"].as_str().filter(|s| s.starts_with("route=")))
        .collect();
    assert!(scopes.len() <= 21, "the checks judge at most the kept values and (other): {}", scopes.len());
    // Bounded by checks × gates × kept values: 934 routes judged one by one would be ~40× this.
    assert!(summary.len() < 2_000_000, "summary.json stays small: {} bytes", summary.len());
}

#[test]
fn the_entity_column_may_also_be_a_segment() {
    let case = Case::new();
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| s.replace("entity = \"entity_id\"", "entity = \"carrier\""));
    case.replayed(&scenario);
    let batch = read_parquet(&case.path("out/scores.parquet"));
    assert_eq!(batch.schema().fields().iter().filter(|f| f.name() == "carrier").count(), 1);
    bin().arg("report").arg(case.path("out")).assert().success();
}

#[test]
fn a_date_alone_as_the_end_keeps_that_whole_day() {
    let case = Case::new();
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| s.replace("segments = [", "end = \"2013-09-30\"\nsegments = ["));
    case.replayed(&scenario);
    let summary = case.summary();
    assert_eq!(summary["window"]["end"], "2013-09-30T23:59:59.999999Z");
    let last = summary["window"]["last_request"].as_str().unwrap();
    assert!(last.starts_with("2013-09-30T"), "the requests of September 30th are replayed: {last}");
}

#[test]
fn scores_parquet_keeps_the_logs_types() {
    let case = Case::new();
    let traffic = rewrite_sample(&case, "typed.parquet", |b| {
        let ids: ArrayRef = Arc::new(arrow::array::Int64Array::from_iter_values(0..b.num_rows() as i64));
        replace_column(b, "request_id", Some(ids))
    });
    case.replayed(&case.scenario(&traffic, |s| s));
    let batch = read_parquet(&case.path("out/scores.parquet"));
    let schema = batch.schema();
    assert_eq!(schema.field_with_name("request_id").unwrap().data_type(), &arrow::datatypes::DataType::Int64);
    assert_eq!(schema.field_with_name("label").unwrap().data_type(), &arrow::datatypes::DataType::Int8);
    let ids = batch.column_by_name("request_id").unwrap().as_primitive::<arrow::datatypes::Int64Type>();
    assert_eq!(ids.values().iter().copied().collect::<Vec<_>>(), (0..2000).collect::<Vec<i64>>());
}

#[test]
fn files_that_are_not_parquet_or_empty_are_named_for_what_they_are() {
    let case = Case::new();
    std::fs::write(case.path("log.parquet"), "request_id,request_ts,entity_id\n1,2013-09-01,N1\n").unwrap();
    let stderr = assert_invalid(&case, &case.scenario(&case.path("log.parquet"), |s| s), &["log.parquet: is not a Parquet file: it holds CSV text", "pl.read_csv"]);
    assert!(!stderr.contains("truncated"), "{stderr}");
    let empty = rewrite_sample(&case, "empty.parquet", |b| b.slice(0, 0));
    let stderr = assert_invalid(&case, &case.scenario(&empty, |s| s), &["empty.parquet: has no rows", "point traffic.path at the log"]);
    assert!(!stderr.contains("move the window"), "{stderr}");
}

#[test]
fn an_unsorted_file_is_refused_unless_sort_is_asked_for() {
    let case = Case::new();
    case.replayed(&case.scenario(&repo("data/flights/sample.parquet"), |s| s));
    let whole = decisions(&case.summary());
    let reversed = rewrite_sample(&case, "reversed.parquet", |b| {
        let indices = arrow::array::UInt32Array::from_iter_values((0..b.num_rows() as u32).rev());
        arrow::compute::take_record_batch(&b, &indices).unwrap()
    });
    check_invalid(&case.scenario(&reversed, |s| s), &["reversed.parquet", "is not sorted: row 1", "traffic.sort = true"]);
    let scenario = case.scenario(&reversed, |s| s.replace("segments = [", "sort = true\nsegments = ["));
    let stderr = stderr_of(&case.replayed(&scenario));
    assert!(stderr.contains("reversed.parquet is not sorted by time: read in 1 sorted run(s)"), "{stderr}");
    assert_eq!(case.summary()["rows_replayed"], 2000);
    assert_eq!(decisions(&case.summary()), whole);
}

#[test]
fn one_class_of_a_multiclass_model_is_judged_as_label_equals_class() {
    let case = Case::new();
    // Class ids 0, 1, 2: the sample's label plus one for long flights.
    let traffic = rewrite_sample(&case, "classes.parquet", |b| {
        let label = b.column_by_name("label").unwrap().as_primitive::<arrow::datatypes::Int8Type>().clone();
        let distance = arrow::compute::cast(b.column_by_name("distance").unwrap(), &arrow::datatypes::DataType::Int64).unwrap();
        let distance = distance.as_primitive::<arrow::datatypes::Int64Type>();
        let classes: ArrayRef = Arc::new(arrow::array::Int8Array::from_iter((0..b.num_rows()).map(|i| label.is_valid(i).then(|| label.value(i) + i8::from(distance.value(i) > 1000)))));
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

// ---------------------------------------------------------------------------------------------
// What run writes

#[test]
fn scores_parquet_is_bounded_by_a_deterministic_sample_or_left_out() {
    let case = Case::new();
    let sampled = case.scenario(&repo("data/flights/sample.parquet"), |s| s + "\n[output]\nmax_score_rows = 500\n");
    let stdout = String::from_utf8_lossy(&case.replayed(&sampled).get_output().stdout).into_owned();
    let summary = case.summary();
    let rows = summary["scores_file"]["rows"].as_u64().unwrap();
    assert_eq!(summary["scores_file"]["mode"], "sample");
    assert_eq!(summary["scores_file"]["fraction"], 0.25);
    assert!((400..=600).contains(&rows), "about 500 of 2000 requests: {rows}");
    assert!(stdout.contains(&format!("scores.parquet (a sample of {rows} requests)")), "{stdout}");
    let first = scores(&case.path("out/scores.parquet"), &["stable_score"]);
    assert_eq!(first.len() as u64, rows);
    let page = std::fs::read_to_string(case.path("out/report.html")).unwrap();
    assert!(page.contains(&format!("a deterministic sample of {rows} requests")), "the charts say what they are drawn from");
    // The same requests every time.
    case.replayed(&sampled);
    assert_eq!(scores(&case.path("out/scores.parquet"), &["stable_score"]).keys().collect::<std::collections::BTreeSet<_>>(), first.keys().collect());

    let none = case.scenario(&repo("data/flights/sample.parquet"), |s| s + "\n[output]\nscores = \"none\"\n");
    case.replayed(&none);
    assert!(!case.path("out/scores.parquet").exists());
    assert_eq!(case.summary()["scores_file"]["rows"], 0);
    bin().arg("report").arg(case.path("out")).assert().success();

    let all = case.scenario(&repo("data/flights/sample.parquet"), |s| s + "\n[output]\nscores = \"all\"\nmax_score_rows = 500\n");
    case.replayed(&all);
    assert_eq!(case.summary()["scores_file"]["rows"], 2000);
    let bad = case.scenario(&repo("data/flights/sample.parquet"), |s| s + "\n[output]\nscores = \"some\"\n");
    check_invalid(&bad, &["output.scores = \"some\"", "\"sample\" (the default), \"all\" or \"none\""]);
}

#[test]
fn partitioned_logs_written_by_duckdb_and_pyarrow_replay_as_the_log_they_hold() {
    let case = Case::new();
    case.replayed(&case.scenario(&repo("data/flights/sample.parquet"), |s| s));
    let whole = decisions(&case.summary());
    // duckdb: origin only in the folder names, the three origins overlapping in time (merged).
    // pyarrow: a month key no segment reads, the months one after the other.
    for writer in ["duckdb", "pyarrow"] {
        let folder = repo(&format!("tests/fixtures/inputs/partitioned/{writer}"));
        case.replayed(&case.scenario(&folder, |s| s));
        assert_eq!(case.summary()["rows_replayed"], 2000, "{writer}");
        assert_eq!(decisions(&case.summary()), whole, "{writer}");
    }
}

#[test]
fn new_scenario_keys_name_their_bad_values() {
    let case = Case::new();
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| {
        s.replace("segments = [\"origin\", \"carrier\"]", "segments = [\"origin\", \"origin\"]\nduplicates = \"drop\"\nmax_segment_values = 0")
            .replacen("class = 1", "class = 1\ntransform = \"tanh\"", 1)
            + "\n[[faults]]\nkind = \"score_shift\"\nshift = nan\n"
    });
    let stderr = check_invalid(&scenario, &[]);
    for needle in [
        "traffic.segments[1]: \"origin\" is listed twice",
        "traffic.duplicates = \"drop\": is not a way to handle duplicate ids",
        "\"keep_first\"",
        "traffic.max_segment_values = 0",
        "models.stable.transform = \"tanh\": is not a transform",
        "faults[0].shift = NaN: must be a finite number",
    ] {
        assert!(stderr.contains(needle), "stderr lacks {needle:?}:\n{stderr}");
    }
    // A gate on labels without a label column is named (by the scenario's own checks).
    let unlabelled = case.scenario(&repo("data/flights/sample.parquet"), |s| {
        s.replace("label = \"label\"\nlabel_time = \"label_ts\"\n", "") + "\n[[gates]]\nmetric = \"auc\"\nkind = \"non_inferiority\"\nmargin = 0.01\n"
    });
    check_invalid(&unlabelled, &["gates[0].metric = \"auc\": needs labels, but traffic.label is not set"]);
}

#[test]
fn class_and_transform_that_do_not_fit_the_output_are_named() {
    let case = Case::new();
    let demo = format!("path = \"{}\"", repo("data/flights/candidate.onnx").display());
    let named = format!("{demo}\nclass = \"late\"");
    check_invalid(&case.scenario(&repo("data/flights/sample.parquet"), |s| with_models(s, &named, &demo)), &[
        "output \"probabilities\": is a tensor, so models.stable.class = \"late\" (a ZipMap key) cannot pick a column",
        "fix: give the column number",
    ]);
    let softmax = format!("path = \"{}\"\ntransform = \"softmax\"", model("logits.onnx"));
    check_invalid(&case.scenario(&repo("data/flights/sample.parquet"), |s| with_models(s, &softmax, &demo)), &["has one column, so models.*.transform = \"softmax\"", "models.stable.transform = \"sigmoid\""]);
    let zipmap = format!("path = \"{}\"\nclass = \"late\"\ntransform = \"sigmoid\"", model("zipmap_strings.onnx"));
    check_invalid(&case.scenario(&repo("data/flights/sample.parquet"), |s| with_models(s, &zipmap, &demo)), &["is a ZipMap of probabilities: there is nothing to transform", "remove models.stable.transform"]);
    let int_keys = format!("path = \"{}\"\nclass = \"late\"", repo("tests/fixtures/models/zipmap.onnx").display());
    check_invalid(&case.scenario(&repo("data/flights/sample.parquet"), |s| with_models(s, &int_keys, &demo)), &["is a ZipMap keyed by int64 class ids, so models.stable.class = \"late\" matches no key"]);
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
    let scenario = case.scenario(&sundays, |s| with_models(s, &faulty, &demo).replace("label = \"label\"\nlabel_time = \"label_ts\"\n", ""));
    let stderr = assert_invalid(&case, &scenario, &["faulty.onnx: output \"score\": scores none of the log's first", "Gather", "fix: check the model runs"]);
    assert!(!stderr.contains("ROLLED BACK"), "{stderr}");
}
