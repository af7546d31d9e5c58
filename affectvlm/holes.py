"""Closing a scan's small holes (scanner drop-outs) before it is rendered.

A hole is a closed loop of boundary edges (edges that belong to one face). A loop whose size, half the diagonal
of its bounding box (about the radius of a sphere around it), is at most ``max_size`` is closed by a fan of
triangles around one new vertex at the loop's mean, each wound like the face it meets. Larger loops stay open:
the scan's rim and, on a face scaled to unit radius with ``max_size`` below about 0.1, the mouth and the eyes.
"""
from __future__ import annotations

import numpy as np

from affectvlm.errors import ConfigError
from affectvlm.mesh import Mesh

# corner pairs of a triangle's three directed edges, in the order directed_edges numbers them
_EDGE_CORNERS = ((0, 1), (1, 2), (2, 0))
# the largest hole size the render setting ``fill_holes`` takes, as a fraction of the face's radius (the rim is ~1)
MAX_FILL_HOLES = 0.5


def check_fill_holes(value: object) -> float:
    """The render setting ``fill_holes`` as a float in [0, :data:`MAX_FILL_HOLES`]; ConfigError otherwise."""
    if (isinstance(value, bool) or not isinstance(value, (int, float, np.floating))
            or not 0.0 <= float(value) <= MAX_FILL_HOLES):
        raise ConfigError(f"fill_holes must be a number in [0, {MAX_FILL_HOLES}] (a fraction of the face's radius), "
                          f"got {value!r}")
    return float(value)


def directed_edges(faces: np.ndarray) -> np.ndarray:
    """(3F, 2) directed edges ``[f[:, (0, 1)], f[:, (1, 2)], f[:, (2, 0)]]``: edge ``k`` belongs to face ``k % F``."""
    f = np.asarray(faces, dtype=np.int64)
    return np.concatenate([f[:, list(c)] for c in _EDGE_CORNERS])


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Closed loops of boundary edges, each as indices into :func:`directed_edges`, in the faces' winding order.

    At a vertex where two holes meet (or a hole meets the rim) the walk goes on along the boundary edge reached by
    turning through the faces around that vertex, and is then split there, so each hole is a loop of its own."""
    f = np.asarray(faces, dtype=np.int64)
    if f.size == 0:
        return []
    n_faces = len(f)
    e = directed_edges(f)
    n = int(e.max()) + 1
    directed = e[:, 0] * n + e[:, 1]
    order = np.argsort(directed, kind="stable")
    lo, hi = e.min(1), e.max(1)
    _, inverse, counts = np.unique(lo * n + hi, return_inverse=True, return_counts=True)
    boundary = counts[inverse.ravel()] == 1
    edges = np.flatnonzero(boundary)
    if len(edges) == 0:
        return []

    def next_in_face(k: np.ndarray) -> np.ndarray:
        return (k + n_faces) % (3 * n_faces)

    def twin(k: np.ndarray) -> np.ndarray:
        want = e[k, 1] * n + e[k, 0]
        pos = np.minimum(np.searchsorted(directed, want, sorter=order), len(order) - 1)
        hit = order[pos]
        return np.where(directed[hit] == want, hit, -1)

    # the boundary edge that leaves each boundary edge's end: turn through the faces around that vertex
    succ = np.full(3 * n_faces, -1, dtype=np.int64)
    cur, todo = next_in_face(edges), edges
    for _ in range(64):
        done = boundary[cur]
        succ[todo[done]] = cur[done]
        cur, todo = cur[~done], todo[~done]
        t = twin(cur)
        cur, todo = next_in_face(t[t >= 0]), todo[t >= 0]  # a non-manifold edge ends the turn: no successor
        if len(todo) == 0:
            break
    loops, seen = [], np.zeros(3 * n_faces, dtype=bool)
    for first in edges:
        if seen[first]:
            continue
        loop, k = [], int(first)
        while k >= 0 and not seen[k]:
            seen[k] = True
            loop.append(k)
            k = int(succ[k])
        if k == first:
            loops += _simple_cycles(loop, e)
    return loops


def _simple_cycles(loop: list[int], e: np.ndarray) -> list[np.ndarray]:
    """A closed walk of edges split where it passes a vertex again (two holes, or a hole and the rim, that meet at
    a vertex make one walk like a figure eight) into loops that pass each vertex once."""
    out, stack, pos = [], [], {}
    for k in loop:
        a = int(e[k, 0])
        if a in pos:
            p = pos[a]
            out.append(np.asarray(stack[p:], dtype=np.int64))
            for j in stack[p:]:
                pos.pop(int(e[j, 0]), None)
            del stack[p:]
        pos[a] = len(stack)
        stack.append(k)
    if stack:
        out.append(np.asarray(stack, dtype=np.int64))
    return out


def fill_holes(mesh: Mesh, max_size: float) -> Mesh:
    """``mesh`` with every hole of size at most ``max_size`` (mesh units) closed; the mesh itself when none is.

    New vertices are appended (existing indices keep their meaning); per-corner uv and vertex colours of the new
    vertex are the loop's means. ``meta["holes_filled"]`` counts the holes closed."""
    if not (np.isfinite(max_size) and max_size >= 0):
        raise ConfigError(f"the hole size must be a number >= 0, got {max_size!r}")
    if max_size == 0:
        return mesh
    v = np.asarray(mesh.vertices)
    f = np.asarray(mesh.faces, dtype=np.int64)
    e = directed_edges(f)
    chosen, centres = [], []
    for loop in boundary_loops(f):
        p = v[e[loop, 0]]
        if len(loop) >= 3 and np.linalg.norm(p.max(0) - p.min(0)) / 2 <= max_size:
            chosen.append(loop)
            centres.append(p.mean(0))
    if not chosen:
        return mesh
    n_faces, n_vertices = len(f), len(v)
    centre_id = np.concatenate([np.full(len(loop), n_vertices + i) for i, loop in enumerate(chosen)])
    edge_ids = np.concatenate(chosen)
    # the new face across edge a->b runs b->a, then to the loop's new centre vertex
    new_faces = np.stack([e[edge_ids, 1], e[edge_ids, 0], centre_id], 1)
    out = Mesh(vertices=np.concatenate([v, np.stack(centres).astype(v.dtype)]), faces=np.concatenate([f, new_faces]),
               texture=mesh.texture, source=mesh.source, meta=dict(mesh.meta))
    if mesh.vertex_colors is not None:
        col = np.asarray(mesh.vertex_colors)
        mean = np.stack([col[e[loop, 0]].astype(np.float64).mean(0) for loop in chosen])
        out.vertex_colors = np.concatenate([col, np.round(mean).astype(col.dtype)])
    if mesh.face_uv is not None:
        uv = np.asarray(mesh.face_uv)
        face, which = edge_ids % n_faces, edge_ids // n_faces
        corners = np.asarray(_EDGE_CORNERS)[which]  # (k, 2): the corners of a and b in their face
        uv_a, uv_b = uv[face, corners[:, 0]], uv[face, corners[:, 1]]
        bounds = np.cumsum([0] + [len(loop) for loop in chosen])
        mean_uv = np.stack([uv_a[s:t].mean(0) for s, t in zip(bounds[:-1], bounds[1:])])
        uv_c = np.repeat(mean_uv, np.diff(bounds), axis=0)
        out.face_uv = np.concatenate([uv, np.stack([uv_b, uv_a, uv_c], 1).astype(uv.dtype)])
    out.meta["holes_filled"] = len(chosen)
    return out
