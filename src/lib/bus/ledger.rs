//! The ledger: job records and task states in the `tessera-jobs` KV bucket.
//!
//! Key `<job>` holds the [`JobRecord`]; keys `<job>.p<n>` hold pages of [`PAGE_SIZE`] task
//! slots. Every change is a read-modify-write under compare-and-swap on the key's revision,
//! retried on conflict, so any number of planners and collectors may write concurrently and
//! each transition happens once. Job creation is create-if-absent on the id, which is what
//! makes a job submitted twice planned once (the stream's dedup window forgets acked
//! messages after a server restart).
//!
//! Each page's message also carries its [`Tally`] in a header, written with the slots, so a
//! job's counts are read from one header per page ([`Ledger::tally`]) without its slots.

use anyhow::Context as _;
use async_nats::jetstream::{self, context::PublishErrorKind, kv};
use bytes::Bytes;
use futures::StreamExt as _;

use crate::bus::history::each_stored;
use crate::bus::protocol::{decode, encode};
use crate::core::job::JobId;
use crate::core::state::{
    Change, Counts, JobRecord, PAGE_SIZE, Page, TaskSlot, TaskState, apply, page_count, page_of,
};
use crate::core::tally::{TALLY_HEADER, Tally};

/// Handle on the `tessera-jobs` bucket.
#[derive(Clone)]
pub struct Ledger {
    js: jetstream::Context,
    kv: kv::Store,
}

/// What creating a job record found.
pub enum Created {
    /// The record is new.
    New,
    /// A record with this id was there already.
    Exists(Box<JobRecord>),
}

/// Whether a KV message is a delete or purge marker, not a value.
fn is_delete_marker(msg: &jetstream::Message) -> bool {
    msg.headers
        .as_ref()
        .is_some_and(|h| h.get("KV-Operation").is_some())
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
    /// Wraps the bucket, written through `js`.
    pub fn new(js: jetstream::Context, kv: kv::Store) -> Ledger {
        Ledger { js, kv }
    }

    /// Writes task page `page_no` with its tally, if the page's last revision is
    /// `revision` (0: the page must not exist). Returns false on a conflict.
    async fn put_page(
        &self,
        job: &JobId,
        page_no: u32,
        page: &Page,
        revision: u64,
    ) -> anyhow::Result<bool> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Expected-Last-Subject-Sequence", revision.to_string());
        headers.insert(TALLY_HEADER, Tally::of(&page.slots).header());
        let subject = format!(
            "{}{}",
            self.kv.put_prefix.as_ref().unwrap_or(&self.kv.prefix),
            page_key(job, page_no)
        );
        let context = || format!("writing task page {page_no} of {job}");
        let ack = self
            .js
            .publish_with_headers(subject, headers, Bytes::from(encode(page)))
            .await
            .with_context(context)?;
        match ack.await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(false),
            Err(e) => Err(e).with_context(context),
        }
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
        let mut keys = self.kv.keys().await.context("listing job records")?;
        let mut jobs = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| anyhow::anyhow!("listing job records: {e}"))?;
            jobs.extend(JobId::parse(&key).ok());
        }
        Ok(jobs)
    }

    /// Every job record, read with one consumer of the records' keys (never the task
    /// pages): what `tessera jobs` lists.
    pub async fn records(&self) -> anyhow::Result<Vec<JobRecord>> {
        let config = jetstream::consumer::pull::OrderedConfig {
            filter_subject: format!("{}*", self.kv.prefix),
            deliver_policy: jetstream::consumer::DeliverPolicy::LastPerSubject,
            ..Default::default()
        };
        let mut out = Vec::new();
        each_stored(&self.kv.stream, config, "the job records", |msg| {
            if is_delete_marker(msg) {
                return;
            }
            match decode::<JobRecord>(&msg.payload) {
                Ok(record) => out.push(record),
                Err(e) => {
                    tracing::warn!(subject = %msg.subject, error = %e, "an unreadable job record")
                }
            }
        })
        .await?;
        Ok(out)
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
            let page_value = Page {
                slots: (first..last).map(|i| TaskSlot(state(i), 0)).collect(),
            };
            if self.put_page(job, page, &page_value, 0).await? {
                continue;
            }
            // A page of a deleted job of the same id leaves a delete marker: written over.
            let key = page_key(job, page);
            let entry = self.kv.entry(&key).await;
            let entry = entry.with_context(|| format!("reading task page {page} of {job}"))?;
            if let Some(marker) = entry.filter(|e| e.operation != kv::Operation::Put) {
                self.put_page(job, page, &page_value, marker.revision)
                    .await?;
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
            if self.put_page(job, page_no, &page, revision).await? {
                return Ok(out);
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
                if self.put_page(job, page_no, &page, revision).await? {
                    changed.extend(now);
                    break;
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

    /// The job's tasks by state, read from its pages' tally headers alone: one small
    /// message a page, streamed by one consumer, whatever the job's size. A page written
    /// before tallies (or not yet written by its planner) is counted from its slots (or as
    /// queued).
    pub async fn tally(&self, job: &JobId, tasks: u32) -> anyhow::Result<Tally> {
        let pages = page_count(tasks);
        let mut found: Vec<Option<Tally>> = vec![None; pages as usize];
        if pages > 4 {
            let config = jetstream::consumer::pull::OrderedConfig {
                filter_subject: format!("{}{job}.*", self.kv.prefix),
                deliver_policy: jetstream::consumer::DeliverPolicy::LastPerSubject,
                headers_only: true,
                ..Default::default()
            };
            let what = format!("the task counts of {job}");
            each_stored(&self.kv.stream, config, &what, |msg| {
                let page_no = msg
                    .subject
                    .rsplit('.')
                    .next()
                    .and_then(|t| t.strip_prefix('p')?.parse::<u32>().ok());
                let tally = msg
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(TALLY_HEADER))
                    .and_then(|v| Tally::parse(v.as_str()).ok());
                if let Some(at) = page_no.filter(|&n| n < pages)
                    && !is_delete_marker(msg)
                {
                    found[at as usize] = tally;
                }
            })
            .await?;
        }
        let mut total = Tally::default();
        for (page_no, tally) in (0..pages).zip(found) {
            let tally = match tally {
                Some(tally) => tally,
                None => match self.kv.entry(page_key(job, page_no)).await? {
                    Some(entry) if entry.operation == kv::Operation::Put => {
                        let page: Page = decode(&entry.value).map_err(|e| {
                            anyhow::anyhow!("task page {page_no} of {job} is unreadable: {e}")
                        })?;
                        Tally::of(&page.slots)
                    }
                    _ => Tally {
                        queued: (tasks - page_no * PAGE_SIZE).min(PAGE_SIZE),
                        ..Tally::default()
                    },
                },
            };
            total.merge(&tally);
        }
        Ok(total)
    }

    /// Whether every slot in the page of task `index` has ended (a cheap first check before
    /// counting the whole job).
    pub async fn page_ended(&self, job: &JobId, index: u32) -> anyhow::Result<bool> {
        let (page, _) = self.page(job, page_of(index).0).await?;
        Ok(page.slots.iter().all(|s| s.state().is_terminal()))
    }
}
