"""HostScheduler, the pure-Python twin: queued requests per host, handed out fairly under limits.

What it does is told in the public module, ``fastpool.schedule``. The compiled twin
``_schedule_c.HostScheduler`` behaves the same, down to each call to the injected clock; this
module is the typed source of truth.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import Hashable
from typing import Any, Callable

__all__ = ("HostScheduler",)

# Where a host with queued items is: exactly one of these at any time.
_IDLE = 0  # nothing queued (or not admitted yet while it waits its turn: _ADMIT)
_READY = 1  # may start now (rate and max_in_flight permitting): in the deque of hosts holding
# items pushed first (_first) if it holds any, else in the round-robin deque (_ready)
_TIMED = 2  # in the heap: its delay since the last start has not passed yet
_FULL = 3  # at its per-host cap: done() puts it back
_ADMIT = 4  # queued items, but max_hosts hosts already take turns: waits for one to leave (in
# _admit_first if it holds items pushed first, else in _admit)


class _Host:
    """One host's queue and counters."""

    __slots__ = ("active", "first", "in_flight", "last_start", "name", "queue", "state")

    def __init__(self, name: Hashable) -> None:
        self.name = name
        self.queue: deque[tuple[Any, Any]] = deque()
        self.first = 0  # the items pushed first: the queue's first ones, not popped yet
        self.in_flight = 0
        self.last_start = -math.inf
        self.state = _IDLE
        self.active = False  # one of the (at most max_hosts) hosts taking turns


def _optional_number(name: str, value: object, minimum: float, strict: bool) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number or None, got {type(value).__name__}")
    if math.isnan(value) or (value <= minimum if strict else value < minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return float(value)


def _optional_count(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or None, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def _checked_delay(value: object) -> float:
    checked = _optional_number("delay", value, 0.0, strict=False)
    if checked is None or math.isinf(checked):
        raise ValueError(f"delay must be a finite number >= 0, got {value!r}")
    return checked


def _checked_rate(value: object) -> float | None:
    checked = _optional_number("rate", value, 0.0, strict=True)
    return None if checked is not None and math.isinf(checked) else checked  # inf: no cap


def _checked_burst(value: object) -> int:
    count = _optional_count("burst", value)
    if count is None:
        raise TypeError("burst must be an int >= 1, got None")
    float(count)  # (one too large for a float fails here, not at a later pop)
    return count


class HostScheduler:
    """Queued requests per host, handed out fairly under per-host and global limits.

    - ``per_host`` (default None: no cap): requests in flight to one host at a time.
    - ``delay`` (default 0): the minimum number of seconds between two starts to one host.
    - ``rate`` (default None: no cap): requests started per second overall, with bursts of up
      to ``burst`` (default 1) requests.
    - ``max_in_flight`` (default None: no cap): requests in flight overall; ``pop()`` hands out
      nothing more until a ``done()``.
    - ``max_hosts`` (default None: no cap): hosts taking turns at once; a further host waits
      until one of them has nothing queued and nothing in flight.
    - ``clock`` (default ``time.monotonic``): the time in seconds (read as a float), for delays
      and the rate.

    Each limit may be set again later (``scheduler.delay = 2.0``), checked as the constructor
    checks it; the next ``pop()`` obeys it. A scheduler holds queued requests: it cannot be
    pickled or copied.

    A *host* is any hashable key the caller chooses (a host name, say); items are handed back
    as given. ``len(scheduler)`` is the number of items queued, not counting those in flight.

    ``push_first()`` queues an item ahead of its host's ``push()`` items, and that host's turns
    ahead of the hosts holding none (the next hop of a redirect, a retry whose wait is over).
    """

    __slots__ = (
        "_active", "_admit", "_admit_first", "_burst", "_delay", "_first", "_hosts", "_in_flight",
        "_max_hosts", "_max_in_flight", "_order", "_per_host", "_queued", "_rate", "_ready",
        "_refilled", "_timed", "_tokens", "clock",
    )  # fmt: skip

    def __init__(
        self,
        *,
        per_host: int | None = None,
        delay: float = 0.0,
        rate: float | None = None,
        burst: int = 1,
        max_in_flight: int | None = None,
        max_hosts: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # (each limit through its property: checked as when it is set later)
        self.per_host = per_host
        self.delay = delay
        self.rate = rate
        self.burst = burst
        self.max_in_flight = max_in_flight
        self.max_hosts = max_hosts
        self.clock = clock
        self._hosts: dict[Hashable, _Host] = {}
        self._ready: deque[_Host] = deque()
        self._first: deque[_Host] = deque()  # ready hosts holding items pushed first: go before
        self._timed: list[tuple[float, int, _Host]] = []
        self._admit: deque[_Host] = deque()
        self._admit_first: deque[_Host] = deque()  # waiting hosts holding items pushed first
        self._order = itertools.count()  # breaks ties in the heap: first in, first out
        self._queued = 0
        self._in_flight = 0
        self._active = 0
        self._tokens = float(self._burst)
        self._refilled = self._now()

    # --- the limits: each checked when set, as the constructor checks it -------------------------

    @property
    def per_host(self) -> int | None:
        """Requests in flight to one host at a time, or None."""
        return self._per_host

    @per_host.setter
    def per_host(self, value: int | None) -> None:
        self._per_host = _optional_count("per_host", value)

    @property
    def delay(self) -> float:
        """The minimum number of seconds between two starts to one host."""
        return self._delay

    @delay.setter
    def delay(self, value: float) -> None:
        self._delay = _checked_delay(value)

    @property
    def rate(self) -> float | None:
        """Requests started per second overall, or None."""
        return self._rate

    @rate.setter
    def rate(self, value: float | None) -> None:
        self._rate = _checked_rate(value)

    @property
    def burst(self) -> int:
        """How many requests the rate lets start at once."""
        return self._burst

    @burst.setter
    def burst(self, value: int) -> None:
        self._burst = _checked_burst(value)

    @property
    def max_in_flight(self) -> int | None:
        """Requests in flight overall, or None."""
        return self._max_in_flight

    @max_in_flight.setter
    def max_in_flight(self, value: int | None) -> None:
        self._max_in_flight = _optional_count("max_in_flight", value)

    @property
    def max_hosts(self) -> int | None:
        """Hosts taking turns at once, or None."""
        return self._max_hosts

    @max_hosts.setter
    def max_hosts(self, value: int | None) -> None:
        self._max_hosts = _optional_count("max_hosts", value)

    def __reduce__(self) -> Any:
        raise TypeError("a HostScheduler cannot be pickled or copied: it holds queued requests")

    # --- what the caller reads -------------------------------------------------------------------

    def __len__(self) -> int:
        """Items queued (pushed and not popped yet)."""
        return self._queued

    @property
    def in_flight(self) -> int:
        """Items popped and not reported ``done()`` yet."""
        return self._in_flight

    def __repr__(self) -> str:
        return (
            f"<HostScheduler queued={self._queued} in_flight={self._in_flight} "
            f"ready_hosts={len(self._first) + len(self._ready)} timed_hosts={len(self._timed)} "
            f"waiting_hosts={len(self._admit_first) + len(self._admit)}>"
        )

    # --- the operations --------------------------------------------------------------------------

    def push(self, key: Any, host: Hashable, item: Any) -> None:
        """Queue ``item`` for ``host``; ``pop()`` hands back ``(key, item)``."""
        entry = self._hosts.get(host)
        if entry is None:
            entry = self._hosts[host] = _Host(host)
        entry.queue.append((key, item))
        self._queued += 1
        if entry.state == _IDLE:
            if entry.active or self._max_hosts is None or self._active < self._max_hosts:
                if not entry.active:  # (_activate's steps, inline: a crawl pushes every item)
                    entry.active = True
                    self._active += 1
                # (the time matters to a delay only: no clock read per item without one)
                self._place(entry, self._now() if self._delay else 0.0)
            else:
                entry.state = _ADMIT
                self._admit.append(entry)

    def push_first(self, key: Any, host: Hashable, item: Any) -> None:
        """Queue ``item`` for ``host`` to start before what ``push()`` queued: the next hop of a
        redirect, say, or a retry whose wait is over; ``pop()`` hands back ``(key, item)``.

        The item goes ahead of the items of ``host`` queued with ``push()``, behind those of
        ``host`` pushed first before it and not popped yet. A host holding items pushed first
        takes its turns before the hosts holding none: such hosts start in the order they became
        ready (a host already waiting in the round robin moves over now), before the round
        robin, and a host's turn there lasts one item, as in the round robin. Every limit still
        holds: a host at its cap goes over when ``done()`` frees it, a host waiting out its
        delay when the delay ends; with ``max_hosts``, hosts waiting for a turn that hold items
        pushed first are let in first, in the order they came to hold them. Once its items
        pushed first have all started, the host goes back to the round robin, at its back."""
        entry = self._hosts.get(host)
        if entry is None:
            entry = self._hosts[host] = _Host(host)
        entry.queue.insert(entry.first, (key, item))  # O(items pushed first): a few at most
        entry.first += 1
        self._queued += 1
        if entry.state == _IDLE:  # push()'s steps; _place puts it in _first
            if entry.active or self._max_hosts is None or self._active < self._max_hosts:
                self._activate(entry)
                self._place(entry, self._now() if self._delay else 0.0)
            else:
                entry.state = _ADMIT
                self._admit_first.append(entry)
        elif entry.first == 1:  # its first item pushed first: the host moves over now
            # (removal from the middle costs O(hosts in that deque): fine for this rare call,
            # and push, pop and done keep plain deques)
            if entry.state == _READY:
                self._ready.remove(entry)
                self._first.append(entry)
            elif entry.state == _ADMIT:
                self._admit.remove(entry)
                self._admit_first.append(entry)
            # (_TIMED, _FULL: _release_timed and _place put it in _first when its time comes)

    def pop(self) -> tuple[Any, Any] | None:
        """The next ``(key, item)`` allowed to start now, or None (see :meth:`next_ready`).

        Hosts take turns; within a host, items start in the order they were pushed (those of
        :meth:`push_first` first). The item counts as in flight until ``done(host)``."""
        if self._max_in_flight is not None and self._in_flight >= self._max_in_flight:
            return None
        now = self._now()  # (also each start's time, for a delay set later)
        if self._timed:
            self._release_timed(now)
        if self._first:
            return self._pop_first(now)
        if not self._ready:
            return None
        if self._rate is not None:
            self._refill(now)
            if self._tokens < 1.0:
                return None
            self._tokens -= 1.0
        entry = self._ready.popleft()
        key, item = entry.queue.popleft()
        self._queued -= 1
        self._in_flight += 1
        entry.in_flight += 1
        entry.last_start = now
        if entry.queue:
            if self._delay or self._per_host is not None:
                entry.state = _IDLE
                self._place(entry, now)
            else:  # (_place's steps with no delay and no cap, inline)
                self._ready.append(entry)  # (still _READY)
        else:
            entry.state = _IDLE
        return key, item

    def done(self, host: Hashable) -> None:
        """An item of ``host`` finished (successfully or not): its per-host slot is free."""
        entry = self._hosts.get(host)
        if entry is None or entry.in_flight <= 0:
            raise ValueError(f"done({host!r}) without an item of that host in flight")
        entry.in_flight -= 1
        self._in_flight -= 1
        if entry.state == _FULL:
            entry.state = _IDLE
            self._place(entry, self._now())
        elif entry.state == _IDLE and not entry.queue and not entry.in_flight:
            self._retire(entry)

    def next_ready(self) -> float | None:
        """The ``clock()`` time at which ``pop()`` may next return an item because a delay or
        the rate allows it (a time at or before now: it may already), or None when nothing
        waits on time: only ``done()``, ``push()`` or ``push_first()`` can make ``pop()`` return
        something."""
        if self._max_in_flight is not None and self._in_flight >= self._max_in_flight:
            return None
        if self._first or self._ready:
            when = self._now()
        elif self._timed:
            when = self._timed[0][0]
        else:
            return None
        if self._rate is not None:
            now = self._now()
            tokens = min(float(self._burst), self._tokens + (now - self._refilled) * self._rate)
            if tokens < 1.0:
                when = max(when, now + (1.0 - tokens) / self._rate)
        return when

    # --- inside ----------------------------------------------------------------------------------

    def _now(self) -> float:
        # the clock's reading as seconds in a float, as the compiled twin reads it
        return float(self.clock())

    def _pop_first(self, now: float) -> tuple[Any, Any] | None:
        """pop()'s steps for the next host holding items pushed first."""
        if self._rate is not None:
            self._refill(now)
            if self._tokens < 1.0:
                return None
            self._tokens -= 1.0
        entry = self._first.popleft()
        key, item = entry.queue.popleft()
        entry.first -= 1
        self._queued -= 1
        self._in_flight += 1
        entry.in_flight += 1
        entry.last_start = now
        entry.state = _IDLE
        if entry.queue:  # (back to _first while it holds items pushed first, else to _ready)
            self._place(entry, now)
        return key, item

    def _refill(self, now: float) -> None:
        assert self._rate is not None
        if now > self._refilled:
            self._tokens = min(
                float(self._burst), self._tokens + (now - self._refilled) * self._rate
            )
        self._refilled = max(self._refilled, now)

    def _release_timed(self, now: float) -> None:
        timed = self._timed
        while timed and timed[0][0] <= now:
            _, _, entry = heapq.heappop(timed)
            entry.state = _READY
            (self._first if entry.first else self._ready).append(entry)

    def _place(self, entry: _Host, now: float) -> None:
        """Put an _IDLE, active host with items queued where it belongs."""
        if self._per_host is not None and entry.in_flight >= self._per_host:
            entry.state = _FULL
            return
        when = entry.last_start + self._delay
        if self._delay and when > now:
            entry.state = _TIMED
            heapq.heappush(self._timed, (when, next(self._order), entry))
        else:
            entry.state = _READY
            (self._first if entry.first else self._ready).append(entry)

    def _activate(self, entry: _Host) -> None:
        if not entry.active:
            entry.active = True
            self._active += 1

    def _retire(self, entry: _Host) -> None:
        """A host with nothing queued and nothing in flight stops taking turns; the next host
        waiting for a turn gets it. Its record is dropped unless its delay still runs."""
        if entry.active:
            entry.active = False
            self._active -= 1
        now = self._now() if self._delay else 0.0
        if not self._delay or entry.last_start + self._delay <= now:
            del self._hosts[entry.name]
        while (self._admit_first or self._admit) and (
            self._max_hosts is None or self._active < self._max_hosts
        ):
            # (the hosts holding items pushed first before the others, each group FIFO)
            waiting = (self._admit_first or self._admit).popleft()
            waiting.state = _IDLE
            self._activate(waiting)
            self._place(waiting, now)
