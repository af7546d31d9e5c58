"""Streamlit-free app helpers: settings, workspace paths, uploads, preview, figures."""
from __future__ import annotations

import os

import numpy as np
import pytest

from affectvlm import appsupport as A
from affectvlm.errors import ConfigError, InputError
from meshgen import face_like_mesh


def test_settings_from_env(tmp_path):
    s = A.load_settings({"AFFECTVLM_WORKSPACE_ROOTS": f"ws1{os.pathsep}{tmp_path / 'ws2'}",
                         "AFFECTVLM_DEFAULT_MODEL": "AffectVLM-Test", "AFFECTVLM_PREVIEW_FACES": "5000"}, cwd=tmp_path)
    assert s.workspace_roots == ((tmp_path / "ws1").resolve(), (tmp_path / "ws2").resolve())
    assert s.default_model == "AffectVLM-Test" and s.preview_max_faces == 5000
    assert s.jobs_db == s.workspace / ".affectvlm" / "jobs.sqlite3"
    with pytest.raises(ConfigError, match="AFFECTVLM_PREVIEW_FACES"):
        A.load_settings({"AFFECTVLM_PREVIEW_FACES": "lots"}, cwd=tmp_path)


def test_resolve_in_roots_rejects_escapes(tmp_path):
    root = tmp_path / "ws"
    (root / "data").mkdir(parents=True)
    outside = tmp_path / "secret"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    assert A.resolve_in_roots("data", [root]) == (root / "data").resolve()
    assert A.resolve_in_roots(str(root / "data"), [root], must_exist=True) == (root / "data").resolve()
    for bad in (str(outside), "../secret", "link", "link/x", "data/../../secret"):
        with pytest.raises(ConfigError, match="outside the workspace"):
            A.resolve_in_roots(bad, [root], what="dataset root")
    with pytest.raises(ConfigError, match="does not exist"):
        A.resolve_in_roots("missing", [root], must_exist=True)
    with pytest.raises(ConfigError, match="empty"):
        A.resolve_in_roots("  ", [root])


def test_plan_upload_kinds(tmp_path):
    scan = A.plan_upload([("a face.obj", b"v 0 0 0\n"), ("a face.bmp", b"BM")], tmp_path / "1")
    assert scan.kind == "scan" and scan.path.name == "a_face.obj" and (tmp_path / "1" / "a_face.bmp").exists()
    seq = A.plan_upload([("001.wrl", b"x"), ("000.wrl", b"y")], tmp_path / "2")
    assert seq.kind == "sequence" and seq.path == tmp_path / "2" and seq.n_meshes == 2
    z = A.plan_upload([("seq.zip", A.zip_bytes([("000.obj", b"v")]))], tmp_path / "3")
    assert z.kind == "sequence" and z.path.name == "seq.zip"
    with pytest.raises(InputError, match="unsupported file type"):
        A.plan_upload([("notes.txt", b"hi")], tmp_path / "4")
    with pytest.raises(InputError, match="no mesh"):
        A.plan_upload([("t.png", b"x")], tmp_path / "5")
    with pytest.raises(InputError, match="limit"):
        A.plan_upload([("big.obj", b"x" * 100)], tmp_path / "6", limits=A.default_limits().with_(max_file_bytes=10))
    # a hostile name cannot leave the upload folder
    p = A.plan_upload([("../../evil.obj", b"v")], tmp_path / "7")
    assert p.path.parent == tmp_path / "7"


def test_texture_vertex_colors_follow_uvs():
    m = face_like_mesh(16, textured=True)
    cols = A.texture_vertex_colors(m)
    assert cols.shape == (m.n_vertices, 3) and cols.dtype == np.uint8
    # every vertex has one UV here, so its colour is exactly the texel under it (v up, row 0 = top)
    uv = np.zeros((m.n_vertices, 2))
    uv[m.faces.reshape(-1)] = m.face_uv.reshape(-1, 2)
    h, w = m.texture.shape[:2]
    texel = m.texture[np.rint((1 - uv[:, 1]) * (h - 1)).astype(int), np.rint(uv[:, 0] * (w - 1)).astype(int)]
    assert np.array_equal(cols, texel)
    assert len(np.unique(cols, axis=0)) > 20
    plain = face_like_mesh(16, textured=False)
    assert A.texture_vertex_colors(plain) is None
    plain.vertex_colors = np.full((plain.n_vertices, 3), 7, np.uint8)
    assert (A.texture_vertex_colors(plain) == 7).all()


def test_decimate_bounds_faces_and_keeps_shape():
    m = face_like_mesh(120, textured=False)
    v, f, c = A.decimate(m.vertices, m.faces, 3000, np.zeros((m.n_vertices, 3), np.uint8))
    assert 500 < len(f) <= 3000 and f.max() < len(v) and c.shape == (len(v), 3)
    assert np.allclose(v.min(0), m.vertices.min(0), atol=3.0) and np.allclose(v.max(0), m.vertices.max(0), atol=3.0)
    v2, f2, _ = A.decimate(m.vertices, m.faces, 10**9)
    assert len(f2) == m.n_faces


def test_preview_and_figures():
    m = face_like_mesh(40)
    pv = A.preview(m, max_faces=1000)
    assert len(pv.faces) <= 1000 and pv.colors is not None
    assert abs(float(np.linalg.norm(pv.vertices, axis=1).max()) - 1.0) < 0.3  # canonical unit scale
    fig = A.mesh3d_figure(pv)
    assert fig.data[0].type == "mesh3d" and len(fig.data[0].vertexcolor) == len(pv.vertices)
    # shaded, not a flat silhouette: smooth normals, diffuse light, and a perspective camera (plotly's
    # orthographic WebGL path lights the back side: the face drew as a dark blob in chromium)
    tr, scene = fig.data[0], fig.layout.scene
    assert tr.flatshading is False and tr.lighting.diffuse > tr.lighting.ambient
    assert scene.camera.projection.type == "perspective" and scene.aspectmode == "data"
    assert scene.camera.eye.z > 0 and scene.camera.up.y == 1  # in front of the face (+Z), +Y up
    plain = A.mesh3d_figure(A.preview(face_like_mesh(20, textured=False)))
    assert plain.data[0].vertexcolor is None and plain.data[0].color == A.PREVIEW_COLOR
    bar = A.probability_figure({"happiness": 0.7, "anger": 0.3})
    assert list(bar.data[0].y) == ["happiness", "anger"] and bar.data[0].marker.color[0] != bar.data[0].marker.color[1]
    rows = [{"frame": i, "happiness": 0.1 * i, "anger": 1 - 0.1 * i} for i in range(5)]
    seq = A.sequence_figure(rows, ["happiness", "anger"], n_total=10)
    assert len(seq.data) == 2 and list(seq.data[0].x) == [0, 1, 2, 3, 4]


def test_metrics_figures_groups():
    recs = [{"kind": "train", "epoch": 0, "step": s, "lr": 1e-3 * s, "loss": 1 / s, "mc": 0.5, "mt": 0.2,
             "alpha": 0.3, "samples_per_s": 50.0, "eta_s": 10.0 - s} for s in range(1, 4)]
    recs.append({"kind": "epoch", "epoch": 0, "step": 3, "loss": 0.4, "val_accuracy": 0.8, "val_macro_f1": 0.7,
                 "val_confusion": [[1, 0], [0, 1]], "cache": {"hits": 3}})
    figs = A.metrics_figures(recs)
    assert set(figs) == {"loss", "accuracy", "learning rate", "samples/s"}
    names = {t.name for t in figs["loss"].data}
    assert {"loss", "mc", "mt", "alpha", "epoch loss"} <= names
    assert {t.name for t in figs["accuracy"].data} == {"val_accuracy", "val_macro_f1"}
    assert A.eta_seconds(recs) == 7.0
    assert A.eta_seconds([{"time": 0, "epoch": 1, "epochs": 5}, {"time": 10, "epoch": 2, "epochs": 5}]) == 30.0
    assert A.fmt_duration(3725) == "1h 02m" and A.fmt_duration(65) == "1m 05s" and A.fmt_duration(None) == "–"


def test_parse_sidebar_values():
    assert A.parse_classes("joy, anger\nboredom") == ["joy", "anger", "boredom"]
    with pytest.raises(ConfigError):
        A.parse_classes("joy")
    with pytest.raises(ConfigError, match="duplicated"):
        A.parse_classes("a, b, a")
    assert A.parse_templates("a photo of {}.\n\n a {} face ") == ["a photo of {}.", "a {} face"]
    with pytest.raises(ConfigError, match="placeholder"):
        A.parse_templates("no placeholder")
    assert A.model_spec("default", "", default="X") == "X"
    assert A.model_spec("pretrained", " ViT-B-32:openai ") == "ViT-B-32:openai"
    with pytest.raises(ConfigError):
        A.model_spec("checkpoint", "")


def test_list_samples(tmp_path):
    (tmp_path / "a.wrl").write_text("x")
    (tmp_path / "seq").mkdir()
    for i in range(3):
        (tmp_path / "seq" / f"{i:03d}.obj").write_text("v")
    (tmp_path / "notes.txt").write_text("x")
    s = A.list_samples(tmp_path)
    assert set(s) == {"scan: a.wrl", "4D sequence: seq (3 frames)"}
    assert A.sample_kind(s["4D sequence: seq (3 frames)"]) == "sequence"


def test_orientation_summary_flags_low_confidence():
    low = {"canonical": {"up": "-y", "front": "+z", "detected": ["front", "up"],
                         "confidence": {"front": 1.0, "up": 0.06}, "low_confidence": True}}
    o = A.orientation_summary(low)
    assert o["low_confidence"] and o["warning"] == A.ORIENTATION_WARNING
    assert o["caption"] == "up -y (guessed, confidence 0.06), front +z (guessed, confidence 1.00)"
    sure = {"canonical": {"up": "+y", "front": "+z", "detected": ["front"], "confidence": {"front": 0.9},
                          "low_confidence": False}}
    o = A.orientation_summary(sure)
    assert o["warning"] is None and "up +y (set)" in o["caption"]
    assert A.orientation_summary({})["warning"] is None  # a mesh that was not canonicalised
    # the flag comes from the library: the preview canonicalises like the renderer does
    pv = A.preview(face_like_mesh(24, textured=False), up="+y", front="+z")
    assert A.orientation_summary(pv.meta)["warning"] is None


def test_landmarks_follow_the_preview_into_the_canonical_frame():
    """Landmarks recorded in file coordinates land on the same surface points in the preview's frame."""
    from affectvlm.geometry import canonicalise
    from meshgen import face_like_mesh

    m = face_like_mesh(24)
    R = np.array([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]])  # a Z-up, X-front file
    rot = type(m)(vertices=(m.vertices.astype(np.float64) @ R.T).astype(np.float32), faces=m.faces, source="r")
    c = canonicalise(rot, up="+z", front="+x")
    c.meta["canonical"]["landmarks"] = rot.vertices[[3, 50, 100]].tolist()
    got = A.landmarks_canonical(c.meta)
    np.testing.assert_allclose(got, c.vertices[[3, 50, 100]], atol=1e-5)
    assert A.landmarks_canonical({"canonical": {"up": "+y"}}) is None
    fig = A.mesh3d_figure(A.Preview(c.vertices, c.faces, None, len(c.faces), dict(c.meta)))
    assert [t.name for t in fig.data] == ["scan", "landmarks"]
