"""Randomised scans (nuisances, truth) and the corpus writer (families, splits, determinism)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from affectvlm.io import load_mesh
from affectvlm.synth.corpus import CORPUS_COLUMNS, CorpusConfig, read_corpus, select, write_corpus
from affectvlm.synth.facemodel import FaceModel, apply_aus
from affectvlm.synth.cli import main as main_synth
from affectvlm.synth.randomised import AXIS_ROTATIONS, Nuisance, crop_mask, sample_scan


def _toy_model(n: int = 40) -> FaceModel:
    """A grid 'face' in mm (+z front) with an AU12 pair that lifts the mouth corners and an emotion sculpt."""
    xs, ys = np.meshgrid(np.linspace(-70, 70, n), np.linspace(-110, 90, n))
    z = 40 * np.sqrt(np.clip(1 - (xs / 80) ** 2 - (ys / 130) ** 2, 0, None))
    v = np.stack([xs.ravel(), ys.ravel(), z.ravel()], 1).astype(np.float32)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)]).astype(np.int64)
    mouth = (np.abs(v[:, 1] + 50) < 12) & (np.abs(v[:, 0]) < 35)
    left, right = mouth & (v[:, 0] > 0), mouth & (v[:, 0] < 0)
    t_l = np.zeros_like(v)
    t_l[left, 1] = 6.0
    t_r = np.zeros_like(v)
    t_r[right, 1] = 6.0
    ident = np.zeros((2, len(v), 3), np.float32)
    ident[0, :, 0] = v[:, 0] * 0.05
    ident[1, :, 2] = 2.0
    sculpt = np.zeros_like(v)
    sculpt[mouth, 2] = -4.0
    return FaceModel(name="toy", neutral=v, faces=faces, identities=ident,
                     au_targets={"AU12L": t_l, "AU12R": t_r}, landmarks=np.arange(0, 83 * 3, 3, dtype=np.int64),
                     face_mask=(np.abs(v[:, 1]) < 80) & (np.abs(v[:, 0]) < 60),
                     meta={"emotion_targets": {e: [sculpt] for e in
                                               ("happiness", "sadness", "surprise", "fear", "disgust", "anger")}})


def test_apply_aus_sides_and_missing_units():
    m = _toy_model()
    v = apply_aus(m, m.neutral, {"AU12": (1.0, 0.0), "AU99": (1.0, 1.0)})
    moved = np.abs(v - m.neutral).max(1) > 0
    assert moved.any() and (m.neutral[moved, 0] > 0).all()  # left only; the unknown AU is skipped


def test_axis_rotations_are_the_24_proper_ones():
    dets = np.linalg.det(AXIS_ROTATIONS)
    assert len(AXIS_ROTATIONS) == 24 and np.allclose(dets, 1)
    assert len({tuple(r.ravel()) for r in AXIS_ROTATIONS}) == 24


def test_scan_truth_follows_rotation_units_and_landmarks():
    m = _toy_model()
    rng = np.random.default_rng(4)
    nu = Nuisance(axis_rotation=True, units=(("cm", 1.0),), yaw_deg=0, pitch_deg=0, roll_deg=0, hole_probability=0,
                  noise_mm=(0, 0), vertices=(0, 0), crops=(("full", 1.0),))
    s = sample_scan(m, "happiness", 3, rng, expression=lambda e, l, r: {"AU12": (1.0, 1.0)}, nuisance=nu,
                    identity=np.zeros(2))
    A = s.rotation
    i = int(np.argmax(np.abs(A[:, 1])))
    assert s.up == ("+" if A[i, 1] > 0 else "-") + "xyz"[i]
    # cm: a 140 mm wide face is ~14 units wide along the axis the file's x went to
    assert np.ptp(s.mesh.vertices @ A[:, 0]) == pytest.approx(14.0, rel=0.01)
    # landmarks move with the scan
    d = ((s.mesh.vertices[None] - s.landmarks[:, None]) ** 2).sum(-1).min(1)
    assert d.max() < 1e-6


def test_crops_are_nested_and_full_keeps_everything():
    m = _toy_model()
    rng = np.random.default_rng(0)
    face, wide, full = (crop_mask(m, k, rng).sum() for k in ("face", "wide", "full"))
    assert face < wide < full == m.n_vertices


def test_nuisances_change_resolution_and_make_holes():
    m = _toy_model(60)
    rng = np.random.default_rng(1)
    lo = sample_scan(m, "neutral", 0, rng, nuisance=Nuisance(vertices=(800, 800), hole_probability=0.0))
    assert 600 < lo.mesh.n_vertices < 1000
    holed = sample_scan(m, "neutral", 0, rng, nuisance=Nuisance(vertices=(0, 0), hole_probability=1.0, holes=(4, 4),
                                                                  crops=(("full", 1.0),)))
    assert holed.mesh.n_faces < len(m.faces)


def test_corpus_families_splits_and_determinism(tmp_path: Path, monkeypatch):
    pytest.importorskip("yaml")
    m = _toy_model(30)
    cfg = CorpusConfig(subjects=10, seed=3, families=("emfacs", "recipes", "sculpt"), levels=(3,),
                       nuisance=Nuisance(vertices=(0, 0)))
    a = write_corpus(cfg, {"toy": m}, tmp_path / "a")
    b = write_corpus(cfg, {"toy": m}, tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()
    for rel in ("toy/TO0000/HA3_sculpt.ply", "toy/TO0004/AN3_emfacs.ply"):
        assert hashlib.sha256((tmp_path / "a" / rel).read_bytes()).digest() == \
            hashlib.sha256((tmp_path / "b" / rel).read_bytes()).digest()
    rows = read_corpus(a)
    assert tuple(rows[0]) == CORPUS_COLUMNS
    assert {r["family"] for r in rows} == {"emfacs", "recipes", "sculpt"}
    by_split = {s: {r["subject"] for r in rows if r["split"] == s} for s in ("train", "val", "test")}
    assert all(by_split.values()) and not (by_split["train"] & by_split["test"]) \
        and not (by_split["val"] & (by_split["train"] | by_split["test"]))
    held = select(rows, family="recipes")
    assert held and all(r["family"] == "recipes" for r in held)
    assert not select(rows, family="recipes", face_model="other")
    mesh = load_mesh(rows[0]["path"])
    assert mesh.n_faces > 100
    # a relative manifest path still gives absolute paths (bench scripts join them to nothing else)
    monkeypatch.chdir(tmp_path)
    assert [r["path"] for r in read_corpus("a")] == [r["path"] for r in rows]
    assert all(Path(r["path"]).is_absolute() for r in read_corpus(Path("a") / "manifest.csv"))


def test_held_out_families_never_reach_training_rows(tmp_path: Path):
    """The default model's selection rules: emfacs families train/validate, recipes and sculpt only test."""
    import csv
    import runpy

    m = _toy_model(24)
    cfg = CorpusConfig(subjects=10, seed=5, families=("emfacs", "recipes", "sculpt"), levels=(3, 4),
                       nuisance=Nuisance(vertices=(0, 0)))
    write_corpus(cfg, {"toy": m}, tmp_path / "c")
    out = tmp_path / "train.csv"
    mod = runpy.run_path(str(Path(__file__).resolve().parents[1] / "bench" / "corpus_select.py"))
    mod["main"](["--data", str(tmp_path / "c"), "--out", str(out),
                 "--rule", "split=train,val family=emfacs level=0,3,4",
                 "--rule", "split=test family=recipes,sculpt level=0,4"])
    rows = list(csv.DictReader(out.open()))
    assert rows and {r["family"] for r in rows if r["split"] in ("train", "val")} == {"emfacs"}
    assert {r["family"] for r in rows if r["split"] == "test"} == {"recipes", "sculpt"}
    assert {r["intensity"] for r in rows if r["split"] == "test"} == {"0", "4"}
    train_subjects = {r["subject"] for r in rows if r["split"] == "train"}
    assert not train_subjects & {r["subject"] for r in rows if r["split"] == "test"}
    # two corpora in folders of one name keep their subjects apart; one corpus twice, or a bad rule, is refused
    import shutil

    for run in ("runA", "runB"):
        shutil.copytree(tmp_path / "c", tmp_path / run / "corpus")
    both = tmp_path / "both.csv"
    mod["main"](["--data", str(tmp_path / "runA" / "corpus"), "--data", str(tmp_path / "runB" / "corpus"),
                 "--out", str(both), "--rule", "level=0,3,4"])
    subs = {r["subject"] for r in csv.DictReader(both.open())}
    assert {s.split("-", 1)[0] for s in subs} == {"runA_corpus", "runB_corpus"}
    for bad in (["--data", str(tmp_path / "c"), "--data", str(tmp_path / "c"), "--rule", "level=4"],
                ["--data", str(tmp_path / "c"), "--rule", "bogus=1"]):
        with pytest.raises(SystemExit):
            mod["main"]([*bad, "--out", str(tmp_path / "x.csv")])


def test_sequences_play_one_expression_neutral_apex_neutral(tmp_path: Path):
    from affectvlm.io import load_sequence
    from affectvlm.synth.corpus4d import sequence_folders, write_sequences

    m = _toy_model(24)
    nu = Nuisance(vertices=(0, 0), hole_probability=0.0, noise_mm=(0.0, 0.0), units=(("mm", 1.0),),
                  origin_mm=0.0, yaw_deg=0.0, pitch_deg=0.0, roll_deg=0.0, crops=(("full", 1.0),))
    cfg = CorpusConfig(subjects=2, seed=1, families=("sculpt",), levels=(4,), nuisance=nu, test_fraction=1.0,
                       val_fraction=0.0)
    manifest = write_sequences(cfg, {"toy": m}, tmp_path / "s", frames=12)
    rows = read_corpus(manifest)
    folders = {"Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise"}
    assert sequence_folders(("neutral", "happiness", "anger")) == {"happiness": "Happy", "anger": "Angry"}
    assert len(rows) == 2 * len(folders) and {r["split"] for r in rows} == {"test"}
    assert {Path(r["path"]).name for r in rows} == folders
    seq = load_sequence(rows[0]["path"])  # the real loader reads the folder as one sequence
    assert len(seq) == 12
    v = np.stack([np.asarray(f.vertices) for f in seq.frames])
    motion = np.abs(v - v[0]).max(axis=(1, 2))  # the sculpt moves the mouth 4 mm at its apex
    assert motion[0] == 0 and motion[-1] < 0.5 and motion.max() == pytest.approx(4.0, rel=0.1)
    assert 2 <= int(np.argmax(motion)) <= 9


def test_style_jitter_restyles_the_displacement_linearly():
    from affectvlm.synth.style import StyleJitter, jitter_delta

    m = _toy_model()
    v0 = m.neutral.astype(np.float64)
    d = apply_aus(m, v0, {"AU12": (1.0, 1.0)}) - v0
    on = StyleJitter(probability=1.0)
    assert jitter_delta(d, v0, m, np.random.default_rng(0), StyleJitter(probability=0.0)) is d
    cos = []
    for seed in range(12):
        j = jitter_delta(d, v0, m, np.random.default_rng(seed), on)
        # the frames of a sequence scale one displacement: one stream must give them one style
        np.testing.assert_allclose(jitter_delta(0.3 * d, v0, m, np.random.default_rng(seed), on), 0.3 * j,
                                   atol=1e-9)
        assert not jitter_delta(np.zeros_like(d), v0, m, np.random.default_rng(seed), on).any()
        cos.append(float((d * j).sum() / np.linalg.norm(d) / np.linalg.norm(j)))
    assert 0.3 < min(cos) < 0.95 and np.median(cos) > 0.8  # changed, yet still the same movement
    with pytest.raises(ValueError):
        StyleJitter(probability=1.5)


def test_style_jitter_off_leaves_scans_as_they_were():
    from affectvlm.synth.corpus import make_scan
    from affectvlm.synth.style import StyleJitter

    m = _toy_model()
    nu = Nuisance(vertices=(0, 0), hole_probability=0.0)
    a = make_scan(m, "emfacs", "happiness", 4, np.random.default_rng(5), nuisance=nu)
    b = make_scan(m, "emfacs", "happiness", 4, np.random.default_rng(5), nuisance=nu, style=StyleJitter(0.0))
    c = make_scan(m, "emfacs", "happiness", 4, np.random.default_rng(5), nuisance=nu, style=StyleJitter(1.0))
    np.testing.assert_array_equal(a.mesh.vertices, b.mesh.vertices)
    assert a.mesh.vertices.shape != c.mesh.vertices.shape or not np.allclose(a.mesh.vertices, c.mesh.vertices)


def test_synth_cli_refuses_a_style_jitter_outside_0_1(capsys):
    from affectvlm.synth.cli import main

    rc = main(["--layout", "corpus", "--facekit", "/nonexistent-facekit", "--style-jitter", "1.5",
               "--out", "/tmp/never-written"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--style-jitter" in err[0]


@pytest.mark.parametrize("opts, says", [
    (["--layout", "corpus", "--intensities", "0"], "--intensities must be levels 1-4"),  # wrote level-1 faces as 0
    (["--layout", "corpus", "--subjects", "0"], "--subjects must be in 1-9999"),  # an empty manifest, exit 0
    (["--layout", "corpus", "--test-frac", "1.5"], "--test-frac and --val-frac must be in [0, 1]"),
    (["--layout", "corpus", "--test-frac", "nan"], "--test-frac and --val-frac must be in [0, 1]"),  # a traceback
    (["--layout", "corpus", "--seed", "-1"], "--seed must be a non-negative integer"),  # a numpy traceback
    (["--layout", "bu4dfe", "--frames", "1"], "--frames must be at least 2"),
    (["--layout", "bu4dfe", "--fps", "0"], "--fps must be a positive frame rate"),  # ZeroDivisionError
    (["--layout", "corpus4d", "--fps", "nan"], "--fps must be a positive frame rate"),
])
def test_synth_cli_refuses_options_no_layout_can_use_before_reading_anything(tmp_path, capsys, opts, says):
    rc = main_synth(["--facekit", "/nonexistent-facekit", "--out", str(tmp_path / "o"), *opts])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and says in err[0], err
    assert not (tmp_path / "o").exists()


def test_synth_cli_refuses_sculpt_for_a_face_model_without_sculpts(tmp_path, capsys):
    kit = Path(__file__).resolve().parents[2] / "shared" / "ict-facekit" / "FaceXModel"
    if not kit.is_dir():
        pytest.skip("ICT-FaceKit subset not present")
    for layout in ("corpus", "bu3dfe"):  # an empty manifest; a ValueError
        assert main_synth(["--layout", layout, "--facekit", str(kit), "--families", "sculpt", "--out",
                           str(tmp_path / layout), "-q"]) == 2
        assert "face model ict-facekit has no sculpted emotion targets" in capsys.readouterr().err


def test_synth_cli_refuses_an_out_it_cannot_make_before_reading_anything(tmp_path, capsys):
    from affectvlm.synth.cli import main

    (tmp_path / "afile").write_text("x")
    for out in ("afile", "afile/x"):
        rc = main(["--layout", "corpus", "--facekit", "/nonexistent-facekit", "--out", str(tmp_path / out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and err == [f"affectvlm synth: error: --out {tmp_path / out}: {tmp_path / 'afile'} is a file, "
                                   "not a folder"]
    # a folder that holds a data set already: written into, the two trees would mix under one manifest
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "manifest.csv").write_text("path,label,subject\n")
    rc = main(["--layout", "corpus", "--facekit", "/nonexistent-facekit", "--out", str(tmp_path / "old")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "holds a data set (manifest.csv) already" in err[0]
    assert (tmp_path / "old" / "manifest.csv").read_text() == "path,label,subject\n"


def test_families_are_parsed_once_for_the_cli_and_the_bench(capsys):
    import pytest

    from affectvlm.errors import ConfigError
    from affectvlm.synth.cli import main
    from affectvlm.synth.corpus import parse_families

    assert parse_families(" emfacs, sculpt ,") == ("emfacs", "sculpt")
    for bad in ("emfax", ",", "emfacs,Recipes"):
        with pytest.raises(ConfigError, match="choose from emfacs, emfacs-alt, recipes, sculpt"):
            parse_families(bad)
    rc = main(["--layout", "corpus", "--facekit", "/nonexistent-facekit", "--families", "emfacs,emfax",
               "--out", "/tmp/never-written"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--families 'emfacs,emfax'" in err[0]


def test_synth_cli_pose_sd(capsys):
    from affectvlm.synth.cli import _pose, main

    assert _pose("10,15,6") == {"yaw_deg": 20.0, "pitch_deg": 30.0, "roll_deg": 12.0}  # Nuisance spreads are 2 sd
    for bad in ("6,4", "a,b,c", "6,4,100"):
        rc = main(["--layout", "corpus", "--facekit", "/nonexistent-facekit", "--pose-sd", bad,
                   "--out", "/tmp/never-written"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "--pose-sd" in err[0]


def test_au_gains_scale_each_unit_per_subject_and_off_changes_nothing(tmp_path):
    from affectvlm.synth.corpus import au_gains, make_scan

    m = _toy_model()
    assert au_gains(m, 0.0, np.random.default_rng(0)) == {}
    g = au_gains(m, 0.5, np.random.default_rng(0))
    assert set(g) == {"AU12"} and g["AU12"] > 0
    nu = Nuisance(vertices=(0, 0), hole_probability=0.0, noise_mm=(0.0, 0.0), yaw_deg=0.0, pitch_deg=0.0,
                  roll_deg=0.0, origin_mm=0.0, units=(("mm", 1.0),), crops=(("full", 1.0),))
    w = np.zeros(2)
    base = make_scan(m, "recipes", "neutral", 0, np.random.default_rng(5), nuisance=nu, identity=w)
    one = make_scan(m, "recipes", "happiness", 4, np.random.default_rng(5), nuisance=nu, identity=w)
    two = make_scan(m, "recipes", "happiness", 4, np.random.default_rng(5), nuisance=nu, identity=w,
                    gains={"AU12": 2.0})
    d1 = one.mesh.vertices - base.mesh.vertices
    d2 = two.mesh.vertices - base.mesh.vertices
    assert np.abs(d1).max() > 1.0
    np.testing.assert_allclose(d2, 2.0 * d1, atol=1e-3)  # the unit moves twice as far, nothing else changes
    # a corpus without gains is byte for byte the corpus it was before the option existed
    a = write_corpus(CorpusConfig(subjects=2, families=("recipes",), levels=(4,)), {"toy": m}, tmp_path / "a")
    b = write_corpus(CorpusConfig(subjects=2, families=("recipes",), levels=(4,), au_gain_sd=0.0), {"toy": m},
                     tmp_path / "b")
    c = write_corpus(CorpusConfig(subjects=2, families=("recipes",), levels=(4,), au_gain_sd=0.6), {"toy": m},
                     tmp_path / "c")
    pa = sorted(a.parent.rglob("*.ply"))
    assert [p.read_bytes() for p in pa] == [(b.parent / p.relative_to(a.parent)).read_bytes() for p in pa]
    assert any(p.read_bytes() != (c.parent / p.relative_to(a.parent)).read_bytes() for p in pa)


def _open_mouth_model() -> FaceModel:
    """The toy face with a mouth opening cut out; landmarks 48-67 on its rim."""
    m = _toy_model(40)
    v, f = m.neutral, m.faces
    inside = (np.abs(v[:, 1] + 50) < 8) & (np.abs(v[:, 0]) < 25)
    faces = f[~inside[f].all(1)]
    rim = np.flatnonzero(inside & np.isin(np.arange(len(v)), faces))
    lms = np.arange(0, 83 * 3, 3, dtype=np.int64)
    lms[48:68] = rim[np.linspace(0, len(rim) - 1, 20).astype(int)]
    return FaceModel(name="toy-open", neutral=v, faces=faces, identities=m.identities, au_targets=m.au_targets,
                     landmarks=lms, face_mask=m.face_mask, meta=m.meta)


def test_closed_mouth_bridges_the_mouth_opening_only():
    from affectvlm.synth.randomised import boundary_loops, close_mouth, mouth_loop

    m = _open_mouth_model()
    assert len(boundary_loops(m.faces)) == 2  # the outline and the mouth
    loop = mouth_loop(m)
    assert loop is not None and np.abs(m.neutral[loop, 1] + 50).max() < 12  # the mouth's, not the outline
    v, f = close_mouth(m, m.neutral.astype(np.float64), 5.0)
    assert len(v) == len(m.neutral) + 1 and len(f) == len(m.faces) + len(loop)
    assert len(boundary_loops(f)) == 1
    fan = f[len(m.faces):]
    normals = np.cross(v[fan[:, 1]] - v[fan[:, 0]], v[fan[:, 2]] - v[fan[:, 0]])
    assert (normals[:, 2] > 0).all()  # toward the viewer, like the face
    assert v[-1, 2] == pytest.approx(m.neutral[loop, 2].mean() - 5.0)  # sunk behind the lips
    assert mouth_loop(_toy_model(40)) is None  # no opening: nothing to close
    clean = dict(crops=(("full", 1.0),), vertices=(0, 0), hole_probability=0.0, yaw_deg=0.0, pitch_deg=0.0,
                 roll_deg=0.0)
    shut = sample_scan(m, "happiness", 3, np.random.default_rng(3), nuisance=Nuisance(closed_mouth=1.0, **clean))
    kept = sample_scan(m, "happiness", 3, np.random.default_rng(3), nuisance=Nuisance(**clean))
    assert shut.nuisance.get("closed_mouth") and "closed_mouth" not in kept.nuisance
    assert len(boundary_loops(shut.mesh.faces)) == 1 and len(boundary_loops(kept.mesh.faces)) == 2


def test_synth_cli_closed_mouth_and_eyeballs_are_checked(capsys):
    from affectvlm.synth.cli import main

    for flag, extra in (("--closed-mouth", ["--closed-mouth", "1.5"]),
                        ("--closed-mouth", ["--closed-mouth", "0.5", "--layout", "corpus4d"]),
                        ("--eyeballs", ["--eyeballs", "1.5"]),
                        ("--crosstalk", ["--crosstalk", "0.5", "--layout", "corpus4d"])):
        rc = main(["--layout", "corpus", "--facekit", "/nonexistent-facekit", *extra, "--out", "/tmp/never-written"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and flag in err[0], err


def _open_eyes_model() -> FaceModel:
    """The toy face with two eye openings cut out; landmarks 0-7 and 8-15 on their rims (BU-3DFE's order)."""
    m = _toy_model(60)
    v, f = m.neutral, m.faces
    lms = np.arange(0, 83 * 3, 3, dtype=np.int64)
    faces = f
    for eye, cx in enumerate((30.0, -30.0)):
        inside = ((v[:, 0] - cx) / 14) ** 2 + ((v[:, 1] - 30) / 7) ** 2 < 1
        faces = faces[~inside[faces].any(1)]
        ring = ((v[:, 0] - cx) / 14) ** 2 + ((v[:, 1] - 30) / 7) ** 2
        rim = np.flatnonzero((ring >= 1) & (ring < 1.6))
        ang = np.arctan2(v[rim, 1] - 30, v[rim, 0] - cx)
        lms[eye * 8:(eye + 1) * 8] = rim[np.argsort(ang)][np.linspace(0, len(rim) - 1, 8).astype(int)]
    return FaceModel(name="toy-eyes", neutral=v, faces=faces, identities=m.identities, au_targets=m.au_targets,
                     landmarks=lms, face_mask=m.face_mask, meta=m.meta)


def test_eyeball_caps_fill_the_eye_openings_from_behind_the_lids():
    from affectvlm.synth.randomised import eye_landmarks, eyeball_caps

    m = _open_eyes_model()
    v0 = m.neutral.astype(np.float64)
    caps = eyeball_caps(m, v0, np.random.default_rng(0), gap_mm=(1.0, 1.0))
    assert caps is not None
    cv, cf = caps
    normals = np.cross(cv[cf[:, 1]] - cv[cf[:, 0]], cv[cf[:, 2]] - cv[cf[:, 0]])
    assert (normals[:, 2] > 0).mean() > 0.95  # toward the viewer, like the face
    half = len(cv) // 2
    for cx, P, cap in zip((30.0, -30.0), eye_landmarks(m, v0), (cv[:half], cv[half:])):
        lo, hi = P[:, :2].min(0), P[:, :2].max(0)
        assert (cap[:, :2].min(0) < lo).all() and (cap[:, :2].max(0) > hi).all()  # spans the opening
        x, y = cap[:, 0], cap[:, 1]
        under_skin = ((x - cx) / 14) ** 2 + ((y - 30) / 7) ** 2 >= 1.2  # outside the opening cut out
        skin = 40 * np.sqrt(np.clip(1 - (x / 80) ** 2 - (y / 130) ** 2, 0, None))  # the toy face's surface
        assert under_skin.any() and (cap[under_skin, 2] < skin[under_skin] + 0.5).all()  # stays under the lids
        centre = np.linalg.norm(cap[:, :2] - P[:, :2].mean(0), axis=1).argmin()
        assert cap[centre, 2] > P[:, 2].min() - 3.0  # near the lids, where the opening shows it
    clean = dict(crops=(("full", 1.0),), vertices=(0, 0), hole_probability=0.0, yaw_deg=0.0, pitch_deg=0.0,
                 roll_deg=0.0, origin_mm=0.0, noise_mm=(0.0, 0.0), units=(("mm", 1.0),))
    seen = sample_scan(m, "happiness", 3, np.random.default_rng(3), nuisance=Nuisance(eyeballs=1.0, **clean))
    kept = sample_scan(m, "happiness", 3, np.random.default_rng(3), nuisance=Nuisance(**clean))
    assert seen.nuisance.get("eyeballs") and "eyeballs" not in kept.nuisance
    n = len(kept.mesh.vertices)
    assert len(seen.mesh.vertices) == n + len(cv)  # the same scan, plus the caps
    np.testing.assert_allclose(seen.mesh.vertices[:n], kept.mesh.vertices)


def test_crosstalk_adds_co_occurring_aus_only_when_asked():
    from affectvlm.synth.corpus import CROSSTALK, add_crosstalk, make_scan

    rng = np.random.default_rng(0)
    base = {"AU4": (1.0, 1.0), "AU9": (0.1, 0.1)}
    for _ in range(50):
        out = add_crosstalk(base, "anger", 3, rng)
        added = set(out) - set(base) | {au for au in base if out[au] != base[au]}
        assert 1 <= len(added) <= 2 and added <= set(CROSSTALK["anger"])
        assert out["AU4"] == (1.0, 1.0)  # a larger intensity already there is kept
        for au in added:
            assert 0.2 * 0.8 - 1e-9 <= out[au][0] == out[au][1] <= 0.6 * 0.8 + 1e-9
    assert add_crosstalk(base, "neutral", 0, rng) == base
    m = _toy_model()
    plain = make_scan(m, "emfacs", "anger", 4, np.random.default_rng(7), nuisance=Nuisance.none())
    off = make_scan(m, "emfacs", "anger", 4, np.random.default_rng(7), nuisance=Nuisance.none(), crosstalk=0.0)
    np.testing.assert_array_equal(plain.mesh.vertices, off.mesh.vertices)  # off: the scan it always was
