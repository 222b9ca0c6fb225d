"""One fastpool.Session shared by 64 threads: bodies match, cookies all land, mounts and closes
during traffic are safe, and the pools' accounting returns to zero.

Every loop is bounded in count and time (thread joins have deadlines; every request a timeout).
Run the file again with FASTPOOL_NO_EXTENSIONS=1 for the pure backend.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest
import requests

from fastpool.cookies import ThreadSafeCookieJar
from fastpool.sessions import DEFAULT_ADAPTER, Session

#: Stress and soak runs: `-m "not slow"` leaves them out of a quick run.
pytestmark = pytest.mark.slow

THREADS = 64
REQUESTS_PER_THREAD = 15
DEADLINE = 120.0  # seconds for a whole scenario, far above what it needs
TIMEOUT = 30.0  # per request


def run_threads(count: int, target: Callable[[int], None]) -> list[BaseException]:
    """Start ``count`` threads on ``target(i)``, join them by the deadline, return their errors."""
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def body(i: int) -> None:
        try:
            start.wait(timeout=DEADLINE)
            target(i)
        except BaseException as exc:  # noqa: BLE001 - every failure is reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    end = time.monotonic() + DEADLINE
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    stuck = [thread for thread in threads if thread.is_alive()]
    assert not stuck, f"{len(stuck)} threads still running after {DEADLINE} s"
    return errors


def host_queues(session: Session) -> Iterator[Any]:
    """Every HostQueue behind the session's fastpool adapters (none for the stock adapter)."""
    for adapter in session.adapters.values_snapshot():
        manager = getattr(adapter, "poolmanager", None)
        pools = getattr(manager, "pools", None)
        if pools is None or not hasattr(pools, "values") or type(pools).__name__ != "LRUMap":
            continue
        for pool in pools.values():
            queue = getattr(pool, "pool", None)  # (fastpool's pools keep it in a slot)
            if type(queue).__name__ == "HostQueue":
                yield queue


def assert_accounting_at_zero(session: Session) -> None:
    """No connection of any pool still counted in use (all responses were read)."""
    if DEFAULT_ADAPTER.__module__.startswith("requests"):
        return  # the stock adapter has no HostQueue to read
    queues = list(host_queues(session))
    assert queues, "no HostQueue found behind fastpool's adapter"
    for queue in queues:
        assert queue.in_use == 0


def test_64_threads_share_one_session(app_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    session = Session()
    base = app_server.url
    mismatches: list[tuple[str, Any]] = []

    def worker(i: int) -> None:
        response = session.get(f"{base}/cookies/set?t{i}={i}", timeout=TIMEOUT)
        assert response.json()["cookies"][f"t{i}"] == str(i)
        for n in range(REQUESTS_PER_THREAD):
            query = f"i={i}-{n}"
            data = session.get(f"{base}/echo?{query}", timeout=TIMEOUT).json()
            if data["query"] != query:
                mismatches.append((query, data["query"]))

    errors = run_threads(THREADS, worker)
    assert errors == []
    assert mismatches == []
    # every cookie set by the server, on any thread, reached the shared jar
    assert session.cookies.get_dict() == {f"t{i}": str(i) for i in range(THREADS)}
    assert app_server.requests == THREADS * (REQUESTS_PER_THREAD + 2)
    # pool_maxsize=64: no connection was discarded and no more opened than threads
    assert [r for r in caplog.records if "pool is full" in r.getMessage()] == []
    assert app_server.connections <= THREADS
    assert_accounting_at_zero(session)
    session.close()


def test_mount_during_traffic_is_safe(app_server: Any) -> None:
    session = Session()
    base = app_server.url
    spare = [DEFAULT_ADAPTER(pool_maxsize=THREADS), DEFAULT_ADAPTER(pool_maxsize=THREADS)]
    stop = threading.Event()

    def remount() -> None:
        n = 0
        while not stop.is_set() and n < 2000:
            session.mount(f"{base}/echo", spare[n % 2])  # matches the traffic
            session.mount(f"http://unrelated-{n % 7}.test/", spare[0])  # churns the order
            n += 1
            time.sleep(0.0005)

    def worker(i: int) -> None:
        for n in range(REQUESTS_PER_THREAD):
            query = f"i={i}-{n}"
            assert session.get(f"{base}/echo?{query}", timeout=TIMEOUT).json()["query"] == query

    mounter = threading.Thread(target=remount, daemon=True)
    mounter.start()
    try:
        errors = run_threads(THREADS // 2, worker)
    finally:
        stop.set()
        mounter.join(DEADLINE)
    assert errors == []
    assert list(session.adapters)[:1] == [f"{base}/echo"]  # the longest prefix stays first
    assert session.get_adapter(f"{base}/echo") in spare
    assert_accounting_at_zero(session)
    session.close()
    for adapter in spare:
        adapter.close()


def test_close_during_traffic_fails_clearly_and_recovers(app_server: Any) -> None:
    session = Session()
    base = app_server.url
    stop = threading.Event()
    failures: list[BaseException] = []
    closed_queues: list[Any] = []  # every pool's HostQueue the closer saw before closing it

    def closer() -> None:
        n = 0
        while not stop.is_set() and n < 200:
            closed_queues.extend(host_queues(session))
            session.close()
            n += 1
            time.sleep(0.002)

    def worker(i: int) -> None:
        for n in range(REQUESTS_PER_THREAD):
            query = f"i={i}-{n}"
            try:
                data = session.get(f"{base}/echo?{query}", timeout=TIMEOUT).json()
            except requests.exceptions.ConnectionError as exc:  # a clear, documented error
                failures.append(exc)
                continue
            assert data["query"] == query

    closing = threading.Thread(target=closer, daemon=True)
    closing.start()
    try:
        errors = run_threads(THREADS // 2, worker)
    finally:
        stop.set()
        closing.join(DEADLINE)
    assert errors == []
    # afterwards the session works as before: nothing was corrupted
    assert session.get(f"{base}/echo?after=1", timeout=TIMEOUT).json()["query"] == "after=1"
    assert_accounting_at_zero(session)
    # the pools closed under traffic got every connection back too
    assert closed_queues
    assert [queue.in_use for queue in closed_queues if queue.in_use] == []
    session.close()


def test_cookie_jar_reads_while_threads_write() -> None:
    jar = ThreadSafeCookieJar()
    stop = threading.Event()

    def writer(i: int) -> None:
        for n in range(300):
            jar.set(f"w{i}-{n}", str(n), domain=f"d{n % 5}.example")
        if i == 0:
            stop.set()

    def reader(_: int) -> None:
        rounds = 0
        while not stop.is_set() and rounds < 5000:
            jar.get_dict()
            jar.copy()
            len(jar)
            rounds += 1

    errors = run_threads(8, lambda i: writer(i) if i < 4 else reader(i))
    assert errors == []
    assert len(jar) == 4 * 300
