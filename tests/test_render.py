"""Renderer: shapes, conventions, batching, texture, maps, settings, and agreement with pyvista."""
from __future__ import annotations

import json
from dataclasses import replace
import math

import numpy as np
import pytest
import torch

import affectvlm.render.numba_backend as numba_backend
import affectvlm.render.torch_backend as torch_backend
from affectvlm.errors import ConfigError, InputError
from affectvlm.geometry import canonicalise
from affectvlm.mesh import Mesh
from affectvlm.render import (DEFAULT_VIEWS, RenderSettings, View, parse_views, render, render_maps, render_views,
                              save_views, to_pil)
from meshgen import face_like_mesh

SIZE = 96  # small images keep the default run fast; the pyvista comparison uses 224


@pytest.fixture(scope="module")
def face():
    return face_like_mesh(40)


def test_shapes_ranges_and_background(face):
    img = render_views(face, size=SIZE)
    assert img.shape == (1, 3, 3, SIZE, SIZE) and img.dtype == torch.float32
    assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0
    assert float(img[0, 0, :, 0, 0].abs().sum()) == 0.0  # corner is background
    mask = render_maps(face, size=SIZE, maps=("mask",))["mask"]
    cover = float(mask.mean())
    assert 0.3 < cover < 0.95
    two = render_views([face, face_like_mesh(20)], [View(0), View(10, 5)], size=48, background=0.5)
    assert two.shape == (2, 2, 3, 48, 48)
    assert float(two[1, 1, :, 0, 0].mean()) == pytest.approx(0.5)


def test_batch_of_different_meshes_equals_individual_renders():
    meshes = [face_like_mesh(40, seed=1), face_like_mesh(17, smile=1.0, seed=2, textured=False),
              face_like_mesh(29, seed=3)]
    views = [View(0), View(-25), View(20, 10)]
    batch = render_maps(meshes, views, SIZE, maps=("shade", "depth"))
    for i, m in enumerate(meshes):
        one = render_maps(m, views, SIZE, maps=("shade", "depth"))
        for k in ("shade", "depth"):
            diff = (batch[k][i] - one[k][0]).abs()
            # identical up to which of two equal-depth triangles wins on a shared edge
            assert float((diff > 1e-4).float().mean()) < 1e-3, k
            assert float(diff.max()) < 0.1


def test_chunking_gives_the_same_image(face, monkeypatch):
    monkeypatch.setattr(numba_backend, "USE_NUMBA", False)  # chunking only exists in the torch path
    ref = render_maps(face, [View(0), View(30)], SIZE, maps=("shade", "mask"))
    monkeypatch.setattr(torch_backend, "_FACE_CHUNK", 997)
    monkeypatch.setattr(torch_backend, "_CAND_CHUNK", 1500)
    monkeypatch.setattr(torch_backend, "_DENSE_MAX", 2)  # push most faces through the explicit-expansion path
    got = render_maps(face, [View(0), View(30)], SIZE, maps=("shade", "mask"))
    assert torch.equal(got["mask"], ref["mask"])
    assert float((got["shade"] - ref["shade"]).abs().max()) < 1e-4


def test_large_triangles_fill_exactly():
    # a square of two triangles spanning [-0.5, 0.5]^2 -> after unit scaling it spans [-1/sqrt2, 1/sqrt2]
    v = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], np.float32)
    quad = Mesh(vertices=v, faces=np.array([[0, 1, 2], [0, 2, 3]]), source="quad")
    mask = render_maps(quad, [View(0)], 100, canonical=False, maps=("mask",))["mask"][0, 0, 0]
    half = 1 / math.sqrt(2)
    expected = 0
    centres = (np.arange(100) + 0.5) / 100 * 2 - 1
    inside = np.abs(centres) <= half
    expected = int(inside.sum()) ** 2
    assert int(mask.sum()) == expected  # no cracks along the diagonal, nothing outside


def test_texture_changes_pixels_and_lands_where_uv_says(face):
    tex_on = render_views(face, [View(0)], SIZE)
    tex_off = render_views(face, [View(0)], SIZE, texture=False)
    assert float((tex_on - tex_off).abs().mean()) > 0.05
    # red left half / blue right half of the texture: u < 0.5 is the face's -x side = image left
    m = face_like_mesh(40)
    tex = np.zeros((8, 8, 3), np.uint8)
    tex[:, :4, 0] = 255
    tex[:, 4:, 2] = 255
    m.texture = tex
    img = render_views(m, [View(0)], SIZE)[0, 0]
    left, right = img[:, :, : SIZE // 2 - 4], img[:, :, SIZE // 2 + 4:]
    assert float(left[0].sum()) > 10 * float(left[2].sum())
    assert float(right[2].sum()) > 10 * float(right[0].sum())


def test_vertex_colours_used_when_no_texture():
    m = face_like_mesh(30, textured=False)
    m.vertex_colors = np.tile(np.array([[0, 255, 0]], np.uint8), (m.n_vertices, 1))
    img = render_views(m, [View(0)], SIZE)[0, 0]
    assert float(img[1].sum()) > 0 and float(img[0].sum()) == 0 and float(img[2].sum()) == 0
    grey = render_views(m, [View(0)], SIZE, texture=False)[0, 0]
    assert torch.allclose(grey[0], grey[1]) and float(grey[0].sum()) > 0


def _centroid_col_row(weights: torch.Tensor) -> tuple[float, float]:
    h, w = weights.shape
    tot = float(weights.sum())
    cols = float((weights.sum(0) * torch.arange(w)).sum()) / tot
    rows = float((weights.sum(1) * torch.arange(h)).sum()) / tot
    return cols, rows


def test_yaw_and_pitch_sign_conventions():
    """yaw > 0: nose tip moves to image left and the face's left cheek (+x) becomes more visible;
    pitch > 0: camera moves up, the forehead becomes more visible."""
    m = face_like_mesh(40, textured=False)
    c = canonicalise(m)
    left_cheek = c.vertices[:, 0] > 0.35  # the face's own left = viewer's right in the frontal view
    forehead = c.vertices[:, 1] > 0.55
    col = np.full((m.n_vertices, 3), 255, np.uint8)
    col[left_cheek] = [255, 0, 0]
    col[forehead] = [0, 255, 0]
    m.vertex_colors = col
    views = [View(0), View(30), View(-30), View(0, 25), View(0, -25)]
    maps = render_maps(m, views, SIZE, maps=("shade", "depth"))
    depth = maps["depth"][0, :, 0]
    tips = [np.unravel_index(int(d.argmax()), d.shape) for d in depth]  # (row, col) of the nose tip
    assert tips[1][1] < tips[0][1] - 3 < tips[2][1] - 6  # yaw +30: tip left; yaw -30: tip right
    shade = maps["shade"][0]
    red = [float(((s[0] > 0.2) & (s[1] < 0.05)).sum()) for s in shade]
    green = [float(((s[1] > 0.2) & (s[0] < 0.05)).sum()) for s in shade]
    assert red[1] > 1.05 * red[0] > 1.1 * red[2]  # more left cheek at yaw +30, less at -30
    assert green[3] > 1.05 * green[0] > 1.1 * green[4]  # more forehead from above
    assert _centroid_col_row(shade[0, 0] * (shade[0, 1] < 0.05))[0] > SIZE / 2  # cheek on image right
    assert _centroid_col_row(shade[0, 1] * (shade[0, 0] < 0.05))[1] < SIZE / 3  # forehead on top


def test_depth_normal_and_mask_maps_are_consistent(face):
    maps = render_maps(face, [View(0)], SIZE)
    assert set(maps) == {"shade", "depth", "normal", "mask"}
    mask = maps["mask"][0, 0, 0] > 0.5
    depth, normal = maps["depth"][0, 0, 0], maps["normal"][0, 0]
    assert maps["depth"].shape == (1, 1, 1, SIZE, SIZE) and maps["normal"].shape == (1, 1, 3, SIZE, SIZE)
    assert float(depth[~mask].abs().max()) == 0.0 and float(depth[mask].min()) > 0.0
    assert float(depth.max()) <= 1.0
    n = normal[:, mask] * 2 - 1
    np.testing.assert_allclose(n.norm(dim=0).numpy(), 1.0, atol=1e-3)
    assert float(n[2].min()) >= -1e-6  # turned toward the camera
    # the nose tip (depth max) faces the camera: normal ~ (0, 0, 1)
    r, cidx = np.unravel_index(int(depth.argmax()), depth.shape)
    assert float(n[2].mean()) > 0.6 and float(normal[2, r, cidx]) * 2 - 1 > 0.8
    # the right half of the face (image right) has normals pointing right (+x)
    right = mask.clone()
    right[:, : SIZE // 2 + SIZE // 8] = False
    assert float((normal[0][right] * 2 - 1).mean()) > 0.2
    # shade is exactly background where the mask is 0
    assert float(maps["shade"][0, 0][:, ~mask].abs().max()) == 0.0
    # single map through render_views: 3 channels
    d3 = render_views(face, [View(0)], SIZE, map="depth")
    assert d3.shape == (1, 1, 3, SIZE, SIZE) and torch.equal(d3[0, 0, 0], d3[0, 0, 2])


def test_back_faces_render_like_front_faces():
    m = face_like_mesh(30, textured=False)
    flipped = Mesh(vertices=m.vertices, faces=m.faces[:, ::-1].copy(), source="flipped")
    a = render_views(m, [View(0), View(40)], SIZE, canonical=False)
    b = render_views(flipped, [View(0), View(40)], SIZE, canonical=False)
    assert float((a - b).abs().max()) < 1e-4
    # seen from behind, the open surface still renders (both sides)
    back = render_maps(m, [View(180)], SIZE, canonical=False, maps=("mask",))["mask"]
    assert float(back.mean()) > 0.2


def test_parse_views_and_settings_round_trip():
    assert parse_views("0,-30,30") == DEFAULT_VIEWS
    assert parse_views(" 0:10 , 30:0") == (View(0, 10), View(30, 0))
    assert parse_views("0:90,10:-90") == (View(0, 90), View(10, -90))
    with pytest.raises(ConfigError, match=r"view 0:60 at the scoring pitch \+45 would look from past straight up"):
        RenderSettings(views="0:60,0", score_pitches=[-45, 45])  # it built, then failed when scored or trained
    assert len(RenderSettings(views="0:45,0", score_pitches=[-45, 45]).for_scoring().views) == 6
    for bad in ("", "a", "0:1:2", "0,,3", "nan", ":5", "0:100", "30:-91"):  # past straight up or down: upside down
        with pytest.raises(ConfigError):
            parse_views(bad)
    st = RenderSettings(size=128, views="0,15:-10", texture=False, up="+z", background=0.25)
    d = json.loads(json.dumps(st.to_dict()))
    assert RenderSettings.from_dict(d) == st
    assert RenderSettings.from_dict({}) == RenderSettings()
    capped = RenderSettings(texture=False, max_vertices=8000)
    assert RenderSettings.from_dict(json.loads(json.dumps(capped.to_dict()))) == capped
    assert "max_vertices" not in RenderSettings().to_dict()  # settings (and cache keys) without a cap read as before
    for bad in ({"size": 3}, {"size": "224"}, {"views": []}, {"up": "sideways"}, {"background": 2},
                {"colour": 1}, {"texture": "yes"}, {"max_vertices": 10}, {"max_vertices": True},
                {"max_vertices": -1}, {"max_vertices": 8000.5}):
        with pytest.raises(ConfigError):
            RenderSettings.from_dict(bad)
    with pytest.raises(ConfigError):
        render_views(face_like_mesh(12), map="albedo")
    with pytest.raises(ConfigError):
        render_views([], size=SIZE)


def test_score_pitches_add_each_view_at_those_pitches_when_scoring():
    st = RenderSettings(texture=False, views="0,-30,30", score_pitches=[-10, 10])
    assert st.score_pitches == (-10.0, 10.0)
    scoring = st.for_scoring()
    assert scoring.views == (View(0), View(-30), View(30), View(0, -10), View(-30, -10), View(30, -10),
                             View(0, 10), View(-30, 10), View(30, 10))
    assert scoring.score_pitches == () and scoring.for_scoring() == scoring  # applied once
    assert RenderSettings(views="15:5", score_pitches=(10,)).for_scoring().views == (View(15, 5), View(15, 15))
    assert RenderSettings(texture=False).for_scoring() == RenderSettings(texture=False)  # none: as it was
    assert RenderSettings.from_dict(json.loads(json.dumps(st.to_dict()))) == st
    assert "score_pitches" not in RenderSettings().to_dict()  # settings (and cache keys) without them read as before
    for bad in ([0], [50], [-10, -10], ["10"], [True], [float("nan")], 10):
        with pytest.raises(ConfigError, match="score_pitches"):
            RenderSettings(score_pitches=bad)


def test_settings_render_matches_render_views(face):
    settings = RenderSettings(size=SIZE, views=(View(0), View(20)))
    assert torch.equal(settings.render(face), render_views(face, settings.views, SIZE))


def test_one_settings_object_and_one_return_type_per_entry_point(face):
    settings = RenderSettings(size=SIZE, views=(View(0), View(20)), map="depth", background=0.5, texture=False)
    one = render(face, settings)
    assert list(one) == ["depth"] and one["depth"].shape == (1, 2, 1, SIZE, SIZE)
    both = render([face, face], settings, maps=("shade", "mask"))
    assert list(both) == ["shade", "mask"] and both["shade"].shape == (2, 2, 3, SIZE, SIZE)
    shade = render(face, settings, maps="shade")["shade"]
    assert torch.equal(shade, render_views(face, settings.views, SIZE, texture=False, background=0.5))
    images = settings.render(face)  # the model's input: its one map, 3 channels
    assert images.shape == (1, 2, 3, SIZE, SIZE) and torch.equal(images[:, :, :1], one["depth"])
    assert torch.equal(images, render_views(face, settings.views, SIZE, map="depth", background=0.5, texture=False))
    assert isinstance(render_maps(face, [View(0)], SIZE, maps="mask"), dict)  # a single map is still a dict
    with pytest.raises(ConfigError, match="render_maps"):
        render_views(face, [View(0)], SIZE, map=("shade", "depth"))
    with pytest.raises(ConfigError):
        render(face, settings, maps=("shade", "albedo"))


def test_bad_texture_raises_input_error():
    m = face_like_mesh(12)
    m.face_uv = m.face_uv[:-1]
    with pytest.raises(InputError, match="face_uv"):
        render_views(m, size=32)


def test_to_pil_and_save_views(tmp_path, face):
    img = render_views([face, face], [View(0), View(30)], 32)
    pics = to_pil(img)
    assert len(pics) == 4 and pics[0].size == (32, 32) and pics[0].mode == "RGB"
    assert np.array_equal(np.asarray(pics[1]), (img[0, 1].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))
    paths = save_views(img, tmp_path / "out", "scan")
    assert [p.name for p in paths] == ["scan_0_v0.png", "scan_0_v1.png", "scan_1_v0.png", "scan_1_v1.png"]
    assert all(p.stat().st_size > 0 for p in paths)
    single = save_views(img[:1], tmp_path, "one")
    assert [p.name for p in single] == ["one_v0.png", "one_v1.png"]
    assert to_pil(render_maps(face, [View(0)], 32, maps=("mask",))["mask"])[0].mode == "L"
    with pytest.raises(ConfigError):
        save_views(img, tmp_path, "../evil")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(face):
    cpu = render_views(face, size=SIZE)
    gpu = render_views(face, size=SIZE, device="cuda")
    assert gpu.device.type == "cuda"
    assert float(((gpu.cpu() - cpu).abs() > 1e-3).float().mean()) < 2e-3


@pytest.mark.slow
def test_100k_face_mesh_renders():
    big = face_like_mesh(250, textured=True)
    assert big.n_faces > 90_000
    img = render_views(big, [View(y) for y in (0, -30, 30, -15, 15, 0)], 224)
    assert img.shape == (1, 6, 3, 224, 224) and float(img.mean()) > 0.05


@pytest.mark.skipif(not numba_backend.numba_ready(), reason="numba not installed")
def test_numba_kernel_matches_torch_path(monkeypatch):
    """The compiled CPU kernel and the torch path follow the same rules: same coverage, same values
    (texture, vertex colours, plain), up to float rounding and equal-depth ties on shared edges."""
    col = face_like_mesh(30, seed=4, textured=False)
    col.vertex_colors = (np.random.default_rng(0).random((col.n_vertices, 3)) * 255).astype(np.uint8)
    meshes = [face_like_mesh(60, seed=1), face_like_mesh(25, seed=2, textured=False, smile=1.0), col]
    views = [View(0), View(-30), View(20, 15)]
    fast = render_maps(meshes, views, 128, background=0.25)
    monkeypatch.setattr(numba_backend, "USE_NUMBA", False)
    ref = render_maps(meshes, views, 128, background=0.25)
    assert torch.equal(fast["mask"], ref["mask"])
    for k in ("shade", "depth", "normal"):
        diff = (fast[k] - ref[k]).abs()
        assert float(diff.max()) < 0.02, k
        assert float((diff > 1e-3).float().mean()) < 1e-3, k
    assert float(fast["shade"][1, 0, :, 0, 0].mean()) == pytest.approx(0.25)


@pytest.mark.parametrize("use_numba", [False, True])
def test_bad_geometry_raises_input_error_naming_the_file(monkeypatch, use_numba):
    if use_numba and not numba_backend.numba_ready():
        pytest.skip("numba not installed")
    monkeypatch.setattr(numba_backend, "USE_NUMBA", use_numba)
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    bad_index = Mesh(vertices=v, faces=np.array([[0, 1, 3]]), source="bad_index.obj")
    with pytest.raises(InputError, match="bad_index.obj.*out of range"):
        render_views(bad_index, canonical=False, size=16)
    nan = Mesh(vertices=np.where(np.arange(9).reshape(3, 3) == 4, np.nan, v).astype(np.float32),
               faces=np.array([[0, 1, 2]]), source="nan.obj")
    with pytest.raises(InputError, match="nan.obj.*NaN"):
        render_views(nan, canonical=False, size=16)
    flat = Mesh(vertices=np.ones((3, 3), np.float32), faces=np.array([[0, 1, 2]]), source="point.obj")
    with pytest.raises(InputError, match="point.obj.*zero extent"):
        render_views(flat, canonical=False, size=16)
    ok = render_maps(Mesh(vertices=v.astype(np.float64), faces=np.array([[0, 1, 2]], np.int32), source="tri"),
                     [View(0)], 32, canonical=False, maps=("mask",))["mask"]
    assert 0 < float(ok.sum()) < 32 * 32


@pytest.mark.skipif(not numba_backend.numba_ready(), reason="numba not installed")
def test_numba_threads_give_identical_images():
    meshes = [face_like_mesh(30, seed=i) for i in range(3)]
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = [render_maps(meshes, [0, -30, 30], 64), render_maps(meshes[0], [0, -30, 30], 64)]
        torch.set_num_threads(2)  # batch: meshes split over threads; one mesh: its views are
        two = [render_maps(meshes, [0, -30, 30], 64), render_maps(meshes[0], [0, -30, 30], 64)]
    finally:
        torch.set_num_threads(old)
    for a, b in zip(one, two):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_decimation_on_several_threads_gives_what_one_thread_gives():
    # fast-simplification works in process-wide arrays: predict's render workers once got each other's meshes
    from concurrent.futures import ThreadPoolExecutor

    from affectvlm.render.simplify import cap_vertices

    rng = np.random.default_rng(1)
    meshes = []
    for n in (150, 110):
        m = face_like_mesh(n, textured=False)
        meshes.append(Mesh(vertices=m.vertices + rng.normal(0, 0.1, m.vertices.shape).astype(np.float32),
                           faces=m.faces, source=f"{n}.ply"))
    alone = [cap_vertices(m, 3000) for m in meshes]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda m: cap_vertices(m, 3000), meshes * 6))
    for i, got in enumerate(together):
        want = alone[i % 2]
        assert got.vertices.shape == want.vertices.shape and np.array_equal(got.vertices, want.vertices)
        assert np.array_equal(got.faces, want.faces)


def test_dense_scans_are_decimated_to_the_cap_before_geometry_renders():
    from affectvlm.render.prepare import prepare
    from affectvlm.render.simplify import cap_vertices

    dense = face_like_mesh(160, textured=False)  # ~20k vertices
    rng = np.random.default_rng(0)
    noisy = Mesh(vertices=dense.vertices + rng.normal(0, 0.2, dense.vertices.shape).astype(np.float32),
                 faces=dense.faces, source="dense.ply")
    small = face_like_mesh(40, textured=False)
    capped = cap_vertices(noisy, 5000)
    assert 4000 <= capped.n_vertices <= 5200 and capped.meta["simplified_from"] == noisy.n_vertices
    assert capped.source == "dense.ply" and cap_vertices(small, 5000) is small and cap_vertices(noisy, 0) is noisy
    bad = Mesh(vertices=noisy.vertices, faces=np.vstack([noisy.faces, [[0, 1, noisy.n_vertices + 5]]]), source="b")
    assert cap_vertices(bad, 5000) is bad  # left for the checks that name the problem
    # points no triangle uses (a scanner's stray cloud) do not count: the surface keeps the cap's vertices
    strays = Mesh(vertices=np.vstack([noisy.vertices, rng.normal(0, 50, (200_000, 3)).astype(np.float32)]),
                  faces=noisy.faces, source="strays.ply")
    assert abs(cap_vertices(strays, 5000).n_vertices - capped.n_vertices) < 0.05 * capped.n_vertices
    assert cap_vertices(replace(strays, faces=small.faces), 5000).faces is small.faces  # few used: left as it is
    geo = RenderSettings(size=SIZE, texture=False, max_vertices=5000)
    assert prepare([noisy], geo)[0].n_vertices == capped.n_vertices
    textured = face_like_mesh(160)
    assert prepare([textured], replace(geo, texture=True))[0].n_vertices == textured.n_vertices
    # what the cap is for: a dense scan's noise speckles its shading; decimated, it renders far closer to the clean face
    geo = replace(geo, canonical=False)
    shaky = Mesh(vertices=dense.vertices + rng.normal(0, 0.5, dense.vertices.shape).astype(np.float32),
                 faces=dense.faces, source="shaky.ply")
    clean = render(dense, replace(geo, max_vertices=0))["shade"]
    uncapped = (render(shaky, replace(geo, max_vertices=0))["shade"] - clean).abs().mean()
    assert (render(shaky, geo)["shade"] - clean).abs().mean() < 0.6 * uncapped


def test_views_are_capped_before_anything_is_rendered():
    """The sidebar's Views field took any number: 2000 views cost 2 GB for one scan, 20000 would end the server."""
    from affectvlm.errors import ConfigError
    from affectvlm.render import RenderSettings
    from affectvlm.render.settings import MAX_VIEWS, as_views, parse_views

    assert len(parse_views(",".join(str(i) for i in range(MAX_VIEWS)))) == MAX_VIEWS
    many = ",".join(str(i % 90) for i in range(20_000))
    for make in (lambda: parse_views(many), lambda: as_views(range(10**9)), lambda: RenderSettings(views=many)):
        with pytest.raises(ConfigError, match=f"at most {MAX_VIEWS}"):
            make()


def test_a_dense_scan_decimates_alike_in_millimetres_centimetres_and_metres():
    """fast-simplification's collapse threshold is absolute: the same scan in cm or m decimated to another mesh
    (landmarks up to 30 mm apart on a Rocketbox scan) and read other probabilities; scans are decimated in mm."""
    from affectvlm.render.simplify import cap_vertices

    rng = np.random.default_rng(3)
    dense = face_like_mesh(150, textured=False, origin=(0.0, 0.0, 0.0), scale_mm=100.0)
    mm = Mesh(vertices=(dense.vertices + rng.normal(0, 0.3, dense.vertices.shape)).astype(np.float32),
              faces=dense.faces, source="mm.ply")
    want = cap_vertices(mm, 4000)
    for scale in (0.1, 0.001):
        got = cap_vertices(Mesh(vertices=(mm.vertices * scale).astype(np.float32), faces=mm.faces, source="u.ply"), 4000)
        assert got.n_vertices == want.n_vertices and got.n_faces == want.n_faces, scale
        np.testing.assert_allclose(got.vertices / scale, want.vertices, atol=1e-2)
