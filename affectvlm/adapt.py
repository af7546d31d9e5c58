"""The image encoder's batch-norm statistics re-estimated on the set being scored: ``affectvlm predict --adapt``.

A face model, mesh or sculptor the model never saw shifts the statistics of the image encoder's activations, and
batch norm then normalises them with the training set's means and variances. Re-estimating those running means and
variances on the renders of the scored set itself (AdaBN, Li et al. 2016; no labels, no gradient, nothing else
changes) puts the set's faces back where the model's later layers expect faces to be.

It is transductive, and it assumes the set shows a mix of expressions: the statistics of a set of only smiles
take the smile out with the face model. So :func:`adapt_for` first scores the sample the statistics would come
from (up to :data:`SAMPLE` inputs, drawn with a fixed seed) as usual, and ``auto`` adapts only when
:func:`spread_check` finds at least :data:`MIN_ROWS` of them (:data:`MIN_SEQUENCES` when they are all sequences)
whose labels spread over at least :data:`MIN_CLASSES` classes with :data:`MIN_SHARE` of the rows each and no class
over :data:`MAX_SHARE`, or at least :data:`WIDE_CLASSES` classes with :data:`WIDE_SHARE` each and none over
:data:`WIDE_MAX_SHARE`: a model that reads a face model it never saw with a lean may put a varied set's labels on
three expressions over 10 %, but it still spreads them thinly over more, where a set of a few expressions read by a
model that knows the face shows only those. Where every judged input is named by a dataset's convention that states
its expression (BU-3DFE's codes, BU-4DFE's folders, Bosphorus's ``E_`` names, class-named folders:
:func:`affectvlm.datasets.declared_class`) and those names alone pass the same check, the set is adapted whatever the
reading: a lean can hide a balanced set's variety from the reading, not from its names. Narrow names do not decline a
set the reading passes.
Where a dataset's naming tells, the sample leaves out scans that are not expressions (Bosphorus's pose, occlusion
and action-unit scans: :func:`affectvlm.reference.expression_scans`), and the guard judges only the neutral scans and
full-strength expressions (not BU-3DFE's levels 1-2, which mostly read as calm:
:func:`affectvlm.reference.full_expressions`); the statistics still come from every scan of the sample. All are
scored.
A model without batch-norm layers (a ViT) is left as it is.

When the checkpoint stores the mean embedding of its training scans (``embedding_mean``, written by
:mod:`affectvlm.train.centre`), the adapted copy also gets an ``embedding_shift``: that mean minus the mean fused
embedding of the sample's full-expression static scans, encoded with the new statistics. Every fused embedding the
copy makes is moved by it and normalised again, so the set's average face sits where the training set's did before
the classifier reads it. A set of only sequences is centred on the mean of each sampled sequence's most expressive
frames instead (:func:`peak_frames_mean`: the share ``contrast`` pooling reads), since most of a neutral -> apex ->
neutral sequence is calm and the training mean is that of expressive scans.
"""
from __future__ import annotations

import copy
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from affectvlm.errors import ConfigError
from affectvlm.results import Row, whole_input_row

if TYPE_CHECKING:
    from affectvlm.model import AffectVLM

__all__ = ["MAX_SHARE", "MIN_CLASSES", "MIN_ROWS", "MIN_SEQUENCES", "MIN_SHARE", "ADAPT_MODES", "SAMPLE",
           "WIDE_CLASSES", "WIDE_MAX_SHARE", "WIDE_SHARE", "Adaptation", "Adapted", "SpreadCheck", "adapt_for",
           "adapt_model", "centre", "declined", "expression_sample", "fused_mean", "gathering_statistics", "guard",
           "mean_embedding", "min_inputs", "norm_layers", "peak_frames_mean", "sample_inputs", "spread_check"]

ADAPT_MODES = ("auto", "on", "none")
MIN_ROWS = 50  # fewer scans give noisy statistics (measured: 20 scans gain little and vary widely)
MIN_SEQUENCES = 20  # a set of only sequences: each gives several frames (measured: sets of 24-30 gain)
ON_MIN_ROWS = 20  # ``on`` still needs this many
MIN_CLASSES, MIN_SHARE, MAX_SHARE = 4, 0.10, 0.40
WIDE_CLASSES, WIDE_SHARE, WIDE_MAX_SHARE = 5, 0.05, 0.50  # the thin spread a lean leaves (see the module doc)
SAMPLE = 256  # inputs whose renders give the statistics (drawn with a fixed seed)
BATCH = 32  # scans per batch in the statistics pass, as measured
SEQUENCE_FRAMES = 8  # frames per sequence in the statistics pass


@dataclass(frozen=True)
class SpreadCheck:
    """Whether a scored set looks varied enough to adapt to: ``ok``, and why in a few words; ``on_spread``: it was
    many enough, and declined for what it reads (the user should hear of that)."""

    ok: bool
    rows: int
    reason: str
    on_spread: bool = False


@dataclass(frozen=True)
class Adaptation:
    """What :func:`adapt_for` decided: the model to score with (an adapted copy, or the one given), the check
    behind it (None for ``none``), how many inputs the statistics came from (0: not adapted) and whether its
    embeddings were centred."""

    model: Any
    check: SpreadCheck | None
    inputs: int = 0
    centred: bool = False

    @property
    def adapted(self) -> bool:
        return self.inputs > 0

    def text(self) -> str:
        """One line for the user: what was done, or why not."""
        if self.adapted:
            centred = ", their mean embedding moved onto the training scans'" if self.centred else ""
            return (f"scored with the image encoder's statistics of {self.inputs} of these inputs "
                    f"({self.check.reason if self.check else ''}){centred}")
        return f"scored with the trained statistics: {self.check.reason if self.check else 'not asked'}"


@dataclass(frozen=True)
class Adapted:
    """What :func:`adapt_model` did: the adapted copy, the inputs its statistics came from, the number of
    batch-norm layers re-estimated (0: the model has none or nothing rendered, and ``model`` is the original), and
    whether its embeddings were centred on the checkpoint's training mean (see the module doc)."""

    model: Any
    inputs: int
    layers: int
    centred: bool = False


def _counted_rows(rows: Sequence[Row]) -> list[Row]:
    """The rows that stand for a whole input and have a label: scans, and sequences' pooled rows (not frames)."""
    return [r for r in rows if not r.get("error") and whole_input_row(r) and r.get("label")]


def _counted(rows: Sequence[Row]) -> list[str]:
    """Labels of :func:`_counted_rows`."""
    return [r["label"] for r in _counted_rows(rows)]


def spread_check(rows: Sequence[Row], *, min_rows: int = MIN_ROWS, spread: bool = True) -> SpreadCheck:
    """Whether ``rows`` (scored without adaptation) are many and, with ``spread``, varied enough for
    :func:`adapt_model` (see the module doc)."""
    counted = _counted_rows(rows)
    labels = [r["label"] for r in counted]
    n = len(labels)
    kinds = {r.get("frame") == "sequence" for r in counted}
    what = "sequences" if kinds == {True} else "scans" if kinds == {False} else "scans and sequences"
    if n < min_rows:
        return SpreadCheck(False, n, f"{n} scored {what}; it needs at least {min_rows}")
    if not spread:
        return SpreadCheck(True, n, f"{n} {what}")
    counts = Counter(labels)
    top, top_n = counts.most_common(1)[0]
    common = sum(1 for c in counts.values() if c >= MIN_SHARE * n)
    wide = sum(1 for c in counts.values() if c >= WIDE_SHARE * n)
    if top_n <= MAX_SHARE * n and common >= MIN_CLASSES:
        return SpreadCheck(True, n, f"{n} {what}, {common} expressions each over {100 * MIN_SHARE:.0f} %")
    if top_n <= WIDE_MAX_SHARE * n and wide >= WIDE_CLASSES:
        return SpreadCheck(True, n, f"{n} {what}, {wide} expressions each over {100 * WIDE_SHARE:.0f} %")
    if top_n > MAX_SHARE * n:
        return SpreadCheck(False, n, f"{100 * top_n / n:.0f} % of them read {top}: a set of mostly one expression",
                           on_spread=True)
    return SpreadCheck(False, n, f"only {common} expressions are each {100 * MIN_SHARE:.0f} % of them (it needs "
                                 f"{MIN_CLASSES}, or {WIDE_CLASSES} each over {100 * WIDE_SHARE:.0f} %)",
                       on_spread=True)


def norm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The batch-norm layers of ``model``'s image encoder that keep running statistics."""
    visual = getattr(getattr(model, "clip", model), "visual", model)
    return [m for m in visual.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def sample_inputs(items: Sequence[Any], k: int = SAMPLE) -> list[Any]:
    """Up to ``k`` of ``items``, drawn at random with a fixed seed, in a fixed shuffled order (so that a batch of the
    statistics pass mixes subjects and expressions); the same for the same items, on every rank.

    Not evenly spaced: a dataset lists every subject's scans in the same order, and a step that is a simple fraction
    of that period (BU-3DFE's 25 scans; 64 subjects give a step of 6.25) picks the same few expressions from every
    subject."""
    rng = np.random.default_rng(0)
    if len(items) > k:
        items = [items[i] for i in sorted(rng.choice(len(items), size=k, replace=False))]
    order = rng.permutation(len(items))
    return [items[i] for i in order]


def expression_sample(items: Sequence[Any], sources: Sequence[str], k: int = SAMPLE) -> list[Any]:
    """:func:`sample_inputs` of the ``items`` whose ``sources`` are expression scans, not a dataset's pose,
    occlusion or action-unit scans (:func:`affectvlm.reference.expression_scans`)."""
    from affectvlm.reference import expression_scans

    return sample_inputs([it for it, keep in zip(items, expression_scans(sources)) if keep], k)


@contextmanager
def gathering_statistics(model: nn.Module) -> Iterator[nn.Module]:
    """A copy of ``model`` whose image encoder's batch-norm layers, inside the block, normalise each batch it
    encodes with that batch's own statistics (in eval mode too) and pool what they see; after it, an eval-mode model
    whose running mean and variance are those of every image of the block together (per channel, over images and
    pixels, each image counting alike). ``model`` itself is not changed."""
    adapted = copy.deepcopy(model)
    layers = norm_layers(adapted)
    sums = [[0, 0.0, 0.0] for _ in layers]  # per layer: count, sum, sum of squares (per channel, float64)

    def batch_statistics(mod: nn.Module, _inp: Any) -> None:
        mod.training = True  # predict puts the model in eval mode; these layers use their batch's statistics

    def pool(acc: list) -> Any:
        def hook(_mod: nn.Module, inp: Any, _out: Any) -> None:
            x = inp[0].detach().double().transpose(0, 1).flatten(1)  # (channels, images * pixels)
            acc[0] += x.shape[1]
            acc[1] = acc[1] + x.sum(1)
            acc[2] = acc[2] + (x * x).sum(1)
        return hook

    hooks = [m.register_forward_pre_hook(batch_statistics) for m in layers]
    hooks += [m.register_forward_hook(pool(acc)) for m, acc in zip(layers, sums)]
    trained = [(m.running_mean.clone(), m.running_var.clone()) for m in layers]
    try:
        with torch.no_grad():
            yield adapted
    finally:
        for h in hooks:
            h.remove()
        for m, (mean, var), (n, s1, s2) in zip(layers, trained, sums):
            if n > 1:
                mu = s1 / n
                m.running_mean.copy_(mu.to(m.running_mean))
                m.running_var.copy_(((s2 / n - mu * mu).clamp_min(0) * n / (n - 1)).to(m.running_var))
                m.num_batches_tracked.fill_(1)
            else:  # nothing encoded: the trained statistics
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.zero_()
        adapted.eval()


def _picked(model: Any, inputs: Sequence[Any], sample: int, predict_kw: dict[str, Any]) -> tuple[Any, list]:
    """The run's options and up to ``sample`` of its expanded inputs (:func:`sample_inputs`; sequences by a few
    frames); not a dataset's scans of other things than expressions (:func:`expression_sample`)."""
    from affectvlm.predict import _setup

    kw = {k: v for k, v in predict_kw.items() if k not in ("every", "progress", "on_row", "batch_size", "frames")}
    frames = min(int(predict_kw.get("frames") or SEQUENCE_FRAMES), SEQUENCE_FRAMES)
    o, items = _setup(inputs, model, frames=frames, batch_size=BATCH, **kw)
    return o, expression_sample(items, [it.source for it in items], sample)


def fused_mean(model: Any, batches: Iterable[torch.Tensor], views: Sequence | None = None, mirror: bool | None = None,
               precision: str = "fp32") -> torch.Tensor | None:
    """The mean fused embedding (D,) of every scan in ``batches`` ((B, V, 3, H, W) images in [0, 1]) as ``model``
    embeds them (mirror averaging, any ``embedding_shift``); None if there were none."""
    from affectvlm.predict import inference_context

    def embedded() -> Iterator[torch.Tensor]:
        for imgs in batches:
            with torch.no_grad(), inference_context(model.device, precision):
                yield model.embed(imgs, views, mirror)[0].float()

    return _average(embedded())


def _average(chunks: Iterable[torch.Tensor]) -> torch.Tensor | None:
    """The mean (D,) of the rows of every (N, D) chunk; None if there were none."""
    total, n = None, 0
    for rows in chunks:
        total = rows.sum(0) if total is None else total + rows.sum(0)
        n += len(rows)
    return None if total is None else (total / n).cpu()


def mean_embedding(o: Any, items: Sequence[Any]) -> torch.Tensor | None:
    """The mean fused embedding (D,) of ``items``' static scans whose names call them full expressions
    (:func:`affectvlm.reference.full_expressions`), rendered and encoded with ``o.model`` as ``predict`` does, or,
    when it holds no static scan at all, of its sequences' most expressive frames (:func:`peak_frames_mean`); None
    if nothing rendered. Unreadable scans are left out."""
    from affectvlm.predict import Prepared, _load_prepared, _render
    from affectvlm.reference import full_expressions

    if not any(it.kind == "scan" for it in items):  # a set of sequences
        return peak_frames_mean(o, [it for it in items if it.kind == "sequence"])
    scans = [it for it, full in zip(items, full_expressions([it.source for it in items]))
             if full and it.kind == "scan"]

    def rendered() -> Iterator[torch.Tensor]:
        for i in range(0, len(scans), BATCH):
            preps = []
            for it in scans[i:i + BATCH]:
                try:
                    preps.append(_load_prepared(it, o))
                except Exception:  # scored (and reported) as an error row elsewhere
                    continue
            ok = [p for p in preps if isinstance(p, Prepared)]
            imgs = _render(ok, o.model.device)[0] if ok else None
            if imgs is not None:
                yield imgs

    return fused_mean(o.model, rendered(), o.settings.views, o.mirror, o.precision)


def peak_frames_mean(o: Any, sequences: Sequence[Any]) -> torch.Tensor | None:
    """The mean fused embedding (D,) of each sequence's most expressive frames (the :data:`PEAK_FRACTION` of up to
    :data:`SEQUENCE_FRAMES` evenly spaced frames, those least likely neutral under ``o.model``, as ``contrast``
    pooling ranks a sequence's frames), encoded with ``o.model``; None if no frame rendered or the model has no
    neutral class. Sequences that cannot be read, rendered or encoded are left out (scored as error rows elsewhere)."""
    from affectvlm.io.sequence import sample_indices
    from affectvlm.predict import (orient_sequence, _render_frames, frame_expressiveness, inference_context,
                                   peak_frames)

    classes = list(o.model.classes)
    if "neutral" not in [c.lower() for c in classes]:
        return None

    def peaks() -> Iterator[torch.Tensor]:
        for it in sequences:
            try:
                seq = it.load()
                seq, settings, _ = orient_sequence(seq, o.settings)
                frames = [seq.frames[i] for i in sample_indices(len(seq.frames), 1, SEQUENCE_FRAMES)]
                imgs = _render_frames(frames, settings, o)[0]
                if imgs is None:
                    continue
                with torch.no_grad(), inference_context(o.model.device, o.precision):
                    fused = o.model.embed(imgs, settings.views, o.mirror)[0].float()
                    probs = torch.softmax(o.model.logits_from_embedding(fused).float(), -1)
            except Exception:  # scored (and reported) as an error row elsewhere
                continue
            yield fused[torch.from_numpy(peak_frames(frame_expressiveness(probs.cpu().numpy(), classes)))]

    return _average(peaks())


def centre(model: Any, mean: torch.Tensor | None) -> bool:
    """Give ``model`` (an adapted copy) the ``embedding_shift`` that moves ``mean``, a scored set's mean fused
    embedding, onto its stored training mean; False (nothing changed) when either is missing."""
    if mean is None or getattr(model, "embedding_mean", None) is None:
        return False
    model.embedding_shift = model.embedding_mean.to(mean) - mean
    return True


def _gather(o: Any, picked: list) -> Adapted:
    from affectvlm.predict import plan, score_items

    model = o.model
    with gathering_statistics(model) as adapted:
        rows = [row for _, row in score_items(picked, replace(o, model=adapted), plan(picked, BATCH))]
    scored = len(_counted(rows))
    if not scored:  # nothing rendered: nothing to adapt to
        return Adapted(model, 0, 0)
    centred = getattr(adapted, "embedding_mean", None) is not None and centre(
        adapted, mean_embedding(replace(o, model=adapted), picked))
    return Adapted(adapted, scored, len(norm_layers(adapted)), centred)


def adapt_model(model: "AffectVLM", inputs: Sequence[Any], *, sample: int = SAMPLE, **predict_kw: Any) -> Adapted:
    """A copy of ``model`` whose image encoder's batch-norm running statistics are those of ``inputs``' renders
    (up to ``sample`` of them, :func:`sample_inputs`; sequences by :data:`SEQUENCE_FRAMES` frames), rendered and
    mirrored as :func:`affectvlm.predict.predict` does with ``predict_kw``. ``model`` itself is not changed."""
    if not norm_layers(model):
        return Adapted(model, 0, 0)
    return _gather(*_picked(model, inputs, sample, predict_kw))


def min_inputs(mode: str, sequences: bool = False) -> int:
    """The fewest inputs ``mode`` adapts to; ``sequences``: every input is a sequence."""
    if mode == "on":
        return ON_MIN_ROWS
    return MIN_SEQUENCES if sequences else MIN_ROWS


def guard(rows: Sequence[Row], mode: str = "auto") -> SpreadCheck:
    """:func:`spread_check` as ``mode`` applies it to the sample's rows, scored without adaptation: ``auto`` judges
    only the scans whose names call them full expressions (not a BU-3DFE set's levels 1-2); ``on`` only counts.
    A set of only sequences needs fewer (:data:`MIN_SEQUENCES`)."""
    sequences = _all_sequences(rows)
    if mode == "auto":
        named = named_guard(rows)
        if named is not None:
            return named
        rows = _full(rows)
    return spread_check(rows, min_rows=min_inputs(mode, sequences), spread=mode == "auto")


def named_guard(rows: Sequence[Row]) -> SpreadCheck | None:
    """``auto``'s check passed on what the rows' dataset names say they show (:func:`_named_rows`), or None when
    the names do not pass it (the reading then decides). Names that say the set is varied outweigh a lean in the
    reading; narrow names do not decline a set read as varied (adapting 3-emotion 4D sets of unseen faces gained:
    the model card, session 38). Only the names are read, so it needs no scoring."""
    named = _named_rows(_full(rows))
    if named is None:
        return None
    check = spread_check(named, min_rows=min_inputs("auto", _all_sequences(rows)))
    return replace(check, reason=f"{check.reason}, by their dataset's names") if check.ok else None


def _all_sequences(rows: Sequence[Row]) -> bool:
    judged = [r for r in rows if not r.get("error")]  # an unreadable input says nothing of what the set holds
    return bool(judged) and all(r.get("frame") not in ("", None) for r in judged)


def _full(rows: Sequence[Row]) -> list[Row]:
    """The rows ``auto`` judges: neutral scans and full expressions (:func:`affectvlm.reference.full_expressions`)."""
    from affectvlm.reference import full_expressions

    return [r for r, full in zip(rows, full_expressions([r["file"] for r in rows])) if full]


def _named_rows(rows: Sequence[Row]) -> list[Row] | None:
    """``rows`` labelled by what their dataset's names say they show (:func:`affectvlm.datasets.declared_class`),
    or None unless every row that :func:`spread_check` counts has such a name."""
    from affectvlm.datasets import declared_class

    counted = _counted_rows(rows)
    declared = [declared_class(r["file"]) for r in counted]
    if not counted or any(d is None for d in declared):
        return None
    return [{**r, "label": d} for r, d in zip(counted, declared)]


def declined(model: Any, mode: str) -> SpreadCheck | None:
    """Why ``mode`` leaves ``model`` as trained whatever the inputs: under ``auto`` a checkpoint whose
    ``adapt_to_set`` is false (its training run chose so on validation), or a model without batch-norm layers;
    None when the inputs decide. :func:`adapt_for` and ``affectvlm eval --adapt`` both ask it first."""
    if mode == "auto" and getattr(model, "adapt_to_set", None) is False:
        return SpreadCheck(False, 0, "this model's validation subjects read better as trained (adapt_to_set in its "
                                     "affectvlm.json); --adapt on adapts anyway", on_spread=True)
    if not norm_layers(model):
        return SpreadCheck(False, 0, "the model has no batch-norm layers")
    return None


def adapt_for(model: "AffectVLM", inputs: Sequence[Any], mode: str = "auto", *, sample: int = SAMPLE,
              **predict_kw: Any) -> Adaptation:
    """The model to score ``inputs`` with under ``mode`` (:data:`ADAPT_MODES`): the sample :func:`adapt_model`
    would use is scored as usual first, and :func:`spread_check` on it decides (``on``: its size only). It depends
    only on the inputs, so every rank of a sharded run decides alike and adapts alike."""
    if mode not in ADAPT_MODES:
        raise ConfigError(f"adapt must be one of {', '.join(ADAPT_MODES)}, got {mode!r}")
    if mode == "none":
        return Adaptation(model, None)
    early = declined(model, mode)
    if early is not None:
        return Adaptation(model, early)
    from affectvlm.predict import plan, score_items

    o, picked = _picked(model, inputs, sample, predict_kw)
    readable = [it for it in picked if it.kind != "error"]
    need = min_inputs(mode, bool(readable) and all(it.kind == "sequence" for it in readable))
    if len(picked) < need:  # too few whatever they show: spare the scoring
        return Adaptation(model, SpreadCheck(False, len(picked), f"{len(picked)} inputs; it needs at least {need}"))
    # a set whose names say it is varied needs no scoring first (as guard would find from the rows)
    check = named_guard([{"file": str(it.source), "frame": "sequence" if it.kind == "sequence" else "", "error": None,
                          "label": "?"} for it in readable]) if mode == "auto" else None
    if check is None:
        check = guard([row for _, row in score_items(picked, o, plan(picked, BATCH))], mode)
    if not check.ok:
        return Adaptation(model, check)
    done = _gather(o, picked)
    if not done.layers:
        return Adaptation(model, SpreadCheck(False, check.rows, "nothing rendered"))
    return Adaptation(done.model, check, done.inputs, done.centred)
