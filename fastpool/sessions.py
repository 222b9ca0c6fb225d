"""fastpool.Session: a thread-safe :class:`requests.Session` that is several times faster.

Where the time of ``requests.Session.get`` goes, besides the transport: reading the environment
(``getproxies`` walks ``os.environ`` twice, several times per request; the netrc file is looked
for and parsed every time), merging settings through generic helpers, and preparing the request.
This module keeps requests' algorithms and their answers, and removes the repetition:

* the environment is read once into an :class:`~fastpool._environment.Environment` snapshot
  (per-host answers cached); :meth:`Session.refresh_environment` takes a new one;
* ``prepare_request`` takes the fast route of :mod:`fastpool._prepare` for the common shapes of
  each part, and requests' own code for every part it cannot be sure of, in requests' order;
* the cookie jar is a :class:`~fastpool.cookies.ThreadSafeCookieJar` (:mod:`fastpool.cookies`);
* ``mount``/``get_adapter`` go through the compiled :class:`~fastpool._prefix.PrefixRouter`;
* ``send`` skips the cookie and redirect machinery for responses that would not use it.

The differential tests (tests/with_dummyserver/test_session_diff.py) hold the PreparedRequest and the send
arguments to those of ``requests.Session`` for the same input and environment.

Where requests is imported: by the requests floor only, which is :mod:`fastpool.adapters` and
the Session's modules (this one, :mod:`fastpool.cookies`, :mod:`fastpool._prepare`,
:mod:`fastpool._environment`, and :mod:`fastpool._install` inside its functions). They stand in
for requests' own classes and functions, and call them for every case they do not take a fast
route on, so their answers stay requests'. The engine below them (``PoolManager`` and the
pools, connections and responses) never imports requests; :mod:`fastpool.cli`, above, may.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import timedelta
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

import requests
import requests.adapters
import requests.sessions
from requests.cookies import extract_cookies_to_jar
from requests.exceptions import ChunkedEncodingError, ContentDecodingError, InvalidSchema
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import SSLError as RequestsSSLError
from requests.hooks import default_hooks, dispatch_hook
from requests.models import (
    DEFAULT_REDIRECT_LIMIT,
    REDIRECT_STATI,
    PreparedRequest,
    Request,
    Response,
)
from requests.sessions import preferred_clock
from requests.utils import default_headers, get_auth_from_url
from urllib3.exceptions import DecodeError, ReadTimeoutError
from urllib3.exceptions import ProtocolError as U3ProtocolError
from urllib3.exceptions import SSLError as U3SSLError

from ._environment import Environment
from ._patches import is_own_method, stock_function
from ._prefix import PrefixRouter
from ._prepare import NO_HOOKS, Preparer, merge_dicts, merge_scalar
from ._session_map import SessionDriver
from ._thirdparty import basic_auth_str, requests_mock_send_lock
from .adapters import HTTPAdapter
from .cookies import _KNOWN_JARS, ThreadSafeCookieJar
from .exceptions import MSG_NO_MATCH, NoMatchError
from .multi import Result, run_map
from .response import HTTPResponse as EngineResponse

if TYPE_CHECKING:
    from requests.adapters import BaseAdapter

__all__ = (
    "DEFAULT_ADAPTER",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_LIFETIME",
    "DEFAULT_POOL_CONNECTIONS",
    "DEFAULT_POOL_MAXSIZE",
    "Session",
    # defined in fastpool.cookies; still importable from here, where it lived before
    "ThreadSafeCookieJar",
)

#: The adapter class a new Session mounts for ``https://`` and ``http://``.
DEFAULT_ADAPTER: type[requests.adapters.HTTPAdapter] = HTTPAdapter

#: Host pools an adapter keeps (an LRU): room for a crawler's working set of hosts.
DEFAULT_POOL_CONNECTIONS = 256

#: Idle connections a host pool keeps: 64 threads on one host never see "pool is full".
DEFAULT_POOL_MAXSIZE = 64

#: Seconds an idle connection may still be reused. Below the idle limits that drop connections
#: silently (NAT gateways ~350 s, nginx keepalive_timeout 75 s, AWS ALB 60 s), so a crawler
#: rarely sends into a connection the far side already forgot; Go uses 90 s, libcurl 118 s.
DEFAULT_IDLE_TIMEOUT = 45.0

#: Seconds a connection is used at most: long enough to amortise its TLS handshake over
#: thousands of requests, short enough to follow DNS changes and load balancer rebalancing.
DEFAULT_MAX_LIFETIME = 600.0


class _Router(Protocol):
    def match(self, url: str) -> Any: ...


# --- adapters: requests' OrderedDict, with a router kept in step ---------------------------------
class _ScanRouter:
    """requests' own lookup: the first prefix, in mount order, that starts the URL."""

    __slots__ = ("_entries",)

    def __init__(self, items: Iterable[tuple[str, Any]]) -> None:
        self._entries = tuple((prefix.lower(), adapter) for prefix, adapter in items)

    def match(self, url: str) -> Any:
        lowered = url.lower()
        for prefix, adapter in self._entries:
            if lowered.startswith(prefix):
                return adapter
        raise NoMatchError(MSG_NO_MATCH.format(url=url))


def _build_router(items: list[tuple[str, Any]]) -> _Router:
    router: PrefixRouter[Any] = PrefixRouter()
    try:
        for prefix, adapter in items:
            router.mount(prefix, adapter)
    except TypeError:  # a prefix that is not a str: requests fails only on lookups reaching it
        return _ScanRouter(items)
    # The router orders prefixes the way Session.mount does. A dict changed behind mount's back
    # (adapters[k] = v) can hold another order; then requests' scan is the answer.
    if [prefix for prefix, _ in router.items()] != [prefix for prefix, _ in items]:
        return _ScanRouter(items)
    return router


class _AdapterMap(OrderedDict):  # type: ignore[type-arg]
    """``Session.adapters``: the OrderedDict requests users read and write, plus its router.

    Every change goes through the map's lock and drops the router; the next lookup builds a new
    one. Lookups read the current router without a lock, so a mount during traffic is safe.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._lock = threading.RLock()
        self._router: _Router | None = None
        super().__init__(*args, **kwargs)

    def router(self) -> _Router:
        router: _Router | None = self._router
        if router is None:
            with self._lock:
                router = self._router
                if router is None:
                    router = self._router = _build_router(list(self.items()))
        return router

    def values_snapshot(self) -> list[Any]:
        with self._lock:
            return list(self.values())

    def __reduce__(self) -> Any:
        # Pickle as the plain OrderedDict requests has; the Session wraps it again.
        return (OrderedDict, (list(self.items()),))

    def __setitem__(self, key: str, value: Any) -> None:
        with self._lock:
            super().__setitem__(key, value)
            self._router = None

    def __delitem__(self, key: str) -> None:
        with self._lock:
            super().__delitem__(key)
            self._router = None

    def pop(self, *args: Any) -> Any:
        with self._lock:
            self._router = None
            return super().pop(*args)

    def popitem(self, last: bool = True) -> tuple[str, Any]:
        with self._lock:
            self._router = None
            return super().popitem(last)

    def clear(self) -> None:
        with self._lock:
            super().clear()
            self._router = None

    def update(self, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            super().update(*args, **kwargs)
            self._router = None

    def setdefault(self, key: str, default: Any = None) -> Any:
        with self._lock:
            self._router = None
            return super().setdefault(key, default)

    def move_to_end(self, key: str, last: bool = True) -> None:
        with self._lock:
            super().move_to_end(key, last)
            self._router = None

    def __ior__(self, other: Any) -> _AdapterMap:  # type: ignore[misc]  # noqa: PYI034
        self.update(other)
        return self


def _read_content(response: Response) -> None:
    """``response.content`` (requests reads the body once a response is not streamed).

    A fastpool response is read in one call instead of through ``iter_content``'s generator of
    10 KiB pieces; the errors are mapped as ``iter_content`` maps them. Anything else, or a body
    already read, goes through ``content`` itself.
    """
    raw = response.raw
    if (
        type(raw) is not EngineResponse
        or type(response) is not Response
        or response._content is not False  # private: fastpool._thirdparty
        or response._content_consumed
        or response.status_code == 0
    ):
        response.content  # noqa: B018 - reads the body, as requests does
        return
    try:
        data = raw.read(decode_content=True)
    except U3ProtocolError as e:
        raise ChunkedEncodingError(e) from e  # as iter_content maps it
    except DecodeError as e:
        raise ContentDecodingError(e) from e  # as iter_content maps it
    except ReadTimeoutError as e:
        raise RequestsConnectionError(e) from e  # as iter_content maps it
    except U3SSLError as e:
        raise RequestsSSLError(e) from e  # as iter_content maps it
    response._content = data or b""  # private: fastpool._thirdparty
    response._content_consumed = True


class Session(requests.Session):
    """A :class:`requests.Session` that many threads may share, and several times faster.

    The whole requests API is here (verbs, ``request``, ``headers``, ``auth``, ``cookies``,
    ``params``, ``proxies``, ``verify``, ``cert``, ``stream``, ``hooks``, ``trust_env``,
    ``max_redirects``, ``mount``, ``get_adapter``, ``close``, the context manager, pickling),
    and every request is prepared and sent with the settings requests would give it.

    Default adapter: ``https://`` and ``http://`` share one
    ``DEFAULT_ADAPTER(pool_connections=256, pool_maxsize=64)`` (requests mounts two, of 10 and
    10); a pool is per origin either way.
    ``pool_maxsize=64`` keeps the connections of up to 64 threads on one host, so a threaded
    crawler never sees "Connection pool is full, discarding connection" and never churns
    connections; ``pool_connections=256`` keeps the pools of 256 hosts per scheme before the
    least recently used one is closed. Idle pools cost a few kilobytes each; the adapter does
    not block (``pool_block=False``), as in requests. Pass ``pool_connections``/``pool_maxsize``
    to change them, or ``mount`` your own adapters.

    Crawler-grade defaults (each keyword-only; None turns it off, as in requests):
    ``idle_timeout=45`` s (:data:`DEFAULT_IDLE_TIMEOUT`: below the NAT, load balancer and
    server idle limits that drop connections silently), ``max_lifetime=600`` s
    (:data:`DEFAULT_MAX_LIFETIME`: follows DNS and rebalancing), and the "Connection pool is
    full" warning once per pool, then a summary every 100 discards. Off by default, as in
    requests: ``max_connections`` (a hard cap on open connections across every host and both
    schemes: one adapter serves ``https://`` and ``http://``), ``max_connections_per_host`` and
    ``pool_timeout`` (how long a request waits at a cap before ``PoolTimeout``). The bounds on a
    response head, ``max_line_bytes``, ``max_headers`` and ``max_head_bytes``, are http.client's
    (and 1 MiB in all) unless given. ``resolver``: a :class:`fastpool.resolver.Resolver` (a
    DNS cache with TTLs) for new connections; default None, as requests. Expired and stale
    connections are closed at checkout (no background thread), and an idempotent request that
    meets a connection the server closed is sent again once (Go's rules). See
    :meth:`pool_stats` and :meth:`add_trace_hook`.

    The environment: with ``trust_env`` (the default) the proxy variables (``getproxies``,
    ``no_proxy``), the netrc file and ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` are read once,
    on the first request, and reused. Call :meth:`refresh_environment` after changing
    ``os.environ`` or the netrc file while the Session lives.

    Thread safety (a contract): one Session may be shared by many threads, each calling the
    verbs, ``request``, ``send``, ``mount``, ``get_adapter`` and ``close`` at any time.

    * cookies: the Session's jar is a :class:`~fastpool.cookies.ThreadSafeCookieJar`; cookies set
      by responses on any thread all reach it. Assign another jar to ``cookies`` and its safety
      is its own.
    * mounts: ``mount`` and changes to ``adapters`` are serialised; a lookup sees either the old
      or the new set of mounts, never a half-changed one. Requests already sent keep their
      adapter.
    * ``close`` during traffic closes the adapters' idle connections; requests in flight finish
      or fail with a clear connection error, and later requests open new connections.
    * the settings (``headers``, ``params``, ``auth``, ``proxies``, ``verify`` ...) are read by
      every request: change them before sharing the Session, or replace them whole (assignment
      is atomic), rather than mutating them while other threads send.
    """

    def __init__(
        self,
        *,
        pool_connections: int = DEFAULT_POOL_CONNECTIONS,
        pool_maxsize: int = DEFAULT_POOL_MAXSIZE,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        max_lifetime: float | None = DEFAULT_MAX_LIFETIME,
        max_connections: int | None = None,
        max_connections_per_host: int | None = None,
        pool_timeout: float | None = None,
        max_line_bytes: int | None = None,
        max_headers: int | None = None,
        max_head_bytes: int | None = None,
        resolver: Any = None,
    ) -> None:
        self._init_state()
        # requests.Session.__init__'s settings (a test keeps them in step), without building
        # the two stock adapters it mounts only for us to replace them.
        self.headers = default_headers()
        self.auth = None
        self.proxies = {}
        self.hooks = default_hooks()
        self.params = {}
        self.stream = False
        self.verify = True
        self.cert = None
        self.max_redirects = DEFAULT_REDIRECT_LIMIT
        self.trust_env = True
        self.cookies = ThreadSafeCookieJar()
        self.adapters = _AdapterMap()
        kw: dict[str, Any] = {"pool_connections": pool_connections, "pool_maxsize": pool_maxsize}
        if issubclass(DEFAULT_ADAPTER, HTTPAdapter):
            kw.update(
                idle_timeout=idle_timeout,
                max_lifetime=max_lifetime,
                max_connections=max_connections,
                max_connections_per_host=max_connections_per_host,
                pool_timeout=pool_timeout,
                pool_full_warning="first",
                max_line_bytes=max_line_bytes,
                max_headers=max_headers,
                max_head_bytes=max_head_bytes,
                resolver=resolver,
            )
            # One adapter serves both schemes, so max_connections caps the whole Session.
            adapter = DEFAULT_ADAPTER(**kw)
            self.mount("https://", adapter)
            self.mount("http://", adapter)
        else:
            self.mount("https://", DEFAULT_ADAPTER(**kw))
            self.mount("http://", DEFAULT_ADAPTER(**kw))

    def _init_state(self) -> None:
        self._environment: Environment | None = None
        self._environment_lock = threading.Lock()
        # the fast preparation route, with this Session's caches of checked headers
        self._preparer = Preparer()

    # --- adapters ---------------------------------------------------------------------------
    @property
    def adapters(self) -> _AdapterMap:
        """The mounted adapters, an OrderedDict in lookup order (longest prefix first)."""
        return self._adapters

    @adapters.setter
    def adapters(self, value: Mapping[str, BaseAdapter]) -> None:
        self._adapters = value if type(value) is _AdapterMap else _AdapterMap(value)

    def mount(self, prefix: str, adapter: BaseAdapter) -> None:
        """Register ``adapter`` for URLs starting with ``prefix`` (case-insensitive).

        Longer prefixes are tried first, as in requests. Safe while other threads send.
        """
        adapters = self.adapters
        with adapters._lock:
            adapters[prefix] = adapter
            for key in [k for k in adapters if len(k) < len(prefix)]:
                adapters[key] = adapters.pop(key)
            adapters.router()

    def get_adapter(self, url: str) -> BaseAdapter:
        """Return the adapter for ``url``; raise ``requests.exceptions.InvalidSchema`` if none."""
        try:
            return self.adapters.router().match(url)  # type: ignore[no-any-return]
        except NoMatchError:
            raise InvalidSchema(MSG_NO_MATCH.format(url=url)) from None

    def _distinct_adapters(self) -> list[Any]:
        """The mounted adapters, each once (one may serve several prefixes), in mount order."""
        seen: dict[int, Any] = {}
        for adapter in self.adapters.values_snapshot():
            seen.setdefault(id(adapter), adapter)
        return list(seen.values())

    def _fastpool_adapters(self) -> list[HTTPAdapter]:
        return [a for a in self._distinct_adapters() if isinstance(a, HTTPAdapter)]

    def pool_stats(self) -> Any:
        """A :class:`fastpool.stats.PoolStats` over the distinct mounted fastpool adapters."""
        from .stats import merge

        return merge([adapter.pool_stats() for adapter in self._fastpool_adapters()])

    def add_trace_hook(self, event: str, hook: Any) -> None:
        """Call ``hook(TraceEvent)`` on ``event`` in every mounted fastpool adapter (mounted
        now; mount later adapters with their own hooks). See :mod:`fastpool.trace`."""
        for adapter in self._fastpool_adapters():
            adapter.add_trace_hook(event, hook)

    def close(self) -> None:
        """Close every mounted adapter (their pools and idle connections), each once: the
        default adapter serves both schemes (requests closes its two default adapters once
        each)."""
        for adapter in self._distinct_adapters():
            adapter.close()

    # --- environment ------------------------------------------------------------------------
    def environment(self) -> Environment:
        """The environment snapshot in use, read now if this is the first use."""
        env = self._environment
        if env is None:
            with self._environment_lock:
                env = self._environment
                if env is None:
                    env = self._environment = Environment()
        return env

    def refresh_environment(self) -> None:
        """Read the environment again: proxies, ``no_proxy``, netrc, CA-bundle variables.

        Call it after changing ``os.environ`` or the netrc file while this Session is in use;
        requests already being prepared keep the snapshot they started with.
        """
        self._environment = Environment()

    # --- preparation --------------------------------------------------------------------------
    def request(
        self,
        method: str,
        url: Any,
        params: Any = None,
        data: Any = None,
        headers: Any = None,
        cookies: Any = None,
        files: Any = None,
        auth: Any = None,
        timeout: Any = None,
        allow_redirects: bool = True,
        proxies: Any = None,
        hooks: Any = None,
        stream: Any = None,
        verify: Any = None,
        cert: Any = None,
        json: Any = None,
    ) -> Response:
        """Build, prepare and send a request: :meth:`requests.Session.request`, with the same
        arguments, steps and answers.

        While :meth:`prepare_request`, :meth:`merge_environment_settings` and :meth:`send` are
        fastpool's own, the intermediate :class:`requests.Request` is not built. A subclass
        overriding any of them, a ``prepare_request`` set on the instance, and a patched or
        wrapped ``requests.Session.request`` (``mock.patch("requests.Session.request")``) get
        requests' own sequence of calls.
        """
        cls = type(self)
        prepare = self.prepare_request
        owner: object = getattr(prepare, "__self__", prepare)  # (object: mypy narrows no self)
        if (
            _RequestsSession.request is not _STOCK_REQUEST  # patched or wrapped: honour that
            # replaced on the class or on this instance (self.__dict__ is not read: that would
            # turn the instance's attribute storage into a dict, slower on every access), or
            # another Session's set on this one (is_own_method's test written out)
            or getattr(prepare, "__func__", None) is not _OWN_STEPS[0]
            or owner is not self
            or cls.merge_environment_settings is not _OWN_STEPS[1]
            or cls.send is not _OWN_STEPS[2]
        ):
            return super().request(
                method, url, params=params, data=data, headers=headers, cookies=cookies,
                files=files, auth=auth, timeout=timeout, allow_redirects=allow_redirects,
                proxies=proxies, hooks=hooks, stream=stream, verify=verify, cert=cert, json=json,
            )  # fmt: skip
        if isinstance(url, bytes):
            url = url.decode("utf-8")
        # What Request(...) would hold, as requests.Session.request builds it.
        if hooks is None:
            request_hooks = default_hooks()
        else:
            request_hooks = Request(hooks=hooks).hooks  # register_hook's checks and errors
        prep = self._preparer.prepare(
            self,
            method.upper(),
            url,
            {} if headers is None else headers,
            [] if files is None else files,
            data or {},
            params or {},
            auth,
            cookies,
            request_hooks,
            json,
        )
        settings = self.merge_environment_settings(
            prep.url,  # type: ignore[arg-type]
            proxies or {},
            stream,
            verify,
            cert,
        )
        return self.send(prep, timeout=timeout, allow_redirects=allow_redirects, **settings)

    def _prepare_get(self, url: str) -> PreparedRequest:
        """``prepare_request(Request("GET", url))``, without the Request when
        :meth:`prepare_request` is fastpool's own (``Session.map``'s URLs)."""
        prepare = self.prepare_request
        # (is_own_method's test written out: a frame less each URL)
        if (
            getattr(prepare, "__func__", None) is not _OWN_STEPS[0]
            or getattr(prepare, "__self__", prepare) is not self
        ):
            return prepare(Request("GET", url))
        # What Request("GET", url) holds, as request() passes it on (its hooks: the empty
        # registry default_hooks() makes, which prepare only reads)
        prepared: PreparedRequest = self._preparer.prepare(
            self, "GET", url, {}, [], [], {}, None, None, NO_HOOKS, None
        )
        return prepared

    def prepare_request(self, request: Request) -> PreparedRequest:
        """Build the :class:`~requests.PreparedRequest` requests would build for ``request``."""
        return self._preparer.prepare(
            self,
            request.method,
            request.url,
            request.headers,
            request.files,
            request.data,
            request.params,
            request.auth,
            request.cookies,
            request.hooks,
            request.json,
        )

    # --- environment settings -----------------------------------------------------------------
    def merge_environment_settings(
        self,
        url: str,
        proxies: dict[str, str] | None,
        stream: Any,
        verify: Any,
        cert: Any,
    ) -> dict[str, Any]:
        """requests' ``merge_environment_settings``, reading the environment snapshot."""
        if self.trust_env:
            env = self.environment()
            no_proxy = proxies.get("no_proxy") if proxies is not None else None
            env_proxies = env.environ_proxies(url, no_proxy)
            if proxies is not None:
                for key, value in env_proxies.items():
                    proxies.setdefault(key, value)
            if verify is True or verify is None:
                verify = env.ca_bundle or verify
        return {
            "proxies": merge_dicts(proxies, self.proxies),
            "stream": merge_scalar(stream, self.stream),
            "verify": merge_scalar(verify, self.verify),
            "cert": merge_scalar(cert, self.cert),
        }

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:
        """Send a PreparedRequest: requests' ``send``, step for step.

        Proxies come from the environment snapshot; a response without ``Set-Cookie`` skips
        the cookie machinery (it would store nothing); a response that is no redirect skips
        the redirect generator (it would yield nothing).

        A tool that patched or wrapped ``requests.Session.send`` (OpenTelemetry's requests
        instrumentation, requests-mock's ``Mocker``) gets the request, as it would from
        ``requests.Session``: requests' own ``send`` then runs, through this Session's adapters.
        """
        if _RequestsSession.send is not _STOCK_SEND:
            return self._send_through_patch(request, kwargs)
        return self._send_hop(request, kwargs, None)

    def _send_hop(
        self, request: PreparedRequest, kwargs: dict[str, Any], exchange: Any
    ) -> Response:
        """:meth:`send`'s steps; with an ``exchange`` the multiplexed loop has sent the request
        and read its answer already, and the adapter takes it from there (fastpool.multi)."""
        kwargs.setdefault("stream", self.stream)
        kwargs.setdefault("verify", self.verify)
        kwargs.setdefault("cert", self.cert)
        if "proxies" not in kwargs:
            kwargs["proxies"] = self._resolve_proxies(request.url, self.proxies)  # type: ignore[arg-type]
        if isinstance(request, Request):
            raise ValueError("You can only send PreparedRequests.")  # noqa: TRY004 - as requests

        allow_redirects = kwargs.pop("allow_redirects", True)
        stream = kwargs.get("stream")
        hooks = request.hooks
        if exchange is None:
            adapter = self.get_adapter(url=request.url)  # type: ignore[arg-type]
            start = preferred_clock()
            r = adapter.send(request, **kwargs)
            r.elapsed = timedelta(seconds=preferred_clock() - start)
        else:
            # the adapter the loop began with; elapsed counts from when it took the request to
            # its answer's head, on the loop's clock (requests' preferred_clock is time.time()
            # off Windows)
            r = exchange.caller[0]._send_exchanged(request, exchange)
            r.elapsed = timedelta(seconds=(exchange.head_at or perf_counter()) - exchange.started)
        if hooks and hooks.get("response"):  # dispatch_hook does nothing otherwise
            r = dispatch_hook("response", hooks, r, **kwargs)

        if r.history:  # hooks may have made history: keep its cookies too
            for resp in r.history:
                self._extract_cookies(resp.request, resp.raw)
        self._extract_cookies(request, r.raw)

        history: list[Response] = []
        if allow_redirects and (
            type(self).resolve_redirects is not _RequestsSession.resolve_redirects
            or self._redirect_target(r) is not None
        ):
            history = list(self.resolve_redirects(r, request, **kwargs))
        if history:
            history.insert(0, r)
            r = history.pop()
            r.history = history
        if not allow_redirects and (
            # requests' resolve_redirects parses the URL before it looks at the status; a
            # response that is no redirect has no next request (Response.next stays None)
            type(self).resolve_redirects is not _RequestsSession.resolve_redirects
            or self._redirect_target(r) is not None
        ):
            try:
                # private: fastpool._thirdparty
                r._next = next(self.resolve_redirects(r, request, yield_requests=True, **kwargs))  # type: ignore[assignment]
            except StopIteration:
                pass
        if not stream:
            _read_content(r)
        return r

    def map(
        self,
        requests: Iterable[Any],
        *,
        concurrency: int = 64,
        per_host: int | None = None,
        delay: float = 0.0,
        rate: float | None = None,
        timeout: Any = None,
        stream: bool | None = None,
        allow_redirects: bool = True,
        dial_workers: int = 4,
        deadline: float | None = None,
        on_body: Callable[[Any, Any, bytes], Any] | None = None,
    ) -> Iterator[Result]:
        """Send many requests at once from this thread; yield a :class:`~fastpool.multi.Result`
        ``(request, response, error)`` for each as it completes (not in the given order).

        ``requests``: URLs (GET), :class:`requests.Request` or :class:`requests.PreparedRequest`
        objects, in any iterable (read lazily, a bounded number ahead). Each is prepared and
        sent as :meth:`request` would (the Session's headers, auth, cookies, proxies, hooks,
        ``verify``/``cert`` and the environment), follows redirects as :meth:`send` does, and
        ends with the same ``Response`` or the same exception, which is yielded in ``error``
        rather than raised.

        :param concurrency: requests in flight at most.
        :param per_host: requests in flight per host (its name: ports and schemes share it)
            at most (None: no limit but ``concurrency``). Above the adapter's ``pool_maxsize``
            connections are churned.
        :param delay: politeness: seconds at least between the starts of two requests to one
            host.
        :param rate: requests started per second at most, over all hosts (None: no limit).
        :param timeout: as for :meth:`request` (a float, ``(connect, read)`` or a urllib3
            ``Timeout``, whose ``total`` bounds each read with what the connect left of it, as
            urllib3 takes it).
        :param stream: as for :meth:`request`: the body is read later, by the caller.
        :param allow_redirects: as for :meth:`request`.
        :param dial_workers: threads that open new connections (DNS, TCP, TLS) while the loop
            carries on; everything else runs in this thread.
        :param deadline: seconds a request may take at most, from its start to its result:
            its hops, redirects, retries and their backoffs, and its body unless ``stream``
            (None: no deadline, only the timeouts). A request still going then is cancelled
            and yields :class:`fastpool.DeadlineExceeded` (a ``requests.exceptions.Timeout``).
        :param on_body: ``on_body(request, response, piece)`` is called, in this thread, with
            each piece of each response's body (decoded, as ``iter_content`` gives it) as it
            arrives, while the other requests go on; the result is yielded once the body has
            ended, its content consumed. The requests stream (``stream`` is taken as True);
            a failure within a body is the result's error, as ``iter_content`` raises it.

        Leaving the loop early (``break``, an exception) or closing the iterator cancels what
        is in flight: their connections are closed and every pool slot is given back. See the
        concurrency guide for the model and when to prefer threads.
        """
        return run_map(
            SessionDriver(self, timeout, True if on_body is not None else stream, allow_redirects),
            requests,
            concurrency=concurrency,
            per_host=per_host,
            delay=delay,
            rate=rate,
            dial_workers=dial_workers,
            deadline=deadline,
            on_body=on_body,
        )

    def _map_entry(self, given: Any) -> str | None:
        """The entry point ``map`` must call whole for the item ``given``, where a tool or a
        subclass replaced it (one request would have gone through it): ``"get"`` for a URL
        when ``get`` is not requests' own, ``"request"`` when ``request`` is not fastpool's
        own or requests' ``Session.request`` is patched; with a replaced ``resolve_redirects``
        (which only ``send`` calls), ``"request"``, or ``"send"`` for a PreparedRequest; None:
        none of these (the map sends the item hop by hop)."""
        # (is_own_method's test written out: a frame less each item)
        # a replaced resolve_redirects must follow the redirects: send() calls it
        method: Any = self.resolve_redirects
        redirects = (
            getattr(method, "__func__", None) is not _STOCK_REDIRECTS
            or getattr(method, "__self__", method) is not self
        )
        if isinstance(given, PreparedRequest):
            return "send" if redirects else None
        if isinstance(given, str):
            method = self.get
            if (
                getattr(method, "__func__", None) is not _STOCK_GET
                or getattr(method, "__self__", method) is not self
            ):
                return "get"
        method = self.request
        if (
            redirects
            or _RequestsSession.request is not _STOCK_REQUEST
            or getattr(method, "__func__", None) is not _OWN_REQUEST
            or getattr(method, "__self__", method) is not self
        ):
            return "request"
        return None

    def _loop_begin(
        self,
        request: PreparedRequest,
        kwargs: dict[str, Any],
        wait: bool = False,
        limit: float | None = None,
        loop: Any = None,
    ) -> Any:
        """Hand ``request`` to the multiplexed loop: an Exchange, None (its pool has no free
        connection now), or False where the loop cannot take it without skipping a step a tool
        or a subclass put on the way (then :meth:`send` runs it). ``wait``: wait for a free
        connection as :meth:`send` would (at most ``limit`` seconds when given). ``loop``: the
        map's, asked whether an idle connection is alive."""
        cls = type(self)
        send = self.send
        if (
            _RequestsSession.send is not _STOCK_SEND
            # overridden, or patched on this Session (vars() is not read: see request;
            # is_own_method's test written out: a frame less each hop)
            or getattr(send, "__func__", None) is not _OWN_STEPS[2]
            or getattr(send, "__self__", send) is not self
            or cls._send_hop is not Session._send_hop
        ):
            return False
        adapter = self.get_adapter(url=request.url)
        if not isinstance(adapter, HTTPAdapter):
            return False
        return adapter._loop_begin(
            request,
            kwargs.get("stream", self.stream),
            kwargs.get("timeout"),
            kwargs.get("verify", self.verify),
            kwargs.get("cert", self.cert),
            kwargs.get("proxies"),
            wait,
            limit,
            loop,
        )

    def _send_through_patch(self, request: PreparedRequest, kwargs: dict[str, Any]) -> Response:
        patched: Any = _RequestsSession.send
        try:
            return patched(self, request, **kwargs)  # type: ignore[no-any-return]
        finally:
            self._drop_restored_get_adapter()

    def _drop_restored_get_adapter(self) -> None:
        # requests-mock's Mocker sets get_adapter on the instance for each request, and then
        # sets the one it saw on requests.Session (requests' own, bound to this Session): that
        # one would stay, and replace the router with requests' scan. Dropped, under the lock
        # Mocker holds while its own is set.
        # (Looked for through the attribute first: reading __dict__ makes attribute storage
        # slower, see request.)
        if not is_own_method(self.get_adapter, self, _RequestsSession.get_adapter):
            return
        lock = requests_mock_send_lock()
        if lock is None:
            return
        with lock:
            left = self.__dict__.get("get_adapter")
            if (
                getattr(left, "__self__", left) is self
                and getattr(left, "__func__", None) is _RequestsSession.get_adapter
            ):
                del self.__dict__["get_adapter"]

    def _redirect_target(self, r: Response) -> str | None:
        # get_redirect_target, which first asks r.is_redirect: "location" in r.headers (a
        # KeyError raised and caught when absent) and the status. The status alone settles most.
        if (
            type(r) is Response
            and r.status_code not in REDIRECT_STATI
            and type(self).get_redirect_target is _RequestsSession.get_redirect_target
        ):
            return None
        return self.get_redirect_target(r)

    def _extract_cookies(self, request: PreparedRequest, raw: Any) -> None:
        # extract_cookies_to_jar(self.cookies, request, raw), minus the work for a response
        # without Set-Cookie on a jar we know (it would only stamp the jar's clock).
        jar = self.cookies
        if type(raw) is EngineResponse and type(jar) in _KNOWN_JARS:
            if not raw._sets_cookies():
                return
            extract_cookies_to_jar(jar, request, raw)
            return
        original = getattr(raw, "_original_response", None)  # private: fastpool._thirdparty
        if not original:
            return
        if type(jar) in _KNOWN_JARS:
            msg = original.msg
            if not msg.get_all("Set-Cookie") and not msg.get_all("Set-Cookie2"):
                return
        extract_cookies_to_jar(jar, request, raw)

    def _resolve_proxies(self, url: str, proxies: dict[str, str] | None) -> dict[str, str]:
        # requests.utils.resolve_proxies(request, proxies, self.trust_env) on the snapshot
        if self.trust_env:
            return self.environment().resolve_proxies(url, proxies)
        return (proxies if proxies is not None else {}).copy()

    def rebuild_proxies(
        self, prepared_request: PreparedRequest, proxies: dict[str, str] | None
    ) -> dict[str, str]:
        """requests' ``rebuild_proxies`` (on redirects), reading the environment snapshot."""
        headers = prepared_request.headers
        url: str = prepared_request.url  # type: ignore[assignment]
        new_proxies = self._resolve_proxies(url, proxies)
        scheme = urlparse(url).scheme

        if "Proxy-Authorization" in headers:
            del headers["Proxy-Authorization"]
        try:
            username, password = get_auth_from_url(new_proxies[scheme])
        except KeyError:
            username, password = None, None
        # as in requests: never on a TLS tunnel, where the header could leak
        if not scheme.startswith("https") and username and password:
            headers["Proxy-Authorization"] = basic_auth_str(username, password)
        return new_proxies

    def rebuild_auth(self, prepared_request: PreparedRequest, response: Response) -> None:
        """requests' ``rebuild_auth`` (on redirects), reading the netrc file once."""
        headers = prepared_request.headers
        url: str = prepared_request.url  # type: ignore[assignment]
        original_url: str = response.request.url  # type: ignore[assignment]
        if "Authorization" in headers and self.should_strip_auth(original_url, url):
            del headers["Authorization"]
        new_auth = self.environment().netrc_auth(url) if self.trust_env else None
        if new_auth is not None:
            prepared_request.prepare_auth(new_auth)

    # --- pickling -----------------------------------------------------------------------------
    def __setstate__(self, state: dict[str, Any]) -> None:
        self._init_state()
        super().__setstate__(state)


# What Session.request checks to take its direct route (see there): the functions as defined,
# so a mock.patch.object of one of them on the class is noticed too. requests' own request,
# found through the __wrapped__ of a wrapper set before this import (functools.wraps), so
# such a wrapper is noticed as well; an unknown replacement is always called.
# requests' class itself, not whatever ``requests.Session`` names later: a program may set
# ``requests.Session = fastpool.Session`` to speed up the libraries it uses.
_RequestsSession: type[requests.Session] = Session.__bases__[0]
_STOCK_REQUEST = stock_function(_RequestsSession.request, requests.sessions)
# requests' own Session.send: while requests.Session.send is this function, nothing patched it.
_STOCK_SEND = stock_function(_RequestsSession.send, requests.sessions)
_OWN_STEPS = (Session.prepare_request, Session.merge_environment_settings, Session.send)
# requests' own Session.get, and fastpool's own Session.request: map calls the ones a tool or
# a subclass put in their place (see Session._map_entry)
_STOCK_GET = stock_function(_RequestsSession.get, requests.sessions)
_STOCK_REDIRECTS = stock_function(_RequestsSession.resolve_redirects, requests.sessions)
_OWN_REQUEST = Session.request
