"""Atomic run checkpoints and resume.

Layout of ``RUN_DIR/checkpoints/epoch_NNNN/`` (written in a temporary sibling folder, then renamed with
``os.replace``, so a kill at any moment leaves either the previous or the new checkpoint, never half of one):

- ``model/``: our checkpoint folder (``affectvlm.model.save_checkpoint``), loadable by ``load_model``;
- ``weights.safetensors``: the exact trainable state (model + loss module, e.g. the margin alpha);
- ``train_state.pt``: optimizer state, step, epoch, sampler epoch/seed, torch/python RNG states; only
  tensors and plain containers, read back with ``torch.load(weights_only=True)``;
- ``meta.json``: epoch, step, metrics and ``files`` (size and sha256 of every file above); written last, so
  its presence marks a finished save and its manifest tells a complete checkpoint from a damaged one.

Run-folder safety (called by the trainer at start, beside ``affectvlm.runfolder.lock_run_dir``):
:func:`sweep_run_dir` (remove ``.tmp-*`` leftovers of a killed save, restore a ``best/`` moved aside by a
kill inside ``replace_dir``) and :func:`load_resume_checkpoint` (the newest *complete* checkpoint, skipping
damaged ones with a warning).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
import uuid
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from affectvlm.errors import ConfigError
from affectvlm.model.checkpoint import plain_state, replace_dir
from affectvlm.runfolder import CHECKPOINT_NAME, RunFolder, checkpoint_name, list_checkpoints, write_json

log = logging.getLogger("affectvlm.train")
_MANIFEST_FILES = ("weights.safetensors", "train_state.pt", "model/affectvlm.json")


def save_run_checkpoint(run_dir: str | os.PathLike, epoch: int, *, model, trainable: dict[str, torch.Tensor],
                        train_state: dict, meta: dict, keep: int = 2) -> Path:
    """Write ``checkpoints/epoch_{epoch}``, atomically; keep the newest ``keep`` checkpoints."""
    from affectvlm.model import save_checkpoint

    ck = RunFolder(run_dir).checkpoints
    ck.mkdir(parents=True, exist_ok=True)
    final = ck / checkpoint_name(epoch)
    tmp = ck / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    tmp.mkdir()
    save_checkpoint(model, tmp / "model", extra={"epoch": epoch, **meta.get("model_extra", {})})
    save_file(plain_state(trainable), str(tmp / "weights.safetensors"))
    torch.save(train_state, tmp / "train_state.pt")
    files = {name: _file_digest(tmp / name) for name in _manifest_names(tmp)}
    write_json(tmp / "meta.json",
                      {k: v for k, v in meta.items() if k != "model_extra"} | {"epoch": epoch, "files": files})
    replace_dir(tmp, final)
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    cks = list_checkpoints(run_dir)
    return cks[-1] if cks else None


class DamagedCheckpoint(ConfigError):
    """A checkpoint folder that cannot be resumed from (truncated, corrupted or foreign files)."""


def load_run_checkpoint(ck: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """(trainable weights, train_state, meta) of one checkpoint folder, verified against its manifest.

    Raises :class:`DamagedCheckpoint` (one line) when any part is missing, truncated or corrupted."""
    ck = Path(ck)
    try:
        meta = json.loads((ck / "meta.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DamagedCheckpoint(f"{ck}: meta.json is missing or unreadable ({type(e).__name__})") from None
    if not isinstance(meta, dict):
        raise DamagedCheckpoint(f"{ck}: meta.json is not an object")
    files = meta.get("files")
    if isinstance(files, dict):
        for name, want in files.items():
            parts = name.replace("\\", "/").split("/")
            if name.startswith(("/", "\\")) or any(x in ("", ".", "..") for x in parts):  # its own folder's files only
                raise DamagedCheckpoint(f"{ck}: meta.json names {name[:80]!r}, not a file of the checkpoint")
            got = _file_digest(ck / name) if (ck / name).is_file() else None
            if got is None:
                raise DamagedCheckpoint(f"{ck}: {name} is missing")
            if got != want:
                raise DamagedCheckpoint(f"{ck}: {name} does not match the manifest (size {got['size']}, "
                                        f"expected {want.get('size') if isinstance(want, dict) else '?'})")
    try:
        weights = load_file(str(ck / "weights.safetensors"))
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for a bad file
        raise DamagedCheckpoint(f"{ck}: weights.safetensors is unreadable ({type(e).__name__})") from None
    try:
        state = torch.load(ck / "train_state.pt", map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a truncated zip, a pickle with code, ...
        raise DamagedCheckpoint(f"{ck}: train_state.pt is unreadable ({type(e).__name__})") from None
    missing = [k for k in ("optimizer", "epoch", "step", "rng") if not isinstance(state, dict) or k not in state]
    if missing:
        raise DamagedCheckpoint(f"{ck}: train_state.pt lacks {', '.join(missing)}")
    return weights, state, meta


def load_resume_checkpoint(run_dir: str | os.PathLike) -> tuple[Path, dict, dict, dict] | None:
    """The newest checkpoint that loads completely, as (folder, weights, train_state, meta).

    Damaged or unfinished newer checkpoints are skipped with a warning; None when the run has none at
    all; ``ConfigError`` when every checkpoint is damaged (nothing safe to resume from)."""
    ck = RunFolder(run_dir).checkpoints
    found = sorted(((int(m.group(1)), d) for d in (ck.iterdir() if ck.is_dir() else ())
                    if (m := CHECKPOINT_NAME.match(d.name)) and d.is_dir()), reverse=True)
    damaged: list[str] = []
    for _, d in found:
        try:
            w, st, meta = load_run_checkpoint(d)
        except DamagedCheckpoint as e:
            log.warning("resume: skipping damaged checkpoint %s", e)
            damaged.append(d.name)
            continue
        return d, w, st, meta
    if damaged:
        raise ConfigError(f"{run_dir}: no complete checkpoint to resume from ({', '.join(damaged)} damaged); "
                          "move the checkpoints folder away to start again")
    return None


def _manifest_names(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.name != "meta.json")


def _file_digest(path: Path) -> dict:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": h.hexdigest()}


# ----------------------------------------------------------------------------- leftovers of a kill

_RUN_TMP = re.compile(r"^\.{1,2}tmp-")
_FILE_TMP = re.compile(r"^\.[^/]+\.\d+\.[0-9a-f]{8}\.tmp$")
_ASIDE = re.compile(r"^\.(best|epoch_\d{4,})\.old-[0-9a-f]{8}$")


def sweep_run_dir(run_dir: str | os.PathLike) -> list[str]:
    """Remove what a killed save left (``.tmp-*`` folders, temp files) and put back a ``best/`` or
    checkpoint that a kill inside ``replace_dir`` left moved aside. Call only while holding the lock.
    Returns one line per action."""
    run_dir = Path(run_dir)
    done: list[str] = []
    for folder in (run_dir, RunFolder(run_dir).checkpoints):
        if not folder.is_dir():
            continue
        asides: dict[str, list[Path]] = {}
        for p in folder.iterdir():
            if _RUN_TMP.match(p.name) or (_FILE_TMP.match(p.name) and p.is_file()):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
                done.append(f"removed {p.name}")
            elif (m := _ASIDE.match(p.name)) and p.is_dir():
                asides.setdefault(m.group(1), []).append(p)
        for name, olds in asides.items():
            olds.sort(key=lambda q: q.stat().st_mtime, reverse=True)
            final = folder / name
            if not final.exists():
                os.replace(olds[0], final)
                done.append(f"restored {name} from {olds[0].name}")
                olds = olds[1:]
            for q in olds:
                shutil.rmtree(q, ignore_errors=True)
                done.append(f"removed {q.name}")
    return done


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
