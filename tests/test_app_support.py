"""Streamlit-free app helpers: settings, workspace paths, uploads, preview, figures."""
from __future__ import annotations

import os

import numpy as np
import pytest

from affectvlm.app import batch, figures, preview as P, runview, settings as S, sidebar, uploads
from affectvlm.errors import ConfigError, InputError
from affectvlm.geometry import decimate, texture_vertex_colors
from affectvlm.limits import default_limits
from affectvlm.results import FaceFrame, whole_input_row
from affectvlm.runfolder import MetricRecord
from meshgen import face_like_mesh


def test_settings_from_env(tmp_path):
    s = S.load_settings({"AFFECTVLM_WORKSPACE_ROOTS": f"ws1{os.pathsep}{tmp_path / 'ws2'}",
                         "AFFECTVLM_DEFAULT_MODEL": "AffectVLM-Test", "AFFECTVLM_PREVIEW_FACES": "5000"}, cwd=tmp_path)
    assert s.workspace_roots == ((tmp_path / "ws1").resolve(), (tmp_path / "ws2").resolve())
    assert s.default_model == "AffectVLM-Test" and s.preview_max_faces == 5000
    assert s.jobs_db == s.workspace / ".affectvlm" / "jobs.sqlite3"
    with pytest.raises(ConfigError, match="AFFECTVLM_PREVIEW_FACES"):
        S.load_settings({"AFFECTVLM_PREVIEW_FACES": "lots"}, cwd=tmp_path)


def test_resolve_in_roots_rejects_escapes(tmp_path):
    root = tmp_path / "ws"
    (root / "data").mkdir(parents=True)
    outside = tmp_path / "secret"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    assert S.resolve_in_roots("data", [root]) == (root / "data").resolve()
    assert S.resolve_in_roots(str(root / "data"), [root], must_exist=True) == (root / "data").resolve()
    for bad in (str(outside), "../secret", "link", "link/x", "data/../../secret"):
        with pytest.raises(ConfigError, match="outside the workspace"):
            S.resolve_in_roots(bad, [root], what="dataset root")
    with pytest.raises(ConfigError, match="does not exist"):
        S.resolve_in_roots("missing", [root], must_exist=True)
    with pytest.raises(ConfigError, match="empty"):
        S.resolve_in_roots("  ", [root])


def test_plan_upload_kinds(tmp_path):
    scan = uploads.plan_upload([("a face.obj", b"v 0 0 0\n"), ("a face.bmp", b"BM")], tmp_path / "1")
    assert scan.kind == "scan" and scan.path.name == "a_face.obj" and (tmp_path / "1" / "a_face.bmp").exists()
    seq = uploads.plan_upload([("001.wrl", b"x"), ("000.wrl", b"y")], tmp_path / "2")
    assert seq.kind == "sequence" and seq.path == tmp_path / "2" and seq.n_meshes == 2
    z = uploads.plan_upload([("seq.zip", batch.zip_bytes([("000.obj", b"v")]))], tmp_path / "3")
    assert z.kind == "sequence" and z.path.name == "seq.zip"
    scans = [("F0001_AN01WH_F3D.wrl", b"x"), ("F0001_AN02WH_F3D.wrl", b"y")]  # as frames: "two files for frame 3"
    with pytest.raises(InputError, match="not frames of one sequence.*Batch page"):
        uploads.plan_upload(scans, tmp_path / "6")
    with pytest.raises(InputError, match="unsupported file type"):
        uploads.plan_upload([("notes.txt", b"hi")], tmp_path / "4")
    with pytest.raises(InputError, match="no mesh"):
        uploads.plan_upload([("t.png", b"x")], tmp_path / "5")
    with pytest.raises(InputError, match="limit"):
        uploads.plan_upload([("big.obj", b"x" * 100)], tmp_path / "6", limits=default_limits().with_(max_file_bytes=10))
    # a hostile name cannot leave the upload folder
    p = uploads.plan_upload([("../../evil.obj", b"v")], tmp_path / "7")
    assert p.path.parent == tmp_path / "7"


def test_a_zip_of_scans_dropped_on_analyse_points_to_the_batch_page(tmp_path):
    """A zip of BU-3DFE scans was read as one sequence: 'two files for frame 3'."""
    scans = batch.zip_bytes([(f"F0001/F0001_AN0{i}WH_F3D.wrl", b"x") for i in range(1, 5)])
    with pytest.raises(InputError, match="^F0001.zip: the zip holds 4 scans that are not frames of one sequence.*"
                                         "Batch page"):
        uploads.receive_upload([("F0001.zip", scans)], root=tmp_path)
    subject = batch.zip_bytes([(f"F001/{e}/{i:03d}.wrl", b"x") for e in ("Angry", "Happy") for i in range(3)])
    with pytest.raises(InputError, match=r"2 sequence\(s\) \(F001/Angry, F001/Happy\): score them on the Batch"):
        uploads.plan_upload([("F001.zip", subject)], tmp_path / "2")
    frames = batch.zip_bytes([(f"Angry/{i:03d}.wrl", b"x") for i in range(3)])  # one sequence: as before
    assert uploads.plan_upload([("F001_Angry.zip", frames)], tmp_path / "3").kind == "sequence"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2", "3"]  # the refused upload left no folder


def test_names_in_one_upload_are_made_unique(tmp_path):
    """``scan 1.obj`` and ``scan_1.obj`` are both ``scan_1.obj`` once safe: their rows could not be told apart."""
    assert uploads.unique_names(["a.obj", "a.obj", "a (2).obj", "b.VRML", "b.VRML", "x", "x"]) == [
        "a.obj", "a (3).obj", "a (2).obj", "b.VRML", "b (2).VRML", "x", "x (2)"]
    up = batch.collect_batch([("scan 1.obj", b"v"), ("scan_1.obj", b"w"),
                              ("a b.zip", batch.zip_bytes([("s.obj", b"v")])),
                              ("a_b.zip", batch.zip_bytes([("s.obj", b"w")]))])
    assert up.names == ["scan_1.obj", "scan_1 (2).obj", "a_b.zip:s.obj", "a_b (2).zip:s.obj"]
    plan = uploads.plan_upload([("tex 1.png", b"a"), ("face.obj", b"v"), ("tex_1.png", b"b")], tmp_path)
    assert plan.kind == "scan" and {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {
        "tex_1.png": b"a", "face.obj": b"v", "tex_1 (2).png": b"b"}
    with pytest.raises(InputError, match="uploaded twice"):  # the very same name twice is still refused
        uploads.plan_upload([("a.obj", b"v"), ("a.obj", b"v")], tmp_path / "2")



def test_texture_vertex_colors_follow_uvs():
    m = face_like_mesh(16, textured=True)
    cols = texture_vertex_colors(m)
    assert cols.shape == (m.n_vertices, 3) and cols.dtype == np.uint8
    # every vertex has one UV here, so its colour is exactly the texel under it (v up, row 0 = top)
    uv = np.zeros((m.n_vertices, 2))
    uv[m.faces.reshape(-1)] = m.face_uv.reshape(-1, 2)
    h, w = m.texture.shape[:2]
    texel = m.texture[np.rint((1 - uv[:, 1]) * (h - 1)).astype(int), np.rint(uv[:, 0] * (w - 1)).astype(int)]
    assert np.array_equal(cols, texel)
    assert len(np.unique(cols, axis=0)) > 20
    plain = face_like_mesh(16, textured=False)
    assert texture_vertex_colors(plain) is None
    plain.vertex_colors = np.full((plain.n_vertices, 3), 7, np.uint8)
    assert (texture_vertex_colors(plain) == 7).all()


def test_decimate_bounds_faces_and_keeps_shape():
    m = face_like_mesh(120, textured=False)
    v, f, c = decimate(m.vertices, m.faces, 3000, np.zeros((m.n_vertices, 3), np.uint8))
    assert 500 < len(f) <= 3000 and f.max() < len(v) and c.shape == (len(v), 3)
    assert np.allclose(v.min(0), m.vertices.min(0), atol=3.0) and np.allclose(v.max(0), m.vertices.max(0), atol=3.0)
    v2, f2, _ = decimate(m.vertices, m.faces, 10**9)
    assert len(f2) == m.n_faces


def test_preview_and_figures():
    m = face_like_mesh(40)
    pv = P.preview(m, max_faces=1000)
    assert len(pv.faces) <= 1000 and pv.colors is not None
    assert abs(float(np.linalg.norm(pv.vertices, axis=1).max()) - 1.0) < 0.3  # canonical unit scale
    fig = P.mesh3d_figure(pv)
    assert fig.data[0].type == "mesh3d" and len(fig.data[0].vertexcolor) == len(pv.vertices)
    # shaded, not a flat silhouette: smooth normals, diffuse light, and a perspective camera (plotly's
    # orthographic WebGL path lights the back side: the face drew as a dark blob in chromium)
    tr, scene = fig.data[0], fig.layout.scene
    assert tr.flatshading is False and tr.lighting.diffuse > tr.lighting.ambient
    assert scene.camera.projection.type == "perspective" and scene.aspectmode == "data"
    assert scene.camera.eye.z > 0 and scene.camera.up.y == 1  # in front of the face (+Z), +Y up
    plain = P.mesh3d_figure(P.preview(face_like_mesh(20, textured=False)))
    assert plain.data[0].vertexcolor is None and plain.data[0].color == P.PREVIEW_COLOR
    bar = figures.probability_figure({"happiness": 0.7, "anger": 0.3})
    assert list(bar.data[0].y) == ["happiness", "anger"] and bar.data[0].marker.color[0] != bar.data[0].marker.color[1]
    rows = [{"frame": i, "happiness": 0.1 * i, "anger": 1 - 0.1 * i} for i in range(5)]
    seq = figures.sequence_figure(rows, ["happiness", "anger"], n_total=10)
    assert len(seq.data) == 2 and list(seq.data[0].x) == [0, 1, 2, 3, 4]
    assert seq.layout.title.text == "5 / 10 frames scored"
    rows[3] = {"frame": 3, "happiness": None, "anger": None, "error": "'[' is never closed"}
    title = figures.sequence_figure(rows, ["happiness", "anger"], n_total=10).layout.title.text
    assert title == "4 / 10 frames scored, 1 failed"  # a frame that failed was counted as scored


def test_metrics_figures_groups():
    recs = [{"kind": "train", "epoch": 0, "step": s, "lr": 1e-3 * s, "loss": 1 / s, "mc": 0.5, "mt": 0.2,
             "alpha": 0.3, "samples_per_s": 50.0, "eta_s": 10.0 - s} for s in range(1, 4)]
    recs.append({"kind": "epoch", "epoch": 0, "step": 3, "loss": 0.4, "val_accuracy": 0.8, "val_macro_f1": 0.7,
                 "val_confusion": [[1, 0], [0, 1]], "cache": {"hits": 3}})
    recs = [MetricRecord.from_json(r) for r in recs]
    figs = figures.metrics_figures(recs)
    assert set(figs) == {"loss", "accuracy", "learning rate", "samples/s"}
    names = {t.name for t in figs["loss"].data}
    assert {"loss", "mc", "mt", "alpha", "epoch loss"} <= names
    assert {t.name for t in figs["accuracy"].data} == {"val_accuracy", "val_macro_f1"}
    assert runview.eta_seconds(recs) == 7.0
    assert runview.eta_seconds([MetricRecord.from_json(r) for r in ({"time": 0, "epoch": 1, "epochs": 5},
                                                                    {"time": 10, "epoch": 2, "epochs": 5})]) == 30.0
    assert runview.fmt_duration(3725) == "1h 02m" and runview.fmt_duration(65) == "1m 05s" and runview.fmt_duration(None) == "–"


def test_parse_sidebar_values():
    assert sidebar.parse_classes("joy, anger\nboredom") == ["joy", "anger", "boredom"]
    with pytest.raises(ConfigError):
        sidebar.parse_classes("joy")
    with pytest.raises(ConfigError, match="duplicated"):
        sidebar.parse_classes("a, b, a")
    assert sidebar.parse_templates("a photo of {}.\n\n a {} face ") == ["a photo of {}.", "a {} face"]
    with pytest.raises(ConfigError, match="placeholder"):
        sidebar.parse_templates("no placeholder")
    assert sidebar.model_spec("default", "", default="X") == "X"
    assert sidebar.model_spec("pretrained", " ViT-B-32:openai ") == "ViT-B-32:openai"
    with pytest.raises(ConfigError):
        sidebar.model_spec("checkpoint", "")


def test_the_sidebars_model_path_is_confined_to_the_workspace_and_the_embedded_model(tmp_path):
    """The Checkpoint field loaded any server path and told by its error whether a file existed."""
    from affectvlm.model.specs import default_model_candidates

    roots = sidebar.model_roots([tmp_path])
    for kind, value in (("checkpoint", "/etc/shadow"), ("checkpoint", "/root/.ssh/id_rsa"),
                        ("checkpoint", "local-dir:/etc"), ("pretrained", "ViT-B-32@/etc/passwd"),
                        ("checkpoint", str(tmp_path / ".." / "elsewhere"))):
        with pytest.raises(ConfigError, match="outside the workspace roots"):
            sidebar.model_spec(kind, value, roots=roots)
    (tmp_path / "ck").mkdir()
    assert sidebar.model_spec("checkpoint", str(tmp_path / "ck"), roots=roots) == str((tmp_path / "ck").resolve())
    embedded = next(p for p in default_model_candidates() if p.is_dir())
    assert sidebar.model_spec("checkpoint", str(embedded), roots=roots) == str(embedded.resolve())
    assert sidebar.model_spec("pretrained", "ViT-B-32:openai", roots=roots) == "ViT-B-32:openai"


def test_list_samples(tmp_path):
    (tmp_path / "a.wrl").write_text("x")
    (tmp_path / "seq").mkdir()
    for i in range(3):
        (tmp_path / "seq" / f"{i:03d}.obj").write_text("v")
    (tmp_path / "notes.txt").write_text("x")
    s = uploads.list_samples(tmp_path)
    assert set(s) == {"scan: a.wrl", "4D sequence: seq (3 frames)"}
    assert uploads.sample_kind(s["4D sequence: seq (3 frames)"]) == "sequence"


def test_orientation_summary_flags_low_confidence():
    from affectvlm.geometry import flag_threshold

    low = FaceFrame.from_meta({"canonical": {"up": "-y", "front": "+z", "detected": ["front", "up"],
                                             "confidence": {"front": 1.0, "up": 0.06}, "low_confidence": True}})
    assert low.low_confidence and P.orientation_warning(low) == P.ORIENTATION_WARNING.format(
        confidence="0.06", threshold=P.decimals(flag_threshold()))
    assert P.orientation_caption(low) == "up -y (guessed, confidence 0.06), front +z (guessed, confidence 1.00)"
    sure = FaceFrame.from_meta({"canonical": {"up": "+y", "front": "+z", "detected": ["front"],
                                              "confidence": {"front": 0.9}, "low_confidence": False}})
    assert P.orientation_warning(sure) is None and "up +y (set)" in P.orientation_caption(sure)
    assert P.orientation_warning(FaceFrame.from_meta({})) is None  # a mesh that was not canonicalised
    # the flag comes from the library: the preview canonicalises like the renderer does
    pv = P.preview(face_like_mesh(24, textured=False), up="+y", front="+z")
    assert P.orientation_warning(FaceFrame.from_meta(pv.meta)) is None


def test_the_orientation_warning_names_the_threshold_the_flag_uses(monkeypatch):
    """'guessed with low confidence' beside 'confidence 0.97' read as a contradiction."""
    import affectvlm.geometry as G
    from affectvlm.faceframe import load_frame_net

    assert G.flag_threshold() == pytest.approx(load_frame_net()[1]["threshold"])  # the flag's own (0.996)

    def frame(conf: float, source: str = "scan") -> FaceFrame:
        f = FaceFrame.from_meta({"canonical": {"up": "+y", "front": "+z", "detected": ["front", "up"],
                                               "confidence": {"front": 1.0, "up": conf}, "low_confidence": True}})
        return type(f)(**{**f.__dict__, "source": source})

    monkeypatch.setattr(G, "flag_threshold", lambda: 0.9959591925144196)
    assert P.orientation_warning(frame(0.97)).startswith(
        "Orientation was guessed with confidence 0.97, under the 0.996 it needs to be sure; ")
    assert "confidence 0.995, under the 0.996" in P.orientation_warning(frame(0.9953))  # not "1.00"
    assert "(guessed, confidence 0.995)" in P.orientation_caption(frame(0.9953))
    tilted = P.orientation_warning(frame(0.998))  # flagged above the threshold: says why, no contradiction
    assert tilted.startswith("Orientation is flagged as unsure although its confidence is 0.998: the scan lies "
                             "tilted") and "under" not in tilted
    assert "frames of this sequence disagree" in P.orientation_warning(frame(0.999, "sequence"))
    monkeypatch.setattr(G, "flag_threshold", lambda: 0.45)  # the cues' threshold, without the network
    assert "confidence 0.449, under the 0.45 " in P.orientation_warning(frame(0.449))


def test_landmarks_follow_the_preview_into_the_canonical_frame():
    """Landmarks recorded in file coordinates land on the same surface points in the preview's frame."""
    from affectvlm.geometry import canonicalise
    from meshgen import face_like_mesh

    m = face_like_mesh(24)
    R = np.array([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]])  # a Z-up, X-front file
    rot = type(m)(vertices=(m.vertices.astype(np.float64) @ R.T).astype(np.float32), faces=m.faces, source="r")
    c = canonicalise(rot, up="+z", front="+x")
    c.meta["canonical"]["landmarks"] = rot.vertices[[3, 50, 100]].tolist()
    got = P.landmarks_canonical(c.meta)
    np.testing.assert_allclose(got, c.vertices[[3, 50, 100]], atol=1e-5)
    assert P.landmarks_canonical({"canonical": {"up": "+y"}}) is None
    fig = P.mesh3d_figure(P.Preview(c.vertices, c.faces, None, dict(c.meta)))
    assert [t.name for t in fig.data] == ["scan", "landmarks"]


def test_preview_note_says_crop_decimation_and_axes():
    scan = face_like_mesh(40, textured=False)
    shown = type(scan)(vertices=scan.vertices, faces=scan.faces[: scan.n_faces // 2], source="s")
    pv = P.preview(shown, max_faces=100, canonical=False)
    frame = FaceFrame.from_meta({"canonical": {"up": "+y", "front": "+z", "detected": ["up"],
                                               "confidence": {"up": 0.5}}})
    note = P.preview_note(pv, scan, shown, frame)
    assert note.startswith(f"{scan.n_vertices:,} vertices, {scan.n_faces:,} faces")
    assert f"(face region: {shown.n_faces:,})" in note and f"(preview decimated to {len(pv.faces):,})" in note
    assert note.endswith("file axes: up +y (guessed, confidence 0.50), front +z (set)")
    plain = P.preview_note(P.preview(scan, max_faces=10**6, canonical=False), scan, scan, None)
    assert plain == f"{scan.n_vertices:,} vertices, {scan.n_faces:,} faces"


def test_batch_hint_is_the_clis_note_for_a_lopsided_table():
    from affectvlm.app.batch import batch_hint
    from affectvlm.prior import HINT_ROWS

    classes = ["neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger"]

    def row(i, label):
        return {"file": f"s/{i}.obj", "frame": "", "label": label, "confidence": 0.9, **{c: 0.1 for c in classes},
                "error": None}

    even = [row(i, classes[i % 7]) for i in range(HINT_ROWS)]
    assert batch_hint(even) is None
    hint = batch_hint([row(i, "happiness") for i in range(HINT_ROWS)])
    assert hint is not None and "happiness 100 %" in hint.text


def test_score_batch_adapts_only_large_varied_sets(monkeypatch):
    import affectvlm.adapt as adapt
    from affectvlm.model import load_model

    model = load_model(None)
    meshes = [face_like_mesh(20, smile=(i % 4) / 3, seed=i, textured=False) for i in range(6)]
    plain, note = batch.score_batch(meshes, model, workers=0)
    assert len(plain) == 6  # six scans: too few, as trained, and the page says so (it said nothing)
    assert note == "Not adapted to this set: scored with the trained statistics: 6 inputs; it needs at least 50"
    assert batch.score_batch(meshes, model, adapt=False, workers=0) == (plain, "")
    monkeypatch.setattr(adapt, "MIN_ROWS", 3)  # six scans stand for a large varied set
    monkeypatch.setattr(adapt, "spread_check", lambda rows, **kw: adapt.SpreadCheck(True, len(rows), "varied"))
    rows, note = batch.score_batch(meshes, model, workers=0)
    assert note.startswith("Adapted to this set") and "statistics of 6 of these inputs (varied)" in note
    assert max(abs(a["happiness"] - b["happiness"]) for a, b in zip(rows, plain)) > 1e-4
    lopsided = adapt.SpreadCheck(False, 6, "83 % of them read happiness: a set of mostly one expression",
                                 on_spread=True)
    monkeypatch.setattr(adapt, "spread_check", lambda rows, **kw: lopsided)
    assert batch.score_batch(meshes, model, workers=0) == (plain, "Not adapted to this set: scored with the trained "
                                                                  "statistics: " + lopsided.reason)


def test_the_epoch_shown_counts_from_one_as_the_trainers_log_does():
    from affectvlm.runfolder import MetricRecord, RunStatus, Status

    assert runview.epoch_text([]) == "–"
    recs = [MetricRecord(kind="train", epoch=0, step=1), MetricRecord(kind="epoch", epoch=0, step=2)]
    assert runview.epoch_text(recs) == "1"  # the log's "epoch 1/24"; records count from 0
    assert runview.epoch_text(recs + [MetricRecord(kind="train", epoch=1, step=3)],
                              RunStatus(Status.RUNNING, epoch=1, epochs=24)) == "2 / 24"


def test_a_model_folder_is_confined_below_its_top_too(tmp_path):
    """A run folder inside the workspace whose best/ links outside was accepted and the outside checkpoint loaded;
    a checkpoint's fusion_weights could name any safetensors file on the server."""
    import json

    from affectvlm.errors import ModelError
    from affectvlm.model import load_model, save_checkpoint

    ws, outside = tmp_path / "ws", tmp_path / "outside"
    ws.mkdir()
    m = load_model("AffectVLM-Test", cache=False, fusion="attention")
    save_checkpoint(m, outside / "ck")
    (ws / "run").mkdir()
    (ws / "run" / "best").symlink_to(outside / "ck", target_is_directory=True)
    roots = sidebar.model_roots([ws])
    with pytest.raises(ConfigError, match="outside the workspace roots"):
        sidebar.model_spec("checkpoint", str(ws / "run"), roots=roots)
    save_checkpoint(m, ws / "ck")
    meta = json.loads((ws / "ck" / "affectvlm.json").read_text())
    assert meta.get("fusion_weights")
    meta["fusion_weights"] = str(outside / "ck" / meta["fusion_weights"])
    (ws / "ck" / "affectvlm.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="fusion_weights must name a file in the checkpoint folder"):
        load_model(str(ws / "ck"), cache=False)


def _obj(seed: int, smile: float = 0.0) -> bytes:
    import trimesh

    m = face_like_mesh(16, smile=smile, seed=seed, textured=False)
    return trimesh.Trimesh(m.vertices, m.faces, process=False).export(file_type="obj").encode()


def test_a_zip_of_sequences_is_read_on_the_batch_page_as_predict_reads_it():
    """A BU-4DFE subject's zip gave separate scans on the Batch page: no pooled sequence rows, no subject mean."""
    from affectvlm.inputs import expand
    from affectvlm.model import load_model
    from affectvlm.render import RenderSettings

    emotions = ("Angry", "Happy", "Sad", "Surprise")
    members = [(f"F001/{e}/{i:03d}.obj", _obj(k, i - 0.5)) for k, e in enumerate(emotions) for i in range(2)]
    data = batch.zip_bytes(members + [("F001/neutral_scan.obj", _obj(9))])
    up = batch.collect_batch([("F001.zip", data), ("x.obj", _obj(5))])
    assert up.names == ["F001.zip", "x.obj"] and (up.scans, up.sequences) == (2, 4)
    assert up.found() == "2 scan(s) and 4 sequence(s) found"
    limits = default_limits()
    kinds = [(it.source, it.kind) for it in expand(up.inputs, limits=limits, frames=None, every=1)]
    assert kinds == [(f"F001.zip:F001/{e}", "sequence") for e in emotions] + [
        ("F001.zip:F001/neutral_scan.obj", "scan"), ("x.obj", "scan")]
    # the zips of one upload still share the unpacked budget
    one = sum(len(b) for _, b in members) + len(_obj(9))
    with pytest.raises(InputError, match="^again.zip: .*unpack"):
        batch.collect_batch([("F001.zip", data), ("again.zip", data)],
                            limits=limits.with_(max_unpacked_bytes=int(1.5 * one)))
    model = load_model("AffectVLM-Test", cache=False)
    model.render = RenderSettings(size=64)
    rows, note = batch.score_batch(up.inputs, model, workers=0)
    assert note.startswith("Not adapted to this set: ")
    units = [r for r in rows if whole_input_row(r)]  # what the page's progress counts: not each frame
    assert len(units) == up.units == 6 and len(rows) == 6 + 8
    assert [r["frame"] for r in rows if r["file"] == "F001.zip:F001/Sad"] == [0, 1, "sequence"]
    out, notes = batch.match_batch(rows, "", neutral="auto", subject_mean="auto")
    assert [n.text for n in notes if n.text.startswith("Subject mean: scored 4 inputs")], [n.text for n in notes]
    frames = [(a, b) for a, b in zip(rows, out) if not whole_input_row(a)]
    assert len(frames) == 8 and all(a == b for a, b in frames)  # frame rows are shown as scored
    flagged = [{**r, "orientation_flagged": True, "orientation_source": "scan"} for r in out]
    assert batch.frame_notes(flagged, most=2)[0].startswith("6 scan(s) have an uncertain face frame")


def test_the_batch_table_shows_an_empty_cell_where_a_row_has_no_timestamp():
    rows = [{"file": "a.obj", "frame": "", "timestamp": None, "label": "joy"},
            {"file": "s.zip", "frame": 0, "timestamp": 0.0, "label": "joy"},
            {"file": "s.zip", "frame": "sequence", "timestamp": None, "label": "joy"}]
    shown = batch.shown_rows(rows)
    assert [r["timestamp"] for r in shown] == ["", 0.0, ""] and rows[0]["timestamp"] is None  # downloads keep None
    assert [{k: v for k, v in r.items() if k != "timestamp"} for r in shown] == [
        {k: v for k, v in r.items() if k != "timestamp"} for r in rows]


def test_the_batch_page_says_which_scans_took_the_sets_frame_and_which_are_flagged():
    from affectvlm.app.batch import frame_notes

    def row(name, flagged, source="scan", frame=""):
        return {"file": name, "frame": frame, "orientation_flagged": flagged, "orientation_source": source,
                "orientation_up": "+y", "orientation_front": "+z"}

    rows = [row("a.wrl", False), row("b.wrl", True, "set"), row("c.wrl", True), row("d.wrl", True),
            row("s", True, "sequence", "0"), row("s", True, "sequence", "sequence"), row("e.wrl", None)]
    took, rest = frame_notes(rows, most=1)
    assert took.startswith("1 scan(s) took the face frame most of this upload reads (up +y, front +z)")
    assert "b.wrl" in took
    assert rest.startswith("3 scan(s) have an uncertain face frame") and "c.wrl and 2 more" in rest
    assert frame_notes([row("a.wrl", False)]) == []
