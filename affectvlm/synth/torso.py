"""Shoulders and upper chest below a head, as scanners that see more than the face record them (BP4D's and
BU-4DFE's raw scans; busts from structured-light rigs). Procedural: no body model is needed, so any face
model can wear one."""
from __future__ import annotations

import numpy as np


def torso_surface(head: np.ndarray, rng: np.random.Generator, *, rings: int = 24, around: int = 64
                  ) -> tuple[np.ndarray, np.ndarray]:
    """A random shoulder-and-chest surface (vertices mm, triangles) joined under ``head`` (N, 3) mm, whose
    frame is +y up and +z front. From the neck's lowest ring the shoulders slope out and down to a
    superelliptic chest section, which then runs straight down. Half the draws keep the front only (what one
    scanner sees)."""
    lo = head[:, 1].min()
    neck = head[head[:, 1] < lo + 0.06 * np.ptp(head[:, 1])]
    cx, cz = float(np.median(neck[:, 0])), float(np.median(neck[:, 2]))
    r_neck = float(np.clip(np.median(np.hypot(neck[:, 0] - cx, neck[:, 2] - cz)), 35.0, 80.0))
    half_w, half_d = rng.uniform(150.0, 230.0), rng.uniform(85.0, 130.0)
    drop, length = rng.uniform(40.0, 110.0), rng.uniform(60.0, 320.0)
    p = rng.uniform(2.2, 4.0)  # 2: an ellipse; larger: squarer shoulders
    chest_z = cz + rng.uniform(-25.0, 25.0)
    theta = np.linspace(0.0, 2 * np.pi, around, endpoint=False)
    c, s = np.cos(theta), np.sin(theta)
    ex, ez = half_w * np.sign(c) * np.abs(c) ** (2 / p), half_d * np.sign(s) * np.abs(s) ** (2 / p)
    t = np.linspace(0.0, 1.0, rings)
    cap = np.minimum(t / 0.45, 1.0)  # 0..1 over the shoulders, then 1 down the chest
    wall = np.maximum(t - 0.45, 0.0) / 0.55
    k = np.sin(cap * np.pi / 2)[:, None]  # out quickly, then level
    x = cx + (1 - k) * r_neck * c + k * ex
    z = (1 - k) * (cz + r_neck * s) + k * (chest_z + ez)
    y = np.broadcast_to((lo + 3.0 - drop * cap ** 1.3 - length * wall)[:, None], x.shape)
    v = np.stack([x, y, z], -1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(rings - 1), np.arange(around), indexing="ij")
    a, b = i * around + j, i * around + (j + 1) % around
    f = np.concatenate([np.stack([a, a + around, b], -1), np.stack([b, a + around, b + around], -1)]).reshape(-1, 3)
    if rng.random() < 0.5:
        cut = chest_z + rng.uniform(-0.3, 0.2) * half_d
        f = f[v[f, 2].mean(1) > cut]
    return v, f
