"""A run's errors broken down by what the scanner did: ``affectvlm predict`` rows of a synthetic tree joined with the
tree's ``draws.csv`` (each scan's nuisance draws, written by ``affectvlm synth`` with the sampler's layouts).

    affectvlm predict TREE/F0001 TREE/M0004 ... --model RUN/best --out pred.csv
    python bench/bench_draws.py --data TREE --pred pred.csv [--pred pred2.csv ...] [--intensities 3,4]

A 4D tree's sequence rows are scored against the sequence's label with its first frame's draws (a sequence is one
scanner session); its level is the apex's.

Categorical draws (crop, units, whether holes were cut, a bridged mouth, eyeballs) are grouped as they are; numeric
ones (vertex count, noise, the pose's angle) by quartile of the scored scans. Each group reports its scans, its
accuracy and ``ratio`` = its accuracy / the accuracy over every scored scan (the baseline of the same run). An
observational breakdown: the draws are independent per scan, but groups are small, so read a group's gap against its
``n``. SYNTHETIC. Prints JSON.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

CATEGORICAL = {"crop": str, "units": str, "holes": lambda v: "yes" if int(v) > 0 else "no",
               "closed_mouth": lambda v: "yes" if int(v) else "no", "eyeballs": lambda v: "yes" if int(v) else "no"}
NUMERIC = {"vertices": lambda d: float(d["vertices"]), "noise_mm": lambda d: float(d["noise_mm"]),
           "pose_deg": lambda d: float(np.sqrt(sum(float(d[k]) ** 2 for k in ("yaw", "pitch", "roll"))))}


def _read(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def joined(tree: Path, preds: list[Path], intensities: set[int] | None) -> list[dict]:
    """One dict per scored scan of ``tree`` (``ok``, then the draws' columns), from the predict rows; a scan scored
    twice counts twice (two runs); rows of files not in the tree, or without a label, are an error."""
    if not (tree / "draws.csv").is_file():
        raise SystemExit(f"{tree}: no draws.csv (the sampler's layouts of `affectvlm synth` write one)")
    manifest = {r["path"]: r for r in _read(tree / "manifest.csv")}
    draws = {r["path"]: r for r in _read(tree / "draws.csv")}
    # a 4D tree's sequences: a bu4dfe manifest lists frames (sequence, sequence_label), a corpus4d one the folders;
    # a sequence takes its first frame's draws (its frames share one scanner session)
    for r in list(manifest.values()):
        if r.get("sequence"):
            seq = manifest.setdefault(r["sequence"], {"label": r["sequence_label"], "intensity": r["intensity"]})
            seq["intensity"] = str(max(int(seq["intensity"]), int(r["intensity"])))
    for path, d in list(draws.items()):
        if (folder := path.rsplit("/", 1)[0]) in manifest:
            draws.setdefault(folder, d)
    out = []
    for pred in preds:
        for row in _read(pred):
            if row.get("frame") not in (None, "", "sequence"):  # a sequence's own row has frame "sequence"
                continue
            p = Path(row["file"])
            rel = p.relative_to(tree).as_posix() if p.is_absolute() and p.is_relative_to(tree) else \
                next((m for m in manifest if p.as_posix().endswith("/" + m) or p.as_posix() == m), None)
            if rel is None or rel not in manifest or rel not in draws:
                raise SystemExit(f"{pred}: {row['file']} is not a scan of {tree}")
            truth = manifest[rel]
            if intensities is not None and int(truth["intensity"]) not in intensities:
                continue
            if not row.get("label"):
                raise SystemExit(f"{pred}: {row['file']} has no predicted label ({row.get('error') or 'failed'})")
            out.append({"ok": row["label"] == truth["label"], **draws[rel]})
    return out


def breakdown(rows: list[dict]) -> dict:
    """Accuracy overall and per group of each draw (see the module doc)."""
    if not rows:
        raise SystemExit("no scored scans to break down")
    acc = float(np.mean([r["ok"] for r in rows]))

    def groups(key_of) -> dict:
        g: dict[str, list[bool]] = {}
        for r in rows:
            g.setdefault(key_of(r), []).append(r["ok"])
        return {k: {"n": len(v), "accuracy": round(float(np.mean(v)), 4),
                    "ratio": round(float(np.mean(v)) / acc, 4) if acc else None} for k, v in sorted(g.items())}

    out: dict = {"n": len(rows), "accuracy": round(acc, 4)}
    for col, f in CATEGORICAL.items():
        out[col] = groups(lambda r, col=col, f=f: f(r[col]))
    for name, f in NUMERIC.items():
        edges = np.quantile([f(r) for r in rows], [0.25, 0.5, 0.75])
        out[name] = {"quartile_edges": [round(float(e), 4) for e in edges],
                     **groups(lambda r, f=f, e=edges: f"q{int(np.searchsorted(e, f(r), side='right')) + 1}")}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True,
                    help="a tree written by `affectvlm synth` (bu3dfe, bu4dfe, corpus, corpus4d)")
    ap.add_argument("--pred", action="append", required=True, help="a CSV written by `affectvlm predict --out`")
    ap.add_argument("--intensities", default=None, help="count only these levels, e.g. 3,4 (default: every scan)")
    a = ap.parse_args(argv)
    levels = {int(x) for x in a.intensities.split(",")} if a.intensities else None
    tree = Path(a.data).resolve()
    result = breakdown(joined(tree, [Path(p) for p in a.pred], levels))
    print(json.dumps({"data": str(tree), "pred": a.pred, "intensities": sorted(levels) if levels else "all",
                      **result}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
