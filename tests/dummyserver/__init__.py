"""fastpool's dummyserver: real local servers for the tests, threads and sockets on
127.0.0.0/8, no mocks (as urllib3's ``dummyserver``).

- :mod:`.server`: the base every server shares (:class:`~.server.Conn`, :class:`~.server.Message`,
  the accept loop, the counters, the clean stop).
- :mod:`.app`: :class:`AppServer`, a keep-alive HTTP/1.1 application server with httpbin-like
  routes.
- :mod:`.fault`: :class:`FaultServer`, a raw-socket server that runs a script per connection
  (close, reset, stall, malformed bytes...), and its common scripts.
- :mod:`.proxy`: :class:`ProxyServer`, a forward proxy (absolute-form requests and ``CONNECT``
  tunnels).
- :mod:`.hostile`: :class:`~.hostile.HostileServer`, the scripted server of the attack suite
  (``tests/socketlevel/test_hostile_*.py``).
- :mod:`.oneshot`: :class:`~.oneshot.OneShotServer`, one fixed payload per connection, then
  close (the differential fuzz against stock requests).
- :mod:`.tls`: the server-side TLS contexts (trustme).
- :mod:`.addresses`: addresses for dial tests (a blackhole whose connect hangs, a refused
  port, a plain accepting server, a made-up name that resolves to chosen addresses).

Only the standard library is used (plus ``brotli``/``zstandard`` for those routes when
installed, and trustme for the TLS material). The fixtures in ``tests/conftest.py`` start and
stop them; ``tests/`` is on ``sys.path`` (pytest's rootdir conftest), so tests import
``from dummyserver import ...``.
"""

from __future__ import annotations

from .app import HAS_BROTLI, HAS_ZSTD, AppServer, pattern_bytes
from .fault import FaultServer, Handler, close_after, send_raw
from .proxy import ProxyServer
from .server import BadMessage, Conn, Message, _Server

__all__ = (
    "HAS_BROTLI",
    "HAS_ZSTD",
    "AppServer",
    "BadMessage",
    "Conn",
    "FaultServer",
    "Handler",
    "Message",
    "ProxyServer",
    "_Server",
    "close_after",
    "pattern_bytes",
    "send_raw",
)
