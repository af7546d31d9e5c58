"""A labelled corpus of 4D sequences (neutral -> apex -> neutral) from several face models and expression families.

    from affectvlm.synth.corpus4d import write_sequences
    write_sequences(CorpusConfig(subjects=6, families=("sculpt",)), models, "out/", frames=16)

Writes ``out/<face model>/<subject>/<Emotion>/NNN.ply`` (a BU-4DFE-style folder per sequence: Angry, Disgust,
Fear, Happy, Sad, Surprise) and ``out/manifest.csv`` with the corpus columns (``path`` = the sequence folder,
``intensity`` = the apex level). One expression is drawn per sequence from its family, as for
:mod:`affectvlm.synth.corpus`, and played with :mod:`affectvlm.synth.sequence` timing (random onset, apex and
offset; occasional blinks). The scan nuisances (crop, resolution, holes, noise, units, pose) are drawn once per
sequence, as one scanner session; each frame is resampled on its own, so frames do not share a topology.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from affectvlm.synth.corpus import (CorpusConfig, _expression_fn, _ply_bytes, au_gains, draw_row, plan_subjects,
                                    scale_aus, write_draws, write_manifest)
from affectvlm.synth.facemodel import FaceModel
from affectvlm.synth.randomised import sample_identity, sample_scan
from affectvlm.synth.sequence import Timing, activation_curve, blink_curve

__all__ = ["sequence_folders", "sequence_frames", "sequence_plan", "write_sequences"]


def sequence_folders(emotions) -> dict[str, str]:
    """Emotion -> BU-4DFE folder name (``Happy``) from the recipe book, the one place that names them; emotions
    without a folder (neutral) are left out."""
    from affectvlm.synth.recipes import RecipeBook

    book = RecipeBook.load()
    return {e: book.emotion(e).folder for e in emotions if book.emotion(e).folder}


def sequence_frames(model: FaceModel, family: str, emotion: str, level: int, ident: np.ndarray, n: int,
                    rng: np.random.Generator, cfg: CorpusConfig, gains: dict[str, float] | None = None):
    """The ``n`` frames of one sequence of ``emotion`` drawn from ``family``: (activation 0-1, scan) each."""
    aus, extra = _expression_fn(family, model)(emotion, level, rng)
    aus = scale_aus(aus, gains)
    act = activation_curve(n, Timing.sample(rng))
    blink = blink_curve(n, rng)
    session = int(rng.integers(2 ** 31))
    for t in range(n):
        a = float(act[t])
        frame_aus = {k: (a * l, a * r) for k, (l, r) in aus.items()}
        if blink[t] > 0:
            left, right = frame_aus.get("AU45", (0.0, 0.0))
            frame_aus["AU45"] = (max(blink[t], left), max(blink[t], right))
        yield a, sample_scan(model, emotion, level, np.random.default_rng(session),
                             expression=lambda e, l, r: frame_aus, family=family, identity=ident,
                             nuisance=cfg.nuisance, extra_delta=None if extra is None else a * extra, style=cfg.style)


def sequence_plan(cfg: CorpusConfig, out_dir: str | os.PathLike, frames: int) -> tuple[Path, int, dict[str, str]]:
    """(the output folder, made; the apex level, the highest of ``cfg.levels``; emotion -> BU-4DFE folder) of a
    sequence writer."""
    if frames < 2:
        raise ValueError("a sequence needs at least 2 frames")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out, max(cfg.levels), sequence_folders(cfg.emotions)


def write_sequences(cfg: CorpusConfig, models: Mapping[str, FaceModel], out_dir: str | os.PathLike, *,
                    frames: int = 16, progress: bool = False) -> Path:
    """Write the sequences (see the module doc); returns the manifest's path. Each sequence plays the family's
    expression at the highest of ``cfg.levels`` at its apex."""
    from affectvlm.fileio import atomic_write_bytes

    out, level, folders = sequence_plan(cfg, out_dir, frames)
    rows = []
    draws: list[list] = []
    for p in plan_subjects(cfg, models, stream=3, progress=progress):
        ident = sample_identity(p.model, p.rng, cfg.nuisance)
        gains = au_gains(p.model, cfg.au_gain_sd, p.rng)
        for family in p.families:
            for emotion, folder in folders.items():
                rel = f"{p.name}/{p.subject}/{folder}" + (f"_{family}" if len(p.families) > 1 else "")
                (out / rel).mkdir(parents=True, exist_ok=True)
                for t, (_, scan) in enumerate(sequence_frames(p.model, family, emotion, level, ident, frames,
                                                              p.rng, cfg, gains)):
                    atomic_write_bytes(out / rel / f"{t:03d}.ply", _ply_bytes(scan.mesh.vertices, scan.mesh.faces))
                    draws.append(draw_row(f"{rel}/{t:03d}.ply", scan))
                rows.append({"path": rel, "label": emotion, "subject": p.subject, "intensity": level,
                             "split": p.split, "family": family, "face_model": p.name})
    write_draws(draws, out)
    return write_manifest(rows, out)
