"""Typed results of scoring and the one place where they become rows.

* :class:`FaceFrame`: where a scan's up and front were, how sure, and its 83 landmarks (file coordinates).
* :class:`ScanResult`: one scan's class probabilities (or its error) and face frame.
* :class:`SequenceResult`: a 4D sequence's per-frame results (:class:`FrameResult`) and the pooled one.

Rows (what ``affectvlm predict`` writes): ``file, frame, timestamp, label, confidence, <one column per class>,
[orientation_up, orientation_front, orientation_confidence, orientation_flagged, orientation_source], success,
error``.
``frame`` is ``""`` for a scan, the frame number for a frame of a sequence and ``"sequence"`` for its pooled
row; ``timestamp`` is ``frame / fps`` in seconds on a sequence's frame rows (empty elsewhere), ``success`` is
1, or 0 on a row whose ``error`` is set (its other columns are then empty). Files have one schema whatever
succeeded: the orientation columns are always there (empty on rows without a face frame), a CSV written with
landmarks always has the 83 landmark columns, every JSON row has ``landmarks`` (83 x [x, y, z] on scans whose
frame was found, else null), and JSON's ``frame`` is the CSV's text on every row (``""``, ``"12"``,
``"sequence"``), so tools that type a column read each file alike.
"""
from __future__ import annotations

import csv
import io as _io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence, Union

import numpy as np

from affectvlm.errors import ConfigError, printable
from affectvlm.fileio import atomic_write_text

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

    from affectvlm.mesh import Mesh
    from affectvlm.render import RenderSettings

Row = dict[str, Any]
FIXED_COLUMNS = ("file", "frame", "label", "confidence")
FRAME_COLUMNS = ("orientation_up", "orientation_front", "orientation_confidence", "orientation_flagged",
                 "orientation_source")
FRAME_SOURCES = ("scan", "sequence", "set", "given")  # where a row's face frame came from
TIME_COLUMN = "timestamp"  # after "frame", as OpenFace writes it
SUCCESS_COLUMN = "success"  # before "error"
NOT_CLASSES = frozenset({*FIXED_COLUMNS, *FRAME_COLUMNS, TIME_COLUMN, SUCCESS_COLUMN, "error", "landmarks"})
N_LANDMARKS = 83  # BU-3DFE's landmark set, as the face-frame network finds it
Probs = tuple[float, ...]


@dataclass(frozen=True)
class FaceFrame:
    """The face frame found on a scan (:func:`affectvlm.geometry.canonicalise`): the file axes that point up
    and toward the viewer, which were ``detected`` (not given), their confidence (``confidence`` is the
    lowest; None when both were given), whether the guess is flagged, the landmarks (file coordinates), and its
    ``source`` (:data:`FRAME_SOURCES`: found on the scan, voted over a sequence's frames, the set's frame taken
    for a flagged scan (:mod:`affectvlm.setframe`), or given)."""

    up: str
    front: str
    confidence: float | None = None
    low_confidence: bool = False
    landmarks: list[list[float]] | None = None
    detected: tuple[str, ...] = ()
    axis_confidence: Mapping[str, float] = field(default_factory=dict)
    source: str = "scan"

    @property
    def flagged(self) -> bool:
        return self.low_confidence

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any] | None) -> "FaceFrame | None":
        """The frame a canonicalised mesh records in ``meta["canonical"]`` (None when it has none)."""
        c = (meta or {}).get("canonical") or {}
        if not c.get("up") or not c.get("front"):
            return None
        conf = {str(k): float(v) for k, v in (c.get("confidence") or {}).items()}
        return cls(up=str(c["up"]), front=str(c["front"]),
                   confidence=round(float(min(conf.values())), 4) if conf else None,
                   low_confidence=bool(c.get("low_confidence", False)), landmarks=c.get("landmarks"),
                   detected=tuple(c.get("detected") or ()), axis_confidence=conf,
                   source="scan" if c.get("detected") else "given")

    def fields(self, landmarks: bool = True) -> Row:
        """The row's orientation columns (and ``landmarks``)."""
        out: Row = {"orientation_up": self.up, "orientation_front": self.front,
                    "orientation_confidence": self.confidence, "orientation_flagged": self.flagged,
                    "orientation_source": self.source}
        if landmarks:
            out["landmarks"] = self.landmarks
        return out


def whole_input_row(row: Mapping[str, Any]) -> bool:
    """Whether ``row`` stands for a whole input: a scan's row or a sequence's pooled row (``frame == "sequence"``),
    not the row of one of its frames."""
    return row.get("frame") in ("", None, "sequence")


def flagged_frame(row: Mapping[str, Any]) -> bool:
    """Whether ``row`` is where a flagged face frame is said: a scan's row, or a sequence's pooled row (its frame rows
    carry the same frame), so a sequence is said once."""
    return row.get("orientation_flagged") is True and whole_input_row(row)


def top_class(classes: Sequence[str], probs: Probs | None) -> tuple[str, float | None]:
    """The label and confidence of ``probs`` ("" and None when there are none)."""
    if probs is None:
        return "", None
    k = int(np.argmax(probs))
    return classes[k], probs[k]


def as_probs(p: "np.ndarray | Sequence[float]") -> Probs:
    """Probabilities as a tuple of Python floats (what rows carry)."""
    return tuple(float(v) for v in np.asarray(p).reshape(-1))


def _row(file: str, frame: int | str, classes: Sequence[str], probs: Probs | None, error: str = "", *,
         timestamp: float | None = None, face: FaceFrame | None = None, landmarks: bool = True) -> Row:
    """Every row is made here (see the module docstring for the columns)."""
    label, conf = top_class(classes, probs)
    row: Row = {"file": file, "frame": frame, TIME_COLUMN: timestamp, "label": label, "confidence": conf}
    row.update(zip(classes, probs if probs is not None else [None] * len(classes)))
    row.update(dict.fromkeys(FRAME_COLUMNS), landmarks=None)  # one schema, in one order, on every row
    if face is not None and not error:
        row.update(face.fields(landmarks))
    row[SUCCESS_COLUMN] = 0 if error else 1
    row["error"] = error
    return row


class _Scored:
    """``ok``, ``probabilities``, ``label`` and ``confidence`` of a result's ``scores`` over its ``classes``."""

    classes: tuple[str, ...]
    error: str

    @property
    def scores(self) -> Probs | None:
        raise NotImplementedError

    @property
    def ok(self) -> bool:
        return not self.error and self.scores is not None

    @property
    def probabilities(self) -> dict[str, float]:
        return dict(zip(self.classes, self.scores)) if self.scores is not None else {}

    @property
    def label(self) -> str:
        return top_class(self.classes, self.scores)[0]

    @property
    def confidence(self) -> float | None:
        return top_class(self.classes, self.scores)[1]


@dataclass(frozen=True)
class ScanResult(_Scored):
    """One scan's result: ``probs`` over ``classes`` (None when ``error``) and the face frame it was seen in."""

    file: str
    classes: tuple[str, ...]
    probs: Probs | None = None
    frame: FaceFrame | None = None
    error: str = ""

    @property
    def scores(self) -> Probs | None:
        return self.probs

    def row(self) -> Row:
        return _row(self.file, "", self.classes, self.probs, self.error, face=self.frame)


@dataclass(frozen=True)
class FrameResult:
    """One frame of a sequence: its frame number, probabilities (None when ``error``)."""

    frame_id: int
    probs: Probs | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.probs is not None


@dataclass
class SequenceResult(_Scored):
    """A 4D sequence's result: per-frame results in order, the pooled probabilities (None when no frame
    could be scored, then ``error`` says so) and the face frame every frame was rendered in."""

    file: str
    classes: tuple[str, ...]
    frames: list[FrameResult] = field(default_factory=list)
    pooled: Probs | None = None
    frame: FaceFrame | None = None
    error: str = ""
    fps: float | None = None

    @property
    def scores(self) -> Probs | None:
        return self.pooled

    def frame_row(self, fr: FrameResult) -> Row:
        return frame_row(self.file, self.classes, fr, self.fps, None if fr.error else self.frame)

    def pooled_row(self) -> Row:
        return _row(self.file, "sequence", self.classes, self.pooled, self.error, face=self.frame, landmarks=False)

    def rows(self) -> list[Row]:
        """One row per frame, then the pooled ``frame="sequence"`` row."""
        return [self.frame_row(f) for f in self.frames] + [self.pooled_row()]


@dataclass(frozen=True)
class Prepared:
    """A scan ready to render: ``mesh`` in the canonical frame (when its settings ask for one), the face ``frame``
    found on the way (None when not canonicalised or when it failed), and ``settings`` that render ``mesh`` as
    it is (no second canonicalisation). Made by :func:`affectvlm.predict.prepare`; the app shows ``mesh`` as
    its preview and scores the same object."""

    mesh: "Mesh"
    frame: FaceFrame | None
    settings: "RenderSettings"


@dataclass
class Analysis:
    """What :func:`affectvlm.predict.predict_mesh` returns: the result, and what the model saw: ``images``
    (caption, PIL image) and ``tensor`` (V, 3, H, W) of the scan or of a sequence's most expressive frame
    (``shown_frame``), and each view's weight in the fusion."""

    result: Union[ScanResult, SequenceResult]
    images: list[tuple[str, "Image"]]
    tensor: "torch.Tensor"
    view_weights: dict[str, float]
    shown_frame: int | None = None
    prepared: Prepared | None = None

    @property
    def classes(self) -> tuple[str, ...]:
        return self.result.classes

    @property
    def probabilities(self) -> dict[str, float]:
        return self.result.probabilities

    @property
    def label(self) -> str:
        return self.result.label

    @property
    def confidence(self) -> float | None:
        return self.result.confidence

    @property
    def rows(self) -> list[Row]:
        r = self.result
        return r.rows() if isinstance(r, SequenceResult) else [r.row()]


def frame_row(file: str, classes: Sequence[str], fr: FrameResult, fps: float | None,
              face: FaceFrame | None = None) -> Row:
    """The row of one frame of a sequence (``timestamp = frame / fps`` seconds), with the sequence's ``face``
    frame, which every frame was rendered in."""
    ts = round(fr.frame_id / fps, 6) if fps else None
    return _row(file, int(fr.frame_id), classes, fr.probs, fr.error, timestamp=ts, face=face, landmarks=False)


def error_row(file: str, classes: Sequence[str], error: str, *, frame: int | str = "") -> Row:
    """The row of an input that could not be scored at all."""
    return _row(file, frame, classes, None, error)


def check_classes(classes: Sequence[str]) -> None:
    """Refuse class names that would overwrite a result column."""
    clash = set(classes) & NOT_CLASSES
    if clash:
        raise ConfigError(f"class names {sorted(clash)} clash with result columns "
                          f"{sorted(NOT_CLASSES - {'landmarks'})}")
    marks = sorted(c for c in classes if re.fullmatch(r"lm\d+_[xyz]", str(c)))
    if marks:
        raise ConfigError(f"class names {marks} clash with the landmark columns (lm01_x ... of --landmarks)")


def class_names(rows: Sequence[Row]) -> list[str]:
    """The class columns of ``predict`` rows, in order."""
    for r in rows:
        cols = [k for k in r if k not in NOT_CLASSES]
        if cols:
            return cols
    return []


# ------------------------------------------------------------------------------------------------ output


def columns(rows: Sequence[Row]) -> list[str]:
    """The result columns of ``rows`` in order (see the module docstring; ``landmarks`` is not a column:
    JSON rows carry it as a list, CSV spreads it on request)."""
    cols = ["file", "frame", TIME_COLUMN, "label", "confidence"]
    for r in rows:
        for k in r:
            if k not in cols and k not in NOT_CLASSES:
                cols.append(k)
    return cols + list(FRAME_COLUMNS) + [SUCCESS_COLUMN, "error"]


def _landmark_cells(r: Row, n: int) -> list[str]:
    lm = r.get("landmarks")
    if not lm:
        return [""] * (3 * n)
    return [f"{float(c):.4f}" for p in lm for c in p]


_FORMULA = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet would run as a formula at a cell's start


_NAMES = ("file", "label", "error")  # the columns holding text a user chose (file and class names)


def _utf8(text: str) -> str:
    """``text`` as valid UTF-8: the undecodable bytes of a file name (kept by Python as lone surrogates, which no
    UTF-8 writer takes) written as ``\\xff``."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        try:
            raw = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a surrogate that was never a byte
            return text.encode("utf-8", "backslashreplace").decode("utf-8")
        return raw.decode("utf-8", "backslashreplace")


def _cell(v: object, names: bool = False) -> str:
    """A CSV cell. With ``names`` (a file or class name, an error naming a file, a header), text a spreadsheet
    would run as a formula ('=cmd|...') gets a leading apostrophe, as OWASP's CSV-injection advice says; axis
    columns such as ``-y`` and numbers are written as they are."""
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6f}"
    text = _utf8(str(v))
    return "'" + text if names and text.startswith(_FORMULA) else text


def rows_to_csv(rows: Sequence[Row], *, landmarks: bool = False) -> str:
    """CSV text; with ``landmarks`` the 83 landmarks follow as ``lm01_x, lm01_y, lm01_z, ...`` (scan units)."""
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = columns(rows)
    n = 0
    if landmarks:
        n = max([N_LANDMARKS, *(len(r.get("landmarks") or []) for r in rows)])
    w.writerow([_cell(c, True) for c in cols] + [f"lm{i + 1:02d}_{a}" for i in range(n) for a in "xyz"])
    for r in rows:
        w.writerow([_cell(r.get(c), c in _NAMES) for c in cols] + (_landmark_cells(r, n) if n else []))
    return buf.getvalue()


def rows_to_json(rows: Sequence[Row]) -> str:
    """JSON list of rows, one schema (module docstring): ``frame`` as text, ``landmarks`` on every row."""
    cols = columns(rows)
    out = []
    for r in rows:
        d = {c: _utf8(v) if isinstance(v := r.get(c), str) else v for c in cols}
        d["frame"] = _cell(r.get("frame"))
        d["landmarks"] = r.get("landmarks")
        out.append(d)
    return json.dumps(out, indent=1, allow_nan=False) + "\n"


def rows_text(rows: Sequence[Row], suffix: str, *, landmarks: bool = False) -> str:
    """The text of a ``.csv`` or ``.json`` result file."""
    if suffix not in (".csv", ".json"):
        raise ConfigError(f"output must end in .csv or .json, got {suffix!r}")
    return rows_to_csv(rows, landmarks=landmarks) if suffix == ".csv" else rows_to_json(rows)


def format_table(rows: Sequence[Row], classes: Sequence[str] | None = None) -> str:
    """A plain-text table for the terminal: ``file, frame, label, confidence, <classes>, error``."""
    found = any(k in r for r in rows for k in FRAME_COLUMNS)
    cols = [c for c in columns(rows) if c not in (TIME_COLUMN, SUCCESS_COLUMN) and (found or c not in FRAME_COLUMNS)]
    if classes is not None:
        cols = list(FIXED_COLUMNS) + list(classes) + ["error"]
    cells = [[c for c in cols]] + [[(f"{r.get(c):.3f}" if isinstance(r.get(c), float) else printable(_cell(r.get(c))))
                                    for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells) + "\n"


def write_rows(rows: Sequence[Row], path: str | os.PathLike, *, landmarks: bool = False) -> Path:
    """Write rows as ``.csv`` or ``.json`` (chosen by the suffix), atomically; ``landmarks`` adds the
    landmark columns to a CSV (JSON always has them)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise ConfigError(f"{p}: output must end in .csv or .json")
    text = rows_text(rows, suffix, landmarks=landmarks)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(p, text)
    except OSError as e:
        raise ConfigError(f"{p}: cannot write results ({e.strerror or e})") from None
    return p
