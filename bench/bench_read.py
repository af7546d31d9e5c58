"""Benchmark: our VRML reader vs ``pyvista.read`` on the same Tricorder-style scans (~8k and ~100k vertices).

    python bench/bench_read.py [--repeats 5] [--sizes 100,360]

Prints one JSON object per size: ``{"vertices", "faces", "file_mb", "ours_ms", "pyvista_ms",
"pyvista_first_ms", "speedup", "speedup_first", "same_vertices"}``. ``pyvista_ms`` and ``ours_ms`` are
medians of warm runs in this process; ``pyvista_first_ms`` is pyvista's first call (what a one-shot
CLI run pays); ``speedup`` = pyvista_ms / ours_ms, ``speedup_first`` = pyvista_first_ms / ours_ms.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

from meshgen import face_like_mesh  # noqa: E402

from affectvlm.io import load_mesh  # noqa: E402
from affectvlm.io.vrml import write_vrml  # noqa: E402


def median_ms(fn, repeats: int) -> tuple[float, object]:
    """The median milliseconds of ``repeats`` calls of ``fn``, and its last result."""
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), out


def main() -> None:
    from affectvlm.cli import positive_int

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=positive_int, default=5)
    ap.add_argument("--sizes", default="100,360", help="grid sizes n for face_like_mesh (100 -> ~7.7k vertices)")
    args = ap.parse_args()
    import pyvista as pv

    first = True
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(s) for s in args.sizes.split(",")]:
            mesh = face_like_mesh(n)
            path = write_vrml(Path(tmp) / f"F0001_HA04WH_F3D_{n}.wrl", mesh)

            def ours():
                return load_mesh(path, texture=False)

            def theirs():
                data = pv.read(str(path))
                return data.combine() if isinstance(data, pv.MultiBlock) else data

            t0 = time.perf_counter()
            theirs()
            pv_first = (time.perf_counter() - t0) * 1000
            ours()  # warm numpy paths too, for fairness
            ours_ms, m = median_ms(ours, args.repeats)
            pv_ms, p = median_ms(theirs, args.repeats)
            same = set(map(tuple, np.round(np.asarray(p.points, float), 3).tolist())) == \
                set(map(tuple, np.round(m.vertices.astype(float), 3).tolist()))
            print(json.dumps({"vertices": m.n_vertices, "faces": m.n_faces,
                              "file_mb": round(path.stat().st_size / 2**20, 2), "ours_ms": round(ours_ms, 2),
                              "pyvista_ms": round(pv_ms, 2), "pyvista_first_ms": round(pv_first, 2),
                              "pyvista_first_includes_vtk_start": first, "speedup": round(pv_ms / ours_ms, 2),
                              "speedup_first": round(pv_first / ours_ms, 2), "same_vertices": same}))
            first = False


if __name__ == "__main__":
    main()
