"""One connection: a TCP socket (optionally TLS, optionally through a proxy) that writes a request
and reads a response head through the ``_http11`` core.

The names and the constructor mirror urllib3's ``HTTPConnection``/``HTTPSConnection``; the
engine underneath is fastpool's own: no http.client, one ``sendall`` for a head and a small
body, ``recv_into`` a preallocated buffer for the response head. TLS (contexts, the handshake
and its checks, TLS inside a proxy's TLS) is :mod:`fastpool.tls`'s; ``build_ssl_context`` is
importable from here too.
"""

from __future__ import annotations

import re
import select
import socket
import ssl
import threading
import typing
from collections.abc import Iterable, Mapping
from http.client import RemoteDisconnected
from time import monotonic
from typing import Any

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    NameResolutionError,
    NewConnectionError,
    ProxyError,
)
from urllib3.util.request import SKIP_HEADER, SKIPPABLE_HEADERS, body_to_chunks
from urllib3.util.timeout import Timeout

from ._dialer import attempt, race
from ._http11 import (
    HAS_ACCEPT_ENCODING,
    HAS_CONTENT_LENGTH,
    HAS_HOST,
    HAS_TRANSFER_ENCODING,
    HAS_USER_AGENT,
    collect_request_headers,
    parse_response_head,
    write_request_head,
)
from ._thirdparty import ProxyConfig
from .exceptions import IncompleteResponseError
from .resolver import HAPPY_EYEBALLS_DELAY, OWN_RESOLVE, Resolver, happy_eyeballs_order
from .tls import (
    TLS_SETTINGS,
    build_ssl_context,
    check_peer,
    context_for_proxy,
    has_buffered_bytes,
    wrap_and_verify,
)

if typing.TYPE_CHECKING:
    from ._http11_py import ResponseHead

__all__ = (
    "HTTPConnection",
    "HTTPSConnection",
    "ProxyConfig",
    "build_ssl_context",
    "default_user_agent",
    "port_by_scheme",
)

port_by_scheme = {"http": 80, "https": 443}

#: A connection's ``_sock_timeout`` when its socket's timeout is not known (a new connection; a
#: socket the multiplexed loop made non-blocking): ``settimeout()`` sets it anew.
UNSET_TIMEOUT: Any = object()


class TokenLimit(typing.Protocol):
    """The global cap a connection holds a token of (``fastpool.limits.ConnectionLimit`` is
    one): its socket's close gives the token back."""

    #: Counts the cap's resets: a token taken before the last one is not given back to it.
    generation: int

    def acquire(self) -> HTTPConnection | None:
        """Take a token for a dial (waiting at the cap)."""

    def release(self, conn: HTTPConnection | None) -> None:
        """Give back the token ``conn`` (None: a token without a connection) held."""


#: The User-Agent sent when the caller gives none: urllib3's own, ``python-urllib3/<version of
#: the installed urllib3>``, so that a server or a test keyed on it sees no change when
#: ``fastpool.PoolManager`` replaces urllib3's (requests sends its own User-Agent anyway).
default_user_agent = f"python-urllib3/{urllib3.__version__}"  # type: ignore[attr-defined]

# urllib3's "no timeout given" sentinel, by its public name (a global: read per request).
_DEFAULT_TIMEOUT = Timeout.DEFAULT_TIMEOUT

# Writing the head and a body this small in one sendall saves a syscall and a TCP segment.
_COALESCE_BODY_BYTES = 16384
#: render_request's heads of requests with no body nor headers of their own, by (method, Host,
#: User-Agent): ``(b"METHOD ", the bytes after the request line)``; only the target differs
#: between two such requests (a crawl's URLs are many, its hosts far fewer). A bound, not an
#: LRU (cleared when full).
RENDERED: dict[tuple[str, str, str], tuple[bytes, bytes]] = {}
_RENDERED_SIZE = 4096
#: an origin-form target write_request_head takes as it is (no byte outside 0x21-0x7E)
_PLAIN_TARGET = re.compile(r"/[\x21-\x7e]*")


# Response heads are received into one buffer per thread, not one per connection: an idle
# connection then costs no buffer (1,000 warm pools would otherwise hold 16 MiB), and a head is
# parsed into new objects before the thread's next receive.
_receive = threading.local()


def _receive_view(size: int) -> memoryview:
    view: memoryview | None = getattr(_receive, "view", None)
    if view is None or len(view) < size:
        view = _receive.view = memoryview(bytearray(max(size, 16384)))
    return view


def _resolve_timeout(timeout: Any) -> float | None:
    if timeout is _DEFAULT_TIMEOUT:
        return socket.getdefaulttimeout()
    return typing.cast("float | None", timeout)


def _resolve_is_ours(resolver: Resolver) -> bool:
    # (resolver.OWN_RESOLVE: Resolver.resolve as fastpool.resolver defined it)
    return type(resolver).resolve is OWN_RESOLVE and "resolve" not in vars(resolver)


class HTTPConnection:
    """One HTTP/1.1 connection to ``host:port`` (urllib3's ``HTTPConnection`` contract).

    :param host: the server (or, with ``proxy``, the proxy is dialed instead).
    :param port: default 80.
    :param timeout: the connect timeout in seconds (``None`` waits forever; default: the socket
        module's default timeout). The pool sets the read timeout separately.
    :param source_address: ``(host, port)`` to bind before connecting (default ``None``).
    :param socket_options: ``(level, option, value)`` triples set before connecting (default
        TCP_NODELAY on, like urllib3).
    :param blocksize: receive buffer size and file-body chunk size (default 16384).
    :param proxy: a parsed proxy URL (``urllib3.util.Url``) or ``None``.
    :param proxy_config: a :class:`ProxyConfig` or ``None``.
    """

    # The state each request reads and writes is in slots: reading one from the compiled
    # cores is a descriptor's load, not a dict lookup (about half the cost of an attribute of
    # the instance's dict when read from C), and the instance's dict stays small. The dict is
    # kept for everything else (the pool's per-connection settings, a subclass's or a tool's
    # attributes).
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_answer",
        "_has_token",
        "_head_ahead",
        "_host_value",
        "_kept_head",
        "_limiter",
        "_loop_queue",
        "_poller",
        "_rest",
        "_sock_timeout",
        "_token_generation",
        "_tunnel_headers",
        "_tunnel_host",
        "_tunnel_port",
        "blocksize",
        "connected_at",
        "dial_error",
        "has_connected_to_proxy",
        "head_refused",
        "head_started",
        "host",
        "idle_since",
        "port",
        "proxy",
        "proxy_config",
        "proxy_ssl_context",
        "request_started",
        "requests",
        "reusable",
        "sent_ahead",
        "sock",
        "socket_options",
        "source_address",
        "timeout",
    )

    default_port: typing.ClassVar[int] = 80
    scheme: typing.ClassVar[str] = "http"
    #: urllib3's default: disable Nagle so small requests go out at once.
    default_socket_options: typing.ClassVar[list[tuple[int, int, int | bytes]]] = [
        (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ]

    is_verified: bool = False
    proxy_is_verified: bool | None = None
    #: Bounds on a response head (set per pool; see :class:`~fastpool.pool.HTTPConnectionPool`):
    #: all its bytes, one line's bytes (http.client's 65536) and its header fields (http.client's
    #: 100). A head past one raises ``ResponseHeadTooLarge``.
    max_head_bytes: int = 1048576
    max_line_bytes: int = 65536
    max_headers: int = 100
    #: A :class:`fastpool.resolver.Resolver` for the dial (set per pool), or None:
    #: ``socket.getaddrinfo`` at every dial.
    resolver: Any = None
    #: Happy Eyeballs (RFC 8305 section 5) for a host with several addresses: the seconds
    #: between starting a connection attempt to one address and starting the next in parallel
    #: (the first to connect wins; the connect timeout bounds the whole race). Default
    #: :data:`fastpool.resolver.HAPPY_EYEBALLS_DELAY` (250 ms). ``None`` tries the addresses one
    #: after the other, each with the whole connect timeout, as urllib3 does; so does a
    #: ``source_address`` with a port other than 0 (one socket at a time can bind it). See
    #: docs/dns.md.
    happy_eyeballs_delay: float | None = HAPPY_EYEBALLS_DELAY

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        timeout: Any = _DEFAULT_TIMEOUT,
        source_address: tuple[str, int] | None = None,
        blocksize: int = 16384,
        socket_options: list[tuple[int, int, int | bytes]] | None = default_socket_options,
        proxy: Any = None,
        proxy_config: ProxyConfig | None = None,
    ) -> None:
        if not isinstance(blocksize, int) or isinstance(blocksize, bool):
            raise TypeError(f"blocksize must be an int, got {type(blocksize).__name__}")
        if blocksize < 1:
            raise ValueError(f"blocksize must be >= 1, got {blocksize}")
        self.host = host
        self.port = port if port is not None else self.default_port
        self.timeout = timeout
        self.source_address = source_address
        self.socket_options = socket_options
        self.blocksize = blocksize
        self.proxy = proxy
        self.proxy_config = proxy_config
        self.sock: socket.socket | None = None
        self.has_connected_to_proxy = False
        #: True once any byte of the current request was handed to the socket.
        self.request_started = False
        #: True when the last request() was refused before a byte of it was sent.
        self.head_refused = False
        #: True once any byte of the current response arrived (then no replay, as Go).
        self.head_started = False
        #: False when this socket must not serve another request (a request was cut short).
        self.reusable = True
        #: Requests answered on this connection's socket (0: fresh; a keep-alive replay is for
        #: a reused socket only).
        self.requests = 0
        self._tunnel_host: str | None = None
        self._tunnel_port: int | None = None
        self._tunnel_headers: Mapping[str, str] = {}
        self._sock_timeout: object = UNSET_TIMEOUT  # what settimeout() was last called with
        #: The global connection cap this connection counts against (set by its pool), or None,
        #: and whether it holds one of its tokens (from its dial until its close).
        self._limiter: TokenLimit | None = None
        self._has_token = False
        #: ``time.monotonic()`` when the socket was opened, and when it last went idle.
        self.connected_at = 0.0
        self.idle_since = 0.0
        self._rest = b""  # bytes received past the last response head, for the body reader
        #: Set by the multiplexed loop (fastpool._loop): the current request is on the wire
        #: already, or its dial failed with this exception (raised by the next connect()).
        self.sent_ahead = False
        #: The head the multiplexed loop parsed from ``_rest`` (see :meth:`take_head_ahead`):
        #: (method, head, its size, the very ``_rest`` object it was parsed from, whether that
        #: holds the whole answer), or None.
        self._head_ahead: tuple[str, ResponseHead, int, bytes, bool] | None = None
        self.dial_error: BaseException | None = None
        #: the addresses the multiplexed loop looked up for a dial it hands to a worker (several,
        #: to race): the worker's connect takes them instead of asking again
        self._answer: list[Any] | None = None
        self._poller: Any = None
        self._host_value: tuple[str | None, str] | None = None
        #: render_request's head of the last request with headers of its own that were all
        #: exact str: (method, Host, User-Agent, the (name, value) pairs), the bytes before the
        #: target and the bytes after it. One per connection, not a shared table: a crawl's
        #: requests on one connection carry the same headers, and a header that changes each
        #: time (a token, a cookie) is neither kept past the connection nor made to pay for a
        #: table it never hits.
        self._kept_head: tuple[tuple[Any, ...], bytes, bytes] | None = None
        #: The context for TLS to an ``https://`` proxy (prepared by the pool, or built once).
        self.proxy_ssl_context: ssl.SSLContext | None = None
        #: The pool queue the multiplexed loop checked this connection out of: after os.fork()
        #: the child's pool has a new queue, and the parent's slot must not go back into it.
        self._loop_queue: Any = None
        #: The global cap's ``generation`` when this connection took its token: a token from
        #: before the cap's reset is the parent's (a forked child).
        self._token_generation = 0

    # --- connecting -------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.host}:{self.port} connected={self.sock is not None}>"

    def __str__(self) -> str:
        # urllib3 exceptions print the connection object; keep it short and useful.
        return f"{type(self).__name__}(host={self.host!r}, port={self.port!r})"

    @property
    def is_closed(self) -> bool:
        """True before ``connect()`` and after ``close()``."""
        return self.sock is None

    @property
    def is_connected(self) -> bool:
        """True while the socket is open and the peer has not closed it or sent stray bytes."""
        if self.sock is None:
            return False
        return not self._readable_now()

    def _readable_now(self) -> bool:
        # An idle keep-alive socket is readable only when the server closed it (EOF) or broke
        # the protocol by sending unasked bytes: either way it must not be reused.
        sock = self.sock
        if self._rest or (type(sock) is not socket.socket and has_buffered_bytes(sock)):
            return True
        poller = self._poller
        if poller is None:
            poller = self._poller = select.poll()
            poller.register(sock, select.POLLIN | select.POLLPRI)  # type: ignore[arg-type]
        return bool(poller.poll(0))

    def set_tunnel(
        self,
        host: str,
        port: int | None = None,
        headers: Mapping[str, str] | None = None,
        scheme: str = "http",
    ) -> None:
        """Tunnel through the proxy at ``self.host:self.port`` to ``host:port`` with CONNECT."""
        self._tunnel_host = host
        self._tunnel_port = port
        self._tunnel_headers = headers or {}

    def _addresses(self, host: str, port: int) -> list[Any]:
        """``getaddrinfo``'s answer (the resolver's, when set), or urllib3's error for none."""
        if self._answer is not None:  # looked up by the multiplexed loop for this dial
            infos, self._answer = self._answer, None
            return infos
        try:
            if self.resolver is None:
                return socket.getaddrinfo(host.strip("[]"), port, 0, socket.SOCK_STREAM)
            return typing.cast("list[Any]", self.resolver.resolve(host.strip("[]"), port))
        except socket.gaierror as e:
            raise NameResolutionError(host, self, e) from e  # type: ignore[arg-type]
        except OSError as e:  # no answer at all (out of descriptors): urllib3's _new_conn error
            raise NewConnectionError(self, f"Failed to establish a new connection: {e}") from e  # type: ignore[arg-type]

    def _dial(self, host: str, port: int) -> socket.socket:
        timeout = _resolve_timeout(self.timeout)
        infos = self._addresses(host, port)
        if len(infos) > 1:
            delay = self.happy_eyeballs_delay
            source = self.source_address
            # A source address with a fixed port binds one socket at a time (a second attempt
            # in flight would fail with EADDRINUSE): no race, each address in turn as urllib3.
            if delay is not None and not (source and source[1]):
                return self._race(host, happy_eyeballs_order(infos), timeout, delay)
            if self.resolver is not None:  # families interleaved (RFC 8305 section 4)
                infos = happy_eyeballs_order(infos)
        # One address (or no racing): each in turn with the whole timeout, as urllib3.
        last: OSError | None = None
        for family, type_, proto, _, addr in infos:
            sock = None
            try:
                # Made inside the try, as urllib3 does: out of descriptors (EMFILE) or a family
                # the host cannot open is this address's failure, not a raw OSError.
                sock = socket.socket(family, type_, proto)
                if self.socket_options:
                    for opt in self.socket_options:
                        sock.setsockopt(*opt)
                sock.settimeout(timeout)
                if self.source_address:
                    sock.bind(self.source_address)
                sock.connect(addr)
            except OSError as e:
                if sock is not None:
                    sock.close()
                last = e
                continue
            except BaseException:
                if sock is not None:
                    sock.close()
                raise
            self._sock_timeout = timeout
            return sock
        if last is None:  # a resolver answered no address (urllib3's words for it)
            last = OSError("getaddrinfo returns an empty list")
        raise self._dial_error(host, timeout, last) from last

    def _race(
        self, host: str, infos: list[Any], timeout: float | None, delay: float
    ) -> socket.socket:
        """Happy Eyeballs (RFC 8305 section 5) between ``infos``: see :mod:`fastpool._dialer`."""
        try:
            sock = race(infos, timeout, delay, self.socket_options, self.source_address)
        except OSError as e:
            raise self._dial_error(host, timeout, e) from e
        self._sock_timeout = timeout
        return sock

    def _dial_error(self, host: str, timeout: float | None, last: OSError) -> Exception:
        """urllib3's exception for a dial whose last attempt failed with ``last``: a timeout
        (the connect timeout, or the kernel's ETIMEDOUT) or any other error."""
        if isinstance(last, socket.timeout):
            return ConnectTimeoutError(
                self,
                f"Connection to {host} timed out. (connect timeout={timeout})",
            )
        return NewConnectionError(
            self,  # type: ignore[arg-type]
            f"Failed to establish a new connection: {last}",
        )

    def connect(self) -> None:
        """Open the socket (to the proxy when one is set, then the CONNECT tunnel)."""
        self._connect_transport()
        self.has_connected_to_proxy = self.proxy is not None

    def _connect_transport(self) -> None:
        if self.dial_error is not None:
            # The multiplexed loop dialed for this request and failed: the same exception.
            error, self.dial_error = self.dial_error, None
            raise error
        limiter = self._limiter
        if limiter is None:
            self.sock = self._dial(self.host, self.port)
        else:
            # A global cap (PoolManager max_connections): a dial needs a token (the pool
            # usually took it already), which close() gives back.
            if not self._has_token:
                limiter.acquire()
                self._has_token = True
                self._token_generation = limiter.generation
            try:
                self.sock = self._dial(self.host, self.port)
            except BaseException:
                self._give_token_back()
                raise
        self._connected()
        if self._tunnel_host is not None:
            if getattr(self.proxy, "scheme", None) == "https":
                self._connect_tls_proxy()
            # Until here a failure is the proxy's (urllib3 reports it as a ProxyError).
            self.has_connected_to_proxy = True
            self._tunnel()

    def _connected(self) -> None:
        """A new socket: the state of the one before it goes."""
        self.connected_at = monotonic()
        self.requests = 0  # of this socket
        self._rest = b""
        self._poller = None
        self.reusable = True
        self.head_refused = False

    # --- a dial the multiplexed loop drives itself (fastpool._loop) ---------------------------
    def _loop_may_dial(self) -> bool:
        """Whether the multiplexed loop may dial this connection itself: not through a proxy,
        and not under a global cap whose token must be waited for."""
        return (
            self.proxy is None
            and self._tunnel_host is None
            and self.dial_error is None
            and (self._limiter is None or self._has_token)
        )

    def loop_dial_begin(self) -> Any:
        """How the multiplexed loop dials this connection: the one address it dials itself, in
        its own thread (a non-blocking connect, then the TLS handshake); a Future of a lookup
        fastpool's Resolver makes meanwhile (see :meth:`loop_dial_looked_up`); or None, when
        the dial runs whole in a worker, as :meth:`connect`: through a proxy, under a global
        cap whose token is not held yet, to a name with no such resolver, or to several
        addresses (Happy Eyeballs races them in the worker, with the answer kept here)."""
        if not self._loop_may_dial():
            return None
        host = self.host.strip("[]")
        resolver = self.resolver
        if isinstance(resolver, Resolver) and _resolve_is_ours(resolver):
            infos = resolver.cached(host, self.port)
            if infos is None:
                return resolver.submit(host, self.port)
        elif resolver is not None:
            # another resolver (any object with resolve()), or a Resolver whose resolve() a
            # subclass or a patch replaced: resolve() is asked, in the worker
            return None
        else:
            try:
                infos = socket.getaddrinfo(
                    host, self.port, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST
                )
            except (socket.gaierror, UnicodeError):
                return None  # a name: getaddrinfo may block (or fails), in the worker
        return self._one_address(infos)

    def loop_dial_looked_up(self, lookup: Any) -> Any:
        """The loop's lookup ended: the one address to dial, or None (a worker dials the
        answer). Raises the lookup's error (for :meth:`loop_dial_failed`)."""
        return self._one_address(lookup.result())

    def _one_address(self, infos: list[Any]) -> Any:
        if len(infos) == 1:
            return infos[0]
        self._answer = infos  # the worker's connect takes this answer: no second lookup
        return None

    def loop_dial_start(self, address: Any) -> socket.socket:
        """Start the loop's dial to ``address``: a non-blocking socket (it is ``sock`` from
        now on, so that :meth:`close` closes it) whose connect is under way. Raises the
        ``OSError`` of a connect that failed at once."""
        sock = attempt(address, self.socket_options, self.source_address, set())
        self.sock = sock
        return sock

    def loop_dial_connected(self) -> Any:
        """The loop's TCP connect succeeded: the connection's new state. Returns the TLS
        socket whose handshake the loop drives next (None here: plain HTTP)."""
        self._connected()
        self.has_connected_to_proxy = False
        return None

    def loop_dial_verified(self) -> None:
        """The loop's TLS handshake completed: the checks after it (HTTPS only)."""

    def loop_dial_failed(self, error: BaseException, connected: bool) -> BaseException:
        """The loop's dial failed: the socket closed, the cap's token given back, and the
        exception :meth:`connect` raises for it stored in ``dial_error`` and returned.
        ``connected``: the TCP connect had succeeded (a TLS error goes as it is, as from
        :meth:`connect`); before that an ``OSError`` becomes urllib3's dial error."""
        self._dial_aborted()
        if isinstance(error, socket.gaierror):  # the loop's lookup, as _addresses raises it
            error = NameResolutionError(self.host, self, error)  # type: ignore[arg-type]
        elif not connected and isinstance(error, OSError):
            error = self._dial_error(self.host, _resolve_timeout(self.timeout), error)
        self.dial_error = error
        return error

    def _connect_tls_proxy(self) -> None:
        """TLS to an ``https://`` proxy, verified by the proxy's own settings."""
        context = self.proxy_ssl_context
        if context is None:
            context = self.proxy_ssl_context = context_for_proxy(self.proxy_config)
        config = self.proxy_config
        sock = self.sock
        assert sock is not None
        try:
            self.sock = wrap_and_verify(
                sock,
                context,
                self.host,
                config.assert_hostname if config else None,
                config.assert_fingerprint if config else None,
            )
        except BaseException:
            self._dial_aborted()
            raise
        self.proxy_is_verified = context.verify_mode == ssl.CERT_REQUIRED

    def _tunnel(self) -> None:
        host, port = self._tunnel_host, self._tunnel_port
        assert host is not None
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        headers: list[tuple[str, str]] = [("Host", authority)]
        headers.extend(self._tunnel_headers.items())
        self._send(write_request_head("CONNECT", authority, headers))
        head = self.read_response_head("CONNECT")
        if not 200 <= head.status < 300:
            self.close()
            text = f"{head.status} {head.reason}".strip()
            err = OSError(f"Tunnel connection failed: {text}")
            raise ProxyError("Unable to connect to proxy", err)
        if self._rest:
            self.close()
            raise ProxyError(
                "Unable to connect to proxy",
                OSError("proxy sent bytes after its CONNECT answer"),
            )

    def close(self) -> None:
        """Close the socket; the connection may be connected again later (urllib3 semantics)."""
        sock, self.sock = self.sock, None
        # Of this socket: the next one has answered nothing (a request on it is never
        # replayed, by Go's rule: see HTTPConnectionPool._head_failed).
        self.requests = 0
        self._rest = b""
        self._poller = None
        self.has_connected_to_proxy = False
        self.request_started = False
        self.head_refused = False
        self.sent_ahead = False
        self._head_ahead = None
        self._answer = None
        if sock is not None:
            sock.close()
        self._give_token_back()  # after the close: the cap counts real sockets

    def _dial_aborted(self) -> None:
        """A dial that failed part way (the loop's, or a TLS handshake after the TCP connect):
        close its socket and give the cap's token back at once, rather than leave the
        descriptor to the collector and the token held until a :meth:`close` that may never
        come."""
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()
        self._give_token_back()  # after the close: the cap counts real sockets

    def _give_token_back(self) -> None:
        if self._has_token:
            self._has_token = False
            limiter = self._limiter
            assert limiter is not None  # a token comes from a limiter
            if self._token_generation == limiter.generation:
                limiter.release(self)
            # else lent before the cap's reset: the parent's token (we are a forked child)

    def settimeout(self, timeout: float | None) -> None:
        """Set the socket timeout (skips the call when it is unchanged)."""
        if timeout is not self._sock_timeout and self.sock is not None:
            self.sock.settimeout(timeout)
            self._sock_timeout = timeout

    # --- writing ------------------------------------------------------------------------------
    def _send(self, data: bytes | memoryview) -> None:
        assert self.sock is not None
        self.request_started = True
        self.sock.sendall(data)

    def _host_header(self, url: str = "/") -> str:
        if url[:1] != "/" and "://" in url:
            # absolute-form through a forwarding proxy: Host names the origin
            return url.split("/", 3)[2].rpartition("@")[2]
        cached = self._host_value
        if cached is not None and cached[0] == self._tunnel_host:
            return cached[1]
        value = self._compute_host_header()
        self._host_value = (self._tunnel_host, value)
        return value

    def _compute_host_header(self) -> str:
        host = self._tunnel_host if self._tunnel_host is not None else self.host
        port = self._tunnel_port if self._tunnel_host is not None else self.port
        # A fully qualified name's trailing dot matters to DNS only (the dial keeps it), not to
        # the server: urllib3 leaves it out of Host, and out of SNI and the name check.
        host = host.rstrip(".")
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        if port == port_by_scheme.get(self.scheme) or port is None:
            return host
        return f"{host}:{port}"

    def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        *,
        chunked: bool = False,
    ) -> None:
        """Write one request: the head from ``_http11`` and the body (urllib3's body rules).

        Sized bodies (bytes, str, buffers) get Content-Length; file-likes and iterables are
        sent chunked unless the caller set Content-Length or Transfer-Encoding; ``chunked=True``
        forces chunked encoding. Header values of ``SKIP_HEADER`` suppress the default Host,
        User-Agent or Accept-Encoding header.
        """
        if self.sock is None:
            self.connect()
        elif self.sent_ahead:
            # The multiplexed loop (fastpool._loop) wrote this very request already.
            self.sent_ahead = False
            self.request_started = True
            return
        self.request_started = False  # until a byte of this request goes out
        try:
            if headers:
                items = (
                    # private (requests' CaseInsensitiveDict): fastpool._thirdparty
                    headers._store.values()  # type: ignore[attr-defined]
                    if type(headers) in PAIR_STORE_TYPES
                    else headers.items()
                )
                pairs, present = collect_request_headers(items, SKIP_HEADER, SKIPPABLE_HEADERS)
            else:
                pairs, present = [], 0
            # urllib3's head, byte for byte: Host, Accept-Encoding, the body's framing and
            # User-Agent (each unless the caller gave it), then the caller's headers in order.
            defaults: list[tuple[str, str]] = []
            if not present & HAS_HOST:
                defaults.append(("Host", self._host_header(url)))
            if not present & HAS_ACCEPT_ENCODING:
                defaults.append(("Accept-Encoding", "identity"))
            if body is None and not chunked:
                chunks: Iterable[Any] | None = None
                if present & HAS_TRANSFER_ENCODING and not present & HAS_CONTENT_LENGTH:
                    chunked = True  # the caller's Transfer-Encoding: an empty chunked body follows
                elif not present & _HAS_FRAMING and method.upper() not in _NO_BODY_METHODS:
                    defaults.append(("Content-Length", "0"))
            else:
                chunks, chunked = self._body_framing(body, method, chunked, present, defaults)
            if not present & HAS_USER_AGENT:
                defaults.append(("User-Agent", default_user_agent))
            if defaults:
                pairs[0:0] = defaults

            head = write_request_head(method, url, pairs)
        except (ValueError, TypeError):
            # Refused before a byte was sent (a bad method, target, header or body type): the
            # connection is as clean as before; the pool may keep it (HTTPConnectionPool.urlopen)
            self.head_refused = True
            raise
        if chunks is None:
            # No body; a chunked one (chunked=True, or the caller's Transfer-Encoding) still
            # needs its last chunk, or the server waits for the body until a timeout.
            self._send(head + b"0\r\n\r\n" if chunked else head)
            return
        self._send_with_body(head, chunks, chunked)

    def render_request(
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        *,
        chunked: bool = False,
    ) -> bytes:
        """The bytes :meth:`request` would write, without writing them (the multiplexed loop
        sends them itself). A file-like or iterable body is read here, into memory."""
        key: Any = None  # the RENDERED key of a request without headers
        head_key: tuple[Any, ...] | None = None  # the _kept_head key of one with headers
        if body is None and not chunked and type(url) is str and _PLAIN_TARGET.fullmatch(url):
            # Without a body, the head follows from the method, the target, the Host value,
            # the User-Agent and the caller's header pairs: the same but for the target.
            pairs: tuple[Any, ...] | None = None  # None: another mapping, rendered each time
            if type(headers) in PAIR_STORE_TYPES:
                # private: fastpool._thirdparty
                pairs = tuple(headers._store.values())  # type: ignore[union-attr]
            elif not headers:
                pairs = ()
            if pairs == ():
                key = (method, self._host_header(url), default_user_agent)
            elif pairs and _all_str(pairs):  # (an equal str subclass may write other bytes)
                head_key = (method, self._host_header(url), default_user_agent, pairs)
        if key is not None:
            template = RENDERED.get(key)
            if template is not None:
                return b"".join((template[0], url.encode("ascii"), template[1]))
        elif head_key is not None:
            kept = self._kept_head
            if kept is not None and kept[0] == head_key:
                return b"".join((kept[1], url.encode("ascii"), kept[2]))
        # request() itself, writing into a recorder: one code path for the bytes, and none
        # added to request()'s.
        sock = self.sock
        recorder = _Recorder()
        self.sock = recorder  # type: ignore[assignment]
        try:
            self.request(method, url, body, headers, chunked=chunked)
        finally:
            self.sock = sock
            self.request_started = False
        data = b"".join(recorder.parts)
        if (key is not None or head_key is not None) and type(method) is str:
            prefix = f"{method} {url}".encode("ascii", "replace")
            # (the request line as write_request_head wrote it, or no template)
            if data.startswith(prefix + b" HTTP/1.1\r\n"):
                before, after = data[: len(method) + 1], data[len(prefix) :]
                if head_key is not None:
                    self._kept_head = (head_key, before, after)
                elif key is not None:
                    if len(RENDERED) >= _RENDERED_SIZE:
                        RENDERED.clear()
                    RENDERED[key] = (before, after)
        return data

    def _body_framing(
        self,
        body: Any,
        method: str,
        chunked: bool,
        present: int,
        defaults: list[tuple[str, str]],
    ) -> tuple[Iterable[Any] | None, bool]:
        """The body's chunks and whether they go chunked, adding the framing header to
        ``defaults`` unless the caller's headers (``present``) frame the body themselves."""
        chunks, content_length = body_to_chunks(body, method, self.blocksize)
        if chunked:
            if not present & HAS_TRANSFER_ENCODING:
                defaults.append(("Transfer-Encoding", "chunked"))
        elif present & HAS_CONTENT_LENGTH:
            chunked = False
        elif present & HAS_TRANSFER_ENCODING:
            chunked = True
        elif content_length is None:
            if chunks is not None:
                chunked = True
                defaults.append(("Transfer-Encoding", "chunked"))
        else:
            defaults.append(("Content-Length", str(content_length)))
        return chunks, chunked

    def _send_with_body(self, head: bytes, chunks: Iterable[Any], chunked: bool) -> None:
        if not chunked and type(chunks) is tuple and len(chunks) == 1:
            data = chunks[0]
            if isinstance(data, str):
                data = data.encode("utf-8")
            if len(data) <= _COALESCE_BODY_BYTES:
                self._send(head + bytes(data))
                return
        self._send(head)
        sendall = self.sock.sendall  # type: ignore[union-attr]
        for chunk in chunks:
            if not chunk:
                continue
            if isinstance(chunk, str):
                chunk = chunk.encode("utf-8")
            if chunked:
                sendall(b"%x\r\n%b\r\n" % (len(chunk), bytes(chunk)))
            else:
                sendall(chunk)
        if chunked:
            sendall(b"0\r\n\r\n")

    # --- reading ------------------------------------------------------------------------------
    def read_response_head(self, method: str) -> ResponseHead:
        """Receive and parse the next response head; leftover bytes stay for the body reader.

        A peer that closes before sending anything raises ``RemoteDisconnected``; one that
        closes within the head ends it there (see :meth:`_head_at_eof`). The ``_http11``
        errors are raised for malformed heads, and for heads past the connection's
        ``max_head_bytes``, ``max_line_bytes`` or ``max_headers``. Socket errors propagate.
        """
        sock = self.sock
        assert sock is not None
        data = self._rest
        self._rest = b""
        # Go's rule: once any byte of the response arrived, the request is never replayed.
        self.head_started = bool(data)
        ahead = self._head_ahead
        if ahead is not None:
            self._head_ahead = None
            if ahead[0] == method and ahead[3] is data:  # parsed from these very bytes
                self._rest = data[ahead[2] :]
                return ahead[1]
        if data:
            parsed = parse_response_head(
                data, method, self.max_head_bytes, self.max_headers, self.max_line_bytes
            )
            if parsed is not None:
                head, used = parsed
                self._rest = bytes(data[used:])
                return head
            return self._read_rest_of_head(bytearray(data), method)
        blocksize = self.blocksize
        view = _receive_view(blocksize)
        n = sock.recv_into(view, blocksize)
        if not n:
            # http.client's exception: urllib3 reports it as ProtocolError("Connection
            # aborted.", RemoteDisconnected(...)), and so does our pool.
            raise RemoteDisconnected("Remote end closed connection without response")
        self.head_started = True
        # The common case: the whole head arrives in one segment, parse in place.
        parsed = parse_response_head(
            view[:n], method, self.max_head_bytes, self.max_headers, self.max_line_bytes
        )
        if parsed is not None:
            head, used = parsed
            if used < n:
                self._rest = bytes(view[used:n])
            return head
        return self._read_rest_of_head(bytearray(view[:n]), method)

    def _read_rest_of_head(self, data: bytearray, method: str) -> ResponseHead:
        """Receive until ``data``, the start of a head, holds all of it."""
        sock = self.sock
        assert sock is not None
        max_head_bytes = self.max_head_bytes
        max_headers = self.max_headers
        max_line_bytes = self.max_line_bytes
        blocksize = self.blocksize
        view = _receive_view(blocksize)
        line_start = data.rfind(b"\n") + 1  # where the last, unfinished line of ``data`` starts
        while True:
            n = sock.recv_into(view, blocksize)
            if not n:
                return self._head_at_eof(data, method)
            seen = len(data)
            data += view[:n]
            # Parse again only when the new bytes may end a head (a blank line) or pass a
            # bound: a head trickled in small pieces is then scanned a bounded number of
            # times, not once per piece (quadratic in the head's size).
            if (
                data.find(b"\n\r\n", max(seen - 2, 0)) < 0
                and data.find(b"\n\n", max(seen - 1, 0)) < 0
                and len(data) < max_head_bytes
            ):
                line_start = max(line_start, data.rfind(b"\n", seen) + 1)
                if len(data) - line_start <= max_line_bytes:
                    continue
            parsed = parse_response_head(data, method, max_head_bytes, max_headers, max_line_bytes)
            if parsed is not None:
                head, used = parsed
                self._rest = bytes(data[used:])
                return head

    def _head_at_eof(self, data: bytes | bytearray, method: str) -> ResponseHead:
        """The head of a response whose server closed before the blank line ending it.

        http.client (so urllib3 and requests) takes the end of the stream as the end of the
        head: what came is the response, and its body (if framed) is then found cut short
        (ChunkedEncodingError in requests). The same here, and the connection is not reused.
        A head that still cannot end (a 1xx interim response and nothing after it) is an
        IncompleteResponseError.
        """
        self.reusable = False
        head = bytes(data)
        if head.endswith((b"\r\n\r\n", b"\n\n")):
            pass  # an interim head ended: the final one never came
        elif head.endswith(b"\n"):
            head += b"\r\n"  # the last line is whole: only the blank line is missing
        else:
            head = head.removesuffix(b"\r") + b"\r\n\r\n"  # end the cut line too
        parsed = parse_response_head(
            head, method, self.max_head_bytes, self.max_headers, self.max_line_bytes
        )
        if parsed is None:
            raise IncompleteResponseError("Connection closed in the middle of the response head")
        return parsed[0]

    def take_head_ahead(
        self, method: str, head: ResponseHead, size: int, chunks_ended: bool = False
    ) -> None:
        """The multiplexed loop parsed ``head`` (``size`` bytes, with the limits of this
        connection) from the start of ``_rest``, the answer to ``method``: the next
        :meth:`read_response_head` returns it rather than parse the same bytes again.
        ``chunks_ended``: the loop read a chunked body to its last chunk."""
        rest = self._rest
        framing = head.framing
        if framing == "length":
            whole = len(rest) - size >= (head.content_length or 0)
        else:
            whole = framing == "none" or (framing == "chunked" and chunks_ended)
        self._head_ahead = (method, head, size, rest, whole)

    def answer_is_whole(self, method: str) -> bool:
        """Whether ``_rest`` holds the whole answer to ``method`` whose head the loop parsed
        (see :meth:`take_head_ahead`): its body needs no read from the socket."""
        ahead = self._head_ahead
        return ahead is not None and ahead[3] is self._rest and ahead[0] == method and ahead[4]

    def take_rest(self) -> bytes:
        """Return (and forget) the bytes received past the response head."""
        rest, self._rest = self._rest, b""
        return rest


class _Recorder:
    """Stands in for the socket while :meth:`HTTPConnection.render_request` runs
    :meth:`~HTTPConnection.request`: keeps what would be sent."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def sendall(self, data: Any) -> None:
        self.parts.append(bytes(data))


_HAS_FRAMING = HAS_CONTENT_LENGTH | HAS_TRANSFER_ENCODING
_NO_BODY_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE", "CONNECT"})


def _all_str(pairs: Any) -> bool:
    """Whether every item of these header pairs is a pair of exact str (a name and a value)."""
    return all(
        type(pair) is tuple and len(pair) == 2 and type(pair[0]) is str and type(pair[1]) is str
        for pair in pairs
    )


#: Mapping types whose ``_store`` maps a lower-case name to its ``(name, value)`` pair, read
#: directly instead of through ``items()`` (the Mapping machinery costs microseconds a request).
#: The adapter registers requests' ``CaseInsensitiveDict``: the engine does not import requests.
PAIR_STORE_TYPES: set[type] = set()


class HTTPSConnection(HTTPConnection):
    """An HTTP/1.1 connection over TLS (urllib3's ``HTTPSConnection`` contract).

    Pools hand every connection one prepared ``ssl_context`` (see
    :func:`fastpool.tls.build_ssl_context`).
    Standalone, the connection takes urllib3's TLS arguments (``cert_reqs``, ``ca_certs``,
    ``ca_cert_dir``, ``ca_cert_data``, ``cert_file``, ``key_file``, ``key_password``,
    ``ssl_version``, ``ssl_minimum_version``, ``ssl_maximum_version``; verification on by
    default) and builds its context from them, starting from ``ssl_context`` if given.

    :param server_hostname: the SNI and hostname-check name (default: ``host``).
    :param assert_hostname: a name to check the certificate against instead of the host, or
        ``False`` to skip the hostname check (default ``None``).
    :param assert_fingerprint: a hex SHA-1/SHA-256 certificate fingerprint to pin (default
        ``None``).
    """

    default_port: typing.ClassVar[int] = 443
    scheme: typing.ClassVar[str] = "https"

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        assert_hostname: None | str | typing.Literal[False] = None,
        assert_fingerprint: str | None = None,
        **kw: Any,
    ) -> None:
        tls = {name: kw.pop(name) for name in TLS_SETTINGS if name in kw}
        super().__init__(host, port, **kw)
        if ssl_context is None or any(value is not None for value in tls.values()):
            ssl_context = build_ssl_context(
                ssl_context,
                assert_hostname=assert_hostname,
                assert_fingerprint=assert_fingerprint,
                **tls,
            )
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        self.assert_hostname = assert_hostname
        self.assert_fingerprint = assert_fingerprint
        #: the TLS settings of a handshake the multiplexed loop drives (loop_dial_connected)
        self._loop_tls: tuple[Any, ...] | None = None

    def connect(self) -> None:
        """Dial (through the proxy, and its tunnel if set) and complete the TLS handshake."""
        self._connect_transport()
        sock = self.sock
        assert sock is not None
        context, name, assert_hostname, assert_fingerprint = self._tls_target()
        try:
            self.sock = wrap_and_verify(sock, context, name, assert_hostname, assert_fingerprint)
        except BaseException:
            self._dial_aborted()
            raise
        self._verified(context, assert_fingerprint)

    def loop_dial_connected(self) -> Any:
        """The loop's TCP connect succeeded: wrap the socket for the handshake the loop drives
        (``do_handshake`` on the non-blocking socket), with the settings :meth:`connect` uses."""
        super().loop_dial_connected()
        context, name, assert_hostname, assert_fingerprint = self._tls_target()
        self._loop_tls = (context, name.strip("[]"), assert_hostname, assert_fingerprint)
        tls = context.wrap_socket(
            self.sock,  # type: ignore[arg-type]
            server_hostname=name.strip("[]"),
            do_handshake_on_connect=False,
        )
        self.sock = tls
        return tls

    def loop_dial_verified(self) -> None:
        """The loop's handshake completed: urllib3's checks after it, as :meth:`connect`."""
        assert self._loop_tls is not None
        context, name, assert_hostname, assert_fingerprint = self._loop_tls
        self._loop_tls = None
        check_peer(self.sock, context, name, assert_hostname, assert_fingerprint)
        self._verified(context, assert_fingerprint)

    def _tls_target(self) -> tuple[ssl.SSLContext, str, Any, str | None]:
        """The TLS context, the server name, ``assert_hostname`` and ``assert_fingerprint``
        of this connection's TLS session."""
        if self.proxy is not None and self._tunnel_host is None:
            # Forwarding (use_forwarding_for_https): this TLS session is with the proxy, so it
            # takes the proxy's settings, never the origin's (its client certificate, its
            # pinned name or fingerprint), as urllib3 does.
            config = self.proxy_config
            context = self.proxy_ssl_context
            if context is None:
                context = self.proxy_ssl_context = context_for_proxy(config)
            name = self.host
            assert_hostname = config.assert_hostname if config else None
            assert_fingerprint = config.assert_fingerprint if config else None
        else:
            context = self.ssl_context
            name = self.server_hostname or (
                self._tunnel_host if self._tunnel_host is not None else self.host
            )
            name = name.rstrip(".")  # as in Host (see _compute_host_header)
            assert_hostname = self.assert_hostname
            assert_fingerprint = self.assert_fingerprint
        return context, name, assert_hostname, assert_fingerprint

    def _verified(self, context: ssl.SSLContext, assert_fingerprint: str | None) -> None:
        self._poller = None
        self.is_verified = context.verify_mode == ssl.CERT_REQUIRED or bool(assert_fingerprint)
        if self.proxy is not None:
            if self._tunnel_host is None:  # forwarding: this TLS session is with the proxy
                self.proxy_is_verified = self.is_verified
            self.has_connected_to_proxy = True


#: fastpool's own connection steps as this module defined them, for the checks that the map
#: may take a request past them: a patch made later is never one of these, even one made before
#: fastpool.pool is first imported (fastpool imports its modules lazily)
OWN_REQUEST = HTTPConnection.request
OWN_RENDER_REQUEST = HTTPConnection.render_request
OWN_CONNECT = (HTTPConnection.connect, HTTPSConnection.connect)
#: the connection's liveness check, asked at each checkout (a property: the class holds it)
OWN_IS_CONNECTED = vars(HTTPConnection)["is_connected"]


#: the connection's steps a request runs, from its dial to its answer's end (the compiled lane
#: reads this tuple too)
REQUEST_STEPS = (
    "request", "render_request", "connect", "read_response_head", "take_head_ahead",
    "answer_is_whole", "take_rest",
)  # fmt: skip


def steps_replaced_on(conn: HTTPConnection) -> bool:
    """Whether one of the connection's steps a request runs (``request``, ``render_request``,
    ``connect``, or reading the answer: ``read_response_head``, ``take_head_ahead``,
    ``answer_is_whole``, ``take_rest``) was replaced on the object itself
    (``mock.patch.object(conn, "request")``): the map then goes through ``urlopen``, which
    calls it, as one request does."""
    own = conn.__dict__
    if own:  # (most connections: an empty dict, nothing to look up)
        for name in REQUEST_STEPS:
            if name in own:
                return True
    return False
