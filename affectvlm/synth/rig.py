"""A face rig on the ICT-FaceKit model: identity + expression blendshapes, cut out like a scanner's ``_F3D``.

The topology (which vertices, which triangles, per-corner UVs, landmark vertices) is fixed once per rig, on the
neutral template, so every scan and every frame of a sequence made with one rig shares it: a 4D sequence keeps
vertex correspondence, as a registered scan would.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from affectvlm.errors import ConfigError
from affectvlm.mesh import Mesh
from affectvlm.synth.facekit import FaceKit

# iBUG-68 landmark numbering (ICT-FaceKit's ``idx_to_landmark_verts`` follows it)
_JAW = list(range(0, 17))
_BROW_R, _BROW_L = list(range(17, 22)), list(range(22, 27))
_NOSE = list(range(27, 36))
_EYE_R, _EYE_L = list(range(36, 42)), list(range(42, 48))
_MOUTH = list(range(48, 68))
N_BND = 83


@dataclass(frozen=True)
class Pose:
    """Rigid placement of a scan: rotation in degrees about the face centre, then millimetres of offset."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def matrix(self) -> np.ndarray:
        y, p, r = np.radians([self.yaw, self.pitch, self.roll])
        ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
        rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
        rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
        return rz @ rx @ ry


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals."""
    v = vertices[faces]
    fn = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    n = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def _ellipse_mask(kit: FaceKit) -> np.ndarray:
    """Face-area vertices inside a forehead-to-chin, ear-to-ear ellipse (x-y plane of the template)."""
    v = kit.neutral
    if len(kit.landmarks) >= 68:
        lm = v[kit.landmarks]
        chin_y = lm[8, 1]
        brow_y = lm[_BROW_R + _BROW_L, 1].mean()
        height = brow_y - chin_y
        # taller than wide, as BU-3DFE _F3D crops are (and as orientation detection expects)
        cx, cy = lm[27:31, 0].mean(), chin_y + 0.6 * height
        rx, ry = 0.95 * abs(lm[16, 0] - lm[0, 0]) / 2, 0.8 * height
    else:  # no landmarks (e.g. a test fixture): the central part of the face area's bounding box
        lo, hi = v.min(0), v.max(0)
        cx, cy = (lo[:2] + hi[:2]) / 2
        rx, ry = 0.4 * (hi[0] - lo[0]), 0.48 * (hi[1] - lo[1])
    return ((v[:, 0] - cx) / rx) ** 2 + ((v[:, 1] - cy) / ry) ** 2 <= 1.0


def largest_component(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """The faces of the largest edge-connected piece (a crop leaves small islands near the ears)."""
    if len(faces) == 0:
        return faces
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    g = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n_vertices, n_vertices))
    _, label = connected_components(g, directed=False)
    face_label = label[faces[:, 0]]
    return faces[face_label == np.bincount(face_label).argmax()]


def _nearest(points: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Index of the nearest of ``points`` for each target (brute force; targets are few)."""
    d = ((targets[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    return d.argmin(1)


def _bnd_targets(kit: FaceKit) -> np.ndarray:
    """83 landmark positions on the template in BU-3DFE's order: eyes 8+8, brows 10+10, nose 12,
    mouth 20, contour 15. Built from the model's iBUG-68 points; extra points are interpolated."""
    lm = kit.neutral[kit.landmarks[:68]]

    def eye(ids):  # iBUG: corner, 2 upper, corner, 2 lower -> 8 points around the eye
        p = lm[ids]
        return np.stack([p[0], p[1], (p[1] + p[2]) / 2, p[2], p[3], p[4], (p[4] + p[5]) / 2, p[5]])

    def brow(ids):  # upper edge from the landmarks, lower edge 0.35 cm below
        p = lm[ids]
        return np.concatenate([p, p[::-1] - np.array([0.0, 0.35, 0.0])])

    nose = lm[_NOSE]
    wing = np.array([0.45, 0.0, 0.0])
    extra = np.stack([(nose[0] + nose[3]) / 2, nose[4] - wing, nose[8] + wing])
    contour = lm[np.linspace(0, 16, 15).round().astype(int)]
    pts = np.concatenate([eye(_EYE_L), eye(_EYE_R), brow(_BROW_L), brow(_BROW_R), nose, extra,
                          lm[_MOUTH], contour])
    assert len(pts) == N_BND
    return pts


def _spread_points(v: np.ndarray, k: int) -> np.ndarray:
    """Farthest-point sampling from the vertex nearest the centroid: ``k`` well spread vertex ids."""
    k = min(k, len(v))
    ids = [int(np.argmin(((v - v.mean(0)) ** 2).sum(1)))]
    d = ((v - v[ids[0]]) ** 2).sum(1)
    for _ in range(k - 1):
        ids.append(int(d.argmax()))
        d = np.minimum(d, ((v - v[ids[-1]]) ** 2).sum(1))
    return np.asarray(ids, dtype=np.int64)


def _decimate(points: np.ndarray, faces: np.ndarray, fraction: float) -> np.ndarray:
    """Triangles over a subset of the original vertices, keeping about ``fraction`` of the triangles.

    A simplifier runs on the template once; each output vertex is snapped to its nearest original vertex
    so the result applies to every identity/expression (vertex correspondence is preserved)."""
    try:
        from affectvlm.render.simplify import quadric_simplify

        out_pts, out_faces = quadric_simplify(points, faces, 1.0 - fraction)
    except ImportError:
        try:
            import pyvista as pv
        except ImportError:
            raise ConfigError("decimation needs the 'fast-simplification' or 'pyvista' package "
                              "(pip install fast-simplification)") from None
        cells = np.hstack([np.full((len(faces), 1), 3), faces]).ravel()
        dec = pv.PolyData(points.astype(np.float64), cells).decimate_pro(1.0 - fraction, preserve_topology=True)
        out_pts, out_faces = np.asarray(dec.points), np.asarray(dec.faces).reshape(-1, 4)[:, 1:]
    out_pts = np.asarray(out_pts, dtype=np.float64)
    snap = np.empty(len(out_pts), dtype=np.int64)
    for s in range(0, len(out_pts), 512):
        snap[s:s + 512] = _nearest(points, out_pts[s:s + 512])
    f = snap[np.asarray(out_faces, dtype=np.int64)]
    ok = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
    f = f[ok]
    _, first = np.unique(np.sort(f, axis=1), axis=0, return_index=True)
    return f[np.sort(first)]


class FaceRig:
    """Identity and expression on a fixed, cropped face topology.

    crop: ``"ellipse"`` (forehead to chin, like BU-3DFE ``_F3D``) or ``"none"`` (the whole face area).
    decimate: fraction of triangles kept (1.0 keeps all).
    """

    def __init__(self, kit: FaceKit, *, crop: str = "ellipse", decimate: float = 1.0):
        if crop not in ("ellipse", "none"):
            raise ConfigError(f"crop must be 'ellipse' or 'none', not {crop!r}")
        if not 0.0 < decimate <= 1.0:
            raise ConfigError(f"decimate must be a fraction in (0, 1], not {decimate}")
        self.kit = kit
        self.crop = crop
        self.scale_mm = kit.units_to_mm
        keep = _ellipse_mask(kit) if crop == "ellipse" else np.ones(len(kit.neutral), bool)
        faces = largest_component(kit.polygons[keep[kit.polygons].all(1)], len(kit.neutral))
        if decimate < 1.0:
            faces = _decimate(kit.neutral, faces, decimate)
        vids = np.unique(faces)
        if len(vids) < 3:
            raise ConfigError("the face crop left no triangles")
        remap = -np.ones(len(kit.neutral), dtype=np.int64)
        remap[vids] = np.arange(len(vids))
        self.vertex_ids = vids
        self.faces = remap[faces]
        uv = np.nan_to_num(kit.uv[vids], nan=0.0)
        self.face_uv = uv[self.faces].astype(np.float32)
        self.neutral = kit.neutral[vids].astype(np.float64)
        self.identities = kit.identities[:, vids].astype(np.float64)
        self.expressions = kit.expressions[:, vids].astype(np.float64)
        self.expression_names = kit.expression_names
        self.centre = self.neutral.mean(0)
        if len(kit.landmarks) >= 68:
            targets = _bnd_targets(kit)
        else:
            targets = self.neutral[_spread_points(self.neutral, N_BND)]
        self.landmark_ids = _nearest(self.neutral, targets)

    @property
    def n_vertices(self) -> int:
        return len(self.vertex_ids)

    def expression_vector(self, weights: Mapping[str, float]) -> np.ndarray:
        """Blendshape weights by name -> dense vector in ``expression_names`` order."""
        e = np.zeros(len(self.expression_names))
        for name, w in weights.items():
            e[self.kit.expression_index(name)] += w
        return e

    def shape(self, identity: np.ndarray | None = None,
              expression: Mapping[str, float] | np.ndarray | None = None) -> np.ndarray:
        """Vertices in model units: neutral + identity deltas + expression deltas."""
        v = self.neutral.copy()
        if identity is not None and len(identity):
            w = np.asarray(identity, dtype=np.float64)[: len(self.identities)]
            v += np.tensordot(w, self.identities[: len(w)], axes=1)
        if expression is not None:
            e = self.expression_vector(expression) if isinstance(expression, Mapping) else np.asarray(expression)
            nz = np.flatnonzero(e)
            if len(nz):
                v += np.tensordot(e[nz], self.expressions[nz], axes=1)
        return v

    def to_scan(self, vertices: np.ndarray, pose: Pose = Pose(), *, noise_mm: float = 0.0,
                rng: np.random.Generator | None = None) -> np.ndarray:
        """Model units -> millimetres, posed about the face centre, plus Gaussian noise along the normals."""
        v = (vertices - self.centre) * self.scale_mm
        v = v @ pose.matrix().T + np.asarray(pose.origin, dtype=np.float64)
        if noise_mm > 0:
            rng = rng or np.random.default_rng(0)
            n = vertex_normals(v, self.faces)
            v = v + n * rng.normal(0.0, noise_mm, size=(len(v), 1))
        return v.astype(np.float32)

    def mesh(self, vertices_mm: np.ndarray, *, texture: np.ndarray | None = None, source: str = "<synth>",
             meta: dict | None = None) -> Mesh:
        return Mesh(vertices=np.asarray(vertices_mm, dtype=np.float32), faces=self.faces.copy(),
                    face_uv=self.face_uv.copy(), texture=texture, source=source,
                    meta=dict(meta or {}, units="mm", synthetic=True))

    def landmarks(self, vertices_mm: np.ndarray) -> np.ndarray:
        """The 83 landmark vertices (BU-3DFE order) of a scan of this rig: (83, 3)."""
        return np.asarray(vertices_mm)[self.landmark_ids]
