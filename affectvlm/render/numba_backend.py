"""CPU path: dispatch to the compiled numba kernels (:mod:`affectvlm._render_kernels`), mesh by mesh.

Same rules as the torch path (:mod:`affectvlm.render.torch_backend`). Meshes of a batch, or the views
of a single mesh, are spread over ``torch.get_num_threads()`` threads; the kernels release the GIL.
"""
from __future__ import annotations

import importlib.util
from types import ModuleType

import numpy as np
import torch

from affectvlm.mesh import Mesh

from .prepare import color_array, face_uv_array, texture_array
from .settings import AMBIENT, CHANNELS, KERNEL_MAPS, RenderSettings
from .torch_backend import DEPTH_Q, EPS_IN

# CPU only; tests switch it off to exercise the torch path. numba is imported on first use (~0.6 s).
USE_NUMBA = importlib.util.find_spec("numba") is not None


def kernels() -> ModuleType:
    """The kernels module (imported on first use). It lives outside this package under a fixed name:
    numba's on-disk cache records the module name."""
    from affectvlm import _render_kernels

    return _render_kernels


def numba_ready() -> bool:
    """Whether the compiled CPU path is on and numba imports (a broken install falls back to torch)."""
    return USE_NUMBA and kernels().AVAILABLE


def render_numba(prepared: list[Mesh], settings: RenderSettings, maps: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """All ``maps`` of all meshes and views: ``{name: (B, V, C, size, size)}`` on the CPU."""
    compiled = kernels()
    n_meshes, n_views, size = len(prepared), len(settings.views), settings.size
    threads = torch.get_num_threads()
    rots = np.stack([v.rotation() for v in settings.views]).astype(np.float32).astype(np.float64)
    out = {name: torch.empty((n_meshes, n_views, CHANNELS[name], size * size), dtype=torch.float32)
           for name in maps}
    unused = {name: np.zeros((0, CHANNELS[name], 0), np.float32) for name in KERNEL_MAPS}  # maps not asked for
    empty_col, empty_uv = np.zeros((0, 3), np.float32), np.zeros((0, 3, 2), np.float32)
    tasks = []
    for i, m in enumerate(prepared):
        verts = np.ascontiguousarray(m.vertices, dtype=np.float32)
        faces = np.asarray(m.faces)
        faces = np.ascontiguousarray(faces if faces.dtype in (np.int32, np.int64) else faces.astype(np.int64))
        tex = texture_array(m) if settings.texture else None
        col = color_array(m) if settings.texture and tex is None else None
        if tex is not None and tex.dtype != np.uint8:
            tex = np.clip(tex.astype(np.float32), 0.0, 1.0)
        normals = np.empty_like(verts)
        compiled.vertex_normals(verts, faces, normals)
        arrs = [out[name][i].numpy() if name in out else unused[name] for name in KERNEL_MAPS]
        args = (verts, faces, normals, rots, size, EPS_IN, DEPTH_Q, empty_col if col is None else col,
                empty_uv if tex is None else face_uv_array(m),
                np.zeros((0, 0, 3), np.uint8) if tex is None else tex,
                1.0 / 255.0 if tex is None or tex.dtype == np.uint8 else 1.0, AMBIENT, settings.background, *arrs)
        # one task per mesh; a single mesh's views are split over the threads instead
        n_split = max(1, min(n_views, threads)) if n_meshes == 1 else 1
        cuts = [n_views * j // n_split for j in range(n_split + 1)]
        tasks += [(compiled.render, args + (cuts[j], cuts[j + 1])) for j in range(n_split)]
    compiled.run_tasks(tasks, threads)
    return {name: out[name].view(n_meshes, n_views, CHANNELS[name], size, size) for name in maps}
