//! The job: what a user submits ([`JobSpec`]: a TOML file to the CLI, JSON or msgpack on
//! the wire), its vocabulary ([`JobId`], [`Class`], [`Priority`], [`RendererKind`] …), and
//! its validation into a [`Job`] whose every field is known to be usable.
//!
//! - [`spec`]: the wire and file contract, every field optional;
//! - [`vocab`]: the closed types a job is made of, each with its parser;
//! - [`wire`]: decoding a spec from TOML, JSON or msgpack, naming the field of an error;
//! - [`validate`]: the checks, every problem reported at once with its field (each
//!   part's in `sections`);
//! - [`composite`]: `[composite]`, how a layered job's layers are combined, and its checks;
//! - [`outputs`]: `[outputs]`, the movie, animation and contact sheet and their
//!   post-processing, and its checks;
//! - [`after`]: `after`, the jobs a job runs after, and its check.

pub mod after;
pub mod composite;
pub mod outputs;
mod sections;
pub mod spec;
pub mod validate;
pub mod vocab;
pub mod wire;

pub use composite::{Composite, CompositeLayerSpec, CompositeSpec};
pub use outputs::{Outputs, OutputsSpec, PostStep, PostStepSpec};
pub use spec::{ChunkSpec, FramesSpec, ImageSpec, JobSpec, LayerSpec, RetrySpec, TilesSpec};
pub use validate::{Image, Job, Layer, Retry, Tiles};
pub use vocab::{
    Blend, Class, FailurePolicy, ImageFormat, JobId, Priority, RendererKind, is_token,
};
pub use wire::{from_toml, from_wire, is_json};

/// The version of the job schema this build writes and reads.
pub const JOB_SCHEMA: u32 = 1;
/// At most this many tasks per job.
pub const MAX_TASKS: u64 = 1_000_000;
/// At most this many pixels per image side.
pub const MAX_IMAGE_SIDE: u32 = 65_536;
/// At most this many attempts per task (the task consumer's `max_deliver` is above it).
pub const MAX_ATTEMPTS: u32 = 10;
/// At most this many pixels rendered by one task (a 16K square): larger frames are tiled.
pub const MAX_TASK_PIXELS: u64 = 16_384 * 16_384;
/// At most this many layers per job.
pub const MAX_LAYERS: usize = 64;
/// The largest `weight` of a job.
pub const MAX_WEIGHT: u32 = 100;
#[cfg(test)]
mod tests;
