"""The multiplexed loop's two twins (``_loop_c`` and ``_loop_py``), each driven directly over
socketpairs: the same scripted peers, the same expected outcomes on the connection (what the
loop hands the blocking code: the bytes read, the request written or not, the error to meet).

Everything above the loop (pools, ``map``) runs on both backends in the rest of the suite;
this file holds each twin to the same answers one level down, whatever the build.
"""

from __future__ import annotations

import gc
import importlib
import os
import random
import select
import socket
import struct
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from fastpool import _poller

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
TO_CLOSE = b"HTTP/1.1 200 OK\r\n\r\nuntil the end"


@pytest.fixture(params=["python", "cython"])
def twin(request: pytest.FixtureRequest) -> Any:
    name = "fastpool._loop_py" if request.param == "python" else "fastpool._loop_c"
    try:
        return importlib.import_module(name)
    except ImportError:
        pytest.skip("no compiled loop in this build")


class Conn:
    """What the loop reads and sets on a connection (fastpool.connection's attribute names)."""

    max_head_bytes = 65536
    max_headers = 100
    max_line_bytes = 8192

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.timeout: float | None = None  # the connect timeout: it bounds sending too
        self._rest = b""
        self._sock_timeout: object = None
        self.sent_ahead = False
        self.reusable = True
        self.dial_error: BaseException | None = None
        self.closed = 0

    def close(self) -> None:
        self.closed += 1
        if self.sock is not None:
            self.sock.close()
            self.sock = None


@pytest.fixture
def pair() -> Iterator[tuple[Conn, socket.socket]]:
    ours, theirs = socket.socketpair()
    theirs.settimeout(5)
    conn = Conn(ours)
    yield conn, theirs
    theirs.close()
    if conn.sock is not None:
        conn.sock.close()


def run(loop: Any, *exchanges: Any, seconds: float = 5.0) -> list[Any]:
    """Poll until every exchange has ended (bounded in time); the order they ended in."""
    ended: list[Any] = []
    deadline = time.monotonic() + seconds
    while len(ended) < len(exchanges):
        assert time.monotonic() < deadline, "the loop did not end its exchanges"
        ended += loop.poll(0.05)
    return ended


def serve(theirs: socket.socket, *pieces: bytes, pause: float = 0.0, close: bool = False) -> None:
    """Read the request, then send ``pieces`` (``pause`` apart), then maybe close."""

    def answer() -> None:
        got = b""
        while not got.endswith(b"\r\n\r\n"):
            got += theirs.recv(4096)
        for piece in pieces:
            theirs.sendall(piece)
            if pause:
                time.sleep(pause)
        if close:
            theirs.shutdown(socket.SHUT_WR)

    threading.Thread(target=answer, daemon=True).start()


@pytest.mark.parametrize(
    ("answer", "close"),
    [(OK, False), (CHUNKED, False), (TO_CLOSE, True)],
    ids=["length", "chunked", "to-close"],
)
def test_a_whole_answer_is_handed_to_the_connection(twin, pair, answer, close) -> None:
    conn, theirs = pair
    loop = twin.Loop()
    ex = twin.Exchange(conn, "GET", REQUEST, read_timeout=5.0, tag="mine")
    serve(theirs, answer[:20], answer[20:], pause=0.02, close=close)
    loop.start(ex)
    assert len(loop) == 1
    assert run(loop, ex) == [ex]
    assert len(loop) == 0
    assert conn._rest == answer
    assert conn.sent_ahead is True and conn.reusable is True
    assert ex.tag == "mine" and ex.error is None
    assert conn.sock.gettimeout() == 0.0  # left non-blocking: the blocking code sets it again
    loop.close()


def test_head_only_stops_at_the_blank_line(twin, pair) -> None:
    conn, theirs = pair
    loop = twin.Loop()
    ex = twin.Exchange(conn, "GET", REQUEST, read_timeout=5.0, read_body=False)
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
    serve(theirs, head)
    loop.start(ex)
    run(loop, ex)
    assert conn._rest == head
    loop.close()


def test_a_silent_peer_times_out_where_the_blocking_code_meets_it(twin, pair) -> None:
    conn, theirs = pair
    loop = twin.Loop()
    ex = twin.Exchange(conn, "GET", REQUEST, read_timeout=0.2)
    serve(theirs, b"HTTP/1.1 200 OK\r\n")  # then nothing
    began = time.monotonic()
    loop.start(ex)
    run(loop, ex)
    assert 0.15 < time.monotonic() - began < 3
    assert conn._rest == b"HTTP/1.1 200 OK\r\n"
    assert conn.reusable is False
    with pytest.raises(socket.timeout):
        conn.sock.recv(1)  # the stand-in raises the timeout at the next receive
    loop.close()


def test_a_reset_mid_body_is_left_for_the_next_receive(twin) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        ours = socket.create_connection(server.getsockname())
        theirs, _ = server.accept()
    conn = Conn(ours)
    loop = twin.Loop()
    ex = twin.Exchange(conn, "GET", REQUEST, read_timeout=5.0)
    loop.start(ex)
    theirs.settimeout(5)
    theirs.recv(4096)
    theirs.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort")
    time.sleep(0.05)
    # Linger 0: the close is a reset, not an end of stream.
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    theirs.close()
    run(loop, ex)
    assert conn._rest.endswith(b"short")  # the bytes read first, then the error
    assert conn.reusable is False
    with pytest.raises(ConnectionResetError):
        conn.sock.recv(1)
    conn.sock.close()
    loop.close()


def test_a_malformed_head_ends_the_exchange_for_the_parser_to_refuse(twin, pair) -> None:
    conn, theirs = pair
    loop = twin.Loop()
    ex = twin.Exchange(conn, "GET", REQUEST, read_timeout=5.0)
    bad = b"HTTP/1.1 200 OK\r\nBad\x01Header: x\r\n\r\n"
    serve(theirs, bad)
    loop.start(ex)
    run(loop, ex)
    assert conn._rest == bad  # the same bytes the blocking parser raises on
    loop.close()


def test_a_reused_connection_closed_before_any_answer_is_replayed_once(twin, pair) -> None:
    conn, theirs = pair
    loop = twin.Loop()
    fresh: list[socket.socket] = []

    def dial(c: Conn) -> None:
        ours, peer = socket.socketpair()
        fresh.append(peer)
        c.sock = ours
        serve(peer, OK)

    ex = twin.Exchange(conn, "GET", REQUEST, read_timeout=5.0, dial=dial, replay=True)
    theirs.close()  # the server closed the idle connection
    loop.start(ex)
    run(loop, ex)
    assert isinstance(ex.replayed, (ConnectionError, OSError))
    assert conn._rest == OK and conn.closed == 1
    for peer in fresh:
        peer.close()
    loop.close()


def test_a_dial_error_is_left_for_connect(twin) -> None:
    conn = Conn(None)
    loop = twin.Loop(dial_workers=1)

    def dial(c: Conn) -> None:
        raise ConnectionRefusedError("refused")

    ex = twin.Exchange(conn, "GET", REQUEST, read_timeout=5.0, dial=dial)
    loop.start(ex)
    run(loop, ex)
    assert isinstance(ex.error, ConnectionRefusedError)
    assert conn.dial_error is ex.error
    loop.close()


def test_cancel_closes_the_connection_and_hands_the_exchange_back(twin, pair) -> None:
    conn, _theirs = pair
    loop = twin.Loop()
    ex = twin.Exchange(conn, "GET", REQUEST, read_timeout=5.0)
    loop.start(ex)
    loop.cancel(ex)
    assert ex.cancelled is True and conn.closed == 1
    assert loop.poll(0) == [ex] and len(loop) == 0
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.start(twin.Exchange(Conn(None), "GET", REQUEST, read_timeout=1.0))


def test_many_in_flight_end_independently(twin) -> None:
    loop = twin.Loop()
    pairs = [socket.socketpair() for _ in range(50)]
    exchanges = []
    for i, (ours, theirs) in enumerate(pairs):
        body = str(i).encode()
        serve(theirs, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        ex = twin.Exchange(Conn(ours), "GET", REQUEST, read_timeout=5.0, tag=i)
        exchanges.append(ex)
        loop.start(ex)
    run(loop, *exchanges)
    for ex in exchanges:
        assert ex.conn._rest.endswith(b"\r\n\r\n" + str(ex.tag).encode())
    loop.close()
    for ours, theirs in pairs:
        ours.close()
        theirs.close()


def test_timeouts_end_in_the_order_they_expire(twin) -> None:
    # The timer heap (a C array in the compiled twin, heapq in the pure one): 40 silent peers
    # with read timeouts started in a shuffled order end in the order of their expiry, while
    # every third peer answers first (its entry, left in the heap, is skipped).
    loop = twin.Loop()
    pairs = [socket.socketpair() for _ in range(40)]
    order = list(range(40))
    random.Random(7).shuffle(order)
    silent, answered = [], []
    for k, (ours, theirs) in zip(order, pairs):
        ex = twin.Exchange(Conn(ours), "GET", REQUEST, read_timeout=0.1 + 0.01 * k, tag=k)
        if k % 3 == 0:
            serve(theirs, OK)
            answered.append(ex)
        else:
            silent.append(ex)  # its request sits unread in the peer's buffer
        loop.start(ex)
    ended = run(loop, *silent, *answered)
    timed_out = [ex for ex in ended if ex in silent]
    assert len(timed_out) == len(silent)
    assert [ex.expires for ex in timed_out] == sorted(ex.expires for ex in silent)
    for ex in silent:
        with pytest.raises(socket.timeout):
            ex.conn.sock.recv(1)  # the timeout, left for the blocking code's next receive
    for ex in answered:
        assert ex.conn._rest == OK
    loop.close()
    for ours, theirs in pairs:
        ours.close()
        theirs.close()


def test_a_loop_let_go_with_timers_pending_releases_their_exchanges(twin, pair) -> None:
    # The compiled heap holds a reference to each exchange it times: a loop dropped with
    # entries left (a long timeout, cancelled) must give them back.
    conn, _theirs = pair
    ex = twin.Exchange(conn, "GET", REQUEST, read_timeout=60.0)
    before = sys.getrefcount(ex)
    loop = twin.Loop()
    loop.start(ex)
    loop.poll(0)
    loop.close()  # cancelled: its timer entry stays until popped
    del loop
    gc.collect()
    assert sys.getrefcount(ex) == before


class FakeClock:
    """The loop module's ``monotonic``, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_timers_of_one_time_end_in_the_order_they_were_armed(twin, monkeypatch) -> None:
    # Ties (the same clock reading, the same timeout) come out first armed, first out, as
    # heapq's (when, seq) tuples do; and once every entry has come out, the heap holds no
    # reference to any exchange (each exchange's count is back where it started).
    clock = FakeClock()
    monkeypatch.setattr(twin, "monotonic", clock)
    loop = twin.Loop()
    pairs = [socket.socketpair() for _ in range(30)]
    exchanges = [
        twin.Exchange(Conn(ours), "GET", REQUEST, read_timeout=(0.5, 1.0, 0.5)[i % 3], tag=i)
        for i, (ours, _) in enumerate(pairs)
    ]
    counts = [sys.getrefcount(ex) for ex in exchanges]
    list(map(loop.start, exchanges))  # (silent peers: each waits for its read timeout)
    assert loop.poll(0) == []
    clock.now += 0.5
    first = [ex.tag for ex in loop.poll(0)]
    clock.now += 0.5
    second = [ex.tag for ex in loop.poll(0)]
    assert first == [i for i in range(30) if i % 3 != 1]
    assert second == [i for i in range(30) if i % 3 == 1]
    assert [sys.getrefcount(ex) for ex in exchanges] == counts
    loop.close()
    for ours, theirs in pairs:
        ours.close()
        theirs.close()


def test_a_closed_loop_in_a_reference_cycle_is_collected(twin, pair) -> None:
    # An exchange may refer back to its loop (its tag here; a lookup's callback in the
    # library): the timer entry left by a cancelled exchange must not keep that cycle from
    # the collector once the loop is closed (the compiled heap's references are invisible to
    # it, so closing gives them back).
    class Holder:
        loop: Any = None

    conn, _theirs = pair
    loop = twin.Loop()
    holder = Holder()
    holder.loop = loop
    ex = twin.Exchange(conn, "GET", REQUEST, read_timeout=60.0, tag=holder)
    loop.start(ex)
    loop.poll(0)
    loop.close()
    gone = weakref.ref(loop)
    del loop, holder, ex
    gc.collect()
    assert gone() is None


def test_bad_arguments(twin) -> None:
    with pytest.raises(ValueError, match="dial_workers"):
        twin.Loop(dial_workers=0)
    loop = twin.Loop()
    with pytest.raises(ValueError, match="needs a dial"):
        loop.start(twin.Exchange(Conn(None), "GET", REQUEST, read_timeout=1.0))
    loop.close()


# --- edges: a hostile Content-Length, a socket closed behind the loop, extreme waits ------


@pytest.fixture
def loop(twin: Any) -> Iterator[Any]:
    """A loop of the twin, closed after the test."""
    twin_loop = twin.Loop()
    yield twin_loop
    twin_loop.close()


def answer_once(
    theirs: socket.socket, answer: bytes, delay: float = 0.0, close: bool = False
) -> None:
    """On a thread: read the request (one receive), wait ``delay``, send ``answer``, then maybe
    half-close. Unlike :func:`serve`, a socket closed meanwhile (the test ended first) ends it
    quietly."""

    def reply() -> None:
        try:
            theirs.recv(4096)
            if delay:
                time.sleep(delay)
            theirs.sendall(answer)
            if close:
                theirs.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the test ended first

    threading.Thread(target=reply, daemon=True).start()


def test_a_content_length_at_the_limit_ends_at_eof_in_both_twins(twin, pair, loop) -> None:
    # The parser accepts any Content-Length up to 2**63 - 1; head length + that overflows the
    # compiled Exchange.remaining (Py_ssize_t). The pure twin reads to EOF and hands the bytes
    # to the blocking code (which reports the short body as one result); the compiled one
    # raised OverflowError out of poll(), ending the whole map (Session.map re-raises it).
    conn, theirs = pair
    ex = twin.Exchange(conn, "GET", REQUEST, read_timeout=5.0)
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775807\r\n\r\nabc"
    answer_once(theirs, answer, close=True)
    loop.start(ex)
    assert run(loop, ex) == [ex]
    assert conn._rest == answer


@pytest.mark.parametrize(("connect", "read"), [(3.0, 0.2), (0.2, 0.8)])
def test_sending_meets_the_connect_timeout_and_waiting_the_read_timeout(
    twin, pair, connect, read
) -> None:
    # The send is bounded by the connect timeout, then the answer by the read timeout: a
    # shorter timeout after a longer one ends at its own time (the timer heap kept the
    # longer entry), and a longer one after a shorter is not cut short by it.
    conn, theirs = pair
    conn.timeout = connect
    loop = twin.Loop()
    ex = twin.Exchange(conn, "GET", REQUEST, read_timeout=read)
    serve(theirs)  # reads the request, never answers
    began = time.monotonic()
    loop.start(ex)
    ended = run(loop, ex, seconds=8)
    took = time.monotonic() - began
    assert ended == [ex] and conn.sent_ahead is True
    assert (0.15 < took < 2.0) if read < connect else (0.7 < took < 2.5), took
    loop.close()


def test_a_socket_closed_behind_the_loop_times_out_as_with_selectors(twin, pair, loop) -> None:
    # A watched socket closed outside the loop: epoll drops it silently, so the exchange
    # meets its read timeout; unregistering the closed descriptor then raised EBADF out of
    # poll() (selectors' unregister swallowed it: the old loop handed the exchange back).
    conn, _theirs = pair
    ex = twin.Exchange(conn, "GET", REQUEST, read_timeout=0.2)
    loop.start(ex)
    conn.sock.close()
    assert run(loop, ex, seconds=3) == [ex]
    assert conn.reusable is False


def test_a_read_timeout_past_epolls_range_still_waits(twin, pair, loop) -> None:
    # epoll_wait takes an int of milliseconds (about 24.8 days at most): a read timeout (or a
    # map deadline) beyond it raised OverflowError from poll(). Session.get accepts it.
    conn, theirs = pair
    ex = twin.Exchange(conn, "GET", REQUEST, read_timeout=1e7)
    answer_once(theirs, OK, delay=0.2)
    loop.start(ex)
    ended: list[Any] = []
    deadline = time.monotonic() + 5
    while not ended and time.monotonic() < deadline:
        ended = loop.poll(None)  # as multi does with nothing else to wake for
    assert ended == [ex] and conn._rest == OK


def test_a_negative_poll_timeout_does_not_block(twin, pair, loop) -> None:
    # selectors (and SelectorPoller, off Linux) treat a negative wait as zero; epoll.poll
    # treats it as forever. multi clamps at 0, but the Loop's own contract differs by OS.
    conn, theirs = pair
    ex = twin.Exchange(conn, "GET", REQUEST, read_timeout=None)
    loop.start(ex)
    timer = threading.Timer(1.0, lambda: theirs.sendall(OK))  # ends the wait either way
    timer.start()
    try:
        began = time.monotonic()
        loop.poll(-1)
        assert time.monotonic() - began < 0.5
    finally:
        timer.join()


# --- when_ready: a body read piece by piece by the caller (map's on_body) ---------------------
def test_when_ready_hands_the_exchange_back_each_time_its_socket_is_readable(
    twin, pair, loop
) -> None:
    conn, theirs = pair
    conn.sock.setblocking(False)
    ex = twin.Exchange(conn, "BODY", b"", read_timeout=5.0)
    for piece in (b"one", b"two"):  # it waits again after each
        loop.when_ready(ex)
        assert loop.poll(0) == []  # nothing to read yet
        theirs.sendall(piece)
        assert run(loop, ex) == [ex]
        assert conn.sock.recv(10) == piece  # the caller reads; the socket is still its own
        assert len(loop) == 0
    assert conn.closed == 0


def test_when_ready_times_out_where_the_next_read_meets_it(twin, pair, loop) -> None:
    conn, theirs = pair
    conn.sock.setblocking(False)
    ex = twin.Exchange(conn, "BODY", b"", read_timeout=0.2)
    loop.when_ready(ex)
    theirs.sendall(b"x")
    assert run(loop, ex) == [ex]
    conn.sock.recv(1)
    started = time.monotonic()
    loop.when_ready(ex)  # a second wait has a timer too (re-armed)
    assert run(loop, ex) == [ex]
    assert 0.15 < time.monotonic() - started < 3
    assert conn.reusable is False
    with pytest.raises(socket.timeout):  # (TimeoutError from Python 3.10)
        conn.sock.recv(1)  # the socket stand-in raises the timeout to the caller's read


def test_when_ready_cancelled_closes_the_connection(twin, pair, loop) -> None:
    conn, _theirs = pair
    conn.sock.setblocking(False)
    ex = twin.Exchange(conn, "BODY", b"", read_timeout=None)
    loop.when_ready(ex)
    loop.cancel(ex)
    assert conn.closed == 1 and ex.cancelled is True
    assert loop.poll(0) == [ex] and len(loop) == 0
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.when_ready(twin.Exchange(Conn(None), "BODY", b"", read_timeout=None))


# --- idle connections stay registered (epoll): no system call to watch the next exchange ----
def _epolls() -> set[int]:
    """This process's epoll descriptors."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == "anon_inode:[eventpoll]":
                found.add(int(name))
        except OSError:
            pass  # closed meanwhile
    return found


@pytest.fixture
def epoll_loop(twin: Any) -> Iterator[tuple[Any, int]]:
    """A loop of the twin and its epoll's descriptor (Linux only): the kernel's own list of
    what it watches is ``/proc/self/fdinfo/<descriptor>``."""
    if not hasattr(select, "epoll"):
        pytest.skip("epoll only")
    before = _epolls()
    twin_loop = twin.Loop()
    (epfd,) = _epolls() - before
    yield twin_loop, epfd
    twin_loop.close()


def _registered(epfd: int) -> set[int]:
    """The descriptors the kernel has registered with that epoll."""
    with open(f"/proc/self/fdinfo/{epfd}") as info:
        return {int(line.split()[1]) for line in info if line.startswith("tfd:")}


def _exchange_ok(twin: Any, loop: Any, conn: Conn, theirs: socket.socket) -> Any:
    """One GET on ``conn`` answered with ``OK``, run to its end (its socket parked after)."""
    conn._rest = b""
    ex = twin.Exchange(conn, "GET", REQUEST, read_timeout=5.0)
    answer_once(theirs, OK)
    loop.start(ex)
    assert run(loop, ex) == [ex]
    assert conn._rest == OK and ex.error is None
    return ex


def test_an_idle_connection_stays_registered_for_its_next_exchange(twin, pair, epoll_loop):
    loop, epfd = epoll_loop
    conn, theirs = pair
    fd = conn.sock.fileno()
    for _ in range(3):
        _exchange_ok(twin, loop, conn, theirs)
        assert fd in _registered(epfd)  # kept, idle, for the next one
        assert loop.poll(0) == []  # and quiet while nothing comes


def test_a_parked_socket_that_turns_readable_is_unregistered_not_spun_on(twin, pair, epoll_loop):
    loop, epfd = epoll_loop
    conn, theirs = pair
    fd = conn.sock.fileno()
    _exchange_ok(twin, loop, conn, theirs)
    theirs.close()  # the server drops the idle connection
    assert loop.poll(0.05) == []
    assert fd not in _registered(epfd)  # for the pool's check at checkout to find the EOF
    began = time.monotonic()
    assert loop.poll(0.2) == []  # level-triggered: still registered, this would not wait
    assert time.monotonic() - began >= 0.15
    assert conn.sock.recv(1) == b""  # the EOF is left for whoever checks the connection


def test_a_parked_socket_closed_and_its_number_reused_is_watched_afresh(twin, pair, epoll_loop):
    loop, epfd = epoll_loop
    conn, theirs = pair
    _exchange_ok(twin, loop, conn, theirs)
    fd = conn.sock.fileno()
    conn.close()  # closed while parked: epoll drops it by itself
    assert fd not in _registered(epfd)
    ours, peer = socket.socketpair()
    try:
        assert ours.fileno() == fd  # the lowest free number: the parked one's
        fresh = Conn(ours)
        ex = twin.Exchange(fresh, "GET", REQUEST, read_timeout=2.0)
        answer_once(peer, OK)
        loop.start(ex)
        assert run(loop, ex) == [ex]  # a stale "still registered" would wait for nothing
        assert fresh._rest == OK and ex.error is None
    finally:
        ours.close()
        peer.close()


def test_a_selector_poller_keeps_nothing_registered(twin, pair, monkeypatch) -> None:
    # select() fails on a closed descriptor (EBADF), and a selector keeps one registered: off
    # Linux, every exchange registers and unregisters its socket, as before.
    import selectors

    from fastpool._poller import SelectorPoller

    monkeypatch.setattr(selectors, "DefaultSelector", selectors.SelectSelector)
    monkeypatch.setattr(twin, "new_poller", SelectorPoller)
    loop = twin.Loop()
    conn, theirs = pair
    try:
        for _ in range(2):
            ex = twin.Exchange(conn, "GET", REQUEST, read_timeout=5.0)
            answer_once(theirs, OK)
            loop.start(ex)
            assert run(loop, ex) == [ex]
            assert conn._rest == OK
            conn._rest = b""
        conn.close()  # a parked descriptor closed would now fail the selector's next poll
        assert loop.poll(0) == []
    finally:
        loop.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_fork_unregisters_the_idle_sockets_first(twin, pair, epoll_loop) -> None:
    # epoll keys a registration by the open file: a child holding a parked socket would keep
    # it registered after the parent closed its own, its events then reported under a number
    # the parent may give to a new socket. So none stays registered across a fork.
    loop, epfd = epoll_loop
    conn, theirs = pair
    fd = conn.sock.fileno()
    _exchange_ok(twin, loop, conn, theirs)
    assert fd in _registered(epfd)
    pid = os.fork()
    if pid == 0:  # the child: nothing to do
        os._exit(0)
    os.waitpid(pid, 0)
    assert fd not in _registered(epfd)
    _exchange_ok(twin, loop, conn, theirs)  # registered afresh


# --- a complete wait's word on an idle socket stands in for the pool's liveness poll --------
def _seen_right_after_a_wait(loop: Any, sock: socket.socket) -> bool:
    """``loop.seen_idle(sock)`` asked right after a complete wait that saw nothing, as a map
    asks at its next checkout; made again (20 times at most) when this thread was held off
    the CPU past ``SEEN_FOR`` in between, which would make the answer False for that."""
    for _ in range(20):
        began = time.monotonic()
        assert loop.poll(0) == []
        seen = loop.seen_idle(sock)
        if time.monotonic() - began < _poller.SEEN_FOR / 2:
            return bool(seen)
    pytest.fail(f"never asked within {_poller.SEEN_FOR / 2} s of a wait")


def test_an_idle_socket_is_seen_alive_only_by_a_wait_after_it_was_parked(twin, pair, epoll_loop):
    loop, _ = epoll_loop
    conn, theirs = pair
    sock = conn.sock
    assert loop.seen_idle(sock) is False  # never parked here
    _exchange_ok(twin, loop, conn, theirs)
    assert loop.seen_idle(sock) is False  # parked after the last wait began: not seen yet
    assert _seen_right_after_a_wait(loop, sock) is True


def test_what_arrives_after_the_last_wait_is_unknown_until_the_next(twin, epoll_loop):
    # The window the shortcut takes (docs/differences.md): bytes or a close that arrive
    # between the last complete wait and the checkout are not seen; the next wait sees them
    # and unparks the socket, and the checkout after it polls the socket (readable).
    loop, _ = epoll_loop
    for _ in range(20):  # again on a new pair when the thread was held off the CPU
        ours, theirs = socket.socketpair()
        theirs.settimeout(5)
        conn = Conn(ours)
        try:
            _exchange_ok(twin, loop, conn, theirs)
            began = time.monotonic()
            assert loop.poll(0) == []
            theirs.sendall(b"HTTP/1.1 408 Request Timeout\r\n\r\n")  # here now (a socketpair)
            seen = loop.seen_idle(ours)
            if time.monotonic() - began >= 0.0025:
                continue
            assert seen is True
            assert loop.poll(0) == []  # this wait sees it: unparked, not an exchange's
            assert loop.seen_idle(ours) is False
            assert select.select([ours], [], [], 0)[0] == [ours]  # for the pool's poll
            return
        finally:
            ours.close()
            theirs.close()
    pytest.fail("never asked within 2.5 ms of a wait")


def test_an_idle_socket_is_not_taken_as_seen_past_seen_for(twin, pair, epoll_loop):
    loop, _ = epoll_loop
    conn, theirs = pair
    sock = conn.sock
    _exchange_ok(twin, loop, conn, theirs)
    assert _seen_right_after_a_wait(loop, sock) is True
    time.sleep(_poller.SEEN_FOR * 4)  # a caller that held the map's iterator, say
    assert loop.seen_idle(sock) is False
    assert _seen_right_after_a_wait(loop, sock) is True


def test_a_closed_or_renumbered_socket_is_never_seen(twin, pair, epoll_loop):
    loop, epfd = epoll_loop
    conn, theirs = pair
    sock = conn.sock
    fd = sock.fileno()
    _exchange_ok(twin, loop, conn, theirs)
    assert _seen_right_after_a_wait(loop, sock) is True
    sock.close()  # closed while parked: epoll drops it; its number is free
    assert loop.seen_idle(sock) is False  # (its fileno() is -1 now)
    ours, peer = socket.socketpair()
    try:
        assert ours.fileno() == fd
        assert loop.seen_idle(ours) is False  # the number's parked socket is another object
        assert fd not in _registered(epfd)
    finally:
        ours.close()
        peer.close()


def test_a_wait_cut_short_by_max_events_refreshes_nothing(twin, epoll_loop, monkeypatch):
    # A wait that returned MAX_EVENTS events may have left a ready socket unreported: it is
    # no word on the parked sockets, and the word of the last complete wait ages out.
    loop, _ = epoll_loop
    pairs = []
    for _ in range(3):
        ours, theirs = socket.socketpair()
        theirs.settimeout(5)
        pairs.append((Conn(ours), theirs))
    try:
        for conn, theirs in pairs:
            _exchange_ok(twin, loop, conn, theirs)
        (a, a_peer), (b, b_peer), (c, _) = pairs
        assert _seen_right_after_a_wait(loop, c.sock) is True
        time.sleep(_poller.SEEN_FOR * 4)
        a_peer.sendall(b"x")
        b_peer.sendall(b"x")
        monkeypatch.setattr(_poller, "MAX_EVENTS", 1)
        assert loop.poll(0) == []  # reports one of the two: unparks it, sees nothing else
        assert loop.seen_idle(c.sock) is False
        assert {loop.seen_idle(a.sock), loop.seen_idle(b.sock)} == {False}
        monkeypatch.setattr(_poller, "MAX_EVENTS", 1024)
        assert _seen_right_after_a_wait(loop, c.sock) is True  # complete: the third seen
        assert not loop.seen_idle(a.sock) and not loop.seen_idle(b.sock)  # both unparked
    finally:
        for conn, theirs in pairs:
            theirs.close()
            if conn.sock is not None:
                conn.sock.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_another_threads_fork_is_met_at_the_loops_next_poll(
    twin, pair, epoll_loop, monkeypatch
) -> None:
    # A fork by another thread must not touch the loop under its own thread: the loop
    # unregisters its idle sockets (a child's too, now) at its next poll, then parks again.
    loop, epfd = epoll_loop
    conn, theirs = pair
    fd = conn.sock.fileno()
    _exchange_ok(twin, loop, conn, theirs)
    pids: list[int] = []

    def fork() -> None:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        pids.append(pid)

    assert loop.poll(0) == []  # a complete wait: the idle socket seen
    monkeypatch.setattr(_poller, "SEEN_FOR", 3600.0)  # (however long the fork takes)
    assert loop.seen_idle(conn.sock) is True
    forker = threading.Thread(target=fork)
    forker.start()
    forker.join()
    os.waitpid(pids[0], 0)
    assert fd in _registered(epfd)  # another thread's fork left the loop alone
    assert loop.seen_idle(conn.sock) is False  # but the child may hold it: the pool's poll
    assert loop.poll(0) == []
    assert fd not in _registered(epfd)  # its own next poll unregistered it
    _exchange_ok(twin, loop, conn, theirs)
    assert fd in _registered(epfd)  # and it parks again


def _ghost(twin: Any, loop: Any, pair: tuple[Conn, socket.socket]) -> tuple[int, int]:
    """Park pair's socket, keep its open file alive with a dup, close it, make the ghost
    readable: returns the dup (close it at the end) and the ghost's number."""
    conn, theirs = pair
    _exchange_ok(twin, loop, conn, theirs)
    fd = conn.sock.fileno()
    held = os.dup(fd)
    conn.close()
    theirs.close()  # the ghost turns readable (EOF), level-triggered
    return held, fd


def test_a_registration_left_by_a_shared_socket_ends_in_a_new_poller(twin, pair) -> None:
    # A parked socket closed here while another descriptor (a forked child's, here a dup)
    # still holds its open file stays registered with epoll, reporting under its old number,
    # which the next socket takes. No system call reaches that registration: the loop must
    # notice it (readable, yet nothing to read) and take a new poller, not spin on it.
    if not hasattr(select, "epoll"):
        pytest.skip("epoll only")
    loop = twin.Loop()
    try:
        held, fd = _ghost(twin, loop, pair)  # a dup stands for the child's reference
        try:
            ours, peer = socket.socketpair()
            try:
                assert ours.fileno() == fd
                fresh = Conn(ours)
                ex = twin.Exchange(fresh, "GET", REQUEST, read_timeout=5.0)
                answer_once(peer, OK, delay=0.3)
                began, cpu = time.monotonic(), time.thread_time()
                loop.start(ex)
                assert run(loop, ex) == [ex] and fresh._rest == OK
                wall, cpu = time.monotonic() - began, time.thread_time() - cpu
                assert wall >= 0.25
                assert cpu < wall / 2, f"spun: {cpu:.2f} s of CPU in {wall:.2f} s"
            finally:
                ours.close()
                peer.close()
        finally:
            os.close(held)
    finally:
        loop.close()


def test_a_stray_registration_under_a_sending_exchange_does_not_spin(twin, pair) -> None:
    # The stray registration of a socket shared with a child (see the test above) under the
    # number of a socket still writing its request: readable, on a socket watched for writing.
    loop = twin.Loop()
    held, fd = _ghost(twin, loop, pair)
    ours, peer = socket.socketpair()
    try:
        assert ours.fileno() == fd
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        big = REQUEST[:-2] + b"X-Pad: " + b"a" * 4_000_000 + b"\r\n\r\n"
        fresh = Conn(ours)
        ex = twin.Exchange(fresh, "GET", big, read_timeout=5.0)

        def slow_reader():
            time.sleep(0.5)  # the request is stuck in SENDING meanwhile
            got = b""
            while not got.endswith(b"\r\n\r\n"):
                got += peer.recv(1 << 20)
            peer.sendall(OK)

        threading.Thread(target=slow_reader, daemon=True).start()
        began, cpu = time.monotonic(), time.thread_time()
        loop.start(ex)
        assert run(loop, ex) == [ex] and fresh._rest == OK
        wall, cpu = time.monotonic() - began, time.thread_time() - cpu
        assert cpu < wall / 2, f"spun: {cpu:.2f} s of CPU in {wall:.2f} s"
    finally:
        ours.close()
        peer.close()
        os.close(held)
        loop.close()


def test_a_stray_registration_is_not_taken_for_a_body_socket_readiness(twin, pair) -> None:
    # The same, under a socket whose body the caller reads (when_ready): it is not handed back
    # "readable" again and again with nothing to read.
    loop = twin.Loop()
    held, fd = _ghost(twin, loop, pair)
    ours, peer = socket.socketpair()
    try:
        assert ours.fileno() == fd
        ours.setblocking(False)
        fresh = Conn(ours)
        spurious = 0
        began, cpu = time.monotonic(), time.thread_time()
        threading.Timer(0.5, lambda: peer.sendall(b"body")).start()
        while True:
            ex = twin.Exchange(fresh, "BODY", b"", read_timeout=5.0)
            loop.when_ready(ex)
            run(loop, ex)
            try:
                data = ours.recv(100)
                break
            except BlockingIOError:
                spurious += 1  # handed back "ready" with nothing to read
        wall, cpu = time.monotonic() - began, time.thread_time() - cpu
        assert data == b"body"
        assert spurious < 5, f"{spurious} spurious wake-ups, {cpu:.2f} s CPU in {wall:.2f} s"
    finally:
        ours.close()
        peer.close()
        os.close(held)
        loop.close()
