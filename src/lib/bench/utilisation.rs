//! Utilisation: a job of one-second tasks on two workers of eight slots, and how much of
//! the slots' time went to rendering while work was queued — the rest is what Tessera
//! spends between two renders of a slot (the next pull, the start).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;

use super::{BenchFarm, Summary, bench_worker, submit_json, tempfile_dir};
use crate::bus::protocol::{self, Event, EventKind};

/// Slots of the farm: two workers of eight.
const SLOTS: u32 = 16;

/// Each task sleeps this long.
const TASK_MS: u64 = 1000;

/// Runs `runs` jobs of `waves` × 16 one-second tasks; prints each job's utilisation and
/// returns the median.
pub async fn utilisation(waves: u32, runs: usize) -> anyhow::Result<Summary> {
    let dir = tempfile_dir()?;
    let mut worker = bench_worker(dir.join("cache"));
    worker.slots = SLOTS as usize / 2;
    let farm = BenchFarm::start_with(dir, 2, worker).await?;
    let tasks = waves * SLOTS;
    let mut figures = Vec::new();
    for run in 0..runs.max(1) {
        let id = format!("utilisation-{run}");
        let mut events = farm
            .client
            .subscribe(protocol::job_events_filter(&id))
            .await?;
        let body = format!(
            r#"{{"id": "{id}", "frames": {{"range": "1-{tasks}"}}, "renderer": "noop", "settings": {{"sleep_ms": {TASK_MS}}}}}"#
        );
        submit_json(&farm.deps.js, body).await?;
        let (mut started, mut done) = (HashMap::new(), HashMap::new());
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(120), events.next())
                .await
                .context("no event of the job for two minutes")?
                .context("the subscription ended")?;
            let event: Event = protocol::decode(&msg.payload).map_err(anyhow::Error::msg)?;
            let index = event.index.unwrap_or(u32::MAX);
            match event.kind {
                EventKind::TaskStarted => {
                    started.insert(index, event.time_ms);
                }
                EventKind::TaskDone => {
                    if let Some(at) = event.started_ms {
                        started.insert(index, at);
                    }
                    done.insert(index, event.time_ms);
                }
                EventKind::JobDone => break,
                kind if kind.is_final() => anyhow::bail!("job {id} ended with {kind:?}"),
                _ => {}
            }
        }
        // A slot is busy while its task renders: from its start for the task's sleep (its
        // report, sent after, overlaps the slot's next task and is not counted).
        let spans: Vec<(u64, u64)> = started
            .iter()
            .filter_map(|(i, &s)| done.get(i).map(|&d| (s, d.min(s + TASK_MS))))
            .collect();
        let share = busy_share(&spans, SLOTS);
        let mut starts: Vec<u64> = spans.iter().map(|s| s.0).collect();
        starts.sort();
        let first_wave = starts
            .get(SLOTS as usize - 1)
            .map_or(0, |last| last - starts[0]);
        println!(
            "utilisation: job {id}, {tasks} tasks of {TASK_MS} ms on {SLOTS} slots: {:.2} % busy while work was queued (the first {SLOTS} started within {first_wave} ms)",
            share * 100.0
        );
        figures.push(share);
    }
    figures.sort_by(f64::total_cmp);
    let median = figures[figures.len() / 2];
    farm.stop().await;
    let gap = (1.0 - median) * TASK_MS as f64;
    Ok(vec![format!(
        "(5) utilisation, {tasks} one-second tasks on 2 x 8 slots: {:.2} % of slot time busy while work was queued, about {gap:.0} ms per task between two tasks of a slot (target >= 99 %)",
        median * 100.0
    )])
}

/// The share of `slots` slots' time spent inside the (start, end) spans of `spans`, from
/// the first start to the last — the stretch during which some task was still waiting.
fn busy_share(spans: &[(u64, u64)], slots: u32) -> f64 {
    let (Some(from), Some(to)) = (
        spans.iter().map(|s| s.0).min(),
        spans.iter().map(|s| s.0).max(),
    ) else {
        return 0.0;
    };
    if to <= from {
        return 1.0;
    }
    let busy: u64 = spans
        .iter()
        .map(|&(start, end)| end.min(to).saturating_sub(start.max(from)))
        .sum();
    busy as f64 / (f64::from(slots) * (to - from) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spans, slots, the share expected.
    type Case = (&'static [(u64, u64)], u32, f64);

    #[test]
    fn busy_share_counts_the_spans_inside_the_queued_stretch() {
        let cases: &[Case] = &[
            // Two slots, each busy back to back: fully used until the last start.
            (&[(0, 10), (0, 10), (10, 20), (10, 20)], 2, 1.0),
            // A 2-unit gap before each slot's second task: 8 of 10.
            (&[(0, 10), (0, 10), (12, 22), (12, 22)], 2, 10.0 / 12.0),
            // One slot idle throughout: half.
            (&[(0, 10), (10, 20)], 2, 0.5),
            (&[], 2, 0.0),
            (&[(5, 9)], 1, 1.0),
        ];
        for (spans, slots, expected) in cases {
            let share = busy_share(spans, *slots);
            assert!((share - expected).abs() < 1e-9, "{spans:?}: {share}");
        }
    }
}
