"""Render cache: keys, hits, sharded warm-up, and several processes filling the same entries at once."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from affectvlm.render import RenderSettings
from affectvlm.train.cache import RenderCache

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def _scans(root: Path, n: int = 4) -> list[str]:
    from test_train import write_tiny_bu3dfe

    write_tiny_bu3dfe(root, n_subjects=n, intensities=(4,))
    return sorted(str(p) for p in root.rglob("*.wrl"))


def test_cache_hits_keys_and_shards(tmp_path):
    paths = _scans(tmp_path / "d", 2)
    s = RenderSettings(size=32)
    c = RenderCache(tmp_path / "c", s)
    a = c.get(paths[0])
    assert a.dtype == np.uint8 and a.shape == (3, 3, 32, 32) and a.max() > 0
    assert np.array_equal(c.get(paths[0]), a) and (c.stats.hits, c.stats.misses) == (1, 1)
    assert c.report()["hit_rate"] == 0.5 and c.size_bytes() > 3 * 3 * 32 * 32
    cold = RenderCache(tmp_path / "cold", s)  # warmed, then read: one render and one read of each, no hit
    cold.warm(paths)
    assert [cold.get(p).shape for p in paths] and (cold.stats.hits, cold.stats.misses) == (0, len(paths))
    assert np.array_equal(cold.get(paths[0]), a) and (cold.stats.hits, cold.stats.misses) == (1, len(paths))
    ranks = [RenderCache(tmp_path / "cold2", s) for _ in range(2)]  # two ranks warm their shares of one folder
    for r, c_r in enumerate(ranks):  # rank 0 first: it found every entry missing, rendered half
        c_r.warm(paths, rank=r, world=2)
    assert [ranks[0].get(p).shape for p in paths] and ranks[0].stats.hits == 0  # rank 1's share is no hit either
    # other settings, other key; a changed texture beside the scan, other key
    assert RenderCache(tmp_path / "c", RenderSettings(size=40)).entry(paths[0]) != c.entry(paths[0])
    # scoring's extra pitches are not rendered for training: the same entries
    pitched = RenderCache(tmp_path / "c", RenderSettings(size=32, score_pitches=(-10, 10)))
    assert pitched.entry(paths[0]) == c.entry(paths[0]) and pitched.render_views_list == c.render_views_list
    k0 = c.entry(paths[1])
    Path(paths[1]).with_suffix(".bmp").write_bytes(Path(paths[1]).with_suffix(".bmp").read_bytes() + b"\0")
    assert RenderCache(tmp_path / "c", s).entry(paths[1]) != k0
    # rank 1 of 2 renders every other missing entry
    c2 = RenderCache(tmp_path / "c2", s)
    assert c2.warm(paths, rank=1, world=2) == len(paths) // 2
    assert len(c2.missing(paths)) == len(paths) - len(paths) // 2
    # angle jitter renders 3x the views
    j = RenderCache(tmp_path / "c3", s, angle_jitter=6.0)
    assert j.get(paths[0]).shape == (9, 3, 32, 32)


def test_cache_renders_the_scoring_pitches_when_asked(tmp_path):
    """A run renders each view also at the model's score_pitches (after any yaw-jitter renders); scoring_index
    picks exactly what predict renders for scoring, in its order; without pitches the key is the old one."""
    from affectvlm.render import View

    paths = _scans(tmp_path / "d", 1)
    s = RenderSettings(size=32, views=(View(0), View(-30), View(30)), score_pitches=(-10, 10))
    plain = RenderCache(tmp_path / "c", s)
    both = RenderCache(tmp_path / "c", s, angle_jitter=6.0, pitches=s.score_pitches)
    assert both.entry(paths[0]) != plain.entry(paths[0])
    assert RenderCache(tmp_path / "c", s, pitches=()).entry(paths[0]) == plain.entry(paths[0])
    entry = both.get(paths[0])
    assert entry.shape == (15, 3, 32, 32) and len(both.scoring_index) == 9
    scoring = s.for_scoring()
    assert [both.render_views_list[i] for i in both.scoring_index] == list(scoring.views)
    from affectvlm.io import load_mesh

    direct = (scoring.render([load_mesh(paths[0], texture=s.texture)]).clamp(0, 1) * 255 + 0.5).numpy().astype(np.uint8)
    assert np.array_equal(entry[both.scoring_index], direct[0])


@pytest.mark.slow
def test_concurrent_writers_leave_complete_entries(tmp_path):
    paths = _scans(tmp_path / "d", 2)
    code = ("import sys; from affectvlm.render import RenderSettings; from affectvlm.train.cache import RenderCache;"
            "c = RenderCache(sys.argv[1], RenderSettings(size=32)); c.warm(sys.argv[2:])")
    env = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "c"), *paths], env=env) for _ in range(3)]
    assert all(p.wait(120) == 0 for p in procs)
    c = RenderCache(tmp_path / "c", RenderSettings(size=32))
    assert c.missing(paths) == []
    for p in paths:
        assert c.get(p).shape == (3, 3, 32, 32)
    assert not list((tmp_path / "c").rglob("*.tmp.npy"))  # no temp file left behind


def test_another_frame_network_is_another_key(tmp_path, monkeypatch):
    """Renders depend on the face-frame network (frame and crop): a new network must not reuse old renders."""
    import shutil

    import affectvlm.faceframe as faceframe

    paths = _scans(tmp_path / "d", 1)
    s = RenderSettings(size=32)
    k0 = RenderCache(tmp_path / "c", s).entry(paths[0])
    other = tmp_path / "net"
    shutil.copytree(faceframe.WEIGHTS_DIR, other)
    cfg = other / "frame-net.json"
    cfg.write_text(cfg.read_text().replace('"threshold"', '"threshold_note": "x", "threshold"'))
    monkeypatch.setattr(faceframe, "WEIGHTS_DIR", other)
    faceframe.weights_digest.cache_clear()
    try:
        assert RenderCache(tmp_path / "c", s).entry(paths[0]) != k0
        # files given their axes are still canonicalised (cropped by the network's landmarks): keyed too;
        # a plain centred render does not depend on the network
        from dataclasses import replace

        plain = replace(s, canonical=False, crop=False)
        k_plain = RenderCache(tmp_path / "c", plain).entry(paths[0])
        monkeypatch.setattr(faceframe, "WEIGHTS_DIR", faceframe.Path("/nonexistent"))
        faceframe.weights_digest.cache_clear()
        assert RenderCache(tmp_path / "c", plain).entry(paths[0]) == k_plain
    finally:
        faceframe.weights_digest.cache_clear()


def test_one_override_keeps_downloads_renders_and_face_model_arrays_apart(tmp_path, monkeypatch):
    from affectvlm.model import caches
    from affectvlm.synth.facekit import _cache_dir
    from affectvlm.train.cache import default_cache_dir

    monkeypatch.setenv("AFFECTVLM_CACHE", str(tmp_path / "c"))
    assert caches.hf_cache_dir() == tmp_path / "c"
    assert default_cache_dir() == tmp_path / "c" / "renders"
    assert _cache_dir() == tmp_path / "c" / "synth"
    monkeypatch.delenv("AFFECTVLM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "affectvlm" / "renders"
    assert _cache_dir() == tmp_path / "xdg" / "affectvlm" / "synth"
