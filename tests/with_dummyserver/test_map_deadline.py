"""``map``'s ``deadline``: a bound on each request, from its start to its result, over every
hop, retry, backoff and dial; what is still going then is cancelled, and the request yields
:class:`fastpool.DeadlineExceeded`.

Wall-clock bounds here are loose on purpose (the deadline is a fraction of a second, the
servers take seconds): they tell "ended at its deadline" from "ended when the server or a
timeout ended it", never a speed.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
import urllib3
from dummyserver import AppServer, FaultServer
from dummyserver.app import pattern_bytes

import fastpool

pytestmark = [pytest.mark.filterwarnings("error"), pytest.mark.usefixtures("clean_environment")]


def wait_until(check: Callable[[], bool], seconds: float = 5.0) -> bool:
    end = time.monotonic() + seconds
    while not check():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


def test_a_slow_answer_ends_at_the_deadline_and_the_others_complete(
    app_server: AppServer,
) -> None:
    slow = f"{app_server.url}/slow?delay=5"
    fast = [f"{app_server.url}/bytes/{n}" for n in range(1, 6)]
    with fastpool.Session() as session:
        started = time.monotonic()
        results = list(session.map([slow, *fast], concurrency=3, deadline=0.5, timeout=10))
        took = time.monotonic() - started
        assert sorted(len(r.response.content) for r in results if r.response) == [1, 2, 3, 4, 5]
        (late,) = [r for r in results if r.error is not None]
        assert late.request == slow
        error = late.error
        assert isinstance(error, fastpool.DeadlineExceeded)
        assert isinstance(error, requests.exceptions.Timeout)  # what requests users catch
        assert error.request is not None and error.request.url == slow
        assert "deadline of 0.5 s" in str(error) and slow in str(error)
        assert took < 3  # the server answers after 5 s, the read timeout is 10 s
        # The cancelled exchange's connection is closed and its slot given back.
        stats = session.pool_stats()
        assert stats.total.in_use == 0
        assert session.get(fast[0]).content == pattern_bytes(1)


def test_pool_manager_map_yields_a_urllib3_timeout_error(app_server: AppServer) -> None:
    slow = f"{app_server.url}/slow?delay=5"
    with fastpool.PoolManager() as manager:
        started = time.monotonic()
        results = list(manager.map([slow, f"{app_server.url}/bytes/3"], deadline=0.5))
        assert time.monotonic() - started < 3
        errors = [r.error for r in results if r.error is not None]
        assert len(errors) == 1
        (error,) = errors
        assert isinstance(error, fastpool.DeadlineExceeded)
        assert isinstance(error, urllib3.exceptions.TimeoutError)
        assert not isinstance(error, requests.exceptions.RequestException)  # no requests below
        assert manager.stats().total.in_use == 0
        assert manager.request("GET", f"{app_server.url}/bytes/3").data == pattern_bytes(3)


@pytest.mark.parametrize("light", [True, False])
def test_answers_ended_before_the_deadline_are_not_expired_after_it(
    app_server: AppServer, light: bool
) -> None:
    """The fast answers end before the deadline (with ``light``, on the driver's
    ``plain_result`` path, without ``send`` and ``after``); the slow one keeps the map
    polling past it. Each request yields one result: an answer ended once is never expired
    (its deadline bookkeeping went with it), and the slow one is."""
    slow = f"{app_server.url}/slow?delay=5"
    fast = [f"{app_server.url}/bytes/{n}" for n in range(1, 21)]
    with fastpool.PoolManager() as manager:
        started = time.monotonic()
        results = list(manager.map([slow, *fast], concurrency=4, deadline=0.5, light=light))
        assert time.monotonic() - started < 3
        assert len(results) == 1 + len(fast)
        assert sorted(r.request for r in results) == sorted([slow, *fast])
        ended = {r.request: r.response.data for r in results if r.error is None}
        assert ended == {url: pattern_bytes(int(url.rsplit("/", 1)[1])) for url in fast}
        (late,) = [r for r in results if r.error is not None]
        assert late.request == slow and isinstance(late.error, fastpool.DeadlineExceeded)
        assert manager.stats().total.in_use == 0


def test_the_deadline_spans_every_hop_of_a_redirect_chain(
    fault_server_factory: Callable[..., FaultServer],
) -> None:
    # Each hop answers within the 0.6 s deadline (and the 2 s read timeout); the first two
    # take 0.3 s together, the first three 0.8 s: the deadline falls in the third, 0.3 s after
    # the second ended and 0.2 s before the third would.
    seconds = {1: 0.15, 2: 0.15, 3: 0.5, 4: 0.05}

    def handler(conn: Any) -> None:
        while (request := conn.read_request()) is not None:
            hop = int(request.path.rsplit("/", 1)[1])
            time.sleep(seconds[hop])
            if hop < 4:
                conn.respond(302, b"", [("Location", f"/hop/{hop + 1}")])
            else:
                conn.respond(200, b"end")

    server = fault_server_factory(handler)
    with fastpool.Session() as session:
        (whole,) = list(session.map([f"{server.url}/hop/1"], timeout=2))
        assert whole.response is not None and len(whole.response.history) == 3  # the control
        (cut,) = list(session.map([f"{server.url}/hop/1"], timeout=2, deadline=0.6))
        assert isinstance(cut.error, fastpool.DeadlineExceeded)
        # It was cut on its third hop: the request in the error is that hop's.
        assert cut.error.request is not None and cut.error.request.url.endswith("/hop/3")
        assert wait_until(lambda: session.pool_stats().total.in_use == 0)


def test_the_deadline_does_not_wait_out_a_retry_backoff(
    fault_server_factory: Callable[..., FaultServer],
) -> None:
    from urllib3.util.retry import Retry

    answered: list[int] = []

    def handler(conn: Any) -> None:
        while conn.read_request() is not None:
            answered.append(1)
            conn.respond(503, b"later", [("Retry-After", "30")])

    server = fault_server_factory(handler)
    retry = Retry(total=3, status_forcelist=[503], respect_retry_after_header=True)
    with fastpool.Session() as session:
        session.mount(server.url, fastpool.HTTPAdapter(max_retries=retry))
        started = time.monotonic()
        (result,) = list(session.map([f"{server.url}/x"], deadline=0.5))
        assert time.monotonic() - started < 5  # not the 30 s Retry-After
        assert isinstance(result.error, fastpool.DeadlineExceeded)
    assert answered == [1]  # the retry never went out


def test_a_stalled_dial_ends_at_the_deadline_and_its_slot_comes_back(
    app_server: AppServer,
) -> None:
    answer = threading.Event()

    class SlowResolver:
        """Answers only once the test lets it (5 s at most): a dial still running at the
        deadline."""

        def resolve(self, host: str, port: int, family: int = socket.AF_UNSPEC) -> list[Any]:
            answer.wait(5)
            return socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)

    session = fastpool.Session(max_connections=1, pool_timeout=3, resolver=SlowResolver())
    with session:
        started = time.monotonic()
        try:
            (result,) = list(session.map([f"{app_server.url}/bytes/4"], deadline=0.3))
            assert time.monotonic() - started < 0.9  # before the resolver answered
        finally:
            answer.set()  # the dial goes on to its end now, and every later lookup at once
        assert isinstance(result.error, fastpool.DeadlineExceeded)
        # The dial's worker closes what it opened when it ends; the cap's one token is free
        # again, so a new request gets a connection.
        assert wait_until(lambda: session.pool_stats().total.open == 0)
        assert session.get(f"{app_server.url}/bytes/4").content == pattern_bytes(4)


def test_a_hop_sent_whole_is_bounded_by_the_deadline(app_server: AppServer) -> None:
    # An adapter subclass that overrides send: the loop cannot take its requests, so each is
    # sent through send in the map's thread, its timeouts narrowed to what is left.
    class Subclassed(fastpool.HTTPAdapter):
        calls = 0

        def send(self, *args: Any, **kwargs: Any) -> requests.Response:
            Subclassed.calls += 1
            return super().send(*args, **kwargs)

    with fastpool.Session() as session:
        session.mount(app_server.url, Subclassed())
        started = time.monotonic()
        (result,) = list(session.map([f"{app_server.url}/slow?delay=5"], timeout=10, deadline=0.25))
        assert time.monotonic() - started < 3
        assert isinstance(result.error, fastpool.DeadlineExceeded)
        assert Subclassed.calls == 1  # the subclass saw the request
        assert session.pool_stats().total.in_use == 0


def test_a_request_within_its_deadline_is_untouched(app_server: AppServer) -> None:
    urls = [f"{app_server.url}/slow?delay=0.1", f"{app_server.url}/redirect/2"]
    with fastpool.Session() as session:
        results = {r.request: r for r in session.map(urls, deadline=5)}
        plain = {r.request: r for r in session.map(urls)}
    for url in urls:
        with_deadline, without = results[url].response, plain[url].response
        assert with_deadline is not None and without is not None
        assert (with_deadline.status_code, with_deadline.url, len(with_deadline.history)) == (
            without.status_code,
            without.url,
            len(without.history),
        )


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, True, "1", [1]])
def test_a_bad_deadline_is_refused_before_any_request(bad: Any) -> None:
    sent: list[Any] = []

    def source() -> Any:
        sent.append(1)
        yield "http://127.0.0.1:9/"

    with fastpool.Session() as session, pytest.raises(ValueError, match="deadline must be"):
        session.map(source(), deadline=bad)
    with fastpool.PoolManager() as manager, pytest.raises(ValueError, match="deadline must be"):
        manager.map(source(), deadline=bad)
    assert sent == []


def test_leaving_early_with_deadlines_pending_leaks_nothing(app_server: AppServer) -> None:
    urls = [f"{app_server.url}/slow?delay=2"] * 4 + [f"{app_server.url}/bytes/1"]
    with fastpool.Session() as session:
        it = session.map(urls, concurrency=5, deadline=10)
        first = next(it)
        assert first.response is not None and first.response.content == pattern_bytes(1)
        it.close()
        assert wait_until(lambda: session.pool_stats().total.in_use == 0)
        done = threading.Event()

        def again() -> None:
            session.get(f"{app_server.url}/bytes/1")
            done.set()

        threading.Thread(target=again).start()
        assert done.wait(5)


def test_a_wait_at_the_cap_ends_at_the_deadline(app_server: AppServer) -> None:
    # Another thread holds the host's only connection for 3 s; the map's request waits at the
    # cap as one request would (pool_timeout: forever), until its deadline.
    with fastpool.Session(max_connections_per_host=1) as session:
        held = session.get(f"{app_server.url}/bytes/1", stream=True)  # checked out until closed
        try:
            started = time.monotonic()
            (result,) = list(session.map([f"{app_server.url}/bytes/2"], deadline=0.25))
            assert time.monotonic() - started < 3
            assert isinstance(result.error, fastpool.DeadlineExceeded)
        finally:
            held.close()
        assert session.pool_stats().total.in_use == 0
        (after,) = list(session.map([f"{app_server.url}/bytes/2"], deadline=5))
        assert after.response is not None and after.response.content == pattern_bytes(2)


def test_a_hop_sent_whole_waits_for_the_map_to_drain_rather_than_for_itself(
    app_server: AppServer,
) -> None:
    # A file body goes through Session.send in the map's thread. The host's one connection is
    # held by the map's own first request: sending at once would wait at the cap for a
    # connection only the (then blocked) loop can give back. It waits for the map to drain.
    import io

    with fastpool.Session(max_connections_per_host=1, pool_timeout=4) as session:
        upload = requests.Request("POST", f"{app_server.url}/echo", data=io.BytesIO(b"abc"))
        started = time.monotonic()
        results = list(
            session.map([f"{app_server.url}/slow?delay=0.2", upload], concurrency=2, deadline=3)
        )
        assert time.monotonic() - started < 2.5  # not the 4 s pool_timeout
        assert [r.error for r in results] == [None, None]
        echoed = next(r for r in results if r.request is upload).response
        assert echoed is not None and echoed.json()["body"] == "abc"


def test_a_connection_another_thread_gives_back_is_taken_promptly(
    app_server: AppServer, server_factory: Callable[..., Any]
) -> None:
    other, free = server_factory(), server_factory()
    with fastpool.Session(max_connections_per_host=1) as session:
        held = session.get(f"{app_server.url}/bytes/1", stream=True)
        threading.Timer(0.2, held.close).start()
        urls = [
            f"{other.url}/slow?delay=3",  # in flight all along: it never wakes the loop early
            f"{app_server.url}/bytes/2",  # waits for the connection the thread gives back
            f"{free.url}/bytes/3",  # queued behind it
        ]
        started = time.monotonic()
        done: dict[str, float] = {}
        for result in session.map(urls, concurrency=3, deadline=1.1, timeout=10):
            done[result.request] = time.monotonic() - started
            if result.request != urls[0]:
                assert result.error is None, result
        # given back at 0.2 s: taken then, not at the 1.1 s deadline
        assert done[urls[1]] < 0.85 and done[urls[2]] < 0.85


@pytest.mark.parametrize("replaced", ["urlopen", "request"])
def test_pool_manager_bounds_a_hop_sent_whole_at_the_cap_by_the_deadline(
    app_server: AppServer, replaced: str
) -> None:
    # A PoolManager subclass's urlopen or request: each hop (urlopen) or item (request) goes
    # through it, whole, in the map's thread. Another thread holds the pool's one connection;
    # the wait at the cap (pool_timeout: 10 s) ends at the deadline.
    def through(self: Any, *args: Any, **kwargs: Any) -> Any:
        return getattr(fastpool.PoolManager, replaced)(self, *args, **kwargs)

    subclassed = type("Subclassed", (fastpool.PoolManager,), {replaced: through})
    with subclassed(maxsize=1, block=True, pool_timeout=10) as manager:
        held = manager.request("GET", f"{app_server.url}/bytes/1", preload_content=False)
        try:
            started = time.monotonic()
            (result,) = list(manager.map([f"{app_server.url}/bytes/2"], deadline=0.25))
            assert time.monotonic() - started < 3
            assert isinstance(result.error, fastpool.DeadlineExceeded)
        finally:
            held.release_conn()
        (after,) = list(manager.map([f"{app_server.url}/bytes/2"], deadline=5))
        assert after.error is None and after.response.data == pattern_bytes(2)
