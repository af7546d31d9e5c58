"""Model specs: what ``--model`` / ``load_model(spec)`` accept, resolved to an AffectVLM.

=========================================  =====================================================
spec                                       meaning
=========================================  =====================================================
``None`` / ``"default"``                   the embedded checkpoint ``weights/affectvlm-default/``
                                           (``AFFECTVLM_DEFAULT_MODEL`` overrides: any spec)
``NAME:TAG`` (``ViT-B-32:openai``)         open_clip pretrained weights (open_clip's cache: the
                                           Hugging Face cache for Hub-hosted tags)
``hf-hub:org/repo``                        an open_clip model on the Hugging Face Hub (Hugging Face
                                           cache; ``HF_HOME``, ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``)
``NAME@/path/weights.safetensors|.bin``    architecture NAME with a local weights file
``/path/weights.safetensors``              a weights file with ``open_clip_config.json`` beside it
``local-dir:/dir`` or ``/dir``             a folder with ``open_clip_config.json`` + weights
``/dir`` with ``affectvlm.json``           an AffectVLM checkpoint folder (``save_checkpoint``)
``NAME`` (``AffectVLM-Test``)              random init (tests/experiments; provenance says untrained)
=========================================  =====================================================

Downloads go where :mod:`affectvlm.model.caches` says (``AFFECTVLM_CACHE`` overrides);
``affectvlm download SPEC`` fetches ahead. ``.bin``/``.pt`` files are read with ``torch.load(weights_only=True)``: pickled code is refused.
Every failure is a ``ModelError`` with one readable line.
"""
from __future__ import annotations

import contextlib
import difflib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from affectvlm.errors import AffectVLMError, ModelError
from affectvlm.logs import quiet
from affectvlm.model import caches
from affectvlm.model import checkpoint as ckpt
from affectvlm.model.core import AffectVLM
from affectvlm.model.devices import resolve_device
from affectvlm.prompts import PromptSet, as_prompt_set, parse_classes

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).parent / "configs"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
LOCAL_DIR_WEIGHTS = (".safetensors", ".bin", ".pth")  # what open_clip's local-dir: finds beside its config
DEFAULT_DIRNAME = "affectvlm-default"
_registered = False


def register_configs() -> None:
    """Make our architectures (``AffectVLM-Test``, ``AffectVLM-Tiny``) known to open_clip (idempotent)."""
    global _registered
    if not _registered:
        import open_clip

        open_clip.add_model_config(CONFIG_DIR)
        _registered = True


def list_architectures() -> list[str]:
    import open_clip

    register_configs()
    return open_clip.list_models()


def default_model_candidates() -> list[Path]:
    """Where the embedded model may be, in order: a checkout's ``weights/``, the package's own folder, then the
    ``share/`` a wheel's data files went to (:func:`affectvlm.installed.share_candidates`: beside the package for
    ``--target DIR``, the installed record's, the environment's, ``pip install --user``'s). Never the current
    folder: a ``weights/`` there must not replace the installed model unnoticed."""
    from affectvlm.installed import share_candidates

    here = Path(__file__).resolve()
    out = [here.parents[2] / "weights" / DEFAULT_DIRNAME, here.parents[1] / "weights" / DEFAULT_DIRNAME,
           *share_candidates(f"weights/{DEFAULT_DIRNAME}")]
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class Spec:
    """A parsed spec. kind: checkpoint | local-dir | file | pretrained | hf-hub | random."""

    kind: str
    text: str
    name: str | None = None  # architecture (hf-hub: the repository, org/repo)
    tag: str | None = None  # pretrained tag
    path: str | None = None  # file or folder

    def cache_key(self) -> tuple:
        stamp = None
        if self.path:
            p = Path(self.path)
            probe = p / ckpt.META_FILE if (p / ckpt.META_FILE).exists() else p
            try:
                stamp = probe.stat().st_mtime_ns
            except OSError:
                stamp = None
        return (self.kind, self.name, self.tag, self.path, stamp)


def _suggest(word: str) -> str:
    close = difflib.get_close_matches(word, list_architectures(), n=3, cutoff=0.6)
    return f" Did you mean {', '.join(close)}?" if close else ""


def _dir_spec(p: Path, text: str) -> Spec:
    if (p / ckpt.META_FILE).is_file():
        return Spec("checkpoint", text, path=str(p.resolve()))
    if (p / ckpt.CONFIG_FILE).is_file():
        return Spec("local-dir", text, path=str(p.resolve()))
    if (p / "best" / ckpt.META_FILE).is_file():  # a training run folder: use its best checkpoint
        return Spec("checkpoint", text, path=str((p / "best").resolve()))
    raise ModelError(f"{p}: folder is neither an AffectVLM checkpoint ({ckpt.META_FILE}), a training run "
                     f"(best/{ckpt.META_FILE}) nor an open_clip model folder ({ckpt.CONFIG_FILE} + weights)")


def parse_spec(spec: str | os.PathLike | None) -> Spec:
    """Classify a spec string (no loading). Raises ModelError for specs that cannot work."""
    register_configs()
    models = set(list_architectures())
    if spec is None or (isinstance(spec, str) and spec.strip() in ("", "default")):
        env = os.environ.get("AFFECTVLM_DEFAULT_MODEL", "").strip()
        if env and env != "default":
            try:
                return parse_spec(env)
            except ModelError as e:
                raise ModelError(f"AFFECTVLM_DEFAULT_MODEL={env!r}: {e}") from None
        candidates = default_model_candidates()
        for cand in candidates:
            if (cand / ckpt.META_FILE).is_file():
                return Spec("checkpoint", "default", path=str(cand.resolve()))
        looked = ", ".join(str(c) for c in candidates)
        raise ModelError(
            f"the default model is not installed (no AffectVLM checkpoint in any of {looked}). "
            "Put a checkpoint folder there (e.g. the 'best' folder of `affectvlm train`), set "
            "AFFECTVLM_DEFAULT_MODEL to a model spec, or pass --model (e.g. ViT-B-32:openai, or "
            "AffectVLM-Tiny for an untrained model)")
    text = os.fspath(spec).strip()
    if text.startswith("hf-hub:"):
        if not text[len("hf-hub:"):].strip("/"):
            raise ModelError(f"model spec {text!r}: give the repository as hf-hub:org/repo")
        return Spec("hf-hub", text, name=text[len("hf-hub:"):].strip("/"))
    if text.startswith("local-dir:"):
        p = Path(text[len("local-dir:"):]).expanduser()
        if not p.is_dir():
            raise ModelError(f"{p}: model folder not found (from spec {text!r})")
        return _dir_spec(p, text)
    if "@" in text:
        name, _, path = text.partition("@")
        if name in models:
            p = Path(path).expanduser()
            if not p.is_file():
                raise ModelError(f"{p}: weights file not found (from spec {text!r})")
            if p.suffix.lower() not in WEIGHT_SUFFIXES:
                raise ModelError(f"{p}: weights must be {', '.join(WEIGHT_SUFFIXES)}")
            return Spec("file", text, name=name, path=str(p.resolve()))
        if name and not any(c in name for c in "/\\~") and not Path(text).expanduser().exists():
            raise ModelError(f"model spec {text!r}: unknown architecture {name!r} before '@' (NAME@weights "
                             f"names an open_clip architecture; `affectvlm models` lists them).{_suggest(name)}")
    p = Path(text).expanduser()
    if p.is_dir():
        return _dir_spec(p, text)
    if p.is_file():
        if p.name == ckpt.META_FILE or (p.parent / ckpt.META_FILE).is_file():
            return Spec("checkpoint", text, path=str(p.parent.resolve()))
        if p.suffix.lower() not in WEIGHT_SUFFIXES:
            raise ModelError(f"{p}: not a model file (expected {', '.join(WEIGHT_SUFFIXES)} or a folder)")
        if (p.parent / ckpt.CONFIG_FILE).is_file():
            return Spec("file", text, path=str(p.resolve()))
        raise ModelError(f"{p}: weights file without {ckpt.CONFIG_FILE} beside it; name its architecture as "
                         f"NAME@{p} (e.g. ViT-B-32@{p})")
    if text in models:
        return Spec("random", text, name=text)
    if ":" in text and not text.startswith(("/", ".", "~")):
        name, _, tag = text.partition(":")
        if name in models:
            import open_clip

            tags = open_clip.list_pretrained_tags_by_model(name)
            if tag not in tags:
                raise ModelError(f"model spec {text!r}: unknown pretrained tag {tag!r} for {name}"
                                 + (f" (known: {', '.join(tags)})" if tags else " (it has no pretrained weights)"))
            return Spec("pretrained", text, name=name, tag=tag)
        raise ModelError(f"model spec {text!r}: unknown architecture {name!r}.{_suggest(name)}")
    if any(s in text for s in ("/", os.sep)) or p.suffix.lower() in WEIGHT_SUFFIXES:
        raise ModelError(f"{text}: model file or folder not found")
    raise ModelError(f"unknown model spec {text!r}: not a file or folder, not a known architecture "
                     f"(e.g. AffectVLM-Tiny, ViT-B-32), nor NAME:TAG / hf-hub:org/repo / local-dir:/path."
                     f"{_suggest(text)}")


# ------------------------------------------------------------------------------------------------ loading

def _weights_error(path: str, exc: BaseException) -> ModelError:
    msg = str(exc)
    if "weights_only" in msg.lower() or "unpickl" in msg.lower():
        return ModelError(f"{path}: not a plain weights file (it would need unpickling code, which is refused); "
                          "convert it to .safetensors or a plain state dict")
    first = msg.splitlines()[0][:300] if msg else type(exc).__name__
    if "size mismatch" in msg or "Missing key" in msg or "Unexpected key" in msg:
        return ModelError(f"{path}: weights do not match the architecture ({first})")
    return ModelError(f"{path}: cannot load weights ({first})")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{path}: unreadable ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("model_cfg"), dict):
        raise ModelError(f"{path}: missing 'model_cfg'")
    return data


@contextlib.contextmanager
def _quiet_open_clip() -> Iterator[None]:
    """open_clip logs a warning for every random init; we say it in provenance instead (this thread only)."""
    with quiet(logging.WARNING):
        yield


def _build(spec: Spec, device: torch.device, classes, prompts, fusion: str | None) -> AffectVLM:
    import open_clip

    from affectvlm.render import RenderSettings

    meta: dict[str, Any] = {}
    prov: dict[str, Any] = {"base_spec": spec.text, "kind": spec.kind}
    render = None
    if spec.kind == "checkpoint":
        meta = ckpt.read_meta(spec.path)
        ref = "local-dir:" + spec.path
        cfg = _read_json(Path(spec.path) / ckpt.CONFIG_FILE)
        try:
            clip = open_clip.create_model(ref, device="cpu", weights_only=True)
            tok = open_clip.get_tokenizer(ref)
        except Exception as e:
            raise _weights_error(spec.path, e) from None
        arch = meta.get("arch") or "custom"
        prov = dict(meta.get("provenance") or {})
        prov["loaded_from"] = spec.path
        try:
            render = RenderSettings.from_dict(meta["render"]) if meta.get("render") else None
            if classes is None:
                classes = parse_classes(meta["classes"])
            if prompts is None and meta.get("prompts"):
                prompts = PromptSet.from_dict(meta["prompts"], source=f"{spec.path}/{ckpt.META_FILE}")
        except AffectVLMError as e:
            raise ModelError(f"{spec.path}/{ckpt.META_FILE}: {e}") from None
    elif spec.kind == "local-dir" or (spec.kind == "file" and spec.name is None):
        folder = Path(spec.path) if spec.kind == "local-dir" else Path(spec.path).parent
        cfg = _read_json(folder / ckpt.CONFIG_FILE)
        ref = "local-dir:" + str(folder)
        if spec.kind == "local-dir" and not any(next(folder.glob(f"*{x}"), None) for x in LOCAL_DIR_WEIGHTS):
            # open_clip would build the architecture with random weights and only log it: a model that reads as trained
            pt = sorted(f.name for f in folder.glob("*.pt"))
            raise ModelError(f"{folder}: no weights file beside {ckpt.CONFIG_FILE} (open_clip reads "
                             f"{', '.join('*' + x for x in LOCAL_DIR_WEIGHTS)})"
                             + (f"; {pt[0]}: pass it as NAME@{folder / pt[0]}, or rename it to .pth" if pt else ""))
        try:
            with _quiet_open_clip():
                clip = open_clip.create_model(ref, device="cpu", weights_only=True,
                                              load_weights=spec.kind == "local-dir")
            if spec.kind == "file":
                open_clip.load_checkpoint(clip, spec.path, weights_only=True)
            tok = open_clip.get_tokenizer(ref)
        except AffectVLMError:
            raise
        except Exception as e:
            raise _weights_error(spec.path, e) from None
        arch = folder.name
        prov["trained"] = True
    elif spec.kind == "hf-hub":
        hub = caches.HubAccess()
        try:
            with hub:
                cfg_path, weights = caches.fetch(caches.hub_source(spec.name))
                tok = open_clip.get_tokenizer(spec.text, cache_dir=caches.open_clip_cache_arg())
        except Exception as e:
            raise caches.download_error(spec.text, e, hub.offline) from None
        cfg = _read_json(cfg_path)
        try:
            with _quiet_open_clip():
                clip = open_clip.create_model("local-dir:" + str(cfg_path.parent), device="cpu", weights_only=True,
                                              load_weights=False)
            open_clip.load_checkpoint(clip, str(weights), weights_only=True)
        except Exception as e:
            raise _weights_error(str(weights), e) from None
        arch = spec.text
        prov["trained"] = True
    else:  # pretrained, file with architecture, random
        cfg = {"model_cfg": open_clip.get_model_config(spec.name), "preprocess_cfg": {}}
        kw: dict[str, Any] = {"device": "cpu", "weights_only": True, "cache_dir": caches.open_clip_cache_arg()}
        if spec.kind == "pretrained":
            pcfg = open_clip.get_pretrained_cfg(spec.name, spec.tag)
            if pcfg.get("quick_gelu") and not cfg["model_cfg"].get("quick_gelu"):
                kw["force_quick_gelu"] = True  # the weights were trained with QuickGELU
                cfg["model_cfg"]["quick_gelu"] = True
            hub = caches.HubAccess()
            try:
                with hub:
                    clip = open_clip.create_model(spec.name, pretrained=spec.tag, **kw)
            except Exception as e:
                raise caches.download_error(spec.text, e, hub.offline, spec.name) from None
            prov["trained"] = True
        elif spec.kind == "file":
            try:
                clip = open_clip.create_model(spec.name, pretrained=spec.path, **kw)
            except Exception as e:
                raise _weights_error(spec.path, e) from None
            prov["trained"] = True
        else:
            # the same untrained model every time: one seeded build at a time (the generator is the process's)
            with _SEEDED_BUILD, torch.random.fork_rng(devices=[]), _quiet_open_clip():
                torch.manual_seed(0)
                clip = open_clip.create_model(spec.name, **kw)
            prov["trained"] = False
            prov["note"] = "random init (untrained): scores are meaningless"
        hub = caches.HubAccess()
        try:
            with hub:
                tok = open_clip.get_tokenizer(spec.name, cache_dir=caches.open_clip_cache_arg())
        except Exception as e:
            raise caches.download_error(spec.text, e, hub.offline, spec.name) from None
        arch = spec.name
    fusion = fusion or meta.get("fusion") or "mean"
    clip = clip.to(device).eval()
    model = AffectVLM(clip, tok, arch=arch, model_cfg=cfg["model_cfg"],
                      preprocess_cfg=open_clip.get_model_preprocess_cfg(clip), classes=classes, prompts=prompts,
                      render=render, fusion=fusion, spec=spec.text, provenance=prov)
    if meta.get("embedding_mean") is not None:
        model.embedding_mean = _embedding_mean(meta["embedding_mean"], model.embed_dim, spec.path)
    for choice in ckpt.CHOICES:
        if meta.get(choice) is not None:
            if not isinstance(meta[choice], bool):
                raise ModelError(f"{spec.path}/{ckpt.META_FILE}: {choice} must be true or false")
            setattr(model, choice, meta[choice])
    if model.attention is not None and meta.get("fusion_weights"):
        from safetensors.torch import load_file

        folder = Path(os.path.realpath(spec.path))
        fpath = Path(os.path.realpath(folder / str(meta["fusion_weights"])))
        if folder not in fpath.parents:  # the metadata may name only a file of its own folder
            raise ModelError(f"{spec.path}/{ckpt.META_FILE}: fusion_weights must name a file in the checkpoint "
                             f"folder, not {str(meta['fusion_weights'])[:200]!r}")
        try:
            model.attention.load_state_dict(load_file(str(fpath)))
        except Exception as e:
            raise _weights_error(str(fpath), e) from None
    return model.to(device).eval()


def _embedding_mean(value: Any, dim: int, folder: str) -> torch.Tensor:
    """A checkpoint's ``embedding_mean``: ``dim`` finite numbers (ModelError naming the file otherwise)."""
    try:
        t = torch.tensor(value, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        t = None
    if t is None or t.shape != (dim,) or not bool(torch.isfinite(t).all()):
        raise ModelError(f"{folder}/{ckpt.META_FILE}: embedding_mean must be a list of {dim} finite numbers")
    return t


_CACHE: "OrderedDict[tuple, AffectVLM]" = OrderedDict()
_CACHE_SIZE = 4
_LOCK = threading.Lock()
_SEEDED_BUILD = threading.Lock()
_BUILDING: dict[tuple, threading.Lock] = {}  # a lock per model being built


def load_model(spec: str | os.PathLike | None = None, *, device: str | torch.device | None = "auto",
               classes: Sequence[str] | str | None = None, prompts: Any = None, fusion: str | None = None,
               cache: bool = True) -> AffectVLM:
    """Resolve ``spec`` (see the module docstring) and return an AffectVLM in eval mode on ``device``
    (``"auto"``: CUDA when present, see :func:`affectvlm.model.devices.resolve_device`).

    ``classes`` / ``prompts`` (PromptSet, YAML/JSON path, or a list of templates with ``{}``) override
    the checkpoint's. Results are cached per (spec, device, classes, prompts) in this process
    (the same object is returned; pass ``cache=False`` for a private copy, e.g. to train it).
    """
    dev = resolve_device(device)
    parsed = parse_spec(spec)
    names = parse_classes(classes)
    ps: PromptSet | None = _prompt_arg(prompts)
    key = (parsed.cache_key(), str(dev), names, ps, fusion)
    if not cache:
        return _build_checked(parsed, dev, names, ps, fusion)
    with _LOCK:
        if (hit := _cached(key)) is not None:
            return hit
        gate = _BUILDING.setdefault(key, threading.Lock())
    try:
        with gate:  # threads asking for one model at once share one build (the app's first visitors)
            with _LOCK:
                if (hit := _cached(key)) is not None:
                    return hit
            model = _build_checked(parsed, dev, names, ps, fusion)
            with _LOCK:
                _CACHE[key] = model
                while len(_CACHE) > _CACHE_SIZE:
                    _CACHE.popitem(last=False)
            return model
    finally:
        with _LOCK:
            if _BUILDING.get(key) is gate and not gate.locked():
                del _BUILDING[key]


def _cached(key: tuple) -> AffectVLM | None:
    """The cached model for ``key``, made the most recently used (call with ``_LOCK`` held)."""
    if key not in _CACHE:
        return None
    _CACHE.move_to_end(key)
    return _CACHE[key]


def _build_checked(parsed: Spec, dev: torch.device, names, ps: PromptSet | None, fusion: str | None) -> AffectVLM:
    """Build, with a library's OS or parse error turned into one ModelError naming the spec."""
    try:
        return _build_steady(parsed, dev, names, ps, fusion)
    except AffectVLMError:
        raise
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as e:
        first = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
        raise ModelError(f"cannot load model {parsed.text!r}: {first}") from None


def _folder_id(path: str) -> tuple[int, int] | None:
    """Which folder is at ``path`` now: a checkpoint replaced in place is a new folder (another inode, or the same
    number reused with another change time)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_ctime_ns


def _build_steady(spec: Spec, device: torch.device, classes, prompts, fusion: str | None,
                  tries: int = 5) -> AffectVLM:
    """:func:`_build`, for a checkpoint folder read again while a run replaces it under the reader (a trainer saving
    ``best/`` as the app loads it: the files of two saves, or none, would be read together)."""
    if spec.kind != "checkpoint":
        return _build(spec, device, classes, prompts, fusion)
    for attempt in range(tries):
        before = _folder_id(spec.path)
        try:
            model = _build(spec, device, classes, prompts, fusion)
        except (AffectVLMError, OSError, RuntimeError, ValueError, KeyError):
            if attempt + 1 < tries and (before is None or _folder_id(spec.path) != before):
                time.sleep(0.1)  # replaced while read: read the new one
                continue
            raise
        if before is not None and _folder_id(spec.path) == before:
            return model
        time.sleep(0.1)
    raise ModelError(f"{spec.path}: the checkpoint kept changing while it was read (a run still saving it?); "
                     "try again")


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()


def _prompt_arg(prompts: Any) -> PromptSet | None:
    """None, a PromptSet, a path, a dict, or a list of zero-shot templates (each with one ``{}``)."""
    if prompts is None:
        return None
    if isinstance(prompts, (list, tuple)) and all(isinstance(t, str) for t in prompts):
        base = as_prompt_set(None).to_dict()
        base["templates"] = {"adjective": list(prompts), "noun": []}
        return PromptSet.from_dict(base, source="templates")
    return as_prompt_set(prompts)
