"""Bosphorus ``.bnt`` range grids: reader (grid -> triangle mesh) and writer (for tests and synthetic data).

    from affectvlm.io.bnt import read_bnt, write_bnt
    mesh = read_bnt(open("bs000_E_HAPPY_0.bnt", "rb").read(), "bs000_E_HAPPY_0.bnt")
    write_bnt("x.bnt", xyz_grid, uv_grid, zmin=-1e9, image_name="x.png")

Layout (little-endian): ``uint16 nrows, uint16 ncols, float64 zmin, uint16 len, len bytes image file name,
uint32 N (= nrows*ncols*5)``, then ``N`` float64 stored column by column as an (N/5, 5) table of
``x y z u v``; point ``i`` sits at grid row ``i // ncols``, column ``i % ncols``. A point whose x, y or z
equals ``zmin`` (or is not finite) is background; grid cells touching background are dropped, and
vertices no triangle uses are removed. The file's v runs down the image; ``face_uv`` is flipped to the
`Mesh` convention (v up). Triangles are wound so their summed normal points to +Z
(towards the scanner).
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from affectvlm.errors import InputError
from affectvlm.fileio import atomic_write_bytes
from affectvlm.limits import Limits
from affectvlm.mesh import Mesh
from affectvlm.io._common import check_counts, finish_mesh, get_limits

__all__ = ["read_bnt", "write_bnt"]


def _parse_header(data: bytes, source: str) -> tuple[int, int, float, str, int, int]:
    if len(data) < 16:
        raise InputError(source, f"too short for a .bnt file ({len(data)} bytes)")
    nrows, ncols, zmin, name_len = struct.unpack_from("<HHdH", data, 0)
    off = 14 + name_len
    if off + 4 > len(data):
        raise InputError(source, "truncated .bnt header (image name runs past the end)")
    name = data[14:off].split(b"\0", 1)[0].decode("latin-1", "replace")
    (n,) = struct.unpack_from("<I", data, off)
    return nrows, ncols, zmin, name, n, off + 4


def read_bnt(data: bytes, source: str, *, limits: Limits | None = None) -> Mesh:
    """Parse a ``.bnt`` grid into a validated `Mesh` with ``face_uv`` from the grid's u, v."""
    limits = get_limits(limits)
    data = bytes(data)
    nrows, ncols, zmin, image_name, n, off = _parse_header(data, source)
    n_points = nrows * ncols
    if n != n_points * 5:
        raise InputError(source, f"corrupt .bnt: header says {n} values but a {nrows}x{ncols} grid needs "
                                 f"{n_points * 5} (not a .bnt file?)")
    if n_points == 0:
        raise InputError(source, "empty .bnt grid (0 rows or columns)")
    check_counts(n_points, 0, limits, source)
    need = off + 8 * n
    if len(data) < need:
        raise InputError(source, f"truncated .bnt: {len(data)} bytes, the header promises {need}")
    table = np.frombuffer(data, "<f8", count=n, offset=off).reshape(5, n_points).T
    xyz = table[:, :3]
    if not np.isfinite(zmin):
        raise InputError(source, "corrupt .bnt: zmin is not finite")
    valid = np.isfinite(xyz).all(axis=1) & ~(xyz == zmin).any(axis=1)
    grid = valid.reshape(nrows, ncols)
    idx = np.arange(n_points).reshape(nrows, ncols)
    a, b = idx[:-1, :-1], idx[:-1, 1:]
    c, d = idx[1:, :-1], idx[1:, 1:]
    va, vb, vc, vd = grid[:-1, :-1], grid[:-1, 1:], grid[1:, :-1], grid[1:, 1:]
    ok = va & vb & vc & vd
    faces = np.concatenate([np.stack([a[ok], c[ok], b[ok]], 1), np.stack([c[ok], d[ok], b[ok]], 1)])
    if len(faces) == 0:
        raise InputError(source, "the .bnt grid has no cell without background: no faces")
    used = np.unique(faces)
    remap = np.full(n_points, -1, np.int64)
    remap[used] = np.arange(used.size)
    faces = remap[faces]
    verts = xyz[used]
    uv = table[used, 3:5]
    e1, e2 = verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]]
    flipped = float(np.cross(e1, e2)[:, 2].sum()) < 0
    if flipped:
        faces = faces[:, [0, 2, 1]]
    face_uv = None
    if np.isfinite(uv).all():  # Bosphorus v runs down the image, Mesh v runs up
        face_uv = np.stack([uv[:, 0], 1.0 - uv[:, 1]], 1)[faces]
    meta = {"format": "bnt", "grid": [nrows, ncols], "zmin": zmin, "flipped_winding": flipped}
    if image_name:
        meta["texture_file"] = image_name
    return finish_mesh(verts, faces, source, limits, face_uv=face_uv, meta=meta)


def write_bnt(path: str | os.PathLike, xyz: np.ndarray, uv: np.ndarray | None = None, *, zmin: float = -1e9,
              background: np.ndarray | None = None, image_name: str = "") -> Path:
    """Write an (nrows, ncols, 3) point grid as ``.bnt``; ``background`` (nrows, ncols) bool cells get ``zmin``.

    ``uv`` is (nrows, ncols, 2) in [0, 1] in the file's image convention (v = 0 at the top row); by default u
    runs along the columns and v down the rows.
    """
    xyz = np.asarray(xyz, np.float64)
    if xyz.ndim != 3 or xyz.shape[2] != 3:
        raise ValueError("xyz must have shape (nrows, ncols, 3)")
    nrows, ncols = xyz.shape[:2]
    if uv is None:
        vv, uu = np.meshgrid(np.linspace(0, 1, nrows), np.linspace(0, 1, ncols), indexing="ij")
        uv = np.stack([uu, vv], -1)
    pts = np.concatenate([xyz, np.asarray(uv, np.float64)], axis=2).reshape(-1, 5)
    if background is not None:
        pts[np.asarray(background, bool).ravel(), :3] = zmin
    name = image_name.encode("latin-1")
    head = struct.pack("<HHdH", nrows, ncols, zmin, len(name)) + name + struct.pack("<I", pts.size)
    path = Path(path)
    atomic_write_bytes(path, head + np.ascontiguousarray(pts.T, "<f8").tobytes())
    return path
