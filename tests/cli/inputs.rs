//! Inputs as users have them: output folders that hold their files, damaged logs and files that
//! are not Parquet, leftovers of interrupted runs. Each test feeds the input, checks the exit code
//! and the message, and that nothing the tool did not write was touched.

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
        let assert = bin()
            .arg("run")
            .arg(&scenario)
            .arg("--out")
            .arg(&out)
            .arg("--cache-dir")
            .arg(case.path("../cache-unused"))
            .arg("-q")
            .assert()
            .code(2);
        let stderr = stderr_of(&assert);
        assert!(
            stderr.contains("holds files canary-replay did not write")
                && stderr.contains("notes.md")
                && stderr.contains("fix: pass a new or empty folder"),
            "{stderr}"
        );
    }
    let assert = bin()
        .args(["tune", "--space"])
        .arg(repo("scenarios/tune/space.toml"))
        .arg(repo("scenarios/incidents/errors.toml"))
        .arg("--out")
        .arg(case.dir.path())
        .assert()
        .code(2);
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
    let assert =
        bin().arg("run").arg(&scenario).arg("--out").arg(out).arg("--cache-dir").arg(case.path("cache")).arg("-q").assert().code(2);
    let stderr = stderr_of(&assert);
    assert!(
        stderr.contains("--out /sys/canary-replay-test/out: cannot write into /sys/canary-replay-test")
            && stderr.contains("fix: pass a folder you can write to"),
        "{stderr}"
    );
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
                    let output =
                        bin().arg("run").arg(&scenario).arg("--out").arg(&out).arg("--cache-dir").arg(&cache).arg("-q").output().unwrap();
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
    eprintln!(
        "{} damaged logs: {invalid} invalid (exit 2, {located} naming the row group and column), {} replayed",
        outcomes.len(),
        outcomes.len() - invalid
    );
    assert!(invalid >= 10, "most flips should break decoding: {outcomes:?}");
}

#[test]
fn files_that_are_not_parquet_or_empty_are_named_for_what_they_are() {
    let case = Case::new();
    std::fs::write(case.path("log.parquet"), "request_id,request_ts,entity_id\n1,2013-09-01,N1\n").unwrap();
    let stderr = assert_invalid(
        &case,
        &case.scenario(&case.path("log.parquet"), |s| s),
        &["log.parquet: is not a Parquet file: it holds CSV text", "pl.read_csv"],
    );
    assert!(!stderr.contains("truncated"), "{stderr}");
    let empty = rewrite_sample(&case, "empty.parquet", |b| b.slice(0, 0));
    let stderr = assert_invalid(&case, &case.scenario(&empty, |s| s), &["empty.parquet: has no rows", "point traffic.path at the log"]);
    assert!(!stderr.contains("move the window"), "{stderr}");
}
