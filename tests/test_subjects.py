"""Each subject's scores relative to the subject's mean (``affectvlm predict --subject-mean``)."""
import numpy as np
import pytest

from affectvlm.errors import ConfigError
from affectvlm.subjects import MIN_SCANS, centre_rows, subject_of

CLASSES = ["neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger"]
CODES = ["NE", "HA", "SA", "SU", "FE", "DI", "AN"]


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _row(file: str, probs, frame: str = "") -> dict:
    p = [float(v) for v in probs]
    return {"file": file, "frame": frame, "error": "", "label": CLASSES[int(np.argmax(p))],
            "confidence": max(p), **dict(zip(CLASSES, p))}


def _bu3dfe(subject: str, k: int, level: int) -> str:
    code = CODES[k]
    return f"/data/{subject}/{subject}_{code}{0 if code == 'NE' else level:02d}WH_F3D.wrl"


def test_subjects_come_from_the_datasets_names_only():
    assert subject_of("/d/F0001/F0001_HA04WH_F3D.wrl", "") == "/d/F0001/F0001"
    assert subject_of("C:\\d\\M0002_NE00BL_F3D.obj", "") == "C:/d/M0002"  # Windows separators; converted scans
    assert subject_of("/d/bs001/bs001_E_HAPPY_0.bnt", "") == "/d/bs001/bs001"
    assert subject_of("/d/bs001/bs001_N_N_0.bnt", "") == "/d/bs001/bs001"
    assert subject_of("/d/bs001/bs001_YR_R90_0.bnt", "") is None  # a pose scan shows no expression
    assert subject_of("/d/set.zip:F001/Happy", "sequence") == "/d/set.zip:F001"
    assert subject_of("/d/F001/Happy", "sequence") == "/d/F001"
    assert subject_of("/d/F001.zip:Happy", "sequence") == "/d/F001.zip"  # a subject zipped on its own
    assert subject_of("/d/clips.zip:Happy", "sequence") is None
    assert subject_of("/d/F001.ZIP:Happy", "sequence") == "/d/F001.ZIP"  # any case, as the readers take zips
    assert subject_of("/d/SET.ZIP:F001/Happy", "sequence") == "/d/SET.ZIP:F001"
    assert subject_of("/d/F001/Happy", 3) is None  # a frame row: only the pooled row is centred
    assert subject_of("/d/people/alice_smile.ply", "") is None
    assert subject_of("/d/clips/Happy", "sequence") is None


def test_centring_in_probability_space_is_centring_the_embeddings():
    """Labels after centre_rows are those of (embedding - subject mean + training mean) under the linear
    classifier, whatever the softmax temperature."""
    rng = np.random.default_rng(0)
    W = rng.normal(size=(7, 16))
    scale, mu = 30.0, rng.normal(size=16) * 0.05
    rows, Z = [], []
    for s, lean in (("F0001", 0.0), ("F0002", 0.4)):
        shift = lean * W[2] / np.linalg.norm(W[2])  # the second face reads sad at rest
        for level in (1, 2, 3, 4):
            for k in range(7):
                if k == 0 and level > 1:
                    continue
                z = 0.1 * W[k] / np.linalg.norm(W[k]) + shift + rng.normal(size=16) * 0.02
                Z.append(z)
                rows.append(_row(_bu3dfe(s, k, level), _softmax(scale * z @ W.T)))
    Z = np.array(Z)
    added = scale * mu @ W.T
    m = centre_rows(rows, CLASSES, added)
    assert (m.rescored, m.subjects, m.skipped) == (50, 2, 0)
    for part in (slice(0, 25), slice(25, 50)):
        want = ((Z[part] - Z[part].mean(0) + mu) @ W.T).argmax(1)
        assert [CLASSES.index(r["label"]) for r in rows[part]] == want.tolist()
        assert all(abs(sum(r[c] for c in CLASSES) - 1) < 1e-9 for r in rows[part])
    # the lean is gone: the second subject's expressions read as made
    wrong_before = sum(CLASSES.index(r["label"]) != 2 for r in rows[25:] if "_SA0" in r["file"])
    assert wrong_before == 0
    happy = [r for r in rows[25:] if "_HA04" in r["file"]][0]
    assert happy["label"] == "happiness"


def test_a_leaning_subject_is_read_right_only_after_centring():
    rng = np.random.default_rng(1)
    rows = []
    for level in (1, 2, 3, 4):
        for k in range(7):
            if k == 0 and level > 1:
                continue
            z = np.full(7, -1.0)
            z[k] += 1.0
            z[2] += 1.6 + rng.normal() * 0.05  # every scan leans sad, more than the expressions differ
            rows.append(_row(_bu3dfe("F0007", k, level), _softmax(3 * z)))
    before = [r["label"] for r in rows]
    assert before.count("sadness") == len(rows)
    centre_rows(rows, CLASSES)
    assert [r["label"] for r in rows] == [CLASSES[k] for level in (1, 2, 3, 4) for k in range(7)
                                          if not (k == 0 and level > 1)]


def test_subjects_too_small_or_showing_few_expressions_are_left_as_scored():
    p = _softmax(np.array([0.0, 2, 0, 0, 0, 0, 1]))
    few = [_row(_bu3dfe("F0001", k, 4), p) for k in range(MIN_SCANS - 1)]  # 6 scans
    narrow = [_row(_bu3dfe("F0002", k, lv), p) for k in (1, 2, 3) for lv in (1, 2, 3, 4)]  # 12 scans, 3 classes
    other = [_row(f"/d/x/scan{i}.ply", p) for i in range(10)]
    bad = [{**_row(_bu3dfe("F0003", k, 4), p), "error": "cannot read"} for k in range(7)]
    rows = few + narrow + other + bad
    before = [dict(r) for r in rows]
    m = centre_rows(rows, CLASSES)
    assert (m.rescored, m.subjects, m.skipped) == (0, 0, 2)
    assert "2 subject(s) with under 7 scans" in m.text()
    assert rows == before
    assert centre_rows([dict(r) for r in before], CLASSES, mode="none").rescored == 0
    with pytest.raises(ConfigError, match="--subject-mean"):
        centre_rows(rows, CLASSES, mode="on")
    with pytest.raises(ConfigError, match="7 added logits"):
        centre_rows(rows, CLASSES, np.zeros(3))


def test_sequences_keep_a_class_the_pooling_took_out():
    rng = np.random.default_rng(2)
    rows = []
    for k, name in enumerate(["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise"]):
        p = _softmax(rng.normal(size=7))
        p[0] = 0.0  # contrast pooling leaves neutral out of a sequence's row
        rows.append(_row(f"/d/M003/{name}", p / p.sum(), frame="sequence"))
        rows.append(_row(f"/d/M003/{name}", _softmax(rng.normal(size=7)), frame=0))
    frames = [dict(r) for r in rows if r["frame"] == 0]
    m = centre_rows(rows, CLASSES)
    assert (m.rescored, m.subjects) == (6, 1)
    assert all(r["neutral"] == 0.0 for r in rows if r["frame"] == "sequence")
    assert [r for r in rows if r["frame"] == 0] == frames


def test_check_subject_mean_scores_labelled_scans_as_predict_scores_their_names():
    from affectvlm.subjects import check_subject_mean

    rng = np.random.default_rng(3)
    rows, probs, labels, subjects = [], [], [], []
    for s in ("F0001", "F0002", "F0003"):
        lean = rng.normal(size=7) * 2
        for level in (3, 4):
            for k in range(7):
                if k == 0 and level == 4:
                    continue
                p = _softmax(np.eye(7)[k] * 1.5 + lean + rng.normal(size=7) * 0.3)
                rows.append(_row(_bu3dfe(s, k, level), p))
                probs.append(p), labels.append(k), subjects.append(s)
    got = check_subject_mean(np.array(probs), labels, subjects, CLASSES)
    centre_rows(rows, CLASSES)
    assert got.rescored == 39 and got.centred == pytest.approx(np.mean([r["label"] == CLASSES[y]
                                                                         for r, y in zip(rows, labels)]))
    assert got.alone == pytest.approx(np.mean(np.array(probs).argmax(1) == labels))
    assert got.helps == (got.centred > got.alone) and got.centred > got.alone  # the leans were large
    # a subject of too few labels is not rescored; the comparison is with the predictions given
    few = check_subject_mean(np.array(probs)[:6], labels[:6], subjects[:6], CLASSES)
    assert few.rescored == 0 and few.centred == few.alone and not few.helps
    given = np.zeros(len(labels), dtype=int)  # everything called neutral
    assert check_subject_mean(np.array(probs), labels, subjects, CLASSES, scored=given).alone == pytest.approx(3 / 39)
    # counting the level-4 scans only: every scan still shapes its subject's mean
    strong = np.array(["04" in r["file"] for r in rows])
    part = check_subject_mean(np.array(probs), labels, subjects, CLASSES, counted=strong)
    assert part.rescored == 39 and strong.sum() == 18
    assert part.centred == pytest.approx(np.mean([r["label"] == CLASSES[y]
                                                  for r, y, k in zip(rows, labels, strong) if k]))
    assert part.alone == pytest.approx(np.mean((np.array(probs).argmax(1) == labels)[strong]))


def test_a_checkpoint_can_decline_it_and_auto_follows(tmp_path):
    from types import SimpleNamespace

    from affectvlm.errors import ModelError
    from affectvlm.model import load_model, save_checkpoint
    from affectvlm.model.checkpoint import update_meta
    from affectvlm.subjects import resolve_subject_mean

    assert resolve_subject_mean("auto", SimpleNamespace(subject_mean=None)) == ("auto", None)
    assert resolve_subject_mean("auto", SimpleNamespace(subject_mean=True)) == ("auto", None)
    mode, note = resolve_subject_mean("auto", SimpleNamespace(subject_mean=False))
    assert mode == "none" and "subject_mean in its affectvlm.json" in note
    assert resolve_subject_mean("none", SimpleNamespace(subject_mean=True)) == ("none", None)
    with pytest.raises(ConfigError, match="--subject-mean"):
        resolve_subject_mean("always", SimpleNamespace())
    ck = save_checkpoint(load_model("AffectVLM-Test", cache=False), tmp_path / "ck", extra={"trained": True})
    assert load_model(str(ck), cache=False).subject_mean is None
    update_meta(ck, subject_mean=False)
    m = load_model(str(ck), cache=False)
    assert m.subject_mean is False
    assert save_checkpoint(m, tmp_path / "again")
    assert load_model(str(tmp_path / "again"), cache=False).subject_mean is False
    update_meta(ck, subject_mean="no")
    with pytest.raises(ModelError, match="subject_mean must be true or false"):
        load_model(str(ck), cache=False)
