"""bench/probe_synth.py: the ridge floor on a trainer run's split (``--splits``), strength chosen on val."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))

from test_train import write_tiny_bu3dfe  # noqa: E402


def test_probe_reads_a_runs_split_and_chooses_the_ridge_on_val(tmp_path, capsys):
    import probe_synth

    data = write_tiny_bu3dfe(tmp_path / "bu", n_subjects=8, intensities=(1, 2, 3, 4), neutral=True)
    subjects = sorted(p.name for p in data.iterdir())
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"subjects": {"train": subjects[:4], "val": subjects[4:6], "test": subjects[6:7]}}))
    assert probe_synth.main(["--data", str(data), "--splits", str(splits), "--train-intensities", "all",
                             "--ridge", "auto"]) == 0
    out = json.loads(capsys.readouterr().out)
    # train: 4 subjects x (NE00 + 2 expressions x 4 levels); val/test: NE00 + 2 expressions x levels 3-4; the eighth
    # subject is in no part of the split and is left out
    assert (out["n_train"], out["n_val"], out["n_test"]) == (36, 10, 5) and out["scans"] == 51
    assert out["ridge"] in probe_synth.RIDGES and out["split_from"] == str(splits)
    assert out["acc_test_expressive"] >= 0.75  # smile up against smile down, neutral in between
    assert probe_synth.main(["--data", str(data), "--splits", str(splits), "--ridge", "7"]) == 0
    fixed = json.loads(capsys.readouterr().out)
    assert fixed["ridge"] == 7.0 and fixed["n_train"] == 4 * 5  # levels 3-4 and NE00 fitted by default
    # no test subject: refused, not an accuracy over nothing ("chance_majority": null, "test_over_chance": 0.0)
    splits.write_text(json.dumps({"subjects": {"train": subjects[:4], "val": subjects[4:6], "test": []}}))
    with pytest.raises(SystemExit, match="needs train and test scans"):
        probe_synth.main(["--data", str(data), "--splits", str(splits), "--ridge", "7"])
