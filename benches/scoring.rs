//! Scoring throughput against raw ONNX Runtime, and peak memory at 1× and 10× the demo log.
//!
//! Run with `cargo bench --bench scoring` (after the demo data exists; ONNX Runtime is found or
//! fetched as by the CLI). Everything is measured side by side in one process on the same rows:
//!
//! - raw: both models' input matrices are built in memory first (untimed); the timed part is only
//!   `Session::run` over batches of the scenario's batch size, with the same thread layouts the
//!   tool could use (workers × intra-op threads), the best layout taken as the baseline;
//! - canary-replay: the full scoring pass (Parquet read and decode, type conversion, both models,
//!   failure isolation, writing the cache part), with latency sampling off and at the default.
//!
//! Each configuration runs `BENCH_REPEATS` times (default 5), interleaved, and the median counts.
//! Peak memory runs the release binary (scoring, oracle and the default policy's simulation) on the
//! demo log without a window (336,776 rows) and on a copy ten times as dense over the same year,
//! reading `peak_rss_mib` from `timings.json`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use canary_replay::ingest::{Batches, TrafficBatch};
use canary_replay::run::{prepare, Prepared};
use canary_replay::runtime::RuntimeOptions;
use canary_replay::score::{self, cache::CacheDir, model::Model};
use ort::session::Session;
use ort::value::TensorRef;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scenario = std::env::var("BENCH_SCENARIO").map(PathBuf::from).unwrap_or_else(|_| root.join("scenarios/flights-2013.toml"));
    let repeats: usize = std::env::var("BENCH_REPEATS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let prepared = prepare(&scenario, &RuntimeOptions::from_env()).unwrap_or_else(|e| panic!("{e}"));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rows = prepared.survey.rows_in_window;
    println!(
        "scenario {} · {rows} rows · {cores} cores · ONNX Runtime {} · batch {} rows",
        scenario.display(),
        prepared.runtime.version,
        prepared.scenario.scoring.batch_rows
    );

    let inputs = materialize(&prepared);
    let layouts: Vec<(usize, usize)> = {
        let mut l = vec![(cores, 1), (1, cores)];
        l.dedup();
        l
    };
    let mut raw: Vec<Vec<f64>> = vec![Vec::new(); layouts.len()];
    let mut ours_no_latency = Vec::new();
    let mut ours_default = Vec::new();
    let mut ours_with_setup = Vec::new();
    for _ in 0..repeats {
        for (i, (workers, intra)) in layouts.iter().enumerate() {
            raw[i].push(raw_inference(&prepared, &inputs, *workers, *intra));
        }
        let (streaming, _) = pipeline(&prepared, 0.0);
        ours_no_latency.push(streaming);
        let (streaming, total) = pipeline(&prepared, prepared.scenario.scoring.latency_sample);
        ours_default.push(streaming);
        ours_with_setup.push(total);
    }
    let per_second = |seconds: f64| rows as f64 / seconds;
    let mut best_raw = f64::INFINITY;
    println!("\n{:<58} {:>9} {:>12} {:>8}", "configuration (median of runs)", "seconds", "rows/s", "vs raw");
    let medians: Vec<f64> = raw.iter().map(|r| median(r)).collect();
    for m in &medians {
        best_raw = best_raw.min(*m);
    }
    for ((workers, intra), m) in layouts.iter().zip(&medians) {
        println!(
            "{:<58} {:>9.3} {:>12.0} {:>8.3}",
            format!("raw ONNX Runtime, {workers} worker(s) × {intra} intra-op thread(s)"),
            m,
            per_second(*m),
            best_raw / m
        );
    }
    let share = prepared.scenario.scoring.latency_sample;
    for (label, runs) in [
        ("canary-replay scoring stream, latency sampling off".to_string(), &ours_no_latency),
        (format!("canary-replay scoring stream, latency sample {share}"), &ours_default),
        (format!("  … plus setup (hash inputs, load {} sessions)", 2 * cores), &ours_with_setup),
    ] {
        let m = median(runs);
        println!("{label:<58} {m:>9.3} {:>12.0} {:>8.3}", per_second(m), best_raw / m);
    }

    if std::env::var_os("BENCH_SKIP_MEMORY").is_none() {
        memory(root);
    }
}

/// Each model's row-major input matrices, one per batch, built untimed.
struct Inputs {
    batches: Vec<[Vec<f32>; 2]>,
    rows: Vec<usize>,
}

fn materialize(prepared: &Prepared) -> Inputs {
    let scenario = &prepared.scenario;
    let mut out = Inputs { batches: Vec::new(), rows: Vec::new() };
    for batch in Batches::new(&prepared.files, &scenario.traffic, &prepared.layout, &prepared.survey.rules, scenario.scoring.batch_rows) {
        let batch = batch.unwrap();
        let matrices = prepared.models().map(|m| matrix(m, prepared, &batch));
        out.rows.push(batch.len());
        out.batches.push(matrices);
    }
    out
}

fn matrix(model: &Model, prepared: &Prepared, batch: &TrafficBatch) -> Vec<f32> {
    let columns: Vec<&[f64]> =
        model.features.iter().map(|f| batch.features[prepared.layout.features.iter().position(|l| l == f).unwrap()].as_slice()).collect();
    let mut out = Vec::with_capacity(batch.len() * columns.len());
    for r in 0..batch.len() {
        out.extend(columns.iter().map(|c| c[r] as f32));
    }
    out
}

/// Only `Session::run` of both models over prepared inputs, split across `workers` threads.
fn raw_inference(prepared: &Prepared, inputs: &Inputs, workers: usize, intra: usize) -> f64 {
    let models = prepared.models();
    let mut sessions: Vec<[Session; 2]> = (0..workers).map(|_| models.map(|m| m.session(prepared.runtime, intra).unwrap())).collect();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for (w, pair) in sessions.iter_mut().enumerate() {
            scope.spawn(move || {
                let mut i = w;
                while i < inputs.batches.len() {
                    let n = inputs.rows[i];
                    for (m, session) in pair.iter_mut().enumerate() {
                        let data = &inputs.batches[i][m];
                        let tensor = TensorRef::from_array_view(([n, data.len() / n], data.as_slice())).unwrap();
                        let outputs = session.run(ort::inputs![models[m].input_name().expect("one input matrix") => tensor]).unwrap();
                        let (_, scores) = outputs[models[m].output.as_str()].try_extract_tensor::<f32>().unwrap();
                        std::hint::black_box(scores);
                    }
                    i += workers;
                }
            });
        }
    });
    started.elapsed().as_secs_f64()
}

/// The tool's scoring pass into an empty cache: (streaming seconds, seconds with setup).
fn pipeline(prepared: &Prepared, latency_sample: f64) -> (f64, f64) {
    let cache = tempfile::tempdir().unwrap();
    let mut scenario = prepared.scenario.clone();
    scenario.scoring.latency_sample = latency_sample;
    let settings = score::Settings::new(&scenario, CacheDir::local(cache.path()), false, true);
    let scored =
        score::score(prepared.runtime, &scenario, &prepared.files, &prepared.survey, &prepared.layout, prepared.models(), &settings, None)
            .unwrap();
    (scored.streaming_seconds, scored.seconds)
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Peak RSS of `canary-replay run` on the demo log and on a 10× copy of it.
fn memory(root: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let source = root.join("data/flights/traffic.parquet");
    let ten = dir.path().join("traffic-10x.parquet");
    write_ten_times_denser(&source, &ten);
    println!("\npeak memory of `canary-replay run` (fresh score cache each time):");
    for (label, traffic) in [("1× demo log (336,776 rows)", source.clone()), ("10× demo log (3,367,760 rows)", ten.clone())] {
        let scenario = dir.path().join("memory.toml");
        std::fs::write(
            &scenario,
            format!(
                "name = \"memory\"\n[traffic]\npath = \"{}\"\ntime = \"request_ts\"\nentity = \"entity_id\"\nid = \"request_id\"\nlabel = \"label\"\nlabel_time = \"label_ts\"\nsegments = [\"origin\", \"carrier\"]\n[models.stable]\npath = \"{}\"\n[models.candidate]\npath = \"{}\"\n",
                traffic.display(),
                root.join("data/flights/stable.onnx").display(),
                root.join("data/flights/candidate.onnx").display()
            ),
        )
        .unwrap();
        let out = dir.path().join("out");
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_canary-replay"))
            .arg("run")
            .arg(&scenario)
            .arg("--out")
            .arg(&out)
            .arg("--cache-dir")
            .arg(dir.path().join(format!("cache-{}", label.len())))
            .arg("-q")
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(matches!(status.code(), Some(0 | 1 | 3)), "run failed: {status}");
        let timings: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("timings.json")).unwrap()).unwrap();
        println!(
            "  {label:<32} peak RSS {:>6.1} MiB ({:>6.1} MiB before the simulation) · {:>5.1} s in all · {:>7.0} rows/s scored · simulation {:.2} s",
            timings["peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
            timings["peak_rss_before_simulation_mib"].as_f64().unwrap_or(f64::NAN),
            timings["total_seconds"].as_f64().unwrap(),
            timings["rows_scored_per_second"].as_f64().unwrap_or(f64::NAN),
            timings["simulation_seconds"].as_f64().unwrap_or(f64::NAN)
        );
    }
}

/// The log ten times as dense over the same year: ten copies of every request, the k-th 6·k seconds
/// later with its own request and entity ids, sorted by time (so a run has as many checks as on the
/// demo log, each with ten times the requests).
fn write_ten_times_denser(source: &Path, target: &Path) {
    use arrow::array::{Array, ArrayRef, AsArray, Int64Array, LargeStringArray, RecordBatch};
    use arrow::compute::kernels::numeric::add;
    use arrow::compute::{cast, concat_batches, sort_to_indices, take_record_batch};
    use arrow::datatypes::DataType;
    use parquet::arrow::ArrowWriter;

    let log = common::read_whole(source, |f| match f.data_type() {
        DataType::Dictionary(_, values) => f.clone().with_data_type(values.as_ref().clone()),
        _ => f.clone(),
    });
    let schema = log.schema();
    let copies: Vec<RecordBatch> = (0..10i64)
        .map(|k| {
            let columns: Vec<ArrayRef> = schema
                .fields()
                .iter()
                .zip(log.columns())
                .map(|(f, c)| match f.name().as_str() {
                    "request_ts" | "label_ts" => {
                        let shifted = add(&cast(c, &DataType::Int64).unwrap(), &Int64Array::new_scalar(k * 6_000_000)).unwrap();
                        cast(&shifted, f.data_type()).unwrap()
                    }
                    "request_id" | "entity_id" => {
                        let ids = c.as_string::<i64>();
                        Arc::new(ids.iter().map(|id| id.map(|id| format!("{id}#{k}"))).collect::<LargeStringArray>()) as ArrayRef
                    }
                    _ => Arc::clone(c),
                })
                .collect();
            RecordBatch::try_new(schema.clone(), columns).unwrap()
        })
        .collect();
    let all = concat_batches(&schema, &copies).unwrap();
    let order = sort_to_indices(all.column_by_name("request_ts").unwrap(), None, None).unwrap();
    let sorted = take_record_batch(&all, &order).unwrap();
    assert_eq!(sorted.num_rows(), 10 * log.num_rows());
    assert_eq!(sorted.column_by_name("request_id").unwrap().null_count(), 0);
    let mut writer = ArrowWriter::try_new(std::fs::File::create(target).unwrap(), schema, None).unwrap();
    for start in (0..sorted.num_rows()).step_by(65_536) {
        writer.write(&sorted.slice(start, 65_536.min(sorted.num_rows() - start))).unwrap();
    }
    writer.close().unwrap();
}
