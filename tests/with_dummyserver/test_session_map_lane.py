"""``Session.map``'s plainest hops at their pool in one call (``fastpool._lane.begin_on``).

``HTTPAdapter._loop_begin`` hands a GET without a body to ``begin_on`` after its own checks;
``begin_on`` must return what ``HTTPConnectionPool._loop_begin`` would (an Exchange for the same
connection, with the same bytes and timeouts), or None to leave the hop to it. Each
differential test runs the same maps with ``begin_on`` and with it switched off, on the same
server, and compares what a caller sees: every result, the cookies, the request heads the
server read, and the pools' counters.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from dummyserver import AppServer
from dummyserver.oneshot import OneShotServer
from request_headers import REQUESTS_HEADERS, session_headers
from session_map_ways import CONNECTION_STEPS, comparable_body, finishing, lane, run_maps
from urllib3.util import SKIP_HEADER
from urllib3.util.timeout import Timeout

import fastpool
import fastpool._lane
from fastpool.pool import HTTPConnectionPool

pytestmark = pytest.mark.filterwarnings("error")


def seen(result: Any) -> tuple[Any, ...]:
    """What a caller sees of a result (the Date header and the server's connection counter
    aside)."""
    given = result.request
    key = given if isinstance(given, str) else (given.method, given.url)
    if result.error is not None:
        return (key, type(result.error).__name__, str(result.error))
    response = result.response
    body, skip = comparable_body(response.content)
    return (
        key,
        response.status_code,
        response.reason,
        [(k, v) for k, v in response.headers.items() if k.lower() not in skip],
        body,
        response.url,
        response.encoding,
        [(r.status_code, r.url) for r in response.history],
        sorted(response.request.headers.items()),
    )


def items(http: str, https: str, cookies: bool = False) -> list[Any]:
    """A corpus of hops the lane takes and does not; with ``cookies``, routes that set
    cookies too (their order decides what the later requests send: mapped one at a time)."""
    setters = [f"{http}/cookies/set?a=1", f"{http}/headers"] if cookies else []
    return setters + [
        f"{http}/bytes/100",
        f"{http}/bytes/100?n=1",
        f"{https}/bytes/10",
        f"{http}/status/404",
        f"{http}/status/204",
        f"{http}/gzip",
        f"{http}/chunked/300?chunk=7",
        f"{http}/redirect/2",
        f"{http}/close",
        f"{http}/echo?a=%41",
        f"{http}/./echo",
        f"{http}/response-headers?X-A=1&X-A=2",
        requests.Request("GET", f"{http}/echo", headers={"X-Custom": "v"}),
        requests.Request("GET", f"{http}/echo", headers={"User-Agent": None}),
        requests.Request("POST", f"{http}/echo", data={"a": "1"}),
        requests.Request("HEAD", f"{http}/bytes/10"),
        requests.Request("DELETE", f"{http}/bytes/3"),
    ]


def pool_of(session: fastpool.Session, url: str) -> Any:
    """The pool the session's map sent ``url``'s requests to (its adapter's, by host)."""
    (pool,) = session.get_adapter(url).poolmanager.pools.values()
    return pool


@pytest.mark.parametrize(
    ("timeout", "concurrency"),
    [
        (None, 4),
        (2.0, 4),
        ((1.0, 2.0), 4),
        (Timeout(connect=1.0, read=2.0), 4),
        (Timeout(total=5.0), 4),
        (None, 1),  # with the routes that set cookies
    ],
    ids=["none", "number", "pair", "Timeout", "total", "cookies"],
)
def test_begin_on_answers_as_the_general_steps(
    app_server: AppServer, https_server: AppServer, ca_bundle: str, timeout: Any, concurrency: int
) -> None:
    given = items(app_server.url, https_server.url, cookies=concurrency == 1)
    rounds = [given, given, list(reversed(given))]  # later rounds find idle connections

    def make() -> fastpool.Session:
        session = fastpool.Session()
        session.verify = ca_bundle
        session.headers["X-Session"] = "s"
        return session

    taken: list[bool] = []
    with lane(True, taken):
        with_lane = run_maps(make, rounds, seen, concurrency=concurrency, timeout=timeout)
    with lane(False):
        without = run_maps(make, rounds, seen, concurrency=concurrency, timeout=timeout)
    if concurrency > 1:
        # How many connections four hops in flight dial depends on which answer comes first
        # (the /close route closes its own): the same count only one at a time.
        for outcome in (with_lane, without):
            for n, pool in enumerate(outcome[2]):
                outcome[2][n] = pool[:4] + pool[6:]
    assert with_lane == without
    assert True in taken and False in taken  # both ways were taken


def test_the_plainest_hops_are_begun_and_finished_in_one_call(app_server: AppServer) -> None:
    # begun by begin_on, finished by plain_result (test_session_map_finish.py)
    base = f"{app_server.url}/bytes/10"
    taken: list[bool] = []
    finished: list[bool] = []
    with fastpool.Session() as session:
        list(session.map([base] * 4, concurrency=4))  # four idle connections
        urls = [f"{base}?n={i}" for i in range(40)]  # a crawl's URLs: each new
        with lane(True, taken), finishing(True, finished):
            results = list(session.map(urls, concurrency=4, timeout=5.0))
        pool = pool_of(session, base)
        assert sorted(r.response.url for r in results) == sorted(urls)
        assert {len(r.response.content) for r in results} == {10}
        assert taken == finished == [True] * 40
        assert pool.num_requests == 44
        assert pool.num_connections == 4
        assert pool.pool.idle == 4 and pool.pool.in_use == 0


def test_begin_on_sends_the_head_the_general_steps_send() -> None:
    # A raw server keeps each request head it read: the same bytes with begin_on and without,
    # for the session's headers, headers of the request's own, escapes and dot segments.
    server = OneShotServer()
    server.payload = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    targets = ["a", "a?b=c", "a#frag", "%41", "./a", "b/../a", "~a"]
    heads = {}
    try:
        for on in (True, False):
            server.heads.clear()
            taken: list[bool] = []
            with lane(on, taken), fastpool.Session() as session:
                session.headers["X-Session"] = "s"
                given: list[Any] = [server.url + "warm"]
                given += [server.url + t for t in targets]
                given += [
                    requests.Request("GET", server.url + "h", headers={"X-Own": "1"}),
                    requests.Request("GET", server.url + "h", headers={"Accept": None}),
                    requests.Request("GET", server.url + "h", headers={"Host": "other.invalid"}),
                ]
                for item in given:
                    time.sleep(0.05)  # the server's thread answers, then the next one goes
                    (result,) = session.map([item])
                    assert result.error is None, item
            heads[on] = list(server.heads)
            if on:
                assert True in taken  # begin_on took some of them
    finally:
        server.close()
    assert heads[True] == heads[False]
    assert len(heads[False]) == 1 + len(targets) + 3


def test_begin_on_expires_idle_connections_as_the_general_steps(app_server: AppServer) -> None:
    # The Session's pools expire idle connections (idle_timeout): after a pause every idle one
    # is closed at its checkout and dialed again, with begin_on as without.
    url = f"{app_server.url}/bytes/10"

    def make() -> fastpool.Session:
        return fastpool.Session(idle_timeout=0.05)

    taken: list[bool] = []
    with lane(True, taken):
        with_lane = run_maps(make, [[url] * 4] * 3, seen, pause=0.15, concurrency=4)
    with lane(False):
        without = run_maps(make, [[url] * 4] * 3, seen, pause=0.15, concurrency=4)
    assert with_lane == without
    assert True in taken
    ((*_, expired),) = without[2]  # (the one pool's counters)
    assert expired > 0


HEADERS = {
    "requests": lambda: session_headers(*REQUESTS_HEADERS),
    "none": lambda: session_headers(),
    "a dict": lambda: {"X-A": "1"},
    "refused": lambda: session_headers(*REQUESTS_HEADERS, ("X-Bad", "a\r\nb")),
    "skipped": lambda: session_headers(*REQUESTS_HEADERS, ("User-Agent", SKIP_HEADER)),
    "bytes": lambda: session_headers(*REQUESTS_HEADERS, ("X-B", b"v")),
    "a list": lambda: session_headers(*REQUESTS_HEADERS, ("X-L", ["a"])),
    "Host": lambda: session_headers(*REQUESTS_HEADERS, ("Host", "other.invalid")),
}
TIMEOUTS = [Timeout.DEFAULT_TIMEOUT, 2.0, Timeout(connect=1, read=2), Timeout(total=3), -1]


def exchange_seen(pool: Any, outcome: Any) -> Any:
    """What ``begin_on`` or ``_loop_begin`` gave, and the pool's slots and counters after it
    (an Exchange's connection closed and its slot freed once seen)."""
    counters = (
        pool.pool.idle,
        pool.pool.in_use,
        pool.num_connections,
        pool.expired_idle,
        pool.expired_lifetime,
        pool.dropped_stale,
    )
    if not isinstance(outcome, fastpool._loop.Exchange):
        return outcome, counters
    ex = outcome
    read = ex.read_timeout
    if isinstance(read, fastpool.pool.TotalLeft):
        read = ("TotalLeft", read.timeout.total)
    conn = ex.conn
    seen_ = (
        bytes(ex.data),
        ex.method,
        read,
        ex.read_body,
        ex.dial,
        ex.replay,
        ex.direct,
        ex.tag is pool,
        conn.timeout,
        conn.sock is None,
        conn.requests,
        conn._loop_queue is pool.pool,
        counters,
    )
    pool._close_and_free(conn)
    return seen_


@pytest.mark.parametrize(
    "state", ["idle", "none idle", "idle expired", "lifetime expired", "idle timeout", "closed"]
)
def test_begin_on_returns_what_loop_begin_returns(app_server: AppServer, state: str) -> None:
    # Two pools in the same state, one asked through begin_on, the other through the general
    # _loop_begin, for each kind of headers and timeout, twice (the second meets what the
    # first kept): the same Exchange (bytes, timeouts, flags), the same error, the same slots.
    def make() -> HTTPConnectionPool:
        kwargs: dict[str, Any] = {}
        if state == "idle expired":
            kwargs["idle_timeout"] = 0.01
        elif state == "lifetime expired":
            kwargs["max_lifetime"] = 0.01
        elif state == "idle timeout":
            kwargs["idle_timeout"] = 60.0
        pool = HTTPConnectionPool("127.0.0.1", app_server.port, maxsize=2, **kwargs)
        if state != "none idle":
            pool.urlopen("GET", "/bytes/1", retries=False).data  # noqa: B018 - an idle one
        if state == "closed":
            pool.close()
        return pool

    def outcome(call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except Exception as e:  # noqa: BLE001 - compared
            return type(e).__name__, str(e)

    compared = taken = 0
    for name, headers in HEADERS.items():
        for timeout in TIMEOUTS:
            for _ in range(2):
                ours, theirs = make(), make()
                if "expired" in state:
                    time.sleep(0.02)
                try:
                    got = outcome(fastpool._lane.begin_on, ours, "/a", headers(), timeout, True)
                    if got is None:
                        continue  # not taken: the general steps decide
                    taken += 1
                    args = ("GET", "/a", None, headers(), False, timeout, True)
                    want = outcome(theirs._loop_begin, *args)
                    assert exchange_seen(ours, got) == exchange_seen(theirs, want), (
                        name,
                        timeout,
                    )
                    compared += 1
                finally:
                    ours.close()
                    theirs.close()
    if state in ("none idle", "closed"):
        assert taken == 0  # a connection to dial, a closed pool: the general steps'
    else:
        assert compared >= len(HEADERS)  # (a dict's headers are the general steps')


@pytest.mark.parametrize("on", [True, False], ids=["begin_on", "general"])
def test_a_refused_head_takes_no_slot(app_server: AppServer, on: bool) -> None:
    url = f"{app_server.url}/bytes/3"
    # (a slot kept would make the last request wait: then pool_block's EmptyPoolError)
    adapter = fastpool.HTTPAdapter(pool_maxsize=1, pool_block=True)
    taken: list[bool] = []
    with lane(on, taken), fastpool.Session() as session:
        # A PreparedRequest goes as send() sends it, with the Session's verify, and a URL as
        # request() does, with REQUESTS_CA_BUNDLE's when it is set: the same pool only without
        # the environment's.
        session.trust_env = False
        session.mount("http://", adapter)
        adapter._pool_timeout = 1
        list(session.map([url]))  # an idle connection for begin_on
        # requests checks headers as it prepares them: a bad one set after, as a hook might
        bad = session.prepare_request(requests.Request("GET", url))
        bad.headers["X-Bad"] = "a\r\nX-Injected: 1"
        results = list(session.map([bad, url], concurrency=1))
        pool = pool_of(session, url)
        assert [type(r.error).__name__ for r in results] == ["InvalidHeader", "NoneType"]
        assert (pool.pool.in_use, pool.pool.idle) == (0, 1)  # the one connection, given back
        assert pool.num_connections == 1
    if on:
        # no idle connection yet; then the refused head decided (False: urlopen raises it,
        # once the map has drained) and the next request taken
        assert taken[0] is False and taken[1:] == [True] * (len(taken) - 1)


@pytest.mark.parametrize("on", [True, False], ids=["begin_on", "general"])
def test_a_refused_timeout_takes_no_slot(app_server: AppServer, on: bool) -> None:
    # The adapter refuses a bad timeout before it reaches a pool: asked directly, begin_on
    # gives the connection back, as _loop_begin does.
    with HTTPConnectionPool("127.0.0.1", app_server.port, maxsize=1, block=True) as pool:
        pool.urlopen("GET", "/bytes/1").data  # noqa: B018 - an idle connection
        begin = fastpool._lane.begin_on if on else None
        with pytest.raises(ValueError, match="timeout"):
            if begin is not None:
                begin(pool, "/a", session_headers(*REQUESTS_HEADERS), -1, True)
            else:
                pool._loop_begin("GET", "/a", None, session_headers(), False, -1, True)
        assert (pool.pool.in_use, pool.pool.idle) == (0, 1)
        assert pool.urlopen("GET", "/bytes/1", pool_timeout=1).status == 200


def test_begin_on_steps_aside_for_a_traced_or_patched_pool(app_server: AppServer) -> None:
    url = f"{app_server.url}/bytes/4"
    calls: list[str] = []
    with fastpool.Session() as session:
        list(session.map([url] * 2, concurrency=2))  # idle connections
        pool = pool_of(session, url)
        own = pool._get_conn

        def watched(*args: Any, **kwargs: Any) -> Any:
            calls.append("_get_conn")
            return own(*args, **kwargs)

        taken: list[bool] = []
        with lane(True, taken), pytest.MonkeyPatch.context() as patch:
            patch.setattr(pool, "_get_conn", watched)
            results = list(session.map([url] * 4, concurrency=2))
        assert [r.error for r in results] == [None] * 4
        assert taken == [False] * 4
        assert calls == ["_get_conn"] * 4  # it saw every request
    events: list[str] = []
    with fastpool.Session() as session:
        list(session.map([url] * 2, concurrency=2))  # idle connections
        session.add_trace_hook("got_conn", lambda event: events.append(event.name))
        taken.clear()
        with lane(True, taken):
            results = list(session.map([url] * 4, concurrency=2))
        assert [r.error for r in results] == [None] * 4
        assert taken == [False] * 4
        assert events == ["got_conn"] * 4  # the trace saw every checkout


@pytest.mark.parametrize("step", CONNECTION_STEPS)
def test_begin_on_leaves_a_connection_with_a_step_of_its_own(
    app_server: AppServer, step: str
) -> None:
    # A step of fastpool.connection.REQUEST_STEPS set on the idle connection itself (as
    # mock.patch.object does): begin_on answers False (send runs the request: urlopen calls
    # the connection's steps), the connection left idle; the same pool without the patch is
    # taken (the control).
    headers = session_headers(*REQUESTS_HEADERS)
    for patched in (True, False):
        pool = HTTPConnectionPool("127.0.0.1", app_server.port, maxsize=1)
        try:
            pool.urlopen("GET", "/bytes/1", retries=False).data  # noqa: B018 - an idle one
            conn = pool._get_conn()
            if patched:
                setattr(conn, step, getattr(conn, step))
            pool._put_conn(conn)
            got = fastpool._lane.begin_on(pool, "/a", headers, 2.0, True)
            if patched:
                assert got is False
                assert pool.pool.idle == 1  # (given back)
            else:
                assert isinstance(got, fastpool._loop.Exchange)
                assert got.conn is conn
                pool._close_and_free(conn)
        finally:
            pool.close()
