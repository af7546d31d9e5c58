"""Training configuration (the typed contract between the app, which validates and launches, and the trainer):
defaults < YAML file (``--config``) < command-line options.

The defaults fine-tune the embedded default model (``--model default``) with ``ce`` + ``clip`` on a
subject-independent train / val / test split, so ``affectvlm train --data D --out R`` learns without
further options. The resolved configuration is written to ``RUN_DIR/config.yaml`` and reloaded when the run
is resumed. :meth:`TrainConfig.to_argv` turns a validated configuration back into the trainer's arguments.

Resume (``--resume auto``, the default): a run folder that holds a complete checkpoint is continued from it
(its ``config.yaml`` under the command line's options), so a torchrun restart or a SLURM requeue running the
same command picks up where the job stopped. ``--resume`` (= ``yes``) continues whatever the folder holds;
``--no-resume`` refuses a folder that already holds checkpoints instead of overwriting them.
"""
from __future__ import annotations

import argparse
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import UnionType
from typing import Any, Sequence, Union, get_args, get_origin, get_type_hints

import yaml

from affectvlm.cli import CACHE_HELP, DEVICE_HELP, allow_signed_values
from affectvlm.datasets import LAYOUT_CHOICES
from affectvlm.errors import ConfigError
from affectvlm.fileio import atomic_write_text
from affectvlm.holes import check_fill_holes
from affectvlm.runfolder import RunFolder, list_checkpoints
from affectvlm import yamltext


LOSS_NAMES = ("mc", "mt", "clip", "ce", "ces")


def parse_loss_weights(spec: str | dict | None) -> dict[str, float]:
    """``"mc=1,mt=1,clip=1,ce=0"`` -> dict; names not given get weight 0."""
    if spec is None or spec == "":
        spec = "mc=1,mt=1,clip=1,ce=0"
    if isinstance(spec, dict):
        items = list(spec.items())
    else:
        items = []
        for part in str(spec).split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise ConfigError(f"--losses: {part!r} is not NAME=WEIGHT")
            k, v = part.split("=", 1)
            items.append((k, v))
    out = {k: 0.0 for k in LOSS_NAMES}
    for k, v in items:
        k = str(k).strip()
        if k not in LOSS_NAMES:
            raise ConfigError(f"--losses: unknown loss {k!r}; choose from {', '.join(LOSS_NAMES)}")
        try:
            w = float(v)
        except ValueError:
            raise ConfigError(f"--losses: weight of {k} is not a number: {v!r}") from None
        if not math.isfinite(w) or w < 0:
            raise ConfigError(f"--losses: weight of {k} must be finite and >= 0")
        out[k] = w
    if not any(out.values()):
        raise ConfigError("--losses: at least one loss needs a weight > 0")
    return out


REPORTERS = ("tensorboard", "wandb")


def parse_report_to(text: str | Sequence[str] | None) -> list[str]:
    """``"tensorboard,wandb"`` -> ``["tensorboard", "wandb"]``; ``none`` or empty -> []."""
    names = text.split(",") if isinstance(text, str) else list(text or [])
    names = [n.strip().lower() for n in names if n.strip() and n.strip().lower() != "none"]
    bad = [n for n in names if n not in REPORTERS]
    if bad:
        raise ConfigError(f"--report-to: unknown logger(s) {', '.join(bad)} (choose from {', '.join(REPORTERS)})")
    return list(dict.fromkeys(names))


@dataclass
class TrainConfig:
    data: str = ""
    layout: str = "auto"  # auto: from the data's names (affectvlm.datasets.detect_layout)
    out: str = ""
    # start point: the embedded default checkpoint (weights/affectvlm-default/, its render settings too);
    # any load_model spec works, e.g. an open_clip arch name for random init ("AffectVLM-Tiny-RN")
    model: str = "default"
    epochs: int = 36
    batch_size: int = 16
    lr: float = 5e-4
    lr_text: float | None = None
    lr_vision: float | None = None
    lr_head: float | None = None
    wd: float = 0.05
    warmup: int = 30  # optimizer steps
    accum: int = 1
    clip_grad: float = 1.0
    amp: bool = False
    losses: str = "ce=1,clip=1"
    margin_init: float = 0.3
    margin_min: float = 0.05
    margin_max: float = 0.8
    loss_center: bool = True  # centre view embeddings on the batch mean in mc / mt (False: the plain formulas)
    label_smoothing: float = 0.0  # of the ce / ces targets (torch's cross_entropy label_smoothing)
    freeze: str = "none"  # text | vision | none
    unlock_last: int = 0  # with --freeze: leave the last N blocks of the frozen tower trainable
    views: str | None = None  # e.g. "0,-30,30"; default: the model's render settings
    image_size: int | None = None  # render size; default: the model's, at least train.MIN_TRAIN_RENDER (supersampled)
    input_size: str = "auto"  # model: renders resized to the tower's size | render: taken as rendered | auto: render
    #                           when larger than the tower's size and the tower can (a ModifiedResNet), else model
    texture: bool | None = None  # render with the scan's texture; default: the model's render settings
    render_map: str | None = None  # shade | normal | depth | lights images; default: the model's render settings
    render_crop: bool | None = None  # cut the face region around the landmarks; default: the model's
    fill_holes: float | None = None  # close scan holes up to this fraction of the face's radius; default: the model's
    fold: int = 0
    folds: int = 5
    split_seed: int = 0
    split: str = "auto"  # auto (a manifest's own split column where every row has one, else kfold) | kfold | manifest
    val_fraction: float = 0.15  # share of the non-test subjects held out for model selection (0 = none)
    intensities: list[int] | None = None
    include_neutral: bool = True
    classes: list[str] | None = None
    frames_per_sequence: int = 5
    workers: int = 0
    seed: int = 0
    batch_by: str = ""  # "" = batches drawn from every sample; a Sample field (face_model...): one value per batch
    resume: str = "auto"  # auto | yes | no (see the module docstring)
    dry_run: bool = False  # read the data and the model, print the plan as JSON, train nothing and write nothing
    cache_dir: str | None = None  # default: $AFFECTVLM_CACHE/renders, else ~/.cache/affectvlm/renders
    # augmentation (see affectvlm/train/augment.py)
    aug: bool = True
    aug_flip: float = 0.5
    aug_rotate: float = 8.0
    aug_scale: float = 0.1
    aug_shift: float = 0.05
    aug_shade: float = 0.15
    aug_swap: float = 0.1
    aug_erase: float = 0.0
    angle_jitter: float = 0.0  # degrees; > 0 renders extra yaw angles into the cache
    prompt_aug: bool = True
    eval_every: int = 1
    proto_eval: bool = False  # also report nearest-class-centroid accuracy (train-set embeddings)
    # failure detection (see affectvlm/train/train.py: CollapseMonitor)
    collapse_spread: float = 0.01  # embedding spread below this counts as collapsed (0 = off)
    collapse_steps: int = 20  # ... for this many consecutive optimizer steps
    collapse_grace: int = 100  # steps before the spread check starts (a random init starts collapsed)
    chance_epochs: int = 5  # stop when val accuracy stays at chance this many evaluations running (0 = off)
    tensorboard: bool = False  # same as report_to including "tensorboard"
    report_to: str = ""  # comma-separated: tensorboard, wandb
    progress: bool = True
    max_steps: int | None = None  # stop early (tests, benchmarks)
    device: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_argv(self) -> list[str]:
        """The trainer's command-line arguments for this configuration (options left at their default are
        omitted), so that ``resolve_config(cfg.to_argv())`` gives back an equal configuration."""
        if self.extra:
            raise ConfigError(f"extra options {sorted(self.extra)} have no command-line form")
        actions: dict[str, list[argparse.Action]] = {}
        for a in build_parser()._actions:
            if a.option_strings:
                actions.setdefault(a.dest, []).append(a)
        defaults = TrainConfig()
        argv: list[str] = []
        for f in fields(self):
            value, default = getattr(self, f.name), getattr(defaults, f.name)
            if f.name == "extra" or value == default:
                continue
            if f.name == "resume":
                argv.append("--no-resume" if value == "no" else f"--resume={value}")
                continue
            acts = actions[f.name]
            flag = next((a for a in acts if a.const is value and a.nargs == 0), None)
            if isinstance(value, bool) or value is None:
                if flag is None:
                    raise ConfigError(f"{f.name}={value!r} has no command-line form")
                argv.append(flag.option_strings[0])
                continue
            opt = next(a for a in acts if a.nargs != 0).option_strings[0]
            text = ",".join(str(x) for x in value) if isinstance(value, list) else (
                repr(value) if isinstance(value, float) else str(value))
            argv.append(f"{opt}={text}")  # one token: values may start with "-" ("-30,0,30")
        return argv


RESUME_MODES = ("auto", "yes", "no")
GROUP_FIELDS = ("face_model", "family", "subject")  # --batch-by: Sample fields a batch can be kept within
_CHOICES = {"layout": LAYOUT_CHOICES, "freeze": ("text", "vision", "none"), "split": ("auto", "kfold", "manifest"),
            "resume": RESUME_MODES, "input_size": ("auto", "model", "render"), "batch_by": ("",) + GROUP_FIELDS}
RENDER_MAPS = ("shade", "normal", "depth", "lights")  # render.settings.IMAGE_MAPS, without importing torch here


def _int_list(s: str) -> list[int]:
    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None


def _str_list(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def build_parser(prog: str = "affectvlm train") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Fine-tune AffectVLM on 3D/4D facial-expression data.",
                                argument_default=argparse.SUPPRESS, allow_abbrev=False)
    p.add_argument("--config", help="YAML file with any of the options below (command line wins)")
    p.add_argument("--data", help="dataset root (or manifest CSV)")
    p.add_argument("--layout", choices=LAYOUT_CHOICES,
                   help="how the data is laid out (default auto: from its names; a .csv is a manifest)")
    p.add_argument("--out", help="run folder")
    p.add_argument("--model", "--init", dest="model",
                   help="model to start from: 'default' (the embedded checkpoint, the default), a checkpoint "
                        "or run folder, or an open_clip arch name for random init (e.g. AffectVLM-Tiny-RN)")
    p.add_argument("--epochs", type=int, help=f"passes over the training subjects ({_d('epochs')})")
    p.add_argument("--batch-size", type=int, help=f"global batch size, split over the ranks ({_d('batch_size')})")
    p.add_argument("--lr", type=float, help=f"peak learning rate, AdamW with warm-up then cosine decay ({_d('lr')})")
    p.add_argument("--lr-text", type=float, help="learning rate of the text tower (default: --lr)")
    p.add_argument("--lr-vision", type=float, help="learning rate of the image tower (default: --lr)")
    p.add_argument("--lr-head", type=float,
                   help="learning rate of the logit scale and bias and of the loss's own parameters (the margin) "
                        "(default: --lr)")
    p.add_argument("--wd", type=float, help=f"AdamW weight decay ({_d('wd')})")
    p.add_argument("--warmup", type=int, help=f"warm-up optimizer steps before the cosine decay ({_d('warmup')})")
    p.add_argument("--accum", type=int, help=f"batches accumulated per optimizer step ({_d('accum')})")
    p.add_argument("--clip-grad", type=float, help=f"max gradient norm, 0 = off ({_d('clip_grad')})")
    p.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    p.add_argument("--no-amp", dest="amp", action="store_false", help="full precision (the default)")
    p.add_argument("--losses", help=f"loss weights, e.g. mc=1,mt=1,clip=1 ({_d('losses')})")
    p.add_argument("--margin-init", type=float,
                   help=f"starting value of the learnable margin of mc / mt ({_d('margin_init')})")
    p.add_argument("--margin-min", type=float, help=f"the learnable margin stays at or above this ({_d('margin_min')})")
    p.add_argument("--margin-max", type=float, help=f"... and at or below this ({_d('margin_max')})")
    p.add_argument("--no-loss-center", dest="loss_center", action="store_false",
                   help="plain mc / mt without batch centring (they can collapse from a random init)")
    p.add_argument("--loss-center", dest="loss_center", action="store_true",
                   help="mc / mt centred on the batch mean (the default; undoes a run's saved --no-loss-center)")
    p.add_argument("--label-smoothing", type=float,
                   help="mix the one-hot ce / ces targets with a uniform one: (1 - S) one-hot + S / classes (0 = off)")
    p.add_argument("--freeze", choices=_CHOICES["freeze"], help=f"tower to keep fixed ({_d('freeze')})")
    p.add_argument("--unlock-last", type=int,
                   help="with --freeze: leave the frozen tower's last N blocks trainable (0)")
    allow_signed_values(p).add_argument("--views", help='view angles, e.g. "-30,0,30" (yaw) or "0:10,30:0" (yaw:pitch)')
    p.add_argument("--image-size", type=int,
                   help="render size in px (default: the model's, at least 96; the model resizes to its input)")
    p.add_argument("--input-size", choices=_CHOICES["input_size"],
                   help="model: the renders are resized to the image tower's input size; render: the tower takes "
                        "them at the render size (a ModifiedResNet's attention-pool grid is interpolated); auto (the "
                        "default): render when the renders are larger than the tower's input and it can take them")
    p.add_argument("--render-map", choices=RENDER_MAPS,
                   help="what the views show: headlight shading, camera-space normals, depth, or shading under three "
                        "coloured lights (lights) (default: the model's)")
    p.add_argument("--crop", dest="render_crop", action="store_true",
                   help="render only the face region around the detected landmarks (default: the model's)")
    p.add_argument("--no-crop", dest="render_crop", action="store_false",
                   help="render the whole scan")
    p.add_argument("--fill-holes", type=float, metavar="SIZE",
                   help="close the scans' holes up to SIZE (half their bounding box's diagonal, as a fraction of the "
                        "face's radius; 0.08 closes scanner drop-outs, not the eyes or mouth) before rendering; "
                        "0: never (default: the model's)")
    p.add_argument("--texture", dest="texture", action="store_true",
                   help="render with the scans' textures (default: the model's render settings)")
    p.add_argument("--no-texture", dest="texture", action="store_false",
                   help="render shaded geometry only (ignore textures)")
    p.add_argument("--fold", type=int, help=f"which subject fold is the test set, 0 to --folds - 1 ({_d('fold')})")
    p.add_argument("--folds", type=int, help=f"subject folds for --split kfold ({_d('folds')})")
    p.add_argument("--split-seed", type=int, help=f"seed of the subject shuffle behind the folds ({_d('split_seed')})")
    p.add_argument("--split", choices=_CHOICES["split"],
                   help="test subjects: auto (a manifest's own train/val/test column when every row has one, "
                        "else kfold), kfold (--folds/--fold) or manifest")
    p.add_argument("--val-fraction", type=float,
                   help="share of the non-test subjects used for validation / best-model selection (0.15)")
    p.add_argument("--intensities", type=_int_list, help="keep only these intensity levels, e.g. 3,4 (default: all)")
    p.add_argument("--no-neutral", dest="include_neutral", action="store_false", help="leave neutral scans out")
    p.add_argument("--neutral", dest="include_neutral", action="store_true", help="train on neutral scans (default)")
    p.add_argument("--classes", type=_str_list, help="keep only these emotions, e.g. happiness,sadness (default: all)")
    p.add_argument("--frames-per-sequence", type=int,
                   help="frames a 4D sequence contributes, evenly spaced over its middle 30-70 %% (its apex in "
                        f"BU-4DFE's neutral-apex-neutral order) ({_d('frames_per_sequence')})")
    p.add_argument("--workers", type=int, help=f"data-loader worker processes per rank ({_d('workers')}; at most 64)")
    p.add_argument("--seed", type=int, help=f"training seed: batches, augmentation, prompts ({_d('seed')})")
    p.add_argument("--batch-by", choices=_CHOICES["batch_by"],
                   help="every training batch holds one value of this manifest field, e.g. face_model (batch norm "
                        "then learns one face model at a time, as predict --adapt normalises a set)")
    p.add_argument("--resume", nargs="?", const="yes", choices=RESUME_MODES,
                   help="auto (default): continue when --out holds a complete checkpoint, else start; "
                        "yes (plain --resume): continue the run in --out with its saved config.yaml")
    p.add_argument("--no-resume", dest="resume", action="store_const", const="no",
                   help="never continue: refuse a --out that already holds checkpoints")
    p.add_argument("--dry-run", action="store_true",
                   help="split the data by subject, load the model and resolve its renders, print that plan as JSON "
                        "and stop: nothing is rendered, trained or written")
    p.add_argument("--cache-dir", help=CACHE_HELP)
    p.add_argument("--no-aug", dest="aug", action="store_false",
                   help="no image augmentation (the --aug-* values are kept)")
    p.add_argument("--aug", dest="aug", action="store_true", help="image augmentations on (the default)")
    for k, what in (("flip", "probability a sample is mirrored, views swapped left for right"),
                    ("rotate", "in-plane rotation of each view, up to this many degrees"),
                    ("scale", "zoom of each view by up to this fraction"),
                    ("shift", "shift of each view by up to this fraction of its width"),
                    ("shade", "gamma and brightness jitter of each view"),
                    ("swap", "probability a view is taken from another sample of the same emotion"),
                    ("erase", "probability a rectangle of each view is blanked")):
        p.add_argument(f"--aug-{k}", type=float, help=f"{what} ({_d('aug_' + k)})")
    p.add_argument("--angle-jitter", type=float,
                   help="also render each view this many degrees to either side and train on one of the three "
                        f"({_d('angle_jitter')}: off)")
    p.add_argument("--no-prompt-aug", dest="prompt_aug", action="store_false",
                   help="one fixed prompt per class instead of sampled templates and synonyms")
    p.add_argument("--prompt-aug", dest="prompt_aug", action="store_true", help="augmented prompts (the default)")
    p.add_argument("--eval-every", type=int, help=f"validate every N epochs, and after the last ({_d('eval_every')})")
    p.add_argument("--proto-eval", action="store_true",
                   help="also report val accuracy of nearest class centroids of the training embeddings")
    p.add_argument("--no-proto-eval", dest="proto_eval", action="store_false", help="(the default)")
    p.add_argument("--collapse-spread", type=float,
                   help="stop when the batch embedding spread stays below this (0.01; 0 = off)")
    p.add_argument("--collapse-steps", type=int, help="... for this many consecutive steps (20)")
    p.add_argument("--collapse-grace", type=int, help="steps before the spread check starts (100)")
    p.add_argument("--chance-epochs", type=int,
                   help="stop when validation accuracy stays at chance this many evaluations running (5; 0 = off)")
    p.add_argument("--tensorboard", action="store_true", help="same as --report-to tensorboard")
    p.add_argument("--report-to", help="loggers beside metrics.jsonl: tensorboard, wandb or both "
                                       "(comma-separated; WANDB_MODE=offline logs without a network)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar (logs only)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (default: none)")
    p.add_argument("--device", help=f"{DEVICE_HELP} ({_d('device')})")
    return p


def _d(name: str) -> str:
    """A TrainConfig default as help text shows it."""
    return "default " + str(getattr(TrainConfig, name))


def _fits(v: Any, t: Any) -> bool:
    """Whether a config value ``v`` has the field type ``t`` (an int is a float; a bool is neither)."""
    if t is Any:
        return True
    origin, args = get_origin(t), get_args(t)
    if origin in (Union, UnionType):
        return any(_fits(v, a) for a in args)
    if t is type(None):
        return v is None
    if origin is list:
        return isinstance(v, list) and all(_fits(x, args[0]) for x in v)
    if origin is dict:
        return isinstance(v, dict)
    if t is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if t is int:
        return isinstance(v, int) and not isinstance(v, bool)
    return isinstance(v, t) if isinstance(t, type) else True


def _check_types(cfg: TrainConfig) -> None:
    """One line for a config file's value of the wrong type (YAML reads ``1e-4`` as text: numbers are taken
    from text where a number is wanted)."""
    hints = get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        v, t = getattr(cfg, f.name), hints[f.name]
        if not _fits(v, t):
            if isinstance(v, str) and (_fits(1.0, t) or _fits(1, t)):
                try:
                    v = float(v) if _fits(1.5, t) else int(v)
                except ValueError:
                    pass
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and _fits("", t):
                v = str(v)  # e.g. views: 0
            setattr(cfg, f.name, v)
        if not _fits(v, t):
            want = " or ".join(getattr(a, "__name__", str(a)).replace("NoneType", "None")
                               for a in (get_args(t) if get_origin(t) in (Union, UnionType) else (t,)))
            raise ConfigError(f"{f.name} must be {want}, got {v!r}")


def _coerce(cfg: TrainConfig) -> TrainConfig:
    if isinstance(cfg.resume, bool):  # config files before --resume auto: true = yes, false = the default
        cfg.resume = "yes" if cfg.resume else "auto"
    if isinstance(cfg.intensities, (str, int)) and not isinstance(cfg.intensities, bool):
        try:
            cfg.intensities = _int_list(str(cfg.intensities))
        except argparse.ArgumentTypeError as e:
            raise ConfigError(f"intensities: {e}") from None
    if isinstance(cfg.classes, str):
        cfg.classes = _str_list(cfg.classes)
    _check_types(cfg)
    for k, choices in _CHOICES.items():
        if getattr(cfg, k) not in choices:
            raise ConfigError(f"{k} must be one of {', '.join(choices)} (got {getattr(cfg, k)!r})")
    for k in ("epochs", "batch_size", "accum", "eval_every"):
        if int(getattr(cfg, k)) < 1:
            raise ConfigError(f"{k} must be >= 1 (got {getattr(cfg, k)})")
    if int(cfg.folds) < 2:
        raise ConfigError(f"folds must be >= 2: one fold would hold every subject out (got {cfg.folds})")
    if not 0.0 <= float(cfg.val_fraction) < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1) (got {cfg.val_fraction})")
    for k in ("collapse_steps", "collapse_grace", "chance_epochs", "workers", "warmup", "unlock_last"):
        if int(getattr(cfg, k)) < 0:
            raise ConfigError(f"{k} must be >= 0 (got {getattr(cfg, k)})")
    bad = [f.name for f in fields(cfg) if isinstance(getattr(cfg, f.name), float) and not math.isfinite(getattr(cfg, f.name))]
    if bad:
        raise ConfigError(f"{bad[0]} must be a finite number (got {getattr(cfg, bad[0])})")
    if float(cfg.wd) < 0:
        raise ConfigError(f"wd must be >= 0 (got {cfg.wd})")
    if int(cfg.frames_per_sequence) < 1:
        raise ConfigError(f"frames_per_sequence must be >= 1 (got {cfg.frames_per_sequence})")
    if cfg.max_steps is not None and int(cfg.max_steps) < 0:
        raise ConfigError(f"max_steps must be >= 0 (got {cfg.max_steps}; 0 or none: no limit)")
    if not float(cfg.margin_min) < float(cfg.margin_init) < float(cfg.margin_max):
        raise ConfigError(f"margins must satisfy margin_min < margin_init < margin_max (got {cfg.margin_min}, "
                          f"{cfg.margin_init}, {cfg.margin_max})")
    if int(cfg.workers) > 64:  # each is a process holding a render cache's share of memory
        raise ConfigError(f"workers must be at most 64 (got {cfg.workers})")
    if cfg.lr <= 0:
        raise ConfigError(f"lr must be > 0 (got {cfg.lr})")
    for k in ("aug_flip", "aug_swap", "aug_erase"):
        if not 0.0 <= float(getattr(cfg, k)) <= 1.0:
            raise ConfigError(f"{k} is a probability, 0-1 (got {getattr(cfg, k)})")
    if not 0.0 <= float(cfg.label_smoothing) < 1.0:
        raise ConfigError(f"label_smoothing must be in [0, 1) (got {cfg.label_smoothing})")
    if cfg.fill_holes is not None:
        cfg.fill_holes = check_fill_holes(float(cfg.fill_holes))
    parse_loss_weights(cfg.losses)
    cfg.report_to = ",".join(parse_report_to(f"{cfg.report_to or ''},{'tensorboard' if cfg.tensorboard else ''}"))
    cfg.tensorboard = False
    if not cfg.data:
        raise ConfigError("--data is required")
    if not cfg.out:
        raise ConfigError("--out is required")
    return cfg


def load_yaml(path: str | os.PathLike) -> dict:
    try:
        data = yamltext.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a YAML text file (not UTF-8)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = " ".join(str(getattr(e, "problem", None) or e).split())
        raise ConfigError(f"{path}: invalid YAML{where} ({what})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of option: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def resolve_config(argv: Sequence[str] | None = None) -> TrainConfig:
    """Defaults, then ``--config`` YAML, then explicit command-line options; when the run folder is
    resumed (``--resume``, or ``auto`` with a complete checkpoint there) and no ``--config`` is given,
    its saved ``config.yaml`` is the base."""
    ns = vars(build_parser().parse_args(argv))
    known = {f.name for f in fields(TrainConfig)}
    merged: dict[str, Any] = {}
    out, mode = ns.get("out"), ns.get("resume", "auto")
    saved = RunFolder(out).config if out else None
    continuing = mode == "yes" or (mode == "auto" and out and list_checkpoints(out))
    if continuing and saved is None:
        raise ConfigError("--resume needs --out: the run folder to continue")
    saved_run = load_yaml(saved) if continuing and saved.exists() else None
    if mode == "yes" and saved_run is None and "config" not in ns and not ns.get("data"):
        raise ConfigError(f"--resume: no run to continue in {out} (no config.yaml there); give --data to start one")
    if saved_run is not None and "config" not in ns:
        merged.update(saved_run)
        merged.pop("resume", None)  # how to start is this launch's choice, not the saved run's
    if "config" in ns:
        merged.update(load_yaml(ns.pop("config")))
    merged.update(ns)
    unknown = set(merged) - known
    if unknown:
        raise ConfigError(f"unknown config option(s): {', '.join(sorted(unknown))}")
    cfg = _coerce(TrainConfig(**merged))
    cfg.data = os.path.abspath(cfg.data)  # config.yaml must name the data wherever the run is resumed or evaluated from
    if saved_run is not None:
        _refuse_other_split(cfg, _coerce(TrainConfig(**{**saved_run, "resume": cfg.resume})), out)
    return cfg


# what decides which subjects a run trains, selects and tests on: a continued run must keep them
SPLIT_KEYS = ("data", "layout", "fold", "folds", "split_seed", "split", "val_fraction", "intensities", "classes",
              "include_neutral")


# what shapes its model, its optimizer's step count or its images: a continued run must keep them too
RUN_KEYS = ("model", "batch_size", "accum", "losses", "freeze", "unlock_last", "views", "image_size", "input_size",
            "texture", "render_map", "render_crop", "fill_holes")


def _refuse_other_split(cfg: TrainConfig, saved: TrainConfig, out: str) -> None:
    """A run folder continued with other data or another split would test on subjects it trained on; with another
    model, batch layout or images it would load its checkpoint into another run (or skip steps)."""
    saved.data = os.path.abspath(saved.data) if saved.data else saved.data
    other = [k for k in SPLIT_KEYS if getattr(cfg, k) != getattr(saved, k)]
    if other:
        was = ", ".join(f"{k} {getattr(saved, k)!r}" for k in other)
        raise ConfigError(f"{out} holds a run with {was}; continuing it with other data or another split would test "
                          f"on subjects it trained on: choose another --out, or give the run's own options")
    same = {"losses": lambda a, b: parse_loss_weights(a) == parse_loss_weights(b)}
    other = [k for k in RUN_KEYS if getattr(cfg, k) is not None
             and not same.get(k, lambda a, b: a == b)(getattr(cfg, k), getattr(saved, k))]
    if other:
        was = ", ".join(f"{k} {getattr(saved, k)!r} (not {getattr(cfg, k)!r})" for k in other)
        raise ConfigError(f"{out} holds a run with {was}; a continued run keeps the model, batches and images it "
                          "began with: choose another --out for the new options, or drop them to continue")


def save_config(cfg: TrainConfig, path: str | os.PathLike) -> None:
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def check_out_apart(out: str | os.PathLike | None, data: str | os.PathLike | None, what: str = "--out") -> None:
    """ConfigError when the run folder ``out`` would be the data set's folder or hold it (checkpoints, logs and a
    ``status.json`` written among the scans); a run folder inside the data's folder is left alone."""
    if not out or not data:
        return
    d = Path(data).expanduser().resolve()
    root = d.parent if d.is_file() else d  # a manifest: its folder
    o = Path(out).expanduser().resolve()
    if o == root or o in root.parents:
        suggest = (root.parent if o == root else o) / "runs" / "run1"
        raise ConfigError(f"{what} {out}: the run folder would {'be' if o == root else 'hold'} the data set ({data}); "
                          f"give a folder of its own, e.g. {suggest}")
