"""Consistent triangle winding: faces that share an edge run along it in opposite directions.

Scans merged from several views, or written by tools that do not keep winding, mix triangles wound either way.
Area-weighted vertex normals cancel where the two kinds meet, so the shading speckles, and holes are filled with
the wrong side out. Each edge-connected patch is wound one way here, the way most of its area already is.

``trimesh.repair.fix_winding`` does the same by a breadth-first walk in Python; this propagates the flips along a
spanning tree (scipy) with pointer doubling, which is much faster (``bench/bench_winding.py`` compares the two).
"""
from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import breadth_first_order, connected_components

from affectvlm.holes import directed_edges


def _shared_edges(f: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Face pairs (a, b) that share an edge used by exactly those two faces, and whether they run along it in
    the same direction (so one of the two must be flipped)."""
    n_faces = len(f)
    e = directed_edges(f)
    lo, hi = e.min(1), e.max(1)
    key = lo * (int(hi.max()) + 1) + hi
    order = np.argsort(key, kind="stable")
    ks = key[order]
    first = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
    counts = np.diff(np.r_[first, len(ks)])
    pair = first[counts == 2]
    ea, eb = order[pair], order[pair + 1]
    a, b = ea % n_faces, eb % n_faces
    same = (e[ea, 0] < e[ea, 1]) == (e[eb, 0] < e[eb, 1])
    corners = np.sort(f, axis=1)
    # a degenerate triangle can use one edge twice; a triangle listed twice (either way round) shares its rim
    # edges with its copy: joined, one copy would be turned over and their normals would cancel
    keep = (a != b) & (corners[a] != corners[b]).any(axis=1)
    return a[keep], b[keep], same[keep]


def _some_edge_twice(f: np.ndarray) -> bool:
    """Whether a directed edge is used twice: never on a consistently wound manifold (its shared edges run both
    ways), so most scans stop at this one sort."""
    e = directed_edges(f)
    keys = np.sort(e[:, 0] * (int(f.max()) + 1) + e[:, 1], kind="stable")  # timsort: linear on the runs scans keep
    return bool((keys[1:] == keys[:-1]).any())


def consistent_winding(faces: np.ndarray, areas: np.ndarray | None = None) -> np.ndarray:
    """Which faces to flip (bool, one per face) so that every edge-connected patch is wound consistently.

    Within a patch the larger share of ``areas`` (or of faces, without areas) keeps its winding. Edges of more
    than two faces join nothing; a patch that cannot be wound one way (a Moebius band) keeps a spanning tree's
    choice."""
    f = np.asarray(faces, dtype=np.int64)
    n = len(f)
    flip = np.zeros(n, dtype=bool)
    if n < 2 or not _some_edge_twice(f):
        return flip
    a, b, same = _shared_edges(f)
    if not same.any():
        return flip
    # spanning forest: one extra node (n) joined to one face of every patch, so one walk reaches every face
    adj = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    n_patch, patch = connected_components(adj, directed=False)
    reps = np.unique(patch, return_index=True)[1]
    rows = np.concatenate([a, np.full(len(reps), n)])
    cols = np.concatenate([b, reps])
    tree = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n + 1, n + 1)).tocsr()
    _, pred = breadth_first_order(tree, n, directed=False, return_predecessors=True)
    pred[n] = n
    # whether each face is wound against its parent in the tree (a shared edge run the same way)
    pair_key = np.minimum(a, b) * (n + 1) + np.maximum(a, b)
    sort = np.argsort(pair_key, kind="stable")
    nodes = np.arange(n)
    want = np.minimum(nodes, pred[:n]) * (n + 1) + np.maximum(nodes, pred[:n])
    pos = np.clip(np.searchsorted(pair_key[sort], want), 0, len(sort) - 1)
    found = pair_key[sort][pos] == want
    rel = np.zeros(n + 1, dtype=bool)
    rel[:n] = found & same[sort][pos]
    # flips relative to the root: xor along the path, by pointer doubling
    up = pred.copy()
    while (up != n).any():
        rel = rel ^ rel[up]
        up = up[up]
    flip = rel[:n]
    w = np.ones(n) if areas is None else np.asarray(areas, dtype=np.float64)
    flipped_share = np.bincount(patch, weights=w * flip, minlength=n_patch)
    total = np.bincount(patch, weights=w, minlength=n_patch)
    return flip ^ (flipped_share > 0.5 * total)[patch]


def apply_flips(faces: np.ndarray, face_uv: np.ndarray | None, flip: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """``faces`` (and ``face_uv``) with the flagged triangles' second and third corners swapped (new arrays)."""
    faces = np.array(faces, copy=True)
    faces[flip] = faces[flip][:, [0, 2, 1]]
    if face_uv is not None:
        face_uv = np.array(face_uv, copy=True)
        face_uv[flip] = face_uv[flip][:, [0, 2, 1]]
    return faces, face_uv
