"""Training jobs: a small SQLite store plus launching, watching and stopping ``torchrun`` children.

Library-level (no Streamlit), used by the app's Train page. A job is one training run folder:

* launched as ``sys.executable -m torch.distributed.run ... -m affectvlm.train ARGS`` (a list, never a
  shell), in its own process group (``start_new_session=True``), stdout+stderr to ``RUN_DIR/stdout.log``;
* recorded in ``<workspace>/.affectvlm/jobs.sqlite3`` (config JSON, status, pid, pgid, times, run
  folder, command); the database is opened per call, so several app sessions and app restarts share it;
* reconciled on read: a ``running`` job whose process is gone becomes ``finished`` or ``failed`` from
  the child's return code (when this process launched it) or the trainer's ``RUN_DIR/status.json``;
* stopped with SIGTERM to the whole group, then SIGKILL after a grace period;
* exclusive: a launch or resume claims its run folder in one ``BEGIN IMMEDIATE`` transaction (plus a
  unique index on running rows), so a second launch into a folder whose job is alive is refused; the
  trainer's own ``RUN_DIR/.lock`` guards the folder against launches from outside the store;
* finished children are reaped by a background thread (no zombies while nobody reads the list).
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from affectvlm.errors import ConfigError

STATUSES = ("running", "finished", "failed", "stopped")
TRAIN_MODULE = "affectvlm.train"

# Popen objects of the children this process launched: polling them gives the real return code and
# reaps zombies (a zombie still answers os.kill(pid, 0)).
_CHILDREN: dict[int, subprocess.Popen] = {}
_CHILDREN_LOCK = threading.Lock()
_REAPER: threading.Thread | None = None
STARTING_GRACE_S = 120.0  # a claimed row without a pid yet counts as alive this long

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    config TEXT NOT NULL,
    command TEXT NOT NULL,
    run_dir TEXT NOT NULL,
    pid INTEGER,
    pgid INTEGER,
    proc_start TEXT,
    host TEXT,
    returncode INTEGER,
    stop_requested INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    ended REAL,
    message TEXT NOT NULL DEFAULT ''
);
"""
# at most one running row per run folder (the claim in JobStore._claim is the real check; this is the backstop)
_UNIQUE_RUNNING = "CREATE UNIQUE INDEX IF NOT EXISTS one_running_job_per_run ON jobs(run_dir) WHERE status = 'running'"


@dataclass
class Job:
    """One row of the jobs table."""

    id: int
    name: str
    status: str
    config: dict[str, Any]
    command: list[str]
    run_dir: Path
    pid: int | None = None
    pgid: int | None = None
    proc_start: str | None = None
    host: str | None = None
    returncode: int | None = None
    stop_requested: bool = False
    created: float = 0.0
    started: float | None = None
    ended: float | None = None
    message: str = ""

    @property
    def active(self) -> bool:
        return self.status == "running"

    @property
    def best_dir(self) -> Path:
        """The best checkpoint folder the trainer exports (``RUN_DIR/best``)."""
        return self.run_dir / "best"

    @property
    def has_model(self) -> bool:
        return (self.best_dir / "affectvlm.json").is_file()

    @property
    def elapsed(self) -> float | None:
        if self.started is None:
            return None
        return (self.ended or time.time()) - self.started


# ---------------------------------------------------------------------------------------------------
# Training configuration -> command line


@dataclass
class TrainLaunch:
    """What the Train form collects. ``train_args`` are passed verbatim to ``affectvlm.train``."""

    run_dir: Path
    train_args: list[str] = field(default_factory=list)
    nproc_per_node: int = 1
    nnodes: int = 1
    rdzv_endpoint: str = ""
    rdzv_id: str = ""
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "train_args": list(self.train_args),
                "nproc_per_node": self.nproc_per_node, "nnodes": self.nnodes,
                "rdzv_endpoint": self.rdzv_endpoint, "rdzv_id": self.rdzv_id, "name": self.name}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainLaunch":
        return cls(run_dir=Path(d["run_dir"]), train_args=list(d.get("train_args", [])),
                   nproc_per_node=int(d.get("nproc_per_node", 1)), nnodes=int(d.get("nnodes", 1)),
                   rdzv_endpoint=str(d.get("rdzv_endpoint", "")), rdzv_id=str(d.get("rdzv_id", "")),
                   name=str(d.get("name", "")))


def train_args(*, data: str | os.PathLike, layout: str, out: str | os.PathLike, model: str | None = None,
               epochs: int | None = None, batch_size: int | None = None, lr: float | None = None,
               losses: str | None = None, views: str | None = None, extra: list[str] | None = None) -> list[str]:
    """The ``affectvlm train`` arguments for the form's fields (None = the trainer's default)."""
    args = ["--data", str(data), "--layout", str(layout), "--out", str(out)]
    if model:
        args += ["--model", str(model)]
    if epochs is not None:
        args += ["--epochs", str(int(epochs))]
    if batch_size is not None:
        args += ["--batch-size", str(int(batch_size))]
    if lr is not None:
        args += ["--lr", repr(float(lr))]
    if losses:
        args += ["--losses", str(losses)]
    if views:
        args.append(f"--views={views}")  # one token: a list may start with "-" ("-30,0,30")
    return args + list(extra or [])


def _validate_launch(cfg: TrainLaunch) -> None:
    if cfg.nproc_per_node < 1 or cfg.nproc_per_node > 1024:
        raise ConfigError(f"processes per node must be 1..1024, got {cfg.nproc_per_node}")
    if cfg.nnodes < 1 or cfg.nnodes > 4096:
        raise ConfigError(f"nodes must be 1..4096, got {cfg.nnodes}")
    if cfg.nnodes > 1:
        host, sep, port = cfg.rdzv_endpoint.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"rendezvous endpoint must be HOST:PORT for several nodes, got {cfg.rdzv_endpoint!r}")


def torchrun_command(cfg: TrainLaunch, *, module: str = TRAIN_MODULE, script: str | None = None,
                     python: str | None = None, resume: bool = False) -> list[str]:
    """The argument list that runs the trainer under torchrun on this node.

    One node: ``--standalone``. Several: c10d rendezvous at ``rdzv_endpoint`` with ``rdzv_id``; the
    very same command runs on every node (see :func:`other_node_command`). ``script`` replaces
    ``-m module`` (tests use a tiny stand-in trainer).
    """
    _validate_launch(cfg)
    cmd = [python or sys.executable, "-m", "torch.distributed.run"]
    if cfg.nnodes == 1:
        cmd += ["--standalone", "--nnodes", "1"]
    else:
        cmd += ["--nnodes", str(cfg.nnodes), "--rdzv-backend", "c10d", "--rdzv-endpoint", cfg.rdzv_endpoint,
                "--rdzv-id", cfg.rdzv_id or "affectvlm"]
    cmd += ["--nproc-per-node", str(cfg.nproc_per_node)]
    cmd += [script] if script else ["-m", module]
    args = list(cfg.train_args)
    if resume and "--resume" not in args:
        args.append("--resume")
    return cmd + args


def other_node_command(cfg: TrainLaunch, *, module: str = TRAIN_MODULE) -> str:
    """The exact shell line to run on each of the other nodes of a multi-node run."""
    cmd = torchrun_command(cfg, module=module, python="python")
    return shlex.join(cmd)


# ---------------------------------------------------------------------------------------------------
# Processes


def reap_children() -> None:
    """Collect the exit status of finished children launched here (``Popen.poll``: only our own pids,
    so other code's ``subprocess`` calls keep their return codes). The Popen stays listed for reconcile."""
    with _CHILDREN_LOCK:
        children = list(_CHILDREN.values())
    for child in children:
        child.poll()


def _reaper_loop(interval: float = 0.5) -> None:
    global _REAPER
    while True:
        time.sleep(interval)
        reap_children()
        with _CHILDREN_LOCK:
            if all(c.returncode is not None for c in _CHILDREN.values()):
                _REAPER = None
                return


def _start_reaper() -> None:
    global _REAPER
    with _CHILDREN_LOCK:
        if _REAPER is None or not _REAPER.is_alive():
            _REAPER = threading.Thread(target=_reaper_loop, name="affectvlm-job-reaper", daemon=True)
            _REAPER.start()


def _proc_start_time(pid: int) -> str | None:
    """Start time of a process (Linux /proc, field 22) to tell a live job from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = stat[stat.rfind(")") + 2:].split()
    return rest[19] if len(rest) > 19 else None


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()[0]


def _pid_alive(pid: int | None, proc_start: str | None) -> bool:
    if not pid:
        return False
    with _CHILDREN_LOCK:
        child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    state = _proc_state(pid)
    if state is None:
        return not Path("/proc").is_dir()  # no procfs (macOS): trust kill(0)
    if state in ("Z", "X"):
        return False
    return proc_start is None or _proc_start_time(pid) == proc_start


def _group_alive(pgid: int | None) -> bool:
    if not pgid:
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg(0) also succeeds for zombies; look for a live member
    if Path("/proc").is_dir():
        for p in Path("/proc").iterdir():
            if p.name.isdigit():
                try:
                    st = p.joinpath("stat").read_text()
                except OSError:
                    continue
                fields_ = st[st.rfind(")") + 2:].split()
                if len(fields_) > 2 and fields_[2] == str(pgid) and fields_[0] not in ("Z", "X"):
                    return True
        return False
    return True


def read_status_file(run_dir: Path) -> dict[str, Any]:
    """The trainer's ``status.json`` (empty dict when missing or unreadable).

    A ``running`` status whose trainer is gone (its run-folder lock is free, or without a lock its pid
    is dead on this host) is reported as ``crashed`` with ``stale: True``: a kill leaves no final word."""
    try:
        data = json.loads((Path(run_dir) / "status.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    if str(data.get("status", "")).lower() == "running" and _trainer_gone(Path(run_dir), data):
        pid = data.get("pid")
        data = {**data, "status": "crashed", "stale": True,
                "message": f"the trainer{f' (pid {pid})' if pid else ''} ended without a final status "
                           "(crashed or killed); resume continues from the last complete checkpoint"}
    return data


def _trainer_gone(run_dir: Path, status: dict[str, Any]) -> bool:
    from affectvlm.train.checkpointing import run_dir_locked

    locked = run_dir_locked(run_dir)
    if locked is not None:
        return not locked
    host = status.get("host")
    if host and host != socket.gethostname():
        return False  # another machine's trainer: its pid means nothing here
    pid = status.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    return not _pid_alive(pid, None)


def _last_error_line(run_dir: Path) -> str:
    """The trainer's last ``error: ...`` line in ``stdout.log`` (its one-line reason for exiting)."""
    for line in reversed(tail(Path(run_dir) / "stdout.log", 20).splitlines()):
        if line.startswith("error: "):
            return line[len("error: "):].strip()
    return ""


def _status_from_file(run_dir: Path, st: dict[str, Any] | None = None) -> str | None:
    st = read_status_file(run_dir) if st is None else st
    word = str(st.get("status") or st.get("state") or "").lower()
    if word in ("finished", "done", "completed", "complete", "success", "succeeded"):
        return "finished"
    if word in ("failed", "error", "crashed"):
        return "failed"
    if word in ("stopped", "killed", "cancelled", "canceled", "interrupted"):
        return "stopped"
    return None


# ---------------------------------------------------------------------------------------------------
# The store


class JobStore:
    """Jobs in an SQLite file. Every method opens its own short connection (thread- and restart-safe)."""

    def __init__(self, db_path: str | os.PathLike):
        self.path = Path(db_path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as con, con:
            con.executescript(_SCHEMA)
        try:
            with closing(self._connect()) as con, con:
                con.execute(_UNIQUE_RUNNING)
        except sqlite3.IntegrityError:
            pass  # an old database with two running rows for one folder: the claim still checks

    @classmethod
    def in_workspace(cls, workspace: str | os.PathLike) -> "JobStore":
        return cls(Path(workspace) / ".affectvlm" / "jobs.sqlite3")

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30.0)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA journal_mode=WAL")
        return con

    # -- rows ---------------------------------------------------------------------------------------
    @staticmethod
    def _row(r: sqlite3.Row) -> Job:
        return Job(id=r["id"], name=r["name"], status=r["status"], config=json.loads(r["config"]),
                   command=json.loads(r["command"]), run_dir=Path(r["run_dir"]), pid=r["pid"], pgid=r["pgid"],
                   proc_start=r["proc_start"], host=r["host"], returncode=r["returncode"],
                   stop_requested=bool(r["stop_requested"]), created=r["created"], started=r["started"],
                   ended=r["ended"], message=r["message"] or "")

    def _update(self, job_id: int, **values: Any) -> None:
        if not values:
            return
        cols = ", ".join(f"{k} = ?" for k in values)
        with closing(self._connect()) as con, con:
            con.execute(f"UPDATE jobs SET {cols} WHERE id = ?", (*values.values(), job_id))

    def _claim(self, run_dir: Path, name: str, config: dict, job_id: int | None) -> int:
        """Atomically make ``job_id`` (or a new row) the one running job of ``run_dir``.

        One ``BEGIN IMMEDIATE`` transaction: a live running row for the same folder (or the same job)
        refuses the claim with ``ConfigError``; a dead one is settled first. The claimed row is
        ``running`` without a pid until :meth:`launch` records the child."""
        con = self._connect()
        con.isolation_level = None
        try:
            con.execute("BEGIN IMMEDIATE")
            rows = con.execute("SELECT * FROM jobs WHERE status = 'running' AND (run_dir = ? OR id = ?)",
                               (str(run_dir), -1 if job_id is None else int(job_id))).fetchall()
            for r in rows:
                other = self._row(r)
                settled = self._settle(other)
                if settled is None:
                    if other.id == job_id:
                        raise ConfigError(f"job {job_id} is already running")
                    who = f"pid {other.pid}" if other.pid else "a launch in progress"
                    raise ConfigError(f"run folder {run_dir} is in use by job {other.id} ({who}); stop it first")
                status, rc, message = settled
                con.execute("UPDATE jobs SET status = ?, returncode = ?, ended = ?, message = ? WHERE id = ?",
                            (status, rc, time.time(), message, other.id))
            now = time.time()
            if job_id is None:
                cur = con.execute(
                    "INSERT INTO jobs (name, status, config, command, run_dir, created, started, host) "
                    "VALUES (?,?,?,?,?,?,?,?)",
                    (name, "running", json.dumps(config), "[]", str(run_dir), now, now, socket.gethostname()))
                job_id = int(cur.lastrowid)
            else:
                cur = con.execute(
                    "UPDATE jobs SET status = 'running', pid = NULL, pgid = NULL, proc_start = NULL, started = ?, "
                    "ended = NULL, returncode = NULL, stop_requested = 0, message = '', host = ? WHERE id = ?",
                    (now, socket.gethostname(), int(job_id)))
                if cur.rowcount != 1:
                    raise ConfigError(f"job {job_id}: no such job in {self.path}")
            con.execute("COMMIT")
            return job_id
        except sqlite3.IntegrityError:
            raise ConfigError(f"run folder {run_dir} is in use by another running job") from None
        finally:
            if con.in_transaction:
                con.execute("ROLLBACK")
            con.close()

    def get(self, job_id: int, *, reconcile: bool = True) -> Job:
        reap_children()
        with closing(self._connect()) as con:
            r = con.execute("SELECT * FROM jobs WHERE id = ?", (int(job_id),)).fetchone()
        if r is None:
            raise ConfigError(f"job {job_id}: no such job in {self.path}")
        job = self._row(r)
        return self.reconcile(job) if reconcile else job

    def list(self, *, reconcile: bool = True) -> list[Job]:
        """All jobs, newest first."""
        reap_children()
        with closing(self._connect()) as con:
            rows = con.execute("SELECT * FROM jobs ORDER BY id DESC").fetchall()
        jobs = [self._row(r) for r in rows]
        return [self.reconcile(j) for j in jobs] if reconcile else jobs

    def delete(self, job_id: int) -> None:
        job = self.get(job_id)
        if job.active:
            raise ConfigError(f"job {job_id} is still running; stop it first")
        with closing(self._connect()) as con, con:
            con.execute("DELETE FROM jobs WHERE id = ?", (int(job_id),))

    # -- lifecycle ----------------------------------------------------------------------------------
    def launch(self, cfg: TrainLaunch, *, module: str = TRAIN_MODULE, script: str | None = None,
               resume: bool = False, env: dict[str, str] | None = None, job_id: int | None = None,
               command: list[str] | None = None) -> Job:
        """Start the run as a child in its own process group and record it.

        ``command`` overrides the torchrun command (tests); otherwise :func:`torchrun_command`.
        With ``job_id`` the existing job is relaunched in place (resume).
        """
        run_dir = Path(cfg.run_dir)
        cmd = command or torchrun_command(cfg, module=module, script=script, resume=resume)
        run_dir.mkdir(parents=True, exist_ok=True)
        run_dir = Path(os.path.realpath(run_dir))  # one key per real folder (symlinks, "..")
        name = cfg.name or run_dir.name
        job_id = self._claim(run_dir, name, cfg.to_dict(), job_id)
        child_env = dict(os.environ)
        child_env.setdefault("PYTHONUNBUFFERED", "1")
        child_env.update(env or {})
        try:
            log = open(run_dir / "stdout.log", "ab")
        except OSError as e:
            self._update(job_id, status="failed", ended=time.time(), message=f"could not start: {e}",
                         command=json.dumps(cmd))
            raise ConfigError(f"job {job_id}: cannot write {run_dir / 'stdout.log'}: {e.strerror}") from None
        try:
            log.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} job {job_id}: {shlex.join(cmd)}\n".encode())
            log.flush()
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env=child_env, close_fds=True)
        except OSError as e:
            self._update(job_id, status="failed", ended=time.time(), message=f"could not start: {e}",
                         command=json.dumps(cmd))
            raise ConfigError(f"job {job_id}: could not start {cmd[0]}: {e}") from e
        finally:
            log.close()
        with _CHILDREN_LOCK:
            _CHILDREN[proc.pid] = proc
        _start_reaper()
        self._update(job_id, status="running", pid=proc.pid, pgid=proc.pid, proc_start=_proc_start_time(proc.pid),
                     command=json.dumps(cmd), started=time.time(), ended=None, returncode=None, stop_requested=0,
                     message="", host=socket.gethostname())
        return self.get(job_id, reconcile=False)

    def resume(self, job_id: int, **kw: Any) -> Job:
        """Relaunch a job that is not running with ``--resume`` (same run folder, same row)."""
        job = self.get(job_id)
        if job.active:
            raise ConfigError(f"job {job_id} is already running")
        cfg = TrainLaunch.from_dict(job.config)
        return self.launch(cfg, resume=True, job_id=job.id, **kw)

    def reconcile(self, job: Job) -> Job:
        """Bring a ``running`` row up to date with reality (its process may have ended)."""
        if job.status != "running":
            return job
        settled = self._settle(job)
        if settled is None:
            return job
        status, rc, message = settled
        now = time.time()
        self._update(job.id, status=status, returncode=rc, ended=now, message=message)
        job.status, job.returncode, job.ended, job.message = status, rc, now, message
        return job

    @staticmethod
    def _settle(job: Job) -> tuple[str, int | None, str] | None:
        """(status, return code, message) of a ``running`` row whose process is gone; None while alive
        (or unknowable: another host's job, a launch still starting)."""
        if job.host and job.host != socket.gethostname():
            return None  # launched by another machine sharing the workspace; nothing to check here
        if job.pid is None:
            if time.time() - (job.started or job.created) < STARTING_GRACE_S:
                return None  # claimed; the child is being started
        elif _pid_alive(job.pid, job.proc_start):
            return None
        rc: int | None = None
        with _CHILDREN_LOCK:
            child = _CHILDREN.pop(job.pid, None) if job.pid else None
        if child is not None:
            rc = child.poll()
        st = read_status_file(job.run_dir)
        from_file = _status_from_file(job.run_dir, st)
        if job.stop_requested:
            status = "stopped"
        elif rc is not None:
            status = "finished" if rc == 0 else "failed"
        else:
            status = from_file or "failed"
        message = job.message
        if status == "failed" and not message:
            if job.pid is None:
                message = "the launch did not complete"
            else:
                message = (_last_error_line(job.run_dir) or (f"exit code {rc}" if rc is not None else "")
                           or str(st.get("message") or "") or "process ended without a finished status.json")
        return status, rc, message

    def stop(self, job_id: int, *, grace: float = 10.0, wait: bool = True) -> Job:
        """SIGTERM the job's process group; SIGKILL it if anything is left after ``grace`` seconds."""
        job = self.get(job_id)
        if not job.active:
            return job
        self._update(job.id, stop_requested=1)
        pgid = job.pgid or job.pid
        if pgid:
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            except PermissionError as e:
                raise ConfigError(f"job {job_id}: not allowed to signal process group {pgid}: {e}") from e
        if wait:
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and self._still_running(job):
                time.sleep(0.1)
            if self._still_running(job) and pgid:
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                deadline = time.monotonic() + 5.0
                while time.monotonic() < deadline and self._still_running(job):
                    time.sleep(0.05)
        return self.get(job_id)

    def _still_running(self, job: Job) -> bool:
        return _pid_alive(job.pid, job.proc_start) or _group_alive(job.pgid)


# ---------------------------------------------------------------------------------------------------
# Reading a run folder


def read_metrics(run_dir: str | os.PathLike, *, max_records: int = 100_000) -> list[dict[str, Any]]:
    """Records of ``RUN_DIR/metrics.jsonl``, skipping a partially written last line."""
    path = Path(run_dir) / "metrics.jsonl"
    out: list[dict[str, Any]] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict):
                    out.append(rec)
                    if len(out) >= max_records:
                        break
    except OSError:
        return []
    return out


def tail(path: str | os.PathLike, n_lines: int = 40, *, max_bytes: int = 64 * 1024) -> str:
    """The last ``n_lines`` of a (log) file, reading at most ``max_bytes`` from its end."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return ""
    lines = data.decode("utf-8", errors="replace").splitlines()
    return "\n".join(lines[-n_lines:])


def iter_jobs_with_models(store: JobStore) -> Iterator[Job]:
    """Jobs whose run folder holds an exported best checkpoint (for "use this model")."""
    for job in store.list():
        if job.has_model:
            yield job
