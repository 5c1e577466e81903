//! Object storage: opening a store from its URL (`file:///abs/dir` or `s3://bucket/prefix`)
//! and the key layout, one function per kind of key. Every other module names keys only
//! through [`keys`].
//!
//! Operations that fail transiently (network, throttling) are retried with backoff
//! (`backon`); logical errors (not found, already exists) are returned at once.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

pub use files::Downloaded;

pub mod cache;
mod files;
pub mod keys;
pub mod package;

/// Outputs at least this large are uploaded in parts.
const MULTIPART_THRESHOLD: usize = 16 << 20;
/// Size of each part of a multipart upload.
const PART_SIZE: usize = 8 << 20;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key does not exist.
    #[error("{0} not found in the object store")]
    NotFound(String),
    /// The store URL is not usable.
    #[error("store URL {url:?}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The key is inside a published version, which is never replaced or deleted.
    #[error("{0} is part of a published version, which cannot be overwritten or deleted")]
    Published(String),
    /// Any other failure, after retries.
    #[error("object store: {0}")]
    Other(#[from] object_store::Error),
}

/// An object store with Tessera's prefix applied.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
}

fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(6)
        .with_jitter()
}

fn transient(error: &object_store::Error) -> bool {
    !matches!(
        error,
        object_store::Error::NotFound { .. }
            | object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. }
            | object_store::Error::NotSupported { .. }
            | object_store::Error::NotImplemented { .. }
            | object_store::Error::InvalidPath { .. }
            | object_store::Error::NotModified { .. }
    )
}

impl Store {
    /// Opens `file:///abs/dir` (created if missing) or `s3://bucket[/prefix]` (endpoint,
    /// region and credentials from the standard `AWS_*` variables).
    pub fn open(url: &str) -> Result<Store, StoreError> {
        let aws: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("AWS_"))
            .collect();
        Store::open_with(url, &aws)
    }

    /// Opens a store with these `AWS_*` settings instead of the process environment:
    /// `AWS_ENDPOINT_URL` (plain `http://` is allowed for it), `AWS_REGION` (default
    /// `us-east-1`), `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
    /// `AWS_VIRTUAL_HOSTED_STYLE_REQUEST` (path-style addressing otherwise), and the rest
    /// that object_store knows.
    pub fn open_with(url: &str, aws: &[(String, String)]) -> Result<Store, StoreError> {
        let bad = |reason: String| StoreError::Url {
            url: url.to_string(),
            reason,
        };
        let parsed = url::Url::parse(url).map_err(|e| {
            bad(format!(
                "{e}; use file:///absolute/dir or s3://bucket/prefix"
            ))
        })?;
        match parsed.scheme() {
            "file" => {
                let dir = parsed
                    .to_file_path()
                    .map_err(|()| bad("a file URL needs an absolute path".into()))?;
                std::fs::create_dir_all(&dir)
                    .map_err(|e| bad(format!("cannot create {}: {e}", dir.display())))?;
                let local = LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| bad(e.to_string()))?
                    .with_automatic_cleanup(true);
                Ok(Store {
                    inner: Arc::new(local),
                    prefix: String::new(),
                    url: url.to_string(),
                })
            }
            "s3" => {
                // The HTTPS client runs on the process's rustls provider: ring.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let bucket = parsed
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| bad("an s3 URL needs a bucket: s3://bucket/prefix".into()))?;
                let prefix = parsed.path().trim_matches('/').to_string();
                let var = |name: &str| aws.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
                let mut builder = AmazonS3Builder::new().with_region("us-east-1");
                for (key, value) in aws {
                    if let Ok(key) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                        builder = builder.with_config(key, value);
                    }
                }
                builder = builder.with_bucket_name(bucket);
                if let Some(endpoint) = var("AWS_ENDPOINT_URL").or_else(|| var("AWS_ENDPOINT")) {
                    if endpoint.starts_with("http://") {
                        builder = builder.with_allow_http(true);
                    }
                    builder = builder.with_endpoint(endpoint);
                }
                let s3 = builder
                    .with_retry(object_store::RetryConfig {
                        max_retries: 3,
                        retry_timeout: Duration::from_secs(30),
                        ..Default::default()
                    })
                    .build()
                    .map_err(|e| bad(e.to_string()))?;
                Ok(Store {
                    inner: Arc::new(s3),
                    prefix,
                    url: url.to_string(),
                })
            }
            other => Err(bad(format!(
                "scheme {other:?} is not supported; use file:///absolute/dir or s3://bucket/prefix"
            ))),
        }
    }

    /// The URL the store was opened from (never holds credentials: those come from the
    /// environment).
    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, key: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(key)
        } else {
            Path::from(format!("{}/{key}", self.prefix))
        }
    }

    fn key_of(&self, path: &Path) -> String {
        let full = path.as_ref();
        if self.prefix.is_empty() {
            full.to_string()
        } else {
            full.strip_prefix(&self.prefix)
                .map(|k| k.trim_start_matches('/').to_string())
                .unwrap_or_else(|| full.to_string())
        }
    }

    /// Writes `bytes` at `key`, replacing what was there; large values go up in parts.
    /// Refused inside a published version ([`keys::is_published`]): there only
    /// [`put_if_absent`](Store::put_if_absent) writes.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        unpublished(key)?;
        self.replace(key, bytes).await
    }

    async fn replace(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let path = self.path(key);
        if bytes.len() >= MULTIPART_THRESHOLD {
            return (|| self.upload_parts(&path, files::Source::Bytes(bytes.clone())))
                .retry(backoff())
                .when(transient)
                .notify(|e, d| tracing::warn!(key, error = %e, delay = ?d, "retrying upload"))
                .await
                .map_err(StoreError::from);
        }
        (|| self.inner.put(&path, PutPayload::from(bytes.clone())))
            .retry(backoff())
            .when(transient)
            .notify(|e, d| tracing::warn!(key, error = %e, delay = ?d, "retrying upload"))
            .await?;
        Ok(())
    }

    /// Writes `bytes` at `key` unless something is there already; returns whether it wrote.
    pub async fn put_if_absent(&self, key: &str, bytes: Bytes) -> Result<bool, StoreError> {
        if self.exists(key).await? {
            return Ok(false);
        }
        if bytes.len() >= MULTIPART_THRESHOLD {
            // Conditional puts are single requests; a large value goes up in parts after the
            // existence check (writers of one key write the same bytes).
            return self.replace(key, bytes).await.map(|()| true);
        }
        let path = self.path(key);
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let result = (|| {
            self.inner
                .put_opts(&path, PutPayload::from(bytes.clone()), options.clone())
        })
        .retry(backoff())
        .when(transient)
        .await;
        match result {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(false),
            // Stores without conditional puts: the existence check above has to do.
            Err(object_store::Error::NotImplemented { .. })
            | Err(object_store::Error::NotSupported { .. }) => {
                self.replace(key, bytes).await.map(|()| true)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Copies `from` to `to` inside the store (server-side on S3: the bytes do not pass
    /// through this process) unless `to` exists; returns whether it copied.
    pub async fn copy_if_absent(&self, from: &str, to: &str) -> Result<bool, StoreError> {
        if self.exists(to).await? {
            return Ok(false);
        }
        let (source, target) = (self.path(from), self.path(to));
        let result = (|| self.inner.copy(&source, &target))
            .retry(backoff())
            .when(transient)
            .notify(|e, d| tracing::warn!(from, to, error = %e, delay = ?d, "retrying copy"))
            .await;
        match result {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Err(StoreError::NotFound(from.into())),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads the whole value at `key`.
    pub async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let path = self.path(key);
        let result = (|| async { self.inner.get(&path).await?.bytes().await })
            .retry(backoff())
            .when(transient)
            .notify(|e, d| tracing::warn!(key, error = %e, delay = ?d, "retrying download"))
            .await;
        match result {
            Ok(bytes) => Ok(bytes),
            Err(object_store::Error::NotFound { .. }) => Err(StoreError::NotFound(key.into())),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes `key`; a key already gone is no error. Refused inside a published version.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        unpublished(key)?;
        let path = self.path(key);
        let result = (|| self.inner.delete(&path))
            .retry(backoff())
            .when(transient)
            .await;
        match result {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes every object under `prefix` (a folder, ending in `/`); returns how many.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize, StoreError> {
        unpublished(prefix)?;
        let keys = self.list(prefix).await?;
        for key in &keys {
            self.delete(key).await?;
        }
        Ok(keys.len())
    }

    /// Whether `key` exists.
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let path = self.path(key);
        let result = (|| self.inner.head(&path))
            .retry(backoff())
            .when(transient)
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Every key under `prefix` (which should end in `/`), sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .list_dated(prefix)
            .await?
            .into_iter()
            .map(|(key, _)| key)
            .collect())
    }

    /// Every key under `prefix`, sorted, with when it was last written.
    pub async fn list_dated(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, std::time::SystemTime)>, StoreError> {
        let path = self.path(prefix.trim_end_matches('/'));
        let metas: Vec<_> = (|| self.inner.list(Some(&path)).try_collect::<Vec<_>>())
            .retry(backoff())
            .when(transient)
            .await?;
        let mut keys: Vec<_> = metas
            .iter()
            .map(|m| (self.key_of(&m.location), m.last_modified.into()))
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// The folders directly under `prefix` (which should end in `/`), each ending in `/`,
    /// sorted: one listing request, however many files they hold.
    pub async fn list_folders(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let path = self.path(prefix.trim_end_matches('/'));
        let listed = (|| self.inner.list_with_delimiter(Some(&path)))
            .retry(backoff())
            .when(transient)
            .await?;
        let mut folders: Vec<String> = listed
            .common_prefixes
            .iter()
            .map(|p| format!("{}/", self.key_of(p)))
            .collect();
        folders.sort();
        Ok(folders)
    }

    /// Copies `from` to `to`, replacing what was at `to`; refused into a published version.
    pub async fn copy(&self, from: &str, to: &str) -> Result<(), StoreError> {
        unpublished(to)?;
        let (src, dst) = (self.path(from), self.path(to));
        (|| self.inner.copy(&src, &dst))
            .retry(backoff())
            .when(transient)
            .await?;
        Ok(())
    }
}

/// Refuses `key` if it is inside a published version.
fn unpublished(key: &str) -> Result<(), StoreError> {
    match keys::is_published(key) {
        true => Err(StoreError::Published(key.to_string())),
        false => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_store_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let store = Store::open(&url).unwrap();
        store
            .put("a/b.txt", Bytes::from_static(b"hi"))
            .await
            .unwrap();
        assert_eq!(
            store.get("a/b.txt").await.unwrap(),
            Bytes::from_static(b"hi")
        );
        assert!(store.exists("a/b.txt").await.unwrap());
        assert!(
            !store
                .put_if_absent("a/b.txt", Bytes::from_static(b"x"))
                .await
                .unwrap()
        );
        assert!(
            store
                .put_if_absent("a/c.txt", Bytes::from_static(b"x"))
                .await
                .unwrap()
        );
        assert_eq!(store.list("a/").await.unwrap(), ["a/b.txt", "a/c.txt"]);
        assert!(matches!(
            store.get("nope").await,
            Err(StoreError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn a_published_version_is_written_once_and_never_replaced_or_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("file://{}", dir.path().display())).unwrap();
        let key = keys::version_prefix("shot010/lighting", 1) + "frame_0001.png";
        let first = Bytes::from_static(b"first");
        assert!(store.put_if_absent(&key, first.clone()).await.unwrap());
        assert!(
            !store
                .put_if_absent(&key, Bytes::from_static(b"x"))
                .await
                .unwrap()
        );
        for refused in [
            store.put(&key, Bytes::from_static(b"x")).await,
            store.copy(&key, &key).await,
            store.delete(&key).await,
            store.delete_prefix("versions/").await.map(|_| ()),
        ] {
            let why = refused.unwrap_err();
            assert!(matches!(why, StoreError::Published(_)), "{why}");
            assert!(why.to_string().contains("cannot be overwritten"), "{why}");
        }
        assert_eq!(store.get(&key).await.unwrap(), first);
        store
            .put_if_absent(&keys::version_record("shot010/lighting", 2), first)
            .await
            .unwrap();
        assert_eq!(
            store
                .list_folders("versions/shot010/lighting/")
                .await
                .unwrap(),
            [
                "versions/shot010/lighting/v001/",
                "versions/shot010/lighting/v002/"
            ]
        );
        assert!(
            store
                .list_folders("versions/none/")
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn rejects_bad_urls() {
        for (url, needle) in [
            ("ftp://x/y", "not supported"),
            ("relative/dir", "file:///absolute"),
            ("s3:///prefix", "needs a bucket"),
        ] {
            let err = Store::open(url).unwrap_err().to_string();
            assert!(err.contains(needle), "{url}: {err}");
        }
    }
}
