"""Accuracy on expression recipe books other than ours: ICT-FaceKit faces posed by each ``--recipes`` book.

    python bench/bench_recipes.py --facekit ../shared/ict-facekit/FaceXModel --recipes A.yaml --recipes B.yaml \\
        [--model default] [--subjects 8] [--seed 91] [--intensities 3,4] [--frames 24]

Each book (an ``affectvlm synth --recipes`` YAML: its AUs as ICT-FaceKit blendshape weights, its emotions as AU
weights; a book written as blendshape weights per emotion fits by giving each emotion one AU of its own) poses the
same new subjects (``affectvlm synth --layout bu3dfe``, neutral + ``--intensities``), and ``affectvlm predict``'s
rows are scored against the labels. The packaged book poses them too, in the same run, as the baseline: each book
reports ``ratio`` = its accuracy / the baseline's, plus its accuracy with the subjects' class balance matched per
folder (``predict --prior neutral=W --prior-by folder``, transductive), its accuracy through ``affectvlm predict``
with the CLI's defaults (``accuracy_defaults``: adapted to the set when it is large and varied enough, each scan
against its subject's neutral scan; transductive too) and its most common confusions.
With ``--frames N`` each book poses 4D sequences instead (``affectvlm synth --layout bu4dfe``: one per subject and
emotion, neutral -> apex -> neutral over N frames) and the pooled sequence rows are scored against the sequence's
emotion, as trained (``accuracy``) and through ``affectvlm predict``'s defaults (``accuracy_defaults``); the
class-balance column is left out.
SYNTHETIC: the faces, the blendshapes and the scanner model are this project's; only the recipes are not.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _truth(folder: Path, path_column: str, label_column: str) -> dict:
    """The set's manifest as resolved path -> label (a scan's ``path``/``label``, a sequence's ``sequence``/
    ``sequence_label``)."""
    return {(folder / r[path_column]).resolve(): r[label_column]
            for r in csv.DictReader((folder / "manifest.csv").open())}


def _accuracy(rows: list, labels: list) -> float:
    return round(sum(r["label"] == y for r, y in zip(rows, labels)) / len(rows), 4)


def _tally(rows: list, truth: dict, folder: Path) -> tuple[dict, list]:
    """Rows scored against ``truth``: ({n, errors, accuracy, confusions}, each row's true label)."""
    if not rows:
        raise SystemExit(f"nothing was scored in {folder}")
    labels = [truth[Path(r["file"]).resolve()] for r in rows]
    out = {"n": len(rows), "errors": sum(1 for r in rows if r["error"]), "accuracy": _accuracy(rows, labels)}
    wrong = Counter((y, r["label"]) for r, y in zip(rows, labels) if r["label"] != y)
    out["confusions"] = {f"{a}->{b}": n for (a, b), n in wrong.most_common(4)}
    return out, labels


def score(folder: Path, model: object, neutral_weight: float, model_spec: str | None = None) -> dict:
    """Accuracy of ``folder`` (a synthetic BU-3DFE-layout set) as scored, and with its folders' balance matched;
    with ``model_spec``, also as ``affectvlm predict`` scores it with its defaults."""
    from affectvlm.predict import class_names, predict
    from affectvlm.prior import match_rows, parse_prior

    truth = _truth(folder, "path", "label")
    rows = predict(str(folder), model)
    out, labels = _tally(rows, truth, folder)
    classes = class_names(rows)
    match_rows(rows, classes, parse_prior(f"neutral={neutral_weight}", classes), by="folder")
    out["accuracy_prior_folder"] = _accuracy(rows, labels)
    if model_spec is not None:
        out["accuracy_defaults"] = cli_accuracy(folder, model_spec, truth)
    return out


def score_sequences(folder: Path, model: object, model_spec: str) -> dict:
    """Sequence accuracy of ``folder`` (a synthetic BU-4DFE-layout set): its pooled rows as scored, and as
    ``affectvlm predict`` scores them with its defaults."""
    from affectvlm.predict import predict

    truth = _truth(folder, "sequence", "sequence_label")
    out, _ = _tally([r for r in predict(str(folder), model) if r["frame"] == "sequence"], truth, folder)
    out["accuracy_defaults"] = cli_accuracy(folder, model_spec, truth, sequences=True)
    return out


def cli_accuracy(folder: Path, model_spec: str, truth: dict, sequences: bool = False) -> float:
    """Accuracy of ``affectvlm predict FOLDER`` with the CLI's defaults (``--adapt auto``, ``--neutral auto``);
    with ``sequences``, of its pooled sequence rows."""
    from affectvlm.cli import main as cli

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.csv"
        rc = cli(["predict", str(folder), "--model", model_spec, "--no-progress", "--out", str(out)])
        if rc == 2 or not out.is_file():  # 1 only says that some rows have errors; they count as wrong
            raise SystemExit(f"affectvlm predict failed on {folder}")
        with out.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if not sequences or r["frame"] == "sequence"]
    if not rows:
        raise SystemExit(f"affectvlm predict scored nothing in {folder}")
    return _accuracy(rows, [truth[Path(r["file"]).resolve()] for r in rows])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--facekit", required=True, metavar="DIR")
    ap.add_argument("--recipes", action="append", default=[], metavar="FILE",
                    help="a recipe book, or an emotion preset in JSON or YAML (repeatable)")
    ap.add_argument("--model", default="default")
    ap.add_argument("--subjects", type=int, default=8)
    ap.add_argument("--seed", type=int, default=91)
    ap.add_argument("--intensities", default="3,4")
    ap.add_argument("--frames", type=int, default=0, metavar="N",
                    help="pose 4D sequences of N frames (BU-4DFE layout) and score them as sequences")
    args = ap.parse_args(argv)
    if not args.recipes:
        ap.error("name at least one --recipes FILE")
    if args.frames and args.frames < 2:
        ap.error(f"--frames must be 0 (static scans) or at least 2 (a sequence), not {args.frames}")

    from affectvlm.model import load_model
    from affectvlm.synth.cli import main as synth

    model = load_model(None if args.model == "default" else args.model)
    levels = [int(x) for x in args.intensities.split(",")]
    report: dict = {"model": args.model, "subjects": args.subjects, "seed": args.seed,
                    "intensities": None if args.frames else levels,
                    "frames": args.frames or None, "synthetic": True, "books": {}}
    with tempfile.TemporaryDirectory() as tmp:
        names = [Path(b).name for b in args.recipes]  # two books of one file name are two entries, by their paths
        books = [("packaged", None), *[(n if names.count(n) == 1 else str(b), b) for n, b in zip(names, args.recipes)]]
        if len({n for n, _ in books}) != len(books):
            ap.error("--recipes: a book is given twice")
        for name, book in books:
            out = Path(tmp) / f"set{len(report['books'])}"
            t = time.perf_counter()
            layout = ["--layout", "bu4dfe", "--frames", str(args.frames)] if args.frames else [
                "--layout", "bu3dfe", "--intensities", args.intensities]
            rc = synth([*layout, "--facekit", args.facekit, "--subjects", str(args.subjects), "--texture-size", "0",
                        "--seed", str(args.seed), "--out", str(out), "-q", *(["--recipes", book] if book else [])])
            if rc:
                return rc
            scored = (score_sequences(out, model, args.model) if args.frames
                      else score(out, model, 1.0 / len(levels), args.model))
            report["books"][name] = {**scored, "seconds": round(time.perf_counter() - t, 1)}
    base = report["books"]["packaged"]["accuracy"]
    for r in report["books"].values():
        r["ratio"] = round(r["accuracy"] / base, 3) if base else None
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
