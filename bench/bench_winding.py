"""Benchmark: our winding repair (``affectvlm.winding``) vs ``trimesh.repair.fix_winding`` on the same scans.

    python bench/bench_winding.py [--sizes 100,320] [--share 0.5] [--repeats 3]

Face-like meshes (``tests/meshgen.py``, grid size n: 100 -> ~15k faces, 320 -> ~160k) with ``--share`` of their
triangles turned over. Prints one JSON object per size: ``{"faces", "flipped", "ours_ms", "trimesh_ms", "speedup",
"clean_ms", "both_consistent"}``: medians of warm runs (trimesh once: it is slow); ``clean_ms`` is ours on the
unscrambled mesh (what every consistent scan pays); ``speedup`` = trimesh_ms / ours_ms.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bench_read import median_ms  # noqa: E402  (this folder is on the path when a bench script runs)
from meshgen import face_like_mesh  # noqa: E402

from affectvlm.geometry import face_areas  # noqa: E402
from affectvlm.winding import apply_flips, consistent_winding  # noqa: E402


def main() -> None:
    from affectvlm.cli import positive_int

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,320", help="grid sizes n for face_like_mesh (320 -> ~160k faces)")
    ap.add_argument("--share", type=float, default=0.5, help="share of triangles turned over (0-1)")
    ap.add_argument("--repeats", type=positive_int, default=3, help="timed runs of ours (median)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip().isdigit()]
    if not sizes or min(sizes) < 8 or len(sizes) != len(args.sizes.split(",")):
        ap.error(f"--sizes {args.sizes}: whole numbers of at least 8, comma-separated")
    if not 0.0 <= args.share <= 1.0:
        ap.error(f"--share {args.share}: a share from 0 to 1")
    import trimesh

    rng = np.random.default_rng(0)
    for n in sizes:
        m = face_like_mesh(n, textured=False)
        faces = np.asarray(m.faces, dtype=np.int64)
        hit = rng.random(len(faces)) < args.share
        bad = faces.copy()
        bad[hit] = bad[hit][:, [0, 2, 1]]
        areas = face_areas(m.vertices, bad)
        consistent_winding(bad, areas)  # warm
        ours_ms, flip = median_ms(lambda: consistent_winding(bad, areas), args.repeats)
        clean_ms, _ = median_ms(lambda: consistent_winding(faces, areas), args.repeats)
        ref = trimesh.Trimesh(m.vertices, bad.copy(), process=False)
        t = time.perf_counter()
        trimesh.repair.fix_winding(ref)
        tm_ms = (time.perf_counter() - t) * 1000
        fixed, _ = apply_flips(bad, None, flip)
        ours = trimesh.Trimesh(m.vertices, fixed, process=False)
        both = bool(ref.is_winding_consistent and ours.is_winding_consistent)
        print(json.dumps({"faces": len(faces), "flipped": int(hit.sum()), "ours_ms": round(ours_ms, 1),
                          "trimesh_ms": round(tm_ms, 1), "speedup": round(tm_ms / ours_ms, 1),
                          "clean_ms": round(clean_ms, 1), "both_consistent": both}))


if __name__ == "__main__":
    main()
