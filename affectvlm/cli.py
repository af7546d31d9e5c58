"""The ``affectvlm`` command (also ``python -m affectvlm``).

    affectvlm predict scan.wrl F001/Angry/ batch.zip --out results.csv
    affectvlm render scan.obj --out views/ --views 0,-30,30 --maps shade,depth,normal
    affectvlm models [--json] [--available]       models on this machine and open_clip's pretrained tags
    affectvlm download ViT-B-32:openai hf-hub:org/repo   fetch weights into their cache ahead of use
    affectvlm synth ... | train ... | eval ...      (forwarded to their own parsers)

User errors print one line ``affectvlm: error: ...`` and exit 2; ``predict`` exits 1 when any input
failed (each failure is on its row and on one stderr line).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from affectvlm.errors import AffectVLMError, ConfigError, InputError, printable
from affectvlm.fileio import out_problem

DEVICE_HELP = "torch device: auto (CUDA when present, else cpu), cpu, cuda, cuda:N or mps"
CACHE_HELP = "where renders are cached (default: $AFFECTVLM_CACHE/renders, else ~/.cache/affectvlm/renders)"

_FORWARDED = {
    "synth": ("affectvlm.synth.cli", "make synthetic BU-3DFE/BU-4DFE-style data"),
    "train": ("affectvlm.train.train", "fine-tune a model (also under torchrun)"),
    "eval": ("affectvlm.train.evaluate", "evaluate a model on a dataset"),
    "app": ("affectvlm.applaunch", "run the Streamlit app (from the checkout or where the package installed it)"),
}


_SIGNED_VALUE = re.compile(r"^-(\.?\d|[xyzXYZ]$)")


def allow_signed_values(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Let ``parser``'s options take values that start with a minus and a digit, so ``--views -30,0,30``
    works like ``--views=-30,0,30`` (argparse alone takes only a plain ``-30`` for a value, and reads
    ``-30,0,30`` as an unknown option), and the negative axes, so ``--up -y`` works. Safe because no option of
    ours is spelt ``-<digit>``, ``-x``, ``-y`` or ``-z``."""
    parser._negative_number_matcher = _SIGNED_VALUE  # the hook argparse uses to tell values from options
    return parser


def _number(text: str, cast: type, ok: Callable[[float], bool], what: str) -> Any:
    try:
        v = cast(text)
    except ValueError:
        v = None
    if v is None or not ok(v):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return v


def positive_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 1, "a positive integer")


def _non_negative_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 0, "a whole number >= 0")


def _fps(text: str) -> float:
    from affectvlm.predict import FPS_RANGE

    lo, hi = FPS_RANGE
    return _number(text, float, lambda v: lo <= v <= hi, f"frames per second from {lo:g} to {hi:g}")


def build_parser() -> argparse.ArgumentParser:
    from affectvlm import __version__

    p = argparse.ArgumentParser(prog="affectvlm", description="Facial emotion recognition from 3D face scans "
                                "and 4D scan sequences with multiview CLIP models.")
    p.add_argument("--version", action="version", version=f"affectvlm {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    pr = sub.add_parser("predict", help="emotion probabilities for scans, folders, zips and 4D sequences",
                        description="Score 3D scans (.wrl .obj .ply .stl .off .glb .gltf .bnt), folders of scans, "
                        "4D sequences (a folder or .zip of numbered frames) and zips of scans.")
    allow_signed_values(pr)
    pr.add_argument("inputs", nargs="+", metavar="INPUT", help="scan file, folder or .zip")
    pr.add_argument("--model", default=None, help="model spec: default (embedded), NAME:TAG (ViT-B-32:openai), "
                    "hf-hub:org/repo, NAME@weights.safetensors, local-dir:/dir, a checkpoint folder, or NAME "
                    "(random init)")
    pr.add_argument("--views", default=None, help="camera views as yaws, e.g. -30,0,30, or yaw:pitch pairs "
                    "(default: the model's, each also at the model's score_pitches; views given here are rendered as given)")
    g = pr.add_mutually_exclusive_group()
    g.add_argument("--frames", type=positive_int, default=None, help="sample N evenly spaced frames per sequence")
    g.add_argument("--every", type=positive_int, default=1, help="keep every K-th frame of a sequence")
    pr.add_argument("--classes", default=None, help="comma-separated class names (default: the model's)")
    pr.add_argument("--prompts", default=None, help="prompt template file (YAML/JSON, see data/prompts/default.yaml)")
    pr.add_argument("--out", default=None, help="write results to a .csv or .json file (default: print)")
    pr.add_argument("--landmarks", action="store_true",
                    help="CSV: add the 83 face landmarks as lm01_x ... lm83_z columns (JSON always has them)")
    pr.add_argument("--format", choices=("table", "csv", "json"), default="table",
                    help="stdout format when --out is not given")
    pr.add_argument("--up", default=None, help="the scans' up axis, e.g. +y (default: detected per scan; a flagged "
                    "scan of a set whose scans mostly share one frame takes the set's up)")
    pr.add_argument("--front", default=None, help="the axis the faces look along, e.g. +z (default: detected)")
    pr.add_argument("--pooling", choices=("contrast", "peak", "mean"), default="contrast",
                    help="how a sequence's frames are pooled (contrast: the most expressive 30%% of frames against "
                         "the calmest, neutral excluded; peak: the most expressive 30%%, neutral included; mean)")
    pr.add_argument("--prior", default=None, metavar="SPEC",
                    help="match the set's class balance after scoring: 'uniform' or CLASS=WEIGHT,... (classes not "
                         "named weigh 1; e.g. neutral=0.25 for BU-3DFE). Takes out a lean the whole set shares; "
                         "a scan's label then depends on the others scored with it (off by default)")
    pr.add_argument("--neutral", default=None, metavar="GLOB",
                    help="score each scan against its subject's neutral scan(s), taking out the subject's resting "
                         "lean (a scan's label then depends on that scan): auto (the default without --prior) pairs "
                         "BU-3DFE scans with their subject's *_NE00* scan and Bosphorus emotion scans (*_E_*) with "
                         "their subject's *_N_N_* scans; none (the default with --prior) scores each scan alone; or a "
                         "file-name GLOB for the neutral scans of each folder, for every other scan there. The neutral "
                         "scans keep their rows; applied before --prior")
    pr.add_argument("--subject-mean", choices=("auto", "none"), default=None,
                    help="score each subject's scans (BU-3DFE, Bosphorus names) or sequences (BU-4DFE folders) "
                         "relative to the subject's own mean, taking out what the face shows in all of them (a "
                         "label then depends on the subject's other inputs): auto (the default without --prior) for "
                         "subjects with at least 7 scans or 4 sequences whose names span at least 4 classes (neutral "
                         "counts); --neutral auto then leaves those subjects alone; none (the default with --prior)")
    pr.add_argument("--adapt", choices=("auto", "on", "none"), default=None,
                    help="score with the image encoder's batch-norm statistics re-estimated on the renders of up to "
                         "256 of the inputs (a face model or scanner the model never saw shifts them; a scan's label then "
                         "depends on the set): auto (the default without --prior) when at least 50 of them, scored "
                         "as usual, read as at least 4 expressions, each over 10 %% and none over 40 %% (or 5, each "
                         "over 5 %% and none over half); on: with at least 20 of any mix (a set of one expression "
                         "loses it); none (the default with --prior)")
    pr.add_argument("--prior-by", choices=("set", "folder"), default="set",
                    help="with --prior: match the whole set (default), or each folder apart (a subject's folder in "
                         "BU-3DFE/BU-4DFE, when every subject shows every class in that balance)")
    pr.add_argument("--batch-size", type=positive_int, default=8, help="scans rendered and scored together")
    pr.add_argument("--no-mirror", action="store_true",
                    help="score each scan as rendered only (default: averaged with its mirror image)")
    pr.add_argument("--device", default="auto", help=DEVICE_HELP)
    pr.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32",
                    help="image encoder precision (fp16/bf16: autocast; bf16 also on CPU)")
    pr.add_argument("--workers", type=_non_negative_int, default=None,
                    help="threads that read, orient and render the next scans while a batch is encoded "
                    "(0: none; default: one per core, at most 4)")
    pr.add_argument("--fps", type=_fps, default=None,
                    help="frame rate of the sequences' timestamp column (default: a sequence's own, else 25, "
                    "BU-4DFE's)")
    pr.add_argument("--no-progress", action="store_true", help="no progress bar")

    rd = sub.add_parser("render", help="write a scan's views as PNGs (the views, maps and size you give)",
                        description="Render a scan (or every frame of a sequence) to PNG images, with the views, maps "
                                    "and size given here: not a model's own render settings (those are in its "
                                    "affectvlm.json, and the Analyse page shows the views a model scores). Files are "
                                    "named NAME_vJ.png, J counting the --views in the order given (NAME_MAP_vJ.png "
                                    "for maps other than shade or several maps; a sequence's frames add _fNNNN to "
                                    "NAME).")
    allow_signed_values(rd)
    rd.add_argument("input", metavar="INPUT", help="scan file, or a folder/.zip of frames")
    rd.add_argument("--out", required=True, help="output folder")
    rd.add_argument("--views", default="0,-30,30", help="camera views (yaw, or yaw:pitch), e.g. 0:10,30:0 (default: 0,-30,30)")
    rd.add_argument("--size", type=positive_int, default=224, help="image size in pixels (default: 224)")
    rd.add_argument("--maps", default="shade", help="comma-separated maps: shade,depth,normal,mask,lights (default: shade)")
    rd.add_argument("--up", default=None, help="the scans' up axis, e.g. +y (default: detected, as predict does)")
    rd.add_argument("--front", default=None, help="the axis the faces look along, e.g. +z (default: detected)")
    rd.add_argument("--no-texture", action="store_true", help="shade in grey, ignoring texture and colours")
    g = rd.add_mutually_exclusive_group()
    g.add_argument("--frames", type=positive_int, default=None, help="sequence: N evenly spaced frames")
    g.add_argument("--every", type=positive_int, default=1, help="sequence: every K-th frame")
    rd.add_argument("--device", default="auto", help=DEVICE_HELP)

    md = sub.add_parser("models", help="list the models this machine can use and whether each works offline",
                        description="List the embedded model, checkpoints and training runs under the workspace "
                        "(AFFECTVLM_WORKSPACE_ROOTS), open_clip models in the Hugging Face cache and open_clip's "
                        "pretrained tags, each with whether it is usable offline (on disk or in its cache).")
    md.add_argument("--json", action="store_true", help="print JSON instead of a table")
    md.add_argument("--available", action="store_true", help="only the models usable offline")
    dl = sub.add_parser("download", help="fetch model weights into their cache ahead of use (offline nodes, Docker)",
                        description="Fetch the weights (and tokenizer files) of model specs into the cache they "
                        "load from: the Hugging Face cache (HF_HOME, HF_HUB_CACHE) for hf-hub:org/repo and "
                        "open_clip pretrained tags, or AFFECTVLM_CACHE when set. Local specs are only checked.")
    dl.add_argument("specs", nargs="+", metavar="SPEC", help="model spec, e.g. ViT-B-32:openai or hf-hub:org/repo")
    dl.add_argument("--no-progress", action="store_true", help="no progress bar")

    for name, (_, help_) in _FORWARDED.items():
        sub.add_parser(name, help=help_ + f" (see `affectvlm {name} --help`)", add_help=False)
    return p


def _err(msg: str) -> None:
    print(f"affectvlm: {printable(msg)}", file=sys.stderr)


MAX_FRAME_NOTES = 10  # flagged face frames said one by one; the rest are counted


class _FrameNotes:
    """Says flagged face frames (predict and render): every one that took its set's frame, the first
    :data:`MAX_FRAME_NOTES` of the others, then one line that counts the rest."""

    def __init__(self) -> None:
        self.flagged = 0  # not counting those that took their set's frame: each of those is said

    def add(self, source: str, up: object, front: object, confidence: object, from_set: bool = False) -> None:
        if from_set:
            _err(f"{source}: face frame uncertain (confidence {confidence}): took the set's (up {up}, front {front}), "
                 "which most of its scans read; `affectvlm render` of this file alone shows its own; check it or "
                 "pass --up/--front")
            return
        self.flagged += 1
        if self.flagged <= MAX_FRAME_NOTES:
            _err(f"{source}: face frame uncertain (up {up}, front {front}, confidence {confidence}); "
                 "check it or pass --up/--front")

    def close(self) -> None:
        if self.flagged > MAX_FRAME_NOTES:
            _err(f"... and {self.flagged - MAX_FRAME_NOTES} more flagged face frames ({self.flagged} in all; "
                 "orientation_flagged on their rows)")


def cmd_predict(args: argparse.Namespace) -> int:
    """Score the inputs; under torchrun or SLURM each rank scores its share and rank 0 writes the one file."""
    from affectvlm.adapt import adapt_for
    from affectvlm.model import load_model
    from affectvlm.model.devices import resolve_device
    from affectvlm.predict import format_table, predict, rows_to_csv, rows_to_json, write_rows
    from affectvlm.results import flagged_frame
    from affectvlm.prior import lean_hint, match_rows, parse_prior, summarise
    from affectvlm.reference import match_neutral, resolve_neutral
    from affectvlm.prompts import parse_classes
    from affectvlm.render.settings import parse_views
    from affectvlm.subjects import centre_rows, neutral_rows, resolve_subject_mean, training_logits
    from affectvlm.shard import predict_sharded, shard_from_env

    try:  # the options alone: every rank of a torchrun/SLURM run meets these alike (said once, affectvlm.shard)
        if args.out and Path(args.out).suffix.lower() not in (".csv", ".json"):
            raise ConfigError(f"--out {args.out}: must end in .csv or .json")
        if args.out and (problem := out_problem(args.out)):
            raise ConfigError(f"--out {args.out}: {problem}")  # now, not after the scoring
        views = parse_views(args.views) if args.views else None
        shard = shard_from_env()
        if shard is not None and not args.out:
            raise ConfigError(f"{shard.world} processes (torchrun/SLURM) need --out: rank 0 writes the merged file")
    except AffectVLMError as e:
        e.shared = True  # type: ignore[attr-defined]
        raise
    device = resolve_device(args.device, local_rank=shard.local_rank if shard else None)
    model = load_model(args.model, device=device, classes=parse_classes(args.classes), prompts=args.prompts)
    if args.prior is None and args.prior_by != "set":
        raise ConfigError(f"--prior-by {args.prior_by} needs --prior SPEC (the balance to match)")
    prior = parse_prior(args.prior, model.classes) if args.prior is not None else None
    neutral, neutral_note = resolve_neutral(args.neutral if args.neutral is not None
                                            else ("none" if args.prior else "auto"), model)  # checks the pattern
    adapt = args.adapt or ("none" if args.prior else "auto")
    subject_mean, subject_note = resolve_subject_mean(args.subject_mean or ("none" if args.prior else "auto"), model)
    if not model.provenance.get("trained", True) and (shard is None or shard.rank == 0):
        _err(f"warning: model {model.spec!r} is untrained (random init): scores are meaningless")
    if views and not args.no_mirror and (shard is None or shard.rank == 0):
        from affectvlm.render.mirror import mirror_permutation

        if mirror_permutation(views) is None:
            _err(f"note: --views {args.views} has a yaw without its mirror (-yaw at the same pitch): scans are scored "
                 "as rendered, not averaged with their mirror images")
    progress = not args.no_progress and sys.stderr.isatty() and (shard is None or shard.rank == 0)

    notes = _FrameNotes()

    def on_row(row: dict) -> None:
        if row.get("error"):
            frame, error = row.get("frame"), str(row["error"])
            where = row["file"] + (" (sequence)" if frame == "sequence" else "" if frame in ("", None)
                                   or error.startswith(f"frame {frame}") else f" (frame {frame})")
            _err(f"{where}: {error}")
        elif flagged_frame(row):
            notes.add(row["file"], row.get("orientation_up"), row.get("orientation_front"),
                      row.get("orientation_confidence"), row.get("orientation_source") == "set")

    kw = dict(views=args.views, frames=args.frames, every=args.every, batch_size=args.batch_size, up=args.up,
              front=args.front, pooling=args.pooling, workers=args.workers, precision=args.precision, fps=args.fps,
              mirror=not args.no_mirror)
    def adapted(m: object) -> object:
        """The model to score with (``--adapt``): decided on a sample of the inputs, alike on every rank."""
        adaptation = adapt_for(m, args.inputs, adapt, **kw)
        if shard is None or shard.rank == 0:
            if adaptation.adapted:
                _err(f"--adapt {adapt}: {adaptation.text()}; --adapt none scores with the trained statistics")
            elif adapt == "on" or (adaptation.check is not None and adaptation.check.on_spread):
                _err(f"{'warning: ' if adapt == 'on' else ''}--adapt {adapt}: {adaptation.text()}")
        return adaptation.model

    if shard is not None:
        rows = predict_sharded(args.inputs, model, args.out, shard, landmarks=args.landmarks, progress=progress,
                               on_row=on_row, prepare_model=adapted, **kw)
        if shard.rank != 0:
            return 0  # rank 0 reports; a non-zero exit here would make torchrun stop the others
    else:
        rows = predict(args.inputs, adapted(model), progress=progress, on_row=on_row, **kw)
    notes.close()
    if seqs := [r["file"] for r in rows if r.get("frame") == "sequence"]:
        shown = ", ".join(seqs[:3]) + (f" and {len(seqs) - 3} more" if len(seqs) > 3 else "")
        _err(f"note: {len(seqs)} {'input' if len(seqs) == 1 else 'inputs'} read as 4D "
             f"{'sequence' if len(seqs) == 1 else 'sequences'} (a folder or zip of meshes whose names differ only by a "
             f"number): {shown}; give the files themselves to score them as separate scans")
    centred = centre_rows(rows, model.classes, training_logits(model), subject_mean)
    if centred.rescored:
        _err(f"--subject-mean {subject_mean}: {centred.text()}; --subject-mean none scores each input alone")
    elif subject_note and centre_rows([dict(r) for r in rows], model.classes).rescored:
        _err(f"--subject-mean auto: {subject_note}")
    ref = match_neutral(neutral_rows(rows, centred, neutral), model.classes, neutral)
    if neutral_note and match_neutral([dict(r) for r in rows], model.classes, "auto").rescored:
        _err(f"--neutral auto: {neutral_note}")
    if ref.rescored:
        _err(f"--neutral {neutral}: {ref.text(neutral)}; --neutral none scores each scan alone")
    elif neutral.lower() not in ("auto", "none"):
        _err(f"warning: --neutral {neutral}: no scan's name matches it beside other scans; all are as scored")
    if prior is not None:
        for note in summarise(match_rows(rows, model.classes, prior, by=args.prior_by), args.prior_by):
            _err(("warning: " if note.warning else "") + f"--prior {args.prior}"
                 + (" by folder: " if args.prior_by == "folder" else ": ") + note.text)
    elif (hint := lean_hint(rows, model.classes)) is not None:
        _err("note: " + hint.text)
    if args.out:
        if shard is None or prior is not None or ref.rescored or centred.rescored:
            write_rows(rows, args.out, landmarks=args.landmarks)
        n_err = sum(1 for r in rows if r["error"])
        print(f"wrote {len(rows)} row{'' if len(rows) == 1 else 's'} to {args.out}" + (f" ({n_err} with errors)" if n_err else ""),
              file=sys.stderr)
    elif args.format == "json":
        sys.stdout.write(rows_to_json(rows))
    elif args.format == "csv":
        sys.stdout.write(rows_to_csv(rows, landmarks=args.landmarks))
    else:
        sys.stdout.write(format_table(rows, model.classes))
    return 1 if any(r["error"] for r in rows) else 0


def cmd_render(args: argparse.Namespace) -> int:
    from affectvlm.inputs import expand
    from affectvlm.io import MESH_EXTENSIONS, load_mesh
    from affectvlm.limits import default_limits
    from affectvlm.mesh import Mesh, MeshSequence
    from affectvlm.model.devices import resolve_device
    from affectvlm.predict import orient_scan, orient_sequence, sample_set_frame
    from affectvlm.render import MAPS, RenderSettings, parse_views, render_maps, save_views

    views = parse_views(args.views)
    device = resolve_device(args.device)
    maps = tuple(m.strip() for m in args.maps.split(",") if m.strip())
    bad = [m for m in maps if m not in MAPS]
    if bad or not maps:
        raise ConfigError(f"--maps {args.maps!r}: choose from {', '.join(MAPS)}")
    if problem := out_problem(args.out, folder=True):
        raise ConfigError(f"--out {args.out}: {problem}")
    src = Path(args.input)
    if not src.exists():
        raise ConfigError(f"{src}: file not found")
    written, failed, notes = [], 0, _FrameNotes()
    given = RenderSettings(up=args.up, front=args.front)  # the frame as predict finds it (no crop, no cap)
    if src.is_dir() or src.suffix.lower() == ".zip":  # read as predict reads it: scans, sequences, errors
        todo: list[tuple[Mesh, str, str | None, str | None]] = []
        taken: set[str] = set()
        for item in expand([src], limits=default_limits(), frames=args.frames, every=args.every,
                           texture=not args.no_texture):
            try:
                if item.kind == "error":
                    raise InputError(item.source, item.error)
                got = item.load()
            except AffectVLMError as e:
                _err(str(e))
                failed += 1
                continue
            name = Path(item.source.replace(":", "/")).name  # a file, a folder, a zip or a zip's member folder
            base = Path(name).stem if Path(name).suffix.lower() in (*MESH_EXTENSIONS, ".zip") else name
            ends = [f"_f{fid:04d}" for fid in got.frame_ids] if isinstance(got, MeshSequence) else [""]
            stem = _unique_stem(re.sub(r"[^\w.-]+", "_", base), taken, ends)
            if isinstance(got, MeshSequence):  # one face frame for all frames, as predict finds it
                got, frame_settings, frame = orient_sequence(got, given)
                if frame is not None and frame.flagged:
                    notes.add(item.source, frame.up, frame.front, frame.confidence)
                todo += [(m, f"{stem}_f{fid:04d}", frame_settings.up, frame_settings.front)
                         for m, fid in zip(got.frames, got.frame_ids)]
            else:
                todo.append((got, stem, args.up, args.front))
    else:
        todo = [(load_mesh(src), src.stem, args.up, args.front)]
    # a folder's scans share its frame where predict's would (affectvlm.setframe): the same frame as predict's
    set_frame = sample_set_frame([lambda m=m: m for m, _, up, front in todo if up is None or front is None],
                                 given) if len(todo) > 1 else None
    for mesh, s, up, front in todo:
        if mesh.meta.get("load_error"):  # a frame that could not be read: said, and the others rendered
            _err(f"{mesh.source}: {mesh.meta['load_error']}")
            failed += 1
            continue
        for warning in mesh.meta.get("warnings") or () if not args.no_texture else ():
            _err(f"note: {mesh.source}: {warning}")  # a missing texture rendered grey without a word
        if up is None or front is None:  # found here, so that a flagged frame is said as predict says it
            framed = orient_scan(mesh, given, set_frame)
            frame = framed.frame
            if frame is not None and frame.flagged:
                notes.add(mesh.source, frame.up, frame.front, frame.confidence, frame.source == "set")
            mesh, up, front = framed.mesh, "+y", "+z"
        out = render_maps([mesh], views, args.size, texture=not args.no_texture, device=device, maps=maps,
                          up=up, front=front)
        for name, img in out.items():
            stem = f"{s}_{name}" if len(maps) > 1 or name != "shade" else s
            try:
                written += save_views(img[0], args.out, stem)
            except OSError as e:  # a name too long for the file system, a folder that went away, a full disk
                raise ConfigError(f"{args.out}: cannot write the images of {mesh.source} "
                                  f"({e.strerror or e}; {len(written)} written)") from None
    notes.close()
    print(f"wrote {len(written)} images to {args.out}", file=sys.stderr)
    return 1 if failed else 0


def _unique_stem(stem: str, taken: set[str], ends: Sequence[str] = ("",)) -> str:
    """``stem``, or ``stem_2``, ``stem_3``… when a name it would write (``stem`` + each of ``ends``: a sequence's
    ``_f0000``...) is one an earlier input took (a scan named ``seq_f0000`` beside a sequence ``seq``): no image
    is overwritten."""
    out, k = stem, 2
    while any(out + e in taken for e in ends):
        out, k = f"{stem}_{k}", k + 1
    taken.update(out + e for e in ends)
    return out


def cmd_models(args: argparse.Namespace) -> int:
    import json

    from affectvlm.model import caches
    from affectvlm.model.catalog import format_table, model_catalog

    entries = [e for e in model_catalog() if e.offline or not args.available]
    if args.json:
        sys.stdout.write(json.dumps([e.to_dict() for e in entries], indent=1) + "\n")
    else:
        sys.stdout.write(format_table(entries))
        print(f"downloads go to {caches.where_text()}; `affectvlm download SPEC` fetches ahead", file=sys.stderr)
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from affectvlm.model.catalog import download

    failed = 0
    for text in args.specs:
        try:
            done = download(text, progress=not args.no_progress)
        except AffectVLMError as e:
            _err(f"error: {e}")
            failed += 1
            continue
        what = "downloaded" if done.fetched else "already here"
        print(f"{done.spec}: {what}" + (f" ({done.paths[-1]})" if done.paths else " (nothing to fetch)"),
              file=sys.stderr)
    return 2 if failed else 0


_COMMANDS = {"predict": cmd_predict, "render": cmd_render, "models": cmd_models, "download": cmd_download}


def _forward(command: str, argv: list[str]) -> int:
    import importlib

    module = importlib.import_module(_FORWARDED[command][0])
    rc = module.main(argv)
    return int(rc or 0)


def _unknown(parser: argparse.ArgumentParser, command: str | None, extra: Sequence[str]) -> None:
    """Exit 2 naming the arguments ``command`` does not take, with the nearest option it does."""
    import difflib

    sub = next((a.choices[command] for a in parser._actions if isinstance(a, argparse._SubParsersAction)
                and command in a.choices), parser)
    options = [o for a in sub._actions for o in a.option_strings]
    hints = [f"{x} (did you mean {close[0]}?)" if (close := difflib.get_close_matches(x.split("=")[0], options, n=1))
             else x for x in extra]
    sub.error(f"unrecognized arguments: {' '.join(hints)}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    if argv[:1] == ["predict"]:
        # before torch starts OpenMP: idle OpenMP threads sleep instead of spinning, so predict's worker
        # threads and other processes on the cores are not starved (bench/bench_predict.py --throughput)
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        if argv and argv[0] in _FORWARDED:
            return _forward(argv[0], argv[1:])
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra:  # said by the subcommand's own parser (its usage, not the top level's), with a suggestion
            _unknown(parser, args.command, extra)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        return _COMMANDS[args.command](args)
    except AffectVLMError as e:
        from affectvlm.shard import error_line

        # under torchrun/SLURM: the options' errors once; a rank's own error with its rank (rank 0 also says another
        # rank's failure from its part, when it gets that far)
        if (line := error_line(f"error: {e}", alike=getattr(e, "shared", False))) is not None:
            _err(line)
        return 2
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:  # `affectvlm predict ... | head`
        return 0
