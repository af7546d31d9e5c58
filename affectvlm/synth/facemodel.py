"""One contract for every morphable face the synthetic data draws from (ICT-FaceKit, MakeHuman + FACSHuman, ...).

A :class:`FaceModel` is in millimetres, +Y up, +Z toward the viewer (the face looks along +Z), X = the viewer's
right, origin near the face centre. Expressions are FACS action units, so one expression sampler
(:mod:`affectvlm.synth.ausampler`) drives every face model, and a model with other people's sculpts of the same
AUs shows the learner what survives a change of face model.

AU target names: ``"AU12L"`` / ``"AU12R"`` for the subject's left / right half of a sided unit, ``"AU17"`` for a
unit with one target. :func:`apply_aus` takes per-AU ``(left, right)`` intensities (0 = off, 1 = the target as
sculpted) and uses whichever form the model has.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

__all__ = ["FaceModel", "apply_aus", "arkit_action_units", "au_base", "ict_face_model", "load_face_models"]

# AU -> ARKit blendshapes for units the default recipe book leaves out (AU11 has no ARKit shape: a weak
# upper-lip raise stands in for the nasolabial deepener)
_ICT_EXTRA_AUS = {
    "AU11": {"mouthUpperUp_L": 0.3, "mouthUpperUp_R": 0.3},
    "AU28": {"mouthRollLower": 1.0, "mouthRollUpper": 1.0},
    "AU45": {"eyeBlink_L": 1.0, "eyeBlink_R": 1.0},
    "AU64": {"eyeLookDown_L": 1.0, "eyeLookDown_R": 1.0},
}
_AU_KEY = re.compile(r"^(AU\d{1,2})([LR]?)$")


def au_base(key: str) -> tuple[str, str]:
    """``"AU12L"`` -> ``("AU12", "L")``; ``"AU17"`` -> ``("AU17", "")``."""
    m = _AU_KEY.match(key)
    if not m:
        raise ValueError(f"not an AU target name: {key!r}")
    return m.group(1), m.group(2)


@dataclass
class FaceModel:
    """A morphable face (see the module docstring for axes and units).

    neutral: (N, 3) float32 mm. faces: (F, 3) int64 triangles over everything the model has (face, and where
    present forehead/scalp, ears, neck). identities: (K, N, 3) float32 mm deltas; an identity is
    ``sum_k w_k identities[k]`` with ``w ~ N(0, 1)``. au_targets: AU name -> (N, 3) float32 mm delta at full
    intensity. landmarks: (83,) vertex ids in BU-3DFE ``.bnd`` order, or an empty array when unknown.
    face_mask: (N,) bool, the BU-3DFE ``_F3D``-like face crop (brows-to-chin and ear to ear, a forehead band);
    vertices outside it are the extra a wider scan may show. depth_mm: nominal face size for scaling checks.
    """

    name: str
    neutral: np.ndarray
    faces: np.ndarray
    identities: np.ndarray
    au_targets: dict[str, np.ndarray]
    landmarks: np.ndarray
    face_mask: np.ndarray
    source: str = ""
    licence: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def n_vertices(self) -> int:
        return int(len(self.neutral))

    @property
    def action_units(self) -> tuple[str, ...]:
        """AU bases this model can show (``"AU12"``...), sorted by number."""
        return tuple(sorted({au_base(k)[0] for k in self.au_targets}, key=lambda s: int(s[2:])))

    def identity(self, weights: np.ndarray) -> np.ndarray:
        """Neutral + identity deltas for ``weights`` (extra weights beyond K are ignored)."""
        v = self.neutral.astype(np.float64).copy()
        w = np.asarray(weights, dtype=np.float64)[: len(self.identities)]
        if len(w):
            v += np.tensordot(w, self.identities[: len(w)], axes=1)
        return v


def apply_aus(model: FaceModel, base: np.ndarray, aus: Mapping[str, tuple[float, float]]) -> np.ndarray:
    """``base`` (N, 3) plus the AU targets at per-side intensities ``{"AU12": (left, right), ...}``.

    A sided model target gets its side's value; a one-target unit gets the mean of the two sides. AUs the model
    lacks are skipped (a model without AU43, say, just does not close the eyes)."""
    v = np.asarray(base, dtype=np.float64).copy()
    t = model.au_targets
    for au, (left, right) in aus.items():
        if au + "L" in t or au + "R" in t:
            if left and au + "L" in t:
                v += float(left) * t[au + "L"]
            if right and au + "R" in t:
                v += float(right) * t[au + "R"]
        elif au in t:
            w = 0.5 * (float(left) + float(right))
            if w:
                v += w * t[au]
    return v


def arkit_action_units(shapes: Mapping[str, np.ndarray], book=None) -> dict[str, np.ndarray]:
    """AU targets (``"AU12L"``/``"AU12R"``, mm) composed from ARKit-named blendshape deltas (``browDown_L``...)
    with a recipe book's ``action_units`` map; units it leaves out come from ``_ICT_EXTRA_AUS`` when all their
    shapes are there. ``_L`` / ``_R`` shapes go to the AU's sides, the others half to each side; a sided shape the
    model has only unsided (``browInnerUp``) takes half of that shape, spread over both sides, per side named;
    shapes a model lacks are skipped (an AU with none of its shapes is left out)."""
    from affectvlm.synth.recipes import RecipeBook

    book = book or RecipeBook.load()
    extra = {au: m for au, m in _ICT_EXTRA_AUS.items() if au not in book.action_units and all(bs in shapes for bs in m)}
    shape0 = next(iter(shapes.values()))
    targets: dict[str, np.ndarray] = {}
    for au, weights in {**book.action_units, **extra}.items():
        left = np.zeros_like(shape0, dtype=np.float64)
        right = np.zeros_like(shape0, dtype=np.float64)
        found = False
        for bs, w in weights.items():
            side = bs[-2:] if bs[-2:] in ("_L", "_R") else ""
            if bs in shapes:
                d = np.asarray(shapes[bs], dtype=np.float64) * w
            elif side and bs[:-2] in shapes:  # a model with one shape for both sides (ARKit's browInnerUp)
                d = 0.5 * np.asarray(shapes[bs[:-2]], dtype=np.float64) * w
                side = ""
            else:
                continue
            found = True
            if side == "_L":
                left += d
            elif side == "_R":
                right += d
            else:
                left += 0.5 * d
                right += 0.5 * d
        if not found:
            continue
        targets[au + "L"] = left.astype(np.float32)
        targets[au + "R"] = right.astype(np.float32)
    return targets


def ict_face_model(kit, recipes=None) -> FaceModel:
    """ICT-FaceKit (:func:`affectvlm.synth.load_facekit`) as a :class:`FaceModel`.

    The whole face area is kept (forehead, ears' front, jaw and neck); ``face_mask`` is the rig's
    BU-3DFE-like ellipse crop. AU targets are composed from the ARKit blendshapes with the recipe book's
    ``action_units`` map (``_L`` / ``_R`` blendshapes go to the AU's sides, the others half to each side)."""
    from affectvlm.synth.recipes import RecipeBook
    from affectvlm.synth.rig import FaceRig, _ellipse_mask

    book = recipes or RecipeBook.load()
    rig = FaceRig(kit, crop="none")
    mm = float(kit.units_to_mm)
    mask_all = _ellipse_mask(kit)
    shapes = {bs: rig.expressions[kit.expression_index(bs)] * mm for bs in kit.expression_names}
    targets = arkit_action_units(shapes, book)
    centre = rig.neutral[mask_all[rig.vertex_ids]].mean(0)
    return FaceModel(
        name="ict-facekit",
        neutral=((rig.neutral - centre) * mm).astype(np.float32),
        faces=rig.faces.astype(np.int64),
        identities=(rig.identities * mm).astype(np.float32),
        au_targets=targets,
        landmarks=rig.landmark_ids.astype(np.int64),
        face_mask=mask_all[rig.vertex_ids],
        source=str(kit.folder),
        licence="MIT (ICT-FaceKit)",
        meta={"n_identity_modes": int(kit.n_identities)},
    )


def load_face_models(facekit=None, makehuman=None, facshuman=None, *, makehuman_units: str | None = None,
                     faceunits=None, rocketbox=None, gltf=None, cache: bool = True) -> dict[str, FaceModel]:
    """The face models in the folders a user names, by model name (ICT-FaceKit; MakeHuman + FACSHuman; with
    ``makehuman_units`` (an ethnicity), also ``makehuman-units``: MakeHuman's own expression units; with
    ``faceunits`` (a folder), also ``makehuman-faceunits``: MPFB's ARKit-named Face Units on MakeHuman's mesh;
    ``rocketbox``: Rocketbox avatar FBX files with HeadBox's AU shapes, one model each; ``gltf``: GLB avatars
    with ARKit-named morph targets, one model each)."""
    models: dict[str, FaceModel] = {}
    if facekit:
        from affectvlm.synth.facekit import load_facekit

        models["ict-facekit"] = ict_face_model(load_facekit(facekit, cache=cache))
    if makehuman:
        from affectvlm.synth.makehuman import load_makehuman

        m = load_makehuman(makehuman, facshuman, cache=cache)
        models[m.name] = m
        if makehuman_units:
            from affectvlm.synth.makehuman import makehuman_units_model

            u = makehuman_units_model(m, makehuman, makehuman_units)
            models[u.name] = u
        if faceunits:
            from affectvlm.synth.makehuman import makehuman_faceunits_model

            f = makehuman_faceunits_model(m, makehuman, faceunits)
            models[f.name] = f
    if rocketbox:
        from affectvlm.synth.rocketbox import load_rocketbox

        models.update(load_rocketbox(rocketbox))
    if gltf:
        from affectvlm.synth.gltf import load_gltf_heads

        models.update(load_gltf_heads(gltf))
    return models
