"""Training batches kept within one group (``affectvlm train --batch-by``)."""
from __future__ import annotations

import pytest
import torch

from affectvlm.errors import ConfigError
from affectvlm.train.sampling import GroupedSampler
from affectvlm.trainconfig import resolve_config

GROUPS = ["ict"] * 21 + ["mh"] * 13 + ["rb"] * 3 + ["units"] * 9


def _batches(sampler, batch):
    loader = torch.utils.data.DataLoader(list(range(len(GROUPS))), batch_size=batch, sampler=sampler, drop_last=True)
    return [b.tolist() for b in loader]


def test_every_batch_holds_one_group_and_ranks_share_none():
    per_rank = []
    for rank in range(2):
        s = GroupedSampler(GROUPS, 4, num_replicas=2, rank=rank, seed=3)
        s.set_epoch(1)
        batches = _batches(s, 4)
        assert all(len({GROUPS[i] for i in b}) == 1 for b in batches)
        assert len(s) == 4 * len(batches)
        per_rank.append(batches)
    assert len(per_rank[0]) == len(per_rank[1])  # every rank takes as many steps
    seen = [i for batches in per_rank for b in batches for i in b]
    assert len(seen) == len(set(seen))
    # 5 + 3 + 0 + 2 full batches of 4 -> 10, dealt 5 and 5; a group smaller than a batch sits out
    assert len(seen) == 40 and not any(GROUPS[i] == "rb" for i in seen)


def test_order_is_seeded_per_epoch_and_mixes_groups_over_the_epoch():
    def order(epoch, seed=0):
        s = GroupedSampler(GROUPS, 4, seed=seed)
        s.set_epoch(epoch)
        return _batches(s, 4)

    assert order(0) == order(0) and order(0) != order(1) and order(0) != order(0, seed=1)
    assert len({GROUPS[b[0]] for b in order(0)}) == 3  # the epoch visits every group that fills a batch
    assert len(order(0)) == len(order(5))


def test_batch_by_is_checked(tmp_path):
    cfg = resolve_config(["--data", str(tmp_path), "--out", str(tmp_path / "r"), "--batch-by", "face_model"])
    assert cfg.batch_by == "face_model"
    with pytest.raises(SystemExit):
        resolve_config(["--data", str(tmp_path), "--out", str(tmp_path / "r"), "--batch-by", "colour"])
    (tmp_path / "c.yaml").write_text("batch_by: colour\n")
    with pytest.raises(ConfigError, match="batch_by"):
        resolve_config(["--config", str(tmp_path / "c.yaml"), "--data", str(tmp_path), "--out", str(tmp_path / "r")])
