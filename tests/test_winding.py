"""Consistent winding (affectvlm.winding): checked against trimesh's own repair, and on the render of a real scan."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from affectvlm.geometry import canonicalise
from affectvlm.io import load_mesh
from affectvlm.mesh import Mesh
from affectvlm.render import View, render_views
from affectvlm.winding import apply_flips, consistent_winding

SAMPLE = Path(__file__).resolve().parents[1] / "affectvlm" / "data" / "samples" / "F0001_HA04WH_F3D.wrl"


def _scramble(faces: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    hit = rng.random(len(faces)) < share
    out = faces.copy()
    out[hit] = out[hit][:, [0, 2, 1]]
    return out, hit


def test_two_patches_each_wound_their_majority_way_like_trimesh():
    a = trimesh.creation.icosphere(subdivisions=3)
    b = trimesh.creation.icosphere(subdivisions=2)
    b.vertices += 5.0
    both = trimesh.util.concatenate([a, b])
    # patch a: 20 % flipped (keeps the file's way); patch b: 80 % flipped (turns over as a whole)
    fa, _ = _scramble(np.asarray(a.faces), 0.2, 1)
    fb, _ = _scramble(np.asarray(b.faces), 0.8, 2)
    faces = np.concatenate([fa, fb + len(a.vertices)])
    fixed, _ = apply_flips(faces, None, consistent_winding(faces))
    ours = trimesh.Trimesh(both.vertices, fixed, process=False)
    assert ours.is_winding_consistent
    assert np.array_equal(fixed[:len(fa)], a.faces)
    assert np.array_equal(fixed[len(fa):], np.asarray(b.faces)[:, [0, 2, 1]] + len(a.vertices))
    # the independent reference: trimesh's breadth-first repair makes each patch the same up to turning it over
    ref = trimesh.Trimesh(both.vertices, faces.copy(), process=False)
    trimesh.repair.fix_winding(ref)
    for lo, hi in ((0, len(fa)), (len(fa), len(faces))):
        same = (np.sort(ref.faces[lo:hi], 1) == np.sort(fixed[lo:hi], 1)).all()
        assert same
        agree = np.array([np.array_equal(np.roll(r, -int(np.argmin(r))), np.roll(o, -int(np.argmin(o))))
                          for r, o in zip(ref.faces[lo:hi], fixed[lo:hi])])
        assert agree.all() or not agree.any()


def test_consistent_and_tiny_meshes_are_left_alone():
    m = trimesh.creation.icosphere(subdivisions=2)
    assert not consistent_winding(np.asarray(m.faces)).any()
    assert not consistent_winding(np.array([[0, 1, 2]])).any()
    # non-manifold fan (three faces on one edge) and a degenerate face: nothing joined, nothing flipped
    assert not consistent_winding(np.array([[0, 1, 2], [0, 1, 3], [1, 0, 4], [5, 5, 6]])).any()


def test_uv_follow_their_corners():
    faces = np.array([[0, 1, 2], [1, 2, 3]])  # both run along the shared edge 1 -> 2: inconsistent
    uv = np.arange(12, dtype=np.float32).reshape(2, 3, 2)
    flip = consistent_winding(faces, np.array([2.0, 1.0]))
    assert flip.tolist() == [False, True]
    f2, uv2 = apply_flips(faces, uv, flip)
    assert f2[1].tolist() == [1, 3, 2] and uv2[1].tolist() == uv[1][[0, 2, 1]].tolist()
    assert faces[1].tolist() == [1, 2, 3]  # inputs untouched


@pytest.mark.parametrize("share", [0.5, 0.1])
def test_scrambled_scan_renders_like_the_clean_one(share):
    scan = load_mesh(SAMPLE, texture=False)
    bad_faces, hit = _scramble(np.asarray(scan.faces), share, 7)
    bad = Mesh(vertices=scan.vertices, faces=bad_faces, source="scrambled")
    c = canonicalise(bad, up="+y", front="+z")
    assert c.meta["canonical"]["rewound_faces"] == int(hit.sum())
    views = [View(0), View(30, 10)]
    clean = render_views(scan, views, 64, up="+y", front="+z")
    fixed = render_views(bad, views, 64, up="+y", front="+z")
    assert float((clean - fixed).abs().max()) < 1e-4


def test_a_scan_with_every_triangle_listed_twice_renders_like_the_clean_one():
    scan = load_mesh(SAMPLE, texture=False)
    twice = Mesh(vertices=scan.vertices, faces=np.concatenate([scan.faces, scan.faces]), source="twice")
    assert "rewound_faces" not in canonicalise(twice, up="+y", front="+z").meta["canonical"]
    views = [View(0)]
    clean = render_views(scan, views, 64, up="+y", front="+z")
    assert float((clean - render_views(twice, views, 64, up="+y", front="+z")).abs().max()) < 1e-4
