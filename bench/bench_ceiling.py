"""How far can a synthetic BU-3DFE tree's labels be read at all? Linear classifiers on what made each scan.

    python bench/bench_ceiling.py --data rb40 --rocketbox HEADBOX_DIR [--folds 5 --split-seed 0 --levels 3,4]
    python bench/bench_ceiling.py --data ictrb40 --facekit FACEKIT_DIR --rocketbox HEADBOX_DIR --expressions swapped

Regenerates the scans of a tree written by ``affectvlm synth --layout bu3dfe`` from its ``synth.json``, with the
face-model folders and ``--expressions``/``--mixes`` that command was given, checks that they are the tree's scans (its manifest, row by row), and
records for each scan the AU intensities drawn and its clean displacement from the subject's neutral face (before any
scanner nuisance: crop, resampling, noise, holes, pose). For each subject fold of the trainer's split (``affectvlm
train --fold F --folds K --split-seed S``) ridge classifiers fitted on the other folds' scans (every level) read the
fold's scans at ``--levels``:

- ``aus``: the AU vector (per AU the two sides' mean and difference);
- ``displacement``: per face model, every vertex's displacement (at most 4,000 vertices, a fixed sample).

The ridge strength is chosen on the training folds (each in turn held out), never on the test fold. Prints JSON:
per fold and as mean and standard deviation over folds, beside chance (the most frequent class of the fold). These
are ceilings for a learner that sees the geometry in perfect correspondence and without nuisances; they say whether a
tree's labels can be read, not how well our model reads them (``bench/bench_folds.py`` on the same tree and folds).
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)
MAX_VERTICES = 4000


def regenerate(tree: Path, models: dict, expressions: str = "own", mixes: int = 1) -> list[dict]:
    """Per scan of ``tree``: row (its manifest's), AU intensities and clean displacement (float32, flattened).
    ``models`` are the face models the folders make; ``expressions`` and ``mixes`` as ``affectvlm synth`` was given."""
    from affectvlm.errors import ConfigError
    from affectvlm.synth.bulayout import bu3dfe_scans, read_config
    from affectvlm.synth.facemodel import apply_aus
    from affectvlm.synth.transfer import expression_models

    cfg, info = read_config(tree)
    models = expression_models(models, expressions, mixes, cfg.seed)
    if info.get("layout") != "bu3dfe":
        raise ConfigError(f"{tree}: a {info.get('layout')} tree; this bench reads bu3dfe trees")
    if "sculpt" in cfg.families or cfg.style.probability > 0:
        raise ConfigError(f"{tree}: sculpted emotion targets or style jitter move the face beyond its AU draws")
    want = sorted(info.get("face_models", {}))
    if not want or not set(want) <= set(models):
        raise ConfigError(f"{tree} was made from the face models {want}; the folders and --expressions given make "
                          f"{sorted(models)}")
    models = {n: models[n] for n in want}
    with open(tree / "manifest.csv", newline="", encoding="utf-8") as fh:
        manifest = list(csv.DictReader(fh))
    rng = np.random.default_rng(0)
    keep = {n: np.sort(rng.choice(m.n_vertices, min(m.n_vertices, MAX_VERTICES), replace=False))
            for n, m in sorted(models.items())}
    neutral: dict[tuple[str, str], np.ndarray] = {}
    out = []
    for i, (row, scan) in enumerate(bu3dfe_scans(cfg, models)):
        m = manifest[i] if i < len(manifest) else None
        if m is None or [m["path"], m["label"], m["subject"], int(m["intensity"])] != [row[0], row[1], row[2], row[3]]:
            raise ConfigError(f"{tree}: scan {i} regenerates as {row[0]} but the manifest has "
                              f"{m and m['path']}: the tree was made by another version or with other options")
        model = models[row[8]]
        key = (row[8], row[2])
        if key not in neutral:
            neutral[key] = model.identity(np.asarray(scan.identity, np.float64))
        d = apply_aus(model, neutral[key], scan.aus) - neutral[key]
        out.append({"label": row[1], "subject": row[2], "level": int(row[3]), "model": row[8], "aus": scan.aus,
                    "d": d[keep[row[8]]].astype(np.float32).ravel()})
    if len(out) != len(manifest):
        raise ConfigError(f"{tree}: {len(out)} scans regenerate, the manifest has {len(manifest)} rows")
    return out


def au_features(rows: list[dict]) -> np.ndarray:
    """Per scan and AU drawn anywhere in ``rows``: the two sides' mean and difference (0 where not drawn)."""
    names = sorted({a for r in rows for a in r["aus"]})

    def sides(aus: dict, au: str) -> tuple[float, float]:
        left, right = aus.get(au, (0.0, 0.0))
        return (left + right) / 2, left - right

    return np.array([[f for a in names for f in sides(r["aus"], a)] for r in rows], np.float64)


def ridge_fit(X: np.ndarray, Y: np.ndarray, alpha: float):
    """Ridge on standardised features, one-hot targets; dual form when samples are fewer than features."""
    mu, sd = X.mean(0), X.std(0) + 1e-8
    Z = (X - mu) / sd
    ym = Y.mean(0)
    if Z.shape[0] < Z.shape[1]:
        W = Z.T @ np.linalg.solve(Z @ Z.T + alpha * np.eye(len(Z)), Y - ym)
    else:
        W = np.linalg.solve(Z.T @ Z + alpha * np.eye(Z.shape[1]), Z.T @ (Y - ym))
    return lambda Xt: ((Xt - mu) / sd) @ W + ym


def read_fold(X: np.ndarray, y: np.ndarray, fold: np.ndarray, groups: np.ndarray, test: int,
              score: np.ndarray, n_classes: int) -> float:
    """Accuracy on the ``score`` scans of fold ``test``; each group (face model) gets its own classifier, its ridge
    strength chosen on the other folds."""
    hits = []
    Y = np.eye(n_classes)[y]
    for g in np.unique(groups):
        tr = (fold != test) & (groups == g)
        te = (fold == test) & (groups == g) & score
        if not te.any():
            continue
        inner = [f for f in np.unique(fold[tr])]

        def val(alpha: float) -> float:
            acc = []
            for f in inner:
                a, b = tr & (fold != f), tr & (fold == f)
                acc.append(float((ridge_fit(X[a], Y[a], alpha)(X[b]).argmax(1) == y[b]).mean()))
            return statistics.mean(acc)

        alpha = max(ALPHAS, key=val) if len(inner) > 1 else 1.0
        hits += (ridge_fit(X[tr], Y[tr], alpha)(X[te]).argmax(1) == y[te]).tolist()
    return sum(hits) / len(hits) if hits else float("nan")


def ceiling(rows: list[dict], folds: int, split_seed: int, levels: set[int]) -> dict:
    """Per feature set the accuracy on each fold's scans at ``levels`` (mean, sd, per fold), and chance."""
    from affectvlm.datasets import subject_folds

    classes = sorted({r["label"] for r in rows})
    y = np.array([classes.index(r["label"]) for r in rows])
    folds_of = subject_folds((r["subject"] for r in rows), folds, split_seed)
    fold = np.array([folds_of[r["subject"]] for r in rows])
    score = np.array([r["level"] in levels for r in rows])
    if not score.any():  # every fold's accuracy would be NaN
        have = sorted({r["level"] for r in rows})
        raise SystemExit(f"bench_ceiling: no scan at --levels {sorted(levels)}; the tree has levels {have}")
    width = max(len(r["d"]) for r in rows)
    disp = np.zeros((len(rows), width), np.float32)  # each face model its own vertices, zero-padded
    for i, r in enumerate(rows):
        disp[i, :len(r["d"])] = r["d"]
    features = {"aus": (au_features(rows), np.zeros(len(rows), int)),
                "displacement": (disp, np.array([r["model"] for r in rows]))}
    per: dict[str, list[float]] = {k: [] for k in features}
    chance = []
    for f in range(folds):
        te = (fold == f) & score
        chance.append(float(np.bincount(y[te], minlength=len(classes)).max() / te.sum()) if te.any() else float("nan"))
        for name, (X, groups) in features.items():
            per[name].append(round(read_fold(X, y, fold, groups, f, score, len(classes)), 4))
    summary = {k: {"mean": round(statistics.mean(v), 4), "sd": round(statistics.stdev(v), 4) if len(v) > 1 else None,
                   "folds": v} for k, v in per.items()}
    return {"scans": len(rows), "classes": classes, "levels": sorted(levels), "folds": folds,
            "split_seed": split_seed, **summary,
            "chance": {"mean": round(statistics.mean(chance), 4), "folds": [round(c, 4) for c in chance]}}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="a tree written by affectvlm synth --layout bu3dfe")
    for opt in ("facekit", "makehuman", "facshuman", "rocketbox", "gltf", "faceunits"):
        ap.add_argument(f"--{opt}", default=None, help="the folder affectvlm synth was given")
    ap.add_argument("--makehuman-units", default=None)
    ap.add_argument("--expressions", default="own",
                    help="as affectvlm synth was given (own, swapped, both, mixed, procedural); the tree's own face "
                         "models are kept, as its --face-models did")
    ap.add_argument("--mixes", type=int, default=1, help="as affectvlm synth was given (mixed, procedural)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--levels", default="3,4", help="levels scored (training uses every level)")
    a = ap.parse_args(argv)
    from affectvlm.errors import AffectVLMError
    from affectvlm.synth.facemodel import load_face_models

    t0 = time.perf_counter()
    try:
        models = load_face_models(a.facekit, a.makehuman, a.facshuman, makehuman_units=a.makehuman_units,
                                  faceunits=a.faceunits, rocketbox=a.rocketbox, gltf=a.gltf)
        rows = regenerate(Path(a.data), models, a.expressions, a.mixes)
    except AffectVLMError as e:
        raise SystemExit(f"bench_ceiling: {e}")
    report = {"bench": "ceiling", "data": a.data, "face_models": sorted(models),
              **ceiling(rows, a.folds, a.split_seed, {int(x) for x in a.levels.split(",")}),
              "wall_s": round(time.perf_counter() - t0, 1)}
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
