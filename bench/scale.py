"""Issue #16's scale targets: 10,000 slow connections from one thread, 100,000 host names.

::

    python bench/scale.py [--parts connections names] [--connections N] [--delay S]
                          [--names N] [--concurrency C] [--listeners L] [--dial-workers W]
                          [--backends cython python] [--apis session poolmanager] [--quick]

Everything runs on loopback against a server this script starts in a **separate process**
(``--_role server``): an asyncio HTTP/1.1 server listening on ``--listeners`` addresses
(127.0.0.2, 127.0.0.3 ..., one random port each, listen backlog 65535, which the kernel caps at
``net.core.somaxconn``) that answers ``GET /sleep/<ms>`` after ``<ms>`` milliseconds and any
other path at once, with ``200`` and a 2-byte body (``Content-Length``, keep-alive). It counts
the connections open now and at most (``peak_open``) and the requests it holds unanswered now
and at most (``peak_in_flight``): those are the "open at once" numbers, counted at the server.
The same process runs tests/dummyserver/dns.py's ``DNSServer`` (dnslib, UDP and TCP on
127.0.0.1) on a thread, with a wildcard zone: ``h<i>.scale.test`` answers one A record,
127.0.0.<2 + i mod L> (a listener), TTL 60 s, and no AAAA (NODATA). A small line protocol on a
control port resets and reads the counters.

Each measurement runs in its own **client process** (``--_role connections|names``, the
orchestrator starts it with ``FASTPOOL_NO_EXTENSIONS=1`` for the ``python`` backend), so its
memory baseline is clean and the backend is chosen at import. RLIMIT_NOFILE is raised soft to
hard in every process (said on stderr); a hard limit too low for ``--connections`` fails at
once, saying how many descriptors it needs.

Part 1, ``connections`` (per backend, per API): ``--connections`` URLs ``/sleep/<delay>``
spread round-robin over the listeners, sent by ``fastpool.Session(pool_maxsize=P,
pool_connections=L).map(urls, concurrency=N, per_host=P)`` or ``fastpool.PoolManager(
num_pools=L, maxsize=P).map(urls, concurrency=N, per_host=P)``, where ``P = ceil(N / L)`` (a
host is an address here, so every request can have its own connection, and ``pool_maxsize`` at
``per_host`` keeps each connection when it comes back). After a warm-up on a throwaway client
(imports, first-use caches), two passes, each on a fresh client:

1. **plain**: completed (200 with the whole body) and failed counts, wall time from the first
   request to the last result (really concurrent: about ``--delay`` plus the time to dial and
   send ``N``), when the server held all of them at once ("all held at", from the map's start,
   both processes reading CLOCK_MONOTONIC), the client's CPU time, the server's ``peak_open`` and ``peak_in_flight``, the
   client's descriptors open at the end (every connection idle in its pool), and memory per
   connection as the growth of the process' resident set: ``(VmHWM at the end - VmRSS
   before) / N``, ``VmRSS`` from ``/proc/self/status``. Socket buffers are kernel memory, not in
   the RSS; the growth of the kernel's slab (``/proc/meminfo``, the whole machine: both ends of
   each connection, socket structures and buffers) per connection is shown for scale, with
   ``/proc/net/sockstat``'s TCP ``mem`` in the JSON.
2. **tracemalloc**: the same, under ``tracemalloc``: the Python heap's peak (from the pass'
   start) divided by ``N``, and the biggest allocation sites at the end. tracemalloc slows the
   run, so this pass' time is not reported.

Part 2, ``names`` (per backend): ``--names`` URLs ``http://h<i>.scale.test:<port>/``, each a
distinct host, through ``fastpool.Session(resolver=Resolver(backend="cares",
nameservers=[the local server]))``'s ``map(urls, concurrency=C)``, the URLs from a generator.
Every tenth of the results: the tenth's throughput and CPU time per request (this process'
``time.process_time()``: every thread, c-ares' included; less sensitive than req/s to other
load on the machine), ``VmRSS``, the descriptors open
(``/proc/self/fd``; also sampled 50 times over the run), the resolver's cache entries and the
pools in the Session's PoolManager (an LRU of ``pool_connections``). The resolver's
``backend="threads"`` cannot be measured here: it asks ``getaddrinfo``, which reads the system's
``/etc/resolv.conf`` (port 53 only, no per-process override), so it cannot be pointed at a
local server on a random port; the table says so. ``--trace-names`` also runs the part under
tracemalloc and lists the allocation sites that grew between the first and the last tenth.

Verdicts (the table's ``target`` columns): part 1 is met when every request completed, the
server saw all ``N`` connections open and all ``N`` requests held at once, and both memory
figures are under 10 KiB per connection. Part 2 is met when every request completed, the last
tenth's throughput is at least 0.8 x the first's, the descriptors stay under
``pool_connections + concurrency + 64``, and the RSS grew at most max(4 MiB, 5 %) over the
second half of the run.

Bounds: every request has a timeout (connect 10 s, read ``--delay`` + 30 s); every client loop
stops taking results past its time budget (and says so); each client process runs under
``faulthandler.dump_traceback_later(exit=True)`` and is killed by the orchestrator (by its pid)
if it outlives its budget; the server process dies with the orchestrator (its stdin closes) and
is killed by its pid at the end. Markdown tables on stdout, then one JSON line with every
number (``{"scale": ...}``); progress on stderr; exit status 1 when a request failed or a
client hung or crashed (a missed target is reported, not an exit status).

``--quick`` is a smoke run (200 connections at 0.2 s, 1,000 names, a few seconds per process):
it checks the machinery, it measures nothing. ``pytest bench/test_scale.py`` runs it. The full
sizes (10,000 connections, 100,000 names) take a couple of minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import gc
import json
import math
import os
import re
import resource
import select
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
for _path in (str(REPO), str(REPO / "tests")):  # this checkout's fastpool; tests/dummyserver
    if _path not in sys.path:
        sys.path.insert(0, _path)

KIB = 1024
BODY = b"ok"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n" + BODY
MEMORY_TARGET = 10 * KIB  # bytes per connection (issue #16)
DNS_SUFFIX = ".scale.test"
DNS_TTL = 60
CONNECT_TIMEOUT = 10.0
READ_SLACK = 30.0  # read timeout: the server's delay plus this
BACKENDS = ("cython", "python")
APIS = ("session", "poolmanager")
PARTS = ("connections", "names")


def say(message: str) -> None:
    print(f"scale: {message}", file=sys.stderr, flush=True)


# --- the process' own numbers -----------------------------------------------------------------
def proc_status() -> dict[str, int]:
    """VmRSS and VmHWM (bytes) from /proc/self/status."""
    out: dict[str, int] = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0]) * KIB
    return out


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def slab_bytes() -> int | None:
    """The kernel's slab memory (/proc/meminfo ``Slab``, the whole machine), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("Slab:"):
                    return int(line.split()[1]) * KIB
    except (OSError, ValueError):
        pass
    return None


def sockstat_tcp_pages() -> int | None:
    """The TCP ``mem`` of /proc/net/sockstat (pages, the whole machine), or None."""
    try:
        with open("/proc/net/sockstat") as f:
            for line in f:
                if line.startswith("TCP:"):
                    fields = line.split()
                    return int(fields[fields.index("mem") + 1])
    except (OSError, ValueError):
        pass
    return None


def raise_fd_limit(needed: int, who: str) -> int:
    """RLIMIT_NOFILE's soft limit raised to the hard one (said on stderr); exits with a clear
    message when even the hard limit is below ``needed``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        say(f"{who}: RLIMIT_NOFILE soft limit raised from {soft} to {target} (hard {hard})")
    if target < needed:
        say(
            f"{who}: RLIMIT_NOFILE hard limit {hard} is below the {needed} descriptors needed; "
            "raise it (ulimit -Hn, limits.conf, systemd LimitNOFILE) or lower --connections"
        )
        sys.exit(2)
    return int(target)


# --- the server process -----------------------------------------------------------------------
@dataclass
class Counters:
    open: int = 0
    peak_open: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    accepted: int = 0
    answered: int = 0
    dropped: int = 0  # closed by the client with a request unanswered
    bad: int = 0
    # CLOCK_MONOTONIC (time.monotonic() in any process): when the first connection since the
    # reset came, when the requests held reached their peak, when the last answer went out
    first_accept: float = 0.0
    peak_in_flight_at: float = 0.0
    last_answer: float = 0.0


class SlowHTTP(asyncio.Protocol):
    """One connection: a request head at a time, answered after the delay its path asks."""

    def __init__(self, counters: Counters) -> None:
        self.c = counters
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        c = self.c
        c.open += 1
        c.accepted += 1
        if c.accepted == 1:
            c.first_accept = time.monotonic()
        c.peak_open = max(c.peak_open, c.open)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._next()

    def _next(self) -> None:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > 65536:
                self.c.bad += 1
                assert self.transport is not None
                self.transport.close()
            return
        head = bytes(self.buf[:end])
        del self.buf[: end + 4]
        try:
            target = head.split(b"\r\n", 1)[0].split(b" ")[1]
        except IndexError:
            self.c.bad += 1
            target = b"/"
        delay = 0.0
        if target.startswith(b"/sleep/"):
            with contextlib.suppress(ValueError):
                delay = int(target[7:].split(b"?")[0]) / 1000.0
        c = self.c
        self.busy = True
        c.in_flight += 1
        if c.in_flight > c.peak_in_flight:
            c.peak_in_flight = c.in_flight
            c.peak_in_flight_at = time.monotonic()
        if delay > 0:
            self.timer = asyncio.get_running_loop().call_later(delay, self._answer)
        else:
            self._answer()

    def _answer(self) -> None:
        self.timer = None
        self.busy = False
        self.c.in_flight -= 1
        self.c.answered += 1
        self.c.last_answer = time.monotonic()
        assert self.transport is not None
        if self.transport.is_closing():
            return
        self.transport.write(RESPONSE)
        if self.buf:
            self._next()

    def connection_lost(self, exc: BaseException | None) -> None:
        c = self.c
        c.open -= 1
        if self.busy:
            self.busy = False
            c.in_flight -= 1
            c.dropped += 1
            if self.timer is not None:
                self.timer.cancel()


def _wildcard_dns(listeners: list[tuple[str, int]], nameserver_ttl: int) -> Any:
    """tests/dummyserver/dns.py's DNSServer with a wildcard zone for ``h<i>.scale.test``."""
    from dummyserver.dns import DNSServer, Zone

    addresses = [host for host, _ in listeners]
    pattern = re.compile(r"^h(\d+)" + re.escape(DNS_SUFFIX) + "$")

    class Wildcard(dict):  # type: ignore[type-arg]
        """The server's zone table: ``h<i>.scale.test`` answers without an entry per name."""

        def get(self, name: str, default: Any = None) -> Any:
            match = pattern.match(name)
            if match is None:
                return super().get(name, default)
            address = addresses[int(match.group(1)) % len(addresses)]
            return Zone([(address, nameserver_ttl)], [], 0.0, "NOERROR")

    class ScaleDNS(DNSServer):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self._zones = Wildcard()

        def _answer(self, data: bytes) -> tuple[float, bytes]:
            answer = super()._answer(data)
            with self._lock:
                self._counts.clear()  # it would keep an entry per name: count the total only
                self.total = getattr(self, "total", 0) + 1
            return answer  # type: ignore[no-any-return]

    return ScaleDNS()


async def _serve(n_listeners: int) -> None:
    counters = Counters()
    loop = asyncio.get_running_loop()
    servers = []
    listeners: list[tuple[str, int]] = []
    for i in range(n_listeners):
        host = f"127.0.0.{2 + i}"
        server = await loop.create_server(
            lambda: SlowHTTP(counters), host, 0, backlog=65535, reuse_address=True
        )
        servers.append(server)
        listeners.append((host, server.sockets[0].getsockname()[1]))
    dns = _wildcard_dns(listeners, DNS_TTL).start()

    async def control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            words = line.decode().split()
            if words and words[0] == "reset":
                counters.peak_open, counters.peak_in_flight = counters.open, counters.in_flight
                counters.accepted = counters.answered = counters.dropped = counters.bad = 0
                counters.first_accept = counters.peak_in_flight_at = counters.last_answer = 0.0
                dns.total = 0
            elif words and words[0] == "idle":  # wait (bounded) until no connection is open
                until = loop.time() + float(words[1])
                while counters.open and loop.time() < until:
                    await asyncio.sleep(0.02)
            stats = asdict(counters)
            stats["dns_queries"] = getattr(dns, "total", 0)
            stats["dns_errors"] = list(dns.errors[-3:])
            writer.write(json.dumps(stats).encode() + b"\n")
            await writer.drain()
        writer.close()

    ctl = await asyncio.start_server(control, "127.0.0.1", 0)
    stop = asyncio.Event()
    # the orchestrator's end (its pipe closing) ends this process too
    threading.Thread(
        target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)), daemon=True
    ).start()
    somaxconn = Path("/proc/sys/net/core/somaxconn").read_text().strip()
    ready = {
        "listeners": listeners,
        "control": list(ctl.sockets[0].getsockname()[:2]),
        "dns": dns.nameserver,
        "somaxconn": int(somaxconn),
        "pid": os.getpid(),
    }
    print(json.dumps(ready), flush=True)
    await stop.wait()
    dns.stop()
    for server in servers:
        server.close()


def serve(n_listeners: int, needed_fds: int) -> int:
    raise_fd_limit(needed_fds, "server")
    asyncio.run(_serve(n_listeners))
    return 0


class Control:
    """The client side of the server's control port."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=60)
        self.file = self.sock.makefile("rwb")

    def ask(self, *words: Any) -> dict[str, Any]:
        self.file.write(" ".join(map(str, words)).encode() + b"\n")
        self.file.flush()
        return json.loads(self.file.readline())  # type: ignore[no-any-return]

    def close(self) -> None:
        self.file.close()
        self.sock.close()


# --- part 1: many slow connections at once ----------------------------------------------------
@dataclass
class Drive:
    ok: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    stopped: str = ""  # why the loop stopped taking results early ("" when it did not)
    wall: float = 0.0


def _timeout(delay: float) -> Any:
    from urllib3.util.timeout import Timeout

    return Timeout(connect=CONNECT_TIMEOUT, read=delay + READ_SLACK)


def make_client(api: str, per_host: int, pools: int, delay: float) -> Any:
    import fastpool

    if api == "session":
        return fastpool.Session(pool_maxsize=per_host, pool_connections=pools)
    return fastpool.PoolManager(num_pools=pools, maxsize=per_host, timeout=_timeout(delay))


def drive(
    client: Any,
    api: str,
    urls: Any,
    *,
    concurrency: int,
    per_host: int | None,
    dial_workers: int,
    delay: float,
    budget: float,
    on_result: Any = None,
) -> Drive:
    """Send every URL through ``client.map``; count 200s with the whole body. Stops taking
    results past ``budget`` seconds (the iterator is closed: what is in flight is cancelled)."""
    out = Drive()
    kwargs: dict[str, Any] = {
        "concurrency": concurrency,
        "per_host": per_host,
        "dial_workers": dial_workers,
    }
    if api == "session":
        kwargs["timeout"] = _timeout(delay)
    started = time.perf_counter()
    deadline = time.monotonic() + budget
    with contextlib.closing(client.map(urls, **kwargs)) as results:
        for _request, response, error in results:
            if error is None:
                status = response.status_code if api == "session" else response.status
                body = response.content if api == "session" else response.data
                if status == 200 and body == BODY:
                    out.ok += 1
                else:
                    error = ValueError(f"status {status}, body {body[:40]!r}")
            if error is not None:
                out.failed += 1
                if len(out.errors) < 5:
                    out.errors.append(f"{type(error).__name__}: {error}"[:300])
            if on_result is not None:
                on_result(out)
            if time.monotonic() > deadline:
                out.stopped = f"time budget of {budget:g} s spent"
                break
    out.wall = time.perf_counter() - started
    return out


def connection_urls(listeners: list[tuple[str, int]], n: int, delay: float) -> list[str]:
    ms = round(delay * 1000)
    return [
        f"http://{listeners[i % len(listeners)][0]}:{listeners[i % len(listeners)][1]}"
        f"/sleep/{ms}?i={i}"
        for i in range(n)
    ]


def top_sites(snapshot: tracemalloc.Snapshot, n: int, per: int, limit: int = 8) -> list[str]:
    """The biggest allocation sites of ``snapshot``, as 'file:line  bytes per <unit>'."""
    out = []
    for stat in snapshot.statistics("lineno")[:limit]:
        frame = stat.traceback[0]
        name = frame.filename.replace(str(REPO) + "/", "").replace(sys.prefix + "/", "")
        out.append(f"{name}:{frame.lineno} {stat.size / max(n, 1):.0f} B/{per}x{stat.count}")
    return out


def run_connections(args: argparse.Namespace, server: dict[str, Any]) -> dict[str, Any]:
    n = args.connections
    listeners = [tuple(x) for x in server["listeners"]]
    raise_fd_limit(n + 256, "client")
    per_host = math.ceil(n / len(listeners))
    pools = max(len(listeners), 10)
    urls = connection_urls(listeners, n, args.delay)  # type: ignore[arg-type]
    ctl = Control(tuple(server["control"]))  # type: ignore[arg-type]
    budget = args.budget
    common = {
        "concurrency": n,
        "per_host": per_host,
        "dial_workers": args.dial_workers,
        "delay": args.delay,
        "budget": budget,
    }
    out: dict[str, Any] = {
        "connections": n,
        "per_host": per_host,
        "pool_maxsize": per_host,
        "listeners": len(listeners),
        "dial_workers": args.dial_workers,
    }
    # warm-up: imports and first-use caches, on a throwaway client
    warm = make_client(args.api, 4, pools, 0.0)
    warm_urls = [f"http://{h}:{p}/" for h, p in listeners] * 2
    w = drive(warm, args.api, warm_urls, **{**common, "concurrency": 8, "per_host": 2})
    warm.clear() if args.api == "poolmanager" else warm.close()
    del warm
    if w.failed:
        out["error"] = f"warm-up failed: {w.errors}"
        return out
    ctl.ask("idle", 30)

    # pass 1: time, concurrency at the server, RSS
    gc.collect()
    ctl.ask("reset")
    before = proc_status()
    kernel_before = sockstat_tcp_pages()
    slab_before = slab_bytes()
    client = make_client(args.api, per_host, pools, args.delay)
    cpu0 = time.process_time()
    t_start = time.monotonic()
    d = drive(client, args.api, urls, **common)
    t_end = time.monotonic()
    cpu = time.process_time() - cpu0
    at_end = proc_status()
    fds_at_end = open_fds()
    kernel_at_end = sockstat_tcp_pages()
    slab_at_end = slab_bytes()
    stats = ctl.ask("stats")
    t0 = time.perf_counter()
    client.clear() if args.api == "poolmanager" else client.close()
    close_s = time.perf_counter() - t0
    del client
    idle = ctl.ask("idle", 60)
    out["plain"] = {
        "ok": d.ok,
        "failed": d.failed,
        "errors": d.errors,
        "stopped": d.stopped,
        "wall_s": d.wall,
        "cpu_s": cpu,
        "server": stats,
        "fds_at_end": fds_at_end,
        # from the map's start: the first connection at the server, every request held there
        # (the peak), the last answer sent, the last result taken
        "timeline_s": {
            "first_accept": stats["first_accept"] - t_start,
            "all_held": stats["peak_in_flight_at"] - t_start,
            "last_answer": stats["last_answer"] - t_start,
            "last_result": t_end - t_start,
        },
        "rss_before": before["VmRSS"],
        "rss_at_end": at_end["VmRSS"],
        "hwm_at_end": at_end["VmHWM"],
        "rss_per_conn": (at_end["VmHWM"] - before["VmRSS"]) / n,
        "kernel_tcp_pages": [kernel_before, kernel_at_end],
        "kernel_slab_per_conn": (
            (slab_at_end - slab_before) / n if slab_at_end and slab_before else None
        ),
        "close_s": close_s,
        "open_after_close": idle["open"],
    }
    say(
        f"{args.backend}/{args.api}: {d.ok} ok, {d.failed} failed in {d.wall:.2f} s, "
        f"peak open {stats['peak_open']}, peak held {stats['peak_in_flight']}, "
        f"RSS {out['plain']['rss_per_conn'] / KIB:.2f} KiB/conn"
    )

    # pass 2: the Python heap, under tracemalloc
    gc.collect()
    ctl.ask("reset")
    tracemalloc.start()
    client = make_client(args.api, per_host, pools, args.delay)
    d2 = drive(client, args.api, urls, **common)
    current, peak = tracemalloc.get_traced_memory()
    sites = top_sites(tracemalloc.take_snapshot(), n, "conn")
    tracemalloc.stop()
    stats2 = ctl.ask("stats")
    client.clear() if args.api == "poolmanager" else client.close()
    del client
    ctl.ask("idle", 60)
    out["traced"] = {
        "ok": d2.ok,
        "failed": d2.failed,
        "errors": d2.errors,
        "stopped": d2.stopped,
        "peak_open": stats2["peak_open"],
        "heap_peak_per_conn": peak / n,
        "heap_at_end_per_conn": current / n,
        "top_sites_at_end": sites,
    }
    ctl.close()
    return out


# --- part 2: many host names -------------------------------------------------------------------
def run_names(args: argparse.Namespace, server: dict[str, Any]) -> dict[str, Any]:
    import fastpool
    from fastpool.resolver import Resolver

    n = args.names
    listeners = [tuple(x) for x in server["listeners"]]
    concurrency = args.concurrency
    raise_fd_limit(concurrency * 2 + 1024, "client")
    ctl = Control(tuple(server["control"]))  # type: ignore[arg-type]
    resolver = Resolver(backend=args.dns_backend, nameservers=[server["dns"]])
    session = fastpool.Session(resolver=resolver)
    pool_connections = session.get_adapter("http://").poolmanager.pools.maxsize
    fd_bound = pool_connections + concurrency + 64

    def urls() -> Iterator[str]:
        for i in range(n):
            _host, port = listeners[i % len(listeners)]
            yield f"http://h{i}{DNS_SUFFIX}:{port}/"

    # warm-up on names past the measured ones (imports, c-ares' first queries), same Session
    warm = [
        f"http://h{n + i}{DNS_SUFFIX}:{listeners[(n + i) % len(listeners)][1]}/" for i in range(16)
    ]
    w = drive(
        session, "session", warm, concurrency=8, per_host=None,
        dial_workers=args.dial_workers, delay=0.0, budget=args.budget,
    )  # fmt: skip
    if w.failed:
        return {"error": f"warm-up failed: {w.errors}"}
    gc.collect()
    ctl.ask("reset")
    traced = bool(args.trace_names)
    if traced:
        tracemalloc.start()
    tenth = max(n // 10, 1)
    sample_every = max(n // 50, 1)
    tenths: list[dict[str, Any]] = []
    fd_samples: list[int] = []
    snapshots: list[tracemalloc.Snapshot] = []
    manager = session.get_adapter("http://").poolmanager
    t_start = time.perf_counter()
    last = [t_start, 0, time.process_time()]

    def on_result(d: Drive) -> None:
        done = d.ok + d.failed
        if done % sample_every == 0:
            fd_samples.append(open_fds())
        if done % tenth == 0 and len(tenths) < 10:
            now = time.perf_counter()
            status = proc_status()
            rstats = resolver.stats
            tenths.append(
                {
                    "tenth": len(tenths) + 1,
                    "done": done,
                    "failed": d.failed,
                    "req_per_s": (done - last[1]) / max(now - last[0], 1e-9),
                    "cpu_us_per_req": (time.process_time() - last[2])
                    / max(done - last[1], 1)
                    * 1e6,
                    "rss": status["VmRSS"],
                    "fds": open_fds(),
                    "resolver_entries": rstats.entries,
                    "resolver_in_flight": rstats.in_flight,
                    "pools": len(manager.pools),
                    "gc_objects": len(gc.get_objects()),
                }
            )
            if traced and len(tenths) in (1, 10):
                snapshots.append(tracemalloc.take_snapshot())
            last[:] = [time.perf_counter(), done, time.process_time()]  # sampling left out

    cpu0 = time.process_time()
    d = drive(
        session,
        "session",
        urls(),
        concurrency=concurrency,
        per_host=None,
        dial_workers=args.dial_workers,
        delay=0.0,
        budget=args.budget,
        on_result=on_result,
    )
    cpu = time.process_time() - cpu0
    rstats = resolver.stats
    stats = ctl.ask("stats")
    grew: list[str] = []
    if traced and len(snapshots) == 2:
        for stat in snapshots[1].compare_to(snapshots[0], "lineno")[:8]:
            frame = stat.traceback[0]
            name = frame.filename.replace(str(REPO) + "/", "").replace(sys.prefix + "/", "")
            grew.append(
                f"{name}:{frame.lineno} {stat.size_diff:+,} B ({stat.count_diff:+,} blocks)"
            )
        tracemalloc.stop()
    session.close()
    resolver.close()
    ctl.ask("idle", 30)
    ctl.close()
    rss = [t["rss"] for t in tenths]
    half = rss[len(rss) // 2 - 1] if len(rss) >= 2 else None
    return {
        "names": n,
        "concurrency": concurrency,
        "dns_backend": args.dns_backend,
        "dial_workers": args.dial_workers,
        "pool_connections": pool_connections,
        "resolver_max_entries": resolver.max_entries,
        "fd_bound": fd_bound,
        "ok": d.ok,
        "failed": d.failed,
        "errors": d.errors,
        "stopped": d.stopped,
        "wall_s": d.wall,
        "cpu_s": cpu,
        "req_per_s": (d.ok + d.failed) / d.wall if d.wall else 0.0,
        "tenths": tenths,
        "fds_max": max(fd_samples + [t["fds"] for t in tenths], default=0),
        "fd_samples": fd_samples,
        "rss_growth_second_half": (rss[-1] - half) if half is not None else None,
        "resolver": {
            "hits": rstats.hits,
            "misses": rstats.misses,
            "entries": rstats.entries,
            "in_flight": rstats.in_flight,
        },
        "server": stats,
        "traced_growth_first_to_last_tenth": grew,
    }


# --- the orchestrator ---------------------------------------------------------------------------
class ServerProcess:
    """The server in its own process; stopped (by its pid) on exit."""

    def __init__(self, listeners: int, needed_fds: int) -> None:
        cmd = [sys.executable, __file__, "--_role", "server", "--listeners", str(listeners)]
        cmd += ["--_needed-fds", str(needed_fds)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.stop()
            raise RuntimeError("the server process did not start within 30 s")
        self.info: dict[str, Any] = json.loads(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def run_child(role: str, backend: str, argv: list[str], budget: float) -> dict[str, Any]:
    """One client process: its JSON line, or what went wrong (hung: killed by its pid)."""
    env = dict(os.environ)
    env.pop("FASTPOOL_NO_EXTENSIONS", None)
    if backend == "python":
        env["FASTPOOL_NO_EXTENSIONS"] = "1"
    cmd = [sys.executable, __file__, "--_role", role, "--_backend", backend, *argv]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE)
    try:
        stdout, _ = proc.communicate(timeout=budget + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"error": f"hung: killed after {budget + 60:.0f} s"}
    lines = [x for x in stdout.decode().splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": f"client exited with {proc.returncode}"}
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def client_main(args: argparse.Namespace) -> int:
    import fastpool._compat as compat

    faulthandler.dump_traceback_later(args.budget + 45, exit=True)
    server = json.loads(args.server)
    if compat.IMPLEMENTATION != args.backend:
        say(f"asked for the {args.backend} backend, got {compat.IMPLEMENTATION}")
        return 2
    import logging

    logging.getLogger("urllib3").setLevel(logging.ERROR)  # pool-full warnings at the end
    logging.getLogger("fastpool").setLevel(logging.ERROR)
    if args.role == "connections":
        result = run_connections(args, server)
    else:
        result = run_names(args, server)
    result["backend"] = compat.IMPLEMENTATION
    print(json.dumps(result), flush=True)
    return 0


def verdict_connections(r: dict[str, Any]) -> tuple[str, list[str]]:
    if "error" in r:
        return "FAILED", [r["error"]]
    p, t, n = r["plain"], r["traced"], r["connections"]
    missed = []
    if p["ok"] != n or t["ok"] != n:
        missed.append(f"completed {p['ok']}/{t['ok']} of {n}")
    if p["server"]["peak_open"] < n:
        missed.append(f"peak open {p['server']['peak_open']} < {n}")
    if p["server"]["peak_in_flight"] < n:
        missed.append(f"peak held {p['server']['peak_in_flight']} < {n}")
    if p["rss_per_conn"] >= MEMORY_TARGET:
        missed.append(f"RSS {p['rss_per_conn'] / KIB:.1f} KiB/conn")
    if t["heap_peak_per_conn"] >= MEMORY_TARGET:
        missed.append(f"heap {t['heap_peak_per_conn'] / KIB:.1f} KiB/conn")
    return ("met" if not missed else "missed"), missed


def verdict_names(r: dict[str, Any]) -> tuple[str, list[str]]:
    if "error" in r:
        return "FAILED", [r["error"]]
    missed = []
    if r["ok"] != r["names"]:
        missed.append(f"completed {r['ok']} of {r['names']}")
    tenths = r["tenths"]
    if len(tenths) >= 2 and tenths[-1]["req_per_s"] < 0.8 * tenths[0]["req_per_s"]:
        first, last = tenths[0], tenths[-1]
        missed.append(
            f"throughput fell: {first['req_per_s']:,.0f} -> {last['req_per_s']:,.0f} req/s, "
            f"CPU {first['cpu_us_per_req']:,.0f} -> {last['cpu_us_per_req']:,.0f} µs/req"
        )
    if r["fds_max"] > r["fd_bound"]:
        missed.append(f"fds {r['fds_max']} > {r['fd_bound']}")
    growth = r["rss_growth_second_half"]
    if growth is not None and growth > max(4 * KIB * KIB, 0.05 * tenths[-1]["rss"]):
        missed.append(f"RSS grew {growth / KIB / KIB:.1f} MiB in the second half")
    return ("met" if not missed else "missed"), missed


def _num(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(value, fmt)


def markdown_connections(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"### {args.connections:,} connections at once, each answer {args.delay:g} s late",
        "",
        (
            "| backend / API | ok | failed | wall s | all held at s | CPU s | peak open (server) | peak held "
            "(server) | fds at end | RSS KiB/conn | heap peak KiB/conn | kernel slab KiB/conn | target |"
        ),
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for key, r in results.items():
        verdict, why = verdict_connections(r)
        v = verdict + (f": {'; '.join(why)}" if why else "")
        if "error" in r:
            lines.append(f"| {key} | | | | | | | | | | | | {v} |")
            continue
        p, t = r["plain"], r["traced"]
        slab = p["kernel_slab_per_conn"]
        lines.append(
            f"| {key} | {p['ok'] + 0:,} | {p['failed'] + t['failed']} | {p['wall_s']:.2f} "
            f"| {p['timeline_s']['all_held']:.2f} "
            f"| {p['cpu_s']:.2f} | {p['server']['peak_open']:,} "
            f"| {p['server']['peak_in_flight']:,} | {p['fds_at_end']:,} "
            f"| {p['rss_per_conn'] / KIB:.2f} | {t['heap_peak_per_conn'] / KIB:.2f} "
            f"| {_num(slab and slab / KIB, '.1f')} | {v.replace('|', '/')} |"
        )
    return "\n".join(lines)


def markdown_names(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [f"### {args.names:,} host names, concurrency {args.concurrency}", ""]
    for key, r in results.items():
        verdict, why = verdict_names(r)
        lines.append(f"**{key}**: {verdict}" + (f" ({'; '.join(why)})" if why else ""))
        if "error" in r:
            lines.append("")
            continue
        lines += [
            "",
            (
                f"{r['ok']:,} ok, {r['failed']:,} failed in {r['wall_s']:.1f} s "
                f"({r['req_per_s']:,.0f}/s, CPU {r['cpu_s']:.1f} s); fds at most {r['fds_max']} "
                f"(bound {r['fd_bound']}); resolver {r['resolver']}; DNS queries "
                f"{r['server']['dns_queries']:,}"
            ),
            "",
            (
                "| tenth | done | req/s | CPU µs/req | RSS MiB | fds | resolver entries | pools "
                "| gc objects |"
            ),
            "|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for t in r["tenths"]:
            lines.append(
                f"| {t['tenth']} | {t['done']:,} | {t['req_per_s']:,.0f} "
                f"| {t['cpu_us_per_req']:,.0f} "
                f"| {t['rss'] / KIB / KIB:.1f} | {t['fds']} | {t['resolver_entries']:,} "
                f"| {t['pools']} | {t['gc_objects']:,} |"
            )
        if r["traced_growth_first_to_last_tenth"]:
            lines += ["", "tracemalloc, grown from the first tenth to the last:", ""]
            lines += [f"- `{x}`" for x in r["traced_growth_first_to_last_tenth"]]
        lines.append("")
    lines.append(
        '**threads backend**: not measured: `Resolver(backend="threads")` asks getaddrinfo, '
        "which takes its name servers from /etc/resolv.conf (port 53, no per-process "
        "override); it cannot be pointed at the local DNS server (`nameservers=` needs "
        '`backend="cares"`).'
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--connections", type=int, help="part 1's count (10000)")
    parser.add_argument("--delay", type=float, help="the server's delay, seconds (1.0)")
    parser.add_argument("--names", type=int, help="part 2's host names (100000)")
    parser.add_argument("--concurrency", type=int, help="part 2's requests in flight (128)")
    parser.add_argument("--listeners", type=int, help="server addresses (8)")
    parser.add_argument("--dial-workers", type=int, default=4, help="map's (4)")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--apis", nargs="+", choices=APIS, default=list(APIS))
    parser.add_argument("--trace-names", action="store_true", help="part 2 under tracemalloc")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny counts")
    parser.add_argument("--budget", type=float, help="seconds per client process (300)")
    # the processes this script starts
    parser.add_argument("--_role", dest="role", default="main", help=argparse.SUPPRESS)
    parser.add_argument("--_backend", dest="backend", help=argparse.SUPPRESS)
    parser.add_argument("--_api", dest="api", help=argparse.SUPPRESS)
    parser.add_argument("--_dns-backend", dest="dns_backend", help=argparse.SUPPRESS)
    parser.add_argument("--_server", dest="server", help=argparse.SUPPRESS)
    parser.add_argument("--_needed-fds", dest="needed_fds", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "connections": 200 if quick else 10_000,
        "delay": 0.2 if quick else 1.0,
        "names": 1_000 if quick else 100_000,
        "concurrency": 32 if quick else 128,
        "listeners": 4 if quick else 8,
        "budget": 60.0 if quick else 300.0,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if not (1 <= args.connections <= 100_000 and 0 < args.delay <= 60 and args.names >= 10):
        parser.error("--connections in 1..100000, --delay in (0, 60], --names >= 10")
    if not (1 <= args.listeners <= 250 and args.concurrency >= 1 and args.dial_workers >= 1):
        parser.error("--listeners in 1..250, --concurrency >= 1, --dial-workers >= 1")
    if args.role == "server":
        return serve(args.listeners, args.needed_fds)
    if args.role != "main":
        return client_main(args)

    needed = args.connections + 256
    raise_fd_limit(needed, "main")
    started, load_before = time.time(), os.getloadavg()
    # The whole program's watchdog: stacks, then exit 3 (children die with their pipes).
    n_children = len(args.backends) * (len(args.apis) * ("connections" in args.parts) + 1)
    faulthandler.dump_traceback_later(30 + n_children * (args.budget + 70), exit=True)
    server = ServerProcess(args.listeners, needed)
    info = server.info
    say(f"server pid {info['pid']}: {len(info['listeners'])} listeners, DNS {info['dns']}")
    common = ["--listeners", str(args.listeners), "--budget", str(args.budget)]
    common += ["--dial-workers", str(args.dial_workers), "--_server", json.dumps(info)]
    conns: dict[str, dict[str, Any]] = {}
    names: dict[str, dict[str, Any]] = {}
    try:
        if "connections" in args.parts:
            for backend in args.backends:
                for api in args.apis:
                    argv_ = [*common, "--_api", api, "--connections", str(args.connections)]
                    argv_ += ["--delay", str(args.delay)]
                    say(f"connections: {backend}/{api} ...")
                    conns[f"{backend} / {api}"] = run_child(
                        "connections", backend, argv_, args.budget
                    )
        if "names" in args.parts:
            for backend in args.backends:
                argv_ = [*common, "--_dns-backend", "cares", "--names", str(args.names)]
                argv_ += ["--concurrency", str(args.concurrency)]
                if args.trace_names:
                    argv_.append("--trace-names")
                say(f"names: {backend}/cares ...")
                names[f"{backend} / cares"] = run_child("names", backend, argv_, args.budget)
    finally:
        server.stop()

    import fastpool

    print(
        f"## Issue #16 at scale{' (SMOKE RUN: --quick, not a measurement)' if quick else ''}\n\n"
        f"{os.cpu_count()} CPUs, load {load_before[0]:.2f} -> {os.getloadavg()[0]:.2f}, "
        f"fastpool {fastpool.__version__}, Python {sys.version.split()[0]}, "
        f"somaxconn {info['somaxconn']}, RLIMIT_NOFILE "
        f"{resource.getrlimit(resource.RLIMIT_NOFILE)[0]}\n"
    )
    if conns:
        print(markdown_connections(conns, args) + "\n")
    if names:
        print(markdown_names(names, args) + "\n")
    report = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "quick": quick,
        "args": {k: v for k, v in vars(args).items() if k not in ("server", "role")},
        "load": {"before": load_before, "after": os.getloadavg()},
        "nproc": os.cpu_count(),
        "python": sys.version.split()[0],
        "somaxconn": info["somaxconn"],
        "connections": {k: {**v, "verdict": verdict_connections(v)} for k, v in conns.items()},
        "names": {k: {**v, "verdict": verdict_names(v)} for k, v in names.items()},
    }
    print(json.dumps({"scale": report}, default=str, allow_nan=False))
    bad = any("error" in r for r in [*conns.values(), *names.values()])
    bad = bad or any(
        r["plain"]["failed"] or r["traced"]["failed"] for r in conns.values() if "error" not in r
    )
    bad = bad or any(r["failed"] or r["stopped"] for r in names.values() if "error" not in r)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
