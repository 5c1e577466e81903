//! Status at scale: `tessera status` of a job of a million tasks, planned and not rendered,
//! which reads one tally header per task page; beside it, in the same run, the count of
//! every task's slot that status made before the tallies.

use std::time::{Duration, Instant};

use super::{BenchFarm, Samples, Summary, planned, submit_json};

/// Times [`crate::roles::client::status`] of a `tasks`-task noop job `runs` times on a
/// farm without workers, and the scan of every slot as many times.
pub async fn status(tasks: u32, runs: usize) -> anyhow::Result<Summary> {
    let farm = BenchFarm::start(0).await?;
    let deps = &farm.deps;
    let id = "status-at-scale";
    let body =
        format!(r#"{{"id": "{id}", "renderer": "noop", "frames": {{"range": "1-{tasks}"}}}}"#);
    let job = crate::core::job::JobId::parse(id).map_err(anyhow::Error::msg)?;
    submit_json(&deps.js, body).await?;
    let record = planned(deps, &job, Duration::from_secs(300)).await?;
    let mut answered = Vec::with_capacity(runs);
    let mut scanned = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let status = crate::roles::client::status(deps, &job).await?;
        answered.push(t.elapsed());
        anyhow::ensure!(
            status.tasks.total == tasks,
            "status counted {:?}",
            status.tasks
        );
        let t = Instant::now();
        let counts = deps.ledger.counts(&job, record.tasks).await?;
        scanned.push(t.elapsed());
        anyhow::ensure!(counts == status.tasks, "{counts:?} != {:?}", status.tasks);
    }
    let (answered, scanned) = (Samples::new(answered), Samples::new(scanned));
    println!("status: tessera status of a {tasks}-task noop job, planned, no workers");
    println!("{}", answered.line("status (page tallies)"));
    println!("{}", scanned.line("scan of every task slot"));
    crate::roles::client::cancel(deps, &job).await?;
    farm.stop().await;
    let median = |s: &Samples| s.percentile(50.0).as_secs_f64() * 1000.0;
    Ok(vec![format!(
        "(9) status of a {tasks}-task job: median {:.0} ms (target < 1 s); every slot scanned: {:.0} ms",
        median(&answered),
        median(&scanned)
    )])
}
