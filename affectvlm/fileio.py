"""Atomic file writes: a temp file beside the target, then ``os.replace``, so a reader (or a crash) never
sees half a file. The temp name is unique per process and call, so concurrent writers cannot collide."""
from __future__ import annotations

import os
import uuid
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
