"""Real-browser tests: `streamlit run app.py` on 127.0.0.1 driven by Debian's chromium (Playwright).

Run with ``pytest -m browser tests/test_browser.py``. Never ``playwright install``: the system
chromium is used (offline).

Screenshots of each page go to pytest's temporary folder, so a normal run leaves the checkout
untouched. To refresh the README's images, name the folder::

    AFFECTVLM_SCREENSHOT_DIR=docs/img pytest -m browser tests/test_browser.py

(a relative path is taken from the repository root). The README images should show the real default
model: the tests use ``weights/affectvlm-default`` when it exists and the tiny ``AffectVLM-Test``
model otherwise. ``AFFECTVLM_SCREENSHOT_SAMPLE`` picks the bundled scan that the Analyse test uploads
(default ``F0001_HA04WH_F3D``).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("Debian chromium is not installed (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

from affectvlm.prompts import DEFAULT_CLASSES  # noqa: E402
from meshgen import face_like_mesh  # noqa: E402

CLASSES = DEFAULT_CLASSES
SAMPLES = REPO / "affectvlm" / "data" / "samples"
# the bundled scan shown on the Analyse screenshot (its .wrl and .bmp are uploaded together)
SAMPLE = os.environ.get("AFFECTVLM_SCREENSHOT_SAMPLE", "F0001_HA04WH_F3D")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _obj_bytes(mesh) -> bytes:
    import trimesh

    out = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).export(file_type="obj")
    return out.encode() if isinstance(out, str) else out


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("browser") / "ws"
    for c, smile in (("happiness", 1.0), ("anger", -1.0)):
        (ws / "data" / c).mkdir(parents=True)
        for s in range(4):
            (ws / "data" / c / f"s{s}_{c}.obj").write_bytes(_obj_bytes(face_like_mesh(24, smile=smile, seed=s,
                                                                                      textured=False)))
    return ws


@pytest.fixture(scope="module")
def server(workspace, tmp_path_factory):
    port = _free_port()
    env = dict(os.environ, AFFECTVLM_WORKSPACE_ROOTS=str(workspace), HF_HUB_OFFLINE="1",
               AFFECTVLM_JOB_REFRESH_S="1", AFFECTVLM_CACHE=str(tmp_path_factory.mktemp("cache")))
    if not (REPO / "weights" / "affectvlm-default" / "affectvlm.json").exists():
        env["AFFECTVLM_DEFAULT_MODEL"] = "AffectVLM-Test"
    log = open(workspace.parent / "streamlit.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("streamlit did not start: " + (workspace.parent / "streamlit.log").read_text()[-2000:])
        time.sleep(0.5)
    yield url
    os.killpg(proc.pid, 15)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
    log.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync"])
        yield b
        b.close()


@pytest.fixture()
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1500})
    pg = ctx.new_page()
    pg.set_default_timeout(120_000)
    yield pg
    ctx.close()


def _goto(page, url: str, nav: str | None = None) -> None:
    page.goto(url)
    page.wait_for_selector('[data-testid="stSidebar"]')
    if nav:
        page.locator('[data-testid="stSidebar"] [data-testid="stPageLink-NavLink"]', has_text=nav).first.click()
        title = {"Analyse": "Analyse a scan", "Batch": "Batch: score", "Train": "Train a model"}[nav]
        page.wait_for_selector(f'h1:has-text("{title}")')


# emoji and symbol blocks that Debian's headless chromium (no emoji font) draws as empty boxes
_TOFU = re.compile("[\u2190-\u21ff\u2300-\u23ff\u25a0-\u27bf\u2b00-\u2bff\ufe0f\U0001f000-\U0001faff]")


def _no_tofu(page) -> None:
    text = page.locator('[data-testid="stApp"]').first.inner_text()
    assert not _TOFU.findall(text), f"glyphs without a font in headless chromium: {set(_TOFU.findall(text))}"


def _pick(page, label: str, option: str) -> None:
    """Choose ``option`` in the Streamlit radio group labelled ``label``."""
    group = page.locator('[data-testid="stRadio"]', has_text=label).first
    group.locator("label", has_text=option).filter(has_text=re.compile(rf"^\s*{re.escape(option)}\s*$")).click()
    _idle(page)


def _view_srcs(page) -> list[str]:
    """The rendered views' media URLs (Streamlit names them by a hash of the image bytes)."""
    return page.locator('[data-testid="stImage"] img').evaluate_all("els => els.map(e => e.src)")


def _idle(page, timeout: float = 120) -> None:
    """Wait until Streamlit finished the current run (no 'Running…' status widget)."""
    page.wait_for_timeout(300)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if page.locator('[data-testid="stStatusWidget"]').count() == 0:
            return
        page.wait_for_timeout(200)


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where screenshots go: ``$AFFECTVLM_SCREENSHOT_DIR`` (e.g. docs/img) or a pytest temp folder."""
    raw = os.environ.get("AFFECTVLM_SCREENSHOT_DIR", "").strip()
    out = (REPO / raw if not Path(raw).is_absolute() else Path(raw)) if raw else tmp_path_factory.mktemp("shots")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _shot(page, shots: Path, name: str) -> Path:
    path = shots / f"screenshot_{name}.png"
    page.locator('[data-testid="stMain"]').first.screenshot(path=str(path))
    return path


def test_home_page(page, server, shots):
    _goto(page, server)
    page.wait_for_selector('[data-testid="stMetricValue"]')
    assert "AffectVLM" in page.locator("h1").first.inner_text()
    links = page.locator('[data-testid="stSidebar"] [data-testid="stPageLink-NavLink"]')
    for name in ("Home", "Analyse", "Batch", "Train"):
        assert links.filter(has_text=name).count() == 1, links.all_inner_texts()
    assert page.locator('[data-testid="stSidebarNav"]').count() == 0  # Streamlit's list would say "app"
    _idle(page)
    _no_tofu(page)
    _shot(page, shots, "home")


def test_upload_scan_read_top_emotion_and_drag_preview(page, server, shots, tmp_path):
    from affectvlm.app.preview import preview
    from affectvlm.io import load_mesh
    from affectvlm.render import RenderSettings
    from affectvlm.results import FaceFrame

    scan = SAMPLES / f"{SAMPLE}.wrl"
    _goto(page, server, "Analyse")
    page.locator('input[type="file"]').first.set_input_files([str(scan), str(scan.with_suffix(".bmp"))])
    metric = page.locator('[data-testid="stMetricValue"]').first
    try:
        metric.wait_for(timeout=60_000)
    except Exception:
        page.screenshot(path=str(tmp_path / "fail.png"))  # kept in pytest's temp folder
        raise
    assert metric.inner_text().strip() in CLASSES
    page.wait_for_selector('[data-testid="stImage"] img')
    _idle(page)

    # the library's own guess: when it is unsure, the page says so; fixing up/front re-renders the views
    guess = FaceFrame.from_meta(preview(load_mesh(scan), max_faces=3000).meta)
    warning = page.locator('[data-testid="stAlertContentWarning"]', has_text="Orientation was guessed")
    assert warning.count() == (1 if guess.low_confidence else 0)
    before = _view_srcs(page)
    page.get_by_text("Orientation (if the automatic frontal guess is wrong)").click()
    _pick(page, "Up axis of the file", "+y")  # the samples are BU-3DFE layout: +Y up, facing +Z
    _pick(page, "Front axis", "+z")
    page.wait_for_selector('[data-testid="stCaptionContainer"]:has-text("up +y (set)")')
    assert warning.count() == 0
    after = _view_srcs(page)
    default = REPO / "weights" / "affectvlm-default" / "affectvlm.json"
    views = len(RenderSettings.from_dict(json.loads(default.read_text())["render"]).for_scoring().views) \
        if default.exists() else 3  # the embedded default: 3 views at 3 pitches
    assert len(after) == len(before) == views
    assert (after != before) == (guess.up != "+y"), (guess, before, after)
    page.get_by_text("Orientation (if the automatic frontal guess is wrong)").click()  # fold it again
    assert page.locator('[data-testid="stMetricValue"]').first.inner_text().strip() in CLASSES

    plot = page.locator(".js-plotly-plot").first
    plot.wait_for()
    _idle(page)
    page.wait_for_timeout(1500)  # WebGL scene drawn

    def camera() -> str:
        return page.evaluate("""() => { const g = document.querySelector('.js-plotly-plot');
            const s = g._fullLayout.scene._scene; return JSON.stringify(s.getCamera ? s.getCamera().eye : g._fullLayout.scene.camera.eye); }""")

    before = camera()
    box = plot.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    for i in range(1, 6):
        page.mouse.move(cx + 8 * i, cy + 2 * i)
        page.wait_for_timeout(30)
    page.mouse.up()
    page.wait_for_timeout(500)
    after = camera()
    assert after != before, "dragging did not rotate the 3D preview"
    _no_tofu(page)
    _shot(page, shots, "analyse")


def test_sequence_zip_chart_fills_in(page, server, shots, tmp_path):
    from affectvlm.app.batch import zip_bytes

    # a long synthetic sequence, so the chart is seen part-filled (frames are scored in batches of 8, and
    # plotly.js must have loaded in the browser before a partial chart can show)
    n = 160
    frames = [(f"F001/Happy/{i:03d}.obj", _obj_bytes(face_like_mesh(40, smile=min(1.0, i / 80), seed=i, textured=False)))
              for i in range(n)]
    z = tmp_path / "seq.zip"
    z.write_bytes(zip_bytes(frames))
    _goto(page, server, "Analyse")
    page.evaluate("""() => { window.__seen = new Set();
        new MutationObserver(() => { for (const t of document.querySelectorAll('.gtitle'))
            window.__seen.add(t.textContent); }).observe(document.body, {subtree: true, childList: true, characterData: true}); }""")
    page.locator('input[type="file"]').first.set_input_files(str(z))
    page.wait_for_selector('[data-testid="stMetricLabel"]:has-text("Sequence emotion")')
    _idle(page)
    seen = page.evaluate("() => Array.from(window.__seen)")
    counts = sorted({int(m.group(1)) for t in seen if (m := re.match(rf"(\d+) / {n} frames scored", t))})
    assert counts and counts[-1] == n, seen
    assert any(0 < c < n for c in counts), f"the chart never showed a partial state: {counts}"

    # the bundled 4D sample for the screenshot: +Y up, facing +Z (said in the Orientation box)
    sample = SAMPLES / "F001_Surprise.zip"
    m = sum(1 for name in zipfile.ZipFile(sample).namelist() if name.endswith(".wrl"))
    _goto(page, server, "Analyse")  # a fresh session: the uploader would add the zip to the first one
    page.locator('input[type="file"]').first.set_input_files(str(sample))
    page.wait_for_selector(f'.gtitle:has-text("{m} / {m} frames scored")')
    _idle(page)
    page.get_by_text("Orientation (if the automatic frontal guess is wrong)").click()
    _pick(page, "Up axis of the file", "+y")
    _pick(page, "Front axis", "+z")
    page.get_by_text("Orientation (if the automatic frontal guess is wrong)").click()
    page.wait_for_selector('[data-testid="stCaptionContainer"]:has-text("up +y (set)")')
    page.wait_for_selector('[data-testid="stMetricLabel"]:has-text("Sequence emotion")')
    assert page.locator('[data-testid="stAlertContentWarning"]', has_text="Orientation was guessed").count() == 0
    _idle(page)
    page.wait_for_timeout(1000)  # WebGL preview drawn
    _no_tofu(page)
    _shot(page, shots, "sequence")


def test_batch_zip_table_and_error_row(page, server, shots, tmp_path):
    from affectvlm.app.batch import zip_bytes

    members = [(f"scans/{p.name}", p.read_bytes()) for p in sorted(SAMPLES.glob("*.wrl"))]
    members.append(("scans/broken.ply", b"ply\nformat ascii 1.0\nelement vertex 99\nend_header\n1 2 3\n"))
    z = tmp_path / "scans.zip"
    z.write_bytes(zip_bytes(members))
    _goto(page, server, "Batch")
    page.get_by_text("Orientation of the files").click()
    _pick(page, "Up axis of the files", "+y")
    _pick(page, "Front axis", "+z")
    page.get_by_text("Orientation of the files").click()
    page.locator('input[type="file"]').first.set_input_files(str(z))
    page.get_by_role("button", name="Score all").click()
    done = page.locator('[data-testid="stAlertContentWarning"]', has_text="scored")  # a file failed: not green
    done.wait_for()
    assert f"{len(members) - 1} scored, 1 failed" in done.inner_text()
    broken = page.locator('[data-testid="stAlertContentError"]', has_text="broken.ply")
    broken.first.wait_for()  # the page draws the summary before the rows' errors
    _idle(page)
    assert broken.count() == 1
    page.wait_for_selector('[data-testid="stDataFrame"]')
    csv = page.get_by_role("button", name="Download CSV")
    csv.first.wait_for()  # the page draws the table a moment before the buttons under it
    _idle(page)
    assert csv.count() == 1
    _no_tofu(page)
    _shot(page, shots, "batch")


def _fill(page, label: str, value: str) -> None:
    _idle(page)
    box = page.get_by_label(label, exact=True)
    for _ in range(50):  # while a rerun replaces the form, the old inputs linger for a moment
        if box.count() == 1:
            break
        page.wait_for_timeout(200)
    box.fill(value)
    box.press("Enter")
    _idle(page)


def _launch(page, name: str, epochs: int) -> None:
    _fill(page, "Run name", name)
    _fill(page, "Epochs", str(epochs))
    page.get_by_role("button", name="Launch training").click()
    page.wait_for_selector(f'[data-testid="stAlertContentSuccess"]:has-text("runs/{name}")')


def test_train_launch_finish_and_stop(page, server, shots, workspace):
    _goto(page, server, "Train")
    _fill(page, "Dataset root (relative paths are inside the first workspace root)", "data")
    page.locator('[data-testid="stSelectbox"]', has_text="Layout").click()
    page.get_by_role("option", name="folders").click()
    _idle(page)
    page.get_by_role("button", name="Check dataset").click()
    page.wait_for_selector('[data-testid="stMetricLabel"]:has-text("Subjects")')
    _fill(page, "Start from model", "AffectVLM-Test")
    _fill(page, "Batch size (global)", "2")  # 4 subjects: 2 test, 1 validation, 1 training (2 scans)
    _fill(page, "Extra trainer options", "--folds 2")
    _launch(page, "tiny", 2)
    status = page.locator('[data-testid="stMetric"]', has_text="Status").locator('[data-testid="stMetricValue"]')
    deadline = time.monotonic() + 240
    while "finished" not in status.inner_text() and time.monotonic() < deadline:
        assert "failed" not in status.inner_text(), (workspace / "runs" / "tiny" / "stdout.log").read_text()[-3000:]
        page.wait_for_timeout(1000)
    assert "finished" in status.inner_text()
    page.wait_for_timeout(2500)  # one more refresh of the job view
    page.locator(".js-plotly-plot").nth(2).wait_for()  # loss, accuracy, lr, samples/s: at least three
    _no_tofu(page)
    page.locator("h3", has_text="Jobs").first.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(500)
    _shot(page, shots, "train")

    _launch(page, "long", 1000)
    deadline = time.monotonic() + 120
    while not (workspace / "runs" / "long" / "metrics.jsonl").exists() and time.monotonic() < deadline:
        page.wait_for_timeout(500)
    assert "running" in status.inner_text()
    page.get_by_role("button", name="Stop").click()
    deadline = time.monotonic() + 60
    while "stopped" not in status.inner_text() and time.monotonic() < deadline:
        page.wait_for_timeout(500)
    assert "stopped" in status.inner_text()
