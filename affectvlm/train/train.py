"""AffectVLM trainer: one plain script in the spirit of torchvision's references/classification/train.py.

    affectvlm train --data ROOT --layout bu3dfe --out runs/r1 [--config cfg.yaml] [options]
    torchrun --nproc_per_node 2 -m affectvlm.train --data ROOT --layout bu3dfe --out runs/r1

Flow (:func:`main` -> :func:`train` -> :func:`train_one_epoch` -> :func:`train_step`): config -> process group
-> dataset + subject-independent train / val / test split (splits.json) -> model -> render cache warmed (sharded
over ranks) -> resume from the run folder's newest complete checkpoint (``--resume auto``) -> DDP training with a
DistributedSampler (epoch-seeded), embedding-spread and chance-accuracy checks -> per-epoch validation,
metrics.jsonl, atomic checkpoint, best export (RUN_DIR/best, chosen on val subjects only) -> test evaluation of
best/ on subjects never used for selection -> status.json ``finished``. Every file of the run folder is written
through :mod:`affectvlm.runfolder`; SIGTERM / SIGUSR1 stop after a checkpoint (:mod:`affectvlm.train.stopping`).
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from affectvlm import runfolder
from affectvlm.errors import AffectVLMError, ConfigError
from affectvlm.runfolder import MetricKind, MetricRecord, RunFolder, Status, write_status
from affectvlm.shard import error_line, launch_from_env
from affectvlm.train import checkpointing
from affectvlm.train.augment import AugmentConfig, augment_views, sample_prompts
from affectvlm.trainconfig import TrainConfig, check_out_apart, parse_loss_weights, parse_report_to, resolve_config, save_config
from affectvlm.train.distributed import (DistInfo, barrier, broadcast_object, cleanup, init_distributed_mode,
                                         share_failure)
from affectvlm.train.losses import MultiLoss, gather_with_grad
from affectvlm.train.metrics import classification_metrics
from affectvlm.train.monitor import CollapseMonitor, TrainingFailed, chance_level, embedding_spread, failure_hint
from affectvlm.train.sampling import GroupedSampler
from affectvlm.train.splits import Splits, build_splits
from affectvlm.train.report import Reporter
from affectvlm.train.stopping import PREEMPTED_EXIT, STOPPED_EXIT, StopSignals, StopTraining, system_stop_signals

if TYPE_CHECKING:
    from affectvlm.render import RenderSettings

log = logging.getLogger("affectvlm.train")
MAX_CLASS_PROMPTS = 8  # class-prompt texts per class for the CE term and the eval classifier


# ----------------------------------------------------------------------------- data

class CachedViews(torch.utils.data.Dataset):
    """Samples -> (uint8 views (V', 3, H, W), label index, dataset index) read from the render cache."""

    def __init__(self, samples, class_index: dict[str, int], cache):
        self.samples, self.class_index, self.cache = list(samples), class_index, cache

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        s = self.samples[i]
        return torch.from_numpy(np.ascontiguousarray(self.cache.get(s.path))), self.class_index[s.label], i


# ----------------------------------------------------------------------------- model helpers

def clip_of(model: nn.Module) -> nn.Module:
    """The wrapped open_clip model."""
    for name in ("clip", "model", "clip_model"):
        m = getattr(model, name, None)
        if isinstance(m, nn.Module) and hasattr(m, "encode_text"):
            return m
    raise ConfigError("the AffectVLM model does not expose its open_clip model (.clip)")


def tokenizer_of(model: nn.Module):
    tok = getattr(model, "tokenizer", None)
    if tok is not None:
        return tok
    import open_clip

    name = getattr(model, "arch", None) or getattr(model, "model_name", None) or "ViT-B-32"
    return open_clip.get_tokenizer(name)


def param_groups(model: nn.Module, criterion: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Freeze/unlock towers and build AdamW groups (text / vision / head, each with and without decay)."""
    clip = clip_of(model)
    clip_ids = {id(p): n for n, p in clip.named_parameters()}

    def tower(name: str) -> str:
        return "vision" if name.startswith("visual.") else ("head" if name in ("logit_scale", "logit_bias") else "text")

    def block_index(name: str) -> int | None:
        parts = name.split(".")
        if "resblocks" in parts:
            return int(parts[parts.index("resblocks") + 1])
        return None

    def unlocked(name: str, t: str) -> bool:
        if cfg.unlock_last <= 0:
            return False
        prefix = "visual." if t == "vision" else ""
        blocks = [block_index(n) for n in clip_ids.values() if tower(n) == t and block_index(n) is not None]
        if not blocks:
            return False
        b = block_index(name)
        if b is not None:
            return b > max(blocks) - cfg.unlock_last
        # the layers after the last block (final norm, projection) come with the unlocked blocks
        tail = ("visual.ln_post", "visual.proj", "visual.head") if t == "vision" else ("ln_final", "text_projection")
        return name.startswith(prefix) and name.startswith(tail)

    groups: dict[tuple[str, bool], list] = {}
    for n, p in model.named_parameters():
        t = tower(clip_ids[id(p)]) if id(p) in clip_ids else "head"
        name = clip_ids.get(id(p), n)
        if cfg.freeze == t and not unlocked(name, t):
            p.requires_grad_(False)
        if not p.requires_grad:
            continue
        decay = p.ndim >= 2 and "embedding" not in name
        groups.setdefault((t, decay), []).append(p)
    for p in criterion.parameters():
        if p.requires_grad:
            groups.setdefault(("head", False), []).append(p)
    lrs = {"text": cfg.lr_text or cfg.lr, "vision": cfg.lr_vision or cfg.lr, "head": cfg.lr_head or cfg.lr}
    return [{"params": ps, "lr": lrs[t], "base_lr": lrs[t], "weight_decay": cfg.wd if decay else 0.0,
             "name": f"{t}{'' if decay else '_nodecay'}"} for (t, decay), ps in sorted(groups.items())]


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up then cosine decay to 0 (per optimizer step)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    prog = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, prog)))


class TrainStep(nn.Module):
    """Everything the loss needs in one forward, so DDP sees a single module call.

    ``subjects`` (the training samples' subject numbers) and ``sizes`` (each subject's number of training samples)
    keep, for the ``ces`` loss, a running mean of each subject's normalised fused embedding: each batch moves a
    subject's mean towards the mean of its scans in the batch by the share of the subject's samples they are, so it
    spans about an epoch's worth of the subject's scans. It starts at a subject's first batch and is not checkpointed
    (a resumed run starts it again)."""

    def __init__(self, model: nn.Module, criterion: MultiLoss, text_trainable: bool,
                 subjects: torch.Tensor | None = None, sizes: torch.Tensor | None = None):
        super().__init__()
        self.model, self.criterion = model, criterion
        self.text_trainable = text_trainable
        self._frozen_class_txt: torch.Tensor | None = None
        self.subject_ids = subjects
        self.subject_sizes = sizes
        self.subject_memory: torch.Tensor | None = None
        self.subject_seen: torch.Tensor | None = None

    @torch.no_grad()
    def subject_means(self, subjects: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Each row's subject mean before this batch (a subject's first batch: its mean in the batch), then the
        memory moved by the batch; ``z`` normalised fused embeddings (B, D), ``subjects`` (B,)."""
        if self.subject_sizes is None:
            raise ValueError("the ces loss needs the training samples' subjects")
        n = len(self.subject_sizes)
        if self.subject_memory is None:
            self.subject_memory = z.new_zeros(n, z.shape[1])
            self.subject_seen = torch.zeros(n, dtype=torch.bool, device=z.device)
        subjects = subjects.to(z.device)
        batch = {s: (subjects == s) for s in subjects.unique().tolist()}
        means = {s: z[rows].mean(0) for s, rows in batch.items()}
        for s, mean in means.items():
            if not self.subject_seen[s]:
                self.subject_memory[s], self.subject_seen[s] = mean, True
        out = self.subject_memory[subjects].clone()
        for s, mean in means.items():
            a = min(1.0, float(batch[s].sum()) / float(self.subject_sizes[s]))
            self.subject_memory[s] = (1 - a) * self.subject_memory[s] + a * mean
        return out

    def class_text(self, class_tokens: torch.Tensor, n_classes: int) -> torch.Tensor:
        clip = clip_of(self.model)
        if not self.text_trainable and self._frozen_class_txt is not None:
            return self._frozen_class_txt
        with torch.set_grad_enabled(self.text_trainable and torch.is_grad_enabled()):
            z = torch.nn.functional.normalize(clip.encode_text(class_tokens), dim=-1)
            z = torch.nn.functional.normalize(z.reshape(n_classes, -1, z.shape[-1]).mean(1), dim=-1)
        if not self.text_trainable:
            self._frozen_class_txt = z.detach()
        return z

    def forward(self, images, labels, tokens, class_tokens, n_classes: int, subjects: torch.Tensor | None = None):
        clip = clip_of(self.model)
        w = self.criterion.weights
        zv = self.model.encode_views(images)
        zi = self.model.fuse(zv)
        zt = clip.encode_text(tokens) if w.get("clip", 0) > 0 else None
        ct = self.class_text(class_tokens, n_classes) if w.get("ce", 0) > 0 or w.get("ces", 0) > 0 else None
        labels_all = gather_labels(labels)
        zv_all, zi_all = gather_with_grad(zv), gather_with_grad(zi)
        zt_all = gather_with_grad(zt) if zt is not None else None
        means = None
        if w.get("ces", 0) > 0:
            if subjects is None:
                raise ValueError("the ces loss needs each sample's subject")
            means = self.subject_means(gather_labels(subjects), torch.nn.functional.normalize(zi_all.detach(), dim=-1))
        total, terms = self.criterion(zv_all, zi_all, labels_all, zt_all, ct, clip.logit_scale.exp(), means)
        terms["spread"] = torch.tensor(embedding_spread(zi_all))
        return total, terms


def gather_labels(labels: torch.Tensor) -> torch.Tensor:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return labels
    out = [torch.empty_like(labels) for _ in range(dist.get_world_size())]
    dist.all_gather(out, labels.contiguous())
    return torch.cat(out)


# ----------------------------------------------------------------------------- evaluation

def _gather_rows(idxs: list, rows: list, info: DistInfo) -> list:
    """Rows from every rank ordered by dataset index, each index once (the sampler pads with repeats)."""
    if not info.distributed:
        return [r for _, r in sorted(zip(idxs, rows), key=lambda t: t[0])]
    box = [None] * info.world_size
    dist.all_gather_object(box, (idxs, rows))
    seen = {}
    for ii, rr in box:
        seen.update(zip(ii, rr))
    return [seen[k] for k in sorted(seen)]


@torch.no_grad()
def embed_loader(model: nn.Module, loader, views: Sequence[int], device: str, amp: bool = False):
    """(dataset indices, labels, fused embeddings, logits) over a loader, un-augmented: each entry's renders at
    the indices ``views`` (:attr:`RenderCache.scoring_index`)."""
    take = list(views)
    idxs, ys, zs, logits = [], [], [], []
    for x, y, i in loader:
        x = x[:, take].to(device, non_blocking=True).float().div_(255)
        with autocast(device, amp):
            fused, _ = model.embed(x)
            z, lg = fused.float(), model.logits_from_embedding(fused).float()
        idxs += i.tolist()
        ys += y.tolist()
        zs.append(z.cpu())
        logits.append(lg.cpu())
    return idxs, ys, torch.cat(zs) if zs else torch.empty(0), torch.cat(logits) if logits else torch.empty(0)


@torch.no_grad()
def embed_eval(model: nn.Module, loader, views: Sequence[int], device: str, amp: bool = False):
    """:func:`embed_loader` with ``model`` in eval mode, without gradients."""
    model.eval()
    return embed_loader(model, loader, views, device, amp)


def scored_rows(model: nn.Module, loader, views: Sequence[int], device: str, info: DistInfo,
                amp: bool = False, embedded: tuple | None = None) -> list[tuple[int, list[float]]]:
    """(label index, class probabilities) of every sample of the loader, in its order (gathered everywhere);
    ``embedded``: what :func:`embed_eval` already gave for it."""
    idxs, ys, _, lg = embedded if embedded is not None else embed_eval(model, loader, views, device, amp)
    return _gather_rows(idxs, list(zip(ys, torch.softmax(lg, -1).tolist())), info)


def scan_arrays(rows: Sequence[tuple[int, list[float]]], samples: Sequence, classes: Sequence[str]):
    """The scans of :func:`scored_rows` (``samples`` in the loader's order; frames of sequences left out) as
    (probabilities (N, C), label indices, subject ids)."""
    keep = [k for k, s in enumerate(samples) if s.frame_ids is None]
    return (np.array([rows[k][1] for k in keep]).reshape(len(keep), len(classes)), [rows[k][0] for k in keep],
            [samples[k].subject for k in keep])


# the levels a run's headline figure counts (BU-3DFE's two strongest, as its protocols report); the predict-time
# choices below are judged on them too when the validation subjects have them
PROTOCOL_LEVELS = (3, 4)


def at_protocol_levels(samples: Sequence) -> list[int]:
    """The indices of the samples at :data:`PROTOCOL_LEVELS`."""
    return [k for k, s in enumerate(samples) if s.intensity in PROTOCOL_LEVELS]


def protocol_scans(samples: Sequence) -> np.ndarray | None:
    """A mask over :func:`scan_arrays`' scans: those at :data:`PROTOCOL_LEVELS`; None (count every scan) when
    there are none."""
    levels = np.array([s.intensity in PROTOCOL_LEVELS for s in samples if s.frame_ids is None], bool)
    return levels if levels.any() else None


def rows_accuracy(rows: Sequence[tuple[int, list[float]]]) -> float:
    """The accuracy of :func:`scored_rows` (argmax, as :func:`evaluate_model` reads it)."""
    return sum(y == int(np.argmax(p)) for y, p in rows) / len(rows) if rows else float("nan")


def neutral_check(rows: Sequence[tuple[int, list[float]]], samples: Sequence, classes: Sequence[str]):
    """How the scans of :func:`scored_rows` (``samples``, in the loader's order; frames of sequences left out) read
    alone and against their subject's neutral scans, as ``affectvlm predict --neutral auto`` scores BU-3DFE's names
    (:func:`affectvlm.reference.check_neutral`)."""
    from affectvlm.reference import check_neutral

    return check_neutral(*scan_arrays(rows, samples, classes), classes, counted=protocol_scans(samples))


@torch.no_grad()
def evaluate_model(model: nn.Module, loader, classes: Sequence[str], views: Sequence[int], device: str,
                   info: DistInfo, amp: bool = False, proto_loader=None, samples: Sequence | None = None,
                   embedded: tuple | None = None) -> dict:
    """Accuracy/macro-F1/per-class/confusion on the loader (sharded over ranks, gathered everywhere), fusing the
    renders ``views`` picks (see :func:`embed_loader`; ``embedded``: what :func:`embed_eval` already gave for it).

    With ``proto_loader`` (the un-augmented training set) also ``proto_accuracy``: each test scan gets the
    class whose mean training embedding is nearest in cosine (a classifier that needs no text tower)."""
    model.eval()
    idxs, ys, z, lg = embedded if embedded is not None else embed_loader(model, loader, views, device, amp)
    rows = _gather_rows(idxs, [(y, int(p), zz.tolist()) for y, p, zz in zip(ys, lg.argmax(1).tolist(), z)], info)
    trues, preds = [r[0] for r in rows], [r[1] for r in rows]
    out = classification_metrics(trues, preds, list(classes))
    out["spread"] = round(embedding_spread(torch.tensor([r[2] for r in rows])), 6) if rows else float("nan")
    if samples is not None and len(samples) == len(rows):
        per: dict[str, dict] = {}
        for lvl in sorted({s.intensity for s in samples if s.intensity is not None}):
            ii = [k for k, s in enumerate(samples) if s.intensity == lvl]
            per[str(lvl)] = {"n": len(ii), "accuracy": sum(trues[k] == preds[k] for k in ii) / len(ii)}
        if per:
            out["per_intensity"] = per
            strong = at_protocol_levels(samples)
            if strong:
                out["accuracy_intensity_3_4"] = sum(trues[k] == preds[k] for k in strong) / len(strong)
    if proto_loader is not None:
        ti, ty, tz, _ = embed_loader(model, proto_loader, views, device, amp)
        trows = _gather_rows(ti, [(y, zz.tolist()) for y, zz in zip(ty, tz)], info)
        tzs = torch.nn.functional.normalize(torch.tensor([r[1] for r in trows]), dim=-1)
        tys = torch.tensor([r[0] for r in trows])
        cent = torch.stack([tzs[tys == c].mean(0) if (tys == c).any() else torch.zeros(tzs.shape[1])
                            for c in range(len(classes))])
        vz = torch.nn.functional.normalize(torch.tensor([r[2] for r in rows]), dim=-1)
        pp = (vz @ torch.nn.functional.normalize(cent, dim=-1).t()).argmax(1).tolist()
        out["proto_accuracy"] = classification_metrics(trues, pp, list(classes))["accuracy"]
    return out


def autocast(device: str, amp: bool):
    if amp and device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ----------------------------------------------------------------------------- run-folder I/O

def setup_logging(run_dir: Path, is_main: bool) -> None:
    """Rank 0 logs to ``train.log`` and stderr (the trainer's and the run-folder module's messages)."""
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    for logger in (log, logging.getLogger(runfolder.log.name)):
        logger.handlers.clear()
        logger.setLevel(logging.INFO)
        logger.propagate = False
        if not is_main:
            logger.addHandler(logging.NullHandler())
            continue
        fh = logging.FileHandler(RunFolder(run_dir).train_log, encoding="utf-8")
        fh.setFormatter(fmt)
        sh = logging.StreamHandler(sys.stderr)
        sh.setFormatter(fmt)
        logger.addHandler(fh)
        logger.addHandler(sh)


def export_best(model: nn.Module, run_dir: Path, extra: dict) -> None:
    from affectvlm.model import save_checkpoint

    tmp = run_dir / f".tmp-best-{os.getpid()}"
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    save_checkpoint(model, tmp, extra=extra)
    checkpointing.replace_dir(tmp, RunFolder(run_dir).best)


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint's ``train_state`` and restored on resume."""
    epoch: int = 0               # the epoch being trained
    step: int = 0                # optimizer steps completed
    best_acc: float = -1.0
    epoch_step: int = 0          # steps of ``epoch`` already done (> 0: resumed from a mid-epoch checkpoint)
    sums: dict[str, float] = field(default_factory=dict)  # the epoch's running sums of the loss terms
    n_seen: int = 0              # samples of the epoch so far


def save_progress(run_dir: Path, loop: "Loop", progress: Progress, meta_val: dict, *, mid_epoch: bool) -> None:
    """An atomic, resumable checkpoint of ``progress`` (rank 0). ``mid_epoch``: taken on a signal inside
    an epoch; resume then replays the epoch's remaining steps exactly."""
    train_state = {"optimizer": loop.optimizer.state_dict(), "epoch": progress.epoch, "step": progress.step,
                   "sampler": {"epoch": progress.epoch, "seed": loop.cfg.seed}, "rng": checkpointing.rng_state(),
                   "best_acc": progress.best_acc}
    if mid_epoch:
        train_state.update(epoch_step=progress.epoch_step, epoch_sums=dict(progress.sums), n_seen=progress.n_seen)
    checkpointing.save_run_checkpoint(run_dir, progress.epoch, model=loop.model, trainable=loop.step_mod.state_dict(),
                                      train_state=train_state,
                                      meta={"step": progress.step, "val": meta_val, "mid_epoch": mid_epoch,
                                            "model_extra": {"classes": loop.classes}})


def restore_progress(run_dir: Path, loop: "Loop", info: DistInfo) -> Progress:
    """The progress of the newest complete checkpoint in ``run_dir`` (loaded into the model, optimizer and
    RNG), or a fresh start. Metric records after the checkpoint are dropped (they are produced again)."""
    found = checkpointing.load_resume_checkpoint(run_dir)  # newest complete one; damaged ones skipped
    if found is None:
        if loop.cfg.resume == "yes" and info.is_main:
            log.info("%s holds no checkpoint yet: starting from the beginning", run_dir)
        return Progress()
    last, weights, state, _ = found
    try:
        missing, unexpected = loop.step_mod.load_state_dict(weights, strict=False)
        if unexpected or missing:
            raise ValueError(f"{missing[:3]} {unexpected[:3]}")
        loop.optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:  # a shape, a parameter group, a key of another model
        first = " ".join(str(e).split())[:200]
        raise ConfigError(f"{last}: the checkpoint does not fit this run's model and options ({first}); continue it "
                          "with the options it was started with (its config.yaml), or choose another --out") from None
    checkpointing.set_rng_state(state["rng"])
    epoch, step = int(state["epoch"]), int(state["step"])
    if int(state.get("epoch_step", 0)) > 0:  # a mid-epoch checkpoint: continue inside that epoch
        progress = Progress(epoch, step, float(state.get("best_acc", -1)), int(state["epoch_step"]),
                            {k: float(v) for k, v in state.get("epoch_sums", {}).items()}, int(state.get("n_seen", 0)))
    else:
        progress = Progress(epoch + 1, step, float(state.get("best_acc", -1)))
    if info.is_main:
        runfolder.truncate_metrics(run_dir, epoch, last_step=step if progress.epoch_step else None)
        log.info("resumed from %s (epoch %d, step %d%s)", last, epoch, step,
                 f", {progress.epoch_step} steps into the epoch" if progress.epoch_step else "")
    return progress


def check_batches(cfg: TrainConfig, n_train: int, world: int) -> int:
    """Each process's batch size; ConfigError when the batch does not divide over the processes or the training
    samples give no full optimizer step (a DistributedSampler gives each rank ceil(n / world) samples)."""
    local_bs = cfg.batch_size // world
    if local_bs < 1 or cfg.batch_size % world:
        raise ConfigError(f"--batch-size {cfg.batch_size} must be a multiple of the {world} processes")
    if n_train < cfg.batch_size * cfg.accum or (-(-n_train // world) // local_bs) // cfg.accum < 1:
        raise no_full_batch(n_train, cfg)  # on any number of ranks (their padded shares would repeat samples)
    return local_bs


def no_full_batch(n_train: int, cfg: TrainConfig) -> ConfigError:
    return ConfigError(f"{n_train} training samples give no full batch of {cfg.batch_size} x {cfg.accum}")


def check_writable(out: str) -> None:
    """The run folder, or the nearest folder above it that exists, can be written (said by a dry run too)."""
    p = Path(out).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    if not os.access(p, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: {p} is not writable")


def check_same_splits(run_dir: Path, splits: Splits) -> None:
    """A continued run must train, select and test on the subjects it began with: data that changed since (a
    subject folder added or removed) reshuffles the split and would test on subjects it trained on."""
    saved = runfolder.read_splits(run_dir)
    now = splits.record().subjects
    if saved is None or {k: sorted(v) for k, v in saved.subjects.items()} == {k: sorted(v) for k, v in now.items()}:
        return
    moved = sorted(s for k, subs in now.items() for s in subs if s not in saved.subjects.get(k, ()))
    raise ConfigError(f"{run_dir}: the data's subjects split differently from when the run began ({len(moved)} "
                      f"moved, e.g. {', '.join(moved[:3]) or 'none'}; subjects added or removed?); continuing would "
                      "test on subjects it trained on: restore the data, or choose another --out")


def refuse_existing_run(cfg: TrainConfig) -> None:
    """A run folder that is, or holds, the data set is refused (checkpoints, logs and a ``status.json`` would be
    written among the scans); ``--no-resume``: a run folder that already holds checkpoints is not started over."""
    check_out_apart(cfg.out, cfg.data)
    if cfg.resume != "no":
        return
    ck = RunFolder(cfg.out).checkpoints
    found = sorted(d.name for d in ck.iterdir() if runfolder.CHECKPOINT_NAME.match(d.name)) if ck.is_dir() else []
    if found:
        raise ConfigError(f"{cfg.out} already holds checkpoints ({found[-1]}); --no-resume does not start over "
                          f"in it: choose another --out, or drop --no-resume to continue the run")


# ----------------------------------------------------------------------------- the epoch loop

@dataclass
class Loop:
    """What every step needs, set up once by :func:`train`."""
    cfg: TrainConfig
    info: DistInfo
    run_dir: Path
    model: nn.Module
    step_mod: TrainStep
    ddp: nn.Module
    optimizer: torch.optim.Optimizer
    loader: torch.utils.data.DataLoader
    sampler: "torch.utils.data.DistributedSampler | GroupedSampler"
    train_samples: list
    classes: list[str]
    prompts: object
    tokenizer: object
    class_tokens: torch.Tensor
    views: tuple
    aug_cfg: AugmentConfig
    monitor: CollapseMonitor
    reporter: Reporter | None
    steps_per_epoch: int
    total_steps: int
    start_step: int = 0
    run_t0: float = field(default_factory=time.perf_counter)


def train_one_epoch(loop: Loop, progress: Progress, stop: StopSignals) -> bool:
    """Optimizer steps of ``progress.epoch`` from ``progress.epoch_step`` on, updating ``progress``.

    Returns False when it ended early on a stop signal (after the step every rank had reached)."""
    from tqdm import tqdm

    cfg, info = loop.cfg, loop.info
    epoch = progress.epoch
    loop.sampler.set_epoch(epoch)
    loop.ddp.train()
    ep_t0 = time.perf_counter()
    show_bar = info.is_main and cfg.progress and sys.stderr.isatty()
    bar = tqdm(total=loop.steps_per_epoch, initial=progress.epoch_step, desc=f"epoch {epoch + 1}/{cfg.epochs}",
               disable=not show_bar, leave=False)
    batches = iter(loop.loader)
    for _ in range(progress.epoch_step * cfg.accum):  # resumed mid-epoch: the sampler's order, batches done
        next(batches)
    try:
        while progress.epoch_step < loop.steps_per_epoch and progress.step < loop.total_steps:
            terms = train_step(loop, batches, progress)
            progress.step += 1
            progress.epoch_step += 1
            for k, v in terms.items():
                progress.sums[k] = progress.sums.get(k, 0.0) + v
            bar.update(1)
            bar.set_postfix(loss=f"{terms['loss']:.3f}")
            try:
                loop.monitor.check_step(progress.step, terms.get("spread", float("nan")))
            except TrainingFailed:
                if info.is_main:
                    runfolder.append_metric(loop.run_dir, {"kind": "train", "epoch": epoch, "step": progress.step,
                                                           **{k: round(v, 6) for k, v in terms.items()}})
                raise
            if info.is_main and (progress.step % 10 == 0 or progress.step == 1):
                write_step_record(loop, progress, terms, time.perf_counter() - ep_t0)
            if stop.agreed(info) is not None:
                return False
    finally:
        bar.close()
    return True


def train_step(loop: Loop, batches, progress: Progress) -> dict[str, float]:
    """One optimizer step over ``cfg.accum`` micro-batches; the loss terms, averaged over them."""
    cfg, info, device = loop.cfg, loop.info, loop.info.device
    f = lr_factor(progress.step, cfg.warmup, loop.total_steps)
    for g in loop.optimizer.param_groups:
        g["lr"] = g["base_lr"] * f
    loop.optimizer.zero_grad(set_to_none=True)
    terms_acc: dict[str, float] = {}
    for micro in range(cfg.accum):
        x, y, idx = next(batches)
        x = x.float().div_(255)
        x = augment_views(x, y, idx.tolist(), loop.views, loop.aug_cfg, epoch=progress.epoch, seed=cfg.seed,
                          step=progress.step, rank=info.rank)
        texts = sample_prompts(loop.prompts, loop.classes, [loop.train_samples[i] for i in idx.tolist()], y.tolist(),
                               idx.tolist(), epoch=progress.epoch, seed=cfg.seed, augment=cfg.prompt_aug)
        tokens = loop.tokenizer(texts).to(device)
        x, y = x.to(device, non_blocking=True), y.to(device)
        last_micro = micro == cfg.accum - 1 or not info.distributed
        with contextlib.nullcontext() if last_micro else loop.ddp.no_sync():
            with autocast(device, cfg.amp):
                total, terms = loop.ddp(x, y, tokens, loop.class_tokens, len(loop.classes),
                                        loop.step_mod.subject_ids[idx].to(device))
            (total / cfg.accum).backward()
        for k, v in terms.items():
            terms_acc[k] = terms_acc.get(k, 0.0) + float(v.detach()) / cfg.accum
        terms_acc["loss"] = terms_acc.get("loss", 0.0) + float(total.detach()) / cfg.accum
        progress.n_seen += x.shape[0] * info.world_size
    if cfg.clip_grad and cfg.clip_grad > 0:
        torch.nn.utils.clip_grad_norm_([p for g in loop.optimizer.param_groups for p in g["params"]], cfg.clip_grad)
    loop.optimizer.step()
    with torch.no_grad():
        clip_of(loop.model).logit_scale.clamp_(0, math.log(100))
    return terms_acc


def write_step_record(loop: Loop, progress: Progress, terms: dict[str, float], epoch_s: float) -> None:
    steps_here = max(progress.step - loop.start_step, 1)
    rec = MetricRecord(kind=MetricKind.TRAIN.value, epoch=progress.epoch, step=progress.step,
                       lr=loop.optimizer.param_groups[0]["lr"], loss=round(terms["loss"], 6),
                       samples_per_s=round(progress.n_seen / max(epoch_s, 1e-9), 3),
                       eta_s=round((time.perf_counter() - loop.run_t0) / steps_here
                                   * (loop.total_steps - progress.step), 1),
                       values={k: round(v, 6) for k, v in terms.items() if k != "loss"})
    runfolder.append_metric(loop.run_dir, rec)
    if loop.reporter:
        loop.reporter.scalars("train", {k: v for k, v in rec.to_json().items() if k not in ("epoch", "step")},
                              progress.step)


# ----------------------------------------------------------------------------- main

@dataclass
class RunPlan:
    """What a run will train: its subject splits, the model it starts from and the renders it sees."""
    cfg: TrainConfig
    splits: Splits
    model: nn.Module
    settings: RenderSettings
    prompts: object

    def describe(self) -> str:
        """One line of words: the model, the data and its splits, the renders."""
        from affectvlm.model import describe_provenance

        sp, st, subs = self.splits, self.settings, self.splits.subjects()
        pitches = (f", each also at pitch {', '.join(f'{p:+g}' for p in st.score_pitches)} (as scored)"
                   if st.score_pitches else "")
        return (f"model {self.cfg.model} ({describe_provenance(self.model.provenance)}); data ({sp.source}): "
                f"{len(sp.train)} train / {len(sp.val)} val / {len(sp.test)} test samples "
                f"({len(subs['train'])} / {len(subs['val'])} / {len(subs['test'])} subjects), classes {sp.classes}; "
                f"{len(st.views)} views at {st.size} px (the image tower takes {self.model.image_size[0]} px)"
                f"{'' if st.texture else ' (no texture)'}{pitches}")

    def to_json(self) -> dict:
        """``affectvlm train --dry-run``'s report."""
        return {"dry_run": True, "out": self.cfg.out, "model": self.cfg.model, "splits": self.splits.record().to_json(),
                "render": self.settings.to_dict(), "input_size": self.model.image_size[0], "epochs": self.cfg.epochs,
                "batch_size": self.cfg.batch_size, "plan": self.describe(), "data_notes": self.splits.notes}


def plan_run(cfg: TrainConfig) -> RunPlan:
    """Seed, split the data by subject, load the starting model and resolve its render settings; nothing is
    written and nothing is rendered."""
    from affectvlm.model import load_model
    from affectvlm.model.checkpoint import CHOICES
    from affectvlm.prompts import PromptSet
    from affectvlm.render import parse_views

    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    splits = build_splits(cfg)
    prompts = PromptSet.load(None)
    model = load_model(cfg.model, device="cpu", classes=splits.classes, prompts=prompts, cache=False)
    model.embedding_mean = None  # training moves the embeddings: the base's mean would be stale (affectvlm.train.centre)
    for choice in CHOICES:  # neutral_reference, adapt_to_set: chosen again on this run's validation subjects (train)
        setattr(model, choice, None)
    model.render = settings = render_settings(model.render, cfg, parse_views)
    if cfg.input_size == "render" or (cfg.input_size == "auto" and settings.size > model.image_size[0]
                                       and model.can_take(settings.size)):
        model.set_input_size(settings.size)
    return RunPlan(cfg, splits, model, settings, prompts)


def train(cfg: TrainConfig, info: DistInfo, stop: StopSignals | None = None) -> dict:
    from affectvlm.model import load_model

    stop = stop or StopSignals()
    run_dir = Path(cfg.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(run_dir, info.is_main)
    device = info.device
    plan = plan_run(cfg)
    splits, model, settings, prompts = plan.splits, plan.model, plan.settings, plan.prompts
    for note in splits.notes if info.is_main else ():
        log.warning("data: %s", note)
    train_s, val_s, test_s, classes = splits.train, splits.val, splits.test, splits.classes
    cidx = {c: i for i, c in enumerate(classes)}
    views = tuple(settings.views)

    from affectvlm.train.cache import RenderCache, default_cache_dir, set_frame_of

    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    # every view also at the model's scoring pitches: training sees them and val / test score as predict does
    cache = RenderCache(cache_dir, settings, angle_jitter=cfg.angle_jitter if cfg.aug else 0.0,
                        device=device, pitches=settings.score_pitches,
                        set_frame=set_frame_of([*train_s, *val_s, *test_s], settings))
    if cache.set_frame is not None and info.is_main:
        log.info("face frame of the data: %s; a flagged scan facing its front but read another way up takes its up",
                 cache.set_frame.text())
    model.to(device)
    weights = parse_loss_weights(cfg.losses)
    criterion = MultiLoss(weights, cfg.margin_init, cfg.margin_min, cfg.margin_max,
                          center=cfg.loss_center, label_smoothing=cfg.label_smoothing).to(device)
    groups = param_groups(model, criterion, cfg)
    text_trainable = any(g["name"].startswith("text") for g in groups)
    numbers = {s: i for i, s in enumerate(sorted({str(t.subject) for t in train_s}))}
    subject_ids = torch.tensor([numbers[str(t.subject)] for t in train_s], dtype=torch.long)
    step_mod = TrainStep(model, criterion, text_trainable, subject_ids,
                         torch.bincount(subject_ids, minlength=len(numbers))).to(device)
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)

    local_bs = check_batches(cfg, len(train_s), info.world_size)
    train_ds = CachedViews(train_s, cidx, cache)
    val_ds = CachedViews(val_s, cidx, cache)
    test_ds = CachedViews(test_s, cidx, cache)
    if cfg.batch_by:
        sampler = GroupedSampler([str(getattr(s, cfg.batch_by) or "") for s in train_s], local_bs,
                                 num_replicas=info.world_size, rank=info.rank, seed=cfg.seed)
    else:
        sampler = torch.utils.data.DistributedSampler(train_ds, num_replicas=info.world_size, rank=info.rank,
                                                      shuffle=True, seed=cfg.seed, drop_last=False)

    def eval_loader(ds):
        smp = torch.utils.data.DistributedSampler(ds, num_replicas=info.world_size, rank=info.rank, shuffle=False)
        return torch.utils.data.DataLoader(ds, batch_size=max(local_bs, 16), sampler=smp, num_workers=cfg.workers)

    loader = torch.utils.data.DataLoader(train_ds, batch_size=local_bs, sampler=sampler, drop_last=True,
                                         num_workers=cfg.workers, persistent_workers=cfg.workers > 0)
    val_loader = eval_loader(val_ds) if val_s else None
    test_loader = eval_loader(test_ds)
    proto_loader = torch.utils.data.DataLoader(
        train_ds, batch_size=max(local_bs, 16), num_workers=cfg.workers,
        sampler=torch.utils.data.DistributedSampler(train_ds, num_replicas=info.world_size, rank=info.rank,
                                                    shuffle=False))
    steps_per_epoch = len(loader) // cfg.accum
    if steps_per_epoch < 1:  # --batch-by: one group a batch can leave fewer full batches
        raise no_full_batch(len(train_s), cfg)
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)

    tokenizer = tokenizer_of(model)
    class_texts = []
    for c in classes:
        texts = prompts.zeroshot_texts(c)[:MAX_CLASS_PROMPTS]
        class_texts += (texts * MAX_CLASS_PROMPTS)[:MAX_CLASS_PROMPTS]

    prov = model.provenance
    from_scratch = prov.get("kind") == "random" and not prov.get("trained")
    loop = Loop(cfg=cfg, info=info, run_dir=run_dir, model=model, step_mod=step_mod, ddp=step_mod,
                optimizer=optimizer, loader=loader, sampler=sampler, train_samples=train_s, classes=classes,
                prompts=prompts, tokenizer=tokenizer, class_tokens=tokenizer(class_texts).to(device), views=views,
                aug_cfg=AugmentConfig(cfg.aug_flip, cfg.aug_rotate, cfg.aug_scale, cfg.aug_shift, cfg.aug_shade,
                                      cfg.aug_swap, cfg.angle_jitter, erase=cfg.aug_erase, enabled=cfg.aug,
                                      map=settings.map),
                monitor=CollapseMonitor(cfg.collapse_spread, cfg.collapse_steps, cfg.collapse_grace,
                                        cfg.chance_epochs, failure_hint(cfg, weights, from_scratch)),
                reporter=None, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
    # every check and the checkpoint restored before anything of the run folder is written: a relaunch with a bad
    # or mismatched option leaves its config.yaml, splits.json and status.json as they were
    progress = restore_progress(run_dir, loop, info) if cfg.resume != "no" else Progress()
    if info.is_main:
        if progress.step or progress.epoch:
            check_same_splits(run_dir, splits)
        else:
            RunFolder(run_dir).metrics.unlink(missing_ok=True)  # a killed first attempt's records: started over
        # the render size the run resolved, so a resume renders as the run began even if the default changes
        save_config(replace(cfg, image_size=settings.size), RunFolder(run_dir).config)
        runfolder.write_splits(run_dir, splits.record())
        write_status(run_dir, Status.RUNNING, epoch=progress.epoch, step=progress.step, phase="rendering")
        log.info("%s; world %d", plan.describe(), info.world_size)
        if not val_s:
            log.warning("no validation subjects (val_fraction %s): best/ is the last epoch", cfg.val_fraction)

    # render cache, warmed in shards over ranks
    t0 = time.perf_counter()
    all_paths = [s.path for s in train_s + val_s + test_s]
    try:
        rendered, failure = cache.warm(all_paths, info.rank, info.world_size), None
    except AffectVLMError as e:  # a bad scan in this rank's share
        rendered, failure = 0, e
    if (failure := share_failure(failure, info)) is not None:
        raise failure
    render_s = time.perf_counter() - t0
    if info.is_main:
        log.info("render cache %s: rendered %d here in %.1fs", cache_dir, rendered, render_s)
    loop.start_step = progress.step
    barrier(info)
    if info.distributed:
        loop.ddp = nn.parallel.DistributedDataParallel(
            step_mod, device_ids=[info.local_rank] if device.startswith("cuda") else None,
            find_unused_parameters=True)
    if info.is_main and cfg.report_to:
        loop.reporter = Reporter(run_dir, parse_report_to(cfg.report_to), config=cfg.to_dict())

    val_chance = chance_level([cidx[s.label] for s in val_s])
    # without ce / clip nothing trains the text classifier: judge learning by nearest class centroids
    text_trained = any(weights.get(k, 0) > 0 for k in ("ce", "ces", "clip"))
    use_proto = cfg.proto_eval or not text_trained
    last_eval: dict = {}
    loop.run_t0 = time.perf_counter()
    first_epoch = progress.epoch
    with stop.deferred():
        while progress.epoch < cfg.epochs and progress.step < total_steps:
            epoch = progress.epoch
            ep_t0 = time.perf_counter()
            if not train_one_epoch(loop, progress, stop):
                if info.is_main:
                    save_progress(run_dir, loop, progress, last_eval, mid_epoch=True)
                    log.info("stopping on %s: checkpoint at epoch %d, step %d", stop.received.name if stop.received
                             else "a signal on another rank", epoch + 1, progress.step)
                barrier(info)
                raise StopTraining(stop.agreed(info) or signal.SIGTERM)
            done = progress.step >= total_steps
            ep_s = time.perf_counter() - ep_t0
            nb = max(1, progress.epoch_step)  # the steps this epoch ran (--max-steps can end it early)
            rec = {"kind": "epoch", "epoch": epoch, "step": progress.step, "lr": optimizer.param_groups[0]["lr"],
                   **{k: round(v / nb, 6) for k, v in progress.sums.items()},
                   "samples_per_s": round(progress.n_seen / max(ep_s, 1e-9), 3), "epoch_s": round(ep_s, 3),
                   "eta_s": round(ep_s * (cfg.epochs - epoch - 1), 1), "world_size": info.world_size,
                   "cache": cache.report() if epoch == first_epoch else None, "render_s": round(render_s, 3)}
            evaluated = False
            if val_loader is not None and ((epoch + 1) % cfg.eval_every == 0 or epoch == cfg.epochs - 1 or done):
                model.set_classes(classes, prompts)
                last_eval = evaluate_model(model, val_loader, classes, cache.scoring_index, device, info, cfg.amp,
                                           proto_loader=proto_loader if use_proto else None, samples=val_s)
                rec.update({"val_" + k: v for k, v in last_eval.items() if k != "classes"})
                rec["classes"] = classes
                evaluated = True
            # best/ is chosen on validation subjects only; without them it is the newest epoch
            acc = last_eval.get("accuracy", -1.0) if evaluated else -1.0
            improved = acc > progress.best_acc if val_loader is not None else True
            if info.is_main:
                if improved:
                    progress.best_acc = acc
                    model.set_classes(classes, prompts)
                    export_best(model, run_dir, {"epoch": epoch, "val_accuracy": acc, "classes": classes,
                                                 "trained_on": cfg.data, "layout": cfg.layout})
                rec["best_val_accuracy"] = progress.best_acc
                runfolder.append_metric(run_dir, rec)
                if loop.reporter and "val_accuracy" in rec:
                    loop.reporter.scalars("val", {"accuracy": rec["val_accuracy"], "macro_f1": rec["val_macro_f1"]},
                                          progress.step)
                save_progress(run_dir, loop, progress, last_eval, mid_epoch=False)
                write_status(run_dir, Status.RUNNING, epoch=epoch + 1, epochs=cfg.epochs, step=progress.step,
                             best_acc=progress.best_acc)
                log.info("epoch %d/%d: loss %.4f, spread %.3f, val acc %s%s, %.1f samples/s", epoch + 1, cfg.epochs,
                         rec.get("loss", float("nan")), rec.get("spread", float("nan")),
                         "none" if rec.get("val_accuracy") is None else f"{rec['val_accuracy']:.4f}",
                         f" (intensities 3-4: {rec['val_accuracy_intensity_3_4']:.4f})"
                         if "val_accuracy_intensity_3_4" in rec else "", rec["samples_per_s"])
            progress.best_acc = float(_bcast_float(progress.best_acc, info))
            barrier(info)
            if evaluated:
                loop.monitor.check_eval(epoch, acc if text_trained else last_eval.get("proto_accuracy", acc),
                                        val_chance, len(classes))
            progress.epoch, progress.epoch_step, progress.sums, progress.n_seen = epoch + 1, 0, {}, 0
            if (received := stop.agreed(info)) is not None:  # the epoch's checkpoint is the one to resume from
                raise StopTraining(received)
    if loop.reporter:
        loop.reporter.close()
    barrier(info)
    # the reported held-out number: best/ on test subjects that played no part in training or selection
    best_dir = RunFolder(run_dir).best
    if best_dir.is_dir():
        best_model = load_model(str(best_dir), device="cpu", classes=classes, prompts=prompts, cache=False)
        best_model.to(device)
    else:  # no epoch completed (e.g. --max-steps 0): the model as it is
        best_model = model
    # the test subjects are embedded once: for the reported figure and for the two checks below
    test_embedded = embed_eval(best_model, test_loader, cache.scoring_index, device, cfg.amp)
    test_eval = evaluate_model(best_model, test_loader, classes, cache.scoring_index, device, info, cfg.amp,
                               samples=test_s, embedded=test_embedded)
    if info.is_main:
        log.info("test (%d subjects, never used for training or selection): accuracy %.4f%s, macro-F1 %.4f, n=%d",
                 len(splits.subjects()["test"]), test_eval["accuracy"],
                 f" (intensities 3-4: {test_eval['accuracy_intensity_3_4']:.4f})"
                 if "accuracy_intensity_3_4" in test_eval else "", test_eval["macro_f1"], test_eval["n"])
    # best/ as trained on the validation subjects, once, for both choices
    val_rows = scored_rows(best_model, val_loader, cache.scoring_index, device, info, cfg.amp) if val_loader else None
    test_rows = scored_rows(best_model, test_loader, cache.scoring_index, device, info, embedded=test_embedded)
    if any(s.sequence is not None for s in test_s):  # a 4D set: each test sequence read from its scored frames
        from affectvlm.train.evaluate import sequence_accuracy, sequences_of

        test_eval["sequences"] = sequence_accuracy(test_s, [r[0] for r in test_rows], [r[1] for r in test_rows],
                                                   classes, sequences_of(test_s), "peak")
        if info.is_main:
            log.info("test sequences: accuracy %.4f, n=%d (each from its middle frames, peak-pooled)",
                     test_eval["sequences"]["accuracy"], test_eval["sequences"]["n"])
    neutral = choose_neutral_reference(val_rows, val_s, test_rows, test_s, classes, info, best_dir)
    subject_mean = choose_subject_mean(best_model, val_rows, val_s, test_rows, test_s, classes, neutral, info,
                                       best_dir)
    adapt = choose_adaptation(best_model, val_loader, val_rows, val_s, classes, cache.scoring_index, device, info,
                              cfg.amp, best_dir)
    del best_model
    hashes = [param_hash(step_mod)]
    if info.distributed:
        box = [None] * info.world_size
        dist.all_gather_object(box, hashes[0])
        hashes = box
    return {"best_val_accuracy": progress.best_acc, "test": test_eval, "test_accuracy": test_eval["accuracy"],
            "splits": splits.record().to_json(), "param_hashes": hashes, "last_val": last_eval,
            "steps": progress.step, "cache": cache.report(), "render_s": render_s,
            "train_s": time.perf_counter() - loop.run_t0, "neutral_reference": neutral,
            "subject_mean": subject_mean, "adapt_to_set": adapt}


def choose_neutral_reference(val_rows, val_s: Sequence, test_rows, test_s: Sequence, classes: Sequence[str],
                             info: DistInfo, best_dir: Path) -> dict | None:
    """Whether ``predict --neutral auto`` should score this run's checkpoint against each subject's neutral scan:
    chosen on the validation subjects (only where it rescored some; counting their scans at
    :data:`PROTOCOL_LEVELS` where they have them) and written into best/'s ``affectvlm.json``
    (``neutral_reference``); the test subjects' figures both ways are reported, not used. ``val_rows``: best/'s
    :func:`scored_rows` of the validation subjects (None: the run has none), ``test_rows`` those of the test
    subjects."""
    if val_rows is None:
        return None
    val = neutral_check(val_rows, val_s, classes)
    if not val.rescored:
        return None
    test = neutral_check(test_rows, test_s, classes)
    if info.is_main:
        if best_dir.is_dir():
            from affectvlm.model.checkpoint import update_meta

            update_meta(best_dir, neutral_reference=val.helps)
        log.info("each scan against its subject's neutral scan (predict --neutral auto, BU-3DFE names): val %.4f "
                 "against %.4f alone, so best/ %s; test (reported, not used) %.4f against %.4f alone",
                 val.against, val.alone, "scores against it" if val.helps else "scores each scan alone",
                 test.against, test.alone)
    return {"chosen": val.helps, "val": val.to_json(), "test": test.to_json()}


def subject_check(rows: Sequence[tuple[int, list[float]]], samples: Sequence, classes: Sequence[str],
                  added, neutral: bool):
    """How the scans of :func:`scored_rows` read relative to their subject's mean (``predict --subject-mean auto``)
    against as predict scores them without it: alone, or with ``neutral`` against their subject's neutral scan
    (:func:`affectvlm.subjects.check_subject_mean`)."""
    from affectvlm.reference import against_neutral
    from affectvlm.subjects import check_subject_mean

    P, y, subjects = scan_arrays(rows, samples, classes)
    scored = against_neutral(P, y, subjects, classes)[0] if neutral else None
    return check_subject_mean(P, y, subjects, classes, added, scored, counted=protocol_scans(samples))


def choose_subject_mean(model: nn.Module, val_rows, val_s: Sequence, test_rows, test_s: Sequence,
                        classes: Sequence[str], neutral: dict | None, info: DistInfo, best_dir: Path) -> dict | None:
    """Whether ``predict --subject-mean auto`` should score this run's checkpoint relative to each subject's mean:
    chosen on the validation subjects (against how predict would score them without it, given the neutral choice;
    counting their scans at :data:`PROTOCOL_LEVELS` where they have them)
    and written into best/'s ``affectvlm.json`` (``subject_mean``); the test subjects' figures are reported, not
    used."""
    from affectvlm.subjects import training_logits

    if val_rows is None:
        return None
    added = training_logits(model)
    against = bool(neutral and neutral["chosen"])
    val = subject_check(val_rows, val_s, classes, added, against)
    if not val.rescored:
        return None
    test = subject_check(test_rows, test_s, classes, added, against)
    if info.is_main:
        if best_dir.is_dir():
            from affectvlm.model.checkpoint import update_meta

            update_meta(best_dir, subject_mean=val.helps)
        log.info("each subject relative to its own mean (predict --subject-mean auto): val %.4f against %.4f "
                 "without, so best/ %s; test (reported, not used) %.4f against %.4f", val.centred, val.alone,
                 "scores relative to it" if val.helps else "scores without it", test.centred, test.alone)
    return {"chosen": val.helps, "val": val.to_json(), "test": test.to_json()}


def choose_adaptation(model: nn.Module, val_loader, val_rows, val_s: Sequence, classes: Sequence[str],
                      views: Sequence[int], device: str, info: DistInfo, amp: bool, best_dir: Path) -> dict | None:
    """Whether ``predict --adapt auto`` should adapt this run's checkpoint to a scored set: best/ adapted to the
    validation subjects' scans (as ``predict`` adapts to the set it scores) against as trained, on those subjects;
    only when they are as many as ``auto`` wants (:data:`affectvlm.adapt.MIN_ROWS` scans, or for a set of only
    sequences :data:`affectvlm.adapt.MIN_SEQUENCES`, adapted as ``predict`` adapts to sequences and judged on the
    validation frames). Written into best/'s ``affectvlm.json`` (``adapt_to_set``: true only if adapted reads more
    of them, counting those at :data:`PROTOCOL_LEVELS` where there are any). ``val_rows``: best/'s
    :func:`scored_rows` of them as trained."""
    from affectvlm import adapt as adapt_mod

    scans = sorted({s.path for s in val_s if s.frame_ids is None})
    sequences = sorted({s.sequence for s in val_s if s.sequence is not None})  # adapted to as predict adapts
    inputs, kind = (scans, "scans") if scans else (sequences, "sequences")
    if val_rows is None or len(inputs) < adapt_mod.min_inputs("auto", sequences=not scans):
        return None
    strong = at_protocol_levels(val_s)
    trained = rows_accuracy([val_rows[k] for k in strong] if strong else val_rows)
    if info.is_main:
        log.info("adapting best/ to the validation subjects' %d %s, to choose whether predict --adapt auto adapts "
                 "(renders up to %d of them again)...", len(inputs), kind, adapt_mod.SAMPLE)
    adapted = adapt_mod.adapt_model(model, inputs)
    if not adapted.layers:
        return None
    on_val = evaluate_model(adapted.model, val_loader, classes, views, device, info, amp, samples=val_s)
    on_set = on_val.get("accuracy_intensity_3_4", on_val["accuracy"])  # present when ``strong`` is not empty
    helps = on_set > trained
    if info.is_main:
        if best_dir.is_dir():
            from affectvlm.model.checkpoint import update_meta

            update_meta(best_dir, adapt_to_set=helps)
        log.info("adapted to the validation subjects' %d %s (predict --adapt auto): val %.4f against %.4f as "
                 "trained, so best/ %s", adapted.inputs, kind, on_set, trained,
                 "adapts to a scored set" if helps else "scores as trained")
    return {"chosen": helps, "val": {"adapted": on_set, "trained": trained, kind: adapted.inputs}}


# the smallest render size without --image-size (README "Defaults": measured against the 64 px renders)
MIN_TRAIN_RENDER = 96


def render_settings(settings, cfg: TrainConfig, parse_views):
    """The model's render settings with the run's overrides (views, size, texture, map, crop, hole filling).

    Without ``--image-size`` a model that renders smaller than :data:`MIN_TRAIN_RENDER` renders at that size: the
    model resizes the images to its input with antialiasing, so it sees supersampled shading; the checkpoints the run
    exports keep that size, so ``predict`` renders them as they were trained."""

    changes: dict = {}
    if cfg.views:
        changes["views"] = tuple(parse_views(cfg.views))
    if cfg.image_size:
        changes["size"] = int(cfg.image_size)
    elif settings.size < MIN_TRAIN_RENDER:
        changes["size"] = MIN_TRAIN_RENDER
    if cfg.texture is not None:
        changes["texture"] = bool(cfg.texture)
    if cfg.render_map:
        changes["map"] = str(cfg.render_map)
    if cfg.render_crop is not None:
        changes["crop"] = bool(cfg.render_crop)
    if cfg.fill_holes is not None:
        changes["fill_holes"] = float(cfg.fill_holes)
    return replace(settings, **changes) if changes else settings


def param_hash(module: nn.Module) -> str:
    """sha256 over every parameter's bytes (ranks in sync have identical hashes)."""
    import hashlib

    h = hashlib.sha256()
    for n, p in sorted(module.named_parameters()):
        h.update(n.encode())
        h.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def _bcast_float(v: float, info: DistInfo) -> float:
    if not info.distributed:
        return v
    t = torch.tensor([v], dtype=torch.float64)
    dist.broadcast(t, 0)
    return float(t.item())


def _log_error_to_file(e: Exception) -> None:
    """The log file gets the error; the terminal gets the one ``error:`` line printed by :func:`main`."""
    for h in log.handlers:
        if isinstance(h, logging.FileHandler):
            h.handle(log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s", (e,), None))


# failures the same options meet again: torchrun's restarts (for crashes and lost nodes) would only repeat them
FINAL_FAILURES = ("ConfigError", "InputError", "ModelError", "TrainingFailed")


def _failed_for_good(run_dir: Path) -> str:
    """On a restart by torchrun: the message of this run's failure that a restart cannot mend ("" if none)."""
    if int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) < 1:
        return ""
    st = runfolder.read_status(run_dir)
    return st.message if st is not None and st.status is Status.FAILED and st.reason in FINAL_FAILURES else ""


def _disk_full(e: BaseException) -> bool:
    """Whether ``e`` (or what caused it) is a full disk or quota."""
    while e is not None:
        if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or any(
                t in str(e) for t in ("No space left on device", "StorageFull", "Disk quota exceeded")):
            return True
        e = e.__cause__ or e.__context__
    return False


def _say_error(message: str, *, alike: bool = False) -> None:
    """``error: message`` on stderr, as :func:`affectvlm.shard.error_line` says it under torchrun or SLURM."""
    if (line := error_line(f"error: {message}", alike=alike)) is not None:
        print(line, file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``affectvlm train`` and ``python -m affectvlm.train`` (also under torchrun)."""
    try:
        cfg = resolve_config(argv)
        if final := _failed_for_good(Path(cfg.out)):
            _say_error(f"{final} (not retried: the same options would fail the same way)", alike=True)
            return 2
        refuse_existing_run(cfg)
        if cfg.data and not Path(cfg.data).exists():  # before the run folder is made: nothing left behind
            raise ConfigError(f"{cfg.data}: dataset root does not exist")
        if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
            raise ConfigError(f"--out {cfg.out}: a file is there; the run folder must be a folder")
        if cfg.dry_run:  # the checks a real run makes before its first write, nothing written or rendered
            from affectvlm.model import resolve_device

            try:
                resolve_device(cfg.device)
            except AffectVLMError as e:  # this rank's own (one GPU, two ranks): said with its rank
                _say_error(str(e))
                return 2
            check_writable(cfg.out)
            plan = plan_run(cfg)  # every rank checks the data the same way; one prints the plan
            launch = launch_from_env()
            check_batches(cfg, len(plan.splits.train), launch.world)
            if launch.rank == 0:
                print(json.dumps(plan.to_json(), indent=2))
            return 0
    except AffectVLMError as e:
        _say_error(str(e), alike=True)
        return 2
    run_dir = Path(cfg.out)
    try:  # the rendezvous waits in C++, where Python's handlers never run: SIGTERM and Ctrl-C end it as they would
        with system_stop_signals():
            info = init_distributed_mode(cfg.device)
    except AffectVLMError as e:
        _say_error(str(e))
        return 2
    stop = StopSignals().install()
    refused = None
    if info.is_main:  # one trainer per run folder; then sweep a killed save's leftovers
        try:
            runfolder.lock_run_dir(run_dir)
            for line in checkpointing.sweep_run_dir(run_dir):
                print(f"{run_dir}: {line}", file=sys.stderr)
        except runfolder.RunFolderInUse as e:
            refused = (3, str(e))
        except ConfigError as e:
            refused = (2, str(e))
    refused = broadcast_object(refused, info)  # the other ranks stop with rank 0, not at the next collective
    if refused is not None:
        if info.is_main:
            print(f"error: {refused[1]}", file=sys.stderr)
        cleanup(info)
        return refused[0]
    before = runfolder.read_status(run_dir) if info.is_main else None
    try:
        result = train(cfg, info, stop)
        if info.is_main:
            write_status(run_dir, Status.FINISHED, epoch=cfg.epochs, best_acc=result["best_val_accuracy"],
                         test_accuracy=result["test_accuracy"])
            runfolder.write_json(RunFolder(run_dir).result, result)
        return 0
    except KeyboardInterrupt as e:  # Ctrl-C, SIGTERM (app's Stop, scancel), SIGUSR1 (SLURM pre-emption)
        preempted = isinstance(e, StopTraining) and e.preempted
        if info.is_main:
            write_status(run_dir, Status.PREEMPTED if preempted else Status.STOPPED,
                         message="pre-empted: requeue to continue" if preempted else "interrupted")
        return PREEMPTED_EXIT if preempted else STOPPED_EXIT
    except AffectVLMError as e:
        _log_error_to_file(e)
        # a finished run relaunched with a bad option stays finished while nothing of it was touched
        kept = before is not None and before.status is Status.FINISHED and runfolder.read_status(run_dir) == before
        if info.is_main and not kept:
            run_dir.mkdir(parents=True, exist_ok=True)
            write_status(run_dir, Status.FAILED, message=str(e), reason=type(e).__name__)
        _say_error(str(e), alike=getattr(e, "shared", False))
        return 2
    except Exception as e:  # noqa: BLE001 - the app needs the failure in status.json
        if _disk_full(e):  # safetensors and torch say so in their own types
            print(f"error: {run_dir}: no space left on the disk while saving; free space and run the same command "
                  "to continue from the last complete checkpoint", file=sys.stderr)
            if info.is_main:
                with contextlib.suppress(OSError):
                    write_status(run_dir, Status.FAILED, message="no space left on the disk", reason="OSError")
            return 2
        log.exception("training failed")
        if info.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            write_status(run_dir, Status.FAILED, message=f"{type(e).__name__}: {e}")
        raise
    finally:
        cleanup(info)
        runfolder.unlock_run_dir(run_dir)


if __name__ == "__main__":
    raise SystemExit(main())
