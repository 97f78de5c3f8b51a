//! Duplicate request ids in bounded memory. Every id in the window is hashed to 64 bits; the hashes
//! are sorted in runs of at most [`RUN`] (spilled to temporary files beyond that) and merged, so a
//! hash seen twice is found whatever the log's size with memory for one run. Hashes that repeat
//! are only candidates: a second pass compares the ids themselves, so a hash collision never
//! counts as a duplicate.

use std::hash::{Hash, Hasher};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use crate::atomic::Pending;
use crate::error::{Error, Result};

/// Hashes kept in memory before a sorted run is spilled to disk (16 MiB: the survey of a log of
/// any size stays within it).
const RUN: usize = 2 << 20;

/// The 64-bit hash of an id (SipHash with fixed keys: the same in every run).
pub fn id_hash(id: &str) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    id.hash(&mut hasher);
    hasher.finish()
}

/// Collects id hashes and finds the ones seen more than once.
#[derive(Default)]
pub struct HashRuns {
    current: Vec<u64>,
    spilled: Vec<Pending>,
}

impl HashRuns {
    pub fn push(&mut self, hash: u64) -> Result<()> {
        self.current.push(hash);
        if self.current.len() >= RUN {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<()> {
        self.current.sort_unstable();
        let pending = Pending::new(std::env::temp_dir().join("canary-replay-ids"));
        let file = std::fs::File::create(pending.path()).map_err(|e| Error::io(pending.path(), e))?;
        let mut out = BufWriter::new(file);
        for h in &self.current {
            out.write_all(&h.to_le_bytes()).map_err(|e| Error::io(pending.path(), e))?;
        }
        out.flush().map_err(|e| Error::io(pending.path(), e))?;
        self.current.clear();
        self.spilled.push(pending);
        Ok(())
    }

    /// The hashes that occur more than once, sorted.
    pub fn repeated(mut self) -> Result<Vec<u64>> {
        self.current.sort_unstable();
        let mut streams: Vec<Box<dyn Iterator<Item = u64>>> = vec![Box::new(std::mem::take(&mut self.current).into_iter())];
        for run in &self.spilled {
            streams.push(Box::new(read_run(run.path().to_path_buf())?));
        }
        let mut heads: Vec<Option<u64>> = streams.iter_mut().map(|s| s.next()).collect();
        let (mut out, mut last, mut count) = (Vec::new(), None, 0u64);
        while let Some((k, h)) = heads.iter().enumerate().filter_map(|(k, h)| h.map(|h| (k, h))).min_by_key(|(_, h)| *h) {
            heads[k] = streams[k].next();
            if last == Some(h) {
                count += 1;
                if count == 2 {
                    out.push(h);
                }
            } else {
                (last, count) = (Some(h), 1);
            }
        }
        Ok(out)
    }
}

fn read_run(path: PathBuf) -> Result<impl Iterator<Item = u64>> {
    let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
    let mut reader = BufReader::new(file);
    Ok(std::iter::from_fn(move || {
        let mut bytes = [0u8; 8];
        reader.read_exact(&mut bytes).ok().map(|()| u64::from_le_bytes(bytes))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_hashes_are_found_across_spilled_runs() {
        let mut runs = HashRuns::default();
        for h in [5u64, 3, 9, 3] {
            runs.push(h).unwrap();
        }
        runs.spill().unwrap();
        for h in [9u64, 1, 7, 7, 7] {
            runs.push(h).unwrap();
        }
        runs.spill().unwrap();
        runs.push(5).unwrap();
        assert_eq!(runs.repeated().unwrap(), [3, 5, 7, 9]);
        assert_eq!(id_hash("a"), id_hash("a"));
        assert_ne!(id_hash("a"), id_hash("b"));
    }
}
