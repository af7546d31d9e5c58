"""Binary glTF (GLB) avatar heads with ARKit-named morph targets, written byte by byte for the reader's tests."""
from __future__ import annotations

import json
import struct

import numpy as np

# ARKit names the test head carries beyond the ones that move (a head needs ten or more)
QUIET = ["browDownLeft", "browDownRight", "eyeWideLeft", "eyeWideRight", "noseSneerLeft", "noseSneerRight",
         "mouthFrownLeft", "mouthFrownRight", "viseme_aa"]


def ellipsoid_head(nu: int = 24, nv: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """An ellipsoid 'head' in metres, +Y up, the face toward +Z, 1.6 m off the ground: vertices, triangles."""
    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, nu, endpoint=False), np.linspace(0.1, np.pi - 0.1, nv))
    x = 0.075 * np.sin(v) * np.cos(u)
    z = 0.09 * np.sin(v) * np.sin(u)
    y = 1.6 + 0.11 * np.cos(v)
    verts = np.stack([x.ravel(), y.ravel(), z.ravel()], 1)
    tris = []
    for j in range(nv - 1):
        for i in range(nu):
            a, b = j * nu + i, j * nu + (i + 1) % nu
            tris += [[a, b, b + nu], [a, b + nu, a + nu]]
    return verts, np.asarray(tris, np.int64)


def head_targets(verts: np.ndarray, *, left_is_plus_x: bool = True) -> dict[str, np.ndarray]:
    """Morph target deltas (m): smiles on the lower front left/right, a jaw drop, an unsided inner-brow raise."""
    front, low, high = verts[:, 2] > 0.04, verts[:, 1] < 1.58, verts[:, 1] > 1.64
    side = 1 if left_is_plus_x else -1
    out = {}
    for name, sel, d in [("mouthSmileLeft", front & low & (side * verts[:, 0] > 0.01), (0.003 * side, 0.004, 0)),
                         ("mouthSmileRight", front & low & (side * verts[:, 0] < -0.01), (-0.003 * side, 0.004, 0)),
                         ("jawOpen", front & low, (0, -0.01, 0)),
                         ("browInnerUp", front & high & (np.abs(verts[:, 0]) < 0.03), (0, 0.005, 0))]:
        t = np.zeros_like(verts)
        t[sel] = d
        out[name] = t
    for name in QUIET:
        out[name] = np.zeros_like(verts)
    return out


def glb_bytes(verts: np.ndarray, tris: np.ndarray, targets: dict[str, np.ndarray], *, node: dict | None = None,
              sparse: bool = False, stride: int = 0, extra_doc: dict | None = None) -> bytes:
    """A GLB with one mesh 'Head' (positions, uint32 indices, the morph targets in ``extras.targetNames``) on
    one node (``node`` adds its fields: translation, scale, skin...). ``sparse``: targets as sparse accessors;
    ``stride``: positions interleaved in a buffer view of that byte stride."""
    blob = bytearray()
    views, accs = [], []

    def add(data: bytes, **view) -> int:
        while len(blob) % 4:
            blob.append(0)
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(data), **view})
        blob.extend(data)
        return len(views) - 1

    def vec3(a: np.ndarray) -> dict:
        return {"componentType": 5126, "type": "VEC3", "count": int(len(a)),
                "min": a.min(0).tolist(), "max": a.max(0).tolist()}

    v = verts.astype("<f4")
    if stride:
        rows = np.zeros((len(v), stride), np.uint8)
        rows[:, :12] = v.view(np.uint8).reshape(len(v), 12)
        # the view ends right after the last element's 12 bytes, not after a whole stride
        pos_view = add(rows.tobytes()[: stride * (len(v) - 1) + 12], byteStride=stride, target=34962)
    else:
        pos_view = add(v.tobytes(), target=34962)
    accs.append({"bufferView": pos_view, **vec3(v)})
    accs.append({"bufferView": add(tris.astype("<u4").tobytes(), target=34963), "componentType": 5125,
                 "type": "SCALAR", "count": int(tris.size)})
    prim_targets = []
    for d in targets.values():
        d = d.astype("<f4")
        if sparse:
            idx = np.flatnonzero(np.abs(d).sum(1) > 0).astype("<u4")
            acc = {**vec3(d), "sparse": {"count": int(len(idx)),
                                         "indices": {"bufferView": add(idx.tobytes()), "componentType": 5125},
                                         "values": {"bufferView": add(d[idx].tobytes())}}}
            if not len(idx):
                acc.pop("sparse")
        else:
            acc = {"bufferView": add(d.tobytes()), **vec3(d)}
        accs.append(acc)
        prim_targets.append({"POSITION": len(accs) - 1})
    doc = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}],
           "nodes": [{"name": "Head", "mesh": 0, **(node or {})}],
           "meshes": [{"name": "Head", "extras": {"targetNames": list(targets)},
                       "primitives": [{"attributes": {"POSITION": 0}, "indices": 1, "mode": 4,
                                       "targets": prim_targets}]}],
           "accessors": accs, "bufferViews": views, "buffers": [{"byteLength": len(blob)}], **(extra_doc or {})}
    return pack_glb(doc, bytes(blob))


def pack_glb(doc: dict | bytes, blob: bytes) -> bytes:
    """A GLB container of a JSON document (or JSON text as bytes) and a binary chunk."""
    js = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    blob = blob + b"\x00" * (-len(blob) % 4)
    body = struct.pack("<I4s", len(js), b"JSON") + js + struct.pack("<I4s", len(blob), b"BIN\x00") + blob
    return b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body
