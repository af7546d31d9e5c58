"""Hand-computed small cases for the training losses."""
import math

import pytest
import torch

from affectvlm.errors import ConfigError
from affectvlm.train.losses import (LearnableMargin, MultiLoss, clip_infonce_loss, multiview_contrastive_loss,
                                    multiview_triplet_loss, subject_centred_ce_loss, zeroshot_ce_loss)
from affectvlm.trainconfig import parse_loss_weights

Z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
LAB = torch.tensor([0, 0, 1])


def test_mc_hand_computed():
    # positives (0,1),(1,0): 1 - cos = 1 -> mean 1; negatives (0,2),(2,0): 1-0.5; (1,2),(2,1): 0 -> mean 0.25
    assert multiview_contrastive_loss(Z, LAB, 0.5, center=False).item() == pytest.approx(1.25)


def test_mc_views_are_flattened_with_labels():
    z = Z.reshape(3, 1, 2)
    assert multiview_contrastive_loss(z, LAB, 0.5, center=False).item() == pytest.approx(1.25)
    # one sample with two identical views: perfect positive, no negatives -> 0
    z2 = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    assert multiview_contrastive_loss(z2, torch.tensor([3]), 0.2, center=False).item() == pytest.approx(0.0)


def test_mt_batch_hard_hand_computed():
    # anchor0: d(0,1)=2, d(0,2)=0 -> 2.5; anchor1: 2 - 2 + .5 = .5; anchor2 has no positive -> skipped
    assert multiview_triplet_loss(Z, LAB, 0.5, center=False).item() == pytest.approx(1.5)


def test_mt_zero_when_separated_by_margin():
    z = torch.tensor([[1.0, 0.0], [1.0, 0.01], [-1.0, 0.0], [-1.0, 0.01]])
    assert multiview_triplet_loss(z, torch.tensor([0, 0, 1, 1]), 0.5).item() == pytest.approx(0.0, abs=1e-6)


def test_clip_infonce_hand_computed():
    img = torch.eye(2)
    loss = clip_infonce_loss(img, img, torch.tensor([0, 1]), torch.tensor(1.0))
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-5)
    # same label -> both texts are positives: uniform target over 2 equal logits... loss = log 2 - 0 when equal
    l2 = clip_infonce_loss(img, img, torch.tensor([0, 0]), torch.tensor(1.0))
    expected = -(0.5 * math.log(math.e / (math.e + 1)) + 0.5 * math.log(1 / (math.e + 1)))
    assert l2.item() == pytest.approx(expected, rel=1e-5)


def test_ce():
    img = torch.tensor([[1.0, 0.0]])
    cls = torch.eye(2)
    assert zeroshot_ce_loss(img, cls, torch.tensor([0]), torch.tensor(2.0)).item() == pytest.approx(
        math.log(1 + math.exp(-2)), rel=1e-5)


def test_label_smoothing_moves_part_of_the_target_to_every_class():
    img = torch.tensor([[1.0, 0.0]])
    cls = torch.eye(2)
    logp = torch.log_softmax(torch.tensor([2.0, 0.0]), 0)
    want = -(0.95 * logp[0] + 0.05 * logp[1]).item()  # s = 0.1 over 2 classes: 0.95 / 0.05
    crit = MultiLoss({"ce": 1.0}, label_smoothing=0.1)
    total, terms = crit(img[:, None], img, torch.tensor([0]), None, cls, torch.tensor(2.0))
    assert total.item() == pytest.approx(want, rel=1e-5)
    assert want > math.log(1 + math.exp(-2))  # the smoothed loss of a right answer is higher than the plain one


def test_label_smoothing_is_checked_and_recorded(tmp_path):
    from affectvlm.errors import ConfigError
    from affectvlm.trainconfig import resolve_config

    cfg = resolve_config(["--data", str(tmp_path), "--out", str(tmp_path / "run"), "--label-smoothing", "0.1"])
    assert cfg.label_smoothing == 0.1
    with pytest.raises(ConfigError, match="label_smoothing"):
        resolve_config(["--data", str(tmp_path), "--out", str(tmp_path / "run"), "--label-smoothing", "1"])


def test_ces_scores_each_scan_against_its_subject_mean():
    img = torch.tensor([[3.0, 4.0]])  # normalised (0.6, 0.8)
    mean = torch.tensor([[0.6, -0.2]])  # the scan minus it: (0, 1), not normalised again
    cls = torch.eye(2) * 2
    got = subject_centred_ce_loss(img, mean, cls, torch.tensor([1]), torch.tensor(2.0))
    assert got.item() == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-5)
    with pytest.raises(ValueError, match="subject mean"):
        MultiLoss({"ces": 1.0})(img[:, None], img, torch.tensor([1]), None, cls, torch.tensor(2.0))
    both = MultiLoss({"ce": 1.0, "ces": 1.0})(img[:, None], img, torch.tensor([1]), None, cls, torch.tensor(2.0), mean)
    assert set(both[1]) == {"ce", "ces", "alpha"} and both[0].item() == pytest.approx(
        (both[1]["ce"] + both[1]["ces"]).item())


def test_subject_means_follow_each_subject():
    from affectvlm.train.train import TrainStep

    step = TrainStep(torch.nn.Linear(1, 1), MultiLoss({"ce": 1.0}), False, torch.tensor([0, 0, 1, 1]),
                     torch.tensor([2, 2]))
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    first = step.subject_means(torch.tensor([0, 0, 1]), z)
    # a subject's first batch is its own mean; subject 0's two scans are all of it, so the memory becomes that mean
    assert torch.allclose(first, torch.tensor([[0.5, 0.5], [0.5, 0.5], [1.0, 1.0]]))
    again = step.subject_means(torch.tensor([1]), torch.tensor([[3.0, 1.0]]))
    assert torch.allclose(again, torch.tensor([[1.0, 1.0]]))  # before this batch moved it
    # one of subject 1's two scans: the memory moves half way
    assert torch.allclose(step.subject_memory[1], torch.tensor([2.0, 1.0]))
    assert torch.allclose(step.subject_memory[0], torch.tensor([0.5, 0.5]))


def test_margin_bounded_and_learnable():
    m = LearnableMargin(0.3, 0.1, 0.5)
    assert m().item() == pytest.approx(0.3, rel=1e-5)
    opt = torch.optim.SGD(m.parameters(), lr=1000.0)
    for _ in range(20):  # push alpha up hard: it must stay below the bound
        opt.zero_grad()
        (-m()).backward()
        opt.step()
    assert 0.3 < m().item() <= 0.5
    with pytest.raises(ConfigError):
        LearnableMargin(0.9, 0.1, 0.5)


def test_parse_loss_weights():
    assert parse_loss_weights("mc=1,mt=0.5") == {"mc": 1.0, "mt": 0.5, "clip": 0.0, "ce": 0.0, "ces": 0.0}
    for bad in ("xx=1", "mc", "mc=-1", "mc=0", "mc=abc"):
        with pytest.raises(ConfigError):
            parse_loss_weights(bad)


def test_multiloss_gradients_reach_alpha():
    crit = MultiLoss({"mc": 1.0, "mt": 1.0, "clip": 1.0, "ce": 1.0})
    zv = torch.randn(4, 3, 8, requires_grad=True)
    lab = torch.tensor([0, 1, 0, 2])
    total, terms = crit(zv, zv.mean(1), lab, torch.randn(4, 8), torch.randn(3, 8), torch.tensor(10.0))
    total.backward()
    assert set(terms) == {"mc", "mt", "clip", "ce", "alpha"}
    assert crit.margin.raw.grad is not None and zv.grad.abs().sum() > 0


def test_centering_removes_the_collapsed_fixed_point():
    """All embeddings on nearly one point: the plain mc + mt sit at 1 - alpha + alpha with no gradient
    worth the name; the centred losses see the residuals and push the classes apart."""
    torch.manual_seed(0)
    lab = torch.tensor([0, 0, 1, 1, 2, 2])
    common = torch.tensor([5.0, 0, 0, 0, 0, 0, 0, 0])
    resid = torch.randn(6, 3, 8) * 1e-3
    z = (common + resid).requires_grad_(True)
    plain = multiview_contrastive_loss(z, lab, 0.3, center=False) + multiview_triplet_loss(z, lab, 0.3, center=False)
    assert plain.item() == pytest.approx(1.0, abs=1e-3)  # collapse costs a constant: no reason to leave
    (g_plain,) = torch.autograd.grad(plain, z)
    cen = multiview_contrastive_loss(z, lab, 0.3) + multiview_triplet_loss(z, lab, 0.3)
    (g_cen,) = torch.autograd.grad(cen, z)
    assert g_plain.norm() < 1e-2 * g_cen.norm()
    # centring is invariant to a common offset and to scale
    z2 = resid * 50 + torch.tensor([0, 3.0, 0, 0, 0, 0, 0, 0])
    assert multiview_contrastive_loss(z2, lab, 0.3).item() == pytest.approx(
        multiview_contrastive_loss(resid, lab, 0.3).item(), rel=1e-4)


def test_centred_losses_spread_a_collapsed_batch():
    """A few optimiser steps on free embeddings that start collapsed: the centred mc + mt leave the point,
    the plain ones stay (their loss is flat there)."""
    from affectvlm.train.train import embedding_spread

    def run(center: bool) -> float:
        torch.manual_seed(0)
        lab = torch.arange(6).repeat_interleave(4)
        z = (torch.tensor([4.0] + [0.0] * 15) + torch.randn(24, 2, 16) * 1e-3).requires_grad_(True)
        opt = torch.optim.SGD([z], lr=0.5)
        for _ in range(50):
            loss = multiview_contrastive_loss(z, lab, 0.3, center) + multiview_triplet_loss(z, lab, 0.3, center)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return embedding_spread(z.detach().reshape(-1, 16))

    assert run(False) < 0.01 and run(True) > 0.1
