"""Geometry helpers: put a face scan in the canonical frame, vertex normals, and display helpers
(texture sampled to vertex colours, decimation for a preview).

Canonical frame (what :func:`canonicalise` returns and what the renderer's camera expects):
the face looks toward **+Z** (the camera sits on +Z), **+Y** is up, **+X** is the viewer's right
(= the face's own left). The mesh is centred on its bounding-box centre and scaled so that every
vertex used by a face lies within ``target_scale`` of the origin (so any yaw/pitch stays in view).

Orientation detection (each step can be overridden with an axis string ``"+x" ... "-z"``):

* depth axis: smallest principal axis of the surface (area-weighted PCA of face centroids); a
  cropped face is wider and taller than it is deep. The whole frame snaps to the file's axes (an
  exact signed axis permutation, never a small tilt) when that axis is within 30 degrees of a file
  axis, or within 42 degrees while another principal axis (usually left-right, the symmetry axis)
  is within 15 degrees of one: deep crops (cheeks, jaw, neck) tilt the depth axis by 20-35 degrees.
* front sign: scans are open surfaces whose rim lies behind the face, so the front is the side of
  the depth axis away from the boundary vertices; closed meshes fall back to where the most
  protruding point (nose tip) sits, then to the mean normal.
* up axis: the longer of the two remaining axes (faces are taller than wide).
* up sign: a vote of clipped, normalised cues: depressions (eye sockets) lie above the face centre,
  at four grid/window scales (open mouths and nostrils add pits below); the nose ridge between the
  eye sockets stands out of its row more than the lips below the nose tip (two scales); weakly, the
  forehead is wider than the chin. When the vote is weak the file's positive axis wins.
* ``meta["canonical"]["confidence"]``: ``{"front": c, "up": c}`` in [0, 1] for the detected parts,
  and ``"low_confidence": True`` when either is below 0.45 (an app should say "orientation guessed;
  fix it with up/front"). The cue scales were tuned on synthetic BU-3DFE-layout scans (ICT-FaceKit,
  +Y up); how often the cues and the face-frame network are right, wrong or flagged: ``bench/bench_frame.py``
  and its table in the README.

The transform is recorded in ``mesh.meta["canonical"]`` (JSON-serialisable): new = scale * R @ (v - centre).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from affectvlm.errors import ConfigError, InputError
from affectvlm.mesh import Mesh
from affectvlm.winding import apply_flips, consistent_winding

__all__ = ["canonicalise", "vertex_normals", "parse_axis", "parse_frame_axes", "axis_name", "face_areas", "boundary_edges",
           "texture_vertex_colors", "decimate", "flag_threshold"]

_AXES = {"x": 0, "y": 1, "z": 2}
_SNAP_COS = float(np.cos(np.deg2rad(30.0)))
_SNAP_COS_TIGHT = float(np.cos(np.deg2rad(15.0)))
_SNAP_COS_LOOSE = float(np.cos(np.deg2rad(42.0)))


def parse_axis(name: str, what: str = "axis") -> np.ndarray:
    """``"+y"``/``"-z"``/``"x"`` -> unit vector (float64). Raises ConfigError for anything else."""
    s = str(name).strip().lower()
    sign = 1.0
    if s[:1] in "+-" and len(s) == 2:
        sign, s = (1.0 if s[0] == "+" else -1.0), s[1:]
    if s not in _AXES:
        raise ConfigError(f"{what} must be one of +x, -x, +y, -y, +z, -z (got {name!r})")
    v = np.zeros(3)
    v[_AXES[s]] = sign
    return v


def parse_frame_axes(up: str | None, front: str | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``up`` and ``front`` as unit vectors (None where not given); both given must be different axes."""
    up_v = parse_axis(up, "up") if up is not None else None
    front_v = parse_axis(front, "front") if front is not None else None
    if up_v is not None and front_v is not None and abs(up_v @ front_v) > 0.5:
        raise ConfigError(f"up ({up}) and front ({front}) must be different axes")
    return up_v, front_v


def axis_name(v: np.ndarray) -> str | list[float]:
    """Name of a (near) coordinate-axis unit vector, e.g. ``"-z"``; other vectors as a rounded list."""
    v = np.asarray(v, dtype=np.float64)
    i = int(np.argmax(np.abs(v)))
    if abs(abs(v[i]) - 1.0) < 1e-6:
        return ("+" if v[i] > 0 else "-") + "xyz"[i]
    return [round(float(c), 6) for c in v]


def vertex_normals(vertices, faces):
    """Area-weighted unit vertex normals (sum of the faces' cross products, then normalised).

    Accepts numpy arrays (returns float32 numpy) or torch tensors (returns a tensor on the same
    device, float32). Vertices used by no face (or only degenerate ones) get a zero normal.
    """
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency, numpy path still works
        torch = None
    if torch is not None and isinstance(vertices, torch.Tensor):
        v = vertices.to(torch.float32)
        f = torch.as_tensor(faces, device=v.device, dtype=torch.int64)
        tri = v[f]
        fn = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=1)
        n = torch.zeros_like(v)
        n.index_add_(0, f.reshape(-1), fn.repeat_interleave(3, dim=0))
        return n / n.norm(dim=1, keepdim=True).clamp_min(1e-20)
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    tri = v[f]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n = np.zeros_like(v)
    for k in range(3):
        _bincount_add(n, f[:, k], fn)
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    return (n / np.maximum(norm, 1e-300)).astype(np.float32)


def _bincount_add(out: np.ndarray, idx: np.ndarray, vals: np.ndarray) -> None:
    for c in range(out.shape[1]):
        out[:, c] += np.bincount(idx, weights=vals[:, c], minlength=out.shape[0])


def face_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Triangle areas (float64)."""
    tri = np.asarray(vertices, dtype=np.float64)[faces]
    return 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)


def _validate(mesh: Mesh) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(mesh.vertices)
    f = np.asarray(mesh.faces)
    src = mesh.source
    if v.ndim != 2 or v.shape[1] != 3 or v.shape[0] == 0:
        raise InputError(src, f"vertices must be a non-empty (N, 3) array, got shape {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3 or f.shape[0] == 0:
        raise InputError(src, f"faces must be a non-empty (F, 3) array of triangles, got shape {f.shape}")
    if not np.issubdtype(f.dtype, np.integer):
        raise InputError(src, f"face indices must be integers, got {f.dtype}")
    if f.min() < 0 or f.max() >= v.shape[0]:
        raise InputError(src, f"face indices out of range [0, {v.shape[0]}): min {f.min()}, max {f.max()}")
    v = v.astype(np.float64)
    finite = np.isfinite(v).all(axis=1)
    if not finite[f.reshape(-1)].all():
        raise InputError(src, "vertex coordinates contain NaN or infinity")
    v[~finite] = 0.0  # unused vertices: harmless placeholder
    return v, f.astype(np.int64)


def boundary_edges(faces: np.ndarray) -> np.ndarray:
    """(E, 2) vertex pairs (smaller id first) of the edges used by exactly one face."""
    f = np.asarray(faces, dtype=np.int64)
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    lo, hi = e.min(1), e.max(1)
    n = int(hi.max()) + 1
    uniq, counts = np.unique(lo * n + hi, return_counts=True)
    single = uniq[counts == 1]
    return np.stack([single // n, single % n], 1)


def _boundary_vertices(faces: np.ndarray) -> np.ndarray:
    """Indices of vertices on edges used by exactly one face (the rim of an open scan)."""
    return np.unique(boundary_edges(faces))


def _front_sign(P: np.ndarray, d: np.ndarray, faces: np.ndarray, fnormals: np.ndarray,
                used: np.ndarray) -> tuple[float, str, float]:
    """Sign (+1/-1) along depth axis ``d`` of the face's front; also the cue used and its strength."""
    t_all = P @ d
    t = t_all[used]
    span = float(t.max() - t.min()) or 1.0
    rim = _boundary_vertices(faces)
    if rim.size >= 3:
        mean_t = float(t.mean())
        diff = (mean_t - float(t_all[rim].mean())) / span
        if abs(diff) > 0.02:
            return (1.0 if diff > 0 else -1.0), "rim_behind", abs(diff)
    med = float(np.median(t))
    prot = (float(t.max()) - med) - (med - float(t.min()))
    if abs(prot) / span > 0.05:
        return (1.0 if prot > 0 else -1.0), "protrusion", abs(prot) / span
    mn = float((fnormals @ d).sum() / max(np.linalg.norm(fnormals, axis=1).sum(), 1e-300))
    return (1.0 if mn >= 0 else -1.0), "mean_normal", abs(mn)


# Up-sign cues, each divided by its typical magnitude on correctly oriented scans (measured on the
# synthetic BU-3DFE set and tests/meshgen.py faces) and clipped, so no single cue can outvote the rest.
_PIT_SCALES = ((48, 11, 0.0, 0.14), (48, 7, 0.0, 0.10), (48, 11, 0.15, 0.16), (40, 9, 0.0, 0.15))
_RIDGE_SCALES = ((64, 17, 0.04), (48, 13, 0.03))
_CUE_CAP = 1.5
_WIDTH_SCALE, _WIDTH_CAP = 0.15, 0.4  # crop-dependent (a crop may include a wide jaw/neck): weak vote
_UP_MIN_SCORE = 0.5  # below this the file's positive axis wins
_LOW_CONFIDENCE = 0.45
_TILT_MARGIN = 3.0  # network logits: how much more upright a principal frame must look than the file's axes


def _front_confidence(how: str, strength: float) -> float:
    """Confidence in [0, 1] of the front sign: the rim-behind cue is reliable once clear."""
    if how == "rim_behind":
        return float(np.clip(strength / 0.08, 0.0, 1.0))
    if how == "protrusion":
        return float(np.clip(strength / 0.3, 0.0, 0.6))
    return float(np.clip(strength, 0.0, 0.3))


def _up_sign(P: np.ndarray, up: np.ndarray, side: np.ndarray, front: np.ndarray,
             prior: float) -> tuple[float, dict[str, float], float]:
    """Sign along ``up`` (+1 keeps it), the cues, and a confidence in [0, 1].

    A vote of clipped, normalised cues: (a) depressions (eye sockets) lie above the face centre,
    measured at several grid/window scales because open mouths and nostrils add pits below;
    (b) the nose ridge between the eye sockets stands out of its row more than the lips do below
    the nose tip; (c) weakly, the forehead is wider than the chin.
    """
    u, s, t = P @ up, P @ side, P @ front
    lo, hi = float(u.min()), float(u.max())
    rng = (hi - lo) or 1.0
    top, bot = u > hi - 0.25 * rng, u < lo + 0.25 * rng

    def width(m: np.ndarray) -> float:
        if m.sum() < 4:
            return 0.0
        q = np.quantile(s[m], [0.02, 0.98])
        return float(q[1] - q[0])

    wt, wb = width(top), width(bot)
    width_cue = float(np.log((wt + 1e-9) / (wb + 1e-9))) if wt > 0 and wb > 0 else 0.0
    srng = (float(s.max() - s.min()) or 1.0) / 2
    uc = (u - (lo + hi) / 2) / (rng / 2)
    sc = (s - (float(s.max()) + float(s.min())) / 2) / srng
    tspan = float(t.max() - t.min()) or 1.0
    pits = [_pit_centroid(uc, sc, t, G, k, off) for G, k, off, _ in _PIT_SCALES]
    ridges = [_ridge_cue(uc, sc, t / tspan, G, k) for G, k, _ in _RIDGE_SCALES]
    votes = [float(np.clip(c / sc_, -_CUE_CAP, _CUE_CAP)) for c, (*_, sc_) in zip(pits, _PIT_SCALES)]
    votes += [float(np.clip(c / sc_, -_CUE_CAP, _CUE_CAP)) for c, (*_, sc_) in zip(ridges, _RIDGE_SCALES)]
    votes.append(float(np.clip(width_cue / _WIDTH_SCALE, -_WIDTH_CAP, _WIDTH_CAP)))
    score = float(sum(votes))
    max_score = _CUE_CAP * (len(votes) - 1) + _WIDTH_CAP
    cues = {"width_log_ratio": round(width_cue, 4), "concavity_centroid": round(pits[0], 4),
            "nose_ridge": round(ridges[0], 4), "votes": [round(x, 3) for x in votes], "score": round(score, 4)}
    if abs(score) < _UP_MIN_SCORE:
        return prior, cues, 0.0
    sign = 1.0 if score > 0 else -1.0
    agree = sum(abs(x) for x in votes if x * sign > 0) / max(sum(abs(x) for x in votes), 1e-12)
    # confidence: margin of the vote, discounted when cues disagree
    conf = float(np.clip(abs(score) / (0.5 * max_score), 0.0, 1.0) * agree)
    return sign, cues, conf


def _height_map(uc: np.ndarray, sc: np.ndarray, t: np.ndarray, G: int) -> np.ndarray:
    """Max of ``t`` per cell of a G x G grid over uc, sc in [-1, 1] (rows = uc); -inf where empty."""
    iu = np.clip(((uc + 1) / 2 * G).astype(np.int64), 0, G - 1)
    js = np.clip(((sc + 1) / 2 * G).astype(np.int64), 0, G - 1)
    H = np.full((G, G), -np.inf)
    np.maximum.at(H, (iu, js), t)
    return H


def _pit_centroid(uc: np.ndarray, sc: np.ndarray, t: np.ndarray, G: int = 48, k: int = 11,
                  off_mid: float = 0.0) -> float:
    """Centroid along ``uc`` (in [-1, 1]) of depressions of the height field ``t(uc, sc)``.

    Depressions = morphological closing (flat k x k window) minus the surface: convex parts (dome,
    nose) are left unchanged by a closing, pits narrower than the window are filled. ``off_mid``
    ignores cells with |sc| below it (the midline: mouth, nostrils).
    """
    from numpy.lib.stride_tricks import sliding_window_view as swv

    H = _height_map(uc, sc, t, G)
    inside = np.isfinite(H)
    p = k // 2
    dil = swv(np.pad(H, p, constant_values=-np.inf), (k, k)).max(axis=(-1, -2))
    dil = np.where(np.isfinite(dil), dil, np.inf)  # windows with no surface do not constrain
    ero = swv(np.pad(dil, p, constant_values=np.inf), (k, k)).min(axis=(-1, -2))
    cell = (np.arange(G) + 0.5) / G * 2 - 1
    UU, SS = np.meshgrid(cell, cell, indexing="ij")
    keep = inside & (UU**2 + SS**2 < 0.8**2) & (np.abs(SS) >= off_mid)
    D = np.where(keep, np.clip(ero - H, 0.0, None), 0.0)
    D = np.nan_to_num(D, nan=0.0, posinf=0.0)
    tot = float(D.sum())
    return float((D.sum(axis=1) * cell).sum() / tot) if tot > 0 else 0.0


def _ridge_cue(uc: np.ndarray, sc: np.ndarray, t: np.ndarray, G: int = 64, k: int = 17) -> float:
    """How much more the midline stands out of its row above the nose tip than below it.

    Nose tip = the cell most raised above its k x k neighbourhood mean in the central region. Per
    row, prominence = midline height minus the mean height 0.15-0.35 (of the half width) to the
    sides; rows 0.05-0.25 above the tip (bridge between the eye sockets) minus rows as far below
    (upper lip). ``t`` should be normalised to a unit span.
    """
    from numpy.lib.stride_tricks import sliding_window_view as swv

    H = _height_map(uc, sc, t, G)
    ok = np.isfinite(H)
    Hz = np.where(ok, H, 0.0)
    p = k // 2
    num = swv(np.pad(Hz, p), (k, k)).sum(axis=(-1, -2))
    den = swv(np.pad(ok.astype(np.float64), p), (k, k)).sum(axis=(-1, -2))
    cell = (np.arange(G) + 0.5) / G * 2 - 1
    UU, SS = np.meshgrid(cell, cell, indexing="ij")
    prom = np.where(ok & (np.abs(UU) < 0.6) & (np.abs(SS) < 0.4), Hz - num / np.maximum(den, 1.0), -np.inf)
    if not np.isfinite(prom).any():
        return 0.0
    i, j = np.unravel_index(int(np.argmax(prom)), prom.shape)
    dist = np.abs(cell - cell[j])
    sides = (dist >= 0.15) & (dist <= 0.35)
    cnt = (ok & sides[None, :]).sum(1)
    side_mean = np.where(cnt > 0, (Hz * sides[None, :]).sum(1) / np.maximum(cnt, 1), np.nan)
    row = np.where(ok[:, j] & (cnt > 0), Hz[:, j] - side_mean, np.nan)
    a, b = int(round(0.05 * G / 2)), int(round(0.25 * G / 2))
    above = [row[i + d] for d in range(a, b + 1) if i + d < G]
    below = [row[i - d] for d in range(a, b + 1) if i - d >= 0]
    above = [x for x in above if np.isfinite(x)]
    below = [x for x in below if np.isfinite(x)]
    if not above or not below:
        return 0.0
    return float(np.mean(above) - np.mean(below))


def _candidate_fronts(est) -> np.ndarray:
    from affectvlm.faceframe import candidate_axes

    return candidate_axes(est.meta["basis"])[0]


def _net_frame(v: np.ndarray, f: np.ndarray, evecs: np.ndarray, up_v, front_v):
    """The face-frame network's choice among the 24 candidates of the file axes (or, for a scan tilted away
    from them, of its principal axes), restricted to any axis the user fixed; (None, False) without weights."""
    from affectvlm.faceframe import candidate_axes, estimate_frame

    def run(basis: np.ndarray):
        fronts, ups = candidate_axes(basis)
        allowed = np.ones(24, dtype=bool)
        if front_v is not None:
            allowed &= np.isclose(fronts @ front_v, 1.0)
        if up_v is not None:
            allowed &= np.isclose(ups @ up_v, 1.0)
        est = estimate_frame(v, f, basis, allowed=allowed)
        if est is not None:
            est.meta["basis"] = basis
        return est

    est = run(np.eye(3))
    if est is None or up_v is not None or front_v is not None:
        return est, True
    # a scan tilted away from its file's axes: when no file-axis candidate is clearly upright, its principal
    # frame wins if clearly more face-like (a confident file-axis answer is kept: a face seen 45 degrees
    # from the side still scores high)
    pca = evecs.T.copy()
    if np.linalg.det(pca) < 0:
        pca[0] *= -1
    if est.low_confidence and np.abs(pca).max(axis=1).min() < _SNAP_COS:
        alt = run(pca)
        if alt is not None and alt.meta["logit"] > est.meta["logit"] + _TILT_MARGIN:
            # flagged whatever its own confidence: no file-axis frame was clearly upright, and a principal
            # frame's confident answer can be tens of degrees off (unseen face models tilted back)
            alt.low_confidence = True
            return alt, False
    return est, True


def canonicalise(mesh: Mesh, *, up: str | None = None, front: str | None = None,
                 target_scale: float = 1.0, method: str = "auto", crop: bool = False,
                 landmarks: bool = False) -> Mesh:
    """Return a new Mesh centred, scaled to radius ``target_scale`` and rotated to the canonical frame.

    ``up``/``front`` name the file axes (``"+y"``, ``"-z"``, ...) that point up / toward the viewer,
    overriding detection. Faces, uv, texture and colours are shared (not copied); vertices are new. Faces (and
    uv) wound against the rest of their patch are turned over first (:mod:`affectvlm.winding`; ``rewound_faces``
    in the meta).
    ``method``: ``"net"`` (the embedded face-frame network, :mod:`affectvlm.faceframe`, which also gives
    3D landmarks), ``"cues"`` (the geometric cues described in this module) or ``"auto"`` (the network when
    its weights are installed). ``crop``: keep only the face region around the network's landmarks (brows
    to chin plus a forehead band, jaw to jaw; drops neck, scalp, ears and shoulders) as BU-3DFE's ``_F3D``
    scans are cut; without landmarks nothing is cut. ``landmarks=True`` runs the network for its landmarks even
    when ``up`` and ``front`` are both given (it always does when it detects). ``meta["canonical"]`` records the axes, which were
    detected, the cues or the network's confidence and landmarks, the crop, centre, scale and rotation.
    """
    if not (np.isfinite(target_scale) and target_scale > 0):
        raise ConfigError(f"target_scale must be a positive number, got {target_scale!r}")
    if method not in ("auto", "net", "cues"):
        raise ConfigError(f"method must be 'auto', 'net' or 'cues', got {method!r}")
    v, f = _validate(mesh)
    tri = v[f]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    w = 0.5 * np.linalg.norm(fn, axis=1)
    if w.sum() <= 0:
        raise InputError(mesh.source, "all triangles are degenerate (zero area)")
    faces_in, uv_in = mesh.faces, mesh.face_uv
    flip = consistent_winding(f, w)
    if flip.any():
        faces_in, uv_in = apply_flips(f, uv_in, flip)
        f, fn = faces_in, np.where(flip[:, None], -fn, fn)
    cent = tri.mean(axis=1)
    mu = np.sum(w[:, None] * cent, 0) / w.sum()
    C = cent - mu
    cov = (w[:, None] * C).T @ C / w.sum()
    evals, evecs = np.linalg.eigh(cov)  # ascending
    used_mask = np.zeros(len(v), dtype=bool)
    used_mask[f.reshape(-1)] = True
    used = np.flatnonzero(used_mask)
    Pv = v[used] - mu
    info: dict[str, Any] = {"detected": []}
    conf: dict[str, float] = {}

    up_v, front_v = parse_frame_axes(up, front)

    def var_along(a: np.ndarray) -> float:
        return float(a @ cov @ a)

    snapped = False
    est = None
    already = bool((mesh.meta.get("canonical") or {}).get("cropped"))
    if method != "cues" and (front_v is None or up_v is None or ((crop or landmarks) and not already)):
        est, snapped = _net_frame(v, f, evecs, up_v, front_v)
        if est is None and method == "net":
            raise ConfigError("the face-frame network's weights are not installed (use method='cues')")
    if est is not None and front_v is not None and up_v is not None:
        info["method"] = "frame-net (landmarks only)"
    elif est is not None:
        fronts_same = est.probabilities[np.isclose(_candidate_fronts(est) @ est.front, 1.0)].sum()
        if front_v is None:
            info["detected"].append("front")
            conf["front"] = float(fronts_same)
        if up_v is None:
            info["detected"].append("up")
            conf["up"] = float(est.confidence)
        front_v, up_v = est.front, est.up
        info["method"] = "frame-net"
    elif front_v is None:
        if up_v is not None:
            # depth = the smaller-extent file axis perpendicular to up
            cands = [e for e in np.eye(3) if abs(e @ up_v) < 0.5]
            d = min(cands, key=var_along)
            snapped = True
        else:
            d = evecs[:, 0]
            i = int(np.argmax(np.abs(d)))
            # one principal axis (usually the left-right symmetry axis) on a file axis means the
            # file is axis-aligned; a deep crop (cheeks, jaw) may still tilt the depth axis ~35 deg
            tight = np.abs(evecs).max(axis=0) >= _SNAP_COS_TIGHT
            if abs(d[i]) >= _SNAP_COS or (tight.any() and abs(d[i]) >= _SNAP_COS_LOOSE):
                d = np.eye(3)[i]
                snapped = True
        vd = v - mu
        vd[~used_mask] = 0.0  # unused vertices may hold anything
        sign, how, strength = _front_sign(vd, d, f, fn, used)
        front_v = sign * d
        info["detected"].append("front")
        info["front_cue"] = {"method": how, "strength": round(float(strength), 4)}
        conf["front"] = _front_confidence(how, strength)
    if up_v is None:
        if snapped or (np.abs(front_v).max() > 1 - 1e-9):
            cands = [e for e in np.eye(3) if abs(e @ front_v) < 0.5]
            u = max(cands, key=var_along)
            snapped = True
        else:
            u = evecs[:, 2] - (evecs[:, 2] @ front_v) * front_v
            u /= np.linalg.norm(u)
        side = np.cross(u, front_v)
        sign, cues, conf["up"] = _up_sign(Pv, u, side, front_v, 1.0)
        up_v = sign * u
        info["detected"].append("up")
        info["up_cue"] = cues
    up_v = up_v - (up_v @ front_v) * front_v
    up_v /= np.linalg.norm(up_v)
    x_v = np.cross(up_v, front_v)
    R = np.stack([x_v, up_v, front_v])  # rows: file vectors mapped to canonical x, y, z
    Q = v @ R.T
    faces_out, uv_out = faces_in, uv_in
    if flip.any():
        info["rewound_faces"] = int(flip.sum())
    lms = None
    if est is not None and est.landmarks is not None:  # the network's, read again on the face when they are used
        lms = _landmarks_again(Q, f, est.landmarks @ R.T) if crop or landmarks else None
        info["landmarks"] = [[round(float(c), 4) for c in p] for p in (est.landmarks if lms is None else lms @ R)]
    if crop and lms is not None:
        keep = _face_region(Q, lms)
        fk = keep[f].all(1)
        if fk.sum() >= 100 and w[fk].sum() >= 0.25 * w.sum():
            faces_out = np.asarray(faces_in)[fk]
            uv_out = None if uv_in is None else np.asarray(uv_in)[fk]
            used = np.unique(f[fk])
            info["cropped"] = True
    elif already:
        info["cropped"] = True
    Qu = Q[used]
    centre_c = (Qu.min(0) + Qu.max(0)) / 2
    radius = float(np.linalg.norm(Qu - centre_c, axis=1).max())
    if not radius > 0:
        raise InputError(mesh.source, "mesh has zero extent (all vertices coincide)")
    scale = target_scale / radius
    new_v = ((Q - centre_c) * scale).astype(np.float32)
    centre_file = R.T @ centre_c
    info.update({
        "up": axis_name(up_v), "front": axis_name(front_v), "snapped": bool(snapped),
        "centre": [float(c) for c in centre_file], "scale": float(scale),
        "rotation": [[float(c) for c in row] for row in R], "radius": float(target_scale),
    })
    if conf:
        info["confidence"] = {k: round(float(c), 3) for k, c in conf.items()}
        info["low_confidence"] = bool(est.low_confidence if est is not None
                                      else min(conf.values()) < _LOW_CONFIDENCE)
    meta = dict(mesh.meta)
    meta["canonical"] = info
    return Mesh(vertices=new_v, faces=faces_out, face_uv=uv_out, texture=mesh.texture,
                vertex_colors=mesh.vertex_colors, source=mesh.source, meta=meta)


def flag_threshold() -> float:
    """The confidence under which a guessed face frame is flagged: the installed face-frame network's calibrated
    threshold, or the geometric cues' when no network is installed."""
    from affectvlm.faceframe import load_frame_net, threshold_of

    loaded = load_frame_net()
    return _LOW_CONFIDENCE if loaded is None else threshold_of(loaded[1])


def _landmarks_again(Q: np.ndarray, f: np.ndarray, L: np.ndarray, grow: float = 1.3) -> np.ndarray:
    """The face-frame network's landmarks read again on the face alone (``Q``: the vertices in the canonical frame,
    ``L``: its first reading there): read on a whole head with scalp and neck, a face model it was not trained on
    can shift them (upward, by a fifth of the face's height, on the Rocketbox avatars' heads) and the crop with them.
    Read on the region around that first reading (its crop ellipse grown by ``grow``), the face fills the network's
    input as in a face scan. ``L`` itself when that region is too small or no network is installed."""
    from affectvlm.faceframe import candidate_axes, estimate_frame

    near = _face_region(Q, L, grow)[f].all(1)
    if near.sum() < 100:
        return L
    fronts, ups = candidate_axes(np.eye(3))
    upright = np.isclose(fronts[:, 2], 1.0) & np.isclose(ups[:, 1], 1.0)  # the frame is known: +z front, +y up
    est = estimate_frame(Q, np.asarray(f)[near], np.eye(3), allowed=upright)
    return L if est is None or est.landmarks is None else est.landmarks


def _face_region(Q: np.ndarray, L: np.ndarray, grow: float = 1.0) -> np.ndarray:
    """Vertices (canonical orientation, any scale) inside the BU-3DFE-like ellipse the 83 landmarks
    (same frame) span: brows to chin, 0.4 face heights of forehead above the brows, jaw to jaw; ``grow`` scales it."""
    brows, contour = L[16:36], L[68:83]
    chin_y, brow_y = float(L[75, 1]), float(brows[:, 1].mean())
    height = brow_y - chin_y
    width = float(contour[:, 0].max() - contour[:, 0].min())
    if not (height > 0 and width > 0):
        return np.ones(len(Q), dtype=bool)
    cx, cy = float(L[36:48, 0].mean()), chin_y + 0.6 * height
    rx, ry = 0.55 * width * grow, 0.8 * height * grow
    return ((Q[:, 0] - cx) / rx) ** 2 + ((Q[:, 1] - cy) / ry) ** 2 <= 1.0


# ------------------------------------------------------------------------------------------------ display


def texture_vertex_colors(mesh: Mesh) -> np.ndarray | None:
    """Per-vertex RGB (uint8): the mesh's own colours, or its texture sampled at the corners' UVs
    (a vertex shared by several corners gets their mean); None for a plain mesh."""
    if mesh.vertex_colors is not None:
        return np.asarray(mesh.vertex_colors, dtype=np.uint8)[:, :3]
    if not mesh.has_texture:
        return None
    tex = np.asarray(mesh.texture)
    h, w = tex.shape[:2]
    uv = np.nan_to_num(np.asarray(mesh.face_uv, dtype=np.float64).reshape(-1, 2), nan=0.0)
    px = np.clip(np.rint(np.mod(uv[:, 0], 1.0 + 1e-9) * (w - 1)), 0, w - 1).astype(np.int64)
    py = np.clip(np.rint((1.0 - np.clip(uv[:, 1], 0, 1)) * (h - 1)), 0, h - 1).astype(np.int64)
    corner = tex[py, px, :3].astype(np.float64)
    idx = np.asarray(mesh.faces, dtype=np.int64).reshape(-1)
    acc = np.zeros((mesh.n_vertices, 3))
    cnt = np.zeros(mesh.n_vertices)
    np.add.at(acc, idx, corner)
    np.add.at(cnt, idx, 1.0)
    out = np.full((mesh.n_vertices, 3), 180.0)
    ok = cnt > 0
    out[ok] = acc[ok] / cnt[ok, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def decimate(vertices: np.ndarray, faces: np.ndarray, max_faces: int,
             colors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Vertex-clustering decimation to at most ``max_faces`` triangles (for display, not for scoring):
    ``(vertices float32, faces, colours or None)``; colours are averaged per cluster."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if len(f) <= max_faces:
        return v.astype(np.float32), f, colors
    lo = v.min(0)
    extent = np.maximum(v.max(0) - lo, 1e-12)
    # a surface covering the box has ~2 * res^2 faces over its two largest extents
    res = max(4.0, float(np.sqrt(max_faces / 2.0)))
    for _ in range(30):
        cell = np.sort(extent)[-1] / res
        _, inv = np.unique(np.floor((v - lo) / cell).astype(np.int64), axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        nf = inv[f]
        nf = nf[(nf[:, 0] != nf[:, 1]) & (nf[:, 1] != nf[:, 2]) & (nf[:, 0] != nf[:, 2])]
        _, first = np.unique(np.sort(nf, axis=1), axis=0, return_index=True)
        nf = nf[np.sort(first)]
        if len(nf) <= max_faces:
            break
        res *= 0.85
    n = int(inv.max()) + 1
    cnt = np.bincount(inv, minlength=n).astype(np.float64)

    def mean_of(x: np.ndarray) -> np.ndarray:
        return np.stack([np.bincount(inv, weights=x[:, k], minlength=n) for k in range(3)], 1) / cnt[:, None]

    nc = None
    if colors is not None:
        nc = np.clip(np.rint(mean_of(np.asarray(colors, dtype=np.float64))), 0, 255).astype(np.uint8)
    return mean_of(v).astype(np.float32), nf, nc

