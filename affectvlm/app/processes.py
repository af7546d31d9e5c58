"""The training children this app process launched, and whether a process (group) is still alive.

Children are kept as ``Popen`` objects: polling them gives the real return code and reaps zombies (a
zombie still answers ``os.kill(pid, 0)``); a background thread polls them while any is running.
"""
from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

from affectvlm import runfolder

_CHILDREN: dict[int, subprocess.Popen] = {}
_CHILDREN_LOCK = threading.Lock()
_REAPER: threading.Thread | None = None


def add_child(proc: subprocess.Popen) -> None:
    """Keep ``proc`` (reaped in the background, its return code kept for :func:`pop_child`)."""
    global _REAPER
    with _CHILDREN_LOCK:
        _CHILDREN[proc.pid] = proc
        if _REAPER is None or not _REAPER.is_alive():
            _REAPER = threading.Thread(target=_reaper_loop, name="affectvlm-job-reaper", daemon=True)
            _REAPER.start()


def pop_child(pid: int | None) -> subprocess.Popen | None:
    """Forget a child once its job is settled (None when this process did not launch it)."""
    if not pid:
        return None
    with _CHILDREN_LOCK:
        return _CHILDREN.pop(pid, None)


def reap_children() -> None:
    """Collect the exit status of finished children launched here (``Popen.poll``: only our own pids,
    so other code's ``subprocess`` calls keep their return codes). The Popen stays listed."""
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


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/PID/stat`` after the command name (state first), None without it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()


def proc_start_time(pid: int) -> str | None:
    """Start time of a process (Linux /proc, field 22) to tell a live job from a reused pid."""
    fields = _stat_fields(pid)
    return fields[19] if fields and len(fields) > 19 else None


def pid_alive(pid: int | None, proc_start: str | None) -> bool:
    """Whether ``pid`` runs (not a zombie) and, when ``proc_start`` is given, is the process started then."""
    if not pid:
        return False
    with _CHILDREN_LOCK:
        child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    if not runfolder.pid_alive(pid):
        return False
    return proc_start is None or proc_start_time(pid) == proc_start


def _live_processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of every live (non-zombie) process in /proc."""
    out = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            fields = _stat_fields(int(p.name))
            if fields and len(fields) > 2 and fields[0] not in ("Z", "X"):
                out[int(p.name)] = (int(fields[1]), int(fields[2]))
    return out


def descendant_groups(pid: int | None) -> set[int]:
    """Process groups of ``pid``'s live descendants (torchrun puts each worker in a session of its own, so
    signalling the job's group alone can orphan them); empty without /proc."""
    if not pid or not Path("/proc").is_dir():
        return set()
    procs = _live_processes()
    children: dict[int, list[int]] = {}
    for child, (parent, _) in procs.items():
        children.setdefault(parent, []).append(child)
    found, todo = set(), list(children.get(pid, []))
    while todo:
        q = todo.pop()
        found.add(procs[q][1])
        todo.extend(children.get(q, []))
    return found


def group_alive(pgid: int | None) -> bool:
    """Whether process group ``pgid`` has a live (non-zombie) member."""
    if not pgid:
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not Path("/proc").is_dir():
        return True
    # killpg(0) also succeeds for zombies; look for a live member
    return any(group == pgid for _, group in _live_processes().values())
