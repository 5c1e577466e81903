//! Limits in the `tessera-limits` bucket: one record per limit (see [`Limit`]), every
//! change a read-modify-write under compare-and-swap, retried on conflict.

use anyhow::Context as _;
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::StreamExt as _;

use super::protocol::{decode, encode};
use super::streams::LIMITS_BUCKET;
use crate::core::limits::Limit;

/// Handle on the `tessera-limits` bucket.
#[derive(Clone)]
pub struct Limits {
    kv: kv::Store,
}

impl Limits {
    /// Opens the bucket.
    pub async fn open(js: &jetstream::Context) -> anyhow::Result<Limits> {
        let kv = js
            .get_key_value(LIMITS_BUCKET)
            .await
            .with_context(|| format!("KV bucket {LIMITS_BUCKET} (run `tessera init`?)"))?;
        Ok(Limits { kv })
    }

    /// The limit `name`, if it was set.
    pub async fn get(&self, name: &str) -> anyhow::Result<Option<Limit>> {
        Ok(self.entry(name).await?.map(|(limit, _)| limit))
    }

    async fn entry(&self, name: &str) -> anyhow::Result<Option<(Limit, u64)>> {
        let Some(entry) = self
            .kv
            .entry(name)
            .await
            .with_context(|| format!("reading limit {name}"))?
        else {
            return Ok(None);
        };
        if entry.operation != kv::Operation::Put {
            return Ok(None);
        }
        let limit =
            decode(&entry.value).map_err(|e| anyhow::anyhow!("limit {name} is unreadable: {e}"))?;
        Ok(Some((limit, entry.revision)))
    }

    /// Every limit, by name.
    pub async fn list(&self) -> anyhow::Result<Vec<(String, Limit)>> {
        let mut keys = self.kv.keys().await.context("listing limits")?;
        let mut names = Vec::new();
        while let Some(key) = keys.next().await {
            names.push(key.map_err(|e| anyhow::anyhow!("listing limits: {e}"))?);
        }
        names.sort();
        let mut limits = Vec::new();
        for name in names {
            if let Some(limit) = self.get(&name).await? {
                limits.push((name, limit));
            }
        }
        Ok(limits)
    }

    /// Applies `change` to limit `name` under compare-and-swap (a limit not set yet is
    /// `None`, and becomes one only if `change` makes it); returns what `change` returned
    /// on the record it was applied to, and the record.
    pub async fn change<T>(
        &self,
        name: &str,
        mut change: impl FnMut(&mut Option<Limit>) -> T,
    ) -> anyhow::Result<(T, Option<Limit>)> {
        loop {
            let entry = self.entry(name).await?;
            let revision = entry.as_ref().map(|(_, r)| *r);
            let mut limit = entry.map(|(limit, _)| limit);
            let before = limit.clone();
            let result = change(&mut limit);
            if limit == before {
                return Ok((result, limit));
            }
            let Some(value) = &limit else {
                return Ok((result, limit)); // nothing removes a limit
            };
            let bytes = Bytes::from(encode(value));
            let written = match revision {
                Some(revision) => self
                    .kv
                    .update(name, bytes, revision)
                    .await
                    .map(drop)
                    .map_err(|e| {
                        (
                            e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                            e.to_string(),
                        )
                    }),
                None => self.kv.create(name, bytes).await.map(drop).map_err(|e| {
                    (
                        e.kind() == kv::CreateErrorKind::AlreadyExists,
                        e.to_string(),
                    )
                }),
            };
            match written {
                Ok(()) => return Ok((result, limit)),
                Err((true, _)) => continue,
                Err((false, e)) => anyhow::bail!("writing limit {name}: {e}"),
            }
        }
    }
}
