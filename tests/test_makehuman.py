"""MakeHuman + FACSHuman face model: a tiny fixture in the real formats, and the real folders when present."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from affectvlm.errors import InputError
from affectvlm.synth.facemodel import FaceModel, apply_aus
from affectvlm.synth.makehuman import AGES, ETHNICITIES, GENDERS, LEVELS, load_makehuman

HEADER = "# This is a target file for MakeHuman\n# released as CC0\n# basemesh hm08\n"


def _lathe() -> tuple[np.ndarray, list[list[int]]]:
    """A standing 'body' in decimetres: torso, neck and an ellipsoid head (centre y 7.3) with a nose."""
    ys = list(np.linspace(-8.2, 5.4, 8)) + list(np.arange(5.5, 6.1, 0.1)) + list(np.arange(6.15, 8.46, 0.1))
    n_around = 24
    verts, rings = [], []
    for y in ys:
        if y < 5.45:
            r = 1.5
        elif y < 6.05:
            r = 0.5
        else:
            r = 0.9 * np.sqrt(max(1e-3, 1 - ((y - 7.3) / 1.2) ** 2))
        ring = []
        for k in range(n_around):
            a = 2 * np.pi * k / n_around  # k = 0 faces +Z, k = 6 is +X (the subject's left)
            ring.append(len(verts))
            verts.append([r * np.sin(a), y, r * np.cos(a)])
        rings.append(ring)
    quads = []
    for lo, hi in zip(rings[:-1], rings[1:]):
        for k in range(n_around):
            k2 = (k + 1) % n_around
            quads.append([lo[k], lo[k2], hi[k2], hi[k]])
    v = np.asarray(verts)
    nose = np.argmin(np.abs(v[:, 1] - 6.95) + np.abs(v[:, 0]) + (v[:, 2] < 0))
    v[nose, 2] += 0.3
    return v, quads


def _write_obj(path: Path, v: np.ndarray, groups: dict[str, list[list[int]]]) -> None:
    lines = ["# This is a mesh file for MakeHuman", "# basemesh hm08"]
    lines += [f"v {x:.5f} {y:.5f} {z:.5f}" for x, y, z in v]
    for name, polys in groups.items():
        lines.append(f"g {name}")
        lines += ["f " + " ".join(str(i + 1) for i in p) for p in polys]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _write_target(path: Path, rows: dict[int, tuple[float, float, float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join(f"{i} {dx:g} {dy:g} {dz:g}\n" for i, (dx, dy, dz) in rows.items()))


def _cube(centre: tuple[float, float, float], s: float, start: int) -> tuple[np.ndarray, list[list[int]]]:
    c = np.array([[x, y, z] for x in (-s, s) for y in (-s, s) for z in (-s, s)]) + np.asarray(centre)
    f = [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]]
    return c, [[start + i for i in q] for q in f]


@pytest.fixture
def mh_dirs(tmp_path, monkeypatch):
    """(makehuman data folder, FACSHuman folder, facts) built in the real formats."""
    monkeypatch.setenv("AFFECTVLM_CACHE", str(tmp_path / "cache"))
    v, quads = _lathe()
    n_body = len(v)
    eye, eye_f = _cube((0.3, 7.3, 0.75), 0.1, n_body)  # a helper inside the head, and a joint cube
    joint, joint_f = _cube((-0.3, 7.3, 0.5), 0.05, n_body + 8)
    allv = np.concatenate([v, eye, joint])
    data = tmp_path / "makehuman" / "data"
    _write_obj(data / "3dobjs" / "base.obj", allv, {"body": quads, "helper-l-eye": eye_f, "joint-l-eye": joint_f})
    t = data / "targets"
    head = np.flatnonzero(v[:, 1] > 6.3)
    front = head[(v[head, 2] > 0.5)]
    left = front[v[front, 0] > 0.1]
    right = front[v[front, 0] < -0.1]
    for e in ETHNICITIES:
        for g in GENDERS:
            for a in AGES:
                _write_target(t / "macrodetails" / f"{e}-{g}-{a}.target",
                              {int(i): (0.02 if e == "asian" else 0.0, 0.0, 0.0) for i in head[:20]})
                for m in LEVELS:
                    for w in LEVELS:
                        rows = {}
                        if w == "max":  # heavier: wider face; and a shorter body moves the whole head down
                            rows = {int(i): (0.1 * np.sign(v[i, 0]), -0.5, 0.0) for i in range(n_body)}
                        _write_target(t / "macrodetails" / f"universal-{g}-{a}-{m}muscle-{w}weight.target", rows)
    nose = int(np.argmax(v[:, 2] * (v[:, 1] > 6)))
    _write_target(t / "nose" / "nose-scale-depth-incr.target", {nose: (0, 0, 0.1)})
    _write_target(t / "nose" / "nose-scale-depth-decr.target", {nose: (0, 0, -0.1)})
    _write_target(t / "head" / "head-oval.target", {int(i): (0, 0.05, 0) for i in head[-24:]})
    _write_target(t / "head" / "head-trans-up.target", {int(i): (0, 1.0, 0) for i in head})  # pose: unused
    (t / "nose" / "images").mkdir()
    fh = tmp_path / "FACSHuman"
    up, low = fh / "01 Upper Face AUs", fh / "02 Lower Face AUs"
    _write_target(up / "L1.target", {int(i): (0, 0.05, 0) for i in left[:5]})
    _write_target(up / "R1.target", {int(i): (0, 0.05, 0) for i in right[:5]})
    _write_target(low / "L12.target", {int(i): (0.02, 0.03, 0) for i in left[5:9]})
    _write_target(low / "R12.target", {int(i): (-0.02, 0.03, 0) for i in right[5:9]})
    _write_target(low / "12.target", {int(i): (0, 0.03, 0) for i in front[:10]})
    _write_target(low / "12_a.target", {int(i): (0, 0.02, 0) for i in front[:10]})
    _write_target(low / "17.target", {int(i): (0, 0.01, 0.01) for i in front[10:12]})
    _write_target(low / "13.target", {int(i): (0, 0.01, 0) for i in range(0, 10)})  # feet only: dropped
    (low / "auorder.json").write_text('["12", "L12", "R12"]')
    _write_target(fh / "05 Head Positions" / "51.target", {int(i): (0.1, 0, 0) for i in head})
    _write_target(fh / "00 Emotions" / "06_Happy.target", {int(i): (0, 0.02, 0) for i in front[:6]})
    _write_target(fh / "00 Emotions" / "06_Langner_Happy.target", {int(i): (0, 0.03, 0) for i in front[:6]})
    _write_target(fh / "00 Emotions" / "02_Contempt.target", {int(i): (0.01, 0, 0) for i in left[:3]})
    facts = {"n_body": n_body, "nose": nose, "left": left, "right": right, "front": front}
    return data, fh, facts


def test_units_axes_and_origin(mh_dirs):
    data, fh, facts = mh_dirs
    m = load_makehuman(data, fh)
    assert isinstance(m, FaceModel) and m.meta["units_to_mm"] == 100.0
    v = m.neutral
    assert v.dtype == np.float32 and v.shape == (m.n_vertices, 3)
    assert 150 < np.ptp(v[:, 0]) < 200  # head 1.8 dm wide -> ~180 mm (plus the 'weight' widening)
    tip = int(np.argmax(v[:, 2]))
    assert m.meta["model_ids"][tip] == facts["nose"]  # the nose is the front-most point
    assert abs(v[tip, 0]) < 1.0
    assert v[:, 1].argmax() != tip and v[:, 1].max() > v[tip, 1] + 80  # +Y up: the top of the head is high
    assert np.allclose(v[m.face_mask].mean(0), 0, atol=1e-3)  # origin = centre of the face crop


def test_head_crop_has_no_helpers_no_body(mh_dirs):
    data, fh, facts = mh_dirs
    m = load_makehuman(data, fh)
    ids = m.meta["model_ids"]
    assert ids.max() < facts["n_body"]  # no helper or joint cube vertices
    assert m.faces.shape[1] == 3 and m.faces.min() >= 0 and m.faces.max() < m.n_vertices
    assert len(np.unique(m.faces)) == m.n_vertices  # every kept vertex is used
    assert np.ptp(m.neutral[:, 1]) < 300  # head and a little neck, not the 17 dm body
    mask = m.face_mask
    assert mask.dtype == bool and 0 < mask.sum() < m.n_vertices
    assert mask[int(np.argmax(m.neutral[:, 2]))]  # the nose is in the crop
    back = m.neutral[:, 2] < m.neutral[:, 2].min() + 0.3 * np.ptp(m.neutral[:, 2])
    assert not (mask & back).any()  # the back of the head is not
    assert not mask[m.neutral[:, 1].argmin()] and not mask[m.neutral[:, 1].argmax()]  # neither neck nor crown


def test_au_keys_sides_and_variants(mh_dirs):
    data, fh, facts = mh_dirs
    m = load_makehuman(data, fh)
    assert set(m.au_targets) == {"AU1L", "AU1R", "AU12L", "AU12R", "AU17"}
    assert m.action_units == ("AU1", "AU12", "AU17")
    assert {"AU12", "AU12_a", "AU51"} <= set(m.meta["au_variants"])
    for d in m.au_targets.values():
        assert d.shape == m.neutral.shape and d.dtype == np.float32
    # 0.03 dm up in the file -> 3 mm
    assert np.isclose(np.abs(m.au_targets["AU12L"][:, 1]).max(), 3.0, atol=1e-4)
    moved_l = m.meta["model_ids"][np.abs(m.au_targets["AU12L"]).sum(1) > 0]
    assert set(moved_l) == set(facts["left"][5:9].tolist())
    assert (m.neutral[np.abs(m.au_targets["AU12L"]).sum(1) > 0, 0] > 0).all()  # L = subject's left = +X


def test_apply_aus_moves_only_target_vertices(mh_dirs):
    data, fh, facts = mh_dirs
    m = load_makehuman(data, fh)
    out = apply_aus(m, m.neutral, {"AU12": (1.0, 0.0)})
    moved = set(m.meta["model_ids"][np.abs(out - m.neutral).sum(1) > 1e-6].tolist())
    assert moved == set(facts["left"][5:9].tolist())
    both = apply_aus(m, m.neutral, {"AU12": (0.5, 0.5), "AU17": (1.0, 0.0)})
    moved = set(m.meta["model_ids"][np.abs(both - m.neutral).sum(1) > 1e-6].tolist())
    assert moved == set(facts["left"][5:9].tolist()) | set(facts["right"][5:9].tolist()) | \
        set(facts["front"][10:12].tolist())
    assert np.allclose((both - m.neutral)[np.abs(m.au_targets["AU17"]).sum(1) > 0], [0, 0.5, 0.5], atol=1e-5)


def test_emotions_identities_and_no_facshuman(mh_dirs):
    data, fh, _ = mh_dirs
    m = load_makehuman(data, fh)
    emo = m.meta["emotion_targets"]
    assert set(emo) == {"happiness"} and len(emo["happiness"]) == 2  # contempt is not one of our classes
    assert emo["happiness"][0].shape == m.neutral.shape
    k = len(m.identities)
    assert k >= 1 and m.identities.shape == (k, m.n_vertices, 3)
    rms = np.sqrt((m.identities.astype(np.float64) ** 2).sum(2).mean(1))
    assert (rms > 0.2).all() and rms[0] < 30
    # the stature change of the macro targets (-0.5 dm on the whole body) is not an identity mode
    assert abs(float(m.identities[0][:, 1].mean())) < 0.5
    bare = load_makehuman(data)
    assert bare.au_targets == {} and bare.meta["emotion_targets"] == {}
    assert np.allclose(bare.neutral, m.neutral)


def test_cache_roundtrip_and_invalidation(mh_dirs):
    data, fh, _ = mh_dirs
    a = load_makehuman(data, fh)
    b = load_makehuman(data, fh)
    assert not a.meta["from_cache"] and b.meta["from_cache"]
    assert np.array_equal(a.neutral, b.neutral) and np.array_equal(a.faces, b.faces)
    assert set(a.au_targets) == set(b.au_targets)
    assert np.array_equal(a.meta["emotion_targets"]["happiness"][1], b.meta["emotion_targets"]["happiness"][1])
    tgt = fh / "02 Lower Face AUs" / "17.target"
    tgt.write_text(tgt.read_text().replace("0.01 0.01", "0.02 0.01"))
    os.utime(tgt, ns=(time.time_ns(), time.time_ns() + 10**9))
    c = load_makehuman(data, fh)
    assert not c.meta["from_cache"]
    assert np.isclose(np.abs(c.au_targets["AU17"][:, 1]).max(), 2.0, atol=1e-4)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_bad_folders_and_files(mh_dirs, tmp_path):
    data, fh, _ = mh_dirs
    with pytest.raises(InputError, match="not a folder"):
        load_makehuman(tmp_path / "nope")
    with pytest.raises(InputError, match="base.obj is missing"):
        load_makehuman(tmp_path / "FACSHuman")
    with pytest.raises(InputError, match="FACSHuman target folders"):
        load_makehuman(data, data)
    (data / "targets" / "macrodetails" / "asian-male-old.target").unlink()
    with pytest.raises(InputError, match="asian-male-old.target is missing") as e:
        load_makehuman(data, fh, cache=False)
    _one_line(e)


@pytest.mark.parametrize("text,problem", [
    ("12 0 0.1\n", "4 numbers"),
    ("12 0 x 0\n", "bad row"),
    ("999999 0 0 0\n", "out of range"),
    ("-1 0 0 0\n", "out of range"),
    ("12 nan 0 0\n", "not all finite"),
])
def test_bad_target_rows(mh_dirs, text, problem):
    data, fh, _ = mh_dirs
    bad = fh / "01 Upper Face AUs" / "L1.target"
    bad.write_text(HEADER + text)
    with pytest.raises(InputError, match=problem) as e:
        load_makehuman(data, fh, cache=False)
    assert e.value.source == str(bad)
    _one_line(e)


@pytest.mark.parametrize("edit,problem", [
    (lambda s: s.replace("g body", "g torso"), "no 'body' group"),
    (lambda s: s.replace("\nf 1 2 ", "\nf 1 999999 ", 1), "refers to vertex"),
    (lambda s: s.replace("\nv ", "\nv nan ", 1), "not all finite"),
    (lambda s: s.replace("\nf 1 2 ", "\nf 1 a ", 1), "bad face line"),
    (lambda s: "\n".join(ln for ln in s.split("\n") if not ln.startswith("v ")), "no 'v x y z'"),
])
def test_bad_base_obj(mh_dirs, edit, problem):
    data, fh, _ = mh_dirs
    obj = data / "3dobjs" / "base.obj"
    obj.write_text(edit(obj.read_text()))
    with pytest.raises(InputError, match=problem) as e:
        load_makehuman(data, fh, cache=False)
    assert e.value.source == str(obj)
    _one_line(e)


_REAL_MH = os.environ.get("AFFECTVLM_MAKEHUMAN", "")
_REAL_FH = os.environ.get("AFFECTVLM_FACSHUMAN", "")


@pytest.mark.skipif(not (_REAL_MH and Path(_REAL_MH).is_dir() and _REAL_FH and Path(_REAL_FH).is_dir()),
                    reason="set AFFECTVLM_MAKEHUMAN (makehuman/data) and AFFECTVLM_FACSHUMAN to the real folders")
def test_real_makehuman_facshuman():
    m = load_makehuman(_REAL_MH, _REAL_FH)
    v = m.neutral
    assert 3000 < m.n_vertices < 8000 and len(m.faces) > 5000
    assert 160 < np.ptp(v[:, 0]) < 200 and 230 < np.ptp(v[:, 1]) < 320  # mm: ear to ear, neck to crown
    tip, top = v[v[:, 2].argmax()], v[v[:, 1].argmax()]
    assert abs(tip[0]) < 2 and -40 < tip[1] < 20  # nose tip: front-most, on the midline, mid-face
    assert abs(top[0]) < 5 and top[2] < tip[2] - 60  # crown: highest, behind the face
    assert np.ptp(v[m.face_mask][:, 0]) < np.ptp(v[:, 0])  # the crop is narrower than the ears
    for au in ("AU1", "AU2", "AU4", "AU6", "AU12", "AU15", "AU17", "AU20", "AU26"):
        assert au in m.action_units
    assert {"AU12L", "AU12R"} <= set(m.au_targets)
    assert np.linalg.norm(m.au_targets["AU12L"], axis=1).max() > 3  # mm at full intensity
    assert {"happiness", "sadness", "surprise", "fear", "disgust", "anger"} <= set(m.meta["emotion_targets"])
    assert len(m.identities) >= 20
    rms = np.sqrt((m.identities.astype(np.float64) ** 2).sum(2).mean(1))
    assert 1 < rms[0] < 10


def test_makehuman_units_replace_the_aus_they_have(mh_dirs):
    from affectvlm.synth.makehuman import UNIT_AUS, makehuman_units_model

    data, fh, facts = mh_dirs
    base = load_makehuman(data, fh)
    units = data / "targets" / "expression" / "units" / "caucasian"
    left, right = facts["left"], facts["right"]
    for au, files in UNIT_AUS.items():  # every unit moves two vertices; the corner puller 0.05 dm up and out
        for f in files:
            for side, ids in (("left", left), ("right", right)):
                rows = {int(i): (0.0, 0.01, 0.0) for i in ids[10:12]}
                if f == "mouth-corner-puller":
                    rows = {int(left[5]): (0.01, 0.05, 0.0), int(right[5]): (-0.01, 0.05, 0.0)}
                _write_target(units / (f.format(side=side) + ".target"), rows)
    m = makehuman_units_model(base, data, "caucasian")
    assert m.name == "makehuman-units" and m.neutral is base.neutral and m.identities is base.identities
    assert m.meta["emotion_targets"] == {} and m.meta["model_ids"] is base.meta["model_ids"]
    # AU12 is now the unit's one bilateral target, not FACSHuman's sided pair; AU17 (also a unit) replaced too
    assert "AU12" in m.au_targets and "AU12L" not in m.au_targets and {"AU1L", "AU1R"} <= set(m.au_targets)
    assert np.isclose(m.au_targets["AU12"][:, 1].max(), 5.0, atol=1e-4)  # 0.05 dm -> 5 mm
    assert not np.allclose(m.au_targets["AU17"], base.au_targets["AU17"])
    moved = set(m.meta["model_ids"][np.abs(m.au_targets["AU1L"]).sum(1) > 0].tolist())
    assert moved == set(left[10:12].tolist())  # "left" files are the subject's left (L)
    with pytest.raises(InputError, match="unit set"):
        makehuman_units_model(base, data, "martian")
    (units / "mouth-open.target").unlink()
    with pytest.raises(InputError, match="mouth-open"):
        makehuman_units_model(base, data, "caucasian")


def test_faceunits_are_arkit_shapes_turned_into_aus(mh_dirs, tmp_path):
    from affectvlm.synth.makehuman import makehuman_faceunits_model

    data, fh, facts = mh_dirs
    base = load_makehuman(data, fh)
    left, right = facts["left"], facts["right"]
    pack = tmp_path / "faceunits01" / "targets" / "faceunits"  # the pack's own layout; its folder is named
    _write_target(pack / "mouthSmileLeft.target", {int(left[5]): (0.01, 0.05, 0.0)})
    _write_target(pack / "mouthSmileRight.target", {int(right[5]): (-0.01, 0.05, 0.0)})
    _write_target(pack / "jawOpen.target", {int(i): (0.0, -0.2, 0.0) for i in left[:3]})
    _write_target(pack / "eyeLookInLeft.target", {int(left[0]): (0.01, 0.0, 0.0)})  # no AU uses it
    _write_target(pack / "jawLeft.target", {int(left[1]): (0.01, 0.0, 0.0)})  # unsided in ARKit: not jaw_L
    _write_target(pack / "mouthShrugLower.target", {})  # moves nothing on the head: FACSHuman's AU17 stays
    _write_target(pack / "notes.target", {int(left[0]): (0.01, 0.0, 0.0)})  # not an ARKit name: ignored
    m = makehuman_faceunits_model(base, data, tmp_path / "faceunits01")
    assert m.name == "makehuman-faceunits" and m.neutral is base.neutral and m.identities is base.identities
    assert m.meta["arkit_shapes"] == ["eyeLookIn_L", "jawLeft", "jawOpen", "mouthShrugLower", "mouthSmile_L",
                                      "mouthSmile_R"]
    assert m.meta["emotion_targets"] == {}
    assert np.array_equal(m.au_targets["AU17"], base.au_targets["AU17"]) and "AU17L" not in m.au_targets
    ids = m.meta["model_ids"]
    # mouthSmileLeft is the subject's left: AU12L through the packaged book's ARKit map, in millimetres
    assert set(ids[np.abs(m.au_targets["AU12L"]).sum(1) > 0].tolist()) == {int(left[5])}
    assert set(ids[np.abs(m.au_targets["AU12R"]).sum(1) > 0].tolist()) == {int(right[5])}
    assert np.isclose(m.au_targets["AU12L"][:, 1].max(), 5.0, atol=1e-4)
    # jawOpen (unsided) is AU26, half on each side; AU27 is made from it too
    jaw = m.au_targets["AU26L"] + m.au_targets["AU26R"]
    assert np.isclose(jaw[:, 1].min(), -20.0, atol=1e-3) and "AU27L" in m.au_targets
    # AUs the shapes cannot make keep FACSHuman's targets; the ones they make replace them
    assert np.array_equal(m.au_targets["AU1L"], base.au_targets["AU1L"])
    assert not np.array_equal(m.au_targets["AU12L"], base.au_targets["AU12L"])
    with pytest.raises(InputError, match="not a folder"):
        makehuman_faceunits_model(base, data, tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no ARKit-named .target files"):
        makehuman_faceunits_model(base, data, tmp_path / "empty")
    other = tmp_path / "other"
    _write_target(other / "eyeLookInLeft.target", {int(left[0]): (0.01, 0.0, 0.0)})
    with pytest.raises(InputError, match="ARKit blendshape name"):
        makehuman_faceunits_model(base, data, other)


def test_synth_cli_passes_faceunits_through(mh_dirs, tmp_path, capsys):
    from affectvlm.synth.cli import main
    from affectvlm.synth.facemodel import load_face_models

    data, fh, facts = mh_dirs
    pack = tmp_path / "pack"
    _write_target(pack / "mouthSmileLeft.target", {int(facts["left"][5]): (0.01, 0.05, 0.0)})
    rc = main(["--layout", "corpus", "--facekit", "/nonexistent-facekit", "--faceunits", str(pack),
               "--out", str(tmp_path / "never")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--faceunits needs --makehuman" in err[0]
    assert set(load_face_models(None, data, fh, faceunits=pack)) == {"makehuman-facshuman", "makehuman-faceunits"}


@pytest.mark.skipif(not (_REAL_MH and Path(_REAL_MH).is_dir() and _REAL_FH and Path(_REAL_FH).is_dir()),
                    reason="set AFFECTVLM_MAKEHUMAN (makehuman/data) and AFFECTVLM_FACSHUMAN to the real folders")
def test_real_makehuman_units_resemble_the_aus_they_stand_for():
    from affectvlm.synth.makehuman import UNIT_AUS, makehuman_units_model

    m = load_makehuman(_REAL_MH, _REAL_FH)
    u = makehuman_units_model(m, _REAL_MH, "caucasian")

    def both(model, au):  # the unit's whole motion, one target or the two sides summed
        t = model.au_targets
        return t[au] if au in t else t[au + "L"] + t[au + "R"]

    for au in UNIT_AUS:
        if au + "L" not in m.au_targets and au not in m.au_targets:
            continue  # FACSHuman has no target for it (AU22)
        a, b = both(u, au).ravel(), both(m, au).ravel()
        cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        assert cos > 0.35, (au, cos)
    assert np.array_equal(u.au_targets["AU6L"], m.au_targets["AU6L"])  # no unit: FACSHuman's kept
