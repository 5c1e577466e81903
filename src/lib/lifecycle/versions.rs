//! Published versions ([`core::version`](crate::core::version)), by the roles that touch
//! them: the planner numbers and publishes a version when it accepts a job that names its
//! `output` ([`allocate`], [`publish`]), the collector writes its trace when the job is
//! done ([`write_trace`]), the CLI lists, approves and resubmits them ([`list`],
//! [`approve`], [`record`]).
//!
//! A version's number is taken by creating its key in the `tessera-versions` bucket (a
//! create fails if the key exists, so two jobs never share one); the store's folders give
//! where to start. Its records and files go into the store with
//! [`put_if_absent`](crate::store::Store::put_if_absent) only, and the store refuses
//! anything else under `versions/`.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context as _;
use async_nats::jetstream::kv;
use bytes::Bytes;

use crate::bus::protocol::{self, Event, EventKind};
use crate::bus::streams;
use crate::config::Deps;
use crate::core::job::{Job, JobId};
use crate::core::plan;
use crate::core::state::{JobState, TaskState};
use crate::core::version::{
    self, Approval, Listed, MAX_VERSION, Standing, TaskTrace, Trace, VersionRecord,
};
use crate::store::{StoreError, keys};

/// The next version of `name` for `job`: its key created in the versions bucket. A
/// planning resumed after a crash finds its own key again where the store's folders
/// say to start (unless another job took the next number meanwhile: then the number is
/// skipped).
pub async fn allocate(deps: &Deps, name: &str, job: &Job) -> anyhow::Result<u32> {
    let bucket = streams::versions_bucket(&deps.js).await?;
    let owner = format!("{} {}", job.id, job.incarnation);
    let mut number = numbers(deps, name).await?.last().copied().unwrap_or(0) + 1;
    loop {
        if number > MAX_VERSION {
            anyhow::bail!("output {name} has no version left after {MAX_VERSION}");
        }
        let key = format!("{name}/{}", version::label(number));
        match bucket.create(&key, Bytes::from(owner.clone())).await {
            Ok(_) => return Ok(number),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                let held = bucket.get(&key).await?;
                if held.as_deref() == Some(owner.as_bytes()) {
                    return Ok(number);
                }
                number += 1;
            }
            Err(e) => return Err(e).with_context(|| format!("numbering a version of {name}")),
        }
    }
}

/// The versions of `name` with a folder in the store, ascending.
async fn numbers(deps: &Deps, name: &str) -> anyhow::Result<Vec<u32>> {
    let prefix = keys::versions_prefix(name);
    let folders = deps.store.list_folders(&prefix).await?;
    let mut numbers: Vec<u32> = folders
        .iter()
        .filter_map(|f| version::parse_label(f.strip_prefix(&prefix)?.trim_end_matches('/')).ok())
        .collect();
    numbers.sort_unstable();
    Ok(numbers)
}

/// Writes `version.json` of `job`, version `number` of its output: its spec, scene
/// manifest and renderer. Idempotent.
pub async fn publish(deps: &Deps, job: &Job, number: u32) -> anyhow::Result<()> {
    let name = job.output.as_deref().context("the job names no output")?;
    let key = keys::version_record(name, number);
    if deps.store.exists(&key).await? {
        return Ok(());
    }
    let scene = match &job.scene_manifest {
        Some(hex) => {
            let bytes = deps.store.get(&keys::manifest(hex)).await;
            let bytes = bytes.with_context(|| format!("reading the scene of {}", job.id))?;
            Some(serde_json::from_slice(&bytes).context("the scene manifest")?)
        }
        None => None,
    };
    let record = VersionRecord {
        schema: protocol::SCHEMA,
        name: name.to_string(),
        version: number,
        job: job.id.clone(),
        incarnation: job.incarnation.clone(),
        published_ms: protocol::now_ms(),
        renderer: job.renderer,
        spec: job.spec.clone(),
        scene,
    };
    let bytes = serde_json::to_vec_pretty(&record).expect("records serialise");
    deps.store.put_if_absent(&key, Bytes::from(bytes)).await?;
    Ok(())
}

/// Writes `trace.json` of the version `job` publishes, if it publishes one: the attempt
/// kept of every task, the worker that ran it and the renderer's version there (from the
/// task's `task.done` event), and the version's files. Idempotent.
pub async fn write_trace(deps: &Deps, job: &Job) -> anyhow::Result<()> {
    let (Some(name), Some(number)) = (job.output.as_deref(), job.version) else {
        return Ok(());
    };
    let key = keys::version_trace(name, number);
    if deps.store.exists(&key).await? {
        return Ok(());
    }
    let slots = deps.ledger.slots(&job.id, plan::task_count(job)).await?;
    let ran = task_done_events(deps, job).await?;
    let mut tasks = Vec::with_capacity(slots.len());
    let mut renderer_versions = BTreeMap::<String, u32>::new();
    for (index, slot) in (0u32..).zip(&slots) {
        if slot.state() != TaskState::Done {
            continue;
        }
        let event = ran.get(&(index, slot.attempt()));
        let renderer_version = event.and_then(|e| e.renderer_version.clone());
        if let Some(v) = &renderer_version {
            *renderer_versions.entry(v.clone()).or_default() += 1;
        }
        tasks.push(TaskTrace {
            index,
            task: plan::task(job, index).id,
            attempt: slot.attempt(),
            // Events are kept a week: a job that ran longer may have lost its first ones.
            worker: event
                .and_then(|e| e.worker.clone())
                .unwrap_or_else(|| "unknown".into()),
            renderer_version,
        });
    }
    let folder = keys::output_prefix(job);
    let files = deps
        .store
        .list(&folder)
        .await?
        .iter()
        .filter(|k| !keys::is_version_record(&folder, k))
        .filter_map(|k| k.strip_prefix(&folder).map(str::to_string))
        .collect();
    let trace = Trace {
        schema: protocol::SCHEMA,
        job: job.id.clone(),
        finished_ms: protocol::now_ms(),
        renderer_versions,
        tasks,
        files,
    };
    let bytes = serde_json::to_vec_pretty(&trace).expect("traces serialise");
    deps.store.put_if_absent(&key, Bytes::from(bytes)).await?;
    Ok(())
}

/// The `task.done` events of `job`'s incarnation, by (task index, attempt): the first of
/// each.
async fn task_done_events(deps: &Deps, job: &Job) -> anyhow::Result<HashMap<(u32, u32), Event>> {
    let filter = protocol::stored_event_subject(job.id.as_str(), EventKind::TaskDone);
    let mut out = HashMap::new();
    for event in crate::bus::history::stored(&deps.js, filter).await? {
        if event.incarnation.as_deref() == Some(job.incarnation.as_str())
            && let (Some(index), Some(attempt)) = (event.index, event.attempt)
        {
            out.entry((index, attempt)).or_insert(event);
        }
    }
    Ok(out)
}

/// The record of version `number` of `name`, if it was published.
pub async fn record(deps: &Deps, name: &str, number: u32) -> anyhow::Result<Option<VersionRecord>> {
    read(deps, &keys::version_record(name, number)).await
}

/// The JSON record at `key`, if there is one.
async fn read<T: serde::de::DeserializeOwned>(deps: &Deps, key: &str) -> anyhow::Result<Option<T>> {
    match deps.store.get(key).await {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes).with_context(|| format!("reading {key}"))?,
        )),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The output name and version of job `id`, if it publishes one.
pub async fn of_job(deps: &Deps, id: &JobId) -> anyhow::Result<(String, u32)> {
    let (record, _) = deps
        .ledger
        .job(id)
        .await?
        .with_context(|| format!("no job {id}"))?;
    match (record.spec.output, record.version) {
        (Some(name), Some(number)) => Ok((name, number)),
        (Some(name), None) => anyhow::bail!("job {id} is not published as a version of {name} yet"),
        (None, _) => anyhow::bail!(
            "job {id} names no output (`output = \"shot/task\"`), so it has no version"
        ),
    }
}

/// Every published version of `name`, oldest first.
pub async fn list(deps: &Deps, name: &str) -> anyhow::Result<Vec<Listed>> {
    version::check_name(name).map_err(|e| anyhow::anyhow!("output name {e}"))?;
    let numbers = numbers(deps, name).await?;
    let mut listed = Vec::with_capacity(numbers.len());
    for number in numbers {
        let Some(record) = record(deps, name, number).await? else {
            continue;
        };
        listed.push(Listed {
            name: name.to_string(),
            version: number,
            label: version::label(number),
            job: record.job.clone(),
            published_ms: record.published_ms,
            standing: standing(deps, name, number, &record.job).await?,
            approval: approval(deps, name, number).await?,
            folder: keys::version_prefix(name, number),
            location: location(deps, &keys::version_prefix(name, number)),
        });
    }
    Ok(listed)
}

/// Where a version stands: complete once its trace is written, else by its job.
async fn standing(deps: &Deps, name: &str, number: u32, job: &JobId) -> anyhow::Result<Standing> {
    if deps
        .store
        .exists(&keys::version_trace(name, number))
        .await?
    {
        return Ok(Standing::Complete);
    }
    // A job recorded done writes the trace next.
    Ok(match deps.ledger.job(job).await? {
        Some((record, _)) if !record.state.is_terminal() || record.state == JobState::Done => {
            Standing::Rendering
        }
        _ => Standing::Incomplete,
    })
}

async fn approval(deps: &Deps, name: &str, number: u32) -> anyhow::Result<Option<Approval>> {
    read(deps, &keys::version_approval(name, number)).await
}

/// `folder` as a tool would load it: under the store's URL.
fn location(deps: &Deps, folder: &str) -> String {
    format!("{}/{folder}", deps.store.url().trim_end_matches('/'))
}

/// What [`approve`] did.
#[derive(Debug)]
pub enum Approved {
    /// The version is approved now.
    Now(Approval),
    /// It was approved already (approvals are never replaced).
    Already(Approval),
}

/// Approves version `number` of `name` as `by`, saying `note`: only a complete one.
pub async fn approve(
    deps: &Deps,
    name: &str,
    number: u32,
    by: &str,
    note: Option<String>,
) -> anyhow::Result<Approved> {
    let label = version::label(number);
    let Some(record) = record(deps, name, number).await? else {
        anyhow::bail!("{name} has no version {label}");
    };
    match standing(deps, name, number, &record.job).await? {
        Standing::Complete => {}
        Standing::Rendering => anyhow::bail!(
            "{name} {label} is still rendering (job {}): approve it once the job is done",
            record.job
        ),
        Standing::Incomplete => anyhow::bail!(
            "{name} {label} is incomplete (job {} did not finish): retry the job, or resubmit the version",
            record.job
        ),
    }
    let approval = Approval {
        schema: protocol::SCHEMA,
        by: by.to_string(),
        at_ms: protocol::now_ms(),
        note,
    };
    let key = keys::version_approval(name, number);
    let bytes = serde_json::to_vec_pretty(&approval).expect("approvals serialise");
    if deps.store.put_if_absent(&key, Bytes::from(bytes)).await? {
        return Ok(Approved::Now(approval));
    }
    let earlier = self::approval(deps, name, number).await?;
    Ok(Approved::Already(earlier.context("the approval vanished")?))
}
