//! Prometheus metrics: one registry per process (every role of `tessera up` shares it),
//! recorded by the roles where things happen, served as OpenMetrics text at
//! `http://<--metrics-addr>/metrics`.
//!
//! | series | type | labels | recorded by |
//! | --- | --- | --- | --- |
//! | `tessera_tasks_started_total` | counter | class, priority, renderer | worker, each attempt started |
//! | `tessera_tasks_done_total` | counter | class, priority, renderer | worker, each `task.done` stored |
//! | `tessera_tasks_retried_total` | counter | class, priority, renderer | worker, each failed attempt tried again |
//! | `tessera_tasks_failed_total` | counter | class, priority, renderer | worker, each task failed for good |
//! | `tessera_render_seconds` | histogram | class, renderer | worker, each attempt's render |
//! | `tessera_dispatch_latency_seconds` | histogram | class, priority | worker: from a task's storage in its queue to its first start |
//! | `tessera_worker_slots` | gauge | state (`busy`, `free`) | worker |
//! | `tessera_queue_depth` | gauge | class, priority, renderer | planner, every 5 s: tasks waiting in each queue |
//! | `tessera_queue_running` | gauge | class, priority, renderer | planner, every 5 s: tasks delivered and not yet acknowledged |
//! | `tessera_assembly_seconds` | histogram | kind (`frame`, `composite`, `sequence`) | collector |
//! | `tessera_jobs_ended_total` | counter | state (`done`, `failed`, `canceled`) | collector |

use std::net::SocketAddr;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::core::job::{Class, Priority, RendererKind};

/// A task's queue: its class, priority and renderer.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// Hardware class.
    pub class: String,
    /// `high`, `normal` or `low`.
    pub priority: String,
    /// Renderer.
    pub renderer: String,
}

impl QueueLabels {
    /// The labels of a queue.
    pub fn of(class: &Class, priority: Priority, renderer: RendererKind) -> QueueLabels {
        QueueLabels {
            class: class.to_string(),
            priority: priority.to_string(),
            renderer: renderer.as_str().to_string(),
        }
    }
}

/// A render's class and renderer.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RenderLabels {
    /// Hardware class.
    pub class: String,
    /// Renderer.
    pub renderer: String,
}

/// A dispatch's class and priority.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DispatchLabels {
    /// Hardware class.
    pub class: String,
    /// `high`, `normal` or `low`.
    pub priority: String,
}

/// One label, `state` or `kind`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// The state (`busy`, `done`, …).
    pub state: String,
}

/// What an assembly step made.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `frame`, `composite` or `sequence`.
    pub kind: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds_histogram() -> Histogram {
    // 1 ms to about 9 hours, doubling.
    Histogram::new(exponential_buckets(0.001, 2.0, 25))
}

/// Every series Tessera records.
pub struct Metrics {
    /// Attempts started.
    pub started: Family<QueueLabels, Counter>,
    /// Tasks done.
    pub done: Family<QueueLabels, Counter>,
    /// Failed attempts tried again.
    pub retried: Family<QueueLabels, Counter>,
    /// Tasks failed for good.
    pub failed: Family<QueueLabels, Counter>,
    /// Render times.
    pub render: Histograms<RenderLabels>,
    /// Queue storage to start.
    pub dispatch: Histograms<DispatchLabels>,
    /// Worker slots by state.
    pub slots: Family<StateLabel, Gauge>,
    /// Tasks waiting per queue.
    pub queue_depth: Family<QueueLabels, Gauge>,
    /// Tasks delivered and unacknowledged per queue.
    pub queue_running: Family<QueueLabels, Gauge>,
    /// Assembly times.
    pub assembly: Histograms<KindLabel>,
    /// Jobs ended.
    pub jobs_ended: Family<StateLabel, Counter>,
    registry: Mutex<Registry>,
    served: std::sync::atomic::AtomicBool,
}

/// The process's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Metrics {
        let metrics = Metrics {
            started: Family::default(),
            done: Family::default(),
            retried: Family::default(),
            failed: Family::default(),
            render: Family::new_with_constructor(seconds_histogram),
            dispatch: Family::new_with_constructor(seconds_histogram),
            slots: Family::default(),
            queue_depth: Family::default(),
            queue_running: Family::default(),
            assembly: Family::new_with_constructor(seconds_histogram),
            jobs_ended: Family::default(),
            registry: Mutex::new(Registry::with_prefix("tessera")),
            served: std::sync::atomic::AtomicBool::new(false),
        };
        {
            let mut r = metrics.registry.lock().unwrap_or_else(|e| e.into_inner());
            r.register(
                "tasks_started",
                "Attempts started by this process's workers",
                metrics.started.clone(),
            );
            r.register(
                "tasks_done",
                "Tasks done (task.done stored) by this process's workers",
                metrics.done.clone(),
            );
            r.register(
                "tasks_retried",
                "Failed attempts that will be tried again",
                metrics.retried.clone(),
            );
            r.register(
                "tasks_failed",
                "Tasks failed for good",
                metrics.failed.clone(),
            );
            r.register_with_unit(
                "render",
                "How long each attempt's render took",
                Unit::Seconds,
                metrics.render.clone(),
            );
            r.register_with_unit(
                "dispatch_latency",
                "From a task's storage in its queue to its first attempt's start",
                Unit::Seconds,
                metrics.dispatch.clone(),
            );
            r.register(
                "worker_slots",
                "This process's worker slots, busy or free",
                metrics.slots.clone(),
            );
            r.register(
                "queue_depth",
                "Tasks waiting in each task queue",
                metrics.queue_depth.clone(),
            );
            r.register(
                "queue_running",
                "Tasks of each queue delivered to a worker and not yet acknowledged",
                metrics.queue_running.clone(),
            );
            r.register_with_unit(
                "assembly",
                "How long the collector took to write a frame, a composite or a job's sequence outputs",
                Unit::Seconds,
                metrics.assembly.clone(),
            );
            r.register(
                "jobs_ended",
                "Jobs ended by this process's collectors, by state",
                metrics.jobs_ended.clone(),
            );
        }
        metrics
    }

    /// Whether this process serves its metrics (what only they need is skipped if not).
    pub fn is_served(&self) -> bool {
        self.served.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The OpenMetrics text of every series.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }

    /// Records an assembly step that took `took`.
    pub fn assembled(&self, kind: &str, took: Duration) {
        self.assembly
            .get_or_create(&KindLabel { kind: kind.into() })
            .observe(took.as_secs_f64());
    }

    /// Adds `n` to the slots in `state` (`busy` or `free`); `n` may be negative.
    pub fn slots(&self, state: &str, n: i64) {
        self.slots
            .get_or_create(&StateLabel {
                state: state.into(),
            })
            .inc_by(n);
    }
}

/// Serves `/metrics` on `addr` until `shutdown`; returns the address bound (port 0 picks a
/// free one) once listening, and the server's task.
pub async fn serve(
    addr: SocketAddr,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    use anyhow::Context as _;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--metrics-addr {addr}: cannot listen"))?;
    let bound = listener.local_addr()?;
    METRICS
        .served
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async {
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                METRICS.text(),
            )
        }),
    );
    let task = tokio::spawn(async move {
        let stopped = shutdown.cancelled_owned();
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::warn!(error = %e, "the metrics endpoint stopped");
        }
    });
    tracing::info!(%bound, "metrics at http://{bound}/metrics");
    Ok((bound, task))
}
