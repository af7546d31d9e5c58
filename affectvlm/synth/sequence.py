"""Timing of a 4D expression sequence as BU-4DFE sequences go: neutral -> onset -> apex -> offset -> neutral.

:func:`activation_curve` gives the emotion's activation per frame (0 neutral, 1 apex) with smoothstep ramps
and randomised phase lengths; :func:`blink_curve` adds occasional short blinks; :func:`drift` a slow head
motion. All are pure functions of the generator, so sequences are reproducible from a seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Timing:
    """Phase lengths as fractions of the sequence (they sum to 1)."""

    lead: float
    onset: float
    apex: float
    offset: float
    tail: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "Timing":
        lead = rng.uniform(0.05, 0.15)
        onset = rng.uniform(0.15, 0.3)
        apex = rng.uniform(0.2, 0.35)
        offset = rng.uniform(0.15, 0.3)
        total = lead + onset + apex + offset
        if total > 0.97:  # keep a neutral tail of at least 3 %
            k = 0.97 / total
            lead, onset, apex, offset = lead * k, onset * k, apex * k, offset * k
        return cls(lead, onset, apex, offset, 1.0 - (lead + onset + apex + offset))


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def activation_curve(n_frames: int, timing: Timing) -> np.ndarray:
    """(n_frames,) activation in [0, 1]: 0 at both ends, 1 over the apex, smoothstep ramps between."""
    if n_frames < 1:
        raise ValueError("n_frames must be at least 1")
    if n_frames == 1:
        return np.ones(1)
    t = np.linspace(0.0, 1.0, n_frames)
    a = timing.lead
    b = a + timing.onset
    c = b + timing.apex
    up = smoothstep((t - a) / max(timing.onset, 1e-9))
    down = 1.0 - smoothstep((t - c) / max(timing.offset, 1e-9))
    return np.where(t < b, up, np.where(t <= c, 1.0, down))


def blink_curve(n_frames: int, rng: np.random.Generator, *, fps: float = 25.0,
                rate_per_s: float = 0.25) -> np.ndarray:
    """(n_frames,) eye-closure in [0, 1]: Poisson blinks of ~0.2 s (5 frames at 25 fps)."""
    out = np.zeros(n_frames)
    n = rng.poisson(rate_per_s * n_frames / fps)
    half = max(1.0, 0.1 * fps)
    t = np.arange(n_frames)
    for centre in rng.uniform(0, n_frames, n):
        out = np.maximum(out, np.clip(1.0 - np.abs(t - centre) / half, 0.0, 1.0) * rng.uniform(0.7, 1.0))
    return out


def drift(n_frames: int, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """(n_frames,) slow smooth wander in [-amplitude, amplitude] (a random low-order cosine series)."""
    t = np.linspace(0.0, 1.0, n_frames)
    out = np.zeros(n_frames)
    for k in (1, 2):
        out += rng.normal(0.0, 1.0 / k) * np.cos(np.pi * k * t + rng.uniform(0, 2 * np.pi))
    return np.clip(out * amplitude / 1.5, -amplitude, amplitude)
