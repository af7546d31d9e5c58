"""Corpus scans of any face model under BU-3DFE's and BU-4DFE's names (``affectvlm synth --layout bu3dfe --gltf``)."""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np

from affectvlm.datasets import load_dataset
from affectvlm.io import load_mesh, load_sequence
from affectvlm.synth.bulayout import write_bu3dfe, write_bu4dfe
from affectvlm.synth.corpus import CorpusConfig, read_corpus, write_corpus
from affectvlm.synth.corpus4d import write_sequences
from affectvlm.synth.randomised import Nuisance
from tests.test_corpus import _toy_model

_STILL = Nuisance(vertices=(0, 0), hole_probability=0.0, noise_mm=(0.0, 0.0), units=(("mm", 1.0),), origin_mm=0.0,
                  yaw_deg=0.0, pitch_deg=0.0, roll_deg=0.0, crops=(("full", 1.0),))


def _rows(manifest: Path) -> list[dict]:
    with open(manifest, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_bu3dfe_tree_holds_the_corpus_scans_under_bu_names(tmp_path):
    models = {"toy": _toy_model(24), "toy2": _toy_model(20)}
    cfg = CorpusConfig(subjects=2, seed=5, families=("sculpt",), levels=(2, 4))
    corpus = read_corpus(write_corpus(cfg, models, tmp_path / "c"))
    bu = _rows(write_bu3dfe(cfg, models, tmp_path / "bu"))
    assert len(bu) == len(corpus) == 4 * (1 + 6 * 2)
    ds = load_dataset(tmp_path / "bu", "bu3dfe")  # the loader the trainer uses, from the file names alone
    by_path = {Path(s.path).relative_to(tmp_path / "bu").as_posix(): s for s in ds.samples}
    assert len(by_path) == len(bu) and len({r["subject"] for r in bu}) == 4
    for c, r in zip(corpus, bu):
        s = by_path[r["path"]]
        assert (s.label, s.intensity, s.subject) == (r["label"], int(r["intensity"]), r["subject"])
        assert (c["label"], c["intensity"], c["split"], c["face_model"]) == (
            r["label"], int(r["intensity"]), r["split"], r["face_model"])
        ours, theirs = load_mesh(s.path), load_mesh(c["path"])
        np.testing.assert_allclose(np.asarray(ours.vertices), np.asarray(theirs.vertices), rtol=1e-5, atol=1e-3)
        assert np.array_equal(np.asarray(ours.faces), np.asarray(theirs.faces))
    assert sorted({r["subject"][0] for r in bu}) <= ["F", "M"]
    assert write_bu3dfe(cfg, models, tmp_path / "again") and \
        (tmp_path / "again" / bu[5]["path"]).read_bytes() == (tmp_path / "bu" / bu[5]["path"]).read_bytes()


def test_several_families_are_drawn_per_scan_and_recorded(tmp_path):
    cfg = CorpusConfig(subjects=3, seed=2, families=("emfacs", "sculpt"), levels=(1, 2, 3, 4), nuisance=_STILL)
    rows = _rows(write_bu3dfe(cfg, {"toy": _toy_model(16)}, tmp_path / "bu"))
    fams = Counter(r["family"] for r in rows)
    assert set(fams) == {"emfacs", "sculpt"} and min(fams.values()) > 10
    names = Counter((r["subject"], r["label"], r["intensity"]) for r in rows)
    assert max(names.values()) == 1  # one scan per emotion and level, as BU-3DFE has


def test_bu3dfe_tree_records_each_scans_nuisance_draws(tmp_path):
    """``draws.csv``: one row per scan, in the manifest's order, with what the scanner nuisances drew; the vertex
    count is the written file's, holes and pose are drawn where enabled and absent where not."""
    from affectvlm.synth.corpus import DRAW_COLUMNS

    scanned = Nuisance(vertices=(300, 900), noise_mm=(0.1, 0.3), hole_probability=1.0, holes=(2, 4), yaw_deg=20.0,
                       units=(("cm", 1.0),), crops=(("full", 1.0),))
    cfg = CorpusConfig(subjects=2, seed=7, families=("sculpt",), levels=(4,), nuisance=scanned)
    rows = _rows(write_bu3dfe(cfg, {"toy": _toy_model(16)}, tmp_path / "bu"))
    with open(tmp_path / "bu" / "draws.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == DRAW_COLUMNS
        draws = list(reader)
    assert [d["path"] for d in draws] == [r["path"] for r in rows] and len(rows) == 2 * 7
    for d in draws:
        assert d["crop"] == "full" and d["units"] == "cm" and 2 <= int(d["holes"]) <= 4
        assert 0.1 <= float(d["noise_mm"]) <= 0.3 and d["closed_mouth"] == d["eyeballs"] == "0"
        assert int(d["vertices"]) == load_mesh(tmp_path / "bu" / d["path"]).n_vertices
    assert len({d["yaw"] for d in draws}) == len(draws) and all(float(d["roll"]) != 0 for d in draws)
    # the corpus layout writes the same draws for the same scans (one family: the same scans, other names)
    write_corpus(cfg, {"toy": _toy_model(16)}, tmp_path / "corpus")
    with open(tmp_path / "corpus" / "draws.csv", newline="", encoding="utf-8") as fh:
        corpus = list(csv.DictReader(fh))
    assert [{k: v for k, v in d.items() if k != "path"} for d in corpus] == \
        [{k: v for k, v in d.items() if k != "path"} for d in draws]
    assert [str((tmp_path / "corpus" / d["path"]).absolute()) for d in corpus] == \
        [r["path"] for r in read_corpus(tmp_path / "corpus")]
    still = CorpusConfig(subjects=1, seed=7, families=("sculpt",), levels=(4,), nuisance=_STILL)
    write_bu3dfe(still, {"toy": _toy_model(16)}, tmp_path / "still")
    with open(tmp_path / "still" / "draws.csv", newline="", encoding="utf-8") as fh:
        quiet = list(csv.DictReader(fh))
    assert quiet and all((d["holes"], float(d["noise_mm"]), float(d["yaw"]), float(d["pitch"])) == ("0", 0.0, 0.0, 0.0)
                         for d in quiet)


def test_4d_trees_record_each_frames_nuisance_draws(tmp_path):
    """Both 4D writers list every frame in ``draws.csv``: the frames of a sequence share their scanner session (one
    crop, units, holes, noise and pose), the vertex count is each written frame's, and sequences differ."""
    from affectvlm.synth.corpus import DRAW_COLUMNS

    scanned = Nuisance(vertices=(300, 900), noise_mm=(0.1, 0.3), hole_probability=1.0, holes=(2, 4), yaw_deg=20.0,
                       units=(("cm", 1.0),), crops=(("full", 1.0),))
    cfg = CorpusConfig(subjects=1, seed=9, families=("sculpt",), levels=(4,), nuisance=scanned)
    rows = _rows(write_bu4dfe(cfg, {"toy": _toy_model(16)}, tmp_path / "bu", frames=4))
    draws = _rows(tmp_path / "bu" / "draws.csv")
    assert tuple(draws[0]) == DRAW_COLUMNS and [d["path"] for d in draws] == [r["path"] for r in rows]
    session = ("crop", "units", "holes", "noise_mm", "yaw", "pitch", "roll")
    per_seq: dict[str, set] = {}
    for r, d in zip(rows, draws):
        per_seq.setdefault(r["sequence"], set()).add(tuple(d[k] for k in session))
        assert int(d["vertices"]) == load_mesh(tmp_path / "bu" / d["path"]).n_vertices
        assert d["crop"] == "full" and d["units"] == "cm" and 2 <= int(d["holes"]) <= 4
    assert len(per_seq) == 6 and all(len(v) == 1 for v in per_seq.values())
    assert len({next(iter(v)) for v in per_seq.values()}) == 6
    write_sequences(cfg, {"toy": _toy_model(16)}, tmp_path / "c", frames=4)
    corpus = _rows(tmp_path / "c" / "draws.csv")
    assert all((tmp_path / "c" / d["path"]).is_file() for d in corpus)
    assert [{k: v for k, v in d.items() if k != "path"} for d in corpus] == \
        [{k: v for k, v in d.items() if k != "path"} for d in draws]


def test_bu4dfe_tree_holds_the_corpus_sequences(tmp_path):
    models = {"toy": _toy_model(16)}
    cfg = CorpusConfig(subjects=2, seed=4, families=("sculpt",), levels=(4,), nuisance=_STILL)
    seqs = read_corpus(write_sequences(cfg, models, tmp_path / "c", frames=8))
    rows = _rows(write_bu4dfe(cfg, models, tmp_path / "bu", frames=8))
    ds = load_dataset(tmp_path / "bu", "bu4dfe")
    assert len(ds.samples) == len(seqs) == 12 and all(len(s.frame_ids) == 8 for s in ds.samples)
    assert len(rows) == 12 * 8
    by_seq = {}
    for r in rows:
        by_seq.setdefault(r["sequence"], []).append(r)
    for c, (seq, frames) in zip(seqs, by_seq.items()):
        assert frames[0]["sequence_label"] == c["label"]
        ours = load_sequence(tmp_path / "bu" / seq)
        theirs = load_sequence(c["path"])
        for a, b in zip(ours.frames, theirs.frames):
            np.testing.assert_allclose(np.asarray(a.vertices), np.asarray(b.vertices), rtol=1e-5, atol=1e-3)
        act = np.array([float(f["activation"]) for f in frames])
        assert [f["label"] for f in frames] == [c["label"] if x >= 0.5 else "neutral" for x in act]
    labels = {s.label for s in ds.samples}
    assert labels == {"happiness", "sadness", "surprise", "fear", "disgust", "anger"}


def test_synth_cli_writes_any_face_model_as_a_bu3dfe_tree(tmp_path, capsys):
    from affectvlm.synth.cli import main
    from tests.gltfgen import ellipsoid_head, glb_bytes, head_targets

    v, f = ellipsoid_head()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "Head.glb").write_bytes(glb_bytes(v, f, head_targets(v, left_is_plus_x=True)))
    out = tmp_path / "bu"
    assert main(["--layout", "bu3dfe", "--gltf", str(tmp_path / "in"), "--subjects", "2", "--intensities", "3,4",
                 "--emotions", "surprise,happiness", "--seed", "3", "--out", str(out), "-q"]) == 0
    ds = load_dataset(out, "bu3dfe")
    assert Counter(s.label for s in ds.samples) == {"neutral": 2, "happiness": 4, "surprise": 4}
    assert {r["face_model"] for r in _rows(out / "manifest.csv")} == {"gltf-head"}
    assert main(["--layout", "bu3dfe", "--gltf", str(tmp_path / "in"), "--no-neutral", "--emotions", "fear",
                 "--subjects", "1", "--out", str(tmp_path / "nn"), "-q"]) == 0
    assert [s.label for s in load_dataset(tmp_path / "nn", "bu3dfe").samples] == ["fear"] * 4

    # an option of the ICT-FaceKit recipe generator is refused, not ignored; so is an unknown emotion
    assert main(["--layout", "bu3dfe", "--gltf", str(tmp_path / "in"), "--texture-size", "0",
                 "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "--texture-size" in err and "--gltf" in err and err.count("\n") == 1
    assert main(["--layout", "bu3dfe", "--gltf", str(tmp_path / "in"), "--emotions", "joy",
                 "--out", str(tmp_path / "y")]) == 2
    assert "joy" in capsys.readouterr().err
    assert main(["--layout", "bu3dfe", "--out", str(tmp_path / "z")]) == 2
    assert "--rocketbox" in capsys.readouterr().err
    assert main(["--layout", "bu4dfe", "--gltf", str(tmp_path / "in"), "--subjects", "1000",
                 "--out", str(tmp_path / "w")]) == 2
    assert "3 digits" in capsys.readouterr().err
    assert not any((tmp_path / d).exists() for d in "xyw")


def test_synth_cli_clean_writes_the_scans_without_scanner_nuisances(tmp_path):
    """``--clean``: the tree write_bu3dfe gives with Nuisance.none() (face crop, native resolution, no noise,
    holes, units or pose), file for file; without it the same seed's scans differ."""
    from dataclasses import replace

    from affectvlm.synth.cli import main
    from affectvlm.synth.facemodel import load_face_models
    from affectvlm.synth.transfer import expression_models
    from tests.gltfgen import ellipsoid_head, glb_bytes, head_targets

    v, f = ellipsoid_head()
    head = tmp_path / "Head.glb"
    head.write_bytes(glb_bytes(v, f, head_targets(v, left_is_plus_x=True)))
    common = ["--layout", "bu3dfe", "--gltf", str(head), "--subjects", "2", "--intensities", "3,4", "--emotions",
              "surprise,fear", "--seed", "5", "-q"]
    assert main([*common, "--clean", "--out", str(tmp_path / "clean")]) == 0
    assert main([*common, "--out", str(tmp_path / "scanned")]) == 0
    models = expression_models(load_face_models(gltf=str(head), cache=False), "own", 3, 5)
    cfg = CorpusConfig(subjects=2, seed=5, levels=(3, 4), emotions=("neutral", "surprise", "fear"),
                       val_fraction=0.1, test_fraction=0.2)
    write_bu3dfe(replace(cfg, nuisance=Nuisance.none()), models, tmp_path / "ref", progress=False)
    scans = sorted(p.relative_to(tmp_path / "ref") for p in (tmp_path / "ref").rglob("*.wrl"))
    assert len(scans) == 10
    for rel in scans:
        assert (tmp_path / "clean" / rel).read_bytes() == (tmp_path / "ref" / rel).read_bytes(), rel
    differ = [rel for rel in scans if (tmp_path / "scanned" / rel).read_bytes() != (tmp_path / "ref" / rel).read_bytes()]
    assert len(differ) == len(scans)


def test_synth_cli_writes_any_face_model_as_a_bu4dfe_tree(tmp_path):
    from affectvlm.synth.cli import main
    from tests.gltfgen import ellipsoid_head, glb_bytes, head_targets

    v, f = ellipsoid_head()
    head = tmp_path / "Head.glb"
    head.write_bytes(glb_bytes(v, f, head_targets(v, left_is_plus_x=True)))
    assert main(["--layout", "bu4dfe", "--gltf", str(head), "--subjects", "1", "--frames", "5",
                 "--out", str(tmp_path / "s"), "-q"]) == 0
    ds = load_dataset(tmp_path / "s", "bu4dfe")
    assert len(ds.samples) == 6 and {len(s.frame_ids) for s in ds.samples} == {5}
