//! What the CLI does: submit a job file (validated locally first, scene packaged into the
//! store), follow a job's events and wait for its end, report its status and the farm's
//! workers, fetch its outputs, retry or cancel it.
//!
//! - [`submit`](mod@submit): preparing and submitting a job file;
//! - [`follow`]: a job's events, and waiting for its end;
//! - [`report`]: status, workers, fetch;
//! - [`control`]: retry, cancel, delete, suspend, resume, priority; pausing queues;
//! - [`limits`]: setting and listing limits;
//! - [`versions`]: resolving and resubmitting published versions.

pub mod control;
pub mod follow;
pub mod limits;
pub mod report;
pub mod submit;
pub mod versions;

pub use control::{cancel, delete, pause, resume, retry, set_priority, suspend};
pub use follow::{events, wait};
pub use limits::{LimitStatus, list_limits, set_limit};
pub use report::{Status, explain_waits, fetch, status, why_job_waits, why_waiting, workers};
pub use submit::{Prepared, Submitted, new_job_id, prepare, submit};
