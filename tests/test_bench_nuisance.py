"""bench/bench_nuisance.py: one scanner nuisance at a time, on the families a run names."""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))


def test_families_option_limits_the_scans_to_the_named_families(tmp_path, capsys):
    import bench_nuisance

    from tests.gltfgen import ellipsoid_head, glb_bytes, head_targets

    v, f = ellipsoid_head()
    (tmp_path / "Head.glb").write_bytes(glb_bytes(v, f, head_targets(v, left_is_plus_x=True)))
    base = ["--gltf", str(tmp_path / "Head.glb"), "--subjects", "1", "--conditions", "clean,holes4"]
    assert bench_nuisance.main(base + ["--families", "emfacs"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["families"] == ["emfacs"] and one["scans_per_condition"] == 13  # neutral + 6 emotions x levels 3, 4
    assert set(one["conditions"]) == {"clean", "holes4"} and one["conditions"]["holes4"]["n"] == 13
    assert 0.0 <= one["conditions"]["holes4"]["accuracy"] <= 1.0
    assert bench_nuisance.main(base) == 0
    every = json.loads(capsys.readouterr().out)
    assert "emfacs" in every["families"] and len(every["families"]) > 1
    assert every["scans_per_condition"] == 13 * len(every["families"])


def test_unknown_family_is_refused_before_any_scan_is_made(tmp_path, capsys):
    import bench_nuisance
    import pytest

    with pytest.raises(SystemExit) as e:
        bench_nuisance.main(["--gltf", str(tmp_path / "absent.glb"), "--families", "emfacs,emfax"])
    assert e.value.code == 2
    assert "--families 'emfacs,emfax'" in capsys.readouterr().err
