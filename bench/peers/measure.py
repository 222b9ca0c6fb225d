"""The bounded measuring loop that every peer client runs through.

Standard library only: the niquests child process (its own venv, without fastpool or requests)
imports this module too, so every client is timed by the same code.

A run sends GETs to ``urls`` round-robin (one shared counter, so with several threads the hosts
are still visited in turn) from ``threads`` threads, or ``threads`` asyncio tasks for an async
client, and stops after ``max_requests`` requests or ``max_seconds`` seconds, whichever comes
first. Each answer's body length is checked; an exception or a wrong length is a failure, and a
run stops early after ``MAX_FAILURES`` of them.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Awaitable
from dataclasses import asdict, dataclass
from typing import Any, Callable

#: A run gives up after this many failures (a broken client should not eat the time budget).
MAX_FAILURES = 50
#: A worker still busy this long after the deadline (1.5x the request timeout the clients
#: were given) makes its run "hung".
GRACE_PER_TIMEOUT = 1.5
HUNG = "Hung"

#: fetch(url) -> body length; raises on any error (a non-200 status included).
Fetch = Callable[[str], int]
AsyncFetch = Callable[[str], Awaitable[int]]


@dataclass
class RunResult:
    """What one bounded run did: good requests, failures, wall-clock and CPU seconds."""

    done: int = 0
    failures: int = 0
    elapsed: float = 0.0
    cpu: float = 0.0
    error: str = ""  # the first failure, as ``Type: message``

    def as_dict(self) -> dict[str, Any]:
        """JSON-able (the niquests child sends it over a pipe)."""
        return asdict(self)


class _Tally:
    """Per-run counters; each worker adds its own totals once, at its end."""

    def __init__(self, max_requests: int, deadline: float, expected: int) -> None:
        self.counter = itertools.count()  # next() on it is atomic under the GIL
        self.max_requests = max_requests
        self.deadline = deadline
        self.expected = expected
        self.lock = threading.Lock()
        self.result = RunResult()

    def next_index(self) -> int:
        """The next request's index, or -1 when the run is over (count, time or failures)."""
        index = next(self.counter)
        if (
            index >= self.max_requests
            or time.perf_counter() >= self.deadline
            or self.result.failures >= MAX_FAILURES
        ):
            return -1
        return index

    def check(self, length: int) -> str:
        """'' when ``length`` is the expected body length, else the failure text."""
        if length == self.expected:
            return ""
        return f"BodyLengthError: got {length} bytes, expected {self.expected}"

    def add(self, done: int, failures: int, error: str) -> None:
        with self.lock:
            self.result.done += done
            self.result.failures += failures
            if error and not self.result.error:
                self.result.error = error


def quiet_pool_logs() -> None:
    """Swallow the pools' log records ("Connection pool is full, discarding connection" comes
    by the thousand with 32 threads). The records are still made, as for any user whose
    logging is set up, but not printed."""
    for name in ("urllib3", "fastpool", "requests", "niquests", "httpx", "httpcore"):
        logger = logging.getLogger(name)
        logger.addHandler(logging.NullHandler())
        logger.propagate = False


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def run_threads(
    fetchers: list[Fetch],
    urls: list[str],
    max_requests: int,
    max_seconds: float,
    expected: int,
    timeout: float,
) -> RunResult:
    """One run with ``len(fetchers)`` threads (one fetcher each); a single fetcher runs in the
    calling thread. A thread still busy ``GRACE_PER_TIMEOUT * timeout`` seconds after the
    deadline (``timeout``: the clients' request timeout) counts as a failure, "hung".
    """
    grace = GRACE_PER_TIMEOUT * timeout
    if not fetchers or not urls:
        raise ValueError("fetchers and urls must not be empty")
    count = len(urls)
    start_line = threading.Barrier(len(fetchers) + 1) if len(fetchers) > 1 else None
    tally = _Tally(max_requests, float("inf"), expected)  # the clock starts below

    def work(fetch: Fetch) -> None:
        done = failures = 0
        error = ""
        if start_line is not None:
            start_line.wait(grace)
        while (index := tally.next_index()) >= 0:
            try:
                problem = tally.check(fetch(urls[index % count]))
            except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
                problem = _describe(exc)
            if problem:
                failures += 1
                error = error or problem
            else:
                done += 1
        tally.add(done, failures, error)

    cpu = time.process_time()
    if start_line is None:
        wall = time.perf_counter()
        tally.deadline = wall + max_seconds
        work(fetchers[0])
    else:
        threads = [threading.Thread(target=work, args=(f,), daemon=True) for f in fetchers]
        for thread in threads:
            thread.start()
        start_line.wait(grace)
        wall = time.perf_counter()
        tally.deadline = wall + max_seconds
        for thread in threads:
            thread.join(max(0.0, tally.deadline + grace - time.perf_counter()))
        hung = sum(thread.is_alive() for thread in threads)
        if hung:
            tally.add(
                0, hung, f"{HUNG}: {hung} thread(s) still busy {grace:g} s after the deadline"
            )
    result = tally.result
    result.elapsed = time.perf_counter() - wall
    result.cpu = time.process_time() - cpu
    return result


async def run_tasks(
    fetch: AsyncFetch,
    urls: list[str],
    tasks: int,
    max_requests: int,
    max_seconds: float,
    expected: int,
    timeout: float,
) -> RunResult:
    """One run with ``tasks`` concurrent asyncio tasks sharing ``fetch`` (an async client's
    counterpart of :func:`run_threads`; call it inside the client's event loop)."""
    grace = GRACE_PER_TIMEOUT * timeout
    count = len(urls)
    wall, cpu = time.perf_counter(), time.process_time()
    tally = _Tally(max_requests, wall + max_seconds, expected)

    async def work() -> None:
        done = failures = 0
        error = ""
        while (index := tally.next_index()) >= 0:
            try:
                problem = tally.check(await fetch(urls[index % count]))
            except Exception as exc:  # noqa: BLE001
                problem = _describe(exc)
            if problem:
                failures += 1
                error = error or problem
            else:
                done += 1
        tally.add(done, failures, error)

    try:
        await asyncio.wait_for(asyncio.gather(*(work() for _ in range(tasks))), max_seconds + grace)
    except asyncio.TimeoutError:
        tally.add(0, 1, f"{HUNG}: tasks still busy {grace:g} s after the deadline")
    result = tally.result
    result.elapsed = time.perf_counter() - wall
    result.cpu = time.process_time() - cpu
    return result
