"""Connection racing for a host with several addresses: Happy Eyeballs (RFC 8305 section 5).

:func:`race` starts a TCP connect to the first address and, each time ``delay`` seconds pass
without an attempt ending, one to the next address, all in parallel; an attempt that fails starts
the next one at once. The first connection established wins and every other attempt is closed
at once. The attempts are non-blocking sockets watched by one selector in the calling thread (no
threads), and ``timeout`` bounds the whole race, as Go's ``net.Dialer.Timeout`` does.

Only the standard library: the caller (:meth:`fastpool.connection.HTTPConnection._dial`) turns
the two ways a race fails into urllib3's exceptions. Every socket opened here is returned (the
winner) or closed, whatever is raised, ``KeyboardInterrupt`` included.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import sys
from collections.abc import Sequence
from time import monotonic
from typing import Any

__all__ = ["attempt", "race"]

#: What a non-blocking connect() answers while the handshake goes on (EINTR too: the connect
#: goes on in the background, PEP 475 / CPython issue 23618); Windows says WSAEWOULDBLOCK. On
#: Linux EAGAIN from connect() means no free local port, a failure.
_IN_PROGRESS = frozenset(
    {errno.EINPROGRESS, errno.EINTR} | ({errno.EWOULDBLOCK} if sys.platform == "win32" else set())
)

# poll(2) for a handful of sockets: no extra file descriptor, unlike epoll; select() elsewhere
# (selectors reports a socket whose connect failed as writable in both).
_Selector: type[selectors.BaseSelector] = getattr(
    selectors, "PollSelector", selectors.DefaultSelector
)


def race(
    infos: Sequence[tuple[Any, ...]],
    timeout: float | None,
    delay: float,
    socket_options: Sequence[tuple[int, int, int | bytes]] | None,
    source_address: tuple[str, int] | None,
) -> socket.socket:
    """Race TCP connects to ``infos`` (getaddrinfo tuples, in the order to try them) and return
    the first socket connected, in blocking mode with ``timeout`` set (as ``settimeout``).

    Each attempt gets ``socket_options`` and binds ``source_address``; an address whose family
    the source address cannot bind fails like an attempt that was refused. Raises
    ``socket.timeout`` when ``timeout`` seconds passed with no connection (attempts still going
    or not yet started), else the last attempt's ``OSError`` when every attempt failed.
    """
    deadline = None if timeout is None else monotonic() + timeout
    opened: set[socket.socket] = set()  # every socket not yet closed: closed on the way out
    selector = _Selector()
    last: OSError | None = None
    count = len(infos)
    started = 0
    next_start = 0.0  # monotonic() time the next attempt starts by (0: at once)
    try:
        while True:
            in_flight = bool(selector.get_map())
            if not in_flight and started == count:
                assert last is not None
                raise last
            now = monotonic()
            if deadline is not None and now >= deadline:
                raise socket.timeout("timed out")
            # The next attempt starts when its turn came or nothing is in flight; one that fails
            # at once (refused, a family source_address cannot bind) starts the one after it.
            while started < count and (not in_flight or now >= next_start):
                started += 1
                try:
                    sock = attempt(infos[started - 1], socket_options, source_address, opened)
                except OSError as e:
                    last = e
                    continue
                selector.register(sock, selectors.EVENT_WRITE)
                in_flight = True
                next_start = now + delay
            if not in_flight:
                continue  # every attempt failed at once: raise the last error above
            wait = None if deadline is None else deadline - now
            if started < count:
                wait = next_start - now if wait is None else min(wait, next_start - now)
            for key, _ in selector.select(wait):
                sock = key.fileobj  # type: ignore[assignment]
                selector.unregister(sock)
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code == 0:  # the winner, as a blocking dial returns it
                    sock.settimeout(timeout)
                    opened.discard(sock)
                    return sock
                last = OSError(code, os.strerror(code))
                opened.discard(sock)
                sock.close()
                next_start = 0.0  # a failed attempt starts the next one at once
    finally:
        selector.close()
        for sock in opened:  # the losers, or all of them on an error
            sock.close()


def attempt(
    info: tuple[Any, ...],
    socket_options: Sequence[tuple[int, int, int | bytes]] | None,
    source_address: tuple[str, int] | None,
    opened: set[socket.socket],
) -> socket.socket:
    """A non-blocking socket (added to ``opened``) whose connect to ``info``'s address is under
    way; raises the ``OSError`` of an attempt that failed at once (its socket closed)."""
    family, type_, proto, _, addr = info
    sock = socket.socket(family, type_, proto)
    opened.add(sock)
    try:
        if socket_options:
            for opt in socket_options:
                sock.setsockopt(*opt)
        sock.setblocking(False)
        if source_address:
            sock.bind(source_address)
        code = sock.connect_ex(addr)
        if code and code not in _IN_PROGRESS:
            raise OSError(code, os.strerror(code))
    except BaseException:  # an OSError, or a bad option or address (TypeError, OverflowError)
        opened.discard(sock)
        sock.close()
        raise
    return sock
