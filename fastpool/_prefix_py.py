"""PrefixRouter, the pure-Python twin: the matcher behind ``Session.mount``/``get_adapter``.

It gives exactly the answers of requests' ``Session.get_adapter``: requests keeps its adapters
ordered by descending ``len(prefix)`` (ties in first-mount order) and returns the first one with
``url.lower().startswith(prefix.lower())``. Walking every mount makes that cost grow with the
number of mounts; here the lower-cased prefixes live in a radix tree that the lower-cased URL
walks once, so a match costs the same for 2 mounts or 10,000.

Lower-casing is Unicode-aware and can change lengths (``"İ".lower()`` is two characters) and
depends on context (a final ``"Σ"`` lowers to ``"ς"``), so both the URL and each prefix are
lowered whole, as requests does, and ranking uses the ORIGINAL prefix length: the deepest node
reached is not necessarily the winner. Every node keeps its best entry; the walk keeps the best
one it passes.

The compiled ``_prefix_c.PrefixRouter`` behaves the same; this module is the typed source of truth.
"""

from __future__ import annotations

import itertools
import threading
from typing import Generic, TypeVar

from .exceptions import MSG_NO_MATCH, MSG_NOT_STR, NoMatchError

__all__ = ("PrefixRouter",)

V = TypeVar("V")

_SMALL = 8  # up to this many mounts, match() scans them in requests' order
D = TypeVar("D")


class _Entry(Generic[V]):
    """One mounted prefix: its value and its rank in requests' order."""

    __slots__ = ("length", "lowered", "prefix", "seq", "value")

    def __init__(self, prefix: str, value: V, seq: int) -> None:
        self.prefix = prefix
        self.lowered = prefix.lower()
        self.value = value
        self.length = len(prefix)
        self.seq = seq

    def beats(self, other: _Entry[V] | None) -> bool:
        """Whether requests would try this entry before ``other`` (longer first, then older)."""
        return (
            other is None
            or self.length > other.length
            or (self.length == other.length and self.seq < other.seq)
        )


class _Node(Generic[V]):
    """A radix-tree node: ``label`` is the lower-cased text on the edge from its parent."""

    __slots__ = ("best", "children", "entries", "label")

    def __init__(self, label: str) -> None:
        self.label = label
        self.children: dict[str, _Node[V]] = {}  # first character of the child's label -> child
        self.entries: list[_Entry[V]] = []  # prefixes that lower to this node's path
        self.best: _Entry[V] | None = None

    def rank_entries(self) -> None:
        best = None
        for entry in self.entries:
            if entry.beats(best):
                best = entry
        self.best = best


def _check_str(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(MSG_NOT_STR.format(name=name, type=type(value).__name__))


def _common_length(label: str, text: str, start: int) -> int:
    """How many leading characters ``label`` shares with ``text[start:]``."""
    n = 0
    for a, b in zip(label, text[start : start + len(label)]):
        if a != b:
            break
        n += 1
    return n


class PrefixRouter(Generic[V]):
    """Maps URL prefixes to values and matches URLs exactly as requests' ``get_adapter`` does.

    ``PrefixRouter()`` starts empty. ``mount(prefix, value)`` adds or replaces a prefix (a
    remount keeps the prefix's place among equal lengths); ``match(url)`` returns the value of
    the longest matching prefix, compared case-insensitively (``str.lower``), ties to the
    earliest mounted, and raises ``NoMatchError`` when nothing matches. ``prefixes()`` and
    ``items()`` list the prefixes in requests' ``Session.adapters`` order. ``get``, ``in`` and
    ``unmount`` take the exact prefix string. A match costs the same however many prefixes are
    mounted.
    """

    __slots__ = ("_entries", "_lock", "_root", "_seq", "_small")

    def __init__(self) -> None:
        self._entries: dict[str, _Entry[V]] = {}  # exact prefix -> entry, in mount order
        self._root: _Node[V] = _Node("")
        self._seq = itertools.count()
        # A split or a fold passes through states a concurrent walk must not see. (The compiled
        # router needs no lock: no Python code runs while its tree is inconsistent.)
        self._lock = threading.Lock()
        # With a handful of mounts (a Session has two) a plain scan in requests' order beats the
        # walk in pure Python; the answers are the same. None when there are more.
        self._small: tuple[_Entry[V], ...] | None = ()

    def _rescan(self) -> None:
        """Refresh the small-set scan list; called under the lock after every change."""
        if len(self._entries) > _SMALL:
            self._small = None
        else:
            self._small = tuple(sorted(self._entries.values(), key=lambda entry: -entry.length))

    def mount(self, prefix: str, value: V) -> None:
        """Route URLs starting with ``prefix`` (any case) to ``value``; TypeError unless a str."""
        _check_str("prefix", prefix)
        with self._lock:
            entry = self._entries.get(prefix)
            if entry is not None:
                entry.value = value  # as requests: the prefix keeps its place
                return
            entry = _Entry(prefix, value, next(self._seq))
            node = self._node_for(entry.lowered)
            node.entries.append(entry)
            node.rank_entries()
            self._entries[prefix] = entry
            self._rescan()

    def _node_for(self, lowered: str) -> _Node[V]:
        """The node whose path is ``lowered``, splitting an edge or adding a leaf as needed."""
        node = self._root
        pos = 0
        while pos < len(lowered):
            child = node.children.get(lowered[pos])
            if child is None:
                leaf: _Node[V] = _Node(lowered[pos:])
                node.children[lowered[pos]] = leaf
                return leaf
            shared = _common_length(child.label, lowered, pos)
            if shared < len(child.label):
                middle: _Node[V] = _Node(child.label[:shared])
                child.label = child.label[shared:]
                middle.children[child.label[0]] = child
                node.children[lowered[pos]] = middle
                child = middle
            node = child
            pos += shared
        return node

    def unmount(self, prefix: str) -> V:
        """Remove the exact ``prefix`` and return its value; KeyError if it is not mounted."""
        _check_str("prefix", prefix)
        with self._lock:
            entry = self._entries.pop(prefix, None)
            if entry is None:
                raise KeyError(prefix)
            self._remove(entry)
            self._rescan()
        return entry.value

    def _remove(self, entry: _Entry[V]) -> None:
        """Take ``entry`` off its node and prune the nodes left without a purpose."""
        # The path from the root to the entry's node, to prune what is left empty.
        path = [self._root]
        pos = 0
        while pos < len(entry.lowered):
            child = path[-1].children[entry.lowered[pos]]
            path.append(child)
            pos += len(child.label)
        node = path[-1]
        node.entries.remove(entry)
        node.rank_entries()
        for depth in range(len(path) - 1, 0, -1):
            node, parent = path[depth], path[depth - 1]
            if node.entries or len(node.children) > 1:
                break
            if node.children:
                # One child and nothing of its own: fold this node into the child.
                (child,) = node.children.values()
                child.label = node.label + child.label
                parent.children[node.label[0]] = child
                break
            del parent.children[node.label[0]]

    def match(self, url: str) -> V:
        """The value of the first prefix requests would pick for ``url``; NoMatchError if none."""
        _check_str("url", url)
        lowered = url.lower()
        small = self._small  # one read: a consistent snapshot without the lock
        if small is not None:
            for entry in small:
                if lowered.startswith(entry.lowered):
                    return entry.value
            raise NoMatchError(MSG_NO_MATCH.format(url=url))
        end = len(lowered)
        pos = 0
        with self._lock:
            node = self._root
            best = node.best
            while pos < end:
                child = node.children.get(lowered[pos])
                if child is None or not lowered.startswith(child.label, pos):
                    break
                node = child
                pos += len(child.label)
                if node.best is not None and node.best.beats(best):
                    best = node.best
        if best is None:
            raise NoMatchError(MSG_NO_MATCH.format(url=url))
        return best.value

    def get(self, prefix: str, default: D | None = None) -> V | D | None:
        """The value mounted at exactly ``prefix``, or ``default`` (None)."""
        entry = self._entries.get(prefix)
        return default if entry is None else entry.value

    def __contains__(self, prefix: object) -> bool:
        """Whether exactly ``prefix`` is mounted."""
        return prefix in self._entries

    def __len__(self) -> int:
        """The number of mounted prefixes."""
        return len(self._entries)

    def _ordered(self) -> list[_Entry[V]]:
        # requests' Session.adapters order: longest first, ties in mount order (sorted is stable).
        with self._lock:
            entries = list(self._entries.values())
        return sorted(entries, key=lambda entry: -entry.length)

    def prefixes(self) -> list[str]:
        """The mounted prefixes in requests' ``Session.adapters`` order."""
        return [entry.prefix for entry in self._ordered()]

    def items(self) -> list[tuple[str, V]]:
        """``(prefix, value)`` pairs in requests' ``Session.adapters`` order."""
        return [(entry.prefix, entry.value) for entry in self._ordered()]

    def clear(self) -> None:
        """Unmount every prefix."""
        with self._lock:
            self._entries = {}
            self._root = _Node("")
            self._small = ()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} len={len(self._entries)}>"
