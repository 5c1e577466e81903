//! Submitting a job file: read and validated locally first (every problem with its field),
//! an id given when it has none, the scene packaged into the store, the spec published.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::bus::publish;
use crate::config::Deps;
use crate::core::job::{self, Job, JobId, JobSpec, RendererKind};
use crate::core::problem::Invalid;

/// A job file read and checked, ready to submit.
pub struct Prepared {
    /// The spec as it will be sent (id filled in, scene still a local path).
    pub spec: JobSpec,
    /// The validated job.
    pub job: Job,
    /// The scene file on this machine, if any.
    pub scene: Option<PathBuf>,
}

/// Reads and validates a job file without touching the network: every problem is reported
/// with its field. The scene path is resolved against the job file's folder.
pub fn prepare(job_file: &Path) -> Result<Prepared, Invalid> {
    let one = |field: &str, message: String| Invalid::one(field, message);
    let text = std::fs::read_to_string(job_file)
        .map_err(|e| one("(file)", format!("cannot read {}: {e}", job_file.display())))?;
    let mut spec = job::from_toml(&text)?;
    if spec.id.is_none() {
        spec.id = Some(new_job_id());
    }
    let scene = match spec.scene.take() {
        Some(relative) => {
            let base = job_file.parent().unwrap_or(Path::new("."));
            let path = base.join(&relative);
            if !path.is_file() {
                return Err(one("scene", format!("{} is not a file", path.display())));
            }
            Some(path)
        }
        None => None,
    };
    // Validate as the planner will see it: with a manifest in place of the path.
    let mut probe = spec.clone();
    if scene.is_some() {
        probe.scene_manifest = Some(format!("sha256:{}", "0".repeat(64)));
    }
    let job = crate::render::validate(probe)?;
    if let (Some(path), RendererKind::Builtin) = (&scene, job.renderer) {
        crate::render::builtin::Scene::load(path).map_err(|e| one("scene", e.to_string()))?;
    }
    Ok(Prepared { spec, job, scene })
}

/// A fresh job id, `job-<nuid>` in lower case (base 36: 22 characters from a random
/// prefix and a sequence, so two submissions never share one).
pub fn new_job_id() -> String {
    format!("job-{}", nuid::next().to_string().to_lowercase())
}

/// Packages the scene and publishes the submission; returns the job id.
pub async fn submit(deps: &Deps, prepared: Prepared) -> anyhow::Result<JobId> {
    let mut spec = prepared.spec;
    if let Some(scene) = &prepared.scene {
        let hex = crate::store::package::package(&deps.store, scene)
            .await
            .with_context(|| format!("uploading scene {}", scene.display()))?;
        spec.scene_manifest = Some(format!("sha256:{hex}"));
    }
    let id = prepared.job.id.clone();
    publish::submission(&deps.js, &id, &spec).await?;
    Ok(id)
}
