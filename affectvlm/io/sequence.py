"""4D sequences: a folder, a ``.zip`` (path or bytes) or a list of per-frame mesh files.

    from affectvlm.io import load_sequence, is_sequence
    seq = load_sequence("F001/Angry")                    # 000.wrl, 001.wrl, ... (textures beside them load too)
    seq = load_sequence(zip_bytes, "F001_Angry.zip", n_frames=8)   # 8 evenly spaced frames
    seq = load_sequence(["a/frame_2.obj", "a/frame_10.obj"], every=2)
    seq.frames, seq.frame_ids

The frame number is the last integer in the file stem (``000.wrl``, ``frame_12.obj``,
``F001_Happy_0045.ply``); frames are sorted by it. Non-mesh files (textures, ``.bnd`` landmarks, hidden
files, ``__MACOSX``) are skipped; folders are not searched recursively. Sampling: ``every`` keeps every
k-th frame, then ``n_frames`` keeps N evenly spaced ones (``np.linspace`` rounded). Only kept frames are
read. Zips are read in memory through `affectvlm.io.archive` (zip-slip, bombs and limits checked).
"""
from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

import numpy as np

from affectvlm.errors import ConfigError, InputError
from affectvlm.limits import Limits
from affectvlm.mesh import Mesh, MeshSequence
from affectvlm.io._common import get_limits
from affectvlm.io.archive import SafeZip, is_zip
from affectvlm.io.formats import MESH_EXTENSIONS, companion_paths, load_mesh, load_mesh_bytes

__all__ = ["load_sequence", "is_sequence", "is_mesh_name", "is_mesh_file", "sniff_mesh", "looks_like_sequence",
           "frame_number", "sample_indices", "member_dir", "member_groups"]

_INT = re.compile(r"\d+")
# static scans named by their dataset: never frames of a sequence, however alike their names
BU3DFE_SCAN_RE = re.compile(r"^([FM])(\d{4})_([A-Z]{2})(\d{2})([A-Z]{2})_F3D$", re.IGNORECASE)
BOSPHORUS_SCAN_RE = re.compile(r"^(bs\d{3})_([A-Z]+)_([A-Z0-9]+)_(\d+)$", re.IGNORECASE)


def frame_number(name: str) -> int | None:
    """The last integer in the file stem, or None when the stem has no digits."""
    found = _INT.findall(PurePosixPath(name.replace("\\", "/")).stem)
    return int(found[-1]) if found else None


def is_mesh_name(name: str) -> bool:
    """A mesh file by its extension, not hidden, not macOS zip litter."""
    p = PurePosixPath(name.replace("\\", "/"))
    return (p.suffix.lower() in MESH_EXTENSIONS and not p.name.startswith(".")
            and "__MACOSX" not in p.parts)


def sniff_mesh(path: str | os.PathLike) -> bool:
    """True when a file's first bytes look like a mesh (VRML, OBJ, PLY, OFF, ASCII STL, GLB) whatever its name."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    head = head.lstrip(b"\xef\xbb\xbf").lstrip()  # a byte-order mark or blank lines before the header
    if head.startswith(b"#VRML"):
        return True
    for line in head.splitlines():
        s = line.strip()
        if s.startswith((b"v ", b"f ", b"vt ", b"vn ", b"o ", b"g ", b"mtllib")):
            return True
    return head.startswith((b"ply", b"OFF", b"solid", b"glTF"))


def is_mesh_file(path: str | os.PathLike) -> bool:
    """A mesh file in a folder: by its extension (:func:`is_mesh_name`), or a frame named by its number alone
    (``0001``: BP4D's frames may have no extension) whose content reads as a mesh."""
    name = os.path.basename(os.fspath(path))
    return is_mesh_name(name) or (name.isdigit() and sniff_mesh(path))


def looks_like_sequence(names: Sequence[str]) -> bool:
    """True when 2+ mesh files differ only by the digits in their names (frames of one 4D scan), unless a dataset
    names them as static scans (BU-3DFE's ``F0001_HA03WH_F3D``, Bosphorus's ``bs000_E_ANGER_0``: a subject's four
    intensities, or several subjects' scans of one emotion)."""
    meshes = [PurePosixPath(n.replace("\\", "/")) for n in names if is_mesh_name(n) or PurePosixPath(n).name.isdigit()]
    if len(meshes) < 2 or any(BU3DFE_SCAN_RE.match(p.stem) or BOSPHORUS_SCAN_RE.match(p.stem) for p in meshes):
        return False
    stems = {(str(p.parent), re.sub(r"\d+", "#", p.stem), p.suffix.lower()) for p in meshes}
    return len(stems) == 1 and "#" in next(iter(stems))[1]


def sample_indices(n: int, every: int = 1, n_frames: int | None = None) -> list[int]:
    """Indices kept out of ``n`` frames: every ``every``-th, then ``n_frames`` evenly spaced among those."""
    if not isinstance(every, (int, np.integer)) or every < 1:
        raise ConfigError(f"every must be a positive integer, got {every!r}")
    if n_frames is not None and (not isinstance(n_frames, (int, np.integer)) or n_frames < 1):
        raise ConfigError(f"n_frames must be a positive integer or None, got {n_frames!r}")
    idx = list(range(0, n, int(every)))
    if n_frames is not None and n_frames < len(idx):
        pick = np.unique(np.round(np.linspace(0, len(idx) - 1, int(n_frames))).astype(int))
        idx = [idx[i] for i in pick]
    return idx


def _order(names: list[str], source: str) -> list[tuple[int, str]]:
    """(frame number, name) sorted numerically; files without numbers only if none has one (then by name)."""
    nums = [frame_number(n) for n in names]
    if all(x is None for x in nums):
        return list(enumerate(sorted(names)))
    missing = [n for n, x in zip(names, nums) if x is None]
    if missing:
        raise InputError(source, f"cannot tell the frame number of {missing[0]!r} (no number in its name)")
    pairs = sorted(zip(nums, names), key=lambda p: (p[0], p[1]))
    for (a, na), (b, nb) in zip(pairs, pairs[1:]):
        if a == b:
            raise InputError(source, f"two files for frame {a}: {na!r} and {nb!r}")
    return pairs


def zip_resolver(z: SafeZip, member: str) -> Callable[[str], bytes | None]:
    """Companion files (a texture, an OBJ's ``.mtl``) of a zip ``member``, read from its folder in the zip."""
    folder = PurePosixPath(member.replace("\\", "/")).parent

    def resolve(name: str) -> bytes | None:
        sub, base = companion_paths(name)
        tries = [str(folder / p) if str(folder) != "." else str(p) for p in (sub, base) if p]
        found = next((f for f in map(z.find, tries) if f), None)
        return z.read(found) if found else None

    return resolve


def _frame(load: Callable[[], Mesh], source: str) -> Mesh:
    """One frame, or a frame that failed to read: no vertices and the reason as ``meta["load_error"]``, so that
    one corrupt frame is its own error row (:func:`affectvlm.io._common.check_face` raises it) and the others are
    scored."""
    try:
        return load()
    except InputError as e:
        return Mesh(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64), source=e.source or source,
                    meta={"load_error": e.problem})


def _finish(frames, ids, source, kind, n_total, limits) -> MeshSequence:
    bad = [m for m in frames if m.meta.get("load_error")]
    if frames and len(bad) == len(frames):  # nothing to score: the first reason is the sequence's
        raise InputError(bad[0].source, bad[0].meta["load_error"])
    return MeshSequence(frames=frames, frame_ids=ids, source=source,
                        meta={"container": kind, "n_available": n_total, "n_unreadable": len(bad)})


def _check_count(n_kept: int, limits: Limits, source: str) -> None:
    if n_kept > limits.max_frames:
        raise InputError(source, f"{n_kept} frames to load, over the limit of {limits.max_frames} "
                                 "(AFFECTVLM_MAX_FRAMES); sample with every= or n_frames=")


def member_dir(name: str) -> str:
    """The folder of a zip member (``""`` at the top), as ``member_dir=`` of :func:`load_sequence` takes it."""
    parent = str(PurePosixPath(name.replace("\\", "/")).parent)
    return "" if parent == "." else parent


def member_groups(names: Sequence[str]) -> list[tuple[str, list[str], bool]]:
    """A zip's mesh members as a folder is read, in member order: ``(folder, meshes, frames)`` per member folder,
    ``frames`` when its meshes are frames of one sequence (:func:`looks_like_sequence`), else scans."""
    groups: dict[str, list[str]] = {}
    for n in names:
        if is_mesh_name(n):
            groups.setdefault(member_dir(n), []).append(n)
    return [(d, ns, looks_like_sequence(ns)) for d, ns in groups.items()]


def _load_zip(src, source: str, every: int, n_frames: int | None, limits: Limits,
              folder: str | None = None) -> MeshSequence:
    with SafeZip(src, limits, source) as z:
        names = [n for n in z.names if is_mesh_name(n) and (folder is None or member_dir(n) == folder)]
        if not names:
            raise InputError(source, f"the zip holds no mesh files ({' '.join(MESH_EXTENSIONS)})"
                             + (f" in {folder!r}" if folder else ""))
        dirs = list(dict.fromkeys(member_dir(n) for n in names))
        if len(dirs) > 1:  # frames of several recordings (a BU-4DFE subject): not one sequence
            raise InputError(source, f"the zip holds frames in {len(dirs)} folders ({', '.join(dirs[:3])}"
                             f"{', ...' if len(dirs) > 3 else ''}); read one with member_dir=, or give the zip to "
                             "predict, which scores each folder as a sequence")
        order = _order(names, source)
        keep = sample_indices(len(order), every, n_frames)
        _check_count(len(keep), limits, source)
        frames, ids = [], []
        for i in keep:
            num, member = order[i]
            # a member folder's frames are named under the source that names the folder, not with it twice
            shown = f"{source}/{PurePosixPath(member).name}" if folder else f"{source}:{member}"
            frames.append(_frame(lambda: load_mesh_bytes(z.read(member), member, source=shown, limits=limits,
                                                         resolve=zip_resolver(z, member)), shown))
            ids.append(num)
    return _finish(frames, ids, source, "zip", len(order), limits)


def load_sequence(src: str | os.PathLike | bytes | Sequence[str | os.PathLike], name: str | None = None, *,
                  every: int = 1, n_frames: int | None = None, limits: Limits | None = None,
                  member_dir: str | None = None) -> MeshSequence:
    """Load the frames of a 4D scan, ordered by frame number, keeping only the sampled ones. ``member_dir``: of a
    zip, the folder whose frames to read (a zip of several recordings)."""
    limits = get_limits(limits)
    if isinstance(src, (bytes, bytearray, memoryview)):
        source = name or "<upload>"
        if not is_zip(bytes(src[:4])):
            raise InputError(source, "a sequence upload must be a .zip of per-frame meshes")
        return _load_zip(bytes(src), source, every, n_frames, limits, member_dir)
    if isinstance(src, (list, tuple)):
        source = name or "<file list>"
        if not src:
            raise InputError(source, "no frames: the file list is empty")
        paths = [Path(p) for p in src]
        meshes = [p for p in paths if is_mesh_name(p.name)]
        if not meshes:
            raise InputError(source, "no mesh files among the listed files")
        by_name = {str(p): p for p in meshes}
        order = _order(list(by_name), source)
        keep = sample_indices(len(order), every, n_frames)
        _check_count(len(keep), limits, source)
        frames = [_frame(lambda p=by_name[order[i][1]]: load_mesh(p, limits=limits), order[i][1]) for i in keep]
        return _finish(frames, [order[i][0] for i in keep], source, "list", len(order), limits)
    if not isinstance(src, (str, os.PathLike)):
        raise InputError(str(name or src), f"expected a folder, zip, bytes or list of files, got {type(src).__name__}")
    path = Path(src)
    source = name or str(path)
    if path.is_dir():
        try:
            names = sorted(p.name for p in path.iterdir() if p.is_file() and is_mesh_file(p))
        except OSError as e:
            raise InputError(source, f"cannot list folder: {e.strerror or e}") from None
        if not names:
            subs = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
            hint = (f"; its sub-folders ({', '.join(subs[:3])}{' ...' if len(subs) > 3 else ''}) may each be one: give "
                    "one of them, or the folder to `affectvlm predict`, which visits them" if subs else "")
            raise InputError(source, f"no frames: the folder holds no mesh files ({' '.join(MESH_EXTENSIONS)}){hint}")
        order = _order(names, source)
        keep = sample_indices(len(order), every, n_frames)
        _check_count(len(keep), limits, source)
        frames = [_frame(lambda n=os.path.join(source, order[i][1]), p=path / order[i][1]:
                         load_mesh(p, name=n, limits=limits), os.path.join(source, order[i][1])) for i in keep]
        return _finish(frames, [order[i][0] for i in keep], source, "folder", len(order), limits)
    if not path.exists():
        raise InputError(source, "no such file or folder")
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as e:
        raise InputError(source, f"cannot read: {e.strerror or e}") from None
    if is_zip(head):
        return _load_zip(path, source, every, n_frames, limits, member_dir)
    raise InputError(source, "not a sequence: expected a folder, a .zip or a list of frame files")


def is_sequence(src: object) -> bool:
    """True for a list of files, a folder, or a zip (path or bytes) with more than one mesh member."""
    if isinstance(src, (list, tuple)):
        return True
    try:
        if isinstance(src, (bytes, bytearray, memoryview)):
            data = bytes(src)
            if not is_zip(data[:4]):
                return False
            with SafeZip(data, None, "<upload>") as z:
                return sum(is_mesh_name(n) for n in z.names) > 1
        if isinstance(src, (str, os.PathLike)):
            p = Path(src)
            if p.is_dir():
                return True
            if p.is_file():
                with open(p, "rb") as fh:
                    if not is_zip(fh.read(4)):
                        return False
                with SafeZip(p, None, str(p)) as z:
                    return sum(is_mesh_name(n) for n in z.names) > 1
    except (InputError, OSError):
        return False
    return False
