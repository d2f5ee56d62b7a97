//! The response cache: content-addressed by the canonical request (backend identity, call
//! kind, messages, parameters), so re-running a program on the same rows costs nothing.
//! One small file per answer under `<cache>/<2 hex>/<62 hex>.json`, written atomically, so
//! concurrent rows and concurrent runs never see half an entry.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

/// Default cache folder, shared by all runs under `results/`.
pub const DEFAULT_CACHE_DIR: &str = "results/.cache";

#[derive(Debug, Clone)]
pub struct ResponseCache {
    dir: PathBuf,
    /// A read-only view answers from the cache but stores nothing (batch runs play a row
    /// several times and store its answers once, when it finishes).
    writes: bool,
}

impl ResponseCache {
    pub fn new(dir: &Path) -> ResponseCache {
        ResponseCache {
            dir: dir.to_path_buf(),
            writes: true,
        }
    }

    /// The same cache, read-only.
    pub fn read_only(&self) -> ResponseCache {
        ResponseCache {
            dir: self.dir.clone(),
            writes: false,
        }
    }

    /// The key of a request: sha256 of its canonical JSON (serde_json keeps field order, which
    /// is fixed by the request types).
    pub fn key(identity: &str, kind: &str, request: &impl Serialize) -> String {
        let canonical =
            serde_json::json!({"v": 1, "backend": identity, "kind": kind, "request": request});
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }

    /// The key of repeat `repeat` of a request: the plain key for repeat 0 (so first answers
    /// and earlier caches are shared), a different key for every other repeat.
    pub fn key_of_repeat(
        identity: &str,
        kind: &str,
        request: &impl Serialize,
        repeat: u32,
    ) -> String {
        if repeat == 0 {
            return Self::key(identity, kind, request);
        }
        let canonical = serde_json::json!({"v": 1, "backend": identity, "kind": kind, "request": request, "repeat": repeat});
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(&key[..2]).join(format!("{}.json", &key[2..]))
    }

    /// The cached answer, if any; an unreadable entry counts as a miss (it will be rewritten).
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let bytes = std::fs::read(self.path(key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn put<T: Serialize>(&self, key: &str, value: &T) -> std::io::Result<()> {
        if !self.writes {
            return Ok(());
        }
        let path = self.path(key);
        let parent = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent)?;
        let mut temp = crate::files::temp_file_in(parent)?;
        serde_json::to_writer(&mut temp, value)?;
        temp.flush()?;
        temp.persist(&path).map_err(|e| e.error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_request_same_key_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResponseCache::new(dir.path());
        let a = ResponseCache::key("m", "select", &serde_json::json!({"messages": ["x"]}));
        let b = ResponseCache::key("m", "select", &serde_json::json!({"messages": ["y"]}));
        assert_ne!(a, b);
        assert_eq!(
            a,
            ResponseCache::key("m", "select", &serde_json::json!({"messages": ["x"]}))
        );
        assert_eq!(cache.get::<u32>(&a), None);
        cache.put(&a, &7u32).unwrap();
        assert_eq!(cache.get::<u32>(&a), Some(7));
    }

    #[test]
    fn each_repeat_has_its_own_key_and_the_first_is_the_plain_key() {
        let request = serde_json::json!({"messages": ["x"]});
        let plain = ResponseCache::key("m", "gen", &request);
        assert_eq!(ResponseCache::key_of_repeat("m", "gen", &request, 0), plain);
        let second = ResponseCache::key_of_repeat("m", "gen", &request, 1);
        let third = ResponseCache::key_of_repeat("m", "gen", &request, 2);
        assert!(second != plain && third != plain && second != third);
    }
}
