"""Synthetic expressive 3D/4D faces from the ICT-FaceKit morphable model, in the real datasets' layouts.

    from affectvlm.synth import load_facekit, SynthConfig, generate
    generate(SynthConfig(subjects=10, seed=0, layout="bu3dfe"), "ICT-FaceKit/FaceXModel", "out/")

CLI: ``affectvlm synth --facekit DIR --out DIR --subjects N --seed S --layout bu3dfe|bu4dfe``.
See docs/SYNTH.md for the action-unit mapping and the emotion prototypes.
"""
from __future__ import annotations

from affectvlm.synth.facekit import FaceKit, load_facekit
from affectvlm.synth.recipes import DEFAULT_RECIPES, Emotion, RecipeBook
from affectvlm.synth.rig import FaceRig, Pose
from affectvlm.synth.sequence import Timing, activation_curve
from affectvlm.synth.writers import MANIFEST_COLUMNS, Subject, SynthConfig, Synthesizer, generate

__all__ = ["DEFAULT_RECIPES", "Emotion", "FaceKit", "FaceRig", "MANIFEST_COLUMNS", "Pose", "RecipeBook",
           "Subject", "SynthConfig", "Synthesizer", "Timing", "activation_curve", "generate", "load_facekit"]
