"""Mesh preparation shared by both rasterisers: the unit frame, and validated texture / colour arrays."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from affectvlm.errors import ConfigError, InputError
from affectvlm.geometry import canonicalise
from affectvlm.holes import fill_holes
from affectvlm.mesh import Mesh

from .settings import RenderSettings
from .simplify import capped_for


def as_mesh_list(meshes: Mesh | Sequence[Mesh]) -> list[Mesh]:
    """A Mesh or a non-empty sequence of Mesh -> a list. Raises ConfigError."""
    if isinstance(meshes, Mesh):
        return [meshes]
    try:
        out = list(meshes)
    except TypeError:
        raise ConfigError(f"render_views needs a Mesh or a list of Mesh, got {type(meshes).__name__}") from None
    if not out:
        raise ConfigError("render_views needs at least one mesh")
    for m in out:
        if not isinstance(m, Mesh):
            raise ConfigError(f"render_views needs Mesh objects, got {type(m).__name__}")
    return out


def prepare(meshes: list[Mesh], settings: RenderSettings) -> list[Mesh]:
    """Each mesh in the camera's unit frame: canonicalised (orientation detected or given by
    ``up``/``front``), or with ``canonical=False`` and no axes given only centred and scaled. Geometry-only
    settings with ``max_vertices`` decimate denser meshes first (:func:`affectvlm.render.simplify.capped_for`);
    with ``fill_holes`` the holes up to that size (in the unit frame: a fraction of the face's radius) are closed."""
    meshes = [capped_for(m, settings) for m in meshes]
    if settings.canonical or settings.up is not None or settings.front is not None:
        out = [canonicalise(m, up=settings.up, front=settings.front, crop=settings.crop) for m in meshes]
    else:
        out = [fit_unit(m) for m in meshes]
    return [fill_holes(m, settings.fill_holes) for m in out] if settings.fill_holes else out


def fit_unit(mesh: Mesh) -> Mesh:
    """Centre (bounding box) and scale to unit radius, no rotation (``canonical=False``)."""
    from . import numba_backend

    v = np.asarray(mesh.vertices)
    f = np.asarray(mesh.faces)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0 or f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise InputError(mesh.source, f"need (N, 3) vertices and (F, 3) faces, got {v.shape} and {f.shape}")
    if numba_backend.numba_ready():
        vout = np.empty(v.shape, np.float32)
        vk = v if v.dtype in (np.float32, np.float64) else v.astype(np.float64)  # few compiled variants
        fk = f if f.dtype in (np.int32, np.int64) else f.astype(np.int64)
        status, cx, cy, cz, r = numba_backend.kernels().fit_unit(vk, fk, vout)
        c = np.array([cx, cy, cz])
    else:
        status, vout = 0, None
        if f.min() < 0 or f.max() >= len(v):
            status = 1
        else:
            used = v[np.bincount(f.reshape(-1), minlength=len(v)) > 0]  # each used vertex once
            if not np.isfinite(used).all():
                status = 2
            else:
                c = (used.min(0) + used.max(0)) / 2
                d = used - c
                r = float(np.sqrt(np.einsum("ij,ij->i", d, d).max()))
    if status == 1:
        raise InputError(mesh.source, f"face indices out of range [0, {len(v)})")
    if status == 2:
        raise InputError(mesh.source, "vertex coordinates contain NaN or infinity")
    if not r > 0:
        raise InputError(mesh.source, "mesh has zero extent (all vertices coincide)")
    if vout is None:
        vout = ((v - c) / r).astype(np.float32)
    out = Mesh(vertices=vout, faces=mesh.faces, face_uv=mesh.face_uv,
               texture=mesh.texture, vertex_colors=mesh.vertex_colors, source=mesh.source, meta=dict(mesh.meta))
    out.meta["canonical"] = {"up": "+y", "front": "+z", "detected": [], "centre": c.tolist(), "scale": 1.0 / r}
    return out


def texture_array(mesh: Mesh) -> np.ndarray | None:
    """The mesh's texture as an (H, W, 3) array (uint8 or float in [0, 1]), validated; None if untextured."""
    if mesh.texture is None or mesh.face_uv is None:
        return None
    tex = np.asarray(mesh.texture)
    if tex.ndim == 2:
        tex = np.repeat(tex[..., None], 3, axis=2)
    if tex.ndim != 3 or tex.shape[2] < 3 or tex.shape[0] < 1 or tex.shape[1] < 1:
        raise InputError(mesh.source, f"texture must be an (H, W, 3) image, got shape {tex.shape}")
    uv = np.asarray(mesh.face_uv)
    if uv.shape != (mesh.n_faces, 3, 2):
        raise InputError(mesh.source, f"face_uv must have shape ({mesh.n_faces}, 3, 2), got {uv.shape}")
    return np.ascontiguousarray(tex[..., :3])


def face_uv_array(mesh: Mesh) -> np.ndarray:
    """Per-face corner UVs as float32 (NaN / inf replaced by 0)."""
    uv = np.asarray(mesh.face_uv, dtype=np.float32)
    return np.nan_to_num(uv) if not np.isfinite(uv.sum()) else uv  # one cheap pass in the common case


def color_array(mesh: Mesh) -> np.ndarray | None:
    """Vertex colours as (N, 3) float32 in [0, 1], validated; None if the mesh has none."""
    if mesh.vertex_colors is None:
        return None
    c = np.asarray(mesh.vertex_colors)
    if c.ndim != 2 or c.shape[0] != mesh.n_vertices or c.shape[1] < 3:
        raise InputError(mesh.source, f"vertex_colors must have shape ({mesh.n_vertices}, 3), got {c.shape}")
    c = c[:, :3].astype(np.float32) / (255.0 if c.dtype == np.uint8 else 1.0)
    return np.clip(c, 0, 1)
