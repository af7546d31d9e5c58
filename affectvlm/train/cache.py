"""Render cache: each scan's views are rendered once per (file content, render settings) and reused across
epochs, runs and ranks.

- Key: sha256 of the mesh file's bytes, of image files beside it with the same stem (textures such as
  BU-3DFE's ``_F3D.bmp``), and of the render settings (views, size, texture, canonicalisation, background,
  extra jitter angles and pitches, cache format version; not the settings' ``score_pitches`` as such), and, for
  canonical renders, of the installed face-frame network's weights (it chooses the frame and the face crop).
- Entry: ``ROOT/<k[:2]>/<key>.npy``, uint8 array (V, 3, H, W). Written to a unique temporary file then
  ``os.replace``d into place: several ranks rendering the same scan at once each write a complete file and
  the last rename wins, so no lock is needed for correctness. :meth:`RenderCache.warm` shards the missing
  entries over ranks (rank r renders items r, r+W, ...) so that work is not duplicated in the first place.
- View-angle jitter: with ``angle_jitter = j > 0`` the cache also renders every view at yaw - j and
  yaw + j; entries then hold 3V views ordered [base views, yaw - j views, yaw + j views] and the augmenter
  picks one of the three per view. Image-space rotation cannot fake an out-of-plane yaw change.
- Scoring pitches: with ``pitches`` (the model's ``score_pitches``) every view is also rendered at each added
  pitch, after the yaw groups: [base, (yaw - j, yaw + j), pitch p1, pitch p2, ...]. Training then sees the
  pitched views that scoring fuses, and :attr:`RenderCache.scoring_index` picks the views ``predict`` scores, in
  its order (:meth:`affectvlm.render.RenderSettings.for_scoring`).
- Only canonical, un-augmented renders are stored; every other augmentation is applied on the fly.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from affectvlm.errors import ConfigError

# Bump whenever the renderer or canonicalisation changes what a view looks like (2: new up/front vote; 3: winding
# made consistent; 4: the crop's landmarks read again on the face, dense scans decimated in mm whatever their units).
CACHE_VERSION = 4
_IMAGE_EXT = (".bmp", ".png", ".jpg", ".jpeg")


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of the file and of same-stem image files beside it (textures)."""
    p = Path(path)
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    for ext in _IMAGE_EXT:
        for q in (p.with_suffix(ext), p.with_suffix(ext.upper())):
            if q.is_file():
                h.update(q.name.encode())
                h.update(q.read_bytes())
                break
    return h.hexdigest()


def default_cache_dir() -> Path:
    from affectvlm.model.caches import own_cache

    return own_cache("renders")


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    render_s: float = 0.0

    @property
    def hit_rate(self) -> float:
        n = self.hits + self.misses
        return self.hits / n if n else 0.0


def set_frame_of(samples: Sequence, settings):
    """The face frame most of the samples' scans share (:func:`affectvlm.predict.sample_set_frame`), or None."""
    from functools import partial

    from affectvlm.io import load_mesh
    from affectvlm.predict import sample_set_frame

    paths = list(dict.fromkeys(str(s.path) for s in samples))
    return sample_set_frame([partial(load_mesh, p, texture=False) for p in paths], settings)


class RenderCache:
    """``get(path) -> uint8 (V,3,H,W)``; ``warm(paths, rank, world)`` fills missing entries in batches."""

    def __init__(self, root: str | os.PathLike, settings, angle_jitter: float = 0.0, device: str = "cpu",
                 batch: int = 16, pitches: Sequence[float] = (), set_frame=None):
        from affectvlm.render import View

        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a file of that name, no permission
            raise ConfigError(f"{self.root}: cannot hold the render cache ({e.strerror or e}); give --cache-dir "
                              "a writable folder") from None
        self.settings = settings
        self.set_frame = set_frame  # the frame most of the run's scans share (affectvlm.setframe), for flagged ones
        self.angle_jitter = float(angle_jitter)
        self.pitches = tuple(float(p) for p in pitches)
        views = tuple(settings.views)
        groups = [views]
        if self.angle_jitter > 0:
            j = self.angle_jitter
            groups += [tuple(View(v.yaw - j, v.pitch) for v in views), tuple(View(v.yaw + j, v.pitch) for v in views)]
        first_pitch = len(groups)
        groups += [tuple(View(v.yaw, v.pitch + p) for v in views) for p in self.pitches]
        self.render_views_list = tuple(v for g in groups for v in g)
        self.n_base = len(views)
        # the views predict scores (base, then each pitch group), as indices into an entry
        self.scoring_index = list(range(self.n_base)) + [
            g * self.n_base + k for g in range(first_pitch, len(groups)) for k in range(self.n_base)]
        self.device = device
        self.batch = batch
        self.stats = CacheStats()
        self._warmed: set[Path] = set()  # missing when warm() began (rendered by this or another rank): no hit
        sd = settings.to_dict() if hasattr(settings, "to_dict") else dict(settings)
        sd.pop("score_pitches", None)  # what is rendered is keyed below (``pitches``), not what the model names
        key = {"v": CACHE_VERSION, "settings": sd, "jitter": self.angle_jitter}
        if self.pitches:  # only when set, so entries rendered without them keep their keys
            key["pitches"] = list(self.pitches)
        if sd.get("canonical", True) or sd.get("crop"):
            from affectvlm.faceframe import weights_digest

            key["frame_net"] = weights_digest()
        if set_frame is not None:  # only when found, so entries of sets without one keep their keys
            key["set_frame"] = [set_frame.up, set_frame.front]
        self._settings_key = json.dumps(key, sort_keys=True, default=str)
        self._digests: dict[tuple[str, int, int], str] = {}

    def key(self, path: str | os.PathLike) -> str:
        st = os.stat(path)
        memo = (str(path), st.st_mtime_ns, st.st_size)
        if memo not in self._digests:
            self._digests[memo] = file_digest(path)
        return hashlib.sha256((self._digests[memo] + self._settings_key).encode()).hexdigest()

    def entry(self, path: str | os.PathLike) -> Path:
        k = self.key(path)
        return self.root / k[:2] / f"{k}.npy"

    def _write(self, target: Path, arr: np.ndarray) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.npy")
        np.save(tmp, arr)
        os.replace(tmp, target)

    def _render(self, paths: Sequence[str]) -> list[np.ndarray]:
        import time
        from dataclasses import replace

        from affectvlm.io import load_mesh
        from affectvlm.io._common import check_face

        t0 = time.perf_counter()
        s = self.settings
        meshes = [check_face(load_mesh(p, texture=s.texture)) for p in paths]  # what predict refuses, so does training
        s = replace(s, views=self.render_views_list)
        if self.set_frame is not None:  # oriented as predict orients a set's scans
            from affectvlm.predict import orient_scan

            prepared = [orient_scan(m, s, self.set_frame) for m in meshes]
            meshes, s = [p.mesh for p in prepared], prepared[0].settings
        imgs = s.render(meshes, device=self.device)
        out = (imgs.clamp(0, 1) * 255 + 0.5).to("cpu").numpy().astype(np.uint8)
        self.stats.render_s += time.perf_counter() - t0
        return [out[i] for i in range(len(paths))]

    def get(self, path: str | os.PathLike) -> np.ndarray:
        target = self.entry(path)
        if target.is_file():
            try:
                arr = np.load(target, allow_pickle=False)
                if target in self._warmed:
                    self._warmed.discard(target)
                else:
                    self.stats.hits += 1
                return arr
            except (ValueError, OSError):  # a corrupt entry (disk full): re-render it
                pass
        self.stats.misses += 1
        arr = self._render([str(path)])[0]
        self._write(target, arr)
        return arr

    def missing(self, paths: Sequence[str]) -> list[str]:
        return [p for p in dict.fromkeys(map(str, paths)) if not self.entry(p).is_file()]

    def warm(self, paths: Sequence[str], rank: int = 0, world: int = 1, progress=None) -> int:
        """Render this rank's share of the missing entries, in batches. Returns how many it rendered."""
        missing = self.missing(paths)
        self._warmed.update(self.entry(p) for p in missing)  # this rank's share and the others': none was on disk
        todo = missing[rank::world]
        for i in range(0, len(todo), self.batch):
            chunk = todo[i:i + self.batch]
            for p, arr in zip(chunk, self._render(chunk)):
                self._write(self.entry(p), arr)
            self.stats.misses += len(chunk)
            if progress is not None:
                progress(len(chunk))
        return len(todo)

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.root.rglob("*.npy") if not f.name.startswith("."))

    def report(self) -> dict:
        return {"cache_dir": str(self.root), "hits": self.stats.hits, "misses": self.stats.misses,
                "hit_rate": round(self.stats.hit_rate, 4), "render_s": round(self.stats.render_s, 3),
                "size_mb": round(self.size_bytes() / 2**20, 2)}
