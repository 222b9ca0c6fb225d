"""The AppServer: a keep-alive HTTP/1.1 application server with httpbin-like routes."""

from __future__ import annotations

import base64
import gzip
import json
import ssl
import threading
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Callable
from urllib.parse import parse_qsl, urlsplit

from .server import MAX_BODY, BadMessage, Conn, Message, _Server

try:
    import brotli
except ImportError:  # pragma: no cover - optional
    brotli = None
try:
    import zstandard
except ImportError:  # pragma: no cover - optional
    zstandard = None

__all__ = ("HAS_BROTLI", "HAS_ZSTD", "AppServer", "pattern_bytes")

HAS_BROTLI = brotli is not None
HAS_ZSTD = zstandard is not None

#: /hold waits at most this long for its group (seconds).
HOLD_TIMEOUT = 5.0
#: /slow sleeps at most this long (seconds).
MAX_DELAY = 30.0


def pattern_bytes(n: int) -> bytes:
    """The ``n`` bytes ``/bytes/n``, ``/chunked/n`` and ``/no-length?n=`` send, for comparisons."""
    unit = b"abcdefghijklmnopqrstuvwxyz0123456789\n"
    return (unit * (n // len(unit) + 1))[:n]


Route = Callable[[Conn, Message], bool]


def _json(data: object) -> bytes:
    return json.dumps(data, sort_keys=True).encode()


def _int_segment(request: Message, limit: int = MAX_BODY) -> int:
    """The integer after the route name: ``/bytes/100`` -> 100."""
    text = request.path.split("/")[2] if request.path.count("/") >= 2 else ""
    if not text.isdigit() or int(text) > limit:
        raise _HTTPError(400, f"bad number {text!r} in {request.path!r}")
    return int(text)


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class AppServer(_Server):
    """A keep-alive HTTP/1.1 test application (httpbin-like), one thread per connection.

    ``AppServer(host="127.0.0.1", tls=None)``; ``tls`` is a server-side ``ssl.SSLContext``.
    Connections stay open until the client closes, asks ``Connection: close``, speaks HTTP/1.0
    without keep-alive, or a route closes them. Request bodies may be chunked; ``Expect:
    100-continue`` is answered. HEAD works on every route (same head, no body).

    Routes (unknown paths give 404; bodies of JSON routes are ``sort_keys`` JSON):

    - ``/bytes/N``: N bytes of :func:`pattern_bytes`, Content-Length.
    - ``/chunked/N[?chunk=K]``: the same bytes chunked (K bytes a chunk, default N//4 or 1),
      with the trailer ``X-Trailer: done`` announced by ``Trailer: X-Trailer``.
    - ``/stream/N``: N lines of JSON ``{"id": i, "path": ...}``, one chunk each.
    - ``/gzip``, ``/deflate`` (zlib format), ``/br``, ``/zstd``: a JSON body
      ``{"encoding": ..., "method": ...}`` encoded so, with the Content-Encoding header;
      ``/br`` and ``/zstd`` answer 501 when the library is missing.
    - ``/echo`` (any method): ``{"method", "path", "query", "headers": [[name, value], ...],
      "body": latin-1 str, "trailers": [...], "connection": n}``.
    - ``/status/N``: status N, empty body (204/304 without Content-Length).
    - ``/redirect/N[?absolute=1]``: N 302 hops (``/redirect/N-1`` ...) ending at ``/echo``.
    - ``/redirect-to?url=U&status_code=C``: a redirect (default 302) to U.
    - ``/cookies/set?a=1&b=2``: ``Set-Cookie: a=1; Path=/`` per pair, then **302 to /cookies**
      (as httpbin does, so a client following redirects shows what it stored).
    - ``/cookies``: ``{"cookies": {name: value}, "header": raw Cookie header or null}``.
    - ``/basic-auth/USER/PASS``: 200 with the right Basic credentials, else 401 with
      ``WWW-Authenticate``.
    - ``/slow?delay=S``: sleep S seconds (max 30), then 200 ``slow``.
    - ``/close``: 200 with ``Connection: close``, then closes.
    - ``/http10``: answers as ``HTTP/1.0`` without keep-alive, then closes.
    - ``/no-length[?n=N]``: 200 with no Content-Length (N bytes, default 100), body ended by close.
    - ``/hold?key=K&n=N``: blocks until N requests with key K have arrived (at most 5 s), then
      ``{"key", "arrived", "released"}``; use a fresh key per scenario.
    - ``/headers``: response headers incl. duplicates (``X-Dup: a``, ``X-Dup: b``, two
      ``Set-Cookie``, an empty ``X-Empty``); body JSON of the request headers.
    - ``/response-headers?Name=value&...``: those response headers (repeats kept).
    """

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        super().__init__(host, tls)
        self._hold_counts: defaultdict[str, int] = defaultdict(int)
        self._hold_cond = threading.Condition()
        self._routes: dict[str, Route] = {
            "bytes": self._bytes,
            "chunked": self._chunked,
            "stream": self._stream,
            "gzip": self._encoded,
            "deflate": self._encoded,
            "br": self._encoded,
            "zstd": self._encoded,
            "echo": self._echo,
            "status": self._status,
            "redirect": self._redirect,
            "redirect-to": self._redirect_to,
            "cookies": self._cookies,
            "basic-auth": self._basic_auth,
            "slow": self._slow,
            "close": self._close,
            "http10": self._http10,
            "no-length": self._no_length,
            "hold": self._hold,
            "headers": self._headers,
            "response-headers": self._response_headers,
        }

    def _on_stop(self) -> None:
        with self._hold_cond:
            self._hold_cond.notify_all()

    def handle(self, conn: Conn) -> None:
        while True:
            try:
                request = conn.read_request(send_continue=True)
            except BadMessage as exc:
                conn.respond(400, str(exc).encode(), [("Connection", "close")])
                return
            if request is None:
                return
            name = request.path.split("/")[1] if request.path.startswith("/") else ""
            route = self._routes.get(name)
            try:
                if route is None:
                    raise _HTTPError(404, f"no route for {request.path!r}")
                keep_alive = route(conn, request)
            except _HTTPError as exc:
                self._send(conn, request, exc.status, str(exc).encode())
                keep_alive = True
            if not keep_alive or request.wants_close():
                return

    def _send(
        self,
        conn: Conn,
        request: Message,
        status: int = 200,
        body: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
        content_type: str = "text/plain",
    ) -> bool:
        """The common answer: keep-alive unless the request asked to close."""
        header_list = [("Server", "fastpool-test"), ("Content-Type", content_type), *headers]
        if request.wants_close():
            header_list.append(("Connection", "close"))
        conn.respond(status, body, header_list, head_only=request.method == "HEAD")
        return True

    def _send_json(
        self, conn: Conn, request: Message, data: object, status: int = 200,
        headers: Iterable[tuple[str, str]] = (),
    ) -> bool:  # fmt: skip
        return self._send(conn, request, status, _json(data), headers, "application/json")

    def _send_chunks(
        self, conn: Conn, request: Message, chunks: Iterator[bytes],
        headers: Iterable[tuple[str, str]] = (), trailers: Iterable[tuple[str, str]] = (),
    ) -> bool:  # fmt: skip
        header_list = [("Transfer-Encoding", "chunked"), *headers]
        self._send(conn, request, 200, b"", header_list)
        if request.method == "HEAD":
            return True
        # Each chunk is its own send, so clients really see separate pieces.
        for chunk in chunks:
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        tail = "".join(f"{name}: {value}\r\n" for name, value in trailers)
        conn.send(b"0\r\n" + tail.encode("latin-1") + b"\r\n")
        return True

    # --- routes: each returns whether the connection stays open ---
    def _bytes(self, conn: Conn, request: Message) -> bool:
        return self._send(conn, request, 200, pattern_bytes(_int_segment(request)),
                          content_type="application/octet-stream")  # fmt: skip

    def _chunked(self, conn: Conn, request: Message) -> bool:
        data = pattern_bytes(_int_segment(request))
        size = int(request.query.get("chunk") or max(1, len(data) // 4))
        chunks = (data[i : i + size] for i in range(0, len(data), size))
        return self._send_chunks(
            conn, request, chunks, [("Trailer", "X-Trailer")], [("X-Trailer", "done")]
        )

    def _stream(self, conn: Conn, request: Message) -> bool:
        count = _int_segment(request, limit=100_000)
        lines = (_json({"id": i, "path": request.path}) + b"\n" for i in range(count))
        return self._send_chunks(conn, request, lines, [("Content-Type", "application/json")])

    def _encoded(self, conn: Conn, request: Message) -> bool:
        encoding = request.path.strip("/")
        data = _json({"encoding": encoding, "method": request.method})
        if encoding == "gzip":
            body = gzip.compress(data)
        elif encoding == "deflate":
            body = zlib.compress(data)
        elif encoding == "br" and brotli is not None:
            body = brotli.compress(data)
        elif encoding == "zstd" and zstandard is not None:
            body = zstandard.ZstdCompressor().compress(data)
        else:
            raise _HTTPError(501, f"{encoding} support is not installed")
        return self._send(conn, request, 200, body, [("Content-Encoding", encoding)],
                          "application/json")  # fmt: skip

    def _echo(self, conn: Conn, request: Message) -> bool:
        return self._send_json(conn, request, {
            "method": request.method,
            "path": request.path,
            "query": urlsplit(request.target).query,
            "headers": [list(pair) for pair in request.headers],
            "body": request.body.decode("latin-1"),
            "trailers": [list(pair) for pair in request.trailers],
            "connection": conn.number,
        })  # fmt: skip

    def _status(self, conn: Conn, request: Message) -> bool:
        status = _int_segment(request, limit=599)
        if status < 200:
            raise _HTTPError(400, "interim statuses cannot be final")
        return self._send(conn, request, status)

    def _redirect(self, conn: Conn, request: Message) -> bool:
        hops = _int_segment(request, limit=1000)
        target = "/echo" if hops <= 1 else f"/redirect/{hops - 1}"
        if request.query.get("absolute"):
            target = self.url + target
        return self._send(conn, request, 302, b"", [("Location", target)])

    def _redirect_to(self, conn: Conn, request: Message) -> bool:
        url = request.query.get("url")
        if not url:
            raise _HTTPError(400, "url is required")
        status = int(request.query.get("status_code") or 302)
        return self._send(conn, request, status, b"", [("Location", url)])

    def _cookies(self, conn: Conn, request: Message) -> bool:
        if request.path == "/cookies/set":
            cookies = [("Set-Cookie", f"{k}={v}; Path=/") for k, v in request.query.items()]
            return self._send(conn, request, 302, b"", [*cookies, ("Location", "/cookies")])
        header = request.header("cookie")
        jar = {}
        for item in (header or "").split(";"):
            name, sep, value = item.strip().partition("=")
            if sep:
                jar[name] = value
        return self._send_json(conn, request, {"cookies": jar, "header": header})

    def _basic_auth(self, conn: Conn, request: Message) -> bool:
        parts = request.path.split("/")
        if len(parts) != 4:
            raise _HTTPError(400, "use /basic-auth/USER/PASS")
        expected = "Basic " + base64.b64encode(f"{parts[2]}:{parts[3]}".encode()).decode()
        if request.header("authorization") != expected:
            challenge = [("WWW-Authenticate", 'Basic realm="fastpool-test"')]
            return self._send(conn, request, 401, b"", challenge)
        return self._send_json(conn, request, {"authenticated": True, "user": parts[2]})

    def _slow(self, conn: Conn, request: Message) -> bool:
        conn.stall(min(float(request.query.get("delay") or 1), MAX_DELAY))
        return self._send(conn, request, 200, b"slow")

    def _close(self, conn: Conn, request: Message) -> bool:
        conn.respond(200, b"closing", [("Server", "fastpool-test"), ("Connection", "close")],
                     head_only=request.method == "HEAD")  # fmt: skip
        return False

    def _http10(self, conn: Conn, request: Message) -> bool:
        conn.respond(200, b"http/1.0", [("Server", "fastpool-test")], version="HTTP/1.0",
                     head_only=request.method == "HEAD")  # fmt: skip
        return False

    def _no_length(self, conn: Conn, request: Message) -> bool:
        body = pattern_bytes(int(request.query.get("n") or 100))
        head = b"HTTP/1.1 200 OK\r\nServer: fastpool-test\r\nContent-Type: text/plain\r\n\r\n"
        conn.send(head if request.method == "HEAD" else head + body)
        return False

    def _hold(self, conn: Conn, request: Message) -> bool:
        key = request.query.get("key", "")
        wanted = int(request.query.get("n") or 2)
        with self._hold_cond:
            self._hold_counts[key] += 1
            self._hold_cond.notify_all()
            released = self._hold_cond.wait_for(
                lambda: self._hold_counts[key] >= wanted or self._stopping.is_set(),
                HOLD_TIMEOUT,
            )
            arrived = self._hold_counts[key]
        return self._send_json(
            conn, request, {"key": key, "arrived": arrived, "released": bool(released)}
        )

    def _headers(self, conn: Conn, request: Message) -> bool:
        extra = [
            ("X-Dup", "a"),
            ("X-Dup", "b"),
            ("Set-Cookie", "first=1; Path=/"),
            ("Set-Cookie", "second=2; Path=/"),
            ("X-Empty", ""),
            ("X-Mixed-Case", "Value"),
        ]
        data = {"headers": [list(pair) for pair in request.headers]}
        return self._send_json(conn, request, data, headers=extra)

    def _response_headers(self, conn: Conn, request: Message) -> bool:
        pairs = parse_qsl(urlsplit(request.target).query, keep_blank_values=True)
        return self._send_json(conn, request, [list(p) for p in pairs], headers=pairs)
