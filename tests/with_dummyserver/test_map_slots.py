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

import collections
import sys
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


def test_the_tag_rule_the_layouts_are_kept_with() -> None:
    # What the compiled loop keeps a layout (and the lane a class's steps) with: a tag given at
    # the first lookup, none after any change to the class or a base, a new one after, never
    # one given before. CPython 3.9 and 3.10 count tags from the start again at
    # sys._clear_type_cache(), so a freed class's tag could come back on another at the same
    # address: there no tag is read as valid, and nothing is kept.
    _loop_c = pytest.importorskip("fastpool._loop_c")

    class Base:
        __slots__ = ("a",)

    class Cls(Base):
        __slots__ = ("b",)

    _ = Cls.b  # a lookup: the class gets a tag
    first = _loop_c.valid_tag(Cls)
    if sys.version_info < (3, 11):
        assert first == 0
        return
    assert first != 0
    given = {first}
    for change in (
        lambda: setattr(Cls, "x", 1),
        lambda: setattr(Base, "y", 2),
        lambda: delattr(Base, "y"),
        lambda: setattr(Cls, "__getattribute__", object.__getattribute__),
    ):
        change()
        assert _loop_c.valid_tag(Cls) == 0
        _ = Cls.b
        tag = _loop_c.valid_tag(Cls)
        assert tag != 0 and tag not in given
        given.add(tag)
    sys._clear_type_cache()
    _ = Cls.b
    given.add(_loop_c.valid_tag(Cls))  # (the same, or a new one)
    for _ in range(50):  # new classes, some maybe where a freed one was: never a tag given

        class Other:
            __slots__ = ("c",)

        _ = Other.c
        assert _loop_c.valid_tag(Other) not in given | {0}


@pytest.mark.parametrize("method", ["__getattribute__", "__setattr__"])
def test_an_attribute_hook_set_while_python_code_runs_is_seen(
    app_server: AppServer, method: str
) -> None:
    # CPython changes a class's tag before it installs a __getattribute__ or __setattr__ set
    # on it, and may run Python code in between (here: a key in the class's dict whose hash
    # collides with the name it looks up, its __eq__ running a map). A layout noted then, under
    # the new tag, must not keep later maps from calling the hook (found by a review).
    url = f"{app_server.url}/bytes/4"
    names = ("sock", "timeout", "_rest", "_sock_timeout")
    collides_with = "__getattr__" if method == "__getattribute__" else "__delattr__"
    armed = [False]

    class Key(str):
        def __hash__(self) -> int:
            return hash(collides_with)

        def __eq__(self, other: object) -> bool:
            if armed[0]:
                armed[0] = False
                with fastpool.PoolManager(maxsize=1) as inner:
                    inner.connection_from_url(url).ConnectionCls = cls
                    list(inner.map([url] * 2, concurrency=1))
            return str.__eq__(self, other)

        __ne__ = str.__ne__

    cls: Any = type("Hooked", (fastpool.connection.HTTPConnection,), {Key("zzz"): None})
    seen: collections.Counter[str] = collections.Counter()

    def get(obj: Any, name: str) -> Any:
        if name in names:
            seen[name] += 1
        return object.__getattribute__(obj, name)

    def set_(obj: Any, name: str, value: Any) -> None:
        if name in names:
            seen[name] += 1
        object.__setattr__(obj, name, value)

    with fastpool.PoolManager(maxsize=1) as manager:
        manager.connection_from_url(url).ConnectionCls = cls
        list(manager.map([url] * 2, concurrency=1))  # the layout noted
        armed[0] = True
        setattr(cls, method, get if method == "__getattribute__" else set_)
        assert not armed[0]  # the inner map ran while the hook was being installed
        results = list(manager.map([url] * 3, concurrency=1))
    assert [r.error for r in results] == [None] * 3
    # the loop reads conn.timeout and writes conn._sock_timeout for each exchange
    assert seen["timeout" if method == "__getattribute__" else "_sock_timeout"] >= 3, seen
