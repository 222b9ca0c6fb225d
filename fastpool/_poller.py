"""The loop's readiness poller: epoll itself where there is one, else :mod:`selectors` in
epoll's shape.

On Linux the loop calls ``select.epoll`` directly: the selectors wrapper costs more than the
system calls it wraps (a key object per event), and an idle connection's socket may stay
registered between requests, since closing it unregisters it (:func:`drops_closed`). On
macOS (kqueue), Windows (select) and elsewhere, :class:`SelectorPoller` gives the selectors
default the same four methods and epoll's event bits.
"""

from __future__ import annotations

import math
import os
import select
import selectors
import weakref
from typing import Any

__all__ = (
    "MAX_EVENTS",
    "READ",
    "SEEN_FOR",
    "WRITE",
    "SelectorPoller",
    "drops_closed",
    "new_poller",
    "poll_timeout",
    "unpark_at_fork",
)

#: epoll's (and poll's) bits: readable, writable. Any other bit (an error, a hang-up) means
#: both, as selectors reads them.
READ = 0x001
WRITE = 0x004

#: The most events one wait returns. A wait that returns fewer reported every socket ready at
#: that moment, so what it did not report had nothing to read (the loop's ``seen_idle``).
MAX_EVENTS = 1024

#: How long, in seconds, a complete wait's word that an idle connection had nothing to read
#: stands in for the pool's liveness check (a ``poll`` of the socket) before a reuse, counted
#: from when that wait began. The check itself races the server as closely: what arrives
#: between it and the request sent is met the same way (a replay for a request that may be
#: sent again). Kept small, so a caller that holds a map's iterator longer finds the check
#: made again. Read at each use.
SEEN_FOR = 0.005


def new_poller() -> Any:
    """``select.epoll()`` on Linux, else a :class:`SelectorPoller`."""
    if hasattr(select, "epoll"):
        return select.epoll()
    return SelectorPoller()


def drops_closed(poller: Any) -> bool:
    """Whether closing a socket takes it off ``poller`` by itself (epoll). Only then may a
    socket stay registered while nobody watches it: a selector keeps a closed descriptor,
    and fails on it."""
    return hasattr(select, "epoll") and isinstance(poller, select.epoll)


# Idle sockets left registered ("parked") and fork(). epoll keys a registration by the open
# file, not by the number: once a child shares a socket, the parent's close no longer ends
# its registration, whose events then come under a number a new socket may take. A loop
# unregisters what it has parked at each fork (before it, from the loop's own thread; else at
# its next poll, as FORKS changed), and a registration left behind all the same (a socket in
# flight at the fork, parked and closed later while the child lives) is found by the loop and
# ended with a new poller (the loops' _rebuild). The count goes up before the fork, so the
# child sees it too.

#: fork()s so far in this process and its ancestors.
FORKS = 0
#: Loops that may hold idle sockets registered (see :func:`unpark_at_fork`).
_PARKING: weakref.WeakSet[Any] = weakref.WeakSet()


def unpark_at_fork(loop: Any) -> None:
    """Call ``loop._unpark_all()`` before each ``fork()`` while ``loop`` lives (it acts when
    the forking thread is the loop's own; a loop notices a fork made by another thread at its
    next poll, through :data:`FORKS`)."""
    _PARKING.add(loop)


def _before_fork() -> None:
    global FORKS
    FORKS += 1
    for loop in list(_PARKING):
        loop._unpark_all()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork)


#: The longest single wait, in milliseconds: epoll takes an int of them (about 24.8 days at
#: most). A longer timer only means another wait after this one.
_LONGEST_WAIT_MS = 86_400_000


def poll_timeout(timeout: float | None) -> float | None:
    """A wait in seconds for ``poll``: None (no limit), 0 for a negative one (epoll would read
    it as "forever"), else rounded up to epoll's millisecond (a timer due in 0.3 ms must not
    turn into a zero wait and a busy loop until it is due; selectors does the same), and at
    most a day."""
    if timeout is None:
        return None
    if not timeout > 0:
        return 0.0
    return min(math.ceil(timeout * 1e3), _LONGEST_WAIT_MS) * 1e-3


class SelectorPoller:
    """``selectors.DefaultSelector`` behind epoll's methods, by file descriptor."""

    __slots__ = ("_selector",)

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()

    @staticmethod
    def _selector_events(events: int) -> int:
        return (selectors.EVENT_READ if events & READ else 0) | (
            selectors.EVENT_WRITE if events & WRITE else 0
        )

    def register(self, fd: int, events: int) -> None:
        """Watch ``fd`` for ``events`` (``READ``, ``WRITE``)."""
        self._selector.register(fd, self._selector_events(events))

    def modify(self, fd: int, events: int) -> None:
        """Watch ``fd`` for other ``events``."""
        self._selector.modify(fd, self._selector_events(events))

    def unregister(self, fd: int) -> None:
        """Stop watching ``fd``."""
        self._selector.unregister(fd)

    def poll(self, timeout: float | None = None, maxevents: int = -1) -> list[tuple[int, int]]:
        """Wait up to ``timeout`` seconds (None: no limit); ``(fd, events)`` of the ready
        (all of them: ``maxevents`` is epoll's, and nothing parks on a selector)."""
        ready = self._selector.select(timeout)
        return [
            (
                key.fd,
                (READ if events & selectors.EVENT_READ else 0)
                | (WRITE if events & selectors.EVENT_WRITE else 0),
            )
            for key, events in ready
        ]

    def close(self) -> None:
        """Release the selector."""
        self._selector.close()
