"""Every kind of bad input gives one clear `InputError` naming the file and the problem."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from fixtures_formats import bnt_face_grid, write_format
from meshgen import face_like_mesh

from affectvlm.errors import InputError
from affectvlm.io import load_mesh
from affectvlm.io.bnt import write_bnt
from affectvlm.limits import Limits
from affectvlm.mesh import Mesh

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


@pytest.fixture(scope="module")
def face() -> Mesh:
    return face_like_mesh(12, textured=False)


def _raises(data: bytes, name: str, problem: str, **kw) -> InputError:
    with pytest.raises(InputError, match=problem) as err:
        load_mesh(data, name, **kw)
    assert err.value.source == name
    return err.value


def test_size_limit_checked_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "big.obj"
    path.write_bytes(b"v 0 0 0\n" * 200)
    read = []
    monkeypatch.setattr(type(path), "read_bytes", lambda self: read.append(self) or b"")
    with pytest.raises(InputError, match="over the limit") as err:
        load_mesh(path, limits=Limits(max_file_bytes=100))
    assert not read and str(path) in str(err.value)


def test_size_limit_on_bytes():
    _raises(b"x" * 2000, "up.obj", "over the limit", limits=Limits(max_file_bytes=1000))


@pytest.mark.parametrize("name", ["e.obj", "e.ply", "e.stl", "e.off", "e.glb", "e.wrl", "e.bnt"])
def test_empty_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_mesh(tmp_path / name)
    _raises(b"  \n\t", name, "empty")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        load_mesh(tmp_path / "nope.obj")
    with pytest.raises(InputError, match="folder"):
        load_mesh(tmp_path)


@pytest.mark.parametrize("data,name,problem", [
    (PNG, "face.obj", "PNG image"),
    (PNG, "face.wrl", "PNG image"),
    (b"PK\x03\x04" + b"\0" * 40, "face.ply", "zip archive"),
    (b"hello, this is just a text file\n" * 4, "face.glb", "missing 'glTF' magic"),
    (b"hello, this is just a text file\n" * 4, "face.obj", "not an OBJ"),
    (b"hello\n", "face.xyz", "unsupported file type"),
    (b"hello\n", "README", "unsupported file type"),
    (bytes(range(256)) * 4, "face.off", "binary data"),
])
def test_wrong_type(data, name, problem):
    _raises(data, name, problem)


def test_an_image_is_named_for_what_it_is():
    assert "despite the .obj extension" in str(_raises(PNG, "face.obj", "PNG image"))
    said = str(_raises(PNG, "F0001_HA04WH_F3D.png", "PNG image"))  # a scan's texture, caught by a shell glob
    assert "despite" not in said and "texture? give the mesh file" in said
    assert "despite" not in str(_raises(PNG, "photo", "PNG image"))


def test_truncated_files(tmp_path, face):
    for name, kw in [("t.ply", {"binary": True}), ("t.stl", {"binary": True}), ("t.glb", {})]:
        data = write_format(tmp_path / name, face, **kw).read_bytes()
        _raises(data[: len(data) // 2], name, "truncated|corrupt")
    ascii_ply = write_format(tmp_path / "a.ply", face, binary=False).read_bytes()
    _raises(ascii_ply[: len(ascii_ply) // 2], "a.ply", "truncated|corrupt")
    wrl = write_format(tmp_path / "t.wrl", face).read_bytes()
    _raises(wrl[: len(wrl) // 2], "t.wrl", "truncated|never closed")
    xyz, bg = bnt_face_grid(10, 8)
    bnt = write_bnt(tmp_path / "t.bnt", xyz, background=bg).read_bytes()
    _raises(bnt[:-100], "t.bnt", "truncated")


def test_hostile_headers_claiming_huge_counts():
    ply = b"ply\nformat binary_little_endian 1.0\nelement vertex 4000000000\nproperty float x\n" \
          b"property float y\nproperty float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
    _raises(ply + b"\0" * 100, "huge.ply", "over the limit")
    ply_small = ply.replace(b"4000000000", b"4000000")
    _raises(ply_small + b"\0" * 100, "huge.ply", "truncated")
    stl = b"\0" * 80 + struct.pack("<I", 0xFFFFFFF0) + b"\0" * 100
    _raises(stl, "huge.stl", "not an STL file: read as binary STL its header declares 4294967280 triangles")
    stl2 = b"\0" * 80 + struct.pack("<I", 1000) + b"\0" * 100
    _raises(stl2, "huge.stl", "truncated")
    off = b"OFF\n900000000 900000000 0\n0 0 0\n"
    _raises(off, "huge.off", "over the limit")
    bnt = struct.pack("<HHdH", 20000, 20000, -1e9, 0) + struct.pack("<I", 20000 * 20000 * 5) + b"\0" * 64
    _raises(bnt, "huge.bnt", "over the limit")
    bnt_lie = struct.pack("<HHdH", 10, 10, -1e9, 0) + struct.pack("<I", 0xFFFFFFFF) + b"\0" * 64
    _raises(bnt_lie, "lie.bnt", "corrupt")


def test_limits_on_counts(tmp_path, face):
    path = write_format(tmp_path / "f.ply", face)
    with pytest.raises(InputError, match="vertices, over the limit"):
        load_mesh(path, limits=Limits(max_vertices=10))
    with pytest.raises(InputError, match="faces, over the limit"):
        load_mesh(path, limits=Limits(max_faces=10))
    wrl = write_format(tmp_path / "f.wrl", face)
    with pytest.raises(InputError, match="over the limit"):
        load_mesh(wrl, limits=Limits(max_faces=10))


def test_non_finite_coordinates():
    obj = b"v 0 0 0\nv 1 0 0\nv 0 nan 0\nv 1 1 1\nf 1 2 3\nf 1 2 4\n"
    _raises(obj, "nan.obj", "non-finite")
    ply = b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n" \
          b"element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 inf 0\n0 1 0\n3 0 1 2\n"
    _raises(ply, "inf.ply", "non-finite")


def test_face_index_out_of_range():
    off = b"OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 9\n"
    _raises(off, "oob.off", "out of range|corrupt")
    ply = b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n" \
          b"element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n3 0 1 5\n"
    _raises(ply, "oob.ply", "out of range|corrupt")


def test_no_faces():
    _raises(b"v 0 0 0\nv 1 0 0\nv 0 1 0\n", "cloud.obj", "no faces")
    ply = b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n" \
          b"end_header\n0 0 0\n1 0 0\n0 1 0\n"
    _raises(ply, "cloud.ply", "no faces")
    xyz, _ = bnt_face_grid(6, 5)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        data = write_bnt(f"{d}/bg.bnt", xyz, background=np.ones(xyz.shape[:2], bool)).read_bytes()
    _raises(data, "bg.bnt", "no faces")


def test_degenerate_meshes():
    _raises(b"v 1 1 1\nv 1 1 1\nv 1 1 1\nf 1 2 3\n", "point.obj", "zero extent")
    _raises(b"v 0 0 0\nv 1 1 1\nv 2 2 2\nv 3 3 3\nf 1 2 3\nf 2 3 4\n", "line.obj", "one line")


def test_corrupt_glb_json():
    body = b'{"asset": {"version": "2.0"}, "meshes": [{"primitives": [{"attributes": {"POSITION": 7}}]}]}'
    body += b" " * (-len(body) % 4)
    glb = b"glTF" + struct.pack("<II", 2, 12 + 8 + len(body)) + struct.pack("<I4s", len(body), b"JSON") + body
    _raises(glb, "bad.glb", "GLB|no faces")


def test_a_byte_order_mark_or_no_extension_reads_as_the_text_it_holds(tmp_path, face):
    """A UTF-8 BOM (Windows editors) shifted every OBJ face one vertex or refused a VRML file; OBJ frames without
    an extension (BP4D's may have none) were accepted by the dataset reader and then refused here."""
    from fixtures_formats import write_format

    for ext in (".obj", ".wrl"):
        plain = write_format(tmp_path / f"plain{ext}", face, textured=False)
        ref = load_mesh(plain)
        bom = tmp_path / f"bom{ext}"
        bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
        got = load_mesh(bom)
        assert np.array_equal(got.faces, ref.faces) and np.allclose(got.vertices, ref.vertices), ext
    bare = tmp_path / "0000"
    bare.write_bytes((tmp_path / "plain.obj").read_bytes())
    assert np.allclose(load_mesh(bare).vertices, load_mesh(tmp_path / "plain.obj").vertices)
    _raises(b"just some notes\nand more\n", "notes.txt", r"unsupported file type \(\.txt\)")


def test_a_fifo_named_as_a_scan_is_refused_not_waited_on(tmp_path):
    import os

    from affectvlm.inputs import expand

    fifo = tmp_path / "scan.wrl"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        load_mesh(fifo)
    items = expand([str(fifo)], limits=Limits(), frames=None, every=1)
    assert [(it.kind, it.error) for it in items] == [("error", "not a regular file (a pipe, socket or device)")]


def test_a_zip_with_two_members_of_one_name_is_refused():
    from affectvlm.app.batch import zip_bytes
    from affectvlm.io.archive import SafeZip

    with pytest.warns(UserWarning, match="Duplicate name"):
        data = zip_bytes([("a.obj", b"v 0 0 0\n"), ("a.obj", b"v 1 1 1\n")])
    with pytest.raises(InputError, match="two members named 'a.obj'"):
        SafeZip(data, Limits(), "dup.zip")


def test_an_obj_whose_faces_index_their_uvs_apart_keeps_each_corners_uv(tmp_path):
    """Seams and per-face UVs (``f 1/4 3/5 4/6``): keeping the file's vertex order, trimesh gave each vertex one of its
    corners' coordinates, and the texture was laid on wrong without a word."""
    from PIL import Image

    n = 10
    xs, ys = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n))
    lines = ["mtllib s.mtl", "usemtl m"] + [f"v {x:.4f} {y:.4f} {0.3 * np.cos(x):.4f}" for x, y in
                                            zip(xs.ravel(), ys.ravel())]
    want, k = [], 0
    rng = np.random.default_rng(0)
    for r in range(n - 1):
        for c in range(n - 1):
            a = r * n + c + 1
            for tri in ((a, a + 1, a + n + 1), (a, a + n + 1, a + n)):
                uv = rng.uniform(0, 1, (3, 2))  # each face its own corners: every vertex on a seam
                lines += [f"vt {u:.4f} {v:.4f}" for u, v in uv]
                lines.append("f " + " ".join(f"{i}/{k + j + 1}" for j, i in enumerate(tri)))
                want.append(np.round(uv, 4))
                k += 3
    (tmp_path / "s.obj").write_text("\n".join(lines) + "\n")
    (tmp_path / "s.mtl").write_text("newmtl m\nmap_Kd s.png\n")
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "s.png")
    m = load_mesh(tmp_path / "s.obj")
    assert len(m.vertices) == n * n and np.allclose(m.vertices[:3], [[-1, -1, 0.3 * np.cos(-1)], [-1 + 2 / 9, -1, 0.3 *
                                                                     np.cos(-1 + 2 / 9)], [-1 + 4 / 9, -1, 0.3 * np.cos(-1 + 4 / 9)]], atol=1e-4)  # file order
    assert m.texture is not None and np.allclose(m.face_uv, np.array(want), atol=1e-4)
    assert load_mesh(tmp_path / "s.obj", texture=False).face_uv is None  # not asked for: none rather than wrong ones


def test_an_obj_of_textured_quads_keeps_its_texture_coordinates(tmp_path):
    """trimesh, keeping the file's vertex order, dropped the UVs of quad faces: the scan rendered grey, unsaid."""
    from PIL import Image

    n = 12
    xs, ys = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1.2, 1.2, n))
    zs = 0.4 * np.cos(xs * 1.3) * np.cos(ys)
    lines = ["mtllib q.mtl", "usemtl m"] + [f"v {x:.4f} {y:.4f} {z:.4f}" for x, y, z in
                                            zip(xs.ravel(), ys.ravel(), zs.ravel())]
    lines += [f"vt {(x + 1) / 2:.4f} {(y + 1.2) / 2.4:.4f}" for x, y in zip(xs.ravel(), ys.ravel())]
    for r in range(n - 1):
        for c in range(n - 1):
            a = r * n + c + 1
            lines.append(f"f {a}/{a} {a + 1}/{a + 1} {a + n + 1}/{a + n + 1} {a + n}/{a + n}")
    (tmp_path / "q.obj").write_text("\n".join(lines) + "\n")
    (tmp_path / "q.mtl").write_text("newmtl m\nmap_Kd q.png\n")
    img = np.zeros((16, 16, 3), np.uint8)
    img[:8] = (255, 0, 0)
    Image.fromarray(img).save(tmp_path / "q.png")
    mesh = load_mesh(tmp_path / "q.obj")
    assert mesh.face_uv is not None and mesh.texture is not None and len(mesh.faces) == 2 * (n - 1) ** 2


def test_an_obj_written_with_zero_based_indices_is_refused(face):
    """'f 0 1 2' (index 0 does not exist in OBJ) loaded as faces on other vertices, silently."""
    text = "".join(f"v {x:.4f} {y:.4f} {z:.4f}\n" for x, y, z in face.vertices)
    good = text + "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in face.faces)
    assert len(load_mesh(good.encode(), "good.obj").faces) == len(face.faces)
    zero = text + "".join(f"f {a}/{a} {b}/{b} {c}/{c}\n" for a, b, c in face.faces)
    err = _raises(zero.encode(), "zero.obj", "OBJ vertex indices start at 1")
    assert f"line {len(face.vertices) + 1}" in str(err) or "line " in str(err)


def test_an_obj_cut_inside_a_record_is_refused(face):
    """An OBJ has no counts to check: one cut inside its face list used to load as the faces before the cut, scored
    without a word. A last line left inside a record (values missing or cut) says the file was cut short."""
    text = "".join(f"v {x:.4f} {y:.4f} {z:.4f}\n" for x, y, z in face.vertices)
    faces = "".join(f"f {a + 1}/{a + 1} {b + 1}/{b + 1} {c + 1}/{c + 1}\n" for a, b, c in face.faces)
    data = (text + faces).encode()
    for end in (len(text) + len(faces) * 2 // 5, len(text) // 2):  # a face line, a vertex line
        start, line_end = data.rindex(b"\n", 0, end) + 1, data.index(b"\n", end)
        line = data[start:line_end]
        ends = [line.index(b" ") + 1, line.index(b" ") + 2, line.rindex(b" "), line.rindex(b" ") + 1]
        if line.startswith(b"f"):
            ends.append(len(line) - len(line.split(b"/")[-1]))  # "f 1/1 2/2 3/"
        for k in ends:
            _raises(data[:start + k], "cut.obj", "ends inside a '[fv]' record")
    face_line_end = data.index(b"\n", len(text) + len(faces) * 2 // 5)
    assert len(load_mesh(data[:face_line_end + 1], "whole.obj").faces) < len(face.faces)  # cut at a line's end
    assert len(load_mesh(data.rstrip(b"\n"), "no-newline.obj").faces) == len(face.faces)  # no last newline is fine
    # whole last lines without a line end, as exporters write them, still read
    for corners in ("{0}/{0}/ {1}/{1}/ {2}/{2}/", "+{0} +{1} +{2}", "{0}//{0} {1}//{1} {2}//{2}", "-3 -2 -1"):
        tail = "".join(f"f {corners.format(a + 1, b + 1, c + 1)}\n" for a, b, c in face.faces).rstrip("\n")
        assert len(load_mesh((text + tail).encode(), "whole.obj").faces) > 0, corners


def test_stl_in_capitals_and_a_binary_stl_whose_header_reads_as_ascii_load(face):
    import trimesh

    t = trimesh.Trimesh(face.vertices, face.faces, process=False)
    ascii_stl = trimesh.exchange.stl.export_stl_ascii(t).upper().encode()  # SOLID / FACET NORMAL / ENDSOLID
    assert len(load_mesh(ascii_stl, "upper.stl").faces) == len(face.faces)
    binary = bytearray(trimesh.exchange.stl.export_stl(t))
    binary[:80] = b"solid exported facet normal".ljust(80)  # some exporters write 'solid' in a binary header
    assert len(load_mesh(bytes(binary), "hdr.stl").faces) == len(face.faces)


def test_an_objs_texture_in_a_sub_folder_is_found_and_one_outside_is_not(tmp_path):
    """``map_Kd textures/skin.png`` (and a glTF's ``textures/...`` uri) was cut to its base name and lost without a
    word; a missing .mtl said nothing; ``map_Kd -s 1 1 1 skin.png`` (options) was not found."""
    import zipfile

    from PIL import Image

    from affectvlm.inputs import expand

    (tmp_path / "scan" / "textures").mkdir(parents=True)
    Image.fromarray(np.full((8, 8, 3), (200, 30, 30), np.uint8)).save(tmp_path / "scan" / "textures" / "skin.png")
    Image.fromarray(np.full((8, 8, 3), (30, 200, 30), np.uint8)).save(tmp_path / "secret.png")  # outside the folder
    obj = ("mtllib m.mtl\nusemtl skin\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\n"
           "f 1/1 2/2 3/3\nf 1/1 3/3 4/4\n")
    (tmp_path / "scan" / "a.obj").write_text(obj)

    def colour(mesh):
        return None if mesh.texture is None else tuple(int(c) for c in np.asarray(mesh.texture)[0, 0, :3])

    for map_line, want in (("map_Kd textures/skin.png", (200, 30, 30)), ("map_Kd -s 1 1 1 textures/skin.png",
                                                                         (200, 30, 30)), ("map_Kd ../secret.png", None)):
        (tmp_path / "scan" / "m.mtl").write_text(f"newmtl skin\nKd 1 1 1\n{map_line}\n")
        m = load_mesh(tmp_path / "scan" / "a.obj")
        assert colour(m) == want, map_line
    (tmp_path / "scan" / "m.mtl").write_text("newmtl skin\nmap_Kd textures/skin.png\n")
    with zipfile.ZipFile(tmp_path / "s.zip", "w") as z:
        for f in ("a.obj", "m.mtl", "textures/skin.png"):
            z.write(tmp_path / "scan" / f, f"scan/{f}")
    (item,) = expand([tmp_path / "s.zip"], limits=Limits(), frames=None, every=1, texture=True)
    assert colour(item.load()) == (200, 30, 30)
    (tmp_path / "scan" / "m.mtl").unlink()
    assert "'m.mtl' not found beside the file" in load_mesh(tmp_path / "scan" / "a.obj").meta["warnings"][0]
    # a dataset of file links (cp -rs, git-annex, DataLad: each file a link into a store) keeps its textures, beside
    # the mesh and in its sub-folder, as its meshes are read through their links
    (tmp_path / "scan" / "m.mtl").write_text("newmtl skin\nmap_Kd textures/skin.png\n")
    for f in ("a.obj", "m.mtl", "textures/skin.png"):
        (tmp_path / "farm" / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "farm" / f).symlink_to(tmp_path / "scan" / f)
    assert colour(load_mesh(tmp_path / "farm" / "a.obj")) == (200, 30, 30)
    (tmp_path / "farm" / "m.mtl").unlink()
    (tmp_path / "farm" / "m.mtl").write_text("newmtl skin\nmap_Kd Skin.png\n")
    (tmp_path / "farm" / "skin.png").symlink_to(tmp_path / "scan" / "textures" / "skin.png")
    assert colour(load_mesh(tmp_path / "farm" / "a.obj")) == (200, 30, 30)


def test_an_obj_with_tabs_after_its_keywords_reads_as_with_spaces(face):
    text = "".join(f"v\t{x:.4f} {y:.4f}\t{z:.4f}\n" for x, y, z in face.vertices)
    text += "".join(f"f\t{a + 1}\t{b + 1} {c + 1}\n" for a, b, c in face.faces)
    m = load_mesh(text.encode(), "tabs.obj")  # it said "the file holds no faces"
    assert len(m.faces) == len(face.faces) and np.allclose(m.vertices, face.vertices, atol=1e-4)


def test_relative_obj_indices_count_from_where_the_face_line_stands(face):
    """``f -3 -2 -1`` after each block of vertices (a valid OBJ way): trimesh counted them from the file's end, and
    every block's faces took the last block's vertices, without a word."""
    half = len(face.vertices) // 2
    blocks = [face.faces[np.all(face.faces < half, 1)], face.faces[np.all(face.faces >= half, 1)]]
    text, absolute = "", ""
    for start, stop, fs in ((0, half, blocks[0]), (half, len(face.vertices), blocks[1])):
        vs = "".join(f"v {x:.4f} {y:.4f} {z:.4f}\n" for x, y, z in face.vertices[start:stop])
        text += vs + "".join(f"f {a - stop} {b - stop} {c - stop}\n" for a, b, c in fs)  # -1: the last vertex so far
        absolute += vs + "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in fs)
    rel, ab = load_mesh(text.encode(), "rel.obj"), load_mesh(absolute.encode(), "abs.obj")
    assert np.array_equal(rel.faces, ab.faces) and np.allclose(rel.vertices, ab.vertices)


def test_obj_uvs_and_indices_from_a_review_of_the_readers(tmp_path):
    quad = ("mtllib gone.mtl\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 2 0 0\nv 2 1 0\n"
            "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nvt 0.5 0\nvt 0.5 1\nvt 0.7 0\n"
            "f 1/1 2/2 3/3 4/4\nf 2/5 5/7 6/6 3/3\n")  # quads, UVs apart from vertices, the .mtl missing
    (tmp_path / "q.obj").write_text(quad)
    m = load_mesh(tmp_path / "q.obj")
    assert m.face_uv is not None and "'gone.mtl' not found" in m.meta["warnings"][0]
    per_vertex = "v 0 0 0\nv 1 0 0\nv 1 1 0\nvt 0 0\nvt 1 0\nvt 1 1\nf 1/1 2/2 3/3\n"  # 'v' on the first line
    assert load_mesh(per_vertex.encode(), "p.obj", texture=False).face_uv is not None  # not taken for split UVs
    assert len(load_mesh(("  " + per_vertex.replace("\n", "\n  ")).encode(), "indented.obj").faces) == 1
    with pytest.raises(InputError, match="face index -5 refers before the first vertex"):
        load_mesh(b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf -5 -2 -1\nv 2 2 0\nv 3 3 0\n", "over.obj")

