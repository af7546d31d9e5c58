"""Views and render settings: what to render, validated once and stored with models."""
from __future__ import annotations

import math
import itertools
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from affectvlm.errors import ConfigError
from affectvlm.holes import check_fill_holes

if TYPE_CHECKING:
    import torch

    from affectvlm.mesh import Mesh

KERNEL_MAPS = ("shade", "depth", "normal", "mask")  # what the rasterisers write, in the kernels' argument order
MAPS = KERNEL_MAPS + ("lights",)  # lights: made from the normal map (:mod:`.lights`)
CHANNELS = {"shade": 3, "depth": 1, "normal": 3, "mask": 1, "lights": 3}
IMAGE_MAPS = ("shade", "normal", "depth", "lights")  # what a model can see
AMBIENT = 0.15  # Lambert shading: ambient + (1 - ambient) * |n . l|


@dataclass(frozen=True)
class View:
    """A camera direction in degrees (see :mod:`affectvlm.render` for the sign convention)."""

    yaw: float = 0.0
    pitch: float = 0.0

    def __post_init__(self) -> None:
        for name in ("yaw", "pitch"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val):
                raise ConfigError(f"view {name} must be a finite number of degrees, got {val!r}")
            object.__setattr__(self, name, float(val))
        if abs(self.pitch) > 90:  # past straight above or below, the camera turns over: the face upside down
            raise ConfigError(f"view pitch must be within -90..90 degrees (straight below to straight above the "
                              f"face), got {self.pitch:g}")

    def rotation(self) -> np.ndarray:
        """3x3 rotation applied to canonical vertices (camera looks down -Z from +Z)."""
        a, b = math.radians(self.yaw), math.radians(self.pitch)
        ry = np.array([[math.cos(a), 0.0, -math.sin(a)], [0.0, 1.0, 0.0], [math.sin(a), 0.0, math.cos(a)]])
        rx = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(b), -math.sin(b)], [0.0, math.sin(b), math.cos(b)]])
        return rx @ ry

    def __str__(self) -> str:
        return f"{self.yaw:g}" if self.pitch == 0 else f"{self.yaw:g}:{self.pitch:g}"


DEFAULT_VIEWS: tuple[View, ...] = (View(0), View(-30), View(30))


_VIEW_SEP = re.compile(r"[,;\s]+")
_VIEW_CHARS = str.maketrans({"\u2212": "-", "\u2013": "-", "\u00b0": None, "\uff0c": ","})


MAX_VIEWS = 64  # each view is a render and an encoder pass per scan: a pasted list of thousands would exhaust memory


def _capped(views: tuple[View, ...]) -> tuple[View, ...]:
    if len(views) > MAX_VIEWS:
        raise ConfigError(f"{len(views)} views: at most {MAX_VIEWS} (each is rendered and encoded for every scan)")
    return views


def parse_views(text: str) -> tuple[View, ...]:
    """``"0,-30,30"`` (yaws) or ``"0:10,30:0"`` (yaw:pitch pairs) -> views. Raises ConfigError.

    Also takes what people type or paste: spaces or semicolons between views (``"-30 0 30"``), spaces
    around ``:``, a leading ``+``, a Unicode minus, degree signs, brackets and a trailing comma.
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"views must be a non-empty string like '0,-30,30' or '0:10,30:0', got {text!r}")
    clean = text.strip().translate(_VIEW_CHARS).strip("[]() \t")
    clean = re.sub(r"\s*:\s*", ":", clean).rstrip(",; \t")
    if re.search(r"[,;]\s*[,;]", clean):
        raise ConfigError(f"empty view between separators in {text!r}: use YAW or YAW:PITCH in degrees")
    items = [i for i in _VIEW_SEP.split(clean) if i]
    if not items:
        raise ConfigError(f"views must be a non-empty string like '0,-30,30' or '0:10,30:0', got {text!r}")
    out = []
    for item in items:
        parts = item.split(":")
        if len(parts) > 2 or not all(parts):
            raise ConfigError(f"bad view {item!r} in {text!r}: use YAW or YAW:PITCH in degrees")
        try:
            nums = [float(p) for p in parts]
        except ValueError:
            raise ConfigError(f"bad view {item!r} in {text!r}: not a number") from None
        out.append(View(*nums))
    return _capped(tuple(out))


def as_views(views: Any) -> tuple[View, ...]:
    """Accept a string, a View, or an iterable of Views / yaw numbers / (yaw, pitch) pairs / dicts."""
    if views is None:
        return DEFAULT_VIEWS
    if isinstance(views, str):
        return parse_views(views)
    if isinstance(views, View):
        return (views,)
    out = []
    try:
        items = list(itertools.islice(views, MAX_VIEWS + 1))
    except TypeError:
        raise ConfigError(f"views must be a string or a list of views, got {views!r}") from None
    for v in items:
        if isinstance(v, View):
            out.append(v)
        elif isinstance(v, dict):
            unknown = set(v) - {"yaw", "pitch"}
            if unknown:
                raise ConfigError(f"unknown view keys {sorted(unknown)} in {v!r}")
            out.append(View(v.get("yaw", 0.0), v.get("pitch", 0.0)))
        elif isinstance(v, (list, tuple)) and 1 <= len(v) <= 2:
            out.append(View(*v))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(View(v))
        else:
            raise ConfigError(f"cannot read a view from {v!r}")
    if not out:
        raise ConfigError("at least one view is needed")
    return _capped(tuple(out))


MAX_SCORE_PITCH = 45.0  # degrees: further up or down, a face's features hide behind the brow or the chin


def _score_pitches(value: Any) -> tuple[float, ...]:
    """``score_pitches`` as a tuple of distinct non-zero finite degrees within :data:`MAX_SCORE_PITCH`."""
    try:
        items = list(value)
    except TypeError:
        raise ConfigError(f"score_pitches must be a list of degrees, e.g. [-10, 10], got {value!r}") from None
    out = []
    for p in items:
        if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)) or not math.isfinite(p) \
                or p == 0 or abs(p) > MAX_SCORE_PITCH:
            raise ConfigError(f"score_pitches must be non-zero degrees within ±{MAX_SCORE_PITCH:g}, got {p!r}")
        out.append(float(p))
    if len(set(out)) != len(out):
        raise ConfigError(f"score_pitches must be distinct, got {out}")
    return tuple(out)


def check_maps(maps: str | Sequence[str]) -> tuple[str, ...]:
    """A map name or names -> a tuple of known map names. Raises ConfigError."""
    maps = (maps,) if isinstance(maps, str) else tuple(maps)
    bad = [m for m in maps if m not in MAPS]
    if bad or not maps:
        raise ConfigError(f"unknown render maps {bad or maps}; choose from {MAPS}")
    return maps


@dataclass
class RenderSettings:
    """How faces are turned into images; stored with models so training and inference agree."""

    size: int = 224
    views: tuple[View, ...] = DEFAULT_VIEWS
    texture: bool = True
    canonical: bool = True
    up: str | None = None
    front: str | None = None
    background: float = 0.0
    map: str = "shade"
    crop: bool = False  # cut the face region around the detected landmarks (geometry.canonicalise(crop=True))
    max_vertices: int = 0  # geometry-only renders: decimate denser scans to this many vertices first (0: never)
    score_pitches: tuple[float, ...] = ()  # scoring also renders every view at these added pitches (for_scoring)
    fill_holes: float = 0.0  # close holes up to this size (a fraction of the face's radius) first (0: never)

    def __post_init__(self) -> None:
        self.views = as_views(self.views)
        if self.map not in IMAGE_MAPS:
            raise ConfigError(f"render map must be one of {', '.join(repr(m) for m in IMAGE_MAPS)}, got {self.map!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, (int, np.integer)) or not 8 <= self.size <= 4096:
            raise ConfigError(f"render size must be an integer in [8, 4096], got {self.size!r}")
        self.size = int(self.size)
        if not isinstance(self.background, (int, float)) or not 0.0 <= float(self.background) <= 1.0:
            raise ConfigError(f"background must be a number in [0, 1], got {self.background!r}")
        self.background = float(self.background)
        if (isinstance(self.max_vertices, bool) or not isinstance(self.max_vertices, (int, np.integer))
                or not (self.max_vertices == 0 or 500 <= self.max_vertices <= 10_000_000)):
            raise ConfigError(f"max_vertices must be 0 (no cap) or an integer of at least 500, "
                              f"got {self.max_vertices!r}")
        self.max_vertices = int(self.max_vertices)
        self.score_pitches = _score_pitches(self.score_pitches)
        if over := [(v, p) for v in self.views for p in self.score_pitches if abs(v.pitch + p) > 90]:
            raise ConfigError(f"view {over[0][0]} at the scoring pitch {over[0][1]:+g} would look from past straight "
                              f"{'up' if over[0][0].pitch + over[0][1] > 0 else 'down'} (pitch "
                              f"{over[0][0].pitch + over[0][1]:g}); keep each view's pitch plus score_pitches within "
                              "-90..90")
        self.fill_holes = check_fill_holes(self.fill_holes)
        for name in ("texture", "canonical", "crop"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        from affectvlm.geometry import parse_frame_axes

        parse_frame_axes(self.up, self.front)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (views as ``[[yaw, pitch], ...]``)."""
        return {"size": self.size, "views": [[v.yaw, v.pitch] for v in self.views], "texture": self.texture,
                "canonical": self.canonical, "up": self.up, "front": self.front, "background": self.background,
                "map": self.map, "crop": self.crop,
                **({"max_vertices": self.max_vertices} if self.max_vertices else {}),  # old keys stay valid
                **({"score_pitches": list(self.score_pitches)} if self.score_pitches else {}),
                **({"fill_holes": self.fill_holes} if self.fill_holes else {})}

    def for_scoring(self) -> "RenderSettings":
        """What scoring renders: the views, then each view again at every pitch of ``score_pitches`` added to its
        own (test-time augmentation: the fused embedding is the mean over all of them). The result has no
        ``score_pitches``, so applying this twice changes nothing; training renders ``views`` only."""
        if not self.score_pitches:
            return self
        extra = tuple(View(v.yaw, v.pitch + p) for p in self.score_pitches for v in self.views)
        return replace(self, views=tuple(self.views) + extra, score_pitches=())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RenderSettings":
        """Inverse of :meth:`to_dict`; missing keys take defaults, unknown keys raise ConfigError."""
        if not isinstance(d, dict):
            raise ConfigError(f"render settings must be a mapping, got {type(d).__name__}")
        known = {"size", "views", "texture", "canonical", "up", "front", "background", "map", "crop", "max_vertices",
                 "score_pitches", "fill_holes"}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown render settings {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)

    def render(self, meshes: "Mesh | Sequence[Mesh]", *, device: "str | torch.device" = "cpu") -> "torch.Tensor":
        """The images a model sees: these settings' map, (B, V, 3, size, size) float32 in [0, 1]."""
        from .api import render, to_rgb

        return to_rgb(render(meshes, self, device=device)[self.map])
