//! Failover: a worker SIGKILLed mid-task, and the time until the task runs on another.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;

use super::{BenchFarm, Samples, Summary, submit_json, wait_for_workers};
use crate::bus::protocol::{self, EventKind};

/// Failover: SIGKILL the worker rendering a task and time until the task starts on another
/// worker, `runs` times, with the default ack deadline. Workers are separate processes (the
/// `tessera-worker` binary beside this one); the rest of the farm runs in this process.
pub async fn failover(runs: usize) -> anyhow::Result<Summary> {
    let farm = BenchFarm::start(0).await?;
    let (client, deps) = (&farm.client, &farm.deps);
    let binary = std::env::current_exe()?
        .parent()
        .context("no folder beside tessera-bench")?
        .join("tessera-worker");
    let spawn = |n: usize| {
        std::process::Command::new(&binary)
            .args(["--id", &format!("fo{n}"), "--renderers", "noop"])
            .env("NATS_URL", &farm.nats)
            .env("TESSERA_STORE", &farm.store)
            .env("RUST_LOG", "warn")
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))
    };
    let mut workers: std::collections::BTreeMap<String, std::process::Child> =
        std::collections::BTreeMap::new();
    let mut next = 0;
    for _ in 0..2 {
        workers.insert(format!("fo{next}"), spawn(next)?);
        next += 1;
    }
    wait_for_workers(deps, 2).await?;
    let mut started = client
        .subscribe(protocol::every_job_events_filter(EventKind::TaskStarted))
        .await?;
    let mut samples = Vec::new();
    for run in 0..runs {
        let id = format!("failover-{run}");
        let body =
            format!(r#"{{"id": "{id}", "renderer": "noop", "settings": {{"sleep_ms": 600000}}}}"#);
        submit_json(&deps.js, body).await?;
        let first = next_start(&mut started, &id).await?;
        let victim = first
            .worker
            .clone()
            .context("task.started without a worker")?;
        let mut child = workers
            .remove(&victim)
            .context("the task started on an unknown worker")?;
        child.kill()?;
        let killed = Instant::now();
        child.wait()?;
        next_start(&mut started, &id).await?;
        samples.push(killed.elapsed());
        crate::roles::client::cancel(
            deps,
            &crate::core::job::JobId::parse(&id).map_err(anyhow::Error::msg)?,
        )
        .await?;
        workers.insert(format!("fo{next}"), spawn(next)?);
        next += 1;
        wait_for_workers(deps, 2).await?;
    }
    let samples = Samples::new(samples);
    println!(
        "failover: SIGKILL of the rendering worker to the task started on another (ack deadline {:?})",
        crate::bus::streams::default_task_ack_wait()
    );
    println!("{}", samples.line("SIGKILL -> task.started elsewhere"));
    for (_, mut child) in workers {
        let _ = child.kill();
        let _ = child.wait();
    }
    farm.stop().await;
    Ok(vec![format!(
        "(3) failover, SIGKILL -> task.started elsewhere: median {:.2} s, max {:.2} s",
        samples.percentile(50.0).as_secs_f64(),
        samples.percentile(100.0).as_secs_f64()
    )])
}

async fn next_start(
    sub: &mut async_nats::Subscriber,
    job: &str,
) -> anyhow::Result<protocol::Event> {
    let subject = protocol::event_subject(job, EventKind::TaskStarted);
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(60), sub.next())
            .await
            .context("no task.started within 60 s")?
            .context("subscription ended")?;
        if msg.subject.as_str() == subject {
            return protocol::decode(&msg.payload).map_err(anyhow::Error::msg);
        }
    }
}
