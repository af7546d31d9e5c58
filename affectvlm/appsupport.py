"""Streamlit-free helpers for the app (``app.py``, ``pages/``): settings, workspace paths, uploads,
the 3D preview (texture sampled to vertex colours, decimated) and plotly figures.

No model logic lives here: the pages call :func:`affectvlm.predict.predict`, ``load_model`` and
``render_views`` exactly as the CLI does. Settings come from environment variables:

==============================  ==================================================================
``AFFECTVLM_WORKSPACE_ROOTS``   folders (``os.pathsep``-separated) the Train page may read/write;
                                default ``./workspace``. The first one holds the jobs database.
``AFFECTVLM_DEFAULT_MODEL``     model spec used when the sidebar says "embedded default"
                                (unset: the library's embedded ``weights/affectvlm-default``).
``AFFECTVLM_PREVIEW_FACES``     most triangles sent to the browser for the 3D preview (30000).
``AFFECTVLM_MAX_UPLOAD_MB``     upload limit shown in the app; keep it equal to Streamlit's
                                ``server.maxUploadSize`` (``.streamlit/config.toml``).
``AFFECTVLM_MAX_*``             the library's input limits (:mod:`affectvlm.limits`).
``AFFECTVLM_UPLOAD_MAX_AGE_H``  upload temp folders older than this are removed (6 hours).
==============================  ==================================================================
"""
from __future__ import annotations

import argparse
import io as _io
import math
import os
import re
import shlex
import shutil
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from affectvlm.errors import ConfigError, InputError
from affectvlm.io import MESH_EXTENSIONS
from affectvlm.limits import Limits, default_limits
from affectvlm.mesh import Mesh

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLES_DIR = Path(__file__).resolve().parent / "data" / "samples"
IMAGE_EXTENSIONS = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".mtl")
UPLOAD_TYPES = [e.lstrip(".") for e in MESH_EXTENSIONS + IMAGE_EXTENSIONS] + ["zip"]


# ---------------------------------------------------------------------------------------------------
# Settings and workspace paths


@dataclass(frozen=True)
class AppSettings:
    workspace_roots: tuple[Path, ...]
    default_model: str | None = None
    limits: Limits = field(default_factory=default_limits)
    max_upload_mb: int = 1024
    preview_max_faces: int = 30_000
    job_refresh_s: float = 2.0

    @property
    def workspace(self) -> Path:
        """The first workspace root: it holds the jobs database and default run folders."""
        return self.workspace_roots[0]

    @property
    def jobs_db(self) -> Path:
        return self.workspace / ".affectvlm" / "jobs.sqlite3"


def _env_num(env: dict, name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        v = float(raw)
    except ValueError as e:
        raise ConfigError(f"{name}={raw!r} is not a number") from e
    if not lo <= v <= hi:
        raise ConfigError(f"{name}={raw!r} must be between {lo:g} and {hi:g}")
    return v


def load_settings(env: dict[str, str] | None = None, *, cwd: str | os.PathLike | None = None) -> AppSettings:
    """Settings from the environment (see the module docstring); workspace roots are created."""
    env = dict(os.environ if env is None else env)
    base = Path(cwd or os.getcwd())
    raw = env.get("AFFECTVLM_WORKSPACE_ROOTS") or "workspace"
    roots = []
    for part in raw.split(os.pathsep):
        part = part.strip()
        if not part:
            continue
        p = Path(os.path.expanduser(part))
        p = (p if p.is_absolute() else base / p)
        p.mkdir(parents=True, exist_ok=True)
        roots.append(p.resolve())
    if not roots:
        raise ConfigError(f"AFFECTVLM_WORKSPACE_ROOTS={raw!r} names no folder")
    sweep_upload_dirs(max_age_s=3600 * _env_num(env, "AFFECTVLM_UPLOAD_MAX_AGE_H", 6, 0, 24 * 365))
    return AppSettings(
        workspace_roots=tuple(roots),
        default_model=env.get("AFFECTVLM_DEFAULT_MODEL") or None,
        limits=default_limits(),
        max_upload_mb=int(_env_num(env, "AFFECTVLM_MAX_UPLOAD_MB", 1024, 1, 1 << 20)),
        preview_max_faces=int(_env_num(env, "AFFECTVLM_PREVIEW_FACES", 30_000, 100, 5_000_000)),
        job_refresh_s=_env_num(env, "AFFECTVLM_JOB_REFRESH_S", 2.0, 0.2, 3600),
    )


def resolve_in_roots(path: str | os.PathLike, roots: Sequence[Path], *, what: str = "path",
                     must_exist: bool = False, must_be_dir: bool = False) -> Path:
    """Resolve ``path`` (relative paths are taken inside the first root; symlinks resolved) and check
    that it lies inside one of ``roots``; ``ConfigError`` naming the path otherwise."""
    text = str(path).strip()
    if not text:
        raise ConfigError(f"{what}: empty path")
    if "\x00" in text:
        raise ConfigError(f"{what}: {text!r} contains a NUL byte")
    p = Path(os.path.expanduser(text))
    if not p.is_absolute():
        p = Path(roots[0]) / p
    real = Path(os.path.realpath(p))
    real_roots = [Path(os.path.realpath(r)) for r in roots]
    if not any(real == r or r in real.parents for r in real_roots):
        allowed = ", ".join(str(r) for r in real_roots)
        raise ConfigError(f"{what}: {text} is outside the workspace roots ({allowed})")
    if must_exist and not real.exists():
        raise ConfigError(f"{what}: {text} does not exist")
    if must_be_dir and real.exists() and not real.is_dir():
        raise ConfigError(f"{what}: {text} is not a folder")
    return real


def unique_run_dir(parent: Path, stem: str) -> Path:
    """``parent/stem``, or ``stem-2``, ``stem-3``… if taken."""
    safe = safe_name(stem) or "run"
    cand = parent / safe
    i = 2
    while cand.exists():
        cand = parent / f"{safe}-{i}"
        i += 1
    return cand


# ---------------------------------------------------------------------------------------------------
# Uploads


def safe_name(name: str) -> str:
    """A file name stripped of folders and odd characters (uploads and zip members)."""
    base = re.split(r"[\\/]", str(name))[-1]
    base = re.sub(r"[^A-Za-z0-9._+-]", "_", base).lstrip(".")
    return base[:200]


def _ext(name: str) -> str:
    n = name.lower()
    return ".vrml" if n.endswith(".vrml") else os.path.splitext(n)[1]


@dataclass
class UploadPlan:
    """What a set of uploaded files is: one ``scan`` or a ``sequence``; ``path`` is what to load."""

    kind: str
    path: Path
    name: str
    n_meshes: int


def plan_upload(files: Sequence[tuple[str, bytes]], workdir: str | os.PathLike, *,
                limits: Limits | None = None) -> UploadPlan:
    """Write uploads into ``workdir`` (so textures beside a scan are found) and decide what they are.

    One mesh file (plus its texture images) is a scan; a ``.zip`` or several mesh files are a 4D
    sequence (frames ordered by the number in their names). Raises ``InputError`` naming the file.
    """
    limits = limits or default_limits()
    if not files:
        raise InputError("upload", "no file was uploaded")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    exts = MESH_EXTENSIONS
    meshes, zips, seen = [], [], set()
    for name, data in files:
        clean = safe_name(name)
        if not clean:
            raise InputError(str(name), "unusable file name")
        if clean in seen:
            raise InputError(clean, "uploaded twice")
        seen.add(clean)
        if len(data) > limits.max_file_bytes:
            raise InputError(clean, f"{len(data) / 2**20:.1f} MB is over the {limits.max_file_bytes / 2**20:.0f} MB limit")
        ext = _ext(clean)
        if ext == ".zip":
            zips.append(clean)
        elif ext in exts:
            meshes.append(clean)
        elif ext not in IMAGE_EXTENSIONS:
            raise InputError(clean, f"unsupported file type {ext or '(none)'}; "
                                    f"expected one of {', '.join(exts)} or .zip")
        (workdir / clean).write_bytes(data)
    if zips:
        if len(zips) > 1 or meshes:
            raise InputError(zips[0], "upload one .zip of frames, or frame files, not both")
        return UploadPlan("sequence", workdir / zips[0], zips[0], 0)
    if not meshes:
        raise InputError(files[0][0], "no mesh file in the upload (only images)")
    if len(meshes) == 1:
        return UploadPlan("scan", workdir / meshes[0], meshes[0], 1)
    if len(meshes) > limits.max_frames:
        raise InputError("upload", f"{len(meshes)} frames is over the limit of {limits.max_frames}")
    return UploadPlan("sequence", workdir, f"{len(meshes)} frames", len(meshes))


UPLOAD_PREFIX = "affectvlm-upload-"
_SWEEP_EVERY_S = 600.0
_last_sweep = [0.0]
_sweep_lock = threading.Lock()


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


# ---------------------------------------------------------------------------------------------------
# The Train page's trainer command: validated fields only

FORM_OPTIONS = ("data", "out", "layout", "resume")  # set by the page's own fields, refused as extras
MAX_CONFIG_BYTES = 1 << 20


def _trainer_parser() -> argparse.ArgumentParser:
    """The trainer's own parser (no abbreviations), raising ``ConfigError`` instead of exiting."""
    from affectvlm.train.config import build_parser

    p = build_parser()
    p.allow_abbrev = False

    def _error(message: str):
        raise ConfigError(f"extra trainer options: {message}")

    p.error = _error  # type: ignore[method-assign]
    p.exit = lambda status=0, message=None: _error((message or "").strip() or "not accepted here")  # type: ignore
    return p


def check_model_spec(spec: str, roots: Sequence[Path], *, what: str = "model") -> str:
    """A model spec with any path it names resolved inside ``roots`` (names, ``NAME:TAG`` and ``hf-hub:``
    pass unchanged); ``ConfigError`` for a path outside them."""
    text = str(spec).strip()
    if not text or text == "default" or text.startswith("hf-hub:"):
        return text
    if text.startswith("local-dir:"):
        return "local-dir:" + str(resolve_in_roots(text[len("local-dir:"):], roots, what=what, must_exist=True))
    name, at, path = text.partition("@")
    if at and name and not re.search(r"[\\/]", name):
        return f"{name}@{resolve_in_roots(path, roots, what=what, must_exist=True)}"
    if text.startswith((".", "~")) or re.search(r"[\\/]", text) or Path(text).exists():
        return str(resolve_in_roots(text, roots, what=what, must_exist=True))
    return text


def _option_tokens(parser: argparse.ArgumentParser, ns: dict[str, Any]) -> list[str]:
    """``--option=value`` tokens that make ``parser`` produce ``ns`` again."""
    out: list[str] = []
    for dest, value in ns.items():
        acts = [a for a in parser._actions if a.dest == dest and a.option_strings]
        flag = next((a for a in acts if a.nargs == 0 and a.const == value), None)
        if flag is not None:
            out.append(flag.option_strings[-1])
            continue
        act = next((a for a in acts if a.nargs != 0), None)
        if act is None:
            raise ConfigError(f"extra trainer options: cannot pass {dest}={value!r}")
        text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        out.append(f"{act.option_strings[-1]}={text}")
    return out


def train_command_args(*, data: Path, layout: str, out: Path, roots: Sequence[Path], cache_dir: Path,
                       model: str | None = None, epochs: int | None = None, batch_size: int | None = None,
                       lr: float | None = None, losses: str | None = None, views: str | None = None,
                       max_steps: int | None = None, extra_text: str = "") -> list[str]:
    """The trainer's arguments from the Train form, confined to the workspace ``roots``.

    Extra options are parsed with the trainer's own parser (no abbreviations) and rebuilt from the parsed
    values; every path they or a ``--config`` file name (``--cache-dir``, ``--config``, ``--model``
    paths) must resolve (symlinks, ``..``) inside ``roots``, and the page passes the resolved paths
    explicitly, so the trainer sees exactly what was checked. ``ConfigError`` (one line) otherwise."""
    from affectvlm.train.config import load_yaml, resolve_config

    if "\x00" in extra_text:
        raise ConfigError("extra trainer options: contain a NUL byte")
    try:
        tokens = shlex.split(extra_text)
    except ValueError as e:
        raise ConfigError(f"extra trainer options: {e}") from None
    if any(t in ("-h", "--help") for t in tokens):
        raise ConfigError("extra trainer options: --help is not an option here (see `affectvlm train --help`)")
    parser = _trainer_parser()
    ns = vars(parser.parse_args(tokens))
    taken = [k for k in FORM_OPTIONS if k in ns]
    if taken:
        raise ConfigError(f"extra trainer options: --{taken[0].replace('_', '-')} is not allowed; set the dataset, "
                          "layout and output folder with the fields above")
    from_file: dict[str, Any] = {}
    config_path: Path | None = None
    if "config" in ns:
        config_path = resolve_in_roots(ns.pop("config"), roots, what="--config", must_exist=True)
        if not config_path.is_file():
            raise ConfigError(f"--config: {config_path.name} is not a file")
        if config_path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"--config: {config_path.name} is over {MAX_CONFIG_BYTES >> 10} KB")
        from_file = load_yaml(config_path)
        for key in ("data", "out", "cache_dir"):
            if from_file.get(key):
                resolve_in_roots(str(from_file[key]), roots, what=f"--config {config_path.name}: {key}")
        if from_file.get("model"):
            check_model_spec(str(from_file["model"]), roots, what=f"--config {config_path.name}: model")
    spec = ns.pop("model", None) or model or from_file.get("model")
    spec = check_model_spec(str(spec), roots) if spec else None
    cache = resolve_in_roots(ns.pop("cache_dir", None) or from_file.get("cache_dir") or cache_dir, roots,
                             what="--cache-dir", must_be_dir=True)
    data = resolve_in_roots(data, roots, what="dataset root", must_exist=True)
    out = resolve_in_roots(out, roots, what="output folder", must_be_dir=True)
    args = ["--data", str(data), "--layout", str(layout), "--out", str(out)]
    if epochs is not None:
        args.append(f"--epochs={int(epochs)}")
    if batch_size is not None:
        args.append(f"--batch-size={int(batch_size)}")
    if lr is not None:
        args.append(f"--lr={float(lr)!r}")
    if losses:
        args.append(f"--losses={losses}")
    if views:
        args.append(f"--views={views}")
    if max_steps:
        args.append(f"--max-steps={int(max_steps)}")
    args += ["--no-progress", *_option_tokens(parser, ns)]
    if config_path is not None:
        args += ["--config", str(config_path)]
    if spec:
        args += ["--model", spec]
    args += ["--cache-dir", str(cache)]
    # what the trainer will resolve from exactly these arguments must be what was checked
    try:
        cfg = resolve_config(args)
    except SystemExit:
        raise ConfigError("extra trainer options: not accepted by the trainer") from None
    for key, want in (("data", data), ("out", out), ("cache_dir", cache)):
        if Path(os.path.realpath(str(getattr(cfg, key)))) != want:
            raise ConfigError(f"{key}: resolves outside the checked path")
    if spec and cfg.model != spec:
        raise ConfigError("model: resolves to another spec than the checked one")
    return args


def batch_members(zip_data: bytes, source: str, *, limits: Limits | None = None) -> list[tuple[str, bytes]]:
    """The mesh members of a zip of many scans, read safely (``affectvlm.io.archive``)."""
    from affectvlm.io.archive import safe_zip_members
    from affectvlm.io.sequence import is_mesh_name

    # only mesh members are decompressed (and counted against the limits' unpacked size)
    out = safe_zip_members(zip_data, limits or default_limits(), source, select=is_mesh_name)
    if not out:
        raise InputError(source, f"the zip holds no mesh file ({', '.join(MESH_EXTENSIONS)})")
    return out


def zip_bytes(files: Iterable[tuple[str, bytes]]) -> bytes:
    """An in-memory zip of ``(name, bytes)`` pairs (tests, samples)."""
    buf = _io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files:
            zf.writestr(name, data)
    return buf.getvalue()


def list_samples(samples_dir: Path = SAMPLES_DIR) -> dict[str, Path]:
    """Bundled samples: display name -> path (a scan file, or a folder/zip for a sequence)."""
    out: dict[str, Path] = {}
    if not samples_dir.is_dir():
        return out
    exts = MESH_EXTENSIONS
    for p in sorted(samples_dir.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_file() and _ext(p.name) in exts:
            out[f"scan: {p.name}"] = p
        elif p.is_file() and p.suffix.lower() == ".zip":
            out[f"4D sequence: {p.stem}"] = p
        elif p.is_dir():
            frames = [q for q in p.rglob("*") if q.is_file() and _ext(q.name) in exts]
            if len(frames) > 1:
                out[f"4D sequence: {p.name} ({len(frames)} frames)"] = p
            elif len(frames) == 1:
                out[f"scan: {p.name}/{frames[0].name}"] = frames[0]
    return out


def sample_kind(path: Path) -> str:
    return "sequence" if path.is_dir() or path.suffix.lower() == ".zip" else "scan"


# ---------------------------------------------------------------------------------------------------
# Sidebar values


def parse_classes(text: str) -> list[str]:
    """Class names from comma/newline separated text; at least two, no duplicates."""
    from affectvlm.prompts import parse_classes as parse_class_list

    return list(parse_class_list([c for c in re.split(r"[,\n]", text or "") if c.strip()]))


def parse_templates(text: str) -> list[str]:
    """Prompt templates, one per line, each with a ``{}`` placeholder for the class name."""
    lines = [t.strip() for t in (text or "").splitlines() if t.strip()]
    if not lines:
        return []
    bad = [t for t in lines if t.count("{}") != 1 or re.search(r"\{[^}]", t)]
    if bad:
        raise ConfigError(f"prompt templates: each needs exactly one '{{}}' placeholder: {bad[0]!r}")
    return lines


def model_spec(kind: str, value: str, default: str | None = None) -> str | None:
    """The model spec for the sidebar's choice (``ModelError``-free: loading reports bad specs)."""
    value = (value or "").strip()
    if kind == "default":
        return default
    if not value:
        raise ConfigError(f"model: enter a value for '{kind}'")
    if kind in ("pretrained", "checkpoint", "run"):
        return value
    raise ConfigError(f"model: unknown choice {kind!r}")


# ---------------------------------------------------------------------------------------------------
# 3D preview


def texture_vertex_colors(mesh: Mesh) -> np.ndarray | None:
    """Per-vertex RGB (uint8): the mesh's own colours, or its texture sampled at the corners' UVs."""
    if mesh.vertex_colors is not None:
        return np.asarray(mesh.vertex_colors, dtype=np.uint8)[:, :3]
    if not mesh.has_texture:
        return None
    tex = np.asarray(mesh.texture)
    h, w = tex.shape[:2]
    uv = np.asarray(mesh.face_uv, dtype=np.float64).reshape(-1, 2)
    uv = np.nan_to_num(uv, nan=0.0)
    px = np.clip(np.rint(np.mod(uv[:, 0], 1.0 + 1e-9) * (w - 1)), 0, w - 1).astype(np.int64)
    py = np.clip(np.rint((1.0 - np.clip(uv[:, 1], 0, 1)) * (h - 1)), 0, h - 1).astype(np.int64)
    corner = tex[py, px, :3].astype(np.float64)
    idx = np.asarray(mesh.faces, dtype=np.int64).reshape(-1)
    acc = np.zeros((mesh.n_vertices, 3))
    cnt = np.zeros(mesh.n_vertices)
    np.add.at(acc, idx, corner)
    np.add.at(cnt, idx, 1.0)
    out = np.full((mesh.n_vertices, 3), 180.0)
    ok = cnt > 0
    out[ok] = acc[ok] / cnt[ok, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def decimate(vertices: np.ndarray, faces: np.ndarray, max_faces: int,
             colors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Vertex-clustering decimation to at most ``max_faces`` triangles (for display only)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if len(f) <= max_faces:
        return v.astype(np.float32), f, colors
    lo, hi = v.min(0), v.max(0)
    extent = np.maximum(hi - lo, 1e-12)
    # a surface covering the box has ~2 * res^2 faces over its two largest extents
    res = max(4.0, math.sqrt(max_faces / 2.0))
    for _ in range(30):
        cell = np.sort(extent)[-1] / res
        key = np.floor((v - lo) / cell).astype(np.int64)
        _, inv = np.unique(key, axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        nf = inv[f]
        keep = (nf[:, 0] != nf[:, 1]) & (nf[:, 1] != nf[:, 2]) & (nf[:, 0] != nf[:, 2])
        nf = nf[keep]
        _, first = np.unique(np.sort(nf, axis=1), axis=0, return_index=True)
        nf = nf[np.sort(first)]
        if len(nf) <= max_faces:
            break
        res *= 0.85
    n = int(inv.max()) + 1
    cnt = np.bincount(inv, minlength=n).astype(np.float64)
    nv = np.stack([np.bincount(inv, weights=v[:, k], minlength=n) for k in range(3)], 1) / cnt[:, None]
    nc = None
    if colors is not None:
        c = np.asarray(colors, dtype=np.float64)
        nc = np.stack([np.bincount(inv, weights=c[:, k], minlength=n) for k in range(3)], 1) / cnt[:, None]
        nc = np.clip(np.rint(nc), 0, 255).astype(np.uint8)
    return nv.astype(np.float32), nf, nc


PREVIEW_COLOR = "rgb(214,196,182)"  # light skin tone for untextured scans


@dataclass
class Preview:
    """Display arrays for plotly ``Mesh3d`` (canonical frame: +Y up, face looking at +Z)."""

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray | None
    n_faces_full: int
    meta: dict[str, Any] = field(default_factory=dict)


def preview(mesh: Mesh, *, max_faces: int = 30_000, up: str | None = None, front: str | None = None,
            canonical: bool = True) -> Preview:
    """Canonicalise (with the user's axis overrides, as the renderer will) and decimate for display."""
    m = mesh
    if canonical:
        from affectvlm.geometry import canonicalise

        m = canonicalise(mesh, up=up or None, front=front or None, landmarks=True)
    colors = texture_vertex_colors(m)
    v, f, c = decimate(m.vertices, m.faces, max_faces, colors)
    return Preview(v, f, c, mesh.n_faces, dict(m.meta))


ORIENTATION_WARNING = ("Orientation was guessed with low confidence; check the views and fix up/front in the "
                       "Orientation box")


def orientation_summary(meta: dict[str, Any] | None) -> dict[str, Any]:
    """What :func:`affectvlm.geometry.canonicalise` recorded in ``meta["canonical"]``: the file's
    ``up``/``front`` axes, which of them were ``detected`` (not given), their ``confidence`` and
    ``low_confidence``; ``warning`` is :data:`ORIENTATION_WARNING` when the guess is unsure, else None."""
    c = (meta or {}).get("canonical") or {}
    conf = {k: float(v) for k, v in (c.get("confidence") or {}).items()}
    low = bool(c.get("low_confidence"))
    parts = []
    for axis in ("up", "front"):
        if c.get(axis):
            how = f"guessed, confidence {conf[axis]:.2f}" if axis in conf else (
                "guessed" if axis in (c.get("detected") or []) else "set")
            parts.append(f"{axis} {c[axis]} ({how})")
    return {"up": c.get("up"), "front": c.get("front"), "detected": list(c.get("detected") or []),
            "confidence": conf, "low_confidence": low, "caption": ", ".join(parts),
            "warning": ORIENTATION_WARNING if low else None}


LANDMARK_COLOR = "#d62728"


def landmarks_canonical(meta: dict[str, Any] | None) -> np.ndarray | None:
    """The face-frame network's landmarks (``meta["canonical"]["landmarks"]``, file coordinates) moved into
    the canonical frame the preview shows; None when the scan has none."""
    c = (meta or {}).get("canonical") or {}
    if not c.get("landmarks") or "rotation" not in c:
        return None
    p = np.asarray(c["landmarks"], dtype=np.float64)
    R = np.asarray(c["rotation"], dtype=np.float64)
    return (p - np.asarray(c["centre"])) @ R.T * float(c["scale"])


def mesh3d_figure(pv: Preview, *, height: int = 420, title: str | None = None):
    """A rotatable, shaded plotly figure of the preview: camera in front of the face (+Z), +Y up.

    Smooth (vertex-normal) shading with a key light above-right of the viewer. The camera uses a
    perspective projection on purpose: with plotly's orthographic projection the WebGL mesh shader
    lights the back side of the surface, and the face shows as a flat dark silhouette (seen in
    headless chromium and desktop browsers alike).
    """
    import plotly.graph_objects as go

    v, f = pv.vertices * 100.0, pv.faces  # plotly drops normals of tiny faces (facenormalsepsilon)
    kw: dict[str, Any] = {}
    if pv.colors is not None:
        kw["vertexcolor"] = [f"rgb({r},{g},{b})" for r, g, b in pv.colors.tolist()]
    else:
        kw["color"] = PREVIEW_COLOR
    trace = go.Mesh3d(x=v[:, 0], y=v[:, 1], z=v[:, 2], i=f[:, 0], j=f[:, 1], k=f[:, 2], flatshading=False,
                      lighting=dict(ambient=0.3, diffuse=0.7, specular=0.2, roughness=0.5, fresnel=0.1,
                                    facenormalsepsilon=0, vertexnormalsepsilon=0),
                      lightposition=dict(x=1e5, y=1e5, z=1e5), hoverinfo="skip", name="scan", **kw)
    fig = go.Figure(trace)
    lm = landmarks_canonical(pv.meta)
    if lm is not None:
        p = lm * 100.0 + np.array([0.0, 0.0, 0.5])  # just in front of the surface
        fig.add_trace(go.Scatter3d(x=p[:, 0], y=p[:, 1], z=p[:, 2], mode="markers", name="landmarks",
                                   marker=dict(size=2.5, color=LANDMARK_COLOR), hoverinfo="skip"))
    fig.update_layout(
        height=height, margin=dict(l=0, r=0, t=30 if title else 0, b=0), title=title, showlegend=False,
        scene=dict(aspectmode="data", xaxis=dict(visible=False), yaxis=dict(visible=False),
                   zaxis=dict(visible=False), dragmode="orbit",
                   camera=dict(up=dict(x=0, y=1, z=0), center=dict(x=0, y=0, z=0), eye=dict(x=0, y=0, z=1.9),
                               projection=dict(type="perspective"))),
        uirevision="keep")
    return fig


# ---------------------------------------------------------------------------------------------------
# Results


def row_probs(row: dict[str, Any], classes: Sequence[str]) -> dict[str, float]:
    return {c: float(row.get(c, float("nan"))) for c in classes}


def classes_of_rows(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Class columns of ``predict`` rows (everything but the fixed columns)."""
    from affectvlm.predict import FIXED_COLUMNS, FRAME_COLUMNS

    fixed = {*FIXED_COLUMNS, *FRAME_COLUMNS, "error", "landmarks"}
    for r in rows:
        cols = [k for k in r if k not in fixed and isinstance(r[k], (int, float))]
        if cols:
            return cols
    return []


def probability_figure(probs: dict[str, float], *, height: int = 320):
    """Horizontal bar chart of class probabilities, top class highlighted."""
    import plotly.graph_objects as go

    names = list(probs)
    vals = [probs[n] for n in names]
    top = int(np.nanargmax(vals)) if vals else -1
    colors = ["#e4572e" if i == top else "#4c78a8" for i in range(len(names))]
    fig = go.Figure(go.Bar(x=vals, y=names, orientation="h", marker_color=colors,
                           text=[f"{v:.1%}" for v in vals], textposition="auto"))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=10), xaxis=dict(range=[0, 1], tickformat=".0%"),
                      yaxis=dict(autorange="reversed"))
    return fig


def sequence_figure(frame_rows: Sequence[dict[str, Any]], classes: Sequence[str], *, n_total: int | None = None,
                    current: int | None = None, height: int = 380):
    """Per-frame probability lines (x = frame number); fills in as rows arrive."""
    import plotly.graph_objects as go

    xs = [r.get("frame") for r in frame_rows]
    fig = go.Figure()
    for c in classes:
        fig.add_trace(go.Scatter(x=xs, y=[r.get(c) for r in frame_rows], mode="lines+markers", name=c,
                                 marker=dict(size=4)))
    layout: dict[str, Any] = dict(height=height, margin=dict(l=10, r=10, t=30, b=40), yaxis=dict(range=[0, 1], title="p"),
                                  xaxis=dict(title="frame"), uirevision="seq",
                                  # legend under the axis: above it, it covered the "n / N frames scored" title
                                  legend=dict(orientation="h", x=0, y=-0.22, yanchor="top"))
    if n_total:
        layout["title"] = dict(text=f"{len(frame_rows)} / {n_total} frames scored", font=dict(size=13))
    fig.update_layout(**layout)
    if current is not None:
        fig.add_vline(x=current, line_dash="dot", line_color="grey")
    return fig


def rows_frame(rows: Sequence[dict[str, Any]]):
    import pandas as pd

    return pd.DataFrame(list(rows))


def rows_download(rows: Sequence[dict[str, Any]], fmt: str) -> bytes:
    """CSV or JSON bytes in the same schema as ``affectvlm predict --out`` (via ``write_rows``)."""
    from affectvlm.predict import write_rows

    if fmt not in ("csv", "json"):
        raise ConfigError(f"download format must be csv or json, got {fmt!r}")
    with tempfile.TemporaryDirectory(prefix="affectvlm-dl-") as d:
        out = Path(d) / f"results.{fmt}"
        write_rows(list(rows), out)
        return out.read_bytes()


# ---------------------------------------------------------------------------------------------------
# Training metrics


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def metric_series(records: Sequence[dict[str, Any]]) -> dict[str, tuple[list[float], list[float]]]:
    """``name -> (x, y)`` for every numeric field of metrics.jsonl; x is the step, else the epoch, else index."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    for i, rec in enumerate(records):
        x = _num(rec.get("step", rec.get("global_step")))
        if x is None:
            x = _num(rec.get("epoch"))
        if x is None:
            x = float(i)
        prefix = ""
        kind = rec.get("split") or rec.get("phase") or rec.get("kind")
        if isinstance(kind, str) and kind not in ("train",):
            prefix = f"{kind} "
        for k, val in rec.items():
            if k in ("step", "global_step", "epoch", "epochs", "time", "timestamp", "rank", "world_size"):
                continue
            y = _num(val)
            if y is None:
                continue
            name = k if k.startswith(("val_", "best_", "test_")) else prefix + k
            xs, ys = out.setdefault(name, ([], []))
            xs.append(x)
            ys.append(y)
    return out


_GROUPS = {
    "loss": lambda n: "loss" in n or n.split()[-1] in ("alpha", "margin", "mc", "mt", "clip", "ce"),
    "accuracy": lambda n: any(t in n for t in ("acc", "f1")),
    "learning rate": lambda n: n.split()[-1] == "lr" or n.endswith("_lr") or n.split()[-1].startswith("lr_"),
    "samples/s": lambda n: "samples_per" in n or "samples/s" in n or "throughput" in n,
}


def metrics_figures(records: Sequence[dict[str, Any]], *, height: int = 260) -> dict[str, Any]:
    """Plotly line charts grouped as loss terms, accuracy, learning rate and samples/s."""
    import plotly.graph_objects as go

    series = metric_series(records)
    figs: dict[str, Any] = {}
    for group, match in _GROUPS.items():
        names = [n for n in series if match(n) and not n.startswith("per_class")]
        if group == "accuracy":
            names = [n for n in names if not _GROUPS["loss"](n)]
        if not names:
            continue
        fig = go.Figure()
        for n in names:
            xs, ys = series[n]
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers" if len(xs) < 40 else "lines", name=n))
        fig.update_layout(title=dict(text=group, font=dict(size=13)), height=height,
                          margin=dict(l=10, r=10, t=35, b=10), legend=dict(orientation="h", y=-0.25))
        if group == "learning rate":
            fig.update_yaxes(exponentformat="e")
        figs[group] = fig
    return figs


def eta_seconds(records: Sequence[dict[str, Any]], status: dict[str, Any] | None = None) -> float | None:
    """Remaining time: the trainer's own ``eta``/``eta_s`` if it writes one, else extrapolated from
    progress (``step``/``total_steps`` or ``epoch``/``epochs``) and elapsed ``time``."""
    for src in ([status] if status else []) + list(reversed(records[-5:])):
        for key in ("eta_s", "eta", "eta_seconds"):
            v = _num((src or {}).get(key))
            if v is not None:
                return max(0.0, v)
    timed = [r for r in records if _num(r.get("time")) is not None]
    if len(timed) < 2:
        return None
    first, last = timed[0], timed[-1]
    for done_k, total_k in (("step", "total_steps"), ("epoch", "epochs")):
        done, total = _num(last.get(done_k)), _num(last.get(total_k) or (status or {}).get(total_k))
        d0 = _num(first.get(done_k))
        if done is not None and total and d0 is not None and done > d0:
            rate = (last["time"] - first["time"]) / (done - d0)
            return max(0.0, (total - done) * rate)
    return None


def fmt_duration(s: float | None) -> str:
    if s is None:
        return "–"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h {m:02d}m" if h else (f"{m}m {sec:02d}s" if m else f"{sec}s")
