//! Published versions from the CLI: resolving `JOB` or `NAME vNNN`, and resubmitting a
//! version — its stored spec, scene manifest and all, under a fresh id — so that it renders
//! again from exactly the bytes that made it, whatever became of the artist's folder.

use crate::bus::publish;
use crate::config::Deps;
use crate::core::job::JobId;
use crate::core::version;
use crate::lifecycle::versions;

/// The output name and version `target` names: a job id alone (`version` absent), or an
/// output name and a label (`shot010/lighting`, `v003`).
pub async fn resolve(
    deps: &Deps,
    target: &str,
    label: Option<&str>,
) -> anyhow::Result<(String, u32)> {
    match label {
        Some(label) => {
            version::check_name(target).map_err(|e| anyhow::anyhow!("output name {e}"))?;
            let number = version::parse_label(label).map_err(anyhow::Error::msg)?;
            Ok((target.to_string(), number))
        }
        None => {
            let id = JobId::parse(target).map_err(|e| anyhow::anyhow!("job id {e}"))?;
            versions::of_job(deps, &id).await
        }
    }
}

/// Submits version `number` of `name` again as a new job (id `id`, or a fresh one): the
/// same spec and scene; it becomes the next version of the name. Returns the new job.
pub async fn resubmit(
    deps: &Deps,
    name: &str,
    number: u32,
    id: Option<String>,
) -> anyhow::Result<JobId> {
    let label = version::label(number);
    let record = versions::record(deps, name, number)
        .await?
        .ok_or_else(|| anyhow::anyhow!("{name} has no version {label}"))?;
    let mut spec = record.spec;
    spec.id = Some(id.unwrap_or_else(super::new_job_id));
    // The stored spec passed the planner once; a build that reads it otherwise says so here.
    let job = crate::render::validate(spec.clone()).map_err(|invalid| {
        anyhow::anyhow!("{name} {label} cannot be submitted again: {invalid}")
    })?;
    publish::submission(&deps.js, &job.id, &spec).await?;
    Ok(job.id)
}
