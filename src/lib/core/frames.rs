//! Frame ranges: the `frames.range` field of a job (`"1-48"`, `"1-48x2"`, `"1,5,10-20"`),
//! parsed into an ordered set of frame numbers and cut into chunks of consecutive frames.
//!
//! Parsing counts before it expands, so `"0-4000000000"` is refused without allocating.

use crate::core::problem::ValueError;
use std::fmt;

/// The most frames one range may hold (the job's task limit bounds it anyway).
pub const MAX_FRAMES: u64 = 1_000_000;

/// The highest frame number accepted (frame file names are padded to at least four digits).
pub const MAX_FRAME_NUMBER: u32 = 9_999_999;

/// An ordered set of distinct frame numbers, kept as the text it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameRange {
    text: String,
    frames: Vec<u32>,
}

/// One comma-separated part of a range: `start-end` stepped by `step`.
#[derive(Debug, Clone, Copy)]
struct Segment {
    start: u32,
    end: u32,
    step: u32,
}

impl Segment {
    fn len(self) -> u64 {
        u64::from((self.end - self.start) / self.step) + 1
    }
}

impl FrameRange {
    /// Parses a range such as `1-48`, `1-48x2` or `1,5,10-20`.
    pub fn parse(text: &str) -> Result<FrameRange, ValueError> {
        FrameRange::parse_text(text).map_err(ValueError)
    }

    fn parse_text(text: &str) -> Result<FrameRange, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("is empty; write e.g. \"1-48\", \"1-48x2\" or \"1,5,10-20\"".into());
        }
        let mut segments = Vec::new();
        let mut total: u64 = 0;
        for part in text.split(',') {
            let segment = parse_segment(part.trim())?;
            total += segment.len();
            if total > MAX_FRAMES {
                return Err(format!("holds more than {MAX_FRAMES} frames"));
            }
            segments.push(segment);
        }
        let mut frames: Vec<u32> = segments
            .iter()
            .flat_map(|s| (s.start..=s.end).step_by(s.step as usize))
            .collect();
        frames.sort_unstable();
        if let Some(pair) = frames.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("names frame {} more than once", pair[0]));
        }
        Ok(FrameRange {
            text: text.to_string(),
            frames,
        })
    }

    /// A range of the single frame `frame`.
    pub fn single(frame: u32) -> FrameRange {
        FrameRange {
            text: frame.to_string(),
            frames: vec![frame],
        }
    }

    /// The frames, ascending.
    pub fn frames(&self) -> &[u32] {
        &self.frames
    }

    /// How many frames the range holds.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether the range holds no frame (never true for a parsed range).
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The frames cut into chunks of at most `chunk` frames, in order.
    pub fn chunks(&self, chunk: u32) -> impl Iterator<Item = &[u32]> {
        self.frames.chunks(chunk.max(1) as usize)
    }

    /// How many chunks of `chunk` frames the range makes.
    pub fn chunk_count(&self, chunk: u32) -> usize {
        self.frames.len().div_ceil(chunk.max(1) as usize)
    }
}

impl fmt::Display for FrameRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn parse_segment(part: &str) -> Result<Segment, String> {
    if part.is_empty() {
        return Err("has an empty part between commas".into());
    }
    let (span, step) = match part.split_once('x') {
        Some((span, step)) => (span, parse_number(step, "step")?),
        None => (part, 1),
    };
    if step == 0 {
        return Err(format!("step in \"{part}\" must be at least 1"));
    }
    let (start, end) = match span.split_once('-') {
        Some((start, end)) => (parse_number(start, "start")?, parse_number(end, "end")?),
        None => {
            if part.contains('x') {
                return Err(format!(
                    "\"{part}\": a step needs a span such as \"1-48x2\""
                ));
            }
            let frame = parse_number(span, "frame")?;
            (frame, frame)
        }
    };
    if start > end {
        return Err(format!("\"{part}\" runs backwards ({start} > {end})"));
    }
    if end > MAX_FRAME_NUMBER {
        return Err(format!(
            "frame {end} in \"{part}\" is above the highest frame number {MAX_FRAME_NUMBER}"
        ));
    }
    Ok(Segment { start, end, step })
}

fn parse_number(text: &str, what: &str) -> Result<u32, String> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{what} \"{text}\" is not a whole non-negative number"
        ));
    }
    text.parse::<u32>()
        .map_err(|_| format!("{what} \"{text}\" is too large"))
}

/// The file name of frame `frame` for an image in `extension` (`frame_0001.png`).
pub fn frame_file_name(frame: u32, extension: &str) -> String {
    format!("frame_{frame:04}.{extension}")
}

/// The frame a file named by [`frame_file_name`] holds (`frame_0012.png` is frame 12).
pub fn frame_of_file_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("frame_")?.split('.').next()?;
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expect: Result<&[u32], &str>) {
        let got = FrameRange::parse(text);
        match (got, expect) {
            (Ok(range), Ok(frames)) => assert_eq!(range.frames(), frames, "{text}"),
            (Err(err), Err(needle)) => {
                assert!(
                    err.message().contains(needle),
                    "{text}: {err:?} lacks {needle:?}"
                )
            }
            (got, expect) => panic!("{text}: got {got:?}, expected {expect:?}"),
        }
    }

    #[test]
    fn parses_ranges() {
        check("1", Ok(&[1]));
        check("0", Ok(&[0]));
        check("1-4", Ok(&[1, 2, 3, 4]));
        check("1-9x3", Ok(&[1, 4, 7]));
        check("1-10x3", Ok(&[1, 4, 7, 10]));
        check("1,5,10-12", Ok(&[1, 5, 10, 11, 12]));
        check(" 3 , 1 ", Ok(&[1, 3]));
        check("10-12,1", Ok(&[1, 10, 11, 12]));
    }

    #[test]
    fn rejects_bad_ranges() {
        check("", Err("is empty"));
        check("1,,2", Err("empty part"));
        check("a-4", Err("start \"a\" is not a whole"));
        check("-4", Err("start \"\" is not"));
        check("4-1", Err("runs backwards"));
        check("1-4x0", Err("at least 1"));
        check("4x2", Err("needs a span"));
        check("1-4,3", Err("frame 3 more than once"));
        check("0-5000000000", Err("too large"));
        check("0-4000000000", Err("above the highest"));
        check("0-20000000", Err("above the highest"));
        check("0-1000000", Err("more than 1000000 frames"));
        check("1.5", Err("not a whole"));
    }

    #[test]
    fn chunks_frames() {
        let range = FrameRange::parse("1-10").unwrap();
        let chunks: Vec<&[u32]> = range.chunks(4).collect();
        assert_eq!(chunks, vec![&[1, 2, 3, 4][..], &[5, 6, 7, 8], &[9, 10]]);
        assert_eq!(range.chunk_count(4), 3);
        assert_eq!(range.chunk_count(10), 1);
        assert_eq!(range.chunk_count(20), 1);
    }

    #[test]
    fn names_frame_files() {
        assert_eq!(frame_file_name(1, "png"), "frame_0001.png");
        assert_eq!(frame_file_name(12345, "exr"), "frame_12345.exr");
        assert_eq!(frame_of_file_name("frame_0012.png"), Some(12));
        assert_eq!(frame_of_file_name("frame_12345.exr"), Some(12345));
        assert_eq!(frame_of_file_name("beauty.png"), None);
    }
}
