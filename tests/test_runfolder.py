"""The run-folder contract (affectvlm.runfolder): typed status and metric records, round trips, bad lines."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from affectvlm import runfolder as rf


def test_status_round_trip_and_atomic_replace(tmp_path):
    written = rf.write_status(tmp_path, rf.Status.RUNNING, epoch=2, epochs=5, step=40, phase="training",
                              best_acc=0.5, custom="kept")
    raw = json.loads((tmp_path / "status.json").read_text())
    assert raw["status"] == "running" and raw["pid"] == os.getpid() and raw["custom"] == "kept"
    got = rf.read_status(tmp_path)
    assert got == written and got.status is rf.Status.RUNNING and got.epoch == 2 and got.extra == {"custom": "kept"}
    rf.write_status(tmp_path, "finished", test_accuracy=0.75)
    got = rf.read_status(tmp_path)
    assert got.status is rf.Status.FINISHED and got.test_accuracy == 0.75 and got.epoch is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]  # no temp file left
    with pytest.raises(ValueError):
        rf.write_status(tmp_path, "done")  # only the contract's words are written


def test_status_unreadable_unknown_and_stale(tmp_path):
    assert rf.read_status(tmp_path) is None
    (tmp_path / "status.json").write_text('{"status": "runn')
    assert rf.read_status(tmp_path) is None
    (tmp_path / "status.json").write_text('["running"]')
    assert rf.read_status(tmp_path) is None
    (tmp_path / "status.json").write_text('{"status": "exploded", "epoch": "x"}')
    st = rf.read_status(tmp_path)
    assert st.status is rf.Status.FAILED and st.extra["word"] == "exploded" and st.epoch is None
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "status.json").write_text(json.dumps({"status": "running", "pid": dead.pid}))
    st = rf.read_status(tmp_path)
    assert st.status is rf.Status.CRASHED and st.stale and "crashed or killed" in st.message
    rf.lock_run_dir(tmp_path)  # a live lock holder wins over a dead pid in the file
    try:
        assert rf.read_status(tmp_path).status is rf.Status.RUNNING
    finally:
        rf.unlock_run_dir(tmp_path)


def test_metrics_round_trip_keeps_the_flat_file(tmp_path):
    rec = rf.MetricRecord(kind=rf.MetricKind.EPOCH.value, epoch=0, step=12, lr=1e-3, loss=0.5, eta_s=30.0,
                          val_accuracy=0.75, values={"mc": 0.25, "cache": None, "val_confusion_matrix": [[1, 0], [0, 1]]})
    rf.append_metric(tmp_path, rec)
    rf.append_metric(tmp_path, {"kind": "train", "epoch": 1, "step": 20, "loss": 0.4, "eta_s": 9})
    line = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert line == {"kind": "epoch", "epoch": 0, "step": 12, "lr": 1e-3, "loss": 0.5, "eta_s": 30.0,
                    "val_accuracy": 0.75, "mc": 0.25, "cache": None, "val_confusion_matrix": [[1, 0], [0, 1]]}
    got = rf.read_metrics(tmp_path)
    assert got[0] == rec and got[0].to_json() == line
    assert got[1].eta_s == 9.0 and got[1].get("eta_s") == 9.0 and got[1].get("mc", "none") == "none"
    assert [r.epoch for r in rf.read_metrics(tmp_path, max_records=1)] == [0]


def test_metrics_bad_lines_skipped_with_a_warning_and_truncated(tmp_path, caplog):
    with open(tmp_path / "metrics.jsonl", "wb") as f:
        f.write(b'{"kind": "epoch", "epoch": 0}\n\xff\xfe{"kind"\n["foreign"]\n{"epoch": "x"}\n'
                b'{"kind": "epoch", "epoch": 1}\n{"kind": "epoch", "epoch": 2}\n{"kind": "epo')
    with caplog.at_level("WARNING", logger="affectvlm.runfolder"):
        assert [r.epoch for r in rf.read_metrics(tmp_path)] == [0, 1, 2]
    assert "skipped 4 unreadable line(s)" in caplog.text
    rf.truncate_metrics(tmp_path, 1)  # resume after epoch 1: epoch 2 will be produced again
    assert [json.loads(x)["epoch"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [0, 1]
    assert rf.read_metrics(tmp_path / "nowhere") == []


def test_splits_and_folder_names(tmp_path):
    run = rf.RunFolder(tmp_path)
    assert run.status.name == "status.json" and run.metrics.name == "metrics.jsonl" and run.best.name == "best"
    assert not run.is_run() and rf.read_splits(tmp_path) is None
    rec = rf.SplitsRecord(["happiness", "sadness"], {"train": ["F1"], "val": ["M2"], "test": ["F3"]},
                          {"train": 4, "val": 4, "test": 4}, "kfold")
    rf.write_splits(tmp_path, rec)
    assert rf.read_splits(tmp_path) == rec
    run.config.write_text("data: x\n")
    run.best.mkdir()
    assert run.is_run() and not run.has_model()


def test_status_word_on_the_command_line(tmp_path):
    def word() -> str:
        p = subprocess.run([sys.executable, "-m", "affectvlm.runfolder", str(tmp_path)], capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        return p.stdout.strip()

    assert word() == "none"
    rf.write_status(tmp_path, rf.Status.PREEMPTED, epoch=1)
    assert word() == "preempted"


@pytest.mark.parametrize("text", ['{"status": "finished", "epochs": Infinity}', '{"status": "running", "pid": 1' + "0" * 20 + '}',
                                  '{"status": "running", "epoch": NaN}', "[" * 100_000 + "]" * 100_000])
def test_a_crafted_status_file_is_unreadable_or_read_not_a_crash(tmp_path, text):
    """Infinity, a pid too large for os.kill and nesting too deep for the parser each raised in every reader
    (the Train page, for every session of the app)."""
    (tmp_path / "status.json").write_text(text)
    st = rf.read_status(tmp_path)
    assert st is None or (st.pid is None or not rf.pid_alive(st.pid))


def test_crafted_metric_lines_are_skipped(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1, "val_acc": 0.5}\n{"epoch": Infinity}\n'
                                            + "[" * 100_000 + "]" * 100_000 + "\n" + '{"epoch": 1e400}\n')
    recs, bad = rf.read_metric_lines(tmp_path / "metrics.jsonl")
    assert [r["epoch"] for r in recs] == [1] and bad == 3
