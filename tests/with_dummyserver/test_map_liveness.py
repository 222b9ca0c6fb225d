"""A map's checkout of an idle connection, answered by the loop's last wait instead of a poll.

The pools check an idle connection before reusing it: a ``poll`` of its socket, which says
whether the server closed it or sent unasked bytes (urllib3's ``is_connection_dropped``). On
Linux a map's loop keeps such a socket registered with its epoll while it idles, and a wait
that returned fewer events than it may report has seen every ready socket: a parked socket it
did not report had nothing to read. For the short way's checkouts (``fastpool._lane``), that
word, when at most ``SEEN_FOR`` seconds old, stands in for the poll (``Loop.seen_idle``). See
docs/differences.md and docs/map.md.

Real loopback servers; every load loop is bounded in count and time. Run on both backends.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from dummyserver.hostile import HostileConn, response

import fastpool
from fastpool import _poller

pytestmark = pytest.mark.skipif(not hasattr(select, "epoll"), reason="epoll only")


def _keep_alive(idle: float = 10.0, closing: threading.Event | None = None) -> Any:
    """Answer each request with its target, kept alive. An idle connection is closed (a FIN)
    after ``idle`` seconds, or as soon as ``closing`` is set (which it clears)."""

    def script(conn: HostileConn) -> None:
        try:
            while True:
                end = time.monotonic() + idle
                while True:
                    readable = select.select([conn.sock], [], [], 0.001)[0]
                    if closing is not None and closing.is_set():
                        closing.clear()
                        return  # (told to close: closed, even with a request come meanwhile)
                    if readable:
                        break
                    if time.monotonic() > end:
                        return
                head = conn.read_head()
                if head is None:
                    return
                conn.send(response(head.split(b" ", 2)[1]))
        finally:
            conn.close()

    return script


class _CountedPoll:
    """A connection's poller, counting the pool's liveness polls of its socket."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def poll(self, timeout: Any = None) -> Any:
        self.calls += 1
        return self.inner.poll(timeout)


def _count_polls(manager: Any) -> list[_CountedPoll]:
    """Each pool's one idle connection, its liveness polls counted from now on."""
    counters = []
    for pool in manager.pools.values():
        conn = pool._get_conn()  # (checked: its poller is made)
        conn._poller = counted = _CountedPoll(conn._poller)
        pool._put_conn(conn)
        counters.append(counted)
    assert len(counters) == 3
    return counters


@pytest.fixture
def three_hosts(hostile: Any) -> list[str]:
    return [hostile(_keep_alive(), host=f"127.0.0.{i}").url for i in (1, 2, 3)]


def _target(url: str) -> bytes:
    return ("/" + url.split("/", 3)[3]).encode()


def _round_robin(hosts: list[str], rounds: int) -> list[str]:
    return [f"{hosts[i % len(hosts)]}/r{i}" for i in range(rounds * len(hosts))]


@pytest.mark.parametrize("light", [True, False], ids=["light", "urllib3-responses"])
def test_a_crawl_reuses_what_the_loop_saw_idle_without_a_poll(three_hosts, light) -> None:
    manager = fastpool.PoolManager(retries=False)
    try:
        assert all(r.error is None for r in manager.map(three_hosts, concurrency=3))
        counters = _count_polls(manager)
        items = _round_robin(three_hosts, 20)
        got = {}
        started = time.monotonic()
        for result in manager.map(items, concurrency=1, light=light):
            assert result.error is None, (result.request, result.error)
            got[result.request] = result.response.data
            assert time.monotonic() - started < 30.0
        assert got == {url: _target(url) for url in items}
        polls = sum(c.calls for c in counters)
        # The first three checkouts poll: the connections were parked in the last map's loop.
        # Each later one comes right after a wait that saw its socket idle. (A thread held off
        # the CPU past SEEN_FOR between the two polls instead: a few, never most.)
        assert 3 <= polls < 30, polls
        assert [pool.num_connections for pool in manager.pools.values()] == [1, 1, 1]
    finally:
        manager.clear()


def test_session_map_reuses_what_the_loop_saw_idle_without_a_poll(three_hosts) -> None:
    with fastpool.Session() as session:
        assert all(r.error is None for r in session.map(three_hosts, concurrency=3))
        manager = session.get_adapter(three_hosts[0]).poolmanager
        counters = _count_polls(manager)
        items = _round_robin(three_hosts, 20)
        for result in session.map(items, concurrency=1):
            assert result.error is None, (result.request, result.error)
            assert result.response.content == _target(result.request)
        assert 3 <= sum(c.calls for c in counters) < 30


def _slowly(items: list[str], pause: float) -> Iterator[str]:
    for item in items:
        time.sleep(pause)
        yield item


def test_a_checkout_long_after_the_last_wait_polls(three_hosts) -> None:
    # The caller's iterable is read between a wait and the next checkout: slow, it makes the
    # wait's word older than SEEN_FOR, and every checkout polls as one request does (the last
    # few, read ahead before the input ran out, may not).
    manager = fastpool.PoolManager(retries=False)
    try:
        assert all(r.error is None for r in manager.map(three_hosts, concurrency=3))
        counters = _count_polls(manager)
        items = _round_robin(three_hosts, 6)
        results = list(manager.map(_slowly(items, _poller.SEEN_FOR * 4), concurrency=1, light=True))
        assert [r.error for r in results] == [None] * len(items)
        assert sum(c.calls for c in counters) >= len(items) - 8
    finally:
        manager.clear()


def _answer_slowly(conn: HostileConn) -> None:
    while (head := conn.read_head()) is not None:
        conn.sleep(0.3)
        conn.send(response(head.split(b" ", 2)[1]))


@pytest.mark.parametrize("expiry", [{}, {"idle_timeout": 30.0}], ids=["plain", "idle-timeout"])
def test_a_close_the_loop_saw_is_met_by_the_check_as_urllib3_meets_it(hostile, expiry) -> None:
    # The server closes an idle connection while the map's loop waits on another host: the
    # wait reports it, the socket is unparked, and the next checkout's poll finds it closed,
    # so the request goes on a new connection (dropped_stale), not sent on the dead one and
    # replayed (retried). Beside urllib3: one request, a pause, one more.
    closing = hostile(_keep_alive(idle=0.05))
    slow = hostile(_answer_slowly, host="127.0.0.2")
    with urllib3.PoolManager(retries=False) as stock:
        assert stock.request("GET", closing.url + "/a").data == b"/a"
        time.sleep(0.2)
        assert stock.request("GET", closing.url + "/b").data == b"/b"  # (dialed anew)
    closing.reset()  # its connections counted from 0
    manager = fastpool.PoolManager(retries=False, **expiry)  # (expiry: every checkout checked)
    try:
        items = [closing.url + "/a", slow.url + "/slow", closing.url + "/b"]
        got = {}
        for result in manager.map(items, concurrency=2, per_host=1, delay=0.2, light=True):
            assert result.error is None, (result.request, result.error)
            got[result.request] = result.response.data
        assert got == {items[0]: b"/a", items[1]: b"/slow", items[2]: b"/b"}
        pool = manager.connection_from_url(closing.url)
        assert (closing.connections, pool.dropped_stale, pool.retried) == (2, 1, 0)
    finally:
        manager.clear()


def _signal_then_answer(closing: threading.Event, before: bool) -> Any:
    """Answer each request with its target; on the first, have the other server close its
    idle connection (``closing``), before the answer goes out or just after."""

    signalled = False

    def script(conn: HostileConn) -> None:
        nonlocal signalled
        while (head := conn.read_head()) is not None:
            first, signalled = not signalled, True
            if first and before:
                closing.set()
                end = time.monotonic() + 2.0
                while closing.is_set() and time.monotonic() < end:
                    time.sleep(0.0002)
                time.sleep(0.002)  # its FIN over loopback, ahead of this answer
            conn.send(response(head.split(b" ", 2)[1]))
            if first and not before:
                closing.set()

    return script


@pytest.mark.parametrize("before", [True, False], ids=["close-then-answer", "answer-then-close"])
def test_a_close_around_the_last_wait_never_fails_a_get(hostile, before: bool) -> None:
    # One request at a time: /a on host A, /o on host O, /b on A again, checked out right after
    # the wait that ended /o. When A's close reached us before /o's answer, that wait saw it:
    # the checkout polls and dials anew (dropped_stale). When it comes just after (the window
    # the loop's word leaves, docs/differences.md), the GET is sent on the closed connection
    # and sent again on a new one (retried), unless it landed before the checkout's look.
    # On a busy machine /b may also reach A before O's thread has told A to close: A answers
    # it on the first connection. That outcome is allowed, but the close must be met at least
    # once in a few tries (bounded), so the window stays under test.
    seen = []
    for _ in range(_TRIES):
        seen.append(_close_around_the_last_wait(hostile, before))
        if seen[-1] != (1, 0):
            break
    if before:
        assert seen[-1] == (2, 1, 0), seen
    else:
        assert seen[-1] == (2, 1), seen
        assert set(seen) <= {(2, 1), (1, 0)}, seen


#: tries of the close-around-the-wait test before its close must have been met
_TRIES = 5


def _close_around_the_last_wait(hostile: Any, before: bool) -> tuple[int, ...]:
    """One try: ``(connections to A, dropped_stale, retried)`` with ``before``, else
    ``(connections to A, dropped_stale + retried)``; every GET answered."""
    closing_now = threading.Event()
    a = hostile(_keep_alive(closing=closing_now))
    o = hostile(_signal_then_answer(closing_now, before), host="127.0.0.2")
    items = [a.url + "/a", o.url + "/o", a.url + "/b"]
    manager = fastpool.PoolManager(retries=False)
    try:
        results = {r.request: r for r in manager.map(items, concurrency=1, light=True)}
        assert [results[url].error for url in items] == [None] * 3
        assert [results[url].response.data for url in items] == [b"/a", b"/o", b"/b"]
        pool = manager.connection_from_url(a.url)
        if before:
            return (a.connections, pool.dropped_stale, pool.retried)
        return (a.connections, pool.dropped_stale + pool.retried)
    finally:
        manager.clear()


def _urgent_byte_then_answers(told: threading.Event, sent: threading.Event) -> Any:
    """Answer the first request; once ``told``, send one TCP urgent byte (MSG_OOB) and
    nothing else on the idle connection; then answer what comes."""

    def script(conn: HostileConn) -> None:
        head = conn.read_head()
        if head is None:
            return
        conn.send(response(head.split(b" ", 2)[1]))
        told.wait(5.0)
        conn.sock.send(b"!", socket.MSG_OOB)
        sent.set()
        while (head := conn.read_head()) is not None:
            conn.send(response(head.split(b" ", 2)[1]))

    return script


def _then_answer(told: threading.Event, sent: threading.Event) -> Any:
    """Tell the other server to send its urgent byte, answer 50 ms after it did; answer
    every later request at once."""

    def script(conn: HostileConn) -> None:
        while (head := conn.read_head()) is not None:
            if not told.is_set():
                told.set()
                sent.wait(5.0)
                conn.sleep(0.05)
            conn.send(response(head.split(b" ", 2)[1]))

    return script


@pytest.mark.parametrize("how", ["one-at-a-time", "map"])
def test_tcp_urgent_data_on_an_idle_connection_is_not_seen_by_the_map(
    hostile, how, monkeypatch
) -> None:
    # A deliberate difference (docs/differences.md): the pool's poll asks for POLLIN|POLLPRI
    # (as urllib3's wait_for_read), so an urgent byte the server sent on an idle connection
    # makes it drop the connection; the loop's epoll is asked for EPOLLIN, which an urgent
    # byte alone does not raise: the wait for /o2, begun 50 ms after the byte came, does not
    # report it, and the map reuses the connection for /b. HTTP never sends urgent data, and
    # it is not in the stream: the next answer is read whole either way.
    monkeypatch.setattr(_poller, "SEEN_FOR", 1.0)  # (whatever the machine's load)
    told, sent = threading.Event(), threading.Event()
    a = hostile(_urgent_byte_then_answers(told, sent))
    o = hostile(_then_answer(told, sent), host="127.0.0.2")
    items = [a.url + "/a", o.url + "/o", o.url + "/o2", a.url + "/b"]
    manager = fastpool.PoolManager(retries=False)
    try:
        if how == "map":
            results = {r.request: r for r in manager.map(items, concurrency=1, light=True)}
            assert [results[url].error for url in items] == [None] * 4
            got = [results[url].response.data for url in items]
        else:
            got = [manager.request("GET", url).data for url in items]
        assert got == [b"/a", b"/o", b"/o2", b"/b"]
        pool = manager.connection_from_url(a.url)
        if how == "map":
            assert (pool.dropped_stale, a.connections) == (0, 1)  # reused
        else:
            assert (pool.dropped_stale, a.connections) == (1, 2)  # as urllib3's check
    finally:
        manager.clear()
