"""Face frame and landmarks on held-out synthetic scans: accuracy over the 24 axis orientations, unflagged
errors, landmark error in mm, and time per scan, for the network and the geometric cues in the same run; and the
landmarks read again on the face region (what the render's crop uses) against the first reading, error and time.

    python bench/bench_frame.py --facekit ICT-FaceKit/FaceXModel \
        [--makehuman DIR --facshuman DIR] [--rocketbox DIR] --scans 100 --out bench/out/frame.json

Scans come from seeds the frame network never trained on (random identity mixtures, random AUs, crops with
and without forehead/ears/neck, 3k-40k vertices, noise, holes, pose of a few degrees); each is written in one
of the 24 axis-aligned orientations (cycled). A SYNTHETIC, in-generator measurement; say so when quoting.
Prints JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    from affectvlm.cli import positive_int

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--facekit")
    ap.add_argument("--makehuman")
    ap.add_argument("--facshuman")
    ap.add_argument("--rocketbox", help="Rocketbox avatar FBX files with HeadBox's AU shapes")
    ap.add_argument("--gltf", help="binary glTF heads with ARKit-named morph targets (a folder or one file)")
    ap.add_argument("--crop", choices=("face", "wide", "full"), default=None,
                    help="every scan with this crop (default: the generator's mix)")
    ap.add_argument("--max-vertices", type=int, default=40000)
    ap.add_argument("--frame-net", default=None, help="a frame-net folder to measure instead of the installed one")
    ap.add_argument("--scans", type=positive_int, default=100, help="scans per face model")
    ap.add_argument("--seed", type=int, default=987654)
    ap.add_argument("--min-vertices", type=int, default=3000)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    from affectvlm.geometry import canonicalise
    from affectvlm.mesh import Mesh
    from affectvlm.synth.randomised import AXIS_ROTATIONS, Nuisance, sample_scan
    from affectvlm.synth.facemodel import load_face_models
    from affectvlm.train.frame import random_aus

    if args.frame_net:
        import affectvlm.faceframe as faceframe

        faceframe.WEIGHTS_DIR = Path(args.frame_net)
    models = load_face_models(args.facekit, args.makehuman, args.facshuman, rocketbox=args.rocketbox, gltf=args.gltf)
    nuis = Nuisance(vertices=(args.min_vertices, args.max_vertices), yaw_deg=10.0, pitch_deg=8.0, roll_deg=6.0,
                    **({"crops": ((args.crop, 1.0),)} if args.crop else {}))
    report: dict = {"synthetic": True, "scans_per_model": args.scans, "crop": args.crop or "mix",
                    "vertices": [args.min_vertices, args.max_vertices], "orientations": 24, "models": {}}
    for mi, (name, model) in enumerate(sorted(models.items())):
        rng = np.random.default_rng([args.seed, mi])
        res = {m: {"right": 0, "wrong": 0, "wrong_unflagged": 0, "flagged": 0, "s": []} for m in ("net", "cues")}
        lm_err, lm_again, t_again = [], [], []
        by_crop: dict[str, list[int]] = {}
        for k in range(args.scans):
            s = sample_scan(model, "x", 1, rng, expression=lambda e, l, r: random_aus(model, r), nuisance=nuis)
            R = AXIS_ROTATIONS[k % 24]
            v = (s.mesh.vertices.astype(np.float64) @ R.T).astype(np.float32)
            mesh = Mesh(vertices=v, faces=s.mesh.faces, source=f"{name}-{k}")
            for method in ("net", "cues"):
                t0 = time.perf_counter()
                info = canonicalise(mesh, method=method).meta["canonical"]
                res[method]["s"].append(time.perf_counter() - t0)
                rot = np.asarray(info["rotation"])  # rows: the file's right, up, front
                ok = np.allclose(rot[1], R @ s.rotation[:, 1], atol=0.35) and \
                    np.allclose(rot[2], R @ s.rotation[:, 2], atol=0.35)
                r = res[method]
                r["right" if ok else "wrong"] += 1
                r["flagged"] += bool(info.get("low_confidence"))
                r["wrong_unflagged"] += (not ok) and not info.get("low_confidence")
                if method == "net":
                    by_crop.setdefault(s.nuisance["crop"], []).append(int(ok))
                    if ok and info.get("landmarks"):
                        t0 = time.perf_counter()
                        again = canonicalise(mesh, landmarks=True).meta["canonical"]["landmarks"]
                        t_again.append(time.perf_counter() - t0)
                        if s.landmarks is not None:
                            truth = s.landmarks @ R.T
                            lm_err.append(np.linalg.norm(np.asarray(info["landmarks"]) - truth, axis=1))
                            lm_again.append(np.linalg.norm(np.asarray(again) - truth, axis=1))
        out = {}
        for method, r in res.items():
            t = np.asarray(r.pop("s")) * 1000
            out[method] = dict(r, accuracy=round(r["right"] / args.scans, 4), ms_median=round(float(np.median(t)), 1))
        out["net"]["accuracy_by_crop"] = {c: round(float(np.mean(v)), 4) for c, v in sorted(by_crop.items())}
        out["time_ratio_net_over_cues"] = round(out["net"]["ms_median"] / max(out["cues"]["ms_median"], 1e-9), 2)
        for key, errs in (("landmark_error_mm", lm_err), ("landmark_error_read_again_mm", lm_again)):
            if errs:
                e = np.concatenate(errs)
                out[key] = {"mean": round(float(e.mean()), 2), "p95": round(float(np.quantile(e, 0.95)), 2),
                            "scans": len(errs)}
        if t_again:  # the frame and both readings, against the frame and the first reading
            out["time_ratio_read_again"] = round(float(np.median(t_again)) * 1000 / max(out["net"]["ms_median"], 1e-9), 2)
        report["models"][name] = out
        print(json.dumps({name: out}), file=sys.stderr, flush=True)  # progress; stdout holds one JSON document
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
