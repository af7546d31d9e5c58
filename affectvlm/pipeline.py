"""Run ``predict``'s reading, orienting and rendering on worker threads while the calling thread encodes.

The heavy parts of those stages (mesh parsing in numpy, the face-frame network, the compiled render kernels)
release the GIL, so threads overlap them with the image encoder without copying meshes between processes.
``workers=0`` runs every job inline, at submission: the serial path, with the same batches and the same results.
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Callable, Generic, Iterable, Iterator, TypeVar

from affectvlm.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")


class InlineExecutor(Executor):
    """Runs each job when it is submitted (the serial path), on one torch thread as a worker would (so both
    paths give the same bits); its futures are already done."""

    def submit(self, fn: Callable[..., R], /, *args: object, **kwargs: object) -> "Future[R]":
        import torch

        fut: Future[R] = Future()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as e:  # delivered by .result(), as a thread pool would
            fut.set_exception(e)
        finally:
            torch.set_num_threads(threads)
        return fut


def default_workers() -> int:
    """Worker threads when none are asked for: one per core (the encoding thread mostly waits), at most four."""
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def check_workers(workers: int | None) -> int:
    if workers is None:
        return default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"workers must be a whole number >= 0, got {workers!r}")
    return workers


def _one_torch_thread() -> None:
    # each worker is one of the parallel lanes: torch's own threads on top would oversubscribe the cores
    # (OpenMP's thread count is per calling thread, so the encoding thread keeps its own)
    import torch

    torch.set_num_threads(1)


def executor(workers: int) -> Executor:
    """A thread pool of ``workers`` threads (one torch thread each), or the inline executor for 0."""
    if workers == 0:
        return InlineExecutor()
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="affectvlm-predict",
                              initializer=_one_torch_thread)


class Ahead(Generic[T, R]):
    """Submit ``start(x)`` for the next ``depth`` inputs ahead of the one being consumed; yield
    ``(x, future)`` in input order. At most ``depth + 1`` jobs' results are held at once."""

    def __init__(self, pool: Executor, xs: Iterable[T], start: Callable[[T], "Future[R]"], depth: int):
        self.pool, self.xs, self.start, self.depth = pool, iter(xs), start, max(0, int(depth))

    def __iter__(self) -> Iterator[tuple[T, "Future[R]"]]:
        window: deque[tuple[T, Future[R]]] = deque()
        exhausted = False
        while True:
            while not exhausted and len(window) <= self.depth:
                try:
                    x = next(self.xs)
                except StopIteration:
                    exhausted = True
                    break
                window.append((x, self.start(x)))
            if not window:
                return
            yield window.popleft()
