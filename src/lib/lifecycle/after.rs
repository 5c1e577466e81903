//! Job on job (`after = ["<job id>", …]`): a job waits, accepted with all its tasks held,
//! until every job it names is done; one of them failing or canceled fails it with a
//! reason that names that job.
//!
//! Event driven, in time proportional to the jobs waiting: the planner files a key
//! `<job>.after.<waiter>` beside each job waited for (one that does not exist yet too),
//! and when a job ends ([`end_job`](super::end_job)) the keys filed beside it — one request
//! — name the jobs to settle. The planner looks at each job waited for again once its key
//! is filed, so that an end it missed (the job ended just before) is settled by it;
//! settling twice changes nothing, so a step cut short is finished by running it again.

use crate::config::Deps;
use crate::core::job::{Job, JobId};
use crate::core::state::JobState;

use super::held;

/// Files that `job` waits for each job of its record's `waiting_for`, then settles those
/// already ended. Called by the planner once the job is recorded and announced.
pub async fn wait_for(deps: &Deps, job: &Job) -> anyhow::Result<()> {
    for upstream in &job.after {
        deps.ledger.add_waiter(upstream, &job.id).await?;
    }
    for upstream in &job.after {
        if let Some((record, _)) = deps.ledger.job(upstream).await?
            && record.state.is_terminal()
        {
            settle(deps, &job.id, upstream, record.state).await?;
        }
    }
    Ok(())
}

/// Settles every job waiting for `upstream`, which ended in `state`. Called when a job
/// ends.
pub async fn upstream_ended(deps: &Deps, upstream: &JobId, state: JobState) -> anyhow::Result<()> {
    for waiter in deps.ledger.waiters(upstream).await? {
        settle(deps, &waiter, upstream, state).await?;
    }
    Ok(())
}

/// `waiter` hears that `upstream` ended in `state`: done, it waits for it no more, and is
/// queued once it waits for nothing; failed or canceled, it fails, naming `upstream`.
async fn settle(
    deps: &Deps,
    waiter: &JobId,
    upstream: &JobId,
    state: JobState,
) -> anyhow::Result<()> {
    let Some((record, _)) = deps.ledger.job(waiter).await? else {
        return Ok(()); // not planned yet: the planner looks at the jobs it waits for then
    };
    if record.state.is_terminal() {
        return Ok(());
    }
    let Ok(job) = record.job() else {
        return Ok(());
    };
    if job.after_frames.as_ref() == Some(upstream) {
        return super::frames::upstream_ended(deps, &job, upstream, state).await;
    }
    if !job.after.contains(upstream) {
        return Ok(());
    }
    if state != JobState::Done {
        let reason = format!(
            "job {upstream}, which it runs after, {}",
            match state {
                JobState::Canceled => "was canceled",
                _ => "failed",
            }
        );
        tracing::info!(job = %waiter, upstream = %upstream, "failing a job whose upstream did not finish");
        return Box::pin(super::end_job(
            deps,
            &job,
            JobState::Failed,
            Some(reason),
            None,
        ))
        .await;
    }
    let (record, changed) = deps
        .ledger
        .update_job(waiter, |r| {
            let before = r.waiting_for.len();
            r.waiting_for.retain(|j| j != upstream);
            !r.state.is_terminal() && r.waiting_for.len() != before
        })
        .await?;
    // A job suspended meanwhile is queued by `tessera resume`.
    if record.state.is_terminal() || !record.waiting_for.is_empty() || record.suspended {
        return Ok(());
    }
    let job = record.job()?;
    if changed {
        let message = format!("released: job {upstream} is done, the last it runs after");
        super::announce_change(deps, &job, record.withdrawals, "released", message).await?;
    }
    // Queued again by a settle run twice: held tasks already queued are not found twice.
    held::queue_held(deps, &job, &record).await?;
    Ok(())
}
