"""Batch-norm statistics re-estimated on the scored set (``affectvlm predict --adapt``)."""
import json

import numpy as np
import pytest
import torch
import trimesh

from affectvlm import cli
import affectvlm.adapt as adapt_mod
from affectvlm.adapt import (BATCH, MIN_ROWS, MIN_SEQUENCES, ON_MIN_ROWS, SAMPLE, SpreadCheck, adapt_for, adapt_model,
                              gathering_statistics, guard, norm_layers, sample_inputs, spread_check)
from affectvlm.errors import ConfigError
from affectvlm.mesh import MeshSequence
from affectvlm.model import load_model
from affectvlm.predict import predict
from meshgen import face_like_mesh


def _rows(labels, frame=""):
    return [{"file": f"s/{i}.obj", "frame": frame, "error": None, "label": c} for i, c in enumerate(labels)]


def test_spread_check_wants_many_varied_scans():
    varied = ["happiness", "sadness", "anger", "fear", "disgust"] * 12  # 60 rows, 5 classes at 20 %
    assert spread_check(_rows(varied)).ok
    assert not spread_check(_rows(varied[:MIN_ROWS - 1])).ok  # too few
    one = ["happiness"] * 30 + varied[:30]  # happiness over 40 %
    check = spread_check(_rows(one))
    assert not check.ok and "happiness" in check.reason
    three = ["happiness", "sadness", "anger"] * 20 + ["fear"] * 4  # a fourth class under 10 %
    assert not spread_check(_rows(three)).ok and "only 3 expressions" in spread_check(_rows(three)).reason
    # frames and errors do not count; pooled sequences do; without spread only the size counts
    frames = _rows(varied, frame="3") + [{**r, "error": "unreadable"} for r in _rows(varied)]
    assert spread_check(frames).rows == 0
    assert spread_check(_rows(varied, frame="sequence")).ok
    assert spread_check(_rows(varied, frame=None)).ok  # rows read back from JSON carry a null frame: whole scans
    assert spread_check(_rows(["happiness"] * ON_MIN_ROWS), min_rows=ON_MIN_ROWS, spread=False).ok


@pytest.mark.parametrize("subjects", [64, 128])
def test_the_sample_does_not_alias_with_a_datasets_period(subjects):
    # BU-3DFE lists 25 scans per subject in the same order; 64 subjects made an evenly spaced sample (step 6.25) of
    # only AN01, DI03, HA01 and SA02 scans, 128 subjects (step 12.5) of only AN01 and HA01
    from affectvlm.reference import full_expressions

    codes = ["AN", "DI", "FE", "HA", "NE", "SA", "SU"]
    files = sorted(f"F{s:04d}/F{s:04d}_{c}0{lv}WH_F3D.wrl" for s in range(subjects) for c in codes
                   for lv in ([0] if c == "NE" else [1, 2, 3, 4]))
    picked = sample_inputs(files)
    assert len(picked) == len(set(picked)) == SAMPLE and picked == sample_inputs(files)  # fixed, on every rank
    judged = [f for f, full in zip(picked, full_expressions(picked)) if full]
    assert len(judged) >= MIN_ROWS
    per_code = {c: sum(f"_{c}0" in f for f in judged) for c in codes}
    assert min(per_code.values()) >= 4 and max(per_code.values()) <= 40, per_code  # an even share is ~19
    assert len({f"{f.split('_')[1][:4]}" for f in picked}) >= 20  # expressions and levels, not a few fixed ones


def _counts(**n):
    return _rows([c for c, k in n.items() for _ in range(k)])


def test_spread_check_takes_a_thin_spread_over_five_expressions():
    # a varied set read with a lean: 3 expressions over 10 %, but 5 over 5 % and none over half
    lean = spread_check(_counts(happiness=45, fear=25, surprise=14, sadness=8, disgust=6, anger=2))
    assert lean.ok and "5 expressions each over 5 %" in lean.reason and lean.reason.startswith("100 scans, ")
    # the reason names what it counted (it said "scans or sequences" of a set it knew to be sequences)
    seqs = [{**r, "frame": "sequence"} for r in _counts(happiness=10, fear=10, surprise=10, sadness=10)]
    assert spread_check(seqs, min_rows=20).reason.startswith("40 sequences, ")
    assert spread_check(seqs[:30] + _counts(anger=10), min_rows=20).reason.startswith("40 scans and sequences, ")
    # the same lean with half the set on one expression is declined, and so are 3 expressions read cleanly
    half = spread_check(_counts(happiness=55, fear=20, surprise=11, sadness=7, disgust=5, anger=2))
    assert not half.ok and half.on_spread and "55 % of them read happiness" in half.reason
    three = spread_check(_counts(happiness=33, sadness=33, anger=30, fear=4))
    assert not three.ok and "it needs 4, or 5 each over 5 %" in three.reason
    four_thin = spread_check(_counts(happiness=40, fear=40, surprise=10, sadness=6, disgust=4))  # 4 over 5 %
    assert not four_thin.ok


def test_guard_judges_a_bu3dfe_sets_full_expressions_under_auto():
    # 60 level 3-4 scans of five emotions plus 80 level 1-2 scans that read calm: of all 140, more than half read
    # "neutral", the full expressions alone are varied; "on" counts every row
    codes = {"happiness": "HA", "sadness": "SA", "anger": "AN", "fear": "FE", "disgust": "DI"}
    full = [{"file": f"F{i:04d}_{codes[c]}0{3 + i % 2}WH_F3D.wrl", "frame": "", "error": None, "label": c}
            for i, c in enumerate(["happiness", "sadness", "anger", "fear", "disgust"] * 12)]
    subtle = [{"file": f"F{i:04d}_HA0{1 + i % 2}WH_F3D.wrl", "frame": "", "error": None, "label": "neutral"}
              for i in range(80)]
    assert not spread_check(full + subtle).ok
    assert guard(full + subtle, "auto").ok and guard(full + subtle, "auto").rows == 60
    assert guard(subtle, "on").ok and not guard(subtle, "auto").ok


def test_guard_wants_fewer_inputs_when_all_are_sequences():
    varied = ["happiness", "sadness", "anger", "fear", "disgust"] * 12
    assert MIN_SEQUENCES < MIN_ROWS
    seqs = _rows(varied[:MIN_SEQUENCES], frame="sequence") + _rows(varied[:MIN_SEQUENCES], frame="3")  # pooled + frames
    assert guard(seqs, "auto").ok
    assert not guard(_rows(varied[:MIN_SEQUENCES]), "auto").ok  # as many scans: too few
    mixed = _rows(varied[:MIN_SEQUENCES - 1], frame="sequence") + _rows(varied[:1])  # one scan among them
    assert not guard(mixed, "auto").ok and f"at least {MIN_ROWS}" in guard(mixed, "auto").reason
    assert not guard(_rows(varied[:MIN_SEQUENCES - 1], frame="sequence"), "auto").ok
    unreadable = [{"file": "broken.zip", "frame": "", "error": "not a zip", "label": ""}]  # says nothing of the set
    assert guard(seqs + unreadable, "auto").ok


def test_guard_takes_what_a_datasets_names_say_the_set_holds():
    # 48 BU-4DFE sequences of six emotions, read with a lean onto three: the names say the set is varied
    folders = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise"]
    lean = ["happiness"] * 17 + ["fear"] * 13 + ["surprise"] * 10 + ["sadness"] * 4 + ["disgust"] * 2 + ["anger"] * 2
    seqs = [{"file": f"/d/F{i // 6:03d}/{folders[i % 6]}", "frame": "sequence", "error": None, "label": c}
            for i, c in enumerate(lean)]
    assert not spread_check(seqs, min_rows=MIN_SEQUENCES).ok
    named = guard(seqs, "auto")
    assert named.ok and "6 expressions" in named.reason and "names" in named.reason
    # three emotions only: the names do not say it is varied, so the reading decides (here: declined)
    three = [dict(r, file=f"/d/F{i:03d}/{folders[i % 3]}") for i, r in enumerate(seqs)]
    assert not guard(three, "auto").ok and "names" not in guard(three, "auto").reason
    varied_reading = [dict(r, label=c) for r, c in zip(three, ["happiness", "fear", "surprise", "sadness"] * 12)]
    assert guard(varied_reading, "auto").ok and "names" not in guard(varied_reading, "auto").reason
    # one input without such a name: the model's reading decides, as before
    other = seqs[:-1] + [dict(seqs[-1], file="/d/take7")]
    assert not guard(other, "auto").ok and "names" not in guard(other, "auto").reason
    assert guard(three, "on").ok  # on counts only


@pytest.fixture(scope="module")
def model():
    return load_model(None)


def test_adapted_statistics_are_those_of_the_sets_renders(model, tmp_path):
    faces = [face_like_mesh(24, smile=s, seed=i, textured=False) for i, s in enumerate((0.0, 0.3, 0.6, 0.9, 1.2))]
    first = norm_layers(model)[0]
    before = [(m.running_mean.clone(), m.running_var.clone()) for m in norm_layers(model)]
    # what the first batch-norm layer is given (it follows one convolution, so the statistics do not change it)
    seen = []
    hook = first.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].detach().double()))
    try:
        alone = predict(faces, model, batch_size=BATCH, workers=0)
    finally:
        hook.remove()
    done = adapt_model(model, faces, workers=0)
    assert done.inputs == len(faces) and done.layers == len(norm_layers(model)) > 0
    pooled = torch.cat([x.transpose(0, 1).flatten(1) for x in seen], 1)  # (channels, every image's pixels)
    got = norm_layers(done.model)[0].running_mean.double()
    torch.testing.assert_close(got, pooled.mean(1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(norm_layers(done.model)[0].running_var.double(), pooled.var(1), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(got, before[0][0].double(), atol=1e-3)
    # the model given is untouched, and scores as before; the adapted copy scores differently
    for m, (mean, var) in zip(norm_layers(model), before):
        assert torch.equal(m.running_mean, mean) and torch.equal(m.running_var, var)
    assert [r["label"] for r in predict(faces, model, workers=0)] == [r["label"] for r in alone]
    adapted = predict(faces, done.model, workers=0)
    assert max(abs(a["happiness"] - b["happiness"]) for a, b in zip(adapted, alone)) > 1e-4
    # a model without batch norm, or a set where nothing renders, is left as it is
    plain = torch.nn.Linear(2, 2)
    assert adapt_model(plain, faces).model is plain
    broken = tmp_path / "broken.ply"
    broken.write_text("ply\nformat ascii 1.0\nelement vertex 3\nend_header\n1 2\n")
    none = adapt_model(model, [broken], workers=0)
    assert none.model is model and none.layers == 0 and none.inputs == 0


def test_statistics_pool_every_image_whatever_the_batches(model):
    # batches of 2, 2 and 1 scans: each image counts alike, and the spread between batches is kept (a plain running
    # average of batch statistics would give the lone last scan as much weight as two)
    faces = [face_like_mesh(24, smile=s, seed=i, textured=False) for i, s in enumerate((0.0, 0.3, 0.6, 0.9, 1.2))]
    with gathering_statistics(model) as adapted:
        layers = norm_layers(adapted)
        seen = {0: [], len(layers) - 1: []}
        hooks = [layers[k].register_forward_hook(lambda mod, inp, out, k=k: seen[k].append(inp[0].double()))
                 for k in seen]
        predict(faces, adapted, batch_size=2, workers=0)
        for h in hooks:
            h.remove()
    assert [len(x) for x in seen[0]] and len(seen[0]) >= 3
    for k, xs in seen.items():
        pooled = torch.cat([x.transpose(0, 1).flatten(1) for x in xs], 1)
        torch.testing.assert_close(layers[k].running_mean.double(), pooled.mean(1), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(layers[k].running_var.double(), pooled.var(1), rtol=1e-4, atol=1e-5)
    assert not adapted.training and all(not m.training for m in layers)


def test_adapt_for_decides_on_the_sample_and_alike_every_time(model, monkeypatch):
    faces = [face_like_mesh(24, smile=s, seed=i, textured=False) for i, s in enumerate((0.0, 0.4, 0.8, 1.2))]
    assert adapt_for(model, faces, "none").model is model and adapt_for(model, faces, "none").check is None
    few = adapt_for(model, faces, "auto", workers=0)
    assert few.model is model and not few.adapted and f"needs at least {MIN_ROWS}" in few.text()
    with pytest.raises(ConfigError, match="adapt must be one of"):
        adapt_for(model, faces, "always")
    seqs = [MeshSequence([face_like_mesh(20, smile=s, seed=k, textured=False) for s in (0.0, 0.6, 1.2)], [0, 1, 2],
                         source=f"seq{k}") for k in range(4)]
    monkeypatch.setattr(adapt_mod, "MIN_SEQUENCES", 4)  # four sequences are enough where four scans are not
    monkeypatch.setattr(adapt_mod, "spread_check", lambda rows, min_rows, spread: SpreadCheck(
        len(adapt_mod._counted(rows)) >= min_rows, len(adapt_mod._counted(rows)), "counted"))
    assert adapt_for(model, seqs, "auto", workers=0).adapted and not adapt_for(model, faces, "auto", workers=0).adapted
    monkeypatch.undo()
    monkeypatch.setattr(adapt_mod, "ON_MIN_ROWS", 4)
    a, b = adapt_for(model, faces, "on", workers=0), adapt_for(model, faces, "on", workers=2)
    assert a.adapted and a.inputs == 4 and "statistics of 4 of these inputs" in a.text()
    want = adapt_model(model, faces, workers=0).model
    for x, y, z in zip(norm_layers(a.model), norm_layers(b.model), norm_layers(want)):
        assert torch.equal(x.running_mean, y.running_mean) and torch.equal(x.running_var, y.running_var)
        assert torch.equal(x.running_mean, z.running_mean)


def test_auto_follows_the_training_runs_choice_and_on_overrides_it(model, tmp_path, monkeypatch):
    from affectvlm.errors import ModelError
    from affectvlm.model import save_checkpoint
    from affectvlm.model.checkpoint import update_meta

    faces = [face_like_mesh(24, smile=s, seed=i, textured=False) for i, s in enumerate((0.0, 0.4, 0.8, 1.2))]
    monkeypatch.setattr(adapt_mod, "MIN_ROWS", 4)
    monkeypatch.setattr(adapt_mod, "ON_MIN_ROWS", 4)
    monkeypatch.setattr(adapt_mod, "spread_check", lambda rows, min_rows, spread: SpreadCheck(True, 4, "varied"))
    assert adapt_for(model, faces, "auto", workers=0).adapted  # no choice recorded: as before
    ck = save_checkpoint(model, tmp_path / "ck")
    update_meta(ck, adapt_to_set=False)  # as the trainer writes it when its val subjects read better as trained
    chose = load_model(str(ck), cache=False)
    assert chose.adapt_to_set is False
    declined = adapt_for(chose, faces, "auto", workers=0)
    assert declined.model is chose and not declined.adapted and declined.check.on_spread
    assert "validation subjects read better as trained" in declined.text() and "--adapt on" in declined.text()
    assert adapt_for(chose, faces, "on", workers=0).adapted
    assert save_checkpoint(chose, tmp_path / "again") and load_model(str(tmp_path / "again"), cache=False).adapt_to_set is False
    update_meta(ck, adapt_to_set=True)
    assert adapt_for(load_model(str(ck), cache=False), faces, "auto", workers=0).adapted
    update_meta(ck, adapt_to_set="yes")
    with pytest.raises(ModelError, match="adapt_to_set must be true or false"):
        load_model(str(ck), cache=False)


def test_a_set_named_as_varied_is_adapted_without_scoring_it_first(model, tmp_path, monkeypatch):
    import affectvlm.predict as predict_mod

    codes = ["HA", "SA", "SU", "FE", "DI", "AN"]
    for i in range(MIN_ROWS + 4):  # BU-3DFE names of six expressions at level 4
        sid = f"F{i // 6 + 1:04d}"
        m = face_like_mesh(20, smile=(i % 5) / 4, seed=i, textured=False)
        (tmp_path / sid).mkdir(exist_ok=True)
        trimesh.Trimesh(m.vertices, m.faces, process=False).export(tmp_path / sid / f"{sid}_{codes[i % 6]}04WH_F3D.obj")

    passes = []
    real = predict_mod.score_items
    monkeypatch.setattr(predict_mod, "score_items", lambda *a, **k: passes.append(1) or real(*a, **k))
    done = adapt_for(model, [str(tmp_path)], "auto", workers=0)
    assert done.adapted and "by their dataset's names" in done.text()
    assert len(passes) == 1  # the statistics pass only: the sample was not scored first
    passes.clear()
    assert adapt_for(model, [str(tmp_path)], "on", workers=0).adapted and len(passes) == 2  # on: scored, then gathered


def test_cli_adapt(tmp_path, capsys):
    d = tmp_path / "set"
    d.mkdir()
    for i in range(ON_MIN_ROWS):
        m = face_like_mesh(20, smile=(i % 5) / 4, seed=i, textured=False)
        trimesh.Trimesh(m.vertices, m.faces, process=False).export(d / f"s{i:02d}.obj")
    base = ["--format", "json", "--no-progress"]
    files = sorted(str(f) for f in d.iterdir())  # scans (the folder alone would read as a sequence's frames)
    assert cli.main(["predict", *files, *base]) == 0  # auto: too few scans, silently as trained
    out = capsys.readouterr()
    plain = json.loads(out.out)
    assert "--adapt" not in out.err
    assert cli.main(["predict", *files, *base, "--adapt", "on"]) == 0
    out = capsys.readouterr()
    assert f"--adapt on: scored with the image encoder's statistics of {ON_MIN_ROWS} of these inputs" in out.err
    on = json.loads(out.out)
    assert [r["file"] for r in on] == [r["file"] for r in plain]
    assert max(abs(a["sadness"] - b["sadness"]) for a, b in zip(on, plain)) > 1e-4
    assert cli.main(["predict", str(d / "s00.obj"), *base, "--adapt", "on"]) == 0  # one scan: said, not done
    out = capsys.readouterr()
    assert "warning: --adapt on: scored with the trained statistics: 1 inputs; it needs at least" in out.err
    assert json.loads(out.out)[0]["sadness"] == pytest.approx(plain[0]["sadness"], abs=1e-6)
    assert cli.main(["predict", *files, *base, "--prior", "uniform"]) == 0  # with --prior: none unless asked
    assert "--adapt" not in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["predict", *files, *base, "--adapt", "always"])
    assert e.value.code == 2


def test_cli_says_why_auto_declined_a_set_many_enough(tmp_path, capsys, monkeypatch):
    d = tmp_path / "set"
    d.mkdir()
    for i in range(6):
        m = face_like_mesh(20, smile=(i % 3) / 2, seed=i, textured=False)
        trimesh.Trimesh(m.vertices, m.faces, process=False).export(d / f"s{i:02d}.obj")
    files = sorted(str(f) for f in d.iterdir())
    monkeypatch.setattr(adapt_mod, "MIN_ROWS", 4)
    monkeypatch.setattr(adapt_mod, "MIN_CLASSES", 8)  # more than the classes: every spread check declines
    monkeypatch.setattr(adapt_mod, "WIDE_CLASSES", 8)
    assert cli.main(["predict", *files, "--format", "json", "--no-progress"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "--adapt" in line]
    assert len(err) == 1 and err[0].startswith("affectvlm: --adapt auto: scored with the trained statistics: ")
    assert "mostly one expression" in err[0] or "(it needs 8)" in err[0]
    assert "warning" not in err[0]


def test_eval_adapts_only_when_asked_and_says_so(tmp_path):
    from affectvlm.io.vrml import write_vrml
    from affectvlm.train.evaluate import main

    for s in ("F0001", "M0002"):
        for lvl in range(10):
            write_vrml(tmp_path / "data" / s / f"{s}_HA{lvl:02d}WH_F3D.wrl",
                       face_like_mesh(16, smile=lvl / 8, seed=lvl, textured=False))
    common = ["--model", "default", "--data", str(tmp_path / "data"), "--layout", "bu3dfe", "--subset", "all",
              "--cache-dir", str(tmp_path / "cache"), "--no-landmarks"]
    assert main([*common, "--out", str(tmp_path / "n.json")]) == 0
    plain = json.loads((tmp_path / "n.json").read_text())
    assert "adapted" not in plain
    # scored as predict scores: the default's views, each also at its score_pitches
    default = load_model("default").render
    assert len(default.score_pitches) == 2 and plain["views"] == [str(v) for v in default.for_scoring().views]
    assert main([*common, "--views", "0,-30,30", "--out", str(tmp_path / "v.json")]) == 0
    assert json.loads((tmp_path / "v.json").read_text())["views"] == ["0", "-30", "30"]  # given views, as given
    assert main([*common, "--adapt", "on", "--out", str(tmp_path / "a.json")]) == 0
    adapted = json.loads((tmp_path / "a.json").read_text())
    assert adapted["adapted"] == {"samples": 20, "centred": True, "mode": "on", "reason": "20 samples",
                                  "transductive": True}  # the default stores a mean
    # too few samples to adapt to: one clear error
    for lvl in range(6):
        write_vrml(tmp_path / "few" / "F0003" / f"F0003_HA{lvl:02d}WH_F3D.wrl", face_like_mesh(16, seed=lvl))
    few = [*common[:2], "--data", str(tmp_path / "few"), *common[4:], "--adapt", "on",
           "--out", str(tmp_path / "x.json")]
    assert main(few) == 2 and not (tmp_path / "x.json").exists()


def test_eval_auto_decides_as_predict_does(tmp_path, monkeypatch, capsys):
    """`affectvlm eval --adapt auto` adapts a set whose dataset names say it is varied, and follows a checkpoint's
    adapt_to_set: false, so it gives the figure predict's default gives."""
    import affectvlm.train.evaluate as ev
    from affectvlm.io.vrml import write_vrml
    from affectvlm.model import save_checkpoint
    from affectvlm.model.checkpoint import update_meta

    monkeypatch.setattr(adapt_mod, "MIN_ROWS", 12)
    monkeypatch.setattr(adapt_mod, "ON_MIN_ROWS", 12)
    for i, code in enumerate(["HA", "SA", "SU", "FE", "DI", "AN"] * 2):  # six expressions at level 4, by name
        s = ("F0001", "M0002")[i // 6]
        write_vrml(tmp_path / "data" / s / f"{s}_{code}04WH_F3D.wrl",
                   face_like_mesh(16, smile=(i % 6) / 5, seed=i, textured=False))
    common = ["--data", str(tmp_path / "data"), "--layout", "bu3dfe", "--subset", "all",
              "--cache-dir", str(tmp_path / "cache"), "--no-landmarks"]

    def run(model, adapt, name):
        assert ev.main(["--model", model, *common, "--adapt", adapt, "--out", str(tmp_path / name)]) == 0
        return json.loads((tmp_path / name).read_text()), capsys.readouterr().err

    auto, err = run("default", "auto", "auto.json")
    assert auto["adapted"]["mode"] == "auto" and "by their dataset's names" in auto["adapted"]["reason"]
    assert "--adapt auto: adapted to the scored samples" in err
    on, _ = run("default", "on", "on.json")
    assert on["accuracy"] == auto["accuracy"]  # the same statistics, the same sample
    ck = save_checkpoint(load_model("default"), tmp_path / "ck")
    update_meta(ck, adapt_to_set=False)
    declined, err = run(str(ck), "auto", "declined.json")
    none, _ = run(str(ck), "none", "none.json")
    assert "adapted" not in declined and "adapted" not in none and "adapt_declined" not in none
    assert "read better as trained" in declined["adapt_declined"]["reason"] and "trained statistics" in err
    assert declined["accuracy"] == none["accuracy"]
    monkeypatch.setattr(adapt_mod, "MIN_ROWS", 13)  # one more than the set holds
    few, _ = run("default", "auto", "few.json")
    assert "adapted" not in few and "at least 13" in few["adapt_declined"]["reason"]
    for bad in (["--batch-size", "0"], ["--batch-size", "-1"], ["--intensities", "abc"]):  # usage errors, exit 2
        with pytest.raises(SystemExit) as e:
            ev.main(["--model", "default", *common, *bad])
        assert e.value.code == 2 and bad[0] in capsys.readouterr().err
    # an --out that cannot take the metrics is one line, exit 2: a folder before scoring, a file's folder after
    assert ev.main(["--model", "default", *common, "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"error: --out {tmp_path}: is a folder")
    assert ev.main(["--model", "default", *common, "--out", str(tmp_path / "auto.json" / "m.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'auto.json' / 'm.json'}: cannot write the metrics") and err.count("\n") == 1


def test_eval_auto_counts_a_4d_sets_sequences_as_predict_does(tmp_path, monkeypatch, capsys):
    """On a set of only sequences `affectvlm eval --adapt` counts sequences, not their frames, against
    MIN_SEQUENCES (predict's rule for such a set), and says so."""
    import affectvlm.train.evaluate as ev
    from affectvlm.io.vrml import write_vrml

    monkeypatch.setattr(adapt_mod, "MIN_ROWS", 12)
    monkeypatch.setattr(adapt_mod, "MIN_SEQUENCES", 4)
    monkeypatch.setattr(adapt_mod, "ON_MIN_ROWS", 3)
    emotions = ["Happy", "Sad", "Surprise", "Angry"]
    for k, emotion in enumerate(emotions[:3]):  # 3 sequences, 5 frames read of each: 15, over 12, but 3 sequences
        for f in range(10):
            write_vrml(tmp_path / "data" / "F001" / emotion / f"{f:03d}.wrl",
                       face_like_mesh(16, smile=(k - 1) * 0.4 * f, seed=10 * k + f, textured=False))
    common = ["--model", "default", "--data", str(tmp_path / "data"), "--layout", "bu4dfe", "--subset", "all",
              "--cache-dir", str(tmp_path / "cache"), "--no-landmarks"]

    def run(adapt, name):
        assert ev.main([*common, "--adapt", adapt, "--out", str(tmp_path / name)]) == 0
        return json.loads((tmp_path / name).read_text())

    few = run("auto", "few.json")
    assert "adapted" not in few and few["adapt_declined"]["reason"] == "3 sequences; it needs at least 4"
    assert run("on", "on3.json")["adapted"]["reason"] == "3 sequences"
    for f in range(10):
        write_vrml(tmp_path / "data" / "F001" / emotions[3] / f"{f:03d}.wrl",
                   face_like_mesh(16, smile=-0.2 * f, seed=40 + f, textured=False))
    enough = run("auto", "enough.json")
    assert enough["adapted"]["mode"] == "auto" and enough["adapted"]["reason"].startswith("4 ")
    assert "by their dataset's names" in enough["adapted"]["reason"]


def test_statistics_come_from_the_expression_scans_of_a_bosphorus_tree(model, tmp_path):
    # Bosphorus folders also hold pose, occlusion and action-unit scans: they are not the set being read, so they
    # neither join the statistics nor the guard's sample; other names are all kept
    names = {"bs000_E_HAPPY_0.ply": 1.0, "bs000_E_SADNESS_0.ply": 0.2, "bs000_N_N_0.ply": 0.0, "face.ply": 0.6,
             "bs000_YR_R90_0.ply": 0.0, "bs000_O_EYE_0.ply": 0.0, "bs000_LFAU_12_0.ply": 1.4}
    for i, (name, smile) in enumerate(names.items()):
        m = face_like_mesh(24, smile=smile, seed=i, textured=False)
        trimesh.Trimesh(m.vertices, m.faces, process=False).export(tmp_path / name)
    names_list = list(names)
    files = [str(tmp_path / n) for n in names_list]
    read = files[:4]
    got, want = adapt_model(model, files, workers=0), adapt_model(model, read, workers=0)
    assert got.inputs == want.inputs == 4
    for x, y in zip(norm_layers(got.model), norm_layers(want.model)):
        assert torch.equal(x.running_mean, y.running_mean) and torch.equal(x.running_var, y.running_var)
    # the same meshes under names of no dataset all count, and change the statistics
    renamed = []
    for i, f in enumerate(files):
        renamed.append(str(tmp_path / f"scan{i}.ply"))
        (tmp_path / f"scan{i}.ply").write_bytes((tmp_path / names_list[i]).read_bytes())
    every = adapt_model(model, renamed, workers=0)
    assert every.inputs == 7
    assert not torch.equal(norm_layers(every.model)[0].running_mean, norm_layers(got.model)[0].running_mean)


def test_auto_judges_a_bu3dfe_set_by_its_full_expressions_and_adapts_to_all(model, tmp_path, monkeypatch):
    # BU-3DFE's levels 1-2 mostly read as calm and would fail the guard: auto judges the set by its neutral and
    # level 3-4 scans, but the statistics still come from every scan; ``on`` judges only the count of all
    names = ["F0001_NE00WH_F3D.ply", "F0001_HA01WH_F3D.ply", "F0001_HA02WH_F3D.ply", "F0001_HA03WH_F3D.ply",
             "F0001_SA04WH_F3D.ply", "F0001_SA01WH_F3D.ply"]
    for i, name in enumerate(names):
        m = face_like_mesh(24, smile=0.3 * i, seed=i, textured=False)
        trimesh.Trimesh(m.vertices, m.faces, process=False).export(tmp_path / name)
    files = [str(tmp_path / n) for n in names]
    judged = []

    def check(rows, **kw):
        judged.append(sorted(r["file"].rsplit("/", 1)[-1] for r in rows))
        return SpreadCheck(True, len(rows), "ok")

    monkeypatch.setattr(adapt_mod, "spread_check", check)
    monkeypatch.setattr(adapt_mod, "MIN_ROWS", 3)
    monkeypatch.setattr(adapt_mod, "ON_MIN_ROWS", 3)
    auto, on = adapt_for(model, files, "auto", workers=0), adapt_for(model, files, "on", workers=0)
    assert judged == [sorted(names[i] for i in (0, 3, 4)), sorted(names)]
    assert auto.inputs == on.inputs == len(names)


def test_eval_without_matplotlib_writes_the_metrics_and_says_why_there_is_no_png(tmp_path, monkeypatch, capsys):
    import sys

    from affectvlm.io.vrml import write_vrml
    from affectvlm.train.evaluate import main

    for s in ("F0001", "M0002"):
        for lvl in range(2):
            write_vrml(tmp_path / "data" / s / f"{s}_HA{lvl:02d}WH_F3D.wrl",
                       face_like_mesh(16, smile=lvl / 2, seed=lvl, textured=False))
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # a core install: no [train] extra
    assert main(["--model", "default", "--data", str(tmp_path / "data"), "--layout", "bu3dfe", "--subset", "all",
                 "--cache-dir", str(tmp_path / "cache"), "--no-landmarks", "--views", "0",
                 "--out", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["n"] == 4 and not (tmp_path / "m.png").exists()
    assert "matplotlib is not installed" in capsys.readouterr().err


def test_eval_of_a_model_that_is_not_there_says_so_before_asking_for_data(tmp_path, capsys):
    from affectvlm.train.evaluate import main

    assert main(["--model", str(tmp_path / "no-such-run")]) == 2
    err = capsys.readouterr().err
    assert "no-such-run: model file or folder not found" in err and "--data is required" not in err
