//! Writing outputs so that nothing half-written ever looks complete: every file is written to a
//! temporary name beside its destination and renamed into place only when finished; a temporary
//! that is dropped without being committed is removed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temporary path in the same folder as `dest` (so the final rename stays on one file system).
pub fn temp_path(dest: &Path) -> PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dest.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// Checks, before any long work, that an output folder can be written where it is asked for: it
/// and the folders above it are folders where they exist.
pub fn check_output_folder(dir: &Path) -> Result<()> {
    for path in dir.ancestors().filter(|p| !p.as_os_str().is_empty()) {
        if path.exists() && !path.is_dir() {
            return Err(Error::invalid(
                crate::error::Problem::new(format!("--out {}", dir.display()), format!("{} is a file, not a folder", path.display()))
                    .fix("pass a folder with --out: it is created, or replaced when it holds an earlier report"),
            ));
        }
    }
    Ok(())
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
}
