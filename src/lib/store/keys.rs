//! Where everything of Tessera lives in the object store, one function per kind of key.
//! Every other module names keys only through these.

use crate::core::job::JobId;
use crate::core::plan::TaskId;

/// `blobs/sha256/<hex>`: content-addressed file contents.
pub fn blob(hex: &str) -> String {
    format!("blobs/sha256/{hex}")
}

/// `scenes/<hex>.json`: a scene manifest (relative path → blob hash).
pub fn manifest(hex: &str) -> String {
    format!("scenes/{hex}.json")
}

/// `scenes/`: every scene manifest.
pub const MANIFESTS: &str = "scenes/";

/// `blobs/sha256/`: every blob.
pub const BLOBS: &str = "blobs/sha256/";

/// The digest of a manifest key (`scenes/<hex>.json`) or a blob key (`blobs/sha256/<hex>`).
pub fn digest_of(key: &str) -> Option<&str> {
    key.strip_prefix(MANIFESTS)
        .and_then(|k| k.strip_suffix(".json"))
        .or_else(|| key.strip_prefix(BLOBS))
}

/// `jobs/<job>/`: everything of a job (raw outputs, logs, previews, assembled results).
pub fn job_prefix(job: &JobId) -> String {
    format!("jobs/{job}/")
}

/// `jobs/<job>/tasks/`: every attempt's raw outputs of a job (removed as frames are
/// assembled).
pub fn parts_prefix(job: &JobId) -> String {
    format!("jobs/{job}/tasks/")
}

/// `jobs/<job>/tasks/<task>/attempt-<n>/`: the folder of one attempt's raw outputs.
pub fn attempt_prefix(job: &JobId, task: &TaskId, attempt: u32) -> String {
    format!("{}{task}/attempt-{attempt}/", parts_prefix(job))
}

/// `jobs/<job>/tasks/<task>/attempt-<n>/<name>`: one raw output of an attempt.
pub fn attempt_output(job: &JobId, task: &TaskId, attempt: u32, name: &str) -> String {
    format!("{}{name}", attempt_prefix(job, task, attempt))
}

/// `jobs/<job>/logs/<task>/attempt-<n>.log`: the renderer's full log of one attempt.
pub fn attempt_log(job: &JobId, task: &TaskId, attempt: u32) -> String {
    format!("jobs/{job}/logs/{task}/attempt-{attempt}.log")
}

/// `jobs/<job>/logs/`: every log of a job.
pub fn logs_prefix(job: &JobId) -> String {
    format!("jobs/{job}/logs/")
}

/// `jobs/<job>/output/`: the assembled results.
pub fn output_prefix(job: &JobId) -> String {
    format!("jobs/{job}/output/")
}

/// `jobs/<job>/output/<name>`: one assembled result.
pub fn output(job: &JobId, name: &str) -> String {
    format!("{}{name}", output_prefix(job))
}

/// `jobs/<job>/preview/<name>.png`: a small picture of a tiled frame stitched so far,
/// refreshed as its tiles land (`name` is the output's name without its extension).
pub fn preview(job: &JobId, name: &str) -> String {
    format!("jobs/{job}/preview/{name}.png")
}
