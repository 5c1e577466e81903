//! The worker registry: one [`WorkerInfo`] per live worker in the `tessera-workers` KV
//! bucket, refreshed by its worker and read by anyone who asks which workers are alive
//! (`tessera workers`, `status`, a worker deciding whether to hand a task back).

use anyhow::Context as _;
use async_nats::jetstream::{self, kv};
use futures::StreamExt;

use super::protocol::{self, WorkerInfo};
use super::streams;

/// A worker's handle on its own registry entry.
pub struct Entry {
    kv: kv::Store,
    id: String,
}

impl Entry {
    /// Binds the entry of worker `id`.
    pub async fn bind(js: &jetstream::Context, id: &str) -> anyhow::Result<Entry> {
        Ok(Entry {
            kv: streams::workers_bucket(js).await?,
            id: id.to_string(),
        })
    }

    /// Writes `info` as the worker's entry.
    pub async fn refresh(&self, info: &WorkerInfo) -> anyhow::Result<()> {
        self.kv
            .put(&self.id, protocol::encode(info).into())
            .await
            .with_context(|| format!("refreshing the registry entry of {}", self.id))?;
        Ok(())
    }

    /// Removes the entry (the worker stops).
    pub async fn remove(&self) {
        if let Err(e) = self.kv.delete(&self.id).await {
            tracing::debug!(error = %e, "removing the registry entry");
        }
    }
}

/// The live workers of the registry, by id.
pub async fn live_workers(js: &jetstream::Context) -> anyhow::Result<Vec<WorkerInfo>> {
    let kv = streams::workers_bucket(js).await?;
    let mut keys = kv.keys().await.context("listing workers")?;
    let now = protocol::now_ms();
    let mut out = Vec::new();
    while let Some(key) = keys.next().await {
        let key = key.map_err(|e| anyhow::anyhow!("listing workers: {e}"))?;
        let Some(value) = kv.get(&key).await.context("reading a worker entry")? else {
            continue;
        };
        match protocol::decode::<WorkerInfo>(&value) {
            Ok(info) if info.is_alive(now) => out.push(info),
            Ok(_) => {}
            Err(e) => tracing::warn!(key, error = %e, "unreadable worker entry"),
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}
