"""The FaultServer: a raw-socket server that runs a script per connection (close, reset, stall,
malformed bytes...), and the common scripts :func:`close_after` and :func:`send_raw`."""

from __future__ import annotations

import ssl
from typing import Callable

from .server import Conn, _Server

__all__ = ("FaultServer", "Handler", "close_after", "send_raw")

Handler = Callable[[Conn], None]


class FaultServer(_Server):
    """A raw-socket server that calls ``handler(conn)`` in a thread per accepted connection.

    ``FaultServer(handler, host="127.0.0.1", tls=None)``. The handler scripts the connection
    with :class:`Conn`'s helpers (``read_request``, ``send``, ``respond``, ``close``, ``reset``,
    ``shutdown_write``, ``stall``, ``sock``); when it returns the connection is closed (FIN).
    ``conn.number`` (1, 2, ...) lets one handler treat the first connection differently.
    See :func:`close_after` and :func:`send_raw` for common scripts.
    """

    def __init__(
        self, handler: Handler, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
    ) -> None:
        super().__init__(host, tls)
        self.handler = handler

    def handle(self, conn: Conn) -> None:
        self.handler(conn)


def close_after(n: int, body: bytes = b"ok", how: str = "close") -> Handler:
    """A handler that answers ``n`` keep-alive requests (200, ``body``), then ends the connection
    without answering the next: ``how`` is ``"close"`` (FIN), ``"reset"`` (RST) or ``"wait"``
    (read the next request, then FIN without a response).
    """
    if how not in ("close", "reset", "wait"):
        raise ValueError(f"how must be 'close', 'reset' or 'wait', got {how!r}")

    def handler(conn: Conn) -> None:
        for _ in range(n):
            request = conn.read_request()
            if request is None:
                return
            conn.respond(200, body, head_only=request.method == "HEAD")
        if how == "wait":
            conn.read_request()
            conn.close()
        elif how == "reset":
            conn.reset()
        else:
            conn.close()

    return handler


def send_raw(data: bytes, then: str = "close") -> Handler:
    """A handler that reads one request, sends ``data`` verbatim, then ``"close"``s (FIN),
    ``"reset"``s, or ``"keep"``s reading until the client closes.
    """
    if then not in ("close", "reset", "keep"):
        raise ValueError(f"then must be 'close', 'reset' or 'keep', got {then!r}")

    def handler(conn: Conn) -> None:
        if conn.read_request() is None:
            return
        conn.send(data)
        if then == "reset":
            conn.reset()
        elif then == "keep":
            while conn.read_request() is not None:
                pass

    return handler
