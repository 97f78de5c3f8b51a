//! Peak memory and phase times of `canary-replay run` as the log grows: the demo scenario, its three
//! live controllers included, on the demo log replicated k times with distinct request and entity
//! ids at the same timestamps (so the checks, segments and routing bands are the demo's; only the
//! requests per key grow).
//!
//! Run with `cargo bench --bench scale` (scales 1, 10 and 100); `BENCH_SCALES=1,10,100,1000` adds
//! the 1,000× log (112M requests, a file of several GB and about 11 minutes of scoring on two
//! cores). The logs are written streaming, one source batch at a time, into a temporary folder
//! (`BENCH_DIR` to keep them elsewhere). Each run uses a fresh score cache; figures come from the
//! run's `timings.json` (peak RSS from the kernel's high-water mark).

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
    let scales: Vec<usize> = std::env::var("BENCH_SCALES")
        .unwrap_or_else(|_| "1,10,100".into())
        .split(',')
        .map(|s| s.trim().parse().expect("BENCH_SCALES: numbers"))
        .collect();
    let keep = std::env::var("BENCH_DIR").ok().map(PathBuf::from);
    let temp = tempfile::tempdir().unwrap();
    let dir = keep.unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir).unwrap();
    let demo = std::fs::read_to_string(root.join("scenarios/flights-2013.toml")).unwrap();
    println!("the demo scenario (default policy, Argo Rollouts, Flagger and Kayenta emulated) on the demo log replicated k times");
    println!(
        "{:>6} {:>12} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>10} {:>10}",
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
        "index MiB"
    );
    for k in scales {
        let log = dir.join(format!("traffic-{k}x.parquet"));
        if !log.is_file() {
            replicate(&root.join("data/flights/traffic.parquet"), &log, k);
        }
        let scenario = dir.join(format!("scale-{k}x.toml"));
        let text = demo
            .replace("\"../data/flights/traffic.parquet\"", &format!("{:?}", log.display().to_string()))
            .replace("\"../", &format!("\"{}/", root.display()))
            .replace("\"controllers/", &format!("\"{}/scenarios/controllers/", root.display()));
        std::fs::write(&scenario, text).unwrap();
        let out = dir.join(format!("out-{k}x"));
        let cache = dir.join(format!("cache-{k}x"));
        let _ = std::fs::remove_dir_all(&cache);
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
        assert!(matches!(status.code(), Some(0 | 1 | 3)), "run failed at {k}×: {status}");
        let t: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("timings.json")).unwrap()).unwrap();
        let f = |key: &str| t[key].as_f64().unwrap_or(f64::NAN);
        let index = &t["index"];
        println!(
            "{:>5}× {:>12} {:>10.1} {:>10.1} {:>8.1}s {:>8.1}s {:>8.1}s {:>8.1}s {:>8.1}s {:>8.1}s {:>8.1}s {:>6.0}% {:>10} {:>10.1}",
            k,
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
            index["request_keys"].as_u64().unwrap_or(0) + index["label_keys"].as_u64().unwrap_or(0),
            index["bytes"].as_f64().unwrap_or(f64::NAN) / (1024.0 * 1024.0)
        );
        println!("       simulation phases: {}", t["simulation_phases"]);
        let _ = std::fs::remove_dir_all(&cache);
    }
}

/// Writes the demo window of `source` with every request repeated `k` times at its own timestamp,
/// copy j with request and entity ids suffixed `#j`: sorted by time as the source is, one source
/// batch at a time.
fn replicate(source: &Path, target: &Path, k: usize) {
    let reader =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(source).unwrap()).unwrap().with_batch_size(8_192).build().unwrap();
    // Dictionary columns as plain strings, so batches of any size can be written.
    let fields: Vec<Field> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Dictionary(_, values) => f.as_ref().clone().with_data_type(values.as_ref().clone()),
            DataType::LargeUtf8 => f.as_ref().clone().with_data_type(DataType::Utf8),
            _ => f.as_ref().clone(),
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
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
