"""The ``lights`` map: the face shaded by three lights at once, one per colour channel.

Headlight shading (``shade``) changes only with the square of a small tilt of a surface that faces the camera
(``|n . l|`` near 1), so the subtle relief of a slight expression barely shows. Lights from 45° off the view
axis see the same tilt linearly. Red is lit from the upper left, green from the upper right, blue from below (camera
space, as the viewer sees the image); the mean of the three is close to headlight shading. A mirror image swaps red
and green (:mod:`.mirror`).
"""
from __future__ import annotations

import torch

from .settings import AMBIENT

# unit directions toward each light, camera space (+x image right, +y image up, +z toward the camera)
LIGHTS = torch.nn.functional.normalize(torch.tensor([[-1.0, 1.0, 1.4], [1.0, 1.0, 1.4], [0.0, -1.0, 1.4]]), dim=1)


def lights_from_normals(normal: torch.Tensor, background: float = 0.0) -> torch.Tensor:
    """(..., 3, H, W) normal maps ((n + 1) / 2, background 0) -> the ``lights`` map of the same shape:
    channel c is ``ambient + (1 - ambient) * max(n . l_c, 0)`` on covered pixels, ``background`` elsewhere."""
    n = normal * 2 - 1
    lam = torch.einsum("...chw,lc->...lhw", n, LIGHTS.to(n))
    lam = AMBIENT + (1 - AMBIENT) * lam.clamp(0, 1)
    covered = normal[..., 2:3, :, :] > 0.25  # covered pixels face the camera: n_z >= 0, so >= 0.5 here
    return torch.where(covered, lam, torch.full_like(lam, background))
