"""The Batch page: many scans from uploaded files and zips (each within the size limits), the results as
downloads in the same schema as ``affectvlm predict --out``, and a known class balance matched on them."""
from __future__ import annotations

import io as _io
import zipfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from affectvlm.errors import ConfigError, InputError
from affectvlm.io import MESH_EXTENSIONS
from affectvlm.limits import Limits, default_limits
from affectvlm.results import flagged_frame
from affectvlm.app.uploads import safe_name, unique_names

if TYPE_CHECKING:
    from affectvlm.prior import PriorNote


@dataclass(frozen=True)
class BatchUpload:
    """An upload's inputs for ``predict``: ``(name, bytes)`` files, ``(zip:member, reader)`` for a zip's scans, each
    decompressed when its turn comes (never all at once), and ``(name, bytes)`` for a zip that holds sequences
    (``predict`` reads it as ``affectvlm predict x.zip`` does: each member folder of frames one sequence, the other
    meshes scans); ``names`` in the same order. ``scans`` and ``sequences``: how many of each it holds."""

    inputs: list[tuple[str, Any]]
    scans: int = 0
    sequences: int = 0

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.inputs]

    @property
    def units(self) -> int:
        """Scans and sequences: the rows that say a whole input (:func:`affectvlm.results.whole_input_row`)."""
        return self.scans + self.sequences

    def found(self) -> str:
        """``12 scan(s) and 6 sequence(s) found``: what the page says of the upload."""
        parts = [f"{self.scans} scan(s)"] if self.scans or not self.sequences else []
        parts += [f"{self.sequences} sequence(s)"] if self.sequences else []
        return " and ".join(parts) + " found"


def collect_batch(files: Sequence[tuple[str, bytes]], *, limits: Limits | None = None) -> BatchUpload:
    """The scans and sequences of uploaded ``(name, bytes)`` files, named uniquely (:func:`unique_names`): zips are
    opened (all of an upload's zips share one unpacked-size budget); a zip of scans gives its members (named
    ``zip:member``), a zip with a member folder of frames (a BU-4DFE subject's ``Angry/000.wrl`` ...) is passed whole,
    as ``predict`` splits it into sequences and scans. Anything over a limit is refused with ``InputError`` naming
    it. Nothing is decompressed here."""
    from functools import partial

    from affectvlm.inputs import Reread
    from affectvlm.io.archive import SafeZip
    from affectvlm.io.sequence import is_mesh_name, member_groups

    limits = limits or default_limits()
    items: list[tuple[str, Any]] = []
    scans = sequences = 0
    unpacked = 0  # one budget for the whole upload: each zip does not get the limit of its own
    for (name, data), shown in zip(files, unique_names([safe_name(n) for n, _ in files])):
        if len(data) > limits.max_file_bytes:
            raise InputError(name, f"over the {limits.max_file_bytes / 2**20:.0f} MB limit")
        if name.lower().endswith(".zip"):
            left = limits.with_(max_unpacked_bytes=max(0, limits.max_unpacked_bytes - unpacked))
            z = SafeZip(data, left, name)  # checked and listed (the headers' sizes within the budget left)
            meshes = [n for n in z.names if is_mesh_name(n)]
            if not meshes:
                z.close()
                raise InputError(name, f"the zip holds no mesh file ({', '.join(MESH_EXTENSIONS)})")
            unpacked += sum(z.size(n) for n in z.names)
            groups = member_groups(meshes)
            if any(frames for _, _, frames in groups):  # as affectvlm.inputs reads a zip: folders of frames, scans
                z.close()
                items.append((shown, data))
                sequences += sum(1 for _, _, frames in groups if frames)
                scans += sum(len(ns) for _, ns, frames in groups if not frames)
                continue
            z.close_after(meshes)
            z.close()
            items += [(f"{shown}:{n}", Reread(partial(z.read, n))) for n in meshes]
            scans += len(meshes)
        else:
            items.append((shown, data))
            scans += 1
    if not items:
        raise InputError("upload", "no scan in the upload")
    return BatchUpload(items, scans, sequences)


def zip_bytes(files: Iterable[tuple[str, bytes]]) -> bytes:
    """An in-memory zip of ``(name, bytes)`` pairs (tests, samples)."""
    buf = _io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files:
            zf.writestr(name, data)
    return buf.getvalue()


def score_batch(items: Sequence[Any], model: Any, *, adapt: bool = True,
                on_row: Callable[[dict[str, Any]], None] | None = None, **kw: Any) -> tuple[list[dict[str, Any]], str]:
    """``predict`` rows of ``items``; with ``adapt``, scored with the image encoder's statistics of the set when it
    is many and varied enough (``affectvlm.adapt``, as ``affectvlm predict --adapt auto``). Returns the
    rows and a note saying what was done, or why it was skipped ("" when ``adapt`` is off)."""
    from affectvlm.adapt import adapt_for
    from affectvlm.predict import predict

    adaptation = adapt_for(model, items, "auto" if adapt else "none", **kw)
    rows = predict(items, adaptation.model, on_row=on_row, **kw)
    if not adapt:
        return rows, ""
    return rows, f"{'Adapted' if adaptation.adapted else 'Not adapted'} to this set: {adaptation.text()}"


def shown_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``rows`` for the page's table: an empty cell, not ``None``, where a row has no timestamp (scans,
    pooled rows); the downloads keep ``predict``'s schema."""
    from affectvlm.results import TIME_COLUMN

    return [{**r, TIME_COLUMN: ""} if TIME_COLUMN in r and r[TIME_COLUMN] is None else dict(r) for r in rows]


def rows_download(rows: Sequence[dict[str, Any]], fmt: str) -> bytes:
    """``predict`` rows as CSV or JSON bytes (:func:`affectvlm.predict.rows_to_csv` / ``rows_to_json``)."""
    from affectvlm.predict import rows_to_csv, rows_to_json

    if fmt == "csv":
        return rows_to_csv(list(rows)).encode("utf-8")
    if fmt == "json":
        return rows_to_json(list(rows)).encode("utf-8")
    raise ConfigError(f"download format must be csv or json, got {fmt!r}")


def match_batch(rows: Sequence[dict[str, Any]], spec: str, *, by_folder: bool = False,
                neutral: str = "none", subject_mean: str = "none",
                added: Any = None) -> tuple[list[dict[str, Any]], list["PriorNote"]]:
    """A copy of ``rows`` scored relative to each subject's mean (``subject_mean``, with the model's ``added``
    training logits, as ``affectvlm predict --subject-mean``), against each folder's neutral scans (``neutral``, as
    ``--neutral``) and with the class balance ``spec`` matched when one is given (``affectvlm.prior``, as
    ``--prior``); the scored rows are not touched. Returns it and the notes to show, each headed by what it is
    about; ConfigError for a bad ``spec``."""
    from affectvlm.predict import class_names
    from affectvlm.prior import PriorNote, match_rows, parse_prior, summarise
    from affectvlm.reference import match_neutral
    from affectvlm.subjects import centre_rows, neutral_rows

    classes = class_names(rows)
    prior = parse_prior(spec, classes) if spec.strip() else None
    out = [dict(r) for r in rows]
    notes = []
    centred = centre_rows(out, classes, added, subject_mean)
    if centred.rescored:
        notes.append(PriorNote(False, "Subject mean: " + centred.text()))
    ref = match_neutral(neutral_rows(out, centred, neutral), classes, neutral)
    if ref.rescored:
        notes.append(PriorNote(False, "Neutral reference: " + ref.text(neutral)))
    if prior is not None:
        by = "folder" if by_folder else "set"
        notes += [PriorNote(n.warning, "Class balance: " + n.text) for n in summarise(match_rows(out, classes, prior,
                                                                                                 by=by), by)]
    return out, notes


def batch_hint(rows: Sequence[dict[str, Any]]) -> "PriorNote | None":
    """The note ``affectvlm predict`` prints when a scored set's labels are lopsided (``affectvlm.prior.lean_hint``)."""
    from affectvlm.predict import class_names
    from affectvlm.prior import lean_hint

    return lean_hint(list(rows), class_names(rows), how="a known class balance typed above (e.g. uniform)")


def frame_notes(rows: Sequence[dict[str, Any]], most: int = 10) -> list[str]:
    """What the Batch page says about face frames, as ``affectvlm predict`` does on stderr: the scans that took their
    set's frame (their own was uncertain) and the other flagged ones, each list cut at ``most`` names."""
    def names(rs: list[dict[str, Any]]) -> str:
        shown = ", ".join(str(r["file"]) for r in rs[:most])
        return shown + (f" and {len(rs) - most} more" if len(rs) > most else "")

    flagged = [r for r in rows if flagged_frame(r)]
    took = [r for r in flagged if r.get("orientation_source") == "set"]
    rest = [r for r in flagged if r.get("orientation_source") != "set"]
    out = []
    if took:
        up, front = took[0].get("orientation_up"), took[0].get("orientation_front")
        out.append(f"{len(took)} scan(s) took the face frame most of this upload reads (up {up}, front {front}) "
                   f"because their own was uncertain: {names(took)}. Open one in Analyse to see its own reading, "
                   "or set Up/Front if the upload mixes axis conventions.")
    if rest:
        out.append(f"{len(rest)} scan(s) have an uncertain face frame (orientation_flagged): {names(rest)}. Check "
                   "them in Analyse, or set Up/Front.")
    return out
