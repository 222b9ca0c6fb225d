"""The compiled loop and lane read and write a connection's and a pool's per-request state
(their ``__slots__``) at the slot's offset while the class is as it was when its layout was
noted (CPython's version tag): any change to the class since is seen at the next access.

Each test replaces a slot's member descriptor on the class with a property that records its
calls (reading and writing through the slot itself), between two maps. The map with the
property in place must call it as Python code would; the map after it is removed must not.
Without the tag check, the noted offset would bypass the property. On the pure twins, the
same tests hold: they read the attributes as Python does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dummyserver import AppServer, pattern_bytes
from lane_counts import Counted, count_lanes

import fastpool
import fastpool.connection
import fastpool.pool

pytestmark = pytest.mark.filterwarnings("error")


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> type[Counted]:
    return count_lanes(monkeypatch)


def recording(owner: type, name: str, calls: list[str]) -> property:
    """A property for ``owner.<name>`` that reads and writes the slot as its member descriptor
    (on ``owner`` or a base) does, each call recorded in ``calls``."""
    member = next(vars(cls)[name] for cls in owner.__mro__ if name in vars(cls))
    assert type(member).__name__ == "member_descriptor", member  # a slot, as the test needs

    def get(obj: Any) -> Any:
        calls.append("get")
        return member.__get__(obj, type(obj))

    def set_(obj: Any, value: Any) -> None:
        calls.append("set")
        member.__set__(obj, value)

    return property(get, set_)


class Swap:
    """``swap(owner, name, calls)`` puts the recording property on the class; ``undo()``
    puts back what was there (or nothing)."""

    def __init__(self) -> None:
        self.done: list[tuple[type, str, Any]] = []

    def __call__(self, owner: type, name: str, calls: list[str]) -> None:
        self.done.append((owner, name, vars(owner).get(name)))
        setattr(owner, name, recording(owner, name, calls))

    def undo(self) -> None:
        while self.done:
            owner, name, before = self.done.pop()
            if before is None:
                delattr(owner, name)
            else:
                setattr(owner, name, before)


@pytest.fixture
def swap() -> Iterator[Swap]:
    done = Swap()
    try:
        yield done
    finally:
        done.undo()


@pytest.mark.parametrize(
    ("owner", "name", "used"),
    [
        # read at each lane checkout (is_connected's steps), written at each light finish
        (fastpool.connection.HTTPConnection, "sock", {"get"}),
        (fastpool.connection.HTTPConnection, "requests", {"get", "set"}),
        (fastpool.connection.HTTPConnection, "_rest", {"get", "set"}),
        (fastpool.pool.HTTPConnectionPool, "num_requests", {"get", "set"}),
        (fastpool.pool.HTTPConnectionPool, "pool", {"get"}),
    ],
    ids=lambda v: (
        v if isinstance(v, str) else "+".join(sorted(v)) if isinstance(v, set) else v.__name__
    ),
)
def test_a_property_set_in_place_of_a_slot_is_seen_by_the_lane(
    app_server: AppServer, counted: type[Counted], swap: Swap, owner: type, name: str, used: Any
) -> None:
    url = f"{app_server.url}/bytes/4"
    calls: list[str] = []
    with fastpool.PoolManager(maxsize=1) as manager:
        list(manager.map([url] * 3, concurrency=1, light=True))  # the layouts noted
        swap(owner, name, calls)
        counted.begun.clear()
        results = list(manager.map([url] * 3, concurrency=1, light=True))
        assert [r.error for r in results] == [None] * 3
        assert [r.response.data for r in results] == [pattern_bytes(4)] * 3
        assert counted.begun == [True] * 3  # the lane took them, reading through the property
        assert used <= set(calls), calls
        asked = len(calls)
        swap.undo()
        list(manager.map([url] * 3, concurrency=1, light=True))
        assert len(calls) == asked  # removed: not called again
        (pool,) = manager.pools.values()
        assert (pool.num_requests, pool.num_connections) == (9, 1)


class _TimedConnection(fastpool.connection.HTTPConnection):
    """A subclass, so the lane steps aside and the loop's general steps send each hop."""


def test_a_subclass_property_in_place_of_a_slot_is_seen_by_the_loop(
    app_server: AppServer, swap: Swap
) -> None:
    # The loop reads conn.sock and conn.timeout and writes conn._rest for every exchange, on
    # any connection class; a property on a subclass the pool uses is called.
    url = f"{app_server.url}/bytes/4"
    calls: list[str] = []
    with fastpool.PoolManager(maxsize=1) as manager:
        pool = manager.connection_from_url(url)
        pool.ConnectionCls = _TimedConnection
        list(manager.map([url] * 2, concurrency=1))  # the layout noted
        swap(_TimedConnection, "timeout", calls)
        # (a property on the subclass: found on its MRO before HTTPConnection's slot)
        assert "timeout" in vars(_TimedConnection)
        results = list(manager.map([url] * 3, concurrency=1))
        assert [r.error for r in results] == [None] * 3
        assert "get" in calls and "set" in calls, calls
        asked = len(calls)
        swap.undo()
        assert "timeout" not in vars(_TimedConnection)
        list(manager.map([url] * 2, concurrency=1))
        assert len(calls) == asked
