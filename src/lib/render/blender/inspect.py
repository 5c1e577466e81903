# Tessera's Blender scene inspection, run at submit time (`blender -b scene.blend --python
# inspect.py`): prints one JSON line with the scene's view layers, frame range and every
# external file it refers to, so a missing file is refused before anything is queued.
import json

import bpy

files = []
for kind, blocks in (
    ("image", bpy.data.images),
    ("library", bpy.data.libraries),
    ("sound", bpy.data.sounds),
    ("movie clip", bpy.data.movieclips),
    ("font", bpy.data.fonts),
    ("volume", bpy.data.volumes),
    ("cache file", bpy.data.cache_files),
):
    for block in blocks:
        path = getattr(block, "filepath", "")
        if not path or getattr(block, "packed_file", None) is not None:
            continue
        if kind == "image" and block.source not in {"FILE", "SEQUENCE", "MOVIE", "TILED"}:
            continue
        if kind == "font" and path == "<builtin>":
            continue
        files.append({"kind": kind, "name": block.name, "path": path})

scene = bpy.context.scene
print("TESSERA-INSPECT " + json.dumps({
    "view_layers": [vl.name for vl in scene.view_layers],
    "engine": scene.render.engine,
    "frame_start": scene.frame_start,
    "frame_end": scene.frame_end,
    "files": files,
}), flush=True)
