"""Atomic file writes: a temp file beside the target, then ``os.replace``, so a reader (or a crash) never
sees half a file. The temp name is unique per process and call, so concurrent writers cannot collide."""
from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (the parent folder must exist); return the path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """UTF-8 text, written as-is (no newline translation), atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def out_problem(path: str | os.PathLike, folder: bool = False) -> str:
    """Why ``path`` cannot be written as an output file (``folder``: made as an output folder); "" when it can.
    Said before hours of work, not after: a folder where a file goes, a file in the way of a folder, or no
    right to write in the nearest existing folder. An existing file is replaced."""
    p = Path(path)
    if p.exists():
        if p.is_dir() != folder:
            return "is a folder; give a file's name" if not folder else f"{p} is a file, not a folder"
        if folder:
            return "" if os.access(p, os.W_OK | os.X_OK) else f"cannot write in {p}"
        return "" if os.access(p, os.W_OK) and os.access(p.parent, os.W_OK | os.X_OK) else f"cannot write {p}"
    q = p.parent
    while not q.exists() and q != q.parent:
        q = q.parent
    if not q.is_dir():
        return f"{q} is a file, not a folder"
    return "" if os.access(q, os.W_OK | os.X_OK) else f"cannot write in {q}"


def inside(path: str | os.PathLike, roots: Sequence[str | os.PathLike]) -> bool:
    """Whether ``path``, links and ``..`` resolved, is one of ``roots`` (resolved too) or lies under one."""
    real = Path(os.path.realpath(path))
    return any(real == r or r in real.parents for r in (Path(os.path.realpath(x)) for x in roots))
