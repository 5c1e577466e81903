//! Following a job from the CLI (`tessera watch`, `submit --wait`, `wait`): where it
//! stands, then every change. On a terminal, live bars (the job, and each chunk of frames
//! being rendered for tiled and layered jobs) with the rate and ETA, and failures and
//! retries printed above them as they happen; elsewhere plain lines, one per change;
//! with `--json`, one JSON object a line. The outputs are listed at the end.

use std::collections::HashMap;
use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use tessera::bus::protocol::{Event, EventKind};
use tessera::config::Deps;
use tessera::core::job::JobId;
use tessera::roles::client::{self, Status, Watched, progress::Progress, progress::Snapshot};

use crate::report;

/// One line for a person: kind, task, attempt, worker, and what it says.
pub(crate) fn describe(event: &tessera::bus::protocol::Event) -> String {
    let mut line = format!("{:<13}", event.kind.as_str());
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

/// Where a watch writes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Out {
    /// Standard output (`tessera watch`).
    Stdout,
    /// Standard error (`submit --wait`, `wait`: standard output keeps the job id).
    Stderr,
}

impl Out {
    fn is_terminal(self) -> bool {
        match self {
            Out::Stdout => std::io::stdout().is_terminal(),
            Out::Stderr => std::io::stderr().is_terminal(),
        }
    }

    fn line(self, text: &str) {
        let _ = match self {
            Out::Stdout => writeln!(std::io::stdout(), "{text}"),
            Out::Stderr => writeln!(std::io::stderr(), "{text}"),
        };
    }
}

/// How a watch shows the job.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Live bars (a terminal).
    Bars,
    /// Plain lines, one per change.
    Lines,
    /// One JSON object a line.
    Json,
}

/// The rate and ETA, for a line or a bar: `1.5 tasks/s, ETA 1m 20s`.
fn pace(s: &Snapshot) -> String {
    let mut parts = Vec::new();
    if let Some(rate) = s.rate {
        parts.push(format!("{rate:.1} tasks/s"));
    }
    match s.eta_s {
        Some(eta) if eta < 1.0 => parts.push("ETA <1s".into()),
        Some(eta) => parts.push(format!(
            "ETA {}",
            report::span(Duration::from_secs_f64(eta))
        )),
        None => {}
    }
    parts.join(", ")
}

/// One plain line for a change: the event, then where the job stands.
fn line_for(event: &Event, s: &Snapshot) -> String {
    let mut line = format!("{} {}", report::clock(event.time_ms), describe_short(event));
    let mut standing = vec![format!("{}/{} done", s.done, s.total)];
    if s.running > 0 {
        standing.push(format!("{} running", s.running));
    }
    if s.retried > 0 {
        standing.push(format!("{} retried", s.retried));
    }
    if s.failed > 0 {
        standing.push(format!("{} failed", s.failed));
    }
    if let (Some(chunk), Some([done, of])) = (&s.chunk, s.chunk_done) {
        standing.push(format!("{chunk} {done}/{of}"));
    }
    let pace = pace(s);
    if !pace.is_empty() {
        standing.push(pace);
    }
    if event.kind.as_str().starts_with("task.") || event.kind == EventKind::JobAccepted {
        line.push_str(&format!(" | {}", standing.join(", ")));
    }
    line
}

/// The event as [`describe`] says it, on one line (rejection reasons joined).
fn describe_short(event: &Event) -> String {
    let mut text = describe(event).replace("\n    ", "; ");
    if let Some(progress) = event
        .progress
        .filter(|_| event.kind == EventKind::TaskProgress)
    {
        text.push_str(&format!(" {:.0}%", progress * 100.0));
    }
    text
}

/// The first line of a watch: where the job stands.
fn began_line(id: &JobId, status: Option<&Status>) -> String {
    match status {
        None => format!("{id}: submitted, not planned yet"),
        Some(s) => {
            let t = &s.tasks;
            let mut line = format!(
                "{} ({}): {}, {} done, {} running, {} queued, {} failed",
                s.id,
                s.name,
                s.state,
                report::progress(t.done, t.total),
                t.running,
                t.queued,
                t.failed
            );
            if let Some(message) = &s.message {
                line.push_str(&format!("; {message}"));
            }
            line
        }
    }
}

/// A bar for the whole job or for a chunk.
fn bar(total: u64, template: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    bar
}

/// The live bars of a terminal watch.
struct Bars {
    multi: indicatif::MultiProgress,
    job: indicatif::ProgressBar,
    chunks: HashMap<String, indicatif::ProgressBar>,
}

impl Bars {
    fn new(out: Out, id: &JobId) -> Bars {
        let target = match out {
            Out::Stdout => indicatif::ProgressDrawTarget::stdout(),
            Out::Stderr => indicatif::ProgressDrawTarget::stderr(),
        };
        let multi = indicatif::MultiProgress::with_draw_target(target);
        let job = multi.add(bar(
            0,
            "{spinner} {prefix} [{bar:30}] {pos}/{len} tasks {elapsed} {msg}",
        ));
        job.set_prefix(id.to_string());
        job.enable_steady_tick(Duration::from_millis(200));
        Bars {
            multi,
            job,
            chunks: HashMap::new(),
        }
    }

    fn show(&mut self, s: &Snapshot) {
        self.job.set_length(u64::from(s.total));
        self.job.set_position(u64::from(s.done));
        let mut msg = pace(s);
        if s.failed > 0 || s.retried > 0 {
            msg.push_str(&format!(" ({} retried, {} failed)", s.retried, s.failed));
        }
        self.job.set_message(msg);
        if let (Some(chunk), Some([done, of])) = (&s.chunk, s.chunk_done) {
            let bar = self.chunks.entry(chunk.clone()).or_insert_with(|| {
                let bar = self
                    .multi
                    .add(bar(u64::from(of), "  {prefix:>14} [{bar:20}] {pos}/{len}"));
                bar.set_prefix(chunk.clone());
                bar
            });
            bar.set_position(u64::from(done));
            if done >= of {
                bar.finish_and_clear();
                self.chunks.remove(chunk);
            }
        }
    }

    fn println(&self, text: &str) {
        let _ = self.multi.println(text);
    }

    fn finish(&self) {
        for bar in self.chunks.values() {
            bar.finish_and_clear();
        }
        self.job.finish_and_clear();
    }
}

/// Watches job `id` until it ends, writing to `out` as `mode` says (`None`: bars on a
/// terminal, lines elsewhere); exit 0 only if it is done.
pub(crate) async fn watch(
    deps: &Deps,
    id: &JobId,
    out: Out,
    mode: Option<Mode>,
) -> anyhow::Result<ExitCode> {
    let mode = mode.unwrap_or(if out.is_terminal() {
        Mode::Bars
    } else {
        Mode::Lines
    });
    let mut bars = (mode == Mode::Bars).then(|| Bars::new(out, id));
    let say = |bars: &Option<Bars>, text: &str| match bars {
        Some(bars) => bars.println(text),
        None => out.line(text),
    };
    let mut progress: Option<Progress> = None;
    // A task's progress is told in steps of a quarter, not at each report.
    let mut quarters: HashMap<u32, u32> = HashMap::new();
    let watching = client::watch(deps, id, |watched| match watched {
        Watched::Began(began) => {
            let status = began.map(|(s, _)| s);
            let job = began.and_then(|(_, job)| job.cloned());
            let counts = status.map(|s| s.tasks).unwrap_or_default();
            progress = Some(Progress::new(job, counts));
            match mode {
                Mode::Json => {
                    out.line(&serde_json::json!({ "type": "status", "status": status }).to_string())
                }
                _ => say(&bars, &began_line(id, status)),
            }
            if let (Some(bars), Some(p)) = (bars.as_mut(), progress.as_ref()) {
                bars.show(&p.snapshot(None));
            }
        }
        Watched::Planned(job) => {
            let total = tessera::core::plan::task_count(job);
            let tasks = tessera::core::state::Counts {
                total,
                queued: total,
                ..Default::default()
            };
            progress = Some(Progress::new(Some(job.clone()), tasks));
        }
        Watched::Event(event) => {
            let p = progress.get_or_insert_with(|| Progress::new(None, Default::default()));
            let snapshot = p.apply(event);
            if event.kind == EventKind::TaskProgress {
                let quarter = (event.progress.unwrap_or(0.0) * 4.0) as u32;
                let index = event.index.unwrap_or(0);
                if quarters.get(&index).is_some_and(|&q| q >= quarter) || mode == Mode::Bars {
                    return;
                }
                quarters.insert(index, quarter);
            }
            match mode {
                Mode::Json => out.line(
                    &serde_json::json!({ "type": "event", "event": event, "progress": snapshot })
                        .to_string(),
                ),
                Mode::Lines => out.line(&line_for(event, &snapshot)),
                Mode::Bars => {
                    let told = matches!(
                        event.kind,
                        EventKind::TaskRetry
                            | EventKind::TaskFailed
                            | EventKind::JobAccepted
                            | EventKind::JobRejected
                            | EventKind::JobChanged
                            | EventKind::JobRetried
                            | EventKind::JobEncoding
                    );
                    if told {
                        say(&bars, &line_for(event, &snapshot));
                    }
                    if let Some(bars) = bars.as_mut() {
                        bars.show(&snapshot);
                    }
                }
            }
        }
    });
    let explain = client::explain_waits(deps, id, |reason| {
        if mode != Mode::Json {
            say(&None, reason);
        }
    });
    let last = tokio::select! {
        event = watching => event?,
        never = explain => match never {},
    };
    if let Some(bars) = &bars {
        bars.finish();
    }
    let outputs = match client::status(deps, id).await {
        Ok(status) => status,
        Err(e) => {
            tracing::debug!(error = %e, "reading the outputs");
            return Ok(end_code(&last));
        }
    };
    if mode == Mode::Json {
        out.line(
            &serde_json::json!({
                "type": "end",
                "state": outputs.state,
                "message": last.message,
                "outputs_folder": outputs.outputs_folder,
                "outputs": outputs.outputs,
            })
            .to_string(),
        );
    } else {
        out.line(&end_line(id, &last, &outputs));
        for key in &outputs.outputs {
            out.line(&format!("  {key}"));
        }
    }
    Ok(end_code(&last))
}

/// The last line: how the job ended, and where its outputs are.
fn end_line(id: &JobId, last: &Event, status: &Status) -> String {
    match last.kind {
        EventKind::JobDone => format!(
            "{id}: done, {} outputs in {}",
            status.outputs.len(),
            status.outputs_folder
        ),
        kind => {
            let mut line = format!(
                "{id}: {}: {}",
                kind.as_str(),
                last.message.as_deref().unwrap_or("no reason given")
            );
            for reason in &last.reasons {
                line.push_str(&format!("\n  {reason}"));
            }
            line
        }
    }
}

fn end_code(last: &Event) -> ExitCode {
    if last.kind == EventKind::JobDone {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
