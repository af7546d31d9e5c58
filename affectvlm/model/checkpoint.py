"""AffectVLM checkpoint folders.

A folder holds ``open_clip_config.json`` ({"model_cfg", "preprocess_cfg"}) and
``open_clip_model.safetensors`` (so plain ``open_clip.create_model('local-dir:FOLDER')`` loads it),
plus ``affectvlm.json`` (classes, prompts, render settings, fusion, provenance) and, for attention
fusion, ``fusion.safetensors``. Folders are written into a temp folder beside the target and moved
into place, so a reader never sees half a checkpoint. Nothing is ever unpickled.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Mapping

import torch

from affectvlm.errors import ModelError

FORMAT = "affectvlm-checkpoint"
FORMAT_VERSION = 1
META_FILE = "affectvlm.json"
# true/false fields a training run writes (affectvlm.json)
CHOICES = ("neutral_reference", "adapt_to_set", "subject_mean")
CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"
FUSION_FILE = "fusion.safetensors"


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)


def plain_state(sd: Mapping[str, torch.Tensor], dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """CPU, contiguous, unshared copies of a state dict (what safetensors accepts), optionally cast."""
    out = {}
    for k, v in sd.items():
        t = v.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        out[k] = t.contiguous().clone()  # clone: safetensors refuses tensors that share storage
    return out


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished temp folder into place; an older folder of the same name is moved aside first."""
    if final.exists():
        trash = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)


def save_checkpoint(model: Any, folder: str | os.PathLike, extra: Mapping[str, Any] | None = None, *,
                    dtype: str | torch.dtype | None = None) -> Path:
    """Write ``model`` (an AffectVLM) as a checkpoint folder, atomically; return the folder.

    ``extra`` (JSON-serialisable, e.g. epoch and metrics) goes into ``provenance.extra``.
    ``dtype="fp16"`` stores floating weights in half precision (they load back as float32).
    """
    from safetensors.torch import save_file

    from affectvlm import __version__

    if isinstance(dtype, str):
        names = {"fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16,
                 "fp32": torch.float32, "float32": torch.float32}
        if dtype.lower() not in names:
            raise ModelError(f"unknown checkpoint dtype {dtype!r} (fp16, bf16, fp32)")
        dtype = names[dtype.lower()]
    final = Path(folder)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        cfg = {"model_cfg": _jsonable(model.model_cfg), "preprocess_cfg": _jsonable(model.preprocess_cfg)}
        (tmp / CONFIG_FILE).write_text(json.dumps(cfg, indent=2), encoding="utf-8")
        save_file(plain_state(model.clip.state_dict(), dtype), str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        fusion_file = None
        if getattr(model, "attention", None) is not None:
            fusion_file = FUSION_FILE
            save_file(plain_state(model.attention.state_dict(), None), str(tmp / FUSION_FILE),
                      metadata={"format": "pt", "hidden": str(model.attention.hidden)})
        prov = {k: v for k, v in dict(model.provenance).items() if k not in ("extra", "loaded_from")}
        prov.update({
            "affectvlm_version": __version__,
            "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "torch_version": torch.__version__,
            "base_spec": prov.get("base_spec") or model.spec,
            "extra": _jsonable(extra or {}),
        })
        ex = dict(extra or {})
        if "trained" in ex:
            prov["trained"] = bool(ex["trained"])
        elif any(k in ex for k in ("epoch", "step", "val_accuracy", "trained_on")):
            prov["trained"] = True  # saved by a training run
        if prov.get("trained"):
            prov.pop("note", None)
        try:
            import open_clip

            prov["open_clip_version"] = open_clip.__version__
        except Exception:  # pragma: no cover - open_clip is a dependency
            pass
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "arch": model.arch,
            "classes": list(model.classes),
            "prompts": model.prompts.to_dict(),
            "render": model.render.to_dict(),
            "fusion": model.fusion,
            "fusion_weights": fusion_file,
            "weights_dtype": str(dtype or "float32").replace("torch.", ""),
            "provenance": _jsonable(prov),
        }
        if getattr(model, "embedding_mean", None) is not None:
            meta["embedding_mean"] = [round(float(v), 7) for v in model.embedding_mean.flatten().tolist()]
        for choice in CHOICES:  # what the training run chose on its validation subjects
            if getattr(model, choice, None) is not None:
                meta[choice] = bool(getattr(model, choice))
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        for f in tmp.iterdir():  # safetensors writes 0600 files; a shared checkpoint must be readable by others
            f.chmod(0o644)
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def update_meta(folder: str | os.PathLike, **fields: Any) -> None:
    """Set top-level ``fields`` of a checkpoint's ``affectvlm.json`` (read and checked first), atomically."""
    from affectvlm.fileio import atomic_write_text

    meta = read_meta(folder)
    meta.update(_jsonable(fields))
    atomic_write_text(Path(folder) / META_FILE, json.dumps(meta, indent=2))


def read_meta(folder: str | os.PathLike) -> dict[str, Any]:
    """Read and check ``affectvlm.json`` of a checkpoint folder (ModelError if it is not one)."""
    path = Path(folder) / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{folder}: not an AffectVLM checkpoint folder ({META_FILE} is missing)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{path}: unreadable checkpoint metadata ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"{path}: not an AffectVLM checkpoint (format is {meta.get('format') if isinstance(meta, dict) else None!r})")
    types = {"format_version": int, "classes": list, "fusion": str, "provenance": dict, "render": dict, "prompts": dict}
    wrong = [k for k, t in types.items() if meta.get(k) is not None and not isinstance(meta[k], t)]
    if wrong or not all(isinstance(c, str) for c in meta.get("classes") or []):  # read as the wrong model before
        key = wrong[0] if wrong else "classes"
        want = {"classes": "a list of class names"}.get(key, f"a JSON {types[key].__name__}")
        raise ModelError(f"{path}: '{key}' must be {want}, not {meta[key]!r:.80}")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelError(f"{path}: checkpoint format {meta.get('format_version')} is newer than this affectvlm "
                         f"understands ({FORMAT_VERSION}); upgrade affectvlm")
    for key in ("classes", "fusion"):
        if key not in meta:
            raise ModelError(f"{path}: checkpoint metadata lacks '{key}'")
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (Path(folder) / name).is_file():
            raise ModelError(f"{folder}: checkpoint is incomplete ({name} is missing)")
    return meta


def safetensors_problem(path: str | os.PathLike) -> str | None:
    """Why a ``.safetensors`` file cannot be whole (truncated, padded, not one), from its header alone; None if
    its size is what the header says. Reads a few kilobytes, not the tensors."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n < 2 or 8 + n > size or n > 100_000_000:
                return "not a safetensors file, or cut short in its header"
            header = json.loads(f.read(n).decode("utf-8"))
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, UnicodeDecodeError):
        return "not a safetensors file (its header is not one)"
    want = 8 + n + max(ends, default=0)
    if size != want:
        return f"{'cut short' if size < want else 'longer than its header says'}: {size} bytes of {want}"
    return None


def weights_problem(folder: str | os.PathLike) -> str | None:
    """The first damaged weights file of a checkpoint folder, as 'FILE: why'; None when they look whole."""
    for name in (WEIGHTS_FILE, FUSION_FILE):
        p = Path(folder) / name
        if p.is_file():
            why = safetensors_problem(p)
            if why:
                return f"{p}: {why}"
    return None


def describe_provenance(prov: Mapping[str, Any] | None) -> str:
    """Where a model came from, as one line of words (for the app and reports)."""
    if not isinstance(prov, Mapping):
        return str(prov or "")[:400]
    extra = prov.get("extra") if isinstance(prov.get("extra"), Mapping) else {}
    parts = []
    if prov.get("trained"):
        what = extra.get("data_note") or extra.get("trained_on")
        parts.append(f"fine-tuned from {prov.get('base_spec', '?')}" + (f" on {what}" if what else ""))
        if isinstance(extra.get("val_accuracy"), (int, float)):
            parts.append(f"validation accuracy {extra['val_accuracy']:.3f} at epoch {extra.get('epoch', '?')}")
    elif prov.get("trained") is False or prov.get("kind") == "random":
        parts.append("untrained (random init): scores are meaningless")
    else:
        parts.append(f"{prov.get('kind', 'model')} {prov.get('base_spec', '')}".strip())
    if prov.get("saved_at"):
        parts.append(f"saved {str(prov['saved_at'])[:10]}")
    if prov.get("loaded_from"):
        parts.append(f"from {prov['loaded_from']}")
    return "; ".join(parts)[:400]
