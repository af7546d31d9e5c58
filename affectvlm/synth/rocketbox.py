"""Microsoft Rocketbox avatars with HeadBox's FACS blend shapes as :class:`FaceModel` s (a third face model).

The Rocketbox library (MIT) ships its avatars as binary FBX files; HeadBox (Volonte et al., IEEE VR 2022) added
48 FACS action-unit blend shapes to them (``AU_12_LipCornerPuller``, ``AU_12_L_LipCornerPuller``...), made by
other people than ICT-FaceKit's, FACSHuman's or MakeHuman's sculptors. Each avatar file is one face model with
one identity (no identity modes) whose AU targets are those shapes; the transfer module can put them on the
other models' faces.

Read from a folder the user names (searched recursively for ``*.fbx``); never committed, credited in NOTICE.
The mesh is turned to the :class:`FaceModel` frame (mm, +Y up, the face toward +Z, subject's left = +X) from
the file's units, its up axis and the mesh node's rotation; the front and the left/right naming are then
checked against where the AU shapes move the face. Only the head is kept (down to a short neck, the largest
connected piece: eyes, teeth and hair cards are separate pieces and are dropped), and of the head only what a
frontal scanner sees: the face, forehead and ears, not the back of the head or the shoulders.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from affectvlm.errors import InputError
from affectvlm.synth.avatar import NECK_MM, avatar_face_model, load_avatars
from affectvlm.synth.facemodel import FaceModel
from affectvlm.synth.fbx import FbxNode, read_fbx

__all__ = ["load_rocketbox", "rocketbox_face_model", "NECK_MM"]

_AU_SHAPE = re.compile(r"^AU_(\d{1,2})_(?:([LR])_)?[A-Za-z]")


def _name(obj: FbxNode) -> str:
    return str(obj.props[1]).split("\x00")[0] if len(obj.props) > 1 else ""


def _props70(node: FbxNode | None) -> dict[str, list]:
    p = node.first("Properties70") if node is not None else None
    return {str(c.props[0]): list(c.props[4:]) for c in (p.children if p else []) if c.props}


def _euler_xyz(deg) -> np.ndarray:
    """FBX's default rotation order (eEulerXYZ): x first, then y, then z, on column vectors."""
    x, y, z = np.radians(np.asarray(deg, dtype=np.float64)[:3])
    rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _triangles(poly: np.ndarray, n: int, src: str) -> np.ndarray:
    """FBX polygon indices (a negative index ``~i`` closes a polygon) -> fan triangles."""
    poly = np.asarray(poly, dtype=np.int64)
    ends = np.flatnonzero(poly < 0)
    idx = np.where(poly < 0, ~poly, poly)
    if len(ends) == 0 or idx.min() < 0 or idx.max() >= n:
        raise InputError(src, "FBX mesh has polygon indices outside its vertices")
    tris, start = [], 0
    for e in ends:
        p = idx[start:e + 1]
        start = e + 1
        if len(p) >= 3:
            tris.append(np.stack([np.full(len(p) - 2, p[0]), p[1:-1], p[2:]], 1))
    if not tris:
        raise InputError(src, "FBX mesh has no polygons")
    return np.concatenate(tris)


def _mesh_and_shapes(root: FbxNode, src: str) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """The mesh the AU shapes deform: vertices in mm (after its node's rotation and scale and the file's unit
    scale), triangles, shape name -> dense delta in mm, and the file's up axis as a unit vector."""
    objs = root.first("Objects")
    if objs is None:
        raise InputError(src, "FBX file has no Objects")
    geos = objs.find("Geometry")
    meshes = {int(g.props[0]): g for g in geos if len(g.props) > 2 and g.props[2] == "Mesh" and g.first("Vertices")}
    shapes = [g for g in geos if len(g.props) > 2 and g.props[2] == "Shape" and _AU_SHAPE.match(_name(g))]
    if not meshes:
        raise InputError(src, "FBX file has no mesh")
    if not shapes:
        raise InputError(src, "FBX file has no FACS blend shapes named like AU_12_LipCornerPuller (HeadBox's)")
    # the biggest mesh is the body/head (eyes, teeth and lashes, when separate, are small)
    gid, mesh = max(meshes.items(), key=lambda kv: len(kv[1].first("Vertices").props[0]))
    v = np.asarray(mesh.first("Vertices").props[0], dtype=np.float64)
    if v.size == 0 or v.size % 3 or not np.isfinite(v).all():
        raise InputError(src, "FBX mesh vertices are empty or not finite")
    v = v.reshape(-1, 3)
    pvi = mesh.first("PolygonVertexIndex")
    if pvi is None:
        raise InputError(src, "FBX mesh has no polygons")
    tris = _triangles(pvi.props[0], len(v), src)
    deltas: dict[str, np.ndarray] = {}
    for g in shapes:
        ix, dv = g.first("Indexes"), g.first("Vertices")
        if ix is None or dv is None:
            continue
        i = np.asarray(ix.props[0], dtype=np.int64)
        d = np.asarray(dv.props[0], dtype=np.float64)
        if d.size != 3 * len(i) or (len(i) and (i.min() < 0 or i.max() >= len(v))) or not np.isfinite(d).all():
            continue  # a shape of another mesh (or a broken one)
        full = np.zeros_like(v)
        full[i] = d.reshape(-1, 3)
        deltas[_name(g)] = full
    if not deltas:
        raise InputError(src, "FBX file's FACS blend shapes do not fit its biggest mesh")
    # the mesh's model node: connected to the geometry ("OO", geometry id, model id)
    models = {int(m.props[0]): m for m in objs.find("Model") if m.props}
    conns = root.first("Connections")
    owner = None
    for c in (conns.children if conns else []):
        if len(c.props) >= 3 and c.props[0] == "OO" and int(c.props[1]) == gid and int(c.props[2]) in models:
            owner = models[int(c.props[2])]
            break
    p = _props70(owner)
    rot = _euler_xyz(p.get("Lcl Rotation", [0, 0, 0]))
    pre = _euler_xyz(p.get("PreRotation", [0, 0, 0]))
    scale = np.asarray(p.get("Lcl Scaling", [1, 1, 1])[:3], dtype=np.float64)
    M = pre @ rot @ np.diag(scale)
    g = _props70(root.first("GlobalSettings"))
    up_axis = int((g.get("UpAxis") or [1])[0])
    up_sign = float((g.get("UpAxisSign") or [1])[0])
    unit_cm = float((g.get("UnitScaleFactor") or [1.0])[0])
    mm = 10.0 * unit_cm
    up = np.zeros(3)
    up[up_axis if up_axis in (0, 1, 2) else 1] = 1.0 if up_sign >= 0 else -1.0
    v = v @ M.T * mm
    deltas = {k: d @ M.T * mm for k, d in deltas.items()}
    return v, tris, deltas, up


def rocketbox_face_model(path: str | os.PathLike, *, name: str | None = None) -> FaceModel:
    """One Rocketbox avatar FBX (with HeadBox's AU shapes) as a :class:`FaceModel` (see the module doc)."""
    src = str(path)
    root = read_fbx(path)
    v, tris, deltas, up = _mesh_and_shapes(root, src)
    targets: dict[str, dict[str, np.ndarray]] = {}
    for k, d in deltas.items():
        m = _AU_SHAPE.match(k)
        targets.setdefault(f"AU{int(m.group(1))}", {})[m.group(2) or ""] = d
    au: dict[str, np.ndarray] = {}
    for base, sides in targets.items():
        if "L" in sides and "R" in sides:
            au[base + "L"], au[base + "R"] = sides["L"], sides["R"]
        elif "" in sides:
            au[base] = sides[""]
    stem = Path(src).stem.lower().replace("_facial", "")
    return avatar_face_model(v, tris, au, up, name=name or f"rocketbox-{re.sub(r'[^a-z0-9]+', '-', stem).strip('-')}",
                             source=src, licence="MIT (Microsoft Rocketbox avatars, HeadBox blend shapes)",
                             meta={"fbx_version": int(root.props[0])}, what="FBX")


def load_rocketbox(folder: str | os.PathLike) -> dict[str, FaceModel]:
    """Every avatar FBX with HeadBox AU shapes under ``folder`` (or one such file), by model name."""
    return load_avatars(folder, ".fbx", rocketbox_face_model, kind="Rocketbox avatar",
                        lacking="HeadBox FACS blend shapes")
