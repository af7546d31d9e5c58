"""Where downloaded weights live, by the ecosystem's rules.

* ``hf-hub:org/repo`` models and open_clip pretrained tags hosted on the Hub go through the Hugging Face
  cache (``HF_HOME``, ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE`` honoured by ``huggingface_hub`` itself), so
  weights a user already has are not fetched again;
* the few tags open_clip fetches from a URL go to open_clip's own cache (``~/.cache/clip``);
* ``AFFECTVLM_CACHE`` set: every download goes there instead (an explicit override), and what AffectVLM makes
  itself (renders, face-model arrays) into its ``renders/`` and ``synth/`` sub-folders (:func:`own_cache`).

Nothing here parses specs: :mod:`affectvlm.model.specs` loads, :mod:`affectvlm.model.catalog` lists
and downloads.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affectvlm.errors import ModelError
from affectvlm.logs import quiet

OVERRIDE_ENV = "AFFECTVLM_CACHE"
CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "open_clip_pytorch_model.bin"  # open_clip's default file on the Hub
SAFE_WEIGHTS_NAME = "open_clip_model.safetensors"  # preferred when the repo has it


def override_dir() -> Path | None:
    """``AFFECTVLM_CACHE`` when set, else None (the ecosystem's caches are used)."""
    raw = os.environ.get(OVERRIDE_ENV, "").strip()
    return Path(raw).expanduser() if raw else None


def own_cache(part: str) -> Path:
    """Where AffectVLM keeps what it makes itself, by ``part`` (``renders``, ``synth``): ``$AFFECTVLM_CACHE/part``
    when set, else ``$XDG_CACHE_HOME`` (or ``~/.cache``) ``/affectvlm/part``. Downloads go elsewhere
    (:func:`hf_cache_dir`), so one override never mixes weights, renders and face-model arrays in one folder."""
    over = override_dir()
    return (over or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "affectvlm") / part


def open_clip_cache_arg() -> str | None:
    """The ``cache_dir`` to pass to open_clip and huggingface_hub: None keeps their own defaults."""
    over = override_dir()
    return str(over) if over else None


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache in use (``AFFECTVLM_CACHE`` when set)."""
    over = override_dir()
    if over:
        return over
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def url_cache_dir() -> Path:
    """Where open_clip keeps weights it fetches from a plain URL."""
    return override_dir() or Path(os.path.expanduser("~/.cache/clip"))


def where_text() -> str:
    over = override_dir()
    if over:
        return f"{over} ({OVERRIDE_ENV})"
    return f"the Hugging Face cache {hf_cache_dir()} (HF_HOME / HF_HUB_CACHE)"


# ------------------------------------------------------------------------------------------------ sources

@dataclass(frozen=True)
class HubFile:
    """A file on the Hub: the first of ``names`` that exists in ``repo_id`` (open_clip's order)."""

    repo_id: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class Source:
    """Where a downloadable spec's files come from: Hub files, or one URL open_clip fetches."""

    hub: tuple[HubFile, ...] = ()
    url: str | None = None
    local: str | None = None  # open_clip's 'file' entries


def weight_names(filename: str = WEIGHTS_NAME) -> tuple[str, ...]:
    """open_clip tries a safetensors twin before a ``.bin``/``.pth`` file."""
    if filename == WEIGHTS_NAME:
        return (SAFE_WEIGHTS_NAME, filename)
    if filename.endswith((".bin", ".pth")):
        return (filename[:-4] + ".safetensors", filename)
    return (filename,)


def hub_source(repo_id: str) -> Source:
    """``hf-hub:org/repo``: its config and weights."""
    return Source(hub=(HubFile(repo_id, (CONFIG_NAME,)), HubFile(repo_id, weight_names())))


def pretrained_source(name: str, tag: str) -> Source:
    """An open_clip pretrained tag, resolved the way ``open_clip.download_pretrained`` does."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(name, tag)
    if cfg.get("file"):
        return Source(local=cfg["file"])
    if cfg.get("hf_hub"):
        repo_id, filename = os.path.split(cfg["hf_hub"])
        return Source(hub=(HubFile(repo_id, weight_names(filename or WEIGHTS_NAME)),))
    return Source(url=cfg.get("url") or None)


def cached_file(f: HubFile) -> Path | None:
    """The cached copy of ``f`` (no network), or None."""
    from huggingface_hub import try_to_load_from_cache

    for name in f.names:
        hit = try_to_load_from_cache(f.repo_id, name, cache_dir=open_clip_cache_arg())
        if isinstance(hit, str) and os.path.isfile(hit):
            return Path(hit)
    return None


def cached_paths(source: Source) -> list[Path] | None:
    """The local files of ``source`` when all are on this machine, else None."""
    if source.local:
        return [Path(source.local)] if os.path.isfile(source.local) else None
    if source.url:
        p = url_cache_dir() / os.path.basename(source.url)
        return [p] if p.is_file() else None
    paths = [cached_file(f) for f in source.hub]
    return None if not paths or any(p is None for p in paths) else paths  # type: ignore[return-value]


def fetch_file(f: HubFile) -> Path:
    """Download (or find in the cache) the first of ``f.names`` that the repo has."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    err: BaseException | None = None
    for name in f.names:
        try:
            return Path(hf_hub_download(f.repo_id, name, cache_dir=open_clip_cache_arg()))
        except EntryNotFoundError as e:  # this name is not in the repo (or not cached offline): try the next
            err = err or e
    assert err is not None
    raise err


def fetch(source: Source) -> list[Path]:
    """Every file of ``source`` on this machine, downloading what the caches lack (progress on stderr)."""
    if source.local:
        return [Path(source.local)]
    if source.url:
        import open_clip

        return [Path(open_clip.download_pretrained_from_url(source.url, cache_dir=str(url_cache_dir())))]
    return [fetch_file(f) for f in source.hub]


# ------------------------------------------------------------------------------------------------ offline

def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def is_offline_error(exc: BaseException) -> bool:
    names = ("ConnectionError", "LocalEntryNotFoundError", "OfflineModeIsEnabled", "Timeout", "URLError",
             "MaxRetryError", "NameResolutionError", "gaierror")
    texts = ("offline", "connection", "resolve", "network", "max retries", "timed out", "name or service")
    e: BaseException | None = exc
    while e is not None:
        if type(e).__name__ in names or any(t in str(e).lower() for t in texts):
            return True
        e = e.__cause__ or e.__context__
    return False


def _host_unreachable(timeout: float = 3.0) -> bool:
    """True when the Hub's host name cannot be resolved (no network): answered in milliseconds here,
    where the Hub client would otherwise retry for about a minute. Proxies are trusted as they are."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")):
        return False
    import socket
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.getaddrinfo(host, 443)
            result.append(False)
        except OSError:
            result.append(True)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(result and result[0])


_PATCH_LOCK = threading.Lock()
_patch = {"depth": 0, "saved": None}  # one offline patch shared by overlapping HubAccess blocks


class HubAccess:
    """Around downloads: quiet the Hub client's retry logging and, when the network is plainly absent,
    switch it to offline mode so cached files still load and missing ones fail in seconds.

    Blocks may overlap (threads of one app): the first to patch saves the client's setting and the last to
    leave restores it, so no block leaves offline mode on for the process."""

    def __init__(self, quiet: bool = True):
        self.quiet = quiet

    def __enter__(self) -> "HubAccess":
        self.patched = False
        self.offline = hub_offline()
        if not self.offline and _host_unreachable():
            try:
                import huggingface_hub.constants as hc

                with _PATCH_LOCK:
                    if _patch["depth"] == 0:
                        _patch["saved"] = hc.HF_HUB_OFFLINE
                    _patch["depth"] += 1
                    hc.HF_HUB_OFFLINE = True
                    self.patched = True
            except (ImportError, AttributeError):
                pass
            self.offline = True
        self.quieted = contextlib.ExitStack()
        if self.quiet:  # the Hub client's retry messages, in this thread only
            self.quieted.enter_context(quiet(logging.ERROR))
        return self

    def __exit__(self, *exc: Any) -> None:
        self.quieted.close()
        if self.patched:
            import huggingface_hub.constants as hc

            with _PATCH_LOCK:
                _patch["depth"] -= 1
                if _patch["depth"] == 0:
                    hc.HF_HUB_OFFLINE = _patch["saved"]


def download_error(spec_text: str, exc: BaseException, offline: bool = False, name: str | None = None) -> ModelError:
    """One line: why ``spec_text`` could not be fetched and how to place its weights by hand."""
    first = str(exc).splitlines()[0][:200] if str(exc) else ""
    if hub_offline():
        why = "HF_HUB_OFFLINE is set and it is not in the cache"
    elif offline or is_offline_error(exc):
        why = "no network connection and it is not in the cache"
    else:
        why = f"{type(exc).__name__}: {first}"
    return ModelError(
        f"cannot download the weights for {spec_text!r} ({why}). Fetch them where there is a network with "
        f"`affectvlm download {spec_text}` (downloads go to {where_text()}; copy that cache here), or place "
        f"them by hand: pass --model {name or 'NAME'}@/path/to/weights.safetensors (the open_clip weights "
        f"file), local-dir:/path/to/folder (a folder with {CONFIG_NAME} + weights) or an AffectVLM checkpoint folder")
