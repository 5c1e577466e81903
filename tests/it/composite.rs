//! Layers composited by the collector (`[composite]`): light passes added after stitching
//! equal the beauty pass, and `over` with an opacity gives the pixels its formula says,
//! each stored beside the layers and counted among the job's outputs.

use tessera::core::job::JobId;
use tessera::core::raster;
use tessera::store::keys;

use crate::support::Farm;

/// Output `name` of job `id`, decoded to float RGBA.
async fn float_output(farm: &Farm, id: &str, name: &str) -> image::Rgba32FImage {
    let deps = farm.deps().await;
    let job = JobId::parse(id).unwrap();
    let bytes = deps.store.get(&keys::unversioned_output(&job, name)).await;
    let bytes = bytes.unwrap_or_else(|e| panic!("{name}: {e}"));
    raster::decode(&bytes).unwrap().into_rgba32f()
}

/// The largest difference between two images' colour channels.
fn largest_difference(a: &image::Rgba32FImage, b: &image::Rgba32FImage) -> f32 {
    assert_eq!(a.dimensions(), b.dimensions());
    a.pixels()
        .zip(b.pixels())
        .flat_map(|(p, q)| (0..3).map(move |c| (p.0[c] - q.0[c]).abs()))
        .fold(0.0, f32::max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn light_passes_added_after_stitching_equal_the_beauty() {
    let farm = Farm::with_workers(2);
    let toml = "id = \"lights\"\nrenderer = \"builtin\"\n[image]\nwidth = 64\nheight = 48\nformat = \"exr\"\n[frames]\nrange = \"1-2\"\n[tiles]\ngrid = [2, 2]\noverscan = 2\n[[layers]]\nname = \"beauty\"\n[[layers]]\nname = \"emission\"\n[[layers]]\nname = \"diffuse\"\n[[layers]]\nname = \"specular\"\n[composite]\nname = \"lit\"\nformats = [\"exr\", \"png\"]\n[[composite.layers]]\nlayer = \"emission\"\nop = \"add\"\n[[composite.layers]]\nlayer = \"diffuse\"\nop = \"add\"\n[[composite.layers]]\nlayer = \"specular\"\nop = \"add\"\n[settings]\nsamples = 2\nbounces = 2\n";
    let id = farm.submit("lights", toml);
    farm.wait_done(&id);
    for frame in ["frame_0001", "frame_0002"] {
        let beauty = float_output(&farm, &id, &format!("beauty/{frame}.exr")).await;
        let lit = float_output(&farm, &id, &format!("lit/{frame}.exr")).await;
        let off = largest_difference(&beauty, &lit);
        assert!(
            off <= 1e-4,
            "{frame}: the added light passes are {off} off the beauty"
        );
        assert!(lit.pixels().all(|p| p.0[3] == 1.0), "{frame}: opaque");
        let png = float_output(&farm, &id, &format!("lit/{frame}.png")).await;
        assert_eq!(png.dimensions(), (64, 48));
    }
    // The composites are outputs like the layers' frames.
    let status = farm.status(&id);
    let outputs = status["outputs"].as_array().unwrap();
    let frames = outputs
        .iter()
        .filter(|o| o.as_str().unwrap().contains("/frame_"));
    assert_eq!(frames.count(), 2 * (4 + 2), "{status}");
    // And the composite, the sequence, gets the sequence outputs.
    let lit_animation = outputs
        .iter()
        .any(|o| o.as_str().unwrap().ends_with("lit/animation.png"));
    assert!(lit_animation, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_with_an_opacity_gives_the_pixels_its_formula_says() {
    let farm = Farm::with_workers(1);
    let toml = "id = \"over\"\nrenderer = \"builtin\"\n[image]\nwidth = 48\nheight = 32\nformat = \"exr\"\n[[layers]]\nname = \"albedo\"\n[[layers]]\nname = \"beauty\"\n[composite]\n[[composite.layers]]\nlayer = \"albedo\"\n[[composite.layers]]\nlayer = \"beauty\"\nop = \"over\"\nopacity = 0.25\nexposure = 1\n[settings]\nsamples = 1\nbounces = 1\n";
    let id = farm.submit("over", toml);
    farm.wait_done(&id);
    let albedo = float_output(&farm, &id, "albedo/frame_0001.exr").await;
    let beauty = float_output(&farm, &id, "beauty/frame_0001.exr").await;
    let composite = float_output(&farm, &id, "composite/frame_0001.exr").await;
    // Opaque layers: the beauty, one stop brighter, a quarter of the way over the albedo.
    let mut expected = albedo.clone();
    for (out, (a, b)) in expected
        .pixels_mut()
        .zip(albedo.pixels().zip(beauty.pixels()))
    {
        for c in 0..3 {
            out.0[c] = 0.25 * 2.0 * b.0[c] + 0.75 * a.0[c];
        }
    }
    let off = largest_difference(&expected, &composite);
    assert!(off <= 1e-5, "the composite is {off} off the formula");
    assert!(
        largest_difference(&albedo, &composite) > 0.01,
        "the beauty left a mark"
    );
}
