"""Loading the ICT-FaceKit morphable face model from a folder the user names.

The folder is ICT-FaceKit's ``FaceXModel/``: ``generic_neutral_mesh.obj`` (topology, UVs, materials),
any number of identity modes ``identityNNN.obj`` and the ARKit-named expression blendshapes listed in
``vertex_indices.json``. Every shape file has the neutral's vertex count and order; a face is
``neutral + sum_i w_i (identity_i - neutral) + sum_j e_j (expression_j - neutral)``.

Only the face area is kept: the polygons of material ``M_Face`` (polygons 0-9229, vertices 0-9408 in the
real model) or every polygon when the OBJ names no materials. Parsing 70+ OBJs of 2.5 MB takes seconds, so
the stacked arrays are cached as ``.npz`` in ``$AFFECTVLM_CACHE/synth`` (default ``~/.cache/affectvlm/synth``),
keyed by the files' names, sizes and modification times.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from affectvlm.errors import InputError

NEUTRAL_FILE = "generic_neutral_mesh.obj"
INDEX_FILE = "vertex_indices.json"
FACE_MATERIAL = "M_Face"
_IDENTITY_RE = re.compile(r"^identity(\d+)\.obj$")
_CACHE_VERSION = 2


@dataclass
class FaceKit:
    """The face area of an ICT-FaceKit model, in the model's own units (``units_to_mm`` converts).

    neutral: (N, 3) float32 face-area vertices; ``model_ids`` (N,) are their indices in the full model.
    identities: (K, N, 3) float32 identity deltas (mode - neutral), K = number of identity files found.
    expressions: (E, N, 3) float32 blendshape deltas, named by ``expression_names``.
    polygons: triangulated face-area polygons (F, 3) int64 into the N face-area vertices.
    uv: (N, 2) float32 per-vertex texture coordinates (u right, v up).
    landmarks: face-area vertex indices of the model's 68 iBUG landmarks (empty when it has none).
    """

    folder: Path
    neutral: np.ndarray
    model_ids: np.ndarray
    identities: np.ndarray
    expression_names: tuple[str, ...]
    expressions: np.ndarray
    polygons: np.ndarray
    uv: np.ndarray
    landmarks: np.ndarray
    units_to_mm: float
    meta: dict = field(default_factory=dict)

    @property
    def n_identities(self) -> int:
        return int(self.identities.shape[0])

    def expression_index(self, name: str) -> int:
        try:
            return self.expression_names.index(name)
        except ValueError:
            raise InputError(str(self.folder), f"the model has no blendshape {name!r} "
                                               f"(it has {len(self.expression_names)}: "
                                               f"{', '.join(self.expression_names[:6])}...)") from None


def _cache_dir() -> Path:
    from affectvlm.model.caches import own_cache

    return own_cache("synth")


def _read_obj_vertices(path: Path) -> np.ndarray:
    """Only the ``v x y z`` lines, parsed fast: (N, 3) float64."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(str(path), f"cannot read: {exc.strerror or exc}") from None
    start = 0 if data.startswith(b"v ") else data.find(b"\nv ") + 1
    if start == 0 and not data.startswith(b"v "):
        raise InputError(str(path), "no 'v x y z' vertex lines: not an OBJ mesh")
    # ICT files keep all `v` lines in one block; take the block, fall back to filtering lines otherwise
    end = data.find(b"\nvt ", start)
    end = len(data) if end < 0 else end
    block = data[start:end]
    try:
        tokens = block.split()
        if len(tokens) % 4 == 0 and all(t == b"v" for t in tokens[::4]):
            arr = np.array(tokens).reshape(-1, 4)[:, 1:].astype(np.float64)
        else:
            lines = [ln[2:] for ln in data.split(b"\n") if ln.startswith(b"v ")]
            arr = np.array([ln.split()[:3] for ln in lines], dtype=np.float64)
    except ValueError as exc:
        raise InputError(str(path), f"bad vertex line: {exc}") from None
    if not np.isfinite(arr).all():
        raise InputError(str(path), "vertex coordinates are not all finite")
    return arr


def _read_obj_topology(path: Path) -> tuple[np.ndarray, np.ndarray, list[list[tuple[int, int]]]]:
    """Vertices, texture coordinates and the face-area polygons as (vertex, vt) index pairs (0-based)."""
    verts = _read_obj_vertices(path)
    data = path.read_bytes().split(b"\n")
    vt = [ln.split()[1:3] for ln in data if ln.startswith(b"vt ")]
    uvs = np.array(vt, dtype=np.float64) if vt else np.zeros((0, 2))
    polys: list[list[tuple[int, int]]] = []
    all_polys: list[list[tuple[int, int]]] = []
    material = None
    named = False
    for ln in data:
        if ln.startswith(b"usemtl"):
            material = ln.split()[1].decode("utf-8", "replace") if len(ln.split()) > 1 else None
            named = True
        elif ln.startswith(b"f "):
            corners = []
            for c in ln.split()[1:]:
                parts = c.split(b"/")
                try:
                    vi = int(parts[0])
                    ti = int(parts[1]) if len(parts) > 1 and parts[1] else 0
                except ValueError:
                    raise InputError(str(path), f"bad face line {ln[:60]!r}") from None
                corners.append((vi - 1 if vi > 0 else len(verts) + vi, ti - 1 if ti > 0 else len(uvs) + ti))
            all_polys.append(corners)
            if material == FACE_MATERIAL:
                polys.append(corners)
    if not named:
        polys = all_polys
    if not polys:
        raise InputError(str(path), f"no polygons of material {FACE_MATERIAL!r} (the face area)")
    return verts, uvs, polys


def _files(folder: Path) -> tuple[Path, list[Path], list[tuple[str, Path]], dict]:
    if not folder.is_dir():
        raise InputError(str(folder), "not a folder: pass ICT-FaceKit's FaceXModel/ folder (--facekit DIR)")
    neutral = folder / NEUTRAL_FILE
    if not neutral.is_file():
        raise InputError(str(folder), f"{NEUTRAL_FILE} is missing: is this ICT-FaceKit's FaceXModel/ folder?")
    index: dict = {}
    if (folder / INDEX_FILE).is_file():
        try:
            index = json.loads((folder / INDEX_FILE).read_text("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(str(folder / INDEX_FILE), f"not valid JSON: {exc}") from None
        if not isinstance(index, dict) or not isinstance(index.get("expressions", []), list):
            raise InputError(str(folder / INDEX_FILE), "expected an object with an 'expressions' list")
    ids = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _IDENTITY_RE.match(p.name)))
    names = index.get("expressions") or sorted(
        p.stem for p in folder.glob("*.obj") if p.name != NEUTRAL_FILE and not _IDENTITY_RE.match(p.name))
    exprs = [(str(n), folder / f"{n}.obj") for n in names if (folder / f"{n}.obj").is_file()]
    return neutral, [p for _, p in ids], exprs, index


def _cache_key(paths: list[Path], salt: str = "") -> str:
    """Key of a parsed-model cache: the files' paths, sizes and times (and ``salt``, e.g. settings)."""
    h = hashlib.sha1((salt or f"v{_CACHE_VERSION}").encode())
    for p in paths:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def _units_to_mm(width: float) -> float:
    """Face-area width decides the unit: ~0.18 m, ~18 cm or ~180 mm."""
    if width < 1.0:
        return 1000.0
    if width < 60.0:
        return 10.0
    return 1.0


def load_facekit(folder: str | os.PathLike, *, cache: bool = True) -> FaceKit:
    """Load the face area of the ICT-FaceKit model in ``folder`` (cached; see the module docstring)."""
    folder = Path(folder).expanduser()
    neutral_path, id_paths, expr_files, index = _files(folder)
    all_paths = [neutral_path, *id_paths, *(p for _, p in expr_files)]
    if (folder / INDEX_FILE).is_file():
        all_paths.append(folder / INDEX_FILE)
    key = _cache_key(all_paths)
    cache_file = _cache_dir() / f"facekit-{key}.npz"
    if cache and cache_file.is_file():
        try:
            with np.load(cache_file, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            return _build(folder, arrays, from_cache=True)
        except (OSError, ValueError, KeyError):
            pass  # a stale or damaged cache is rebuilt below

    verts, uvs, polys = _read_obj_topology(neutral_path)
    n_model = len(verts)
    region = np.unique(np.array([vi for poly in polys for vi, _ in poly], dtype=np.int64))
    if region.min() < 0 or region.max() >= n_model:
        raise InputError(str(neutral_path), "a face refers to a vertex that does not exist")
    remap = -np.ones(n_model, dtype=np.int64)
    remap[region] = np.arange(len(region))
    # per-vertex UV: the ICT face area has one UV per vertex (duplicated vt rows carry equal values)
    uv_sum = np.zeros((len(region), 2))
    uv_n = np.zeros(len(region))
    tris = []
    for poly in polys:
        for vi, ti in poly:
            if 0 <= ti < len(uvs):
                uv_sum[remap[vi]] += uvs[ti]
                uv_n[remap[vi]] += 1
        for k in range(1, len(poly) - 1):  # fan triangulation, keeping the OBJ's winding
            tris.append((remap[poly[0][0]], remap[poly[k][0]], remap[poly[k + 1][0]]))
    uv = np.where(uv_n[:, None] > 0, uv_sum / np.maximum(uv_n, 1)[:, None], np.nan)

    def region_delta(path: Path) -> np.ndarray:
        arr = _read_obj_vertices(path)
        if len(arr) != n_model:
            raise InputError(str(path), f"has {len(arr)} vertices, expected {n_model} like {NEUTRAL_FILE}")
        return (arr[region] - verts[region]).astype(np.float32)

    n_reg = len(region)
    identities = np.stack([region_delta(p) for p in id_paths]) if id_paths else np.zeros((0, n_reg, 3), np.float32)
    expressions = (np.stack([region_delta(p) for _, p in expr_files]) if expr_files
                   else np.zeros((0, n_reg, 3), np.float32))
    lms = np.asarray(index.get("idx_to_landmark_verts", []), dtype=np.int64)
    lms = lms[(lms >= 0) & (lms < n_model)]
    arrays = {
        "neutral": verts[region].astype(np.float32),
        "model_ids": region,
        "identities": identities,
        "identity_files": np.array([p.name for p in id_paths], dtype=str),
        "expression_names": np.array([n for n, _ in expr_files], dtype=str),
        "expressions": expressions,
        "polygons": np.asarray(tris, dtype=np.int64).reshape(-1, 3),
        "uv": uv.astype(np.float32),
        "landmarks": remap[lms][remap[lms] >= 0] if len(lms) else np.zeros(0, np.int64),
    }
    if cache:
        _write_cache(cache_file, arrays)
    return _build(folder, arrays, from_cache=False)


def _write_cache(cache_file: Path, arrays: dict) -> None:
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_file.parent, suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, cache_file)
    except OSError:
        pass  # caching is an optimisation only (read-only home, full disk)


def _build(folder: Path, a: dict, *, from_cache: bool) -> FaceKit:
    neutral = a["neutral"]
    width = float(np.ptp(neutral[:, 0])) if len(neutral) else 0.0
    if width <= 0:
        raise InputError(str(folder / NEUTRAL_FILE), "the face area is degenerate (zero width)")
    return FaceKit(
        folder=folder,
        neutral=neutral,
        model_ids=a["model_ids"],
        identities=a["identities"],
        expression_names=tuple(str(n) for n in a["expression_names"]),
        expressions=a["expressions"],
        polygons=a["polygons"],
        uv=a["uv"],
        landmarks=a["landmarks"],
        units_to_mm=_units_to_mm(width),
        meta={"identity_files": [str(n) for n in a["identity_files"]], "from_cache": from_cache},
    )
