# cython: language_level=3, embedsignature=True
"""LRUMap, compiled: the bounded pool-key map behind ``pool_connections``.

Same observable behaviour as the pure twin ``_lru_py.LRUMap`` (the typed source of truth; read its
docstring for the semantics). Here a dict maps each key to a node of an intrusive doubly linked
list in recency order. There is no Python-level lock: each operation is one call that does not
release the GIL. Inside the part that changes the map's state nothing runs Python code (no
allocation that could start the cyclic GC, no deallocation that could run ``__del__``, no
callback), so other threads only ever see a consistent map. Removed values are held until the
state is final and only then disposed.
"""

cimport cython
from cpython.dict cimport PyDict_DelItem, PyDict_GetItemWithError, PyDict_SetItem
from cpython.object cimport PyObject

from types import GenericAlias

from .exceptions import MSG_NEGATIVE, MSG_NOT_CALLABLE, MSG_NOT_INT

__all__ = ("LRUMap",)

cdef object _MISSING = object()

cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX


@cython.auto_pickle(False)
cdef class _Node:
    # prev/next are borrowed: every linked node is owned by the map's dict (the root by the map),
    # so the links make no reference cycles and cost no reference counting.
    cdef object key
    cdef object value
    cdef PyObject* prev
    cdef PyObject* next


cdef inline void _unlink(_Node node) noexcept:
    (<_Node>node.prev).next = node.next
    (<_Node>node.next).prev = node.prev


cdef inline void _link_last(_Node root, _Node node) noexcept:
    # The most recent node sits just before the root; the least recent just after it.
    node.prev = root.prev
    node.next = <PyObject*>root
    (<_Node>root.prev).next = <PyObject*>node
    root.prev = <PyObject*>node


def _check_maxsize(maxsize):
    if isinstance(maxsize, bool) or not isinstance(maxsize, int):
        raise TypeError(MSG_NOT_INT.format(name="maxsize", type=type(maxsize).__name__))
    if maxsize < 0:
        raise ValueError(MSG_NEGATIVE.format(name="maxsize", value=maxsize))
    return int(maxsize)


def _check_dispose_func(dispose_func):
    if dispose_func is not None and not callable(dispose_func):
        raise TypeError(
            MSG_NOT_CALLABLE.format(name="dispose_func", type=type(dispose_func).__name__)
        )


@cython.auto_pickle(False)
cdef class LRUMap:
    """A thread-safe mapping that keeps at most ``maxsize`` keys, dropping the least recently used.

    ``LRUMap(maxsize=10, dispose_func=None)``: ``dispose_func(value)`` is called for every value
    that leaves the map, after the map's state is final. Behaves like urllib3's
    ``RecentlyUsedContainer``; ``key in m`` refreshes recency as it does there. ``keys()``,
    ``values()`` and ``items()`` are snapshot lists, least recent first. Keys are expected to be
    builtins (tuples, str, int and the like) whose hash and equality run no Python code. See
    ``fastpool._lru_py.LRUMap`` for the full contract; both backends behave the same.
    """

    cdef dict _map
    cdef _Node _root
    cdef Py_ssize_t _limit      # maxsize clamped to Py_ssize_t, for the hot comparison
    cdef object _maxsize        # maxsize as given (an int of any size)
    cdef object _dispose_func

    def __cinit__(self, *args, **kwargs):
        # The structure exists even if __init__ is skipped (LRUMap.__new__), so no C-level
        # access ever meets a None.
        self._map = {}
        self._root = _Node()
        self._root.prev = self._root.next = <PyObject*>self._root
        self._maxsize = 0

    def __init__(self, maxsize=10, dispose_func=None):
        maxsize = _check_maxsize(maxsize)
        _check_dispose_func(dispose_func)
        self._maxsize = maxsize
        self._limit = PY_SSIZE_T_MAX if maxsize > PY_SSIZE_T_MAX else maxsize
        self._dispose_func = dispose_func

    @property
    def maxsize(self):
        """The most keys the map holds (read-only; default 10)."""
        return self._maxsize

    @property
    def dispose_func(self):
        """Called with every value that leaves the map, or None (default)."""
        return self._dispose_func

    @dispose_func.setter
    def dispose_func(self, dispose_func):
        _check_dispose_func(dispose_func)
        self._dispose_func = dispose_func

    cdef inline _Node _lookup(self, key):
        # A borrowed pointer from the dict; NULL with no error set means "missing".
        cdef PyObject* found = PyDict_GetItemWithError(self._map, key)
        if found is NULL:
            return None
        return <_Node>found

    cdef inline void _touch(self, _Node node) noexcept:
        if node.next != <PyObject*>self._root:
            _unlink(node)
            _link_last(self._root, node)

    cdef inline int _dispose(self, value) except -1:
        dispose_func = self._dispose_func
        if dispose_func:
            dispose_func(value)
        return 0

    def __getitem__(self, key):
        """Return the value for ``key`` and make it the most recent; KeyError if missing."""
        cdef _Node node = self._lookup(key)
        if node is None:
            raise KeyError(key)
        self._touch(node)
        return node.value

    def get(self, key, default=None):
        """Return the value for ``key`` (making it the most recent), or ``default`` (None)."""
        cdef _Node node = self._lookup(key)
        if node is None:
            return default
        self._touch(node)
        return node.value

    def __contains__(self, key):
        """Whether ``key`` is present; a hit makes it the most recent, as in urllib3."""
        cdef _Node node = self._lookup(key)
        if node is None:
            return False
        self._touch(node)
        return True

    def __setitem__(self, key, value):
        """Set ``key`` (the most recent now); dispose a replaced value or an evicted one."""
        # Allocate before the lookup: an allocation may start the cyclic GC, which may run
        # finalizers, which may change the map; after the lookup nothing may run.
        cdef _Node fresh = _Node()
        cdef _Node evicted
        cdef _Node node = self._lookup(key)
        if node is not None:
            removed = node.value          # held here, so the swap below deallocates nothing
            node.value = value
            self._touch(node)
            self._dispose(removed)
            return
        node = fresh
        node.key = key
        node.value = value
        PyDict_SetItem(self._map, key, node)
        _link_last(self._root, node)
        if len(self._map) > self._limit:
            evicted = <_Node>self._root.next
            _unlink(evicted)
            # ``evicted`` holds the node, so removing it from the dict deallocates nothing.
            PyDict_DelItem(self._map, evicted.key)
            self._dispose(evicted.value)

    def __delitem__(self, key):
        """Remove ``key`` and dispose its value; KeyError if missing."""
        cdef _Node node = self._lookup(key)
        if node is None:
            raise KeyError(key)
        _unlink(node)
        PyDict_DelItem(self._map, node.key)
        self._dispose(node.value)

    def pop(self, key, default=_MISSING):
        """Remove ``key``, dispose its value and return it; ``default`` (or KeyError) if missing."""
        cdef _Node node = self._lookup(key)
        if node is None:
            if default is not _MISSING:
                return default
            raise KeyError(key)
        _unlink(node)
        PyDict_DelItem(self._map, node.key)
        self._dispose(node.value)
        return node.value

    def clear(self):
        """Remove every entry, disposing the values least recent first."""
        cdef dict fresh = {}             # allocated before the walk (see _snapshot)
        values = self._snapshot(1)
        # The old dict (and its nodes) stays alive until we return, so nothing is freed here.
        old = self._map
        self._map = fresh
        self._root.prev = self._root.next = <PyObject*>self._root
        for value in values:
            self._dispose(value)
        del old

    def __len__(self):
        """The number of entries."""
        return len(self._map)

    cdef list _snapshot(self, int field):
        # field 0: keys, 1: values. The list exists before the walk, and appending to it
        # allocates no GC-tracked object, so no other code can run mid-walk.
        cdef list out = []
        cdef PyObject* cursor = self._root.next
        while cursor != <PyObject*>self._root:
            out.append((<_Node>cursor).key if field == 0 else (<_Node>cursor).value)
            cursor = (<_Node>cursor).next
        return out

    def keys(self):
        """A snapshot list of the keys, least recent first (urllib3 returns a set)."""
        return self._snapshot(0)

    def values(self):
        """A snapshot list of the values, least recent first."""
        return self._snapshot(1)

    def items(self):
        """A snapshot list of ``(key, value)`` pairs, least recent first."""
        cdef list keys = []
        cdef list values = []
        cdef PyObject* cursor = self._root.next
        while cursor != <PyObject*>self._root:
            keys.append((<_Node>cursor).key)
            values.append((<_Node>cursor).value)
            cursor = (<_Node>cursor).next
        # The pairs are built after the walk: tuples are GC-tracked allocations.
        return list(zip(keys, values))

    def __iter__(self):
        """Iterate a snapshot of the keys, least recent first (urllib3 raises instead)."""
        return iter(self._snapshot(0))

    @classmethod
    def __class_getitem__(cls, item):
        """``LRUMap[K, V]`` in annotations, as with the pure twin."""
        return GenericAlias(cls, item)

    def __repr__(self):
        return f"<{type(self).__name__} len={len(self._map)} maxsize={self._maxsize}>"
