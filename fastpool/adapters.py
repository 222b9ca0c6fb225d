"""fastpool's transport adapter: a drop-in for :class:`requests.adapters.HTTPAdapter`.

``HTTPAdapter`` keeps requests' adapter contract (signature, defaults, pickling, every
overridable hook) and drives fastpool's :class:`~fastpool.poolmanager.PoolManager` instead of
urllib3's. Errors reach the user as the same ``requests.exceptions`` classes as with the stock
adapter, and responses are the same :class:`requests.Response` objects.

``send`` has two routes to the same result:

* the *general* route calls the overridable hooks exactly as the stock adapter does
  (``get_connection_with_tls_context``, ``cert_verify``, ``request_url``, ``add_headers``,
  ``build_response``). It serves proxies, client certificates, subclasses that
  override a hook, and anything else unusual;
* the *fast* route serves the common case (no proxy, ``verify`` True, False or a CA path, no client
  certificate, hooks not overridden). It skips the repeated URL parsing, pool-key building and
  ``Timeout`` construction of the stock route and builds the ``Response`` directly. The
  differential tests (tests/with_dummyserver/test_adapter_diff.py) hold both routes to the stock adapter's output.
"""

from __future__ import annotations

import datetime
import functools
import math
import os
import sys
import threading
import warnings
from typing import TYPE_CHECKING, Any

import requests.adapters as _stock
from requests.cookies import RequestsCookieJar, extract_cookies_to_jar
from requests.exceptions import (
    ConnectionError,
    ConnectTimeout,
    InvalidHeader,
    InvalidURL,
    ProxyError,
    ReadTimeout,
    RetryError,
    SSLError,
    Timeout,
)
from requests.models import Response
from requests.structures import CaseInsensitiveDict
from requests.utils import (
    extract_zipped_paths,
    get_auth_from_url,
    get_encoding_from_headers,
    select_proxy,
)
from urllib3 import connectionpool as _u3_connectionpool
from urllib3 import exceptions as _u3
from urllib3.util import Timeout as TimeoutSauce

from ._loop import Exchange
from ._patches import stock_function
from ._thirdparty import preloaded_ssl_context
from .connection import PAIR_STORE_TYPES
from .exceptions import MSG_NAN, MSG_NEGATIVE, MSG_NOT_INT, MSG_NOT_NUMBER, InvalidRequestError
from .pool import HTTPConnectionPool
from .poolmanager import PoolManager, proxy_from_url
from .response import HTTPResponse as EngineResponse

if TYPE_CHECKING:
    from collections.abc import Iterable

    from requests.models import PreparedRequest

__all__ = ("ForeignPoolManagerWarning", "HTTPAdapter", "PoolTimeout")

DEFAULT_POOLSIZE = _stock.DEFAULT_POOLSIZE
DEFAULT_RETRIES = _stock.DEFAULT_RETRIES
DEFAULT_POOLBLOCK = _stock.DEFAULT_POOLBLOCK
DEFAULT_POOL_TIMEOUT = None

MSG_BAD_TIMEOUT_TUPLE = (
    "Invalid timeout {timeout}. Pass a (connect, read) timeout tuple, "
    "or a single float to set both timeouts to the same value."
)

# The hooks whose stock behaviour the fast route reproduces; a subclass overriding any of them
# gets the general route, so its override is honoured. (Overriding ``send`` to wrap
# ``super().send`` is common and changes none of them, so it keeps the fast route.)
_FAST_ROUTE_HOOKS = (
    "get_connection_with_tls_context",
    "build_connection_pool_key_attributes",
    "cert_verify",
    "request_url",
    "add_headers",
    "build_response",
)

# What build_connection_pool_key_attributes gives for verify True / False without a cert
# (never mutated: the pool manager copies what it keeps).
_VERIFY_POOL_KWARGS = {"cert_reqs": "CERT_REQUIRED"}
_NO_VERIFY_POOL_KWARGS = {"cert_reqs": "CERT_NONE"}
# requests 2.32.3 and 2.32.4 give every verify=True pool one preloaded SSLContext, which a CA
# bundle set by cert_verify is then loaded into, for every pool (fixed in requests 2.32.5).
# This adapter leaves it out of the pool key: each pool builds its own context.
_PRELOADED_SSL_CONTEXT = preloaded_ssl_context()

PAIR_STORE_TYPES.add(CaseInsensitiveDict)  # a PreparedRequest's headers, written directly

# What _resolve_timeout(None) gives, shared by every request without a timeout (the pools only
# read it, and remember it by identity).
_NO_TIMEOUT = TimeoutSauce(connect=None, read=None)

# Response.elapsed until Session.send sets it (timedelta is immutable, so one is shared).
_ZERO = datetime.timedelta(0)

# Bounds on the fast route's small caches (origin -> pool key parts; timeout -> Timeout).
_ORIGIN_CACHE_SIZE = 256
_TIMEOUT_CACHE_SIZE = 32
_URL_CACHE_SIZE = 1024


#: requests' adapter class, as defined (whatever ``requests.adapters.HTTPAdapter`` names later)
_StockHTTPAdapter: type[_stock.HTTPAdapter] = _stock.HTTPAdapter
#: requests' own ``HTTPAdapter.send``: while the class attribute is this function, nothing
#: patched it (responses patches it: then :meth:`HTTPAdapter.send` goes through the patch).
_STOCK_ADAPTER_SEND = stock_function(_StockHTTPAdapter.send, _stock)


def _urllib3_connection_class() -> Any:
    """urllib3's own HTTPConnection class, which vcrpy swaps for its recording stubs."""
    cls = _u3_connectionpool.HTTPConnectionPool.ConnectionCls
    if getattr(cls, "__module__", None) == "urllib3.connection":
        return cls
    # fastpool imported under a cassette: vcrpy kept the original
    return getattr(sys.modules.get("vcr.patch"), "_connHTTPConnection", None)


#: urllib3's pool class and its connection class: while ``ConnectionCls`` is urllib3's own, no
#: cassette is in use (vcrpy replaces it; then :meth:`HTTPAdapter.send` goes through urllib3).
_U3_POOL = _u3_connectionpool.HTTPConnectionPool
_U3_CONNECTION = _urllib3_connection_class()


class ForeignPoolManagerWarning(UserWarning):
    """A fastpool adapter's ``poolmanager`` is not fastpool's (a subclass such as requests-
    toolbelt's ``SourceAddressAdapter`` built a urllib3 one): its requests use urllib3's pools.
    Warned once per adapter class and pool manager class."""


_foreign_warned: set[tuple[type, type]] = set()
_foreign_lock = threading.Lock()


def _warn_foreign_manager(adapter: Any, manager: Any) -> None:
    key = (type(adapter), type(manager))
    with _foreign_lock:
        if key in _foreign_warned:
            return
        _foreign_warned.add(key)
    manager_type = type(manager)
    warnings.warn(
        f"{type(adapter).__qualname__}.poolmanager is a "
        f"{manager_type.__module__}.{manager_type.__qualname__}, not fastpool's: its requests "
        "go through that pool manager's pools. For a source address or socket options, pass "
        "source_address= or socket_options= to fastpool.HTTPAdapter instead.",
        ForeignPoolManagerWarning,
        stacklevel=4,
    )


class PoolTimeout(ConnectionError, Timeout):
    """No pooled connection became free within ``pool_timeout`` (only with ``pool_block=True``).

    A :class:`requests.exceptions.ConnectionError` like every failure to get a connection, and a
    :class:`requests.exceptions.Timeout` (as :class:`~requests.exceptions.ConnectTimeout` is),
    so code that retries on timeouts retries on this too: nothing was sent to the server.
    """


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(MSG_NOT_INT.format(name=name, type=type(value).__name__))
    if value < 0:
        raise ValueError(MSG_NEGATIVE.format(name=name, value=value))


def _check_pool_timeout(value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(MSG_NOT_NUMBER.format(name="pool_timeout", type=type(value).__name__))
    if math.isnan(value):
        raise ValueError(MSG_NAN.format(name="pool_timeout"))
    if value < 0:
        raise ValueError(MSG_NEGATIVE.format(name="pool_timeout", value=value))


def _raise_as_requests_error(err: BaseException, request: PreparedRequest) -> None:
    """Raise what the stock adapter raises for ``err`` from ``urlopen``; return when that is
    ``err`` itself (the caller re-raises it, its traceback untouched)."""
    mapped = _to_requests_error(err, request)
    if mapped is not None:
        try:
            raise mapped from err
        finally:
            # The raised error's traceback keeps this frame: holding neither error in it
            # leaves no cycle, so a response its frames hold is freed at once, as stock's.
            mapped = err = None  # type: ignore[assignment]


def _to_requests_error(err: BaseException, request: PreparedRequest) -> BaseException | None:
    """Map an exception from ``urlopen`` to what the stock adapter raises; None: re-raise as is.

    The order of the checks is the stock adapter's, so an exception that is several things at
    once (fastpool's classes subclass urllib3's) maps the same way.
    """
    if isinstance(err, _u3.InvalidHeader):
        # First: our InvalidContentLengthError is also a ProtocolError; urllib3's never is.
        return InvalidHeader(err, request=request)
    if isinstance(err, (_u3.ProtocolError, OSError)):
        return ConnectionError(err, request=request)
    if isinstance(err, _u3.MaxRetryError):
        return _max_retry_to_requests_error(err, request)
    if isinstance(err, _u3.ClosedPoolError):
        return ConnectionError(err, request=request)
    # Ours: stock never bounds the wait, so urllib3's EmptyPoolError escaped it unmapped.
    if isinstance(err, _u3.EmptyPoolError):
        return PoolTimeout(err, request=request)
    if isinstance(err, _u3.ProxyError):
        return ProxyError(err)  # stock passes no request here
    if isinstance(err, _u3.SSLError):
        return SSLError(err, request=request)
    if isinstance(err, _u3.ReadTimeoutError):
        return ReadTimeout(err, request=request)
    if isinstance(err, InvalidRequestError):
        # Refused before sending (http.client lets a NUL or a space in a name through, so stock
        # sends those): as requests' own check of a header or URL, also a ValueError.
        text = str(err)
        if text.startswith("header "):
            return InvalidHeader(err, request=request)
        if text.startswith("request target "):
            return InvalidURL(err, request=request)
    return None


def _max_retry_to_requests_error(err: _u3.MaxRetryError, request: PreparedRequest) -> BaseException:
    """The stock adapter's exception for retries run out: chosen by their last reason."""
    reason = err.reason
    if isinstance(reason, _u3.ConnectTimeoutError) and not isinstance(
        reason, _u3.NewConnectionError
    ):
        return ConnectTimeout(err, request=request)
    if isinstance(reason, _u3.ResponseError):
        return RetryError(err, request=request)
    if isinstance(reason, _u3.ProxyError):
        return ProxyError(err, request=request)
    if isinstance(reason, _u3.SSLError):
        return SSLError(err, request=request)
    return ConnectionError(err, request=request)


def _resolve_timeout(timeout: Any) -> TimeoutSauce:
    """The stock adapter's reading of ``timeout``: a float, a (connect, read) tuple or a Timeout."""
    if isinstance(timeout, tuple):
        try:
            connect, read = timeout
        except ValueError as err:
            raise ValueError(MSG_BAD_TIMEOUT_TUPLE.format(timeout=timeout)) from err
        return TimeoutSauce(connect=connect, read=read)
    if isinstance(timeout, TimeoutSauce):
        return timeout
    return TimeoutSauce(connect=timeout, read=timeout)


@functools.lru_cache(maxsize=_URL_CACHE_SIZE)  # a pure function of the URL
def _split_url(url: str) -> tuple[str, str] | None:
    """Split a prepared URL into its origin (``scheme://netloc``) and its ``path_url``.

    Returns None where the quick split might disagree with ``PreparedRequest.path_url``
    (urllib.parse) so the caller takes the general route.
    """
    # urlsplit strips these anywhere and leading/trailing blanks; let it handle such URLs.
    if not url or "\t" in url or "\r" in url or "\n" in url or url[-1] <= " " or url[0] <= " ":
        return None
    start = url.find("://")
    if url[:start].lower() not in ("http", "https"):
        return None
    slash = url.find("/", start + 3)
    if slash < 0:
        return None
    origin = url[:slash]
    if "?" in origin or "#" in origin or "@" in origin:
        return None
    path = url[slash:]
    hash_at = path.find("#")
    if hash_at >= 0:
        path = path[:hash_at]
    if path.find("?") == len(path) - 1:  # an empty query: path_url drops its "?"
        path = path[:-1]
    return origin, path


class HTTPAdapter(_stock.HTTPAdapter):
    """A drop-in for :class:`requests.adapters.HTTPAdapter` on fastpool's connection pools.

    Mount it like the stock adapter::

        >>> import requests, fastpool
        >>> s = requests.Session()
        >>> s.mount("https://", fastpool.HTTPAdapter(pool_maxsize=32))

    :param pool_connections: how many per-host pools to keep (least recently used go first).
        Default 10.
    :param pool_maxsize: how many connections each host pool keeps for reuse. Default 10.
    :param max_retries: an int or a :class:`urllib3.util.Retry`; as in requests, an int retries
        only failed DNS lookups, connects and connect timeouts. Default 0.
    :param pool_block: when a host pool has ``pool_maxsize`` connections in use, wait for one
        (True) or open an extra one that is discarded after use (False). Default False.
    :param pool_timeout: keyword-only. With ``pool_block=True`` (or ``max_connections_per_host``),
        how many seconds to wait for a free connection before raising :class:`PoolTimeout`.
        Default None: wait as long as it takes, as the stock adapter does.
    :param idle_timeout: keyword-only. Seconds an idle connection may be reused after; older
        ones are closed at checkout. Default None (stock: no limit).
    :param max_lifetime: keyword-only. Seconds after which a connection is closed at checkout
        instead of reused. Default None (stock: no limit).
    :param max_connections_per_host: keyword-only. Hard cap on one host's open connections,
        dials included; requests over it wait (``pool_timeout``). Default None (stock).
    :param max_connections: keyword-only. Hard cap on open connections across all hosts of a
        pool manager (the proxy managers get their own), dials included; at the cap the oldest
        idle connection of another host is closed, else the request waits (``pool_timeout``).
        Default None (stock: no cap).
    :param pool_full_warning: keyword-only. ``"always"`` (default, stock): the "Connection pool
        is full" warning on every discard; ``"first"``: once per pool, then a summary line
        every 100 discards (:class:`fastpool.Session` uses it).
    :param max_line_bytes: (and ``max_headers``, ``max_head_bytes``) keyword-only bounds on a
        response head (default None: http.client's 65536 bytes a line and 100 header fields, and 1 MiB
        in all); see :class:`fastpool.PoolManager`.
    :param resolver: keyword-only. A :class:`fastpool.resolver.Resolver` for new connections
        (a DNS cache with TTLs); see :class:`fastpool.PoolManager`. Default None.
    :param source_address: keyword-only. ``(host, port)`` (or a host str: any port) that new
        connections bind to before connecting, as urllib3's ``source_address`` and
        requests-toolbelt's ``SourceAddressAdapter``. Default None.
    :param socket_options: keyword-only. ``(level, option, value)`` triples set on each new
        socket, replacing the default ones as in urllib3 (add to
        ``fastpool.connection.HTTPConnection.default_socket_options`` to keep
        ``TCP_NODELAY``; requests-toolbelt's ``TCPKeepAliveAdapter`` does so). Default None.

    Observability: :meth:`pool_stats` (a :class:`fastpool.stats.PoolStats` over the pool
    manager and proxy managers) and :meth:`add_trace_hook` (see :mod:`fastpool.trace`).

    Deliberate difference from the stock adapter: with ``verify`` on, the certificate of an
    ``https://`` proxy is verified for ``http://`` URLs too (see :meth:`cert_verify`); stock
    requests turns verification off for that TLS connection and accepts any proxy.
    """

    __attrs__ = [  # noqa: RUF012 - as stock
        *_stock.HTTPAdapter.__attrs__,
        "_pool_timeout",
        "_pool_options",
        "_connection_kw",
    ]

    _pool_timeout: float | None

    def __init__(
        self,
        pool_connections: int = DEFAULT_POOLSIZE,
        pool_maxsize: int = DEFAULT_POOLSIZE,
        max_retries: Any = DEFAULT_RETRIES,
        pool_block: bool = DEFAULT_POOLBLOCK,
        *,
        pool_timeout: float | None = DEFAULT_POOL_TIMEOUT,
        idle_timeout: float | None = None,
        max_lifetime: float | None = None,
        max_connections_per_host: int | None = None,
        max_connections: int | None = None,
        pool_full_warning: str = "always",
        source_address: tuple[str, int] | str | None = None,
        socket_options: Iterable[tuple[int, int, int | bytes]] | None = None,
        max_line_bytes: int | None = None,
        max_headers: int | None = None,
        max_head_bytes: int | None = None,
        resolver: Any = None,
    ) -> None:
        _check_count("pool_connections", pool_connections)
        _check_count("pool_maxsize", pool_maxsize)
        _check_pool_timeout(pool_timeout)
        if pool_full_warning not in ("always", "first"):
            raise ValueError(
                f"pool_full_warning must be 'always' or 'first', got {pool_full_warning!r}"
            )
        self._pool_timeout = pool_timeout
        options: dict[str, Any] = {
            "idle_timeout": idle_timeout,
            "max_lifetime": max_lifetime,
            "max_connections_per_host": max_connections_per_host,
            "max_connections": max_connections,
            # the managers' own wait bound (the global cap); urlopen gets it per request too
            "pool_timeout": pool_timeout,
            "max_line_bytes": max_line_bytes,
            "max_headers": max_headers,
            "max_head_bytes": max_head_bytes,
            "resolver": resolver,
        }
        options = {name: value for name, value in options.items() if value is not None}
        if pool_full_warning != "always":
            options["pool_full_warning"] = pool_full_warning
        self._pool_options = options
        connection_kw: dict[str, Any] = {}
        if source_address is not None:
            if isinstance(source_address, str):  # a host, any port (requests-toolbelt's form)
                source_address = (source_address, 0)
            elif not (isinstance(source_address, tuple) and len(source_address) == 2):
                raise TypeError(
                    "source_address must be a (host, port) tuple or a host str, "
                    f"got {type(source_address).__name__}"
                )
            connection_kw["source_address"] = source_address
        if socket_options is not None:
            if isinstance(socket_options, (str, bytes)):
                raise TypeError("socket_options must be a list of (level, option, value) tuples")
            connection_kw["socket_options"] = list(socket_options)
        self._connection_kw = connection_kw
        self._trace: Any = None
        self._urllib3_adapter: _stock.HTTPAdapter | None = None
        self._reset_fast_route()
        super().__init__(pool_connections, pool_maxsize, max_retries, pool_block)

    #: the hooks of the fast route set on this adapter itself (a tool's patch): the general
    #: route calls them
    _hooks_set_here: frozenset[str] = frozenset()

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name in _FAST_ROUTE_HOOKS:  # mock.patch.object(adapter, "build_response")
            super().__setattr__("_hooks_set_here", self._hooks_set_here | {name})
            super().__setattr__("_fast_route", False)
        elif name == "__class__" and isinstance(self, HTTPAdapter):  # another class's hooks
            self._reset_fast_route()

    def __delattr__(self, name: str) -> None:
        super().__delattr__(name)
        if name in _FAST_ROUTE_HOOKS:  # (a patch undone)
            super().__setattr__("_hooks_set_here", self._hooks_set_here - {name})
            super().__setattr__("_fast_route", self._route_by_class())

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._pool_timeout = DEFAULT_POOL_TIMEOUT  # a state pickled by an older version
        self._pool_options = {}
        self._connection_kw = {}
        self._trace = None  # hooks are code: not pickled
        self._urllib3_adapter = None
        self._reset_fast_route()
        super().__setstate__(state)

    def build_connection_pool_key_attributes(
        self, request: PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """requests' pool key attributes for ``request`` (its public hook), without the shared
        SSLContext that requests 2.32.3 and 2.32.4 preload: with it, a CA bundle loaded for
        one pool would be trusted by every verify=True pool (a deliberate difference, safer)."""
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        if (
            _PRELOADED_SSL_CONTEXT is not None
            and pool_kwargs.get("ssl_context") is _PRELOADED_SSL_CONTEXT
        ):
            del pool_kwargs["ssl_context"]
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        """Set ``conn``'s TLS verification for ``url`` as requests does (``verify``: True, False
        or a CA bundle path; ``cert``: a client certificate or None), with one exception.

        Stock requests sets ``CERT_NONE`` on the pool for every non-``https`` URL. For an
        ``http://`` URL through an ``https://`` proxy that pool's TLS connection goes to the
        proxy itself, and ``CERT_NONE`` would accept any proxy (a man in the middle sees every
        request). Here the proxy's certificate is verified whenever ``verify`` is on.
        """
        # Whatever this call sets, the fast route's note of what it set last no longer holds.
        conn.adapter_verify = None
        super().cert_verify(conn, url, verify, cert)
        if (
            _PRELOADED_SSL_CONTEXT is not None
            and verify is True
            and url.lower().startswith("https")
        ):
            # requests 2.32.3/2.32.4 leave verify=True to their preloaded context, which this
            # adapter keeps out of the pool key: load the same bundle into the pool, as requests
            # 2.32.5 does, so that a CA bundle set by an earlier request never sticks. The
            # bundle's name is read here, as requests' cert_verify reads it: a program or a
            # test may have replaced requests.adapters.DEFAULT_CA_BUNDLE_PATH.
            bundle = extract_zipped_paths(_stock.DEFAULT_CA_BUNDLE_PATH)  # type: ignore[attr-defined]
            super().cert_verify(conn, url, bundle, None)
        proxy = getattr(conn, "proxy", None)
        if (
            verify
            and proxy is not None
            and proxy.scheme == "https"
            and not url.lower().startswith("https")
        ):
            # requests' own rules for an https URL: the CA bundle or path, or an OSError.
            super().cert_verify(conn, "https:", verify, None)

    def _route_by_class(self) -> bool:
        """Whether the fast route may stand in for this adapter's hooks: none defined by its
        other classes or set on it (one set on a class later is seen at each request:
        ``_route_as_defined`` for requests' and fastpool's, ``_subclass_hooks_as_defined``
        for the others)."""
        return not self._hooks_set_here and _subclass_hooks_as_defined(self._subclass_dicts)

    def _reset_fast_route(self) -> None:
        mro = type(self).__mro__
        # the own dicts of the classes before requests' in the adapter's MRO but fastpool's
        # (empty for fastpool's class itself), live: a hook a subclass or a mixin of requests'
        # adapter defines, or one patched there after this adapter was made, shows there (a
        # mixin's reaches the request through fastpool's own hooks' super())
        self._subclass_dicts = tuple(
            vars(cls) for cls in mro[: mro.index(_StockHTTPAdapter)] if cls is not HTTPAdapter
        )
        self._fast_route = self._route_by_class()
        self._origins: dict[str, dict[str, Any]] = {}
        self._timeouts: dict[tuple[type, Any], TimeoutSauce] = {}
        self._ca_paths: dict[str, dict[str, Any]] = {}

    @property
    def pool_timeout(self) -> float | None:
        """Seconds to wait for a free connection with ``pool_block=True``; None waits forever."""
        return self._pool_timeout

    def init_poolmanager(
        self,
        connections: int,
        maxsize: int,
        block: bool = DEFAULT_POOLBLOCK,
        **pool_kwargs: Any,
    ) -> None:
        """Create :attr:`poolmanager`, a :class:`fastpool.PoolManager` (only for subclasses)."""
        self._pool_connections = connections
        self._pool_maxsize = maxsize
        self._pool_block = block
        # fastpool's PoolManager has urllib3's interface without subclassing it.
        self.poolmanager = PoolManager(  # type: ignore[assignment]
            num_pools=connections,
            maxsize=maxsize,
            block=block,
            trace=self._trace,
            _quiet_connection_class=True,  # under a vcrpy cassette send() takes urllib3's route
            **self._pool_options,
            **{**self._connection_kw, **pool_kwargs},
        )

    def add_trace_hook(self, event: str, hook: Any) -> None:
        """Call ``hook(TraceEvent)`` on ``event`` in every pool of this adapter (its pool
        manager and proxy managers, present and future); see :mod:`fastpool.trace`."""
        from .trace import Trace

        if self._trace is None:
            self._trace = Trace()
        self._trace.add(event, hook)
        managers = [self.poolmanager, *self.proxy_manager.values()]
        for manager in managers:
            if isinstance(manager, PoolManager) and manager.trace is not self._trace:
                manager.trace = self._trace
                for pool in manager.pools.values():
                    pool.set_trace(self._trace)

    def pool_stats(self) -> Any:
        """A :class:`fastpool.stats.PoolStats` over the pool manager and proxy managers."""
        from .stats import merge

        managers = [self.poolmanager, *self.proxy_manager.values()]
        return merge([m.stats() for m in managers if isinstance(m, PoolManager)])

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        """Return the manager for ``proxy`` (only for subclasses), creating it on first use.

        HTTP(S) proxies get fastpool's ProxyManager; ``socks`` proxies get urllib3's
        SOCKSProxyManager exactly as with the stock adapter (``InvalidSchema`` without PySocks).
        """
        manager = self.proxy_manager.get(proxy)
        if manager is not None:
            return manager
        if proxy.lower().startswith("socks"):
            username, password = get_auth_from_url(proxy)
            # stock's own name: urllib3's manager, or its stand-in raising InvalidSchema
            manager = _stock.SOCKSProxyManager(  # type: ignore[attr-defined]
                proxy,
                username=username,
                password=password,
                num_pools=self._pool_connections,
                maxsize=self._pool_maxsize,
                block=self._pool_block,
                **{**self._connection_kw, **proxy_kwargs},
            )
        else:
            manager = proxy_from_url(
                proxy,
                proxy_headers=self.proxy_headers(proxy),
                num_pools=self._pool_connections,
                maxsize=self._pool_maxsize,
                block=self._pool_block,
                trace=self._trace,
                _quiet_connection_class=True,
                **self._pool_options,
                **{**self._connection_kw, **proxy_kwargs},
            )
        self.proxy_manager[proxy] = manager
        return manager

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: dict[str, str] | None = None,
    ) -> Response:
        """Send a :class:`requests.PreparedRequest` and return a :class:`requests.Response`.

        The parameters and their defaults are the stock adapter's: ``stream`` (False),
        ``timeout`` (None: a float, a ``(connect, read)`` tuple or a urllib3 ``Timeout``),
        ``verify`` (True, or a CA bundle file or directory), ``cert`` (None, a client certificate
        path or ``(cert, key)``), ``proxies`` (None).

        A tool that patched ``requests.adapters.HTTPAdapter.send`` (responses'
        ``RequestsMock``, ``@responses.activate``) gets the request, as it would from the stock
        adapter; what it passes through to requests' own ``send`` still uses this adapter's
        hooks and fastpool's pools. Under a vcrpy cassette (which swaps urllib3's connection
        classes for its recorders) the request goes through a urllib3 pool manager of this
        adapter's own, so that the cassette records or replays it.
        """
        if _StockHTTPAdapter.send is not _STOCK_ADAPTER_SEND:
            patched: Any = _StockHTTPAdapter.send
            return patched(  # type: ignore[no-any-return]
                self, request, stream=stream, timeout=timeout, verify=verify, cert=cert,
                proxies=proxies,
            )  # fmt: skip
        if _U3_POOL.ConnectionCls is not _U3_CONNECTION:
            return self._send_through_urllib3(request, stream, timeout, verify, cert, proxies)
        conn, url, resolved_timeout, fast = self._target(
            request, stream, timeout, verify, cert, proxies
        )
        body = request.body
        try:
            resp = conn.urlopen(
                method=request.method,
                url=url,
                body=body,
                headers=request.headers,
                redirect=False,
                assert_same_host=False,
                preload_content=False,
                decode_content=False,
                retries=self.max_retries,
                timeout=resolved_timeout,
                pool_timeout=self._pool_timeout,
                chunked=not (body is None or "Content-Length" in request.headers),
            )
        except Exception as err:
            _raise_as_requests_error(err, request)
            raise
        if fast:
            return self._fast_response(request, resp)
        return self.build_response(request, resp)

    def _target(
        self,
        request: PreparedRequest,
        stream: bool,
        timeout: Any,
        verify: Any,
        cert: Any,
        proxies: dict[str, str] | None,
    ) -> tuple[Any, str, TimeoutSauce, bool]:
        """:meth:`send`'s pool, request target and timeout, and whether the fast route took
        them."""
        if (
            self._fast_route
            and _route_as_defined()
            and (not self._subclass_dicts or _subclass_hooks_as_defined(self._subclass_dicts))
            and cert is None
            and (verify is True or verify is False or type(verify) is str)
        ):
            fast = self._fast_target(request, timeout, verify, proxies)
            if fast is not None:
                return fast
        return (*self._general_target(request, stream, timeout, verify, cert, proxies), False)

    def _loop_begin(
        self,
        request: PreparedRequest,
        stream: bool,
        timeout: Any,
        verify: Any,
        cert: Any,
        proxies: dict[str, str] | None,
        wait: bool = False,
        limit: float | None = None,
        loop: Any = None,
    ) -> Any:
        """:meth:`send` up to its first byte, for the multiplexed loop (fastpool.multi): the
        pool's Exchange, None (no free connection now) or False (``send`` must run it: a tool
        patched it, a cassette is on, or the pool is not fastpool's). With ``wait`` it waits
        for a connection as :meth:`send` would (``pool_timeout``; at most ``limit`` seconds
        when given) and raises what ``send`` raises when none comes. ``loop``: the map's,
        asked whether an idle connection is alive (``fastpool._lane``)."""
        send = self.send
        if (
            _StockHTTPAdapter.send is not _STOCK_ADAPTER_SEND
            # overridden, or patched on this adapter (another's send set on it included): it
            # must see the request (is_own_method's test written out: a frame less each hop)
            or getattr(send, "__func__", None) is not HTTPAdapter.send
            or getattr(send, "__self__", send) is not self
            or _U3_POOL.ConnectionCls is not _U3_CONNECTION
        ):
            return False
        conn, url, resolved_timeout, fast = self._target(
            request, stream, timeout, verify, cert, proxies
        )
        if not isinstance(conn, HTTPConnectionPool):
            return False
        body = request.body
        try:
            exchange = None
            if not wait and body is None and request.method == "GET":
                # the plainest hop in one call (fastpool._lane), else the general steps
                begin_on = _lane_begin_on()
                exchange = begin_on(conn, url, request.headers, resolved_timeout, not stream, loop)
            if exchange is None:
                exchange = conn._loop_begin(
                    request.method,  # type: ignore[arg-type]
                    url,
                    body,
                    request.headers,  # type: ignore[arg-type]
                    not (body is None or "Content-Length" in request.headers),
                    resolved_timeout,
                    not stream,
                    wait=wait,
                    pool_timeout=self._pool_timeout,
                    limit=limit,
                )
        except Exception as err:
            _raise_as_requests_error(err, request)
            raise
        if isinstance(exchange, Exchange):
            exchange.caller = (self, url, resolved_timeout, fast)  # for _send_exchanged
        return exchange

    def _send_exchanged(self, request: PreparedRequest, exchange: Any) -> Response:
        """:meth:`send` for a request the multiplexed loop sent and got the answer of: on the
        pool that holds its connection, with the target :meth:`_loop_begin` found, through
        ``urlopen``, which finds it all done."""
        _, url, resolved_timeout, fast = exchange.caller
        body = request.body
        try:
            resp = exchange.tag.urlopen(
                method=request.method,
                url=url,
                body=body,
                headers=request.headers,
                redirect=False,
                assert_same_host=False,
                preload_content=False,
                decode_content=False,
                # a hop urllib3's Retry sends again counts on (the runner carries it)
                retries=self.max_retries if exchange.retries is None else exchange.retries,
                timeout=resolved_timeout,
                pool_timeout=self._pool_timeout,
                chunked=not (body is None or "Content-Length" in request.headers),
                _exchange=exchange,
            )
        except Exception as err:
            _raise_as_requests_error(err, request)
            raise
        if fast:
            return self._fast_response(request, resp)
        return self.build_response(request, resp)

    def _send_through_urllib3(
        self,
        request: PreparedRequest,
        stream: bool,
        timeout: Any,
        verify: Any,
        cert: Any,
        proxies: dict[str, str] | None,
    ) -> Response:
        """requests' own adapter, with this one's settings, on urllib3's (patched) classes."""
        adapter = self._urllib3_adapter
        if adapter is None:
            adapter = _StockHTTPAdapter(
                self._pool_connections, self._pool_maxsize, self.max_retries, self._pool_block
            )
            if self._connection_kw:
                adapter.init_poolmanager(
                    self._pool_connections,
                    self._pool_maxsize,
                    block=self._pool_block,
                    **self._connection_kw,
                )
            self._urllib3_adapter = adapter
        response = _STOCK_ADAPTER_SEND(
            adapter, request, stream=stream, timeout=timeout, verify=verify, cert=cert,
            proxies=proxies,
        )  # fmt: skip
        response.connection = self
        return response  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close the pool manager and the proxy managers: their pools and idle connections."""
        super().close()
        adapter = self._urllib3_adapter
        if adapter is not None:
            adapter.close()

    def _general_target(
        self,
        request: PreparedRequest,
        stream: bool,
        timeout: Any,
        verify: Any,
        cert: Any,
        proxies: dict[str, str] | None,
    ) -> tuple[Any, str, TimeoutSauce]:
        """Pool, request target and timeout through the overridable hooks, as stock does."""
        if not isinstance(self.poolmanager, PoolManager):
            _warn_foreign_manager(self, self.poolmanager)
        try:
            conn = self.get_connection_with_tls_context(request, verify, proxies=proxies, cert=cert)
        except _u3.LocationValueError as e:
            raise InvalidURL(e, request=request) from e
        self.cert_verify(conn, request.url, verify, cert)  # type: ignore[arg-type]
        url = self.request_url(request, proxies)
        self.add_headers(
            request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
        )
        return conn, url, _resolve_timeout(timeout)

    def _fast_target(
        self,
        request: PreparedRequest,
        timeout: Any,
        verify: bool | str,
        proxies: dict[str, str] | None,
    ) -> tuple[Any, str, TimeoutSauce, bool] | None:
        """:meth:`_target`'s answer on the fast route (its last item True) without the general
        route's repeated parsing; None: take that route."""
        url = request.url
        manager_type: type = type(self.poolmanager)
        if type(url) is not str or manager_type is not PoolManager:
            return None
        if proxies and select_proxy(url, proxies):
            return None
        split = _split_url(url)
        if split is None:
            return None
        origin, path = split
        host_params = self._origins.get(origin)
        if host_params is None:
            host_params = self._host_params(request, origin)
            if host_params is None:
                return None
        if verify is True:
            pool_kwargs = _VERIFY_POOL_KWARGS
        elif verify is False:
            pool_kwargs = _NO_VERIFY_POOL_KWARGS
        else:
            pool_kwargs = self._ca_path_kwargs(verify)
        conn: Any = self.poolmanager.connection_from_host(**host_params, pool_kwargs=pool_kwargs)
        # cert_verify sets the same attributes for the same ``verify`` on every request (and
        # asks the file system about the CA bundle each time): once per pool is enough, until
        # any other cert_verify call (the general route's: verify=None, a Path, a client
        # certificate) changes them, which clears the note (see cert_verify).
        verified = getattr(conn, "adapter_verify", None)  # a foreign pool class has none
        if verified is None or (verified is not verify and verified != verify):
            self.cert_verify(conn, url, verify, None)
            conn.adapter_verify = verify
        # After the connection hooks, as stock reads it: the same error first on bad input.
        return conn, path, self._timeout_for(timeout), True

    def _ca_path_kwargs(self, path: str) -> dict[str, Any]:
        # What build_connection_pool_key_attributes gives for verify=<CA path>, once per path
        # (requests asks the file system on every request; a path that turns from a file into
        # a directory while the adapter lives keeps its first answer here).
        kwargs = self._ca_paths.get(path)
        if kwargs is None:
            key = "ca_cert_dir" if os.path.isdir(path) else "ca_certs"
            kwargs = {key: path, "cert_reqs": "CERT_REQUIRED"}
            if len(self._ca_paths) >= _ORIGIN_CACHE_SIZE:
                self._ca_paths.clear()
            self._ca_paths[path] = kwargs
        return kwargs

    def _host_params(self, request: PreparedRequest, origin: str) -> dict[str, Any] | None:
        try:
            host_params, _ = self.build_connection_pool_key_attributes(request, True, None)
        except ValueError:
            return None  # the general route raises the stock InvalidURL
        if not host_params["host"]:
            return None
        if len(self._origins) >= _ORIGIN_CACHE_SIZE:
            self._origins.clear()
        self._origins[origin] = host_params
        return host_params

    def _timeout_for(self, timeout: Any) -> TimeoutSauce:
        if timeout is None:  # the default, and requests' Session passes it on
            return _NO_TIMEOUT
        if isinstance(timeout, TimeoutSauce):
            return timeout
        key = (type(timeout), timeout)
        try:
            resolved = self._timeouts.get(key)
        except TypeError:  # unhashable: let the stock reading complain or cope
            return _resolve_timeout(timeout)
        if resolved is None:
            resolved = _resolve_timeout(timeout)
            if len(self._timeouts) >= _TIMEOUT_CACHE_SIZE:
                self._timeouts.clear()
            self._timeouts[key] = resolved
        return resolved

    def _fast_response(self, request: PreparedRequest, resp: Any) -> Response:
        """What :meth:`build_response` returns, built with fewer steps."""
        # The store CaseInsensitiveDict(resp.headers) builds: lower name -> (name as first
        # seen, the values of a repeated header joined with ", "), as HTTPHeaderDict gives.
        if type(resp) is EngineResponse:
            store = resp._requests_store()
        else:  # another pool class's response: build_response's own way
            store = CaseInsensitiveDict(resp.headers)._store  # private: fastpool._thirdparty
        headers: CaseInsensitiveDict[str] = CaseInsensitiveDict.__new__(CaseInsensitiveDict)
        headers._store = store  # private: fastpool._thirdparty
        content_type = store.get("content-type")
        # Response() and build_response's assignments, in Response.__init__'s order (plain
        # stores: they keep the object's compact attribute layout, a __dict__ update would not).
        response = Response.__new__(Response)
        response._content = False  # private (and the next two): fastpool._thirdparty
        response._content_consumed = False
        response._next = None
        response.status_code = resp.status
        response.headers = headers
        response.raw = resp
        response.url = request.url  # type: ignore[assignment]
        response.encoding = None if content_type is None else _encoding_for(content_type[1])
        response.history = []
        response.reason = resp.reason
        response.cookies = cookies = RequestsCookieJar()
        response.elapsed = _ZERO
        response.request = request
        response.connection = self
        if "set-cookie" in store or "set-cookie2" in store:
            extract_cookies_to_jar(cookies, request, resp)
        return response


# The hooks the fast route stands in for, as defined: fastpool's own, and requests' as its
# module defined them (a tool's patch of requests' HTTPAdapter.build_response must see each
# response, as on the stock adapter). None: replaced before fastpool was imported.
_BUILD_RESPONSE = stock_function(_StockHTTPAdapter.build_response, _stock)
_REQUEST_URL = stock_function(_StockHTTPAdapter.request_url, _stock)
_ADD_HEADERS = stock_function(_StockHTTPAdapter.add_headers, _stock)
_TLS_CONTEXT = stock_function(_StockHTTPAdapter.get_connection_with_tls_context, _stock)
# (requests' two that fastpool's own call through super())
_STOCK_CERT_VERIFY = stock_function(_StockHTTPAdapter.cert_verify, _stock)
_STOCK_KEY_ATTRIBUTES = stock_function(
    _StockHTTPAdapter.build_connection_pool_key_attributes, _stock
)
_OWN_KEY_ATTRIBUTES = HTTPAdapter.build_connection_pool_key_attributes
_OWN_CERT_VERIFY = HTTPAdapter.cert_verify


#: the two classes' own attributes, live (a patch on either class shows here at once)
_STOCK_ATTRIBUTES = vars(_StockHTTPAdapter)
_OWN_ATTRIBUTES = vars(HTTPAdapter)


def _route_as_defined() -> bool:
    """Whether each hook the fast route stands in for (``_FAST_ROUTE_HOOKS``) is still, on
    requests' ``HTTPAdapter`` and on fastpool's, the function its module defined: a patch made
    after the adapter (a subclass's override is checked when the adapter is made and a patch
    on it at each request, ``_subclass_hooks_as_defined``; a patch on the adapter itself when
    it is set, ``HTTPAdapter.__setattr__``). Read from the classes' own dicts, without the
    attribute protocol: a few dict lookups a request."""
    stock = _STOCK_ATTRIBUTES
    own = _OWN_ATTRIBUTES
    return (
        stock["build_response"] is _BUILD_RESPONSE
        and stock["request_url"] is _REQUEST_URL
        and stock["add_headers"] is _ADD_HEADERS
        and stock["get_connection_with_tls_context"] is _TLS_CONTEXT
        and own["build_connection_pool_key_attributes"] is _OWN_KEY_ATTRIBUTES
        and own["cert_verify"] is _OWN_CERT_VERIFY
        and stock["cert_verify"] is _STOCK_CERT_VERIFY
        and stock["build_connection_pool_key_attributes"] is _STOCK_KEY_ATTRIBUTES
        # requests' hooks set on fastpool's class (inherited until then)
        and "build_response" not in own
        and "request_url" not in own
        and "add_headers" not in own
        and "get_connection_with_tls_context" not in own
    )


def _subclass_hooks_as_defined(dicts: tuple[Any, ...]) -> bool:
    """Whether none of the own dicts of an adapter's other classes
    (``HTTPAdapter._subclass_dicts``) holds a hook of the fast route: defined there, or set
    since the adapter was made."""
    for own in dicts:
        if not own.keys().isdisjoint(_FAST_ROUTE_HOOKS):
            return False
    return True


_begin_on: Any = None


def _lane_begin_on() -> Any:
    """``fastpool._lane.begin_on``, imported by the first map (one request never loads the
    multiplexed loop)."""
    global _begin_on
    if _begin_on is None:
        from ._lane import begin_on

        _begin_on = begin_on
    return _begin_on


@functools.lru_cache(maxsize=_ORIGIN_CACHE_SIZE)  # a few distinct values serve a whole crawl
def _encoding_for(content_type: str) -> str | None:
    """``get_encoding_from_headers`` for one Content-Type value (a pure function of it)."""
    return get_encoding_from_headers({"content-type": content_type})  # type: ignore[arg-type]
