"""Emotion presets (emotion -> ARKit blendshape weights) read as recipe books (affectvlm.synth.presets)."""
import csv
import json

import pytest
import yaml

from affectvlm.errors import InputError
from affectvlm.synth.recipes import RecipeBook
from tests.test_synth import _cache, kit_dir  # noqa: F401  (test_synth's fixtures: the ICT-FaceKit-layout face, a private cache)

PRESET = {
    "angry": {"browDownLeft": 0.9, "browDownRight": 0.9, "noseSneer": 0.4, "mouthPressLeft": 0.5,
              "mouthPressRight": 0.5},
    "Joy": {"mouthSmile": 0.7, "mouthSmileLeft": 0.8, "cheekSquintLeft": 0.4, "cheekSquintRight": 0.4,
            "jawOpen": 0.0},
    "neutral": {},
    "Fear": {"browInnerUp": 0.8, "eyeWideLeft": 0.6, "eyeWide_R": 0.6, "mouthStretchLeft": 0.3,
             "mouthStretchRight": 0.3, "jawOpen": 0.3},
    "sad": {"browInnerUp": 0.6, "mouthFrownLeft": 0.5, "mouthFrownRight": 0.5},
    "intensity": {"levels": {3: 0.7, 4: 0.9}},
}


def test_a_preset_is_read_as_a_recipe_book(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps(PRESET, indent="\t"))  # tabs: JSON, not YAML
    book = RecipeBook.load(tmp_path / "p.json")
    assert list(book.emotions) == ["neutral", "happiness", "sadness", "fear", "anger"]  # the packaged order
    assert book.expressive == ["happiness", "sadness", "fear", "anger"] and not book.emotions["neutral"].aus
    assert [(e.code, e.folder) for e in book.emotions.values()] == [
        ("NE", None), ("HA", "Happy"), ("SA", "Sad"), ("FE", "Fear"), ("AN", "Angry")]
    units = {e: book.action_units[next(iter(book.emotions[e].aus))] for e in book.expressive}
    assert sorted(book.action_units) == ["AU90", "AU91", "AU92", "AU93"] and book.emotions["anger"].aus == {"AU93": 1.0}
    # one name for both sides becomes two; a shape named twice keeps its larger weight; zero weights go
    assert units["happiness"] == {"mouthSmile_L": 0.8, "mouthSmile_R": 0.7, "cheekSquint_L": 0.4, "cheekSquint_R": 0.4}
    assert units["fear"] == {"browInnerUp_L": 0.8, "browInnerUp_R": 0.8, "eyeWide_L": 0.6, "eyeWide_R": 0.6,
                             "mouthStretch_L": 0.3, "mouthStretch_R": 0.3, "jawOpen": 0.3}
    assert units["anger"]["noseSneer_L"] == units["anger"]["noseSneer_R"] == 0.4
    assert book.intensity_levels == {3: 0.7, 4: 0.9}  # the preset's own section
    assert book.au_jitter == RecipeBook.load().au_jitter  # the rest from the packaged book
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(PRESET))
    assert RecipeBook.load(tmp_path / "p.yaml").action_units == book.action_units


def test_ready_player_mes_extra_names_are_their_arkit_shapes(tmp_path):
    # TalkingHead's presets write Ready Player Me's own morph names beside ARKit's
    preset = {"sad": {"browInnerUp": 0.7, "eyesClosed": 0.5, "mouthFrownLeft": 1.0, "eyeBlinkLeft": 0.8},
              "fear": {"mouthOpen": 0.7, "eyesLookUp": 0.2, "jawOpen": 0.3},
              "happy": {"mouthSmile": 0.7, "eyesLookDown": 0.1}}
    (tmp_path / "rpm.json").write_text(json.dumps(preset))
    book = RecipeBook.load(tmp_path / "rpm.json")
    units = {e: book.action_units[next(iter(book.emotions[e].aus))] for e in book.expressive}
    assert units["sadness"] == {"browInnerUp_L": 0.7, "browInnerUp_R": 0.7, "eyeBlink_L": 0.8, "eyeBlink_R": 0.5,
                                "mouthFrown_L": 1.0}
    assert units["fear"] == {"jawOpen": 0.7, "eyeLookUp_L": 0.2, "eyeLookUp_R": 0.2}  # the larger jaw weight
    assert units["happiness"] == {"mouthSmile_L": 0.7, "mouthSmile_R": 0.7, "eyeLookDown_L": 0.1, "eyeLookDown_R": 0.1}


@pytest.mark.parametrize("change, message", [
    ({"fear": {"viseme_U": 0.5}}, "fear.viseme_U is not an ARKit blendshape name .* nor one of Ready Player Me's"),
    ({"contempt": {"mouthSmileLeft": 0.5}}, "'contempt' is not an emotion"),
    ({"happy": {"mouthSmileLeft": 0.5}}, "are both happiness"),
    ({"sad": {"mouthFrownLeft": -0.2}}, "sad.mouthFrownLeft"),
    ({"sad": {"mouthFrownLeft": "lots"}}, "sad.mouthFrownLeft: must be a number"),
    ({"neutral": {"jawOpen": 0.2}}, "neutral is the face at rest"),
    ({"sad": {"mouthFrownLeft": 0}}, "sad: no blendshape has a weight above 0"),
    ({"sad": [0.5]}, "sad must be a mapping"),
])
def test_bad_presets_name_the_file_and_the_key(tmp_path, change, message):
    preset = {k: v for k, v in PRESET.items() if k.lower() not in {n.lower() for n in change}}
    preset.update(change)
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(preset))
    with pytest.raises(InputError, match=message) as err:
        RecipeBook.load(path)
    assert "mine.json" in str(err.value)


def test_a_preset_file_that_is_not_json_or_gives_no_emotion(tmp_path):
    (tmp_path / "cut.json").write_text('{"fear": {"eyeWideLeft": 0.5')
    with pytest.raises(InputError, match="cut.json.*not valid JSON"):
        RecipeBook.load(tmp_path / "cut.json")
    (tmp_path / "calm.json").write_text('{"neutral": {}}')
    with pytest.raises(InputError, match="no emotion but neutral"):
        RecipeBook.load(tmp_path / "calm.json")


def test_synth_poses_a_preset(tmp_path, kit_dir, capsys):  # noqa: F811
    from affectvlm.synth.cli import main

    path = tmp_path / "preset.json"
    path.write_text(json.dumps({k: v for k, v in PRESET.items() if k != "intensity"}))
    out = tmp_path / "set"
    assert main(["--facekit", str(kit_dir), "--out", str(out), "--subjects", "1", "--intensities", "4",
                 "--recipes", str(path), "--texture-size", "0", "-q"]) == 0
    with open(out / "manifest.csv", newline="") as f:
        labels = sorted(r["label"] for r in csv.DictReader(f))
    assert labels == ["anger", "fear", "happiness", "neutral", "sadness"]
    # a shape the face model lacks stops the run with one line naming the preset
    path.write_text(json.dumps({"fear": {"tongueOut": 0.5}}))
    assert main(["--facekit", str(kit_dir), "--out", str(tmp_path / "x"), "--recipes", str(path), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "preset.json" in err[0] and "tongueOut" in err[0]
