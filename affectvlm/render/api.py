"""The rendering entry points: settings in, one batched pass over meshes and views, maps out."""
from __future__ import annotations

from typing import Any, Sequence

import torch

from affectvlm.errors import ConfigError
from affectvlm.mesh import Mesh

from . import numba_backend
from .lights import lights_from_normals
from .prepare import as_mesh_list, prepare
from .settings import DEFAULT_VIEWS, KERNEL_MAPS, RenderSettings, check_maps
from .torch_backend import render_torch


def render(meshes: Mesh | Sequence[Mesh], settings: RenderSettings, *, maps: str | Sequence[str] | None = None,
           device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Render ``maps`` (default: the settings' map) of every mesh from every view in one pass.

    Returns ``{name: (B, V, C, size, size) float32 in [0, 1]}`` with C = 3 for shade/normal/lights, 1 for
    depth/mask (B = 1 for a single mesh). Meshes of different sizes are rendered together, no padding.
    """
    maps = check_maps(settings.map if maps is None else maps)
    dev = torch.device(device)
    prepared = prepare(as_mesh_list(meshes), settings)
    drawn = tuple(dict.fromkeys("normal" if m == "lights" else m for m in maps))
    if dev.type == "cpu" and numba_backend.numba_ready():
        out = numba_backend.render_numba(prepared, settings, drawn)
    else:
        out = render_torch(prepared, settings, drawn, dev)
    if "lights" in maps:
        out["lights"] = lights_from_normals(out["normal"], settings.background)
    return {m: out[m] for m in maps}


def to_rgb(images: torch.Tensor) -> torch.Tensor:
    """(..., C, H, W) with C = 1 or 3 -> 3 channels (a 1-channel map is repeated), ready for an image encoder."""
    return images.expand(*images.shape[:-3], 3, -1, -1).contiguous() if images.shape[-3] == 1 else images


def render_maps(meshes: Mesh | Sequence[Mesh], views: Any = DEFAULT_VIEWS, size: int = 224, *,
                texture: bool = True, canonical: bool = True, device: str | torch.device = "cpu",
                maps: str | Sequence[str] = KERNEL_MAPS, up: str | None = None, front: str | None = None,
                background: float = 0.0, crop: bool = False) -> dict[str, torch.Tensor]:
    """:func:`render` with the settings given as keywords; always a dict ``{map name: (B, V, C, H, W)}``."""
    maps = check_maps(maps)
    settings = RenderSettings(size=size, views=views, texture=texture, canonical=canonical, up=up, front=front,
                              background=background, crop=crop)
    return render(meshes, settings, maps=maps, device=device)


def render_views(meshes: Mesh | Sequence[Mesh], views: Any = DEFAULT_VIEWS, size: int = 224, *,
                 texture: bool = True, canonical: bool = True, device: str | torch.device = "cpu",
                 map: str = "shade", up: str | None = None, front: str | None = None,
                 background: float = 0.0, crop: bool = False) -> torch.Tensor:
    """Render one ``map`` of every mesh from every view: (B, V, 3, size, size) float32 in [0, 1].

    1-channel maps (depth, mask) are repeated to 3 channels so the images can go straight to the image
    encoder. Several maps at once: :func:`render_maps`.
    """
    if not isinstance(map, str):
        raise ConfigError(f"render_views renders one map (a name), got {map!r}; for several use render_maps")
    out = render_maps(meshes, views, size, texture=texture, canonical=canonical, device=device, maps=(map,),
                      up=up, front=front, background=background, crop=crop)
    return to_rgb(out[map])
