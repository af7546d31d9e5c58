"""predict(): files, bytes, meshes, folders, zips and 4D sequences; pooling; output files."""
import csv
import io
import json
import zipfile

from pathlib import Path

import numpy as np
import pytest
import trimesh

from affectvlm.errors import ConfigError, InputError
from affectvlm.io.vrml import write_vrml
from affectvlm.mesh import MeshSequence
from affectvlm.model import load_model
from affectvlm.predict import (Prepared, ScanResult, SequenceResult, iter_sequence, looks_like_sequence,
                               pool_probabilities, predict, predict_mesh, prepare, rows_to_csv, rows_to_json,
                               write_rows)
from meshgen import face_like_mesh

CLASSES = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger")


@pytest.fixture(scope="module")
def model():
    from affectvlm.render import RenderSettings

    m = load_model("AffectVLM-Test", cache=False)
    m.render = RenderSettings(size=64)  # small renders keep the tests quick; encode_views resizes
    return m


def _obj_bytes(mesh) -> bytes:
    return trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).export(file_type="obj").encode()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("scans")
    m = face_like_mesh(32)
    (d / "a.obj").write_bytes(_obj_bytes(m))
    write_vrml(d / "b.wrl", face_like_mesh(32, smile=1.0))
    (d / "bad.obj").write_text("v 1 2\nf 1 2 3\n")
    seq = d / "F001" / "Happy"
    seq.mkdir(parents=True)
    for i in range(4):
        (seq / f"{i:03d}.obj").write_bytes(_obj_bytes(face_like_mesh(24, smile=i / 3)))
    return d


def _check_ok(row, classes=CLASSES):
    assert row["error"] == ""
    p = np.array([row[c] for c in classes])
    assert abs(p.sum() - 1) < 1e-4 and row["label"] == classes[int(p.argmax())]
    assert row["confidence"] == pytest.approx(p.max())


def test_files_bytes_meshes_and_bad_inputs(model, files):
    mesh = face_like_mesh(24)
    seen = []
    rows = predict([str(files / "a.obj"), files / "b.wrl", str(files / "bad.obj"), str(files / "missing.ply"),
                    ("upload.obj", (files / "a.obj").read_bytes()), mesh, 42], model, on_row=seen.append,
                   batch_size=2)
    assert [r["file"] for r in rows][:6] == [str(files / "a.obj"), str(files / "b.wrl"), str(files / "bad.obj"),
                                             str(files / "missing.ply"), "upload.obj", mesh.source]
    assert seen == rows and len(rows) == 7
    for i in (0, 1, 4, 5):
        _check_ok(rows[i])
        assert rows[i]["frame"] == ""
    assert "OBJ" in rows[2]["error"] and rows[2]["label"] == "" and rows[2]["neutral"] is None
    assert rows[3]["error"] == "file not found"
    assert rows[6]["error"]
    # the same file scored from a path and from bytes gives the same probabilities
    assert rows[0]["happiness"] == pytest.approx(rows[4]["happiness"], abs=1e-6)


def test_sequence_folder_gives_frame_rows_and_pooled_row(model, files):
    rows = predict(str(files / "F001"), model)  # a subject folder: one sequence per expression folder
    assert [r["frame"] for r in rows] == [0, 1, 2, 3, "sequence"]
    for r in rows:
        _check_ok(r)
    rows2 = predict(str(files / "F001" / "Happy"), model, frames=2)
    assert [r["frame"] for r in rows2] == [0, 3, "sequence"]
    rows3 = predict(str(files / "F001" / "Happy"), model, every=2)
    assert [r["frame"] for r in rows3] == [0, 2, "sequence"]


def test_folder_of_scans_is_a_batch_and_zips(model, files, tmp_path):
    rows = predict(str(files), model)
    names = [r["file"] for r in rows if r["frame"] == ""]
    assert any(n.endswith("a.obj") for n in names) and any(n.endswith("b.wrl") for n in names)
    assert [r["frame"] for r in rows if "Happy" in r["file"]] == [0, 1, 2, 3, "sequence"]
    # a zip of frames is a sequence, a zip of differently named scans is a batch
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(3):
            z.writestr(f"seq/frame_{i:03d}.obj", _obj_bytes(face_like_mesh(20, smile=i / 2)))
    rows = predict([("frames.zip", buf.getvalue())], model)
    assert [r["frame"] for r in rows] == [0, 1, 2, "sequence"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("F0001_HA04WH_F3D.obj", _obj_bytes(face_like_mesh(20)))
        z.writestr("F0001_SA04WH_F3D.obj", _obj_bytes(face_like_mesh(20, smile=1)))
        z.writestr("broken.obj", b"v 1\n")
    (tmp_path / "batch.zip").write_bytes(buf.getvalue())
    rows = predict(str(tmp_path / "batch.zip"), model)
    assert len(rows) == 3 and [r["frame"] for r in rows] == ["", "", ""]
    assert sum(bool(r["error"]) for r in rows) == 1 and rows[0]["file"].startswith(str(tmp_path / "batch.zip"))
    (tmp_path / "junk.zip").write_bytes(b"PK\x03\x04 not really a zip")
    assert predict(str(tmp_path / "junk.zip"), model)[0]["error"]


def test_looks_like_sequence():
    assert looks_like_sequence(["000.wrl", "001.wrl", "002.wrl"])
    assert looks_like_sequence(["frame_1.obj", "frame_2.obj"])
    assert not looks_like_sequence(["F0001_AN01WH_F3D.wrl", "F0001_HA02WH_F3D.wrl"])
    assert not looks_like_sequence(["000.wrl"]) and not looks_like_sequence(["a.obj", "b.obj"])


def test_pooling_peak_finds_the_apex():
    # neutral -> happiness apex -> neutral: the mean is dominated by neutral frames, the peak is not
    frames = [[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9], [0.8, 0.2], [0.9, 0.1], [0.95, 0.05]]
    P = np.array([[f[0], f[1], 0, 0, 0, 0, 0] for f in frames])
    mean = pool_probabilities(P, CLASSES, "mean")
    peak = pool_probabilities(P, CLASSES, "peak")
    assert CLASSES[int(mean.argmax())] == "neutral" and CLASSES[int(peak.argmax())] == "happiness"
    assert peak.sum() == pytest.approx(1.0)
    # without a neutral class, expressiveness = distance from the first frame
    Q = np.array([[0.9, 0.1], [0.85, 0.15], [0.1, 0.9], [0.8, 0.2]])
    assert pool_probabilities(Q, ("a", "b"), "peak").argmax() == 1
    with pytest.raises(ConfigError):
        pool_probabilities(Q, ("a", "b"), "max")


def test_pooling_contrast_takes_out_the_resting_lean():
    # a face that looks half sad at rest, then shows surprise: the peak frames still lean sad (peak pooling says
    # sadness); against the calm frame, surprise is what changed
    calm = [0.60, 0.01, 0.35, 0.01, 0.01, 0.01, 0.01]
    apex = [0.05, 0.01, 0.50, 0.40, 0.02, 0.01, 0.01]
    P = np.array([calm, calm, apex, apex, apex, calm, calm])
    assert CLASSES[int(pool_probabilities(P, CLASSES, "peak").argmax())] == "sadness"
    c = pool_probabilities(P, CLASSES, "contrast")
    assert CLASSES[int(c.argmax())] == "surprise"
    assert c.sum() == pytest.approx(1.0) and c[CLASSES.index("neutral")] == 0.0
    assert CLASSES[int(pool_probabilities(P, CLASSES).argmax())] == "surprise"  # the default
    # one frame: its own calm frame, so every emotion scores half its log-probability; the order stays
    one = pool_probabilities(P[2:3], CLASSES, "contrast")
    assert CLASSES[int(one.argmax())] == "sadness"
    # without a neutral class the calmest frame is the one nearest the first, and no class is dropped
    Q = np.array([[0.6, 0.4], [0.6, 0.4], [0.3, 0.7], [0.6, 0.4]])
    q = pool_probabilities(Q, ("a", "b"), "contrast")
    assert q.argmax() == 1 and (q > 0).all()


def test_iter_sequence_and_predict_mesh(model):
    seq = MeshSequence([face_like_mesh(20, smile=s) for s in (0, 0.5, 1)], [10, 11, 12], source="mem")
    it = iter_sequence(seq, model, batch_size=1)
    first = next(it)
    assert first["frame"] == 10 and first["file"] == "mem"
    rest = list(it)
    assert [r["frame"] for r in rest] == [11, 12, "sequence"]
    out = predict_mesh(face_like_mesh(24), model, views="0,20")
    assert isinstance(out.result, ScanResult) and out.result.ok
    assert set(out.probabilities) == set(CLASSES) and sum(out.probabilities.values()) == pytest.approx(1, abs=1e-5)
    assert [c for c, _ in out.images] == ["yaw 0°", "yaw 20°"] and out.images[0][1].size == (64, 64)
    assert tuple(out.tensor.shape) == (2, 3, 64, 64) and out.label in CLASSES
    assert sum(out.view_weights.values()) == pytest.approx(1, abs=1e-5)
    so = predict_mesh(seq, model)
    assert isinstance(so.result, SequenceResult) and len(so.rows) == 4 and so.rows[-1]["frame"] == "sequence"
    assert so.shown_frame in (10, 11, 12) and tuple(so.tensor.shape[1:]) == (3, 64, 64)
    # the shown frame is the most expressive one, and its images are the ones it was scored from
    best = max(so.result.frames, key=lambda f: 1 - f.probs[0])
    assert so.shown_frame == best.frame_id
    alone = predict_mesh(seq.frames[seq.frame_ids.index(best.frame_id)], model, up=so.result.frame.up,
                         front=so.result.frame.front)
    assert np.allclose(alone.result.probs, best.probs, atol=1e-5)


def test_prepare_once_then_score(model):
    """prepare() canonicalises once; predict_mesh scores that object and agrees with predict()."""
    mesh = face_like_mesh(24, smile=0.7)
    p = prepare(mesh, model)
    assert isinstance(p, Prepared) and p.frame is not None and p.frame.up and p.frame.front
    assert not p.settings.canonical  # the prepared mesh is rendered as it is
    r = np.abs(p.mesh.vertices).max()
    assert 0.5 < r <= 1.0 + 1e-5  # centred and unit-sized
    a = predict_mesh(p, model)
    assert a.prepared is p and a.result.frame == p.frame
    row = predict([mesh], model)[0]
    assert a.result.probs == pytest.approx([row[c] for c in CLASSES], abs=1e-6)
    with pytest.raises(InputError):
        prepare(face_like_mesh(4), model)


def test_a_models_score_pitches_are_scored_and_the_users_views_are_taken_as_given(model):
    """A model whose render settings carry score_pitches is scored on every view at those pitches too (the
    same rows as those views given by hand); views the user gives are rendered as given, without them."""
    from dataclasses import replace

    mesh = face_like_mesh(24, smile=0.6)
    plain = predict([mesh], model)[0]
    tta = replace(model.render, score_pitches=(-10.0, 10.0))
    try:
        model.render = tta
        out = predict_mesh(mesh, model)
        assert [c for c, _ in out.images] == ["yaw 0°", "yaw -30°", "yaw 30°", "yaw 0°, pitch -10°",
                                              "yaw -30°, pitch -10°", "yaw 30°, pitch -10°", "yaw 0°, pitch 10°",
                                              "yaw -30°, pitch 10°", "yaw 30°, pitch 10°"]
        row = predict([mesh], model)[0]
        given = predict([mesh], model, views="0,-30,30")[0]
    finally:
        model.render = replace(tta, score_pitches=())
    by_hand = predict([mesh], model, views=tta.for_scoring().views)[0]
    probs = lambda r: np.array([r[c] for c in CLASSES])  # noqa: E731
    assert np.allclose(probs(row), probs(by_hand), atol=1e-6)
    assert not np.allclose(probs(row), probs(plain), atol=1e-6)  # the extra pitches change the scores
    assert np.allclose(probs(given), probs(plain), atol=1e-6)


def test_write_rows(tmp_path, model):
    rows = predict([face_like_mesh(20), ("x.obj", b"garbage")], model)
    write_rows(rows, tmp_path / "r.csv")
    write_rows(rows, tmp_path / "sub" / "r.json")
    got = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert list(got[0]) == ["file", "frame", "timestamp", "label", "confidence", *CLASSES, "orientation_up",
                            "orientation_front", "orientation_confidence", "orientation_flagged", "orientation_source",
                            "success", "error"]
    assert [g["success"] for g in got] == ["1", "0"] and got[0]["timestamp"] == ""
    assert got[0]["orientation_up"] and got[0]["orientation_flagged"] in ("True", "False")
    assert got[1]["orientation_up"] == "" and got[1]["orientation_flagged"] == ""
    assert float(got[0]["happiness"]) == pytest.approx(rows[0]["happiness"], abs=1e-6)
    assert got[1]["error"] and got[1]["label"] == ""
    js = json.loads((tmp_path / "sub" / "r.json").read_text())
    assert js[0]["happiness"] == rows[0]["happiness"] and js[1]["confidence"] is None
    assert rows_to_csv(rows).splitlines()[0].startswith("file,frame,timestamp,label,confidence")
    if rows[0]["landmarks"] is not None:  # the face-frame network is installed: 83 landmarks per scan
        assert len(js[0]["landmarks"]) == 83 and js[1]["landmarks"] is None
        header = rows_to_csv(rows, landmarks=True).splitlines()[0].split(",")
        assert header[-3:] == ["lm83_x", "lm83_y", "lm83_z"] and "lm01_x" in header
    # one schema whatever succeeded: the failed row alone writes the same columns and JSON keys
    assert rows_to_csv(rows[1:]).splitlines()[0] == rows_to_csv(rows).splitlines()[0]
    assert (rows_to_csv(rows[1:], landmarks=True).splitlines()[0]
            == rows_to_csv(rows, landmarks=True).splitlines()[0])
    assert [list(r) for r in json.loads(rows_to_json(rows[1:]))] == [list(js[1])]
    assert list(js[0]) == list(js[1]) and js[0]["frame"] == js[1]["frame"] == ""
    with pytest.raises(ConfigError, match="csv or .json"):
        write_rows(rows, tmp_path / "r.txt")


def test_writing_results_needs_no_torch():
    import subprocess
    import sys

    code = ("import sys\nfrom affectvlm.results import rows_to_csv\n"
            "row = {'file': 'a.obj', 'frame': None, 'label': 'happy', 'confidence': 0.9, 'happy': 0.9,"
            " 'success': 1, 'error': '', 'landmarks': [[0.0, 0.0, 0.0]] * 83}\n"
            "head = rows_to_csv([row], landmarks=True).splitlines()[0]\n"
            "assert head.endswith('lm83_z'), head\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_bad_options(model):
    for kw in ({"frames": 0}, {"every": 0}, {"batch_size": 0}, {"pooling": "max"}, {"views": "a,b"}):
        with pytest.raises(ConfigError):
            predict([face_like_mesh(16)], model, **kw)
    bad = load_model("AffectVLM-Test", classes=["label", "other"], cache=False)
    with pytest.raises(ConfigError, match="clash"):
        predict([face_like_mesh(16)], bad)
    marked = load_model("AffectVLM-Test", classes=["happy", "lm01_x"], cache=False)  # two lm01_x columns with --landmarks
    with pytest.raises(ConfigError, match=r"\['lm01_x'\] clash with the landmark columns"):
        predict([face_like_mesh(16)], marked)


SAMPLES = Path(__file__).resolve().parents[1] / "affectvlm" / "data" / "samples"


def test_rows_report_the_face_frame_of_real_scans_in_any_axis_order(tmp_path, model):
    """A bundled scan (+Y up, +Z front) written Z-up and facing +X: the row names the file's axes, unflagged,
    with 83 landmarks in the file's coordinates."""
    from affectvlm.io import load_mesh
    from affectvlm.mesh import Mesh

    m = load_mesh(SAMPLES / "F0001_HA04WH_F3D.wrl", texture=False)
    R = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # new = R @ old: y -> z, z -> x
    turned = Mesh(vertices=(m.vertices.astype(np.float64) @ R.T).astype(np.float32), faces=m.faces, source="t")
    rows = predict([m, turned], model)
    assert [r["orientation_up"] for r in rows] == ["+y", "+z"]
    assert [r["orientation_front"] for r in rows] == ["+z", "+x"]
    assert not any(r["orientation_flagged"] for r in rows)
    if rows[0]["landmarks"] is not None:
        a, b = np.asarray(rows[0]["landmarks"]), np.asarray(rows[1]["landmarks"])
        assert a.shape == (83, 3) and np.allclose(a @ R.T, b, atol=1.0)


def test_pipelined_rows_equal_serial_rows_in_order(model, files, tmp_path):
    """Worker threads change when things run, not what comes out: same rows, same order, errors in place."""
    inputs = [str(files / "a.obj"), str(files / "bad.obj"), str(files / "F001"), ("x.obj", b"v 1\n"),
              str(files / "b.wrl"), face_like_mesh(20, smile=0.3), str(tmp_path / "missing.obj")]
    serial = predict(inputs, model, workers=0, batch_size=2)
    for w in (1, 3):
        seen = []
        assert predict(inputs, model, workers=w, batch_size=2, on_row=seen.append) == serial
        assert seen == serial
    assert [r["success"] for r in serial] == [1, 0, 1, 1, 1, 1, 1, 0, 1, 1, 0]
    assert [r["frame"] for r in serial][2:7] == [0, 1, 2, 3, "sequence"]


def test_plan_fixes_the_batches():
    from affectvlm.inputs import Item
    from affectvlm.predict import plan

    kinds = ["scan", "scan", "scan", "sequence", "scan", "error", "scan", "scan"]
    items = [Item(str(i), k) for i, k in enumerate(kinds)]
    assert plan(items, 2) == [[0, 1], [2], [3], [4], [5], [6, 7]]
    assert plan(items, 8) == [[0, 1, 2], [3], [4], [5], [6, 7]]


def test_timestamps_follow_the_frame_rate(model):
    seq = MeshSequence([face_like_mesh(20, smile=s) for s in (0, 0.5, 1)], [0, 5, 10], source="mem")
    rows = list(iter_sequence(seq, model))
    assert [r["timestamp"] for r in rows] == [0.0, 0.2, 0.4, None]  # 25 fps, BU-4DFE's rate
    rows = predict([seq], model, fps=10)
    assert [r["timestamp"] for r in rows] == [0.0, 0.5, 1.0, None]
    seq.meta["fps"] = 50
    assert [r["timestamp"] for r in predict([seq], model)][:3] == [0.0, 0.1, 0.2]
    with pytest.raises(ConfigError, match="fps"):
        predict([seq], model, fps=0)
    with pytest.raises(ConfigError, match="fps"):
        predict([seq], model, fps=1e-320)
    seq.meta["fps"] = 1e-320  # a file's own rate out of range: the default rate, finite stamps
    assert [r["timestamp"] for r in predict([seq], model)][:3] == [0.0, 0.2, 0.4]


def test_precision(model):
    mesh = face_like_mesh(24, smile=0.5)
    fp32 = predict([mesh], model)[0]
    bf16 = predict([mesh], model, precision="bf16")[0]
    assert bf16["success"] == 1
    assert [bf16[c] for c in CLASSES] == pytest.approx([fp32[c] for c in CLASSES], abs=0.02)
    assert [bf16[c] for c in CLASSES] != [fp32[c] for c in CLASSES]  # it did run in bfloat16
    with pytest.raises(ConfigError, match="precision"):
        predict([mesh], model, precision="fp8")


def test_ahead_keeps_a_bounded_window_in_order():
    from affectvlm.pipeline import Ahead, InlineExecutor, executor

    for pool in (executor(2), InlineExecutor()):
        started: list[int] = []
        held = []
        ahead = Ahead(pool, range(20), lambda x: (started.append(x), pool.submit(lambda: x * x))[1], depth=2)
        out = []
        for x, fut in ahead:
            held.append(len(started) - len(out))  # started but not yet consumed, this one included
            out.append((x, fut.result()))
        assert out == [(x, x * x) for x in range(20)] and max(held) == 3
        pool.shutdown()


def test_texture_images_are_read_only_for_models_that_render_them(model, tmp_path, monkeypatch):
    from dataclasses import replace

    import affectvlm.io.formats as formats

    write_vrml(tmp_path / "F0001_HA04WH_F3D.wrl", face_like_mesh(24))  # writes the .bmp beside it
    assert (tmp_path / "F0001_HA04WH_F3D.bmp").exists()
    decoded = []
    real = formats.decode_texture
    monkeypatch.setattr(formats, "decode_texture", lambda *a, **k: decoded.append(1) or real(*a, **k))
    geometry_only = load_model("AffectVLM-Test", cache=False)
    geometry_only.render = replace(model.render, texture=False)
    rows = predict([tmp_path], geometry_only, workers=0)
    assert rows[0]["success"] == 1 and decoded == []
    textured = load_model("AffectVLM-Test", cache=False)
    textured.render = replace(model.render, texture=True)
    assert predict([tmp_path], textured, workers=0)[0]["success"] == 1 and decoded


def test_one_scan_starts_no_worker_threads(model, files, monkeypatch):
    """A lone scan is read and rendered in the calling thread; two scans or a sequence use the workers asked for."""
    import affectvlm.predict as pr

    asked = []

    def spy(workers):
        asked.append(workers)
        return pr.executor.__wrapped__(workers)

    spy.__wrapped__ = pr.executor
    monkeypatch.setattr(pr, "executor", spy)
    one = predict([str(files / "a.obj")], model, workers=2)
    two = predict([str(files / "a.obj"), str(files / "b.wrl")], model, workers=2)
    seq = predict([str(files / "F001")], model, workers=2)
    assert asked == [0, 2, 2]
    assert one[0]["success"] == 1 and seq[-1]["frame"] == "sequence"
    assert [two[0][c] for c in model.classes] == pytest.approx([one[0][c] for c in model.classes], abs=1e-5)


def _yawed(mesh, degrees: float):
    from dataclasses import replace

    a = np.radians(degrees)
    R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    return replace(mesh, vertices=(mesh.vertices @ R.T).astype(np.float32))


def test_a_sequence_of_a_turned_head_is_scored_as_the_same_head_facing_the_camera(model):
    """A frame found off the file's axes (here a head turned 45 degrees) used to fail the whole sequence with
    'up must be one of +x, ...', since it was handed back as a render override that names axes only."""
    faces = [face_like_mesh(24, smile=s, seed=3) for s in (0, 0.7, 1.4)]
    straight = predict([MeshSequence(faces, [0, 1, 2], source="straight")], model)
    turned = predict([MeshSequence([_yawed(m, 45) for m in faces], [0, 1, 2], source="turned")], model)
    assert [r["error"] for r in turned] == [""] * 4, turned[-1]["error"]
    assert "[" in turned[-1]["orientation_front"]  # reported as the vector it is
    assert turned[-1]["orientation_flagged"]  # a principal-axes guess is always flagged
    for a, b in zip(straight, turned):
        assert [b[c] for c in CLASSES] == pytest.approx([a[c] for c in CLASSES], abs=0.02)


def test_a_bad_middle_frame_is_its_own_error_row_not_the_sequences(model):
    faces = [face_like_mesh(24, smile=s, seed=4) for s in (0, 0.5, 1.0, 1.5, 2.0)]
    faces[2] = type(faces[0])(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32),
                              np.array([[0, 1, 2], [0, 1, 3]]))  # a 4-vertex "frame" in the middle
    rows = predict([MeshSequence([_yawed(m, 45) for m in faces], list(range(5)), source="seq")], model)
    assert "only 4 vertices" in rows[2]["error"]
    assert [r["error"] for i, r in enumerate(rows) if i != 2] == [""] * 5
    assert rows[-1]["orientation_front"].startswith("[0.7")  # the frame found on a neighbour, for every frame


def test_the_packages_predict_can_be_called_again_as_the_readme_calls_it(files):
    """`affectvlm.predict(...)` worked once: importing the submodule of that name made the package's attribute the
    module. Run in a fresh interpreter, where nothing has imported the submodule before."""
    import os
    import subprocess
    import sys

    code = ("import affectvlm, inspect, pickle, sys\n"
            "first = affectvlm.predict\n"
            "assert callable(first.write_rows)\n"  # the first access was the function: no module attributes
            "a = affectvlm.predict([sys.argv[1]], model='AffectVLM-Test')\n"
            "b = affectvlm.predict([sys.argv[1]], model='AffectVLM-Test')\n"
            "import affectvlm.predict as module\n"
            "c = affectvlm.predict([sys.argv[1]], model='AffectVLM-Test')\n"
            "assert callable(module.predict_mesh) and a == b == c and a[0]['error'] == '', (a, b, c)\n"
            "assert affectvlm.predict is first is module and pickle.loads(pickle.dumps(first)) is first\n"  # pools
            "assert 'model' in inspect.signature(first).parameters\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-c", code, str(files / "a.obj")], capture_output=True, text=True,
                       timeout=300, env=env, cwd=str(Path(__file__).resolve().parents[1]))
    assert r.returncode == 0, r.stderr[-2000:]


def test_a_zip_of_a_bu4dfe_subject_and_a_folder_of_zips_read_as_the_folders_would(model, tmp_path):
    """A zip of F001/{Happy,Sad}/NNN.wrl gave eight scans without frame numbers or pooled rows; a folder of such
    zips gave 'folder holds no mesh file'. Each member folder of frames is a sequence, as in a folder."""
    from affectvlm.io import load_sequence

    members = {}
    for emotion, sign in (("Happy", 1.0), ("Sad", -1.0)):
        for f in range(3):
            p = tmp_path / "tree" / "F001" / emotion / f"{f:03d}.wrl"
            write_vrml(p, face_like_mesh(16, smile=sign * f, seed=f, textured=False))
            members[f"F001/{emotion}/{f:03d}.wrl"] = p.read_bytes()
    members["F001/neutral_scan.wrl"] = members["F001/Happy/000.wrl"]  # a lone scan beside them stays a scan
    (tmp_path / "zips").mkdir()
    with zipfile.ZipFile(tmp_path / "zips" / "F001.zip", "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    (tmp_path / "zips" / "broken.zip").write_bytes(b"PK\x03\x04 not really")
    rows = predict([tmp_path / "zips"], model)
    seqs = [r for r in rows if r["frame"] == "sequence"]
    assert [r["file"] for r in seqs] == [f"{tmp_path / 'zips' / 'F001.zip'}:F001/{e}" for e in ("Happy", "Sad")]
    assert all(r["error"] == "" for r in seqs)
    assert [r["frame"] for r in rows if r["file"].endswith(":F001/Sad")] == [0, 1, 2, "sequence"]
    assert [r["error"] != "" for r in rows if r["file"].endswith(("broken.zip", "neutral_scan.wrl"))] == [False, True]
    tree = [r for r in predict([tmp_path / "tree"], model) if r["frame"] == "sequence"]
    assert [r["happiness"] for r in tree] == pytest.approx([r["happiness"] for r in seqs], abs=1e-6)
    with pytest.raises(InputError, match="frames in 3 folders .F001/Happy, F001/Sad, F001."):  # not one recording
        load_sequence(tmp_path / "zips" / "F001.zip")
    assert load_sequence(tmp_path / "zips" / "F001.zip", member_dir="F001/Sad").frame_ids == [0, 1, 2]


def test_a_scan_link_that_leads_nowhere_in_a_folder_is_its_own_row(model, tmp_path):
    (tmp_path / "a.obj").write_bytes(_obj_bytes(face_like_mesh(20)))
    (tmp_path / "b.obj").symlink_to("gone.obj")
    (tmp_path / "c.wrl").symlink_to("c.wrl")
    (tmp_path / "notes").symlink_to("gone.txt")  # not a scan's name: not a row
    rows = {Path(r["file"]).name: r["error"] for r in predict([tmp_path], model)}
    assert set(rows) == {"a.obj", "b.obj", "c.wrl"} and rows["a.obj"] == ""
    assert "leads nowhere" in rows["b.obj"] and "Too many levels of symbolic links" in rows["c.wrl"]


def test_bare_bytes_are_refused_and_a_lone_named_input_is_one_input(model, files):
    """predict(b'...') gave one error row per byte; a lone (name, memoryview) or (name, Path) was split in two."""
    from affectvlm.errors import ConfigError

    data = (files / "a.obj").read_bytes()
    with pytest.raises(ConfigError, match=r"pass \(name, bytes\)"):
        predict(data, model)
    for one in (("shown.obj", memoryview(data)), ("shown.obj", files / "a.obj"), ("shown.obj", lambda: data)):
        rows = predict(one, model)
        assert [r["file"] for r in rows] == ["shown.obj"] and rows[0]["error"] == "", one


def test_csv_cells_a_spreadsheet_would_run_as_formulas_are_neutralised(files):
    """A scan named '=cmd|' calc'!A0.obj' (`predict .` writes bare names) or a class '=1+1' was written as is:
    Excel runs it as a formula."""
    import csv
    import io as _io

    from affectvlm.model import load_model

    m = load_model("AffectVLM-Test", classes="=1+1,smile")
    names = ("=cmd|' calc'!A0.obj", "@SUM(1+1).obj", "-2+3.obj", "plain.obj")
    rows = predict([(n, files / "a.obj") for n in names], m)
    table = list(csv.reader(_io.StringIO(rows_to_csv(rows))))
    header, body = table[0], table[1:]
    assert "'=1+1" in header and "smile" in header
    assert [r[0] for r in body] == ["'=cmd|' calc'!A0.obj", "'@SUM(1+1).obj", "'-2+3.obj", "plain.obj"]
    assert all(r[header.index("label")] in ("'=1+1", "smile") for r in body)
    up = header.index("orientation_up")
    assert all(r[up] in ("+x", "-x", "+y", "-y", "+z", "-z") for r in body)  # axes are written as they are


def test_every_api_row_has_one_schema_in_one_order(model, files, tmp_path):
    """Error and frame rows lacked the orientation and landmarks keys: a DataFrame's columns moved with the first row."""
    (tmp_path / "bad.obj").write_text("nonsense")
    seq = tmp_path / "seq"
    for i in range(2):
        write_vrml(seq / f"{i:03d}.wrl", face_like_mesh(16, smile=i / 2, seed=i, textured=False))
    rows = predict([str(tmp_path / "bad.obj"), str(files / "a.obj"), str(seq)], model)
    assert {r["success"] for r in rows} == {0, 1} and any(r["frame"] == "sequence" for r in rows)
    assert len({tuple(r) for r in rows}) == 1, [list(r) for r in rows]


def test_numpy_numbers_are_numbers_for_the_options(model, files):
    """np.int64(4) as batch_size, np.int64 frames or np.float32 fps (values from a DataFrame) were refused."""
    import numpy as np

    rows = predict([str(files / "a.obj")], model, batch_size=np.int64(4), frames=np.int64(3), fps=np.float32(30))
    assert rows[0]["error"] == ""


def test_a_sequences_frame_is_the_majority_of_its_middle_first_and_last_frames(monkeypatch):
    """A head thrown back at the apex can read upside down where its first and last frames read upright: the
    middle frame alone decided every frame's orientation."""
    import affectvlm.predict as P
    from affectvlm.render import RenderSettings
    from affectvlm.results import FaceFrame

    read = {0: ("+y", 0.99), 2: ("-y", 1.0), 4: ("+y", 0.98)}  # the apex is surest, and wrong
    tried = []

    def fake(mesh, settings):
        i = int(mesh.source)
        tried.append(i)
        up, conf = read.get(i, ("+y", 0.9))
        return Prepared(mesh, FaceFrame(up=up, front="+z", confidence=conf, low_confidence=False), settings)

    monkeypatch.setattr(P, "orient_scan", fake)
    monkeypatch.setattr(P, "check_face", lambda m: m)
    seq = MeshSequence([face_like_mesh(8, seed=i) for i in range(5)], list(range(5)), source="s")
    seq = type(seq)([type(m)(m.vertices, m.faces, source=str(i)) for i, m in enumerate(seq.frames)], seq.frame_ids,
                    source="s")
    _, settings, frame = P.orient_sequence(seq, RenderSettings())
    assert tried == [2, 0, 4] and settings.up == frame.up == "+y" and frame.low_confidence
    read[2] = ("+y", 1.0)
    _, _, frame = P.orient_sequence(seq, RenderSettings())
    assert frame.up == "+y" and not frame.low_confidence  # all agree: not flagged


def test_frame_rows_carry_the_frame_their_sequence_was_rendered_in(model):
    faces = [face_like_mesh(24, smile=s, seed=3) for s in (0, 0.7, 1.4)]
    rows = predict([MeshSequence(faces, [0, 1, 2], source="seq")], model)
    assert rows[-1]["frame"] == "sequence" and rows[-1]["orientation_up"]
    assert [r["orientation_up"] for r in rows[:-1]] == [rows[-1]["orientation_up"]] * 3
