"""AffectVLM.set_input_size: a convolutional image tower takes larger images; the checkpoint keeps the size."""
from __future__ import annotations

import pytest
import torch

from affectvlm.errors import ConfigError
from affectvlm.model import load_model
from affectvlm.model.checkpoint import save_checkpoint


def test_the_tower_takes_the_new_size_and_a_saved_checkpoint_loads_at_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    m = load_model("default", device="cpu", cache=False).eval()
    own = m.image_size[0]  # the embedded model's tower, a ModifiedResNet
    big = own + 32
    x = torch.rand(2, 3, 3, big, big)
    with torch.no_grad():
        resized = m.encode_views(x)  # larger views resized to the tower's own size
        m.set_input_size(own)  # its own size: nothing changes
        assert torch.equal(m.encode_views(x), resized)
        pe = m.clip.visual.attnpool.positional_embedding.detach().clone()
        m.set_input_size(big)
        new = m.clip.visual.attnpool.positional_embedding
        assert m.image_size == (big, big) and new.shape == ((big // 32) ** 2 + 1, pe.shape[1])
        assert torch.equal(new[0], pe[0])  # the pooled token's position is kept; the grid is interpolated
        assert m.preprocess(x[:, 0]).shape[-2:] == (big, big)  # no resize any more
        taken = m.encode_views(x)
        assert taken.shape == resized.shape and not torch.allclose(taken, resized, atol=1e-3)
    save_checkpoint(m, tmp_path / "ck")
    again = load_model(str(tmp_path / "ck"), device="cpu", cache=False).eval()
    with torch.no_grad():
        assert again.image_size == (big, big) and torch.allclose(again.encode_views(x), taken, atol=1e-3)
    assert m.can_take(128) and not m.can_take(100)
    with pytest.raises(ConfigError, match="multiple of 32"):
        m.set_input_size(100)


def test_a_vit_tower_says_it_cannot(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    m = load_model("AffectVLM-Test", device="cpu", cache=False)
    assert not m.can_take(256)
    with pytest.raises(ConfigError, match="cannot be changed"):
        m.set_input_size(256)
