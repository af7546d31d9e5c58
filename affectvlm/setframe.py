"""The face frame most of a set's scans share, for the scans whose own frame is flagged.

A dataset's scans come from one scanner and one export, so they share their file axes (BU-3DFE, BU-4DFE, BP4D and
Bosphorus each do). When most of a sample of a set's scans read the same axis-aligned frame, a flagged scan that
faces the set's way but reads another way up (the face-frame network's commonest mistake on face models it never
saw: upside down) takes the set's up. Its front is never changed (a head turned far from the scanner is not forced
to face it) and it stays flagged; its rows say ``orientation_source`` ``set``.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from affectvlm.results import FaceFrame

SAMPLE = 24  # scans sampled from a set, evenly spaced
MIN_FRAMES = 8  # frames found in the sample before a set frame is taken
MIN_SHARE = 0.75  # of those frames, how many must be the same
_AXES = frozenset(f"{s}{a}" for s in "+-" for a in "xyz")


@dataclass(frozen=True)
class SetFrame:
    """The axis-aligned frame ``agree`` of ``of`` sampled scans read (flagged ones included)."""

    up: str
    front: str
    agree: int
    of: int

    def text(self) -> str:
        return f"up {self.up}, front {self.front} ({self.agree} of {self.of} sampled scans)"


def consensus(frames: Iterable[FaceFrame | None]) -> SetFrame | None:
    """The frame at least :data:`MIN_SHARE` of the sample's found frames share, or None (too few, or no such)."""
    found = [(f.up, f.front) for f in frames if f is not None]
    if len(found) < MIN_FRAMES:
        return None
    (up, front), n = Counter(found).most_common(1)[0]
    if up not in _AXES or front not in _AXES or n < MIN_SHARE * len(found):
        return None
    return SetFrame(up, front, n, len(found))


def takes_set_up(frame: FaceFrame | None, set_frame: SetFrame | None) -> bool:
    """Whether a scan's frame gives way to the set's: flagged, facing the set's front, another way up."""
    return (set_frame is not None and frame is not None and frame.flagged and bool(frame.detected)
            and frame.front == set_frame.front and frame.up != set_frame.up)
