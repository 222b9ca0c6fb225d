"""HostQueue timings for the cores ratio table: one checkout+checkin pair with an idle connection.

``measure_hostqueue()`` returns rows of ``(name, backend, ns_per_op, reference_name,
reference_ns_per_op)``, medians of ``timeit`` repeats, all measured in the same run:

- ``LifoQueue get/put(block=False)``: what urllib3's pool does around its connections.
- ``HTTPConnectionPool._get_conn/_put_conn``: urllib3's own pair. Its queue is pre-filled
  with a stand-in connection whose ``is_connected`` is True, so urllib3's liveness check is
  a cheap attribute read and no socket is polled (nothing is patched).

Run ``python bench/cores_hostqueue.py`` for a table.
"""

from __future__ import annotations

import importlib
import queue
import statistics
import timeit
from typing import Any

from urllib3 import HTTPConnectionPool

Row = tuple[str, str, float, str, float]

MAXSIZE = 10  # requests' pool_maxsize default


class IdleConn:
    """A connection stand-in that urllib3's ``is_connection_dropped`` finds alive."""

    is_connected = True

    def close(self) -> None:
        """urllib3 closes what its pool holds when the pool goes away."""


# A case is a statement and its namespace: timeit compiles the statement into its loop, so no
# extra Python call frame is timed around the operations themselves.
Case = tuple[str, dict[str, Any]]


def hostqueue_case(cls: type) -> Case:
    """One checkout+checkin on a HostQueue holding one idle connection."""
    q = cls(maxsize=MAXSIZE)
    q.checkout()
    q.checkin(IdleConn())
    return "checkin(checkout())", {"checkout": q.checkout, "checkin": q.checkin}


def lifoqueue_case() -> Case:
    """urllib3's queue operations: get(block=False) then put(block=False)."""
    q: queue.LifoQueue[Any] = queue.LifoQueue(MAXSIZE)
    q.put(IdleConn())
    return "put(get(False), False)", {"get": q.get, "put": q.put}


def urllib3_pool_case() -> Case:
    """urllib3's HTTPConnectionPool._get_conn/_put_conn with an idle connection on top."""
    pool = HTTPConnectionPool("127.0.0.1", 9, maxsize=MAXSIZE)  # never dials
    assert pool.pool is not None
    pool.pool.get(block=False)  # one None placeholder out, the idle connection in
    pool.pool.put(IdleConn(), block=False)
    return "put(get())", {"get": pool._get_conn, "put": pool._put_conn, "pool": pool}


def make_timer(case: Case) -> timeit.Timer:
    """A timeit.Timer running the case's statement."""
    stmt, namespace = case
    return timeit.Timer(stmt, globals=namespace)


def backends() -> list[tuple[str, type]]:
    """The HostQueue classes to time: compiled (when built) and pure."""
    found = []
    try:
        found.append(("cython", importlib.import_module("fastpool._hostqueue_c").HostQueue))
    except ImportError:  # a pure install: time the twin alone
        pass
    found.append(("python", importlib.import_module("fastpool._hostqueue_py").HostQueue))
    return found


def ns_per_op(cases: dict[str, Case], number: int = 100_000, repeat: int = 7) -> dict[str, float]:
    """Median nanoseconds per run of each case, timed round-robin so load hits all alike."""
    timers = {key: make_timer(case) for key, case in cases.items()}
    samples: dict[str, list[float]] = {key: [] for key in cases}
    for _ in range(repeat):
        for key, timer in timers.items():
            samples[key].append(timer.timeit(number) / number * 1e9)
    return {key: statistics.median(values) for key, values in samples.items()}


def measure_hostqueue(number: int = 100_000, repeat: int = 7) -> list[Row]:
    """Rows (name, backend, ns_per_op, reference_name, reference_ns_per_op) for the table."""
    name = "HostQueue checkout+checkin (idle conn)"
    references = {
        "LifoQueue get/put(block=False)": lifoqueue_case(),
        "HTTPConnectionPool._get_conn/_put_conn": urllib3_pool_case(),
    }
    ours = {backend: hostqueue_case(cls) for backend, cls in backends()}
    ns = ns_per_op({**references, **ours}, number, repeat)
    return [
        (name, backend, ns[backend], reference_name, ns[reference_name])
        for backend in ours
        for reference_name in references
    ]


def main() -> None:
    print(f"{'operation':42} {'backend':8} {'ns/op':>8}  {'reference':40} {'ns/op':>8} {'x':>6}")
    for name, backend, ours, reference_name, theirs in measure_hostqueue():
        print(
            f"{name:42} {backend:8} {ours:8.0f}  {reference_name:40} {theirs:8.0f} "
            f"{theirs / ours:6.1f}"
        )


if __name__ == "__main__":
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # a source checkout
    main()
