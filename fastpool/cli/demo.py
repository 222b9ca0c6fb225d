"""``fastpool demo``: replay the article "Requests' secret: pool_connections and pool_maxsize" on
an embedded loopback server, with requests' stock HTTPAdapter and fastpool's side by side, then
compare throughput.

Connections are counted on the server side (accepted TCP connections), and the pool's own log
records ("Starting new HTTP connection", "Connection pool is full, discarding connection") are
captured with a logging handler, so the numbers mean the same thing for both adapters.
"""

from __future__ import annotations

import functools
import logging
import os
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Callable

import requests
import requests.adapters

from ..stats import PoolStats, advise, merge, snapshot
from .localserver import LocalServers, ServerProcess

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = (
    "EXPERIMENTS",
    "Experiment",
    "Outcome",
    "PoolLog",
    "Style",
    "adapter_classes",
    "collect_pool_stats",
    "run_demo",
    "run_experiment",
    "run_in_threads",
    "run_throughput",
    "session_factories",
)

#: The loggers whose records tell what a pool did (urllib3's for stock, ours for fastpool).
POOL_LOGGERS = ("urllib3", "fastpool")
_STARTING = "Starting new HTTP"
_RESETTING = "Resetting dropped connection"
_POOL_FULL = "Connection pool is full"


# --- terminal output -----------------------------------------------------------------------------


class Style:
    """ANSI styling that switches itself off when ``enabled`` is false (not a TTY, ``NO_COLOR``,
    ``TERM=dumb``): see :meth:`for_stream`."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    @classmethod
    def for_stream(cls, stream: IO[str], mode: str = "auto") -> Style:
        """``mode`` (default ``"auto"``) is ``"always"``, ``"never"`` or ``"auto"``: colour
        only on a terminal, without ``NO_COLOR`` set and with ``TERM`` other than ``dumb``."""
        if mode == "always":
            return cls(True)
        if mode == "never":
            return cls(False)
        isatty = getattr(stream, "isatty", None)
        enabled = (
            bool(isatty and isatty())
            and "NO_COLOR" not in os.environ
            and os.environ.get("TERM") != "dumb"
        )
        return cls(enabled)

    def _wrap(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.enabled else text

    def bold(self, text: str) -> str:
        """``text`` in bold."""
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        """``text`` dimmed."""
        return self._wrap("2", text)

    def green(self, text: str) -> str:
        """``text`` in green."""
        return self._wrap("32", text)

    def yellow(self, text: str) -> str:
        """``text`` in yellow."""
        return self._wrap("33", text)

    def red(self, text: str) -> str:
        """``text`` in red."""
        return self._wrap("31", text)


def format_table(headers: list[str], rows: list[list[str]], indent: str = "   ") -> list[str]:
    """Align ``rows`` under ``headers``: the first column left-aligned, the others right."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        parts = [
            str(cell).ljust(widths[i]) if i == 0 else str(cell).rjust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return indent + "  ".join(parts).rstrip()

    return [line(headers), *(line(row) for row in rows)]


def format_seconds(seconds: float) -> str:
    """``1.2 ms`` / ``3.40 s``: a duration for humans."""
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


# --- what the pools said -------------------------------------------------------------------------


class PoolLog(logging.Handler):
    """Collect the records of urllib3's and fastpool's loggers while active (``with``).

    The loggers are set to DEBUG and stop propagating for the duration, so nothing is printed
    behind the caller's back; both are restored on exit. Thread-safe (logging handlers lock).
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._saved: list[tuple[logging.Logger, int, bool]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> Self:
        for name in POOL_LOGGERS:
            logger = logging.getLogger(name)
            self._saved.append((logger, logger.level, logger.propagate))
            logger.setLevel(logging.DEBUG)
            logger.propagate = False
            logger.addHandler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for logger, level, propagate in self._saved:
            logger.removeHandler(self)
            logger.setLevel(level)
            logger.propagate = propagate
        self._saved.clear()

    def count(self, prefix: str) -> int:
        """How many records' messages start with ``prefix``."""
        return sum(1 for record in list(self.records) if record.getMessage().startswith(prefix))

    @property
    def started(self) -> int:
        """Connections the pools said they opened (new, or re-opened after a drop)."""
        return self.count(_STARTING) + self.count(_RESETTING)

    @property
    def discarded(self) -> int:
        """Connections thrown away because the pool was full."""
        return self.count(_POOL_FULL)

    def started_per_host(self) -> dict[str, int]:
        """``{"host:port": connections started}`` from the "Starting new ..." records."""
        counts: dict[str, int] = {}
        for record in list(self.records):
            args = record.args
            starting = record.getMessage().startswith(_STARTING)
            if starting and isinstance(args, tuple) and len(args) == 3:
                key = f"{args[1]}:{args[2]}"
                counts[key] = counts.get(key, 0) + 1
        return counts


# --- which implementations are there ------------------------------------------------------------


def _fastpool_name(name: str) -> Any:
    """A public fastpool name, or None when its module is missing or fails to import."""
    import fastpool

    try:
        return getattr(fastpool, name)
    except Exception:  # noqa: BLE001 - a module being built or broken must not stop the demo
        return None


def adapter_classes() -> list[tuple[str, type[requests.adapters.HTTPAdapter]]]:
    """``[(label, adapter class)]``: requests' stock adapter, then fastpool's if it imports."""
    found: list[tuple[str, type[requests.adapters.HTTPAdapter]]] = [
        ("requests", requests.adapters.HTTPAdapter)
    ]
    adapter = _fastpool_name("HTTPAdapter")
    if adapter is not None:
        found.append(("fastpool", adapter))
    return found


SessionFactory = Callable[[], requests.Session]


def session_factories() -> list[tuple[str, SessionFactory]]:
    """``[(label, factory)]`` for the throughput comparison, stock first; the fastpool ones
    appear when ``fastpool.HTTPAdapter`` / ``fastpool.Session`` import."""
    found: list[tuple[str, SessionFactory]] = [("requests.Session", requests.Session)]
    adapter = _fastpool_name("HTTPAdapter")
    if adapter is not None:

        def with_adapter() -> requests.Session:
            session = requests.Session()
            session.mount("http://", adapter())
            session.mount("https://", adapter())
            return session

        found.append(("requests.Session + fastpool.HTTPAdapter", with_adapter))
    session_cls = _fastpool_name("Session")
    if session_cls is not None:
        found.append(("fastpool.Session", session_cls))
    return found


def collect_pool_stats(session: requests.Session) -> PoolStats | None:
    """The pool stats of ``session``'s fastpool adapters (merged), or None when it has none
    (requests' own pools keep no such counters). Read them before closing the session."""
    method = getattr(session, "pool_stats", None)
    if callable(method):
        return method()  # type: ignore[no-any-return]
    adapter_cls = _fastpool_name("HTTPAdapter")
    parts: list[PoolStats] = []
    seen: set[int] = set()
    for adapter in list(session.adapters.values()):
        if adapter_cls is None or not isinstance(adapter, adapter_cls) or id(adapter) in seen:
            continue
        seen.add(id(adapter))
        if callable(getattr(adapter, "pool_stats", None)):
            parts.append(adapter.pool_stats())
        else:  # before HTTPAdapter.pool_stats(): its pool manager and proxy managers
            managers = [adapter.poolmanager, *adapter.proxy_manager.values()]
            parts += [snapshot(manager) for manager in managers]
    return merge(parts) if parts else None


# --- the article's experiments -------------------------------------------------------------------


@dataclass
class Outcome:
    """What one adapter did in one experiment."""

    label: str
    opened: int  # TCP connections the servers accepted
    requests: int  # responses received
    discarded: int  # "Connection pool is full, discarding connection" records
    seconds: float
    log_lines: list[str] = field(default_factory=list)
    loggers: list[str] = field(default_factory=list)  # the loggers the lines came from
    errors: list[str] = field(default_factory=list)
    stats: PoolStats | None = None  # fastpool's pool stats (None for requests' adapter)

    @property
    def reused(self) -> int:
        """Requests served on a connection that an earlier request had opened."""
        return max(self.requests - self.opened, 0)


@dataclass
class Experiment:
    """One of the article's examples: ``run(session, adapter_cls, hosts, send)`` mounts adapters
    on ``session`` and sends requests through ``send(url)``; ``expected`` is the stock adapter's
    ``(opened, reused, discarded)``; ``explain`` says what happened, in plain English;
    ``hosts`` and ``threads`` (default 1) are what it uses, for fastpool's advice."""

    title: str
    code: str
    run: Callable[[requests.Session, type, list[str], Callable[[str], None]], None]
    expected: tuple[int, int, int]
    explain: str
    hosts: int = 1
    threads: int = 1


def run_in_threads(calls: list[Callable[[], None]]) -> None:
    """Run each call in its own (daemon) thread and wait for all; a single call runs here."""
    if len(calls) == 1:
        calls[0]()
        return
    threads = [threading.Thread(target=call, daemon=True) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _two_rounds_of_two(send: Callable[[str], None], base: str) -> None:
    # /hold makes both requests of a round wait for each other, so both are in flight together
    # (the article relied on real network latency for that). A key is free again once its round
    # is over, so every run uses the same URLs and the logs of two adapters compare line by line.
    for round_number in (1, 2):
        url = f"{base}/hold?key=round{round_number}&n=2"
        run_in_threads([functools.partial(send, url)] * 2)


def _pool_connections(n: int) -> Callable[..., None]:
    def run(session: requests.Session, adapter: type, hosts: list[str], send: Any) -> None:
        session.mount("http://", adapter(pool_connections=n))
        for base in (hosts[0], hosts[1], hosts[0]):
            send(base + "/")

    return run


def _pool_maxsize(n: int) -> Callable[..., None]:
    def run(session: requests.Session, adapter: type, hosts: list[str], send: Any) -> None:
        session.mount("http://", adapter(pool_connections=1, pool_maxsize=n))
        _two_rounds_of_two(send, hosts[0])

    return run


def _separate_adapters(
    session: requests.Session, adapter: type, hosts: list[str], send: Any
) -> None:
    session.mount("http://", adapter(pool_connections=1, pool_maxsize=2))
    session.mount(hosts[1], adapter(pool_connections=1, pool_maxsize=1))
    _two_rounds_of_two(send, hosts[0])
    _two_rounds_of_two(send, hosts[1])


EXPERIMENTS: list[Experiment] = [
    Experiment(
        "pool_connections=1: three GETs to two hosts",
        'mount("http://", HTTPAdapter(pool_connections=1)); GET A, GET B, GET A',
        _pool_connections(1),
        (3, 0, 0),
        "pool_connections=1 keeps one host's pool: visiting B evicted A's pool, "
        "so going back to A had to open a new connection.",
        hosts=2,
    ),
    Experiment(
        "pool_connections=2: the same three GETs",
        'mount("http://", HTTPAdapter(pool_connections=2)); GET A, GET B, GET A',
        _pool_connections(2),
        (2, 1, 0),
        "pool_connections=2 keeps both hosts' pools, so the second GET to A reused "
        "its connection: one connect saved.",
        hosts=2,
    ),
    Experiment(
        "pool_maxsize=2: two threads, two rounds, one host",
        'mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=2)); '
        "2 threads x 2 rounds to A",
        _pool_maxsize(2),
        (2, 2, 0),
        "Two requests in flight need two connections; pool_maxsize=2 kept both, "
        "so the second round reused them.",
        threads=2,
    ),
    Experiment(
        "pool_maxsize=1: the same threads",
        'mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=1)); '
        "2 threads x 2 rounds to A",
        _pool_maxsize(1),
        (3, 1, 2),
        "pool_maxsize=1 keeps only one idle connection: the second one was discarded after "
        "each round (pool_block=False never makes a thread wait), so round two opened a new one.",
        threads=2,
    ),
    Experiment(
        "separate adapters for http:// and a longer prefix http://B",
        'mount("http://", HTTPAdapter(1, 2)); mount("http://B", HTTPAdapter(1, 1)); '
        "2 threads x 2 rounds to A, then to B",
        _separate_adapters,
        (5, 3, 2),
        "The longest prefix wins and each adapter has its own pools: A's adapter "
        "(pool_maxsize=2) kept both connections, B's (pool_maxsize=1) discarded one per round.",
        hosts=2,
        threads=2,
    ),
]


def run_experiment(
    experiment: Experiment, adapter: type, servers: LocalServers, label: str
) -> Outcome:
    """Run ``experiment`` with ``adapter`` on a fresh Session; count on ``servers``."""
    servers.reset_counts()
    hosts = servers.urls
    responses: list[int] = []
    errors: list[str] = []

    def send(url: str) -> None:
        try:
            session.get(url, timeout=10).close()
            responses.append(1)
        except Exception as exc:  # noqa: BLE001 - reported in the output, never a traceback
            errors.append(f"{type(exc).__name__}: {exc}")

    session = requests.Session()
    with PoolLog() as log:
        started = time.perf_counter()
        try:
            experiment.run(session, adapter, hosts, send)
            stats = collect_pool_stats(session)
        finally:
            seconds = time.perf_counter() - started
            session.close()
    lines = [f"{record.levelname:<7} {record.getMessage()}" for record in log.records]
    return Outcome(
        label=label,
        opened=servers.connections(),
        requests=len(responses),
        discarded=log.discarded,
        seconds=seconds,
        log_lines=lines,
        loggers=sorted({record.name for record in log.records}),
        errors=errors,
        stats=stats,
    )


# --- throughput ----------------------------------------------------------------------------------


@dataclass
class Throughput:
    """One throughput measurement."""

    label: str
    threads: int
    requests: int
    seconds: float
    errors: int
    failure: str = ""  # why the client could not be measured at all

    @property
    def per_second(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def measure(
    factory: SessionFactory,
    url: str,
    threads: int,
    total: int,
    max_seconds: float,
    label: str = "",
) -> Throughput:
    """Send up to ``total`` GETs of ``url`` from ``threads`` threads sharing one session, for
    at most ``max_seconds``; returns what was completed (bounded in count and time). A client
    that cannot even be set up (session or warm-up fails) gives a result with ``failure`` set."""
    lock = threading.Lock()
    done = [0, 0]  # responses, errors
    budget = [total]
    try:
        session = factory()
    except Exception as exc:  # noqa: BLE001 - shown in its row; the other clients still run
        return Throughput(label, threads, 0, 0.0, 0, _short_failure(exc))
    try:
        try:
            for _ in range(min(20, total)):  # warm-up: connections and caches
                session.get(url, timeout=10).close()
        except Exception as exc:  # noqa: BLE001 - as above
            return Throughput(label, threads, 0, 0.0, 0, _short_failure(exc))
        deadline = time.perf_counter() + max_seconds

        def worker() -> None:
            while True:
                with lock:
                    if budget[0] <= 0 or time.perf_counter() > deadline:
                        return
                    budget[0] -= 1
                try:
                    session.get(url, timeout=10).content  # noqa: B018 - read the whole body
                    outcome = 0
                except Exception:  # noqa: BLE001 - counted as an error, the run goes on
                    outcome = 1
                with lock:
                    done[outcome] += 1

        started = time.perf_counter()
        run_in_threads([worker] * threads)
        seconds = time.perf_counter() - started
    finally:
        session.close()
    return Throughput(label, threads, done[0], seconds, done[1])


def _short_failure(exc: BaseException) -> str:
    text = f"failed: {type(exc).__name__}: {exc}".splitlines()[0]
    return text if len(text) <= 70 else text[:67] + "..."


@contextmanager
def _throughput_server() -> Iterator[str]:
    """A server in a child process (it must not share our GIL); in-process if that fails."""
    try:
        with ServerProcess(1) as proc:
            yield proc.urls[0]
            return
    except (OSError, RuntimeError, ValueError):
        pass
    with LocalServers(1) as servers:
        yield servers.urls[0]


def run_throughput(
    out: IO[str],
    style: Style,
    total: int,
    max_seconds: float,
    thread_counts: tuple[int, ...] = (1, 8),
    path: str = "/bytes/1024",
) -> list[Throughput]:
    """Measure every :func:`session_factories` entry at each thread count; print a table with
    requests/s and the ratio to ``requests.Session`` (medians are for ``bench/``; this is one
    run, indicative only)."""
    factories = session_factories()
    results: list[Throughput] = []
    with _throughput_server() as base:
        url = base + path
        for threads in thread_counts:
            for label, factory in factories:
                results.append(measure(factory, url, threads, total, max_seconds, label))
    rows = []
    for result in results:
        baseline = next(
            r for r in results if r.threads == result.threads and r.label == factories[0][0]
        )
        ratio = result.per_second / baseline.per_second if baseline.per_second else 0.0
        rows.append(
            [
                result.label,
                str(result.threads),
                str(result.requests),
                f"{result.per_second:,.0f}",
                f"x{ratio:.2f}",
                result.failure or (str(result.errors) if result.errors else ""),
            ]
        )
    headers = ["client", "threads", "requests", "req/s", "vs requests", "errors"]
    for line in format_table(headers, rows):
        out.write(line + "\n")
    return results


# --- the whole demo ------------------------------------------------------------------------------


def _print_outcomes(out: IO[str], style: Style, outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        source = f" ({', '.join(outcome.loggers)})" if outcome.loggers else ""
        out.write(f"   {style.bold(outcome.label + ' HTTPAdapter')} logged{source}:\n")
        for line in outcome.log_lines:
            shown = style.yellow(line) if line.startswith("WARNING") else style.dim(line)
            out.write("     " + shown + "\n")
        for error in outcome.errors:
            out.write("     " + style.red("error: " + error) + "\n")
    if len(outcomes) > 1:
        # Threads may interleave differently, so compare the lines regardless of order.
        same = all(sorted(o.log_lines) == sorted(outcomes[0].log_lines) for o in outcomes)
        verdict = "the same log lines" if same else "different log lines"
        out.write("   " + style.dim(f"({' and '.join(o.label for o in outcomes)} wrote {verdict})"))
        out.write("\n")
    rows = [
        [o.label, str(o.opened), str(o.reused), str(o.discarded), format_seconds(o.seconds)]
        for o in outcomes
    ]
    out.write("\n")
    for line in format_table(["adapter", "opened", "reused", "discarded", "time"], rows):
        out.write(line + "\n")


def _print_stats(out: IO[str], style: Style, outcome: Outcome, experiment: Experiment) -> None:
    """fastpool's own view of the run: its pool stats and what it advises."""
    assert outcome.stats is not None
    out.write(f"\n   {style.bold(outcome.label)} pool stats ({style.dim('fastpool.stats')}):\n")
    for line in outcome.stats.table(compact=True):
        out.write("     " + line + "\n")
    tips = advise(outcome.stats, threads=experiment.threads, hosts=experiment.hosts)
    for tip in tips:
        lines = textwrap.wrap(tip, 88)
        out.write("   " + style.yellow("advice: ") + lines[0] + "\n")
        for line in lines[1:]:
            out.write("           " + line + "\n")


def _requests_version() -> str:
    from importlib.metadata import version

    return version("requests")


def run_demo(
    out: IO[str],
    style: Style,
    quick: bool = False,
    throughput: bool = True,
) -> int:
    """Print the whole demo to ``out``; returns the number of experiments whose counts
    differed from the stock adapter's expected ones (0 when all is as the article says).

    ``quick`` (default False) makes the throughput part short; ``throughput`` (default True)
    can skip it."""
    import fastpool

    adapters = adapter_classes()
    out.write(style.bold("fastpool demo") + f" - fastpool {fastpool.__version__}, ")
    out.write(f"backend: {fastpool.implementation()}, requests {_requests_version()}\n")
    missing = [name for name in ("HTTPAdapter", "Session") if _fastpool_name(name) is None]
    if missing:
        out.write(
            style.yellow("   not available in this build: ")
            + ", ".join(f"fastpool.{name}" for name in missing)
            + "\n"
        )
    surprises = 0
    with LocalServers(2) as servers:
        hosts = servers.urls
        where = "separate ports on 127.0.0.1" if servers.fallback else "distinct loopback hosts"
        out.write(f"   local servers ({where}): A = {hosts[0]}, B = {hosts[1]}\n")
        out.write("   (plain HTTP where the article used HTTPS: the pooling is the same)\n")
        # A throw-away run per adapter first, so neither pays first-use costs in the timings.
        for label, adapter in adapters:
            run_experiment(EXPERIMENTS[0], adapter, servers, label)
        for number, experiment in enumerate(EXPERIMENTS, 1):
            out.write("\n" + style.bold(f"{number}. {experiment.title}") + "\n")
            out.write("   " + style.dim(experiment.code) + "\n")
            outcomes = [
                run_experiment(experiment, adapter, servers, label) for label, adapter in adapters
            ]
            _print_outcomes(out, style, outcomes)
            explain = textwrap.wrap(experiment.explain, 92)
            out.write("   " + style.green("-> ") + explain[0] + "\n")
            for line in explain[1:]:
                out.write("      " + line + "\n")
            for outcome in outcomes:
                if outcome.stats is not None:
                    _print_stats(out, style, outcome, experiment)
            for outcome in outcomes:
                got = (outcome.opened, outcome.reused, outcome.discarded)
                if got != experiment.expected or outcome.errors:
                    surprises += 1
                    out.write(
                        "   "
                        + style.yellow(
                            f"note: {outcome.label} gave opened/reused/discarded = {got}, "
                            f"the article expects {experiment.expected}"
                        )
                        + "\n"
                    )
    if throughput:
        total, seconds = (300, 1.0) if quick else (3000, 3.0)
        out.write("\n" + style.bold("Throughput") + f": up to {total:,} GETs of 1 KiB per row ")
        out.write(f"(at most {seconds:g} s each), one shared session, server in a child process\n")
        run_throughput(out, style, total, seconds)
        out.write(
            "   "
            + style.dim("one run on a possibly busy machine: indicative, not a benchmark")
            + "\n"
        )
    return surprises
