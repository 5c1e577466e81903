//! The end check: a job ends when every task has ended and every finished frame is
//! stored — and, for a done job, its sequence outputs (asked for here when missing).

use std::collections::HashSet;

use crate::config::Deps;
use crate::core::job::Job;
use crate::core::outputs::expected_outputs;
use crate::core::plan;
use crate::core::state::{Counts, JobState};
use crate::lifecycle;
use crate::store::keys;

/// Ends the job if every task has ended and every finished frame is stored.
///
/// A task's slot turns done before its frames are assembled, so that a collector that dies
/// in between finishes the work when the event comes back. Until then another event's
/// check may find every slot ended: the job waits for the missing frames, and the handler
/// still assembling them ends it.
pub(super) async fn check_end(deps: &Deps, job: &Job, index: u32) -> anyhow::Result<()> {
    if !deps.ledger.page_ended(&job.id, index).await? {
        return Ok(());
    }
    let slots = deps.ledger.slots(&job.id, plan::task_count(job)).await?;
    let counts = Counts::of(&slots);
    if !counts.all_ended() {
        return Ok(());
    }
    let outputs = deps.store.list(&keys::output_prefix(job)).await?;
    let stored: HashSet<&String> = outputs.iter().collect();
    if let Some(missing) = expected_outputs(job, &slots)
        .into_iter()
        .map(|name| keys::output(job, &name))
        .find(|key| !stored.contains(key))
    {
        tracing::debug!(job = %job.id, missing, "every task ended; waiting for a frame still being assembled");
        return Ok(());
    }
    if counts.failed == 0 && counts.canceled == 0 {
        // Every frame is in: the sequence outputs come first, then the end.
        if !super::sequences::missing(job, &stored).is_empty() {
            return super::sequences::request(deps, job).await;
        }
        lifecycle::end_job(deps, job, JobState::Done, None, Some(outputs)).await
    } else {
        let message = format!(
            "{} of {} tasks failed; the other outputs are kept",
            counts.failed, counts.total
        );
        lifecycle::end_job(deps, job, JobState::Failed, Some(message), Some(outputs)).await
    }
}
