"""The app's settings (environment variables) and the workspace roots every user path must stay in.

==============================  ==================================================================
``AFFECTVLM_WORKSPACE_ROOTS``   folders (``os.pathsep``-separated) the Train page may read/write;
                                default ``./workspace``. The first one holds the jobs database.
``AFFECTVLM_DEFAULT_MODEL``     model spec used when the sidebar says "embedded default"
                                (unset: the library's embedded ``weights/affectvlm-default``).
``AFFECTVLM_PREVIEW_FACES``     most triangles sent to the browser for the 3D preview (30000).
``AFFECTVLM_MAX_UPLOAD_MB``     upload limit shown in the app; keep it equal to Streamlit's
                                ``server.maxUploadSize`` (``.streamlit/config.toml``).
``AFFECTVLM_JOB_REFRESH_S``     how often the Train page redraws a job (2 s).
``AFFECTVLM_MAX_*``             the library's input limits (:mod:`affectvlm.limits`).
``AFFECTVLM_UPLOAD_MAX_AGE_H``  upload temp folders older than this are removed (6 hours).
==============================  ==================================================================
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from affectvlm.app.uploads import safe_name, sweep_upload_dirs
from affectvlm.errors import ConfigError
from affectvlm.fileio import inside
from affectvlm.limits import Limits, default_limits


@dataclass(frozen=True)
class AppSettings:
    workspace_roots: tuple[Path, ...]
    default_model: str | None = None
    limits: Limits = field(default_factory=default_limits)
    max_upload_mb: int = 1024
    preview_max_faces: int = 30_000
    job_refresh_s: float = 2.0
    upload_max_age_s: float = 6 * 3600.0

    @property
    def workspace(self) -> Path:
        """The first workspace root: it holds the jobs database and default run folders."""
        return self.workspace_roots[0]

    @property
    def jobs_db(self) -> Path:
        return self.workspace / ".affectvlm" / "jobs.sqlite3"


def env_number(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    """``env[name]`` as a number in ``[lo, hi]`` (``default`` when unset); ``ConfigError`` naming it otherwise."""
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


def load_settings(env: Mapping[str, str] | None = None, *, cwd: str | os.PathLike | None = None) -> AppSettings:
    """Settings from the environment (see the module docstring); workspace roots are created and old
    upload folders swept."""
    env = dict(os.environ if env is None else env)
    base = Path(cwd or os.getcwd())
    raw = env.get("AFFECTVLM_WORKSPACE_ROOTS") or "workspace"
    roots = []
    for part in raw.split(os.pathsep):
        part = part.strip()
        if not part:
            continue
        p = Path(os.path.expanduser(part))
        p = p if p.is_absolute() else base / p
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a read-only current folder or volume (Docker: a bind mount the app's user cannot write)
            raise ConfigError(f"workspace {p}: cannot create it ({e.strerror or e}); set AFFECTVLM_WORKSPACE_ROOTS "
                              "to folders the app may write") from None
        roots.append(p.resolve())
    if not roots:
        raise ConfigError(f"AFFECTVLM_WORKSPACE_ROOTS={raw!r} names no folder")
    max_age_s = 3600 * env_number(env, "AFFECTVLM_UPLOAD_MAX_AGE_H", 6, 0, 24 * 365)
    sweep_upload_dirs(max_age_s=max_age_s)
    return AppSettings(
        workspace_roots=tuple(roots),
        default_model=env.get("AFFECTVLM_DEFAULT_MODEL") or None,
        limits=default_limits(),
        max_upload_mb=int(env_number(env, "AFFECTVLM_MAX_UPLOAD_MB", 1024, 1, 1 << 20)),
        preview_max_faces=int(env_number(env, "AFFECTVLM_PREVIEW_FACES", 30_000, 100, 5_000_000)),
        job_refresh_s=env_number(env, "AFFECTVLM_JOB_REFRESH_S", 2.0, 0.2, 3600),
        upload_max_age_s=max_age_s,
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
    if not inside(real, roots):
        allowed = ", ".join(os.path.realpath(r) for r in roots)
        raise ConfigError(f"{what}: {text} is outside the workspace roots ({allowed})")
    if must_exist and not real.exists():
        raise ConfigError(f"{what}: {text} does not exist")
    if must_be_dir and real.exists() and not real.is_dir():
        raise ConfigError(f"{what}: {text} is not a folder")
    return real


def check_model_spec(spec: str, roots: Sequence[Path], *, what: str = "model") -> str:
    """A model spec with any path it names resolved inside ``roots`` (names, ``NAME:TAG`` and ``hf-hub:``
    pass unchanged); ``ConfigError`` for a path outside them."""
    text = str(spec).strip()
    if not text or text == "default" or text.startswith("hf-hub:"):
        return text
    if text.startswith("local-dir:"):
        out = "local-dir:" + str(resolve_in_roots(text[len("local-dir:"):], roots, what=what, must_exist=True))
    elif (parts := text.partition("@"))[1] and parts[0] and not re.search(r"[\\/]", parts[0]):
        out = f"{parts[0]}@{resolve_in_roots(parts[2], roots, what=what, must_exist=True)}"
    elif text.startswith((".", "~")) or re.search(r"[\\/]", text) or (Path(roots[0]) / text).exists():
        out = str(resolve_in_roots(text, roots, what=what, must_exist=True))  # a bare name: a folder in the first root
    else:
        return text
    _confine_loaded(out, roots, what)
    return out


def _confine_loaded(spec: str, roots: Sequence[Path], what: str) -> None:
    """The folder the loader would read for ``spec`` (a run's ``best/``, which may be a link) inside ``roots`` too."""
    from affectvlm.errors import AffectVLMError
    from affectvlm.model.specs import parse_spec

    try:
        path = parse_spec(spec).path
    except AffectVLMError:
        return  # not loadable at all: the loader says why, in its own words
    if path:
        resolve_in_roots(path, roots, what=what)


def unique_run_dir(parent: Path, stem: str) -> Path:
    """``parent/stem``, or ``stem-2``, ``stem-3``… if taken."""
    safe = safe_name(stem) or "run"
    cand = parent / safe
    i = 2
    while cand.exists():
        cand = parent / f"{safe}-{i}"
        i += 1
    return cand
