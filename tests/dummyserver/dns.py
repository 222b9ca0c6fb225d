"""A loopback DNS server for the resolver tests (dnslib for the wire format).

:class:`DNSServer` answers UDP and TCP queries on 127.0.0.1 at a random port from a table of
:class:`Record` per name, and counts every query by ``(name, qtype)`` so tests can tell a
cache hit (no new query) from a miss. A name can answer late (``delay``), or fail with
NXDOMAIN or SERVFAIL. Delayed answers are scheduled on the server's one thread, so a slow name
never holds up the others. Every wait is bounded and :meth:`DNSServer.stop` joins the thread.

    with DNSServer() as dns:
        dns.add("multi.test", a=["127.0.0.2", "127.0.0.3"], aaaa=["::1"], ttl=30)
        dns.add("slow.test", a=["127.0.0.4"], delay=0.3)
        dns.add("gone.test", rcode="NXDOMAIN")
        dns.add("broken.test", rcode="SERVFAIL")
        Resolver(backend="cares", nameservers=[dns.nameserver])
"""

from __future__ import annotations

import heapq
import selectors
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Self

from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSRecord  # type: ignore[import-untyped]


@dataclass
class Zone:
    """What one name answers: its A and AAAA records (address, TTL), a delay, an rcode."""

    a: list[tuple[str, int]] = field(default_factory=list)
    aaaa: list[tuple[str, int]] = field(default_factory=list)
    delay: float = 0.0
    rcode: str = "NOERROR"


class DNSServer:
    """A DNS server on 127.0.0.1 (UDP and TCP on one random port) for tests."""

    #: the longest the server thread sleeps between checks of the stop flag
    TICK = 0.05

    def __init__(self) -> None:
        self._zones: dict[str, Zone] = {}
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()
        self.errors: list[str] = []
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.bind(("127.0.0.1", 0))
        self.port: int = self._udp.getsockname()[1]
        self._tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._tcp.bind(("127.0.0.1", self.port))
            self._tcp.listen(16)
        except OSError:  # the port is taken for TCP: serve UDP only
            self._tcp.close()
            self._tcp = None  # type: ignore[assignment]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def nameserver(self) -> str:
        """``"127.0.0.1:PORT"``, the form ``Resolver(nameservers=[...])`` takes."""
        return f"127.0.0.1:{self.port}"

    def add(
        self,
        name: str,
        *,
        a: tuple[str, ...] | list[str] = (),
        aaaa: tuple[str, ...] | list[str] = (),
        ttl: int = 60,
        delay: float = 0.0,
        rcode: str = "NOERROR",
    ) -> None:
        """Set what ``name`` answers (replacing what it answered): A and AAAA addresses, all
        with ``ttl``, after ``delay`` seconds, with ``rcode`` ("NOERROR", "NXDOMAIN",
        "SERVFAIL"). A name that is not added answers NXDOMAIN."""
        zone = Zone([(x, ttl) for x in a], [(x, ttl) for x in aaaa], delay, rcode)
        with self._lock:
            self._zones[name.lower().rstrip(".")] = zone

    def queries(self, name: str | None = None, qtype: str | None = None) -> int:
        """How many queries arrived, for ``name`` and/or ``qtype`` ("A", "AAAA") or all."""
        with self._lock:
            return sum(
                n
                for (qname, qt), n in self._counts.items()
                if (name is None or qname == name.lower().rstrip("."))
                and (qtype is None or qt == qtype)
            )

    def start(self) -> Self:
        """Start serving on a daemon thread; returns self."""
        self._thread = threading.Thread(target=self._serve, name="dummy-dns", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, join the thread (bounded) and close the sockets."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            if self._thread.is_alive():
                self.errors.append("the DNS server thread did not stop within 5 s")
        self._udp.close()
        if self._tcp is not None:
            self._tcp.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the server thread -------------------------------------------------------------------

    def _answer(self, data: bytes) -> tuple[float, bytes]:
        """(delay, reply bytes) for one query; counts it."""
        request = DNSRecord.parse(data)
        qname = str(request.q.qname).lower().rstrip(".")
        qtype = QTYPE[request.q.qtype]
        with self._lock:
            self._counts[(qname, qtype)] += 1
            zone = self._zones.get(qname)
        reply = request.reply()
        if zone is None:
            reply.header.rcode = RCODE.NXDOMAIN
            return 0.0, reply.pack()
        reply.header.rcode = getattr(RCODE, zone.rcode)
        if zone.rcode == "NOERROR":
            if qtype == "A":
                for addr, ttl in zone.a:
                    reply.add_answer(RR(qname, QTYPE.A, rdata=A(addr), ttl=ttl))
            elif qtype == "AAAA":
                for addr, ttl in zone.aaaa:
                    reply.add_answer(RR(qname, QTYPE.AAAA, rdata=AAAA(addr), ttl=ttl))
        return zone.delay, reply.pack()

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._udp, selectors.EVENT_READ, "udp")
        if self._tcp is not None:
            sel.register(self._tcp, selectors.EVENT_READ, "tcp")
        # (due, seq, reply, where): answers held back by a zone's delay
        pending: list[tuple[float, int, bytes, object]] = []
        seq = 0
        try:
            while not self._stop.is_set():
                timeout = self.TICK
                if pending:
                    timeout = max(0.0, min(timeout, pending[0][0] - time.monotonic()))
                for key, _ in sel.select(timeout):
                    try:
                        if key.data == "udp":
                            data, peer = self._udp.recvfrom(4096)
                            where: object = peer
                        elif key.data == "tcp":
                            conn, _addr = self._tcp.accept()
                            conn.settimeout(1.0)
                            size = int.from_bytes(_recv_exact(conn, 2), "big")
                            data, where = _recv_exact(conn, size), conn
                        else:
                            continue
                        delay, reply = self._answer(data)
                    except Exception as exc:  # noqa: BLE001 - a bad packet: note it and go on
                        self.errors.append(f"DNS server: {exc!r}")
                        continue
                    seq += 1
                    heapq.heappush(pending, (time.monotonic() + delay, seq, reply, where))
                while pending and pending[0][0] <= time.monotonic():
                    _due, _seq, reply, where = heapq.heappop(pending)
                    self._send(reply, where)
        finally:
            for _due, _seq, _reply, where in pending:
                if isinstance(where, socket.socket):
                    where.close()
            sel.close()

    def _send(self, reply: bytes, where: object) -> None:
        try:
            if isinstance(where, socket.socket):
                with where:
                    where.sendall(len(reply).to_bytes(2, "big") + reply)
            else:
                self._udp.sendto(reply, where)  # type: ignore[call-overload]
        except OSError:
            pass  # the client went away (a timed-out query): nothing to do


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the DNS client closed mid-message")
        data += chunk
    return data
