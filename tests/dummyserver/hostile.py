"""A scripted hostile HTTP server for the attack suite (``tests/socketlevel/test_hostile_*.py``).

:class:`HostileServer` listens on a loopback address (plain TCP, or TLS with a server-side
``ssl.SSLContext``) and runs a *script* on every accepted connection, in a thread of its own.
A script is either

- a list of steps, run in order: ``("read",)`` one request (head and framed body),
  ``("head",)`` a request head only, ``("send", data)``, ``("send", data, piece, delay)``
  (``data`` cut into ``piece``-byte writes with ``delay`` seconds between them),
  ``("sleep", seconds)``, ``("close",)`` (FIN), ``("reset",)`` (RST: SO_LINGER 0),
  ``("shut_wr",)`` (half-close); or
- a callable ``script(conn)`` given the :class:`HostileConn` (its ``raw`` holds the bytes read
  so far); or
- a list of such scripts, one per connection in accept order (the last one repeats).

The server records every byte each connection received (``received``), each request read
(``requests``) and counts ``connections``. Every socket has a timeout, so nothing waits for a
client forever, and :meth:`HostileServer.stop` (or leaving the ``with`` block) closes
everything and joins the threads. The ``hostile`` fixture (``tests/conftest.py``) starts servers for one test and stops them
after it; a script that failed with anything but a socket error fails the test.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
import traceback
from collections.abc import Sequence
from typing import Any, Callable, Union

#: How long any socket operation of the server may wait (seconds): a bound, not a tuning knob.
IO_TIMEOUT = 5.0
#: A request head or body larger than this is cut off (the client is confused: stop reading).
MAX_REQUEST = 4 * 1024 * 1024

_LINGER_ZERO = struct.pack("ii", 1, 0)
_QUIET = (OSError, ssl.SSLError, EOFError)

Step = tuple[Any, ...]
Script = Union[Sequence[Step], Callable[["HostileConn"], None]]


def response(
    body: bytes = b"",
    status: str = "200 OK",
    headers: Sequence[str] = (),
    length: bool = True,
) -> bytes:
    """The bytes of a response: ``HTTP/1.1 {status}``, ``headers`` (``"Name: value"``
    lines), Content-Length of ``body`` when ``length`` is true, then ``body``."""
    lines = [f"HTTP/1.1 {status}", *headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class HostileConn:
    """One accepted connection as a script sees it."""

    def __init__(self, server: HostileServer, sock: socket.socket, number: int) -> None:
        self.server = server
        self.sock = sock
        #: 1, 2, ... in accept order (restarts at :meth:`HostileServer.reset`).
        self.number = number
        #: Every byte received on this connection so far.
        self.raw = bytearray()
        self._buf = bytearray()
        self.closed = False

    # --- reading ---
    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.raw += data
        self._buf += data
        if len(self.raw) > MAX_REQUEST:
            raise EOFError  # a runaway client: stop reading

    def read_until(self, delimiter: bytes) -> bytes:
        """Bytes up to and including ``delimiter``; EOFError if the client closes first."""
        while (index := self._buf.find(delimiter)) < 0:
            self._fill()
        data = bytes(self._buf[: index + len(delimiter)])
        del self._buf[: index + len(delimiter)]
        return data

    def read_exact(self, n: int) -> bytes:
        """Exactly ``n`` bytes; EOFError if the client closes first."""
        while len(self._buf) < n:
            self._fill()
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def read_head(self) -> bytes | None:
        """One request head (up to the blank line); None on EOF before a byte of it."""
        try:
            head = self.read_until(b"\r\n\r\n")
        except EOFError:
            return None
        self.server._log_request(head)
        return head

    def read_request(self) -> bytes | None:
        """One request, head and body (Content-Length or chunked), as raw bytes; None on
        EOF before it is complete."""
        head = self.read_head()
        if head is None:
            return None
        fields = head.lower().split(b"\r\n")
        try:
            if any(f.startswith(b"transfer-encoding:") and b"chunked" in f for f in fields):
                body = bytearray()
                while True:  # the raw chunked body, trailers included
                    line = self.read_until(b"\r\n")
                    body += line
                    size = int(line.split(b";")[0].strip(), 16)
                    if size == 0:
                        while (trailer := self.read_until(b"\r\n")) != b"\r\n":
                            body += trailer
                        return head + bytes(body) + b"\r\n"
                    body += self.read_exact(size + 2)
            for f in fields:
                if f.startswith(b"content-length:"):
                    return head + self.read_exact(min(int(f[15:].strip()), MAX_REQUEST))
        except (EOFError, ValueError):
            return None
        return head

    # --- writing and faults ---
    def send(self, data: bytes, piece: int = 0, delay: float = 0.0) -> None:
        """Write ``data``: at once, or in ``piece``-byte writes ``delay`` seconds apart."""
        if not piece:
            self.sock.sendall(data)
            return
        for start in range(0, len(data), piece):
            if start and delay:
                self.sleep(delay)
            self.sock.sendall(data[start : start + piece])

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (cut short when the server stops)."""
        self.server._stopping.wait(seconds)

    def close(self) -> None:
        """FIN, then drain what the client still sends, so it sees EOF and not RST."""
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(0.2)
            while self.sock.recv(65536):
                pass
        except _QUIET:
            pass
        self.sock.close()

    def reset(self) -> None:
        """Abort: SO_LINGER 0, so the close sends RST."""
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
        except OSError:
            pass
        self.sock.close()

    def run(self, steps: Sequence[Step]) -> None:
        """Run a list of steps (see the module docstring)."""
        for step in steps:
            kind, args = step[0], step[1:]
            if kind == "read":
                if self.read_request() is None:
                    return
            elif kind == "head":
                if self.read_head() is None:
                    return
            elif kind == "send":
                self.send(*args)
            elif kind == "sleep":
                self.sleep(*args)
            elif kind == "close":
                self.close()
            elif kind == "reset":
                self.reset()
            elif kind == "shut_wr":
                self.sock.shutdown(socket.SHUT_WR)
            else:
                raise ValueError(f"unknown step {step!r}")


def answer_each(*responses: bytes, then: bytes | None = None) -> Callable[[HostileConn], None]:
    """A keep-alive script: the k-th request on a connection gets ``responses[k]`` (the last
    one repeats, or ``then`` once they are used up), until the client closes."""

    def script(conn: HostileConn) -> None:
        k = 0
        while conn.read_request() is not None:
            if k < len(responses):
                conn.send(responses[k])
            else:
                conn.send(then if then is not None else responses[-1])
            k += 1

    return script


#: The head of a chunked 200 response, for :func:`answer_then_close`.
CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def answer_then_close(body: bytes, head: bytes = CHUNKED_HEAD) -> list[Step]:
    """A script that reads one request, sends ``head + body`` and closes (FIN): a body cut
    short where ``body`` ends (a chunked head by default), or whole if ``body`` is."""
    return [("read",), ("send", head + body), ("close",)]


class HostileServer:
    """See the module docstring. ``url`` is ``http(s)://host:port``."""

    def __init__(
        self,
        script: Script | Sequence[Script],
        host: str = "127.0.0.1",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if not host.startswith("127."):
            raise ValueError("loopback only")
        self.script = script
        self.host = host
        self.tls = tls
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: list[HostileConn] = []
        self._listener = socket.socket()
        self._listener.bind((host, 0))
        self._listener.listen(64)
        self._listener.settimeout(0.5)  # stop() wakes accept() at once; this is a fallback
        self.port = self._listener.getsockname()[1]
        self.reset()
        self._accepter = threading.Thread(target=self._accept_loop, daemon=True)
        self._accepter.start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def reset(self) -> None:
        """Forget what was received: ``connections`` 0, ``received``/``requests`` empty, and
        the next connection runs the first script again."""
        with self._lock:
            self.connections = 0
            #: Raw bytes each connection received, in accept order (growing while it lives).
            self.received: list[bytearray] = []
            #: Each request head read by a script, in arrival order.
            self.requests: list[bytes] = []

    def _log_request(self, head: bytes) -> None:
        with self._lock:
            self.requests.append(head)

    def _script_for(self, number: int) -> Script:
        script = self.script
        if isinstance(script, list) and script and not isinstance(script[0], tuple):
            return script[min(number, len(script)) - 1]  # type: ignore[no-any-return]
        return script  # type: ignore[return-value]

    def _accept_loop(self) -> None:
        deadline = time.monotonic() + 120  # a test never takes this long: stop regardless
        while not self._stopping.is_set() and time.monotonic() < deadline:
            try:
                sock, _ = self._listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            sock.settimeout(IO_TIMEOUT)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.connections += 1
                conn = HostileConn(self, sock, self.connections)
                self.received.append(conn.raw)
                self._conns.append(conn)
                thread = threading.Thread(target=self._run, args=(conn,), daemon=True)
                self._threads.append(thread)
            thread.start()

    def _run(self, conn: HostileConn) -> None:
        try:
            if self.tls is not None:
                conn.sock = self.tls.wrap_socket(conn.sock, server_side=True)
            script = self._script_for(conn.number)
            if callable(script):
                script(conn)
            else:
                conn.run(script)
        except _QUIET:
            pass
        except Exception:  # noqa: BLE001 - a broken script: reported by the fixture
            self.errors.append(traceback.format_exc())
        finally:
            if self._stopping.is_set():
                conn.reset()
            else:
                conn.close()

    def stop(self) -> None:
        """Close the listener and every connection, join every thread (bounded)."""
        self._stopping.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept() (Linux)
        except OSError:
            pass
        self._accepter.join(5)
        self._listener.close()
        with self._lock:
            conns, threads = list(self._conns), list(self._threads)
        for conn in conns:  # conn.sock: the TLS socket once wrapped (wrapping detaches the other)
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in threads:
            thread.join(5)

    def __enter__(self) -> HostileServer:  # noqa: PYI034 - Python 3.9 has no typing.Self
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
