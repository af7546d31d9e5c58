"""The mirror image of a rendered multiview set: what the same views of the left-right mirrored face show.

Flipping a view at yaw ``y`` horizontally gives the mirrored face's view at ``-y``, so a mirrored set has
every image flipped *and* the slots permuted: slot (yaw, pitch) receives the flipped image of slot
(-yaw, pitch). Normal maps also negate their x component; the ``lights`` map swaps its red and green channels
(the lights from the upper left and upper right). Used by training augmentation and by
inference, which averages a scan with its mirror image (faces are near-symmetric; the model should be).
"""
from __future__ import annotations

from typing import Sequence

import torch


def mirror_permutation(views: Sequence) -> list[int] | None:
    """perm[i] = index of the view at (-yaw_i, pitch_i), or None when the set is not mirror-symmetric."""
    pos = {(round(v.yaw, 4), round(v.pitch, 4)): i for i, v in enumerate(views)}
    perm = []
    for v in views:
        j = pos.get((round(-v.yaw, 4), round(v.pitch, 4)))
        if j is None:
            return None
        perm.append(j)
    return perm


def mirror_images(x: torch.Tensor, views: Sequence, map: str = "shade") -> torch.Tensor | None:
    """(..., V, 3, H, W) images of ``views`` in [0, 1] -> those of the mirrored face, or None when the view
    set has no mirror (some yaw without a -yaw partner, or V != len(views))."""
    perm = mirror_permutation(views)
    if perm is None or x.ndim < 4 or x.shape[-4] != len(perm):
        return None
    out = torch.flip(x[..., perm, :, :, :], dims=[-1])
    if map == "normal":  # (n + 1) / 2 encoding, background 0 (covered pixels have n_z >= 0)
        covered = out[..., 2, :, :] > 0.25
        out[..., 0, :, :] = torch.where(covered, 1 - out[..., 0, :, :], out[..., 0, :, :])
    elif map == "lights":
        out = out[..., [1, 0, 2], :, :]
    return out
