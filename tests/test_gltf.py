"""glTF avatar heads with ARKit morph targets as face models (GLB files written here; a real avatar, when
``AFFECTVLM_GLTF`` names one, is checked against trimesh, an independent glTF reader)."""
import csv
import os

import numpy as np
import pytest

from affectvlm.errors import InputError
from affectvlm.synth.gltf import arkit_name, gltf_face_model, load_gltf_heads, read_glb
from tests.gltfgen import ellipsoid_head, glb_bytes, head_targets, pack_glb


def _write(tmp_path, name="Brunette.glb", **kw):
    v, f = ellipsoid_head()
    p = tmp_path / name
    p.write_bytes(glb_bytes(v, f, head_targets(v, left_is_plus_x=kw.pop("left_is_plus_x", True)), **kw))
    return p


def test_arkit_names_in_either_spelling():
    assert arkit_name("mouthSmileLeft") == "mouthSmile_L"
    assert arkit_name("browDown_R") == "browDown_R"
    assert arkit_name("jawOpen") == "jawOpen"
    assert arkit_name("viseme_aa") is None and arkit_name("Left") is None


def test_head_becomes_a_face_model_in_mm_facing_z(tmp_path):
    m = gltf_face_model(_write(tmp_path))
    assert m.name == "gltf-brunette"
    assert {"AU12L", "AU12R", "AU26L", "AU1L", "AU1R"} <= set(m.au_targets)
    ext = m.neutral.max(0) - m.neutral.min(0)
    assert 130 < ext[0] < 170 and 150 < ext[1] < 230  # metres -> mm
    jaw = np.linalg.norm(m.au_targets["AU26L"] + m.au_targets["AU26R"], axis=1) > 0
    assert (m.au_targets["AU26L"] + m.au_targets["AU26R"])[jaw, 1].mean() == pytest.approx(-10, abs=0.01)
    assert m.neutral[jaw, 2].mean() > m.neutral[:, 2].mean()  # the moving face is the front (+Z)
    left = np.linalg.norm(m.au_targets["AU12L"], axis=1) > 0
    assert left.any() and m.neutral[left, 0].mean() > 0  # the subject's left is +X
    # ARKit's one browInnerUp shape serves both sides of AU1: half each, the whole raise when both are on
    both = m.au_targets["AU1L"] + m.au_targets["AU1R"]
    assert np.abs(both[:, 1]).max() == pytest.approx(5.0, abs=0.01)
    np.testing.assert_allclose(m.au_targets["AU1L"], m.au_targets["AU1R"])


def test_mirrored_left_right_names_are_swapped(tmp_path):
    m = gltf_face_model(_write(tmp_path, left_is_plus_x=False))
    left = np.linalg.norm(m.au_targets["AU12L"], axis=1) > 0
    assert m.neutral[left, 0].mean() > 0


def test_sparse_targets_strided_positions_and_node_transforms_read_the_same(tmp_path):
    ref = gltf_face_model(_write(tmp_path, "a.glb"))
    sparse = gltf_face_model(_write(tmp_path, "b.glb", sparse=True, stride=20))
    np.testing.assert_allclose(sparse.neutral, ref.neutral, atol=1e-4)
    for k in ref.au_targets:
        np.testing.assert_allclose(sparse.au_targets[k], ref.au_targets[k], atol=1e-4)
    # a node that scales a head drawn in centimetres by 0.01 gives the same head; a skinned mesh ignores it
    v, f = ellipsoid_head()
    t = head_targets(v)
    (tmp_path / "c.glb").write_bytes(glb_bytes(v * 100, f, {k: d * 100 for k, d in t.items()},
                                               node={"scale": [0.01, 0.01, 0.01]}))
    np.testing.assert_allclose(gltf_face_model(tmp_path / "c.glb").neutral, ref.neutral, atol=1e-3)
    (tmp_path / "d.glb").write_bytes(glb_bytes(v, f, t, node={"scale": [0.01, 0.01, 0.01], "skin": 0}))
    np.testing.assert_allclose(gltf_face_model(tmp_path / "d.glb").neutral, ref.neutral, atol=1e-4)


def test_trimesh_reads_the_same_head(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    p = _write(tmp_path, stride=16)
    doc, binary = read_glb(p)
    assert doc["meshes"][0]["name"] == "Head" and len(binary) > 0
    ref = trimesh.load(p, force="mesh", process=False)
    from affectvlm.synth.gltf import _Accessors

    ours = _Accessors(doc, binary, str(p)).read(0, kind="VEC3")
    np.testing.assert_allclose(ours, np.asarray(ref.vertices), atol=1e-6)


@pytest.mark.parametrize("bad, why", [
    (b"PK\x03\x04" + b"\x00" * 40, "not a binary glTF"),
    (b"glTF" + (2).to_bytes(4, "little") + (4000).to_bytes(4, "little") + b"\x00" * 20, "truncated"),
])
def test_bad_files_get_one_clear_error(tmp_path, bad, why):
    p = tmp_path / "x.glb"
    p.write_bytes(bad)
    with pytest.raises(InputError, match=why) as e:
        gltf_face_model(p)
    assert str(p) in str(e.value)


def test_hostile_or_unsupported_documents(tmp_path):
    v, f = ellipsoid_head()
    t = head_targets(v)
    cases = {
        "meshopt.glb": (dict(extra_doc={"extensionsUsed": ["EXT_meshopt_compression"]}), "compressed"),
        "loop.glb": (dict(extra_doc={"nodes": [{"mesh": 0, "children": [1]}, {"children": [0]}]}), "node tree"),
    }
    for name, (kw, why) in cases.items():
        (tmp_path / name).write_bytes(glb_bytes(v, f, t, **kw))
        with pytest.raises(InputError, match=why):
            gltf_face_model(tmp_path / name)
    # an accessor that claims more data than there is
    (tmp_path / "ok.glb").write_bytes(glb_bytes(v, f, t))
    doc, binary = read_glb(tmp_path / "ok.glb")
    doc["accessors"][0]["count"] = len(v) * 50
    (tmp_path / "long.glb").write_bytes(pack_glb(doc, binary))
    with pytest.raises(InputError, match="outside its data"):
        gltf_face_model(tmp_path / "long.glb")
    # no ARKit names: a head without expressions
    (tmp_path / "plain.glb").write_bytes(glb_bytes(v, f, {"viseme_aa": t["jawOpen"]}))
    with pytest.raises(InputError, match="ARKit-named"):
        gltf_face_model(tmp_path / "plain.glb")


def _edits():
    """(name, a change to a valid head's JSON document) that a hostile or broken file could make."""
    def acc0(**kw):
        return lambda d: d["accessors"][0].update(kw)

    def pos(x):
        return lambda d: d["meshes"][0]["primitives"][0]["attributes"].update(POSITION=x)

    def idx_acc(**kw):
        return lambda d: d["accessors"][1].update(kw)

    def view0(**kw):
        return lambda d: d["bufferViews"][0].update(kw)

    def node(**kw):
        return lambda d: d["nodes"][0].update(kw)

    return [
        ("position accessor missing", pos(999)),
        ("position accessor not an index", pos("0")),
        ("count infinite", acc0(count=float("inf"))),
        ("count huge, no data",
         lambda d: d["accessors"][0].update(count=10 ** 12) or d["accessors"][0].pop("bufferView")),
        ("count huge", acc0(count=10 ** 12)),
        ("positions as integers", acc0(componentType=5123)),
        ("positions normalised", acc0(normalized=True)),
        ("indices as floats", idx_acc(componentType=5126)),
        ("indices as VEC3", idx_acc(type="VEC3", count=10)),
        ("negative view offset", view0(byteOffset=-8)),
        ("stride under an element", view0(byteStride=4)),
        ("view longer than the data", view0(byteLength=10 ** 9)),
        ("non-finite translation", node(translation=[float("nan"), 0, 0])),
        ("huge scale", node(scale=[1e306, 1e306, 1e306])),
        ("quantised", lambda d: d.update(extensionsRequired=["KHR_mesh_quantization"])),
    ]


@pytest.mark.parametrize("name, edit", _edits(), ids=[n for n, _ in _edits()])
def test_hostile_edits_give_one_input_error_naming_the_file(tmp_path, name, edit):
    v, f = ellipsoid_head()
    (tmp_path / "ok.glb").write_bytes(glb_bytes(v, f, head_targets(v), sparse=name.startswith("sparse")))
    doc, binary = read_glb(tmp_path / "ok.glb")
    edit(doc)
    p = tmp_path / "bad.glb"
    p.write_bytes(pack_glb(doc, binary))
    with pytest.raises(InputError) as e:
        gltf_face_model(p)
    assert str(e.value).startswith(str(p)) and str(e.value).count(str(p)) == 1, e.value


def test_extension_lists_of_odd_types_are_ignored(tmp_path):
    v, f = ellipsoid_head()
    (tmp_path / "ok.glb").write_bytes(glb_bytes(v, f, head_targets(v), extra_doc={"extensionsUsed": [{}, 5, None],
                                                                                   "extensionsRequired": "x"}))
    assert gltf_face_model(tmp_path / "ok.glb").name == "gltf-ok"


def test_random_byte_damage_gives_a_model_or_one_input_error(tmp_path):
    v, f = ellipsoid_head()
    good = glb_bytes(v, f, head_targets(v), sparse=True, stride=16)
    rng = np.random.default_rng(0)
    refused = 0
    for k in range(150):
        data = bytearray(good)
        for i in rng.integers(12, len(data), size=int(rng.integers(1, 6))):
            data[i] = int(rng.integers(256))
        p = tmp_path / f"d{k}.glb"
        p.write_bytes(bytes(data))
        try:
            gltf_face_model(p)
        except InputError as e:
            assert str(e).startswith(str(p))
            refused += 1
    assert refused > 10  # the damage did reach the reader


def test_deeply_nested_or_huge_json_is_refused(tmp_path):
    for text in (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", b'{"a": 1' + b"0" * 5000 + b"}"):
        p = tmp_path / "deep.glb"  # nesting past Python's recursion limit; a number too long to parse
        p.write_bytes(pack_glb(text, b""))
        with pytest.raises(InputError, match="not valid JSON"):
            gltf_face_model(p)


def test_folder_skips_what_it_cannot_read(tmp_path):
    _write(tmp_path, "good.glb")
    (tmp_path / "bad.glb").write_bytes(b"nonsense")
    assert list(load_gltf_heads(tmp_path)) == ["gltf-good"]
    (tmp_path / "good.glb").unlink()
    with pytest.raises(InputError, match="1 .glb files without"):
        load_gltf_heads(tmp_path)
    with pytest.raises(InputError, match="no such"):
        load_gltf_heads(tmp_path / "missing")


def test_synth_cli_writes_a_corpus_of_the_avatar(tmp_path):
    from affectvlm.synth.cli import main

    (tmp_path / "in").mkdir()
    _write(tmp_path / "in", "Head.glb")
    out = tmp_path / "corpus"
    assert main(["--layout", "corpus", "--gltf", str(tmp_path / "in"), "--families", "recipes", "--intensities", "4",
                 "--subjects", "1", "--test-frac", "1", "--val-frac", "0",
                 "--seed", "3", "--out", str(out), "-q"]) == 0
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert {r["face_model"] for r in rows} == {"gltf-head"} and len(rows) == 7  # neutral + six emotions
    assert all((out / r["path"]).stat().st_size > 1000 for r in rows)


@pytest.mark.skipif(not os.environ.get("AFFECTVLM_GLTF"), reason="set AFFECTVLM_GLTF to a GLB avatar with ARKit shapes")
def test_real_avatar_against_trimesh():
    trimesh = pytest.importorskip("trimesh")
    p = os.environ["AFFECTVLM_GLTF"]
    m = gltf_face_model(p)
    assert {"AU12L", "AU26L", "AU4L"} <= set(m.au_targets) and m.face_mask.sum() > 300
    doc, binary = read_glb(p)
    from affectvlm.synth.gltf import _Accessors

    head = m.meta["gltf_mesh"]
    mesh = next(x for x in doc["meshes"] if x.get("name") == head)
    ours = _Accessors(doc, binary, p).read(mesh["primitives"][0]["attributes"]["POSITION"], kind="VEC3")
    scene = trimesh.load(p, process=False)
    geoms = [g for g in scene.geometry.values() if len(g.vertices) == len(ours)]
    assert any(np.allclose(np.asarray(g.vertices), ours, atol=1e-6) for g in geoms)
