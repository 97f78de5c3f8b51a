//! The Ray path for real: the wheel built with maturin and installed in the test tools' virtual
//! environment, a two-node Ray cluster on loopback (`ray start --head` and a second `ray start
//! --address`, one CPU each) and the S3-protocol server, all started and stopped here.

use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::storage::{demo_scenario_over, write_hive_weeks, Mirrors, S3Server};
use super::*;

/// The test tools' folder (s3s-fs, and a virtual environment with Ray and maturin), installed once
/// by `scripts/install-test-tools`.
pub fn tools() -> PathBuf {
    static INSTALLED: OnceLock<PathBuf> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let status = Process::new(repo("scripts/install-test-tools")).status().expect("scripts/install-test-tools runs");
            assert!(status.success(), "scripts/install-test-tools failed");
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
            std::env::var_os("CANARY_REPLAY_TOOLS").map(PathBuf::from).unwrap_or_else(|| home.join(".cache/canary-replay/tools"))
        })
        .clone()
}

/// The virtual environment's Python, with this build's wheel installed in it.
fn python_with_wheel() -> PathBuf {
    static WHEEL: OnceLock<PathBuf> = OnceLock::new();
    WHEEL
        .get_or_init(|| {
            // Every test runs its copy of the binary from here on (see `bin`).
            drop(bin());
            let venv = tools().join("venv");
            // The same target folder and profile as this test's build: maturin finds the release
            // binary built and only packs it.
            let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().to_path_buf();
            let wheels = target.join("wheels");
            let _ = std::fs::remove_dir_all(&wheels);
            // Without the variables cargo gives this test (a build script that watches one,
            // CARGO_MANIFEST_DIR for ring, would rebuild half the dependencies).
            let mut maturin = Process::new(venv.join("bin/maturin"));
            for (key, _) in std::env::vars_os() {
                let name = key.to_string_lossy();
                if (name.starts_with("CARGO") && name != "CARGO_HOME") || name == "OUT_DIR" {
                    maturin.env_remove(key);
                }
            }
            let built = maturin
                .args(["build", "--release", "--quiet", "--out"])
                .arg(&wheels)
                .current_dir(repo(""))
                .env("CARGO_TARGET_DIR", &target)
                .status()
                .expect("maturin runs");
            assert!(built.success(), "maturin build failed");
            let wheel = std::fs::read_dir(&wheels)
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.extension().is_some_and(|x| x == "whl"))
                .expect("a wheel");
            let installed = Process::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check", "--no-deps", "--force-reinstall"])
                .arg(&wheel)
                .status()
                .unwrap();
            assert!(installed.success(), "pip install {} failed", wheel.display());
            venv.join("bin/python")
        })
        .clone()
}

/// A Ray cluster on loopback: a head and one more node, one CPU each, small object stores; each
/// `ray start --block` in a session of its own, so stopping it stops everything it started.
struct RayCluster {
    nodes: Vec<Child>,
    address: String,
    python: PathBuf,
}

impl RayCluster {
    fn start(python: &Path, env: &[(&'static str, String)]) -> Self {
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let node = |extra: &[&str]| {
            let mut cmd = Process::new("setsid");
            cmd.arg(python).args(["-m", "ray.scripts.scripts", "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", "1"]);
            cmd.args(["--object-store-memory", "80000000", "--disable-usage-stats"]).args(extra);
            cmd.env("RAY_USAGE_STATS_ENABLED", "0").stdout(Stdio::null()).stderr(Stdio::null());
            for (k, v) in env {
                cmd.env(k, v);
            }
            cmd.spawn().expect("ray start runs")
        };
        let mut cluster = RayCluster {
            nodes: vec![node(&["--head", "--port", &port.to_string(), "--include-dashboard", "false"])],
            address,
            python: python.to_path_buf(),
        };
        cluster.wait_for(1);
        cluster.nodes.push(node(&["--address", &cluster.address.clone()]));
        cluster.wait_for(2);
        cluster
    }

    /// Waits until `n` nodes are alive (at most a minute).
    fn wait_for(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let probe =
            format!("import ray; ray.init(address='{}', logging_level='ERROR'); print(sum(x['Alive'] for x in ray.nodes()))", self.address);
        loop {
            let out = Process::new(&self.python).args(["-c", &probe]).env("RAY_USAGE_STATS_ENABLED", "0").output().unwrap();
            if String::from_utf8_lossy(&out.stdout).trim() == n.to_string() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the Ray cluster did not have {n} node(s) within a minute:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for RayCluster {
    fn drop(&mut self) {
        for node in self.nodes.iter().rev() {
            let _ = Process::new("kill").args(["-TERM", "--", &format!("-{}", node.id())]).status();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &mut self.nodes {
            while node.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = Process::new("kill").args(["-KILL", "--", &format!("-{}", node.id())]).status();
            let _ = node.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The parent of the first `canary-replay shard run` process found within `within` (the Ray worker
/// running that shard), killed; its pid.
fn kill_a_worker_running_a_shard(within: Duration) -> Option<u32> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
            let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            if args.len() > 2 && args[0].ends_with("canary-replay") && args[1] == "shard" && args[2] == "run" {
                let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
                let parent = status.lines().find_map(|l| l.strip_prefix("PPid:")).and_then(|p| p.trim().parse::<u32>().ok())?;
                let _ = Process::new("kill").args(["-KILL", &parent.to_string()]).status();
                return Some(parent);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[test]
fn the_demo_over_s3_sharded_8_ways_on_a_two_node_ray_cluster_gives_the_local_runs_bytes_even_when_a_worker_dies() {
    let python = python_with_wheel();
    let mirrors = Mirrors::default();
    let server = S3Server::start();
    let case = Case::new();
    let local = case.path("flights");
    write_hive_weeks(&repo("data/flights/traffic.parquet"), &local);
    write_hive_weeks(&repo("data/flights/traffic.parquet"), &server.bucket("logs").join("flights"));
    server.bucket("cache");
    // The local run on the local files; the Ray run over s3:// (the same files) with its cache in
    // the bucket. Workers reach the store with the credentials of their own environment.
    let local_scenario = demo_scenario_over(&case, "local.toml", &local.display().to_string());
    let s3_scenario = demo_scenario_over(&case, "s3.toml", "s3://logs/flights/");
    let env = server.env();
    let local_run = bin()
        .arg("run")
        .arg(&local_scenario)
        .arg("--out")
        .arg(case.path("local"))
        .arg("--cache-dir")
        .arg(case.path("local-cache"))
        .arg("-q")
        .output()
        .unwrap();
    assert!(matches!(local_run.status.code(), Some(0 | 1 | 3)), "{}", String::from_utf8_lossy(&local_run.stderr));
    let cluster = RayCluster::start(&python, &env);

    let driver = |out: &str, cache: &str| {
        let mut cmd = Process::new(&python);
        cmd.args(["-m", "canary_replay.ray"])
            .arg(&s3_scenario)
            .args(["--address", &cluster.address, "--shards", "8", "--cache-dir", cache, "--out"])
            .arg(case.path(out));
        cmd.env("RAY_USAGE_STATS_ENABLED", "0");
        for (k, v) in &env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    };
    let finish = |child: Child, out: &str| {
        let done = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&done.stderr).into_owned();
        assert!(matches!(done.status.code(), Some(0 | 1 | 3)), "exit {:?}:\n{stderr}", done.status.code());
        let timings: Value = serde_json::from_str(&std::fs::read_to_string(case.path(out).join("timings.json")).unwrap()).unwrap();
        mirrors.note(timings["cache_dir"].as_str().unwrap());
        assert_eq!(timings["parts_scored"], 0, "the run after the shards scores nothing: {timings}");
        stderr
    };
    let same_bytes = |out: &str| {
        let (a, b) = (std::fs::read(case.path("local/summary.json")).unwrap(), std::fs::read(case.path(out).join("summary.json")).unwrap());
        // The inputs are named by where they were read; everything else is the same bytes.
        let strip = |bytes: &[u8]| {
            let mut v: Value = serde_json::from_slice(bytes).unwrap();
            for input in v["inputs"].as_array_mut().unwrap() {
                input["file"] = Value::Null;
                input["blake3"] = Value::Null;
            }
            v["scenario"]["file"] = Value::Null;
            serde_json::to_vec_pretty(&v).unwrap()
        };
        assert!(strip(&a) == strip(&b), "summary.json differs:\n{}\n---\n{}", String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
    };

    let stderr = finish(driver("ray", "s3://cache/scores"), "ray");
    assert!(stderr.contains("8 shard task(s) on 2 node(s)"), "{stderr}");
    assert!(stderr.contains("[8/8]") && stderr.contains("shards/s"), "{stderr}");
    same_bytes("ray");

    // Again into an empty cache, one worker killed while it runs a shard: Ray runs the shard
    // again elsewhere, nothing half-written is read, the bytes are the same.
    let running = driver("killed", "s3://cache/again");
    let killed = kill_a_worker_running_a_shard(Duration::from_secs(60));
    let stderr = finish(running, "killed");
    assert!(killed.is_some(), "no shard was seen running:\n{stderr}");
    assert!(stderr.contains("[8/8]"), "{stderr}");
    same_bytes("killed");
    let parts: Vec<String> = std::fs::read_dir(server.root.path().join("cache/again"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        parts.iter().all(|p| p.len() == "0123456789abcdef0123456789abcdef.parquet".len() && p.ends_with(".parquet")),
        "only whole parts: {parts:?}"
    );
    drop(cluster);
}
