"""Synthetic datasets written in the real datasets' layouts, streamed to disk one scan at a time.

BU-3DFE layout (``layout="bu3dfe"``)::

    F0001/F0001_NE00WH_F3D.wrl  + _F3D.bmp (texture) + _F3D.bnd (83 landmarks: index x y z, tab separated)
    F0001/F0001_AN01WH_F3D.wrl ... F0001_SU04WH_F3D.wrl   (6 emotions x intensities 1-4)

BU-4DFE layout (``layout="bu4dfe"``)::

    F001/Happy/000.wrl + 000.bmp, 001.wrl ...            (neutral -> onset -> apex -> offset -> neutral)
    BU4DFE_BND_V1.1/F001/Happy/000.bnd                   (landmarks, as the separate release)

Both write ``manifest.csv`` (columns :data:`MANIFEST_COLUMNS`; ``path`` relative to the manifest's folder)
and ``synth.json`` (settings and provenance). Subjects are split into train/val/test by subject, never
shared. Everything is a function of the seed: the same seed and settings give byte-identical files.
In the BU-4DFE manifest every frame is a row: ``label`` is the sequence's emotion where its activation is
at least 0.5 and ``neutral`` elsewhere; ``sequence_label`` is the sequence's emotion.
"""
from __future__ import annotations

import csv
import io
import json
import os
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from affectvlm.errors import ConfigError
from affectvlm.mesh import Mesh
from affectvlm.synth.facekit import FaceKit, load_facekit
from affectvlm.synth.recipes import RecipeBook, SubjectStyle, merge_weights
from affectvlm.synth.rig import FaceRig, Pose
from affectvlm.synth.sequence import Timing, activation_curve, blink_curve, drift
from affectvlm.synth.texture import skin_texture

LAYOUTS = ("bu3dfe", "bu4dfe")
ETHNICITIES = ("WH", "BL", "AE", "AM", "IN", "LA")
# roughly BU-3DFE's mix (51 % white, 24 % east-asian, 9 % black, 8 % latino, 6 % indian, 2 % middle-east)
_ETHNICITY_P = np.array([0.51, 0.09, 0.24, 0.02, 0.06, 0.08])
MANIFEST_COLUMNS = ("path", "label", "subject", "intensity", "sex", "ethnicity", "split")
SEQ_COLUMNS = ("sequence", "sequence_label", "frame", "activation")
APEX_LABEL_THRESHOLD = 0.5


@dataclass
class SynthConfig:
    """Settings of one generated dataset (all are recorded in ``synth.json``)."""

    subjects: int = 10
    seed: int = 0
    layout: str = "bu3dfe"
    intensities: tuple[int, ...] = (1, 2, 3, 4)
    emotions: tuple[str, ...] | None = None  # default: every emotion with an action in the recipes
    neutral: bool = True  # BU-3DFE: one NE00 scan per subject
    frames: int = 30  # BU-4DFE frames per sequence (the real ones have ~100 at 25 fps)
    fps: float = 25.0
    decimate: float = 1.0
    crop: str = "ellipse"
    texture_size: int = 256  # 0 writes no texture
    test_frac: float = 0.2
    val_frac: float = 0.1
    recipes: str | None = None
    landmarks: bool = True

    def validate(self) -> None:
        if self.layout not in LAYOUTS:
            raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)}, not {self.layout!r}")
        if not 1 <= self.subjects <= 9999:
            raise ConfigError(f"subjects must be in 1-9999, not {self.subjects}")
        if self.layout == "bu4dfe" and self.subjects > 999:
            raise ConfigError("the BU-4DFE layout numbers subjects with 3 digits: at most 999 subjects")
        if not 1 <= self.frames <= 10000:
            raise ConfigError(f"frames must be in 1-10000, not {self.frames}")
        if not self.intensities or any(not 1 <= int(i) <= 9 for i in self.intensities):
            raise ConfigError(f"intensities must be levels 1-4 (as in BU-3DFE), not {self.intensities}")
        if not (0 <= self.test_frac < 1 and 0 <= self.val_frac < 1 and self.test_frac + self.val_frac < 1):
            raise ConfigError("test_frac and val_frac must be in [0, 1) and sum to less than 1")
        if not (self.texture_size == 0 or 16 <= self.texture_size <= 4096):
            raise ConfigError(f"texture_size must be 0 (none) or 16-4096, not {self.texture_size}")
        if self.seed < 0:
            raise ConfigError("seed must be a non-negative integer")


@dataclass(frozen=True)
class Subject:
    index: int
    sex: str
    number: int
    ethnicity: str
    split: str

    def name(self, layout: str) -> str:
        return f"{self.sex}{self.number:04d}" if layout == "bu3dfe" else f"{self.sex}{self.number:03d}"


@dataclass
class _SubjectData:
    identity: np.ndarray
    style: SubjectStyle
    texture: np.ndarray | None
    extra: dict = field(default_factory=dict)


def _key(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


class Synthesizer:
    """Makes subjects, scans and sequences; :func:`generate` writes them."""

    def __init__(self, kit: FaceKit, config: SynthConfig, recipes: RecipeBook | None = None):
        config.validate()
        self.kit = kit
        self.config = config
        self.book = recipes or RecipeBook.load(config.recipes)
        self.book.check_blendshapes(kit.expression_names, str(kit.folder))
        names = config.emotions or tuple(self.book.expressive)
        for n in names:
            self.book.emotion(n)
        self.emotions = tuple(names)
        for lvl in config.intensities:
            if int(lvl) not in self.book.intensity_levels:
                raise ConfigError(f"intensity {lvl} is not defined in {self.book.source}")
        self.rig = FaceRig(kit, crop=config.crop, decimate=config.decimate)

    # ------------------------------------------------------------------ subjects
    def subjects(self) -> list[Subject]:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, 0])
        sexes = np.where(rng.random(cfg.subjects) < 0.56, "F", "M")
        eths = rng.choice(len(ETHNICITIES), size=cfg.subjects, p=_ETHNICITY_P)
        order = np.random.default_rng([cfg.seed, 1]).permutation(cfg.subjects)
        n_test = int(round(cfg.test_frac * cfg.subjects))
        n_val = int(round(cfg.val_frac * cfg.subjects))
        if cfg.subjects >= 3:  # a requested split gets at least one subject, train keeps at least one
            n_test = max(n_test, 1 if cfg.test_frac > 0 else 0)
            n_val = max(n_val, 1 if cfg.val_frac > 0 else 0)
        while n_test + n_val >= cfg.subjects and (n_test or n_val):
            if n_val >= n_test and n_val:
                n_val -= 1
            else:
                n_test -= 1
        split = np.array(["train"] * cfg.subjects, dtype=object)
        split[order[:n_test]] = "test"
        split[order[n_test:n_test + n_val]] = "val"
        counts = {"F": 0, "M": 0}
        out = []
        for i in range(cfg.subjects):
            counts[str(sexes[i])] += 1
            out.append(Subject(i, str(sexes[i]), counts[str(sexes[i])], ETHNICITIES[int(eths[i])], str(split[i])))
        return out

    def subject_data(self, subject: Subject) -> _SubjectData:
        rng = np.random.default_rng([self.config.seed, 2, subject.index])
        identity = rng.normal(0.0, self.book.identity_sd, self.kit.n_identities)
        style = self.book.subject_style(rng, self.kit.expression_names)
        tex_rng = np.random.default_rng([self.config.seed, 3, subject.index])
        texture = (skin_texture(self.kit, subject.ethnicity, tex_rng, self.config.texture_size)
                   if self.config.texture_size else None)
        return _SubjectData(identity, style, texture)

    # ------------------------------------------------------------------ scans
    def scan(self, subject: Subject, data: _SubjectData, emotion: str, level: int) -> tuple[Mesh, np.ndarray]:
        """One static scan: (mesh in mm, its 83 landmarks)."""
        rng = np.random.default_rng([self.config.seed, 4, subject.index, _key(emotion), level])
        scale = self.book.intensity_scale(level, rng) if level else 0.0
        weights = merge_weights(self.book.expression_weights(emotion, scale, data.style, rng) if scale else {},
                                self.book.unrelated_weights(rng, self.kit.expression_names))
        v = self.rig.shape(data.identity, weights)
        vmm = self.rig.to_scan(v, self.book.sample_pose(rng), noise_mm=self.book.noise_mm, rng=rng)
        meta = {"label": emotion, "intensity": level, "subject": subject.name(self.config.layout)}
        return self.rig.mesh(vmm, texture=data.texture, meta=meta), self.rig.landmarks(vmm)

    def sequence(self, subject: Subject, data: _SubjectData, emotion: str
                 ) -> Iterator[tuple[int, Mesh, np.ndarray, float]]:
        """Frames of one 4D sequence: (frame index, mesh, landmarks, activation), generated lazily."""
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, 5, subject.index, _key(emotion)])
        n = cfg.frames
        curve = activation_curve(n, Timing.sample(rng))
        apex = self.book.intensity_scale(max(self.book.intensity_levels), rng)
        apex_w = self.book.expression_weights(emotion, 1.0, data.style, rng)
        steady = self.book.unrelated_weights(rng, self.kit.expression_names, blink=False)
        blinks = blink_curve(n, rng, fps=cfg.fps)
        pose0 = self.book.sample_pose(rng)
        sway = [drift(n, rng, 1.5) for _ in range(3)]
        for t in range(n):
            frame_rng = np.random.default_rng([cfg.seed, 6, subject.index, _key(emotion), t])
            a = float(curve[t])
            w = {k: v * a * apex for k, v in apex_w.items()}
            blink = {f"eyeBlink{s}": blinks[t] * self.book.blink_max * 1.6 for s in ("_L", "_R")
                     if f"eyeBlink{s}" in self.kit.expression_names and blinks[t] > 0}
            v = self.rig.shape(data.identity, merge_weights(w, steady, blink))
            pose = Pose(pose0.yaw + sway[0][t], pose0.pitch + sway[1][t], pose0.roll + sway[2][t], pose0.origin)
            vmm = self.rig.to_scan(v, pose, noise_mm=self.book.noise_mm, rng=frame_rng)
            meta = {"label": emotion, "frame": t, "activation": a, "subject": subject.name(cfg.layout)}
            yield t, self.rig.mesh(vmm, texture=data.texture, meta=meta), self.rig.landmarks(vmm), a


def write_bnd(path: Path, ids: np.ndarray, points: np.ndarray) -> None:
    """BU-3DFE landmark file: one ``index<TAB>x<TAB>y<TAB>z`` row per landmark."""
    lines = [f"{int(i)}\t{p[0]:.6f}\t{p[1]:.6f}\t{p[2]:.6f}\n" for i, p in zip(ids, points)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines), encoding="utf-8")


def _write_scan(path: Path, mesh: Mesh) -> None:
    from affectvlm.io.vrml import write_vrml

    write_vrml(path, mesh, path.with_suffix(".bmp").name if mesh.texture is not None else None)


def generate(config: SynthConfig, facekit: str | os.PathLike | FaceKit, out_dir: str | os.PathLike, *,
             progress: bool = True) -> Path:
    """Write a synthetic dataset into ``out_dir``; returns the manifest's path."""
    from tqdm.auto import tqdm

    kit = facekit if isinstance(facekit, FaceKit) else load_facekit(facekit)
    synth = Synthesizer(kit, config)
    cfg = synth.config
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    subjects = synth.subjects()
    if cfg.layout == "bu3dfe":
        jobs = [("neutral", 0)] if cfg.neutral and "neutral" in synth.book.emotions else []
        jobs += [(e, int(lvl)) for e in synth.emotions for lvl in cfg.intensities]
        total = len(subjects) * len(jobs)
        columns = MANIFEST_COLUMNS
    else:
        for e in synth.emotions:
            if not synth.book.emotion(e).folder:
                raise ConfigError(f"emotion {e!r} has no BU-4DFE folder name in {synth.book.source}")
        total = len(subjects) * len(synth.emotions) * cfg.frames
        columns = MANIFEST_COLUMNS + SEQ_COLUMNS
    manifest = out / "manifest.csv"
    tmp = manifest.with_name(manifest.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh, \
            tqdm(total=total, disable=not progress, unit="scan" if cfg.layout == "bu3dfe" else "frame",
                 desc=f"synth {cfg.layout}") as bar:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        for subj in subjects:
            data = synth.subject_data(subj)
            sid = subj.name(cfg.layout)
            common = (sid,)
            if cfg.layout == "bu3dfe":
                for emotion, level in jobs:
                    code = synth.book.emotion(emotion).code
                    stem = f"{sid}_{code}{level:02d}{subj.ethnicity}_F3D"
                    path = out / sid / f"{stem}.wrl"
                    mesh, lms = synth.scan(subj, data, emotion, level)
                    _write_scan(path, mesh)
                    if cfg.landmarks:
                        write_bnd(path.with_suffix(".bnd"), synth.rig.landmark_ids, lms)
                    writer.writerow([path.relative_to(out).as_posix(), emotion, *common, level, subj.sex,
                                     subj.ethnicity, subj.split])
                    bar.update(1)
            else:
                for emotion in synth.emotions:
                    folder = synth.book.emotion(emotion).folder
                    seq_dir = out / sid / folder
                    for t, mesh, lms, a in synth.sequence(subj, data, emotion):
                        path = seq_dir / f"{t:03d}.wrl"
                        _write_scan(path, mesh)
                        if cfg.landmarks:
                            write_bnd(out / "BU4DFE_BND_V1.1" / sid / folder / f"{t:03d}.bnd",
                                      synth.rig.landmark_ids, lms)
                        label = emotion if a >= APEX_LABEL_THRESHOLD else "neutral"
                        level = int(round(a * 4)) if label != "neutral" else 0
                        writer.writerow([path.relative_to(out).as_posix(), label, *common, level, subj.sex,
                                         subj.ethnicity, subj.split, f"{sid}/{folder}", emotion, t, f"{a:.4f}"])
                        bar.update(1)
    os.replace(tmp, manifest)
    info = {
        "generator": "affectvlm.synth",
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "recipes": synth.book.source if cfg.recipes else "affectvlm/data/recipes/default.yaml",
        "model": {"name": "ICT-FaceKit (USC ICT, MIT licence)", "identity_modes": kit.n_identities,
                  "blendshapes": len(kit.expression_names)},
        "mesh": {"vertices": synth.rig.n_vertices, "triangles": int(len(synth.rig.faces)), "units": "mm"},
        "subjects": [{"subject": s.name(cfg.layout), "sex": s.sex, "ethnicity": s.ethnicity, "split": s.split}
                     for s in subjects],
        "label_rule": (None if cfg.layout == "bu3dfe" else
                       f"label = sequence emotion where activation >= {APEX_LABEL_THRESHOLD}, else neutral"),
    }
    buf = io.StringIO()
    json.dump(info, buf, indent=2)
    (out / "synth.json").write_text(buf.getvalue() + "\n", encoding="utf-8")
    return manifest
