"""Atomic run checkpoints and resume.

Layout of ``RUN_DIR/checkpoints/epoch_NNNN/`` (written in a temporary sibling folder, then renamed with
``os.replace``, so a kill at any moment leaves either the previous or the new checkpoint, never half of one):

- ``model/``: our checkpoint folder (``affectvlm.model.save_checkpoint``), loadable by ``load_model``;
- ``weights.safetensors``: the exact trainable state (model + loss module, e.g. the margin alpha);
- ``train_state.pt``: optimizer state, step, epoch, sampler epoch/seed, torch/python RNG states; only
  tensors and plain containers, read back with ``torch.load(weights_only=True)``;
- ``meta.json``: epoch, step, metrics; written last, so its presence marks a complete checkpoint.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from affectvlm.model.checkpoint import plain_state, replace_dir  # noqa: F401  (replace_dir is re-exported)
from affectvlm.fileio import atomic_write_text  # noqa: F401  (re-exported for train.py)

_EPOCH_RE = re.compile(r"^epoch_(\d{4,})$")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=float))


def save_run_checkpoint(run_dir: str | os.PathLike, epoch: int, *, model, trainable: dict[str, torch.Tensor],
                        train_state: dict, meta: dict, keep: int = 2) -> Path:
    """Write ``checkpoints/epoch_{epoch}``, atomically; keep the newest ``keep`` checkpoints."""
    from affectvlm.model import save_checkpoint

    ck = Path(run_dir) / "checkpoints"
    ck.mkdir(parents=True, exist_ok=True)
    final = ck / f"epoch_{epoch:04d}"
    tmp = ck / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    tmp.mkdir()
    save_checkpoint(model, tmp / "model", extra={"epoch": epoch, **meta.get("model_extra", {})})
    save_file(plain_state(trainable), str(tmp / "weights.safetensors"))
    torch.save(train_state, tmp / "train_state.pt")
    atomic_write_json(tmp / "meta.json", {k: v for k, v in meta.items() if k != "model_extra"} | {"epoch": epoch})
    replace_dir(tmp, final)
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints (with ``meta.json``), oldest first."""
    ck = Path(run_dir) / "checkpoints"
    if not ck.is_dir():
        return []
    found = [(int(m.group(1)), d) for d in ck.iterdir()
             if (m := _EPOCH_RE.match(d.name)) and (d / "meta.json").is_file()]
    return [d for _, d in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    cks = list_checkpoints(run_dir)
    return cks[-1] if cks else None


def load_run_checkpoint(ck: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """(trainable weights, train_state, meta) of one checkpoint folder."""
    ck = Path(ck)
    weights = load_file(str(ck / "weights.safetensors"))
    state = torch.load(ck / "train_state.pt", map_location="cpu", weights_only=True)
    meta = json.loads((ck / "meta.json").read_text(encoding="utf-8"))
    return weights, state, meta


def rng_state() -> dict:
    st = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    random.setstate(_tuplify(st["python"]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _tuplify(x):
    return tuple(_tuplify(v) for v in x) if isinstance(x, (list, tuple)) else x
