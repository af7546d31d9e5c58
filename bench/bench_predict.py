"""Time from a scan file to emotion probabilities, split into load / render / encode / score.

One BU-3DFE-sized textured VRML scan (about 8k vertices, 15k faces, written with tests/meshgen.py),
3 views at 224 px; each model is loaded once, every stage runs once to warm up and is then timed
``--runs`` times; the median reported. Models: AffectVLM-Test, AffectVLM-Tiny and ViT-B-32 (random init, the same
architecture and cost as the pretrained one). Also the end-to-end ``predict([path])`` call.
Prints JSON; ``ratio_to_goal`` is the end-to-end median over the 0.5 s goal (< 1 is within it) and
``ratio_to_vit_b_32`` compares each model with ViT-B-32 measured in the same run.

    python bench/bench_predict.py [--runs 7] [--threads 2] [--models AffectVLM-Tiny,ViT-B-32]
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

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

GOAL_S = 0.5


def timed(fn, runs: int):
    out, times = fn(), []  # one warm-up call, not counted
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--models", default="AffectVLM-Test,AffectVLM-Tiny,ViT-B-32")
    ap.add_argument("--grid", type=int, default=100, help="meshgen grid size (100: ~8k vertices)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from affectvlm.io import load_mesh
    from affectvlm.io.vrml import write_vrml
    from affectvlm.model import load_model
    from affectvlm.predict import predict
    from meshgen import face_like_mesh

    tmp = Path(tempfile.mkdtemp(prefix="bench_predict_"))
    scan = tmp / "F0001_HA04WH_F3D.wrl"
    write_vrml(scan, face_like_mesh(args.grid))
    mesh = load_mesh(scan)
    report = {"scan": {"vertices": mesh.n_vertices, "faces": mesh.n_faces, "textured": mesh.has_texture,
                       "bytes": scan.stat().st_size},
              "threads": torch.get_num_threads(), "device": args.device, "runs": args.runs, "goal_s": GOAL_S,
              "models": {}}
    for name in args.models.split(","):
        t = time.perf_counter()
        model = load_model(name, device=args.device, cache=False)
        load_model_s = time.perf_counter() - t
        st = model.render
        with torch.no_grad():
            m, t_load = timed(lambda: load_mesh(scan), args.runs)
            imgs, t_render = timed(lambda: st.render([m], device=model.device), args.runs)
            z, t_encode = timed(lambda: model.encode_views(imgs), args.runs)
            p, t_score = timed(lambda: torch.softmax(model.logits_from_embedding(model.fuse(z)), -1), args.runs)
            rows, t_e2e = timed(lambda: predict([str(scan)], model), args.runs)
        assert abs(float(p.sum()) - 1) < 1e-4 and not rows[0]["error"]
        report["models"][name] = {
            "params_m": round(sum(q.numel() for q in model.clip.parameters()) / 1e6, 2),
            "model_load_s": round(load_model_s, 3),
            "load_s": round(t_load, 4), "render_s": round(t_render, 4), "encode_s": round(t_encode, 4),
            "score_s": round(t_score, 5), "stages_total_s": round(t_load + t_render + t_encode + t_score, 4),
            "predict_e2e_s": round(t_e2e, 4), "ratio_to_goal": round(t_e2e / GOAL_S, 3),
        }
    base = report["models"].get("ViT-B-32")
    if base:
        for r in report["models"].values():
            r["ratio_to_vit_b_32"] = round(r["predict_e2e_s"] / base["predict_e2e_s"], 3)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
