//! Planning: a validated [`Job`] cut into tasks, one per (frame chunk, layer, tile).
//!
//! Planning is pure and deterministic, so every role derives the same task list from the job
//! alone: the planner to publish, the collector to know which tasks make up a frame, the CLI
//! to name tasks. Task `index` is `(chunk * layers + layer) * tiles + tile`; the task id is
//! readable and unique within the job: `f0001-0004`, `f0001-0004.t03-02`, `f0001.beauty`.
//!
//! A layer with `after` waits for those layers' tasks of the same chunk and tile; such tasks
//! are published by the collector when their dependencies are done, the rest by the planner.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::core::job::Job;
use crate::core::tiles::{self, Tile};

/// A task id, unique within its job; safe in KV and object keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub String);

impl TaskId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One task of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskPlan {
    /// Position in the job's task list.
    pub index: u32,
    /// Readable id.
    pub id: TaskId,
    /// Frames rendered, ascending.
    pub frames: Vec<u32>,
    /// The tile, for tiled jobs.
    pub tile: Option<Tile>,
    /// Index into the job's layers, for layered jobs.
    pub layer: Option<usize>,
    /// Tasks that must be done before this one is queued.
    pub waits_for: Vec<u32>,
}

/// The position of a task along the three segmentation axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coordinates {
    /// Frame chunk.
    pub chunk: u32,
    /// Layer (0 when the job has none).
    pub layer: u32,
    /// Tile, row-major (0 when the job is not tiled).
    pub tile: u32,
}

fn tile_count(job: &Job) -> u32 {
    job.tiles.map_or(1, |t| t.columns * t.rows)
}

fn layer_count(job: &Job) -> u32 {
    job.layers.len().max(1) as u32
}

/// How many tasks each chunk of frames makes: its layers times its tiles.
pub fn tasks_per_chunk(job: &Job) -> u32 {
    layer_count(job) * tile_count(job)
}

/// How many tasks the job makes (validation keeps it at most 1,000,000).
pub fn task_count(job: &Job) -> u32 {
    job.frames.chunk_count(job.chunk) as u32 * layer_count(job) * tile_count(job)
}

/// Where task `index` lies.
pub fn coordinates(job: &Job, index: u32) -> Coordinates {
    let tiles = tile_count(job);
    let layers = layer_count(job);
    Coordinates {
        chunk: index / (tiles * layers),
        layer: (index / tiles) % layers,
        tile: index % tiles,
    }
}

/// The index of the task at `at`.
pub fn index_of(job: &Job, at: Coordinates) -> u32 {
    (at.chunk * layer_count(job) + at.layer) * tile_count(job) + at.tile
}

/// Task `index` of the job. `index` must be below [`task_count`].
pub fn task(job: &Job, index: u32) -> TaskPlan {
    let at = coordinates(job, index);
    let chunk_size = job.chunk as usize;
    let start = at.chunk as usize * chunk_size;
    let all = job.frames.frames();
    let frames = all[start..(start + chunk_size).min(all.len())].to_vec();
    let tile = job.tiles.as_ref().map(|t| {
        tiles::tile(
            t,
            job.image.width,
            job.image.height,
            at.tile % t.columns,
            at.tile / t.columns,
        )
    });
    let layer = (!job.layers.is_empty()).then_some(at.layer as usize);
    let mut id = match frames.as_slice() {
        [one] => format!("f{one:04}"),
        [first, .., last] => format!("f{first:04}-{last:04}"),
        [] => unreachable!("a chunk holds at least one frame"),
    };
    if let Some(t) = &tile {
        id.push_str(&format!(".t{:02}-{:02}", t.column, t.row));
    }
    let mut waits_for = Vec::new();
    if let Some(l) = layer {
        id.push('.');
        id.push_str(&job.layers[l].name);
        waits_for = job.layers[l]
            .after
            .iter()
            .map(|&dep| {
                index_of(
                    job,
                    Coordinates {
                        layer: dep as u32,
                        ..at
                    },
                )
            })
            .collect();
    }
    TaskPlan {
        index,
        id: TaskId(id),
        frames,
        tile,
        layer,
        waits_for,
    }
}

/// Every task, by index.
pub fn tasks(job: &Job) -> impl Iterator<Item = TaskPlan> + '_ {
    (0..task_count(job)).map(move |i| task(job, i))
}

/// The tasks that make up the same frames as task `index` (its chunk and layer, every
/// tile), ascending. The frames can be assembled once all of them are done.
pub fn frame_group(job: &Job, index: u32) -> std::ops::Range<u32> {
    let tiles = tile_count(job);
    let first = index - index % tiles;
    first..first + tiles
}

/// The tasks of chunk `chunk` (every layer and tile), ascending.
pub fn chunk_tasks(job: &Job, chunk: u32) -> std::ops::Range<u32> {
    let per_chunk = layer_count(job) * tile_count(job);
    chunk * per_chunk..(chunk + 1) * per_chunk
}

/// The chunk that renders `frame`, if the job renders it.
pub fn chunk_of_frame(job: &Job, frame: u32) -> Option<u32> {
    let place = job.frames.frames().binary_search(&frame).ok()?;
    Some(place as u32 / job.chunk.max(1))
}

/// The tasks of `job` that render any of `frames` (every layer and tile of their chunks),
/// ascending: those of a job running after this one frame by frame wait for.
pub fn tasks_of_frames(job: &Job, frames: &[u32]) -> Vec<u32> {
    let mut chunks: Vec<u32> = frames
        .iter()
        .filter_map(|&f| chunk_of_frame(job, f))
        .collect();
    chunks.dedup();
    chunks
        .into_iter()
        .flat_map(|c| chunk_tasks(job, c))
        .collect()
}

/// The tasks that wait for task `index` (same chunk and tile, a layer listing its layer).
pub fn dependents(job: &Job, index: u32) -> Vec<u32> {
    let at = coordinates(job, index);
    job.layers
        .iter()
        .enumerate()
        .filter(|(_, l)| l.after.contains(&(at.layer as usize)))
        .map(|(l, _)| {
            index_of(
                job,
                Coordinates {
                    layer: l as u32,
                    ..at
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::job::from_toml;

    fn job(text: &str) -> Job {
        from_toml(&format!("id = \"p\"\n{text}"))
            .unwrap()
            .validate()
            .unwrap()
    }

    #[test]
    fn plans_frame_chunks() {
        let job = job("[frames]\nrange = \"1-10\"\nchunk = 4");
        assert_eq!(chunk_of_frame(&job, 6), Some(1));
        assert_eq!(tasks_of_frames(&job, &[5, 6, 10]), vec![1, 2]);
        let ids: Vec<String> = tasks(&job).map(|t| t.id.0).collect();
        assert_eq!(ids, ["f0001-0004", "f0005-0008", "f0009-0010"]);
        assert_eq!(task(&job, 2).frames, vec![9, 10]);
        assert_eq!(frame_group(&job, 1), 1..2);
    }

    #[test]
    fn plans_tiles_and_layers() {
        let job = job(
            "[frames]\nrange = \"1-2\"\n[tiles]\ngrid = [2, 2]\n[[layers]]\nname = \"beauty\"\n[[layers]]\nname = \"shadow\"\nafter = [\"beauty\"]",
        );
        assert_eq!(task_count(&job), 2 * 2 * 4);
        let t = task(&job, 6);
        assert_eq!(t.id.as_str(), "f0001.t00-01.shadow");
        assert_eq!(t.waits_for, vec![2]);
        assert_eq!(task(&job, 2).id.as_str(), "f0001.t00-01.beauty");
        assert_eq!(dependents(&job, 2), vec![6]);
        // Frame 2 is chunk 1 (of one frame): its 2 layers × 4 tiles.
        assert_eq!(chunk_of_frame(&job, 2), Some(1));
        assert_eq!(chunk_of_frame(&job, 9), None);
        assert_eq!(chunk_tasks(&job, 1), 8..16);
        assert_eq!(tasks_of_frames(&job, &[2, 9]), (8..16).collect::<Vec<_>>());
        assert!(dependents(&job, 6).is_empty());
        assert_eq!(frame_group(&job, 9), 8..12);
        assert_eq!(task(&job, 9).frames, vec![2]);
        for i in 0..task_count(&job) {
            assert_eq!(index_of(&job, coordinates(&job, i)), i);
        }
        let ids: std::collections::BTreeSet<_> = tasks(&job).map(|t| t.id).collect();
        assert_eq!(ids.len(), 16, "ids are unique");
    }
}
