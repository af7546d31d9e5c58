"""Optional numba CPU kernels for :mod:`affectvlm.render` (dispatched by :mod:`affectvlm.render.numba_backend`).

One compiled loop per (mesh, view) image replaces the many small torch ops of the vectorised path,
which dominate on CPU when most scan triangles cover at most a pixel or two. Same rules as the torch
path: a pixel centre is covered when all three barycentrics are >= ``eps``; the depth test keeps the
smallest ``quantised depth << 32 | face`` per pixel. Kept at this fixed place, outside the render
package: numba's on-disk cache records the module name, so it stays valid when a copy of the render
package is loaded under another name (``bench/bench_render.py --render-module``).
"""
from __future__ import annotations

import math

import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover - depends on the environment
    numba = None

AVAILABLE = numba is not None
EMPTY = np.iinfo(np.int64).max


def _vertex_normals(verts, faces, out):
    """Area-weighted unit vertex normals (sum of face cross products, normalised; unused -> 0)."""
    out[:] = 0.0
    for f in range(faces.shape[0]):
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        ux, uy, uz = verts[b, 0] - verts[a, 0], verts[b, 1] - verts[a, 1], verts[b, 2] - verts[a, 2]
        vx, vy, vz = verts[c, 0] - verts[a, 0], verts[c, 1] - verts[a, 1], verts[c, 2] - verts[a, 2]
        nx, ny, nz = uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx
        for i in (a, b, c):
            out[i, 0] += nx
            out[i, 1] += ny
            out[i, 2] += nz
    for i in range(out.shape[0]):
        n = math.sqrt(out[i, 0] ** 2 + out[i, 1] ** 2 + out[i, 2] ** 2)
        if n > 1e-20:
            out[i, 0] /= n
            out[i, 1] /= n
            out[i, 2] /= n
        else:
            out[i, 0] = out[i, 1] = out[i, 2] = 0.0


def _fit_unit(v, f, out_v):
    """Centre (bounding box of the used vertices) and scale to unit radius into ``out_v`` (float32).
    Returns (status, cx, cy, cz, radius): status 1 = face index out of range, 2 = NaN/inf vertex."""
    n = v.shape[0]
    used = np.zeros(n, np.bool_)
    for i in range(f.shape[0]):
        for j in range(3):
            q = f[i, j]
            if q < 0 or q >= n:
                return 1, 0.0, 0.0, 0.0, 0.0
            used[q] = True
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    for i in range(n):
        if used[i]:
            for j in range(3):
                x = np.float64(v[i, j])
                if not math.isfinite(x):
                    return 2, 0.0, 0.0, 0.0, 0.0
                lo[j] = min(lo[j], x)
                hi[j] = max(hi[j], x)
    c0, c1, c2 = (lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, (lo[2] + hi[2]) / 2
    r2 = 0.0
    for i in range(n):
        if used[i]:
            d0, d1, d2 = v[i, 0] - c0, v[i, 1] - c1, v[i, 2] - c2
            r2 = max(r2, d0 * d0 + d1 * d1 + d2 * d2)
    r = math.sqrt(r2)
    if r > 0:
        for i in range(n):
            out_v[i, 0] = (v[i, 0] - c0) / r
            out_v[i, 1] = (v[i, 1] - c1) / r
            out_v[i, 2] = (v[i, 2] - c2) / r
    return 0, c0, c1, c2, r


def _image(verts, faces, normals, rots, size, eps, depth_q, colors, face_uv, tex, tex_scale, ambient, background,
           shade, depth, normal, mask, k, zb, xy, nr, coef, pb):
    """Render view k of one mesh into row k of the output maps (0-sized maps are skipped; every
    pixel of the others is written). ``zb``, ``xy``, ``nr``, ``coef``, ``pb`` are scratch."""
    half = size / 2.0
    r = rots[k]
    for i in range(verts.shape[0]):  # projected vertices (pixels x, y; view z) and view-space normals
        p0, p1, p2 = verts[i, 0], verts[i, 1], verts[i, 2]
        xy[i, 0] = (r[0, 0] * p0 + r[0, 1] * p1 + r[0, 2] * p2 + 1.0) * half
        xy[i, 1] = (1.0 - (r[1, 0] * p0 + r[1, 1] * p1 + r[1, 2] * p2)) * half
        xy[i, 2] = r[2, 0] * p0 + r[2, 1] * p1 + r[2, 2] * p2
        q0, q1, q2 = normals[i, 0], normals[i, 1], normals[i, 2]
        nr[i, 0] = r[0, 0] * q0 + r[0, 1] * q1 + r[0, 2] * q2
        nr[i, 1] = r[1, 0] * q0 + r[1, 1] * q1 + r[1, 2] * q2
        nr[i, 2] = r[2, 0] * q0 + r[2, 1] * q1 + r[2, 2] * q2
        # first / last pixel column and row whose centre (c + 0.5) is >= / <= this vertex: a face's
        # pixel box is then integer min / max over its corners (ceil(min) = min(ceil), floor(max) = ...)
        pb[i, 0] = int(math.ceil(xy[i, 0] - 0.5))
        pb[i, 1] = int(math.floor(xy[i, 0] - 0.5))
        pb[i, 2] = int(math.ceil(xy[i, 1] - 0.5))
        pb[i, 3] = int(math.floor(xy[i, 1] - 0.5))
    zb[:] = EMPTY
    for f in range(faces.shape[0]):
        ia, ib, ic = faces[f, 0], faces[f, 1], faces[f, 2]
        c0 = max(0, min(pb[ia, 0], pb[ib, 0], pb[ic, 0]))
        c1 = min(size - 1, max(pb[ia, 1], pb[ib, 1], pb[ic, 1]))
        if c1 < c0:
            continue  # covers no pixel centre (most sub-pixel scan triangles)
        r0 = max(0, min(pb[ia, 2], pb[ib, 2], pb[ic, 2]))
        r1 = min(size - 1, max(pb[ia, 3], pb[ib, 3], pb[ic, 3]))
        if r1 < r0:
            continue
        x0, y0, z0 = xy[ia, 0], xy[ia, 1], xy[ia, 2]
        x1, y1, z1 = xy[ib, 0], xy[ib, 1], xy[ib, 2]
        x2, y2, z2 = xy[ic, 0], xy[ic, 1], xy[ic, 2]
        area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        if abs(area) <= 1e-9:
            continue
        inv = 1.0 / area
        # barycentric of vertex i: A_i px + B_i py + C_i (edge j -> k opposite i); depth plane z
        a0, b0, e0 = (y1 - y2) * inv, (x2 - x1) * inv, ((y2 - y1) * x1 - (x2 - x1) * y1) * inv
        a1, b1, e1 = (y2 - y0) * inv, (x0 - x2) * inv, ((y0 - y2) * x2 - (x0 - x2) * y2) * inv
        a2, b2, e2 = (y0 - y1) * inv, (x1 - x0) * inv, ((y1 - y0) * x0 - (x1 - x0) * y0) * inv
        az = a0 * z0 + a1 * z1 + a2 * z2
        bz = b0 * z0 + b1 * z1 + b2 * z2
        ez = e0 * z0 + e1 * z1 + e2 * z2
        cf = coef[f]
        cf[0], cf[1], cf[2], cf[3], cf[4], cf[5] = a0, b0, e0, a1, b1, e1
        cf[6], cf[7], cf[8], cf[9], cf[10], cf[11] = a2, b2, e2, az, bz, ez
        for row in range(r0, r1 + 1):
            py = row + 0.5
            for col in range(c0, c1 + 1):
                px = col + 0.5
                if (a0 * px + b0 * py + e0 >= eps and a1 * px + b1 * py + e1 >= eps
                        and a2 * px + b2 * py + e2 >= eps):
                    d = min(max(-(az * px + bz * py + ez), -1.9), 1.9)
                    key = (np.int64((d + 2.0) * depth_q) << 32) | f
                    p = row * size + col
                    if key < zb[p]:
                        zb[p] = key
    do_shade, do_depth, do_normal = shade.shape[0] > 0, depth.shape[0] > 0, normal.shape[0] > 0
    do_mask, has_col, has_tex = mask.shape[0] > 0, colors.shape[0] > 0, tex.shape[0] > 0
    for p in range(size * size):
        key = zb[p]
        if key == EMPTY:
            if do_shade:
                shade[k, 0, p] = shade[k, 1, p] = shade[k, 2, p] = background
            if do_depth:
                depth[k, 0, p] = 0.0
            if do_normal:
                normal[k, 0, p] = normal[k, 1, p] = normal[k, 2, p] = 0.0
            if do_mask:
                mask[k, 0, p] = 0.0
            continue
        f = key & 0xFFFFFFFF
        cf = coef[f]
        row = p // size
        px = (p - row * size) + 0.5
        py = row + 0.5
        if do_depth:
            depth[k, 0, p] = min(max((1.0 + cf[9] * px + cf[10] * py + cf[11]) / 2.0, 0.0), 1.0)
        if do_mask:
            mask[k, 0, p] = 1.0
        if not (do_shade or do_normal):
            continue
        w0 = min(max(cf[0] * px + cf[1] * py + cf[2], 0.0), 1.0)
        w1 = min(max(cf[3] * px + cf[4] * py + cf[5], 0.0), 1.0)
        w2 = min(max(cf[6] * px + cf[7] * py + cf[8], 0.0), 1.0)
        ia, ib, ic = faces[f, 0], faces[f, 1], faces[f, 2]
        m0 = w0 * nr[ia, 0] + w1 * nr[ib, 0] + w2 * nr[ic, 0]
        m1 = w0 * nr[ia, 1] + w1 * nr[ib, 1] + w2 * nr[ic, 1]
        m2 = w0 * nr[ia, 2] + w1 * nr[ib, 2] + w2 * nr[ic, 2]
        inn = 1.0 / max(math.sqrt(m0 * m0 + m1 * m1 + m2 * m2), 1e-12)
        m0, m1, m2 = m0 * inn, m1 * inn, m2 * inn
        if do_normal:
            s = -0.5 if m2 < 0 else 0.5
            normal[k, 0, p] = min(max(s * m0 + 0.5, 0.0), 1.0)
            normal[k, 1, p] = min(max(s * m1 + 0.5, 0.0), 1.0)
            normal[k, 2, p] = min(max(s * m2 + 0.5, 0.0), 1.0)
        if not do_shade:
            continue
        lam = ambient + (1.0 - ambient) * abs(m2)
        c0 = c1 = c2 = 1.0
        if has_tex:
            u = w0 * face_uv[f, 0, 0] + w1 * face_uv[f, 1, 0] + w2 * face_uv[f, 2, 0]
            v = w0 * face_uv[f, 0, 1] + w1 * face_uv[f, 1, 1] + w2 * face_uv[f, 2, 1]
            H, W = tex.shape[0], tex.shape[1]
            # torch grid_sample, bilinear, align_corners=False, border padding (u right, v up)
            ix = min(max(u * W - 0.5, 0.0), W - 1.0)
            iy = min(max((1.0 - v) * H - 0.5, 0.0), H - 1.0)
            xa, ya = int(ix), int(iy)
            fx, fy = ix - xa, iy - ya
            xb, yb = min(xa + 1, W - 1), min(ya + 1, H - 1)
            g00, g01, g10, g11 = (1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy
            c0 = g00 * tex[ya, xa, 0] + g01 * tex[ya, xb, 0] + g10 * tex[yb, xa, 0] + g11 * tex[yb, xb, 0]
            c1 = g00 * tex[ya, xa, 1] + g01 * tex[ya, xb, 1] + g10 * tex[yb, xa, 1] + g11 * tex[yb, xb, 1]
            c2 = g00 * tex[ya, xa, 2] + g01 * tex[ya, xb, 2] + g10 * tex[yb, xa, 2] + g11 * tex[yb, xb, 2]
            c0, c1, c2 = c0 * tex_scale, c1 * tex_scale, c2 * tex_scale  # uint8 textures: 1 / 255
        elif has_col:
            c0 = w0 * colors[ia, 0] + w1 * colors[ib, 0] + w2 * colors[ic, 0]
            c1 = w0 * colors[ia, 1] + w1 * colors[ib, 1] + w2 * colors[ic, 1]
            c2 = w0 * colors[ia, 2] + w1 * colors[ib, 2] + w2 * colors[ic, 2]
        shade[k, 0, p] = min(max(lam * c0, 0.0), 1.0)
        shade[k, 1, p] = min(max(lam * c1, 0.0), 1.0)
        shade[k, 2, p] = min(max(lam * c2, 0.0), 1.0)


def _render(verts, faces, normals, rots, size, eps, depth_q, colors, face_uv, tex, tex_scale, ambient, background,
            shade, depth, normal, mask, k0, k1):
    """Views k0..k1 of one mesh, one at a time, with scratch (z-buffer, per-vertex and per-face
    tables) that stays in cache."""
    zb = np.empty(size * size, np.int64)
    xy = np.empty((verts.shape[0], 3), np.float64)
    nr = np.empty((verts.shape[0], 3), np.float64)
    coef = np.empty((faces.shape[0], 12), np.float64)
    pb = np.empty((verts.shape[0], 4), np.int32)
    for k in range(k0, k1):
        _image(verts, faces, normals, rots, size, eps, depth_q, colors, face_uv, tex, tex_scale, ambient, background,
               shade, depth, normal, mask, k, zb, xy, nr, coef, pb)


if numba is not None:
    # serial kernels that release the GIL; run_tasks() spreads images over Python threads. numba's
    # own parallel=True was 4x slower here: its OpenMP workers spin after each call and starve torch
    # on a busy CPU, and its workqueue layer aborts when called from several threads (Streamlit).
    vertex_normals = numba.njit(cache=True, nogil=True)(_vertex_normals)
    fit_unit = numba.njit(cache=True, nogil=True)(_fit_unit)
    _image = numba.njit(cache=True, nogil=True)(_image)
    render = numba.njit(cache=True, nogil=True)(_render)
else:  # pragma: no cover
    vertex_normals = fit_unit = render = None

_POOL: list = []


def run_tasks(tasks: list, n_threads: int) -> None:
    """Run ``fn(*args)`` for each ``(fn, args)``: inline with one thread, else on a shared thread pool
    (the kernels release the GIL)."""
    n = max(1, min(n_threads, len(tasks)))
    if n == 1:
        for fn, args in tasks:
            fn(*args)
        return
    from concurrent.futures import ThreadPoolExecutor

    import os

    # a new pool after fork (the parent's worker threads do not exist in the child) or when more
    # threads are wanted
    if not _POOL or _POOL[1] != os.getpid() or _POOL[0]._max_workers < n:
        _POOL[:] = [ThreadPoolExecutor(max_workers=n, thread_name_prefix="affectvlm-render"), os.getpid()]
    for fut in [_POOL[0].submit(fn, *args) for fn, args in tasks]:
        fut.result()
