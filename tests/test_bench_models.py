"""bench/bench_models.py: several models on the same named trees, per tree, per recipe and against the first model."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchload import load_bench
from test_bench_subject_mean import _tree

TRUTH = {"HA": "happiness", "SA": "sadness", "SU": "surprise", "FE": "fear", "DI": "disgust", "AN": "anger"}


def _bench():
    return load_bench("bench_models")


def _accuracy(rows_file: Path) -> float:
    rows = [r for r in json.loads(rows_file.read_text()) if "NE00" not in r["file"]]
    return round(float(np.mean([r["label"] == TRUTH[Path(r["file"]).name.split("_")[1][:2]] for r in rows])), 4)


def test_each_model_scores_each_tree_and_the_gain_is_against_the_first(tmp_path, capsys):
    bench = _bench()
    rb = _tree(tmp_path / "rb01")
    ict = shutil.copytree(rb, tmp_path / "ict2")
    models = ["AffectVLM-Test", "AffectVLM-Tiny"]
    argv = [str(rb), str(ict), "--model", models[0], "--model", models[1], "--headline", "rb",
            "--out-dir", str(tmp_path / "rows")]
    assert bench.main(argv) == 0
    rep = json.loads(capsys.readouterr().out)
    assert [m["model"] for m in rep["models"]] == models
    for model, m in zip(models, rep["models"]):
        for name in ("rb01", "ict2"):
            got = m["trees"][name]
            assert got["kind"] == "scans" and got["n"] == 16  # levels 3-4 of both subjects, not the neutral scans
            assert got["accuracy"] == _accuracy(bench.rows_file(tmp_path / "rows", model, name)), (model, name)
        assert m["recipes"] == {"ict": m["trees"]["ict2"]["accuracy"], "rb": m["trees"]["rb01"]["accuracy"]}
        assert m["headline"] == m["recipes"]["rb"] and m["headline_trees"] == 1
    first, second = rep["models"]
    assert "gain" not in first
    assert second["gain"]["headline"] == round(second["headline"] - first["headline"], 4)
    assert second["gain"]["recipes"]["ict"] == round(second["recipes"]["ict"] - first["recipes"]["ict"], 4)


def test_recipes_group_draws_and_sequence_trees_stay_out_of_the_means():
    bench = _bench()
    assert bench.recipe_of("/x/rb4611") == "rb" and bench.recipe_of("ictrb4616") == "ictrb"
    assert bench.recipe_of("plain") == "plain" and bench.recipe_of("4611") == "4611"
    trees = {"rb4611": {"kind": "scans", "accuracy": 0.6, "n": 240},
             "rb4614": {"kind": "scans", "accuracy": 0.7, "n": 240},
             "rpm4612": {"kind": "scans", "accuracy": 0.8, "n": 240},
             "ict4617": {"kind": "scans", "accuracy": 1.0, "n": 96},
             "rb4d": {"kind": "sequences", "accuracy": 0.5, "n": 96, "right": 48}}
    s = bench.summarise(trees, {"rb", "rpm"})
    assert s["recipes"] == {"ict": 1.0, "rb": 0.65, "rpm": 0.8}  # rb4d: a sequence tree, in no mean
    assert s["headline"] == 0.7 and s["headline_trees"] == 3  # the mean over trees, not over recipes
    assert bench.summarise(trees, None)["headline"] == 0.775


def test_two_trees_with_one_name_are_refused(tmp_path, capsys):
    bench = _bench()
    (tmp_path / "a" / "rb1").mkdir(parents=True)
    (tmp_path / "b" / "rb1").mkdir(parents=True)
    with pytest.raises(SystemExit) as e:
        bench.main([str(tmp_path / "a" / "rb1"), str(tmp_path / "b" / "rb1"), "--model", "default"])
    assert e.value.code == 2 and "share a folder name" in capsys.readouterr().err


def _fake_checkpoint(folder: Path, weights: bytes) -> str:
    """A folder parse_spec takes for a checkpoint; only its bytes matter here (nothing loads it)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "affectvlm.json").write_text('{"format": "affectvlm-checkpoint"}')
    (folder / "open_clip_model.safetensors").write_bytes(weights)
    return str(folder)


def test_reuse_reads_kept_rows_instead_of_predicting(tmp_path, capsys):
    bench = _bench()
    kept = tmp_path / "rows"
    kept.mkdir()
    model = _fake_checkpoint(tmp_path / "runs" / "base" / "best", b"weights one")
    rows = [{"file": f"/t/rb7/F0001/F0001_{c}0{lvl}WH_F3D.wrl", "frame": "", "label": TRUTH[c] if ok else "neutral",
             "error": ""} for c, lvl, ok in (("HA", 4, True), ("SA", 3, True), ("SU", 4, False), ("AN", 2, False))]
    bench.rows_file(kept, model, "rb7", bench.weights_digest(model)).write_text(json.dumps(rows))
    missing = str(tmp_path / "no" / "rb7")  # predict on it would fail: the rows must come from the kept file
    assert bench.main([missing, "--model", model, "--out-dir", str(kept), "--reuse"]) == 0
    got = json.loads(capsys.readouterr().out)["models"][0]["trees"]["rb7"]
    assert got == {"kind": "scans", "accuracy": 0.6667, "n": 3,  # level 2 is not counted, nor its error
                   "confusions": {"surprise->neutral": 1}}
    assert bench.rows_file(kept, "runs/base/best", "rb7") != bench.rows_file(kept, "runs/base_best", "rb7")
    with pytest.raises(SystemExit) as e:
        bench.main([missing, "--model", "default", "--reuse"])
    assert e.value.code == 2 and "--reuse needs --out-dir" in capsys.readouterr().err


def test_reuse_predicts_again_when_the_same_spec_names_new_weights(tmp_path):
    bench = _bench()
    kept = tmp_path / "rows"
    kept.mkdir()
    model = _fake_checkpoint(tmp_path / "best", b"weights one")
    before = bench.weights_digest(model)
    bench.rows_file(kept, model, "rb7", before).write_text(json.dumps([{"file": "x", "frame": "", "label": "anger"}]))
    _fake_checkpoint(tmp_path / "best", b"weights two")  # the run trained again, or `default` was replaced
    after = bench.weights_digest(model)
    assert after != before and bench.rows_file(kept, model, "rb7", after) != bench.rows_file(kept, model, "rb7", before)
    with pytest.raises(SystemExit, match="no such folder"):  # not read from the stale rows: predicted, and the tree is missing
        bench.main([str(tmp_path / "no" / "rb7"), "--model", model, "--out-dir", str(kept), "--reuse"])
    assert bench.weights_digest("AffectVLM-Tiny") == ""  # an architecture has no local files


def test_a_spec_that_does_not_resolve_stops_with_one_line_naming_it(tmp_path):
    bench = _bench()
    missing = f"local-dir:{tmp_path / 'nowhere'}"
    with pytest.raises(SystemExit) as e:
        bench.main([str(tmp_path / "rb7"), "--model", missing, "--out-dir", str(tmp_path / "rows")])
    text = str(e.value.code)
    assert text.startswith(f"bench_models: --model {missing}: ") and "model folder not found" in text
    assert "\n" not in text
    assert not any((tmp_path / "rows").iterdir())  # nothing kept under a name that stands for no weights


def test_confusions_count_the_commonest_errors_among_the_counted_rows():
    bench = _bench()

    def row(code: str, label: str, frame: str = "") -> dict:
        return {"file": f"/t/rb7/F0001/F0001_{code}WH_F3D.wrl", "frame": frame, "label": label, "error": ""}

    rows = [row("AN04", "disgust"), row("AN03", "disgust"), row("FE04", "surprise"), row("HA04", "happiness"),
            row("AN02", "disgust"), row("NE00", "happiness")]  # level 2 and the neutral scan are not counted
    assert bench.confusions(bench.counted(rows, {3, 4})) == {"anger->disgust": 2, "fear->surprise": 1}
    assert bench.confusions(bench.counted(rows, {3, 4}), most=1) == {"anger->disgust": 2}
    assert bench.confusions(bench.counted(rows, {2})) == {"anger->disgust": 1}


def test_a_kept_file_cut_short_is_predicted_again_not_a_traceback(tmp_path):
    bench = _bench()
    kept = tmp_path / "rows"
    kept.mkdir()
    model = _fake_checkpoint(tmp_path / "best", b"weights one")
    f = bench.rows_file(kept, model, "rb7", bench.weights_digest(model))
    for text in ('[{"file": "x", "fra', "{}", "[]", "[1, 2]"):
        f.write_text(text)
        assert bench.read_kept(f) is None
        with pytest.raises(SystemExit, match="no such folder"):  # predicted afresh, and the tree is missing
            bench.main([str(tmp_path / "no" / "rb7"), "--model", model, "--out-dir", str(kept), "--reuse"])
    f.write_text('[{"file": "x", "frame": "", "label": "anger"}]')
    assert bench.read_kept(f) == [{"file": "x", "frame": "", "label": "anger"}]


def test_kept_rows_are_not_reused_once_rendering_or_the_face_frame_changes(monkeypatch):
    import affectvlm.faceframe as ff
    import affectvlm.train.cache as cache

    bench = _bench()
    before = bench.rows_file(Path("k"), "default", "rb7")
    monkeypatch.setattr(cache, "CACHE_VERSION", cache.CACHE_VERSION + 1)
    after_render = bench.rows_file(Path("k"), "default", "rb7")
    monkeypatch.undo()
    monkeypatch.setattr(ff, "weights_digest", lambda: "another network")
    after_frame = bench.rows_file(Path("k"), "default", "rb7")
    assert len({before, after_render, after_frame}) == 3
