"""Training augmentation: augmented prompts and mixed-view image augmentation.

Exactly what :func:`augment_views` does to a batch of rendered views ``(B, V, 3, H, W)`` (in this order):

1. **View swap** (``swap``, default p = 0.1): for every sample and every view slot independently, with
   probability p the view is replaced by the *same view slot* of another sample in the (local) batch with the
   same emotion label (chosen uniformly; nothing happens if the batch has no other sample of that emotion).
2. **View-angle jitter** (when the cache entry holds extra renders of every view: yaw - j and yaw + j with
   ``angle_jitter`` > 0, and the model's scoring pitches, see :mod:`affectvlm.train.cache`): each view
   independently takes one of its renders, uniformly.
3. **Mirror flip** (``flip``, default p = 0.5), per *sample*, not per view: flipping a left view
   horizontally turns it into a right view of the mirrored face. So a flipped sample has every view
   flipped *and* the slots permuted: slot (yaw, pitch) receives the flipped view of slot (-yaw, pitch).
   The sample stays a valid multiview set of the mirrored face; view slots keep their meaning
   (:func:`affectvlm.render.mirror.mirror_images`, which inference uses too). If the view set is not
   symmetric (some yaw has no -yaw partner) no flip is applied.
4. **Per-view geometric transform**, drawn independently for every view: rotation in the image plane by
   U(-rotate, +rotate) degrees, isotropic scale U(1 - scale, 1 + scale) (zoom in = crop, zoom out = pad
   with the background value 0), shift U(-shift, +shift) of the image width per axis; bilinear resampling.
5. **Per-view shading jitter**: gamma exp(U(-shade, shade)), brightness x U(1 - shade, 1 + shade),
   then clamped to [0, 1].
6. **Random erasing** (``erase``, default p = 0: off), per view: with probability p a rectangle of 20-45 % of
   the image's width and of its height, placed uniformly, is set to the background (0), so that no one face
   region decides alone.

Randomness for steps 2-6 comes from a generator seeded by (seed, epoch, dataset index of the sample), so
a sample gets the same augmentation whatever rank, batch or resume it lands in; step 1 is seeded by
(seed, epoch, step, rank).

Prompts (:func:`sample_prompts`): one prompt per sample from ``PromptSet.augmented`` (templates x synonyms x
intensity words x the subject's sex/age/ethnicity when the dataset has them), drawn with a generator seeded
like the image augmentation.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from affectvlm.render.mirror import mirror_images, mirror_permutation


@dataclass
class AugmentConfig:
    flip: float = 0.5
    rotate: float = 8.0
    scale: float = 0.1
    shift: float = 0.05
    shade: float = 0.15
    swap: float = 0.1
    angle_jitter: float = 0.0
    erase: float = 0.0
    enabled: bool = True
    map: str = "shade"  # what the images show; normal maps: a mirror negates x, no shading jitter


def _seed(*parts: int) -> int:
    h = 1469598103934665603
    for p in parts:  # FNV-1a over the parts: stable across processes (unlike hash())
        h = ((h ^ (int(p) & 0xFFFFFFFFFFFF)) * 1099511628211) % (1 << 63)
    return h


def select_base_views(x: torch.Tensor, n_base: int) -> torch.Tensor:
    """Un-augmented views: the first ``n_base`` of a cache entry (drops the jitter renders)."""
    return x[:, :n_base]


def augment_views(x: torch.Tensor, labels: torch.Tensor, indices: Sequence[int], views: Sequence,
                  cfg: AugmentConfig, *, epoch: int, seed: int, step: int = 0, rank: int = 0) -> torch.Tensor:
    """Augment float images ``x`` (B, V', 3, H, W) in [0, 1]; V' = k V with k - 1 extra renders of every view."""
    n_views = len(views)
    if not cfg.enabled:
        return select_base_views(x, n_views)
    b = x.shape[0]
    k_renders = x.shape[1] // n_views if x.shape[1] % n_views == 0 else 1
    # 1. view swap among same-label samples of the local batch
    if cfg.swap > 0 and b > 1:
        g = random.Random(_seed(seed, epoch, step, rank, 7))
        src = torch.arange(b).repeat(n_views, 1).t().clone()  # (B, V) source sample per slot
        lab = labels.tolist()
        for i in range(b):
            mates = [k for k in range(b) if k != i and lab[k] == lab[i]]
            if not mates:
                continue
            for v in range(n_views):
                if g.random() < cfg.swap:
                    src[i, v] = g.choice(mates)
        if (src != torch.arange(b)[:, None]).any():
            parts = [x[src[:, v], v::n_views] for v in range(n_views)]  # keeps jitter renders with their slot
            x = torch.stack(parts, 1)  # (B, V, k, 3, H, W) with k renders per slot
            x = x.permute(0, 2, 1, 3, 4, 5).reshape(b, -1, *x.shape[3:])
    gens = [torch.Generator().manual_seed(_seed(seed, epoch, int(i), 11)) for i in indices]
    # 2. angle jitter: pick one of each view's renders (base, yaw -j / +j, scoring pitches)
    if k_renders > 1:
        choice = torch.stack([torch.randint(0, k_renders, (n_views,), generator=g) for g in gens])  # (B, V)
        idx = choice * n_views + torch.arange(n_views)[None, :]
        x = torch.gather(x, 1, idx[:, :, None, None, None].expand(-1, -1, *x.shape[2:]))
    else:
        x = select_base_views(x, n_views)
    x = x.clone()
    # 3. mirror flip per sample, with slot permutation
    if cfg.flip > 0 and mirror_permutation(views) is not None:
        for i, g in enumerate(gens):
            if torch.rand((), generator=g).item() < cfg.flip:
                x[i] = mirror_images(x[i], views, cfg.map)
    # 4. per-view affine
    h, w = x.shape[-2:]
    rnd = torch.stack([torch.rand(n_views, 6, generator=g) for g in gens]).reshape(b * n_views, 6)
    u = rnd * 2 - 1  # U(-1, 1)
    ang = u[:, 0] * math.radians(cfg.rotate)
    s = 1 + u[:, 1] * cfg.scale
    tx, ty = u[:, 2] * cfg.shift * 2, u[:, 3] * cfg.shift * 2
    cos, sin = torch.cos(ang) / s, torch.sin(ang) / s
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    flat = x.reshape(b * n_views, 3, h, w)
    grid = F.affine_grid(theta.to(flat.dtype), list(flat.shape), align_corners=False)
    flat = F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if cfg.map == "normal":
        flat = flat.clamp(0, 1)
    else:
        # 5. shading jitter
        gamma = torch.exp(u[:, 4] * cfg.shade)[:, None, None, None]
        bright = (1 + u[:, 5] * cfg.shade)[:, None, None, None]
        flat = (flat.clamp(0, 1) ** gamma * bright).clamp(0, 1)
    # 6. random erasing (drawn after steps 2-5, so a run without it augments exactly as before)
    if cfg.erase > 0:
        er = torch.stack([torch.rand(n_views, 5, generator=g) for g in gens]).reshape(b * n_views, 5)
        for k in torch.nonzero(er[:, 0] < cfg.erase).flatten().tolist():
            eh, ew = int(round(h * (0.2 + 0.25 * er[k, 1].item()))), int(round(w * (0.2 + 0.25 * er[k, 2].item())))
            y0, x0 = int(er[k, 3].item() * (h - eh + 1)), int(er[k, 4].item() * (w - ew + 1))
            flat[k, :, y0:y0 + eh, x0:x0 + ew] = 0.0
    return flat.reshape(b, n_views, 3, h, w)


def sample_prompts(prompts, classes: Sequence[str], samples: Sequence, labels: Sequence[int], indices: Sequence[int],
                   *, epoch: int, seed: int, augment: bool = True) -> list[str]:
    """One prompt per sample; with ``augment`` uses the subject's attributes when known."""
    out = []
    for s, lab, i in zip(samples, labels, indices):
        cname = classes[int(lab)]
        if not augment:
            out.append(prompts.zeroshot_texts(cname)[0])
            continue
        rng = random.Random(_seed(seed, epoch, int(i), 13))
        age = s.age if s.age is not None else None
        out.append(prompts.augmented(cname, rng, intensity=s.intensity, sex=s.sex, age=age, ethnicity=s.ethnicity))
    return out
