//! Where everything of Tessera lives in the object store, one function per kind of key.
//! Every other module names keys only through these.

use crate::core::job::{Job, JobId};
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

/// Where `job`'s assembled results go: `versions/<name>/v<NNN>/` for a job published as a
/// version of its `output`, else `jobs/<job>/output/`.
pub fn output_prefix(job: &Job) -> String {
    outputs_folder(&job.id, job.output.as_deref(), job.version)
}

/// [`output_prefix`] of job `id` named `output` with version `version` (from its record).
pub fn outputs_folder(id: &JobId, output: Option<&str>, version: Option<u32>) -> String {
    match (output, version) {
        (Some(name), Some(version)) => version_prefix(name, version),
        _ => format!("jobs/{id}/output/"),
    }
}

/// `jobs/<job>/output/`: the outputs folder of a job that publishes no version.
pub fn unversioned_output_prefix(id: &JobId) -> String {
    outputs_folder(id, None, None)
}

/// `jobs/<job>/output/<name>`: an output of a job that publishes no version.
pub fn unversioned_output(id: &JobId, name: &str) -> String {
    format!("{}{name}", unversioned_output_prefix(id))
}

/// Whether `key`, in the outputs folder `folder`, is one of a version's records rather
/// than an output.
pub fn is_version_record(folder: &str, key: &str) -> bool {
    folder.starts_with(VERSIONS)
        && matches!(
            key.strip_prefix(folder),
            Some("version.json" | "trace.json" | "approval.json")
        )
}

/// One assembled result of `job` (see [`output_prefix`]).
pub fn output(job: &Job, name: &str) -> String {
    format!("{}{name}", output_prefix(job))
}

/// `versions/`: every published version. Nothing under it is ever replaced or deleted.
pub const VERSIONS: &str = "versions/";

/// `versions/<name>/`: the versions of one output name.
pub fn versions_prefix(name: &str) -> String {
    format!("{VERSIONS}{name}/")
}

/// `versions/<name>/v<NNN>/`: one version's folder.
pub fn version_prefix(name: &str, version: u32) -> String {
    format!(
        "{}{}/",
        versions_prefix(name),
        crate::core::version::label(version)
    )
}

/// `versions/<name>/v<NNN>/version.json`: what made it.
pub fn version_record(name: &str, version: u32) -> String {
    format!("{}version.json", version_prefix(name, version))
}

/// `versions/<name>/v<NNN>/trace.json`: who rendered it.
pub fn version_trace(name: &str, version: u32) -> String {
    format!("{}trace.json", version_prefix(name, version))
}

/// `versions/<name>/v<NNN>/approval.json`: its approval.
pub fn version_approval(name: &str, version: u32) -> String {
    format!("{}approval.json", version_prefix(name, version))
}

/// Whether `key` is inside a published version (or is the versions folder itself).
pub fn is_published(key: &str) -> bool {
    key.starts_with(VERSIONS) || key == VERSIONS.trim_end_matches('/')
}

/// `jobs/<job>/preview/`: every preview of a job.
pub fn previews_prefix(job: &JobId) -> String {
    format!("jobs/{job}/preview/")
}

/// `<folder><name>`: file `name` (a relative path, checked by the caller) in an outputs
/// folder from [`outputs_folder`].
pub fn in_folder(folder: &str, name: &str) -> String {
    format!("{folder}{name}")
}

/// `jobs/<job>/preview/<name>.png`: a small picture of a tiled frame stitched so far,
/// refreshed as its tiles land (`name` is the output's name without its extension).
pub fn preview(job: &JobId, name: &str) -> String {
    format!("{}{name}.png", previews_prefix(job))
}
