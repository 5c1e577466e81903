//! Tessera: a render farm manager over NATS JetStream and S3-compatible object storage.
//!
//! A job (an animation, a huge still, a shot with passes) is split into tasks, spread over
//! stateless workers through JetStream, and its outputs are assembled by a collector.
//! `ARCHITECTURE.md` is the map; this is the short version.
//!
//! # Layout
//!
//! A module imports only from its own layer or those below.
//!
//! - [`core`] — pure: the job, planning, tiles, stitching, states, images. No I/O.
//! - [`bus`] — NATS: the protocol (the only place subjects are built), the JetStream
//!   layout, the ledger, the worker registry, the consuming loop, and [`bus::publish`],
//!   the one place that publishes.
//! - [`store`] — object storage: store URLs, the key layout, scene packaging, the worker's
//!   cache.
//! - [`render`] — the renderer trait, each renderer with its typed settings, and the
//!   validation of a job by its renderer.
//! - [`lifecycle`] — what two roles share: ending and deleting a job, queuing held tasks,
//!   the tokens of limits.
//! - [`roles`] — the planner, the worker, the collector and the CLI's client, each
//!   `run(deps, [config,] shutdown)`; a role never imports another.
//! - [`web`] (`tessera web`, the dashboard) — over the client, as the CLI is.
//! - [`farm`] (`tessera up`) and [`bench`](mod@bench) — above the roles.
//! - [`config`], [`shutdown`], [`telemetry`], [`metrics`], [`process`] — plumbing.

pub mod bench;
pub mod bus;
pub mod config;
pub mod core;
pub mod farm;
pub mod lifecycle;
pub mod metrics;
pub mod process;
pub mod render;
pub mod roles;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod web;
