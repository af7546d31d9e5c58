"""The face-model-independent FACS action-unit sampler (affectvlm.synth.ausampler)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml

from affectvlm.errors import InputError
from affectvlm.synth.ausampler import (DEFAULT_EMFACS, FAMILIES, AUExpression, AUSampler, recipe_expression,
                                       sample_expression)
from affectvlm.synth.facemodel import FaceModel, apply_aus
from affectvlm.synth.recipes import RecipeBook

EMOTIONS = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger")


@pytest.fixture(scope="module")
def sampler() -> AUSampler:
    return AUSampler.load()


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(DEFAULT_EMFACS.read_text())


def _mean_intensity(e: AUExpression) -> float:
    return float(np.mean([l + r for l, r in e.aus.values()]) / 2) if e.aus else 0.0


def test_emotions_and_every_variant_shows_its_required_aus(sampler):
    assert sampler.emotions == EMOTIONS
    for emo in EMOTIONS:
        for var in sampler.variants[emo]:
            for seed in range(25):
                e = sampler.sample(emo, 1 + seed % 4, np.random.default_rng(seed), variant=var.name)
                assert e.emotion == emo and e.family == "emfacs" and e.variant == var.name
                for au in var.required:
                    assert au in e.aus and max(e.aus[au]) > 0, (emo, var.name, au)
                for group in var.one_of:
                    assert any(au in e.aus and max(e.aus[au]) > 0 for au in group), (emo, var.name, group)
                assert all(0 <= x <= sampler.max_intensity for lr in e.aus.values() for x in lr)


def test_emfacs_prototypes_are_in_the_data(sampler):
    names = {emo: set(sampler.variant_names(emo)) for emo in EMOTIONS}
    assert {"6+12", "12C/D"} <= names["happiness"]
    assert {"1+2+5B+26", "1+2+5B+27", "5B+27"} <= names["surprise"]
    assert {"1+4+11+15B(+54+64)", "1+4+15(+54+64)", "6+15(+54+64)", "11+17"} <= names["sadness"]
    assert {"9", "9+16+15/26", "9+17", "10", "10+16+25/26", "10+17"} == names["disgust"]
    assert {"4+5+7+23/24", "4+5+7+17+23/24"} <= names["anger"]
    # surprise's 5B: AU5 is kept below the brows' intensity
    for v in sampler.variants["surprise"]:
        if "AU5" in v.required and "AU1" in v.required:
            assert v.required["AU5"][1] < v.required["AU1"][0]


def test_neutral_has_only_low_traces(sampler):
    bound = max(r[1] for _, r in sampler.traces.values()) * (1 + sampler.asym_max)
    any_trace = 0
    for seed in range(300):
        e = sampler.sample("neutral", 4, np.random.default_rng(seed))
        assert e.variant == "rest"
        assert set(e.aus) <= set(sampler.traces)
        assert all(x <= bound for lr in e.aus.values() for x in lr), e.aus
        any_trace += bool(e.aus)
    assert 0 < any_trace < 300


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_intensity_increases_with_level(family):
    for emo in EMOTIONS[1:]:
        means = [np.mean([_mean_intensity(sample_expression(family, emo, level, np.random.default_rng(s)))
                          for s in range(150)]) for level in (1, 2, 3, 4)]
        assert all(a < b for a, b in zip(means, means[1:])), (family, emo, means)
        assert means[0] > 0.05 and means[-1] < 1.3


def test_asymmetry_exists_but_is_bounded(sampler, raw):
    data = copy.deepcopy(raw)
    data["asymmetry"]["unilateral_p"] = 0.0
    data["emotions"]["fear"]["variants"] = [v for v in data["emotions"]["fear"]["variants"] if not v.get("unilateral")]
    quiet = AUSampler.from_dict(data)
    ratios = []
    for seed in range(200):
        for emo in EMOTIONS[1:]:
            for au, (l, r) in quiet.sample(emo, 3, np.random.default_rng(seed)).aus.items():
                if l + r > 0.05:
                    ratios.append(abs(l - r) / (l + r))
    ratios = np.array(ratios)
    assert ratios.max() <= quiet.asym_max + 1e-6
    assert 0.02 < ratios.mean() < 0.2
    # the packaged data is occasionally strongly one-sided (and fear's L/R 20 variant always is for AU20)
    strong = []
    for seed in range(300):
        e = sampler.sample("happiness", 3, np.random.default_rng(seed))
        strong += [abs(l - r) / (l + r) > sampler.asym_max + 1e-6 for l, r in e.aus.values() if l + r > 0.05]
    assert 0 < np.mean(strong) < 0.1
    e = sampler.sample("fear", 4, np.random.default_rng(0), variant="1+2+4+5+L/R20+25/26/27")
    l, r = e.aus["AU20"]
    assert min(l, r) <= 0.3 * max(l, r) + 1e-9


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_deterministic_per_seed(family):
    a = sample_expression(family, "fear", 3, np.random.default_rng(7))
    b = sample_expression(family, "fear", 3, np.random.default_rng(7))
    c = sample_expression(family, "fear", 3, np.random.default_rng(8))
    assert a == b and a.family == family
    assert a != c


def test_families_differ(sampler):
    book = RecipeBook.load()
    prim = {v.name for v in sampler.variants["sadness"] if v.primary}
    alt_names, emf_names, alt_s, emf_s = set(), set(), [], []
    for seed in range(300):
        rng = np.random.default_rng(seed)
        alt = sampler.sample_alt("surprise", 4, rng)
        emf = sampler.sample("surprise", 4, np.random.default_rng(seed))
        alt_s.append(np.mean(alt.aus["AU5"]) if "AU5" in alt.aus else np.nan)
        emf_s.append(np.mean(emf.aus["AU5"]) if "AU5" in emf.aus else np.nan)
        alt_names.add(sampler.sample_alt("sadness", 2, np.random.default_rng(seed)).variant)
        emf_names.add(sampler.sample("sadness", 2, np.random.default_rng(seed)).variant)
    assert alt_names and not alt_names & prim          # alt holds out the prototypes
    assert prim <= emf_names                            # emfacs draws them
    assert np.nanmean(alt_s) > np.nanmean(emf_s) + 0.05  # a different intensity law (5B less damped)
    rec = recipe_expression(book, "sadness", 4, np.random.default_rng(0))
    assert rec.family == "recipes" and rec.variant == "recipe"
    assert set(rec.aus) == set(book.emotion("sadness").aus)
    assert all(l == r for l, r in rec.aus.values())
    assert recipe_expression(book, "neutral", 4, np.random.default_rng(0)).aus == {}
    with pytest.raises(ValueError, match="unknown expression family"):
        sample_expression("nope", "fear", 3, np.random.default_rng(0))


@pytest.mark.parametrize("patch, message", [
    (lambda d: d["emotions"]["fear"]["variants"][0]["required"].update({"AUx": 1}), "required: 'AUx' is not"),
    (lambda d: d["intensity"]["levels"].update({2: ["C", "A"]}), r"intensity\.levels\.2: C is above A"),
    (lambda d: d["traces"]["AU43"].update({"p": 2}), r"traces\.AU43\.p: 2 is outside"),
    (lambda d: d["emotions"]["anger"]["variants"][0].update({"primary": "yes"}), "primary: must be true"),
    (lambda d: d["blends"].update({"colour": 1}), "blends: unknown keys colour"),
    (lambda d: d["emotions"]["happiness"]["variants"][0]["required"].update({"AU12": [0.9, 0.1]}), "lo 0.9 is above"),
])
def test_bad_yaml_is_one_input_error_line(tmp_path, raw, patch, message):
    data = copy.deepcopy(raw)
    patch(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match=message) as err:
        AUSampler.load(path)
    assert str(err.value).startswith(str(path) + ": ") and "\n" not in str(err.value)


def test_unparsable_yaml_and_bad_calls(tmp_path, sampler):
    path = tmp_path / "broken.yaml"
    path.write_text("emotions: [unclosed\n  - x: {")
    with pytest.raises(InputError) as err:
        AUSampler.load(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(InputError, match="cannot read"):
        AUSampler.load(tmp_path / "missing.yaml")
    with pytest.raises(InputError, match="no emotion 'joy'"):
        sampler.sample("joy", 3, np.random.default_rng(0))
    with pytest.raises(InputError, match="level 7 is not defined"):
        sampler.sample("fear", 7, np.random.default_rng(0))


def _fake_model() -> FaceModel:
    n = 8
    targets = {}
    # vertex 0: AU12 left, vertex 1: AU12 right, vertex 2: AU6 (one target), vertex 3: AU1 left
    for name, vid in (("AU12L", 0), ("AU12R", 1), ("AU6", 2), ("AU1L", 3)):
        t = np.zeros((n, 3), np.float32)
        t[vid, 1] = 2.0
        targets[name] = t
    return FaceModel("fake", np.zeros((n, 3), np.float32), np.array([[0, 1, 2]]), np.zeros((0, n, 3), np.float32),
                     targets, np.zeros(0, np.int64), np.ones(n, bool))


def test_apply_sample_to_a_fake_face_model(sampler):
    model = _fake_model()
    base = model.neutral.astype(np.float64)
    e = sampler.sample("happiness", 4, np.random.default_rng(3), variant="6+12")
    moved = apply_aus(model, base, e.aus) - base
    l12, r12 = e.aus["AU12"]
    assert moved[0, 1] == pytest.approx(2.0 * l12) and moved[1, 1] == pytest.approx(2.0 * r12)
    assert moved[2, 1] == pytest.approx(2.0 * np.mean(e.aus["AU6"]))
    assert moved[0, 1] > 1.0 and moved[2, 1] > 1.0
    assert np.all(moved[4:] == 0)
    calm = sampler.sample("neutral", 4, np.random.default_rng(3))
    assert np.abs(apply_aus(model, base, {k: v for k, v in calm.aus.items() if k in ("AU12", "AU6")}) - base).max() \
        <= 2.0 * 0.5 * (1 + sampler.asym_max)
