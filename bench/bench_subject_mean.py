"""``affectvlm predict`` with and without each subject's mean (``--subject-mean auto`` against ``none``) on named trees.

    python bench/bench_subject_mean.py TREE [TREE ...] [--model SPEC] [--levels 3,4] [--out-dir DIR]

Each TREE is a BU-3DFE- or BU-4DFE-layout folder (e.g. ``affectvlm synth --layout bu3dfe|bu4dfe``). Both runs are
``affectvlm predict TREE`` with every other option at its default; the rows are read against the labels the names
declare (``affectvlm.datasets.declared_class``): scans at the ``--levels`` of BU-3DFE's codes (neutral scans left
out), pooled sequence rows. Prints JSON: per tree the two accuracies, the gain and their ratio; then the means over
the trees. Synthetic trees made by this project are in-generator for the face models and sculptors the model trained
on: say so when quoting.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_LEVEL = re.compile(r"_[A-Z]{2}(\d\d)[A-Z]{2}_F3D", re.IGNORECASE)


def counted(rows: list[dict], levels: set[int]) -> list[tuple[str, str]]:
    """(declared class, predicted label) of each counted row: BU-3DFE scans at ``levels``, pooled sequence rows."""
    from affectvlm.datasets import declared_class

    pairs = []
    for r in rows:
        if r.get("error"):
            continue
        if r.get("frame") in ("", None):
            m = _LEVEL.search(Path(str(r["file"])).name)
            if not m or int(m.group(1)) not in levels:
                continue
        elif r.get("frame") != "sequence":
            continue
        truth = declared_class(str(r["file"]))
        if truth is not None:
            pairs.append((truth, str(r["label"])))
    return pairs


def accuracy(pairs: list[tuple[str, str]]) -> tuple[float | None, int]:
    """(accuracy, n) of :func:`counted`'s pairs."""
    return (round(sum(t == y for t, y in pairs) / len(pairs), 4) if pairs else None), len(pairs)


def score(rows: list[dict], levels: set[int]) -> tuple[float | None, int]:
    """(accuracy, n) of the counted rows (:func:`counted`)."""
    return accuracy(counted(rows, levels))


def predict_rows(tree: str, model: str | None, mode: str | None, out: Path) -> list[dict]:
    """``affectvlm predict tree`` as JSON rows; ``mode`` sets ``--subject-mean`` (None: predict's default)."""
    from affectvlm import cli

    if not Path(tree).is_dir():  # predict would score it as one failed row, and the bench report n 0
        raise SystemExit(f"{tree}: no such folder (a BU-3DFE- or BU-4DFE-layout tree)")
    argv = ["predict", tree, "--no-progress", "--out", str(out)]
    if mode:
        argv += ["--subject-mean", mode]
    if model:
        argv += ["--model", model]
    with contextlib.redirect_stderr(io.StringIO()):
        rc = cli.main(argv)
    if rc not in (0, 1):  # 1: some inputs failed, reported in their rows
        raise SystemExit(f"affectvlm predict {tree} exited {rc}")
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trees", nargs="+", help="BU-3DFE- or BU-4DFE-layout folders")
    ap.add_argument("--model", default=None, help="model spec (default: the embedded model)")
    ap.add_argument("--levels", default="3,4", help="BU-3DFE intensity levels counted (default 3,4)")
    ap.add_argument("--out-dir", default=None, help="keep the predict JSON files here (default: a temporary folder)")
    a = ap.parse_args(argv)
    levels = {int(x) for x in a.levels.split(",") if x.strip()}
    names = [Path(t).name for t in a.trees]
    if len(set(names)) != len(names):
        ap.error("two trees share a folder name; rename one (the name is the tree's key in the report)")
    missing = [t for t in a.trees if not Path(t).is_dir()]
    if missing:
        ap.error(f"{missing[0]}: no such folder (a BU-3DFE- or BU-4DFE-layout tree)")
    report: dict = {"bench": "subject_mean", "model": a.model or "default", "levels": sorted(levels), "trees": {}}
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(a.out_dir or tmp)
        where.mkdir(parents=True, exist_ok=True)
        for tree in a.trees:
            name = Path(tree).name
            base, n = score(predict_rows(tree, a.model, "none", where / f"{name}.none.json"), levels)
            new, _ = score(predict_rows(tree, a.model, "auto", where / f"{name}.auto.json"), levels)
            report["trees"][name] = {"n": n, "without": base, "with": new,
                                     "gain": None if base is None or new is None else round(new - base, 4),
                                     "ratio": round(new / base, 4) if base and new is not None else None}
    scored = [t for t in report["trees"].values() if t["gain"] is not None]
    if scored:
        report["mean_without"] = round(sum(t["without"] for t in scored) / len(scored), 4)
        report["mean_with"] = round(sum(t["with"] for t in scored) / len(scored), 4)
        report["mean_gain"] = round(report["mean_with"] - report["mean_without"], 4)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
