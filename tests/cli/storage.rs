//! Traffic in object storage: a real S3-protocol server (s3s-fs, an S3 server over a folder,
//! installed from the crates registry by `.ci/run` or `scripts/install-test-tools`) on a loopback
//! port, started and stopped by the tests. Without the server these tests fail, they never skip.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use arrow::datatypes::TimestampMicrosecondType;
use tempfile::TempDir;

use super::*;

/// Access keys the server is started with.
const KEY: &str = "canary-replay-test";
const SECRET: &str = "canary-replay-test-secret";

/// The s3s-fs binary: `S3S_FS`, else the tool cache's test tools, else the PATH.
fn s3s_fs() -> PathBuf {
    if let Some(path) = std::env::var_os("S3S_FS") {
        return PathBuf::from(path);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let cached = home.join(".cache/canary-replay/tools/bin/s3s-fs");
    if cached.is_file() {
        return cached;
    }
    which("s3s-fs")
        .unwrap_or_else(|| panic!("s3s-fs is not installed: run scripts/install-test-tools (cargo install s3s-fs --features binary)"))
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.is_file())
}

/// A real S3-protocol server on a free loopback port, serving a temporary folder whose top-level
/// folders are buckets; stopped when dropped.
pub struct S3Server {
    child: Child,
    pub root: TempDir,
    pub endpoint: String,
}

impl S3Server {
    pub fn start() -> Self {
        let root = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Process::new(s3s_fs())
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", KEY, "--secret-key", SECRET])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not listen on port {port} within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, root, endpoint: format!("http://127.0.0.1:{port}") }
    }

    /// A bucket (a folder of the server's root).
    pub fn bucket(&self, name: &str) -> PathBuf {
        let dir = self.root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The environment a client needs to reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The binary with no cloud credentials from the caller's environment.
fn bin_clean() -> assert_cmd::Command {
    let mut cmd = bin();
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// The demo log written as Hive partitions by ISO week (`week=2013-W36/part-0.parquet`, about 18
/// files), as a stream sink or Spark would lay it out, with the `_SUCCESS` marker Spark leaves.
pub fn write_hive_weeks(traffic: &Path, into: &Path) -> usize {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(traffic).unwrap()).unwrap().build().unwrap();
    let mut writers: std::collections::BTreeMap<String, ArrowWriter<std::fs::File>> = std::collections::BTreeMap::new();
    for batch in reader {
        let batch = batch.unwrap();
        let times = batch.column_by_name("request_ts").unwrap().as_primitive::<TimestampMicrosecondType>();
        let weeks: Vec<String> = (0..batch.num_rows())
            .map(|i| {
                let w = chrono::Datelike::iso_week(&chrono::DateTime::from_timestamp_micros(times.value(i)).unwrap());
                format!("{}-W{:02}", w.year(), w.week())
            })
            .collect();
        let distinct: std::collections::BTreeSet<&String> = weeks.iter().collect();
        for week in distinct {
            let rows = rows_where(&batch, |i| weeks[i] == *week);
            let writer = writers.entry(week.clone()).or_insert_with(|| {
                let dir = into.join(format!("week={week}"));
                std::fs::create_dir_all(&dir).unwrap();
                ArrowWriter::try_new(std::fs::File::create(dir.join("part-0.parquet")).unwrap(), batch.schema(), None).unwrap()
            });
            writer.write(&rows).unwrap();
        }
    }
    let files = writers.len();
    for (_, writer) in writers {
        writer.close().unwrap();
    }
    std::fs::write(into.join("_SUCCESS"), "").unwrap();
    files
}

#[test]
fn the_demo_log_in_s3_as_hive_partitions_replays_as_the_local_copy_does() {
    let server = S3Server::start();
    let case = Case::new();
    let local = case.path("flights");
    let weeks = write_hive_weeks(&repo("data/flights/traffic.parquet"), &local);
    assert!(weeks > 10, "{weeks} partitions");
    // The same files in a bucket.
    let bucket = server.bucket("logs");
    copy_tree(&local, &bucket.join("flights"));
    let demo = std::fs::read_to_string(repo("scenarios/flights-2013.toml")).unwrap();
    let scenario_for = |path: &str| {
        demo.replace("path = \"../data/flights/traffic.parquet\"", &format!("path = \"{path}\""))
            .replace("../data/flights/", &format!("{}/", repo("data/flights").display()))
            .replace("\"controllers/", &format!("\"{}/", repo("scenarios/controllers").display()))
    };
    let local_scenario = case.path("local.toml");
    std::fs::write(&local_scenario, scenario_for(&local.display().to_string())).unwrap();
    let s3_scenario = case.path("s3.toml");
    std::fs::write(&s3_scenario, scenario_for("s3://logs/flights/")).unwrap();

    let run = |scenario: &Path, out: &str, env: &[(&str, String)]| {
        let mut cmd = bin_clean();
        cmd.arg("run").arg(scenario).arg("--out").arg(case.path(out)).arg("--cache-dir").arg(case.path(&format!("cache-{out}"))).arg("-q");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let assert = cmd.assert();
        let code = assert.get_output().status.code();
        assert!(matches!(code, Some(0 | 1 | 3)), "exit {code:?}:\n{}", String::from_utf8_lossy(&assert.get_output().stderr));
        serde_json::from_str::<Value>(&std::fs::read_to_string(case.path(out).join("summary.json")).unwrap()).unwrap()
    };
    let from_disk = run(&local_scenario, "local", &[]);
    let from_s3 = run(&s3_scenario, "s3", &server.env());
    assert_eq!(decisions(&from_s3), decisions(&from_disk));
    assert_eq!(from_s3["inputs"].as_array().map(Vec::len), Some(weeks));
    assert!(from_s3["inputs"][0]["file"].as_str().unwrap().starts_with("s3://logs/flights/week=2013-W"), "{}", from_s3["inputs"][0]);
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn unreachable_endpoints_missing_buckets_and_missing_credentials_are_named_within_a_minute() {
    let server = S3Server::start();
    server.bucket("logs");
    let case = Case::new();
    let scenario = |name: &str, url: &str| case.scenario_as(name, Path::new(url), |s| s);
    let check = |scenario: &Path, env: Vec<(&'static str, String)>, needles: &[&str]| {
        let started = Instant::now();
        let mut cmd = bin_clean();
        cmd.arg("check").arg(scenario);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let assert = cmd.assert().code(2);
        let stderr = stderr_of(&assert);
        eprintln!("DEBUG {stderr}");
        for needle in needles {
            assert!(stderr.contains(needle), "{needle:?} not in:\n{stderr}");
        }
        assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
    };
    // Nothing listens on the port.
    let mut nowhere = server.env();
    nowhere[0].1 = format!("http://127.0.0.1:{}", free_port());
    check(&scenario("a.toml", "s3://logs/flights/"), nowhere, &["s3://logs/flights", "cannot be reached", "AWS_ENDPOINT_URL"]);
    // A bucket that does not exist.
    check(&scenario("b.toml", "s3://no-such-bucket/flights/"), server.env(), &["s3://no-such-bucket/flights", "the bucket does not exist"]);
    // No credentials at all, then wrong ones.
    let anonymous: Vec<_> = server.env().into_iter().filter(|(k, _)| !k.contains("KEY")).collect();
    check(&scenario("c.toml", "s3://logs/flights/"), anonymous, &["s3://logs/flights", "AWS_ACCESS_KEY_ID is not set"]);
    let mut wrong = server.env();
    wrong[3].1 = "not-the-secret".into();
    check(&scenario("d.toml", "s3://logs/flights/"), wrong, &["s3://logs/flights", "refused the credentials", "AWS_SECRET_ACCESS_KEY"]);
    // A prefix with no Parquet objects.
    check(&scenario("e.toml", "s3://logs/empty/"), server.env(), &["names no Parquet objects"]);
    // A glob is listed from its fixed prefix and matched key by key.
    let weeks = write_hive_weeks(&repo("data/flights/traffic.parquet"), &server.bucket("logs").join("flights"));
    let glob = case.scenario_as("f.toml", Path::new("s3://logs/flights/week=2013-W4*/*.parquet"), |s| s);
    let mut cmd = bin_clean();
    cmd.arg("check").arg(&glob);
    for (k, v) in server.env() {
        cmd.env(k, v);
    }
    let out = cmd.assert().success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(stdout.contains(": OK: 10 file(s)") && weeks > 10, "{stdout}");
}

/// The demo scenario over `traffic` with latency left unmeasured: latencies are measured anew
/// whenever a part is scored, so only without them can two runs that scored apart be the same bytes.
pub fn demo_scenario_over(case: &Case, name: &str, traffic: &str) -> PathBuf {
    let demo = std::fs::read_to_string(repo("scenarios/flights-2013.toml")).unwrap();
    assert!(!demo.contains("[scoring]"));
    let text = demo
        .replace("path = \"../data/flights/traffic.parquet\"", &format!("path = \"{traffic}\""))
        .replace("../data/flights/", &format!("{}/", repo("data/flights").display()))
        .replace("\"controllers/", &format!("\"{}/", repo("scenarios/controllers").display()));
    let path = case.path(name);
    std::fs::write(&path, format!("{text}\n[scoring]\nlatency_sample = 0.0\n")).unwrap();
    path
}

/// The local mirrors of shared caches the tests' runs made in the tool's cache (named in their
/// reports: "URL (mirrored in FOLDER)"), removed when dropped.
#[derive(Default)]
pub struct Mirrors(std::cell::RefCell<std::collections::BTreeSet<PathBuf>>);

impl Mirrors {
    pub fn note(&self, described: &str) {
        if let Some((_, folder)) = described.split_once(" (mirrored in ") {
            self.0.borrow_mut().insert(PathBuf::from(folder.trim_end_matches(')')));
        }
    }
}

impl Drop for Mirrors {
    fn drop(&mut self) {
        for folder in self.0.borrow().iter().filter(|f| f.components().any(|c| c.as_os_str() == "shared")) {
            let _ = std::fs::remove_dir_all(folder);
        }
    }
}

#[test]
fn eight_shards_scored_into_an_s3_cache_give_the_unsharded_runs_summary_bytes() {
    let mirrors = Mirrors::default();
    let server = S3Server::start();
    let case = Case::new();
    write_hive_weeks(&repo("data/flights/traffic.parquet"), &server.bucket("logs").join("flights"));
    server.bucket("cache");
    let scenario = demo_scenario_over(&case, "demo.toml", "s3://logs/flights/");
    let env = server.env();
    let cmd = |args: &[&str]| {
        let mut cmd = bin_clean();
        cmd.args(args);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        cmd
    };
    let path = |p: PathBuf| p.display().to_string();
    let decided = |assert: assert_cmd::assert::Assert| {
        let code = assert.get_output().status.code();
        assert!(matches!(code, Some(0 | 1 | 3)), "exit {code:?}:\n{}", String::from_utf8_lossy(&assert.get_output().stderr));
    };
    // Unsharded, with a cache of its own.
    decided(
        cmd(&[
            "run",
            &path(scenario.clone()),
            "--out",
            &path(case.path("unsharded")),
            "--cache-dir",
            &path(case.path("local-cache")),
            "-q",
        ])
        .assert(),
    );

    let plan = path(case.path("plan.json"));
    cmd(&["shard", "plan", &path(scenario.clone()), "--shards", "8", "--cache-dir", "s3://cache/scores", "--out", &plan])
        .assert()
        .success();
    let planned: Value = serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    let shards = planned["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 8);
    assert!(shards.iter().all(|s| !s["parts"].as_array().unwrap().is_empty()), "every shard has work: {planned}");
    for (k, shard) in shards.iter().enumerate() {
        let out = cmd(&["shard", "run", &plan, "--index", &k.to_string(), "-q"]).assert().success();
        let report: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
        mirrors.note(report["cache"].as_str().unwrap());
        assert_eq!(report["parts_scored"], shard["parts"].as_array().unwrap().len());
    }
    // Run again, a shard scores nothing: its parts are there.
    let again = cmd(&["shard", "run", &plan, "--index", "3", "-q"]).assert().success();
    let report: Value = serde_json::from_slice(&again.get_output().stdout).unwrap();
    assert_eq!(
        (report["parts_scored"].as_u64(), report["parts_reused"].as_u64()),
        (Some(0), Some(shards[3]["parts"].as_array().unwrap().len() as u64))
    );
    let objects = std::fs::read_dir(server.root.path().join("cache/scores")).unwrap().count();
    assert_eq!(objects, planned["shards"].as_array().unwrap().iter().map(|s| s["parts"].as_array().unwrap().len()).sum::<usize>());

    // The run merges the shards' parts (downloaded from the bucket) and scores nothing.
    decided(
        cmd(&["run", &path(scenario.clone()), "--out", &path(case.path("sharded")), "--cache-dir", "s3://cache/scores", "-q"]).assert(),
    );
    let timings: Value = serde_json::from_str(&std::fs::read_to_string(case.path("sharded/timings.json")).unwrap()).unwrap();
    mirrors.note(timings["cache_dir"].as_str().unwrap());
    assert_eq!(timings["parts_scored"], 0, "{timings}");
    let (a, b) = (std::fs::read(case.path("unsharded/summary.json")).unwrap(), std::fs::read(case.path("sharded/summary.json")).unwrap());
    assert!(a == b, "summary.json differs:\n{}\n---\n{}", String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
}

#[test]
fn a_plan_is_never_written_over_a_file_that_is_not_a_plan() {
    let case = Case::new();
    let scenario = case.scenario(&repo("data/flights/sample.parquet"), |s| s);
    let precious = case.path("notes.json");
    std::fs::write(&precious, "{\"mine\": true}").unwrap();
    let assert = bin().args(["shard", "plan"]).arg(&scenario).args(["--shards", "2", "--out"]).arg(&precious).assert().code(2);
    let stderr = stderr_of(&assert);
    assert!(stderr.contains("notes.json") && stderr.contains("is not a shard plan"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "{\"mine\": true}");
    // A plan is replaced by a new one.
    let plan = case.path("plan.json");
    bin()
        .args(["shard", "plan"])
        .arg(&scenario)
        .args(["--shards", "2", "--cache-dir"])
        .arg(case.path("cache"))
        .arg("--out")
        .arg(&plan)
        .assert()
        .success();
    bin()
        .args(["shard", "plan"])
        .arg(&scenario)
        .args(["--shards", "1", "--cache-dir"])
        .arg(case.path("cache"))
        .arg("--out")
        .arg(&plan)
        .assert()
        .success();
    let planned: Value = serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    assert_eq!(planned["shards"].as_array().map(Vec::len), Some(1));
    // No shards, an index past the plan's shards, a file that is not a plan: each named.
    let assert = bin().args(["shard", "plan"]).arg(&scenario).args(["--shards", "0", "--out"]).arg(&plan).assert().code(2);
    assert!(stderr_of(&assert).contains("--shards"), "{}", stderr_of(&assert));
    let assert = bin().args(["shard", "run"]).arg(&plan).args(["--index", "3"]).assert().code(2);
    assert!(stderr_of(&assert).contains("--index"), "{}", stderr_of(&assert));
    let assert = bin().args(["shard", "run"]).arg(&precious).args(["--index", "0"]).assert().code(2);
    assert!(stderr_of(&assert).contains("not a shard plan"), "{}", stderr_of(&assert));
}
