"""Each scan scored against its subject's own neutral scan: ``affectvlm predict --neutral GLOB``.

A face the model never saw can look a little sad, angry or afraid at rest, and that lean then colours every
expression it shows. When a subject's neutral scan is at hand (BU-3DFE's ``NE00``, Bosphorus's ``N_N_0``, the
baseline most protocols record), the lean can be taken out scan by scan, as the default ``contrast`` pooling does
for a 4D sequence with its calmest frame: every other scan of the subject's folder is scored by each emotion's
log-probability minus half that of the neutral scan(s), the neutral class excluded
(:func:`affectvlm.predict.contrast`). The neutral scans themselves keep their rows as scored.

Unlike ``--prior`` it assumes nothing about the set's balance: a folder holding one patient's neutral baseline and a
single expression is scored the same way. Folders without a neutral scan matching the pattern are left as scored.
``affectvlm predict`` does it by default (``auto``) for the neutral scans of the layouts this field uses, named by
:data:`AUTO_PATTERNS`, and says so; ``--neutral none`` scores each scan alone.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import PurePath
from typing import Sequence

import numpy as np

from affectvlm.errors import ConfigError
from affectvlm.prior import folder_of
from affectvlm.results import Row, as_probs, top_class

__all__ = ["AUTO_PATTERNS", "ReferenceMatch", "check_pattern", "match_neutral", "patterns_for"]

# the neutral scans of the dataset layouts this field uses: BU-3DFE (F0001_NE00WH_F3D.wrl), Bosphorus (bs000_N_N_0)
AUTO_PATTERNS = ("*_NE00*", "*_N_N_*")


@dataclass(frozen=True)
class ReferenceMatch:
    """What :func:`match_neutral` did: scans rescored, folders with a neutral reference, folders without one."""

    rescored: int
    folders: int
    unreferenced: int

    def text(self, spec: str) -> str:
        what = "BU-3DFE's NE00 / Bosphorus's N_N" if spec == "auto" else spec
        out = (f"scored {self.rescored} scans against the neutral scans ({what}) of {self.folders} folder(s); "
               "--neutral none scores each scan alone")
        if self.unreferenced:
            out += f"; {self.unreferenced} folder(s) without a neutral scan are as scored"
        return out


def check_pattern(pattern: str) -> str:
    """``auto``, ``none`` or a neutral-scan file pattern (a glob on the file name, e.g. ``*NE00*``); ConfigError
    for a pattern that would pick every file or names a folder."""
    p = str(pattern).strip()
    if not p or p in ("*", "**") or "/" in p or "\\" in p:
        raise ConfigError(f"--neutral {pattern!r}: give auto, none, or a file-name pattern that picks the neutral "
                          "scans, e.g. '*NE00*' (BU-3DFE) or '*_N_N_*' (Bosphorus)")
    return p


def patterns_for(spec: str) -> tuple[str, ...]:
    """The file patterns of a ``--neutral`` spec: ``auto`` -> :data:`AUTO_PATTERNS`, ``none`` -> none."""
    p = check_pattern(spec)
    return AUTO_PATTERNS if p.lower() == "auto" else () if p.lower() == "none" else (p,)


def _is_reference(file: str, patterns: Sequence[str]) -> bool:
    name = PurePath(str(file).replace("\\", "/")).name.lower()
    return any(fnmatch.fnmatch(name, p.lower()) for p in patterns)


def match_neutral(rows: list[Row], classes: Sequence[str], spec: str = "auto") -> ReferenceMatch:
    """Rescore, in place, every scan row (not frames, sequences or errors) whose folder holds a scan named as
    ``spec`` says (:func:`patterns_for`), against that folder's neutral scan(s) (see the module doc)."""
    from affectvlm.predict import contrast

    patterns = patterns_for(spec)
    folders: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        if not r.get("error") and r.get("frame") == "":
            folders.setdefault(folder_of(r["file"]), []).append(i)
    rescored = with_ref = without = 0
    for members in folders.values():
        refs = [i for i in members if patterns and _is_reference(rows[i]["file"], patterns)]
        if not refs:
            without += 1
            continue
        with_ref += 1
        ref = np.array([[float(rows[i][c]) for c in classes] for i in refs])
        for i in members:
            if i in refs:
                continue
            probs = as_probs(contrast(np.array([[float(rows[i][c]) for c in classes]]), ref, classes))
            rows[i].update(zip(classes, probs))
            rows[i]["label"], rows[i]["confidence"] = top_class(classes, probs)
            rescored += 1
    return ReferenceMatch(rescored, with_ref, without)
