//! Assembly: a tiled frame's tiles are placed into an in-memory canvas as each
//! `task.done` arrives (with a preview of the frame so far), and a frame group whose tasks
//! are all done is written to `output/` — stitched, or for an untiled frame copied on the
//! store's side. Tiles a canvas lacks (a restart, another collector, an evicted canvas)
//! are read back from the store, so the in-memory state is only ever a speed-up. A frame
//! stored completes its composite, if it has one (`composite`).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;

use crate::config::Deps;
use crate::core::frames::frame_file_name;
use crate::core::job::{ImageFormat, Job, JobId, RendererKind, Tiles};
use crate::core::outputs::output_name;
use crate::core::plan;
use crate::core::raster;
use crate::core::state::{TaskSlot, TaskState};
use crate::core::stitch::{Canvas, PixelKind};
use crate::core::tiles::Rect;
use crate::store::{StoreError, keys};

/// Previews of a frame in progress are refreshed at most this often.
const PREVIEW_EVERY: Duration = Duration::from_secs(1);

/// Longest side of a preview, in pixels.
const PREVIEW_SIDE: u32 = 1024;

/// Tiled frames being stitched, keyed by job, first task of the frame's group, and frame.
/// Canvases are kept up to the canvas budget in all; past it the least recently touched
/// are dropped, and their tiles are read back from the store when their frame completes.
pub(super) struct Stitching {
    canvases: HashMap<(JobId, u32, u32), InProgress>,
    /// Frames whose canvas was dropped for the budget: a new canvas for one of them is
    /// not filled from the store (that would read a frame's tiles again at every tile
    /// while memory is short); its preview shows only the tiles placed since.
    dropped: HashSet<(JobId, u32, u32)>,
    budget: u64,
}

impl Stitching {
    /// No frames in progress; canvases of at most `budget` bytes in all.
    pub(super) fn new(budget: u64) -> Stitching {
        Stitching {
            canvases: HashMap::new(),
            dropped: HashSet::new(),
            budget,
        }
    }

    /// Drops the least recently touched canvases until those left fit the budget (the one
    /// just touched always stays).
    fn fit_budget(&mut self) {
        loop {
            let used: u64 = self.canvases.values().map(|e| e.canvas.bytes()).sum();
            if used <= self.budget || self.canvases.len() <= 1 {
                return;
            }
            let oldest = self
                .canvases
                .iter()
                .min_by_key(|(_, e)| e.touched)
                .map(|(k, _)| k.clone())
                .expect("not empty");
            self.canvases.remove(&oldest);
            self.dropped.insert(oldest);
        }
    }

    /// Drops the canvases of `job`.
    pub(super) fn forget(&mut self, job: &str) {
        self.canvases.retain(|(id, _, _), _| id.as_str() != job);
        self.dropped.retain(|(id, _, _)| id.as_str() != job);
    }
}

struct InProgress {
    canvas: Canvas,
    touched: Instant,
    previewed: Option<Instant>,
}

/// A tile's decoded frames: (frame, image), one per frame of its task.
pub(super) type Parts = Vec<(u32, image::DynamicImage)>;

/// Reads and decodes every frame of tiled task `index`'s attempt `attempt`, each of which
/// must be an image of the tile's rendered size. `Ok(Err(reason))`: the part is bad (not
/// an image, the wrong size, missing) and the attempt must not count as done; `Err`: the
/// store failed (try again).
pub(super) async fn read_parts(
    deps: &Deps,
    job: &Job,
    index: u32,
    attempt: u32,
) -> anyhow::Result<Result<Parts, String>> {
    let task = plan::task(job, index);
    let Some(tile) = task.tile else {
        return Ok(Ok(Vec::new()));
    };
    let mut parts = Vec::with_capacity(task.frames.len());
    for &frame in &task.frames {
        match read_tile(deps, job, index, attempt, frame, tile.render).await? {
            Ok(part) => parts.push((frame, part)),
            Err(reason) => return Ok(Err(reason)),
        }
    }
    Ok(Ok(parts))
}

/// Reads and decodes the output of `frame` from task `index`'s attempt `attempt`, which must
/// be an image of `size`'s width and height (see [`read_parts`] for the two errors).
async fn read_tile(
    deps: &Deps,
    job: &Job,
    index: u32,
    attempt: u32,
    frame: u32,
    size: Rect,
) -> anyhow::Result<Result<image::DynamicImage, String>> {
    let task = plan::task(job, index);
    let file = frame_file_name(frame, job.image.format.extension());
    let source = keys::attempt_output(&job.id, &task.id, attempt, &file);
    let what = format!("the tile {} of frame {frame} (attempt {attempt})", task.id);
    let bytes = match deps.store.get(&source).await {
        Ok(bytes) => bytes,
        Err(StoreError::NotFound(_)) => return Ok(Err(format!("{what} was not stored"))),
        Err(e) => return Err(anyhow::Error::new(e).context(what)),
    };
    let decoded =
        tokio::task::spawn_blocking(move || raster::decode_sized(&bytes, size.width, size.height))
            .await?;
    Ok(decoded.map_err(|e| format!("{what} cannot be assembled: {e}")))
}

/// Places the tile just done into its frames' canvases at once, and refreshes their
/// previews.
pub(super) async fn stitch_tile(
    deps: &Deps,
    stitching: &mut Stitching,
    job: &Job,
    index: u32,
    parts: Parts,
) -> anyhow::Result<()> {
    let Some(grid) = job.tiles else {
        return Ok(());
    };
    let group = plan::frame_group(job, index);
    let task = plan::task(job, index);
    let tile = task.tile.expect("tiled jobs plan tiles");
    let slot = (index - group.start) as usize;
    for (frame, part) in parts {
        let name = output_name(job, task.layer, frame);
        let key = (job.id.clone(), group.start, frame);
        if !stitching.canvases.contains_key(&key)
            && deps.store.exists(&keys::output(job, &name)).await?
        {
            continue; // assembled already (a redelivered event)
        }
        let misplaced = |e| anyhow::anyhow!("tile {} of frame {frame}: {e}", task.id);
        let entry = match stitching.canvases.entry(key) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(vacant) => {
                let mut fresh = new_canvas(job, grid, group.len(), &part);
                fresh.place(slot, &tile, &part).map_err(misplaced)?;
                let mut canvas = Some(fresh);
                // A collector that restarted or took the job's partition over previews the
                // whole frame so far (usually there is nothing else done yet). Not a frame
                // whose canvas was dropped for the budget: that would read its tiles again
                // at every tile while memory is short.
                if !stitching.dropped.contains(vacant.key()) {
                    let slots = deps.ledger.slots_of(&job.id, group.clone()).await?;
                    place_stored_tiles(deps, job, group.clone(), &slots, frame, &mut canvas)
                        .await?
                        .into_iter()
                        .for_each(|missing| tracing::debug!(%missing, "not in the preview"));
                }
                vacant.insert(InProgress {
                    canvas: canvas.expect("made just above"),
                    touched: Instant::now(),
                    previewed: None,
                })
            }
        };
        entry.canvas.place(slot, &tile, &part).map_err(misplaced)?;
        entry.touched = Instant::now();
        if !entry.canvas.complete()
            && entry
                .previewed
                .is_none_or(|at| at.elapsed() >= PREVIEW_EVERY)
        {
            entry.previewed = Some(Instant::now());
            write_preview(deps, job, &name, entry.canvas.preview(PREVIEW_SIDE)).await?;
        }
    }
    stitching.fit_budget();
    Ok(())
}

/// Places in `canvas` (made from the first tile read when there is none) the tiles of
/// `frame` that it lacks and whose slots in `slots` (of `group`) are done, read back from
/// the store. Returns why tiles it could not read are left out (no longer stored, or not
/// an image); an error is the store's.
async fn place_stored_tiles(
    deps: &Deps,
    job: &Job,
    group: std::ops::Range<u32>,
    slots: &[TaskSlot],
    frame: u32,
    canvas: &mut Option<Canvas>,
) -> anyhow::Result<Vec<String>> {
    let Some(grid) = job.tiles else {
        return Ok(Vec::new());
    };
    let mut missing = Vec::new();
    let tiles = group.len();
    for ((i, task_index), slot) in group.enumerate().zip(slots) {
        if slot.state() != TaskState::Done || canvas.as_ref().is_some_and(|c| c.has(i)) {
            continue;
        }
        let task = plan::task(job, task_index);
        let tile = task.tile.expect("tiled jobs plan tiles");
        let part =
            match read_tile(deps, job, task_index, slot.attempt(), frame, tile.render).await? {
                Ok(part) => part,
                Err(reason) => {
                    missing.push(reason);
                    continue;
                }
            };
        canvas
            .get_or_insert_with(|| new_canvas(job, grid, tiles, &part))
            .place(i, &tile, &part)
            .map_err(|e| anyhow::anyhow!("tile {} of frame {frame}: {e}", task.id))?;
    }
    Ok(missing)
}

/// An empty canvas for a frame of `job`, in the pixel type of its first tile, `part`.
fn new_canvas(job: &Job, grid: Tiles, tiles: usize, part: &image::DynamicImage) -> Canvas {
    Canvas::new(
        job.image.width,
        job.image.height,
        PixelKind::of(part),
        grid.blend,
        grid.overscan,
        tiles,
    )
}

/// Stores `preview` (from [`Canvas::preview`]) as the preview of output `name`.
async fn write_preview(
    deps: &Deps,
    job: &Job,
    name: &str,
    preview: image::DynamicImage,
) -> anyhow::Result<()> {
    let bytes =
        tokio::task::spawn_blocking(move || raster::encode_image(&preview, ImageFormat::Png))
            .await?
            .map_err(anyhow::Error::msg)?;
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    deps.store
        .put(&keys::preview(&job.id, stem), Bytes::from(bytes))
        .await?;
    Ok(())
}

/// Writes the final frames of the group of task `index`, whose slot is now `slot`, if all
/// of its tasks are done. A tiled frame is stitched from the canvas in `stitching` when
/// there is one, else from the tiles in the store.
pub(super) async fn assemble(
    deps: &Deps,
    mut stitching: Option<&mut Stitching>,
    job: &Job,
    index: u32,
    slot: TaskSlot,
) -> anyhow::Result<()> {
    if job.renderer == RendererKind::Noop {
        return Ok(());
    }
    let group = plan::frame_group(job, index);
    // A group of one task (every untiled frame, unless chunked) is this task: no read.
    let slots = match group.len() {
        1 => vec![slot],
        _ => deps.ledger.slots_of(&job.id, group.clone()).await?,
    };
    if slots.iter().any(|s| s.state() != TaskState::Done) {
        return Ok(());
    }
    let first = plan::task(job, group.start);
    for &frame in &first.frames {
        let began = std::time::Instant::now();
        let name = output_name(job, first.layer, frame);
        let target = keys::output(job, &name);
        if job.tiles.is_none() {
            let file = frame_file_name(frame, job.image.format.extension());
            let source = keys::attempt_output(&job.id, &first.id, slots[0].attempt(), &file);
            // Copied unless there already (a redelivered event, whose part may be gone).
            deps.store
                .copy_if_absent(&source, &target)
                .await
                .with_context(|| format!("frame {frame}"))?;
            remove_parts(deps, job, group.clone(), &slots, frame).await?;
            crate::metrics::METRICS.assembled("frame", began.elapsed());
            continue;
        }
        let key = (job.id.clone(), group.start, frame);
        let in_memory = stitching.as_deref_mut().and_then(|s| {
            s.dropped.remove(&key);
            s.canvases.remove(&key)
        });
        if deps.store.exists(&target).await? {
            remove_parts(deps, job, group.clone(), &slots, frame).await?;
            continue;
        }
        // Tiles this collector has not placed (it restarted, shares the work with another
        // collector, or dropped the canvas) are read back from the store.
        let mut canvas = in_memory.map(|e| e.canvas);
        // Each tile was checked when its task turned done, so one missing now is the store's
        // fault: the event is tried again.
        let missing =
            place_stored_tiles(deps, job, group.clone(), &slots, frame, &mut canvas).await?;
        if let Some(reason) = missing.into_iter().next() {
            anyhow::bail!(reason);
        }
        let canvas = canvas.expect("a group has at least one tile");
        let format = job.image.format;
        let (bytes, preview) = tokio::task::spawn_blocking(move || {
            let preview = canvas.preview(PREVIEW_SIDE);
            (raster::encode_image(&canvas.finish(), format), preview)
        })
        .await?;
        let bytes = bytes.map_err(anyhow::Error::msg)?;
        // The frame and its last preview are stored side by side.
        tokio::try_join!(
            async {
                deps.store
                    .put_if_absent(&target, Bytes::from(bytes))
                    .await
                    .map_err(anyhow::Error::from)
            },
            write_preview(deps, job, &name, preview),
        )?;
        remove_parts(deps, job, group.clone(), &slots, frame).await?;
        crate::metrics::METRICS.assembled("frame", began.elapsed());
    }
    // Its frames are stored: a composite they complete is made now.
    let composited =
        |c: &crate::core::job::Composite| c.layers.iter().any(|&(l, _)| Some(l) == first.layer);
    if job.composite.as_ref().is_some_and(composited) {
        for &frame in &first.frames {
            super::composite::composite_frame(deps, job, frame).await?;
        }
    }
    Ok(())
}

/// Removes the raw outputs of `frame` that the tasks of `group` stored, once the frame is
/// stored in `output/`: an untiled frame is thus moved, and tiles go once stitched —
/// unless the job keeps its parts.
async fn remove_parts(
    deps: &Deps,
    job: &Job,
    group: std::ops::Range<u32>,
    slots: &[TaskSlot],
    frame: u32,
) -> anyhow::Result<()> {
    if job.keep_parts {
        return Ok(());
    }
    let file = frame_file_name(frame, job.image.format.extension());
    for (i, index) in group.enumerate() {
        let task = plan::task(job, index);
        let key = keys::attempt_output(&job.id, &task.id, slots[i].attempt(), &file);
        deps.store.delete(&key).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_canvases(budget: u64, frames: &[(&str, u32, u32)]) -> Stitching {
        let mut stitching = Stitching::new(budget);
        let start = Instant::now();
        for (i, &(job, frame, side)) in frames.iter().enumerate() {
            let canvas = Canvas::new(
                side,
                side,
                PixelKind::U8,
                crate::core::job::Blend::Crop,
                0,
                2,
            );
            stitching.canvases.insert(
                (JobId::parse(job).unwrap(), 0, frame),
                InProgress {
                    canvas,
                    touched: start + Duration::from_millis(i as u64),
                    previewed: None,
                },
            );
        }
        stitching
    }

    fn frames_left(stitching: &Stitching) -> Vec<(String, u32)> {
        let mut left: Vec<_> = stitching
            .canvases
            .keys()
            .map(|k| (k.0.to_string(), k.2))
            .collect();
        left.sort();
        left
    }

    #[test]
    fn forgetting_a_job_drops_its_canvases_only() {
        let mut stitching = with_canvases(u64::MAX, &[("a", 1, 4), ("a", 2, 4), ("ab", 1, 4)]);
        stitching.forget("a");
        assert_eq!(frames_left(&stitching), [("ab".to_string(), 1)]);
    }

    #[test]
    fn canvases_past_the_budget_go_oldest_first_but_the_newest_always_stays() {
        // 10x10 RGB bytes: 300 each.
        type Case<'a> = (u64, &'a [(&'a str, u32, u32)], &'a [(&'a str, u32)]);
        let cases: [Case; 4] = [
            (
                900,
                &[("a", 1, 10), ("a", 2, 10), ("a", 3, 10)],
                &[("a", 1), ("a", 2), ("a", 3)],
            ),
            (
                899,
                &[("a", 1, 10), ("a", 2, 10), ("a", 3, 10)],
                &[("a", 2), ("a", 3)],
            ),
            (300, &[("a", 1, 10), ("b", 1, 10)], &[("b", 1)]),
            // A single frame larger than the budget is still stitched (the planner refuses
            // such frames; a collector run with a smaller budget than its planner's copes).
            (10, &[("a", 1, 10), ("b", 1, 20)], &[("b", 1)]),
        ];
        for (budget, frames, expected) in cases {
            let mut stitching = with_canvases(budget, frames);
            stitching.fit_budget();
            let expected: Vec<(String, u32)> =
                expected.iter().map(|(j, f)| (j.to_string(), *f)).collect();
            assert_eq!(frames_left(&stitching), expected, "budget {budget}");
        }
    }
}
