"""``predict`` over many processes: under torchrun (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``) or SLURM
inside an ``srun`` step (``SLURM_PROCID``/``SLURM_STEP_NUM_TASKS``/``SLURM_LOCALID``; the batch shell of a
multi-task allocation is one process, so ``SLURM_NTASKS`` alone does not shard) each process scores every ``world``-th work unit of the
expanded inputs (:func:`affectvlm.predict.plan`: the same batches a single process encodes), writes its rows
to a part file atomically, and rank 0 waits for all parts and writes the one result file, in input order: the
same bytes as a one-process run with the same torch thread count. Only files are shared (no NCCL, no
rendezvous of our own); the output's folder must be visible to every rank.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from affectvlm.errors import ConfigError
from affectvlm.fileio import atomic_write_text
from affectvlm.inputs import Input, Item
from affectvlm.results import Row, write_rows

WAIT_ENV = "AFFECTVLM_SHARD_TIMEOUT"  # seconds rank 0 waits for the other parts (default a day)


@dataclass(frozen=True)
class Shard:
    """This process's place in a multi-process run."""

    rank: int
    world: int
    local_rank: int
    run_id: str


def _int(env: Mapping[str, str], name: str) -> int | None:
    text = env.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"environment variable {name}={text!r} is not a whole number") from None


@dataclass(frozen=True)
class Launch:
    """Who this process is among the processes its launcher started: torchrun's RANK / WORLD_SIZE / LOCAL_RANK, or
    inside an ``srun`` step SLURM_PROCID / SLURM_STEP_NUM_TASKS / SLURM_LOCALID (``slurm``). The batch shell of a
    multi-task allocation is one process: SLURM_NTASKS alone says how many tasks srun would start, not that they
    run."""

    rank: int
    world: int
    local_rank: int
    slurm: bool


def launch_from_env(env: Mapping[str, str] | None = None) -> Launch:
    """This process's :class:`Launch` (rank 0 of 1 without a launcher); ConfigError for a rank outside the world."""
    env = os.environ if env is None else env
    if _int(env, "WORLD_SIZE") is not None:
        rank, world, local, slurm = _int(env, "RANK"), _int(env, "WORLD_SIZE"), _int(env, "LOCAL_RANK"), False
    elif _int(env, "SLURM_STEP_NUM_TASKS") is not None:
        rank, world, local = _int(env, "SLURM_PROCID"), _int(env, "SLURM_STEP_NUM_TASKS"), _int(env, "SLURM_LOCALID")
        slurm = True
    else:
        return Launch(0, 1, 0, False)
    assert world is not None
    if world < 1:
        raise ConfigError(f"world size {world} is not a number of processes (check WORLD_SIZE / SLURM_STEP_NUM_TASKS)")
    if world > 1 and (rank is None or not 0 <= rank < world):
        raise ConfigError(f"rank {rank} is not in [0, {world}) (check RANK / SLURM_PROCID)")
    return Launch(rank or 0, world, local or 0, slurm)


def error_line(message: str, *, alike: bool = False, env: Mapping[str, str] | None = None) -> str | None:
    """``message`` as this process should say it, or None to stay quiet: under torchrun or SLURM a rank other than 0
    names itself, and an error every rank meets alike (the same options, checked before the ranks meet) is said by
    one rank per node."""
    try:
        launch = launch_from_env(env)
    except ConfigError:
        return message
    if launch.world <= 1:
        return message
    if alike and launch.local_rank != 0:
        return None
    return message if launch.rank == 0 else f"rank {launch.rank}: {message}"


def shard_from_env(env: Mapping[str, str] | None = None) -> Shard | None:
    """The torchrun or SLURM rank of this process, or None for a single process (world size 1)."""
    env = os.environ if env is None else env
    launch = launch_from_env(env)
    if launch.world <= 1:
        return None
    run = (f"slurm-{env.get('SLURM_JOB_ID', '')}.{env.get('SLURM_STEP_ID', '')}" if launch.slurm
           else env.get("TORCHELASTIC_RUN_ID", ""))
    if not run or run == "none":
        run = f"ppid-{os.getppid()}"  # torchrun without a rendezvous id: the launcher is the ranks' parent
    return Shard(launch.rank, launch.world, launch.local_rank, run)


def _fingerprint(items: Sequence[Item], extra: str) -> str:
    h = hashlib.sha256(extra.encode())
    for it in items:
        h.update(f"\0{it.kind}\0{it.source}".encode())
    return h.hexdigest()[:16]


def parts_dir(out: Path, run_id: str) -> Path:
    """Where the ranks of run ``run_id`` leave their parts of ``out``: a folder per run, so two runs writing one
    ``--out`` neither read nor remove each other's parts."""
    return out.parent / f".{out.name}.parts" / hashlib.sha256(run_id.encode()).hexdigest()[:12]


def _part(folder: Path, rank: int) -> Path:
    return folder / f"rank{rank:05d}.json"


def predict_sharded(inputs: Input | Sequence[Input], model: object, out: str | os.PathLike, shard: Shard, *,
                    landmarks: bool = False, progress: bool = False, on_row: Callable[[Row], None] | None = None,
                    timeout_s: float | None = None, prepare_model: Callable[[Any], Any] | None = None,
                    **kw: object) -> list[Row]:
    """Score this rank's share of ``inputs`` (keywords as :func:`affectvlm.predict.predict`) and write its
    part; rank 0 then writes ``out`` from all parts and returns every row, other ranks return their own.
    ``prepare_model`` (e.g. :func:`affectvlm.adapt.adapt_for`) turns the model into the one to score with first; if it
    fails, the rank's part says so, as when scoring fails."""
    from affectvlm.predict import _setup, plan, score_items

    out = Path(out)
    if out.suffix.lower() not in (".csv", ".json"):
        raise ConfigError(f"{out}: output must end in .csv or .json")
    o, items = _setup(inputs, model, **kw)  # type: ignore[arg-type]
    units = plan(items, o.batch_size)
    folder = parts_dir(out, shard.run_id)
    # the set's face frame too: ranks that found different ones would orient alike scans differently
    fp = _fingerprint(items, f"{shard.run_id}|{shard.world}|{o.model.spec}|{len(units)}|{o.set_frame}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{folder}: cannot write the ranks' parts ({e.strerror or e})") from None
    mine: dict[int, list[Row]] = {}
    part = {"fingerprint": fp, "rank": shard.rank, "world": shard.world}
    try:
        if prepare_model is not None:
            o = replace(o, model=prepare_model(o.model))
        for i, row in score_items(items, o, units[shard.rank::shard.world], progress=progress, on_row=on_row):
            mine.setdefault(i, []).append(row)
    except BaseException as e:  # tell rank 0 instead of leaving it waiting
        atomic_write_text(_part(folder, shard.rank), json.dumps({**part, "failed": f"{type(e).__name__}: {e}"}))
        raise
    atomic_write_text(_part(folder, shard.rank), json.dumps({**part, "rows": [[i, r] for i, r in mine.items()]}))
    if shard.rank != 0:
        return [r for rows in mine.values() for r in rows]
    by_item = _gather(folder, shard.world, fp, timeout_s)
    merged = [r for i in range(len(items)) for r in by_item.get(i, [])]
    write_rows(merged, out, landmarks=landmarks)
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        folder.parent.rmdir()  # only when no other run's parts are there
    return merged


def _gather(folder: Path, world: int, fp: str, timeout_s: float | None) -> dict[int, list[Row]]:
    """Wait for every rank's part of this run (older runs' parts are ignored) and read them."""
    wait = float(timeout_s if timeout_s is not None else os.environ.get(WAIT_ENV, 86400))
    deadline = time.monotonic() + wait
    got: dict[int, dict] = {}
    while len(got) < world:
        for r in range(world):
            if r in got:
                continue
            try:
                data = json.loads(_part(folder, r).read_text("utf-8"))
            except (OSError, ValueError):
                continue  # not there yet (parts appear whole: they are renamed into place)
            if data.get("fingerprint") != fp:
                continue  # a part left by another run
            if "failed" in data:
                raise ConfigError(f"rank {r} failed: {data['failed']}")
            got[r] = data
        if len(got) < world:
            if time.monotonic() > deadline:
                missing = sorted(set(range(world)) - set(got))
                raise ConfigError(f"waited {wait:g} s for the parts of ranks {missing} in {folder} ({WAIT_ENV})")
            time.sleep(0.1)
    by_item: dict[int, list[Row]] = {}
    for data in got.values():
        for i, rows in data["rows"]:
            by_item.setdefault(int(i), []).extend(rows)
    return by_item
