"""The run-folder contract: what the trainer writes into ``--out`` and what the app and ``eval`` read back.

A run folder holds (names in :class:`RunFolder`)::

    config.yaml         the resolved TrainConfig (reloaded by resume)
    splits.json         train / val / test subjects (:class:`SplitsRecord`)
    status.json         the trainer's current word and progress (:class:`RunStatus`), replaced atomically
    metrics.jsonl       one JSON object per line (:class:`MetricRecord`), appended; a torn last line is skipped
    train.log           the trainer's log (rank 0)
    stdout.log          the launcher's captured output (written by the app's job store)
    result.json         the final summary, written once at the end
    checkpoints/epoch_NNNN/   complete resumable checkpoints (see affectvlm.train.checkpointing)
    best/               the model chosen on validation subjects, loadable by ``load_model``
    tensorboard/        TensorBoard events (``--report-to tensorboard``)
    .lock               held (flock) by the one live trainer of the folder

Only the standard library and :mod:`affectvlm.fileio` are used here: the trainer writes through this module,
the app and ``affectvlm eval`` read through it, and neither side guesses at the other's keys.
"""
from __future__ import annotations

import errno
import fcntl
import json
import math
import logging
import os
import re
import socket
import time
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any, Iterable

from affectvlm.errors import ConfigError
from affectvlm.fileio import atomic_write_text

log = logging.getLogger("affectvlm.runfolder")

PathLike = str | os.PathLike


# ----------------------------------------------------------------------------- file names

@dataclass(frozen=True)
class RunFolder:
    """The paths of one run folder (nothing is created or read)."""
    root: Path

    CONFIG = "config.yaml"
    SPLITS = "splits.json"
    STATUS = "status.json"
    METRICS = "metrics.jsonl"
    TRAIN_LOG = "train.log"
    STDOUT_LOG = "stdout.log"
    RESULT = "result.json"
    CHECKPOINTS = "checkpoints"
    BEST = "best"
    TENSORBOARD = "tensorboard"
    WANDB = "wandb"
    LOCK = ".lock"

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    config = property(lambda self: self.root / self.CONFIG)
    splits = property(lambda self: self.root / self.SPLITS)
    status = property(lambda self: self.root / self.STATUS)
    metrics = property(lambda self: self.root / self.METRICS)
    train_log = property(lambda self: self.root / self.TRAIN_LOG)
    stdout_log = property(lambda self: self.root / self.STDOUT_LOG)
    result = property(lambda self: self.root / self.RESULT)
    checkpoints = property(lambda self: self.root / self.CHECKPOINTS)
    best = property(lambda self: self.root / self.BEST)
    tensorboard = property(lambda self: self.root / self.TENSORBOARD)
    wandb = property(lambda self: self.root / self.WANDB)
    lock = property(lambda self: self.root / self.LOCK)

    def has_model(self) -> bool:
        """Whether ``best/`` holds an exported model."""
        return (self.best / "affectvlm.json").is_file()

    def is_run(self) -> bool:
        """A finished-enough run to evaluate: a saved config and a ``best/`` model."""
        return self.config.is_file() and self.best.is_dir()


def write_json(path: PathLike, obj: Any) -> None:
    """``obj`` as indented JSON, replaced atomically (numpy / torch scalars as floats)."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=float))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _json(text: str) -> Any:
    """Strict JSON of a file the trainer wrote (anyone who can write the folder may have changed it): no
    Infinity/NaN; nesting too deep for the parser is a ValueError, as any other unreadable file."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _read_json_object(path: Path) -> dict | None:
    try:
        data = _json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# ----------------------------------------------------------------------------- status.json

class Status(str, Enum):
    """The words of ``status.json``. The trainer writes the first five; readers derive ``crashed``."""
    RUNNING = "running"      # rendering the cache or training (``phase`` says which)
    FINISHED = "finished"    # result.json written
    FAILED = "failed"        # ``message`` (and ``reason``, the error type) say why
    STOPPED = "stopped"      # SIGTERM / Ctrl-C: a deliberate stop, not resumed by itself
    PREEMPTED = "preempted"  # SIGUSR1 (SLURM pre-emption): a complete checkpoint was written; requeue resumes
    CRASHED = "crashed"      # read side only: ``running`` in the file, but the trainer is gone

    @property
    def terminal(self) -> bool:
        return self is not Status.RUNNING


@dataclass
class RunStatus:
    """The content of ``status.json``."""
    status: Status
    pid: int | None = None
    host: str | None = None
    updated: float | None = None
    phase: str | None = None          # while running: "rendering" before the first step
    epoch: int | None = None          # epochs completed
    epochs: int | None = None
    step: int | None = None           # optimizer steps completed
    best_acc: float | None = None
    test_accuracy: float | None = None
    message: str = ""
    reason: str = ""                  # the error's type name when failed
    stale: bool = False               # read side: a ``running`` file whose trainer is gone (-> crashed)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("extra", "stale") and v not in (None, "")}
        d["status"] = self.status.value
        return {**self.extra, **d}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "RunStatus":
        """Lenient: an unknown word becomes ``failed`` with the word kept in ``extra['word']``."""
        known = {f.name for f in fields(cls)} - {"extra", "status", "stale"}
        word = str(d.get("status") or "").lower()
        try:
            status = Status(word)
        except ValueError:
            status = Status.FAILED
        extra = {k: v for k, v in d.items() if k not in known and k != "status"}
        if status.value != word:
            extra["word"] = word
        kw = {k: d[k] for k in known if k in d}
        for k in ("pid", "epoch", "epochs", "step"):
            kw[k] = _int_or_none(kw.get(k))
        for k in ("updated", "best_acc", "test_accuracy"):
            kw[k] = _float_or_none(kw.get(k))
        kw["message"] = str(kw.get("message") or "")
        kw["reason"] = str(kw.get("reason") or "")
        return cls(status=status, extra=extra, **kw)


def write_status(run_dir: PathLike, status: Status | str, **values: Any) -> RunStatus:
    """Replace ``status.json`` atomically with ``status``, this process's pid and host and the time."""
    known = {f.name for f in fields(RunStatus)} - {"extra", "status", "stale"}
    rec = RunStatus(Status(status), pid=os.getpid(), host=socket.gethostname(), updated=time.time(),
                    **{k: v for k, v in values.items() if k in known},
                    extra={k: v for k, v in values.items() if k not in known})
    write_json(RunFolder(run_dir).status, rec.to_json())
    return rec


def read_status(run_dir: PathLike) -> RunStatus | None:
    """``status.json`` as a :class:`RunStatus`; None when missing or unreadable.

    A ``running`` status whose trainer is gone (the run folder's lock is free, or without a lock file
    its pid is dead on this host) comes back as ``crashed`` with ``stale=True``: a kill leaves no final word."""
    data = _read_json_object(RunFolder(run_dir).status)
    if data is None:
        return None
    st = RunStatus.from_json(data)
    if st.status is Status.RUNNING and trainer_gone(run_dir, st):
        st.status, st.stale = Status.CRASHED, True
        st.message = (f"the trainer{f' (pid {st.pid})' if st.pid else ''} ended without a final status "
                      "(crashed or killed); resume continues from the last complete checkpoint")
    return st


def trainer_gone(run_dir: PathLike, status: RunStatus) -> bool:
    """Whether the trainer that wrote a ``running`` status has ended (False when it cannot be known here)."""
    locked = run_dir_locked(run_dir)
    if locked is not None:
        return not locked
    if status.host and status.host != socket.gethostname():
        return False  # another machine's trainer: its pid means nothing here
    if not status.pid or status.pid <= 0:
        return False
    return not pid_alive(status.pid)


def pid_alive(pid: int) -> bool:
    """A live (not zombie) process with this pid on this machine."""
    if not isinstance(pid, int) or not 0 < pid < 1 << 22:  # Linux's largest pid_max; os.kill overflows beyond
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return not Path("/proc").is_dir()  # no procfs: trust kill(0)
    return stat[stat.rfind(")") + 2:].split()[0] not in ("Z", "X")


# ----------------------------------------------------------------------------- metrics.jsonl

class MetricKind(str, Enum):
    TRAIN = "train"   # every 10 optimizer steps (and the first)
    EPOCH = "epoch"   # once per epoch: means of the epoch's steps, validation, best so far


@dataclass
class MetricRecord:
    """One line of ``metrics.jsonl``. Named fields are the keys every reader may rely on; the rest
    (loss terms ``mc``/``mt``/``clip``/``ce``/``alpha``/``spread``, ``val_*`` metrics, ``cache``, ...) are in
    ``values``. The file stays flat JSON: :meth:`to_json` merges ``values`` back in."""
    kind: str = ""                        # MetricKind value; empty in files of other writers
    epoch: int | None = None              # 0-based epoch index
    step: int | None = None               # optimizer steps completed (global over ranks)
    lr: float | None = None
    loss: float | None = None
    samples_per_s: float | None = None
    eta_s: float | None = None            # seconds left for the whole run
    val_accuracy: float | None = None
    best_val_accuracy: float | None = None
    values: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        named = {k: v for k, v in asdict(self).items() if k != "values" and v is not None and v != ""}
        return {**named, **{k: v for k, v in self.values.items() if k not in named}}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "MetricRecord":
        names = {f.name for f in fields(cls)} - {"values"}
        kw = {k: d[k] for k in names if k in d}
        kw["kind"] = str(kw.get("kind") or "")
        for k in ("epoch", "step"):
            kw[k] = _int_or_none(kw.get(k))
        for k in ("lr", "loss", "samples_per_s", "eta_s", "val_accuracy", "best_val_accuracy"):
            kw[k] = _float_or_none(kw.get(k))
        return cls(values={k: v for k, v in d.items() if k not in names}, **kw)

    def get(self, key: str, default: Any = None) -> Any:
        """A named field or an entry of ``values`` by its key in the file."""
        v = getattr(self, key, None) if key in _METRIC_FIELDS else self.values.get(key)
        return default if v is None else v


_METRIC_FIELDS = frozenset(f.name for f in fields(MetricRecord)) - {"values"}
METRIC_KEYS = tuple(sorted(_METRIC_FIELDS))


def read_metric_lines(path: PathLike) -> tuple[list[dict], int]:
    """(records, bad line count) of a ``metrics.jsonl``: undecodable, non-JSON, non-object lines or lines
    whose ``epoch`` is not an integer are skipped (a torn last line after a kill, a stray byte, a foreign line)."""
    try:
        raw = Path(path).read_bytes()
    except OSError:
        return [], 0
    out, bad = [], 0
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            rec = _json(line.decode("utf-8"))
            if not isinstance(rec, dict):
                raise ValueError("not an object")
            if "epoch" in rec:
                int(rec["epoch"])
        except (UnicodeDecodeError, ValueError, TypeError, OverflowError):
            bad += 1
            continue
        out.append(rec)
    return out, bad


def read_metrics(run_dir: PathLike, *, max_records: int | None = None) -> list[MetricRecord]:
    """The records of ``RUN_DIR/metrics.jsonl`` in file order (the first ``max_records``), bad lines
    skipped with a warning; [] when there is no file yet."""
    path = RunFolder(run_dir).metrics
    recs, bad = read_metric_lines(path)
    if bad:
        log.warning("%s: skipped %d unreadable line(s)", path, bad)
    if max_records is not None:
        recs = recs[:max_records]
    return [MetricRecord.from_json(r) for r in recs]


def append_metric(run_dir: PathLike, record: MetricRecord | dict[str, Any]) -> None:
    """Append one line to ``metrics.jsonl`` and flush (readers tail the file while training runs)."""
    path = RunFolder(run_dir).metrics
    path.parent.mkdir(parents=True, exist_ok=True)
    d = record.to_json() if isinstance(record, MetricRecord) else record
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(d, default=float) + "\n")
        fh.flush()


def truncate_metrics(run_dir: PathLike, last_epoch: int, last_step: int | None = None) -> None:
    """On resume: keep the records up to ``last_epoch`` (and with ``last_step``, up to that optimizer step:
    a checkpoint taken inside an epoch); later ones are produced again. Bad lines are dropped."""
    path = RunFolder(run_dir).metrics
    if not path.exists():
        return
    recs, bad = read_metric_lines(path)
    if bad:
        log.warning("%s: skipped %d unreadable line(s)", path, bad)
    keep = [r for r in recs if int(r.get("epoch", -1)) <= last_epoch
            and (last_step is None or (_int_or_none(r.get("step")) or 0) <= last_step)]
    atomic_write_text(path, "".join(json.dumps(r, default=float) + "\n" for r in keep))


# ----------------------------------------------------------------------------- checkpoints/

CHECKPOINT_NAME = re.compile(r"^epoch_(\d{4,})$")  # checkpoints/epoch_0007: the state after (or within) epoch 7


def checkpoint_name(epoch: int) -> str:
    return f"epoch_{epoch:04d}"


def list_checkpoints(run_dir: PathLike) -> list[Path]:
    """Finished checkpoint folders (their ``meta.json`` is written last), oldest first. Whether one is
    complete and undamaged is checked when it is loaded (affectvlm.train.checkpointing)."""
    ck = RunFolder(run_dir).checkpoints
    if not ck.is_dir():
        return []
    found = [(int(m.group(1)), d) for d in ck.iterdir()
             if (m := CHECKPOINT_NAME.match(d.name)) and (d / "meta.json").is_file()]
    return [d for _, d in sorted(found)]


# ----------------------------------------------------------------------------- splits.json / result.json

@dataclass
class SplitsRecord:
    """``splits.json``: which subjects trained, selected ``best/`` (val) and were only reported (test)."""
    classes: list[str]
    subjects: dict[str, list[str]]       # "train" / "val" / "test" -> sorted subject ids
    n_samples: dict[str, int]
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "classes": self.classes, "subjects": self.subjects,
                "n_samples": self.n_samples}


def write_splits(run_dir: PathLike, splits: SplitsRecord) -> None:
    write_json(RunFolder(run_dir).splits, splits.to_json())


def read_splits(run_dir: PathLike) -> SplitsRecord | None:
    """The run's ``splits.json``; None when missing or unreadable."""
    d = _read_json_object(RunFolder(run_dir).splits)
    if d is None or not isinstance(d.get("subjects"), dict):
        return None
    return SplitsRecord(classes=list(d.get("classes") or []),
                        subjects={k: list(v) for k, v in d["subjects"].items()},
                        n_samples=dict(d.get("n_samples") or {}), source=str(d.get("source") or ""))


def read_result(run_dir: PathLike) -> dict[str, Any] | None:
    """``result.json`` (the trainer's final summary: test metrics, best val accuracy, timings) or None."""
    return _read_json_object(RunFolder(run_dir).result)


# ----------------------------------------------------------------------------- one trainer per folder

_HELD_LOCKS: dict[str, int] = {}


class RunFolderInUse(ConfigError):
    """Another live trainer holds the run folder's lock."""


def lock_run_dir(run_dir: PathLike) -> int:
    """Take ``RUN_DIR/.lock`` (``flock``, exclusive, held until :func:`unlock_run_dir` or process exit).

    Raises :class:`RunFolderInUse` naming the holder's pid when another process has it."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file of that name, no permission
        raise ConfigError(f"{run_dir}: cannot be the run folder ({e.strerror or e})") from None
    path = RunFolder(run_dir).lock
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as e:  # a read-only folder or file system, no permission
        raise ConfigError(f"{run_dir}: cannot be the run folder ({e.strerror or e}); give --out a writable "
                          "folder") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = _lock_holder(fd)
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise RunFolderInUse(f"run folder {run_dir} is in use by pid {holder or '?'}") from None
        raise ConfigError(f"{path}: cannot lock the run folder ({e.strerror})") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _HELD_LOCKS[str(path)] = fd
    return fd


def unlock_run_dir(run_dir: PathLike) -> None:
    fd = _HELD_LOCKS.pop(str(RunFolder(run_dir).lock), None)
    if fd is not None:
        os.close(fd)


def _lock_holder(fd: int) -> int | None:
    for _ in range(20):  # the holder may be between truncate and write
        try:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        except OSError:
            return None
        if text.isdigit():
            return int(text)
        time.sleep(0.01)
    return None


def run_dir_locked(run_dir: PathLike) -> bool | None:
    """Whether some process holds the run folder's lock, read from ``/proc/locks`` (no lock is taken, so
    a starting trainer is never disturbed); None when unknown (no lock file, no procfs)."""
    try:
        ino = RunFolder(run_dir).lock.stat().st_ino
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    for line in table.splitlines():
        parts = line.split()
        if len(parts) > 5 and parts[1] == "FLOCK" and parts[5].rsplit(":", 1)[-1] == str(ino):
            return True
    return False


# ----------------------------------------------------------------------------- helpers

def _number(kind: type, v: Any) -> Any:
    """``kind(v)`` (int or float), or None for a missing, boolean or non-numeric value."""
    if v is None or isinstance(v, bool):
        return None
    try:
        out = kind(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return out if kind is not float or math.isfinite(out) else None


def _int_or_none(v: Any) -> int | None:
    return _number(int, v)


def _float_or_none(v: Any) -> float | None:
    return _number(float, v)


def main(argv: list[str] | None = None) -> int:
    """``python -m affectvlm.runfolder RUN_DIR``: print the run's status word (``none`` without one)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m affectvlm.runfolder RUN_DIR", file=sys.stderr)
        return 2
    st = read_status(args[0])
    print(st.status.value if st else "none")
    return 0


__all__: Iterable[str] = (
    "RunFolder", "Status", "RunStatus", "MetricKind", "MetricRecord", "METRIC_KEYS", "SplitsRecord",
    "RunFolderInUse", "write_json", "write_status", "read_status", "trainer_gone", "pid_alive",
    "read_metric_lines", "read_metrics", "append_metric", "truncate_metrics", "write_splits", "read_splits",
    "read_result", "CHECKPOINT_NAME", "checkpoint_name", "list_checkpoints", "lock_run_dir", "unlock_run_dir", "run_dir_locked",
)


if __name__ == "__main__":
    raise SystemExit(main())
