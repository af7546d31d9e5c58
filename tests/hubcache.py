"""A fake Hugging Face hub cache holding tiny open_clip models made here (tests never download)."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from affectvlm.model import save_checkpoint

CONFIG = "open_clip_config.json"
WEIGHTS = "open_clip_model.safetensors"


def add_hub_repo(hub_cache: Path, repo_id: str, model, *, weights: bool = True) -> Path:
    """Lay ``model`` out as ``hub_cache/models--org--name/snapshots/<rev>/`` + ``refs/main``, as
    ``huggingface_hub`` does (files instead of blob symlinks); returns the snapshot folder."""
    src = save_checkpoint(model, hub_cache.parent / f".src-{repo_id.replace('/', '--')}")
    rev = hashlib.sha1(repo_id.encode()).hexdigest()
    repo = hub_cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / rev
    snap.mkdir(parents=True)
    shutil.copy(src / CONFIG, snap / CONFIG)
    if weights:
        shutil.copy(src / WEIGHTS, snap / WEIGHTS)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    shutil.rmtree(src)
    return snap
