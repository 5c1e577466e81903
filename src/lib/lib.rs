//! Tessera: a render farm manager over NATS JetStream and S3-compatible object storage.

pub mod bench;
pub mod bus;
pub mod config;
pub mod core;
pub mod farm;
pub mod lifecycle;
pub mod process;
pub mod render;
pub mod roles;
pub mod shutdown;
pub mod store;
pub mod telemetry;
