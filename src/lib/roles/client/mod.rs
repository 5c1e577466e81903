//! What the CLI does: submit a job file (validated locally first, scene packaged into the
//! store), follow a job's events and wait for its end, report its status and the farm's
//! workers, fetch its outputs, retry or cancel it.
//!
//! - [`submit`](mod@submit): preparing and submitting a job file;
//! - [`follow`]: a job's events, and waiting for its end;
//! - [`report`]: status, workers, fetch;
//! - [`jobs`](mod@jobs): the list of recent and active jobs;
//! - [`progress`]: a watched job's progress, rates and ETA;
//! - [`logs`]: renderer logs, stored and followed as they are written;
//! - [`control`]: retry, cancel, delete, suspend, resume, priority; pausing queues;
//! - [`limits`]: setting and listing limits;
//! - [`versions`]: resolving and resubmitting published versions.

pub mod control;
pub mod follow;
pub mod jobs;
pub mod limits;
pub mod logs;
pub mod progress;
pub mod report;
pub mod submit;
pub mod versions;

pub use control::{cancel, delete, pause, resume, retry, set_priority, suspend};
pub use follow::{Watched, events, watch};
pub use jobs::{JobFilter, JobLine, jobs};
pub use limits::{LimitStatus, list_limits, set_limit};
pub use report::{
    Failure, Status, explain_waits, failures, fetch, status, why_job_waits, why_waiting, workers,
};
pub use submit::{Prepared, Submitted, new_job_id, prepare, submit};
