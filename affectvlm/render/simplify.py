"""A cap on a scan's vertices before it is oriented and rendered.

At the model's image sizes a dense scan's triangles are much smaller than a pixel: each pixel shows one of them,
so scanner noise turns into speckled shading that sparser scans never show. Scans above the cap are decimated
(quadric error metric, fast-simplification) to it first. Geometry only: texture coordinates and vertex colours
do not survive decimation, so the renderers apply the cap only to geometry-only renders.
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np

from affectvlm.mesh import Mesh

if TYPE_CHECKING:
    from .settings import RenderSettings

__all__ = ["cap_vertices", "capped_for", "quadric_simplify"]

# fast-simplification keeps the mesh it works on in process-wide arrays and releases the GIL: two threads
# decimating at once (predict's render workers) corrupt each other's result
_SIMPLIFY_LOCK = threading.Lock()


def quadric_simplify(points: np.ndarray, faces: np.ndarray, target_reduction: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """fast-simplification's quadric decimation, one call at a time in this process; raises ImportError
    when the package is missing."""
    import fast_simplification

    with _SIMPLIFY_LOCK:
        return fast_simplification.simplify(np.asarray(points, np.float32), np.asarray(faces, np.int32),
                                            target_reduction=float(target_reduction))


def capped_for(mesh: Mesh, settings: "RenderSettings") -> Mesh:
    """``mesh`` under the cap of ``settings`` (``max_vertices``), for geometry-only settings; else ``mesh``."""
    if settings.max_vertices and not settings.texture:
        return cap_vertices(mesh, settings.max_vertices)
    return mesh


def cap_vertices(mesh: Mesh, max_vertices: int) -> Mesh:
    """``mesh`` decimated to about ``max_vertices`` vertices, or ``mesh`` itself when it has no more than that
    (or ``max_vertices`` is 0). A mesh with bad indices or coordinates is returned as it is, for the checks that
    follow to name its problem. ``meta["simplified_from"]`` records the vertex count it had."""
    n = mesh.n_vertices
    if max_vertices <= 0 or n <= max_vertices:
        return mesh
    v = np.asarray(mesh.vertices)
    f = np.asarray(mesh.faces)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        return mesh
    if f.min() < 0 or f.max() >= n or not np.isfinite(v).all():
        return mesh
    used = int(np.count_nonzero(np.bincount(f.ravel(), minlength=n)))  # points no triangle uses are not a surface
    if used <= max_vertices:
        return mesh
    scale = _unit_scale(v[f.ravel()])
    pts, faces = quadric_simplify(v * scale, f, 1.0 - max_vertices / used)
    if len(faces) == 0:
        return mesh
    pts = np.asarray(pts, np.float64) / scale
    meta = dict(mesh.meta)
    meta["simplified_from"] = int(n)
    return Mesh(vertices=np.asarray(pts, np.float32), faces=np.asarray(faces, np.int64), source=mesh.source,
                meta=meta)


def _unit_scale(points: np.ndarray) -> float:
    """The power of ten that brings a face's size (its box's diagonal) nearest 250, i.e. its coordinates to
    millimetres: fast-simplification's collapse threshold is absolute, so the same scan stored in mm, cm or m
    decimated to different meshes. 1 for a scan in mm (or anything that reads as mm)."""
    size = float(np.linalg.norm(points.max(0) - points.min(0))) if len(points) else 0.0
    if not (np.isfinite(size) and size > 0):
        return 1.0
    return float(10.0 ** round(np.log10(250.0 / size)))
