//! The files canary-replay writes: one writer per artifact behind one trait, as hyperfine's
//! exporters, and the output folder that holds them — assembled under a temporary name beside its
//! destination and moved into place whole, so a failed run never leaves a folder that looks finished.
//!
//! The artifacts: `summary.json`, `distributions.json`, `invocation.json`, `timings.json` and
//! `tune.json` ([`Json`]); `policy.toml`, `tuned-policy.toml`, `tune.html`, the controllers' exports
//! and chart PNGs ([`Bytes`]); `checks.parquet` and `scores.parquet` (their writers
//! are `report::simulation::Checks` and `report::Scores`). `report.html` is written last, in place
//! under a temporary name, because `report` re-renders it inside an existing run folder.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::atomic::Pending;
use crate::error::{Error, Result};

/// One file of an output folder.
pub trait Artifact {
    /// The file's name in its folder.
    fn name(&self) -> &str;
    /// Writes the file at `path`; errors name `path`.
    fn write_to(&self, path: &Path) -> Result<()>;
}

/// A value as pretty JSON with a final newline (the same inputs give the same bytes).
pub struct Json<'a, T: Serialize>(pub &'a str, pub &'a T);

impl<T: Serialize> Artifact for Json<'_, T> {
    fn name(&self) -> &str {
        self.0
    }

    /// Streamed to the file: a month of 5-minute checks makes a `summary.json` of about 50 MB.
    fn write_to(&self, path: &Path) -> Result<()> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| Error::io(path, e))?);
        write_json(self.1, &mut out).and_then(|()| out.flush()).map_err(|e| Error::io(path, e))
    }
}

/// Bytes as given: TOML, HTML or YAML text, a chart's PNG.
pub struct Bytes<'a>(pub &'a str, pub &'a [u8]);

impl Artifact for Bytes<'_> {
    fn name(&self) -> &str {
        self.0
    }

    fn write_to(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.1).map_err(|e| Error::io(path, e))
    }
}

/// Pretty JSON with a final newline.
pub fn to_json(value: &impl Serialize) -> String {
    let mut text = Vec::new();
    write_json(value, &mut text).expect("reports serialize");
    String::from_utf8(text).expect("JSON is UTF-8")
}

/// [`to_json`]'s text written to `out`.
fn write_json(value: &impl Serialize, out: &mut impl Write) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    out.write_all(b"\n")
}

/// An output folder while it is written: a temporary folder beside `out_dir`, moved into place
/// whole by [`Folder::commit`] (and removed if the command fails first).
pub struct Folder {
    out_dir: PathBuf,
    pending: Pending,
}

impl Folder {
    pub fn create(out_dir: &Path) -> Result<Self> {
        if let Some(parent) = out_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let pending = Pending::new(out_dir);
        std::fs::create_dir_all(pending.path()).map_err(|e| Error::io(pending.path(), e))?;
        Ok(Self { out_dir: out_dir.to_path_buf(), pending })
    }

    /// Where the folder is assembled.
    pub fn path(&self) -> &Path {
        self.pending.path()
    }

    /// Where the folder will be.
    pub fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    pub fn write(&self, artifact: &dyn Artifact) -> Result<()> {
        artifact.write_to(&self.path().join(artifact.name()))
    }

    /// Moves the folder into place with its marker file listing what `what` (`run`, `tune`) wrote:
    /// a folder with anything else in it is never replaced.
    pub fn commit(self, what: &str) -> Result<PathBuf> {
        self.pending.commit_output(what)
    }

    /// Moves the folder into place as it is (a folder inside an output folder, e.g. `charts/`).
    pub fn commit_inner(self) -> Result<PathBuf> {
        self.pending.commit()
    }
}
