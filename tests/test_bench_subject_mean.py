"""bench/bench_subject_mean.py: predict with and without each subject's mean on a named tree, read against the names."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import trimesh

from benchload import load_bench
from meshgen import face_like_mesh

CODES = ["HA", "SA", "SU", "FE", "DI", "AN"]


def _bench():
    return load_bench("bench_subject_mean")


def _tree(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for subject, codes in (("F0001", CODES), ("M0002", CODES[:2])):  # the second subject is too narrow to centre
        (root / subject).mkdir(parents=True)
        names = [f"{subject}_NE00WH_F3D"] + [f"{subject}_{c}0{lv}WH_F3D" for c in codes for lv in (3, 4)]
        for name in names:
            m = face_like_mesh(24, smile=float(rng.normal()), seed=int(rng.integers(1000)))
            trimesh.Trimesh(m.vertices, m.faces, process=False).export(root / subject / f"{name}.obj")
    return root


def test_both_runs_are_read_against_the_names(tmp_path, capsys):
    bench = _bench()
    tree = _tree(tmp_path / "bu")
    assert bench.main([str(tree), "--model", "AffectVLM-Test", "--out-dir", str(tmp_path / "rows")]) == 0
    rep = json.loads(capsys.readouterr().out)
    got = rep["trees"]["bu"]
    assert got["n"] == 16  # levels 3-4 of both subjects, not the neutral scans
    for mode, key in (("none", "without"), ("auto", "with")):
        rows = json.loads((tmp_path / "rows" / f"bu.{mode}.json").read_text())
        counted = [r for r in rows if "NE00" not in r["file"]]
        truth = {"HA": "happiness", "SA": "sadness", "SU": "surprise", "FE": "fear", "DI": "disgust", "AN": "anger"}
        want = np.mean([r["label"] == truth[Path(r["file"]).name.split("_")[1][:2]] for r in counted])
        assert got[key] == round(float(want), 4), mode
    none = {r["file"]: r for r in json.loads((tmp_path / "rows" / "bu.none.json").read_text())}
    auto = {r["file"]: r for r in json.loads((tmp_path / "rows" / "bu.auto.json").read_text())}
    changed = {Path(f).parent.name for f in none if abs(none[f]["anger"] - auto[f]["anger"]) > 1e-6}
    assert changed == {"F0001"}  # only the subject with 13 scans of 7 named classes is centred
    assert got["gain"] == round(got["with"] - got["without"], 4) and rep["mean_gain"] == got["gain"]
    assert bench.score([{"file": "x/F0001_HA02WH_F3D.obj", "frame": "", "label": "happiness"}], {3, 4}) == (None, 0)
    assert bench.score([{"file": "x/F001/Happy", "frame": "sequence", "label": "happiness", "error": ""}],
                       {3, 4}) == (1.0, 1)
