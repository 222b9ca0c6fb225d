"""HostQueue under 32 threads, on both backends: tokens stand in for connections.

Each run is bounded in operations per thread and in wall time. The checks are about
ownership and accounting, never about speed: no token is held by two threads at once, none
is lost, the slot counts return to zero, and in blocking mode never more than ``maxsize``
tokens exist.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest

from fastpool.exceptions import PoolClosedError, PoolTimeoutError

#: Stress and soak runs: `-m "not slow"` leaves them out of a quick run.
pytestmark = pytest.mark.slow

THREADS = 32
OPS_PER_THREAD = 1500
TIME_BUDGET = 0.7  # seconds per run; the op count usually ends it first


class Token:
    """A connection stand-in with a serial number."""

    __slots__ = ("serial",)

    def __init__(self, serial: int) -> None:
        self.serial = serial


class Harness:
    """What the threads share: who holds which token, and every token that ever existed."""

    def __init__(self, q: Any) -> None:
        self.q = q
        self.lock = threading.Lock()
        self.holder: dict[Token, int] = {}
        self.made: list[Token] = []
        self.closed: set[Token] = set()
        self.live = 0  # dialed and not yet closed
        self.max_live = 0
        self.problems: list[str] = []
        self.timeouts = 0
        self.deadline = time.monotonic() + TIME_BUDGET
        self.start = threading.Barrier(THREADS)

    def dial(self) -> Token:
        with self.lock:
            token = Token(len(self.made))
            self.made.append(token)
            self.live += 1
            self.max_live = max(self.max_live, self.live)
        return token

    def close(self, token: Token) -> None:
        with self.lock:
            if token in self.closed:
                self.problems.append(f"token {token.serial} closed twice")
            self.closed.add(token)
            self.live -= 1

    def take(self, token: Token, me: int) -> None:
        # dict.setdefault is atomic: a second holder sees the first one's id.
        other = self.holder.setdefault(token, me)
        if other != me:
            self.problems.append(f"token {token.serial} held by {other} and {me}")
        if token in self.closed:
            self.problems.append(f"closed token {token.serial} handed out")

    def give_back(self, token: Token) -> None:
        del self.holder[token]

    def worker(self, me: int, seed: int, drop_rate: float) -> None:
        rng = random.Random(seed)
        q = self.q
        held: list[Token] = []
        self.start.wait()
        try:
            for _ in range(OPS_PER_THREAD):
                if time.monotonic() > self.deadline:
                    break
                if held and (len(held) >= 2 or rng.random() < 0.55):
                    token = held.pop(rng.randrange(len(held)))
                    self.give_back(token)
                    if rng.random() < drop_rate:
                        # Close first, then release the slot, as a pool does with a dead conn.
                        self.close(token)
                        q.checkin(None)
                    elif not q.checkin(token):
                        self.close(token)
                    continue
                # Mostly short waits, sometimes none, sometimes tiny ones that race a hand-off;
                # never a wait while holding a slot (32 threads holding one each and waiting
                # for a second would just time out).
                timeout = rng.choice((0.2, 0.2, 0.0, 0.0005)) if not held else 0.0
                try:
                    conn = q.checkout(timeout)
                except PoolTimeoutError:
                    with self.lock:
                        self.timeouts += 1
                    continue
                token = self.dial() if conn is None else conn
                self.take(token, me)
                held.append(token)
                if rng.random() < 0.1:
                    time.sleep(0)  # let another thread run while holding
        except PoolClosedError:
            pass
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.problems.append(f"thread {me}: {exc!r}")
        finally:
            for token in held:
                self.give_back(token)
                if not q.checkin(token):
                    self.close(token)

    def run(self, drop_rate: float, close_after: float | None = None) -> None:
        threads = [
            threading.Thread(target=self.worker, args=(i, i * 7919, drop_rate), daemon=True)
            for i in range(THREADS)
        ]
        for thread in threads:
            thread.start()
        if close_after is not None:
            time.sleep(close_after)
            for token in self.q.close():
                self.close(token)
        for thread in threads:
            thread.join(TIME_BUDGET + 10)
            assert not thread.is_alive(), "a worker hung"

    def check_end(self) -> None:
        q = self.q
        assert self.problems == []
        assert self.holder == {}
        assert (q.in_use, q.waiters) == (0, 0)
        assert q.open == q.idle
        idle = q.take_idle()
        # None lost: every token ever dialed is either closed or idle, not both.
        assert len(idle) == len({id(t) for t in idle})
        assert not (set(idle) & self.closed)
        assert set(idle) | self.closed == set(self.made)
        assert q.created == len(self.made)
        assert self.live == len(idle)


@pytest.mark.parametrize("drop_rate", [0.0, 0.1])
def test_block_mode_never_exceeds_maxsize(hostqueue_cls: type, drop_rate: float) -> None:
    maxsize = 4
    # Up to 3 runs, each checked in full: the last check only says the run was not vacuous,
    # and a loaded machine can let 32 threads take turns on 4 slots without one waiting.
    for _ in range(3):
        h = Harness(hostqueue_cls(maxsize=maxsize, block=True))
        h.run(drop_rate)
        h.check_end()
        assert h.max_live <= maxsize
        assert h.q.discarded == 0
        if drop_rate == 0.0:
            assert len(h.made) <= maxsize  # nothing is closed, so nothing is ever re-dialed
        if h.q.wait_count > 0:
            break
    assert h.q.wait_count > 0  # 32 threads on 4 slots: the waiting path really ran


@pytest.mark.parametrize("drop_rate", [0.0, 0.1])
def test_non_block_mode_keeps_accounting(hostqueue_cls: type, drop_rate: float) -> None:
    h = Harness(hostqueue_cls(maxsize=4))
    h.run(drop_rate)
    h.check_end()
    assert h.q.idle <= 4
    assert h.q.wait_count == 0
    assert h.timeouts == 0


def test_limit_caps_live_tokens(hostqueue_cls: type) -> None:
    h = Harness(hostqueue_cls(maxsize=2, limit=6))
    h.run(drop_rate=0.05)
    h.check_end()
    assert h.max_live <= 6


def test_close_while_busy(hostqueue_cls: type) -> None:
    h = Harness(hostqueue_cls(maxsize=3, block=True))
    h.run(drop_rate=0.05, close_after=0.05)
    h.check_end()
    assert h.q.closed
    assert h.q.idle == 0
