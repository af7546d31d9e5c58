"""Each scan scored against its subject's own neutral scan: ``affectvlm predict --neutral``.

A face the model never saw can look a little sad, angry or afraid at rest, and that lean then colours every
expression it shows. When a subject's neutral scan is at hand (BU-3DFE's ``NE00``, Bosphorus's ``N_N_0``, the
baseline most protocols record), the lean can be taken out scan by scan, as the default ``contrast`` pooling does
for a 4D sequence with its calmest frame: every other scan of the subject is scored by each emotion's
log-probability minus half that of the neutral scan(s), the neutral class excluded
(:func:`affectvlm.predict.contrast`). The neutral scans themselves keep their rows as scored.

A subject is a folder (inside a zip: the zip and the folder in it). With ``auto``, which ``affectvlm predict`` uses
unless ``--prior`` is given, only BU-3DFE's naming counts (``F0001_NE00WH_F3D.wrl``), and the subject is the folder
and the name's first field (``F0001``), so a flat folder or zip of many subjects still pairs each scan with its own
subject's neutral scan. A glob (``--neutral '*_N_N_0*'`` for Bosphorus, whose folders also hold pose, occlusion and
action-unit scans that this would rescore too) groups by folder only.

Unlike ``--prior`` it assumes nothing about the set's balance: one patient's baseline and a single expression is
fine. Subjects without a neutral scan that scored are left as scored. It makes a scan's label depend on another scan
of the run, so it is a property of ``affectvlm predict`` and the Batch page, not of the library's ``predict``.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import PurePath
from typing import Sequence

import numpy as np

from affectvlm.errors import ConfigError
from affectvlm.results import Row, as_probs, top_class

__all__ = ["AUTO_PATTERNS", "ReferenceMatch", "check_pattern", "match_neutral", "patterns_for"]

# BU-3DFE's neutral scans (F0001_NE00WH_F3D.wrl): the one layout whose folders hold nothing but a subject's expressions
AUTO_PATTERNS = ("*_NE00*",)


@dataclass(frozen=True)
class ReferenceMatch:
    """What :func:`match_neutral` did: scans rescored, subjects with a neutral reference, subjects without one."""

    rescored: int
    subjects: int
    unreferenced: int

    def text(self, spec: str) -> str:
        what = "BU-3DFE's NE00" if spec.strip().lower() == "auto" else spec
        out = f"scored {self.rescored} scans against the neutral scans ({what}) of {self.subjects} subject(s)"
        if self.unreferenced:
            out += f"; {self.unreferenced} without a neutral scan that scored are as scored"
        return out


def check_pattern(pattern: str) -> str:
    """``auto``, ``none`` or a neutral-scan file pattern (a glob on the file name, e.g. ``*NE00*``); ConfigError
    for a pattern that would pick every file or names a folder."""
    p = str(pattern).strip()
    if not p or p in ("*", "**") or "/" in p or "\\" in p:
        raise ConfigError(f"--neutral {pattern!r}: give auto, none, or a file-name pattern that picks the neutral "
                          "scans, e.g. '*NE00*' (BU-3DFE) or '*_N_N_0*' (Bosphorus)")
    return p


def patterns_for(spec: str) -> tuple[str, ...]:
    """The file patterns of a ``--neutral`` spec: ``auto`` -> :data:`AUTO_PATTERNS`, ``none`` -> none."""
    p = check_pattern(spec)
    return AUTO_PATTERNS if p.lower() == "auto" else () if p.lower() == "none" else (p,)


_ZIP_MEMBER = re.compile(r"^(.*?\.zip):(.*)$", re.IGNORECASE)


def _split(file: str) -> tuple[str, str]:
    """A row's file -> (its folder, inside a zip ``zip:folder``; its file name)."""
    f = str(file).replace("\\", "/")
    m = _ZIP_MEMBER.match(f)
    outer, inner = (m.group(1) + ":", m.group(2)) if m else ("", f)
    p = PurePath(inner)
    return outer + str(p.parent), p.name


def match_neutral(rows: list[Row], classes: Sequence[str], spec: str = "auto") -> ReferenceMatch:
    """Rescore, in place, every scan row (not frames, sequences or errors) of a subject who has a scan named as
    ``spec`` says (:func:`patterns_for`), against that subject's neutral scan(s) (see the module doc)."""
    from affectvlm.predict import contrast

    patterns = patterns_for(spec)
    if not patterns:
        return ReferenceMatch(0, 0, 0)
    auto = patterns == AUTO_PATTERNS
    subjects: dict[tuple[str, str], list[int]] = {}
    refs: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(rows):
        if r.get("frame") != "" or r.get("error"):
            continue
        folder, name = _split(r["file"])
        key = (folder, name.split("_")[0].lower() if auto else "")
        is_ref = any(fnmatch.fnmatch(name.lower(), p.lower()) for p in patterns)
        (refs if is_ref else subjects).setdefault(key, []).append(i)
    rescored = without = 0
    for key, members in subjects.items():
        if key not in refs:
            without += 1
            continue
        ref = np.array([[float(rows[i][c]) for c in classes] for i in refs[key]])
        for i in members:
            probs = as_probs(contrast(np.array([[float(rows[i][c]) for c in classes]]), ref, classes))
            rows[i].update(zip(classes, probs))
            rows[i]["label"], rows[i]["confidence"] = top_class(classes, probs)
            rescored += 1
    return ReferenceMatch(rescored, len(subjects) - without, without)
