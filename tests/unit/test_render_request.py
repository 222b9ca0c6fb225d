"""``HTTPConnection.render_request``: the bytes ``request`` would write, for the map's loop.

Requests with no body nor headers of their own are rendered once per (method, Host,
User-Agent) and kept as a template the target goes into; every rendering must still be the
bytes ``request()`` writes on a real socket, whatever was rendered before.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

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
