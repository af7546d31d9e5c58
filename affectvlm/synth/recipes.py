"""Expression recipes as data: FACS action units -> blendshapes, emotions as AU prototypes, and the
randomisation (intensity, per-subject idiosyncrasy, unrelated activations, pose, scanner noise).

The default recipe is ``affectvlm/data/recipes/default.yaml``; users pass their own with ``--recipes``.
Every problem in a recipe file raises :class:`~affectvlm.errors.InputError` naming the file and the key.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from affectvlm import yamltext
from affectvlm.errors import InputError
from affectvlm.synth.presets import is_preset, preset_recipes
from affectvlm.synth.rig import Pose

DEFAULT_RECIPES = Path(__file__).resolve().parent.parent / "data" / "recipes" / "default.yaml"
_AU_RE = re.compile(r"^AU\d{1,2}$")
_CODE_RE = re.compile(r"^[A-Z]{2}$")
MAX_WEIGHT = 2.0
_GAZE = ("eyeLookDown", "eyeLookUp", "eyeLookIn", "eyeLookOut")


@dataclass(frozen=True)
class Emotion:
    """One class: ``code`` for BU-3DFE names (``HA``), ``folder`` for BU-4DFE (``Happy``), AU apex weights."""

    name: str
    code: str
    folder: str | None
    aus: dict[str, float]
    source: str = ""


@dataclass(frozen=True)
class SubjectStyle:
    """Fixed per-subject idiosyncrasy: a gain per AU and a gain per left/right blendshape."""

    au_gain: dict[str, float]
    side_gain: dict[str, float]


@dataclass
class RecipeBook:
    source: str
    action_units: dict[str, dict[str, float]]
    au_names: dict[str, str]
    emotions: dict[str, Emotion]
    intensity_levels: dict[int, float]
    intensity_jitter: float = 0.05
    au_jitter: float = 0.08
    identity_sd: float = 1.0
    au_gain_sd: float = 0.15
    asymmetry_sd: float = 0.08
    blink_probability: float = 0.15
    blink_max: float = 0.5
    gaze_max: float = 0.3
    other_max: float = 0.06
    other_count: int = 3
    rotation_sd_deg: float = 3.0
    origin_mm: float = 150.0
    noise_mm: float = 0.12
    raw: dict = field(default_factory=dict, repr=False)

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> "RecipeBook":
        """Read and validate a recipe file, YAML or JSON (the packaged default when ``path`` is None)."""
        p = Path(path) if path is not None else DEFAULT_RECIPES
        src = str(p)
        try:
            text = p.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(src, f"cannot read recipe file: {exc}") from None
        if p.suffix.lower() == ".json":
            try:
                data = json.loads(text)
            except ValueError as exc:
                raise InputError(src, f"not valid JSON: {exc}") from None
        else:
            try:
                data = yamltext.safe_load(text)
            except yaml.YAMLError as exc:
                raise InputError(src, f"not valid YAML: {exc}") from None
        return cls.from_dict(data, src)

    @classmethod
    def from_dict(cls, data: Any, src: str = "<recipes>") -> "RecipeBook":
        """A validated book from a parsed recipe file, or from a preset (emotion -> ARKit blendshape weights,
        :mod:`affectvlm.synth.presets`)."""
        if is_preset(data):
            data = preset_recipes(data, src)
        if not isinstance(data, dict):
            raise InputError(src, "a recipe file must be a mapping with 'action_units' and 'emotions'")
        unknown = set(data) - {"version", "action_units", "emotions", "intensity", "subject", "extras", "pose", "scan"}
        if unknown:
            raise InputError(src, f"unknown top-level keys: {', '.join(sorted(map(str, unknown)))}")
        aus_raw = _mapping(data.get("action_units"), src, "action_units", required=True)
        action_units: dict[str, dict[str, float]] = {}
        au_names: dict[str, str] = {}
        for au, spec in aus_raw.items():
            au = str(au)
            if not _AU_RE.match(au):
                raise InputError(src, f"action_units: {au!r} is not an action-unit name like 'AU12'")
            spec = _mapping(spec, src, f"action_units.{au}", required=True)
            bs = _mapping(spec.get("blendshapes"), src, f"action_units.{au}.blendshapes", required=True)
            action_units[au] = {str(k): _number(v, src, f"action_units.{au}.blendshapes.{k}", 0.0, MAX_WEIGHT)
                                for k, v in bs.items()}
            au_names[au] = str(spec.get("name", au))
        em_raw = _mapping(data.get("emotions"), src, "emotions", required=True)
        emotions: dict[str, Emotion] = {}
        codes: set[str] = set()
        for name, spec in em_raw.items():
            name = str(name)
            spec = _mapping(spec, src, f"emotions.{name}", required=True)
            code = str(spec.get("code", ""))
            if not _CODE_RE.match(code) or code in codes:
                raise InputError(src, f"emotions.{name}.code must be a unique two-letter code like 'HA', not {code!r}")
            codes.add(code)
            aus = _mapping(spec.get("aus", {}), src, f"emotions.{name}.aus")
            weights = {}
            for au, w in aus.items():
                if str(au) not in action_units:
                    raise InputError(src, f"emotions.{name}.aus: {au!r} is not defined under action_units")
                weights[str(au)] = _number(w, src, f"emotions.{name}.aus.{au}", 0.0, MAX_WEIGHT)
            folder = spec.get("folder")
            if weights and not folder:
                raise InputError(src, f"emotions.{name}.folder (the BU-4DFE folder name, e.g. 'Happy') is missing")
            emotions[name] = Emotion(name, code, str(folder) if folder else None, weights, str(spec.get("source", "")))
        if not emotions:
            raise InputError(src, "emotions: at least one emotion is needed")
        inten = _mapping(data.get("intensity", {}), src, "intensity")
        levels_raw = _mapping(inten.get("levels", {1: 0.3, 2: 0.55, 3: 0.8, 4: 1.0}), src, "intensity.levels")
        levels = {}
        for k, v in levels_raw.items():
            try:
                level = int(k)
            except (TypeError, ValueError):
                raise InputError(src, f"intensity.levels: {k!r} is not a level number 1-9") from None
            if not 1 <= level <= 9:
                raise InputError(src, f"intensity.levels: level {level} is outside 1-9")
            levels[level] = _number(v, src, f"intensity.levels.{k}", 0.0, MAX_WEIGHT)
        book = cls(source=src, action_units=action_units, au_names=au_names, emotions=emotions,
                   intensity_levels=dict(sorted(levels.items())), raw=data)
        sections = {
            "intensity": {"jitter": ("intensity_jitter", 0, 0.5), "au_jitter": ("au_jitter", 0, 0.5)},
            "subject": {"identity_sd": ("identity_sd", 0, 3), "au_gain_sd": ("au_gain_sd", 0, 1),
                        "asymmetry_sd": ("asymmetry_sd", 0, 0.5)},
            "extras": {"blink_probability": ("blink_probability", 0, 1), "blink_max": ("blink_max", 0, 1),
                       "gaze_max": ("gaze_max", 0, 1), "other_max": ("other_max", 0, 0.5),
                       "other_count": ("other_count", 0, 20)},
            "pose": {"rotation_sd_deg": ("rotation_sd_deg", 0, 20), "origin_mm": ("origin_mm", 0, 10000)},
            "scan": {"noise_mm": ("noise_mm", 0, 5)},
        }
        for sec, keys in sections.items():
            d = _mapping(data.get(sec, {}), src, sec)
            extra = set(map(str, d)) - set(keys) - ({"levels"} if sec == "intensity" else set())
            if extra:
                raise InputError(src, f"{sec}: unknown keys {', '.join(sorted(extra))}")
            for key, (attr, lo, hi) in keys.items():
                if key in d:
                    val = _number(d[key], src, f"{sec}.{key}", lo, hi)
                    setattr(book, attr, int(val) if attr == "other_count" else val)
        return book

    def check_blendshapes(self, available: tuple[str, ...] | list[str], model: str) -> None:
        """Fail early, naming the recipe file, when an AU uses a blendshape the model lacks."""
        have = set(available)
        for au, bs in self.action_units.items():
            missing = sorted(set(bs) - have)
            if missing:
                raise InputError(self.source, f"action_units.{au} uses blendshapes missing from the model in "
                                              f"{model}: {', '.join(missing)}")

    def emotion(self, name: str) -> Emotion:
        try:
            return self.emotions[name]
        except KeyError:
            raise InputError(self.source, f"no emotion {name!r} (have {', '.join(self.emotions)})") from None

    @property
    def expressive(self) -> list[str]:
        """Emotions with an action (everything but neutral), in file order."""
        return [n for n, e in self.emotions.items() if e.aus]

    # ---------------------------------------------------------------- sampling
    def subject_style(self, rng: np.random.Generator, blendshapes: tuple[str, ...]) -> SubjectStyle:
        au_gain = {au: float(np.exp(rng.normal(0.0, self.au_gain_sd))) for au in sorted(self.action_units)}
        sides = sorted({b[:-2] for b in blendshapes if b.endswith(("_L", "_R"))})
        side_gain = {}
        for base in sides:
            d = float(np.clip(rng.normal(0.0, self.asymmetry_sd), -0.4, 0.4))
            side_gain[base + "_L"], side_gain[base + "_R"] = 1.0 + d, 1.0 - d
        return SubjectStyle(au_gain, side_gain)

    def intensity_scale(self, level: int, rng: np.random.Generator) -> float:
        if level == 0:
            return 0.0
        if level not in self.intensity_levels:
            raise InputError(self.source, f"intensity level {level} is not defined under intensity.levels "
                                          f"({', '.join(map(str, self.intensity_levels))})")
        return float(self.intensity_levels[level] * np.exp(rng.normal(0.0, self.intensity_jitter)))

    def expression_weights(self, emotion: str, scale: float, style: SubjectStyle,
                           rng: np.random.Generator) -> dict[str, float]:
        """Blendshape weights of ``emotion`` at activation ``scale`` (0 = neutral, 1 = intensity-4 apex)."""
        out: dict[str, float] = {}
        emo = self.emotion(emotion)
        for au in sorted(emo.aus):
            a = emo.aus[au] * scale * style.au_gain.get(au, 1.0) * float(np.exp(rng.normal(0.0, self.au_jitter)))
            for bs, w in self.action_units[au].items():
                out[bs] = out.get(bs, 0.0) + a * w * style.side_gain.get(bs, 1.0)
        return {k: float(np.clip(v, 0.0, MAX_WEIGHT)) for k, v in out.items()}

    def unrelated_weights(self, rng: np.random.Generator, blendshapes: tuple[str, ...],
                          *, blink: bool | None = None) -> dict[str, float]:
        """Small activations unrelated to the emotion: a blink, a gaze shift, a few random twitches."""
        out: dict[str, float] = {}
        have = set(blendshapes)
        do_blink = rng.random() < self.blink_probability if blink is None else blink
        b = rng.uniform(0.2, 1.0) * self.blink_max
        if do_blink:
            for s in ("_L", "_R"):
                if "eyeBlink" + s in have:
                    out["eyeBlink" + s] = float(b * rng.uniform(0.9, 1.1))
        g = rng.uniform(0.0, self.gaze_max)
        direction = _GAZE[int(rng.integers(len(_GAZE)))]
        for s in ("_L", "_R"):
            if direction + s in have:
                out[direction + s] = float(g)
        pool = sorted(have - set(out))
        k = int(rng.integers(0, self.other_count + 1)) if pool else 0
        for name in rng.choice(pool, size=min(k, len(pool)), replace=False) if k else []:
            out[str(name)] = out.get(str(name), 0.0) + float(rng.uniform(0.0, self.other_max))
        return out

    def sample_pose(self, rng: np.random.Generator) -> Pose:
        sd = self.rotation_sd_deg
        yaw, pitch, roll = (float(x) for x in np.clip(rng.normal(0.0, sd, 3), -3 * sd, 3 * sd))
        origin = tuple(float(x) for x in rng.uniform(-self.origin_mm, self.origin_mm, 3))
        return Pose(yaw, pitch, roll, origin)


def merge_weights(*parts: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for p in parts:
        for k, v in p.items():
            out[k] = out.get(k, 0.0) + v
    return {k: float(min(v, MAX_WEIGHT)) for k, v in out.items()}


def _mapping(value: Any, src: str, key: str, *, required: bool = False) -> dict:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise InputError(src, f"{key} must be a mapping, not {type(value).__name__}")
    return value


def _number(value: Any, src: str, key: str, lo: float, hi: float) -> float:
    """``value`` as a float in [lo, hi], else one InputError naming the file and ``key`` (shared with ausampler)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(src, f"{key}: must be a number, not {value!r}")
    v = float(value)
    if not math.isfinite(v) or not lo <= v <= hi:
        raise InputError(src, f"{key}: {value!r} is outside [{lo}, {hi}]")
    return v
