"""The lane (``fastpool._lane``): ``PoolManager.map``'s plainest hops in one call each way.

The lane may only ever decide what the general steps decide. Each differential test runs the
same maps with the lane and with it switched off (a Lane that takes nothing), on the same
server, and compares what a caller sees: every result, and the pool's counters. The others pin
where it steps aside: whatever a tool patched, traced or limited must see each request.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pytest
from dummyserver import AppServer, pattern_bytes
from dummyserver.oneshot import OneShotServer
from lane_counts import Counted, Off, count_lanes
from urllib3.util.retry import Retry
from urllib3.util.timeout import Timeout

import fastpool
import fastpool.poolmanager
from fastpool.trace import Trace

pytestmark = pytest.mark.filterwarnings("error")


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> type[Counted]:
    return count_lanes(monkeypatch)


@contextlib.contextmanager
def lane(kind: type) -> Iterator[None]:
    with mock.patch.object(fastpool.poolmanager, "Lane", kind):
        yield


def seen(result: Any) -> tuple[Any, ...]:
    """What a caller sees of a map's result (the Date header and the server's connection
    counter aside)."""
    if result.error is not None:
        return (result.request, type(result.error).__name__, str(result.error))
    response = result.response
    body: Any = response.data
    with contextlib.suppress(ValueError):
        data = json.loads(body)
        if isinstance(data, dict):
            data.pop("connection", None)
            body = data
    headers = [(k, v) for k, v in response.headers.items() if k.lower() not in ("date",)]
    if isinstance(body, dict):
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
    return (result.request, type(response).__name__, response.status, headers, body)


def counters(manager: fastpool.PoolManager) -> list[tuple[Any, ...]]:
    return sorted(
        (
            pool.host,
            pool.port,
            pool.num_requests,
            pool.num_connections,
            pool.pool.idle,
            pool.pool.in_use,
            pool.dropped_stale,
        )
        for pool in manager.pools.values()
    )


def run_maps(
    make: Callable[[], fastpool.PoolManager],
    rounds: list[list[Any]],
    pause: float = 0.0,
    **options: Any,
) -> tuple[list[list[tuple[Any, ...]]], list[tuple[Any, ...]]]:
    """Each round's results (in the order given) and the pools' counters at the end; a
    ``pause`` (seconds) before each round after the first."""
    outcomes = []
    with make() as manager:
        for n, items in enumerate(rounds):
            if n:
                time.sleep(pause)
            results = list(manager.map(items, **options))
            order = {id(given): i for i, given in enumerate(items)}
            results.sort(key=lambda r: order[id(r.request)])
            outcomes.append([seen(r) for r in results])
        return outcomes, counters(manager)


def plain_and_not(http: str) -> list[Any]:
    return [
        f"{http}/bytes/100",
        f"{http}/bytes/100?n=1",
        f"{http}/bytes/7",
        f"{http}/status/404",
        f"{http}/status/204",
        f"{http}/status/503",  # a status Retry may retry (with Retry-After): urlopen's
        f"{http}/gzip",  # a Content-Encoding to decode
        f"{http}/chunked/300?chunk=7",  # not framed by its length
        f"{http}/redirect/2",  # a redirect to follow
        f"{http}/close",  # Connection: close
        f"{http}/headers",
        f"{http}/echo?a=%41",  # a target to encode
        f"{http}/echo?a=b#frag",  # a fragment stays with the client
        f"{http}/./echo",  # dot segments
        ("GET", f"{http}/bytes/3"),
        ("GET", f"{http}/bytes/4", {"timeout": 2.0, "retries": False, "pool_timeout": 1}),
        ("GET", f"{http}/bytes/5", {"timeout": Timeout(connect=2.0, read=3.0)}),
        ("GET", f"{http}/bytes/6", {"timeout": Timeout(total=5.0)}),
        ("GET", f"{http}/status/404", {"retries": Retry(2, status_forcelist=[404])}),
        ("GET", f"{http}/redirect/3", {"retries": Retry(redirect=5)}),
        ("GET", f"{http}/redirect/3", {"redirect": False}),
        ("GET", f"{http}/bytes/3", {"headers": {"X-A": "1"}}),  # headers of its own
        ("GET", f"{http}/bytes/3", {"preload_content": True}),
        ("GET", f"{http}/bytes/3", {"decode_content": False}),  # another argument
        ("GET", f"{http}/echo", {"chunked": True}),  # its framing is in the head
        ("GET", f"{http}/echo", {"body": b"x"}),
        ("HEAD", f"{http}/bytes/3"),
        ("DELETE", f"{http}/bytes/3"),
    ]


@pytest.mark.parametrize("concurrency", [1, 4])
@pytest.mark.parametrize("light", [True, False], ids=["light", "urllib3"])
def test_the_lane_answers_as_the_general_steps(
    app_server: AppServer, light: bool, concurrency: int
) -> None:
    items = plain_and_not(app_server.url)
    rounds = [items, items, list(reversed(items))]  # later rounds find idle connections

    def make() -> fastpool.PoolManager:
        return fastpool.PoolManager(maxsize=8)

    with lane(Counted):
        Counted.begun, Counted.finished = [], []
        with_lane = run_maps(make, rounds, concurrency=concurrency, light=light)
        begun, finished = Counted.begun, Counted.finished
    with lane(Off):
        without = run_maps(make, rounds, concurrency=concurrency, light=light)
    if concurrency > 1:
        # How many connections four hops in flight dial depends on which answer comes first
        # (the /close route closes its own): the same count only one at a time.
        for outcome in (with_lane, without):
            outcome[1][:] = [pool[:3] + pool[5:] for pool in outcome[1]]
    assert with_lane == without
    assert True in begun and False in begun  # both ways were taken
    if light:
        assert True in finished and False in finished


def test_the_lane_takes_the_plainest_hops(app_server: AppServer, counted: type[Counted]) -> None:
    base = f"{app_server.url}/bytes/10"
    with fastpool.PoolManager(maxsize=4) as manager:
        list(manager.map([base] * 4, concurrency=4, light=True))  # four idle connections
        counted.begun.clear()
        counted.finished.clear()
        urls = [f"{base}?n={i}" for i in range(40)]  # a crawl's URLs: each new
        # a timeout and no retries, as a crawler asks, are the lane's too
        items = [
            u if i % 2 else ("GET", u, {"timeout": 5.0, "retries": False})
            for i, u in enumerate(urls)
        ]
        results = list(manager.map(items, concurrency=4, light=True))
        pool = manager.connection_from_url(base)
        assert sorted(r.response.url for r in results) == sorted(urls)
        assert {r.response.data for r in results} == {results[0].response.data}
        assert counted.begun == [True] * 40
        assert counted.finished == [True] * 40
        assert pool.num_requests == 44
        assert pool.num_connections == 4
        assert pool.pool.idle == 4 and pool.pool.in_use == 0


def test_the_lane_revives_a_connection_the_server_dropped(counted: type[Counted]) -> None:
    # Each answer keeps the connection alive, and the server closes it all the same: the idle
    # connection the lane checks out is readable (EOF), closed, and dialed again in the loop.
    server = OneShotServer()
    server.payload = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    try:

        def make() -> fastpool.PoolManager:
            return fastpool.PoolManager()

        rounds = [[server.url + "a"], [server.url + "b"], [server.url + "c"]]
        # The pause lets the server's thread (which needs the GIL) close the connection before
        # the next request checks it: else that request may find it alive, send, and be
        # replayed on a new one (counted as a retry, not as dropped).
        with_lane = run_maps(make, rounds, 0.1, light=True)
        begun = list(counted.begun)
        with lane(Off):
            without = run_maps(make, rounds, 0.1, light=True)
    finally:
        server.close()
    assert with_lane == without
    assert begun == [False, True, True]  # the first dials; the others revive an idle one
    ((_, _, requests, connections, idle, in_use, stale),) = with_lane[1]
    # one connection, dialed three times: twice after the server dropped it idle
    assert (requests, connections, idle, in_use, stale) == (3, 1, 1, 0, 2)


def test_the_lane_expires_idle_connections_as_the_general_steps(
    app_server: AppServer, counted: type[Counted]
) -> None:
    # A pool with an idle_timeout checks each idle connection out through _revive: expired
    # (idle longer than the timeout, after a pause) it is closed and dialed again, on the lane
    # as on the general steps.
    url = f"{app_server.url}/bytes/10"
    rounds = [[url] * 4, [url] * 4, [url] * 4]

    def make() -> fastpool.PoolManager:
        return fastpool.PoolManager(maxsize=4, idle_timeout=0.05)

    def expired(manager: Any) -> list[int]:
        return [pool.expired_idle for pool in manager.pools.values()]

    outcomes = {}
    for kind in (Counted, Off):
        with lane(kind):
            Counted.begun, Counted.finished = [], []
            with make() as manager:
                seen_rounds = []
                for n, items in enumerate(rounds):
                    if n:
                        time.sleep(0.15)  # every idle connection expires
                    seen_rounds.append(sorted(seen(r) for r in manager.map(items, concurrency=4)))
                outcomes[kind] = (seen_rounds, counters(manager), expired(manager))
            if kind is Counted:
                taken = list(Counted.begun)
    assert outcomes[Counted] == outcomes[Off]
    assert True in taken  # the lane took the hops that found an idle connection
    assert outcomes[Off][2][0] > 0  # and connections expired


def test_the_lane_steps_aside_for_what_it_must_not_decide(
    app_server: AppServer, counted: type[Counted]
) -> None:
    url = f"{app_server.url}/bytes/10"
    seen_hosts: list[Any] = []
    events: list[str] = []

    def settings() -> Iterator[tuple[str, fastpool.PoolManager, Callable[[], None]]]:
        # default headers: they go into each request's head
        yield "headers", fastpool.PoolManager(headers={"X-A": "1"}), lambda: None
        trace = Trace()
        trace.add("*", lambda event: events.append(event.name))
        yield "trace", fastpool.PoolManager(trace=trace), lambda: None
        yield "max_connections", fastpool.PoolManager(max_connections=8), lambda: None
        # a tool's patch of connection_from_host on the manager sees every request
        manager = fastpool.PoolManager()
        own = manager.connection_from_host

        def watched(*args: Any, **kwargs: Any) -> Any:
            seen_hosts.append(args[0])
            return own(*args, **kwargs)

        yield (
            "connection_from_host",
            manager,
            lambda: setattr(manager, "connection_from_host", watched),
        )

    for name, manager, patch in settings():
        with manager:
            list(manager.map([url] * 4, concurrency=4, light=True))  # idle connections
            patch()
            counted.begun.clear()
            seen_hosts.clear()
            results = list(manager.map([url] * 6, concurrency=2, light=True))
            assert [r.error for r in results] == [None] * 6, name
            assert counted.begun == [False] * 6, name
            if name == "connection_from_host":
                assert seen_hosts == ["127.0.0.1"] * 6
            if name == "trace":
                assert events.count("got_conn") == 4 + 6  # it saw each checkout


def test_the_lane_steps_aside_for_a_patched_manager_urlopen(
    app_server: AppServer, counted: type[Counted]
) -> None:
    url = f"{app_server.url}/bytes/10"
    with fastpool.PoolManager() as manager:
        list(manager.map([url] * 2, concurrency=2))
        own = manager.urlopen
        with mock.patch.object(manager, "urlopen", side_effect=own) as urlopen:
            counted.begun.clear()
            results = list(manager.map([url] * 3, concurrency=1))
        assert [r.error for r in results] == [None] * 3
        assert urlopen.call_count == 3  # sent whole through the patch, each of them
        assert counted.begun and not any(counted.begun)  # the lane took none


def test_the_lane_sends_the_target_the_general_steps_send() -> None:
    # A raw server keeps each request head it read: the same bytes with the lane and without
    # (a fragment stays with the client, an escape or a dot segment takes urllib3's way).
    server = OneShotServer()
    server.payload = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    targets = ["a", "a?b=c", "a#frag", "a?b#frag", "%41", "./a", "b/../a", "a?x=%2F", "~a"]
    try:
        heads = {}
        for kind in (Counted, Off):
            server.heads.clear()
            with lane(kind):
                Counted.begun, Counted.finished = [], []
                rounds = [[server.url + "warm"], *([server.url + t] for t in targets)]
                run_maps(fastpool.PoolManager, rounds, 0.05, light=True)
                if kind is Counted:
                    taken = list(Counted.begun)
            heads[kind] = list(server.heads)
        assert True in taken  # the lane took some of them
    finally:
        server.close()
    assert heads[Counted] == heads[Off]
    assert len(heads[Off]) == 1 + len(targets)


def timed_outcomes(base: str, kind: type) -> list[str]:
    """Each timed request's outcome, through the Lane ``kind``; each on an idle connection
    (a timed-out request closes its own), so that the lane may take it."""
    slow = f"{base}/slow?delay=0.4"
    seen: list[str] = []
    Counted.begun, Counted.finished = [], []  # (this test alone: no earlier one set them)
    with lane(kind), fastpool.PoolManager(retries=False) as manager:

        def warm() -> None:
            # an idle connection (after the server's last slow answer: it answers in turn)
            assert [r.error for r in manager.map([f"{base}/bytes/1"])] == [None]

        def timed(item: Any) -> None:
            Counted.begun, Counted.finished = [], []
            seen.extend(type(r.error).__name__ for r in manager.map([item]))
            if kind is Counted:
                assert Counted.begun == [True], item  # the lane took it

        pool = manager.connection_from_url(slow)
        pool.timeout = Timeout(read=0.1)  # set after the pool was made
        warm()
        timed(slow)
        warm()
        pool.timeout = Timeout()  # the socket default (none), read at each request
        timed(slow)
        warm()
        default = socket.getdefaulttimeout()
        socket.setdefaulttimeout(0.1)
        try:
            timed(slow)
        finally:
            socket.setdefaulttimeout(default)
        for item in (
            ("GET", slow, {"timeout": 0.1}),
            ("GET", slow, {"timeout": Timeout(total=0.1)}),
            slow,
            # numbers, each kept as the Timeout made for the last one: the same number again,
            # another, an int and a float of one value
            ("GET", slow, {"timeout": 5}),
            ("GET", slow, {"timeout": 0.1}),
            ("GET", slow, {"timeout": 0.1}),
            ("GET", slow, {"timeout": 5.0}),
            ("GET", slow, {"timeout": 5}),
        ):
            warm()
            timed(item)
    return seen


def test_the_lane_reads_the_timeouts_at_each_request(app_server: AppServer) -> None:
    # A pool's timeout set after its connections were made, and the socket module's default,
    # are read at each request on the lane as on the general steps.
    with_lane = timed_outcomes(app_server.url, Counted)
    assert with_lane == timed_outcomes(app_server.url, Off)
    # with no timeout, a request waits
    assert with_lane == [
        *("ReadTimeoutError", "NoneType"),
        *("ReadTimeoutError", "ReadTimeoutError", "ReadTimeoutError", "NoneType"),
        *("NoneType", "ReadTimeoutError", "ReadTimeoutError", "NoneType", "NoneType"),
    ]


def test_the_lane_reads_each_requests_number_as_its_timeout(app_server: AppServer) -> None:
    # One map, one connection, numbers one after another: each request waits its own (the
    # Timeout kept for the last number serves only that number).
    fast, slow = f"{app_server.url}/bytes/1", f"{app_server.url}/slow?delay=0.4"
    items = [
        ("GET", fast, {"timeout": 5}),
        ("GET", slow, {"timeout": 0.1}),
        ("GET", fast, {"timeout": 0.1}),
        ("GET", slow, {"timeout": 5}),
        ("GET", fast, {"timeout": 5.0}),
        ("GET", slow, {"timeout": 0.1}),
    ]
    outcomes = {}
    for kind in (Counted, Off):
        Counted.begun, Counted.finished = [], []
        with lane(kind), fastpool.PoolManager(retries=False, maxsize=1) as manager:
            results = list(manager.map(items, concurrency=1))
            outcomes[kind] = [type(r.error).__name__ for r in results]
            if kind is Counted:
                assert Counted.begun.count(True) >= 4, Counted.begun  # the lane took them
    assert outcomes[Counted] == outcomes[Off]
    assert outcomes[Off] == [
        "NoneType",
        "ReadTimeoutError",
        "NoneType",
        "NoneType",
        "NoneType",
        "ReadTimeoutError",
    ]


@pytest.mark.parametrize("kind", [Counted, Off], ids=["lane", "general"])
def test_a_timeout_urllib3_refuses_takes_no_slot(app_server: AppServer, kind: type) -> None:
    url = f"{app_server.url}/bytes/3"
    # (a slot leaked would make the last request wait: a second, then PoolTimeoutError)
    with lane(kind), fastpool.PoolManager(maxsize=1, block=True, pool_timeout=1) as manager:
        Counted.begun, Counted.finished = [], []
        list(manager.map([url]))  # an idle connection for the lane
        nan = float("nan")  # urllib3's Timeout takes it; the socket refuses it
        items = [
            ("GET", url, {"timeout": (3, 10)}),
            ("GET", url, {"timeout": -1}),
            ("GET", url, {"timeout": nan}),
            ("GET", url, {"timeout": Timeout(connect=2.0, read=nan)}),
            url,
        ]
        results = list(manager.map(items, concurrency=1))
        pool = manager.connection_from_url(url)
        assert [type(r.error).__name__ for r in results] == ["ValueError"] * 4 + ["NoneType"]
        assert "NaN" in str(results[2].error) and "NaN" in str(results[3].error)
        assert (pool.pool.in_use, pool.pool.idle) == (0, 1)  # the one connection, given back
        assert pool.num_connections == 1
        with pytest.raises(ValueError, match="NaN"):  # as one request (and urllib3's) raises
            manager.request("GET", url, timeout=nan)
        # its connection closed as urllib3 closes it (the error comes after the checkout there),
        # no slot held
        assert (pool.pool.in_use, pool.pool.idle) == (0, 0)


def test_the_lane_steps_aside_for_subclasses_and_patched_classes(
    app_server: AppServer, counted: type[Counted]
) -> None:
    url = f"{app_server.url}/bytes/4"
    calls: list[str] = []

    class CountingPool(fastpool.HTTPConnectionPool):
        def _get_conn(self, timeout: Any = None) -> Any:
            calls.append("_get_conn")
            return super()._get_conn(timeout)

    class CountingConnection(fastpool.connection.HTTPConnection):
        @property
        def is_connected(self) -> bool:
            calls.append("is_connected")
            return bool(super().is_connected)

    class PoolOfCountingConnections(fastpool.HTTPConnectionPool):
        ConnectionCls = CountingConnection

    def wrapped(own: Callable[..., Any], name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return own(*args, **kwargs)

        return call

    cases: list[tuple[str, Callable[[fastpool.PoolManager], Any]]] = [
        ("a pool subclass's _get_conn", lambda m: setattr(m, "pool_classes_by_scheme", {"http": CountingPool})),
        ("a connection class's is_connected", lambda m: setattr(m, "pool_classes_by_scheme", {"http": PoolOfCountingConnections})),
        ("PoolManager.urlopen patched on the class", lambda m: mock.patch.object(fastpool.PoolManager, "urlopen", wrapped(fastpool.PoolManager.urlopen, "urlopen"))),
        ("PoolManager.connection_from_host patched on the class", lambda m: mock.patch.object(fastpool.PoolManager, "connection_from_host", wrapped(fastpool.PoolManager.connection_from_host, "connection_from_host"))),
        ("a pool's _get_conn patched on it", lambda m: mock.patch.object(m.connection_from_url(url), "_get_conn", wrapped(m.connection_from_url(url)._get_conn, "_get_conn"))),
        ("HTTPConnectionPool.urlopen patched on the class", lambda m: mock.patch.object(fastpool.HTTPConnectionPool, "urlopen", wrapped(fastpool.HTTPConnectionPool.urlopen, "urlopen"))),
    ]  # fmt: skip
    for name, setup in cases:
        with fastpool.PoolManager() as manager:
            patch = setup(manager)
            with patch if patch is not None else contextlib.nullcontext():
                list(manager.map([url] * 2, concurrency=2, light=True))  # idle connections
                calls.clear()
                counted.begun.clear()
                results = list(manager.map([url] * 4, concurrency=2, light=True))
                assert [r.error for r in results] == [None] * 4, name
                assert not any(counted.begun), name
                assert len(calls) >= 4, (name, calls)  # it saw every request


@pytest.mark.parametrize(
    ("owner", "name"),
    [
        (fastpool.HTTPConnectionPool, "_make_request"),
        (fastpool.HTTPConnectionPool, "_get_conn"),
        (fastpool.HTTPConnectionPool, "urlopen"),
        (fastpool.connection.HTTPConnection, "request"),
    ],
    ids=lambda v: getattr(v, "__name__", v),
)
def test_a_patch_between_two_maps_is_seen_by_the_next(
    app_server: AppServer, counted: type[Counted], owner: type, name: str
) -> None:
    # A patch made after a map that took the lane, and its removal, are each seen by the next
    # map (nothing of the lane's checks is kept from one request to the next).
    url = f"{app_server.url}/bytes/4"
    calls: list[str] = []
    own = getattr(owner, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return own(*args, **kwargs)

    with fastpool.PoolManager() as manager:
        list(manager.map([url] * 4, concurrency=1, light=True))
        assert counted.begun[1:] == [True] * 3  # warm: the lane took them (an idle connection)
        with mock.patch.object(owner, name, wrapped):
            counted.begun.clear()
            results = list(manager.map([url] * 4, concurrency=1, light=True))
            assert [r.error for r in results] == [None] * 4
            assert not any(counted.begun)
            assert len(calls) >= 4, calls
        counted.begun.clear()
        list(manager.map([url] * 4, concurrency=1, light=True))
        assert counted.begun == [True] * 4  # unpatched: the lane again


@pytest.mark.parametrize("says", [True, False])
def test_the_lane_asks_a_patched_is_connected(
    app_server: AppServer, counted: type[Counted], monkeypatch: pytest.MonkeyPatch, says: bool
) -> None:
    # The compiled lane runs HTTPConnection.is_connected's steps inline at each checkout; a
    # patch of the property on the class must be asked all the same, and believed: "not
    # connected" closes the idle connection and dials again, as _get_conn does.
    import fastpool.connection

    asked: list[bool] = []

    def is_connected(conn: Any) -> bool:
        asked.append(says)
        return says and conn.sock is not None

    monkeypatch.setattr(fastpool.connection.HTTPConnection, "is_connected", property(is_connected))
    url = f"{app_server.url}/bytes/10"
    with fastpool.PoolManager(maxsize=1) as manager:
        for _ in range(3):
            (result,) = manager.map([url], concurrency=1, light=True)
            assert result.error is None and result.response.data == pattern_bytes(10)
        ((_, _, requests, connections, idle, in_use, stale),) = counters(manager)
    assert (idle, in_use) == (1, 0)
    assert counted.begun == [False, True, True]  # the lane took the hops with an idle one
    assert len(asked) >= 2  # each of them asked the patched property
    # believed: kept, or dropped as stale and the one connection dialed again each time
    assert (requests, connections, stale) == ((3, 1, 0) if says else (3, 1, 2))


def test_an_error_finishing_a_light_answer_is_that_requests_result(
    app_server: AppServer, counted: type[Counted]
) -> None:
    # Finishing the plainest answer runs the hop's Retry (here one urllib3 refuses to use: an
    # int status_forcelist): its error is that request's result, as the general steps make
    # it, and the other requests of the map end as usual.
    url = f"{app_server.url}/bytes/10"
    bad = ("GET", url, {"retries": Retry(total=2, status_forcelist=503)})  # type: ignore[arg-type]
    items = [url, bad, url, url]
    outcomes = {}
    for kind in (Counted, Off):
        with lane(kind), fastpool.PoolManager(maxsize=2) as manager:
            manager.request("GET", url)  # an origin the manager knows, a connection idle
            results = list(manager.map(items, concurrency=2, light=True))
            outcomes[kind] = sorted(
                (str(r.request), type(r.error).__name__ if r.error else str(r.response.status))
                for r in results
            )
            assert manager.stats().total.in_use == 0
    assert outcomes[Counted] == outcomes[Off]
    assert sorted(o for _, o in outcomes[Counted]) == ["200", "200", "200", "TypeError"]
    assert True in counted.finished  # the lane finished the plain answers


def test_a_light_map_with_a_per_host_cap_ends(app_server: AppServer) -> None:
    # Each plainest answer frees its host's turn (the scheduler's done): with one request at
    # a time per host, a map whose answers all end the short way still runs to its end.
    urls = [f"{app_server.url}/bytes/{n}" for n in range(1, 13)]
    outcome: list[Any] = []

    def run() -> None:
        with fastpool.PoolManager() as manager:
            outcome.extend(manager.map(urls, concurrency=4, per_host=1, light=True))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), "the map stalled: a host's turn was never given back"
    assert sorted(r.response.data for r in outcome) == sorted(
        pattern_bytes(n) for n in range(1, 13)
    )


def test_a_pool_subclass_checks_its_connections_in_itself(app_server: AppServer) -> None:
    # The compiled lane runs _checkin_finished's steps inline for fastpool's own pool class;
    # a subclass that overrides it (and keeps urlopen) is called for every light answer.
    checked_in: list[bool] = []

    class Pool(fastpool.HTTPConnectionPool):
        def _checkin_finished(self, conn: Any, keep_alive: bool, queue: Any) -> None:
            checked_in.append(keep_alive)
            super()._checkin_finished(conn, keep_alive, queue)

    url = f"{app_server.url}/bytes/10"
    with fastpool.PoolManager(maxsize=2) as manager:
        manager.pool_classes_by_scheme = {"http": Pool, "https": fastpool.HTTPSConnectionPool}
        results = list(manager.map([url] * 6, concurrency=2, light=True))
        assert [r.response.data for r in results] == [pattern_bytes(10)] * 6
    assert len(checked_in) >= 6


def test_a_pool_subclass_puts_its_connections_back_itself(app_server: AppServer) -> None:
    # The compiled lane runs _put_conn's steps inline for fastpool's own pool class; a
    # subclass that overrides it (and keeps urlopen) is called for every connection a light
    # answer hands back.
    put_back: list[Any] = []

    class Pool(fastpool.HTTPConnectionPool):
        def _put_conn(self, conn: Any) -> None:
            put_back.append(conn)
            super()._put_conn(conn)

    url = f"{app_server.url}/bytes/10"
    with fastpool.PoolManager(maxsize=2) as manager:
        manager.pool_classes_by_scheme = {"http": Pool, "https": fastpool.HTTPSConnectionPool}
        results = list(manager.map([url] * 6, concurrency=2, light=True))
        assert [r.response.data for r in results] == [pattern_bytes(10)] * 6
        assert manager.stats().total.in_use == 0
    assert len(put_back) >= 6
    assert all(conn is not None for conn in put_back[:6])


def test_light_answers_stamp_idle_connections_with_the_pools_clock(
    app_server: AppServer, clock: Any
) -> None:
    # The inline check-in stamps idle_since with fastpool.pool's monotonic, read at each
    # check-in as _put_conn reads it (a test clock, here), so idle_timeout sees the same age.
    clock.now = 5000.0
    url = f"{app_server.url}/bytes/10"
    with fastpool.PoolManager(maxsize=1) as manager:
        assert [r.response.status for r in manager.map([url] * 3, concurrency=1, light=True)] == [
            200
        ] * 3
        clock.now = 9000.0  # the last answer's check-in, on the connection kept
        assert [r.response.status for r in manager.map([url], light=True)] == [200]
        (pool,) = manager.pools.values()
        idle = pool.pool.take_idle()
        assert [conn.idle_since for conn in idle] == [9000.0]
        for conn in idle:
            conn.close()


@pytest.mark.parametrize("kind", [Counted, Off], ids=["lane", "no-lane"])
def test_a_full_pool_discards_what_it_cannot_keep(
    app_server: AppServer, kind: type, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    # maxsize=1 without block: the map opens more connections than the pool keeps. Each one
    # handed back to a full pool is closed and counted, with the pool's summarised warning,
    # whether the lane's inline check-in or the general steps hand it back: every connection
    # opened ends either idle or discarded.
    monkeypatch.setattr(Counted, "finished", [], raising=False)
    monkeypatch.setattr(Counted, "begun", [], raising=False)
    url = f"{app_server.url}/bytes/10"
    with lane(kind), caplog.at_level("WARNING", logger="fastpool"):
        _map_to_a_full_pool(url)
    assert any("Connection pool is full" in r.getMessage() for r in caplog.records)
    if kind is Counted:
        assert True in Counted.finished  # the lane handed the answers back itself


def _map_to_a_full_pool(url: str) -> None:
    with fastpool.PoolManager(maxsize=1) as manager:
        results = list(manager.map([url] * 24, concurrency=6, light=True))
        assert [r.error for r in results] == [None] * 24
        (pool,) = manager.pools.values()
        opened, discarded = pool.num_connections, pool.pool.discarded
        assert opened > 1, "the map never needed more than one connection"
        assert discarded >= 1
        assert opened == discarded + pool.pool.idle
        assert manager.stats().total.in_use == 0


@pytest.mark.parametrize("step", ["_put_conn", "_checkin_finished"])
def test_a_patch_on_the_pool_itself_sees_every_check_in(app_server: AppServer, step: str) -> None:
    # mock.patch.object on one pool (not its class): the compiled lane's inline check-in steps
    # aside for it, as the pure twin's call through the pool does.
    url = f"{app_server.url}/bytes/10"
    with fastpool.PoolManager(maxsize=2) as manager:
        pool = manager.connection_from_url(url)
        with mock.patch.object(pool, step, wraps=getattr(pool, step)) as patched:
            results = list(manager.map([url] * 6, concurrency=2, light=True))
        assert [r.response.data for r in results] == [pattern_bytes(10)] * 6
        assert patched.call_count >= 6
        assert manager.stats().total.in_use == 0


@pytest.mark.parametrize("light", [True, False], ids=["light", "map"])
def test_a_validate_conn_patched_on_the_pool_itself_sees_every_request(
    app_server: AppServer, light: bool
) -> None:
    # urllib3's _validate_conn, patched on one pool (mock.patch.object), is called once per
    # request by PoolManager.request; a map sends each request through urlopen then, so the
    # patch sees each one there too (it used to see none: the map checked the class only).
    url = f"{app_server.url}/bytes/10"
    calls = {}
    for kind in ("one", "map"):
        with fastpool.PoolManager(maxsize=2) as manager:
            pool = manager.connection_from_url(url)
            with mock.patch.object(pool, "_validate_conn", wraps=pool._validate_conn) as patched:
                if kind == "one":
                    data = [manager.request("GET", url).data for _ in range(4)]
                else:
                    results = manager.map([url] * 4, concurrency=2, light=light)
                    data = [r.response.data for r in results]
            assert data == [pattern_bytes(10)] * 4
            calls[kind] = patched.call_count
            assert manager.stats().total.in_use == 0
    assert calls["map"] == calls["one"] == 4
