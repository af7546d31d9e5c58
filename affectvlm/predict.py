"""From scans to emotion probabilities: ``predict`` (files, folders, zips, uploads, meshes),
``predict_mesh`` (one scan or sequence, with the rendered views, for the app), ``iter_sequence``
(per-frame results as they are scored) and ``write_rows`` (CSV / JSON).

Rows: ``file, frame, label, confidence, <one column per class>, error``. ``frame`` is ``""`` for a
scan, the frame number for a frame of a 4D sequence, and ``"sequence"`` for the pooled row of a
sequence. A bad input gives a row with ``error`` set (the other columns empty) and the rest still run.

What is a sequence: a folder or zip whose mesh files differ only by their numbers (``000.wrl``,
``001.wrl`` ... or ``frame_0001.obj`` ...). A folder of differently named scans (a BU-3DFE subject
folder) is a batch of scans; sub-folders are visited (so a BU-4DFE subject folder gives one
sequence per expression).

Temporal pooling (``pooling=``) of a sequence's frame probabilities into its ``"sequence"`` row:

* ``"peak"`` (default): average the probabilities of the most expressive 30 % of the frames
  (at least one). Expressiveness is ``1 - p(neutral)`` when there is a neutral class, else the
  distance of the frame's probabilities from the first frame's. BU-4DFE sequences go neutral ->
  apex -> neutral, so a plain mean is diluted by the neutral frames at both ends.
* ``"mean"``: the plain average over all frames.
"""
from __future__ import annotations

import csv
import io as _io
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from affectvlm.errors import AffectVLMError, ConfigError, InputError, printable
from affectvlm.fileio import atomic_write_text
from affectvlm.io import MESH_EXTENSIONS
from affectvlm.io._common import check_face
from affectvlm.io.sequence import is_mesh_name, looks_like_sequence  # noqa: F401  (re-exported)
from affectvlm.limits import Limits, default_limits
from affectvlm.mesh import Mesh, MeshSequence

POOLINGS = ("peak", "mean")
PEAK_FRACTION = 0.3
FIXED_COLUMNS = ("file", "frame", "label", "confidence")
Row = dict

# ------------------------------------------------------------------------------------------------ inputs


@dataclass
class _Item:
    source: str
    kind: str  # "scan" | "sequence" | "error"
    load: Callable[[], Any] | None = None
    error: str = ""


def _error_text(exc: BaseException, source: str = "") -> str:
    """The row's error: the problem (the row names the file), led by the member or frame file when the
    error is about a file inside ``source`` (a sequence's frame, a folder's file)."""
    if isinstance(exc, InputError):
        inner = exc.source[len(source):].lstrip("/\\:") if source and exc.source.startswith(source) else ""
        return f"{inner}: {exc.problem}" if inner else exc.problem
    if isinstance(exc, AffectVLMError):
        return str(exc)
    return f"unexpected {type(exc).__name__}: {exc}"


def _expand(inputs: Any, *, limits: Limits, frames: int | None, every: int) -> list[_Item]:
    from affectvlm.io import load_mesh, load_sequence
    from affectvlm.io.archive import is_zip, safe_zip_members

    def seq_loader(src: Any, name: str | None = None) -> Callable[[], MeshSequence]:
        return lambda: load_sequence(src, name, every=every, n_frames=frames, limits=limits)

    def from_zip(data: Any, source: str) -> list[_Item]:
        from affectvlm.io.archive import SafeZip

        with SafeZip(data, limits, source) as z:
            names = [n for n in z.names if is_mesh_name(n)]
        if not names:
            raise InputError(source, f"the zip holds no mesh file ({', '.join(MESH_EXTENSIONS)})")
        if looks_like_sequence(names):
            return [_Item(source, "sequence", seq_loader(data, source))]
        members = safe_zip_members(data, limits, source, select=is_mesh_name)
        return [_Item(f"{source}:{n}", "scan",
                      lambda b=b, n=n, s=f"{source}:{n}": _renamed(load_mesh(b, n, limits=limits), s))
                for n, b in members]

    def from_dir(top: Path, shown_top: str) -> list[_Item]:
        """Walk a folder depth-first in name order, each real folder and file once (symlink loops end)."""
        out: list[_Item] = []
        seen: set[tuple[int, int]] = set()
        stack: list[tuple[Path, str]] = [(top, shown_top)]
        n_entries = 0
        while stack:
            d, shown = stack.pop()
            try:
                st = d.stat()
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue  # a symlink back into the walk, or a second link to a visited folder
                seen.add(key)
                with os.scandir(d) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as e:
                out.append(_Item(shown, "error", error=f"cannot list folder: {e.strerror or e}"))
                continue
            n_entries += len(entries)
            if n_entries > limits.max_folder_files:
                out.append(_Item(shown_top, "error", error=f"the folder walk passed {limits.max_folder_files} "
                                 "entries and stopped there (AFFECTVLM_MAX_FOLDER_FILES)"))
                break
            files: list[tuple[str, Path]] = []
            dirs: list[tuple[str, Path]] = []
            for e in entries:
                try:
                    if e.is_dir():
                        if not e.name.startswith((".", "__MACOSX")):
                            dirs.append((e.name, Path(e.path)))
                    elif e.is_file() and is_mesh_name(e.name):
                        fst = e.stat()
                        fkey = (fst.st_dev, fst.st_ino)
                        if fkey not in seen:
                            seen.add(fkey)
                            files.append((e.name, Path(e.path)))
                except OSError:
                    continue  # a dangling link or an entry that vanished
            if looks_like_sequence([n for n, _ in files]):
                out.append(_Item(shown, "sequence", seq_loader(d, shown)))
                continue  # a sequence folder is one input; its sub-folders are not searched
            for n, f in files:
                name = str(f) if shown == str(d) else os.path.join(shown, n)
                out.append(_Item(name, "scan", lambda f=f, name=name: load_mesh(f, name, limits=limits)))
            stack += [(sub, os.path.join(shown, n)) for n, sub in reversed(dirs)]
        if not out:
            return [_Item(shown_top, "error", error=f"folder holds no mesh file ({', '.join(MESH_EXTENSIONS)})")]
        return out

    def from_path(p: Path, shown: str) -> list[_Item]:
        if p.is_dir():
            return from_dir(p, shown)
        if not p.exists():
            return [_Item(shown, "error", error="file not found")]
        try:
            with open(p, "rb") as fh:
                head = fh.read(4)
        except OSError as e:
            return [_Item(shown, "error", error=f"cannot read: {e.strerror or e}")]
        if is_zip(head):
            return from_zip(p, shown)
        return [_Item(shown, "scan", lambda: load_mesh(p, shown, limits=limits))]

    if isinstance(inputs, (str, os.PathLike, Mesh, MeshSequence)) or (
            isinstance(inputs, tuple) and len(inputs) == 2 and isinstance(inputs[1], (bytes, bytearray))):
        inputs = [inputs]
    items: list[_Item] = []
    for x in inputs:
        try:
            if isinstance(x, Mesh):
                items.append(_Item(x.source, "scan", lambda x=x: x))
            elif isinstance(x, MeshSequence):
                items.append(_Item(x.source, "sequence", lambda x=x: x))
            elif isinstance(x, (tuple, list)) and len(x) == 2 and isinstance(x[1], (bytes, bytearray, memoryview)):
                name, data = str(x[0]), bytes(x[1])
                if is_zip(data[:4]):
                    items += from_zip(data, name)
                else:
                    items.append(_Item(name, "scan", lambda d=data, n=name: load_mesh(d, n, limits=limits)))
            elif isinstance(x, (str, os.PathLike)):
                items += from_path(Path(x).expanduser(), os.fspath(x))
            elif isinstance(x, (tuple, list)) and len(x) == 2 and isinstance(x[1], (str, os.PathLike)):
                items += from_path(Path(x[1]), str(x[0]))  # (shown name, path): e.g. an upload saved to a temp file
            else:
                items.append(_Item(repr(x)[:80], "error", error=f"cannot read a {type(x).__name__} "
                                   "(give a path, (name, bytes), a Mesh or a MeshSequence)"))
        except Exception as e:  # a broken zip or folder is that input's row, not a crash
            items.append(_Item(_display(x), "error", error=_error_text(e)))
    return items


def _display(x: Any) -> str:
    if isinstance(x, (Mesh, MeshSequence)):
        return x.source
    if isinstance(x, (tuple, list)) and x:
        return str(x[0])
    return os.fspath(x) if isinstance(x, (str, os.PathLike)) else repr(x)[:80]


def _renamed(mesh: Mesh, source: str) -> Mesh:
    mesh.source = source
    return mesh


# ------------------------------------------------------------------------------------------------ scoring


def _as_model(model: Any) -> Any:
    from affectvlm.model import AffectVLM, load_model

    if model is None or isinstance(model, (str, os.PathLike)):
        return load_model(model)
    if isinstance(model, AffectVLM):
        return model
    raise ConfigError(f"model must be a spec string or an AffectVLM, got {type(model).__name__}")


def _settings(model: Any, views: Any, up: str | None, front: str | None) -> Any:
    from dataclasses import replace

    from affectvlm.render import as_views

    st = model.render
    kw: dict[str, Any] = {}
    if views is not None:
        kw["views"] = as_views(views)
    if up is not None:
        kw["up"] = up
    if front is not None:
        kw["front"] = front
    return replace(st, **kw) if kw else st


def _render(settings: Any, meshes: list[Mesh], device: Any) -> list[torch.Tensor | BaseException]:
    """Render a batch; when the batch fails, render one by one so only the bad mesh fails."""
    try:
        imgs = settings.render(meshes, device=device)
        return list(imgs.unbind(0))
    except Exception as e:
        if len(meshes) == 1:
            return [e]
    out: list[torch.Tensor | BaseException] = []
    for m in meshes:
        out += _render(settings, [m], device)
    return out


FRAME_COLUMNS = ("orientation_up", "orientation_front", "orientation_confidence", "orientation_flagged")


def _orient(settings: Any, meshes: list[Mesh]) -> tuple[Any, list[Mesh | BaseException], list[dict]]:
    """Find each scan's face frame once (:func:`affectvlm.geometry.canonicalise`); returns settings that
    render the canonical meshes as they are, the meshes (or the error of each), and the frame fields of
    each row (axes, confidence, flag and the 83 landmarks in the scan's coordinates)."""
    from dataclasses import replace

    from affectvlm.geometry import canonicalise

    if not settings.canonical:
        return settings, list(meshes), [{} for _ in meshes]
    out: list[Mesh | BaseException] = []
    info: list[dict] = []
    for m in meshes:
        try:
            c = canonicalise(m, up=settings.up, front=settings.front, crop=settings.crop, landmarks=True)
        except Exception as e:  # the render step reports it in the row
            out.append(e)
            info.append({})
            continue
        out.append(c)
        info.append(frame_fields(c.meta))
    return replace(settings, up="+y", front="+z"), out, info


def frame_fields(meta: dict) -> dict:
    """Row fields of a canonicalised mesh's ``meta``: where up and front were, how sure, and landmarks."""
    c = meta.get("canonical") or {}
    conf = c.get("confidence") or {}
    return {"orientation_up": c.get("up"), "orientation_front": c.get("front"),
            "orientation_confidence": round(float(min(conf.values())), 4) if conf else None,
            "orientation_flagged": bool(c.get("low_confidence", False)), "landmarks": c.get("landmarks")}


def _check_classes(classes: Sequence[str]) -> None:
    clash = set(classes) & (set(FIXED_COLUMNS) | {"error"})
    if clash:
        raise ConfigError(f"class names {sorted(clash)} clash with result columns {FIXED_COLUMNS + ('error',)}")


def make_row(file: str, frame: Any, classes: Sequence[str], probs: Sequence[float] | None = None,
             error: str = "") -> Row:
    """One result row (probabilities as floats; None everywhere when ``error``)."""
    row: Row = {"file": file, "frame": frame, "label": "", "confidence": None}
    for c in classes:
        row[c] = None
    if probs is not None:
        p = [float(v) for v in probs]
        k = int(np.argmax(p))
        row["label"], row["confidence"] = classes[k], p[k]
        row.update(zip(classes, p))
    row["error"] = error
    return row


def pool_probabilities(probs: np.ndarray, classes: Sequence[str], method: str = "peak",
                       fraction: float = PEAK_FRACTION) -> np.ndarray:
    """(T, C) frame probabilities -> (C,) for the sequence (see the module docstring)."""
    P = np.asarray(probs, dtype=np.float64)
    if P.ndim != 2 or P.shape[0] == 0:
        raise ConfigError("pooling needs at least one scored frame")
    if method == "mean":
        return P.mean(0)
    if method != "peak":
        raise ConfigError(f"unknown pooling {method!r}; choose from {POOLINGS}")
    lower = [c.lower() for c in classes]
    if "neutral" in lower:
        score = 1.0 - P[:, lower.index("neutral")]
    else:
        score = 0.5 * np.abs(P - P[0]).sum(1)
    k = max(1, math.ceil(fraction * P.shape[0]))
    top = np.argsort(-score, kind="stable")[:k]
    return P[top].mean(0)


def _score(model: Any, images: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model.predict_proba(images).float().cpu().numpy()


def iter_sequence(seq: Any, model: Any = None, *, views: Any = None, up: str | None = None,
                  front: str | None = None, frames: int | None = None, every: int = 1, batch_size: int = 8,
                  pooling: str = "peak", limits: Limits | None = None, source: str | None = None) -> Iterator[Row]:
    """Yield one row per frame as soon as it is scored, then the pooled ``frame="sequence"`` row.

    ``seq``: a MeshSequence, or anything ``load_sequence`` reads (folder, zip path/bytes, list of files).
    Frames that fail to render give rows with ``error``; the pooled row uses the others.
    """
    model = _as_model(model)
    _check_classes(model.classes)
    if pooling not in POOLINGS:
        raise ConfigError(f"unknown pooling {pooling!r}; choose from {POOLINGS}")
    if not isinstance(seq, MeshSequence):
        from affectvlm.io import load_sequence

        seq = load_sequence(seq, source, every=every, n_frames=frames, limits=limits or default_limits())
    name = source or seq.source
    settings = _settings(model, views, up, front)
    seq_frame: dict = {}
    if settings.canonical and seq.frames:
        # one face frame for the whole sequence, found on its middle frame (frames of a scan session share
        # the file's axes; deciding per frame could flip single frames)
        st, oriented, info = _orient(settings, [seq.frames[len(seq.frames) // 2]])
        if isinstance(oriented[0], Mesh):
            from dataclasses import replace

            settings = replace(settings, up=info[0]["orientation_up"], front=info[0]["orientation_front"])
            seq_frame = {k: v for k, v in info[0].items() if k != "landmarks"}
    classes = list(model.classes)
    model.eval()
    got: list[np.ndarray] = []
    bs = max(1, int(batch_size))
    for lo in range(0, len(seq.frames), bs):
        chunk, ids = seq.frames[lo:lo + bs], seq.frame_ids[lo:lo + bs]
        refused: dict[int, BaseException] = {}
        for i, m in enumerate(chunk):
            try:
                check_face(m, limits)
            except InputError as e:
                refused[i] = e
        good = [m for i, m in enumerate(chunk) if i not in refused]
        it = iter(_render(settings, good, model.device) if good else [])
        rendered = [refused[i] if i in refused else next(it) for i in range(len(chunk))]
        ok = [i for i, r in enumerate(rendered) if isinstance(r, torch.Tensor)]
        probs = _score(model, torch.stack([rendered[i] for i in ok])) if ok else np.zeros((0, len(classes)))
        pmap = dict(zip(ok, probs))
        for i, fid in enumerate(ids):
            if i in pmap:
                got.append(pmap[i])
                yield make_row(name, int(fid), classes, pmap[i])
            else:
                yield make_row(name, int(fid), classes, error=f"frame {fid}: {_error_text(rendered[i])}")
    if got:
        yield dict(make_row(name, "sequence", classes, pool_probabilities(np.stack(got), classes, pooling)),
                   **seq_frame)
    else:
        yield make_row(name, "sequence", classes, error="no frame could be scored")


def predict(inputs: Any, model: Any = None, *, views: Any = None, frames: int | None = None, every: int = 1,
            batch_size: int = 8, progress: bool = False, on_row: Callable[[Row], None] | None = None,
            limits: Limits | None = None, up: str | None = None, front: str | None = None,
            pooling: str = "peak") -> list[Row]:
    """Score scans and 4D sequences; returns rows in input order (see the module docstring).

    ``inputs``: a path (file, folder, zip), ``(name, bytes)``, a Mesh / MeshSequence, or a list of them; in a
    list, ``(name, path)`` reads ``path`` but shows ``name`` in the rows (uploads saved to temp files).
    Folder walks visit each real file once (symlink loops end); an unreadable sub-folder is one error row.
    Scans too small or flat to be a face (see `affectvlm.io._common.check_face`) get an error row.
    ``model``: an AffectVLM or a spec for ``load_model`` (None = the embedded default).
    ``views`` / ``up`` / ``front`` override the model's render settings; ``frames`` (N evenly spaced)
    and ``every`` (every k-th) sample sequence frames. ``on_row`` is called with each row as it is made.
    """
    if frames is not None and (isinstance(frames, bool) or not isinstance(frames, int) or frames < 1):
        raise ConfigError(f"frames must be a positive integer, got {frames!r}")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ConfigError(f"every must be a positive integer, got {every!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if pooling not in POOLINGS:
        raise ConfigError(f"unknown pooling {pooling!r}; choose from {POOLINGS}")
    model = _as_model(model)
    classes = list(model.classes)
    _check_classes(classes)
    settings = _settings(model, views, up, front)
    limits = limits or default_limits()
    items = _expand(inputs, limits=limits, frames=frames, every=every)
    rows: list[Row] = []
    from tqdm import tqdm

    bar = tqdm(total=len(items), disable=not progress, file=sys.stderr, unit="scan", dynamic_ncols=True)

    def emit(row: Row) -> None:
        rows.append(row)
        if on_row is not None:
            on_row(row)

    pending: list[tuple[_Item, Mesh]] = []

    def flush() -> None:
        if not pending:
            return
        st, oriented, frames_info = _orient(settings, [m for _, m in pending])
        good = [m for m in oriented if isinstance(m, Mesh)]
        it = iter(_render(st, good, model.device) if good else [])
        rendered = [next(it) if isinstance(m, Mesh) else m for m in oriented]
        ok = [i for i, r in enumerate(rendered) if isinstance(r, torch.Tensor)]
        probs = dict(zip(ok, _score(model, torch.stack([rendered[i] for i in ok])))) if ok else {}
        for i, (item, _) in enumerate(pending):
            if i in probs:
                emit(dict(make_row(item.source, "", classes, probs[i]), **frames_info[i]))
            else:
                emit(make_row(item.source, "", classes, error=_error_text(rendered[i])))
        bar.update(len(pending))
        pending.clear()

    model.eval()
    try:
        for item in items:
            if item.kind == "scan":
                try:
                    mesh = check_face(item.load(), limits)
                except Exception as e:
                    flush()
                    emit(make_row(item.source, "", classes, error=_error_text(e)))
                    bar.update(1)
                    continue
                pending.append((item, mesh))
                if len(pending) >= batch_size:
                    flush()
                continue
            flush()
            if item.kind == "error":
                emit(make_row(item.source, "", classes, error=item.error))
            else:
                try:
                    seq = item.load()
                except Exception as e:
                    emit(make_row(item.source, "sequence", classes, error=_error_text(e, item.source)))
                    bar.update(1)
                    continue
                bar.total += len(seq) - 1
                bar.refresh()
                for row in iter_sequence(seq, model, views=settings.views, up=settings.up, front=settings.front,
                                         batch_size=batch_size, pooling=pooling, source=item.source,
                                         limits=limits):
                    emit(row)
                    if row["frame"] != "sequence":
                        bar.update(1)
                continue
            bar.update(1)
        flush()
    finally:
        bar.close()
    return rows


def _view_caption(v: Any) -> str:
    return f"yaw {v.yaw:g}°" + (f", pitch {v.pitch:g}°" if v.pitch else "")


def predict_mesh(mesh: Mesh | MeshSequence, model: Any = None, *, views: Any = None, up: str | None = None,
                 front: str | None = None, pooling: str = "peak", batch_size: int = 8,
                 return_images: bool = True) -> dict[str, Any]:
    """Score one scan (or a sequence, pooled) and return what the app shows.

    Returns ``{"probs": {class: p}, "label", "confidence", "classes", "rows"`` (per-frame rows of a
    sequence, else one row), ``"view_weights": {caption: w}``, ``"images": [(caption, PIL image)]``
    (the views the model saw; for a sequence, of its most expressive frame) and ``"tensor"`` (V, 3, H, W)}.
    """
    model = _as_model(model)
    classes = list(model.classes)
    _check_classes(classes)
    settings = _settings(model, views, up, front)
    captions = [_view_caption(v) for v in settings.views]
    if not isinstance(mesh, MeshSequence):
        check_face(mesh)
    if isinstance(mesh, MeshSequence):
        rows = list(iter_sequence(mesh, model, views=settings.views, up=settings.up, front=settings.front,
                                  batch_size=batch_size, pooling=pooling))
        pooled = rows[-1]
        if pooled["error"]:
            raise InputError(mesh.source, pooled["error"])
        frame_rows = [r for r in rows[:-1] if not r["error"]]
        probs = np.array([pooled[c] for c in classes])
        lower = [c.lower() for c in classes]
        best = max(frame_rows, key=lambda r: 1 - r[classes[lower.index("neutral")]] if "neutral" in lower
                   else r["confidence"])
        show = mesh.frames[mesh.frame_ids.index(best["frame"])]
    else:
        rows, show = None, mesh
    images = settings.render([show], device=model.device)
    with torch.no_grad():
        z = model.encode_views(images)
        weights = model.view_weights(z)[0].cpu().tolist()
        if rows is None:
            probs = torch.softmax(model.logits_from_embedding(model.fuse(z)).float(), -1)[0].cpu().numpy()
            rows = [make_row(mesh.source, "", classes, probs)]
    k = int(np.argmax(probs))
    out: dict[str, Any] = {
        "probs": {c: float(p) for c, p in zip(classes, probs)},
        "label": classes[k], "confidence": float(probs[k]), "classes": classes, "rows": rows,
        "view_weights": dict(zip(captions, weights)), "tensor": images[0].cpu(),
    }
    if return_images:
        from affectvlm.render import to_pil

        out["images"] = list(zip(captions, to_pil(images[0])))
    return out


# ------------------------------------------------------------------------------------------------ output


def columns(rows: Sequence[Row]) -> list[str]:
    """``file, frame, label, confidence, <classes in first-seen order>, <orientation columns>, error``
    (``landmarks`` is not a column: JSON rows carry it as a list, CSV spreads it on request)."""
    cols = list(FIXED_COLUMNS)
    for r in rows:
        for k in r:
            if k not in cols and k not in ("error", "landmarks") and k not in FRAME_COLUMNS:
                cols.append(k)
    if any(k in r for r in rows for k in FRAME_COLUMNS):
        cols += list(FRAME_COLUMNS)
    return cols + ["error"]


def _landmark_cells(r: Row, n: int) -> list[str]:
    lm = r.get("landmarks")
    if not lm:
        return [""] * (3 * n)
    return [f"{float(c):.4f}" for p in lm for c in p]


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6f}"
    return str(v)


def rows_to_csv(rows: Sequence[Row], *, landmarks: bool = False) -> str:
    """CSV text; with ``landmarks`` the 83 landmarks follow as ``lm01_x, lm01_y, lm01_z, ...`` (scan units)."""
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = columns(rows)
    n = max((len(r.get("landmarks") or []) for r in rows), default=0) if landmarks else 0
    w.writerow(cols + [f"lm{i + 1:02d}_{a}" for i in range(n) for a in "xyz"])
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in cols] + (_landmark_cells(r, n) if n else []))
    return buf.getvalue()


def rows_to_json(rows: Sequence[Row]) -> str:
    """JSON list of rows; rows of scans whose frame was found carry ``landmarks`` (83 x [x, y, z])."""
    cols = columns(rows)
    out = []
    for r in rows:
        d = {c: r.get(c) for c in cols}
        if r.get("landmarks") is not None:
            d["landmarks"] = r["landmarks"]
        out.append(d)
    return json.dumps(out, indent=1, allow_nan=False) + "\n"


def format_table(rows: Sequence[Row], classes: Sequence[str] | None = None) -> str:
    """A plain-text table for the terminal."""
    cols = columns(rows)
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
    text = rows_to_csv(rows, landmarks=landmarks) if suffix == ".csv" else rows_to_json(rows)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(p, text)
    except OSError as e:
        raise ConfigError(f"{p}: cannot write results ({e.strerror or e})") from None
    return p
