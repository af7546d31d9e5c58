"""Real trainer processes on a tiny BU-3DFE-layout dataset (procedural faces written as Tricorder VRML):
single process, torchrun with two gloo ranks, SIGKILL + --resume, eval, and the run-folder contract."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def write_tiny_bu3dfe(root: Path, n_subjects: int = 6, intensities=(3, 4), neutral: bool = False,
                      codes=(("HA", 1.0), ("SA", -1.0))) -> Path:
    """Happiness (smile up) and sadness (smile down) scans in BU-3DFE naming, one folder per subject; with
    ``neutral`` also each subject's NE00 scan; ``codes``: other expression codes and their smile signs."""
    from meshgen import face_like_mesh

    from affectvlm.io.vrml import write_vrml

    for s in range(n_subjects):
        sid = f"{'F' if s % 2 == 0 else 'M'}{s + 1:04d}"
        if neutral:
            write_vrml(root / sid / f"{sid}_NE00WH_F3D.wrl", face_like_mesh(20, smile=0.0, seed=s * 10, textured=True))
        for code, sign in codes:
            for lvl in intensities:
                m = face_like_mesh(20, smile=sign * lvl, seed=s * 10 + lvl, textured=True)
                write_vrml(root / sid / f"{sid}_{code}{lvl:02d}WH_F3D.wrl", m)
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_tiny_bu3dfe(tmp_path_factory.mktemp("bu3dfe"))


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


def _args(data: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return ["--data", str(data), "--layout", "bu3dfe", "--out", str(out), "--model", "AffectVLM-Test",
            "--epochs", "2", "--batch-size", "8", "--folds", "3", "--fold", "0", "--image-size", "32",
            "--lr", "0.002", "--warmup", "1", "--no-progress", "--cache-dir", str(cache), "--aug-swap", "0",
            "--seed", "1", "--losses", "mc=1,mt=1,clip=1", *extra]


def run_train(args: list[str], nproc: int = 1, timeout: int = 300) -> subprocess.CompletedProcess:
    if nproc == 1:
        cmd = [sys.executable, "-m", "affectvlm.train", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
               "-m", "affectvlm.train", *args]
    p = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    return p


def epochs(run: Path) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "epoch"]


def final_weights(run: Path) -> dict:
    from safetensors.torch import load_file

    last = sorted((run / "checkpoints").glob("epoch_*"))[-1]
    return load_file(str(last / "weights.safetensors"))


def max_weight_diff(a: Path, b: Path) -> float:
    wa, wb = final_weights(a), final_weights(b)
    assert wa.keys() == wb.keys()
    return max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)


@pytest.mark.slow
def test_single_process_run_folder_contract(tiny, tmp_path):
    run = tmp_path / "run"
    run_train(_args(tiny, run, tmp_path / "cache", "--losses", "mc=1,mt=1,clip=1,ce=1"))
    st = json.loads((run / "status.json").read_text())
    assert st["status"] == "finished" and st["pid"] > 0
    recs = epochs(run)
    assert [r["epoch"] for r in recs] == [0, 1]
    for k in ("mc", "mt", "clip", "ce", "alpha", "lr", "samples_per_s", "val_accuracy", "val_macro_f1",
              "val_per_class_accuracy", "val_confusion_matrix", "eta_s"):
        assert k in recs[-1], k
    assert 0.05 <= recs[-1]["alpha"] <= 0.8
    # 6 subjects, 3 folds: 2 test subjects, 1 of the other 4 carved out for validation (x 4 scans each)
    splits = json.loads((run / "splits.json").read_text())["subjects"]
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (3, 1, 2)
    assert not set(splits["val"]) & (set(splits["train"]) | set(splits["test"]))
    assert sum(map(sum, recs[-1]["val_confusion_matrix"])) == 4  # best/ is picked on these only
    best_epoch = max(range(len(recs)), key=lambda i: (recs[i]["val_accuracy"], -i))
    res = json.loads((run / "result.json").read_text())
    assert res["test"]["n"] == 8 and res["best_val_accuracy"] == recs[best_epoch]["val_accuracy"]
    assert (run / "config.yaml").is_file() and (run / "train.log").is_file()
    assert recs[0]["cache"]["misses"] == 24 and recs[0]["cache"]["size_mb"] > 0
    from affectvlm.model import load_model

    m = load_model(str(run / "best"))
    assert list(m.classes) == ["happiness", "sadness"]
    # a second run reuses the render cache: no misses
    run2 = tmp_path / "run2"
    run_train(_args(tiny, run2, tmp_path / "cache", "--epochs", "1"))
    assert epochs(run2)[0]["cache"]["misses"] == 0 and epochs(run2)[0]["cache"]["hit_rate"] == 1.0
    # eval on the run folder: held-out fold, metrics JSON + confusion PNG
    out = tmp_path / "ev" / "metrics.json"
    p = subprocess.run([sys.executable, "-m", "affectvlm.train.evaluate", "--model", str(run), "--out", str(out),
                        "--cache-dir", str(tmp_path / "cache")], cwd=REPO, env=_env(), capture_output=True,
                       text=True, timeout=200)
    assert p.returncode == 0, p.stderr[-3000:]
    ev = json.loads(out.read_text())
    assert ev["n"] == 8 and ev["accuracy"] == pytest.approx(res["test_accuracy"], abs=1e-6)
    assert out.with_suffix(".png").stat().st_size > 1000
    ev_args = [sys.executable, "-m", "affectvlm.train.evaluate", "--model", str(run),
               "--cache-dir", str(tmp_path / "cache")]
    p = subprocess.run([*ev_args, "--out", str(tmp_path / "ev2.json"), "--prior", "uniform"], cwd=REPO, env=_env(),
                       capture_output=True, text=True, timeout=200)
    assert p.returncode == 2 and "at least 20 samples" in p.stderr  # 8 scans: too few to match, said before any work
    p = subprocess.run([*ev_args, "--out", str(tmp_path / "ev3.json"), "--prior", "uniform", "--prior-by", "folder"],
                       cwd=REPO, env=_env(), capture_output=True, text=True, timeout=200)
    assert p.returncode == 0, p.stderr[-3000:]
    ev3 = json.loads((tmp_path / "ev3.json").read_text())
    assert ev3["n"] == 8 and ev3["prior"] == {"spec": "uniform", "by": "folder", "transductive": True}


def test_torchrun_two_ranks_match_single_process(tiny, tmp_path):
    cache = tmp_path / "cache"
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    run_train(_args(tiny, single, cache))
    run_train(_args(tiny, ddp, cache), nproc=2)
    res = json.loads((ddp / "result.json").read_text())
    assert len(res["param_hashes"]) == 2 and len(set(res["param_hashes"])) == 1  # ranks in sync
    a, b = epochs(single), epochs(ddp)
    assert b[-1]["world_size"] == 2
    for k in ("loss", "mc", "mt", "clip"):
        assert b[-1][k] == pytest.approx(a[-1][k], rel=1e-3, abs=1e-4), k
    assert max_weight_diff(single, ddp) < 1e-3
    assert b[-1]["val_accuracy"] == a[-1]["val_accuracy"]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches(tiny, tmp_path):
    cache = tmp_path / "cache"
    extra = ("--epochs", "3", "--batch-size", "4")
    ref = tmp_path / "ref"
    run_train(_args(tiny, ref, cache, *extra))
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "affectvlm.train", *_args(tiny, run, cache, *extra)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while not (run / "checkpoints" / "epoch_0000" / "meta.json").exists():
            assert proc.poll() is None and time.time() < deadline, "run ended before its first checkpoint"
            time.sleep(0.05)
        time.sleep(0.3)  # into epoch 1
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert json.loads((run / "status.json").read_text())["status"] == "running"  # killed, never finished
    run_train(["--out", str(run), "--resume"])
    a, b = epochs(ref), epochs(run)
    assert [r["epoch"] for r in b] == [0, 1, 2]  # no duplicated epoch records after the resume
    assert b[-1]["loss"] == pytest.approx(a[-1]["loss"], rel=1e-4, abs=1e-5)
    assert b[-1]["val_accuracy"] == a[-1]["val_accuracy"]
    assert max_weight_diff(ref, run) < 1e-4
    assert json.loads((run / "status.json").read_text())["status"] == "finished"


def test_bad_options_fail_cleanly(tiny, tmp_path, capsys):
    p = subprocess.run([sys.executable, "-m", "affectvlm.train", "--data", str(tmp_path / "nope"), "--layout",
                        "bu3dfe", "--out", str(tmp_path / "r"), "--model", "AffectVLM-Test"],
                       cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "does not exist" in p.stderr
    assert not (tmp_path / "r").exists()  # refused before the run folder is made
    p = subprocess.run([sys.executable, "-m", "affectvlm.train", "--data", str(tiny), "--layout", "bu3dfe",
                        "--out", str(tmp_path / "r2"), "--losses", "mc=abc"],
                       cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "mc" in p.stderr
    # a dry run says the same in one line, and leaves no run folder behind
    p = subprocess.run([sys.executable, "-m", "affectvlm.train", "--data", str(tmp_path / "nope"), "--layout",
                        "bu3dfe", "--out", str(tmp_path / "r3"), "--model", "AffectVLM-Test", "--dry-run"],
                       cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stdout == "" and "does not exist" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and not (tmp_path / "r3").exists()
    # a file where the run folder or the render cache should go: one line, exit 2, nothing left claiming a run
    (tmp_path / "afile").write_text("x")
    from affectvlm.train.train import main

    for extra in ([], ["--dry-run"]):
        assert main(["--data", str(tiny), "--layout", "bu3dfe", "--out", str(tmp_path / "afile"), *extra]) == 2
    # a misspelt class is named, not trained as a class without samples
    assert main(["--data", str(tiny), "--layout", "bu3dfe", "--out", str(tmp_path / "r5"), "--model", "AffectVLM-Test",
                 "--classes", "happiness,sadnes", "--dry-run"]) == 2
    assert not (tmp_path / "r5").exists()
    assert "--classes: 'sadnes' not in" in capsys.readouterr().err
    # the data set's own folder, or a folder holding it, is not a run folder: nothing is written among the scans
    before = sorted(p.name for p in tiny.iterdir())
    for out, how in ((tiny, "be"), (tiny.parent, "hold")):
        assert main(["--data", str(tiny), "--layout", "bu3dfe", "--out", str(out), "--model", "AffectVLM-Test"]) == 2
        assert f"the run folder would {how} the data set" in capsys.readouterr().err
    assert sorted(p.name for p in tiny.iterdir()) == before
    p = subprocess.run([sys.executable, "-m", "affectvlm.train", "--data", str(tiny), "--layout", "bu3dfe", "--out",
                        str(tmp_path / "r4"), "--model", "AffectVLM-Test", "--cache-dir", str(tmp_path / "afile")],
                       cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "cannot hold the render cache" in p.stderr and "Traceback" not in p.stderr
    assert json.loads((tmp_path / "r4" / "status.json").read_text())["status"] == "failed"


def test_a_scan_too_small_to_be_a_face_stops_training_naming_it(tmp_path, capsys):
    """What predict refuses (a 3-vertex "scan") is not trained on either: one line naming the file, exit 2."""
    import numpy as np

    from affectvlm.io.vrml import write_vrml
    from affectvlm.mesh import Mesh
    from affectvlm.train.train import main

    data = write_tiny_bu3dfe(tmp_path / "data", n_subjects=4)
    bad = data / "M0002" / "M0002_SA03WH_F3D.wrl"
    write_vrml(bad, Mesh(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32), np.array([[0, 1, 2]])))
    rc = main(_args(data, tmp_path / "run", tmp_path / "cache", "--epochs", "1", "--folds", "2", "--batch-size", "2"))
    err = capsys.readouterr().err
    assert rc == 2 and f"error: {bad}: only 3 vertices: too small to be a face scan" in err and "Traceback" not in err
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "failed"


@pytest.mark.slow
def test_batch_by_subject_runs_and_changes_the_batches(tiny, tmp_path):
    cache = tmp_path / "cache"
    mixed, grouped = tmp_path / "mixed", tmp_path / "grouped"
    run_train(_args(tiny, mixed, cache, "--batch-size", "4"))
    run_train(_args(tiny, grouped, cache, "--batch-size", "4", "--batch-by", "subject"))
    assert "batch_by: subject" in (grouped / "config.yaml").read_text()
    assert json.loads((grouped / "status.json").read_text())["status"] == "finished"
    assert len(epochs(grouped)) == 2 and max_weight_diff(mixed, grouped) > 1e-4
