"""Crawler-grade pooling (issue 6): eviction under load, expiry, per-host caps, Go's retry rules,
trace call points. Real servers on 127.0.0.0/8; every case ends with accounting at zero."""

from __future__ import annotations

import threading

import pytest
import requests
from dummyserver import close_after
from urllib3.exceptions import EmptyPoolError, ProtocolError

import fastpool
from fastpool.pool import HTTPConnectionPool
from fastpool.poolmanager import PoolManager
from fastpool.trace import Trace


class RecordingManager(PoolManager):
    """A PoolManager that remembers every pool it made (evicted ones included)."""

    def __init__(self, *args, **kw):  # type: ignore[no-untyped-def]
        super().__init__(*args, **kw)
        self.made: list[HTTPConnectionPool] = []

    def _new_pool(self, *args, **kw):  # type: ignore[no-untyped-def]
        pool = super()._new_pool(*args, **kw)
        self.made.append(pool)
        return pool


def _all_back(pools) -> None:  # type: ignore[no-untyped-def]
    for pool in pools:
        assert pool.pool.in_use == 0, pool
        if pool.retired:
            assert pool.pool.idle == 0, pool


def _run_threads(work, n: int) -> list[BaseException]:  # type: ignore[no-untyped-def]
    errors: list[BaseException] = []

    def wrapped(i: int) -> None:
        try:
            work(i)
        except BaseException as e:  # noqa: BLE001 - reported by the caller
            errors.append(e)

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    return errors


def test_eviction_never_breaks_a_request_holding_the_pool(server_factory):
    # Bug 1: tiny num_pools, many hosts, many threads: a pool is evicted by another thread
    # between lookup and checkout all the time; no request may fail for it.
    servers = [server_factory(f"127.0.0.{i}") for i in range(2, 14)]
    pm = RecordingManager(num_pools=2, retries=False)

    def work(i: int) -> None:
        for n in range(40):
            server = servers[(i + n) % len(servers)]
            assert len(pm.request("GET", server.url + "/bytes/10").data) == 10

    errors = _run_threads(work, 16)
    assert not errors, errors[:3]
    assert pm.evicted_pools > 0
    pm.clear()
    _all_back(pm.made)
    assert sum(s.requests for s in servers) == 16 * 40


def test_eviction_race_through_requests_over_https(server_factory, tls_ca, ca_bundle):
    # The peer benchmark's shape: the adapter's default 10 pools, 16 threads, more hosts.
    import ssl

    hosts = [f"127.0.0.{i}" for i in range(2, 26)]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert(*hosts).configure_cert(context)
    servers = [server_factory(host, tls=context) for host in hosts]
    session = requests.Session()
    adapter = fastpool.HTTPAdapter()
    session.mount("https://", adapter)

    def work(i: int) -> None:
        for n in range(15):
            server = servers[(i * 7 + n) % len(servers)]
            r = session.get(server.url + "/bytes/5", verify=ca_bundle)
            assert r.status_code == 200 and len(r.content) == 5

    errors = _run_threads(work, 16)
    assert not errors, errors[:3]
    manager = adapter.poolmanager
    assert manager.evicted_pools > 0
    pools = [pool for _, pool in manager.pools.items()]
    adapter.close()
    _all_back(pools)


def test_user_close_still_raises_closed_pool_error(app_server):
    pool = HTTPConnectionPool(app_server.host, app_server.port)
    pool.close()
    with pytest.raises(fastpool.exceptions.PoolClosedError):
        pool.request("GET", "/bytes/1")


def test_retired_pool_keeps_nothing_idle(app_server):
    with PoolManager() as pm:
        held = pm.request("GET", app_server.url + "/bytes/100", preload_content=False)
        pool = pm.connection_from_url(app_server.url)
        pm.clear()
        assert pool.retired
        assert len(held.read()) == 100
        # the connection came back to a retired pool: closed, not kept
        assert pool.pool.in_use == 0 and pool.pool.idle == 0
        assert held.connection is None


def test_idle_timeout_closes_at_checkout(app_server, clock):
    with PoolManager(idle_timeout=0.2) as pm:
        pm.request("GET", app_server.url + "/bytes/1")
        pm.request("GET", app_server.url + "/bytes/1")
        assert app_server.connections == 1
        clock.advance(0.1)  # within the timeout: reused
        pm.request("GET", app_server.url + "/bytes/1")
        assert app_server.connections == 1
        clock.advance(0.3)
        assert pm.request("GET", app_server.url + "/bytes/1").status == 200
        assert app_server.connections == 2
        pool = pm.connection_from_url(app_server.url)
        assert pool.expired_idle == 1 and pool.expired_lifetime == 0
        assert pool.pool.in_use == 0


def test_idle_timeout_expires_every_older_idle_connection(app_server, clock):
    with PoolManager(idle_timeout=0.2, maxsize=4) as pm:
        held = [
            pm.request("GET", app_server.url + "/bytes/1", preload_content=False) for _ in range(3)
        ]
        for r in held:
            r.read()
        pool = pm.connection_from_url(app_server.url)
        assert pool.pool.idle == 3
        clock.advance(0.3)
        pm.request("GET", app_server.url + "/bytes/1")
        assert pool.expired_idle == 3
        assert pool.pool.idle == 1 and pool.pool.in_use == 0


def test_max_lifetime_closes_old_connections(app_server, clock):
    with PoolManager(max_lifetime=0.2) as pm:
        pm.request("GET", app_server.url + "/bytes/1")
        clock.advance(0.3)
        pm.request("GET", app_server.url + "/bytes/1")
        pool = pm.connection_from_url(app_server.url)
        assert pool.expired_lifetime == 1
        assert app_server.connections == 2


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"idle_timeout": -1}, "idle_timeout"),
        ({"max_lifetime": "x"}, "max_lifetime"),
        ({"max_connections_per_host": 0}, "limit"),
        ({"pool_timeout": -1}, "pool_timeout"),
    ],
)
def test_bad_options_name_themselves(kw, message):
    with pytest.raises((TypeError, ValueError), match=message):
        PoolManager(**kw)


def test_per_host_cap_and_pool_timeout(app_server):
    with PoolManager(max_connections_per_host=1, pool_timeout=0.1) as pm:
        held = pm.request("GET", app_server.url + "/bytes/10", preload_content=False)
        with pytest.raises(EmptyPoolError):
            pm.request("GET", app_server.url + "/bytes/10")
        held.read()
        assert pm.request("GET", app_server.url + "/bytes/10").status == 200
        pool = pm.connection_from_url(app_server.url)
        assert pool.pool.in_use == 0 and pool.pool.wait_count == 1


def test_adapter_maps_pool_wait_timeout(app_server):
    adapter = fastpool.HTTPAdapter(pool_maxsize=1, pool_block=True, pool_timeout=0.1)
    session = requests.Session()
    session.mount("http://", adapter)
    held = session.get(app_server.url + "/bytes/10", stream=True)
    with pytest.raises(fastpool.adapters.PoolTimeout):
        session.get(app_server.url + "/bytes/10")
    held.close()
    assert session.get(app_server.url + "/bytes/10").status_code == 200
    session.close()


def _fault_pool(server) -> HTTPConnectionPool:  # type: ignore[no-untyped-def]
    return HTTPConnectionPool(server.host, server.port, retries=False)


def test_post_with_idempotency_key_is_retried(fault_server_factory):
    server = fault_server_factory(close_after(1, how="wait"))
    with _fault_pool(server) as pool:
        pool.request("POST", "/", body=b"x")
        r = pool.request("POST", "/", body=b"x", headers={"Idempotency-Key": "k1"})
        assert r.data == b"ok" and pool.retried == 1
        assert pool.pool.in_use == 0


def test_post_without_key_is_never_replayed(fault_server_factory):
    server = fault_server_factory(close_after(1, how="wait"))
    with _fault_pool(server) as pool:
        pool.request("POST", "/", body=b"x")
        with pytest.raises(ProtocolError):
            pool.request("POST", "/", body=b"x")
        assert pool.retried == 0 and pool.pool.in_use == 0


def test_streamed_body_is_never_replayed(fault_server_factory):
    # A generator cannot be rewound: even an idempotent method is not sent twice.
    server = fault_server_factory(close_after(1, how="wait"))
    with _fault_pool(server) as pool:
        pool.request("PUT", "/", body=b"x", headers={"Idempotency-Key": "k"})
        with pytest.raises(ProtocolError):
            pool.urlopen("PUT", "/", body=iter([b"x"]), headers={"Idempotency-Key": "k"})
        assert pool.retried == 0 and pool.pool.in_use == 0


def test_get_race_is_counted_and_traced(fault_server_factory):
    server = fault_server_factory(close_after(1, how="wait"))
    seen: list[str] = []
    trace = Trace()
    trace.add("*", lambda event: seen.append(event.name))
    with PoolManager(retries=False, trace=trace) as pm:
        pm.request("GET", server.url + "/")
        seen.clear()
        assert pm.request("GET", server.url + "/").data == b"ok"
        pool = pm.connection_from_url(server.url)
        assert pool.retried == 1
    assert seen[:2] == ["get_conn", "got_conn"]
    assert "retry" in seen and seen[-1] == "put_idle"


def test_trace_events_new_reused_full_and_evict(server_factory):
    a, b = server_factory("127.0.0.2"), server_factory("127.0.0.3")
    events: list[tuple[str, dict]] = []
    pm = PoolManager(num_pools=1)
    pm.request("GET", a.url + "/bytes/1")  # a pool made before tracing gets the trace too
    pm.add_trace_hook("*", lambda e: events.append((e.name, dict(e.info))))
    pm.request("GET", a.url + "/bytes/1")
    assert [name for name, _ in events] == ["get_conn", "got_conn", "first_byte", "put_idle"]
    assert events[1][1]["reused"] is True and events[1][1]["idle_time"] >= 0
    events.clear()
    one = pm.request("GET", a.url + "/bytes/1", preload_content=False)
    two = pm.request("GET", a.url + "/bytes/1", preload_content=False)
    one.read()
    two.read()  # maxsize=1: the second connection back is discarded
    assert ("discard", {"host": "127.0.0.2", "port": a.port, "reason": "pool_full"}) in events
    events.clear()
    pm.request("GET", b.url + "/bytes/1")
    evict = next(info for name, info in events if name == "evict_pool")
    assert evict == {"host": "127.0.0.2", "port": a.port, "idle_closed": 1}
    got = next(info for name, info in events if name == "got_conn")
    assert got["reused"] is False and got["idle_time"] is None
    pm.clear()


def test_stats_snapshot_counts_evicted_pools(server_factory):
    a, b = server_factory("127.0.0.2"), server_factory("127.0.0.3")
    with PoolManager(num_pools=1) as pm:
        for server in (a, b, a):
            pm.request("GET", server.url + "/bytes/1")
        stats = pm.stats()
        assert stats.evicted_pools == 2
        assert stats.total.created == 3


# --- the issue's fault cases through the three front doors ---------------------------------


def _silent_after_one(conn):  # type: ignore[no-untyped-def]
    # Answer one request, then drop the connection silently: no FIN, no answer, ever.
    request = conn.read_request()
    if request is None:
        return
    if conn.number == 1:
        conn.respond(200, b"ok")
        conn.stall(5)
        return
    conn.respond(200, b"ok")
    while conn.read_request() is not None:
        conn.respond(200, b"ok")


def _408_when_idle(sent: threading.Event):  # type: ignore[no-untyped-def]
    # Answer one request, then (idle) an unsolicited 408 and close, as nginx/Apache do; ``sent``
    # is set once the 408 and the FIN are out.
    def handler(conn):  # type: ignore[no-untyped-def]
        if conn.read_request() is None:
            return
        conn.respond(200, b"ok")
        conn.stall(0.05)
        conn.respond(408, b"", headers=[("Connection", "close")])
        conn.close()
        sent.set()

    return handler


def _front_doors(url_base: str, **options):  # type: ignore[no-untyped-def]
    """(name, get(path) -> body bytes, pools(), close()) for PoolManager, adapter, Session."""
    pm = PoolManager(retries=False, **options)
    adapter = fastpool.HTTPAdapter(**options)
    via_adapter = requests.Session()
    via_adapter.mount("http://", adapter)
    session = fastpool.Session(**{k: v for k, v in options.items() if k == "idle_timeout"})
    return [
        ("poolmanager", lambda p: pm.request("GET", url_base + p).data, lambda: pm, pm.clear),
        (
            "adapter",
            lambda p: via_adapter.get(url_base + p).content,
            lambda: adapter.poolmanager,
            via_adapter.close,
        ),
        (
            "session",
            lambda p: session.get(url_base + p).content,
            lambda: session.adapters["http://"].poolmanager,
            session.close,
        ),
    ]


def _settled_manager(pm) -> None:  # type: ignore[no-untyped-def]
    assert all(pool.pool.in_use == 0 for _, pool in pm.pools.items())


def test_silent_drop_is_not_reused_after_idle_timeout(fault_server_factory, clock):
    for name, get, manager, close in _front_doors("", idle_timeout=0.2):
        server = fault_server_factory(_silent_after_one)
        get_at = lambda p, s=server, g=get: g(s.url + p)
        assert get_at("/") == b"ok", name
        clock.advance(0.3)
        # without the idle timeout this request would go into the dead connection and hang
        assert get_at("/") == b"ok", name
        pool = next(pool for _, pool in manager().pools.items() if pool.port == server.port)
        assert pool.expired_idle == 1, name
        _settled_manager(manager())
        close()


def test_408_on_an_idle_connection_is_not_reused(fault_server_factory):
    for name, get, manager, close in _front_doors(""):
        sent = threading.Event()
        server = fault_server_factory(_408_when_idle(sent))
        assert get(server.url + "/") == b"ok", name
        assert sent.wait(5), name  # a hang guard: the 408 and the FIN are on their way
        assert get(server.url + "/") == b"ok", name
        assert server.connections == 2, name
        pool = next(pool for _, pool in manager().pools.items() if pool.port == server.port)
        assert pool.dropped_stale == 1, name
        _settled_manager(manager())
        close()


def test_keepalive_race_through_every_front_door(fault_server_factory):
    for name, get, manager, close in _front_doors(""):
        server = fault_server_factory(close_after(1, how="wait"))
        assert get(server.url + "/") == b"ok", name
        assert get(server.url + "/") == b"ok", name
        pool = next(pool for _, pool in manager().pools.items() if pool.port == server.port)
        assert pool.retried == 1, name
        _settled_manager(manager())
        close()


def test_random_closes_under_64_threads_every_get_succeeds(fault_server_factory):
    import random

    def flaky(conn):  # type: ignore[no-untyped-def]
        rng = random.Random(conn.number)
        served = 0
        while True:
            request = conn.read_request()
            if request is None:
                return
            if served and rng.random() < 0.05:
                return  # read it, close unanswered: the keep-alive race
            conn.respond(200, b"ok")
            served += 1
            if rng.random() < 0.05:
                conn.close()  # an idle close the client meets at checkout
                return

    server = fault_server_factory(flaky)
    session = fastpool.Session()

    def work(i: int) -> None:
        for _ in range(15):
            assert session.get(server.url + "/").content == b"ok"

    errors = _run_threads(work, 64)
    assert not errors, errors[:3]
    stats = session.pool_stats()
    assert stats.total.in_use == 0
    session.close()


def test_session_pool_full_warning_is_rate_limited_adapter_keeps_stock(app_server, caplog):
    import logging

    def burst(session, n: int) -> list[str]:  # type: ignore[no-untyped-def]
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="fastpool"):
            for _ in range(n):
                held = [session.get(app_server.url + "/bytes/1", stream=True) for _ in range(3)]
                for r in held:
                    r.content  # noqa: B018 - read to the end: back to the pool
        return [r.getMessage() for r in caplog.records if "pool is full" in r.getMessage()]

    session = fastpool.Session(pool_maxsize=1)
    lines = burst(session, 60)  # 2 discards per round: 120 in all
    assert len(lines) == 2
    assert lines[0].startswith("Connection pool is full, discarding connection: 127.0.0.1.")
    assert "100 connections to 127.0.0.1 discarded so far" in lines[1]
    session.close()

    stock_style = requests.Session()
    stock_style.mount("http://", fastpool.HTTPAdapter(pool_maxsize=1))
    lines = burst(stock_style, 3)
    assert len(lines) == 6
    assert all(
        line == "Connection pool is full, discarding connection: 127.0.0.1. Connection pool size: 1"
        for line in lines
    )
    stock_style.close()


def test_session_trace_hooks_and_stats_cover_both_adapters(app_server):
    names: list[str] = []
    with fastpool.Session() as session:
        session.add_trace_hook("got_conn", lambda event: names.append(event["host"]))
        session.get(app_server.url + "/bytes/1")
        session.get(app_server.url + "/bytes/1")
        assert names == ["127.0.0.1", "127.0.0.1"]
        stats = session.pool_stats()
        assert stats.total.created == 1 and stats.total.reused == 1
        adapter = session.adapters["http://"]
        [(_, pool)] = adapter.poolmanager.pools.items()
        assert (pool.idle_timeout, pool.max_lifetime) == (45.0, 600.0)
