"""The multiplexed loop's timings for the cores ratio table: its own CPU per exchange.

``measure_loop()`` returns rows of ``(name, backend, ns_per_exchange, reference_name,
reference_ns)``, medians of repeats, all measured in the same run. Each round puts 64
exchanges in flight on 64 socketpairs whose answers (a 100-byte nginx-like response) are
already written, then polls until all have ended: what is timed is the loop's work alone
(start, write, register, read, frame, hand back), with no network wait. The reference does
the same exchanges one at a time on blocking sockets (``sendall``, ``recv_into`` until the
same parser finds the end): the socket floor of the one-request path.

Run ``python bench/cores_loop.py`` for a table.
"""

from __future__ import annotations

import importlib
import socket
import statistics
import time
from typing import Any, Callable

Row = tuple[str, str, float, str, float]

IN_FLIGHT = 64
ROUNDS = 40
REQUEST = b"GET /100b HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
ANSWER = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sat, 05 Dec 2026 08:00:00 GMT\r\n"
    b"Content-Type: application/octet-stream\r\nContent-Length: 100\r\n"
    b"Connection: keep-alive\r\n\r\n" + b"x" * 100
)


class Conn:
    """What the loop reads and sets on a connection (fastpool.connection's names)."""

    max_head_bytes = 65536
    max_headers = 100
    max_line_bytes = 65536

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._rest = b""
        self._sock_timeout: object = None
        self.sent_ahead = False
        self.reusable = True

    def close(self) -> None:
        """The loop closes a connection only on cancel: never here."""


def _pairs() -> list[tuple[Conn, socket.socket]]:
    return [
        (Conn(ours), theirs) for ours, theirs in (socket.socketpair() for _ in range(IN_FLIGHT))
    ]


def _drain(theirs: socket.socket) -> None:
    # The request the exchange wrote: read off the peer between rounds, outside the timing.
    theirs.setblocking(False)
    try:
        while theirs.recv(65536):
            pass
    except BlockingIOError:
        pass


def _measure(
    exchange_all: Callable[[list[Conn], Any], None],
    repeat: int,
    prepare: Callable[[list[Conn]], Any] = lambda conns: None,
) -> float:
    """ns per exchange of ``exchange_all(conns, prepare(conns))`` (each connection's answer
    already waiting), the median of ``repeat`` runs of ``ROUNDS`` rounds; ``prepare`` and the
    check of each answer are outside the time."""
    pairs = _pairs()
    conns = [conn for conn, _ in pairs]
    per_run = []
    try:
        for _ in range(repeat):
            spent = 0.0
            for _ in range(ROUNDS):
                for _conn, theirs in pairs:
                    theirs.sendall(ANSWER)
                prepared = prepare(conns)
                begin = time.perf_counter()
                exchange_all(conns, prepared)
                spent += time.perf_counter() - begin
                for conn, theirs in pairs:
                    assert conn._rest == ANSWER, conn._rest  # the whole answer, handed over
                    conn._rest = b""
                    _drain(theirs)
            per_run.append(spent / (ROUNDS * IN_FLIGHT) * 1e9)
    finally:
        for conn, theirs in pairs:
            conn.sock.close()
            theirs.close()
    return statistics.median(per_run)


def loop_ns(backend: str, repeat: int = 7) -> float:
    """ns of loop work per exchange: all 64 started, then polled until all have ended (the
    exchanges are made outside the time)."""
    module: Any = importlib.import_module(f"fastpool._loop_{'c' if backend == 'cython' else 'py'}")
    loop = module.Loop()

    def prepare(conns: list[Conn]) -> list[Any]:
        return [module.Exchange(c, "GET", REQUEST, read_timeout=10.0) for c in conns]

    def exchange_all(conns: list[Conn], exchanges: list[Any]) -> None:
        for ex in exchanges:
            loop.start(ex)
        ended = 0
        while ended < IN_FLIGHT:
            ended += len(loop.poll(1.0))

    try:
        return _measure(exchange_all, repeat, prepare)
    finally:
        loop.close()


def blocking_ns(repeat: int = 7) -> float:
    """ns per exchange one at a time on blocking sockets, the same bytes and parser."""
    from fastpool._http11 import parse_response_head

    view = memoryview(bytearray(65536))

    def exchange_all(conns: list[Conn], _: Any) -> None:
        for conn in conns:
            sock = conn.sock
            sock.sendall(REQUEST)
            buf = bytearray()
            while True:
                buf += view[: sock.recv_into(view)]
                parsed = parse_response_head(buf, "GET", 65536, 100, 65536)
                if parsed is not None and len(buf) >= parsed[1] + 100:
                    break
            conn._rest = bytes(buf)

    return _measure(exchange_all, repeat)


def measure_loop(repeat: int = 7) -> list[Row]:
    """The loop's rows: each built backend beside the blocking one-at-a-time floor."""
    reference = "blocking sendall+recv, one at a time"
    floor = blocking_ns(repeat)
    rows = []
    for backend in ("cython", "python"):
        try:
            ns = loop_ns(backend, repeat)
        except ImportError:
            continue  # a pure build: no compiled loop
        rows.append(
            (f"Loop: {IN_FLIGHT} in flight, 100-byte answers", backend, ns, reference, floor)
        )
    return rows


if __name__ == "__main__":
    for name, backend, ours, reference, theirs in measure_loop():
        print(
            f"| {name} | {backend} | {ours:,.0f} | {reference} | {theirs:,.0f} | {theirs / ours:.2f}x |"
        )
