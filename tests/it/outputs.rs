//! Sequence outputs on a real farm: a 24-frame job yields an H.264 movie whose frame count,
//! size and rate `ffprobe` confirms, an animated PNG of 24 frames and a contact sheet
//! numbering every frame, all graded by the job's post-processing chain (exposure, matrix,
//! gamma and a `.cube` LUT from the scene folder) to the values worked out by hand.

use std::process::Command;

use tessera::bus::protocol::EventKind;
use tessera::core::job::JobId;
use tessera::core::raster::srgb_to_linear;
use tessera::core::sequence::{SheetLayout, read_label};
use tessera::store::keys;

use crate::support::{command_farm, wait_event};

/// The frame every task copies: one flat colour, 64×36.
const COLOUR: [u8; 3] = [200, 100, 50];

/// A `.cube` LUT of size 2 that inverts each channel (1 - v).
fn inverting_cube() -> String {
    let mut text = "TITLE \"invert\"\nLUT_3D_SIZE 2\n".to_string();
    for b in 0..2 {
        for g in 0..2 {
            for r in 0..2 {
                text += &format!("{} {} {}\n", 1 - r, 1 - g, 1 - b);
            }
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_24_frame_job_yields_a_graded_movie_animation_and_contact_sheet() {
    let (farm, deps) = command_farm(1, &[]).await;
    let scene = farm.dir.path().join("jobs/look");
    std::fs::create_dir_all(&scene).unwrap();
    image::RgbImage::from_pixel(64, 36, image::Rgb(COLOUR))
        .save(scene.join("flat.png"))
        .unwrap();
    std::fs::write(scene.join("invert.cube"), inverting_cube()).unwrap();
    let toml = r#"id = "look"
renderer = "command"
scene = "look/flat.png"
[image]
width = 64
height = 36
[frames]
range = "1-24"
[outputs]
display = "none"
post = [
  { exposure = -1 },
  { matrix = [[0, 1, 0], [1, 0, 0], [0, 0, 1]] },
  { gamma = 2 },
  { lut = "invert.cube" },
]
[settings]
command = ["cp", "{scene}", "{output}"]
"#;
    farm.submit("look", toml);
    let done = wait_event(&farm, &deps.js, "look", EventKind::JobDone).await;
    let id = JobId::parse("look").unwrap();
    for name in ["movie.mp4", "animation.png", "contact_sheet.png"] {
        assert!(
            done.outputs.contains(&keys::unversioned_output(&id, name)),
            "job.done does not list {name}: {:?}",
            done.outputs
        );
    }
    let get = async |name: &str| {
        deps.store
            .get(&keys::unversioned_output(&id, name))
            .await
            .unwrap()
    };

    // By hand: linear, half the exposure, red and green swapped, square root, inverted.
    let linear = COLOUR.map(|v| srgb_to_linear(f32::from(v) / 255.0));
    let swapped = [linear[1], linear[0], linear[2]];
    let expected = swapped.map(|v| ((1.0 - (0.5 * v).sqrt()) * 255.0).round() as i32);

    let movie = farm.dir.path().join("movie.mp4");
    std::fs::write(&movie, get("movie.mp4").await).unwrap();
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,nb_read_frames,width,height,r_frame_rate",
        ])
        .args(["-of", "json"])
        .arg(&movie)
        .output()
        .expect("ffprobe (scripts/setup.sh --tests installs it)");
    let probed: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap();
    let stream = &probed["streams"][0];
    assert_eq!(stream["codec_name"], "h264", "{probed}");
    assert_eq!(stream["nb_read_frames"], "24", "{probed}");
    assert_eq!(
        (stream["width"].as_u64(), stream["height"].as_u64()),
        (Some(64), Some(36))
    );
    assert_eq!(stream["r_frame_rate"], "24/1", "{probed}");

    let animation = get("animation.png").await;
    let mut reader = png::Decoder::new(std::io::Cursor::new(animation.to_vec()))
        .read_info()
        .unwrap();
    let control = reader.info().animation_control.expect("an animated PNG");
    assert_eq!(control.num_frames, 24);
    let mut frame = vec![0; reader.output_buffer_size().unwrap()];
    let mut frames = 0;
    while reader.next_frame(&mut frame).is_ok() {
        frames += 1;
        let pixel = [frame[0], frame[1], frame[2]].map(i32::from);
        for c in 0..3 {
            assert!(
                (pixel[c] - expected[c]).abs() <= 1,
                "frame {frames}: {pixel:?}, worked out by hand {expected:?}"
            );
        }
    }
    assert_eq!(frames, 24, "frames decoded from the animation");

    let sheet = image::load_from_memory(&get("contact_sheet.png").await)
        .unwrap()
        .to_rgb8();
    let layout = SheetLayout::new(24, 64, 36);
    assert_eq!(sheet.dimensions(), layout.size());
    for i in 0..24 {
        assert_eq!(
            read_label(&sheet, &layout, i),
            (i + 1).to_string(),
            "cell {i}"
        );
    }
    let (x, y) = layout.cell(5);
    let thumb = sheet.get_pixel(x + 10, y + 10).0.map(i32::from);
    assert!(
        (0..3).all(|c| (thumb[c] - expected[c]).abs() <= 1),
        "{thumb:?}"
    );

    // The frames themselves are stored as rendered.
    let first = image::load_from_memory(&get("frame_0001.png").await)
        .unwrap()
        .to_rgb8();
    assert_eq!(first.get_pixel(3, 3).0, COLOUR);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lut_that_does_not_parse_is_refused_at_submit_naming_its_field_and_line() {
    let (farm, _deps) = command_farm(0, &[]).await;
    let scene = farm.dir.path().join("jobs/bad");
    std::fs::create_dir_all(&scene).unwrap();
    std::fs::write(scene.join("flat.png"), b"x").unwrap();
    std::fs::write(scene.join("bad.cube"), "LUT_3D_SIZE 2\n0 0\n").unwrap();
    let toml = "id = \"bad\"\nrenderer = \"command\"\nscene = \"bad/flat.png\"\n[frames]\nrange = \"1-2\"\n[outputs]\npost = [{ lut = \"bad.cube\" }, { lut = \"gone.cube\" }]\n[settings]\ncommand = [\"true\"]\n";
    let file = farm.job_file("bad.toml", toml);
    let out = farm.cli(&["submit", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("outputs.post[0].lut: bad.cube line 2: \"0 0\" is not three numbers"),
        "{said}"
    );
}
