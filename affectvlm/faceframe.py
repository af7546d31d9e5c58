"""The face's frame and 3D landmarks from a small learned network (embedded, CPU, a few ms per scan).

Which way a scan looks is decided among the 24 axis-aligned candidates of a basis (the file's axes, or a
principal frame for tilted scans): the surface is sampled by area, and for each of the six directions along
the basis a height map is splatted (what a camera on that side sees: height + coverage, ``SIZE`` pixels over
``± EXTENT`` RMS radii around the centroid). Each map turned by 0/90/180/270 degrees is one candidate
(front = the direction, up = the map's up); a small CNN scores every candidate image and a softmax over the
24 picks the upright frontal one. The same trunk regresses the 83 BU-3DFE landmarks on the chosen image;
they are lifted to 3D onto the sampled surface. The scores depend only on the images, so the answer does
not depend on how the file was rotated (up to pixel alignment).

Trained on randomised synthetic scans of several face models (crops with and without neck and ears,
3k-40k vertices, noise, holes, units, pose) by ``python -m affectvlm.train.frame``; weights and their
calibration (the confidence threshold below which a frame is flagged) live in ``data/faceframe/``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from affectvlm.errors import ConfigError
from affectvlm.results import N_LANDMARKS

__all__ = ["FrameNet", "FrameEstimate", "SIZE", "EXTENT", "N_POINTS", "surface_points", "direction_maps",
           "candidate_images", "candidate_axes", "estimate_frame", "normalise_points", "load_frame_net", "WEIGHTS_DIR",
           "N_LANDMARKS", "weights_digest", "threshold_of"]

SIZE = 48
EXTENT = 2.2
N_POINTS = 6000
WEIGHTS_DIR = Path(__file__).resolve().parent / "data" / "faceframe"

# (e1, e2) per direction so that e1 x e2 = direction; basis rows 0..2 = axes a, b, c
_PLANE = ((1, 2), (2, 1), (2, 0), (0, 2), (0, 1), (1, 0))  # directions +a, -a, +b, -b, +c, -c


def _direction(basis: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    axis, sign = divmod(i, 2)
    d = basis[axis] * (1.0 if sign == 0 else -1.0)
    a1, a2 = _PLANE[i]
    return d, basis[a1], basis[a2]


def candidate_axes(basis: np.ndarray = np.eye(3)) -> tuple[np.ndarray, np.ndarray]:
    """(fronts (24, 3), ups (24, 3)) of the candidates, in the order of :func:`candidate_images`."""
    basis = np.asarray(basis, dtype=np.float64)
    fronts, ups = [], []
    for i in range(6):
        d, e1, e2 = _direction(basis, i)
        for up in (e2, e1, -e2, -e1):  # np/torch rot90 by k turns the map counter-clockwise
            fronts.append(d)
            ups.append(up)
    return np.asarray(fronts), np.asarray(ups)


def surface_points(vertices: np.ndarray, faces: np.ndarray, n: int = N_POINTS, seed: int = 0) -> np.ndarray:
    """``n`` points on the surface, uniform by area (deterministic for ``seed``)."""
    v = np.asarray(vertices, dtype=np.float64)
    tri = v[np.asarray(faces, dtype=np.int64)]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    total = area.sum()
    if not total > 0:
        return tri.reshape(-1, 3)[:n]
    rng = np.random.default_rng(seed)
    idx = np.searchsorted(np.cumsum(area) / total, rng.random(n), side="right").clip(0, len(area) - 1)
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    w = np.stack([1 - s, s * (1 - r2), s * r2], 1)
    return (tri[idx] * w[:, :, None]).sum(1)


def normalise_points(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(points centred on their mean and divided by their RMS radius, the mean, the radius)."""
    c = points.mean(0)
    q = points - c
    s = float(np.sqrt((q ** 2).sum(1).mean())) or 1.0
    return q / s, c, s


def direction_maps(q: np.ndarray, basis: np.ndarray = np.eye(3), size: int = SIZE) -> np.ndarray:
    """Six (2, size, size) maps of normalised points ``q``: height seen from each direction, coverage."""
    out = np.zeros((6, 2, size, size), dtype=np.float32)
    basis = np.asarray(basis, dtype=np.float64)
    for i in range(6):
        d, e1, e2 = _direction(basis, i)
        u, w, h = q @ e1, q @ e2, q @ d
        col = np.floor((u + EXTENT) / (2 * EXTENT) * size).astype(np.int64)
        row = np.floor((EXTENT - w) / (2 * EXTENT) * size).astype(np.int64)
        ok = (col >= 0) & (col < size) & (row >= 0) & (row < size)
        flat = row[ok] * size + col[ok]
        hm = np.full(size * size, -np.inf)
        np.maximum.at(hm, flat, h[ok])
        cov = np.bincount(flat, minlength=size * size)
        seen = np.isfinite(hm)
        out[i, 0] = np.where(seen, hm + EXTENT, 0.0).reshape(size, size)
        out[i, 1] = (cov > 0).reshape(size, size)
    return out


def candidate_images(maps: torch.Tensor) -> torch.Tensor:
    """(..., 6, 2, S, S) direction maps -> (..., 24, 2, S, S) candidates (each map turned k * 90 deg)."""
    turned = [torch.rot90(maps, k, dims=(-2, -1)) for k in range(4)]
    return torch.stack(turned, dim=-4).flatten(-5, -4)


class FrameNet(nn.Module):
    """Scores a candidate image (upright frontal or not) and regresses 83 landmarks on it."""

    def __init__(self, size: int = SIZE, width: int = 16, n_landmarks: int = N_LANDMARKS):
        super().__init__()
        w = width
        self.size, self.width, self.n_landmarks = size, width, n_landmarks
        self.trunk = nn.Sequential(
            nn.Conv2d(2, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4 * w, 4 * w, 3, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(4 * w * (size // 8) ** 2, 128), nn.ReLU())
        self.score = nn.Linear(128, 1)
        self.landmarks = nn.Linear(128, 2 * n_landmarks)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, 2, S, S) -> (scores (N,), landmarks (N, L, 2) in normalised map units)."""
        h = self.trunk(x)
        return self.score(h).squeeze(-1), self.landmarks(h).view(-1, self.n_landmarks, 2)


@dataclass
class FrameEstimate:
    """The chosen frame (unit vectors in the file's coordinates), its confidence and the landmarks."""

    front: np.ndarray
    up: np.ndarray
    confidence: float
    low_confidence: bool
    probabilities: np.ndarray
    landmarks: np.ndarray | None = None
    meta: dict = field(default_factory=dict)


def _weights_dir(folder: str | None) -> Path:
    return Path(folder) if folder else WEIGHTS_DIR  # looked up at call time: tools may point it elsewhere


def threshold_of(cfg: dict) -> float:
    """The confidence under which the network's frame is flagged, from its calibration (``frame-net.json``)."""
    return float(cfg.get("threshold", 0.9))


@lru_cache(maxsize=2)
def load_frame_net(folder: str | None = None) -> tuple[FrameNet, dict] | None:
    """The embedded network and its settings (``None`` when no weights are installed)."""
    d = _weights_dir(folder)
    wf, cf = d / "frame-net.safetensors", d / "frame-net.json"
    if not (wf.is_file() and cf.is_file()):
        return None
    from safetensors.torch import load_file

    cfg = json.loads(cf.read_text("utf-8"))
    net = FrameNet(size=int(cfg.get("size", SIZE)), width=int(cfg.get("width", 16)))
    net.load_state_dict({k: v.float() for k, v in load_file(str(wf)).items()})
    net.eval()
    return net, cfg


@lru_cache(maxsize=4)
def weights_digest(folder: str | None = None) -> str:
    """sha256 of the network's weights and settings files ("" when none are installed): renders made with one
    network are not reused with another (:mod:`affectvlm.train.cache`)."""
    import hashlib

    d = _weights_dir(folder)
    h = hashlib.sha256()
    found = False
    for name in ("frame-net.safetensors", "frame-net.json"):
        f = d / name
        if f.is_file():
            h.update(f.read_bytes())
            found = True
    return h.hexdigest() if found else ""


def _lift(lm2: np.ndarray, q: np.ndarray, front: np.ndarray, up: np.ndarray) -> np.ndarray:
    """2D landmarks on the upright frontal map -> the visible sampled surface point under each."""
    right = np.cross(up, front)
    u, w, h = q @ right, q @ up, q @ front
    px = 2 * EXTENT / SIZE
    out = np.empty((len(lm2), 3))
    for j, (a, b) in enumerate(lm2):
        d2 = (u - a) ** 2 + (w - b) ** 2
        near = d2 < (1.2 * px) ** 2
        k = int(np.argmax(np.where(near, h, -np.inf))) if near.any() else int(np.argmin(d2))
        out[j] = a * right + b * up + h[k] * front
    return out


def estimate_frame(vertices: np.ndarray, faces: np.ndarray, basis: np.ndarray = np.eye(3), *,
                   allowed: np.ndarray | None = None, landmarks: bool = True) -> FrameEstimate | None:
    """Front/up among the 24 candidates of ``basis`` (rows = orthonormal axes), or None without weights.

    ``allowed`` (24,) bool restricts the choice (e.g. when the user fixed ``up``)."""
    loaded = load_frame_net()
    if loaded is None:
        return None
    net, cfg = loaded
    basis = np.asarray(basis, dtype=np.float64)
    q, c, s = normalise_points(surface_points(vertices, faces, int(cfg.get("points", N_POINTS))))
    maps = torch.from_numpy(direction_maps(q, basis, net.size))
    images = candidate_images(maps)
    only = None if allowed is None else np.flatnonzero(allowed)
    if only is not None and not len(only):  # every candidate excluded: no frame to give (it read NaN, unflagged)
        raise ConfigError("no face-frame candidate is allowed (the given up and front axes exclude them all)")
    with torch.inference_mode():
        if only is not None and len(only) < len(images):  # the others are never chosen: not run
            part, part_lms = net(images[torch.from_numpy(only)])
            scores = torch.full((len(images),), -torch.inf, dtype=part.dtype)
            lms = torch.zeros((len(images), *part_lms.shape[1:]), dtype=part_lms.dtype)
            scores[only], lms[only] = part, part_lms
        else:
            scores, lms = net(images)
    logits = scores.double().numpy()
    if allowed is not None:
        logits = np.where(allowed, logits, -np.inf)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    best = int(np.argmax(p))
    fronts, ups = candidate_axes(basis)
    conf = float(p[best])
    lm3 = None
    if landmarks:
        lm3 = _lift(lms[best].double().numpy(), q, fronts[best], ups[best]) * s + c
    return FrameEstimate(front=fronts[best], up=ups[best], confidence=conf,
                         low_confidence=conf < threshold_of(cfg), probabilities=p,
                         landmarks=lm3, meta={"method": "frame-net", "candidate": best,
                                              "logit": float(logits[best])})
