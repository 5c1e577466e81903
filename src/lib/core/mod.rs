//! The pure core: what a job is and how it becomes tasks, tiles and frames, with no I/O.
//!
//! Nothing here imports tokio, async-nats, object_store or a renderer (the tidy test checks
//! it), so every function is deterministic and tested by tables beside it.

pub mod bundle;
pub mod composite;
pub mod frames;
pub mod job;
pub mod limits;
pub mod order;
pub mod outputs;
pub mod paths;
pub mod plan;
pub mod post;
pub mod problem;
pub mod raster;
pub mod sequence;
pub mod state;
pub mod stitch;
pub mod tally;
pub mod tiles;
pub mod version;
