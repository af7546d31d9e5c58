"""Scoring scans against their subject's neutral scan (``affectvlm predict --neutral``)."""
import numpy as np
import pytest

from affectvlm.errors import ConfigError
from affectvlm.predict import CONTRAST_WEIGHT, contrast, pool_probabilities
from affectvlm.reference import AUTO_PATTERNS, check_pattern, match_neutral, patterns_for

CLASSES = ["neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger"]


def _row(file, probs, frame=""):
    p = np.asarray(probs, float) / np.sum(probs)
    return {"file": file, "frame": frame, "error": None, "label": CLASSES[int(np.argmax(p))],
            "confidence": float(p.max()), **dict(zip(CLASSES, p.tolist()))}


def test_a_subjects_resting_lean_comes_out_of_its_other_scans():
    sad_rest = [0.5, 0.05, 0.35, 0.02, 0.03, 0.03, 0.02]  # this face looks sad at rest
    smile = [0.05, 0.40, 0.45, 0.02, 0.03, 0.03, 0.02]  # ...so its smile reads sad
    rows = [_row("F001/F001_NE00WH_F3D.wrl", sad_rest), _row("F001/F001_HA04WH_F3D.wrl", smile),
            _row("F002/F002_HA04WH_F3D.wrl", smile),  # no neutral scan in this folder
            _row("F001/seq", smile, frame="sequence"), _row("F001/seq", smile, frame="3"),
            {"file": "F001/bad.wrl", "frame": "", "error": "unreadable", "label": ""}]
    before = [dict(r) for r in rows]
    m = match_neutral(rows, CLASSES, "*NE00*")
    assert (m.rescored, m.folders, m.unreferenced) == (1, 1, 1) and "1 folder(s) without a neutral scan" in m.text("*NE00*")
    assert rows[1]["label"] == "happiness" and rows[1]["neutral"] == 0.0
    np.testing.assert_allclose([rows[1][c] for c in CLASSES], contrast(np.array([smile]) / 1.0,
                                                                        np.array([sad_rest]), CLASSES))
    assert rows[0] == before[0] and rows[2:] == before[2:]  # the reference, other folders, frames, errors as scored


def test_contrast_is_the_4d_pooling_rule():
    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.ones(7), size=10)
    pooled = pool_probabilities(P, CLASSES, "contrast")
    calm = int(np.argmax(P[:, 0]))  # the frame with the highest neutral probability
    top = np.argsort(-(1 - P[:, 0]), kind="stable")[:3]
    np.testing.assert_allclose(pooled, contrast(P[top], P[calm][None], CLASSES))
    z = np.log(P[top]).mean(0) - CONTRAST_WEIGHT * np.log(P[calm])
    z[0] = -np.inf
    np.testing.assert_allclose(pooled, np.exp(z - z.max()) / np.exp(z - z.max()).sum())


def test_patterns():
    assert check_pattern(" *NE00* ") == "*NE00*"
    rows = [_row("s/ne00.obj", [0.5, 0.2, 0.1, 0.1, 0.05, 0.03, 0.02]), _row("s/x.obj", [0.1] * 7)]
    assert match_neutral(rows, CLASSES, "*NE00*").rescored == 1  # case does not matter
    assert patterns_for("auto") == AUTO_PATTERNS and patterns_for("NONE") == () and patterns_for("*n*") == ("*n*",)
    bos = [_row("bs000/bs000_N_N_0.bnt", [0.5, 0.2, 0.1, 0.1, 0.05, 0.03, 0.02]), _row("bs000/bs000_E_HAPPY_0.bnt",
                                                                                     [0.1] * 7)]
    assert match_neutral(bos, CLASSES).rescored == 1  # auto knows Bosphorus's neutral scans
    assert match_neutral(bos, CLASSES, "none").rescored == 0
    for bad in ("", "*", "dir/*NE00*"):
        with pytest.raises(ConfigError, match="--neutral"):
            check_pattern(bad)


def test_eval_references_bu3dfe_neutral_scans_by_default(tmp_path):
    import json

    from meshgen import face_like_mesh

    from affectvlm.io.vrml import write_vrml
    from affectvlm.train.evaluate import main

    for s in ("F0001", "M0002"):
        write_vrml(tmp_path / "data" / s / f"{s}_NE00WH_F3D.wrl", face_like_mesh(20, seed=1, textured=False))
        for lvl in (3, 4):
            write_vrml(tmp_path / "data" / s / f"{s}_HA{lvl:02d}WH_F3D.wrl",
                       face_like_mesh(20, smile=lvl, seed=lvl, textured=False))
    common = ["--model", "default", "--data", str(tmp_path / "data"), "--layout", "bu3dfe", "--subset", "all",
              "--cache-dir", str(tmp_path / "cache"), "--no-landmarks"]
    assert main([*common, "--out", str(tmp_path / "a.json")]) == 0
    auto = json.loads((tmp_path / "a.json").read_text())
    assert auto["n"] == 6 and auto["neutral_reference"] == {"spec": "auto", "rescored": 4, "folders": 2}
    assert main([*common, "--neutral", "none", "--out", str(tmp_path / "n.json")]) == 0
    assert "neutral_reference" not in json.loads((tmp_path / "n.json").read_text())
