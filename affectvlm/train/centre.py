"""Store a checkpoint's mean training embedding, which ``affectvlm predict --adapt`` centres a scored set on.

    python -m affectvlm.train.centre --model RUN/best --data MANIFEST_OR_CORPUS [--split train] [--sample 3000]

The mean of the model's fused embeddings (mirror-averaged, as ``predict`` renders them) over the ``--split`` rows
among ``--sample`` rows of the manifest drawn with ``--seed`` is written to the checkpoint's ``affectvlm.json`` as
``embedding_mean`` (atomically; the weights are not touched). When ``--adapt`` re-estimates the batch-norm
statistics on a set, it then also moves that set's mean embedding onto this one (:mod:`affectvlm.adapt`). Use the
rows the model was trained on: the mean stands for the expressions the classifier learned, in their training mix.
A checkpoint that ``affectvlm train`` saves has none (fine-tuning moves the embeddings); run this on it to add one.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from affectvlm.errors import AffectVLMError, ConfigError, InputError

DEFAULT_SAMPLE = 3000


def training_rows(data: str, split: str, sample: int, seed: int) -> list[str]:
    """Paths of ``data``'s ``split`` rows (every row when ``split`` is empty) among ``sample`` rows of the whole
    manifest drawn with ``seed`` (all of them when it has fewer)."""
    from affectvlm.synth.corpus import read_corpus

    try:
        rows = read_corpus(data)
    except InputError as e:
        raise ConfigError(str(e)) from None
    except (OSError, KeyError, ValueError) as e:
        raise ConfigError(f"{data}: not a manifest with path, split and intensity columns ({e})") from None
    random.Random(seed).shuffle(rows)
    paths = [r["path"] for r in rows[:sample] if not split or r.get("split") == split]
    if not paths:
        raise ConfigError(f"{data}: no rows of split {split!r} among {min(sample, len(rows))} drawn")
    return paths


def compute_mean(model_dir: str, paths: list[str], workers: int | None = None) -> list[float]:
    """The mean fused embedding of ``paths`` under the checkpoint in ``model_dir`` (no adaptation)."""
    from affectvlm.adapt import mean_embedding
    from affectvlm.model import load_model
    from affectvlm.predict import _setup

    o, items = _setup(paths, load_model(model_dir, cache=False), workers=workers)
    mean = mean_embedding(o, items)
    if mean is None:
        raise ConfigError(f"none of the {len(paths)} scans could be read and rendered")
    return [round(float(v), 7) for v in mean.tolist()]


def write_mean(model_dir: str, mean: list[float], source: dict) -> Path:
    """Put ``mean`` (and where it came from) into ``model_dir``'s affectvlm.json, atomically."""
    from affectvlm.fileio import atomic_write_text
    from affectvlm.model import read_meta
    from affectvlm.model.checkpoint import META_FILE

    meta = read_meta(model_dir)
    meta["embedding_mean"] = mean
    meta.setdefault("provenance", {})["embedding_mean_from"] = source
    return atomic_write_text(Path(model_dir) / META_FILE, json.dumps(meta, indent=2))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a checkpoint folder (affectvlm.json + weights)")
    ap.add_argument("--data", required=True, help="the manifest CSV (or corpus folder) the model was trained on")
    ap.add_argument("--split", default="train", help="rows of this split (empty: every row)")
    ap.add_argument("--sample", type=int, default=DEFAULT_SAMPLE, help="rows drawn from the manifest (those of --split are used)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None)
    a = ap.parse_args(argv)
    try:
        if a.sample < 1:
            raise ConfigError(f"--sample must be at least 1, got {a.sample}")
        paths = training_rows(a.data, a.split, a.sample, a.seed)
        mean = compute_mean(a.model, paths, a.workers)
        write_mean(a.model, mean, {"data": Path(a.data).name, "split": a.split, "rows": len(paths), "seed": a.seed})
    except AffectVLMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"model": a.model, "rows": len(paths), "norm": round(sum(v * v for v in mean) ** 0.5, 4)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
