"""What the spread guard of ``--adapt auto`` decides, and what it is worth: whole sets and sets of a few expressions,
each scored as trained, adapted, and as ``auto`` would score it.

    python bench/bench_guard.py --data CORPUS_DIR [--data CORPUS_DIR ...] [--model SPEC] [--sizes 1,2,3,4,5]
        [--draws 3] [--seed 0]

Each corpus is a folder written by ``affectvlm synth --layout corpus`` (read through its ``manifest.csv``). Every scan
is scored once as trained: a scan's row does not depend on the set it is in. Then the whole corpus, and for each size
in ``--sizes`` ``--draws`` seeded draws of that many expressions (neutral counts as one) with all their scans, are
each a set a user might score. For each set the guard is applied as ``adapt_for`` applies it (``guard`` on the
``expression_sample`` the statistics would come from, its rows as trained), and the set is scored adapted
(``adapt_model``, as ``--adapt on``). ``auto`` scores it adapted where the guard passes and as trained where it
declines. Prints JSON: every set, and a summary per corpus and over all of them: how many whole sets the guard
declines (it should decline none), how many sets of at most 4 expressions it adapts and what that gains or costs
them, and the mean accuracy of ``none``, ``on`` and ``auto`` with ``ratio`` = auto / none (the baseline of the same
run). Synthetic data made by this project: in-generator for the face models and families the model trained on.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NARROW = 4  # a set of this many expressions or fewer should not be adapted to


def _accuracy(rows: list[dict], labels: list[str]) -> float:
    return round(sum(r["label"] == t for r, t in zip(rows, labels)) / len(labels), 4)


def _draws(classes: list[str], sizes: list[int], draws: int, seed: int) -> list[tuple[str, ...]]:
    """The whole class list, then ``draws`` distinct seeded picks of each size (fewer where fewer exist)."""
    rng = np.random.default_rng(seed)
    out: list[tuple[str, ...]] = [tuple(classes)]
    for k in sizes:
        if not 1 <= k < len(classes):
            continue
        seen: set[tuple[str, ...]] = set()
        for _ in range(50 * draws):
            pick = tuple(sorted(rng.choice(classes, size=k, replace=False).tolist(), key=classes.index))
            seen.add(pick)
            if len(seen) == draws:
                break
        out += sorted(seen, key=lambda p: [classes.index(c) for c in p])
    return out


def _summary(sets: list[dict]) -> dict:
    whole = [s for s in sets if s["whole"]]
    narrow = [s for s in sets if len(s["classes"]) <= NARROW]
    wide = [s for s in sets if not s["whole"] and len(s["classes"]) > NARROW]
    adapted_narrow = [s for s in narrow if s["auto_adapts"]]
    mean = {m: round(float(np.mean([s[m] for s in sets])), 4) for m in ("none", "on", "auto")}
    return {
        "sets": len(sets),
        "whole_sets_declined": sum(not s["auto_adapts"] for s in whole),
        "narrow_sets": len(narrow), "narrow_sets_adapted": len(adapted_narrow),
        "narrow_adapted_gain": (round(float(np.mean([s["on"] - s["none"] for s in adapted_narrow])), 4)
                                if adapted_narrow else None),
        "wide_sets": len(wide), "wide_sets_adapted": sum(s["auto_adapts"] for s in wide),
        "mean_accuracy": mean, "ratio": round(mean["auto"] / mean["none"], 3) if mean["none"] else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", action="append", required=True, help="a corpus folder with manifest.csv (repeatable)")
    ap.add_argument("--model", default="default")
    ap.add_argument("--sizes", default="1,2,3,4,5", help="how many expressions the drawn sets hold")
    ap.add_argument("--draws", type=int, default=3, help="sets drawn per size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--no-centre", action="store_true",
                    help="adapt the statistics only, as for a checkpoint without an embedding_mean")
    args = ap.parse_args(argv)

    from affectvlm.adapt import adapt_model, expression_sample, guard
    from affectvlm.model import load_model
    from affectvlm.predict import predict
    from affectvlm.synth.corpus import read_corpus

    model = load_model(None if args.model == "default" else args.model)
    if args.no_centre:
        model.embedding_mean = None
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    t0 = time.perf_counter()
    report: dict = {"model": args.model, "centred": model.embedding_mean is not None, "synthetic": True, "sizes": sizes, "draws": args.draws, "corpora": []}
    every: list[dict] = []
    for data in args.data:
        # in path order, as `affectvlm predict DIR` lists a folder: the statistics' sample depends on the order
        if not (Path(data) / "manifest.csv").is_file():
            raise SystemExit(f"bench_guard: {data}: no manifest.csv (a folder written by affectvlm synth --layout corpus)")
        truth = sorted(read_corpus(Path(data) / "manifest.csv"), key=lambda r: r["path"])
        if not truth:
            raise SystemExit(f"bench_guard: {data}: the manifest lists no scan")
        files, labels = [r["path"] for r in truth], [r["label"] for r in truth]
        trained = predict(files, model, batch_size=args.batch_size)
        classes = [c for c in model.classes if c in set(labels)]
        sets = []
        for pick in _draws(classes, sizes, args.draws, args.seed):
            idx = [i for i, t in enumerate(labels) if t in pick]
            f, lab, rows = [files[i] for i in idx], [labels[i] for i in idx], [trained[i] for i in idx]
            check = guard(expression_sample(rows, f), "auto")
            adapted = predict(f, adapt_model(model, f, batch_size=args.batch_size).model, batch_size=args.batch_size)
            none, on = _accuracy(rows, lab), _accuracy(adapted, lab)
            sets.append({"classes": list(pick), "whole": len(pick) == len(classes), "scans": len(f),
                         "auto_adapts": check.ok, "reason": check.reason,
                         "none": none, "on": on, "auto": on if check.ok else none})
        every += sets
        report["corpora"].append({"data": str(data), "scans": len(files), "summary": _summary(sets), "sets": sets})
    report["summary"] = _summary(every)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
