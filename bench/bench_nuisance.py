"""Accuracy under one scanner nuisance at a time: the same new-subject scans, changed in one way per condition.

Every condition renders the same labelled expressions of the same new subjects (``affectvlm.synth.corpus.make_scan``:
ICT-FaceKit and/or MakeHuman + FACSHuman; families ``recipes`` and ``emfacs``, plus ``sculpt`` where a model has
sculpts; neutral + intensities 3-4), so a difference between two conditions is the nuisance's alone. The reference
condition (``clean``: a 6k-vertex face crop, no noise, holes or pose) is scored in the same run; each condition
reports ``ratio`` = its accuracy / the reference's. SYNTHETIC; the subjects are drawn from ``--seed`` and are not
any corpus's. The dense conditions go through ``predict`` like any scan, so a model's ``max_vertices`` cap applies.

    python bench/bench_nuisance.py --facekit ../shared/ict-facekit/FaceXModel --makehuman MH/makehuman/data \\
        --facshuman FACSHuman [--rocketbox DIR] [--gltf DIR] [--model default] [--subjects 6] [--seed 4242] \\
        [--conditions clean,pitch15,...] [--families emfacs]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EMOTIONS = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger")
_CLEAN = dict(vertices=(6000, 6000), noise_mm=(0.0, 0.0), hole_probability=0.0, crops=(("face", 1.0),),
              yaw_deg=0.0, pitch_deg=0.0, roll_deg=0.0)
# Nuisance fields per condition (yaw/pitch/roll_deg are twice the standard deviation, as in Nuisance)
CONDITIONS = {
    "clean": {},
    "wide-crop": dict(crops=(("wide", 1.0),)),
    "full-head": dict(crops=(("full", 1.0),)),
    "holes4": dict(hole_probability=1.0, holes=(4, 4)),
    "noise0.2": dict(noise_mm=(0.2, 0.2)),
    "yaw20": dict(yaw_deg=40.0),
    "pitch15": dict(pitch_deg=30.0),
    "roll10": dict(roll_deg=20.0),
    "sparse1.5k": dict(vertices=(1500, 1500)),
    "sparse800": dict(vertices=(800, 800)),
    "dense22k": dict(vertices=(35000, 35000)),
    "dense22k-noise0.2": dict(vertices=(35000, 35000), noise_mm=(0.2, 0.2)),
    "eyeballs": dict(eyeballs=1.0),
    "closed-mouth": dict(closed_mouth=1.0),
    "eyeballs-closed-mouth": dict(eyeballs=1.0, closed_mouth=1.0),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--facekit", metavar="DIR")
    ap.add_argument("--makehuman", metavar="DIR")
    ap.add_argument("--facshuman", metavar="DIR")
    ap.add_argument("--rocketbox", metavar="DIR", help="Rocketbox avatar FBX files (as affectvlm synth --rocketbox)")
    ap.add_argument("--gltf", metavar="DIR", help="GLB avatars with ARKit morph targets (as affectvlm synth --gltf)")
    ap.add_argument("--model", default="default")
    ap.add_argument("--subjects", type=int, default=6, help="new subjects per face model")
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--conditions", default=",".join(CONDITIONS))
    ap.add_argument("--families", default=None,
                    help="expression families, e.g. emfacs (default: recipes and emfacs, plus sculpt where a face "
                         "model has sculpts); name the ones a fine-tuned run trained on to measure it on its own kind")
    args = ap.parse_args(argv)
    names = [c.strip() for c in args.conditions.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONDITIONS]
    if unknown:
        ap.error(f"unknown condition(s) {unknown}; choose from {', '.join(CONDITIONS)}")
    if "clean" not in names:
        names.insert(0, "clean")
    from affectvlm.errors import ConfigError
    from affectvlm.synth.corpus import parse_families

    try:
        chosen = parse_families(args.families) if args.families is not None else ()
    except ConfigError as e:
        ap.error(str(e))

    from affectvlm.model import load_model
    from affectvlm.predict import predict
    from affectvlm.synth.corpus import make_scan
    from affectvlm.synth.facemodel import load_face_models
    from affectvlm.synth.randomised import Nuisance, sample_identity

    models = load_face_models(args.facekit, args.makehuman, args.facshuman, rocketbox=args.rocketbox, gltf=args.gltf)
    if not models:
        ap.error("name at least one face model: --facekit, --makehuman (with --facshuman), --rocketbox or --gltf")
    model = load_model(args.model)

    def families(m) -> tuple[str, ...]:
        fams = chosen or ("recipes", "emfacs", "sculpt")
        return tuple(f for f in fams if f != "sculpt" or m.meta.get("emotion_targets"))  # sculpts where it has them

    jobs = [(mi, name, fam, s, e, lvl) for mi, (name, m) in enumerate(sorted(models.items()))
            for fam in families(m)
            for s in range(args.subjects) for e in EMOTIONS for lvl in ((0,) if e == "neutral" else (3, 4))]
    if not jobs:
        ap.error(f"--families {args.families}: no face model named has sculpted emotion targets (MakeHuman with "
                 "--facshuman, Rocketbox/HeadBox and glTF avatars have them); add a family such as emfacs")
    report: dict = {"model": args.model, "face_models": sorted(models), "families": sorted({j[2] for j in jobs}),
                    "subjects": args.subjects, "seed": args.seed,
                    "scans_per_condition": len(jobs), "synthetic": True, "render": model.render.to_dict(),
                    "conditions": {}}
    for cond in names:
        nu = Nuisance(**{**_CLEAN, **CONDITIONS[cond]})
        meshes, labels = [], []
        for mi, name, fam, s, e, lvl in jobs:
            ident = sample_identity(models[name], np.random.default_rng([args.seed, 0, mi, s]), nu)
            rng = np.random.default_rng([args.seed, 1, mi, s, EMOTIONS.index(e), lvl, len(fam)])
            meshes.append(make_scan(models[name], fam, e, lvl, rng, identity=ident, nuisance=nu).mesh)
            labels.append(e)
        t = time.perf_counter()
        rows = predict(meshes, model, batch_size=16)
        ok = np.array([r["label"] == y for r, y in zip(rows, labels)])
        report["conditions"][cond] = {"accuracy": round(float(ok.mean()), 4), "n": int(len(ok)),
                                      "median_vertices": int(np.median([len(m.vertices) for m in meshes])),
                                      "seconds": round(time.perf_counter() - t, 1)}
    ref = report["conditions"]["clean"]["accuracy"]
    for r in report["conditions"].values():
        r["ratio"] = round(r["accuracy"] / ref, 3) if ref else None
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
