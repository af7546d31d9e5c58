"""Process-group set-up for torchrun (RANK/WORLD_SIZE/LOCAL_RANK) and SLURM inside an srun step (SLURM_PROCID/
SLURM_STEP_NUM_TASKS/SLURM_LOCALID/SLURM_NODELIST; :func:`affectvlm.shard.launch_from_env`), in the spirit of
torchvision's references/classification/utils.py.

gloo on CPU, nccl when CUDA is used. Without any of those variables the run is a single process.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.distributed as dist

from affectvlm.errors import AffectVLMError, ConfigError, InputError, ModelError
from affectvlm.model.devices import resolve_device
from affectvlm.shard import launch_from_env


@dataclass
class DistInfo:
    distributed: bool = False
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def first_slurm_host(nodelist: str) -> str:
    """``node[01-04,07]-ib,other`` -> ``node01-ib`` (what ``scontrol show hostnames | head -1`` gives)."""
    m = re.match(r"^([^\[,]+)(?:\[([^\]]+)\]([^,]*))?", nodelist.strip())
    if not m:
        return nodelist
    prefix, rng, suffix = m.group(1), m.group(2), m.group(3) or ""
    if not rng:
        return prefix
    first = rng.split(",")[0].split("-")[0]
    return prefix + first + suffix


def slurm_port(env: Mapping[str, str]) -> str:
    """A rendezvous port of this SLURM job's own (two jobs sharing a node must not meet on one port)."""
    job = env.get("SLURM_JOB_ID", "")
    return str(20000 + int(job) % 20000) if job.isdigit() else "29500"


def init_distributed_mode(device: str = "auto", timeout_s: int = 1800) -> DistInfo:
    """Initialise the default process group from the environment; returns who we are."""
    import datetime

    env = os.environ
    launch = launch_from_env(env)
    rank, world, local = launch.rank, launch.world, launch.local_rank
    if launch.slurm and world > 1:
        env.setdefault("MASTER_ADDR", first_slurm_host(env.get("SLURM_NODELIST", "127.0.0.1")))
        env.setdefault("MASTER_PORT", slurm_port(env))
        env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"] = str(rank), str(world), str(local)
    dev = resolve_device(device, local_rank=local)
    use_cuda = dev.type == "cuda"
    if use_cuda:
        torch.cuda.set_device(dev)
    dev = str(dev)
    if world <= 1:
        return DistInfo(device=dev)
    backend = "nccl" if use_cuda else "gloo"
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=timeout_s)
        store, rank, world = next(dist.rendezvous("env://", rank, world, timeout=timeout))
        # torchrun restarts a failed group on the same store: without a prefix per attempt, the new ranks can read
        # the dead ranks' addresses and fail with "connection refused" (pytorch/pytorch#167288)
        attempt = env.get("TORCHELASTIC_RESTART_COUNT", "0")
        dist.init_process_group(backend=backend, store=dist.PrefixStore(f"affectvlm/attempt{attempt}", store),
                                rank=rank, world_size=world, timeout=timeout)
    return DistInfo(True, rank, world, local, backend, dev)


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_reduce_mean(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.distributed:
        x = x.clone()
        dist.all_reduce(x)
        x /= info.world_size
    return x


def broadcast_object(obj, info: DistInfo):
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def share_failure(error: AffectVLMError | None, info: DistInfo) -> AffectVLMError | None:
    """The failure of the lowest rank that failed a phase every rank runs, on every rank (None when none did):
    all raise it, so a bad scan in rank 1's share is the run's reason, not rank 0's closed connection. The error
    returned under a distributed run is marked ``shared``."""
    if not info.distributed:
        return error
    mine = None if error is None else (type(error).__name__, getattr(error, "source", None),
                                       getattr(error, "problem", None), str(error))
    got: list = [None] * info.world_size
    dist.all_gather_object(got, mine)
    first = next((g for g in got if g is not None), None)
    if first is None:
        return error
    if first != mine:
        name, source, problem, text = first
        error = (InputError(source, problem) if name == "InputError"
                 else ModelError(text) if name == "ModelError" else ConfigError(text))
    error.shared = True  # every rank raises it: one says it (train.main)
    return error


def cleanup(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()
