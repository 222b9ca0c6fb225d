"""The multiplexed loop's shortcut past the stdlib's ``ssl.SSLSocket`` (``fastpool.tls.stock_tls``).

For a socket that is exactly ``ssl.SSLSocket`` with ``recv_into``, ``read``, ``send``,
``pending`` and ``_checkClosed`` unpatched, the loop (both twins) and the compiled lane's
liveness and check-in steps call its ``_sslobj``'s ``read``, ``write`` and ``pending`` directly
(``has_buffered_bytes`` asks the socket). This file pins:

- a patch of any of those five methods puts the loop back on the socket's methods: the patch
  sees every request and every answer of a ``map`` (never a silent bypass);
- with nothing patched the shortcut is taken (no Python frame of those methods runs in the map's
  thread), ``stock_tls`` answers only for the stdlib's own live socket, and a map over HTTPS ends
  as ``urllib3.PoolManager`` does;
- a TLS EOF without close_notify (a "ragged" EOF) ends a read-to-close body, or is the error of
  an unanswered request, as the socket's own ``read`` makes it (``suppress_ragged_eofs``), with
  the errors of fastpool's one-request path and of urllib3;
- bytes decrypted past an answer (``pending()``) keep its connection from being reused.

Real TLS servers on 127.0.0.1 (``tests/dummyserver``, the trusted trustme CA of ``ca_bundle``);
every read has a timeout and every server thread is joined by its fixture.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import ssl
import sys
import threading
from collections.abc import Callable
from http.client import RemoteDisconnected
from typing import Any

import pytest
import urllib3
from dummyserver import AppServer, FaultServer, close_after, pattern_bytes
from dummyserver.server import Conn

import fastpool
import fastpool.tls
from fastpool.tls import STOCK_TLS_METHODS, has_buffered_bytes, stock_tls

pytestmark = [pytest.mark.usefixtures("clean_environment")]

Factory = Callable[..., FaultServer]
T = 3.0  # the timeout of every request here
N = 20  # requests of a map


def sizes() -> list[int]:
    """The body sizes of the N requests (distinct paths, one TLS record each)."""
    return [i * 37 for i in range(N)]


def _on_stack(code: Any) -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code is code:
            return True
        frame = frame.f_back
    return False


class Spy:
    """Wraps ``ssl.SSLSocket.<name>`` (for this test) and records the calls this thread makes
    on client sockets, leaving out those under ``has_buffered_bytes`` (the pool's check at
    checkin, not the loop): the count, the bytes sent (``send``) and the bytes read into a
    buffer (``recv_into``, ``read``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        self.name = name
        self.calls = 0
        self.sent: list[bytes] = []
        self.received = bytearray()
        original = getattr(ssl.SSLSocket, name)
        thread = threading.get_ident()
        checkin = has_buffered_bytes.__code__

        def spy(sock: Any, *args: Any, **kwargs: Any) -> Any:
            # the test servers run in other threads; they use these methods too
            mine = threading.get_ident() == thread and not sock.server_side
            if mine and not _on_stack(checkin):
                self.calls += 1
            else:
                mine = False
            result = original(sock, *args, **kwargs)
            if mine and name == "send":
                self.sent.append(bytes(memoryview(args[0])[:result]))
            elif mine and name == "recv_into":
                self.received += args[0][:result]
            elif mine and name == "read" and len(args) > 1 and args[1] is not None:
                self.received += args[1][:result]
            return result

        monkeypatch.setattr(ssl.SSLSocket, name, spy)


def check_results(results: list[Any], light: bool) -> None:
    """Every result of a map over :func:`sizes` is a 200 with its own body."""
    assert len(results) == N
    for r in results:
        assert r.error is None, r.error
        assert r.response.status == 200
        if light:
            assert type(r.response) is fastpool.LightResponse
        n = int(r.request.rsplit("/", 1)[1])
        assert r.response.data == pattern_bytes(n), r.request


# --- 1. a patch sees every call ----------------------------------------------------------------
@pytest.mark.parametrize("light", [True, False])
@pytest.mark.parametrize("name", STOCK_TLS_METHODS)
def test_a_patched_method_sees_every_request_of_a_map(
    https_server: AppServer,
    ca_bundle: str,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    light: bool,
) -> None:
    """A patch of any one of the five methods makes the loop call the socket's methods: a
    spy on ``send`` sees every request line, one on ``recv_into`` or ``read`` every answer's
    status line, one on ``pending`` or ``_checkClosed`` at least a call per request."""
    spy = Spy(monkeypatch, name)
    urls = [f"{https_server.url}/bytes/{n}" for n in sizes()]
    with fastpool.PoolManager(ca_certs=ca_bundle, timeout=T) as m:
        results = list(m.map(urls, concurrency=4, light=light))
    check_results(results, light)
    assert spy.calls >= N, spy.calls
    if name == "send":
        # each request (small) leaves in one send
        lines = re.findall(rb"GET (\S+) HTTP/1\.1\r\n", b"".join(spy.sent))
        assert sorted(lines) == sorted(f"/bytes/{n}".encode() for n in sizes())
    if name in ("recv_into", "read"):
        # the first TLS record of each answer starts with its head
        assert spy.received.count(b"HTTP/1.1 200 OK\r\n") == N


def test_a_patched_recv_into_sees_every_answer_of_a_session_map(
    https_server: AppServer, ca_bundle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same through ``Session.map`` (requests' adapter on the same loop)."""
    spy = Spy(monkeypatch, "recv_into")
    urls = [f"{https_server.url}/bytes/{n}" for n in sizes()]
    with fastpool.Session() as session:
        session.verify = ca_bundle
        results = list(session.map(urls, concurrency=4, timeout=T))
    assert len(results) == N
    for r in results:
        assert r.error is None, r.error
        assert r.response.status_code == 200
        assert r.response.content == pattern_bytes(int(r.request.rsplit("/", 1)[1]))
    assert spy.received.count(b"HTTP/1.1 200 OK\r\n") == N


# --- 2. nothing patched: the shortcut, and where it applies ------------------------------------
@pytest.mark.parametrize("light", [True, False])
def test_unpatched_the_loop_runs_no_python_frame_of_the_socket(
    https_server: AppServer, ca_bundle: str, light: bool
) -> None:
    """With nothing patched the shortcut is really taken: while a map runs, no Python frame of
    ``SSLSocket``'s ``recv_into``/``read``/``send`` (nor ``recv``/``sendall``) runs in this
    thread (``sys.setprofile`` sees this thread only, so the servers' calls do not count).
    (``pending`` may: ``has_buffered_bytes`` asks the socket itself, at the pool's liveness
    and check-in steps.)"""
    watched = {"recv_into", "read", "send", "recv", "sendall"}
    seen: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        code = frame.f_code
        if event == "call" and code.co_filename == ssl.__file__ and code.co_name in watched:
            seen.append(code.co_name)

    urls = [f"{https_server.url}/bytes/{n}" for n in sizes()]
    with fastpool.PoolManager(ca_certs=ca_bundle, timeout=T) as m:
        sys.setprofile(profile)
        try:
            results = list(m.map(urls, concurrency=4, light=light))
        finally:
            sys.setprofile(None)
    check_results(results, light)
    assert seen == []


def _compiled_stock_tls() -> Callable[[Any], Any]:
    """The compiled loop's copy of the check (``_lane_c`` asks it), where it is built."""
    compiled = pytest.importorskip("fastpool._loop_c", reason="the compiled loop is not built")
    return compiled.stock_tls  # type: ignore[no-any-return]


@pytest.mark.parametrize("which", ["tls", "compiled"])
@pytest.mark.parametrize("dial", ["map", "request"])
def test_stock_tls_only_for_the_stdlib_socket_unpatched(
    https_server: AppServer,
    ca_bundle: str,
    monkeypatch: pytest.MonkeyPatch,
    dial: str,
    which: str,
) -> None:
    """``stock_tls`` (``fastpool.tls``'s, and the compiled loop's copy) gives the ``_sslobj``
    of a live pooled connection's socket (dialed by the loop or by the one-request path), and
    None for a plain socket, for a subclass of ``SSLSocket``, for a closed one, and while any
    of the five methods is patched on the class or on the socket."""
    stock_tls = fastpool.tls.stock_tls if which == "tls" else _compiled_stock_tls()
    url = https_server.url + "/bytes/3"
    with fastpool.PoolManager(ca_certs=ca_bundle, timeout=T) as m:
        if dial == "map":
            (r,) = m.map([url], light=True)
            assert r.error is None, r.error
        else:
            assert m.request("GET", url).data == pattern_bytes(3)
        pool = m.connection_from_url(url)
        assert pool.num_connections == 1
        conn = pool._get_conn()
        try:
            sock = conn.sock
            assert type(sock) is ssl.SSLSocket
            assert sock._sslobj is not None
            assert stock_tls(sock) is sock._sslobj
            for name in STOCK_TLS_METHODS:
                with monkeypatch.context() as patch:
                    original = getattr(ssl.SSLSocket, name)
                    patch.setattr(ssl.SSLSocket, name, lambda *a, _o=original, **k: _o(*a, **k))
                    assert stock_tls(sock) is None, name
                assert stock_tls(sock) is sock._sslobj, name  # undone: the shortcut again
                # (by hand: an older pytest's undo sets the bound method on the socket again)
                setattr(sock, name, getattr(sock, name))
                try:
                    assert stock_tls(sock) is None, f"{name} on the socket"
                finally:
                    delattr(sock, name)
                assert stock_tls(sock) is sock._sslobj, name
        finally:
            pool._put_conn(conn)

    with socket.socket() as plain:
        assert stock_tls(plain) is None

    class Sub(ssl.SSLSocket):
        pass

    context = ssl.create_default_context(cafile=ca_bundle)
    context.sslsocket_class = Sub
    raw = socket.create_connection(("127.0.0.1", https_server.port), timeout=T)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as sub:
        assert type(sub) is Sub and sub._sslobj is not None
        assert stock_tls(sub) is None

    context = ssl.create_default_context(cafile=ca_bundle)
    raw = socket.create_connection(("127.0.0.1", https_server.port), timeout=T)
    own = context.wrap_socket(raw, server_hostname="127.0.0.1")
    assert stock_tls(own) is own._sslobj
    own.close()
    assert stock_tls(own) is None


@pytest.mark.parametrize("light", [True, False])
def test_a_method_patched_on_one_socket_sees_its_reads(
    https_server: AppServer, ca_bundle: str, light: bool
) -> None:
    """A ``recv_into`` patched on one pooled socket (an instance attribute, not the class's)
    sees the loop's reads of the next map on that connection."""
    url = https_server.url + "/bytes/3"
    with fastpool.PoolManager(ca_certs=ca_bundle, maxsize=1, timeout=T) as m:
        assert m.request("GET", url).data == pattern_bytes(3)
        pool = m.connection_from_url(url)
        conn = pool._get_conn()
        sock = conn.sock
        calls: list[Any] = []
        original = sock.recv_into

        def spy(*args: Any) -> Any:
            calls.append(args)
            return original(*args)

        sock.recv_into = spy
        pool._put_conn(conn)
        (r,) = m.map([url], light=light)
        assert r.error is None, r.error
        assert r.response.data == pattern_bytes(3)
        assert pool.num_connections == 1  # the map's request went on that socket
    assert calls


def summary(response: Any) -> tuple[Any, ...]:
    """Status, body (``/echo``'s without its connection number, which differs between
    clients) and header names."""
    body = response.data
    with contextlib.suppress(ValueError):
        data = json.loads(body)
        if isinstance(data, dict) and "connection" in data:
            data.pop("connection")
            body = json.dumps(data, sort_keys=True).encode()
    names = sorted({name.lower() for name in response.headers})
    return response.status, body, names


@pytest.mark.parametrize("light", [True, False])
def test_map_over_https_ends_as_urllib3(
    https_server: AppServer, ca_bundle: str, light: bool
) -> None:
    """Differential: with the shortcut in effect, each answer of a map (lengths, chunks, a
    body to the close, many records, empty bodies, redirects, gzip) has urllib3's status,
    body and header names, from the same server."""
    base = https_server.url
    paths = [
        "/bytes/0",
        "/bytes/1",
        "/bytes/200000",  # many TLS records, many reads
        "/chunked/5000?chunk=700",
        "/no-length?n=70000",  # read to the close (a FIN without close_notify)
        "/stream/5",
        "/headers",
        "/gzip",
        "/status/204",
        "/status/304",
        "/status/404",
        "/redirect/2",
    ]
    urls = [base + p for p in paths] * 2
    with urllib3.PoolManager(ca_certs=ca_bundle, timeout=T) as stock:
        want = {u: summary(stock.request("GET", u)) for u in set(urls)}
    with fastpool.PoolManager(ca_certs=ca_bundle, timeout=T) as m:
        results = list(m.map(urls, concurrency=4, light=light))
    assert len(results) == len(urls)
    for r in results:
        assert r.error is None, (r.request, r.error)
        assert summary(r.response) == want[r.request], r.request


# --- 3. ragged EOF -----------------------------------------------------------------------------
BODY = pattern_bytes(100_000)  # over six TLS records
CLOSE_HEAD = b"HTTP/1.1 200 OK\r\nX-Framing: close\r\n\r\n"  # no length, not chunked


def answer_to_close(conn: Conn) -> None:
    """One request, an answer framed by the close; then the handler returns and the server
    closes the TCP connection without close_notify (``Conn.close``: ``shutdown`` of an
    ``SSLSocket`` drops its TLS object first, and the stdlib sends close_notify only in
    ``unwrap``): a ragged EOF."""
    if conn.read_request() is not None:
        conn.send(CLOSE_HEAD + BODY)


def no_answer(conn: Conn) -> None:
    """One request, then the close without close_notify and without an answer byte."""
    conn.read_request()


Read = Callable[[ssl.SSLSocket, memoryview], int]


def socket_read(sock: ssl.SSLSocket, view: memoryview) -> int:
    return sock.recv_into(view, len(view))


def raw_exchange(
    server: FaultServer, ca_bundle: str, suppress: bool = False, read: Read = socket_read
) -> tuple[bytes, BaseException | None]:
    """A GET by a bare ``ssl`` client (``suppress_ragged_eofs=suppress``) that reads with
    ``read(sock, view)``: what it read before the end, and how the stream ended (None: a read
    of 0 bytes, else the error)."""
    context = ssl.create_default_context(cafile=ca_bundle)
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=T)
    got = bytearray()
    view = memoryview(bytearray(65536))
    with context.wrap_socket(
        raw, server_hostname="127.0.0.1", suppress_ragged_eofs=suppress
    ) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        try:
            while len(got) < 10 * len(BODY):  # bounded: the answer is smaller
                n = read(sock, view)
                if not n:
                    return bytes(got), None
                got += view[:n]
        except ssl.SSLError as e:
            return bytes(got), e
    raise AssertionError("the server sent more than it should")


#: Pythons whose default TLS contexts set OP_IGNORE_UNEXPECTED_EOF (3.9's builds with OpenSSL 3)
#: read a ragged EOF as a clean close: no SSLEOFError to read as an end, or to raise
_RAGGED_IS_CLEAN = bool(
    ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).options & getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
)
needs_ragged_eof = pytest.mark.skipif(
    _RAGGED_IS_CLEAN, reason="this ssl module reads a TLS end without close_notify as clean"
)


@needs_ragged_eof
def test_the_servers_really_end_without_close_notify(
    fault_server_factory: Factory, ca_bundle: str
) -> None:
    """The premise of the ragged-EOF tests: a strict client meets ``SSLEOFError`` (the
    ``SSL_ERROR_EOF`` the loop reads as an end) after the whole answer, or before any byte."""
    got, end = raw_exchange(fault_server_factory(answer_to_close, tls=True), ca_bundle)
    assert got == CLOSE_HEAD + BODY
    assert isinstance(end, ssl.SSLEOFError) and end.args[0] == ssl.SSL_ERROR_EOF
    got, end = raw_exchange(fault_server_factory(no_answer, tls=True), ca_bundle)
    assert got == b""
    assert isinstance(end, ssl.SSLEOFError) and end.args[0] == ssl.SSL_ERROR_EOF


@needs_ragged_eof
@pytest.mark.parametrize("suppress", [True, False])
def test_tls_recv_into_ends_as_the_sockets_recv_into(
    fault_server_factory: Factory, ca_bundle: str, suppress: bool
) -> None:
    """``fastpool.tls.tls_recv_into`` (the pure twin's read) against ``SSLSocket.recv_into``,
    on two connections to one ragged-EOF server: the same bytes, then the same end: 0 with
    ``suppress_ragged_eofs``, else ``SSLEOFError``. (The map cannot show the difference: after
    the loop's end of stream the blocking code reads the socket once more and meets the same
    ``SSLEOFError`` itself.)"""

    def shortcut(sock: ssl.SSLSocket, view: memoryview) -> int:
        tls = stock_tls(sock)
        assert tls is not None
        return fastpool.tls.tls_recv_into(tls, sock, view, len(view))

    server = fault_server_factory(answer_to_close, tls=True)
    want, want_end = raw_exchange(server, ca_bundle, suppress)
    got, got_end = raw_exchange(server, ca_bundle, suppress, shortcut)
    assert got == want == CLOSE_HEAD + BODY
    assert type(got_end) is type(want_end) is (type(None) if suppress else ssl.SSLEOFError)


@pytest.mark.parametrize("light", [True, False])
def test_a_body_to_a_ragged_eof_is_whole(
    fault_server_factory: Factory, ca_bundle: str, light: bool
) -> None:
    """A body read to the close, ended by a ragged EOF: the map gives it whole, as urllib3
    and fastpool's one-request path do against the same server."""
    server = fault_server_factory(answer_to_close, tls=True)
    url = server.url + "/"
    with urllib3.PoolManager(ca_certs=ca_bundle, timeout=T) as stock:
        want = stock.request("GET", url)
    with fastpool.PoolManager(ca_certs=ca_bundle, timeout=T) as m:
        plain = m.request("GET", url)
        (r,) = m.map([url], light=light)
    assert r.error is None, r.error
    assert (want.status, want.data) == (200, BODY)
    assert summary(r.response) == summary(want) == summary(plain)


def error_chain(error: BaseException | None) -> list[type]:
    """The classes of an error and of its reasons (MaxRetryError's ``reason``, then
    ProtocolError's second argument)."""
    chain: list[type] = []
    while error is not None and len(chain) < 5:
        chain.append(type(error))
        if isinstance(error, urllib3.exceptions.MaxRetryError):
            error = error.reason
        elif len(getattr(error, "args", ())) > 1 and isinstance(error.args[1], BaseException):
            error = error.args[1]
        else:
            error = None
    return chain


def outcome(make: Callable[[], Any], url: str, **kw: Any) -> BaseException | None:
    with make() as m:
        try:
            m.request("GET", url, **kw)
        except Exception as e:  # noqa: BLE001 - the outcome compared
            return e
    return None


@pytest.mark.parametrize("retries", [None, False])
@pytest.mark.parametrize("light", [True, False])
def test_no_answer_then_a_ragged_eof_is_urllib3s_error(
    fault_server_factory: Factory, ca_bundle: str, light: bool, retries: Any
) -> None:
    """A new connection closed without close_notify before any answer byte: the map's error
    is that of urllib3 and of fastpool's one-request path (``RemoteDisconnected`` under
    ``ProtocolError``, under ``MaxRetryError`` after the retries), not an ``SSLError``."""
    server = fault_server_factory(no_answer, tls=True)
    url = server.url + "/"
    kw = {} if retries is None else {"retries": retries}
    stock = outcome(lambda: urllib3.PoolManager(ca_certs=ca_bundle, timeout=T), url, **kw)
    plain = outcome(lambda: fastpool.PoolManager(ca_certs=ca_bundle, timeout=T), url, **kw)
    server.reset_counts()
    with fastpool.PoolManager(ca_certs=ca_bundle, timeout=T) as m:
        (r,) = m.map([("GET", url, kw)], light=light)
    assert r.response is None
    chain = error_chain(r.error)
    assert chain == error_chain(plain)
    # fastpool raises subclasses of urllib3's exceptions
    assert len(chain) == len(error_chain(stock)) == (2 if retries is False else 3), chain
    assert all(issubclass(a, b) for a, b in zip(chain, error_chain(stock))), chain
    assert chain[-1] is RemoteDisconnected
    assert server.requests == server.connections == (1 if retries is False else 4)


@pytest.mark.parametrize("light", [True, False])
def test_a_reused_connection_ended_without_close_notify_is_replayed(
    fault_server_factory: Factory, ca_bundle: str, light: bool
) -> None:
    """A kept-alive connection the server ends without close_notify when the next request
    arrives (no answer byte): the map replays that request once on a new connection (not a
    Retry step: ``retries=False``), as fastpool's one-request path does."""
    server = fault_server_factory(close_after(1, b"one", how="wait"), tls=True)
    kw = {"retries": False}
    with fastpool.PoolManager(ca_certs=ca_bundle, timeout=T) as m:
        got = []
        for path in ("/a", "/b"):
            (r,) = m.map([("GET", server.url + path, kw)], light=light)
            assert r.error is None, r.error
            got.append(r.response.data)
    assert got == [b"one", b"one"]
    assert server.connections == 2
    server.reset_counts()
    with fastpool.PoolManager(ca_certs=ca_bundle, timeout=T) as m:
        assert [m.request("GET", server.url + p, **kw).data for p in ("/a", "/b")] == got
    assert server.connections == 2


class StrictEOFContext(ssl.SSLContext):
    """A client context whose sockets have ``suppress_ragged_eofs=False``."""

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs["suppress_ragged_eofs"] = False
        return super().wrap_socket(sock, *args, **kwargs)


@needs_ragged_eof
@pytest.mark.parametrize("light", [True, False])
def test_a_ragged_eof_is_an_error_without_suppress_ragged_eofs(
    fault_server_factory: Factory, ca_bundle: str, light: bool
) -> None:
    """A socket with ``suppress_ragged_eofs=False`` (its context's): a ragged EOF ending a
    body is not its end but an error, the one of fastpool's one-request path (``ProtocolError``
    over ``SSLEOFError``), not a whole body. (urllib3 wraps the same ``SSLEOFError`` in its
    ``SSLError`` instead: not compared.)"""

    def strict() -> ssl.SSLContext:
        context = StrictEOFContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(ca_bundle)
        return context

    server = fault_server_factory(answer_to_close, tls=True)
    url = server.url + "/"
    kw = {"retries": False}
    with fastpool.PoolManager(ssl_context=strict(), timeout=T) as m:
        (r,) = m.map([("GET", url, kw)], light=light)
    plain = outcome(lambda: fastpool.PoolManager(ssl_context=strict(), timeout=T), url, **kw)
    assert r.response is None
    assert error_chain(r.error) == error_chain(plain)
    chain = error_chain(r.error)
    assert len(chain) == 2 and issubclass(chain[0], urllib3.exceptions.ProtocolError), chain
    assert chain[1] is ssl.SSLEOFError


# --- 4. bytes past the answer in the TLS buffer ------------------------------------------------
def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)


def keep_answering(answer: Callable[[Conn], None]) -> Callable[[Conn], None]:
    """A keep-alive handler calling ``answer(conn)`` for each request until the client
    closes (or 3 s of silence)."""

    def handler(conn: Conn) -> None:
        conn.sock.settimeout(3)
        while conn.read_request() is not None:
            answer(conn)

    return handler


@pytest.mark.parametrize("light", [True, False])
def test_an_answer_with_a_second_in_its_record_is_not_reused(
    fault_server_factory: Factory, ca_bundle: str, light: bool
) -> None:
    """The answer and an unasked one in the same TLS write (one record, all of it read by
    the loop): the connection is not reused, and nobody takes the second as an answer."""
    server = fault_server_factory(
        keep_answering(lambda conn: conn.send(ok(b"one") + ok(b"evil"))), tls=True
    )
    with fastpool.PoolManager(ca_certs=ca_bundle, timeout=T) as m:
        got = []
        for path in ("/a", "/b", "/c"):
            (r,) = m.map([server.url + path], light=light)
            assert r.error is None, r.error
            got.append(r.response.data)
        assert m.connection_from_url(server.url).num_connections == 3
    assert got == [b"one"] * 3
    assert server.connections == 3


@pytest.mark.parametrize("shortcut", [True, False])
def test_bytes_pending_in_tls_after_the_answer_end_its_connection(
    fault_server_factory: Factory,
    ca_bundle: str,
    monkeypatch: pytest.MonkeyPatch,
    shortcut: bool,
) -> None:
    """A streamed answer (``preload_content=False``: the loop reads its head, the response
    its body of Content-Length bytes) whose body record also holds an unasked answer: those
    bytes wait in the TLS object, ``pending() > 0``, and the connection is closed at release,
    not reused. The same with the shortcut (``stock_tls``) as with the socket's own
    ``pending`` (patched by a pass-through: the way before the shortcut)."""
    if not shortcut:
        original = ssl.SSLSocket.pending
        monkeypatch.setattr(ssl.SSLSocket, "pending", lambda sock: original(sock))

    def answer(conn: Conn) -> None:
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n")  # a record of its own
        conn.send(b"one" + ok(b"evil"))  # the body and 42 unasked bytes in one record

    server = fault_server_factory(keep_answering(answer), tls=True)
    kw = {"preload_content": False}
    with fastpool.PoolManager(ca_certs=ca_bundle, timeout=T) as m:
        got = []
        for path in ("/a", "/b"):
            (r,) = m.map([("GET", server.url + path, kw)])
            assert r.error is None, r.error
            response = r.response
            sock = response.connection.sock
            assert type(sock) is ssl.SSLSocket
            assert (stock_tls(sock) is not None) is shortcut
            data = response.read(2)  # a read of 2: the rest of the record waits in TLS
            # the premise: bytes the poller cannot see (the body's last byte and the evil answer)
            assert sock.pending() == 1 + len(ok(b"evil"))
            assert has_buffered_bytes(sock)
            got.append(data + response.read())  # the body's end: the connection goes back...
            assert sock.fileno() == -1  # ...and is closed there, 42 bytes still pending
            response.release_conn()
        assert m.connection_from_url(server.url).num_connections == 2
    assert got == [b"one", b"one"]
    assert server.connections == 2


# A tool that wrapped SSLSocket's methods before fastpool was imported (functools.wraps copies
# the wrapped function's __module__ and name): fastpool must not take the wrapper for the
# stdlib's own. A fresh interpreter, since this one imported fastpool long ago.
_WRAPPED_FIRST = """
import functools, json, ssl, sys
seen = []
for name in ("send", "recv_into"):
    original = getattr(ssl.SSLSocket, name)
    def wrapper(*args, _name=name, _original=original, **kwargs):
        seen.append(_name)
        return _original(*args, **kwargs)
    setattr(ssl.SSLSocket, name, functools.wraps(original)(wrapper))
import fastpool, fastpool.tls
url, ca = sys.argv[1], sys.argv[2]
with fastpool.PoolManager(ca_certs=ca, timeout=3.0) as m:
    results = list(m.map([url] * 5, concurrency=2, light=True))
print(json.dumps({
    "stock": fastpool.tls.STOCK_TLS_STEPS is not None,
    "statuses": [r.response.status if r.error is None else repr(r.error) for r in results],
    "send": seen.count("send"),
    "recv_into": seen.count("recv_into"),
}))
"""


def test_a_wrapper_installed_before_fastpool_is_not_taken_for_the_stdlib(
    https_server: AppServer, ca_bundle: str
) -> None:
    """A ``functools.wraps`` wrapper of ``send`` and ``recv_into`` set before fastpool loads
    is not the stdlib's own method: no shortcut, and it sees every request and answer."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", _WRAPPED_FIRST, https_server.url + "/bytes/3", ca_bundle],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["stock"] is False
    assert seen["statuses"] == [200] * 5
    assert seen["send"] >= 5 and seen["recv_into"] >= 5, seen
