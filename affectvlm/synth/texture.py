"""Procedural skin textures for synthetic scans (ICT-FaceKit's subset has no albedo map).

A subject-specific skin tone (tied to the ethnicity code), mild blotchy and fine noise, and darker lips,
brows and eye regions painted in UV space from the model's landmark vertices. The texture carries no
expression signal: it is the same for all of a subject's scans.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from affectvlm.synth.facekit import FaceKit

# mean skin tones (sRGB), loosely spread; per-subject jitter is added
SKIN_TONES: dict[str, tuple[int, int, int]] = {
    "WH": (226, 190, 165),
    "BL": (125, 86, 64),
    "AE": (228, 192, 152),
    "AM": (200, 158, 124),
    "IN": (168, 120, 90),
    "LA": (196, 150, 116),
}


def skin_texture(kit: FaceKit, ethnicity: str, rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """(size, size, 3) uint8 RGB texture in the model's UV layout (row 0 = top = v 1)."""
    base = np.asarray(SKIN_TONES.get(ethnicity, SKIN_TONES["WH"]), dtype=np.float64)
    base = base * rng.uniform(0.93, 1.07) + rng.normal(0.0, 4.0, 3)
    # low-frequency blotches + fine pores
    coarse = rng.normal(0.0, 1.0, (8, 8)).astype(np.float32)
    blotch = np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), Image.BICUBIC))
    img = base[None, None, :] * (1.0 + 0.035 * blotch[..., None]) + rng.normal(0.0, 3.0, (size, size, 1))
    img = np.clip(img, 0, 255).astype(np.uint8)

    if len(kit.landmarks) >= 68:
        uv = kit.uv[kit.landmarks[:68]]
        if np.isfinite(uv).all():
            pix = np.stack([uv[:, 0] * (size - 1), (1.0 - uv[:, 1]) * (size - 1)], 1)
            mask_lips = Image.new("L", (size, size), 0)
            ImageDraw.Draw(mask_lips).polygon([tuple(p) for p in pix[48:60]], fill=255)
            mask_brows = Image.new("L", (size, size), 0)
            d = ImageDraw.Draw(mask_brows)
            width = max(2, size // 40)
            for ids in (range(17, 22), range(22, 27)):
                d.line([tuple(pix[i]) for i in ids], fill=255, width=width, joint="curve")
            mask_eyes = Image.new("L", (size, size), 0)
            for ids in (range(36, 42), range(42, 48)):
                ImageDraw.Draw(mask_eyes).polygon([tuple(pix[i]) for i in ids], fill=255)
            blur = ImageFilter.GaussianBlur(max(1.0, size / 200))
            lips = np.asarray(mask_lips.filter(blur), np.float64)[..., None] / 255.0
            brows = np.asarray(mask_brows.filter(blur), np.float64)[..., None] / 255.0
            eyes = np.asarray(mask_eyes.filter(blur), np.float64)[..., None] / 255.0
            f = img.astype(np.float64)
            lip_colour = base * np.array([0.82, 0.55, 0.55])
            brow_colour = np.array([70.0, 50.0, 38.0]) * rng.uniform(0.6, 1.3)
            f = f * (1 - 0.75 * lips) + lip_colour * 0.75 * lips
            f = f * (1 - 0.8 * brows) + brow_colour * 0.8 * brows
            f = f * (1 - 0.6 * eyes) + np.array([60.0, 50.0, 45.0]) * 0.6 * eyes
            img = np.clip(f, 0, 255).astype(np.uint8)
    return img
