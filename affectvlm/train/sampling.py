"""Training batches that each hold one group (``affectvlm train --batch-by face_model``).

Batch norm normalises a training batch with that batch's own statistics. In batches drawn from every face model at
once those are the statistics of the mixture; ``predict --adapt`` then normalises a scored set with the statistics
of one face model. With ``--batch-by face_model`` every batch holds a single face model (AdaBN's training recipe),
so the layers after each norm learn from faces normalised the way an adapted set is.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterator, Sequence

import torch

__all__ = ["GroupedSampler"]


class GroupedSampler(torch.utils.data.Sampler[int]):
    """Indices whose every run of ``batch`` (one rank's batch) shares a group: each group's indices shuffled and cut
    into batches (a group's last partial batch sits out that epoch), the batches shuffled and dealt to the ranks in
    turn, the same number to each. Seeded per epoch (:meth:`set_epoch`), like ``DistributedSampler``."""

    def __init__(self, groups: Sequence[str], batch: int, *, num_replicas: int = 1, rank: int = 0, seed: int = 0):
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.groups = list(groups)
        self.batch, self.num_replicas, self.rank, self.seed = batch, num_replicas, rank, seed
        self.epoch = 0
        full = sum(n // batch for n in Counter(self.groups).values())  # the same every epoch
        self._len = (full // num_replicas) * batch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        by: dict[str, list[int]] = {}
        for i, name in enumerate(self.groups):
            by.setdefault(name, []).append(i)
        batches = []
        for name in sorted(by):
            idx = by[name]
            order = [idx[j] for j in torch.randperm(len(idx), generator=g).tolist()]
            batches += [order[k:k + self.batch] for k in range(0, len(order) - self.batch + 1, self.batch)]
        batches = [batches[j] for j in torch.randperm(len(batches), generator=g).tolist()]
        keep = len(batches) - len(batches) % self.num_replicas
        return batches[self.rank:keep:self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        for b in self._batches():
            yield from b

    def __len__(self) -> int:
        return self._len
