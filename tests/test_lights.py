"""The ``lights`` map: three lights, one per channel, against a sphere's analytic normals and the mirrored mesh."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from affectvlm.errors import ConfigError
from affectvlm.mesh import Mesh
from affectvlm.render import AMBIENT, MAPS, RenderSettings, View, render, render_maps
from affectvlm.render.lights import LIGHTS
from affectvlm.render.mirror import mirror_images
from affectvlm.render.settings import IMAGE_MAPS
from affectvlm.trainconfig import RENDER_MAPS
from meshgen import face_like_mesh

SIZE = 64


def _sphere() -> Mesh:
    import trimesh

    s = trimesh.creation.icosphere(5)
    return Mesh(vertices=np.asarray(s.vertices, np.float32), faces=np.asarray(s.faces), source="sphere")


def test_lights_match_a_spheres_analytic_shading():
    out = render(_sphere(), RenderSettings(size=SIZE, canonical=False, texture=False), maps=("lights", "mask"))
    lights, mask = out["lights"][0, 0], out["mask"][0, 0, 0] > 0.5
    c = (np.arange(SIZE) + 0.5) / SIZE * 2 - 1
    x, y = np.meshgrid(c, -c)  # pixel centres in camera space, +y up
    r2 = x ** 2 + y ** 2
    inner = r2 < 0.8  # away from the silhouette, where the mesh's facets differ most from the sphere
    n = np.stack([x, y, np.sqrt(np.clip(1 - r2, 0, 1))])
    for ch, light in enumerate(np.array([[-1, 1, 1.4], [1, 1, 1.4], [0, -1, 1.4]], float)):
        light /= np.linalg.norm(light)
        want = AMBIENT + (1 - AMBIENT) * np.clip(np.einsum("chw,c->hw", n, light), 0, 1)
        np.testing.assert_allclose(lights[ch].numpy()[inner], want[inner], atol=0.02)
        assert float(lights[ch][~mask].abs().max()) == 0.0  # background
    # red is lit from the upper left, green from the upper right, blue from below
    q = SIZE // 4
    assert lights[0, q, q] > 0.9 > lights[1, q, q] and lights[1, q, -q] > 0.9 > lights[0, q, -q]
    assert lights[2, -q, SIZE // 2] > 0.9 > lights[2, q, SIZE // 2]
    assert torch.allclose(LIGHTS.norm(dim=1), torch.ones(3))


def test_mirror_of_lights_is_the_lights_of_the_mirrored_face():
    face = face_like_mesh(40, textured=False, origin=(0.0, 0.0, 0.0))
    v = np.asarray(face.vertices, np.float64).copy()
    v[:, 2] += 8 * np.exp(-((v[:, 0] - 16) / 8) ** 2 - ((v[:, 1] + 12) / 8) ** 2)  # one cheek: not symmetric
    face = Mesh(vertices=v.astype(np.float32), faces=face.faces, source="lopsided")
    mirrored = Mesh(vertices=v * np.array([-1, 1, 1], np.float32), faces=face.faces[:, ::-1].copy(), source="mirror")
    views = (View(0), View(-30), View(30))
    s = RenderSettings(size=SIZE, views=views, canonical=False, texture=False, map="lights")
    a, b = s.render(face), s.render(mirrored)
    assert float((a - b).abs().mean()) > 0.01  # the two faces differ
    flipped = mirror_images(a, views, "lights")
    assert float((flipped - b).abs().max()) < 1e-4
    # without the channel swap it would not match
    plain = mirror_images(a, views, "shade")
    assert float((plain - b).abs().mean()) > 0.05


def test_lights_is_a_model_map_and_a_trainer_choice():
    assert set(IMAGE_MAPS) == set(RENDER_MAPS) and "lights" in MAPS
    s = RenderSettings(size=32, map="lights")
    assert RenderSettings.from_dict(s.to_dict()) == s
    with pytest.raises(ConfigError, match="lights"):
        RenderSettings(map="mask")
    # the default render_maps call keeps its four kernel maps
    assert set(render_maps(face_like_mesh(20), [View(0)], 32)) == {"shade", "depth", "normal", "mask"}
