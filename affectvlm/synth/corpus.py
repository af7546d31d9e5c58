"""A labelled corpus of randomised scans from several face models and expression families, with a manifest.

    from affectvlm.synth.corpus import CorpusConfig, write_corpus
    write_corpus(CorpusConfig(subjects=200, families=("emfacs",)), {"ict-facekit": model}, "out/")

Writes ``out/<face model>/<subject>/<EM><level>_<family>.ply`` (binary PLY) and ``out/manifest.csv`` with the
columns of :data:`CORPUS_COLUMNS` (the trainer reads it with ``--layout manifest``; ``family`` and
``face_model`` let an evaluation hold out whole expression families and face models), and ``out/draws.csv``
with each scan's scanner-nuisance draws (:data:`DRAW_COLUMNS`). Subjects are split train/val/test by subject.
Deterministic per seed.

Expression families (:data:`FAMILIES`): ``emfacs`` and ``emfacs-alt`` (the AU sampler's distributions),
``recipes`` (the fixed recipe book, one AU prototype per emotion) and ``sculpt`` (a face model's own sculpted
emotion targets, e.g. FACSHuman's; only for models that have them).
"""
from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from affectvlm.errors import ConfigError
from affectvlm.synth.facemodel import FaceModel
from affectvlm.synth.randomised import Nuisance, RandomScan, sample_identity, sample_scan
from affectvlm.synth.style import StyleJitter

__all__ = ["CorpusConfig", "CORPUS_COLUMNS", "DRAW_COLUMNS", "FAMILIES", "CODES", "SubjectPlan", "au_gains",
           "draw_row", "make_scan", "parse_families", "plan_subjects", "scale_aus", "write_corpus", "write_draws",
           "write_manifest", "write_rows"]

CODES = {"neutral": "NE", "happiness": "HA", "sadness": "SA", "surprise": "SU", "fear": "FE", "disgust": "DI",
         "anger": "AN"}
CORPUS_COLUMNS = ("path", "label", "subject", "intensity", "split", "family", "face_model")
FAMILIES = ("emfacs", "emfacs-alt", "recipes", "sculpt")


def parse_families(text: str) -> tuple[str, ...]:
    """``"emfacs,recipes"`` -> ("emfacs", "recipes"); ConfigError for none or an unknown one."""
    fams = tuple(f.strip() for f in text.split(",") if f.strip())
    bad = [f for f in fams if f not in FAMILIES]
    if bad or not fams:
        raise ConfigError(f"--families {text!r}: unknown or no expression family {bad}; choose from "
                          f"{', '.join(FAMILIES)}")
    return fams


@dataclass(frozen=True)
class CorpusConfig:
    subjects: int = 40
    seed: int = 0
    families: tuple[str, ...] = ("emfacs",)
    levels: tuple[int, ...] = (1, 2, 3, 4)
    emotions: tuple[str, ...] = tuple(CODES)
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    nuisance: Nuisance = field(default_factory=lambda: Nuisance(vertices=(3000, 20000)))
    style: StyleJitter = field(default_factory=StyleJitter)
    au_gain_sd: float = 0.0  # per subject and AU, every intensity x exp(N(0, sd)): another sculptor's sizes
    crosstalk: float = 0.0  # share of expressive scans given 1-2 of the emotion's CROSSTALK AUs


# AUs that come with an emotion outside its EMFACS prototypes: in spontaneous and posed data (disgust with the brows
# lowered, anger with a sneer or a raised upper lip, fear and surprise with the lips parted or funnelled, sadness with
# the lids lowered or the gaze down) and in recipe books written by others
CROSSTALK: dict[str, tuple[str, ...]] = {
    "happiness": ("AU7", "AU14", "AU25", "AU26", "AU1"),
    "sadness": ("AU7", "AU17", "AU25", "AU43", "AU64", "AU20"),
    "surprise": ("AU7", "AU22", "AU25", "AU20"),
    "fear": ("AU7", "AU22", "AU25", "AU26"),
    "disgust": ("AU4", "AU6", "AU7", "AU17", "AU25", "AU43"),
    "anger": ("AU9", "AU10", "AU17", "AU18", "AU24", "AU26"),
}
_LEVEL_SCALE = {1: 0.3, 2: 0.55, 3: 0.8, 4: 1.0}


def add_crosstalk(aus: Mapping[str, tuple[float, float]], emotion: str, level: int,
                  rng: np.random.Generator) -> dict:
    """``aus`` plus 1-2 of ``emotion``'s :data:`CROSSTALK` AUs at 0.2-0.6 of full (times the level's scale), both
    sides; an AU already there keeps the larger intensity."""
    out = dict(aus)
    pool = CROSSTALK.get(emotion, ())
    if not pool or level <= 0:
        return out
    for au in rng.choice(pool, size=min(len(pool), int(rng.integers(1, 3))), replace=False):
        w = float(rng.uniform(0.2, 0.6)) * _LEVEL_SCALE.get(int(level), 1.0)
        left, right = out.get(str(au), (0.0, 0.0))
        out[str(au)] = (max(left, w), max(right, w))
    return out


def au_gains(model: FaceModel, sd: float, rng: np.random.Generator) -> dict[str, float]:
    """One subject's AU size factors, ``exp(N(0, sd))`` per AU of ``model`` ({} when ``sd`` is 0): sculptors differ
    in how far each unit moves (one's brow lowerer is three times another's), so a learner should not rely on the
    sizes of one sculptor's units relative to each other."""
    if sd <= 0:
        return {}
    return {au: float(np.exp(rng.normal(0.0, sd))) for au in model.action_units}


def scale_aus(aus: Mapping[str, tuple[float, float]], gains: Mapping[str, float] | None) -> dict:
    """``{AU: (left, right)}`` with each AU's intensities times its gain (AUs without one unchanged)."""
    if not gains:
        return dict(aus)
    return {au: (l * gains.get(au, 1.0), r * gains.get(au, 1.0)) for au, (l, r) in aus.items()}


def _expression_fn(family: str, model: FaceModel):
    """(emotion, level, rng) -> ({AU: (l, r)}, extra_delta | None) for ``family`` on ``model``."""
    if family in ("emfacs", "emfacs-alt", "recipes"):
        from affectvlm.synth import ausampler

        def fn(emotion, level, rng):  # neutral: the sampler's traces only (it has no level 0)
            return dict(ausampler.sample_expression(family, emotion, max(int(level), 1), rng).aus), None
        return fn
    if family == "sculpt":
        targets = model.meta.get("emotion_targets") or {}

        def fn(emotion, level, rng):
            if emotion == "neutral" or level == 0:
                return {}, None
            variants = targets.get(emotion)
            if not variants:
                raise KeyError(f"face model {model.name} has no sculpted target for {emotion}")
            t = variants[int(rng.integers(len(variants)))]
            scale = {1: 0.3, 2: 0.5, 3: 0.75, 4: 1.0}[int(level)] * float(np.exp(rng.normal(0, 0.08)))
            return {}, scale * np.asarray(t, dtype=np.float64)
        return fn
    raise ValueError(f"unknown expression family {family!r} (have {', '.join(FAMILIES)})")


def make_scan(model: FaceModel, family: str, emotion: str, level: int, rng: np.random.Generator, *,
              identity: np.ndarray | None = None, nuisance: Nuisance = Nuisance(),
              style: StyleJitter | None = None, gains: Mapping[str, float] | None = None,
              crosstalk: float = 0.0) -> RandomScan:
    """One scan of ``emotion`` at ``level`` drawn from ``family`` on ``model`` (see the module doc); ``gains``
    (:func:`au_gains`) scale each AU's intensities; with probability ``crosstalk`` the AU families get
    :func:`add_crosstalk`."""
    fn = _expression_fn(family, model)
    level = 0 if emotion == "neutral" else int(level)
    aus, extra = fn(emotion, level, rng)
    if crosstalk > 0 and level > 0 and family != "sculpt" and rng.random() < crosstalk:
        aus = add_crosstalk(aus, emotion, level, rng)
    aus = scale_aus(aus, gains)
    return sample_scan(model, emotion, level, rng, expression=lambda e, l, r: aus, family=family,
                       identity=identity, nuisance=nuisance, extra_delta=extra, style=style)


def _ply_bytes(v: np.ndarray, f: np.ndarray) -> bytes:
    head = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(v)}\nproperty float x\n"
            f"property float y\nproperty float z\nelement face {len(f)}\nproperty list uchar int vertex_indices\n"
            "end_header\n").encode()
    fr = np.empty(len(f), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    fr["n"] = 3
    fr["i"] = f
    return head + np.ascontiguousarray(v, dtype="<f4").tobytes() + fr.tobytes()


@dataclass
class SubjectPlan:
    """One subject of a corpus: its face model, the families that model can show, id, split and random stream."""

    name: str
    model: FaceModel
    families: list[str]
    subject: str
    split: str
    rng: np.random.Generator


def plan_subjects(cfg: CorpusConfig, models: Mapping[str, FaceModel], *, stream: int = 2,
                  progress: bool = False):
    """Every subject of every model, split by subject (deterministic per ``cfg.seed``); ``stream`` keeps the random
    draws of one writer (scans, sequences) apart from another's."""
    for mi, name in enumerate(sorted(models)):
        model = models[name]
        fams = [f for f in cfg.families if f != "sculpt" or model.meta.get("emotion_targets")]
        order = np.random.default_rng([cfg.seed, mi, 1]).permutation(cfg.subjects)
        n_test = int(round(cfg.test_fraction * cfg.subjects))
        n_val = int(round(cfg.val_fraction * cfg.subjects))
        split_of = {int(s): "test" if k < n_test else ("val" if k < n_test + n_val else "train")
                    for k, s in enumerate(order)}
        it = range(cfg.subjects)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc=name, unit="subject")
        for s in it:
            yield SubjectPlan(name, model, fams, f"{name[:2].upper()}{s:04d}", split_of[s],
                              np.random.default_rng([cfg.seed, mi, stream, s]))


# each scan's scanner-nuisance draws, written beside the manifest as draws.csv (booleans as 0/1)
DRAW_COLUMNS = ("path", "crop", "vertices", "noise_mm", "units", "holes", "yaw", "pitch", "roll", "closed_mouth",
                "eyeballs")


def draw_row(path: str, scan: RandomScan) -> list:
    """The :data:`DRAW_COLUMNS` row of one scan: what its nuisances drew."""
    n = scan.nuisance
    return [path, n.get("crop", ""), n.get("vertices", scan.mesh.n_vertices), n.get("noise_mm", 0.0),
            n.get("units", "mm"), n.get("holes", 0), n.get("yaw", 0.0), n.get("pitch", 0.0), n.get("roll", 0.0),
            int(bool(n.get("closed_mouth"))), int(bool(n.get("eyeballs")))]


def write_rows(path: Path, columns: Sequence[str], rows: Sequence[Sequence]) -> Path:
    """A CSV of ``columns`` then ``rows`` (lists), written atomically; returns ``path``."""
    from affectvlm.fileio import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())
    return path


def write_draws(draws: Sequence[list], out: Path) -> Path:
    """``out/draws.csv`` (:data:`DRAW_COLUMNS`, one row per scan in the manifest's order), written atomically."""
    return write_rows(out / "draws.csv", DRAW_COLUMNS, draws)


def write_manifest(rows: Sequence[dict], out: Path) -> Path:
    """``out/manifest.csv`` with :data:`CORPUS_COLUMNS`, written atomically; returns its path."""
    from affectvlm.fileio import atomic_write_text

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CORPUS_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out / "manifest.csv", buf.getvalue())
    return out / "manifest.csv"


def write_corpus(cfg: CorpusConfig, models: Mapping[str, FaceModel], out_dir: str | os.PathLike, *,
                 progress: bool = False) -> Path:
    """Write the corpus (see the module doc); returns the manifest's path."""
    from affectvlm.fileio import atomic_write_bytes

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    draws: list[list] = []
    for p in plan_subjects(cfg, models, stream=2, progress=progress):
        ident = sample_identity(p.model, p.rng, cfg.nuisance)
        gains = au_gains(p.model, cfg.au_gain_sd, p.rng)
        (out / p.name / p.subject).mkdir(parents=True, exist_ok=True)
        for family in p.families:
            for emotion in cfg.emotions:
                for level in ((0,) if emotion == "neutral" else cfg.levels):
                    scan = make_scan(p.model, family, emotion, level, p.rng, identity=ident, nuisance=cfg.nuisance,
                                     style=cfg.style, gains=gains, crosstalk=cfg.crosstalk)
                    rel = f"{p.name}/{p.subject}/{CODES[emotion]}{level}_{family}.ply"
                    atomic_write_bytes(out / rel, _ply_bytes(scan.mesh.vertices, scan.mesh.faces))
                    rows.append({"path": rel, "label": emotion, "subject": p.subject, "intensity": level,
                                 "split": p.split, "family": family, "face_model": p.name})
                    draws.append(draw_row(rel, scan))
    write_draws(draws, out)
    return write_manifest(rows, out)


def read_corpus(manifest: str | os.PathLike) -> list[dict]:
    """The manifest's rows (dicts of :data:`CORPUS_COLUMNS`), paths made absolute; InputError naming the
    manifest when it is missing or is not a corpus manifest."""
    from affectvlm.errors import InputError

    p = Path(manifest)
    p = p / "manifest.csv" if p.is_dir() else p
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            lacks = [c for c in ("path", "intensity") if c not in (reader.fieldnames or [])]
    except FileNotFoundError:
        raise InputError(str(manifest), "no corpus manifest there (a folder written by `affectvlm synth --layout "
                         "corpus` holds manifest.csv)") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(str(p), f"cannot read the corpus manifest ({e})") from None
    if lacks:
        raise InputError(str(p), f"not a corpus manifest (no column {lacks[0]!r}; written by `affectvlm synth "
                         "--layout corpus`)")
    for i, r in enumerate(rows, start=2):
        try:
            r["path"] = str(p.parent.absolute() / r["path"])
            r["intensity"] = int(r["intensity"])
        except (TypeError, ValueError):
            raise InputError(f"{p}, line {i}", f"intensity {r.get('intensity')!r} is not a whole number") from None
    return rows


def select(rows: Sequence[dict], **want) -> list[dict]:
    """Rows whose columns match (a value or a tuple of values), e.g. ``select(rows, family="recipes")``."""
    def ok(r):
        return all(r[k] in (v if isinstance(v, tuple) else (v,)) for k, v in want.items() if v is not None)
    return [r for r in rows if ok(r)]
