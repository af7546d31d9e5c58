"""How a training job is started: the launch record a job keeps, and the torchrun command lines
(this node's, and the line to run on each other node of a multi-node run)."""
from __future__ import annotations

import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from affectvlm.errors import ConfigError

TRAIN_MODULE = "affectvlm.train"
MAX_RESTARTS = 3  # torchrun restarts a failed worker group; the trainer resumes from its last checkpoint


@dataclass
class TrainLaunch:
    """How a job runs: its run folder, the trainer's arguments (``trainform.trainer_argv`` of the validated
    ``TrainConfig``, passed verbatim), and the torchrun layout."""

    run_dir: Path
    train_args: list[str] = field(default_factory=list)
    nproc_per_node: int = 1
    nnodes: int = 1
    rdzv_endpoint: str = ""
    rdzv_id: str = ""
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "run_dir": str(self.run_dir), "train_args": list(self.train_args)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainLaunch":
        return cls(run_dir=Path(d["run_dir"]), train_args=list(d.get("train_args", [])),
                   nproc_per_node=int(d.get("nproc_per_node", 1)), nnodes=int(d.get("nnodes", 1)),
                   rdzv_endpoint=str(d.get("rdzv_endpoint", "")), rdzv_id=str(d.get("rdzv_id", "")),
                   name=str(d.get("name", "")))

    def validate(self) -> None:
        """``ConfigError`` for process/node counts out of range or a missing rendezvous endpoint."""
        if self.nproc_per_node < 1 or self.nproc_per_node > 1024:
            raise ConfigError(f"processes per node must be 1..1024, got {self.nproc_per_node}")
        if self.nnodes < 1 or self.nnodes > 4096:
            raise ConfigError(f"nodes must be 1..4096, got {self.nnodes}")
        if self.nnodes > 1:
            host, sep, port = self.rdzv_endpoint.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(f"rendezvous endpoint must be HOST:PORT for several nodes, got {self.rdzv_endpoint!r}")


def torchrun_command(cfg: TrainLaunch, *, module: str = TRAIN_MODULE, script: str | None = None,
                     python: str | None = None, resume: bool = False) -> list[str]:
    """The argument list that runs the trainer under torchrun on this node.

    One node: ``--standalone``. Several: c10d rendezvous at ``rdzv_endpoint`` with ``rdzv_id``; the
    very same command runs on every node (see :func:`other_node_command`). ``script`` replaces
    ``-m module`` (tests use a tiny stand-in trainer).
    """
    cfg.validate()
    cmd = [python or sys.executable, "-m", "torch.distributed.run"]
    if cfg.nnodes == 1:
        cmd += ["--standalone", "--nnodes", "1"]
    else:
        cmd += ["--nnodes", str(cfg.nnodes), "--rdzv-backend", "c10d", "--rdzv-endpoint", cfg.rdzv_endpoint,
                "--rdzv-id", cfg.rdzv_id or "affectvlm"]
    cmd += ["--nproc-per-node", str(cfg.nproc_per_node), "--max-restarts", str(MAX_RESTARTS)]
    cmd += [script] if script else ["-m", module]
    args = list(cfg.train_args)
    if resume and "--resume" not in args:
        args.append("--resume")
    return cmd + args


def other_node_command(cfg: TrainLaunch, *, module: str = TRAIN_MODULE) -> str:
    """The exact shell line to run on each of the other nodes of a multi-node run."""
    return shlex.join(torchrun_command(cfg, module=module, python="python"))
