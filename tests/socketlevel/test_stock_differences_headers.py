"""A deliberate difference from stock urllib3 and requests in response header values, pinned
side by side: the same bytes go to stock and to fastpool, and both outcomes are asserted, so
that a test fails if either side changes. Listed in ``docs/differences.md``:

- whitespace around a header value is not part of it (RFC 9110 5.5: OWS around a field value
  is excluded from it; RFC 9112 5: a parser excludes it): fastpool keeps ``v`` for
  ``X-A: v  ``, and a repeated header's values are joined without it; http.client, under
  urllib3 and requests, keeps the trailing whitespace.

Real sockets on loopback only.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import urllib3

import fastpool

HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"X-A: v  \r\n"
    b"X-B: \t w\t\r\n"
    b"X-R: a \r\n"
    b"X-R: b\r\n"
    b"Content-Length: 2\r\n"
    b"Connection: close\r\n\r\nok"
)


@pytest.fixture
def url() -> Iterator[str]:
    """A server that answers each connection's request with ``HEAD``, then closes it."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)

    def serve() -> None:
        for _ in range(4):  # one connection for each client below
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(HEAD)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/"
    server.close()
    thread.join(5)


def _values(headers: Any) -> list[str]:
    return [headers["X-A"], headers["X-B"], headers["X-R"]]


def test_unlike_stock_whitespace_around_a_header_value_is_not_part_of_it(url: str) -> None:
    with urllib3.PoolManager() as stock:
        stock_u3 = _values(stock.request("GET", url, retries=False).headers)
    with requests.Session() as session:
        stock_requests = _values(session.get(url, timeout=5).headers)
    with fastpool.PoolManager() as manager:
        ours_u3 = _values(manager.request("GET", url, retries=False).headers)
    with fastpool.Session() as session:
        ours_requests = _values(session.get(url, timeout=5).headers)
    assert stock_u3 == stock_requests == ["v  ", "w\t", "a , b"]
    assert ours_u3 == ours_requests == ["v", "w", "a, b"]
