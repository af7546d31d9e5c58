"""bench/bench_folds.py: real trainer runs over subject folds, option sets paired against the baseline."""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from benchload import load_bench  # noqa: E402
from test_train import write_tiny_bu3dfe  # noqa: E402


def _bench():
    return load_bench("bench_folds")


def test_folds_pair_each_option_set_with_the_baseline(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = write_tiny_bu3dfe(tmp_path / "tiny")
    bench = _bench()
    argv = ["--data", str(data), "--folds", "2", "--config", "base=", "--config", "fast=--lr 0.02", "--jobs", "2",
            "--out", str(tmp_path / "runs"), "--", "--model", "AffectVLM-Test", "--epochs", "1", "--batch-size",
            "2", "--image-size", "32", "--views", "0", "--max-steps", "2", "--cache-dir", str(tmp_path / "cache")]
    rep = bench.main(argv)
    assert json.loads(capsys.readouterr().out) == rep  # the JSON printed is the report
    assert rep["baseline"] == "base" and set(rep["configs"]) == {"base", "fast"}
    runs = rep["runs"]
    assert sorted(runs) == ["tiny_base_f0", "tiny_base_f1", "tiny_fast_f0", "tiny_fast_f1"]
    assert all(r["rc"] == 0 and 0 <= r["best_val"] <= 1 and 0 <= r["test"] <= 1 for r in runs.values())
    # each fold tests other subjects
    tests = [set(json.loads((tmp_path / "runs" / f"tiny_base_f{f}" / "splits.json").read_text())["subjects"]["test"])
             for f in (0, 1)]
    assert tests[0] and tests[1] and not tests[0] & tests[1]
    base, fast = rep["configs"]["base"], rep["configs"]["fast"]
    assert base["mean_best_val"] == round((runs["tiny_base_f0"]["best_val"] + runs["tiny_base_f1"]["best_val"]) / 2, 4)
    vs = fast["vs_baseline"]
    gains = [runs[f"tiny_fast_f{f}"]["best_val"] - runs[f"tiny_base_f{f}"]["best_val"] for f in (0, 1)]
    assert vs["pairs"] == 2 and vs["wins"] == sum(g > 0 for g in gains) and vs["losses"] == sum(g < 0 for g in gains)
    assert vs["mean_val_gain"] == round(sum(gains) / 2, 4) and fast["options"] == "--lr 0.02"
    assert base["test"]["tiny"]["folds"] == 2 and "vs_baseline" not in base
    # finished runs are read back, not repeated
    logs = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*.log")}
    again = bench.main(argv)
    assert again["configs"] == rep["configs"]
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*.log")} == logs


def test_predict_scores_each_runs_test_subjects_as_a_user_would(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = write_tiny_bu3dfe(tmp_path / "tiny", neutral=True)
    bench = _bench()
    argv = ["--data", str(data), "--folds", "2", "--out", str(tmp_path / "runs"), "--predict", "--predict-args",
            "--adapt none --neutral none", "--", "--model", "AffectVLM-Test", "--epochs", "1", "--batch-size", "2",
            "--image-size", "32", "--views", "0", "--max-steps", "2", "--cache-dir", str(tmp_path / "cache")]
    rep = bench.main(argv)
    capsys.readouterr()
    assert rep["predict"] == "affectvlm predict TEST --adapt none --neutral none"
    tests = [json.loads((tmp_path / "runs" / f"tiny_base_f{f}" / "splits.json").read_text())["subjects"]["test"]
             for f in (0, 1)]
    for f, test in enumerate(tests):
        run = rep["runs"][f"tiny_base_f{f}"]
        # every test subject's level 3-4 scan was scored (2 expressions x 2 levels), and none failed
        assert run["predict_n"] == 4 * len(test) and run["predict_failed"] == 0
        # scored alone and as trained, predict reads the test subjects as the trainer's own figure says
        assert run["predict_test"] == round(run["test"], 4)
    entry = rep["configs"]["base"]["test"]["tiny"]
    assert entry["predict_mean"] == round((rep["runs"]["tiny_base_f0"]["predict_test"]
                                           + rep["runs"]["tiny_base_f1"]["predict_test"]) / 2, 4)
    # a scored run is read back, not scored again, while its checkpoint and the predict options are the same
    kept = tmp_path / "runs" / "tiny_base_f0.predict.json"
    record = json.loads(kept.read_text())
    assert record["record"]["predict_test"] == rep["runs"]["tiny_base_f0"]["predict_test"]
    record["record"]["predict_n"] = -1  # a mark only a read-back can return
    kept.write_text(json.dumps(record))
    # a run folder without its splits (a run stopped early, then given a result by hand or another tool) is reported
    # with its error, and the other folds are still reported
    (tmp_path / "runs" / "tiny_base_f1" / "splits.json").unlink()
    again = bench.main(argv)
    capsys.readouterr()
    assert "splits.json" in again["runs"]["tiny_base_f1"]["predict_error"][0]
    assert again["runs"]["tiny_base_f0"]["predict_n"] == -1
    assert again["runs"]["tiny_base_f0"]["predict_test"] == rep["runs"]["tiny_base_f0"]["predict_test"]
    # other predict options, or another checkpoint in best/, score it again
    scored = []
    monkeypatch.setattr(bench, "_score_test_subjects", lambda *a: scored.append(a[3]) or {"predict_n": len(scored)})
    run0 = tmp_path / "runs" / "tiny_base_f0"
    assert bench.predict_record(run0, str(data), "auto", ["--adapt", "none", "--neutral", "none"])["predict_n"] == -1
    assert bench.predict_record(run0, str(data), "auto", ["--adapt", "none"])["predict_n"] == 1
    assert bench.predict_record(run0, str(data), "auto", ["--adapt", "none"])["predict_n"] == 1  # kept again
    with (run0 / "best" / "affectvlm.json").open("a") as f:
        f.write(" ")
    assert bench.predict_record(run0, str(data), "auto", ["--adapt", "none"])["predict_n"] == 2
    monkeypatch.setattr(bench, "code_digest", lambda: "the library changed")
    assert bench.predict_record(run0, str(data), "auto", ["--adapt", "none"])["predict_n"] == 3
    assert scored == [["--adapt", "none"]] * 3


def test_fold_ids_run_only_those_folds_of_the_split(tmp_path, monkeypatch, capsys):
    import pytest
    import yaml

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = write_tiny_bu3dfe(tmp_path / "tiny")
    bench = _bench()
    argv = ["--data", str(data), "--folds", "3", "--fold-ids", "1", "--out", str(tmp_path / "runs"), "--",
            "--model", "AffectVLM-Test", "--epochs", "1", "--batch-size", "2", "--image-size", "32", "--views", "0",
            "--max-steps", "2", "--cache-dir", str(tmp_path / "cache")]
    rep = bench.main(argv)
    assert sorted(rep["runs"]) == ["tiny_base_f1"] and rep["fold_ids"] == [1] and rep["configs"]["base"]["runs"] == 1
    cfg = yaml.safe_load((tmp_path / "runs" / "tiny_base_f1" / "config.yaml").read_text())
    assert (cfg["folds"], cfg["fold"]) == (3, 1)  # fold 1 of the 3-fold split, not a split of its own
    for bad in ("3", "1,1", "x", ""):
        with pytest.raises(SystemExit, match="--fold-ids"):
            bench.main(["--data", str(data), "--folds", "3", "--fold-ids", bad, "--out", str(tmp_path / "r2")])


def test_seeds_train_each_fold_once_per_seed_and_pair_by_seed(tmp_path, monkeypatch, capsys):
    import pytest
    import yaml

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = write_tiny_bu3dfe(tmp_path / "tiny")
    bench = _bench()
    tail = ["--", "--model", "AffectVLM-Test", "--epochs", "1", "--batch-size", "2", "--image-size", "32", "--views",
            "0", "--max-steps", "2", "--cache-dir", str(tmp_path / "cache")]
    rep = bench.main(["--data", str(data), "--folds", "3", "--fold-ids", "1", "--seeds", "3,4", "--jobs", "2",
                      "--out", str(tmp_path / "runs"), *tail])
    capsys.readouterr()
    runs = rep["runs"]
    assert sorted(runs) == ["tiny_base_f1_s3", "tiny_base_f1_s4"] and rep["seeds"] == [3, 4]
    for s in (3, 4):
        cfg = yaml.safe_load((tmp_path / "runs" / f"tiny_base_f1_s{s}" / "config.yaml").read_text())
        assert (cfg["fold"], cfg["seed"]) == (1, s)
    base = rep["configs"]["base"]
    assert base["seed_spread"] == round(abs(runs["tiny_base_f1_s3"]["best_val"] - runs["tiny_base_f1_s4"]["best_val"]), 4)
    assert base["test"]["tiny"]["folds"] == 1 and base["test"]["tiny"]["runs"] == 2
    # each candidate run is paired with the baseline's run of the same fold and seed
    fake = {"x_base_f0_s0": {"best_val": 0.5, "test": 0.6}, "x_base_f0_s1": {"best_val": 0.7, "test": 0.6},
            "x_new_f0_s0": {"best_val": 0.6, "test": 0.7}, "x_new_f0_s1": {"best_val": 0.6, "test": 0.7}}
    got = bench.summarise(fake, {"base": [], "new": ["--lr", "1"]}, ["x"], [0], [0, 1])
    assert got["configs"]["base"]["seed_spread"] == 0.2 and got["configs"]["new"]["seed_spread"] == 0.0
    assert got["configs"]["new"]["vs_baseline"] == {"mean_val_gain": 0.0, "wins": 1, "losses": 1, "pairs": 2,
                                                    "val_ratio": 1.0}
    for bad in ("1,1", "x", ""):
        with pytest.raises(SystemExit, match="--seeds"):
            bench.main(["--data", str(data), "--seeds", bad, "--out", str(tmp_path / "r2")])
    with pytest.raises(SystemExit, match="--seeds"):
        bench.main(["--data", str(data), "--seeds", "0,1", "--out", str(tmp_path / "r2"), "--", "--seed", "2"])
