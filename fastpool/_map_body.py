"""A response's body read piece by piece for ``map(on_body=...)`` (the runner is
:mod:`fastpool.multi`).

fastpool's own response is read on its socket made non-blocking: each read takes what has
arrived, and a read that would block leaves the body to wait in the loop
(``Loop.when_ready``) until its socket is ready. Any other response (a mock's, a foreign
adapter's, or one whose body a tool wrapped) is read whole in the calling thread, as requests'
``iter_content`` reads it.
"""

from __future__ import annotations

import functools
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any

from ._loop import Exchange
from .connection import UNSET_TIMEOUT
from .response import WOULD_BLOCK, HTTPResponse

__all__ = ("END", "FAILED", "READABLE", "TURN", "WRITABLE", "Body")

#: what :meth:`Body.read` stopped at: the body ended, it failed (``Body.error``), its turn
#: ended with more to read, or its socket must be readable (writable, for TLS) first
END, FAILED, TURN, READABLE, WRITABLE = "end", "failed", "turn", "readable", "writable"

#: pieces a body gets before the others get a turn (a fast, long body would hold up the loop)
_TURN = 16
_PIECE = 65536


class Body:
    """The body of ``result``'s response (``raw``: its urllib3-style response), read for
    ``on_body``; waiting in the loop as the tag of ``exchange``. ``decode``: as
    ``read(decode_content=...)`` takes it."""

    __slots__ = ("decode", "error", "exchange", "job", "pieces", "raw", "result")

    def __init__(self, job: Any, result: Any, raw: Any, decode: bool | None) -> None:
        self.job = job
        self.result = result
        self.raw = raw
        self.decode = decode
        self.error: Exception | None = None
        #: the pieces of a body read whole in this thread (None: read on its own socket)
        self.pieces: Iterator[bytes] | None = None
        conn: Any = None
        read_timeout = None
        if _reads_without_blocking(raw):
            # The read timeout urlopen set; the loop keeps it between pieces. (0.0 when the
            # loop read the whole answer and urlopen set none: no piece is then waited for.)
            conn = raw._connection
            sock = conn.sock
            read_timeout = sock.gettimeout()
            sock.setblocking(False)
            conn._sock_timeout = UNSET_TIMEOUT  # non-blocking now: settimeout() sets it anew
        elif raw is not None:
            self.pieces = _pieces(raw, decode)
        self.exchange = Exchange(conn, "BODY", b"", read_timeout=read_timeout, tag=self)

    def read(self, on_body: Callable[[Any, Any, bytes], Any]) -> str:
        """Hand the pieces that have arrived to ``on_body``; what it stopped at (``END``,
        ``FAILED``, ``TURN``, ``READABLE``, ``WRITABLE``). What ``on_body`` raises is raised."""
        request, response = self.result.request, self.result.response
        if self.raw is None:  # an adapter's response with no body object: nothing to read
            return END
        pieces = self.pieces
        if pieces is None:  # on its own socket: what has arrived, then its turn is over
            read, turn = (
                functools.partial(self.raw.read1, _PIECE, decode_content=self.decode),
                _TURN,
            )
        else:  # whole, in this thread
            read, turn = functools.partial(next, pieces, b""), -1
        while turn:
            try:
                piece = read()
            except WOULD_BLOCK as e:
                if pieces is None:
                    return WRITABLE if isinstance(e, ssl.SSLWantWriteError) else READABLE
                self.error = e  # no socket of ours to wait for
                return FAILED
            except Exception as e:  # noqa: BLE001 - the request's outcome
                self.error = e
                return FAILED
            if not piece:
                return END
            on_body(request, response, piece)
            turn -= 1
        return TURN

    def ended(self) -> None:
        """Its result is out: nothing here refers back to it (no cycle to wait for the
        collector, with a response and its connection in it)."""
        self.exchange.tag = None

    def _loop_abandon(self, exchange: Exchange) -> None:
        """Cancelled (the map was left, or the deadline passed): the connection is closed
        and its slot given back, as when a response is closed before its end."""
        raw = self.raw
        try:
            if type(raw) is HTTPResponse:
                raw._abandon()
            elif raw is not None:
                raw.close()
        except Exception:  # noqa: BLE001, S110 - nothing to report it to: it was cancelled
            pass


def _reads_without_blocking(raw: Any) -> bool:
    """Whether ``raw`` is fastpool's response reading its own live socket (not through a
    tool's wrapper), so its pieces can be read as the loop finds them there."""
    if type(raw) is not HTTPResponse or raw._fp_wrapper is not None:
        return False
    conn = raw._connection
    if conn is None:
        return False
    sock = conn.sock
    return sock is not None and (type(sock) is socket.socket or isinstance(sock, ssl.SSLSocket))


def _pieces(raw: Any, decode: bool | None) -> Iterator[bytes]:
    """The body's pieces as requests' ``iter_content`` reads them: ``stream()`` where the
    object has it, else ``read()`` until it gives nothing."""
    if hasattr(raw, "stream"):
        return iter(raw.stream(_PIECE, decode_content=decode))
    return iter(lambda: raw.read(_PIECE), b"")
