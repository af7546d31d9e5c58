"""Time from upload to probabilities in the app's code path (no browser): one scan and a 100-frame
sequence, default model. Prints JSON; the baseline in the same run is the bare library call
(``predict_mesh`` / ``iter_sequence`` on already-loaded meshes), so ``ratio`` is the app's overhead
(upload planning, file writes, loading, preview decimation). The app canonicalises a scan once
(``predict.prepare``) and shares it between the preview and scoring.

    python bench/bench_app.py [--model SPEC] [--frames 100]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from affectvlm.app.batch import zip_bytes  # noqa: E402
from affectvlm.app.preview import mesh3d_figure, preview  # noqa: E402
from affectvlm.app.uploads import plan_upload  # noqa: E402
from affectvlm.io import load_mesh, load_sequence  # noqa: E402
from affectvlm.mesh import MeshSequence  # noqa: E402
from affectvlm.model import load_model  # noqa: E402
from affectvlm.predict import iter_sequence, predict_mesh, prepare  # noqa: E402
from meshgen import face_like_mesh  # noqa: E402


def _obj(mesh) -> bytes:
    import trimesh

    out = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).export(file_type="obj")
    return out.encode() if isinstance(out, str) else out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="model spec (default: the embedded default)")
    ap.add_argument("--frames", type=int, default=100)
    a = ap.parse_args()
    t0 = time.perf_counter()
    model = load_model(a.model)
    load_s = time.perf_counter() - t0
    scan = _obj(face_like_mesh(90, smile=1.0))  # ~10k faces, like a cropped scan
    frames = [(f"{i:03d}.obj", _obj(face_like_mesh(64, smile=i / a.frames, seed=i))) for i in range(a.frames)]
    zipped = zip_bytes(frames)
    out: dict = {"model": getattr(model, "spec", a.model), "model_load_s": round(load_s, 3)}
    # warm-up (first-call costs: torch kernels, numba compilation) so neither side pays them
    warm = face_like_mesh(40, seed=99)
    predict_mesh(warm, model)
    for _ in iter_sequence(MeshSequence([warm, warm], [0, 1]), model):
        pass
    with tempfile.TemporaryDirectory() as d:
        # one scan: app path = plan upload + load + prepare once + preview of it + predict_mesh of it
        t = time.perf_counter()
        plan = plan_upload([("scan.obj", scan)], Path(d) / "s")
        mesh = load_mesh(plan.path)
        prepared = prepare(mesh, model)
        mesh3d_figure(preview(prepared.mesh, max_faces=30_000, canonical=False))
        predict_mesh(prepared, model)
        app_scan = time.perf_counter() - t
        fresh = load_mesh(plan.path)  # a new object: no per-mesh cache from the app run
        t = time.perf_counter()
        predict_mesh(fresh, model)
        lib_scan = time.perf_counter() - t
        out["scan"] = {"faces": mesh.n_faces, "app_s": round(app_scan, 3), "library_s": round(lib_scan, 3),
                       "ratio": round(app_scan / lib_scan, 2)}
        # sequence: plan + load zip + score all frames (rows as the live chart gets them)
        t = time.perf_counter()
        plan = plan_upload([("seq.zip", zipped)], Path(d) / "q")
        seq = load_sequence(plan.path)
        first = None
        for row in iter_sequence(seq, model):
            if first is None:
                first = time.perf_counter() - t
        app_seq = time.perf_counter() - t
        seq = load_sequence(plan.path)
        t = time.perf_counter()
        for _ in iter_sequence(seq, model):
            pass
        lib_seq = time.perf_counter() - t
        out["sequence"] = {"frames": len(seq), "app_s": round(app_seq, 3), "first_frame_s": round(first or 0, 3),
                           "library_s": round(lib_seq, 3), "ratio": round(app_seq / lib_seq, 2),
                           "ms_per_frame": round(lib_seq / len(seq) * 1000, 1)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
