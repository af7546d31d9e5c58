"""Rendering throughput: our batched rasteriser vs a reused pyvista (VTK) off-screen plotter.

Prints one JSON document. Each case renders face_like_mesh faces of ~10k or ~100k triangles at
224 px, 3 or 6 views, one face or a batch of 32, and reports views/second for both and their ratio
(ours / pyvista). pyvista has no batching, so a batch is a loop over faces with one plotter; for
the batch cases pyvista is timed on ``--pv-faces`` faces and scaled to the batch (``pyvista_estimated``).
Meshes are canonicalised once beforehand for both renderers (same unit-radius frame and camera).

    python bench/bench_render.py            # full run (about 2-3 minutes on 2 CPU cores)
    python bench/bench_render.py --quick    # smaller, for a smoke test
    python bench/bench_render.py --render-module /tmp/render_old    # time another copy (before/after)

``--render-module`` takes a copy of the ``affectvlm/render`` package folder, or a single-file render.py of
older versions.

On CPU ours uses the compiled numba kernels when numba is installed (``backend`` in the JSON), else
the vectorised torch path.

Threads: by default (``--threads 0``) both renderers get ``max(1, cpu_count - round(load1))`` threads,
where load1 is the 1-minute load average: on a shared, busy machine extra threads only fight over the
same cores (oversubscription makes torch's intra-op parallel loops slower, not faster), on an idle one
all cores are used. The JSON reports the thread count and the load averages before and after the run,
because ratios measured under load are noisy: compare versions back to back in one session.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


def _auto_threads() -> int:
    """CPU threads that are actually free: cpu_count minus the 1-minute load average, at least 1."""
    n = os.cpu_count() or 1
    try:
        load1 = os.getloadavg()[0]
    except (OSError, AttributeError):  # not available on this platform
        return n
    return max(1, min(n, n - int(round(load1))))


_THREADS = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 0
_THREADS = _THREADS if _THREADS > 0 else _auto_threads()
os.environ["LP_NUM_THREADS"] = str(_THREADS)  # Mesa's llvmpipe reads this when the GL context is created
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # meshgen

import numpy as np  # noqa: E402
import torch  # noqa: E402

from affectvlm.geometry import canonicalise  # noqa: E402
from affectvlm.render import AMBIENT, View  # noqa: E402
from affectvlm.render import render_views as _render_views  # noqa: E402
from meshgen import face_like_mesh  # noqa: E402

VIEWS6 = (View(0), View(-30), View(30), View(-15), View(15), View(0, 15))


def _grid_n(target_faces: int) -> int:
    """face_like_mesh(n) has about 1.45 n^2 triangles."""
    return max(8, int(round(math.sqrt(target_faces / 1.45))))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


render_views = _render_views


def _backend(mod) -> str:
    """Which path the module renders with on CPU: numba kernels (when installed) or torch."""
    numba_backend = getattr(mod, "numba_backend", None)
    ready = numba_backend.numba_ready if numba_backend is not None else getattr(mod, "_numba_ready", None)
    return "numba" if ready is not None and ready() else "torch"


def _load_render_module(path: str):
    """Import another copy of the render package (a folder) or of a single-file render.py (e.g. the
    previous version) to time it in the same run."""
    import importlib.util

    src = Path(path)
    if not (src / "__init__.py" if src.is_dir() else src).is_file() or (src.is_file() and src.suffix != ".py"):
        raise SystemExit(f"bench_render: --render-module {path}: not a render package folder (with __init__.py) "
                         "nor a render.py file")
    if src.is_dir():
        spec = importlib.util.spec_from_file_location("render_under_test", src / "__init__.py",
                                                      submodule_search_locations=[str(src)])
    else:
        spec = importlib.util.spec_from_file_location("render_under_test", src)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["render_under_test"] = mod
    try:
        spec.loader.exec_module(mod)
    except Exception as e:  # another copy of the code: anything it raises is about that copy
        raise SystemExit(f"bench_render: --render-module {path}: cannot import it ({type(e).__name__}: {e})")
    if not callable(getattr(mod, "render_views", None)):
        raise SystemExit(f"bench_render: --render-module {path}: it has no render_views function to time")
    return mod


def _as_pairs(views) -> list[tuple[float, float]]:
    return [(v.yaw, v.pitch) for v in views]


def time_ours(meshes, views, device: str, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        render_views(meshes, _as_pairs(views), 224, canonical=False, device=device)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return best


class PyvistaRenderer:
    """One reused off-screen plotter: headlight, parallel projection, same camera as ours."""

    def __init__(self, size: int = 224):
        import pyvista as pv

        self.pv = pv
        t = time.perf_counter()
        self.pl = pv.Plotter(off_screen=True, window_size=(size, size), lighting="none")
        self.pl.add_light(pv.Light(light_type="headlight"))
        self.pl.enable_parallel_projection()
        self.pl.set_background("black")
        self.pl.render()
        self.setup_s = time.perf_counter() - t

    def render(self, mesh, views) -> list[np.ndarray]:
        pv = self.pv
        faces = np.hstack([np.full((mesh.n_faces, 1), 3), mesh.faces]).ravel()
        actor = self.pl.add_mesh(pv.PolyData(mesh.vertices.astype(np.float64), faces), color="white",
                                 smooth_shading=True, specular=0.0, ambient=AMBIENT, diffuse=1 - AMBIENT)
        out = []
        for v in views:
            a, b = math.radians(v.yaw), math.radians(v.pitch)
            cam = self.pl.camera
            cam.position = (5 * math.sin(a) * math.cos(b), 5 * math.sin(b), 5 * math.cos(a) * math.cos(b))
            cam.focal_point = (0.0, 0.0, 0.0)
            cam.up = (-math.sin(a) * math.sin(b), math.cos(b), -math.cos(a) * math.sin(b))
            cam.parallel_scale = 1.0
            cam.clipping_range = (0.1, 20.0)
            self.pl.render()
            out.append(self.pl.screenshot(return_img=True))
        self.pl.remove_actor(actor)
        return out

    def close(self) -> None:
        self.pl.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes and batch, for a smoke test")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--pv-faces", type=int, default=4, help="faces pyvista renders in batch cases (scaled up)")
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU threads for both renderers (torch and Mesa llvmpipe); 0 = cpu_count - load")
    ap.add_argument("--render-module", default=None,
                    help="path of a render package folder (or an old render.py) to time instead of ours")
    ap.add_argument("--no-pyvista", action="store_true", help="time ours only")
    args = ap.parse_args(argv)

    global render_views
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    torch.set_num_threads(_THREADS)
    if args.render_module:
        render_mod = _load_render_module(args.render_module)
        render_views = render_mod.render_views
    else:
        import affectvlm.render as render_mod
    backend = _backend(render_mod) if args.device == "cpu" else "torch"
    sizes = (2_000, 10_000) if args.quick else (10_000, 100_000)
    batch = 4 if args.quick else args.batch
    meshes = {}
    for target in sizes:
        n = _grid_n(target)
        meshes[target] = [canonicalise(face_like_mesh(n, seed=i, smile=(i % 3) / 2)) for i in range(batch)]
    render_views(meshes[sizes[0]][:2], _as_pairs(VIEWS6[:3]), 224, canonical=False, device=args.device)  # warm-up

    pvr = None
    if not args.no_pyvista:
        try:
            pvr = PyvistaRenderer()
            pvr.render(meshes[sizes[0]][0], VIEWS6[:1])  # warm-up (shader compilation)
        except Exception as exc:  # no off-screen GL here
            print(f"pyvista unavailable: {exc}", file=sys.stderr)
            pvr = None

    cases = []
    for target in sizes:
        for n_views in (3, 6):
            views = VIEWS6[:n_views]
            for b in (1, batch):
                ms = meshes[target][:b]
                heavy = target * n_views * b > 2_000_000
                t_ours = time_ours(ms, views, args.device, 1 if heavy else 2)
                case = {"faces": ms[0].n_faces, "views": n_views, "batch": b, "ours_s": round(t_ours, 4),
                        "ours_views_per_s": round(b * n_views / t_ours, 1)}
                if pvr is not None:
                    n_pv = min(b, args.pv_faces)
                    t = time.perf_counter()
                    for m in ms[:n_pv]:
                        pvr.render(m, views)
                    t_pv = (time.perf_counter() - t) * b / n_pv
                    case.update({"pyvista_s": round(t_pv, 4), "pyvista_views_per_s": round(b * n_views / t_pv, 1),
                                 "pyvista_faces_timed": n_pv, "pyvista_estimated": n_pv < b,
                                 "ratio": round(t_pv / t_ours, 2)})
                cases.append(case)
    t = time.perf_counter()
    canonicalise(meshes[sizes[-1]][0])
    t_canon = time.perf_counter() - t
    result = {
        "benchmark": "render 224px views/second, ours vs pyvista off-screen (reused plotter)",
        "device": args.device, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "llvmpipe_threads": os.environ.get("LP_NUM_THREADS", "default"),
        "cpu_count": os.cpu_count(), "platform": platform.platform(), "quick": args.quick,
        "render_module": args.render_module or "affectvlm.render", "backend": backend,
        "loadavg_before": [round(x, 2) for x in load_before] if load_before else None,
        "loadavg_after": [round(x, 2) for x in os.getloadavg()] if load_before else None,
        "pyvista_plotter_setup_s": round(pvr.setup_s, 3) if pvr else None,
        "canonicalise_s_largest_mesh": round(t_canon, 4),
        "note": "pyvista times exclude its one-off plotter set-up (reported separately); ours exclude canonicalise",
        "cases": cases,
    }
    if pvr is not None:
        single = [c["ratio"] for c in cases if c["batch"] == 1]
        batched = [c["ratio"] for c in cases if c["batch"] > 1]
        result["min_ratio_single"] = min(single)
        result["min_ratio_batch"] = min(batched)
        result["goal"] = {"single_face_ratio": 3.0, "batch_ratio": 10.0}
        result["goal_met"] = min(single) >= 3.0 and min(batched) >= 10.0
        pvr.close()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
