//! Running a renderer program: never through a shell, in its own process group, with a clean
//! environment (`PATH`, `HOME`, `LANG`, `TMPDIR` only: the worker's credentials never reach
//! it); a cancel, a timeout or a stall (no output for `stall_ms`) kills the whole group, and
//! the child gets SIGKILL if its worker dies.
//!
//! Its output is read as lines ended by `\n` or `\r` (renderers redraw progress with `\r`):
//! every line goes to the adapter's `on_line` (progress, error diagnosis); lines ended by
//! `\n` also go to the attempt's log.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command as Process;

use super::{RenderError, Request};
use crate::process;

/// A line of a child's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// The text, without its ending.
    pub text: &'a str,
    /// Ended by `\r`: a progress redraw, not kept in the log.
    pub redraw: bool,
}

/// Splits a byte stream into lines ended by `\n` or `\r`; empty lines are dropped.
#[derive(Default)]
struct Splitter {
    pending: Vec<u8>,
}

/// Longest line kept whole; a longer one is cut (a renderer printing binary, say).
const MAX_LINE: usize = 64 * 1024;

impl Splitter {
    /// Feeds `bytes`; calls `each` with every completed line.
    fn feed(&mut self, bytes: &[u8], each: &mut dyn FnMut(Line<'_>)) {
        for &b in bytes {
            if b == b'\n' || b == b'\r' {
                self.emit(b == b'\r', each);
            } else if self.pending.len() < MAX_LINE {
                self.pending.push(b);
            }
        }
    }

    /// Ends the stream: the last line, if it had no ending.
    fn finish(&mut self, each: &mut dyn FnMut(Line<'_>)) {
        if !self.pending.is_empty() {
            self.emit(false, each);
        }
    }

    fn emit(&mut self, redraw: bool, each: &mut dyn FnMut(Line<'_>)) {
        let text = String::from_utf8_lossy(&self.pending);
        if !text.is_empty() {
            each(Line {
                text: &text,
                redraw,
            });
        }
        self.pending.clear();
    }
}

/// One of the child's output pipes, read in chunks.
struct Pipe<R> {
    reader: R,
    splitter: Splitter,
    open: bool,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> Pipe<R> {
    fn new(reader: R) -> Pipe<R> {
        Pipe {
            reader,
            splitter: Splitter::default(),
            open: true,
            buf: vec![0; 16 * 1024],
        }
    }

    async fn read(&mut self) -> std::io::Result<usize> {
        self.reader.read(&mut self.buf).await
    }
}

/// Runs `argv` in `cwd` for `request`'s attempt until it exits; every output line goes to
/// `on_line`. A non-zero exit is [`RenderError::Failed`] naming the program and its code.
pub async fn run(
    request: &Request,
    argv: &[String],
    cwd: &Path,
    on_line: &mut (dyn FnMut(Line<'_>) + Send),
) -> Result<(), RenderError> {
    request.log.line(format!("command: {argv:?}"));
    let mut command = Process::new(&argv[0]);
    command
        .args(&argv[1..])
        .current_dir(cwd)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // The renderer dies with its worker even when the worker is SIGKILLed (the process
    // group is killed on every other path).
    process::die_with_parent(&mut command, libc::SIGKILL);
    for key in ["PATH", "HOME", "LANG", "TMPDIR"] {
        if let Some(value) = std::env::var_os(key) {
            command.env(key, value);
        }
    }
    let mut child = command
        .spawn()
        .map_err(|e| RenderError::Failed(format!("cannot start {:?}: {e}", argv[0])))?;
    let pgid = child.id().map(|id| id as i32);
    let mut stdout = Pipe::new(child.stdout.take().expect("piped"));
    let mut stderr = Pipe::new(child.stderr.take().expect("piped"));
    let stall = request.task.stall_ms.map(Duration::from_millis);
    let mut last_output = tokio::time::Instant::now();
    let log = request.log.clone();
    // The last thing it said, for the reason of a failed exit.
    let mut last_said: Option<String> = None;
    let mut each = |line: Line<'_>| {
        if !line.redraw {
            log.line(line.text);
            if !line.text.trim().is_empty() {
                last_said = Some(line.text.trim().chars().take(LAST_LINE_CHARS).collect());
            }
        }
        on_line(line);
    };
    let kill = |why: &str| {
        request
            .log
            .line(format!("killing the process group: {why}"));
        if let Some(pgid) = pgid {
            process::kill_group(pgid);
        }
    };
    let status = loop {
        let stall_check = async {
            match stall {
                Some(limit) => tokio::time::sleep_until(last_output + limit).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = stdout.read(), if stdout.open => match read {
                Ok(n) if n > 0 => {
                    stdout.splitter.feed(&stdout.buf[..n], &mut each);
                    last_output = tokio::time::Instant::now();
                }
                _ => {
                    stdout.open = false;
                    stdout.splitter.finish(&mut each);
                }
            },
            read = stderr.read(), if stderr.open => match read {
                Ok(n) if n > 0 => {
                    stderr.splitter.feed(&stderr.buf[..n], &mut each);
                    last_output = tokio::time::Instant::now();
                }
                _ => {
                    stderr.open = false;
                    stderr.splitter.finish(&mut each);
                }
            },
            status = child.wait(), if !stdout.open && !stderr.open => break status,
            () = request.cancel.cancelled() => {
                kill("the attempt was stopped");
                let _ = child.wait().await;
                return Err(RenderError::Stopped("render stopped".into()));
            }
            () = stall_check => {
                kill("no output for too long");
                let _ = child.wait().await;
                return Err(RenderError::Failed(format!(
                    "the renderer printed nothing for {:?} and was taken for hung",
                    stall.unwrap_or_default()
                )));
            }
        }
    };
    // The program's own children may outlive it; the group goes with it.
    if let Some(pgid) = pgid {
        process::kill_group(pgid);
    }
    let status =
        status.map_err(|e| RenderError::Failed(format!("waiting for the renderer: {e}")))?;
    if status.success() {
        return Ok(());
    }
    let mut why = match status.code() {
        Some(code) => format!("{:?} exited with code {code}", argv[0]),
        None => format!("{:?} was killed by a signal", argv[0]),
    };
    if let Some(said) = last_said {
        why.push_str(&format!(" (its last line: {said})"));
    }
    Err(RenderError::Failed(why))
}

/// How much of a failed renderer's last line its failure quotes.
const LAST_LINE_CHARS: usize = 200;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_newlines_and_carriage_returns_across_reads() {
        let mut lines = Vec::new();
        let mut each = |l: Line<'_>| lines.push((l.text.to_string(), l.redraw));
        let mut s = Splitter::default();
        s.feed(b"Rendered 1 of 4\rRendered 2", &mut each);
        s.feed(b" of 4\r\nParse Error: x\nlast", &mut each);
        s.finish(&mut each);
        assert_eq!(
            lines,
            [
                ("Rendered 1 of 4".to_string(), true),
                ("Rendered 2 of 4".to_string(), true),
                ("Parse Error: x".to_string(), false),
                ("last".to_string(), false),
            ]
        );
    }
}
