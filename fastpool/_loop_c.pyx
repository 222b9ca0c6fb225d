# cython: language_level=3
"""The multiplexed loop, compiled: the twin of ``_loop_py.py``, which documents the model.

The two change together, method for method. Here the exchange's counters and state are C
fields and the loop's steps C calls; sockets, the poller and the dial threads are the same
Python objects, so every error and every setting is the pure twin's (and the one-request
path's). The GIL is released while the poller waits.
"""

from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.object cimport Py_TYPE, PyTypeObject
from cpython.pyport cimport PY_SSIZE_T_MAX
from cpython.ref cimport Py_DECREF, Py_INCREF, PyObject

import collections
import errno
import functools
import os
import socket
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from http.client import RemoteDisconnected
from time import monotonic, perf_counter

from ._failed_socket import FailedSocket
from ._http11_c cimport ResponseHead, parse_head_of
from ._http11_c import ChunkedDecoder
from . import _poller
from ._poller import drops_closed, new_poller, poll_timeout, unpark_at_fork
from .tls import STOCK_SSL_SOCKET, STOCK_TLS_STEPS

__all__ = ("Exchange", "Loop", "new_exchange", "stock_tls")

cdef tuple _STALE_ERRORS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)
cdef Py_ssize_t _RECV_SIZE = 65536
cdef frozenset _RESET_ERRNOS = frozenset({104, 32, 54})  # ECONNRESET, EPIPE, (BSD) ECONNRESET
cdef object _UNSET_TIMEOUT = None  # fastpool.connection's UNSET_TIMEOUT (see _unset_timeout)


cdef object _SSL_EOF = ssl.SSL_ERROR_EOF


cdef extern from "Python.h":
    # the type's attribute as its MRO holds it (borrowed; NULL: none), through the type cache:
    # for a function, what reading it on the class gives, without the descriptor call
    PyObject *_PyType_Lookup(PyTypeObject *cls, object name)


# --- the per-request state of connections and pools, read and written at C speed ---------------
# Reading ``conn.sock`` from C goes the generic way: the type's MRO, the member descriptor, its
# call (about 200 instructions). Where the object's class reads and writes attributes the
# generic way (asked at each access) and CPython's version tag says the class (and every base)
# is as it was when its layout was noted here, the slot is read at its offset: what the
# descriptor would read, as it would read it. Any change to the class (a property set in place
# of a slot) gives it a new tag, and the next access notes it again; a name that is not a slot
# (a property, a class attribute, an unset slot) is read with getattr. On CPython 3.9 and 3.10
# no tag is read as valid (see fastpool_valid_tag): every access is getattr's.
# (docs/performance.md: "A connection's and a pool's state read at C speed")

cdef enum:
    _MAX_SLOTS = 16
    _LAYOUTS = 4  # classes noted of each kind (HTTP, HTTPS, a subclass or two); more take turns

ctypedef struct _Layout:
    PyTypeObject *type  # not a reference: with its tag (never given twice), it names the class
    unsigned int tag
    Py_ssize_t offset[_MAX_SLOTS]  # -1: read or written with getattr, setattr

# the connection's names, by index (the indexes: _loop_c.pxd)
cdef tuple CONN_SLOTS = (
    "sock", "_rest", "sent_ahead", "request_started", "head_started", "_loop_queue", "reusable",
    "requests", "idle_since", "_poller", "timeout", "_host_value", "_kept_head", "_sock_timeout",
)
# the pool's
cdef tuple POOL_SLOTS = (
    "num_requests", "pool", "_limiter", "_kept_watch", "_trace_now", "_log", "proxy",
    "_check_conn", "_last_timeout", "timeout", "_last_number",
)
assert len(CONN_SLOTS) <= _MAX_SLOTS and len(POOL_SLOTS) <= _MAX_SLOTS

ctypedef struct _Kind:
    # the layouts noted for one kind of object, taken in turn; the one last used
    _Layout layouts[_LAYOUTS]
    int next
    _Layout *last

cdef _Kind _conns, _pools


cdef void _start_kind(_Kind *kind) noexcept:
    cdef int i
    for i in range(_LAYOUTS):
        kind.layouts[i].type = NULL
    kind.next = 0
    kind.last = &kind.layouts[0]


_start_kind(&_conns)
_start_kind(&_pools)


cdef _Layout *_noted(_Kind *kind, tuple names, obj) except? NULL:
    """The layout of ``obj``'s class, noted now if it was not; NULL: not kept (no valid tag,
    or the class changed while it was being noted): every name through getattr, setattr."""
    cdef PyTypeObject *cls = Py_TYPE(obj)
    cdef unsigned int tag = fastpool_valid_tag(cls)
    cdef _Layout *layout
    cdef Py_ssize_t i
    if tag:
        for i in range(_LAYOUTS):
            if kind.layouts[i].type == cls and kind.layouts[i].tag == tag:
                return &kind.layouts[i]
    _PyType_Lookup(cls, names[0])  # (gives the class a tag if it has none)
    tag = fastpool_valid_tag(cls)
    if not tag:
        return NULL
    layout = &kind.layouts[kind.next]
    layout.type = NULL
    for i in range(len(names)):
        layout.offset[i] = fastpool_slot_offset(_PyType_Lookup(cls, names[i]), cls)
    # A lookup may run Python code (a key's __eq__ in a class's dict), which may change the
    # class: then the tag is another, and the offsets found may be of the class before.
    if fastpool_valid_tag(cls) != tag:
        return NULL
    layout.type, layout.tag = cls, tag
    kind.next = (kind.next + 1) % _LAYOUTS
    return layout


cdef inline _Layout *_layout_of(_Kind *kind, tuple names, obj) except? NULL:
    """The layout of ``obj``'s class: the one last used, asked first (most maps have one
    class of each kind), else :func:`_noted`'s. NULL for a class with its own attribute
    access, asked at every access: CPython installs a ``__getattribute__`` or ``__setattr__``
    set on the class after it changes the tag, and code run between the two could note a
    layout under the new tag."""
    cdef PyTypeObject *cls = Py_TYPE(obj)
    cdef _Layout *layout = kind.last
    if not (_plain_getattr(obj) and _plain_setattr(obj)):
        return NULL
    # (a noted tag is never 0: a class whose tag is no longer valid has 0, and is noted again)
    if layout.type == cls and layout.tag == fastpool_valid_tag(cls):
        return layout
    layout = _noted(kind, names, obj)
    if layout is not NULL:
        kind.last = layout
    return layout


cdef inline object _slot(obj, _Layout *layout, int i, tuple names):
    cdef PyObject *value
    if layout is not NULL and layout.offset[i] >= 0:
        value = fastpool_slot_get(<PyObject *>obj, layout.offset[i])
        if value is not NULL:
            return <object>value
    return getattr(obj, <str>names[i])


cdef inline int _set_slot(obj, _Layout *layout, int i, tuple names, value) except -1:
    if layout is not NULL and layout.offset[i] >= 0:
        fastpool_slot_set(<PyObject *>obj, layout.offset[i], <PyObject *>value)
    else:
        setattr(obj, <str>names[i], value)
    return 0


cdef object conn_slot(conn, int i):
    """``getattr(conn, CONN_SLOTS[i])``."""
    return _slot(conn, _layout_of(&_conns, CONN_SLOTS, conn), i, CONN_SLOTS)


cdef int set_conn_slot(conn, int i, value) except -1:
    """``setattr(conn, CONN_SLOTS[i], value)``."""
    return _set_slot(conn, _layout_of(&_conns, CONN_SLOTS, conn), i, CONN_SLOTS, value)


cdef object pool_slot(pool, int i):
    """``getattr(pool, POOL_SLOTS[i])``."""
    return _slot(pool, _layout_of(&_pools, POOL_SLOTS, pool), i, POOL_SLOTS)


cdef int set_pool_slot(pool, int i, value) except -1:
    """``setattr(pool, POOL_SLOTS[i], value)``."""
    return _set_slot(pool, _layout_of(&_pools, POOL_SLOTS, pool), i, POOL_SLOTS, value)


cdef object _stock_tls(sock):
    # fastpool.tls.stock_tls: the stdlib SSLSocket's session object, its methods unpatched
    if type(sock) is not STOCK_SSL_SOCKET or STOCK_TLS_STEPS is None:
        return None
    cdef PyTypeObject *cls = <PyTypeObject *>STOCK_SSL_SOCKET
    cdef tuple steps = STOCK_TLS_STEPS
    cdef dict own = sock.__dict__
    if (
        _PyType_Lookup(cls, "recv_into") is not <PyObject *>steps[0]
        or _PyType_Lookup(cls, "read") is not <PyObject *>steps[1]
        or _PyType_Lookup(cls, "send") is not <PyObject *>steps[2]
        or _PyType_Lookup(cls, "pending") is not <PyObject *>steps[3]
        or _PyType_Lookup(cls, "_checkClosed") is not <PyObject *>steps[4]
        or "recv_into" in own
        or "read" in own
        or "send" in own
        or "pending" in own
        or "_checkClosed" in own
    ):
        return None
    return sock._sslobj


def valid_tag(cls):
    """The version tag of class ``cls`` the loop keeps a layout with, while valid (0: none,
    as always on CPython 3.9 and 3.10); for the tests of that rule."""
    if not isinstance(cls, type):
        raise TypeError(f"a class, not {cls!r}")
    return fastpool_valid_tag(<PyTypeObject *>cls)


def stock_tls(sock):
    """fastpool.tls.stock_tls, compiled (for _lane_c: one copy of the check in C)."""
    return _stock_tls(sock)


cdef inline Py_ssize_t _tls_recv_into(tls, sock, view) except -1:
    # fastpool.tls.tls_recv_into inline: SSLSocket.read's steps
    try:
        return tls.read(_RECV_SIZE, view)
    except ssl.SSLError as e:
        if e.args[0] == _SSL_EOF and sock.suppress_ragged_eofs:
            return 0
        raise


cdef inline object _unset_timeout():
    # Imported on first use, not with this module: fastpool._compat imports this module while
    # fastpool loads, and fastpool.connection's imports need fastpool._compat loaded.
    global _UNSET_TIMEOUT
    if _UNSET_TIMEOUT is None:
        from .connection import UNSET_TIMEOUT
        _UNSET_TIMEOUT = UNSET_TIMEOUT
    return _UNSET_TIMEOUT


cdef int _READ = 0x001  # fastpool._poller's READ and WRITE (epoll's bits)
cdef int _WRITE = 0x004

# Exchange states
cdef enum:
    _DIALING = 0
    _SENDING = 1
    _HEAD = 2
    _BODY = 3
    _DONE = 4
    _CONNECTING = 5
    _HANDSHAKING = 6
    _PUMP = 7  # tested before the `>= _CONNECTING` tests of the dial states


cdef bint _nothing_to_read(sock):
    """A plain socket reported readable with nothing to read (see the twin)."""
    if type(sock) is not socket.socket:
        return False
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    except OSError:
        pass
    return False


cdef struct _Timer:
    # one entry of the loop's timer heap, ordered by (when, seq) as the twin's tuples
    double when
    long long seq
    PyObject *ex  # a reference the heap owns


cdef inline bint _earlier(double when, long long seq, _Timer *than):
    return when < than.when or (when == than.when and seq < than.seq)


cdef class Exchange:
    """One request in the loop: ``conn`` (checked out, maybe not dialed), the request's bytes,
    and what to read back: the head only (``read_body=False``, for ``stream=True``) or the whole
    response. ``tag`` is the caller's. After the loop hands it back, ``error`` is None or what
    the dial raised; read errors are left on the connection."""

    # (its fields are declared in _loop_c.pxd, for the lane to read them directly)

    def __init__(
        self,
        conn,
        method,
        data,
        *,
        read_timeout,
        bint read_body=True,
        dial=None,
        bint replay=False,
        bint direct=False,
        tag=None,
    ):
        self._set(conn, method, data, read_timeout, read_body, dial, replay, direct, tag)

    cdef _set(
        self, conn, method, data, read_timeout, bint read_body, dial, bint replay, bint direct, tag
    ):
        self.conn = conn
        self.method = method
        self.data = memoryview(data)
        self.read_timeout = read_timeout
        self.read_timeout_of = read_timeout if callable(read_timeout) else None
        self.read_body = read_body
        self.dial = dial
        self.direct = direct
        self.replay = replay
        self.replayed = None
        self.retries = None
        self.tag = tag
        self.sent = 0
        self.buf = bytearray()
        self.state = _DIALING
        self.error = None
        self.expires = None
        self.armed = 0.0
        self.decoder = None
        self.remaining = 0
        self.cancelled = False
        self.future = None
        self.line_start = 0
        self.head = None
        self.head_size = 0
        self.caller = None
        self.dialing = False
        self.fd = -1
        self.events = 0
        self.started = perf_counter()
        self.head_at = 0.0

    def __repr__(self):
        return f"<Exchange {self.method} on {self.conn!r} state={self.state}>"


def new_exchange(conn, method, data, read_timeout, bint read_body, dial, bint replay, bint direct, tag):
    """An Exchange, its arguments by position (see the twin)."""
    cdef Exchange ex = Exchange.__new__(Exchange)
    ex._set(conn, method, data, read_timeout, read_body, dial, replay, direct, tag)
    return ex


cdef class Loop:
    """Drives :class:`Exchange` objects to their end from the thread that calls :meth:`poll`.
    :meth:`close` it when done (``map`` does, however its iterator ends): until then its
    timers hold the exchanges they time, and the compiled loop's do so unseen by the cycle
    collector.

    :param dial_workers: threads that run dials (connect, tunnel, TLS handshake).
    """

    cdef object _poller
    cdef dict _watched
    cdef dict _parked
    cdef bint _parks
    cdef double _seen_at  # when the last complete wait began (see the twin)
    cdef set _unseen  # parked after it began
    cdef object _forks
    cdef bint _haunted
    cdef bint _epoll
    cdef object _thread
    cdef int _wake_fd
    cdef object _wake_r
    cdef object _wake_w
    cdef int _dial_workers
    cdef object _dialer
    cdef object _dialed
    cdef object _dial_lock
    # The timer heap: the twin's heapq of (when, seq, exchange) tuples as a C array (no
    # tuple, float or comparison objects per request). It owns a reference to each exchange.
    cdef _Timer *_timers
    cdef Py_ssize_t _timer_count
    cdef Py_ssize_t _timer_room
    cdef long long _seq
    cdef set _active
    cdef list _done
    cdef object _view
    cdef bint _closed
    cdef object __weakref__  # for unpark_before_fork's registry

    def __init__(self, *, int dial_workers=4):
        if dial_workers < 1:
            raise ValueError(f"dial_workers must be >= 1, got {dial_workers}")
        self._poller = new_poller()
        self._watched = {}
        self._parked = {}  # idle connections' sockets, registered still (see the twin)
        self._parks = drops_closed(self._poller)
        self._seen_at = -1e300
        self._unseen = set()
        self._epoll = drops_closed(self._poller)  # stray registrations are epoll's alone
        self._forks = _poller.FORKS
        self._haunted = False  # see _rebuild
        self._thread = threading.get_ident()
        if self._parks:
            unpark_at_fork(self)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_fd = self._wake_r.fileno()
        self._poller.register(self._wake_fd, _READ)
        self._dial_workers = dial_workers
        self._dialer = None
        self._dialed = collections.deque()
        self._dial_lock = threading.RLock()  # reentrant: see the pure twin
        self._seq = 0
        self._active = set()
        self._done = []
        self._view = memoryview(bytearray(_RECV_SIZE))
        self._closed = False

    def __len__(self):
        """Exchanges in flight."""
        return len(self._active)

    # --- starting ---------------------------------------------------------------------------
    def start(self, Exchange ex not None):
        """Put ``ex`` in flight: dial it first when its connection has no socket."""
        if self._closed:
            raise RuntimeError("the loop is closed")
        self._active.add(ex)
        if conn_slot(ex.conn, C_SOCK) is None:
            self._dial(ex)
            return
        self._begin_send(ex)

    cdef _dial(self, Exchange ex):
        if ex.dial is None:
            raise ValueError("an exchange on a closed connection needs a dial")
        if ex.direct:
            plan = ex.conn.loop_dial_begin()
            if type(plan) is tuple:
                self._connect(ex, plan)
                return
            if plan is not None:
                ex.state = _DIALING
                ex.future = plan
                plan.add_done_callback(functools.partial(self._looked_up, ex))
                return
        self._dial_in_worker(ex)

    cdef _dial_in_worker(self, Exchange ex):
        if self._dialer is None:
            self._dialer = ThreadPoolExecutor(
                self._dial_workers, thread_name_prefix="fastpool-dial"
            )
        ex.state = _DIALING
        ex.future = self._dialer.submit(self._run_dial, ex, ex.conn)

    def _looked_up(self, Exchange ex, future):
        # In the resolver's thread (see the pure twin).
        self._hand_back(ex, ex.conn)

    def _run_dial(self, Exchange ex, conn):
        # In a worker thread (see the pure twin).
        try:
            ex.dial(conn)
        except BaseException as e:
            ex.error = e
        self._hand_back(ex, conn)

    def _hand_back(self, Exchange ex, conn):
        with self._dial_lock:
            if ex.cancelled:
                conn.close()
                return
            self._dialed.append(ex)
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass

    cdef _connect(self, Exchange ex, address):
        ex.state = _CONNECTING
        try:
            ex.conn.loop_dial_start(address)
        except Exception as e:
            self._dial_failed(ex, e, False)
            return
        self._arm_for(ex, conn_slot(ex.conn, C_TIMEOUT))
        self._watch(ex, _WRITE)

    cdef _advance_dial(self, Exchange ex):
        cdef int code
        conn = ex.conn
        if ex.state == _CONNECTING:
            code = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code and code != errno.ECONNRESET:
                self._dial_failed(ex, OSError(code, os.strerror(code)), False)
                return
            try:
                tls = conn.loop_dial_connected()
            except Exception as e:
                self._dial_failed(ex, e, True)
                return
            if code:  # reset after it was accepted (see the pure twin)
                reset = ConnectionResetError(code, os.strerror(code))
                if tls is not None:
                    self._dial_failed(ex, reset, True)
                else:
                    self._fail(ex, reset, True)
                return
            if tls is None:
                self._begin_send(ex)
                return
            ex.state = _HANDSHAKING
            self._arm_for(ex, conn.timeout)  # one deadline for the whole handshake
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._watch(ex, _READ)
            return
        except ssl.SSLWantWriteError:
            self._watch(ex, _WRITE)
            return
        except Exception as e:
            self._dial_failed(ex, e, True)
            return
        try:
            conn.loop_dial_verified()
        except Exception as e:
            self._dial_failed(ex, e, True)
            return
        self._begin_send(ex)

    cdef _dial_failed(self, Exchange ex, error, bint connected):
        self._unwatch(ex)
        ex.error = ex.conn.loop_dial_failed(error, connected)
        self._finish(ex)

    def when_ready(self, Exchange ex not None, bint writable=False):
        """Hand ``ex`` back from :meth:`poll` once its socket is ready (see the twin)."""
        if self._closed:
            raise RuntimeError("the loop is closed")
        self._active.add(ex)
        ex.state = _PUMP
        self._arm(ex)
        self._watch(ex, _WRITE if writable else _READ)

    cdef _begin_send(self, Exchange ex):
        if ex.read_timeout_of is not None:
            ex.read_timeout = ex.read_timeout_of()
        sock = conn_slot(ex.conn, C_SOCK)
        if sock.gettimeout() != 0.0:  # a connection back from the loop is non-blocking still
            sock.setblocking(False)
        set_conn_slot(ex.conn, C_SOCK_TIMEOUT, _unset_timeout())  # settimeout() sets it anew
        ex.state = _SENDING
        # sending: the connect timeout, as request() sends
        self._arm_for(ex, conn_slot(ex.conn, C_TIMEOUT))
        self._send(ex)

    # --- waiting ----------------------------------------------------------------------------
    def poll(self, timeout=None):
        """Wait up to ``timeout`` seconds (None: until one ends) and return the exchanges that
        ended (possibly none). Call it again while :func:`len` is not 0."""
        cdef Exchange ex
        cdef int fd, events
        done = self._done
        self._thread = threading.get_ident()
        if self._forks != _poller.FORKS:
            self._forked()
        if not done:
            wait = poll_timeout(self._wait_time(timeout))
            watched = self._watched
            most = _poller.MAX_EVENTS
            began = monotonic()
            ready = self._poller.poll(wait, most)
            if len(ready) < most:
                # A parked socket not in it had nothing to read when it began (or since):
                # from then on, not from the return, which may wait for the GIL.
                self._seen_at = began
                self._unseen.clear()
            for fd, events in ready:
                data = watched.get(fd)
                if data is None:
                    if fd == self._wake_fd:
                        self._drain_wake()
                    elif fd in self._parked:
                        self._unpark(fd)
                    elif self._epoll:
                        self._haunted = True
                    continue
                ex = <Exchange>data
                if self._epoll and events & _READ and not ex.events & _READ:
                    self._haunted = True  # readable, yet watched for writing (see _rebuild)
                elif events & ~_READ and ex.state == _SENDING:
                    self._send(ex)
                elif ex.state == _PUMP:
                    sock = conn_slot(ex.conn, C_SOCK)
                    if self._epoll and events & _READ and _nothing_to_read(sock):
                        self._haunted = True  # not this socket's event (see the twin)
                        continue
                    self._park(ex)
                    self._finish(ex)
                elif ex.state >= _CONNECTING:
                    self._advance_dial(ex)
                else:
                    self._receive(ex)
            self._take_dialed()
            self._expire(monotonic())
            if self._haunted:
                self._rebuild()
        self._done = []
        return done

    cdef _rebuild(self):
        """A new poller with what is watched now, the parked sockets dropped (see the twin)."""
        cdef Exchange ex
        self._haunted = False
        old, self._poller = self._poller, new_poller()
        old.close()
        self._poller.register(self._wake_fd, _READ)
        self._parked.clear()
        for fd, data in self._watched.items():
            ex = <Exchange>data
            try:
                self._poller.register(fd, ex.events)
            except OSError:
                pass

    cdef object _wait_time(self, timeout):
        cdef Exchange ex
        cdef double when
        if self._dialed:
            return 0
        while self._timer_count and (<Exchange>self._timers[0].ex).state == _DONE:
            when = self._timers[0].when
            ex = self._pop_timer()
            if when == ex.armed:
                ex.armed = 0.0
        if self._timer_count:
            wait = max(self._timers[0].when - monotonic(), 0.0)
            return wait if timeout is None else min(wait, timeout)
        return timeout

    cdef _drain_wake(self):
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    cdef _take_dialed(self):
        cdef Exchange ex
        dialed = self._dialed
        while dialed:
            ex = dialed.popleft()
            if ex.error is not None:
                ex.conn.dial_error = ex.error
                self._finish(ex)
            elif conn_slot(ex.conn, C_SOCK) is None:
                self._after_lookup(ex)
            else:
                self._begin_send(ex)

    cdef _after_lookup(self, Exchange ex):
        lookup, ex.future = ex.future, None
        try:
            address = ex.conn.loop_dial_looked_up(lookup)
        except Exception as e:
            self._dial_failed(ex, e, False)
            return
        if address is None:
            self._dial_in_worker(ex)
        else:
            self._connect(ex, address)

    # --- timers -----------------------------------------------------------------------------
    cdef _arm(self, Exchange ex):
        self._arm_for(ex, ex.read_timeout)

    cdef _arm_for(self, Exchange ex, seconds):
        cdef double expires
        if seconds is None:
            ex.expires = None
            return
        expires = monotonic() + seconds
        ex.expires = expires
        # an earlier entry for a shorter timeout after a longer one (see the twin)
        if ex.armed == 0.0 or expires < ex.armed:
            ex.armed = expires
            self._push_timer(expires, ex)

    cdef _expire(self, double now):
        cdef Exchange ex
        cdef double when
        while self._timer_count and self._timers[0].when <= now:
            when = self._timers[0].when
            ex = self._pop_timer()
            if when != ex.armed:
                continue  # superseded by an earlier entry
            ex.armed = 0.0
            if ex.state == _DONE or ex.state == _DIALING or ex.expires is None:
                continue
            if ex.expires > now:
                ex.armed = ex.expires
                self._push_timer(ex.armed, ex)
                continue
            if ex.state == _PUMP:
                self._fail(ex, socket.timeout("timed out"), False)
                continue
            if ex.state >= _CONNECTING:
                self._dial_failed(ex, socket.timeout("timed out"), ex.state == _HANDSHAKING)
                continue
            self._fail(ex, socket.timeout("timed out"), ex.state == _SENDING)

    # The heap's two steps, heapq's sift-up and sift-down on (when, seq). No Python code runs
    # inside either, so the array cannot move under them.
    cdef int _push_timer(self, double when, Exchange ex) except -1:
        cdef Py_ssize_t i, parent, room
        cdef _Timer *grown
        if self._timer_count == self._timer_room:
            room = max(16, 2 * self._timer_room)
            grown = <_Timer *>PyMem_Realloc(self._timers, room * sizeof(_Timer))
            if grown is NULL:
                raise MemoryError()
            self._timers, self._timer_room = grown, room
        self._seq += 1
        Py_INCREF(ex)
        i = self._timer_count
        self._timer_count += 1
        while i > 0:
            parent = (i - 1) >> 1
            if not _earlier(when, self._seq, &self._timers[parent]):
                break
            self._timers[i] = self._timers[parent]
            i = parent
        self._timers[i].when = when
        self._timers[i].seq = self._seq
        self._timers[i].ex = <PyObject *>ex
        return 0

    cdef Exchange _pop_timer(self):
        """The first entry's exchange (the caller has read its time), out of the heap."""
        cdef _Timer *heap = self._timers
        cdef _Timer last
        cdef Py_ssize_t i = 0, child, n
        cdef Exchange ex = <Exchange>heap[0].ex  # (a new reference: the heap's is dropped below)
        Py_DECREF(ex)
        self._timer_count -= 1
        n = self._timer_count
        if n:
            last = heap[n]
            while True:
                child = 2 * i + 1
                if child >= n:
                    break
                if child + 1 < n and _earlier(
                    heap[child + 1].when, heap[child + 1].seq, &heap[child]
                ):
                    child += 1
                if not _earlier(heap[child].when, heap[child].seq, &last):
                    break
                heap[i] = heap[child]
                i = child
            heap[i] = last
        return ex

    cdef _drop_timers(self):
        """Give back every exchange the heap holds, and its memory. The collector cannot see
        the heap's references: a closed loop must hold none (an exchange may refer back to
        it, through a lookup's callback or its tag)."""
        cdef _Timer *heap = self._timers
        cdef Py_ssize_t i, n = self._timer_count
        # detached first: a release may run Python code that reaches this loop again
        self._timers, self._timer_count, self._timer_room = NULL, 0, 0
        for i in range(n):
            Py_DECREF(<object>heap[i].ex)
        PyMem_Free(heap)

    def __dealloc__(self):
        self._drop_timers()

    # --- writing ----------------------------------------------------------------------------
    cdef _send(self, Exchange ex):
        sock = conn_slot(ex.conn, C_SOCK)
        data = ex.data
        cdef Py_ssize_t size = len(data)
        cdef bint buffered
        tls = _stock_tls(sock)  # (see the twin)
        try:
            while ex.sent < size:
                if tls is None:
                    ex.sent += sock.send(data[ex.sent :])
                else:
                    ex.sent += tls.write(data[ex.sent :])
        except (BlockingIOError, ssl.SSLWantWriteError):
            self._watch(ex, _WRITE)
            return
        except ssl.SSLWantReadError:
            self._watch(ex, _READ)
            return
        except OSError as e:
            if not isinstance(e, BrokenPipeError) and e.errno not in _RESET_ERRNOS:
                self._fail(ex, e, True)
                return
            set_conn_slot(ex.conn, C_REUSABLE, False)
        ex.conn.sent_ahead = True
        ex.state = _HEAD
        self._arm(ex)
        kind = type(sock)
        if tls is not None:
            buffered = tls.pending() > 0
        else:
            buffered = kind is not socket.socket and (kind is not ssl.SSLSocket or sock.pending())
        if not buffered:
            self._watch(ex, _READ)  # nothing buffered above the kernel: wait for the answer
        else:
            self._receive(ex)  # decrypted bytes the poller cannot see, or another socket

    cdef _watch(self, Exchange ex, int events):
        if not ex.events:
            sock = conn_slot(ex.conn, C_SOCK)
            ex.fd = sock.fileno()
            if self._parked.pop(ex.fd, None) is sock:  # registered still (see the twin)
                if events != _READ:
                    self._poller.modify(ex.fd, events)
            else:
                self._poller.register(ex.fd, events)
            self._watched[ex.fd] = ex
        elif ex.events != events:
            self._poller.modify(ex.fd, events)
        ex.events = events

    cdef _park(self, Exchange ex):
        """Leave an idle connection's socket registered for reading (see the twin)."""
        if self._forks != _poller.FORKS:
            self._forked()
        if self._parks and ex.events == _READ and self._watched.get(ex.fd) is ex:
            del self._watched[ex.fd]
            ex.events = 0
            self._parked[ex.fd] = conn_slot(ex.conn, C_SOCK)
            self._unseen.add(ex.fd)
        else:
            self._unwatch(ex)

    def seen_idle(self, sock):
        """Whether ``sock``, an idle connection's socket parked here, had nothing to read at
        the last complete wait, begun at most ``SEEN_FOR`` seconds ago (see the twin)."""
        fd = sock.fileno()
        return (
            fd not in self._unseen
            and self._parked.get(fd) is sock
            and self._forks == _poller.FORKS
            and monotonic() - self._seen_at <= _poller.SEEN_FOR
        )

    cdef _forked(self):
        """A fork since the last look: unregister what is parked (see the twin)."""
        self._forks = _poller.FORKS
        for fd in list(self._parked):
            self._unpark(fd)

    cdef _unpark(self, int fd):
        del self._parked[fd]
        try:
            self._poller.unregister(fd)
        except OSError:
            pass

    def _unpark_all(self):
        """Before a fork, from the thread that polls only (see the twin)."""
        if threading.get_ident() == self._thread:
            for fd in list(self._parked):
                self._unpark(fd)

    cdef _unwatch(self, Exchange ex):
        if ex.events:
            ex.events = 0
            if self._watched.get(ex.fd) is ex:  # only its own registration (see the twin)
                del self._watched[ex.fd]
                try:
                    self._poller.unregister(ex.fd)
                except OSError:
                    pass

    # --- reading ----------------------------------------------------------------------------
    cdef _receive(self, Exchange ex):
        cdef Py_ssize_t n
        cdef bint got = False
        if ex.state == _SENDING:
            self._send(ex)
            return
        sock = conn_slot(ex.conn, C_SOCK)
        view = self._view
        tls = _stock_tls(sock)
        try:
            while True:
                if tls is None:
                    n = sock.recv_into(view, _RECV_SIZE)
                else:
                    n = _tls_recv_into(tls, sock, view)
                if not n:
                    if self._may_replay(ex):
                        self._replay(ex, RemoteDisconnected("closed before any answer byte"))
                        return
                    self._complete(ex, False)
                    return
                ex.buf += view[:n]
                got = True
                if self._ended(ex):
                    self._complete(ex)
                    return
        except (BlockingIOError, ssl.SSLWantReadError):
            if not got and self._epoll and type(sock) is socket.socket:
                self._haunted = True  # readable, yet nothing to read (see _rebuild)
            self._watch(ex, _READ)
        except ssl.SSLWantWriteError:
            self._watch(ex, _WRITE)
        except OSError as e:
            if isinstance(e, _STALE_ERRORS) and self._may_replay(ex):
                self._replay(ex, e)
                return
            self._fail(ex, e, False)
            return
        if got:
            self._arm(ex)

    cdef bint _may_replay(self, Exchange ex):
        return ex.replay and ex.state == _HEAD and not ex.buf

    cdef _replay(self, Exchange ex, error):
        self._unwatch(ex)
        ex.conn.close()
        ex.replay = False
        ex.replayed = error
        ex.sent = 0
        ex.remaining = 0
        ex.line_start = 0
        ex.head = None
        self._dial(ex)

    cdef bint _ended(self, Exchange ex) except -1:
        cdef ResponseHead head
        conn = ex.conn
        buf = ex.buf
        if ex.state == _HEAD:
            if not self._may_end_head(ex, conn):
                return False
            try:
                parsed = parse_head_of(
                    buf, ex.method, conn.max_head_bytes, conn.max_headers, conn.max_line_bytes
                )
            except Exception:
                return True
            if parsed is None:
                return False
            head, used = <tuple>parsed
            ex.head, ex.head_size = head, used  # for the caller: parsed once
            ex.head_at = perf_counter()
            framing = head.framing
            if not ex.read_body or framing == "none":
                return True
            ex.state = _BODY
            if framing == "length":
                # at most PY_SSIZE_T_MAX (no buffer gets there: read to the end, as the twin)
                ex.remaining = min(used + (head.content_length or 0), PY_SSIZE_T_MAX)
                return len(buf) >= ex.remaining
            if framing == "chunked":
                ex.decoder = ChunkedDecoder(conn.max_line_bytes)
                ex.remaining = used
            else:
                ex.remaining = 0
                return False
        if ex.decoder is not None:
            try:
                ex.decoder.feed(bytes(buf[ex.remaining :]))
            except Exception:
                return True
            ex.remaining = len(buf)
            return bool(ex.decoder.done)
        if ex.remaining:
            return len(buf) >= ex.remaining
        return False

    cdef bint _may_end_head(self, Exchange ex, conn) except -1:
        buf = ex.buf
        cdef Py_ssize_t seen = ex.remaining
        cdef Py_ssize_t size = len(buf)
        cdef Py_ssize_t newline
        ex.remaining = size
        if (
            buf.find(b"\n\r\n", max(seen - 2, 0)) >= 0
            or buf.find(b"\n\n", max(seen - 1, 0)) >= 0
            or size >= conn.max_head_bytes
        ):
            return True
        newline = buf.rfind(b"\n", seen)
        if newline >= 0:
            ex.line_start = newline + 1
        return size - ex.line_start > conn.max_line_bytes

    # --- ending -----------------------------------------------------------------------------
    cdef _complete(self, Exchange ex, bint reusable=True):
        head = ex.head
        if reusable and head is not None and head.keep_alive:
            self._park(ex)
        else:
            self._unwatch(ex)
        set_conn_slot(ex.conn, C_REST, bytes(ex.buf))
        ex.buf = bytearray()
        self._finish(ex)

    cdef _fail(self, Exchange ex, error, bint sending):
        self._unwatch(ex)
        conn = ex.conn
        conn._rest = bytes(ex.buf)
        ex.buf = bytearray()
        conn.reusable = False
        conn.sock = FailedSocket(conn.sock, error)
        if sending:
            conn.sent_ahead = False
        self._finish(ex)

    cdef _finish(self, Exchange ex):
        ex.state = _DONE
        self._active.discard(ex)
        self._done.append(ex)

    def cancel(self, Exchange ex not None):
        """Stop ``ex``: its connection is closed (a dial in progress is closed when it ends).
        It is handed back by :meth:`poll` like any other."""
        if ex.state == _DONE or ex.cancelled:
            return
        if ex.state == _DIALING:
            with self._dial_lock:
                ex.cancelled = True
                if ex in self._dialed:
                    self._dialed.remove(ex)
                    ex.conn.close()
                elif ex.future is not None and ex.future.cancel():
                    ex.conn.close()
                else:
                    ex.dialing = True
            self._active.discard(ex)
            ex.state = _DONE
            return
        ex.cancelled = True
        self._unwatch(ex)
        ex.conn.close()
        self._finish(ex)

    def close(self):
        """Cancel everything in flight and release the poller and the dial threads."""
        if self._closed:
            return
        for ex in list(self._active):
            self.cancel(ex)
        if self._dialer is not None:
            self._dialer.shutdown(wait=False, cancel_futures=True)
        self._closed = True
        self._drop_timers()  # (none fires once closed)
        self._parked.clear()
        self._poller.close()
        self._wake_r.close()
        self._wake_w.close()
