"""A real, non-editable install (pip --target, as a user without a virtual environment does) finds its embedded
model, and a weights/ folder in the current directory does not replace it."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def target(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE", "NOTICE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "weights", src / "weights")
    shutil.copytree(ROOT / "affectvlm", src / "affectvlm", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("target")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(out), str(src)], capture_output=True, text=True, timeout=600)
    if done.returncode != 0 and "setuptools" in done.stderr:
        pytest.skip("no setuptools to build with offline")
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_a_target_install_finds_its_embedded_model_not_the_current_folders(target, tmp_path):
    shadow = tmp_path / "weights" / "affectvlm-default"  # what a user's own project folder may hold
    shadow.mkdir(parents=True)
    (shadow / "affectvlm.json").write_text(json.dumps({"classes": ["x"]}))
    code = "from affectvlm.model.specs import parse_spec; import affectvlm; print(affectvlm.__file__); " \
           "print(parse_spec('default').path)"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AFFECTVLM_DEFAULT_MODEL")}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**env, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    package, found = done.stdout.split()
    assert Path(package).is_relative_to(target)  # the installed copy, not the checkout
    assert Path(found) == (target / "share" / "affectvlm" / "weights" / "affectvlm-default").resolve()
