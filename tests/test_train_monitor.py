"""Failure detection (embedding spread, chance accuracy), the train / val / test subject split and the
trainer's defaults; one real trainer process that must stop itself on a collapsing configuration."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from affectvlm.datasets import Sample
from affectvlm.errors import ConfigError
from affectvlm.trainconfig import TrainConfig, resolve_config
from affectvlm.train.monitor import CollapseMonitor, TrainingFailed, chance_level, embedding_spread, failure_hint
from affectvlm.train.splits import carve_val_subjects, split_samples

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def test_spread_on_known_inputs():
    same = torch.tensor([[3.0, 4.0]]).repeat(5, 1)
    assert embedding_spread(same) == pytest.approx(0.0, abs=1e-6)
    # scale does not matter: the rows are L2-normalised first
    assert embedding_spread(same * torch.arange(1, 6).float()[:, None]) == pytest.approx(0.0, abs=1e-6)
    assert embedding_spread(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(1.0)
    for n in (2, 4, 8):
        assert embedding_spread(torch.eye(n) * 7) == pytest.approx(math.sqrt(1 - 1 / n), rel=1e-6)
    # nearly collapsed: small, but not zero
    near = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.01, 0.0], [1.0, 0.0, 0.01]])
    assert 0 < embedding_spread(near) < 0.01
    assert math.isnan(embedding_spread(torch.ones(1, 4)))


def test_monitor_counts_consecutive_low_steps_after_grace():
    m = CollapseMonitor(spread_min=0.01, steps=3, grace=5, chance_epochs=0, hint="use --losses ce=1,clip=1")
    for step in range(1, 6):  # inside the grace period nothing counts
        m.check_step(step, 0.0)
    m.check_step(6, 0.001)
    m.check_step(7, 0.001)
    m.check_step(8, 0.5)  # recovered: the run restarts
    m.check_step(9, 0.001)
    m.check_step(10, 0.001)
    with pytest.raises(TrainingFailed, match=r"collapsed.*step 11 \(spread 0\.0010.*--losses ce=1,clip=1"):
        m.check_step(11, 0.001)
    off = CollapseMonitor(spread_min=0.0, steps=1, grace=0)
    off.check_step(10, 0.0)


def test_monitor_chance_accuracy():
    assert chance_level([0, 0, 1, 2]) == 0.5 and chance_level([]) == 0.0
    m = CollapseMonitor(chance_epochs=3, hint="lower --lr")
    m.check_eval(0, 0.17, 1 / 6, 6)
    m.check_eval(1, 0.60, 1 / 6, 6)  # learning: the count restarts
    m.check_eval(2, 0.16, 1 / 6, 6)
    m.check_eval(3, 0.18, 1 / 6, 6)
    with pytest.raises(TrainingFailed, match="not learning.*3 evaluations up to epoch 5; lower --lr"):
        m.check_eval(4, 1 / 6, 1 / 6, 6)
    CollapseMonitor(chance_epochs=0).check_eval(0, 0.0, 0.5, 2)


def test_failure_hint_names_the_option():
    w = {"mc": 1.0, "mt": 1.0, "clip": 0.0, "ce": 0.0}
    h = failure_hint(TrainConfig(losses="mc=1,mt=1"), w, from_scratch=True)
    assert "'mc,mt'" in h and "--losses ce=1,clip=1" in h and "from scratch" in h
    h = failure_hint(TrainConfig(losses="mc=1,mt=1", loss_center=False), w, from_scratch=True)
    assert "give --loss-center" in h and "--losses ce=1,clip=1" in h
    h = failure_hint(TrainConfig(lr=5.0), {"mc": 0, "mt": 0, "clip": 1, "ce": 1}, from_scratch=False)
    assert "--lr" in h and "too high" in h
    h = failure_hint(TrainConfig(model="AffectVLM-Tiny"), {"ce": 1.0, "clip": 1.0}, from_scratch=True)
    assert "start from a trained model" in h and "use --losses" not in h  # never the losses already in use


def test_every_switch_a_run_saves_can_be_switched_back():
    """--no-loss-center, --amp, --no-aug, --no-prompt-aug, --proto-eval had no opposite: once a run folder's
    config.yaml held them, no command could undo them (the collapse hint said to 'drop' one)."""
    from affectvlm.trainconfig import build_parser

    base = ["--data", "d", "--out", "o"]
    for off, on, key in (("--no-loss-center", "--loss-center", "loss_center"), ("--amp", "--no-amp", "amp"),
                         ("--no-aug", "--aug", "aug"), ("--no-prompt-aug", "--prompt-aug", "prompt_aug"),
                         ("--proto-eval", "--no-proto-eval", "proto_eval"), ("--no-neutral", "--neutral", "include_neutral")):
        a, b = (vars(build_parser().parse_args(base + [x]))[key] for x in (off, on))
        assert a != b, off


def _samples(n_subjects: int, split_of=None) -> list[Sample]:
    out = []
    for i in range(n_subjects):
        sid = f"S{i:03d}"
        for lab in ("happiness", "sadness"):
            out.append(Sample(path=f"/x/{sid}_{lab}.wrl", label=lab, subject=sid, intensity=4,
                              split=split_of(i) if split_of else None))
    return out


def _subjects(xs) -> set[str]:
    return {s.subject for s in xs}


def test_kfold_split_has_disjoint_val():
    cfg = TrainConfig(data="d", out="o", folds=5, fold=1, val_fraction=0.15)
    tr, va, te, src = split_samples(_samples(40), cfg)
    assert len(_subjects(te)) == 8 and len(_subjects(va)) == 5 and len(_subjects(tr)) == 27
    assert not (_subjects(tr) & _subjects(va)) and not (_subjects(tr) & _subjects(te))
    assert not (_subjects(va) & _subjects(te)) and "val = 5" in src
    again = split_samples(_samples(40), cfg)
    assert _subjects(again[1]) == _subjects(va)  # deterministic
    assert split_samples(_samples(40), TrainConfig(folds=5, fold=1, val_fraction=0.0))[1] == []


def test_manifest_split_train_test_carves_val_and_train_val_test_is_kept():
    cfg = TrainConfig(data="d", out="o", split="manifest", val_fraction=0.15)
    two = _samples(37, lambda i: "test" if i >= 27 else "train")  # the tester's 27 + 10
    tr, va, te, _ = split_samples(two, cfg)
    assert len(_subjects(te)) == 10 and len(_subjects(va)) == 4 and len(_subjects(tr)) == 23
    assert not (_subjects(tr) & _subjects(va)) and not (_subjects(va) & _subjects(te))
    assert _subjects(va) == carve_val_subjects({f"S{i:03d}" for i in range(27)}, 0.15, 0)
    three = _samples(12, lambda i: "train" if i < 8 else ("val" if i < 10 else "test"))
    tr, va, te, src = split_samples(three, cfg)
    assert (len(_subjects(tr)), len(_subjects(va)), len(_subjects(te))) == (8, 2, 2) and "manifest" in src
    leak = _samples(4, lambda i: "train") + [Sample("/y.wrl", "happiness", "S000", split="val")]
    with pytest.raises(ConfigError, match="both train and val"):
        split_samples(leak + [Sample("/z.wrl", "sadness", "T9", split="test")], cfg)


@pytest.mark.parametrize("split_of, says", [
    (lambda i: "training" if i < 4 else "test", "8 row(s) say 'training'"),
    (lambda i: "test", "marks no row train (it says test)"),
    (lambda i: "train" if i < 4 else None, "4 of 12 rows have no split value"),
])
def test_a_split_column_that_is_not_a_split_is_named_not_ignored(split_of, says):
    # --split auto used to fall back to k-fold without a word on these (and --split manifest dropped 'training' rows)
    for split in ("auto", "manifest"):
        with pytest.raises(ConfigError, match=f"^d: .*{re.escape(says)}.*--split kfold"):
            split_samples(_samples(6, split_of), TrainConfig(data="d", out="o", split=split))
    assert split_samples(_samples(6, split_of), TrainConfig(data="d", out="o", split="kfold", folds=3))[3].startswith(
        "kfold")


def test_auto_split_is_kfold_without_a_column_or_when_every_row_is_train():
    for split_of in (None, lambda i: "train"):
        *_, src = split_samples(_samples(6, split_of), TrainConfig(data="d", out="o", folds=3))
        assert src.startswith("kfold")
    *_, src = split_samples(_samples(6, lambda i: "train" if i < 4 else "validation"), TrainConfig(data="d", out="o"))
    assert src.startswith("manifest")  # train/val manifest: its val rows are the test, val is carved from train


def test_carve_val_never_takes_every_subject():
    assert carve_val_subjects(["a"], 0.5) == set()
    assert len(carve_val_subjects(["a", "b"], 0.9)) == 1
    assert carve_val_subjects(["a", "b", "c"], 0.0) == set()


def test_a_small_model_renders_supersampled_unless_a_size_is_given():
    from affectvlm.render import RenderSettings, parse_views
    from affectvlm.train.train import MIN_TRAIN_RENDER, render_settings

    small, large = RenderSettings(size=64), RenderSettings(size=224)
    assert MIN_TRAIN_RENDER > 64
    assert render_settings(small, TrainConfig(), parse_views).size == MIN_TRAIN_RENDER
    assert render_settings(large, TrainConfig(), parse_views).size == 224
    assert render_settings(small, TrainConfig(image_size=48), parse_views).size == 48


def test_defaults_fine_tune_the_embedded_model():
    cfg = TrainConfig()
    assert cfg.model == "default"
    from affectvlm.trainconfig import parse_loss_weights

    w = parse_loss_weights(cfg.losses)
    assert w["ce"] > 0 and w["clip"] > 0 and w["mc"] == 0 and w["mt"] == 0
    assert cfg.image_size is None and cfg.views is None and cfg.texture is None  # the model's render settings
    assert 0 < cfg.val_fraction < 1 and cfg.collapse_spread > 0 and cfg.chance_epochs > 0
    cli = resolve_config(["--data", "d", "--out", "o"])
    assert cli.model == "default" and cli.losses == cfg.losses
    assert resolve_config(["--data", "d", "--out", "o", "--init", "AffectVLM-Tiny-RN"]).model == "AffectVLM-Tiny-RN"
    from affectvlm.model.specs import parse_spec

    assert parse_spec(cfg.model).kind == "checkpoint"  # resolves to the embedded weights


def test_collapsing_run_stops_with_one_clear_line(tmp_path):
    """Plain (uncentred) mc + mt from a random init: the embeddings sit on one point; the run must say so
    and fail."""
    from test_train import _env, write_tiny_bu3dfe

    data = write_tiny_bu3dfe(tmp_path / "d", n_subjects=6, intensities=(4,))
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "affectvlm.train", "--data", str(data), "--layout", "bu3dfe", "--out", str(run),
           "--model", "AffectVLM-Test", "--image-size", "32", "--batch-size", "4", "--epochs", "20", "--folds", "3",
           "--losses", "mc=1,mt=1", "--no-loss-center", "--lr", "2e-3", "--warmup", "1", "--collapse-grace", "0", "--collapse-steps", "3",
           "--collapse-spread", "0.05", "--no-progress", "--cache-dir", str(tmp_path / "cache")]
    p = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=240)
    assert p.returncode != 0, p.stderr[-2000:]
    lines = [ln for ln in p.stderr.splitlines() if "collapsed" in ln]
    assert len(lines) == 1, p.stderr[-3000:]
    assert lines[0].startswith("error: training collapsed") and "step 3" in lines[0]
    assert "--losses ce=1,clip=1" in lines[0]
    st = json.loads((run / "status.json").read_text())
    assert st["status"] == "failed" and st["message"].startswith("training collapsed")
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert recs and all("spread" in r for r in recs if r["kind"] == "train")
    assert recs[-1]["step"] == 3 and recs[-1]["spread"] < 0.05


def test_best_is_chosen_on_val_and_test_is_reported_once(tmp_path):
    """splits.json subjects are disjoint; val_* metrics count only val scans; best/ is the best val epoch;
    result.json's test covers exactly the test subjects."""
    from test_train import _env, write_tiny_bu3dfe

    from affectvlm.model import read_meta

    data = write_tiny_bu3dfe(tmp_path / "d", n_subjects=6, intensities=(4,))
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "affectvlm.train", "--data", str(data), "--layout", "bu3dfe", "--out", str(run),
           "--model", "AffectVLM-Test", "--image-size", "32", "--batch-size", "2", "--epochs", "3", "--folds", "3",
           "--val-fraction", "0.5", "--lr", "2e-3", "--warmup", "1", "--no-progress",
           "--cache-dir", str(tmp_path / "cache")]
    p = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    sp = json.loads((run / "splits.json").read_text())["subjects"]
    tr, va, te = set(sp["train"]), set(sp["val"]), set(sp["test"])
    assert (len(tr), len(va), len(te)) == (2, 2, 2) and not (tr & va) and not (tr & te) and not (va & te)
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    ep = [r for r in recs if r["kind"] == "epoch"]
    assert len(ep) == 3 and all(sum(map(sum, r["val_confusion_matrix"])) == 4 for r in ep)  # 2 val subjects x 2
    assert all("spread" in r and 0 <= r["spread"] <= 1 for r in recs)
    assert not any(k.startswith("test") for r in recs for k in r)  # nothing about test during training
    best = max(range(3), key=lambda i: (ep[i]["val_accuracy"], -i))  # first epoch with the best val accuracy
    extra = read_meta(run / "best")["provenance"]["extra"]
    assert extra["epoch"] == best and extra["val_accuracy"] == ep[best]["val_accuracy"]
    res = json.loads((run / "result.json").read_text())
    assert res["test"]["n"] == 4 and res["splits"]["subjects"]["test"] == sorted(te)
    assert json.loads((run / "status.json").read_text())["test_accuracy"] == res["test_accuracy"]
