"""The global connection cap of a PoolManager: ``max_connections`` across all its pools.

:class:`ConnectionLimit` hands out one token per open connection (dials in progress included).
At the cap a request that needs a new connection closes the least recently idle connection of
another pool (Go's global idle LRU), or waits in one first-in first-out queue. A connection
coming back goes straight to the longest waiter when it waits for the same pool (as Go's
transport hands a returning connection to a waiting dial), else it is closed and its token goes
to that waiter; a token coming back goes to the longest waiter too. So waits are served first
in, first out across all hosts, nobody overtakes a waiter, and a host is never dialed more than
the cap and the demand need.

The pools call it; it knows them only as objects with a ``pool`` (their HostQueue) and
``_retired``, and their connections as hashable objects with a ``close()``.
"""

from __future__ import annotations

import contextlib
import threading
from _thread import TIMEOUT_MAX, allocate_lock
from collections import OrderedDict, deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from .exceptions import MSG_CAP_TIMEOUT, MSG_NOT_INT, MSG_NOT_POSITIVE, PoolTimeoutError

if TYPE_CHECKING:
    from .connection import HTTPConnection


class HTTPConnectionPool(Protocol):
    """What the limit reads of a pool (``fastpool.pool.HTTPConnectionPool`` is one): named
    here, one floor down, so that the limit never imports the pool that uses it."""

    host: str
    port: int | None
    #: the pool's HostQueue (``remove``, ``checkin``, ``closed``)
    pool: Any
    #: the pool's Trace, or None
    _trace: Any
    #: True once the pool left its manager's LRU
    _retired: bool


__all__ = ("ConnectionLimit",)


# What a waiter was given (decided under the limit's lock).
_WAITING = 0
_TOKEN = 1  # a token: dial
_CONN = 2  # a connection of its own pool: use it
_WAITING_ENDED = 3  # left the queue unserved (a timeout or an exception)

#: What :meth:`ConnectionLimit.put` did with a connection coming back.
PUT_IDLE = 0  # checked in to its pool (kept idle, or refused: see the HostQueue's answer)
PUT_HANDED = 1  # handed to a waiter of the same pool: give the slot back empty
PUT_CLOSE = 2  # its token went to a waiter of another pool: close it, give the slot back


class _Waiter:
    """One request waiting at the cap: its own lock (held until it is served), its pool."""

    __slots__ = ("conn", "lock", "pool", "state")

    def __init__(self, pool: Any) -> None:
        self.lock = allocate_lock()
        self.lock.acquire()
        self.pool = pool
        self.conn: HTTPConnection | None = None
        self.state = _WAITING


class ConnectionLimit:
    """A hard cap on open connections (dials included) shared by the pools of one manager.

    ``ConnectionLimit(max_connections, timeout=None)``. An open connection holds one token.
    A request that needs a new connection calls :meth:`acquire`: under the cap it gets a token;
    at the cap it closes the oldest idle connection of another pool (a global LRU of idle
    connections, as Go's) and takes its token, else it waits first-in first-out up to
    ``timeout`` seconds (None: forever) and then raises
    :class:`~fastpool.exceptions.PoolTimeoutError`. While anyone waits, nobody else takes a
    token or an idle connection first: a connection coming back (:meth:`put`) goes to the
    longest waiter if it waits for the same pool, else it is closed and its token goes to that
    waiter; a token given back (:meth:`release`) goes to the longest waiter. A waiter holds no
    connection, so waiting cannot deadlock the others. ``open``, ``waiters`` and
    ``evicted_idle`` are read-only counters.
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
        #: Counts reset()s: a token lent before one (a forked child's parent lent it) is not
        #: given back to this cap (HTTPConnection._token_generation).
        self.generation = 0
        self._lock = threading.Lock()
        self._local = threading.local()
        self._deferred: deque[HTTPConnection | None] = deque()
        self._waiters: deque[_Waiter] = deque()
        # connection -> its pool, least recently idle first
        self._idle: OrderedDict[HTTPConnection, HTTPConnectionPool] = OrderedDict()

    @property
    def waiters(self) -> int:
        """Requests waiting at the cap now."""
        return len(self._waiters)

    def acquire(
        self, pool: HTTPConnectionPool | None = None, timeout: float | None = None
    ) -> HTTPConnection | None:
        """Wait for room to open a connection for ``pool``; None: a token is now held (dial).

        Or an idle connection of ``pool`` itself (found idle here, or handed over by a
        request done with it): the caller uses it instead of dialing, and holds no new token.
        ``pool`` None (a connection dialing on its own) takes only a token. ``timeout``: the
        longest wait in seconds (None: this limit's own ``timeout``).
        """
        waiter = _Waiter(pool)  # made before the lock (see _locked)
        victim: tuple[HTTPConnectionPool, HTTPConnection] | None = None
        with self._locked():
            if not self._waiters:
                if self.open < self.max_connections:
                    self.open += 1
                    return None
                found = self._take_idle(pool)
                if found is not None:
                    if found[0] is pool:
                        return found[1]  # an idle one of our own pool: reuse beats a dial
                    victim = found  # its token is ours: close it below
            if victim is None:
                self._waiters.append(waiter)
        if victim is not None:
            self._close_evicted(*victim)
            return None
        return self._wait(waiter, self.timeout if timeout is None else timeout)

    def _wait(self, waiter: _Waiter, timeout: float | None) -> HTTPConnection | None:
        try:
            if timeout is None or timeout >= TIMEOUT_MAX:  # inf too: lock.acquire refuses it
                waiter.lock.acquire()
            else:
                waiter.lock.acquire(True, timeout)
        except BaseException:
            # An exception in the wait (KeyboardInterrupt): leave the queue, or pass on what
            # was handed over meanwhile. Nothing is lost either way.
            if self._leave(waiter) != _WAITING:
                self._undo(waiter)
            raise
        state = self._leave(waiter)
        if state == _WAITING:
            raise PoolTimeoutError(
                MSG_CAP_TIMEOUT.format(timeout=timeout, limit=self.max_connections)
            )
        conn: HTTPConnection | None = waiter.conn  # None with a token (_TOKEN)
        waiter.conn = None
        return conn

    def _leave(self, waiter: _Waiter) -> int:
        """The waiter's state; one still waiting leaves the queue unserved (returns _WAITING)."""
        with self._locked():
            state = waiter.state
            if state == _WAITING:
                self._waiters.remove(waiter)
                waiter.state = _WAITING_ENDED
        return state

    def _undo(self, waiter: _Waiter) -> None:
        """A wait that ended in an exception after it was served: its grant goes on."""
        conn, waiter.conn = waiter.conn, None
        if conn is not None:
            conn.close()  # it holds its token: close() passes it to the next waiter
        else:
            self.release(None)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # A response collected by the GC closes its connection, which releases a token: should
        # that happen in this thread while it holds the lock, the release is deferred (as the
        # pool defers slots) instead of deadlocking on the lock. The flag is set before the lock
        # is taken: a thread's first set of a thread-local allocates, and a collection run by
        # that allocation must already see it (what it defers is settled once the lock is ours).
        self._local.busy = True
        self._lock.acquire()
        try:
            self._settle()
            yield
        finally:
            # On every exit, an exception too (a PoolTimeoutError's allocation may collect).
            try:
                self._settle()
            finally:
                self._lock.release()
                self._local.busy = False
            if self._deferred:  # deferred after our last settle
                with self._locked():
                    pass

    def _settle(self) -> None:
        # With the lock held: apply the releases deferred by finalizers.
        while self._deferred:
            self._give_token(self._deferred.popleft())

    def _give_token(self, conn: HTTPConnection | None) -> None:
        # With the lock held: ``conn``'s token (None: a token without a connection) goes to
        # the longest waiter, else back to the pool of tokens.
        if conn is not None:
            self._idle.pop(conn, None)
        if self._waiters:
            waiter = self._waiters.popleft()
            waiter.state = _TOKEN
            waiter.lock.release()
        else:
            self.open -= 1

    def _take_idle(
        self, pool: HTTPConnectionPool | None
    ) -> tuple[HTTPConnectionPool, HTTPConnection] | None:
        # With the lock held: the oldest idle connection that is still idle in its pool, taken
        # out of it. Of another pool: its token passes to the caller (open is unchanged), who
        # closes it. Of ``pool`` itself (a race with its checkout): the caller reuses it.
        stale = []
        found = None
        for conn, owner in self._idle.items():
            if owner.pool.remove(conn):
                found = (owner, conn)
                break
            stale.append(conn)  # no longer idle there (checked out, or closed)
        for conn in stale:
            del self._idle[conn]
        if found is not None:
            del self._idle[found[1]]
            if found[0] is not pool:
                found[1]._has_token = False  # closed by the caller without giving it back
                self.evicted_idle += 1
        return found

    def _close_evicted(self, pool: HTTPConnectionPool, conn: HTTPConnection) -> None:
        if pool._trace is not None:
            pool._trace.emit("discard", host=pool.host, port=pool.port, reason="closed")
        conn.close()

    def release(self, conn: HTTPConnection | None) -> None:
        """Give ``conn``'s token back (it closed, or its dial failed; None: a token that no
        connection was made for): to the longest waiter."""
        if getattr(self._local, "busy", False):
            # A finalizer run while this thread holds our lock: applied as that lock is
            # released (HostQueue calls allocate nothing GC-tracked, so none runs in them).
            self._deferred.append(conn)
            return
        with self._locked():
            self._give_token(conn)

    def put(self, pool: HTTPConnectionPool, conn: HTTPConnection) -> tuple[int, bool]:
        """``conn`` of ``pool`` is done with a request and may be reused: who gets it.

        Returns ``(PUT_HANDED, False)``: handed to the longest waiter, which waits for ``pool``
        (the caller gives its own slot back empty); ``(PUT_CLOSE, False)``: the longest
        waiter, of another pool, took its token (the caller closes it and gives its slot back); else
        ``(PUT_IDLE, kept)``: checked in to ``pool``'s HostQueue, ``kept`` its answer.
        """
        with self._locked():
            if self._waiters and not pool._retired and not pool.pool.closed:
                waiter = self._waiters[0]  # the longest waiter is served first, whatever its host
                if waiter.pool is pool:
                    self._waiters.popleft()
                    waiter.conn = conn
                    waiter.state = _CONN
                    waiter.lock.release()
                    return PUT_HANDED, False
                conn._has_token = False  # closed by the caller without giving it back
                self.evicted_idle += 1
                self._give_token(None)
                return PUT_CLOSE, False
            # (A retired or closed pool closes what comes back: its token then goes to a waiter.)
            kept = bool(pool.pool.checkin(conn))
            if kept:
                self._idle[conn] = pool
                self._idle.move_to_end(conn)
            return PUT_IDLE, kept

    def busy(self, conn: HTTPConnection) -> None:
        """``conn`` was checked out: no longer a candidate to close."""
        with self._locked():
            self._idle.pop(conn, None)

    def reset(self) -> None:
        """Forget every token (a forked child: the parent's connections are not ours)."""
        self.generation += 1
        self._lock = threading.Lock()
        self._local = threading.local()
        self._deferred.clear()
        self._waiters.clear()
        self.open = 0
        self._idle.clear()
