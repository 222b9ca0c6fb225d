"""Hostile and broken servers (the scripted FaultServer): each failure is a clear error, the
broken connection is never reused, and the pool's accounting is back to zero afterwards."""

from __future__ import annotations

import socket
import time

import pytest
from dummyserver import close_after, send_raw
from urllib3.exceptions import (
    ConnectTimeoutError,
    IncompleteRead,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.util.timeout import Timeout

from fastpool.connection import HTTPConnection
from fastpool.exceptions import InvalidChunkError, InvalidResponseError, ResponseHeadTooLarge
from fastpool.pool import HTTPConnectionPool
from fastpool.poolmanager import PoolManager


def _settled(pool: HTTPConnectionPool) -> None:
    """Nothing leaked: no slot is held, and idle connections have nothing unread."""
    assert pool.pool.in_use == 0
    assert pool.pool.open == pool.pool.idle <= max(pool.pool.maxsize, 1)
    for _ in range(pool.pool.idle):
        conn = pool.pool.checkout(0)
        assert conn.sock is not None and not conn._rest
        pool.pool.checkin(conn)


def _pool(server, **kw) -> HTTPConnectionPool:  # type: ignore[no-untyped-def]
    kw.setdefault("retries", False)
    return HTTPConnectionPool(server.host, server.port, **kw)


def _wait_closed_by_peer(pool: HTTPConnectionPool) -> None:
    deadline = time.monotonic() + 5
    conn = pool.pool.checkout(0)
    try:
        while conn.is_connected and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        pool.pool.checkin(conn)


def test_server_closed_idle_connection_is_replaced_silently(fault_server_factory):
    server = fault_server_factory(close_after(1))
    with _pool(server) as pool:
        assert pool.request("GET", "/").data == b"ok"
        _wait_closed_by_peer(pool)
        assert pool.request("GET", "/").data == b"ok"
        assert server.connections == 2
        _settled(pool)


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
@pytest.mark.parametrize("how", ["wait", "reset"])
def test_stale_connection_race_is_retried_once_for_get(fault_server_factory, ca_bundle, how, tls):
    # The server reads the next request and closes (or resets) without answering: the race
    # between an idle close and our reuse. A GET without a body is sent again, once.
    from fastpool.pool import HTTPSConnectionPool

    server = fault_server_factory(close_after(1, how=how), tls=tls)
    pool = (
        HTTPSConnectionPool(server.host, server.port, ca_certs=ca_bundle, retries=False)
        if tls
        else _pool(server)
    )
    with pool:
        assert pool.request("GET", "/").data == b"ok"
        if how == "reset":
            _wait_closed_by_peer(pool)
        assert pool.request("GET", "/").data == b"ok"
        assert server.connections == 2
        _settled(pool)


def test_stale_connection_not_replayed_for_post(fault_server_factory):
    server = fault_server_factory(close_after(1, how="wait"))
    with _pool(server) as pool:
        assert pool.request("POST", "/", body=b"x").data == b"ok"
        with pytest.raises(ProtocolError) as info:
            pool.request("POST", "/", body=b"x")
        assert "Connection aborted." in str(info.value)
        _settled(pool)


def test_remote_disconnected_on_fresh_connection(fault_server_factory):
    server = fault_server_factory(close_after(0, how="wait"))
    with _pool(server) as pool:
        with pytest.raises(ProtocolError, match="Remote end closed connection without response"):
            pool.request("GET", "/")
        _settled(pool)


def test_truncated_body(fault_server_factory):
    server = fault_server_factory(send_raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"))
    with _pool(server) as pool:
        with pytest.raises(ProtocolError) as info:
            pool.request("GET", "/")
        assert isinstance(info.value.args[1], IncompleteRead)
        assert "IncompleteRead(3 bytes read, 7 more expected)" in str(info.value)
        _settled(pool)
        # streamed: the error comes from read()
        r = pool.request("GET", "/", preload_content=False)
        assert pool.pool.in_use == 1
        with pytest.raises(ProtocolError):
            r.read()
        _settled(pool)


def test_truncated_body_not_enforced(fault_server_factory):
    server = fault_server_factory(send_raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"))
    with _pool(server) as pool:
        r = pool.urlopen("GET", "/", enforce_content_length=False)
        assert r.data == b"abc"
        _settled(pool)


def test_bad_chunk(fault_server_factory):
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n"
    server = fault_server_factory(send_raw(raw))
    with _pool(server) as pool:
        with pytest.raises(InvalidChunkError):
            pool.request("GET", "/")
        _settled(pool)


def test_chunked_body_cut_short(fault_server_factory):
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
    server = fault_server_factory(send_raw(raw))
    with _pool(server) as pool:
        with pytest.raises(ProtocolError, match="Response ended prematurely"):
            pool.request("GET", "/")
        _settled(pool)


@pytest.mark.parametrize(
    ("raw", "outcome"),
    [
        (b"HTTP/1.1 200 OK\r\nX-A: b\r\n", (200, "b", b"")),
        (b"HTTP/1.1 204 No Content\r\nX-A: b", (204, "b", b"")),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", IncompleteRead),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n", "Response ended prematurely"),
        (b"HTTP/1.1 100 Continue\r\n\r\n", "Connection closed in the middle"),
    ],
    ids=["whole-lines", "cut-line", "length", "chunked", "interim-only"],
)
def test_head_cut_by_eof_ends_there_as_in_urllib3(fault_server_factory, raw, outcome):
    """The server closes before the blank line: the head ends there (http.client's rule, so
    urllib3's), and a framed body is then found cut short. The connection is not reused."""
    import urllib3

    server = fault_server_factory(send_raw(raw))
    results = []
    for pool_cls in (urllib3.HTTPConnectionPool, HTTPConnectionPool):
        with pool_cls(server.host, server.port, retries=False) as pool:
            try:
                r = pool.request("GET", "/")
                results.append((r.status, r.headers.get("x-a"), r.data))
            except ProtocolError as e:
                results.append(e)
            if pool_cls is HTTPConnectionPool:
                _settled(pool)
                assert pool.pool.idle == 0  # the server closed it: never kept
    theirs, ours = results
    if isinstance(outcome, tuple):
        assert ours == theirs == outcome
    elif isinstance(outcome, type):  # urllib3 wraps http.client's IncompleteRead, we our own
        assert isinstance(theirs, ProtocolError) and isinstance(ours, ProtocolError)
        assert repr(ours.args[1]) == repr(theirs.args[1])
        assert isinstance(ours.args[1], outcome)
    else:
        assert isinstance(theirs, ProtocolError)
        assert outcome in str(ours)


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"SPDY/3 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
    ],
    ids=["status", "version", "header-name"],
)
def test_malformed_head(fault_server_factory, raw):
    server = fault_server_factory(send_raw(raw))
    with _pool(server) as pool:
        with pytest.raises(ProtocolError) as info:
            pool.request("GET", "/")
        assert info.value.args[0] == "Connection aborted."
        assert isinstance(info.value.args[1], InvalidResponseError)
        _settled(pool)


def test_conflicting_content_length_is_not_wrapped(fault_server_factory):
    # urllib3 raises InvalidHeader for it, unwrapped (tests/with_dummyserver/test_response.py)
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
    server = fault_server_factory(send_raw(raw))
    with _pool(server) as pool:
        with pytest.raises(InvalidResponseError, match="invalid Content-Length"):
            pool.request("GET", "/")
        _settled(pool)


def test_oversized_head(fault_server_factory):
    raw = b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"a" * 70000 + b"\r\n\r\n"
    server = fault_server_factory(send_raw(raw))
    with _pool(server) as pool:
        with pytest.raises(ProtocolError) as info:
            pool.request("GET", "/")
        assert isinstance(info.value.args[1], ResponseHeadTooLarge)
        _settled(pool)


def test_malformed_head_retried_then_maxretry(fault_server_factory):
    server = fault_server_factory(send_raw(b"HTTP/1.1 abc\r\n\r\n"))
    with _pool(server, retries=2) as pool:
        with pytest.raises(MaxRetryError) as info:
            pool.request("GET", "/")
        assert isinstance(info.value.reason, ProtocolError)
        assert server.connections == 3
        _settled(pool)


def test_read_timeout(fault_server_factory):
    def stall(conn):  # type: ignore[no-untyped-def]
        conn.read_request()
        conn.stall(2)

    server = fault_server_factory(stall)
    with _pool(server, timeout=Timeout(connect=5, read=0.2)) as pool:
        with pytest.raises(ReadTimeoutError, match=r"read timeout=0.2"):
            pool.request("GET", "/")
        _settled(pool)


def test_read_timeout_in_body(fault_server_factory):
    def stall(conn):  # type: ignore[no-untyped-def]
        conn.read_request()
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        conn.stall(2)

    server = fault_server_factory(stall)
    with _pool(server, timeout=0.2) as pool:
        r = pool.request("GET", "/", preload_content=False)
        with pytest.raises(ReadTimeoutError):
            r.read()
        _settled(pool)


def test_refused_connection():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    pool = HTTPConnectionPool("127.0.0.1", port, retries=False)
    with pytest.raises(NewConnectionError, match="Failed to establish a new connection"):
        pool.request("GET", "/")
    _settled(pool)
    with pytest.raises(MaxRetryError) as info:
        pool.request("GET", "/", retries=1)
    assert isinstance(info.value.reason, NewConnectionError)
    _settled(pool)


def test_connect_timeout():
    # A listener that never accepts, with its backlog full: further SYNs are dropped, so the
    # connect hangs until the timeout (loopback only).
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        time.sleep(0.05)
        pool = HTTPConnectionPool("127.0.0.1", port, retries=False, timeout=Timeout(connect=0.2))
        start = time.monotonic()
        with pytest.raises(ConnectTimeoutError) as info:
            pool.request("GET", "/")
        assert not isinstance(info.value, NewConnectionError)
        assert time.monotonic() - start < 5
        _settled(pool)
    finally:
        for s in fillers:
            s.close()
        listener.close()


class _InterruptingSocket:
    """A real socket whose reads raise KeyboardInterrupt after ``after`` calls."""

    def __init__(self, sock: socket.socket, after: int) -> None:
        self._sock = sock
        self._after = after

    def _tick(self) -> None:
        self._after -= 1
        if self._after < 0:
            raise KeyboardInterrupt

    def recv_into(self, *args):  # type: ignore[no-untyped-def]
        self._tick()
        return self._sock.recv_into(*args)

    def recv(self, *args):  # type: ignore[no-untyped-def]
        self._tick()
        return self._sock.recv(*args)

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return getattr(self._sock, name)


def _interrupting_pool(server, after: int) -> HTTPConnectionPool:  # type: ignore[no-untyped-def]
    class Conn(HTTPConnection):
        def connect(self) -> None:
            super().connect()
            self.sock = _InterruptingSocket(self.sock, after)  # type: ignore[assignment,arg-type]

    pool = _pool(server)
    pool.ConnectionCls = Conn
    return pool


def test_keyboard_interrupt_in_head_read_frees_the_slot(app_server):
    with _interrupting_pool(app_server, after=0) as pool:
        with pytest.raises(KeyboardInterrupt):
            pool.request("GET", "/bytes/10")
        _settled(pool)
        assert pool.pool.idle == 0


def test_keyboard_interrupt_in_body_read_frees_the_slot(app_server):
    with _interrupting_pool(app_server, after=1) as pool:
        with pytest.raises(KeyboardInterrupt):
            pool.request("GET", "/bytes/300000")
        _settled(pool)
        r = None
    with _interrupting_pool(app_server, after=1) as pool:
        r = pool.request("GET", "/bytes/300000", preload_content=False)
        with pytest.raises(KeyboardInterrupt):
            r.read()
        _settled(pool)
        r.release_conn()  # harmless twice
        r.close()
        _settled(pool)


@pytest.mark.parametrize("path", ["/bytes/300000", "/chunked/1000", "/no-length?n=1000"])
def test_release_conn_before_the_body_frees_the_slot_and_keeps_the_body(app_server, path):
    """The slot goes back at once (urllib3's accounting); the response reads its body on from
    its own socket, which is closed at the end and never pooled."""
    import urllib3

    with _pool(app_server, maxsize=1, block=True) as pool:
        r = pool.request("GET", path, preload_content=False)
        r.release_conn()
        r.release_conn()  # idempotent
        assert pool.pool.in_use == 0
        other = pool.request("GET", "/bytes/3", pool_timeout=5)  # the slot is free
        assert other.data == b"abc"
        with urllib3.PoolManager() as reference:
            expected = reference.request("GET", app_server.url + path).data
        assert r.read() == expected
        assert r.connection is None or r.connection.sock is None  # closed at the end
        _settled(pool)
        assert pool.pool.idle == 1  # only the other request's connection was kept


def test_blocking_pool_timeout_leaks_nothing(app_server):
    from urllib3.exceptions import EmptyPoolError

    with _pool(app_server, maxsize=1, block=True) as pool:
        held = pool.request("GET", "/bytes/100000", preload_content=False)
        with pytest.raises(EmptyPoolError):
            pool.request("GET", "/bytes/1", pool_timeout=0.05)
        held.release_conn()
        _settled(pool)
        assert pool.request("GET", "/bytes/1").status == 200
        _settled(pool)


def test_pool_usable_after_every_failure(fault_server_factory):
    responses = iter([b"HTTP/1.1 abc\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"])

    def handler(conn):  # type: ignore[no-untyped-def]
        if conn.read_request() is not None:
            conn.send(next(responses))

    server = fault_server_factory(handler)
    with PoolManager(retries=False) as pm:
        with pytest.raises(ProtocolError):
            pm.request("GET", server.url + "/")
        assert pm.request("GET", server.url + "/").data == b"ok"
        _settled(pm.connection_from_url(server.url))


def test_huge_content_length_is_not_preallocated(fault_server_factory):
    # A hostile Content-Length of 1 TB with 5 bytes of body: a clean IncompleteRead, no
    # MemoryError from allocating the announced size.
    server = fault_server_factory(
        send_raw(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\nhello")
    )
    with _pool(server) as pool:
        with pytest.raises(ProtocolError) as info:
            pool.request("GET", "/")
        assert "IncompleteRead(5 bytes read, 999999999995 more expected)" in str(info.value)
        _settled(pool)


def test_body_larger_than_one_buffer(fault_server_factory):
    body = bytes(range(256)) * (5 * 4096 + 3)  # a little over 5 MiB
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    server = fault_server_factory(send_raw(head + body, then="keep"))
    with _pool(server) as pool:
        assert pool.request("GET", "/").data == body
        _settled(pool)
        assert pool.pool.idle == 1


def test_early_answer_to_an_unfinished_upload_is_read_but_not_reused(fault_server_factory):
    def early(conn):  # type: ignore[no-untyped-def]
        conn.recv_until(b"\r\n\r\n")  # the head only, then answer and go away
        conn.send(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\n\r\nbig")
        conn.reset()

    server = fault_server_factory(early)
    with _pool(server) as pool:
        body = iter([b"x" * 65536] * 200)  # ~13 MB: the sender meets the reset
        try:
            r = pool.urlopen("POST", "/", body=body)
        except ProtocolError:
            pass  # the reset can also overtake the answer: then this is the honest error
        else:
            assert r.status == 413 and r.data == b"big"
        _settled(pool)
        assert pool.pool.idle == 0


def test_threads_against_a_misbehaving_server_leak_nothing(fault_server_factory):
    """Four threads, bounded requests, a server that answers, truncates, resets, stalls or
    sends garbage at random (seeded): every failure is a urllib3 error and, at the end, no
    slot is held and the pool still works."""
    import random
    import threading

    import urllib3

    rng = random.Random(1234)
    lock = threading.Lock()

    def chaos(conn):  # type: ignore[no-untyped-def]
        while conn.read_request() is not None:
            with lock:
                pick = rng.random()
            if pick < 0.5:
                conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            elif pick < 0.6:
                conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nok")
                return
            elif pick < 0.7:
                conn.reset()
                return
            elif pick < 0.8:
                conn.send(b"HTTP/1.1 2x0 what\r\n\r\n")
                return
            elif pick < 0.9:
                conn.stall(0.3)
                return
            else:
                return  # FIN without an answer

    server = fault_server_factory(chaos)
    pool = HTTPConnectionPool(server.host, server.port, maxsize=2, retries=False, timeout=0.2)
    outcomes: list[str] = []
    unexpected: list[BaseException] = []

    def work() -> None:
        for i in range(40):
            try:
                r = pool.request("GET", "/", preload_content=i % 3 != 0)
                if i % 3 == 0:
                    r.read(1)
                    r.release_conn()
                outcomes.append("ok")
            except urllib3.exceptions.HTTPError as e:
                outcomes.append(type(e).__name__)
            except BaseException as e:  # noqa: BLE001 - reported below
                unexpected.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not unexpected, unexpected[:1]
    assert len(outcomes) == 160 and "ok" in outcomes and len(set(outcomes)) > 2
    _settled(pool)
    pool.close()
