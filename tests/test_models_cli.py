"""`affectvlm models` and `affectvlm download` against a prepared (fake, local) Hugging Face cache, offline."""
import json
import os
import subprocess
import sys

import pytest
import torch

from affectvlm import cli
from affectvlm.model import load_model, save_checkpoint

from hubcache import add_hub_repo


@pytest.fixture(scope="module")
def tiny():
    return load_model("AffectVLM-Test", cache=False)


@pytest.fixture
def prepared(tmp_path, monkeypatch, tiny):
    """HF_HOME with one complete model (org/tiny) and one without weights (org/partial); a workspace with a
    checkpoint and a training run; this process pointed at both."""
    import huggingface_hub.constants as hc

    hub = tmp_path / "hf" / "hub"
    add_hub_repo(hub, "org/tiny", tiny)
    add_hub_repo(hub, "org/partial", tiny, weights=False)
    ws = tmp_path / "ws"
    save_checkpoint(tiny, ws / "exported" / "ck")
    save_checkpoint(tiny, ws / "runs" / "r1" / "best")
    save_checkpoint(tiny, ws / "runs" / "r1" / "last")  # inside the run: listed as the run, not on its own
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("AFFECTVLM_WORKSPACE_ROOTS", str(ws))
    monkeypatch.delenv("AFFECTVLM_CACHE", raising=False)
    return tmp_path


def _models(capsys, *args):
    assert cli.main(["models", "--json", *args]) == 0
    return {e["spec"]: e for e in json.loads(capsys.readouterr().out)}


def test_models_json_lists_cache_workspace_and_pretrained(prepared, capsys):
    got = _models(capsys)
    assert got["hf-hub:org/tiny"]["offline"] is True and got["hf-hub:org/tiny"]["kind"] == "hf-hub"
    assert got["hf-hub:org/partial"]["offline"] is False
    ws = prepared / "ws"
    assert got[str(ws / "exported" / "ck")]["kind"] == "checkpoint"
    assert got[str(ws / "runs" / "r1")]["kind"] == "run" and got[str(ws / "runs" / "r1")]["offline"]
    assert str(ws / "runs" / "r1" / "last") not in got
    assert got["ViT-B-32:openai"] == {**got["ViT-B-32:openai"], "kind": "pretrained", "offline": False}
    assert "default" in got and got["default"]["kind"] == "embedded"
    only = _models(capsys, "--available")
    assert "hf-hub:org/tiny" in only and "hf-hub:org/partial" not in only and "ViT-B-32:openai" not in only
    assert all(e["offline"] for e in only.values())
    assert cli.main(["models"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["SPEC", "KIND", "OFFLINE", "WHERE"]
    assert any(line.split()[:3] == ["hf-hub:org/tiny", "hf-hub", "yes"] for line in table)


def test_download_offline_uses_the_cache_and_fails_in_one_line(prepared, capsys):
    assert cli.main(["download", "hf-hub:org/tiny", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "hf-hub:org/tiny: already here" in err and "open_clip_model.safetensors" in err
    assert cli.main(["download", "hf-hub:org/partial", "--no-progress"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("affectvlm: error: cannot download")
    assert "hf-hub:org/partial" in err and "HF_HUB_OFFLINE" in err
    assert cli.main(["download", "NoSuchNet:x"]) == 2
    assert "unknown architecture" in capsys.readouterr().err


def test_cli_honours_hf_home_in_a_real_process(prepared):
    """The installed command, with only HF_HOME and HF_HUB_OFFLINE set, as a user would run it."""
    env = {**os.environ, "HF_HOME": str(prepared / "hf"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "AFFECTVLM_WORKSPACE_ROOTS": str(prepared / "ws")}
    for k in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "AFFECTVLM_CACHE"):
        env.pop(k, None)
    run = [sys.executable, "-m", "affectvlm"]
    r = subprocess.run(run + ["models", "--json", "--available"], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    specs = [e["spec"] for e in json.loads(r.stdout)]
    assert "hf-hub:org/tiny" in specs and "hf-hub:org/partial" not in specs
    r = subprocess.run(run + ["download", "hf-hub:org/tiny", "hf-hub:org/missing", "--no-progress"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("hf-hub:org/tiny: already here")
    assert lines[1].startswith("affectvlm: error: cannot download the weights for 'hf-hub:org/missing'")


def test_render_device_auto_and_missing_cuda(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli.build_parser().parse_args(["render", "x.obj", "--out", "o"]).device == "auto"
    assert cli.main(["render", str(tmp_path / "x.obj"), "--out", str(tmp_path / "o"), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "CUDA is not available" in err


def test_a_checkpoint_with_truncated_weights_is_not_listed_as_usable(prepared, capsys):
    """A copy cut short (a full disk, an interrupted rsync) was listed as usable offline and 'downloaded'."""
    ws = prepared / "ws"
    weights = ws / "runs" / "r1" / "best" / "open_clip_model.safetensors"
    with open(weights, "r+b") as f:
        f.truncate(os.path.getsize(weights) // 2)
    got = _models(capsys)
    run = got[str(ws / "runs" / "r1")]
    assert run["offline"] is False and "cut short" in run["note"]
    assert got[str(ws / "exported" / "ck")]["offline"] is True
    assert str(ws / "runs" / "r1") not in _models(capsys, "--available")
    assert cli.main(["download", str(ws / "runs" / "r1" / "best"), "--no-progress"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "damaged" in err and "open_clip_model.safetensors" in err
    assert cli.main(["download", str(ws / "exported" / "ck"), "--no-progress"]) == 0
