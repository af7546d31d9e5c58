"""The binary FBX reader and Rocketbox/HeadBox avatars as face models (synthetic FBX files written here; the real
avatars, when ``AFFECTVLM_ROCKETBOX`` names them, are checked against assimp, an independent FBX reader)."""
import os
import shutil
import subprocess

import numpy as np
import pytest

from affectvlm.errors import InputError
from affectvlm.synth.fbx import read_fbx
from affectvlm.synth.rocketbox import load_rocketbox, rocketbox_face_model
from tests.fbxgen import fbx_bytes, head_avatar


@pytest.mark.parametrize("compress", [True, False])
def test_reader_returns_the_arrays_written(tmp_path, compress):
    data, truth = head_avatar(compress=compress)
    p = tmp_path / "a.fbx"
    p.write_bytes(data)
    root = read_fbx(p)
    assert root.props == [7400]
    geos = root.first("Objects").find("Geometry")
    mesh = [g for g in geos if g.props[2] == "Mesh"][0]
    np.testing.assert_array_equal(mesh.first("Vertices").props[0], truth["vertices"].ravel())
    np.testing.assert_array_equal(mesh.first("PolygonVertexIndex").props[0], truth["poly"])
    shapes = {g.props[1].split("\x00")[0]: g for g in geos if g.props[2] == "Shape"}
    assert set(shapes) == set(truth["shapes"])
    idx, d = truth["shapes"]["AU_26_JawDrop"]
    np.testing.assert_array_equal(shapes["AU_26_JawDrop"].first("Indexes").props[0], idx)
    np.testing.assert_array_equal(shapes["AU_26_JawDrop"].first("Vertices").props[0], d.ravel())


def test_avatar_becomes_a_face_model_in_mm_y_up_facing_z(tmp_path):
    data, truth = head_avatar()
    p = tmp_path / "Male_Adult_99_facial.fbx"
    p.write_bytes(data)
    m = rocketbox_face_model(p)
    assert m.name == "rocketbox-male-adult-99"
    assert {"AU12L", "AU12R", "AU26"} <= set(m.au_targets) and "AA_VI_00_Sil" not in m.au_targets
    assert len(m.identities) == 0 and m.face_mask.any()
    # cm -> mm: the head is 22 cm tall in the file; the neck cut keeps most of it
    ext = m.neutral.max(0) - m.neutral.min(0)
    assert 150 < ext[1] < 230 and 120 < ext[0] < 160
    jaw = np.linalg.norm(m.au_targets["AU26"], axis=1) > 0
    assert m.au_targets["AU26"][jaw, 1].mean() < -9  # the jaw drops (down = -Y), 1 cm = 10 mm
    assert m.neutral[jaw, 2].mean() > m.neutral[:, 2].mean()  # on the front (+Z)
    left = np.linalg.norm(m.au_targets["AU12L"], axis=1) > 0
    assert m.neutral[left, 0].mean() > 0  # the subject's left is +X


def test_mirrored_left_right_names_are_swapped(tmp_path):
    data, _ = head_avatar(left_is_plus_x=False)
    p = tmp_path / "x.fbx"
    p.write_bytes(data)
    m = rocketbox_face_model(p)
    left = np.linalg.norm(m.au_targets["AU12L"], axis=1) > 0
    assert m.neutral[left, 0].mean() > 0


def test_avatar_makes_scans(tmp_path):
    from affectvlm.synth.corpus import make_scan
    from affectvlm.synth.randomised import Nuisance

    data, _ = head_avatar()
    (tmp_path / "a.fbx").write_bytes(data)
    models = load_rocketbox(tmp_path)
    (m,) = models.values()
    rng = np.random.default_rng(0)
    nu = Nuisance(vertices=(0, 0), noise_mm=(0.0, 0.0), hole_probability=0.0, crops=(("full", 1.0),),
                  yaw_deg=0.0, pitch_deg=0.0, roll_deg=0.0, origin_mm=0.0, units=(("mm", 1.0),))
    a = make_scan(m, "recipes", "surprise", 4, rng, nuisance=nu)
    b = make_scan(m, "recipes", "neutral", 0, np.random.default_rng(0), nuisance=nu)
    assert a.mesh.vertices.shape == b.mesh.vertices.shape
    assert np.abs(a.mesh.vertices - b.mesh.vertices).max() > 5  # surprise drops the jaw by mm, not microns


def _write(tmp_path, data: bytes, name="bad.fbx"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.mark.parametrize("cut", [30, 200, -300])
def test_truncated_file_is_one_clear_error(tmp_path, cut):
    data, _ = head_avatar()
    p = _write(tmp_path, data[:cut])
    with pytest.raises(InputError) as e:
        rocketbox_face_model(p)
    assert "bad.fbx" in str(e.value) and "\n" not in str(e.value)


def test_not_fbx_ascii_and_empty_are_refused(tmp_path):
    for name, data, words in [("a.fbx", b"solid cube\n", "not a binary FBX"),
                              ("b.fbx", b"; FBX 7.4.0 project file\nFBXHeaderExtension:  {\n", "ASCII FBX"),
                              ("c.fbx", b"", "not a binary FBX")]:
        with pytest.raises(InputError, match=words):
            read_fbx(_write(tmp_path, data, name))


def test_array_bomb_and_bad_offsets_are_refused(tmp_path):
    big = np.zeros(2_000_000, "<f8")  # 16 MB inflated from a few KB
    p = _write(tmp_path, fbx_bytes([("Objects", (), [("Vertices", (("z", big),), ())])]))
    with pytest.raises(InputError, match="over the limit"):
        read_fbx(p, max_array_bytes=1_000_000)
    data = bytearray(fbx_bytes([("Objects", (), [("X", (1,), ())])]))
    data[27:31] = (10**6).to_bytes(4, "little")  # the first node claims to end past the file
    with pytest.raises(InputError, match="runs past"):
        read_fbx(_write(tmp_path, bytes(data), "off.fbx"))


def test_fbx_without_au_shapes_is_named(tmp_path):
    p = _write(tmp_path, fbx_bytes([("Objects", (), [("Geometry", (1, "plain\x00\x01Geometry", "Mesh"),
                                                      [("Vertices", (np.zeros(9, "<f8"),), ())])])]), "plain.fbx")
    with pytest.raises(InputError, match="FACS blend shapes"):
        rocketbox_face_model(p)
    with pytest.raises(InputError, match="no Rocketbox avatar"):
        load_rocketbox(tmp_path)
    with pytest.raises(InputError, match="no such"):
        load_rocketbox(tmp_path / "missing")


def _assimp_points(src, tmp_path) -> np.ndarray:
    out = tmp_path / "assimp.obj"
    subprocess.run(["assimp", "export", str(src), str(out), "-ptv"], check=True, capture_output=True, timeout=120)
    return np.array([[float(t) for t in line.split()[1:4]] for line in out.read_text().splitlines()
                     if line.startswith("v ")])


def _same_points(src, tmp_path):
    """Our mesh, after the mesh node's rotation, is the point set assimp exports (assimp keeps the file's cm)."""
    from scipy.spatial import cKDTree

    from affectvlm.synth.rocketbox import _mesh_and_shapes

    a = _assimp_points(src, tmp_path)
    v, _, _, _ = _mesh_and_shapes(read_fbx(src), str(src))
    assert len(a) > 100
    d, _ = cKDTree(v / 10.0).query(a)
    assert d.max() < 1e-3
    d, _ = cKDTree(a).query(v / 10.0)
    assert np.median(d) < 1e-3  # and nearly every one of ours is one of assimp's (it drops unused points)


@pytest.mark.skipif(not shutil.which("assimp"), reason="assimp (Debian's assimp-utils) is not installed")
def test_synthetic_avatar_matches_assimp(tmp_path):
    data, _ = head_avatar()
    _same_points(_write(tmp_path, data, "a.fbx"), tmp_path)


@pytest.mark.skipif(not (os.environ.get("AFFECTVLM_ROCKETBOX") and shutil.which("assimp")),
                    reason="set AFFECTVLM_ROCKETBOX to a Rocketbox/HeadBox avatar FBX and install assimp-utils")
def test_real_avatar_matches_assimp(tmp_path):
    _same_points(os.environ["AFFECTVLM_ROCKETBOX"], tmp_path)


def test_synth_cli_writes_a_rocketbox_corpus(tmp_path):
    import csv

    from affectvlm.synth.cli import main

    data, _ = head_avatar()
    avatars = tmp_path / "avatars"
    avatars.mkdir()
    (avatars / "Female_Adult_07_facial.fbx").write_bytes(data)
    out = tmp_path / "corpus"
    assert main(["--layout", "corpus", "--rocketbox", str(avatars), "--families", "recipes", "--intensities", "4",
                 "--subjects", "1", "--out", str(out), "-q"]) == 0
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert {r["face_model"] for r in rows} == {"rocketbox-female-adult-07"} and len(rows) == 7
    assert all((out / r["path"]).stat().st_size > 1000 for r in rows)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.fbx").write_bytes(b"junk")
    assert main(["--layout", "corpus", "--rocketbox", str(bad), "--out", str(tmp_path / "c2"), "-q"]) == 2
