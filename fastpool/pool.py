"""HostPool: the connections of one origin (scheme, host, port, TLS and proxy settings).

:class:`HTTPConnectionPool` and :class:`HTTPSConnectionPool` mirror urllib3's classes of the
same names: constructor, ``urlopen``/``request``, retries through urllib3's ``Retry``, timeouts
through its ``Timeout``, the same log lines and exceptions. Underneath, connections are checked
out of and back into the compiled ``HostQueue`` and spoken to by fastpool's own engine.
"""

from __future__ import annotations

import errno
import functools
import logging
import math
import os
import re
import socket
import ssl
import sys
import typing
import warnings
import weakref
from collections.abc import Callable, Mapping
from http.client import RemoteDisconnected
from time import monotonic
from typing import Any

from urllib3 import HTTPHeaderDict
from urllib3.connectionpool import HTTPConnectionPool as _U3Pool
from urllib3.exceptions import (
    HostChangedError,
    InsecureRequestWarning,
    LocationValueError,
    MaxRetryError,
    NewConnectionError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.exceptions import HTTPError as _U3HTTPError
from urllib3.exceptions import ProtocolError as _U3ProtocolError
from urllib3.exceptions import TimeoutError as _U3TimeoutError
from urllib3.util import retry as _urllib3_retry
from urllib3.util.proxy import connection_requires_http_tunnel
from urllib3.util.request import set_file_position
from urllib3.util.retry import Retry
from urllib3.util.ssl_match_hostname import CertificateError
from urllib3.util.timeout import Timeout
from urllib3.util.url import parse_url

from . import connection as _connection
from ._hostqueue import HostQueue
from ._patches import STOCK_URLOPEN, stock_function, urlopen_through_patch
from ._thirdparty import RequestMethods, encode_target, headers_for_method_change, normalize_host
from .connection import HTTPConnection, HTTPSConnection, port_by_scheme
from .exceptions import (
    MSG_NAN,
    MSG_NOT_INT,
    MSG_NOT_NUMBER,
    MSG_NOT_POSITIVE,
    InvalidContentLengthError,
    PoolTimeoutError,
    ProtocolError,
)
from .limits import PUT_CLOSE, PUT_IDLE, ConnectionLimit
from .response import HTTPResponse
from .tls import PoolContexts, has_buffered_bytes, is_forwarding

if typing.TYPE_CHECKING:
    from typing_extensions import Self

    from ._loop import Exchange

__all__ = ("HTTPConnectionPool", "HTTPSConnectionPool", "HostPool", "connection_from_url")

_loop: Any = None  # fastpool._loop, once a map has begun

#: The pools' logger with ``urllib3_logging=False``; by default they log as urllib3's do, under
#: ``urllib3.connectionpool``.
log = logging.getLogger("fastpool.connectionpool")
_U3_LOG = logging.getLogger("urllib3.connectionpool")

# Go's rules for the keep-alive race: a reused connection that fails before any response byte
# is retried once on a new connection when the request is idempotent (these methods, or an
# Idempotency-Key header) and its body can be sent again.
_REPLAYABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_IDEMPOTENCY_HEADERS = ("idempotency-key", "x-idempotency-key")
_REWINDABLE_BODIES = (bytes, bytearray, str, memoryview)

# Every pool alive in this process, so a forked child can start them all empty.
_all_pools: weakref.WeakSet[HTTPConnectionPool] = weakref.WeakSet()
_STALE_ERRORS = (
    RemoteDisconnected,
    ConnectionResetError,
    BrokenPipeError,
    ConnectionAbortedError,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
)
# What read_response_head may raise that _make_request turns into urllib3's errors or a replay
# (see _head_failed; ssl's errors include SSLEOFError and SSLZeroReturnError).
_HEAD_ERRORS = (*_STALE_ERRORS, socket.timeout, ssl.SSLError, BlockingIOError, ProtocolError)
# A request cut by these (and BrokenPipeError) still gets its answer read.
_RESET_ERRNOS = (errno.EPROTOTYPE, errno.ECONNRESET)
_URL_CACHE_SIZE = 256
#: of the targets a pool keeps (up to _URL_CACHE_SIZE), those it took as they stand: only the
#: first few, so that a crawl's new URLs, each seen once, do not churn 200 pools' caches
_PLAIN_CACHED = 32
# urllib3's "no timeout given" sentinel, by its public name (a global: read per request).
_DEFAULT_TIMEOUT = Timeout.DEFAULT_TIMEOUT
_NOT_CACHED = object()
#: a path and a query ("?" first) of the characters urllib3 never encodes in them, with no
#: "%" (whose case it would change): shared with PoolManager's URL split
PLAIN_PATH = r"/[A-Za-z0-9._~!$&'()*+,;=:@/-]*"
PLAIN_QUERY = r"\?[A-Za-z0-9._~!$&'()*+,;=:@/?-]*"
#: an origin-form target (RFC 9112) urllib3's encode_target leaves as it is (no fragment)
PLAIN_ORIGIN_FORM = re.compile(f"{PLAIN_PATH}(?:{PLAIN_QUERY})?")


# What urlopen retries (urllib3's list): urllib3's error for it goes to Retry.increment.
_RETRIED_ERRORS = (
    _U3TimeoutError,
    OSError,
    _U3ProtocolError,
    ssl.SSLError,
    SSLError,
    CertificateError,
    ProxyError,
)


class Resend(Exception):
    """Raised by ``urlopen`` for a request of the multiplexed loop (fastpool.multi) that
    urllib3's ``Retry`` sends again: the runner sends it again after ``delay`` seconds,
    counting with ``retries``, rather than the loop thread sleeping the backoff and sending it
    itself. It never reaches the caller of ``map``."""

    def __init__(self, retries: Retry, delay: float) -> None:
        super().__init__(retries, delay)
        self.retries = retries
        self.delay = delay


class _Again(typing.NamedTuple):
    """What urlopen passes on unchanged to its next call for a retry or a redirect (built only
    then: the common call never pays for it)."""

    redirect: bool
    assert_same_host: bool
    timeout: Any
    pool_timeout: float | None
    release_conn: bool
    chunked: bool
    body_pos: Any
    preload_content: bool
    decode_content: bool
    response_kw: dict[str, Any]
    #: the multiplexed loop's request: a retry is raised as Resend for the runner to send
    #: after the backoff, instead of sleeping in the loop thread
    resend: bool = False


def _resolve(timeout: Any) -> float | None:
    if timeout is _DEFAULT_TIMEOUT:
        return socket.getdefaulttimeout()
    return typing.cast("float | None", timeout)


def _not_nan(seconds: float | None) -> float | None:
    """``seconds``, refused as the socket refuses it when it is NaN (urllib3's Timeout takes
    NaN; its socket call raises): here, before a socket or the loop's timers are given it."""
    if isinstance(seconds, float) and math.isnan(seconds):
        raise ValueError("Invalid value NaN (not a number)")
    return seconds


def _timed_out(err: BaseException) -> bool:
    return isinstance(err, socket.timeout) or (
        isinstance(err, OSError) and err.errno in (errno.EAGAIN, errno.EWOULDBLOCK)
    )


def _close_idle(queue: Any) -> None:
    for conn in queue.close():
        conn.close()


def _replayable(method: str, body: Any, headers: Mapping[str, str] | None) -> bool:
    """Go's rule: idempotent (method or Idempotency-Key header) and a body we can send again."""
    if body is not None and not isinstance(body, _REWINDABLE_BODIES):
        return False
    if method in _REPLAYABLE_METHODS:
        return True
    return bool(headers) and any(
        str(name).lower() in _IDEMPOTENCY_HEADERS
        for name in headers  # type: ignore[union-attr]
    )


#: urllib3's Retry.is_retry as urllib3 defined it (a patch on the class is not the stock one,
#: even one made before fastpool was imported); a sentinel when a replacement hides it
_STOCK_IS_RETRY = stock_function(Retry.is_retry, _urllib3_retry) or object()


def no_status_retry(retries: Retry, status: int) -> bool:
    """True when the stock ``Retry.is_retry`` is certain to say no for ``status`` (no
    ``status_forcelist`` entry, no status that ``Retry-After`` may make retryable): the common
    case skips building its arguments."""
    return (
        # not overridden by a subclass nor replaced on the instance (vars() is not read: that
        # would turn a plain object's compact attribute layout into a dict)
        getattr(retries.is_retry, "__func__", None) is _STOCK_IS_RETRY
        and not (retries.status_forcelist and status in retries.status_forcelist)
        and status not in retries.RETRY_AFTER_STATUS_CODES
    )


def _check_seconds(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(MSG_NOT_NUMBER.format(name=name, type=type(value).__name__))
    if math.isnan(value):
        raise ValueError(MSG_NAN.format(name=name))
    if value <= 0:
        raise ValueError(f"{name} must be > 0 or None, got {value}")
    return float(value)


def _check_wait(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(MSG_NOT_NUMBER.format(name="pool_timeout", type=type(value).__name__))
    if math.isnan(value):
        raise ValueError(MSG_NAN.format(name="pool_timeout"))
    if value < 0:
        raise ValueError(f"pool_timeout must be >= 0 or None, got {value}")
    return float(value)


def _check_bound(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(MSG_NOT_INT.format(name=name, type=type(value).__name__))
    if value < 1:
        raise ValueError(MSG_NOT_POSITIVE.format(name=name, value=value))
    return value


#: The Trace that pools made without one of their own get: [None], or [the Trace that an
#: instrumentation (fastpool.otel) set with set_process_trace].
_process_trace: list[Any] = [None]


def set_process_trace(trace: Any) -> Any:
    """Give ``trace`` (a :class:`fastpool.trace.Trace`, or None to stop) to every pool without
    a Trace of its own, present and future; returns the one it replaces. For instrumentations
    (see :mod:`fastpool.otel`): each pool switches between its plain and traced paths (see
    :meth:`HTTPConnectionPool.set_trace`), so that ``None`` costs the requests nothing."""
    old = _process_trace[0]
    _process_trace[0] = trace
    for pool in list(_all_pools):
        if pool._trace is old:
            pool.set_trace(trace)
    return old


# --- the steps a pool takes with a Trace, or without ----------------------------------------
# A pool chooses when its Trace is set (HTTPConnectionPool.set_trace): its plain path stores
# the plain callables (functions, never a bound method of the pool: that would be a cycle),
# its traced path the same steps reporting to a fastpool.trace.PoolSteps.


def _read_head(conn: HTTPConnection, method: str) -> Any:
    return conn.read_response_head(method)


def _validate(pool: HTTPConnectionPool, conn: HTTPConnection) -> None:
    # looked up per call, as urllib3 does: a patch of the class's _validate_conn applies
    pool._validate_conn(conn)


def _close(conn: HTTPConnection, reason: str) -> None:
    conn.close()


def _drop_if_retired(pool: HTTPConnectionPool, conn: HTTPConnection) -> None:
    # A retired pool (evicted by its manager) keeps nothing idle; a waiter handed the
    # connection directly keeps it (remove() finds it only on the idle stack).
    if pool._retired and pool.pool.remove(conn):
        pool._discard(conn, "closed")


class _Plain:
    """The untraced pool's steps off the common path (the tunnel, the keep-alive replay)."""

    @staticmethod
    def tunnel(pool: HTTPConnectionPool, conn: HTTPConnection) -> None:
        pool._prepare_proxy(conn)

    @staticmethod
    def replay(
        pool: HTTPConnectionPool,
        conn: HTTPConnection,
        connect_timeout: float | None,
        method: str,
        url: str,
        error: BaseException,
    ) -> None:
        pool._redial(conn, connect_timeout, url)

    @staticmethod
    def replayed(method: str, url: str, error: BaseException) -> None:
        """The loop replayed the request itself (see HTTPConnectionPool._replayed)."""


_PLAIN = _Plain()


class _Traced:
    """A traced pool's steps: the plain ones, each inside its step of ``steps`` (a
    fastpool.trace.PoolSteps). Given the pool at each call, never kept."""

    __slots__ = ("steps",)

    def __init__(self, steps: Any) -> None:
        self.steps = steps

    def ready(
        self, pool: HTTPConnectionPool, conn: HTTPConnection, timeout: float | None
    ) -> HTTPConnection:
        conn = pool._revive(conn, timeout)
        self.steps.got_conn(conn)
        return conn

    def dial(
        self,
        pool: HTTPConnectionPool,
        conn: HTTPConnection,
        connect: Callable[[HTTPConnection], None] | None = None,
    ) -> None:
        """``connect(conn)`` (``_validate_conn``, or ``_prepare_proxy`` for a tunnel) reporting
        connect_start, connect_done and (HTTPS) tls_done."""
        if connect is None:
            connect = pool._validate_conn
        tls = pool.scheme == "https"
        if conn.sock is not None and not tls:
            connect(conn)
            return
        with self.steps.connect(conn, tls):
            connect(conn)

    def read_head(self, conn: HTTPConnection, method: str) -> Any:
        with self.steps.first_byte():
            return conn.read_response_head(method)

    def kept(self, pool: HTTPConnectionPool, conn: HTTPConnection) -> None:
        if pool._retired and pool.pool.remove(conn):
            pool._discard(conn, "closed")
        else:
            self.steps.put_idle()

    def tunnel(self, pool: HTTPConnectionPool, conn: HTTPConnection) -> None:
        # the tunnel is this connection's dial: reported as one
        self.dial(pool, conn, pool._prepare_proxy)

    def replay(
        self,
        pool: HTTPConnectionPool,
        conn: HTTPConnection,
        connect_timeout: float | None,
        method: str,
        url: str,
        error: BaseException,
    ) -> None:
        self.steps.retry(method, url, error)
        pool._redial(conn, connect_timeout, url)

    def replayed(self, method: str, url: str, error: BaseException) -> None:
        self.steps.retry(method, url, error)


def _check_connection_class(pool: Any, base: type) -> None:
    """Fail at once, naming it, for a ``ConnectionCls`` the engine cannot drive."""
    cls = pool.ConnectionCls
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise TypeError(
            f"{type(pool).__name__}.ConnectionCls must be {base.__module__}.{base.__qualname__} "
            f"or a subclass (fastpool's engine drives it), got {cls!r}; a urllib3 connection "
            "class needs urllib3's own pools"
        )
    pool._checked_connection_cls = cls


def _after_fork_in_child() -> None:
    # The child must never speak on a socket it shares with its parent: every pool starts
    # empty. Closing our copy of a file descriptor leaves the parent's socket open.
    for pool in list(_all_pools):
        pool._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# urllib3's hint when a TLS handshake with an https:// proxy meets a plain-HTTP proxy.
_HTTP_ONLY_PROXY_HINT = (
    ". Your proxy appears to only use HTTP and not HTTPS, try changing your proxy URL to be "
    "HTTP. See: https://urllib3.readthedocs.io/en/latest/advanced-usage.html"
    "#https-proxy-error-http-proxy"
)
_HTTP_ONLY_PROXY_SIGNS = ("wrong version number", "unknown protocol", "record layer failure")


def _wrap_proxy_error(err: Exception, proxy_scheme: str | None = None) -> ProxyError:
    words = " ".join(re.split("[^a-z]", str(err).lower()))
    http_only = proxy_scheme == "https" and any(sign in words for sign in _HTTP_ONLY_PROXY_SIGNS)
    new = ProxyError(
        "Unable to connect to proxy" + (_HTTP_ONLY_PROXY_HINT if http_only else ""), err
    )
    new.__cause__ = err
    return new


#: Retry's sleeping steps as urllib3 defined them (a sentinel for one a replacement hides):
#: while they are a Retry's own, the map's runner waits what they would sleep without sleeping
#: (a subclass's or a patch's must be called, even a patch made before fastpool was imported)
_RETRY_SLEEPS = {
    name: stock_function(getattr(Retry, name, None), _urllib3_retry) or object()
    for name in ("sleep", "sleep_for_retry", "_sleep_backoff")
}
#: the module urllib3's Retry sleeps with (a test that patches time.sleep to skip the backoffs
#: patches it for one request: so for the map)
_RETRY_TIME = getattr(_urllib3_retry, "time", None)


def _stock_sleep(sleep: Any) -> bool:
    """Whether ``sleep`` is the time module's own ``sleep``, the builtin itself (a patch made
    before fastpool was imported is not)."""
    return (
        type(sleep) is type(len)
        and getattr(sleep, "__self__", None) is _RETRY_TIME
        and sleep.__name__ == "sleep"
    )


def _retry_delay(retries: Retry, response: Any) -> float:
    """How long ``retries.sleep(response)`` would sleep: the answer's Retry-After when it is
    respected and given, else the backoff. A Retry whose ``sleep`` (or a step of it, or the
    ``time.sleep`` it calls) a subclass or a patch replaced is asked to sleep here, in the
    map's thread, as it decides (one request would call it): nothing is left to wait."""
    cls = type(retries)
    if (
        any(getattr(cls, name, None) is not own for name, own in _RETRY_SLEEPS.items())
        or _RETRY_SLEEPS.keys() & vars(retries).keys()
        or not _stock_sleep(getattr(_RETRY_TIME, "sleep", None))
    ):
        if response is None:
            retries.sleep()
        else:
            retries.sleep(response)
        return 0.0
    if retries.respect_retry_after_header and response is not None:
        retry_after = retries.get_retry_after(response)
        if retry_after:
            return float(retry_after)
    return max(float(retries.get_backoff_time()), 0.0)


class TotalLeft:
    """A request's running ``Timeout(total=...)``: called, what it leaves for reading (the loop
    asks once connected, and again for a replay), kept as ``read``. ``urlopen`` finishes the
    exchange with that same read timeout, fixed from then on as urllib3's once it has sent,
    rather than start the total again."""

    __slots__ = ("read", "timeout")

    def __init__(self, timeout: Timeout) -> None:
        self.timeout = timeout
        self.read: float | None = None

    def __call__(self) -> float | None:
        self.read = _resolve(self.timeout.read_timeout)
        return self.read


def _exchange_timeout(exchange: Any, timeout: Any) -> Any:
    """The timeout ``urlopen`` finishes a loop's exchange with: its running total, if any."""
    running = exchange.read_timeout_of
    return running if type(running) is TotalLeft else timeout


def connect_in_worker(conn: HTTPConnection) -> None:
    """A dial for the multiplexed loop's workers: the connection's own connect."""
    conn.connect()


class HTTPConnectionPool(RequestMethods):
    """Thread-safe connection pool for one host (urllib3's ``HTTPConnectionPool``).

    :param host: the host, e.g. ``"localhost"``.
    :param port: the port (``None``: the scheme's default).
    :param timeout: a float or ``urllib3.util.Timeout`` for each request (default: the socket
        default timeout).
    :param maxsize: how many idle connections are kept for reuse (default 1).
    :param block: at most ``maxsize`` connections open at once, waiting for a free one
        (default ``False``: more are opened, and discarded on return when the pool is full).
    :param headers: headers sent with every request unless ``headers`` are given.
    :param retries: the default ``Retry`` (or int/bool); ``None`` means ``Retry.DEFAULT``.
    :param idle_timeout: keyword-only. Seconds a connection may sit idle and still be reused;
        an older one is closed at checkout (counted in ``expired_idle``). Default None: no limit.
    :param max_lifetime: keyword-only. Seconds since a connection was opened after which it is
        closed at checkout instead of reused (``expired_lifetime``). Default None: no limit.
    :param max_connections_per_host: keyword-only. Hard cap on this pool's open connections,
        dials included, in either ``block`` mode (the HostQueue ``limit``). Default None.
    :param pool_timeout: keyword-only. Default seconds a checkout waits at a cap before raising
        ``PoolTimeoutError`` when ``urlopen`` gets no ``pool_timeout``. Default None: forever.
    :param pool_full_warning: keyword-only. ``"always"`` (default, as urllib3): log "Connection
        pool is full" on every discard; ``"first"``: once, then a summary every 100 discards.
    :param max_line_bytes: (and ``max_headers``, ``max_head_bytes``) keyword-only bounds on a
        response head: one line's bytes, its line ending included (default None: 65536,
        http.client's), its header fields (None: 100, http.client's), and all its bytes, 1xx
        heads included (None: 1048576, a bound http.client lacks). Past one, ``ProtocolError`` (the cause a
        ``ResponseHeadTooLarge``), never retried.
    :param resolver: keyword-only. A :class:`fastpool.resolver.Resolver` that new connections
        resolve their host with (cached, address families interleaved). Default None:
        ``socket.getaddrinfo`` at every dial, as urllib3.
    :param urllib3_logging: keyword-only. Log under ``urllib3.connectionpool``, with urllib3's
        lines, so that logging set up for urllib3 (levels, handlers, filters) applies
        unchanged (default True); False: under ``fastpool.connectionpool`` instead. One or
        the other, never both, so a root handler does not print every line twice.
    :param \\**conn_kw: passed to each new connection (``source_address``, ``socket_options``,
        ``blocksize`` ...).

    Counters (ints, only growing): ``expired_idle``, ``expired_lifetime``, ``dropped_stale``
    (idle connections found closed by the server at checkout), ``retried`` (requests sent
    again after the keep-alive race), ``handed_over`` (checkouts that waited at the global
    cap and were handed a connection of this pool coming back: reuses, though the HostQueue
    counted them as dials), plus ``num_connections``/``num_requests`` and the
    HostQueue's counters in ``pool``.
    """

    scheme = "http"
    # urllib3's exact format string and default port, per scheme
    _new_conn_log = "Starting new HTTP connection (%d): %s:%s"
    _log_port = "80"
    #: The connection class: fastpool's ``HTTPConnection`` or a subclass (checked when the pool
    #: is made, and when it is replaced on the instance, at the next dial).
    ConnectionCls: type[HTTPConnection] = HTTPConnection
    _checked_connection_cls: type | None = None
    #: The ``verify`` that fastpool.HTTPAdapter's cert_verify last applied to this pool: the
    #: adapter does not repeat it for every request (None: not yet).
    adapter_verify: bool | str | None = None
    # The state each request reads is in slots: reading one from the compiled cores is a
    # descriptor's load, not a lookup in the instance's dict (about half the cost from C). The
    # dict stays for the rest (HTTPS settings, a subclass's or a tool's attributes).
    __slots__ = (
        "_check_conn",
        "_checkout",
        "_conn_settings",
        "_dial",
        "_discard",
        "_expiry",
        "_kept",
        "_kept_watch",
        "_last_number",
        "_last_timeout",
        "_limiter",
        "_log",
        "_read_head",
        "_ready",
        "_retired",
        "_route",
        "_same_host_cache",
        "_target_cache",
        "_trace_now",
        "_tunnel_host",
        "_warn_first",
        "block",
        "conn_kw",
        "dropped_stale",
        "expired_idle",
        "expired_lifetime",
        "handed_over",
        "headers",
        "host",
        "idle_timeout",
        "max_lifetime",
        "num_connections",
        "num_requests",
        "pool",
        "pool_timeout",
        "port",
        "proxy",
        "proxy_config",
        "proxy_headers",
        "retried",
        "retries",
        "timeout",
    )
    # The steps chosen by set_trace (plain or traced); the functions are called with the pool.
    _trace_now: Any
    _route: _Plain | _Traced
    _checkout: Callable[[float | None], Any]
    _ready: Callable[[Any, HTTPConnection, float | None], HTTPConnection]
    _dial: Callable[[Any, HTTPConnection], None]
    _read_head: Callable[[HTTPConnection, str], Any]
    _discard: Callable[[HTTPConnection, str], None]
    _kept: Callable[[Any, HTTPConnection], None]
    _check_conn: bool
    _kept_watch: bool

    def __init__(
        self,
        host: str,
        port: int | None = None,
        timeout: Any = _DEFAULT_TIMEOUT,
        maxsize: int = 1,
        block: bool = False,
        headers: Mapping[str, str] | None = None,
        retries: Retry | bool | int | None = None,
        _proxy: Any = None,
        _proxy_headers: Mapping[str, str] | None = None,
        _proxy_config: Any = None,
        *,
        idle_timeout: float | None = None,
        max_lifetime: float | None = None,
        max_connections_per_host: int | None = None,
        pool_timeout: float | None = None,
        pool_full_warning: str = "always",
        max_line_bytes: int | None = None,
        max_headers: int | None = None,
        max_head_bytes: int | None = None,
        urllib3_logging: bool = True,
        resolver: Any = None,
        _trace: Any = None,
        _limiter: ConnectionLimit | None = None,
        **conn_kw: Any,
    ) -> None:
        if not host:
            raise LocationValueError("No host specified.")
        _check_connection_class(self, HTTPSConnection if self.scheme == "https" else HTTPConnection)
        self.host = normalize_host(host, scheme=self.scheme)
        self.port = port
        self._tunnel_host = self.host.lower()
        RequestMethods.__init__(self, headers)
        if not isinstance(timeout, Timeout):
            timeout = Timeout.from_float(timeout)
        if retries is None:
            retries = Retry.DEFAULT
        self.timeout: Timeout = timeout
        self.retries = retries
        self.block = block
        self.idle_timeout = _check_seconds("idle_timeout", idle_timeout)
        self.max_lifetime = _check_seconds("max_lifetime", max_lifetime)
        self.pool_timeout = None if pool_timeout is None else _check_wait(pool_timeout)
        self._expiry = self.idle_timeout is not None or self.max_lifetime is not None
        self.pool = HostQueue(maxsize, block, max_connections_per_host)
        if pool_full_warning not in ("always", "first"):
            raise ValueError(
                f"pool_full_warning must be 'always' or 'first', got {pool_full_warning!r}"
            )
        self._warn_first = pool_full_warning == "first"
        # name -> bound, only those set: each new connection gets them (its defaults otherwise)
        bounds = {
            "max_line_bytes": _check_bound("max_line_bytes", max_line_bytes),
            "max_headers": _check_bound("max_headers", max_headers),
            "max_head_bytes": _check_bound("max_head_bytes", max_head_bytes),
        }
        # ... and the resolver, when one is given
        bounds["resolver"] = resolver
        self._conn_settings = {name: value for name, value in bounds.items() if value is not None}
        self._retired = False
        self._log = _U3_LOG if urllib3_logging else log
        self._limiter = _limiter
        # None, or the Trace given, else the process-wide one an instrumentation set
        # (fastpool.otel): read once here, not on every request
        self.set_trace(_trace if _trace is not None else _process_trace[0])
        self.expired_idle = 0
        self.expired_lifetime = 0
        self.dropped_stale = 0
        self.retried = 0
        self.handed_over = 0
        _all_pools.add(self)
        # A pool dropped without close() still closes its idle sockets (as urllib3's does).
        weakref.finalize(self, _close_idle, self.pool)
        self.proxy = _proxy
        self.proxy_headers = _proxy_headers or {}
        self.proxy_config = _proxy_config
        self.num_connections = 0
        self.num_requests = 0
        self.conn_kw = conn_kw
        if self.proxy:
            self.conn_kw.setdefault("socket_options", [])
            self.conn_kw["proxy"] = self.proxy
            self.conn_kw["proxy_config"] = self.proxy_config
        # (a Timeout without total, the socket default then, its connect and read); a sentinel
        # first: ``timeout=None`` must not meet an empty cache as a hit (see _make_request)
        self._last_timeout: tuple[Any, ...] = (_NOT_CACHED, None, None, None)
        self._last_number: tuple[Any, Any] = (None, None)  # see _timeouts
        self._same_host_cache: dict[str, bool] = {}
        self._target_cache: dict[str, tuple[str, str | None]] = {}

    def __str__(self) -> str:
        return f"{type(self).__name__}(host={self.host!r}, port={self.port!r})"

    # --- tracing ------------------------------------------------------------------------------
    def set_trace(self, trace: Any) -> None:
        """Report this pool's steps to ``trace`` (a :class:`fastpool.trace.Trace`; None: stop).

        The pool chooses here, once, between its plain path and its traced path: without a
        Trace a request runs no trace code and tests nothing about tracing. Requests already
        running may report some of their steps, or miss some.
        """
        self._trace_now = trace
        cls = type(self)
        if trace is None:
            self._route = _PLAIN
            self._checkout = self.pool.checkout
            self._ready = cls._revive
            self._dial = _validate
            self._read_head = _read_head
            self._discard = _close
            self._kept = _drop_if_retired
            self._check_conn = self._expiry
            self._kept_watch = self._retired
            return
        from .trace import PoolSteps  # only when tracing is asked for

        steps = PoolSteps(trace, self.host, self.port)
        route = _Traced(steps)
        self._route = route
        self._checkout = functools.partial(steps.checkout, self.pool)
        self._ready = route.ready
        self._dial = route.dial
        self._read_head = route.read_head
        self._discard = steps.discard
        self._kept = route.kept
        self._check_conn = True  # every checkout ends with got_conn
        self._kept_watch = True  # every check-in reports put_idle

    @property
    def _trace(self) -> Any:
        """The pool's Trace, or None (assigning it calls :meth:`set_trace`)."""
        return self._trace_now

    @_trace.setter
    def _trace(self, trace: Any) -> None:
        self.set_trace(trace)

    @property
    def _u3_self(self) -> Any:
        # urllib3's exceptions and Retry are typed for its own ConnectionPool; ours quacks alike.
        return self

    def __repr__(self) -> str:
        return f"<{self} {self.pool!r}>"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> typing.Literal[False]:
        self.close()
        return False

    # --- connections --------------------------------------------------------------------------
    def _new_conn(self) -> HTTPConnection:
        """Return a fresh, not yet connected connection (logs like urllib3)."""
        self.num_connections += 1
        self._log.debug(
            self._new_conn_log, self.num_connections, self.host, self.port or self._log_port
        )
        conn = self._make_conn()
        conn._limiter = self._limiter
        for name, value in self._conn_settings.items():
            setattr(conn, name, value)  # (a slot or the dict, whichever holds the name)
        return conn

    def _make_conn(self) -> HTTPConnection:
        host, port = self.host, self.port
        if self.proxy is not None and self.proxy.host is not None:
            host, port = self.proxy.host, self.proxy.port
        if self.ConnectionCls is not self._checked_connection_cls:  # set on the instance
            _check_connection_class(self, HTTPConnection)
        return self.ConnectionCls(host, port, timeout=self.timeout.connect_timeout, **self.conn_kw)

    def _get_conn(self, timeout: float | None = None) -> HTTPConnection:
        """Check a connection out: an idle one if any (checked for liveness), else a new one.

        Blocks up to ``timeout`` seconds (None: the pool's ``pool_timeout``) at a cap (``block``
        or ``max_connections_per_host``), then raises ``EmptyPoolError``; raises
        ``ClosedPoolError`` after ``close()``. An idle connection past ``idle_timeout`` or
        ``max_lifetime``, or closed by the server, is closed here and its slot dials anew.
        """
        if timeout is None:
            timeout = self.pool_timeout
        conn: HTTPConnection | None = self._checkout(timeout)
        try:
            if conn is None:  # a free slot: a connection to dial, or one handed over at the cap
                conn = self._fresh_conn(timeout)
            elif self._limiter is not None:
                self._limiter.busy(conn)
            # The common case, a live idle connection, no expiry and no trace, stops here.
            if self._check_conn or not conn.is_connected:
                conn = self._ready(self, conn, timeout)  # _revive (traced: then got_conn)
            return conn
        except BaseException:
            if conn is not None:
                conn.close()
            self._put_conn(None)
            raise

    def _fresh_conn(self, timeout: float | None) -> HTTPConnection:
        """A free slot: a new connection to dial, or (at the global cap) one handed over."""
        return self._new_conn() if self._limiter is None else self._room_for(None, timeout)

    def _revive(self, conn: HTTPConnection, timeout: float | None) -> HTTPConnection:
        """An idle connection that may not serve as it is: close it when it expired or the
        server dropped it (its slot stays), and find room at the global cap to dial again.
        A new connection (not yet dialed) passes unchanged."""
        if self._expiry:
            self._expire(conn)
        if conn.sock is not None and not conn.is_connected:
            self._drop_stale(conn)
        if conn.sock is None and self._limiter is not None and not conn._has_token:
            conn = self._room_for(conn, timeout)  # closed here: it needs room again
        return conn

    def _drop_stale(self, conn: HTTPConnection) -> None:
        """The server closed ``conn`` (or sent unasked bytes) while it idled: close it,
        keeping its slot, and count it."""
        self._log.debug("Resetting dropped connection: %s", self.host)
        self.dropped_stale += 1
        self._discard(conn, "stale")

    def _room_for(self, closed: HTTPConnection | None, timeout: float | None) -> HTTPConnection:
        """At the global cap: a token to dial (on ``closed``, or a new connection), or an idle
        connection of this pool handed over by the cap's queue (see ConnectionLimit); waits
        up to ``timeout`` seconds (None: the cap's own)."""
        limiter = self._limiter
        assert limiter is not None
        handed = limiter.acquire(self, timeout)
        if handed is not None:
            self.handed_over += 1
            return handed
        if closed is None:
            try:
                closed = self._new_conn()
            except BaseException:
                limiter.release(None)  # no connection holds the token
                raise
        closed._has_token = True
        closed._token_generation = limiter.generation
        return closed

    def _expire(self, conn: HTTPConnection) -> None:
        """Close ``conn`` (keeping its slot) when it idled or lived too long."""
        if conn.sock is None:
            return
        now = monotonic()
        reason = None
        if self.idle_timeout is not None and now - conn.idle_since > self.idle_timeout:
            self.expired_idle += 1
            reason = "expired_idle"
            # The idle stack is LIFO: every connection under this one idled even longer.
            for older in self.pool.take_idle():
                self.expired_idle += 1
                older.close()
        elif self.max_lifetime is not None and now - conn.connected_at > self.max_lifetime:
            self.expired_lifetime += 1
            reason = "expired_lifetime"
        if reason is not None:
            self._log.debug("Closing expired connection (%s): %s", reason, self.host)
            self._discard(conn, reason)

    def _put_conn(self, conn: HTTPConnection | None) -> None:
        """Check a connection (or ``None``: just the slot) back in; close what is not kept."""
        if conn is None:
            self.pool.checkin(None)
            return
        conn.idle_since = monotonic()
        if self._limiter is None:
            kept = self.pool.checkin(conn)
        else:
            # At a global cap, requests waiting for room come first (see ConnectionLimit).
            outcome, kept = self._limiter.put(self, conn)
            if outcome != PUT_IDLE:
                self.pool.checkin(None)  # our slot goes back empty
                if outcome == PUT_CLOSE:  # its token went to a waiter of another pool
                    self._discard(conn, "closed")
                return
        if kept:
            if self._kept_watch:  # a retired pool keeps nothing idle; a traced one reports it
                self._kept(self, conn)
            return
        if not self.pool.closed and not self._retired:
            self._warn_full()
            self._discard(conn, "pool_full")
        else:
            self._discard(conn, "closed")

    def _checkin_finished(self, conn: HTTPConnection, keep_alive: bool, queue: Any) -> None:
        """A finished exchange's connection (its answer read to the end): back to the pool when
        ``keep_alive`` (the answer allows it and nothing came after it), the connection is
        ``reusable`` and TLS holds no bytes past the answer; else closed, its slot given back.

        ``queue`` is the HostQueue the slot came from (see :meth:`_close_and_free`).
        """
        sock = conn.sock
        if (
            queue is self.pool
            and keep_alive
            and conn.reusable
            and (type(sock) is socket.socket or not has_buffered_bytes(sock))
        ):
            conn.requests += 1
            self._put_conn(conn)
        else:
            self._close_and_free(conn, queue)

    def _close_and_free(self, conn: HTTPConnection, queue: Any = None) -> None:
        """Close a checked-out connection and give its slot back to ``queue``, the HostQueue
        it came from (None: this pool's). After os.fork() the child's pool has a new queue
        (see ``_reset_after_fork``): a slot from the parent's is not given to it."""
        try:
            conn.close()
        finally:
            if queue is None or queue is self.pool:
                self._put_conn(None)

    def _warn_full(self) -> None:
        if self._warn_first:
            # A crawler discarding thousands of connections needs the fact, not a flood.
            discarded = self.pool.discarded
            if discarded == 1:
                self._log.warning(
                    "Connection pool is full, discarding connection: %s. Connection pool size: "
                    "%s (further discards from this pool are summarised every 100)",
                    self.host,
                    self.pool.idle,
                )
            elif discarded % 100 == 0:
                self._log.warning(
                    "Connection pool is full: %d connections to %s discarded so far; "
                    "raise pool_maxsize (now %s) to keep them",
                    discarded,
                    self.host,
                    self.pool.maxsize,
                )
            return
        self._log.warning(
            "Connection pool is full, discarding connection: %s. Connection pool size: %s",
            self.host,
            self.pool.idle,
        )

    def _retire(self) -> int:
        """The manager dropped this pool (evicted or cleared): close its idle connections now.

        Unlike :meth:`close`, requests that already hold the pool still work: new checkouts
        dial, and connections coming back are closed instead of kept. Returns how many idle
        connections were closed.
        """
        self._retired = True  # before take_idle: a checkin racing us re-checks this flag
        self._kept_watch = True
        idle = self.pool.take_idle()
        for conn in idle:
            conn.close()
        return len(idle)

    @property
    def retired(self) -> bool:
        """True once a PoolManager evicted or cleared this pool (it still serves its callers)."""
        return self._retired

    def _reset_after_fork(self) -> None:
        # In a forked child: the parent's connections (idle or in use there) are not ours.
        old = self.pool
        for conn in old.take_idle():
            sock, conn.sock = conn.sock, None
            if sock is not None:
                sock.close()
        self.pool = HostQueue(old.maxsize, old.block, old.limit)
        self.handed_over = 0  # counted against the old queue's checkouts
        if self._limiter is not None:
            self._limiter.reset()
        if old.closed:
            self.pool.close()
        self.set_trace(self._trace_now)  # its checkout is the new queue's

    def _release_from_finalizer(self) -> None:
        """Give back the slot of a response garbage-collected with its body unread.

        The collector may run this in the middle of this thread's own checkout or checkin: the
        compiled HostQueue's critical parts are single C calls, and the pure twin settles a
        check-in made inside one of its critical parts when that part ends, so the slot comes
        back without a deadlock, and a checkout waiting for it gets it.
        """
        self._put_conn(None)

    def _validate_conn(self, conn: HTTPConnection) -> None:
        """Called before a request on a connection: connects a closed one."""
        if conn.sock is None:
            conn.connect()

    def _prepare_proxy(self, conn: HTTPConnection) -> None:
        pass

    def _set_tunnel(self, conn: HTTPConnection) -> None:
        """Name the CONNECT tunnel's far end on ``conn`` (HTTPS pools through a proxy)."""

    def close(self) -> None:
        """Close the idle connections and disable the pool; in-flight ones close on return."""
        for conn in self.pool.close():
            conn.close()

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return bool(self.pool.closed)

    def is_same_host(self, url: str) -> bool:
        """Whether ``url`` (absolute, or a path) belongs to this pool's origin."""
        if url.startswith("/"):
            return True
        cached = self._same_host_cache.get(url)
        if cached is not None:
            return cached
        scheme, _, host, port, *_ = parse_url(url)
        scheme = scheme or "http"
        if host is not None:
            host = normalize_host(host, scheme=scheme)
        if self.port and not port:
            port = port_by_scheme.get(scheme)
        elif not self.port and port == port_by_scheme.get(scheme):
            port = None
        same = (scheme, host, port) == (self.scheme, self.host, self.port)
        if len(self._same_host_cache) >= _URL_CACHE_SIZE:
            self._same_host_cache.clear()
        self._same_host_cache[url] = same
        return same

    def _target(self, url: str) -> tuple[str, str | None]:
        # urllib3 re-encodes the target on every call; the answer depends only on the URL.
        cache = self._target_cache
        cached = cache.get(url)
        if cached is not None:
            return cached
        if PLAIN_ORIGIN_FORM.fullmatch(url) is not None:
            result: tuple[str, str | None] = (url, None)  # nothing to encode
            if len(cache) >= _PLAIN_CACHED:
                return result  # (see _PLAIN_CACHED)
        elif url.startswith("/"):
            result = (encode_target(url), None)
        else:
            parsed = parse_url(url)
            # absolute form (a forwarding proxy): the fragment stays with the client, as urllib3
            result = (parsed._replace(fragment=None).url, parsed.scheme)
        if len(cache) >= _URL_CACHE_SIZE:
            cache.clear()
        cache[url] = result
        return result

    # --- the multiplexed loop's steps (fastpool.multi, fastpool._loop) --------------------------
    def _urlopen_is_ours(self) -> bool:
        """Whether ``urlopen`` is fastpool's own: neither urllib3's patched (a tool instruments
        it) nor overridden or patched on this pool. Otherwise it must see every request."""
        if _U3Pool.urlopen is not STOCK_URLOPEN:
            return False
        # fastpool's own as imported (a patch on the class is not), bound to this pool; one read
        # (is_own_method's test written out: a frame less each hop)
        urlopen: object = self.urlopen
        return (
            getattr(urlopen, "__func__", None) is OWN_URLOPEN
            and getattr(urlopen, "__self__", urlopen) is self
        )

    def _loop_begin(
        self,
        method: str,
        url: str,
        body: Any,
        headers: Mapping[str, str] | None,
        chunked: bool,
        timeout: Any,
        read_body: bool,
        wait: bool = False,
        pool_timeout: float | None = None,
        limit: float | None = None,
    ) -> Exchange | bool | None:
        """What ``urlopen`` does before its first byte goes out: an
        :class:`~fastpool._loop.Exchange` holding a checked-out connection and the request's
        bytes; None when no connection is free now; False when the request must go through
        ``urlopen`` itself (a patched or overridden ``urlopen``, ``_validate_conn``,
        ``_make_request`` or ``ConnectionCls.request``, a TLS-in-TLS tunnel, a body that is a file or an iterable, a
        request the connection refuses to write: ``urlopen`` then raises that error).

        It does not wait for a connection unless ``wait``: then it waits as
        ``urlopen(pool_timeout=pool_timeout)`` would (None: the pool's ``pool_timeout``), at
        most ``limit`` seconds when given, and raises ``EmptyPoolError`` as ``urlopen`` does."""
        cls = type(self)
        if (
            not self._urlopen_is_ours()  # a patched or overridden urlopen must see the request
            or cls._validate_conn not in OWN_VALIDATE_CONN  # it must see the dial first
            or "_validate_conn" in vars(self)  # (so must a patch on this pool itself)
            # a patched or overridden _make_request must see the request before it goes out
            or cls._make_request is not OWN_MAKE_REQUEST
            or "_make_request" in vars(self)
            # a ConnectionCls with its own request() (or a patch of ours): it runs once, as it
            # would for one request, not once to render the bytes and again to finish
            or self.ConnectionCls.request is not OWN_REQUEST
        ):
            return False
        global _loop
        if _loop is None:  # imported by the first map: one request never loads the loop
            from . import _loop

        if body is not None and not isinstance(body, (bytes, str)):
            return False  # a file or an iterable: read as it goes out, rewound for a retry
        url, destination_scheme = self._target(url)
        if headers is None:
            headers = self.headers
        tunnel = False
        if self.proxy is not None:
            tunnel, headers = self._through_proxy(headers, destination_scheme)
            if tunnel and self.proxy.scheme == "https":
                return False  # TLS inside TLS: not on a non-blocking socket yet
        conn = self._loop_checkout(wait, pool_timeout, limit)
        if conn is None or conn is False:
            return conn  # None: no free connection now; False: urlopen's to handle
        if _connection.steps_replaced_on(conn):
            self._put_conn(conn)  # (urlopen checks it out again, and calls the patch)
            return False
        try:
            # a timeout urllib3 refuses (urlopen refuses it before any checkout): the
            # connection goes back unused
            connect_timeout, read_timeout, timeout_obj = self._timeouts(timeout)
        except BaseException:
            self._put_conn(conn)
            raise
        try:
            self._fit(conn)
            if tunnel and conn.sock is None:
                self._set_tunnel(conn)  # before rendering: Host names the tunnel's far end
            data = conn.render_request(method, url, body, headers, chunked=chunked)
        except (ValueError, TypeError):
            if conn.head_refused:  # urlopen refuses it again, with this error
                conn.head_refused = False
                self._put_conn(conn)
                return False
            self._close_and_free(conn)
            raise
        except BaseException:
            self._close_and_free(conn)
            raise
        read: Any = read_timeout
        if timeout_obj is not None:
            # With a total, the read timeout is what the connect left of it, read once
            # connected, as _make_request does: the loop asks when it starts sending.
            read = TotalLeft(timeout_obj)
        conn.timeout = connect_timeout
        return _loop.Exchange(  # type: ignore[no-any-return]
            conn,
            method,
            data,
            read_timeout=read,
            # the connection's own connect (the tunnel too, when one is set), in a dial worker;
            # a traced pool reports it as its dial
            dial=connect_in_worker
            if self._trace_now is None
            else functools.partial(
                typing.cast(_Traced, self._route).dial, self, connect=connect_in_worker
            ),
            # Go's replay, done by the loop: a reused socket, a request it may send again
            replay=conn.requests > 0 and _replayable(method, body, headers),
            # the loop may dial it itself (one known address, no proxy): not when the dial
            # must be seen whole (a trace, a connection class with its own connect)
            direct=self._trace_now is None and type(conn).connect in OWN_CONNECT,
            read_body=read_body,
            tag=self,
        )

    def _loop_checkout(
        self, wait: bool, pool_timeout: float | None, limit: float | None
    ) -> HTTPConnection | typing.Literal[False] | None:
        """A connection for the loop; None: none free now (``wait``: after waiting as urlopen
        would, up to ``limit`` seconds); False: the checkout failed otherwise (a closed pool,
        a TLS file missing), and urlopen is to meet it again as one request does."""
        pool_wait: float | None = 0.0
        if wait:
            pool_wait = self.pool_timeout if pool_timeout is None else pool_timeout
            if limit is not None:
                limit = max(limit, 0.001)  # 0 would mean "do not wait"
                pool_wait = limit if pool_wait is None else min(pool_wait, limit)
        try:
            conn = self._get_conn(timeout=pool_wait)
        except PoolTimeoutError:
            if not wait:
                return None
            raise
        except Exception:  # noqa: BLE001 - urlopen raises it (or what it becomes there)
            return False
        conn._loop_queue = self.pool  # the queue its slot came from (see _checkin_finished)
        return conn

    def _replayed(self, method: str, url: str, error: BaseException) -> None:
        """The loop sent the request again on a new connection (Go's replay): counted, logged
        and traced as ``_head_failed`` does it for one request."""
        self.retried += 1
        self._log.debug("Resetting dropped connection: %s", self.host)
        self._route.replayed(method, url, error)

    def _fit(self, conn: HTTPConnection) -> None:
        """Close a connection made under other settings (HTTPS: the TLS settings)."""

    def _loop_abandon(self, exchange: Exchange) -> None:
        """An exchange the loop took that ``urlopen`` did not take over (the map was left, a
        tool answered in its place, finishing failed before the checkout): its connection is
        closed (by its dialing worker, when cancelled mid-dial) and its slot given back.
        Nothing happens once ``urlopen`` has taken it (the response owns it then)."""
        if exchange.conn is not None:
            conn, exchange.conn = exchange.conn, None
            if not exchange.dialing:
                self._close_and_free(conn, conn._loop_queue)
            elif conn._loop_queue is self.pool:  # (a forked child's: the parent's slot)
                self._put_conn(None)

    # --- one request --------------------------------------------------------------------------
    def _make_request(
        self,
        conn: HTTPConnection,
        method: str,
        url: str,
        body: Any,
        headers: Mapping[str, str] | None,
        retries: Retry | None,
        timeout: Any,
        chunked: bool,
        preload_content: bool,
        decode_content: bool,
        enforce_content_length: bool = True,
    ) -> HTTPResponse:
        """Send one request on ``conn`` and return the response (the body not yet read).

        A reused connection that fails before any response byte is sent the request once more
        on a new connection when the request is replayable (Go's rule: see ``_replay``).
        """
        self.num_requests += 1
        # _timeouts' cached case inline: the pool's own Timeout (read now: it may be set at any
        # time), or the caller's same object again, without ``total`` (only exact Timeouts are
        # cached: a subclass, or one with ``total``, takes _timeouts' cloning way)
        if timeout is _DEFAULT_TIMEOUT:
            timeout = self.timeout
        last = self._last_timeout
        if timeout is last[0] and timeout.total is None and last[1] == socket.getdefaulttimeout():
            connect_timeout, read_timeout, timeout_obj = last[2], last[3], None
        else:
            connect_timeout, read_timeout, timeout_obj = self._timeouts(timeout)
        conn.timeout = connect_timeout
        # Reused (answered a request before on this socket): Go's rules are checked only if the
        # race happens. A socket just dialed (by the loop's worker, or a tunnel opened by
        # urlopen) has answered nothing.
        replay = conn.requests > 0
        # Dial a closed connection (HTTPS: also check its TLS settings).
        try:
            self._dial(self, conn)  # _validate_conn (traced: connect_start ... tls_done)
        except (OSError, _U3TimeoutError, ssl.SSLError, CertificateError, SSLError) as e:
            self._dial_failed(e, conn, url, connect_timeout)
        # The multiplexed loop sent the request and read the whole answer: its socket, still
        # non-blocking, is not used here (its timeout is set when it is next used: a loop
        # socket's _sock_timeout is unset), which saves two system calls a request.
        whole = conn.sent_ahead and conn.answer_is_whole(method)
        if not whole:
            conn.settimeout(connect_timeout)
        while True:
            try:
                conn.request(method, url, body=body, headers=headers, chunked=chunked)
            except OSError as e:
                # A reset or broken pipe: the server may answer and then close; its answer is
                # still readable, but the connection carries half a request: never reuse it.
                if not isinstance(e, BrokenPipeError) and e.errno not in _RESET_ERRNOS:
                    raise
                conn.reusable = False
            if timeout_obj is not None:
                read_timeout = _resolve(timeout_obj.read_timeout)
            if read_timeout == 0:
                raise ReadTimeoutError(
                    self._u3_self, url, f"Read timed out. (read timeout={read_timeout})"
                )
            if not whole:
                conn.settimeout(read_timeout)
            try:
                head = self._read_head(conn, method)  # traced: first_byte
                break
            except _HEAD_ERRORS as e:
                # Returns only when the request is to be sent again, on a new connection.
                self._head_failed(e, conn, method, url, body, headers, replay, read_timeout)
                replay = False
                whole = False  # a new connection: its own timeouts
                self._route.replay(self, conn, connect_timeout, method, url, e)  # _redial
        return HTTPResponse(
            head,
            conn,
            self,
            request_method=method,
            request_url=url,
            retries=retries,
            preload_content=False,
            decode_content=decode_content,
            enforce_content_length=enforce_content_length,
        )

    # --- timeouts -----------------------------------------------------------------------------
    def _timeouts(self, timeout: Any) -> tuple[float | None, float | None, Timeout | None]:
        """The connect and read timeouts of one request, and the running ``Timeout`` when it
        has a ``total`` (its read timeout is then what the connect left of it)."""
        if timeout is _DEFAULT_TIMEOUT:
            # The pool's own, read at each request as urllib3 does: ``pool.timeout`` may be
            # set after the pool was made.
            timeout = self.timeout
        elif type(timeout) is TotalLeft:  # the loop's request: the read timeout it waited
            return _resolve(timeout.timeout.connect_timeout), timeout.read, None
        if type(timeout) is float or type(timeout) is int:
            # A number means Timeout(connect=n, read=n): one object kept for the last number
            # (urllib3's from_float checks it once), so the fixed path below needs no clone.
            last_number = self._last_number
            if last_number[0] != timeout or type(last_number[0]) is not type(timeout):
                last_number = (timeout, Timeout.from_float(timeout))
                self._last_number = last_number
            timeout = last_number[1]
        if type(timeout) is Timeout and timeout.total is None:
            # Without ``total`` the two timeouts are fixed values: no clone, no clock. A caller
            # (the adapter) passes the same object again and again: its two properties are
            # read again only for another object or another socket default (which they read).
            last = self._last_timeout
            default = socket.getdefaulttimeout()
            if last[0] is not timeout or last[1] != default:
                last = (
                    timeout,
                    default,
                    _not_nan(_resolve(timeout.connect_timeout)),
                    _not_nan(_resolve(timeout.read_timeout)),
                )
                self._last_timeout = last
            return last[2], last[3], None
        timeout_obj = self._get_timeout(timeout)
        timeout_obj.start_connect()
        return _not_nan(_resolve(timeout_obj.connect_timeout)), None, timeout_obj

    # --- dialing and the keep-alive replay ----------------------------------------------------
    def _dial_failed(
        self, e: Exception, conn: HTTPConnection, url: str, connect_timeout: float | None
    ) -> typing.NoReturn:
        """Raise urllib3's error for a failed dial, TLS handshake or tunnel: a socket timeout
        as ReadTimeoutError (urllib3's), ssl's errors as SSLError, and those before the proxy
        answered as ProxyError."""
        new_e: Exception = e
        if isinstance(e, (socket.timeout, ssl.SSLError)) and _timed_out(e):
            new_e = ReadTimeoutError(
                self._u3_self, url, f"Read timed out. (read timeout={connect_timeout})"
            )
        elif isinstance(e, (ssl.SSLError, CertificateError)):
            new_e = SSLError(e)
        if conn.proxy is not None and not conn.has_connected_to_proxy:
            new_e = _wrap_proxy_error(new_e, conn.proxy.scheme)
        if new_e is e:
            raise e
        raise new_e from e

    def _head_failed(
        self,
        e: Exception,
        conn: HTTPConnection,
        method: str,
        url: str,
        body: Any,
        headers: Mapping[str, str] | None,
        replay: bool,
        read_timeout: float | None,
    ) -> None:
        """The response head did not come: raise urllib3's error, or return when the request is
        to be sent once more on a new connection (``_redial``)."""
        if isinstance(e, _STALE_ERRORS):
            # Go's rules: only a reused connection, only before any response byte came.
            if not replay or conn.head_started or not _replayable(method, body, headers):
                raise e
            # An idle connection the server closed as we reused it, before any response
            # byte: send the request once more on a new connection (not a Retry step).
            self.retried += 1
            self._log.debug("Resetting dropped connection: %s", self.host)
            return
        if isinstance(e, (socket.timeout, ssl.SSLError, BlockingIOError)):
            self._raise_timeout(e, url, read_timeout)
            raise e
        if isinstance(e, InvalidContentLengthError):
            raise e  # urllib3 raises InvalidHeader here, unwrapped (requests: InvalidHeader)
        # A malformed or oversized head (ProtocolError): urllib3's shape, with our precise cause.
        raise ProtocolError("Connection aborted.", e) from e

    def _redial(self, conn: HTTPConnection, connect_timeout: float | None, url: str) -> None:
        """The keep-alive replay's new connection: its dial fails as a first dial does (the
        same urllib3 errors, as the map's replay gives them)."""
        conn.close()
        conn.timeout = connect_timeout
        try:
            self._dial(self, conn)
        except (OSError, _U3TimeoutError, ssl.SSLError, CertificateError, SSLError) as e:
            self._dial_failed(e, conn, url, connect_timeout)
        conn.settimeout(connect_timeout)

    def _log_response(self, method: str, url: str, response: HTTPResponse) -> None:
        self._log.debug(
            '%s://%s:%s "%s %s %s" %s %s',
            self.scheme,
            self.host,
            self.port,
            method,
            url,
            response.version_string,
            response.status,
            response.length_remaining,
        )

    def _get_timeout(self, timeout: Any) -> Timeout:
        if timeout is _DEFAULT_TIMEOUT:
            return self.timeout.clone()
        if isinstance(timeout, Timeout):
            return timeout.clone()
        return Timeout.from_float(timeout)

    def _raise_timeout(self, err: BaseException, url: str, timeout_value: Any) -> None:
        if _timed_out(err):
            raise ReadTimeoutError(
                self._u3_self, url, f"Read timed out. (read timeout={timeout_value})"
            ) from err

    def urlopen(  # type: ignore[override]  # noqa: C901 - the hot path inline (see pyproject)
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        retries: Retry | bool | int | None = None,
        redirect: bool = True,
        assert_same_host: bool = True,
        timeout: Any = _DEFAULT_TIMEOUT,
        pool_timeout: float | None = None,
        release_conn: bool | None = None,
        chunked: bool = False,
        body_pos: Any = None,
        preload_content: bool = True,
        decode_content: bool = True,
        _routed: bool = False,
        _exchange: Any = None,
        **response_kw: Any,
    ) -> HTTPResponse:
        """Check a connection out, send the request, and return the response (urllib3 semantics).

        Retries, redirects (same host), ``Retry-After`` and the error types follow urllib3's
        ``HTTPConnectionPool.urlopen``. The connection returns to the pool when the body has
        been read to its end (at once with ``preload_content=True``), or when the response is
        released or closed. Differences: the response always owns its connection until its
        body ends (``release_conn`` only matters to urllib3's own bookkeeping), and a request
        without a body on a reused connection that the server had closed is sent once more on
        a new connection, without counting as a retry.

        A tool that patched urllib3's ``HTTPConnectionPool.urlopen`` (OpenTelemetry's urllib3
        instrumentation, ddtrace, a mock) sees this call as it would see urllib3's.
        """
        if _U3Pool.urlopen is not STOCK_URLOPEN and not _routed:
            if _exchange is not None:  # patched since the loop took it: the patch decides
                self._loop_abandon(_exchange)
            return urlopen_through_patch(  # type: ignore[no-any-return]
                self,
                (method, url),
                dict(
                    body=body, headers=headers, retries=retries, redirect=redirect,
                    assert_same_host=assert_same_host, timeout=timeout,
                    pool_timeout=pool_timeout, release_conn=release_conn, chunked=chunked,
                    body_pos=body_pos, preload_content=preload_content,
                    decode_content=decode_content, **response_kw,
                ),
            )  # fmt: skip
        url, destination_scheme = self._target(url)
        if headers is None:
            headers = self.headers
        if not isinstance(retries, Retry):
            retries = Retry.from_int(retries, redirect=redirect, default=self.retries)
        if assert_same_host and not self.is_same_host(url):
            raise HostChangedError(self._u3_self, url, retries)
        tunnel = False
        if self.proxy is not None:
            tunnel, headers = self._through_proxy(headers, destination_scheme)
        if body is not None or body_pos is not None:
            body_pos = set_file_position(body, body_pos)

        # The connection's lifecycle: checked out, (tunnelled,) sent on; its slot goes back with
        # the response's body, or here when the request fails. (An EmptyPoolError from the
        # checkout holds nothing; one from a dial at the global cap holds a slot.)
        conn: HTTPConnection | None = None
        response: HTTPResponse | None = None
        owned = False  # do we hold a slot that nobody else will give back?
        clean_exit = False
        err: BaseException | None = None
        try:
            if _exchange is None:
                conn = self._get_conn(timeout=pool_timeout)
            else:  # checked out, sent and answered by the multiplexed loop (fastpool.multi)
                conn, _exchange.conn = _exchange.conn, None  # ours now: not the runner's
                if _exchange.replayed is not None:
                    self._replayed(method, url, _exchange.replayed)
                if _exchange.head is not None and conn.sent_ahead:
                    chunks = _exchange.decoder
                    conn.take_head_ahead(
                        _exchange.method,
                        _exchange.head,
                        _exchange.head_size,
                        chunks is not None and bool(chunks.done),
                    )
            owned = True
            if tunnel and conn.sock is None:
                self._open_tunnel(conn)
            response = self._make_request(
                conn,
                method,
                url,
                body,
                headers,
                retries,
                # a total's clock started with the loop's request, not again here
                timeout if _exchange is None else _exchange_timeout(_exchange, timeout),
                chunked,
                preload_content,
                decode_content,
                **response_kw,
            )
            owned = False  # the response gives the slot back when its body ends
            if _exchange is not None:  # the slot's queue is the loop's checkout's (after a fork)
                response._queue = conn._loop_queue
            if preload_content:
                response._body = response.read(decode_content=decode_content)
            if self._log.isEnabledFor(logging.DEBUG):
                self._log_response(method, url, response)
            clean_exit = True
        except _RETRIED_ERRORS as e:
            retries = self._retries_after_error(e, conn, method, url, retries, _exchange is None)
            err = e
        except (ValueError, TypeError):
            # After the clauses above: ssl's certificate errors are ValueErrors too.
            if owned and response is None and self._refused_cleanly(conn):
                owned = False
                clean_exit = True
                self._put_conn(conn)
            raise
        finally:
            if not clean_exit:
                self._abandon(conn, response, owned)
                conn = None

        if err is None:
            assert response is not None
            status = response.status
            # The common end: neither a redirect to follow nor a status to retry.
            if (not redirect or status not in response.REDIRECT_STATUSES) and no_status_retry(
                retries, status
            ):
                return response
        # A retry or a redirect: the next call gets this one's options, by name.
        again = _Again(
            redirect,
            assert_same_host,
            timeout,
            pool_timeout,
            preload_content if release_conn is None else release_conn,
            chunked,
            body_pos,
            preload_content,
            decode_content,
            response_kw,
            _exchange is not None,
        )
        return self._retry_or_redirect(err, response, method, url, body, headers, retries, again)

    # --- urlopen's steps off the common path ---------------------------------------------------
    def _through_proxy(
        self, headers: Mapping[str, str], destination_scheme: str | None
    ) -> tuple[bool, Mapping[str, str]]:
        """Whether the request needs a CONNECT tunnel, and its headers (a forwarding proxy
        gets the proxy headers with the request)."""
        tunnel = connection_requires_http_tunnel(self.proxy, self.proxy_config, destination_scheme)
        if not tunnel and self.proxy_headers:
            merged = HTTPHeaderDict(headers)
            merged.update(self.proxy_headers)
            headers = merged
        return tunnel, headers

    def _open_tunnel(self, conn: HTTPConnection) -> None:
        try:
            self._route.tunnel(self, conn)  # _prepare_proxy (traced: reported as the dial)
        except (ssl.SSLError, OSError) as e:
            self._raise_timeout(e, self.proxy.url, conn.timeout)
            raise

    def _retries_after_error(
        self,
        e: Exception,
        conn: HTTPConnection | None,
        method: str,
        url: str,
        retries: Retry,
        sleep: bool = True,
    ) -> Retry:
        """urllib3's error for a failed attempt, counted by ``retries`` (which raises
        MaxRetryError when they are exhausted), after their backoff sleep."""
        if isinstance(e, InvalidContentLengthError):
            raise e  # as urllib3's InvalidHeader: not retried (urlopen closes the connection)
        new_e: Exception = e
        if isinstance(e, (ssl.SSLError, CertificateError)):
            new_e = SSLError(e)
        if (
            isinstance(new_e, (OSError, NewConnectionError, _U3TimeoutError, SSLError))
            and conn is not None
            and conn.proxy is not None
            and not conn.has_connected_to_proxy
        ):
            new_e = _wrap_proxy_error(new_e, conn.proxy.scheme)
        elif isinstance(new_e, OSError):
            new_e = ProtocolError("Connection aborted.", new_e)
        retries = retries.increment(
            method, url, error=new_e, _pool=self._u3_self, _stacktrace=sys.exc_info()[2]
        )
        if sleep:  # else the loop's runner waits it out (Resend)
            retries.sleep()
        return retries

    @staticmethod
    def _refused_cleanly(conn: HTTPConnection | None) -> bool:
        """A request its connection refused to write (a bad method, target or header,
        InvalidRequestError) before a byte of it was sent: the connection is as clean as
        before, so it is kept. Only then: a failure in the dial, the TLS handshake or the proxy
        tunnel leaves a connection that is not what it should be."""
        if (
            conn is not None
            and conn.head_refused
            and conn.sock is not None
            and not conn.request_started
            and conn.reusable
        ):
            conn.head_refused = False
            return True
        return False

    def _abandon(
        self, conn: HTTPConnection | None, response: HTTPResponse | None, owned: bool
    ) -> None:
        """A failed attempt: its connection is closed and its slot given back."""
        if response is not None:
            response._abandon()
        elif owned:
            if conn is None:
                self._put_conn(None)
            else:
                self._close_and_free(conn, conn._loop_queue)

    def _urlopen_again(
        self, method: str, url: str, body: Any, headers: Any, retries: Retry, again: _Again
    ) -> HTTPResponse:
        return self.urlopen(
            method,
            url,
            body,
            headers,
            retries,
            again.redirect,
            again.assert_same_host,
            timeout=again.timeout,
            pool_timeout=again.pool_timeout,
            release_conn=again.release_conn,
            chunked=again.chunked,
            body_pos=again.body_pos,
            preload_content=again.preload_content,
            decode_content=again.decode_content,
            **again.response_kw,
        )

    def _retry_or_redirect(
        self,
        err: BaseException | None,
        response: HTTPResponse | None,
        method: str,
        url: str,
        body: Any,
        headers: Any,
        retries: Retry,
        again: _Again,
    ) -> HTTPResponse:
        """The next call after a failed attempt (``err``, already counted by ``retries``), or
        after a response that may be a redirect to follow or a status to retry (urllib3's
        rules)."""
        if err is not None:
            self._log.warning(
                "Retrying (%r) after connection broken by '%r': %s", retries, err, url
            )
            if again.resend:
                raise Resend(retries, _retry_delay(retries, None))
            return self._urlopen_again(method, url, body, headers, retries, again)
        assert response is not None
        status = response.status
        if again.redirect and status in response.REDIRECT_STATUSES:
            redirect_location = response.get_redirect_location()
            if redirect_location:
                return self._follow_redirect(
                    response, method, url, body, headers, retries, redirect_location, again
                )
        # As urllib3: the Retry object decides. Its stock is_retry reads has_retry_after only
        # for the statuses in *its* RETRY_AFTER_STATUS_CODES (a subclass's or instance's own),
        # so the header lookup is skipped for the others; an overridden is_retry always gets it.
        has_retry_after = (
            type(retries).is_retry is not Retry.is_retry
            or status in retries.RETRY_AFTER_STATUS_CODES
        ) and bool(response.headers.get("Retry-After"))
        if retries.is_retry(method, status, has_retry_after):
            try:
                retries = retries.increment(method, url, response=response, _pool=self._u3_self)
            except MaxRetryError:
                if retries.raise_on_status:
                    response.drain_conn()
                    raise
                return response
            response.drain_conn()
            if again.resend:
                self._log.debug("Retry: %s", url)
                raise Resend(retries, _retry_delay(retries, response))
            retries.sleep(response)
            self._log.debug("Retry: %s", url)
            return self._urlopen_again(method, url, body, headers, retries, again)
        return response

    def _follow_redirect(
        self,
        response: HTTPResponse,
        method: str,
        url: str,
        body: Any,
        headers: Any,
        retries: Retry,
        redirect_location: str,
        again: _Again,
    ) -> HTTPResponse:
        if response.status == 303:
            # RFC 9110 15.4.4: the method becomes GET, and the body (maybe sensitive) is lost,
            # and with it what described it: no chunked framing, nothing to rewind (urllib3's).
            method = "GET"
            body = None
            headers = headers_for_method_change(headers)
            again = again._replace(chunked=False, body_pos=None)
        if retries.remove_headers_on_redirect and not self.is_same_host(redirect_location):
            new_headers = (
                dict(headers) if not isinstance(headers, HTTPHeaderDict) else headers.copy()
            )
            for header in headers:
                if header.lower() in retries.remove_headers_on_redirect:
                    new_headers.pop(header, None)
            headers = new_headers
        try:
            retries = retries.increment(method, url, response=response, _pool=self._u3_self)
        except MaxRetryError:
            if retries.raise_on_redirect:
                response.drain_conn()
                raise
            return response
        response.drain_conn()
        retries.sleep_for_retry(response)
        self._log.debug("Redirecting %s -> %s", url, redirect_location)
        return self._urlopen_again(method, redirect_location, body, headers, retries, again)


class HTTPSConnectionPool(HTTPConnectionPool):
    """:class:`HTTPConnectionPool` over TLS (urllib3's ``HTTPSConnectionPool``).

    Certificate verification is on by default (``cert_reqs`` ``CERT_REQUIRED`` with hostname
    checking). One ``SSLContext`` is built per pool from ``cert_reqs``, ``ca_certs``,
    ``ca_cert_dir``, ``ca_cert_data``, ``cert_file``/``key_file``/``key_password``,
    ``ssl_version``, ``ssl_minimum_version``/``ssl_maximum_version`` (or a given
    ``ssl_context``) and shared by its connections, and built again when one of them changes
    (see :class:`fastpool.tls.PoolContexts`). ``assert_hostname``, ``assert_fingerprint`` and
    ``server_hostname`` work as in urllib3.
    """

    scheme = "https"
    _new_conn_log = "Starting new HTTPS connection (%d): %s:%s"
    _log_port = "443"
    ConnectionCls: type[HTTPConnection] = HTTPSConnection

    def __init__(
        self,
        host: str,
        port: int | None = None,
        timeout: Any = _DEFAULT_TIMEOUT,
        maxsize: int = 1,
        block: bool = False,
        headers: Mapping[str, str] | None = None,
        retries: Retry | bool | int | None = None,
        _proxy: Any = None,
        _proxy_headers: Mapping[str, str] | None = None,
        key_file: str | None = None,
        cert_file: str | None = None,
        cert_reqs: int | str | None = None,
        key_password: str | None = None,
        ca_certs: str | None = None,
        ssl_version: int | str | None = None,
        ssl_minimum_version: ssl.TLSVersion | None = None,
        ssl_maximum_version: ssl.TLSVersion | None = None,
        assert_hostname: str | typing.Literal[False] | None = None,
        assert_fingerprint: str | None = None,
        ca_cert_dir: str | None = None,
        **conn_kw: Any,
    ) -> None:
        self.ssl_context: ssl.SSLContext | None = conn_kw.pop("ssl_context", None)
        self.ca_cert_data = conn_kw.pop("ca_cert_data", None)
        self.server_hostname = conn_kw.pop("server_hostname", None)
        super().__init__(
            host,
            port,
            timeout,
            maxsize,
            block,
            headers,
            retries,
            _proxy,
            _proxy_headers,
            **conn_kw,
        )
        self.key_file = key_file
        self.cert_file = cert_file
        self.cert_reqs = cert_reqs
        self.key_password = key_password
        self.ca_certs = ca_certs
        self.ca_cert_dir = ca_cert_dir
        self.ssl_version = ssl_version
        self.ssl_minimum_version = ssl_minimum_version
        self.ssl_maximum_version = ssl_maximum_version
        self.assert_hostname = assert_hostname
        self.assert_fingerprint = assert_fingerprint
        #: The pool's SSLContexts, for its current TLS settings (see fastpool.tls).
        self._tls = PoolContexts()

    def _make_conn(self) -> HTTPConnection:
        context = self._tls.context(self)
        host, port = self.host, self.port
        if self.proxy is not None and self.proxy.host is not None:
            host, port = self.proxy.host, self.proxy.port
        if self.ConnectionCls is not self._checked_connection_cls:  # set on the instance
            _check_connection_class(self, HTTPSConnection)
        conn = typing.cast("type[HTTPSConnection]", self.ConnectionCls)(
            host,
            port,
            ssl_context=context,
            server_hostname=self.server_hostname,
            assert_hostname=self.assert_hostname,
            assert_fingerprint=self.assert_fingerprint,
            timeout=self.timeout.connect_timeout,
            **self.conn_kw,
        )
        if self.proxy is not None and self.proxy.scheme == "https":
            conn.proxy_ssl_context = (
                context if is_forwarding(self) else self._tls.proxy_context(self)
            )
        return conn

    def _refit(self, conn: HTTPConnection, context: ssl.SSLContext) -> HTTPConnection:
        tls = typing.cast(HTTPSConnection, conn)
        tls.ssl_context = context
        if self.proxy is not None and self.proxy.scheme == "https":
            tls.proxy_ssl_context = self._tls.proxy_context(self)
        tls.server_hostname = self.server_hostname
        tls.assert_hostname = self.assert_hostname
        tls.assert_fingerprint = self.assert_fingerprint
        return conn

    def _prepare_proxy(self, conn: HTTPConnection) -> None:
        """Open the CONNECT tunnel through the proxy, then TLS to the origin."""
        self._set_tunnel(conn)
        conn.connect()

    def _set_tunnel(self, conn: HTTPConnection) -> None:
        conn.set_tunnel(self._tunnel_host, self.port or 443, self.proxy_headers)

    def _fit(self, conn: HTTPConnection) -> None:
        context = self._tls.context(self)
        tls = typing.cast(HTTPSConnection, conn)
        if tls.ssl_context is not context or (
            # TLS to an https:// proxy follows the pool's settings too
            self.proxy is not None
            and self.proxy.scheme == "https"
            and tls.proxy_ssl_context is not self._tls.proxy_context(self)
        ):
            # Made under other TLS settings: never reuse it under these.
            conn.close()
            self._refit(conn, context)

    def _validate_conn(self, conn: HTTPConnection) -> None:
        self._fit(conn)
        if conn.sock is None:
            conn.connect()
        # urllib3 warns on every request over an unverified connection (the warnings filter
        # decides how often the user sees it).
        if not conn.is_verified and not conn.proxy_is_verified:
            warnings.warn(
                f"Unverified HTTPS request is being made to host '{conn.host}'. "
                "Adding certificate verification is strongly advised. See: "
                "https://urllib3.readthedocs.io/en/latest/advanced-usage.html"
                "#tls-warnings",
                InsecureRequestWarning,
                stacklevel=2,
            )


#: The pools' own dial checks: a subclass's must see a dial before the request goes out, so
#: its pool sends through urlopen, not the loop.
OWN_VALIDATE_CONN = (HTTPConnectionPool._validate_conn, HTTPSConnectionPool._validate_conn)
# (the connection's own steps, as fastpool.connection defined them: see there)
OWN_REQUEST, OWN_CONNECT = _connection.OWN_REQUEST, _connection.OWN_CONNECT
#: fastpool's own steps as imported, for the checks that a request may skip them (a patch on
#: a class, a subclass's override, must see it): urlopen, the checkout, the plain pool's fit
OWN_URLOPEN = HTTPConnectionPool.urlopen
OWN_MAKE_REQUEST = HTTPConnectionPool._make_request
OWN_GET_CONN = HTTPConnectionPool._get_conn
OWN_REVIVE = HTTPConnectionPool._revive
OWN_RENDER_REQUEST = _connection.OWN_RENDER_REQUEST
PLAIN_FIT = HTTPConnectionPool._fit
OWN_IS_CONNECTED = _connection.OWN_IS_CONNECTED
OWN_CHECKIN_FINISHED = HTTPConnectionPool._checkin_finished
OWN_PUT_CONN = HTTPConnectionPool._put_conn
#: the pool and connection classes whose every step the multiplexed map's lane knows
OWN_POOLS = (HTTPConnectionPool, HTTPSConnectionPool)
OWN_CONNECTIONS = (HTTPConnection, HTTPSConnection)
#: The steps urlopen and the response's read take to finish an answer the loop read, as
#: defined: the lane finishes the plainest answer itself only while each is still the class's
#: (a mock of HTTPResponse.read, a patch of read_response_head must see the answer).
OWN_RESPONSE = HTTPResponse
FINISH_CONNECTION_STEPS = tuple(
    (name, getattr(HTTPConnection, name))
    for name in ("request", "read_response_head", "take_head_ahead", "answer_is_whole", "take_rest")
)
FINISH_RESPONSE_STEPS = tuple(
    (name, getattr(HTTPResponse, name))
    for name in ("__init__", "read", "_read_raw", "_consumed_length", "_finish")
)

#: Another name for the pool of one origin, as the design documents call it.
HostPool = HTTPConnectionPool


def connection_from_url(url: str, **kw: Any) -> HTTPConnectionPool:
    """Return a pool for the origin of ``url`` (``kw`` go to the pool's constructor)."""
    scheme, _, host, port, *_ = parse_url(url)
    scheme = scheme or "http"
    if port is None:  # an explicit port, 0 too, is kept (urllib3's)
        port = port_by_scheme.get(scheme, 80)
    if scheme == "https":
        return HTTPSConnectionPool(host, port=port, **kw)  # type: ignore[arg-type]
    return HTTPConnectionPool(host, port=port, **kw)  # type: ignore[arg-type]


_ = _U3HTTPError  # kept importable for callers that catch it via this module
