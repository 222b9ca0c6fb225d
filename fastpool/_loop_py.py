"""The multiplexed loop: many HTTP/1.1 exchanges in flight from one thread (the pure-Python
twin of ``_loop_c.pyx``; the two change together).

An :class:`Exchange` is one request on one connection checked out of a pool. The :class:`Loop`
writes its bytes and reads its answer on a non-blocking socket, alongside every other exchange
in flight, waiting on the OS poller (epoll itself on Linux, else kqueue or select through
:mod:`selectors`: see :mod:`fastpool._poller`; the GIL is released while it waits). What it
reads stays on the connection for the ordinary, blocking code to parse, so an exchange ends
exactly where one request at a time would: that code finds the request written
(``conn.sent_ahead``) and the answer in ``conn._rest``, and does not block.

- **Dials**: a ``direct`` exchange to one known address (an IP literal, or a name in the
  resolver's cache), not through a proxy, is dialed by the loop itself: a non-blocking connect,
  then the TLS handshake on the non-blocking socket, with the connection's own settings and
  checks (``conn.loop_dial_*``). Any other dial runs ``dial(exchange)`` (the pool's own connect:
  DNS, Happy Eyeballs, proxy tunnel, TLS and its checks, the global cap's token) in a few
  worker threads; the loop carries on meanwhile. Either way every setting and error is the
  one-request path's.
- **Failures** stay where the blocking code will meet them: a failed dial as
  ``conn.dial_error`` (raised by the next ``connect()``), a failed or timed-out read as a socket
  stand-in (:class:`FailedSocket`) that raises it on the next receive.
- **Timeouts**: the read timeout counts from the last byte received, as a socket timeout does.

Nothing here knows pools or requests: :mod:`fastpool.multi` drives it.
"""

from __future__ import annotations

import collections
import errno
import functools
import heapq
import os
import socket
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from http.client import RemoteDisconnected
from time import monotonic, perf_counter
from typing import Any, Callable

from . import _poller
from ._failed_socket import FailedSocket
from ._http11_py import ChunkedDecoder, parse_response_head
from ._poller import (
    READ,
    WRITE,
    drops_closed,
    new_poller,
    poll_timeout,
    unpark_at_fork,
)
from .connection import UNSET_TIMEOUT
from .tls import stock_tls, tls_recv_into

# A reused connection the server closed as we sent: the keep-alive replay's errors (the pool's
# _STALE_ERRORS, for a receive).
_STALE_ERRORS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)

__all__ = ("Exchange", "Loop", "new_exchange", "stock_tls")

_RECV_SIZE = 65536
_RESET_ERRNOS = frozenset({104, 32, 54})  # ECONNRESET, EPIPE, (BSD) ECONNRESET


def _nothing_to_read(sock: Any) -> bool:
    """A plain socket reported readable that has neither a byte nor an EOF to read (a TLS
    socket cannot tell: its record may be partial)."""
    if type(sock) is not socket.socket:
        return False
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    except OSError:
        pass  # an error to read: the caller meets it
    return False


# Exchange states
_DIALING = 0
_SENDING = 1
_HEAD = 2
_BODY = 3
_DONE = 4
_CONNECTING = 5  # the loop's own dial: TCP
_HANDSHAKING = 6  # the loop's own dial: TLS
_PUMP = 7  # the caller reads a body on it: handed back once its socket is ready
# (_PUMP is tested before the `>= _CONNECTING` tests of the dial states)


class Exchange:
    """One request in the loop: ``conn`` (checked out, maybe not dialed), the request's bytes,
    and what to read back: the head only (``read_body=False``, for ``stream=True``) or the whole
    response. ``tag`` is the caller's. After the loop hands it back, ``error`` is None or what
    the dial raised; read errors are left on the connection."""

    __slots__ = (
        "armed",
        "buf",
        "caller",
        "cancelled",
        "conn",
        "data",
        "decoder",
        "dial",
        "dialing",
        "direct",
        "error",
        "events",
        "expires",
        "fd",
        "future",
        "head",
        "head_at",
        "head_size",
        "line_start",
        "method",
        "read_body",
        "read_timeout",
        "read_timeout_of",
        "remaining",
        "replay",
        "replayed",
        "retries",
        "sent",
        "started",
        "state",
        "tag",
    )

    def __init__(
        self,
        conn: Any,
        method: str,
        data: bytes,
        *,
        read_timeout: float | None | Callable[[], float | None],
        read_body: bool = True,
        dial: Callable[[Any], None] | None = None,
        replay: bool = False,
        direct: bool = False,
        tag: Any = None,
    ) -> None:
        self.conn = conn
        self.method = method
        self.data = memoryview(data)
        self.read_timeout = read_timeout
        #: a callable read timeout (what a total leaves), asked again at each send: a
        #: replay's read gets what the total leaves then
        self.read_timeout_of = read_timeout if callable(read_timeout) else None
        self.read_body = read_body
        self.dial = dial
        #: the loop may dial it itself (``conn.loop_dial_*``) when the connection says it can
        self.direct = direct
        #: Go's keep-alive replay, allowed once: a reused connection the server closed before
        #: any answer byte gets the request again on a new connection (the pool decides).
        self.replay = replay
        self.replayed: BaseException | None = None  # the error that made it replay
        self.retries: Any = None  # the caller's: the Retry state of a request sent again
        self.tag = tag
        self.sent = 0
        self.buf = bytearray()
        self.state = _DIALING
        self.error: BaseException | None = None
        self.expires: float | None = None
        #: the time of its live entry in the loop's timer heap (0.0: none); an entry at
        #: another time was superseded by an earlier one
        self.armed = 0.0
        self.decoder: Any = None
        self.remaining = 0
        self.cancelled = False
        self.future: Any = None  # the dial's, while it runs in a worker
        self.line_start = 0  # in the head: where its last, unfinished line starts
        #: the response head the loop parsed (None: not parsed yet), and its size in bytes
        self.head: Any = None
        self.head_size = 0
        self.caller: Any = None  # the caller's: how it picked the pool (the adapter's target)
        #: True when cancelled mid-dial: the dialing worker closes the connection
        self.dialing = False
        self.fd = -1  # the socket's descriptor, registered with the poller for ``events``
        self.events = 0
        #: ``time.perf_counter()`` when the request was handed to the loop, and when its
        #: answer's head was parsed (0.0: not yet): ``Response.elapsed`` runs from one to the
        #: other, as requests' runs from sending to the head (the body is read after it).
        self.started = perf_counter()
        self.head_at = 0.0

    def __repr__(self) -> str:
        return f"<Exchange {self.method} on {self.conn!r} state={self.state}>"


def new_exchange(
    conn: Any,
    method: str,
    data: bytes,
    read_timeout: float | None | Callable[[], float | None],
    read_body: bool,
    dial: Callable[[Any], None] | None,
    replay: bool,
    direct: bool,
    tag: Any,
) -> Exchange:
    """An :class:`Exchange`, its arguments by position: a hot path's call without a keyword
    dict (the compiled twin sets its fields without ``__init__``'s argument parsing)."""
    return Exchange(
        conn,
        method,
        data,
        read_timeout=read_timeout,
        read_body=read_body,
        dial=dial,
        replay=replay,
        direct=direct,
        tag=tag,
    )


class Loop:
    """Drives :class:`Exchange` objects to their end from the thread that calls :meth:`poll`.
    :meth:`close` it when done (``map`` does, however its iterator ends): until then its
    timers hold the exchanges they time, and the compiled loop's do so unseen by the cycle
    collector.

    :param dial_workers: threads that run dials (connect, tunnel, TLS handshake).
    """

    def __init__(self, *, dial_workers: int = 4) -> None:
        if dial_workers < 1:
            raise ValueError(f"dial_workers must be >= 1, got {dial_workers}")
        self._poller = new_poller()
        self._watched: dict[int, Exchange] = {}  # by descriptor: what the poller reports
        # By descriptor: the sockets of idle connections left registered for reading after
        # their exchange ended (epoll only), so that the next exchange on one costs no
        # system call to watch, as libcurl keeps its sockets with the multi handle.
        self._parked: dict[int, Any] = {}
        self._parks = drops_closed(self._poller)
        # What the last complete wait (one that reported every ready socket) saw of them:
        # when it began, and the parked sockets it could not see (parked after it began).
        self._seen_at = -1e300
        self._unseen: set[int] = set()
        self._forks = _poller.FORKS  # a fork since: what is parked is unregistered
        # Stray registrations (see _rebuild) are epoll's alone: a selector reports only what
        # it holds (and may report an error as readable on a socket watched for writing).
        self._epoll = drops_closed(self._poller)
        # A registration this process cannot remove (see _rebuild) was met: a new poller
        # at the end of this poll.
        self._haunted = False
        self._thread = threading.get_ident()  # the thread that polls (see _unpark_all)
        if self._parks:
            unpark_at_fork(self)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_fd = self._wake_r.fileno()
        self._poller.register(self._wake_fd, READ)
        self._dial_workers = dial_workers
        self._dialer: ThreadPoolExecutor | None = None
        self._dialed: collections.deque[Exchange] = collections.deque()
        # a dial's end against its cancellation; reentrant: cancelling a lookup's Future runs
        # its callback (_looked_up) at once, in the cancelling thread
        self._dial_lock = threading.RLock()
        self._timers: list[tuple[float, int, Exchange]] = []
        self._seq = 0
        self._active: set[Exchange] = set()
        self._done: list[Exchange] = []
        self._view = memoryview(bytearray(_RECV_SIZE))
        self._closed = False

    def __len__(self) -> int:
        """Exchanges in flight."""
        return len(self._active)

    # --- starting ---------------------------------------------------------------------------
    def start(self, ex: Exchange) -> None:
        """Put ``ex`` in flight: dial it first when its connection has no socket."""
        if self._closed:
            raise RuntimeError("the loop is closed")
        self._active.add(ex)
        if ex.conn.sock is None:
            self._dial(ex)
            return
        self._begin_send(ex)

    def when_ready(self, ex: Exchange, writable: bool = False) -> None:
        """Hand ``ex`` back from :meth:`poll` once its connection's socket is readable
        (``writable``: writable, which TLS may need to read), for the caller to read a body
        piece by piece; at its ``read_timeout`` it fails as a read fails (the socket then
        raises ``socket.timeout`` to the caller's next read). Call it again for each wait."""
        if self._closed:
            raise RuntimeError("the loop is closed")
        self._active.add(ex)
        ex.state = _PUMP
        self._arm(ex)
        self._watch(ex, WRITE if writable else READ)

    def _dial(self, ex: Exchange) -> None:
        if ex.dial is None:
            raise ValueError("an exchange on a closed connection needs a dial")
        if ex.direct:
            plan = ex.conn.loop_dial_begin()
            if type(plan) is tuple:  # one address: the loop dials it
                self._connect(ex, plan)
                return
            if plan is not None:
                # The resolver asks; the loop goes on, and takes the answer up when it comes.
                ex.state = _DIALING
                ex.future = plan
                plan.add_done_callback(functools.partial(self._looked_up, ex))
                return
        self._dial_in_worker(ex)

    def _dial_in_worker(self, ex: Exchange) -> None:
        if self._dialer is None:
            self._dialer = ThreadPoolExecutor(
                self._dial_workers, thread_name_prefix="fastpool-dial"
            )
        ex.state = _DIALING
        ex.future = self._dialer.submit(self._run_dial, ex, ex.conn)

    def _looked_up(self, ex: Exchange, future: Any) -> None:
        # In the resolver's thread (this one for an answer that was there, or a cancel): the
        # loop takes the exchange up again in _take_dialed.
        self._hand_back(ex, ex.conn)

    def _run_dial(self, ex: Exchange, conn: Any) -> None:
        # In a worker thread, on its own reference to the connection: a cancel may hand the
        # exchange's slot back meanwhile. The loop does not touch conn until ex is in _dialed.
        try:
            assert ex.dial is not None
            ex.dial(conn)
        except BaseException as e:  # noqa: B036, BLE001 - raised in the loop thread instead
            ex.error = e
        self._hand_back(ex, conn)

    def _hand_back(self, ex: Exchange, conn: Any) -> None:
        """A dial (or a lookup) ended in another thread: queue ``ex`` for the loop and wake it."""
        with self._dial_lock:
            if ex.cancelled:
                # Left while dialing (the slot was given back already): close what the dial
                # opened (and a cap's token), here, so close() never waits for a dial.
                conn.close()
                return
            self._dialed.append(ex)
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # a full wake-up pipe already wakes the loop; a closed one: the loop ended

    def _connect(self, ex: Exchange, address: Any) -> None:
        """The loop's own dial: a non-blocking connect to ``address``, bounded by the
        connection's connect timeout (as each step of the TLS handshake after it)."""
        ex.state = _CONNECTING
        try:
            ex.conn.loop_dial_start(address)
        except Exception as e:  # noqa: BLE001 - failed at once (refused, a bad option), as connect()
            self._dial_failed(ex, e, False)
            return
        self._arm_for(ex, ex.conn.timeout)
        self._watch(ex, WRITE)

    def _advance_dial(self, ex: Exchange) -> None:
        """The socket of the loop's own dial is ready: the connect's outcome, then (HTTPS) the
        next step of the handshake, then the request."""
        conn = ex.conn
        if ex.state == _CONNECTING:
            code = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code and code != errno.ECONNRESET:  # refused, unreachable, ...
                self._dial_failed(ex, OSError(code, os.strerror(code)), False)
                return
            try:
                tls = conn.loop_dial_connected()
            except Exception as e:  # noqa: BLE001 - raised by the blocking code's connect()
                self._dial_failed(ex, e, True)
                return
            if code:
                # Reset after it was accepted (a refused connect is ECONNREFUSED): connected,
                # and the reset met where one request meets it: by the handshake, or by the
                # request's write and then its read.
                reset = ConnectionResetError(code, os.strerror(code))
                if tls is not None:
                    self._dial_failed(ex, reset, True)
                else:
                    self._fail(ex, reset, sending=True)
                return
            if tls is None:
                self._begin_send(ex)
                return
            ex.state = _HANDSHAKING
            # One deadline for the whole handshake, as ssl's blocking do_handshake() has.
            self._arm_for(ex, conn.timeout)
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._watch(ex, READ)
            return
        except ssl.SSLWantWriteError:
            self._watch(ex, WRITE)
            return
        except Exception as e:  # noqa: BLE001 - raised by the blocking code's connect()
            self._dial_failed(ex, e, True)
            return
        try:
            conn.loop_dial_verified()
        except Exception as e:  # noqa: BLE001 - raised by the blocking code's connect()
            self._dial_failed(ex, e, True)
            return
        self._begin_send(ex)

    def _dial_failed(self, ex: Exchange, error: BaseException, connected: bool) -> None:
        """The loop's own dial failed: the connection keeps the error its connect() raises."""
        self._unwatch(ex)
        ex.error = ex.conn.loop_dial_failed(error, connected)
        self._finish(ex)

    def _begin_send(self, ex: Exchange) -> None:
        if ex.read_timeout_of is not None:
            # what a Timeout(total=...) leaves for reading once connected, as urllib3 reckons
            ex.read_timeout = ex.read_timeout_of()
        sock = ex.conn.sock
        if sock.gettimeout() != 0.0:  # a connection back from the loop is non-blocking still
            sock.setblocking(False)
        ex.conn._sock_timeout = UNSET_TIMEOUT  # settimeout() must set it again after the loop
        ex.state = _SENDING
        # Sending is bounded by the connect timeout, as the blocking request() sends; the read
        # timeout starts once the request is out.
        self._arm_for(ex, ex.conn.timeout)
        self._send(ex)

    # --- waiting ----------------------------------------------------------------------------
    def poll(self, timeout: float | None = None) -> list[Exchange]:
        """Wait up to ``timeout`` seconds (None: until one ends) and return the exchanges that
        ended (possibly none). Call it again while :func:`len` is not 0."""
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
                ex = watched.get(fd)
                if ex is None:
                    if fd == self._wake_fd:
                        self._drain_wake()
                    elif fd in self._parked:
                        self._unpark(fd)
                    elif self._epoll:
                        self._haunted = True  # nothing of ours has that number now
                elif self._epoll and events & READ and not ex.events & READ:
                    # Readable, on a socket watched for writing only: epoll never says so of
                    # a registration of ours (see _rebuild).
                    self._haunted = True
                elif events & ~READ and ex.state == _SENDING:  # writable (or an error)
                    self._send(ex)
                elif ex.state == _PUMP:  # the caller reads
                    if self._epoll and events & READ and _nothing_to_read(ex.conn.sock):
                        self._haunted = True  # not this socket's event (see _rebuild)
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

    def _rebuild(self) -> None:
        """A new poller with what is watched now, the parked sockets dropped.

        epoll keys a registration by the open file, not by its number. A socket this process
        closed while a forked child still holds it stays registered, reporting under a number
        that may now be another socket's, and no system call can reach it: only closing the
        poller ends it. It shows as an event for a number nothing of ours has, or as a
        readable plain socket with nothing to read."""
        self._haunted = False
        old, self._poller = self._poller, new_poller()
        old.close()
        self._poller.register(self._wake_fd, READ)
        self._parked.clear()
        for fd, ex in self._watched.items():
            try:
                self._poller.register(fd, ex.events)
            except OSError:
                pass  # closed behind the loop's back: its read timeout ends it, as before

    def _wait_time(self, timeout: float | None) -> float | None:
        if self._dialed:
            return 0
        timers = self._timers
        while timers and timers[0][2].state == _DONE:
            # the exchange ended: its timer with it (a body's exchange may wait again)
            when, _, ex = heapq.heappop(timers)
            if when == ex.armed:
                ex.armed = 0.0
        if timers:
            wait = max(timers[0][0] - monotonic(), 0.0)
            return wait if timeout is None else min(wait, timeout)
        return timeout

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _take_dialed(self) -> None:
        dialed = self._dialed
        while dialed:
            ex = dialed.popleft()
            if ex.error is not None:
                ex.conn.dial_error = ex.error  # the blocking code raises it at its connect()
                self._finish(ex)
            elif ex.conn.sock is None:
                self._after_lookup(ex)
            else:
                self._begin_send(ex)

    def _after_lookup(self, ex: Exchange) -> None:
        """The resolver answered: the loop dials one address itself; several (to race) go to a
        worker with the answer; an error ends the exchange as one request's connect()."""
        lookup, ex.future = ex.future, None
        try:
            address = ex.conn.loop_dial_looked_up(lookup)
        except Exception as e:  # noqa: BLE001 - the lookup's error, raised by connect()
            self._dial_failed(ex, e, False)
            return
        if address is None:
            self._dial_in_worker(ex)
        else:
            self._connect(ex, address)

    # --- timers -----------------------------------------------------------------------------
    def _arm(self, ex: Exchange) -> None:
        """(Re)start the read timeout."""
        assert not callable(ex.read_timeout)  # resolved by _begin_send
        self._arm_for(ex, ex.read_timeout)

    def _arm_for(self, ex: Exchange, seconds: float | None) -> None:
        """(Re)start a timeout of ``seconds`` (None: none). Progress moves ``ex.expires`` on
        and its heap entry, found early, is pushed again (a heap entry for every segment
        received would keep each exchange, and the heap, for a whole timeout). A shorter
        timeout after a longer one (a read after a connect) needs an earlier entry: the later
        one is skipped when it comes up."""
        if seconds is None:
            ex.expires = None
            return
        expires = ex.expires = monotonic() + seconds
        if not ex.armed or expires < ex.armed:
            ex.armed = expires
            self._seq += 1
            heapq.heappush(self._timers, (expires, self._seq, ex))

    def _expire(self, now: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            when, _, ex = heapq.heappop(timers)
            if when != ex.armed:
                continue  # superseded by an earlier entry
            ex.armed = 0.0
            if ex.state in (_DONE, _DIALING) or ex.expires is None:
                continue
            if ex.expires > now:  # it made progress since: its timer goes on
                ex.armed = ex.expires
                self._seq += 1
                heapq.heappush(timers, (ex.expires, self._seq, ex))
                continue
            if ex.state == _PUMP:  # the caller's next read of the body meets the timeout
                self._fail(ex, socket.timeout("timed out"))
                continue
            if ex.state >= _CONNECTING:  # the loop's own dial: the connect timeout
                self._dial_failed(ex, socket.timeout("timed out"), ex.state == _HANDSHAKING)
                continue
            # The socket timeout the blocking code would have met, at the same step: its
            # request() (still writing) or its next receive.
            self._fail(ex, socket.timeout("timed out"), sending=ex.state == _SENDING)

    # --- writing ----------------------------------------------------------------------------
    def _send(self, ex: Exchange) -> None:
        sock = ex.conn.sock
        data = ex.data
        # the stdlib's own TLS socket: its session object's write, as its send() calls it
        tls = stock_tls(sock)
        try:
            while ex.sent < len(data):
                if tls is None:
                    ex.sent += sock.send(data[ex.sent :])
                else:
                    ex.sent += tls.write(data[ex.sent :])
        except (BlockingIOError, ssl.SSLWantWriteError):
            self._watch(ex, WRITE)
            return
        except ssl.SSLWantReadError:
            self._watch(ex, READ)
            return
        except OSError as e:
            # As the blocking request(): after a reset the server's answer may still be there
            # to read, but the connection carries half a request and is never reused.
            if not isinstance(e, BrokenPipeError) and e.errno not in _RESET_ERRNOS:
                self._fail(ex, e, sending=True)
                return
            ex.conn.reusable = False
        ex.conn.sent_ahead = True
        ex.state = _HEAD
        self._arm(ex)
        kind = type(sock)
        if tls is not None:
            buffered = tls.pending() > 0
        else:
            buffered = kind is not socket.socket and (kind is not ssl.SSLSocket or sock.pending())
        if not buffered:
            # Nothing is buffered above the kernel: wait for the answer (trying to read now
            # would fail with EAGAIN almost always, an exception per request).
            self._watch(ex, READ)
        else:
            self._receive(ex)  # decrypted bytes the poller cannot see, or another socket

    def _watch(self, ex: Exchange, events: int) -> None:
        # By descriptor, and the registration kept on the exchange.
        if not ex.events:
            sock = ex.conn.sock
            fd = ex.fd = sock.fileno()
            if self._parked.pop(fd, None) is sock:
                # Registered for reading since its last exchange here, unseen since.
                if events != READ:
                    self._poller.modify(fd, events)
            else:
                # (A parked socket of that number was closed since: epoll dropped it.)
                self._poller.register(fd, events)
            self._watched[fd] = ex
        elif ex.events != events:
            self._poller.modify(ex.fd, events)
        ex.events = events

    def _park(self, ex: Exchange) -> None:
        """``ex`` is done with its socket, whole and readable still: leave the socket
        registered for reading, as an idle connection's, for the next exchange on it.

        Safe because a registration is the socket's own: closing the socket drops it (and a
        new socket that takes its number is registered afresh: :meth:`_watch` compares the
        socket, not the number), and a parked socket that becomes readable (the server
        closed it, or sent what nobody asked for) is unregistered at the next poll, for the
        pool's check at checkout to find it as it would have."""
        if self._forks != _poller.FORKS:
            self._forked()
        if self._parks and ex.events == READ and self._watched.get(ex.fd) is ex:
            del self._watched[ex.fd]
            ex.events = 0
            self._parked[ex.fd] = ex.conn.sock
            self._unseen.add(ex.fd)
        else:
            self._unwatch(ex)

    def seen_idle(self, sock: Any) -> bool:
        """Whether ``sock``, an idle connection's socket parked here, had nothing to read (no
        answer, no close) at the last complete wait, which began at most ``SEEN_FOR``
        seconds ago: the pool's liveness check before a reuse, answered without a system
        call (epoll reports a parked socket that turns readable, and the loop unparks it).
        False: not known, the pool's check is to be made. (epoll is asked for ``EPOLLIN``:
        TCP urgent data, which the pool's ``POLLPRI`` sees, is not; see
        docs/differences.md.)"""
        fd = sock.fileno()
        return (
            fd not in self._unseen  # (first: a connection reused at once is, and costs least)
            and self._parked.get(fd) is sock
            and self._forks == _poller.FORKS  # (a fork since: unparked at the next poll)
            and monotonic() - self._seen_at <= _poller.SEEN_FOR
        )

    def _forked(self) -> None:
        """A fork since the last look: what is parked may be a child's too, unregister it."""
        self._forks = _poller.FORKS
        for fd in list(self._parked):
            self._unpark(fd)

    def _unpark(self, fd: int) -> None:
        del self._parked[fd]
        try:
            self._poller.unregister(fd)
        except OSError:
            pass  # closed meanwhile: nothing left to unregister

    def _unpark_all(self) -> None:
        """Before a fork (``unpark_at_fork``): unregister every idle socket, when the forking
        thread is the one that last polled (a fork in the loop's own body of results). Another
        thread's fork must not touch the loop under it: the loop unregisters them at its next
        poll, and a registration left behind meanwhile is found and ended by
        :meth:`_rebuild`."""
        if threading.get_ident() == self._thread:
            for fd in list(self._parked):
                self._unpark(fd)

    def _unwatch(self, ex: Exchange) -> None:
        if ex.events:
            ex.events = 0
            # Only its own registration: a socket closed behind the loop's back (epoll drops
            # it silently) may have its number reused by another exchange's socket already.
            if self._watched.get(ex.fd) is ex:
                del self._watched[ex.fd]
                try:
                    self._poller.unregister(ex.fd)
                except OSError:
                    pass  # closed behind the loop's back: nothing left to unregister

    # --- reading ----------------------------------------------------------------------------
    def _receive(self, ex: Exchange) -> None:
        if ex.state == _SENDING:  # TLS wanted a read to go on writing
            self._send(ex)
            return
        sock = ex.conn.sock
        view = self._view
        got = False
        tls = stock_tls(sock)
        try:
            while True:
                if tls is None:
                    n = sock.recv_into(view, _RECV_SIZE)
                else:
                    n = tls_recv_into(tls, sock, view, _RECV_SIZE)
                if not n:
                    if self._may_replay(ex):
                        self._replay(ex, RemoteDisconnected("closed before any answer byte"))
                        return
                    self._complete(ex, False)  # the stream ended: the blocking code judges it
                    return
                ex.buf += view[:n]
                got = True
                if self._ended(ex):
                    self._complete(ex)
                    return
        except (BlockingIOError, ssl.SSLWantReadError):
            if not got and self._epoll and type(sock) is socket.socket:
                # Reported readable, yet nothing (nor an EOF) to read: an event that is not
                # this socket's (see _rebuild). Only the poll hands a plain socket here.
                self._haunted = True
            self._watch(ex, READ)  # after a WantWrite too: not writable again
        except ssl.SSLWantWriteError:
            self._watch(ex, WRITE)
        except OSError as e:
            if isinstance(e, _STALE_ERRORS) and self._may_replay(ex):
                self._replay(ex, e)
                return
            self._fail(ex, e)
            return
        if got:
            self._arm(ex)

    @staticmethod
    def _may_replay(ex: Exchange) -> bool:
        return ex.replay and ex.state == _HEAD and not ex.buf

    def _replay(self, ex: Exchange, error: BaseException) -> None:
        """Go's rule, in the loop: the server closed a reused connection before any answer
        byte; the request goes again, once, on a new connection (not a Retry step)."""
        self._unwatch(ex)
        conn = ex.conn
        conn.close()
        ex.replay = False
        ex.replayed = error
        ex.sent = 0
        ex.remaining = 0
        ex.line_start = 0
        ex.head = None
        self._dial(ex)

    def _ended(self, ex: Exchange) -> bool:
        """Whether ``ex.buf`` holds all the loop reads: the head, then (``read_body``) the
        body to its framed end. A head the parser refuses ends it too: the blocking code
        raises the same error from the same bytes."""
        conn = ex.conn
        buf = ex.buf
        if ex.state == _HEAD:
            if not self._may_end_head(ex, conn):
                return False
            try:
                parsed = parse_response_head(
                    buf, ex.method, conn.max_head_bytes, conn.max_headers, conn.max_line_bytes
                )
            except Exception:  # noqa: BLE001 - the blocking code raises it from the same bytes
                return True
            if parsed is None:
                return False
            head, used = parsed
            ex.head, ex.head_size = head, used  # for the caller: parsed once
            ex.head_at = perf_counter()
            framing = head.framing
            if not ex.read_body or framing == "none":
                return True
            ex.state = _BODY
            if framing == "length":
                ex.remaining = used + (head.content_length or 0)
                return len(buf) >= ex.remaining
            if framing == "chunked":
                ex.decoder = ChunkedDecoder(conn.max_line_bytes)
                ex.remaining = used
            else:
                ex.remaining = 0
                return False  # close-delimited: to the end of the stream
        if ex.decoder is not None:
            try:
                ex.decoder.feed(bytes(buf[ex.remaining :]))
            except Exception:  # noqa: BLE001 - the blocking code raises it from the same bytes
                return True
            ex.remaining = len(buf)
            return bool(ex.decoder.done)
        if ex.remaining:
            return len(buf) >= ex.remaining
        return False

    @staticmethod
    def _may_end_head(ex: Exchange, conn: Any) -> bool:
        """Parse again only when the new bytes may end the head (a blank line) or pass a
        bound, so a head trickled in small pieces is not scanned once per piece: each byte is
        looked at a bounded number of times."""
        buf = ex.buf
        seen = ex.remaining  # in the head state: how much was looked at before
        ex.remaining = len(buf)
        if (
            buf.find(b"\n\r\n", max(seen - 2, 0)) >= 0
            or buf.find(b"\n\n", max(seen - 1, 0)) >= 0
            or len(buf) >= conn.max_head_bytes
        ):
            return True
        newline = buf.rfind(b"\n", seen)
        if newline >= 0:
            ex.line_start = newline + 1
        return bool(len(buf) - ex.line_start > conn.max_line_bytes)

    # --- ending -----------------------------------------------------------------------------
    def _complete(self, ex: Exchange, reusable: bool = True) -> None:
        """Everything read: hand the bytes to the connection for the blocking code. Its socket
        stays registered only if the connection may serve again (not at the stream's end,
        nor after an answer that closes it)."""
        head = ex.head
        if reusable and head is not None and head.keep_alive:
            self._park(ex)
        else:
            self._unwatch(ex)
        ex.conn._rest = bytes(ex.buf)
        ex.buf = bytearray()
        self._finish(ex)

    def _fail(self, ex: Exchange, error: BaseException, sending: bool = False) -> None:
        """A read (or write) failed: the bytes read so far, then the error, for the blocking
        code to meet in that order."""
        self._unwatch(ex)
        conn = ex.conn
        conn._rest = bytes(ex.buf)
        ex.buf = bytearray()
        conn.reusable = False
        conn.sock = FailedSocket(conn.sock, error)
        if sending:
            conn.sent_ahead = False  # request() meets the error at its send
        self._finish(ex)

    def _finish(self, ex: Exchange) -> None:
        ex.state = _DONE
        self._active.discard(ex)
        self._done.append(ex)

    def cancel(self, ex: Exchange) -> None:
        """Stop ``ex``: its connection is closed (a dial in progress is closed when it ends).
        It is handed back by :meth:`poll` like any other."""
        if ex.state == _DONE or ex.cancelled:
            return
        if ex.state == _DIALING:
            with self._dial_lock:
                ex.cancelled = True
                if ex in self._dialed:  # dialed, not yet taken: closed here
                    self._dialed.remove(ex)
                    ex.conn.close()
                elif ex.future is not None and ex.future.cancel():
                    ex.conn.close()  # never started: nothing opened, a cap token maybe held
                else:
                    ex.dialing = True  # the worker closes it when its dial ends
            self._active.discard(ex)
            ex.state = _DONE
            return
        ex.cancelled = True
        self._unwatch(ex)
        ex.conn.close()
        self._finish(ex)

    def close(self) -> None:
        """Cancel everything in flight and release the poller and the dial threads."""
        if self._closed:
            return
        for ex in list(self._active):
            self.cancel(ex)
        if self._dialer is not None:
            # Never waits for a dial: a cancelled one is closed by its worker (_run_dial).
            self._dialer.shutdown(wait=False, cancel_futures=True)
        self._closed = True
        self._timers.clear()  # none fires once closed (the compiled heap's references go too)
        self._parked.clear()
        self._poller.close()
        self._wake_r.close()
        self._wake_w.close()
