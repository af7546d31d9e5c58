"""Randomised labelled scans from any :class:`~affectvlm.synth.facemodel.FaceModel`: what real scans vary in.

One call, :func:`sample_scan`, draws an identity (random mixture of the model's identity modes, mild
extrapolation), an expression (a callable ``expression(emotion, level, rng) -> {AU: (left, right)}``, so whole
expression families can be swapped or held out), and scanner nuisances (:class:`Nuisance`): crop extent
(face only / with forehead and ears / with neck), resolution (decimated to a few thousand vertices or
subdivided), noise along the normals, holes, units, a small head pose and, optionally, one of the 24
axis-aligned orientations of the file. Deterministic for a given ``rng`` state.

The result carries the truth a learner or a benchmark needs: label, intensity, the 83 landmarks (BU-3DFE
order) in the scan's coordinates, and which file axes point up and to the front.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from affectvlm.geometry import axis_name, boundary_edges
from affectvlm.mesh import Mesh
from affectvlm.synth.facemodel import FaceModel, apply_aus
from affectvlm.synth.rig import Pose
from affectvlm.synth.style import StyleJitter, jitter_delta

__all__ = ["Nuisance", "RandomScan", "AXIS_ROTATIONS", "sample_scan", "crop_mask"]

ExpressionFn = Callable[[str, int, np.random.Generator], Mapping[str, tuple[float, float]]]


def _axis_rotations() -> np.ndarray:
    """The 24 proper rotations that map coordinate axes to coordinate axes (rows: new x, y, z)."""
    out = []
    eye = np.eye(3)
    for i in range(3):
        for j in range(3):
            if i == j:
                continue
            for si in (1, -1):
                for sj in (1, -1):
                    a, b = si * eye[i], sj * eye[j]
                    out.append(np.stack([a, b, np.cross(a, b)]))
    return np.asarray(out)


AXIS_ROTATIONS = _axis_rotations()
_UNITS = {"mm": 1.0, "cm": 0.1, "m": 0.001}


@dataclass(frozen=True)
class Nuisance:
    """What a scanner and a lab change. Ranges are (low, high); probabilities in [0, 1]."""

    crops: tuple[tuple[str, float], ...] = (("face", 0.45), ("wide", 0.35), ("full", 0.2))
    vertices: tuple[int, int] = (3000, 40000)
    noise_mm: tuple[float, float] = (0.0, 0.35)
    hole_probability: float = 0.5
    holes: tuple[int, int] = (1, 6)
    hole_radius_mm: tuple[float, float] = (3.0, 14.0)
    units: tuple[tuple[str, float], ...] = (("mm", 0.8), ("cm", 0.1), ("m", 0.1))
    yaw_deg: float = 12.0
    pitch_deg: float = 8.0
    roll_deg: float = 6.0
    axis_rotation: bool = False
    origin_mm: float = 100.0  # the scan's origin lands anywhere in this cube (scanners do not centre faces)
    identity_sd: tuple[float, float] = (0.7, 1.4)
    mix_modes: tuple[int, int] = (3, 100)
    closed_mouth: float = 0.0  # share of scans whose mouth opening is bridged, as closed-topology meshes have it
    mouth_sink_mm: tuple[float, float] = (0.0, 8.0)  # how far the bridge's centre sits behind the lips
    eyeballs: float = 0.0  # share of scans whose eye openings show an eyeball surface, as scanners see them

    @classmethod
    def none(cls) -> "Nuisance":
        """Clean scans: face crop, full resolution, no noise/holes, mm, no pose."""
        return cls(crops=(("face", 1.0),), vertices=(0, 0), noise_mm=(0.0, 0.0), hole_probability=0.0,
                   units=(("mm", 1.0),), yaw_deg=0.0, pitch_deg=0.0, roll_deg=0.0, origin_mm=0.0)


@dataclass
class RandomScan:
    """One labelled scan and its truth (``up``/``front``: file axes such as ``"+y"``)."""

    mesh: Mesh
    emotion: str
    level: int
    model: str
    family: str
    identity: np.ndarray
    landmarks: np.ndarray | None
    up: str
    front: str
    rotation: np.ndarray
    nuisance: dict = field(default_factory=dict)
    aus: dict = field(default_factory=dict)  # the AU intensities drawn, {"AU12": (left, right)}


def _choice(rng: np.random.Generator, options: Sequence[tuple[str, float]]) -> str:
    names = [n for n, _ in options]
    p = np.asarray([w for _, w in options], dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def crop_mask(model: FaceModel, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Vertices kept by a ``face`` / ``wide`` / ``full`` crop: ellipses around the model's face crop,
    randomly sized; ``full`` keeps everything the model has (neck, ears, scalp)."""
    v = model.neutral
    if kind == "full" or not model.face_mask.any():
        return np.ones(len(v), dtype=bool)
    f = v[model.face_mask]
    lo, hi = f.min(0), f.max(0)
    c = (lo + hi) / 2
    r = (hi - lo) / 2
    if kind == "face":
        sx, sy, dy = rng.uniform(0.85, 1.05), rng.uniform(0.85, 1.05), rng.uniform(-0.08, 0.05)
    else:  # wide: forehead, ears, a little below the chin
        sx, sy, dy = rng.uniform(1.05, 1.35), rng.uniform(1.05, 1.35), rng.uniform(-0.15, 0.1)
    cy = c[1] + dy * r[1]
    return ((v[:, 0] - c[0]) / (sx * r[0])) ** 2 + ((v[:, 1] - cy) / (sy * r[1])) ** 2 <= 1.0


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """The mesh's boundary loops (vertex ids in order), from the edges that only one triangle uses."""
    nbrs: dict[int, list[int]] = {}
    for a, b in boundary_edges(faces).tolist():
        nbrs.setdefault(a, []).append(b)
        nbrs.setdefault(b, []).append(a)
    seen: set[int] = set()
    loops = []
    for start in nbrs:
        if start in seen:
            continue
        loop, prev, cur = [start], -1, start
        seen.add(start)
        while True:
            nxt = [n for n in nbrs[cur] if n != prev and n not in seen]
            if not nxt:
                break
            prev, cur = cur, nxt[0]
            seen.add(cur)
            loop.append(cur)
        loops.append(np.asarray(loop, dtype=np.int64))
    return loops


_LANDMARK_IDS: dict[tuple[str, int], np.ndarray] = {}


def landmark_vertices(model: FaceModel) -> np.ndarray:
    """The 83 vertex ids of ``model``'s landmarks (BU-3DFE's order): its own, or the vertices nearest the face-frame
    network's landmarks on its neutral face (InputError when no network is installed)."""
    if len(model.landmarks) == 83:
        return np.asarray(model.landmarks, dtype=np.int64)
    key = (model.name, len(model.neutral))
    if key not in _LANDMARK_IDS:
        from affectvlm.synth.transfer import neutral_landmarks

        n = model.neutral.astype(np.float64)
        _LANDMARK_IDS[key] = np.array([int(((n - p) ** 2).sum(1).argmin()) for p in neutral_landmarks(model)])
    return _LANDMARK_IDS[key]


_MOUTH_LOOPS: dict[tuple[str, int, int], np.ndarray | None] = {}


def mouth_loop(model: FaceModel) -> np.ndarray | None:
    """The boundary loop of the mouth opening on ``model``'s mesh (None when the mesh is closed there): of the
    loops other than the mesh's outline (the widest), the one nearest the mouth's landmarks, no wider than the mouth."""
    key = (model.name, len(model.neutral), len(model.faces))
    if key in _MOUTH_LOOPS:
        return _MOUTH_LOOPS[key]
    v = model.neutral.astype(np.float64)
    loops = boundary_loops(model.faces)
    outline = max(range(len(loops)), key=lambda i: np.ptp(v[loops[i], 0])) if loops else -1
    inner = [loop for i, loop in enumerate(loops) if i != outline and len(loop) >= 6]  # the outline is no mouth
    found = None
    if inner:
        L = v[landmark_vertices(model)]
        centre, width = L[48:68].mean(0), float(np.ptp(L[48:68, 0]))
        best = np.inf
        for loop in inner:
            d = float(np.linalg.norm(v[loop].mean(0)[:2] - centre[:2]))
            if d < 0.6 * width and np.ptp(v[loop, 0]) < 1.6 * width and d < best:
                best, found = d, loop
    _MOUTH_LOOPS[key] = found
    return found


def close_mouth(model: FaceModel, v: np.ndarray, sink_mm: float) -> tuple[np.ndarray, np.ndarray] | None:
    """``model``'s mesh with the mouth opening bridged by a fan to one new vertex (the loop's mean, ``sink_mm``
    behind the lips; the models face +z): (vertices, faces), or None when there is no opening to close."""
    loop = mouth_loop(model)
    if loop is None:
        return None
    centre = v[loop].mean(0) - np.array([0.0, 0.0, sink_mm])
    k = len(v)
    fan = np.stack([loop, np.roll(loop, -1), np.full(len(loop), k)], 1)
    # wind the fan like the surface around it: its normal toward the viewer (+z)
    if np.cross(v[fan[:, 1]] - v[fan[:, 0]], centre - v[fan[:, 0]]).sum(0)[2] < 0:
        fan = fan[:, [1, 0, 2]]
    return np.vstack([v, centre]), np.vstack([np.asarray(model.faces, np.int64), fan])


def eye_landmarks(model: FaceModel, v: np.ndarray) -> np.ndarray | None:
    """(2, 8, 3) eyelid landmarks of the face ``v`` (BU-3DFE's 83-point order: 0-7 one eye, 8-15 the other) at
    :func:`landmark_vertices`; None when the model has no landmarks and no network can find them."""
    from affectvlm.errors import InputError

    try:
        ids = landmark_vertices(model)
    except InputError:
        return None
    return v[ids[:16]].reshape(2, 8, 3)


def _inside_polygon(pts: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd test of 2-D points against a closed polygon (its vertices in order)."""
    x, y = pts[:, :1], pts[:, 1:2]
    x0, y0 = poly[:, 0], poly[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    cross = ((y0 > y) != (y1 > y)) & (x < (x1 - x0) * (y - y0) / np.where(y1 == y0, 1e-12, y1 - y0) + x0)
    return cross.sum(1) % 2 == 1


def eyeball_caps(model: FaceModel, v0: np.ndarray, rng: np.random.Generator, *, depth_mm: tuple[float, float] = (10.0, 13.0),
                 gap_mm: tuple[float, float] = (0.3, 2.0), rings: int = 6,
                 segments: int = 20) -> tuple[np.ndarray, np.ndarray] | None:
    """Two half-ellipsoid caps where a scanner sees the eyeballs (the models face +z): each spans its eye opening
    (the neutral face ``v0``'s eyelid landmarks) and 1.5 mm more, is ``depth_mm`` deep, and its front sits ``gap_mm``
    behind the lid margin, so it shows through the opening and stays under the lids. (vertices, faces) or None."""
    eyes = eye_landmarks(model, v0)
    if eyes is None:
        return None
    th = np.linspace(0.0, np.pi / 2, rings + 1)[1:]
    ph = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    unit = np.concatenate([[[0.0, 0.0, 1.0]], np.stack([np.outer(np.sin(th), np.cos(ph)).ravel(),
                                                        np.outer(np.sin(th), np.sin(ph)).ravel(),
                                                        np.repeat(np.cos(th), segments)], 1)])
    tris = [[0, 1 + (k + 1) % segments, 1 + k] for k in range(segments)]
    for j in range(rings - 1):
        a, b = 1 + j * segments, 1 + (j + 1) * segments
        for k in range(segments):
            k1 = (k + 1) % segments
            tris += [[a + k, a + k1, b + k1], [a + k, b + k1, b + k]]
    tris = np.asarray(tris, np.int64)[:, ::-1]  # wound so the normals face out of the cap, toward the viewer
    verts, faces = [], []
    for P in eyes:
        c = P.mean(0)
        ax, ay = np.ptp(P[:, 0]) / 2 + 1.5, np.ptp(P[:, 1]) / 2 + 1.5
        depth = float(rng.uniform(*depth_mm))
        # the cap's front stays behind the lid landmarks and every vertex of the skin around the opening
        near = v0[(((v0[:, 0] - c[0]) / ax) ** 2 + ((v0[:, 1] - c[1]) / ay) ** 2 < 1.0)
                  & (np.abs(v0[:, 2] - c[2]) < 2 * depth)]
        skin = np.vstack([P, near[~_inside_polygon(near[:, :2], P[:, :2])]])
        q = 1.0 - ((skin[:, 0] - c[0]) / ax) ** 2 - ((skin[:, 1] - c[1]) / ay) ** 2
        apex = float((skin[:, 2] + depth * (1.0 - np.sqrt(np.clip(q, 0.0, 1.0)))).min()) - float(rng.uniform(*gap_mm))
        pts = unit * [ax, ay, depth] + [c[0], c[1], apex - depth]
        faces.append(tris + sum(len(x) for x in verts))
        verts.append(pts)
    return np.vstack(verts), np.vstack(faces)


def _submesh(v: np.ndarray, f: np.ndarray, keep_v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = f[keep_v[f].all(1)]
    used = np.unique(f)
    remap = -np.ones(len(v), dtype=np.int64)
    remap[used] = np.arange(len(used))
    return v[used], remap[f]


def _largest_piece(v: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from affectvlm.synth.rig import largest_component

    keep = np.zeros(len(v), dtype=bool)
    keep[np.unique(largest_component(f, len(v)))] = True
    return _submesh(v, f, keep)


def _resample(v: np.ndarray, f: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Decimate (quadric, fast-simplification) or subdivide (midpoint) toward ``target`` vertices."""
    if target <= 0:
        return v, f
    if target < 0.9 * len(v):
        from affectvlm.render.simplify import quadric_simplify

        try:
            pts, faces = quadric_simplify(v, f, 1.0 - target / len(v))
        except ImportError:
            return v, f
        return np.asarray(pts, np.float64), np.asarray(faces, np.int64)
    import trimesh.remesh

    while len(v) * 4 <= target * 1.3:
        v, f = trimesh.remesh.subdivide(v, f)
    return np.asarray(v, np.float64), np.asarray(f, np.int64)


def _normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    from affectvlm.geometry import vertex_normals

    return np.asarray(vertex_normals(v, f), dtype=np.float64)


def _holes(v: np.ndarray, f: np.ndarray, rng: np.random.Generator, count: int,
           radius: tuple[float, float]) -> np.ndarray:
    cent = v[f].mean(1)
    drop = np.zeros(len(f), dtype=bool)
    for _ in range(count):
        c = cent[int(rng.integers(len(cent)))]
        drop |= ((cent - c) ** 2).sum(1) < rng.uniform(*radius) ** 2
    return f[~drop] if (~drop).sum() > 0.5 * len(f) else f


def sample_identity(model: FaceModel, rng: np.random.Generator, nuisance: Nuisance = Nuisance()) -> np.ndarray:
    """Identity weights: a random subset of the modes (a mixture), N(0, sd) with sd drawn per subject."""
    k = len(model.identities)
    w = np.zeros(k)
    if k:
        n = int(rng.integers(min(nuisance.mix_modes[0], k), min(nuisance.mix_modes[1], k) + 1))
        idx = rng.choice(k, size=n, replace=False)
        w[idx] = rng.normal(0.0, rng.uniform(*nuisance.identity_sd), size=n)
    return w


def sample_scan(model: FaceModel, emotion: str, level: int, rng: np.random.Generator, *,
                expression: ExpressionFn | None = None, family: str = "",
                identity: np.ndarray | None = None, nuisance: Nuisance = Nuisance(),
                source: str = "<synth>", extra_delta: np.ndarray | None = None,
                style: StyleJitter | None = None) -> RandomScan:
    """One labelled scan of ``emotion`` at ``level`` (0 = neutral, 1-4) with nuisances; see the module doc.

    ``extra_delta`` (N, 3) mm is added after the AUs (e.g. a sculpted emotion target of the face model);
    ``style`` may then redraw the whole displacement's sculpt style (:mod:`affectvlm.synth.style`)."""
    w = sample_identity(model, rng, nuisance) if identity is None else np.asarray(identity, np.float64)
    v0 = model.identity(w)
    aus = dict(expression(emotion, level, rng)) if expression is not None else {}
    v = apply_aus(model, v0, aus)
    if extra_delta is not None:
        v = v + extra_delta
    if style is not None and style.probability > 0:
        v = v0 + jitter_delta(v - v0, v0, model, rng, style)
    lm_ids = model.landmarks if len(model.landmarks) else None
    lms = v[lm_ids] if lm_ids is not None else None
    info: dict = {}
    crop = _choice(rng, nuisance.crops)
    keep = crop_mask(model, crop, rng)
    faces = model.faces
    if nuisance.closed_mouth > 0 and rng.random() < nuisance.closed_mouth:
        closed = close_mouth(model, v, float(rng.uniform(*nuisance.mouth_sink_mm)))
        if closed is not None:
            v, faces = closed
            keep = np.append(keep, True)
            info["closed_mouth"] = True
    vv, ff = _submesh(v, faces, keep)
    vv, ff = _largest_piece(vv, ff)
    # whether the eyeballs show, and their size and depth, are the subject's (drawn from the identity), so a
    # sequence's frames agree; the scan's own draws (crop, pose, units) stay those of a scan without them
    eye_rng = np.random.default_rng(int(np.abs(w).sum() * 1e6) % 2 ** 32)
    if nuisance.eyeballs > 0 and eye_rng.random() < nuisance.eyeballs:
        caps = eyeball_caps(model, v0, eye_rng)
        if caps is not None:
            vv, ff = np.vstack([vv, caps[0]]), np.vstack([ff, caps[1] + len(vv)])
            info["eyeballs"] = True
    target = int(np.exp(rng.uniform(*np.log(np.maximum(nuisance.vertices, 1))))) if nuisance.vertices[1] else 0
    vv, ff = _resample(vv, ff, target)
    holes = 0
    if rng.random() < nuisance.hole_probability:
        holes = int(rng.integers(nuisance.holes[0], nuisance.holes[1] + 1))
        ff = _holes(vv, ff, rng, holes, nuisance.hole_radius_mm)
        vv, ff = _submesh(vv, ff, np.ones(len(vv), dtype=bool))
    noise = rng.uniform(*nuisance.noise_mm)
    if noise > 0:
        vv = vv + _normals(vv, ff) * rng.normal(0.0, noise, size=(len(vv), 1))
    pose = Pose()
    if nuisance.yaw_deg or nuisance.pitch_deg or nuisance.roll_deg:
        pose = Pose(rng.normal(0, nuisance.yaw_deg / 2), rng.normal(0, nuisance.pitch_deg / 2),
                    rng.normal(0, nuisance.roll_deg / 2))
    R = pose.matrix()
    A = AXIS_ROTATIONS[int(rng.integers(24))] if nuisance.axis_rotation else np.eye(3)
    M = A @ R
    unit = _choice(rng, nuisance.units)
    s = _UNITS[unit]
    origin = rng.uniform(-nuisance.origin_mm, nuisance.origin_mm, 3) if nuisance.origin_mm else np.zeros(3)
    vv = (vv @ M.T + origin) * s
    if lms is not None:
        lms = (lms @ M.T + origin) * s
    info.update(crop=crop, vertices=int(len(vv)), noise_mm=round(float(noise), 3), units=unit, holes=holes,
                yaw=round(float(pose.yaw), 2), pitch=round(float(pose.pitch), 2), roll=round(float(pose.roll), 2))
    mesh = Mesh(vertices=vv.astype(np.float32), faces=ff.astype(np.int64), source=source,
                meta={"units": unit, "synthetic": True})
    return RandomScan(mesh=mesh, emotion=emotion, level=int(level), model=model.name, family=family, identity=w,
                      landmarks=None if lms is None else lms.astype(np.float32),
                      up=axis_name(A[:, 1]), front=axis_name(A[:, 2]), rotation=M, nuisance=info, aus=aus)
