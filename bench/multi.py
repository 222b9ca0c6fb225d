"""``Session.map`` against threads, pycurl's multi interface and aiohttp: the crawl shape.

Issue #16 compares :meth:`fastpool.Session.map` (many requests in flight from one thread) with
libcurl's event loop in C (``pycurl.CurlMulti``) on nginx over loopback::

    python bench/multi.py [--shapes crawl200-http crawl200-https one-host-64] [--seconds S]
                          [--requests N] [--repeats R] [--clients KEY ...] [--awake] [--quick]

Shapes (``/100b`` bodies, as bench/peers uses):

* ``crawl200-http`` / ``crawl200-https``: 200 hosts (127.0.0.2 ... 127.0.0.201), round-robin;
* ``one-host-64``: 127.0.0.1 only, HTTP (fastpool.Session keeps 64 connections per host: a
  client with more in flight than that churns connections there, and the table shows it);
* ``crawl200-http-new`` / ``crawl200-https-new``: the crawl shapes with a new URL for every
  request (``/100b?n=<i>``, ``i`` counting up), as a real crawl's URLs are: the repeating shapes
  above send each host's one URL again and again, which lets a client's per-URL caches (a
  parsed URL, a rendered request) answer every time. Here the list holds ``--requests`` URLs
  (at most 1,000,000), and each run, warm-ups included and whatever its client, starts where
  the shape's last run stopped: a URL comes again only after every other URL of the list,
  more than any cache holds (fastpool's hold 1,024 at most, some of them process-wide), so
  every request pays what a new URL costs.

Clients (each bounded per run by ``--requests`` and ``--seconds``, 10 s per request):

* ``threads-16``: one ``fastpool.Session()`` shared by 16 threads (bench/peers' loop:
  round-robin over the URLs through one shared counter);
* ``map-16``/``map-64``/``map-256``: one ``fastpool.Session()``, ``session.map(urls,
  concurrency=C, timeout=10)`` from one thread over a generator that stops at the count or the
  deadline; every response must be a 200 with the whole body (``.content``);
* ``pm-map-16``/``-64``/``-256``: one ``fastpool.PoolManager(num_pools=256, maxsize=64)``
  (the Session's pool sizes, the bench CA verified), ``manager.map(items, concurrency=C)``:
  urllib3-style responses (status, headers, ``.data``), no requests objects;
* ``pm-light-16``/``-64``/``-256``: the same with ``map(..., light=True)``: the lightest
  results (``fastpool.LightResponse``: status, headers, body bytes, made after the connection
  went back), the issue's "lighter results";
* ``pycurl-multi-16``/``-64``/``-256``: one ``pycurl.CurlMulti`` with C reused easy handles
  (NOSIGNAL, CAINFO the bench CA, peer and host verification on, HTTP/1.1), driven through
  libcurl's socket interface (``M_SOCKETFUNCTION``/``M_TIMERFUNCTION`` on an epoll selector,
  ``socket_action``, ``info_read``), in this process: the way to drive libcurl from an event
  loop of one's own, with Python called on each socket's change; a finished handle is re-added
  with the next URL.
  ``M_MAXCONNECTS`` (libcurl's shared connection cache, by default 4 per added handle, which
  round-robin over 200 hosts would turn into a new connection per request) is raised to
  ``max(4 C, C + 2 hosts)``, and ``MAXAGE_CONN`` to nginx's keep-alive (300 s);
* ``pycurl-perform-16``/``-64``/``-256``: the same handles and connection cache driven as
  pycurl's own examples drive a multi, ``perform()`` then ``select()``: libcurl's whole event
  loop in C, with no Python callback per socket event (the socket interface above calls two or
  three a request, and costs about twice the CPU a request). ``select()`` cannot see a socket
  numbered 1024 or above, so this client runs in a child process of its own
  (``--pycurl-perform-child``, JSON lines over pipes), where libcurl's sockets are the only
  ones, with its limit on open files lowered to 1024: a socket that would be numbered higher
  fails to open, and that request fails. Its CPU is the child's. This is the pycurl figure
  issue #16's targets are judged against: the faster of the two;
* ``aiohttp-16``/``-64``/``-256`` when aiohttp is installed (else skipped, said so): one
  ``ClientSession``, ``TCPConnector(limit=C, keepalive_timeout=300)``, C tasks;
* ``raw-epoll-16``/``-64``/``-256``: no client, a floor: ``select.epoll`` over raw keep-alive
  sockets (TLS through ``ssl``), the same few request bytes per URL, each answer taken as done
  at its Content-Length, nothing parsed, pooled or built beyond that. The least any event loop
  written in Python pays here; what a client costs above it is its own.

Per shape every client is opened once and warmed up (every host visited at least twice, and at
least 4 requests per unit of concurrency) so its connections exist; then ``--repeats`` measured
runs, interleaved across the clients in a rotating order so load noise meets them alike.
Reported: the median req/s; the median ratio to ``threads-16`` *in the same repeat*; process
CPU time per request (``time.process_time()`` over the run: every thread of this process,
libcurl's C code included since it runs in-process, and for ``pycurl-perform-C`` the same
taken in its child; nginx and ``--awake``'s busy loops are other processes and are not
counted) and its ratio likewise; new connections per run (nginx's
stub_status ``accepts`` before and after: on HTTPS each is a TLS handshake), and the warm-up's.
Any non-200, wrong body length, error or hang marks the client FAILED for that shape (its
numbers are kept). Markdown tables per shape on stdout, then one JSON line with every number
(``{"multi": ...}``); progress on stderr.

Bounds: a run stops starting requests at ``--seconds``; map and the multi loop then finish what
they hold (map reads up to ``8 x concurrency`` items ahead, so a map run can overshoot its
deadline by that many requests: they are counted and timed, the ratio stays fair). Every run
drives its client from a worker thread (``pycurl-perform-C``: its child process) given a grace
of 1.5 x the request timeout past its deadline; a client still busy then is "hung" (FAILED,
no more runs). A watchdog over the
whole program dumps every thread's stack, stops nginx (by its pid) and exits with 3.

``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` are dropped from this process' environment:
``map`` has no per-request ``verify`` and requests' rule lets those variables override
``session.verify`` (psf/requests#3829), so both fastpool sessions get ``session.verify = CA``.

Defaults: 5 repeats of at most 2 s or 200,000 requests per client and shape, about 6 minutes
for everything on a quiet 2-core machine. ``--awake`` keeps idle vCPUs from halting (bench/awake.py). ``--quick`` is a smoke run (tiny
counts, seconds in all): it checks the machinery, it measures nothing. The full benchmark wants
a quiet machine. ``pytest bench/test_multi.py`` runs the smoke test.
"""

from __future__ import annotations

import argparse
import faulthandler
import io
import json
import math
import os
import resource
import select
import selectors
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

BENCH = Path(__file__).resolve().parent
# bench/ (nginx_server, awake), bench/peers/ (the measuring loop), and this checkout's fastpool.
for _path in (str(BENCH.parent), str(BENCH / "peers"), str(BENCH)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from awake import cpus_kept_awake
from clients import call_child, stop_child, version_of
from measure import (
    GRACE_PER_TIMEOUT,
    HUNG,
    MAX_FAILURES,
    RunResult,
    quiet_pool_logs,
    run_tasks,
    run_threads,
)
from nginx_server import FILES, RUN_ROOT, NginxServer

BASELINE = "threads-16"
TIMEOUT = 10.0  # seconds per request, every client
CONCURRENCIES = (16, 64, 256)
CA_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


# --- shapes -------------------------------------------------------------------------------------
#: the longest list of new URLs a shape makes (about 90 MB of strings)
MAX_NEW_URLS = 1_000_000


@dataclass(frozen=True)
class Shape:
    """GET ``path`` over ``scheme`` from ``hosts`` crawl hosts (0: 127.0.0.1 only)."""

    key: str
    title: str
    scheme: str
    hosts: int
    path: str = "/100b"
    #: a URL of its own per request (``?n=<i>``), for ``count`` requests; else each host's one
    new_urls: bool = False

    def urls(self, nginx: NginxServer, count: int = 0) -> list[str]:
        """The URLs the clients take in turn (``urls[i % len(urls)]`` for request ``i``):
        with ``new_urls``, ``count`` of them (at least one round of the hosts), all distinct."""
        if self.hosts:
            bases = nginx.https_urls() if self.scheme == "https" else nginx.http_urls()
            bases = bases[: self.hosts]
        else:
            bases = [nginx.https_url if self.scheme == "https" else nginx.http_url]
        if not self.new_urls:
            return [base + self.path for base in bases]
        count = min(max(count, len(bases)), MAX_NEW_URLS)
        return [f"{bases[i % len(bases)]}{self.path}?n={i}" for i in range(count)]

    @property
    def expected(self) -> int:
        return FILES[self.path.lstrip("/")]


SHAPES = [
    Shape("crawl200-http", "crawl: 200 hosts round-robin, HTTP, 100 B", "http", 200),
    Shape("crawl200-https", "crawl: 200 hosts round-robin, HTTPS, 100 B", "https", 200),
    Shape("one-host-64", "one host (127.0.0.1), HTTP, 100 B", "http", 0),
    Shape(
        "crawl200-http-new",
        "crawl: 200 hosts round-robin, HTTP, 100 B, a new URL per request",
        "http",
        200,
        new_urls=True,
    ),
    Shape(
        "crawl200-https-new",
        "crawl: 200 hosts round-robin, HTTPS, 100 B, a new URL per request",
        "https",
        200,
        new_urls=True,
    ),
]


@dataclass(frozen=True)
class Budget:
    repeats: int
    seconds: float
    requests: int
    warmup_seconds: float  # a bound only: the warm-up is counted (every host twice)


FULL = Budget(repeats=5, seconds=2.0, requests=200_000, warmup_seconds=30.0)
QUICK = Budget(repeats=2, seconds=0.2, requests=600, warmup_seconds=10.0)


# --- clients ------------------------------------------------------------------------------------
class Unavailable(RuntimeError):
    """The client cannot run here (its library is missing)."""


class Client:
    """One client: ``open(ca)``, bounded ``run(...)`` calls that keep connections, ``close()``."""

    key = ""
    concurrency = 1
    distributions: tuple[str, ...] = ()

    def open(self, ca_bundle: str) -> None:
        raise NotImplementedError

    def run(
        self, urls: list[str], max_requests: int, max_seconds: float, expected: int
    ) -> RunResult:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def versions(self) -> dict[str, str]:
        return {name: version_of(name) for name in self.distributions}


class _Bounds:
    """The count/time/failure bounds of a run driven from one thread, and its tally."""

    def __init__(self, max_requests: int, max_seconds: float, expected: int) -> None:
        self.max_requests = max_requests
        self.expected = expected
        self.issued = 0
        self.result = RunResult()
        self.wall = time.perf_counter()
        self.deadline = self.wall + max_seconds

    def more(self) -> bool:
        """Whether another request may start (count, deadline, failures)."""
        return (
            self.issued < self.max_requests
            and self.result.failures < MAX_FAILURES
            and time.perf_counter() < self.deadline
        )

    def ok(self, status: int, length: int) -> None:
        if status != 200:
            self.fail(f"HTTPError: status {status}")
        elif length != self.expected:
            self.fail(f"BodyLengthError: got {length} bytes, expected {self.expected}")
        else:
            self.result.done += 1

    def fail(self, error: str) -> None:
        self.result.failures += 1
        if not self.result.error:
            self.result.error = error[:300]

    def end(self) -> RunResult:
        self.result.elapsed = time.perf_counter() - self.wall
        return self.result


def _in_worker(drive: Callable[[], RunResult], max_seconds: float) -> RunResult:
    """Run ``drive`` (a single-threaded client's run) in a daemon thread joined with the grace
    the threaded clients get; CPU time of the whole process over the run."""
    grace = GRACE_PER_TIMEOUT * TIMEOUT
    box: list[Any] = []

    def target() -> None:
        try:
            box.append(drive())
        except BaseException as exc:  # noqa: BLE001 - reported as the run's failure
            box.append(exc)

    cpu, wall = time.process_time(), time.perf_counter()
    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(max_seconds + grace)
    if worker.is_alive():
        result = RunResult(failures=1, error=f"{HUNG}: still busy {grace:g} s after the deadline")
    elif isinstance(box[0], BaseException):
        result = RunResult(failures=1, error=f"{type(box[0]).__name__}: {box[0]}"[:300])
    else:
        result = box[0]
    result.cpu = time.process_time() - cpu
    if not result.elapsed:
        result.elapsed = time.perf_counter() - wall
    return result


def _session(ca_bundle: str) -> Any:
    import fastpool

    session = fastpool.Session()
    session.verify = ca_bundle
    for name in CA_ENV:  # they would override session.verify (see the module docstring)
        if os.environ.get(name):
            raise Unavailable(f"{name} is set: unset it, or it overrides session.verify")
    return session


class Threads(Client):
    """``fastpool.Session()`` shared by ``concurrency`` threads (bench/peers/measure.py)."""

    distributions = ("fastpool",)

    def __init__(self, threads: int) -> None:
        self.key, self.concurrency = f"threads-{threads}", threads

    def open(self, ca_bundle: str) -> None:
        self.session = _session(ca_bundle)

    def run(
        self, urls: list[str], max_requests: int, max_seconds: float, expected: int
    ) -> RunResult:
        get = self.session.get

        def fetch(url: str) -> int:
            response = get(url, timeout=TIMEOUT)
            if response.status_code != 200:
                raise RuntimeError(f"status {response.status_code}")
            return len(response.content)

        return run_threads(
            [fetch] * self.concurrency, urls, max_requests, max_seconds, expected, TIMEOUT
        )

    def close(self) -> None:
        self.session.close()


class Map(Client):
    """``fastpool.Session().map(urls, concurrency=C)`` from one thread."""

    distributions = ("fastpool",)

    def __init__(self, concurrency: int) -> None:
        self.key, self.concurrency = f"map-{concurrency}", concurrency

    def open(self, ca_bundle: str) -> None:
        self.session = _session(ca_bundle)

    def run(
        self, urls: list[str], max_requests: int, max_seconds: float, expected: int
    ) -> RunResult:
        def drive() -> RunResult:
            bounds = _Bounds(max_requests, max_seconds, expected)
            count = len(urls)

            def source() -> Iterator[str]:
                while bounds.more():
                    url = urls[bounds.issued % count]
                    bounds.issued += 1
                    yield url

            results = self.session.map(source(), concurrency=self.concurrency, timeout=TIMEOUT)
            for _request, response, error in results:
                if error is not None:
                    bounds.fail(f"{type(error).__name__}: {error}")
                else:
                    assert response is not None
                    bounds.ok(response.status_code, len(response.content))
            return bounds.end()

        return _in_worker(drive, max_seconds)

    def close(self) -> None:
        self.session.close()


class PoolManagerMap(Client):
    """``fastpool.PoolManager().map(urls, concurrency=C)`` from one thread: urllib3-style
    responses, no requests objects; with ``light``, ``map(..., light=True)``: the lightest
    results (``LightResponse``: status, headers, body bytes)."""

    distributions = ("fastpool",)

    def __init__(self, concurrency: int, light: bool = False) -> None:
        self.key = f"pm-{'light' if light else 'map'}-{concurrency}"
        self.concurrency = concurrency
        self.light = light

    def open(self, ca_bundle: str) -> None:
        import fastpool

        # The Session's pool sizes (256 pools of 64), and the same verification.
        self.manager = fastpool.PoolManager(
            num_pools=256, maxsize=64, cert_reqs="CERT_REQUIRED", ca_certs=ca_bundle
        )

    def run(
        self, urls: list[str], max_requests: int, max_seconds: float, expected: int
    ) -> RunResult:
        def drive() -> RunResult:
            bounds = _Bounds(max_requests, max_seconds, expected)
            count = len(urls)

            def source() -> Iterator[tuple[str, str, dict[str, Any]]]:
                while bounds.more():
                    url = urls[bounds.issued % count]
                    bounds.issued += 1
                    yield ("GET", url, {"timeout": TIMEOUT, "retries": False})

            results = self.manager.map(source(), concurrency=self.concurrency, light=self.light)
            for _request, response, error in results:
                if error is not None:
                    bounds.fail(f"{type(error).__name__}: {error}")
                else:
                    bounds.ok(response.status, len(response.data))
            return bounds.end()

        return _in_worker(drive, max_seconds)

    def close(self) -> None:
        self.manager.clear()


def _curl_handles(pycurl: Any, n: int, ca_bundle: str) -> list[Any]:
    """``n`` reused easy handles, as both pycurl clients configure them."""
    handles = []
    for _ in range(n):
        curl = pycurl.Curl()
        curl.body = io.BytesIO()  # pycurl.Curl takes attributes
        curl.setopt(pycurl.WRITEDATA, curl.body)
        curl.setopt(pycurl.NOSIGNAL, 1)
        curl.setopt(pycurl.CAINFO, ca_bundle)
        curl.setopt(pycurl.SSL_VERIFYPEER, 1)
        curl.setopt(pycurl.SSL_VERIFYHOST, 2)
        curl.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        curl.setopt(pycurl.TIMEOUT_MS, int(TIMEOUT * 1000))
        curl.setopt(pycurl.MAXAGE_CONN, 300)  # nginx's keepalive_timeout (default 118 s)
        handles.append(curl)
    return handles


def _refill(pycurl: Any, multi: Any, free: list[Any], urls: list[str], bounds: _Bounds) -> int:
    """Add a free handle (of :func:`_curl_handles`) for each next URL the bounds allow, its
    body buffer emptied; return how many were added."""
    added = 0
    while free and bounds.more():
        curl = free.pop()
        curl.body.seek(0)
        curl.body.truncate()
        curl.setopt(pycurl.URL, urls[bounds.issued % len(urls)])
        bounds.issued += 1
        multi.add_handle(curl)
        added += 1
    return added


def _take_ended(pycurl: Any, multi: Any, bounds: _Bounds, free: list[Any]) -> int:
    """Tally every transfer libcurl says has ended, hand its handle back to ``free``, and
    return how many ended."""
    ended = 0
    while True:
        queued, done, failed = multi.info_read()
        for curl in done:
            bounds.ok(curl.getinfo(pycurl.RESPONSE_CODE), curl.body.tell())
        for _curl, errno, message in failed:
            bounds.fail(f"pycurl.error: ({errno}) {message}")
        for curl in [*done, *(entry[0] for entry in failed)]:
            multi.remove_handle(curl)
            free.append(curl)
            ended += 1
        if not queued:
            return ended


def _maxconnects(concurrency: int, hosts: int) -> int:
    """libcurl's connection cache for ``concurrency`` handles over ``hosts`` hosts (its default,
    4 per added handle, would turn round-robin over 200 hosts into a new connection each)."""
    return max(4 * concurrency, concurrency + 2 * hosts)


class PycurlMulti(Client):
    """``pycurl.CurlMulti`` with ``concurrency`` reused easy handles."""

    distributions = ("pycurl",)

    def __init__(self, concurrency: int) -> None:
        self.key, self.concurrency = f"pycurl-multi-{concurrency}", concurrency
        self.hosts = 1

    def open(self, ca_bundle: str) -> None:
        try:
            import pycurl
        except ImportError as exc:
            raise Unavailable(f"pycurl is not installed ({exc})") from exc
        self.pycurl = pycurl
        self.multi = pycurl.CurlMulti()
        # libcurl's socket interface on an epoll selector: pycurl's multi.select() goes through
        # curl_multi_fdset, which cannot show sockets numbered 1024 or above (FD_SETSIZE), and
        # this process holds the other clients' connections (pycurl-perform-C runs apart)
        self.selector = selectors.DefaultSelector()
        self.timer: float | None = None  # monotonic time libcurl wants a timeout action at
        read, write = selectors.EVENT_READ, selectors.EVENT_WRITE
        self.events = {
            read: pycurl.CSELECT_IN,
            write: pycurl.CSELECT_OUT,
            read | write: pycurl.CSELECT_IN | pycurl.CSELECT_OUT,
        }
        self.multi.setopt(pycurl.M_SOCKETFUNCTION, self._on_socket)
        self.multi.setopt(pycurl.M_TIMERFUNCTION, self._on_timer)
        self.handles = _curl_handles(pycurl, self.concurrency, ca_bundle)
        self._cache_for(1)

    def _on_socket(self, what: int, fd: int, _multi: Any, _data: Any) -> None:
        pycurl, selector = self.pycurl, self.selector
        if what == pycurl.POLL_REMOVE or not what & (pycurl.POLL_IN | pycurl.POLL_OUT):
            try:
                selector.unregister(fd)
            except (KeyError, ValueError):
                pass
            return
        mask = (selectors.EVENT_READ if what & pycurl.POLL_IN else 0) | (
            selectors.EVENT_WRITE if what & pycurl.POLL_OUT else 0
        )
        try:
            selector.modify(fd, mask)
        except KeyError:
            selector.register(fd, mask)
        except OSError:  # a number closed behind our back and reused: start afresh
            selector.unregister(fd)
            selector.register(fd, mask)

    def _on_timer(self, ms: int) -> None:
        self.timer = None if ms < 0 else time.monotonic() + ms / 1000

    def _cache_for(self, hosts: int) -> None:
        self.hosts = hosts
        self.maxconnects = _maxconnects(self.concurrency, hosts)
        self.multi.setopt(self.pycurl.M_MAXCONNECTS, self.maxconnects)

    def run(
        self, urls: list[str], max_requests: int, max_seconds: float, expected: int
    ) -> RunResult:
        hosts = len({url.split("/")[2] for url in urls})
        if hosts != self.hosts:
            self._cache_for(hosts)
        pycurl, multi = self.pycurl, self.multi

        def drive() -> RunResult:
            bounds = _Bounds(max_requests, max_seconds, expected)
            free = list(self.handles)
            active = 0
            socket_action, select, events = multi.socket_action, self.selector.select, self.events
            while True:
                active += _refill(pycurl, multi, free, urls, bounds)  # (libcurl's timer: below)
                if not active:
                    return bounds.end()
                timer = self.timer
                if timer is not None and timer <= time.monotonic():
                    self.timer = None
                    socket_action(pycurl.SOCKET_TIMEOUT, 0)
                else:
                    wait = 1.0 if timer is None else min(max(timer - time.monotonic(), 0), 1.0)
                    for key, mask in select(wait):
                        socket_action(key.fd, events[mask])
                active -= _take_ended(pycurl, multi, bounds, free)

        return _in_worker(drive, max_seconds)

    def close(self) -> None:
        for curl in self.handles:
            curl.close()
        self.multi.close()
        self.selector.close()

    def versions(self) -> dict[str, str]:
        return {"pycurl": f"{version_of('pycurl')} ({self.pycurl.version})"}


#: select(2) sees only file descriptors below this (glibc's FD_SETSIZE)
FD_SETSIZE = 1024


class _PerformLoop:
    """pycurl's multi interface as its own examples drive it: ``perform()`` then ``select()``,
    libcurl's whole event loop in C, no Python callback per socket event. It runs in the
    child process of :class:`PycurlPerform`, whose limit on open files keeps every socket
    below 1024 (``select()`` sees none above); bench/instructions.py and bench/map_cpu.py
    run it in a fresh process of theirs with 64 handles, far below that."""

    def __init__(self, concurrency: int, ca_bundle: str) -> None:
        import pycurl

        self.pycurl, self.concurrency = pycurl, concurrency
        self.multi = pycurl.CurlMulti()
        self.handles = _curl_handles(pycurl, concurrency, ca_bundle)
        self.hosts = 0
        self.maxconnects = 0

    def run(
        self, urls: list[str], max_requests: int, max_seconds: float, expected: int
    ) -> RunResult:
        hosts = len({url.split("/")[2] for url in urls})
        if hosts != self.hosts:
            self.hosts, self.maxconnects = hosts, _maxconnects(self.concurrency, hosts)
            self.multi.setopt(self.pycurl.M_MAXCONNECTS, self.maxconnects)
        cpu = time.process_time()
        result = self._drive(urls, max_requests, max_seconds, expected)
        result.cpu = time.process_time() - cpu
        return result

    def _drive(
        self, urls: list[str], max_requests: int, max_seconds: float, expected: int
    ) -> RunResult:
        pycurl, multi = self.pycurl, self.multi
        bounds = _Bounds(max_requests, max_seconds, expected)
        free = list(self.handles)
        active = 0
        perform, again = multi.perform, pycurl.E_CALL_MULTI_PERFORM
        while True:
            active += _refill(pycurl, multi, free, urls, bounds)
            if not active:
                return bounds.end()
            status = again
            while status == again:
                status, _running = perform()
            ended = _take_ended(pycurl, multi, bounds, free)
            active -= ended
            if not ended:
                # libcurl's own advice: wait no longer than its timeout asks
                wait = multi.timeout()
                wait = 1.0 if wait < 0 else min(wait / 1000, 1.0)
                if not any(multi.fdset()):
                    time.sleep(wait)  # (pycurl's select() returns at once with no socket)
                else:
                    multi.select(wait)

    def close(self) -> None:
        for curl in self.handles:
            curl.close()
        self.multi.close()


def _perform_child(concurrency: int) -> int:
    """``python bench/multi.py --pycurl-perform-child C``: JSON lines on stdin and stdout,
    ``{"cmd": "open", "ca_bundle": PATH}`` -> ``{"versions": ...}``, ``{"cmd": "run", "urls":
    [...], "max_requests": N, "max_seconds": S, "expected": BYTES}`` -> ``{"result": ...,
    "maxconnects": N}``, ``{"cmd": "close"}`` -> ``{}``; an exception -> ``{"error": ...}``."""
    # select() sees no descriptor >= FD_SETSIZE: none may be opened here (a socket that would
    # be fails with EMFILE, and its request fails)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_SETSIZE, hard))
    loop: _PerformLoop | None = None
    for line in sys.stdin:
        message = json.loads(line)
        try:
            if message["cmd"] == "open":
                loop = _PerformLoop(concurrency, message["ca_bundle"])
                reply: dict[str, Any] = {
                    "versions": {"pycurl": f"{version_of('pycurl')} ({loop.pycurl.version})"},
                    "open_files": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                }
            elif message["cmd"] == "run":
                if loop is None:
                    raise RuntimeError("run before open")
                result = loop.run(
                    message["urls"],
                    message["max_requests"],
                    message["max_seconds"],
                    message["expected"],
                )
                reply = {"result": result.as_dict(), "maxconnects": loop.maxconnects}
            elif message["cmd"] == "close":
                if loop is not None:
                    loop.close()
                reply = {}
            else:
                raise ValueError(f"unknown command {message['cmd']!r}")
        except Exception as exc:  # noqa: BLE001 - the parent reports it
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(reply), flush=True)
        if message["cmd"] == "close":
            break
    return 0


class PycurlPerform(Client):
    """``pycurl-perform-C``: :class:`_PerformLoop` in a child process of its own, so that its
    sockets stay below ``FD_SETSIZE`` whatever this process holds; its CPU is the child's."""

    def __init__(self, concurrency: int) -> None:
        self.key, self.concurrency = f"pycurl-perform-{concurrency}", concurrency
        self.child: Any = None
        self.maxconnects = 0
        self.open_files = 0  # the child's limit on open files (at most FD_SETSIZE)
        self._versions: dict[str, str] = {}

    def open(self, ca_bundle: str) -> None:
        try:
            import pycurl  # noqa: F401 - the child needs it: a skip here, not a failure there
        except ImportError as exc:
            raise Unavailable(f"pycurl is not installed ({exc})") from exc

        self.child = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--pycurl-perform-child",
             str(self.concurrency)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            reply = self._call({"cmd": "open", "ca_bundle": ca_bundle}, 60.0)
        except BaseException:
            self.close()  # nothing else would stop it: the shape skips a client that failed
            raise
        self._versions = reply["versions"]
        self.open_files = reply["open_files"]

    def run(
        self, urls: list[str], max_requests: int, max_seconds: float, expected: int
    ) -> RunResult:
        message = {
            "cmd": "run",
            "urls": urls,
            "max_requests": max_requests,
            "max_seconds": max_seconds,
            "expected": expected,
        }
        grace = GRACE_PER_TIMEOUT * TIMEOUT
        wall = time.perf_counter()
        try:
            reply = self._call(message, max_seconds + grace)
        except TimeoutError:
            child, self.child = self.child, None
            child.kill()  # our own child, by its handle: nothing more runs on it
            child.wait()
            return RunResult(
                failures=1,
                elapsed=time.perf_counter() - wall,
                error=f"{HUNG}: still busy {grace:g} s after the deadline",
            )
        self.maxconnects = reply["maxconnects"]
        return RunResult(**reply["result"])

    def close(self) -> None:
        child, self.child = self.child, None
        if child is not None:
            stop_child(child, self.key, 10.0)

    def versions(self) -> dict[str, str]:
        return self._versions

    def _call(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        if self.child is None or self.child.poll() is not None:
            raise RuntimeError(f"{self.key}: the child process is not running")
        return self._call_on(self.child, message, timeout)

    def _call_on(self, child: Any, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        return call_child(child, message, timeout, self.key)


class RawEpoll(Client):
    """The floor of a Python event loop: ``select.epoll`` over raw keep-alive sockets, one
    fixed request per URL, answers framed by Content-Length only; no parser, no pool, no
    objects, no checks a real client makes (a reference for the others, not a client)."""

    def __init__(self, concurrency: int) -> None:
        self.key, self.concurrency = f"raw-epoll-{concurrency}", concurrency

    def open(self, ca_bundle: str) -> None:
        if not hasattr(select, "epoll"):
            raise Unavailable("select.epoll is Linux's")
        self.context = ssl.create_default_context(cafile=ca_bundle)
        self.idle: dict[str, list[Any]] = {}  # origin -> its idle sockets, kept across runs

    def _connect(self, scheme: str, host: str, port: int) -> Any:
        sock = socket.create_connection((host, port), timeout=TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if scheme == "https":
            sock = self.context.wrap_socket(sock, server_hostname=host)
        sock.setblocking(False)
        return sock

    def run(
        self, urls: list[str], max_requests: int, max_seconds: float, expected: int
    ) -> RunResult:
        targets = []
        for url in urls:
            scheme, _, authority, path = url.split("/", 3)
            host, port = authority.rsplit(":", 1)
            request = f"GET /{path} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode()
            targets.append((scheme.rstrip(":"), host, int(port), authority, request))
        # made in the worker, as the other clients' bounds: its clock starts there
        return _in_worker(
            lambda: _RawRun(self, targets, _Bounds(max_requests, max_seconds, expected)).drive(),
            max_seconds,
        )

    def close(self) -> None:
        for socks in self.idle.values():
            for sock in socks:
                sock.close()
        self.idle.clear()


class _RawRun:
    """One run of :class:`RawEpoll`: its requests in flight on one epoll, each bounded by
    ``TIMEOUT``; a failure is counted, and its socket closed."""

    def __init__(self, client: RawEpoll, targets: list[Any], bounds: _Bounds) -> None:
        self.client = client
        self.targets = targets
        self.bounds = bounds
        self.poller = select.epoll()
        # fd -> [socket, origin, bytes so far, when it must have ended]
        self.flight: dict[int, list[Any]] = {}

    def drive(self) -> RunResult:
        flight = self.flight
        next_check = time.monotonic()
        try:
            while True:
                self.fill()
                if not flight:
                    return self.bounds.end()
                for fd, _ in self.poller.poll(0.5):
                    self.receive(fd)
                now = time.monotonic()
                if now >= next_check:  # each request's own timeout, looked at twice a second
                    next_check = now + 0.5
                    for fd in [fd for fd, entry in flight.items() if entry[3] <= now]:
                        self.end(fd, f"timed out after {TIMEOUT} s")
        finally:
            self.poller.close()
            for sock, *_ in flight.values():
                sock.close()  # cut short: never reused

    def fill(self) -> None:
        """Start requests up to the concurrency, while the bounds allow."""
        bounds, client = self.bounds, self.client
        while len(self.flight) < client.concurrency and bounds.more():
            scheme, host, port, origin, request = self.targets[bounds.issued % len(self.targets)]
            bounds.issued += 1
            idle = client.idle.setdefault(origin, [])
            try:
                sock = idle.pop() if idle else client._connect(scheme, host, port)
            except OSError as exc:
                bounds.fail(f"{type(exc).__name__}: {exc}")
                continue
            try:
                sent: Any = sock.send(request)  # a few dozen bytes: the buffer takes them
            except OSError as exc:
                sent = exc
            if sent != len(request):
                sock.close()
                bounds.fail(f"send: {sent!r}")
                continue
            fd = sock.fileno()
            self.flight[fd] = [sock, origin, b"", time.monotonic() + TIMEOUT]
            self.poller.register(fd, select.EPOLLIN)

    def receive(self, fd: int) -> None:
        """Read what came; end the request once its answer is whole (or cannot be)."""
        entry = self.flight[fd]
        sock, closed = entry[0], False
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    closed = True
                    break
                entry[2] += data
        except (BlockingIOError, ssl.SSLWantReadError):
            pass
        except OSError as exc:
            self.end(fd, f"{type(exc).__name__}: {exc}")
            return
        answer = entry[2]
        head_end = answer.find(b"\r\n\r\n")
        at = answer.find(b"\r\nContent-Length: ", 0, max(head_end, 0))
        if head_end < 0 or at < 0:
            if closed or len(answer) > 65536:
                self.end(fd, f"no Content-Length answer: {answer[:80]!r}")
            return
        try:
            length = int(answer[at + 18 : answer.index(b"\r\n", at + 2)])
            status = int(answer[9:12])
        except ValueError:
            self.end(fd, f"unreadable answer: {answer[:80]!r}")
            return
        if len(answer) < head_end + 4 + length:
            if closed:
                self.end(fd, "closed within the body")
            return
        self.bounds.ok(status, length)
        self.end(fd, keep=not closed and b"\r\nConnection: close" not in answer[:head_end])

    def end(self, fd: int, error: str = "", keep: bool = False) -> None:
        sock, origin, *_ = self.flight.pop(fd)
        self.poller.unregister(fd)
        if error:
            self.bounds.fail(error)
        if keep:
            self.client.idle[origin].append(sock)
        else:
            sock.close()


class Aiohttp(Client):
    """One ``aiohttp.ClientSession``, ``concurrency`` tasks, ``limit=concurrency``."""

    distributions = ("aiohttp",)

    def __init__(self, concurrency: int) -> None:
        self.key, self.concurrency = f"aiohttp-{concurrency}", concurrency

    def open(self, ca_bundle: str) -> None:
        import asyncio

        try:
            import aiohttp
        except ImportError as exc:
            raise Unavailable(f"aiohttp is not installed ({exc})") from exc
        context = ssl.create_default_context(cafile=ca_bundle)

        async def make() -> Any:
            return aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    ssl=context, limit=self.concurrency, keepalive_timeout=300
                ),
                timeout=aiohttp.ClientTimeout(total=TIMEOUT),
            )

        self.loop = asyncio.new_event_loop()
        self.session = self.loop.run_until_complete(make())

    def run(
        self, urls: list[str], max_requests: int, max_seconds: float, expected: int
    ) -> RunResult:
        get = self.session.get

        async def fetch(url: str) -> int:
            async with get(url) as response:
                body = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"status {response.status}")
                return len(body)

        return self.loop.run_until_complete(
            run_tasks(fetch, urls, self.concurrency, max_requests, max_seconds, expected, TIMEOUT)
        )

    def close(self) -> None:
        self.loop.run_until_complete(self.session.close())
        self.loop.close()


def all_clients() -> list[Client]:
    """Every client, in table order (``threads-16``, the baseline, first)."""
    return [
        Threads(16),
        *(Map(c) for c in CONCURRENCIES),
        *(PoolManagerMap(c) for c in CONCURRENCIES),
        *(PoolManagerMap(c, light=True) for c in CONCURRENCIES),
        *(PycurlMulti(c) for c in CONCURRENCIES),
        *(PycurlPerform(c) for c in CONCURRENCIES),
        *(Aiohttp(c) for c in CONCURRENCIES),
        *(RawEpoll(c) for c in CONCURRENCIES),
    ]


# --- measuring ----------------------------------------------------------------------------------
def _timed_run(
    client: Client, urls: list[str], nginx: NginxServer, n: int, seconds: float, expected: int
) -> dict[str, Any]:
    before = nginx.connections()
    result = client.run(urls, n, seconds, expected)
    return {**result.as_dict(), "connections": nginx.connections() - before}


def measure_shape(
    shape: Shape, clients: list[Client], nginx: NginxServer, budget: Budget
) -> dict[str, dict[str, Any]]:
    """Open, warm up, measure (interleaved, rotating order) and close every client."""
    # a new-URL shape: no URL twice within a run (a run stops at budget.requests), and each
    # run goes on where the last one stopped (see the module docstring)
    urls, expected = shape.urls(nginx, budget.requests), shape.expected
    cursor = _Cursor(urls, shape.new_urls)
    out: dict[str, dict[str, Any]] = {
        c.key: {"runs": [], "error": "", "skipped": ""} for c in clients
    }
    live = _open_all(clients, out, nginx.ca_bundle)
    for client in live:
        entry = out[client.key]
        _warm_up(client, entry, cursor.next(), max(shape.hosts, 1), nginx, budget, expected)
        cursor.used(entry.get("warmup"))
    for repeat in range(budget.repeats):
        # A failed warm-up is measured still (numbers kept); a hung or broken client is not.
        order = [c for c in live if not _stopped(out[c.key]["error"])]
        shift = repeat % len(order) if order else 0
        for client in order[shift:] + order[:shift]:
            entry = out[client.key]
            try:
                run = _timed_run(
                    client, cursor.next(), nginx, budget.requests, budget.seconds, expected
                )
            except Exception as exc:  # noqa: BLE001
                entry["error"] = f"run: {type(exc).__name__}: {exc}"[:300]
                continue
            cursor.used(run)
            run["repeat"] = repeat
            entry["runs"].append(run)
            if run["error"].startswith(HUNG):
                entry["error"] = f"run {repeat + 1}: {run['error']}"
    for client in live:
        _close(client, out[client.key])
    return out


class _Cursor:
    """Where a new-URL shape's next run starts in its list: after every URL the runs before
    it sent (outside the timed part: a rotated copy of the list). A repeating shape's list is
    given as it is."""

    def __init__(self, urls: list[str], rotate: bool) -> None:
        self.urls = urls
        self.rotate = rotate
        self.start = 0

    def next(self) -> list[str]:
        if not self.rotate or not self.start:
            return self.urls
        return self.urls[self.start :] + self.urls[: self.start]

    def used(self, run: dict[str, Any] | None) -> None:
        """The run (a ``_timed_run`` dict, or None) sent its ``done`` and ``failures``."""
        if self.rotate and run:
            sent = run.get("done", 0) + run.get("failures", 0)
            self.start = (self.start + sent) % len(self.urls)


def _stopped(error: str) -> bool:
    return HUNG in error or error.startswith(("run", "warm-up: exception"))


def _open_all(clients: list[Client], out: dict[str, dict[str, Any]], ca: str) -> list[Client]:
    live: list[Client] = []
    for client in clients:
        entry = out[client.key]
        try:
            client.open(ca)
        except Unavailable as exc:
            entry["skipped"] = str(exc)
            continue
        except Exception as exc:  # noqa: BLE001 - a failed client, not dropped
            entry["error"] = f"open: {type(exc).__name__}: {exc}"[:300]
            continue
        entry["versions"] = client.versions()
        live.append(client)
    return live


def _warm_up(
    client: Client,
    entry: dict[str, Any],
    urls: list[str],
    hosts: int,
    nginx: NginxServer,
    budget: Budget,
    expected: int,
) -> None:
    """Every one of ``hosts`` twice, and 4 requests per unit of concurrency (bounded by time
    too): the URLs go round the hosts in turn."""
    n = max(20, 2 * hosts, 4 * client.concurrency)
    try:
        warm = _timed_run(client, urls, nginx, n, budget.warmup_seconds, expected)
    except Exception as exc:  # noqa: BLE001
        entry["error"] = f"warm-up: exception: {type(exc).__name__}: {exc}"[:300]
        return
    entry["warmup"] = warm
    if warm["error"].startswith(HUNG):
        entry["error"] = f"warm-up: {warm['error']}"
    elif warm["failures"] or warm["done"] < n:
        entry["error"] = f"warm-up: {warm['done']}/{n} done; {warm['error']}"[:300]
    if isinstance(client, (PycurlMulti, PycurlPerform)):
        entry["maxconnects"] = client.maxconnects


def _close(client: Client, entry: dict[str, Any]) -> None:
    if HUNG in entry["error"]:
        return  # its worker may still hold it: left to the process' end
    try:
        client.close()
    except Exception as exc:  # noqa: BLE001
        entry["error"] = entry["error"] or f"close: {type(exc).__name__}: {exc}"[:300]


def summarize(per_client: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Medians per client, ratios against the baseline's run of the same repeat, status."""
    base = {r["repeat"]: r for r in per_client.get(BASELINE, {}).get("runs", [])}
    summary: dict[str, dict[str, Any]] = {}
    for key, entry in per_client.items():
        runs = entry["runs"]
        rates, cpus, speed, cost = [], [], [], []
        for run in runs:
            rate = run["done"] / run["elapsed"] if run["elapsed"] > 0 else 0.0
            cpu = run["cpu"] / run["done"] if run["done"] else math.nan
            rates.append(rate)
            cpus.append(cpu)
            twin = base.get(run["repeat"])
            if twin and twin["done"] and twin["elapsed"] > 0 and run["done"]:
                speed.append(rate / (twin["done"] / twin["elapsed"]))
                cost.append(cpu / (twin["cpu"] / twin["done"]))
        failures = sum(r["failures"] for r in runs) + (entry.get("warmup") or {}).get("failures", 0)
        first_error = entry["error"] or next((r["error"] for r in runs if r["error"]), "")
        if entry["skipped"]:
            status = "skipped"
        elif entry["error"] or failures or not runs:
            status = "FAILED"
        else:
            status = "ok"
        summary[key] = {
            "status": status,
            "req_per_s": _median(rates),
            "ratio": _median(speed),
            "cpu_us_per_req": _median(cpus) * 1e6,
            "cpu_ratio": _median(cost),
            "new_connections": _median([r["connections"] for r in runs]),
            "warmup_connections": (entry.get("warmup") or {}).get("connections"),
            "requests": sum(r["done"] for r in runs),
            "failures": failures,
            "runs": len(runs),
            "error": entry["skipped"] or first_error,
        }
    return summary


def _median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def markdown(shape: Shape, summary: dict[str, dict[str, Any]]) -> str:
    """One shape's table."""

    def num(value: Any, fmt: str) -> str:
        return (
            "—"
            if value is None or (isinstance(value, float) and math.isnan(value))
            else format(value, fmt)
        )

    lines = [
        f"### {shape.key}: {shape.title}",
        "",
        (
            f"| client | req/s | vs {BASELINE} | CPU µs/req | CPU vs {BASELINE} "
            "| new conns/run | warm-up conns | requests | failures | status |"
        ),
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for key, s in summary.items():
        status = s["status"] + (f": {s['error'][:120]}" if s["error"] else "")
        lines.append(
            f"| {key} | {num(s['req_per_s'], ',.0f')} | {num(s['ratio'], '.2f')}x "
            f"| {num(s['cpu_us_per_req'], '.0f')} | {num(s['cpu_ratio'], '.2f')}x "
            f"| {num(s['new_connections'], 'g')} | {num(s['warmup_connections'], 'g')} "
            f"| {s['requests']} | {s['failures']} | {status.replace('|', '/')} |"
        )
    return "\n".join(lines)


# --- the program --------------------------------------------------------------------------------
class Watchdog:
    """After ``seconds``: every thread's stack to stderr, ``on_fire()``, then exit code 3."""

    def __init__(self, seconds: float, on_fire: Callable[[], None]) -> None:
        self.done = threading.Event()
        self.seconds = seconds
        self.on_fire = on_fire
        self.thread = threading.Thread(target=self._watch, daemon=True, name="watchdog")

    def _watch(self) -> None:
        if self.done.wait(self.seconds):
            return
        print(f"multi: watchdog: still running after {self.seconds:.0f} s", file=sys.stderr)
        faulthandler.dump_traceback(all_threads=True)
        try:
            self.on_fire()
        finally:
            os._exit(3)

    def __enter__(self) -> Watchdog:  # noqa: PYI034 - a bench helper, not subclassed
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.done.set()


def run_all(
    shapes: list[Shape], clients: Callable[[], list[Client]], budget: Budget, awake: bool
) -> dict[str, Any]:
    """Start nginx, measure every shape (fresh clients each), stop nginx."""
    import shutil

    run_dir = RUN_ROOT / f"nginx-multi-{os.getpid()}"
    server = NginxServer(run_dir, hosts=max([s.hosts for s in shapes] + [0]), workers=1)
    per_run = budget.seconds + GRACE_PER_TIMEOUT * TIMEOUT
    n_clients = len(clients())
    limit = 120 + len(shapes) * n_clients * (budget.warmup_seconds + budget.repeats * per_run)
    results: dict[str, Any] = {}
    try:
        with Watchdog(limit, server.stop), server as nginx, cpus_kept_awake(awake):
            for shape in shapes:
                t0 = time.monotonic()
                raw = measure_shape(shape, clients(), nginx, budget)
                results[shape.key] = {"raw": raw, "summary": summarize(raw)}
                print(f"multi: {shape.key} done in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return results


def _finite(value: Any) -> Any:
    """``value`` with NaN (no runs, no baseline) as null, so the line is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def main(argv: list[str] | None = None) -> int:
    args_given = sys.argv[1:] if argv is None else argv
    if args_given[:1] == ["--pycurl-perform-child"]:
        return _perform_child(int(args_given[1]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    keys = [s.key for s in SHAPES]
    parser.add_argument("--shapes", nargs="+", metavar="KEY", choices=keys, help="default: all")
    parser.add_argument("--clients", nargs="+", metavar="KEY", help="default: all (+ baseline)")
    parser.add_argument("--seconds", type=float, help=f"time bound of a run ({FULL.seconds})")
    parser.add_argument("--requests", type=int, help=f"count bound of a run ({FULL.requests})")
    parser.add_argument("--repeats", type=int, help=f"measured runs per client ({FULL.repeats})")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny counts, no numbers")
    parser.add_argument(
        "--awake",
        action="store_true",
        help="keep every CPU awake with SCHED_IDLE busy loops (bench/awake.py): no vCPU halts",
    )
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else FULL
    budget = Budget(
        repeats=args.repeats or preset.repeats,
        seconds=args.seconds or preset.seconds,
        requests=args.requests or preset.requests,
        warmup_seconds=preset.warmup_seconds,
    )
    if budget.repeats < 1 or not 0 < budget.seconds <= 60 or not 1 <= budget.requests <= 10**7:
        parser.error("--repeats >= 1, --seconds in (0, 60], --requests in 1..10^7")
    known = [c.key for c in all_clients()]
    if args.clients and set(args.clients) - set(known):
        parser.error(f"unknown clients {sorted(set(args.clients) - set(known))}; known: {known}")

    def clients() -> list[Client]:
        return [c for c in all_clients() if not args.clients or c.key in {*args.clients, BASELINE}]

    shapes = [s for s in SHAPES if not args.shapes or s.key in args.shapes]
    for name in CA_ENV:
        os.environ.pop(name, None)
    _raise_fd_limit()
    quiet_pool_logs()
    started, load_before = time.time(), os.getloadavg()
    results = run_all(shapes, clients, budget, args.awake)

    print(
        f"## Session.map vs threads vs pycurl multi{' (SMOKE RUN: --quick, not a measurement)' if args.quick else ''}\n\n"
        f"medians of {budget.repeats} runs of <= {budget.requests} requests / {budget.seconds:g} s; "
        f"ratios against {BASELINE} in the same repeat; CPU: process time (libcurl's included); "
        f"{'CPUs kept awake' if args.awake else 'idle CPUs may halt'}; "
        f"load {load_before[0]:.2f} -> {os.getloadavg()[0]:.2f}\n"
    )
    for shape in shapes:
        print(markdown(shape, results[shape.key]["summary"]) + "\n")
    versions: dict[str, str] = {}
    for shape_results in results.values():
        for entry in shape_results["raw"].values():
            versions.update(entry.get("versions", {}))
    report = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "quick": args.quick,
        "awake": args.awake,
        "budget": budget.__dict__,
        "load": {"before": load_before, "after": os.getloadavg()},
        "nproc": os.cpu_count(),
        "python": sys.version.split()[0],
        "openssl": ssl.OPENSSL_VERSION,
        "versions": versions,
        "baseline": BASELINE,
        "results": results,
    }
    print(json.dumps({"multi": _finite(report)}, default=str, allow_nan=False))
    failed = any(s["status"] == "FAILED" for r in results.values() for s in r["summary"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
