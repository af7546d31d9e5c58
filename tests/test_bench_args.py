"""The benches' bad arguments: one line naming what is wrong, never a traceback or a report over nothing."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))


def _one_line_exit(capsys, main, argv) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    text = (e.value.code if isinstance(e.value.code, str) else "") + capsys.readouterr().err
    assert e.value.code not in (0, None) and "Traceback" not in text
    return text.strip().splitlines()[-1]


def test_render_module_that_is_not_a_render_package(tmp_path, capsys):
    import bench_render

    (tmp_path / "plain.py").write_text("x = 1\n")
    (tmp_path / "boom.py").write_text("raise ValueError('boom')\n")
    for arg, says in ((tmp_path / "none", "not a render package folder"), (tmp_path, "not a render package folder"),
                      (tmp_path / "plain.py", "no render_views function"), (tmp_path / "boom.py", "ValueError: boom")):
        line = _one_line_exit(capsys, bench_render.main, ["--quick", "--no-pyvista", "--render-module", str(arg)])
        assert says in line and str(arg) in line


def test_corpus_select_names_a_missing_corpus_a_bad_level_and_an_empty_selection(tmp_path, capsys):
    import corpus_select

    out = tmp_path / "sel.csv"
    assert "no corpus manifest" in _one_line_exit(capsys, corpus_select.main,
                                                  ["--data", str(tmp_path / "none"), "--rule", "level=3", "--out", str(out)])
    assert "levels are 0 (neutral) to 4" in _one_line_exit(capsys, corpus_select.main,
                                                           ["--data", str(tmp_path), "--rule", "level=x", "--out", str(out)])
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "manifest.csv").write_text("path,label,intensity,subject,split,family,face_model\n"
                                         "a.obj,happiness,3,s1,test,emfacs,ict\n")
    assert "matches any --rule" in _one_line_exit(capsys, corpus_select.main,
                                                  ["--data", str(corpus), "--rule", "family=sculpt", "--out", str(out)])
    assert not out.exists()
    (corpus / "manifest.csv").write_text("path,label,intensity\na.obj,happiness,three\n")
    assert "line 2" in _one_line_exit(capsys, corpus_select.main,
                                      ["--data", str(corpus), "--rule", "level=3", "--out", str(out)])


def test_probe_and_tree_benches_name_a_missing_folder(tmp_path, capsys):
    import bench_subject_mean
    import bench_transfer
    import probe_synth

    none = str(tmp_path / "none")
    assert "no such folder" in _one_line_exit(capsys, probe_synth.main, ["--data", none])
    assert "no manifest.csv" in _one_line_exit(capsys, probe_synth.main, ["--data", str(tmp_path)])
    assert "no such folder" in _one_line_exit(capsys, bench_subject_mean.main, [none, "--model", "AffectVLM-Test"])
    assert "no corpus manifest" in _one_line_exit(capsys, bench_transfer.main, ["--data", none])


def test_nuisance_sculpt_for_face_models_without_sculpts(tmp_path, capsys, monkeypatch):
    import bench_nuisance

    kit = REPO.parent / "shared" / "ict-facekit" / "FaceXModel"
    if not kit.is_dir():
        pytest.skip("ICT-FaceKit subset not present")
    line = _one_line_exit(capsys, bench_nuisance.main, ["--facekit", str(kit), "--families", "sculpt",
                                                        "--subjects", "1", "--model", "AffectVLM-Test"])
    assert "no face model named has sculpted emotion targets" in line
