//! The step of a job's life that more than one role takes: ending it — by the collector
//! when its last task ends or one fails under policy `fail`, by the client on
//! `tessera cancel`. It lives below the roles so that neither imports the other.

use crate::bus::protocol::{self, Event, EventKind};
use crate::bus::{publish, streams};
use crate::config::Deps;
use crate::core::job::Job;
use crate::core::plan;
use crate::core::state::{Change, JobState};
use crate::store::keys;

/// Ends `job` in `state` (done, failed or canceled): records it, removes its queued tasks,
/// stops its running renders and announces it, listing `outputs` (the job's output keys,
/// listed from the store when `None`). Idempotent.
pub async fn end_job(
    deps: &Deps,
    job: &Job,
    state: JobState,
    message: Option<String>,
    outputs: Option<Vec<String>>,
) -> anyhow::Result<()> {
    let (record, changed) = deps
        .ledger
        .update_job(&job.id, |r| {
            if r.state.is_terminal() {
                return false;
            }
            r.state = state;
            r.finished_ms = Some(protocol::now_ms());
            r.message = message.clone();
            true
        })
        .await?;
    if !changed && record.state != state {
        return Ok(()); // it ended otherwise already
    }
    // Whatever is left of the job in the queue goes: queued tasks of a failed or canceled
    // job, late duplicates (a lost ack's redelivery) of a done one.
    streams::purge_job_tasks(&deps.js, &job.id).await?;
    if state != JobState::Done {
        deps.ledger
            .change_all(&job.id, plan::task_count(job), Change::Cancel)
            .await?;
        publish::stop_renders(&deps.client, &job.id).await?;
    }
    let kind = match state {
        JobState::Done => EventKind::JobDone,
        JobState::Canceled => EventKind::JobCanceled,
        _ => EventKind::JobFailed,
    };
    let mut event = Event::new(kind, job.id.as_str());
    event.message = record.message.clone();
    let outputs = match outputs {
        Some(outputs) => outputs,
        None => deps.store.list(&keys::output_prefix(&job.id)).await?,
    };
    if outputs.len() <= 10_000 {
        event.outputs = outputs;
    }
    let msg_id = protocol::end_msg_id(&job.id, kind.as_str(), record.finished_ms.unwrap_or(0));
    publish::event_pending(&deps.js, &event, Some(&msg_id))
        .await?
        .confirmed()
        .await?;
    if changed {
        tracing::info!(job = %job.id, state = state.as_str(), "job ended");
    }
    Ok(())
}
