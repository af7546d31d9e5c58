"""Expression transfer between face models (synth.transfer): correspondence, the lip line, hybrids."""
from __future__ import annotations

import numpy as np
import pytest

from affectvlm.synth.facemodel import FaceModel, apply_aus
from affectvlm.synth.transfer import correspond, hybrid_model, lip_side

SLIT_Y = -50.0


def _face(n: int, sx: float = 1.0, dz: float = 0.0, name: str = "a") -> tuple[FaceModel, np.ndarray]:
    """A grid face with a mouth slit at y = -50 (|x| < 25 mm: the lips are not connected) and a jaw drop (AU26)
    that carries the lower lip and chin down; returns the model and its 83 landmarks (BU-3DFE mouth order)."""
    xs, ys = np.meshgrid(np.linspace(-70, 70, n) * sx, np.linspace(-110, 90, int(n * 1.3)))
    ys = ys + 0.37  # no grid row on the slit itself
    z = 40 * np.sqrt(np.clip(1 - (xs / (80 * sx)) ** 2 - (ys / 130) ** 2, 0, None)) + dz
    v = np.stack([xs.ravel(), ys.ravel(), z.ravel()], 1).astype(np.float32)
    h, w = xs.shape
    idx = np.arange(h * w).reshape(h, w)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, d, b], 1), np.stack([a, c, d], 1)]).astype(np.int64)
    cy = v[faces].mean(1)
    slit = (np.abs(cy[:, 0]) < 25 * sx) & (v[faces][:, :, 1].min(1) < SLIT_Y) & (v[faces][:, :, 1].max(1) > SLIT_Y)
    faces = faces[~slit]
    jaw = np.zeros_like(v)
    below = (v[:, 1] < SLIT_Y) & (np.abs(v[:, 0]) < 45 * sx)
    jaw[below, 1] = -8.0 * np.clip((v[below, 1] + 100) / 30, 0, 1)
    brow = np.zeros_like(v)
    brow[v[:, 1] > 20, 1] = 3.0
    rng = np.random.default_rng(0)  # the same 83 places on every face (a landmark means the same point)
    lms = np.stack([rng.uniform(-50, 50, 83), rng.uniform(-90, 60, 83)], 1)
    mouth = {48: (-30, SLIT_Y), 54: (30, SLIT_Y), 60: (-25, SLIT_Y), 64: (25, SLIT_Y), 61: (-10, SLIT_Y + 0.5),
             62: (0, SLIT_Y + 0.5), 63: (10, SLIT_Y + 0.5), 65: (10, SLIT_Y - 0.5), 66: (0, SLIT_Y - 0.5),
             67: (-10, SLIT_Y - 0.5)}
    for i, xy in mouth.items():
        lms[i] = xy
    lms = np.stack([lms[:, 0] * sx, lms[:, 1],
                    40 * np.sqrt(np.clip(1 - (lms[:, 0] / 80) ** 2 - (lms[:, 1] / 130) ** 2, 0, None)) + dz], 1)
    model = FaceModel(name=name, neutral=v, faces=faces, identities=np.zeros((1, len(v), 3), np.float32),
                      au_targets={"AU26": jaw, "AU1": brow}, landmarks=np.zeros(0, np.int64),
                      face_mask=np.ones(len(v), bool), meta={"emotion_targets": {"surprise": [jaw + brow]}})
    return model, lms


def test_lip_side_reads_the_jaw_drop():
    m, lm = _face(50)
    side = lip_side(m, lm)
    mouth = np.abs(m.neutral[:, 0]) < 20
    up = mouth & (m.neutral[:, 1] > SLIT_Y) & (m.neutral[:, 1] < SLIT_Y + 10)
    down = mouth & (m.neutral[:, 1] < SLIT_Y - 3) & (m.neutral[:, 1] > SLIT_Y - 10)
    assert (side[up] == 1).all() and (side[down] == -1).all()
    assert (side[np.abs(m.neutral[:, 0]) > 60] == 0).all()  # beyond the mouth corners: no rule


def test_transfer_keeps_the_lips_apart_and_moves_what_moved():
    src, ls = _face(60, name="src")
    tgt, lt = _face(41, sx=1.08, dz=2.0, name="tgt")  # another resolution, a wider face, a little further out
    corr = correspond(src, tgt, source_landmarks=ls, target_landmarks=lt, smooth=0)
    d = corr.apply(src.au_targets["AU26"], tgt.faces)
    v = tgt.neutral
    mouth = np.abs(v[:, 0]) < 15
    upper = mouth & (v[:, 1] > SLIT_Y) & (v[:, 1] < SLIT_Y + 6)
    lower = mouth & (v[:, 1] < SLIT_Y - 2) & (v[:, 1] > SLIT_Y - 8)
    assert upper.sum() >= 5 and lower.sum() >= 5
    assert np.abs(d[upper]).max() < 0.5          # the upper lip stays (it would take the lower lip's motion)
    assert d[lower, 1].max() < -3.0               # the lower lip goes down with the jaw
    assert np.abs(d[v[:, 1] > 0, 1]).max() < 0.5  # the forehead does not
    b = corr.apply(src.au_targets["AU1"], tgt.faces)
    assert b[v[:, 1] > 30, 1].min() > 2.5          # the brow raise arrives where the source had it


def test_hybrid_model_names_targets_and_sculpts():
    src, ls = _face(50, name="src")
    tgt, lt = _face(40, sx=1.05, name="tgt")
    h = hybrid_model(src, tgt, correspond(src, tgt, source_landmarks=ls, target_landmarks=lt))
    assert h.name == "tgt@src" and h.neutral is tgt.neutral and h.faces is tgt.faces
    assert set(h.au_targets) == set(src.au_targets)
    assert all(t.shape == tgt.neutral.shape for t in h.au_targets.values())
    assert len(h.meta["emotion_targets"]["surprise"]) == 1
    opened = apply_aus(h, h.neutral, {"AU26": (1.0, 1.0)})
    assert (opened[:, 1] - h.neutral[:, 1]).min() < -5.0


def test_swapped_expressions_need_two_models(capsys):
    pytest.importorskip("scipy")
    from affectvlm.synth.cli import main

    rc = main(["--layout", "corpus", "--facekit", "/nonexistent-facekit", "--expressions", "swapped",
               "--out", "/tmp/never-written"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error" in err[0]


def test_mixed_model_blends_each_unit_between_two_sculpts():
    from affectvlm.synth.transfer import mixed_model

    own, ls = _face(30, name="own")
    src, lsrc = _face(36, sx=1.1, name="src")
    src.au_targets["AU26"] = src.au_targets["AU26"] * 2.0  # the other sculptor opens the jaw twice as far
    other = hybrid_model(src, own, correspond(src, own, source_landmarks=lsrc, target_landmarks=ls))
    m = mixed_model(own, other, np.random.default_rng(0), name="own~mix0", weight=(0.5, 0.5))
    assert m.name == "own~mix0" and "emotion_targets" not in m.meta
    assert set(m.au_targets) == {"AU26L", "AU26R", "AU1L", "AU1R"}
    mixed = apply_aus(m, m.neutral, {"AU26": (1.0, 1.0)})[:, 1] - m.neutral[:, 1]
    mine = apply_aus(own, own.neutral, {"AU26": (1.0, 1.0)})[:, 1] - own.neutral[:, 1]
    theirs = apply_aus(other, other.neutral, {"AU26": (1.0, 1.0)})[:, 1] - other.neutral[:, 1]
    np.testing.assert_allclose(mixed, 0.5 * mine + 0.5 * theirs, atol=1e-4)
    assert theirs.min() < 1.5 * mine.min() < 0  # the two sculpts really differ, so the blend is a third one
    with pytest.raises(ValueError, match="mesh"):
        mixed_model(own, src, np.random.default_rng(0), name="x")


def test_models_on_one_mesh_are_one_face_when_swapping(monkeypatch):
    """MakeHuman with FACSHuman's AUs and with its own units share a mesh: ICT's face gets each one's
    expressions, the shared face gets ICT's once, and nothing is transferred onto its own mesh."""
    from affectvlm.synth import transfer
    from affectvlm.synth.transfer import with_mixed_expressions, with_swapped_expressions

    a, la = _face(40, name="a")
    b, lb = _face(34, sx=1.08, name="b")
    units = FaceModel(name="a-units", neutral=a.neutral, faces=a.faces, identities=a.identities,
                      au_targets={"AU26": a.au_targets["AU26"] * 2.0, "AU1": a.au_targets["AU1"]},
                      landmarks=a.landmarks, face_mask=a.face_mask, meta={"emotion_targets": {}})
    marks = {id(a.neutral): la, id(b.neutral): lb}
    monkeypatch.setattr(transfer, "neutral_landmarks", lambda m: marks[id(m.neutral)])
    out = with_swapped_expressions({"a": a, "b": b, "a-units": units})
    assert set(out) == {"a", "b", "a-units", "b@a", "b@a-units", "a@b"}
    jaw = {n: apply_aus(out[n], out[n].neutral, {"AU26": (1.0, 1.0)})[:, 1] - b.neutral[:, 1]
           for n in ("b@a", "b@a-units")}
    assert jaw["b@a-units"].min() < 1.5 * jaw["b@a"].min() < 0  # each sculptor's jaw drop arrives on b
    mixed = with_mixed_expressions({"a": a, "b": b, "a-units": units}, 2, seed=0)
    assert set(mixed) == {f"{n}~mix{k}" for n in ("a", "b", "a-units") for k in range(2)}
    assert all(m.neutral.shape == (a if n[0] == "a" else b).neutral.shape for n, m in mixed.items())
