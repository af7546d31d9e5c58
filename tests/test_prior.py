"""Class-prior matching (affectvlm.prior, `affectvlm predict --prior`)."""
import numpy as np
import pytest

from affectvlm.errors import ConfigError
from affectvlm.prior import MIN_ROWS, match_prior, match_rows, parse_prior

CLASSES = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger")


def test_parse_prior_specs():
    np.testing.assert_allclose(parse_prior("uniform", CLASSES), np.full(7, 1 / 7))
    p = parse_prior("Neutral=0.25", CLASSES)  # BU-3DFE: one neutral per four scans of each expression
    assert p[0] == pytest.approx(0.25 / 6.25) and p[1:] == pytest.approx(np.full(6, 1 / 6.25))
    assert parse_prior("neutral=0, anger=2", CLASSES)[[0, 6]] == pytest.approx([0.0, 2 / 7])
    for bad in ("joy=1", "neutral", "neutral=-1", "neutral=nan", "anger=x",
                "neutral=0,happiness=0,sadness=0,surprise=0,fear=0,disgust=0"):
        with pytest.raises(ConfigError, match="--prior"):
            parse_prior(bad, CLASSES)


def _leaning_set(n_per_class: int = 30, lean: float = 2.0, seed: int = 0):
    """Balanced labels; noisy logits that favour the truth, plus one set-wide lean towards disgust."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(7), n_per_class)
    logits = rng.normal(0.0, 1.0, (len(y), 7))
    logits[np.arange(len(y)), y] += 2.0
    logits[:, CLASSES.index("disgust")] += lean
    P = np.exp(logits)
    return P / P.sum(1, keepdims=True), y


def test_match_prior_takes_out_a_set_wide_lean():
    P, y = _leaning_set()
    Q, b = match_prior(P, parse_prior("uniform", CLASSES))
    np.testing.assert_allclose(Q.mean(0), np.full(7, 1 / 7), atol=1e-4)  # the stated balance
    np.testing.assert_allclose(Q.sum(1), 1.0, atol=1e-9)
    assert b[CLASSES.index("disgust")] < -1.0  # the lean, found and taken out
    assert (Q.argmax(1) == y).mean() > (P.argmax(1) == y).mean() + 0.1
    shift = np.log(Q / P) - np.log(Q[:, :1] / P[:, :1])  # every scan moved by the same per-class offsets
    np.testing.assert_allclose(shift, np.broadcast_to(b - b[0], shift.shape), atol=1e-6)
    P0, y0 = _leaning_set(lean=0.0)
    Q0, _ = match_prior(P0, parse_prior("uniform", CLASSES))
    assert (Q0.argmax(1) == y0).mean() >= (P0.argmax(1) == y0).mean() - 0.03  # no lean: little changes


def test_match_prior_keeps_an_empty_class_empty():
    P, _ = _leaning_set()
    P[:, 0] = 0.0  # neutral after contrast pooling
    P /= P.sum(1, keepdims=True)
    Q, b = match_prior(P, parse_prior("uniform", CLASSES))
    assert (Q[:, 0] == 0).all() and b[0] == 0.0
    np.testing.assert_allclose(Q.mean(0)[1:], np.full(6, 1 / 6), atol=1e-4)


def test_match_rows_matches_scans_and_sequences_apart_and_leaves_the_rest():
    P, _ = _leaning_set(n_per_class=4)
    rows = [dict(file=f"s{i}.obj", frame="", label="", confidence=0.0, error="", **dict(zip(CLASSES, p)))
            for i, p in enumerate(P)]
    rows.append(dict(file="bad.obj", frame="", label="", confidence=None, error="unreadable",
                     **dict.fromkeys(CLASSES)))
    frame_row = dict(file="seq", frame=0, label="disgust", confidence=0.9, error="", **dict(zip(CLASSES, P[0])))
    seq_rows = [dict(file=f"q{i}", frame="sequence", label="disgust", confidence=0.5, error="",
                     **dict(zip(CLASSES, p))) for i, p in enumerate(P[:MIN_ROWS - 1])]
    rows += [frame_row, *seq_rows]
    before = [dict(r) for r in rows]
    done = match_rows(rows, CLASSES, parse_prior("uniform", CLASSES))
    assert [(m.kind, m.rows, bool(m.offsets)) for m in done] == [("scan", len(P), True),
                                                                 ("sequence", MIN_ROWS - 1, False)]
    scans = rows[:len(P)]
    assert any(r["disgust"] != b["disgust"] for r, b in zip(scans, before))
    for r in scans:
        assert r["label"] == max(CLASSES, key=lambda c: r[c]) and r["confidence"] == r[r["label"]]
    assert rows[len(P):] == before[len(P):]  # error, frame and (too few) sequence rows untouched


def test_match_rows_by_folder_takes_out_each_subjects_own_lean():
    rows, truth = [], []
    for subject, lean in (("F001", "sadness"), ("F002", "anger")):  # two subjects leaning opposite ways
        P, y = _leaning_set(n_per_class=4, lean=0.0, seed=len(rows))
        logits = np.log(P)
        logits[:, CLASSES.index(lean)] += 4.0
        P = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        rows += [dict(file=f"BU3DFE/{subject}/{subject}_{i:02d}.wrl", frame="", label="", confidence=0.0, error="",
                      **dict(zip(CLASSES, p))) for i, p in enumerate(P)]
        truth += list(y)
    truth = np.array(truth)
    uniform = parse_prior("uniform", CLASSES)

    def accuracy(rs):
        return np.mean([CLASSES.index(r["label"]) == t for r, t in zip(rs, truth)])

    whole = [dict(r) for r in rows]
    match_rows(whole, CLASSES, uniform)
    per = [dict(r) for r in rows]
    done = match_rows(per, CLASSES, uniform, by="folder")
    assert sorted((m.group, m.rows) for m in done) == [("BU3DFE/F001", 28), ("BU3DFE/F002", 28)]
    assert accuracy(per) > accuracy(whole) + 0.1  # the set's mean lean is no one subject's
    small = [dict(r) for r in rows[:5]]  # a folder with fewer rows than classes: as scored
    assert [bool(m.offsets) for m in match_rows(small, CLASSES, uniform, by="folder")] == [False]
    assert small == rows[:5]
    with pytest.raises(ConfigError, match="--prior-by"):
        match_rows(rows, CLASSES, uniform, by="subject")


def test_summarise_says_what_was_matched_and_what_was_not():
    from affectvlm.prior import PriorMatch, summarise

    done = [PriorMatch("scan", 30, {"neutral": 0.5, "anger": -0.5}), PriorMatch("sequence", 4, {})]
    notes = summarise(done)
    assert [n.warning for n in notes] == [False, True]
    assert "matched over 30 scans" in notes[0].text and "anger +0.50" in notes[0].text
    assert "only 4 sequence(s)" in notes[1].text
    folders = summarise([PriorMatch("scan", 7, {}, "F1"), PriorMatch("scan", 3, {}, "F2")], by="folder")
    assert len(folders) == 1 and folders[0].warning and "matched 0 scans in 0 folder(s); 10 in 2" in folders[0].text


def _labelled(labels, frame=""):
    return [{"file": f"s/{i}.obj", "frame": frame, "error": None, "label": c} for i, c in enumerate(labels)]


def test_lean_hint_names_the_lopsided_classes_and_stays_quiet_otherwise():
    from affectvlm.prior import HINT_ROWS, lean_hint

    even = [c for c in CLASSES[1:] for _ in range(12)] + ["neutral"] * 3  # BU-3DFE-like: few neutral scans
    assert len(even) >= HINT_ROWS and lean_hint(_labelled(even), CLASSES) is None
    lopsided = [c if c != "anger" else "happiness" for c in even]  # every anger read as happiness
    hint = lean_hint(_labelled(lopsided), CLASSES)
    assert hint is not None and not hint.warning
    assert "75 scans" in hint.text and "anger 0 %" in hint.text and "happiness" not in hint.text  # 32 %: not 2.5x
    crowded = ["happiness" if i % 2 else c for i, c in enumerate(even)]  # half the set read as happiness
    assert "happiness 57 %" in lean_hint(_labelled(crowded), CLASSES).text
    assert lean_hint(_labelled(lopsided[: HINT_ROWS - 1]), CLASSES) is None  # too few to say
    errs = _labelled(lopsided)
    for r in errs:
        r["error"] = "unreadable"
    assert lean_hint(errs, CLASSES) is None
    # sequences pool without neutral: no neutral sequence is not lopsided, no anger sequence is
    seqs = [c for c in CLASSES[1:] for _ in range(10)]
    assert lean_hint(_labelled(seqs, "sequence"), CLASSES) is None
    hint = lean_hint(_labelled([c if c != "anger" else "fear" for c in seqs], "sequence"), CLASSES)
    assert hint is not None and "60 sequences" in hint.text and "anger 0 %" in hint.text
