"""Shared helpers of the readers: polygon triangulation, mesh validation against `Limits`.

Every reader ends with :func:`finish_mesh`, so all formats give the same guarantees: float32
vertices that are finite and not degenerate, int64 triangles in range, counts within limits.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from affectvlm.errors import InputError
from affectvlm.limits import Limits, default_limits
from affectvlm.mesh import Mesh


def get_limits(limits: Limits | None) -> Limits:
    return default_limits() if limits is None else limits


def check_size(n_bytes: int, limits: Limits, source: str) -> None:
    """Reject empty input and input over ``limits.max_file_bytes`` (call before reading a file)."""
    if n_bytes == 0:
        raise InputError(source, "file is empty")
    if n_bytes > limits.max_file_bytes:
        raise InputError(source, f"file is {n_bytes / 2**20:.1f} MiB, over the limit of "
                                 f"{limits.max_file_bytes / 2**20:.1f} MiB (AFFECTVLM_MAX_FILE_MB)")


def check_counts(n_vertices: int, n_faces: int, limits: Limits, source: str) -> None:
    """Reject vertex/face counts over the limits (also used on counts a header merely claims)."""
    if n_vertices > limits.max_vertices:
        raise InputError(source, f"{n_vertices} vertices, over the limit of {limits.max_vertices} "
                                 "(AFFECTVLM_MAX_VERTICES)")
    if n_faces > limits.max_faces:
        raise InputError(source, f"{n_faces} faces, over the limit of {limits.max_faces} (AFFECTVLM_MAX_FACES)")


def fan_positions(index: np.ndarray, source: str, what: str = "coordIndex") -> tuple[np.ndarray, np.ndarray]:
    """Fan-triangulate ``-1``-terminated polygons of any size.

    Returns ``(tri_pos, index)``: ``tri_pos`` (T, 3) are positions into ``index`` (which gets a final
    ``-1`` appended when missing), so the same positions also pick per-corner texture indices.
    """
    index = np.asarray(index, dtype=np.int64).ravel()
    if index.size == 0:
        return np.zeros((0, 3), np.int64), index
    if index[-1] != -1:
        index = np.append(index, -1)
    if (index < -1).any():
        raise InputError(source, f"{what} holds a negative index other than the -1 polygon terminator")
    ends = np.flatnonzero(index == -1)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lens = ends - starts
    keep = lens >= 3
    starts, lens = starts[keep], lens[keep]
    ntri = lens - 2
    total = int(ntri.sum())
    if total == 0:
        return np.zeros((0, 3), np.int64), index
    first = np.repeat(starts, ntri)
    k = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(ntri) - ntri, ntri) + 1
    return np.stack([first, first + k, first + k + 1], axis=1), index


def finish_mesh(vertices: np.ndarray, faces: np.ndarray, source: str, limits: Limits | None = None, *,
                face_uv: np.ndarray | None = None, texture: np.ndarray | None = None,
                vertex_colors: np.ndarray | None = None, meta: dict[str, Any] | None = None) -> Mesh:
    """Validate and convert to the `Mesh` contract; raises `InputError` naming ``source``."""
    limits = get_limits(limits)
    v = np.asarray(vertices)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3:
        raise InputError(source, f"vertices have shape {v.shape}, expected (N, 3)")
    if f.size == 0:
        raise InputError(source, "the file holds no faces (a point cloud or an empty mesh)")
    if f.ndim != 2 or f.shape[1] != 3:
        raise InputError(source, f"faces have shape {f.shape}, expected (F, 3) triangles")
    check_counts(len(v), len(f), limits, source)
    if len(v) < 3:
        raise InputError(source, f"only {len(v)} vertices")
    v = v.astype(np.float32, copy=False)
    if not np.isfinite(v).all():
        bad = int((~np.isfinite(v).all(axis=1)).sum())
        raise InputError(source, f"{bad} vertices have non-finite coordinates (NaN or infinity)")
    f = f.astype(np.int64, copy=False)
    lo, hi = int(f.min()), int(f.max())
    if lo < 0 or hi >= len(v):
        raise InputError(source, f"face index out of range: indices span {lo}..{hi} but there are {len(v)} vertices")
    if len(v) >= 2 * len(f):
        v, f, vertex_colors, meta = _weld(v, f, vertex_colors, meta)
    # Degenerate: zero extent, or every vertex on one line (no triangle has area).
    used = v[np.unique(f)] if len(v) > 3 * len(f) else v
    ext = used.max(axis=0).astype(np.float64) - used.min(axis=0)
    scale = float(ext.max())
    if not scale > 0:
        raise InputError(source, "degenerate mesh: all vertices are at one point (zero extent)")
    p = used.astype(np.float64) - used.mean(axis=0)
    sv = np.linalg.svd(p[:: max(1, len(p) // 20000)], compute_uv=False)
    if sv[1] <= 1e-7 * sv[0]:
        raise InputError(source, "degenerate mesh: all vertices lie on one line")
    if face_uv is not None:
        face_uv = np.asarray(face_uv, dtype=np.float32)
        if face_uv.shape != (len(f), 3, 2) or not np.isfinite(face_uv).all():
            face_uv = None
    if texture is not None:
        texture = np.ascontiguousarray(texture, dtype=np.uint8)
    if vertex_colors is not None:
        vertex_colors = np.asarray(vertex_colors)
        if vertex_colors.shape[0] != len(v) or vertex_colors.ndim != 2 or vertex_colors.shape[1] < 3:
            vertex_colors = None
        else:
            vertex_colors = np.ascontiguousarray(vertex_colors[:, :3], dtype=np.uint8)
    return Mesh(vertices=np.ascontiguousarray(v), faces=np.ascontiguousarray(f), face_uv=face_uv, texture=texture,
                vertex_colors=vertex_colors, source=str(source), meta=dict(meta or {}))


def _weld(v: np.ndarray, f: np.ndarray, colors: np.ndarray | None, meta: dict[str, Any] | None
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict[str, Any] | None]:
    """A triangle soup (STL, and some exporters: every triangle with corners of its own) with the corners that sit
    at one point made one vertex, as the file means them: unwelded, no two triangles share an edge, so normals,
    winding, holes and the vertex cap see 3 vertices per triangle."""
    uniq, first, inverse = np.unique(v, axis=0, return_index=True, return_inverse=True)
    if len(uniq) == len(v):
        return v, f, colors, meta
    order = np.argsort(first)  # the kept vertices in the file's order (each point's first corner), not sorted
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    keep = first[order]
    if colors is not None and np.asarray(colors).shape[:1] == (len(v),):
        colors = np.asarray(colors)[keep]
    meta = {**(meta or {}), "welded_vertices": int(len(v) - len(uniq))}
    return v[keep], rank[inverse.reshape(-1)][f], colors, meta


def check_face(mesh: Mesh, limits: Limits | None = None) -> Mesh:
    """Refuse a mesh too small or too flat to be a face scan (`InputError`); scoring it would be noise.

    Too small: fewer than ``limits.min_face_vertices`` vertices. Too flat or thin: the second or third
    principal extent under 1/1000 of the largest (a plane, a strip, a line).
    """
    if mesh.meta.get("load_error"):  # a frame of a sequence that could not be read
        raise InputError(mesh.source, mesh.meta["load_error"])
    limits = get_limits(limits)
    n = len(mesh.vertices)
    if n < limits.min_face_vertices:
        raise InputError(mesh.source, f"only {n} vertices: too small to be a face scan "
                                      f"(at least {limits.min_face_vertices}, AFFECTVLM_MIN_FACE_VERTICES)")
    v = np.asarray(mesh.vertices, np.float64)
    p = v[:: max(1, n // 20000)]
    sv = np.linalg.svd(p - p.mean(axis=0), compute_uv=False)
    if not sv[0] > 0 or sv[1] < 1e-3 * sv[0]:
        raise InputError(mesh.source, "degenerate extent: the vertices lie (nearly) on one line, not a face")
    if sv[2] < 1e-3 * sv[0]:
        raise InputError(mesh.source, "degenerate extent: the mesh is flat (all vertices in one plane), not a face")
    return mesh
