//! Frame by frame across jobs (`after_frames = "<job id>"`): frame N of a job waits only
//! for frame N of the job it names, its upstream (a simulation feeding a render, a render
//! feeding a comp), so the second job starts once the first's first frame is done. A
//! frame failing upstream fails only the tasks of that frame here; the upstream job
//! failing or canceled fails the tasks still waiting for it.
//!
//! Event driven, in time proportional to the tasks released: an upstream's record lists
//! the jobs known to run after it frame by frame (`frame_waiters`). When one of its
//! chunks is done (every layer and tile), the collector releases in each waiter the tasks
//! of the same frames whose other waits are over ([`dependents_of_done`]); when one fails for
//! good, those tasks fail, by a `task.failed` event each that the waiter's collector
//! handles as any other ([`upstream_failed`]).
//!
//! Who waits for whom is filed from both sides, so that the order of submission does not
//! matter: the waiter's planner files the key `<upstream>.after.<waiter>`, then adds the
//! waiter to the upstream's record if there is one ([`wait_for`]); the upstream's planner,
//! once its record exists, adds the waiters whose keys it finds ([`find_waiters`]). One
//! side or the other sees the pair. Whoever adds a waiter announces a change of the
//! upstream, and the collector that reads it releases what the upstream's done frames
//! allow ([`changed`]): a frame done before the collector knew of the waiter is caught
//! there, one done after by the collector's own release. Every step is idempotent.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::bus::protocol::{Event, EventKind};
use crate::bus::publish;
use crate::config::Deps;
use crate::core::job::{FailurePolicy, Job, JobId};
use crate::core::plan::{self, TaskPlan};
use crate::core::state::{Change, JobState, TaskSlot, TaskState};

/// Time spent releasing the tasks that waited for a done one (of their own job or of the
/// one they run after frame by frame), in nanoseconds, and the releases timed: what
/// [`releasing`] reports.
static RELEASING: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// The time this process has spent releasing dependents since it started, and how many
/// done tasks it released them for (`tessera-bench chain` reads it).
pub fn releasing() -> (Duration, u64) {
    (
        Duration::from_nanos(RELEASING[0].load(Ordering::Relaxed)),
        RELEASING[1].load(Ordering::Relaxed),
    )
}

/// Releases the tasks that waited for task `index` of `job`, which is done: those of its
/// own job (a layer after its layer) and those of jobs that run after it frame by frame.
pub async fn dependents_of_done(deps: &Deps, job: &Job, index: u32) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let dependents = plan::dependents(job, index);
    release(deps, job, &dependents).await?;
    upstream_done(deps, job, index).await?;
    let spent = t0.elapsed().as_nanos() as u64;
    RELEASING[0].fetch_add(spent, Ordering::Relaxed);
    RELEASING[1].fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// What a job's tasks wait for in the job they run after frame by frame.
pub enum Upstream<'a> {
    /// It runs after no job frame by frame.
    Nothing,
    /// It runs after a job not submitted yet: every task waits.
    NotYet,
    /// It runs after this job.
    Job(Box<Cow<'a, Job>>),
}

impl Upstream<'_> {
    /// The upstream of `job`, read from its record.
    pub async fn of(deps: &Deps, job: &Job) -> anyhow::Result<Upstream<'static>> {
        let Some(id) = &job.after_frames else {
            return Ok(Upstream::Nothing);
        };
        Ok(match deps.ledger.job(id).await? {
            Some((record, _)) => match record.job() {
                Ok(upstream) => Upstream::Job(Box::new(Cow::Owned(upstream))),
                Err(_) => Upstream::NotYet,
            },
            None => Upstream::NotYet,
        })
    }

    /// Which of `tasks` (of the job running after it) have their frames done upstream (a
    /// frame it does not render waits for nothing): one read per page of the upstream's
    /// tasks concerned.
    async fn done(&self, deps: &Deps, tasks: &[TaskPlan]) -> anyhow::Result<Vec<bool>> {
        let upstream = match self {
            Upstream::Nothing => return Ok(vec![true; tasks.len()]),
            Upstream::NotYet => return Ok(vec![false; tasks.len()]),
            Upstream::Job(upstream) => upstream,
        };
        let theirs: Vec<Vec<u32>> = tasks
            .iter()
            .map(|t| plan::tasks_of_frames(upstream, &t.frames))
            .collect();
        let done = done_among(deps, &upstream.id, theirs.iter().flatten().copied()).await?;
        Ok(theirs
            .iter()
            .map(|them| them.iter().all(|u| done.contains(u)))
            .collect())
    }
}

/// Those of `indices` of job `job` whose tasks are done: one read per page concerned.
async fn done_among(
    deps: &Deps,
    job: &JobId,
    indices: impl Iterator<Item = u32>,
) -> anyhow::Result<std::collections::HashSet<u32>> {
    let mut indices: Vec<u32> = indices.collect();
    indices.sort_unstable();
    indices.dedup();
    let slots = deps.ledger.slots_of(job, indices.iter().copied()).await?;
    Ok(indices
        .into_iter()
        .zip(slots)
        .filter(|(_, s)| s.state() == TaskState::Done)
        .map(|(i, _)| i)
        .collect())
}

/// Queues those of `job`'s tasks `candidates` whose waits are over: the tasks of their own
/// job they wait for, and their frames upstream. Held instead while the job is suspended
/// (`tessera resume` queues them), or queued as they get tokens when it has limits.
async fn release(deps: &Deps, job: &Job, candidates: &[u32]) -> anyhow::Result<()> {
    if candidates.is_empty() {
        return Ok(());
    }
    let upstream = Upstream::of(deps, job).await?;
    release_after(deps, job, &upstream, candidates).await
}

/// [`release`], with the upstream read already.
async fn release_after(
    deps: &Deps,
    job: &Job,
    upstream: &Upstream<'_>,
    candidates: &[u32],
) -> anyhow::Result<()> {
    let tasks: Vec<TaskPlan> = candidates.iter().map(|&i| plan::task(job, i)).collect();
    let waits = tasks.iter().flat_map(|t| t.waits_for.iter().copied());
    let own = done_among(deps, &job.id, waits).await?;
    let theirs = upstream.done(deps, &tasks).await?;
    let ready: Vec<TaskPlan> = tasks
        .into_iter()
        .zip(theirs)
        .filter(|(t, theirs)| *theirs && t.waits_for.iter().all(|w| own.contains(w)))
        .map(|(t, _)| t)
        .collect();
    queue(deps, job, &ready).await
}

/// Queues `ready` tasks of `job` (see [`release`]). A task queued already is published
/// again — deduplicated by its `Nats-Msg-Id` — so that a step cut short by a crash is
/// finished; one that moved on is left alone.
async fn queue(deps: &Deps, job: &Job, ready: &[TaskPlan]) -> anyhow::Result<()> {
    if ready.is_empty() {
        return Ok(());
    }
    let round = deps
        .ledger
        .job(&job.id)
        .await?
        .map(|(r, _)| r.round())
        .unwrap_or_default();
    let mut released = false;
    let mut key = false;
    for task in ready {
        if job.suspended || !job.limits.is_empty() {
            let (_, after) = deps
                .ledger
                .change_task(&job.id, task.index, Change::Withhold)
                .await?;
            if !job.suspended && after.state() == TaskState::Held {
                let held = [(task.index, after.attempt())];
                super::held::release(deps, job, round, &held).await?;
            }
            continue;
        }
        let (before, after) = deps
            .ledger
            .change_task(&job.id, task.index, Change::Release)
            .await?;
        if before != after || after.state() == TaskState::Queued {
            // A task queued again by `tessera retry` goes on with its attempt numbers.
            publish::task(&deps.js, job, task, round, after.attempt())
                .await?
                .confirmed()
                .await?;
            released = true;
            key |= crate::core::order::is_key(job, task);
        }
    }
    if released {
        publish::doorbell(&deps.client, &job.class, job.priority, job.renderer, key).await;
    }
    Ok(())
}

/// The job `id`, read from its record, if it still runs after `upstream` frame by frame
/// and has not ended.
async fn live_waiter(deps: &Deps, id: &JobId, upstream: &JobId) -> anyhow::Result<Option<Job>> {
    let Some((record, _)) = deps.ledger.job(id).await? else {
        return Ok(None);
    };
    if record.state.is_terminal() || record.spec.after_frames.as_deref() != Some(upstream.as_str())
    {
        return Ok(None);
    }
    Ok(record.job().ok())
}

/// Task `index` of `job` is done: once its whole chunk is (every layer and tile), the
/// tasks of the same frames are released in each job that runs after it frame by frame.
async fn upstream_done(deps: &Deps, job: &Job, index: u32) -> anyhow::Result<()> {
    if job.frame_waiters.is_empty() {
        return Ok(());
    }
    let chunk = plan::coordinates(job, index).chunk;
    let slots = deps
        .ledger
        .slots_of(&job.id, plan::chunk_tasks(job, chunk))
        .await?;
    if !slots.iter().all(|s| s.state() == TaskState::Done) {
        return Ok(());
    }
    let frames = plan::task(job, index).frames;
    let upstream = Upstream::Job(Box::new(Cow::Borrowed(job)));
    for waiter in &job.frame_waiters {
        let Some(waiter) = live_waiter(deps, waiter, &job.id).await? else {
            continue;
        };
        let candidates = plan::tasks_of_frames(&waiter, &frames);
        release_after(deps, &waiter, &upstream, &candidates).await?;
    }
    Ok(())
}

/// Task `index` of `job` failed for good: in each job that runs after it frame by frame,
/// the tasks of the same frames fail, naming them.
pub async fn upstream_failed(deps: &Deps, job: &Job, index: u32) -> anyhow::Result<()> {
    if job.frame_waiters.is_empty() {
        return Ok(());
    }
    let frames = plan::task(job, index).frames;
    let what = match frames.as_slice() {
        [one] => format!("frame {one}"),
        [first, .., last] => format!("frames {first}-{last}"),
        [] => return Ok(()),
    };
    let reason = format!(
        "{what} of job {}, which it runs after frame by frame, failed",
        job.id
    );
    for waiter in &job.frame_waiters {
        let Some(waiter) = live_waiter(deps, waiter, &job.id).await? else {
            continue;
        };
        let candidates = plan::tasks_of_frames(&waiter, &frames);
        let slots = deps
            .ledger
            .slots_of(&waiter.id, candidates.iter().copied())
            .await?;
        let waiting: Vec<(u32, TaskSlot)> = candidates.into_iter().zip(slots).collect();
        fail_waiting(deps, &waiter, &waiting, &reason).await?;
    }
    Ok(())
}

/// Fails those of `tasks` (index and slot) of `job` that still wait, saying `reason`: a
/// `task.failed` event each, which the collector applies as any other (the job's failure
/// policy, the tasks waiting for them, its end).
async fn fail_waiting(
    deps: &Deps,
    job: &Job,
    tasks: &[(u32, TaskSlot)],
    reason: &str,
) -> anyhow::Result<()> {
    let mut pending = Vec::new();
    for &(index, slot) in tasks {
        if slot.state() != TaskState::Waiting {
            continue;
        }
        let mut event = Event::new(EventKind::TaskFailed, job.id.as_str());
        event.task = Some(plan::task(job, index).id);
        event.index = Some(index);
        event.attempt = Some(slot.attempt());
        event.incarnation = Some(job.incarnation.clone());
        event.message = Some(reason.to_string());
        pending.push(publish::event_pending(&deps.js, &event, None).await?);
    }
    for stored in pending {
        stored.confirmed().await?;
    }
    Ok(())
}

/// `waiter` hears that `upstream`, which it runs after frame by frame, ended in `state`.
/// Failed or canceled, the tasks still waiting for its frames fail: under
/// `on_failure = "fail"` the whole job, with a reason naming `upstream`.
pub async fn upstream_ended(
    deps: &Deps,
    waiter: &Job,
    upstream: &JobId,
    state: JobState,
) -> anyhow::Result<()> {
    if state == JobState::Done {
        return Ok(()); // each frame released its tasks as it was done
    }
    let Some((record, _)) = deps.ledger.job(upstream).await? else {
        return Ok(());
    };
    let Ok(upstream_job) = record.job() else {
        return Ok(());
    };
    let theirs = deps
        .ledger
        .slots(upstream, plan::task_count(&upstream_job))
        .await?;
    let ours = deps
        .ledger
        .slots(&waiter.id, plan::task_count(waiter))
        .await?;
    let stranded: Vec<(u32, TaskSlot)> = (0..plan::task_count(waiter))
        .filter(|&i| ours[i as usize].state() == TaskState::Waiting)
        .filter(|&i| {
            plan::tasks_of_frames(&upstream_job, &plan::task(waiter, i).frames)
                .iter()
                .any(|&u| theirs[u as usize].state() != TaskState::Done)
        })
        .map(|i| (i, ours[i as usize]))
        .collect();
    if stranded.is_empty() {
        return Ok(());
    }
    let reason = format!(
        "job {upstream}, which it runs after frame by frame, {}",
        match state {
            JobState::Canceled => "was canceled",
            _ => "failed",
        }
    );
    if waiter.retry.on_failure == FailurePolicy::Fail {
        tracing::info!(job = %waiter.id, upstream = %upstream, "failing a job whose upstream did not finish");
        return Box::pin(super::end_job(
            deps,
            waiter,
            JobState::Failed,
            Some(reason),
            None,
        ))
        .await;
    }
    fail_waiting(deps, waiter, &stranded, &reason).await
}

/// Releases `waiter`'s waiting tasks whose frames are done in `upstream` and whose own
/// waits are over: run when the collector hears that `waiter` runs after `upstream`.
async fn catch_up(deps: &Deps, upstream: &Job, waiter: &Job) -> anyhow::Result<()> {
    let theirs = deps
        .ledger
        .slots(&upstream.id, plan::task_count(upstream))
        .await?;
    let ours = deps
        .ledger
        .slots(&waiter.id, plan::task_count(waiter))
        .await?;
    let done = |slots: &[TaskSlot], i: u32| slots[i as usize].state() == TaskState::Done;
    let ready: Vec<TaskPlan> = (0..plan::task_count(waiter))
        .filter(|&i| ours[i as usize].state() == TaskState::Waiting)
        .map(|i| plan::task(waiter, i))
        .filter(|t| t.waits_for.iter().all(|&w| done(&ours, w)))
        .filter(|t| {
            plan::tasks_of_frames(upstream, &t.frames)
                .into_iter()
                .all(|u| done(&theirs, u))
        })
        .collect();
    queue(deps, waiter, &ready).await
}

/// The collector read a change of job `id`: when jobs run after it frame by frame, what
/// its done frames allow them is released (a waiter it has just heard of among them).
pub async fn changed(deps: &Deps, id: &JobId) -> anyhow::Result<()> {
    let Some((record, _)) = deps.ledger.job(id).await? else {
        return Ok(());
    };
    if record.frame_waiters.is_empty() {
        return Ok(());
    }
    let Ok(upstream) = record.job() else {
        return Ok(());
    };
    for waiter in &record.frame_waiters {
        if let Some(waiter) = live_waiter(deps, waiter, id).await? {
            catch_up(deps, &upstream, &waiter).await?;
        }
    }
    Ok(())
}

/// Files, from the side of `job` just planned, that it runs after its `after_frames` job
/// frame by frame: the key beside that job, then — if that job has a record — itself among
/// that job's waiters. One that ended failed or canceled fails what waits for it here.
pub async fn wait_for(deps: &Deps, job: &Job) -> anyhow::Result<()> {
    let Some(upstream) = &job.after_frames else {
        return Ok(());
    };
    deps.ledger.add_waiter(upstream, &job.id).await?;
    let Some((record, _)) = deps.ledger.job(upstream).await? else {
        return Ok(()); // its planner finds the key
    };
    add_waiter(deps, upstream, &job.id).await?;
    if record.state.is_terminal() {
        upstream_ended(deps, job, upstream, record.state).await?;
    }
    Ok(())
}

/// Files, from the side of `job` just recorded, those of `waiters` (the jobs filed as
/// running after it, read once its record existed) that run after it frame by frame;
/// returns whether there were any.
pub async fn find_waiters(deps: &Deps, job: &Job, waiters: &[JobId]) -> anyhow::Result<bool> {
    let mut found = false;
    for waiter in waiters {
        let Some((record, _)) = deps.ledger.job(waiter).await? else {
            continue;
        };
        if record.spec.after_frames.as_deref() == Some(job.id.as_str()) {
            add_waiter(deps, &job.id, waiter).await?;
            found = true;
        }
    }
    Ok(found)
}

/// Adds `waiter` to `upstream`'s record and announces the change (once per waiter), which
/// has the collector release what `upstream`'s done frames allow.
async fn add_waiter(deps: &Deps, upstream: &JobId, waiter: &JobId) -> anyhow::Result<()> {
    let (record, _) = deps
        .ledger
        .update_job(upstream, |r| {
            let new = !r.frame_waiters.contains(waiter);
            if new {
                r.frame_waiters.push(waiter.clone());
            }
            new
        })
        .await?;
    let Ok(job) = record.job() else {
        return Ok(());
    };
    let message = format!("job {waiter} runs after it frame by frame");
    let what = format!("frame-waiter-{waiter}");
    super::announce_change(deps, &job, record.withdrawals, &what, message).await?;
    Ok(())
}
