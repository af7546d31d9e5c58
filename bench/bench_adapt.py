"""What ``--adapt`` costs: ``predict`` on N scans as they are, adapted (batch-norm statistics only) and adapted and
centred on the checkpoint's training mean, in the same run.

    python bench/bench_adapt.py [--scans 120] [--repeats 2] [--warmup 1] [--model default]

The scans are procedural faces (tests/meshgen.py) of several smile strengths written as PLY files. Each arm runs
``adapt_for(model, paths, "on")`` then ``predict`` on the adapted model, as ``affectvlm predict --adapt on`` does;
the ``none`` arm only ``predict``. Times are the median over ``--repeats`` after ``--warmup`` untimed passes over
every arm. Prints JSON with each arm's seconds and its ``ratio`` to ``none``, and ``centring_ratio`` = centred /
statistics only (the extra pass over the sample that centring adds). The model must store an ``embedding_mean`` for
the centred arm.
The ``named`` arm is the centred one with the same scans named as BU-3DFE names them (six expressions at level 4)
under ``auto``: their names pass the guard, so the sample is not scored first; ``named_ratio`` = named / centred
(only with at least ``affectvlm.adapt.MIN_ROWS`` scans, the fewest ``auto`` adapts).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def _scans(folder: Path, n: int, bu3dfe: bool = False) -> list[str]:
    import trimesh
    from meshgen import face_like_mesh

    paths = []
    for i in range(n):
        m = face_like_mesh(48, smile=(i % 6) / 3 - 0.8, seed=i, textured=False)
        code = ("HA", "SA", "SU", "FE", "DI", "AN")[i % 6]
        p = folder / (f"F{i // 6 + 1:04d}_{code}04WH_F3D.ply" if bu3dfe else f"scan{i:04d}.ply")
        trimesh.Trimesh(m.vertices, m.faces, process=False).export(p)
        paths.append(str(p))
    return paths


def main(argv: list[str] | None = None) -> int:
    from affectvlm.cli import positive_int

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scans", type=positive_int, default=120)
    ap.add_argument("--repeats", type=positive_int, default=2)
    ap.add_argument("--warmup", type=int, default=1, help="untimed passes over every arm first")
    ap.add_argument("--model", default="default")
    a = ap.parse_args(argv)

    import torch

    from affectvlm.adapt import MIN_ROWS, ON_MIN_ROWS, adapt_for

    if a.scans < ON_MIN_ROWS:  # the adapted arms would time nothing (a bare AssertionError before)
        ap.error(f"--scans must be at least {ON_MIN_ROWS}: --adapt on needs that many")
    from affectvlm.model import load_model
    from affectvlm.predict import predict

    model = load_model(None if a.model == "default" else a.model, cache=False)
    if model.embedding_mean is None:
        print("error: the model stores no embedding_mean; run python -m affectvlm.train.centre on it", file=sys.stderr)
        return 2
    mean = model.embedding_mean

    def none(paths):
        return predict(paths, model)

    def adapted(centred: bool, mode: str = "on"):
        def run(paths):
            model.embedding_mean = mean if centred else None
            try:
                got = adapt_for(model, paths, mode)
            finally:
                model.embedding_mean = mean
            assert got.adapted and got.centred == centred
            return predict(paths, got.model)
        return run

    arms = {"none": none, "statistics": adapted(False), "centred": adapted(True)}
    if a.scans >= MIN_ROWS:
        arms["named"] = adapted(True, "auto")
    out: dict = {"scans": a.scans, "model": a.model, "threads": torch.get_num_threads(), "warmup": a.warmup}
    with tempfile.TemporaryDirectory() as tmp:
        paths = _scans(Path(tmp), a.scans)
        (Path(tmp) / "bu").mkdir()
        named = _scans(Path(tmp) / "bu", a.scans, bu3dfe=True)
        inputs = {k: named if k == "named" else paths for k in arms}
        times: dict[str, list[float]] = {k: [] for k in arms}
        for _ in range(a.warmup):
            for k, fn in arms.items():
                fn(inputs[k])
        for _ in range(a.repeats):
            for k, fn in arms.items():
                t0 = time.perf_counter()
                fn(inputs[k])
                times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k in arms:
        out[k] = {"seconds": round(med[k], 3), "ratio": round(med[k] / med["none"], 3)}
    out["centring_ratio"] = round(med["centred"] / med["statistics"], 3)
    out["named_ratio"] = round(med["named"] / med["centred"], 3) if "named" in med else None
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
