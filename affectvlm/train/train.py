"""AffectVLM trainer: one plain script in the spirit of torchvision's references/classification/train.py.

    affectvlm train --data ROOT --layout bu3dfe --out runs/r1 [--config cfg.yaml] [options]
    torchrun --nproc_per_node 2 -m affectvlm.train --data ROOT --layout bu3dfe --out runs/r1

Flow: config -> process group -> dataset + subject-independent split -> model -> render cache warmed
(sharded over ranks) -> DDP training with a DistributedSampler (epoch-seeded) -> per-epoch validation,
metrics.jsonl, atomic checkpoint, best export (RUN_DIR/best) -> status.json ``finished``.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from affectvlm.errors import AffectVLMError, ConfigError
from affectvlm.train import checkpointing as ckpt
from affectvlm.train.augment import AugmentConfig, augment_views, sample_prompts
from affectvlm.train.config import TrainConfig, resolve_config, save_config
from affectvlm.train.distributed import DistInfo, barrier, cleanup, init_distributed_mode
from affectvlm.train.losses import MultiLoss, gather_with_grad, parse_loss_weights
from affectvlm.train.metrics import JsonlWriter, classification_metrics, read_jsonl

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


def build_splits(cfg: TrainConfig):
    from affectvlm.datasets import (expand_frames, filter_samples, kfold_split, load_dataset, manifest_split,
                                    order_classes)

    ds = load_dataset(cfg.data, cfg.layout)
    samples = filter_samples(ds.samples, intensities=cfg.intensities, classes=cfg.classes,
                             include_neutral=cfg.include_neutral)
    if not samples:
        raise ConfigError(f"{cfg.data}: no samples left after filtering (intensities={cfg.intensities}, "
                          f"classes={cfg.classes}, neutral={cfg.include_neutral})")
    if cfg.split == "manifest":
        train, test = manifest_split(samples)
    else:
        train, test = kfold_split(samples, cfg.folds, cfg.fold, cfg.split_seed)
    train = expand_frames(train, n_frames=cfg.frames_per_sequence)
    test = expand_frames(test, n_frames=cfg.frames_per_sequence)
    classes = list(cfg.classes) if cfg.classes else order_classes(s.label for s in samples)
    from affectvlm.datasets import canonical_class

    classes = [canonical_class(c) for c in classes]
    if not train or not test:
        raise ConfigError(f"{cfg.data}: the split leaves {len(train)} training and {len(test)} test samples")
    return train, test, classes


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
    """Everything the loss needs in one forward, so DDP sees a single module call."""

    def __init__(self, model: nn.Module, criterion: MultiLoss, text_trainable: bool):
        super().__init__()
        self.model, self.criterion = model, criterion
        self.text_trainable = text_trainable
        self._frozen_class_txt: torch.Tensor | None = None

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

    def forward(self, images, labels, tokens, class_tokens, n_classes: int):
        clip = clip_of(self.model)
        w = self.criterion.weights
        zv = self.model.encode_views(images)
        zi = self.model.fuse(zv)
        zt = clip.encode_text(tokens) if w.get("clip", 0) > 0 else None
        ct = self.class_text(class_tokens, n_classes) if w.get("ce", 0) > 0 else None
        labels_all = gather_labels(labels)
        zv_all, zi_all = gather_with_grad(zv), gather_with_grad(zi)
        zt_all = gather_with_grad(zt) if zt is not None else None
        return self.criterion(zv_all, zi_all, labels_all, zt_all, ct, clip.logit_scale.exp())


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
def embed_loader(model: nn.Module, loader, n_views: int, device: str, amp: bool = False):
    """(dataset indices, labels, fused embeddings, logits) over a loader, un-augmented base views."""
    idxs, ys, zs, logits = [], [], [], []
    for x, y, i in loader:
        x = x[:, :n_views].to(device, non_blocking=True).float().div_(255)
        with autocast(device, amp):
            z = model.fuse(model.encode_views(x)).float()
            lg = model(x).float()
        idxs += i.tolist()
        ys += y.tolist()
        zs.append(z.cpu())
        logits.append(lg.cpu())
    return idxs, ys, torch.cat(zs) if zs else torch.empty(0), torch.cat(logits) if logits else torch.empty(0)


@torch.no_grad()
def evaluate_model(model: nn.Module, loader, classes: Sequence[str], n_views: int, device: str, info: DistInfo,
                   amp: bool = False, proto_loader=None) -> dict:
    """Accuracy/macro-F1/per-class/confusion on the loader (sharded over ranks, gathered everywhere).

    With ``proto_loader`` (the un-augmented training set) also ``proto_accuracy``: each test scan gets the
    class whose mean training embedding is nearest in cosine (a classifier that needs no text tower)."""
    model.eval()
    idxs, ys, z, lg = embed_loader(model, loader, n_views, device, amp)
    rows = _gather_rows(idxs, [(y, int(p), zz.tolist()) for y, p, zz in zip(ys, lg.argmax(1).tolist(), z)], info)
    trues, preds = [r[0] for r in rows], [r[1] for r in rows]
    out = classification_metrics(trues, preds, list(classes))
    if proto_loader is not None:
        ti, ty, tz, _ = embed_loader(model, proto_loader, n_views, device, amp)
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


# ----------------------------------------------------------------------------- run-folder helpers

def write_status(run_dir: Path, status: str, **kw) -> None:
    rec = {"status": status, "pid": os.getpid(), "host": ckpt.hostname(), "updated": time.time(), **kw}
    ckpt.atomic_write_json(run_dir / "status.json", rec)


def setup_logging(run_dir: Path, is_main: bool) -> None:
    log.handlers.clear()
    log.setLevel(logging.INFO)
    log.propagate = False
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    if is_main:
        fh = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
        fh.setFormatter(fmt)
        log.addHandler(fh)
        sh = logging.StreamHandler(sys.stderr)
        sh.setFormatter(fmt)
        log.addHandler(sh)
    else:
        log.addHandler(logging.NullHandler())


def truncate_metrics(path: Path, last_epoch: int) -> None:
    """On resume, drop records of epochs after the checkpoint (they will be produced again)."""
    ckpt.truncate_metrics(path, last_epoch)  # also drops unreadable lines, with a warning


def export_best(model: nn.Module, run_dir: Path, extra: dict) -> None:
    from affectvlm.model import save_checkpoint

    tmp = run_dir / f".tmp-best-{os.getpid()}"
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    save_checkpoint(model, tmp, extra=extra)
    ckpt.replace_dir(tmp, run_dir / "best")


# ----------------------------------------------------------------------------- main

def train(cfg: TrainConfig, info: DistInfo) -> dict:
    from affectvlm.model import load_model
    from affectvlm.prompts import PromptSet
    from affectvlm.render import parse_views

    run_dir = Path(cfg.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(run_dir, info.is_main)
    device = info.device
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)

    train_s, test_s, classes = build_splits(cfg)
    cidx = {c: i for i, c in enumerate(classes)}
    prompts = PromptSet.load(None)
    model = load_model(cfg.model, device="cpu", classes=classes, prompts=prompts, cache=False)
    settings = model.render
    if cfg.views:
        from dataclasses import replace as dc_replace

        settings = dc_replace(settings, views=tuple(parse_views(cfg.views)))
    if cfg.image_size:
        from dataclasses import replace as dc_replace

        settings = dc_replace(settings, size=int(cfg.image_size))
    if cfg.texture is not None:
        from dataclasses import replace as dc_replace

        settings = dc_replace(settings, texture=bool(cfg.texture))
    model.render = settings
    views = tuple(settings.views)
    n_views = len(views)
    if info.is_main:
        save_config(cfg, run_dir / "config.yaml")
        write_status(run_dir, "running", epoch=0, step=0, phase="rendering")
        log.info("data: %d train / %d test samples, classes %s; %d views at %d px; world %d",
                 len(train_s), len(test_s), classes, n_views, settings.size, info.world_size)

    # render cache, warmed in shards over ranks
    from affectvlm.train.cache import RenderCache, default_cache_dir

    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    cache = RenderCache(cache_dir, settings, angle_jitter=cfg.angle_jitter if cfg.aug else 0.0,
                        device=device)
    t0 = time.perf_counter()
    all_paths = [s.path for s in train_s + test_s]
    rendered = cache.warm(all_paths, info.rank, info.world_size)
    barrier(info)
    render_s = time.perf_counter() - t0
    if info.is_main:
        log.info("render cache %s: rendered %d here in %.1fs", cache_dir, rendered, render_s)

    model.to(device)
    weights = parse_loss_weights(cfg.losses)
    criterion = MultiLoss(weights, cfg.margin_init, cfg.margin_min, cfg.margin_max).to(device)
    groups = param_groups(model, criterion, cfg)
    text_trainable = any(g["name"].startswith("text") for g in groups)
    step_mod = TrainStep(model, criterion, text_trainable).to(device)
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)

    local_bs = cfg.batch_size // info.world_size
    if local_bs < 1 or cfg.batch_size % info.world_size:
        raise ConfigError(f"--batch-size {cfg.batch_size} must be a multiple of the {info.world_size} processes")
    train_ds = CachedViews(train_s, cidx, cache)
    test_ds = CachedViews(test_s, cidx, cache)
    sampler = torch.utils.data.DistributedSampler(train_ds, num_replicas=info.world_size, rank=info.rank,
                                                  shuffle=True, seed=cfg.seed, drop_last=False)
    test_sampler = torch.utils.data.DistributedSampler(test_ds, num_replicas=info.world_size, rank=info.rank,
                                                       shuffle=False)
    loader = torch.utils.data.DataLoader(train_ds, batch_size=local_bs, sampler=sampler, drop_last=True,
                                         num_workers=cfg.workers, persistent_workers=cfg.workers > 0)
    test_loader = torch.utils.data.DataLoader(test_ds, batch_size=max(local_bs, 16), sampler=test_sampler,
                                              num_workers=cfg.workers)
    proto_loader = torch.utils.data.DataLoader(
        train_ds, batch_size=max(local_bs, 16), num_workers=cfg.workers,
        sampler=torch.utils.data.DistributedSampler(train_ds, num_replicas=info.world_size, rank=info.rank,
                                                    shuffle=False))
    steps_per_epoch = len(loader) // cfg.accum
    if steps_per_epoch < 1:
        raise ConfigError(f"{len(train_s)} training samples give no full batch of {cfg.batch_size} x {cfg.accum}")
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)

    tokenizer = tokenizer_of(model)
    class_texts = []
    for c in classes:
        texts = prompts.zeroshot_texts(c)[:MAX_CLASS_PROMPTS]
        class_texts += (texts * MAX_CLASS_PROMPTS)[:MAX_CLASS_PROMPTS]
    class_tokens = tokenizer(class_texts).to(device)

    start_epoch, step, best_acc = 0, 0, -1.0
    if cfg.resume:
        found = ckpt.load_resume_checkpoint(run_dir)  # newest complete one; damaged ones skipped
        if found is not None:
            last, w, st, meta = found
            missing, unexpected = step_mod.load_state_dict(w, strict=False)
            if unexpected or missing:
                raise ConfigError(f"{last}: checkpoint does not match the model ({missing[:3]} {unexpected[:3]})")
            optimizer.load_state_dict(st["optimizer"])
            ckpt.set_rng_state(st["rng"])
            start_epoch, step, best_acc = int(st["epoch"]) + 1, int(st["step"]), float(st.get("best_acc", -1))
            if info.is_main:
                truncate_metrics(run_dir / "metrics.jsonl", start_epoch - 1)
                log.info("resumed from %s (epoch %d, step %d)", last, start_epoch - 1, step)
    barrier(info)

    ddp = step_mod
    if info.distributed:
        ddp = nn.parallel.DistributedDataParallel(
            step_mod, device_ids=[info.local_rank] if device.startswith("cuda") else None,
            find_unused_parameters=True)
    aug_cfg = AugmentConfig(cfg.aug_flip, cfg.aug_rotate, cfg.aug_scale, cfg.aug_shift, cfg.aug_shade,
                            cfg.aug_swap, cfg.angle_jitter, cfg.aug)
    metrics_out = JsonlWriter(run_dir / "metrics.jsonl") if info.is_main else None
    tb = None
    if cfg.tensorboard and info.is_main:
        try:
            from torch.utils.tensorboard import SummaryWriter

            tb = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:
            log.warning("tensorboard is not installed; --tensorboard ignored")
    from tqdm import tqdm

    show_bar = info.is_main and cfg.progress and sys.stderr.isatty()
    run_t0 = time.perf_counter()
    last_eval: dict = {}
    done = step >= total_steps
    for epoch in range(start_epoch, cfg.epochs):
        if done:
            break
        sampler.set_epoch(epoch)
        ddp.train()
        ep_t0, n_seen = time.perf_counter(), 0
        sums: dict[str, float] = {}
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not show_bar,
                   leave=False)
        it = iter(loader)
        for _ in range(steps_per_epoch):
            if step >= total_steps:
                done = True
                break
            f = lr_factor(step, cfg.warmup, total_steps)
            for g in optimizer.param_groups:
                g["lr"] = g["base_lr"] * f
            optimizer.zero_grad(set_to_none=True)
            terms_acc: dict[str, float] = {}
            for micro in range(cfg.accum):
                x, y, idx = next(it)
                x = x.float().div_(255)
                x = augment_views(x, y, idx.tolist(), views, aug_cfg, epoch=epoch, seed=cfg.seed, step=step,
                                  rank=info.rank)
                texts = sample_prompts(prompts, classes, [train_s[i] for i in idx.tolist()], y.tolist(),
                                       idx.tolist(), epoch=epoch, seed=cfg.seed, augment=cfg.prompt_aug)
                tokens = tokenizer(texts).to(device)
                x, y = x.to(device, non_blocking=True), y.to(device)
                sync = contextlib.nullcontext() if (micro == cfg.accum - 1 or not info.distributed) else ddp.no_sync()
                with sync:
                    with autocast(device, cfg.amp):
                        total, terms = ddp(x, y, tokens, class_tokens, len(classes))
                    (total / cfg.accum).backward()
                for k, v in terms.items():
                    terms_acc[k] = terms_acc.get(k, 0.0) + float(v.detach()) / cfg.accum
                terms_acc["loss"] = terms_acc.get("loss", 0.0) + float(total.detach()) / cfg.accum
                n_seen += x.shape[0] * info.world_size
            if cfg.clip_grad and cfg.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]],
                                               cfg.clip_grad)
            optimizer.step()
            with torch.no_grad():
                clip_of(model).logit_scale.clamp_(0, math.log(100))
            step += 1
            for k, v in terms_acc.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.update(1)
            bar.set_postfix(loss=f"{terms_acc['loss']:.3f}")
            if metrics_out and (step % 10 == 0 or step == 1):
                el = time.perf_counter() - ep_t0
                rec = {"kind": "train", "epoch": epoch, "step": step, "lr": optimizer.param_groups[0]["lr"],
                       **{k: round(v, 6) for k, v in terms_acc.items()},
                       "samples_per_s": round(n_seen / max(el, 1e-9), 3),
                       "eta_s": round((time.perf_counter() - run_t0) / max(step - (start_epoch * steps_per_epoch), 1)
                                      * (total_steps - step), 1)}
                metrics_out.write(rec)
                if tb:
                    for k, v in rec.items():
                        if isinstance(v, (int, float)) and k not in ("epoch", "step"):
                            tb.add_scalar(f"train/{k}", v, step)
        bar.close()
        ep_s = time.perf_counter() - ep_t0
        nb = max(1, steps_per_epoch)
        rec = {"kind": "epoch", "epoch": epoch, "step": step, "lr": optimizer.param_groups[0]["lr"],
               **{k: round(v / nb, 6) for k, v in sums.items()},
               "samples_per_s": round(n_seen / max(ep_s, 1e-9), 3), "epoch_s": round(ep_s, 3),
               "eta_s": round(ep_s * (cfg.epochs - epoch - 1), 1), "world_size": info.world_size,
               "cache": cache.report() if epoch == start_epoch else None, "render_s": round(render_s, 3)}
        if (epoch + 1) % cfg.eval_every == 0 or epoch == cfg.epochs - 1 or done:
            model.set_classes(classes, prompts)
            last_eval = evaluate_model(model, test_loader, classes, n_views, device, info, cfg.amp,
                                       proto_loader=proto_loader if cfg.proto_eval else None)
            rec.update({"val_" + k: v for k, v in last_eval.items() if k != "classes"})
            rec["classes"] = classes
        if info.is_main:
            acc = last_eval.get("accuracy", -1.0) if "val_accuracy" in rec else -1.0
            improved = acc > best_acc
            if improved:
                best_acc = acc
                model.set_classes(classes, prompts)
                export_best(model, run_dir, {"epoch": epoch, "val_accuracy": acc, "classes": classes,
                                             "trained_on": cfg.data, "layout": cfg.layout})
            rec["best_val_accuracy"] = best_acc
            metrics_out.write(rec)
            if tb and "val_accuracy" in rec:
                tb.add_scalar("val/accuracy", rec["val_accuracy"], step)
                tb.add_scalar("val/macro_f1", rec["val_macro_f1"], step)
            train_state = {"optimizer": optimizer.state_dict(), "epoch": epoch, "step": step,
                           "sampler": {"epoch": epoch, "seed": cfg.seed}, "rng": ckpt.rng_state(),
                           "best_acc": best_acc}
            ckpt.save_run_checkpoint(run_dir, epoch, model=model, trainable=step_mod.state_dict(),
                                     train_state=train_state, meta={"step": step, "val": last_eval,
                                                                    "model_extra": {"classes": classes}})
            write_status(run_dir, "running", epoch=epoch + 1, epochs=cfg.epochs, step=step, best_acc=best_acc)
            log.info("epoch %d/%d: loss %.4f, val acc %s, %.1f samples/s", epoch + 1, cfg.epochs,
                     rec.get("loss", float("nan")), rec.get("val_accuracy"), rec["samples_per_s"])
        best_acc = float(_bcast_float(best_acc, info))
        barrier(info)
    if tb:
        tb.close()
    hashes = [param_hash(step_mod)]
    if info.distributed:
        box = [None] * info.world_size
        dist.all_gather_object(box, hashes[0])
        hashes = box
    return {"best_val_accuracy": best_acc, "param_hashes": hashes, "last": last_eval, "steps": step, "cache": cache.report(),
            "render_s": render_s, "train_s": time.perf_counter() - run_t0}


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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``affectvlm train`` and ``python -m affectvlm.train`` (also under torchrun)."""
    try:
        cfg = resolve_config(argv)
    except AffectVLMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import signal

    def _on_term(signum, frame):  # SIGTERM (app's Stop button, SLURM pre-emption) -> status "stopped"
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _on_term)
    run_dir = Path(cfg.out)
    if int(os.environ.get("RANK", "0")) == 0:  # one trainer per run folder; then sweep a killed save's leftovers
        try:
            ckpt.lock_run_dir(run_dir)
        except ckpt.RunFolderInUse as e:
            print(f"error: {e}", file=sys.stderr)
            return 3
        for line in ckpt.sweep_run_dir(run_dir):
            print(f"{run_dir}: {line}", file=sys.stderr)
    info = init_distributed_mode(cfg.device)
    try:
        result = train(cfg, info)
        if info.is_main:
            write_status(run_dir, "finished", epoch=cfg.epochs, best_acc=result["best_val_accuracy"])
            ckpt.atomic_write_json(run_dir / "result.json", result)
        return 0
    except KeyboardInterrupt:
        if info.is_main:
            write_status(run_dir, "stopped", message="interrupted")
        return 130
    except AffectVLMError as e:
        log.error("%s", e)
        if info.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            write_status(run_dir, "failed", message=str(e))
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - the app needs the failure in status.json
        log.exception("training failed")
        if info.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            write_status(run_dir, "failed", message=f"{type(e).__name__}: {e}")
        raise
    finally:
        cleanup(info)
        ckpt.unlock_run_dir(run_dir)


if __name__ == "__main__":
    raise SystemExit(main())
