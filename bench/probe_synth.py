"""Are synthetic expressions learnable from geometry? A linear probe on rendered shaded views.

    python bench/probe_synth.py --data data/synth-bu3dfe-40 --intensities 3,4

Reads a synthetic BU-3DFE-layout set through affectvlm.io.load_mesh (the real loader), renders one frontal
untextured view per scan with affectvlm.render.render_views (orientation detected, as for user scans), and fits
a ridge-regression classifier on the manifest's train subjects; reports accuracy on the held-out test (and val)
subjects, against the chance baseline of the same run. Prints JSON.
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--intensities", default="3,4", help="expressive levels kept (neutral always kept)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--ridge", type=float, default=10.0)
    args = ap.parse_args(argv)

    from affectvlm.io import load_mesh
    from affectvlm.render import View, render_views

    root = Path(args.data)
    keep = {int(x) for x in args.intensities.split(",")} | {0}
    rows = [r for r in csv.DictReader((root / "manifest.csv").open()) if int(r["intensity"]) in keep]
    classes = sorted({r["label"] for r in rows})
    t0 = time.perf_counter()
    feats = []
    for i in range(0, len(rows), 32):
        meshes = [load_mesh(root / r["path"], texture=False) for r in rows[i:i + 32]]
        img = render_views(meshes, views=(View(0),), size=args.size, texture=False)
        feats.append(img[:, 0, 0].reshape(len(meshes), -1).numpy())
    X = np.concatenate(feats).astype(np.float64)
    t_feat = time.perf_counter() - t0
    y = np.array([classes.index(r["label"]) for r in rows])
    split = np.array([r["split"] for r in rows])
    tr = split == "train"
    mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-6
    Z = (X - mu) / sd
    Y = np.eye(len(classes))[y]
    # dual ridge: W = Z^T (Z Z^T + lam I)^-1 Y, cheap when samples < features
    K = Z[tr] @ Z[tr].T
    alpha = np.linalg.solve(K + args.ridge * len(K) * np.eye(len(K)) / 100, Y[tr] - Y[tr].mean(0))
    pred = (Z @ Z[tr].T @ alpha).argmax(1)
    out = {"data": str(root), "scans": len(rows), "classes": classes, "features_s": round(t_feat, 1)}
    for s in ("train", "val", "test"):
        m = split == s
        if m.any():
            out[f"acc_{s}"] = round(float((pred[m] == y[m]).mean()), 3)
            out[f"n_{s}"] = int(m.sum())
    counts = np.bincount(y[tr], minlength=len(classes))
    test = split == "test"
    out["chance_majority"] = round(float((y[test] == counts.argmax()).mean()), 3) if test.any() else None
    out["test_over_chance"] = round(out.get("acc_test", 0) / max(out["chance_majority"] or 1e-9, 1e-9), 2)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
