"""Cross-generator table: train on one face model / expression family, test on another, in both directions.

    python bench/bench_transfer.py --data CORPUS [--data CORPUS2] --maps shade,normal,depth,lights \
        [--model default --model RUN/best] --out bench/out/transfer.json

CORPUS is a folder written by ``affectvlm synth --layout corpus`` (manifest.csv with ``family`` and
``face_model``). For each rendered map a ridge-regression probe on one frontal view (orientation detected, as
for user scans) is fitted on the TRAIN subjects of every (face model, family) source and scored on the TEST
subjects of every (face model, family) target, at the chosen levels (neutral always kept); chance (majority
class of the source) sits beside it. ``--model`` scores a checkpoint through the library on the same test
scans. Every number here is SYNTHETIC; a source scored on itself is in-distribution (marked ``in_dist``).
Prints JSON (and a markdown table with ``--markdown``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

CLASSES = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger")


def _rows(datas: list[str]) -> list[dict]:
    from affectvlm.errors import AffectVLMError
    from affectvlm.synth.corpus import read_corpus

    rows = []
    for d in datas:
        try:
            rows += read_corpus(d)
        except AffectVLMError as e:
            raise SystemExit(f"bench_transfer: --data {e}") from None
    return rows


def _features(rows: list[dict], map_name: str, size: int, batch: int = 32, crop: bool = False) -> np.ndarray:
    from affectvlm.io import load_mesh
    from affectvlm.render import View, render_views

    out = []
    for i in range(0, len(rows), batch):
        meshes = [load_mesh(r["path"], texture=False) for r in rows[i:i + batch]]
        img = render_views(meshes, views=(View(0),), size=size, texture=False, map=map_name, crop=crop)
        img = img[:, 0]
        if map_name not in ("normal", "lights"):  # grey maps: one channel holds it all
            img = img[:, :1]
        out.append(img.reshape(len(meshes), -1).numpy().astype(np.float32))
    return np.concatenate(out)


def _ridge(Xtr: np.ndarray, ytr: np.ndarray, lam: float) -> tuple:
    mu, sd = Xtr.mean(0), Xtr.std(0) + 1e-6
    Z = (Xtr - mu) / sd
    Y = np.eye(len(CLASSES))[ytr]
    K = Z @ Z.T
    alpha = np.linalg.solve(K + lam * len(K) * np.eye(len(K)) / 100, Y - Y.mean(0))
    return mu, sd, Z, alpha


def _predict(model: tuple, X: np.ndarray) -> np.ndarray:
    mu, sd, Z, alpha = model
    return (((X - mu) / sd) @ Z.T @ alpha).argmax(1)


def _acc(pred: np.ndarray, y: np.ndarray, lv: np.ndarray, levels: set[int]) -> dict:
    m = np.isin(lv, list(levels | {0}))
    out = {"acc": round(float((pred[m] == y[m]).mean()), 3) if m.any() else None, "n": int(m.sum())}
    for level in sorted(set(lv.tolist())):
        k = lv == level
        out[f"L{level}"] = round(float((pred[k] == y[k]).mean()), 3)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", action="append", required=True, help="corpus folder (repeat for several)")
    ap.add_argument("--maps", default="shade,normal,depth")
    ap.add_argument("--levels", default="3,4", help="levels in the headline accuracy (neutral always kept)")
    ap.add_argument("--train-levels", default="1,2,3,4")
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--crop", action="store_true", help="cut the face region around the landmarks first")
    ap.add_argument("--ridge", type=float, default=10.0)
    ap.add_argument("--model", action="append", default=[], help="checkpoint spec to score (repeatable)")
    ap.add_argument("--max-train", type=int, default=2500, help="cap on probe training scans per source")
    ap.add_argument("--out", default=None)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    levels = {int(x) for x in args.levels.split(",")}
    tr_levels = {int(x) for x in args.train_levels.split(",")} | {0}
    rows = [r for r in _rows(args.data) if r["intensity"] in (levels | tr_levels)]
    y = np.array([CLASSES.index(r["label"]) for r in rows])
    lv = np.array([r["intensity"] for r in rows])
    split = np.array([r["split"] for r in rows])
    src = np.array([f'{r["face_model"]}/{r["family"]}' for r in rows])
    sources = sorted(set(src))
    report: dict = {"data": args.data, "scans": len(rows), "levels": sorted(levels), "synthetic": True,
                    "probe": {}, "models": {}, "chance": {}}
    rng = np.random.default_rng(0)
    for s in sources:
        t = (src == s) & (split == "test") & np.isin(lv, list(levels | {0}))
        tr = (src == s) & (split == "train")
        counts = np.bincount(y[tr], minlength=len(CLASSES))
        report["chance"][s] = round(float((y[t] == counts.argmax()).mean()), 3) if t.any() else None
    for map_name in [m for m in args.maps.split(",") if m]:
        t0 = time.perf_counter()
        X = _features(rows, map_name, args.size, crop=args.crop)
        table = {}
        for s in sources:
            tr = np.flatnonzero((src == s) & (split == "train") & np.isin(lv, list(tr_levels)))
            if len(tr) > args.max_train:
                tr = np.sort(rng.choice(tr, args.max_train, replace=False))
            probe = _ridge(X[tr], y[tr], args.ridge)
            for t in sources:
                te = (src == t) & (split == "test")
                pred = _predict(probe, X[te])
                table[f"{s} -> {t}"] = dict(_acc(pred, y[te], lv[te], levels), in_dist=(s == t))
        report["probe"][map_name] = {"table": table, "seconds": round(time.perf_counter() - t0, 1)}
        print(json.dumps({"map": map_name, "done_s": round(time.perf_counter() - t0, 1)}), file=sys.stderr, flush=True)
    for spec in args.model:
        from affectvlm.io import load_mesh
        from affectvlm.model import load_model

        model = load_model(None if spec == "default" else spec)
        te = np.flatnonzero(split == "test")
        pred = np.empty(len(te), dtype=np.int64)
        classes = list(model.classes)
        for i in range(0, len(te), 32):
            idx = te[i:i + 32]
            meshes = [load_mesh(rows[j]["path"], texture=False) for j in idx]
            p = model.predict_proba(model.render.render(meshes)).detach().numpy()
            pred[i:i + len(idx)] = [CLASSES.index(classes[k]) if classes[k] in CLASSES else -1 for k in p.argmax(1)]
        res = {}
        for t in sources:
            m = src[te] == t
            res[t] = _acc(pred[m], y[te][m], lv[te][m], levels)
        report["models"][spec] = res
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    if args.markdown:
        print(_markdown(report))
    return 0


def _markdown(report: dict) -> str:
    lines = ["| source -> target | " + " | ".join(report["probe"]) + " | chance |",
             "|---|" + "---|" * (len(report["probe"]) + 1)]
    keys = next(iter(report["probe"].values()))["table"].keys() if report["probe"] else []
    for k in keys:
        cells = [str(report["probe"][m]["table"][k]["acc"]) for m in report["probe"]]
        tag = " (in-dist)" if next(iter(report["probe"].values()))["table"][k]["in_dist"] else ""
        lines.append(f"| {k}{tag} | " + " | ".join(cells) + f" | {report['chance'][k.split(' -> ')[1]]} |")
    for spec, res in report["models"].items():
        lines.append("")
        lines.append(f"model {spec}: " + ", ".join(f"{t} {r['acc']}" for t, r in res.items()))
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
