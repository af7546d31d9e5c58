"""In-memory face data shared by every module: one scan (`Mesh`) and one 4D sequence (`MeshSequence`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Mesh:
    """A triangle mesh as the library passes it around.

    vertices: (N, 3) float32, in the file's own units and axes until canonicalised.
    faces: (F, 3) int64 triangle indices into ``vertices``.
    face_uv: (F, 3, 2) float32 texture coordinates per face corner (u right, v up, in [0, 1]), or None.
    texture: (H, W, 3) uint8 RGB image (row 0 = top of the image), or None.
    vertex_colors: (N, 3) uint8, or None.
    source: where it came from (path, upload name, ``zip:member``), used in every error message.
    meta: free-form facts from the reader (format, texture file name, units, dataset labels, ...).
    """

    vertices: np.ndarray
    faces: np.ndarray
    face_uv: np.ndarray | None = None
    texture: np.ndarray | None = None
    vertex_colors: np.ndarray | None = None
    source: str = "<memory>"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def n_faces(self) -> int:
        return int(self.faces.shape[0])

    @property
    def has_texture(self) -> bool:
        return self.texture is not None and self.face_uv is not None


@dataclass
class MeshSequence:
    """A 4D scan: frames ordered by the frame number in their names.

    frame_ids: the frame number of each kept frame (after sampling), same length as ``frames``.
    """

    frames: list[Mesh]
    frame_ids: list[int]
    source: str = "<memory>"
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)
