"""Each subject's scores taken relative to the subject's own mean: ``affectvlm predict --subject-mean``.

A face the model never saw (another identity, face model or sculptor) moves every embedding of that face the same
way, and the classifier reads the move as an expression: one person looks sad in every scan. When a subject's scans
show a mix of expressions, as every subject of BU-3DFE, BU-4DFE and Bosphorus does by design, that move is the
subject's mean and can be taken out: each of the subject's rows gets its log-probabilities minus the subject's mean
log-probabilities, plus those of the checkpoint's training mean embedding (:func:`training_logits`; nothing when it
stores none), renormalised. Since the classifier is linear in the fused embedding, this is the embedding minus the
subject's mean embedding plus the training mean, up to the softmax temperature (labels are exactly those). What one
scan shows more than the subject's others is kept.

Subjects come from the datasets' naming only (:func:`subject_of`): BU-3DFE's and Bosphorus's scan names (the folder
and the name's first field; Bosphorus's expression and neutral scans only) and BU-4DFE's sequence folders (the
subject folder). A subject is centred when it has at least :data:`MIN_SCANS` scans (:data:`MIN_SEQUENCES` sequences)
whose names declare at least :data:`MIN_CLASSES` classes (:func:`affectvlm.datasets.declared_class`): the names
decide only whether a subject shows a mix, never a row's label. Other rows are left as scored.

It is transductive: a scan's label depends on the subject's other scans. So it is a property of ``affectvlm
predict``, ``affectvlm eval`` and the Batch page, not of the library's ``predict``.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from affectvlm.errors import ConfigError
from affectvlm.results import Row, as_probs, top_class

if TYPE_CHECKING:
    from affectvlm.model import AffectVLM

__all__ = ["MIN_CLASSES", "MIN_SCANS", "MIN_SEQUENCES", "SUBJECT_MEAN_MODES", "SubjectCheck", "SubjectMean",
           "centre_rows", "centred", "check_subject_mean", "neutral_rows", "resolve_subject_mean", "subject_of",
           "training_logits"]

SUBJECT_MEAN_MODES = ("auto", "none")
MIN_SCANS = 7
MIN_SEQUENCES = 4
MIN_CLASSES = 4
_FLOOR = 1e-300  # a probability that underflowed to 0 counts as this


@dataclass(frozen=True)
class SubjectMean:
    """What :func:`centre_rows` did: rows rescored, subjects centred, subjects left as scored (too few rows or too
    few declared expressions), and the indices of the rows rescored."""

    rescored: int
    subjects: int
    skipped: int
    rows: frozenset[int] = frozenset()

    def text(self) -> str:
        out = f"scored {self.rescored} inputs relative to their subject's mean ({self.subjects} subject(s))"
        if self.skipped:
            out += (f"; {self.skipped} subject(s) with under {MIN_SCANS} scans ({MIN_SEQUENCES} sequences) or under "
                    f"{MIN_CLASSES} named classes are as scored")
        return out


def subject_of(file: str, frame: object) -> str | None:
    """The subject a result row belongs to by its dataset's naming, or None: a scan (``frame`` empty) named as
    BU-3DFE or Bosphorus names its expression and neutral scans -> its folder and the name's first field; a pooled
    sequence row (``frame == "sequence"``) in a BU-4DFE subject folder or a subject's own zip -> that folder or zip."""
    from affectvlm.datasets import _SUBJ4D_RE, _zip_split
    from affectvlm.io.sequence import BOSPHORUS_SCAN_RE, BU3DFE_SCAN_RE

    path = str(file).replace("\\", "/").rstrip("/")
    folder, _, name = path.rpartition("/")
    if frame in ("", None):
        stem = name.rsplit(".", 1)[0]
        if BU3DFE_SCAN_RE.match(stem):
            return f"{folder}/{stem.split('_')[0].upper()}"
        if (m := BOSPHORUS_SCAN_RE.match(stem)) and (m.group(2).upper() == "E" or (m.group(2), m.group(3)) == ("N", "N")):
            return f"{folder}/{m.group(1).lower()}"
        return None
    if frame == "sequence":
        outer, zipped, member = _zip_split(path)
        if zipped and "/" not in member:  # F001.zip:Happy, a subject's zip
            return outer + zipped[:4] if _SUBJ4D_RE.match(outer.rpartition("/")[2]) else None
        inner = _zip_split(folder)[2]
        if _SUBJ4D_RE.match(inner.rpartition("/")[2]):
            return folder
    return None


def resolve_subject_mean(mode: str, model: object) -> tuple[str, str | None]:
    """The mode to score with and a note to show: ``auto`` becomes ``none`` for a model whose own validation
    subjects read better without it (``subject_mean: false`` in its ``affectvlm.json``, written by the trainer)."""
    if mode not in SUBJECT_MEAN_MODES:
        raise ConfigError(f"--subject-mean must be one of {', '.join(SUBJECT_MEAN_MODES)}, got {mode!r}")
    if mode != "auto" or getattr(model, "subject_mean", None) is not False:
        return mode, None
    return "none", ("scored each input alone: this model's validation subjects read better that way than relative "
                    "to their own mean (subject_mean in its affectvlm.json)")


def training_logits(model: "AffectVLM") -> np.ndarray | None:
    """The classifier's logits (C,) of the checkpoint's training mean embedding (``embedding_mean``), not
    normalised (the term :func:`centre_rows` adds back); None when the model stores no such mean."""
    import torch

    mean = getattr(model, "embedding_mean", None)
    if mean is None:
        return None
    with torch.no_grad():
        return model.logits_from_embedding(mean.reshape(1, -1).float()).cpu().numpy()[0].astype(np.float64)


def centre_rows(rows: list[Row], classes: Sequence[str], added: np.ndarray | None = None,
                mode: str = "auto") -> SubjectMean:
    """Rescore, in place, the rows of every subject that qualifies (see the module doc): log-probabilities minus
    the subject's mean, plus ``added`` (C,) (e.g. :func:`training_logits`; zeros when None). A class that no row of
    the subject gives any probability (neutral after ``contrast`` pooling) stays at 0."""
    from affectvlm.datasets import declared_class

    if mode not in SUBJECT_MEAN_MODES:
        raise ConfigError(f"--subject-mean must be one of {', '.join(SUBJECT_MEAN_MODES)}, got {mode!r}")
    if mode == "none":
        return SubjectMean(0, 0, 0)
    extra = np.zeros(len(classes)) if added is None else np.asarray(added, dtype=np.float64)
    if extra.shape != (len(classes),):
        raise ConfigError(f"subject mean: {len(classes)} added logits expected, got shape {extra.shape}")
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        if r.get("error"):
            continue
        key = subject_of(r["file"], r.get("frame"))
        if key is not None:
            groups[key].append(i)
    done = skipped = 0
    rescored: set[int] = set()
    for members in groups.values():
        sequences = rows[members[0]].get("frame") == "sequence"
        named = {declared_class(rows[i]["file"]) for i in members} - {None}
        if len(members) < (MIN_SEQUENCES if sequences else MIN_SCANS) or len(named) < MIN_CLASSES:
            skipped += 1
            continue
        Q = centred(np.array([[float(rows[i][c]) for c in classes] for i in members]), extra)
        for i, q in zip(members, Q):
            probs = as_probs(q)
            rows[i].update(zip(classes, probs))
            rows[i]["label"], rows[i]["confidence"] = top_class(classes, probs)
        done += 1
        rescored.update(members)
    return SubjectMean(len(rescored), done, skipped, frozenset(rescored))


def centred(probs: np.ndarray, added: np.ndarray | None = None) -> np.ndarray:
    """One subject's probabilities (N, C) -> each row's log-probabilities minus the rows' mean, plus ``added`` (C,),
    renormalised; a class no row gives any probability stays at 0."""
    P = np.asarray(probs, dtype=np.float64)
    live = P.max(0) > 0
    L = np.log(np.clip(P, _FLOOR, None))
    z = np.where(live, L - L.mean(0) + (0.0 if added is None else added), -np.inf)
    z -= z.max(1, keepdims=True)
    Q = np.exp(z)
    return Q / Q.sum(1, keepdims=True)


@dataclass(frozen=True)
class SubjectCheck:
    """Accuracy of labelled scans scored as they are (``alone``: alone or against the neutral scan, as the caller
    scored them) and relative to their subject's mean; ``rescored``: scans of the subjects that qualify."""

    alone: float
    centred: float
    rescored: int

    @property
    def helps(self) -> bool:
        return self.rescored > 0 and self.centred > self.alone

    def to_json(self) -> dict:
        return {"as_scored": round(self.alone, 6), "subject_mean": round(self.centred, 6), "rescored": self.rescored}


def check_subject_mean(probs: np.ndarray, labels: Sequence[int], subjects: Sequence[str], classes: Sequence[str],
                       added: np.ndarray | None = None, scored: np.ndarray | None = None,
                       counted: np.ndarray | None = None) -> SubjectCheck:
    """Score labelled scans (``probs`` (N, C), true class indices, subject ids) as ``affectvlm predict
    --subject-mean auto`` does, with the labels as the names' declared expressions (a subject qualifies with
    :data:`MIN_SCANS` scans of :data:`MIN_CLASSES` labels). ``scored``: the predictions to compare with (default
    the argmax of ``probs``), e.g. after the neutral reference; ``counted``: a boolean mask of the scans the
    accuracies count (default all; every scan still shapes its subject's mean)."""
    P = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    before = P.argmax(1) if scored is None else np.asarray(scored, dtype=np.int64)
    after = before.copy()
    rescored = 0
    for subj in dict.fromkeys(subjects):
        members = np.array([i for i, s in enumerate(subjects) if s == subj])
        if len(members) < MIN_SCANS or len(set(y[members].tolist())) < MIN_CLASSES:
            continue
        after[members] = centred(P[members], added).argmax(1)
        rescored += len(members)
    keep = np.ones(len(y), bool) if counted is None else np.asarray(counted, bool)
    if not keep.any():
        return SubjectCheck(float("nan"), float("nan"), 0)
    return SubjectCheck(float((before == y)[keep].mean()), float((after == y)[keep].mean()), rescored)


def neutral_rows(rows: list[Row], centred: SubjectMean, neutral: str) -> list[Row]:
    """The rows the neutral reference ``neutral`` then applies to: under ``auto`` those of subjects
    :func:`centre_rows` left alone (the subject's mean already takes out its resting lean, and over the validation
    trees the two together read worse than the mean alone); a pattern the user gave applies to every row."""
    if neutral.strip().lower() != "auto":
        return rows
    return [r for i, r in enumerate(rows) if i not in centred.rows]
