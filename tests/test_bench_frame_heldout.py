"""bench/bench_frame_heldout.py on a small face it writes itself: the report's structure, inputs not given reported
as skipped, and a bad path ending the run with one line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
SAMPLE = REPO / "affectvlm" / "data" / "samples" / "F0001_HA04WH_F3D.wrl"


@pytest.fixture(scope="module")
def small_face(tmp_path_factory) -> Path:
    """The repository's sample scan, decimated to a few hundred vertices, as an OBJ."""
    from affectvlm.io import load_mesh
    from affectvlm.render.simplify import quadric_simplify

    m = load_mesh(SAMPLE)
    v, f = quadric_simplify(m.vertices, m.faces, 1 - 500 / m.n_vertices)
    path = tmp_path_factory.mktemp("face") / "face.obj"
    path.write_text("".join(f"v {a:.4f} {b:.4f} {c:.4f}\n" for a, b, c in v)
                    + "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in f))
    return path


def test_report_counts_every_condition_and_lists_missing_inputs_as_skipped(small_face, tmp_path, capsys):
    import affectvlm.faceframe as ff
    import bench_frame_heldout

    installed = ff.WEIGHTS_DIR
    out = tmp_path / "out" / "heldout.json"
    assert bench_frame_heldout.main(["--mediapipe", str(small_face), "--baseline-frame-net", str(installed),
                                     "--scans", "2", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads(out.read_text())
    assert ff.WEIGHTS_DIR == installed  # the run leaves the installed network in place

    assert report["synthetic"] is True and report["scans_per_condition"] == 2
    assert report["groups"]["A"]["held_out"] and report["groups"]["B"]["held_out"]
    assert not report["groups"]["C"]["held_out"]
    ran = [c["id"] for c in report["conditions"]]
    assert ran and all(c.startswith("A/mediapipe/") for c in ran) and all(c["n"] == 2 for c in report["conditions"])
    skipped = {s["id"]: s["reason"] for s in report["skipped"]}
    assert skipped["A/flame/chin-up 30"] == "no --flame given"
    assert skipped["B/mh_body/bust"] == "no --makehuman given" and skipped["C/ict/face"] == "no --facekit given"
    assert not set(skipped) & set(ran)
    assert report["inputs"]["flame"] is None and report["inputs"]["mediapipe"] == str(small_face)

    nets = report["networks"]
    assert set(nets) == {"measured", "baseline"}
    assert nets["measured"]["sha256"] == nets["baseline"]["sha256"] == ff.weights_digest()
    for net in nets.values():
        assert set(net["conditions"]) == set(ran) and set(net["groups"]) == {"A"}
        for c in net["conditions"].values():
            assert c["n"] == 2 and c["ok"] + c["wrong"] + c["errors"] == 2
            assert 0 <= c["wrong_unflagged"] <= c["wrong"] and 0 <= c["right_flagged"] <= c["ok"]
        assert net["groups"]["A"]["n"] == 2 * len(ran)
        assert net["groups"]["A"]["wrong"] == sum(c["wrong"] for c in net["conditions"].values())
    assert nets["measured"]["conditions"] == nets["baseline"]["conditions"]  # one network, the same scans


def test_scans_are_the_same_from_run_to_run(small_face):
    import bench_frame_heldout as b

    face = b.read_obj(small_face)
    one, two = (b.battery({"mediapipe": face}, seed)[7] for seed in (0, 0))
    assert one.id == "A/mediapipe/chin-up 0 (upright)"
    assert all(np.array_equal(x, y) for x, y in zip(one.make(1), two.make(1)))
    other = b.battery({"mediapipe": face}, 1)[7].make(1)[0]
    assert other.shape == one.make(1)[0].shape and not np.allclose(other, one.make(1)[0])
    layouts = b.axis_layouts()
    assert len(layouts) == 48 and sum(np.linalg.det(a) > 0 for a in layouts) == 24
    assert len({a.tobytes() for a in layouts}) == 48


def test_a_bad_path_is_one_line_and_a_failed_exit(small_face, tmp_path):
    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(REPO / "bench" / "bench_frame_heldout.py"), *argv],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)

    for argv, says in (((("--flame", str(tmp_path / "none.obj"), "--mediapipe", str(small_face))),
                        f"--flame {tmp_path / 'none.obj'}: no such file"),
                       (("--mediapipe", str(small_face), "--frame-net", str(tmp_path)),
                        "frame-net.safetensors and frame-net.json missing")):
        r = run(*argv)
        assert r.returncode != 0 and r.stdout == ""
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0] and "Traceback" not in r.stderr, r.stderr
