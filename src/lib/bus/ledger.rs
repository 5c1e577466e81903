//! The ledger: job records and task states in the `tessera-jobs` KV bucket.
//!
//! Key `<job>` holds the [`JobRecord`]; keys `<job>.p<n>` hold pages of [`PAGE_SIZE`] task
//! slots. Every change is a read-modify-write under compare-and-swap on the key's revision,
//! retried on conflict, so any number of planners and collectors may write concurrently and
//! each transition happens once. Job creation is create-if-absent on the id, which is what
//! makes a job submitted twice planned once (the stream's dedup window forgets acked
//! messages after a server restart).

use anyhow::Context as _;
use async_nats::jetstream::kv;
use bytes::Bytes;

use crate::bus::protocol::{decode, encode};
use crate::core::job::JobId;
use crate::core::state::{
    Change, Counts, JobRecord, PAGE_SIZE, Page, TaskSlot, TaskState, apply, page_count, page_of,
};

/// Handle on the `tessera-jobs` bucket.
#[derive(Clone)]
pub struct Ledger {
    kv: kv::Store,
}

/// What creating a job record found.
pub enum Created {
    /// The record is new.
    New,
    /// A record with this id was there already.
    Exists(Box<JobRecord>),
}

fn page_key(job: &JobId, page: u32) -> String {
    format!("{job}.p{page}")
}

/// The key that says `waiter` runs after `job` (`after = [...]`): `<job>.after.<waiter>`,
/// beside `job`'s record, so that it goes when `job`'s records are purged.
fn waiter_key(job: &JobId, waiter: &JobId) -> String {
    format!("{job}.after.{waiter}")
}

impl Ledger {
    /// Wraps the bucket.
    pub fn new(kv: kv::Store) -> Ledger {
        Ledger { kv }
    }

    /// Files that `waiter` runs after `job` (which may not exist yet).
    pub async fn add_waiter(&self, job: &JobId, waiter: &JobId) -> anyhow::Result<()> {
        self.kv
            .put(waiter_key(job, waiter), Bytes::new())
            .await
            .with_context(|| format!("filing that {waiter} runs after {job}"))?;
        Ok(())
    }

    /// The jobs filed as running after `job`: one request, whatever else the bucket holds.
    pub async fn waiters(&self, job: &JobId) -> anyhow::Result<Vec<JobId>> {
        let filter = format!("{}{job}.after.*", self.kv.prefix);
        let subjects = super::streams::subjects(&self.kv.stream, &filter).await;
        Ok(subjects
            .with_context(|| format!("reading the jobs after {job}"))?
            .into_iter()
            .filter_map(|(subject, _)| JobId::parse(subject.rsplit('.').next()?).ok())
            .collect())
    }

    /// Creates the record unless the id exists.
    pub async fn create_job(&self, record: &JobRecord) -> anyhow::Result<Created> {
        let id = record.spec.id.clone().context("a job record needs an id")?;
        match self.kv.create(&id, Bytes::from(encode(record))).await {
            Ok(_) => Ok(Created::New),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                let (existing, _) = self
                    .job(&JobId::parse(&id).map_err(anyhow::Error::msg)?)
                    .await?
                    .context("job record vanished after a create conflict")?;
                Ok(Created::Exists(Box::new(existing)))
            }
            Err(e) => Err(e).with_context(|| format!("creating job record {id}")),
        }
    }

    /// Every job that has a record (task pages, `<job>.p<n>`, are not jobs).
    pub async fn jobs(&self) -> anyhow::Result<Vec<JobId>> {
        use futures::StreamExt as _;
        let mut keys = self.kv.keys().await.context("listing job records")?;
        let mut jobs = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| anyhow::anyhow!("listing job records: {e}"))?;
            jobs.extend(JobId::parse(&key).ok());
        }
        Ok(jobs)
    }

    /// The job record and its revision.
    pub async fn job(&self, job: &JobId) -> anyhow::Result<Option<(JobRecord, u64)>> {
        let Some(entry) = self
            .kv
            .entry(job.as_str())
            .await
            .with_context(|| format!("reading job record {job}"))?
        else {
            return Ok(None);
        };
        if entry.operation != kv::Operation::Put {
            return Ok(None);
        }
        let record = decode(&entry.value)
            .map_err(|e| anyhow::anyhow!("job record {job} is unreadable: {e}"))?;
        Ok(Some((record, entry.revision)))
    }

    /// Applies `change` to the job record under CAS; `change` returns false to leave it.
    /// Returns the record as it stands afterwards, and whether this call changed it.
    pub async fn update_job(
        &self,
        job: &JobId,
        mut change: impl FnMut(&mut JobRecord) -> bool,
    ) -> anyhow::Result<(JobRecord, bool)> {
        loop {
            let (mut record, revision) = self
                .job(job)
                .await?
                .with_context(|| format!("no job {job}"))?;
            if !change(&mut record) {
                return Ok((record, false));
            }
            match self
                .kv
                .update(job.as_str(), Bytes::from(encode(&record)), revision)
                .await
            {
                Ok(_) => return Ok((record, true)),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(e).with_context(|| format!("updating job record {job}")),
            }
        }
    }

    /// Creates the task pages of a new job (each only if absent): task `i` starts in
    /// `state(i)`.
    pub async fn create_pages(
        &self,
        job: &JobId,
        tasks: u32,
        state: impl Fn(u32) -> TaskState,
    ) -> anyhow::Result<()> {
        for page in 0..page_count(tasks) {
            let first = page * PAGE_SIZE;
            let last = (first + PAGE_SIZE).min(tasks);
            let slots = (first..last).map(|i| TaskSlot(state(i), 0)).collect();
            match self
                .kv
                .create(page_key(job, page), Bytes::from(encode(&Page { slots })))
                .await
            {
                Ok(_) => {}
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("creating task page {page} of {job}"));
                }
            }
        }
        Ok(())
    }

    async fn page(&self, job: &JobId, page: u32) -> anyhow::Result<(Page, u64)> {
        let entry = self
            .kv
            .entry(page_key(job, page))
            .await
            .with_context(|| format!("reading task page {page} of {job}"))?
            .with_context(|| format!("task page {page} of {job} is missing"))?;
        let page_value = decode(&entry.value)
            .map_err(|e| anyhow::anyhow!("task page {page} of {job} is unreadable: {e}"))?;
        Ok((page_value, entry.revision))
    }

    /// Applies `change` to task `index`. Returns the slot before and after (equal when
    /// nothing changed).
    pub async fn change_task(
        &self,
        job: &JobId,
        index: u32,
        change: Change,
    ) -> anyhow::Result<(TaskSlot, TaskSlot)> {
        let slots = self
            .change_page(job, page_of(index).0, &[(index, change)])
            .await?;
        Ok(slots[0])
    }

    /// Applies `changes` in order, all to tasks of page `page_no`, with one compare-and-swap
    /// of the page (retried whole on a conflict): what a batch of events does. Returns the
    /// slot before and after each change, in order.
    pub async fn change_page(
        &self,
        job: &JobId,
        page_no: u32,
        changes: &[(u32, Change)],
    ) -> anyhow::Result<Vec<(TaskSlot, TaskSlot)>> {
        loop {
            let (mut page, revision) = self.page(job, page_no).await?;
            let mut out = Vec::with_capacity(changes.len());
            for &(index, change) in changes {
                let (on, at) = page_of(index);
                anyhow::ensure!(on == page_no, "task {index} is not on page {page_no}");
                let slot = page
                    .slots
                    .get_mut(at)
                    .with_context(|| format!("job {job} has no task {index}"))?;
                let before = *slot;
                *slot = apply(before, change).unwrap_or(before);
                out.push((before, *slot));
            }
            if out.iter().all(|(before, after)| before == after) {
                return Ok(out);
            }
            match self
                .kv
                .update(page_key(job, page_no), Bytes::from(encode(&page)), revision)
                .await
            {
                Ok(_) => return Ok(out),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("updating task page {page_no} of {job}"));
                }
            }
        }
    }

    /// Applies `change` to every task it changes; returns the indices of those it changed.
    pub async fn change_all(
        &self,
        job: &JobId,
        tasks: u32,
        change: Change,
    ) -> anyhow::Result<Vec<u32>> {
        let mut changed = Vec::new();
        for page_no in 0..page_count(tasks) {
            loop {
                let (mut page, revision) = self.page(job, page_no).await?;
                let mut now = Vec::new();
                for (i, slot) in page.slots.iter_mut().enumerate() {
                    if let Some(after) = apply(*slot, change) {
                        *slot = after;
                        now.push(page_no * PAGE_SIZE + i as u32);
                    }
                }
                if now.is_empty() {
                    break;
                }
                match self
                    .kv
                    .update(page_key(job, page_no), Bytes::from(encode(&page)), revision)
                    .await
                {
                    Ok(_) => {
                        changed.extend(now);
                        break;
                    }
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("updating task page {page_no} of {job}"));
                    }
                }
            }
        }
        Ok(changed)
    }

    /// Every task slot of the job, by index.
    pub async fn slots(&self, job: &JobId, tasks: u32) -> anyhow::Result<Vec<TaskSlot>> {
        let mut slots = Vec::with_capacity(tasks as usize);
        for page_no in 0..page_count(tasks) {
            slots.extend(self.page(job, page_no).await?.0.slots);
        }
        Ok(slots)
    }

    /// The slots of tasks `indices` (which should be few and close together).
    pub async fn slots_of(
        &self,
        job: &JobId,
        indices: impl IntoIterator<Item = u32>,
    ) -> anyhow::Result<Vec<TaskSlot>> {
        let mut cached: Option<(u32, Page)> = None;
        let mut out = Vec::new();
        for index in indices {
            let (page_no, at) = page_of(index);
            if cached.as_ref().is_none_or(|(n, _)| *n != page_no) {
                cached = Some((page_no, self.page(job, page_no).await?.0));
            }
            let page = &cached.as_ref().expect("just filled").1;
            out.push(
                *page
                    .slots
                    .get(at)
                    .with_context(|| format!("job {job} has no task {index}"))?,
            );
        }
        Ok(out)
    }

    /// Task counts.
    pub async fn counts(&self, job: &JobId, tasks: u32) -> anyhow::Result<Counts> {
        Ok(Counts::of(&self.slots(job, tasks).await?))
    }

    /// Whether every slot in the page of task `index` has ended (a cheap first check before
    /// counting the whole job).
    pub async fn page_ended(&self, job: &JobId, index: u32) -> anyhow::Result<bool> {
        let (page, _) = self.page(job, page_of(index).0).await?;
        Ok(page.slots.iter().all(|s| s.state().is_terminal()))
    }
}
