"""Are synthetic expressions learnable from geometry? A linear probe on rendered shaded views.

    python bench/probe_synth.py --data data/synth-bu3dfe-40 --intensities 3,4
    python bench/probe_synth.py --data TREE --splits RUN/splits.json --train-intensities all --ridge auto

Reads a labelled set through affectvlm.io.load_mesh (the real loader), renders one frontal untextured view per
scan with affectvlm.render.render_views (orientation detected, as for user scans), and fits a ridge-regression
classifier on the train subjects' pixels; reports accuracy on the held-out test (and val) subjects, against the
chance baseline of the same run. The split is the synthetic tree's manifest.csv, or with ``--splits`` a trainer
run's splits.json (any dataset layout; the floor beside that run's figure). ``--ridge auto`` chooses the strength
on the validation subjects. Prints JSON.
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np


RIDGES = (0.1, 1.0, 10.0, 100.0, 1000.0)


def _rows(root: Path, splits: str | None, layout: str) -> list[dict]:
    """{path (relative to root, or absolute), label, intensity, split} per scan: the manifest's split, or the
    subjects of a trainer run's splits.json (scans of other subjects left out)."""
    if splits is None:
        return list(csv.DictReader((root / "manifest.csv").open()))
    from affectvlm.datasets import load_dataset

    part = {s: k for k, subjects in json.loads(Path(splits).read_text())["subjects"].items() for s in subjects}
    return [{"path": x.path, "label": x.label, "intensity": x.intensity or 0, "split": part[x.subject]}
            for x in load_dataset(str(root), layout).samples if x.frame_ids is None and x.subject in part]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--intensities", default="3,4", help="expressive levels kept (neutral always kept)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--train-intensities", default=None,
                    help="levels fitted on the train subjects, e.g. all (default: --intensities)")
    ap.add_argument("--ridge", default="10", help="ridge strength, or auto: chosen on the validation subjects")
    ap.add_argument("--splits", default=None, help="a trainer run's splits.json (default: the tree's manifest.csv)")
    ap.add_argument("--layout", default="auto", help="with --splits: the dataset layout")
    args = ap.parse_args(argv)

    from affectvlm.io import load_mesh
    from affectvlm.render import View, render_views

    root = Path(args.data)
    if not root.is_dir():
        ap.error(f"--data {root}: no such folder")
    if args.splits is None and not (root / "manifest.csv").is_file():
        ap.error(f"--data {root}: no manifest.csv (a tree written by `affectvlm synth`); give a trainer run's "
                 "--splits for another layout")
    if args.splits is not None and not Path(args.splits).is_file():
        ap.error(f"--splits {args.splits}: no such file (a trainer run's splits.json)")
    scored = {int(x) for x in args.intensities.split(",")} | {0}
    fitted: set[int] | None = scored  # None: every level
    if args.train_intensities == "all":
        fitted = None
    elif args.train_intensities is not None:
        fitted = {int(x) for x in args.train_intensities.split(",")} | {0}
    rows = _rows(root, args.splits, args.layout)
    rows = [r for r in rows if (levels := fitted if r["split"] == "train" else scored) is None
            or int(r["intensity"]) in levels]
    classes = sorted({r["label"] for r in rows})
    have = {r["split"] for r in rows}
    if "train" not in have or "test" not in have or len(classes) < 2:  # a probe of nothing reads as chance, falsely
        raise SystemExit(f"probe_synth: {root}: needs train and test scans of at least two classes (splits: "
                         f"{', '.join(sorted(have)) or 'none'}; classes: {', '.join(classes) or 'none'})")
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

    def fit(lam: float) -> np.ndarray:
        alpha = np.linalg.solve(K + lam * len(K) * np.eye(len(K)) / 100, Y[tr] - Y[tr].mean(0))
        return (Z @ Z[tr].T @ alpha).argmax(1)

    val = split == "val"
    if args.ridge == "auto":
        if not val.any():
            raise SystemExit("probe_synth: --ridge auto needs validation subjects")
        lam = max(RIDGES, key=lambda a: (float((fit(a)[val] == y[val]).mean()), a))
    else:
        lam = float(args.ridge)
    pred = fit(lam)
    out = {"data": str(root), "scans": len(rows), "classes": classes, "features_s": round(t_feat, 1),
           "ridge": lam, "split_from": args.splits or "manifest.csv"}
    for s in ("train", "val", "test"):
        m = split == s
        if m.any():
            out[f"acc_{s}"] = round(float((pred[m] == y[m]).mean()), 3)
            out[f"n_{s}"] = int(m.sum())
    expressive = (split == "test") & (np.array([int(r["intensity"]) for r in rows]) > 0)
    if expressive.any():  # the test scans at the expressive levels only, as the trainer's levels 3-4 figure counts
        out["acc_test_expressive"] = round(float((pred[expressive] == y[expressive]).mean()), 3)
    counts = np.bincount(y[tr], minlength=len(classes))
    test = split == "test"
    out["chance_majority"] = round(float((y[test] == counts.argmax()).mean()), 3)
    # no ratio where the training majority class is absent from the test scans: it would divide by zero
    out["test_over_chance"] = round(out["acc_test"] / out["chance_majority"], 2) if out["chance_majority"] else None
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
