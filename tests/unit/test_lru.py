"""LRUMap on both backends: unit tests, a state machine against urllib3's RecentlyUsedContainer,
and a bounded multi-threaded hammer."""

from __future__ import annotations

import gc
import importlib
import itertools
import sys
import threading
import time
import weakref
from collections import Counter
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from urllib3._collections import RecentlyUsedContainer

from fastpool.exceptions import MSG_NEGATIVE, MSG_NOT_CALLABLE, MSG_NOT_INT


def make(lru_cls: type, maxsize: int = 10) -> tuple[Any, list[Any]]:
    disposed: list[Any] = []
    return lru_cls(maxsize, disposed.append), disposed


# --- construction and bad input ----------------------------------------------------------------


def test_defaults(lru_cls: type) -> None:
    m = lru_cls()
    assert m.maxsize == 10
    assert m.dispose_func is None
    assert len(m) == 0
    assert repr(m) == "<LRUMap len=0 maxsize=10>"


def test_maxsize_is_read_only(lru_cls: type) -> None:
    m = lru_cls(3)
    with pytest.raises(AttributeError):
        m.maxsize = 4
    assert m.maxsize == 3


@pytest.mark.parametrize("bad", ["10", 1.0, None, True, False, [1]])
def test_maxsize_must_be_int(lru_cls: type, bad: object) -> None:
    with pytest.raises(TypeError) as info:
        lru_cls(bad)
    assert str(info.value) == MSG_NOT_INT.format(name="maxsize", type=type(bad).__name__)


def test_maxsize_must_not_be_negative(lru_cls: type) -> None:
    with pytest.raises(ValueError) as info:
        lru_cls(-1)
    assert str(info.value) == MSG_NEGATIVE.format(name="maxsize", value=-1)


def test_huge_maxsize_is_kept(lru_cls: type) -> None:
    m = lru_cls(10**30)
    m["a"] = 1
    assert m.maxsize == 10**30
    assert m.keys() == ["a"]


def test_int_subclass_maxsize(lru_cls: type) -> None:
    class Size(int):
        pass

    m = lru_cls(Size(2))
    assert m.maxsize == 2
    assert type(m.maxsize) is int


@pytest.mark.parametrize("bad", ["close", 3, object()])
def test_dispose_func_must_be_callable(lru_cls: type, bad: object) -> None:
    expected = MSG_NOT_CALLABLE.format(name="dispose_func", type=type(bad).__name__)
    with pytest.raises(TypeError) as info:
        lru_cls(2, bad)
    assert str(info.value) == expected
    m = lru_cls(2)
    with pytest.raises(TypeError) as info:
        m.dispose_func = bad
    assert str(info.value) == expected
    assert m.dispose_func is None


def test_dispose_func_can_be_replaced(lru_cls: type) -> None:
    first: list[int] = []
    second: list[int] = []
    m = lru_cls(1, first.append)
    m["a"] = 1
    m.dispose_func = second.append
    m["b"] = 2
    m.dispose_func = None
    m["c"] = 3
    assert (first, second, m.items()) == ([], [1], [("c", 3)])


def test_unhashable_key_is_a_type_error(lru_cls: type) -> None:
    m, _ = make(lru_cls)
    for op in (
        lambda: m[[1]],
        lambda: m.get([1]),
        lambda: [1] in m,
        lambda: m.__setitem__([1], 1),
        lambda: m.__delitem__([1]),
        lambda: m.pop([1], None),
    ):
        with pytest.raises(TypeError):
            op()
    assert len(m) == 0


# --- recency ------------------------------------------------------------------------------------


def test_eviction_is_least_recently_used(lru_cls: type) -> None:
    m, disposed = make(lru_cls, 3)
    for key in "abc":
        m[key] = key.upper()
    m["d"] = "D"
    assert disposed == ["A"]
    assert m.keys() == ["b", "c", "d"]


@pytest.mark.parametrize(
    "touch",
    [
        lambda m, k: m[k],
        lambda m, k: m.get(k),
        lambda m, k: k in m,  # Mapping.__contains__ calls __getitem__ in urllib3
        lambda m, k: m.__setitem__(k, k.upper()),
    ],
    ids=["getitem", "get", "contains", "setitem"],
)
def test_touch_refreshes(lru_cls: type, touch: Callable[[Any, str], object]) -> None:
    m, disposed = make(lru_cls, 3)
    for key in "abc":
        m[key] = key.upper()
    touch(m, "a")
    m["d"] = "D"
    assert m.keys() == ["c", "a", "d"]
    assert disposed[-1] == "B"


def test_misses_do_not_change_order(lru_cls: type) -> None:
    m, disposed = make(lru_cls, 2)
    m["a"], m["b"] = 1, 2
    assert m.get("zz") is None
    assert m.get("zz", 5) == 5
    assert "zz" not in m
    assert m.pop("zz", None) is None
    assert m.keys() == ["a", "b"]
    assert disposed == []


def test_replace_disposes_old_value_even_if_same_object(lru_cls: type) -> None:
    m, disposed = make(lru_cls, 2)
    value = object()
    m["a"] = value
    m["b"] = 2
    m["a"] = value
    assert disposed == [value]
    assert m.keys() == ["b", "a"]
    assert len(m) == 2


def test_first_inserted_equal_key_object_is_kept(lru_cls: type) -> None:
    m, _ = make(lru_cls, 2)
    m[1] = "int"
    m[1.0] = "float"
    m[True]
    assert m.items() == [(1, "float")]
    assert type(m.keys()[0]) is int


# --- capacity 0 and 1 ---------------------------------------------------------------------------


def test_capacity_zero_inserts_then_evicts(lru_cls: type) -> None:
    m, disposed = make(lru_cls, 0)
    m["a"] = 1
    m["a"] = 2
    assert disposed == [1, 2]
    assert len(m) == 0
    assert "a" not in m
    with pytest.raises(KeyError):
        m["a"]


def test_capacity_one(lru_cls: type) -> None:
    m, disposed = make(lru_cls, 1)
    m["a"] = 1
    assert m["a"] == 1
    m["b"] = 2
    m["b"] = 3
    assert disposed == [1, 2]
    assert m.items() == [("b", 3)]
    del m["b"]
    assert disposed == [1, 2, 3]
    assert m.keys() == []


# --- removal ------------------------------------------------------------------------------------


def test_del_disposes_and_raises_key_error_with_the_key(lru_cls: type) -> None:
    m, disposed = make(lru_cls)
    m[("http", "a", 80)] = "pool"
    del m[("http", "a", 80)]
    assert disposed == ["pool"]
    with pytest.raises(KeyError) as info:
        del m[("http", "a", 80)]
    assert info.value.args == (("http", "a", 80),)


def test_pop(lru_cls: type) -> None:
    m, disposed = make(lru_cls)
    m["a"] = 1
    assert m.pop("a") == 1
    assert disposed == [1]
    assert m.pop("a", "dflt") == "dflt"
    assert m.pop("a", default=None) is None
    with pytest.raises(KeyError) as info:
        m.pop(("t",))
    assert info.value.args == (("t",),)
    assert disposed == [1]


def test_getitem_miss(lru_cls: type) -> None:
    m, _ = make(lru_cls)
    with pytest.raises(KeyError) as info:
        m[(1, 2)]
    assert info.value.args == ((1, 2),)


def test_clear_disposes_least_recent_first(lru_cls: type) -> None:
    m, disposed = make(lru_cls, 5)
    for i in range(4):
        m[i] = i * 10
    m[0]
    m.clear()
    assert disposed == [10, 20, 30, 0]
    assert len(m) == 0
    m["again"] = 1
    assert m.items() == [("again", 1)]


# --- dispose: after the state is final, exceptions propagate ------------------------------------


def test_dispose_sees_the_final_state(lru_cls: type) -> None:
    seen: list[tuple[Any, list[Any]]] = []
    m = lru_cls(2, lambda value: seen.append((value, m.keys())))
    m["a"], m["b"] = 1, 2
    m["c"] = 3  # evicts a
    m["b"] = 20  # replaces b
    del m["c"]
    assert seen == [(1, ["b", "c"]), (2, ["c", "b"]), (3, ["b"])]


def test_dispose_may_use_the_map(lru_cls: type) -> None:
    # A reentrant dispose must not deadlock: it runs outside any lock.
    def dispose(value: int) -> None:
        if value < 3:
            m[f"re{value}"] = value + 10

    m = lru_cls(1, dispose)
    m["a"] = 1
    m["b"] = 2
    assert m.items() == [("re2", 12)]


@pytest.mark.parametrize(
    "op",
    [
        lambda m: m.__setitem__("c", 3),  # eviction of a
        lambda m: m.__setitem__("a", 9),  # replacement of a
        lambda m: m.__delitem__("a"),
        lambda m: m.pop("a"),
    ],
    ids=["evict", "replace", "del", "pop"],
)
def test_dispose_exception_propagates_map_consistent(
    lru_cls: type, op: Callable[[Any], object]
) -> None:
    def dispose(value: int) -> None:
        raise RuntimeError(f"dispose {value}")

    m = lru_cls(2)
    m["a"], m["b"] = 1, 2
    m.dispose_func = dispose
    with pytest.raises(RuntimeError, match="dispose 1"):
        op(m)
    assert len(m) == len(m.keys()) == len(m.values()) <= 2
    assert "a" not in m or m["a"] == 9
    m.dispose_func = None
    m["x"], m["y"], m["z"] = 7, 8, 9
    assert m.keys() == ["y", "z"]


def test_clear_stops_at_first_dispose_exception(lru_cls: type) -> None:
    disposed: list[int] = []

    def dispose(value: int) -> None:
        disposed.append(value)
        if value == 2:
            raise RuntimeError("boom")

    m = lru_cls(5, dispose)
    for i in (1, 2, 3):
        m[i] = i
    with pytest.raises(RuntimeError):
        m.clear()
    assert disposed == [1, 2]  # as RecentlyUsedContainer: the rest is dropped undisposed
    assert len(m) == 0


def test_falsy_dispose_func_is_not_called(lru_cls: type) -> None:
    # urllib3 tests ``if self.dispose_func:``; a callable that is falsy is skipped there too.
    class Falsy:
        calls = 0

        def __call__(self, value: object) -> None:
            Falsy.calls += 1

        def __bool__(self) -> bool:
            return False

    m = lru_cls(0, Falsy())
    m["a"] = 1
    assert Falsy.calls == 0


def test_finalizer_of_an_evicted_value_runs_after_the_state_is_final(lru_cls: type) -> None:
    seen: list[list[Any]] = []

    class Pool:
        def __del__(self) -> None:
            seen.append(m.keys())

    m = lru_cls(1)
    m["a"] = Pool()
    m["b"] = 2  # the map held the only reference to the Pool
    gc.collect()
    assert seen == [["b"]]
    m["b"] = Pool()
    m["b"] = 3
    del m["b"]
    m["c"] = Pool()
    m.clear()
    gc.collect()
    assert seen == [["b"], ["b"], []]


class _Tracked:
    """A value a weak reference can watch."""


def test_no_reference_cycles(lru_cls: type) -> None:
    # The linked list must not keep nodes alive by itself: with the cyclic GC off, dropping
    # the map (or an entry) frees the values at once.
    gc.disable()
    try:
        m = lru_cls(3)
        values = [_Tracked() for _ in range(5)]
        refs = [weakref.ref(value) for value in values]
        for i, value in enumerate(values):
            m[i] = value
        del value, values
        assert [ref() is None for ref in refs] == [True, True, False, False, False]
        m.pop(3)
        assert refs[3]() is None
        del m
        assert all(ref() is None for ref in refs)
    finally:
        gc.enable()


# --- snapshots ----------------------------------------------------------------------------------


def test_snapshots_are_in_recency_order(lru_cls: type) -> None:
    m, _ = make(lru_cls, 4)
    m["a"], m["b"], m["c"] = 1, 2, 3
    m["a"]
    assert m.keys() == ["b", "c", "a"]
    assert m.values() == [2, 3, 1]
    assert m.items() == [("b", 2), ("c", 3), ("a", 1)]
    assert list(m) == ["b", "c", "a"]
    assert isinstance(m.keys(), list)


def test_iteration_is_over_a_snapshot(lru_cls: type) -> None:
    m, disposed = make(lru_cls, 3)
    m["a"], m["b"], m["c"] = 1, 2, 3
    seen = []
    for key in m:
        seen.append(key)
        m[key + "!"] = 0  # evicts as it goes; the iteration is not disturbed
    assert seen == ["a", "b", "c"]
    assert disposed == [1, 2, 3]


def test_repr(lru_cls: type) -> None:
    m, _ = make(lru_cls, 7)
    m["a"] = 1
    assert repr(m) == "<LRUMap len=1 maxsize=7>"


def test_generic_alias(lru_cls: type) -> None:
    assert lru_cls[str, int] is not None


# --- threads ------------------------------------------------------------------------------------


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads far more often than the default 5 ms, to shake out races."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(interval)


def test_threads_hammering_one_map(lru_cls: type, fast_switching: None) -> None:
    threads_n, ops_n, maxsize = 4, 3000, 8
    disposed: list[tuple[int, int]] = []
    m = lru_cls(maxsize, disposed.append)
    inserted: list[list[tuple[int, int]]] = [[] for _ in range(threads_n)]
    errors: list[BaseException] = []
    deadline = time.monotonic() + 20
    start = threading.Barrier(threads_n)

    def work(tid: int) -> None:
        try:
            start.wait()
            for i in range(ops_n):
                if time.monotonic() > deadline:
                    break
                key = (i * 7 + tid) % 20
                op = i % 5
                if op < 2:
                    value = (tid, i)
                    inserted[tid].append(value)
                    m[key] = value
                elif op == 2:
                    m.get(key)
                elif op == 3:
                    m.pop(key, None)
                else:
                    _ = key in m
                    assert len(m) <= maxsize
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert not any(worker.is_alive() for worker in workers)
    assert errors == []
    assert len(m) <= maxsize
    present = m.values()
    all_inserted = Counter(itertools.chain.from_iterable(inserted))
    assert all(count == 1 for count in all_inserted.values())
    counts = Counter(disposed) + Counter(present)
    assert counts == all_inserted  # each value disposed exactly once or still present
    assert len(m.keys()) == len(m.items()) == len(m)


def test_len_never_passes_maxsize_while_another_thread_inserts(
    lru_cls: type, fast_switching: None
) -> None:
    # len() reads without the lock. The pure twin once inserted before it evicted, so a reader
    # saw maxsize + 1 between the two steps (often on CPython 3.9, which may switch threads
    # between any two bytecodes; the matrix's 3.9 leg caught it).
    maxsize = 8
    m = lru_cls(maxsize)
    for key in range(maxsize):
        m[key] = key
    stop = time.monotonic() + 0.5
    too_many: list[int] = []

    def insert() -> None:
        key = maxsize
        while time.monotonic() < stop:
            m[key] = key
            key += 1

    writer = threading.Thread(target=insert)
    writer.start()
    reads = 0
    while time.monotonic() < stop:
        size = len(m)
        reads += 1
        if size > maxsize:
            too_many.append(size)
    writer.join(10)
    assert not writer.is_alive()
    assert reads > 0
    assert too_many == []


# --- state machine: compiled vs pure vs urllib3 ------------------------------------------------

KEYS = st.sampled_from([0, 1, 2, 3, "a", "b", (1, 2), ("http", "h", 80), (), (5,)])


class _Value:
    """Distinct, comparable values; some make dispose raise."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Value) and other.n == self.n

    def __hash__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"V{self.n}"


class LRUComparison(RuleBasedStateMachine):
    """Drive compiled, pure and urllib3 maps with the same operations and compare everything."""

    @initialize(maxsize=st.integers(0, 4), raising=st.booleans())
    def setup(self, maxsize: int, raising: bool) -> None:
        self.counter = itertools.count()
        self.logs: dict[str, list[Any]] = {"c": [], "py": [], "ref": []}
        classes = {
            "c": importlib.import_module("fastpool._lru_c").LRUMap,
            "py": importlib.import_module("fastpool._lru_py").LRUMap,
            "ref": RecentlyUsedContainer,
        }
        self.maps = {
            name: cls(maxsize, self._disposer(self.logs[name], raising))
            for name, cls in classes.items()
        }
        self.last_value = _Value(-1)

    @staticmethod
    def _disposer(log: list[Any], raising: bool) -> Callable[[Any], None]:
        def dispose(value: _Value) -> None:
            log.append(value)
            if raising and value.n % 4 == 3:
                raise RuntimeError(f"dispose {value!r}")

        return dispose

    def _all(self, op: Callable[[Any], Any]) -> Any:
        outcomes = {}
        for name, m in self.maps.items():
            try:
                outcomes[name] = ("ok", op(m))
            except Exception as exc:  # noqa: BLE001 - compared below
                outcomes[name] = ("raise", type(exc), exc.args)
        c, py, ref = outcomes["c"], outcomes["py"], outcomes["ref"]
        assert c == py
        if ref[0] == "raise":
            # urllib3's OrderedDict spreads tuple keys over KeyError.args; compare the type.
            assert c[:2] == ref[:2]
        else:
            assert c == ref
        return c

    @rule(key=KEYS, same=st.booleans())
    def set(self, key: Any, same: bool) -> None:
        value = self.last_value if same else _Value(next(self.counter))
        self.last_value = value
        self._all(lambda m: m.__setitem__(key, value))

    @rule(key=KEYS)
    def getitem(self, key: Any) -> None:
        self._all(lambda m: m[key])

    @rule(key=KEYS)
    def get(self, key: Any) -> None:
        self._all(lambda m: m.get(key, "dflt"))

    @rule(key=KEYS)
    def contains(self, key: Any) -> None:
        self._all(lambda m: key in m)

    @rule(key=KEYS)
    def delitem(self, key: Any) -> None:
        self._all(lambda m: m.__delitem__(key))

    @rule(key=KEYS, with_default=st.booleans())
    def pop(self, key: Any, with_default: bool) -> None:
        if with_default:
            self._all(lambda m: m.pop(key, None))
        else:
            self._all(lambda m: m.pop(key))

    @rule()
    def clear(self) -> None:
        self._all(lambda m: m.clear())

    @invariant()
    def same_state(self) -> None:
        c, py, ref = self.maps["c"], self.maps["py"], self.maps["ref"]
        assert c.keys() == py.keys() == list(ref._container)  # recency order, not just the set
        assert set(c.keys()) == ref.keys()
        assert c.values() == py.values() == list(ref._container.values())
        assert len(c) == len(py) == len(ref) <= c.maxsize
        assert self.logs["c"] == self.logs["py"] == self.logs["ref"]
        assert repr(c) == repr(py)


@pytest.mark.c_extension
def test_state_machine_against_urllib3(request: pytest.FixtureRequest) -> None:
    if request.config.getoption("--no-c-extensions"):
        pytest.skip("--no-c-extensions given")
    run = settings(max_examples=300, stateful_step_count=40, deadline=None)(LRUComparison)
    run.TestCase().runTest()
