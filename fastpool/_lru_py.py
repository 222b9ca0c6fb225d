"""LRUMap, the pure-Python twin: the bounded pool-key map behind ``pool_connections``.

It behaves like urllib3's ``RecentlyUsedContainer`` for the same sequence of operations (see the
class docstring for the few deliberate differences). The compiled ``_lru_c.LRUMap`` behaves the
same; this module is the typed source of truth.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Callable, Generic, TypeVar

from .exceptions import MSG_NEGATIVE, MSG_NOT_CALLABLE, MSG_NOT_INT

__all__ = ("LRUMap",)

K = TypeVar("K")
V = TypeVar("V")
D = TypeVar("D")


class _Missing:
    """Marks "no argument" / "no entry" where ``None`` is a legitimate value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


def _check_maxsize(maxsize: object) -> int:
    """Return ``maxsize`` as an int, or raise TypeError/ValueError naming it."""
    if isinstance(maxsize, bool) or not isinstance(maxsize, int):
        raise TypeError(MSG_NOT_INT.format(name="maxsize", type=type(maxsize).__name__))
    if maxsize < 0:
        raise ValueError(MSG_NEGATIVE.format(name="maxsize", value=maxsize))
    return int(maxsize)


def _check_dispose_func(dispose_func: object) -> None:
    """Raise TypeError naming ``dispose_func`` unless it is callable or None."""
    if dispose_func is not None and not callable(dispose_func):
        raise TypeError(
            MSG_NOT_CALLABLE.format(name="dispose_func", type=type(dispose_func).__name__)
        )


class LRUMap(Generic[K, V]):
    """A thread-safe mapping that keeps at most ``maxsize`` keys, dropping the least recently used.

    ``LRUMap(maxsize=10, dispose_func=None)``: ``dispose_func(value)`` is called for every value
    that leaves the map (evicted, replaced, deleted, popped or cleared). It is called after the
    map's state is final and outside its lock, so it may close sockets or use the map; an
    exception it raises propagates to the caller, and the map stays consistent.

    It behaves like urllib3's ``RecentlyUsedContainer``:

    - ``m[key]``, ``m.get(key)`` (on a hit) and ``key in m`` make ``key`` the most recent.
      (``in`` refreshes because ``RecentlyUsedContainer`` inherits ``Mapping.__contains__``,
      which calls ``__getitem__``.)
    - ``m[key] = value`` makes ``key`` the most recent; replacing a value disposes the old one
      (even when it is the same object); inserting past ``maxsize`` evicts and disposes the
      least recently used entry. With ``maxsize=0`` a new entry is inserted and immediately
      evicted and disposed.
    - ``del m[key]``, ``m.pop(key[, default])`` and ``m.clear()`` dispose what they remove
      (``clear`` least recent first, stopping at the first exception from ``dispose_func``).
    - ``dispose_func`` is only called when it is truthy, as in urllib3.

    Deliberate differences: ``keys()``, ``values()`` and ``items()`` return snapshot lists in
    recency order, least recent first (urllib3's ``keys()`` returns a set: ``set(m.keys())``
    equals it); iterating the map iterates a snapshot of its keys (urllib3 raises
    ``NotImplementedError``); ``maxsize`` (TypeError/ValueError, read-only) and ``dispose_func``
    (TypeError, also on assignment) are checked; of two equal keys the map keeps the object that
    was first inserted (urllib3 keeps the one used last); a KeyError carries the key as its one argument, as ``dict`` does (urllib3's
    OrderedDict spreads a tuple key over the arguments). Keys are expected to be builtins
    (tuples, str, int and the like) whose hash and equality run no Python code.

    All operations are O(1) except the snapshots and ``clear``.
    """

    __slots__ = ("_container", "_dispose_func", "_lock", "_maxsize")

    _container: OrderedDict[K, V]
    _dispose_func: Callable[[V], None] | None
    _maxsize: int

    def __init__(self, maxsize: int = 10, dispose_func: Callable[[V], None] | None = None) -> None:
        self._maxsize = _check_maxsize(maxsize)
        _check_dispose_func(dispose_func)
        self._dispose_func = dispose_func
        self._container = OrderedDict()
        # Not reentrant: nothing under the lock calls back into user code.
        self._lock = threading.Lock()

    @property
    def maxsize(self) -> int:
        """The most keys the map holds (read-only; default 10)."""
        return self._maxsize

    @property
    def dispose_func(self) -> Callable[[V], None] | None:
        """Called with every value that leaves the map, or None (default)."""
        return self._dispose_func

    @dispose_func.setter
    def dispose_func(self, dispose_func: Callable[[V], None] | None) -> None:
        _check_dispose_func(dispose_func)
        self._dispose_func = dispose_func

    def _dispose(self, value: V) -> None:
        dispose_func = self._dispose_func
        if dispose_func:
            dispose_func(value)

    def __getitem__(self, key: K) -> V:
        """Return the value for ``key`` and make it the most recent; KeyError if missing."""
        container = self._container
        lock = self._lock
        # acquire/release rather than ``with``: measurably cheaper on this hot path.
        lock.acquire()
        try:
            value = container[key]
            container.move_to_end(key)
        finally:
            lock.release()
        return value

    def get(self, key: K, default: D | None = None) -> V | D | None:
        """Return the value for ``key`` (making it the most recent), or ``default`` (None)."""
        container = self._container
        lock = self._lock
        lock.acquire()
        try:
            value = container.get(key, _MISSING)
            if value is _MISSING:
                return default
            container.move_to_end(key)
        finally:
            lock.release()
        return value  # type: ignore[return-value]

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is present; a hit makes it the most recent, as in urllib3."""
        container = self._container
        with self._lock:
            if key not in container:
                return False
            container.move_to_end(key)  # type: ignore[arg-type]
        return True

    def __setitem__(self, key: K, value: V) -> None:
        """Set ``key`` (the most recent now); dispose a replaced value or an evicted one."""
        container = self._container
        # Holding the removed value here (not only in the dict) keeps its last reference out of
        # the locked part, so no __del__ runs under the lock.
        removed: V | _Missing
        lock = self._lock
        lock.acquire()
        try:
            removed = container.get(key, _MISSING)
            if removed is not _MISSING:
                container[key] = value
                container.move_to_end(key)
            elif len(container) < self._maxsize:
                container[key] = value
            elif self._maxsize:
                # Evict before inserting: ``len()`` reads without the lock, and must never see
                # one entry past ``maxsize`` (it did, between the two steps, under threads).
                removed = container.popitem(last=False)[1]
                container[key] = value
            else:
                removed = value  # maxsize 0: inserted and evicted at once, as in urllib3
        finally:
            lock.release()
        if removed is not _MISSING:
            self._dispose(removed)  # type: ignore[arg-type]

    def __delitem__(self, key: K) -> None:
        """Remove ``key`` and dispose its value; KeyError if missing."""
        with self._lock:
            value = self._container.pop(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        self._dispose(value)  # type: ignore[arg-type]

    def pop(self, key: K, default: V | D | _Missing = _MISSING) -> V | D:
        """Remove ``key``, dispose its value and return it; ``default`` (or KeyError) if missing."""
        with self._lock:
            value = self._container.pop(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise KeyError(key)
            return default  # type: ignore[return-value]
        self._dispose(value)  # type: ignore[arg-type]
        return value  # type: ignore[return-value]

    def clear(self) -> None:
        """Remove every entry, disposing the values least recent first."""
        with self._lock:
            values = list(self._container.values())
            self._container.clear()
        for value in values:
            self._dispose(value)

    def __len__(self) -> int:
        """The number of entries."""
        return len(self._container)

    def keys(self) -> list[K]:
        """A snapshot list of the keys, least recent first (urllib3 returns a set)."""
        with self._lock:
            return list(self._container)

    def values(self) -> list[V]:
        """A snapshot list of the values, least recent first."""
        with self._lock:
            return list(self._container.values())

    def items(self) -> list[tuple[K, V]]:
        """A snapshot list of ``(key, value)`` pairs, least recent first."""
        with self._lock:
            return list(self._container.items())

    def __iter__(self) -> Iterator[K]:
        """Iterate a snapshot of the keys, least recent first (urllib3 raises instead)."""
        return iter(self.keys())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} len={len(self)} maxsize={self._maxsize}>"
