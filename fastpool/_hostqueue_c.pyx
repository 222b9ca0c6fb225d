# cython: language_level=3, embedsignature=True
"""HostQueue, compiled: one host's idle connections (LIFO) and its slot accounting.

The pure twin ``_hostqueue_py.py`` is the typed source of truth; the behaviour is identical.

No Python-level lock: each critical part is a cdef method (or the body of checkout/checkin)
that holds the GIL from start to end. Nothing in it can release the GIL or run user code: no
callbacks, no ``==`` on connections, no closing, and no connection loses its last reference
there (the caller keeps what it passed in; what leaves the queue is returned). Each critical
part touches only ``self`` and the waiter records, so a ``cython.critical_section(self)`` can
wrap it for free-threaded CPython. Waiters block on their own lock outside a critical part.
"""

cimport cython
from cpython.pyport cimport PY_SSIZE_T_MAX
from libc.math cimport isnan

from _thread import TIMEOUT_MAX, allocate_lock
from collections import deque
from time import monotonic

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
cdef enum:
    _WAITING = 0
    _SERVED = 1
    _CLOSED = 2

cdef double _TIMEOUT_MAX = TIMEOUT_MAX
_SIZE_MAX = PY_SSIZE_T_MAX


@cython.final
@cython.freelist(8)
cdef class _Waiter:
    """One blocked checkout: its own lock (acquired up front) and what a checkin handed it."""

    cdef object lock
    cdef object conn
    cdef int state

    def __cinit__(self):
        self.lock = allocate_lock()
        self.lock.acquire()
        self.conn = None
        self.state = _WAITING


cdef Py_ssize_t _check_size(str name, object value) except -1:
    if type(value) is bool or not isinstance(value, int):
        raise TypeError(MSG_NOT_INT.format(name=name, type=type(value).__name__))
    if value < 0:
        raise ValueError(MSG_NEGATIVE.format(name=name, value=value))
    if value > _SIZE_MAX:  # counts are C ssize_t here
        raise ValueError(MSG_TOO_LARGE.format(name=name, max=_SIZE_MAX, value=value))
    return value


cdef double _wait_seconds(object timeout) except -2.0:
    """Validate ``timeout``: seconds to wait, ``-1.0`` for forever, ``0.0`` for not at all."""
    cdef double seconds
    if timeout is None:
        return -1.0
    if type(timeout) is bool or not isinstance(timeout, (int, float)):
        raise TypeError(MSG_NOT_NUMBER.format(name="timeout", type=type(timeout).__name__))
    seconds = float(timeout)
    if isnan(seconds):
        raise ValueError(MSG_NAN.format(name="timeout"))
    if seconds <= 0.0:
        return 0.0
    # Longer than a lock can wait (about 292 years): the same as forever.
    return -1.0 if seconds > _TIMEOUT_MAX else seconds


cdef class HostQueue:
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

    cdef list _idle
    cdef object _waiters
    cdef Py_ssize_t _n_waiters
    cdef Py_ssize_t _maxsize
    cdef Py_ssize_t _cap
    cdef object _limit
    cdef bint _block
    cdef bint _closed
    cdef Py_ssize_t _in_use
    cdef Py_ssize_t _created
    cdef Py_ssize_t _reused
    cdef Py_ssize_t _discarded
    cdef Py_ssize_t _wait_count
    cdef double _wait_time

    def __init__(self, maxsize=1, block=False, limit=None):
        cdef Py_ssize_t cap
        self._maxsize = _check_size("maxsize", maxsize)
        if limit is not None and _check_size("limit", limit) < 1:
            raise ValueError(MSG_NOT_POSITIVE.format(name="limit", value=limit))
        self._limit = limit
        self._block = bool(block)
        # The cap on open connections, -1 for none.
        cap = self._maxsize if self._block else -1
        if limit is not None:
            cap = <Py_ssize_t>limit if cap < 0 else min(cap, <Py_ssize_t>limit)
        self._cap = cap
        self._idle = []
        self._waiters = deque()
        self._n_waiters = 0
        self._in_use = 0
        self._closed = False
        self._created = 0
        self._reused = 0
        self._discarded = 0
        self._wait_count = 0
        self._wait_time = 0.0

    # --- the hot path -------------------------------------------------------------------------

    def checkout(self, timeout=None):
        """Take a slot: the most recently checked-in idle connection, or ``None`` to dial one.

        At the cap it waits, first-in first-out, for a ``checkin`` to hand over its slot:
        ``timeout=None`` (the default) waits forever, ``timeout <= 0`` does not wait. Raises
        :class:`~fastpool.exceptions.PoolTimeoutError` when no slot came in time and
        :class:`~fastpool.exceptions.PoolClosedError` when the queue is (or gets) closed.
        """
        cdef double seconds = _wait_seconds(timeout)
        cdef _Waiter waiter = None
        # critical part: no GIL release from here to the return or the wait
        while True:
            if self._closed:
                raise PoolClosedError(MSG_POOL_CLOSED)
            if self._idle:
                self._in_use += 1
                self._reused += 1
                return self._idle.pop()
            # No idle connection here, so in_use is the open count.
            if self._cap < 0 or self._in_use < self._cap:
                self._in_use += 1
                self._created += 1
                return None
            if seconds == 0.0:
                raise PoolTimeoutError(MSG_POOL_EMPTY_NOWAIT.format(limit=self._cap))
            if waiter is not None:
                break
            # Allocating the waiter may run the cyclic GC, whose finalizers may release the
            # GIL and let a checkin in: so look again before queueing it.
            waiter = _Waiter()
        self._waiters.append(waiter)
        self._n_waiters += 1
        self._wait_count += 1
        # end of the critical part
        return self._wait(waiter, seconds, timeout)

    def checkin(self, conn):
        """Give a slot back, with its connection or ``None`` (dial failed, conn dropped).

        Returns True when the connection was kept: handed to the first waiter, or pushed on
        the idle stack (fewer than ``maxsize`` idle, or ``maxsize == 0``). Returns False when
        the caller must close it: the pool is full (counted in ``discarded``) or closed; always
        False for ``None``. Raises ``ValueError`` when no slot is checked out.
        """
        # critical part: the whole call
        if self._in_use <= 0:
            raise ValueError(MSG_CHECKIN_UNMATCHED)
        if self._n_waiters:
            # Hand the slot over directly: a waiter never races a newcomer for it.
            self._n_waiters -= 1
            self._serve(<_Waiter>self._waiters.popleft(), conn)
            return conn is not None
        self._in_use -= 1
        if conn is None or self._closed:
            return False
        if self._maxsize == 0 or len(self._idle) < self._maxsize:
            self._idle.append(conn)
            return True
        self._discarded += 1
        return False

    # --- waiting ------------------------------------------------------------------------------

    cdef inline void _serve(self, _Waiter waiter, object conn) except *:
        # Called in a critical part: the slot passes to ``waiter`` (in_use does not change).
        # Releasing a lock does not release the GIL.
        if conn is None:
            self._created += 1
        else:
            self._reused += 1
        waiter.conn = conn
        waiter.state = _SERVED
        waiter.lock.release()

    cdef object _wait(self, _Waiter waiter, double seconds, object timeout):
        cdef double start = monotonic()
        cdef int state
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

    cdef tuple _resolve(self, _Waiter waiter, double start):
        # critical part. The waiter's fate, decided atomically: a waiter served just as it
        # timed out takes its connection; one still waiting leaves the line.
        cdef double now = monotonic()
        self._wait_time += now - start
        state = waiter.state
        conn = waiter.conn
        waiter.conn = None
        if state == _WAITING:
            # Waiter records compare by identity: no user code runs here.
            self._waiters.remove(waiter)
            self._n_waiters -= 1
        return state, conn

    # --- eviction and shutdown ----------------------------------------------------------------

    def remove(self, conn):
        """Take one idle connection out (for expiry); True if it was idle here. Caller closes it."""
        cdef list idle = self._idle
        cdef Py_ssize_t i
        # Identity, not ==: no user code runs in the critical part. Oldest first, since expiry
        # mostly removes the oldest.
        for i in range(len(idle)):
            if idle[i] is conn:
                del idle[i]
                return True
        return False

    def take_idle(self):
        """Remove and return every idle connection, oldest first, for the caller to close."""
        # The new list first: its allocation may run the collector, whose finalizers may
        # check a connection in; after it, nothing can come between the read and the swap.
        cdef list fresh = []
        cdef list idle = self._idle
        self._idle = fresh
        return idle

    def close(self):
        """Close the queue: wake every waiter with PoolClosedError, return the idle connections.

        Afterwards ``checkout`` raises PoolClosedError and ``checkin`` releases the slot and
        returns False. Closing again returns an empty list.
        """
        cdef _Waiter waiter
        cdef list idle
        cdef list fresh = []  # allocated first, as in take_idle
        self._closed = True
        while self._n_waiters:
            self._n_waiters -= 1
            waiter = <_Waiter>self._waiters.popleft()
            waiter.state = _CLOSED
            waiter.lock.release()
        idle = self._idle
        self._idle = fresh
        return idle

    # --- what it is doing ---------------------------------------------------------------------

    @property
    def maxsize(self):
        """How many idle connections are kept (0: any number)."""
        return self._maxsize

    @property
    def block(self):
        """Whether open connections are capped at ``maxsize`` (urllib3's ``block``)."""
        return self._block

    @property
    def limit(self):
        """The hard cap on open connections in either mode, or None."""
        return self._limit

    @property
    def open(self):
        """Open connections: ``idle + in_use``."""
        return len(self._idle) + self._in_use

    @property
    def idle(self):
        """Idle connections kept for reuse."""
        return len(self._idle)

    @property
    def in_use(self):
        """Slots handed out by ``checkout`` and not yet checked in (dialing or in use)."""
        return self._in_use

    @property
    def waiters(self):
        """Checkouts waiting for a slot right now."""
        return self._n_waiters

    @property
    def closed(self):
        """Whether ``close`` was called."""
        return self._closed

    @property
    def created(self):
        """Checkouts that returned ``None``: new slots to dial a connection in."""
        return self._created

    @property
    def reused(self):
        """Checkouts that returned an idle (or handed-over) connection."""
        return self._reused

    @property
    def discarded(self):
        """Checkins refused because ``maxsize`` connections were already idle."""
        return self._discarded

    @property
    def wait_count(self):
        """Checkouts that had to wait."""
        return self._wait_count

    @property
    def wait_time(self):
        """Total seconds checkouts spent waiting."""
        return self._wait_time

    def __repr__(self):
        return (
            f"<HostQueue open={self.open} idle={len(self._idle)} in_use={self._in_use} "
            f"waiters={self._n_waiters} maxsize={self._maxsize} block={self._block} "
            f"limit={self._limit} closed={self._closed} created={self._created} "
            f"reused={self._reused} discarded={self._discarded} "
            f"wait_count={self._wait_count} wait_time={self._wait_time:.6f}>"
        )
