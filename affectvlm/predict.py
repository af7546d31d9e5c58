"""From scans to emotion probabilities: ``predict`` (files, folders, zips, uploads, meshes -> rows),
``prepare`` + ``predict_mesh`` (one scan or sequence with the views the model saw, for the app),
``iter_sequence`` / ``iter_sequence_results`` (per-frame results as they are scored) and ``write_rows``.

The rows and the typed results they are made from are described in :mod:`affectvlm.results`; what counts as a
scan, a folder or a sequence in :mod:`affectvlm.inputs`. A bad input gives a row with ``error`` set (the other
columns empty) and the rest still run.

Inside ``predict``, scans are read, oriented (the face frame is found once per scan, and once per sequence on
its middle frame) and rendered on worker threads (:mod:`affectvlm.pipeline`) while the calling thread encodes
the previous batch. Batches are fixed by the inputs alone (``batch_size`` consecutive scans, a sequence's
frames in chunks of ``batch_size``), so serial, pipelined and sharded runs encode the same batches.

Temporal pooling (``pooling=``) of a sequence's frame probabilities into its ``"sequence"`` row:

* ``"contrast"`` (default): the most expressive 30 % of the frames (at least one) against the calmest frame.
  Each class scores the peak frames' mean log-probability minus half the calmest frame's, and the sequence's
  probabilities are the softmax of those scores over the emotions; neutral gets 0, because a sequence is
  labelled with the expression it shows (as BU-4DFE's are). A face that looks a little sad or angry when at
  rest makes every frame lean that way; subtracting its calm frame takes that lean out. Expressiveness is
  ``1 - p(neutral)`` when there is a neutral class, else the distance of the frame's probabilities from the
  first frame's.
* ``"peak"``: average the probabilities of the most expressive 30 % of the frames, neutral included. Use it for
  recordings that may stay neutral throughout.
* ``"mean"``: the plain average over all frames.
"""
from __future__ import annotations

import contextlib
import inspect
import math
import numbers
import os
import sys
import types
from collections import Counter
from concurrent.futures import Executor, Future
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterator, Sequence, Union

import numpy as np
import torch

from affectvlm.errors import ConfigError, InputError
from affectvlm.inputs import Input, Item, error_text, expand
from affectvlm.io._common import check_face
from affectvlm.io.sequence import is_mesh_name, looks_like_sequence
from affectvlm.limits import Limits, default_limits
from affectvlm.mesh import Mesh, MeshSequence
from affectvlm.pipeline import Ahead, check_workers, executor
from affectvlm.results import (FIXED_COLUMNS, FRAME_COLUMNS, Analysis, FaceFrame, FrameResult, Prepared, Row,
                               ScanResult, SequenceResult, as_probs, check_classes, class_names, columns, error_row,
                               format_table, rows_to_csv, rows_to_json, write_rows)
from affectvlm.setframe import MIN_FRAMES, SetFrame, consensus, takes_set_up
from affectvlm.setframe import SAMPLE as SET_SAMPLE

if TYPE_CHECKING:
    from affectvlm.model import AffectVLM
    from affectvlm.render import RenderSettings, View

__all__ = [  # the scoring API, with the result types and writers of affectvlm.results for one import
    "predict", "prepare", "predict_mesh", "orient_scan", "sample_set_frame", "iter_sequence", "iter_sequence_results",
    "plan", "score_items",
    "pool_probabilities", "frame_expressiveness", "peak_frames", "contrast", "render_settings", "inference_context",
    "POOLINGS", "DEFAULT_POOLING", "PRECISIONS", "DEFAULT_FPS", "FPS_RANGE",
    "Analysis", "FaceFrame", "FrameResult", "Prepared", "Row", "ScanResult", "SequenceResult", "FIXED_COLUMNS",
    "FRAME_COLUMNS", "class_names", "columns", "format_table", "rows_to_csv", "rows_to_json", "write_rows",
    "is_mesh_name", "looks_like_sequence"]
POOLINGS = ("contrast", "peak", "mean")
DEFAULT_POOLING = POOLINGS[0]
PEAK_FRACTION = 0.3
CONTRAST_WEIGHT = 0.5  # of the calmest frame's log-probabilities
PRECISIONS = ("fp32", "fp16", "bf16")
DEFAULT_FPS = 25.0  # BU-4DFE's frame rate
FPS_RANGE = (1e-3, 1e6)  # frame rates taken: a frame's timestamp (frame / fps) stays a finite number
ModelArg = Union["AffectVLM", str, os.PathLike, None]
ViewsArg = Union[str, Sequence[float], Sequence["View"], None]

# ------------------------------------------------------------------------------------------------ one scan


def _as_model(model: ModelArg) -> "AffectVLM":
    from affectvlm.model import AffectVLM, load_model

    if model is None or isinstance(model, (str, os.PathLike)):
        return load_model(model)
    if isinstance(model, AffectVLM):
        return model
    raise ConfigError(f"model must be a spec string or an AffectVLM, got {type(model).__name__}")


def render_settings(base: "RenderSettings", views: ViewsArg = None, up: str | None = None,
                    front: str | None = None) -> "RenderSettings":
    """``base`` (a model's render settings) as scoring renders them (:meth:`RenderSettings.for_scoring`: with the
    model's ``score_pitches``), with the user's view and axis overrides; views the user gives are rendered as given."""
    from affectvlm.render import as_views

    kw: dict[str, object] = {}
    if views is not None:
        kw["views"] = as_views(views)
        kw["score_pitches"] = ()
    else:
        base = base.for_scoring()
    if up is not None:
        kw["up"] = up
    if front is not None:
        kw["front"] = front
    return replace(base, **kw) if kw else base


def orient_scan(mesh: Mesh, settings: "RenderSettings", set_frame: SetFrame | None = None) -> Prepared:
    """A checked scan in the canonical frame of ``settings`` (as scoring renders it: capped, framed, cropped), the
    frame of its set taken where :func:`affectvlm.setframe.takes_set_up` says; it renders with ``.settings``."""
    from affectvlm.render.simplify import capped_for

    mesh = capped_for(mesh, settings)
    if not settings.canonical:
        return Prepared(mesh, None, settings)
    from affectvlm.geometry import canonicalise

    c = canonicalise(mesh, up=settings.up, front=settings.front, crop=settings.crop, landmarks=True)
    frame = FaceFrame.from_meta(c.meta)
    if takes_set_up(frame, set_frame):
        assert frame is not None and set_frame is not None
        c = canonicalise(mesh, up=set_frame.up, front=set_frame.front, crop=settings.crop, landmarks=True)
        frame = replace(FaceFrame.from_meta(c.meta) or frame, confidence=frame.confidence, low_confidence=True,
                        detected=frame.detected, axis_confidence=frame.axis_confidence, source="set")
    # the mesh is now centred, unit-sized and facing the camera: render it as it is
    return Prepared(c, frame, replace(settings, canonical=False, up=None, front=None))


def prepare(mesh: Mesh, model: "AffectVLM | RenderSettings | None" = None, *, views: ViewsArg = None,
            up: str | None = None, front: str | None = None, limits: Limits | None = None) -> Prepared:
    """Check that ``mesh`` is a face (:func:`affectvlm.io._common.check_face`) and put it in the canonical frame
    once, with the model's render settings (or ``RenderSettings``) and the user's overrides; the result is
    what the app previews and what :func:`predict_mesh` scores. Raises InputError naming the mesh."""
    from affectvlm.render import RenderSettings

    base = model if isinstance(model, RenderSettings) else _as_model(model).render
    check_face(mesh, limits)
    return orient_scan(mesh, render_settings(base, views, up, front))


def _render(prepared: Sequence[Prepared], device: torch.device) -> tuple[torch.Tensor | None,
                                                                           list[BaseException | None]]:
    """Render together: (n_rendered, V, 3, H, W) and each one's error (None when it is in the images).
    Only when the batch fails are they rendered one by one, so only the bad mesh fails."""
    st = prepared[0].settings
    try:
        return st.render([p.mesh for p in prepared], device=device), [None] * len(prepared)
    except Exception as e:
        if len(prepared) == 1:
            return None, [e]
    imgs: list[torch.Tensor] = []
    errs: list[BaseException | None] = []
    for p in prepared:
        one, err = _render([p], device)
        errs += err
        if one is not None:
            imgs.append(one)
    return (torch.cat(imgs) if imgs else None), errs


def inference_context(device: torch.device, precision: str) -> ContextManager[object]:
    """Autocast for ``precision`` (``fp32``: none), as open_clip's ``precision=`` does at inference."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"precision bf16 is not supported by {torch.cuda.get_device_name(device)}; use fp16")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"precision {precision} works on cpu and cuda only, not {device.type}; use fp32")
    return torch.autocast(device.type, dtype=dtype)


def _encode(model: "AffectVLM", images: torch.Tensor, precision: str, views: Sequence | None = None,
            mirror: bool = True) -> tuple[np.ndarray, torch.Tensor]:
    """(B, V, 3, H, W) images of ``views`` -> probabilities (B, C) (averaged with the mirror image unless
    ``mirror`` is off) and view embeddings (B, V, D)."""
    try:
        with torch.no_grad(), inference_context(model.device, precision):
            fused, z = model.embed(images, views, mirror)
            logits = model.logits_from_embedding(fused)
        return torch.softmax(logits.float(), -1).cpu().numpy(), z
    except RuntimeError as e:
        if precision != "fp32" and ("Half" in str(e) or "BFloat16" in str(e)):
            raise ConfigError(f"precision {precision} is not supported on {model.device} by this torch build "
                              f"({str(e).splitlines()[0]}); use fp32") from None
        raise


# ------------------------------------------------------------------------------------------------ sequences


def pool_probabilities(probs: np.ndarray, classes: Sequence[str], method: str = DEFAULT_POOLING,
                       fraction: float = PEAK_FRACTION) -> np.ndarray:
    """(T, C) frame probabilities -> (C,) for the sequence (see the module docstring)."""
    P = np.asarray(probs, dtype=np.float64)
    if P.ndim != 2 or P.shape[0] == 0:
        raise ConfigError("pooling needs at least one scored frame")
    if method == "mean":
        return P.mean(0)
    if method not in POOLINGS:
        raise ConfigError(f"unknown pooling {method!r}; choose from {POOLINGS}")
    score = frame_expressiveness(P, classes)
    top = peak_frames(score, fraction)
    if method == "peak":
        return P[top].mean(0)
    return contrast(P[top], P[int(np.argmin(score))][None], classes)


def frame_expressiveness(probs: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """How expressive each of a sequence's (T, C) frame probabilities is (T,): one minus its neutral probability,
    or without a neutral class its distance from the first frame."""
    P = np.asarray(probs, dtype=np.float64)
    lower = [c.lower() for c in classes]
    if "neutral" in lower:
        return 1.0 - P[:, lower.index("neutral")]
    return 0.5 * np.abs(P - P[0]).sum(1)


def peak_frames(score: np.ndarray, fraction: float = PEAK_FRACTION) -> np.ndarray:
    """Indices of the most expressive ``fraction`` of frames by ``score`` (:func:`frame_expressiveness`), rounded
    up and at least one, most expressive first (ties in frame order)."""
    k = max(1, math.ceil(fraction * len(score)))
    return np.argsort(-np.asarray(score), kind="stable")[:k]


def contrast(probs: np.ndarray, reference: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Expressive ``probs`` (N, C) scored against calm ``reference`` probabilities (M, C): each class's mean
    log-probability over ``probs`` minus :data:`CONTRAST_WEIGHT` times its mean over ``reference``, the neutral
    class excluded, renormalised (C,). What a face shows at rest is taken out of what it shows now."""
    logp = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0))
    ref = np.log(np.clip(np.asarray(reference, dtype=np.float64), 1e-12, 1.0))
    z = logp.mean(0) - CONTRAST_WEIGHT * ref.mean(0)
    lower = [c.lower() for c in classes]
    if "neutral" in lower and len(classes) > 1:
        z[lower.index("neutral")] = -np.inf
    e = np.exp(z - z.max())
    return e / e.sum()


def _expressiveness(probs: Sequence[float], classes: Sequence[str]) -> float:
    """How far a frame is from neutral (its top probability without a neutral class): picks the frame to show."""
    lower = [c.lower() for c in classes]
    return 1.0 - probs[lower.index("neutral")] if "neutral" in lower else max(probs)


def orient_sequence(seq: MeshSequence, settings: "RenderSettings"
                    ) -> tuple[MeshSequence, "RenderSettings", FaceFrame | None]:
    """One face frame for the whole sequence (frames of a scan session share the file's axes; deciding per frame
    could flip single frames): found on the middle, first and last frames that are faces and taken by majority
    (flagged when they disagree); the sequence and settings that render every frame in it. A frame off the file's
    axes (a turned head) is given as a rotation of every frame, since the settings name axes only."""
    from affectvlm.geometry import parse_frame_axes

    if not (settings.canonical and seq.frames):
        return seq, settings, None
    n = len(seq.frames)
    seen: list[Prepared] = []
    tried: set[int] = set()
    for part in (range(n // 2, n), range(0, n // 2), range(n - 1, n // 2 - 1, -1)):  # middle, first, last
        for i in part:
            if i in tried:
                break
            tried.add(i)
            try:
                seen.append(orient_scan(check_face(seq.frames[i]), settings))
                break
            except Exception:  # each frame's render reports its own problem
                continue
    seen = [p for p in seen if p.frame is not None]
    if not seen:
        return seq, settings, None
    found, frame = _vote(seen)
    try:
        parse_frame_axes(frame.up, frame.front)
        return seq, replace(settings, up=frame.up, front=frame.front), frame
    except ConfigError:  # not axis names: rotate the frames into this frame's axes
        R = np.asarray(found.mesh.meta["canonical"]["rotation"], np.float64)
        turned = [replace(m, vertices=(np.asarray(m.vertices, np.float64) @ R.T).astype(np.float32))
                  for m in seq.frames]
        return replace(seq, frames=turned), replace(settings, up="+y", front="+z"), frame


def _vote(found: Sequence[Prepared]) -> tuple[Prepared, FaceFrame]:
    """The frame most of ``found`` agree on (ties: the surer), flagged when they do not all agree: a head
    thrown back at the apex can read upside down where its first and last frames read upright."""
    def key(p: Prepared) -> str:
        return f"{p.frame.up}|{p.frame.front}"

    votes = Counter(key(p) for p in found)
    best = max(found, key=lambda p: (votes[key(p)], p.frame.confidence or 0.0))
    frame = replace(best.frame, low_confidence=best.frame.low_confidence or len(votes) > 1,
                    source="sequence" if best.frame.detected else best.frame.source)
    return best, frame


@dataclass
class _Options:
    """One scoring run: the model, its render settings and the run's options."""

    model: "AffectVLM"
    settings: "RenderSettings"
    limits: Limits
    batch_size: int = 8
    pooling: str = DEFAULT_POOLING
    precision: str = "fp32"
    fps: float | None = None
    workers: int = 0
    mirror: bool = True
    set_frame: SetFrame | None = None  # the frame most of the run's scans share (affectvlm.setframe)

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.model.classes)

    def fps_of(self, seq: MeshSequence) -> float:
        own = seq.meta.get("fps")
        ok = isinstance(own, (int, float)) and FPS_RANGE[0] <= own <= FPS_RANGE[1]
        return float(self.fps or (own if ok else DEFAULT_FPS))


@dataclass
class _Chunk:
    """A scored chunk of a sequence's frames: per frame its probabilities or error; images and embeddings
    of the frames that rendered (rows in order)."""

    results: list[FrameResult]
    images: torch.Tensor | None
    z: torch.Tensor | None


def _render_frames(frames: Sequence[Mesh], settings: "RenderSettings", o: _Options) -> tuple[
        torch.Tensor | None, list[BaseException | None]]:
    errs: list[BaseException | None] = [None] * len(frames)
    good: list[Prepared] = []
    for i, m in enumerate(frames):
        try:
            check_face(m, o.limits)
            good.append(Prepared(m, None, settings))
        except InputError as e:
            errs[i] = e
    imgs, rerr = _render(good, o.model.device) if good else (None, [])
    it = iter(rerr)
    return imgs, [e if e is not None else next(it) for e in errs]


def _sequence_chunks(pool: Executor, seq: MeshSequence, settings: "RenderSettings",
                     o: _Options) -> Iterator[_Chunk]:
    """Render the next chunks on the workers while this one is encoded."""
    bs = o.batch_size
    starts = range(0, len(seq.frames), bs)
    depth = 2 if o.workers else 0
    for lo, fut in Ahead(pool, starts, lambda lo: pool.submit(_render_frames, seq.frames[lo:lo + bs], settings, o),
                         depth):
        imgs, errs = fut.result()
        if imgs is None:
            probs, z = np.zeros((0, 0)), None
        else:
            probs, z = _encode(o.model, imgs, o.precision, settings.views, o.mirror)
        got = iter(probs)
        results = []
        for fid, err in zip(seq.frame_ids[lo:lo + bs], errs):
            if err is None:
                results.append(FrameResult(int(fid), as_probs(next(got))))
            else:
                results.append(FrameResult(int(fid), None, f"frame {fid}: {error_text(err, seq.source)}"))
        yield _Chunk(results, imgs, z)


def _score_sequence(pool: Executor, seq: MeshSequence, settings: "RenderSettings", frame: FaceFrame | None,
                    o: _Options, name: str, on_chunk: Callable[[_Chunk], None] | None = None
                    ) -> Iterator[tuple[SequenceResult, FrameResult | None]]:
    """Yield ``(result so far, frame)`` as each frame is scored, then ``(result, None)`` once it is pooled."""
    res = SequenceResult(name, o.classes, frame=frame, fps=o.fps_of(seq))
    for chunk in _sequence_chunks(pool, seq, settings, o):
        if on_chunk is not None:
            on_chunk(chunk)
        for fr in chunk.results:
            res.frames.append(fr)
            yield res, fr
    scored = [f.probs for f in res.frames if f.probs is not None]
    if scored:
        res.pooled = as_probs(pool_probabilities(np.array(scored), o.classes, o.pooling))
    else:
        res.error = "no frame could be scored"
    yield res, None


def _check_options(*, frames: int | None = None, every: int = 1, batch_size: int = 8, pooling: str = DEFAULT_POOLING,
                   precision: str = "fp32", fps: float | None = None, mirror: bool = True) -> None:
    if not isinstance(mirror, bool):
        raise ConfigError(f"mirror must be true or false, got {mirror!r}")
    # numbers.Integral / Real: numpy's scalars (an np.int64 from a DataFrame) are numbers too
    if frames is not None and (isinstance(frames, bool) or not isinstance(frames, numbers.Integral) or frames < 1):
        raise ConfigError(f"frames must be a positive integer, got {frames!r}")
    if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1:
        raise ConfigError(f"every must be a positive integer, got {every!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if pooling not in POOLINGS:
        raise ConfigError(f"unknown pooling {pooling!r}; choose from {POOLINGS}")
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, numbers.Real)
                            or not FPS_RANGE[0] <= fps <= FPS_RANGE[1]):
        raise ConfigError(f"fps must be a number from {FPS_RANGE[0]:g} to {FPS_RANGE[1]:g}, got {fps!r}")


def _options(model: ModelArg, views: ViewsArg, up: str | None, front: str | None, limits: Limits | None,
             **kw: object) -> _Options:
    m = _as_model(model)
    check_classes(m.classes)
    m.eval()
    return _Options(m, render_settings(m.render, views, up, front), limits or default_limits(), **kw)


def _iter_sequence(seq: MeshSequence | Input, model: ModelArg = None, *, views: ViewsArg = None,
                   up: str | None = None, front: str | None = None, frames: int | None = None, every: int = 1,
                   batch_size: int = 8, pooling: str = DEFAULT_POOLING, limits: Limits | None = None,
                   source: str | None = None, fps: float | None = None, workers: int | None = None,
                   precision: str = "fp32", mirror: bool = True) -> Iterator[tuple[SequenceResult, FrameResult | None]]:
    _check_options(frames=frames, every=every, batch_size=batch_size, pooling=pooling, precision=precision, fps=fps,
                   mirror=mirror)
    o = _options(model, views, up, front, limits, batch_size=batch_size, pooling=pooling, precision=precision,
                 fps=fps, workers=check_workers(workers), mirror=mirror)
    if not isinstance(seq, MeshSequence):
        from affectvlm.io import load_sequence

        seq = load_sequence(seq, source, every=every, n_frames=frames, limits=o.limits)
    seq, settings, frame = orient_sequence(seq, o.settings)
    with executor(o.workers) as pool:
        yield from _score_sequence(pool, seq, settings, frame, o, source or seq.source)


def iter_sequence_results(seq: MeshSequence | Input, model: ModelArg = None, **kw: object
                          ) -> Iterator[FrameResult | SequenceResult]:
    """Yield each frame's :class:`FrameResult` as soon as it is scored, then the whole :class:`SequenceResult`.

    ``seq``: a MeshSequence, or anything ``load_sequence`` reads (folder, zip path/bytes, list of files).
    Keywords: ``views``, ``up``, ``front`` (render overrides), ``frames`` / ``every`` (sampling when ``seq`` is
    read here), ``batch_size``, ``pooling``, ``limits``, ``source`` (the name on the results), ``fps``
    (timestamps; default the sequence's own, else 25), ``workers`` (render threads), ``precision`` and ``mirror``.
    Frames that fail to render give results with ``error``; the pooled result uses the others.
    """
    for res, fr in _iter_sequence(seq, model, **kw):  # type: ignore[arg-type]
        yield res if fr is None else fr


def iter_sequence(seq: MeshSequence | Input, model: ModelArg = None, **kw: object) -> Iterator[Row]:
    """Rows of :func:`iter_sequence_results` (same arguments): one per frame as soon as it is scored, then the
    pooled ``frame="sequence"`` row."""
    for res, fr in _iter_sequence(seq, model, **kw):  # type: ignore[arg-type]
        yield res.pooled_row() if fr is None else res.frame_row(fr)


# ------------------------------------------------------------------------------------------------ many inputs


def plan(items: Sequence[Item], batch_size: int) -> list[list[int]]:
    """The work units of ``items`` (indices): runs of up to ``batch_size`` consecutive scans encoded together,
    each sequence and each unreadable input alone. Fixed by the inputs, so any split of the units (threads,
    ranks) encodes the same batches."""
    units: list[list[int]] = []
    for i, it in enumerate(items):
        if it.kind == "scan" and units and items[units[-1][0]].kind == "scan" and len(units[-1]) < batch_size:
            units[-1].append(i)
        else:
            units.append([i])
    return units


def _load_prepared(item: Item, o: _Options) -> Prepared:
    mesh = item.load()
    if not isinstance(mesh, Mesh):
        raise ConfigError(f"{item.source}: expected a scan, got {type(mesh).__name__}")
    return orient_scan(check_face(mesh, o.limits), o.settings, o.set_frame)


def sample_set_frame(scans: Sequence[Callable[[], Mesh]], settings: "RenderSettings", limits: Limits | None = None,
                     workers: int = 0) -> SetFrame | None:
    """The frame most of :data:`affectvlm.setframe.SAMPLE` scans spread over ``scans`` (loaders) read, or None: the
    settings give an axis or render the files as they lie, too few scans, or no shared frame. It depends only on
    the scans, so every rank of a sharded run finds the same."""
    if settings.up is not None or settings.front is not None or not settings.canonical or len(scans) < MIN_FRAMES:
        return None
    n = min(len(scans), SET_SAMPLE)
    picked = [scans[int(k * len(scans) / n)] for k in range(n)]
    lim = limits or default_limits()

    def frame_of(load: Callable[[], Mesh]) -> FaceFrame | None:
        from affectvlm.geometry import canonicalise
        from affectvlm.render.simplify import capped_for

        try:  # the frame as orient_scan finds it (on the capped scan), without the crop and landmarks it needs not
            return FaceFrame.from_meta(canonicalise(capped_for(check_face(load(), lim), settings)).meta)
        except Exception:  # the scan's own row (or sample) reports it
            return None

    with executor(workers) as pool:
        return consensus(pool.map(frame_of, picked))


def find_set_frame(items: Sequence[Item], o: _Options) -> SetFrame | None:
    """:func:`sample_set_frame` over the scans among ``items`` that can be read twice (sequences orient
    themselves; a caller's reader is read once, at its turn)."""
    return sample_set_frame([it.load for it in items if it.kind == "scan" and it.again],  # type: ignore[misc]
                            o.settings, o.limits, o.workers)


@dataclass
class _Scans:
    """A unit of scans, rendered: per scan its Prepared scan or its error; the images of the rendered ones."""

    outcomes: list[Prepared | BaseException]
    images: torch.Tensor | None


def _render_scans(preps: list["Future[Prepared]"], o: _Options) -> _Scans:
    got: list[Prepared | BaseException] = []
    for f in preps:
        try:
            got.append(f.result())
        except Exception as e:
            got.append(e)
    ok = [p for p in got if isinstance(p, Prepared)]
    imgs, errs = _render(ok, o.model.device) if ok else (None, [])
    it = iter(errs)
    return _Scans([p if not isinstance(p, Prepared) else (next(it) or p) for p in got], imgs)


def _start(pool: Executor, items: Sequence[Item], unit: list[int], o: _Options) -> "Future[object]":
    """Submit a unit's reading, orienting and rendering (a sequence: reading and orienting)."""
    first = items[unit[0]]
    if first.kind == "scan":
        preps = [pool.submit(_load_prepared, items[i], o) for i in unit]
        return pool.submit(_render_scans, preps, o)
    if first.kind == "sequence":
        def load_sequence() -> tuple[MeshSequence, "RenderSettings", FaceFrame | None]:
            seq = first.load()
            if not isinstance(seq, MeshSequence):
                raise ConfigError(f"{first.source}: expected a sequence, got {type(seq).__name__}")
            return orient_sequence(seq, o.settings)
        return pool.submit(load_sequence)
    done: Future[object] = Future()
    done.set_result(None)
    return done


def _score_units(items: Sequence[Item], units: Sequence[list[int]], o: _Options,
                 on_frames: Callable[[int], None] | None = None) -> Iterator[tuple[int, Row]]:
    """``(item index, row)`` for every row of ``units``, in order; the next units are read and rendered on the
    workers while one is encoded."""
    classes = o.classes
    # one scan has nothing to overlap with: starting and joining threads would only add to its latency
    alone = len(units) == 1 and len(units[0]) == 1 and items[units[0][0]].kind != "sequence"
    workers = 0 if alone else o.workers
    with executor(workers) as pool:
        ahead = Ahead(pool, units, lambda u: _start(pool, items, u, o), 1 if workers else 0)
        for unit, fut in ahead:
            first = items[unit[0]]
            if first.kind == "error":
                yield unit[0], error_row(first.source, classes, first.error)
            elif first.kind == "scan":
                scans = fut.result()
                assert isinstance(scans, _Scans)
                imgs = scans.images
                probs = iter(_encode(o.model, imgs, o.precision, o.settings.views, o.mirror)[0]
                             if imgs is not None else [])
                for i, p in zip(unit, scans.outcomes):
                    if isinstance(p, Prepared):
                        yield i, ScanResult(items[i].source, classes, as_probs(next(probs)), p.frame).row()
                    else:
                        yield i, ScanResult(items[i].source, classes, error=error_text(p)).row()
            else:
                try:
                    seq, settings, frame = fut.result()  # type: ignore[misc]
                except Exception as e:
                    yield unit[0], error_row(first.source, classes, error_text(e, first.source), frame="sequence")
                    continue
                if on_frames is not None:
                    on_frames(len(seq))
                for res, fr in _score_sequence(pool, seq, settings, frame, o, first.source):
                    yield unit[0], res.pooled_row() if fr is None else res.frame_row(fr)


def predict(inputs: Input | Sequence[Input], model: ModelArg = None, *, views: ViewsArg = None,
            frames: int | None = None, every: int = 1, batch_size: int = 8, progress: bool = False,
            on_row: Callable[[Row], None] | None = None, limits: Limits | None = None, up: str | None = None,
            front: str | None = None, pooling: str = DEFAULT_POOLING, workers: int | None = None,
            precision: str = "fp32", fps: float | None = None, mirror: bool = True) -> list[Row]:
    """Score scans and 4D sequences; returns rows in input order (see :mod:`affectvlm.results`).

    ``inputs``: a path (file, folder, zip), ``(name, bytes)``, a Mesh / MeshSequence, or a list of them; in a
    list, ``(name, path)`` reads ``path`` but shows ``name`` in the rows (uploads saved to temp files).
    Scans too small or flat to be a face (see `affectvlm.io._common.check_face`) get an error row.
    ``model``: an AffectVLM or a spec for ``load_model`` (None = the embedded default).
    ``views`` / ``up`` / ``front`` override the model's render settings; ``frames`` (N evenly spaced)
    and ``every`` (every k-th) sample sequence frames. ``on_row`` is called with each row as it is made.
    ``workers``: threads that read, orient and render ahead (0: all in this thread; None: one per spare core);
    ``precision``: ``fp32``, ``fp16`` or ``bf16`` (autocast) for the image encoder; ``fps``: the frame rate of
    the sequences' ``timestamp`` column (default: a sequence's own, else 25, BU-4DFE's); ``mirror``: average each
    scan with its mirror image (views flipped, left and right swapped; off: as rendered only).
    """
    o, items = _setup(inputs, model, views=views, frames=frames, every=every, batch_size=batch_size,
                      limits=limits, up=up, front=front, pooling=pooling, workers=workers, precision=precision, fps=fps,
                      mirror=mirror)
    return [row for _, row in score_items(items, o, plan(items, batch_size), progress=progress, on_row=on_row)]


def _setup(inputs: Input | Sequence[Input], model: ModelArg, *, views: ViewsArg = None, frames: int | None = None,
           every: int = 1, batch_size: int = 8, limits: Limits | None = None, up: str | None = None,
           front: str | None = None, pooling: str = DEFAULT_POOLING, workers: int | None = None,
           precision: str = "fp32", fps: float | None = None, mirror: bool = True) -> tuple[_Options, list[Item]]:
    """Check the options, load the model and expand the inputs (what ``predict`` and sharded runs share)."""
    _check_options(frames=frames, every=every, batch_size=batch_size, pooling=pooling, precision=precision, fps=fps,
                   mirror=mirror)
    o = _options(model, views, up, front, limits, batch_size=batch_size, pooling=pooling, precision=precision,
                 fps=fps, workers=check_workers(workers), mirror=mirror)
    inference_context(o.model.device, precision)  # refuse an impossible precision before any work
    # a model that renders geometry only never needs the scans' texture images: skip decoding them
    items = expand(inputs, limits=o.limits, frames=frames, every=every, texture=o.settings.texture)
    o.set_frame = find_set_frame(items, o)
    return o, items


def score_items(items: Sequence[Item], o: _Options, units: Sequence[list[int]], *, progress: bool = False,
                on_row: Callable[[Row], None] | None = None) -> Iterator[tuple[int, Row]]:
    """``(item index, row)`` of the given units, with a progress bar and ``on_row`` called on each row."""
    from tqdm import tqdm

    bar = tqdm(total=sum(len(u) for u in units), disable=not progress, file=sys.stderr, unit="scan",
               dynamic_ncols=True)
    in_sequence = [False]

    def more(n: int) -> None:  # a sequence counts as its frames
        bar.total += n - 1
        bar.refresh()
        in_sequence[0] = True

    try:
        for i, row in _score_units(items, units, o, more):
            if on_row is not None:
                on_row(row)
            if row["frame"] == "sequence" and in_sequence[0]:
                in_sequence[0] = False
            else:
                bar.update(1)
            yield i, row
    finally:
        bar.close()


# ------------------------------------------------------------------------------------------------ the app


def _view_caption(v: "View") -> str:
    return f"yaw {v.yaw:g}°" + (f", pitch {v.pitch:g}°" if v.pitch else "")


def predict_mesh(mesh: Mesh | Prepared | MeshSequence, model: ModelArg = None, *, views: ViewsArg = None,
                 up: str | None = None, front: str | None = None, pooling: str = DEFAULT_POOLING, batch_size: int = 8,
                 return_images: bool = True, precision: str = "fp32", workers: int | None = None,
                 mirror: bool = True) -> Analysis:
    """Score one scan (or a sequence, pooled) and return what the app shows (:class:`Analysis`): the result,
    the views the model saw (for a sequence, of its most expressive frame) and each view's weight.

    ``mesh`` may be a :class:`Prepared` scan from :func:`prepare` (then ``views``/``up``/``front`` were given
    there): the app canonicalises once for its preview and for scoring. Every frame is rendered and encoded once.
    """
    m = _as_model(model)
    check_classes(m.classes)
    m.eval()
    classes = tuple(m.classes)
    if isinstance(mesh, MeshSequence):
        best: dict[str, object] = {}

        def keep_best(chunk: _Chunk) -> None:
            ok = [r for r in chunk.results if r.probs is not None]
            for k, r in enumerate(ok):
                e = _expressiveness(r.probs, classes)  # type: ignore[arg-type]
                if not best or e > best["e"]:  # type: ignore[operator]
                    assert chunk.images is not None and chunk.z is not None
                    best.update(e=e, frame=r.frame_id, images=chunk.images[k], z=chunk.z[k:k + 1])

        o = _Options(m, render_settings(m.render, views, up, front), default_limits(), batch_size=batch_size,
                     pooling=pooling, precision=precision, workers=check_workers(workers), mirror=mirror)
        _check_options(batch_size=batch_size, pooling=pooling, precision=precision, mirror=mirror)
        turned, settings, frame = orient_sequence(mesh, o.settings)
        with executor(o.workers) as pool:
            res = [r for r, fr in _score_sequence(pool, turned, settings, frame, o, mesh.source, keep_best)
                   if fr is None][0]
        if not res.ok:
            raise InputError(mesh.source, res.error)
        images, z, shown = best["images"], best["z"], best["frame"]
        result: ScanResult | SequenceResult = res
        prepared = None
    else:
        prepared = mesh if isinstance(mesh, Prepared) else prepare(mesh, m.render, views=views, up=up, front=front)
        imgs, errs = _render([prepared], m.device)
        if errs[0] is not None:
            raise errs[0]
        assert imgs is not None
        probs, z = _encode(m, imgs, precision, prepared.settings.views, mirror)
        images, shown = imgs[0], None
        result = ScanResult(prepared.mesh.source, classes, as_probs(probs[0]), prepared.frame)
    assert isinstance(images, torch.Tensor) and isinstance(z, torch.Tensor)
    settings_views = (prepared.settings if prepared is not None else render_settings(m.render, views)).views
    captions = [_view_caption(v) for v in settings_views]
    with torch.no_grad():
        weights = m.view_weights(z)[0].float().cpu().tolist()
    pics: list = []
    if return_images:
        from affectvlm.render import to_pil

        pics = list(zip(captions, to_pil(images)))
    return Analysis(result, pics, images.cpu(), dict(zip(captions, weights)), shown, prepared)


class _CallableModule(types.ModuleType):
    """``affectvlm.predict`` is this module, always (Python makes the package's attribute the submodule once it is
    imported, so the function could not keep the name): calling it calls :func:`predict`, it shows that function's
    signature, and it pickles by name, so it can be handed to a process pool."""

    def __call__(self, *args: Any, **kwargs: Any) -> list[Row]:
        return predict(*args, **kwargs)

    def __reduce__(self) -> tuple:
        import importlib

        return importlib.import_module, (self.__name__,)


sys.modules[__name__].__class__ = _CallableModule
sys.modules[__name__].__signature__ = inspect.signature(predict)
