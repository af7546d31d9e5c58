"""Damaged run folders, escaping trainer options, shared run folders and leftovers (issue 10, items 4-7).

Real files and real processes: a tiny trainer run is damaged and resumed, a second trainer meets the
run folder's lock, the job store refuses a second launch, a kill inside ``replace_dir`` is recovered."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from affectvlm.errors import AffectVLMError, ConfigError

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


def _train_args(data: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return ["--data", str(data), "--layout", "bu3dfe", "--out", str(out), "--model", "AffectVLM-Test",
            "--batch-size", "2", "--folds", "3", "--image-size", "32", "--views", "0", "--warmup", "1",
            "--no-progress", "--cache-dir", str(cache), "--seed", "1", *extra]


def _trainer(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "affectvlm.train", *args], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(dataset, finished 2-epoch run folder, render cache): checkpoints epoch_0000 and epoch_0001."""
    from test_train import write_tiny_bu3dfe

    base = tmp_path_factory.mktemp("robust")
    data = write_tiny_bu3dfe(base / "data", n_subjects=3, intensities=(3,))
    run, cache = base / "run", base / "cache"
    p = _trainer(_train_args(data, run, cache, "--epochs", "2"), timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    return data, run, cache


def _epochs(run: Path) -> list[int]:
    out = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "epoch":
            out.append(rec["epoch"])
    return out


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ----------------------------------------------------------------------------- 4: damaged run folder

@pytest.mark.timeout(90)
def test_resume_survives_damaged_newest_checkpoint_and_metrics(tiny_run, tmp_path):
    """Newest train_state.pt truncated, a stray byte and foreign lines in metrics.jsonl, a stale
    'running' status, a killed save's .tmp folder and a best/ left aside: --resume falls back to the
    previous complete checkpoint, warns, and finishes with each epoch recorded once."""
    data, run0, cache = tiny_run
    run = tmp_path / "run"
    shutil.copytree(run0, run)
    state = run / "checkpoints" / "epoch_0001" / "train_state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b'\xff\xfe{"kind": "epoch"\n["foreign"]\n{"kind": "epoch", "epoch": "x"}\n{"kind": "epo')
    (run / "status.json").write_text(json.dumps({"status": "running", "pid": _dead_pid()}))
    (run / "checkpoints" / ".tmp-epoch_0002-1-abcdef").mkdir()
    (run / "checkpoints" / ".tmp-epoch_0002-1-abcdef" / "weights.safetensors").write_bytes(b"half")
    os.replace(run / "best", run / ".best.old-0123abcd")

    p = _trainer(_train_args(data, run, cache, "--epochs", "3", "--resume"))
    assert p.returncode == 0, p.stderr[-3000:]
    assert "skipping damaged checkpoint" in p.stderr and "epoch_0001" in p.stderr
    assert "resumed from" in p.stderr and "epoch_0000" in p.stderr
    assert "unreadable line" in p.stderr
    assert _epochs(run) == [0, 1, 2]
    assert not list((run / "checkpoints").glob(".tmp-*"))
    assert (run / "best" / "affectvlm.json").is_file() and not list(run.glob(".best.old-*"))
    assert json.loads((run / "status.json").read_text())["status"] == "finished"


@pytest.mark.timeout(30)
def test_resume_choice_skips_truncated_weights(tiny_run, tmp_path):
    from affectvlm.train import checkpointing as ck

    run = tmp_path / "run"
    shutil.copytree(tiny_run[1], run)
    w = run / "checkpoints" / "epoch_0001" / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:-100])
    found = ck.load_resume_checkpoint(run)
    assert found is not None and found[0].name == "epoch_0000" and found[2]["epoch"] == 0
    # a flipped byte (same size) is caught by the manifest
    w0 = run / "checkpoints" / "epoch_0000" / "weights.safetensors"
    raw = bytearray(w0.read_bytes())
    raw[-1] ^= 0xFF
    w0.write_bytes(bytes(raw))
    with pytest.raises(ConfigError, match="no complete checkpoint"):
        ck.load_resume_checkpoint(run)


@pytest.mark.timeout(20)
def test_stale_running_status_reported_crashed(tmp_path):
    from affectvlm.app import jobs, processes
    from affectvlm import runfolder as ck

    run = tmp_path / "run"
    run.mkdir()
    (run / "status.json").write_text(json.dumps({"status": "running", "pid": _dead_pid()}))
    st = ck.read_status(run)
    assert st.status == "crashed" and st.stale and "crashed or killed" in st.message
    # a live lock holder wins over an old pid in the file
    ck.lock_run_dir(run)
    try:
        assert ck.read_status(run).status == "running"
    finally:
        ck.unlock_run_dir(run)
    assert ck.read_status(run).status == "crashed"
    # the store settles a dead job from it as failed with the reason
    store = jobs.JobStore(tmp_path / "jobs.sqlite3")
    job = store.launch(jobs.TrainLaunch(run_dir=run), command=[sys.executable, "-c", "import os; os._exit(0)"])
    child = processes._CHILDREN.pop(job.pid)  # as if another app process had launched it: only status.json is left
    child.wait(10)
    got = store.get(job.id)
    assert got.status == "failed" and "crashed or killed" in got.message


# ----------------------------------------------------------------------------- 5: Train page confinement

@pytest.fixture()
def roots(tmp_path) -> tuple[Path, Path]:
    ws, outside = tmp_path / "ws", tmp_path / "outside"
    (ws / "data").mkdir(parents=True)
    outside.mkdir()
    (ws / "escape").symlink_to(outside)
    (ws / "good.yaml").write_text("folds: 5\ncache_dir: cache\n")
    (ws / "bad_cache.yaml").write_text(f"cache_dir: {outside}\n")
    (ws / "bad_model.yaml").write_text(f"model: {outside}\n")
    (outside / "cfg.yaml").write_text("folds: 5\n")
    return ws.resolve(), outside.resolve()


def _cmd(ws: Path, extra: str, **kw) -> list[str]:
    from affectvlm.app.trainform import train_command_args

    return train_command_args(data=ws / "data", layout="folders", out=ws / "runs" / "r", roots=[ws],
                              cache_dir=ws / ".render-cache", model="AffectVLM-Test", extra_text=extra, **kw)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("extra, msg", [
    ("--out=/elsewhere", "not allowed"),
    ("--out /elsewhere", "not allowed"),
    ("--ou /elsewhere", "unrecognized"),
    ("--cache-d /elsewhere", "unrecognized"),
    ("--cache-dir {outside}", "outside the workspace"),
    ("--cache-dir=escape/c", "outside the workspace"),
    ("--cache-dir ../outside", "outside the workspace"),
    ("--config {outside}/cfg.yaml", "outside the workspace"),
    ("--config bad_cache.yaml", "outside the workspace"),
    ("--config bad_model.yaml", "outside the workspace"),
    ("--model {outside}", "--model has its own field above"),  # the form's fields are not overridden unseen
    ("--views 0", "--views has its own field above"),
    ("--data /etc", "not allowed"),
    ("--resume", "not allowed"),
    ("--epochs abc", "invalid int"),
    ("--folds '5", "quotation"),
    ("--help", "--help"),
    ("--epochs 0", "--epochs has its own field above"),
    ("--folds 0", "folds must be"),
    ("--dry-run", "trains nothing"),
])
def test_extra_options_cannot_escape_roots(roots, extra, msg):
    ws, outside = roots
    with pytest.raises(ConfigError, match=msg) as e:
        _cmd(ws, extra.format(outside=outside))
    assert "\n" not in str(e.value)


@pytest.mark.timeout(30)
def test_extra_options_are_rebuilt_inside_roots(roots):
    from affectvlm.trainconfig import resolve_config

    ws, _ = roots
    args = _cmd(ws, "--freeze text --intensities 3,4 --no-aug --config good.yaml", views="-30,0,30")
    cfg = resolve_config(args)
    assert cfg.cache_dir == str(ws / "cache") and cfg.out == str(ws / "runs" / "r") and cfg.folds == 5
    assert cfg.freeze == "text" and cfg.intensities == [3, 4] and cfg.aug is False
    assert cfg.views == "-30,0,30" and cfg.model == "AffectVLM-Test"
    # no extras: the render cache defaults into the workspace, not ~/.cache
    assert resolve_config(_cmd(ws, "")).cache_dir == str(ws / ".render-cache")
    # the form's own model field is confined as the extras were
    from affectvlm.app.trainform import train_command_args

    for model in ("local-dir:escape", str(ws.parent / "outside")):
        with pytest.raises(ConfigError, match="outside the workspace"):
            train_command_args(data=ws / "data", layout="folders", out=ws / "runs" / "r", roots=[ws],
                               cache_dir=ws / ".render-cache", model=model)


@pytest.mark.timeout(60)
def test_train_page_refuses_escaping_extras(tmp_path, monkeypatch):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    from test_app_train import folders_dataset

    ws = tmp_path / "ws"
    folders_dataset(ws / "data")
    monkeypatch.setenv("AFFECTVLM_WORKSPACE_ROOTS", str(ws))
    monkeypatch.setenv("AFFECTVLM_DEFAULT_MODEL", "AffectVLM-Test")
    monkeypatch.chdir(REPO)
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/3_Train.py").run()
    at.text_input(key="tr_data").input("data").run()
    at.selectbox(key="tr_layout").set_value("folders").run()
    for extra, msg in (("--ou /tmp/x", "unrecognized"), ("--cache-dir /tmp/x", "outside the workspace"),
                       ("--out=/tmp/x", "not allowed")):
        at.text_input(key="tr_extra").input(extra).run()
        at.button(key="tr_launch").click().run()
        assert any(msg in e.value for e in at.error), (extra, [e.value for e in at.error])
    assert "No training job yet." in [i.value for i in at.info]


# ----------------------------------------------------------------------------- 6: one owner per run folder

HOLDER = ("import sys, time; from affectvlm import runfolder as c; c.lock_run_dir(sys.argv[1]); "
          "print('locked', flush=True); time.sleep(60)")


@pytest.mark.timeout(40)
def test_second_trainer_in_a_locked_run_folder_exits_with_one_line(tmp_path):
    data, cache, run = tmp_path / "data", tmp_path / "cache", tmp_path / "run"
    data.mkdir()  # the trainer stops at the lock, before reading anything
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], cwd=REPO, env=_env(),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        (run / "status.json").write_text('{"status": "running", "pid": %d}' % holder.pid)
        p = _trainer(_train_args(data, run, cache, "--epochs", "1"))
        assert p.returncode == 3
        assert p.stderr.strip() == f"error: run folder {run} is in use by pid {holder.pid}"
        assert json.loads((run / "status.json").read_text())["pid"] == holder.pid  # untouched
        assert not (run / "metrics.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.timeout(30)
def test_job_store_claims_a_run_folder_once(tmp_path):
    from affectvlm.app import jobs

    store = jobs.JobStore(tmp_path / "jobs.sqlite3")
    run = tmp_path / "run"
    (tmp_path / "alias").symlink_to(tmp_path, target_is_directory=True)
    sleeper = [sys.executable, "-c", "import time; time.sleep(30)"]
    first = store.launch(jobs.TrainLaunch(run_dir=run), command=sleeper)
    try:
        for same in (run, tmp_path / "alias" / "run", tmp_path / "x" / ".." / "run"):
            with pytest.raises(ConfigError, match=f"in use by job {first.id}"):
                store.launch(jobs.TrainLaunch(run_dir=same), command=sleeper)
        assert [j.id for j in store.list() if j.active] == [first.id]
        store.stop(first.id, grace=5)
        # two resumes at once: exactly one starts
        results: list = []
        gate = threading.Barrier(2)

        def resume() -> None:
            gate.wait()
            try:
                results.append(store.resume(first.id, command=sleeper).pid)
            except ConfigError as e:
                results.append(str(e))

        threads = [threading.Thread(target=resume) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        pids = [r for r in results if isinstance(r, int)]
        assert len(pids) == 1 and any("already running" in str(r) for r in results), results
        assert store.get(first.id).pid == pids[0]
    finally:
        for j in store.list():
            if j.active:
                store.stop(j.id, grace=5)


# ----------------------------------------------------------------------------- 7: leftovers

@pytest.mark.timeout(20)
def test_finished_children_are_reaped_without_reading_the_list(tmp_path):
    from affectvlm.app import jobs

    store = jobs.JobStore(tmp_path / "jobs.sqlite3")
    job = store.launch(jobs.TrainLaunch(run_dir=tmp_path / "run"), command=[sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{job.pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{job.pid}").exists(), "child left as a zombie"
    assert store.get(job.id).status == "finished"  # the return code was kept for the store


KILL_IN_REPLACE = """
import os, signal, sys
from pathlib import Path
from affectvlm.model import checkpoint as m
real, n = os.replace, [0]
def replace(a, b):
    real(a, b)
    n[0] += 1
    if n[0] == 1:  # the old best/ is aside, the new one not yet in
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
run = Path(sys.argv[1])
(run / ".tmp-best-1").mkdir()
(run / ".tmp-best-1" / "affectvlm.json").write_text("new")
m.replace_dir(run / ".tmp-best-1", run / "best")
"""


@pytest.mark.timeout(20)
def test_kill_inside_replace_dir_and_killed_saves_are_recovered(tmp_path):
    from affectvlm.train import checkpointing as ck

    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    (run / "best" / "affectvlm.json").write_text("old")
    p = subprocess.run([sys.executable, "-c", KILL_IN_REPLACE, str(run)], cwd=REPO, env=_env(), timeout=20)
    assert p.returncode == -signal.SIGKILL
    assert not (run / "best").exists()  # what the kill leaves
    (run / "checkpoints" / ".tmp-epoch_0003-7-abcdef").mkdir(parents=True)
    (run / ".status.json.7.0123abcd.tmp").write_text("{")
    done = ck.sweep_run_dir(run)
    assert (run / "best" / "affectvlm.json").read_text() == "old"
    assert sorted(q.name for q in run.iterdir()) == ["best", "checkpoints"]
    assert list((run / "checkpoints").iterdir()) == []
    assert any("restored best" in d for d in done)


@pytest.mark.timeout(20)
def test_old_upload_folders_are_swept(tmp_path):
    from affectvlm.app import uploads as A

    old = A.new_upload_dir(tmp_path)
    (old / "scan.obj").write_text("v 0 0 0\n")
    os.utime(old, (time.time() - 7 * 3600,) * 2)
    fresh = A.new_upload_dir(tmp_path)
    other = tmp_path / "not-ours"
    other.mkdir()
    os.utime(other, (time.time() - 7 * 3600,) * 2)
    assert A.sweep_upload_dirs(tmp_path, max_age_s=6 * 3600) == 1
    assert not old.exists() and fresh.exists() and other.exists()
    newer = A.new_upload_dir(tmp_path, previous=fresh)  # a new upload replaces the session's last one
    assert not fresh.exists() and newer.exists()


@pytest.mark.timeout(30)
def test_a_config_file_that_disagrees_with_a_field_is_named_not_overridden_unseen(roots):
    """The Train page's fields always pass their values, so a --config file's epochs or lr lost without a word."""
    from affectvlm.trainconfig import resolve_config

    ws, _ = roots
    (ws / "long.yaml").write_text("epochs: 30\nlr: 0.001\nfolds: 5\n")
    with pytest.raises(ConfigError, match="long.yaml sets epochs to 30 but the form's field says 20") as e:
        _cmd(ws, "--config long.yaml", epochs=20, lr=0.001)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="sets lr to 0.001"):
        _cmd(ws, "--config long.yaml", epochs=30, lr=0.0005)
    cfg = resolve_config(_cmd(ws, "--config long.yaml", epochs=30, lr=0.001, batch_size=8))
    assert cfg.epochs == 30 and cfg.lr == 0.001 and cfg.folds == 5 and cfg.batch_size == 8


@pytest.mark.timeout(60)
def test_a_run_folder_inside_or_holding_a_running_jobs_folder_is_refused(tmp_path):
    """runs/run1/best or runs as the output folder while runs/run1 trains: each run's saves deleted the other's."""
    from affectvlm.app import jobs

    store = jobs.JobStore(tmp_path / "jobs.sqlite3")
    sleeper = [sys.executable, "-c", "import time; time.sleep(30)"]
    first = store.launch(jobs.TrainLaunch(run_dir=tmp_path / "runs" / "run1"), command=sleeper)
    try:
        for nested, how in (("runs/run1/best", "is inside"), ("runs", "holds"), ("runs/run1/x/y", "is inside")):
            with pytest.raises(ConfigError, match=f"{how} .*run1, in use by job {first.id}"):
                store.launch(jobs.TrainLaunch(run_dir=tmp_path / nested), command=sleeper)
        beside = store.launch(jobs.TrainLaunch(run_dir=tmp_path / "runs" / "run10"), command=sleeper)  # a sibling
        store.stop(beside.id, grace=5)
    finally:
        store.stop(first.id, grace=5)


@pytest.mark.timeout(60)
def test_stop_never_signals_a_process_for_a_job_another_host_recorded(tmp_path):
    """A row recorded by another host (or a container since re-created) named a pid that is some other process here:
    Stop sent it SIGTERM, then SIGKILL to its children's groups."""
    import socket
    import subprocess

    from affectvlm.app import jobs
    from affectvlm.runfolder import lock_run_dir, unlock_run_dir

    store = jobs.JobStore(tmp_path / "jobs.sqlite3")
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        run = tmp_path / "run"
        job = store.launch(jobs.TrainLaunch(run_dir=run), command=[sys.executable, "-c", "import time; time.sleep(30)"])
        store.stop(job.id, grace=5)
        store._update(job.id, status="running", pid=victim.pid, pgid=victim.pid, proc_start=None,
                      host=socket.gethostname() + "-gone")
        holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from affectvlm.runfolder import "
                                   f"lock_run_dir; lock_run_dir({str(run)!r}); print('ok', flush=True); "
                                   "time.sleep(30)"], stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "ok"
        with pytest.raises(ConfigError, match="launched on host .*-gone; stop it there"):
            store.stop(job.id, grace=1)  # a trainer holds the folder: alive somewhere, not ours to signal
        holder.kill()
        holder.wait()
        got = store.stop(job.id, grace=1)
        assert got.status == "stopped" and "without signalling" in got.message
        assert victim.poll() is None  # untouched
        lock_run_dir(run)  # and the folder is free again
        unlock_run_dir(run)
    finally:
        victim.kill()
        victim.wait()


@pytest.mark.timeout(30)
def test_a_run_folders_config_yaml_cannot_bring_in_a_path_the_form_confined(roots):
    """The form's model at its default was left off the command, so a resumed trainer took the model (or cache)
    that the run folder's config.yaml named, from outside the workspace."""
    from affectvlm.app.trainform import train_command_args
    from affectvlm.trainconfig import resolve_config

    ws, outside = roots
    run = ws / "runs" / "r"
    run.mkdir(parents=True)
    saved = f"data: {ws / 'data'}\nlayout: folders\nout: {run}\ncache_dir: {outside}/cache\nepochs: 3\n"
    (run / "config.yaml").write_text(saved)
    args = train_command_args(data=ws / "data", layout="folders", out=run, roots=[ws], cache_dir=ws / ".render-cache",
                              model="default", extra_text="")
    cfg = resolve_config(args + ["--resume"])  # the Resume button's command: config.yaml is its base
    assert cfg.model == "default" and cfg.cache_dir == str(ws / ".render-cache") and cfg.epochs == 3
    (run / "config.yaml").write_text(saved + f"model: {outside}/evil\n")
    with pytest.raises(ConfigError, match="holds a run with model '.*evil' \\(not 'default'\\)"):
        resolve_config(args + ["--resume"])  # a continued run keeps its model: refused, never loaded


@pytest.mark.timeout(30)
def test_a_dataset_inside_the_workspace_cannot_name_scans_outside_it(roots):
    """A manifest row naming /etc/passwd was accepted by Check dataset and trained on; one naming a missing file
    outside said 'file not found' (which tells whether a file exists). A class folder linked outside too."""
    from affectvlm.app.trainform import check_dataset

    ws, outside = roots
    (outside / "scan.obj").write_text("v 0 0 0\n")
    (ws / "data" / "in.obj").write_text("v 0 0 0\n")
    for row in (f"{outside}/scan.obj", f"{outside}/no_such.obj", "../../outside/scan.obj", "../escape/scan.obj"):
        (ws / "data" / "manifest.csv").write_text(f"path,label,subject\nin.obj,happy,s1\n{row},sad,s2\n")
        with pytest.raises(AffectVLMError, match="line 3: .*outside the folders allowed here"):
            check_dataset("data", "manifest", [ws])
    (ws / "data" / "manifest.csv").unlink()
    (ws / "data" / "happy").mkdir()
    (ws / "data" / "happy" / "s1.obj").write_text("v 0 0 0\n")
    (ws / "data" / "sad").symlink_to(outside, target_is_directory=True)
    with pytest.raises(AffectVLMError, match="scan.obj: outside the folders allowed here"):
        check_dataset("data", "folders", [ws])
