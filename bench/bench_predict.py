"""Time from a scan file to emotion probabilities, split into load / render / encode / score.

One BU-3DFE-sized textured VRML scan (about 8k vertices, 15k faces, written with tests/meshgen.py),
3 views at 224 px; each model is loaded once, every stage runs once to warm up and is then timed
``--runs`` times; the median reported. Models: AffectVLM-Test, AffectVLM-Tiny and ViT-B-32 (random init, the same
architecture and cost as the pretrained one). Also the end-to-end ``predict([path])`` call.
Prints JSON; ``ratio_to_goal`` is the end-to-end median over the 0.5 s goal (< 1 is within it) and
``ratio_to_vit_b_32`` compares each model with ViT-B-32 measured in the same run; ``mirror_ratio`` is the
end-to-end call (which averages each scan with its mirror image) over ``predict(..., mirror=False)``;
``--baseline-rev REV`` also times ``predict`` as it was at git revision REV: ``ratio_to_baseline``. A scan denser
than a model's ``max_vertices`` cap (e.g. ``--grid 200``, ~30k vertices) is also timed without the cap: ``cap_ratio``.
A model with ``score_pitches`` is also timed without them (its views only): ``score_pitches_ratio``.

``--throughput N``: instead, ``predict`` on N such scans (files in a folder, different expressions) with the
serial path (``workers=0``) and the pipelined one (reading, orienting and rendering on worker threads while
the batch before is encoded), alternately, after one warm-up call each; reports the marginal seconds per scan
(wall time of the call / N, the model already loaded), scans per second, and ``ratio`` = pipelined / serial
(<= 0.5 is the goal). The two paths must give the same rows. ``--baseline-rev REV`` also times ``predict`` as
it was at git revision REV (its ``affectvlm/predict.py`` over today's library) in the same run:
``ratio_to_baseline`` = pipelined / that.

    python bench/bench_predict.py [--runs 7] [--threads 2] [--models AffectVLM-Tiny,ViT-B-32]
    python bench/bench_predict.py --throughput 100 [--models default] [--workers 2] [--repeats 2] [--baseline-rev REV]

``--sharded N``: ``affectvlm predict`` on N scans as one process and under ``torchrun --nproc_per_node 2`` (real
processes, whole commands timed, start-up included); ``ratio`` = two processes / one, ``same_bytes`` compares the
two result files.

    python bench/bench_predict.py --sharded 60 [--models default]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
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
    from affectvlm.cli import positive_int

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=positive_int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--models", default="AffectVLM-Test,AffectVLM-Tiny,ViT-B-32")
    ap.add_argument("--grid", type=int, default=100, help="meshgen grid size (100: ~8k vertices)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--throughput", type=int, default=0, help="N scans: serial against pipelined predict")
    ap.add_argument("--workers", type=int, default=None, help="pipelined run's worker threads (default: predict's)")
    ap.add_argument("--repeats", type=positive_int, default=2, help="throughput: timed calls of each path")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--baseline-rev", default=None, help="also time predict.py of this git revision")
    ap.add_argument("--sharded", type=int, default=0, help="N scans: one process against two torchrun ranks")
    args = ap.parse_args(argv)
    if args.throughput:
        return throughput(args)
    if args.sharded:
        return sharded(args)

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
    baseline = _module_at(args.baseline_rev) if args.baseline_rev else None
    for name in args.models.split(","):
        t = time.perf_counter()
        model = load_model(name, device=args.device, cache=False)
        load_model_s = time.perf_counter() - t
        st = model.render
        scoring = st.for_scoring()  # what predict renders: the views, and each at the model's score_pitches
        with torch.no_grad():
            m, t_load = timed(lambda: load_mesh(scan), args.runs)
            imgs, t_render = timed(lambda: scoring.render([m], device=model.device), args.runs)
            z, t_encode = timed(lambda: model.encode_views(imgs), args.runs)
            p, t_score = timed(lambda: torch.softmax(model.logits_from_embedding(model.fuse(z)), -1), args.runs)
            rows, t_e2e = timed(lambda: predict([str(scan)], model), args.runs)
            plain, t_plain = timed(lambda: predict([str(scan)], model, mirror=False), args.runs)
            if baseline:
                base_rows, t_base = timed(lambda: baseline.predict([str(scan)], model), args.runs)
            capped = st.max_vertices and not st.texture and mesh.n_vertices > st.max_vertices
            if capped:
                model.render = replace(st, max_vertices=0)
                _, t_nocap = timed(lambda: predict([str(scan)], model), args.runs)
                model.render = st
            if st.score_pitches:
                model.render = replace(st, score_pitches=())
                _, t_nopitch = timed(lambda: predict([str(scan)], model), args.runs)
                model.render = st
        assert abs(float(p.sum()) - 1) < 1e-4 and not rows[0]["error"] and not plain[0]["error"]
        report["models"][name] = {
            "params_m": round(sum(q.numel() for q in model.clip.parameters()) / 1e6, 2),
            "model_load_s": round(load_model_s, 3),
            "load_s": round(t_load, 4), "render_s": round(t_render, 4), "encode_s": round(t_encode, 4),
            "score_s": round(t_score, 5), "stages_total_s": round(t_load + t_render + t_encode + t_score, 4),
            "predict_e2e_s": round(t_e2e, 4), "ratio_to_goal": round(t_e2e / GOAL_S, 3),
            "predict_no_mirror_s": round(t_plain, 4), "mirror_ratio": round(t_e2e / t_plain, 3),
        }
        if st.score_pitches:
            report["models"][name].update(views=len(scoring.views), score_pitches=list(st.score_pitches),
                                          predict_no_score_pitches_s=round(t_nopitch, 4),
                                          score_pitches_ratio=round(t_e2e / t_nopitch, 3))
        if capped:
            report["models"][name].update(max_vertices=st.max_vertices, predict_no_cap_s=round(t_nocap, 4),
                                          cap_ratio=round(t_e2e / t_nocap, 3))
        if baseline:
            report["models"][name].update(
                baseline_rev=args.baseline_rev, baseline_s=round(t_base, 4), ratio_to_baseline=round(t_e2e / t_base, 3),
                baseline_same_probabilities=all(base_rows[0][c] == pytest_approx(rows[0][c]) for c in model.classes))
    base = report["models"].get("ViT-B-32")
    if base:
        for r in report["models"].values():
            r["ratio_to_vit_b_32"] = round(r["predict_e2e_s"] / base["predict_e2e_s"], 3)
    print(json.dumps(report, indent=2))
    return 0


def pytest_approx(x: float | None, tol: float = 1e-5):
    """A value equal to anything within ``tol`` of ``x`` (the baseline renders a twice-canonicalised mesh)."""
    class Near(float):
        def __eq__(self, other: object) -> bool:
            return isinstance(other, float) and abs(other - float(self)) <= tol
    return None if x is None else Near(x)


def _module_at(rev: str):
    """``affectvlm/predict.py`` as it was at git revision ``rev``, imported over today's library."""
    import importlib.util
    import subprocess

    src = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:affectvlm/predict.py"], check=True,
                         capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp(prefix="bench_predict_rev_")) / "predict_baseline.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("predict_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["predict_baseline"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _write_scans(folder: Path, n: int, grid: int) -> None:
    from affectvlm.io.vrml import write_vrml
    from meshgen import face_like_mesh

    codes = ("AN", "DI", "FE", "HA", "NE", "SA", "SU")
    for i in range(n):  # a BU-3DFE-like batch: different people's expressions, textured VRML
        write_vrml(folder / f"F{i // 7:04d}_{codes[i % 7]}04WH_F3D.wrl", face_like_mesh(grid, smile=(i % 7) / 6))


def sharded(args: argparse.Namespace) -> int:
    import subprocess

    tmp = Path(tempfile.mkdtemp(prefix="bench_shard_"))
    (tmp / "scans").mkdir()
    _write_scans(tmp / "scans", args.sharded, args.grid)
    model = args.models.split(",")[0]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    cmd = ["-m", "affectvlm", "predict", str(tmp / "scans"), "--model", model, "--device", args.device,
           "--no-progress"]
    runs = {"one": [sys.executable, *cmd, "--out", str(tmp / "one.csv")],
            "two": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *cmd,
                    "--out", str(tmp / "two.csv")]}
    report: dict = {"scans": args.sharded, "model": model, "cpus": os.cpu_count(),
                    "load_avg_1min": round(os.getloadavg()[0], 2)}
    for name, argv in runs.items():
        t = time.perf_counter()
        r = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp)
        report[f"{name}_process_s" if name == "one" else "two_processes_s"] = round(time.perf_counter() - t, 2)
        assert r.returncode == 0, r.stderr[-2000:]
    report["ratio"] = round(report["two_processes_s"] / report["one_process_s"], 3)
    report["same_bytes"] = (tmp / "one.csv").read_bytes() == (tmp / "two.csv").read_bytes()
    print(json.dumps(report, indent=2))
    return 0


def throughput(args: argparse.Namespace) -> int:
    policy = os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # what `affectvlm predict` sets; empty: OpenMP's own
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from affectvlm.model import load_model
    from affectvlm.pipeline import default_workers
    from affectvlm.predict import predict

    tmp = Path(tempfile.mkdtemp(prefix="bench_predict_"))
    n = args.throughput
    _write_scans(tmp, n, args.grid)
    workers = default_workers() if args.workers is None else args.workers
    baseline = _module_at(args.baseline_rev) if args.baseline_rev else None
    report: dict = {"scans": n, "threads": torch.get_num_threads(), "workers": workers, "cpus": os.cpu_count(),
                    "omp_wait_policy": policy or "(OpenMP default)",
                    "load_avg_1min": round(os.getloadavg()[0], 2), "batch_size": args.batch_size,
                    "device": args.device, "models": {}}
    for name in args.models.split(","):
        t = time.perf_counter()
        model = load_model(None if name == "default" else name, device=args.device, cache=False)
        load_s = time.perf_counter() - t

        def run(w: int) -> list[dict]:
            if w < 0:
                return baseline.predict(str(tmp), model, batch_size=args.batch_size)
            return predict(str(tmp), model, workers=w, batch_size=args.batch_size)

        modes = (0, workers) + ((-1,) if baseline else ())
        times: dict[int, list[float]] = {w: [] for w in modes}
        cpu: dict[int, list[float]] = {w: [] for w in modes}
        rows: dict[int, list[dict]] = {}
        for w in modes:
            run(w)  # warm-up: compiled kernels, the face-frame network, allocator
        for _ in range(args.repeats):
            for w in modes:
                t, c = time.perf_counter(), time.process_time()
                rows[w] = run(w)
                times[w].append(time.perf_counter() - t)
                cpu[w].append(time.process_time() - c)
        assert len(rows[0]) == n and not any(r["error"] for r in rows[0])
        same = all(a == b for a, b in zip(rows[0], rows[workers]))
        serial, piped = min(times[0]), min(times[workers])
        report["models"][name] = {
            "model_load_s": round(load_s, 3),
            "serial_s": round(serial, 3), "pipelined_s": round(piped, 3),
            "serial_s_per_scan": round(serial / n, 4), "pipelined_s_per_scan": round(piped / n, 4),
            "serial_scans_per_s": round(n / serial, 2), "pipelined_scans_per_s": round(n / piped, 2),
            "ratio": round(piped / serial, 3), "same_rows": same,
            # CPU seconds per scan (all threads): the work; wall above it means waiting, below it parallel cores
            "serial_cpu_s_per_scan": round(min(cpu[0]) / n, 4), "pipelined_cpu_s_per_scan": round(min(cpu[workers]) / n, 4),
            "all_serial_s": [round(x, 3) for x in times[0]], "all_pipelined_s": [round(x, 3) for x in times[workers]],
        }
        if baseline:
            base = min(times[-1])
            report["models"][name].update({
                "baseline_rev": args.baseline_rev, "baseline_s": round(base, 3),
                "baseline_s_per_scan": round(base / n, 4), "ratio_to_baseline": round(piped / base, 3),
                "baseline_cpu_s_per_scan": round(min(cpu[-1]) / n, 4),
                "baseline_same_probabilities": all(
                    a.get(c) == pytest_approx(b.get(c)) for a, b in zip(rows[-1], rows[0]) for c in model.classes),
                "all_baseline_s": [round(x, 3) for x in times[-1]]})
    report["load_avg_1min_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
