"""Staging a cyclic garbage collection (and the finalizers it runs) at a chosen moment: shared
by the tests of a queue's or a limiter's critical moment (``unit/test_hostqueue.py``,
``with_dummyserver/test_pool.py``, ``with_dummyserver/test_limits.py``)."""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Callable

__all__ = ("COLLECTS_AT_SAFE_POINTS", "_Cycle", "_run_with_collections")

# CPython 3.12+ runs the cyclic collector at the eval breaker (between bytecodes, after calls),
# no longer inside the allocation that triggers it: a test below cannot always stage a
# collection at the exact moment it wants there.
COLLECTS_AT_SAFE_POINTS = sys.version_info >= (3, 12)


class _Cycle:
    """Garbage only the cyclic collector frees (as a response caught in a reference cycle)."""

    def __init__(self, payload: object) -> None:
        self.me = self
        self.payload = payload


def _run_with_collections(
    fn: Callable[[], object], on_collect: Callable[[], None], primes: int = 0
) -> object:
    """Run ``fn`` in a thread where every other GC-tracked allocation runs the collector,
    calling ``on_collect`` (standing for a finalizer) at the start of each; bounded in time.
    ``primes`` lists kept alive first drain the list free list, so that a list ``fn`` makes is
    a real (collecting) allocation."""
    result: list[object] = []
    armed = []
    worker: threading.Thread

    def callback(phase: str, info: object) -> None:
        if phase == "start" and armed and threading.current_thread() is worker:
            on_collect()

    def body() -> None:
        gc.callbacks.append(callback)
        try:
            keep = [[] for _ in range(primes)]  # noqa: F841 - allocations that stay alive
            armed.append(True)
            value = fn()
            result.append(value)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            result.append(e)
        finally:
            gc.callbacks.remove(callback)

    old = gc.get_threshold()
    worker = threading.Thread(target=body, daemon=True)
    gc.set_threshold(1)
    try:
        worker.start()
        worker.join(10)
    finally:
        gc.set_threshold(*old)
    assert not worker.is_alive(), "deadlock: a finalizer's checkin re-entered the queue's lock"
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]
