//! Tokens of limits (see [`crate::core::limits`]): taken for a job's held tasks as they are
//! queued, given back as they end (and all of a job's when it ends), and handed to the job
//! whose turn it is in a limit's line — whoever gives a token back queues that job's next
//! held task, so a job waiting for a token needs no event of its own to be woken. The
//! collectors also sweep every limit now and then ([`sweep`]): tokens of tasks or jobs
//! that ended without giving them back (a step cut short by a crash) return, and free
//! tokens go to the line.

use std::collections::HashMap;

use super::held::{self, HeldTask};
use crate::config::Deps;
use crate::core::job::{Job, JobId};
use crate::core::limits::Limit;

/// The most jobs one hand-over looks at (each either takes tokens or leaves the line).
const HAND_OVER_AT_MOST: usize = 64;

/// Takes a token of every limit of `job` for each of `held`; returns the tasks that got
/// one of each (the rest stay held, and the job waits in line). A task that got a token of
/// one limit but not of the next gives the first back.
pub async fn take(deps: &Deps, job: &Job, held: &[HeldTask]) -> anyhow::Result<Vec<HeldTask>> {
    let mut granted: Vec<HeldTask> = held.to_vec();
    for (n, name) in job.limits.iter().enumerate() {
        let asked: Vec<u32> = granted.iter().map(|&(index, _)| index).collect();
        let (holding, limit) = deps
            .limits
            .change(name, |limit| {
                limit
                    .as_mut()
                    .map(|l| l.take(job.id.as_str(), &job.incarnation, &asked))
                    .unwrap_or_default()
            })
            .await?;
        if limit.is_none() {
            tracing::warn!(job = %job.id, limit = %name, "the job's limit is not set: its tasks wait until `tessera limit set {name} N`");
        }
        let refused: Vec<u32> = asked
            .iter()
            .copied()
            .filter(|t| !holding.contains(t))
            .collect();
        if !refused.is_empty() {
            for earlier in &job.limits[..n] {
                deps.limits
                    .change(earlier, |limit| {
                        if let Some(l) = limit {
                            l.give_back(job.id.as_str(), &job.incarnation, Some(&refused));
                        }
                    })
                    .await?;
            }
        }
        granted.retain(|(index, _)| holding.contains(index));
    }
    Ok(granted)
}

/// Gives back the tokens of `tasks` of `job` (every one of the job's, when `None`), then
/// hands what is free to the jobs waiting in line.
pub async fn give_back(deps: &Deps, job: &Job, tasks: Option<&[u32]>) -> anyhow::Result<()> {
    for name in &job.limits {
        let (given, limit) = deps
            .limits
            .change(name, |limit| {
                limit
                    .as_mut()
                    .map_or(0, |l| l.give_back(job.id.as_str(), &job.incarnation, tasks))
            })
            .await?;
        if given > 0 || limit.as_ref().is_some_and(|l| l.next_in_line().is_some()) {
            hand_over(deps, name).await?;
        }
    }
    Ok(())
}

/// Hands the free tokens of limit `name` to the jobs in its line, in turn: queues their
/// held tasks. A job that has ended, is suspended or holds nothing more leaves the line.
pub async fn hand_over(deps: &Deps, name: &str) -> anyhow::Result<()> {
    for _ in 0..HAND_OVER_AT_MOST {
        let Some(limit) = deps.limits.get(name).await? else {
            return Ok(());
        };
        let Some(next) = limit.next_in_line().map(str::to_string) else {
            return Ok(());
        };
        let free = limit.max - limit.in_use();
        let queued = match waiting_job(deps, &next).await? {
            Some((job, round)) => {
                let order = crate::core::order::queue_order(&job);
                let (found, _) = held::find(deps, &job, order.as_deref(), 0, free).await?;
                match found.is_empty() {
                    true => 0,
                    false => held::release(deps, &job, round, &found).await?,
                }
            }
            None => 0,
        };
        if queued == 0 {
            // Nothing of it to queue: out of the line, the next one's turn.
            deps.limits
                .change(name, |limit| {
                    if let Some(l) = limit {
                        l.waiting.retain(|w| *w != next);
                    }
                })
                .await?;
        }
    }
    Ok(())
}

/// The job `id` and its round, if it may take tokens now (recorded, not ended, not
/// suspended).
async fn waiting_job(
    deps: &Deps,
    id: &str,
) -> anyhow::Result<Option<(Job, crate::core::state::Round)>> {
    let Ok(id) = JobId::parse(id) else {
        return Ok(None);
    };
    let Some((record, _)) = deps.ledger.job(&id).await? else {
        return Ok(None);
    };
    if record.state.is_terminal() || record.suspended {
        return Ok(None);
    }
    Ok(record.job().ok().map(|job| (job, record.round())))
}

/// Returns to every limit the tokens of tasks and jobs that have ended (or are gone),
/// then hands the free ones to the line.
pub async fn sweep(deps: &Deps) -> anyhow::Result<()> {
    for (name, limit) in deps.limits.list().await? {
        let stale = stale_holders(deps, &limit).await?;
        if !stale.is_empty() {
            tracing::info!(limit = %name, tokens = stale.len(), "returning tokens of ended tasks");
            deps.limits
                .change(&name, |limit| {
                    if let Some(l) = limit {
                        l.holders.retain(|h| !stale.contains(h));
                    }
                })
                .await?;
        }
        hand_over(deps, &name).await?;
    }
    Ok(())
}

/// The holders of `limit` whose task has ended, or whose job ended or is gone.
async fn stale_holders(
    deps: &Deps,
    limit: &Limit,
) -> anyhow::Result<Vec<crate::core::limits::Holder>> {
    let mut by_job: HashMap<(&str, &str), Vec<u32>> = HashMap::new();
    for h in &limit.holders {
        by_job
            .entry((h.job.as_str(), h.incarnation.as_str()))
            .or_default()
            .push(h.task);
    }
    let mut stale = Vec::new();
    for ((job, incarnation), tasks) in by_job {
        let record = match JobId::parse(job) {
            Ok(id) => deps.ledger.job(&id).await?.map(|(r, _)| (id, r)),
            Err(_) => None,
        };
        let ended: Vec<u32> = match record {
            Some((id, r)) if r.incarnation == incarnation && !r.state.is_terminal() => {
                let slots = deps.ledger.slots_of(&id, tasks.iter().copied()).await?;
                tasks
                    .iter()
                    .zip(slots)
                    .filter(|(_, s)| s.state().is_terminal())
                    .map(|(&t, _)| t)
                    .collect()
            }
            _ => tasks,
        };
        stale.extend(ended.into_iter().map(|task| crate::core::limits::Holder {
            job: job.to_string(),
            incarnation: incarnation.to_string(),
            task,
        }));
    }
    Ok(stale)
}
