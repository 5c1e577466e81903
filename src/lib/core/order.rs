//! The order a job's tasks are queued in: frame order by default; key frames first when
//! the job asks (`frames.first = "1,48,24"`, or `frames.order = "preview"`: first, last,
//! middle, then the middles of the gaps, halving them, so that an artist sees the whole
//! shot coarsely early and finer as it renders). Pure: the planner queues a job's first
//! tasks in this order and the collector releases the held ones in it.
//!
//! The frames a job asks for first are its key frames ([`is_key`]): those `frames.first`
//! names, else with `order = "preview"` the first, last and middle frame. Their tasks go
//! to the fastest idle workers (see the worker's key waits).

use crate::core::frames::FrameRange;
use crate::core::job::Job;
use crate::core::plan;

/// The most frames `frames.first` may name.
pub const MAX_FIRST: usize = 1000;

/// How a job orders its frames.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameOrder {
    /// Frames rendered before all others, in this order.
    pub first: Vec<u32>,
    /// Then the rest in preview order (else in frame order).
    pub preview: bool,
}

impl FrameOrder {
    /// Reads `frames.order` and `frames.first` against the job's `frames`; each problem
    /// names its field.
    pub fn parse(
        order: Option<&str>,
        first: Option<&str>,
        frames: &FrameRange,
    ) -> Result<FrameOrder, Vec<(&'static str, String)>> {
        let mut problems = Vec::new();
        let preview = match order {
            None | Some("sequence") => false,
            Some("preview") => true,
            Some(other) => {
                problems.push((
                    "frames.order",
                    format!("{other:?} is not an order: use sequence or preview"),
                ));
                false
            }
        };
        let mut listed = Vec::new();
        let parts = first
            .filter(|text| !text.trim().is_empty())
            .into_iter()
            .flat_map(|text| text.split(',').map(str::trim));
        for part in parts {
            match part.parse::<u32>() {
                Ok(frame) if frames.frames().binary_search(&frame).is_err() => problems.push((
                    "frames.first",
                    format!("frame {frame} is not in the job's frames ({frames})"),
                )),
                Ok(frame) if listed.contains(&frame) => {
                    problems.push(("frames.first", format!("frame {frame} is named twice")))
                }
                Ok(frame) => listed.push(frame),
                Err(_) => problems.push((
                    "frames.first",
                    format!("{part:?} is not a frame number: write e.g. \"1,48,24\""),
                )),
            }
        }
        if listed.len() > MAX_FIRST {
            problems.push((
                "frames.first",
                format!("names {} frames; at most {MAX_FIRST}", listed.len()),
            ));
        }
        match problems.is_empty() {
            true => Ok(FrameOrder {
                first: listed,
                preview,
            }),
            false => Err(problems),
        }
    }

    /// Whether frames go in plain frame order.
    pub fn is_sequence(&self) -> bool {
        self.first.is_empty() && !self.preview
    }
}

/// Whether `task` of `job` renders a key frame: one of those `frames.first` names, or
/// without `first` and with `order = "preview"`, the first, the last or the middle frame
/// (the preview's first three).
pub fn is_key(job: &Job, task: &plan::TaskPlan) -> bool {
    let order = &job.order;
    if !order.first.is_empty() {
        return task.frames.iter().any(|f| order.first.contains(f));
    }
    if !order.preview {
        return false;
    }
    let frames = job.frames.frames();
    let Some(last) = frames.len().checked_sub(1) else {
        return false;
    };
    let keys = [frames[0], frames[last / 2], frames[last]];
    task.frames.iter().any(|f| keys.contains(f))
}

/// The positions `0..n` of a frame list in preview order: first, last, middle, then the
/// middle of each gap, halving the gaps, level by level.
pub fn preview_positions(n: usize) -> Vec<usize> {
    let mut order = Vec::with_capacity(n);
    if n == 0 {
        return order;
    }
    order.push(0);
    if n == 1 {
        return order;
    }
    order.push(n - 1);
    let mut gaps = std::collections::VecDeque::from([(0, n - 1)]);
    while let Some((low, high)) = gaps.pop_front() {
        if high - low < 2 {
            continue;
        }
        let middle = (low + high) / 2;
        order.push(middle);
        gaps.push_back((low, middle));
        gaps.push_back((middle, high));
    }
    order
}

/// The job's task indices in the order they are to be queued, or `None` for task order
/// (a job without `first` or `order = "preview"`). A chunk goes where its earliest frame
/// goes; its layers and tiles follow it in task order.
pub fn queue_order(job: &Job) -> Option<Vec<u32>> {
    if job.order.is_sequence() {
        return None;
    }
    let frames = job.frames.frames();
    let chunk = job.chunk as usize;
    let chunks = frames.len().div_ceil(chunk);
    // Each chunk's rank: the earliest place any of its frames takes.
    let mut rank = vec![usize::MAX; chunks];
    let mut next = 0;
    let mut place = |position: usize, rank: &mut Vec<usize>| {
        let chunk_of = position / chunk;
        if rank[chunk_of] == usize::MAX {
            rank[chunk_of] = next;
            next += 1;
        }
    };
    for frame in &job.order.first {
        if let Ok(position) = frames.binary_search(frame) {
            place(position, &mut rank);
        }
    }
    let rest: Box<dyn Iterator<Item = usize>> = match job.order.preview {
        true => Box::new(preview_positions(frames.len()).into_iter()),
        false => Box::new(0..frames.len()),
    };
    for position in rest {
        place(position, &mut rank);
    }
    let mut by_rank: Vec<u32> = (0..chunks as u32).collect();
    by_rank.sort_by_key(|&c| rank[c as usize]);
    let per_chunk = plan::task_count(job) / chunks as u32;
    Some(
        by_rank
            .into_iter()
            .flat_map(|c| c * per_chunk..(c + 1) * per_chunk)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_order_is_first_last_middle_then_halves() {
        let frames = |n| {
            preview_positions(n)
                .into_iter()
                .map(|p| p + 1)
                .collect::<Vec<_>>()
        };
        assert_eq!(frames(0), Vec::<usize>::new());
        assert_eq!(frames(1), [1]);
        assert_eq!(frames(2), [1, 2]);
        assert_eq!(frames(5), [1, 5, 3, 2, 4]);
        let order = frames(48);
        assert_eq!(order[..7], [1, 48, 24, 12, 36, 6, 18]);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (1..=48).collect::<Vec<_>>(), "every frame once");
    }

    #[test]
    fn first_and_order_are_checked_naming_the_field() {
        let frames = FrameRange::parse("1-48").unwrap();
        /// (order, first) -> the frames first and whether in preview order, or the field
        /// of the problem.
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            Result<(Vec<u32>, bool), &'a str>,
        );
        let cases: [Case; 7] = [
            (None, None, Ok((vec![], false))),
            (Some("preview"), None, Ok((vec![], true))),
            (None, Some("1, 48,24"), Ok((vec![1, 48, 24], false))),
            (Some("random"), None, Err("frames.order")),
            (None, Some("1,49"), Err("frames.first")),
            (None, Some("3,3"), Err("frames.first")),
            (None, Some("1,x"), Err("frames.first")),
        ];
        for (order, first, expected) in cases {
            let got = FrameOrder::parse(order, first, &frames);
            match expected {
                Ok((listed, preview)) => assert_eq!(
                    got,
                    Ok(FrameOrder {
                        first: listed,
                        preview
                    }),
                    "{order:?} {first:?}"
                ),
                Err(field) => {
                    let problems = got.expect_err("a problem");
                    assert!(problems.iter().all(|(f, _)| *f == field), "{problems:?}");
                }
            }
        }
    }

    /// A noop job of frames `range`, with `extra` in its `[frames]`.
    fn job_of(range: &str, extra: &str) -> Job {
        let text =
            format!("id = \"o\"\nrenderer = \"noop\"\n[frames]\nrange = \"{range}\"\n{extra}");
        let spec = crate::core::job::from_toml(&text).expect("parses");
        spec.validate().expect("valid")
    }

    #[test]
    fn key_frames_go_first_with_their_chunk() {
        let job = |extra: &str| job_of("1-8", extra);
        assert_eq!(queue_order(&job("")), None);
        assert_eq!(
            queue_order(&job("order = \"preview\"")),
            Some(vec![0, 7, 3, 1, 5, 2, 4, 6])
        );
        assert_eq!(
            queue_order(&job("first = \"5,2\"")),
            Some(vec![4, 1, 0, 2, 3, 5, 6, 7])
        );
        // Chunks of 3 (frames 1-3, 4-6, 7-8): frame 8 brings its chunk forward.
        assert_eq!(
            queue_order(&job("chunk = 3\nfirst = \"8\"")),
            Some(vec![2, 0, 1])
        );
    }

    #[test]
    fn key_tasks_are_the_frames_asked_for_first() {
        let keys = |extra: &str| {
            let job = job_of("1-9", extra);
            plan::tasks(&job)
                .filter(|task| is_key(&job, task))
                .map(|task| task.frames[0])
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(""), Vec::<u32>::new());
        assert_eq!(keys("order = \"preview\""), [1, 5, 9]);
        assert_eq!(keys("first = \"7,2\""), [2, 7]);
        assert_eq!(keys("first = \"7\"\norder = \"preview\""), [7]);
        // A chunk is a key task when any of its frames is a key frame.
        assert_eq!(keys("chunk = 4\nfirst = \"6\""), [5]);
    }
}
