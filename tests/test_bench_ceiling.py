"""bench/bench_ceiling.py: a synthetic tree's scans regenerated from its synth.json, and how readable its labels are."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from affectvlm.errors import ConfigError
from affectvlm.io import load_mesh
from affectvlm.synth.bulayout import write_bu3dfe
from affectvlm.synth.corpus import CorpusConfig
from affectvlm.synth.randomised import Nuisance
from benchload import load_bench
from tests.test_corpus import _toy_model

_STILL = Nuisance(vertices=(0, 0), hole_probability=0.0, noise_mm=(0.0, 0.0), units=(("mm", 1.0),), origin_mm=0.0,
                  yaw_deg=0.0, pitch_deg=0.0, roll_deg=0.0, crops=(("full", 1.0),))


def _bench():
    return load_bench("bench_ceiling")


def test_the_toy_faces_labels_are_in_the_au_draws_but_not_in_its_one_unit(tmp_path):
    bench = _bench()
    models = {"toy": _toy_model(16)}
    tree = tmp_path / "bu"
    write_bu3dfe(CorpusConfig(subjects=10, seed=3, families=("emfacs",), levels=(2, 3, 4), nuisance=_STILL),
                 models, tree)
    rows = bench.regenerate(tree, models)
    with open(tree / "manifest.csv", newline="") as fh:
        manifest = list(csv.DictReader(fh))
    assert [r["label"] for r in rows] == [m["label"] for m in manifest]
    # the displacement is the scan's own: two scans of one subject differ by their displacements (no nuisance here)
    a, b = (i for i, m in enumerate(manifest) if m["subject"] == manifest[0]["subject"] and m["label"] == "happiness"
            and m["intensity"] in ("2", "4"))
    va, vb = (np.asarray(load_mesh(tree / manifest[i]["path"]).vertices, np.float64).ravel() for i in (a, b))
    np.testing.assert_allclose(va - vb, rows[a]["d"] - rows[b]["d"], atol=1e-3)
    assert np.abs(rows[b]["d"]).max() > 1.0  # happiness moves the toy's one unit, AU12
    rep = bench.ceiling(rows, folds=5, split_seed=0, levels={3, 4})
    assert rep["chance"]["mean"] == pytest.approx(1 / 6, abs=1e-3)
    # the sampler's AU draws tell the six emotions apart; the toy face has only AU12, so its geometry cannot
    assert rep["aus"]["mean"] > 0.8
    assert rep["displacement"]["mean"] < 0.5 and rep["displacement"]["mean"] < rep["aus"]["mean"] - 0.3


def test_a_tree_that_is_not_what_its_synth_json_makes_is_refused(tmp_path):
    bench = _bench()
    models = {"toy": _toy_model(16)}
    tree = tmp_path / "bu"
    write_bu3dfe(CorpusConfig(subjects=2, seed=3, families=("emfacs",), levels=(4,), nuisance=_STILL), models, tree)
    with pytest.raises(ConfigError, match="face models"):
        bench.regenerate(tree, {"other": _toy_model(16)})
    text = (tree / "manifest.csv").read_text()
    (tree / "manifest.csv").write_text(text.replace(",happiness,", ",anger,", 1))
    with pytest.raises(ConfigError, match="another version or with other options"):
        bench.regenerate(tree, models)
    (tree / "synth.json").write_text("{}")
    with pytest.raises(ConfigError, match="synth.json"):
        bench.regenerate(tree, models)


def test_the_trees_own_face_models_are_taken_from_what_the_folders_and_expressions_make(tmp_path):
    from affectvlm.synth.transfer import expression_models

    bench = _bench()
    toy = _toy_model(16)
    tree = tmp_path / "bu"
    write_bu3dfe(CorpusConfig(subjects=2, seed=3, families=("emfacs",), levels=(4,), nuisance=_STILL), {"toy": toy},
                 tree)
    # more models than the tree used (as --expressions both or several folders make): the tree's own are kept
    rows = bench.regenerate(tree, {"toy": toy, "other": _toy_model(12)})
    assert {r["model"] for r in rows} == {"toy"}
    assert expression_models({"toy": toy}, "own", 1, 3) == {"toy": toy}
    for expressions, mixes, match in (("swapped", 1, "two face models"), ("procedural", 0, "--mixes"),
                                      ("shuffled", 1, "--expressions")):
        with pytest.raises(ConfigError, match=match):
            expression_models({"toy": toy}, expressions, mixes, 3)
