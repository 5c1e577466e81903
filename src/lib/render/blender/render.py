# Tessera's Blender task script: run inside Blender (`blender -b scene.blend --python
# render.py -- key=value ...`) by the `blender` renderer. It sets the job's size, samples,
# seed, view layer, region and format on the open scene and renders the task's frames.
# Every value arrives as one `key=value` argument; nothing here is evaluated as code.
import os
import sys

import bpy


def fail(message):
    print("TESSERA-ERROR: " + message, flush=True)
    sys.exit(3)


args = {}
for arg in sys.argv[sys.argv.index("--") + 1:]:
    key, _, value = arg.partition("=")
    args[key] = value

for name in filter(None, args.get("addons", "").split(",")):
    import addon_utils

    if not any(m.__name__ == name for m in addon_utils.modules()):
        fail(f"the scene needs the add-on {name!r}, which is not installed on this worker")
    if addon_utils.enable(name, default_set=True) is None:
        fail(f"the add-on {name!r} failed to load on this worker (see the log)")

scene = bpy.context.scene
render = scene.render
width, height = int(args["width"]), int(args["height"])
render.resolution_x = width
render.resolution_y = height
render.resolution_percentage = 100
render.threads_mode = "FIXED"
render.threads = int(args.get("threads", "1"))
# Dithering adds noise that depends on the image buffer, so a tile would differ from the
# whole: off, as every farm render of a tiled job must be.
render.dither_intensity = 0.0

if render.engine == "CYCLES":
    cycles = scene.cycles
    if args.get("samples"):
        cycles.samples = int(args["samples"])
    if args.get("seed"):
        cycles.seed = int(args["seed"])
        cycles.use_animated_seed = False
    # Adaptive sampling and denoising look at neighbouring pixels: off, so a pixel is the
    # same in a tile and in the whole frame.
    cycles.use_adaptive_sampling = False
    cycles.use_denoising = False
    device = "CPU"
    if args.get("device") == "gpu":
        prefs = bpy.context.preferences.addons["cycles"].preferences
        for kind in ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL"):
            try:
                prefs.compute_device_type = kind
            except TypeError:
                continue
            prefs.get_devices()
            gpus = [d for d in prefs.devices if d.type == kind]
            if gpus:
                for d in prefs.devices:
                    d.use = d.type == kind
                device = "GPU"
                print(f"TESSERA: rendering on the GPU ({kind}: {', '.join(d.name for d in gpus)})", flush=True)
                break
        else:
            print("TESSERA: no GPU device found; rendering on the CPU", flush=True)
    cycles.device = device

layer = args.get("layer")
if layer:
    names = [vl.name for vl in scene.view_layers]
    if layer not in names:
        fail(f"the scene has no view layer {layer!r} (it has: {', '.join(names)})")
    for vl in scene.view_layers:
        vl.use = vl.name == layer

if args.get("region"):
    x, y, w, h = (int(v) for v in args["region"].split(","))
    render.use_border = True
    render.use_crop_to_border = True
    render.border_min_x = x / width
    render.border_max_x = (x + w) / width
    # Blender's border counts from the bottom.
    render.border_min_y = (height - (y + h)) / height
    render.border_max_y = (height - y) / height
else:
    render.use_border = False

settings = render.image_settings
extension = args.get("format", "png")
if extension == "exr":
    multilayer = args.get("multilayer") == "1"
    settings.file_format = "OPEN_EXR_MULTILAYER" if multilayer else "OPEN_EXR"
    settings.color_depth = "32"
    settings.exr_codec = "ZIP"
else:
    settings.file_format = "PNG"
    settings.color_depth = args.get("depth", "8")
    settings.compression = 15
if settings.file_format != "OPEN_EXR_MULTILAYER":
    settings.color_mode = "RGB"
render.use_file_extension = True

out = args["out"]
frames = [int(f) for f in args["frames"].split(",")]
for frame in frames:
    scene.frame_set(frame)
    render.filepath = os.path.join(out, f"frame_{frame:04d}.{extension}")
    bpy.ops.render.render(write_still=True)
    print(f"TESSERA-FRAME-DONE {frame}", flush=True)
