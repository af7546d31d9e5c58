"""Batched multiview rendering of face meshes with our own z-buffer rasteriser (no GL context).

Why our own: it renders all views of many faces in one call on CPU or CUDA with no GL/EGL, and the
output is a tensor ready for the CLIP encoder.

One :class:`RenderSettings` travels from the model to the rasteriser: ``render(meshes, settings)``
returns ``{map name: tensor}``; ``settings.render(meshes)`` is the model's input (its one map, 3
channels). ``render_views`` (one map, always a tensor) and ``render_maps`` (always a dict) take the
settings as keywords.

Modules: :mod:`.settings` (View, views parsing, RenderSettings), :mod:`.prepare` (unit frame, texture
and colour arrays), :mod:`.api` (the entry points), :mod:`.numba_backend` (CPU with numba: compiled
kernels in :mod:`affectvlm._render_kernels`, mesh by mesh, one image at a time, z-buffered and shaded
while the image is in cache; meshes or views spread over ``torch.get_num_threads()`` threads),
:mod:`.torch_backend` (CUDA, or CPU without numba: vectorised over all meshes and views), :mod:`.export`
(PIL images, PNG files), :mod:`.lights` (the three-light map), :mod:`.mirror` (the images of the mirrored face,
for flip augmentation and inference).

Shared rules: a pixel centre is covered when its three barycentrics are >= -1e-5 (closes hairline
cracks). Depth test: the smallest ``quantised depth << 32 | face`` per pixel wins (an int64
``scatter_reduce(amin)`` in torch; ties go to the lower face, deterministically); barycentrics and
depth are those of the winning face at the pixel centre, and only covered pixels are shaded.

Camera and conventions
----------------------
* Meshes are put in the canonical frame first (:func:`affectvlm.geometry.canonicalise`): face toward
  +Z, +Y up, +X = the viewer's right = the face's own **left**, radius 1 around the origin.
  ``canonical=False`` skips the orientation detection (the mesh must already face +Z with +Y up)
  but still centres and scales it.
* Orthographic camera on +Z looking at the origin; the image spans [-1, 1] in x and y, so a
  unit-radius mesh stays in frame for any view. Pixel (row r, col c) of a ``size``-pixel image has its
  centre at x = (c + 0.5) / size * 2 - 1, y = 1 - (r + 0.5) / size * 2.
* ``View(yaw, pitch)`` in degrees moves the camera around the face. **yaw > 0** orbits the camera
  toward the face's left (+X) side: the face's **left cheek** (image right in the frontal view) turns
  toward the camera and the nose tip moves to the image **left**. **pitch > 0** raises the camera:
  more forehead/top of the head is seen and the nose tip moves **down** in the image.
  The face is rotated by ``R = R_pitch @ R_yaw`` (yaw about Y, then pitch about the camera X axis).
* Shading: Lambert from interpolated vertex normals with the light at the camera, two-sided
  (``ambient + (1 - ambient) * |n . l|``, scans are open surfaces and both sides may show),
  multiplied by the albedo: texture (bilinear, via ``face_uv``) or vertex colours when present and
  ``texture=True``, else white. Background is ``background`` (0 = black).

Maps: ``shade`` (3 ch), ``depth`` (1 ch: (z_view + 1) / 2, so 1 = nearest possible point of the unit
sphere, 0 = farthest; background 0), ``normal`` (3 ch: view-space unit normal turned toward the camera,
mapped (n + 1) / 2; background 0), ``mask`` (1 ch, 1 = covered) and ``lights`` (3 ch: the face under three lights,
one per channel, made from the normal map: :mod:`.lights`).
"""
from __future__ import annotations

from .export import save_views, to_pil
from .api import render, render_maps, render_views, to_rgb
from .settings import AMBIENT, DEFAULT_VIEWS, MAPS, RenderSettings, View, as_views, parse_views

__all__ = ["View", "DEFAULT_VIEWS", "parse_views", "as_views", "RenderSettings", "render", "render_views",
           "render_maps", "to_rgb", "to_pil", "save_views", "MAPS", "AMBIENT"]
