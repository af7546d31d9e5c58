"""``affectvlm app``: run the Streamlit app from a source checkout or from where a wheel installed it.

A wheel puts ``app.py``, ``pages/`` and ``.streamlit/config.toml`` under ``share/affectvlm/app`` (data files, as it
does the embedded model). Streamlit reads ``.streamlit/config.toml`` from the current folder only, so the app's own
settings are passed as flags (``--server.headless true`` ...), each only where the user has not set it: a flag given
here, a ``STREAMLIT_*`` variable or the user's own ``config.toml`` (``./.streamlit``, ``~/.streamlit``) wins. The
launcher becomes Streamlit's process (POSIX ``exec``), so a signal to it reaches the server. The app runs in the
current folder, where its workspace is (``AFFECTVLM_WORKSPACE_ROOTS``, default ``./workspace``).
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from affectvlm.errors import ConfigError

__all__ = ["app_candidates", "find_app", "main"]


def app_candidates() -> list[Path]:
    """Folders that may hold the app, in order: a checkout's root, then the ``share/affectvlm/app`` of an install
    (:func:`affectvlm.installed.share_candidates`)."""
    from affectvlm.installed import share_candidates

    root = Path(__file__).resolve().parents[1]
    return ([root] if (root / "pyproject.toml").is_file() else []) + share_candidates("app")  # not site-packages


def find_app() -> Path:
    """The first candidate folder with ``app.py`` and ``pages/``; ConfigError naming where it looked."""
    candidates = app_candidates()
    for folder in candidates:
        if (folder / "app.py").is_file() and (folder / "pages").is_dir():
            return folder
    looked = ", ".join(str(c) for c in candidates)
    raise ConfigError(f"the app's files (app.py, pages/) are not installed in any of {looked}; reinstall the "
                      "package from its wheel or run `streamlit run app.py` in a source checkout")


def _options(path: Path) -> dict[str, Any]:
    """A Streamlit ``config.toml`` as ``{"server.headless": True, ...}`` (nested tables flattened); {} if absent."""
    import tomllib

    if not path.is_file():
        return {}
    with open(path, "rb") as fh:
        config = tomllib.load(fh)

    def flat(prefix: str, table: dict) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in table.items():
            out.update(flat(f"{prefix}{key}.", value) if isinstance(value, dict) else {f"{prefix}{key}": value})
        return out

    return flat("", config)


def _flag_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _env_name(key: str) -> str:
    """``server.maxUploadSize`` -> ``STREAMLIT_SERVER_MAX_UPLOAD_SIZE``, as Streamlit names its variables."""
    return "STREAMLIT_" + re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).replace(".", "_").upper()


def _users_own(extra: Sequence[str]) -> set[str]:
    """The options the user set: flags given here, ``STREAMLIT_*`` variables, their own ``config.toml`` files."""
    given = {x[2:].split("=", 1)[0] for x in extra if x.startswith("--")}
    for path in (Path.home() / ".streamlit" / "config.toml", Path.cwd() / ".streamlit" / "config.toml"):
        try:
            given |= set(_options(path))
        except (OSError, ValueError):
            pass  # Streamlit itself says what is wrong with the user's file
    return given


def _not_streamlit_options(extra: Sequence[str]) -> list[str]:
    """The arguments that are neither a ``--section.key[=value]`` option nor the value after one."""
    bad, expect_value = [], False
    for x in extra:
        if x.startswith("--") and "." in x.split("=", 1)[0]:
            expect_value = "=" not in x
        elif expect_value and not x.startswith("-"):
            expect_value = False
        else:
            bad.append(x)
    return bad


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="affectvlm app", description="Run the Streamlit app (Analyse, Batch, Train). "
                                 "Streamlit's own options pass through, e.g. --server.port 8502; the app's settings "
                                 "give way to them, to STREAMLIT_* variables and to your own .streamlit/config.toml.")
    ap.add_argument("--port", type=int, default=None, help="the port to serve on (Streamlit's --server.port)")
    ap.add_argument("--print-command", action="store_true", help="print the command instead of running it")
    args, extra = ap.parse_known_args(argv)
    bad = _not_streamlit_options(extra)
    if bad:
        ap.error(f"unrecognized arguments: {' '.join(bad)} (Streamlit's options look like --server.port 8502)")
    if args.port is not None:
        if any(x.split("=", 1)[0] == "--server.port" for x in extra):
            print("affectvlm app: --port given with --server.port; --port wins", file=sys.stderr)
        extra = [*extra, "--server.port", str(args.port)]
    folder = find_app()
    own = _users_own(extra)
    shipped = _options(folder / ".streamlit" / "config.toml")
    kept = [x for key, value in shipped.items() if key not in own and _env_name(key) not in os.environ
            for x in (f"--{key}", _flag_value(value))]
    cmd = [sys.executable, "-m", "streamlit", "run", str(folder / "app.py"), *kept, *extra]
    if args.print_command:
        print(shlex.join(cmd))
        return 0
    try:
        import streamlit  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"the app needs its extra packages: pip install 'affectvlm[app]' ({e})") from None
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":  # the server takes this process's place: a signal to it reaches the server
        os.execv(sys.executable, cmd)
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 130
