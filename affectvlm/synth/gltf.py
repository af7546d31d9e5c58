"""Avatar heads in binary glTF (``.glb``) with ARKit-named morph targets as :class:`FaceModel` s.

Many avatar makers export a head whose morph targets carry Apple ARKit's 52 blendshape names (``browDownLeft``,
``mouthSmileRight``, ``jawOpen``...; also spelt ``browDown_L``): Ready Player Me, Avaturn, Avatar SDK, MPFB and
the avatars made for talking-head projects. Each such file is one face model with one identity (no identity
modes) whose AU targets are composed from those shapes with the recipe book's ``action_units`` map, exactly as
for ICT-FaceKit (:func:`affectvlm.synth.facemodel.arkit_action_units`): other people's meshes and other people's
sculpts of the same ARKit shapes. The head, frame and face mask are made as for the Rocketbox avatars
(:mod:`affectvlm.synth.avatar`).

Read from a folder the user names (searched recursively for ``*.glb``); never committed. Only what this needs of
glTF 2.0 is read: the GLB container, float positions (plain or sparse accessors), triangle indices, and morph
targets named in the mesh's ``extras.targetNames``. Skinned meshes are taken in their bind pose; other meshes get
their node's transform. Compressed files (Draco, meshopt) are refused with a clear error.
"""
from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path

import numpy as np

from affectvlm.errors import InputError
from affectvlm.synth.avatar import avatar_face_model, load_avatars
from affectvlm.synth.facemodel import FaceModel, arkit_action_units

__all__ = ["arkit_name", "gltf_face_model", "load_gltf_heads", "read_glb"]

_MAX_BYTES = 512 * 1024 * 1024
_MIN_ARKIT = 10  # a head needs this many ARKit-named targets
_MAX_VERTICES = 2_000_000  # a head's positions (and each morph target) at most
_DTYPES = {5121: np.uint8, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}  # what the head's accessors may hold
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}
_SIDED = re.compile(r"^(.+?)(?:_?(Left|Right)|_([LR]))$")
_ARKIT = {"browDown", "browInnerUp", "browOuterUp", "cheekPuff", "cheekSquint", "eyeBlink", "eyeLookDown",
          "eyeLookIn", "eyeLookOut", "eyeLookUp", "eyeSquint", "eyeWide", "jawForward", "jawLeft", "jawOpen",
          "jawRight", "mouthClose", "mouthDimple", "mouthFrown", "mouthFunnel", "mouthLeft", "mouthLowerDown",
          "mouthPress", "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
          "mouthShrugUpper", "mouthSmile", "mouthStretch", "mouthUpperUp", "noseSneer", "tongueOut"}


def arkit_name(name: str) -> str | None:
    """An ARKit blendshape name in the recipe book's spelling (``mouthSmileLeft`` / ``mouthSmile_L`` ->
    ``mouthSmile_L``; ``jawOpen`` -> ``jawOpen``), or None for any other name."""
    n = name.strip()
    if n in _ARKIT:
        return n
    m = _SIDED.match(n)
    if m and m.group(1) in _ARKIT:
        side = m.group(2) or m.group(3)
        return f"{m.group(1)}_{side[0]}"
    return None


def read_glb(path: str | os.PathLike) -> tuple[dict, bytes]:
    """A GLB file's JSON document and binary chunk (``b""`` when it has none); InputError for anything else."""
    src = str(path)
    try:
        size = os.path.getsize(path)
        if size > _MAX_BYTES:
            raise InputError(src, f"glTF file is larger than {_MAX_BYTES // 2 ** 20} MB")
        data = Path(path).read_bytes()
    except OSError as e:
        raise InputError(src, f"cannot read the file ({e.strerror or e})") from None
    if len(data) < 20 or data[:4] != b"glTF":
        raise InputError(src, "not a binary glTF (.glb) file")
    version, length = struct.unpack_from("<II", data, 4)
    if version != 2 or length > len(data):
        raise InputError(src, f"glTF version {version} or a truncated file (glTF 2.0 GLB expected)")
    doc, binary, off = None, b"", 12
    while off + 8 <= length:
        n, kind = struct.unpack_from("<I4s", data, off)
        chunk = data[off + 8: off + 8 + n]
        if len(chunk) != n:
            raise InputError(src, "truncated GLB chunk")
        if kind == b"JSON" and doc is None:
            try:
                doc = json.loads(chunk.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):  # JSONDecodeError, huge numbers, deep nesting
                raise InputError(src, "the GLB file's JSON chunk is not valid JSON") from None
        elif kind == b"BIN\x00" and not binary:
            binary = chunk
        off += 8 + n + (-n % 4)
    if not isinstance(doc, dict):
        raise InputError(src, "the GLB file has no JSON chunk")
    used = {e for key in ("extensionsRequired", "extensionsUsed")
            for e in (doc.get(key) if isinstance(doc.get(key), list) else []) if isinstance(e, str)}
    unsupported = sorted(e for e in used if any(w in e.lower() for w in ("draco", "meshopt", "quantization")))
    if unsupported:
        raise InputError(src, f"compressed or quantised glTF ({', '.join(unsupported)}) is not supported; export it "
                              "uncompressed, with float positions")
    return doc, binary


class _Accessors:
    """Reads accessors of one GLB (``bufferView``s into its binary chunk; sparse accessors too)."""

    def __init__(self, doc: dict, binary: bytes, src: str) -> None:
        self.doc, self.bin, self.src = doc, binary, src

    def _view(self, index: int, offset: int, count: int, width: int, dtype: np.dtype) -> np.ndarray:
        views = self.doc.get("bufferViews") or []
        if not (isinstance(index, int) and 0 <= index < len(views)):
            raise InputError(self.src, "glTF accessor names a missing bufferView")
        bv = views[index]
        if int(bv.get("buffer", 0)) != 0:
            raise InputError(self.src, "glTF data outside the GLB's own binary chunk is not supported")
        item = width * dtype.itemsize
        stride = int(bv.get("byteStride") or item)
        first = int(bv.get("byteOffset", 0))
        start = first + int(offset)
        end = start + stride * (count - 1) + item if count else start
        last = first + int(bv.get("byteLength", 0))
        if (count < 0 or stride < item or first < 0 or int(offset) < 0 or last > len(self.bin)
                or end > last):
            raise InputError(self.src, "glTF accessor reaches outside its data")
        raw = np.frombuffer(self.bin, np.uint8, count=end - start, offset=start)
        rows = np.lib.stride_tricks.as_strided(raw, shape=(count, item), strides=(stride, 1))
        return np.ascontiguousarray(rows).view(dtype).reshape(count, width)

    def count(self, index: int) -> int:
        """The element count an accessor claims (InputError for a missing one)."""
        accs = self.doc.get("accessors") or []
        if not (isinstance(index, int) and 0 <= index < len(accs)) or not isinstance(accs[index], dict):
            raise InputError(self.src, "glTF primitive names a missing accessor")
        return int(accs[index].get("count", 0))

    def read(self, index: int, *, kind: str = "SCALAR", types: tuple[int, ...] = (5126,),
             max_count: int = _MAX_VERTICES) -> np.ndarray:
        """Accessor ``index`` as a (count, width) array; it must be of ``kind`` (``VEC3``...), one of the component
        ``types`` and no longer than ``max_count``."""
        count = self.count(index)
        a = self.doc["accessors"][index]
        if a.get("type") != kind or a.get("componentType") not in types or a.get("normalized"):
            raise InputError(self.src, f"glTF accessor is not a {kind} of the expected component type")
        if count > max_count:
            raise InputError(self.src, f"glTF accessor has {count} elements, over the limit of {max_count}")
        dtype = np.dtype(_DTYPES[a["componentType"]])
        width = _WIDTH[a["type"]]
        out = (self._view(a["bufferView"], a.get("byteOffset", 0), count, width, dtype) if "bufferView" in a
               else np.zeros((count, width), dtype))
        sparse = a.get("sparse")
        if sparse:
            n = int(sparse.get("count", 0))
            ix, vals = sparse.get("indices") or {}, sparse.get("values") or {}
            if ix.get("componentType") not in (5121, 5123, 5125):
                raise InputError(self.src, "glTF sparse accessor indices are not unsigned integers")
            idt = np.dtype(_DTYPES[ix["componentType"]])
            idx = self._view(ix.get("bufferView"), ix.get("byteOffset", 0), n, 1, idt)[:, 0].astype(np.int64)
            if len(idx) and (idx.min() < 0 or idx.max() >= count):
                raise InputError(self.src, "glTF sparse accessor indices out of range")
            out = out.copy()
            out[idx] = self._view(vals.get("bufferView"), vals.get("byteOffset", 0), n, width, dtype)
        return out


def _world_matrices(doc: dict) -> dict[int, np.ndarray]:
    """Node index -> 4x4 world matrix (matrix, or translation/rotation/scale), parents first."""
    nodes = doc.get("nodes") or []
    local = []
    for n in nodes:
        if "matrix" in n:
            local.append(np.asarray(n["matrix"], np.float64).reshape(4, 4).T)
            continue
        x, y, z, w = n.get("rotation", [0, 0, 0, 1])
        R = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                      [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                      [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
        M = np.eye(4)
        M[:3, :3] = R @ np.diag(n.get("scale", [1, 1, 1]))
        M[:3, 3] = n.get("translation", [0, 0, 0])
        local.append(M)
    parent = {c: i for i, n in enumerate(nodes) for c in n.get("children", []) if isinstance(c, int)}
    world: dict[int, np.ndarray] = {}

    def get(i: int, depth: int = 0) -> np.ndarray:
        if i not in world:
            if depth > len(nodes):
                raise ValueError("node loop")
            world[i] = (get(parent[i], depth + 1) if i in parent else np.eye(4)) @ local[i]
        return world[i]

    return {i: get(i) for i in range(len(nodes))}


def _head(doc: dict, acc: "_Accessors", src: str) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], str]:
    """The mesh with the most vertices among those with ARKit-named targets: vertices (m, file axes), triangles,
    ARKit shape (recipe-book spelling) -> delta (m), and the mesh's name."""
    best = None
    for mi, mesh in enumerate(doc.get("meshes") or []):
        names = (mesh.get("extras") or {}).get("targetNames") or []
        arkit = {i: arkit_name(str(n)) for i, n in enumerate(names)}
        arkit = {i: n for i, n in arkit.items() if n}
        if len(arkit) < _MIN_ARKIT:
            continue
        for prim in mesh.get("primitives") or []:
            if prim.get("mode", 4) != 4 or "POSITION" not in (prim.get("attributes") or {}):
                continue
            n = acc.count(prim["attributes"]["POSITION"])
            if best is None or n > best[0]:
                best = (n, mi, prim, arkit)
    if best is None:
        raise InputError(src, f"no mesh in the glTF file has {_MIN_ARKIT} or more ARKit-named morph targets "
                              "(browDownLeft, mouthSmileLeft, jawOpen...)")
    _, mi, prim, arkit = best
    v = acc.read(prim["attributes"]["POSITION"], kind="VEC3").astype(np.float64)
    if v.shape[1] != 3 or not len(v) or not np.isfinite(v).all():
        raise InputError(src, "glTF head positions are empty or not finite")
    if "indices" in prim:
        idx = acc.read(prim["indices"], types=(5121, 5123, 5125), max_count=20 * _MAX_VERTICES)[:, 0].astype(np.int64)
    else:
        idx = np.arange(len(v) - len(v) % 3, dtype=np.int64)
    if len(idx) < 3 or len(idx) % 3 or idx.min() < 0 or idx.max() >= len(v):
        raise InputError(src, "glTF head triangles are missing or index outside the mesh")
    targets = prim.get("targets") or []
    shapes: dict[str, np.ndarray] = {}
    for i, name in arkit.items():
        if i < len(targets) and "POSITION" in targets[i] and acc.count(targets[i]["POSITION"]) == len(v):
            d = acc.read(targets[i]["POSITION"], kind="VEC3").astype(np.float64)
            if d.shape == v.shape and np.isfinite(d).all():
                shapes[name] = d
    if len(shapes) < _MIN_ARKIT:
        raise InputError(src, "the glTF head's ARKit morph targets have no usable positions")
    # skinned meshes are in their bind pose; others carry their node's transform
    nodes = [i for i, n in enumerate(doc.get("nodes") or []) if n.get("mesh") == mi]
    if nodes and "skin" not in doc["nodes"][nodes[0]]:
        try:
            M = _world_matrices(doc)[nodes[0]]
        except (ValueError, RecursionError, TypeError, KeyError, IndexError, OverflowError):
            raise InputError(src, "the glTF node tree is broken (a loop or a bad transform)") from None
        if not np.isfinite(M).all():
            raise InputError(src, "the glTF head's node transform is not finite")
        v = v @ M[:3, :3].T + M[:3, 3]  # a huge transform overflows: gltf_face_model refuses non-finite heads
        shapes = {k: d @ M[:3, :3].T for k, d in shapes.items()}
    name = str((doc.get("meshes") or [])[mi].get("name") or f"mesh{mi}")
    return v, idx.reshape(-1, 3), shapes, name


def gltf_face_model(path: str | os.PathLike, *, name: str | None = None, recipes=None) -> FaceModel:
    """One GLB avatar with ARKit-named morph targets as a :class:`FaceModel` named ``gltf-STEM`` (module doc)."""
    src = str(path)
    doc, binary = read_glb(path)
    try:
        with np.errstate(all="ignore"):  # damaged floats (NaN, inf) are refused by explicit checks, not warnings
            v, tris, shapes, mesh_name = _head(doc, _Accessors(doc, binary, src), src)
    except InputError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RecursionError,
            MemoryError) as e:
        raise InputError(src, f"malformed glTF ({type(e).__name__}: {e})") from None
    mm = 1000.0  # glTF is in metres, +Y up
    with np.errstate(all="ignore"):
        v, shapes = v * mm, {k: d * mm for k, d in shapes.items()}
    if not (np.isfinite(v).all() and all(np.isfinite(d).all() for d in shapes.values())):
        raise InputError(src, "the glTF head's positions or morph targets are out of range")
    au = arkit_action_units(shapes, recipes)
    stem = re.sub(r"[^a-z0-9]+", "-", Path(src).stem.lower()).strip("-")
    return avatar_face_model(v, tris, au, np.array([0.0, 1.0, 0.0]), name=name or f"gltf-{stem}", source=src,
                             licence="the avatar's own (see where it came from)",
                             meta={"gltf_mesh": mesh_name, "arkit_shapes": sorted(shapes)}, what="glTF")


def load_gltf_heads(folder: str | os.PathLike, recipes=None) -> dict[str, FaceModel]:
    """Every GLB avatar with ARKit-named morph targets under ``folder`` (or one such file), by model name."""
    return load_avatars(folder, ".glb", lambda f: gltf_face_model(f, recipes=recipes), kind="glTF avatar",
                        lacking="ARKit-named morph targets")
