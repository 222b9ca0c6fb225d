"""Hostile review of idle sockets left registered with the map loop's epoll ("parked").

On Linux the map's loop leaves a finished exchange's socket registered for reading while its
connection idles in the pool (``Loop._park``). That is safe only while the loop's belief
"closing the socket drops the registration" holds: epoll keys a registration by the open file,
so it holds only while no other process (a forked child) or descriptor shares the file.

Real sockets, real loopback servers; every wait and load loop is bounded. Run on both
backends (``FASTPOOL_NO_EXTENSIONS=1`` for the pure twin).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from dummyserver.hostile import HostileConn, response

from fastpool.poolmanager import PoolManager

pytestmark = pytest.mark.skipif(
    not hasattr(select, "epoll") or not hasattr(os, "fork"), reason="epoll and fork only"
)


# --- helpers -------------------------------------------------------------------------------
def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _epoll_registrations() -> dict[int, set[int]]:
    """Every epoll of this process: the descriptor numbers the kernel has registered."""
    found: dict[int, set[int]] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") != "anon_inode:[eventpoll]":
                continue
            with open(f"/proc/self/fdinfo/{name}") as info:
                found[int(name)] = {
                    int(line.split()[1]) for line in info if line.startswith("tfd:")
                }
        except OSError:
            pass  # closed meanwhile
    return found


@contextlib.contextmanager
def _sleeping_child(seconds: float) -> Iterator[int]:
    """Fork a child that holds every inherited descriptor for ``seconds`` then exits (as a
    multiprocessing worker, a pre-fork server's worker, a daemonised helper would). The
    parent kills and reaps it on the way out, whatever happens."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            time.sleep(seconds)
        finally:
            os._exit(0)
    try:
        yield pid
    finally:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.waitpid(pid, 0)


def _delayed_keepalive(idle: float, mischief: bool = False, after: float = 0.03) -> Any:
    """A keep-alive script: ``/d/<ms>`` is answered after that many milliseconds; an idle
    connection (no request for ``idle`` seconds) is closed with a FIN, as real servers do
    (nginx keepalive_timeout, Apache KeepAliveTimeout). With ``mischief``, after answering
    ``.../junk`` it sends an unasked response ``after`` seconds later (the next request on
    that connection would read it as its own), and after ``.../bye`` it closes the connection
    ``after`` seconds later without saying so."""

    def script(conn: HostileConn) -> None:
        try:
            while True:
                conn.sock.settimeout(idle)
                head = conn.read_head()
                if head is None:
                    return
                conn.sock.settimeout(5.0)
                target = head.split(b" ", 2)[1].decode()
                if target.startswith("/d/"):
                    conn.sleep(int(target.split("/")[2]) / 1000)
                conn.send(response(target.encode()))
                if mischief and target.endswith("/junk"):
                    conn.sleep(after)
                    conn.send(response(b"WRONG ANSWER"))
                elif mischief and target.endswith("/bye"):
                    conn.sleep(after)
                    return
        except (socket.timeout, TimeoutError):
            pass
        finally:
            conn.close()

    return script


def _spin_ratio(cpu: float, wall: float) -> float:
    return cpu / wall if wall > 0 else 0.0


# --- 1. fork while exchanges are in flight ---------------------------------------------------
@pytest.mark.parametrize("close_by", ["clear", "pool_full"])
def test_fork_during_map_then_parked_socket_closed_does_not_spin(hostile, close_by: str) -> None:
    """A child forked while exchanges are in flight shares their sockets. The before-fork
    hook unregisters only the sockets parked *at the fork*; an exchange in flight then ends,
    is parked, and the parent closes it (``PoolManager.clear()``, or the ordinary pool-full
    discard of ``per_host > maxsize``) while the child lives: epoll keeps the registration
    (the child still holds the open file). When the server then closes that idle connection,
    the stale registration reports EOF under a number the loop no longer knows, or the next
    connection's (level-triggered, for ever). The loop must see it and take a new poller
    (``Loop._rebuild``), not busy-wait for the rest of the map (it did, before)."""
    server = hostile(_delayed_keepalive(idle=0.3))
    base = server.url
    manager = PoolManager(maxsize=4 if close_by == "clear" else 1)
    # /a answers at once; /b is in flight at the fork and ends 0.2 s later; /c keeps the map
    # waiting (in poll) for 1 s after that.
    items = [base + "/d/0", base + "/d/200", base + "/d/1200"]
    cpu = wall = 0.0
    statuses: dict[str, int] = {}
    try:
        results = manager.map(items, concurrency=3, light=True)
        first = next(results)
        assert first.error is None, first.error
        statuses[first.request] = first.response.status
        with _sleeping_child(4.0):
            second = next(results)
            assert second.error is None, second.error
            statuses[second.request] = second.response.status
            if close_by == "clear":
                manager.clear()  # closes the idle (parked) connection of /b in the parent
            # (pool_full: /b came back to a pool already holding /a's: closed at check-in)
            wall0, cpu0 = time.monotonic(), time.thread_time()
            third = next(results)
            wall, cpu = time.monotonic() - wall0, time.thread_time() - cpu0
            assert third.error is None, third.error
            statuses[third.request] = third.response.status
            assert next(results, None) is None
    finally:
        manager.clear()
    assert statuses == dict.fromkeys(items, 200)
    assert wall > 0.6  # the map did wait for /c
    # Waiting in epoll_wait costs no CPU; a busy loop costs the whole wait.
    assert _spin_ratio(cpu, wall) < 0.3, f"map thread used {cpu:.2f}s CPU in {wall:.2f}s"


@contextlib.contextmanager
def _fork_from_another_thread(after: float, seconds: float) -> Iterator[list[int]]:
    """After ``after`` seconds, another thread forks a child that holds every inherited
    descriptor for ``seconds`` (a multiprocessing worker started by another thread)."""
    pids: list[int] = []

    def fork() -> None:
        pid = os.fork()
        if pid == 0:
            try:
                time.sleep(seconds)
            finally:
                os._exit(0)
        pids.append(pid)

    timer = threading.Timer(after, fork)
    timer.start()
    try:
        yield pids
    finally:
        timer.cancel()
        timer.join()
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)


def test_a_socket_shared_by_an_earlier_fork_does_not_spin_the_next_map(hostile) -> None:
    """The same hazard one map later: the before-fork hook can only unregister what is parked
    at the fork, but a connection in flight at the fork (here: another thread forks while a
    map waits on it; equally a blocking request of another thread) stays shared with the
    child for the child's whole life. A later map (a new loop) parks it, the parent closes it
    (pool-full discard), the server closes the idle connection: the new loop's epoll holds a
    registration nothing can remove but closing that epoll, which the loop must do rather
    than busy-wait."""
    server = hostile(_delayed_keepalive(idle=0.3))
    base = server.url
    manager = PoolManager(maxsize=2)
    cpu = wall = 0.0
    try:
        with _fork_from_another_thread(after=0.1, seconds=4.0) as pids:
            # Map 1: B is in flight when the other thread forks; B then idles in the pool.
            (only,) = list(manager.map([base + "/d/400"], concurrency=1, light=True))
            assert only.error is None and pids
            # Map 2: the first item takes B (the only idle connection) and ends after two
            # new connections came back and filled the pool: B is parked, then discarded
            # (closed) at check-in. The server closes it 0.3 s later; /d/1200 keeps map 2
            # waiting meanwhile.
            items = [base + "/d/100", base + "/d/0", base + "/d/0", base + "/d/1200"]
            second_map = manager.map(items, concurrency=4, light=True)
            for _ in range(3):
                assert next(second_map).error is None
            wall0, cpu0 = time.monotonic(), time.thread_time()
            last = next(second_map)
            wall, cpu = time.monotonic() - wall0, time.thread_time() - cpu0
            assert last.error is None, last.error
            assert last.response.status == 200
            assert next(second_map, None) is None
    finally:
        manager.clear()
    assert wall > 0.6
    assert _spin_ratio(cpu, wall) < 0.3, f"map thread used {cpu:.2f}s CPU in {wall:.2f}s"


# --- 2. the before-fork hook runs in the forking thread, not the loop's ----------------------
def test_fork_from_another_thread_never_breaks_a_running_map(hostile, monkeypatch) -> None:
    """``os.register_at_fork(before=_before_fork)`` runs in whichever thread forks, while the
    map's own thread runs the loop. When the hook unparked sockets from any thread, nothing
    ordered the two (seen on both backends): the hook took a socket out of ``_parked`` and,
    before its ``epoll.unregister`` landed, the map reused that connection; ``_watch`` found
    it no longer parked, registered it again and epoll answered EEXIST: ``FileExistsError``
    escaped from ``map()``. The hook now acts only in the loop's own thread. A race: bounded
    to 150 forks / 4 s; it hit within about 20-80 forks here, with Python's default switch
    interval."""
    server = hostile(_delayed_keepalive(idle=10.0))
    url = server.url + "/d/0"
    manager = PoolManager(maxsize=2)
    hook_errors: list[str] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: hook_errors.append(repr(u.exc_value)))
    stop = threading.Event()
    forks: list[int] = []

    def forker() -> None:  # as a thread starting multiprocessing workers (fork) would
        while not stop.is_set() and len(forks) < 150:
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            forks.append(pid)
            end = time.monotonic() + 2.0
            reaped = False
            while not reaped and time.monotonic() < end:
                reaped = os.waitpid(pid, os.WNOHANG)[0] == pid
                time.sleep(0.001)
            if not reaped:  # the child stuck in an at-fork handler: ours to end
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            time.sleep(0.002)

    thread = threading.Thread(target=forker, daemon=True)
    errors: list[str] = []
    done = 0
    deadline = time.monotonic() + 4.0
    thread.start()
    try:
        for result in manager.map((url for _ in range(10**6)), concurrency=2, light=True):
            done += 1
            if result.error is not None:
                errors.append(repr(result.error))
            if time.monotonic() > deadline or stop.is_set() or len(forks) >= 150:
                break
    except OSError as e:  # raised out of the map itself
        errors.append(f"map() raised {e!r} after {done} results and {len(forks)} forks")
    finally:
        stop.set()
        thread.join(10.0)
        manager.clear()
    assert done > 0
    assert errors == []
    assert hook_errors == []


# --- 3. what held: guards against plausible regressions --------------------------------------
@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_server_closing_and_chattering_idle_connections_mid_map(hostile, ca_bundle, tls) -> None:
    """Parked sockets that turn readable (unasked bytes, a FIN) while the map polls: the
    politeness ``delay`` (150 ms between starts) makes each connection idle, parked, while the
    server's mischief (10 ms after its answer) arrives and the loop waits. Every answer is its
    own request's (the unasked bytes are never read as the next answer), the map waits
    without spinning, nothing hangs. (Mischief that lands after the next request went out is
    HTTP/1.1's own race, undetectable by any client: not tested. The margin between the two,
    140 ms, is wide because a loaded CI machine delayed the server's 30 ms by over 50 ms once.)"""
    server = hostile(_delayed_keepalive(idle=0.5, mischief=True, after=0.01), tls=tls)
    base = server.url
    # Another host's slow answer keeps the loop polling (not sleeping) between the starts.
    keeper = hostile(_delayed_keepalive(idle=5.0), host="127.0.0.2").url + "/d/2200"
    items = [keeper] + [f"{base}/d/0/{i}{('/junk', '/bye', '')[i % 3]}" for i in range(12)]
    manager = PoolManager(maxsize=2, ca_certs=ca_bundle, retries=False)
    got: dict[str, bytes] = {}
    wall0, cpu0 = time.monotonic(), time.thread_time()
    try:
        for result in manager.map(items, concurrency=3, per_host=2, delay=0.15, light=True):
            assert result.error is None, (result.request, result.error)
            got[result.request] = result.response.data
            assert time.monotonic() - wall0 < 30.0
    finally:
        manager.clear()
    wall, cpu = time.monotonic() - wall0, time.thread_time() - cpu0
    assert got == {url: urlsplit_path(url).encode() for url in items}
    assert server.connections >= 8  # junk and bye retired their connections
    assert _spin_ratio(cpu, wall) < 0.5, f"map thread used {cpu:.2f}s CPU in {wall:.2f}s"


def urlsplit_path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def test_other_thread_blocking_requests_on_the_same_pool_during_a_map(hostile) -> None:
    """Another thread's ``PoolManager.request`` takes parked connections out of the pool,
    uses them blocking (the map's epoll still has them registered) and gives them back; the
    map takes them again. Every answer matches its request on both sides."""
    server = hostile(_delayed_keepalive(idle=2.0, mischief=True))
    base = server.url
    manager = PoolManager(maxsize=2, retries=False)
    other_errors: list[str] = []
    stop = threading.Event()

    def other() -> None:
        for i in range(400):
            if stop.is_set():
                return
            path = f"/d/{i % 3}/t{i}"
            try:
                data = manager.request("GET", base + path).data
            except Exception as e:  # noqa: BLE001 - reported below
                other_errors.append(repr(e))
                return
            if data != path.encode():
                other_errors.append(f"{path}: {data!r}")

    thread = threading.Thread(target=other, daemon=True)
    thread.start()
    items = [f"{base}/d/{i % 5}/m{i}" for i in range(300)]
    started = time.monotonic()
    try:
        for result in manager.map(items, concurrency=2, per_host=2, light=True):
            assert result.error is None, (result.request, result.error)
            assert result.response.data == urlsplit_path(result.request).encode()
            assert time.monotonic() - started < 30.0
    finally:
        stop.set()
        thread.join(10.0)
        manager.clear()
    assert not thread.is_alive()
    assert other_errors == []


def test_on_body_over_tls_across_turns_then_the_next_map_reuses(hostile, ca_bundle) -> None:
    """on_body bodies big enough to take several turns (the socket is parked readable
    between them), over TLS, on two connections; then a second map (a new loop, a new
    epoll) on the same manager reuses the connections the first one left idle."""
    body = bytes(range(256)) * 2048  # 512 KiB: 8+ pieces of 64 KiB, several turns

    def script(conn: HostileConn) -> None:
        while conn.read_head() is not None:
            conn.send(response(body), piece=100_000, delay=0.002)

    server = hostile(script, tls=True)
    manager = PoolManager(maxsize=2, ca_certs=ca_bundle, retries=False)
    try:
        for round_ in range(2):
            pieces: dict[str, list[bytes]] = {}

            def on_body(request: Any, _response: Any, piece: bytes, pieces=pieces) -> None:
                pieces.setdefault(request, []).append(piece)

            items = [f"{server.url}/r{round_}/{i}" for i in range(8)]
            started = time.monotonic()
            for result in manager.map(items, concurrency=2, per_host=2, on_body=on_body):
                assert result.error is None, (result.request, result.error)
                assert time.monotonic() - started < 30.0
            assert {url: b"".join(p) for url, p in pieces.items()} == dict.fromkeys(items, body)
        assert server.connections == 2  # the second map reused the first one's connections
    finally:
        manager.clear()


def test_churning_connections_keep_no_descriptors(hostile) -> None:
    """``per_host`` above ``maxsize``: most connections are parked, then closed at check-in
    (pool full), and new dials take their numbers again at once (``_watch`` must register
    the new socket, not trust the number). The map's descriptors stay bounded all along and
    every answer is right; afterwards nothing is left open."""
    server = hostile(_delayed_keepalive(idle=5.0))
    base = server.url
    manager = PoolManager(maxsize=1, retries=False)
    before = _fds()
    peak = 0
    items = [f"{base}/d/{i % 3}/{i}" for i in range(400)]
    started = time.monotonic()
    try:
        for n, result in enumerate(manager.map(items, concurrency=6, per_host=6, light=True)):
            assert result.error is None, (result.request, result.error)
            assert result.response.data == urlsplit_path(result.request).encode()
            if n % 20 == 0:
                peak = max(peak, _fds() - before)
            assert time.monotonic() - started < 30.0
    finally:
        manager.clear()
    # 6 connections, the loop's epoll and wake pair, the dialer's: never hundreds.
    assert peak < 20, peak
    settle = time.monotonic() + 2.0  # the server's threads may still be closing their side
    while _fds() - before > 1 and time.monotonic() < settle:
        time.sleep(0.02)
    assert _fds() - before <= 1, sorted(os.listdir("/proc/self/fd"))
    assert server.connections >= 20  # it did churn (pool-full discards)
