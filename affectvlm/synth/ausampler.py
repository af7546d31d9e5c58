"""Expressions as distributions of FACS action units, independent of any face model.

A sample is an :class:`AUExpression`: per-AU ``(left, right)`` intensities (1.0 = a face model's sculpted full
target) that :func:`affectvlm.synth.facemodel.apply_aus` puts on any :class:`~affectvlm.synth.facemodel.FaceModel`.
Families (so whole families can be held out):

- ``"emfacs"``: EMFACS prototypes and major variants (``affectvlm/data/recipes/emfacs.yaml``), a shared per-scan
  scale on the FACS A-E letters per level, per-AU gain ranges, optional AUs, left/right asymmetry, blends, traces.
- ``"emfacs-alt"``: only the variants not marked ``primary`` (all of them where an emotion has none), each AU
  with its own level draw and a fixed gain law, no blends.
- ``"recipes"``: the fixed recipes of a :class:`~affectvlm.synth.recipes.RecipeBook`, symmetric, no traces.
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from affectvlm import yamltext
from affectvlm.errors import InputError
from affectvlm.synth.recipes import MAX_WEIGHT, RecipeBook, _number

__all__ = ["AUExpression", "AUSampler", "Variant", "FAMILIES", "DEFAULT_EMFACS", "recipe_expression",
           "sample_expression"]

DEFAULT_EMFACS = Path(__file__).resolve().parent.parent / "data" / "recipes" / "emfacs.yaml"
_AU_RE = re.compile(r"^AU\d{1,2}$")
_LETTERS = ("A", "B", "C", "D", "E")
Range = tuple[float, float]


@dataclass(frozen=True)
class AUExpression:
    """One sampled expression: ``aus`` maps ``"AU12"`` -> ``(left, right)`` intensity in [0, ~1.2]."""

    emotion: str
    level: int
    family: str
    variant: str
    aus: dict[str, tuple[float, float]]


@dataclass(frozen=True)
class Variant:
    """One EMFACS combination: required AUs, one-of groups, optional groups (gain ranges per AU)."""

    name: str
    weight: float
    primary: bool
    required: dict[str, Range]
    one_of: tuple[dict[str, Range], ...] = ()
    optional: tuple[tuple[float, dict[str, Range]], ...] = ()
    unilateral: tuple[str, ...] = ()
    source: str = ""


@dataclass
class AUSampler:
    """The ``emfacs`` / ``emfacs-alt`` sampler; build with :meth:`load`."""

    source: str
    variants: dict[str, tuple[Variant, ...]]
    letters: dict[str, float]
    levels: dict[int, Range]
    max_intensity: float
    asym_scan_sd: float
    asym_au_sd: float
    asym_max: float
    unilateral_p: float
    unilateral_keep: Range
    blend_p: float
    blend_weight: Range
    traces: dict[str, tuple[float, Range]]
    alt_gamma: float

    @property
    def emotions(self) -> tuple[str, ...]:
        """Emotion names in file order."""
        return tuple(self.variants)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> "AUSampler":
        """Read and validate an EMFACS sampler YAML (the packaged ``emfacs.yaml`` when ``path`` is None)."""
        p = Path(path) if path is not None else DEFAULT_EMFACS
        src = str(p)
        try:
            data = yamltext.safe_load(p.read_text("utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(src, f"cannot read AU sampler file: {exc}") from None
        except yaml.YAMLError as exc:
            raise InputError(src, "not valid YAML: " + " ".join(str(exc).split())) from None
        return cls.from_dict(data, src)

    @classmethod
    def from_dict(cls, data: Any, src: str = "<emfacs>") -> "AUSampler":
        """Validate parsed YAML; every problem raises ``InputError(src, "key: problem")``."""
        d = _map(data, src, "(top level)", required=True)
        _keys(d, src, "(top level)", {"version", "intensity", "asymmetry", "blends", "traces", "alt", "emotions"})
        inten = _map(d.get("intensity"), src, "intensity")
        _keys(inten, src, "intensity", {"letters", "levels", "max"})
        letters_raw = _map(inten.get("letters"), src, "intensity.letters")
        if set(map(str, letters_raw)) != set(_LETTERS):
            raise InputError(src, "intensity.letters: needs exactly the FACS letters A, B, C, D, E")
        letters = {str(k): _num(v, src, f"intensity.letters.{k}", 0.0, 2.0) for k, v in letters_raw.items()}
        if any(letters[a] >= letters[b] for a, b in zip(_LETTERS, _LETTERS[1:])):
            raise InputError(src, "intensity.letters: values must increase from A to E")
        max_int = _num(inten.get("max", 1.2), src, "intensity.max", 0.1, MAX_WEIGHT)
        levels: dict[int, Range] = {}
        for k, v in _map(inten.get("levels"), src, "intensity.levels").items():
            key = f"intensity.levels.{k}"
            if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 9:
                raise InputError(src, f"{key}: the level must be a whole number 1-9")
            if not (isinstance(v, list) and len(v) == 2 and all(str(x) in letters for x in v)):
                raise InputError(src, f"{key}: must be [from letter, to letter], e.g. [A, B]")
            lo, hi = letters[str(v[0])], letters[str(v[1])]
            if lo > hi:
                raise InputError(src, f"{key}: {v[0]} is above {v[1]}")
            levels[k] = (lo, hi)
        if not levels:
            raise InputError(src, "intensity.levels: at least one level is needed")
        asym = _map(d.get("asymmetry"), src, "asymmetry")
        _keys(asym, src, "asymmetry", {"scan_sd", "au_sd", "max", "unilateral_p", "unilateral_keep"})
        blends = _map(d.get("blends"), src, "blends")
        _keys(blends, src, "blends", {"p", "weight"})
        alt = _map(d.get("alt"), src, "alt")
        _keys(alt, src, "alt", {"gamma"})
        traces: dict[str, tuple[float, Range]] = {}
        for au, spec in _map(d.get("traces"), src, "traces").items():
            key = f"traces.{au}"
            _au(au, src, key)
            spec = _map(spec, src, key, required=True)
            _keys(spec, src, key, {"p", "range"})
            traces[str(au)] = (_num(spec.get("p"), src, f"{key}.p", 0.0, 1.0),
                               _range(spec.get("range"), src, f"{key}.range", max_int))
        emo_raw = _map(d.get("emotions"), src, "emotions", required=True)
        if not emo_raw:
            raise InputError(src, "emotions: at least one emotion is needed")
        variants = {str(name): _variants(spec, src, f"emotions.{name}", max_int) for name, spec in emo_raw.items()}
        return cls(
            source=src, variants=variants, letters=letters, levels=dict(sorted(levels.items())),
            max_intensity=max_int,
            asym_scan_sd=_num(asym.get("scan_sd", 0.07), src, "asymmetry.scan_sd", 0.0, 0.5),
            asym_au_sd=_num(asym.get("au_sd", 0.05), src, "asymmetry.au_sd", 0.0, 0.5),
            asym_max=_num(asym.get("max", 0.3), src, "asymmetry.max", 0.0, 1.0),
            unilateral_p=_num(asym.get("unilateral_p", 0.0), src, "asymmetry.unilateral_p", 0.0, 1.0),
            unilateral_keep=_range(asym.get("unilateral_keep", [0.0, 0.3]), src, "asymmetry.unilateral_keep", 1.0),
            blend_p=_num(blends.get("p", 0.0), src, "blends.p", 0.0, 1.0),
            blend_weight=_range(blends.get("weight", [0.15, 0.35]), src, "blends.weight", 1.0),
            traces=traces,
            alt_gamma=_num(alt.get("gamma", 0.5), src, "alt.gamma", 0.05, 5.0),
        )

    # ------------------------------------------------------------------ sampling
    def sample(self, emotion: str, level: int, rng: np.random.Generator, *,
               variant: str | None = None) -> AUExpression:
        """An ``emfacs`` expression of ``emotion`` at ``level`` (a named ``variant`` or one drawn by weight)."""
        return self._sample(emotion, level, rng, variant=variant, alt=False)

    def sample_alt(self, emotion: str, level: int, rng: np.random.Generator, *,
                   variant: str | None = None) -> AUExpression:
        """An ``emfacs-alt`` expression: non-primary variants, per-AU level draws, no blends."""
        return self._sample(emotion, level, rng, variant=variant, alt=True)

    def variant_names(self, emotion: str, *, alt: bool = False) -> tuple[str, ...]:
        """Names of the variants a family draws for ``emotion``."""
        return tuple(v.name for v in self._pool(emotion, alt))

    def _expressive(self, emotion: str) -> bool:
        return any(v.required or v.one_of for v in self.variants[emotion])

    def _pool(self, emotion: str, alt: bool) -> tuple[Variant, ...]:
        try:
            vs = self.variants[emotion]
        except KeyError:
            raise InputError(self.source, f"emotions: no emotion {emotion!r} (have {', '.join(self.variants)})") \
                from None
        if alt:
            vs = tuple(v for v in vs if not v.primary) or vs
        return vs

    def _sample(self, emotion: str, level: int, rng: np.random.Generator, *, variant: str | None,
                alt: bool) -> AUExpression:
        if level not in self.levels:
            raise InputError(self.source, f"intensity.levels: level {level!r} is not defined "
                                          f"(have {', '.join(map(str, self.levels))})")
        pool = self._pool(emotion, alt)
        if variant is None:
            w = np.array([v.weight for v in pool], dtype=np.float64)
            var = pool[int(rng.choice(len(pool), p=w / w.sum()))]
        else:
            named = [v for v in self.variants[emotion] if v.name == variant]
            if not named:
                raise InputError(self.source, f"emotions.{emotion}: no variant {variant!r} "
                                              f"(have {', '.join(v.name for v in pool)})")
            var = named[0]
        lo, hi = self.levels[level]
        scale = float(rng.uniform(lo, hi))
        if alt:
            law = lambda r: float(rng.uniform(lo, hi)) * (0.5 * (r[0] + r[1])) ** self.alt_gamma  # noqa: E731
        else:
            law = lambda r: scale * float(rng.uniform(r[0], r[1]))  # noqa: E731
        sym = _draw_variant(var, rng, law)
        uni = {au: int(rng.integers(2)) for au in var.unilateral if au in sym}
        if not alt and sym and self.blend_p and rng.random() < self.blend_p:
            others = [e for e in self.variants if e != emotion and self._expressive(e)]
            if others:
                other = others[int(rng.integers(len(others)))]
                prim = [v for v in self.variants[other] if v.primary] or list(self.variants[other])
                bv = prim[int(rng.integers(len(prim)))]
                bw = float(rng.uniform(*self.blend_weight))
                for au, x in _draw_variant(bv, rng, lambda r: bw * scale * float(rng.uniform(r[0], r[1]))).items():
                    sym[au] = max(sym.get(au, 0.0), x)
        expressive = sorted(sym, key=_au_key)
        for au in sorted(self.traces, key=_au_key):
            p, r = self.traces[au]
            if rng.random() < p:
                sym[au] = max(sym.get(au, 0.0), float(rng.uniform(*r)))
        d_scan = float(rng.normal(0.0, self.asym_scan_sd))
        out: dict[str, tuple[float, float]] = {}
        for au in sorted(sym, key=_au_key):
            x = sym[au]
            dd = float(np.clip(d_scan + rng.normal(0.0, self.asym_au_sd), -self.asym_max, self.asym_max))
            left, right = x * (1.0 + dd), x * (1.0 - dd)
            if au in uni or (au in expressive and rng.random() < self.unilateral_p):
                side = uni.get(au, int(rng.integers(2)))
                keep = float(rng.uniform(*self.unilateral_keep))
                strong = max(left, right)
                left, right = (strong, strong * keep) if side == 0 else (strong * keep, strong)
            out[au] = (float(np.clip(left, 0.0, self.max_intensity)), float(np.clip(right, 0.0, self.max_intensity)))
        return AUExpression(emotion, int(level), "emfacs-alt" if alt else "emfacs", var.name, out)


def recipe_expression(book: RecipeBook, emotion: str, level: int, rng: np.random.Generator) -> AUExpression:
    """A fixed recipe as an :class:`AUExpression` (family ``"recipes"``): AU weight x the book's intensity scale
    x per-AU jitter, both sides equal (no per-subject style, no unrelated activations)."""
    emo = book.emotion(emotion)
    scale = book.intensity_scale(level, rng)
    out: dict[str, tuple[float, float]] = {}
    for au in sorted(emo.aus, key=_au_key):
        a = emo.aus[au] * scale * float(np.exp(rng.normal(0.0, book.au_jitter)))
        a = float(np.clip(a, 0.0, MAX_WEIGHT))
        out[au] = (a, a)
    return AUExpression(emotion, int(level), "recipes", "recipe", out)


@functools.lru_cache(maxsize=1)
def _default_sampler() -> AUSampler:
    return AUSampler.load()


@functools.lru_cache(maxsize=1)
def _default_book() -> RecipeBook:
    return RecipeBook.load()


def _emfacs(emotion: str, level: int, rng: np.random.Generator, *, sampler: AUSampler | None = None,
            book: RecipeBook | None = None) -> AUExpression:
    return (sampler or _default_sampler()).sample(emotion, level, rng)


def _emfacs_alt(emotion: str, level: int, rng: np.random.Generator, *, sampler: AUSampler | None = None,
                book: RecipeBook | None = None) -> AUExpression:
    return (sampler or _default_sampler()).sample_alt(emotion, level, rng)


def _recipes(emotion: str, level: int, rng: np.random.Generator, *, sampler: AUSampler | None = None,
             book: RecipeBook | None = None) -> AUExpression:
    return recipe_expression(book or _default_book(), emotion, level, rng)


FAMILIES: dict[str, Callable[..., AUExpression]] = {"emfacs": _emfacs, "emfacs-alt": _emfacs_alt,
                                                     "recipes": _recipes}


def sample_expression(family: str, emotion: str, level: int, rng: np.random.Generator, *,
                      sampler: AUSampler | None = None, book: RecipeBook | None = None) -> AUExpression:
    """Sample from a named family (packaged ``emfacs.yaml`` / ``default.yaml`` unless given)."""
    try:
        fn = FAMILIES[family]
    except KeyError:
        raise ValueError(f"unknown expression family {family!r} (have {', '.join(FAMILIES)})") from None
    return fn(emotion, level, rng, sampler=sampler, book=book)


# ---------------------------------------------------------------------- helpers
def _au_key(au: str) -> int:
    return int(au[2:])


def _draw_variant(var: Variant, rng: np.random.Generator, law: Callable[[Range], float]) -> dict[str, float]:
    out = {au: law(r) for au, r in var.required.items()}
    for group in var.one_of:
        names = list(group)
        au = names[int(rng.integers(len(names)))]
        out[au] = max(out.get(au, 0.0), law(group[au]))
    for p, group in var.optional:
        if rng.random() < p:
            for au, r in group.items():
                out[au] = max(out.get(au, 0.0), law(r))
    return out


def _variants(spec: Any, src: str, key: str, max_int: float) -> tuple[Variant, ...]:
    spec = _map(spec, src, key, required=True)
    _keys(spec, src, key, {"variants"})
    raw = spec.get("variants")
    if not isinstance(raw, list) or not raw:
        raise InputError(src, f"{key}.variants: must be a non-empty list")
    out, names = [], set()
    for i, v in enumerate(raw):
        vk = f"{key}.variants[{i}]"
        v = _map(v, src, vk, required=True)
        _keys(v, src, vk, {"name", "weight", "primary", "required", "one_of", "optional", "unilateral", "source"})
        name = v.get("name")
        if not isinstance(name, str) or not name or name in names:
            raise InputError(src, f"{vk}.name: needs a unique variant name")
        names.add(name)
        primary = v.get("primary", False)
        if not isinstance(primary, bool):
            raise InputError(src, f"{vk}.primary: must be true or false")
        required = _aus(v.get("required"), src, f"{vk}.required", max_int)
        one_of_raw = v.get("one_of", [])
        if not isinstance(one_of_raw, list):
            raise InputError(src, f"{vk}.one_of: must be a list of AU groups")
        one_of = tuple(_aus(g, src, f"{vk}.one_of[{j}]", max_int, nonempty=True) for j, g in enumerate(one_of_raw))
        opt_raw = v.get("optional", [])
        if not isinstance(opt_raw, list):
            raise InputError(src, f"{vk}.optional: must be a list of {{p, aus}} groups")
        optional = []
        for j, g in enumerate(opt_raw):
            gk = f"{vk}.optional[{j}]"
            g = _map(g, src, gk, required=True)
            _keys(g, src, gk, {"p", "aus"})
            optional.append((_num(g.get("p"), src, f"{gk}.p", 0.0, 1.0),
                             _aus(g.get("aus"), src, f"{gk}.aus", max_int, nonempty=True)))
        uni = v.get("unilateral", [])
        if not isinstance(uni, list):
            raise InputError(src, f"{vk}.unilateral: must be a list of AU names")
        for au in uni:
            _au(au, src, f"{vk}.unilateral")
            if au not in required:
                raise InputError(src, f"{vk}.unilateral: {au} is not one of the required AUs")
        out.append(Variant(name, _num(v.get("weight", 1), src, f"{vk}.weight", 1e-6, 1e6), primary, required,
                           one_of, tuple(optional), tuple(uni), str(v.get("source", ""))))
    return tuple(out)


def _aus(value: Any, src: str, key: str, max_int: float, *, nonempty: bool = False) -> dict[str, Range]:
    d = _map(value, src, key)
    if nonempty and not d:
        raise InputError(src, f"{key}: needs at least one AU")
    out = {}
    for au, r in d.items():
        _au(au, src, key)
        out[str(au)] = _range(r, src, f"{key}.{au}", max_int)
    return out


def _au(au: Any, src: str, key: str) -> None:
    if not isinstance(au, str) or not _AU_RE.match(au):
        raise InputError(src, f"{key}: {au!r} is not an action-unit name like 'AU12'")


def _range(value: Any, src: str, key: str, hi: float) -> Range:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value, value]
    if not isinstance(value, list) or len(value) != 2:
        raise InputError(src, f"{key}: must be [lo, hi] or a number, not {value!r}")
    lo_v, hi_v = (_num(x, src, key, 0.0, hi) for x in value)
    if lo_v > hi_v:
        raise InputError(src, f"{key}: lo {lo_v} is above hi {hi_v}")
    return lo_v, hi_v


def _map(value: Any, src: str, key: str, *, required: bool = False) -> dict:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise InputError(src, f"{key}: must be a mapping, not {type(value).__name__}")
    return value


def _keys(d: dict, src: str, key: str, allowed: set[str]) -> None:
    extra = set(map(str, d)) - allowed
    if extra:
        raise InputError(src, f"{key}: unknown keys {', '.join(sorted(extra))}")


_num = _number
