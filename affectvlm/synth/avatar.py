"""A game avatar's head with expression shapes as a :class:`FaceModel`: the frame, the head crop, the face mask.

Shared by the avatar readers (:mod:`affectvlm.synth.rocketbox` for FBX, :mod:`affectvlm.synth.gltf` for glTF).
The mesh is turned to the :class:`FaceModel` frame (+Y up from the file, the face toward +Z: the horizontal axis
along which the moving face lies off the head), the left/right names are checked against where the sided shapes
move the face (the subject's left is +X), and only what a frontal scanner sees is kept: the head down to a short
neck, the largest connected piece (eyes, teeth and hair cards are separate pieces), not the back of the head or
the shoulders.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from affectvlm.errors import InputError
from affectvlm.synth.facemodel import FaceModel, au_base

__all__ = ["avatar_face_model", "load_avatars", "NECK_MM"]

NECK_MM = 40.0  # neck kept below the lowest point the expression shapes move (the chin)
DEPTH_MM = 160.0  # kept behind the most forward point: face and ears, as a frontal scanner sees (no back of head)
HALF_WIDTH_MM = 100.0  # kept either side of the face's centre line (no shoulders)
MAX_FILES = 500


def _frame(v: np.ndarray, moved: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Rotation (rows: x, y, z) taking file axes to +Y up and the face toward +Z: up from the file, front as
    the horizontal axis (of the two file axes across ``up``) along which the moving face lies off the head."""
    across = [e for e in np.eye(3) if abs(e @ up) < 0.5]
    h = v @ up
    band = (h >= h[moved].min()) & (h <= h[moved].max())  # the head at the face's height
    off = v[moved].mean(0) - v[band].mean(0)
    d = max(across, key=lambda e: abs(off @ e))
    front = d * np.sign(off @ d) if off @ d != 0 else d
    return np.stack([np.cross(up, front), up, front])


def avatar_face_model(v: np.ndarray, tris: np.ndarray, au: dict[str, np.ndarray], up: np.ndarray, *, name: str,
                      source: str, licence: str, meta: dict, what: str) -> FaceModel:
    """``v`` (N, 3) mm in file axes, triangles, AU targets (``"AU12L"``... mm deltas in file axes) and the file's
    up vector -> a one-identity :class:`FaceModel` (see the module doc); ``what`` names the format in errors."""
    moved = np.zeros(len(v), dtype=bool)
    for d in au.values():
        moved |= np.linalg.norm(d, axis=1) > 1e-3
    if moved.sum() < 20:
        raise InputError(source, f"the {what} file's expression shapes move almost nothing")
    R = _frame(v, moved, up)
    v = v @ R.T
    au = {k: d @ R.T for k, d in au.items()}
    # the subject's left is +X: the L shapes should move the +X half; swap the names if they do not
    # (units whose two sides are the same shape, e.g. one ARKit shape split in halves, say nothing)
    sided = sorted({au_base(k)[0] for k in au if k.endswith("L") and au_base(k)[0] + "R" in au})
    lean = []
    for b in sided:
        wl, wr = np.linalg.norm(au[b + "L"], axis=1), np.linalg.norm(au[b + "R"], axis=1)
        if wl.sum() > 0 and wr.sum() > 0 and not np.allclose(wl, wr, atol=1e-4):
            lean.append(v[:, 0] @ wl / wl.sum() - v[:, 0] @ wr / wr.sum())
    if lean and float(np.median(lean)) < 0:
        for b in sided:
            au[b + "L"], au[b + "R"] = au[b + "R"], au[b + "L"]
    lo, hi = v[moved].min(0), v[moved].max(0)
    cx = (lo[0] + hi[0]) / 2
    head = v[:, 1] > lo[1] - NECK_MM
    keep = head & (v[:, 2] > v[head, 2].max() - DEPTH_MM) & (np.abs(v[:, 0] - cx) < HALF_WIDTH_MM)
    from affectvlm.synth.rig import largest_component

    f = largest_component(tris[keep[tris].all(1)], len(v))
    if len(f) < 100:
        raise InputError(source, f"the {what} avatar's head has too few triangles")
    used = np.unique(f)
    remap = -np.ones(len(v), dtype=np.int64)
    remap[used] = np.arange(len(used))
    centre = (lo + hi) / 2
    vv = v[used] - centre
    half = (hi - lo) / 2
    # BU-3DFE-like face crop: an ellipse from above the brows to the chin, ear to ear, front of the head only
    rx, ry, cy = half[0] + 15.0, half[1] + 25.0, 10.0
    mask = ((vv[:, 0] / rx) ** 2 + ((vv[:, 1] - cy) / ry) ** 2 <= 1.0) & (vv[:, 2] > vv[:, 2].max() - 90.0)
    return FaceModel(
        name=name,
        neutral=vv.astype(np.float32),
        faces=remap[f],
        identities=np.zeros((0, len(used), 3), np.float32),
        au_targets={k: d[used].astype(np.float32) for k, d in au.items()},
        landmarks=np.zeros(0, np.int64),
        face_mask=mask,
        source=source,
        licence=licence,
        meta=meta,
    )


def load_avatars(folder: str | os.PathLike, suffix: str, read: Callable[[Path], FaceModel], *, kind: str,
                 lacking: str) -> dict[str, FaceModel]:
    """Every ``suffix`` file under ``folder`` (or the one file) that ``read`` turns into a face model, by model
    name; files it refuses are skipped, and none at all is one InputError naming the folder (``kind``: what the
    files are, ``lacking``: what a skipped file lacked)."""
    p = Path(folder)
    if p.is_file():
        files = [p]
    elif p.is_dir():
        files = []
        for f in sorted(p.rglob("*")):
            if f.suffix.lower() == suffix and f.is_file():
                files.append(f)
                if len(files) > MAX_FILES:
                    raise InputError(str(folder), f"more than {MAX_FILES} {suffix} files; name a smaller folder")
    else:
        raise InputError(str(folder), f"no such {kind} file or folder")
    models: dict[str, FaceModel] = {}
    skipped: list[str] = []
    for f in files:
        try:
            m = read(f)
        except InputError:
            skipped.append(f.name)
            continue
        models[m.name] = m
    if not models:
        why = f" ({len(skipped)} {suffix} files without {lacking})" if skipped else f" (no {suffix} files)"
        raise InputError(str(folder), f"no {kind} with {lacking}" + why)
    return models
