"""fastpool.schedule.HostScheduler on a fake clock: per-host cap, politeness delay, global rate,
max in flight, max hosts taking turns, fairness, next_ready, bounded work for many hosts, and
push_first (items and hosts that go before what push() queued, checked against a plain model).

Every test runs on both backends (``scheduler_cls``: the compiled ``_schedule_c`` and the pure
twin ``_schedule_py``). The last part drives the two side by side, a hypothesis state machine and
seeded random runs, with the same calls and the same clock, and asserts the same answers, the
same exceptions and the same number of calls to the clock.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from decimal import Decimal
from typing import Any, Callable

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import fastpool
from fastpool import _schedule, schedule


class ClockError(Exception):
    """What a FakeClock told to fail raises."""


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        self.calls = 0
        self.fail = False  # the next call raises ClockError (once)

    def __call__(self) -> float:
        self.calls += 1
        if self.fail:
            self.fail = False
            raise ClockError("the clock failed")
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def drain(scheduler: Any) -> list[Any]:
    """Pop everything allowed now (bounded by the queue's length)."""
    popped = []
    for _ in range(len(scheduler) + 1):
        item = scheduler.pop()
        if item is None:
            break
        popped.append(item[0])
    return popped


def test_fifo_within_a_host_and_len(scheduler_cls: type) -> None:
    scheduler = scheduler_cls(clock=FakeClock())
    for n in range(3):
        scheduler.push(n, "a", f"item{n}")
    assert len(scheduler) == 3
    assert scheduler.pop() == (0, "item0")
    assert (len(scheduler), scheduler.in_flight) == (2, 1)
    assert drain(scheduler) == [1, 2]
    assert scheduler.pop() is None
    assert scheduler.next_ready() is None  # nothing queued: only a push can change that
    for _ in range(3):
        scheduler.done("a")
    assert scheduler.in_flight == 0


def test_round_robin_across_hosts_not_fifo(scheduler_cls: type) -> None:
    scheduler = scheduler_cls(clock=FakeClock())
    # One big host first, then two small ones: the small ones are not starved.
    for n in range(100):
        scheduler.push(("a", n), "a", None)
    scheduler.push(("b", 0), "b", None)
    scheduler.push(("c", 0), "c", None)
    scheduler.push(("b", 1), "b", None)
    order = drain(scheduler)
    assert order[:6] == [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("b", 1), ("a", 2)]
    assert len(order) == 103


def test_per_host_cap_and_done(scheduler_cls: type) -> None:
    scheduler = scheduler_cls(per_host=2, clock=FakeClock())
    for n in range(5):
        scheduler.push(("a", n), "a", None)
    scheduler.push(("b", 0), "b", None)
    assert drain(scheduler) == [("a", 0), ("b", 0), ("a", 1)]
    # "a" is at its cap: nothing waits on time, only done() can help.
    assert scheduler.next_ready() is None
    scheduler.done("b")
    assert scheduler.pop() is None
    scheduler.done("a")
    assert drain(scheduler) == [("a", 2)]
    scheduler.done("a")
    scheduler.done("a")
    assert drain(scheduler) == [("a", 3), ("a", 4)]


def test_done_without_an_item_in_flight_raises(scheduler_cls: type) -> None:
    scheduler = scheduler_cls(clock=FakeClock())
    with pytest.raises(ValueError, match="without an item"):
        scheduler.done("nowhere")
    scheduler.push(1, "a", None)
    scheduler.pop()
    scheduler.done("a")
    with pytest.raises(ValueError, match="without an item"):
        scheduler.done("a")


def test_delay_between_starts_to_one_host(scheduler_cls: type) -> None:
    clock = FakeClock()
    scheduler = scheduler_cls(delay=2.0, clock=clock)
    for n in range(3):
        scheduler.push(("a", n), "a", None)
    scheduler.push(("b", 0), "b", None)
    assert drain(scheduler) == [("a", 0), ("b", 0)]
    assert scheduler.next_ready() == 102.0  # a's delay ends 2 s after its start
    clock.advance(1.999)
    assert scheduler.pop() is None
    # Finishing does not shorten the delay: it runs from the last start.
    scheduler.done("a")
    assert scheduler.pop() is None
    clock.advance(0.001)
    assert scheduler.next_ready() == 102.0
    assert drain(scheduler) == [("a", 1)]
    assert scheduler.next_ready() == 104.0
    clock.advance(5)
    assert drain(scheduler) == [("a", 2)]


def test_delay_holds_for_a_host_pushed_again(scheduler_cls: type) -> None:
    clock = FakeClock()
    scheduler = scheduler_cls(delay=1.0, clock=clock)
    scheduler.push(1, "a", None)
    assert drain(scheduler) == [1]
    scheduler.done("a")  # nothing queued or in flight, but its delay still runs
    scheduler.push(2, "a", None)
    assert scheduler.pop() is None
    assert scheduler.next_ready() == 101.0
    clock.advance(1)
    assert drain(scheduler) == [2]


def test_global_rate_is_a_token_bucket(scheduler_cls: type) -> None:
    clock = FakeClock()
    scheduler = scheduler_cls(rate=4.0, burst=2, clock=clock)
    for n in range(10):
        scheduler.push(n, f"host{n}", None)
    assert drain(scheduler) == [0, 1]  # the burst
    assert scheduler.next_ready() == pytest.approx(100.25)
    clock.advance(0.25)
    assert drain(scheduler) == [2]
    clock.advance(10)  # tokens never exceed the burst
    assert drain(scheduler) == [3, 4]
    started = 5
    for _ in range(20):  # bounded: 4 per second over the rest
        clock.advance(0.25)
        started += len(drain(scheduler))
    assert started == 10


def test_rate_and_delay_together(scheduler_cls: type) -> None:
    clock = FakeClock()
    scheduler = scheduler_cls(rate=1.0, delay=3.0, clock=clock)
    for n in range(2):
        scheduler.push(n, "a", None)
    assert drain(scheduler) == [0]
    clock.advance(1)  # the rate allows one more, a's delay does not
    assert scheduler.pop() is None
    assert scheduler.next_ready() == 103.0
    clock.advance(2)
    assert drain(scheduler) == [1]


def test_max_in_flight_is_backpressure(scheduler_cls: type) -> None:
    scheduler = scheduler_cls(max_in_flight=2, clock=FakeClock())
    for n in range(4):
        scheduler.push(n, f"h{n}", None)
    assert drain(scheduler) == [0, 1]
    assert scheduler.next_ready() is None
    scheduler.done("h0")
    assert drain(scheduler) == [2]


def test_max_hosts_bounds_the_hosts_taking_turns(scheduler_cls: type) -> None:
    scheduler = scheduler_cls(max_hosts=2, clock=FakeClock())
    for host in "abc":
        for n in range(2):
            scheduler.push((host, n), host, None)
    assert drain(scheduler) == [("a", 0), ("b", 0), ("a", 1), ("b", 1)]
    # "a" has nothing queued but one in flight: it still holds its turn.
    scheduler.done("a")
    assert drain(scheduler) == []
    scheduler.done("a")  # now "a" leaves, "c" gets a turn
    assert drain(scheduler) == [("c", 0), ("c", 1)]


def test_next_ready_is_now_when_ready(scheduler_cls: type) -> None:
    clock = FakeClock()
    scheduler = scheduler_cls(clock=clock)
    scheduler.push(1, "a", None)
    assert scheduler.next_ready() == clock.now


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"per_host": 0}, ValueError),
        ({"per_host": 1.5}, TypeError),
        ({"per_host": True}, TypeError),
        ({"delay": -1}, ValueError),
        ({"delay": math.nan}, ValueError),
        ({"delay": math.inf}, ValueError),
        ({"delay": "1"}, TypeError),
        ({"rate": 0}, ValueError),
        ({"rate": -2.0}, ValueError),
        ({"burst": 0}, ValueError),
        ({"max_in_flight": 0}, ValueError),
        ({"max_hosts": 0}, ValueError),
    ],
)
def test_arguments_are_checked(
    scheduler_cls: type, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        scheduler_cls(**kwargs)


def test_many_hosts_bounded_work(scheduler_cls: type) -> None:
    # 100k items over 10k hosts, per-host cap and delay: every pop/done does a bounded amount
    # of work (counted as clock reads and heap/deque sizes, not timed).
    clock = FakeClock()
    scheduler = scheduler_cls(per_host=2, delay=1.0, clock=clock)
    hosts = 10_000
    for n in range(100_000):
        scheduler.push(n, n % hosts, None)
    assert len(scheduler) == 100_000
    seen = 0
    rounds = 0
    calls_before = clock.calls
    while len(scheduler) and rounds < 50:  # each round: one start per host, then time moves
        rounds += 1
        started = []
        for _ in range(hosts + 1):
            item = scheduler.pop()
            if item is None:
                break
            started.append(item[0] % hosts)
        assert len(started) == hosts  # every host once per round: fair
        assert len(set(started)) == hosts
        for host in started:
            scheduler.done(host)
        seen += len(started)
        assert scheduler.pop() is None  # all wait for their delay
        if len(scheduler):
            assert scheduler.next_ready() == clock.now + 1.0
        clock.advance(1.0)
    assert (seen, rounds, len(scheduler), scheduler.in_flight) == (100_000, 10, 0, 0)
    # O(1) clock reads per operation: pop and done read it at most once each.
    assert clock.calls - calls_before <= 3 * (100_000 + 10 * hosts) + 100


# --- the backends -------------------------------------------------------------------------------


def test_facade_matches_backend() -> None:
    expected = (
        "fastpool._schedule_c" if fastpool.implementation() == "cython" else "fastpool._schedule_py"
    )
    assert _schedule.HostScheduler.__module__ == expected
    # the public module re-exports the facade's class (multi.py and the CLI import it there)
    assert schedule.HostScheduler is _schedule.HostScheduler
    assert schedule.__all__ == ("HostScheduler",)


def test_defaults_and_attributes(scheduler_cls: type) -> None:
    limits = ("per_host", "delay", "rate", "burst", "max_in_flight", "max_hosts")
    clock = FakeClock()
    scheduler = scheduler_cls(clock=clock)
    assert type(scheduler).__name__ == "HostScheduler"
    assert [getattr(scheduler, name) for name in limits] == [None, 0.0, None, 1, None, None]
    assert scheduler.clock is clock
    assert repr(scheduler) == (
        "<HostScheduler queued=0 in_flight=0 ready_hosts=0 timed_hosts=0 waiting_hosts=0>"
    )
    scheduler = scheduler_cls(per_host=2, delay=1, rate=math.inf, burst=3, max_hosts=4)
    assert [getattr(scheduler, name) for name in limits] == [2, 1.0, None, 3, None, 4]
    assert type(scheduler.delay) is float  # (the twin stores float(delay))
    assert scheduler.clock is time.monotonic


def test_clock_calls_per_operation(scheduler_cls: type) -> None:
    """Which operations read the clock (the compiled core must read it exactly as often)."""
    clock = FakeClock()
    scheduler = scheduler_cls(per_host=1, clock=clock)
    assert clock.calls == 1  # the token bucket's start
    scheduler.push(1, "a", None)
    scheduler.push(2, "a", None)
    assert clock.calls == 1  # no delay: no clock read per push
    assert scheduler.pop() == (1, None)
    assert clock.calls == 2  # each pop reads it once
    assert scheduler.next_ready() is None  # "a" is at its cap
    assert clock.calls == 2
    scheduler.done("a")  # "a" was at its cap: placed again at the time now
    assert clock.calls == 3
    assert scheduler.next_ready() == 100.0
    assert clock.calls == 4
    scheduler = scheduler_cls(delay=1.0, rate=2.0, clock=clock)
    calls = clock.calls
    scheduler.push(1, "a", None)  # with a delay: the time decides where "a" goes
    assert scheduler.pop() == (1, None)
    assert clock.calls - calls == 2
    scheduler.done("a")  # nothing left: "a" retires, which reads the clock for its delay
    assert clock.calls - calls == 3
    scheduler.push(2, "a", None)
    assert scheduler.next_ready() == 101.0  # "a"'s delay, and the rate's second clock read
    assert clock.calls - calls == 5


def test_limits_set_later(scheduler_cls: type) -> None:
    """The limits are plain attributes on the twin: both backends take a new value at once."""
    clock = FakeClock()
    scheduler = scheduler_cls(clock=clock)
    for n in range(6):
        scheduler.push(n, "a" if n < 4 else "b", None)
    scheduler.per_host = 1
    scheduler.delay = 2.0
    assert (scheduler.per_host, scheduler.delay) == (1, 2.0)
    assert drain(scheduler) == [0, 4]
    scheduler.done("a")
    assert scheduler.next_ready() == 102.0  # a's delay, from its last start
    clock.advance(2)
    assert drain(scheduler) == [1]
    scheduler.per_host = None
    scheduler.delay = 0.0
    scheduler.max_in_flight = 2
    scheduler.done("a")  # "a" was at its old cap: now it has none
    assert drain(scheduler) == [2]
    assert scheduler.next_ready() is None  # 2 in flight: only done() can help
    scheduler.max_in_flight = None
    scheduler.rate = 1.0
    scheduler.burst = 2
    assert (scheduler.rate, scheduler.burst, scheduler.max_in_flight) == (1.0, 2, None)
    scheduler.done("b")
    assert drain(scheduler) == [3, 5]  # the bucket filled up since the start: the burst
    scheduler.push(6, "c", None)
    assert scheduler.pop() is None
    assert scheduler.next_ready() == 103.0
    scheduler.clock = lambda: 103.5
    assert drain(scheduler) == [6]


def test_huge_limits_are_no_cap(scheduler_cls: type) -> None:
    # The compiled core compares counts in C: a cap past any C count must still be accepted.
    scheduler = scheduler_cls(per_host=10**30, max_in_flight=2**63, max_hosts=10**20)
    for n in range(5):
        scheduler.push(n, n % 2, None)
    assert drain(scheduler) == [0, 1, 2, 3, 4]
    assert scheduler.per_host == 10**30


# --- push_first: a hop that goes before what push() queued ---------------------------------------


def test_push_first_new_host_goes_before_the_round_robin(scheduler_cls: type) -> None:
    scheduler = scheduler_cls(clock=FakeClock())
    for host in "ab":
        scheduler.push((host, 0), host, None)
    scheduler.push_first(("c", "first"), "c", None)
    assert drain(scheduler) == [("c", "first"), ("a", 0), ("b", 0)]


def test_push_first_moves_a_ready_host_ahead(scheduler_cls: type) -> None:
    scheduler = scheduler_cls(clock=FakeClock())
    for host in "abcd":
        for n in range(2):
            scheduler.push((host, n), host, None)
    assert scheduler.pop() == (("a", 0), None)  # the round robin is under way: b, c, d, a
    scheduler.push_first(("c", "first"), "c", None)  # c waits in the middle of the round robin
    assert drain(scheduler) == [
        ("c", "first"),
        # c left the round robin: it went back at its back, not where it was
        ("b", 0), ("d", 0), ("a", 1), ("c", 0), ("b", 1), ("d", 1), ("c", 1),
    ]  # fmt: skip


def test_push_first_fifo_within_a_host(scheduler_cls: type) -> None:
    scheduler = scheduler_cls(clock=FakeClock())
    scheduler.push(0, "a", None)
    scheduler.push_first("f0", "a", None)
    scheduler.push(1, "a", None)
    scheduler.push_first("f1", "a", None)
    assert scheduler.pop() == ("f0", None)
    scheduler.push_first("f2", "a", None)  # behind f1, pushed first earlier and not popped yet
    scheduler.push(2, "a", None)
    assert drain(scheduler) == ["f1", "f2", 0, 1, 2]


def test_push_first_fifo_across_hosts(scheduler_cls: type) -> None:
    scheduler = scheduler_cls(clock=FakeClock())
    for host in "ab":
        scheduler.push((host, 0), host, None)
    scheduler.push_first(("c", "f0"), "c", None)  # a new host
    scheduler.push_first(("b", "f0"), "b", None)  # a host ready in the round robin
    scheduler.push_first(("d", "f0"), "d", None)
    scheduler.push_first(("c", "f1"), "c", None)  # c keeps its place among them
    assert drain(scheduler) == [
        ("c", "f0"), ("b", "f0"), ("d", "f0"),
        ("c", "f1"),  # a turn is one item: c's second waited behind b's and d's
        ("a", 0), ("b", 0),
    ]  # fmt: skip


def test_push_first_host_goes_back_to_the_round_robin_afterwards(scheduler_cls: type) -> None:
    # per_host (not reached) sends every pop through the placing step, not the inline one.
    for per_host in (None, 5):
        scheduler = scheduler_cls(per_host=per_host, clock=FakeClock())
        for host in "abc":
            for n in range(2):
                scheduler.push((host, n), host, None)
        scheduler.push_first(("a", "f0"), "a", None)
        scheduler.push_first(("a", "f1"), "a", None)
        assert drain(scheduler) == [
            ("a", "f0"), ("a", "f1"),  # the only host pushed first: its turns follow
            ("b", 0), ("c", 0), ("a", 0), ("b", 1), ("c", 1), ("a", 1),
        ], per_host  # fmt: skip


def test_push_first_full_host_freed_goes_first(scheduler_cls: type) -> None:
    scheduler = scheduler_cls(per_host=1, clock=FakeClock())
    for host in "abc":
        for n in range(2):
            scheduler.push((host, n), host, None)
    assert drain(scheduler) == [("a", 0), ("b", 0), ("c", 0)]  # each at its cap
    scheduler.push_first(("c", "first"), "c", None)
    assert scheduler.pop() is None  # still at its cap: not handed out
    assert scheduler.next_ready() is None
    scheduler.done("a")
    scheduler.done("c")  # freed after a, but holding an item pushed first: goes first
    assert drain(scheduler) == [("c", "first"), ("a", 1)]
    scheduler.done("b")
    scheduler.done("c")  # c went back to the round robin, behind b
    assert drain(scheduler) == [("b", 1), ("c", 1)]


def test_push_first_timed_host_released_goes_first(scheduler_cls: type) -> None:
    clock = FakeClock()
    scheduler = scheduler_cls(delay=1.0, clock=clock)
    for host in "abc":
        for n in range(2):
            scheduler.push((host, n), host, None)
    assert drain(scheduler) == [("a", 0), ("b", 0), ("c", 0)]
    scheduler.push_first(("c", "first"), "c", None)  # c waits out its delay: not before
    assert scheduler.pop() is None
    assert scheduler.next_ready() == 101.0
    clock.advance(1)
    # all three delays end together: c, released last, goes first
    assert drain(scheduler) == [("c", "first"), ("a", 1), ("b", 1)]
    assert scheduler.next_ready() == 102.0  # c's delay again, from its last start
    clock.advance(1)
    assert drain(scheduler) == [("c", 1)]


def test_push_first_host_waiting_for_a_turn_is_let_in_first(scheduler_cls: type) -> None:
    scheduler = scheduler_cls(max_hosts=1, clock=FakeClock())
    scheduler.push(("a", 0), "a", None)
    assert drain(scheduler) == [("a", 0)]  # a takes the only turn while in flight
    for host in "bcd":
        scheduler.push((host, 0), host, None)
    scheduler.push_first(("c", "f0"), "c", None)  # c moves ahead of b and d
    scheduler.push_first(("e", "f0"), "e", None)  # a new host: behind c, ahead of b and d
    scheduler.push_first(("c", "f1"), "c", None)
    assert repr(scheduler) == (
        "<HostScheduler queued=6 in_flight=1 ready_hosts=0 timed_hosts=0 waiting_hosts=4>"
    )
    assert scheduler.pop() is None
    order = []
    for host in ("a", "c", "e", "b"):  # each host leaves when done: the next gets the turn
        for _ in range(scheduler.in_flight):
            scheduler.done(host)
        popped = drain(scheduler)
        order.append(popped)
    assert order == [[("c", "f0"), ("c", "f1"), ("c", 0)], [("e", "f0")], [("b", 0)], [("d", 0)]]


def test_push_first_counts(scheduler_cls: type) -> None:
    clock = FakeClock()
    scheduler = scheduler_cls(per_host=1, clock=clock)
    scheduler.push(("a", 0), "a", None)
    scheduler.push(("a", 1), "a", None)
    assert scheduler.pop() == (("a", 0), None)  # a is at its cap
    scheduler.push_first(("b", "first"), "b", None)
    assert (len(scheduler), scheduler.in_flight) == (2, 1)
    assert repr(scheduler) == (
        "<HostScheduler queued=2 in_flight=1 ready_hosts=1 timed_hosts=0 waiting_hosts=0>"
    )
    assert scheduler.next_ready() == clock.now  # b may start now
    scheduler.push(("c", 0), "c", None)
    assert repr(scheduler).count("ready_hosts=2") == 1  # one host in each group
    assert scheduler.pop() == (("b", "first"), None)
    assert (len(scheduler), scheduler.in_flight) == (2, 2)
    assert drain(scheduler) == [("c", 0)]
    assert scheduler.next_ready() is None  # a at its cap: only done() can help
    scheduler.done("a")
    assert drain(scheduler) == [("a", 1)]
    for host in "abc":
        scheduler.done(host)
    assert (len(scheduler), scheduler.in_flight) == (0, 0)
    assert repr(scheduler) == (
        "<HostScheduler queued=0 in_flight=0 ready_hosts=0 timed_hosts=0 waiting_hosts=0>"
    )


def test_push_first_obeys_the_rate_and_max_in_flight(scheduler_cls: type) -> None:
    clock = FakeClock()
    scheduler = scheduler_cls(rate=1.0, clock=clock)
    scheduler.push(0, "a", None)
    assert drain(scheduler) == [0]
    scheduler.push_first("first", "b", None)
    assert scheduler.pop() is None
    assert scheduler.next_ready() == 101.0
    clock.advance(1)
    assert drain(scheduler) == ["first"]
    scheduler = scheduler_cls(max_in_flight=1, clock=clock)
    scheduler.push(0, "a", None)
    assert drain(scheduler) == [0]
    scheduler.push_first("first", "b", None)
    assert scheduler.pop() is None
    assert scheduler.next_ready() is None  # only done() can help
    scheduler.done("a")
    assert drain(scheduler) == ["first"]


def test_push_first_reads_the_clock_as_push_does(scheduler_cls: type) -> None:
    clock = FakeClock()
    scheduler = scheduler_cls(clock=clock)
    calls = clock.calls
    scheduler.push_first(1, "a", None)
    assert clock.calls == calls  # no delay: no clock read
    scheduler = scheduler_cls(delay=1.0, clock=clock)
    calls = clock.calls
    scheduler.push_first(1, "a", None)  # a new host with a delay: the time decides where
    scheduler.push_first(2, "a", None)  # already placed: no read
    scheduler.push(3, "b", None)
    scheduler.push_first(4, "b", None)  # moved over: no read
    assert clock.calls - calls == 2


def test_push_first_checks_its_arguments_as_push_does(scheduler_cls: type) -> None:
    scheduler = scheduler_cls(clock=FakeClock())
    empty = repr(scheduler)
    with pytest.raises(TypeError, match="unhashable"):
        scheduler.push_first(1, [], None)
    with pytest.raises(TypeError):
        scheduler.push_first(1, "a")
    assert (len(scheduler), repr(scheduler)) == (0, empty)


class OrderModel:
    """What the scheduler promises without time (no delay, no rate), in plain lists: which item
    each pop() hands out under per_host, max_in_flight and max_hosts, with push_first."""

    def __init__(
        self, per_host: int | None, max_in_flight: int | None, max_hosts: int | None
    ) -> None:
        self.per_host, self.max_in_flight, self.max_hosts = per_host, max_in_flight, max_hosts
        self.firsts: dict[Any, list[Any]] = {}  # host: its keys pushed first, not popped yet
        self.others: dict[Any, list[Any]] = {}  # host: its keys pushed
        self.in_flight: dict[Any, int] = {}
        self.active: set[Any] = set()  # the hosts taking turns
        self.full: set[Any] = set()
        self.first: list[Any] = []  # ready hosts holding items pushed first
        self.ready: list[Any] = []  # the round robin
        self.admit_first: list[Any] = []  # waiting hosts holding items pushed first
        self.admit: list[Any] = []

    def queued(self, host: Any) -> int:
        return len(self.firsts.get(host, ())) + len(self.others.get(host, ()))

    def place(self, host: Any) -> None:
        if self.per_host is not None and self.in_flight.get(host, 0) >= self.per_host:
            self.full.add(host)
        else:
            (self.first if self.firsts[host] else self.ready).append(host)

    def push(self, key: Any, host: Any, first: bool) -> None:
        new = not self.queued(host)
        firsts = self.firsts.setdefault(host, [])
        (firsts if first else self.others.setdefault(host, [])).append(key)
        self.others.setdefault(host, [])
        if new:
            if host in self.active or self.max_hosts is None or len(self.active) < self.max_hosts:
                self.active.add(host)
                self.place(host)
            else:
                (self.admit_first if firsts else self.admit).append(host)
        elif first and len(firsts) == 1:
            for before, after in ((self.ready, self.first), (self.admit, self.admit_first)):
                if host in before:
                    before.remove(host)
                    after.append(host)

    def pop(self) -> Any:
        if self.max_in_flight is not None and sum(self.in_flight.values()) >= self.max_in_flight:
            return None
        if self.first:
            host = self.first.pop(0)
            key = self.firsts[host].pop(0)
        elif self.ready:
            host = self.ready.pop(0)
            key = self.others[host].pop(0)
        else:
            return None
        self.in_flight[host] = self.in_flight.get(host, 0) + 1
        if self.queued(host):
            self.place(host)
        return key

    def done(self, host: Any) -> None:
        self.in_flight[host] -= 1
        if host in self.full:
            self.full.remove(host)
            self.place(host)
        elif not self.queued(host) and not self.in_flight[host]:
            self.active.discard(host)
            while (self.admit_first or self.admit) and (
                self.max_hosts is None or len(self.active) < self.max_hosts
            ):
                waiting = (self.admit_first or self.admit).pop(0)
                self.active.add(waiting)
                self.place(waiting)

    def counts(self) -> tuple[int, int]:
        """(ready_hosts, waiting_hosts), as repr() tells them."""
        return len(self.first) + len(self.ready), len(self.admit_first) + len(self.admit)


@pytest.mark.parametrize("seed", range(12))
def test_push_first_order_matches_the_model(scheduler_cls: type, seed: int) -> None:
    """Random runs (long ring buffers, hosts moved from anywhere in them) against OrderModel."""
    rng = random.Random(seed)
    limits = {
        "per_host": rng.choice([None, 1, 2]),
        "max_in_flight": rng.choice([None, 3, 12]),
        "max_hosts": rng.choice([None, 2, 6]),
    }
    scheduler = scheduler_cls(clock=FakeClock(), **limits)
    model = OrderModel(**limits)
    hosts = list(range(rng.choice([3, 12, 40])))
    started: list[Any] = []
    host_of: dict[int, Any] = {}
    for key in range(2500):
        roll = rng.random()
        if roll < 0.45:
            host = rng.choice(hosts)
            first = roll < 0.12
            host_of[key] = host
            (scheduler.push_first if first else scheduler.push)(key, host, None)
            model.push(key, host, first)
        elif roll < 0.75:
            popped = scheduler.pop()
            expected = model.pop()
            assert (popped and popped[0]) == expected, (key, limits)
            if expected is not None:
                started.append(host_of[expected])
        elif started:
            host = started.pop(rng.randrange(len(started)))
            scheduler.done(host)
            model.done(host)
        ready, waiting = model.counts()
        assert repr(scheduler) == (
            f"<HostScheduler queued={len(scheduler)} in_flight={len(started)} "
            f"ready_hosts={ready} timed_hosts=0 waiting_hosts={waiting}>"
        )
        assert len(scheduler) == sum(map(model.queued, hosts))


# --- the compiled core against its twin ------------------------------------------------------


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("ok", call())
    except Exception as exc:  # noqa: BLE001 - compared across the backends
        return (type(exc).__name__, str(exc))


#: Constructor arguments, good and bad: both backends raise the same or accept the same.
ARGUMENTS: list[dict[str, Any]] = [
    {},
    {"per_host": 0},
    {"per_host": -1},
    {"per_host": 1.5},
    {"per_host": True},
    {"per_host": "2"},
    {"per_host": 10**30},
    {"delay": -1},
    {"delay": -0.0},
    {"delay": math.nan},
    {"delay": math.inf},
    {"delay": "1"},
    {"delay": None},
    {"delay": False},
    {"delay": 10**400},
    {"delay": 3},
    {"rate": 0},
    {"rate": -2.0},
    {"rate": math.nan},
    {"rate": math.inf},
    {"rate": True},
    {"rate": 10**400},
    {"rate": 5},
    {"burst": 0},
    {"burst": None},
    {"burst": 2.0},
    {"burst": 10**400},
    {"max_in_flight": 0},
    {"max_in_flight": 2.0},
    {"max_hosts": 0},
    {"max_hosts": False},
    {"per_host": 0, "delay": -1, "rate": 0},  # the first bad one is reported
    {"max_in_flight": 0, "burst": 10**400},
    {"clock": None},
    {"clock": 5},
]


@pytest.mark.c_extension
@pytest.mark.parametrize("kwargs", ARGUMENTS)
def test_twins_check_arguments_alike(
    request: pytest.FixtureRequest, kwargs: dict[str, Any]
) -> None:
    if request.config.getoption("--no-c-extensions"):
        pytest.skip("--no-c-extensions given")
    from fastpool import _schedule_c, _schedule_py

    results = []
    for module in (_schedule_c, _schedule_py):
        clock = kwargs.get("clock", FakeClock())
        made = outcome(lambda m=module, c=clock: m.HostScheduler(**{**kwargs, "clock": c}))
        if made[0] == "ok":
            scheduler = made[1]
            made = ("ok", repr(scheduler), scheduler.per_host, scheduler.delay, scheduler.rate)
            made += (scheduler.burst, scheduler.max_in_flight, scheduler.max_hosts)
            made += (type(scheduler.delay), type(scheduler.rate))
        results.append((made, getattr(clock, "calls", None)))
    assert results[0] == results[1]


@pytest.mark.c_extension
def test_twins_signature_errors_alike(request: pytest.FixtureRequest) -> None:
    """Wrong calls raise the same exception; the message is the interpreter's own, which words
    a Python function's and a compiled one's differently (and changes between versions)."""
    if request.config.getoption("--no-c-extensions"):
        pytest.skip("--no-c-extensions given")
    from fastpool import _schedule_c, _schedule_py

    for cls in (_schedule_c.HostScheduler, _schedule_py.HostScheduler):
        with pytest.raises(TypeError):
            cls(1)
        with pytest.raises(TypeError):
            cls(size=1)
        scheduler = cls(clock=FakeClock())
        with pytest.raises(TypeError, match="unhashable"):
            scheduler.push(1, [], None)
        with pytest.raises(TypeError, match="unhashable"):
            scheduler.push_first(1, [], None)
        with pytest.raises(TypeError, match="unhashable"):
            scheduler.done([])
        with pytest.raises(TypeError):
            scheduler.push(1, "a")
        with pytest.raises(TypeError):
            scheduler.push_first(1, "a")
        assert (len(scheduler), repr(scheduler)) == (0, repr(cls(clock=FakeClock())))


HOSTS = ("a", "b", "c", "d", 7, ("e", 443))
#: (attribute, value) pairs a caller may assign later
SETTINGS = [
    ("per_host", None),
    ("per_host", 1),
    ("per_host", 3),
    ("delay", 0.0),
    ("delay", 0.5),
    ("delay", 2.0),
    ("rate", None),
    ("rate", 2.0),
    ("rate", 0.5),
    ("burst", 1),
    ("burst", 3),
    ("max_in_flight", None),
    ("max_in_flight", 2),
    ("max_hosts", None),
    ("max_hosts", 1),
    ("max_hosts", 2),
]
STEPS = [0, 0.001, 0.25, 0.5, 1, 1.5, 2, 2.5, 3, 10]


class Twins:
    """The compiled scheduler and its twin, each on its own FakeClock, the two clocks moved
    together: every call goes to both and must give the same answer, raise the same exception
    and read the clock as many times."""

    def __init__(self, start: float, **kwargs: Any) -> None:
        from fastpool import _schedule_c, _schedule_py

        self.clocks = [FakeClock(start), FakeClock(start)]
        self.schedulers = [
            _schedule_c.HostScheduler(clock=self.clocks[0], **kwargs),
            _schedule_py.HostScheduler(clock=self.clocks[1], **kwargs),
        ]
        self.keys = itertools.count()
        self.host_of: dict[int, Any] = {}
        self.started: list[Any] = []  # the host of each item in flight
        self.check()

    def both(self, call: Callable[[Any], Any]) -> tuple[str, Any]:
        compiled, pure = [outcome(lambda s=s: call(s)) for s in self.schedulers]
        assert compiled[0] == pure[0], (compiled, pure)
        if compiled[0] == "ok" and isinstance(compiled[1], tuple):  # pop's (key, item)
            assert len(compiled[1]) == len(pure[1]) == 2
            assert all(x is y for x, y in zip(compiled[1], pure[1])), (compiled, pure)
        else:  # None, a time (the same float, or the clock's own int), or an error's message
            assert (type(compiled[1]), repr(compiled[1])) == (type(pure[1]), repr(pure[1]))
        self.check()
        return compiled

    def check(self) -> None:
        compiled, pure = self.schedulers
        assert repr(compiled) == repr(pure)
        assert (len(compiled), compiled.in_flight) == (len(pure), pure.in_flight)
        assert self.clocks[0].calls == self.clocks[1].calls
        assert self.clocks[0].fail == self.clocks[1].fail
        for name in ("per_host", "delay", "rate", "burst", "max_in_flight", "max_hosts"):
            assert getattr(compiled, name) == getattr(pure, name), name

    def push(self, host: Any, first: bool = False) -> None:
        key = next(self.keys)
        self.host_of[key] = host
        item = object()  # handed back as given: the same object from both
        if first:
            self.both(lambda s: s.push_first(key, host, item))
        else:
            self.both(lambda s: s.push(key, host, item))

    def pop(self) -> None:
        kind, popped = self.both(lambda s: s.pop())
        if kind == "ok" and popped is not None:
            self.started.append(self.host_of[popped[0]])

    def done(self, index: int) -> None:
        host = self.started.pop(index % len(self.started))
        kind, _ = self.both(lambda s: s.done(host))
        if kind != "ok":  # the clock failed after the host's counts dropped (both alike)
            assert kind == "ClockError"

    def done_unmatched(self, host: Any) -> None:
        if host in self.started:
            return
        kind, message = self.both(lambda s: s.done(host))
        assert (kind, message) == (
            "ValueError",
            f"done({host!r}) without an item of that host in flight",
        )

    def next_ready(self) -> None:
        self.both(lambda s: s.next_ready())

    def advance(self, seconds: float) -> None:
        for clock in self.clocks:
            clock.advance(seconds)

    def fail_clock(self) -> None:
        for clock in self.clocks:
            clock.fail = True

    def set(self, name: str, value: Any) -> None:
        self.both(lambda s: setattr(s, name, value))


class SchedulerTwinsMachine(RuleBasedStateMachine):
    """Hypothesis picks the limits and the calls; Twins asserts the backends agree."""

    twins: Twins

    @initialize(
        per_host=st.sampled_from([None, 1, 2, 3]),
        delay=st.sampled_from([0.0, 0.5, 1.0, 2.5]),
        rate=st.sampled_from([None, 0.5, 1.0, 4.0]),
        burst=st.integers(1, 3),
        max_in_flight=st.sampled_from([None, 1, 2, 4]),
        max_hosts=st.sampled_from([None, 1, 2, 3]),
        start=st.sampled_from([0, 7, 100.0, 1e9 + 0.1]),
    )
    def setup(self, start: float, **kwargs: Any) -> None:
        self.twins = Twins(start, **kwargs)

    @rule(host=st.sampled_from(HOSTS), count=st.integers(1, 3))
    def push(self, host: Any, count: int) -> None:
        for _ in range(count):
            self.twins.push(host)

    @rule(host=st.sampled_from(HOSTS), count=st.integers(1, 2))
    def push_first(self, host: Any, count: int) -> None:
        for _ in range(count):
            self.twins.push(host, first=True)

    @rule(count=st.integers(1, 3))
    def pop(self, count: int) -> None:
        for _ in range(count):
            self.twins.pop()

    @precondition(lambda self: self.twins.started)
    @rule(index=st.integers(0, 100))
    def done(self, index: int) -> None:
        self.twins.done(index)

    @rule(host=st.sampled_from((*HOSTS, "never")))
    def done_unmatched(self, host: Any) -> None:
        self.twins.done_unmatched(host)

    @rule()
    def next_ready(self) -> None:
        self.twins.next_ready()

    @rule(seconds=st.sampled_from(STEPS))
    def advance(self, seconds: float) -> None:
        self.twins.advance(seconds)

    @rule()
    def fail_clock(self) -> None:
        self.twins.fail_clock()

    @rule(setting=st.sampled_from(SETTINGS))
    def set_limit(self, setting: tuple[str, Any]) -> None:
        self.twins.set(*setting)

    @invariant()
    def agree(self) -> None:
        self.twins.check()


@pytest.mark.c_extension
def test_twins_agree_state_machine(request: pytest.FixtureRequest) -> None:
    if request.config.getoption("--no-c-extensions"):
        pytest.skip("--no-c-extensions given")
    run_state_machine_as_test(
        SchedulerTwinsMachine,
        settings=settings(max_examples=300, stateful_step_count=60, deadline=None),
    )


@pytest.mark.c_extension
@pytest.mark.parametrize("seed", range(8))
def test_twins_agree_seeded_runs(request: pytest.FixtureRequest, seed: int) -> None:
    """Longer runs than the state machine's, over 40 hosts: deep heaps, long rings."""
    if request.config.getoption("--no-c-extensions"):
        pytest.skip("--no-c-extensions given")
    rng = random.Random(seed)
    twins = Twins(
        rng.choice([0, 100.0]),
        per_host=rng.choice([None, 1, 2]),
        delay=rng.choice([0.0, 0.3, 1.0]),
        rate=rng.choice([None, None, 5.0, 50.0]),
        burst=rng.randint(1, 4),
        max_in_flight=rng.choice([None, 8, 30]),
        max_hosts=rng.choice([None, None, 5, 20]),
    )
    hosts = [f"host{n}" for n in range(40)]
    for _ in range(3000):
        roll = rng.random()
        if roll < 0.3:
            # one push in six a push_first (a redirect's next hop, a retry)
            twins.push(rng.choice(hosts[: rng.choice([3, 40])]), first=roll < 0.05)
        elif roll < 0.6:
            twins.pop()
        elif roll < 0.8:
            if twins.started:
                twins.done(rng.randrange(len(twins.started)))
        elif roll < 0.9:
            twins.advance(rng.choice([0.01, 0.05, 0.1, 0.3, 1]))
        elif roll < 0.97:
            twins.next_ready()
        elif roll < 0.99:
            twins.set(*rng.choice(SETTINGS))
        else:
            twins.fail_clock()
    # Then start and end what is left, alike on both (bounded: a host whose placing a failed
    # clock cut short stays queued on both until something else moves it).
    for _ in range(2_000):
        if not len(twins.schedulers[1]) and not twins.started:
            break
        twins.pop()
        if twins.started:
            twins.done(0)
        twins.advance(0.5)


@pytest.mark.parametrize(
    ("name", "value", "error", "message"),
    [
        ("per_host", 0, ValueError, "per_host must be >= 1, got 0"),
        ("per_host", 2.0, TypeError, "per_host must be an int or None, got float"),
        ("delay", None, ValueError, "delay must be a finite number >= 0, got None"),
        ("delay", -1, ValueError, "delay must be >= 0, got -1"),
        ("delay", math.inf, ValueError, "delay must be a finite number >= 0, got inf"),
        ("rate", 0, ValueError, "rate must be > 0, got 0"),
        ("burst", None, TypeError, "burst must be an int >= 1, got None"),
        ("burst", 10**400, OverflowError, "int too large to convert to float"),
        ("max_in_flight", True, TypeError, "max_in_flight must be an int or None, got bool"),
        ("max_hosts", math.nan, TypeError, "max_hosts must be an int or None, got float"),
    ],
)
def test_a_limit_set_later_is_checked_as_the_constructor_checks_it(
    scheduler_cls: type, name: str, value: Any, error: type, message: str
) -> None:
    with pytest.raises(error, match=f"^{message}$"):
        scheduler_cls(**{name: value}, clock=FakeClock())
    scheduler = scheduler_cls(clock=FakeClock())
    before = getattr(scheduler, name)
    with pytest.raises(error, match=f"^{message}$"):
        setattr(scheduler, name, value)
    assert getattr(scheduler, name) == before  # unchanged


def test_limits_set_later_read_back_as_the_constructor_keeps_them(scheduler_cls: type) -> None:
    scheduler = scheduler_cls(clock=FakeClock())
    scheduler.delay, scheduler.rate, scheduler.burst = 2, math.inf, 3
    assert (scheduler.delay, type(scheduler.delay)) == (2.0, float)
    assert scheduler.rate is None  # an infinite rate is no cap, as given to the constructor
    assert scheduler.burst == 3


@pytest.mark.parametrize("reading", [int, float, Decimal])
def test_the_clock_is_read_as_float_seconds(scheduler_cls: type, reading: type) -> None:
    # A clock of integer seconds or of Decimals is read as a float, on both backends.
    now = [100]
    scheduler = scheduler_cls(delay=0.5, clock=lambda: reading(now[0]))
    scheduler.push(1, "a", None)
    scheduler.push(2, "a", None)
    assert scheduler.pop() == (1, None)
    scheduler.done("a")
    ready = scheduler.next_ready()
    assert (ready, type(ready)) == (100.5, float)  # the delay's end
    scheduler.push(3, "b", None)
    ready = scheduler.next_ready()
    assert (ready, type(ready)) == (100.0, float)  # now: host b may start
    now[0] = 101
    assert sorted([scheduler.pop(), scheduler.pop()]) == [(2, None), (3, None)]


def test_a_scheduler_is_neither_pickled_nor_copied_nor_extended(scheduler_cls: type) -> None:
    import copy
    import pickle

    scheduler = scheduler_cls()
    for attempt in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError, match="cannot be pickled or copied"):
            attempt(scheduler)
    with pytest.raises(AttributeError):
        scheduler.extra = 1
