"""Many requests in flight from one thread: the runner behind ``Session.map`` and
``PoolManager.map``.

Each request goes through the one-request path's own steps, in three parts:

1. **begin** (this thread): the pool is picked exactly as one request would pick it, and it
   checks a connection out without waiting and renders the request's bytes
   (``HTTPConnectionPool._loop_begin``);
2. **exchange** (:mod:`fastpool._loop`): the bytes go out and the answer comes back on a
   non-blocking socket, alongside every other request in flight; new connections are dialed by
   a few worker threads running the pools' own connect;
3. **finish** (this thread): the ordinary ``urlopen`` (under ``Session.send`` for a Session)
   runs and finds the request written and its answer read, so hooks, cookies, decoding, errors
   and urllib3's ``Retry`` are the one-request path's own. A redirect becomes the next hop.

A *driver* knows one API's steps (:class:`ManagerDriver` here for ``PoolManager``; the
Session's is in :mod:`fastpool._session_map`); :func:`run_map` runs any of them with the
scheduler's limits (:class:`fastpool.schedule.HostScheduler`) and the loop. Where a tool
patched the path (a mock, a tracer, a cassette), or a class on it is not fastpool's own, the
driver sends the request one at a time in this thread, so the tool sees it: never a silent
bypass.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple, Optional, Protocol
from urllib.parse import urlsplit

from urllib3.exceptions import ClosedPoolError
from urllib3.util.timeout import Timeout

from ._loop import Exchange, Loop
from ._thirdparty import RequestMethods
from .pool import Resend
from .schedule import HostScheduler

__all__ = ("Driver", "ManagerDriver", "Result", "host_of", "run_map")

#: Requests taken from the caller's iterable ahead of being started: this many times
#: ``concurrency`` at most.
_LOOKAHEAD = 8


class Result(NamedTuple):
    """One request's outcome from ``Session.map`` or ``PoolManager.map``: the ``request`` as
    given, and either its ``response`` or the ``error`` it raised (the other is None)."""

    request: Any
    response: Any
    error: Optional[BaseException]  # noqa: UP045 - a NamedTuple field: 3.9 has no X | None


class Driver(Protocol):
    """One API's steps for :func:`run_map`. A job is the driver's record of one request; it
    has a ``host`` (the politeness key: :func:`host_of`)."""

    def new(self, given: Any) -> Any:
        """The job for an item of the caller's iterable (raises what preparing it raises)."""

    def begin(self, job: Any) -> Exchange | bool | None:
        """Hand the job's next hop to the loop: an Exchange, None (its pool has no free
        connection now), or False (it must run through :meth:`send` without the loop)."""

    def send(self, job: Any, exchange: Exchange | None) -> Any:
        """The hop's response or exception (never raised), finishing ``exchange``, or
        (None) the whole hop in this thread."""

    def after(self, job: Any, outcome: Any) -> Result | None:
        """The job's result, or None when it has a next hop (a redirect to follow)."""

    def retry(self, job: Any, retries: Any) -> None:
        """urllib3's ``Retry`` sends the job's hop again, counting with ``retries``."""


def host_of(url: Any) -> str:
    """The politeness key: the host name, lower-cased; every port and scheme of a host share
    it (as ``fastpool crawl`` and ``fastpool.dask``)."""
    try:
        return urlsplit(url).hostname or ""
    except (TypeError, ValueError):
        return ""


def run_map(
    driver: Driver,
    requests: Iterable[Any],
    *,
    concurrency: int,
    per_host: int | None,
    delay: float,
    rate: float | None,
    dial_workers: int,
) -> Iterator[Result]:
    """An iterator of a :class:`Result` per item of ``requests`` as each completes, at most
    ``concurrency`` in flight (``per_host`` per host), starts to one host ``delay`` seconds
    apart and at most ``rate`` a second; leaving early cancels what is in flight. Bad
    arguments raise here, before any request."""
    _check_positive("concurrency", concurrency)
    if per_host is not None:
        _check_positive("per_host", per_host)
    _check_positive("dial_workers", dial_workers)
    scheduler = HostScheduler(per_host=per_host, delay=delay, rate=rate)  # checks the others
    return _results(_Run(driver, iter(requests), concurrency, scheduler, dial_workers))


def _results(run: _Run) -> Iterator[Result]:
    run.loop = Loop(dial_workers=run.dial_workers)
    try:
        while True:
            run.take_input()
            run.start_what_may()
            while run.ready:
                yield run.ready.popleft()
            if run.finished():
                return
            run.wait()
    finally:
        run.cancel()


def _check_positive(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


_NO_SLOT = object()


class _Run:
    """The state of one map: the caller's input, the scheduler, the loop, the results."""

    loop: Loop

    def __init__(
        self,
        driver: Driver,
        source: Iterator[Any],
        concurrency: int,
        scheduler: HostScheduler,
        dial_workers: int,
    ) -> None:
        self.driver = driver
        self.scheduler = scheduler
        self.dial_workers = dial_workers
        self.source = source
        self.exhausted = False
        self.concurrency = concurrency
        self.started: dict[Exchange, Any] = {}  # in the loop
        self.waiting_slot: deque[Any] = deque()  # its pool had no free connection
        self.ready: deque[Result] = deque()
        # (when, n, job): hops urllib3's Retry sends again once their backoff has passed
        self.later: list[tuple[float, int, Any]] = []
        self.resent = 0

    def take_input(self) -> None:
        """Read the caller's requests while there is room ahead."""
        while not self.exhausted and len(self.scheduler) < self.concurrency * _LOOKAHEAD:
            try:
                given = next(self.source)
            except StopIteration:
                self.exhausted = True
                return
            try:
                job = self.driver.new(given)
            except Exception as e:  # noqa: BLE001 - the request's outcome, yielded
                self.ready.append(Result(given, None, e))
                continue
            self.scheduler.push(job, job.host, None)

    def start_what_may(self) -> None:
        """Start what the limits allow (the results waiting to be yielded are bounded too)."""
        later = self.later
        now = time.monotonic()
        while later and later[0][0] <= now:
            job = heapq.heappop(later)[2]
            self.scheduler.push(job, job.host, None)
        started, ready = self.started, self.ready
        while len(started) < self.concurrency and len(ready) < self.concurrency:
            job = self.waiting_slot.popleft() if self.waiting_slot else None
            if job is None:
                popped = self.scheduler.pop()
                if popped is None:
                    return
                job = popped[0]
            outcome = self._begin(job)
            if outcome is _NO_SLOT:
                self.waiting_slot.append(job)
                return
            if isinstance(outcome, Exchange):
                started[outcome] = job
                self.loop.start(outcome)
            else:
                self._after(job, outcome)

    def _begin(self, job: Any) -> Any:
        """An Exchange for the loop, ``_NO_SLOT`` (no free connection, and this map's requests
        in flight will free one), or the hop's outcome from the one-request path in this
        thread (where the loop cannot take it, or to wait at a pool's cap as one request
        would, up to its ``pool_timeout``)."""
        try:
            exchange = self.driver.begin(job)
        except Exception as e:  # noqa: BLE001 - the request's outcome, yielded
            return e
        if exchange is None and self.started:
            return _NO_SLOT
        if exchange is None or exchange is False:
            return self.driver.send(job, None)
        return exchange

    def _after(self, job: Any, outcome: Any) -> None:
        self.scheduler.done(job.host)
        if isinstance(outcome, Resend):
            # urllib3's Retry: again after its backoff, without the loop thread sleeping
            self.driver.retry(job, outcome.retries)
            self.resent += 1
            heapq.heappush(self.later, (time.monotonic() + outcome.delay, self.resent, job))
            return
        result = self.driver.after(job, outcome)
        if result is None:
            self.scheduler.push(job, job.host, None)  # its next hop
        else:
            self.ready.append(result)

    def finished(self) -> bool:
        return (
            not self.started
            and self.exhausted
            and not len(self.scheduler)
            and not self.waiting_slot
            and not self.ready
            and not self.later
        )

    def _wake(self) -> float | None:
        """When a politeness wait or a retry's backoff ends (None: nothing waits on time)."""
        wake = self.scheduler.next_ready()
        if self.later and (wake is None or self.later[0][0] < wake):
            wake = self.later[0][0]
        return wake

    def wait(self) -> None:
        """Let the loop run until an exchange ends (or a politeness wait or backoff does)."""
        wake = self._wake()
        if not self.started:
            if not self.ready and wake is not None:
                time.sleep(min(max(wake - time.monotonic(), 0.0), 1.0))
            return
        wait = None if wake is None else max(wake - time.monotonic(), 0.0)
        for ex in self.loop.poll(wait):
            job = self.started[ex]
            outcome = self.driver.send(job, ex)
            # Its connection is the response's now, unless urlopen never took it (a tool
            # answered in its place, or finishing failed first): then it goes back here.
            ex.tag._loop_abandon(ex)
            del self.started[ex]  # after: an interruption leaves it to cancel()
            self._after(job, outcome)

    def cancel(self) -> None:
        """The caller left early (or an error): stop what is in flight, give every slot back."""
        loop = self.loop
        for ex in list(self.started):
            loop.cancel(ex)
        loop.close()  # dials in progress close what they open, in their workers
        for ex in self.started:
            ex.tag._loop_abandon(ex)


# --- PoolManager ---------------------------------------------------------------------------------
class _Capture(RequestMethods):
    """``RequestMethods.request``'s encoding (fields, json, body) without sending: its
    ``urlopen`` returns what it was given."""

    def urlopen(self, method: str, url: str, **kw: Any) -> Any:  # type: ignore[override]
        return method, url, kw


class _ManagerJob:
    __slots__ = ("conn", "given", "host", "kw", "method", "redirect", "target", "url")

    def __init__(self, given: Any, method: str, url: str, kw: dict[str, Any]) -> None:
        self.given = given
        self.method = method
        self.url = url
        self.redirect = kw.pop("redirect", True)
        self.kw = kw
        self.host = host_of(url)
        self.conn: Any = None
        self.target = url


_POOLMANAGER = __name__.rpartition(".")[0] + ".poolmanager"


class ManagerDriver:
    """:class:`Driver` for ``PoolManager.map``: ``PoolManager.request``'s steps, hop by hop
    (``PoolManager.urlopen`` with its redirects across hosts)."""

    def __init__(self, manager: Any) -> None:
        self.manager = manager

    def new(self, given: Any) -> _ManagerJob:
        if isinstance(given, str):
            method, url, kwargs = "GET", given, {}
        elif isinstance(given, tuple) and len(given) in (2, 3):
            method, url = given[0], given[1]
            kwargs = dict(given[2]) if len(given) == 3 else {}
        else:
            raise TypeError(
                "PoolManager.map takes URLs, (method, url) or (method, url, kwargs), "
                f"got {type(given).__name__}"
            )
        capture: Any = RequestMethods.request(_Capture(self.manager.headers), method, url, **kwargs)
        return _ManagerJob(given, *capture)

    def begin(self, job: _ManagerJob) -> Exchange | bool | None:
        manager = self.manager
        function = getattr(manager.urlopen, "__func__", None)
        if getattr(function, "__module__", None) != _POOLMANAGER:
            return False  # a subclass's or a patch's urlopen: it must see the request
        kw, target = self._hop(job)
        return job.conn._loop_begin(  # type: ignore[no-any-return]
            job.method,
            target,
            kw.get("body"),
            kw["headers"],
            kw.get("chunked", False),
            kw.get("timeout", Timeout.DEFAULT_TIMEOUT),
            kw.get("preload_content", True),
        )

    def _hop(self, job: _ManagerJob) -> tuple[dict[str, Any], str]:
        """PoolManager.urlopen's first half for the job's URL: its pool (on ``job.conn``), its
        ``urlopen`` arguments and its request target (also on ``job.target``)."""
        manager = self.manager
        kw = manager._hop_kw(job.url, job.kw)
        scheme, host, port, target = manager._split_url(job.url)
        job.conn = manager.connection_from_host(host, port=port, scheme=scheme)
        job.target = target
        kw["assert_same_host"] = False
        kw["redirect"] = False
        kw.setdefault("headers", manager.headers)
        return kw, target

    def send(self, job: _ManagerJob, exchange: Exchange | None) -> Any:
        try:
            if exchange is None:
                # The whole hop here, as PoolManager.urlopen's first half.
                kw, target = self._hop(job)
                try:
                    return job.conn.urlopen(job.method, target, **kw)
                except ClosedPoolError:  # evicted meanwhile: nothing was sent
                    scheme, host, port, _ = self.manager._split_url(job.url)
                    job.conn = self.manager.connection_from_host(host, port=port, scheme=scheme)
                    return job.conn.urlopen(job.method, target, **kw)
            return job.conn.urlopen(job.method, job.target, _exchange=exchange, **job.kw)
        except Exception as e:  # noqa: BLE001 - the request's outcome, yielded
            return e

    def retry(self, job: _ManagerJob, retries: Any) -> None:
        job.kw["retries"] = retries

    def after(self, job: _ManagerJob, outcome: Any) -> Result | None:
        if isinstance(outcome, BaseException):
            return Result(job.given, None, outcome)
        response = outcome
        if not (job.redirect and response.status in response.REDIRECT_STATUSES):
            return Result(job.given, response, None)
        try:
            step = self.manager._follow(
                job.method, job.url, job.redirect, job.kw, job.conn, response
            )
        except Exception as e:  # noqa: BLE001 - the request's outcome, yielded
            return Result(job.given, None, e)
        if step is None:
            return Result(job.given, response, None)
        job.method, job.url = step
        job.host = host_of(job.url)
        return None
