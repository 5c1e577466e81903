//! Planning: a large job from its submission to every task queued.

use std::time::{Duration, Instant};

use super::{BenchFarm, Samples, Summary, submit_json};

/// Planning: from publishing a submission of a `tasks`-task noop job to every task queued
/// (the job record says so), `runs` times, on a farm without workers; beside it, the raw
/// time to publish and confirm as many task-sized messages one by one in the same run.
pub async fn plan(tasks: u32, runs: usize) -> anyhow::Result<Summary> {
    let farm = BenchFarm::start(0).await?;
    let deps = &farm.deps;
    let mut samples = Vec::with_capacity(runs);
    for run in 0..runs {
        let id = format!("plan-{run}");
        // Capped at its size, the job's window takes every task: all are queued at once.
        let body = format!(
            r#"{{"id": "{id}", "renderer": "noop", "max_workers": {tasks}, "frames": {{"range": "1-{tasks}"}}}}"#
        );
        let job = crate::core::job::JobId::parse(&id).map_err(anyhow::Error::msg)?;
        let t0 = Instant::now();
        submit_json(&deps.js, body).await?;
        loop {
            if let Some((record, _)) = deps.ledger.job(&job).await?
                && record.published
            {
                samples.push(t0.elapsed());
                break;
            }
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(120),
                "job {id} was never queued"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        crate::roles::client::cancel(deps, &job).await?;
    }
    let samples = Samples::new(samples);
    println!("plan: submit -> every task queued (one atomic batch), {tasks} tasks, no workers");
    println!("{}", samples.line(&format!("plan {tasks} tasks")));
    farm.stop().await;
    Ok(vec![format!(
        "(6) planning {tasks} tasks, submit -> every task queued: median {:.2} s (target <= 3 s)",
        samples.percentile(50.0).as_secs_f64()
    )])
}
