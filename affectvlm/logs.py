"""Quieting third-party log output (open_clip's notes on random inits, the Hub client's retries) for the
calling thread only.

``logging.disable`` would silence every thread of the process: in the app's server, every other session's
logs while one session loads a model. :func:`quiet` instead drops the records this thread logs below a level,
(like ``logging.disable``: that level and below), with a filter on the handlers those records reach (the root logger's, the Hugging Face client's own, and
``logging.lastResort``).
"""
from __future__ import annotations

import contextlib
import logging
import threading
from typing import Iterator

_LOGGERS = ("", "huggingface_hub")  # root (open_clip logs there) and the Hub client's own handler


class _ThreadFilter(logging.Filter):
    """Drops records of threads inside :func:`quiet` at or below their level."""

    def __init__(self) -> None:
        super().__init__()
        self.levels: dict[int, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > self.levels.get(record.thread or 0, -1)


_FILTER = _ThreadFilter()
_LOCK = threading.Lock()


def _targets() -> list[logging.Filterer]:
    out: list[logging.Filterer] = [logging.lastResort] if logging.lastResort is not None else []
    for name in _LOGGERS:
        lg = logging.getLogger(name)
        out += [lg, *lg.handlers]
    return out


@contextlib.contextmanager
def quiet(level: int = logging.WARNING) -> Iterator[None]:
    """Inside the block, records of ``level`` and below logged by this thread are dropped (others' are kept)."""
    tid = threading.get_ident()
    with _LOCK:
        saved = _FILTER.levels.get(tid)
        _FILTER.levels[tid] = max(level, -1 if saved is None else saved)
        targets = _targets()
        for t in targets:
            if _FILTER not in t.filters:
                t.addFilter(_FILTER)
    try:
        yield
    finally:
        with _LOCK:
            if saved is None:
                _FILTER.levels.pop(tid, None)
            else:
                _FILTER.levels[tid] = saved
