"""Hostile and unlucky inputs (issue 10): each gets a clean one-line error or a correct result, in bounded
time, and every good file beside it keeps its row. Fixtures are real files written by the tests."""
import json
import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import trimesh

from affectvlm import cli
from affectvlm.errors import ConfigError, InputError
from affectvlm.io import load_mesh
from affectvlm.io.vrml import write_vrml
from affectvlm.limits import Limits
from affectvlm.model import load_model
from affectvlm.predict import predict
from affectvlm.render import parse_views
from meshgen import face_like_mesh

CLASSES = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger")


@pytest.fixture(scope="module")
def model():
    from affectvlm.render import RenderSettings

    m = load_model("AffectVLM-Test", cache=False)
    m.render = RenderSettings(size=32)
    return m


def _obj(mesh) -> bytes:
    return trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).export(file_type="obj").encode()


def _ok(row) -> None:
    assert row["error"] == "", row
    assert abs(sum(row[c] for c in CLASSES) - 1) < 1e-4


def _one_line(text: str) -> None:
    assert "\n" not in text and "\r" not in text and "\x1b" not in text


# ------------------------------------------------------------------------------------- 1. VRML DEF/USE bombs
def _vrml_bomb(levels: int, shape: str | None = None) -> bytes:
    shape = shape or ("Shape { geometry IndexedFaceSet { coord Coordinate { point [ 0 0 0, 1 0 0, 0 1 0 ] } "
                      "coordIndex [ 0 1 2 -1 ] } }")
    lines = ["#VRML V2.0 utf8", f"DEF L0 {shape}"]
    lines += [f"DEF L{i} Group {{ children [ USE L{i - 1} USE L{i - 1} ] }}" for i in range(1, levels + 1)]
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("levels", [18, 22])
def test_vrml_instancing_bomb_is_refused_fast(tmp_path, levels):
    path = tmp_path / "bomb.wrl"
    path.write_bytes(_vrml_bomb(levels))
    assert path.stat().st_size < 1500
    t = time.perf_counter()
    with pytest.raises(InputError) as e:
        load_mesh(path)
    assert time.perf_counter() - t < 2.0
    msg = str(e.value)
    assert "DEF/USE" in msg and "AFFECTVLM_MAX_SCENE_NODES" in msg and "one line" not in msg
    _one_line(msg)


@pytest.mark.timeout(30)
def test_vrml_copies_count_against_vertex_and_face_limits(tmp_path):
    m = face_like_mesh(12)  # ~100 vertices per copy; 2^8 copies stay under the node limit
    pts = ", ".join("%g %g %g" % tuple(v) for v in m.vertices)
    idx = " ".join("%d %d %d -1" % tuple(f) for f in m.faces)
    shape = f"Shape {{ geometry IndexedFaceSet {{ coord Coordinate {{ point [ {pts} ] }} coordIndex [ {idx} ] }} }}"
    data = _vrml_bomb(8, shape)
    with pytest.raises(InputError, match=r"DEF/USE copies expand to \d+ vertices.*AFFECTVLM_MAX_VERTICES"):
        load_mesh(data, "copies.wrl", limits=Limits(max_vertices=len(m.vertices) * 100))
    with pytest.raises(InputError, match=r"DEF/USE copies expand to \d+ faces.*AFFECTVLM_MAX_FACES"):
        load_mesh(data, "copies.wrl", limits=Limits(max_faces=len(m.faces) * 100))
    # within the limits the same file loads: every top-level DEF is drawn, each USE is a copy
    mesh = load_mesh(_vrml_bomb(2, shape), "few.wrl")
    assert len(mesh.faces) == len(m.faces) * (1 + 2 + 4)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("text", [
    "DEF A Group { children [ USE A USE A ] }",
    "DEF A Transform { children [ Group { children [ USE A ] } ] }",
])
def test_vrml_use_cycle_is_refused(text):
    with pytest.raises(InputError, match="DEF/USE cycle"):
        load_mesh(("#VRML V2.0 utf8\n" + text + "\n").encode(), "cycle.wrl")


@pytest.mark.timeout(30)
def test_vrml_nesting_depth_is_refused():
    text = "#VRML V2.0 utf8\n" + "Group { children [ " * 150 + "] } " * 150
    with pytest.raises(InputError, match="nested more than"):
        load_mesh(text.encode(), "deep.wrl")


@pytest.mark.timeout(30)
def test_predict_keeps_the_good_scan_beside_a_bomb(model, tmp_path):
    (tmp_path / "bomb.wrl").write_bytes(_vrml_bomb(22))
    write_vrml(tmp_path / "good.wrl", face_like_mesh(24), write_texture=False)
    rows = predict(str(tmp_path), model)
    assert [Path(r["file"]).name for r in rows] == ["bomb.wrl", "good.wrl"]
    assert "DEF/USE" in rows[0]["error"]
    _ok(rows[1])


# ------------------------------------------------------------------------------------- 2. folder walks
@pytest.fixture()
def looped(tmp_path):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "a.obj").write_bytes(_obj(face_like_mesh(20)))
    write_vrml(d / "b.wrl", face_like_mesh(20, smile=1.0), write_texture=False)
    (d / "sub" / "c.obj").write_bytes(_obj(face_like_mesh(20, smile=0.5)))
    os.symlink(".", d / "a")  # ln -s . d/a; ln -s . d/b: two loops
    os.symlink(".", d / "b")
    os.symlink("..", d / "sub" / "up")
    os.symlink("a.obj", d / "same_scan.obj")  # a second name for a scan already visited
    return d


@pytest.mark.timeout(30)
def test_symlink_loops_visit_each_scan_once(model, looped):
    rows = predict(str(looped), model)
    files = [r["file"] for r in rows]
    assert len(files) == len(set(files)) == 3
    assert sorted(Path(f).name for f in files) == ["a.obj", "b.wrl", "c.obj"]
    for r in rows:
        _ok(r)


def test_a_linked_loop_or_a_zip_name_without_a_zip_says_so(model, tmp_path):
    """A file linked to itself is a link loop, not a missing file; text named .zip is a broken zip, not an
    unsupported type; from a path and from bytes alike."""
    (tmp_path / "loop.obj").symlink_to("loop.obj")
    (tmp_path / "notes.zip").write_text("hello world")
    rows = predict([str(tmp_path / "loop.obj"), str(tmp_path / "notes.zip"), ("up.zip", b"hello world"),
                    str(tmp_path / "gone.obj")], model)
    assert [r["error"] for r in rows] == ["cannot read: Too many levels of symbolic links",
                                          "not a valid zip file (no zip header)",
                                          "not a valid zip file (no zip header)", "file not found"]


@pytest.fixture()
def locked(looped, monkeypatch):
    bad = looped / "locked"
    bad.mkdir()
    (bad / "hidden.obj").write_bytes(_obj(face_like_mesh(20)))
    bad.chmod(0)
    if os.geteuid() == 0:  # root reads anything: make the folder unreadable to this walk as well
        real = os.scandir

        def scandir(path="."):
            if os.path.realpath(path) == os.path.realpath(bad):
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)

        monkeypatch.setattr(os, "scandir", scandir)
    yield bad
    bad.chmod(0o755)


@pytest.mark.timeout(30)
def test_unreadable_subfolder_is_one_row_and_the_rest_survive(model, looped, locked):
    rows = predict(str(looped), model)
    errors = [r for r in rows if r["error"]]
    assert len(errors) == 1 and errors[0]["file"] == os.path.join(str(looped), "locked")
    assert "cannot list folder" in errors[0]["error"] and "Permission denied" in errors[0]["error"]
    good = [r for r in rows if not r["error"]]
    assert sorted(Path(r["file"]).name for r in good) == ["a.obj", "b.wrl", "c.obj"]
    for r in good:
        _ok(r)


# ------------------------------------------------------------------------------------- 3. signed view lists
@pytest.mark.parametrize("argv", [["--views", "-30,0,30"], ["--views=-30,0,30"], ["--view", "-30,0,30"]])
def test_cli_takes_signed_view_lists(argv):
    args = cli.build_parser().parse_args(["predict", "scan.wrl", *argv])
    assert args.views == "-30,0,30" and args.inputs == ["scan.wrl"]
    args = cli.build_parser().parse_args(["render", "scan.wrl", "--out", "o", *argv])
    assert [v.yaw for v in parse_views(args.views)] == [-30, 0, 30]


def test_trainer_takes_signed_view_lists():
    from affectvlm.trainconfig import build_parser

    assert build_parser().parse_args(["--views", "-30,0,30"]).views == "-30,0,30"
    assert build_parser().parse_args(["--views", "-10:5,20"]).views == "-10:5,20"


@pytest.mark.timeout(60)
def test_cli_render_with_negative_first_view(tmp_path):
    write_vrml(tmp_path / "face.wrl", face_like_mesh(20), write_texture=False)
    rc = cli.main(["render", str(tmp_path / "face.wrl"), "--out", str(tmp_path / "png"), "--views", "-30,0,30",
                   "--size", "32"])
    assert rc == 0 and len(list((tmp_path / "png").glob("*.png"))) == 3


@pytest.mark.parametrize("text, want", [
    ("-30,0,30", [(-30, 0), (0, 0), (30, 0)]),
    (" -30, 0, 30 ", [(-30, 0), (0, 0), (30, 0)]),
    ("-30 0 30", [(-30, 0), (0, 0), (30, 0)]),
    ("[-30, 0, 30]", [(-30, 0), (0, 0), (30, 0)]),
    ("-30:10; 0 : -5", [(-30, 10), (0, -5)]),
    ("\u221230\u00b0,+30\u00b0,", [(-30, 0), (30, 0)]),
])
def test_parse_views_takes_what_people_type(text, want):
    assert [(v.yaw, v.pitch) for v in parse_views(text)] == want


@pytest.mark.parametrize("text", ["", ",", "abc", "1:2:3", "nan", "0,inf", "0,:5"])
def test_parse_views_refuses_junk(text):
    with pytest.raises(ConfigError):
        parse_views(text)


# ------------------------------------------------------------------------------------- 7. smaller ones
@pytest.mark.timeout(30)
def test_too_small_or_flat_to_be_a_face_is_refused(model, tmp_path):
    (tmp_path / "tri.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    g = np.stack(np.meshgrid(np.arange(20.0), np.arange(20.0)), -1).reshape(-1, 2)
    flat = trimesh.Trimesh(np.c_[g, np.zeros(len(g))], [[i, i + 1, i + 20] for i in range(379) if i % 20 != 19],
                           process=False)
    flat.export(tmp_path / "flat.ply")
    (tmp_path / "face.obj").write_bytes(_obj(face_like_mesh(20)))
    rows = predict([str(tmp_path / "tri.obj"), str(tmp_path / "flat.ply"), str(tmp_path / "face.obj")], model)
    assert "too small to be a face" in rows[0]["error"] and "AFFECTVLM_MIN_FACE_VERTICES" in rows[0]["error"]
    assert rows[0]["label"] == "" and rows[0]["surprise"] is None
    assert "flat" in rows[1]["error"]
    _ok(rows[2])
    from affectvlm.mesh import MeshSequence
    from affectvlm.predict import predict_mesh

    with pytest.raises(InputError, match="too small"):
        predict_mesh(load_mesh(tmp_path / "tri.obj"), model)
    # a tiny frame of a sequence is that frame's error row; the others and the pooled row are scored
    frames = [face_like_mesh(20), load_mesh(tmp_path / "tri.obj"), face_like_mesh(20, smile=1)]
    rows = predict(MeshSequence(frames=frames, frame_ids=[0, 1, 2], source="seq"), model)
    assert [r["frame"] for r in rows] == [0, 1, 2, "sequence"]
    assert "too small" in rows[1]["error"]
    for i in (0, 2, 3):
        _ok(rows[i])


def _png_claiming(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h pixels but whose data holds one row (a decompression-bomb claim)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" + b"\x80" * 3 * w)) + chunk(b"IEND", b""))


def _png(w: int, h: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 120, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _glb(mesh, image: bytes, gltf: bool = False) -> bytes:
    """A binary glTF 2.0 file (``gltf``: a JSON one) of one textured triangle mesh with the given embedded PNG."""
    v = np.asarray(mesh.vertices, np.float32)
    uv = ((v[:, :2] - v[:, :2].min(0)) / np.ptp(v[:, :2], 0)).astype(np.float32)
    idx = np.asarray(mesh.faces, np.uint32).ravel()
    blobs = [v.tobytes(), uv.tobytes(), idx.tobytes(), image]
    views, binary = [], b""
    for b in blobs:
        views.append({"buffer": 0, "byteOffset": len(binary), "byteLength": len(b)})
        binary += b + b"\0" * (-len(b) % 4)
    header = {
        "asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1}, "indices": 2, "material": 0}]}],
        "materials": [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}],
        "textures": [{"source": 0}], "images": [{"bufferView": 3, "mimeType": "image/png", "name": "skin"}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": len(v), "type": "VEC3",
             "min": v.min(0).tolist(), "max": v.max(0).tolist()},
            {"bufferView": 1, "componentType": 5126, "count": len(uv), "type": "VEC2"},
            {"bufferView": 2, "componentType": 5125, "count": len(idx), "type": "SCALAR"}],
        "bufferViews": views, "buffers": [{"byteLength": len(binary)}],
    }
    if gltf:  # the JSON flavour, its buffer inline as a data: URI
        import base64

        header["buffers"][0]["uri"] = "data:application/octet-stream;base64," + base64.b64encode(binary).decode()
        return json.dumps(header).encode()
    js = json.dumps(header).encode()
    js += b" " * (-len(js) % 4)
    body = struct.pack("<I", len(js)) + b"JSON" + js + struct.pack("<I", len(binary)) + b"BIN\0" + binary
    return b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body


@pytest.mark.timeout(30)
def test_glb_texture_within_limits_loads(tmp_path):
    for ext in (".glb", ".gltf"):
        mesh = load_mesh(_glb(face_like_mesh(20), _png(64, 48), gltf=ext == ".gltf"), "ok" + ext)
        assert mesh.texture is not None and mesh.texture.shape == (48, 64, 3)
        assert not mesh.meta.get("warnings")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("side, ext", [(12000, ".glb"), (20000, ".glb"), (20000, ".gltf")])
def test_glb_huge_texture_keeps_the_mesh_with_a_note(model, tmp_path, side, ext):
    face = face_like_mesh(20)
    path = tmp_path / f"huge{side}{ext}"
    path.write_bytes(_glb(face, _png_claiming(side, side), gltf=ext == ".gltf"))
    mesh = load_mesh(path)
    assert mesh.texture is None and len(mesh.faces) == len(face.faces)
    note = " ".join(mesh.meta["warnings"])
    assert f"{side}x{side}" in note and "AFFECTVLM_MAX_TEXTURE_MPX" in note and "without texture" in note
    if side == 20000:  # over the limit raised, the image decoder still refuses it: noted, mesh kept
        mesh = load_mesh(path, limits=Limits(max_texture_pixels=side * side))
        assert mesh.texture is None and "cannot be decoded" in " ".join(mesh.meta["warnings"])
    rows = predict([str(path)], model)
    _ok(rows[0])


@pytest.mark.timeout(30)
def test_texture_beside_a_vrml_obeys_the_same_limit(tmp_path):
    write_vrml(tmp_path / "face.wrl", face_like_mesh(20), texture_name="face.png", write_texture=False)
    (tmp_path / "face.png").write_bytes(_png_claiming(20000, 20000))
    mesh = load_mesh(tmp_path / "face.wrl")
    assert mesh.texture is None and len(mesh.faces)
    assert any("20000x20000" in w for w in mesh.meta["warnings"])


@pytest.mark.timeout(30)
def test_control_characters_in_names_stay_on_one_line(model, tmp_path, capsys):
    name = "evil\nname\x1b[31m\r.obj"
    with pytest.raises(InputError) as e:
        load_mesh(b"v 1 2\nf 1 2 3\n", name)
    _one_line(str(e.value))
    assert e.value.source == name and "evil\\nname\\x1b[31m\\r.obj" in str(e.value)
    rows = predict([(name, b"v 1 2\nf 1 2 3\n")], model)
    assert rows[0]["file"] == name and rows[0]["error"]
    bad = tmp_path / "x\ny.obj"
    bad.write_text("junk")
    cli.main(["predict", str(bad), "--model", "AffectVLM-Test", "--no-progress", "--format", "csv"])
    err = capsys.readouterr().err
    assert "x\\ny.obj" in err and all(line.startswith("affectvlm") for line in err.strip().splitlines())


@pytest.mark.timeout(30)
def test_rows_show_the_users_name_not_a_temp_path(model, tmp_path):
    tmp = tmp_path / "affectvlm-upload-x1y2"
    tmp.mkdir()
    (tmp / "upload.obj").write_bytes(_obj(face_like_mesh(20)))
    (tmp / "broken.obj").write_text("v 1 2\nf 1 2 3\n")
    seq = tmp / "seq"
    seq.mkdir()
    for i in range(2):
        (seq / f"{i:03d}.obj").write_bytes(_obj(face_like_mesh(20, smile=i)))
    (seq / "002.obj").write_text("v 1 2\nf 1 2 3\n")
    rows = predict([("my scan.obj", tmp / "upload.obj"), ("bad scan.obj", str(tmp / "broken.obj")),
                    ("Angry", seq), ("bytes.obj", (tmp / "broken.obj").read_bytes())], model)
    # the sequence's unreadable frame is its own row; its two good frames and the pooled row are scored
    assert [r["file"] for r in rows] == ["my scan.obj", "bad scan.obj", *["Angry"] * 4, "bytes.obj"]
    assert [r["frame"] for r in rows[2:6]] == [0, 1, 2, "sequence"]
    _ok(rows[0])
    for r in rows[2:4] + rows[5:6]:
        _ok(r)
    for r in (rows[1], rows[4], rows[6]):
        assert r["error"] and str(tmp) not in r["error"] and "affectvlm-upload" not in r["error"]
    assert rows[4]["error"].startswith("frame 2: 002.obj: cannot read as OBJ"), rows[4]["error"]  # which frame failed


@pytest.mark.timeout(30)
def test_obj_texture_over_the_limit_is_noted(tmp_path):
    face = face_like_mesh(20)
    uv = (face.vertices[:, :2] - face.vertices[:, :2].min(0)) / np.ptp(face.vertices[:, :2], 0)
    lines = ["mtllib face.mtl"] + ["v %g %g %g" % tuple(v) for v in face.vertices]
    lines += ["vt %g %g" % tuple(t) for t in uv] + ["usemtl skin"]
    lines += ["f " + " ".join(f"{i + 1}/{i + 1}" for i in f) for f in face.faces]
    (tmp_path / "face.obj").write_text("\n".join(lines) + "\n")
    (tmp_path / "face.mtl").write_text("newmtl skin\nmap_Kd skin.png\n")
    (tmp_path / "skin.png").write_bytes(_png(32, 32))
    assert load_mesh(tmp_path / "face.obj").texture is not None
    for side in (12000, 20000):
        (tmp_path / "skin.png").write_bytes(_png_claiming(side, side))
        mesh = load_mesh(tmp_path / "face.obj")
        assert mesh.texture is None and len(mesh.faces) == len(face.faces)
        assert any(f"{side}x{side}" in w and "AFFECTVLM_MAX_TEXTURE_MPX" in w for w in mesh.meta["warnings"])


def test_a_zips_scans_are_decompressed_one_at_a_time_when_scored(tmp_path, monkeypatch):
    """predict and the Batch page decompressed every scan of a zip before the first was scored: a small upload at
    the allowed ratio could hold the whole unpacked budget in memory at once."""
    import affectvlm.io.archive as archive
    from affectvlm.app.batch import collect_batch, zip_bytes
    from affectvlm.inputs import expand

    face = face_like_mesh(12, textured=False)
    obj = trimesh.Trimesh(face.vertices, face.faces, process=False).export(file_type="obj").encode()
    data = zip_bytes([(f"scans/s{c}.obj", obj) for c in "abcd"])
    (tmp_path / "many.zip").write_bytes(data)
    reads: list[str] = []
    real = archive._read_member
    monkeypatch.setattr(archive, "_read_member", lambda zf, info, *a: reads.append(info.filename) or real(zf, info, *a))
    limits = Limits()
    for listed in (lambda: expand([str(tmp_path / "many.zip")], limits=limits, frames=None, every=1),  # predict
                   lambda: expand(collect_batch([("many.zip", data)], limits=limits).inputs, limits=limits,
                                  frames=None, every=1)):  # the Batch page
        items = listed()
        assert [it.kind for it in items] == ["scan"] * 4 and reads == []  # listed, nothing decompressed
        for k, it in enumerate(items):
            assert len(it.load().vertices) == len(face.vertices) and len(reads) == k + 1  # one member at its turn
        assert items[0].load() is not None and len(reads) == 5  # read again (e.g. to adapt): still fine
        reads.clear()
