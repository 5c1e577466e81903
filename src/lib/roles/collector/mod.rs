//! The collector: consumes events, keeps job state in the ledger, assembles outputs as soon
//! as their parts exist, releases tasks whose dependencies are met, and ends jobs.
//!
//! Each event is applied through the ledger's compare-and-swap transitions, and every step
//! after a transition is idempotent (outputs are written only if absent; end-of-job events
//! carry a `Nats-Msg-Id`), so the event is acked only when all is done and a collector
//! killed at any instant is simply restarted. Several collectors share the events by
//! partition (a hash of the job id): each partition is served by one live collector, and
//! taken over by another within about a second of its collector's death. Should two serve
//! one for a moment, the first valid completion of a task still wins.
//!
//! - `partitions`: the collectors' leases and their share of the event partitions;
//! - `events`: one event's transition and the steps after it;
//! - `batch`: the events at hand, one page write for many transitions;
//! - `assemble`: tiles stitched as they land, frames written when their group is done;
//! - `composite`: a frame's layers composited once they are all stored;
//! - `ending`: the end check;
//! - `sequences`: once every frame is in, the movie, animation and contact sheet, graded;
//! - `advisories`: tasks JetStream gave up on, failed;
//! - `leases`: the tasks of a worker whose lease expired, handed back at once;
//! - `retention`: jobs that ended longer ago than `--keep-jobs`, deleted;
//! - `window`: the held tasks of windowed jobs, queued as their queued ones start (and
//!   the tokens of a job's limits given back as its tasks end);
//! - every 2 s, tokens of tasks that ended without giving them back return,
//!   and free ones go to the jobs waiting in line
//!   ([`tokens::sweep`](crate::lifecycle::tokens::sweep)).

mod advisories;
mod assemble;
mod batch;
mod composite;
mod ending;
mod events;
mod leases;
mod partitions;
mod retention;
mod sequences;
mod window;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::bus::consume::{self, Puller};
use crate::bus::streams;
use crate::config::Deps;

/// How often a collector sweeps the limits.
const LIMITS_SWEEP: Duration = Duration::from_secs(2);

/// How a collector runs.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CollectorConfig {
    /// Delete jobs that ended longer ago than this ("30d", "12h"): their outputs, logs and
    /// records (published versions stay). Default: keep every job until `tessera delete`.
    #[arg(long, env = "TESSERA_KEEP_JOBS", value_parser = humantime::parse_duration)]
    pub keep_jobs: Option<Duration>,
    /// Memory for frames being stitched.
    #[command(flatten)]
    pub canvas: crate::config::CanvasBudget,
}

/// Runs the collector until `shutdown`; the events in hand are finished first.
pub async fn run(
    deps: Deps,
    config: CollectorConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let id = format!("{}-{}", crate::config::hostname(), nuid::next());
    let stitching = Arc::new(tokio::sync::Mutex::new(assemble::Stitching::new(
        config.canvas.bytes,
    )));
    tracing::info!(collector = id, "collector ready");
    let legacy = partitions::drain_legacy(deps.clone(), stitching.clone(), shutdown.clone());
    let events = partitions::run(deps.clone(), id, stitching, shutdown.clone());
    let advisories = async {
        let mut puller = Puller::new(streams::advisories_consumer(&deps.js).await?, 16);
        let mut handler = advisories::Advisories { deps: deps.clone() };
        consume::serve(&mut puller, &shutdown, "an advisory", &mut handler).await;
        anyhow::Ok(())
    };
    let leases = leases::watch(deps.clone(), shutdown.clone());
    let retention = async {
        if let Some(keep) = config.keep_jobs {
            retention::run(deps.clone(), keep, shutdown.clone()).await;
        }
    };
    let limits = async {
        let mut every = tokio::time::interval(LIMITS_SWEEP);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = every.tick() => {}
            }
            if let Err(e) = crate::lifecycle::tokens::sweep(&deps).await {
                tracing::warn!(error = %e, "sweeping the limits");
            }
        }
    };
    let (legacy, events, advisories, (), (), ()) =
        tokio::join!(legacy, events, advisories, leases, retention, limits);
    tracing::info!("collector stopped");
    legacy.and(events).and(advisories)
}
