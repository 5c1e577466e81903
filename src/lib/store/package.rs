//! Scene packaging: a scene folder turned into content-addressed blobs plus a manifest
//! (the worker's side, laying a manifest out again, is [`cache`](super::cache)).
//!
//! A manifest (`scenes/<hex>.json`, hex = SHA-256 of the manifest bytes) maps relative paths
//! to blob hashes and names the entry file. A job renders exactly the bytes it was submitted
//! with. Paths are checked on both sides (no `..`, nothing absolute); blobs are checked
//! against their hash when downloaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::core::paths::check_relative_path;
use crate::core::problem::ValueError;
use crate::store::{Store, keys};

/// At most this many files in a scene folder.
pub const MAX_FILES: usize = 100_000;

/// A packaged scene.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Schema version.
    pub schema: u32,
    /// The scene file, relative to the folder.
    pub entry: String,
    /// Relative path → SHA-256 hex of the contents.
    pub files: BTreeMap<String, String>,
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The SHA-256 (hex) and size of the file at `path`, read in parts.
pub async fn file_sha256(path: &Path) -> std::io::Result<(String, u64)> {
    use tokio::io::AsyncReadExt as _;
    let mut file = tokio::fs::File::open(path).await?;
    let mut hash = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    let mut size = 0;
    loop {
        let n = file.read(&mut buffer).await?;
        if n == 0 {
            return Ok((hex(&hash.finalize()), size));
        }
        hash.update(&buffer[..n]);
        size += n as u64;
    }
}

/// Lower-case hex of `digest`.
pub fn hex(digest: &[u8]) -> String {
    let mut hex = String::with_capacity(digest.len() * 2);
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

fn is_hex64(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Manifest {
    /// Parses and checks a manifest: every path relative and inside the folder, every hash
    /// well formed, the entry present.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ValueError> {
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| format!("scene manifest: {e}"))?;
        if manifest.schema != 1 {
            return Err(ValueError::from(format!(
                "scene manifest: schema {} is not supported",
                manifest.schema
            )));
        }
        if manifest.files.len() > MAX_FILES {
            return Err(ValueError::from(format!(
                "scene manifest: more than {MAX_FILES} files"
            )));
        }
        for (path, hash) in &manifest.files {
            check_relative_path(path).map_err(|e| format!("scene manifest: file {e}"))?;
            if !is_hex64(hash) {
                return Err(ValueError::from(format!(
                    "scene manifest: {path:?} has a malformed hash"
                )));
            }
        }
        if !manifest.files.contains_key(&manifest.entry) {
            return Err(ValueError::from(format!(
                "scene manifest: entry {:?} is not among its files",
                manifest.entry
            )));
        }
        Ok(manifest)
    }

    /// The canonical bytes and their hex digest.
    pub fn to_bytes(&self) -> (Vec<u8>, String) {
        let bytes = serde_json::to_vec(self).expect("manifests always serialise");
        let hex = sha256_hex(&bytes);
        (bytes, hex)
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("reading scene folder {}: {e}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(root, &path, out)?;
        } else if kind.is_file() || (kind.is_symlink() && path.is_file()) {
            let relative = path
                .strip_prefix(root)
                .expect("walked paths are under the root")
                .to_str()
                .ok_or_else(|| anyhow::anyhow!("{} is not valid UTF-8", path.display()))?
                .replace(std::path::MAIN_SEPARATOR, "/");
            check_relative_path(&relative).map_err(|e| anyhow::anyhow!("scene file {e}"))?;
            out.push((relative, path));
            if out.len() > MAX_FILES {
                anyhow::bail!(
                    "scene folder {} holds more than {MAX_FILES} files",
                    root.display()
                );
            }
        }
    }
    Ok(())
}

/// What packaging a scene did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packaged {
    /// The manifest's hex digest.
    pub hex: String,
    /// Files in the scene folder.
    pub files: usize,
    /// Blobs uploaded (the others were in the store already).
    pub uploaded_files: usize,
    /// Bytes of the blobs uploaded.
    pub uploaded_bytes: u64,
}

/// Packages the folder of `scene_file` into the store: each file a blob (skipped when it
/// exists: an unchanged scene uploads no blob again), then the manifest.
pub async fn package(store: &Store, scene_file: &Path) -> anyhow::Result<Packaged> {
    let folder = scene_file
        .parent()
        .ok_or_else(|| anyhow::anyhow!("scene {} has no folder", scene_file.display()))?;
    if !scene_file.is_file() {
        anyhow::bail!("scene {} is not a file", scene_file.display());
    }
    let entry = scene_file
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow::anyhow!("scene {} has no usable name", scene_file.display()))?
        .to_string();
    let mut files = Vec::new();
    walk(folder, folder, &mut files)?;
    let mut manifest = Manifest {
        schema: 1,
        entry,
        files: BTreeMap::new(),
    };
    let mut packaged = Packaged {
        hex: String::new(),
        files: files.len(),
        uploaded_files: 0,
        uploaded_bytes: 0,
    };
    for (relative, path) in files {
        let (hex, size) = file_sha256(&path)
            .await
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let key = keys::blob(&hex);
        // A blob is written whole under its hash, so one that exists is complete.
        if !store.exists(&key).await? {
            store.put_file(&key, &path).await?;
            packaged.uploaded_files += 1;
            packaged.uploaded_bytes += size;
        }
        manifest.files.insert(relative, hex);
    }
    // Written on every submission, even when stored before: its date is the scene's last
    // use, which retention goes by.
    let (bytes, hex) = manifest.to_bytes();
    store.put(&keys::manifest(&hex), Bytes::from(bytes)).await?;
    packaged.hex = hex;
    Ok(packaged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::cache::Cache;

    #[test]
    fn manifests_are_checked() {
        let good = format!(
            r#"{{"schema":1,"entry":"a.toml","files":{{"a.toml":"{}"}}}}"#,
            "0".repeat(64)
        );
        assert!(Manifest::parse(good.as_bytes()).is_ok());
        for (bad, needle) in [
            (good.replace("a.toml\":", "../a.toml\":"), "'..'"),
            (good.replace("\"a.toml\":", "\"/a.toml\":"), "absolute"),
            (good.replace(&"0".repeat(64), "xyz"), "malformed hash"),
            (
                good.replace("\"entry\":\"a.toml\"", "\"entry\":\"b.toml\""),
                "not among",
            ),
            ("[1]".to_string(), "scene manifest"),
        ] {
            let err = Manifest::parse(bad.as_bytes()).unwrap_err();
            assert!(err.to_string().contains(needle), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn packages_and_materializes_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let scene = dir.path().join("scene");
        std::fs::create_dir_all(scene.join("tex")).unwrap();
        std::fs::write(scene.join("s.toml"), "x = 1").unwrap();
        std::fs::write(scene.join("tex/wood.png"), [1u8, 2, 3]).unwrap();
        let store = Store::open(&format!("file://{}", dir.path().join("store").display())).unwrap();
        let first = package(&store, &scene.join("s.toml")).await.unwrap();
        assert_eq!(
            (first.files, first.uploaded_files, first.uploaded_bytes),
            (2, 2, 8)
        );
        let again = package(&store, &scene.join("s.toml")).await.unwrap();
        assert_eq!(again.hex, first.hex, "stable");
        assert_eq!(
            (again.uploaded_files, again.uploaded_bytes),
            (0, 0),
            "nothing uploaded again"
        );
        let hex = first.hex;
        let cache = Cache::new(dir.path().join("cache"), None).unwrap();
        let work = dir.path().join("work");
        let entry = cache.materialize(&store, &hex, &work).await.unwrap();
        assert_eq!(std::fs::read_to_string(entry).unwrap(), "x = 1");
        assert_eq!(std::fs::read(work.join("tex/wood.png")).unwrap(), [1, 2, 3]);
    }
}
