//! The worker's local content-addressed cache of blobs, and the laying out of a scene
//! manifest's files into a task's work folder through it.
//!
//! - **Tasks get copies.** A blob is copied into the work folder (the file system may make
//!   the copy a reflink), never hard-linked: a renderer that writes into its scene files
//!   changes its own copy, never the cache.
//! - **Verified before use.** A blob downloaded is checked against its hash before it
//!   enters the cache; a blob found on disk at start (left by an earlier run) is hashed again
//!   the first time it is used, and fetched afresh if it differs.
//! - **Bounded.** With a cap, the least recently used blobs are removed until the cache
//!   fits; a blob being copied into a task's folder is pinned and never removed meanwhile.
//!   The blobs of one scene larger than the cap stay until that scene is laid out.
//!
//! A cache folder belongs to one worker process (`tessera up` gives each of its workers
//! its own): the index of what is used and pinned lives in the process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::Store;
use super::keys;
use super::package::{Manifest, sha256_hex};

/// A partial download this old is left over from a crash.
const STALE_DOWNLOAD: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// What the cache knows of one blob on disk.
#[derive(Debug, Clone, Copy)]
struct Entry {
    size: u64,
    /// Larger is more recent.
    used: u64,
    /// Hashed since this process started (or downloaded by it).
    verified: bool,
}

#[derive(Debug, Default)]
struct Index {
    entries: HashMap<String, Entry>,
    pins: HashMap<String, usize>,
    total: u64,
    clock: u64,
}

/// A worker's local content-addressed cache of blobs.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    cap: Option<u64>,
    index: Arc<Mutex<Index>>,
    /// The folder's lock file, held while the cache is open.
    _lock: Arc<std::fs::File>,
}

/// Unpins a manifest's blobs when its layout ends, whatever way.
struct Pins<'a> {
    cache: &'a Cache,
    blobs: Vec<String>,
}

impl Drop for Pins<'_> {
    fn drop(&mut self) {
        let mut index = self.cache.lock();
        for hex in &self.blobs {
            if let Some(n) = index.pins.get_mut(hex) {
                *n -= 1;
                if *n == 0 {
                    index.pins.remove(hex);
                }
            }
        }
        drop(index);
        self.cache.evict();
    }
}

impl Cache {
    /// A cache in `dir` (created if missing) holding at most `cap` bytes of blobs (no limit
    /// when `None`). Blobs left by an earlier run are kept, in their age order.
    /// The folder is locked for this process: a second worker opening it is refused.
    pub fn new(dir: PathBuf, cap: Option<u64>) -> std::io::Result<Cache> {
        std::fs::create_dir_all(dir.join("blobs"))?;
        let lock = std::fs::File::create(dir.join("lock"))?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => std::io::Error::other(format!(
                "the cache folder {} is in use by another worker: give each worker its own --cache (or --id)",
                dir.display()
            )),
            std::fs::TryLockError::Error(e) => e,
        })?;
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        // Partial downloads of an earlier run are worthless; a day old, they are not in
        // flight.
        for entry in std::fs::read_dir(&tmp)?.flatten() {
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() > STALE_DOWNLOAD);
            if stale {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir.join("blobs"))? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if !meta.is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let mtime = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            found.push((mtime, name, meta.len()));
        }
        found.sort();
        let mut index = Index::default();
        for (_, hex, size) in found {
            index.clock += 1;
            index.entries.insert(
                hex,
                Entry {
                    size,
                    used: index.clock,
                    verified: false,
                },
            );
            index.total += size;
        }
        let cache = Cache {
            dir,
            cap,
            index: Arc::new(Mutex::new(index)),
            _lock: Arc::new(lock),
        };
        cache.evict();
        Ok(cache)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes of blobs held.
    pub fn size(&self) -> u64 {
        self.lock().total
    }

    fn path(&self, hex: &str) -> PathBuf {
        self.dir.join("blobs").join(hex)
    }

    /// Removes least recently used, unpinned blobs until the cache fits its cap.
    fn evict(&self) {
        let Some(cap) = self.cap else { return };
        let mut index = self.lock();
        if index.total <= cap {
            return;
        }
        let mut order: Vec<(u64, String)> = index
            .entries
            .iter()
            .filter(|(hex, _)| !index.pins.contains_key(*hex))
            .map(|(hex, e)| (e.used, hex.clone()))
            .collect();
        order.sort();
        for (_, hex) in order {
            if index.total <= cap {
                break;
            }
            if std::fs::remove_file(self.path(&hex)).is_ok() || !self.path(&hex).exists() {
                if let Some(entry) = index.entries.remove(&hex) {
                    index.total -= entry.size;
                }
                tracing::debug!(blob = %hex, "cache: evicted");
            }
        }
    }

    /// The blob `hex` on disk, fetched and verified if need be; pinned in `pins`.
    async fn blob(&self, store: &Store, hex: &str, pins: &mut Pins<'_>) -> anyhow::Result<PathBuf> {
        let path = self.path(hex);
        let known = {
            let mut index = self.lock();
            *index.pins.entry(hex.to_string()).or_insert(0) += 1;
            pins.blobs.push(hex.to_string());
            index.clock += 1;
            let clock = index.clock;
            index.entries.get_mut(hex).map(|e| {
                e.used = clock;
                e.verified
            })
        };
        match known {
            Some(true) if tokio::fs::try_exists(&path).await.unwrap_or(false) => return Ok(path),
            Some(_) => {
                // Left by an earlier run, or removed behind our back: hash it again.
                let check = path.clone();
                let good = tokio::task::spawn_blocking(move || {
                    std::fs::read(&check).map(|b| sha256_hex(&b))
                })
                .await?
                .is_ok_and(|actual| actual == hex);
                let mut index = self.lock();
                if good {
                    if let Some(e) = index.entries.get_mut(hex) {
                        e.verified = true;
                    }
                    return Ok(path);
                }
                tracing::warn!(blob = %hex, "cache: a blob on disk does not match its hash; fetching it again");
                if let Some(e) = index.entries.remove(hex) {
                    index.total -= e.size;
                }
            }
            None => {}
        }
        // Streamed beside, then renamed: a crash never leaves a partial blob under its hash.
        let tmp = self.dir.join("tmp").join(format!("{hex}.{}", nuid::next()));
        let downloaded = match store.get_to_file(&keys::blob(hex), &tmp).await {
            Ok(downloaded) => downloaded,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e.into());
            }
        };
        if downloaded.sha256 != hex {
            let _ = tokio::fs::remove_file(&tmp).await;
            anyhow::bail!(
                "blob {hex} in the store has the wrong contents (hash {})",
                downloaded.sha256
            );
        }
        tokio::fs::rename(&tmp, &path).await?;
        {
            let mut index = self.lock();
            index.clock += 1;
            let used = index.clock;
            let size = downloaded.size;
            if let Some(old) = index.entries.insert(
                hex.to_string(),
                Entry {
                    size,
                    used,
                    verified: true,
                },
            ) {
                index.total -= old.size;
            }
            index.total += size;
        }
        self.evict();
        Ok(path)
    }

    /// Fetches manifest `hex` and lays its files out under `work`, each a copy of its blob.
    /// Returns the entry file.
    pub async fn materialize(
        &self,
        store: &Store,
        hex: &str,
        work: &Path,
    ) -> anyhow::Result<PathBuf> {
        let bytes = store.get(&keys::manifest(hex)).await?;
        if sha256_hex(&bytes) != hex {
            anyhow::bail!("scene manifest {hex} in the store does not match its hash");
        }
        let manifest = Manifest::parse(&bytes).map_err(anyhow::Error::msg)?;
        let mut pins = Pins {
            cache: self,
            blobs: Vec::new(),
        };
        for (relative, blob) in &manifest.files {
            let source = self.blob(store, blob, &mut pins).await?;
            let target = work.join(relative);
            if let Some(parent) = target.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            tokio::fs::copy(&source, &target).await?;
        }
        Ok(work.join(&manifest.entry))
    }
}

/// Parses a size such as `500MB`, `2GiB`, `10G` or `1048576` (bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as \"20GiB\" or \"500MB\""))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)"
            ));
        }
    };
    Ok((number * scale as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::package::package;

    #[test]
    fn sizes_are_read_with_their_units() {
        for (text, want) in [
            ("1048576", Ok(1 << 20)),
            ("500MB", Ok(500_000_000)),
            ("2GiB", Ok(2 << 30)),
            ("1.5 kib", Ok(1536)),
            ("ten", Err("is not a size")),
            ("5 parsecs", Err("unknown unit")),
        ] {
            match (parse_size(text), want) {
                (Ok(n), Ok(w)) => assert_eq!(n, w, "{text}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{text}: {e}"),
                (got, _) => panic!("{text}: {got:?}"),
            }
        }
    }

    async fn scene(dir: &Path, name: &str, bytes: usize) -> (Store, String) {
        let folder = dir.join(name);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("scene.txt"), name.repeat(bytes / name.len())).unwrap();
        let store = Store::open(&format!("file://{}", dir.join("store").display())).unwrap();
        let hex = package(&store, &folder.join("scene.txt"))
            .await
            .unwrap()
            .hex;
        (store, hex)
    }

    #[tokio::test]
    async fn a_task_writing_its_scene_leaves_the_cache_intact() {
        let dir = tempfile::tempdir().unwrap();
        let (store, hex) = scene(dir.path(), "abc", 300).await;
        let cache = Cache::new(dir.path().join("cache"), None).unwrap();
        let first = cache
            .materialize(&store, &hex, &dir.path().join("w1"))
            .await
            .unwrap();
        std::fs::write(&first, "overwritten by the renderer").unwrap();
        let second = cache
            .materialize(&store, &hex, &dir.path().join("w2"))
            .await
            .unwrap();
        assert_eq!(std::fs::read_to_string(second).unwrap(), "abc".repeat(100));
    }

    #[tokio::test]
    async fn a_corrupt_blob_left_on_disk_is_fetched_again() {
        let dir = tempfile::tempdir().unwrap();
        let (store, hex) = scene(dir.path(), "abc", 300).await;
        let cache = Cache::new(dir.path().join("cache"), None).unwrap();
        cache
            .materialize(&store, &hex, &dir.path().join("w1"))
            .await
            .unwrap();
        for blob in std::fs::read_dir(dir.path().join("cache/blobs")).unwrap() {
            std::fs::write(blob.unwrap().path(), "rot").unwrap();
        }
        // A new process: what is on disk is not trusted until hashed.
        let folder = dir.path().join("cache");
        let err = Cache::new(folder.clone(), None).unwrap_err();
        assert!(
            err.to_string().contains("in use by another worker"),
            "{err}"
        );
        drop(cache);
        let cache = Cache::new(folder, None).unwrap();
        let entry = cache
            .materialize(&store, &hex, &dir.path().join("w2"))
            .await
            .unwrap();
        assert_eq!(std::fs::read_to_string(entry).unwrap(), "abc".repeat(100));
    }

    #[tokio::test]
    async fn the_cache_stays_under_its_cap_evicting_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("cache"), Some(2500)).unwrap();
        let mut scenes = Vec::new();
        for name in ["aaa", "bbb", "ccc", "ddd"] {
            scenes.push(scene(dir.path(), name, 999).await);
        }
        for (i, (store, hex)) in scenes.iter().enumerate() {
            cache
                .materialize(store, hex, &dir.path().join(format!("w{i}")))
                .await
                .unwrap();
            // The first scene is used again each time: it is never the least recent.
            cache
                .materialize(&scenes[0].0, &scenes[0].1, &dir.path().join("again"))
                .await
                .unwrap();
            assert!(
                cache.size() <= 2500,
                "{} bytes after scene {i}",
                cache.size()
            );
        }
        let on_disk: u64 = std::fs::read_dir(dir.path().join("cache/blobs"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert_eq!(on_disk, cache.size());
        let first_blob = cache.path(&sha256_hex("aaa".repeat(333).as_bytes()));
        assert!(first_blob.exists(), "the most recently used scene stays");
        // A scene larger than the cap still lays out; the cache then shrinks back.
        let (store, big) = scene(dir.path(), "eee", 4000).await;
        let entry = cache
            .materialize(&store, &big, &dir.path().join("big"))
            .await
            .unwrap();
        assert_eq!(std::fs::metadata(entry).unwrap().len(), 3999);
        assert!(cache.size() <= 2500, "{}", cache.size());
    }
}
