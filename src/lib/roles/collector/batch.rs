//! Events in batches: the events at hand are read one by one, their ledger transitions are
//! applied with one compare-and-swap per task page (not one per event), the steps after
//! the transitions of untiled jobs run side by side (those of tiled jobs in order, through
//! the canvases), and each end check is run once per job and page. A tiled
//! `task.done` carries its decoded tiles, so it goes through alone, at once.
//!
//! Each message gets its own result: an event is acknowledged only when its transition,
//! its steps and the end check it called for are stored; a failure of a shared write
//! fails every event of the write (they come back, and every step is idempotent).

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::jetstream;
use futures::StreamExt as _;

use super::ending;
use super::events::{self, Collector, EndCheck, Prepared, Transition};
use super::window::Windows;
use crate::bus::protocol::EventKind;
use crate::core::job::{Job, JobId};
use crate::core::state::{TaskSlot, page_of};

/// The transitions of one job's page in a batch, each with its message's position.
type Group = Vec<(usize, Transition)>;

/// A windowed job's transitions in a batch (task, before and after), and their messages.
type Moved = (Arc<Job>, Vec<(u32, TaskSlot, TaskSlot)>, Vec<usize>);

/// Jobs a collector remembers as started (see [`Collector::started`]).
const STARTED_KEPT: usize = 4096;

/// Most untiled transitions whose steps (a frame copied, tasks released) run at once.
const STEPS_AT_ONCE: usize = 16;

/// Handles `msgs` for `collector`; one result per message, in order.
pub(super) async fn handle(
    collector: &mut Collector,
    msgs: &[&jetstream::Message],
) -> Vec<anyhow::Result<()>> {
    let deps = collector.deps.clone();
    let mut results: Vec<anyhow::Result<()>> = msgs.iter().map(|_| Ok(())).collect();
    // Transitions by job and page, in arrival order within each.
    let mut groups: Vec<((JobId, u32), Group)> = Vec::new();
    let mut ends: HashMap<(JobId, u32), (EndCheck, Vec<usize>)> = HashMap::new();
    // The transitions applied to each windowed job, and the messages they came from.
    let mut moved: HashMap<JobId, Moved> = HashMap::new();
    // The jobs whose tasks started in the batch: the first start of each, and its messages.
    let mut starts: HashMap<(JobId, String), (u64, Vec<usize>)> = HashMap::new();
    for (i, msg) in msgs.iter().enumerate() {
        let prepared = events::prepare(&deps, &mut collector.jobs, &collector.stitching, msg).await;
        let t = match prepared {
            Ok(Prepared::Settled) => continue,
            Ok(Prepared::Changed(job)) => {
                collector.windows.forget(&job);
                // A job running after it frame by frame may have been added.
                results[i] = crate::lifecycle::frames::changed(&deps, &job).await;
                continue;
            }
            Ok(Prepared::Encoding(job)) => {
                super::sequences::start(deps.clone(), job, (*msg).clone());
                results[i] = Err(crate::bus::consume::Deferred.into());
                continue;
            }
            Err(e) => {
                results[i] = Err(e);
                continue;
            }
            Ok(Prepared::Transition(t)) => *t,
        };
        if t.job.auto_chunk.is_some()
            && let Some(ms) = t
                .event
                .frame_ms
                .filter(|_| t.event.kind == EventKind::TaskDone)
        {
            collector.windows.timed(&t.job.id, ms);
        }
        if !t.parts.is_empty() {
            let mut stitching = collector.stitching.lock().await;
            results[i] = alone(&deps, &mut stitching, &mut collector.windows, t).await;
            continue;
        }
        let key = (t.job.id.clone(), page_of(t.index).0);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, group)) => group.push((i, t)),
            None => groups.push((key, vec![(i, t)])),
        }
    }
    for ((job, page), group) in groups {
        let changes: Vec<_> = group.iter().map(|(_, t)| (t.index, t.change)).collect();
        let slots = match deps.ledger.change_page(&job, page, &changes).await {
            Ok(slots) => slots,
            Err(e) => {
                for (i, _) in group {
                    results[i] = Err(anyhow::anyhow!("{e:#}"));
                }
                continue;
            }
        };
        for ((i, t), &(before, after)) in group.iter().zip(&slots) {
            let key = (t.job.id.clone(), t.job.incarnation.clone());
            if let Some(at) = events::started_at(t, before, after)
                && !collector.started.contains(&key)
            {
                let start = starts.entry(key).or_insert((at, Vec::new()));
                start.0 = start.0.min(at);
                start.1.push(*i);
            }
        }
        if group[0].1.job.window > 0 {
            let entry = moved
                .entry(job.clone())
                .or_insert_with(|| (group[0].1.job.clone(), Vec::new(), Vec::new()));
            let tasks = group.iter().map(|(_, t)| t.index);
            entry.1.extend(
                tasks
                    .zip(&slots)
                    .map(|(i, &(before, after))| (i, before, after)),
            );
            entry.2.extend(group.iter().map(|(i, _)| *i));
        }
        // An untiled job's steps run side by side (each its own frame); a tiled job's in
        // order, through the frames being stitched.
        let (tiled, untiled): (Vec<_>, Vec<_>) = group
            .into_iter()
            .zip(slots)
            .partition(|((_, t), _)| t.job.tiles.is_some());
        let mut finished: Vec<_> = futures::stream::iter(untiled)
            .map(|((i, t), (_, after))| {
                let deps = &deps;
                async move { (i, events::finish(deps, None, t, after).await) }
            })
            .buffer_unordered(STEPS_AT_ONCE)
            .collect()
            .await;
        for ((i, t), (_, after)) in tiled {
            let mut stitching = collector.stitching.lock().await;
            let stitching = Some(&mut *stitching);
            finished.push((i, events::finish(&deps, stitching, t, after).await));
        }
        for (i, result) in finished {
            match result {
                Ok(Some(check)) => {
                    let key = (check.0.id.clone(), page_of(check.1).0);
                    ends.entry(key).or_insert((check, Vec::new())).1.push(i);
                }
                Ok(None) => {}
                Err(e) => results[i] = Err(e),
            }
        }
    }
    // Before the end checks: a job that ends in the batch has its start recorded first.
    for ((job, incarnation), (at, owners)) in starts {
        match events::mark_running(&deps, &job, at).await {
            Ok(()) => {
                if collector.started.len() >= STARTED_KEPT {
                    collector.started.clear();
                }
                collector.started.insert((job, incarnation));
            }
            Err(e) => {
                for i in owners {
                    results[i] = Err(anyhow::anyhow!("marking {job} running: {e:#}"));
                }
            }
        }
    }
    for (job, moves, owners) in moved.into_values() {
        if let Err(e) = collector.windows.top_up(&deps, &job, &moves).await {
            for i in owners {
                results[i] = Err(anyhow::anyhow!("queuing held tasks of {}: {e:#}", job.id));
            }
        }
    }
    for ((job, index), owners) in ends.into_values() {
        if let Err(e) = ending::check_end(&deps, &job, index).await {
            for i in owners {
                results[i] = Err(anyhow::anyhow!("{e:#}"));
            }
        }
    }
    results
}

/// One transition on its own: applied, its steps run, its end check run.
async fn alone(
    deps: &crate::config::Deps,
    stitching: &mut super::assemble::Stitching,
    windows: &mut Windows,
    t: Transition,
) -> anyhow::Result<()> {
    let (before, after) = deps
        .ledger
        .change_task(&t.job.id, t.index, t.change)
        .await?;
    let (job, index) = (t.job.clone(), t.index);
    if let Some(at) = events::started_at(&t, before, after) {
        events::mark_running(deps, &job.id, at).await?;
    }
    let end = events::finish(deps, Some(stitching), t, after).await?;
    windows
        .top_up(deps, &job, &[(index, before, after)])
        .await?;
    if let Some((job, index)) = end {
        ending::check_end(deps, &job, index).await?;
    }
    Ok(())
}
