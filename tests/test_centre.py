"""The mean training embedding a checkpoint stores, and ``--adapt`` centring a scored set on it."""
from __future__ import annotations

import copy
import csv
import json
import math

import pytest
import torch
import trimesh
import torch.nn.functional as F

from affectvlm.adapt import adapt_for, adapt_model
from affectvlm.errors import ModelError
from affectvlm.model import load_model, read_meta, save_checkpoint
from affectvlm.predict import predict, prepare
from affectvlm.train import centre
from meshgen import face_like_mesh


def _faces(n=5):
    return [face_like_mesh(24, smile=0.3 * i, seed=i, textured=False) for i in range(n)]


def _raw_mean(model, faces):
    """Mean fused embedding of ``faces`` without any shift, rendered one by one (not through mean_embedding)."""
    out = []
    for f in faces:
        p = prepare(f, model)
        img = p.settings.render([p.mesh], device=model.device)
        with torch.no_grad():
            out.append(model._embed(img, None, None)[0][0])
    return torch.stack(out).mean(0)


@pytest.fixture(scope="module")
def model():
    m = load_model(None, cache=False)
    return m


def test_adapting_centres_the_sets_mean_on_the_training_mean(model):
    faces = _faces()
    target = F.normalize(torch.linspace(-1, 1, model.embed_dim), dim=0) * 0.7
    model.embedding_mean, model.embedding_shift = target, None
    done = adapt_model(model, faces, workers=0)
    assert done.centred and model.embedding_shift is None  # the copy is shifted, not the model given
    want = target - _raw_mean(done.model, faces)
    torch.testing.assert_close(done.model.embedding_shift, want, rtol=1e-4, atol=1e-5)
    # every fused embedding is moved by the shift and normalised again, in eval mode only
    p = prepare(faces[0], done.model)
    img = p.settings.render([p.mesh], device=done.model.device)
    with torch.no_grad():
        raw = done.model._embed(img, None, None)[0]
        got = done.model.embed(img)[0]
        torch.testing.assert_close(got, F.normalize(raw + want, dim=-1), rtol=1e-4, atol=1e-5)
        training = copy.deepcopy(done.model).train()  # (a training-mode pass updates batch-norm statistics)
        assert not torch.allclose(training.embed(img)[0], got, atol=1e-3)
        probs = torch.softmax(done.model.logits_from_embedding(got), -1)[0]
    # the scores follow: the shifted embedding through the classifier
    row = predict([faces[0]], done.model, workers=0)[0]
    assert math.isclose(row[model.classes[0]], float(probs[0]), rel_tol=1e-3, abs_tol=1e-4)
    # a model without a stored mean adapts its statistics only
    model.embedding_mean = None
    plain = adapt_model(model, faces, workers=0)
    assert not plain.centred and plain.model.embedding_shift is None


def test_adapt_for_says_when_it_centred(model, monkeypatch):
    import affectvlm.adapt as adapt_mod

    monkeypatch.setattr(adapt_mod, "ON_MIN_ROWS", 4)
    model.embedding_mean = torch.zeros(model.embed_dim)
    try:
        a = adapt_for(model, _faces(4), "on", workers=0)
    finally:
        model.embedding_mean = None
    assert a.adapted and a.centred and "mean embedding moved onto the training" in a.text()


def test_checkpoint_keeps_the_mean_and_refuses_a_bad_one(tmp_path):
    m = load_model("AffectVLM-Test", cache=False)
    m.embedding_mean = torch.arange(m.embed_dim, dtype=torch.float32) / 100
    ck = save_checkpoint(m, tmp_path / "ck")
    back = load_model(str(ck), cache=False)
    torch.testing.assert_close(back.embedding_mean, m.embedding_mean)
    assert back.embedding_shift is None
    meta = read_meta(ck)
    for bad in ([1.0, 2.0], [float("nan")] * m.embed_dim, "x"):
        meta["embedding_mean"] = bad
        (ck / "affectvlm.json").write_text(json.dumps(meta))
        with pytest.raises(ModelError, match="embedding_mean must be a list of"):
            load_model(str(ck), cache=False)


def _corpus(root, n=6):
    rows = []
    for i, f in enumerate(_faces(n)):
        path = root / f"S{i}" / f"HA{3 + i % 2}_x.ply"
        path.parent.mkdir(parents=True)
        trimesh.Trimesh(f.vertices, f.faces, process=False).export(path)
        rows.append({"path": str(path.relative_to(root)), "label": "happiness", "subject": f"S{i}",
                     "intensity": 3 + i % 2, "split": "train" if i < 4 else "val", "family": "x", "face_model": "g"})
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def test_centre_command_writes_the_mean_of_the_training_rows(tmp_path, capsys):
    data = _corpus(tmp_path / "data")
    ck = save_checkpoint(load_model("AffectVLM-Test", cache=False), tmp_path / "ck")
    assert centre.main(["--model", str(ck), "--data", str(data), "--sample", "6", "--workers", "0"]) == 0
    meta = read_meta(ck)
    assert len(meta["embedding_mean"]) == load_model(str(ck), cache=False).embed_dim
    assert meta["provenance"]["embedding_mean_from"]["rows"] == 4
    # the four train rows (the val rows left out), rendered one by one, give the same mean
    paths = centre.training_rows(str(data / "manifest.csv"), "train", 6, 0)
    assert sorted(p.split("/")[-2] for p in paths) == ["S0", "S1", "S2", "S3"]
    few = centre.training_rows(str(data / "manifest.csv"), "train", 3, 0)  # the train rows among 3 drawn
    assert 0 < len(few) <= 3 and set(few) <= set(paths) and few == centre.training_rows(str(data), "train", 3, 0)
    m = load_model(str(ck), cache=False)
    from affectvlm.io import load_mesh

    want = _raw_mean(m, [load_mesh(p, texture=False) for p in paths])
    torch.testing.assert_close(m.embedding_mean, want, rtol=1e-3, atol=1e-4)
    # a wrong split or a missing manifest is one line and exit 2, the checkpoint untouched
    before = (ck / "affectvlm.json").read_text()
    capsys.readouterr()
    assert centre.main(["--model", str(ck), "--data", str(data), "--split", "nope"]) == 2
    assert centre.main(["--model", str(ck), "--data", str(tmp_path / "missing.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err) and "missing.csv" in err[1]
    assert (ck / "affectvlm.json").read_text() == before


def test_a_fine_tuned_checkpoint_drops_its_bases_mean(tmp_path):
    from test_train import _args, run_train, write_tiny_bu3dfe

    base = load_model("AffectVLM-Test", cache=False)
    base.embedding_mean = torch.ones(base.embed_dim) / base.embed_dim ** 0.5
    ck = save_checkpoint(base, tmp_path / "base")
    assert "embedding_mean" in read_meta(ck)
    data = write_tiny_bu3dfe(tmp_path / "bu3dfe", n_subjects=6)
    args = _args(data, tmp_path / "run", tmp_path / "cache", "--epochs", "1")
    args[args.index("--model") + 1] = str(ck)
    run_train(args)
    meta = read_meta(tmp_path / "run" / "best")
    assert "embedding_mean" not in meta and load_model(str(tmp_path / "run" / "best"), cache=False).embedding_mean is None


def test_bench_adapt_times_its_arms(capsys):
    import runpy
    from pathlib import Path

    bench = runpy.run_path(str(Path(__file__).resolve().parents[1] / "bench" / "bench_adapt.py"))
    # 54 scans: enough for auto to adapt the named arm; no warm-up, as the test reads the report's shape, not speed
    assert bench["main"](["--scans", "54", "--repeats", "1", "--warmup", "0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["none"]["ratio"] == 1.0 and out["statistics"]["seconds"] > 0 and out["centred"]["seconds"] > 0
    assert abs(out["centring_ratio"] - out["centred"]["seconds"] / out["statistics"]["seconds"]) < 0.01
    assert out["named"]["seconds"] > 0 and abs(out["named_ratio"] - out["named"]["seconds"] / out["centred"]["seconds"]) < 0.01


def test_a_set_of_sequences_is_centred_on_its_most_expressive_frames(model):
    from affectvlm.mesh import MeshSequence
    from affectvlm.predict import PEAK_FRACTION

    seqs = [MeshSequence([face_like_mesh(24, smile=s, seed=k, textured=False) for s in (0.0, 0.5, 1.0, 1.5)],
                         [0, 1, 2, 3], source=f"seq{k}") for k in range(3)]
    target = F.normalize(torch.linspace(1, -1, model.embed_dim), dim=0) * 0.6
    model.embedding_mean, model.embedding_shift = target, None
    try:
        done = adapt_model(model, seqs, workers=0)
    finally:
        model.embedding_mean = None
    assert done.centred
    # independently: every frame rendered alone, the least neutral ceil(PEAK_FRACTION * 4) of each sequence
    k = math.ceil(PEAK_FRACTION * 4)
    neutral = [c.lower() for c in model.classes].index("neutral")
    picked = []
    for s in seqs:
        raw = torch.stack([_raw_mean(done.model, [f]) for f in s.frames])
        with torch.no_grad():
            calm = torch.softmax(done.model.logits_from_embedding(raw), -1)[:, neutral]
        picked.append(raw[torch.argsort(calm)[:k]])
    want = target - torch.cat(picked).mean(0)
    torch.testing.assert_close(done.model.embedding_shift, want, rtol=1e-4, atol=1e-5)
    # not the mean of all frames
    every = torch.stack([_raw_mean(done.model, [f]) for s in seqs for f in s.frames]).mean(0)
    assert not torch.allclose(done.model.embedding_shift, target - every, atol=1e-3)
