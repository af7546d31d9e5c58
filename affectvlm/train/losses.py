"""Training losses. Each is selectable and weightable (``--losses mc=1,mt=1,clip=1,ce=0``).

- ``mc`` multiview contrastive (:func:`multiview_contrastive_loss`): over every pair (i, j), i != j, of the
  view embeddings of the (global) batch, same-emotion pairs add ``1 - cos(z_i, z_j)`` and different-emotion
  pairs add ``max(0, cos(z_i, z_j) - alpha)``. The two sums are averaged separately (mean over positive
  pairs + mean over negative pairs) so that class balance in a batch does not change the loss scale.
- ``mt`` multiview triplet (:func:`multiview_triplet_loss`): ``max(0, ||z_a - z_p||^2 - ||z_a - z_n||^2 + alpha)``
  with **batch-hard mining over all views in the batch**: every view is an anchor, its positive is the
  farthest view with the same emotion (other views of the same scan included), its negative the nearest
  view with another emotion; averaged over anchors that have both.
- **Centering** (both mc and mt): the view embeddings are centred on their batch mean before the L2
  normalisation. Without it, one point for every embedding is a stationary point of mc + mt (every cosine is
  1, so both terms' gradients vanish; mc then costs ``1 - alpha`` and mt ``alpha``, together a constant 1,
  lower than an uninformative spread-out start) and a random init, whose embeddings of similar faces all lie
  on nearly one point, never leaves it. Centred embeddings cannot collapse (their mean is 0) and a common
  offset cannot lower the loss, so only class structure can. ``center=False`` gives the plain formulas.
- ``alpha`` is one learnable margin shared by mc and mt (:class:`LearnableMargin`), parametrised as
  ``alpha_min + (alpha_max - alpha_min) * sigmoid(raw)`` so it stays in a bounded range. mc pushes alpha
  up, mt pushes it down; the bound keeps either from running away.
- ``clip`` image-text InfoNCE (:func:`clip_infonce_loss`): fused scan embeddings against the embeddings of
  each sample's (augmented) prompt, symmetric cross-entropy over the global batch; samples of the same
  emotion are all counted as positives (uniform soft target), since with 7 classes a batch always holds
  duplicates and treating them as negatives would push same-emotion prompts apart.
- ``ce`` plain cross-entropy on the zero-shot logits (fused embedding x class-prompt classifier).

Under DDP every term is computed on embeddings gathered from all ranks *with gradient*
(:func:`gather_with_grad`), so the loss and gradient equal a single-process run of the same global batch.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from affectvlm.errors import ConfigError

class LearnableMargin(nn.Module):
    """alpha = lo + (hi - lo) * sigmoid(raw), initialised at ``init``."""

    def __init__(self, init: float = 0.3, lo: float = 0.05, hi: float = 0.8, learnable: bool = True):
        super().__init__()
        if not lo < init < hi:
            raise ConfigError(f"margin init {init} must lie strictly between {lo} and {hi}")
        self.lo, self.hi = float(lo), float(hi)
        p = (init - lo) / (hi - lo)
        self.raw = nn.Parameter(torch.tensor(math.log(p / (1 - p))), requires_grad=learnable)

    def forward(self) -> torch.Tensor:
        return self.lo + (self.hi - self.lo) * torch.sigmoid(self.raw)


def _flatten(z: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if z.dim() == 3:  # (B, V, D) -> (B*V, D), labels repeated per view
        b, v, d = z.shape
        return z.reshape(b * v, d), labels.repeat_interleave(v)
    return z, labels


def _center(z: torch.Tensor, center: bool) -> torch.Tensor:
    """Subtract the batch mean (rows), then L2-normalise."""
    if center and len(z) > 1:
        z = z - z.mean(0, keepdim=True)
    return F.normalize(z, dim=-1)


def multiview_contrastive_loss(z: torch.Tensor, labels: torch.Tensor, alpha: torch.Tensor | float,
                               center: bool = True) -> torch.Tensor:
    """L_mc over view embeddings ``z`` ((B, V, D) or (N, D)); see the module docstring."""
    z, labels = _flatten(z, labels)
    z = _center(z, center)
    cos = z @ z.t()
    same = labels[:, None] == labels[None, :]
    off = ~torch.eye(len(labels), dtype=torch.bool, device=z.device)
    pos, neg = same & off, ~same
    loss = z.new_zeros(())
    if pos.any():
        loss = loss + (1 - cos[pos]).mean()
    if neg.any():
        loss = loss + F.relu(cos[neg] - alpha).mean()
    return loss


def multiview_triplet_loss(z: torch.Tensor, labels: torch.Tensor, alpha: torch.Tensor | float,
                           center: bool = True) -> torch.Tensor:
    """L_mt with batch-hard mining over all views (see the module docstring). Embeddings are centred
    (``center``) and L2-normalised."""
    z, labels = _flatten(z, labels)
    z = _center(z, center)
    d2 = (2 - 2 * (z @ z.t())).clamp_min(0)  # squared distance of unit vectors
    same = labels[:, None] == labels[None, :]
    off = ~torch.eye(len(labels), dtype=torch.bool, device=z.device)
    pos, neg = same & off, ~same
    valid = pos.any(1) & neg.any(1)
    if not valid.any():
        return z.sum() * 0
    hardest_pos = d2.masked_fill(~pos, float("-inf")).amax(1)
    hardest_neg = d2.masked_fill(~neg, float("inf")).amin(1)
    return F.relu(hardest_pos - hardest_neg + alpha)[valid].mean()


def clip_infonce_loss(img: torch.Tensor, txt: torch.Tensor, labels: torch.Tensor, logit_scale: torch.Tensor
                      ) -> torch.Tensor:
    """Symmetric image-text InfoNCE; all same-label pairs are positives (uniform soft targets)."""
    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    logits = logit_scale * img @ txt.t()
    target = (labels[:, None] == labels[None, :]).float()
    target = target / target.sum(1, keepdim=True)
    li = -(target * logits.log_softmax(1)).sum(1).mean()
    lt = -(target * logits.t().log_softmax(1)).sum(1).mean()
    return (li + lt) / 2


def zeroshot_ce_loss(img: torch.Tensor, class_txt: torch.Tensor, labels: torch.Tensor, logit_scale: torch.Tensor,
                     label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy of ``logit_scale * img @ class_txt.T`` (C classes) against ``labels``."""
    logits = logit_scale * F.normalize(img, dim=-1) @ F.normalize(class_txt, dim=-1).t()
    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)


def subject_centred_ce_loss(img: torch.Tensor, subject_means: torch.Tensor, class_txt: torch.Tensor,
                            labels: torch.Tensor, logit_scale: torch.Tensor, label_smoothing: float = 0.0
                            ) -> torch.Tensor:
    """Cross-entropy of ``logit_scale * (normalize(img) - subject_means) @ class_txt.T``: each scan against the
    mean normalised embedding of its subject (not normalised again), as ``predict --subject-mean`` scores a
    checkpoint without a training mean (:mod:`affectvlm.subjects`)."""
    logits = logit_scale * (F.normalize(img, dim=-1) - subject_means) @ F.normalize(class_txt, dim=-1).t()
    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all ranks along dim 0, keeping the autograd graph (identity when not distributed)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    import torch.distributed.nn.functional as dnn

    return torch.cat(dnn.all_gather(x.contiguous()), dim=0)


class MultiLoss(nn.Module):
    """Weighted sum of the selected terms; returns (total, {name: value}) including ``alpha``."""

    def __init__(self, weights: dict[str, float], margin_init: float = 0.3, margin_min: float = 0.05,
                 margin_max: float = 0.8, learn_margin: bool = True, center: bool = True,
                 label_smoothing: float = 0.0):
        super().__init__()
        self.weights = dict(weights)
        self.center = center
        self.label_smoothing = float(label_smoothing)
        self.margin = LearnableMargin(margin_init, margin_min, margin_max, learn_margin)

    def forward(self, z_views: torch.Tensor, z_img: torch.Tensor, labels: torch.Tensor,
                z_txt: torch.Tensor | None, class_txt: torch.Tensor | None, logit_scale: torch.Tensor,
                subject_means: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        alpha = self.margin()
        terms: dict[str, torch.Tensor] = {}
        w = self.weights
        if w.get("mc", 0) > 0:
            terms["mc"] = multiview_contrastive_loss(z_views, labels, alpha, self.center)
        if w.get("mt", 0) > 0:
            terms["mt"] = multiview_triplet_loss(z_views, labels, alpha, self.center)
        if w.get("clip", 0) > 0:
            terms["clip"] = clip_infonce_loss(z_img, z_txt, labels, logit_scale)
        if w.get("ce", 0) > 0:
            terms["ce"] = zeroshot_ce_loss(z_img, class_txt, labels, logit_scale, self.label_smoothing)
        if w.get("ces", 0) > 0:
            if subject_means is None:
                raise ValueError("the ces loss needs each scan's subject mean embedding")
            terms["ces"] = subject_centred_ce_loss(z_img, subject_means, class_txt, labels, logit_scale,
                                                   self.label_smoothing)
        total = sum(w[k] * v for k, v in terms.items())
        terms["alpha"] = alpha.detach()
        return total, terms
