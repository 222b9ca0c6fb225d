"""The global connection cap of a PoolManager: ``max_connections`` across all its pools.

:class:`ConnectionLimit` hands out one token per open connection (dials in progress included).
At the cap a dial closes the least recently idle connection of any pool (Go's global idle LRU)
or waits, first-in first-out, for a token or an idle connection. The pools call it; it knows
them only as objects with a ``pool`` (their HostQueue) and their connections as hashable
objects with a ``close()``.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict, deque
from collections.abc import Iterator
from time import monotonic
from typing import TYPE_CHECKING

from .exceptions import MSG_NOT_INT, MSG_NOT_POSITIVE, MSG_POOL_TIMEOUT, PoolTimeoutError

if TYPE_CHECKING:
    from .connection import HTTPConnection
    from .pool import HTTPConnectionPool

__all__ = ("ConnectionLimit",)


class ConnectionLimit:
    """A hard cap on open connections (dials included) shared by the pools of one manager.

    ``ConnectionLimit(max_connections, timeout=None)``. A connection takes a token when it
    dials and gives it back when it closes. At the cap, a dial first closes the oldest idle
    connection of any pool (a global LRU of idle connections, as Go's), else waits first-in
    first-out up to ``timeout`` seconds (None: forever) for a token and then raises
    :class:`~fastpool.exceptions.PoolTimeoutError`. A waiter holds no connection, so waiting
    cannot deadlock the others. A waiter wakes when a token comes back and when a connection
    goes idle (it may then close that one). ``open``, ``waiters`` and ``evicted_idle`` are
    read-only counters.
    """

    def __init__(self, max_connections: int, timeout: float | None = None) -> None:
        if isinstance(max_connections, bool) or not isinstance(max_connections, int):
            raise TypeError(
                MSG_NOT_INT.format(name="max_connections", type=type(max_connections).__name__)
            )
        if max_connections < 1:
            raise ValueError(MSG_NOT_POSITIVE.format(name="max_connections", value=max_connections))
        self.max_connections = max_connections
        self.timeout = timeout
        self.open = 0  # tokens out: connections open or dialing
        self.evicted_idle = 0  # idle connections closed to make room
        self.waiters = 0  # dials waiting for a token now
        self._cond = threading.Condition(threading.Lock())
        self._local = threading.local()
        self._deferred: deque[HTTPConnection] = deque()
        # connection -> its pool, least recently idle first
        self._idle: OrderedDict[HTTPConnection, HTTPConnectionPool] = OrderedDict()

    def acquire(self) -> None:
        """Take a token for a dial (see the class docstring)."""
        victims: list[tuple[HTTPConnectionPool, HTTPConnection]] = []
        try:
            with self._locked():
                deadline = None
                while self.open >= self.max_connections:
                    victim = self._oldest_idle()
                    if victim is not None:
                        victims.append(victim)
                        continue
                    if deadline is None and self.timeout is not None:
                        deadline = monotonic() + self.timeout
                    remaining = None if deadline is None else deadline - monotonic()
                    if remaining is not None and remaining <= 0:
                        raise PoolTimeoutError(
                            MSG_POOL_TIMEOUT.format(
                                timeout=self.timeout, limit=self.max_connections
                            )
                        )
                    # A collection run by an allocation above (the idle LRU's popitem) may
                    # have deferred a release in this very thread: apply it before waiting,
                    # or nobody would wake this wait for that token.
                    self._settle()
                    if self.open < self.max_connections:
                        break
                    self.waiters += 1
                    try:
                        self._cond.wait(remaining)
                    finally:
                        self.waiters -= 1
                    self._settle()
                self.open += 1
        finally:
            for pool, conn in victims:  # their tokens were already taken over
                if pool._trace is not None:
                    pool._trace.emit("discard", host=pool.host, port=pool.port, reason="closed")
                conn.close()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # A response collected by the GC closes its connection, which releases a token: should
        # that happen in this thread while it holds the lock, the release is deferred (as the
        # pool defers slots) instead of deadlocking on the lock. The flag is set before the lock
        # is taken: a thread's first set of a thread-local allocates, and a collection run by
        # that allocation must already see it (what it defers is settled once the lock is ours).
        self._local.busy = True
        self._cond.acquire()
        try:
            self._settle()
            yield
        finally:
            # On every exit, an exception too (a PoolTimeoutError's allocation may collect).
            try:
                self._settle()
            finally:
                self._cond.release()
                self._local.busy = False
            if self._deferred:  # deferred after our last settle
                with self._locked():
                    pass

    def _settle(self) -> None:
        # With the lock held: apply the releases deferred by finalizers.
        while self._deferred:
            conn = self._deferred.popleft()
            self._idle.pop(conn, None)
            self.open -= 1
            self._cond.notify()

    def _oldest_idle(self) -> tuple[HTTPConnectionPool, HTTPConnection] | None:
        # Called with the lock held: detach the oldest idle connection that is still idle
        # in its pool; its token passes to the dial that asked (open is unchanged).
        while self._idle:
            conn, pool = self._idle.popitem(last=False)
            if pool.pool.remove(conn):
                conn._limiter = None  # closed by acquire() without giving a token back
                self.open -= 1
                self.evicted_idle += 1
                return pool, conn
        return None

    def release(self, conn: HTTPConnection) -> None:
        """Give ``conn``'s token back (it closed, or its dial failed)."""
        if getattr(self._local, "busy", False):
            # A finalizer run while this thread holds our lock: applied as that lock is
            # released (HostQueue calls allocate nothing GC-tracked, so none runs in them).
            self._deferred.append(conn)
            return
        with self._locked():
            self._idle.pop(conn, None)
            self.open -= 1
            self._cond.notify()

    def idle(self, pool: HTTPConnectionPool, conn: HTTPConnection) -> None:
        """``conn`` went idle in ``pool``: the most recent in the global idle order."""
        with self._locked():
            self._idle[conn] = pool
            self._idle.move_to_end(conn)
            # A dial waiting at the cap may close this connection to make room: wake one. A
            # waiter that found no idle connection a moment ago would otherwise wait for a
            # token that no one is going to give back (every connection idle, none closing).
            self._cond.notify()

    def busy(self, conn: HTTPConnection) -> None:
        """``conn`` was checked out: no longer a candidate to close."""
        with self._locked():
            self._idle.pop(conn, None)

    def reset(self) -> None:
        """Forget every token (a forked child: the parent's connections are not ours)."""
        self._cond = threading.Condition(threading.Lock())
        self._local = threading.local()
        self._deferred.clear()
        self.open = 0
        self.waiters = 0
        self._idle.clear()
