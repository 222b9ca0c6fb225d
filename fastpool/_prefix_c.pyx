# cython: language_level=3, embedsignature=True
"""PrefixRouter, compiled: the matcher behind ``Session.mount``/``get_adapter``.

Same observable behaviour and the same radix tree as the pure twin ``_prefix_py.PrefixRouter``
(the typed source of truth; read its docstring for the semantics and why ranking uses the
original prefix length). Here the match walk reads the lower-cased URL in C.

No lock: each call holds the GIL throughout, and while a mount or unmount has the tree in an
intermediate state (an edge being split or folded) it runs no Python code: objects that could
start the cyclic GC are allocated before the tree is touched, and only strings are created
in between. Prefixes and URLs are expected to be plain ``str``.
"""

cimport cython
from cpython.dict cimport PyDict_GetItemWithError
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_Tailmatch

from types import GenericAlias

from .exceptions import MSG_NO_MATCH, MSG_NOT_STR, NoMatchError

__all__ = ("PrefixRouter",)


@cython.final
@cython.auto_pickle(False)
cdef class _Entry:
    cdef str prefix
    cdef str lowered
    cdef object value
    cdef Py_ssize_t length
    cdef unsigned long long seq

    cdef inline bint beats(self, _Entry other) noexcept:
        # Whether requests would try this entry before ``other`` (longer first, then older).
        return (
            other is None
            or self.length > other.length
            or (self.length == other.length and self.seq < other.seq)
        )


@cython.final
@cython.auto_pickle(False)
cdef class _Node:
    cdef str label                # lower-cased text on the edge from the parent
    cdef dict children            # first character of the child's label -> child
    cdef list entries             # prefixes that lower to this node's path
    cdef _Entry best

    def __cinit__(self, str label):
        self.label = label
        self.children = {}
        self.entries = []
        self.best = None

    cdef void rank_entries(self) noexcept:
        cdef _Entry best = None
        cdef _Entry entry
        for entry in self.entries:
            if entry.beats(best):
                best = entry
        self.best = best


cdef inline int _check_str(str name, object value) except -1:
    if not isinstance(value, str):
        raise TypeError(MSG_NOT_STR.format(name=name, type=type(value).__name__))
    return 0


cdef Py_ssize_t _common_length(str label, str text, Py_ssize_t start):
    # How many leading characters ``label`` shares with ``text[start:]``.
    cdef Py_ssize_t n = 0
    cdef Py_ssize_t limit = min(len(label), len(text) - start)
    while n < limit and label[n] == text[start + n]:
        n += 1
    return n


def _by_length(_Entry entry):
    return -entry.length


@cython.auto_pickle(False)
cdef class PrefixRouter:
    """Maps URL prefixes to values and matches URLs exactly as requests' ``get_adapter`` does.

    ``PrefixRouter()`` starts empty. ``mount(prefix, value)`` adds or replaces a prefix (a
    remount keeps the prefix's place among equal lengths); ``match(url)`` returns the value of
    the longest matching prefix, compared case-insensitively (``str.lower``), ties to the
    earliest mounted, and raises ``NoMatchError`` when nothing matches. ``prefixes()`` and
    ``items()`` list the prefixes in requests' ``Session.adapters`` order. ``get``, ``in`` and
    ``unmount`` take the exact prefix string. A match costs the same however many prefixes are
    mounted.
    """

    cdef dict _entries            # exact prefix -> entry, in mount order
    cdef _Node _root
    cdef unsigned long long _seq

    def __cinit__(self):
        # In __cinit__, so the tree exists even if __init__ is skipped (PrefixRouter.__new__).
        self._entries = {}
        self._root = _Node("")
        self._seq = 0

    def mount(self, prefix, value):
        """Route URLs starting with ``prefix`` (any case) to ``value``; TypeError unless a str."""
        _check_str("prefix", prefix)
        cdef _Entry entry = self._entries.get(prefix)
        if entry is not None:
            entry.value = value  # as requests: the prefix keeps its place
            return
        entry = _Entry()
        entry.prefix = prefix
        entry.lowered = prefix.lower()
        entry.value = value
        entry.length = len(prefix)
        entry.seq = self._seq
        self._seq += 1
        cdef _Node node = self._node_for(entry.lowered)
        node.entries.append(entry)
        node.rank_entries()
        self._entries[prefix] = entry

    cdef _Node _node_for(self, str lowered):
        # The node whose path is ``lowered``, splitting an edge or adding a leaf as needed.
        cdef _Node node = self._root
        cdef _Node child, middle, leaf
        cdef Py_ssize_t pos = 0, shared
        cdef Py_ssize_t end = len(lowered)
        while pos < end:
            first = lowered[pos:pos + 1]
            child = node.children.get(first)
            if child is None:
                leaf = _Node(lowered[pos:])
                node.children[first] = leaf
                return leaf
            shared = _common_length(child.label, lowered, pos)
            if shared < len(child.label):
                middle = _Node(child.label[:shared])
                child.label = child.label[shared:]
                middle.children[child.label[:1]] = child
                node.children[first] = middle
                child = middle
            node = child
            pos += shared
        return node

    def unmount(self, prefix):
        """Remove the exact ``prefix`` and return its value; KeyError if it is not mounted."""
        _check_str("prefix", prefix)
        cdef _Entry entry = self._entries.pop(prefix, None)
        if entry is None:
            raise KeyError(prefix)
        # The path from the root to the entry's node, to prune what is left empty.
        cdef list path = [self._root]
        cdef _Node node, parent, child
        cdef Py_ssize_t pos = 0, depth
        while pos < len(entry.lowered):
            child = (<_Node>path[-1]).children[entry.lowered[pos:pos + 1]]
            path.append(child)
            pos += len(child.label)
        node = path[-1]
        node.entries.remove(entry)
        node.rank_entries()
        for depth in range(len(path) - 1, 0, -1):
            node = path[depth]
            parent = path[depth - 1]
            if node.entries or len(node.children) > 1:
                break
            if node.children:
                # One child and nothing of its own: fold this node into the child.
                child = next(iter(node.children.values()))
                child.label = node.label + child.label
                parent.children[node.label[:1]] = child
                break
            del parent.children[node.label[:1]]
        return entry.value

    def match(self, url):
        """The value of the first prefix requests would pick for ``url``; NoMatchError if none."""
        if not isinstance(url, str):
            _check_str("url", url)
        cdef str lowered = url.lower()
        cdef Py_ssize_t end = len(lowered)
        cdef Py_ssize_t pos = 0
        cdef _Node node = self._root
        cdef _Entry best = node.best
        cdef PyObject* found
        while pos < end:
            found = PyDict_GetItemWithError(node.children, lowered[pos])
            if found is NULL:
                break
            node = <_Node>found
            if not PyUnicode_Tailmatch(lowered, node.label, pos, end, -1):
                break
            pos += len(node.label)
            if node.best is not None and node.best.beats(best):
                best = node.best
        if best is None:
            raise NoMatchError(MSG_NO_MATCH.format(url=url))
        return best.value

    def get(self, prefix, default=None):
        """The value mounted at exactly ``prefix``, or ``default`` (None)."""
        cdef _Entry entry = self._entries.get(prefix)
        return default if entry is None else entry.value

    def __contains__(self, prefix):
        """Whether exactly ``prefix`` is mounted."""
        return prefix in self._entries

    def __len__(self):
        """The number of mounted prefixes."""
        return len(self._entries)

    cdef list _ordered(self):
        # requests' Session.adapters order: longest first, ties in mount order (sorted is stable).
        cdef list entries = list(self._entries.values())
        entries.sort(key=_by_length)
        return entries

    def prefixes(self):
        """The mounted prefixes in requests' ``Session.adapters`` order."""
        return [(<_Entry>entry).prefix for entry in self._ordered()]

    def items(self):
        """``(prefix, value)`` pairs in requests' ``Session.adapters`` order."""
        return [((<_Entry>entry).prefix, (<_Entry>entry).value) for entry in self._ordered()]

    def clear(self):
        """Unmount every prefix."""
        # Both allocated first: an allocation may start the GC, whose finalizers may match.
        cdef dict entries = {}
        cdef _Node root = _Node("")
        self._entries = entries
        self._root = root

    @classmethod
    def __class_getitem__(cls, item):
        """``PrefixRouter[V]`` in annotations, as with the pure twin."""
        return GenericAlias(cls, item)

    def __repr__(self):
        return f"<{type(self).__name__} len={len(self._entries)}>"
