//! Stable, salted hashing of keys to [0, 1): the same key and salt give the same number on every
//! machine and every version, which makes latency sampling (and later sticky routing) reproducible.
//! blake3 of `salt ‖ 0x00 ‖ key`, the first 8 bytes read little-endian, top 53 bits as a fraction.

/// Maps a key to a uniform number in [0, 1).
pub fn unit(salt: &str, key: &[u8]) -> f64 {
    // Hashed whole from one buffer when short, as nearly every key is: feeding a hasher piece by
    // piece took twice as long (every request is routed by this, 12% of the index build).
    let mut short = [0u8; 192];
    let len = salt.len() + 1 + key.len();
    let bytes = if len <= short.len() {
        short[..salt.len()].copy_from_slice(salt.as_bytes());
        short[salt.len() + 1..len].copy_from_slice(key);
        blake3::hash(&short[..len])
    } else {
        let mut hasher = blake3::Hasher::new();
        hasher.update(salt.as_bytes());
        hasher.update(&[0]);
        hasher.update(key);
        hasher.finalize()
    };
    let word = u64::from_le_bytes(bytes.as_bytes()[..8].try_into().expect("8 bytes"));
    (word >> 11) as f64 / (1u64 << 53) as f64
}

/// Hash of a file's contents (hex).
///
/// A file is read once per process: the hash is kept with the file's length and modification
/// time, and read again only when either changed (the score cache's key and the run's summary
/// both name the traffic files by their hash — at 10⁸ requests, a gigabyte read twice).
pub fn hash_file(path: &std::path::Path) -> crate::error::Result<String> {
    type Seen = std::collections::HashMap<(std::path::PathBuf, u64, Option<std::time::SystemTime>), String>;
    static SEEN: std::sync::OnceLock<std::sync::Mutex<Seen>> = std::sync::OnceLock::new();
    let meta = std::fs::metadata(path).map_err(|e| crate::error::Error::io(path, e))?;
    let key = (path.to_path_buf(), meta.len(), meta.modified().ok());
    let seen = SEEN.get_or_init(Default::default);
    if let Some(hash) = seen.lock().expect("the hash memo is never poisoned").get(&key) {
        return Ok(hash.clone());
    }
    let mut hasher = blake3::Hasher::new();
    let file = std::fs::File::open(path).map_err(|e| crate::error::Error::io(path, e))?;
    hasher.update_reader(file).map_err(|e| crate::error::Error::io(path, e))?;
    let hash = hasher.finalize().to_hex().to_string();
    seen.lock().expect("the hash memo is never poisoned").insert(key, hash.clone());
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_is_stable_and_uniform() {
        // Fixed value: changing the hash would silently change every sample and routing decision.
        assert_eq!(unit("salt", b"N14228"), 0.746_592_262_821_049_3);
        assert_ne!(unit("salt", b"N14228"), unit("other", b"N14228"));
        let n = 20_000;
        let below: usize = (0..n).filter(|i| unit("s", i.to_string().as_bytes()) < 0.25).count();
        let share = below as f64 / n as f64;
        // Binomial sd at n = 20000, p = 0.25 is 0.0031; allow 4 sd.
        assert!((share - 0.25).abs() < 0.0125, "{share}");
    }

    /// Keys that fit the buffer and keys that do not are hashed alike: blake3 of salt ‖ 0 ‖ key.
    #[test]
    fn short_and_long_keys_hash_alike() {
        let piece_by_piece = |salt: &str, key: &[u8]| {
            let mut hasher = blake3::Hasher::new();
            hasher.update(salt.as_bytes());
            hasher.update(&[0]);
            hasher.update(key);
            let word = u64::from_le_bytes(hasher.finalize().as_bytes()[..8].try_into().unwrap());
            (word >> 11) as f64 / (1u64 << 53) as f64
        };
        for len in [0, 1, 40, 186, 187, 188, 400, 5000] {
            let key: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            assert_eq!(unit("salt", &key).to_bits(), piece_by_piece("salt", &key).to_bits(), "{len}-byte key");
        }
    }
}
