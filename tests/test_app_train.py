"""AppTest of the Home navigation and the Train page: form validation, launch, job view, stop."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "app.py")


@pytest.fixture()
def workspace(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    ws.mkdir()
    monkeypatch.setenv("AFFECTVLM_WORKSPACE_ROOTS", str(ws))
    monkeypatch.setenv("AFFECTVLM_DEFAULT_MODEL", "AffectVLM-Test")
    monkeypatch.chdir(REPO)
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()
    return ws


def folders_dataset(root: Path, classes=("happiness", "anger"), subjects=("s1", "s2", "s3")) -> Path:
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for s in subjects:
            (root / c / f"{s}_{c}.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    return root


def train_page(ws: Path) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/3_Train.py").run()
    assert not at.exception, at.exception
    return at


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def test_train_form_rejects_bad_roots(workspace, tmp_path):
    outside = folders_dataset(tmp_path / "outside")
    (workspace / "escape").symlink_to(outside)
    at = train_page(workspace)
    for bad, msg in (("missing", "does not exist"), (str(outside), "outside the workspace"),
                     ("escape", "outside the workspace")):
        at.text_input(key="tr_data").input(bad).run()
        at.button(key="tr_check").click().run()
        assert any(msg in e for e in errors(at)), (bad, errors(at))
    # launching with a bad root is refused the same way and starts nothing
    at.button(key="tr_launch").click().run()
    assert any("outside the workspace" in e for e in errors(at))
    assert "No training job yet." in [i.value for i in at.info]


def test_train_form_checks_dataset_and_options(workspace):
    folders_dataset(workspace / "data")
    at = train_page(workspace)
    at.text_input(key="tr_data").input("data").run()
    at.selectbox(key="tr_layout").set_value("folders").run()
    at.button(key="tr_check").click().run()
    assert not errors(at), errors(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Samples"] == "6" and metrics["Subjects"] == "3" and metrics["Classes"] == "2"
    # all losses off -> one clear error, nothing launched
    for k in ("mc", "mt", "clip", "ce"):
        at.number_input(key=f"tr_loss_{k}").set_value(0.0)
    at.button(key="tr_launch").click().run()
    assert any("at least one loss" in e for e in errors(at))
    at.number_input(key="tr_loss_ce").set_value(1.0)
    # bad views
    at.text_input(key="tr_views").input("left,right").run()
    at.button(key="tr_launch").click().run()
    assert any("views" in e for e in errors(at)), errors(at)
    at.text_input(key="tr_views").input("0,-30,30").run()
    # several nodes: endpoint required, then the other nodes' command is shown
    at.number_input(key="tr_nnodes").set_value(2).run()
    assert any("HOST:PORT" in w.value for w in at.warning)
    at.text_input(key="tr_rdzv").input("node0:29400").run()
    codes = [c.value for c in at.code]
    assert any("--rdzv-endpoint node0:29400" in c and "--nnodes 2" in c and "affectvlm.train" in c for c in codes)
    # output folder outside the roots is refused
    at.number_input(key="tr_nnodes").set_value(1).run()
    at.text_input(key="tr_out").input("/tmp/elsewhere").run()
    at.button(key="tr_launch").click().run()
    assert any("output folder" in e and "outside" in e for e in errors(at))
    # the workspace root or the data set itself as the output folder: the run would be written among the scans
    for out, how in ((".", "hold"), ("data", "be")):
        at.text_input(key="tr_out").input(out).run()
        at.button(key="tr_launch").click().run()
        assert any(e.startswith("output folder ") and f"the run folder would {how} the data set" in e
                   for e in errors(at)), (out, errors(at))
    assert "No training job yet." in [i.value for i in at.info]


FAKE = """
import json, os, sys, time
out = sys.argv[sys.argv.index('--out') + 1]
os.makedirs(out, exist_ok=True)
n = int(next((a.split('=', 1)[1] for a in sys.argv if a.startswith('--epochs=')), 3))
for e in range(n):
    time.sleep(0.05 if n < 100 else 0.2)
    with open(os.path.join(out, 'metrics.jsonl'), 'a') as f:
        f.write(json.dumps({'kind': 'epoch', 'epoch': e, 'step': e + 1, 'loss': 1 / (e + 1), 'mc': 0.3, 'lr': 1e-3,
                            'samples_per_s': 10.0, 'val_accuracy': e / n, 'eta_s': n - e}) + '\\n')
json.dump({'status': 'finished'}, open(os.path.join(out, 'status.json'), 'w'))
"""


def test_train_launch_view_and_stop(workspace, tmp_path, monkeypatch):
    """Launch from the page (a stand-in trainer module replaces affectvlm.train), see it finish with
    charts; launch a long one and stop it; a new app session (restart) still lists both."""
    from affectvlm.app import jobs
    from affectvlm.app.runview import tail

    pkg = tmp_path / "fakepkg"
    pkg.mkdir()
    (pkg / "fake_train.py").write_text(FAKE)
    monkeypatch.setenv("PYTHONPATH", f"{pkg}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    orig = jobs.JobStore.launch

    def launch(self, cfg, **kw):
        kw.setdefault("module", "fake_train")
        return orig(self, cfg, **kw)

    monkeypatch.setattr(jobs.JobStore, "launch", launch)
    folders_dataset(workspace / "data")
    at = train_page(workspace)
    at.text_input(key="tr_data").input("data").run()
    at.selectbox(key="tr_layout").set_value("folders").run()
    at.number_input(key="tr_epochs").set_value(3).run()
    at.text_input(key="tr_name").input("tiny").run()
    at.button(key="tr_launch").click().run()
    assert not errors(at), errors(at)
    assert any("Started job #1" in s.value for s in at.success)
    store = jobs.JobStore(workspace / ".affectvlm" / "jobs.sqlite3")
    deadline = time.monotonic() + 60
    while store.get(1).active and time.monotonic() < deadline:
        time.sleep(0.2)
    assert store.get(1).status == "finished", tail(store.get(1).run_dir / "stdout.log")
    at.run()
    metrics = {m.label: m.value for m in at.metric}
    assert "finished" in metrics["Status"]
    charts = [c for c in at.get("plotly_chart")]
    assert len(charts) >= 3  # loss, accuracy, lr, samples/s
    cmd = store.get(1).command
    assert cmd[1:3] == ["-m", "torch.distributed.run"] and "--standalone" in cmd and "fake_train" in cmd
    assert cmd[cmd.index("--out") + 1] == str(workspace / "runs" / "tiny")

    at.number_input(key="tr_epochs").set_value(1000).run()
    at.button(key="tr_launch").click().run()
    assert any("Started job #2" in s.value for s in at.success)
    at.button(key="tr_launch").click().run()  # a second click on the same form: not a second, identical training
    assert any("Job #2 was launched from these same settings" in w.value for w in at.warning), at.warning
    assert sorted(j.id for j in store.list()) == [1, 2]
    at.selectbox(key="tr_job").set_value(2).run()
    time.sleep(1.0)
    at.button(key="stop_2").click().run()
    deadline = time.monotonic() + 30
    while store.get(2).active and time.monotonic() < deadline:
        time.sleep(0.2)
    assert store.get(2).status == "stopped"

    at2 = train_page(workspace)  # a fresh session: jobs survive
    opts = at2.selectbox(key="tr_job").options
    assert len(opts) == 2 and any("tiny" in o for o in opts)
    seen = {}
    for jid in (1, 2):  # each job's view shows its recorded status
        at2.selectbox(key="tr_job").set_value(jid).run()
        seen[jid] = {m.label: m.value for m in at2.metric}["Status"]
    assert seen == {1: "finished", 2: "stopped"}


def test_a_workspace_the_app_cannot_write_is_one_error_not_a_crash(tmp_path, monkeypatch):
    """A read-only current folder or bind mount (root ignores permissions, so a file stands in the way here)."""
    import streamlit as st

    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("AFFECTVLM_WORKSPACE_ROOTS", str(blocker / "ws"))
    monkeypatch.setenv("AFFECTVLM_DEFAULT_MODEL", "AffectVLM-Test")
    monkeypatch.chdir(REPO)
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    assert any("cannot create it" in e and "AFFECTVLM_WORKSPACE_ROOTS" in e for e in errors(at)), errors(at)
    ws = tmp_path / "ws"
    (ws / ".affectvlm").parent.mkdir()
    (ws / ".affectvlm").write_text("x")  # where the job store goes
    monkeypatch.setenv("AFFECTVLM_WORKSPACE_ROOTS", str(ws))
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception and not errors(at), (at.exception, errors(at))  # Home needs no job store
    at.switch_page("pages/3_Train.py").run()
    assert not at.exception, at.exception
    assert any("job store" in e and "cannot write it" in e for e in errors(at)), errors(at)
