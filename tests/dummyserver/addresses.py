"""Addresses with a chosen behaviour for the dial tests (Happy Eyeballs, the loop's own dial):
a tiny HTTP server, a server that runs a script per connection (both on :class:`Listener`), an
address whose connect hangs, one that refuses, a free port, a resolver (or a patched
``socket.getaddrinfo``) for a made-up name, the process's open descriptors and sockets, and
the dial worker threads a ``map`` started.

Real sockets on loopback only (127.0.0.x and ``::1``). Every object with a socket has
``close()``; the tests close them after use (their ``closing`` fixture: ``closed_after``).
"""

from __future__ import annotations

import contextlib
import gc
import os
import selectors
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import pytest

Addr = tuple[Any, ...]


@contextlib.contextmanager
def closed_after() -> Iterator[list[Any]]:
    """A list for the things a test makes (servers, blackholes, refused ports): each one's
    ``close()`` is called, the last first, when the block ends."""
    things: list[Any] = []
    try:
        yield things
    finally:
        for thing in reversed(things):
            thing.close()


def family_of(addr: Addr) -> socket.AddressFamily:
    """The address family of a socket address (IPv6 if its host has a colon)."""
    return socket.AF_INET6 if ":" in addr[0] else socket.AF_INET


def fds() -> set[str]:
    """The descriptors open now. Tests compare sets, not counts: another thread (a server of
    an earlier test, a finalizer) may close a descriptor of its own meanwhile, and only the
    ones this test opened and left open are a leak."""
    gc.collect()  # sockets an earlier test dropped are closed now, not during this one
    return set(os.listdir("/proc/self/fd"))


def open_sockets() -> set[str]:
    """This process's open sockets (the local servers' threads open other descriptors, such
    as a selector for a connection they take later, at times of their own)."""
    sockets = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                sockets.add(fd)
        except OSError:
            pass  # closed meanwhile
    return sockets


def dial_threads() -> set[threading.Thread]:
    """fastpool's dial worker threads alive now."""
    return {t for t in threading.enumerate() if t.name.startswith("fastpool-dial")}


def map_watching_workers(session: Any, urls: list[str], **kw: Any) -> tuple[list[Any], bool]:
    """``session.map(urls)``'s results, and whether a dial worker thread started meanwhile
    (looked at as each result comes: a worker may end before the map does)."""
    before = dial_threads()
    started = False
    results = []
    for result in session.map(urls, **kw):
        results.append(result)
        started = started or bool(dial_threads() - before)
    return results, started


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody uses on ``host`` now (bound and closed unconnected: no TIME_WAIT): a
    fixed source port, or a port that refuses connections."""
    with socket.socket(family_of((host,))) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Listener:
    """A listening socket on ``(host, 0)`` whose thread accepts connections until
    :meth:`close`, counts them (``accepted``, and the ``peers`` they came from) and hands each
    to :meth:`_handle`, the subclass's. A subclass sets its own fields first, then calls
    ``super().__init__``: the accept thread starts there."""

    #: how long :meth:`close` waits for each thread (seconds)
    join = 5.0

    def __init__(self, host: str) -> None:
        self.listener = socket.socket(family_of((host,)))
        self.listener.bind((host, 0))
        self.listener.listen(64)
        self.listener.settimeout(0.05)  # how often the accept loop looks at ``stopping``
        self.addr: Addr = self.listener.getsockname()
        self.port = int(self.addr[1])
        self.accepted = 0
        self.peers: list[Addr] = []
        self.lock = threading.Lock()
        self.stopping = False
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                conn, peer = self.listener.accept()
            except OSError:  # the timeout (socket.timeout is an OSError): look at stopping
                continue
            with self.lock:
                self.accepted += 1
                self.peers.append(peer)
            self._handle(conn, peer)

    def _handle(self, conn: socket.socket, peer: Addr) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        """Run ``target(*args)`` on a daemon thread of its own, joined by :meth:`close`."""
        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()

    def close(self) -> None:
        """Stop accepting, join the threads (``join`` seconds each), close the listener."""
        self.stopping = True
        for thread in self.threads:
            thread.join(self.join)
        self.listener.close()


class Server(Listener):
    """A tiny HTTP/1.1 server on ``(host, 0)``: answers every GET with 200 and its own name,
    counts ``accepted`` connections, ``requests`` and ``empty`` connections (closed by the client
    without a request), and the ``peers`` it saw."""

    def __init__(self, host: str, name: str | None = None) -> None:
        self.name = (name or host).encode()
        self.requests = self.empty = self.ended = 0
        super().__init__(host)

    @property
    def live(self) -> int:
        """Connections accepted and not ended yet (counted from ``accepted``, so that a
        connection is never accepted and not yet live)."""
        return self.accepted - self.ended

    def _handle(self, conn: socket.socket, peer: Addr) -> None:
        self._spawn(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        answered = 0
        conn.settimeout(10)
        buffer = b""
        try:
            while not self.stopping:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                _, _, buffer = buffer.partition(b"\r\n\r\n")
                answered += 1
                with self.lock:
                    self.requests += 1
                head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(self.name)}\r\n\r\n"
                conn.sendall(head.encode() + self.name)
        except OSError:
            pass
        finally:
            conn.close()
            with self.lock:
                self.ended += 1
                if not answered:
                    self.empty += 1

    def wait_accepted(self, n: int, seconds: float = 5.0) -> None:
        """Until ``n`` connections were accepted."""
        deadline = time.monotonic() + seconds
        while self.accepted < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.accepted >= n

    def wait_idle(self, accepted: int = 0, seconds: float = 5.0) -> None:
        """Until ``accepted`` connections were accepted and every one ended (the client closed
        it): the server holds no socket then."""
        self.wait_accepted(accepted, seconds)
        deadline = time.monotonic() + seconds
        while self.live and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.live == 0


class RawServer(Listener):
    """A TCP server that runs ``script(server, conn)`` on each connection it accepts, in a
    thread of its own: the connection has a 5 s timeout, an ``OSError`` of the script ends it
    quietly, and it is closed after."""

    join = 6.0  # a script may wait out its connection's 5 s timeout

    def __init__(
        self, script: Callable[[RawServer, socket.socket], None], host: str = "127.0.0.1"
    ) -> None:
        self.script = script
        super().__init__(host)

    def _handle(self, conn: socket.socket, peer: Addr) -> None:
        self._spawn(self._run, conn)

    def _run(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            self.script(self, conn)
        except OSError:
            pass
        finally:
            conn.close()


class Blackhole:
    """An address whose connect hangs: ``listen(0)`` with its accept queue filled by
    connections never accepted, past which the kernel drops further SYNs."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        kind = family_of((host,))
        self.listener = socket.socket(kind)
        self.listener.bind((host, 0))
        self.listener.listen(0)
        self.addr: Addr = self.listener.getsockname()
        self.fillers: list[socket.socket] = []
        with selectors.DefaultSelector() as selector:
            for _ in range(64):
                filler = socket.socket(kind)
                filler.setblocking(False)
                filler.connect_ex(self.addr)
                self.fillers.append(filler)
                selector.register(filler, selectors.EVENT_WRITE)
                answered = selector.select(0.3)
                selector.unregister(filler)
                if not answered:
                    # This one's SYN was dropped: the queue is full. Only the queued fillers
                    # stay, so that draining the queue accepts exactly them.
                    self.fillers.pop().close()
                    return
        raise AssertionError("listen(0) never stopped answering SYNs here")

    @property
    def port(self) -> int:
        """The port of ``addr``."""
        return int(self.addr[1])

    def close(self) -> None:
        for filler in self.fillers:
            filler.close()
        self.listener.close()


class Refused:
    """An address that refuses connections: bound (so nobody else takes the port), not listening."""

    def __init__(self, host: str) -> None:
        self.sock = socket.socket(family_of((host,)))
        self.sock.bind((host, 0))
        self.addr: Addr = self.sock.getsockname()

    def close(self) -> None:
        self.sock.close()


class Hosts:
    """A duck-typed resolver: ``name`` -> the given socket addresses, in that order (each with
    its own port); any other name -> getaddrinfo."""

    def __init__(self, name: str, *addrs: Addr) -> None:
        self.name = name
        self.addrs = addrs
        self.calls = 0

    def infos(self) -> list[tuple[Any, ...]]:
        """The addresses as ``socket.getaddrinfo`` gives them."""
        return [(family_of(a), socket.SOCK_STREAM, socket.IPPROTO_TCP, "", a) for a in self.addrs]

    def resolve(self, host: str, port: int, family: int = socket.AF_UNSPEC) -> list[Any]:
        self.calls += 1
        if host == self.name:
            return self.infos()
        return socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)


def resolve_name(monkeypatch: pytest.MonkeyPatch, name: str, *addrs: Addr) -> None:
    """``socket.getaddrinfo`` answers ``name`` with ``addrs``, in that order, for the rest of
    the test: the default path of both stock urllib3 (which takes no resolver) and fastpool."""
    real = socket.getaddrinfo
    infos = Hosts(name, *addrs).infos()

    def getaddrinfo(host: Any, port: Any, *args: Any, **kw: Any) -> Any:
        if host == name:
            return infos
        return real(host, port, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
