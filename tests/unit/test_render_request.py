"""``HTTPConnection.render_request``: the bytes ``request`` would write, for the map's loop.

Requests with no body are rendered once per (method, Host, User-Agent) and kept as a
template the target goes into; with headers of their own (a requests ``CaseInsensitiveDict``)
the connection keeps the head of its last such request, keyed by their pairs too. Every
rendering must still be the bytes ``request()`` writes on a real socket, whatever was
rendered before.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from request_headers import REQUESTS_HEADERS, session_headers
from urllib3.util import SKIP_HEADER

import fastpool.adapters  # noqa: F401 - registers CaseInsensitiveDict in PAIR_STORE_TYPES
from fastpool import connection
from fastpool.connection import HTTPConnection, HTTPSConnection


def written(conn: HTTPConnection, *args: Any, **kwargs: Any) -> bytes:
    """What ``conn.request(*args, **kwargs)`` writes on a socket."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        conn.sock = ours
        try:
            conn.request(*args, **kwargs)
        finally:
            conn.sock = None
        theirs.settimeout(2)
        ours.shutdown(socket.SHUT_WR)
        data = b""
        while piece := theirs.recv(65536):
            data += piece
        return data


CASES = [
    (HTTPConnection, "127.0.0.2", 8080, ("GET", "/a"), {}),
    (HTTPConnection, "127.0.0.2", 8080, ("GET", "/b"), {}),  # another target
    (HTTPConnection, "127.0.0.3", 8080, ("GET", "/a"), {}),  # another host
    (HTTPConnection, "127.0.0.2", 80, ("GET", "/a"), {}),  # the default port: no :80
    (HTTPSConnection, "127.0.0.2", 443, ("GET", "/a"), {}),
    (HTTPConnection, "127.0.0.2", 8080, ("HEAD", "/a"), {}),
    (HTTPConnection, "127.0.0.2", 8080, ("POST", "/a"), {}),  # Content-Length: 0
    (HTTPConnection, "127.0.0.2", 8080, ("GET", "/a", None, {"X-A": "1"}), {}),  # headers
    (HTTPConnection, "127.0.0.2", 8080, ("PUT", "/a", b"body"), {}),  # a body
    (HTTPConnection, "127.0.0.2", 8080, ("POST", "/a"), {"chunked": True}),
    (HTTPConnection, "::1", 8080, ("GET", "/a"), {}),  # Host: [::1]:8080
]


@pytest.mark.parametrize("rounds", [1, 3])
def test_rendered_bytes_are_the_written_bytes(rounds: int) -> None:
    connection.RENDERED.clear()
    for _ in range(rounds):  # kept renderings, then again from them
        for cls, host, port, args, kwargs in CASES:
            conn = cls(host, port)
            expected = written(conn, *args, **kwargs)
            assert conn.render_request(*args, **kwargs) == expected, (host, port, args)
    # only the ones with no body nor headers of their own were kept, one for both targets
    assert len(connection.RENDERED) == 6


def test_a_tunnel_changes_the_host_of_a_kept_rendering() -> None:
    connection.RENDERED.clear()
    conn = HTTPConnection("proxy.invalid", 3128)
    plain = conn.render_request("GET", "/a")
    conn.set_tunnel("origin.invalid", 8443)
    tunnelled = conn.render_request("GET", "/a")
    assert b"Host: proxy.invalid:3128\r\n" in plain
    assert b"Host: origin.invalid:8443\r\n" in tunnelled


def test_a_refused_request_is_not_kept() -> None:
    connection.RENDERED.clear()
    conn = HTTPConnection("127.0.0.2", 8080)
    for _ in range(2):
        with pytest.raises(ValueError):
            conn.render_request("GET", "/a b")  # a space in the target
        with pytest.raises(ValueError):
            conn.render_request("GE T", "/a")  # and in the method
    assert connection.RENDERED == {}
    conn.render_request("GET", "/a")
    for target in ("/a b", "/a\r\nX: 1", "/ü"):  # refused still, with a template kept
        with pytest.raises(ValueError):
            conn.render_request("GET", target)


def test_the_kept_renderings_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    connection.RENDERED.clear()
    monkeypatch.setattr(connection, "_RENDERED_SIZE", 8)
    for n in range(50):
        conn = HTTPConnection("127.0.0.2", 8000 + n)  # a Host value of its own
        assert conn.render_request("GET", f"/{n}").startswith(f"GET /{n} HTTP/1.1\r\n".encode())
        assert 1 <= len(connection.RENDERED) <= 8


def outcome(call: Any, *args: Any) -> Any:
    """``call(*args)``'s bytes, or its error's type and text."""
    try:
        return call(*args)
    except Exception as e:  # noqa: BLE001 - compared as the outcome
        return type(e), str(e)


def test_requests_headers_are_kept_with_their_pairs() -> None:
    connection.RENDERED.clear()
    conn = HTTPConnection("127.0.0.2", 8080)
    for target in ("/a", "/b?q=1", "/a"):
        headers = session_headers(*REQUESTS_HEADERS)
        assert conn.render_request("GET", target, None, headers) == written(
            conn, "GET", target, None, headers
        )
    assert conn._kept_head is not None  # the connection's own, for the three targets
    assert connection.RENDERED == {}  # nothing of the headers in the process-wide table
    # another value, order, or Host: the kept head is replaced, never met by the wrong key
    variants = [
        session_headers(*REQUESTS_HEADERS[:3], ("Connection", "close")),
        session_headers(*reversed(REQUESTS_HEADERS)),
        session_headers(*REQUESTS_HEADERS, ("Host", "other.invalid")),
        session_headers(*REQUESTS_HEADERS, ("Content-Length", "0")),
        session_headers(*REQUESTS_HEADERS),
    ]
    for headers in variants * 2 + [h for h in variants for _ in range(2)]:
        assert conn.render_request("GET", "/c", None, headers) == written(
            conn, "GET", "/c", None, headers
        )
    # an empty CaseInsensitiveDict is no headers at all
    assert conn.render_request("GET", "/d", None, session_headers()) == written(conn, "GET", "/d")
    assert len(connection.RENDERED) == 1
    # another connection keeps its own
    assert HTTPConnection("127.0.0.2", 8080)._kept_head is None


class _Lower(str):
    """A header name equal to an exact str (same hash), but request() asks its own lower():
    an equal key must not meet the head kept for the exact str."""

    def lower(self) -> str:
        return "user-agent"  # as if the caller gave User-Agent: the default one is left out

    __hash__ = str.__hash__


@pytest.mark.parametrize(
    "odd",
    [
        b"bytes",  # bytes are written as they are
        ["not", "hashable"],  # request() judges it, each time
        "a\r\nX-Injected: 1",  # refused each time
        SKIP_HEADER,  # on a name it may not skip: refused
    ],
)
def test_only_exact_str_pairs_are_kept(odd: Any) -> None:
    conn = HTTPConnection("127.0.0.2", 8080)
    for _ in range(2):
        headers = session_headers(*REQUESTS_HEADERS, ("X-Odd", odd))
        assert outcome(conn.render_request, "GET", "/a", None, headers) == outcome(
            written, conn, "GET", "/a", None, headers
        )
    if not isinstance(odd, str) or "\n" in odd or odd == SKIP_HEADER:
        assert conn._kept_head is None


def test_an_equal_str_subclass_does_not_meet_a_kept_head() -> None:
    conn = HTTPConnection("127.0.0.2", 8080)
    exact = session_headers(("X-A", "1"))
    assert conn.render_request("GET", "/a", None, exact) == written(conn, "GET", "/a", None, exact)
    assert conn._kept_head is not None
    odd = session_headers((_Lower("X-A"), "1"))
    assert tuple(odd._store.values()) == tuple(exact._store.values())  # an equal key
    assert conn.render_request("GET", "/a", None, odd) == written(conn, "GET", "/a", None, odd)
    assert b"User-Agent" not in written(conn, "GET", "/a", None, odd)  # other bytes indeed


NAMES = st.sampled_from(
    ["Host", "User-Agent", "Accept-Encoding", "Content-Length", "Transfer-Encoding", "X-A",
     "x-a", "Bad Name", "", "Cookie"]
)  # fmt: skip
VALUES = st.one_of(
    st.sampled_from(["1", "", " x ", "chunked", "identity", SKIP_HEADER, "a\nb"]),
    st.binary(max_size=4),
    st.text("aZ \t:\x7fü", max_size=4),
)


@settings(max_examples=300, deadline=None)
@given(
    header_sets=st.lists(st.lists(st.tuples(NAMES, VALUES), max_size=5), min_size=1, max_size=3),
    method=st.sampled_from(["GET", "POST", "HEAD"]),
    targets=st.lists(st.sampled_from(["/a", "/b?c", "/ü", "/a b", "/x/../y"]), min_size=2),
)
def test_rendered_with_headers_is_written(header_sets: Any, method: str, targets: Any) -> None:
    conn = HTTPConnection("127.0.0.2", 8080)
    # the first fills the kept head, the next are made from it, or replace it (the header
    # sets taking turns on one connection)
    for n, target in enumerate(targets * 2):
        pairs = header_sets[n % len(header_sets)]
        headers = session_headers(*pairs)
        assert outcome(conn.render_request, method, target, None, headers) == outcome(
            written, conn, method, target, None, headers
        ), (pairs, target)
