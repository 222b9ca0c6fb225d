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
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple, Optional, Protocol

from urllib3.exceptions import ClosedPoolError
from urllib3.util.timeout import Timeout

from ._job import ManagerJob, PlainJobs, host_of, plain_job
from ._lane import Lane
from ._loop import Exchange, Loop
from ._map_body import END, FAILED, TURN, WRITABLE, Body
from ._patches import bound_function, is_own_method
from ._thirdparty import RequestMethods
from .exceptions import DeadlineExceeded
from .light import LightResponse
from .pool import Resend
from .schedule import HostScheduler

__all__ = ("Driver", "ManagerDriver", "Result", "host_of", "narrow_timeout", "run_map")

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

    @property
    def plain_new(self) -> Callable[[Any], Any] | None:
        """``plain_new(given)``: the job :meth:`new` would make, made the plainest way, or
        None: :meth:`new` makes it. None (or no such attribute): never. Read once, when the
        map starts."""

    @property
    def plain_begin(self) -> Callable[[Any, Loop], Exchange | bool | None] | None:
        """``plain_begin(job, loop)``: the job's next hop begun the plainest way (an Exchange,
        or False as :meth:`begin` says), or None: nothing was done, :meth:`begin` takes it
        (and does not try that way again). None (or no such attribute): never. Read once, when
        the map starts."""

    def begin(
        self, job: Any, loop: Loop, wait: bool = False, limit: float | None = None
    ) -> Exchange | bool | None:
        """Hand the job's next hop to ``loop``: an Exchange, None (its pool has no free
        connection now), or False (it must run through :meth:`send` without the loop). With
        ``wait``, wait for a free connection as one request would (its pool timeout, at most
        ``limit`` seconds when given), raising what one request raises when none comes. A
        checkout may ask ``loop`` whether an idle connection is alive (``Loop.seen_idle``)."""

    def send(self, job: Any, exchange: Exchange | None, remaining: float | None = None) -> Any:
        """The hop's response or exception (never raised), finishing ``exchange``, or
        (None) the whole hop in this thread, its timeouts narrowed to ``remaining`` seconds
        (the job's deadline) when given (:func:`narrow_timeout`)."""

    def after(self, job: Any, outcome: Any) -> Result | None:
        """The job's result, or None when it has a next hop (a redirect to follow)."""

    @property
    def plain_result(self) -> Callable[[Any, Exchange], Result | None] | None:
        """``plain_result(job, exchange)``: the job's result when the answer ``exchange`` read
        needs nothing more (no next hop; what :meth:`send` then :meth:`after` would make of
        it, an error it raised included), its connection handed back; None: :meth:`send`
        finishes it. None (or no such attribute): never."""

    def retry(self, job: Any, retries: Any) -> None:
        """urllib3's ``Retry`` sends the job's hop again, counting with ``retries``."""

    def expired(self, job: Any, deadline: float) -> Result:
        """The job's result when its ``deadline`` (seconds) passed before it ended."""

    #: how ``on_body`` gets a body: decoded (True), as it came (False), or as the response
    #: decodes it (None)
    decode_body: bool | None

    def body_of(self, response: Any) -> Any:
        """The urllib3-style response whose body ``on_body`` gets (``Response.raw``)."""

    def body_failed(self, error: Exception) -> Exception:
        """What reading the body through this API raises for ``error`` (requests maps
        urllib3's errors in ``iter_content``)."""

    def body_read(self, response: Any) -> None:
        """``on_body`` had the whole body: the response says it was consumed."""


def run_map(
    driver: Driver,
    requests: Iterable[Any],
    *,
    concurrency: int,
    per_host: int | None,
    delay: float,
    rate: float | None,
    dial_workers: int,
    deadline: float | None = None,
    on_body: Callable[[Any, Any, bytes], Any] | None = None,
) -> Iterator[Result]:
    """An iterator of a :class:`Result` per item of ``requests`` as each completes, at most
    ``concurrency`` in flight (``per_host`` per host), starts to one host ``delay`` seconds
    apart and at most ``rate`` a second, each ended (cancelled) ``deadline`` seconds after it
    started if it has not ended by then; leaving early cancels what is in flight. With
    ``on_body``, each response's body is read as it arrives and handed to ``on_body(request,
    response, piece)`` piece by piece, and its result comes once the body has ended. Bad
    arguments raise here, before any request."""
    _check_positive("concurrency", concurrency)
    if per_host is not None:
        _check_positive("per_host", per_host)
    _check_positive("dial_workers", dial_workers)
    if deadline is not None and (
        isinstance(deadline, bool)
        or not isinstance(deadline, (int, float))
        or not 0 < deadline < math.inf
    ):
        raise ValueError(f"deadline must be a number of seconds > 0 or None, got {deadline!r}")
    if on_body is not None and not callable(on_body):
        raise TypeError(f"on_body must be a callable or None, got {on_body!r}")
    scheduler = HostScheduler(per_host=per_host, delay=delay, rate=rate)  # checks the others
    run = _Run(driver, iter(requests), concurrency, scheduler, dial_workers)
    run.deadline = None if deadline is None else float(deadline)
    run.on_body = on_body
    return _results(run)


def narrow_timeout(timeout: Any, remaining: float) -> Timeout:
    """``timeout`` (None, seconds, ``(connect, read)`` or a urllib3 ``Timeout``) as a urllib3
    ``Timeout`` whose ``total`` is at most ``remaining`` seconds: a hop sent whole, in the
    caller's thread, ends by the request's deadline."""
    remaining = max(remaining, 0.001)  # 0 would mean "do not wait" to a socket
    if isinstance(timeout, Timeout):
        total = timeout.total
        return Timeout(
            connect=timeout._connect,
            read=timeout._read,
            total=min(total, remaining) if isinstance(total, (int, float)) else remaining,
        )
    if isinstance(timeout, tuple):
        connect, read = timeout
        return Timeout(connect=connect, read=read, total=remaining)
    if timeout is Timeout.DEFAULT_TIMEOUT:
        return Timeout(total=remaining)
    return Timeout(connect=timeout, read=timeout, total=remaining)


def _narrow_hop(kw: dict[str, Any], remaining: float, timeout: Any, wait: Any) -> None:
    """A hop's ``urlopen`` arguments ``kw`` bounded by ``remaining`` seconds: its timeout
    (``timeout`` when ``kw`` has none) narrowed, and its wait at a cap (``wait`` when ``kw``
    has none; None: no bound but the deadline)."""
    given = kw.get("timeout", Timeout.DEFAULT_TIMEOUT)
    kw["timeout"] = narrow_timeout(
        timeout if given is Timeout.DEFAULT_TIMEOUT else given, remaining
    )
    if kw.get("pool_timeout") is not None:
        wait = kw["pool_timeout"]
    limit = max(remaining, 0.001)
    kw["pool_timeout"] = limit if wait is None else min(wait, limit)


def _results(run: _Run) -> Iterator[Result]:
    run.loop = Loop(dial_workers=run.dial_workers)
    try:
        while True:
            run.take_input()
            run.start_what_may()
            while run.ready:
                yield run.ready.popleft()
                # Each result taken makes room under the results' bound: start what it allows
                # now, so the loop does not drain before the next wait (a poll may return a
                # whole concurrency's worth of results).
                run.start_what_may()
            if run.finished():
                return
            run.wait()
    finally:
        run.cancel()


def _check_positive(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


_NO_SLOT = object()
_DRAIN = object()
#: seconds between looks for a connection another thread gave back, while a request waits
_SLOT_RECHECK = 0.02
_EXPIRED = object()
_UNTRIED = object()  # the driver's plain_begin was not asked for this hop yet


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
        self.order = 0
        # The deadline (seconds from a request's first start; None: none), when each started
        # request expires, those expiries in time order, and which exchange a job has in the
        # loop (to cancel it there).
        self.deadline: float | None = None
        self.expiry: dict[Any, float] = {}
        self.expiries: list[tuple[float, int, Any]] = []
        self.exchange_of: dict[Any, Exchange] = {}
        #: expired while queued for a next hop: dropped when the scheduler hands them out
        self.dead: set[Any] = set()
        self.on_body: Callable[[Any, Any, bytes], Any] | None = None
        #: bodies whose turn ended with more to read: on after the next poll
        self.bodies: deque[Body] = deque()
        self.plain_begin = getattr(driver, "plain_begin", None)
        self.plain_new = getattr(driver, "plain_new", None)

    def take_input(self) -> None:
        """Read the caller's requests while there is room ahead."""
        if self.exhausted:
            return
        scheduler, source, room = self.scheduler, self.source, self.concurrency * _LOOKAHEAD
        plain_new, new = self.plain_new, self.driver.new
        while len(scheduler) < room:
            try:
                given = next(source)
            except StopIteration:
                self.exhausted = True
                return
            try:
                job = None if plain_new is None else plain_new(given)
                if job is None:
                    job = new(given)
            except Exception as e:  # noqa: BLE001 - the request's outcome, yielded
                self.ready.append(Result(given, None, e))
                continue
            scheduler.push(job, job.host, None)

    def start_what_may(self) -> None:
        """Start what the limits allow (the results waiting to be yielded are bounded too).

        A request whose pool has no free connection waits (``waiting_slot``), and so do the
        later requests to its host, in order; requests to other hosts go on. Each pass tries
        each waiting host once. Only when nothing of the map is in flight does the first
        waiting request wait in this thread, as one request would."""
        later = self.later
        if later:
            now = time.monotonic()
            while later and later[0][0] <= now:
                job = heapq.heappop(later)[2]
                # its backoff is over: ahead of the requests not begun yet, as one request
                # sends its retry before the caller's next request
                self.scheduler.push_first(job, job.host, None)
        started, ready, plain_begin = self.started, self.ready, self.plain_begin
        blocked: set[str] = set()  # hosts with no free connection in this pass
        drain = False  # a hop to send whole waits for the map to drain: nothing else starts
        if self.waiting_slot:
            waiting, self.waiting_slot = self.waiting_slot, deque()
            for job in waiting:
                if drain or job.host in blocked or len(ready) >= self.concurrency:
                    self.waiting_slot.append(job)
                else:
                    drain = self._start_or_wait(job, blocked)
        while (
            not drain
            and len(started) + len(self.waiting_slot) < self.concurrency
            and len(ready) < self.concurrency
        ):
            popped = self.scheduler.pop()
            if popped is None:
                break
            job = popped[0]
            if job.host in blocked:
                self.waiting_slot.append(job)  # behind its host's waiting requests
                continue
            if plain_begin is not None and self.deadline is None:
                # (_start's and _begin's steps for a hop the lane takes, two frames less: no
                # deadline to arm, and no expired job to drop, as only a deadline expires one)
                try:
                    exchange = plain_begin(job, self.loop)
                except Exception as e:  # noqa: BLE001 - the request's outcome, yielded
                    self._after(job, e)
                    continue
                if exchange is not None and exchange is not False:
                    started[exchange] = job
                    self.loop.start(exchange)
                    continue
                outcome = self._start(job, False, exchange)  # (tried already)
            else:
                # (_start_or_wait's steps, one frame less for each request started)
                outcome = self._start(job, False)
            if outcome is not None:
                blocked.add(job.host)
                self.waiting_slot.append(job)
                drain = outcome is _DRAIN
        if self.waiting_slot and not started and not ready:
            # Nothing of this map holds a connection: the first waiting request may wait at
            # its pool's cap in this thread (other threads hold the connections), or be sent
            # whole.
            job = self.waiting_slot.popleft()
            if self._start(job, True) is not None:
                self.waiting_slot.appendleft(job)

    def _start_or_wait(self, job: Any, blocked: set[str]) -> bool:
        """Start ``job``, or put it with the waiting requests (its host ``blocked`` for this
        pass). True: it must be sent whole once the map has drained (nothing else starts)."""
        outcome = self._start(job, False)
        if outcome is None:
            return False
        blocked.add(job.host)
        self.waiting_slot.append(job)
        return outcome is _DRAIN

    def _start(self, job: Any, may_wait: bool, tried: Any = _UNTRIED) -> Any:
        """Begin ``job``'s hop: into the loop, or to the results (an error, its deadline, a
        hop sent whole): None. Or nothing was done: ``_NO_SLOT`` (its pool has no free
        connection now) or ``_DRAIN`` (it must be sent whole once the map has drained).
        ``tried``: what the driver's ``plain_begin`` answered for this hop, when asked
        already."""
        dead = self.dead
        if dead and job in dead:  # its deadline passed while it waited: yielded already
            dead.discard(job)
            self.scheduler.done(job.host)
            return None
        if self.deadline is not None and job not in self.expiry:
            expires = time.monotonic() + self.deadline
            self.expiry[job] = expires
            self.order += 1
            heapq.heappush(self.expiries, (expires, self.order, job))
        outcome = self._begin(job, may_wait, tried)
        if outcome is _NO_SLOT or outcome is _DRAIN:
            return outcome
        if outcome is _EXPIRED:
            self.scheduler.done(job.host)
            del self.expiry[job]
            self.ready.append(self.driver.expired(job, self.deadline))  # type: ignore[arg-type]
        elif isinstance(outcome, Exchange):
            self.started[outcome] = job
            if self.deadline is not None:
                self.exchange_of[job] = outcome
            self.loop.start(outcome)
        else:
            self._after(job, outcome)
        outcome = None  # (an error's traceback keeps this frame as a caller: see wait)
        return None

    def _begin(self, job: Any, may_wait: bool, tried: Any = _UNTRIED) -> Any:
        """An Exchange for the loop, ``_NO_SLOT`` (no free connection now), ``_EXPIRED``, or
        the hop's outcome from the one-request path in this thread (where the loop cannot
        take it). ``may_wait``: nothing of this map holds a connection (none in flight, no
        unyielded streamed response), so this thread may block without waiting for itself."""
        expires = self.expiry.get(job)
        plain_begin = self.plain_begin
        try:
            if tried is not _UNTRIED:
                exchange = tried
            else:
                exchange = None if plain_begin is None else plain_begin(job, self.loop)
            if exchange is None:
                exchange = self.driver.begin(job, self.loop)
            if exchange is None and may_wait:
                # Another thread holds the pool's connections: wait at the cap as one request
                # would (up to its pool_timeout, and the deadline), then go on in the loop,
                # the hop's Retry state carried on.
                limit = None if expires is None else expires - time.monotonic()
                exchange = self.driver.begin(job, self.loop, True, limit)
        except Exception as e:  # noqa: BLE001 - the request's outcome, yielded
            if expires is not None and time.monotonic() >= expires:
                return _EXPIRED  # the wait at the cap ended at the deadline
            return e
        if exchange is None:
            return _NO_SLOT
        if exchange is False:
            if not may_wait:
                # Sent whole in this thread, it may wait at a cap for a connection this map
                # holds: it waits (and nothing new starts) until the map has drained.
                return _DRAIN
            if expires is None:
                return self.driver.send(job, None)
            outcome = self.driver.send(job, None, expires - time.monotonic())
            try:
                if time.monotonic() >= expires:
                    # Sent whole in this thread, its timeouts narrowed to the deadline, and
                    # ended at or after it: the deadline is what ended it.
                    if not isinstance(outcome, BaseException):
                        _close(outcome)
                    return _EXPIRED
                return outcome
            finally:
                outcome = None  # (as in _start)
        return exchange

    def _after(self, job: Any, outcome: Any) -> None:
        expiry = self.expiry
        if expiry:
            self.exchange_of.pop(job, None)
        if isinstance(outcome, Resend):
            # urllib3's Retry: again after its backoff, without the loop thread sleeping
            self.scheduler.done(job.host)
            self.driver.retry(job, outcome.retries)
            self.order += 1
            heapq.heappush(self.later, (time.monotonic() + outcome.delay, self.order, job))
            return
        host = job.host  # (a redirect to another host changes it: this one's slot ends)
        result = self.driver.after(job, outcome)
        if result is None:
            self.scheduler.done(host)
            # its next hop, ahead of the requests not begun yet: as a loop of one request at
            # a time, the redirect is followed before the next item starts
            self.scheduler.push_first(job, job.host, None)
        elif self.on_body is not None and result.response is not None:
            # Its body to on_body as it arrives: still in flight (and at its host) until then.
            raw = self.driver.body_of(result.response)
            body = Body(job, result, raw, self.driver.decode_body)
            self.started[body.exchange] = job
            if self.deadline is not None:
                self.exchange_of[job] = body.exchange
            self._read_body(body)
        else:
            self._ended(job, result)

    def _ended(self, job: Any, result: Result) -> None:
        """The job is done: its ``result`` to be yielded."""
        if self.expiry:
            self.exchange_of.pop(job, None)
            self.expiry.pop(job, None)
        self.scheduler.done(job.host)
        self.ready.append(result)

    def _read_body(self, body: Body) -> None:
        """Hand the pieces of ``body`` that have arrived to ``on_body``; then wait for more
        (in the loop, or after the next poll when its turn ended), or (at its end, or a
        failure) make its result ready."""
        if body.exchange not in self.started:
            return  # cancelled (its deadline) while it waited for its turn
        assert self.on_body is not None
        step = body.read(self.on_body)
        if step is END:
            self.driver.body_read(body.result.response)
            self._body_ended(body, body.result)
        elif step is FAILED:
            error = self.driver.body_failed(body.error)  # type: ignore[arg-type]
            self._body_ended(body, Result(body.job.given, None, error))
        elif step is TURN:
            self.bodies.append(body)  # the others' turn; it goes on after the next poll
        else:
            self.loop.when_ready(body.exchange, step is WRITABLE)

    def _body_ended(self, body: Body, result: Result) -> None:
        job = body.job
        body.ended()
        self.started.pop(body.exchange, None)
        self.exchange_of.pop(job, None)
        self.expiry.pop(job, None)
        self.scheduler.done(job.host)
        self.ready.append(result)

    def expire(self) -> None:
        """End every request whose deadline has passed: cancelled where it is (in the loop,
        waiting out a backoff, or queued for its next hop), its result yielded now."""
        expiries = self.expiries
        now = time.monotonic()
        while expiries and expiries[0][0] <= now:
            job = heapq.heappop(expiries)[2]
            if self.expiry.pop(job, None) is None:
                continue  # it ended before its deadline
            ex = self.exchange_of.pop(job, None)
            if ex is not None:
                # In the loop (writing, reading, or dialing: a dial's worker closes what it
                # opens): its connection closed and its slot given back now.
                del self.started[ex]
                self.loop.cancel(ex)
                ex.tag._loop_abandon(ex)
                self.scheduler.done(job.host)
            elif any(entry[2] is job for entry in self.later):
                self.later = [entry for entry in self.later if entry[2] is not job]
                heapq.heapify(self.later)
            elif job in self.waiting_slot:
                self.waiting_slot.remove(job)
                self.scheduler.done(job.host)
            else:
                self.dead.add(job)  # queued in the scheduler for its next hop
            self.ready.append(self.driver.expired(job, self.deadline))  # type: ignore[arg-type]

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
        """When a politeness wait, a retry's backoff or a deadline ends (None: nothing waits
        on time). The scheduler's readiness counts only while a request may start: at the
        concurrency limit, or behind a request waiting for a connection, only an exchange's end
        can let one start (waking for the scheduler then would spin the loop)."""
        wake = None
        if self.waiting_slot:
            if self.started:
                # Another thread may free a connection without waking the loop: look again
                # now and then.
                wake = time.monotonic() + _SLOT_RECHECK
        elif len(self.started) < self.concurrency:
            wake = self.scheduler.next_ready()
        if self.later and (wake is None or self.later[0][0] < wake):
            wake = self.later[0][0]
        if self.expiries and (wake is None or self.expiries[0][0] < wake):
            wake = self.expiries[0][0]
        return wake

    def wait(self) -> None:
        """Let the loop run until an exchange ends (or a politeness wait, a backoff or a
        deadline does)."""
        wake = self._wake()
        if not self.started:
            # A request waiting for the map to drain goes now (start_what_may); else sleep
            # until a politeness wait, a backoff or a deadline ends.
            if not self.ready and not self.waiting_slot and wake is not None:
                time.sleep(min(max(wake - time.monotonic(), 0.0), 1.0))
            if self.expiries:
                self.expire()
            return
        wait = None if wake is None else max(wake - time.monotonic(), 0.0)
        bodies = self.bodies
        turns = len(bodies)  # those whose turn ended before this poll go on after it
        if turns:
            wait = 0.0
        plain_result = getattr(self.driver, "plain_result", None)
        for ex in self.loop.poll(wait):
            job = self.started.get(ex)
            if job is None:
                continue  # cancelled at its deadline: handed back by the loop all the same
            if type(ex.tag) is Body:
                self._read_body(ex.tag)  # its socket is ready (or its read timed out)
                continue
            if plain_result is not None:
                result = plain_result(job, ex)  # (never raises: an error is the result)
                if result is not None:
                    if ex.conn is not None:  # failed before taking it
                        ex.tag._loop_abandon(ex)
                    del self.started[ex]
                    if self.expiry:
                        self._ended(job, result)
                    else:  # (_ended's steps without a deadline: one frame less)
                        self.scheduler.done(job.host)
                        self.ready.append(result)
                    continue
            outcome = self.driver.send(job, ex)
            # Its connection is the response's now, unless urlopen never took it (a tool
            # answered in its place, or finishing failed first): then it goes back here.
            if ex.conn is not None:  # (taken: nothing to give back)
                ex.tag._loop_abandon(ex)
            del self.started[ex]  # after: an interruption leaves it to cancel()
            self._after(job, outcome)
        # An error's traceback holds the frame that caught it, whose caller is this frame:
        # holding the last outcome here would make each error a cycle with the response its
        # frames hold, left to the collector (which may finalize the socket first).
        outcome = result = None
        for _ in range(turns):
            self._read_body(bodies.popleft())
        if self.expiries:
            self.expire()

    def cancel(self) -> None:
        """The caller left early (or an error): stop what is in flight, give every slot back."""
        loop = self.loop
        for ex in list(self.started):
            loop.cancel(ex)
        loop.close()  # dials in progress close what they open, in their workers
        for ex in self.started:
            ex.tag._loop_abandon(ex)


def _close(outcome: Any) -> None:
    """Let a response the deadline overtook go: its connection back, or closed."""
    for response in (*getattr(outcome, "history", ()), outcome):
        try:
            response.close()
        except Exception:  # noqa: BLE001, S110 - nothing to report it to; the result says why
            pass


# --- PoolManager ---------------------------------------------------------------------------------
class _Capture(RequestMethods):
    """``RequestMethods.request``'s encoding (fields, json, body) without sending: its
    ``urlopen`` returns what it was given."""

    def urlopen(self, method: str, url: str, **kw: Any) -> Any:  # type: ignore[override]
        return method, url, kw


def _item_parts(given: Any) -> tuple[Any, Any, Any]:
    """``(method, url, kwargs)`` of a ``PoolManager.map`` item (kwargs as given: a dict or a
    mapping), or TypeError."""
    if isinstance(given, str):
        return "GET", given, {}
    if isinstance(given, tuple) and len(given) in (2, 3):
        kwargs = given[2] if len(given) == 3 else {}
        # (a non-dict mapping becomes a dict; a dict is copied later: nothing keeps the caller's)
        return given[0], given[1], kwargs if type(kwargs) is dict else dict(kwargs)
    raise TypeError(
        "PoolManager.map takes URLs, (method, url) or (method, url, kwargs), "
        f"got {type(given).__name__}"
    )


class ManagerDriver:
    """:class:`Driver` for ``PoolManager.map``: ``PoolManager.request``'s steps, hop by hop
    (``PoolManager.urlopen`` with its redirects across hosts). With ``light``, each response
    is a :class:`~fastpool.light.LightResponse`. ``own_requests`` and ``own_urlopens`` are
    fastpool's own ``request`` and ``urlopen`` functions, which the manager's are compared
    with by identity; with none given, each item goes whole through the manager's
    ``request``."""

    def __init__(
        self,
        manager: Any,
        light: bool = False,
        stream_bodies: bool = False,
        lane: Lane | None = None,
        own_requests: tuple[Any, ...] = (),
        own_urlopens: tuple[Any, ...] = (),
    ) -> None:
        self.manager = manager
        self.light = light
        #: each body is read by the map for ``on_body``: every hop streams (preload_content
        #: False), as a urllib3 response read in pieces
        self.stream_bodies = stream_bodies
        #: the plainest hops' steps in one call each way (without the manager's own functions
        #: to check against, it begins none and only finishes light answers)
        self.lane = Lane(manager, None, None, result_type=Result) if lane is None else lane
        self.plain_begin = self.lane.begin
        # (the lane's LightResponse, the plainest answer: nothing to follow, as send and
        # after would make it)
        self.plain_result = self.lane.result if light else None
        #: fastpool's own urlopen functions (fastpool.poolmanager's, given by the manager):
        #: any other (a subclass's, a patch's) is called with each request whole
        self._own_urlopens = own_urlopens
        #: fastpool's own PoolManager.request (None: replaced already, or none given): an item
        #: goes whole through any other (a patch's, a subclass's), as one request would
        function = bound_function(manager, "request")
        self._own_request = function if function in own_requests else None
        #: an item with nothing to encode made a job in one call (each body streamed for
        #: on_body takes new's steps)
        self.plain_new = (
            None
            if self._own_request is None or stream_bodies
            else PlainJobs(manager, self._own_request)
        )

    def new(self, given: Any) -> ManagerJob:
        own = self._own_request
        if own is None or not is_own_method(self.manager.request, self.manager, own):
            return self._whole_job(given)
        # (without on_body, the map asked plain_new first: the item has something to encode)
        job = plain_job(given, self.manager.headers) if self.stream_bodies else None
        if job is None:
            job = self._new(given)
        if self.stream_bodies:
            job.kw["preload_content"] = False
        return job

    def _whole_job(self, given: Any) -> ManagerJob:
        """A job for the manager's replaced ``request`` (a patch's, a subclass's): the item
        goes whole through it, in this thread, as one request would (its redirects followed
        there)."""
        method, url, kwargs = _item_parts(given)
        kwargs = dict(kwargs)  # (nothing keeps the caller's)
        if self.stream_bodies:
            kwargs["preload_content"] = False
        job = ManagerJob(given, method, url, {})
        job.whole = (method, url, kwargs)
        job.redirect = False
        job.kw = None  # type: ignore[assignment]  # (nothing for the lane: it steps aside)
        return job

    def _through_request(self, job: ManagerJob, remaining: float | None) -> Any:
        assert job.whole is not None
        method, url, kw = job.whole
        kw = dict(kw)
        if remaining is not None:
            self._narrow_timeout(kw, remaining)
        return self.manager.request(method, url, **kw)

    def _narrow_timeout(self, kw: dict[str, Any], remaining: float) -> None:
        """``kw``'s timeout and its wait at a cap (the manager's pools' own by default)
        narrowed to ``remaining`` seconds."""
        manager = self.manager
        _narrow_hop(
            kw,
            remaining,
            manager.connection_pool_kw.get("timeout", Timeout.DEFAULT_TIMEOUT),
            manager._pool_options.get("pool_timeout"),
        )

    def _new(self, given: Any) -> ManagerJob:
        # RequestMethods.request's own steps (an item with nothing to encode takes plain_job,
        # which makes what these would: pinned by a test)
        method, url, kwargs = _item_parts(given)
        if self.light and not kwargs.get("preload_content", True):
            raise ValueError(
                "PoolManager.map(light=True) reads every body whole: preload_content=False "
                "needs light=False"
            )
        if self.stream_bodies and kwargs.get("preload_content") is True:
            raise ValueError(
                "PoolManager.map(on_body=...) hands every body to on_body: "
                "preload_content=True needs on_body=None"
            )
        capture: Any = RequestMethods.request(_Capture(self.manager.headers), method, url, **kwargs)
        return ManagerJob(given, *capture)

    def begin(
        self, job: ManagerJob, loop: Loop, wait: bool = False, limit: float | None = None
    ) -> Exchange | bool | None:
        # (the lane, plain_begin, was tried first: what it left comes here)
        if job.whole is not None or not self._urlopen_is_ours():
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
            wait=wait,
            pool_timeout=kw.get("pool_timeout"),
            limit=limit,
        )

    def _urlopen_is_ours(self) -> bool:
        """Whether the manager's ``urlopen`` is fastpool's own (PoolManager's, ProxyManager's),
        neither a subclass's nor a patch's."""
        return bound_function(self.manager, "urlopen") in self._own_urlopens

    def _through_urlopen(self, job: ManagerJob, remaining: float | None) -> Any:
        """The whole request through the manager's ``urlopen`` as ``PoolManager.request``
        hands it over, for a subclass's or a patch's ``urlopen`` to see (its timeouts narrowed
        to ``remaining`` seconds when given: each hop's, as the redirects and retries run
        inside that ``urlopen``). It follows the redirects itself: nothing after it does."""
        kw = {k: v for k, v in job.kw.items() if k not in ("assert_same_host", "redirect")}
        if remaining is not None:
            self._narrow_timeout(kw, remaining)
        redirect, job.redirect = job.redirect, False
        return self.manager.urlopen(job.method, job.url, redirect=redirect, **kw)

    def _hop(self, job: ManagerJob) -> tuple[dict[str, Any], str]:
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

    def send(
        self, job: ManagerJob, exchange: Exchange | None, remaining: float | None = None
    ) -> Any:
        try:
            if exchange is None:
                if job.whole is not None:
                    return self._through_request(job, remaining)
                if not self._urlopen_is_ours():
                    return self._through_urlopen(job, remaining)
                # The whole hop here, as PoolManager.urlopen's first half.
                kw, target = self._hop(job)
                if remaining is not None:
                    # (the pool's own timeout and pool_timeout by default, as urlopen takes them)
                    _narrow_hop(kw, remaining, job.conn.timeout, job.conn.pool_timeout)
                try:
                    return job.conn.urlopen(job.method, target, **kw)
                except ClosedPoolError:  # evicted meanwhile: nothing was sent
                    scheme, host, port, _ = self.manager._split_url(job.url)
                    job.conn = self.manager.connection_from_host(host, port=port, scheme=scheme)
                    return job.conn.urlopen(job.method, target, **kw)
            # (with light, plain_result has already offered it to the lane)
            return job.conn.urlopen(job.method, job.target, _exchange=exchange, **job.kw)
        except Exception as e:  # noqa: BLE001 - the request's outcome, yielded
            return e

    def retry(self, job: ManagerJob, retries: Any) -> None:
        job.kw["retries"] = retries

    decode_body: bool | None = None  # as each response decodes (decode_content: True)

    def body_of(self, response: Any) -> Any:
        """The response itself: urllib3's reads its own body."""
        return response

    def body_failed(self, error: Exception) -> Exception:
        """urllib3's error, as its ``stream()`` raises it."""
        return error

    def body_read(self, response: Any) -> None:
        """Nothing to mark: a urllib3 response read to its end gives ``data == b""``."""

    def expired(self, job: ManagerJob, deadline: float) -> Result:
        error = DeadlineExceeded(
            f"{job.method} {job.url}: not done within its deadline of {deadline:g} s"
        )
        return Result(job.given, None, error)

    def after(self, job: ManagerJob, outcome: Any) -> Result | None:
        if isinstance(outcome, BaseException):
            return Result(job.given, None, outcome)
        response = outcome
        if type(response) is LightResponse:
            return Result(job.given, response, None)  # the plainest answer: nothing to follow
        if not (job.redirect and response.status in response.REDIRECT_STATUSES):
            return self._result(job, response)
        try:
            step = self.manager._follow(
                job.method, job.url, job.redirect, job.kw, job.conn, response
            )
        except Exception as e:  # noqa: BLE001 - the request's outcome, yielded
            return Result(job.given, None, e)
        if step is None:
            return self._result(job, response)
        job.method, job.url = step
        job.host = host_of(job.url)
        return None

    def _result(self, job: ManagerJob, response: Any) -> Result:
        if self.light:
            try:
                response = LightResponse.from_response(response, job.url)
            except Exception as e:  # noqa: BLE001 - reading the body failed: the outcome
                return Result(job.given, None, e)
        return Result(job.given, response, None)
