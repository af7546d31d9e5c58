"""Unit tests of the trainer's parts that need no model: config, SLURM parsing, metrics, augmentation,
atomic checkpoints."""
import json
import os
import re
from dataclasses import dataclass

import pytest
import torch

from affectvlm.errors import ConfigError
from affectvlm.train import checkpointing as ck
from affectvlm.render.mirror import mirror_permutation
from affectvlm.train.augment import AugmentConfig, augment_views
from affectvlm.trainconfig import resolve_config, save_config
from affectvlm.train.distributed import first_slurm_host, init_distributed_mode
from affectvlm.runfolder import read_metrics, write_json
from affectvlm.train.metrics import classification_metrics
from affectvlm.train.train import lr_factor


def test_config_precedence(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("epochs: 7\nlr: 0.01\nintensities: [3, 4]\nbatch-size: 8\n")
    cfg = resolve_config(["--config", str(y), "--data", "d", "--out", str(tmp_path / "r"), "--lr", "0.5"])
    assert (cfg.epochs, cfg.lr, cfg.intensities, cfg.batch_size) == (7, 0.5, [3, 4], 8)
    save_config(cfg, tmp_path / "r.yaml")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.yaml").write_text((tmp_path / "r.yaml").read_text())
    again = resolve_config(["--out", str(tmp_path / "r"), "--resume", "--epochs", "9"])  # saved config is base
    assert (again.lr, again.epochs, again.data) == (0.5, 9, os.path.abspath("d"))  # saved absolute
    y.write_text("nonsense_option: 1\n")
    with pytest.raises(ConfigError, match="nonsense_option"):
        resolve_config(["--config", str(y), "--data", "d", "--out", "o"])
    with pytest.raises(ConfigError):
        resolve_config(["--data", "d", "--out", "o", "--epochs", "0"])
    for k in ("0", "1"):  # one message for every fold count that cannot split
        with pytest.raises(ConfigError, match=f"folds must be >= 2: one fold would hold every subject out .got {k}"):
            resolve_config(["--data", "d", "--out", "o", "--folds", k])


@pytest.mark.parametrize("text, says", [
    ("classes: 5\n", "classes must be list or None, got 5"),
    ("lr: fast\n", "lr must be float, got 'fast'"),
    ("epochs: 2.5\n", "epochs must be int, got 2.5"),
    ("amp: 'yes'\n", "amp must be bool, got 'yes'"),
    ("batch_size: [1]\n", "batch_size must be int, got [1]"),
    ("intensities: a,b\n", "intensities: expected comma-separated integers"),
])
def test_a_config_value_of_the_wrong_type_is_one_error(tmp_path, text, says):
    y = tmp_path / "c.yaml"
    y.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(says)):
        resolve_config(["--config", str(y), "--data", "d", "--out", "o"])


def test_a_config_takes_what_yaml_reads_as_text(tmp_path):
    """PyYAML reads ``1e-4`` (no dot) as text, and people quote numbers: a number is taken from text where one
    is wanted, a number where text is wanted (``views: 0``), a single level as a list."""
    y = tmp_path / "c.yaml"
    y.write_text("lr: 1e-4\nepochs: '3'\nviews: 0\nintensities: 4\nlr_text: null\n")
    cfg = resolve_config(["--config", str(y), "--data", "d", "--out", "o"])
    assert (cfg.lr, cfg.epochs, cfg.views, cfg.intensities, cfg.lr_text) == (1e-4, 3, "0", [4], None)
    assert isinstance(cfg.lr, float) and isinstance(cfg.epochs, int)
    y.write_bytes(bytes(range(200, 256)))
    with pytest.raises(ConfigError, match="not a YAML text file"):
        resolve_config(["--config", str(y), "--data", "d", "--out", "o"])
    y.write_text("epochs: [1, 2\nlr: 3\n")  # broken YAML: one line, with where
    with pytest.raises(ConfigError, match=r"invalid YAML at line \d+, column \d+") as e:
        resolve_config(["--config", str(y), "--data", "d", "--out", "o"])
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="workers must be >= 0"):
        resolve_config(["--data", "d", "--out", "o", "--workers", "-1"])


def test_a_run_folder_is_not_continued_on_another_split(tmp_path, monkeypatch):
    """``--resume auto`` continues a folder that holds a checkpoint: with another fold or other data it would test
    on subjects it trained on, so that is refused; the run's own options (or none) continue it."""
    from affectvlm.trainconfig import TrainConfig

    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    (run / "checkpoints" / "epoch_0000").mkdir(parents=True)
    (run / "checkpoints" / "epoch_0000" / "meta.json").write_text("{}")
    save_config(TrainConfig(data="d", out=str(run), folds=3, fold=0), run / "config.yaml")
    assert resolve_config(["--out", str(run)]).data == str(tmp_path / "d")  # the saved relative path, made whole
    assert resolve_config(["--out", str(run), "--data", "d", "--folds", "3", "--epochs", "9"]).epochs == 9
    for other, says in ((["--fold", "1"], "fold 0"), (["--data", "e"], "data"), (["--folds", "9"], "folds 3")):
        with pytest.raises(ConfigError, match=f"holds a run with {says}"):
            resolve_config(["--out", str(run), *other])
    assert resolve_config(["--out", str(run), "--data", "d", "--fold", "1", "--resume", "no"]).fold == 1  # not continued


def test_slurm_env(monkeypatch):
    assert first_slurm_host("gpu[03-05,09],cpu1") == "gpu03"
    assert first_slurm_host("node7") == "node7"
    assert first_slurm_host("gpu[1-2]-ib,cpu1") == "gpu1-ib"  # scontrol keeps what follows the range
    from affectvlm.shard import launch_from_env
    from affectvlm.train.distributed import slurm_port

    # the batch shell of `sbatch --ntasks=4` is one process: not rank 0 of 4 waiting for ranks that never start
    assert launch_from_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "4"}).world == 1
    step = launch_from_env({"SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "2", "SLURM_LOCALID": "1"})
    assert (step.rank, step.world, step.local_rank, step.slurm) == (1, 2, 1, True)
    for bad in ({"RANK": "5", "WORLD_SIZE": "2"}, {"SLURM_PROCID": "3", "SLURM_STEP_NUM_TASKS": "2"}):
        with pytest.raises(ConfigError, match="is not in"):
            launch_from_env(bad)  # was a 30-minute wait in the rendezvous
    assert slurm_port({"SLURM_JOB_ID": "123457"}) != slurm_port({"SLURM_JOB_ID": "123456"})
    for k in ("RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(k, raising=False)
    info = init_distributed_mode("cpu")
    assert not info.distributed and info.world_size == 1 and info.device == "cpu"


def test_metrics():
    m = classification_metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    # F1: a: p=.5 r=.5 -> .5 ; b: p=2/3 r=1 -> .8 ; c: 0
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert m["per_class_accuracy"] == {"a": 0.5, "b": 1.0, "c": 0.0}
    # a class predicted but never true counts, as in scikit-learn's f1_score(average="macro"): happiness and anger
    # true, one anger read as neutral -> F1 neutral 0, happiness 1, anger 2/3 -> 0.556 (not 0.833 over the two true)
    m = classification_metrics([1, 1, 2, 2], [1, 1, 2, 0], ["neutral", "happiness", "anger"])
    assert m["macro_f1"] == pytest.approx((0.0 + 1.0 + 2 / 3) / 3)


def test_lr_schedule():
    assert lr_factor(0, 10, 100) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100) == pytest.approx(1.0)
    assert lr_factor(10, 10, 100) == pytest.approx(1.0)
    assert lr_factor(55, 10, 100) == pytest.approx(0.5)
    assert lr_factor(100, 10, 100) == pytest.approx(0.0, abs=1e-9)


@dataclass
class V:
    yaw: float
    pitch: float = 0.0


def test_flip_swaps_left_and_right_views():
    views = [V(0), V(-30), V(30)]
    assert mirror_permutation(views) == [0, 2, 1]
    assert mirror_permutation([V(0), V(30)]) is None
    x = torch.zeros(1, 3, 3, 4, 4)
    x[0, 1, :, :, 0] = 1.0  # left view: bright first column
    cfg = AugmentConfig(flip=1.0, rotate=0, scale=0, shift=0, shade=0, swap=0)
    out = augment_views(x, torch.tensor([0]), [0], views, cfg, epoch=0, seed=0)
    # the flipped left view lands in the right slot with its bright column on the other side
    assert out[0, 2, :, :, -1].min() > 0.99 and out[0, 1].abs().max() < 1e-6


def test_augment_deterministic_per_sample_and_swap():
    views = [V(0), V(-30), V(30)]
    x = torch.rand(4, 3, 3, 16, 16)
    cfg = AugmentConfig(swap=0.0)
    a = augment_views(x, torch.tensor([0, 1, 0, 1]), [5, 6, 7, 8], views, cfg, epoch=1, seed=3)
    b = augment_views(x[[2, 0]], torch.tensor([0, 0]), [7, 5], views, cfg, epoch=1, seed=3)
    assert torch.allclose(a[[2, 0]], b)  # same sample index -> same transform, whatever the batch
    c = augment_views(x, torch.tensor([0, 1, 0, 1]), [5, 6, 7, 8], views, cfg, epoch=2, seed=3)
    assert not torch.allclose(a, c)
    # swap with p=1 and no other transform: every view comes from the other same-label sample
    plain = AugmentConfig(flip=0, rotate=0, scale=0, shift=0, shade=0, swap=1.0)
    s = augment_views(x, torch.tensor([0, 1, 0, 1]), [0, 1, 2, 3], views, plain, epoch=0, seed=0)
    assert torch.allclose(s[0], x[2].clamp(0, 1), atol=1e-5) and torch.allclose(s[1], x[3], atol=1e-5)
    jit = torch.rand(2, 9, 3, 8, 8)
    out = augment_views(jit, torch.tensor([0, 1]), [0, 1], views, AugmentConfig(angle_jitter=5.0), epoch=0, seed=0)
    assert out.shape == (2, 3, 3, 8, 8)


def test_each_view_takes_one_of_its_renders():
    """An entry with k renders per view (yaw jitter, scoring pitches) gives each view slot one of its own k renders,
    all of them over a batch; off, the base render."""
    views = [V(0), V(-30), V(30)]
    x = torch.zeros(64, 9, 3, 4, 4)
    for g in range(3):  # render group g (base, pitch -10, pitch +10) of view slot v holds (10 g + v) / 100
        for v in range(3):
            x[:, 3 * g + v] = (10 * g + v) / 100
    keep = AugmentConfig(flip=0, rotate=0, scale=0, shift=0, shade=0, swap=0)
    out = augment_views(x, torch.zeros(64), list(range(64)), views, keep, epoch=0, seed=0)
    vals = torch.round(out[:, :, 0, 0, 0] * 100).long()  # (B, V)
    assert ((vals % 10) == torch.arange(3)).all()  # every slot keeps its own view
    assert set((vals // 10).flatten().tolist()) == {0, 1, 2}  # and takes every render group
    off = augment_views(x, torch.zeros(64), list(range(64)), views, AugmentConfig(enabled=False), epoch=0, seed=0)
    assert torch.equal(off, x[:, :3])


def test_random_erasing_blanks_one_rectangle_and_leaves_the_rest():
    views = [V(0), V(-30), V(30)]
    x = torch.full((8, 3, 3, 20, 20), 0.5)
    plain = dict(flip=0, rotate=0, scale=0, shift=0, shade=0, swap=0)
    off = augment_views(x, torch.zeros(8), list(range(8)), views, AugmentConfig(**plain), epoch=0, seed=0)
    assert torch.allclose(off, x)  # erase defaults to off
    out = augment_views(x, torch.zeros(8), list(range(8)), views, AugmentConfig(erase=1.0, **plain), epoch=0, seed=0)
    for img in out.reshape(-1, 3, 20, 20):
        dark = img[0] == 0
        rows, cols = torch.nonzero(dark.any(1)).flatten(), torch.nonzero(dark.any(0)).flatten()
        h, w = len(rows), len(cols)
        assert 4 <= h <= 9 and 4 <= w <= 9 and int(dark.sum()) == h * w  # one rectangle, 20-45 % a side
        assert (img[:, ~dark] == 0.5).all()
    half = augment_views(x, torch.zeros(8), list(range(8)), views, AugmentConfig(erase=0.5, **plain), epoch=0, seed=0)
    erased = (half.reshape(-1, 3, 20, 20)[:, 0] == 0).flatten(1).any(1).float().mean()
    assert 0.2 < erased < 0.8


def test_replace_dir_and_listing(tmp_path):
    d = tmp_path / "checkpoints"
    for e in (0, 1, 2):
        p = d / f"epoch_{e:04d}"
        p.mkdir(parents=True)
        if e != 2:  # epoch 2 is incomplete (no meta.json): ignored
            (p / "meta.json").write_text(json.dumps({"epoch": e}))
    (d / ".tmp-epoch_0003-1").mkdir()
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["epoch_0000", "epoch_0001"]
    new = tmp_path / "new"
    new.mkdir()
    (new / "x").write_text("new")
    ck.replace_dir(new, d / "epoch_0001")
    assert (d / "epoch_0001" / "x").read_text() == "new" and not new.exists()
    write_json(tmp_path / "s.json", {"a": 1})
    assert json.loads((tmp_path / "s.json").read_text()) == {"a": 1}
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 0}\n{"epoch": 1}\n{"epo')
    assert len(read_metrics(tmp_path)) == 2


def test_split_auto_takes_a_manifests_own_split_and_kfold_otherwise():
    from affectvlm.datasets import Sample
    from affectvlm.train.splits import split_samples
    from affectvlm.trainconfig import TrainConfig

    def samples(splits):
        return [Sample(path=f"{s}{i}.obj", label="happiness" if i % 2 else "sadness", subject=f"s{s}",
                       split=sp) for s, sp in enumerate(splits) for i in range(2)]

    cfg = TrainConfig(data="d", out="o")
    assert cfg.split == "auto" and cfg.layout == "auto"
    own = samples(["train"] * 6 + ["val", "test", "test"])
    train, val, test, source = split_samples(own, cfg)
    assert source.startswith("manifest") and {s.subject for s in test} == {"s7", "s8"}
    assert {s.subject for s in val} == {"s6"}
    for splits in ([None] * 10, ["train"] * 10):  # no column, or one that holds nothing out
        assert split_samples(samples(splits), cfg)[3].startswith("kfold"), splits
    for splits in (["train"] * 6 + [None] * 4, ["train"] * 8 + ["holdout"] * 2):  # a split meant, not made: said
        with pytest.raises(ConfigError, match="--split kfold"):
            split_samples(samples(splits), cfg)


def test_a_run_checkpoints_manifest_names_only_its_own_files(tmp_path):
    """meta.json's file names were joined to the folder unchecked: '../../x' hashed a file anywhere."""
    import json

    from affectvlm.train.checkpointing import DamagedCheckpoint, load_run_checkpoint

    (tmp_path / "secret").write_text("x")
    ck = tmp_path / "run" / "checkpoints" / "epoch_0001"
    ck.mkdir(parents=True)
    for name in ("../../../secret", "/etc/passwd", "..", "model/../../../../secret"):
        (ck / "meta.json").write_text(json.dumps({"files": {name: {"size": 1}}}))
        with pytest.raises(DamagedCheckpoint, match="not a file of the checkpoint"):
            load_run_checkpoint(ck)


def test_workers_are_capped():
    from affectvlm.trainconfig import resolve_config

    with pytest.raises(ConfigError, match="workers must be at most 64"):
        resolve_config(["--data", "d", "--out", "o", "--workers", "100000"])


@pytest.mark.parametrize("opts, says", [
    (["--lr", "nan"], "lr must be a finite number"), (["--warmup", "-5"], "warmup must be >= 0"),
    (["--wd", "-1"], "wd must be >= 0"), (["--unlock-last", "-3"], "unlock_last must be >= 0"),
    (["--frames-per-sequence", "0"], "frames_per_sequence must be >= 1"), (["--max-steps", "-1"], "max_steps"),
    (["--margin-min", "0.9", "--margin-max", "0.1"], "margin_min < margin_init < margin_max"),
])
def test_values_no_run_can_use_are_one_line(opts, says):
    """NaN passed 'lr <= 0' and failed in AdamW after the rendering; the others were accepted and trained on."""
    from affectvlm.trainconfig import resolve_config

    with pytest.raises(ConfigError, match=says):
        resolve_config(["--data", "d", "--out", "o", *opts])


def test_resume_without_out_and_a_read_only_run_folder_are_one_line(tmp_path, monkeypatch):
    import os

    from affectvlm.runfolder import lock_run_dir
    from affectvlm.trainconfig import resolve_config

    with pytest.raises(ConfigError, match="--resume needs --out"):
        resolve_config(["--data", "d", "--resume"])
    with pytest.raises(ConfigError, match=r"--resume: no run to continue in .*nosuch \(no config.yaml there\); give "
                                          "--data to start one"):  # it said '--data is required'
        resolve_config(["--out", str(tmp_path / "nosuch"), "--resume"])
    import errno

    from affectvlm import runfolder

    def read_only(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    with monkeypatch.context() as m:  # an existing folder on a read-only file system (root writes chmod-ed ones)
        m.setattr(runfolder.os, "open", read_only)
        with pytest.raises(ConfigError, match="cannot be the run folder .Read-only file system"):
            lock_run_dir(tmp_path)


@pytest.mark.parametrize("rank", [0, 1])
def test_a_full_disk_is_one_line_and_only_rank_0_writes_the_status(tmp_path, monkeypatch, capsys, rank):
    import errno

    from affectvlm import runfolder
    from affectvlm.train import train as train_mod
    from affectvlm.train.distributed import DistInfo

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(train_mod, "train", full)
    monkeypatch.setattr(train_mod, "init_distributed_mode", lambda device: DistInfo(rank=rank, world_size=2))
    monkeypatch.setattr(train_mod, "cleanup", lambda info: None)
    out = tmp_path / "run"
    out.mkdir()
    code = train_mod.main(["--data", str(tmp_path), "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "no space left on the disk" in err and "Traceback" not in err
    status = runfolder.read_status(out)
    assert (status is not None and status.status is runfolder.Status.FAILED) == (rank == 0)


def test_a_dataset_that_is_not_there_leaves_no_run_folder_behind(tmp_path, capsys):
    from affectvlm.train.train import main

    assert main(["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run")]) == 2
    assert "nope: dataset root does not exist" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_a_training_set_smaller_than_one_batch_is_refused_on_any_number_of_ranks():
    from affectvlm.train.train import check_batches
    from affectvlm.trainconfig import TrainConfig

    cfg = TrainConfig(data="d", out="o", batch_size=6)
    for world in (1, 2, 3):  # 3 ranks trained on 4 samples, two of them repeated to fill the shares
        with pytest.raises(ConfigError, match="4 training samples give no full batch of 6"):
            check_batches(cfg, 4, world)
    assert check_batches(cfg, 6, 3) == 2


def _share(rank: int, world: int, store: str, out: str) -> None:
    import torch.distributed as dist

    from affectvlm.errors import InputError
    from affectvlm.train.distributed import DistInfo, share_failure

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    mine = InputError("scans/F0003_SA04WH_F3D.wrl", "truncated VRML") if rank == 1 else None
    got = share_failure(mine, DistInfo(True, rank, world, rank, "gloo", "cpu"))
    with open(f"{out}.{rank}", "w") as f:
        f.write(f"{type(got).__name__}|{getattr(got, 'source', '')}|{got}|{getattr(got, 'shared', False)}")
    dist.destroy_process_group()


def test_a_bad_scan_in_rank_1s_share_is_every_ranks_failure(tmp_path):
    """Rank 1 failed on a bad scan; rank 0 reported 'gloo: connection closed', not final, so torchrun retried."""
    import torch.multiprocessing as mp

    mp.spawn(_share, args=(2, str(tmp_path / "store"), str(tmp_path / "out")), nprocs=2, join=True)
    got = [(tmp_path / f"out.{r}").read_text() for r in range(2)]
    assert got[0] == got[1] == "InputError|scans/F0003_SA04WH_F3D.wrl|scans/F0003_SA04WH_F3D.wrl: truncated VRML|True"
