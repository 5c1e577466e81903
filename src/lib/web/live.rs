//! What the page is pushed as it happens (server-sent events): job events, gathered into
//! one message every [`BATCH`] so that a busy farm costs the browser a few updates a second,
//! and a running task's log lines.

use std::convert::Infallible;
use std::time::Duration;

use async_nats::jetstream::consumer;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event as Sse, KeepAlive};
use axum::response::{IntoResponse, Response, Sse as SseResponse};
use futures::StreamExt as _;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::api::{job_id, planned, task_index};
use super::{ApiResult, Web};
use crate::bus::protocol::{self, Event};
use crate::bus::streams;
use crate::core::plan;
use crate::roles::client;

/// How long events are gathered before they are sent.
const BATCH: Duration = Duration::from_millis(250);

/// At most this many events a message; past it the message says how many more came, and
/// the page reads the state again instead.
const BATCH_MAX: usize = 500;

/// The job whose events to follow (all jobs when absent).
#[derive(Debug, Deserialize)]
pub(super) struct EventsQuery {
    job: Option<String>,
}

/// A batch as the page reads it.
#[derive(Debug, serde::Serialize)]
struct Batch {
    events: Vec<Event>,
    /// Events past [`BATCH_MAX`] left out.
    more: usize,
}

/// Streams messages from a task that sends into `tx` until the page goes away.
fn sse(rx: mpsc::Receiver<Sse>) -> Response {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    SseResponse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// `GET /api/events[?job=ID]`: the events stored from now on (of one job, or of all), as
/// `events` messages of [`Batch`]; a `ready` message first, once following.
pub(super) async fn events(
    State(web): State<Web>,
    Query(query): Query<EventsQuery>,
) -> ApiResult<Response> {
    let filter = match query.job.as_deref() {
        Some(text) => protocol::stored_job_events_filter(job_id(text)?.as_str()),
        None => protocol::EVERY_STORED_EVENT.to_string(),
    };
    let consumer = web
        .deps
        .js
        .get_stream(streams::EVENTS_STREAM)
        .await
        .map_err(anyhow::Error::from)?
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: filter,
            deliver_policy: consumer::DeliverPolicy::New,
            ..Default::default()
        })
        .await
        .map_err(anyhow::Error::from)?;
    let mut messages = consumer.messages().await.map_err(anyhow::Error::from)?;
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        if tx
            .send(Sse::default().event("ready").data("{}"))
            .await
            .is_err()
        {
            return;
        }
        loop {
            let mut batch = Batch {
                events: Vec::new(),
                more: 0,
            };
            let deadline = tokio::time::sleep(BATCH);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    () = &mut deadline => break,
                    () = tx.closed() => return,
                    next = messages.next() => match next {
                        Some(Ok(msg)) => {
                            if batch.events.len() >= BATCH_MAX {
                                batch.more += 1;
                            } else if let Ok(event) = protocol::decode::<Event>(&msg.payload) {
                                batch.events.push(event);
                            }
                        }
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "following events for the dashboard");
                            return;
                        }
                        None => return,
                    },
                }
            }
            if batch.events.is_empty() && batch.more == 0 {
                continue;
            }
            let Ok(message) = Sse::default().event("events").json_data(&batch) else {
                continue;
            };
            if tx.send(message).await.is_err() {
                return;
            }
        }
    });
    Ok(sse(rx))
}

/// Which attempt's log to follow (every attempt's when absent).
#[derive(Debug, Deserialize)]
pub(super) struct LiveLogQuery {
    attempt: Option<u32>,
}

/// `GET /api/jobs/{id}/tasks/{index}/log/live[?attempt=N]`: the task's log lines as the
/// stream keeps them, from the first, as `line` messages (`{"attempt": n, "text": "…"}`),
/// then `end` once the attempt, task or job has ended.
pub(super) async fn log(
    State(web): State<Web>,
    Path((id, index)): Path<(String, String)>,
    Query(query): Query<LiveLogQuery>,
) -> ApiResult<Response> {
    let id = job_id(&id)?;
    let (_, job) = planned(&web, &id).await?;
    let index = task_index(&job, &index)?;
    let task = plan::task(&job, index).id;
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let (lines, mut from) = mpsc::unbounded_channel::<client::logs::Chunk>();
        let follow = client::logs::follow(
            &web.deps,
            &id,
            Some(task.as_str()),
            query.attempt,
            |chunk| {
                let _ = lines.send(chunk.clone());
            },
        );
        tokio::pin!(follow);
        let ended = loop {
            tokio::select! {
                result = &mut follow => break result,
                () = tx.closed() => return,
                Some(chunk) = from.recv() => {
                    if chunk.text.is_empty() {
                        continue;
                    }
                    let data = serde_json::json!({ "attempt": chunk.attempt, "text": chunk.text });
                    if tx.send(Sse::default().event("line").data(data.to_string())).await.is_err() {
                        return;
                    }
                }
            }
        };
        while let Ok(chunk) = from.try_recv() {
            let data = serde_json::json!({ "attempt": chunk.attempt, "text": chunk.text });
            if !chunk.text.is_empty()
                && tx
                    .send(Sse::default().event("line").data(data.to_string()))
                    .await
                    .is_err()
            {
                return;
            }
        }
        let end = match ended {
            Ok(()) => "{}".to_string(),
            Err(e) => serde_json::json!({ "error": format!("{e:#}") }).to_string(),
        };
        let _ = tx.send(Sse::default().event("end").data(end)).await;
    });
    Ok(sse(rx))
}
