"""bench/bench_sequences.py: the corpus sampler's BU-4DFE trees are read as sequence folders, and a folder with no
sequence is an error, not an accuracy of 0.0 over nothing."""
from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_sequences.py"
sys.path.insert(0, str(Path(__file__).resolve().parent))


def test_a_sampler_bu4dfe_tree_is_scored_and_an_empty_one_refused(tmp_path, capsys):
    from meshgen import face_like_mesh

    from affectvlm.io.vrml import write_vrml

    main = runpy.run_path(str(BENCH))["main"]
    tree = tmp_path / "tree"
    for f in range(3):
        write_vrml(tree / "F001" / "Happy" / f"{f:03d}.wrl", face_like_mesh(16, smile=f, seed=f, textured=False))
    # as `affectvlm synth --layout bu4dfe --families emfacs` writes it: a face_model column, per-frame rows
    (tree / "manifest.csv").write_text("path,label,subject,split,face_model\nF001/Happy/000.wrl,neutral,F001,train,"
                                       "ict\n")
    (tree / "synth.json").write_text('{"layout": "bu4dfe"}')
    assert main(["--data", str(tree), "--model", "AffectVLM-Test", "--frames", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sequences"] == 1 and out["frames_scored"] == 3  # it read 0 sequences: the manifest's test rows
    for empty in (tmp_path / "missing", tmp_path / "empty"):
        (tmp_path / "empty").mkdir(exist_ok=True)
        assert main(["--data", str(empty)]) == 2
        assert "no sequences to score" in capsys.readouterr().err
