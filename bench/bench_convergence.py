"""Convergence of L_mc + L_mt vs image-text InfoNCE vs cross-entropy on the same data, split and seeds.

For each arm and seed the trainer runs E epochs, evaluating after every epoch; we report the first epoch
and the training seconds (rendering excluded: the cache is warmed once) at which held-out-subject accuracy
reaches --target, plus the final accuracy, as mean and spread over seeds. Accuracy is the nearest
class-centroid accuracy (``--proto-eval``), the one classifier every arm can use (L_mc + L_mt alone never
trains the text side, so its zero-shot text accuracy would not be a fair measure); the zero-shot accuracy
is reported too, and so is the embedding spread (0 = collapsed to one point). Accuracy is measured on the
run's validation subjects, which no arm selects on here (every arm runs all epochs; the trainer's collapse
and chance stops are off so that a collapsing arm is measured, not aborted). ``mc+mt`` is the trainer's
L_mc + L_mt (batch-centred), ``mc+mt-plain`` the uncentred formulas (``--no-loss-center``).

    python bench/bench_convergence.py --data data/synth-bu3dfe-40 --seeds 0,1,2 --epochs 8
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARMS = {"mc+mt": "mc=1,mt=1", "mc+mt-plain": "mc=1,mt=1", "infonce": "clip=1", "ce": "ce=1"}
ARM_OPTIONS = {"mc+mt-plain": ["--no-loss-center"]}


def run(args: list[str]) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    p = subprocess.run([sys.executable, "-m", "affectvlm.train", *args], cwd=None, env=env, capture_output=True,
                       text=True)
    if p.returncode:
        raise SystemExit(p.stderr[-4000:])
    out = Path(args[args.index("--out") + 1])
    return [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "epoch"]


def stats(xs: list[float | None]) -> dict:
    ok = [x for x in xs if x is not None]
    return {"mean": round(statistics.mean(ok), 4) if ok else None,
            "stdev": round(statistics.stdev(ok), 4) if len(ok) > 1 else 0.0,
            "reached": f"{len(ok)}/{len(xs)}"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data")
    ap.add_argument("--layout", default="bu3dfe")
    ap.add_argument("--model", default="AffectVLM-Tiny")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--target", type=float, default=0.8)
    ap.add_argument("--intensities", default="3,4")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--subjects", type=int, default=10)
    ap.add_argument("--extra", default="", help="more trainer options, space separated")
    ap.add_argument("--arms", default=",".join(ARMS), help="comma-separated subset of " + ",".join(ARMS))
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-conv-"))
    try:
        if a.data:
            data = Path(a.data)
        else:
            sys.path.insert(0, str(REPO / "tests"))
            from test_train import write_tiny_bu3dfe

            data = write_tiny_bu3dfe(tmp / "data", n_subjects=a.subjects)
        seeds = [int(s) for s in a.seeds.split(",")]
        res: dict = {"target": a.target, "epochs": a.epochs, "seeds": seeds, "data": str(data), "arms": {}}
        t_all = time.perf_counter()
        for arm in a.arms.split(","):
            losses = ARMS[arm]
            per_seed = []
            for seed in seeds:
                ep = run(["--data", str(data), "--layout", a.layout, "--model", a.model, "--epochs", str(a.epochs),
                          "--batch-size", str(a.batch_size), "--lr", str(a.lr), "--losses", losses,
                          "--seed", str(seed), "--intensities", a.intensities, "--no-neutral", "--proto-eval",
                          "--no-progress", "--cache-dir", str(tmp / "cache"), "--out", str(tmp / f"{arm}-{seed}"),
                          "--collapse-spread", "0", "--chance-epochs", "0", *ARM_OPTIONS.get(arm, []),
                          *a.extra.split()])
                secs, hit_ep, hit_s = 0.0, None, None
                for e in ep:
                    secs += e["epoch_s"]
                    if hit_ep is None and e.get("val_proto_accuracy", 0) >= a.target:
                        hit_ep, hit_s = e["epoch"] + 1, round(secs, 2)
                per_seed.append({"seed": seed, "epochs_to_target": hit_ep, "seconds_to_target": hit_s,
                                 "final_proto_acc": ep[-1].get("val_proto_accuracy"),
                                 "final_zeroshot_acc": ep[-1].get("val_accuracy"),
                                 "final_spread": ep[-1].get("spread"), "final_val_spread": ep[-1].get("val_spread"),
                                 "curve": [e.get("val_proto_accuracy") for e in ep]})
            res["arms"][arm] = {
                "losses": losses, "runs": per_seed,
                "epochs_to_target": stats([r["epochs_to_target"] for r in per_seed]),
                "seconds_to_target": stats([r["seconds_to_target"] for r in per_seed]),
                "final_proto_acc": stats([r["final_proto_acc"] for r in per_seed]),
                "final_zeroshot_acc": stats([r["final_zeroshot_acc"] for r in per_seed]),
                "final_spread": stats([r["final_spread"] for r in per_seed]),
            }
        base = (res["arms"].get("infonce", {}).get("final_proto_acc", {}).get("mean")) or 1e-9
        res["ratios_vs_infonce_final_acc"] = {k: round((v["final_proto_acc"]["mean"] or 0) / base, 3)
                                              for k, v in res["arms"].items()}
        res["wall_s"] = round(time.perf_counter() - t_all, 1)
        res["loadavg"] = os.getloadavg()
        print(json.dumps(res, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
