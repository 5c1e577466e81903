//! Tests of the job spec: decoding, validation, the JSON Schema.

use std::time::Duration;

use super::*;
use crate::core::problem::Invalid;

/// Validates a job file; one without an id gets `t` (the CLI and the planner fill it in).
fn validate(toml_text: &str) -> Result<Job, Invalid> {
    let mut spec = from_toml(toml_text)?;
    spec.id.get_or_insert_with(|| "t".into());
    spec.validate()
}

fn check_invalid(toml_text: &str, field: &str, needle: &str) {
    let err = validate(toml_text).expect_err(toml_text);
    assert!(
        err.says(field, needle),
        "{toml_text}: {err} lacks {field}: …{needle}…"
    );
}

#[test]
fn accepts_the_design_example() {
    let job = validate(
        r#"
        id = "turntable-v3"
        name = "Turntable"
        priority = "high"
        class = "gpu"
        renderer = "builtin"
        scene_manifest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
        [image]
        width = 1280
        height = 720
        format = "png"
        [frames]
        range = "1-48"
        chunk = 4
        [tiles]
        grid = [4, 4]
        overscan = 8
        [[layers]]
        name = "beauty"
        [[layers]]
        name = "shadow"
        after = ["beauty"]
        [retry]
        max_attempts = 3
        timeout = "10m"
        [settings]
        samples = 16
    "#,
    )
    .unwrap();
    assert_eq!(job.id.as_str(), "turntable-v3");
    assert_eq!(job.priority, Priority::High);
    assert_eq!(job.class.as_str(), "gpu");
    assert_eq!(job.frames.len(), 48);
    assert_eq!(job.chunk, 4);
    assert_eq!(job.tiles.unwrap().columns, 4);
    assert_eq!(job.layers[1].after, vec![0]);
    assert_eq!(job.retry.timeout, Some(Duration::from_secs(600)));
}

#[test]
fn fills_defaults() {
    let job = validate("").unwrap();
    assert_eq!(job.id.as_str(), "t");
    assert_eq!(job.priority, Priority::Normal);
    assert_eq!(job.class.as_str(), "cpu");
    assert_eq!(job.renderer, RendererKind::Builtin);
    assert_eq!(job.frames.frames(), &[1]);
    assert_eq!((job.image.width, job.image.height), (1280, 720));
    assert_eq!(job.retry.max_attempts, 3);
    assert_eq!(job.spec.id.as_deref(), Some(job.id.as_str()));
}

#[test]
fn names_the_field_of_each_problem() {
    check_invalid(r#"id = "../etc""#, "id", "not a valid id");
    check_invalid(r#"id = "Upper""#, "id", "not a valid id");
    check_invalid(r#"priority = "urgent""#, "priority", "high, normal or low");
    check_invalid(r#"class = "g/pu""#, "class", "not a valid class");
    check_invalid(r#"renderer = "maya""#, "renderer", "not a renderer");
    check_invalid("[image]\nwidth = 0", "image.width", "out of range");
    check_invalid("[image]\nheight = 70000", "image.height", "out of range");
    check_invalid(
        "[image]\nwidth = 65536\nheight = 65536",
        "tiles",
        "cut the frame",
    );
    assert!(validate("[image]\nwidth = 65536\nheight = 65536\n[tiles]\ngrid = [8, 8]").is_ok());
    check_invalid("[image]\nformat = \"jpg\"", "image.format", "png or exr");
    check_invalid("[image]\ndepth = 12", "image.depth", "8 or 16");
    check_invalid("[frames]\nrange = \"10-1\"", "frames.range", "backwards");
    check_invalid("[frames]\nchunk = 0", "frames.chunk", "at least 1");
    check_invalid(
        "[frames]\nrange = \"1-999999\"\n[tiles]\ngrid = [2, 2]",
        "frames",
        "at most 1000000",
    );
    check_invalid("[tiles]\ngrid = [0, 2]", "tiles.grid", "at least 1");
    check_invalid(
        "[tiles]\nblend = \"soft\"\ngrid = [2, 2]",
        "tiles.blend",
        "crop or feather",
    );
    check_invalid(
        "[[layers]]\nname = \"a/b\"",
        "layers[0].name",
        "path separators",
    );
    check_invalid(
        "[[layers]]\nname = \"..\"",
        "layers[0].name",
        "not a valid name",
    );
    check_invalid(
        "[[layers]]\nname = \"a\"\nafter = [\"b\"]",
        "layers[0].after",
        "not a layer listed before",
    );
    check_invalid(
        "[retry]\nmax_attempts = 0",
        "retry.max_attempts",
        "out of range",
    );
    check_invalid(
        "[retry]\ntimeout = \"soon\"",
        "retry.timeout",
        "not a duration",
    );
    check_invalid(r#"scene_manifest = "md5:abc""#, "scene_manifest", "sha256:");
    check_invalid(r#"scene = "a.toml""#, "scene", "tessera submit");
    check_invalid("schema = 7", "schema", "not supported");
    check_invalid("weight = 0", "weight", "from 1 to 100");
    check_invalid("weight = 101", "weight", "from 1 to 100");
    check_invalid("max_workers = 0", "max_workers", "never run a task");
    let shared = validate(
        "weight = 3
max_workers = 2",
    )
    .unwrap();
    assert_eq!((shared.weight, shared.max_workers), (3, Some(2)));
}

#[test]
fn reports_every_problem_at_once() {
    let err = validate("priority = \"x\"\nclass = \"Y!\"\n[frames]\nchunk = 0").unwrap_err();
    assert_eq!(err.0.len(), 3, "{err}");
}

#[test]
fn decoding_errors_name_the_field() {
    let err = from_toml("[image]\nwidth = \"wide\"").unwrap_err();
    assert_eq!(err.0[0].field, "image.width", "{err}");
    let err = from_toml("frame = 3").unwrap_err();
    assert!(err.0[0].message.contains("unknown field"), "{err}");
    let err = from_wire(br#"{"image": {"width": -1}}"#, true).unwrap_err();
    assert_eq!(err.0[0].field, "image.width", "{err}");
    let err = from_wire(b"\xc1", false).unwrap_err();
    assert_eq!(err.0[0].field, "(message)", "{err}");
}

#[test]
fn round_trips_msgpack_and_json() {
    let spec = from_toml("id = \"a\"\n[frames]\nrange = \"1-3\"\n[settings]\nsamples = 4").unwrap();
    let packed = rmp_serde::to_vec_named(&spec).unwrap();
    assert_eq!(from_wire(&packed, false).unwrap(), spec);
    let json = serde_json::to_vec(&spec).unwrap();
    assert_eq!(from_wire(&json, true).unwrap(), spec);
}

/// The shipped JSON Schema names exactly the fields the decoder takes.
#[test]
fn json_schema_matches_the_spec_fields() {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../../../schema/job.schema.json")).unwrap();
    let keys = |v: &serde_json::Value| -> std::collections::BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    };
    let props = &schema["properties"];
    let full = JobSpec {
        schema: Some(1),
        id: Some("a".into()),
        name: Some("n".into()),
        priority: Some("high".into()),
        class: Some("cpu".into()),
        renderer: Some("noop".into()),
        after: vec!["b".into()],
        after_frames: Some("c".into()),
        output: Some("shot010/lighting".into()),
        scene: Some("s".into()),
        scene_manifest: Some("m".into()),
        image: Some(ImageSpec {
            width: Some(1),
            height: Some(1),
            format: Some("png".into()),
            depth: Some(8),
        }),
        frames: Some(FramesSpec {
            range: Some("1".into()),
            chunk: Some(crate::core::job::ChunkSpec::Frames(1)),
            target_task_time: Some("1m".into()),
            order: Some("preview".into()),
            first: Some("1".into()),
        }),
        tiles: Some(TilesSpec {
            grid: Some([1, 1]),
            size: Some([1, 1]),
            overscan: Some(0),
            blend: Some("crop".into()),
        }),
        layers: vec![LayerSpec {
            name: "a".into(),
            after: vec!["b".into()],
        }],
        composite: Some(crate::core::job::CompositeSpec {
            name: Some("comp".into()),
            formats: vec!["exr".into()],
            layers: vec![crate::core::job::CompositeLayerSpec {
                layer: "a".into(),
                op: Some("add".into()),
                opacity: Some(1.0),
                exposure: Some(0.0),
            }],
        }),
        outputs: Some(crate::core::job::OutputsSpec {
            movie: Some(true),
            animation: Some(true),
            contact_sheet: Some(true),
            fps: Some(24.0),
            preview_width: Some(320),
            display: Some("srgb".into()),
            post: vec![crate::core::job::PostStepSpec::Gamma(2.0)],
        }),
        retry: Some(RetrySpec {
            max_attempts: Some(1),
            timeout: Some("1s".into()),
            on_failure: Some("fail".into()),
            stall: Some("1s".into()),
        }),
        keep_parts: Some(true),
        weight: Some(2),
        max_workers: Some(3),
        limits: vec!["lic".into()],
        settings: [("k".to_string(), serde_json::Value::from(1))]
            .into_iter()
            .collect(),
    };
    let json = serde_json::to_value(&full).unwrap();
    assert_eq!(keys(&json), keys(props));
    for section in ["image", "frames", "tiles", "retry", "composite", "outputs"] {
        assert_eq!(
            keys(&json[section]),
            keys(&props[section]["properties"]),
            "{section}"
        );
    }
    assert_eq!(
        keys(&json["layers"][0]),
        keys(&props["layers"]["items"]["properties"])
    );
    assert_eq!(
        keys(&json["composite"]["layers"][0]),
        keys(&props["composite"]["properties"]["layers"]["items"]["properties"])
    );
}

#[test]
fn a_composite_is_checked_against_the_layers_naming_each_field() {
    let job = |composite: &str| {
        let text = format!(
            "id = \"c\"\n[[layers]]\nname = \"diffuse\"\n[[layers]]\nname = \"specular\"\n{composite}"
        );
        from_toml(&text).unwrap().validate()
    };
    let ok = job("[composite]\nformats = [\"exr\", \"png\"]\n[[composite.layers]]\nlayer = \"diffuse\"\nop = \"add\"\n[[composite.layers]]\nlayer = \"specular\"\nop = \"add\"\nopacity = 0.5\nexposure = -1\n")
        .unwrap();
    let composite = ok.composite.expect("a composite");
    assert_eq!(composite.name, "composite");
    assert_eq!(composite.formats, [ImageFormat::Exr, ImageFormat::Png]);
    let steps: Vec<_> = composite
        .layers
        .iter()
        .map(|(i, s)| (*i, s.opacity, s.exposure))
        .collect();
    assert_eq!(steps, [(0, 1.0, 0.0), (1, 0.5, -1.0)]);
    // (the [composite] section, the field of the problem, part of its message)
    let cases = [
        ("[composite]\n", "composite.layers", "at least one"),
        (
            "[composite]\n[[composite.layers]]\nlayer = \"albedo\"\n",
            "composite.layers[0].layer",
            "diffuse, specular",
        ),
        (
            "[composite]\n[[composite.layers]]\nlayer = \"diffuse\"\nop = \"burn\"\n",
            "composite.layers[0].op",
            "over, add, multiply, screen",
        ),
        (
            "[composite]\n[[composite.layers]]\nlayer = \"diffuse\"\nopacity = 1.5\n",
            "composite.layers[0].opacity",
            "0 to 1",
        ),
        (
            "[composite]\n[[composite.layers]]\nlayer = \"diffuse\"\nexposure = 99\n",
            "composite.layers[0].exposure",
            "stops",
        ),
        (
            "[composite]\nname = \"diffuse\"\n[[composite.layers]]\nlayer = \"diffuse\"\n",
            "composite.name",
            "a layer's name",
        ),
        (
            "[composite]\nname = \"../x\"\n[[composite.layers]]\nlayer = \"diffuse\"\n",
            "composite.name",
            "letters, digits",
        ),
        (
            "[composite]\nformats = [\"tiff\"]\n[[composite.layers]]\nlayer = \"diffuse\"\n",
            "composite.formats[0]",
            "png or exr",
        ),
        (
            "[composite]\nformats = [\"png\", \"png\"]\n[[composite.layers]]\nlayer = \"diffuse\"\n",
            "composite.formats[1]",
            "twice",
        ),
    ];
    for (section, field, needle) in cases {
        let err = job(section).unwrap_err();
        assert!(err.says(field, needle), "{section}: {err}");
    }
    let unlayered =
        from_toml("id = \"u\"\n[composite]\n[[composite.layers]]\nlayer = \"beauty\"\n")
            .unwrap()
            .validate()
            .unwrap_err();
    assert!(unlayered.says("composite", "[[layers]]"), "{unlayered}");
}

#[test]
fn tells_json_from_msgpack() {
    assert!(is_json(None, b"  {\"id\":1}"));
    assert!(!is_json(None, &[0x81]));
    assert!(is_json(Some("application/json"), b""));
    assert!(!is_json(Some("application/msgpack"), b"{"));
}

#[test]
fn a_spec_without_an_id_is_refused_naming_the_field() {
    let err = from_toml("").unwrap().validate().unwrap_err();
    assert_eq!(err.0[0].field, "id", "{err}");
    assert!(err.0[0].message.contains("missing"), "{err}");
}

#[test]
fn outputs_default_to_all_three_for_a_sequence_and_name_each_bad_field() {
    use crate::core::job::PostStep;
    let job = |extra: &str| {
        let text = format!("id = \"o\"\nrenderer = \"command\"\n{extra}");
        from_toml(&text).unwrap().validate()
    };
    let named = job("output = \"shot010/lighting\"\n").unwrap();
    assert_eq!(named.output.as_deref(), Some("shot010/lighting"));
    assert_eq!(named.version, None, "numbered by the planner");
    let many = job("[frames]\nrange = \"1-24\"\n").unwrap().outputs;
    assert!(many.movie && many.animation && many.contact_sheet);
    assert_eq!((many.fps, many.preview_width), (24.0, 640));
    let one = job("").unwrap().outputs;
    assert!(!one.any(), "a single frame gets no sequence by default");
    let chosen = job("[frames]\nrange = \"1-3\"\n[outputs]\nmovie = false\nfps = 12.5\npost = [{ exposure = 1 }, { gamma = 2.2 }, { matrix = [[1, 0, 0], [0, 1, 0], [0, 0, 1]] }]\n")
        .unwrap()
        .outputs;
    assert!(!chosen.movie && chosen.animation);
    assert_eq!(chosen.fps, 12.5);
    assert_eq!(
        chosen.post[..2],
        [PostStep::Exposure(1.0), PostStep::Gamma(2.2)]
    );
    let noop = from_toml("id = \"n\"\nrenderer = \"noop\"\n[frames]\nrange = \"1-9\"\n").unwrap();
    assert!(
        !noop.validate().unwrap().outputs.any(),
        "noop writes no images"
    );
    // (the extra text, the field of the problem, part of its message)
    let cases = [
        ("[outputs]\nfps = 0\n", "outputs.fps", "above 0"),
        (
            "[outputs]\npreview_width = 8\n",
            "outputs.preview_width",
            "16 to 4096",
        ),
        (
            "[outputs]\ndisplay = \"rec709\"\n",
            "outputs.display",
            "srgb or none",
        ),
        (
            "[outputs]\nanimation = true\npost = [{ gamma = 0 }]\n",
            "outputs.post[0].gamma",
            "0.01 to 10",
        ),
        (
            "[outputs]\nanimation = true\npost = [{ exposure = 40 }]\n",
            "outputs.post[0].exposure",
            "-32 to 32",
        ),
        (
            "[outputs]\nanimation = true\npost = [{ lut = \"../grade.cube\" }]\n",
            "outputs.post[0].lut",
            "'..'",
        ),
        ("output = \"shot010/../x\"\n", "output", "'..'"),
        ("output = \"/abs/x\"\n", "output", "empty segment"),
        ("output = \"shot010/v003\"\n", "output", "version label"),
        (
            "[outputs]\nanimation = true\npost = [{ lut = \"grade.png\" }]\n",
            "outputs.post[0].lut",
            "not a .cube",
        ),
        (
            "[outputs]\nanimation = true\npost = [{ lut = \"grade.cube\" }]\n",
            "outputs.post[0].lut",
            "has no scene",
        ),
        (
            "[outputs]\npost = [{ gamma = 2 }]\n",
            "outputs.post",
            "no sequence output",
        ),
    ];
    for (extra, field, needle) in cases {
        let err = job(extra).unwrap_err();
        assert!(err.says(field, needle), "{extra}: {err}");
    }
    let err = from_toml("id = \"n\"\n[outputs]\npost = [{ blur = 2 }]\n").unwrap_err();
    assert!(err.to_string().contains("outputs.post"), "{err}");
}
