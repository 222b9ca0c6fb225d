"""HostQueue: one host's idle stack and slot accounting, on both backends (``hostqueue_cls``).

Waiting tests use real threads; each is bounded by a timeout and never asserts a duration.
The last part cross-checks against urllib3's own ``HTTPConnectionPool`` and runs a hypothesis
state machine over the compiled module, the pure twin and a small LifoQueue-based model.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from gc_staging import _run_with_collections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from urllib3 import HTTPConnectionPool
from urllib3.exceptions import ClosedPoolError, EmptyPoolError

import fastpool
from fastpool import _hostqueue
from fastpool.exceptions import (
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
    FastpoolError,
    PoolClosedError,
    PoolTimeoutError,
)

WAIT = 10.0  # upper bound for anything a test waits for; never reached when all is well


class Conn:
    """A stand-in connection: only its identity matters to the queue."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Conn({self.name})"

    def __eq__(self, other: object) -> bool:
        # The queue must compare by identity; an __eq__ that says yes to everything proves it.
        return True

    __hash__ = object.__hash__


def wait_until(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.001)


class Waiter(threading.Thread):
    """A thread doing one checkout; keeps what it got or what it raised."""

    def __init__(self, q: Any, timeout: float | None = WAIT) -> None:
        super().__init__(daemon=True)
        self.q = q
        self.timeout = timeout
        self.result: Any = "unset"
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.q.checkout(self.timeout)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            self.error = exc


def start_waiter(q: Any, timeout: float | None = WAIT) -> Waiter:
    """Start a waiter and return once the queue counts it as waiting (deterministic order)."""
    before = q.waiters
    waiter = Waiter(q, timeout)
    waiter.start()
    wait_until(lambda: q.waiters == before + 1)
    return waiter


@contextlib.contextmanager
def alarm(handler: Callable[[int, Any], None], seconds: float = 0.05) -> Iterator[None]:
    """Run ``handler`` in the main thread after ``seconds``, interrupting what blocks there."""
    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def fill(q: Any, *names: str) -> list[Conn]:
    """Check out len(names) slots (all new) and check in a Conn for each, in order."""
    conns = [Conn(name) for name in names]
    for _ in conns:
        assert q.checkout(0) is None
    for conn in conns:
        assert q.checkin(conn) is True
    return conns


# --- basics -----------------------------------------------------------------------------------


def test_defaults(hostqueue_cls: type) -> None:
    q = hostqueue_cls()
    assert (q.maxsize, q.block, q.limit, q.closed) == (1, False, None, False)
    assert (q.open, q.idle, q.in_use, q.waiters) == (0, 0, 0, 0)
    assert (q.created, q.reused, q.discarded, q.wait_count, q.wait_time) == (0, 0, 0, 0, 0.0)
    assert type(q).__name__ == "HostQueue"


def test_facade_matches_backend() -> None:
    expected = (
        "fastpool._hostqueue_c"
        if fastpool.implementation() == "cython"
        else ("fastpool._hostqueue_py")
    )
    assert _hostqueue.HostQueue.__module__ == expected


def test_lifo_order(hostqueue_cls: type) -> None:
    q = hostqueue_cls(maxsize=3)
    a, b, c = fill(q, "a", "b", "c")
    assert q.checkout() is c
    assert q.checkout() is b
    assert q.checkin(c)
    assert q.checkout() is c
    assert q.checkout() is a
    assert q.checkout() is None  # none idle: a new slot


def test_accounting(hostqueue_cls: type) -> None:
    q = hostqueue_cls(maxsize=2)
    assert q.checkout() is None
    assert q.checkout() is None
    assert (q.open, q.idle, q.in_use) == (2, 0, 2)
    a = Conn("a")
    assert q.checkin(a) is True
    assert (q.open, q.idle, q.in_use) == (2, 1, 1)
    assert q.checkin(None) is False  # the dial failed: the slot goes, nothing is kept
    assert (q.open, q.idle, q.in_use) == (1, 1, 0)
    assert q.checkout() is a
    assert (q.open, q.idle, q.in_use) == (1, 0, 1)


def test_discard_when_full(hostqueue_cls: type) -> None:
    q = hostqueue_cls(maxsize=1)
    assert q.checkout() is None
    assert q.checkout() is None  # non-blocking: over maxsize is allowed
    assert q.checkout() is None
    a, b, c = Conn("a"), Conn("b"), Conn("c")
    assert q.checkin(a) is True
    assert q.checkin(b) is False
    assert q.checkin(c) is False
    assert (q.idle, q.in_use, q.discarded, q.created) == (1, 0, 2, 3)
    assert q.checkout() is a


def test_maxsize_one(hostqueue_cls: type) -> None:
    q = hostqueue_cls(maxsize=1)
    [a] = fill(q, "a")
    for _ in range(3):
        assert q.checkout() is a
        assert q.checkin(a) is True
    assert (q.created, q.reused, q.discarded) == (1, 3, 0)


def test_maxsize_zero_keeps_any_number(hostqueue_cls: type) -> None:
    q = hostqueue_cls(maxsize=0)
    conns = fill(q, *"abcdefghij")
    assert (q.idle, q.discarded) == (10, 0)
    assert [q.checkout() for _ in conns] == conns[::-1]


def test_maxsize_zero_block_never_has_a_slot(hostqueue_cls: type) -> None:
    q = hostqueue_cls(maxsize=0, block=True)
    with pytest.raises(PoolTimeoutError) as info:
        q.checkout(0)
    assert str(info.value) == MSG_POOL_EMPTY_NOWAIT.format(limit=0)
    with pytest.raises(PoolTimeoutError) as info:
        q.checkout(0.01)
    assert str(info.value) == MSG_POOL_TIMEOUT.format(timeout=0.01, limit=0)
    assert (q.open, q.waiters, q.wait_count) == (0, 0, 1)


# --- blocking ---------------------------------------------------------------------------------


def test_block_caps_open_connections(hostqueue_cls: type) -> None:
    q = hostqueue_cls(maxsize=2, block=True)
    assert q.checkout() is None
    assert q.checkout() is None
    with pytest.raises(PoolTimeoutError) as info:
        q.checkout(0)
    assert str(info.value) == MSG_POOL_EMPTY_NOWAIT.format(limit=2)
    with pytest.raises(PoolTimeoutError):
        q.checkout(-1)  # negative: does not wait either
    assert q.wait_count == 0
    # An idle connection counts as open, and is handed out even at the cap.
    a = Conn("a")
    assert q.checkin(a) is True
    assert q.checkout(0) is a


def test_block_waits_then_times_out(hostqueue_cls: type) -> None:
    q = hostqueue_cls(maxsize=1, block=True)
    assert q.checkout() is None
    with pytest.raises(PoolTimeoutError) as info:
        q.checkout(timeout=0.05)
    assert str(info.value) == MSG_POOL_TIMEOUT.format(timeout=0.05, limit=1)
    # It is urllib3's EmptyPoolError too, so requests and urllib3 code catch it unchanged.
    assert isinstance(info.value, EmptyPoolError)
    assert isinstance(info.value, FastpoolError)
    assert (q.waiters, q.in_use, q.wait_count) == (0, 1, 1)
    assert q.wait_time > 0.0


def test_waiters_are_served_first_in_first_out(hostqueue_cls: type) -> None:
    q = hostqueue_cls(maxsize=1, block=True)
    assert q.checkout() is None
    waiters = [start_waiter(q) for _ in range(4)]
    assert q.waiters == 4
    conns = [Conn(str(i)) for i in range(4)]
    for waiter, conn in zip(waiters, conns):
        assert q.checkin(conn) is True  # handed over, not pushed
        waiter.join(WAIT)
        assert waiter.error is None
        assert waiter.result is conn
        assert q.idle == 0 and q.in_use == 1
    assert (q.waiters, q.wait_count, q.reused, q.created) == (0, 4, 4, 1)
    assert q.checkin(conns[-1]) is True
    assert (q.idle, q.in_use) == (1, 0)


def test_hand_off_of_none(hostqueue_cls: type) -> None:
    q = hostqueue_cls(maxsize=1, block=True)
    assert q.checkout() is None
    waiter = start_waiter(q)
    assert q.checkin(None) is False  # nothing to keep, but the slot passes to the waiter
    waiter.join(WAIT)
    assert waiter.error is None and waiter.result is None
    assert (q.in_use, q.created, q.reused) == (1, 2, 0)


def test_waiter_wakes_on_idle_handed_over(hostqueue_cls: type) -> None:
    # block=False with a limit: the same waiting, for max_connections_per_host.
    q = hostqueue_cls(maxsize=5, limit=2)
    assert q.checkout() is None
    assert q.checkout() is None
    waiter = start_waiter(q, timeout=None)  # None: waits as long as it takes
    a = Conn("a")
    q.checkin(a)
    waiter.join(WAIT)
    assert waiter.result is a


def test_limit_caps_non_blocking_queue(hostqueue_cls: type) -> None:
    q = hostqueue_cls(maxsize=1, limit=3)
    for _ in range(3):
        assert q.checkout() is None
    with pytest.raises(PoolTimeoutError) as info:
        q.checkout(0)
    assert str(info.value) == MSG_POOL_EMPTY_NOWAIT.format(limit=3)
    # maxsize still bounds what is kept idle.
    assert [q.checkin(Conn(n)) for n in "abc"] == [True, False, False]
    assert (q.open, q.discarded) == (1, 2)


@pytest.mark.parametrize(("maxsize", "limit", "cap"), [(4, 2, 2), (2, 4, 2), (3, None, 3)])
def test_block_cap_is_min_of_maxsize_and_limit(
    hostqueue_cls: type, maxsize: int, limit: int | None, cap: int
) -> None:
    q = hostqueue_cls(maxsize=maxsize, block=True, limit=limit)
    for _ in range(cap):
        assert q.checkout(0) is None
    with pytest.raises(PoolTimeoutError) as info:
        q.checkout(0)
    assert str(info.value) == MSG_POOL_EMPTY_NOWAIT.format(limit=cap)


def test_timed_out_waiter_leaves_the_line(hostqueue_cls: type) -> None:
    q = hostqueue_cls(maxsize=1, block=True)
    assert q.checkout() is None
    first = start_waiter(q, timeout=0.05)
    second = start_waiter(q)
    first.join(WAIT)
    assert isinstance(first.error, PoolTimeoutError)
    assert q.waiters == 1
    a = Conn("a")
    assert q.checkin(a) is True
    second.join(WAIT)
    assert second.result is a


def test_interrupted_waiter_passes_its_slot_on(hostqueue_cls: type) -> None:
    # A signal handler runs inside the waiting checkout: it checks a connection in (serving
    # this very waiter) and then raises, as a KeyboardInterrupt would.
    q = hostqueue_cls(maxsize=1, block=True)
    assert q.checkout() is None
    a = Conn("a")

    class Interrupt(Exception):
        pass

    def handler(signum: int, frame: object) -> None:
        assert q.checkin(a) is True  # handed to the waiter below
        raise Interrupt

    with alarm(handler), pytest.raises(Interrupt):
        q.checkout(WAIT)
    assert (q.waiters, q.in_use, q.idle) == (0, 0, 1)  # not leaked: back on the idle stack
    assert q.checkout(0) is a


def test_interrupted_waiter_leaves_the_line(hostqueue_cls: type) -> None:
    q = hostqueue_cls(maxsize=1, block=True)
    assert q.checkout() is None

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    with alarm(handler), pytest.raises(KeyboardInterrupt):
        q.checkout(WAIT)
    assert (q.waiters, q.in_use) == (0, 1)
    assert q.checkin(None) is False
    assert q.in_use == 0


# --- close, remove, take_idle -----------------------------------------------------------------


def test_close_wakes_waiters_and_returns_idle(hostqueue_cls: type) -> None:
    q = hostqueue_cls(maxsize=2, block=True)
    a = Conn("a")
    assert q.checkout() is None
    assert q.checkout() is None
    assert q.checkin(a) is True
    assert q.checkout() is a  # both slots in use again
    waiters = [start_waiter(q) for _ in range(3)]
    assert q.close() == []  # nothing idle
    for waiter in waiters:
        waiter.join(WAIT)
        assert isinstance(waiter.error, PoolClosedError)
        assert str(waiter.error) == MSG_POOL_CLOSED
        assert isinstance(waiter.error, ClosedPoolError)
    assert (q.closed, q.waiters, q.in_use) == (True, 0, 2)
    # In-flight connections come back to a closed queue: the slot goes, the caller closes.
    assert q.checkin(a) is False
    assert q.checkin(None) is False
    assert (q.in_use, q.open, q.discarded) == (0, 0, 0)
    with pytest.raises(ValueError, match=MSG_CHECKIN_UNMATCHED):
        q.checkin(a)


def test_close_returns_idle_and_is_idempotent(hostqueue_cls: type) -> None:
    q = hostqueue_cls(maxsize=3)
    conns = fill(q, "a", "b", "c")
    assert q.close() == conns  # oldest first
    assert q.close() == []
    assert q.idle == 0
    with pytest.raises(PoolClosedError) as info:
        q.checkout()
    assert str(info.value) == MSG_POOL_CLOSED


def test_remove(hostqueue_cls: type) -> None:
    q = hostqueue_cls(maxsize=3)
    a, b, c = fill(q, "a", "b", "c")
    assert q.remove(b) is True
    assert q.remove(b) is False
    assert q.remove(Conn("stranger")) is False  # equal by __eq__, not the same object
    assert q.idle == 2 and q.open == 2
    assert q.checkout() is c
    assert q.checkout() is a


def test_take_idle(hostqueue_cls: type) -> None:
    q = hostqueue_cls(maxsize=3)
    conns = fill(q, "a", "b", "c")
    assert q.checkout() is conns[2]
    assert q.take_idle() == conns[:2]
    assert q.take_idle() == []
    assert (q.idle, q.in_use, q.open, q.closed) == (0, 1, 1, False)
    assert q.checkin(conns[2]) is True


def test_checkin_without_checkout(hostqueue_cls: type) -> None:
    q = hostqueue_cls()
    with pytest.raises(ValueError) as info:
        q.checkin(Conn("a"))
    assert str(info.value) == MSG_CHECKIN_UNMATCHED
    assert q.checkout() is None
    a = Conn("a")
    assert q.checkin(a) is True
    before = repr(q)
    with pytest.raises(ValueError, match=MSG_CHECKIN_UNMATCHED):
        q.checkin(a)  # the double checkin changes nothing
    assert repr(q) == before


def test_counters_and_repr(hostqueue_cls: type) -> None:
    q = hostqueue_cls(maxsize=1)
    assert q.checkout() is None
    assert q.checkout() is None
    a, b = Conn("a"), Conn("b")
    q.checkin(a)
    q.checkin(b)
    assert q.checkout() is a
    assert (q.created, q.reused, q.discarded, q.wait_count) == (2, 1, 1, 0)
    assert repr(q) == (
        "<HostQueue open=1 idle=0 in_use=1 waiters=0 maxsize=1 block=False limit=None "
        "closed=False created=2 reused=1 discarded=1 wait_count=0 wait_time=0.000000>"
    )


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["maxsize", "limit"])
@pytest.mark.parametrize("value", [1.0, "1", True, object()])
def test_sizes_must_be_int(hostqueue_cls: type, name: str, value: object) -> None:
    with pytest.raises(TypeError) as info:
        hostqueue_cls(**{name: value})
    assert str(info.value) == MSG_NOT_INT.format(name=name, type=type(value).__name__)


def test_maxsize_must_not_be_negative(hostqueue_cls: type) -> None:
    with pytest.raises(ValueError) as info:
        hostqueue_cls(maxsize=-1)
    assert str(info.value) == MSG_NEGATIVE.format(name="maxsize", value=-1)


@pytest.mark.parametrize("name", ["maxsize", "limit"])
def test_sizes_must_fit_a_ssize_t(hostqueue_cls: type, name: str) -> None:
    value = sys.maxsize + 1
    with pytest.raises(ValueError) as info:
        hostqueue_cls(**{name: value})
    assert str(info.value) == MSG_TOO_LARGE.format(name=name, max=sys.maxsize, value=value)
    assert getattr(hostqueue_cls(**{name: sys.maxsize}), name) == sys.maxsize


@pytest.mark.parametrize("limit", [0, -1])
def test_limit_must_be_positive(hostqueue_cls: type, limit: int) -> None:
    with pytest.raises(ValueError) as info:
        hostqueue_cls(limit=limit)
    expected = (
        MSG_NEGATIVE.format(name="limit", value=limit)
        if limit < 0
        else MSG_NOT_POSITIVE.format(name="limit", value=limit)
    )
    assert str(info.value) == expected


@pytest.mark.parametrize("timeout", ["1", True, b"0", [1]])
def test_timeout_must_be_a_number(hostqueue_cls: type, timeout: object) -> None:
    q = hostqueue_cls()
    with pytest.raises(TypeError) as info:
        q.checkout(timeout)
    assert str(info.value) == MSG_NOT_NUMBER.format(name="timeout", type=type(timeout).__name__)
    assert q.in_use == 0  # nothing was handed out


def test_timeout_must_not_be_nan(hostqueue_cls: type) -> None:
    q = hostqueue_cls()
    with pytest.raises(ValueError) as info:
        q.checkout(float("nan"))
    assert str(info.value) == MSG_NAN.format(name="timeout")


def test_huge_and_infinite_timeouts_wait(hostqueue_cls: type) -> None:
    q = hostqueue_cls(maxsize=1, block=True)
    assert q.checkout() is None
    for timeout in (float("inf"), 1e300):
        waiter = start_waiter(q, timeout=timeout)
        q.checkin(None)
        waiter.join(WAIT)
        assert waiter.error is None and waiter.result is None


def test_int_timeout_and_any_truthy_block(hostqueue_cls: type) -> None:
    q = hostqueue_cls(maxsize=1, block=1)
    assert q.block is True
    assert q.checkout(2) is None


# --- the same answers as urllib3's HTTPConnectionPool -----------------------------------------

# urllib3's pool pre-fills its LifoQueue with None placeholders. While every connection that
# goes back is a real one (``_put_conn(conn)``, never ``_put_conn(None)``), a placeholder can
# neither sit above an idle connection nor take a place one would get, so these sequences must
# give urllib3's answers exactly. (After ``_put_conn(None)`` urllib3 may dial beside an idle
# connection or discard one it had room for; HostQueue does neither, on purpose.)

u3_ops = st.lists(
    st.one_of(
        st.just(("get",)),
        st.tuples(st.just("put"), st.integers(0, 10)),
        st.just(("close",)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(maxsize=st.integers(0, 4), block=st.booleans(), ops=u3_ops)
def test_same_answers_as_urllib3_pool(
    hostqueue_cls: type, maxsize: int, block: bool, ops: list[tuple[Any, ...]]
) -> None:
    pool = HTTPConnectionPool("127.0.0.1", 9, maxsize=maxsize, block=block)  # never dials
    q = hostqueue_cls(maxsize=maxsize, block=block)
    held: list[tuple[Any, Any]] = []  # (ours, urllib3's), checked out
    ours_for: dict[int, Any] = {}  # id(urllib3 conn) -> our Conn
    # Keep every urllib3 connection alive: one it discards would be collected, and a later
    # one could get its id() and look reused.
    theirs_seen: list[Any] = []
    for op in ops:
        if op[0] == "get":
            try:
                theirs = pool._get_conn(timeout=0)
            except (EmptyPoolError, ClosedPoolError) as exc:
                with pytest.raises(type(exc)):
                    q.checkout(0)
                continue
            ours = q.checkout(0)
            if ours is None:
                assert id(theirs) not in ours_for, "urllib3 reused, HostQueue said dial"
                ours = Conn(str(len(ours_for)))
                ours_for[id(theirs)] = ours
                theirs_seen.append(theirs)
            else:
                assert ours_for[id(theirs)] is ours
            held.append((ours, theirs))
        elif op[0] == "put" and held:
            ours, theirs = held.pop(op[1] % len(held))
            pool._put_conn(theirs)
            kept = pool.pool is not None and any(c is theirs for c in pool.pool.queue)
            assert q.checkin(ours) is kept
        elif op[0] == "close":
            idle_theirs = [] if pool.pool is None else [c for c in pool.pool.queue if c]
            pool.close()
            assert q.close() == [ours_for[id(c)] for c in idle_theirs]
        assert q.created == pool.num_connections
        if pool.pool is not None:
            assert q.idle == sum(1 for c in pool.pool.queue if c is not None)
    for _ in range(len(held)):
        pool._put_conn(held.pop()[1])
        q.checkin(None)


# --- compiled vs pure vs a model, operation by operation --------------------------------------


class LifoModel:
    """HostQueue's single-threaded meaning, built on urllib3's own LifoQueue.

    The idle stack is a ``queue.LifoQueue(maxsize)``: ``put_nowait`` raising ``Full`` is the
    discard, ``get_nowait`` raising ``Empty`` means a new slot, if the cap allows one.
    """

    def __init__(self, maxsize: int, block: bool, limit: int | None) -> None:
        self.stack: queue.LifoQueue[Any] = queue.LifoQueue(maxsize)
        caps = ([maxsize] if block else []) + ([limit] if limit is not None else [])
        self.cap = min(caps) if caps else None
        self.in_use = 0
        self.closed = False
        self.created = self.reused = self.discarded = 0

    @property
    def idle(self) -> int:
        return self.stack.qsize()

    def checkout(self, timeout: float) -> Any:
        if self.closed:
            raise PoolClosedError(MSG_POOL_CLOSED)
        try:
            conn = self.stack.get_nowait()
        except queue.Empty:
            if self.cap is not None and self.in_use >= self.cap:
                raise PoolTimeoutError(MSG_POOL_EMPTY_NOWAIT.format(limit=self.cap)) from None
            self.in_use += 1
            self.created += 1
            return None
        self.in_use += 1
        self.reused += 1
        return conn

    def checkin(self, conn: Any) -> bool:
        if self.in_use == 0:
            raise ValueError(MSG_CHECKIN_UNMATCHED)
        self.in_use -= 1
        if conn is None or self.closed:
            return False
        try:
            self.stack.put_nowait(conn)
        except queue.Full:
            self.discarded += 1
            return False
        return True

    def remove(self, conn: Any) -> bool:
        for i, c in enumerate(self.stack.queue):
            if c is conn:
                del self.stack.queue[i]
                return True
        return False

    def take_idle(self) -> list[Any]:
        idle = list(self.stack.queue)
        self.stack.queue.clear()
        return idle

    def close(self) -> list[Any]:
        self.closed = True
        return self.take_idle()


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("ok", call())
    except Exception as exc:  # noqa: BLE001 - compared across implementations
        return (type(exc).__name__, str(exc))


class HostQueueMachine(RuleBasedStateMachine):
    """The compiled queue, the pure twin and the model get the same calls; all must agree."""

    def __init__(self) -> None:
        super().__init__()
        self.impls: list[Any] = []
        self.held: list[Conn] = []
        self.made = 0

    @initialize(
        maxsize=st.integers(0, 4),
        block=st.booleans(),
        limit=st.one_of(st.none(), st.integers(1, 4)),
    )
    def setup(self, maxsize: int, block: bool, limit: int | None) -> None:
        from fastpool import _hostqueue_c, _hostqueue_py

        self.impls = [
            _hostqueue_c.HostQueue(maxsize, block, limit),
            _hostqueue_py.HostQueue(maxsize=maxsize, block=block, limit=limit),
            LifoModel(maxsize, block, limit),
        ]

    def all_do(self, name: str, *args: Any) -> Any:
        results = [outcome(lambda impl=impl: getattr(impl, name)(*args)) for impl in self.impls]
        first = results[0]
        for other in results[1:]:
            assert other[0] == first[0]
            if first[0] == "ok" and isinstance(first[1], list):
                assert len(other[1]) == len(first[1])
                assert all(x is y for x, y in zip(first[1], other[1]))
            elif first[0] == "ok":
                assert other[1] is first[1]  # the same connection, None, True or False
            else:
                assert other[1] == first[1]
        return first

    @rule(timeout=st.sampled_from([0, 0.0, -1, -0.5]))
    def checkout(self, timeout: float) -> None:
        kind, conn = self.all_do("checkout", timeout)
        if kind != "ok":
            return
        if conn is None:
            self.made += 1
            conn = Conn(str(self.made))  # dialed: the same object for all three
        self.held.append(conn)

    @precondition(lambda self: self.held)
    @rule(index=st.integers(0, 100), drop=st.booleans())
    def checkin(self, index: int, drop: bool) -> None:
        conn = self.held.pop(index % len(self.held))
        self.all_do("checkin", None if drop else conn)

    @precondition(lambda self: not self.held)
    @rule()
    def checkin_unmatched(self) -> None:
        kind, _ = self.all_do("checkin", Conn("stray"))
        assert kind == "ValueError"

    @rule(pick=st.integers(0, 100))
    def remove(self, pick: int) -> None:
        idle = self.impls[-1].stack.queue
        target = idle[pick % len(idle)] if idle and pick % 3 else Conn("stranger")
        self.all_do("remove", target)

    @rule()
    def take_idle(self) -> None:
        self.all_do("take_idle")

    @rule()
    def close(self) -> None:
        self.all_do("close")

    @invariant()
    def agree(self) -> None:
        if not self.impls:
            return
        compiled, pure, model = self.impls
        assert repr(compiled) == repr(pure)
        for impl in (compiled, pure):
            assert impl.open == impl.idle + impl.in_use
            assert (impl.idle, impl.in_use, impl.closed) == (model.idle, model.in_use, model.closed)
            assert (impl.created, impl.reused, impl.discarded) == (
                model.created,
                model.reused,
                model.discarded,
            )
            assert (impl.waiters, impl.wait_count, impl.wait_time) == (0, 0, 0.0)


@pytest.mark.c_extension
def test_compiled_pure_and_model_agree(request: pytest.FixtureRequest) -> None:
    if request.config.getoption("--no-c-extensions"):
        pytest.skip("--no-c-extensions given")
    run_state_machine_as_test(
        HostQueueMachine,
        settings=settings(max_examples=200, stateful_step_count=40, deadline=None),
    )


# --- a collection (and the finalizers it runs) at a queue's critical moment ---------------------
def test_checkin_from_a_finalizer_while_checkout_makes_its_waiter(hostqueue_cls):
    q = hostqueue_cls(maxsize=2, block=True)
    q.checkout()  # the slot a "dropped response" holds
    q.checkout()  # now at the cap of 2
    pending = [True]
    freed_at: list[float] = []

    def finalizer() -> None:
        if pending:
            pending.pop()
            freed_at.append(time.monotonic())
            q.checkin(None)

    # At the cap: making the waiter collects (unless it came from a free list), and a slot
    # freed by that collection must be taken at once, never waited for. (A collection may
    # also run as a timed-out wait ends: too late for this call, rightly.)
    def checkout() -> object:
        try:
            return q.checkout(timeout=2)
        except PoolTimeoutError:
            return "timed out"

    start = time.monotonic()
    got = _run_with_collections(checkout, finalizer)
    if freed_at and freed_at[0] - start < 1:
        assert got is None and q.in_use == 2 and q.waiters == 0
    else:  # no collection before the wait: it had to wait, and nobody came
        assert got == "timed out"


def test_a_finalizer_checkin_inside_a_critical_part_is_settled():
    # From CPython 3.12 the collector runs at any call boundary, so inside the pure twin's
    # critical parts too, and a finalizer there gives a dropped response's slot back in the
    # same thread. Staged deterministically: the waiters' deque calls checkin from inside
    # checkout's critical part, as such a finalizer would. The non-reentrant lock must not
    # deadlock, and the slot must reach the waiter being queued. (The compiled twin has no
    # lock: its critical parts are single C calls.)
    from collections import deque

    from fastpool._hostqueue_py import HostQueue

    q = HostQueue(maxsize=1, limit=2)
    dropped = q.checkout()  # the slot a garbage-collected response holds
    q.checkout()  # at the cap of 2

    class FinalizerRunsHere(deque):  # type: ignore[type-arg]
        def append(self, waiter: object) -> None:
            assert q.checkin(dropped) is False  # deferred: settled when the part ends
            super().append(waiter)

    q._waiters = FinalizerRunsHere()
    got: list[object] = []
    worker = threading.Thread(target=lambda: got.append(q.checkout(5.0)), daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "deadlock: a finalizer's checkin re-entered the queue's lock"
    assert got == [None]  # handed the finalizer's slot: dial a connection
    assert (q.in_use, q.waiters, q.wait_count) == (2, 0, 1)


def test_an_interrupted_wait_for_the_lock_leaves_the_thread_not_busy():
    # A KeyboardInterrupt while a critical part waits for the lock must not leave this thread
    # marked busy: its later check-ins would be deferred instead of done.
    from fastpool._hostqueue_py import HostQueue

    q = HostQueue(maxsize=1)
    real = q._lock

    class Interrupted:
        def acquire(self, *args: Any) -> bool:
            raise KeyboardInterrupt

    q._lock = Interrupted()  # type: ignore[assignment]
    with pytest.raises(KeyboardInterrupt):
        q.checkout()
    q._lock = real
    slot = q.checkout()
    assert q.checkin(slot or object()) is True  # kept as idle: done, not deferred
    assert (q.in_use, q.idle) == (0, 1)
