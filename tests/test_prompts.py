"""Prompt templates: zero-shot ensembles, augmented captions, validation of user files."""
import json
import random

import numpy as np
import pytest

from affectvlm.errors import ConfigError
from affectvlm.prompts import DEFAULT_CLASSES, PromptSet, as_prompt_set, parse_classes


@pytest.fixture(scope="module")
def ps() -> PromptSet:
    return PromptSet.load(None)


def test_default_classes_have_synonyms_and_templates(ps):
    assert DEFAULT_CLASSES == ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger")
    for c in DEFAULT_CLASSES:
        texts = ps.zeroshot_texts(c)
        w = ps.words(c)
        assert len(texts) == len(set(texts)) >= len(ps.adjective_templates) * len(w.adjectives)
        assert all("{" not in t and "}" not in t for t in texts)
        assert all(any(word in t for word in w.adjectives + w.nouns) for t in texts)
    happy = ps.zeroshot_texts("happiness")
    assert "a 3D scan of a happy face" in happy and "a 3D scan of a smiling face" in happy
    assert "a rendering of a face showing happiness" in happy
    assert "a grey 3D face mesh with an angry expression" in ps.zeroshot_texts("anger")  # article fixed


def test_unknown_label_uses_its_own_name_and_synonyms_borrow(ps):
    texts = ps.zeroshot_texts("pain")
    assert texts and all("pain" in t for t in texts)
    assert ps.zeroshot_texts("my_label")[0] == "a 3D scan of a my label face"
    assert ps.words("happy") == ps.words("happiness")  # a synonym as a label borrows the class's words


def test_augmented_uses_intensity_and_subject_words(ps):
    rng = random.Random(0)
    caps = [ps.augmented("disgust", rng, intensity=1, sex="F", age="young", ethnicity="AE") for _ in range(30)]
    assert all("young East Asian woman" in c for c in caps)
    assert any("slightly" in c for c in caps)
    assert any("disgusted" in c or "repulsed" in c or "revolted" in c or "disgust" in c for c in caps)
    assert "a 3D scan of a young woman looking slightly disgusted" in {
        ps.augmented("disgust", random.Random(s), intensity=1, sex="F", age="young") for s in range(200)}
    # numpy generators work too, and the same seed gives the same caption
    a = ps.augmented("anger", np.random.default_rng(3), intensity=4, sex="M", age=70)
    b = ps.augmented("anger", np.random.default_rng(3), intensity=4, sex="M", age=70)
    assert a == b and "elderly man" in a
    plain = ps.augmented("anger", random.Random(1))
    assert "person" in plain and "  " not in plain
    assert "person" in ps.augmented("anger", rng, sex="X")  # a code the book does not name is left out
    assert ps.augmented("anger", random.Random(2), intensity=9) == ps.augmented("anger", random.Random(2))


def test_json_round_trip_and_hashable(ps, tmp_path):
    p = tmp_path / "p.json"
    p.write_text(json.dumps(ps.to_dict()))
    again = PromptSet.load(p)
    assert again.to_dict() == ps.to_dict() and again.digest() == ps.digest()
    assert hash(PromptSet.from_dict(ps.to_dict())) == hash(PromptSet.from_dict(ps.to_dict()))
    assert as_prompt_set(str(p)).to_dict() == ps.to_dict()


@pytest.mark.parametrize("text,match", [
    ("templates: [\n  - broken", "not valid YAML"),
    ("templates:\n  adjective: ['a face']\n", "exactly one"),
    ("templates:\n  adjective: ['a {} {} face']\n", "exactly one"),
    ("templates:\n  adjective: ['a {x} face']\n", "exactly one"),
    ("templates:\n  adjective: ['a {} face']\n  verbs: ['a {} face']\n", "unknown template group"),
    ("- just a list\n", "mapping"),
    ("templates:\n  adjective: ['a {} face']\naugmented: ['a scan of {who}']\n", "augmented template"),
    ("templates:\n  adjective: ['a {} face']\nclasses:\n  joy: {adjectives: []}\n", "no adjectives"),
])
def test_bad_prompt_files_raise_config_error_naming_the_file(tmp_path, text, match):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match) as e:
        PromptSet.load(p)
    assert "bad.yaml" in str(e.value)


def test_missing_prompt_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        PromptSet.load(tmp_path / "nope.yaml")


def test_parse_classes():
    assert parse_classes("a, b,c") == ("a", "b", "c")
    assert parse_classes(None) is None
    for bad in ("a", "a,,b", "a,a"):
        with pytest.raises(ConfigError):
            parse_classes(bad)


def test_every_ethnicity_the_bu3dfe_reader_gives_has_a_word_and_unknown_ones_are_left_out(ps, tmp_path):
    from affectvlm.datasets import BU3DFE_ETHNICITY, load_dataset
    from affectvlm.io.vrml import write_vrml
    from affectvlm.mesh import Mesh

    # a BU-3DFE subject coded AM (Asian, Middle East) reads as "middle-east-asian"; the trainer's captions stopped
    # every run over a tree holding one ("unknown ethnicity")
    v = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0]], np.float32)
    write_vrml(tmp_path / "F0001" / "F0001_HA03AM_F3D.wrl", Mesh(v, np.array([[0, 1, 2]])), None)
    (sample,) = load_dataset(tmp_path, "bu3dfe").samples
    cap = ps.augmented("happiness", random.Random(0), intensity=3, sex=sample.sex, ethnicity=sample.ethnicity)
    assert "Middle Eastern woman" in cap
    for code, name in BU3DFE_ETHNICITY.items():
        assert ps.subject_phrase(ethnicity=name) == ps.subject_phrase(ethnicity=code) != "a person"
    assert ps.subject_phrase(sex="F", age="young", ethnicity="martian") == "a young woman"
