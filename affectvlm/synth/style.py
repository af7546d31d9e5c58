"""Sculpt-style jitter: the same action units as another artist might have sculpted them.

Two sculptors' targets for one AU agree on where the face moves and roughly how, not on how far each region
moves, how wide the movement spreads, or how much of it pushes the skin out rather than sliding it along. A
:class:`StyleJitter` redraws those three per scan on the whole expression displacement (AUs plus any sculpted
emotion target), so a model cannot learn one sculptor's details:

- a regional gain: ``exp`` of a few Gaussian bumps centred on random face vertices;
- a softer falloff: a few passes of neighbour averaging, rescaled so the largest movements keep their size;
- separate gains on the displacement's component along the neutral face's normal and across it, and a regional
  twist of the sideways component about the normal.

Every draw depends only on the random stream and the face model, never on the displacement itself, so the frames
of a sequence drawn from one stream share one style.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from affectvlm.synth.facemodel import FaceModel
from affectvlm.synth.rig import vertex_normals

__all__ = ["StyleJitter", "jitter_delta"]


@dataclass(frozen=True)
class StyleJitter:
    """How far a scan's sculpt style is redrawn (ranges are (low, high)); ``probability`` per scan."""

    probability: float = 0.0
    bumps: tuple[int, int] = (3, 8)
    bump_sd_mm: tuple[float, float] = (10.0, 30.0)
    log_gain_sd: float = 0.45
    twist_sd_deg: float = 25.0
    gain_limits: tuple[float, float] = (0.4, 2.0)
    smooth_probability: float = 0.5
    smooth_passes: tuple[int, int] = (1, 8)
    normal_gain: tuple[float, float] = (0.7, 1.3)
    tangent_gain: tuple[float, float] = (0.7, 1.3)

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"style jitter probability must be in [0, 1], not {self.probability}")


def jitter_delta(delta: np.ndarray, neutral: np.ndarray, model: FaceModel, rng: np.random.Generator,
                 style: StyleJitter) -> np.ndarray:
    """``delta`` (N, 3) mm, the expression displacement on ``neutral`` (the subject's neutral face), restyled.

    Returns ``delta`` itself when this scan draws no jitter (``style.probability``)."""
    if style.probability <= 0.0 or rng.random() >= style.probability:
        return delta
    from affectvlm.synth.transfer import _smooth

    v = np.asarray(neutral, dtype=np.float64)
    d = np.asarray(delta, dtype=np.float64)
    pool = np.flatnonzero(model.face_mask) if model.face_mask.any() else np.arange(len(v))
    k = int(rng.integers(style.bumps[0], style.bumps[1] + 1))
    centres = v[rng.choice(pool, size=k, replace=False)]
    sds = rng.uniform(*style.bump_sd_mm, size=k)
    amps = rng.normal(0.0, style.log_gain_sd, size=k)
    twists = np.deg2rad(rng.normal(0.0, style.twist_sd_deg, size=k))
    passes = (int(rng.integers(style.smooth_passes[0], style.smooth_passes[1] + 1))
              if rng.random() < style.smooth_probability else 0)
    g_n, g_t = rng.uniform(*style.normal_gain), rng.uniform(*style.tangent_gain)

    log_gain, angle = np.zeros(len(v)), np.zeros(len(v))
    for c, sd, a, tw in zip(centres, sds, amps, twists):
        bump = np.exp(-((v - c) ** 2).sum(1) / (2.0 * sd * sd))
        log_gain += a * bump
        angle += tw * bump
    gain = np.clip(np.exp(log_gain), *style.gain_limits)
    n = vertex_normals(v, model.faces).astype(np.float64)
    along = (d * n).sum(1, keepdims=True) * n
    side = d - along
    side = np.cos(angle)[:, None] * side + np.sin(angle)[:, None] * np.cross(n, side)
    d = g_n * along + g_t * side
    if passes:
        size = np.percentile(np.linalg.norm(d, axis=1), 99)
        d = _smooth(d, model.faces, len(v), passes)
        after = np.percentile(np.linalg.norm(d, axis=1), 99)
        if after > 0:
            d *= float(np.clip(size / after, 1.0, 1.6))
    return d * gain[:, None]
