"""Corpus scans and sequences of any face model written under BU-3DFE's and BU-4DFE's names.

    write_bu3dfe(CorpusConfig(subjects=20, seed=341), {"rocketbox-...": model}, "out/")
    write_bu4dfe(CorpusConfig(subjects=8, levels=(4,)), models, "out4d/", frames=16)

The scans are the corpus sampler's (:mod:`affectvlm.synth.corpus`: randomised identities, the expression
families' AU draws, scanner nuisances), so a tree of a face model the ICT-FaceKit generator cannot make is read by
the same loaders and trainer as BU-3DFE itself (``affectvlm train --data DIR``). Files are VRML without texture or
landmarks::

    F0001/F0001_NE00WH_F3D.wrl, F0001/F0001_AN01WH_F3D.wrl ... (bu3dfe: one scan per emotion and level)
    F001/Angry/000.wrl ...                                       (bu4dfe: one sequence per emotion)

``manifest.csv`` has the BU layouts' columns plus ``family`` and ``face_model``; ``synth.json`` the settings;
``draws.csv`` each scan's (each frame's) scanner nuisances as drawn (as ``write_corpus`` writes it: crop, vertex count,
noise, units, holes cut, pose in degrees, a bridged mouth, eyeballs), so errors can be broken down by what the scanner
did. A sequence's frames share one scanner session: the same draws, except the vertex count of each resampled frame.
Subjects are numbered over all face models in name order; sex and ethnicity codes are drawn for the names only.
With one family a subject's scans (sequences) are exactly those of ``write_corpus`` (``write_sequences``) at the
same seed; with several, each scan (sequence) draws its family from a stream of its own.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from pathlib import Path

import numpy as np

from affectvlm.errors import ConfigError
from affectvlm.mesh import Mesh
from affectvlm.synth.corpus import (CODES, CorpusConfig, SubjectPlan, au_gains, draw_row, make_scan, plan_subjects,
                                    write_draws, write_rows)
from affectvlm.synth.facemodel import FaceModel
from affectvlm.synth.randomised import RandomScan, sample_identity
from affectvlm.synth.writers import _ETHNICITY_P, APEX_LABEL_THRESHOLD, ETHNICITIES, MANIFEST_COLUMNS, SEQ_COLUMNS

__all__ = ["BU_CORPUS_COLUMNS", "bu3dfe_scans", "read_config", "write_bu3dfe", "write_bu4dfe"]

BU_CORPUS_COLUMNS = MANIFEST_COLUMNS + ("family", "face_model")


def _count(cfg: CorpusConfig, models: Mapping[str, FaceModel], layout: str) -> int:
    """How many subjects the tree gets; ConfigError when the layout's names cannot number them."""
    n, digits = len(models) * cfg.subjects, 4 if layout == "bu3dfe" else 3
    if n > 10 ** digits - 1:
        raise ConfigError(f"the {layout} layout numbers subjects with {digits} digits: {len(models)} face model(s) x "
                          f"{cfg.subjects} subjects is over {10 ** digits - 1}")
    return n


def _named(cfg: CorpusConfig, models: Mapping[str, FaceModel], layout: str, stream: int,
           progress: bool) -> Iterator[tuple[str, str, SubjectPlan, np.random.Generator]]:
    """(BU name, ethnicity code, plan, family stream) of every subject, in ``plan_subjects``' order."""
    n = _count(cfg, models, layout)
    digits = 4 if layout == "bu3dfe" else 3
    rng = np.random.default_rng([cfg.seed, 7])
    sexes = np.where(rng.random(n) < 0.56, "F", "M")
    eths = rng.choice(len(ETHNICITIES), size=n, p=_ETHNICITY_P)
    counts = {"F": 0, "M": 0}
    for i, plan in enumerate(plan_subjects(cfg, models, stream=stream, progress=progress)):
        sex = str(sexes[i])
        counts[sex] += 1
        yield (f"{sex}{counts[sex]:0{digits}d}", ETHNICITIES[int(eths[i])], plan,
               np.random.default_rng([cfg.seed, 8, stream, i]))


def _family(plan: SubjectPlan, rng: np.random.Generator) -> str:
    return plan.families[0] if len(plan.families) == 1 else plan.families[int(rng.integers(len(plan.families)))]


def _write_mesh(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    from affectvlm.io.vrml import write_vrml

    path.parent.mkdir(parents=True, exist_ok=True)
    write_vrml(path, Mesh(np.asarray(vertices, np.float32), np.asarray(faces, np.int64)), None)  # atomic itself


def _finish(out: Path, rows: list[list], columns: tuple[str, ...], cfg: CorpusConfig,
            models: Mapping[str, FaceModel], layout: str, extra: dict) -> Path:
    from affectvlm.fileio import atomic_write_text

    write_rows(out / "manifest.csv", columns, rows)
    info = {"generator": "affectvlm.synth.bulayout", "layout": layout,
            "config": json.loads(json.dumps(asdict(cfg), default=str)), **extra,
            "face_models": {name: {"vertices": m.n_vertices, "triangles": int(len(m.faces))}
                            for name, m in sorted(models.items())}}
    atomic_write_text(out / "synth.json", json.dumps(info, indent=2) + "\n")
    return out / "manifest.csv"


def _tuples(x):
    if isinstance(x, dict):
        return {k: _tuples(v) for k, v in x.items()}
    return tuple(_tuples(i) for i in x) if isinstance(x, list) else x


def read_config(tree: str | os.PathLike) -> tuple[CorpusConfig, dict]:
    """The :class:`CorpusConfig` a tree of this module was written with (its ``synth.json``), and that file's
    other entries (layout, face models); ConfigError when the tree has none."""
    from affectvlm.synth.randomised import Nuisance
    from affectvlm.synth.style import StyleJitter

    path = Path(tree) / "synth.json"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        if info.get("generator") != "affectvlm.synth.bulayout":
            raise ValueError(f"written by {info.get('generator')!r}")
        c = {k: _tuples(v) for k, v in info["config"].items()}
        cfg = CorpusConfig(**{**c, "nuisance": Nuisance(**c["nuisance"]), "style": StyleJitter(**c["style"])})
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: not the synth.json of an 'affectvlm synth --layout bu3dfe|bu4dfe' tree ({e})")
    return cfg, info


def bu3dfe_scans(cfg: CorpusConfig, models: Mapping[str, FaceModel], *, progress: bool = False
                 ) -> Iterator[tuple[list, RandomScan]]:
    """Each scan of the BU-3DFE tree :func:`write_bu3dfe` writes, with its manifest row (:data:`BU_CORPUS_COLUMNS`),
    in the tree's order, without writing anything."""
    for sid, eth, p, fam_rng in _named(cfg, models, "bu3dfe", 2, progress):
        ident = sample_identity(p.model, p.rng, cfg.nuisance)
        gains = au_gains(p.model, cfg.au_gain_sd, p.rng)
        for emotion in cfg.emotions:
            for level in ((0,) if emotion == "neutral" else cfg.levels):
                family = _family(p, fam_rng)
                scan = make_scan(p.model, family, emotion, level, p.rng, identity=ident, nuisance=cfg.nuisance,
                                 style=cfg.style, gains=gains, crosstalk=cfg.crosstalk)
                rel = f"{sid}/{sid}_{CODES[emotion]}{level:02d}{eth}_F3D.wrl"
                yield [rel, emotion, sid, level, sid[0], eth, p.split, family, p.name], scan


def write_bu3dfe(cfg: CorpusConfig, models: Mapping[str, FaceModel], out_dir: str | os.PathLike, *,
                 progress: bool = False) -> Path:
    """A BU-3DFE tree: per subject one scan per emotion of ``cfg.emotions`` and level of ``cfg.levels`` (neutral
    once, as ``NE00``); returns the manifest's path."""
    _count(cfg, models, "bu3dfe")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[list] = []
    draws: list[list] = []
    for row, scan in bu3dfe_scans(cfg, models, progress=progress):
        _write_mesh(out / row[0], scan.mesh.vertices, scan.mesh.faces)
        rows.append(row)
        draws.append(draw_row(row[0], scan))
    write_draws(draws, out)
    return _finish(out, rows, BU_CORPUS_COLUMNS, cfg, models, "bu3dfe", {"draws": "draws.csv"})


def write_bu4dfe(cfg: CorpusConfig, models: Mapping[str, FaceModel], out_dir: str | os.PathLike, *,
                 frames: int = 16, progress: bool = False) -> Path:
    """A BU-4DFE tree: per subject one sequence per emotion (neutral -> apex at the highest of ``cfg.levels`` ->
    neutral), a row per frame labelled as the ICT-FaceKit writer labels them; returns the manifest's path."""
    from affectvlm.synth.corpus4d import sequence_frames, sequence_plan

    _count(cfg, models, "bu4dfe")
    out, level, folders = sequence_plan(cfg, out_dir, frames)
    rows: list[list] = []
    draws: list[list] = []
    for sid, eth, p, fam_rng in _named(cfg, models, "bu4dfe", 3, progress):
        ident = sample_identity(p.model, p.rng, cfg.nuisance)
        gains = au_gains(p.model, cfg.au_gain_sd, p.rng)
        for emotion, folder in folders.items():
            family = _family(p, fam_rng)
            for t, (a, scan) in enumerate(sequence_frames(p.model, family, emotion, level, ident, frames, p.rng,
                                                          cfg, gains)):
                rel = f"{sid}/{folder}/{t:03d}.wrl"
                _write_mesh(out / rel, scan.mesh.vertices, scan.mesh.faces)
                label = emotion if a >= APEX_LABEL_THRESHOLD else "neutral"
                rows.append([rel, label, sid, int(round(a * 4)) if label != "neutral" else 0, sid[0], eth, p.split,
                             f"{sid}/{folder}", emotion, t, f"{a:.4f}", family, p.name])
                draws.append(draw_row(rel, scan))
    write_draws(draws, out)
    return _finish(out, rows, MANIFEST_COLUMNS + SEQ_COLUMNS + ("family", "face_model"), cfg, models, "bu4dfe",
                   {"frames": frames, "label_rule": f"label = sequence emotion where activation >= "
                                                   f"{APEX_LABEL_THRESHOLD}, else neutral", "draws": "draws.csv"})
