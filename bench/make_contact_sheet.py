"""Contact sheet of synthetic expressions: emotions (rows) x subjects (columns) at intensity 4, frontal view,
shaded geometry only (no texture), rendered with affectvlm.render.render_views.

    python bench/make_contact_sheet.py --facekit ../shared/ict-facekit/FaceXModel --out docs/img/contact_sheet.png

Prints JSON with timings (scan generation vs rendering, as a ratio).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--facekit", default="../shared/ict-facekit/FaceXModel")
    ap.add_argument("--out", default="docs/img/contact_sheet.png")
    ap.add_argument("--subjects", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--intensity", type=int, default=4)
    ap.add_argument("--recipes", default=None)
    ap.add_argument("--yaw", type=float, default=0.0)
    ap.add_argument("--canonical", action="store_true", help="detect orientation as for user scans")
    args = ap.parse_args(argv)

    from affectvlm.render import View, render_views
    from affectvlm.synth import SynthConfig, Synthesizer, load_facekit

    kit = load_facekit(args.facekit)
    synth = Synthesizer(kit, SynthConfig(subjects=args.subjects, seed=args.seed, texture_size=0,
                                         recipes=args.recipes))
    rows = ["neutral", *synth.emotions]
    t0 = time.perf_counter()
    meshes, subjects = [], synth.subjects()
    for emotion in rows:
        for subj in subjects:
            data = synth.subject_data(subj)
            mesh, _ = synth.scan(subj, data, emotion, 0 if emotion == "neutral" else args.intensity)
            meshes.append(mesh)
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    # synthetic scans face +Z with +Y up (a few degrees of jitter), so orientation detection is not needed
    imgs = render_views(meshes, views=(View(args.yaw),), size=args.size, texture=False,
                        canonical=args.canonical)
    t_render = time.perf_counter() - t0
    tiles = (imgs[:, 0].permute(0, 2, 3, 1).numpy() * 255).clip(0, 255).astype(np.uint8)

    label_w, s = 110, args.size
    sheet = Image.new("RGB", (label_w + s * len(subjects), 24 + s * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, subj in enumerate(subjects):
        draw.text((label_w + j * s + 6, 6), f"{subj.name('bu3dfe')} {subj.ethnicity}", fill="black")
    for i, emotion in enumerate(rows):
        draw.text((6, 24 + i * s + s // 2 - 6), emotion, fill="black")
        for j in range(len(subjects)):
            sheet.paste(Image.fromarray(tiles[i * len(subjects) + j]), (label_w + j * s, 24 + i * s))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, optimize=True)
    print(json.dumps({"out": str(out), "scans": len(meshes), "generate_s": round(t_gen, 3),
                      "render_s": round(t_render, 3), "render_over_generate": round(t_render / t_gen, 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
