"""The base of every dummyserver: a threaded socket server, its connections and their messages.

:class:`_Server` binds ``(host, 0)`` (127.0.0.2, 127.0.0.3 ... work as distinct hosts on Linux
loopback), accepts in a daemon thread, runs one daemon thread per connection, counts accepted
TCP connections (``connections``) and parsed requests (``requests``), and is a context manager
whose exit closes every socket and joins every thread. ``reset_counts()`` zeroes the counters.
A handler that fails with anything but a socket error is recorded in ``errors`` (the fixtures in
``conftest.py`` fail the test on it). Each accepted connection is a :class:`Conn`: buffered
reads of :class:`Message` requests and responses, and the fault helpers (close, reset, stall).
"""

from __future__ import annotations

import selectors
import socket
import ssl
import struct
import sys
import threading
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

__all__ = ("MAX_BODY", "MAX_HEAD", "BadMessage", "Conn", "Message")

#: Limits that keep a confused client from making a test server hang or eat memory.
MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024

Headers = list[tuple[str, str]]

# struct linger {on, seconds}: two ints on POSIX, two unsigned shorts on Windows.
_LINGER_ZERO = struct.pack("HH" if sys.platform == "win32" else "ii", 1, 0)


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
