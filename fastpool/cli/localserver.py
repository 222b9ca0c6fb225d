"""A small embedded HTTP/1.1 server on loopback, for ``fastpool demo`` and ``fastpool bench``.

Stdlib only, one thread per connection, keep-alive by default. Each server counts the TCP
connections it accepted, which is how the demo shows (honestly, from the server's side) how many
connections a client opened. Several servers on 127.0.0.2, 127.0.0.3, ... act as distinct hosts;
where those addresses cannot be bound (macOS), they fall back to separate ports on 127.0.0.1.

Routes (GET and HEAD; a request body with Content-Length is read and ignored):

* ``/``                 a short text body
* ``/bytes/N``          N bytes (at most 16 MiB)
* ``/status/N``         an empty response with status N
* ``/slow?delay=S``     answers after S seconds (at most 10)
* ``/hold?key=K&n=N``   waits until N requests with key K have arrived (at most 5 s; 504 after
                        that), so threaded experiments are deterministic
* ``/stats``            JSON ``{"connections": .., "requests": ..}`` of this server

Run ``python -m fastpool.cli.localserver [--hosts N]`` to serve in a separate process: it prints
one JSON line ``{"urls": [...]}`` and serves until its stdin closes.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ("MAX_HOLD_SECONDS", "LocalServer", "LocalServers", "ServerProcess")

#: How long a ``/hold`` request waits for its partners before answering 504.
MAX_HOLD_SECONDS = 5.0
_MAX_HEAD = 64 * 1024
_MAX_BYTES = 16 * 1024 * 1024
_MAX_DELAY = 10.0
# A connection idle for this long is closed by the server (bounds threads left behind by clients).
_IDLE_TIMEOUT = 30.0
_REASONS = {
    200: "OK",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    404: "Not Found",
    411: "Length Required",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class _Request:
    __slots__ = ("keep_alive", "method", "path", "query")

    def __init__(self, method: str, path: str, query: str, keep_alive: bool) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.keep_alive = keep_alive


class LocalServer:
    """One keep-alive HTTP/1.1 server on ``host`` (default ``"127.0.0.1"``), port ``port``
    (default 0: any free port). Start it with :meth:`start` or ``with``.

    ``connections`` counts accepted TCP connections and ``requests`` counts requests answered;
    :meth:`reset_counts` zeroes both.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind((host, port))
            self._sock.listen(128)
        except OSError:
            self._sock.close()
            raise
        self.port: int = self._sock.getsockname()[1]
        self.connections = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._barriers: dict[str, threading.Barrier] = {}
        self._closed = False
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"fastpool-localserver-{host}:{self.port}", daemon=True
        )

    @property
    def url(self) -> str:
        """The base URL, ``"http://HOST:PORT"``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        """Start accepting connections in a daemon thread; returns ``self``."""
        self._acceptor.start()
        return self

    def reset_counts(self) -> None:
        """Set ``connections`` and ``requests`` back to zero."""
        with self._lock:
            self.connections = 0
            self.requests = 0

    def close(self) -> None:
        """Stop accepting, close every open connection and wait for the acceptor thread."""
        if self._closed:
            return
        self._closed = True
        # shutdown() wakes the thread blocked in accept(); close() alone does not on Linux.
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        with self._lock:
            open_socks = list(self._open)
        for sock in open_socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._acceptor.is_alive():
            self._acceptor.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<LocalServer {self.url} connections={self.connections} requests={self.requests}>"

    # --- serving ---------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._open.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(_IDLE_TIMEOUT)
        buf = b""
        try:
            while True:
                end = buf.find(b"\r\n\r\n")
                while end < 0:
                    if len(buf) > _MAX_HEAD:
                        conn.sendall(_response(431, b"", keep_alive=False))
                        return
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                    end = buf.find(b"\r\n\r\n")
                head, buf = buf[:end], buf[end + 4 :]
                parsed = _parse_head(head)
                if isinstance(parsed, int):
                    conn.sendall(_response(parsed, b"", keep_alive=False))
                    return
                request, body_length = parsed
                # Skip a request body we do not use.
                while len(buf) < body_length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                buf = buf[body_length:]
                status, body = self._route(request)
                if request.method == "HEAD":
                    data = _response(status, b"", request.keep_alive, length=len(body))
                else:
                    data = _response(status, body, request.keep_alive)
                with self._lock:
                    self.requests += 1
                conn.sendall(data)
                if not request.keep_alive:
                    return
        except OSError:
            return
        finally:
            with self._lock:
                self._open.discard(conn)
            conn.close()

    def _route(self, request: _Request) -> tuple[int, bytes]:
        path = request.path
        if path == "/":
            return 200, b"fastpool local server\n"
        if path.startswith("/bytes/"):
            size = _int_or_none(path[7:])
            if size is None or not 0 <= size <= _MAX_BYTES:
                return 400, b"bad size\n"
            return 200, b"x" * size
        if path.startswith("/status/"):
            status = _int_or_none(path[8:])
            if status is None or not 200 <= status <= 599:
                return 400, b"bad status\n"
            return status, b""
        query = parse_qs(request.query)
        if path == "/hold":
            return self._hold(query)
        if path == "/slow":
            try:
                delay = float(query.get("delay", ["1"])[0])
            except ValueError:
                return 400, b"bad delay\n"
            time.sleep(min(max(delay, 0.0), _MAX_DELAY))
            return 200, b"slow\n"
        if path == "/stats":
            stats = {"connections": self.connections, "requests": self.requests}
            return 200, json.dumps(stats).encode()
        return 404, b"not found\n"

    def _hold(self, query: dict[str, list[str]]) -> tuple[int, bytes]:
        key = query.get("key", [""])[0]
        parties = _int_or_none(query.get("n", ["2"])[0])
        if not key or parties is None or not 1 <= parties <= 64:
            return 400, b"hold needs key=K and n=1..64\n"
        with self._lock:
            barrier = self._barriers.get(key)
            if barrier is None or barrier.parties != parties:
                barrier = self._barriers[key] = threading.Barrier(parties)
        try:
            index = barrier.wait(timeout=MAX_HOLD_SECONDS)
        except threading.BrokenBarrierError:
            self._forget(key, barrier)
            return 504, b"hold timed out\n"
        if index == 0:
            self._forget(key, barrier)
        return 200, b"released\n"

    def _forget(self, key: str, barrier: threading.Barrier) -> None:
        with self._lock:
            if self._barriers.get(key) is barrier:
                del self._barriers[key]


def _int_or_none(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _parse_head(head: bytes) -> tuple[_Request, int] | int:
    """Parse a request head; return ``(request, body_length)`` or an error status."""
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        return 400
    keep_alive = version == "HTTP/1.1"
    body_length = 0
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            return 400
        name = name.strip().lower()
        value = value.strip().lower()
        if name == "connection":
            if value == "close":
                keep_alive = False
            elif value == "keep-alive":
                keep_alive = True
        elif name == "content-length":
            if not value.isdigit():
                return 400
            body_length = int(value)
        elif name == "transfer-encoding":
            return 411  # chunked uploads are not needed here
    path, _, query = target.partition("?")
    if path.startswith("http://"):  # absolute-form
        parts = urlsplit(target)
        path, query = parts.path or "/", parts.query
    return _Request(method, path, query, keep_alive), body_length


def _response(status: int, body: bytes, keep_alive: bool, length: int | None = None) -> bytes:
    reason = _REASONS.get(status, "Unknown")
    if length is None:
        length = len(body)
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        f"Content-Length: {length}\r\n"
        "Content-Type: text/plain\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return head.encode("latin-1") + body


class LocalServers:
    """``count`` (default 2) :class:`LocalServer` s acting as distinct hosts.

    They bind 127.0.0.2, 127.0.0.3, ...; if that fails they all use 127.0.0.1 with different
    ports. ``servers`` lists them; ``fallback`` tells whether the fallback was taken.
    """

    def __init__(self, count: int = 2) -> None:
        if not isinstance(count, int) or isinstance(count, bool):
            raise TypeError(f"count must be an int, got {type(count).__name__}")
        if not 1 <= count <= 250:
            raise ValueError(f"count must be between 1 and 250, got {count}")
        self.servers: list[LocalServer] = []
        self.fallback = False
        try:
            for index in range(count):
                self.servers.append(LocalServer(f"127.0.0.{index + 2}"))
        except OSError:
            for server in self.servers:
                server.close()
            self.fallback = True
            self.servers = [LocalServer("127.0.0.1") for _ in range(count)]

    @property
    def urls(self) -> list[str]:
        """The base URL of each server."""
        return [server.url for server in self.servers]

    def connections(self) -> int:
        """TCP connections accepted by all servers together."""
        return sum(server.connections for server in self.servers)

    def reset_counts(self) -> None:
        """Zero every server's counters."""
        for server in self.servers:
            server.reset_counts()

    def start(self) -> Self:
        """Start every server; returns ``self``."""
        for server in self.servers:
            server.start()
        return self

    def close(self) -> None:
        """Close every server."""
        for server in self.servers:
            server.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ServerProcess:
    """:class:`LocalServers` in a child process, so the server does not share the client's GIL
    (fair throughput numbers). ``urls`` lists the hosts; leaving the ``with`` block stops it.
    """

    def __init__(self, hosts: int = 1) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "fastpool.cli.localserver", "--hosts", str(hosts)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError("the local server process exited before it was ready")
        self.urls: list[str] = json.loads(line)["urls"]

    def close(self) -> None:
        """Stop the child process (closing its stdin) and wait for it."""
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    """Serve in this process until stdin closes (used to keep the server off the client's GIL)."""
    parser = argparse.ArgumentParser(prog="python -m fastpool.cli.localserver")
    parser.add_argument("--hosts", type=int, default=1, help="number of hosts (default 1)")
    args = parser.parse_args(argv)
    with LocalServers(args.hosts) as group:
        info: dict[str, Any] = {"urls": group.urls, "fallback": group.fallback}
        print(json.dumps(info), flush=True)
        # The parent closes our stdin (or dies): that is the signal to stop.
        sys.stdin.read()
    return 0


if __name__ == "__main__":
    sys.exit(main())
