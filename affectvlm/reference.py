"""Each scan scored against its subject's own neutral scan: ``affectvlm predict --neutral``.

A face the model never saw can look a little sad, angry or afraid at rest, and that lean then colours every
expression it shows. When a subject's neutral scan is at hand (BU-3DFE's ``NE00``, Bosphorus's ``N_N_0``, the
baseline most protocols record), the lean can be taken out scan by scan, as the default ``contrast`` pooling does
for a 4D sequence with its calmest frame: every other scan of the subject is scored by each emotion's
log-probability minus half that of the neutral scan(s), the neutral class excluded
(:func:`affectvlm.predict.contrast`). The neutral scans themselves keep their rows as scored.

A subject is a folder (inside a zip: the zip and the folder in it). With ``auto``, which ``affectvlm predict`` uses
unless ``--prior`` is given, two datasets' naming counts (:data:`AUTO_LAYOUTS`), and the subject is the folder and the
name's first field, so a flat folder or zip of many subjects still pairs each scan with its own subject's neutral scan:
BU-3DFE (``F0001_NE00WH_F3D.wrl`` for every other scan of ``F0001``) and Bosphorus (``bs000_N_N_0.bnt`` for the
emotion scans ``bs000_E_*`` only: its folders also hold pose, occlusion and action-unit scans, which are left as
scored). A glob (``--neutral '*neutral*'``) groups by folder only and rescores every other scan there.

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

__all__ = ["AUTO_LAYOUTS", "NeutralCheck", "NeutralLayout", "ReferenceMatch", "against_neutral", "check_neutral",
           "check_pattern", "expression_scans", "full_expressions", "layouts_for", "match_neutral", "resolve_neutral"]


@dataclass(frozen=True)
class NeutralLayout:
    """A naming rule: which file names are a subject's neutral scans, and which of its other scans they stand for
    (globs on the lower-cased file name); ``by_field``: the subject is the folder and the name's first field;
    ``member``: the dataset's names at all (its names outside ``scans`` and ``neutral`` are not expressions), and
    ``full``: those of its scans that show an expression at full strength (not subtle levels)."""

    name: str
    neutral: str
    scans: str = "*"
    by_field: bool = True
    member: str = ""
    full: str = "*"


AUTO_LAYOUTS = (NeutralLayout("BU-3DFE's NE00", "*_ne00*", member="[fm][0-9][0-9][0-9][0-9]_*",
                              full="*_[a-z][a-z]0[34]*"),
                NeutralLayout("Bosphorus's N_N", "*_n_n_*", scans="*_e_*", member="bs[0-9][0-9][0-9]_*",
                              full="*_e_*"))


@dataclass(frozen=True)
class ReferenceMatch:
    """What :func:`match_neutral` did: scans rescored, subjects with a neutral reference, subjects without one."""

    rescored: int
    subjects: int
    unreferenced: int

    def text(self, spec: str) -> str:
        what = " or ".join(lay.name for lay in AUTO_LAYOUTS) if spec.strip().lower() == "auto" else spec
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


def resolve_neutral(spec: str, model: object) -> tuple[str, str | None]:
    """The spec to score with and a note to show: ``auto`` becomes ``none`` for a model whose own validation
    subjects read better scan by scan (``neutral_reference: false`` in its ``affectvlm.json``, written by the
    trainer: :func:`check_neutral`); any other spec, and a model without that choice, as given."""
    p = check_pattern(spec)
    if p.lower() != "auto" or getattr(model, "neutral_reference", None) is not False:
        return p, None
    return "none", ("scored each scan alone: this model's validation subjects read better that way than against "
                    "their neutral scans (neutral_reference in its affectvlm.json); --neutral '*_NE00*' to score "
                    "against them anyway")


@dataclass(frozen=True)
class NeutralCheck:
    """Accuracy of labelled scans scored alone and against their subject's neutral scans; ``rescored`` scans
    (those of subjects with a neutral scan, neutral ones excluded) differ between the two."""

    alone: float
    against: float
    rescored: int

    @property
    def helps(self) -> bool:
        return self.rescored > 0 and self.against > self.alone

    def to_json(self) -> dict:
        return {"alone": round(self.alone, 6), "against_neutral": round(self.against, 6), "rescored": self.rescored}


def check_neutral(probs: np.ndarray, labels: Sequence[int], subjects: Sequence[str],
                  classes: Sequence[str], counted: np.ndarray | None = None) -> NeutralCheck:
    """Score labelled scans (``probs`` (N, C), true class indices, subject ids) as ``affectvlm predict --neutral``
    does, with the scans labelled neutral as each subject's neutral scans (what BU-3DFE's ``NE00`` names are):
    every other scan of a subject who has one is scored by :func:`affectvlm.predict.contrast`. ``counted``: a
    boolean mask of the scans the accuracies count (default all; the neutral scans still serve as references)."""
    P = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    keep = np.ones(len(y), bool) if counted is None else np.asarray(counted, bool)
    if not keep.any():
        return NeutralCheck(float("nan"), float("nan"), 0)
    pred, rescored = against_neutral(P, y, subjects, classes)
    return NeutralCheck(float((P.argmax(1) == y)[keep].mean()), float((pred == y)[keep].mean()), rescored)


def against_neutral(probs: np.ndarray, labels: Sequence[int], subjects: Sequence[str],
                    classes: Sequence[str]) -> tuple[np.ndarray, int]:
    """The predictions of :func:`check_neutral` (N,) and how many scans it rescored."""
    from affectvlm.predict import contrast

    P = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    pred = P.argmax(1) if len(P) else np.zeros(0, np.int64)
    lower = [c.lower() for c in classes]
    if "neutral" not in lower:
        return pred, 0
    nc = lower.index("neutral")
    rescored = 0
    for subj in dict.fromkeys(subjects):
        members = [i for i, s in enumerate(subjects) if s == subj]
        refs = [i for i in members if y[i] == nc]
        if not refs:
            continue
        for i in members:
            if y[i] != nc:
                pred[i] = int(np.argmax(contrast(P[i:i + 1], P[refs], classes)))
                rescored += 1
    return pred, rescored


def layouts_for(spec: str) -> tuple[NeutralLayout, ...]:
    """The naming rules of a ``--neutral`` spec: ``auto`` -> :data:`AUTO_LAYOUTS`, ``none`` -> none, a glob -> its
    files are the neutral scans of their folder, for every other scan there."""
    p = check_pattern(spec)
    if p.lower() == "auto":
        return AUTO_LAYOUTS
    return () if p.lower() == "none" else (NeutralLayout(p, p.lower(), by_field=False),)


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
    ``spec`` says (:func:`layouts_for`), against that subject's neutral scan(s) (see the module doc)."""
    from affectvlm.predict import contrast

    layouts = layouts_for(spec)
    if not layouts:
        return ReferenceMatch(0, 0, 0)
    refs: dict[tuple[str, str, int], list[int]] = {}  # (folder, first field, layout) -> its neutral rows
    others: list[tuple[int, str, str]] = []
    for i, r in enumerate(rows):
        if r.get("frame") != "" or r.get("error"):
            continue
        folder, name = _split(r["file"])
        name = name.lower()
        k = next((k for k, lay in enumerate(layouts) if fnmatch.fnmatch(name, lay.neutral)), None)
        if k is None:
            others.append((i, folder, name))
        else:
            refs.setdefault((folder, _field(name, layouts[k]), k), []).append(i)
    used: dict[tuple[str, str, int], list[int]] = {}
    alone: set[tuple[str, str]] = set()
    for i, folder, name in others:
        keys = [(folder, _field(name, lay), k) for k, lay in enumerate(layouts) if fnmatch.fnmatch(name, lay.scans)]
        key = next((key for key in keys if key in refs), None)
        if key is None:
            alone.add((folder, _field(name, layouts[0])))
        else:
            used.setdefault(key, []).append(i)
    for key, members in used.items():
        ref = np.array([[float(rows[i][c]) for c in classes] for i in refs[key]])
        for i in members:
            probs = as_probs(contrast(np.array([[float(rows[i][c]) for c in classes]]), ref, classes))
            rows[i].update(zip(classes, probs))
            rows[i]["label"], rows[i]["confidence"] = top_class(classes, probs)
    subjects = {(folder, field) for folder, field, _ in used}
    return ReferenceMatch(sum(map(len, used.values())), len(subjects), len(alone - subjects))


def _named(files: Sequence[str], *, keep: str) -> list[bool]:
    named = [lay for lay in AUTO_LAYOUTS if lay.member]
    out = []
    for f in files:
        name = _split(f)[1].lower()
        out.append(not any(fnmatch.fnmatch(name, lay.member) and not fnmatch.fnmatch(name, getattr(lay, keep))
                           and not fnmatch.fnmatch(name, lay.neutral) for lay in named))
    return out


def expression_scans(files: Sequence[str]) -> list[bool]:
    """Per file, whether it may show an expression, as far as its name tells: False only for a file named as a
    dataset of :data:`AUTO_LAYOUTS` names its scans of other things (Bosphorus's pose, occlusion and action-unit
    scans beside ``bs000_E_*`` and ``bs000_N_N_*``)."""
    return _named(files, keep="scans")


def full_expressions(files: Sequence[str]) -> list[bool]:
    """Per file, whether it is a neutral scan or a full-strength expression, as far as its name tells: False also
    for BU-3DFE's subtle levels 1-2 (beside ``F0001_HA03*``, ``F0001_HA04*`` and ``F0001_NE00*``)."""
    return _named(files, keep="full")


def _field(name: str, layout: NeutralLayout) -> str:
    return name.split("_")[0] if layout.by_field else ""
