"""Training operations (issue 12): resume by itself, torchrun restarts, SIGUSR1 pre-emption, --no-resume,
TrainConfig -> argv, and the optional Weights & Biases logger. Real trainer processes on tiny data."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from affectvlm import runfolder
from affectvlm.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from test_train import _env, epochs, max_weight_diff, write_tiny_bu3dfe  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_tiny_bu3dfe(tmp_path_factory.mktemp("ops-data"))


def _args(data: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    """6 subjects x 4 scans, 3 folds: 12 training scans, batch 2 -> 6 optimizer steps per epoch."""
    return ["--data", str(data), "--layout", "bu3dfe", "--out", str(out), "--model", "AffectVLM-Test",
            "--epochs", "2", "--batch-size", "2", "--folds", "3", "--image-size", "32", "--views", "0",
            "--lr", "0.002", "--warmup", "1", "--no-progress", "--cache-dir", str(cache), "--aug-swap", "0",
            "--seed", "1", "--losses", "ce=1,clip=1", *extra]


def _train(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "affectvlm.train", *args], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def _dry_run(args: list[str], capsys) -> dict:
    """``--dry-run`` through the trainer's own ``main`` in this process (a real process costs a torch start)."""
    from affectvlm.train.train import main

    capsys.readouterr()
    assert main([*args, "--dry-run"]) == 0
    return json.loads(capsys.readouterr().out)


def _wait_for(pred, proc: subprocess.Popen, what: str, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not pred():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.time() < deadline, f"no {what} after {timeout}s"
        time.sleep(0.02)


def _train_records(run: Path) -> list[dict]:
    return [r.to_json() for r in runfolder.read_metrics(run) if r.kind == "train"]


def test_relaunch_of_the_same_command_continues_from_the_last_checkpoint(tiny, tmp_path):
    """SIGKILL after the first checkpoint, then the very same command (no resume flag) finishes the run:
    the epoch counter continues, no metric record is duplicated, the steps keep counting."""
    run, cache = tmp_path / "run", tmp_path / "cache"
    args = _args(tiny, run, cache, "--epochs", "3")
    proc = subprocess.Popen([sys.executable, "-m", "affectvlm.train", *args], cwd=REPO, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: runfolder.list_checkpoints(run), proc, "a first checkpoint")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    done_before = [r["epoch"] for r in epochs(run)]
    assert done_before and done_before[-1] < 2
    assert runfolder.read_status(run).status is runfolder.Status.CRASHED  # killed: no final word
    p = _train(args)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "resumed from" in p.stderr and "epoch_000" in p.stderr
    recs = epochs(run)
    assert [r["epoch"] for r in recs] == [0, 1, 2]
    assert [r["step"] for r in recs] == [6, 12, 18]
    steps = [r["step"] for r in _train_records(run)]
    assert steps == sorted(set(steps))  # train records of the replayed part are not duplicated
    assert runfolder.read_status(run).status is runfolder.Status.FINISHED


def _at_levels_3_4(metrics: dict) -> float:
    """An ``affectvlm eval`` accuracy counted over its intensities 3-4 (what the trainer's choices count)."""
    per = [metrics["per_intensity"][k] for k in ("3", "4") if k in metrics["per_intensity"]]
    return sum(g["n"] * g["accuracy"] for g in per) / sum(g["n"] for g in per)


def _one_scan(metrics: dict) -> float:
    """One scan's share of :func:`_at_levels_3_4`'s count. A one-epoch model leaves some scans on a near-tie that the
    thread count or batch size can tip (eval in this process against the run's own scoring), so figures that should
    agree may differ by one scan; reading a scan another way (the choice ignored) moves them by more."""
    return 1.0 / sum(metrics["per_intensity"][k]["n"] for k in ("3", "4") if k in metrics["per_intensity"]) + 1e-9


def _eval_reads_as_the_run(run: Path, cache: Path) -> None:
    """``affectvlm eval`` on the run folder gives the confusion matrix the run reported for its test subjects."""
    out = run.parent / f"{run.name}-eval.json"
    p = subprocess.run([sys.executable, "-m", "affectvlm.train.evaluate", "--model", str(run), "--out", str(out),
                        "--cache-dir", str(cache)], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=200)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(out.read_text())["confusion_matrix"] == json.loads((run / "result.json").read_text())["test"][
        "confusion_matrix"]


def test_a_run_without_an_image_size_saves_the_size_it_rendered_at(tiny, tmp_path):
    """A small model trains on MIN_TRAIN_RENDER renders; config.yaml and best/ keep that size, so a resume or a
    later default does not change how the run renders. The embedded model scores each view also at its
    score_pitches: the run renders those too, and its test figure is what `affectvlm eval` gives its checkpoint."""
    import numpy as np
    import yaml

    from affectvlm.train.train import MIN_TRAIN_RENDER

    args = _args(tiny, tmp_path / "run", tmp_path / "cache", "--epochs", "1", "--max-steps", "1")
    i = args.index("--image-size")
    del args[i:i + 2]
    args[args.index("AffectVLM-Test")] = "default"  # the embedded model renders at 64 px
    r = _train(args)
    assert r.returncode == 0, r.stderr[-2000:]
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["image_size"] == MIN_TRAIN_RENDER
    best = json.loads((tmp_path / "run" / "best" / "affectvlm.json").read_text())
    assert best["render"]["size"] == MIN_TRAIN_RENDER
    pitches = best["render"]["score_pitches"]
    assert pitches and f"each also at pitch {', '.join(f'{p:+g}' for p in pitches)}" in r.stderr
    entries = list((tmp_path / "cache").rglob("*.npy"))
    assert entries and {np.load(e).shape[0] for e in entries} == {1 + len(pitches)}  # --views 0 at 0 and each pitch
    _eval_reads_as_the_run(tmp_path / "run", tmp_path / "ev-cache")  # scored as predict scores


def test_the_run_chooses_on_val_whether_predict_scores_against_the_neutral_scan(tmp_path):
    """best/ records whether its validation subjects read better against their NE00 scans (what `affectvlm predict
    --neutral auto` then does); the validation and test figures both ways are what `affectvlm eval` gives."""
    data = write_tiny_bu3dfe(tmp_path / "data", n_subjects=9, neutral=True,
                             codes=(("HA", 1.0), ("SA", -1.0), ("SU", 0.5), ("AN", -0.5)))
    args = _args(data, tmp_path / "run", tmp_path / "cache", "--epochs", "1", "--val-fraction", "0.4")
    r = _train(args)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    got = result["neutral_reference"]
    assert got["chosen"] == (got["val"]["against_neutral"] > got["val"]["alone"]) and got["val"]["rescored"] > 0
    assert json.loads((tmp_path / "run" / "best" / "affectvlm.json").read_text())["neutral_reference"] is got["chosen"]
    assert "each scan against its subject's neutral scan" in r.stderr
    # each epoch's record also reads the validation subjects at levels 3-4 (one epoch: best/ as it was scored)
    assert epochs(tmp_path / "run")[-1]["val_accuracy_intensity_3_4"] == pytest.approx(got["val"]["alone"], abs=1e-6)
    assert "val acc" in r.stderr and "(intensities 3-4: " in r.stderr
    assert re.search(r"val acc \d\.\d{4} \(", r.stderr), r.stderr[-1500:]  # not 0.16666666666666666
    from affectvlm.train.evaluate import main as evaluate

    def ev(*opts: str, out: Path, process: bool = False) -> dict:
        """`affectvlm eval` on the run: the first as a real process, the rest in this one (the same main)."""
        argv = ["--model", str(tmp_path / "run"), *opts, "--out", str(out), "--cache-dir", str(tmp_path / "ev-cache")]
        if process:
            p = subprocess.run([sys.executable, "-m", "affectvlm.train.evaluate", *argv], cwd=REPO, env=_env(),
                               capture_output=True, text=True, timeout=200)
            assert p.returncode == 0, p.stderr[-2000:]
        else:
            assert evaluate(argv) == 0
        return json.loads(out.read_text())

    for subset in ("val", "test"):  # affectvlm eval gives the same four figures, finding the NE00 scans by name
        for spec, key in (("*_NE00*", "against_neutral"), ("none", "alone")):
            read = ev("--subset", subset, "--neutral", spec, out=tmp_path / f"ev-{subset}-{key}.json",
                      process=subset == "val" and key == "alone")
            # the choice counts the expressive scans at levels 3-4; the neutral scans are references
            assert _at_levels_3_4(read) == pytest.approx(got[subset][key], abs=_one_scan(read)), (subset, key)
            # the figures may coincide, so the scans read against their neutral scans are counted too
            assert read.get("neutral_reference", {}).get("rescored", 0) == (got[subset]["rescored"] if spec != "none"
                                                                          else 0), (subset, key)
    # and whether predict --subject-mean auto scores each subject relative to its mean (9 scans of 5 classes each),
    # against how it scores without that, given the neutral choice; eval gives both figures
    sm = result["subject_mean"]
    assert sm["val"]["rescored"] > 0 and sm["chosen"] == (sm["val"]["subject_mean"] > sm["val"]["as_scored"])
    assert json.loads((tmp_path / "run" / "best" / "affectvlm.json").read_text())["subject_mean"] is sm["chosen"]
    assert "each subject relative to its own mean" in r.stderr
    for subset in ("val", "test"):
        for mode, key in (("auto", "subject_mean" if sm["chosen"] else "as_scored"), ("none", "as_scored")):
            got_sm = ev("--subset", subset, "--neutral", "auto", "--subject-mean", mode,
                        out=tmp_path / f"ev-{subset}-sm-{mode}.json")
            assert _at_levels_3_4(got_sm) == pytest.approx(sm[subset][key], abs=_one_scan(got_sm)), (subset, mode)
            assert ("subject_mean" in got_sm) == (mode == "auto" and sm["chosen"])


def test_the_ces_loss_trains_against_each_subjects_running_mean(tiny, tmp_path):
    """--losses ...,ces=1 runs in a real trainer process, logs its term and adds it to the loss."""
    r = _train(_args(tiny, tmp_path / "run", tmp_path / "cache", "--epochs", "1", "--losses", "ce=1,clip=1,ces=1"))
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [row for row in rows if row["kind"] == "train"]
    assert train and all("ces" in row for row in train)
    epoch = next(row for row in rows if row["kind"] == "epoch")
    assert epoch["loss"] == pytest.approx(epoch["ce"] + epoch["clip"] + epoch["ces"], rel=1e-4)


def test_no_resume_refuses_a_run_folder_with_checkpoints(tiny, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / "epoch_0003").mkdir(parents=True)
    (run / "status.json").write_text('{"status": "stopped"}')
    p = _train(_args(tiny, run, tmp_path / "cache", "--no-resume"), timeout=60)
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert "already holds checkpoints (epoch_0003)" in p.stderr and "--no-resume" in p.stderr
    assert json.loads((run / "status.json").read_text()) == {"status": "stopped"}  # untouched


def test_resume_modes_and_saved_config(tmp_path):
    from affectvlm.trainconfig import resolve_config, save_config

    run = tmp_path / "run"
    base = ["--data", "d", "--out", str(run)]
    assert resolve_config(base).resume == "auto"
    assert resolve_config([*base, "--resume"]).resume == "yes"
    assert resolve_config([*base, "--no-resume"]).resume == "no"
    with pytest.raises(SystemExit):
        resolve_config([*base, "--resume", "maybe"])
    run.mkdir()
    save_config(resolve_config([*base, "--epochs", "7", "--resume"]), run / "config.yaml")
    # auto without a checkpoint: the command line alone; with one: the saved config.yaml is the base
    assert resolve_config(base).epochs == 36
    (run / "checkpoints" / "epoch_0000").mkdir(parents=True)
    (run / "checkpoints" / "epoch_0000" / "meta.json").write_text("{}")
    cfg = resolve_config(base)
    assert cfg.epochs == 7 and cfg.resume == "auto"  # the saved "yes" is not carried over
    assert resolve_config([*base, "--epochs", "9"]).epochs == 9
    (run / "old.yaml").write_text("data: d\nout: x\nresume: true\ntensorboard: true\n")
    old = resolve_config(["--config", str(run / "old.yaml")])  # config files from before --resume auto
    assert old.resume == "yes" and old.report_to == "tensorboard"


def test_train_config_to_argv_round_trip():
    from affectvlm.trainconfig import TrainConfig, resolve_config

    argv = ["--data", "/d", "--out", "/o", "--views", "-30,0,30", "--intensities", "3,4", "--classes",
            "happiness,sadness", "--no-aug", "--texture", "--no-crop", "--lr", "2e-05", "--freeze", "text",
            "--report-to", "wandb,tensorboard", "--no-resume", "--model", "AffectVLM-Test", "--max-steps", "5",
            "--margin-min", "-0.5"]
    cfg = resolve_config(argv)
    back = resolve_config(cfg.to_argv())
    assert back == cfg and back.views == "-30,0,30" and back.intensities == [3, 4] and back.texture is True
    assert back.render_crop is False and back.resume == "no" and back.margin_min == -0.5
    assert resolve_config(["--data", "/d", "--out", "/o"]).to_argv() == ["--data=/d", "--out=/o"]
    with pytest.raises(ConfigError, match="no command-line form"):
        TrainConfig(data="d", out="o", extra={"x": 1}).to_argv()


def test_stop_signals_defer_inside_steps(monkeypatch):
    from affectvlm.train.distributed import DistInfo
    from affectvlm.train.stopping import StopSignals, StopTraining

    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP, signal.SIGINT)}
    try:
        stop = StopSignals().install()
        with stop.deferred():
            os.kill(os.getpid(), signal.SIGUSR1)  # only noted: the step finishes
            os.kill(os.getpid(), signal.SIGTERM)  # forwarded again by torchrun: still one request
            assert stop.received == signal.SIGUSR1 and stop.agreed(DistInfo()) == signal.SIGUSR1
        with pytest.raises(StopTraining) as e:
            with stop.deferred():  # a signal noted before: stops at the next safe point
                pass
        assert e.value.preempted
        stop = StopSignals().install()
        assert stop.agreed(DistInfo()) is None
        with pytest.raises(StopTraining) as e:
            os.kill(os.getpid(), signal.SIGUSR1)  # outside the steps: at once
        assert e.value.preempted
        stop = StopSignals().install()
        with pytest.raises(StopTraining) as e:
            with stop.deferred():
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: the step finishes, then a checkpoint
                assert stop.agreed(DistInfo()) == signal.SIGTERM  # the same request as SIGTERM's
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C again: now
                raise AssertionError("a second Ctrl-C did not stop at once")
        assert not e.value.preempted and e.value.signum == signal.SIGINT
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGINT], ids=["SIGUSR1", "ctrl-c"])
def test_sigusr1_or_ctrl_c_writes_a_complete_checkpoint_and_the_next_run_matches(tiny, tmp_path, sig):
    """SLURM's pre-emption warning (or Ctrl-C at a terminal): the trainer finishes its step, writes a complete
    checkpoint, exits 75 (the template requeues on it; 130 after Ctrl-C); the same command then continues inside
    the epoch, and the result is the uninterrupted run's."""
    from affectvlm.train import checkpointing
    from affectvlm.train.stopping import PREEMPTED_EXIT, STOPPED_EXIT

    cache = tmp_path / "cache"
    ref = tmp_path / "ref"
    p = _train(_args(tiny, ref, cache))
    assert p.returncode == 0, p.stderr[-3000:]
    run = tmp_path / "run"
    args = _args(tiny, run, cache)
    proc = subprocess.Popen([sys.executable, "-m", "affectvlm.train", *args], cwd=REPO, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: any(r["step"] >= 1 for r in _train_records(run)), proc, "a first step")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    preempted = sig == signal.SIGUSR1
    assert proc.returncode == (PREEMPTED_EXIT if preempted else STOPPED_EXIT), err[-3000:]
    assert runfolder.read_status(run).status is (runfolder.Status.PREEMPTED if preempted else runfolder.Status.STOPPED)
    last = runfolder.list_checkpoints(run)[-1]
    weights, state, meta = checkpointing.load_run_checkpoint(last)  # complete: the manifest checks out
    assert meta["mid_epoch"] and 0 < state["epoch_step"] < 6 and state["step"] == state["epoch_step"]
    p = _train(args)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "steps into the epoch" in p.stderr
    a, b = epochs(ref), epochs(run)
    assert [r["epoch"] for r in b] == [0, 1]
    assert b[-1]["loss"] == pytest.approx(a[-1]["loss"], rel=1e-4, abs=1e-5)
    assert max_weight_diff(ref, run) < 1e-4
    assert [r["step"] for r in _train_records(run)] == [r["step"] for r in _train_records(ref)]


def test_torchrun_does_not_rerun_a_failure_the_same_options_meet_again(tiny, tmp_path):
    """The app launches with --max-restarts: a run that fails on purpose (a batch larger than the data, training
    that does not learn) used to be run again from its last checkpoint, defeating the not-learning guard."""
    run, cache = tmp_path / "run", tmp_path / "cache"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
           "--max-restarts", "2", "-m", "affectvlm.train", *_args(tiny, run, cache, "--batch-size", "64")]
    p = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode != 0
    assert out.count("give no full batch") == 3, out[-4000:]  # the failure, then each restart says it again
    assert out.count("not retried: the same options would fail the same way") == 2, out[-4000:]
    st = runfolder.read_status(run)
    assert st.status is runfolder.Status.FAILED and st.reason == "ConfigError" and "no full batch" in st.message


def test_two_ranks_say_an_error_every_rank_meets_once(tiny, tmp_path):
    """torchrun with two gloo ranks: a bad --data and a truncated scan in one rank's share each fail both ranks, and
    the terminal gets one ``error:`` line (it got one per rank)."""
    data = tmp_path / "data"
    shutil.copytree(tiny, data)
    bad = next(data.rglob("*_SA03WH_F3D.wrl"))
    bad.write_bytes(bad.read_bytes()[:300])
    run, cache = tmp_path / "run", tmp_path / "cache"

    def errors(*args: str) -> list[str]:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "affectvlm.train", *args]
        p = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
        assert p.returncode != 0
        return [line for line in p.stderr.splitlines() if "error: " in line and "ChildFailedError" not in line]

    said = errors(*_args(tmp_path / "missing", run, cache))
    assert len(said) == 1 and said[0].startswith("error: ") and "missing: dataset root does not exist" in said[0], said
    said = errors(*_args(data, run, cache))
    assert len(said) == 1 and said[0].startswith("error: ") and bad.name in said[0], said
    st = runfolder.read_status(run)
    assert st.status is runfolder.Status.FAILED and bad.name in st.message


@pytest.mark.slow
def test_torchrun_restarts_a_killed_worker_and_the_run_continues_by_itself(tiny, tmp_path):
    """torchrun --max-restarts 1 with two gloo ranks: rank 0 is SIGKILLed after the first checkpoint;
    torchrun restarts the group with the same arguments and the trainer resumes on its own."""
    run, cache = tmp_path / "run", tmp_path / "cache"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "--max-restarts", "1", "-m", "affectvlm.train", *_args(tiny, run, cache, "--epochs", "3",
                                                                    "--batch-size", "4")]
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: runfolder.list_checkpoints(run), proc, "a first checkpoint", timeout=300)
        rank0 = json.loads((run / "status.json").read_text())["pid"]
        os.kill(rank0, signal.SIGKILL)
        out, _ = proc.communicate(timeout=400)
    finally:
        proc.kill()
    assert proc.returncode == 0, out[-4000:]
    assert "resumed from" in out
    recs = epochs(run)
    assert [r["epoch"] for r in recs] == [0, 1, 2] and recs[-1]["world_size"] == 2
    assert [r["step"] for r in recs] == [3, 6, 9]
    assert runfolder.read_status(run).status is runfolder.Status.FINISHED
    res = runfolder.read_result(run)
    assert len(set(res["param_hashes"])) == 1  # the restarted ranks are in sync


@pytest.mark.slow
def test_preemption_signal_through_torchrun_then_the_same_command_continues(tiny, tmp_path):
    """What the SLURM template does: SIGUSR1 to the whole job step (launcher and workers, as SLURM signals
    it; torchrun forwards it again with --signals-to-handle): both ranks stop after the same step, rank 0
    writes a complete checkpoint and the folder says ``preempted``; the same command then finishes the run."""
    run, cache = tmp_path / "run", tmp_path / "cache"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "--max-restarts", "1", "-m", "affectvlm.train", *_args(tiny, run, cache, "--batch-size", "4")]
    env = {**_env(), "PET_SIGNALS_TO_HANDLE": "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1",
           "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": "100"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        _wait_for(lambda: _train_records(run), proc, "a first step", timeout=300)
        os.killpg(proc.pid, signal.SIGUSR1)
        out, _ = proc.communicate(timeout=200)
    finally:
        proc.kill()
    assert proc.returncode != 0, out[-3000:]  # torchrun reports the signal; the run folder says what happened
    status = subprocess.run([sys.executable, "-m", "affectvlm.runfolder", str(run)], cwd=REPO, env=_env(),
                            capture_output=True, text=True, timeout=60)
    assert status.stdout.strip() == "preempted", out[-3000:]
    from affectvlm.train import checkpointing

    checkpointing.load_run_checkpoint(runfolder.list_checkpoints(run)[-1])  # complete
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from" in again.stderr
    assert [r["epoch"] for r in epochs(run)] == [0, 1] and [r["step"] for r in epochs(run)] == [3, 6]
    assert runfolder.read_status(run).status is runfolder.Status.FINISHED


def test_report_to_wandb_missing_package_is_one_clear_error(tmp_path, monkeypatch):
    from affectvlm.train.report import Reporter
    from affectvlm.trainconfig import parse_report_to

    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    with pytest.raises(ConfigError, match="needs the wandb package") as e:
        Reporter(tmp_path, ["wandb"])
    assert "\n" not in str(e.value) and "WANDB_MODE=offline" in str(e.value)
    assert parse_report_to("TensorBoard, wandb,wandb") == ["tensorboard", "wandb"] and parse_report_to("none") == []
    with pytest.raises(ConfigError, match="unknown logger"):
        parse_report_to("mlflow")


def test_report_to_wandb_logs_scalars_and_keeps_one_run_per_folder(tmp_path, monkeypatch):
    import types

    calls: list = []

    class FakeRun:
        def __init__(self, **kw):
            self.id, self.kw = kw["id"], kw
            calls.append(("init", kw))

        def log(self, values, step):
            calls.append(("log", values, step))

        def finish(self):
            calls.append(("finish",))

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=lambda **kw: FakeRun(**kw)))
    from affectvlm.train.report import Reporter

    rep = Reporter(tmp_path / "run", ["wandb"], config={"lr": 0.1})
    rep.scalars("train", {"loss": 0.5, "kind": "train", "flag": True, "n": 3}, step=10)
    rep.close()
    init = calls[0][1]
    assert init["dir"] == str(tmp_path / "run") and init["config"] == {"lr": 0.1} and init["resume"] == "allow"
    assert calls[1] == ("log", {"train/loss": 0.5, "train/n": 3.0}, 10) and calls[2] == ("finish",)
    Reporter(tmp_path / "run", ["wandb"]).close()  # a resumed trainer continues the same W&B run
    assert calls[3][1]["id"] == init["id"]


def test_report_to_wandb_offline_writes_the_run_without_a_network(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    from affectvlm.train.report import Reporter

    rep = Reporter(tmp_path / "run", ["wandb"], config={"lr": 0.1})
    rep.scalars("train", {"loss": 0.5}, step=1)
    rep.close()
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))


def test_documented_launches_restart_workers():
    from affectvlm.app.launch import TrainLaunch, torchrun_command

    cmd = torchrun_command(TrainLaunch(run_dir=Path("/w/r"), train_args=["--out", "/w/r"]))
    assert int(cmd[cmd.index("--max-restarts") + 1]) >= 1 and cmd.index("--max-restarts") < cmd.index("-m", 3)
    sbatch = (REPO / "scripts" / "slurm" / "train.sbatch").read_text()
    for line in ("#SBATCH --requeue", "#SBATCH --signal=USR1@120", "--max-restarts", "SIGUSR1",
                 'scontrol requeue "$SLURM_JOB_ID"', "python -m affectvlm.runfolder"):
        assert line in sbatch, line
    assert subprocess.run(["bash", "-n", str(REPO / "scripts" / "slurm" / "train.sbatch")]).returncode == 0
    readme = (REPO / "README.md").read_text()
    assert readme.count("--max-restarts") >= 2


def test_the_run_chooses_on_val_whether_predict_adapts_its_checkpoint_to_a_set(tmp_path, capsys):
    """best/ records whether its validation subjects read better with the encoder adapted to their scans (what
    `affectvlm predict --adapt auto` then does); the as-trained figure is what `affectvlm eval` gives."""
    data = write_tiny_bu3dfe(tmp_path / "data", n_subjects=24, intensities=(1, 2, 3, 4))  # val: 72 of 192 scans
    args = _args(data, tmp_path / "run", tmp_path / "cache", "--epochs", "1", "--val-fraction", "0.45")
    args[args.index("AffectVLM-Test")] = "default"  # a model with batch norm, as users fine-tune
    args[args.index("0.002")] = "1e-4"  # one gentle epoch: best/ reads levels 3-4 and every level differently
    r = _train(args, timeout=400)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads((tmp_path / "run" / "result.json").read_text())["adapt_to_set"]
    assert got["val"]["scans"] >= 50 and got["chosen"] == (got["val"]["adapted"] > got["val"]["trained"])
    assert json.loads((tmp_path / "run" / "best" / "affectvlm.json").read_text())["adapt_to_set"] is got["chosen"]
    assert "adapted to the validation subjects'" in r.stderr
    out = tmp_path / "ev.json"
    p = subprocess.run([sys.executable, "-m", "affectvlm.train.evaluate", "--model", str(tmp_path / "run"),
                        "--subset", "val", "--out", str(out), "--cache-dir", str(tmp_path / "ev-cache")],
                       cwd=REPO, env=_env(), capture_output=True, text=True, timeout=200)
    assert p.returncode == 0, p.stderr[-2000:]
    # judged on the validation scans at levels 3-4 (the run's headline levels), not on levels 1-2
    ev = json.loads(out.read_text())
    assert _at_levels_3_4(ev) == pytest.approx(got["val"]["trained"], abs=1e-6)
    assert ev["accuracy"] != pytest.approx(got["val"]["trained"], abs=1e-6)  # so a check on every level would fail
    # --subset train: the run's training subjects, scored as val and test are (how far the run generalises)
    from affectvlm.train.evaluate import main as eval_main

    subjects = json.loads((tmp_path / "run" / "splits.json").read_text())["subjects"]
    assert eval_main(["--model", str(tmp_path / "run"), "--subset", "train", "--out", str(tmp_path / "tr.json"),
                      "--cache-dir", str(tmp_path / "ev-cache")]) == 0
    tr = json.loads((tmp_path / "tr.json").read_text())
    assert tr["subset"] == "train" and tr["n_subjects"] == len(subjects["train"]) and tr["n"] == 8 * tr["n_subjects"]
    assert ev["n_subjects"] == len(subjects["val"]) and not set(subjects["train"]) & set(subjects["val"])
    # another fold of a run is not its test subjects: refused, not scored as the run's own fold
    capsys.readouterr()
    assert eval_main(["--model", str(tmp_path / "run"), "--fold", "3", "--out", str(tmp_path / "f3.json")]) == 2
    assert "--fold 3: " in capsys.readouterr().err and not (tmp_path / "f3.json").exists()


def test_a_4d_run_chooses_on_its_validation_sequences_whether_predict_adapts(tmp_path):
    """A set of only sequences (BU-4DFE) is judged too: best/ adapted to the validation sequences as predict adapts
    to sequences, against as trained, on the validation frames."""
    from meshgen import face_like_mesh

    from affectvlm.adapt import MIN_SEQUENCES
    from affectvlm.io.vrml import write_vrml

    for k in range(40):  # 40 subjects x 2 sequences of 3 frames, neutral -> apex
        sid = f"{'F' if k % 2 == 0 else 'M'}{k + 1:03d}"
        for emotion, sign in (("Happy", 1.0), ("Sad", -1.0)):
            for f in range(3):
                write_vrml(tmp_path / "data" / sid / emotion / f"{f:03d}.wrl",
                           face_like_mesh(16, smile=sign * 2.0 * f, seed=k * 10 + f, textured=False))
    args = _args(tmp_path / "data", tmp_path / "run", tmp_path / "cache", "--epochs", "1", "--val-fraction", "0.5",
                 "--max-steps", "2", "--frames-per-sequence", "2")
    args[args.index("AffectVLM-Test")] = "default"
    args[args.index("bu3dfe")] = "bu4dfe"
    r = _train(args, timeout=400)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    got = result["adapt_to_set"]
    assert got["chosen"] == (got["val"]["adapted"] > got["val"]["trained"])
    # the validation sequences are counted (and adapted to) as sequences, not as their scored frames
    assert got["val"]["sequences"] == 2 * len(result["splits"]["subjects"]["val"]) >= MIN_SEQUENCES
    # and the test figure reads each test sequence from its scored frames, beside the frames' own
    seqs = result["test"]["sequences"]
    assert seqs["n"] == 2 * len(result["splits"]["subjects"]["test"]) and seqs["frames"] == result["test"]["n"]
    assert seqs["frames_each"] == 2 and "test sequences: accuracy" in r.stderr
    assert f"adapting best/ to the validation subjects' {got['val']['sequences']} sequences" in r.stderr  # not silent
    assert json.loads((tmp_path / "run" / "best" / "affectvlm.json").read_text())["adapt_to_set"] is got["chosen"]
    assert "adapted to the validation subjects' " in r.stderr and " sequences (predict --adapt auto)" in r.stderr


def test_a_fine_tune_does_not_inherit_its_bases_validation_choices(tiny, tmp_path):
    """A base checkpoint's neutral_reference / adapt_to_set were chosen on another run's subjects: a run that cannot
    choose again (no neutral scans, too few validation scans) leaves them out rather than carrying them over."""
    from affectvlm.model import load_model, save_checkpoint
    from affectvlm.model.checkpoint import update_meta

    base = save_checkpoint(load_model("AffectVLM-Test", cache=False), tmp_path / "base", extra={"trained": True})
    update_meta(base, neutral_reference=False, adapt_to_set=True)
    args = _args(tiny, tmp_path / "run", tmp_path / "cache", "--epochs", "1")
    args[args.index("AffectVLM-Test")] = str(base)
    r = _train(args)
    assert r.returncode == 0, r.stderr[-2000:]
    meta = json.loads((tmp_path / "run" / "best" / "affectvlm.json").read_text())
    assert "neutral_reference" not in meta and "adapt_to_set" not in meta
    res = json.loads((tmp_path / "run" / "result.json").read_text())
    assert res["neutral_reference"] is None and res["adapt_to_set"] is None


def test_input_size_lets_the_image_tower_take_the_renders_as_rendered(tiny, tmp_path, capsys, monkeypatch):
    """``--input-size render``: a ModifiedResNet tower built for 64 px takes 96 px renders; best/ saves that size,
    so predict and eval feed it 96 px views too, and the run's test figure is what eval gives its checkpoint."""
    from affectvlm.model import load_model

    args = _args(tiny, tmp_path / "run", tmp_path / "cache", "--epochs", "1", "--max-steps", "1", "--input-size",
                 "render")
    args[args.index("--image-size") + 1] = "96"
    args[args.index("AffectVLM-Test")] = "AffectVLM-Tiny-RN"  # a 64 px ModifiedResNet, as the embedded model's
    dry = _train([*args, "--dry-run"])  # the plan, printed before anything is written: what the run then does
    assert dry.returncode == 0, dry.stderr[-2000:]
    plan = json.loads(dry.stdout)
    assert plan["dry_run"] and plan["input_size"] == 96 and plan["render"]["size"] == 96
    assert not (tmp_path / "run").exists()
    r = _train(args)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "at 96 px (the image tower takes 96 px)" in r.stderr and plan["plan"] in r.stderr
    assert json.loads((tmp_path / "run" / "splits.json").read_text()) == plan["splits"]
    saved = json.loads((tmp_path / "run" / "best" / "open_clip_config.json").read_text())
    assert saved["model_cfg"]["vision_cfg"]["image_size"] == 96 and saved["preprocess_cfg"]["size"] == 96
    m = load_model(str(tmp_path / "run" / "best"), cache=False)
    assert m.image_size == (96, 96) and m.clip.visual.attnpool.positional_embedding.shape[0] == 3 * 3 + 1
    _eval_reads_as_the_run(tmp_path / "run", tmp_path / "cache")
    # model: the renders are resized to the tower's own size; auto (the default) takes larger renders as rendered,
    # and smaller ones are resized up as before
    # (dry runs: the plan above is what a run does)
    args[args.index("--out") + 1] = str(tmp_path / "run2")
    args[args.index("--input-size") + 1] = "model"
    assert "at 96 px (the image tower takes 64 px)" in _dry_run(args, capsys)["plan"]
    del args[args.index("--input-size"):args.index("--input-size") + 2]
    for out, size, takes in (("run3", "96", "96"), ("run4", "32", "64")):
        args[args.index("--out") + 1] = str(tmp_path / out)
        args[args.index("--image-size") + 1] = size
        dry = _dry_run(args, capsys)
        assert dry["input_size"] == int(takes) and f"at {size} px (the image tower takes {takes} px)" in dry["plan"]
    # under torchrun every rank checks the data, and only rank 0 prints the plan
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    from affectvlm.train.train import main
    assert main([*args, "--dry-run"]) == 0 and capsys.readouterr().out == ""
    assert not any((tmp_path / f"run{k}").exists() for k in (2, 3, 4))


def test_a_run_on_the_lights_map_keeps_it_for_predict_and_eval(tiny, tmp_path):
    """``--render-map lights``: the cached renders are the three-light map (its channels differ, unlike shading),
    best/ records the map, and ``affectvlm eval`` (which renders as the checkpoint says) reads what the run read."""
    import numpy as np

    r = _train(_args(tiny, tmp_path / "run", tmp_path / "cache", "--epochs", "1", "--max-steps", "2", "--render-map",
                     "lights"))
    assert r.returncode == 0, r.stderr[-2000:]
    best = json.loads((tmp_path / "run" / "best" / "affectvlm.json").read_text())
    assert best["render"]["map"] == "lights"
    img = np.load(next((tmp_path / "cache").rglob("*.npy"))).astype(int)  # (V, 3, H, W) uint8
    assert np.abs(img[:, 0] - img[:, 1]).max() > 50
    _eval_reads_as_the_run(tmp_path / "run", tmp_path / "ev-cache")


def test_a_relaunch_that_cannot_continue_the_run_leaves_it_as_it_was(tmp_path, capsys):
    """A finished run relaunched with a bad option was marked failed and its config.yaml took the bad value; one
    resumed with another --batch-size or --accum skipped steps and said finished; one whose data lost a subject
    resplit its subjects and tested on some it trained on; a fresh start after a killed first attempt kept that
    attempt's metric records."""
    import shutil

    from affectvlm.train.train import main

    data = write_tiny_bu3dfe(tmp_path / "data")
    run = tmp_path / "run"
    (run).mkdir()
    (run / "metrics.jsonl").write_text('{"kind": "train", "epoch": 0, "step": 99, "loss": 1.0}\n')  # a killed attempt
    args = _args(data, run, tmp_path / "cache", "--epochs", "1")
    assert main(args) == 0
    assert all(r["step"] != 99 for r in _train_records(run))
    capsys.readouterr()
    kept = {n: (run / n).read_bytes() for n in ("config.yaml", "status.json", "splits.json", "metrics.jsonl")}
    for extra, says in ((["--margin-min", "0.5", "--margin-max", "0.4"], "margin"),
                        (["--epochs", "2", "--accum", "2"], "holds a run with accum 1 (not 2)"),
                        (["--epochs", "2", "--batch-size", "4"], "holds a run with batch_size 2 (not 4)"),
                        (["--epochs", "2", "--image-size", "48"], "image_size 32 (not 48)")):
        assert main([*args, *extra]) == 2, extra
        assert says in capsys.readouterr().err, extra
        assert {n: (run / n).read_bytes() for n in kept} == kept, extra  # untouched: still finished, same config
    shutil.rmtree(next(p for p in data.iterdir() if p.is_dir()))  # a subject's folder removed since
    assert main([*args, "--epochs", "2"]) == 2
    assert "split differently from when the run began" in capsys.readouterr().err
    assert {n: (run / n).read_bytes() for n in kept} == kept


def test_a_dry_run_refuses_what_the_real_run_would(tiny, tmp_path, capsys):
    """--dry-run accepted a batch larger than the training set and a device that is not there."""
    from affectvlm.train.train import main

    args = _args(tiny, tmp_path / "run", tmp_path / "cache")
    for extra, says in ((["--batch-size", "64"], "no full batch of 64"), (["--device", "bogus"], "bad device")):
        capsys.readouterr()
        assert main([*args, *extra, "--dry-run"]) == 2, extra
        assert says in capsys.readouterr().err, extra
    assert not (tmp_path / "run").exists()


def test_an_epoch_cut_short_by_max_steps_averages_over_the_steps_it_ran(tiny, tmp_path):
    """The epoch record divided its sums by a full epoch's steps: one step of 6 read a sixth of its loss."""
    run = tmp_path / "run"
    p = _train(_args(tiny, run, tmp_path / "cache", "--max-steps", "7"))
    assert p.returncode == 0, p.stderr[-3000:]
    first, second = epochs(run)
    assert (first["step"], second["step"]) == (6, 7)
    last = [r for r in _train_records(run) if r["step"] <= 7][-1]
    assert second["loss"] > 0.5 * first["loss"] and second["loss"] > 0.5 * last["loss"], (first, second, last)


def test_srun_ranks_all_stop_when_rank_0_refuses_the_run_folder(tiny, tmp_path):
    """srun-style ranks (no torchrun): rank 0 found the run folder in use and exited, and rank 1 waited out the
    30-minute rendezvous, deaf to SIGTERM. Now every rank meets first and all stop with rank 0."""
    import socket

    run = tmp_path / "run"
    run.mkdir()
    runfolder.lock_run_dir(run)  # another trainer holds it
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        procs = [subprocess.Popen([sys.executable, "-m", "affectvlm.train", *_args(tiny, run, tmp_path / "cache")],
                                  cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                  env={**_env(), "SLURM_PROCID": str(r), "SLURM_STEP_NUM_TASKS": "2",
                                       "SLURM_LOCALID": str(r), "SLURM_JOB_ID": "4242", "MASTER_ADDR": "127.0.0.1",
                                       "MASTER_PORT": str(port)})
                 for r in range(2)]
        try:
            errs = [p.communicate(timeout=120)[1] for p in procs]
        finally:
            for p in procs:
                p.kill()
        assert [p.returncode for p in procs] == [3, 3], errs
        assert "in use" in errs[0] and errs[1].strip() == "", errs  # said once, by rank 0
    finally:
        runfolder.unlock_run_dir(run)


def test_a_dry_run_says_what_the_data_leaves_out(tmp_path, capsys):
    """A zipped BU-4DFE subject was left out of training without a word (the plan counted one subject fewer)."""
    import zipfile

    from affectvlm.train.train import main

    for k in range(8):
        for emo in ("Happy", "Sad"):
            (tmp_path / "data" / f"F{k + 1:03d}" / emo).mkdir(parents=True)
            for t in range(2):
                (tmp_path / "data" / f"F{k + 1:03d}" / emo / f"{t:03d}.wrl").write_text("#VRML V2.0 utf8\n")
    with zipfile.ZipFile(tmp_path / "data" / "M001.zip", "w") as z:
        z.writestr("Happy/000.wrl", "#VRML V2.0 utf8\n")
    args = _args(tmp_path / "data", tmp_path / "run", tmp_path / "cache")
    args[args.index("bu3dfe")] = "bu4dfe"
    capsys.readouterr()
    assert main([*args, "--batch-size", "2", "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [n.split(":")[0] for n in plan["data_notes"]] == ["M001.zip"]
