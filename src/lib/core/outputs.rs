//! The names of a job's assembled outputs: `frame_0001.png`, or `<layer>/frame_0001.png`
//! for a layered job, `<composite>/frame_0001.exr` for its composite, and which of them a
//! job whose tasks stand as they do must have; and its sequences, whose movie, animation
//! and contact sheet (`[outputs]`) are written beside their frames.

use crate::core::frames::frame_file_name;
use crate::core::job::{Composite, ImageFormat, Job, RendererKind};
use crate::core::plan;
use crate::core::state::{TaskSlot, TaskState};

/// The output file name of `frame` for `job` (`frame_0001.png`, or `<layer>/frame_0001.png`).
pub fn output_name(job: &Job, layer: Option<usize>, frame: u32) -> String {
    let file = frame_file_name(frame, job.image.format.extension());
    match layer {
        Some(l) => format!("{}/{file}", job.layers[l].name),
        None => file,
    }
}

/// The output name of `composite`'s frame `frame` in `format` (`composite/frame_0001.exr`).
pub fn composite_name(composite: &Composite, frame: u32, format: ImageFormat) -> String {
    format!(
        "{}/{}",
        composite.name,
        frame_file_name(frame, format.extension())
    )
}

/// The output names of every frame group whose tasks are all done, given the job's slots
/// by task index, and of the composite of every frame whose composited layers are all
/// done. A renderer that writes nothing (`noop`) is expected to store nothing.
pub fn expected_outputs(job: &Job, slots: &[TaskSlot]) -> Vec<String> {
    if job.renderer == RendererKind::Noop {
        return Vec::new();
    }
    let tiles = plan::frame_group(job, 0).len().max(1);
    let done = |group: usize| {
        slots
            .get(group * tiles..(group + 1) * tiles)
            .is_some_and(|tasks| tasks.iter().all(|s| s.state() == TaskState::Done))
    };
    let mut names = Vec::new();
    for group in 0..slots.len() / tiles {
        if !done(group) {
            continue;
        }
        let first = plan::task(job, (group * tiles) as u32);
        names.extend(
            first
                .frames
                .iter()
                .map(|&frame| output_name(job, first.layer, frame)),
        );
    }
    let Some(composite) = &job.composite else {
        return names;
    };
    let layers = job.layers.len().max(1);
    for chunk in 0..slots.len() / (tiles * layers) {
        if !composite
            .layers
            .iter()
            .all(|&(layer, _)| done(chunk * layers + layer))
        {
            continue;
        }
        for &frame in &plan::task(job, (chunk * layers * tiles) as u32).frames {
            for &format in &composite.formats {
                names.push(composite_name(composite, frame, format));
            }
        }
    }
    names
}

/// The movie of a sequence, beside its frames.
pub const MOVIE: &str = "movie.mp4";
/// The animated PNG of a sequence.
pub const ANIMATION: &str = "animation.png";
/// The contact sheet of a sequence.
pub const CONTACT_SHEET: &str = "contact_sheet.png";

/// Frames that make one sequence output: the job's frames, or a layer's, or the
/// composite's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequence {
    /// Where its outputs go: `""`, or `<layer>/`, `<composite>/`.
    pub folder: String,
    /// Its frames' format.
    pub format: ImageFormat,
    /// Its frames in order: (frame number, output name).
    pub frames: Vec<(u32, String)>,
}

impl Sequence {
    /// The names of the sequence outputs `job` asks of it (the movie only `with_movie`).
    pub fn outputs(&self, job: &Job, with_movie: bool) -> Vec<String> {
        let o = &job.outputs;
        [
            (o.movie && with_movie, MOVIE),
            (o.animation, ANIMATION),
            (o.contact_sheet, CONTACT_SHEET),
        ]
        .into_iter()
        .filter(|(wanted, _)| *wanted)
        .map(|(_, name)| format!("{}{name}", self.folder))
        .collect()
    }
}

/// The sequences of `job` that get sequence outputs: its composite if it has one (in PNG
/// where it is stored in PNG), else each layer, else its frames; none when it asks for
/// no sequence output.
pub fn sequences(job: &Job) -> Vec<Sequence> {
    if !job.outputs.any() || job.renderer == RendererKind::Noop {
        return Vec::new();
    }
    let frames = job.frames.frames();
    if let Some(composite) = &job.composite {
        let format = match composite.formats.contains(&ImageFormat::Png) {
            true => ImageFormat::Png,
            false => composite.formats[0],
        };
        return vec![Sequence {
            folder: format!("{}/", composite.name),
            format,
            frames: frames
                .iter()
                .map(|&f| (f, composite_name(composite, f, format)))
                .collect(),
        }];
    }
    let layers: Vec<Option<usize>> = match job.layers.len() {
        0 => vec![None],
        n => (0..n).map(Some).collect(),
    };
    layers
        .into_iter()
        .map(|layer| Sequence {
            folder: layer.map_or(String::new(), |l| format!("{}/", job.layers[l].name)),
            format: job.image.format,
            frames: frames
                .iter()
                .map(|&f| (f, output_name(job, layer, f)))
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::job::from_toml;

    fn job(text: &str) -> Job {
        from_toml(text).unwrap().validate().unwrap()
    }

    fn done(attempt: u32) -> TaskSlot {
        TaskSlot(TaskState::Done, attempt)
    }

    #[test]
    fn expected_outputs_are_the_frames_of_groups_done_whole() {
        let failed = TaskSlot(TaskState::Failed, 3);
        let running = TaskSlot(TaskState::Running, 1);
        // Chunks of two frames: each done task stands for both of its frames.
        let chunks = job("id = \"c\"\n[frames]\nrange = \"1-5\"\nchunk = 2");
        assert_eq!(
            expected_outputs(&chunks, &[done(1), failed, done(2)]),
            ["frame_0001.png", "frame_0002.png", "frame_0005.png"]
        );
        // Tiles: a frame is expected only when all of its tiles are done.
        let tiles = job(
            "id = \"t\"\n[frames]\nrange = \"1-2\"\n[tiles]\ngrid = [2, 1]\n[[layers]]\nname = \"beauty\"\n[[layers]]\nname = \"depth\"\n[image]\nformat = \"exr\"",
        );
        let slots = [
            done(1),
            done(1),
            done(1),
            running,
            done(2),
            done(1),
            failed,
            done(1),
        ];
        assert_eq!(
            expected_outputs(&tiles, &slots),
            ["beauty/frame_0001.exr", "beauty/frame_0002.exr"]
        );
        // A renderer that writes nothing is expected to store nothing.
        let noop = job("id = \"n\"\nrenderer = \"noop\"\n[frames]\nrange = \"1-2\"");
        assert!(expected_outputs(&noop, &[done(1), done(1)]).is_empty());
        // A composite of a frame once every layer it names is done, in each format.
        let comp = job(
            "id = \"c\"\n[frames]\nrange = \"1-2\"\n[[layers]]\nname = \"a\"\n[[layers]]\nname = \"b\"\n[[layers]]\nname = \"c\"\n[composite]\nformats = [\"png\", \"exr\"]\n[[composite.layers]]\nlayer = \"a\"\n[[composite.layers]]\nlayer = \"c\"",
        );
        // Frame 1: a, b and c done; frame 2: a done, b failed, c still running.
        let slots = [done(1), done(1), done(1), done(1), failed, running];
        assert_eq!(
            expected_outputs(&comp, &slots),
            [
                "a/frame_0001.png",
                "b/frame_0001.png",
                "c/frame_0001.png",
                "a/frame_0002.png",
                "composite/frame_0001.png",
                "composite/frame_0001.exr"
            ]
        );
        let slots = [done(1), failed, done(1), done(1), failed, done(1)];
        let names = expected_outputs(&comp, &slots);
        assert!(
            names.contains(&"composite/frame_0002.exr".to_string()),
            "{names:?}"
        );
    }

    #[test]
    fn sequences_are_the_composite_else_each_layer_else_the_frames() {
        let plain = job("id = \"p\"\n[frames]\nrange = \"1-3\"");
        let seqs = sequences(&plain);
        assert_eq!(seqs.len(), 1);
        assert_eq!(seqs[0].folder, "");
        assert_eq!(seqs[0].frames[2], (3, "frame_0003.png".to_string()));
        assert_eq!(
            seqs[0].outputs(&plain, false),
            ["animation.png", "contact_sheet.png"]
        );
        assert_eq!(seqs[0].outputs(&plain, true)[0], "movie.mp4");
        let layered = job(
            "id = \"l\"\n[frames]\nrange = \"1-2\"\n[[layers]]\nname = \"a\"\n[[layers]]\nname = \"b\"",
        );
        let folders: Vec<_> = sequences(&layered).into_iter().map(|s| s.folder).collect();
        assert_eq!(folders, ["a/", "b/"]);
        let comp = job(
            "id = \"c\"\n[frames]\nrange = \"1-2\"\n[image]\nformat = \"exr\"\n[[layers]]\nname = \"a\"\n[composite]\nformats = [\"exr\", \"png\"]\n[[composite.layers]]\nlayer = \"a\"",
        );
        let seqs = sequences(&comp);
        assert_eq!(seqs.len(), 1);
        assert_eq!(seqs[0].format, ImageFormat::Png);
        assert_eq!(seqs[0].frames[0].1, "composite/frame_0001.png");
        assert_eq!(seqs[0].outputs(&comp, true)[0], "composite/movie.mp4");
        assert!(sequences(&job("id = \"one\"")).is_empty());
    }
}
