"""Closing small holes before rendering: which loops close, winding, attributes, bow-ties, against VTK, and in renders."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from affectvlm.errors import ConfigError
from affectvlm.geometry import boundary_edges, face_areas
from affectvlm.holes import boundary_loops, directed_edges, fill_holes
from affectvlm.mesh import Mesh
from affectvlm.render import RenderSettings, View, render_maps
from affectvlm.train.train import render_settings
from affectvlm.trainconfig import resolve_config

N = 41  # grid vertices per side, 1 unit apart
HOLES = (((10.0, 10.0), 2.0), ((30.0, 10.0), 4.0), ((20.0, 29.0), 7.0))  # centre, radius


def grid(holes=HOLES, bump: float = 2.0) -> tuple[Mesh, Mesh]:
    """A bumpy height field without and with round holes (faces whose centroid lies inside a disc removed)."""
    x, y = np.meshgrid(np.arange(N, dtype=np.float64), np.arange(N, dtype=np.float64))
    z = bump * np.sin(x / 5.0) * np.cos(y / 7.0)
    v = np.stack([x.ravel(), y.ravel(), z.ravel()], 1).astype(np.float32)
    i = np.arange(N - 1)[:, None] * N + np.arange(N - 1)[None, :]
    a, b, c, d = i.ravel(), i.ravel() + 1, i.ravel() + N, i.ravel() + N + 1
    f = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)]).astype(np.int64)
    cen = v[f].mean(1)[:, :2]
    keep = np.ones(len(f), bool)
    for (cx, cy), r in holes:
        keep &= np.hypot(cen[:, 0] - cx, cen[:, 1] - cy) > r
    uv = (v[f][..., :2] / (N - 1)).astype(np.float32)
    col = np.full((len(v), 3), 200, np.uint8)
    col[:, 0] = (np.arange(len(v)) % 256).astype(np.uint8)
    full = Mesh(vertices=v, faces=f, face_uv=uv, vertex_colors=col)
    return full, Mesh(vertices=v, faces=f[keep], face_uv=uv[keep], vertex_colors=col, source="holey.obj")


def loop_sizes(mesh: Mesh) -> list[float]:
    f = np.asarray(mesh.faces)
    e = directed_edges(f)
    out = []
    for loop in boundary_loops(f):
        p = np.asarray(mesh.vertices)[e[loop, 0]]
        out.append(float(np.linalg.norm(p.max(0) - p.min(0)) / 2))
    return sorted(out)


def test_only_loops_up_to_the_size_close_and_the_rim_stays():
    full, holey = grid()
    sizes = loop_sizes(holey)
    assert len(sizes) == 4 and sizes[-1] > 25  # three holes and the rim
    for limit, closed in ((0.0, 0), (sizes[0] + 0.01, 1), (sizes[1] + 0.01, 2), (sizes[2] + 0.01, 3), (20.0, 3)):
        out = fill_holes(holey, limit)
        assert out.meta.get("holes_filled", 0) == closed
        assert len(boundary_loops(out.faces)) == 4 - closed
    out = fill_holes(holey, 20.0)
    # only the rim is left open, and the closed surface covers what the holes took away
    assert len(boundary_edges(out.faces)) == len(boundary_edges(full.faces))
    assert face_areas(out.vertices, out.faces).sum() == pytest.approx(face_areas(full.vertices, full.faces).sum(),
                                                                         rel=0.01)


def test_new_faces_are_wound_like_their_neighbours_and_keep_uv_and_colours():
    _, holey = grid()
    out = fill_holes(holey, 20.0)
    f = np.asarray(out.faces)
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    directed = {tuple(x) for x in e.tolist()}
    assert len(directed) == len(e)  # no directed edge twice: every shared edge is crossed once each way
    # old vertices and faces untouched, new vertices appended at the loops' means
    n_old = len(holey.vertices)
    assert np.array_equal(out.vertices[:n_old], holey.vertices) and np.array_equal(f[:len(holey.faces)], holey.faces)
    assert len(out.vertices) == n_old + 3 and out.vertex_colors.shape == (n_old + 3, 3)
    for (cx, cy), _ in HOLES:
        assert np.min(np.hypot(out.vertices[n_old:, 0] - cx, out.vertices[n_old:, 1] - cy)) < 0.6
    # uv follows position on this grid (uv = xy / 40), so each new corner's uv says where it is
    new = slice(len(holey.faces), None)
    xy = np.asarray(out.vertices)[f[new]][..., :2] / (N - 1)
    assert out.face_uv.shape == (len(f), 3, 2)
    assert np.abs(out.face_uv[new][:, :2] - xy[:, :2]).max() < 1e-6  # corners on the loop: exact
    assert np.abs(out.face_uv[new][:, 2] - xy[:, 2]).max() < 1e-5  # the centre: the loop's mean


def test_holes_meeting_at_a_vertex_each_close():
    # two holes touching at the grid vertex (20, 20): the boundary passes that vertex twice
    _, holey = grid(holes=())
    v, f = np.asarray(holey.vertices), np.asarray(holey.faces)
    cen = v[f].mean(1)[:, :2]
    drop = ((cen[:, 0] > 18) & (cen[:, 0] < 20) & (cen[:, 1] > 18) & (cen[:, 1] < 20)) | (
        (cen[:, 0] > 20) & (cen[:, 0] < 22) & (cen[:, 1] > 20) & (cen[:, 1] < 22))
    touching = Mesh(vertices=v, faces=f[~drop])
    assert np.bincount(boundary_edges(touching.faces).ravel())[20 * N + 20] == 4  # a bow-tie vertex
    assert len(boundary_loops(touching.faces)) == 3  # two holes and the rim
    out = fill_holes(touching, 5.0)
    assert out.meta["holes_filled"] == 2 and len(boundary_loops(out.faces)) == 1


def test_the_same_holes_close_as_vtk_fills():
    pv = pytest.importorskip("pyvista")
    _, holey = grid()
    v, f = np.asarray(holey.vertices), np.asarray(holey.faces)
    sizes = loop_sizes(holey)
    for size in ((sizes[0] + sizes[1]) / 2, (sizes[1] + sizes[2]) / 2, (sizes[2] + sizes[3]) / 2):
        # VTK measures a hole by an approximate bounding sphere, so the limits sit between the holes' sizes
        ours = fill_holes(holey, size)
        ours_v = set(np.unique(np.asarray(ours.faces)[len(f):, :2]).tolist())
        ref = pv.PolyData(v, np.hstack([np.full((len(f), 1), 3), f]).ravel()).fill_holes(size)
        cells = ref.faces
        polys, i = [], 0
        while i < len(cells):
            polys.append(cells[i + 1:i + 1 + cells[i]])
            i += cells[i] + 1
        theirs = set(np.unique(np.concatenate(polys[len(f):])).tolist())
        assert ours_v == theirs


def test_bad_sizes_and_meshes_without_holes():
    full, holey = grid()
    assert fill_holes(full, 10.0) is full and fill_holes(holey, 0.0) is holey
    for bad in (-1.0, float("nan")):
        with pytest.raises(ConfigError):
            fill_holes(holey, bad)
    for bad in (-0.1, 0.6, True, "0.1"):
        with pytest.raises(ConfigError):
            RenderSettings(fill_holes=bad)


def test_renders_cover_the_holes_and_settings_carry_the_size():
    full, holey = grid()
    views = [View(0)]
    base = RenderSettings(size=96, views=views, canonical=False, texture=False)
    mask = {name: float(render_maps(m, views, 96, canonical=False, texture=False, maps=("mask",))["mask"].sum())
            for name, m in (("full", full), ("holey", holey))}
    from affectvlm.render import render

    filled = float(render(holey, replace(base, fill_holes=0.45), maps=("mask",))["mask"].sum())
    assert mask["holey"] < 0.95 * mask["full"]
    assert filled == pytest.approx(mask["full"], rel=0.01)
    # the setting is stored with a model only when it is on, so older settings (and cache keys) stay the same
    assert "fill_holes" not in base.to_dict()
    assert RenderSettings.from_dict(replace(base, fill_holes=0.08).to_dict()).fill_holes == 0.08
    # the trainer's option sets it, and refuses sizes outside [0, 0.5]
    cfg = resolve_config(["--data", "d", "--out", "o", "--fill-holes", "0.08"])
    assert render_settings(base, cfg, None).fill_holes == 0.08
    assert render_settings(base, resolve_config(["--data", "d", "--out", "o"]), None).fill_holes == 0.0
    with pytest.raises(ConfigError, match="fill_holes"):
        resolve_config(["--data", "d", "--out", "o", "--fill-holes", "0.9"])
