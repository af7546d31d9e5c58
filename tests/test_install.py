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
    shutil.copy(ROOT / "app.py", src / "app.py")
    shutil.copytree(ROOT / "pages", src / "pages", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(ROOT / ".streamlit", src / ".streamlit")
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
    assert (target / "share" / "affectvlm" / "weights" / "MODEL_CARD.md").is_file()  # what the weights are


def test_an_installed_package_runs_its_app(target, tmp_path):
    """The wheel carries app.py, pages/ and the Streamlit settings; `affectvlm app` finds them outside any checkout
    and serves the app from the current folder (its workspace there)."""
    import socket
    import time
    import urllib.request

    app = target / "share" / "affectvlm" / "app"
    assert (app / "app.py").is_file() and (app / ".streamlit" / "config.toml").is_file()
    assert sorted(p.name for p in (app / "pages").glob("*.py")) == sorted(p.name for p in (ROOT / "pages").glob("*.py"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AFFECTVLM_DEFAULT_MODEL")}
    env.update(PYTHONPATH=str(target), HF_HUB_OFFLINE="1")
    shown = subprocess.run([sys.executable, "-m", "affectvlm", "app", "--print-command"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert str(app.resolve() / "app.py") in shown.stdout and "--server.headless true" in shown.stdout
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "affectvlm", "app", "--port", str(port),
                             "--server.address", "127.0.0.1"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline, body = time.monotonic() + 120, ""
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    body = r.read().decode()
                    break
            except OSError:
                time.sleep(0.5)
        assert body == "ok", (proc.poll(), proc.stderr.read()[-2000:] if proc.poll() is not None else "")
        proc.terminate()  # the server itself: the launcher became its process, so no server outlives it
        proc.wait(timeout=30)
        time.sleep(1)
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_sdist_holds_what_its_tests_and_app_need(tmp_path):
    """An sdist is the project a packager builds and tests: every tracked test helper, the app and its pages,
    the Streamlit settings and the model card."""
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    tracked = [f for f in listed.stdout.splitlines() if (ROOT / f).is_file()]
    src = tmp_path / "src"
    for f in tracked:
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / f, src / f)
    done = subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta as b; "
                           "print(b.build_sdist(sys.argv[1]))", str(tmp_path / "dist")],
                          cwd=src, capture_output=True, text=True, timeout=600)
    if done.returncode != 0 and "No module named 'setuptools'" in done.stderr:
        pytest.skip("no setuptools")
    assert done.returncode == 0, done.stderr[-2000:]
    import tarfile

    with tarfile.open(tmp_path / "dist" / done.stdout.split()[-1]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    wanted = [f for f in tracked if f.startswith(("tests/", "pages/", ".streamlit/", "configs/"))
              or f in ("app.py", "weights/MODEL_CARD.md", "requirements.txt", "requirements-dev.txt",
                       "constraints.txt")]
    assert len(wanted) > 60 and [f for f in wanted if f not in names] == []


def test_the_docker_images_pins_cover_every_requirement_and_satisfy_it():
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    root = Path(__file__).resolve().parents[1]
    pins = {}
    for line in (root / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version and " " not in version, f"not a pin: {line!r}"
            pins[canonicalize_name(name)] = version
    for line in (root / "requirements.txt").read_text().splitlines():
        text = line.split("#")[0].strip()
        if text:
            req = Requirement(text)
            name = canonicalize_name(req.name)
            assert name in pins, f"{req.name} is not pinned in constraints.txt"
            assert req.specifier.contains(pins[name], prereleases=True), f"{req.name}=={pins[name]} is not {req}"
    assert "-c constraints.txt" in (root / "Dockerfile").read_text()


def test_the_metadata_builds_without_setuptools_deprecations_and_names_its_licence(tmp_path):
    """A TOML-table ``project.license`` is deprecated (setuptools stops building such projects in 2027); the SPDX
    expression and the licence files reach the wheel's metadata."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "NOTICE", "MANIFEST.in"):
        shutil.copy(ROOT / name, src / name)
    (src / "weights").mkdir()
    shutil.copytree(ROOT / "affectvlm", src / "affectvlm", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (tmp_path / "meta").mkdir()
    done = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c",
                           "import sys; from setuptools import build_meta as b; "
                           "print(b.prepare_metadata_for_build_wheel(sys.argv[1]))", str(tmp_path / "meta")],
                          cwd=src, capture_output=True, text=True, timeout=600)
    if done.returncode != 0 and "No module named 'setuptools'" in done.stderr:
        pytest.skip("no setuptools")
    assert done.returncode == 0, done.stderr[-2000:]
    meta = (tmp_path / "meta" / done.stdout.split()[-1] / "METADATA").read_text().splitlines()
    assert "License-Expression: MIT" in meta
    assert {"License-File: LICENSE", "License-File: NOTICE"} <= set(meta)
