//! The worker's local content-addressed cache of blobs, and the laying out of a scene
//! manifest's files into a task's work folder through it.

use std::path::{Path, PathBuf};

use super::Store;
use super::keys;
use super::package::{Manifest, sha256_hex};

/// A worker's local content-addressed cache of blobs.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// A cache in `dir` (created if missing).
    pub fn new(dir: PathBuf) -> std::io::Result<Cache> {
        std::fs::create_dir_all(dir.join("blobs"))?;
        std::fs::create_dir_all(dir.join("tmp"))?;
        Ok(Cache { dir })
    }

    async fn blob(&self, store: &Store, hex: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.join("blobs").join(hex);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(path);
        }
        let bytes = store.get(&keys::blob(hex)).await?;
        let actual = sha256_hex(&bytes);
        if actual != hex {
            anyhow::bail!("blob {hex} in the store has the wrong contents (hash {actual})");
        }
        // Write beside, then rename: a crash never leaves a partial blob under its hash.
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{hex}.{}", std::process::id()));
        tokio::fs::write(&tmp, &bytes).await?;
        tokio::fs::rename(&tmp, &path).await?;
        Ok(path)
    }

    /// Fetches manifest `hex` and lays its files out under `work`. Returns the entry file.
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
        for (relative, blob) in &manifest.files {
            let source = self.blob(store, blob).await?;
            let target = work.join(relative);
            if let Some(parent) = target.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            if tokio::fs::hard_link(&source, &target).await.is_err() {
                tokio::fs::copy(&source, &target).await?;
            }
        }
        Ok(work.join(&manifest.entry))
    }
}
