//! Submitting a job file: read and validated locally first (every problem with its field),
//! an id given when it has none, the scene packaged into the store, the spec published.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::bus::publish;
use crate::config::Deps;
use crate::core::job::{self, Job, JobId, JobSpec, RendererKind};
use crate::core::problem::Invalid;
use crate::store::package::Packaged;

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
    if let Some(path) = &scene {
        check_scene(&job, path)?;
    }
    Ok(Prepared { spec, job, scene })
}

/// Checks what the scene refers to, before anything is uploaded: the builtin's scene is
/// parsed; a POV-Ray scene's includes and image maps must be in its folder; a Blender
/// scene's external files and view layers are asked of Blender, when this machine has it.
fn check_scene(job: &Job, path: &Path) -> Result<(), Invalid> {
    let one = |message: String| Invalid::one("scene", message);
    let folder = path.parent().unwrap_or(Path::new("."));
    let in_folder = |relative: &str| {
        crate::core::paths::check_relative_path(relative).is_ok() && folder.join(relative).is_file()
    };
    for (i, step) in job.outputs.post.iter().enumerate() {
        if let job::PostStep::Lut(relative) = step {
            let field = format!("outputs.post[{i}].lut");
            let text = in_folder(relative)
                .then(|| std::fs::read_to_string(folder.join(relative)).ok())
                .flatten()
                .ok_or_else(|| {
                    Invalid::one(
                        &field,
                        format!("{relative}: no such file in the scene folder"),
                    )
                })?;
            crate::core::post::Lut3d::parse(&text)
                .map_err(|e| Invalid::one(&field, format!("{relative} {e}")))?;
        }
    }
    match job.renderer {
        RendererKind::Builtin => {
            crate::render::builtin::Scene::load(path).map_err(|e| one(e.to_string()))?;
        }
        RendererKind::Povray => {
            let entry = path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| one(format!("{} has no usable name", path.display())))?;
            let read = |relative: &str| {
                in_folder(relative)
                    .then(|| std::fs::read(folder.join(relative)).ok())
                    .flatten()
            };
            crate::render::povray::scan::check(entry, &read)?;
        }
        RendererKind::Blender => {
            let from_env = std::env::var_os("TESSERA_BLENDER").map(PathBuf::from);
            match crate::render::program::find(RendererKind::Blender, from_env.as_deref()) {
                Ok(program) => {
                    let report = crate::render::blender::inspect::inspect(&program.path, path)
                        .map_err(|e| one(format!("{e:#}")))?;
                    let layers: Vec<String> = job.layers.iter().map(|l| l.name.clone()).collect();
                    crate::render::blender::inspect::check(&report, &layers, &in_folder)?;
                }
                Err(why) => {
                    tracing::info!("not checking the Blender scene's external files here: {why}")
                }
            }
        }
        RendererKind::Noop | RendererKind::Command => {}
    }
    Ok(())
}

/// A fresh job id, `job-<nuid>` in lower case (base 36: 22 characters from a random
/// prefix and a sequence, so two submissions never share one).
pub fn new_job_id() -> String {
    format!("job-{}", nuid::next().to_string().to_lowercase())
}

/// A submission sent.
pub struct Submitted {
    /// The job.
    pub id: JobId,
    /// What packaging its scene uploaded, if it has one.
    pub scene: Option<Packaged>,
}

/// Packages the scene and publishes the submission.
pub async fn submit(deps: &Deps, prepared: Prepared) -> anyhow::Result<Submitted> {
    let mut spec = prepared.spec;
    let mut packaged = None;
    if let Some(scene) = &prepared.scene {
        let done = crate::store::package::package(&deps.store, scene)
            .await
            .with_context(|| format!("uploading scene {}", scene.display()))?;
        spec.scene_manifest = Some(format!("sha256:{}", done.hex));
        packaged = Some(done);
    }
    let id = prepared.job.id.clone();
    publish::submission(&deps.js, &id, &spec).await?;
    Ok(Submitted {
        id,
        scene: packaged,
    })
}
