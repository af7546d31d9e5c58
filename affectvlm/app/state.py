"""Results a page keeps between Streamlit reruns, typed: each is stored under a slot of the session state
with the key of the inputs it was computed from, and is reused while that key is the same."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Generic, Hashable, MutableMapping, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Kept(Generic[T]):
    """A computed ``value``, the ``key`` of its inputs, and the ``seconds`` it took."""

    key: Hashable
    value: T
    seconds: float


def kept(state: MutableMapping, slot: str, key: Hashable, compute: Callable[[], T]) -> Kept[T]:
    """``state[slot]`` when it was computed for ``key``; otherwise ``compute()`` now (timed) and stored there.
    A failing ``compute`` stores nothing."""
    got = state.get(slot)
    if isinstance(got, Kept) and got.key == key:
        return got
    t0 = time.perf_counter()
    value = compute()
    got = Kept(key, value, time.perf_counter() - t0)
    state[slot] = got
    return got
