//! Limits from the CLI: `tessera limit set NAME N` and `tessera limit list`.

use serde::Serialize;

use crate::config::Deps;
use crate::core::limits::{self, Limit, MAX_TOKENS};

/// One limit as `tessera limit list --json` prints it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct LimitStatus {
    /// Its name.
    pub name: String,
    /// Its tokens.
    pub max: u32,
    /// Tokens held by queued or running tasks.
    pub in_use: u32,
    /// Jobs waiting for a token, in turn.
    pub waiting: Vec<String>,
}

impl LimitStatus {
    fn of(name: String, limit: &Limit) -> LimitStatus {
        LimitStatus {
            name,
            max: limit.max,
            in_use: limit.in_use(),
            waiting: limit.waiting.clone(),
        }
    }
}

/// Sets limit `name` to `tokens` tokens, making it if it is new. Lowering it below the
/// tokens in use takes none away: new ones are given only once fewer are in use. Freed
/// tokens go to the jobs waiting for them at once.
pub async fn set_limit(deps: &Deps, name: &str, tokens: u32) -> anyhow::Result<LimitStatus> {
    limits::check_name(name).map_err(anyhow::Error::msg)?;
    if tokens > MAX_TOKENS {
        anyhow::bail!("{tokens} tokens is more than the {MAX_TOKENS} a limit may have");
    }
    let ((), limit) = deps
        .limits
        .change(name, |limit| {
            limit.get_or_insert_with(Limit::default).max = tokens;
        })
        .await?;
    crate::lifecycle::tokens::hand_over(deps, name).await?;
    crate::bus::publish::flush(&deps.client).await;
    Ok(LimitStatus::of(
        name.to_string(),
        &limit.unwrap_or_default(),
    ))
}

/// Every limit of the farm.
pub async fn list_limits(deps: &Deps) -> anyhow::Result<Vec<LimitStatus>> {
    Ok(deps
        .limits
        .list()
        .await?
        .into_iter()
        .map(|(name, limit)| LimitStatus::of(name, &limit))
        .collect())
}
