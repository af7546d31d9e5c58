"""Synthetic faces (affectvlm.synth) on a tiny fixture in ICT-FaceKit's file format, plus one test on the
real ICT-FaceKit subset when it is present at ../shared/ict-facekit (skipped otherwise)."""
from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from affectvlm.errors import InputError
from affectvlm.synth import RecipeBook, SynthConfig, Synthesizer, activation_curve, generate, load_facekit
from affectvlm.synth.recipes import DEFAULT_RECIPES
from affectvlm.synth.sequence import Timing

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "ict-facekit" / "FaceXModel"
EXTRA_SHAPES = ["eyeLookDown_L", "eyeLookDown_R", "eyeLookUp_L", "eyeLookUp_R", "eyeLookIn_L", "eyeLookIn_R",
                "eyeLookOut_L", "eyeLookOut_R", "cheekPuff_L", "cheekPuff_R"]


def _blendshape_names() -> list[str]:
    data = yaml.safe_load(DEFAULT_RECIPES.read_text())
    names = {bs for au in data["action_units"].values() for bs in au["blendshapes"]}
    return sorted(names | set(EXTRA_SHAPES))


def _write_obj(path: Path, verts: np.ndarray, uv: np.ndarray, face_quads: np.ndarray, back_quads: np.ndarray) -> None:
    lines = ["# fixture in ICT-FaceKit's layout\n", "mtllib ICTFaceModelMaterial.mtl\n"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in verts]
    lines += [f"vt {u:.6f} {v:.6f}\n" for u, v in uv]
    for mat, quads in (("M_Face", face_quads), ("M_BackHead", back_quads)):
        lines.append(f"usemtl {mat}\n")
        lines += ["f " + " ".join(f"{i + 1}/{i + 1}" for i in q) + "\n" for q in quads]
    path.write_text("".join(lines))


def make_fixture(folder: Path, n_identities: int = 3, nx: int = 24, ny: int = 30) -> Path:
    """A dome-shaped quad grid in centimetres (18 cm wide) with the real file names, as FaceXModel/ has."""
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = np.meshgrid(np.linspace(-9, 9, nx), np.linspace(-13, 11, ny))
    z = 12 * np.sqrt(np.clip(1 - (xs / 11) ** 2 - (ys / 16) ** 2, 0.05, None))
    face = np.stack([xs.ravel(), ys.ravel(), z.ravel()], 1)
    back = face[:nx * 2] * np.array([1.0, 1.0, -0.2])  # a strip of "back of the head" vertices
    verts = np.concatenate([face, back])
    uv = np.concatenate([np.stack([(xs.ravel() + 9) / 18, (ys.ravel() + 13) / 24], 1), np.zeros((len(back), 2))])
    idx = np.arange(nx * ny).reshape(ny, nx)
    quads = np.stack([idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()], 1)
    b = nx * ny + np.arange(2 * nx).reshape(2, nx)
    back_quads = np.stack([b[0, :-1], b[0, 1:], b[1, 1:], b[1, :-1]], 1)
    _write_obj(folder / "generic_neutral_mesh.obj", verts, uv, quads, back_quads)
    rng = np.random.default_rng(123)
    for i in range(n_identities):
        d = np.zeros_like(verts)
        d[: nx * ny] = rng.normal(0, 0.3, 3) * np.stack([np.sin(xs.ravel() / 4 + i), np.cos(ys.ravel() / 5),
                                                          np.sin((xs + ys).ravel() / 6)], 1)
        _write_obj(folder / f"identity{i:03d}.obj", verts + d, uv, quads, back_quads)
    names = _blendshape_names()
    for k, name in enumerate(names):
        cx, cy = rng.uniform(-6, 6), rng.uniform(-10, 8)
        bump = np.exp(-((verts[:, 0] - cx) ** 2 + (verts[:, 1] - cy) ** 2) / 8.0)
        d = np.outer(bump, rng.normal(0, 1.0, 3))
        _write_obj(folder / f"{name}.obj", verts + d, uv, quads, back_quads)
    (folder / "vertex_indices.json").write_text(json.dumps({"expressions": names}))
    return folder


@pytest.fixture(scope="module")
def kit_dir(tmp_path_factory) -> Path:
    return make_fixture(tmp_path_factory.mktemp("facekit") / "FaceXModel")


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("AFFECTVLM_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def _tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------ model
def test_load_facekit_fixture_and_cache(kit_dir):
    kit = load_facekit(kit_dir)
    assert kit.neutral.shape == (24 * 30, 3)  # only the M_Face area, not the back strip
    assert kit.identities.shape == (3, 24 * 30, 3)
    assert kit.units_to_mm == 10.0  # 18 units wide: centimetres
    assert set(_blendshape_names()) == set(kit.expression_names)
    assert kit.polygons.shape[0] == 2 * 23 * 29  # quads split in two
    assert np.isfinite(kit.uv).all()
    again = load_facekit(kit_dir)
    assert again.meta["from_cache"] and np.array_equal(again.expressions, kit.expressions)


def test_load_facekit_errors(tmp_path, kit_dir):
    with pytest.raises(InputError, match="not a folder"):
        load_facekit(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="generic_neutral_mesh.obj is missing"):
        load_facekit(tmp_path / "empty")
    bad = make_fixture(tmp_path / "bad", n_identities=1, nx=8, ny=8)
    (bad / "identity000.obj").write_text("v 0 0 0\nv 1 0 0\n")
    with pytest.raises(InputError, match=r"identity000\.obj: has 2 vertices, expected"):
        load_facekit(bad, cache=False)


# ------------------------------------------------------------------------------------------ recipes
def test_default_recipes_are_valid_and_follow_emfacs():
    book = RecipeBook.load()
    assert set(book.emotions) == {"neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger"}
    core = {"happiness": {"AU6", "AU12"}, "sadness": {"AU1", "AU4", "AU15"}, "surprise": {"AU1", "AU2", "AU5", "AU26"},
            "fear": {"AU1", "AU2", "AU4", "AU5", "AU7", "AU20", "AU26"}, "anger": {"AU4", "AU5", "AU7", "AU23"},
            "disgust": {"AU9", "AU15", "AU16"}}
    for name, aus in core.items():
        assert aus <= set(book.emotion(name).aus), name
    assert book.emotion("happiness").code == "HA" and book.emotion("anger").folder == "Angry"


@pytest.mark.parametrize("patch, message", [
    ({"emotions": {"joy": {"code": "JO", "folder": "Joy", "aus": {"AU99": 1.0}}}}, "AU99.*not defined"),
    ({"emotions": {"joy": {"code": "JO", "folder": "Joy", "aus": {"AU12": "lots"}}}}, "must be a number"),
    ({"emotions": {"joy": {"code": "joy", "aus": {}}}}, "two-letter code"),
    ({"intensity": {"levels": {1: -0.5}}}, r"outside \[0"),
    ({"pose": {"spin": 3}}, "unknown keys spin"),
    ({"colour": 1}, "unknown top-level keys"),
])
def test_bad_recipes_name_file_and_key(tmp_path, patch, message):
    data = yaml.safe_load(DEFAULT_RECIPES.read_text())
    for k, v in patch.items():
        data[k] = {**data[k], **v} if isinstance(data.get(k), dict) and isinstance(v, dict) else v
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match=message) as err:
        RecipeBook.load(path)
    assert str(path) in str(err.value)


def test_recipe_with_missing_blendshape_fails_early(tmp_path, kit_dir):
    data = yaml.safe_load(DEFAULT_RECIPES.read_text())
    data["action_units"]["AU12"]["blendshapes"] = {"mouthGrin_L": 1.0}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match="mouthGrin_L"):
        Synthesizer(load_facekit(kit_dir), SynthConfig(recipes=str(path)))


def test_intensity_scales_expression_displacement(kit_dir):
    synth = Synthesizer(load_facekit(kit_dir), SynthConfig(subjects=2))
    subj = synth.subjects()[0]
    data = synth.subject_data(subj)
    base = synth.rig.shape(data.identity, {})
    disp = []
    for level in (1, 2, 3, 4):
        rng = np.random.default_rng(0)
        w = synth.book.expression_weights("surprise", synth.book.intensity_scale(level, rng), data.style, rng)
        disp.append(np.linalg.norm(synth.rig.shape(data.identity, w) - base, axis=1).mean())
    assert all(a < b for a, b in zip(disp, disp[1:])), disp
    assert disp[0] > 0


# ------------------------------------------------------------------------------------------ timing
def test_activation_curve_goes_neutral_apex_neutral():
    rng = np.random.default_rng(1)
    for _ in range(20):
        c = activation_curve(100, Timing.sample(rng))
        assert c[0] == 0 and c[-1] < 1e-9 and c.max() == 1.0
        peak = int(np.argmax(c))
        assert np.all(np.diff(c[: peak + 1]) >= -1e-12) and np.all(np.diff(c[peak:]) <= 1e-12)
        assert (c == 1.0).sum() >= 15  # an apex hold, not a spike


# ------------------------------------------------------------------------------------------ datasets
def test_bu3dfe_layout_loads_back_and_is_deterministic(tmp_path, kit_dir):
    from affectvlm.io import load_mesh

    cfg = SynthConfig(subjects=4, seed=7, intensities=(1, 4), texture_size=32, test_frac=0.25, val_frac=0.25)
    manifest = generate(cfg, kit_dir, tmp_path / "a", progress=False)
    rows = list(csv.DictReader(manifest.open()))
    assert list(rows[0]) == ["path", "label", "subject", "intensity", "sex", "ethnicity", "split"]
    assert len(rows) == 4 * (1 + 6 * 2)
    name = re.compile(r"^([FM]\d{4})/\1_(NE00|(AN|DI|FE|HA|SA|SU)0[14])(WH|BL|AE|AM|IN|LA)_F3D\.wrl$")
    for r in rows:
        assert name.match(r["path"]), r["path"]
        assert r["subject"] == r["path"].split("/")[0] and r["ethnicity"] in r["path"]
        assert (r["intensity"] == "0") == (r["label"] == "neutral")
    by_subject = {}
    for r in rows:
        by_subject.setdefault(r["subject"], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_subject.values())
    assert {next(iter(s)) for s in by_subject.values()} == {"train", "val", "test"}

    r = next(r for r in rows if r["label"] == "happiness")
    wrl = tmp_path / "a" / r["path"]
    mesh = load_mesh(wrl)
    assert mesh.has_texture and mesh.texture.shape[:2] == (32, 32)
    assert mesh.n_faces > 100
    bnd = np.loadtxt(wrl.with_suffix(".bnd"), delimiter="\t")
    assert bnd.shape == (83, 4)
    assert np.allclose(mesh.vertices[bnd[:, 0].astype(int)], bnd[:, 1:], atol=1e-3)
    ext = np.ptp(mesh.vertices, axis=0)
    assert 80 < ext[:2].max() < 400  # millimetres, not centimetres

    generate(cfg, kit_dir, tmp_path / "b", progress=False)
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
    generate(SynthConfig(**{**cfg.__dict__, "seed": 8}), kit_dir, tmp_path / "c", progress=False)
    assert _tree_digest(tmp_path / "a") != _tree_digest(tmp_path / "c")


def test_splits_are_subject_disjoint_and_seeded(kit_dir):
    kit = load_facekit(kit_dir)
    a = Synthesizer(kit, SynthConfig(subjects=30, seed=3, test_frac=0.2, val_frac=0.1)).subjects()
    b = Synthesizer(kit, SynthConfig(subjects=30, seed=3, test_frac=0.2, val_frac=0.1)).subjects()
    assert a == b
    splits = [s.split for s in a]
    assert splits.count("test") == 6 and splits.count("val") == 3
    names = [s.name("bu3dfe") for s in a]
    assert len(set(names)) == 30 and all(re.match(r"^[FM]\d{4}$", n) for n in names)
    c = Synthesizer(kit, SynthConfig(subjects=30, seed=4, test_frac=0.2, val_frac=0.1)).subjects()
    assert [s.split for s in c] != splits


def test_bu4dfe_layout_sequence_loads(tmp_path, kit_dir):
    from affectvlm.io import load_sequence

    cfg = SynthConfig(subjects=2, seed=1, layout="bu4dfe", frames=8, emotions=("happiness", "anger"),
                      texture_size=16, test_frac=0.5, val_frac=0.0)
    manifest = generate(cfg, kit_dir, tmp_path, progress=False)
    rows = list(csv.DictReader(manifest.open()))
    assert len(rows) == 2 * 2 * 8
    seqs = sorted({r["sequence"] for r in rows})
    assert all(re.match(r"^[FM]\d{3}/(Happy|Angry)$", s) for s in seqs)
    seq = load_sequence(tmp_path / seqs[0])
    assert len(seq) == 8 and seq.frame_ids == list(range(8))
    act = [float(r["activation"]) for r in rows if r["sequence"] == seqs[0]]
    assert act[0] == 0 and max(act) == 1.0
    labels = {r["label"] for r in rows if r["sequence"] == seqs[0]}
    assert labels == {"neutral", next(r["sequence_label"] for r in rows if r["sequence"] == seqs[0])}
    # frames share a topology and the apex moves away from the first (neutral) frame
    assert len({f.n_vertices for f in seq.frames}) == 1
    bnd = tmp_path / "BU4DFE_BND_V1.1" / seqs[0] / "000.bnd"
    assert np.loadtxt(bnd, delimiter="\t").shape == (83, 4)


def test_cli(tmp_path, kit_dir, capsys):
    from affectvlm.synth.cli import main

    out = tmp_path / "cli"
    assert main(["--facekit", str(kit_dir), "--out", str(out), "--subjects", "1", "--intensities", "4",
                 "--emotions", "happiness", "--texture-size", "0", "-q"]) == 0
    assert sorted(p.name for p in out.rglob("*.wrl"))[0].endswith("_F3D.wrl")
    assert (out / "manifest.csv").is_file() and (out / "synth.json").is_file()
    capsys.readouterr()
    assert main(["--facekit", str(kit_dir), "--out", str(out), "--subjects", "1", "-q"]) == 2  # not mixed into it
    assert "holds a data set (manifest.csv) already" in capsys.readouterr().err
    fresh = tmp_path / "cli2"
    assert main(["--facekit", str(kit_dir), "--out", str(fresh), "--decimate", "0"]) == 2
    assert "decimate" in capsys.readouterr().err
    assert main(["--facekit", str(tmp_path / "nope"), "--out", str(fresh)]) == 2
    assert main(["--facekit", str(kit_dir), "--out", str(fresh), "--emotions", "boredom"]) == 2


def test_decimate_keeps_a_valid_shared_topology(kit_dir):
    pytest.importorskip("pyvista")
    kit = load_facekit(kit_dir)
    full = Synthesizer(kit, SynthConfig(subjects=1))
    half = Synthesizer(kit, SynthConfig(subjects=1, decimate=0.5))
    assert len(half.rig.faces) < 0.75 * len(full.rig.faces)
    assert half.rig.faces.max() < half.rig.n_vertices
    assert np.isfinite(half.rig.face_uv).all()


# ------------------------------------------------------------------------------------------ real model
@pytest.mark.skipif(not (REAL / "generic_neutral_mesh.obj").is_file(), reason="ICT-FaceKit subset not present")
def test_real_ict_facekit_subset(tmp_path):
    from affectvlm.io import load_mesh

    kit = load_facekit(REAL)
    assert kit.neutral.shape == (9409, 3) and kit.model_ids.max() == 9408
    assert kit.n_identities >= 20 and len(kit.expression_names) == 53 and len(kit.landmarks) == 68
    assert kit.units_to_mm == 10.0
    cfg = SynthConfig(subjects=1, seed=0, intensities=(4,), emotions=("happiness", "surprise"), texture_size=64)
    manifest = generate(cfg, kit, tmp_path, progress=False)
    rows = list(csv.DictReader(manifest.open()))
    meshes = {r["label"]: load_mesh(tmp_path / r["path"]) for r in rows}
    assert 5000 < meshes["neutral"].n_vertices < 10000  # BU-3DFE scans have about 8k
    height = np.ptp(meshes["neutral"].vertices[:, 1])
    assert 150 < height < 260  # forehead to chin in millimetres
    # surprise drops the jaw: the scan gets taller than the neutral one
    assert np.ptp(meshes["surprise"].vertices[:, 1]) > height + 5


def _swapped_book(path: Path) -> None:
    """The packaged recipe book with happiness's and anger's AUs swapped, written to ``path``."""
    import yaml

    from affectvlm.synth.recipes import DEFAULT_RECIPES

    book = yaml.safe_load(DEFAULT_RECIPES.read_text())
    emo = book["emotions"]
    emo["happiness"]["aus"], emo["anger"]["aus"] = emo["anger"]["aus"], emo["happiness"]["aus"]
    path.write_text(yaml.safe_dump(book))


@pytest.mark.skipif(not (REAL / "generic_neutral_mesh.obj").is_file(), reason="ICT-FaceKit subset not present")
def test_bench_recipes_tells_a_wrong_book(tmp_path, capsys):
    import json
    import runpy

    _swapped_book(tmp_path / "swapped.yaml")
    bench = runpy.run_path(str(Path(__file__).resolve().parents[1] / "bench" / "bench_recipes.py"))
    assert bench["main"](["--facekit", str(REAL), "--recipes", str(tmp_path / "swapped.yaml"), "--subjects", "1",
                          "--seed", "5"]) == 0
    report = json.loads(capsys.readouterr().out)
    packaged, swapped = report["books"]["packaged"], report["books"]["swapped.yaml"]
    assert packaged["n"] == swapped["n"] == 13 and packaged["ratio"] == 1.0
    assert swapped["accuracy"] <= packaged["accuracy"] - 4 / 13  # the 4 swapped scans, at least, go wrong
    assert any(k in swapped["confusions"] for k in ("happiness->anger", "anger->happiness"))
    # through the CLI's defaults (13 scans: not adapted; each scan against its subject's neutral one)
    assert swapped["accuracy_defaults"] <= packaged["accuracy_defaults"] - 4 / 13


@pytest.mark.skipif(not (REAL / "generic_neutral_mesh.obj").is_file(), reason="ICT-FaceKit subset not present")
def test_bench_recipes_tells_a_wrong_book_in_4d(tmp_path, capsys):
    import json
    import runpy

    _swapped_book(tmp_path / "swapped.yaml")
    bench = runpy.run_path(str(Path(__file__).resolve().parents[1] / "bench" / "bench_recipes.py"))
    assert bench["main"](["--facekit", str(REAL), "--recipes", str(tmp_path / "swapped.yaml"), "--subjects", "1",
                          "--seed", "5", "--frames", "6"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == 6 and report["intensities"] is None
    packaged, swapped = report["books"]["packaged"], report["books"]["swapped.yaml"]
    assert packaged["n"] == swapped["n"] == 6 and packaged["errors"] == 0  # one sequence per emotion, no neutral
    # the 2 swapped sequences, at least, go wrong (accuracies are rounded to 4 places)
    assert swapped["accuracy"] <= packaged["accuracy"] - 2 / 6 + 1e-3
    assert any(k in swapped["confusions"] for k in ("happiness->anger", "anger->happiness"))
    assert swapped["accuracy_defaults"] <= packaged["accuracy_defaults"] - 2 / 6 + 1e-3


@pytest.mark.skipif(not (REAL / "generic_neutral_mesh.obj").is_file(), reason="ICT-FaceKit subset not present")
def test_bench_reference_scores_a_corpus_alone_and_against_its_neutral_scans(tmp_path, capsys):
    import json
    import runpy

    from affectvlm.synth.cli import main as synth

    assert synth(["--layout", "corpus", "--facekit", str(REAL), "--families", "recipes", "--intensities", "4",
                  "--subjects", "1", "--test-frac", "1", "--val-frac", "0", "--seed", "9", "--out",
                  str(tmp_path / "c"), "-q"]) == 0
    bench = runpy.run_path(str(Path(__file__).resolve().parents[1] / "bench" / "bench_reference.py"))
    assert bench["main"](["--data", str(tmp_path / "c"), "--prior", "uniform"]) == 0
    report = json.loads(capsys.readouterr().out)
    alone, ref = report["alone"], report["neutral"]
    assert alone["n"] == ref["n"] == 7 and alone["expressive_n"] == 6
    assert (ref["rescored"], ref["subjects"]) == (6, 1) and "ratio" in ref
    assert ref["per_label"]["neutral"] == alone["per_label"]["neutral"]  # the neutral scan keeps its row
    assert report["neutral_then_prior"]["spec"] == "uniform"
    ad = report["adapted"]
    assert ad["n"] == 7 and ad["inputs"] == 7 and ad["layers"] > 0 and ad["auto_adapts"] is False  # 7 < 50 scans
    assert report["adapted_neutral"]["per_label"]["neutral"] == ad["per_label"]["neutral"]
