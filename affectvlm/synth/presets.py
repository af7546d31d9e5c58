"""Emotion presets as avatar and game projects write them, read as recipe books.

A preset maps each emotion to ARKit blendshape weights, in YAML or JSON::

    {"happiness": {"mouthSmileLeft": 0.8, "mouthSmileRight": 0.8, "cheekSquintLeft": 0.5, ...},
     "fear": {"browInnerUp": 0.8, "eyeWideLeft": 0.6, "mouthStretchLeft": 0.3, ...}, ...}

:func:`preset_recipes` turns one into the recipe-book mapping :class:`~affectvlm.synth.recipes.RecipeBook` reads:
one action unit per emotion (``AU90`` onwards, past FACS's numbers) whose blendshapes are the preset's weights in
the book's spelling (Ready Player Me's extra names ``mouthOpen``, ``eyesClosed``, ``eyesLookUp`` and ``eyesLookDown``
become ``jawOpen`` and both sides of ``eyeBlink``, ``eyeLookUp``, ``eyeLookDown``), with the packaged book's codes,
folders and randomisation (a preset may override the ``intensity``, ``subject``, ``extras``, ``pose`` and ``scan``
sections).
"""
from __future__ import annotations

from typing import Any

import yaml

from affectvlm.errors import InputError

__all__ = ["is_preset", "preset_recipes", "EMOTION_NAMES"]

# the names presets use for the packaged book's classes (matched without case)
EMOTION_NAMES = {
    "neutral": ("neutral", "rest", "none"),
    "happiness": ("happiness", "happy", "joy", "joyful", "smile"),
    "sadness": ("sadness", "sad"),
    "surprise": ("surprise", "surprised"),
    "fear": ("fear", "afraid", "scared", "fearful"),
    "disgust": ("disgust", "disgusted"),
    "anger": ("anger", "angry", "mad"),
}
# ARKit shapes the book spells per side although ARKit has one shape (browInnerUp, cheekPuff) or a preset wrote
# one name for both sides (mouthSmile)
_BOTH_SIDES = {"browDown", "browInnerUp", "browOuterUp", "cheekPuff", "cheekSquint", "eyeBlink", "eyeLookDown",
               "eyeLookIn", "eyeLookOut", "eyeLookUp", "eyeSquint", "eyeWide", "mouthDimple", "mouthFrown",
               "mouthLowerDown", "mouthPress", "mouthSmile", "mouthStretch", "mouthUpperUp", "noseSneer"}
# Ready Player Me's morph targets beyond ARKit's 52 (which TalkingHead's presets use), as the ARKit shape that makes
# the same movement; eyes and lids move as a pair
_RPM_EXTRAS = {"mouthOpen": "jawOpen", "eyesClosed": "eyeBlink", "eyesLookUp": "eyeLookUp",
               "eyesLookDown": "eyeLookDown"}
_SECTIONS = ("version", "intensity", "subject", "extras", "pose", "scan")
_FIRST_AU = 90


def is_preset(data: Any) -> bool:
    """Whether a parsed recipe file is a preset (emotion -> blendshape weights) rather than a recipe book."""
    return (isinstance(data, dict) and "action_units" not in data and "emotions" not in data
            and any(k not in _SECTIONS for k in map(str, data)))


def _emotion(name: str, src: str) -> str:
    key = name.strip().lower()
    for emotion, names in EMOTION_NAMES.items():
        if key in names:
            return emotion
    raise InputError(src, f"{name!r} is not an emotion this model knows "
                          f"(use one of {', '.join(n for n in EMOTION_NAMES if n != 'neutral')})")


def _weights(emotion: str, spec: Any, src: str) -> dict[str, float]:
    """A preset's weights for one emotion in the book's spelling; a shape named twice keeps its larger weight."""
    from affectvlm.synth.gltf import arkit_name
    from affectvlm.synth.recipes import MAX_WEIGHT, _number

    if not isinstance(spec, dict):
        raise InputError(src, f"{emotion} must be a mapping of ARKit blendshape names to weights, "
                              f"not {type(spec).__name__}")
    out: dict[str, float] = {}
    for name, value in spec.items():
        w = _number(value, src, f"{emotion}.{name}", 0.0, MAX_WEIGHT)
        shape = _RPM_EXTRAS.get(str(name).strip()) or arkit_name(str(name))
        if shape is None:
            raise InputError(src, f"{emotion}.{name} is not an ARKit blendshape name (browInnerUp, "
                                  f"mouthSmileLeft, jawOpen, ...) nor one of Ready Player Me's "
                                  f"({', '.join(_RPM_EXTRAS)}); remove it or rename it")
        sides = [shape + "_L", shape + "_R"] if shape in _BOTH_SIDES else [shape]
        for s in sides:
            if w > 0:
                out[s] = max(out.get(s, 0.0), w)
    return out


def preset_recipes(data: dict, src: str) -> dict:
    """The recipe-book mapping of a preset (``src`` names the file in every error). Emotions and their units
    (``AU90``...) follow the packaged book's class order, whatever the file's."""
    from affectvlm.synth.recipes import DEFAULT_RECIPES

    base = yaml.safe_load(DEFAULT_RECIPES.read_text("utf-8"))
    book = {k: v for k, v in base.items() if k in _SECTIONS}
    book.update({str(k): v for k, v in data.items() if str(k) in _SECTIONS})
    given: dict[str, dict[str, float]] = {}
    seen: dict[str, str] = {}
    for name, spec in data.items():
        if str(name) in _SECTIONS:
            continue
        emotion = _emotion(str(name), src)
        if emotion in seen:
            raise InputError(src, f"{name!r} and {seen[emotion]!r} are both {emotion}")
        seen[emotion] = str(name)
        weights = _weights(str(name), spec, src)
        if emotion == "neutral" and weights:
            raise InputError(src, f"{name}: neutral is the face at rest; give it no weights")
        if emotion != "neutral" and not weights:
            raise InputError(src, f"{name}: no blendshape has a weight above 0")
        given[emotion] = weights
    action_units: dict[str, dict] = {}
    emotions: dict[str, dict] = {"neutral": dict(base["emotions"]["neutral"], source="no action")}
    for emotion in EMOTION_NAMES:
        if emotion == "neutral" or emotion not in given:
            continue
        au = f"AU{_FIRST_AU + len(action_units)}"
        action_units[au] = {"name": f"{emotion} preset", "blendshapes": given[emotion]}
        packaged = base["emotions"][emotion]
        emotions[emotion] = {"code": packaged["code"], "folder": packaged["folder"], "aus": {au: 1.0},
                             "source": f"preset {seen[emotion]!r}"}
    if not action_units:
        raise InputError(src, "the preset gives no emotion but neutral")
    return {**book, "action_units": action_units, "emotions": emotions}
