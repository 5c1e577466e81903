//! The dashboard's job page in a real headless Chromium: from the page's navigation to the
//! whole job shown (its status and every task drawn in the grid), for a job of many tasks
//! against a job of one on the same farm in the same run.

use std::time::Duration;

use super::browser::Browser;
use super::{BenchFarm, Samples, Summary, planned, print_against, submit_json};
use crate::core::job::JobId;

/// Opens the page of a `tasks`-task noop job (planned, no workers) and of a one-task job,
/// `runs` times each; the page's own mark says when it had drawn everything.
pub async fn dashboard(tasks: u32, runs: usize) -> anyhow::Result<Summary> {
    let farm = BenchFarm::start(0).await?;
    let deps = &farm.deps;
    let jobs = [("dashboard-one", 1), ("dashboard-many", tasks)];
    for (id, frames) in jobs {
        let body =
            format!(r#"{{"id": "{id}", "renderer": "noop", "frames": {{"range": "1-{frames}"}}}}"#);
        submit_json(&deps.js, body).await?;
    }
    for (id, _) in jobs {
        let job = JobId::parse(id).map_err(anyhow::Error::msg)?;
        planned(deps, &job, Duration::from_secs(120)).await?;
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let config = crate::web::WebConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        tokens: Vec::new(),
    };
    let (bound, _) = crate::web::serve(deps.clone(), config, stop.clone()).await?;
    let browser = Browser::start(1400, 1000).await?;
    let mut shown = [Vec::new(), Vec::new()];
    for _ in 0..runs {
        for (i, (id, _)) in jobs.iter().enumerate() {
            browser.goto("about:blank").await?;
            browser.goto(&format!("http://{bound}/#/jobs/{id}")).await?;
            let mark = browser
                .wait_for(
                    "return document.body.dataset.rendered || null",
                    Duration::from_secs(60),
                )
                .await?;
            let ms: f64 = mark.as_str().unwrap_or("").parse()?;
            shown[i].push(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    browser.close().await?;
    stop.cancel();
    let [one, many] = shown.map(Samples::new);
    println!(
        "dashboard: a job's page, navigation to its status and every task drawn (headless Chromium)"
    );
    let ratio = print_against(
        ("page of a 1-task job", &one),
        (&format!("page of a {tasks}-task job"), &many),
        &format!("{tasks} tasks against 1"),
    );
    farm.stop().await;
    Ok(vec![format!(
        "(10) job page of {tasks} tasks, first render: median {:.0} ms (a 1-task job's: {:.0} ms, ×{ratio:.1})",
        many.percentile(50.0).as_secs_f64() * 1000.0,
        one.percentile(50.0).as_secs_f64() * 1000.0,
    )])
}
