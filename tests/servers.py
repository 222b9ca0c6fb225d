"""Real local servers for fastpool's tests: threads and sockets on 127.0.0.0/8, no mocks.

- :class:`AppServer`: a keep-alive HTTP/1.1 application server with httpbin-like routes.
- :class:`FaultServer`: a raw-socket server that runs a script per connection (close, reset,
  stall, malformed bytes...).
- :class:`ProxyServer`: a forward proxy (absolute-form requests and ``CONNECT`` tunnels).

All three share one base: each binds ``(host, 0)`` (127.0.0.2, 127.0.0.3 ... work as distinct
hosts on Linux loopback), accepts in a daemon thread, runs one daemon thread per connection,
counts accepted TCP connections (``connections``) and parsed requests (``requests``), and is a
context manager whose exit closes every socket and joins every thread. ``reset_counts()`` zeroes
the counters. A handler that fails with anything but a socket error is recorded in ``errors``
(the fixtures in ``conftest.py`` fail the test on it).

Only the standard library is used (plus ``brotli``/``zstandard`` for those routes when
installed); TLS contexts come from the fixtures (trustme).
"""

from __future__ import annotations

import base64
import gzip
import json
import selectors
import socket
import ssl
import struct
import sys
import threading
import time
import traceback
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import parse_qsl, urlsplit

try:
    import brotli
except ImportError:  # pragma: no cover - optional
    brotli = None
try:
    import zstandard
except ImportError:  # pragma: no cover - optional
    zstandard = None

__all__ = (
    "HAS_BROTLI",
    "HAS_ZSTD",
    "AppServer",
    "BadMessage",
    "Conn",
    "FaultServer",
    "Message",
    "ProxyServer",
    "close_after",
    "pattern_bytes",
    "send_raw",
)

HAS_BROTLI = brotli is not None
HAS_ZSTD = zstandard is not None

#: Limits that keep a confused client from making a test server hang or eat memory.
MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024
#: /hold waits at most this long for its group (seconds).
HOLD_TIMEOUT = 5.0
#: /slow sleeps at most this long (seconds).
MAX_DELAY = 30.0

Headers = list[tuple[str, str]]

# struct linger {on, seconds}: two ints on POSIX, two unsigned shorts on Windows.
_LINGER_ZERO = struct.pack("HH" if sys.platform == "win32" else "ii", 1, 0)


def pattern_bytes(n: int) -> bytes:
    """The ``n`` bytes ``/bytes/n``, ``/chunked/n`` and ``/no-length?n=`` send, for comparisons."""
    unit = b"abcdefghijklmnopqrstuvwxyz0123456789\n"
    return (unit * (n // len(unit) + 1))[:n]


class BadMessage(ValueError):
    """A request or response the test servers cannot parse (the connection is then closed)."""


@dataclass
class Message:
    """One parsed HTTP message: a request (``method``, ``target``) or a response (``status``).

    ``headers`` and ``trailers`` are lists of ``(name, value)`` pairs in wire order and case;
    ``body`` is de-chunked. ``head`` is the raw head as received.
    """

    start_line: str
    headers: Headers
    body: bytes = b""
    trailers: Headers = field(default_factory=list)
    head: bytes = b""

    # --- request side ---
    @property
    def method(self) -> str:
        return self.start_line.split(" ", 2)[0]

    @property
    def target(self) -> str:
        return self.start_line.split(" ", 2)[1]

    @property
    def version(self) -> str:
        """``HTTP/1.1`` etc: the last word of a request line, the first of a status line."""
        parts = self.start_line.split(" ", 2)
        return parts[0] if parts[0].startswith("HTTP/") else parts[-1]

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        """The query string as a dict (the first value of each name)."""
        result: dict[str, str] = {}
        for name, value in parse_qsl(urlsplit(self.target).query, keep_blank_values=True):
            result.setdefault(name, value)
        return result

    # --- response side ---
    @property
    def status(self) -> int:
        return int(self.start_line.split(" ", 2)[1])

    # --- both ---
    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``default``."""
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return default

    def header_list(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), in order."""
        lname = name.lower()
        return [value for key, value in self.headers if key.lower() == lname]

    def wants_close(self) -> bool:
        """Whether this message ends its connection (``Connection: close`` or HTTP/1.0)."""
        tokens = {t.strip().lower() for v in self.header_list("connection") for t in v.split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" not in tokens
        return "close" in tokens


def _is_chunked(message: Message) -> bool:
    return any("chunked" in v.lower() for v in message.header_list("transfer-encoding"))


class Conn:
    """One accepted connection as a handler sees it: buffered reads plus fault helpers.

    ``sock`` is the raw (or TLS) socket; ``number`` counts connections from 1 per server.
    """

    def __init__(self, server: _Server, sock: socket.socket, number: int) -> None:
        self.server = server
        self.sock = sock
        self.number = number
        self.closed = False
        self._buf = bytearray()

    # --- reading ---
    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self._buf += data
        return True

    def recv_until(self, delimiter: bytes, limit: int = MAX_HEAD) -> bytes | None:
        """Bytes up to and including ``delimiter``; None on EOF before it arrives."""
        start = 0
        while True:
            index = self._buf.find(delimiter, start)
            if index >= 0:
                end = index + len(delimiter)
                data = bytes(self._buf[:end])
                del self._buf[:end]
                return data
            if len(self._buf) > limit:
                raise BadMessage(f"no {delimiter!r} within {limit} bytes")
            start = max(0, len(self._buf) - len(delimiter) + 1)
            if not self._fill():
                return None

    def recv_exact(self, n: int) -> bytes:
        """Exactly ``n`` bytes; ConnectionError on EOF before that."""
        while len(self._buf) < n:
            if not self._fill():
                raise ConnectionAbortedError(f"EOF after {len(self._buf)} of {n} bytes")
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def recv_to_eof(self, limit: int = MAX_BODY) -> bytes:
        """Everything until the peer closes."""
        while self._fill():
            if len(self._buf) > limit:
                raise BadMessage(f"body over {limit} bytes")
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def take_buffered(self) -> bytes:
        """Bytes already read from the socket but not consumed (for relays)."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def _read_head(self) -> Message | None:
        head = self.recv_until(b"\r\n\r\n")
        if head is None:
            if self._buf:
                raise ConnectionAbortedError("EOF inside a message head")
            return None
        lines = head[:-4].decode("latin-1").split("\r\n")
        headers: Headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise BadMessage(f"bad header line {line!r}")
            headers.append((name, value.strip(" \t")))
        if len(lines[0].split(" ", 2)) < 2:
            raise BadMessage(f"bad start line {lines[0]!r}")
        return Message(lines[0], headers, head=head)

    def _read_chunked(self, message: Message) -> None:
        parts = []
        total = 0
        while True:
            line = self.recv_until(b"\r\n")
            if line is None:
                raise ConnectionAbortedError("EOF inside a chunked body")
            size_text = line[:-2].split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadMessage(f"bad chunk size {size_text!r}") from None
            if size == 0:
                break
            total += size
            if total > MAX_BODY:
                raise BadMessage(f"body over {MAX_BODY} bytes")
            parts.append(self.recv_exact(size))
            if self.recv_exact(2) != b"\r\n":
                raise BadMessage("chunk data not followed by CRLF")
        while True:
            line = self.recv_until(b"\r\n")
            if line is None:
                raise ConnectionAbortedError("EOF inside chunked trailers")
            if line == b"\r\n":
                break
            name, _, value = line[:-2].decode("latin-1").partition(":")
            message.trailers.append((name, value.strip(" \t")))
        message.body = b"".join(parts)

    def _read_sized(self, message: Message) -> None:
        length = message.header("content-length")
        if length is None:
            return
        if not length.isdigit() or int(length) > MAX_BODY:
            raise BadMessage(f"bad Content-Length {length!r}")
        message.body = self.recv_exact(int(length))

    def read_request(self, send_continue: bool = False) -> Message | None:
        """Read one request (head and body, de-chunked); None on EOF before its first byte.

        With ``send_continue``, answers ``Expect: 100-continue`` before reading the body.
        Counts the request on the server.
        """
        request = self._read_head()
        if request is None:
            return None
        self.server._count_request(self, request)
        if send_continue and (request.header("expect") or "").lower() == "100-continue":
            self.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        if _is_chunked(request):
            self._read_chunked(request)
        else:
            self._read_sized(request)
        return request

    def read_response(self, request_method: str = "GET") -> Message | None:
        """Read one final response (skipping 1xx), its body by HTTP/1.1 framing rules."""
        while True:
            response = self._read_head()
            if response is None:
                return None
            if not 100 <= response.status < 200:
                break
        if request_method == "HEAD" or response.status in (204, 304):
            return response
        if _is_chunked(response):
            self._read_chunked(response)
        elif response.header("content-length") is not None:
            self._read_sized(response)
        else:
            response.body = self.recv_to_eof()
        return response

    # --- writing ---
    def send(self, data: bytes) -> None:
        """Send all of ``data``."""
        self.sock.sendall(data)

    def respond(
        self,
        status: int = 200,
        body: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
        reason: str | None = None,
        version: str = "HTTP/1.1",
        head_only: bool = False,
    ) -> None:
        """Send a response in one write, with Content-Length unless the status has no body or
        ``headers`` already frame it. ``head_only`` (for HEAD) omits the body but keeps the length.
        """
        header_list = list(headers)
        names = {name.lower() for name, _ in header_list}
        no_body = status in (204, 304) or 100 <= status < 200
        if not no_body and not names & {"content-length", "transfer-encoding"}:
            header_list.append(("Content-Length", str(len(body))))
        if reason is None:
            reason = _REASONS.get(status, "Unknown")
        lines = [f"{version} {status} {reason}"]
        lines += [f"{name}: {value}" for name, value in header_list]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.send(head if head_only or no_body else head + body)

    # --- faults ---
    def close(self) -> None:
        """Close gracefully: FIN, then discard unread input, so the peer sees EOF not RST."""
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.setblocking(False)
            # Closing with unread data in the receive queue would send RST instead of FIN.
            while self.sock.recv(65536):
                pass
        except (OSError, ValueError):
            pass
        self.sock.close()

    def reset(self) -> None:
        """Abort the connection: SO_LINGER 0, so close sends RST."""
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
        except OSError:
            pass
        self.sock.close()

    def shutdown_write(self) -> None:
        """Half-close: send FIN but keep reading."""
        self.sock.shutdown(socket.SHUT_WR)

    def stall(self, seconds: float) -> None:
        """Do nothing for ``seconds`` (cut short when the server stops)."""
        self.server._stopping.wait(seconds)

    def _abort(self) -> None:
        # Called from the stopping thread: wakes a handler blocked in recv/send.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except (OSError, ValueError):
            pass


_REASONS = {
    100: "Continue", 200: "OK", 201: "Created", 202: "Accepted", 204: "No Content",
    206: "Partial Content", 301: "Moved Permanently", 302: "Found", 303: "See Other",
    304: "Not Modified", 307: "Temporary Redirect", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 407: "Proxy Authentication Required", 408: "Request Timeout",
    413: "Content Too Large", 418: "I'm a teapot", 429: "Too Many Requests",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}  # fmt: skip

#: Socket-level failures a handler meets when a client goes away: not errors of the server.
_QUIET_ERRORS = (OSError, ssl.SSLError, BadMessage)


class _Server:
    """Listening socket, accept thread, one thread per connection, counters, clean stop."""

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.tls = tls
        self.port = 0
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._live: set[Conn] = set()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._numbering = 0  # connection numbers never restart, so request_log stays unambiguous
        self.reset_counts()

    # --- counters ---
    def reset_counts(self) -> None:
        """Zero ``connections``, ``requests`` and ``request_log``."""
        with self._lock:
            self.connections = 0
            self.requests = 0
            #: ``(connection number, request line)`` per request, in arrival order.
            self.request_log: list[tuple[int, str]] = []

    def _count_request(self, conn: Conn, request: Message) -> None:
        with self._lock:
            self.requests += 1
            self.request_log.append((conn.number, request.start_line))

    # --- addresses ---
    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` (or ``https://``), no trailing slash."""
        return f"{self.scheme}://{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} connections={self.connections}>"

    # --- life cycle ---
    def start(self) -> _Server:
        """Bind, listen and start accepting; returns self."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, 0))
        listener.listen(128)
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._wake_r, self._wake_w = socket.socketpair()
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"{type(self).__name__}-accept", daemon=True
        )
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, wake and close every connection, join every thread."""
        if self._listener is None or self._stopping.is_set():
            return
        self._stopping.set()
        self._on_stop()
        self._wake_w.send(b"x")
        assert self._accept_thread is not None
        self._accept_thread.join(5)
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()
        with self._lock:
            live = list(self._live)
            threads = list(self._threads)
        for conn in live:
            conn._abort()
        deadline = time.monotonic() + 5
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _on_stop(self) -> None:
        """Hook: wake anything a subclass waits on."""

    def _accept_loop(self) -> None:
        assert self._listener is not None
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._stopping.is_set():
                selector.select()
                while not self._stopping.is_set():
                    try:
                        sock, _ = self._listener.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    self._spawn(sock)
        finally:
            selector.close()

    def _spawn(self, sock: socket.socket) -> None:
        sock.setblocking(True)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self.connections += 1
            self._numbering += 1
            conn = Conn(self, sock, self._numbering)
            self._live.add(conn)
            self._threads = [t for t in self._threads if t.is_alive()]
            thread = threading.Thread(
                target=self._run, args=(conn,), name=f"{type(self).__name__}-conn", daemon=True
            )
            self._threads.append(thread)
        thread.start()

    def _run(self, conn: Conn) -> None:
        try:
            if self.tls is not None:
                tls_sock = self.tls.wrap_socket(
                    conn.sock, server_side=True, do_handshake_on_connect=False
                )
                conn.sock = tls_sock
                tls_sock.do_handshake()
            self.handle(conn)
        except _QUIET_ERRORS:
            pass
        except Exception:  # noqa: BLE001 - any other failure is a bug of the handler: report it
            text = traceback.format_exc()
            self.errors.append(text)
            print(f"{type(self).__name__} handler failed:\n{text}", file=sys.stderr)
        finally:
            if self._stopping.is_set():
                conn.reset()  # shutting down: do not wait on the peer
            else:
                conn.close()
            with self._lock:
                self._live.discard(conn)

    def handle(self, conn: Conn) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


# --------------------------------------------------------------------------------------------
# AppServer
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# FaultServer
# --------------------------------------------------------------------------------------------

Handler = Callable[[Conn], None]


class FaultServer(_Server):
    """A raw-socket server that calls ``handler(conn)`` in a thread per accepted connection.

    ``FaultServer(handler, host="127.0.0.1", tls=None)``. The handler scripts the connection
    with :class:`Conn`'s helpers (``read_request``, ``send``, ``respond``, ``close``, ``reset``,
    ``shutdown_write``, ``stall``, ``sock``); when it returns the connection is closed (FIN).
    ``conn.number`` (1, 2, ...) lets one handler treat the first connection differently.
    See :func:`close_after` and :func:`send_raw` for common scripts.
    """

    def __init__(
        self, handler: Handler, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
    ) -> None:
        super().__init__(host, tls)
        self.handler = handler

    def handle(self, conn: Conn) -> None:
        self.handler(conn)


def close_after(n: int, body: bytes = b"ok", how: str = "close") -> Handler:
    """A handler that answers ``n`` keep-alive requests (200, ``body``), then ends the connection
    without answering the next: ``how`` is ``"close"`` (FIN), ``"reset"`` (RST) or ``"wait"``
    (read the next request, then FIN without a response).
    """
    if how not in ("close", "reset", "wait"):
        raise ValueError(f"how must be 'close', 'reset' or 'wait', got {how!r}")

    def handler(conn: Conn) -> None:
        for _ in range(n):
            request = conn.read_request()
            if request is None:
                return
            conn.respond(200, body, head_only=request.method == "HEAD")
        if how == "wait":
            conn.read_request()
            conn.close()
        elif how == "reset":
            conn.reset()
        else:
            conn.close()

    return handler


def send_raw(data: bytes, then: str = "close") -> Handler:
    """A handler that reads one request, sends ``data`` verbatim, then ``"close"``s (FIN),
    ``"reset"``s, or ``"keep"``s reading until the client closes.
    """
    if then not in ("close", "reset", "keep"):
        raise ValueError(f"then must be 'close', 'reset' or 'keep', got {then!r}")

    def handler(conn: Conn) -> None:
        if conn.read_request() is None:
            return
        conn.send(data)
        if then == "reset":
            conn.reset()
        elif then == "keep":
            while conn.read_request() is not None:
                pass

    return handler


# --------------------------------------------------------------------------------------------
# ProxyServer
# --------------------------------------------------------------------------------------------


class ProxyServer(_Server):
    """A forward proxy: absolute-form requests (``GET http://host:port/path``) and ``CONNECT``.

    ``ProxyServer(host="127.0.0.1", auth=None, tls=None)``; ``auth=("user", "pass")`` requires
    ``Proxy-Authorization: Basic ...`` on every request and answers 407 otherwise; ``tls`` (a
    server-side ``ssl.SSLContext``) makes it an HTTPS proxy (TLS between client and proxy,
    so a CONNECT tunnel to an HTTPS origin carries TLS in TLS). The client side is keep-alive;
    each forwarded request uses a fresh upstream connection, and its response is relayed with
    Content-Length framing. ``request_lines`` records every request line seen and ``seen``
    every parsed request (for header checks).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        auth: tuple[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(host, tls)
        self.auth = auth

    def reset_counts(self) -> None:
        """Zero the counters and forget the requests seen."""
        super().reset_counts()
        self.request_lines: list[str] = []
        self.seen: list[Message] = []

    def _count_request(self, conn: Conn, request: Message) -> None:
        super()._count_request(conn, request)
        with self._lock:
            self.request_lines.append(request.start_line)
            self.seen.append(request)

    def _authorized(self, request: Message) -> bool:
        if self.auth is None:
            return True
        token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
        return request.header("proxy-authorization") == f"Basic {token}"

    def handle(self, conn: Conn) -> None:
        while True:
            request = conn.read_request()
            if request is None:
                return
            if not self._authorized(request):
                challenge = [("Proxy-Authenticate", 'Basic realm="fastpool-proxy"')]
                conn.respond(407, b"proxy auth required", challenge)
                continue
            if request.method == "CONNECT":
                self._tunnel(conn, request)
                return
            self._forward(conn, request)
            if request.wants_close():
                return

    def _upstream(self, authority: str) -> socket.socket:
        host, _, port = authority.rpartition(":")
        return socket.create_connection((host.strip("[]"), int(port)), timeout=10)

    def _forward(self, conn: Conn, request: Message) -> None:
        url = urlsplit(request.target)
        if url.scheme != "http" or not url.hostname:
            conn.respond(400, b"absolute-form http:// target required")
            return
        origin_target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        hop_by_hop = {"proxy-authorization", "proxy-connection", "connection", "keep-alive",
                      "transfer-encoding", "content-length", "te"}  # fmt: skip
        headers = [(k, v) for k, v in request.headers if k.lower() not in hop_by_hop]
        headers += [("Connection", "close"), ("Content-Length", str(len(request.body)))]
        head = f"{request.method} {origin_target} HTTP/1.1\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
        try:
            upstream = self._upstream(f"{url.hostname}:{url.port or 80}")
        except OSError as exc:
            conn.respond(502, f"upstream: {exc}".encode())
            return
        with upstream:
            upstream.sendall(head.encode("latin-1") + request.body)
            response = Conn(self, upstream, 0).read_response(request.method)
        if response is None:
            conn.respond(502, b"upstream closed without a response")
            return
        skip = hop_by_hop - {"proxy-authorization"}
        relayed = [(k, v) for k, v in response.headers if k.lower() not in skip]
        if request.wants_close():
            relayed.append(("Connection", "close"))
        if response.status not in (204, 304):
            relayed.append(("Content-Length", str(len(response.body))))
        reason = response.start_line.split(" ", 2)[2] if response.start_line.count(" ") >= 2 else ""
        conn.respond(response.status, response.body, relayed, reason=reason or None,
                     head_only=request.method == "HEAD")  # fmt: skip

    def _tunnel(self, conn: Conn, request: Message) -> None:
        try:
            upstream = self._upstream(request.target)
        except (OSError, ValueError) as exc:
            conn.respond(502, f"upstream: {exc}".encode(), [("Connection", "close")])
            return
        upstream.settimeout(None)
        up = Conn(self, upstream, 0)
        with self._lock:
            self._live.add(up)  # so stop() wakes the relay
        try:
            conn.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
            pending = conn.take_buffered()
            if pending:
                upstream.sendall(pending)
            _relay(conn.sock, upstream)
        finally:
            with self._lock:
                self._live.discard(up)
            upstream.close()


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until both directions have seen EOF (or an error).

    Between plain sockets a half-close is passed on. A TLS socket cannot be half-closed
    (``SSLSocket.shutdown`` drops the TLS layer), so with one, the first EOF ends the relay.
    """
    peer = {a: b, b: a}
    half_close = not any(isinstance(s, ssl.SSLSocket) for s in peer)
    selector = selectors.DefaultSelector()
    selector.register(a, selectors.EVENT_READ)
    selector.register(b, selectors.EVENT_READ)
    try:
        while peer:
            for key, _ in selector.select():
                src: socket.socket = key.fileobj  # type: ignore[assignment]
                data = src.recv(65536)
                # Decrypted bytes can wait inside the TLS object, where select cannot see them.
                while data and isinstance(src, ssl.SSLSocket) and src.pending():
                    data += src.recv(src.pending())
                if data:
                    peer[src].sendall(data)
                    continue
                if not half_close:
                    return
                # EOF one way: pass the half-close on, keep relaying the other way.
                selector.unregister(src)
                try:
                    peer[src].shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                del peer[src]
    finally:
        selector.close()
