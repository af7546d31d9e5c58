"""4D sequence accuracy: ``predict`` on a BU-4DFE-layout folder, the pooled row against the folder's emotion.

    python bench/bench_sequences.py --data DIR [--model SPEC] [--frames 12] [--pooling contrast] [--adapt auto]

Each ``SUBJECT/<Emotion>/`` folder is one sequence (neutral -> apex -> neutral); its label is the folder name
(Angry, Disgust, Fear, Happy, Sad, Surprise). A folder written by ``affectvlm synth --layout corpus4d`` is read
through its manifest instead (the ``--split`` rows, default test), and the accuracy is also given per face model
and expression family. Prints JSON: sequence accuracy, per emotion, and the confusions for ``--pooling``; the frames
are scored once and ``poolings`` gives every pooling's accuracy on them with its ratio to ``peak`` (the baseline).
``--adapt`` scores them as ``affectvlm predict --adapt`` does (default ``none``: the model as trained).
Synthetic data made by this project is in-generator: say so when quoting.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

FOLDERS = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happiness", "sad": "sadness",
           "surprise": "surprise"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", default=None)
    ap.add_argument("--frames", type=int, default=None, help="N evenly spaced frames per sequence")
    ap.add_argument("--pooling", default="contrast", help="contrast (default), peak or mean")
    ap.add_argument("--out", default=None)
    ap.add_argument("--split", default="test", help="corpus4d manifests: the split scored")
    ap.add_argument("--adapt", default="none", choices=("auto", "on", "none"),
                    help="the encoder's statistics adapted to the sequences first, as predict --adapt")
    args = ap.parse_args(argv)

    from affectvlm.adapt import adapt_for
    from affectvlm.model import load_model
    from affectvlm.predict import POOLINGS, pool_probabilities, predict

    root = Path(args.data)
    group: dict[str, str] = {}
    manifest = root / "manifest.csv"
    info = root / "synth.json"  # the corpus sampler's BU-layout trees also have a face_model column: frames, not
    bu_tree = info.is_file() and json.loads(info.read_text()).get("layout") in ("bu3dfe", "bu4dfe")  # sequences
    if not bu_tree and manifest.is_file() and "face_model" in manifest.read_text(encoding="utf-8").partition("\n")[0]:
        from affectvlm.synth.corpus import read_corpus

        found = [r for r in read_corpus(root) if r["split"] == args.split]
        truth = {r["path"]: r["label"] for r in found}
        group = {r["path"]: f"{r['face_model']}/{r['family']}" for r in found}
        seqs = [Path(p) for p in truth]
    else:
        seqs = sorted(p for p in root.glob("*/*") if p.is_dir() and p.name.lower() in FOLDERS)
        truth = {str(p): FOLDERS[p.name.lower()] for p in seqs}
    if not seqs:  # an accuracy of 0.0 over nothing read as a result
        print(f"error: {root}: no sequences to score (BU-4DFE folders SUBJECT/Emotion/, or a corpus4d manifest's "
              f"{args.split!r} rows)", file=sys.stderr)
        return 2
    model = load_model(args.model)
    classes = list(model.classes)
    t0 = time.perf_counter()
    inputs = [str(p) for p in seqs]
    adaptation = adapt_for(model, inputs, args.adapt, frames=args.frames, pooling=args.pooling)
    rows = predict(inputs, adaptation.model, frames=args.frames, pooling=args.pooling)
    frames: dict[str, list[list[float]]] = {}
    for r in rows:
        if r["frame"] != "sequence" and not r["error"]:
            frames.setdefault(r["file"], []).append([float(r[c]) for c in classes])
    pooled = [r for r in rows if r["frame"] == "sequence"]
    by_group: dict[str, list[int]] = {}
    for r in pooled:
        if r["file"] in group:
            by_group.setdefault(group[r["file"]], []).append(int(r["label"] == truth[r["file"]]))
    per: dict[str, list[int]] = {}
    conf: Counter = Counter()
    for r in pooled:
        t = truth.get(r["file"])
        if t is None:
            continue
        per.setdefault(t, []).append(int(r["label"] == t))
        conf[f"{t}->{r['label']}"] += 1
    hits = [h for v in per.values() for h in v]
    poolings = {}
    for how in POOLINGS:
        ok = [int(f in frames and classes[int(pool_probabilities(frames[f], classes, how).argmax())] == truth[f])
              for f in (r["file"] for r in pooled) if f in truth]
        poolings[how] = {"accuracy": round(sum(ok) / max(len(ok), 1), 3), "correct": sum(ok)}
    base = poolings["peak"]["correct"]
    for v in poolings.values():
        v["ratio_to_peak"] = round(v["correct"] / base, 3) if base else None
    out = {"data": str(root), "model": args.model or "default", "sequences": len(hits),
           "accuracy": round(sum(hits) / max(len(hits), 1), 3),
           "per_emotion": {k: round(sum(v) / len(v), 3) for k, v in sorted(per.items())},
           "per_group": {k: {"n": len(v), "accuracy": round(sum(v) / len(v), 3)} for k, v in sorted(by_group.items())},
           "confusions": {k: v for k, v in sorted(conf.items()) if k.split("->")[0] != k.split("->")[1]},
           "poolings": poolings,
           "frames_scored": sum(1 for r in rows if r["frame"] != "sequence"), "pooling": args.pooling,
           "adapt": args.adapt, "adaptation": adaptation.text() if args.adapt != "none" else "",
           "seconds": round(time.perf_counter() - t0, 1), "synthetic": True}
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
