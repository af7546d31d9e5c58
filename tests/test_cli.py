"""The affectvlm command as a real subprocess on real files (plus cheap in-process checks)."""
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path, PurePath

import numpy as np
import pytest
import trimesh

from affectvlm import cli
from affectvlm.io.vrml import write_vrml
from meshgen import face_like_mesh

ROOT = Path(__file__).resolve().parents[1]
MODEL = ["--model", "AffectVLM-Test"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "affectvlm", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    m = face_like_mesh(32)
    trimesh.Trimesh(m.vertices, m.faces, process=False).export(d / "face.obj")
    write_vrml(d / "F0001_HA04WH_F3D.wrl", face_like_mesh(32, smile=1.0))
    (d / "broken.ply").write_text("ply\nformat ascii 1.0\nelement vertex 3\nend_header\n1 2\n")
    seq = d / "seq"
    seq.mkdir()
    for i in range(3):
        write_vrml(seq / f"{i:03d}.wrl", face_like_mesh(20, smile=i / 2), write_texture=False)
    return d


def test_predict_csv_with_a_bad_file(scans, tmp_path):
    out = tmp_path / "res.csv"
    r = run("predict", str(scans / "face.obj"), str(scans / "F0001_HA04WH_F3D.wrl"), str(scans / "broken.ply"),
            *MODEL, "--out", str(out), "--views", "0,30")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    bad_lines = [ln for ln in r.stderr.splitlines() if "broken.ply" in ln]
    assert len(bad_lines) == 1 and bad_lines[0].startswith("affectvlm: ")
    rows = list(csv.DictReader(out.open()))
    assert [Path(x["file"]).name for x in rows] == ["face.obj", "F0001_HA04WH_F3D.wrl", "broken.ply"]
    for row in rows[:2]:
        assert row["error"] == "" and row["label"] in row
        assert abs(sum(float(row[c]) for c in ("neutral", "happiness", "sadness", "surprise", "fear", "disgust",
                                                "anger")) - 1) < 1e-4
    assert rows[2]["error"] and rows[2]["label"] == ""


@pytest.mark.slow
def test_predict_json_sequence_and_classes(scans, tmp_path):
    out = tmp_path / "res.json"
    r = run("predict", str(scans / "seq"), *MODEL, "--out", str(out), "--classes", "calm,joy,pain",
            "--views", "0,25", "--pooling", "mean")
    assert r.returncode == 0, r.stderr
    rows = json.loads(out.read_text())
    assert [x["frame"] for x in rows] == ["0", "1", "2", "sequence"]  # text, as in the CSV: one type a column
    assert list(rows[0]) == ["file", "frame", "timestamp", "label", "confidence", "calm", "joy", "pain",
                             "orientation_up", "orientation_front", "orientation_confidence", "orientation_flagged",
                             "orientation_source", "success", "error", "landmarks"]
    assert all(list(x) == list(rows[0]) for x in rows)
    assert [x["timestamp"] for x in rows] == [0.0, 0.04, 0.08, None]  # 25 frames per second by default
    assert [x["success"] for x in rows] == [1, 1, 1, 1]
    mean_joy = sum(x["joy"] for x in rows[:3]) / 3
    assert abs(rows[3]["joy"] - mean_joy) < 1e-6


def test_render_writes_pngs(scans, tmp_path):
    r = run("render", str(scans / "F0001_HA04WH_F3D.wrl"), "--out", str(tmp_path / "png"), "--views", "0,-30",
            "--maps", "shade,depth,lights", "--size", "64")
    assert r.returncode == 0, r.stderr
    pngs = sorted(p.name for p in (tmp_path / "png").glob("*.png"))
    assert pngs == ["F0001_HA04WH_F3D_depth_v0.png", "F0001_HA04WH_F3D_depth_v1.png",
                    "F0001_HA04WH_F3D_lights_v0.png", "F0001_HA04WH_F3D_lights_v1.png",
                    "F0001_HA04WH_F3D_shade_v0.png", "F0001_HA04WH_F3D_shade_v1.png"]
    from PIL import Image

    assert Image.open(tmp_path / "png" / pngs[0]).size == (64, 64)
    lit = np.asarray(Image.open(tmp_path / "png" / "F0001_HA04WH_F3D_lights_v0.png").convert("RGB")).astype(int)
    assert np.abs(lit[..., 0] - lit[..., 1]).max() > 50  # the channels see different lights


def test_help_and_user_errors_are_one_line():
    r = run("--help")
    assert r.returncode == 0 and all(c in r.stdout for c in ("predict", "render", "synth", "train", "eval"))


def test_in_process_output_and_errors(capsys, scans, tmp_path):
    assert cli.main(["predict", str(scans / "face.obj"), *MODEL, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["file"].endswith("face.obj")
    assert cli.main(["predict", str(scans / "face.obj"), *MODEL]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["file", "frame", "label", "confidence"] and "face.obj" in table[1]
    assert cli.main(["predict", "x.obj", "--model", "NoSuchNet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("affectvlm: error: unknown model spec") and "\n" not in err
    assert cli.main(["predict", str(scans / "face.obj"), *MODEL, "--out", str(tmp_path / "r.txt")]) == 2
    assert "csv or .json" in capsys.readouterr().err
    assert cli.main(["render", str(scans / "face.obj"), "--out", str(tmp_path), "--maps", "bogus"]) == 2
    assert "--maps" in capsys.readouterr().err
    assert cli.main(["render", str(tmp_path / "none.obj"), "--out", str(tmp_path)]) == 2
    assert cli.main([]) == 2
    capsys.readouterr()
    # up and front along one axis: a usage error before any file is read, not an error row per file
    for cmd in (["predict", str(scans / "face.obj"), *MODEL], ["render", str(scans / "face.obj"), "--out",
                                                               str(tmp_path / "views")]):
        assert cli.main([*cmd, "--up", "+y", "--front=-y"]) == 2
        err = [ln for ln in capsys.readouterr().err.splitlines() if "untrained" not in ln]  # MODEL is untrained
        assert err == ["affectvlm: error: up (+y) and front (-y) must be different axes"]
    with pytest.raises(SystemExit):
        cli.main(["predict", "x.obj", "--frames", "0"])
    # an --out that cannot be written is said before any scoring or rendering (it was a traceback, or one line
    # after all the work); the model is not even loaded
    (tmp_path / "afile").write_text("x")
    (tmp_path / "d.csv").mkdir()
    capsys.readouterr()
    for cmd, says in ((["predict", str(scans / "face.obj"), "--model", "NoSuchNet", "--out", str(tmp_path / "d.csv")],
                       "is a folder; give a file's name"),
                      (["predict", str(scans / "face.obj"), "--model", "NoSuchNet", "--out",
                        str(tmp_path / "afile" / "r.csv")], f"{tmp_path / 'afile'} is a file, not a folder"),
                      (["render", str(scans / "face.obj"), "--out", str(tmp_path / "afile")], "is a file, not a folder"),
                      (["render", str(scans / "face.obj"), "--out", str(tmp_path / "afile" / "v")], "is a file")):
        assert cli.main(cmd) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and err.startswith("affectvlm: error: --out ") and says in err, err
    # an existing results file is replaced, an existing output folder written into
    (tmp_path / "old.csv").write_text("old\n")
    assert cli.main(["predict", str(scans / "face.obj"), *MODEL, "--out", str(tmp_path / "old.csv")]) == 0
    assert (tmp_path / "old.csv").read_text().startswith("file,frame")
    for _ in range(2):
        assert cli.main(["render", str(scans / "face.obj"), "--out", str(tmp_path / "v2"), "--views", "0"]) == 0


def test_forwarded_subcommands(monkeypatch):
    import types

    got = {}
    fake = types.SimpleNamespace(main=lambda argv: got.setdefault("argv", argv) and 0)
    monkeypatch.setitem(sys.modules, "affectvlm.synth.cli", fake)
    assert cli.main(["synth", "--n", "3", "out"]) == 0
    assert got["argv"] == ["--n", "3", "out"]


def test_predict_options_precision_workers_fps(capsys, scans):
    assert cli.build_parser().parse_args(["predict", "x.obj"]).device == "auto"
    base = ["predict", str(scans / "seq"), *MODEL, "--format", "json", "--no-progress"]
    assert cli.main([*base, "--workers", "0"]) == 0
    serial = json.loads(capsys.readouterr().out)
    assert cli.main([*base, "--workers", "2", "--fps", "10"]) == 0
    piped = json.loads(capsys.readouterr().out)
    assert [r["timestamp"] for r in serial] == [0.0, 0.04, 0.08, None]
    assert [r["timestamp"] for r in piped] == [0.0, 0.1, 0.2, None]
    assert [r["happiness"] for r in piped] == [r["happiness"] for r in serial]  # same numbers, threads or not
    assert cli.main([*base, "--precision", "bf16"]) == 0
    bf16 = json.loads(capsys.readouterr().out)
    assert all(r["success"] == 1 for r in bf16)
    assert abs(bf16[0]["happiness"] - serial[0]["happiness"]) < 0.02
    # 1e-320 frames a second would stamp frames at infinity, which JSON cannot hold
    for bad in (["--workers", "-1"], ["--fps", "0"], ["--fps", "1e-320"], ["--fps", "inf"], ["--precision", "fp8"]):
        with pytest.raises(SystemExit):
            cli.main([*base, *bad])
        assert "--" in capsys.readouterr().err


def test_predict_no_mirror(capsys, scans):
    from affectvlm.model import load_model
    from affectvlm.predict import predict

    base = ["predict", str(scans / "face.obj"), *MODEL, "--format", "json", "--no-progress", "--workers", "0"]
    assert cli.main(base) == 0
    both = json.loads(capsys.readouterr().out)[0]
    assert cli.main([*base, "--no-mirror"]) == 0
    plain = json.loads(capsys.readouterr().out)[0]
    m = load_model("AffectVLM-Test", cache=False)
    lib = {mi: predict([str(scans / "face.obj")], m, workers=0, mirror=mi)[0] for mi in (True, False)}
    for k in ("neutral", "happiness", "anger"):
        assert both[k] == pytest.approx(lib[True][k], abs=1e-6) and plain[k] == pytest.approx(lib[False][k], abs=1e-6)
    assert max(abs(both[k] - plain[k]) for k in ("neutral", "happiness", "anger")) > 1e-5


def test_predict_prior(capsys, scans, tmp_path):
    from affectvlm.prior import MIN_ROWS

    base = [*MODEL, "--format", "json", "--no-progress", "--views", "0"]
    assert cli.main(["predict", str(scans / "face.obj"), *base]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert cli.main(["predict", str(scans / "face.obj"), *base, "--prior", "uniform"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out) == plain  # too few scans to match: as scored, and said so
    assert "warning: --prior" in out.err and f"at least {MIN_ROWS}" in out.err
    same = [str(scans / "face.obj")] * MIN_ROWS  # one face, many times: a uniform prior makes each row uniform
    res = tmp_path / "m.csv"
    assert cli.main(["predict", *same, *base, "--prior", "uniform", "--out", str(res)]) == 0
    assert f"matched over {MIN_ROWS} scans" in capsys.readouterr().err
    rows = list(csv.DictReader(res.open()))
    assert len(rows) == MIN_ROWS and all(abs(float(r["anger"]) - 1 / 7) < 1e-3 for r in rows)
    assert cli.main(["predict", str(scans / "face.obj"), *base, "--prior", "joy=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("affectvlm: error: --prior") and "\n" not in err
    assert cli.main(["predict", str(scans / "face.obj"), *base, "--prior-by", "folder"]) == 2
    assert "--prior-by folder needs --prior" in capsys.readouterr().err
    for subject, n in (("F001", 7), ("F002", 7), ("F003", 3)):  # BU-3DFE-like subject folders
        (tmp_path / subject).mkdir()
        for c in "abcdefg"[:n]:
            (tmp_path / subject / f"{subject}_{c}.obj").write_bytes((scans / "face.obj").read_bytes())
    res = tmp_path / "f.json"
    dirs = [str(tmp_path / s) for s in ("F001", "F002", "F003")]
    assert cli.main(["predict", *dirs, *base, "--prior", "uniform", "--prior-by", "folder", "--out", str(res)]) == 0
    assert "by folder: matched 14 scans in 2 folder(s); 3 in 1 folder(s)" in capsys.readouterr().err
    rows = json.loads(res.read_text())
    assert [abs(r["anger"] - 1 / 7) < 1e-3 for r in rows] == [True] * 14 + [False] * 3
    # --neutral: each scan of a folder against the folder's neutral scan; the neutral scan keeps its row
    subj = tmp_path / "F0001"
    subj.mkdir()
    for name in ("F0001_NE00WH_F3D.obj", "F0001_HA04WH_F3D.obj"):
        (subj / name).write_bytes((scans / "face.obj").read_bytes())
    assert cli.main(["predict", str(subj), *base, "--neutral", "*NE00*", "--out", str(tmp_path / "r.json")]) == 0
    assert ("--neutral *NE00*: scored 1 scans against the neutral scans (*NE00*) of 1 subject(s)"
            in capsys.readouterr().err)
    by_name = {PurePath(r["file"]).name: r for r in json.loads((tmp_path / "r.json").read_text())}
    ref, other = by_name["F0001_NE00WH_F3D.obj"], by_name["F0001_HA04WH_F3D.obj"]
    assert ref["neutral"] == pytest.approx(plain[0]["neutral"], abs=1e-6) and other["neutral"] == 0.0
    # by default (auto) BU-3DFE's NE00 scan is the folder's reference, and it says so; none scores each scan alone
    assert cli.main(["predict", str(subj), *base, "--out", str(tmp_path / "a.json")]) == 0
    assert "--neutral auto: scored 1 scans against the neutral scans (BU-3DFE's NE00" in capsys.readouterr().err
    assert json.loads((tmp_path / "a.json").read_text()) == json.loads((tmp_path / "r.json").read_text())
    assert cli.main(["predict", str(subj), *base, "--neutral", "none", "--out", str(tmp_path / "x.json")]) == 0
    assert "--neutral" not in capsys.readouterr().err
    alone = {PurePath(r["file"]).name: r for r in json.loads((tmp_path / "x.json").read_text())}
    assert alone["F0001_HA04WH_F3D.obj"]["neutral"] == pytest.approx(plain[0]["neutral"], abs=1e-6)
    # a checkpoint whose own validation subjects read better scan by scan (neutral_reference: false, written by the
    # trainer) is scored alone under auto, and says so; a pattern still rescores
    from affectvlm.model import load_model, save_checkpoint
    from affectvlm.model.checkpoint import update_meta

    ck = save_checkpoint(load_model("AffectVLM-Test", cache=False), tmp_path / "ck", extra={"trained": True})
    own = ["--model", str(ck), *base[2:]]
    assert cli.main(["predict", str(subj), *own, "--out", str(tmp_path / "c1.json")]) == 0
    assert "--neutral auto: scored 1 scans against" in capsys.readouterr().err
    update_meta(ck, neutral_reference=False)
    assert cli.main(["predict", str(subj), *own, "--out", str(tmp_path / "c2.json")]) == 0
    err = capsys.readouterr().err
    assert "--neutral auto: scored each scan alone: this model's validation subjects" in err
    assert "scans against" not in err
    assert cli.main(["predict", str(subj), *own, "--neutral", "none", "--out", str(tmp_path / "c3.json")]) == 0
    capsys.readouterr()
    assert json.loads((tmp_path / "c2.json").read_text()) == json.loads((tmp_path / "c3.json").read_text())
    assert json.loads((tmp_path / "c2.json").read_text()) != json.loads((tmp_path / "c1.json").read_text())
    assert cli.main(["predict", str(subj), *own, "--neutral", "*_NE00*"]) == 0
    assert "scored 1 scans against the neutral scans (*_NE00*)" in capsys.readouterr().err
    update_meta(ck, neutral_reference="no")
    assert cli.main(["predict", str(subj), *own]) == 2
    assert "neutral_reference must be true or false" in capsys.readouterr().err
    # Bosphorus (real .bnt files): auto rescores the emotion scans against the subject's N_N scan, not its pose scans
    from fixtures_formats import bnt_face_grid

    from affectvlm.io.bnt import write_bnt

    bos = tmp_path / "bs000"
    bos.mkdir()
    xyz, background = bnt_face_grid(60, 48)
    for name in ("bs000_N_N_0", "bs000_E_HAPPY_0", "bs000_YR_R10_0"):
        write_bnt(bos / f"{name}.bnt", xyz, background=background, image_name=f"{name}.png")
    assert cli.main(["predict", str(bos), *base, "--out", str(tmp_path / "b.json")]) == 0
    err = capsys.readouterr().err
    assert "scored 1 scans against the neutral scans (BU-3DFE's NE00 or Bosphorus's N_N) of 1" in err
    got = {PurePath(r["file"]).stem: r for r in json.loads((tmp_path / "b.json").read_text())}
    assert got["bs000_E_HAPPY_0"]["neutral"] == 0.0 and got["bs000_N_N_0"]["neutral"] > 0
    assert got["bs000_YR_R10_0"]["neutral"] == pytest.approx(got["bs000_N_N_0"]["neutral"], abs=1e-6)
    # with --prior, scans are scored alone unless --neutral is given (a prior counts on their neutral mass)
    assert cli.main(["predict", str(subj), *base, "--prior", "uniform", "--prior-by", "folder"]) == 0
    assert "--neutral" not in capsys.readouterr().err
    assert cli.main(["predict", str(subj), *base, "--neutral", "*XX99*"]) == 0
    assert "warning: --neutral *XX99*: no scan's name matches" in capsys.readouterr().err
    assert cli.main(["predict", str(subj), *base, "--neutral", "*"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("affectvlm: error: --neutral") and "\n" not in err
    # without --prior, a lopsided set (one face scored again and again) gets one note pointing at it
    from affectvlm.prior import HINT_ROWS

    many = [str(scans / "face.obj")] * HINT_ROWS
    assert cli.main(["predict", *many, *base, "--out", str(tmp_path / "n.csv")]) == 0
    notes = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("affectvlm: note:")]
    assert len(notes) == 1 and f"these {HINT_ROWS} scans are lopsided" in notes[0] and "--prior uniform" in notes[0]


def test_predict_subject_mean(capsys, tmp_path):
    """BU-3DFE subjects with 7+ scans of 4+ named expressions are scored relative to their own mean (the neutral
    reference then leaves them alone); a smaller subject is referenced to its neutral scan as before."""
    import numpy as np

    rng = np.random.default_rng(0)
    base = [*MODEL, "--no-progress", "--views", "0,-30", "--workers", "0"]
    codes = ["NE00", "HA04", "SA04", "SU04", "FE04", "DI04", "AN04"]
    for subject, n in (("F0001", 7), ("F0002", 6)):
        (tmp_path / subject).mkdir()
        for code in codes[:n]:
            m = face_like_mesh(32)
            v = m.vertices * (1 + 0.15 * rng.normal(size=3)) + 0.02 * rng.normal(size=m.vertices.shape)
            trimesh.Trimesh(v, m.faces, process=False).export(tmp_path / subject / f"{subject}_{code}WH_F3D.obj")
    dirs = [str(tmp_path / s) for s in ("F0001", "F0002")]
    assert cli.main(["predict", *dirs, *base, "--subject-mean", "none", "--neutral", "none",
                     "--out", str(tmp_path / "plain.json")]) == 0
    capsys.readouterr()
    assert cli.main(["predict", *dirs, *base, "--out", str(tmp_path / "auto.json")]) == 0
    err = capsys.readouterr().err
    assert "--subject-mean auto: scored 7 inputs relative to their subject's mean (1 subject(s)); 1 subject(s)" in err
    assert "--neutral auto: scored 5 scans against the neutral scans" in err  # F0002's, not F0001's
    plain = {PurePath(r["file"]).stem: r for r in json.loads((tmp_path / "plain.json").read_text())}
    auto = {PurePath(r["file"]).stem: r for r in json.loads((tmp_path / "auto.json").read_text())}
    classes = ["neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger"]
    first = [k for k in plain if k.startswith("F0001")]
    L = np.log([[plain[k][c] for c in classes] for k in first])
    z = L - L.mean(0)  # the test model stores no training mean: nothing added back
    want = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    assert np.allclose([[auto[k][c] for c in classes] for k in first], want, atol=1e-5)
    assert [auto[k]["label"] for k in first] == [classes[i] for i in want.argmax(1)]
    assert auto["F0002_HA04WH_F3D"]["neutral"] == 0.0  # referenced to its neutral scan
    assert auto["F0002_NE00WH_F3D"] == plain["F0002_NE00WH_F3D"]
    # none: F0001 is referenced to its neutral scan as before; with --prior it is off unless asked
    assert cli.main(["predict", *dirs, *base, "--subject-mean", "none", "--out", str(tmp_path / "none.json")]) == 0
    err = capsys.readouterr().err
    assert "--subject-mean" not in err and "--neutral auto: scored 11 scans" in err
    assert cli.main(["predict", *dirs, *base, "--prior", "uniform", "--out", str(tmp_path / "p.json")]) == 0
    assert "--subject-mean" not in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["predict", *dirs, *base, "--subject-mean", "sometimes"])
    assert "--subject-mean: invalid choice" in capsys.readouterr().err


def test_render_of_a_sequence_with_an_unreadable_frame_renders_the_others(tmp_path, capsys):
    for i in range(3):
        write_vrml(tmp_path / "seq" / f"{i:03d}.wrl", face_like_mesh(16, smile=i / 2, seed=i, textured=False))
    (tmp_path / "seq" / "001.wrl").write_text("#VRML V2.0 utf8\nShape { geometry IndexedFaceSet { coord Coord")
    assert cli.main(["render", str(tmp_path / "seq"), "--out", str(tmp_path / "v"), "--views", "0", "--size", "32",
                     "--up", "+y", "--front", "+z"]) == 1  # toy faces' frames are flagged: said, but not here
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f"affectvlm: {tmp_path / 'seq' / '001.wrl'}: ") and len(err) == 2, err
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["seq_f0000_v0.png", "seq_f0002_v0.png"]


def test_render_reads_a_folder_as_predict_does(tmp_path, capsys):
    """A BU-3DFE subject folder was read as one sequence and failed with "two files for frame 3" (the 3 of F3D)."""
    subj = tmp_path / "F0001"
    for i, code in enumerate(("AN03", "HA04")):
        write_vrml(subj / f"F0001_{code}WH_F3D.wrl", face_like_mesh(16, smile=i, seed=i, textured=False))
    (subj / "F0001_SA04WH_F3D.wrl").write_text("not a scan")
    for i in range(2):  # a sequence folder beside the scans: its frames
        write_vrml(subj / "Happy" / f"{i:03d}.wrl", face_like_mesh(16, smile=i, seed=i, textured=False))
    rc = cli.main(["render", str(subj), "--out", str(tmp_path / "v"), "--views", "0", "--size", "32"])
    err = capsys.readouterr().err
    assert rc == 1 and "F0001_SA04WH_F3D.wrl: not a VRML 2.0 file" in err
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == [
        "F0001_AN03WH_F3D_v0.png", "F0001_HA04WH_F3D_v0.png", "Happy_f0000_v0.png", "Happy_f0001_v0.png"]


def test_render_says_when_a_scans_texture_is_missing(tmp_path, capsys):
    write_vrml(tmp_path / "F0001_HA04WH_F3D.wrl", face_like_mesh(16, textured=True))
    for f in tmp_path.iterdir():
        if f.suffix != ".wrl":
            f.unlink()
    assert cli.main(["render", str(tmp_path / "F0001_HA04WH_F3D.wrl"), "--out", str(tmp_path / "v"), "--size", "32",
                     "--views", "0"]) == 0
    err = capsys.readouterr().err
    assert f"note: {tmp_path / 'F0001_HA04WH_F3D.wrl'}: texture " in err and "not found beside the file" in err, err


def test_render_never_writes_two_images_to_one_name(tmp_path, capsys):
    """A scan named seq_f0000.wrl beside a sequence seq.zip: both wrote seq_f0000_v0.png ('wrote 3 images', 2 left)."""
    import zipfile

    d = tmp_path / "in"
    write_vrml(d / "seq_f0000.wrl", face_like_mesh(16, textured=False))
    with zipfile.ZipFile(d / "seq.zip", "w") as zf:
        for i in range(2):
            write_vrml(tmp_path / f"{i:03d}.wrl", face_like_mesh(16, smile=i, seed=i, textured=False))
            zf.write(tmp_path / f"{i:03d}.wrl", f"{i:03d}.wrl")
    assert cli.main(["render", str(d), "--out", str(tmp_path / "v"), "--views", "0", "--size", "32"]) == 0
    names = sorted(p.name for p in (tmp_path / "v").iterdir())
    assert len(names) == 3 and "seq_f0000_v0.png" in names and "wrote 3 images" in capsys.readouterr().err, names


def test_a_bad_frames_line_names_its_frame_once(tmp_path, capsys):
    """'seq (frame 1): frame 1: ...' and a failed sequence's '(frame sequence)'."""
    for i in range(3):
        write_vrml(tmp_path / "seq" / f"{i:03d}.wrl", face_like_mesh(16, smile=i / 2, seed=i, textured=False))
    (tmp_path / "seq" / "001.wrl").write_text("#VRML V2.0 utf8\nShape { geometry IndexedFaceSet { coord Coord")
    assert cli.main(["predict", str(tmp_path / "seq"), "--model", "AffectVLM-Test", "--no-progress",
                     "--out", str(tmp_path / "r.csv")]) == 1
    lines = [x for x in capsys.readouterr().err.splitlines() if "001" in x or "frame 1" in x]
    assert lines and all(x.count("frame 1") == 1 and x.count("001.wrl") == 1 for x in lines), lines  # and its file


def test_every_option_of_every_command_says_what_it_does():
    import argparse

    from affectvlm.synth import cli as synth_cli
    from affectvlm.train import evaluate, frame
    from affectvlm import trainconfig

    def bare(p: argparse.ArgumentParser, name: str):
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for sub_name, sub in a.choices.items():
                    yield from bare(sub, f"{name} {sub_name}")
            elif a.option_strings and not a.help:
                yield f"{name} {a.option_strings[0]}"

    parsers = {"affectvlm": cli.build_parser(), "train": trainconfig.build_parser(), "eval": evaluate.build_parser(),
               "synth": synth_cli.build_parser(), "frame": frame.get_args_parser()}
    assert [b for name, p in parsers.items() for b in bare(p, name)] == []
    import re

    shown = re.sub(r"\s+", " ", trainconfig.build_parser().format_help())
    assert f"passes over the training subjects (default {trainconfig.TrainConfig.epochs})" in shown


def test_a_file_name_that_is_not_utf8_is_written_as_valid_utf8(scans, tmp_path):
    """Linux file names are bytes; one from a Latin-1 system reaches Python as lone surrogates, which no UTF-8
    writer takes: the CSV, the JSON and a strict UTF-8 terminal all get \\xff instead of a traceback."""
    name = os.fsdecode(b"caf\xe9.obj")
    shutil.copy(scans / "face.obj", tmp_path / name)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONIOENCODING="utf-8:strict",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    for out in ("r.csv", "r.json"):
        done = subprocess.run([sys.executable, "-m", "affectvlm", "predict", name, *MODEL, "--views", "0",
                               "--out", out], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
        text = (tmp_path / out).read_bytes().decode("utf-8")  # strict: valid UTF-8
        assert "caf\\\\xe9.obj" in text if out.endswith("json") else "caf\\xe9.obj" in text
    done = subprocess.run([sys.executable, "-m", "affectvlm", "predict", name, *MODEL, "--views", "0", "--format",
                           "csv"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "caf\\xe9.obj" in done.stdout, done.stderr[-2000:]


def test_render_that_cannot_write_its_images_is_one_line(tmp_path, capsys):
    long = tmp_path / ("a" * 245 + ".obj")  # the scan's name fits; the image's (+ "_shade_v0.png.tmp") does not
    m = face_like_mesh(16, textured=False)
    trimesh.Trimesh(m.vertices, m.faces, process=False).export(long)
    code = cli.main(["render", str(long), "--out", str(tmp_path / "v"), "--views", "0", "--size", "32",
                     "--maps", "shade,depth", "--up", "+y", "--front", "+z"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cannot write the images of" in err[0] and "too long" in err[0], err


def test_a_mistyped_option_is_named_by_its_subcommand_with_the_nearest_option(capsys):
    for argv, says in ((["predict", "--modle", "x", "f.wrl"], "affectvlm predict: error: unrecognized arguments: "
                        "--modle (did you mean --model?)"),
                       (["models", "--jsn"], "affectvlm models: error: unrecognized arguments: --jsn (did you mean "
                        "--json?)")):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and says in err and f"usage: affectvlm {argv[0]}" in err, err


def test_an_uncertain_sequence_frame_is_said_once_not_per_frame(scans, tmp_path, capsys):
    out = tmp_path / "s.json"
    cli.main(["predict", str(scans / "seq"), *MODEL, "--views", "0", "--out", str(out), "--no-progress"])
    rows = json.loads(out.read_text())
    if not rows[-1]["orientation_flagged"]:
        pytest.skip("this sequence's frame is not flagged here")
    assert all(r["orientation_flagged"] for r in rows)  # the frame rows carry the sequence's frame
    assert capsys.readouterr().err.count("face frame uncertain") == 1


def test_render_says_a_flagged_face_frame_as_predict_does(tmp_path, capsys):
    from scipy.spatial.transform import Rotation

    from affectvlm.io import load_mesh

    scan = load_mesh(Path(__file__).resolve().parents[1] / "affectvlm/data/samples/F0001_HA04WH_F3D.wrl",
                     texture=False)
    turned = scan.vertices @ Rotation.from_euler("xyz", (50, 40, 0), degrees=True).as_matrix().T
    for name, v in (("upright.obj", scan.vertices), ("turned.obj", turned)):
        trimesh.Trimesh(v, scan.faces, process=False).export(tmp_path / name)
    said = {}
    for name in ("upright.obj", "turned.obj"):
        code = cli.main(["render", str(tmp_path / name), "--out", str(tmp_path / "v"), "--views", "0", "--size", "32"])
        said[name] = [line for line in capsys.readouterr().err.splitlines() if "face frame uncertain" in line]
        assert code == 0
    assert said["upright.obj"] == []
    assert len(said["turned.obj"]) == 1 and "turned.obj" in said["turned.obj"][0], said


def test_a_folder_read_as_a_sequence_is_said(scans, tmp_path, capsys):
    """Three people's scans named patient1..3 are one 4D sequence by their names; the rows alone did not say so."""
    folder = tmp_path / "patients"
    folder.mkdir()
    for k, f in enumerate(sorted((scans / "seq").glob("*.wrl"))):
        (folder / f"patient{k + 1}.wrl").write_bytes(f.read_bytes())
    assert cli.main(["predict", str(folder), *MODEL, "--views", "0", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"note: 1 input read as 4D sequence (a folder or zip of meshes whose names differ only by a number): {folder}" in err
    assert cli.main(["predict", *map(str, sorted(folder.iterdir())), *MODEL, "--views", "0", "--no-progress"]) == 0
    assert "read as 4D" not in capsys.readouterr().err


def test_views_without_mirrors_say_the_mirror_averaging_is_off(scans, capsys):
    scan = str(scans / "F0001_HA04WH_F3D.wrl")
    for views, said in (("0,30", True), ("0,-30,30", False), ("20:10,-20:10", False), ("20:10,-20:0", True)):
        assert cli.main(["predict", scan, *MODEL, "--views", views, "--no-progress"]) == 0
        assert ("not averaged with their mirror images" in capsys.readouterr().err) is said, views
    assert cli.main(["predict", scan, *MODEL, "--views", "0,30", "--no-mirror", "--no-progress"]) == 0
    assert "mirror images" not in capsys.readouterr().err

