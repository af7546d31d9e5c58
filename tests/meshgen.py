"""Procedural face-like meshes for tests and benchmarks (no external data needed).

A height field over an elliptical domain: a rounded forehead/cheek dome, a nose ridge, eye sockets
and a mouth groove, so that front, left and right views differ the way a real cropped face scan does.
Units are millimetres around an arbitrary origin, like a scanner's ``_F3D`` output.
"""
from __future__ import annotations

import numpy as np

from affectvlm.mesh import Mesh


def face_like_mesh(n: int = 64, *, smile: float = 0.0, origin=(12.0, -40.0, 980.0), scale_mm: float = 80.0,
                   textured: bool = True, seed: int = 0) -> Mesh:
    """Return a grid face of about ``2 * n * n * 0.78`` triangles, +Z facing the viewer, +Y up."""
    xs = np.linspace(-1.0, 1.0, n, dtype=np.float64)
    ys = np.linspace(-1.25, 1.25, n, dtype=np.float64)
    X, Y = np.meshgrid(xs, ys)
    r2 = X**2 + (Y / 1.25) ** 2
    inside = r2 <= 1.0
    dome = np.sqrt(np.clip(1.0 - 0.85 * r2, 0.0, None))
    nose = 0.35 * np.exp(-((X / 0.12) ** 2) - ((Y + 0.05) / 0.35) ** 2)
    eyes = -0.12 * (np.exp(-(((X - 0.38) / 0.16) ** 2) - ((Y - 0.35) / 0.1) ** 2)
                    + np.exp(-(((X + 0.38) / 0.16) ** 2) - ((Y - 0.35) / 0.1) ** 2))
    mouth_y = -0.55 + smile * 0.15 * X**2 * 4
    mouth = -0.08 * np.exp(-((X / 0.35) ** 2) - ((Y - mouth_y) / 0.05) ** 2)
    Z = 0.6 * dome + nose + eyes + mouth
    rng = np.random.default_rng(seed)
    Z = Z + rng.normal(0.0, 0.002, Z.shape)

    idx = -np.ones(X.shape, dtype=np.int64)
    idx[inside] = np.arange(int(inside.sum()))
    verts = np.stack([X[inside], Y[inside], Z[inside]], axis=1) * (scale_mm / 2.0)
    verts = verts + np.asarray(origin, dtype=np.float64)
    a, b = idx[:-1, :-1], idx[:-1, 1:]
    c, d = idx[1:, :-1], idx[1:, 1:]
    ok = (a >= 0) & (b >= 0) & (c >= 0) & (d >= 0)
    # counter-clockwise seen from +Z: (a, b, d) and (a, d, c) with x right, y up
    faces = np.concatenate([np.stack([a[ok], b[ok], d[ok]], 1), np.stack([a[ok], d[ok], c[ok]], 1)])
    mesh = Mesh(vertices=verts.astype(np.float32), faces=faces.astype(np.int64), source=f"face_like_mesh(n={n})")
    if textured:
        uv = np.stack([(X[inside] + 1) / 2, (Y[inside] + 1.25) / 2.5], 1).astype(np.float32)
        mesh.face_uv = uv[faces]
        h = w = 64
        yy, xx = np.mgrid[0:h, 0:w]
        tex = np.zeros((h, w, 3), np.uint8)
        tex[..., 0] = 150 + (xx * 80 // w)
        tex[..., 1] = 110 + (yy * 60 // h)
        tex[..., 2] = 90
        tex[((xx // 8) + (yy // 8)) % 2 == 0] //= 2  # checker so texture sampling errors are visible
        mesh.texture = tex
    return mesh
