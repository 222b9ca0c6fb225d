"""HostQueue, pure-Python twin: one host's idle connections (LIFO) and its slot accounting.

A *slot* is the right to hold one open connection of the host: ``checkout`` hands out a slot
(with an idle connection in it, or empty: "dial one"), ``checkin`` gives it back. The queue
never opens or closes a connection; whatever it refuses goes back to the caller to close.

The compiled twin ``_hostqueue_c.pyx`` has the same observable behaviour; there a checkout or
checkin is one call that holds the GIL throughout, here a ``threading`` lock guards the same
critical parts. Waiters (at the connection cap) each block on their own lock, outside the
critical part, and are served first-in first-out by ``checkin`` handing its slot over.

The cyclic collector may run in the middle of a critical part (before 3.12 at an allocation,
from 3.12 at any call or loop boundary), and its finalizers (a dropped response giving its slot
back) may call ``checkin`` in this very thread, where the non-reentrant lock would deadlock.
Each critical part therefore marks its thread busy (a thread-local flag, set before the lock is
taken): a ``checkin`` that finds its own thread busy only counts a slot to give back, and the
part settles those slots before it lets go of the lock. The critical parts still make their
objects (waiters, lists, exceptions) outside the lock, so collections there stay rare.
"""

from __future__ import annotations

import math
import sys
import threading
from _thread import TIMEOUT_MAX, LockType, allocate_lock
from collections import deque
from time import monotonic
from typing import Any

from .exceptions import (
    MSG_CHECKIN_UNMATCHED,
    MSG_NAN,
    MSG_NEGATIVE,
    MSG_NOT_INT,
    MSG_NOT_NUMBER,
    MSG_NOT_POSITIVE,
    MSG_POOL_CLOSED,
    MSG_POOL_EMPTY_NOWAIT,
    MSG_POOL_TIMEOUT,
    MSG_TOO_LARGE,
    PoolClosedError,
    PoolTimeoutError,
)

__all__ = ("HostQueue",)

# A waiter's fate, decided inside a critical part: still waiting, served by a checkin (it owns
# the slot and ``conn``), or woken by close().
_WAITING = 0
_SERVED = 1
_CLOSED = 2

# checkout's outcome when it cannot return a slot at once (decided in the critical part).
_FAIL_CLOSED = 1
_FAIL_NOWAIT = 2
_NEEDS_WAITER = 3

_SIZE_MAX = sys.maxsize


class _Waiter:
    """One blocked checkout: its own lock (acquired up front) and what a checkin handed it."""

    __slots__ = ("conn", "lock", "state")

    def __init__(self) -> None:
        self.lock: LockType = allocate_lock()
        self.lock.acquire()
        self.conn: Any = None
        self.state = _WAITING


def _check_size(name: str, value: object) -> int:
    if type(value) is bool or not isinstance(value, int):
        raise TypeError(MSG_NOT_INT.format(name=name, type=type(value).__name__))
    if value < 0:
        raise ValueError(MSG_NEGATIVE.format(name=name, value=value))
    if value > _SIZE_MAX:  # the compiled twin counts in a C ssize_t
        raise ValueError(MSG_TOO_LARGE.format(name=name, max=_SIZE_MAX, value=value))
    return value


def _wait_seconds(timeout: object) -> float:
    """Validate ``timeout``: seconds to wait, ``-1.0`` for forever, ``0.0`` for not at all."""
    if timeout is None:
        return -1.0
    if type(timeout) is bool or not isinstance(timeout, (int, float)):
        raise TypeError(MSG_NOT_NUMBER.format(name="timeout", type=type(timeout).__name__))
    seconds = float(timeout)
    if math.isnan(seconds):
        raise ValueError(MSG_NAN.format(name="timeout"))
    if seconds <= 0.0:
        return 0.0
    # Longer than a lock can wait (about 292 years): the same as forever.
    return -1.0 if seconds > TIMEOUT_MAX else seconds


class HostQueue:
    """One host's connections: an idle stack (LIFO) plus slot accounting and FIFO waiters.

    ``HostQueue(maxsize=1, block=False, limit=None)``

    - ``maxsize`` (default 1): how many idle connections are kept, as urllib3's
      ``HTTPConnectionPool(maxsize=...)``; 0 keeps any number (urllib3's ``LifoQueue(0)``).
    - ``block`` (default False): as urllib3's ``block``: open connections (idle, in use or
      dialing) are capped at ``maxsize`` and ``checkout`` waits for a free one. With
      ``maxsize=0`` no slot is ever free, so every checkout waits and times out.
    - ``limit`` (default None): a hard cap on open connections in either mode (>= 1); with
      ``block=True`` the cap is ``min(maxsize, limit)``.

    The queue never opens or closes connections: ``checkin``, ``remove``, ``take_idle`` and
    ``close`` hand back whatever the caller must close.
    """

    __slots__ = (
        "_block",
        "_cap",
        "_closed",
        "_created",
        "_deferred",
        "_discarded",
        "_idle",
        "_in_use",
        "_limit",
        "_local",
        "_lock",
        "_maxsize",
        "_reused",
        "_wait_count",
        "_wait_time",
        "_waiters",
    )

    def __init__(self, maxsize: int = 1, block: bool = False, limit: int | None = None) -> None:
        self._maxsize = _check_size("maxsize", maxsize)
        if limit is not None and _check_size("limit", limit) < 1:
            raise ValueError(MSG_NOT_POSITIVE.format(name="limit", value=limit))
        self._limit = limit
        self._block = bool(block)
        # The cap on open connections, -1 for none.
        cap = maxsize if self._block else -1
        if limit is not None:
            cap = limit if cap < 0 else min(cap, limit)
        self._cap = cap
        self._idle: list[Any] = []
        self._waiters: deque[_Waiter] = deque()
        self._in_use = 0
        self._closed = False
        self._created = 0
        self._reused = 0
        self._discarded = 0
        self._wait_count = 0
        self._wait_time = 0.0
        self._lock = allocate_lock()
        self._local = threading.local()
        self._deferred = 0  # slots given back by finalizers run inside a critical part

    # --- the critical parts -----------------------------------------------------------------

    def _enter(self) -> None:
        # Busy before the lock: a thread's first store on a thread-local allocates, and a
        # collection run there must already see it (what it defers is settled under the lock).
        self._local.busy = True
        try:
            self._lock.acquire()
        except BaseException:  # interrupted while waiting (KeyboardInterrupt): not ours
            self._local.busy = False
            raise

    def _leave(self) -> None:
        while self._deferred:
            self._deferred -= 1
            self._settle_one()
        self._lock.release()
        self._local.busy = False
        if self._deferred:  # deferred between the settle and the flag's reset
            self._enter()
            self._leave()

    def _settle_one(self) -> None:
        # Under the lock: the slot of a connection a finalizer dropped, as checkin(None) would.
        if self._in_use > 0:
            if self._waiters:
                self._serve(self._waiters.popleft(), None)
            else:
                self._in_use -= 1

    # --- the hot path -------------------------------------------------------------------------

    def checkout(self, timeout: float | None = None) -> Any:
        """Take a slot: the most recently checked-in idle connection, or ``None`` to dial one.

        At the cap it waits, first-in first-out, for a ``checkin`` to hand over its slot:
        ``timeout=None`` (the default) waits forever, ``timeout <= 0`` does not wait. Raises
        :class:`~fastpool.exceptions.PoolTimeoutError` when no slot came in time and
        :class:`~fastpool.exceptions.PoolClosedError` when the queue is (or gets) closed.
        """
        seconds = _wait_seconds(timeout)
        waiter: _Waiter | None = None
        while True:
            self._enter()
            try:
                if self._closed:
                    outcome = _FAIL_CLOSED
                elif self._idle:
                    self._in_use += 1
                    self._reused += 1
                    return self._idle.pop()
                # No idle connection here, so in_use is the open count.
                elif self._cap < 0 or self._in_use < self._cap:
                    self._in_use += 1
                    self._created += 1
                    return None
                elif seconds == 0.0:
                    outcome = _FAIL_NOWAIT
                elif waiter is not None:
                    self._waiters.append(waiter)
                    self._wait_count += 1
                    break
                else:
                    outcome = _NEEDS_WAITER
            finally:
                self._leave()
            if outcome == _FAIL_CLOSED:
                raise PoolClosedError(MSG_POOL_CLOSED)
            if outcome == _FAIL_NOWAIT:
                raise PoolTimeoutError(MSG_POOL_EMPTY_NOWAIT.format(limit=self._cap))
            # Made outside the lock (see the module docstring); a finalizer run by the
            # collector meanwhile may have freed a slot, so look again before queueing it.
            waiter = _Waiter()
        return self._wait(waiter, seconds, timeout)

    def checkin(self, conn: Any) -> bool:
        """Give a slot back, with its connection or ``None`` (dial failed, conn dropped).

        Returns True when the connection was kept: handed to the first waiter, or pushed on
        the idle stack (fewer than ``maxsize`` idle, or ``maxsize == 0``). Returns False when
        the caller must close it: the pool is full (counted in ``discarded``) or closed; always
        False for ``None``. Raises ``ValueError`` when no slot is checked out.
        """
        if getattr(self._local, "busy", False):
            # A finalizer run by the collector inside this thread's own critical part: the
            # slot is settled when that part ends, and the caller closes the connection.
            self._deferred += 1
            return False
        self._enter()
        try:
            if self._in_use > 0:
                if self._waiters:
                    # Hand the slot over directly: a waiter never races a newcomer for it.
                    self._serve(self._waiters.popleft(), conn)
                    return conn is not None
                self._in_use -= 1
                if conn is None or self._closed:
                    return False
                if self._maxsize == 0 or len(self._idle) < self._maxsize:
                    self._idle.append(conn)
                    return True
                self._discarded += 1
                return False
        finally:
            self._leave()
        raise ValueError(MSG_CHECKIN_UNMATCHED)  # raised outside the lock (module docstring)

    # --- waiting ------------------------------------------------------------------------------

    def _serve(self, waiter: _Waiter, conn: Any) -> None:
        # Called in a critical part: the slot passes to ``waiter`` (in_use does not change).
        if conn is None:
            self._created += 1
        else:
            self._reused += 1
        waiter.conn = conn
        waiter.state = _SERVED
        waiter.lock.release()

    def _wait(self, waiter: _Waiter, seconds: float, timeout: object) -> Any:
        start = monotonic()
        try:
            waiter.lock.acquire(True, seconds)
        except BaseException:
            # Interrupted (KeyboardInterrupt): a slot handed over meanwhile is passed on, never
            # leaked. Should the queue refuse its connection, dropping it closes it.
            state, conn = self._resolve(waiter, start)
            if state == _SERVED:
                self.checkin(conn)
            raise
        state, conn = self._resolve(waiter, start)
        if state == _SERVED:
            return conn
        if state == _CLOSED:
            raise PoolClosedError(MSG_POOL_CLOSED)
        raise PoolTimeoutError(MSG_POOL_TIMEOUT.format(timeout=timeout, limit=self._cap))

    def _resolve(self, waiter: _Waiter, start: float) -> tuple[int, Any]:
        # The waiter's fate, decided atomically: a waiter served just as it timed out takes
        # its connection; one still waiting leaves the line.
        self._enter()
        try:
            self._wait_time += monotonic() - start
            state = waiter.state
            conn = waiter.conn
            waiter.conn = None
            if state == _WAITING:
                self._waiters.remove(waiter)
        finally:
            self._leave()
        return state, conn  # the tuple is made outside the lock

    # --- eviction and shutdown ----------------------------------------------------------------

    def remove(self, conn: Any) -> bool:
        """Take one idle connection out (for expiry); True if it was idle here. Caller closes it."""
        self._enter()
        try:
            idle = self._idle
            # Identity, not ==: no user code runs in the critical part. Oldest first, since
            # expiry mostly removes the oldest.
            i = 0
            while i < len(idle):
                if idle[i] is conn:
                    del idle[i]
                    return True
                i += 1
            return False
        finally:
            self._leave()

    def take_idle(self) -> list[Any]:
        """Remove and return every idle connection, oldest first, for the caller to close."""
        fresh: list[Any] = []  # made outside the lock (module docstring)
        self._enter()
        try:
            idle = self._idle
            self._idle = fresh
        finally:
            self._leave()
        return idle

    def close(self) -> list[Any]:
        """Close the queue: wake every waiter with PoolClosedError, return the idle connections.

        Afterwards ``checkout`` raises PoolClosedError and ``checkin`` releases the slot and
        returns False. Closing again returns an empty list.
        """
        fresh: list[Any] = []  # made outside the lock (module docstring)
        self._enter()
        try:
            self._closed = True
            while self._waiters:
                waiter = self._waiters.popleft()
                waiter.state = _CLOSED
                waiter.lock.release()
            idle = self._idle
            self._idle = fresh
        finally:
            self._leave()
        return idle

    # --- what it is doing ---------------------------------------------------------------------

    @property
    def maxsize(self) -> int:
        """How many idle connections are kept (0: any number)."""
        return self._maxsize

    @property
    def block(self) -> bool:
        """Whether open connections are capped at ``maxsize`` (urllib3's ``block``)."""
        return self._block

    @property
    def limit(self) -> int | None:
        """The hard cap on open connections in either mode, or None."""
        return self._limit

    @property
    def open(self) -> int:
        """Open connections: ``idle + in_use``."""
        return len(self._idle) + self._in_use

    @property
    def idle(self) -> int:
        """Idle connections kept for reuse."""
        return len(self._idle)

    @property
    def in_use(self) -> int:
        """Slots handed out by ``checkout`` and not yet checked in (dialing or in use)."""
        return self._in_use

    @property
    def waiters(self) -> int:
        """Checkouts waiting for a slot right now."""
        return len(self._waiters)

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self._closed

    @property
    def created(self) -> int:
        """Checkouts that returned ``None``: new slots to dial a connection in."""
        return self._created

    @property
    def reused(self) -> int:
        """Checkouts that returned an idle (or handed-over) connection."""
        return self._reused

    @property
    def discarded(self) -> int:
        """Checkins refused because ``maxsize`` connections were already idle."""
        return self._discarded

    @property
    def wait_count(self) -> int:
        """Checkouts that had to wait."""
        return self._wait_count

    @property
    def wait_time(self) -> float:
        """Total seconds checkouts spent waiting."""
        return self._wait_time

    def __repr__(self) -> str:
        return (
            f"<HostQueue open={self.open} idle={len(self._idle)} in_use={self._in_use} "
            f"waiters={len(self._waiters)} maxsize={self._maxsize} block={self._block} "
            f"limit={self._limit} closed={self._closed} created={self._created} "
            f"reused={self._reused} discarded={self._discarded} "
            f"wait_count={self._wait_count} wait_time={self._wait_time:.6f}>"
        )
