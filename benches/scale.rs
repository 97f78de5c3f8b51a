//! Peak memory and phase times of `canary-replay run` as the log grows: the demo scenario, its three
//! live controllers included, on the demo log replicated k times with distinct request and entity
//! ids at the same timestamps (so the checks, segments and routing bands are the demo's; only the
//! requests per key grow).
//!
//! Run with `cargo bench --bench scale` (scales 1, 10 and 100); `BENCH_SCALES=1,10,100,1000` adds
//! the 1,000× log (112M requests, a file of several GB and about 11 minutes of scoring on two
//! cores). The logs are written streaming, one source batch at a time, into a temporary folder
//! (`BENCH_DIR` to keep them elsewhere). Each run uses a fresh score cache (`cache-<k>`, marked as
//! the bench's: a folder of that name it did not make stops the bench); figures come from the
//! run's `timings.json` (peak RSS from the kernel's high-water mark).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, RecordBatchReader, StringArray, UInt32Array};
use arrow::compute::{cast, take_record_batch};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scales: Vec<String> =
        std::env::var("BENCH_SCALES").unwrap_or_else(|_| "1,10,100".into()).split(',').map(|s| s.trim().to_string()).collect();
    let keep = std::env::var("BENCH_DIR").ok().map(PathBuf::from);
    let temp = tempfile::tempdir().unwrap();
    let dir = keep.unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir).unwrap();
    let demo = std::fs::read_to_string(root.join("scenarios/flights-2013.toml")).unwrap();
    let source = root.join("data/flights/traffic.parquet");
    println!("the demo scenario (default policy, Argo Rollouts, Flagger and Kayenta emulated) on the demo log replicated k times");
    println!("(month: the README's worked example, a month of 5-minute checks × 100 cells × 5 bands, no controllers)");
    println!(
        "{:>6} {:>12} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>10} {:>10} {:>9}",
        "k",
        "requests",
        "peak MiB",
        "pre-sim",
        "prepare",
        "scoring",
        "after",
        "oracle",
        "simulate",
        "scores",
        "report",
        "after%",
        "keys",
        "index MiB",
        "B/key"
    );
    for scale in scales {
        let (log, text) = if scale == "month" {
            let log = dir.join("traffic-month.parquet");
            if !log.is_file() {
                month(&source, &log, MONTH_REQUESTS);
            }
            (log.clone(), month_scenario(root, &log))
        } else {
            let k: usize = scale.parse().expect("BENCH_SCALES: numbers, or month");
            let log = dir.join(format!("traffic-{k}x.parquet"));
            if !log.is_file() {
                replicate(&source, &log, k);
            }
            let text = demo
                .replace("\"../data/flights/traffic.parquet\"", &format!("{:?}", log.display().to_string()))
                .replace("\"../", &format!("\"{}/", root.display()))
                .replace("\"controllers/", &format!("\"{}/scenarios/controllers/", root.display()));
            (log, text)
        };
        let scenario = dir.join(format!("scale-{scale}.toml"));
        std::fs::write(&scenario, text).unwrap();
        let out = dir.join(format!("out-{scale}"));
        let cache = dir.join(format!("cache-{scale}"));
        fresh_cache(&cache);
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_canary-replay"))
            .args(["run", "-q", "--out"])
            .arg(&out)
            .arg("--cache-dir")
            .arg(&cache)
            .arg(&scenario)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(matches!(status.code(), Some(0 | 1 | 3)), "run failed at {scale} ({}): {status}", log.display());
        let t: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("timings.json")).unwrap()).unwrap();
        let f = |key: &str| t[key].as_f64().unwrap_or(f64::NAN);
        let index = &t["index"];
        let keys = index["request_keys"].as_u64().unwrap_or(0) + index["label_keys"].as_u64().unwrap_or(0);
        let bytes = index["bytes"].as_f64().unwrap_or(f64::NAN);
        println!(
            "{:>6} {:>12} {:>10.1} {:>10.1} {:>8.1}s {:>8.1}s {:>8.1}s {:>8.1}s {:>8.1}s {:>8.1}s {:>8.1}s {:>6.0}% {:>10} {:>10.1} {:>9.1}",
            if scale == "month" { scale.clone() } else { format!("{scale}×") },
            t["rows"].as_u64().unwrap_or(0),
            f("peak_rss_mib"),
            f("peak_rss_before_simulation_mib"),
            f("prepare_seconds"),
            f("scoring_seconds"),
            f("after_scoring_seconds"),
            f("oracle_seconds"),
            f("simulation_seconds"),
            f("scores_file_seconds"),
            f("report_seconds"),
            100.0 * f("after_scoring_seconds") / f("scoring_seconds"),
            keys,
            bytes / (1024.0 * 1024.0),
            bytes / keys as f64
        );
        println!("       simulation phases: {}", t["simulation_phases"]);
        let _ = std::fs::remove_dir_all(&cache);
    }
}

/// Marks a score cache this bench made: it empties one before each run and deletes it after, and
/// leaves alone a folder of that name that lacks the mark.
const BENCH_CACHE: &str = ".canary-replay-bench-cache";

/// An empty score cache at `cache`, marked as this bench's.
fn fresh_cache(cache: &Path) {
    if cache.exists() {
        assert!(
            cache.join(BENCH_CACHE).is_file(),
            "{} exists and this bench did not make it (it holds no {BENCH_CACHE}); the bench empties its cache \
             folders, so move that folder or set BENCH_DIR to another",
            cache.display()
        );
        std::fs::remove_dir_all(cache).unwrap();
    }
    std::fs::create_dir_all(cache).unwrap();
    std::fs::write(cache.join(BENCH_CACHE), "a score cache of `cargo bench --bench scale`, which deletes it\n").unwrap();
}

/// Requests in the worked example's month: about three per request key, so nearly every key of
/// the 8,640 checks × 100 cells × 5 bands holds some.
const MONTH_REQUESTS: usize = 13_000_000;

/// The worked example's scenario: the demo's models on a month of `log` in 5-minute checks, its
/// segments the 10 × 10 cells of `region` and `tier`, a ramp of 20% steps (five routing bands of
/// equal traffic), the default gates, no controllers and no scores file.
fn month_scenario(root: &Path, log: &Path) -> String {
    let model = |name: &str| root.join(format!("data/flights/{name}.onnx")).display().to_string();
    format!(
        r#"name = "month"
description = "The README's worked example: a month of 5-minute checks, 100 cells, 5 bands"

[traffic]
path = {log:?}
time = "request_ts"
entity = "entity_id"
id = "request_id"
label = "label"
label_time = "label_ts"
segments = ["region", "tier"]
start = "2013-09-01T00:00:00Z"
end = "2013-09-30T23:59:59Z"

[models.stable]
path = {stable:?}
output = "probabilities"
class = 1

[models.candidate]
path = {candidate:?}
output = "probabilities"
class = 1

[ramp]
stages = [{{ weight = 20, bake = "5d" }}, {{ weight = 40, bake = "5d" }}, {{ weight = 60, bake = "5d" }}, {{ weight = 80, bake = "5d" }}, {{ weight = 100 }}]
check_every = "5m"
max_stage_time = "10d"

[output]
scores = "none"
"#,
        log = log.display().to_string(),
        stable = model("stable"),
        candidate = model("candidate"),
    )
}

/// Writes the worked example's log: `requests` rows of the demo log's features (cycled through in
/// a scattered order) spread evenly over September 2013, each with its own request and entity id,
/// a `region` and a `tier` of ten values each, and its label 60 seconds after the request.
fn month(source: &Path, target: &Path, requests: usize) {
    let all = common::read_whole(source, plain);
    let schema = all.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("region", DataType::Utf8, false));
    fields.push(Field::new("tier", DataType::Utf8, false));
    let target_schema = Arc::new(Schema::new(fields));
    let properties = WriterProperties::builder().set_compression(Compression::SNAPPY).set_max_row_group_row_count(Some(1 << 20)).build();
    let mut writer = ArrowWriter::try_new(std::fs::File::create(target).unwrap(), target_schema.clone(), Some(properties)).unwrap();
    let (start, span) = (1_377_993_600_000_000i64, 30 * 86_400 * 1_000_000i64);
    let n = all.num_rows() as u64;
    let mix = |i: u64| {
        let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    for from in (0..requests).step_by(1 << 16) {
        let rows: Vec<u64> = (from as u64..(from + (1 << 16)).min(requests) as u64).collect();
        let indices = UInt32Array::from_iter_values(rows.iter().map(|i| (mix(*i) % n) as u32));
        let chunk = take_record_batch(&all, &indices).unwrap();
        let time: Vec<i64> = rows.iter().map(|i| start + (*i as i128 * span as i128 / requests as i128) as i64).collect();
        let stamp = |offset: i64| -> ArrayRef {
            Arc::new(
                arrow::array::TimestampMicrosecondArray::from(time.iter().map(|t| t + offset).collect::<Vec<_>>()).with_timezone("UTC"),
            )
        };
        let mut columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .zip(chunk.columns())
            .map(|(f, c)| match f.name().as_str() {
                "request_id" => Arc::new(rows.iter().map(|i| Some(format!("m{i}"))).collect::<StringArray>()) as ArrayRef,
                "entity_id" => Arc::new(rows.iter().map(|i| Some(format!("e{i}"))).collect::<StringArray>()) as ArrayRef,
                "request_ts" => stamp(0),
                "label_ts" => stamp(60_000_000),
                _ => Arc::clone(c),
            })
            .collect();
        let value = |i: u64, shift: u32, prefix: &str| format!("{prefix}{}", (mix(i) >> shift) % 10);
        columns.push(Arc::new(rows.iter().map(|i| Some(value(*i, 40, "r"))).collect::<StringArray>()));
        columns.push(Arc::new(rows.iter().map(|i| Some(value(*i, 50, "t"))).collect::<StringArray>()));
        writer.write(&RecordBatch::try_new(target_schema.clone(), columns).unwrap()).unwrap();
    }
    writer.close().unwrap();
}

/// A field of the demo log with dictionary columns as plain strings (so batches of any size can
/// be written) and large strings as strings.
fn plain(f: &Field) -> Field {
    match f.data_type() {
        DataType::Dictionary(_, values) => f.clone().with_data_type(values.as_ref().clone()),
        DataType::LargeUtf8 => f.clone().with_data_type(DataType::Utf8),
        _ => f.clone(),
    }
}

/// Writes the demo window of `source` with every request repeated `k` times at its own timestamp,
/// copy j with request and entity ids suffixed `#j`: sorted by time as the source is, one source
/// batch at a time.
fn replicate(source: &Path, target: &Path, k: usize) {
    let reader =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(source).unwrap()).unwrap().with_batch_size(8_192).build().unwrap();
    let schema = Arc::new(Schema::new(reader.schema().fields().iter().map(|f| plain(f)).collect::<Vec<_>>()));
    let properties = WriterProperties::builder().set_compression(Compression::SNAPPY).set_max_row_group_row_count(Some(1 << 20)).build();
    let mut writer = ArrowWriter::try_new(std::fs::File::create(target).unwrap(), schema.clone(), Some(properties)).unwrap();
    // Only the demo's window (September to December) is replicated: the rest would never be read.
    let september = arrow::array::TimestampMicrosecondArray::new_scalar(1_377_993_600_000_000);
    for batch in reader {
        let batch = batch.unwrap();
        let columns: Vec<ArrayRef> = batch.columns().iter().zip(schema.fields()).map(|(c, f)| cast(c, f.data_type()).unwrap()).collect();
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let time =
            cast(batch.column_by_name("request_ts").unwrap(), &DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None)).unwrap();
        let keep = arrow::compute::kernels::cmp::gt_eq(&time, &september).unwrap();
        let batch = arrow::compute::filter_record_batch(&batch, &keep).unwrap();
        // Each row k times in a row: the copies share the row's timestamp, so the order stays sorted.
        let repeated = UInt32Array::from_iter_values((0..batch.num_rows() as u32).flat_map(|i| std::iter::repeat_n(i, k)));
        for start in (0..repeated.len()).step_by(1 << 16) {
            let indices = repeated.slice(start, (1 << 16).min(repeated.len() - start));
            let chunk = take_record_batch(&batch, &indices).unwrap();
            let copy = |i: usize| (start + i) % k;
            let columns: Vec<ArrayRef> = schema
                .fields()
                .iter()
                .zip(chunk.columns())
                .map(|(f, c)| match f.name().as_str() {
                    "request_id" | "entity_id" => {
                        let ids = c.as_string::<i32>();
                        Arc::new(
                            (0..ids.len())
                                .map(|i| ids.is_valid(i).then(|| format!("{}#{}", ids.value(i), copy(i))))
                                .collect::<StringArray>(),
                        ) as ArrayRef
                    }
                    _ => Arc::clone(c),
                })
                .collect();
            writer.write(&RecordBatch::try_new(schema.clone(), columns).unwrap()).unwrap();
        }
    }
    writer.close().unwrap();
}
