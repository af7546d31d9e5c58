"""Uploads: safe names, what a set of uploaded files is (a scan or a 4D sequence), the private temp
folder each upload is written to (so textures beside a scan are found), and the bundled samples."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from affectvlm.errors import InputError
from affectvlm.io import MESH_EXTENSIONS, TEXTURE_EXTENSIONS
from affectvlm.limits import Limits, default_limits
from affectvlm.mesh import Mesh, MeshSequence

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "data" / "samples"
COMPANION_EXTENSIONS = (*TEXTURE_EXTENSIONS, ".mtl")  # files that may come with a scan
UPLOAD_TYPES = [e.lstrip(".") for e in MESH_EXTENSIONS + COMPANION_EXTENSIONS] + ["zip"]
UPLOAD_PREFIX = "affectvlm-upload-"
_SWEEP_EVERY_S = 600.0
_last_sweep = [0.0]
_sweep_lock = threading.Lock()


def safe_name(name: str) -> str:
    """A file name stripped of folders and odd characters (uploads and zip members)."""
    base = re.split(r"[\\/]", str(name))[-1]
    base = re.sub(r"[^A-Za-z0-9._+-]", "_", base).lstrip(".")
    return base[:200]


def unique_names(names: Sequence[str]) -> list[str]:
    """``names`` (already safe) with each repeat made unique by `` (2)``, `` (3)`` ... before its extension
    (``scan 1.obj`` and ``scan_1.obj`` are both ``scan_1.obj`` when safe: the second becomes ``scan_1 (2).obj``)."""
    taken = set(names)
    seen: set[str] = set()
    out = []
    for name in names:
        if name in seen:
            cut = len(name) - len(file_ext(name))
            stem, ext = name[:cut], name[cut:]
            k = 2
            while f"{stem} ({k}){ext}" in taken:
                k += 1
            name = f"{stem} ({k}){ext}"
            taken.add(name)
        seen.add(name)
        out.append(name)
    return out


def file_ext(name: str) -> str:
    n = name.lower()
    return ".vrml" if n.endswith(".vrml") else os.path.splitext(n)[1]


def signature(*parts: object) -> str:
    """A short hash of ``parts`` (bytes as they are, anything else by ``repr``)."""
    h = hashlib.sha1()
    for p in parts:
        h.update(p if isinstance(p, bytes) else repr(p).encode())
    return h.hexdigest()[:16]


def files_signature(files: Sequence[tuple[str, bytes]], *extra: object) -> str:
    """:func:`signature` of uploaded files by name and content (two files of one name and size differ), and
    ``extra`` (the settings they were scored with)."""
    return signature(*[(n, hashlib.sha1(b).hexdigest()) for n, b in files], *extra)


@dataclass(frozen=True)
class UploadPlan:
    """What a set of uploaded files is: one ``scan`` or a ``sequence``; ``path`` is what to load."""

    kind: str
    path: Path
    name: str
    n_meshes: int


def plan_upload(files: Sequence[tuple[str, bytes]], workdir: str | os.PathLike, *,
                limits: Limits | None = None) -> UploadPlan:
    """Write uploads into ``workdir`` and decide what they are.

    One mesh file (plus its texture images) is a scan; a ``.zip`` or several mesh files named as frames are a 4D
    sequence (frames ordered by the number in their names); several scans, or a zip of them, are refused with a
    pointer to the Batch page. Raises ``InputError`` naming the file.
    """
    limits = limits or default_limits()
    if not files:
        raise InputError("upload", "no file was uploaded")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    meshes, zips, seen = [], [], set()
    safe = [safe_name(n) for n, _ in files]
    for (name, data), cleaned, clean in zip(files, safe, unique_names(safe)):
        if not cleaned:
            raise InputError(str(name), "unusable file name")
        if name in seen:
            raise InputError(cleaned, "uploaded twice")
        seen.add(name)
        if len(data) > limits.max_file_bytes:
            raise InputError(clean, f"{len(data) / 2**20:.1f} MB is over the {limits.max_file_bytes / 2**20:.0f} MB limit")
        ext = file_ext(clean)
        if ext == ".zip":
            zips.append(clean)
        elif ext in MESH_EXTENSIONS:
            meshes.append(clean)
        elif ext not in COMPANION_EXTENSIONS:
            raise InputError(clean, f"unsupported file type {ext or '(none)'}; "
                                    f"expected one of {', '.join(MESH_EXTENSIONS)} or .zip")
        (workdir / clean).write_bytes(data)
    if zips:
        if len(zips) > 1 or meshes:
            raise InputError(zips[0], "upload one .zip of frames, or frame files, not both")
        check_one_sequence(workdir / zips[0], zips[0], limits)
        return UploadPlan("sequence", workdir / zips[0], zips[0], 0)
    if not meshes:
        raise InputError(files[0][0], "no mesh file in the upload (only images)")
    if len(meshes) == 1:
        return UploadPlan("scan", workdir / meshes[0], meshes[0], 1)
    if len(meshes) > limits.max_frames:
        raise InputError("upload", f"{len(meshes)} frames is over the limit of {limits.max_frames}")
    from affectvlm.io.sequence import looks_like_sequence

    if not looks_like_sequence(meshes):  # read as frames, BU-3DFE's F3D gave "two files for frame 3"
        raise InputError("upload", f"{len(meshes)} scans that are not frames of one sequence (their names differ by "
                                   "more than a frame number): score several scans on the Batch page, or drop one "
                                   "scan here")
    return UploadPlan("sequence", workdir, f"{len(meshes)} frames", len(meshes))


def check_one_sequence(path: Path, name: str, limits: Limits) -> None:
    """Refuse, with ``InputError`` naming the zip ``name`` and a pointer to the Batch page, a zip whose meshes are
    not frames of one sequence (several scans, or a BU-4DFE subject's folders of frames); one mesh passes."""
    from affectvlm.io.archive import SafeZip
    from affectvlm.io.sequence import is_mesh_name, looks_like_sequence, member_groups

    with SafeZip(path, limits, name) as z:
        meshes = [n for n in z.names if is_mesh_name(n)]
    if len(meshes) < 2 or looks_like_sequence(meshes):
        return
    groups = member_groups(meshes)
    framed = [d or "the top folder" for d, _, frames in groups if frames]
    rest = sum(len(ns) for _, ns, frames in groups if not frames)
    what = (f"{len(framed)} sequence(s) ({', '.join(framed[:3])}{', ...' if len(framed) > 3 else ''})"
            + (f" and {rest} other scan(s)" if rest else "") if framed else
            f"{len(meshes)} scans that are not frames of one sequence (their names differ by more than a frame "
            "number)")
    raise InputError(name, f"the zip holds {what}: score them on the Batch page, or drop one scan or a zip of one "
                           "sequence's frames here")


@dataclass(frozen=True)
class Upload:
    """One session's current upload: its plan, the private folder it was written to, and a signature of
    the files (the same files again reuse it)."""

    signature: str
    plan: UploadPlan
    workdir: Path


def receive_upload(files: Sequence[tuple[str, bytes]], previous: Upload | None = None, *,
                   limits: Limits | None = None, root: str | os.PathLike | None = None) -> Upload:
    """The :class:`Upload` for ``files``: ``previous`` when it holds the same files; otherwise the files
    are planned into a fresh folder and ``previous``'s folder is deleted (also when the new files are
    refused with ``InputError``, which leaves no folder behind)."""
    sig = files_signature(files)
    if previous is not None and previous.signature == sig:
        return previous
    workdir = new_upload_dir(root, previous=previous.workdir if previous else None)
    try:
        plan = plan_upload(files, workdir, limits=limits)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return Upload(sig, plan, workdir)


def load_input(kind: str, path: Path, name: str, *, n_frames: int | None = None,
               limits: Limits | None = None) -> Mesh | MeshSequence:
    """Read a planned upload or a sample; errors name the user's file ``name``, not the server's folder."""
    from affectvlm import io as aio

    limits = limits or default_limits()
    try:
        if kind == "scan":
            return aio.load_mesh(path, limits=limits)
        seq = aio.load_sequence(path, n_frames=n_frames or None, limits=limits)
    except InputError as e:
        raise InputError(name, e.problem) from None
    if len(seq) == 0:
        raise InputError(name, "the sequence has no frames")
    return seq


def new_upload_dir(root: str | os.PathLike | None = None, *, previous: str | os.PathLike | None = None) -> Path:
    """A fresh private folder for one upload (under the system temp dir by default).

    ``previous`` (the folder this upload replaces) is deleted; upload folders older than
    ``AFFECTVLM_UPLOAD_MAX_AGE_H`` are swept at most every ten minutes."""
    if previous is not None and Path(previous).name.startswith(UPLOAD_PREFIX):
        shutil.rmtree(previous, ignore_errors=True)
    now = time.time()
    with _sweep_lock:
        due = now - _last_sweep[0] > _SWEEP_EVERY_S
        if due:
            _last_sweep[0] = now
    if due:
        sweep_upload_dirs(root)
    return Path(tempfile.mkdtemp(prefix=UPLOAD_PREFIX, dir=root))


def sweep_upload_dirs(root: str | os.PathLike | None = None, *, max_age_s: float | None = None) -> int:
    """Remove this app's upload folders (``affectvlm-upload-*``, owned by this user) untouched for longer
    than ``max_age_s`` (default ``AFFECTVLM_UPLOAD_MAX_AGE_H`` hours); returns how many."""
    if max_age_s is None:
        try:
            max_age_s = 3600 * float(os.environ.get("AFFECTVLM_UPLOAD_MAX_AGE_H") or 6)
        except ValueError:
            max_age_s = 6 * 3600
    base = Path(root or tempfile.gettempdir())
    cutoff = time.time() - max_age_s
    n = 0
    try:
        entries = list(base.iterdir())
    except OSError:
        return 0
    for p in entries:
        if not p.name.startswith(UPLOAD_PREFIX):
            continue
        try:
            st = p.lstat()
        except OSError:
            continue
        if not p.is_dir() or p.is_symlink() or st.st_uid != os.getuid() or st.st_mtime > cutoff:
            continue
        shutil.rmtree(p, ignore_errors=True)
        n += 1
    return n


def list_samples(samples_dir: Path = SAMPLES_DIR) -> dict[str, Path]:
    """Bundled samples: display name -> path (a scan file, or a folder/zip for a sequence)."""
    out: dict[str, Path] = {}
    if not samples_dir.is_dir():
        return out
    for p in sorted(samples_dir.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_file() and file_ext(p.name) in MESH_EXTENSIONS:
            out[f"scan: {p.name}"] = p
        elif p.is_file() and p.suffix.lower() == ".zip":
            out[f"4D sequence: {p.stem}"] = p
        elif p.is_dir():
            frames = [q for q in p.rglob("*") if q.is_file() and file_ext(q.name) in MESH_EXTENSIONS]
            if len(frames) > 1:
                out[f"4D sequence: {p.name} ({len(frames)} frames)"] = p
            elif len(frames) == 1:
                out[f"scan: {p.name}/{frames[0].name}"] = frames[0]
    return out


def sample_kind(path: Path) -> str:
    return "sequence" if path.is_dir() or path.suffix.lower() == ".zip" else "scan"
