"""BU-3DFE / BU-4DFE landmark files (``.bnd``): 83 rows ``index x y z`` (tab or space separated).

Some releases add an empty 84th row or leave out the index; both are read. Coordinates are the scan's own
(millimetres for BU-3DFE / BU-4DFE).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from affectvlm.errors import InputError

__all__ = ["read_bnd", "bnd_beside"]


def read_bnd(path: str | os.PathLike) -> np.ndarray:
    """The landmarks of a ``.bnd`` file as an (N, 3) float64 array (N = 83 for BU-3DFE)."""
    p = Path(path)
    try:
        text = p.read_text("utf-8", errors="strict")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(str(p), f"cannot read landmark file: {e}") from None
    rows = []
    for i, line in enumerate(text.splitlines(), start=1):
        parts = line.replace(",", " ").split()
        if not parts:
            continue
        try:
            vals = [float(x) for x in parts]
        except ValueError:
            raise InputError(str(p), f"line {i}: not numbers: {line[:40]!r}") from None
        if len(vals) not in (3, 4) or not np.isfinite(vals).all():
            raise InputError(str(p), f"line {i}: expected 'index x y z' or 'x y z'")
        rows.append(vals[-3:])
    if not rows:
        raise InputError(str(p), "no landmarks in the file")
    return np.asarray(rows, dtype=np.float64)


def bnd_beside(scan: str | os.PathLike) -> Path | None:
    """The ``.bnd`` next to a scan (same stem; BU-4DFE frames: the same number), if there is one."""
    p = Path(scan).with_suffix(".bnd")
    return p if p.is_file() else None
