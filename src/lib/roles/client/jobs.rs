//! `tessera jobs`: the farm's recent and active jobs, each with its state, progress,
//! priority and age, read from the job records and their pages' tallies.

use serde::{Deserialize, Serialize};

use crate::config::Deps;
use crate::core::job::{Job, JobId};
use crate::core::state::{Counts, JobState};

/// One job of `tessera jobs --json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobLine {
    /// Job id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `queued`, `running`, `done`, `failed` or `canceled`.
    pub state: String,
    /// Task counts.
    pub tasks: Counts,
    /// Its priority now.
    pub priority: String,
    /// Its hardware class.
    pub class: String,
    /// Its renderer.
    pub renderer: String,
    /// Whether it is suspended.
    pub suspended: bool,
    /// When it was accepted (ms since the epoch).
    pub created_ms: u64,
    /// When its first task started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
    /// Seconds left at its pace since it started (see [`eta_s`]), while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_s: Option<f64>,
}

/// Seconds left for a job that started at `started_ms` and has `counts` at `now_ms`, at
/// the pace it has kept since it started: none before its first task ended, or once it
/// has ended.
pub fn eta_s(counts: &Counts, started_ms: Option<u64>, now_ms: u64) -> Option<f64> {
    let ended = counts.done + counts.failed + counts.canceled;
    let left = counts.total.saturating_sub(ended);
    let elapsed_ms = now_ms.saturating_sub(started_ms?);
    (ended > 0 && left > 0 && elapsed_ms > 0)
        .then(|| elapsed_ms as f64 / 1000.0 * f64::from(left) / f64::from(ended))
}

/// Which jobs `tessera jobs` lists.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only jobs in one of these states (none: every state).
    pub states: Vec<JobState>,
    /// Only jobs accepted at or after this time (ms since the epoch), or still active.
    pub since_ms: Option<u64>,
}

impl JobFilter {
    fn keeps(&self, state: JobState, created_ms: u64) -> bool {
        (self.states.is_empty() || self.states.contains(&state))
            && self
                .since_ms
                .is_none_or(|since| created_ms >= since || !state.is_terminal())
    }
}

/// A job's class, priority (as changed by `tessera priority`) and renderer, as reported;
/// empty for a record that no longer validates.
pub(super) fn queue_names(job: Option<&Job>) -> [String; 3] {
    job.map_or_else(Default::default, |j| {
        [
            j.class.to_string(),
            j.priority.to_string(),
            j.renderer.to_string(),
        ]
    })
}

/// The jobs `filter` keeps, newest first.
pub async fn jobs(deps: &Deps, filter: &JobFilter) -> anyhow::Result<Vec<JobLine>> {
    let mut lines = Vec::new();
    let now_ms = crate::bus::protocol::now_ms();
    for record in deps.ledger.records().await? {
        if !filter.keeps(record.state, record.created_ms) {
            continue;
        }
        let Some(id) = record
            .spec
            .id
            .as_deref()
            .and_then(|id| JobId::parse(id).ok())
        else {
            continue;
        };
        let tasks = deps.ledger.tally(&id, record.tasks).await?.counts();
        let [class, priority, renderer] = queue_names(record.job().ok().as_ref());
        lines.push(JobLine {
            name: record.spec.name.clone().unwrap_or_else(|| id.to_string()),
            id: id.to_string(),
            state: record.state.as_str().into(),
            priority,
            class,
            renderer,
            suspended: record.suspended,
            created_ms: record.created_ms,
            started_ms: record.started_ms,
            finished_ms: record.finished_ms,
            eta_s: if record.state.is_terminal() {
                None
            } else {
                eta_s(&tasks, record.started_ms, now_ms)
            },
            tasks,
        });
    }
    lines.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(a.id.cmp(&b.id)));
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_keeps_jobs_by_state_and_age_and_always_active_ones() {
        let since = JobFilter {
            states: Vec::new(),
            since_ms: Some(1_000),
        };
        let running = JobFilter {
            states: vec![JobState::Running, JobState::Queued],
            since_ms: None,
        };
        let cases = [
            (&since, JobState::Done, 999, false),
            (&since, JobState::Done, 1_000, true),
            (&since, JobState::Running, 10, true),
            (&running, JobState::Running, 10, true),
            (&running, JobState::Failed, 5_000, false),
            (&JobFilter::default(), JobState::Canceled, 0, true),
        ];
        for (filter, state, created, kept) in cases {
            assert_eq!(filter.keeps(state, created), kept, "{state:?} at {created}");
        }
    }

    #[test]
    fn an_eta_follows_the_pace_since_the_start() {
        let counts = |done, failed| Counts {
            total: 10,
            done,
            failed,
            ..Counts::default()
        };
        let cases = [
            (counts(0, 0), Some(0), 10_000, None),
            (counts(2, 0), None, 10_000, None),
            (counts(2, 0), Some(0), 10_000, Some(40.0)),
            (counts(4, 1), Some(5_000), 10_000, Some(5.0)),
            (counts(10, 0), Some(0), 10_000, None),
        ];
        for (counts, started, now, want) in cases {
            assert_eq!(eta_s(&counts, started, now), want, "{counts:?}");
        }
    }
}
