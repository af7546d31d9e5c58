"""Regenerate the committed sample scans in affectvlm/data/samples/ (the app's "try a sample", README quick start).

    python bench/make_samples.py --facekit ../shared/ict-facekit/FaceXModel

Writes four full-resolution BU-3DFE-style scans (decimation weakens the automatic up/down cues) of one synthetic subject (neutral, happiness, surprise, anger at
intensity 4, with texture and landmarks) and one short BU-4DFE-style sequence as a zip of VRML frames.
Deterministic: the same model and seed give byte-identical files. Prints JSON with sizes and timings.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[1] / "affectvlm" / "data" / "samples"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--facekit", default="../shared/ict-facekit/FaceXModel")
    ap.add_argument("--out", default=str(SAMPLES))
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--decimate", type=float, default=1.0)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--texture-size", type=int, default=128)
    args = ap.parse_args(argv)

    from affectvlm.synth import SynthConfig, generate, load_facekit

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kit = load_facekit(args.facekit)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate(SynthConfig(subjects=1, seed=args.seed, intensities=(4,), emotions=("happiness", "surprise", "anger"),
                             decimate=args.decimate, texture_size=args.texture_size, test_frac=0, val_frac=0),
                 kit, tmp / "3d", progress=False)
        for p in sorted((tmp / "3d").glob("*/*_F3D.*")):
            shutil.copyfile(p, out / p.name)
        generate(SynthConfig(subjects=1, seed=args.seed, layout="bu4dfe", frames=args.frames, emotions=("surprise",),
                             decimate=args.decimate, texture_size=args.texture_size, test_frac=0, val_frac=0,
                             landmarks=False),
                 kit, tmp / "4d", progress=False)
        seq = next((tmp / "4d").glob("*/Surprise"))
        name = f"{seq.parent.name}_{seq.name}.zip"
        with zipfile.ZipFile(out / name, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            for p in sorted(seq.iterdir()):
                info = zipfile.ZipInfo(f"{seq.parent.name}/{seq.name}/{p.name}", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, p.read_bytes(), compresslevel=9)
    files = sorted(p for p in out.iterdir() if p.is_file() and p.suffix in {".wrl", ".bmp", ".bnd", ".zip"})
    print(json.dumps({"out": str(out), "files": {p.name: p.stat().st_size for p in files},
                      "total_mb": round(sum(p.stat().st_size for p in files) / 2**20, 2),
                      "seconds": round(time.perf_counter() - t0, 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
