"""Real limits (issue 6): the global cap ``max_connections`` across hosts, with the oldest idle
connection closed to make room, FIFO waits bounded by ``pool_timeout``, and accounting back to
zero on every exception path. Real servers on 127.0.0.0/8."""

from __future__ import annotations

import gc
import threading
import time

import pytest
import requests
from gc_staging import COLLECTS_AT_SAFE_POINTS, _Cycle, _run_with_collections
from urllib3.exceptions import EmptyPoolError, HTTPError

import fastpool
from fastpool.exceptions import PoolTimeoutError
from fastpool.limits import ConnectionLimit
from fastpool.poolmanager import PoolManager


def _open_sockets(pm: PoolManager) -> int:
    return sum(pool.pool.open for _, pool in pm.pools.items())


def _settled(pm: PoolManager) -> None:
    """No slot held anywhere; the cap's token count equals the idle connections left."""
    pools = [pool for _, pool in pm.pools.items()]
    assert all(pool.pool.in_use == 0 for pool in pools)
    if pm.limit is not None:
        assert pm.limit.open == sum(pool.pool.idle for pool in pools)


def _wait_for_waiters(pm: PoolManager, n: int) -> None:
    """Until ``n`` requests wait at the cap (bounded: 20 s)."""
    assert pm.limit is not None
    for _ in range(2000):
        if pm.limit.waiters == n:
            break
        time.sleep(0.01)
    assert pm.limit.waiters == n


def test_bad_max_connections_is_named():
    with pytest.raises(ValueError, match="max_connections"):
        PoolManager(max_connections=0)
    with pytest.raises(TypeError, match="max_connections"):
        ConnectionLimit("8")  # type: ignore[arg-type]


def test_cap_closes_the_oldest_idle_connection_of_another_host(server_factory):
    servers = [server_factory(f"127.0.0.{i}") for i in range(2, 6)]
    with PoolManager(max_connections=2, num_pools=10) as pm:
        for server in servers:
            assert pm.request("GET", server.url + "/bytes/3").data == b"abc"
            assert pm.limit is not None and pm.limit.open <= 2
            assert _open_sockets(pm) <= 2
        # the two oldest hosts lost their idle connection to make room, the newest kept theirs
        idle = {pool.host: pool.pool.idle for _, pool in pm.pools.items()}
        assert idle == {"127.0.0.2": 0, "127.0.0.3": 0, "127.0.0.4": 1, "127.0.0.5": 1}
        assert pm.limit.evicted_idle == 2
        _settled(pm)


def test_cap_reached_with_everything_in_use_times_out_and_leaks_nothing(server_factory):
    a, b = server_factory("127.0.0.2"), server_factory("127.0.0.3")
    with PoolManager(max_connections=1, pool_timeout=0.1) as pm:
        held = pm.request("GET", a.url + "/bytes/100", preload_content=False)
        with pytest.raises(EmptyPoolError):
            pm.request("GET", b.url + "/bytes/1")
        assert b.connections == 0
        held.read()
        assert pm.request("GET", b.url + "/bytes/1").status == 200
        _settled(pm)


def test_adapter_maps_the_global_cap_wait_to_pool_timeout(server_factory):
    a, b = server_factory("127.0.0.2"), server_factory("127.0.0.3")
    session = requests.Session()
    session.mount("http://", fastpool.HTTPAdapter(max_connections=1, pool_timeout=0.1))
    held = session.get(a.url + "/bytes/100", stream=True)
    with pytest.raises(fastpool.adapters.PoolTimeout):
        session.get(b.url + "/bytes/1")
    held.close()
    assert session.get(b.url + "/bytes/1").status_code == 200
    session.close()


def test_a_waiter_wakes_when_a_connection_goes_idle(server_factory):
    # Regression (issue 6): the dial waiting at the cap was woken only by a token coming back.
    # A connection that went idle gave none back, so with every connection idle the waiter
    # slept until pool_timeout (forever by default), though it could close an idle one.
    a, b = server_factory("127.0.0.2"), server_factory("127.0.0.3")
    with PoolManager(max_connections=1, pool_timeout=30) as pm:
        assert pm.limit is not None
        held = pm.request("GET", a.url + "/bytes/100", preload_content=False)
        result: list[object] = []
        waiter = threading.Thread(
            target=lambda: result.append(pm.request("GET", b.url + "/bytes/2").data)
        )
        waiter.start()
        _wait_for_waiters(pm, 1)
        held.read()  # a's connection goes idle (kept, not closed)
        waiter.join(20)  # a hang guard: the wait allows 30 s, so a timed-out waiter is no answer
        assert result == [b"ab"]  # woken, not timed out
        assert pm.limit.evicted_idle == 1 and pm.limit.waiters == 0
        _settled(pm)


def test_waiters_across_many_hosts_never_exceed_the_cap(server_factory):
    servers = [server_factory(f"127.0.0.{i}") for i in range(2, 12)]
    cap = 4
    pm = PoolManager(max_connections=cap, num_pools=4, maxsize=2)
    peak = [0]
    errors: list[BaseException] = []
    lock = threading.Lock()

    def watch(event):  # type: ignore[no-untyped-def]
        assert pm.limit is not None
        with lock:
            peak[0] = max(peak[0], pm.limit.open)

    pm.add_trace_hook("got_conn", watch)
    pm.add_trace_hook("first_byte", watch)

    def work(i: int) -> None:
        try:
            for n in range(25):
                server = servers[(i * 3 + n) % len(servers)]
                assert len(pm.request("GET", server.url + "/bytes/50").data) == 50
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert 1 <= peak[0] <= cap
    assert sum(s.connections for s in servers) >= 1
    _settled(pm)
    pm.clear()
    assert pm.limit is not None and pm.limit.open == 0


def test_every_exception_path_gives_the_token_back(server_factory, fault_server_factory):
    from dummyserver import close_after, send_raw

    app = server_factory("127.0.0.2")
    broken = fault_server_factory(send_raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"))
    stale = fault_server_factory(close_after(1, how="wait"))
    with PoolManager(max_connections=3, retries=False) as pm:
        # a response dropped unread
        r = pm.request("GET", app.url + "/bytes/100000", preload_content=False)
        del r
        gc.collect()
        # a generator abandoned mid-stream
        r = pm.request("GET", app.url + "/bytes/100000", preload_content=False)
        stream = r.stream(1024)
        next(stream)
        del stream, r
        gc.collect()
        # a truncated body
        with pytest.raises(HTTPError):
            pm.request("GET", broken.url + "/")
        # a connection refused
        with pytest.raises(HTTPError):
            pm.request("GET", "http://127.0.0.1:1/")
        # the keep-alive race: GET retried, POST raises
        pm.request("GET", stale.url + "/")
        assert pm.request("GET", stale.url + "/").data == b"ok"
        # (the retry's new connection is idle now, and the server will close it unanswered)
        with pytest.raises(HTTPError):
            pm.request("POST", stale.url + "/", body=b"x")
        # double release is harmless
        r = pm.request("GET", app.url + "/bytes/10", preload_content=False)
        r.read()
        r.release_conn()
        r.release_conn()
        _settled(pm)
    assert pm.limit is not None and pm.limit.open == 0


def test_tls_handshake_failure_gives_the_token_back(untrusted_https_server, ca_bundle):
    from urllib3.exceptions import SSLError

    with PoolManager(max_connections=1, pool_timeout=2, retries=False, ca_certs=ca_bundle) as pm:
        for _ in range(3):  # with a leaked token the second dial would wait forever
            with pytest.raises(SSLError):
                pm.request("GET", untrusted_https_server.url + "/bytes/1")
        assert pm.limit is not None and pm.limit.open == 0
        _settled(pm)


# --- fair waits at the cap (issue 12) ----------------------------------------------------------


def test_waiters_at_the_cap_are_served_fairly_without_extra_dials(server_factory):
    # 32 threads, one healthy host answering in 50 ms, a cap of 8: a connection coming back
    # goes to the longest waiter of its host, so the host is dialed exactly 8 times and every
    # wait is about 32/8 answers long. Before, requests that found an idle connection overtook
    # the waiters, and waiters closed idle connections of their own host to dial new ones:
    # 32 dials, 8 PoolTimeouts. pool_timeout is 15x the fair wait: no timing is asserted.
    server = server_factory("127.0.0.2")
    url = server.url + "/slow?delay=0.05"
    errors: list[BaseException] = []
    with fastpool.Session(max_connections=8, pool_timeout=3) as session:

        def work() -> None:
            for _ in range(5):
                try:
                    assert session.get(url).text == "slow"
                except BaseException as e:  # noqa: BLE001 - reported below
                    errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors[:3]
        assert server.connections == 8
        assert server.requests == 160
        (adapter,) = session._fastpool_adapters()
        _settled(adapter.poolmanager)


def test_waits_at_the_cap_are_first_in_first_out(server_factory):
    # Cap 1. Waiters queue in a known order (one at a time); each must be served in that
    # order, whether it waits for the same host (handed the connection) or another (handed
    # the token after the idle connection is closed), and nobody arriving later overtakes.
    a, b = server_factory("127.0.0.2"), server_factory("127.0.0.3")
    with PoolManager(max_connections=1, pool_timeout=30) as pm:
        assert pm.limit is not None
        held = pm.request("GET", a.url + "/bytes/100", preload_content=False)
        # Recorded as each one's answer arrives: with a cap of 1 the next waiter can only be
        # served after this one's body is read, so this order is the order of service.
        order: list[str] = []
        pm.add_trace_hook("first_byte", lambda event: order.append(event["host"]))

        def wait_for(name: str, url: str) -> None:
            assert pm.request("GET", url).status == 200

        names = [("a1", a), ("b1", b), ("a2", a), ("b2", b), ("a3", a)]
        threads = []
        for n, (name, server) in enumerate(names, start=1):
            t = threading.Thread(target=wait_for, args=(name, server.url + "/bytes/5"))
            t.start()
            threads.append(t)
            _wait_for_waiters(pm, n)
        held.read()
        for t in threads:
            t.join(30)
        assert order == [server.host for _, server in names]
        assert pm.limit.waiters == 0
        _settled(pm)
        # a1 got the held connection, b1 closed it to dial b, a2 closed that one ...
        assert a.connections == 3 and b.connections == 2


def test_a_connection_coming_back_goes_to_a_waiter_of_its_own_host(server_factory):
    # Cap 2: a waiter for host a is handed a's connection as it comes back, not a new dial,
    # and b's idle connection (the oldest idle one) is left alone.
    a, b = server_factory("127.0.0.2"), server_factory("127.0.0.3")
    with PoolManager(max_connections=2, pool_timeout=30) as pm:
        assert pm.limit is not None
        held = pm.request("GET", a.url + "/bytes/100", preload_content=False)
        held_b = pm.request("GET", b.url + "/bytes/100", preload_content=False)
        result: list[bytes] = []
        waiter = threading.Thread(
            target=lambda: result.append(pm.request("GET", a.url + "/bytes/3").data)
        )
        waiter.start()
        _wait_for_waiters(pm, 1)
        held.read()
        waiter.join(20)
        assert result == [b"abc"]
        assert a.connections == 1  # handed over: no second dial
        assert pm.limit.evicted_idle == 0
        held_b.read()
        assert b.connections == 1
        _settled(pm)


def test_a_timed_out_waiter_leaves_the_queue_and_its_slot(server_factory):
    a = server_factory("127.0.0.2")
    with PoolManager(max_connections=1, pool_timeout=0.2) as pm:
        assert pm.limit is not None
        held = pm.request("GET", a.url + "/bytes/100", preload_content=False)
        with pytest.raises(EmptyPoolError):
            pm.request("GET", a.url + "/bytes/1")
        assert pm.limit.waiters == 0
        held.read()
        assert pm.request("GET", a.url + "/bytes/2").data == b"ab"
        assert a.connections == 1
        _settled(pm)


def test_a_handed_over_connection_counts_as_a_reuse(server_factory):
    # The waiter's checkout found no idle connection (the queue counted a dial), but it was
    # handed one coming back: the stats say reused, and created matches the server's count.
    a = server_factory("127.0.0.2")
    with PoolManager(max_connections=1, pool_timeout=30) as pm:
        assert pm.limit is not None
        held = pm.request("GET", a.url + "/bytes/100", preload_content=False)
        waiter = threading.Thread(target=lambda: pm.request("GET", a.url + "/bytes/3"))
        waiter.start()
        _wait_for_waiters(pm, 1)
        held.read()
        waiter.join(20)
        (host,) = pm.stats().hosts
        assert (host.created, host.reused) == (1, 1) == (a.connections, a.requests - 1)
        _settled(pm)


# --- the global cap (max_connections): a collected response's token reaches a waiting dial -----
def test_collected_response_frees_a_global_token_for_a_waiting_dial(server_factory):
    a = server_factory(host="127.0.0.2")
    b = server_factory(host="127.0.0.3")
    with PoolManager(max_connections=1, pool_timeout=5, retries=False) as pm:
        r = pm.request("GET", a.url + "/bytes/300000", preload_content=False)  # the only token
        gc.collect()
        gc.disable()
        old = gc.get_threshold()
        try:
            _Cycle(r)
            del r
            gc.set_threshold(1)
            gc.enable()
            # Another host: its dial needs the token the collected response gives back.
            assert pm.request("GET", b.url + "/bytes/3").data == b"abc"
        finally:
            gc.set_threshold(*old)
            gc.enable()
        assert pm.limit is not None and pm.limit.open == 1  # b's idle connection


def test_limiter_keeps_a_token_released_by_a_finalizer_as_its_wait_times_out(app_server):
    from fastpool.limits import ConnectionLimit

    limit = ConnectionLimit(1, timeout=0.2)
    limit.acquire()  # the one token, held by `holder`
    holder = object()
    fired = []

    def finalizer() -> None:
        # The collector runs while the acquiring thread holds the limiter's lock (making its
        # PoolTimeoutError): the token comes back deferred, and must not be lost.
        if not fired and getattr(limit._local, "busy", False):
            fired.append(True)
            limit.release(holder)

    def acquire() -> str:
        try:
            limit.acquire()
        except PoolTimeoutError:
            return "timed out"
        return "acquired"

    outcome = _run_with_collections(acquire, finalizer)
    if not fired and COLLECTS_AT_SAFE_POINTS:
        pytest.skip(
            "CPython 3.12+: no collection ran while the acquiring thread held the limiter's lock"
            " (the collector runs between bytecodes); the moment this test stages did not happen"
        )
    assert fired
    # Either way the released token is accounted for: nothing open after a timeout, or the
    # acquiring dial holds the one token.
    assert limit.open == (0 if outcome == "timed out" else 1)
    assert not limit._deferred
