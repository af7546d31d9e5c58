"""``affectvlm eval --model RUN_OR_CKPT --data ROOT --layout L --out metrics.json``.

RUN_OR_CKPT is a run folder (its ``best/`` checkpoint is used and its ``config.yaml`` supplies defaults for
data, layout, fold and filters) or any model spec ``load_model`` accepts. By default the run's test
subjects are evaluated (``--subset test``: from its ``splits.json``, else the held-out fold); ``--subset val``
its validation subjects; ``--subset train`` its training subjects (as scored, without the training augmentations:
beside val and test, how far the run generalises); ``--subset all`` scores every sample. Writes the metrics
JSON and a confusion-matrix PNG beside it (``metrics.png``).
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from affectvlm.adapt import (ADAPT_MODES, BATCH, SpreadCheck, centre, declined, fused_mean, gathering_statistics, guard,
                             min_inputs, sample_inputs)
from affectvlm.errors import AffectVLMError, ConfigError
from affectvlm.predict import DEFAULT_POOLING, POOLINGS, pool_probabilities
from affectvlm.prior import MIN_ROWS, match_rows, parse_prior
from affectvlm.reference import check_pattern, match_neutral, resolve_neutral
from affectvlm.subjects import centre_rows, neutral_rows, resolve_subject_mean, training_logits
from affectvlm.runfolder import RunFolder, read_splits, write_json
from affectvlm.trainconfig import TrainConfig, _int_list, load_yaml
from affectvlm.train.metrics import classification_metrics, save_confusion_png
from affectvlm.train.splits import resolve_split


def build_parser() -> argparse.ArgumentParser:
    from affectvlm.cli import CACHE_HELP, DEVICE_HELP, allow_signed_values, positive_int

    p = allow_signed_values(argparse.ArgumentParser(prog="affectvlm eval",
                                                    description="Evaluate a model on a labelled dataset."))
    p.add_argument("--model", required=True, help="run folder, checkpoint folder or model spec")
    p.add_argument("--data", help="dataset root or manifest CSV (default: a run folder's own data)")
    p.add_argument("--layout", help="how --data is laid out: bu3dfe, bu4dfe, bp4d, bosphorus, folders, manifest "
                                    "or auto (default: a run folder's own, else auto)")
    p.add_argument("--out", default="metrics.json",
                   help="where the metrics JSON goes, with the confusion matrix as a PNG beside it "
                        "(default: metrics.json here)")
    p.add_argument("--subset", choices=("test", "val", "train", "all"), default=None,
                   help="held-out fold of the split (default when the run folder is given), a run's validation "
                        "or training subjects (scored as predict scores, without augmentation), or all samples")
    p.add_argument("--fold", type=int, help="with --subset test: the test fold (default: a run's own, else 0)")
    p.add_argument("--folds", type=int, help="... of this many subject folds (a run's own, else 5)")
    p.add_argument("--split-seed", type=int, help="... shuffled with this seed, as the trainer's (a run's own, else 0)")
    p.add_argument("--intensities", type=_int_list,
                   help="keep only these intensity levels, e.g. 3,4 (default: a run's own, else all)")
    p.add_argument("--views", help='view angles, e.g. "-30,0,30" (default: the model\'s)')
    p.add_argument("--cache-dir", help=CACHE_HELP)
    p.add_argument("--batch-size", type=positive_int, default=32, help="scans scored at once (32)")
    p.add_argument("--per-intensity", action="store_true", help="report accuracy per intensity level (always done when the data has levels; kept for "
                   "older scripts)")
    p.add_argument("--device", default="auto", help=f"{DEVICE_HELP} (auto)")
    p.add_argument("--prior", metavar="SPEC",
                   help="match the scored set's class balance before taking labels, as `affectvlm predict --prior` "
                        "(transductive; the metrics record it)")
    p.add_argument("--prior-by", choices=("set", "folder"), default="set", help="with --prior: the whole set or "
                   "each folder apart")
    p.add_argument("--adapt", choices=ADAPT_MODES, default="none",
                   help="as `affectvlm predict --adapt`: the image encoder's batch-norm statistics re-estimated on "
                        "the renders of up to 256 of the samples first (on: at least 20; auto: as predict decides, "
                        "following the checkpoint's adapt_to_set and judging the sample by its dataset's names or "
                        "the model's reading, at least 50; views as rendered, without predict's mirror images; "
                        "none, the default: as the trainer's test figures; transductive: the metrics record it)")
    p.add_argument("--neutral", default="none", metavar="GLOB",
                   help="as `affectvlm predict --neutral`: score each scan against its subject's neutral scan(s) "
                        "(auto: BU-3DFE's NE00, Bosphorus's N_N; a glob; none, the default: each scan alone, as the "
                        "trainer's test figures; the metrics record it)")
    p.add_argument("--subject-mean", choices=("auto", "none"), default="none",
                   help="as `affectvlm predict --subject-mean`: each subject's scans relative to the subject's mean "
                        "(auto: BU-3DFE / Bosphorus names, following the checkpoint's subject_mean; --neutral auto "
                        "then leaves those subjects alone; none, the default: as the trainer's test figures; the "
                        "metrics record it)")
    p.add_argument("--sequence-frames", type=_frames_spec, metavar="N|all",
                   help="a 4D set's frames scored per sequence: up to N evenly spaced in the middle 30-70%% of each "
                        "(default: a run's frames_per_sequence, else 5, as the trainer scores), or all of them, as "
                        "`affectvlm predict` (the frame figures then count onset and offset frames under the "
                        "sequence's label; --prior is matched over the frames, predict matches the sequences)")
    p.add_argument("--pooling", choices=POOLINGS,
                   help=f"how a sequence's frame probabilities make its label, as `affectvlm predict --pooling` "
                        f"(default: {DEFAULT_POOLING}, predict's, with --sequence-frames all; peak over middle frames, "
                        "which hold no calm frame to contrast with)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar while the samples are rendered")
    p.add_argument("--no-landmarks", action="store_true",
                   help="skip the landmark error against .bnd files beside the scans")
    return p


def resolve_model(spec: str) -> tuple[str, dict]:
    """(model spec, run config dict or {}) for a run folder, a checkpoint folder or a plain spec."""
    run = RunFolder(spec)
    if run.is_run():
        return str(run.best), load_yaml(run.config)
    return spec, {}


def run_eval(args: argparse.Namespace) -> dict:
    from affectvlm.datasets import (canonical_class, expand_frames, filter_samples, kfold_split, load_dataset,
                                    manifest_split)
    from affectvlm.model import load_model
    from affectvlm.predict import render_settings
    from affectvlm.train.cache import RenderCache, default_cache_dir, set_frame_of

    from affectvlm.model import resolve_device

    device = str(resolve_device(args.device))
    spec, run_cfg = resolve_model(args.model)
    base = TrainConfig(**{k: v for k, v in run_cfg.items() if k in TrainConfig.__dataclass_fields__})
    data = args.data or base.data
    layout = args.layout or base.layout
    if not data:
        from affectvlm.model.specs import parse_spec

        parse_spec(spec)  # a --model that names nothing is the first thing to say
        raise ConfigError("--data is required (no run folder with a saved config was given)")
    intens = args.intensities or base.intensities
    subset = args.subset or ("test" if run_cfg else "all")
    ds = load_dataset(data, layout)
    for note in ds.notes:
        print(f"warning: {note}", file=sys.stderr)
    model = load_model(spec, device=device, cache=False)
    classes = list(model.classes)
    samples = filter_samples(ds.samples, intensities=intens, classes=classes)
    split_rec = read_splits(args.model) if run_cfg else None
    if split_rec is not None and subset != "all":
        other = [f"--{k.replace('_', '-')} {v}" for k, v in (("fold", args.fold), ("folds", args.folds),
                                                            ("split_seed", args.split_seed))
                 if v is not None and v != getattr(base, k)]
        if other:
            raise ConfigError(f"{' '.join(other)}: {args.model} was trained on its own split ({split_rec.source}); "
                              f"its {subset} subjects come from that. Score another fold with that fold's run folder, "
                              f"or use --subset all")
    if subset == "test" and split_rec is not None:  # the run's own test subjects (never used for selection)
        test_subjects = set(split_rec.subjects.get("test", []))
        samples = [s for s in samples if s.subject in test_subjects]
    elif subset in ("val", "train"):
        if split_rec is None:
            raise ConfigError(f"--subset {subset} needs a run folder (its splits.json names the "
                              f"{'validation' if subset == 'val' else 'training'} subjects)")
        chosen = set(split_rec.subjects.get(subset, []))
        samples = [s for s in samples if s.subject in chosen]
    elif subset == "test":
        if resolve_split(samples, base.split) == "manifest":
            _, _, samples = manifest_split(samples, str(data))
        else:
            _, samples = kfold_split(samples, args.folds or base.folds,
                                     base.fold if args.fold is None else args.fold,
                                     base.split_seed if args.split_seed is None else args.split_seed)
    # the chosen subjects' samples at the chosen levels whose label the model lacks (a typo, a class it has not)
    known, chosen = {canonical_class(c) for c in classes}, {s.subject for s in samples}
    left_out = dict(sorted(Counter(s.label for s in filter_samples(ds.samples, intensities=intens)
                                   if s.label not in known and s.subject in chosen).items()))
    every_frame = args.sequence_frames == "all"
    if every_frame:
        samples = expand_frames(samples, n_frames=max((len(s.frame_paths or ()) for s in samples), default=1),
                                window=(0.0, 1.0))
    else:
        samples = expand_frames(samples, n_frames=args.sequence_frames or base.frames_per_sequence)
    if not samples:
        raise ConfigError(f"{data}: no samples to evaluate")
    sequence_of = sequences_of(samples)
    check_pattern(args.neutral)
    prior = parse_prior(args.prior, classes) if args.prior else None
    if prior is None and args.prior_by != "set":
        raise ConfigError(f"--prior-by {args.prior_by} needs --prior SPEC (the balance to match)")
    n_inputs, kind = counted(samples, sequence_of)
    if args.adapt == "on" and n_inputs < min_inputs("on"):
        raise ConfigError(f"--adapt on needs at least {min_inputs('on')} inputs; {data} gives {n_inputs} {kind}")
    if prior is not None and args.prior_by == "set" and len(samples) < MIN_ROWS:
        raise ConfigError(f"--prior needs at least {MIN_ROWS} samples to match; {data} gives {len(samples)}")
    # as predict renders: the model's views at its score_pitches, or the views given, as given
    settings = model.render = render_settings(model.render, args.views or None)
    cache = RenderCache(args.cache_dir or default_cache_dir(), settings, device=device,
                        set_frame=set_frame_of(samples, settings))
    if cache.set_frame is not None:
        print(f"face frame of the data: {cache.set_frame.text()}; a flagged scan facing its front but read another "
              "way up takes its up (as predict)", file=sys.stderr)
    t0 = time.perf_counter()
    from tqdm import tqdm

    paths = [s.path for s in samples]
    with tqdm(total=len(cache.missing(paths)), disable=args.no_progress or not sys.stderr.isatty(), file=sys.stderr,
              unit="scan", desc="rendering") as bar:
        cache.warm(paths, progress=bar.update)
    cidx = {c: i for i, c in enumerate(classes)}
    picked = sample_inputs(samples)
    pooling = args.pooling or (DEFAULT_POOLING if every_frame else "peak")
    check = adapt_check(args.adapt, model, picked, cache, device, sequence_of, pooling)
    adapted = check is not None and check.ok
    if adapted:  # as predict --adapt: the statistics of up to SAMPLE samples, in its order and batches
        with gathering_statistics(model) as model:
            for i in range(0, len(picked), BATCH):
                model(_renders(cache, picked[i:i + BATCH], device))
        centred = centre(model, _peak_frames_mean(model, samples, cache, device, sequence_of)
                         if sequence_of and all(s.sequence is not None for s in picked)
                         else _mean_embedding(model, picked, cache, device))
    y_true, probs = [], []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(samples), args.batch_size):
            chunk = samples[i:i + args.batch_size]
            probs += torch.softmax(model(_renders(cache, chunk, device)).float(), -1).cpu().tolist()
            y_true += [cidx[s.label] for s in chunk]
    # the rows predict would give, referenced and matched as predict --neutral / --prior do
    rows = [{"file": str(s.path), "frame": "", "error": "", **dict(zip(classes, p))} for s, p in zip(samples, probs)]
    neutral = resolve_neutral(args.neutral, model)[0]
    scans = [r for r, s in zip(rows, samples) if s.frame_ids is None]
    by_subject = centre_rows(scans, classes, training_logits(model),
                             resolve_subject_mean(args.subject_mean, model)[0])
    ref = match_neutral(neutral_rows(scans, by_subject, neutral), classes, neutral)
    if prior is not None:
        match_rows(rows, classes, prior, by=args.prior_by)
    probs = [[r[c] for c in classes] for r in rows]
    y_pred = [int(np.argmax(p)) for p in probs]
    out = classification_metrics(y_true, y_pred, classes)
    if by_subject.rescored:
        out["subject_mean"] = {"rescored": by_subject.rescored, "subjects": by_subject.subjects, "transductive": True}
    if ref.rescored:
        out["neutral_reference"] = {"spec": args.neutral, "rescored": ref.rescored, "subjects": ref.subjects,
                                    "transductive": True}
    if adapted:
        out["adapted"] = {"samples": len(picked), "centred": centred, "mode": args.adapt, "reason": check.reason,
                          "transductive": True}
    elif check is not None:
        out["adapt_declined"] = {"mode": args.adapt, "reason": check.reason}
    if prior is not None:
        out["prior"] = {"spec": args.prior, "by": args.prior_by, "transductive": True}
    if cache.set_frame is not None:  # the frame its flagged scans facing that way took (affectvlm.setframe)
        sf = cache.set_frame
        out["set_frame"] = {"up": sf.up, "front": sf.front, "agree": sf.agree, "of": sf.of, "transductive": True}
    if sequence_of:
        out["sequences"] = sequence_accuracy(samples, y_true, probs, classes, sequence_of, pooling,
                                             resolve_subject_mean(args.subject_mean, model)[0], training_logits(model),
                                             "all" if every_frame else "middle")
    if left_out:
        out["left_out_labels"] = left_out
    for attr in ("intensity", "family", "face_model"):
        per = per_group(samples, y_true, y_pred, attr)
        if per or (attr == "intensity" and args.per_intensity):
            out[f"per_{attr}"] = per
    lm = landmark_error(samples, settings) if not args.no_landmarks else None
    if lm is not None:
        out["landmarks"] = lm
    out.update({"model": spec, "views": [str(v) for v in settings.views], "data": str(data), "layout": ds.layout,
                "subset": subset,
                "n_subjects": len({s.subject for s in samples}), "seconds": round(time.perf_counter() - t0, 2),
                "cache": cache.report()})
    return out


def adapt_check(mode: str, model, picked: Sequence, cache, device, sequence_of: dict[str, str] | None = None,
                pooling: str = DEFAULT_POOLING) -> SpreadCheck | None:
    """Whether ``--adapt MODE`` adapts ``model`` to the ``picked`` samples (their renders in ``cache``), as
    :func:`affectvlm.adapt.adapt_for` decides for predict: ``auto`` declines a checkpoint whose ``adapt_to_set`` is
    false, then judges the picked samples by their dataset's names, else by the model's reading of them as trained;
    None for ``none``. Each scan counts as an input; when every picked sample is a frame of a sequence
    (``sequence_of``: frame file -> sequence), each sequence does, read from its picked frames pooled by ``pooling``
    as predict pools a sequence; :func:`affectvlm.adapt.min_inputs` says how many are enough."""
    if mode == "none":
        return None
    early = declined(model, mode)
    if early is not None:
        return early
    sequence_of = sequence_of or {}
    inputs, kind = counted(picked, sequence_of)
    frames = kind == "sequences"
    if mode == "on":
        return SpreadCheck(True, inputs, f"{inputs} {kind}")
    need = min_inputs(mode, frames)
    if inputs < need:
        return SpreadCheck(False, inputs, f"{inputs} {kind}; it needs at least {need}")

    classes = list(model.classes)
    probs: list[np.ndarray] = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(picked), BATCH):
            probs += list(torch.softmax(model(_renders(cache, picked[i:i + BATCH], device)).float(), -1).cpu().numpy())
    if not frames:
        return guard([{"file": str(s.path), "frame": "", "error": None, "label": classes[int(np.argmax(p))]}
                      for s, p in zip(picked, probs)], "auto")
    by_sequence: dict[str, list[np.ndarray]] = {}
    for s, p in zip(picked, probs):
        by_sequence.setdefault(sequence_of[str(s.path)], []).append(p)
    return guard([{"file": seq, "frame": "sequence", "error": None,
                   "label": classes[int(np.argmax(pool_probabilities(np.stack(ps), classes, pooling)))]}
                  for seq, ps in by_sequence.items()], "auto")


def counted(samples: Sequence, sequence_of: dict[str, str]) -> tuple[int, str]:
    """How many inputs predict would see in ``samples``: (n, "samples"), or (n, "sequences") when every one is a
    frame of a sequence (``sequence_of``: frame file -> sequence)."""
    if samples and all(str(s.path) in sequence_of for s in samples):
        return len({sequence_of[str(s.path)] for s in samples}), "sequences"
    return len(samples), "samples"


def _mean_embedding(model, picked: Sequence, cache, device) -> torch.Tensor | None:
    """The adapted model's mean fused embedding over the picked static samples that are full expressions, from
    the cached renders (what ``adapt.mean_embedding`` gives predict)."""
    from affectvlm.reference import full_expressions

    keep = [s for s, full in zip(picked, full_expressions([str(s.path) for s in picked]))
            if full and s.frame_ids is None]
    return fused_mean(model, (_renders(cache, keep[i:i + BATCH], device) for i in range(0, len(keep), BATCH)))


def _renders(cache, samples: Sequence, device) -> torch.Tensor:
    """The samples' cached renders as one (B, V, 3, H, W) batch in [0, 1] on ``device``."""
    return torch.stack([torch.from_numpy(cache.get(s.path)) for s in samples]).float().div_(255).to(device)


def _peak_frames_mean(model, samples: Sequence, cache, device, sequence_of: dict[str, str]) -> torch.Tensor | None:
    """The adapted model's mean fused embedding over each sequence's most expressive frames among up to
    ``SEQUENCE_FRAMES`` evenly spaced scored ones, from the cached renders (what ``adapt.peak_frames_mean`` gives
    predict for a set of sequences); None without a neutral class."""
    from affectvlm.adapt import SEQUENCE_FRAMES
    from affectvlm.io.sequence import sample_indices
    from affectvlm.predict import frame_expressiveness, peak_frames

    classes = list(model.classes)
    if "neutral" not in [c.lower() for c in classes]:
        return None
    groups: dict[str, list] = {}
    for s in samples:
        if (seq := sequence_of.get(str(s.path))) is not None:
            groups.setdefault(seq, []).append(s)
    peaks = []
    with torch.no_grad():
        for frames in groups.values():
            take = [frames[i] for i in sample_indices(len(frames), 1, SEQUENCE_FRAMES)]
            fused = model.embed(_renders(cache, take, device))[0].float()
            probs = torch.softmax(model.logits_from_embedding(fused).float(), -1).cpu().numpy()
            peaks.append(fused[torch.from_numpy(peak_frames(frame_expressiveness(probs, classes)))])
    return torch.cat(peaks).mean(0).cpu() if peaks else None


def sequence_accuracy(samples: Sequence, y_true: Sequence[int], probs: Sequence[Sequence[float]],
                      classes: Sequence[str], sequence_of: dict[str, str], pooling: str = DEFAULT_POOLING,
                      subject_mean: str = "none", added: np.ndarray | None = None,
                      frames_scored: str = "middle") -> dict:
    """Each sequence's label from its scored frames (``sequence_of``: frame file -> sequence), their probabilities
    pooled as ``predict`` pools a sequence (:func:`affectvlm.predict.pool_probabilities`) and, with ``subject_mean``
    ``auto``, each BU-4DFE subject's sequences taken relative to their mean as predict does
    (:func:`affectvlm.subjects.centre_rows`, ``added`` its training logits): the sequences' ``n``, ``accuracy``,
    ``macro_f1``, ``per_class_accuracy`` and ``confusion_matrix`` (rows: true class), each sequence's ``labels``,
    the scored ``frames`` (``frames_each``; ``frames_scored``: ``middle`` or ``all`` of each sequence's), the
    ``pooling``, and ``"subject_mean"`` when it rescored any."""
    groups: dict[str, list[int]] = {}
    for k, smp in enumerate(samples):
        if (seq := sequence_of.get(str(smp.path))) is not None:
            groups.setdefault(seq, []).append(k)
    rows = [{"file": seq, "frame": "sequence", "error": "",
             **dict(zip(classes, pool_probabilities([probs[k] for k in ks], classes, pooling)))}
            for seq, ks in groups.items()]
    by_subject = centre_rows(rows, classes, added, subject_mean)
    truth = [y_true[ks[0]] for ks in groups.values()]
    said = [int(np.argmax([r[c] for c in classes])) for r in rows]
    sizes = sorted({len(ks) for ks in groups.values()})
    metrics = classification_metrics(truth, said, classes)
    out = {"n": len(groups), "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
           "frames": sum(len(ks) for ks in groups.values()),
           "frames_each": sizes[0] if len(sizes) == 1 else sizes, "frames_scored": frames_scored, "pooling": pooling,
           "per_class_accuracy": metrics["per_class_accuracy"], "confusion_matrix": metrics["confusion_matrix"],
           "labels": [{"sequence": r["file"], "label": classes[t], "predicted": classes[k], "frames": len(ks)}
                      for r, t, k, ks in zip(rows, truth, said, groups.values())]}
    if by_subject.rescored:
        out["subject_mean"] = {"rescored": by_subject.rescored, "subjects": by_subject.subjects, "transductive": True}
    return out


def sequences_of(samples: Sequence) -> dict[str, str]:
    """Frame file -> its sequence, for the frames :func:`affectvlm.datasets.expand_frames` made."""
    return {str(s.path): str(s.sequence) for s in samples if s.sequence is not None}


def _frames_spec(text: str) -> int | str:
    if text.strip().lower() == "all":
        return "all"
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of frames >= 1, or all")
    return n


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def per_group(samples: Sequence, y_true: Sequence[int], y_pred: Sequence[int], attr: str) -> dict[str, dict]:
    """Accuracy per value of a sample attribute (``intensity``, ``family``, ``face_model``), samples without one
    left out: ``{value: {"n": ..., "accuracy": ...}}``, sorted (numerically for intensities)."""
    groups: dict = {}
    for k, s in enumerate(samples):
        v = getattr(s, attr, None)
        if v is not None:
            groups.setdefault(v, []).append(k)
    return {str(v): {"n": len(ii), "accuracy": sum(y_true[k] == y_pred[k] for k in ii) / len(ii)}
            for v, ii in sorted(groups.items())}


def landmark_error(samples: Sequence, settings) -> dict | None:
    """Error (scan units, mm for BU-3DFE) of the face-frame network's 83 landmarks against the ``.bnd`` files
    beside the scans; None when no scan has one. Scans are oriented as the model's render settings say."""
    from affectvlm.geometry import canonicalise
    from affectvlm.io import load_mesh
    from affectvlm.io.landmarks import bnd_beside, read_bnd

    errs, per_scan, unread = [], [], []
    for s in samples:
        bnd = bnd_beside(s.path) if s.frame_ids is None else None
        if bnd is None:
            continue
        try:
            truth = read_bnd(bnd)
        except AffectVLMError as e:  # a side check: one bad landmark file must not cost the scores
            if not unread:
                print(f"warning: {e}; landmark files that cannot be read are left out of landmark_error",
                      file=sys.stderr)
            unread.append(str(bnd))
            continue
        info = canonicalise(load_mesh(s.path, texture=False), up=settings.up, front=settings.front,
                            landmarks=True).meta["canonical"]  # the landmarks predict's rows and crop use
        if not info.get("landmarks") or len(info["landmarks"]) != len(truth):
            continue
        e = np.linalg.norm(np.asarray(info["landmarks"]) - truth, axis=1)
        errs.append(e)
        per_scan.append(float(e.mean()))
    if not errs:
        return None
    e = np.concatenate(errs)
    return {"scans": len(errs), "mean": round(float(e.mean()), 3), "median": round(float(np.median(e)), 3),
            "p95": round(float(np.quantile(e, 0.95)), 3), "worst_scan_mean": round(max(per_scan), 3),
            "units": "scan units (mm for BU-3DFE)", **({"unreadable_files": unread[:20]} if unread else {})}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if Path(args.out).is_dir():  # said before the scoring, not after it
        print(f"error: --out {args.out}: is a folder; give the metrics file's name, e.g. {args.out}/metrics.json",
              file=sys.stderr)
        return 2
    if Path(args.out).suffix.lower() != ".json":
        print(f"error: --out {args.out}: the metrics are JSON; give a name ending in .json, e.g. metrics.json",
              file=sys.stderr)
        return 2
    try:
        res = run_eval(args)
    except AffectVLMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, {**res, "confusion_matrix_axes": "rows: true class, columns: predicted class, in the "
                                                         "order of classes"})
        try:
            png = save_confusion_png(res["confusion_matrix"], res["classes"], out.with_suffix(".png"),
                                     title=f"accuracy {res['accuracy']:.3f} (n={res['n']})")
        except ModuleNotFoundError as e:  # matplotlib comes with the [train] extra; the metrics need none of it
            png = "no confusion-matrix PNG"
            print(f"note: {e.name} is not installed (pip install 'affectvlm[train]'): the metrics JSON is written, "
                  "the confusion-matrix PNG is not", file=sys.stderr)
    except OSError as e:
        print(f"error: {out}: cannot write the metrics ({e.strerror or e})", file=sys.stderr)
        return 2
    if "adapted" in res or "adapt_declined" in res:
        how = res.get("adapted") or res["adapt_declined"]
        print(f"--adapt {args.adapt}: " + ("adapted to the scored samples" if "adapted" in res else
                                          "scored with the trained statistics") + f" ({how['reason']})",
              file=sys.stderr)
    if res.get("left_out_labels"):
        said = ", ".join(f"{k!r} x{v}" for k, v in list(res["left_out_labels"].items())[:8])
        left = sum(res["left_out_labels"].values())
        print(f"warning: {_count(left, 'sample')} left out: {'its' if left == 1 else 'their'} label is not one of "
              f"the model's classes ({said})", file=sys.stderr)
    seqs = res.get("sequences")
    n = f"n={res['n']}" + (f" ({_count(seqs['frames'], 'frame')} of {_count(seqs['n'], 'sequence')})" if seqs else "")
    print(f"accuracy {res['accuracy']:.4f}  macro-F1 {res['macro_f1']:.4f}  {n}  -> {out}, {png}")
    if seqs:
        each = seqs["frames_each"]
        each = f"{each[0]}-{each[-1]}" if isinstance(each, list) else each
        which = "frame" if seqs["frames_scored"] == "all" else "middle frame"
        which += "" if each == 1 else "s"
        centred = (f"; {seqs['subject_mean']['rescored']} relative to their subject's mean"
                   if "subject_mean" in seqs else "")
        print(f"sequences {seqs['accuracy']:.4f}  n={seqs['n']} (each from its {each} {which}, pooled by "
              f"{seqs['pooling']}{centred}" + ("" if seqs["frames_scored"] == "all" else "; --sequence-frames all "
                                               "scores every frame, as predict") + ")")
    if res.get("landmarks"):
        lm = res["landmarks"]
        print(f"landmarks: mean {lm['mean']:.2f}, median {lm['median']:.2f}, p95 {lm['p95']:.2f} "
              f"({lm['units']}) over {lm['scans']} scans with .bnd files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
