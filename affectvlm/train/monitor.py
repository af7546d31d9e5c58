"""Failure detection while training: collapsed embeddings and validation accuracy stuck at chance."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch

from affectvlm.errors import AffectVLMError
from affectvlm.trainconfig import TrainConfig


class TrainingFailed(AffectVLMError):
    """The run stopped itself: embeddings collapsed or validation accuracy stayed at chance."""


def embedding_spread(z: torch.Tensor) -> float:
    """RMS distance of the L2-normalised rows of ``z`` to their mean: sqrt(1 - |mean|^2).

    0 when every embedding is the same point, sqrt(1 - 1/n) for n orthogonal ones, 1 for a set whose
    mean is the origin (e.g. two opposite vectors). Independent of the embedding dimension."""
    if z.shape[0] < 2:
        return float("nan")
    u = torch.nn.functional.normalize(z.detach().float(), dim=-1)
    return float((1.0 - u.mean(0).pow(2).sum()).clamp_min(0).sqrt())


def chance_level(labels: Sequence[int]) -> float:
    """Accuracy of always predicting the most frequent class."""
    if not labels:
        return 0.0
    counts: dict[int, int] = {}
    for y in labels:
        counts[y] = counts.get(y, 0) + 1
    return max(counts.values()) / len(labels)


def failure_hint(cfg: TrainConfig, weights: dict[str, float], from_scratch: bool) -> str:
    """The likely cause of a collapsed / non-learning run and the option to change."""
    active = [k for k, w in weights.items() if w > 0]
    if {"mc", "mt"} & set(active) and not cfg.loss_center:
        return (f"the losses '{','.join(active)}' with uncentred mc/mt collapse"
                f"{' from scratch' if from_scratch else ''} — give --loss-center, or use --losses ce=1,clip=1")
    if not ({"ce", "ces", "clip"} & set(active)):
        return (f"the losses '{','.join(active)}' without 'ce' or 'clip' can collapse"
                f"{' from scratch' if from_scratch else ''} — use --losses ce=1,clip=1 or lower --lr")
    if cfg.lr > 2e-3:
        return f"the learning rate {cfg.lr:g} is likely too high — lower --lr (e.g. {cfg.lr / 10:g})"
    if from_scratch:
        other = "" if set(active) == {"ce", "clip"} else "use --losses ce=1,clip=1, "
        return (f"a random init ({cfg.model}) with --losses {cfg.losses} at --lr {cfg.lr:g} — start from a trained "
                f"model (--model default), {other}or change --lr / --epochs")
    return f"lower --lr (now {cfg.lr:g}) or check the labels and --losses (now {cfg.losses})"


@dataclass
class CollapseMonitor:
    """Counts consecutive low-spread steps and at-chance evaluations; ``check_*`` raise TrainingFailed."""
    spread_min: float = 0.01
    steps: int = 20
    grace: int = 100
    chance_epochs: int = 5
    hint: str = ""
    low_run: int = 0
    chance_run: int = 0
    history: list = field(default_factory=list)

    def check_step(self, step: int, spread: float) -> None:
        if self.spread_min <= 0 or self.steps <= 0 or math.isnan(spread):
            return
        self.low_run = self.low_run + 1 if (step > self.grace and spread < self.spread_min) else 0
        if self.low_run >= self.steps:
            raise TrainingFailed(f"training collapsed: all image embeddings converged to one point at step "
                                 f"{step} (spread {spread:.4f} < {self.spread_min:g} for {self.steps} steps); "
                                 f"{self.hint}")

    def check_eval(self, epoch: int, accuracy: float, chance: float, n_classes: int) -> None:
        if self.chance_epochs <= 0:
            return
        # "at chance": no better than the majority class or uniform guessing, with one sample of slack
        level = max(chance, 1.0 / max(n_classes, 1))
        self.chance_run = self.chance_run + 1 if accuracy <= level + 0.02 else 0
        self.history.append(accuracy)
        if self.chance_run >= self.chance_epochs:
            raise TrainingFailed(f"training is not learning: validation accuracy stayed at chance ({accuracy:.3f}, "
                                 f"chance {level:.3f}) for {self.chance_epochs} evaluations up to epoch {epoch + 1}; "
                                 f"{self.hint}")
