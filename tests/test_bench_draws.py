"""bench/bench_draws.py: predict rows of a synthetic BU-3DFE tree broken down by each scan's nuisance draws."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from affectvlm.synth.bulayout import write_bu3dfe, write_bu4dfe  # noqa: E402
from affectvlm.synth.corpus import CorpusConfig  # noqa: E402
from affectvlm.synth.corpus4d import write_sequences  # noqa: E402
from affectvlm.synth.randomised import Nuisance  # noqa: E402
from tests.test_corpus import _toy_model  # noqa: E402


def _pred(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "frame", "label", "confidence"])
        w.writerows([(f, "", label, "0.9") for f, label in rows])
    return path


def test_breakdown_groups_each_scan_by_its_draws(tmp_path, capsys):
    import bench_draws

    cfg = CorpusConfig(subjects=3, seed=11, families=("sculpt",), levels=(2, 4),
                       nuisance=Nuisance(hole_probability=0.5, vertices=(300, 900), units=(("mm", 1.0),)))
    tree = tmp_path / "bu"
    write_bu3dfe(cfg, {"toy": _toy_model(16)}, tree)
    with open(tree / "manifest.csv", newline="", encoding="utf-8") as fh:
        truth = {r["path"]: r for r in csv.DictReader(fh)}
    with open(tree / "draws.csv", newline="", encoding="utf-8") as fh:
        holed = {r["path"]: int(r["holes"]) > 0 for r in csv.DictReader(fh)}
    assert 0 < sum(holed.values()) < len(holed)
    # right exactly where no hole was cut; absolute paths (as predict writes them) and a level-2 filter
    rows = [(str(tree / p), t["label"] if not holed[p] else ("fear" if t["label"] != "fear" else "anger"))
            for p, t in truth.items()]
    pred = _pred(tmp_path / "pred.csv", rows)
    assert bench_draws.main(["--data", str(tree), "--pred", str(pred), "--intensities", "4"]) == 0
    out = json.loads(capsys.readouterr().out)
    at4 = [p for p, t in truth.items() if t["intensity"] == "4"]
    assert out["n"] == len(at4)
    assert out["holes"]["yes"]["accuracy"] == 0.0 and out["holes"]["no"]["accuracy"] == 1.0
    assert out["holes"]["yes"]["n"] == sum(holed[p] for p in at4)
    assert sum(g["n"] for k, g in out["vertices"].items() if k != "quartile_edges") == len(at4)
    assert out["units"] == {"mm": {"n": len(at4), "accuracy": out["accuracy"], "ratio": 1.0}}


@pytest.mark.parametrize("layout", ["bu4dfe", "corpus4d"])
def test_sequences_are_scored_with_their_sessions_draws(tmp_path, capsys, layout):
    import bench_draws

    cfg = CorpusConfig(subjects=2, seed=3, families=("sculpt",), levels=(4,),
                       nuisance=Nuisance(hole_probability=0.5, vertices=(300, 600), units=(("mm", 1.0),)))
    tree = tmp_path / layout
    (write_bu4dfe if layout == "bu4dfe" else write_sequences)(cfg, {"toy": _toy_model(16)}, tree, frames=3)
    with open(tree / "manifest.csv", newline="", encoding="utf-8") as fh:
        frames = list(csv.DictReader(fh))
    with open(tree / "draws.csv", newline="", encoding="utf-8") as fh:
        holed = {r["path"].rsplit("/", 1)[0]: int(r["holes"]) > 0 for r in csv.DictReader(fh)}
    truth = {r.get("sequence") or r["path"]: r.get("sequence_label") or r["label"] for r in frames}
    assert len(truth) == 12 and 0 < sum(holed.values()) < 12
    rows = [(str(tree / s), lab if not holed[s] else ("fear" if lab != "fear" else "anger"))
            for s, lab in truth.items()]
    with open(tmp_path / "pred.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "frame", "label", "confidence"])
        # as predict writes a sequence: its own row (frame "sequence", the folder with a slash) and a row per frame
        w.writerows([(f + "/", "sequence", label, "0.9") for f, label in rows])
        w.writerow((rows[0][0] + "/", "0", "fear", "0.9"))
    assert bench_draws.main(["--data", str(tree), "--pred", str(tmp_path / "pred.csv"), "--intensities", "4"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 12 and out["holes"]["yes"]["n"] == sum(holed.values())
    assert out["holes"]["yes"]["accuracy"] == 0.0 and out["holes"]["no"]["accuracy"] == 1.0


def test_a_scan_of_another_tree_is_refused(tmp_path):
    import bench_draws

    cfg = CorpusConfig(subjects=1, seed=2, families=("sculpt",), levels=(4,), nuisance=Nuisance.none())
    write_bu3dfe(cfg, {"toy": _toy_model(16)}, tmp_path / "bu")
    pred = _pred(tmp_path / "pred.csv", [(str(tmp_path / "elsewhere" / "X.wrl"), "fear")])
    with pytest.raises(SystemExit, match="not a scan of"):
        bench_draws.main(["--data", str(tmp_path / "bu"), "--pred", str(pred)])
