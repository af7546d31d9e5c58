"""The app's own package: the core never imports it, typed helpers the pages call, and the model cache
that follows re-exported weights."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from affectvlm.app import batch, launch, state, trainform, uploads
from affectvlm.app.settings import load_settings
from affectvlm.app.sidebar import ModelChoice, choice_from_fields, weights_stamp
from affectvlm.errors import ConfigError, InputError
from affectvlm.limits import default_limits

REPO = Path(__file__).resolve().parent.parent
CORE_CHECK = """
import importlib, json, sys
names, forbidden = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for name in names:
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules if any(m == f or m.startswith(f + '.') for f in forbidden))))
"""


def imported(names: list[str], forbidden: list[str]) -> list[str]:
    """The modules under ``forbidden`` that importing ``names`` in a fresh interpreter loads."""
    p = subprocess.run([sys.executable, "-c", CORE_CHECK, json.dumps(names), json.dumps(forbidden)],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def core_modules() -> list[str]:
    """Every module of the library except the app package, the trainer and ``__main__`` (found on disk:
    ``pkgutil.walk_packages`` would import the packages it walks)."""
    root = REPO / "affectvlm"
    out = []
    for p in sorted(root.rglob("*.py")):
        parts = p.relative_to(root.parent).with_suffix("").parts
        if parts[1] in ("app", "train", "__main__") or "__pycache__" in parts:
            continue
        out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def test_core_never_imports_the_app_the_trainer_or_streamlit():
    names = core_modules()
    assert "affectvlm.predict" in names and "affectvlm.trainconfig" in names and len(names) > 20
    assert imported(names, ["streamlit", "affectvlm.app", "affectvlm.train"]) == []


def test_the_app_package_only_calls_the_library():
    names = [f"affectvlm.app.{p.stem}" for p in sorted((REPO / "affectvlm" / "app").glob("*.py"))
             if p.stem not in ("__init__", "widgets")]  # widgets is the one module that uses Streamlit
    assert "affectvlm.app.trainform" in names
    assert imported(names, ["affectvlm.train"]) == []


def test_receive_upload_reuses_and_cleans_its_folder(tmp_path):
    first = uploads.receive_upload([("a.obj", b"v 0 0 0\n")], root=tmp_path)
    assert first.plan.kind == "scan" and (first.workdir / "a.obj").is_file()
    assert uploads.receive_upload([("a.obj", b"v 0 0 0\n")], first, root=tmp_path) is first  # same files
    second = uploads.receive_upload([("b.obj", b"v 1 0 0\n")], first, root=tmp_path)
    assert not first.workdir.exists() and second.workdir.exists() and second.signature != first.signature
    with pytest.raises(InputError, match="notes.txt"):
        uploads.receive_upload([("notes.txt", b"x")], second, root=tmp_path)
    assert not second.workdir.exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # a refused upload leaves no folder behind


def test_load_input_names_the_users_file(tmp_path):
    (tmp_path / "x.obj").write_text("not a mesh")
    with pytest.raises(InputError) as e:
        uploads.load_input("scan", tmp_path / "x.obj", "my scan.obj")
    assert str(e.value).startswith("my scan.obj:") and str(tmp_path) not in str(e.value)


def test_kept_recomputes_only_for_a_new_key():
    calls: list[int] = []
    memo: dict = {}

    def compute() -> int:
        calls.append(1)
        return len(calls)

    a = state.kept(memo, "slot", ("k", 1), compute)
    b = state.kept(memo, "slot", ("k", 1), compute)
    assert a is b and a.value == 1 and a.seconds >= 0 and len(calls) == 1
    assert state.kept(memo, "slot", ("k", 2), compute).value == 2

    def fail() -> int:
        raise InputError("f", "bad")

    with pytest.raises(InputError):
        state.kept(memo, "slot", ("k", 3), fail)
    assert memo["slot"].key == ("k", 2)  # a failure stores nothing


def test_collect_batch_limits_and_zips():
    z = batch.zip_bytes([("d/a.obj", b"v 0 0 0\n"), ("d/readme.txt", b"x")])
    upload = batch.collect_batch([("scans.zip", z), ("b c.ply", b"ply")])
    assert upload.names == ["scans.zip:d/a.obj", "b_c.ply"] and upload.found() == "2 scan(s) found"
    assert upload.inputs[0][1]() == b"v 0 0 0\n" and upload.inputs[1][1] == b"ply"  # a member read at its turn
    with pytest.raises(InputError, match="big.obj.*limit"):
        batch.collect_batch([("big.obj", b"x" * 100)], limits=default_limits().with_(max_file_bytes=10))
    with pytest.raises(InputError, match="no mesh"):
        batch.collect_batch([("empty.zip", batch.zip_bytes([("a.txt", b"x")]))])
    # the zips of one upload share the unpacked budget (each had its own: n zips unpacked n times the limit)
    big = batch.zip_bytes([(f"s{c}.obj", b"v 0 0 0\n" * 1000) for c in "abc"])  # 24 kB unpacked, three scans
    small = default_limits().with_(max_unpacked_bytes=30_000)
    assert len(batch.collect_batch([("one.zip", big)], limits=small).inputs) == 3
    with pytest.raises(InputError, match="^two.zip: .*unpack"):
        batch.collect_batch([("one.zip", big), ("two.zip", big)], limits=small)


def test_rows_download_is_the_predict_schema():
    from affectvlm.predict import rows_to_csv, rows_to_json

    rows = [{"file": "a.obj", "frame": "", "label": "joy", "confidence": 0.75, "joy": 0.75, "rage": 0.25,
             "error": ""}]
    assert batch.rows_download(rows, "csv") == rows_to_csv(rows).encode()
    assert json.loads(batch.rows_download(rows, "json"))[0]["joy"] == 0.75
    with pytest.raises(ConfigError):
        batch.rows_download(rows, "xlsx")


def test_sidebar_fields_to_a_choice():
    c = choice_from_fields("pretrained", " ViT-B-32:openai ", None, custom=True, classes_text="joy, rage",
                           templates_text="a {} face", views_text=" 0,-30 ")
    assert c == ModelChoice("ViT-B-32:openai", ("joy", "rage"), ("a {} face",), "0,-30")
    assert choice_from_fields("default", "", "X", custom=False, classes_text="", templates_text="",
                              views_text="").spec == "X"
    with pytest.raises(ValueError):
        choice_from_fields("default", "", None, custom=False, classes_text="", templates_text="", views_text="left")


def test_weights_stamp_follows_reexported_files(tmp_path):
    from affectvlm.model import load_model, save_checkpoint

    ck = tmp_path / "ck"
    save_checkpoint(load_model("AffectVLM-Test", classes=["joy", "rage"], cache=False), ck)
    first = weights_stamp(str(ck))
    assert first and {n for n, _, _ in first} >= {"affectvlm.json"}
    save_checkpoint(load_model("AffectVLM-Test", classes=["joy", "rage", "calm"], cache=False), ck)
    assert weights_stamp(str(ck)) != first
    assert weights_stamp("AffectVLM-Test") == () and weights_stamp("/no/such/folder") == ()


def test_app_loads_a_reexported_checkpoint_again(tmp_path, monkeypatch):
    """The sidebar names a checkpoint folder; re-exporting it (as a training run's best/ is) shows the new model."""
    pytest.importorskip("streamlit")
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from affectvlm.model import load_model, save_checkpoint

    monkeypatch.setenv("AFFECTVLM_WORKSPACE_ROOTS", str(tmp_path / "ws"))
    monkeypatch.chdir(REPO)
    st.cache_resource.clear()
    ck = tmp_path / "ws" / "best"  # inside the workspace: the sidebar loads no model from elsewhere
    save_checkpoint(load_model("AffectVLM-Test", classes=["joy", "rage"], cache=False), ck)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    at.radio(key="model_kind").set_value("checkpoint").run()
    at.text_input(key="model_checkpoint").input(str(ck)).run()
    assert not at.error and any("joy, rage" in md.value and "calm" not in md.value for md in at.markdown)
    save_checkpoint(load_model("AffectVLM-Test", classes=["joy", "rage", "calm"], cache=False), ck)
    at.run()
    assert not at.error and any("joy, rage, calm" in md.value for md in at.markdown)


def _workspace(tmp_path: Path):
    ws = tmp_path / "ws"
    for c in ("happiness", "anger"):
        (ws / "data" / c).mkdir(parents=True)
        for s in ("s1", "s2"):
            (ws / "data" / c / f"{s}_{c}.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    return load_settings({"AFFECTVLM_WORKSPACE_ROOTS": str(ws)}, cwd=tmp_path)


def test_train_form_to_launch(tmp_path):
    s = _workspace(tmp_path)
    form = trainform.TrainForm(data="data", layout="folders", model="AffectVLM-Test", epochs=2, views="-30,0,30",
                               name="tiny", extra="--folds 2")
    cfg = trainform.build_launch(form, s)
    assert cfg.run_dir == s.workspace / "runs" / "tiny" and cfg.name == "tiny" and cfg.rdzv_id == "tiny"
    args = cfg.train_args
    assert args[args.index("--data") + 1] == str(s.workspace / "data") and "--epochs=2" in args
    assert "--views=-30,0,30" in args and "--folds=2" in args and "--no-progress" in args
    assert launch.torchrun_command(cfg)[-len(args):] == args
    bad = {"losses": {"mc": 0.0, "mt": 0.0, "clip": 0.0, "ce": 0.0}}, {"views": "left"}, {"data": "nowhere"}, \
        {"nnodes": 2, "rdzv_endpoint": "node0"}, {"out": str(tmp_path)}
    for change, msg in zip(bad, ("at least one loss", "views", "does not exist", "HOST:PORT", "outside")):
        with pytest.raises(ConfigError, match=msg):
            trainform.build_launch(trainform.TrainForm(**{**form.__dict__, **change}), s)


def test_quiet_logs_only_this_thread(caplog):
    """A model load in one app session quiets its own third-party logs, not every other session's."""
    import logging
    import threading

    from affectvlm.logs import quiet

    caplog.set_level(logging.INFO)
    with quiet(logging.WARNING):
        logging.warning("mine, dropped")
        other = threading.Thread(target=lambda: logging.warning("another session's, kept"))
        other.start()
        other.join()
        logging.error("mine, above the level, kept")
    logging.warning("after the block, kept")
    assert [r.getMessage() for r in caplog.records] == ["another session's, kept", "mine, above the level, kept",
                                                        "after the block, kept"]


def test_job_status_from_the_trainers_words(tmp_path):
    """The job store reads the trainer's status.json through affectvlm.runfolder: its six words, no guessing."""
    from affectvlm.app.runview import job_status
    from affectvlm.runfolder import Status, read_status, write_status

    want = {Status.RUNNING: None, Status.FINISHED: Status.FINISHED, Status.FAILED: Status.FAILED,
            Status.STOPPED: Status.STOPPED, Status.PREEMPTED: Status.STOPPED}
    for word, job in want.items():
        write_status(tmp_path, word)
        assert job_status(read_status(tmp_path)) == job, word
    (tmp_path / "status.json").write_text(json.dumps({"status": "running", "pid": 2**22 + 7, "host": "elsewhere"}))
    assert job_status(read_status(tmp_path)) is None  # another host's trainer: unknowable here, still running
    (tmp_path / "status.json").write_text(json.dumps({"status": "done"}))  # not a word of the contract
    assert job_status(read_status(tmp_path)) is Status.FAILED
    assert job_status(None) is None
