"""AppTest of Home, Analyse and Batch: uploads of each kind, a sample, model and class changes, bad files.

The model is the random-init tiny open_clip config ``AffectVLM-Test`` (offline, real architecture):
probabilities are meaningless, so tests check structure (classes, rows, sums) rather than labels.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from affectvlm.app.batch import zip_bytes  # noqa: E402
from affectvlm.app.preview import orientation_warning, preview  # noqa: E402
from affectvlm.app.uploads import list_samples  # noqa: E402
from affectvlm.prompts import DEFAULT_CLASSES  # noqa: E402
from affectvlm.results import FaceFrame  # noqa: E402
from meshgen import face_like_mesh  # noqa: E402


REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "app.py")
MODEL = "AffectVLM-Test"


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("AFFECTVLM_WORKSPACE_ROOTS", str(tmp_path / "ws"))
    monkeypatch.setenv("AFFECTVLM_DEFAULT_MODEL", MODEL)
    monkeypatch.setenv("AFFECTVLM_PREVIEW_FACES", "3000")
    monkeypatch.chdir(REPO)
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()


def _trimesh_bytes(mesh, ext: str) -> bytes:
    import trimesh

    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    out = tm.export(file_type=ext)
    return out.encode() if isinstance(out, str) else out


def _vrml_bytes(mesh, tmp: Path, name: str = "F0001_HA04WH_F3D.wrl") -> bytes:
    from affectvlm.io.vrml import write_vrml

    p = tmp / name
    write_vrml(p, mesh)
    return p.read_bytes()


@pytest.fixture(scope="module")
def face():
    return face_like_mesh(40, smile=1.0, textured=False)


def analyse(at: AppTest | None = None) -> AppTest:
    at = at or AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/1_Analyse.py").run()
    assert not at.exception, at.exception
    return at


def upload(at: AppTest, files: list[tuple[str, bytes]], key: str = "an_upload") -> AppTest:
    at.file_uploader(key=key).set_value([(n, b, "application/octet-stream") for n, b in files]).run()
    assert not at.exception, at.exception
    return at


def top(at: AppTest) -> tuple[str, str]:
    m = [m for m in at.metric if m.label in ("Top emotion", "Sequence emotion")]
    assert m, ([e.value for e in at.error], [x.label for x in at.metric])
    return m[0].value, m[0].delta


def test_home_shows_model_and_sample_button():
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.title[0].value == "AffectVLM"
    assert any(MODEL in m.value for m in at.metric)
    assert any("neutral" in md.value and "anger" in md.value for md in at.markdown)


@pytest.mark.parametrize("ext", ["obj", "ply", "stl", "off", "glb", "wrl"])
def test_upload_each_scan_format(ext, face, tmp_path):
    data = _vrml_bytes(face, tmp_path) if ext == "wrl" else _trimesh_bytes(face, ext)
    at = upload(analyse(), [(f"face.{ext}", data)])
    label, delta = top(at)
    assert label in DEFAULT_CLASSES
    assert delta.endswith("confidence")
    charts = at.get("plotly_chart")
    specs = [json.loads(c.proto.spec) for c in charts]
    kinds = {d["type"] for s in specs for d in s["data"]}
    assert {"mesh3d", "bar"} <= kinds
    bar = next(d for s in specs for d in s["data"] if d["type"] == "bar")
    assert abs(sum(bar["x"]) - 1.0) < 1e-3 and len(bar["y"]) == 7
    assert len(at.get("image")) == 3  # the rendered views (default yaw 0, -30, 30)


def test_bad_file_shows_one_error_and_app_keeps_working(face):
    at = upload(analyse(), [("broken.obj", b"v 1 2\nf 9 9 9\nthis is not a mesh")])
    errs = [e.value for e in at.error]
    assert len(errs) == 1 and "broken.obj" in errs[0]
    upload(at, [("empty.stl", b"")])
    assert len(at.error) == 1 and "empty.stl" in at.error[0].value
    upload(at, [("frames.zip", zip_bytes([("../../evil/000.obj", b"v 0 0 0")]))])  # zip-slip name
    assert len(at.error) == 1 and "frames.zip" in at.error[0].value
    upload(at, [("ok.ply", _trimesh_bytes(face, "ply"))])
    assert not at.error and top(at)[0]


def _bar(at: AppTest) -> dict[str, float]:
    """The page's one probability bar chart as {class: probability}."""
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    bar = next(d for s in specs for d in s["data"] if d["type"] == "bar")
    return dict(zip(bar["y"], map(float, bar["x"])))


def test_sequence_zip_and_frame_files(face, tmp_path):
    frames = []
    for i in range(4):
        m = face_like_mesh(24, smile=i / 3, textured=False, seed=i)
        frames.append((f"{i:03d}.obj", _trimesh_bytes(m, "obj")))
    at = upload(analyse(), [("seq.zip", zip_bytes(frames))])
    label, _ = top(at)
    seq_chart = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    lines = [s for s in seq_chart if s["data"] and s["data"][0]["type"] == "scatter"]
    assert lines and len(lines[0]["data"]) == 7 and list(lines[0]["data"][0]["x"]) == [0, 1, 2, 3]
    slider = at.select_slider(key="an_frame")
    slider.set_value(3).run()
    assert not at.exception and any("Frame 3" in h.value for h in at.subheader)
    # the sequence's bar re-pools the scored frames: contrast leaves neutral out, peak keeps it
    assert at.radio(key="an_pooling").value == "contrast"
    assert _bar(at)["neutral"] == 0.0
    at.radio(key="an_pooling").set_value("peak").run()
    assert not at.exception and _bar(at)["neutral"] > 0.0
    # the same frames as separate files give the same result
    at2 = upload(analyse(), frames[::-1])
    assert top(at2)[0] == label
    # a truncated frame is its own "not scored", the others are scored (it used to refuse the whole upload)
    frames[2] = (frames[2][0], frames[2][1][: len(frames[2][1]) // 3].rsplit(b"\nv ", 1)[0] + b"\nf 1 2 99999\n")
    at3 = upload(analyse(), [("seq.zip", zip_bytes(frames))])
    assert top(at3)[0] and not at3.exception
    at3.select_slider(key="an_frame").set_value(2).run()
    assert not at3.exception
    assert [e.value for e in at3.error if e.value.startswith("Not scored: frame 2: ")], [e.value for e in at3.error]
    assert not any("affectvlm-upload-" in e.value for e in at3.error)  # the user's names, not the server's folder


def _view_urls(at: AppTest) -> list[str]:
    """The rendered views' media URLs (they name a hash of the image bytes)."""
    return [img.url for el in at.get("image") for img in el.proto.imgs]


def test_sample_from_home_and_orientation_override():
    samples = list_samples()
    if not samples:
        pytest.skip("no bundled samples yet")
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.button(key="sample_btn_0").click().run()
    at = analyse(at) if not at.metric or "Top emotion" not in [m.label for m in at.metric] else at
    assert top(at)[0]
    path = samples[at.selectbox(key="an_sample").value]
    from affectvlm.io import load_mesh

    guess = FaceFrame.from_meta(preview(load_mesh(path), max_faces=3000).meta)
    warned = [w.value for w in at.warning if w.value.startswith("Orientation ")]
    assert len(warned) == (1 if guess.low_confidence else 0), (warned, orientation_warning(guess))
    before = _view_urls(at)
    assert len(before) == 3
    # turn the file upside down relative to the guess: the views must change, and nothing is guessed
    flipped = {"+y": "-y", "-y": "+y"}.get(guess.up, "+y")
    at.radio(key="an_up").set_value(flipped).run()
    at.radio(key="an_front").set_value(guess.front).run()
    assert not at.exception and not [w for w in at.warning if "Orientation was guessed" in w.value]
    after = _view_urls(at)
    assert len(after) == 3 and set(after).isdisjoint(before)
    assert f"up {flipped} (set)" in " ".join(c.value for c in at.caption)


def test_model_and_class_changes(face):
    """Sidebar choices (set on Home: AppTest runs a switched-to page without the entrypoint's sidebar)."""
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.checkbox(key="custom_classes").check().run()
    at.text_area(key="classes_text").input("only-one").run()
    assert any("at least two" in e.value for e in at.sidebar.error)
    at.text_area(key="classes_text").input("joy, boredom, rage").run()
    at.text_area(key="templates_text").input("a 3D scan of a {} face\na {} person").run()
    assert not at.sidebar.error
    at = upload(analyse(at), [("face.obj", _trimesh_bytes(face, "obj"))])
    label, _ = top(at)
    assert label in ("joy", "boredom", "rage")
    bar = next(d for c in at.get("plotly_chart") for d in json.loads(c.proto.spec)["data"] if d["type"] == "bar")
    assert list(bar["y"]) == ["joy", "boredom", "rage"]

    # a pretrained tag that cannot be downloaded offline: one clear message, the app keeps running
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.radio(key="model_kind").set_value("pretrained").run()
    at.text_input(key="model_pretrained").input("ViT-B-32:openai").run()
    assert len(at.error) == 1 and not at.exception
    assert "ViT-B-32" in at.error[0].value
    at.radio(key="model_kind").set_value("checkpoint").run()
    at.text_input(key="model_checkpoint").input("/nonexistent/ckpt").run()
    assert len(at.error) == 1 and "/nonexistent/ckpt" in at.error[0].value
    at.radio(key="model_kind").set_value("default").run()
    assert not at.error and any(MODEL in m.value for m in at.metric)


def test_batch_zip_table_and_downloads(face, tmp_path):
    members = [(f"scans/s{i}.obj", _trimesh_bytes(face_like_mesh(20, seed=i, textured=False), "obj")) for i in range(3)]
    members.append(("scans/bad.ply", b"ply\nformat ascii 1.0\nelement vertex 99\nend_header\n1 2 3\n"))
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/2_Batch.py").run()
    upload(at, [("many.zip", zip_bytes(members))], key="batch_upload")
    at.button(key="batch_run").click().run()
    assert not at.exception, at.exception
    df = at.dataframe[0].value
    assert len(df) == 4 and {"file", "frame", "label", "confidence", "error"} <= set(df.columns)
    assert (df["error"].fillna("") != "").sum() == 1
    assert len(at.error) == 1 and "bad.ply" in at.error[0].value
    assert "3 scored, 1 failed" in at.warning[0].value  # not a green success when files failed
    assert len(at.get("download_button")) == 2
    at.text_input(key="batch_prior").input("uniform").run()  # 3 scans: too few to match, shown as scored
    assert not at.exception and [w.value for w in at.warning if "at least 20" in w.value], at.warning
    assert at.dataframe[0].value["anger"].equals(df["anger"])
    at.text_input(key="batch_prior").input("joy=2").run()
    assert len(at.error) == 2 and any("--prior" in e.value for e in at.error) and not at.exception


def test_batch_scores_a_zip_of_sequences_as_sequences(tmp_path):
    """A BU-4DFE subject's zip was read as separate scans; the caption counted files, the table showed None."""
    members = [(f"F001/{e}/{i:03d}.obj", _trimesh_bytes(face_like_mesh(20, smile=i, seed=k, textured=False), "obj"))
               for k, e in enumerate(("Angry", "Happy")) for i in range(2)]
    members.append(("F001/scan.obj", _trimesh_bytes(face_like_mesh(20, seed=5, textured=False), "obj")))
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.switch_page("pages/2_Batch.py").run()
    upload(at, [("F001.zip", zip_bytes(members))], key="batch_upload")
    assert [c.value for c in at.caption if "found" in c.value] == ["1 scan(s) and 2 sequence(s) found."]
    at.button(key="batch_run").click().run()
    assert not at.exception, at.exception
    df = at.dataframe[0].value
    assert list(df["frame"].astype(str)) == ["0", "1", "sequence"] * 2 + [""]
    assert "3 scored, 0 failed" in at.success[0].value
    assert list(df["timestamp"].astype(str))[-1] == "" and "None" not in set(df["timestamp"].astype(str))
    assert [m.value for m in at.info if m.value.startswith("Not adapted to this set: ")], [m.value for m in at.info]


def test_analyse_refuses_a_zip_of_scans_with_a_pointer_to_batch(tmp_path):
    """A zip of BU-3DFE scans was read as one sequence: 'two files for frame 3'."""
    at = analyse()
    upload(at, [("F0001.zip", zip_bytes([(f"F0001_AN0{i}WH_F3D.wrl", b"x") for i in range(1, 5)]))])
    assert [e.value for e in at.error] == ["F0001.zip: the zip holds 4 scans that are not frames of one sequence "
                                           "(their names differ by more than a frame number): score them on the "
                                           "Batch page, or drop one scan or a zip of one sequence's frames here"]


def test_batch_scores_a_new_file_of_the_same_name_and_size_again():
    """Batch used to key its kept table on names and sizes: a re-export of scan.stl (same size, other shape)
    showed the first file's scores, even after Score all."""
    a, b = (_trimesh_bytes(face_like_mesh(20, smile=s, seed=7, textured=False), "stl") for s in (-1.5, 1.5))
    assert len(a) == len(b) and a != b
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/2_Batch.py").run()
    got = []
    for data in (a, b):
        upload(at, [("scan.stl", data)], key="batch_upload")
        at.button(key="batch_run").click().run()
        assert not at.exception, at.exception
        got.append(at.dataframe[0].value[list(DEFAULT_CLASSES)].to_numpy()[0])
    assert not np.allclose(got[0], got[1], atol=1e-6)


def test_batch_scores_scans_against_their_folders_neutral_scan(tmp_path):
    face = face_like_mesh(20, seed=0, textured=False)
    members = [(f"F0001/F0001_{code}_F3D.obj", _trimesh_bytes(face, "obj")) for code in ("NE00WH", "HA04WH", "SA04WH")]
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.switch_page("pages/2_Batch.py").run()
    upload(at, [("bu3dfe.zip", zip_bytes(members))], key="batch_upload")
    at.button(key="batch_run").click().run()
    assert not at.exception and any("Neutral reference: scored 2 scans" in m.value for m in at.info), at.info
    df = at.dataframe[0].value.set_index("file")
    ne = next(f for f in df.index if "NE00" in f)
    assert (df.drop(index=ne)["neutral"] == 0).all() and df.loc[ne, "neutral"] > 0
    at.checkbox(key="batch_neutral").uncheck().run()  # each scan alone: the three identical faces score alike
    df = at.dataframe[0].value
    assert not any("Neutral reference" in m.value for m in at.info) and df["neutral"].nunique() == 1


def test_batch_scores_each_subject_relative_to_its_mean(tmp_path):
    codes = ("NE00WH", "HA04WH", "SA04WH", "SU04WH", "FE04WH", "DI04WH", "AN04WH")
    members = [(f"F0001/F0001_{code}_F3D.obj", _trimesh_bytes(face_like_mesh(20, seed=i, textured=False), "obj"))
               for i, code in enumerate(codes)]
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.switch_page("pages/2_Batch.py").run()
    assert at.checkbox(key="batch_subject_mean").value is True
    upload(at, [("bu3dfe.zip", zip_bytes(members))], key="batch_upload")
    at.button(key="batch_run").click().run()
    assert not at.exception and any("Subject mean: scored 7 inputs" in m.value for m in at.info), at.info
    assert not any("Neutral reference" in m.value for m in at.info)  # the subject's mean took its place
    centred = at.dataframe[0].value.set_index("file")
    at.checkbox(key="batch_subject_mean").uncheck().run()
    assert any("Neutral reference: scored 6 scans" in m.value for m in at.info), at.info
    at.checkbox(key="batch_neutral").uncheck().run()
    alone = at.dataframe[0].value.set_index("file")
    classes = ["neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger"]
    L = np.log(alone[classes].to_numpy(dtype=float))
    from affectvlm.model import load_model
    from affectvlm.subjects import training_logits

    added = training_logits(load_model("default"))  # the page's model; None where it stores no training mean
    z = L - L.mean(0) + (0.0 if added is None else added)
    want = np.exp(z - z.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    assert np.allclose(centred.loc[alone.index, classes].to_numpy(dtype=float), want, atol=1e-5)


def test_batch_starts_without_the_neutral_reference_for_a_model_that_chose_so(tmp_path, monkeypatch):
    from affectvlm.model import load_model, save_checkpoint
    from affectvlm.model.checkpoint import update_meta

    ck = save_checkpoint(load_model("AffectVLM-Test", cache=False), tmp_path / "ck", extra={"trained": True})
    update_meta(ck, neutral_reference=False)  # as the trainer writes it when its val subjects read better alone
    monkeypatch.setenv("AFFECTVLM_WORKSPACE_ROOTS", str(tmp_path))
    face = face_like_mesh(20, seed=0, textured=False)
    members = [(f"F0001/F0001_{code}_F3D.obj", _trimesh_bytes(face, "obj")) for code in ("NE00WH", "HA04WH")]
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.radio(key="model_kind").set_value("checkpoint").run()
    at.text_input(key="model_checkpoint").input(str(ck)).run()
    at.switch_page("pages/2_Batch.py").run()
    assert not at.exception and at.checkbox(key="batch_neutral").value is False
    upload(at, [("bu3dfe.zip", zip_bytes(members))], key="batch_upload")
    at.button(key="batch_run").click().run()
    assert not at.exception and not any("Neutral reference" in m.value for m in at.info)
    at.checkbox(key="batch_neutral").check().run()  # the user can still ask for it
    assert any("Neutral reference: scored 1 scans" in m.value for m in at.info), at.info


def test_batch_prior_matches_the_set(tmp_path):
    one = _trimesh_bytes(face_like_mesh(20, seed=0, textured=False), "obj")
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.switch_page("pages/2_Batch.py").run()
    upload(at, [("same.zip", zip_bytes([(f"s/{c}.obj", one) for c in "abcdefghijklmnopqrst"]))], key="batch_upload")
    at.button(key="batch_run").click().run()
    scored = at.dataframe[0].value
    assert len(scored) == 20 and scored["anger"].nunique() == 1 and abs(scored["anger"].iloc[0] - 1 / 7) > 1e-3
    at.text_input(key="batch_prior").input("uniform").run()  # one face twenty times: each row becomes uniform
    assert not at.exception and any("matched over 20 scans" in m.value for m in at.info)
    assert (abs(at.dataframe[0].value["anger"] - 1 / 7) < 1e-3).all()
    at.checkbox(key="batch_prior_folder").check().run()  # all twenty in one folder of the zip
    assert not at.exception and any("20 scans in 1 folder" in m.value for m in at.info)


def test_batch_adapts_to_the_set_and_says_so(monkeypatch):
    import affectvlm.adapt as adapt

    # three scans stand for a large varied set here: the guard's thresholds are lowered for the test
    monkeypatch.setenv("AFFECTVLM_DEFAULT_MODEL", "default")  # the embedded model has batch norm
    monkeypatch.setattr(adapt, "MIN_ROWS", 3)
    monkeypatch.setattr(adapt, "spread_check", lambda rows, **kw: adapt.SpreadCheck(True, len(rows), "varied"))
    members = [(f"s/s{c}.obj", _trimesh_bytes(face_like_mesh(20, smile=i / 2, seed=i, textured=False), "obj"))
               for i, c in enumerate("abc")]  # named as scans: s0, s1, s2 would be frames of a sequence
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.switch_page("pages/2_Batch.py").run()
    upload(at, [("set.zip", zip_bytes(members))], key="batch_upload")
    at.button(key="batch_run").click().run()
    assert not at.exception and any("Adapted to this set" in m.value for m in at.info), at.info
    adapted = at.dataframe[0].value
    at.checkbox(key="batch_adapt").uncheck().run()
    at.button(key="batch_run").click().run()
    assert not at.exception and not any("Adapted" in m.value for m in at.info)
    assert (abs(at.dataframe[0].value["happiness"] - adapted["happiness"]) > 1e-5).any()


def test_a_model_with_score_pitches_shows_every_view_it_scored(face, tmp_path, monkeypatch):
    """The embedded default scores its three views at three pitches: the page shows all nine, captioned."""
    from affectvlm.model import load_model, save_checkpoint
    from affectvlm.render import RenderSettings

    m = load_model(MODEL, cache=False)
    m.render = RenderSettings(size=64, score_pitches=(-10.0, 10.0))
    save_checkpoint(m, tmp_path / "ck")
    monkeypatch.setenv("AFFECTVLM_DEFAULT_MODEL", str(tmp_path / "ck"))
    at = upload(analyse(), [("face.obj", _trimesh_bytes(face, "obj"))])
    label, _ = top(at)
    assert label in DEFAULT_CLASSES
    captions = [c for el in at.get("image") for img in el.proto.imgs for c in [img.caption]]
    assert len(captions) == 9
    assert sum("pitch 10°" in c for c in captions) == 3 and sum("pitch -10°" in c for c in captions) == 3
