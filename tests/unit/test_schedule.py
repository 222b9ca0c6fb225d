"""fastpool.schedule.HostScheduler on a fake clock: per-host cap, politeness delay, global rate,
max in flight, max hosts taking turns, fairness, next_ready and bounded work for many hosts."""

from __future__ import annotations

import math
from typing import Any

import pytest

from fastpool.schedule import HostScheduler


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def drain(scheduler: HostScheduler) -> list[Any]:
    """Pop everything allowed now (bounded by the queue's length)."""
    popped = []
    for _ in range(len(scheduler) + 1):
        item = scheduler.pop()
        if item is None:
            break
        popped.append(item[0])
    return popped


def test_fifo_within_a_host_and_len() -> None:
    scheduler = HostScheduler(clock=FakeClock())
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


def test_round_robin_across_hosts_not_fifo() -> None:
    scheduler = HostScheduler(clock=FakeClock())
    # One big host first, then two small ones: the small ones are not starved.
    for n in range(100):
        scheduler.push(("a", n), "a", None)
    scheduler.push(("b", 0), "b", None)
    scheduler.push(("c", 0), "c", None)
    scheduler.push(("b", 1), "b", None)
    order = drain(scheduler)
    assert order[:6] == [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("b", 1), ("a", 2)]
    assert len(order) == 103


def test_per_host_cap_and_done() -> None:
    scheduler = HostScheduler(per_host=2, clock=FakeClock())
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


def test_done_without_an_item_in_flight_raises() -> None:
    scheduler = HostScheduler(clock=FakeClock())
    with pytest.raises(ValueError, match="without an item"):
        scheduler.done("nowhere")
    scheduler.push(1, "a", None)
    scheduler.pop()
    scheduler.done("a")
    with pytest.raises(ValueError, match="without an item"):
        scheduler.done("a")


def test_delay_between_starts_to_one_host() -> None:
    clock = FakeClock()
    scheduler = HostScheduler(delay=2.0, clock=clock)
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


def test_delay_holds_for_a_host_pushed_again() -> None:
    clock = FakeClock()
    scheduler = HostScheduler(delay=1.0, clock=clock)
    scheduler.push(1, "a", None)
    assert drain(scheduler) == [1]
    scheduler.done("a")  # nothing queued or in flight, but its delay still runs
    scheduler.push(2, "a", None)
    assert scheduler.pop() is None
    assert scheduler.next_ready() == 101.0
    clock.advance(1)
    assert drain(scheduler) == [2]


def test_global_rate_is_a_token_bucket() -> None:
    clock = FakeClock()
    scheduler = HostScheduler(rate=4.0, burst=2, clock=clock)
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


def test_rate_and_delay_together() -> None:
    clock = FakeClock()
    scheduler = HostScheduler(rate=1.0, delay=3.0, clock=clock)
    for n in range(2):
        scheduler.push(n, "a", None)
    assert drain(scheduler) == [0]
    clock.advance(1)  # the rate allows one more, a's delay does not
    assert scheduler.pop() is None
    assert scheduler.next_ready() == 103.0
    clock.advance(2)
    assert drain(scheduler) == [1]


def test_max_in_flight_is_backpressure() -> None:
    scheduler = HostScheduler(max_in_flight=2, clock=FakeClock())
    for n in range(4):
        scheduler.push(n, f"h{n}", None)
    assert drain(scheduler) == [0, 1]
    assert scheduler.next_ready() is None
    scheduler.done("h0")
    assert drain(scheduler) == [2]


def test_max_hosts_bounds_the_hosts_taking_turns() -> None:
    scheduler = HostScheduler(max_hosts=2, clock=FakeClock())
    for host in "abc":
        for n in range(2):
            scheduler.push((host, n), host, None)
    assert drain(scheduler) == [("a", 0), ("b", 0), ("a", 1), ("b", 1)]
    # "a" has nothing queued but one in flight: it still holds its turn.
    scheduler.done("a")
    assert drain(scheduler) == []
    scheduler.done("a")  # now "a" leaves, "c" gets a turn
    assert drain(scheduler) == [("c", 0), ("c", 1)]


def test_next_ready_is_now_when_ready() -> None:
    clock = FakeClock()
    scheduler = HostScheduler(clock=clock)
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
def test_arguments_are_checked(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        HostScheduler(**kwargs)


def test_many_hosts_bounded_work() -> None:
    # 100k items over 10k hosts, per-host cap and delay: every pop/done does a bounded amount
    # of work (counted as clock reads and heap/deque sizes, not timed).
    clock = FakeClock()
    scheduler = HostScheduler(per_host=2, delay=1.0, clock=clock)
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
