"""Jobs store: real child processes (a stand-in trainer), stop/kill, reconcile, survive reopening."""
from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from affectvlm.app import jobs, launch, processes
from affectvlm.app.jobs import JobStore
from affectvlm.app.launch import TrainLaunch
from affectvlm.app.runview import tail
from affectvlm.errors import ConfigError
from affectvlm.runfolder import read_metrics

FAKE_TRAINER = textwrap.dedent(
    """
    import argparse, json, os, signal, sys, time
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--sleep", type=float, default=0.05)
    p.add_argument("--fail", action="store_true")
    p.add_argument("--ignore-term", action="store_true")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--fail-why", default="")
    a, _ = p.parse_known_args()
    if a.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.makedirs(a.out, exist_ok=True)
    rank = int(os.environ.get("RANK", "0"))
    def status(s):
        if rank == 0:
            with open(os.path.join(a.out, "status.json.tmp"), "w") as f:
                json.dump({"status": s, "epochs": a.epochs}, f)
            os.replace(os.path.join(a.out, "status.json.tmp"), os.path.join(a.out, "status.json"))
    status("running")
    with open(os.path.join(a.out, "pid.%d" % rank), "w") as f:
        f.write(str(os.getpid()))
    print("fake trainer start resume=%s rank=%s world=%s" % (a.resume, rank, os.environ.get("WORLD_SIZE")), flush=True)
    t0 = time.time()
    for e in range(a.epochs):
        time.sleep(a.sleep)
        if rank == 0:
            with open(os.path.join(a.out, "metrics.jsonl"), "a") as f:
                f.write(json.dumps({"epoch": e + 1, "epochs": a.epochs, "time": time.time() - t0,
                                    "loss": 1.0 / (e + 1), "loss_mc": 0.5 / (e + 1), "lr": 1e-3,
                                    "samples_per_s": 100.0, "val_acc": e / a.epochs}) + "\\n")
    if a.fail:
        print("boom", flush=True)
        sys.exit(3)
    if a.fail_why:  # as the trainer fails on purpose under torchrun: its reason, then the launcher's traceback
        with open(os.path.join(a.out, "status.json"), "w") as f:
            json.dump({"status": "failed", "message": a.fail_why, "reason": "ConfigError",
                       "updated": time.time()}, f)
        print("error: " + a.fail_why, flush=True)
        print("\\n".join("  torchrun traceback line %d" % i for i in range(40)), flush=True)
        sys.exit(1)
    status("finished")
    """
)


@pytest.fixture()
def fake_trainer(tmp_path: Path) -> Path:
    p = tmp_path / "fake_trainer.py"
    p.write_text(FAKE_TRAINER)
    return p


def _cmd(script: Path, run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, str(script), "--out", str(run_dir), *extra]


def _wait(store: JobStore, job_id: int, timeout: float = 30.0) -> jobs.Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.get(job_id)
        if not job.active:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still running after {timeout}s")


def test_launch_finish_and_metrics(tmp_path, fake_trainer):
    store = JobStore.in_workspace(tmp_path / "ws")
    run = tmp_path / "ws" / "runs" / "a"
    job = store.launch(TrainLaunch(run_dir=run, name="a"), command=_cmd(fake_trainer, run, "--epochs", "3"))
    assert job.status == "running" and job.pid and job.pgid == job.pid
    assert os.getpgid(job.pid) == job.pid  # its own process group
    job = _wait(store, job.id)
    assert job.status == "finished" and job.returncode == 0 and job.ended >= job.started
    recs = read_metrics(run)
    assert [r.epoch for r in recs] == [1, 2, 3]
    assert "fake trainer start" in tail(run / "stdout.log")


def test_failed_job_records_exit_code(tmp_path, fake_trainer):
    store = JobStore(tmp_path / "jobs.sqlite3")
    run = tmp_path / "r"
    job = store.launch(TrainLaunch(run_dir=run), command=_cmd(fake_trainer, run, "--epochs", "1", "--fail"))
    job = _wait(store, job.id)
    assert job.status == "failed" and job.returncode == 3 and "exit code 3" in job.message
    assert "boom" in tail(run / "stdout.log", 5)


def test_a_failed_job_says_the_trainers_reason_not_the_exit_code(tmp_path, fake_trainer):
    store = JobStore(tmp_path / "jobs.sqlite3")
    run = tmp_path / "r"
    why = "6 training samples give no full batch of 16 x 1"
    job = store.launch(TrainLaunch(run_dir=run), command=_cmd(fake_trainer, run, "--epochs", "1", "--fail-why", why))
    job = _wait(store, job.id)
    assert job.status == "failed" and job.returncode == 1 and job.message == why


def test_stop_terminates_group_and_survives_reopen(tmp_path, fake_trainer):
    db = tmp_path / "jobs.sqlite3"
    store = JobStore(db)
    run = tmp_path / "long"
    job = store.launch(TrainLaunch(run_dir=run), command=_cmd(fake_trainer, run, "--epochs", "1000", "--sleep", "0.1"))
    time.sleep(0.3)
    t0 = time.monotonic()
    stopped = store.stop(job.id, grace=5.0)
    assert stopped.status == "stopped"
    assert time.monotonic() - t0 < 4.0  # SIGTERM was enough
    with pytest.raises(ProcessLookupError):
        os.killpg(job.pgid, 0)
    again = JobStore(db).get(job.id)  # a new store (an app restart) sees the same state
    assert again.status == "stopped" and again.run_dir == run and again.config["run_dir"] == str(run)


def test_stop_escalates_to_sigkill(tmp_path, fake_trainer):
    store = JobStore(tmp_path / "jobs.sqlite3")
    run = tmp_path / "stubborn"
    job = store.launch(TrainLaunch(run_dir=run),
                       command=_cmd(fake_trainer, run, "--epochs", "1000", "--sleep", "0.1", "--ignore-term"))
    time.sleep(0.5)  # let it install the SIGTERM handler
    t0 = time.monotonic()
    stopped = store.stop(job.id, grace=1.0)
    took = time.monotonic() - t0
    assert stopped.status == "stopped" and 0.9 <= took < 5.0
    with pytest.raises(ProcessLookupError):
        os.killpg(job.pgid, 0)


def test_reconcile_from_status_file_after_restart(tmp_path, fake_trainer):
    """A job launched by a previous app process: no Popen here, status.json decides."""
    db = tmp_path / "jobs.sqlite3"
    store = JobStore(db)
    run = tmp_path / "x"
    job = store.launch(TrainLaunch(run_dir=run), command=_cmd(fake_trainer, run, "--epochs", "2"))
    proc = processes._CHILDREN.pop(job.pid)  # forget the child, as a restarted app would
    proc.wait(30)
    assert JobStore(db).get(job.id).status == "finished"

    run2 = tmp_path / "y"
    job2 = store.launch(TrainLaunch(run_dir=run2), command=_cmd(fake_trainer, run2, "--epochs", "1", "--fail"))
    processes._CHILDREN.pop(job2.pid).wait(30)
    j2 = JobStore(db).get(job2.id)
    assert j2.status == "failed" and j2.returncode is None


def test_dead_pid_with_reused_number_is_not_running(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    run = tmp_path / "z"
    job = store.launch(TrainLaunch(run_dir=run), command=[sys.executable, "-c", "pass"])
    processes._CHILDREN.pop(job.pid).wait(30)
    # pretend the pid now belongs to this very process (pid reuse): start time differs
    store._update(job.id, pid=os.getpid(), proc_start="1")
    assert store.get(job.id).status == "failed"


def test_resume_relaunches_same_row_with_flag(tmp_path, fake_trainer):
    store = JobStore(tmp_path / "jobs.sqlite3")
    run = tmp_path / "res"
    cfg = TrainLaunch(run_dir=run, train_args=["--out", str(run), "--epochs", "1"])
    job = store.launch(cfg, command=[sys.executable, str(fake_trainer), *cfg.train_args])
    _wait(store, job.id)
    resumed = store.resume(job.id, command=[sys.executable, str(fake_trainer), *cfg.train_args, "--resume"])
    assert resumed.id == job.id and resumed.status == "running"
    assert _wait(store, job.id).status == "finished"
    assert "resume=True" in tail(run / "stdout.log")
    assert len(store.list()) == 1
    with pytest.raises(ConfigError):
        store.get(999)


def test_torchrun_command_lists():
    cfg = TrainLaunch(run_dir=Path("/w/r"), train_args=["--data", "/w/d", "--layout", "bu3dfe", "--out", "/w/r",
                                                        "--epochs", "2", "--batch-size", "8", "--lr", "0.0001",
                                                        "--views=0,-30,30"])
    cmd = launch.torchrun_command(cfg)
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"] and "--standalone" in cmd
    assert cmd[cmd.index("-m", 3) + 1] == "affectvlm.train"
    assert cmd[cmd.index("--epochs") + 1] == "2" and cmd[cmd.index("--lr") + 1] == "0.0001"
    assert "--resume" in launch.torchrun_command(cfg, resume=True)

    multi = TrainLaunch(run_dir=Path("/w/r"), train_args=["--data", "/w/d ir"], nproc_per_node=4, nnodes=3,
                        rdzv_endpoint="node0:29400", rdzv_id="job7")
    cmd = launch.torchrun_command(multi)
    assert "--standalone" not in cmd and cmd[cmd.index("--rdzv-endpoint") + 1] == "node0:29400"
    line = launch.other_node_command(multi)
    assert line.startswith("python -m torch.distributed.run --nnodes 3") and "'/w/d ir'" in line
    with pytest.raises(ConfigError, match="HOST:PORT"):
        launch.torchrun_command(TrainLaunch(run_dir=Path("/r"), nnodes=2, rdzv_endpoint="node0"))
    with pytest.raises(ConfigError):
        launch.torchrun_command(TrainLaunch(run_dir=Path("/r"), nproc_per_node=0))


def test_real_torchrun_two_ranks(tmp_path, fake_trainer):
    """The real launcher: torchrun with two ranks, stand-in trainer script instead of -m affectvlm.train."""
    pytest.importorskip("torch")
    store = JobStore(tmp_path / "jobs.sqlite3")
    run = tmp_path / "tr"
    cfg = TrainLaunch(run_dir=run, train_args=["--out", str(run), "--epochs", "2"], nproc_per_node=2)
    job = store.launch(cfg, script=str(fake_trainer))
    assert job.command[1:3] == ["-m", "torch.distributed.run"]
    job = _wait(store, job.id, timeout=90)
    log = tail(run / "stdout.log", 200)
    assert job.status == "finished", log
    assert "rank=0 world=2" in log and "rank=1 world=2" in log


def test_stop_leaves_no_torchrun_worker_behind(tmp_path, fake_trainer):
    """torchrun starts each worker in a session of its own: a worker slow to honour SIGTERM used to outlive the
    SIGKILL of torchrun's group, training on while the job read as ended."""
    pytest.importorskip("torch")
    from affectvlm.runfolder import pid_alive

    store = JobStore(tmp_path / "jobs.sqlite3")
    run = tmp_path / "stubborn"
    cfg = TrainLaunch(run_dir=run, train_args=["--out", str(run), "--epochs", "100000", "--sleep", "0.1",
                                               "--ignore-term"], nproc_per_node=1)
    job = store.launch(cfg, script=str(fake_trainer))
    deadline = time.monotonic() + 90
    while not (run / "pid.0").is_file() or not (run / "pid.0").read_text():
        assert time.monotonic() < deadline and store.get(job.id).active, tail(run / "stdout.log", 50)
        time.sleep(0.1)
    worker = int((run / "pid.0").read_text())
    assert os.getpgid(worker) != job.pgid  # the case: the worker is not in the job's group
    stopped = store.stop(job.id, grace=1.0)
    assert stopped.status == "stopped"
    deadline = time.monotonic() + 5
    while pid_alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(worker)


def test_metrics_reader_skips_partial_lines(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 2}\n\n{"step": 2, "loss": 1}\n{"step": 3, "lo')
    assert [r.step for r in read_metrics(tmp_path)] == [1, 2]
    assert read_metrics(tmp_path / "missing") == []
    assert tail(tmp_path / "missing.log") == ""
