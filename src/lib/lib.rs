//! Tessera: a render farm manager over NATS JetStream and S3-compatible object storage.
//!
//! A job (animation, huge still, shot with passes) is split into tasks, spread over stateless
//! workers through JetStream, and its outputs are assembled by a collector. See
//! `ARCHITECTURE.md` for the bird's-eye view and `../shared/design.md` for the contracts.
//!
//! # Layout
//!
//! - Pure core (no I/O): [`frames`], [`job`], [`plan`], [`tiles`], [`stitch`], [`state`], [`raster`].
//! - Wire and storage: [`protocol`] (every NATS message and subject), [`streams`]
//!   (JetStream definitions), [`ledger`] (job records in KV), [`storage`] (object store and
//!   key layout), [`scene`] (scene packaging and the worker's cache).
//! - Renderers: [`render`].
//! - Services, each with `run(config, shutdown)`: [`planner`], [`worker`], [`collector`];
//!   the CLI's operations in [`client`]; the one-command local farm in [`farm`].
//! - Plumbing: [`config`], [`shutdown`], [`telemetry`]; benchmarks in [`bench`](mod@bench).

pub mod bench;
pub mod client;
pub mod collector;
pub mod config;
pub mod farm;
pub mod frames;
pub mod job;
pub mod ledger;
pub mod plan;
pub mod planner;
pub mod protocol;
pub mod raster;
pub mod render;
pub mod scene;
pub mod shutdown;
pub mod state;
pub mod stitch;
pub mod storage;
pub mod streams;
pub mod telemetry;
pub mod tiles;
pub mod worker;
