//! Files streamed to and from the store, so that an output or a blob of any size passes
//! through a worker or the CLI in parts of [`PART_SIZE`] rather than whole in memory; a
//! multipart upload that fails is aborted, leaving no parts behind.

use std::path::{Path as FilePath, PathBuf};

use backon::Retryable as _;
use bytes::Bytes;
use futures::StreamExt as _;
use object_store::path::Path;
use object_store::{ObjectStoreExt as _, PutPayload};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{MULTIPART_THRESHOLD, PART_SIZE, Store, StoreError, backoff, transient};

/// Parts of a multipart upload sent at once.
const PARTS_IN_FLIGHT: usize = 4;

/// What a download wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// Bytes written.
    pub size: u64,
    /// Their SHA-256, in hex.
    pub sha256: String,
}

/// Where an upload's bytes come from, part by part.
pub(super) enum Source {
    /// Bytes in memory (parts are slices of them, not copies).
    Bytes(Bytes),
    /// A file on disk, read one part at a time.
    File(PathBuf),
}

/// A local file error, in the store's error type (a failed read or write is worth the
/// retry that a store error gets: the next try starts the transfer afresh).
fn local(path: &FilePath, e: std::io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "local file",
        source: format!("{}: {e}", path.display()).into(),
    }
}

impl Store {
    /// Uploads the file at `file` to `key`, replacing what was there; a large file goes
    /// up in parts, read as they are sent. Returns its size.
    pub async fn put_file(&self, key: &str, file: &FilePath) -> Result<u64, StoreError> {
        let size = tokio::fs::metadata(file)
            .await
            .map_err(|e| local(file, e))?
            .len();
        if size < MULTIPART_THRESHOLD as u64 {
            let bytes = tokio::fs::read(file).await.map_err(|e| local(file, e))?;
            self.put(key, Bytes::from(bytes)).await?;
            return Ok(size);
        }
        let path = self.path(key);
        (|| self.upload_parts(&path, Source::File(file.to_path_buf())))
            .retry(backoff())
            .when(transient)
            .notify(|e, d| tracing::warn!(key, error = %e, delay = ?d, "retrying upload"))
            .await?;
        Ok(size)
    }

    /// Uploads `source` to `path` as a multipart upload, aborting it on any failure so
    /// that no orphaned parts stay in the store.
    pub(super) async fn upload_parts(
        &self,
        path: &Path,
        source: Source,
    ) -> Result<(), object_store::Error> {
        let mut upload = self.inner.put_multipart(path).await?;
        let sent = async {
            let mut in_flight = futures::stream::FuturesOrdered::new();
            let mut parts = Parts::open(source).await?;
            while let Some(part) = parts.next().await? {
                in_flight.push_back(upload.put_part(PutPayload::from(part)));
                if in_flight.len() >= PARTS_IN_FLIGHT
                    && let Some(done) = in_flight.next().await
                {
                    done?;
                }
            }
            while let Some(done) = in_flight.next().await {
                done?;
            }
            upload.complete().await.map(|_| ())
        }
        .await;
        if sent.is_err()
            && let Err(e) = upload.abort().await
        {
            tracing::warn!(path = %path, error = %e, "aborting a failed multipart upload");
        }
        sent
    }

    /// Downloads `key` into the file at `file` (created or truncated), streaming; returns
    /// the size and SHA-256 of what it wrote.
    pub async fn get_to_file(&self, key: &str, file: &FilePath) -> Result<Downloaded, StoreError> {
        let path = self.path(key);
        let result = (|| async {
            let mut out = tokio::fs::File::create(file)
                .await
                .map_err(|e| local(file, e))?;
            let mut stream = self.inner.get(&path).await?.into_stream();
            let mut hash = Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                hash.update(&chunk);
                size += chunk.len() as u64;
                out.write_all(&chunk).await.map_err(|e| local(file, e))?;
            }
            out.flush().await.map_err(|e| local(file, e))?;
            Ok(Downloaded {
                size,
                sha256: super::package::hex(&hash.finalize()),
            })
        })
        .retry(backoff())
        .when(transient)
        .notify(|e, d| tracing::warn!(key, error = %e, delay = ?d, "retrying download"))
        .await;
        match result {
            Err(object_store::Error::NotFound { .. }) => Err(StoreError::NotFound(key.into())),
            other => Ok(other?),
        }
    }
}

/// The parts of a [`Source`], one at a time.
enum Parts {
    Bytes(Bytes),
    File(PathBuf, tokio::fs::File),
}

impl Parts {
    async fn open(source: Source) -> Result<Parts, object_store::Error> {
        Ok(match source {
            Source::Bytes(bytes) => Parts::Bytes(bytes),
            Source::File(path) => {
                let file = tokio::fs::File::open(&path)
                    .await
                    .map_err(|e| local(&path, e))?;
                Parts::File(path, file)
            }
        })
    }

    /// The next part, at most [`PART_SIZE`] bytes; `None` at the end.
    async fn next(&mut self) -> Result<Option<Bytes>, object_store::Error> {
        match self {
            Parts::Bytes(bytes) if bytes.is_empty() => Ok(None),
            Parts::Bytes(bytes) => Ok(Some(bytes.split_to(PART_SIZE.min(bytes.len())))),
            Parts::File(path, file) => {
                let mut part = Vec::with_capacity(PART_SIZE);
                (&mut *file)
                    .take(PART_SIZE as u64)
                    .read_to_end(&mut part)
                    .await
                    .map_err(|e| local(path, e))?;
                Ok((!part.is_empty()).then(|| Bytes::from(part)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_under(dir: &FilePath) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.extend(files_under(&path));
            } else {
                found.push(path);
            }
        }
        found
    }

    #[tokio::test]
    async fn a_large_file_goes_up_in_parts_and_comes_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("file://{}", dir.path().join("store").display())).unwrap();
        let source = dir.path().join("big.bin");
        let bytes: Vec<u8> = (0..MULTIPART_THRESHOLD + PART_SIZE / 2)
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&source, &bytes).unwrap();
        let size = store.put_file("jobs/j/big.bin", &source).await.unwrap();
        assert_eq!(size, bytes.len() as u64);
        let back = dir.path().join("back.bin");
        let downloaded = store.get_to_file("jobs/j/big.bin", &back).await.unwrap();
        assert_eq!(downloaded.size, bytes.len() as u64);
        assert_eq!(downloaded.sha256, super::super::package::sha256_hex(&bytes));
        assert!(std::fs::read(&back).unwrap() == bytes);
        assert!(matches!(
            store.get_to_file("jobs/j/none", &back).await,
            Err(StoreError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn a_failed_multipart_upload_is_aborted_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let store = Store::open(&format!("file://{}", root.display())).unwrap();
        let missing = dir.path().join("gone.bin");
        let path = store.path("jobs/j/part.bin");
        let result = store.upload_parts(&path, Source::File(missing)).await;
        assert!(result.is_err());
        assert_eq!(files_under(&root), Vec::<PathBuf>::new());
    }
}
