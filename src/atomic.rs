//! Writing outputs so that nothing half-written ever looks complete, and nothing the tool did not
//! write is ever lost.
//!
//! Every file is written to a temporary name beside its destination (`.NAME.tmp-PID-N`) and renamed
//! into place only when finished; a temporary that is dropped without being committed is removed,
//! and one left by a process that is gone (killed, crashed) is swept by the next run that writes
//! there. An output folder is replaced only when it is recognisably the tool's own: it holds the
//! marker file [`MARKER`], which lists every file the tool wrote into it, and nothing else.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Problem, Result};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The file that marks a folder as canary-replay's output; it lists the files the tool wrote there.
pub const MARKER: &str = ".canary-replay-output";

/// A temporary path in the same folder as `dest` (so the final rename stays on one file system).
pub fn temp_path(dest: &Path) -> PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dest.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// The process that wrote a temporary named by [`temp_path`], or `None` for any other name.
fn temp_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let (_, tail) = rest.rsplit_once(".tmp-")?;
    let (pid, n) = tail.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Whether process `pid` is still running (Linux: `/proc/PID`). Where that cannot be told, every
/// process counts as running, so nothing is swept.
fn running(pid: u32) -> bool {
    !Path::new("/proc/self").exists() || Path::new("/proc").join(pid.to_string()).exists()
}

/// Removes the temporaries in `dir` that a process which is gone left behind (an interrupted run,
/// a killed job): names of the form [`temp_path`] writes, `.NAME.tmp-PID-N`, whose NAME `of`
/// accepts. Returns how many.
pub fn sweep_stale(dir: &Path, of: impl Fn(&str) -> bool) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut swept = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.strip_prefix('.').and_then(|n| n.rsplit_once(".tmp-")).is_some_and(|(inner, _)| of(inner)) {
            continue;
        }
        let Some(pid) = temp_owner(&name) else { continue };
        if pid == std::process::id() || running(pid) {
            continue;
        }
        let path = entry.path();
        let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        swept += usize::from(removed.is_ok());
    }
    swept
}

/// Checks, before any long work, that an output folder can be written where it is asked for: the
/// folders above it are folders (created if missing) and writable, and the folder itself is new,
/// empty, or an earlier output of canary-replay holding only files it wrote. Stale temporaries
/// beside it are swept.
pub fn check_output_folder(dir: &Path) -> Result<()> {
    let flag = format!("--out {}", dir.display());
    for path in dir.ancestors().filter(|p| !p.as_os_str().is_empty()) {
        if path.exists() && !path.is_dir() {
            return Err(Error::invalid(
                Problem::new(&flag, format!("{} is a file, not a folder", path.display()))
                    .fix("pass a folder with --out: it is created, or replaced when it holds an earlier report"),
            ));
        }
    }
    if dir.is_dir() {
        replaceable(dir).map_err(|message| {
            Error::invalid(Problem::new(&flag, message).fix(
                "pass a new or empty folder with --out (or leave --out out for reports/<name>/); canary-replay replaces only folders it wrote itself, and never deletes files it did not write",
            ))
        })?;
    }
    let parent = parent_of(dir);
    let probe = std::fs::create_dir_all(&parent).and_then(|()| {
        let test = temp_path(dir);
        std::fs::write(&test, b"").and_then(|()| std::fs::remove_file(&test))
    });
    if let Err(e) = probe {
        return Err(Error::invalid(
            Problem::new(&flag, format!("cannot write into {}: {e}", parent.display())).fix("pass a folder you can write to with --out"),
        ));
    }
    // Beside the output folder, only its own temporaries (the folder holding it is the user's).
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    sweep_stale(&parent, |inner| inner == name);
    Ok(())
}

/// The folder holding `path` (`.` for a bare name).
fn parent_of(path: &Path) -> PathBuf {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf()
}

/// Whether canary-replay may replace the existing folder `dir`: it is empty, or it holds the
/// marker and nothing the marker does not list (temporaries of this tool aside). Else says why.
pub fn replaceable(dir: &Path) -> std::result::Result<(), String> {
    let files = files_under(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    if files.is_empty() {
        return Ok(());
    }
    let Some(listed) = listed(dir) else {
        return Err(format!(
            "{} holds files canary-replay did not write ({}); it is not an earlier output folder (those hold {MARKER})",
            dir.display(),
            sample(&files)
        ));
    };
    let foreign: Vec<String> = files.into_iter().filter(|f| f != MARKER && !listed.contains(f)).collect();
    if foreign.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} is an earlier output folder, but holds files canary-replay did not write there ({})",
            dir.display(),
            sample(&foreign)
        ))
    }
}

/// A few names of a list, for a message.
fn sample(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
    match names.len() {
        n if n > shown.len() => format!("{} and {} more", shown.join(", "), n - shown.len()),
        _ => shown.join(", "),
    }
}

/// The files the marker of `dir` lists, or `None` without a marker.
fn listed(dir: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(dir.join(MARKER)).ok()?;
    Some(text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect())
}

/// Every file below `dir`, as `/`-separated relative paths, sorted; this tool's temporaries left
/// out (they are swept, never kept).
fn files_under(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((folder, prefix)) = stack.pop() {
        for entry in std::fs::read_dir(&folder)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if temp_owner(&name).is_some() {
                continue;
            }
            let relative = format!("{prefix}{name}");
            if entry.file_type()?.is_dir() {
                stack.push((entry.path(), format!("{relative}/")));
            } else {
                out.push(relative);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Writes the marker of an output folder being assembled at `dir`: what wrote it, and every file
/// in it, so a later run knows which files it may replace.
pub fn write_marker(dir: &Path, what: &str) -> Result<()> {
    let files = files_under(dir).map_err(|e| Error::io(dir, e))?;
    let mut text = format!("# canary-replay {what} output folder. canary-replay replaces this folder only while it holds\n# nothing but these files; anything else put here keeps it from being replaced.\n");
    for file in files.iter().filter(|f| *f != MARKER) {
        text.push_str(file);
        text.push('\n');
    }
    std::fs::write(dir.join(MARKER), text).map_err(|e| Error::io(dir.join(MARKER), e))
}

/// A file or folder being written under a temporary name.
#[derive(Debug)]
pub struct Pending {
    tmp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl Pending {
    pub fn new(dest: impl Into<PathBuf>) -> Self {
        let dest = dest.into();
        Self { tmp: temp_path(&dest), dest, committed: false }
    }

    /// Where to write.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Moves the finished file or folder into place, replacing what was there.
    pub fn commit(mut self) -> Result<PathBuf> {
        if self.dest.is_dir() {
            let old = temp_path(&self.dest);
            std::fs::rename(&self.dest, &old).map_err(|e| Error::io(&self.dest, e))?;
            std::fs::rename(&self.tmp, &self.dest).map_err(|e| Error::io(&self.dest, e))?;
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(&self.tmp, &self.dest).map_err(|e| Error::io(&self.dest, e))?;
        }
        self.committed = true;
        Ok(self.dest.clone())
    }

    /// Commits a finished output folder: writes its [`MARKER`] (`what` wrote it), then replaces
    /// the folder at the destination only if it is still replaceable — files may have been put
    /// there while this one was being assembled.
    pub fn commit_output(self, what: &str) -> Result<PathBuf> {
        write_marker(&self.tmp, what)?;
        if self.dest.is_dir() {
            if let Err(message) = replaceable(&self.dest) {
                return Err(Error::invalid(
                    Problem::new(format!("--out {}", self.dest.display()), message)
                        .fix("move those files out of it, or pass another folder with --out"),
                ));
            }
        }
        self.commit()
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.committed {
            if self.tmp.is_dir() {
                let _ = std::fs::remove_dir_all(&self.tmp);
            } else {
                let _ = std::fs::remove_file(&self.tmp);
            }
        }
    }
}

/// Writes `bytes` to `dest` atomically.
pub fn write(dest: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let pending = Pending::new(dest);
    std::fs::write(pending.path(), bytes).map_err(|e| Error::io(dest, e))?;
    pending.commit().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncommitted_files_vanish_and_committed_ones_replace() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.json");
        {
            let p = Pending::new(&dest);
            std::fs::write(p.path(), "half").unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        write(&dest, b"one").unwrap();
        write(&dest, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn only_marked_folders_holding_only_listed_files_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(out.join("charts")).unwrap();
        assert!(replaceable(&out).is_ok(), "an empty folder may be replaced");
        std::fs::write(out.join("notes.md"), "mine").unwrap();
        let err = replaceable(&out).unwrap_err();
        assert!(err.contains("did not write (notes.md)") && err.contains(MARKER), "{err}");

        // A folder the tool assembled: marker listing its files, nested ones included.
        let pending = Pending::new(&out);
        std::fs::create_dir_all(pending.path().join("charts")).unwrap();
        std::fs::write(pending.path().join("summary.json"), "{}").unwrap();
        std::fs::write(pending.path().join("charts/a.png"), "png").unwrap();
        let err = pending.commit_output("run").unwrap_err().to_string();
        assert!(err.contains("notes.md"), "{err}");
        assert_eq!(std::fs::read_to_string(out.join("notes.md")).unwrap(), "mine", "the user's file is kept");

        std::fs::remove_file(out.join("notes.md")).unwrap();
        let pending = Pending::new(&out);
        std::fs::create_dir_all(pending.path().join("charts")).unwrap();
        std::fs::write(pending.path().join("charts/a.png"), "png").unwrap();
        pending.commit_output("run").unwrap();
        assert!(replaceable(&out).is_ok());
        assert_eq!(listed(&out).unwrap(), ["charts/a.png"]);
        std::fs::write(out.join("charts/extra.txt"), "mine").unwrap();
        assert!(replaceable(&out).unwrap_err().contains("charts/extra.txt"));
    }

    #[test]
    fn temporaries_of_finished_processes_are_swept_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        // A pid far above any Linux pid_max is never running.
        let stale = dir.path().join(".scores.parquet.tmp-999999999-3");
        let live = dir.path().join(format!(".scores.parquet.tmp-{}-3", std::process::id()));
        let other = dir.path().join(".notes.tmp-abc-1");
        std::fs::create_dir(dir.path().join(".out.tmp-999999999-0")).unwrap();
        for path in [&stale, &live, &other] {
            std::fs::write(path, "x").unwrap();
        }
        // Only the names asked for: here an output folder's own temporaries.
        assert_eq!(sweep_stale(dir.path(), |inner| inner == "out"), 1);
        assert!(stale.exists());
        assert_eq!(sweep_stale(dir.path(), |inner| inner.ends_with(".parquet")), 1);
        assert!(!stale.exists() && live.exists() && other.exists());
        assert_eq!(temp_owner(".a.b.tmp-12-0"), Some(12));
        assert_eq!(temp_owner("a.tmp-12-0"), None);
    }
}
