"""Image export: rendered tensors to PIL images and PNG files."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from affectvlm.errors import ConfigError


def _to_uint8_hwc(images: Any) -> np.ndarray:
    """Any (..., C, H, W) tensor/array in [0, 1] -> (n, H, W, C) uint8."""
    if isinstance(images, torch.Tensor):
        arr = images.detach().to("cpu", torch.float32).numpy()
    else:
        arr = np.asarray(images, dtype=np.float32)
    if arr.ndim < 3 or arr.shape[-3] not in (1, 3):
        raise ConfigError(f"images must have shape (..., C, H, W) with C = 1 or 3, got {arr.shape}")
    arr = arr.reshape((-1,) + arr.shape[-3:])
    return (np.clip(np.nan_to_num(arr), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)


def to_pil(images: Any) -> list:
    """(B, V, C, H, W) / (V, C, H, W) / (C, H, W) in [0, 1] -> flat list of PIL images (b-major)."""
    from PIL import Image

    arr = _to_uint8_hwc(images)
    return [Image.fromarray(a[..., 0] if a.shape[2] == 1 else a) for a in arr]


def save_views(images: Any, out_dir: str | Path, stem: str) -> list[Path]:
    """Write PNGs ``{stem}_v{j}.png`` (one mesh) or ``{stem}_{b}_v{j}.png`` (a batch); return the paths."""
    if not stem or any(c in str(stem) for c in "/\\\0") or str(stem) in (".", ".."):
        raise ConfigError(f"bad file stem {stem!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shape = tuple(images.shape)
    n_views = shape[-4] if len(shape) >= 4 else 1
    batched = len(shape) == 5 and shape[0] > 1
    paths = []
    for i, im in enumerate(to_pil(images)):
        b, j = divmod(i, n_views)
        p = out / (f"{stem}_{b}_v{j}.png" if batched else f"{stem}_v{j}.png")
        tmp = p.with_name(p.name + ".tmp")
        im.save(tmp, format="PNG")
        tmp.replace(p)
        paths.append(p)
    return paths
