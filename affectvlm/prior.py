"""Class-prior matching over a dataset: ``affectvlm predict --prior``.

A face model, scanner or population the model never saw can make every scan lean towards one emotion (a
face that looks disgusted at rest, say). When a whole labelled set is scored and its class balance is known,
as it is by design for BU-3DFE and BU-4DFE, that lean can be measured on the set itself and taken
out: one offset per class is added to every scan's log-probabilities, chosen so that the mean of the
renormalised probabilities over the set equals the stated prior (the dual of a one-sided Sinkhorn balance).
Every scan is moved by the same offsets: what one scan shows more than another is kept, the set-wide lean is not.

With ``by="folder"`` each folder is matched on its own: in BU-3DFE and BU-4DFE a folder is one subject, who
shows every expression, so a subject's own resting lean (a face that looks sad at rest) is taken out too.

It is transductive: a scan's label then depends on the other scans scored with it. So it is off unless asked
for, applies only to sets of at least :data:`MIN_ROWS` (folders: one row per class), and a figure measured with it
should say so.

Prior specs: ``uniform`` (every class equally common) or ``CLASS=WEIGHT,...`` (relative weights; classes not
named weigh 1), e.g. ``neutral=0.25`` for BU-3DFE (one neutral scan per four of each expression) or
``neutral=0`` for BU-4DFE sequences (no neutral class).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import PurePath
from typing import Sequence

import numpy as np

from affectvlm.errors import ConfigError
from affectvlm.results import Row, as_probs, top_class

__all__ = ["MIN_ROWS", "PRIOR_GROUPS", "PriorMatch", "PriorNote", "folder_of", "lean_hint", "parse_prior",
           "match_prior", "match_rows", "summarise"]
MIN_ROWS = 20  # fewer scans say too little about a set's lean to correct it
HINT_ROWS = 50  # a lopsided share of labels is only worth a hint over this many rows
HINT_LOW, HINT_HIGH = 0.25, 2.5  # a label share below / above these multiples of an even share is lopsided
PRIOR_GROUPS = ("set", "folder")


@dataclass(frozen=True)
class PriorMatch:
    """What :func:`match_rows` did to one kind of row (``"scan"`` or ``"sequence"``)."""

    kind: str
    rows: int
    offsets: dict[str, float]  # added to each class's log-probability; empty when too few rows to match
    group: str = ""  # the folder, with ``by="folder"``


@dataclass(frozen=True)
class PriorNote:
    """One line for the user about a matching: ``warning`` when rows were left as scored and none matched."""

    warning: bool
    text: str


def parse_prior(spec: str, classes: Sequence[str]) -> np.ndarray:
    """``uniform`` or ``CLASS=WEIGHT,...`` -> the prior over ``classes`` (sums to 1)."""
    w = np.ones(len(classes))
    text = spec.strip()
    if text.lower() != "uniform":
        lower = [c.lower() for c in classes]
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, eq, value = part.partition("=")
            if not eq or name.strip().lower() not in lower:
                raise ConfigError(f"--prior {spec!r}: expected 'uniform' or CLASS=WEIGHT pairs over the classes "
                                  f"{', '.join(classes)}")
            try:
                weight = float(value)
            except ValueError:
                weight = math.nan
            if not math.isfinite(weight) or weight < 0:
                raise ConfigError(f"--prior {spec!r}: the weight of {name.strip()} must be a number >= 0")
            w[lower.index(name.strip().lower())] = weight
    if (w > 0).sum() < 2:
        raise ConfigError(f"--prior {spec!r}: at least two classes need a weight above 0")
    return w / w.sum()


def match_prior(probs: np.ndarray, prior: np.ndarray, *, iterations: int = 1000,
                tolerance: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) probabilities -> (matched probabilities, the C log offsets). A class that no row gives any
    probability (neutral after ``contrast`` pooling) keeps 0, and the prior is renormalised over the rest."""
    P = np.asarray(probs, dtype=np.float64)
    prior = np.asarray(prior, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] != len(prior) or len(P) == 0:
        raise ConfigError(f"prior matching needs (N, {len(prior)}) probabilities, got shape {P.shape}")
    live = (prior > 0) & (P.sum(0) > 0)
    target = np.where(live, prior, 0.0)
    target /= target.sum()
    logp = np.where(live, np.log(np.clip(P, 1e-300, None)), -np.inf)
    b = np.zeros(P.shape[1])

    def softmax(z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    Q = softmax(logp)
    for _ in range(iterations):
        step = np.log(target[live] / np.clip(Q.mean(0)[live], 1e-300, None))
        if np.abs(step).max() < tolerance:
            break
        b[live] += 0.5 * step  # damped, so the fixed point is approached without oscillating
        Q = softmax(logp + b)
    b[live] -= b[live].mean()
    return Q, np.where(live, b, 0.0)


def folder_of(file: str) -> str:
    """The folder of a row's file (a subject's folder in BU-3DFE/BU-4DFE layouts), whatever the separator."""
    return str(PurePath(str(file).replace("\\", "/")).parent)


def match_rows(rows: list[Row], classes: Sequence[str], prior: np.ndarray, *, by: str = "set") -> list[PriorMatch]:
    """Match the scan rows and, separately, the pooled sequence rows of ``predict`` to ``prior`` in place
    (probabilities, ``label``, ``confidence``); frame rows and error rows stay as scored.

    ``by="set"``: all rows of a kind together, if there are at least :data:`MIN_ROWS`. ``by="folder"``: each
    folder's rows apart (a subject's folder in BU-3DFE/BU-4DFE layouts, when every subject shows every class in the
    stated balance), if it has at least one row per class the prior allows. Groups too small are left as scored and
    reported with ``offsets`` empty."""
    if by not in PRIOR_GROUPS:
        raise ConfigError(f"--prior-by {by!r}: choose from {', '.join(PRIOR_GROUPS)}")
    out = []
    for kind, frame in (("scan", ""), ("sequence", "sequence")):
        idx = [i for i, r in enumerate(rows) if not r.get("error") and r.get("frame") == frame]
        groups: dict[str, list[int]] = {}
        for i in idx:
            groups.setdefault(folder_of(rows[i]["file"]) if by == "folder" else "", []).append(i)
        need = MIN_ROWS if by == "set" else int((np.asarray(prior) > 0).sum())
        for group, members in groups.items():
            if len(members) < need:
                out.append(PriorMatch(kind, len(members), {}, group))
                continue
            Q, b = match_prior(np.array([[rows[i][c] for c in classes] for i in members]), prior)
            for i, q in zip(members, Q):
                probs = as_probs(q)
                rows[i].update(zip(classes, probs))
                rows[i]["label"], rows[i]["confidence"] = top_class(classes, probs)
            out.append(PriorMatch(kind, len(members), {c: round(float(x), 4) for c, x in zip(classes, b)}, group))
    return out


def summarise(done: Sequence[PriorMatch], by: str = "set") -> list[PriorNote]:
    """What :func:`match_rows` did, a line per kind of row (what the CLI prints and the Batch page shows)."""
    notes = []
    for kind in ("scan", "sequence"):
        matched = [m for m in done if m.kind == kind and m.offsets]
        short = [m for m in done if m.kind == kind and not m.offsets]
        if by == "set":
            for m in matched:
                lean = ", ".join(f"{c} {-x:+.2f}" for c, x in m.offsets.items() if x)
                notes.append(PriorNote(False, f"matched over {m.rows} {kind}s (the set's lean in log-probability: "
                                              f"{lean})"))
            for m in short:
                notes.append(PriorNote(True, f"only {m.rows} {kind}(s) scored; matching needs at least {MIN_ROWS}, "
                                             "so they are as scored"))
        elif matched or short:
            text = f"matched {sum(m.rows for m in matched)} {kind}s in {len(matched)} folder(s)"
            if short:
                text += (f"; {sum(m.rows for m in short)} in {len(short)} folder(s) with fewer rows than classes "
                         "are as scored")
            notes.append(PriorNote(not matched, text))
    return notes


def lean_hint(rows: Sequence[Row], classes: Sequence[str], *,
              how: str = "--prior uniform (or the set's balance, e.g. neutral=0.25)") -> PriorNote | None:
    """A hint when the labels of a scored set are lopsided (over :data:`HINT_ROWS` scan or sequence rows, a class
    given under a quarter or over 2.5 times an even share), as a face model or scanner the model never saw can make
    them: if the set is balanced by design, ``--prior`` (``how`` says it in the caller's words) takes that lean out.
    None when the labels look even (or the set is small). It changes nothing: an unbalanced set (one patient, one
    emotion) is lopsided for good reason."""
    for kind, frame in (("scan", ""), ("sequence", "sequence")):
        labels = [r.get("label") for r in rows if not r.get("error") and r.get("frame") == frame]
        n = len(labels)
        live = [c for c in classes if not (kind == "sequence" and c.lower() == "neutral")]  # pooled without neutral
        if n < HINT_ROWS or len(live) < 2:
            continue
        share = {c: labels.count(c) / n for c in live}
        even = 1.0 / len(live)
        low = [c for c in live if share[c] < HINT_LOW * even and c.lower() != "neutral"]  # BU-3DFE has few
        high = [c for c in live if share[c] > HINT_HIGH * even]
        if low or high:
            parts = ", ".join(f"{c} {100 * share[c]:.0f} %" for c in sorted(set(high + low), key=lambda c: -share[c]))
            return PriorNote(False, f"the labels of these {n} {kind}s are lopsided ({parts}; an even share is "
                                    f"{100 * even:.0f} %). If the set is balanced by design (BU-3DFE, BU-4DFE), the "
                                    f"face model or scanner may lean the model one way: {how} takes a set-wide lean "
                                    "out")
    return None

