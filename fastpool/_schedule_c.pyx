# cython: language_level=3, embedsignature=True
"""HostScheduler, compiled: queued requests per host, handed out fairly under limits.

What it does is told in the public module, ``fastpool.schedule``. The pure twin
``_schedule_py.py`` is the typed source of truth; the behaviour is identical, down to each call
to the injected clock (the tests count them), so every step below follows the twin's order.

Inside, the same structures in C-friendly form: times and the token bucket are C doubles (the
clock's value is converted as it is read: it must be a real number, as ``time.monotonic``'s
is); the limits are C ssize_t with ``PY_SSIZE_T_MAX`` for None, "no cap", since no count can
reach it; the round-robin deque, the ready hosts holding items pushed first, the two groups of
hosts waiting for a turn and each host's items are ring buffers (``_Ring``), and the heap of
hosts waiting for their delay holds the ``_Host`` records themselves, each keyed by its own
``when`` and ``order`` fields, sifted exactly as ``heapq`` sifts the twin's ``(when, order,
host)`` tuples.
"""

cimport cython
from cpython.pyport cimport PY_SSIZE_T_MAX
from libc.math cimport INFINITY

import math
import time

__all__ = ("HostScheduler",)

# Where a host with queued items is: exactly one of these at any time (as in the twin).
cdef enum:
    _IDLE = 0  # nothing queued (or not admitted yet while it waits its turn: _ADMIT)
    _READY = 1  # may start now (rate and max_in_flight permitting): in the ring of hosts
    # holding items pushed first (_first) if it holds any, else in the round-robin ring (_ready)
    _TIMED = 2  # in the heap: its delay since the last start has not passed yet
    _FULL = 3  # at its per-host cap: done() puts it back
    _ADMIT = 4  # queued items, but max_hosts hosts already take turns: waits for one to leave
    # (in _admit_first if it holds items pushed first, else in _admit)

_SIZE_MAX = PY_SSIZE_T_MAX

# A ring that empties with more slots than this gives them back (as a deque frees its blocks).
cdef Py_ssize_t _RING_KEEP = 64


@cython.final
@cython.boundscheck(False)
@cython.wraparound(False)
cdef class _Ring:
    """First in, first out: a ring buffer in a list whose length is a power of two.

    Here for ``collections.deque``, whose ``append``/``popleft`` would be Python method calls
    on the hot path; these are C calls."""

    cdef list buf
    cdef Py_ssize_t head  # the index of the first item
    cdef Py_ssize_t size  # items held
    cdef Py_ssize_t mask  # len(buf) - 1

    def __cinit__(self):
        self.buf = [None] * 4
        self.mask = 3

    cdef inline int push(self, object value) except -1:
        if self.size > self.mask:
            self._grow()
        self.buf[(self.head + self.size) & self.mask] = value
        self.size += 1
        return 0

    cdef inline object popleft(self):
        cdef object value
        if self.size == 0:  # (unreachable, as in the twin; never a read past the items)
            raise IndexError("pop from an empty deque")
        value = self.buf[self.head]
        self.buf[self.head] = None  # no reference kept to what left
        self.size -= 1
        if self.size == 0 and self.mask >= _RING_KEEP:
            self.buf = [None] * 4
            self.mask = 3
            self.head = 0
        else:
            self.head = (self.head + 1) & self.mask
        return value

    cdef int insert(self, Py_ssize_t index, object value) except -1:
        # deque.insert for 0 <= index <= size: the first index items move one slot towards the
        # head, so O(index) (a host's items pushed first: a few at most)
        cdef Py_ssize_t i
        if self.size > self.mask:
            self._grow()
        self.head = (self.head - 1) & self.mask
        for i in range(index):
            self.buf[(self.head + i) & self.mask] = self.buf[(self.head + i + 1) & self.mask]
        self.buf[(self.head + index) & self.mask] = value
        self.size += 1
        return 0

    cdef int remove(self, object value) except -1:
        # deque.remove, by identity: O(size), for push_first's rare move of a host only
        cdef Py_ssize_t i, j
        cdef Py_ssize_t mask = self.mask
        for i in range(self.size):
            if self.buf[(self.head + i) & mask] is value:
                for j in range(i, self.size - 1):
                    self.buf[(self.head + j) & mask] = self.buf[(self.head + j + 1) & mask]
                self.size -= 1
                self.buf[(self.head + self.size) & mask] = None  # no reference kept
                return 0
        raise ValueError("deque.remove(x): x not in deque")  # (unreachable, as in the twin)

    cdef int _grow(self) except -1:
        # Full: unroll into a list twice as long, the first item at index 0.
        cdef list old = self.buf
        cdef Py_ssize_t n = self.mask + 1
        self.buf = old[self.head:] + old[:self.head] + [None] * n
        self.head = 0
        self.mask = 2 * n - 1
        return 0


@cython.final
@cython.freelist(16)
cdef class _Host:
    """One host's queue and counters (and, while _TIMED, its key in the heap)."""

    cdef object name
    cdef _Ring queue  # (key, item) tuples
    cdef Py_ssize_t first  # the items pushed first: the queue's first ones, not popped yet
    cdef Py_ssize_t in_flight
    cdef double last_start
    cdef double when  # the end of its delay: the heap's key, then ``order``
    cdef long long order
    cdef int state
    cdef bint active  # one of the (at most max_hosts) hosts taking turns


cdef _Host _new_host(object name):
    cdef _Host entry = _Host.__new__(_Host)
    entry.name = name
    entry.queue = _Ring.__new__(_Ring)
    entry.first = 0
    entry.in_flight = 0
    entry.last_start = -INFINITY
    entry.state = _IDLE
    entry.active = False
    return entry


# --- the heap: heapq's algorithm on _Host records ---------------------------------------------
# The twin's heap holds (when, order, host) tuples; order is unique, so tuples compare as
# (when, order) do, and sifting the same way keeps the same order (NaN included).


cdef inline bint _before(_Host a, _Host b):
    return a.when < b.when or (a.when == b.when and a.order < b.order)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef int _sift_down(list heap, Py_ssize_t start, Py_ssize_t pos) except -1:
    # heapq._siftdown
    cdef _Host item = <_Host>heap[pos]
    cdef _Host parent
    cdef Py_ssize_t parent_pos
    while pos > start:
        parent_pos = (pos - 1) >> 1
        parent = <_Host>heap[parent_pos]
        if _before(item, parent):
            heap[pos] = parent
            pos = parent_pos
            continue
        break
    heap[pos] = item
    return 0


@cython.boundscheck(False)
@cython.wraparound(False)
cdef int _sift_up(list heap, Py_ssize_t pos) except -1:
    # heapq._siftup
    cdef Py_ssize_t end = len(heap)
    cdef Py_ssize_t start = pos
    cdef Py_ssize_t child = 2 * pos + 1
    cdef _Host item = <_Host>heap[pos]
    while child < end:
        if child + 1 < end and not _before(<_Host>heap[child], <_Host>heap[child + 1]):
            child += 1
        heap[pos] = heap[child]
        pos = child
        child = 2 * pos + 1
    heap[pos] = item
    return _sift_down(heap, start, pos)


cdef int _heap_push(list heap, _Host entry) except -1:
    heap.append(entry)
    return _sift_down(heap, 0, len(heap) - 1)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef _Host _heap_pop(list heap):
    # Only called on a heap that is not empty.
    cdef _Host last = <_Host>heap.pop()
    cdef _Host first
    if heap:
        first = <_Host>heap[0]
        heap[0] = last
        _sift_up(heap, 0)
        return first
    return last


# --- arguments: the twin's checks, the same messages --------------------------------------------


cdef object _optional_number(str name, object value, double minimum, bint strict):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number or None, got {type(value).__name__}")
    if math.isnan(value) or (value <= minimum if strict else value < minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return float(value)


cdef object _optional_count(str name, object value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or None, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


cdef object _checked_delay(object value):
    checked = _optional_number("delay", value, 0.0, strict=False)
    if checked is None or math.isinf(checked):
        raise ValueError(f"delay must be a finite number >= 0, got {value!r}")
    return checked


cdef object _checked_rate(object value):
    checked = _optional_number("rate", value, 0.0, strict=True)
    return None if checked is not None and math.isinf(checked) else checked  # inf: no cap


cdef object _checked_burst(object value):
    count = _optional_count("burst", value)
    if count is None:
        raise TypeError("burst must be an int >= 1, got None")
    float(count)  # (one too large for a float fails here, not at a later pop)
    return count


cdef Py_ssize_t _cap(object value) except? -2:
    """A checked count limit (an int >= 1, or None) as the C value a count is compared with:
    PY_SSIZE_T_MAX for None (no cap) and for anything a count cannot reach."""
    if value is None or value >= _SIZE_MAX:
        return PY_SSIZE_T_MAX
    return value


cdef class HostScheduler:
    """Queued requests per host, handed out fairly under per-host and global limits.

    - ``per_host`` (default None: no cap): requests in flight to one host at a time.
    - ``delay`` (default 0): the minimum number of seconds between two starts to one host.
    - ``rate`` (default None: no cap): requests started per second overall, with bursts of up
      to ``burst`` (default 1) requests.
    - ``max_in_flight`` (default None: no cap): requests in flight overall; ``pop()`` hands out
      nothing more until a ``done()``.
    - ``max_hosts`` (default None: no cap): hosts taking turns at once; a further host waits
      until one of them has nothing queued and nothing in flight.
    - ``clock`` (default ``time.monotonic``): the time in seconds, for delays and the rate.

    A *host* is any hashable key the caller chooses (a host name, say); items are handed back
    as given. ``len(scheduler)`` is the number of items queued, not counting those in flight.

    ``push_first()`` queues an item ahead of its host's ``push()`` items, and that host's turns
    ahead of the hosts holding none (the next hop of a redirect, a retry whose wait is over).
    """

    cdef public object clock
    # The limits as given (what the attributes read back) and as compared.
    cdef object _per_host
    cdef object _delay_value
    cdef object _rate_value
    cdef object _burst_value
    cdef object _max_in_flight
    cdef object _max_hosts
    cdef Py_ssize_t _per_host_cap
    cdef Py_ssize_t _max_in_flight_cap
    cdef Py_ssize_t _max_hosts_cap
    cdef double _delay
    cdef double _rate
    cdef bint _has_rate
    cdef double _burst
    # The state.
    cdef dict _hosts
    cdef _Ring _ready
    cdef _Ring _first  # ready hosts holding items pushed first: they go before _ready's
    cdef list _timed  # a heap of _Host, by (when, order)
    cdef _Ring _admit
    cdef _Ring _admit_first  # waiting hosts holding items pushed first
    cdef long long _order  # breaks ties in the heap: first in, first out
    cdef Py_ssize_t _queued
    cdef Py_ssize_t _in_flight
    cdef Py_ssize_t _active
    cdef double _tokens
    cdef double _refilled

    def __cinit__(self):
        # Never None, even before (or without) __init__: the C code reads them unchecked.
        self._hosts = {}
        self._ready = _Ring.__new__(_Ring)
        self._first = _Ring.__new__(_Ring)
        self._timed = []
        self._admit = _Ring.__new__(_Ring)
        self._admit_first = _Ring.__new__(_Ring)

    def __init__(
        self,
        *,
        per_host=None,
        delay=0.0,
        rate=None,
        burst=1,
        max_in_flight=None,
        max_hosts=None,
        clock=time.monotonic,
    ):
        # (each limit through its property: checked as when it is set later)
        self.per_host = per_host
        self.delay = delay
        self.rate = rate
        self.burst = burst
        self.max_in_flight = max_in_flight
        self.max_hosts = max_hosts
        self.clock = clock
        self._hosts = {}
        self._ready = _Ring.__new__(_Ring)
        self._first = _Ring.__new__(_Ring)
        self._timed = []
        self._admit = _Ring.__new__(_Ring)
        self._admit_first = _Ring.__new__(_Ring)
        self._order = 0
        self._queued = 0
        self._in_flight = 0
        self._active = 0
        self._tokens = self._burst
        self._refilled = self._now()

    # --- the limits: each checked when set, as the constructor checks it ----------------------

    @property
    def per_host(self):
        """Requests in flight to one host at a time, or None."""
        return self._per_host

    @per_host.setter
    def per_host(self, value):
        value = _optional_count("per_host", value)
        self._per_host_cap = _cap(value)
        self._per_host = value

    @property
    def delay(self):
        """The minimum number of seconds between two starts to one host."""
        return self._delay_value

    @delay.setter
    def delay(self, value):
        value = _checked_delay(value)
        self._delay = value
        self._delay_value = value

    @property
    def rate(self):
        """Requests started per second overall, or None."""
        return self._rate_value

    @rate.setter
    def rate(self, value):
        value = _checked_rate(value)
        self._rate = 0.0 if value is None else value
        self._has_rate = value is not None
        self._rate_value = value

    @property
    def burst(self):
        """How many requests the rate lets start at once."""
        return self._burst_value

    @burst.setter
    def burst(self, value):
        value = _checked_burst(value)
        self._burst = float(value)
        self._burst_value = value

    @property
    def max_in_flight(self):
        """Requests in flight overall, or None."""
        return self._max_in_flight

    @max_in_flight.setter
    def max_in_flight(self, value):
        value = _optional_count("max_in_flight", value)
        self._max_in_flight_cap = _cap(value)
        self._max_in_flight = value

    @property
    def max_hosts(self):
        """Hosts taking turns at once, or None."""
        return self._max_hosts

    @max_hosts.setter
    def max_hosts(self, value):
        value = _optional_count("max_hosts", value)
        self._max_hosts_cap = _cap(value)
        self._max_hosts = value

    def __reduce__(self):
        raise TypeError("a HostScheduler cannot be pickled or copied: it holds queued requests")

    # --- what the caller reads ------------------------------------------------------------------

    def __len__(self):
        """Items queued (pushed and not popped yet)."""
        return self._queued

    @property
    def in_flight(self):
        """Items popped and not reported ``done()`` yet."""
        return self._in_flight

    def __repr__(self):
        return (
            f"<HostScheduler queued={self._queued} in_flight={self._in_flight} "
            f"ready_hosts={self._first.size + self._ready.size} timed_hosts={len(self._timed)} "
            f"waiting_hosts={self._admit_first.size + self._admit.size}>"
        )

    # --- the operations -------------------------------------------------------------------------

    def push(self, key, host, item):
        """Queue ``item`` for ``host``; ``pop()`` hands back ``(key, item)``."""
        cdef _Host entry
        found = self._hosts.get(host)
        if found is None:
            entry = _new_host(host)
            self._hosts[host] = entry
        else:
            entry = <_Host>found
        # pop() hands back this very tuple (the twin builds an equal one).
        entry.queue.push((key, item))
        self._queued += 1
        if entry.state == _IDLE:
            if entry.active or self._active < self._max_hosts_cap:
                if not entry.active:
                    entry.active = True
                    self._active += 1
                # (the time matters to a delay only: no clock read per item without one)
                self._place(entry, self._now() if self._delay else 0.0)
            else:
                entry.state = _ADMIT
                self._admit.push(entry)

    def push_first(self, key, host, item):
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
        cdef _Host entry
        found = self._hosts.get(host)
        if found is None:
            entry = _new_host(host)
            self._hosts[host] = entry
        else:
            entry = <_Host>found
        entry.queue.insert(entry.first, (key, item))  # O(items pushed first): a few at most
        entry.first += 1
        self._queued += 1
        if entry.state == _IDLE:  # push()'s steps; _place puts it in _first
            if entry.active or self._active < self._max_hosts_cap:
                if not entry.active:
                    entry.active = True
                    self._active += 1
                self._place(entry, self._now() if self._delay else 0.0)
            else:
                entry.state = _ADMIT
                self._admit_first.push(entry)
        elif entry.first == 1:  # its first item pushed first: the host moves over now
            # (removal from the middle costs O(hosts in that ring): fine for this rare call,
            # and push, pop and done keep plain rings)
            if entry.state == _READY:
                self._ready.remove(entry)
                self._first.push(entry)
            elif entry.state == _ADMIT:
                self._admit.remove(entry)
                self._admit_first.push(entry)
            # (_TIMED, _FULL: _release_timed and _place put it in _first when its time comes)

    def pop(self):
        """The next ``(key, item)`` allowed to start now, or None (see :meth:`next_ready`).

        Hosts take turns; within a host, items start in the order they were pushed (those of
        :meth:`push_first` first). The item counts as in flight until ``done(host)``."""
        cdef double now
        cdef _Host entry
        if self._in_flight >= self._max_in_flight_cap:
            return None
        now = self._now()  # (also each start's time, for a delay set later)
        if self._timed:
            self._release_timed(now)
        if self._first.size:
            return self._pop_first(now)
        if self._ready.size == 0:
            return None
        if self._has_rate:
            self._refill(now)
            if self._tokens < 1.0:
                return None
            self._tokens -= 1.0
        entry = <_Host>self._ready.popleft()
        pair = entry.queue.popleft()
        self._queued -= 1
        self._in_flight += 1
        entry.in_flight += 1
        entry.last_start = now
        # The twin appends to the ring directly when there is no delay and no cap; _place
        # does the same then, so one path here.
        entry.state = _IDLE
        if entry.queue.size:
            self._place(entry, now)
        return pair

    def done(self, host):
        """An item of ``host`` finished (successfully or not): its per-host slot is free."""
        cdef _Host entry
        found = self._hosts.get(host)
        if found is None or (<_Host>found).in_flight <= 0:
            raise ValueError(f"done({host!r}) without an item of that host in flight")
        entry = <_Host>found
        entry.in_flight -= 1
        self._in_flight -= 1
        if entry.state == _FULL:
            entry.state = _IDLE
            self._place(entry, self._now())
        elif entry.state == _IDLE and entry.queue.size == 0 and entry.in_flight == 0:
            self._retire(entry)

    def next_ready(self):
        """The ``clock()`` time at which ``pop()`` may next return an item because a delay or
        the rate allows it (a time at or before now: it may already), or None when nothing
        waits on time: only ``done()``, ``push()`` or ``push_first()`` can make ``pop()`` return
        something."""
        cdef double now, tokens, later
        if self._in_flight >= self._max_in_flight_cap:
            return None
        if self._first.size or self._ready.size:
            when = self._now()
        elif self._timed:
            when = (<_Host>self._timed[0]).when
        else:
            return None
        if self._has_rate:
            now = self._now()
            tokens = self._tokens + (now - self._refilled) * self._rate
            if not tokens < self._burst:  # min(burst, tokens), as Python's min picks
                tokens = self._burst
            if tokens < 1.0:
                later = now + (1.0 - tokens) / self._rate
                if later > when:  # max(when, later), compared as Python objects
                    when = later
        return when

    # --- inside ---------------------------------------------------------------------------------

    @cython.final
    cdef inline double _now(self) except? -1.0:
        return self.clock()

    @cython.final
    cdef object _pop_first(self, double now):
        """pop()'s steps for the next host holding items pushed first."""
        cdef _Host entry
        if self._has_rate:
            self._refill(now)
            if self._tokens < 1.0:
                return None
            self._tokens -= 1.0
        entry = <_Host>self._first.popleft()
        pair = entry.queue.popleft()
        entry.first -= 1
        self._queued -= 1
        self._in_flight += 1
        entry.in_flight += 1
        entry.last_start = now
        entry.state = _IDLE
        if entry.queue.size:  # (back to _first while it holds items pushed first, else to _ready)
            self._place(entry, now)
        return pair

    @cython.final
    cdef inline int _refill(self, double now) except -1:
        cdef double tokens
        if now > self._refilled:
            tokens = self._tokens + (now - self._refilled) * self._rate
            self._tokens = tokens if tokens < self._burst else self._burst
            self._refilled = now
        return 0

    @cython.final
    cdef int _release_timed(self, double now) except -1:
        cdef list timed = self._timed
        cdef _Host entry
        while timed and (<_Host>timed[0]).when <= now:
            entry = _heap_pop(timed)
            entry.state = _READY
            if entry.first:
                self._first.push(entry)
            else:
                self._ready.push(entry)
        return 0

    @cython.final
    cdef int _place(self, _Host entry, double now) except -1:
        """Put an _IDLE, active host with items queued where it belongs."""
        cdef double when
        if entry.in_flight >= self._per_host_cap:
            entry.state = _FULL
            return 0
        when = entry.last_start + self._delay
        if self._delay and when > now:
            entry.state = _TIMED
            entry.when = when
            entry.order = self._order
            self._order += 1
            _heap_push(self._timed, entry)
        else:
            entry.state = _READY
            if entry.first:
                self._first.push(entry)
            else:
                self._ready.push(entry)
        return 0

    @cython.final
    cdef int _retire(self, _Host entry) except -1:
        """A host with nothing queued and nothing in flight stops taking turns; the next host
        waiting for a turn gets it. Its record is dropped unless its delay still runs."""
        cdef double now
        cdef _Host waiting
        if entry.active:
            entry.active = False
            self._active -= 1
        now = self._now() if self._delay else 0.0
        if not self._delay or entry.last_start + self._delay <= now:
            del self._hosts[entry.name]
        while (self._admit_first.size or self._admit.size) and self._active < self._max_hosts_cap:
            # (the hosts holding items pushed first before the others, each group FIFO)
            if self._admit_first.size:
                waiting = <_Host>self._admit_first.popleft()
            else:
                waiting = <_Host>self._admit.popleft()
            waiting.state = _IDLE
            if not waiting.active:
                waiting.active = True
                self._active += 1
            self._place(waiting, now)
        return 0
