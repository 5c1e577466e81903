//! The collector: consumes events, keeps job state in the ledger, assembles outputs as soon
//! as their parts exist, releases tasks whose dependencies are met, and ends jobs.
//!
//! Each event is applied through the ledger's compare-and-swap transitions, and every step
//! after a transition is idempotent (outputs are written only if absent; end-of-job events
//! carry a `Nats-Msg-Id`), so the event is acked only when all is done and a collector
//! killed at any instant is simply restarted. Several collectors may share the durable
//! consumer: the first valid completion of a task wins, whichever collector sees it.
//!
//! - `events`: one event's transition and the steps after it;
//! - `batch`: the events at hand, one page write for many transitions;
//! - `assemble`: tiles stitched as they land, frames written when their group is done;
//! - `ending`: the end check;
//! - `advisories`: tasks JetStream gave up on, failed;
//! - `leases`: the tasks of a worker whose lease expired, handed back at once;
//! - `retention`: jobs that ended longer ago than `--keep-jobs`, deleted.

mod advisories;
mod assemble;
mod batch;
mod ending;
mod events;
mod leases;
mod retention;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::bus::consume::{self, Puller};
use crate::bus::streams;
use crate::config::Deps;

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

/// Runs the collector until `shutdown`; the event in hand is finished first.
pub async fn run(
    deps: Deps,
    config: CollectorConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let events = async {
        let mut puller = Puller::new(streams::collector_consumer(&deps.js).await?, 64);
        let mut collector = events::Collector {
            deps: deps.clone(),
            jobs: Default::default(),
            stitching: assemble::Stitching::new(config.canvas.bytes),
        };
        tracing::info!("collector ready");
        consume::serve(&mut puller, &shutdown, "an event", &mut collector).await;
        tracing::info!("collector stopped");
        anyhow::Ok(())
    };
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
    let (events, advisories, (), ()) = tokio::join!(events, advisories, leases, retention);
    events.and(advisories)
}
