"""Many requests in flight from one thread: :meth:`fastpool.Session.map`.

Each request goes through the same steps as :meth:`Session.send`, in three parts:

1. **begin** (this thread): the adapter picks the pool exactly as ``send`` would, the pool
   checks a connection out without waiting and renders the request's bytes
   (``HTTPConnectionPool._loop_begin``);
2. **exchange** (:mod:`fastpool._loop`): the bytes go out and the answer comes back on a
   non-blocking socket, alongside every other request in flight; new connections are dialed by
   a few worker threads running the pools' own connect;
3. **finish** (this thread): the ordinary ``Session.send`` runs with ``allow_redirects=False``
   and finds the request written and its answer read, so hooks, cookies, decoding, errors and
   urllib3's ``Retry`` are the one-request path's own. A redirect becomes the next hop, built by
   requests' own ``resolve_redirects`` (``Response.next``), as ``send`` would follow it.

Where a tool patched that path (a mock, a tracer, a cassette), or the adapter, pool or session
is not fastpool's own, a request runs through ``Session.send`` one at a time in this thread, so
the tool sees it: never a silent bypass.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from requests.exceptions import TooManyRedirects
from requests.models import PreparedRequest, Request, Response

from ._loop import Exchange, Loop
from .schedule import HostScheduler

__all__ = ("Result", "map_session")

#: Results waiting to be yielded, and requests taken from the caller's iterable ahead of
#: being started, are bounded by these multiples of ``concurrency``.
_LOOKAHEAD = 8


class Result(NamedTuple):
    """One request's outcome from :meth:`fastpool.Session.map`: the ``request`` as given (a
    URL, a :class:`requests.Request` or a :class:`requests.PreparedRequest`), and either its
    ``response`` or the ``error`` it raised (the other is None)."""

    request: Any
    response: Response | None
    error: BaseException | None


class _Job:
    """One item of the map: its hops so far and the keyword arguments of ``send``."""

    __slots__ = ("given", "hist", "host", "kwargs", "prep")

    def __init__(self, given: Any, prep: PreparedRequest, kwargs: dict[str, Any]) -> None:
        self.given = given
        self.prep = prep
        self.kwargs = kwargs
        self.hist: list[Response] = []
        self.host = _host_of(prep.url)


def _host_of(url: Any) -> str:
    """The politeness key: the host name, lower-cased; every port and scheme of a host share
    it (as ``fastpool crawl`` and ``fastpool.dask``)."""
    try:
        return urlsplit(url).hostname or ""
    except (TypeError, ValueError):
        return ""


def map_session(
    session: Any,
    requests: Iterable[Any],
    *,
    concurrency: int,
    per_host: int | None,
    delay: float,
    rate: float | None,
    timeout: Any,
    stream: bool | None,
    allow_redirects: bool,
    dial_workers: int,
) -> Iterator[Result]:
    """The generator behind :meth:`fastpool.Session.map` (which documents the arguments)."""
    _check_positive("concurrency", concurrency)
    if per_host is not None:
        _check_positive("per_host", per_host)
    run = _Run(session, iter(requests), concurrency, timeout, stream, allow_redirects)
    run.scheduler = HostScheduler(per_host=per_host, delay=delay, rate=rate)
    run.loop = Loop(dial_workers=dial_workers)
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


class _Run:
    """The state of one map: the caller's input, the scheduler, the loop, the results."""

    scheduler: HostScheduler
    loop: Loop

    def __init__(
        self,
        session: Any,
        source: Iterator[Any],
        concurrency: int,
        timeout: Any,
        stream: bool | None,
        allow_redirects: bool,
    ) -> None:
        self.session = session
        self.source = source
        self.exhausted = False
        self.concurrency = concurrency
        self.timeout = timeout
        self.stream = stream
        self.allow_redirects = allow_redirects
        self.started: dict[Exchange, _Job] = {}  # in the loop
        self.waiting_slot: deque[_Job] = deque()  # its pool had no free connection
        self.ready: deque[Result] = deque()

    def take_input(self) -> None:
        """Read the caller's requests while there is room ahead."""
        while not self.exhausted and len(self.scheduler) < self.concurrency * _LOOKAHEAD:
            try:
                given = next(self.source)
            except StopIteration:
                self.exhausted = True
                return
            job = _new_job(
                self.session, given, self.timeout, self.stream, self.allow_redirects, self.ready
            )
            if job is not None:
                self.scheduler.push(job, job.host, None)

    def start_what_may(self) -> None:
        """Start what the limits allow (the results waiting to be yielded are bounded too)."""
        started, ready = self.started, self.ready
        while len(started) < self.concurrency and len(ready) < self.concurrency:
            job = self.waiting_slot.popleft() if self.waiting_slot else None
            if job is None:
                popped = self.scheduler.pop()
                if popped is None:
                    return
                job = popped[0]
            outcome = _begin(self.session, job, bool(started))
            if outcome is _NO_SLOT:
                self.waiting_slot.append(job)
                return
            if isinstance(outcome, Exchange):
                started[outcome] = job
                self.loop.start(outcome)
            else:
                _after_hop(self.session, self.scheduler, job, outcome, ready)

    def finished(self) -> bool:
        return (
            not self.started
            and self.exhausted
            and not len(self.scheduler)
            and not self.waiting_slot
            and not self.ready
        )

    def wait(self) -> None:
        """Let the loop run until an exchange ends (or a politeness wait does)."""
        if not self.started:
            if not self.ready:
                _idle(self.scheduler)
            return
        wake = self.scheduler.next_ready()
        wait = None if wake is None else max(wake - time.monotonic(), 0.0)
        for ex in self.loop.poll(wait):
            job = self.started[ex]
            outcome = _finish(self.session, job, ex)
            del self.started[ex]  # after: an interruption leaves it to cancel()
            _after_hop(self.session, self.scheduler, job, outcome, self.ready)

    def cancel(self) -> None:
        """The caller left early (or an error): stop what is in flight, give every slot back."""
        loop = self.loop
        for ex in list(self.started):
            loop.cancel(ex)
        loop.close()  # waits for dials in progress, and closes what they opened
        for ex in self.started:
            ex.tag._loop_abandon(ex)


def _check_positive(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def _idle(scheduler: HostScheduler) -> None:
    """Nothing in flight and nothing allowed to start: wait for the politeness delay or the
    rate to allow the next request."""
    wake = scheduler.next_ready()
    if wake is not None:
        time.sleep(min(max(wake - time.monotonic(), 0.0), 1.0))


def _new_job(
    session: Any,
    given: Any,
    timeout: Any,
    stream: bool | None,
    allow_redirects: bool,
    ready: deque[Result],
) -> _Job | None:
    """Prepare ``given`` as ``Session.request`` would; a request that cannot be prepared
    becomes its error's result at once."""
    try:
        if isinstance(given, PreparedRequest):
            prep = given
        else:
            request = given if isinstance(given, Request) else Request("GET", given)
            prep = session.prepare_request(request)
        settings = session.merge_environment_settings(prep.url, {}, stream, None, None)
    except Exception as e:  # noqa: BLE001 - the request's outcome, yielded to the caller
        ready.append(Result(given, None, e))
        return None
    kwargs = {"timeout": timeout, **settings}
    job = _Job(given, prep, kwargs)
    if not allow_redirects:
        job.hist = None  # type: ignore[assignment]  # no redirect is followed
    return job


_NO_SLOT = object()


def _begin(session: Any, job: _Job, may_wait: bool) -> Any:
    """Start a hop: an Exchange for the loop, ``_NO_SLOT`` (the pool has no free connection
    and ``may_wait``: this map's requests in flight will free one), or the hop's Response or
    exception from ``Session.send`` in this thread (where the loop cannot take it, or to wait
    for a connection at the pool's cap as one request would, up to ``pool_timeout``)."""
    try:
        exchange = session._loop_begin(job.prep, job.kwargs)
    except Exception as e:  # noqa: BLE001 - the request's outcome, yielded to the caller
        return e
    if exchange is None and may_wait:
        return _NO_SLOT
    if exchange is None or exchange is False:
        return _send(session, job, None)
    return exchange


def _finish(session: Any, job: _Job, ex: Exchange) -> Any:
    """The hop's Response or exception, from ``Session.send`` finding the exchange done."""
    if ex.cancelled:
        return RuntimeError("cancelled")
    return _send(session, job, ex)


def _send(session: Any, job: _Job, ex: Exchange | None) -> Any:
    kwargs = dict(job.kwargs, allow_redirects=False)
    try:
        if ex is None:
            return session.send(job.prep, **kwargs)  # a patched send sees it
        return session._send_hop(job.prep, kwargs, ex)
    except Exception as e:  # noqa: BLE001 - the request's outcome, yielded to the caller
        return e


def _after_hop(
    session: Any, scheduler: HostScheduler, job: _Job, outcome: Any, ready: deque[Result]
) -> None:
    """A hop ended: the result, or (a redirect to follow) the next hop queued."""
    scheduler.done(job.host)
    if isinstance(outcome, BaseException):
        ready.append(Result(job.given, None, outcome))
        return
    response: Response = outcome
    if job.hist is None or response.next is None:
        if job.hist:
            job.hist.append(response)
            history = job.hist
            response = history.pop()
            response.history = history
        ready.append(Result(job.given, response, None))
        return
    # requests' resolve_redirects, hop by hop: the history as it keeps it, its limit, and the
    # next request it built (Response.next: method, auth, cookies and body rebuilt).
    hist = job.hist
    hist.append(response)
    response.history = hist[1:]
    if len(response.history) >= session.max_redirects:
        error = TooManyRedirects(f"Exceeded {session.max_redirects} redirects.", response=response)
        ready.append(Result(job.given, None, error))
        return
    nxt = response.next
    assert nxt is not None
    job.kwargs["proxies"] = session.rebuild_proxies(nxt, job.kwargs.get("proxies"))
    job.prep = nxt
    job.host = _host_of(nxt.url)
    scheduler.push(job, job.host, None)
