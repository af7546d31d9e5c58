"""The set's face frame for flagged scans (affectvlm.setframe and predict's use of it)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import affectvlm.geometry as geometry
import affectvlm.render.prepare as render_prepare
from affectvlm.model import load_model
from affectvlm.predict import predict
from affectvlm.results import FaceFrame
from affectvlm.setframe import MIN_FRAMES, SetFrame, consensus, takes_set_up

SAMPLE = Path(__file__).resolve().parents[1] / "affectvlm" / "data" / "samples" / "F0001_HA04WH_F3D.wrl"


def frame(up: str = "+y", front: str = "+z", flagged: bool = False) -> FaceFrame:
    return FaceFrame(up, front, 0.9 if flagged else 1.0, flagged, detected=("front", "up"))


def test_consensus_needs_enough_frames_that_mostly_agree():
    assert consensus([frame()] * (MIN_FRAMES - 1) + [None] * 5) is None
    got = consensus([frame()] * 7 + [frame("-y", flagged=True)] * 2 + [None])
    assert got == SetFrame("+y", "+z", 7, 9)
    assert consensus([frame()] * 6 + [frame("+x", "-y")] * 3) is None  # 6 of 9 is under three quarters
    tilted = FaceFrame("[0.1, 0.99, 0.0]", "+z", 0.5, True, detected=("front", "up"))
    assert consensus([tilted] * 9) is None  # only an axis-aligned frame is a set's


def test_only_a_flagged_scan_facing_the_sets_way_takes_its_up():
    s = SetFrame("+y", "+z", 20, 24)
    assert takes_set_up(frame("-y", flagged=True), s)
    assert takes_set_up(frame("+x", flagged=True), s)  # rolled 90 degrees
    assert not takes_set_up(frame("-y"), s)  # confident: its own
    assert not takes_set_up(frame("+y", "+x", flagged=True), s)  # faces elsewhere: a turned head is not forced
    assert not takes_set_up(frame("-y", flagged=True), None)
    given = FaceFrame("-y", "+z", None, True, detected=())
    assert not takes_set_up(given, s)


@pytest.fixture(scope="module")
def model():
    from affectvlm.render import RenderSettings

    m = load_model("AffectVLM-Test", cache=False)
    m.render = RenderSettings(size=48, views="0")
    return m


def _misread(monkeypatch, name: str, up: str, front: str) -> None:
    """The frame network reads scan ``name`` as (up, front), flagged (as it does some scans of unseen faces)."""
    real = geometry.canonicalise

    def fake(mesh, *, up=None, front=None, **kw):
        if mesh.source.endswith(name) and up is None and front is None:
            c = real(mesh, up=wrong[0], front=wrong[1], **kw)
            c.meta["canonical"].update(detected=["front", "up"], confidence={"front": 0.9, "up": 0.9},
                                       low_confidence=True)
            return c
        return real(mesh, up=up, front=front, **kw)

    wrong = (up, front)
    monkeypatch.setattr(geometry, "canonicalise", fake)
    monkeypatch.setattr(render_prepare, "canonicalise", fake)  # the renderer's own import of it


@pytest.mark.parametrize("n, wrong, taken", [(10, ("-y", "+z"), True), (10, ("+y", "+x"), False),
                                             (MIN_FRAMES - 1, ("-y", "+z"), False)])
def test_a_flagged_upside_down_scan_takes_the_frame_most_of_its_set_reads(tmp_path, monkeypatch, model, n, wrong,
                                                                          taken):
    for i in range(n):
        shutil.copy(SAMPLE, tmp_path / f"scan_{chr(97 + i)}.wrl")  # letters: not a sequence
    _misread(monkeypatch, "scan_d.wrl", *wrong)
    rows = {Path(r["file"]).name: r for r in predict(tmp_path, model)}
    odd = rows["scan_d.wrl"]
    assert odd["orientation_flagged"] is True and odd["success"] == 1
    if taken:
        assert (odd["orientation_up"], odd["orientation_front"], odd["orientation_source"]) == ("+y", "+z", "set")
        assert rows["scan_e.wrl"]["label"] == odd["label"]  # the same scan, now rendered the same way
    else:
        assert (odd["orientation_up"], odd["orientation_front"], odd["orientation_source"]) == (*wrong, "scan")
    assert all(r["orientation_source"] == "scan" and r["orientation_up"] == "+y" for k, r in rows.items()
               if k != "scan_d.wrl")
    given = predict([tmp_path / "scan_d.wrl"], model, up="+y", front="+z")[0]
    assert given["orientation_source"] == "given"


def test_predict_says_which_scans_took_the_sets_frame(tmp_path, monkeypatch, capsys):
    from affectvlm import cli

    for i in range(10):
        shutil.copy(SAMPLE, tmp_path / f"scan_{chr(97 + i)}.wrl")
    _misread(monkeypatch, "scan_d.wrl", "-y", "+z")
    assert cli.main(["predict", str(tmp_path), "--model", "AffectVLM-Test", "--views", "0", "--no-progress",
                     "--adapt", "none", "--out", str(tmp_path / "r.csv")]) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "face frame uncertain" in line]
    assert len(said) == 1 and "scan_d.wrl" in said[0] and "took the set's (up +y, front +z)" in said[0], said


def test_the_trainers_render_cache_orients_a_set_as_predict_does(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import numpy as np

    from affectvlm.render import RenderSettings
    from affectvlm.train.cache import RenderCache, set_frame_of

    text = SAMPLE.read_text()
    files = []
    for i in range(10):  # one scan, ten files that differ (the cache keys files by content)
        files.append(tmp_path / f"scan_{chr(97 + i)}.wrl")
        files[-1].write_text(text + f"\n# copy {i}\n")
    _misread(monkeypatch, "scan_d.wrl", "-y", "+z")
    settings = RenderSettings(size=32, views="0", crop=True)
    found = set_frame_of([SimpleNamespace(path=f) for f in files], settings)
    assert found == SetFrame("+y", "+z", 9, 10)
    plain = RenderCache(tmp_path / "plain", settings)
    taking = RenderCache(tmp_path / "set", settings, set_frame=found)
    d, e = str(files[3]), str(files[4])
    assert not np.array_equal(plain.get(d), plain.get(e))  # read upside down, it renders upside down
    assert np.array_equal(taking.get(d), taking.get(e))
    assert taking.key(e) != plain.key(e)  # entries of a set with a frame are its own


def test_a_callers_readers_are_read_once_not_sampled_for_the_sets_frame(model):
    data = SAMPLE.read_bytes()
    calls: dict[str, int] = {}

    def reader(name: str):
        def read() -> bytes:
            calls[name] = calls.get(name, 0) + 1
            return data if calls[name] == 1 else b""  # a stream: empty once read
        return read

    names = [f"scan_{chr(97 + i)}.wrl" for i in range(MIN_FRAMES + 1)]
    rows = predict([(n, reader(n)) for n in names], model)
    assert [r["success"] for r in rows] == [1] * len(names) and set(calls.values()) == {1}


def test_render_of_a_folder_takes_the_sets_frame_as_predict_does(tmp_path, monkeypatch, capsys):
    from PIL import Image

    from affectvlm import cli

    for i in range(10):
        shutil.copy(SAMPLE, tmp_path / f"scan_{chr(97 + i)}.wrl")
    _misread(monkeypatch, "scan_d.wrl", "-y", "+z")
    assert cli.main(["render", str(tmp_path), "--out", str(tmp_path / "v"), "--views", "0", "--size", "48",
                     "--no-texture"]) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "face frame uncertain" in line]
    assert len(said) == 1 and "scan_d.wrl" in said[0] and "took the set's (up +y, front +z)" in said[0], said
    import numpy as np

    d, e = (np.asarray(Image.open(tmp_path / "v" / f"scan_{c}_v0.png")) for c in "de")
    assert np.array_equal(d, e)


def test_render_obeys_one_axis_given_alone(tmp_path):
    import numpy as np
    from PIL import Image

    from affectvlm import cli

    shots = {}
    # "--up -y" as two words: argparse alone took "-y" for an option and stopped
    for tag, extra in (("found", []), ("up", ["--up=+y"]), ("down", ["--up", "-y"]), ("back", ["--front", "-z"])):
        assert cli.main(["render", str(SAMPLE), "--out", str(tmp_path / tag), "--views", "0", "--size", "48",
                         "--no-texture", *extra]) == 0
        shots[tag] = np.asarray(Image.open(next((tmp_path / tag).glob("*.png"))), dtype=float)
    assert np.abs(shots["found"] - shots["up"]).max() == 0
    assert np.abs(shots["found"] - shots["down"]).max() > 100 and np.abs(shots["found"] - shots["back"]).max() > 100


def test_readers_that_may_be_read_again_are_sampled_like_files(monkeypatch, model):
    from affectvlm.app.batch import collect_batch, zip_bytes
    from affectvlm.inputs import Reread

    names = [f"scan_{chr(97 + i)}.wrl" for i in range(10)]
    upload = collect_batch([("scans.zip", zip_bytes([(n, SAMPLE.read_bytes()) for n in names]))])
    assert all(isinstance(reader, Reread) for _, reader in upload.inputs)  # the Batch page's zip members
    _misread(monkeypatch, "scan_d.wrl", "-y", "+z")
    rows = {r["file"].rsplit(":", 1)[-1]: r for r in predict(list(upload.inputs), model)}
    assert (rows["scan_d.wrl"]["orientation_up"], rows["scan_d.wrl"]["orientation_source"]) == ("+y", "set")


def test_lines_of_scans_that_took_the_sets_frame_do_not_use_up_the_ten(tmp_path, monkeypatch, capsys):
    from affectvlm import cli

    real = geometry.canonicalise

    def unsure(mesh, *, up=None, front=None, **kw):
        if up is None and front is None and mesh.source.endswith("scan_a.wrl"):
            c = real(mesh, up="-y", front="+z", **kw)
            c.meta["canonical"].update(detected=["front", "up"], confidence={"front": 0.9, "up": 0.9})
        else:
            c = real(mesh, up=up, front=front, **kw)
        c.meta["canonical"]["low_confidence"] = bool(c.meta["canonical"].get("detected"))
        return c

    monkeypatch.setattr(geometry, "canonicalise", unsure)
    for i in range(14):
        shutil.copy(SAMPLE, tmp_path / f"scan_{chr(97 + i)}.wrl")
    assert cli.main(["predict", str(tmp_path), "--model", "AffectVLM-Test", "--views", "0", "--no-progress",
                     "--adapt", "none", "--out", str(tmp_path / "r.csv")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert sum("took the set's" in line for line in err) == 1  # scan_a, said first
    assert sum("face frame uncertain (up" in line for line in err) == 10
    assert any("... and 3 more flagged face frames (13 in all" in line for line in err), err
