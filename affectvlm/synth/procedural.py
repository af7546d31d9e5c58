"""Procedural sculptors: action-unit targets built from a face's landmarks, with no artist's sculpt behind them.

Every face model's AU targets come from one artist (ICT-FaceKit's, FACSHuman's, MPFB's...), and a learner that sees
few artists learns their styles. A procedural sculptor writes each AU anew as a few smooth "handles" on the
neutral face: a landmark (a brow's inner end, a mouth corner, the chin...), a movement in millimetres along the
FACS description of the unit, and a Gaussian reach. Its *style* is drawn per sculptor: how far each unit moves,
how wide it spreads, in which exact direction, and from a slightly different anchor. So ``K`` sculptors on one
face are ``K`` new readings of the same FACS text, and whole expression families (EMFACS prototypes...) drive
them through :func:`~affectvlm.synth.facemodel.apply_aus` as they drive sculpted models.

Masks keep the lips and eyelids apart as real sculpts do: an upper-lip handle never moves the lower lip (the lip
line of :func:`~affectvlm.synth.transfer.lip_side`), an upper-lid handle never the lower lid. The jaw drop (AU26,
AU27) turns the face below the lip line about an axis in front of the ears.

Landmarks are the 83 of BU-3DFE's ``.bnd`` order (the model's own, or found by the face-frame network).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from affectvlm.synth.facemodel import FaceModel

__all__ = ["ProceduralStyle", "procedural_model", "procedural_targets", "with_procedural_expressions"]

_EYE = {+1: slice(0, 8), -1: slice(8, 16)}  # BU-3DFE order; which side is +x is checked on the landmarks
_BROW = {+1: slice(16, 26), -1: slice(26, 36)}
_NOSE = slice(36, 48)
_OUTER_LIP = slice(48, 60)
_CHIN = 75


@dataclass(frozen=True)
class ProceduralStyle:
    """How far one sculptor's reading of the FACS text is drawn from the nominal one."""

    gain_sd: float = 0.3         # log-normal gain per AU
    sculptor_gain_sd: float = 0.2  # log-normal gain shared by all of a sculptor's units
    direction_sd: float = 0.3    # per handle, per component, as a share of the movement's length
    reach: tuple[float, float] = (0.75, 1.4)  # multiplies each handle's nominal Gaussian reach
    anchor_sd_mm: float = 2.0    # the anchor's offset from its landmark
    jaw_deg: tuple[float, float] = (9.0, 15.0)  # AU26 at full intensity; AU27 x1.6


@dataclass(frozen=True)
class _Handle:
    anchor: np.ndarray  # (3,) mm
    move: np.ndarray    # (3,) mm at full intensity
    reach: float        # Gaussian sd, mm
    region: str         # "all", "upper" / "lower" (lip line), "lid_up" / "lid_down" (the eye's line)


def _sides(L: np.ndarray) -> dict[int, int]:
    """Which BU-3DFE group (+1: points 0-7, 16-25) lies on the +x side of this face."""
    first = 1 if L[_EYE[+1]][:, 0].mean() > L[_EYE[-1]][:, 0].mean() else -1
    return {+1: first, -1: -first}  # side sign -> group key


def _handles(L: np.ndarray, side: int, scale: float) -> dict[str, list[_Handle]]:
    """Nominal handles of every sided AU on the ``side`` (+1: +x, the subject's left) half, in mm."""
    g = _sides(L)[side]
    eye, brow = L[_EYE[g]], L[_BROW[g]]
    ec = eye.mean(0)
    inner = brow[np.argmin(np.abs(brow[:, 0]))]
    outer = brow[np.argmax(np.abs(brow[:, 0]))]
    mid = brow[np.argsort(np.abs(brow[:, 0] - (inner[0] + outer[0]) / 2))[0]]
    nose = L[_NOSE]
    wing = nose[np.argmax(nose[:, 0] * side)]
    lips = L[_OUTER_LIP]
    corner = lips[np.argmax(lips[:, 0] * side)]
    mouth_y = lips[:, 1].mean()
    up_lip = lips[(lips[:, 1] > mouth_y)]
    up_side = up_lip[np.argmin(np.abs(up_lip[:, 0] - corner[0] / 2))] if len(up_lip) else corner
    lo_lip = lips[(lips[:, 1] < mouth_y)]
    lo_side = lo_lip[np.argmin(np.abs(lo_lip[:, 0] - corner[0] / 2))] if len(lo_lip) else corner
    cheek = np.array([ec[0] + side * 6 * scale, (ec[1] + corner[1]) / 2 + 4 * scale, (ec[2] + corner[2]) / 2 + 6 * scale])
    upper_lid = ec + np.array([0, 3.0, 1.0]) * scale
    lower_lid = ec + np.array([0, -3.0, 1.0]) * scale
    lid_gap = max(float(eye[:, 1].max() - eye[:, 1].min()), 4.0 * scale)
    fold = (wing + corner) / 2

    def h(anchor, move, reach, region="all"):
        m = np.asarray(move, np.float64) * scale
        m[0] *= side  # moves are written for the +x half; medial = -x there
        return _Handle(np.asarray(anchor, np.float64), m, reach * scale, region)

    return {
        "AU1": [h(inner, (0, 7, 0.5), 13)],
        "AU2": [h(outer, (0.5, 7, -1), 13), h(mid, (0, 3, 0), 12)],
        "AU4": [h(inner, (-3.5, -4.5, 1.5), 12), h(mid, (-1.5, -3, 0.5), 12)],
        "AU5": [h(upper_lid, (0, 3, -0.5), 6, "lid_up")],
        "AU6": [h(cheek, (0, 5, 2.5), 15), h(lower_lid, (0, 1.5, 0.5), 6, "lid_down")],
        "AU7": [h(lower_lid, (-0.5, 2.5, 0), 6, "lid_down"), h(upper_lid, (0, -1.5, 0), 5, "lid_up")],
        "AU9": [h(wing, (0, 6, -1), 9), h(inner, (-1, -3, 0.5), 10), h(up_side, (0, 2, 0), 8, "upper")],
        "AU10": [h(up_side, (1, 6, -0.5), 10, "upper"), h(wing, (0, 2, 0), 8)],
        "AU11": [h(fold, (0, 2, -1.5), 7, "upper")],
        "AU12": [h(corner, (6, 8, -5), 14), h(cheek, (1, 3, 2), 16)],
        "AU14": [h(corner, (2, 2, -6), 8)],
        "AU15": [h(corner, (1, -6, -1), 12)],
        "AU16": [h(lo_side, (1, -4, 2), 9, "lower")],
        "AU20": [h(corner, (7, -2, -4), 14)],
        "AU43": [h(upper_lid, (0, -lid_gap / scale * 0.9, 0.8), 7, "lid_up")],
    }


def _midline_handles(L: np.ndarray, scale: float) -> dict[str, list[_Handle]]:
    """Nominal handles of the units written as one target (both halves at once)."""
    lips = L[_OUTER_LIP]
    up = lips[np.argmax(lips[:, 1])]
    lo = lips[np.argmin(lips[:, 1])]
    corners = [lips[np.argmax(lips[:, 0])], lips[np.argmin(lips[:, 0])]]
    chin = L[_CHIN]
    chin = np.array([chin[0], (chin[1] + lo[1]) / 2, max(chin[2], lo[2] - 3 * scale)])

    def h(anchor, move, reach, region="all"):
        return _Handle(np.asarray(anchor, np.float64), np.asarray(move, np.float64) * scale, reach * scale, region)

    def in_(c, k):  # a corner moved toward the midline by k mm (sign by its side)
        return -np.sign(c[0] - up[0]) * k

    return {
        "AU17": [h(chin, (0, 5, 2.5), 16, "lower"), h(lo, (0, 2, 2), 9, "lower")],
        "AU18": [h(up, (0, 0, 4), 10), h(lo, (0, 0, 4), 10)] + [h(c, (in_(c, 6), 0, 3), 10) for c in corners],
        "AU22": [h(up, (0, 2, 4), 9, "upper"), h(lo, (0, -2, 4), 9, "lower")]
        + [h(c, (in_(c, 3), 0, 2), 8) for c in corners],
        "AU23": [h(up, (0, -1.5, -1), 9, "upper"), h(lo, (0, 1.5, -1), 9, "lower")]
        + [h(c, (in_(c, 2), 0, 0), 7) for c in corners],
        "AU24": [h(up, (0, -2.5, -0.5), 10, "upper"), h(lo, (0, 2.5, -0.5), 10, "lower")],
        "AU25": [h(lo, (0, -4, -0.5), 13, "lower"), h(up, (0, 1, 0), 9, "upper")],
        "AU28": [h(up, (0, -1, -5), 9, "upper"), h(lo, (0, 1, -5), 9, "lower")],
    }


def _region_weights(v: np.ndarray, side_of_lip: np.ndarray, L: np.ndarray) -> dict[str, np.ndarray]:
    """Per vertex, how much a handle of each region may move it (see :class:`_Handle`)."""
    lid_up, lid_down = np.ones(len(v)), np.ones(len(v))
    for eye in (L[_EYE[+1]], L[_EYE[-1]]):  # each eye's line: the mean height of its corners
        near = np.linalg.norm(v[:, :2] - eye.mean(0)[:2], axis=1) < 25.0
        ys = eye[np.argsort(eye[:, 0])[[0, -1]], 1].mean()
        above = 1.0 / (1.0 + np.exp(-(v[:, 1] - ys) / 0.7))
        lid_up, lid_down = np.where(near, above, lid_up), np.where(near, 1.0 - above, lid_down)
    return {"all": np.ones(len(v)), "upper": (side_of_lip != -1).astype(np.float64),
            "lower": (side_of_lip != 1).astype(np.float64), "lid_up": lid_up, "lid_down": lid_down}


def _field(v: np.ndarray, handles: list[_Handle], regions: dict[str, np.ndarray]) -> np.ndarray:
    out = np.zeros_like(v)
    for hd in handles:
        d2 = ((v - hd.anchor) ** 2).sum(1)
        out += (np.exp(-d2 / (2.0 * hd.reach ** 2)) * regions[hd.region])[:, None] * hd.move[None, :]
    return out


def _jaw(v: np.ndarray, L: np.ndarray, side_of_lip: np.ndarray, degrees: float, scale: float) -> np.ndarray:
    """The face below the lip line turned down by ``degrees`` about a left-right axis in front of the ears."""
    lips = L[_OUTER_LIP]
    contour = L[68:83]
    top = contour[np.argsort(np.abs(contour[:, 0]))[-2:]]  # the contour's two ends, by the ears
    pivot = np.array([0.0, (top[:, 1].mean() + lips[:, 1].mean()) / 2, top[:, 2].mean()])
    mouth_y = lips[:, 1].mean()
    half = np.abs(lips[:, 0]).max()
    line = mouth_y + 0.6 * np.maximum(np.abs(v[:, 0]) - half, 0.0)  # rises toward the ears as a jaw line does
    w = 1.0 / (1.0 + np.exp(-(line - v[:, 1]) / (3.0 * scale)))
    w = np.where(side_of_lip == -1, 1.0, np.where(side_of_lip == 1, 0.0, w))
    w *= np.exp(-np.maximum(np.abs(v[:, 0]) - 1.6 * half, 0.0) ** 2 / (2 * (20.0 * scale) ** 2))
    corner = np.exp(-(np.abs(v[:, 0]) - half) ** 2 / (2 * (7.0 * scale) ** 2) - (v[:, 1] - mouth_y) ** 2
                    / (2 * (10.0 * scale) ** 2))
    w *= 1.0 - 0.6 * corner  # the corners open less than the middle: a rounded opening
    t = np.radians(degrees)
    r = v - pivot
    y = r[:, 1] * np.cos(t) - r[:, 2] * np.sin(t)  # the chin (in front of the axis) goes down and back
    z = r[:, 1] * np.sin(t) + r[:, 2] * np.cos(t)
    moved = np.stack([r[:, 0], y, z], 1)
    return (moved - r) * w[:, None]


def _draws(n: int, rng: np.random.Generator, style: ProceduralStyle) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Per handle: a direction noise (share of the movement), an anchor offset (mm / scale), a reach factor."""
    return [(rng.normal(0.0, style.direction_sd, 3), rng.normal(0.0, style.anchor_sd_mm, 3),
             float(rng.uniform(*style.reach))) for _ in range(n)]


def _jitter(hd: _Handle, draw: tuple[np.ndarray, np.ndarray, float], side: int, gain: float,
            scale: float) -> _Handle:
    """``hd`` as a sculptor draws it; the draw is written for the +x half and mirrored for the other, as a
    sculptor's left and right targets mirror each other (asymmetry is the expression sampler's)."""
    flip = np.array([side, 1.0, 1.0])
    noise, offset, reach = draw
    move = (hd.move + noise * flip * float(np.linalg.norm(hd.move))) * gain
    return _Handle(hd.anchor + offset * flip * scale, move, hd.reach * reach, hd.region)


def procedural_targets(model: FaceModel, landmarks: np.ndarray, rng: np.random.Generator,
                       style: ProceduralStyle = ProceduralStyle()) -> dict[str, np.ndarray]:
    """One sculptor's AU targets for ``model`` (``"AU12L"``..., float32 mm), drawn from ``rng``."""
    from affectvlm.synth.transfer import lip_side

    L = np.asarray(landmarks, np.float64)
    v = model.neutral.astype(np.float64)
    scale = float(np.linalg.norm(L[_EYE[+1]].mean(0) - L[_EYE[-1]].mean(0))) / 62.0
    side_of_lip = lip_side(model, L)
    regions = _region_weights(v, side_of_lip, L)
    sculptor = float(np.exp(rng.normal(0.0, style.sculptor_gain_sd)))
    targets: dict[str, np.ndarray] = {}
    sided = {s: _handles(L, s, scale) for s in (+1, -1)}
    for au in sided[+1]:
        gain = sculptor * float(np.exp(rng.normal(0.0, style.gain_sd)))
        draws = _draws(len(sided[+1][au]), rng, style)
        for s, key in ((+1, "L"), (-1, "R")):
            hs = [_jitter(hd, d, s, gain, scale) for hd, d in zip(sided[s][au], draws)]
            targets[au + key] = _field(v, hs, regions).astype(np.float32)
    targets["AU45L"], targets["AU45R"] = targets["AU43L"], targets["AU43R"]
    for au, hs in _midline_handles(L, scale).items():
        gain = sculptor * float(np.exp(rng.normal(0.0, style.gain_sd)))
        draws = _draws(len(hs), rng, style)
        targets[au] = _field(v, [_jitter(hd, d, 1, gain, scale) for hd, d in zip(hs, draws)], regions
                             ).astype(np.float32)
    jaw = float(rng.uniform(*style.jaw_deg))
    lower = targets["AU25"]
    lips = L[_OUTER_LIP]
    narrow = [_Handle(c, np.array([-np.sign(c[0]) * 3.0, 0, 0]) * scale, 9 * scale, "all")  # the corners come in
              for c in (lips[np.argmax(lips[:, 0])], lips[np.argmin(lips[:, 0])])]
    targets["AU26"] = (_jaw(v, L, side_of_lip, jaw, scale) + 0.3 * lower).astype(np.float32)
    targets["AU27"] = (_jaw(v, L, side_of_lip, 1.6 * jaw, scale) + 0.3 * lower + _field(v, narrow, regions)
                       ).astype(np.float32)
    return targets


def procedural_model(model: FaceModel, landmarks: np.ndarray, rng: np.random.Generator, *, name: str,
                     style: ProceduralStyle = ProceduralStyle()) -> FaceModel:
    """``model``'s face (mesh, identities, landmarks, crop) with one procedural sculptor's AUs and no emotion
    sculpts (the ``sculpt`` family stays with sculpted models)."""
    meta = {"geometry": model.name, "expressions": "procedural", "n_identity_modes": int(len(model.identities))}
    return replace(model, name=name, au_targets=procedural_targets(model, landmarks, rng, style), meta=meta,
                   source=f"{model.source} + procedural AUs", licence=model.licence)


def with_procedural_expressions(models: dict[str, FaceModel], sculptors: int, seed: int,
                                style: ProceduralStyle = ProceduralStyle()) -> dict[str, FaceModel]:
    """For every face (models on one mesh count once), ``sculptors`` procedural models named
    ``<model>~proc<k>``."""
    from affectvlm.synth.transfer import mesh_homes, neutral_landmarks

    out: dict[str, FaceModel] = {}
    for i, n in enumerate(dict.fromkeys(mesh_homes(models).values())):
        m = models[n]
        L = m.neutral[m.landmarks].astype(np.float64) if len(m.landmarks) == 83 else neutral_landmarks(m)
        for k in range(sculptors):
            out[f"{n}~proc{k}"] = procedural_model(m, L, np.random.default_rng([seed, i, k]), name=f"{n}~proc{k}",
                                                   style=style)
    return out
