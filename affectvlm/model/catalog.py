"""What models this machine can use, and fetching them ahead (``affectvlm models`` / ``affectvlm download``).

Listed: the embedded default, AffectVLM checkpoints and training runs under the workspace roots
(``AFFECTVLM_WORKSPACE_ROOTS``, the app's setting, read here without importing the app), open_clip
models in the Hugging Face cache, and every open_clip pretrained tag; each says whether it works
offline (on disk, or already in its cache).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

from affectvlm.errors import AffectVLMError, ModelError
from affectvlm.model import caches
from affectvlm.model import checkpoint as ckpt
from affectvlm.model.specs import Spec, default_model_candidates, parse_spec

WORKSPACE_ENV = "AFFECTVLM_WORKSPACE_ROOTS"
KINDS = ("embedded", "checkpoint", "run", "hf-hub", "pretrained")
_MAX_DEPTH = 4
_MAX_DIRS = 20_000


@dataclass(frozen=True)
class ModelEntry:
    """One row of ``affectvlm models``: pass ``spec`` to ``--model``."""

    spec: str
    kind: str  # one of KINDS
    offline: bool  # usable now without a network
    location: str  # the folder or cached file, or where a download would go
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def workspace_roots(env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None) -> list[Path]:
    """The app's workspace roots (``AFFECTVLM_WORKSPACE_ROOTS``, default ``./workspace``); not created."""
    env = dict(os.environ if env is None else env)
    base = Path(cwd or os.getcwd())
    roots = []
    for part in (env.get(WORKSPACE_ENV) or "workspace").split(os.pathsep):
        if part.strip():
            p = Path(os.path.expanduser(part.strip()))
            roots.append(p if p.is_absolute() else base / p)
    return roots


def _walk_models(root: Path) -> Iterator[ModelEntry]:
    """Checkpoint folders and run folders (``best/`` inside) under ``root``; hidden folders skipped."""
    seen = 0
    stack = [(root, 0)]
    while stack and seen < _MAX_DIRS:
        folder, depth = stack.pop()
        seen += 1
        if (folder / ckpt.META_FILE).is_file():
            bad = ckpt.weights_problem(folder)
            yield ModelEntry(str(folder), "checkpoint", bad is None, str(folder), f"damaged: {bad}" if bad else "")
            continue
        if (folder / "best" / ckpt.META_FILE).is_file():
            bad = ckpt.weights_problem(folder / "best")
            yield ModelEntry(str(folder), "run", bad is None, str(folder / "best"),
                             f"damaged: {bad}" if bad else "its best/ checkpoint")
            continue
        if depth >= _MAX_DEPTH:
            continue
        try:
            subs = sorted((e for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(".")),
                          key=lambda e: e.name, reverse=True)
        except OSError:
            continue
        stack += [(Path(e.path), depth + 1) for e in subs]


def embedded_entry() -> ModelEntry:
    env = os.environ.get("AFFECTVLM_DEFAULT_MODEL", "").strip()
    try:
        spec = parse_spec(None)
        note = f"AFFECTVLM_DEFAULT_MODEL={env}" if env and env != "default" else "the embedded model"
        return ModelEntry("default", "embedded", is_available(spec), spec.path or spec.text, note)
    except AffectVLMError as e:
        return ModelEntry("default", "embedded", False, str(default_model_candidates()[0]), str(e)[:200])


def hub_cache_entries() -> list[ModelEntry]:
    """open_clip models (a repo with ``open_clip_config.json``) in the Hugging Face cache."""
    cache = caches.hf_cache_dir()
    out = []
    try:
        folders = sorted(p for p in cache.iterdir() if p.name.startswith("models--") and p.is_dir())
    except OSError:
        return []
    for folder in folders:
        repo_id = folder.name[len("models--"):].replace("--", "/")
        paths = caches.cached_paths(caches.hub_source(repo_id))
        if paths is not None:
            out.append(ModelEntry(f"hf-hub:{repo_id}", "hf-hub", True, str(paths[-1])))
        elif caches.cached_file(caches.HubFile(repo_id, (caches.CONFIG_NAME,))):
            out.append(ModelEntry(f"hf-hub:{repo_id}", "hf-hub", False, str(folder), "weights not in the cache"))
    return out


def pretrained_entries() -> list[ModelEntry]:
    import open_clip

    out = []
    for name, tag in open_clip.list_pretrained():
        src = caches.pretrained_source(name, tag)
        paths = caches.cached_paths(src)
        if paths:
            where = str(paths[0])
        elif src.hub:
            where = f"{src.hub[0].repo_id} (on the Hub)"
        else:
            where = src.url or src.local or ""
        out.append(ModelEntry(f"{name}:{tag}", "pretrained", paths is not None, where))
    return out


def model_catalog(roots: Sequence[Path] | None = None) -> list[ModelEntry]:
    """Every model this machine knows of (see the module docstring), local ones first."""
    entries = [embedded_entry()]
    seen: set[str] = set()
    for root in workspace_roots() if roots is None else roots:
        if root.is_dir():
            for e in _walk_models(root):
                if e.spec not in seen:
                    seen.add(e.spec)
                    entries.append(e)
    return entries + hub_cache_entries() + pretrained_entries()


def format_table(entries: Sequence[ModelEntry]) -> str:
    rows = [("SPEC", "KIND", "OFFLINE", "WHERE")] + [
        (e.spec, e.kind, "yes" if e.offline else "no", e.location + (f"  ({e.note})" if e.note else ""))
        for e in entries]
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    return "".join(f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]}".rstrip() + "\n" for r in rows)


# ------------------------------------------------------------------------------------------------ download

def _source(spec: Spec) -> caches.Source | None:
    if spec.kind == "hf-hub":
        return caches.hub_source(spec.name or "")
    if spec.kind == "pretrained":
        return caches.pretrained_source(spec.name or "", spec.tag or "")
    return None


def damage(spec: Spec) -> str | None:
    """Why a local spec's weights cannot load (a truncated safetensors file), or None."""
    if spec.kind == "checkpoint" and spec.path:
        return ckpt.weights_problem(spec.path)
    if spec.path and str(spec.path).endswith(".safetensors"):
        why = ckpt.safetensors_problem(spec.path)
        return f"{spec.path}: {why}" if why else None
    return None


def is_available(spec: Spec) -> bool:
    """Whether ``spec`` loads without a network (local kinds: parse_spec already found the files; their weights
    are whole)."""
    src = _source(spec)
    if src is None:
        return damage(spec) is None
    paths = caches.cached_paths(src)
    return paths is not None and not any(str(p).endswith(".safetensors") and ckpt.safetensors_problem(p)
                                         for p in paths)


@dataclass(frozen=True)
class Download:
    """What ``download`` did for one spec."""

    spec: str
    paths: tuple[str, ...]  # the files on this machine now
    fetched: bool  # False: everything was already there


def download(text: str, *, progress: bool = True) -> Download:
    """Fetch ``text``'s weights (and tokenizer files) into their cache; ModelError with one line if that fails.

    Local specs (folders, files, architectures) need nothing and are only checked.
    """
    spec = parse_spec(text)
    src = _source(spec)
    if src is None:
        bad = damage(spec)
        if bad:
            raise ModelError(f"{spec.text}: its weights are damaged ({bad}); copy or save the model again")
        return Download(spec.text, (spec.path,) if spec.path else (), False)
    before = caches.cached_paths(src)
    import open_clip
    from huggingface_hub.utils import disable_progress_bars

    if not progress:  # huggingface_hub's own bars otherwise (HF_HUB_DISABLE_PROGRESS_BARS is honoured)
        disable_progress_bars()
    hub = caches.HubAccess()
    try:
        with hub:
            paths = caches.fetch(src)
            open_clip.get_tokenizer(spec.text if spec.kind == "hf-hub" else spec.name or "",
                                    cache_dir=caches.open_clip_cache_arg())  # HF tokenizers fetch their files
    except AffectVLMError:
        raise
    except Exception as e:
        raise caches.download_error(spec.text, e, hub.offline, spec.name if spec.kind == "pretrained" else None) \
            from None
    return Download(spec.text, tuple(str(p) for p in paths), before is None)
