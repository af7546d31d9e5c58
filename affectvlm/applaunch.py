"""``affectvlm app``: run the Streamlit app from a source checkout or from where a wheel installed it.

A wheel puts ``app.py``, ``pages/`` and ``.streamlit/config.toml`` under ``share/affectvlm/app`` (data files, as it
does the embedded model). Streamlit reads ``.streamlit/config.toml`` from the current folder only, so the app's own
settings are passed as flags (``--server.headless true`` ...); a flag given here wins. The app runs in the current
folder, where its workspace is (``AFFECTVLM_WORKSPACE_ROOTS``, default ``./workspace``).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any, Sequence

from affectvlm.errors import ConfigError

__all__ = ["app_candidates", "find_app", "config_flags", "main"]


def app_candidates() -> list[Path]:
    """Folders that may hold the app, in order: a checkout's root, then the ``share/`` a wheel's data files went to
    (the environment's, ``pip install --user``'s, ``--target DIR``'s)."""
    here = Path(__file__).resolve()
    share = Path("share") / "affectvlm" / "app"
    scheme = f"{os.name}_user"
    user = sysconfig.get_path("data", scheme) if scheme in sysconfig.get_scheme_names() else None
    out = [here.parents[1], Path(sys.prefix) / share, *([Path(user) / share] if user else []), here.parents[1] / share]
    return list(dict.fromkeys(out))


def find_app() -> Path:
    """The first candidate folder with ``app.py`` and ``pages/``; ConfigError naming where it looked."""
    for folder in app_candidates():
        if (folder / "app.py").is_file() and (folder / "pages").is_dir():
            return folder
    looked = ", ".join(str(c) for c in app_candidates())
    raise ConfigError(f"the app's files (app.py, pages/) are not installed in any of {looked}; reinstall the "
                      "package from its wheel or run `streamlit run app.py` in a source checkout")


def config_flags(folder: Path) -> list[str]:
    """``folder/.streamlit/config.toml`` as Streamlit flags (``["--server.headless", "true", ...]``)."""
    import tomllib

    path = folder / ".streamlit" / "config.toml"
    if not path.is_file():
        return []
    with open(path, "rb") as fh:
        config = tomllib.load(fh)
    out: list[str] = []
    for section, values in config.items():
        for key, value in values.items():
            out += [f"--{section}.{key}", _flag_value(value)]
    return out


def _flag_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _given(extra: Sequence[str]) -> set[str]:
    return {x.split("=", 1)[0] for x in extra if x.startswith("--")}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="affectvlm app", description="Run the Streamlit app (Analyse, Batch, Train). "
                                 "Streamlit's own options pass through, e.g. --server.port 8502.")
    ap.add_argument("--port", type=int, default=None, help="the port to serve on (Streamlit's --server.port)")
    ap.add_argument("--print-command", action="store_true", help="print the command instead of running it")
    args, extra = ap.parse_known_args(argv)
    bad = [x for x in extra if x.startswith("-") and not (x.startswith("--") and "." in x.split("=", 1)[0])]
    if bad:
        ap.error(f"unrecognized arguments: {' '.join(bad)} (Streamlit's options look like --server.port)")
    folder = find_app()
    if args.port is not None:
        extra = [*extra, "--server.port", str(args.port)]
    given = _given(extra)
    defaults = config_flags(folder)
    kept = [x for pair in zip(defaults[::2], defaults[1::2]) if pair[0] not in given for x in pair]
    cmd = [sys.executable, "-m", "streamlit", "run", str(folder / "app.py"), *kept, *extra]
    if args.print_command:
        print(shlex.join(cmd))
        return 0
    if importlib.util.find_spec("streamlit") is None:
        raise ConfigError("the app needs its extra packages: pip install 'affectvlm[app]'")
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 130
