"""Scoring scans against their subject's neutral scan (``affectvlm predict --neutral``)."""
import numpy as np
import pytest

from affectvlm.errors import ConfigError
from affectvlm.predict import CONTRAST_WEIGHT, contrast, pool_probabilities
from affectvlm.reference import AUTO_LAYOUTS, check_pattern, full_expressions, layouts_for, match_neutral

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
    assert (m.rescored, m.subjects, m.unreferenced) == (1, 1, 1) and "1 without a neutral scan" in m.text("*NE00*")
    assert rows[1]["label"] == "happiness" and rows[1]["neutral"] == 0.0
    np.testing.assert_allclose([rows[1][c] for c in CLASSES], contrast(np.array([smile]) / 1.0,
                                                                        np.array([sad_rest]), CLASSES))
    assert rows[0] == before[0] and rows[2:] == before[2:]  # the reference, other folders, frames, errors as scored


def test_auto_pairs_each_scan_with_its_own_subjects_neutral_scan_in_flat_folders_and_zips():
    calm_a = [0.5, 0.05, 0.35, 0.02, 0.03, 0.03, 0.02]  # subject A looks sad at rest
    calm_b = [0.5, 0.35, 0.05, 0.02, 0.03, 0.03, 0.02]  # subject B looks happy at rest
    smile = [0.05, 0.40, 0.45, 0.02, 0.03, 0.03, 0.02]
    for a, b in (("flat/F0001", "flat/F0002"), ("a.zip:F0001", "a.zip:F0002"), ("a.zip:x/F0001", "b.zip:x/F0002")):
        rows = [_row(f"{a}_NE00WH_F3D.wrl", calm_a), _row(f"{a}_HA04WH_F3D.wrl", smile),
                _row(f"{b}_NE00WH_F3D.wrl", calm_b), _row(f"{b}_HA04WH_F3D.wrl", smile)]
        m = match_neutral(rows, CLASSES)
        assert (m.rescored, m.subjects) == (2, 2), a
        np.testing.assert_allclose([rows[1][c] for c in CLASSES], contrast(np.array([smile]), np.array([calm_a]),
                                                                            CLASSES))
        np.testing.assert_allclose([rows[3][c] for c in CLASSES], contrast(np.array([smile]), np.array([calm_b]),
                                                                            CLASSES))
    # a glob groups by folder; a zip's root is a folder of its own
    rows = [_row("a.zip:NE0_x.ply", calm_a), _row("a.zip:HA4_x.ply", smile), _row("b.zip:HA4_x.ply", smile)]
    m = match_neutral(rows, CLASSES, "NE0_*")
    assert (m.rescored, m.subjects, m.unreferenced) == (1, 1, 1)
    # a neutral scan that failed to load is no reference
    rows = [{"file": "s/F0001_NE00WH_F3D.wrl", "frame": "", "error": "unreadable", "label": ""},
            _row("s/F0001_HA04WH_F3D.wrl", smile)]
    assert match_neutral(rows, CLASSES).unreferenced == 1


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
    assert layouts_for("auto") == AUTO_LAYOUTS and layouts_for("NONE") == ()
    assert [(lay.neutral, lay.scans, lay.by_field) for lay in layouts_for("*N*")] == [("*n*", "*", False)]
    # Bosphorus folders also hold pose, occlusion and AU scans: auto rescores only the emotion scans (E_), each
    # against its own subject's N_N scans, also in a flat folder of several subjects; a glob rescores the folder
    rest = [0.5, 0.05, 0.35, 0.02, 0.03, 0.03, 0.02]
    bos = [_row("b/bs000_N_N_0.bnt", rest), _row("b/bs000_E_HAPPY_0.bnt", [0.05, 0.4, 0.45, 0.02, 0.03, 0.03, 0.02]),
           _row("b/bs000_YR_R10_0.bnt", [0.1] * 7), _row("b/bs000_LFAU_12_0.bnt", [0.1] * 7),
           _row("b/bs001_E_SADNESS_0.bnt", [0.05, 0.4, 0.45, 0.02, 0.03, 0.03, 0.02]),
           _row("b/bs002_N_N_1.bnt", [0.5, 0.35, 0.05, 0.02, 0.03, 0.03, 0.02]),
           _row("b/bs002_E_SADNESS_0.bnt", [0.05, 0.4, 0.45, 0.02, 0.03, 0.03, 0.02])]
    before = [dict(r) for r in bos]
    m = match_neutral(bos, CLASSES)
    assert (m.rescored, m.subjects, m.unreferenced) == (2, 2, 1) and "Bosphorus" in m.text("auto")
    assert bos[1]["label"] == "happiness" and bos[6]["label"] == "sadness"  # each subject's own lean taken out
    assert [bos[i] for i in (0, 2, 3, 4, 5)] == [before[i] for i in (0, 2, 3, 4, 5)]
    assert match_neutral([dict(r) for r in before], CLASSES, "*_N_N_*").rescored == 5  # the glob: the whole folder
    assert match_neutral([dict(r) for r in before], CLASSES, "none").rescored == 0
    for bad in ("", "*", "dir/*NE00*"):
        with pytest.raises(ConfigError, match="--neutral"):
            check_pattern(bad)


def test_eval_scores_alone_by_default_and_against_the_neutral_scan_when_asked(tmp_path):
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
    assert main([*common, "--out", str(tmp_path / "n.json")]) == 0  # each scan alone by default, as the trainer
    alone = json.loads((tmp_path / "n.json").read_text())
    assert "neutral_reference" not in alone
    assert main([*common, "--neutral", "auto", "--out", str(tmp_path / "a.json")]) == 0
    auto = json.loads((tmp_path / "a.json").read_text())
    assert auto["n"] == 6 and auto["neutral_reference"] == {"spec": "auto", "rescored": 4, "subjects": 2,
                                                            "transductive": True}
    # the referenced happy scans can no longer be called neutral: the confusion matrix's neutral column holds
    # only the two neutral scans' own predictions
    cm, k = np.array(auto["confusion_matrix"]), auto["classes"].index("neutral")
    assert cm[:, k].sum() <= 2


def test_full_expressions_leave_out_subtle_levels_poses_and_occlusions():
    bosphorus = ["b/bs000_E_HAPPY_0.bnt", "b/bs000_N_N_0.bnt", "b/bs000_YR_R10_0.bnt", "b/bs000_LFAU_12_0.bnt",
                 "t.zip:bs001/bs001_O_EYE_0.bnt", "t.zip:bs001/BS001_E_FEAR_0.BNT"]
    assert full_expressions(bosphorus) == [True, True, False, False, False, True]
    bu3dfe = ["F0001/F0001_NE00WH_F3D.wrl", "F0001_HA03WH_F3D.wrl", "t.zip:M0042/M0042_SU04BL_F3D.wrl",
              "F0001_HA01WH_F3D.wrl", "M0042_SA02BL_F3D.wrl", "t.zip:M0042/m0042_di01bl_f3d.wrl"]
    assert full_expressions(bu3dfe) == [True, True, True, False, False, False]
    others = ["scan_yr_r10.obj", "seq/F001/Happy", "patient_ha01.ply", "F001_HA01.obj"]
    assert full_expressions(others) == [True] * 4


def test_check_neutral_scores_a_labelled_set_as_predict_scores_bu3dfe_names():
    from affectvlm.reference import check_neutral

    rng = np.random.default_rng(3)
    probs, labels, subjects, rows = [], [], [], []
    for s in range(6):
        lean = rng.dirichlet(np.ones(7) * 2)  # each face leans its own way at rest
        for c in range(7):
            p = 0.5 * lean + 0.5 * rng.dirichlet(np.ones(7) * 0.5)
            p[c] += 0.25
            p /= p.sum()
            probs.append(p)
            labels.append(c)
            subjects.append(f"F{s:04d}")
            code = ["NE00", "HA04", "SA04", "SU04", "FE04", "DI04", "AN04"][c]
            rows.append(_row(f"x/F{s:04d}_{code}WH_F3D.wrl", p))
    got = check_neutral(np.array(probs), labels, subjects, CLASSES)
    # the same set scored by file name, as affectvlm predict --neutral auto does
    assert match_neutral(rows, CLASSES, "auto").rescored == got.rescored == 36
    by_name = [CLASSES.index(r["label"]) for r in rows]
    assert got.against == pytest.approx(np.mean(np.array(by_name) == np.array(labels)))
    assert got.alone == pytest.approx(np.mean(np.argmax(probs, 1) == np.array(labels)))
    assert got.helps == (got.against > got.alone) and got.to_json()["rescored"] == 36
    # a subject without a neutral scan, or a class list without neutral, rescores nothing
    some = [i for i, y in enumerate(labels) if not (subjects[i] == "F0000" and y == 0)]
    assert check_neutral(np.array(probs)[some], [labels[i] for i in some], [subjects[i] for i in some],
                         CLASSES).rescored == 30
    six = check_neutral(np.array(probs)[:, 1:], [max(y - 1, 0) for y in labels], subjects, CLASSES[1:])
    assert six.rescored == 0 and not six.helps
    # counting only some scans (the trainer's protocol levels): the neutral scans still serve as references
    counted = np.array([y in (1, 2) for y in labels])
    part = check_neutral(np.array(probs), labels, subjects, CLASSES, counted=counted)
    assert part.rescored == 36
    assert part.against == pytest.approx(np.mean((np.array(by_name) == np.array(labels))[counted]))
    assert part.alone == pytest.approx(np.mean((np.argmax(probs, 1) == np.array(labels))[counted]))
    assert (part.alone, part.against) != (got.alone, got.against)
    assert np.isnan(check_neutral(np.array(probs), labels, subjects, CLASSES, counted=counted & False).alone)


def test_auto_follows_the_models_own_choice_and_other_specs_are_as_given():
    from types import SimpleNamespace

    from affectvlm.reference import resolve_neutral

    assert resolve_neutral("auto", SimpleNamespace(neutral_reference=None)) == ("auto", None)
    assert resolve_neutral("auto", SimpleNamespace(neutral_reference=True)) == ("auto", None)
    assert resolve_neutral("auto", object()) == ("auto", None)
    spec, note = resolve_neutral(" AUTO ", SimpleNamespace(neutral_reference=False))
    assert spec == "none" and "validation subjects" in note
    for given in ("none", "*NE00*"):
        assert resolve_neutral(given, SimpleNamespace(neutral_reference=False)) == (given, None)
