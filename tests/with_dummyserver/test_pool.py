"""HTTPConnectionPool: urllib3's pool semantics (block, maxsize, discard-on-full, logs, retries,
same-host rules, close), request bodies, and the pool counters."""

from __future__ import annotations

import gc
import io
import json
import logging
import threading
import time
import uuid

import pytest
import urllib3
from dummyserver import send_raw
from gc_staging import COLLECTS_AT_SAFE_POINTS, _Cycle
from urllib3.exceptions import (
    ClosedPoolError,
    EmptyPoolError,
    HostChangedError,
    LocationValueError,
    MaxRetryError,
    NewConnectionError,
)
from urllib3.util.retry import Retry
from urllib3.util.timeout import Timeout

import fastpool
from fastpool.pool import HTTPConnectionPool, HTTPSConnectionPool, connection_from_url


def _echo(r) -> dict:  # type: ignore[no-untyped-def]
    return json.loads(r.data)  # type: ignore[no-any-return]


def _two_rounds_of_two_threads(pool, server) -> None:  # type: ignore[no-untyped-def]
    """The article's threaded scenario: two concurrent requests, twice (a /hold barrier makes
    both requests of a round overlap, so both need a connection at the same time)."""
    for _ in range(2):
        key = uuid.uuid4().hex
        threads = [
            threading.Thread(target=pool.request, args=("GET", f"/hold?key={key}&n=2"))
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)


@pytest.mark.parametrize("maxsize,connections,warnings", [(1, 3, 2), (2, 2, 0)])
def test_article_threads_same_counts_and_lines_as_urllib3(
    server_factory, caplog, maxsize, connections, warnings
):
    results = {}
    for name, cls, logger in (
        ("urllib3", urllib3.HTTPConnectionPool, "urllib3"),
        ("fastpool", HTTPConnectionPool, "urllib3"),  # the same logging setup serves both
    ):
        server = server_factory()
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger=logger):
            pool = cls(server.host, server.port, maxsize=maxsize, block=False)
            _two_rounds_of_two_threads(pool, server)
            pool.close()
        lines = sorted(
            (r.levelname, r.getMessage().replace(str(server.port), "PORT"))
            for r in caplog.records
            if r.name.endswith("connectionpool") and "/hold" not in r.getMessage()
        )
        results[name] = (server.connections, lines)
    assert results["fastpool"] == results["urllib3"]
    assert results["fastpool"][0] == connections
    full = [m for level, m in results["fastpool"][1] if level == "WARNING"]
    assert len(full) == warnings
    if warnings:
        assert full[0] == (
            "Connection pool is full, discarding connection: 127.0.0.1. Connection pool size: 1"
        )


@pytest.mark.parametrize("urllib3_logging", [None, True, False])
def test_logs_under_urllib3s_names_unless_told_not_to(app_server, caplog, urllib3_logging):
    # urllib3's own test_debug_log, side by side: logging set up for urllib3.connectionpool
    # sees fastpool's lines (the default), or fastpool.* gets them instead, never both.
    import fastpool

    kw = {} if urllib3_logging is None else {"urllib3_logging": urllib3_logging}
    prefix = "fastpool" if urllib3_logging is False else "urllib3"
    seen = {}
    for name, manager in (("urllib3", urllib3.PoolManager()), ("ours", fastpool.PoolManager(**kw))):
        caplog.clear()
        with (
            caplog.at_level(logging.DEBUG, logger="urllib3"),
            caplog.at_level(logging.DEBUG, logger="fastpool"),
        ):
            manager.request("GET", app_server.url + "/redirect/1")
        manager.clear()
        seen[name] = [
            (r.name, r.getMessage().replace(str(app_server.port), "PORT"))
            for r in caplog.records
            if r.name.startswith(("urllib3.", "fastpool."))
        ]
    ours = {"urllib3.connectionpool", "urllib3.poolmanager"}  # urllib3's Retry logs its own
    expected = [
        (n.replace("urllib3", prefix, 1) if n in ours else n, m) for n, m in seen["urllib3"]
    ]
    assert [n for n, _ in seen["urllib3"]].count("urllib3.connectionpool") == 3
    assert seen["ours"] == expected


def test_block_true_caps_connections(app_server):
    with HTTPConnectionPool(app_server.host, app_server.port, maxsize=2, block=True) as pool:
        errors: list[BaseException] = []

        def work() -> None:
            try:
                for _ in range(10):
                    assert pool.request("GET", "/bytes/10").status == 200
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors
        assert app_server.connections <= 2
        assert pool.pool.in_use == 0


def test_block_true_pool_timeout(app_server):
    with HTTPConnectionPool(app_server.host, app_server.port, maxsize=1, block=True) as pool:
        held = pool.request("GET", "/bytes/100000", preload_content=False)
        with pytest.raises(EmptyPoolError):
            pool.urlopen("GET", "/bytes/1", pool_timeout=0.05)
        held.read()
        assert pool.request("GET", "/bytes/1").status == 200


def test_counters_and_dropped_connection_log(fault_server_factory, caplog):
    from dummyserver import close_after

    server = fault_server_factory(close_after(1))
    with HTTPConnectionPool(server.host, server.port) as pool:
        pool.request("GET", "/")
        conn = pool.pool.checkout(0)
        deadline = __import__("time").monotonic() + 5
        while conn.is_connected and __import__("time").monotonic() < deadline:
            pass
        pool.pool.checkin(conn)
        with caplog.at_level(logging.DEBUG, logger="urllib3"):
            pool.request("GET", "/")
        assert "Resetting dropped connection: 127.0.0.1" in caplog.messages
        # urllib3 reconnects the same connection object: no "Starting new" and no new number
        assert pool.num_connections == 1 and pool.num_requests == 2


def test_close_semantics(app_server):
    pool = HTTPConnectionPool(app_server.host, app_server.port)
    r = pool.request("GET", "/bytes/100000", preload_content=False)
    pool.close()
    assert pool.closed
    with pytest.raises(ClosedPoolError):
        pool.request("GET", "/bytes/1")
    assert len(r.read()) == 100000  # the response in flight finishes
    assert pool.pool.in_use == 0 and pool.pool.idle == 0
    pool.close()  # idempotent


def test_same_host_rules(app_server):
    pool = HTTPConnectionPool(app_server.host, app_server.port)
    assert pool.is_same_host("/x")
    assert pool.is_same_host(f"http://127.0.0.1:{app_server.port}/x")
    assert not pool.is_same_host(f"https://127.0.0.1:{app_server.port}/x")
    assert not pool.is_same_host("http://127.0.0.2:1/x")
    with pytest.raises(HostChangedError):
        pool.urlopen("GET", "http://127.0.0.2:1/x")
    assert HTTPConnectionPool("example.com").is_same_host("http://example.com:80/")
    with pytest.raises(LocationValueError):
        HTTPConnectionPool("")


def test_default_and_request_headers(app_server):
    with HTTPConnectionPool(app_server.host, app_server.port, headers={"X-Pool": "1"}) as pool:
        names = [k for k, _ in _echo(pool.request("GET", "/echo"))["headers"]]
        assert "X-Pool" in names and "User-Agent" in names and "Host" in names
        names = [
            k for k, _ in _echo(pool.request("GET", "/echo", headers={"X-Req": "2"}))["headers"]
        ]
        assert "X-Req" in names and "X-Pool" not in names  # urllib3: replaces, not merges
        skip = {"User-Agent": urllib3.util.SKIP_HEADER}
        names = [k for k, _ in _echo(pool.request("GET", "/echo", headers=skip))["headers"]]
        assert "User-Agent" not in names


@pytest.mark.parametrize(
    "body,expect_te",
    [
        (b"bytes body", False),
        ("str body é", False),
        (bytearray(b"buffer"), False),
        (io.BytesIO(b"file body"), True),
        (iter([b"it", b"er", b"able"]), True),
        (b"x" * 100000, False),
    ],
    ids=["bytes", "str", "buffer", "file", "iterable", "large"],
)
def test_request_bodies(app_server, body, expect_te):
    expected = body if isinstance(body, (bytes, bytearray)) else None
    with HTTPConnectionPool(app_server.host, app_server.port) as pool:
        data = _echo(pool.request("POST", "/echo", body=body))
        headers = {k.lower(): v for k, v in data["headers"]}
        assert ("transfer-encoding" in headers) is expect_te
        assert ("content-length" in headers) is not expect_te
        if expected is not None:
            assert data["body"].encode("latin-1") == bytes(expected)
        elif isinstance(body, str):
            assert data["body"].encode("latin-1") == body.encode("utf-8")


def test_forced_chunked_and_empty_post(app_server):
    with HTTPConnectionPool(app_server.host, app_server.port) as pool:
        data = _echo(pool.urlopen("POST", "/echo", body=b"abc", chunked=True))
        assert data["body"] == "abc"
        assert ("Transfer-Encoding", "chunked") in [tuple(h) for h in data["headers"]]
        data = _echo(pool.urlopen("POST", "/echo"))
        assert ("Content-Length", "0") in [tuple(h) for h in data["headers"]]


def test_file_body_rewound_on_redirect(app_server):
    with HTTPConnectionPool(app_server.host, app_server.port) as pool:
        body = io.BytesIO(b"payload")
        r = pool.urlopen("PUT", "/redirect-to?url=/echo&status_code=307", body=body)
        assert _echo(r)["body"] == "payload"


def test_connect_retries_then_max_retry_error():
    pool = HTTPConnectionPool("127.0.0.1", 9)  # discard port: nothing listens on loopback
    with pytest.raises(MaxRetryError) as info:
        pool.request("GET", "/", retries=Retry(connect=2, backoff_factor=0))
    assert isinstance(info.value.reason, NewConnectionError)
    assert pool.num_connections == 3 and pool.pool.in_use == 0


def test_timeout_total(fault_server_factory):
    def stall(conn):  # type: ignore[no-untyped-def]
        conn.read_request()
        conn.stall(2)

    server = fault_server_factory(stall)
    with HTTPConnectionPool(server.host, server.port, retries=False) as pool:
        with pytest.raises(urllib3.exceptions.ReadTimeoutError):
            pool.request("GET", "/", timeout=Timeout(total=0.2))
        with pytest.raises(urllib3.exceptions.ReadTimeoutError):
            pool.request("GET", "/", timeout=0.1)
        assert pool.pool.in_use == 0


def test_timeout_objects_passed_again_are_read_each_time(app_server):
    """The pool remembers the last Timeout's values, by identity; another object, or the socket
    default behind a Timeout's DEFAULT values, is read anew."""
    import socket

    def idle_timeout(pool):  # type: ignore[no-untyped-def]
        conn = pool.pool.checkout(0)
        try:
            return conn.sock.gettimeout()
        finally:
            pool.pool.checkin(conn)

    default = Timeout()  # connect and read: the socket default, when the request is made
    before = socket.getdefaulttimeout()
    with HTTPConnectionPool(app_server.host, app_server.port, maxsize=1) as pool:
        try:
            for seconds in (7.0, 9.0):
                socket.setdefaulttimeout(seconds)
                assert pool.request("GET", "/bytes/1", timeout=default).data == b"a"
                assert idle_timeout(pool) == seconds
        finally:
            socket.setdefaulttimeout(before)
        for seconds in (3.0, 4.0, 3.0):
            assert pool.request("GET", "/bytes/1", timeout=Timeout(read=seconds)).status == 200
            assert idle_timeout(pool) == seconds
        # A number is kept by value and type, and each new one is read (and checked) anew.
        for number in (5, 6.5, 6.5, 5, 2):
            assert pool.request("GET", "/bytes/1", timeout=number).status == 200
            assert idle_timeout(pool) == number
        for bad in (-1, 0):
            with pytest.raises(ValueError):
                pool.request("GET", "/bytes/1", timeout=bad)


def test_https_pool_and_connection_from_url(https_server, ca_bundle):
    pool = connection_from_url(https_server.url, ca_certs=ca_bundle)
    assert isinstance(pool, HTTPSConnectionPool)
    assert pool.request("GET", "/bytes/3").data == b"abc"
    conn = pool.pool.checkout(0)
    assert conn.is_verified
    pool.pool.checkin(conn)
    pool.close()


def test_https_fingerprint_pinning(https_server, tls_ca, ca_bundle):
    import hashlib
    import ssl

    pem = ssl.get_server_certificate((https_server.host, https_server.port))
    fingerprint = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()
    ok = HTTPSConnectionPool(
        https_server.host, https_server.port, cert_reqs="CERT_NONE", assert_fingerprint=fingerprint
    )
    assert ok.request("GET", "/bytes/1").status == 200
    bad = HTTPSConnectionPool(
        https_server.host, https_server.port, cert_reqs="CERT_NONE",
        assert_fingerprint="00" * 32, retries=False,
    )  # fmt: skip
    with pytest.raises(urllib3.exceptions.SSLError):
        bad.request("GET", "/bytes/1")
    assert bad.pool.in_use == 0


def test_dropped_unread_response_gives_its_slot_back(app_server):
    import gc

    with HTTPConnectionPool(app_server.host, app_server.port, maxsize=1, block=True) as pool:
        r = pool.request("GET", "/bytes/300000", preload_content=False)
        assert pool.pool.in_use == 1
        cycle = [r]
        cycle.append(cycle)  # only the cycle collector frees it
        del r, cycle
        gc.collect()
        assert pool.pool.in_use == 0
        assert pool.request("GET", "/bytes/3", pool_timeout=1).data == b"abc"


def test_finalizer_releases_the_slot_at_once(app_server):
    # Outside the HostQueue's critical parts a finalizer checks the slot in at once (inside
    # one, the pure twin settles it when the part ends: tests/unit/test_hostqueue.py).
    with HTTPConnectionPool(app_server.host, app_server.port, maxsize=1, block=True) as pool:
        r = pool.request("GET", "/bytes/300000", preload_content=False)
        r.__del__()
        assert pool.pool.in_use == 0
        assert pool.request("GET", "/bytes/3", pool_timeout=1).data == b"abc"
        assert pool.pool.in_use == 0


def test_dropped_pool_closes_its_idle_connections(app_server):
    import gc

    pool = HTTPConnectionPool(app_server.host, app_server.port)
    pool.request("GET", "/bytes/1")
    queue = pool.pool
    conn = queue.checkout(0)
    queue.checkin(conn)
    del pool
    gc.collect()
    assert queue.closed and queue.idle == 0 and conn.sock is None


def test_changed_tls_settings_never_reuse_an_unverified_connection(
    untrusted_https_server, ca_bundle
):
    """CVE-2024-35195's shape at the pool level: requests' cert_verify sets cert_reqs/ca_certs
    on the pool object. An idle connection made without verification must not serve a
    request that now asks for it (urllib3 reuses it)."""
    server = untrusted_https_server
    pool = HTTPSConnectionPool(server.host, server.port, cert_reqs="CERT_NONE", retries=False)
    with pytest.warns(urllib3.exceptions.InsecureRequestWarning):
        assert pool.request("GET", "/bytes/1").status == 200
    assert pool.pool.idle == 1
    pool.cert_reqs = "CERT_REQUIRED"
    pool.ca_certs = ca_bundle
    with pytest.raises(urllib3.exceptions.SSLError):
        pool.request("GET", "/bytes/1")
    assert pool.pool.in_use == 0
    # and back: unverified again works, on a fresh connection
    pool.cert_reqs = "CERT_NONE"
    with pytest.warns(urllib3.exceptions.InsecureRequestWarning):
        assert pool.request("GET", "/bytes/1").status == 200
    assert server.connections == 3
    pool.close()


def test_https_threads_dialing_at_once_share_one_context(https_server, ca_bundle):
    for _ in range(3):  # the race needs both threads to dial at once: give it a few rounds
        https_server.reset_counts()
        pool = HTTPSConnectionPool(
            https_server.host, https_server.port, maxsize=2, ca_certs=ca_bundle
        )
        _two_rounds_of_two_threads(pool, https_server)
        assert https_server.connections == 2
        pool.close()


# --- a collection (and the finalizers it runs) at a queue's critical moment ---------------------
def test_dropped_response_frees_the_slot_a_blocked_checkout_waits_for(fault_server_factory):
    if COLLECTS_AT_SAFE_POINTS and fastpool.implementation() == "cython":
        pytest.skip(
            "CPython 3.12+ never collects inside the compiled checkout (one C call, no bytecode):"
            " the collection this test stages there cannot happen"
        )
    server = fault_server_factory(
        send_raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100, then="keep")
    )
    with HTTPConnectionPool(server.host, server.port, maxsize=1, block=True, retries=False) as p:
        r = p.urlopen("GET", "/", preload_content=False)  # holds the only slot
        gc.collect()
        gc.disable()
        old = gc.get_threshold()
        try:
            _Cycle(r)
            del r
            # The first GC-tracked allocations inside checkout (its waiter) collect the cycle;
            # the response's finalizer gives the slot back, and the checkout must take it
            # (before the fix: deferred, and the checkout timed out waiting for it).
            gc.set_threshold(1)
            gc.enable()
            conn = p._get_conn(timeout=5)
        finally:
            gc.set_threshold(*old)
            gc.enable()
        assert conn is not None
        p._put_conn(conn)
        assert p.pool.in_use == 0


# --- Retry-After: the Retry object decides -------------------------------------------------------
class _RetryAfter500(Retry):
    RETRY_AFTER_STATUS_CODES = frozenset({413, 429, 503, 500})


def test_retry_subclass_retry_after_status_codes_are_honoured(fault_server_factory):
    requests_seen = []

    def handler(conn):  # type: ignore[no-untyped-def]
        while conn.read_request() is not None:
            requests_seen.append(1)
            conn.send(b"HTTP/1.1 500 Oops\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n")

    server = fault_server_factory(handler)
    retries = _RetryAfter500(total=1, raise_on_status=False)
    with HTTPConnectionPool(server.host, server.port, retries=retries) as p:
        assert p.request("GET", "/").status == 500
    assert len(requests_seen) == 2  # urllib3 retries once: 500 is in the subclass's codes
    # The stock class does not retry a 500 on Retry-After.
    requests_seen.clear()
    with HTTPConnectionPool(server.host, server.port, retries=Retry(total=1)) as p:
        assert p.request("GET", "/").status == 500
    assert len(requests_seen) == 1


# --- the stale-connection replay stops once any response byte arrived (Go's rule) --------------
def test_no_replay_after_part_of_the_response_head(fault_server_factory):
    requests_seen = []

    def handler(conn):  # type: ignore[no-untyped-def]
        if conn.read_request() is None:
            return
        requests_seen.append(1)
        conn.respond(200, b"ok")
        if conn.read_request() is None:
            return
        requests_seen.append(2)
        conn.send(b"HTTP/1.1 200 OK\r\nContent-")  # part of a head, then a reset
        time.sleep(0.05)
        conn.reset()

    server = fault_server_factory(handler)
    with HTTPConnectionPool(server.host, server.port, retries=False) as p:
        assert p.request("GET", "/").data == b"ok"
        with pytest.raises(urllib3.exceptions.ProtocolError):
            p.request("GET", "/")  # the reused connection; idempotent, yet not replayed
        assert p.retried == 0 and p.pool.in_use == 0
    assert requests_seen == [1, 2] and server.connections == 1
