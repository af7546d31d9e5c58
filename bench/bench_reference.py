"""Static-scan accuracy alone, against each subject's neutral scan (``affectvlm predict --neutral``), adapted to the
set (``--adapt``) and both, in one run.

    python bench/bench_reference.py --data CORPUS_DIR [--model SPEC] [--neutral 'NE0_*'] [--prior neutral=0.5]

Reads a corpus written by ``affectvlm synth --layout corpus`` (its ``manifest.csv``; each subject's folder holds its
neutral scans ``NE0_<family>.ply``), scores every scan once with the library's ``predict`` (each scan alone: the
baseline), then rescores copies of the rows as ``affectvlm predict`` would with ``--neutral`` and, if given,
``--prior``; then scores the set again with the image encoder's batch-norm statistics re-estimated on it
(``affectvlm.adapt``, as ``--adapt on``; ``auto_adapts`` says whether ``--adapt auto`` would), alone and against the
neutral scans. Prints JSON: accuracy over all scans and over the expressive ones, per face model and per class, and the
expressive accuracy's ``ratio`` to the baseline. Synthetic data made by this project is in-generator for the face
models and families the model trained on: say so when quoting.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _accuracy(rows: list[dict], truth: list[dict]) -> dict:
    ok = [r["label"] == t["label"] for r, t in zip(rows, truth)]
    exp = [o for o, t in zip(ok, truth) if t["label"] != "neutral"]
    out: dict = {"accuracy": round(sum(ok) / len(ok), 4), "n": len(ok),
                 "expressive_accuracy": round(sum(exp) / len(exp), 4) if exp else None, "expressive_n": len(exp)}
    for key in ("face_model", "label"):
        n, k = Counter(t[key] for t in truth), Counter(t[key] for o, t in zip(ok, truth) if o)
        out[f"per_{key}"] = {g: round(k[g] / n[g], 4) for g in sorted(n)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="a corpus folder with manifest.csv")
    ap.add_argument("--model", default="default")
    ap.add_argument("--neutral", default="NE0_*", help="the neutral scans' file-name glob (the corpus layout's)")
    ap.add_argument("--batch-size", type=int, default=8, help="scans rendered and scored together (predict's default)")
    ap.add_argument("--prior", default=None, help="also match this class balance afterwards, as predict --prior")
    args = ap.parse_args(argv)

    from affectvlm.adapt import adapt_model, expression_sample, guard
    from affectvlm.model import load_model
    from affectvlm.predict import predict
    from affectvlm.prior import match_rows, parse_prior
    from affectvlm.reference import match_neutral
    from affectvlm.synth.corpus import read_corpus

    root = Path(args.data)
    if not (root / "manifest.csv").is_file():
        ap.error(f"--data {root}: no manifest.csv (a folder written by affectvlm synth --layout corpus)")
    truth = read_corpus(root / "manifest.csv")
    if not truth:
        ap.error(f"--data {root}: the manifest lists no scan")
    model = load_model(None if args.model == "default" else args.model)
    prior = parse_prior(args.prior, model.classes) if args.prior else None  # checked before the scoring, not after
    t = time.perf_counter()
    files = [r["path"] for r in truth]
    alone = predict(files, model, batch_size=args.batch_size)
    seconds = round(time.perf_counter() - t, 1)
    referenced = [dict(r) for r in alone]
    done = match_neutral(referenced, model.classes, args.neutral)
    report: dict = {"data": str(root), "model": args.model, "synthetic": True, "seconds_scoring": seconds,
                    "alone": _accuracy(alone, truth),
                    "neutral": {"spec": args.neutral, "rescored": done.rescored, "subjects": done.subjects,
                                **_accuracy(referenced, truth)}}
    if prior is not None:
        match_rows(referenced, model.classes, prior)
        report["neutral_then_prior"] = {"spec": args.prior, **_accuracy(referenced, truth)}
    adapted_model = adapt_model(model, files, batch_size=args.batch_size)
    adapted = predict(files, adapted_model.model, batch_size=args.batch_size)
    # what --adapt auto decides: the guard on the same sample's rows as scored alone (adapt_for would score them again)
    auto = guard(expression_sample(alone, files), "auto").ok
    report["adapted"] = {"inputs": adapted_model.inputs, "layers": adapted_model.layers, "auto_adapts": auto,
                         **_accuracy(adapted, truth)}
    both = [dict(r) for r in adapted]
    match_neutral(both, model.classes, args.neutral)
    report["adapted_neutral"] = _accuracy(both, truth)
    base = report["alone"]["expressive_accuracy"]
    for key in ("neutral", "neutral_then_prior", "adapted", "adapted_neutral"):
        if key in report and base:
            report[key]["ratio"] = round(report[key]["expressive_accuracy"] / base, 3)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
