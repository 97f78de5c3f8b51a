//! Logs as they are written: partitioned folders, files that overlap in time or are not sorted,
//! duplicate requests, many segment values, the log's own types, and what `run` writes of them.

use super::*;

/// `batch` sorted by `request_ts` (stable: ties keep their order).
fn by_time(batch: &RecordBatch) -> RecordBatch {
    let order = arrow::compute::sort_to_indices(batch.column_by_name("request_ts").unwrap(), None, None).unwrap();
    arrow::compute::take_record_batch(batch, &order).unwrap()
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
    let stderr = check_invalid(
        &case.scenario(&traffic, |s| s),
        &["column \"request_id\"", "100 request(s) repeat an id seen before; the first: ", "traffic.duplicates = \"keep_first\""],
    );
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
        let routes: ArrayRef =
            Arc::new(ids.as_string::<i32>().iter().map(|v| v.map(|v| format!("route-{}", &v[v.len() - 7..]))).collect::<StringArray>());
        let fields: Vec<Field> = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .chain([Field::new("route", arrow::datatypes::DataType::Utf8, true)])
            .collect();
        let mut columns = b.columns().to_vec();
        columns.push(routes);
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    });
    let scenario = case.scenario(&traffic, |s| {
        s.replace("segments = [\"origin\", \"carrier\"]", "segments = [\"origin\", \"route\"]\nmax_segment_values = 20")
    });
    let stderr = stderr_of(&case.replayed(&scenario));
    assert!(
        stderr.contains("note: segment column \"route\" has ") && stderr.contains("the 20 with the most requests are judged one by one"),
        "{stderr}"
    );
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
    // The same requests every time: written while scoring, then from the cache's part.
    let written_while_scoring = read_parquet(&case.path("out/scores.parquet"));
    case.replayed(&sampled);
    assert_eq!(case.timings()["parts_reused"], 1);
    assert_eq!(read_parquet(&case.path("out/scores.parquet")), written_while_scoring);

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
    // [grading] cells (issue 18, item 9): a bad value is named with the two there are.
    let grading = case.scenario(&repo("data/flights/sample.parquet"), |s| s + "\n[grading]\ncells = \"holm\"\n");
    check_invalid(&grading, &["grading.cells = \"holm\"", "is not a way to grade", "\"family_wise\"", "\"per_cell\""]);
    let per_cell = case.scenario(&repo("data/flights/sample.parquet"), |s| s + "\n[grading]\ncells = \"per_cell\"\n");
    case.replayed(&per_cell);
    assert_eq!(case.summary()["simulation"]["grade"]["cells"], "per_cell");
    let default = case.scenario(&repo("data/flights/sample.parquet"), |s| s);
    case.replayed(&default);
    assert_eq!(case.summary()["simulation"]["grade"]["cells"], "family_wise", "family-wise unless the scenario says otherwise");
}

#[test]
fn new_scenario_keys_name_their_bad_values() {
    let case = Case::new();
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| {
        s.replace(
            "segments = [\"origin\", \"carrier\"]",
            "segments = [\"origin\", \"origin\"]\nduplicates = \"drop\"\nmax_segment_values = 0",
        )
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
        s.replace("label = \"label\"\nlabel_time = \"label_ts\"\n", "")
            + "\n[[gates]]\nmetric = \"auc\"\nkind = \"non_inferiority\"\nmargin = 0.01\n"
    });
    check_invalid(&unlabelled, &["gates[0].metric = \"auc\": needs labels, but traffic.label is not set"]);
}
