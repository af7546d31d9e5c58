"""Input limits as settings. Defaults are sane for real scans; override per call or via environment
variables ``AFFECTVLM_MAX_FILE_MB``, ``AFFECTVLM_MAX_VERTICES``, ``AFFECTVLM_MAX_FACES``,
``AFFECTVLM_MAX_FRAMES``, ``AFFECTVLM_MAX_ZIP_MEMBERS``, ``AFFECTVLM_MAX_UNPACKED_MB``,
``AFFECTVLM_MAX_SCENE_NODES``, ``AFFECTVLM_MAX_TEXTURE_MPX``, ``AFFECTVLM_MAX_FOLDER_FILES``,
``AFFECTVLM_MIN_FACE_VERTICES``."""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

_MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 512 * _MB
    max_vertices: int = 5_000_000
    max_faces: int = 10_000_000
    max_frames: int = 5_000
    max_zip_members: int = 10_000
    max_unpacked_bytes: int = 8 * 1024 * _MB
    max_compression_ratio: float = 200.0  # per zip member; zip bombs are far above this
    max_scene_nodes: int = 100_000  # VRML nodes after DEF/USE expansion (instancing bombs)
    max_texture_pixels: int = 8192 * 8192  # a bigger texture is dropped, the mesh kept
    max_folder_files: int = 100_000  # entries visited in one folder walk
    min_face_vertices: int = 100  # fewer is too small to be a face scan (predict refuses it)

    def with_(self, **kw) -> "Limits":
        return replace(self, **kw)


_ENV = {
    "max_file_bytes": ("AFFECTVLM_MAX_FILE_MB", _MB),
    "max_vertices": ("AFFECTVLM_MAX_VERTICES", 1),
    "max_faces": ("AFFECTVLM_MAX_FACES", 1),
    "max_frames": ("AFFECTVLM_MAX_FRAMES", 1),
    "max_zip_members": ("AFFECTVLM_MAX_ZIP_MEMBERS", 1),
    "max_unpacked_bytes": ("AFFECTVLM_MAX_UNPACKED_MB", _MB),
    "max_scene_nodes": ("AFFECTVLM_MAX_SCENE_NODES", 1),
    "max_texture_pixels": ("AFFECTVLM_MAX_TEXTURE_MPX", 1_000_000),
    "max_folder_files": ("AFFECTVLM_MAX_FOLDER_FILES", 1),
    "min_face_vertices": ("AFFECTVLM_MIN_FACE_VERTICES", 1),
}


def default_limits() -> Limits:
    """Defaults, overridden by any ``AFFECTVLM_MAX_*`` environment variables that are set."""
    kw = {}
    for f in fields(Limits):
        if f.name in _ENV:
            var, unit = _ENV[f.name]
            if os.environ.get(var):
                kw[f.name] = int(float(os.environ[var]) * unit)
    return Limits(**kw)
