# Makes the Blender example's scene, so no binary file needs to be kept:
#   blender -b --factory-startup --python examples/blender/make_scene.py -- examples/blender/scene/scene.blend
# A red sphere rolls past a cube over a floor with an image texture, lit by a sun; the scene
# has two view layers, "main" (with depth and normal passes) and "floor" (the floor alone).
import os
import sys

import bpy

out = os.path.abspath(sys.argv[sys.argv.index("--") + 1])
folder = os.path.dirname(out)
os.makedirs(os.path.join(folder, "textures"), exist_ok=True)

bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.samples = 16
scene.cycles.seed = 1
# What a farm render of this scene uses too, so rendering it directly gives the same pixels:
# no denoising, no adaptive sampling, no dithering (each depends on neighbouring pixels).
scene.cycles.use_denoising = False
scene.cycles.use_adaptive_sampling = False
scene.render.dither_intensity = 0.0
scene.render.image_settings.color_mode = "RGB"
scene.render.resolution_x = 160
scene.render.resolution_y = 90
scene.frame_start = 1
scene.frame_end = 24

# A checker texture written as a PNG next to the scene and referred to by a relative path.
size = 16
texture = bpy.data.images.new("checker", size, size)
texture.pixels = [
    v
    for y in range(size)
    for x in range(size)
    for v in ((0.9, 0.9, 0.9, 1.0) if (x // 4 + y // 4) % 2 else (0.2, 0.3, 0.5, 1.0))
]
texture.filepath_raw = os.path.join(folder, "textures", "checker.png")
texture.file_format = "PNG"
texture.save()

def material(name, color=None, image=None):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    if image is not None:
        node = mat.node_tree.nodes.new("ShaderNodeTexImage")
        node.image = image
        mat.node_tree.links.new(node.outputs["Color"], bsdf.inputs["Base Color"])
    else:
        bsdf.inputs["Base Color"].default_value = color
    return mat

bpy.ops.mesh.primitive_plane_add(size=10)
floor = bpy.context.active_object
floor.name = "Floor"
floor.data.materials.append(material("floor", image=texture))

bpy.ops.mesh.primitive_uv_sphere_add(radius=0.8, location=(-2, 0, 0.8))
sphere = bpy.context.active_object
sphere.data.materials.append(material("red", color=(0.8, 0.1, 0.1, 1)))
sphere.keyframe_insert("location", frame=1)
sphere.location = (2, 0, 0.8)
sphere.keyframe_insert("location", frame=24)

bpy.ops.mesh.primitive_cube_add(size=1, location=(0, 1.5, 0.5))
bpy.context.active_object.data.materials.append(material("green", color=(0.1, 0.6, 0.2, 1)))

bpy.ops.object.light_add(type="SUN", location=(2, -2, 5))
bpy.context.active_object.data.energy = 3
bpy.ops.object.camera_add(location=(0, -7, 3), rotation=(1.2, 0, 0))
scene.camera = bpy.context.active_object

world = bpy.data.worlds.new("sky")
world.use_nodes = True
world.node_tree.nodes["Background"].inputs[0].default_value = (0.2, 0.25, 0.35, 1)
scene.world = world

# Two view layers: everything, and the floor alone. "main" also keeps its depth and normal
# passes, which a multilayer EXR job (settings.multilayer = true) writes beside the image.
scene.view_layers[0].name = "main"
scene.view_layers[0].use_pass_z = True
scene.view_layers[0].use_pass_normal = True
floor_only = scene.view_layers.new("floor")
collection = bpy.data.collections.new("props")
scene.collection.children.link(collection)
for obj in list(scene.collection.objects):
    if obj.type == "MESH" and obj.name != "Floor":
        scene.collection.objects.unlink(obj)
        collection.objects.link(obj)
floor_only.layer_collection.children["props"].exclude = True

bpy.ops.wm.save_as_mainfile(filepath=out, relative_remap=True)
