"""Sharded predict: ranks from torchrun / SLURM variables, parts merged by rank 0, and a real two-process
torchrun run that writes the same bytes as one process."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trimesh

from affectvlm.errors import ConfigError
from affectvlm.io.vrml import write_vrml
from affectvlm.shard import Shard, _gather, _part, error_line, shard_from_env
from meshgen import face_like_mesh

ROOT = Path(__file__).resolve().parents[1]


def test_shard_from_env():
    assert shard_from_env({}) is None
    assert shard_from_env({"WORLD_SIZE": "1", "RANK": "0"}) is None
    s = shard_from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "TORCHELASTIC_RUN_ID": "abc"})
    assert s == Shard(rank=3, world=4, local_rank=1, run_id="abc")
    # the batch shell of a 4-task allocation is one process: it must not wait for three others
    assert shard_from_env({"SLURM_NTASKS": "4", "SLURM_PROCID": "0", "SLURM_JOB_ID": "77"}) is None
    s = shard_from_env({"SLURM_STEP_NUM_TASKS": "2", "SLURM_NTASKS": "2", "SLURM_PROCID": "1", "SLURM_LOCALID": "0", "SLURM_JOB_ID": "77",
                        "SLURM_STEP_ID": "0"})
    assert s == Shard(rank=1, world=2, local_rank=0, run_id="slurm-77.0")
    with pytest.raises(ConfigError, match="rank 5"):
        shard_from_env({"WORLD_SIZE": "2", "RANK": "5"})
    with pytest.raises(ConfigError, match="SLURM_STEP_NUM_TASKS"):
        shard_from_env({"SLURM_STEP_NUM_TASKS": "two"})


def test_an_error_every_rank_meets_is_said_by_one_rank_a_node():
    assert error_line("error: x", alike=True, env={}) == "error: x"
    two = {"WORLD_SIZE": "4", "RANK": "1", "LOCAL_RANK": "1"}
    assert error_line("error: x", alike=True, env=two) is None
    assert error_line("error: x", env=two) == "rank 1: error: x"  # its own error: said, naming the rank
    assert error_line("error: x", alike=True, env={**two, "RANK": "2", "LOCAL_RANK": "0"}) == "rank 2: error: x"
    assert error_line("error: x", alike=True, env={**two, "RANK": "0", "LOCAL_RANK": "0"}) == "error: x"
    slurm = {"SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "1", "SLURM_LOCALID": "1"}
    assert error_line("error: x", alike=True, env=slurm) is None
    assert error_line("error: x", alike=True, env={"WORLD_SIZE": "2", "RANK": "9"}) == "error: x"  # bad env: said


def test_a_ranks_own_error_is_said_with_its_rank_and_an_option_error_by_one_rank(inputs, tmp_path, monkeypatch,
                                                                                    capsys):
    from affectvlm import cli

    for k, v in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "TORCHELASTIC_RUN_ID": "t"}.items():
        monkeypatch.setenv(k, v)
    base = ["predict", str(inputs / "F0001_HA04WH_F3D.obj"), "--model", "AffectVLM-Test", "--out", str(tmp_path / "p.csv")]
    assert cli.main([*base, "--views", "0,up"]) == 2
    assert capsys.readouterr().err == ""  # rank 0 says it
    monkeypatch.setattr("affectvlm.model.devices.resolve_device", lambda *a, **k: (_ for _ in ()).throw(
        ConfigError("device 'auto': there is no CUDA device 1 here")))  # a node with one GPU and two ranks
    assert cli.main(base) == 2
    assert capsys.readouterr().err == "affectvlm: rank 1: error: device 'auto': there is no CUDA device 1 here\n"


def test_torchrun_says_a_bad_option_once(inputs, tmp_path):
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "affectvlm", "predict", str(inputs), "--model", "AffectVLM-Test", "--views", "0,up",
                        "--out", str(tmp_path / "p.csv")], capture_output=True, text=True, env=_env(), timeout=600,
                       cwd=tmp_path)
    assert r.returncode != 0
    assert [line for line in r.stderr.splitlines() if "error:" in line and "ChildFailedError" not in line] == [
        "affectvlm: error: bad view 'up' in '0,up': not a number"], r.stderr[-3000:]


def test_gather_skips_other_runs_and_reports_a_failed_rank(tmp_path):
    _part(tmp_path, 0).write_text(json.dumps({"fingerprint": "now", "rows": [[0, [{"file": "a"}]], [2, [{"file": "c"}]]]}))
    _part(tmp_path, 1).write_text(json.dumps({"fingerprint": "old", "rows": [[1, [{"file": "stale"}]]]}))
    with pytest.raises(ConfigError, match=r"ranks \[1\]"):
        _gather(tmp_path, 2, "now", timeout_s=0.3)  # a part of an earlier run is not taken
    _part(tmp_path, 1).write_text(json.dumps({"fingerprint": "now", "rows": [[1, [{"file": "b"}]]]}))
    got = _gather(tmp_path, 2, "now", timeout_s=5)
    assert [got[i][0]["file"] for i in range(3)] == ["a", "b", "c"]
    _part(tmp_path, 1).write_text(json.dumps({"fingerprint": "now", "failed": "OSError: disk full"}))
    with pytest.raises(ConfigError, match="rank 1 failed: OSError: disk full"):
        _gather(tmp_path, 2, "now", timeout_s=5)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("shard")
    for i, code in enumerate(("AN", "DI", "HA", "SA", "SU")):
        m = face_like_mesh(24, smile=i / 4)
        if i % 2:
            write_vrml(d / f"F0001_{code}04WH_F3D.wrl", m, write_texture=False)
        else:
            trimesh.Trimesh(m.vertices, m.faces, process=False).export(d / f"F0001_{code}04WH_F3D.obj")
    (d / "F0001_broken.ply").write_text("ply\nformat ascii 1.0\nelement vertex 3\nend_header\n1 2\n")
    seq = d / "F0002" / "Happy"
    seq.mkdir(parents=True)
    for i in range(3):
        write_vrml(seq / f"{i:03d}.wrl", face_like_mesh(20, smile=i / 2), write_texture=False)
    return d


def _env() -> dict:
    # torchrun gives each of several ranks one OpenMP thread; the one-process run is given the same
    return dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
                PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


@pytest.mark.parametrize("suffix", [".json", pytest.param(".csv", marks=pytest.mark.slow)])
def test_torchrun_two_processes_write_the_single_process_bytes(inputs, tmp_path, suffix):
    args = ["predict", str(inputs), "--model", "AffectVLM-Test", "--views", "0,30", "--batch-size", "2",
            "--device", "cpu", "--no-progress", "--landmarks"]
    one = subprocess.run([sys.executable, "-m", "affectvlm", *args, "--out", str(tmp_path / f"one{suffix}")],
                         capture_output=True, text=True, env=_env(), timeout=600)
    assert one.returncode == 1, one.stderr  # the broken file
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "affectvlm", *args, "--out", str(tmp_path / f"two{suffix}")],
                         capture_output=True, text=True, env=_env(), timeout=600, cwd=tmp_path)
    assert two.returncode == 1, two.stderr  # rank 0 reports the broken file like a single run
    a, b = (tmp_path / f"one{suffix}").read_bytes(), (tmp_path / f"two{suffix}").read_bytes()
    assert a == b
    assert not (tmp_path / f".two{suffix}.parts").exists()  # the parts are removed after the merge
    if suffix == ".json":
        rows = json.loads(a)
        assert len(rows) == 5 + 1 + 4 and sum(not r["success"] for r in rows) == 1
        assert [r["frame"] for r in rows if "Happy" in r["file"]] == ["0", "1", "2", "sequence"]
    assert two.stderr.count("F0001_broken.ply") == 1  # reported once, by the rank that scored it


def test_sharded_run_needs_out(inputs):
    env = dict(_env(), WORLD_SIZE="2", RANK="1")
    r = subprocess.run([sys.executable, "-m", "affectvlm", "predict", str(inputs), "--model", "AffectVLM-Test"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and "need --out" in r.stderr


def test_torchrun_adapts_like_a_single_process(tmp_path):
    # every rank draws the same sample, decides alike and gathers the same statistics: the merged file is the
    # one-process file, byte for byte
    d = tmp_path / "set"
    d.mkdir()
    for i in range(22):
        m = face_like_mesh(16, smile=(i % 5) / 4, seed=i)
        trimesh.Trimesh(m.vertices, m.faces, process=False).export(d / f"S{i:02d}_x.obj")
    args = ["predict", *sorted(str(f) for f in d.iterdir()), "--model", "default", "--views", "0",  # it has batch norm
            "--device", "cpu", "--no-progress", "--adapt", "on"]
    one = subprocess.run([sys.executable, "-m", "affectvlm", *args, "--out", str(tmp_path / "one.json")],
                         capture_output=True, text=True, env=_env(), timeout=600)
    assert one.returncode == 0, one.stderr
    assert "--adapt on: scored with the image encoder's statistics of 22 of these inputs" in one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "affectvlm", *args, "--out", str(tmp_path / "two.json")],
                         capture_output=True, text=True, env=_env(), timeout=600, cwd=tmp_path)
    assert two.returncode == 0, two.stderr
    assert (tmp_path / "one.json").read_bytes() == (tmp_path / "two.json").read_bytes()
    plain = subprocess.run([sys.executable, "-m", "affectvlm", *args[:-2], "--out", str(tmp_path / "plain.json")],
                           capture_output=True, text=True, env=_env(), timeout=600)
    assert plain.returncode == 0 and (tmp_path / "plain.json").read_bytes() != (tmp_path / "one.json").read_bytes()


def test_a_rank_whose_model_preparation_fails_says_so_in_its_part(inputs, tmp_path):
    from affectvlm.shard import Shard, parts_dir, predict_sharded

    def fails(model):
        raise MemoryError("no room for the adapted copy")

    out = tmp_path / "r.json"
    with pytest.raises(MemoryError):
        predict_sharded([str(inputs / "F0001_AN04WH_F3D.obj")], "AffectVLM-Test", out,
                        Shard(rank=1, world=2, local_rank=1, run_id="t"), prepare_model=fails, workers=0)
    part = json.loads(_part(parts_dir(out, "t"), 1).read_text())
    assert part["failed"] == "MemoryError: no room for the adapted copy"  # rank 0 stops waiting and says so


def test_two_sharded_runs_writing_one_out_keep_their_parts_apart(inputs, tmp_path):
    """The first run to finish removed the shared parts folder; the other's rank 0 then crashed (or waited a day)."""
    from affectvlm.shard import Shard, parts_dir, predict_sharded

    out, scan = tmp_path / "r.json", [str(inputs / "F0001_AN04WH_F3D.obj")]
    for shard in (Shard(1, 2, 1, "run-a"), Shard(1, 2, 1, "run-b"), Shard(0, 2, 0, "run-b")):
        predict_sharded(scan, "AffectVLM-Test", out, shard, workers=0)
    assert out.is_file() and not parts_dir(out, "run-b").exists()
    assert _part(parts_dir(out, "run-a"), 1).is_file()  # run a's rank 0 will still find its rank 1's part


def test_rank_zero_refuses_the_part_of_a_rank_that_found_another_set_frame(inputs, tmp_path, monkeypatch):
    import affectvlm.predict as P
    from affectvlm.setframe import SetFrame
    from affectvlm.shard import Shard, predict_sharded

    out, scan = tmp_path / "r.json", [str(inputs / "F0001_AN04WH_F3D.obj")]
    monkeypatch.setattr(P, "find_set_frame", lambda items, o: SetFrame("+y", "+z", 9, 10))
    predict_sharded(scan, "AffectVLM-Test", out, Shard(1, 2, 1, "t"), workers=0)
    monkeypatch.setattr(P, "find_set_frame", lambda items, o: SetFrame("-y", "+z", 9, 10))
    with pytest.raises(ConfigError, match=r"ranks \[1\]"):
        predict_sharded(scan, "AffectVLM-Test", out, Shard(0, 2, 0, "t"), workers=0, timeout_s=0.5)
