"""Procedural sculptors (synth.procedural): each unit moves the face as FACS says, lips and lids stay apart."""
from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from affectvlm.synth.facemodel import apply_aus
from affectvlm.synth.procedural import procedural_model, with_procedural_expressions

REAL_FACEKIT = Path(__file__).resolve().parents[1].parent / "shared" / "ict-facekit" / "FaceXModel"
pytestmark = pytest.mark.skipif(not (REAL_FACEKIT / "generic_neutral_mesh.obj").is_file(),
                                reason="ICT-FaceKit subset not present")


@pytest.fixture(scope="module")
def ict():
    from affectvlm.synth.facekit import load_facekit
    from affectvlm.synth.facemodel import ict_face_model

    model = ict_face_model(load_facekit(REAL_FACEKIT))
    return model, model.neutral[model.landmarks].astype(np.float64)


def _moved(model, aus, idx):
    """Displacement of vertices ``idx`` (mm) under ``aus`` at full intensity on both sides."""
    v = apply_aus(model, model.neutral, {au: (1.0, 1.0) for au in aus})
    return (v - model.neutral)[idx]


def _nearest(model, point):
    return int(np.argmin(((model.neutral - point) ** 2).sum(1)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_unit_moves_its_landmarks_as_facs_says(ict, seed):
    base, L = ict
    m = procedural_model(base, L, np.random.default_rng(seed), name="p")
    corner = [_nearest(m, L[48]), _nearest(m, L[54])]  # the outer mouth corners
    assert (_moved(m, ["AU12"], corner)[:, 1] > 2.0).all()  # lip corner puller: up
    assert (np.abs(m.neutral[corner, 0] + _moved(m, ["AU20"], corner)[:, 0]) > np.abs(m.neutral[corner, 0]) + 1).all()
    assert (_moved(m, ["AU15"], corner)[:, 1] < -1.5).all()  # lip corner depressor: down
    brows = L[16:36]
    inner = [_nearest(m, brows[i]) for i in np.argsort(np.abs(brows[:, 0]))[:2]]  # each brow's inner end
    assert (_moved(m, ["AU1"], inner)[:, 1] > 1.0).all()
    assert (_moved(m, ["AU4"], inner)[:, 1] < -1.0).all()
    chin = _nearest(m, L[75])
    assert _moved(m, ["AU26"], [chin])[0, 1] < -4.0  # the jaw drops
    forehead = np.flatnonzero(m.neutral[:, 1] > L[16:36, 1].max() + 15)
    assert np.abs(_moved(m, ["AU26", "AU12", "AU15"], forehead)).max() < 0.5


def test_lips_and_lids_stay_apart(ict):
    from affectvlm.synth.transfer import lip_side

    base, L = ict
    m = procedural_model(base, L, np.random.default_rng(5), name="p")
    side = lip_side(base, L)
    mouth = np.abs(base.neutral[:, 0]) < 10
    upper, lower = np.flatnonzero(mouth & (side == 1)), np.flatnonzero(mouth & (side == -1))
    near = lambda idx: idx[np.abs(base.neutral[idx, 1] - L[60:68, 1].mean()) < 6]  # noqa: E731
    drop = _moved(m, ["AU26"], near(lower))[:, 1].mean() - _moved(m, ["AU26"], near(upper))[:, 1].mean()
    assert drop < -3.0  # the mouth opens: the lower lip leaves the upper one
    eye = L[0:8]
    centre = eye.mean(0)
    ring = np.linalg.norm(base.neutral[:, :2] - centre[:2], axis=1) < 12
    line = eye[np.argsort(eye[:, 0])[[0, -1]], 1].mean()
    lid_up = np.flatnonzero(ring & (base.neutral[:, 1] > line + 2))
    lid_down = np.flatnonzero(ring & (base.neutral[:, 1] < line - 2))
    close = _moved(m, ["AU43"], lid_up)[:, 1].min(), np.abs(_moved(m, ["AU43"], lid_down)[:, 1]).max()
    assert close[0] < -3.0 and close[1] < 0.5 * abs(close[0])  # the upper lid comes down, the lower one stays


def test_sculptors_differ_agree_in_direction_and_repeat_per_seed(ict):
    base, L = ict
    a = procedural_model(base, L, np.random.default_rng(1), name="a")
    b = procedural_model(base, L, np.random.default_rng(2), name="b")
    a2 = procedural_model(base, L, np.random.default_rng(1), name="a")
    assert all(np.array_equal(a.au_targets[k], a2.au_targets[k]) for k in a.au_targets)
    for au in ("AU12L", "AU4R", "AU26"):
        x, y = a.au_targets[au].ravel(), b.au_targets[au].ravel()
        assert not np.allclose(x, y, atol=0.2)
        assert x @ y / (np.linalg.norm(x) * np.linalg.norm(y)) > 0.5
    assert a.meta["expressions"] == "procedural" and "emotion_targets" not in a.meta
    assert set(base.action_units) - set(a.action_units) <= {"AU64"}  # every unit ICT-FaceKit has, but the gaze


def test_synth_cli_writes_a_corpus_of_procedural_sculptors(tmp_path, ict):
    from affectvlm.synth.cli import main

    out = tmp_path / "corpus"
    rc = main(["--layout", "corpus", "--facekit", str(REAL_FACEKIT), "--expressions", "procedural", "--mixes", "2",
               "--families", "emfacs", "--intensities", "4", "--emotions", "happiness,surprise", "--subjects", "2",
               "--seed", "7", "--out", str(out), "-q"])
    assert rc == 0
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert {r["face_model"] for r in rows} == {"ict-facekit~proc0", "ict-facekit~proc1"}
    assert {r["label"] for r in rows} >= {"happiness", "surprise"}
    assert main(["--layout", "corpus", "--facekit", str(REAL_FACEKIT), "--expressions", "procedural", "--mixes", "0",
                 "--out", str(tmp_path / "x"), "-q"]) == 2
    twin = dataclasses.replace(ict[0], name="twin", au_targets={})  # another sculptor's AUs on the same mesh
    made = with_procedural_expressions({"ict-facekit": ict[0], "twin": twin}, 3, seed=1)
    assert sorted(made) == ["ict-facekit~proc0", "ict-facekit~proc1", "ict-facekit~proc2"]  # one face, once
