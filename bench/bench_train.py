"""Training throughput: samples/s with a cold vs warm render cache, and with 1 vs 2 processes (torchrun, gloo
on CPU / nccl on GPU). Prints one JSON object; ratios compare against the 1-process warm-cache baseline
measured in the same run.

    python bench/bench_train.py [--data ROOT --layout bu3dfe] [--model AffectVLM-Tiny] [--epochs 2]

Without --data a procedural BU-3DFE-layout set (tests/meshgen faces) is written to a temp folder.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_data(root: Path, subjects: int) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from test_train import write_tiny_bu3dfe

    return write_tiny_bu3dfe(root, n_subjects=subjects, intensities=(1, 2, 3, 4))


def run(args: list[str], nproc: int) -> tuple[float, list[dict]]:
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // nproc)))
    cmd = [sys.executable, "-m", "affectvlm.train", *args] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
        "-m", "affectvlm.train", *args]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=None, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(p.stderr[-4000:])
    out = Path(args[args.index("--out") + 1])
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return wall, [r for r in recs if r["kind"] == "epoch"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data")
    ap.add_argument("--layout", default="bu3dfe")
    ap.add_argument("--model", default="AffectVLM-Tiny")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--subjects", type=int, default=10)
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--folds", type=int, default=5, help="subject folds of the data (5; a tree of 4 subjects needs 2-4)")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    try:
        data = Path(a.data) if a.data else make_data(tmp / "data", a.subjects)
        cache = tmp / "cache"
        base = ["--data", str(data), "--layout", a.layout, "--model", a.model, "--epochs", str(a.epochs),
                "--batch-size", str(a.batch_size), "--folds", str(a.folds), "--no-progress", "--cache-dir", str(cache)]
        if a.image_size:
            base += ["--image-size", str(a.image_size)]
        res = {}
        for name, nproc in (("cold_1proc", 1), ("warm_1proc", 1), ("warm_2proc", 2)):
            wall, ep = run(base + ["--out", str(tmp / name)], nproc)
            res[name] = {"wall_s": round(wall, 2), "render_s": ep[0]["render_s"],
                         "samples_per_s": round(sum(e["samples_per_s"] for e in ep) / len(ep), 2),
                         "epoch_s": [e["epoch_s"] for e in ep], "cache": ep[0]["cache"]}
        b = res["warm_1proc"]
        res["ratios"] = {
            "cold_vs_warm_wall": round(res["cold_1proc"]["wall_s"] / b["wall_s"], 3),
            "cold_vs_warm_samples_per_s": round(res["cold_1proc"]["samples_per_s"] / b["samples_per_s"], 3),
            "2proc_vs_1proc_samples_per_s": round(res["warm_2proc"]["samples_per_s"] / b["samples_per_s"], 3),
        }
        res["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "loadavg": os.getloadavg()}
        print(json.dumps(res, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
