"""The ``fastpool`` command: ``demo``, ``get URL...``, ``crawl FILE`` and ``bench``.

Exit status: 0 on success; 1 when some URL failed (``get``/``crawl``), the demo saw counts that
differ from the article, or an unexpected error happened; 2 for bad usage; 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Callable, NamedTuple, Optional
from urllib.parse import urlsplit

import requests
import requests.adapters

from .. import __version__, implementation
from ..exceptions import describe_error
from ..schedule import HostScheduler
from ..stats import PoolStats
from ..stats import advise as pool_advice
from .demo import (
    PoolLog,
    Style,
    _fastpool_name,
    collect_pool_stats,
    format_seconds,
    run_demo,
    run_throughput,
)

__all__ = (
    "FetchReport",
    "FetchResult",
    "build_parser",
    "collect_pool_stats",
    "crawl_in_threads",
    "fetch_one",
    "fetch_urls",
    "main",
    "make_session",
    "pool_sizes",
    "read_url_file",
    "schedule_urls",
)

_DEFAULT_PORTS = {"http": 80, "https": 443}


# --- argument types ------------------------------------------------------------------------------


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _seconds_at_least_zero(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _per_second(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of requests per second, got {text!r}"
        ) from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _output_path(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("expected a file name, or - for stdout")
    return text


def _dask_target(text: str) -> str:
    if text.startswith("local:"):
        _int_at_least(1)(text[len("local:") :])
        return text
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a scheduler address or local:N")
    return text


def _thread_list(text: str) -> tuple[int, ...]:
    parse = _int_at_least(1)
    counts = tuple(parse(part) for part in text.split(",") if part.strip())
    if not counts:
        raise argparse.ArgumentTypeError("expected thread counts such as 1,8")
    return counts


# --- sessions ------------------------------------------------------------------------------------


def make_session(
    client: str = "fastpool",
    pool_connections: int = 10,
    pool_maxsize: int = 10,
    pool_block: bool = False,
    max_retries: int = 0,
) -> tuple[requests.Session, str]:
    """Build the session ``get``/``crawl`` use; returns ``(session, description)``.

    ``client`` (default ``"fastpool"``) is ``"fastpool"`` (fastpool.Session with
    fastpool.HTTPAdapter, each falling back to requests' when not available) or ``"requests"``
    (requests.Session with the stock HTTPAdapter). The pool options are those of
    ``requests.adapters.HTTPAdapter`` and have its defaults.
    """
    session_cls: type[requests.Session] = requests.Session
    adapter_cls: type[requests.adapters.HTTPAdapter] = requests.adapters.HTTPAdapter
    if client == "fastpool":
        # Each falls back to requests' class while fastpool's is missing (the description
        # returned says which ones were used).
        session_cls = _fastpool_name("Session") or session_cls
        adapter_cls = _fastpool_name("HTTPAdapter") or adapter_cls
    elif client != "requests":
        raise ValueError(f"client must be 'fastpool' or 'requests', got {client!r}")
    session = session_cls()
    for prefix in ("http://", "https://"):
        session.mount(
            prefix,
            adapter_cls(
                pool_connections=pool_connections,
                pool_maxsize=pool_maxsize,
                max_retries=max_retries,
                pool_block=pool_block,
            ),
        )
    return session, f"{_qualname(session_cls)} + {_qualname(adapter_cls)}"


def _qualname(cls: type) -> str:
    # fastpool's public names live at the top level; requests' are shown where they are defined.
    module = "fastpool" if cls.__module__.startswith("fastpool") else cls.__module__
    return f"{module}.{cls.__name__}"


# --- fetching many URLs --------------------------------------------------------------------------


@dataclass
class FetchReport:
    """The outcome of :func:`fetch_urls`."""

    urls: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (url, "Kind: detail")
    bytes_received: int = 0
    seconds: float = 0.0
    connections_started: int = 0
    connections_discarded: int = 0
    started_per_host: dict[str, int] = field(default_factory=dict)

    @property
    def responses(self) -> int:
        """URLs that got an HTTP response (any status)."""
        return sum(self.statuses.values())


def error_kind(described: str) -> str:
    """The kind of a :func:`describe_error` text: the class, plus the reason for socket errors."""
    kind, _, detail = described.partition(": ")
    socket_kinds = ("ConnectionError", "ConnectTimeout", "ReadTimeout", "SSLError", "ProxyError")
    if kind in socket_kinds and detail and len(detail) <= 40:
        return f"{kind} ({detail})"
    return kind


class Progress:
    """A one-line progress bar on ``stream`` (stderr), drawn only when ``enabled`` and at most
    ten times a second. :meth:`message` prints a line above it."""

    def __init__(self, stream: IO[str], total: int, enabled: bool) -> None:
        self.stream = stream
        self.total = total
        self.enabled = enabled
        self.done = 0
        self.errors = 0
        self._started = time.perf_counter()
        self._drawn = 0.0
        self._lock = threading.Lock()

    def advance(self, failed: bool) -> None:
        """Count one finished URL."""
        with self._lock:
            self.done += 1
            self.errors += failed
            now = time.perf_counter()
            if self.enabled and (now - self._drawn >= 0.1 or self.done == self.total):
                self._drawn = now
                self._draw(now)

    def message(self, line: str, stream: IO[str] | None = None) -> None:
        """Write ``line`` (to ``stream``, default the bar's) without garbling the bar."""
        with self._lock:
            self._clear()
            target = stream or self.stream
            target.write(line + "\n")
            target.flush()
            if self.enabled and self.done:
                self._draw(time.perf_counter())

    def close(self) -> None:
        """Remove the bar."""
        with self._lock:
            self._clear()

    def _clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def _draw(self, now: float) -> None:
        width = 30
        filled = width * self.done // max(self.total, 1)
        rate = self.done / max(now - self._started, 1e-9)
        bar = "#" * filled + "-" * (width - filled)
        errors = f"  {self.errors} error{'' if self.errors == 1 else 's'}" if self.errors else ""
        line = f"\r[{bar}] {self.done}/{self.total}  {rate:,.0f}/s{errors}"
        self.stream.write(line + "\033[K")
        self.stream.flush()


#: ``--pool-connections`` left to the command is the number of hosts, within these bounds.
MIN_POOL_CONNECTIONS = 10
MAX_POOL_CONNECTIONS = 10_000
#: The longest a crawl thread waits before it looks at the scheduler again.
_MAX_WAIT = 1.0


class FetchResult(NamedTuple):
    """One URL's outcome, as ``--output`` writes it (see :meth:`to_json`).

    ``status`` is the HTTP status (None when the request failed), ``headers`` the response
    headers (a plain dict), ``size`` the body bytes (decoded, as ``len(response.content)``),
    ``elapsed`` the seconds from sending the request to the end of the body (None for a failed
    request under the map engine), ``error``
    ``"Kind: detail"`` from :func:`fastpool.exceptions.describe_error` (None on success),
    ``final_url`` the URL after redirects (None when there were none), ``position`` the URL's
    index in the input.
    """

    url: str
    status: Optional[int]  # noqa: UP045 - NamedTuple fields are evaluated; 3.9 has no X | None
    headers: dict[str, str]
    size: int
    elapsed: Optional[float]  # noqa: UP045
    error: Optional[str]  # noqa: UP045
    final_url: Optional[str] = None  # noqa: UP045
    position: int = 0

    def to_json(self) -> dict[str, Any]:
        """The ``--output`` record: url, status, headers, size, elapsed, error, final_url."""
        return {
            "url": self.url,
            "status": self.status,
            "headers": self.headers,
            "size": self.size,
            "elapsed": None if self.elapsed is None else round(self.elapsed, 6),
            "error": self.error,
            "final_url": self.final_url,
        }


def fetch_one(
    session: requests.Session, url: str, timeout: float, position: int = 0
) -> FetchResult:
    """GET ``url`` on ``session`` and read the body; a failure is a result, never raised."""
    started = time.perf_counter()
    try:
        response = session.get(url, timeout=timeout)
        size = len(response.content)
    except Exception as exc:  # noqa: BLE001 - a failure is a per-URL result, the run goes on
        elapsed = time.perf_counter() - started
        return FetchResult(url, None, {}, 0, elapsed, describe_error(exc), None, position)
    elapsed = time.perf_counter() - started
    final_url = response.url if response.history else None
    headers = dict(response.headers)
    return FetchResult(url, response.status_code, headers, size, elapsed, None, final_url, position)


def host_key(url: str) -> str:
    """The politeness key of ``url``: its host name, lower-cased ("" when it has none). Every
    scheme and port of a host share it (as ``fastpool.dask.host_key``)."""
    try:
        return urlsplit(url.strip()).hostname or ""
    except ValueError:
        return ""


def schedule_urls(urls: Sequence[str], scheduler: HostScheduler) -> HostScheduler:
    """Queue ``urls`` on ``scheduler`` by host (key: ``(position, host)``, item: the URL). A
    URL without a host (invalid) gets a host of its own, so it neither waits for nor delays
    anything: it fails at once."""
    for position, url in enumerate(urls):
        host: Hashable = host_key(url) or ("", position)
        scheduler.push((position, host), host, url)
    return scheduler


def crawl_in_threads(
    session: requests.Session,
    scheduler: HostScheduler,
    threads: int = 8,
    timeout: float = 10.0,
) -> Iterator[FetchResult]:
    """Fetch what ``scheduler`` holds with ``threads`` threads sharing ``session``; yields each
    :class:`FetchResult` as it completes (completion order).

    The threads take turns on the scheduler under one lock: each pops the next URL allowed
    now, or waits on a condition, at most until :meth:`HostScheduler.next_ready` and never
    longer than a second, for a ``done()`` or a delay to end. ``threads`` bounds the requests
    in flight. Closing the generator early stops the threads after their current request.

    ``--engine threads``; the default engine is :func:`crawl_with_map`.
    """
    cond = threading.Condition()
    results: queue.Queue[FetchResult | None] = queue.Queue()
    stopping = [False]
    clock = scheduler.clock

    def next_url() -> tuple[tuple[int, Hashable], str] | None:
        with cond:
            while not stopping[0]:
                popped = scheduler.pop()
                if popped is not None:
                    if not len(scheduler):
                        cond.notify_all()  # the last URL is out: idle threads may leave
                    return popped
                if not len(scheduler):
                    return None  # nothing queued: the others finish what is in flight
                wake = scheduler.next_ready()
                wait = _MAX_WAIT if wake is None else min(max(wake - clock(), 0.0), _MAX_WAIT)
                cond.wait(wait)
            return None

    def worker() -> None:
        try:
            while (popped := next_url()) is not None:
                (position, host), url = popped
                try:
                    result = fetch_one(session, url, timeout, position)
                finally:
                    with cond:
                        scheduler.done(host)
                        cond.notify()
                results.put(result)
        finally:
            results.put(None)  # this thread is finished

    count = max(1, min(threads, len(scheduler)))
    workers = [
        threading.Thread(target=worker, name=f"fastpool-crawl-{n}", daemon=True)
        for n in range(count)
    ]
    for thread in workers:
        thread.start()
    running = count
    try:
        while running:
            try:
                result = results.get(timeout=_MAX_WAIT)
            except queue.Empty:
                if not any(thread.is_alive() for thread in workers) and results.empty():
                    return  # every thread ended (its last put was lost): nothing more comes
                continue
            if result is None:
                running -= 1
            else:
                yield result
    finally:
        with cond:
            stopping[0] = True
            cond.notify_all()
        for thread in workers:
            thread.join(timeout=0.1)


def crawl_with_map(
    session: requests.Session,
    urls: Sequence[str],
    concurrency: int = 8,
    timeout: float = 10.0,
    *,
    per_host: int | None = None,
    delay: float = 0.0,
    rate: float | None = None,
) -> Iterator[FetchResult]:
    """Fetch ``urls`` with :meth:`fastpool.Session.map` from this thread, ``concurrency`` in
    flight; yields each :class:`FetchResult` as it completes. The politeness limits are
    map's own (its scheduler is the same :class:`~fastpool.schedule.HostScheduler`).
    ``elapsed`` is the responses' ``elapsed`` summed over the redirect hops (None for a
    request that failed: map does not time those)."""
    items = [requests.Request("GET", url) for url in urls]
    position = {id(item): n for n, item in enumerate(items)}
    results = session.map(  # type: ignore[attr-defined]
        items, concurrency=concurrency, per_host=per_host, delay=delay, rate=rate,
        timeout=timeout,
    )  # fmt: skip
    try:
        for given, response, error in results:
            url = given.url
            n = position[id(given)]
            if error is not None:
                yield FetchResult(url, None, {}, 0, None, describe_error(error), None, n)
                continue
            elapsed = sum(r.elapsed.total_seconds() for r in (*response.history, response))
            final_url = response.url if response.history else None
            yield FetchResult(
                url, response.status_code, dict(response.headers), len(response.content),
                elapsed, None, final_url, n,
            )  # fmt: skip
    finally:
        results.close()


def fetch_urls(
    session: requests.Session,
    urls: Sequence[str],
    threads: int = 8,
    timeout: float = 10.0,
    progress: Progress | None = None,
    on_result: Callable[[FetchResult], None] | None = None,
    on_error: Callable[[str, str], None] | None = None,
    *,
    per_host: int | None = None,
    delay: float = 0.0,
    rate: float | None = None,
    max_hosts: int | None = None,
    engine: str = "threads",
) -> FetchReport:
    """GET every URL with ``threads`` (default 8) threads sharing ``session``; ``timeout``
    (default 10 s) applies to connect and to each read. A URL that fails (invalid, unreachable,
    timed out) is recorded and reported through ``on_error(url, "Kind: detail")``; the run
    carries on. Bodies are read fully and dropped; ``on_result(result)`` is told every
    :class:`FetchResult`.

    Hosts take turns (:class:`fastpool.schedule.HostScheduler`): at most ``per_host`` (default
    None: only ``threads``) requests in flight per host, starts to one host at least ``delay``
    (default 0) seconds apart, at most ``rate`` (default None: no cap) starts a second overall,
    and at most ``max_hosts`` (default None: all) hosts taking turns at once.

    ``engine``: ``"threads"`` (default: ``threads`` threads) or ``"map"``
    (:meth:`fastpool.Session.map` from this thread, ``threads`` requests in flight;
    ``max_hosts`` does not apply, map reads a bounded number of URLs ahead)."""
    report = FetchReport(urls=len(urls))
    scheduler = HostScheduler(per_host=per_host, delay=delay, rate=rate, max_hosts=max_hosts)
    schedule_urls(urls, scheduler)
    with PoolLog() as log:
        started = time.perf_counter()
        if engine == "map":
            results = crawl_with_map(
                session, urls, threads, timeout, per_host=per_host, delay=delay, rate=rate
            )
        elif engine == "threads":
            results = crawl_in_threads(session, scheduler, threads, timeout)
        else:
            raise ValueError(f"engine must be 'map' or 'threads', got {engine!r}")
        for result in results:
            if result.error is not None:
                report.errors[error_kind(result.error)] += 1
                report.failed.append((result.url, result.error))
                if on_error is not None:
                    on_error(result.url, result.error)
            else:
                assert result.status is not None
                report.statuses[result.status] += 1
                report.bytes_received += result.size
            if on_result is not None:
                on_result(result)
            if progress is not None:
                progress.advance(result.error is not None)
        report.seconds = time.perf_counter() - started
    report.connections_started = log.started
    report.connections_discarded = log.discarded
    report.started_per_host = log.started_per_host()
    return report


def pool_sizes(
    hosts: int,
    threads: int,
    per_host: int | None = None,
    pool_connections: int | None = None,
    pool_maxsize: int | None = None,
) -> tuple[int, int]:
    """``(pool_connections, pool_maxsize)`` for a crawl of ``hosts`` hosts: the given ones, or
    crawler-grade defaults. ``pool_connections``: a pool for every host, at least
    :data:`MIN_POOL_CONNECTIONS` (requests' 10) and at most :data:`MAX_POOL_CONNECTIONS`;
    ``pool_maxsize``: the requests one host can have in flight (``per_host``, else
    ``threads``), at least 10 (requests' default), so no connection is discarded."""
    if pool_connections is None:
        pool_connections = min(max(hosts, MIN_POOL_CONNECTIONS), MAX_POOL_CONNECTIONS)
    if pool_maxsize is None:
        pool_maxsize = max(10, min(threads, per_host or threads))
    return pool_connections, pool_maxsize


def count_hosts(urls: Iterable[str]) -> int:
    """Distinct (scheme, host, port) origins among the valid http(s) URLs."""
    origins = set()
    for url in urls:
        try:
            parts = urlsplit(url.strip())
            port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
        except ValueError:
            continue
        if parts.scheme.lower() in _DEFAULT_PORTS and parts.hostname:
            origins.add((parts.scheme.lower(), parts.hostname, port))
    return len(origins)


def advice(
    report: FetchReport,
    hosts: int,
    args: argparse.Namespace,
    stats: PoolStats | None = None,
    pool_hosts: int | None = None,
) -> list[str]:
    """Suggestions where the numbers make them obvious: from the pool ``stats`` when there are
    some (:func:`fastpool.stats.advise`), else from the pools' log; then timeouts and errors.
    ``pool_hosts`` (default ``hosts``) is how many hosts one Session's pools served (on a
    cluster: the most any one worker was given)."""
    tips = []
    if stats is not None:
        tips += pool_advice(
            stats, threads=args.threads, hosts=hosts if pool_hosts is None else pool_hosts
        )
    elif hosts > args.pool_connections and report.connections_started > hosts:
        tips.append(
            f"{hosts} hosts but --pool-connections {args.pool_connections}: pools were evicted "
            f"and connections re-opened; try --pool-connections {hosts}."
        )
    if stats is None and report.connections_discarded:
        tips.append(
            f"{report.connections_discarded} connections were discarded because the pool was "
            f"full (--pool-maxsize {args.pool_maxsize} < --threads {args.threads}); "
            f"try --pool-maxsize {args.threads}."
        )
    timeouts = sum(n for kind, n in report.errors.items() if "Timeout" in kind)
    if timeouts:
        tips.append(
            f"{timeouts} requests timed out after {args.timeout:g} s; try a larger --timeout."
        )
    connect_errors = sum(n for kind, n in report.errors.items() if kind.startswith("Connection"))
    if connect_errors and args.max_retries == 0:
        tips.append(
            "connection errors are not retried by default; --max-retries N retries "
            "failed connects (never requests that reached the server)."
        )
    return tips


def print_summary(
    out: IO[str],
    style: Style,
    report: FetchReport,
    args: argparse.Namespace,
    client: str,
    hosts: int,
    stats: PoolStats | None = None,
    pool_hosts: int | None = None,
    extra_rows: Sequence[tuple[str, str]] = (),
) -> None:
    """The summary after ``get``/``crawl``: statuses, errors, throughput, connections, the
    ``extra_rows`` (``crawl --dask``: the cluster), the pool ``stats`` table (when given; the
    busiest 10 hosts unless ``--verbose``), advice (``pool_hosts``: see :func:`advice`)."""
    rate = report.urls / report.seconds if report.seconds > 0 else 0.0
    out.write(
        style.bold(f"fetched {report.urls} URLs")
        + f" in {format_seconds(report.seconds)} with {args.threads} threads ({client})\n"
    )
    rows = [("throughput", f"{rate:,.1f} URLs/s, {_format_bytes(report.bytes_received)} received")]
    statuses = ", ".join(f"{code} x {n}" for code, n in sorted(report.statuses.items()))
    rows.append(("status", statuses or "none"))
    errors = [f"{n} x {kind}" for kind, n in report.errors.most_common()] or ["none"]
    rows += [("errors" if i == 0 else "", text) for i, text in enumerate(errors)]
    started = report.connections_started
    connections = f"{started} started for {hosts} host{'' if hosts == 1 else 's'}"
    if started and report.responses:
        connections += f" ({report.responses / started:.1f} responses per connection)"
    connections += f", {report.connections_discarded} discarded because the pool was full"
    rows.append(("connections", connections))
    if args.verbose and report.started_per_host:
        per_host = sorted(report.started_per_host.items(), key=lambda item: (-item[1], item[0]))
        rows += [("", f"{n} x {host}") for host, n in per_host[:20]]
    rows += list(extra_rows)
    if stats is not None:
        table = stats.table(max_hosts=None if args.verbose else 10)
        rows += [("pools" if i == 0 else "", line) for i, line in enumerate(table)]
    # A tip can be long: wrapped beside its label, each tip a "- " item.
    for number, tip in enumerate(advice(report, hosts, args, stats, pool_hosts)):
        lines = textwrap.wrap(tip, 85, initial_indent="- ", subsequent_indent="  ")
        label = "advice" if number == 0 else ""
        rows += [(label if i == 0 else "", style.yellow(line)) for i, line in enumerate(lines)]
    for label, text in rows:
        out.write(f"  {label:<13}{text}\n")


def _format_bytes(size: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return f"{size:.1f} GiB"


def read_url_file(stream: IO[str]) -> list[str]:
    """URLs one per line; blank lines and lines starting with ``#`` are ignored."""
    urls = []
    for line in stream:
        text = line.strip()
        if text and not text.startswith("#"):
            urls.append(text)
    return urls


# --- commands ------------------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    style = Style.for_stream(out, args.color)
    surprises = run_demo(out, style, quick=args.quick, throughput=not args.no_throughput)
    return 1 if surprises else 0


def _size_pools(urls: Sequence[str], args: argparse.Namespace) -> int | None:
    """Fill in ``--pool-connections``/``--pool-maxsize`` left to the command (see
    :func:`pool_sizes`); returns the number of hosts that may take turns at once (None: all).

    When there are more hosts than the pools it sized (past :data:`MAX_POOL_CONNECTIONS`),
    half as many hosts as pools take turns at a time: the pools' LRU then keeps the pools of
    the hosts being crawled (plus those of hosts just finished), where a round robin over all
    hosts would evict every pool before its host's next turn. A ``--pool-connections`` given
    is used as given, with all hosts taking turns."""
    hosts = count_hosts(urls)
    auto = args.pool_connections is None
    connections, maxsize = pool_sizes(
        hosts, args.threads, args.per_host, args.pool_connections, args.pool_maxsize
    )
    args.pool_connections, args.pool_maxsize = connections, maxsize
    if auto and hosts > connections:
        return max(1, connections // 2)
    return None


def _open_output(args: argparse.Namespace, out: IO[str], err: IO[str]) -> IO[str] | None:
    """The ``--output`` stream (``-``: ``out``), or None; raises OSError when it can't open."""
    if args.output is None:
        return None
    if args.output == "-":
        return out
    return open(args.output, "w", encoding="utf-8", newline="\n")


def _politeness_row(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The summary's "politeness" row, only when a politeness flag was given."""
    parts = []
    if args.per_host is not None:
        parts.append(f"{args.per_host} in flight per host")
    if args.delay:
        parts.append(f"{args.delay:g} s between starts to a host")
    if args.rate is not None:
        parts.append(f"at most {args.rate:g} requests/s")
    return [("politeness", ", ".join(parts))] if parts else []


def _cmd_fetch(urls: list[str], args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    if not urls:
        err.write("fastpool: error: no URLs to fetch\n")
        return 2
    if args.engine == "map" and args.client != "fastpool":
        err.write("fastpool: error: --engine map needs the fastpool client (Session.map)\n")
        return 2
    max_hosts = _size_pools(urls, args)
    try:
        output = _open_output(args, out, err)
    except OSError as exc:
        err.write(
            f"fastpool {args.command}: error: cannot write {args.output}: {exc.strerror or exc}\n"
        )
        return 2
    if args.output == "-":
        out = err  # stdout is the JSON lines; the summary and --verbose lines go to stderr
    try:
        session, client = make_session(
            args.client, args.pool_connections, args.pool_maxsize, args.pool_block,
            args.max_retries,
        )  # fmt: skip
        out_style = Style.for_stream(out, args.color)
        err_style = Style.for_stream(err, args.color)
        show_bar = bool(getattr(err, "isatty", lambda: False)()) and not args.no_progress
        progress = Progress(err, len(urls), show_bar)

        def on_error(url: str, described: str) -> None:
            progress.message(f"{err_style.red('error')} {url}: {described}")

        def on_result(result: FetchResult) -> None:
            if output is not None:
                output.write(json.dumps(result.to_json()) + "\n")
                if args.output == "-":
                    output.flush()  # a reader of the stream sees each record as it comes
            if args.verbose and result.error is None:
                size = _format_bytes(result.size)
                progress.message(f"{result.status} {size:>10}  {result.url}", out)

        try:
            report = fetch_urls(
                session, urls, args.threads, args.timeout, progress, on_result, on_error,
                per_host=args.per_host, delay=args.delay, rate=args.rate, max_hosts=max_hosts,
                engine=_engine(args, session),
            )  # fmt: skip
            stats = collect_pool_stats(session)
        finally:
            progress.close()
            session.close()
    finally:
        if output is not None and args.output != "-":
            output.close()
    rows = _politeness_row(args)
    print_summary(out, out_style, report, args, client, count_hosts(urls), stats, None, rows)
    return 1 if report.failed else 0


def _engine(args: argparse.Namespace, session: requests.Session) -> str:
    """``--engine``, or its default: map where the session has it (fastpool's), else threads."""
    if args.engine is not None:
        return str(args.engine)
    return "map" if hasattr(session, "map") else "threads"


def _cmd_get(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    return _cmd_fetch(list(args.urls), args, out, err)


def _cmd_crawl(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    if args.file == "-":
        urls = read_url_file(sys.stdin)
    else:
        try:
            with open(args.file, encoding="utf-8") as stream:
                urls = read_url_file(stream)
        except OSError as exc:
            err.write(f"fastpool crawl: error: cannot read {args.file}: {exc.strerror or exc}\n")
            return 2
    if args.dask is not None:
        return _cmd_crawl_dask(urls, args, out, err)
    return _cmd_fetch(urls, args, out, err)


def _dials(stats: PoolStats | None) -> tuple[int, int]:
    """(connections dialed, connections discarded because the pool was full) in ``stats``: new
    ones, plus those re-dialed in place of a stale or expired idle one (the pools' log says
    "Starting new" or "Resetting dropped" for each, which is what ``crawl`` counts)."""
    if stats is None:
        return 0, 0
    total = stats.total
    dials = total.created + total.dropped_stale + total.expired_idle + total.expired_lifetime
    return dials, total.discarded_full


def _cmd_crawl_dask(urls: list[str], args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """``crawl --dask``: the same crawl on a Dask cluster (fastpool.dask), the same output."""
    if not urls:
        err.write("fastpool: error: no URLs to fetch\n")
        return 2
    if args.client != "fastpool":
        err.write("fastpool crawl: error: --dask runs fastpool.Session on the workers; "
                  "--client requests cannot be used with it\n")  # fmt: skip
        return 2
    if args.delay or args.rate is not None:
        err.write("fastpool crawl: error: --delay and --rate are not supported with --dask "
                  "(--per-host is)\n")  # fmt: skip
        return 2
    try:
        from .. import dask as cluster_crawl
    except ImportError as exc:
        err.write(f"fastpool crawl: error: {exc}\n")
        return 2
    from ..stats import merge

    _size_pools(urls, args)
    try:
        output = _open_output(args, out, err)
    except OSError as exc:
        err.write(f"fastpool crawl: error: cannot write {args.output}: {exc.strerror or exc}\n")
        return 2
    if args.output == "-":
        out = err  # stdout is the JSON lines; the summary and --verbose lines go to stderr
    try:
        return _crawl_dask(cluster_crawl, merge, urls, args, out, err, output)
    finally:
        if output is not None and args.output != "-":
            output.close()


def _crawl_dask(
    cluster_crawl: Any,
    merge: Callable[..., PoolStats],
    urls: list[str],
    args: argparse.Namespace,
    out: IO[str],
    err: IO[str],
    output: IO[str] | None,
) -> int:

    out_style = Style.for_stream(out, args.color)
    err_style = Style.for_stream(err, args.color)
    show_bar = bool(getattr(err, "isatty", lambda: False)()) and not args.no_progress
    # The Session each worker builds: the adapter and pool options of the single-machine crawl.
    settings = {
        "adapter": {
            "pool_connections": args.pool_connections,
            "pool_maxsize": args.pool_maxsize,
            "pool_block": args.pool_block,
            "max_retries": args.max_retries,
        }
    }
    started = time.perf_counter()
    with cluster_crawl.connect(args.dask) as (client, where):
        setup = time.perf_counter() - started
        progress = Progress(err, len(urls), show_bar)

        def on_event(text: str) -> None:
            progress.message(f"{err_style.yellow('cluster')} {text}")

        report = FetchReport(urls=len(urls))
        try:
            crawl = cluster_crawl.crawl(
                client, urls, settings=settings, threads=args.threads, timeout=args.timeout,
                per_host=args.per_host, on_event=on_event,
            )  # fmt: skip
            # The workers' Sessions may predate this crawl (a shared scheduler): this crawl's
            # connections are the difference.
            before = _dials(merge(cluster_crawl.cluster_stats(client, crawl.name).values()))
            crawl_started = time.perf_counter()
            for result in crawl:
                if output is not None:
                    record = FetchResult(
                        result.url, result.status, result.headers, result.size,
                        result.elapsed, result.error, None, result.position,
                    )  # fmt: skip
                    output.write(json.dumps(record.to_json()) + "\n")
                if result.error is not None:
                    report.errors[error_kind(result.error)] += 1
                    report.failed.append((result.url, result.error))
                    progress.message(f"{err_style.red('error')} {result.url}: {result.error}")
                else:
                    assert result.status is not None
                    report.statuses[result.status] += 1
                    report.bytes_received += result.size
                    if args.verbose:
                        size = _format_bytes(result.size)
                        progress.message(f"{result.status} {size:>10}  {result.url}", out)
                progress.advance(result.error is not None)
            report.seconds = time.perf_counter() - crawl_started
            stats = crawl.stats()
        finally:
            progress.close()
    after = _dials(stats)
    report.connections_started = max(0, after[0] - before[0])
    report.connections_discarded = max(0, after[1] - before[1])
    per_host: Counter[str] = Counter()
    for host in stats.hosts:
        per_host[host.host] += host.created + host.dropped_stale + host.expired_idle
        per_host[host.host] += host.expired_lifetime
    report.started_per_host = dict(per_host)
    workers_used = len(crawl.hosts_per_worker)
    lost = f", {len(crawl.workers_lost)} lost" if crawl.workers_lost else ""
    rows = [
        ("cluster", f"{where} (ready in {format_seconds(setup)}); {args.threads} threads on each"),
        ("", f"{workers_used} workers given hosts{lost}, {crawl.submitted} tasks of up to "
             + f"{crawl.batch_size} URLs, {crawl.resubmitted} URLs sent again"),
    ]  # fmt: skip
    hosts_each = max(crawl.hosts_per_worker.values(), default=None)
    client_name = "fastpool.Session + fastpool.HTTPAdapter on each Dask worker"
    rows += _politeness_row(args)
    print_summary(
        out, out_style, report, args, client_name, count_hosts(urls), stats, hosts_each, rows
    )
    return 1 if report.failed else 0


def _cmd_bench(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    style = Style.for_stream(out, args.color)
    out.write(
        style.bold("fastpool bench")
        + f" - backend: {implementation()}; up to {args.requests:,} GETs of {args.size} B per "
        f"row, at most {args.seconds:g} s each, server in a child process\n"
    )
    run_throughput(out, style, args.requests, args.seconds, args.threads, f"/bytes/{args.size}")
    out.write("   " + style.dim("one run: indicative; use bench/ for medians") + "\n")
    return 0


# --- the parser ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``fastpool`` argument parser with its four sub-commands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour output: auto (default: on a terminal, unless NO_COLOR is set), always, never",
    )

    fetch = argparse.ArgumentParser(add_help=False)
    fetch.add_argument(
        "--threads", "-t", type=_int_at_least(1), default=8, help="concurrent requests (default 8)"
    )
    fetch.add_argument(
        "--pool-connections",
        type=_int_at_least(1),
        default=None,
        help="host pools kept per adapter (default: the number of hosts in the input, "
        f"{MIN_POOL_CONNECTIONS} to {MAX_POOL_CONNECTIONS:,})",
    )
    fetch.add_argument(
        "--pool-maxsize",
        type=_int_at_least(1),
        default=None,
        help="idle connections kept per host (default: the requests one host can have in "
        "flight, --per-host or else --threads, at least 10)",
    )
    fetch.add_argument(
        "--per-host",
        type=_int_at_least(1),
        default=None,
        metavar="N",
        help="requests in flight per host (default: no cap but --threads)",
    )
    fetch.add_argument(
        "--delay",
        type=_seconds_at_least_zero,
        default=0.0,
        metavar="SECONDS",
        help="politeness: the minimum time between two request starts to one host (default 0)",
    )
    fetch.add_argument(
        "--rate",
        type=_per_second,
        default=None,
        metavar="N",
        help="at most N requests started per second overall (default: no cap)",
    )
    fetch.add_argument(
        "--output",
        "-o",
        type=_output_path,
        default=None,
        metavar="FILE",
        help="write one JSON object per URL to FILE ('-' for stdout, the summary then goes to "
        "stderr): url, status, headers, size, elapsed, error, final_url",
    )
    fetch.add_argument(
        "--pool-block",
        action="store_true",
        help="wait for a free connection instead of opening extra ones",
    )
    fetch.add_argument(
        "--timeout",
        type=_positive_float,
        default=10.0,
        help="connect and read timeout in seconds (default 10)",
    )
    fetch.add_argument(
        "--max-retries",
        type=_int_at_least(0),
        default=0,
        help="retries of failed connects (default 0, as requests)",
    )
    fetch.add_argument(
        "--engine",
        choices=("map", "threads"),
        default=None,
        help="map (the default with the fastpool client: Session.map, --threads requests in "
        "flight from one thread) or threads (--threads threads; the only one with --client "
        "requests)",
    )
    fetch.add_argument(
        "--client",
        choices=("fastpool", "requests"),
        default="fastpool",
        help="fastpool (default) or requests' stock Session and adapter",
    )
    fetch.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="print a line for every response, not just for errors",
    )
    fetch.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (it is only shown when stderr is a terminal)",
    )

    parser = argparse.ArgumentParser(
        prog="fastpool",
        description="fastpool: fast, observable HTTP connection pooling for requests users.",
        epilog="Run 'fastpool COMMAND --help' for a command's options.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"fastpool {__version__} (backend: {implementation()})",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="replay 'pool_connections and pool_maxsize' on a local server, stock vs fastpool",
        description="Replay the article's pooling experiments on an embedded loopback server "
        "with requests' stock HTTPAdapter and fastpool's side by side, then compare throughput.",
    )
    demo.add_argument("--quick", action="store_true", help="a short throughput part")
    demo.add_argument("--no-throughput", action="store_true", help="skip the throughput part")
    demo.set_defaults(handler=_cmd_demo)

    get = commands.add_parser(
        "get",
        parents=[common, fetch],
        help="fetch URLs concurrently and summarise",
        description="GET every URL concurrently, then print status counts, errors by kind, "
        "throughput, connections and advice. Failed URLs are reported one by one on stderr; "
        "the exit status is 1 if any failed.",
    )
    get.add_argument("urls", nargs="+", metavar="URL", help="http:// or https:// URLs")
    get.set_defaults(handler=_cmd_get)

    crawl = commands.add_parser(
        "crawl",
        parents=[common, fetch],
        help="fetch the URLs listed in a file concurrently and summarise",
        description="Like 'get', with URLs read one per line from FILE ('-' for stdin); "
        "blank lines and lines starting with # are ignored.",
    )
    crawl.add_argument("file", metavar="FILE", help="a file of URLs, or - for stdin")
    crawl.add_argument(
        "--dask",
        metavar="SCHEDULER",
        type=_dask_target,
        default=None,
        help="crawl on a Dask cluster: a scheduler address (tcp://host:8786), or local:N for a "
        "LocalCluster of N worker processes; --threads is per worker (needs fastpool[dask])",
    )
    crawl.set_defaults(handler=_cmd_crawl)

    bench = commands.add_parser(
        "bench",
        parents=[common],
        help="a quick side-by-side throughput run on a local server",
        description="requests.Session vs fastpool on an embedded loopback server (in a child "
        "process), bounded in requests and seconds. Indicative only: use bench/ for medians.",
    )
    bench.add_argument(
        "--requests", type=_int_at_least(1), default=2000, help="requests per row (default 2000)"
    )
    bench.add_argument(
        "--seconds", type=_positive_float, default=2.0, help="time limit per row (default 2)"
    )
    bench.add_argument(
        "--threads",
        type=_thread_list,
        default=(1, 8),
        help="comma-separated thread counts (default 1,8)",
    )
    bench.add_argument(
        "--size",
        type=_int_at_least(0),
        default=1024,
        help="response body size in bytes (default 1024)",
    )
    bench.set_defaults(handler=_cmd_bench)
    return parser


def main(
    argv: Sequence[str] | None = None, out: IO[str] | None = None, err: IO[str] | None = None
) -> int:
    """Run the ``fastpool`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit
    status. ``out``/``err`` default to stdout/stderr."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    handler: Any = args.handler
    try:
        return int(handler(args, out, err))
    except KeyboardInterrupt:
        err.write("fastpool: interrupted\n")
        return 130
    except Exception as exc:
        if os.environ.get("FASTPOOL_TRACEBACK"):
            raise
        err.write(f"fastpool {args.command}: error: {type(exc).__name__}: {exc}\n")
        err.write("(set FASTPOOL_TRACEBACK=1 to see the traceback)\n")
        return 1
