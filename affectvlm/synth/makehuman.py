"""The MakeHuman base mesh with FACSHuman action-unit targets as a :class:`~affectvlm.synth.facemodel.FaceModel`.

Both are read from folders the user names (never shipped): MakeHuman's ``makehuman/data`` (or any folder with
``3dobjs/base.obj`` and ``targets/``) and FACSHuman's target folder (``00 Emotions``, ``01 Upper Face AUs``, ...).
Only the assets are read: ``base.obj`` and ``.target`` files (text rows ``index dx dy dz`` in the base mesh's
vertex order). MakeHuman is in decimetres, +Y up, facing +Z, +X = the subject's left: the output is the same
axes in millimetres, centred on the face crop.

Kept: the head of the ``body`` group (face, scalp, ears, a little neck; no helper or joint geometry, no
eyeballs), quads split in two, largest connected piece. Identities: a PCA of faces made with random MakeHuman
macro settings (sex, age 18-80, muscle, weight, ethnicity mix) and face-detail sliders (nose, mouth, cheeks,
chin, eyes, brows, forehead, head shape, ears); the neutral is their mean and each mode is scaled by its
standard deviation, so ``w ~ N(0, 1)`` draws from that population. Parsed arrays are cached as ``.npz`` in
``$AFFECTVLM_CACHE/synth`` (default ``~/.cache/affectvlm/synth``), keyed by the files' names, sizes and mtimes.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from affectvlm.errors import InputError
from affectvlm.synth.facekit import _cache_dir, _cache_key, _write_cache
from affectvlm.synth.rig import largest_component
from affectvlm.synth.facemodel import FaceModel

__all__ = ["load_makehuman", "makehuman_units_model", "makehuman_faceunits_model", "EMOTION_CLASSES", "UNIT_AUS"]

BASE_OBJ = Path("3dobjs") / "base.obj"
BODY_GROUP = "body"
DETAIL_DIRS = ("nose", "mouth", "cheek", "chin", "eyes", "eyebrows", "forehead", "head", "ears")
GENDERS = ("female", "male")
AGES = ("child", "young", "old")  # 11, 25, 90 years; identities sample adults (18-80)
LEVELS = ("min", "average", "max")
ETHNICITIES = ("african", "asian", "caucasian")
EMOTION_CLASSES = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger")
FACS_AU_DIRS = ("01 Upper Face AUs", "02 Lower Face AUs", "03 Lip Parting and Jaw Opening",
                "04 Eye Positions", "05 Head Positions", "06 Miscellaneous AUs")
FACS_EMOTION_DIR = "00 Emotions"

_CACHE_VERSION = 2
_N_SAMPLES = 1200
_MAX_MODES = 60
_MIN_MODE_RMS_MM = 0.25
_SEED = 20240601
_DETAIL_SD = 0.3  # slider standard deviation of a face-detail target (sliders run -1..1 or 0..1)
_POLES = {"decr": "incr", "in": "out", "down": "up", "backward": "forward", "concave": "convex",
          "compress": "uncompress"}
_SKIP_DETAIL = re.compile(r"^head-(trans|angle)-")  # pose, not shape
_AU_FILE = re.compile(r"^([LR]?)(\d{1,2})(.*)$")
_EMOTION_WORDS = (("happ", "happiness"), ("sad", "sadness"), ("surpris", "surprise"), ("fear", "fear"),
                  ("disgust", "disgust"), ("ang", "anger"), ("neutral", "neutral"))
_FACIAL_AU_MAX = 46  # 51-58 head and 61-66 eye positions go to meta["au_variants"], not au_targets
UNITS_DIR = Path("targets") / "expression" / "units"
# MakeHuman's own expression units (its artists' sculpts, CC0) -> FACS AUs. Each unit was compared with
# FACSHuman's AU targets (cosine over the head's vertices) and given the AU its name and its closest matches agree
# on: the top match for most; the second for eye-slit (AU7 over AU43), mouth-elevation (AU10 over AU25) and
# nose-elevation (AU9 over AU10). "left"/"right" files are the subject's sides. Units with no clear AU
# (mouth-compression, mouth-part-later, nose-compression, nose-depression, neck-platysma, eyebrows-*-up) are left out.
UNIT_AUS = {
    "AU1": ("eyebrows-{side}-inner-up",), "AU2": ("eyebrows-{side}-extern-up",), "AU4": ("eyebrows-{side}-down",),
    "AU5": ("eye-{side}-opened-up",), "AU7": ("eye-{side}-slit",), "AU9": ("nose-{side}-elevation",),
    "AU10": ("mouth-elevation",), "AU12": ("mouth-corner-puller",), "AU13": ("mouth-upward-retraction",),
    "AU15": ("mouth-depression",), "AU16": ("mouth-depression-retraction",), "AU17": ("mouth-eversion",),
    "AU18": ("mouth-pursing",), "AU20": ("mouth-retraction",), "AU22": ("mouth-protusion",),
    "AU25": ("mouth-parling",), "AU26": ("mouth-open",), "AU38": ("nose-{side}-dilatation",),
    "AU43": ("eye-{side}-closure",),
}


# ----------------------------------------------------------------------------------------------- reading files
def _resolve_makehuman(folder: Path) -> Path:
    for cand in (folder, folder / "data", folder / "makehuman" / "data"):
        if (cand / BASE_OBJ).is_file() and (cand / "targets").is_dir():
            return cand
    if not folder.is_dir():
        raise InputError(str(folder), "not a folder: pass MakeHuman's makehuman/data folder")
    if not any((c / BASE_OBJ).is_file() for c in (folder, folder / "data", folder / "makehuman" / "data")):
        raise InputError(str(folder), f"{BASE_OBJ.as_posix()} is missing: is this MakeHuman's makehuman/data folder?")
    raise InputError(str(folder), "targets/ is missing: is this MakeHuman's makehuman/data folder?")


def _resolve_facshuman(folder: Path) -> Path:
    for cand in (folder, folder / "FACSHuman"):
        if any((cand / d).is_dir() for d in (FACS_EMOTION_DIR, *FACS_AU_DIRS)):
            return cand
    if not folder.is_dir():
        raise InputError(str(folder), "not a folder: pass FACSHuman's target folder (with '01 Upper Face AUs')")
    raise InputError(str(folder), "no FACSHuman target folders ('00 Emotions', '01 Upper Face AUs', ...) in it")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(str(path), f"cannot read: {exc.strerror or exc}") from None


def _read_obj(path: Path) -> tuple[np.ndarray, dict[str, list[list[int]]]]:
    """Vertices (N, 3) and the polygons (0-based vertex ids) of every group."""
    verts: list[list[bytes]] = []
    groups: dict[str, list[list[int]]] = {}
    current = groups.setdefault("", [])
    for ln in _read_bytes(path).split(b"\n"):
        if ln.startswith(b"v "):
            verts.append(ln.split()[1:4])
        elif ln.startswith(b"g ") or ln.startswith(b"o "):
            current = groups.setdefault(ln[2:].strip().decode("utf-8", "replace"), [])
        elif ln.startswith(b"f "):
            try:
                current.append([int(c.split(b"/")[0]) for c in ln.split()[1:]])
            except ValueError:
                raise InputError(str(path), f"bad face line {ln[:60].decode('utf-8', 'replace')!r}") from None
    if not verts:
        raise InputError(str(path), "no 'v x y z' vertex lines: not an OBJ mesh")
    try:
        v = np.array(verts, dtype=np.float64)
    except ValueError:
        raise InputError(str(path), "bad vertex line (expected 'v x y z')") from None
    if v.ndim != 2 or v.shape[1] != 3:
        raise InputError(str(path), "bad vertex line (expected 'v x y z')")
    if not np.isfinite(v).all():
        raise InputError(str(path), "vertex coordinates are not all finite")
    n = len(v)
    for name, polys in groups.items():
        for k, p in enumerate(polys):
            if len(p) < 3:
                raise InputError(str(path), f"group {name!r} has a face with fewer than 3 corners")
            q = [i - 1 if i > 0 else n + i for i in p]
            if min(q) < 0 or max(q) >= n:
                raise InputError(str(path), f"group {name!r}: a face refers to vertex {max(p)} of {n}")
            polys[k] = q
    return v, groups


def _read_target(path: Path, n_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """A ``.target`` file: (vertex ids (M,), deltas (M, 3)) in the file's units."""
    rows = [ln for ln in _read_bytes(path).split(b"\n") if ln.strip() and not ln.lstrip().startswith(b"#")]
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, 3))
    try:
        arr = np.array([r.split() for r in rows], dtype=np.float64)
    except ValueError:
        raise InputError(str(path), "bad row: expected 'index dx dy dz' numbers on every line") from None
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise InputError(str(path), "bad row: expected 4 numbers 'index dx dy dz' on every line")
    if not np.isfinite(arr).all():
        raise InputError(str(path), "values are not all finite")
    ids = arr[:, 0]
    if (ids != np.round(ids)).any() or ids.min() < 0 or ids.max() >= n_vertices:
        raise InputError(str(path), f"vertex index out of range 0..{n_vertices - 1} (not a target for this "
                                    f"base mesh?)")
    return ids.astype(np.int64), arr[:, 1:]


def _dense(ids: np.ndarray, d: np.ndarray, region: np.ndarray, remap: np.ndarray, scale: float) -> np.ndarray:
    out = np.zeros((len(region), 3), np.float64)
    local = remap[ids]
    ok = local >= 0
    np.add.at(out, local[ok], d[ok] * scale)
    return out


# ----------------------------------------------------------------------------------------------- geometry
def _units_to_mm(body_height: float) -> float:
    """A standing adult: ~1.7 m, ~17 dm (MakeHuman), ~170 cm or ~1700 mm."""
    for scale, (lo, hi) in ((1000.0, (0.5, 3.0)), (100.0, (5.0, 30.0)), (10.0, (50.0, 300.0)),
                            (1.0, (500.0, 3000.0))):
        if lo <= body_height <= hi:
            return scale
    raise InputError("base.obj", f"the body group is {body_height:g} units tall: not a standing body "
                                 "in m, dm, cm or mm")


def _head_points(v: np.ndarray, height: float) -> dict[str, float]:
    """Top of head, nose tip and chin (menton) of a body ``height`` tall, from the shape alone."""
    top = float(v[:, 1].max())
    upper = v[v[:, 1] > top - 0.2 * height]  # head, neck and shoulders
    mid = upper[np.abs(upper[:, 0] - np.median(upper[:, 0])) < 0.05 * height]
    face = mid[mid[:, 1] > top - 0.13 * height]  # a head is about 1/7.5 of a body
    nose = face[face[:, 2].argmax()]
    front = mid[(np.abs(mid[:, 0] - nose[0]) < 0.01 * height) & (mid[:, 1] < nose[1])
                & (mid[:, 1] > nose[1] - 0.06 * height)
                & (mid[:, 2] > nose[2] - 0.03 * height)]
    chin = float(front[:, 1].min()) if len(front) else nose[1] - 0.35 * (top - nose[1])
    return {"top": top, "nose_x": float(nose[0]), "nose_y": float(nose[1]), "nose_z": float(nose[2]),
            "chin": chin, "height": height}


def _face_crop(v: np.ndarray, p: dict[str, float]) -> np.ndarray:
    """BU-3DFE ``_F3D``-like: an ellipse from the chin to a forehead band, ear to ear, front-facing part."""
    chin, ny = p["chin"], p["nose_y"]
    brow = ny + 0.72 * (ny - chin)
    hf = brow - chin
    cy, ry = chin + 0.6 * hf, 0.8 * hf
    band = v[np.abs(v[:, 1] - ny) < 0.05 * hf]
    rx = 0.47 * float(np.ptp(band[:, 0])) if len(band) else 0.5 * hf
    inside = ((v[:, 0] - p["nose_x"]) / rx) ** 2 + ((v[:, 1] - cy) / ry) ** 2 <= 1.0
    in_front = v[:, 2] > p["nose_z"] - 0.75 * hf  # the tragus and forward; the back of the jaw is out
    below_chin = v[:, 1] < chin - 0.02 * hf
    return inside & in_front & ~below_chin


# ----------------------------------------------------------------------------------------------- identities
def _tri(x: float) -> dict[str, float]:
    """Slider 0..1 -> weights of the min / average / max targets (piecewise linear)."""
    return {"min": max(0.0, 1 - 2 * x), "average": 1 - abs(2 * x - 1), "max": max(0.0, 2 * x - 1)}


def _macro_weights(gender: float, years: float, muscle: float, weight: float,
                   ethnic: np.ndarray) -> dict[str, float]:
    g = {"female": 1 - gender, "male": gender}
    if years < 25:
        a = {"child": (25 - years) / 14, "young": 1 - (25 - years) / 14, "old": 0.0}
    else:
        a = {"child": 0.0, "young": 1 - (years - 25) / 65, "old": (years - 25) / 65}
    mu, we = _tri(muscle), _tri(weight)
    out: dict[str, float] = {}
    for gk, gw in g.items():
        for ak, aw in a.items():
            if gw * aw == 0:
                continue
            for e, ew in zip(ETHNICITIES, ethnic):
                out[f"{e}-{gk}-{ak}"] = out.get(f"{e}-{gk}-{ak}", 0.0) + gw * aw * float(ew)
            for mk, mw in mu.items():
                for wk, ww in we.items():
                    if mw * ww:
                        out[f"universal-{gk}-{ak}-{mk}muscle-{wk}weight"] = gw * aw * mw * ww
    return out


def _macro_files(targets: Path) -> dict[str, Path]:
    folder = targets / "macrodetails"
    names = [f"{e}-{g}-{a}" for e in ETHNICITIES for g in GENDERS for a in AGES]
    names += [f"universal-{g}-{a}-{m}muscle-{w}weight" for g in GENDERS for a in AGES for m in LEVELS
              for w in LEVELS]
    files = {n: folder / f"{n}.target" for n in names}
    for n, p in files.items():
        if not p.is_file():
            raise InputError(str(folder), f"{n}.target is missing: MakeHuman's macrodetails targets are needed "
                                          "for identities")
    return files


def _detail_sliders(targets: Path) -> list[tuple[str, Path | None, Path | None]]:
    """(name, negative-pole file, positive-pole file) for each face-detail slider found."""
    out: list[tuple[str, Path | None, Path | None]] = []
    for d in DETAIL_DIRS:
        folder = targets / d
        if not folder.is_dir():
            continue
        files = {p.stem: p for p in sorted(folder.glob("*.target")) if not _SKIP_DETAIL.match(p.stem)}
        used: set[str] = set()
        for stem, p in files.items():
            if stem in used:
                continue
            base, _, pole = stem.rpartition("-")
            if pole in _POLES and f"{base}-{_POLES[pole]}" in files:
                out.append((base, p, files[f"{base}-{_POLES[pole]}"]))
                used |= {stem, f"{base}-{_POLES[pole]}"}
            elif pole in _POLES.values() and any(f"{base}-{k}" in files for k, v in _POLES.items() if v == pole):
                continue  # the pair is added from its negative pole
            else:
                out.append((stem, None, p))
                used.add(stem)
    return out


def _identity_basis(macro: dict[str, np.ndarray], details: list[tuple[str, np.ndarray | None, np.ndarray]],
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random faces from macro and detail sliders -> (mean (N, 3), modes (K, N, 3) scaled to 1 sd, explained).

    A face is linear in the targets, so the samples are kept as target coefficients and the PCA runs in the
    targets' span (QR), not on the dense samples."""
    keys = list(macro)
    mats = [macro[k] for k in keys]
    col_neg, col_pos = [], []
    for _, neg, pos in details:
        col_pos.append(len(mats))
        mats.append(pos)
        col_neg.append(len(mats) if neg is not None else -1)
        if neg is not None:
            mats.append(neg)
    n = mats[0].shape[0]
    # macro targets change stature: keep the head's shape, not where it sits
    t = np.stack([m - m.mean(0) for m in mats]).reshape(len(mats), -1)
    sides: dict[str, list[int]] = {}
    for k, (name, _, _) in enumerate(details):
        m = re.match(r"^[lr]-(.*)$", name)
        if m:
            sides.setdefault(m.group(1), []).append(k)
    col = {k: i for i, k in enumerate(keys)}
    coef = np.zeros((_N_SAMPLES, len(mats)))
    for s in range(_N_SAMPLES):
        w = _macro_weights(rng.uniform(0, 1), rng.uniform(18, 80), float(np.clip(rng.normal(0.5, 0.17), 0, 1)),
                           float(np.clip(rng.normal(0.5, 0.17), 0, 1)), rng.dirichlet((1.0, 1.0, 1.0)))
        for key, wk in w.items():
            coef[s, col[key]] = wk
        values = rng.normal(0, _DETAIL_SD, len(details))
        for pair in sides.values():  # left and right share most of a value: faces are near-symmetric
            values[pair] = rng.normal(0, _DETAIL_SD) + rng.normal(0, 0.3 * _DETAIL_SD, len(pair))
        for k, x in enumerate(np.clip(values, -1, 1)):
            if col_neg[k] < 0:
                coef[s, col_pos[k]] = abs(x)  # a one-sided slider (0..1)
            elif x > 0:
                coef[s, col_pos[k]] = x
            else:
                coef[s, col_neg[k]] = -x
    mean = (coef.mean(0) @ t).reshape(n, 3)
    q, r = np.linalg.qr(t.T)  # t.T = q r: the samples are (coef - mean) r.T q.T
    _, sv, vt = np.linalg.svd((coef - coef.mean(0)) @ r.T, full_matrices=False)
    sd = sv / np.sqrt(_N_SAMPLES - 1)
    modes = ((vt @ q.T) * sd[:, None]).reshape(len(sd), n, 3)
    rms = np.sqrt((modes ** 2).sum(2).mean(1))
    keep = min(_MAX_MODES, int((rms >= _MIN_MODE_RMS_MM).sum()))
    explained = np.cumsum(sd ** 2) / max((sd ** 2).sum(), 1e-12)
    return mean.astype(np.float32), modes[:keep].astype(np.float32), explained[:keep].astype(np.float32)


# ----------------------------------------------------------------------------------------------- FACSHuman
def _facs_files(folder: Path) -> tuple[list[Path], list[Path]]:
    aus = [p for d in FACS_AU_DIRS for p in sorted((folder / d).glob("*.target"))]
    emos = sorted((folder / FACS_EMOTION_DIR).glob("*.target"))
    if not aus and not emos:
        raise InputError(str(folder), "no .target files in FACSHuman's AU or emotion folders")
    return aus, emos


def _emotion_class(stem: str) -> str | None:
    low = stem.lower()
    if "contempt" in low:
        return None
    for word, cls in _EMOTION_WORDS:
        if word in low:
            return cls
    return None


# ----------------------------------------------------------------------------------------------- loading
def load_makehuman(makehuman_dir: str | os.PathLike, facshuman_dir: str | os.PathLike | None = None, *,
                   cache: bool = True) -> FaceModel:
    """The MakeHuman head (+ FACSHuman AU and emotion targets when ``facshuman_dir`` is given) as a FaceModel.

    ``meta``: ``emotion_targets`` (class name -> list of (N, 3) mm deltas, FACSHuman's variants),
    ``au_variants`` (FACSHuman's alternative sculpts, bilateral versions of sided units, head/eye positions),
    ``model_ids`` (base-mesh vertex ids), ``identity_rms_mm``, ``units_to_mm``, ``from_cache``."""
    mh = _resolve_makehuman(Path(makehuman_dir).expanduser())
    fh = _resolve_facshuman(Path(facshuman_dir).expanduser()) if facshuman_dir is not None else None
    targets = mh / "targets"
    macro_files = _macro_files(targets)
    sliders = _detail_sliders(targets)
    au_files, emo_files = _facs_files(fh) if fh is not None else ([], [])
    detail_paths = [p for _, a, b in sliders for p in (a, b) if p is not None]
    all_paths = [mh / BASE_OBJ, *macro_files.values(), *detail_paths, *au_files, *emo_files]
    key = _cache_key(all_paths, f"mh{_CACHE_VERSION}|{_N_SAMPLES}|{_SEED}|{_DETAIL_SD}|{_MAX_MODES}")
    cache_file = _cache_dir() / f"makehuman-{key}.npz"
    if cache and cache_file.is_file():
        try:
            with np.load(cache_file, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            return _build(mh, fh, arrays, from_cache=True)
        except (OSError, ValueError, KeyError):
            pass  # a stale or damaged cache is rebuilt below

    obj = mh / BASE_OBJ
    verts, groups = _read_obj(obj)
    if BODY_GROUP not in groups or not groups[BODY_GROUP]:
        raise InputError(str(obj), f"no {BODY_GROUP!r} group: is this MakeHuman's base.obj?")
    body = groups[BODY_GROUP]
    body_ids = np.unique(np.concatenate([np.asarray(p) for p in body]))
    try:
        mm = _units_to_mm(float(np.ptp(verts[body_ids, 1])))
    except InputError as exc:
        raise InputError(str(obj), exc.problem) from None
    v = verts * mm
    body_height = float(np.ptp(v[body_ids, 1]))
    pts = _head_points(v[body_ids], body_height)
    keep_v = np.zeros(len(v), bool)
    keep_v[body_ids] = True
    neck_cut = pts["chin"] - 0.1 * (pts["top"] - pts["chin"])
    keep_v &= v[:, 1] > neck_cut
    tris = [(p[0], p[k], p[k + 1]) for p in body if keep_v[p].all() for k in range(1, len(p) - 1)]
    if not tris:
        raise InputError(str(obj), "the body group has no head above the neck")
    tris = largest_component(np.asarray(tris, np.int64), len(v))
    region = np.unique(tris)
    remap = -np.ones(len(v), np.int64)
    remap[region] = np.arange(len(region))

    def dense(path: Path) -> np.ndarray:
        ids, d = _read_target(path, len(v))
        return _dense(ids, d, region, remap, mm)

    macro = {k: dense(p) for k, p in macro_files.items()}
    details = [(name, dense(a) if a is not None else None, dense(b)) for name, a, b in sliders]
    mean, modes, explained = _identity_basis(macro, details, np.random.default_rng(_SEED))
    neutral = v[region] + mean
    pts = _head_points(neutral, body_height)
    mask = _face_crop(neutral, pts)
    centre = neutral[mask].mean(0) if mask.any() else neutral.mean(0)

    au_names, au_stack, var_names, var_stack = [], [], [], []
    for p in au_files:
        m = _AU_FILE.match(p.stem)
        if not m:
            continue
        side, num, rest = m.group(1), int(m.group(2)), m.group(3)
        d = dense(p)
        if not np.abs(d).max(initial=0.0) > 0:
            continue  # moves nothing on the head we keep (eyeball-only targets)
        name = f"AU{num}{side}"
        if rest or num > _FACIAL_AU_MAX:
            var_names.append(f"AU{num}{side}{rest}")
            var_stack.append(d)
        else:
            au_names.append(name)
            au_stack.append(d)
    sided = {n[:-1] for n in au_names if n[-1] in "LR"}
    for k, n in enumerate(list(au_names)):  # bilateral files of sided units are kept as variants
        if n in sided:
            var_names.append(n)
            var_stack.append(au_stack[k])
    order = [k for k, n in enumerate(au_names) if n not in sided]
    emo_names, emo_labels, emo_stack = [], [], []
    for p in emo_files:
        cls = _emotion_class(p.stem)
        if cls is None:
            continue
        emo_names.append(p.stem)
        emo_labels.append(cls)
        emo_stack.append(dense(p))
    n = len(region)

    def stack(items: list[np.ndarray]) -> np.ndarray:
        return np.stack(items).astype(np.float32) if items else np.zeros((0, n, 3), np.float32)

    arrays = {
        "neutral": (neutral - centre).astype(np.float32),
        "faces": np.searchsorted(region, tris).astype(np.int64),
        "model_ids": region.astype(np.int64),
        "identities": modes,
        "identity_explained": explained,
        "face_mask": mask,
        "au_names": np.array([au_names[k] for k in order], dtype=str),
        "au_targets": stack([au_stack[k] for k in order]),
        "variant_names": np.array(var_names, dtype=str),
        "variants": stack(var_stack),
        "emotion_files": np.array(emo_names, dtype=str),
        "emotion_labels": np.array(emo_labels, dtype=str),
        "emotions": stack(emo_stack),
        "units_to_mm": np.array(mm),
    }
    if cache:
        _write_cache(cache_file, arrays)
    return _build(mh, fh, arrays, from_cache=False)




def _base_target_reader(base: FaceModel, mh: Path):
    """A reader of ``.target`` files for ``base``'s mesh: path -> (N, 3) float32 mm deltas on its kept vertices."""
    region = np.asarray(base.meta["model_ids"], np.int64)
    n_base = sum(1 for ln in _read_bytes(mh / BASE_OBJ).split(b"\n") if ln.startswith(b"v "))
    remap = -np.ones(max(n_base, int(region.max()) + 1), np.int64)
    remap[region] = np.arange(len(region))
    mm = float(base.meta["units_to_mm"])

    def read(path: Path) -> np.ndarray:
        ids, d = _read_target(path, len(remap))
        return _dense(ids, d, region, remap, mm).astype(np.float32)

    return read


def makehuman_units_model(base: FaceModel, makehuman_dir: str | os.PathLike,
                          ethnicity: str = "caucasian") -> FaceModel:
    """``base`` (from :func:`load_makehuman`) with MakeHuman's own expression units as its AU targets
    (:data:`UNIT_AUS`, ``targets/expression/units/<ethnicity>/``), named ``makehuman-units``: a third
    sculptor's AUs on the same mesh and identities. AUs the units lack (AU6, AU23, AU24, ...) keep ``base``'s
    targets; no emotion sculpts (the ``sculpt`` family is FACSHuman's). Units are used as sculpted (weight 1)."""
    if ethnicity not in ETHNICITIES:
        raise InputError(ethnicity, f"unknown MakeHuman unit set; choose from {', '.join(ETHNICITIES)}")
    mh = _resolve_makehuman(Path(makehuman_dir).expanduser())
    folder = mh / UNITS_DIR / ethnicity
    if not folder.is_dir():
        raise InputError(str(folder), "not a folder: this MakeHuman data has no expression units")
    read = _base_target_reader(base, mh)

    def unit(name: str) -> np.ndarray:
        path = folder / f"{name}.target"
        if not path.is_file():
            raise InputError(str(path), "missing: expected MakeHuman's expression unit targets here")
        return read(path)

    targets = dict(base.au_targets)
    for au, files in UNIT_AUS.items():
        for key in [k for k in targets if k in (au, au + "L", au + "R")]:
            del targets[key]
        for f in files:
            if "{side}" in f:
                targets[au + "L"] = unit(f.format(side="left"))
                targets[au + "R"] = unit(f.format(side="right"))
            else:
                targets[au] = unit(f)
    meta = {k: v for k, v in base.meta.items() if k not in ("emotion_targets", "emotion_files", "au_variants")}
    return FaceModel(name="makehuman-units", neutral=base.neutral, faces=base.faces, identities=base.identities,
                     au_targets=targets, landmarks=base.landmarks, face_mask=base.face_mask,
                     source=f"{mh} (expression units, {ethnicity}) + {base.source}",
                     licence="MakeHuman assets CC0" + ("; FACSHuman targets LGPL-3.0" if "FACSHuman" in base.licence
                                                       else ""),
                     meta={**meta, "emotion_targets": {}, "au_variants": {}, "unit_set": ethnicity})


def makehuman_faceunits_model(base: FaceModel, makehuman_dir: str | os.PathLike, faceunits_dir: str | os.PathLike,
                              recipes=None) -> FaceModel:
    """``base`` (from :func:`load_makehuman`) with the ARKit-named targets of MPFB's "Face Units" pack (a folder
    of ``browDownLeft.target``... files for the MakeHuman base mesh) as its expressions, named
    ``makehuman-faceunits``: another sculptor's ARKit shapes, turned into AUs with the recipe book's ARKit map
    as ICT-FaceKit's are. AUs the map cannot make from them keep ``base``'s targets; no emotion sculpts."""
    from affectvlm.synth.facemodel import arkit_action_units, au_base
    from affectvlm.synth.gltf import arkit_name

    mh = _resolve_makehuman(Path(makehuman_dir).expanduser())
    folder = Path(faceunits_dir).expanduser()
    if not folder.is_dir():
        raise InputError(str(folder), "not a folder: expected MPFB's Face Units pack (browDownLeft.target...)")
    if (folder / "targets" / "faceunits").is_dir():
        folder = folder / "targets" / "faceunits"
    named = {arkit_name(p.stem): p for p in sorted(folder.glob("*.target"))}
    named.pop(None, None)
    if not named:
        raise InputError(str(folder), "no ARKit-named .target files: expected MPFB's Face Units pack "
                                      "(browDownLeft.target...)")
    read = _base_target_reader(base, mh)
    shapes = {name: read(path) for name, path in named.items()}
    # a unit whose shapes move nothing on the kept head (eye-look shapes move the eyeballs) is not made
    made = arkit_action_units(shapes, recipes)
    made_aus = {au_base(k)[0] for k, v in made.items() if np.any(v)}
    made = {k: v for k, v in made.items() if au_base(k)[0] in made_aus}
    if not made:
        raise InputError(str(folder), "none of these targets has an ARKit blendshape name the recipe book maps")
    targets = {k: v for k, v in base.au_targets.items() if au_base(k)[0] not in made_aus}
    targets.update(made)
    meta = {k: v for k, v in base.meta.items() if k not in ("emotion_targets", "emotion_files", "au_variants")}
    return FaceModel(name="makehuman-faceunits", neutral=base.neutral, faces=base.faces, identities=base.identities,
                     au_targets=targets, landmarks=base.landmarks, face_mask=base.face_mask,
                     source=f"{folder} (MPFB Face Units) + {base.source}",
                     licence="MakeHuman assets and MPFB Face Units CC0" + (
                         "; FACSHuman targets LGPL-3.0" if "FACSHuman" in base.licence else ""),
                     meta={**meta, "emotion_targets": {}, "au_variants": {}, "arkit_shapes": sorted(shapes)})


def _build(mh: Path, fh: Path | None, a: dict, *, from_cache: bool) -> FaceModel:
    neutral = a["neutral"]
    emotions: dict[str, list[np.ndarray]] = {}
    for label, d in zip(a["emotion_labels"], a["emotions"]):
        emotions.setdefault(str(label), []).append(d)
    identities = a["identities"]
    rms = np.sqrt((identities.astype(np.float64) ** 2).sum(2).mean(1)) if len(identities) else np.zeros(0)
    return FaceModel(
        name="makehuman-facshuman" if fh is not None else "makehuman",
        neutral=neutral,
        faces=a["faces"],
        identities=identities,
        au_targets={str(k): d for k, d in zip(a["au_names"], a["au_targets"])},
        landmarks=np.zeros(0, np.int64),
        face_mask=a["face_mask"].astype(bool),
        source=str(mh) if fh is None else f"{mh} + {fh}",
        licence="MakeHuman assets CC0" + ("; FACSHuman targets LGPL-3.0" if fh is not None else ""),
        meta={
            "emotion_targets": emotions,
            "emotion_files": [str(n) for n in a["emotion_files"]],
            "au_variants": {str(k): d for k, d in zip(a["variant_names"], a["variants"])},
            "model_ids": a["model_ids"],
            "identity_rms_mm": rms.astype(np.float32),
            "identity_explained": a["identity_explained"],
            "n_identity_modes": int(len(identities)),
            "units_to_mm": float(a["units_to_mm"]),
            "from_cache": from_cache,
        },
    )
