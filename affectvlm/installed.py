"""Where a wheel's data files went: the ``share/affectvlm/...`` folders that hold the embedded model and the app."""
from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

__all__ = ["share_candidates"]


def share_candidates(sub: str) -> list[Path]:
    """Folders that may be ``share/affectvlm/<sub>`` of an install, in order: beside this package (``pip install
    --target DIR``), where the installed distribution's record puts it (``--prefix``, a system pip's own prefix),
    the environment's, then ``pip install --user``'s."""
    rel = Path("share") / "affectvlm" / sub
    out = [Path(__file__).resolve().parents[1] / rel]
    out += _recorded(rel)
    scheme = f"{os.name}_user"
    user = sysconfig.get_path("data", scheme) if scheme in sysconfig.get_scheme_names() else None
    out += [Path(sys.prefix) / rel, *([Path(user) / rel] if user else [])]
    return list(dict.fromkeys(out))


def _recorded(rel: Path) -> list[Path]:
    """``rel`` where the installed distribution's file record puts its files (none when it records none)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        files = distribution("affectvlm").files or []
    except (PackageNotFoundError, OSError, ValueError):  # a checkout run without installing
        return []
    key = rel.as_posix() + "/"
    for f in files:
        p = f.as_posix()
        if key in p:
            located = Path(f.locate()).resolve().as_posix()
            at = located.rfind(key)
            if at >= 0:
                return [Path(located[:at + len(key) - 1])]
    return []
