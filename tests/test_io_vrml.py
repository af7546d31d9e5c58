"""The VRML reader on files in the exact BU-3DFE/BU-4DFE Tricorder layout, and against pyvista/VTK."""
from __future__ import annotations

import numpy as np
import pytest
from fixtures_formats import bmp_texture, polygon_grid, scanner_vrml_text
from meshgen import face_like_mesh

from affectvlm.errors import InputError
from affectvlm.io import load_mesh
from affectvlm.io.vrml import read_vrml, write_vrml


def _fan(polys):
    return np.array([[p[0], p[k], p[k + 1]] for p in polys for k in range(1, len(p) - 1)])


@pytest.mark.parametrize("index_commas", [False, True])
def test_scanner_layout_polygons_and_texcoords(tmp_path, index_commas):
    verts, polys = polygon_grid()
    # texCoordIndex differs from coordIndex: per-corner UVs numbered in corner order
    uv_polys, uv, k = [], [], 0
    for p in polys:
        uv_polys.append(list(range(k, k + len(p))))
        uv.extend([(verts[i, 0] / 200.0, (verts[i, 1] + 60) / 100.0) for i in p])
        k += len(p)
    uv = np.array(uv)
    tex = bmp_texture(tmp_path / "F0001_AN01WH_F3D.bmp")
    text = scanner_vrml_text(verts, polys, uv=uv, uv_polys=uv_polys, texture="F0001_AN01WH_F3D.bmp",
                             index_commas=index_commas)
    assert "TextureCoordinate" in text and "Viewpoint" in text
    path = tmp_path / "F0001_AN01WH_F3D.wrl"
    path.write_text(text)
    m = load_mesh(path)
    assert m.n_vertices == len(verts)  # the TextureCoordinate points were not taken as geometry
    np.testing.assert_allclose(m.vertices, verts, atol=1e-4)
    np.testing.assert_array_equal(m.faces, _fan(polys))
    assert m.n_faces == 2 * (len(polys) - 1) + 3  # quads -> 2, the pentagon -> 3
    expect_uv = uv[_fan(uv_polys)]
    np.testing.assert_allclose(m.face_uv, expect_uv, atol=1e-6)
    np.testing.assert_array_equal(m.texture, tex)
    assert m.meta["texture_file"] == "F0001_AN01WH_F3D.bmp"


def test_last_polygon_without_terminator_and_no_texcoord_index(tmp_path):
    verts, polys = polygon_grid(pentagons=False)
    uv = verts[:, :2] / 100.0
    text = scanner_vrml_text(verts, polys, uv=uv, uv_polys=None, texture=None, last_terminator=False,
                             comments=False, viewpoints=False)
    m = read_vrml(text.encode(), "x.wrl")
    np.testing.assert_array_equal(m.faces, _fan(polys))
    np.testing.assert_allclose(m.face_uv, uv[_fan(polys)], atol=1e-6)  # texCoordIndex defaults to coordIndex


def test_writer_matches_scanner_layout_and_round_trips(tmp_path):
    face = face_like_mesh(30)
    path = write_vrml(tmp_path / "000.wrl", face, index_commas=True)
    text = path.read_text()
    assert text.startswith("#VRML V2.0 utf8\n#Tricorder Technology plc - 2000")
    for part in ("DEF Tricorder_object Transform", 'url "000.bmp"', "coordIndex [", "texCoord TextureCoordinate",
                 "texCoordIndex [", "DEF Tricorder_Camera_Front Viewpoint", ", -1,"):
        assert part in text
    assert (tmp_path / "000.bmp").is_file()
    point_block = text.split("point [", 1)[1].split("]", 1)[0].strip()
    assert not point_block.endswith(",")  # last point without trailing comma
    m = load_mesh(path)
    np.testing.assert_allclose(m.vertices, face.vertices, atol=1e-3)
    np.testing.assert_array_equal(m.faces, face.faces)
    np.testing.assert_allclose(m.face_uv, face.face_uv, atol=1e-6)
    np.testing.assert_array_equal(m.texture, face.texture)


def test_several_shapes_transforms_def_use_and_unknown_nodes():
    text = """#VRML V2.0 utf8
# two shapes; the second reuses the first's coordinates through USE, inside a translated Transform
WorldInfo { title "t" info [ "a", "b" ] }
NavigationInfo { type [ "EXAMINE", "ANY" ] }
Background { skyColor [ 0.1 0.2 0.3 ] }
PROTO Thing [ field SFFloat size 1 ] { Group { } }
Group { children [
  Shape { geometry IndexedFaceSet { coord DEF C Coordinate { point [ 0 0 0, 1 0 0, 1 1 0, 0 1 0 ] }
                                    coordIndex [ 0 1 2 3 -1 ] } }
  Transform { translation 10 0 0 scale 2 2 2 children [
    Shape { appearance Appearance { material Material { diffuseColor 1 0 0 } }
            geometry IndexedFaceSet { ccw FALSE coord USE C coordIndex [ 0, 1, 2, -1 ] } } ] }
  Shape { geometry IndexedLineSet { coord Coordinate { point [ 5 5 5, 6 6 6 ] } coordIndex [ 0 1 -1 ] } }
] }
DEF Cam Viewpoint { position 0 0 10 description "front" }
ROUTE Cam.bindTime TO Cam.set_bind
"""
    m = read_vrml(text, "multi.wrl")
    assert m.meta["n_shapes"] == 2 and m.n_vertices == 8 and m.n_faces == 3
    np.testing.assert_allclose(m.vertices[4:], [[10, 0, 0], [12, 0, 0], [12, 2, 0], [10, 2, 0]])
    np.testing.assert_array_equal(m.faces, [[0, 1, 2], [0, 2, 3], [4, 6, 5]])  # ccw FALSE flipped


def test_rotation_transform_and_vertex_colours():
    text = """#VRML V2.0 utf8
Transform { rotation 0 0 1 1.5707963 children Shape { geometry IndexedFaceSet {
  coord Coordinate { point [ 1 0 0, 0 1 0, 0 0 1 ] } coordIndex [ 0 1 2 ]
  color Color { color [ 1 0 0, 0 1 0, 0 0 1 ] } } } }
"""
    m = read_vrml(text, "rot.wrl")
    np.testing.assert_allclose(m.vertices, [[0, 1, 0], [-1, 0, 0], [0, 0, 1]], atol=1e-6)
    np.testing.assert_array_equal(m.vertex_colors, [[255, 0, 0], [0, 255, 0], [0, 0, 255]])


@pytest.mark.parametrize("text,problem", [
    ("#VRML V1.0 ascii\nSeparator { }", "VRML 1.0"),
    ("Shape { }", "not a VRML 2.0"),
    ("#VRML V2.0 utf8\nShape { geometry IndexedFaceSet { coord Coordinate { point [ 0 0 0, 1 0 0, 0 1 0 ] }",
     "truncated"),
    ("#VRML V2.0 utf8\nShape { geometry IndexedFaceSet { coord Coordinate { point [ 0 0 0, 1 0 0, 0 1 0 ",
     "never closed"),
    ("#VRML V2.0 utf8\nShape { geometry IndexedFaceSet { coord Coordinate { point [ 0 0 0, 1 x 0, 0 1 0 ] }"
     " coordIndex [ 0 1 2 -1 ] } }", "not a number"),
    ("#VRML V2.0 utf8\nShape { geometry IndexedFaceSet { coord Coordinate { point [ 0 0 0, 1 0 0, 0 1 0 ] }"
     " coordIndex [ 0 1 7 -1 ] } }", "refers to vertex 7"),
    ("#VRML V2.0 utf8\nShape { geometry IndexedFaceSet { coord Coordinate { point [ 0 0 0, 1 0 0, 0 1 ] }"
     " coordIndex [ 0 1 2 -1 ] } }", "multiple of 3"),
    ("#VRML V2.0 utf8\nShape { geometry IndexedFaceSet { coord Coordinate { point [ 0 0 0, 1 nan 0, 0 1 0 ] }"
     " coordIndex [ 0 1 2 -1 ] } }", "non-finite"),
    ("#VRML V2.0 utf8\nViewpoint { position 0 0 1 }", "no IndexedFaceSet"),
    ("#VRML V2.0 utf8\nShape { geometry IndexedFaceSet { coord Coordinate { point [ 0 0 0, 1 1 1, 2 2 2 ] }"
     " coordIndex [ 0 1 2 -1 ] } }", "one line"),
])
def test_bad_vrml(text, problem):
    with pytest.raises(InputError, match=problem) as err:
        read_vrml(text.encode(), "bad.wrl")
    assert "bad.wrl" in str(err.value)


def _pyvista():
    pv = pytest.importorskip("pyvista")
    return pv


def _pv_points(pv, path) -> np.ndarray:
    data = pv.read(str(path))
    if isinstance(data, pv.MultiBlock):
        data = data.combine()
    return np.asarray(data.points, np.float64)


def _rows(a: np.ndarray, decimals: int = 3) -> set:
    return set(map(tuple, np.round(np.asarray(a, np.float64), decimals).tolist()))


def test_same_vertices_as_pyvista_on_scanner_file(tmp_path):
    pv = _pyvista()
    face = face_like_mesh(20)
    path = write_vrml(tmp_path / "F0002_FE03BL_F3D.wrl", face)
    ours = load_mesh(path)
    theirs = _pv_points(pv, path)  # VTK splits vertices per texture corner; compare as sets
    assert _rows(theirs) == _rows(ours.vertices)


def test_reads_vrml_written_by_vtk_exporter(tmp_path):
    pv = _pyvista()
    face = face_like_mesh(16, textured=False)
    faces = np.hstack([np.full((face.n_faces, 1), 3), face.faces]).ravel()
    poly = pv.PolyData(face.vertices.astype(np.float64), faces)
    pl = pv.Plotter(off_screen=True)
    pl.add_mesh(poly)
    path = tmp_path / "vtk.wrl"
    pl.export_vrml(str(path))
    pl.close()
    m = load_mesh(path)
    assert m.n_faces == poly.n_cells
    assert _rows(m.vertices) == _rows(poly.points)


def test_hostile_nesting_and_cycles_are_input_errors():
    deep = "#VRML V2.0 utf8\n" + "Group { children [ " * 5000 + "]}" * 5000
    with pytest.raises(InputError, match="nested more than 100"):
        read_vrml(deep, "deep.wrl")
    cyclic = "#VRML V2.0 utf8\nDEF A Group { children [ Shape { } ] }\nGroup { children [ USE A ] }\n"
    with pytest.raises(InputError, match="no IndexedFaceSet"):
        read_vrml(cyclic, "c.wrl")


def test_utf8_texture_name(tmp_path):
    verts, polys = polygon_grid(pentagons=False)
    text = scanner_vrml_text(verts, polys, uv=verts[:, :2] / 100, texture="visage_é.bmp")
    (tmp_path / "s.wrl").write_bytes(text.encode("utf-8"))
    bmp_texture(tmp_path / "visage_é.bmp")
    assert load_mesh(tmp_path / "s.wrl").has_texture


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_a_bracket_inside_a_comment_in_a_number_list_does_not_close_it(eol):
    """The fast number-list reader took the first ']' for the list's end, even one inside a comment."""
    text = eol.join(["#VRML V2.0 utf8", "Shape { geometry IndexedFaceSet {", "  coord Coordinate { point [",
                     "    0 0 0, 1 0 0,  # corners [0] and [1] checked", "    1 1 0, 0 1 0 ] }",
                     "  coordIndex [ 0 1 2 3 -1  # one quad ]", "  ] } }", ""])
    m = read_vrml(text, "commented.wrl")
    assert m.n_vertices == 4 and m.n_faces == 2


def test_a_gzip_compressed_vrml_file_is_read_within_the_limits(tmp_path):
    """VRML97 allows gzip-compressed .wrl files; they were refused as 'gzip-compressed data'."""
    import gzip

    from affectvlm.limits import Limits

    plain = write_vrml(tmp_path / "face.wrl", face_like_mesh(10, textured=False)).read_bytes()
    packed = gzip.compress(plain)
    assert load_mesh(packed, "face.wrl").n_vertices == load_mesh(plain, "face.wrl").n_vertices
    with pytest.raises(InputError, match="file limit"):
        load_mesh(gzip.compress(plain + b" " * 4_000_000), "bomb.wrl", limits=Limits(max_file_bytes=1_000_000))
    with pytest.raises(InputError, match="cut short"):
        load_mesh(packed[: len(packed) // 2], "cut.wrl")
    for name in ("face.wrz", "face.wrl.gz", "FACE.VRML.GZ"):  # VRML97's other names for it
        assert load_mesh(packed, name).n_vertices == load_mesh(plain, "face.wrl").n_vertices


def test_x3d_classic_header_statements_are_skipped():
    """'#X3D' files were accepted, but their required PROFILE line was 'expected {'."""
    text = ("#X3D V3.0 utf8\nPROFILE Interchange\nCOMPONENT Geometry3D:1\nMETA \"creator\" \"scanner\"\n"
            "UNIT length millimetre 0.001\n"
            "Shape { geometry IndexedFaceSet { coord Coordinate { point [ 0 0 0, 1 0 0, 1 1 0 ] } "
            "coordIndex [ 0 1 2 -1 ] } }\n")
    m = read_vrml(text, "scan.x3dv")
    assert m.n_vertices == 3 and m.n_faces == 1
