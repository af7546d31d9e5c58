"""Write small binary FBX 7.4 files for tests: a head-like avatar with HeadBox-named AU blend shapes."""
from __future__ import annotations

import struct
import zlib

import numpy as np

_ARR = {np.dtype("<f8"): b"d", np.dtype("<f4"): b"f", np.dtype("<i4"): b"i", np.dtype("<i8"): b"l"}


def _prop(v) -> bytes:
    if isinstance(v, np.int64):  # object ids are 64-bit in FBX 7
        return b"L" + struct.pack("<q", int(v))
    if isinstance(v, bool):
        return b"C" + struct.pack("<?", v)
    if isinstance(v, int):
        return b"L" + struct.pack("<q", v) if abs(v) > 2**31 - 1 else b"I" + struct.pack("<i", v)
    if isinstance(v, float):
        return b"D" + struct.pack("<d", v)
    if isinstance(v, str):
        b = v.encode()
        return b"S" + struct.pack("<I", len(b)) + b
    if isinstance(v, tuple) and v[0] == "z":  # ("z", array): a deflated array
        a = np.ascontiguousarray(v[1])
        raw = zlib.compress(a.tobytes())
        return _ARR[a.dtype] + struct.pack("<III", len(a), 1, len(raw)) + raw
    a = np.ascontiguousarray(v)
    raw = a.tobytes()
    return _ARR[a.dtype] + struct.pack("<III", len(a), 0, len(raw)) + raw


def _node(name: str, props=(), children=(), offset: int = 0) -> bytes:
    p = b"".join(_prop(x) for x in props)
    head_len = 12 + 1 + len(name)
    body = p
    pos = offset + head_len + len(p)
    for c in children:
        cb = _node(*c, offset=pos)
        body += cb
        pos += len(cb)
    if children:
        body += b"\x00" * 13
    end = offset + head_len + len(body)
    return struct.pack("<III", end, len(props), len(p)) + bytes([len(name)]) + name.encode() + body


def fbx_bytes(top: list[tuple]) -> bytes:
    """``top``: (name, props, children) tuples, children likewise."""
    out = b"Kaydara FBX Binary  \x00\x1a\x00" + struct.pack("<I", 7400)
    for n in top:
        out += _node(*n, offset=len(out))
    return out + b"\x00" * 13 + b"\x00" * 160


def _p70(name: str, kind: str, *vals) -> tuple:
    return ("P", (name, kind, "", "A", *[float(v) for v in vals]), ())


def head_avatar(*, left_is_plus_x: bool = True, compress: bool = True) -> tuple[bytes, dict]:
    """An ellipsoid 'head' (cm, Z up, face toward -Y, as 3ds Max exports Rocketbox) on a thin 'body' column,
    a mesh node rotated -90 degrees about X (Y up in the file's global settings), and three AU shapes:
    AU_12_L/R_LipCornerPuller moving the lower-front-left/right, AU_26_JawDrop the lower front."""
    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 24, endpoint=False), np.linspace(0.1, np.pi - 0.1, 16))
    x = 7.5 * np.sin(v) * np.cos(u)
    y = 9.0 * np.sin(v) * np.sin(u)  # -y is the front
    z = 160.0 + 11.0 * np.cos(v)
    verts = np.stack([x.ravel(), y.ravel(), z.ravel()], 1)
    nu, nv = 24, 16
    quads = []
    for j in range(nv - 1):
        for i in range(nu):
            a, b = j * nu + i, j * nu + (i + 1) % nu
            quads.append([a, b, b + nu, a + nu])
    poly = []
    for q in quads:
        poly += q[:-1] + [~q[-1]]
    front = verts[:, 1] < -4
    low = verts[:, 2] < 158
    side = 1 if left_is_plus_x else -1
    shapes = {}
    for name, sel, d in [("AU_12_L_LipCornerPuller", front & low & (side * verts[:, 0] > 1), (0.3 * side, 0, 0.4)),
                         ("AU_12_R_LipCornerPuller", front & low & (side * verts[:, 0] < -1), (-0.3 * side, 0, 0.4)),
                         ("AU_26_JawDrop", front & low, (0, 0, -1.0)),
                         ("AA_VI_00_Sil", front, (0, 0, 0.1))]:
        idx = np.flatnonzero(sel).astype(np.int32)
        shapes[name] = (idx, np.tile(np.asarray(d, np.float64), (len(idx), 1)))
    arr = (lambda a: ("z", a)) if compress else (lambda a: a)
    geo_id, model_id = np.int64(1000), np.int64(2000)
    objects = [("Geometry", (geo_id, "body\x00\x01Geometry", "Mesh"),
                [("Vertices", (arr(verts.ravel().astype("<f8")),), ()),
                 ("PolygonVertexIndex", (arr(np.asarray(poly, "<i4")),), ())]),
               ("Model", (model_id, "head\x00\x01Model", "Mesh"),
                [("Properties70", (), [_p70("Lcl Rotation", "Lcl Rotation", -90, 0, 0)])])]
    conns = [("C", ("OO", geo_id, model_id), ()), ("C", ("OO", model_id, np.int64(0)), ())]
    for k, (name, (idx, d)) in enumerate(shapes.items()):
        sid = np.int64(3000 + k)
        objects.append(("Geometry", (sid, f"{name}\x00\x01Geometry", "Shape"),
                        [("Indexes", (arr(idx),), ()), ("Vertices", (arr(d.ravel()),), ())]))
    top = [("FBXHeaderExtension", (), [("FBXHeaderVersion", (1003,), ()), ("FBXVersion", (7400,), ())]),
           ("GlobalSettings", (), [("Properties70", (), [("P", ("UpAxis", "int", "Integer", "", 1), ()),
                                                          ("P", ("UpAxisSign", "int", "Integer", "", 1), ()),
                                                          _p70("UnitScaleFactor", "double", 1.0)])]),
           ("Objects", (), objects), ("Connections", (), conns)]
    return fbx_bytes(top), {"vertices": verts, "poly": np.asarray(poly), "shapes": shapes}
