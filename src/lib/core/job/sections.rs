//! The checks of each part of a job spec, for [`JobSpec::validate`](super::JobSpec::validate):
//! the queue it goes to, its scene, `[image]`, `[frames]`, `[tiles]`, `[[layers]]`,
//! `[retry]`, the share it asks for, and the size it adds up to. Each adds what is wrong
//! to the problems, naming the field, and returns a usable value regardless, so that the
//! checks after it still run.

use std::collections::BTreeSet;
use std::time::Duration;

use super::spec::{ChunkSpec, FramesSpec, ImageSpec, JobSpec, LayerSpec, RetrySpec, TilesSpec};
use super::validate::{Image, Layer, Retry, Tiles};
use super::vocab::{
    Blend, Class, FailurePolicy, ImageFormat, JobId, Priority, RendererKind, is_token,
};
use super::{
    JOB_SCHEMA, MAX_ATTEMPTS, MAX_IMAGE_SIDE, MAX_LAYERS, MAX_TASK_PIXELS, MAX_TASKS, MAX_WEIGHT,
};
use crate::core::frames::FrameRange;
use crate::core::order::FrameOrder;
use crate::core::paths::parse_manifest_ref;
use crate::core::problem::Problems;

/// The schema version, when the spec names one.
pub(super) fn schema(schema: Option<u32>, errors: &mut Problems) {
    if let Some(schema) = schema
        && schema != JOB_SCHEMA
    {
        errors.add(
            "schema",
            format!("version {schema} is not supported; this build reads {JOB_SCHEMA}"),
        );
    }
}

/// The job's id, which it must have.
pub(super) fn id(id: Option<&str>, errors: &mut Problems) -> Option<JobId> {
    match id {
        Some(text) => JobId::parse(text).map_err(|e| errors.add("id", e)).ok(),
        None => {
            errors.add(
                "id",
                "is missing: `tessera submit` and the planner give a job without one an id",
            );
            None
        }
    }
}

/// The display name, the id's text by default.
pub(super) fn name(name: Option<&str>, id: Option<&str>, errors: &mut Problems) -> String {
    let name = name.or(id).unwrap_or_default().to_string();
    if name.chars().count() > 256 {
        errors.add("name", "is longer than 256 characters");
    }
    if name.chars().any(char::is_control) {
        errors.add("name", "holds a control character");
    }
    name
}

/// The queue it goes to: priority, hardware class and renderer.
pub(super) fn queue(spec: &JobSpec, errors: &mut Problems) -> (Priority, Class, RendererKind) {
    let priority = match spec.priority.as_deref() {
        None => Priority::Normal,
        Some(text) => Priority::parse(text).unwrap_or_else(|| {
            errors.add(
                "priority",
                format!("{text:?} is not a priority: use high, normal or low"),
            );
            Priority::Normal
        }),
    };
    let class = match spec.class.as_deref() {
        None => Class::cpu(),
        Some(text) => Class::parse(text).unwrap_or_else(|e| {
            errors.add("class", e);
            Class::cpu()
        }),
    };
    let renderer = match spec.renderer.as_deref() {
        None => RendererKind::Builtin,
        Some(text) => RendererKind::parse(text).unwrap_or_else(|| {
            errors.add(
                "renderer",
                format!(
                    "{text:?} is not a renderer: use builtin, povray, blender, command or noop"
                ),
            );
            RendererKind::Builtin
        }),
    };
    (priority, class, renderer)
}

/// The scene manifest's digest: a local `scene` path is the CLI's to upload, and the
/// renderers that read a scene need one.
pub(super) fn scene(
    spec: &JobSpec,
    renderer: RendererKind,
    errors: &mut Problems,
) -> Option<String> {
    let scene_manifest = match (&spec.scene, &spec.scene_manifest) {
        (_, Some(reference)) => parse_manifest_ref(reference)
            .map_err(|e| errors.add("scene_manifest", e))
            .ok(),
        (Some(_), None) => {
            errors.add(
                "scene",
                "is a path on the submitting machine: submit with `tessera submit` to upload it, or give scene_manifest",
            );
            None
        }
        (None, None) => None,
    };
    if matches!(renderer, RendererKind::Povray | RendererKind::Blender)
        && scene_manifest.is_none()
        && spec.scene.is_none()
    {
        errors.add("scene", format!("the {renderer} renderer needs a scene"));
    }
    scene_manifest
}

/// `[image]`: its size, format and depth.
pub(super) fn image(spec: Option<&ImageSpec>, errors: &mut Problems) -> Image {
    let image = spec.cloned().unwrap_or_default();
    let width = image.width.unwrap_or(1280);
    let height = image.height.unwrap_or(720);
    for (field, value) in [("image.width", width), ("image.height", height)] {
        if value == 0 || value > MAX_IMAGE_SIDE {
            errors.add(
                field,
                format!("{value} is out of range: use 1 to {MAX_IMAGE_SIDE} pixels"),
            );
        }
    }
    let words = [("png", ImageFormat::Png), ("exr", ImageFormat::Exr)];
    let format = one_of(
        image.format.as_deref(),
        "image.format",
        "format",
        words,
        errors,
    );
    let depth = match (format, image.depth) {
        (_, None) | (ImageFormat::Png, Some(8)) => 8,
        (ImageFormat::Png, Some(16)) => 16,
        (ImageFormat::Exr, Some(32)) => 32,
        (ImageFormat::Png, Some(d)) => {
            errors.add(
                "image.depth",
                format!("{d} is not a PNG depth: use 8 or 16"),
            );
            8
        }
        (ImageFormat::Exr, Some(d)) => {
            errors.add(
                "image.depth",
                format!("{d} is not an EXR depth: EXR is 32-bit float"),
            );
            32
        }
    };
    Image {
        width: width.clamp(1, MAX_IMAGE_SIDE),
        height: height.clamp(1, MAX_IMAGE_SIDE),
        format,
        depth,
    }
}

/// The validated `[frames]`.
pub(super) struct Framing {
    /// The frames to render.
    pub(super) frames: FrameRange,
    /// Frames per task.
    pub(super) chunk: u32,
    /// `chunk = "auto"`: the time a bundle should take.
    pub(super) auto_chunk: Option<Duration>,
    /// The order the frames are queued in.
    pub(super) order: FrameOrder,
}

/// `[frames]`: the range, the chunk (`"auto"` only for a job without tiles, layers or
/// limits) and the order.
pub(super) fn frames(spec: &JobSpec, errors: &mut Problems) -> Framing {
    let frames_spec: FramesSpec = spec.frames.clone().unwrap_or_default();
    let frames = match frames_spec.range.as_deref() {
        None => FrameRange::single(1),
        Some(text) => FrameRange::parse(text).unwrap_or_else(|e| {
            errors.add("frames.range", e);
            FrameRange::single(1)
        }),
    };
    let (chunk, auto) = match &frames_spec.chunk {
        None => (1, false),
        Some(ChunkSpec::Frames(n)) => (*n, false),
        Some(ChunkSpec::Word(word)) if word == "auto" => (1, true),
        Some(ChunkSpec::Word(word)) => {
            errors.add(
                "frames.chunk",
                format!("{word:?} is not a chunk: use a number of frames or \"auto\""),
            );
            (1, false)
        }
    };
    if chunk == 0 {
        errors.add("frames.chunk", "must be at least 1");
    }
    let chunk = chunk.max(1);
    let target = duration_field(
        &frames_spec.target_task_time,
        "frames.target_task_time",
        errors,
    );
    if target.is_some() && !auto {
        errors.add(
            "frames.target_task_time",
            "goes with chunk = \"auto\" (a fixed chunk takes what its frames take)",
        );
    }
    let auto_chunk = auto.then(|| target.unwrap_or(DEFAULT_TARGET_TASK_TIME));
    if auto && (spec.tiles.is_some() || !spec.layers.is_empty() || !spec.limits.is_empty()) {
        errors.add(
            "frames.chunk",
            "\"auto\" is for jobs without tiles, layers or limits (give those a fixed chunk)",
        );
    }
    let order = FrameOrder::parse(
        frames_spec.order.as_deref(),
        frames_spec.first.as_deref(),
        &frames,
    )
    .unwrap_or_else(|problems| {
        for (field, message) in problems {
            errors.add(field, message);
        }
        FrameOrder::default()
    });
    Framing {
        frames,
        chunk,
        auto_chunk,
        order,
    }
}

/// `[retry]`: attempts, time limits and what a task failed for good does.
pub(super) fn retry(spec: Option<&RetrySpec>, errors: &mut Problems) -> Retry {
    let retry_spec = spec.cloned().unwrap_or_default();
    let max_attempts = retry_spec.max_attempts.unwrap_or(3);
    if max_attempts == 0 || max_attempts > MAX_ATTEMPTS {
        errors.add(
            "retry.max_attempts",
            format!("{max_attempts} is out of range: use 1 to {MAX_ATTEMPTS}"),
        );
    }
    let timeout = duration_field(&retry_spec.timeout, "retry.timeout", errors);
    let stall = duration_field(&retry_spec.stall, "retry.stall", errors);
    let words = [
        ("fail", FailurePolicy::Fail),
        ("continue", FailurePolicy::Continue),
    ];
    let on_failure = one_of(
        retry_spec.on_failure.as_deref(),
        "retry.on_failure",
        "policy",
        words,
        errors,
    );
    Retry {
        max_attempts,
        timeout,
        on_failure,
        stall,
    }
}

/// What the job adds up to: no task larger than [`MAX_TASK_PIXELS`], no more than
/// [`MAX_TASKS`] tasks.
pub(super) fn size(
    image: Image,
    tiles: Option<Tiles>,
    framing: &Framing,
    layers: &[Layer],
    errors: &mut Problems,
) {
    let largest = match &tiles {
        Some(t) => crate::core::tiles::all(t, image.width, image.height)
            .map(|tile| tile.render.area())
            .max()
            .unwrap_or(0),
        None => u64::from(image.width) * u64::from(image.height),
    };
    if largest > MAX_TASK_PIXELS {
        errors.add(
            "tiles",
            format!(
                "a task would render {largest} pixels; at most {MAX_TASK_PIXELS} (a 16384x16384 square) per task: cut the frame with [tiles]"
            ),
        );
    }
    let tile_count = tiles.map_or(1, |t| u64::from(t.columns) * u64::from(t.rows));
    let layer_count = layers.len().max(1) as u64;
    let chunks = framing.frames.chunk_count(framing.chunk);
    let tasks = chunks as u64 * tile_count * layer_count;
    if tasks > MAX_TASKS {
        errors.add(
            "frames",
            format!(
                "the job makes {tasks} tasks ({chunks} frame chunks x {tile_count} tiles x {layer_count} layers); at most {MAX_TASKS} are allowed"
            ),
        );
    }
}

/// The share of the farm it asks for: its weight (returned), its limits and its cap on
/// running tasks.
pub(super) fn sharing(spec: &JobSpec, errors: &mut Problems) -> u32 {
    let weight = spec.weight.unwrap_or(1);
    if !(1..=MAX_WEIGHT).contains(&weight) {
        errors.add(
            "weight",
            format!("{weight} is not a weight: use a whole number from 1 to {MAX_WEIGHT}"),
        );
    }
    for (i, name) in spec.limits.iter().enumerate() {
        if let Err(e) = crate::core::limits::check_name(name) {
            errors.add(format!("limits[{i}]"), e);
        } else if spec.limits[..i].contains(name) {
            errors.add(format!("limits[{i}]"), format!("{name:?} is named twice"));
        }
    }
    if spec.limits.len() > crate::core::limits::MAX_JOB_LIMITS {
        errors.add(
            "limits",
            format!(
                "names {} limits; at most {}",
                spec.limits.len(),
                crate::core::limits::MAX_JOB_LIMITS
            ),
        );
    }
    if spec.max_workers == Some(0) {
        errors.add(
            "max_workers",
            "is 0, which would never run a task: leave it out for no cap",
        );
    }
    weight
}

/// `frames.target_task_time` when `chunk = "auto"` names none.
pub const DEFAULT_TARGET_TASK_TIME: Duration = Duration::from_secs(300);

/// A field that is one of two words, the first when it is left out; another word is a
/// problem that names both (and gives the first).
fn one_of<T: Copy>(
    text: Option<&str>,
    field: &str,
    noun: &str,
    [(first, default), (second, other)]: [(&str, T); 2],
    errors: &mut Problems,
) -> T {
    match text {
        None => default,
        Some(word) if word == first => default,
        Some(word) if word == second => other,
        Some(word) => {
            errors.add(
                field,
                format!("{word:?} is not a {noun}: use {first} or {second}"),
            );
            default
        }
    }
}

/// A duration field (`"90s"`, `"10m"`), at least a second.
pub(super) fn duration_field(
    text: &Option<String>,
    field: &str,
    errors: &mut Problems,
) -> Option<Duration> {
    let text = text.as_deref()?;
    match humantime::parse_duration(text) {
        Ok(d) if d >= Duration::from_secs(1) => Some(d),
        Ok(_) => {
            errors.add(field, format!("{text:?} is under one second"));
            None
        }
        Err(e) => {
            errors.add(
                field,
                format!("{text:?} is not a duration such as \"90s\" or \"10m\": {e}"),
            );
            None
        }
    }
}

/// `[tiles]` of an `image`: a grid or a tile size, the overscan and the blend.
pub(super) fn tiles(spec: &TilesSpec, image: Image, errors: &mut Problems) -> Option<Tiles> {
    let (columns, rows) = match (spec.grid, spec.size) {
        (Some(_), Some(_)) => {
            errors.add("tiles", "give grid or size, not both");
            return None;
        }
        (None, None) => {
            errors.add(
                "tiles",
                "needs grid = [columns, rows] or size = [width, height]",
            );
            return None;
        }
        (Some([c, r]), None) => {
            if c == 0 || r == 0 {
                errors.add("tiles.grid", "columns and rows must be at least 1");
                return None;
            }
            if c > image.width || r > image.height {
                errors.add(
                    "tiles.grid",
                    format!(
                        "{c}x{r} tiles do not fit a {}x{} image: a tile must be at least one pixel",
                        image.width, image.height
                    ),
                );
                return None;
            }
            (c, r)
        }
        (None, Some([w, h])) => {
            if w == 0 || h == 0 {
                errors.add("tiles.size", "width and height must be at least 1");
                return None;
            }
            (image.width.div_ceil(w), image.height.div_ceil(h))
        }
    };
    let overscan = spec.overscan.unwrap_or(0);
    if overscan > 4096 {
        errors.add("tiles.overscan", format!("{overscan} is above 4096 pixels"));
    }
    let words = [("crop", Blend::Crop), ("feather", Blend::Feather)];
    let blend = one_of(spec.blend.as_deref(), "tiles.blend", "blend", words, errors);
    if blend == Blend::Feather && overscan == 0 {
        errors.add(
            "tiles.blend",
            "feather needs an overscan of at least 1 pixel",
        );
    }
    // Feather ramps span 2 × overscan around each inner edge; they must not meet inside
    // one tile, or the weights of a pixel would not add up to one.
    let smallest = (image.width / columns.max(1)).min(image.height / rows.max(1));
    if blend == Blend::Feather && u64::from(overscan) * 2 > u64::from(smallest) {
        errors.add(
            "tiles.overscan",
            format!(
                "feather blends across 2 x {overscan} pixels, more than the smallest tile ({smallest} pixels): use fewer tiles or less overscan"
            ),
        );
    }
    Some(Tiles {
        columns,
        rows,
        overscan,
        blend,
    })
}

/// `[[layers]]`: unique names, each after layers listed before it.
pub(super) fn layers(specs: &[LayerSpec], errors: &mut Problems) -> Vec<Layer> {
    if specs.len() > MAX_LAYERS {
        errors.add(
            "layers",
            format!("{} layers; at most {MAX_LAYERS}", specs.len()),
        );
        return Vec::new();
    }
    let mut seen = BTreeSet::new();
    let mut layers = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        if !is_token(&spec.name, 32, true) {
            errors.add(
                format!("layers[{i}].name"),
                format!(
                    "{:?} is not a valid name: use 1 to 32 of letters, digits, '_' and '-' (no path separators or '..')",
                    spec.name
                ),
            );
        } else if !seen.insert(spec.name.as_str()) {
            errors.add(
                format!("layers[{i}].name"),
                format!("{:?} appears twice", spec.name),
            );
        }
        let mut after = Vec::new();
        for dep in &spec.after {
            match specs[..i].iter().position(|l| &l.name == dep) {
                Some(j) => after.push(j),
                None => errors.add(
                    format!("layers[{i}].after"),
                    format!("{dep:?} is not a layer listed before {:?}", spec.name),
                ),
            }
        }
        layers.push(Layer {
            name: spec.name.clone(),
            after,
        });
    }
    layers
}
