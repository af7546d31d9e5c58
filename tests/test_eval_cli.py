"""``affectvlm eval`` says what it scored: a 4D set's sequences beside its frames, labels it left out, and JSON only."""
import json

import pytest
from meshgen import face_like_mesh

from affectvlm.io.vrml import write_vrml
from affectvlm.train.evaluate import main, sequence_accuracy

BASE = ["--model", "default", "--subset", "all", "--no-landmarks", "--views", "0"]


def test_a_4d_set_is_scored_by_frames_and_by_sequence(tmp_path, capsys):
    for s in ("F001", "M002"):
        for emo, sign in (("Happy", 1.0), ("Sad", -1.0)):
            for t in range(6):
                write_vrml(tmp_path / "bu4" / s / emo / f"{t:03d}.wrl",
                           face_like_mesh(16, smile=sign * min(t, 5 - t) / 2, seed=t, textured=False))
    (tmp_path / "bu4" / "F001" / "Fear").mkdir()  # left out, and said
    out = tmp_path / "m.json"
    assert main([*BASE, "--data", str(tmp_path / "bu4"), "--layout", "bu4dfe", "--cache-dir", str(tmp_path / "c"),
                 "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    seqs = res["sequences"]
    assert seqs["n"] == 4 and res["n"] == 4 * seqs["frames_each"] and 0.0 <= seqs["accuracy"] <= 1.0
    said = capsys.readouterr()
    assert "warning: F001/Fear: no frames" in said.err
    said = said.out
    assert f"n={res['n']} ({res['n']} frames of 4 sequences)" in said and "sequences " in said
    assert seqs["frames_each"] < 6 and (seqs["pooling"], seqs["frames_scored"]) == ("peak", "middle")
    # every frame, pooled as predict pools them (its default), or by the pooling asked for
    for opts, pooling in (([], "contrast"), (["--pooling", "mean"], "mean")):
        assert main([*BASE, "--data", str(tmp_path / "bu4"), "--layout", "bu4dfe", "--cache-dir", str(tmp_path / "c"),
                     "--out", str(out), "--sequence-frames", "all", *opts]) == 0
        res = json.loads(out.read_text())
        assert res["n"] == 24 and res["sequences"]["frames_each"] == 6
        assert (res["sequences"]["pooling"], res["sequences"]["frames_scored"]) == (pooling, "all")
        assert "(each from its 6 frames, pooled by " + pooling in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([*BASE, "--data", str(tmp_path / "bu4"), "--out", str(out), "--sequence-frames", "0"])
    assert "give a whole number of frames >= 1, or all" in capsys.readouterr().err


def test_labels_the_model_does_not_have_are_said_not_dropped_silently(tmp_path, capsys):
    rows = []
    for k, (label, smile) in enumerate([("happiness", 1.0), ("sadness", -1.0), ("foo", 0.5), ("happiness", 0.8)]):
        write_vrml(tmp_path / f"s{k}.wrl", face_like_mesh(16, smile=smile, seed=k, textured=False))
        rows.append(f"s{k}.wrl,{label},S{k % 2}")
    (tmp_path / "m.csv").write_text("path,label,subject\n" + "\n".join(rows) + "\n")
    out = tmp_path / "m.json"
    assert main([*BASE, "--data", str(tmp_path / "m.csv"), "--layout", "manifest", "--cache-dir", str(tmp_path / "c"),
                 "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["n"] == 3 and res["left_out_labels"] == {"foo": 1} and "sequences" not in res
    assert "1 sample left out: its label is not one of the model's classes ('foo' x1)" in capsys.readouterr().err
    # counted among the scored subjects only: with S0 (foo's subject) held out of the scored fold, nothing is said
    assert main([*BASE[:2], "--data", str(tmp_path / "m.csv"), "--layout", "manifest", "--no-landmarks", "--views",
                 "0", "--cache-dir", str(tmp_path / "c"), "--out", str(out), "--subset", "test", "--folds", "2",
                 "--fold", str(fold_without_s0(tmp_path / "m.csv"))]) == 0
    assert "left_out_labels" not in json.loads(out.read_text()) and "left out" not in capsys.readouterr().err


def fold_without_s0(manifest):
    from affectvlm.datasets import kfold_split, load_dataset

    samples = load_dataset(str(manifest), "manifest").samples
    return next(f for f in range(2) if "S0" not in {s.subject for s in kfold_split(samples, 2, f, 0)[1]})


@pytest.mark.parametrize("name", ["e.csv", "metrics"])
def test_metrics_go_to_a_json_name_only(tmp_path, capsys, name):
    assert main([*BASE, "--data", str(tmp_path), "--out", str(tmp_path / name)]) == 2
    assert "the metrics are JSON; give a name ending in .json" in capsys.readouterr().err
    assert not (tmp_path / name).exists()


def test_a_sequence_is_pooled_as_asked():
    """A calm frame that rules out happiness less than surprise: contrast (predict's default) reads happiness, peak
    (the expressive frames alone) surprise."""
    from types import SimpleNamespace

    classes = ["neutral", "happiness", "surprise"]
    probs = [[0.8, 0.05, 0.15], [0.1, 0.4, 0.5], [0.1, 0.4, 0.5]]
    frames = [SimpleNamespace(path=f"s/{i:03d}.wrl") for i in range(3)]
    of = {f.path: "s" for f in frames}
    assert sequence_accuracy(frames, [1, 1, 1], probs, classes, of, "contrast")["accuracy"] == 1.0
    assert sequence_accuracy(frames, [1, 1, 1], probs, classes, of, "peak")["accuracy"] == 0.0
    assert sequence_accuracy(frames, [2, 2, 2], probs, classes, of)["accuracy"] == 0.0  # predict's default


def test_a_subjects_sequences_are_taken_relative_to_their_mean_as_predict_takes_them():
    """Every sequence of subject F001 leans to surprise; --subject-mean auto (predict's default) takes that lean out
    of the pooled sequences, as predict does, where the frames alone read three of four as surprise."""
    from types import SimpleNamespace

    classes = ["anger", "happiness", "sadness", "surprise"]
    probs, frames, truth = [], [], []
    for k, emo in enumerate(("Angry", "Happy", "Sad", "Surprise")):
        p = [0.1, 0.1, 0.1, 0.7] if emo == "Surprise" else [0.3 if j == k else 0.15 for j in range(3)] + [0.4]
        probs.append(p)
        frames.append(SimpleNamespace(path=f"/x/F001/{emo}/000.wrl"))
        truth.append(k)
    of = {f.path: f.path.rsplit("/", 1)[0] for f in frames}
    alone = sequence_accuracy(frames, truth, probs, classes, of, "peak", "none")
    assert alone["accuracy"] == 0.25 and "subject_mean" not in alone
    centred = sequence_accuracy(frames, truth, probs, classes, of, "peak", "auto")
    assert centred["accuracy"] == 1.0 and centred["subject_mean"]["rescored"] == 4
    # each sequence's own reading, and the sequences' confusion matrix (rows: true class)
    assert [(x["sequence"], x["label"], x["predicted"]) for x in alone["labels"]] == [
        ("/x/F001/Angry", "anger", "surprise"), ("/x/F001/Happy", "happiness", "surprise"),
        ("/x/F001/Sad", "sadness", "surprise"), ("/x/F001/Surprise", "surprise", "surprise")]
    assert [row[3] for row in alone["confusion_matrix"]] == [1, 1, 1, 1] and alone["macro_f1"] == pytest.approx(0.1)
    assert centred["confusion_matrix"] == [[int(i == j) for j in range(4)] for i in range(4)]


def test_a_4d_set_adapted_to_is_also_centred_as_predict_centres_it(tmp_path):
    """predict --adapt moves a set of sequences' mean embedding (their most expressive frames') onto the training
    scans' mean; eval found no static scans to take that mean from and left a 4D set uncentred."""
    for k in range(10):
        for emo, sign in (("Happy", 1.0), ("Sad", -1.0)):
            for t in range(3):
                write_vrml(tmp_path / "bu4" / f"F{k + 1:03d}" / emo / f"{t:03d}.wrl",
                           face_like_mesh(16, smile=sign * t / 2, seed=10 * k + t, textured=False))
    out = tmp_path / "m.json"
    assert main([*BASE, "--data", str(tmp_path / "bu4"), "--cache-dir", str(tmp_path / "c"),  # the layout found
                 "--out", str(out), "--sequence-frames", "all", "--adapt", "on"]) == 0
    res = json.loads(out.read_text())
    assert res["adapted"]["centred"] is True and res["layout"] == "bu4dfe"


def test_rendering_shows_progress_on_a_terminal(tmp_path, capsys, monkeypatch):
    """eval rendered a whole 4D set (minutes) without a word; predict shows a bar."""
    import sys

    for t in range(4):
        write_vrml(tmp_path / "d" / "F001" / "Happy" / f"{t:03d}.wrl", face_like_mesh(16, smile=t / 4, textured=False))
        write_vrml(tmp_path / "d" / "F001" / "Sad" / f"{t:03d}.wrl", face_like_mesh(16, smile=-t / 4, textured=False))
    for opts, shown in (([], True), (["--no-progress"], False)):
        monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
        assert main([*BASE, "--data", str(tmp_path / "d"), "--layout", "bu4dfe", "--out", str(tmp_path / "m.json"),
                     "--cache-dir", str(tmp_path / f"c{len(opts)}"), *opts]) == 0
        assert ("rendering: 100%" in capsys.readouterr().err) is shown, opts
