"""Training jobs: a small SQLite store of torchrun children, launched, watched, stopped and resumed.

A job is one training run folder:

* launched as ``sys.executable -m torch.distributed.run ... -m affectvlm.train ARGS`` (a list, never a
  shell), in its own process group (``start_new_session=True``), stdout+stderr to ``RUN_DIR/stdout.log``;
* recorded in ``<workspace>/.affectvlm/jobs.sqlite3`` (config JSON, status, pid, pgid, times, run
  folder, command); the database is opened per call, so several app sessions and app restarts share it;
* reconciled on read: a ``running`` job whose process is gone becomes ``finished`` or ``failed`` from
  the child's return code (when this process launched it) or the trainer's ``RUN_DIR/status.json``
  (read through :mod:`affectvlm.runfolder`);
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
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affectvlm.app import processes
from affectvlm.app.launch import TRAIN_MODULE, TrainLaunch, torchrun_command
from affectvlm.app.runview import job_status, last_error_line
from affectvlm.errors import ConfigError
from affectvlm.runfolder import RunFolder, Status, read_status, run_dir_locked

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
        return self.status == Status.RUNNING.value

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.run_dir)

    @property
    def best_dir(self) -> Path:
        """The best checkpoint folder the trainer exports (``RUN_DIR/best``)."""
        return self.folder.best

    @property
    def has_model(self) -> bool:
        return self.folder.has_model()

    @property
    def elapsed(self) -> float | None:
        if self.started is None:
            return None
        return (self.ended or time.time()) - self.started

    @property
    def launch(self) -> TrainLaunch:
        return TrainLaunch.from_dict(self.config)


def _overlap(mine: Path, other: Path) -> str | None:
    """How run folder ``mine`` meets a running job's ``other``: the same, inside it, holding it, or None."""
    if mine == other:
        return "is"
    if other in mine.parents:
        return "is inside"
    if mine in other.parents:
        return "holds"
    return None


class JobStore:
    """Jobs in an SQLite file. Every method opens its own short connection (thread- and restart-safe)."""

    def __init__(self, db_path: str | os.PathLike):
        self.path = Path(db_path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(self._connect()) as con, con:
                con.executescript(_SCHEMA)
        except (OSError, sqlite3.OperationalError) as e:  # a read-only workspace
            raise ConfigError(f"job store {self.path}: cannot write it ({getattr(e, 'strerror', None) or e}); the "
                              "first workspace root must be writable to launch training jobs") from None
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
            rows = con.execute("SELECT * FROM jobs WHERE status = 'running'").fetchall()
            for r in rows:
                other = self._row(r)
                where = _overlap(run_dir, Path(other.run_dir))
                if other.id != job_id and where is None:
                    continue
                settled = self._settle(other)
                if settled is None:
                    if other.id == job_id:
                        raise ConfigError(f"job {job_id} is already running")
                    who = f"pid {other.pid}" if other.pid else "a launch in progress"
                    if where in (None, "is"):
                        raise ConfigError(f"run folder {run_dir} is in use by job {other.id} ({who}); stop it first")
                    raise ConfigError(f"run folder {run_dir} {where} {other.run_dir}, in use by job {other.id} "
                                      f"({who}): one run's saves would delete the other's files; choose another "
                                      "folder or stop that job first")
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
        processes.reap_children()
        with closing(self._connect()) as con:
            r = con.execute("SELECT * FROM jobs WHERE id = ?", (int(job_id),)).fetchone()
        if r is None:
            raise ConfigError(f"job {job_id}: no such job in {self.path}")
        job = self._row(r)
        return self.reconcile(job) if reconcile else job

    def list(self, *, reconcile: bool = True) -> list[Job]:
        """All jobs, newest first."""
        processes.reap_children()
        with closing(self._connect()) as con:
            rows = con.execute("SELECT * FROM jobs ORDER BY id DESC").fetchall()
        jobs = [self._row(r) for r in rows]
        return [self.reconcile(j) for j in jobs] if reconcile else jobs

    # -- lifecycle ----------------------------------------------------------------------------------
    def launch(self, cfg: TrainLaunch, *, module: str = TRAIN_MODULE, script: str | None = None,
               resume: bool = False, env: dict[str, str] | None = None, job_id: int | None = None,
               command: list[str] | None = None) -> Job:
        """Start the run as a child in its own process group and record it.

        ``command`` overrides the torchrun command (tests); otherwise :func:`torchrun_command`.
        With ``job_id`` the existing job is relaunched in place (resume).
        """
        cmd = command or torchrun_command(cfg, module=module, script=script, resume=resume)
        run_dir = Path(cfg.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        run_dir = Path(os.path.realpath(run_dir))  # one key per real folder (symlinks, "..")
        job_id = self._claim(run_dir, cfg.name or run_dir.name, cfg.to_dict(), job_id)
        child_env = {**os.environ, "PYTHONUNBUFFERED": os.environ.get("PYTHONUNBUFFERED", "1"), **(env or {})}

        def could_not_start(message: str) -> None:
            self._update(job_id, status="failed", ended=time.time(), message=f"could not start: {message}",
                         command=json.dumps(cmd))

        try:
            log = open(RunFolder(run_dir).stdout_log, "ab")
        except OSError as e:
            could_not_start(str(e))
            raise ConfigError(f"job {job_id}: cannot write {RunFolder(run_dir).stdout_log}: {e.strerror}") from None
        try:
            log.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} job {job_id}: {shlex.join(cmd)}\n".encode())
            log.flush()
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env=child_env, close_fds=True)
        except OSError as e:
            could_not_start(str(e))
            raise ConfigError(f"job {job_id}: could not start {cmd[0]}: {e}") from e
        finally:
            log.close()
        processes.add_child(proc)
        self._update(job_id, status="running", pid=proc.pid, pgid=proc.pid,
                     proc_start=processes.proc_start_time(proc.pid), command=json.dumps(cmd), started=time.time(),
                     ended=None, returncode=None, stop_requested=0, message="", host=socket.gethostname())
        return self.get(job_id, reconcile=False)

    def resume(self, job_id: int, **kw: Any) -> Job:
        """Relaunch a job that is not running with ``--resume`` (same run folder, same row)."""
        job = self.get(job_id)
        if job.active:
            raise ConfigError(f"job {job_id} is already running")
        return self.launch(job.launch, resume=True, job_id=job.id, **kw)

    def reconcile(self, job: Job) -> Job:
        """Bring a ``running`` row up to date with reality (its process may have ended)."""
        if not job.active:
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
        elif processes.pid_alive(job.pid, job.proc_start):
            return None
        child = processes.pop_child(job.pid)
        rc = child.poll() if child is not None else None
        st = read_status(job.run_dir)
        if job.stop_requested:
            status = Status.STOPPED
        elif rc is not None:
            status = Status.FINISHED if rc == 0 else Status.FAILED
        else:
            status = job_status(st) or Status.FAILED
        message = job.message
        if status is Status.FAILED and not message:
            if job.pid is None:
                message = "the launch did not complete"
            else:
                # the trainer's own reason, written for this launch, before torchrun's last words
                own = (st.message if st is not None and st.status is Status.FAILED
                       and (st.updated or 0) >= (job.started or 0) - 1 else "")
                message = (own or last_error_line(job.run_dir) or (f"exit code {rc}" if rc is not None else "")
                           or (st.message if st else "") or "process ended without a finished status.json")
        return status.value, rc, message

    def stop(self, job_id: int, *, grace: float = 10.0, wait: bool = True) -> Job:
        """SIGTERM the job's process group (torchrun passes it on to its workers); SIGKILL it and its workers'
        groups if anything is left after ``grace`` seconds."""
        job = self.get(job_id)
        if not job.active:
            return job
        if job.host and job.host != socket.gethostname():  # its pid means another process here: never signal it
            return self._forget_foreign(job)
        self._update(job.id, stop_requested=1)
        pgid = job.pgid or job.pid
        workers = processes.descendant_groups(job.pid) - {pgid}  # found while torchrun still knows them
        if pgid:
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            except PermissionError as e:
                raise ConfigError(f"job {job_id}: not allowed to signal process group {pgid}: {e}") from e
        if wait:
            self._wait_gone(job, grace, workers)
            workers |= processes.descendant_groups(job.pid) - {pgid}
            for g in ([pgid] if pgid else []) + sorted(workers):
                if processes.group_alive(g):
                    try:
                        os.killpg(g, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
            self._wait_gone(job, 5.0, workers)
        return self.get(job_id)

    def _forget_foreign(self, job: Job) -> Job:
        """Stop on a row another host recorded: refused while a trainer holds its run folder's lock; otherwise the
        row outlived its machine (a re-created container, a host gone) and is marked stopped, nothing signalled."""
        if run_dir_locked(job.run_dir) is not False:
            raise ConfigError(f"job {job.id} was launched on host {job.host}; stop it there (this machine cannot "
                              "signal its processes)")
        st = read_status(job.run_dir)
        ended = job_status(st)
        status = ended if ended in (Status.FINISHED, Status.FAILED, Status.STOPPED) else Status.STOPPED
        self._update(job.id, status=status.value, ended=time.time(), stop_requested=1,
                     message=f"launched on host {job.host}, and no trainer holds its run folder here: marked "
                             f"{status.value} without signalling anything")
        return self.get(job.id)

    def _wait_gone(self, job: Job, seconds: float, workers: set[int] = frozenset()) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and (self._still_running(job)
                                               or any(processes.group_alive(g) for g in workers)):
            time.sleep(0.05)

    @staticmethod
    def _still_running(job: Job) -> bool:
        return processes.pid_alive(job.pid, job.proc_start) or processes.group_alive(job.pgid)
