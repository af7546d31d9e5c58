"""A training run folder as the Train page shows it, read through :mod:`affectvlm.runfolder` (the contract
the trainer writes): the job status a trainer's final word means, the remaining time, the log's tail."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

from affectvlm.runfolder import MetricRecord, RunFolder, RunStatus, Status

# a trainer's final word -> the job's status (preempted: a checkpoint was written; Resume continues it)
JOB_STATUS = {Status.FINISHED: Status.FINISHED, Status.FAILED: Status.FAILED, Status.CRASHED: Status.FAILED,
              Status.STOPPED: Status.STOPPED, Status.PREEMPTED: Status.STOPPED}


def job_status(status: RunStatus | None) -> Status | None:
    """The job status a trainer's ``status.json`` gives once it ended (None while running or unknown)."""
    return JOB_STATUS.get(status.status) if status is not None else None


def tail(path: str | os.PathLike, n_lines: int = 40, *, max_bytes: int = 64 * 1024) -> str:
    """The last ``n_lines`` of a (log) file, reading at most ``max_bytes`` from its end."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-n_lines:])


def last_error_line(run_dir: str | os.PathLike) -> str:
    """The trainer's last ``error: ...`` line in ``stdout.log`` (its one-line reason for exiting)."""
    for line in reversed(tail(RunFolder(Path(run_dir)).stdout_log, 200).splitlines()):  # under torchrun's traceback
        if line.startswith("error: "):
            return line[len("error: "):].strip()
    return ""


def finite(x: Any) -> float | None:
    """``x`` as a float when it is a finite number (not a bool), else None."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def epoch_text(records: Sequence[MetricRecord], status: RunStatus | None = None) -> str:
    """The epoch a run is in, counted from 1 as the trainer's log counts it (records count from 0), of how many:
    ``"3 / 24"``; ``"–"`` before the first record."""
    last = next((r.epoch for r in reversed(records) if r.epoch is not None), None)
    if last is None:
        return "–"
    total = status.epochs if status is not None and status.epochs else None
    return f"{last + 1}" + (f" / {total}" if total else "")


def eta_seconds(records: Sequence[MetricRecord], status: RunStatus | None = None) -> float | None:
    """Remaining time: the trainer's own ``eta_s`` in its latest records, else extrapolated from the
    epochs done (``epoch`` of ``epochs``, from the records or ``status``) over the records' ``time``."""
    for rec in reversed(records[-5:]):
        if finite(rec.eta_s) is not None:
            return max(0.0, rec.eta_s)
    timed = [r for r in records if finite(r.get("time")) is not None and r.epoch is not None]
    if len(timed) < 2:
        return None
    first, last = timed[0], timed[-1]
    total = finite(last.get("epochs")) or (status.epochs if status is not None else None)
    if not total or last.epoch <= first.epoch:
        return None
    rate = (last.get("time") - first.get("time")) / (last.epoch - first.epoch)
    return max(0.0, (total - last.epoch) * rate)


def fmt_duration(s: float | None) -> str:
    if s is None:
        return "–"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h {m:02d}m" if h else (f"{m}m {sec:02d}s" if m else f"{sec}s")
