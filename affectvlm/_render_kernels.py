"""Optional numba CPU kernels for :mod:`affectvlm.render` (used when numba is installed).

One compiled loop per (mesh, view) image replaces the many small torch ops of the vectorised path,
which dominate on CPU when most scan triangles cover at most a pixel or two. Same rules as the
torch path: a pixel centre is covered when all three barycentrics are >= ``eps``; the depth test
keeps the smallest ``quantised depth << 32 | face`` per pixel. Kept in their own module so numba's
on-disk cache is keyed by a stable module name even when render.py is loaded under another name.
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


def _raster(verts, faces, vstart, fstart, rots, S, eps, depth_q, best):
    """Z-buffer every face of every image k = mesh * n_views + view into ``best[k, row * S + col]``."""
    K = best.shape[0]
    Vn = rots.shape[0]
    half = S / 2.0
    for k in numba.prange(K):
        b = k // Vn
        r = rots[k % Vn]
        v0 = vstart[b]
        nv = vstart[b + 1] - v0
        xy = np.empty((nv, 3), np.float64)
        for i in range(nv):
            p0, p1, p2 = verts[v0 + i, 0], verts[v0 + i, 1], verts[v0 + i, 2]
            xy[i, 0] = (r[0, 0] * p0 + r[0, 1] * p1 + r[0, 2] * p2 + 1.0) * half
            xy[i, 1] = (1.0 - (r[1, 0] * p0 + r[1, 1] * p1 + r[1, 2] * p2)) * half
            xy[i, 2] = r[2, 0] * p0 + r[2, 1] * p1 + r[2, 2] * p2
        zb = best[k]
        for f in range(fstart[b], fstart[b + 1]):
            ia, ib, ic = faces[f, 0] - v0, faces[f, 1] - v0, faces[f, 2] - v0
            x0, y0, z0 = xy[ia, 0], xy[ia, 1], xy[ia, 2]
            x1, y1, z1 = xy[ib, 0], xy[ib, 1], xy[ib, 2]
            x2, y2, z2 = xy[ic, 0], xy[ic, 1], xy[ic, 2]
            c0 = max(0, int(math.ceil(min(x0, x1, x2) - 0.5)))
            c1 = min(S - 1, int(math.floor(max(x0, x1, x2) - 0.5)))
            if c1 < c0:
                continue  # covers no pixel centre (most sub-pixel scan triangles)
            r0 = max(0, int(math.ceil(min(y0, y1, y2) - 0.5)))
            r1 = min(S - 1, int(math.floor(max(y0, y1, y2) - 0.5)))
            if r1 < r0:
                continue
            area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
            if abs(area) <= 1e-9:
                continue
            inv = 1.0 / area
            # barycentric of vertex i: A_i px + B_i py + C_i (edge j -> k opposite i)
            a0, b0, e0 = (y1 - y2) * inv, (x2 - x1) * inv, ((y2 - y1) * x1 - (x2 - x1) * y1) * inv
            a1, b1, e1 = (y2 - y0) * inv, (x0 - x2) * inv, ((y0 - y2) * x2 - (x0 - x2) * y2) * inv
            a2, b2, e2 = (y0 - y1) * inv, (x1 - x0) * inv, ((y1 - y0) * x0 - (x1 - x0) * y0) * inv
            az = a0 * z0 + a1 * z1 + a2 * z2
            bz = b0 * z0 + b1 * z1 + b2 * z2
            ez = e0 * z0 + e1 * z1 + e2 * z2
            for row in range(r0, r1 + 1):
                py = row + 0.5
                for col in range(c0, c1 + 1):
                    px = col + 0.5
                    if (a0 * px + b0 * py + e0 >= eps and a1 * px + b1 * py + e1 >= eps
                            and a2 * px + b2 * py + e2 >= eps):
                        d = min(max(-(az * px + bz * py + ez), -1.9), 1.9)
                        key = (np.int64((d + 2.0) * depth_q) << 32) | f
                        p = row * S + col
                        if key < zb[p]:
                            zb[p] = key


def _shade(verts, faces, normals, rots, S, best, fmesh_tex, colors, face_uv, tex, tex_off, tex_hw,
           ambient, shade, depth, normal, mask):
    """Winning face of each covered pixel -> maps. Empty (0-sized) outputs are skipped; background
    pixels are left untouched (the caller pre-fills them). ``fmesh_tex[b]`` = texture slot or -1."""
    K = best.shape[0]
    Vn = rots.shape[0]
    SS = S * S
    half = S / 2.0
    do_shade, do_depth, do_normal, do_mask = shade.shape[0] > 0, depth.shape[0] > 0, normal.shape[0] > 0, mask.shape[0] > 0
    has_col = colors.shape[0] > 0
    for k in numba.prange(K):
        r = rots[k % Vn]
        t = fmesh_tex[k // Vn]
        zb = best[k]
        for p in range(SS):
            key = zb[p]
            if key == EMPTY:
                continue
            f = key & 0xFFFFFFFF
            px = (p % S) + 0.5
            py = (p // S) + 0.5
            ia, ib, ic = faces[f, 0], faces[f, 1], faces[f, 2]
            x0 = (r[0, 0] * verts[ia, 0] + r[0, 1] * verts[ia, 1] + r[0, 2] * verts[ia, 2] + 1.0) * half
            y0 = (1.0 - (r[1, 0] * verts[ia, 0] + r[1, 1] * verts[ia, 1] + r[1, 2] * verts[ia, 2])) * half
            x1 = (r[0, 0] * verts[ib, 0] + r[0, 1] * verts[ib, 1] + r[0, 2] * verts[ib, 2] + 1.0) * half
            y1 = (1.0 - (r[1, 0] * verts[ib, 0] + r[1, 1] * verts[ib, 1] + r[1, 2] * verts[ib, 2])) * half
            x2 = (r[0, 0] * verts[ic, 0] + r[0, 1] * verts[ic, 1] + r[0, 2] * verts[ic, 2] + 1.0) * half
            y2 = (1.0 - (r[1, 0] * verts[ic, 0] + r[1, 1] * verts[ic, 1] + r[1, 2] * verts[ic, 2])) * half
            inv = 1.0 / ((x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0))
            w0 = ((x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)) * inv
            w1 = ((x0 - x2) * (py - y2) - (y0 - y2) * (px - x2)) * inv
            w2 = ((x1 - x0) * (py - y0) - (y1 - y0) * (px - x0)) * inv
            if do_depth:
                z = 0.0
                for j in range(3):
                    q = faces[f, j]
                    wj = w0 if j == 0 else (w1 if j == 1 else w2)
                    z += wj * (r[2, 0] * verts[q, 0] + r[2, 1] * verts[q, 1] + r[2, 2] * verts[q, 2])
                depth[k, 0, p] = min(max((1.0 + z) / 2.0, 0.0), 1.0)
            if do_mask:
                mask[k, 0, p] = 1.0
            if not (do_shade or do_normal):
                continue
            w0 = min(max(w0, 0.0), 1.0)
            w1 = min(max(w1, 0.0), 1.0)
            w2 = min(max(w2, 0.0), 1.0)
            n0 = w0 * normals[ia, 0] + w1 * normals[ib, 0] + w2 * normals[ic, 0]
            n1 = w0 * normals[ia, 1] + w1 * normals[ib, 1] + w2 * normals[ic, 1]
            n2 = w0 * normals[ia, 2] + w1 * normals[ib, 2] + w2 * normals[ic, 2]
            m0 = r[0, 0] * n0 + r[0, 1] * n1 + r[0, 2] * n2
            m1 = r[1, 0] * n0 + r[1, 1] * n1 + r[1, 2] * n2
            m2 = r[2, 0] * n0 + r[2, 1] * n1 + r[2, 2] * n2
            nn = max(math.sqrt(m0 * m0 + m1 * m1 + m2 * m2), 1e-12)
            m0, m1, m2 = m0 / nn, m1 / nn, m2 / nn
            if do_normal:
                s = -1.0 if m2 < 0 else 1.0
                normal[k, 0, p] = min(max((s * m0 + 1.0) / 2.0, 0.0), 1.0)
                normal[k, 1, p] = min(max((s * m1 + 1.0) / 2.0, 0.0), 1.0)
                normal[k, 2, p] = min(max((s * m2 + 1.0) / 2.0, 0.0), 1.0)
            if not do_shade:
                continue
            lam = ambient + (1.0 - ambient) * abs(m2)
            c0 = c1 = c2 = 1.0
            if t >= 0:
                u = w0 * face_uv[f, 0, 0] + w1 * face_uv[f, 1, 0] + w2 * face_uv[f, 2, 0]
                v = w0 * face_uv[f, 0, 1] + w1 * face_uv[f, 1, 1] + w2 * face_uv[f, 2, 1]
                H, W = tex_hw[t, 0], tex_hw[t, 1]
                # torch grid_sample, bilinear, align_corners=False, border padding (u right, v up)
                ix = min(max(u * W - 0.5, 0.0), W - 1.0)
                iy = min(max((1.0 - v) * H - 0.5, 0.0), H - 1.0)
                xa, ya = int(math.floor(ix)), int(math.floor(iy))
                fx, fy = ix - xa, iy - ya
                xb, yb = min(xa + 1, W - 1), min(ya + 1, H - 1)
                o = tex_off[t]
                i00, i01 = o + (ya * W + xa) * 3, o + (ya * W + xb) * 3
                i10, i11 = o + (yb * W + xa) * 3, o + (yb * W + xb) * 3
                g00, g01, g10, g11 = (1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy
                c0 = g00 * tex[i00] + g01 * tex[i01] + g10 * tex[i10] + g11 * tex[i11]
                c1 = g00 * tex[i00 + 1] + g01 * tex[i01 + 1] + g10 * tex[i10 + 1] + g11 * tex[i11 + 1]
                c2 = g00 * tex[i00 + 2] + g01 * tex[i01 + 2] + g10 * tex[i10 + 2] + g11 * tex[i11 + 2]
            elif has_col:
                c0 = w0 * colors[ia, 0] + w1 * colors[ib, 0] + w2 * colors[ic, 0]
                c1 = w0 * colors[ia, 1] + w1 * colors[ib, 1] + w2 * colors[ic, 1]
                c2 = w0 * colors[ia, 2] + w1 * colors[ib, 2] + w2 * colors[ic, 2]
            shade[k, 0, p] = min(max(lam * c0, 0.0), 1.0)
            shade[k, 1, p] = min(max(lam * c1, 0.0), 1.0)
            shade[k, 2, p] = min(max(lam * c2, 0.0), 1.0)


if numba is not None:
    vertex_normals = numba.njit(cache=True, nogil=True)(_vertex_normals)
    raster = numba.njit(parallel=True, cache=True, nogil=True)(_raster)
    shade = numba.njit(parallel=True, cache=True, nogil=True)(_shade)
else:  # pragma: no cover
    vertex_normals = raster = shade = None
