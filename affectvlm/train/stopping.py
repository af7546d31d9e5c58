"""Stopping on a signal without losing work: SIGTERM (the app's Stop, ``scancel``; SIGHUP and a first Ctrl-C alike)
and SIGUSR1 (SLURM's pre-emption warning, ``#SBATCH --signal=USR1@120``; torchrun forwards it with
``--signals-to-handle``).

While optimizer steps run, a signal only sets a flag; after each step every rank agrees (one all-reduce)
and the trainer writes a complete checkpoint of the step it reached, then exits: 130 after SIGTERM
(status ``stopped``), :data:`PREEMPTED_EXIT` after SIGUSR1 (status ``preempted``; the SLURM template
requeues the job on it and the requeued trainer resumes by itself). Outside the steps (rendering the
cache, the final test) the signal stops the trainer at once, as Ctrl-C does. A signal that arrives twice
(SLURM signals the whole step, torchrun forwards it again) is one request; SIGUSR1 wins over SIGTERM. A second
Ctrl-C stops at once, without the checkpoint.
"""
from __future__ import annotations

import contextlib
import os
import signal
from typing import Iterator

import torch
import torch.distributed as dist

from affectvlm.shard import launch_from_env
from affectvlm.train.distributed import DistInfo

PREEMPTED_EXIT = 75  # EX_TEMPFAIL ("try again later"): checkpoint written, requeue me
STOPPED_EXIT = 130
# SIGHUP (a closed terminal, srun) and SIGINT (Ctrl-C) as SIGTERM
_CODES = {signal.SIGTERM: 1, signal.SIGHUP: 1, signal.SIGINT: 1, signal.SIGUSR1: 2}


@contextlib.contextmanager
def system_stop_signals() -> Iterator[None]:
    """Inside: SIGTERM, SIGHUP and Ctrl-C at their system default (the process ends), for waits in C++ (the
    rendezvous), where Python's handlers never run. Used before :class:`StopSignals` is installed."""
    ending = [s for s, code in _CODES.items() if code == 1]
    old = {s: signal.getsignal(s) for s in ending}
    try:
        for s in ending:
            signal.signal(s, signal.SIG_DFL)
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class StopTraining(KeyboardInterrupt):
    """Raised to end training on ``signum`` (after the checkpoint, when one could be written)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signal.Signals(signum)

    @property
    def preempted(self) -> bool:
        return self.signum == signal.SIGUSR1


class StopSignals:
    """The SIGTERM / SIGUSR1 handler of one trainer process."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._deferring = False

    def install(self) -> "StopSignals":
        for s in _CODES:
            signal.signal(s, self._on_signal)
        return self

    def _on_signal(self, signum: int, frame) -> None:
        # a repeat (torchrun forwards the signal its process group already got) still waits for the step;
        # a second Ctrl-C is someone at the terminal who will not wait
        again = signum == signal.SIGINT and self.received == signal.SIGINT
        if self.received is None or signum == signal.SIGUSR1:
            self.received = signal.Signals(signum)
        if not self._deferring or again:
            raise StopTraining(signum)
        if signum == signal.SIGINT and launch_from_env().rank == 0:
            os.write(2, b"stopping after this step, with a checkpoint (Ctrl-C again: stop now, without it)\n")

    @contextlib.contextmanager
    def deferred(self) -> Iterator["StopSignals"]:
        """Inside: signals only set the flag (checked with :meth:`agreed` at safe points)."""
        self._deferring = True
        try:
            if self.received is not None:
                raise StopTraining(self.received)
            yield self
        finally:
            self._deferring = False

    def agreed(self, info: DistInfo) -> signal.Signals | None:
        """The signal any rank received (all ranks get the same answer, so they stop at the same step)."""
        code = _CODES.get(self.received, 0) if self.received is not None else 0
        if info.distributed:
            t = torch.tensor([code], dtype=torch.int32, device=info.device if info.backend == "nccl" else "cpu")
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            code = int(t.item())
        return next((s for s, c in _CODES.items() if c == code), None)
