//! The builtin renderer's guarantees: rectangles match the full render bit for bit, thread
//! counts do not matter, the light passes add up to `beauty`, and scenes load with their
//! files.

use super::*;

/// A scene with every kind of object, material, light and texture.
const EVERYTHING: &str = r#"
[camera]
position = [0.0, 2.0, 7.0]
target = [0.0, 0.6, 0.0]
fov = 45
aperture = 0.05
[[camera.keys]]
frame = 1
position = [0.0, 2.0, 7.0]
[[camera.keys]]
frame = 9
position = [3.0, 2.5, 6.0]
fov = 40
[[lights]]
type = "point"
position = [3.0, 5.0, 2.0]
radius = 0.5
intensity = 30
[[lights]]
type = "area"
corner = [-3.0, 4.0, -1.0]
edge_u = [1.5, 0.0, 0.0]
edge_v = [0.0, 0.0, 1.5]
intensity = 4
[[lights]]
type = "sun"
direction = [-1.0, 2.0, 1.0]
angle = 2.0
intensity = 1.5
[textures.checker]
type = "checker"
colors = [[0.9, 0.9, 0.85], [0.1, 0.12, 0.15]]
size = 0.5
[textures.photo]
type = "image"
file = "tex/photo.png"
[materials.floor]
type = "diffuse"
texture = "checker"
[materials.red]
type = "diffuse"
color = [0.8, 0.2, 0.1]
[materials.photo]
type = "diffuse"
texture = "photo"
[materials.chrome]
type = "metal"
roughness = 0.2
[materials.mirror]
type = "metal"
[materials.glass]
type = "glass"
ior = 1.5
color = [0.9, 1.0, 0.95]
[materials.lamp]
type = "emissive"
color = [1.0, 0.8, 0.5]
intensity = 3
[[objects]]
type = "plane"
material = "floor"
[[objects]]
type = "sphere"
center = [-1.2, 0.6, 0.0]
radius = 0.6
material = "glass"
[[objects]]
type = "sphere"
center = [1.2, 0.6, 0.0]
radius = 0.6
material = "chrome"
[[objects]]
type = "box"
min = [-0.4, 0.0, -0.4]
max = [0.4, 0.8, 0.4]
material = "photo"
translate = [0.0, 0.0, -1.5]
[[objects.keys]]
frame = 1
rotate = [0, 0, 0]
[[objects.keys]]
frame = 9
rotate = [0, 90, 0]
[[objects]]
type = "mesh"
file = "mesh/pyramid.obj"
material = "red"
translate = [0.0, 0.0, 1.3]
scale = 0.5
[[objects]]
type = "sphere"
center = [2.0, 1.8, -1.5]
radius = 0.25
material = "lamp"
[[objects]]
type = "sphere"
center = [-2.2, 0.3, 1.0]
radius = 0.3
material = "mirror"
"#;

const PYRAMID: &str = "v -1 0 -1\nv 1 0 -1\nv 1 0 1\nv -1 0 1\nv 0 1.5 0\nf 1 2 5\nf 2 3 5\nf 3 4 5\nf 4 1 5\nf 4 3 2 1\n";

fn scene_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tex")).unwrap();
    std::fs::create_dir_all(dir.path().join("mesh")).unwrap();
    std::fs::write(dir.path().join("mesh/pyramid.obj"), PYRAMID).unwrap();
    let mut photo = Raster::new(8, 8);
    for (i, p) in photo.pixels.iter_mut().enumerate() {
        *p = [(i % 8) as f32 / 8.0, (i / 8) as f32 / 8.0, 0.5];
    }
    let png = raster::encode(&photo, ImageFormat::Png, 8).unwrap();
    std::fs::write(dir.path().join("tex/photo.png"), png).unwrap();
    std::fs::write(dir.path().join("scene.toml"), EVERYTHING).unwrap();
    dir
}

fn everything() -> Arc<Scene> {
    let dir = scene_dir();
    Arc::new(Scene::load(&dir.path().join("scene.toml")).unwrap())
}

fn job(scene: &Arc<Scene>, pass: Pass, region: Rect) -> RenderJob {
    RenderJob {
        scene: scene.clone(),
        frame: 5,
        width: 64,
        height: 40,
        region,
        samples: 3,
        bounces: 4,
        pass,
        format: ImageFormat::Exr,
    }
}

fn render(job: &RenderJob, threads: usize) -> Raster {
    job.render(threads, &AtomicBool::new(false), &AtomicU32::new(0))
        .unwrap()
}

fn rect(x: u32, y: u32, width: u32, height: u32) -> Rect {
    Rect {
        x,
        y,
        width,
        height,
    }
}

#[test]
fn rectangles_match_the_full_render_bit_for_bit() {
    let scene = everything();
    let full = render(&job(&scene, Pass::Beauty, Rect::full(64, 40)), 2);
    let mut rects = vec![
        rect(0, 0, 1, 1),
        rect(63, 39, 1, 1),
        rect(63, 0, 1, 40),
        rect(0, 39, 64, 1),
        rect(0, 0, 64, 40),
    ];
    // Random rectangles from a fixed sequence.
    let mut seed = 0x1234_5678u64;
    let mut next = |m: u32| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        ((seed >> 33) % u64::from(m)) as u32
    };
    for _ in 0..12 {
        let (x, y) = (next(64), next(40));
        rects.push(rect(x, y, 1 + next(64 - x), 1 + next(40 - y)));
    }
    for r in rects {
        assert_eq!(
            render(&job(&scene, Pass::Beauty, r), 1),
            full.crop(r),
            "{r:?}"
        );
    }
}

#[test]
fn thread_count_does_not_change_pixels() {
    let scene = everything();
    for pass in [Pass::Beauty, Pass::Ao] {
        let j = job(&scene, pass, Rect::full(64, 40));
        assert_eq!(render(&j, 1), render(&j, 4), "{pass:?}");
    }
}

#[test]
fn light_passes_add_up_to_beauty() {
    let scene = everything();
    let full = Rect::full(64, 40);
    let [beauty, diffuse, specular, emission] =
        [Pass::Beauty, Pass::Diffuse, Pass::Specular, Pass::Emission]
            .map(|p| render(&job(&scene, p, full), 2));
    let mut worst = 0f32;
    for i in 0..beauty.pixels.len() {
        for c in 0..3 {
            let sum = diffuse.pixels[i][c] + specular.pixels[i][c] + emission.pixels[i][c];
            worst = worst.max((sum - beauty.pixels[i][c]).abs());
        }
    }
    assert!(worst <= 1e-4, "largest difference {worst}");
    // Each light pass holds something in this scene (none is trivially zero).
    for (name, pass) in [
        ("diffuse", &diffuse),
        ("specular", &specular),
        ("emission", &emission),
    ] {
        let total: f64 = pass.pixels.iter().flatten().map(|&v| f64::from(v)).sum();
        assert!(total > 1.0, "{name} pass is empty");
    }
}

#[test]
fn data_passes_hold_their_data() {
    let scene = everything();
    let full = Rect::full(64, 40);
    let all = |pass: Pass| render(&job(&scene, pass, full), 2);
    let in_unit = |r: &Raster| r.pixels.iter().flatten().all(|v| (0.0..=1.0).contains(v));
    let (ao, shadow, normal, depth, albedo) = (
        all(Pass::Ao),
        all(Pass::Shadow),
        all(Pass::Normal),
        all(Pass::Depth),
        all(Pass::Albedo),
    );
    assert!(in_unit(&ao) && in_unit(&shadow) && in_unit(&normal) && in_unit(&albedo));
    // The floor at the bottom of the image faces up: normal (0, 1, 0) maps to (0.5, 1, 0.5).
    let floor = normal.get(32, 39);
    assert!(
        (floor[1] - 1.0).abs() < 1e-3 && (floor[0] - 0.5).abs() < 1e-2,
        "{floor:?}"
    );
    // Depth grows up the image, towards the horizon.
    assert!(depth.get(32, 39)[0] < depth.get(5, 20)[0]);
    // Something is in shadow and something is occluded; not everything.
    let some = |r: &Raster, lo: f32, hi: f32| r.pixels.iter().any(|p| p[0] > lo && p[0] < hi);
    assert!(some(&shadow, 0.3, 1.01) && some(&shadow, -0.01, 0.05));
    assert!(some(&ao, -0.01, 0.7) && some(&ao, 0.95, 1.01));
}

#[test]
fn frames_move_the_camera_and_the_keyed_objects() {
    let scene = everything();
    let mut a = job(&scene, Pass::Albedo, Rect::full(64, 40));
    a.frame = 1;
    let mut b = a.clone();
    b.frame = 9;
    assert_ne!(render(&a, 2), render(&b, 2));
    // Past the last key everything holds still (but samples differ per frame, so compare
    // the noise-free albedo at one sample of a pinhole scene).
    let still = Arc::new(Scene::parse("[camera]\nposition = [0, 1, 5]\n[[camera.keys]]\nframe = 1\n[[camera.keys]]\nframe = 2\nposition = [1, 1, 5]\n[materials.m]\ntype = \"diffuse\"\n[[objects]]\ntype = \"sphere\"\nmaterial = \"m\"\n", None).unwrap());
    let at = |frame: u32| {
        let mut j = job(&still, Pass::Normal, Rect::full(64, 40));
        j.frame = frame;
        j.samples = 1;
        j.scene.camera.at(f64::from(frame)).eye
    };
    assert_eq!(at(2), at(50));
    assert_ne!(at(1), at(2));
}

#[test]
fn layers_name_passes() {
    assert_eq!(Pass::from_layer(None), Ok(Pass::Beauty));
    for pass in Pass::ALL {
        assert_eq!(Pass::from_layer(Some(pass.name())), Ok(pass));
    }
    let err = Pass::from_layer(Some("crypto")).unwrap_err();
    assert!(
        err.message().contains("\"crypto\"") && err.message().contains("beauty, albedo"),
        "{err}"
    );
}

#[test]
fn scene_files_are_checked_when_loaded() {
    let dir = scene_dir();
    std::fs::remove_file(dir.path().join("mesh/pyramid.obj")).unwrap();
    let err = Scene::load(&dir.path().join("scene.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("objects[4].file (line 86)") && err.contains("mesh/pyramid.obj"),
        "{err}"
    );
    std::fs::write(dir.path().join("mesh/pyramid.obj"), "v 0 0 0\nf 1 1 9\n").unwrap();
    let err = Scene::load(&dir.path().join("scene.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("line 2") && err.contains("vertex index 9"),
        "{err}"
    );
    std::fs::write(dir.path().join("tex/photo.png"), "not a png").unwrap();
    let err = Scene::load(&dir.path().join("scene.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("textures.photo.file"), "{err}");
}
