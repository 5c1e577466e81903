//! The `noop` renderer: sleeps `settings.sleep_ms` (default 0) and writes nothing. For
//! benchmarks and tests; `settings.fail = true` makes every attempt fail, and
//! `settings.fail_attempts = N` fails the first N attempts.

use std::time::Duration;

use super::{BoxFuture, Output, RenderError, Renderer, Request};
use crate::core::job::RendererKind;

/// The `noop` renderer.
pub struct Noop;

impl Renderer for Noop {
    fn kind(&self) -> RendererKind {
        RendererKind::Noop
    }

    fn render(&self, request: Request) -> BoxFuture<'_, Result<Vec<Output>, RenderError>> {
        Box::pin(async move {
            let settings = &request.task.settings;
            let sleep = settings
                .get("sleep_ms")
                .and_then(|v| v.as_u64())
                .unwrap_or(0);
            request.log.line(format!("noop: sleeping {sleep} ms"));
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(sleep)) => {}
                () = request.cancel.cancelled() => {
                    return Err(RenderError::Stopped("canceled while sleeping".into()));
                }
            }
            let fail_all = settings
                .get("fail")
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            let fail_first = settings
                .get("fail_attempts")
                .and_then(|v| v.as_u64())
                .unwrap_or(0);
            if fail_all || u64::from(request.attempt) <= fail_first {
                request.log.line("noop: failing as the settings ask");
                return Err(RenderError::Failed(
                    "noop failed as asked by its settings".into(),
                ));
            }
            request.set_progress(1.0);
            Ok(Vec::new())
        })
    }
}
