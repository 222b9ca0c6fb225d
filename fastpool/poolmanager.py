"""PoolManager: pool key -> HostPool through the compiled LRUMap; cross-host redirects; proxies.

:class:`PoolManager`, :class:`ProxyManager` and :func:`proxy_from_url` mirror urllib3's names,
signatures and pool-key rules (every setting that changes a connection is part of the key, so
a connection made with verification off never serves a request with verification on).
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import typing
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import urljoin

from urllib3 import connection as _u3_connection
from urllib3 import connectionpool as _u3_connectionpool
from urllib3.exceptions import (
    ClosedPoolError,
    LocationValueError,
    MaxRetryError,
    ProxySchemeUnknown,
    URLSchemeUnknown,
)
from urllib3.poolmanager import SSL_KEYWORDS, PoolKey
from urllib3.util.proxy import connection_requires_http_tunnel
from urllib3.util.retry import Retry
from urllib3.util.url import parse_url

from ._lane import Lane
from ._lru import LRUMap
from ._thirdparty import (
    ProxyConfig,
    RequestMethods,
    default_key_normalizer,
    headers_for_method_change,
)
from .connection import HTTPConnection, HTTPSConnection, port_by_scheme
from .limits import ConnectionLimit
from .multi import ManagerDriver, Result, run_map
from .pool import (
    PLAIN_ORIGIN_FORM,
    PLAIN_PATH,
    PLAIN_QUERY,
    HTTPConnectionPool,
    HTTPSConnectionPool,
)
from .response import HTTPResponse
from .stats import COUNTERS

if typing.TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ("PoolKey", "PoolManager", "ProxyManager", "key_fn_by_scheme", "proxy_from_url")

#: The managers' logger with ``urllib3_logging=False`` (by default: ``urllib3.poolmanager``).
log = logging.getLogger("fastpool.poolmanager")
_U3_LOG = logging.getLogger("urllib3.poolmanager")

_DEFAULT_BLOCKSIZE = 16384
_CACHE_SIZE = 1024
#: of the whole URLs PoolManager._split_url keeps (up to _CACHE_SIZE), those its cheap ways
#: split: only the first few, so that a crawl's new URLs, each seen once, do not churn it
_CHEAP_CACHED = 256
#: An http(s) URL parse_url leaves as it is but for the case of its scheme and host: a host
#: name or IPv4 address, a port, and a path and query of the characters it never encodes (no
#: "%", whose case it would change); the fragment is dropped. A dot segment is checked apart.
_PLAIN_URL = re.compile(
    r"([Hh][Tt][Tt][Pp][Ss]?)://([A-Za-z0-9.-]+)(?::([0-9]{1,5}))?"
    f"({PLAIN_PATH})?({PLAIN_QUERY})?(?:#.*)?",
    re.DOTALL,
)

#: scheme -> callable(request_context) -> pool key (urllib3's key rules and PoolKey fields).
key_fn_by_scheme = {
    "http": functools.partial(default_key_normalizer, PoolKey),
    "https": functools.partial(default_key_normalizer, PoolKey),
}

#: scheme -> pool class.
pool_classes_by_scheme: dict[str, type[HTTPConnectionPool]] = {
    "http": HTTPConnectionPool,
    "https": HTTPSConnectionPool,
}


#: The pool counters whose running totals survive an evicted pool (``evicted_totals``): the
#: same as :data:`fastpool.stats.COUNTERS`.
EVICTED_COUNTERS = COUNTERS


#: urllib3's own connection classes, which its pools use unless something replaced them.
_URLLIB3_CONNECTIONS = (_u3_connection.HTTPConnection, _u3_connection.HTTPSConnection)
_FASTPOOL_CONNECTIONS = (HTTPConnection, HTTPSConnection)


def _warn_if_urllib3_connections_replaced() -> None:
    """``urllib3.http2.inject_into_urllib3()`` or a vcrpy cassette replace the connection
    classes of urllib3's pools; fastpool's pools keep their own: say so instead of ignoring
    the change silently."""
    in_use: tuple[Any, ...] = (
        _u3_connectionpool.HTTPConnectionPool.ConnectionCls,
        _u3_connectionpool.HTTPSConnectionPool.ConnectionCls,
    )
    # (fastpool's own: urllib3's pool names were given fastpool's pools, which is no change)
    if in_use != _URLLIB3_CONNECTIONS and in_use != _FASTPOOL_CONNECTIONS:
        import warnings

        from .exceptions import UnusedConnectionClassWarning

        names = ", ".join(f"{c.__module__}.{c.__qualname__}" for c in in_use)
        warnings.warn(
            f"urllib3's pools use {names}, not urllib3's own connection classes; "
            "fastpool.PoolManager's pools use fastpool's HTTP/1.1 connections instead (for "
            "those classes, use urllib3.PoolManager)",
            UnusedConnectionClassWarning,
            stacklevel=3,
        )


def _retirer(manager: PoolManager) -> Any:
    """The LRUMap's dispose function: retire the dropped pool, count it on the manager."""
    ref = weakref.ref(manager)

    def dispose(pool: HTTPConnectionPool) -> None:
        retire = getattr(pool, "_retire", None)
        if retire is None:  # another pool class (pool_classes_by_scheme): urllib3's dispose
            pool.close()
            return
        idle_closed = retire()
        owner = ref()
        if owner is not None:
            owner._count_evicted(pool, idle_closed)

    return dispose


def _forgetter(cache: dict[Any, Any], generation: list[int]) -> Any:
    """What a change of the settings calls: forget every remembered pool key and count a new
    generation, so a key computed from settings that changed meanwhile is not kept either.
    (A plain dict: a dict subclass's ``get`` costs about 1% of a request, measured.)"""

    def forget() -> None:
        generation[0] += 1
        cache.clear()

    return forget


class _WatchedDict(dict):  # type: ignore[type-arg]
    """A dict that calls ``changed()`` after any change made through its own methods.

    A PoolManager remembers the pool key of each (origin, request settings) it has seen; its
    ``connection_pool_kw`` and ``key_fn_by_scheme`` are these dicts, so that an in-place
    change (``pm.connection_pool_kw.update(cert_reqs="CERT_REQUIRED")``) forgets every
    remembered key at once and the next request gets the pool of the settings in force, as
    urllib3 derives it on every call. Values changed in place inside the dict (a nested
    headers dict) are shared by reference with the pools, as they are in urllib3.
    """

    __slots__ = ("changed",)

    def __init__(self, data: Mapping[Any, Any], changed: Any) -> None:
        super().__init__(data)
        self.changed = changed

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self.changed()

    def __delitem__(self, key: Any) -> None:
        super().__delitem__(key)
        self.changed()

    def __ior__(self, other: Any) -> Self:  # type: ignore[misc]
        super().__ior__(other)
        self.changed()
        return self

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self.changed()

    def setdefault(self, key: Any, default: Any = None) -> Any:
        value = super().setdefault(key, default)
        self.changed()
        return value

    def pop(self, *args: Any) -> Any:
        value = super().pop(*args)
        self.changed()
        return value

    def popitem(self) -> tuple[Any, Any]:
        item = super().popitem()
        self.changed()
        return item

    def clear(self) -> None:
        super().clear()
        self.changed()

    def __reduce__(self) -> Any:
        return (dict, (dict(self),))  # a copy or a pickle is a plain dict


class PoolManager(RequestMethods):
    """Requests to any origin, with one pool per origin and settings (urllib3's ``PoolManager``).

    :param num_pools: how many pools to keep; the least recently used one is closed when a new
        one is needed (default 10). Its idle connections close at once; connections in use
        close when their response ends.
    :param headers: headers sent with every request unless ``headers`` are given.
    :param idle_timeout: (and ``max_lifetime``, ``max_connections_per_host``,
        ``pool_timeout``, ``pool_full_warning``) keyword-only, default None (stock
        behaviour); passed to every pool (see :class:`~fastpool.pool.HTTPConnectionPool`).
    :param max_line_bytes: (and ``max_headers``, ``max_head_bytes``) keyword-only bounds on
        a response head (default None: 65536 bytes a line and 100 header fields, as
        http.client, and 1048576 bytes in all); passed to every pool (see
        :class:`~fastpool.pool.HTTPConnectionPool`).
    :param resolver: keyword-only. A :class:`fastpool.resolver.Resolver` shared by every
        pool's dials: a DNS cache with TTLs (default None: ``socket.getaddrinfo`` at every
        dial). It is not closed with the manager: it may serve several.
    :param urllib3_logging: keyword-only. Log under urllib3's logger names
        (``urllib3.poolmanager``, ``urllib3.connectionpool``), as urllib3 does, so logging
        set up for urllib3 keeps working (default None: True); False: under ``fastpool.*``.
    :param max_connections: keyword-only. A hard cap on open connections across all pools,
        dials included (default None: no cap). At the cap a dial closes the oldest idle
        connection of any host, else waits up to ``pool_timeout`` (FIFO) and raises
        ``PoolTimeoutError`` (an ``EmptyPoolError``). See :class:`~fastpool.limits.ConnectionLimit`.
    :param trace: keyword-only. A :class:`fastpool.trace.Trace` whose hooks see each step of
        each request (default None: a pool without a Trace runs no trace code). A Trace without
        hooks is not kept, so it costs nothing either: register its hooks before passing it,
        or later with :meth:`add_trace_hook`.
    :param \\**connection_pool_kw: passed to each new pool (``maxsize``, ``block``,
        ``timeout``, ``retries``, TLS settings ...).

    A pool dropped from the LRU (evicted, or by :meth:`clear`) is *retired*: its idle
    connections close at once, requests that already hold it still complete (new checkouts
    dial, connections coming back are closed). ``evicted_pools`` counts them and
    ``evicted_totals`` keeps the running totals of their counters (:data:`EVICTED_COUNTERS`).
    """

    proxy: Any = None
    proxy_config: ProxyConfig | None = None

    def __init__(
        self,
        num_pools: int = 10,
        headers: Mapping[str, str] | None = None,
        *,
        idle_timeout: float | None = None,
        max_lifetime: float | None = None,
        max_connections_per_host: int | None = None,
        pool_timeout: float | None = None,
        pool_full_warning: str | None = None,
        max_connections: int | None = None,
        max_line_bytes: int | None = None,
        max_headers: int | None = None,
        max_head_bytes: int | None = None,
        urllib3_logging: bool | None = None,
        resolver: Any = None,
        trace: Any = None,
        _quiet_connection_class: bool = False,
        **connection_pool_kw: Any,
    ) -> None:
        super().__init__(headers)
        if not _quiet_connection_class:  # fastpool.HTTPAdapter handles it (a cassette)
            _warn_if_urllib3_connections_replaced()
        # Manager-wide, so not part of the pool key (urllib3's PoolKey has no field for them).
        options = {
            "idle_timeout": idle_timeout,
            "max_lifetime": max_lifetime,
            "max_connections_per_host": max_connections_per_host,
            "pool_timeout": pool_timeout,
            "pool_full_warning": pool_full_warning,
            "max_line_bytes": max_line_bytes,
            "max_headers": max_headers,
            "max_head_bytes": max_head_bytes,
            "urllib3_logging": urllib3_logging,
            "resolver": resolver,
        }
        self._pool_options: dict[str, Any] = {n: v for n, v in options.items() if v is not None}
        #: The global cap on open connections across this manager's pools, or None.
        self.limit: ConnectionLimit | None = None
        if max_connections is not None:
            self.limit = ConnectionLimit(max_connections, pool_timeout)
        if self._pool_options:
            # Bad values fail here, naming the option, not at the first request.
            HTTPConnectionPool("localhost", **self._pool_options).close()
        self._log = log if urllib3_logging is False else _U3_LOG
        self.trace = trace if trace else None  # an empty Trace would be called for nothing
        self._clearing = False
        self.evicted_pools = 0
        self.evicted_totals: dict[str, float] = dict.fromkeys(EVICTED_COUNTERS, 0)
        self.evicted_totals["wait_time"] = 0.0
        if "retries" in connection_pool_kw:
            retries = connection_pool_kw["retries"]
            if not isinstance(retries, Retry):
                connection_pool_kw = connection_pool_kw.copy()
                connection_pool_kw["retries"] = Retry.from_int(retries)
        # (scheme, host, port, pool_kwargs items) -> (pool key, request context): valid only
        # for the connection_pool_kw and key_fn_by_scheme in force, so any change to either
        # (assigned anew, or changed in place) empties it.
        self._key_cache: dict[Any, Any] = {}
        self._generation = [0]
        self._forget_keys = _forgetter(self._key_cache, self._generation)
        self.connection_pool_kw = connection_pool_kw
        self.pools: LRUMap[Any, HTTPConnectionPool] = LRUMap(num_pools, dispose_func=_retirer(self))
        self.pool_classes_by_scheme = pool_classes_by_scheme
        self.key_fn_by_scheme = key_fn_by_scheme.copy()
        self._lock = threading.Lock()  # only the create-a-pool path takes it
        # absolute URL -> (scheme, host, port, what to send as the request target)
        self._url_cache: dict[str, tuple[str, str, int | None, str]] = {}
        # "scheme://authority" of a plain URL -> its (scheme, host, port): a crawl's URLs are
        # each new and its origins few, so a URL's origin is looked up and its target taken
        # as it stands. (Like the URL cache, it assumes the proxy settings of a manager do not
        # change: they decide which URLs it takes. Over 1,024 origins in turn, it never hits.)
        self._origins: dict[str, tuple[str, str, int | None]] = {}

    @property
    def connection_pool_kw(self) -> dict[str, Any]:
        """The settings every new pool gets (urllib3's attribute). A change, in place or by
        assignment, applies to the next request: it gets the pool of the new settings."""
        return self._connection_pool_kw

    @connection_pool_kw.setter
    def connection_pool_kw(self, value: Mapping[str, Any]) -> None:
        self._connection_pool_kw = _WatchedDict(value, self._forget_keys)
        self._forget_keys()

    @property
    def key_fn_by_scheme(self) -> dict[str, Any]:
        """scheme -> the function that makes a pool key from a request context (urllib3's)."""
        return self._key_fn_by_scheme

    @key_fn_by_scheme.setter
    def key_fn_by_scheme(self, value: Mapping[str, Any]) -> None:
        self._key_fn_by_scheme = _WatchedDict(value, self._forget_keys)
        self._forget_keys()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> typing.Literal[False]:
        self.clear()
        return False

    def _count_evicted(self, pool: HTTPConnectionPool, idle_closed: int) -> None:
        if self._clearing:
            return
        queue = pool.pool
        totals = self.evicted_totals
        self.evicted_pools += 1
        totals["created"] += queue.created - pool.handed_over  # see stats.host_stats
        totals["reused"] += queue.reused + pool.handed_over
        totals["discarded_full"] += queue.discarded
        totals["expired_idle"] += pool.expired_idle
        totals["expired_lifetime"] += pool.expired_lifetime
        totals["dropped_stale"] += pool.dropped_stale
        totals["retried"] += pool.retried
        totals["wait_count"] += queue.wait_count
        totals["wait_time"] += queue.wait_time
        if self.trace is not None:
            self.trace.emit("evict_pool", host=pool.host, port=pool.port, idle_closed=idle_closed)

    def add_trace_hook(self, event: str, hook: Any) -> None:
        """Call ``hook(TraceEvent)`` on ``event`` (see :mod:`fastpool.trace`; ``"*"``: all).

        Creates :attr:`trace` on first use and hands it to the existing pools.
        """
        from .trace import Trace  # only when tracing is asked for

        if self.trace is None:
            trace = Trace()
            trace.add(event, hook)
            self.trace = trace
            for pool in self.pools.values():
                pool.set_trace(trace)
        else:
            self.trace.add(event, hook)

    def stats(self) -> Any:
        """A :class:`fastpool.stats.PoolStats` snapshot of every pool (see :mod:`fastpool.stats`)."""
        from .stats import snapshot

        return snapshot(self)

    def _new_pool(
        self, scheme: str, host: str, port: int, request_context: dict[str, Any] | None = None
    ) -> HTTPConnectionPool:
        """Create the pool for one key (override point, as in urllib3)."""
        pool_cls = self.pool_classes_by_scheme[scheme]
        if request_context is None:
            request_context = self.connection_pool_kw.copy()
        else:
            request_context = dict(request_context)
        if request_context.get("blocksize") is None:
            request_context["blocksize"] = _DEFAULT_BLOCKSIZE
        for key in ("scheme", "host", "port"):
            request_context.pop(key, None)
        if scheme == "http":
            for kw in SSL_KEYWORDS:
                request_context.pop(kw, None)
        if self._pool_options:
            request_context.update(self._pool_options)
        if self.limit is not None:
            request_context["_limiter"] = self.limit
        if self.trace is not None:
            request_context["_trace"] = self.trace
        return pool_cls(host, port, **request_context)

    def clear(self) -> None:
        """Retire and forget every pool: idle connections close now; responses in flight finish
        and their connections close."""
        self._clearing = True  # clear() is not an eviction: nothing counted, nothing traced
        try:
            self.pools.clear()
        finally:
            self._clearing = False
        self._key_cache.clear()

    def connection_from_host(
        self,
        host: str | None,
        port: int | None = None,
        scheme: str | None = "http",
        pool_kwargs: dict[str, Any] | None = None,
    ) -> HTTPConnectionPool:
        """The pool for ``scheme://host:port`` with ``pool_kwargs`` merged over the defaults."""
        if not host:
            raise LocationValueError("No host specified.")
        scheme = scheme or "http"
        key_cache = self._key_cache
        try:
            cache_key: Any = (
                scheme,
                host,
                port,
                tuple(pool_kwargs.items()) if pool_kwargs else None,
            )
            cached = key_cache.get(cache_key)  # (hashed once: a tuple keeps no hash)
        except TypeError:  # an unhashable setting: no cache for it
            cache_key = cached = None
        if cached is not None:
            pool = self.pools.get(cached[0])
            if pool is not None:
                return pool
            return self.connection_from_pool_key(cached[0], dict(cached[1]))
        generation = self._generation[0]  # before the settings are read
        request_context = self._merge_pool_kwargs(pool_kwargs)
        request_context["scheme"] = scheme
        if port is None:  # port 0 stays 0, as with urllib3
            port = port_by_scheme.get(scheme.lower(), 80)
        request_context["port"] = port
        request_context["host"] = host
        scheme_l = scheme.lower()
        key_fn = self.key_fn_by_scheme.get(scheme_l)
        if not key_fn:
            raise URLSchemeUnknown(scheme_l)
        pool_key = key_fn(request_context)
        if cache_key is not None:
            if len(key_cache) >= _CACHE_SIZE:
                key_cache.clear()
            key_cache[cache_key] = (pool_key, dict(request_context))
            if self._generation[0] != generation:
                # The settings changed while this key was computed from them: not kept (a
                # change after the store empties the cache itself).
                key_cache.pop(cache_key, None)
        return self.connection_from_pool_key(pool_key, request_context=request_context)

    def connection_from_context(self, request_context: dict[str, Any]) -> HTTPConnectionPool:
        """The pool for a request context (a dict with at least ``scheme``, ``host``, ``port``)."""
        if "strict" in request_context:
            warnings.warn(
                "The 'strict' parameter is no longer needed on Python 3+. "
                "This will raise an error in urllib3 v3.0.",
                FutureWarning,
                stacklevel=2,
            )
            request_context.pop("strict")
        scheme = request_context["scheme"].lower()
        key_fn = self.key_fn_by_scheme.get(scheme)
        if not key_fn:
            raise URLSchemeUnknown(scheme)
        return self.connection_from_pool_key(
            key_fn(request_context), request_context=request_context
        )

    def connection_from_pool_key(
        self, pool_key: Any, request_context: dict[str, Any]
    ) -> HTTPConnectionPool:
        """The pool stored under ``pool_key``, created from ``request_context`` if missing."""
        pool = self.pools.get(pool_key)
        if pool is not None:
            return pool
        with self._lock:
            pool = self.pools.get(pool_key)
            if pool is not None:
                return pool
            scheme = request_context["scheme"].lower()
            pool = self._new_pool(
                scheme, request_context["host"], request_context["port"], request_context
            )
            self.pools[pool_key] = pool
        return pool

    def connection_from_url(
        self, url: str, pool_kwargs: dict[str, Any] | None = None
    ) -> HTTPConnectionPool:
        """The pool for the origin of ``url``."""
        u = parse_url(url)
        return self.connection_from_host(
            u.host, port=u.port, scheme=u.scheme, pool_kwargs=pool_kwargs
        )

    def _merge_pool_kwargs(self, override: dict[str, Any] | None) -> dict[str, Any]:
        base = self.connection_pool_kw.copy()
        if override:
            for key, value in override.items():
                if value is None:
                    base.pop(key, None)
                else:
                    base[key] = value
        return base

    def _proxy_requires_url_absolute_form(self, scheme: str | None) -> bool:
        if self.proxy is None:
            return False
        return not connection_requires_http_tunnel(self.proxy, self.proxy_config, scheme)

    def _split_url(self, url: str) -> tuple[str, str, int | None, str]:
        """``url`` as ``(scheme, host, port, request target)``: parse_url's answer, lower-cased
        scheme and host, the fragment dropped (the target is absolute through a proxy that
        forwards)."""
        cached = self._url_cache.get(url)
        if cached is not None:
            return cached
        if type(url) is str:
            # A plain URL of a known origin: the origin looked up, the target as it stands
            # (the path's "/" is the first after "http://" or "https://" and one host byte).
            slash = url.find("/", 8)
            if slash > 0:
                origin = self._origins.get(url[:slash])
                if origin is not None:
                    target = url[slash:]
                    if "/." not in target and PLAIN_ORIGIN_FORM.fullmatch(target) is not None:
                        result = (*origin, target)
                        self._remember(url, result, True)
                        return result
        plain = _PLAIN_URL.fullmatch(url) if type(url) is str else None
        if plain is not None:
            # parse_url's answer without its general machinery (a crawl's URLs are each new)
            scheme, host, port, path, query = plain.groups()
            if (
                (port is None or int(port) <= 65535)
                and (path is None or "/." not in path)
                and not self._proxy_requires_url_absolute_form(scheme.lower())
            ):
                scheme, host = scheme.lower(), host.lower()
                number = None if port is None else int(port)
                if path is not None:
                    origins = self._origins
                    if len(origins) >= _CACHE_SIZE:
                        origins.clear()
                    origins[url[: plain.start(4)]] = (scheme, host, number)
                result = (scheme, host, number, (path or "/") + (query or ""))
                self._remember(url, result, True)
                return result
        u = parse_url(url)
        if u.scheme is None:
            import warnings

            warnings.warn(
                "URLs without a scheme (ie 'https://') are deprecated and will raise an error "
                "in urllib3 v3.0. To avoid this FutureWarning ensure all URLs "
                "start with 'https://' or 'http://'. Read more in this issue: "
                "https://github.com/urllib3/urllib3/issues/2920",
                category=FutureWarning,
                stacklevel=3,
            )
        if not u.host:
            raise LocationValueError("No host specified.")
        scheme = u.scheme or "http"
        if self._proxy_requires_url_absolute_form(u.scheme):
            target = u._replace(fragment=None).url  # a fragment never leaves the client
        else:
            target = u.request_uri
        result = (scheme, u.host, u.port, target)
        self._remember(url, result)
        return result

    def _remember(
        self, url: str, split: tuple[str, str, int | None, str], cheap: bool = False
    ) -> None:
        """Keep ``url``'s split: always when parse_url made it; when a ``cheap`` way did, only
        while the cache is small (what it saves is less than a crawl's churn would cost)."""
        cache = self._url_cache
        if cheap and len(cache) >= _CHEAP_CACHED:
            return
        if len(cache) >= _CACHE_SIZE:
            cache.clear()
        cache[url] = split

    def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        fields: Any = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        **urlopen_kw: Any,
    ) -> HTTPResponse:
        """Make a request (urllib3's ``RequestMethods.request``: ``fields``, ``json``, ``body``)."""
        if body is None and fields is None and json is None:
            # The common case straight to urlopen; the same result as RequestMethods.request.
            return self.urlopen(
                method.upper(),
                url,
                headers=self.headers if headers is None else headers,
                **urlopen_kw,
            )
        return typing.cast(
            HTTPResponse,
            super().request(
                method, url, body=body, fields=fields, headers=headers, json=json, **urlopen_kw
            ),
        )

    def urlopen(  # type: ignore[override]
        self, method: str, url: str, redirect: bool = True, **kw: Any
    ) -> HTTPResponse:
        """Send a request to the absolute ``url`` through the right pool; follows redirects
        across hosts (urllib3's ``PoolManager.urlopen``)."""
        scheme, host, port, target = self._split_url(url)
        conn = self.connection_from_host(host, port=port, scheme=scheme)
        kw["assert_same_host"] = False
        kw["redirect"] = False
        if "headers" not in kw:
            kw["headers"] = self.headers
        try:
            response = conn.urlopen(method, target, **kw)
        except ClosedPoolError:
            # Another thread evicted (or cleared) the pool between our lookup and the checkout:
            # nothing was sent yet, so take the origin's current pool instead.
            conn = self.connection_from_host(host, port=port, scheme=scheme)
            response = conn.urlopen(method, target, **kw)

        if not (redirect and response.status in response.REDIRECT_STATUSES):
            return response
        step = self._follow(method, url, redirect, kw, conn, response)
        if step is None:
            return response
        return self.urlopen(*step, **kw)

    def _follow(
        self,
        method: str,
        url: str,
        redirect: bool,
        kw: dict[str, Any],
        conn: HTTPConnectionPool,
        response: HTTPResponse,
    ) -> tuple[str, str] | None:
        """urllib3's redirect step after ``response`` (a redirect status) to ``method url``:
        the method and absolute URL to request next (``kw`` changed for it; a 303 makes it a
        GET), or None when ``response`` is the answer (no Location, or the redirects are used up and
        ``raise_on_redirect`` is off). Raises ``MaxRetryError`` past the limit otherwise."""
        redirect_location = response.get_redirect_location()
        if not redirect_location:
            return None
        redirect_location = urljoin(url, redirect_location)
        if response.status == 303:
            # RFC 9110 15.4.4: GET, the body lost, and with it its framing and rewind position
            method = "GET"
            kw["body"] = None
            kw["chunked"] = False
            kw["body_pos"] = None
            kw["headers"] = headers_for_method_change(kw["headers"])
        retries = kw.get("retries", response.retries)
        if not isinstance(retries, Retry):
            retries = Retry.from_int(retries, redirect=redirect)
        if retries.remove_headers_on_redirect and not conn.is_same_host(redirect_location):
            old = kw["headers"]
            new_headers = old.copy() if hasattr(old, "copy") else dict(old)
            for header in old:
                if header.lower() in retries.remove_headers_on_redirect:
                    new_headers.pop(header, None)
            kw["headers"] = new_headers
        try:
            retries = retries.increment(
                method, url, response=response, _pool=typing.cast(Any, conn)
            )
        except MaxRetryError:
            if retries.raise_on_redirect:
                response.drain_conn()
                raise
            return None
        kw["retries"] = retries
        kw["redirect"] = redirect
        self._log.info("Redirecting %s -> %s", url, redirect_location)
        response.drain_conn()
        return method, redirect_location

    def _hop_kw(self, url: str, kw: dict[str, Any]) -> dict[str, Any]:
        """What one request to ``url`` adds to its ``urlopen`` arguments (a ProxyManager: the
        proxy headers of a forwarded request)."""
        return kw

    def map(
        self,
        requests: Iterable[Any],
        *,
        concurrency: int = 64,
        per_host: int | None = None,
        delay: float = 0.0,
        rate: float | None = None,
        dial_workers: int = 4,
        deadline: float | None = None,
        light: bool = False,
        on_body: Callable[[Any, Any, bytes], Any] | None = None,
    ) -> Iterator[Result]:
        """Send many requests at once from this thread; yield a :class:`~fastpool.multi.Result`
        ``(request, response, error)`` for each as it completes (not in the given order).

        Each item is a URL (a GET), ``(method, url)`` or ``(method, url, kwargs)`` with the
        keyword arguments of :meth:`request` (``body``, ``fields``, ``json``, ``headers`` and
        ``urlopen``'s: ``timeout``, ``retries``, ``redirect``, ``preload_content`` ...). Each
        ends as :meth:`request` would end it, redirects across hosts included, with the same
        response or the same exception (yielded in ``error``, not raised).
        ``concurrency``, ``per_host``, ``delay``, ``rate``, ``dial_workers`` and ``deadline``
        are those of :meth:`fastpool.Session.map`, which documents the model; a request past
        its deadline yields :class:`fastpool.DeadlineExceeded` (a urllib3 ``TimeoutError``).

        ``light=True`` yields each response as a :class:`fastpool.LightResponse` (``status``,
        ``reason``, ``version``, ``headers``, ``data``, ``url``), made once its body was read
        and its connection handed back: less work per request than a urllib3 response. Every
        request still ends as :meth:`request` ends it (redirects, ``Retry``, decoding, errors).

        ``on_body(request, response, piece)`` is called, in this thread, with each piece of
        each response's body (decoded as ``decode_content`` says) as it arrives; the result is
        yielded once the body has ended (its ``data`` is then ``b""``). A failure within the
        body is the result's error.
        """
        if not isinstance(light, bool):
            raise TypeError(f"light must be True or False, got {light!r}")
        if light and on_body is not None:
            raise ValueError("light=True reads each body whole: on_body needs light=False")
        # the plainest hops in one call each way, while the manager's steps are fastpool's own
        # (a subclass's or a patch's must see every request)
        steps: tuple[Any, Any] = _OWN_STEPS if type(self) is PoolManager else (None, None)
        return run_map(
            ManagerDriver(
                self,
                light,
                on_body is not None,
                Lane(self, *steps, result_type=Result),
                OWN_REQUESTS,
                OWN_URLOPENS,
            ),
            requests,
            concurrency=concurrency,
            per_host=per_host,
            delay=delay,
            rate=rate,
            dial_workers=dial_workers,
            deadline=deadline,
            on_body=on_body,
        )


#: PoolManager's urlopen and connection_from_host as imported (a patch on the class is not)
_OWN_STEPS = (PoolManager.urlopen, PoolManager.connection_from_host)


class ProxyManager(PoolManager):
    """A :class:`PoolManager` that sends every request through one proxy (urllib3's
    ``ProxyManager``): absolute-form requests for ``http://`` URLs, a CONNECT tunnel for
    ``https://`` URLs.

    :param proxy_url: the proxy, ``http[s]://[user:pass@]host:port``.
    :param proxy_headers: headers for the proxy (e.g. ``Proxy-Authorization``): sent with
        each forwarded request, or once with CONNECT.
    :param proxy_ssl_context: the SSLContext for TLS to an ``https://`` proxy (default: one
        built with the pools' CA settings, verification on).
    :param use_forwarding_for_https: send ``https://`` URLs to an ``https://`` proxy in
        absolute form instead of a tunnel (the proxy sees the requests; default ``False``).
    :param proxy_assert_hostname: (and ``proxy_assert_fingerprint``) check the proxy's
        certificate against this name or pinned fingerprint instead.
    """

    def __init__(
        self,
        proxy_url: str,
        num_pools: int = 10,
        headers: Mapping[str, str] | None = None,
        proxy_headers: Mapping[str, str] | None = None,
        proxy_ssl_context: Any = None,
        use_forwarding_for_https: bool = False,
        proxy_assert_hostname: None | str | typing.Literal[False] = None,
        proxy_assert_fingerprint: str | None = None,
        **connection_pool_kw: Any,
    ) -> None:
        if isinstance(proxy_url, HTTPConnectionPool):
            proxy_url = f"{proxy_url.scheme}://{proxy_url.host}:{proxy_url.port}"
        proxy = parse_url(proxy_url)
        if proxy.scheme not in ("http", "https"):
            raise ProxySchemeUnknown(proxy.scheme)
        if proxy.port is None:
            proxy = proxy._replace(port=port_by_scheme.get(proxy.scheme, 80))
        self.proxy = proxy
        self.proxy_headers = proxy_headers or {}
        self.proxy_ssl_context = proxy_ssl_context
        self.proxy_config = ProxyConfig(
            proxy_ssl_context,
            use_forwarding_for_https,
            proxy_assert_hostname,
            proxy_assert_fingerprint,
        )
        connection_pool_kw["_proxy"] = self.proxy
        connection_pool_kw["_proxy_headers"] = self.proxy_headers
        connection_pool_kw["_proxy_config"] = self.proxy_config
        super().__init__(num_pools, headers, **connection_pool_kw)

    def connection_from_host(
        self,
        host: str | None,
        port: int | None = None,
        scheme: str | None = "http",
        pool_kwargs: dict[str, Any] | None = None,
    ) -> HTTPConnectionPool:
        """``https``: a pool per origin (tunnelled); ``http``: the proxy's own pool."""
        if scheme == "https":
            return super().connection_from_host(host, port, scheme, pool_kwargs=pool_kwargs)
        return super().connection_from_host(
            self.proxy.host, self.proxy.port, self.proxy.scheme, pool_kwargs=pool_kwargs
        )

    def _set_proxy_headers(
        self, url: str, headers: Mapping[str, str] | None = None
    ) -> Mapping[str, str]:
        headers_ = {"Accept": "*/*"}
        netloc = parse_url(url).netloc
        if netloc:
            headers_["Host"] = netloc
        if headers:
            headers_.update(headers)
        return headers_

    def urlopen(  # type: ignore[override]
        self, method: str, url: str, redirect: bool = True, **kw: Any
    ) -> HTTPResponse:
        """Same as the pool's ``urlopen``; ``url`` must be absolute."""
        return super().urlopen(method, url, redirect=redirect, **self._hop_kw(url, kw))

    def _hop_kw(self, url: str, kw: dict[str, Any]) -> dict[str, Any]:
        u = parse_url(url)
        if not connection_requires_http_tunnel(self.proxy, self.proxy_config, u.scheme):
            headers = kw.get("headers", self.headers)
            kw["headers"] = self._set_proxy_headers(url, headers)
        return kw


#: fastpool's own request and urlopen, as this module defines them: the map compares a
#: manager's with these by identity (a wrapper made with functools.wraps carries this module's
#: name, and is not fastpool's)
OWN_REQUESTS = (PoolManager.request,)
OWN_URLOPENS = (PoolManager.urlopen, ProxyManager.urlopen)


def proxy_from_url(url: str, **kw: Any) -> ProxyManager:
    """``ProxyManager(proxy_url=url, **kw)``."""
    return ProxyManager(proxy_url=url, **kw)
