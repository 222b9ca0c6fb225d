"""pytest plugin for urllib3's own test suite: CONNECT tunnels and TLS facts on PyPI's hypercorn.

Why this shim exists: urllib3's test proxy (``dummyserver/asgi_proxy.py``) answers a ``CONNECT``
with ``200`` and then forwards raw bytes between the client and the upstream server itself, on
the client's connection, which it takes from ``scope["extensions"]["_transport"]``. Only
urllib3's fork of hypercorn (``git+https://github.com/urllib3/hypercorn@urllib3-changes``,
commit "Add unofficial `_transport` ASGI extension") provides that extension; with hypercorn from
PyPI every HTTPS-through-a-tunnel test fails with ``KeyError: '_transport'``, stock urllib3 as
well as swapped, so none of them counted in ``urllib3_suite.py``'s comparison. Loaded with
``-p hypercorn_transport`` (``compat/`` on ``PYTHONPATH``) in both passes, it patches the
installed hypercorn's trio worker (the one the dummyserver runs, in-process) at configure time,
when hypercorn is importable; it does nothing otherwise. Three patches, nothing vendored:

- ``_transport``: ``hypercorn.trio.tcp_server.TCPServer.run`` (one trio task per client
  connection; every HTTP/1 request of that connection is parsed and its app spawned from that
  task) records the connection's trio stream (``SocketStream``, or ``SSLStream`` for the HTTPS
  proxy) in a context variable, and ``hypercorn.trio.task_group.TaskGroup.spawn_app`` puts it in
  ``scope["extensions"]["_transport"]`` of an HTTP/1.x ``CONNECT`` request's scope, before the
  app starts. (The fork hands it to every HTTP/1 scope; ``CONNECT`` is the only one that uses
  it. HTTP/2 scopes never get it: their connection is shared by many streams.)

- ``tls``: the dummyserver's ``/alpn_protocol`` and ``/certificate`` handlers read
  ``scope["extensions"]["tls"]["alpn_protocol"]`` and ``["client_cert_name"]``, which again only
  the fork provides (commits "Turn tls into optional dictionary" and "Serve client_cert_name and
  alpn_protocol in tls extension"); with PyPI's hypercorn they answer ``500`` (``KeyError:
  'tls'``), failing ``test_alpn_default``, ``test_http2_probe_result_is_cached``,
  ``test_client_intermediate`` and ``test_client_key_password`` in ``test_https.py``, stock as
  well as swapped. The same ``spawn_app`` wrapper, when the connection's stream is a
  ``trio.SSLStream``, adds to every ``http`` scope -- HTTP/1.x and HTTP/2 alike, as the fork
  does from ``HTTPStream``, which serves both (websocket scopes get nothing, as in the fork) --
  ``{"alpn_protocol": stream.selected_alpn_protocol()}`` plus, when the client sent a
  certificate, ``"client_cert_name"``: its subject's RDNs joined as ``"k=v, k=v"``, exactly the
  fork's expression over ``stream.getpeercert(binary_form=False)``. The fork computes this once
  in ``TCPServer.run`` after the handshake; here it is computed when each scope is spawned (the
  handshake is done by then, and the values cannot change on a connection), a fresh dict per
  scope. HTTP/2 needs nothing more: hypercorn's h2 protocol parses the connection and spawns
  each stream's app from that same connection task, so the context variable holds its stream.
  Plain-TCP connections get no ``tls`` key, as in the fork (``tls = None``), and a ``tls`` key
  hypercorn itself might set one day is left alone.

- No parsing after the tunnel is up: nothing to do while it is open, as in the fork. h11 (which
  hypercorn's HTTP/1 protocol drives) treats ``CONNECT`` as a protocol-switch proposal: once the
  request is read, ``next_event()`` returns ``PAUSED``, and hypercorn's read loop waits on its
  ``can_read`` event *inside* ``protocol.handle()`` -- so it no longer calls ``receive_some`` on
  the stream, and the app is the only reader. The app's ``200`` moves h11 to
  ``SWITCHED_PROTOCOL`` (no framing headers are added to a 2xx answer to ``CONNECT``, and the
  proxy's empty ``more_body`` body sends nothing), so hypercorn never writes on it again either.
  What the fork leaves out is the end of the tunnel: when the app returns, hypercorn closes the
  connection and sets ``can_read``, and its loop asks h11 again, gets ``PAUSED`` again (h11
  stays switched for good) and waits forever, which keeps that connection's task (and the
  server's shutdown, up to its graceful timeout) hanging. So
  ``hypercorn.protocol.h11.H11Protocol._maybe_recycle`` (called once the app is done), on an h11
  connection in ``SWITCHED_PROTOCOL``, first swaps it for a stand-in whose ``next_event()``
  reports ``ConnectionClosed``: the loop ends, the read loop finds the stream closed, and the
  connection's task returns as after any other closed connection.

Safe for every other test: the ``tls`` extension is an extra key in the scope, read only by
the two dummyserver handlers above, and the asyncio worker is not patched at all. For
``_transport``: a non-``CONNECT`` request, a ``CONNECT`` the app refuses (h11 then goes back to
``DONE`` and keeps the connection, unchanged), HTTP/2, websockets (their h11 connection is
already swapped for hypercorn's own pass-through object) and the asyncio worker behave exactly
as with unpatched hypercorn; the extension is an extra key only a ``CONNECT`` app reads; and an
h11 connection reaches ``SWITCHED_PROTOCOL`` only when an app accepted a protocol switch, after
which hypercorn has nothing left to parse on it.
"""

from __future__ import annotations

import contextvars
import functools
from typing import Any

_client_stream: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "hypercorn_transport_client_stream", default=None
)
_installed = False


class _TunnelOver:
    """Stands in for the h11 connection of a finished ``CONNECT`` tunnel: nothing more to parse."""

    they_are_waiting_for_100_continue = False
    trailing_data = (b"", True)

    def __init__(self, state: Any) -> None:
        self.our_state = self.their_state = state  # h11.SWITCHED_PROTOCOL: never recycled

    def receive_data(self, data: bytes) -> None:
        pass

    def next_event(self) -> Any:
        import h11

        return h11.ConnectionClosed()

    def send(self, event: Any) -> bytes:
        import h11

        raise h11.LocalProtocolError("the CONNECT tunnel on this connection is over")

    def start_next_cycle(self) -> None:
        import h11

        raise h11.LocalProtocolError("the CONNECT tunnel on this connection is over")


def _tls_extension(stream: Any) -> dict[str, Any]:
    """The fork's ``tls`` extension for a connection's ``trio.SSLStream`` (handshake done)."""
    tls: dict[str, Any] = {"alpn_protocol": stream.selected_alpn_protocol()}
    client_certificate = stream.getpeercert(binary_form=False)
    if client_certificate:
        tls["client_cert_name"] = ", ".join(
            [f"{part[0][0]}={part[0][1]}" for part in client_certificate["subject"]]
        )
    return tls


def install() -> bool:
    """Patch the installed hypercorn (once); whether it is patched (False: no hypercorn)."""
    global _installed
    if _installed:
        return True
    try:
        import h11
        import trio
        from hypercorn.protocol.h11 import H11Protocol
        from hypercorn.trio.task_group import TaskGroup
        from hypercorn.trio.tcp_server import TCPServer
    except ImportError:
        return False

    original_run = TCPServer.run
    original_spawn_app = TaskGroup.spawn_app
    original_maybe_recycle = H11Protocol._maybe_recycle

    @functools.wraps(original_run)
    async def run(self: Any) -> None:
        # This task is the connection's own (trio gives each task a copy of the context).
        _client_stream.set(self.stream)
        await original_run(self)

    @functools.wraps(original_spawn_app)
    async def spawn_app(self: Any, app: Any, config: Any, scope: Any, send: Any) -> Any:
        stream = _client_stream.get()
        if isinstance(stream, trio.SSLStream) and scope.get("type") == "http":
            scope.setdefault("extensions", {}).setdefault("tls", _tls_extension(stream))
        if (
            stream is not None
            and scope.get("type") == "http"
            and scope.get("method") == "CONNECT"
            and scope.get("http_version") in ("1.0", "1.1")
        ):
            scope.setdefault("extensions", {})["_transport"] = stream
        return await original_spawn_app(self, app, config, scope, send)

    @functools.wraps(original_maybe_recycle)
    async def _maybe_recycle(self: Any) -> None:
        connection = self.connection
        if isinstance(connection, h11.Connection) and connection.our_state is h11.SWITCHED_PROTOCOL:
            self.connection = _TunnelOver(h11.SWITCHED_PROTOCOL)
        await original_maybe_recycle(self)

    TCPServer.run = run
    TaskGroup.spawn_app = spawn_app
    H11Protocol._maybe_recycle = _maybe_recycle
    _installed = True
    return True


def pytest_configure(config: Any) -> None:
    install()
