//! Following a job from the CLI: one line per event for `tessera watch`, a progress bar
//! for `tessera submit --wait` and `tessera wait`.

use std::process::ExitCode;

use tessera::bus::protocol::EventKind;
use tessera::config::Deps;
use tessera::core::job::JobId;
use tessera::roles::client;

/// One line for a person: time, kind, task, attempt, worker, and what it says.
pub(crate) fn describe(event: &tessera::bus::protocol::Event) -> String {
    let mut line = format!("{} {:<13}", event.time_ms, event.kind.as_str());
    if let Some(task) = &event.task {
        line.push_str(&format!(" {task}"));
    }
    if let Some(attempt) = event.attempt {
        line.push_str(&format!(" attempt {attempt}"));
    }
    if let Some(worker) = &event.worker {
        line.push_str(&format!(" on {worker}"));
    }
    if let Some(message) = &event.message {
        line.push_str(&format!(": {message}"));
    }
    for reason in &event.reasons {
        line.push_str(&format!("\n    {reason}"));
    }
    line
}

/// Follows job `id` with a progress bar until it ends; exit 0 only if it is done.
pub(crate) async fn wait_for(deps: &Deps, id: &JobId) -> anyhow::Result<ExitCode> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {pos}/{len} tasks {elapsed}",
        )
        .expect("the template is valid")
        .progress_chars("=> "),
    );
    bar.set_message(id.to_string());
    let mut total_known = false;
    let mut done = std::collections::BTreeSet::new();
    let waiting = client::wait(deps, id, |event| {
        match event.kind {
            EventKind::TaskDone => {
                if let Some(index) = event.index {
                    done.insert(index);
                }
                bar.set_position(done.len() as u64);
            }
            // `println` on a bar says nothing when stderr is no terminal; this always does.
            EventKind::TaskFailed => bar.suspend(|| {
                eprintln!(
                    "task {} failed: {}",
                    event.task.as_ref().map_or("?", |t| t.as_str()),
                    event.message.as_deref().unwrap_or("")
                )
            }),
            _ => {}
        }
        if !total_known
            && let Some(message) = &event.message
            && event.kind == EventKind::JobAccepted
            && let Some(total) = message
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
        {
            bar.set_length(total);
            total_known = true;
        }
    });
    let explain = client::explain_waits(deps, id, |reason| bar.suspend(|| eprintln!("{reason}")));
    let final_event = tokio::select! {
        event = waiting => event?,
        never = explain => match never {},
    };
    bar.finish_and_clear();
    match final_event.kind {
        EventKind::JobDone => {
            eprintln!("{id}: done, {} outputs", final_event.outputs.len());
            Ok(ExitCode::SUCCESS)
        }
        kind => {
            eprintln!(
                "{id}: {}: {}",
                kind.as_str(),
                final_event.message.as_deref().unwrap_or("no reason given")
            );
            for reason in &final_event.reasons {
                eprintln!("  {reason}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
