"""fastpool.Session: a thread-safe :class:`requests.Session` that is several times faster.

Where the time of ``requests.Session.get`` goes, besides the transport: reading the environment
(``getproxies`` walks ``os.environ`` twice, several times per request; the netrc file is looked
for and parsed every time), merging settings through generic helpers, and preparing the request.
This module keeps requests' algorithms and their answers, and removes the repetition:

* the environment is read once into an :class:`~fastpool._environment.Environment` snapshot
  (per-host answers cached); :meth:`Session.refresh_environment` takes a new one;
* ``prepare_request`` takes a fast route for the common shapes of each part (plain http(s) URLs,
  dict headers and params, no body, an empty cookie jar) and calls requests' own code for
  every part it cannot be sure of, in requests' order;
* ``mount``/``get_adapter`` go through the compiled :class:`~fastpool._prefix.PrefixRouter`.

The differential tests (tests/test_session_diff.py) hold the PreparedRequest and the send
arguments to those of ``requests.Session`` for the same input and environment.
"""

from __future__ import annotations

import functools
import http.cookiejar
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import timedelta
from http.cookiejar import CookieJar
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

import requests
import requests.adapters
import requests.sessions
from requests.auth import _basic_auth_str
from requests.cookies import (
    MockRequest,
    RequestsCookieJar,
    cookiejar_from_dict,
    extract_cookies_to_jar,
    get_cookie_header,
    merge_cookies,
)
from requests.exceptions import ChunkedEncodingError, ContentDecodingError, InvalidSchema
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import SSLError as RequestsSSLError
from requests.hooks import default_hooks, dispatch_hook
from requests.models import (
    DEFAULT_REDIRECT_LIMIT,
    REDIRECT_STATI,
    PreparedRequest,
    Request,
    RequestEncodingMixin,
    Response,
)
from requests.sessions import merge_hooks, merge_setting, preferred_clock
from requests.structures import CaseInsensitiveDict
from requests.utils import check_header_validity, default_headers, get_auth_from_url
from urllib3.exceptions import DecodeError, ReadTimeoutError
from urllib3.exceptions import ProtocolError as U3ProtocolError
from urllib3.exceptions import SSLError as U3SSLError

from ._environment import Environment
from ._prefix import PrefixRouter
from .adapters import HTTPAdapter, stock_function
from .exceptions import MSG_NO_MATCH, NoMatchError
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


# --- thread-safe cookies -------------------------------------------------------------------------
class ThreadSafeCookieJar(RequestsCookieJar):
    """A :class:`~requests.cookies.RequestsCookieJar` that many threads may use at once.

    ``http.cookiejar`` locks its writes (``set_cookie``, ``extract_cookies``, ``clear``) and
    ``add_cookie_header``, but not iteration, which every ``RequestsCookieJar`` read and every
    jar merge uses; a write during a merge raises "dictionary changed size during iteration".
    Here iteration walks a snapshot taken under the jar's own lock. Pickles like its base.
    """

    def __iter__(self) -> Iterator[Any]:
        with self._cookies_lock:
            return iter(list(CookieJar.__iter__(self)))

    def copy(self) -> ThreadSafeCookieJar:
        """Return a copy of this jar (also a ``ThreadSafeCookieJar``)."""
        new_jar = ThreadSafeCookieJar()
        new_jar.set_policy(self.get_policy())
        new_jar.update(self)
        return new_jar

    def __getstate__(self) -> dict[str, Any]:
        with self._cookies_lock:
            state = self.__dict__.copy()
            state["_cookies"] = {
                domain: {path: dict(names) for path, names in paths.items()}
                for domain, paths in self._cookies.items()  # type: ignore[attr-defined]
            }
        state.pop("_cookies_lock")
        return state


_KNOWN_JARS = (ThreadSafeCookieJar, RequestsCookieJar)

# http.cookiejar's own helpers (not in typeshed): the iteration order and request host it uses
_deepvalues = http.cookiejar.deepvalues  # type: ignore[attr-defined]
# deepvalues walks a jar in insertion order (Python >= 3.10) or sorted by key (older ones)
_jar_keys: Callable[[dict[str, Any]], Iterable[str]] = (
    sorted if list(_deepvalues({"b": {"x": 1}, "a": {"y": 2}})) == [2, 1] else list
)
_eff_request_host = http.cookiejar.eff_request_host  # type: ignore[attr-defined]


def _jar_is_empty(jar: object) -> bool:
    # Only for the jars we know; anything else takes requests' merge.
    return type(jar) in _KNOWN_JARS and not jar._cookies  # type: ignore[attr-defined]


def _copy_jar(jar: object) -> RequestsCookieJar | None:
    """``merge_cookies(RequestsCookieJar(), jar)`` for a jar we know, without copying each cookie.

    requests copies every cookie (``copy.copy`` and ``set_cookie``) on every request; the new
    jar here holds the same cookie objects (nothing changes a stored cookie), inserted in the
    order requests' copy inserts them (http.cookiejar's iteration order, which sets the order of
    the Cookie header). None: use requests' merge, for a jar we do not know or for a quoted
    value that requests' ``set_cookie`` would rewrite.
    """
    if type(jar) not in _KNOWN_JARS:
        return None
    copied: dict[str, dict[str, dict[str, Any]]] = {}
    keys = _jar_keys
    with jar._cookies_lock:  # type: ignore[attr-defined]
        source = jar._cookies  # type: ignore[attr-defined]
        for domain in keys(source):  # http.cookiejar.deepvalues, as three plain loops
            paths = source[domain]
            for path in keys(paths):
                names = paths[path]
                for name in keys(names):
                    cookie = names[name]
                    value = cookie.value
                    if type(value) is str and value[:1] == '"' and '\\"' in value:
                        return None
                    copied.setdefault(cookie.domain, {}).setdefault(cookie.path, {})[
                        cookie.name
                    ] = cookie
    new_jar = RequestsCookieJar()
    new_jar._cookies = copied  # type: ignore[attr-defined]
    return new_jar


def _clear_expired_cookies(jar: RequestsCookieJar) -> None:
    """``jar.clear_expired_cookies()`` for a jar only this thread holds, without deepvalues."""
    now = time.time()
    for paths in jar._cookies.values():  # type: ignore[attr-defined]
        for names in paths.values():
            for name in [name for name, cookie in names.items() if cookie.is_expired(now)]:
                del names[name]


def _prepare_cookies(p: PreparedRequest, jar: RequestsCookieJar) -> None:
    """``p.prepare_cookies(jar)`` for a jar built here (so with the default cookie policy).

    http.cookiejar asks the policy about every domain in the jar, re-reading the request's host
    each time; a crawler's jar holds thousands. The policy's answer is a suffix test, made here
    once per domain; the jar of the domains that pass gives the same Cookie header.
    """
    p._cookies = jar
    req_host, erhn = _eff_request_host(MockRequest(p))
    if not req_host.startswith("."):
        req_host = "." + req_host
    if not erhn.startswith("."):
        erhn = "." + erhn
    near = RequestsCookieJar()
    near._cookies = {  # type: ignore[attr-defined]
        domain: paths
        for domain, paths in jar._cookies.items()  # type: ignore[attr-defined]
        # DefaultCookiePolicy.domain_return_ok, with no blocked or allowed domains
        if req_host.endswith(dotted := domain if not domain or domain[0] == "." else "." + domain)
        or erhn.endswith(dotted)
    }
    header = get_cookie_header(near, p)  # clears the expired cookies of those domains
    _clear_expired_cookies(jar)  # and of the others, as add_cookie_header on jar would
    jar._now = jar._policy._now = near._now  # type: ignore[attr-defined]
    if header is not None:
        p.headers["Cookie"] = header


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


# --- the fast route for URLs ---------------------------------------------------------------------
# A plain http(s) URL that requests' prepare_url returns unchanged: lower-case scheme and host, a
# port without leading zeros, no userinfo, fragment or percent sign, a path without dot segments
# and with only the characters both urllib3 and requote_uri leave alone. Anything else goes to
# requests' prepare_url.
_PATH_CHARS = r"A-Za-z0-9\-._~!$&'()*+,;=:@/"
_FAST_URL = re.compile(
    r"(https?)://([a-z0-9\-][a-z0-9.\-]*)(?::([1-9][0-9]{0,4}))?"
    rf"(/[{_PATH_CHARS}]*)?(?:\?([{_PATH_CHARS}?]+))?\Z"
)


@functools.lru_cache(maxsize=1024)  # a pure function of its arguments
def _fast_url(url: str, enc_params: str) -> str | None:
    """The URL prepare_url would make of a plain ``url`` and encoded params, or None (not
    plain: requests' prepare_url decides)."""
    match = _FAST_URL.match(url)
    if match is None:
        return None
    scheme, host, port, path, query = match.groups()
    if path is None:
        path = "/"
    elif "/." in path:  # maybe a dot segment, which urllib3 removes
        return None
    if port is None:
        origin = f"{scheme}://{host}"
    elif int(port) > 65535:
        return None
    else:
        origin = f"{scheme}://{host}:{port}"
    if enc_params:
        query = f"{query}&{enc_params}" if query else enc_params
    if query:
        return f"{origin}{path}?{query}"
    return f"{origin}{path}"


# urlencode's output (what _encode_params returns for a dict) that requote_uri leaves unchanged.
_PLAIN_PARAMS = re.compile(r"[A-Za-z0-9_.\-~%+=&]*\Z")

_EMPTY_BODY_TYPES = (type(None), dict, list, tuple, str, bytes)
_HEADER_CACHE_SIZE = 1024
_SESSION_HEADERS_CACHE_SIZE = 16
_NO_HOOKS: dict[str, list[Any]] = {
    "response": []
}  # merge_hooks of no hooks: prepare_hooks would register nothing
_NO_BODY_METHODS = ("GET", "HEAD")


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
        or response._content is not False
        or response._content_consumed
        or response.status_code == 0
    ):
        response.content  # noqa: B018 - reads the body, as requests does
        return
    try:
        data = raw.read(decode_content=True)
    except U3ProtocolError as e:
        raise ChunkedEncodingError(e)  # as iter_content maps it
    except DecodeError as e:
        raise ContentDecodingError(e)  # as iter_content maps it
    except ReadTimeoutError as e:
        raise RequestsConnectionError(e)  # as iter_content maps it
    except U3SSLError as e:
        raise RequestsSSLError(e)  # as iter_content maps it
    response._content = data or b""
    response._content_consumed = True


def _merge_scalar(request_setting: Any, session_setting: Any) -> Any:
    """``merge_setting`` for values that are not both mappings, without its generic helpers."""
    if session_setting is None:
        return request_setting
    if request_setting is None:
        return session_setting
    if isinstance(request_setting, Mapping) and isinstance(session_setting, Mapping):
        return merge_setting(request_setting, session_setting)
    return request_setting


def _merge_dicts(request_setting: Any, session_setting: Any) -> Any:
    """``merge_setting`` (OrderedDict result) with a fast route for two plain dicts."""
    if type(request_setting) is dict and type(session_setting) is dict:
        if not request_setting and not session_setting:
            return OrderedDict()
        merged: OrderedDict[Any, Any] = OrderedDict(session_setting)
        merged.update(request_setting)
        for key in [k for k, v in merged.items() if v is None]:
            del merged[key]
        return merged
    return merge_setting(request_setting, session_setting)


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
    (and 1 MiB in all) unless given. Expired and stale
    connections are closed at checkout (no background thread), and an idempotent request that
    meets a connection the server closed is sent again once (Go's rules). See
    :meth:`pool_stats` and :meth:`add_trace_hook`.

    The environment: with ``trust_env`` (the default) the proxy variables (``getproxies``,
    ``no_proxy``), the netrc file and ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` are read once,
    on the first request, and reused. Call :meth:`refresh_environment` after changing
    ``os.environ`` or the netrc file while the Session lives.

    Thread safety (a contract): one Session may be shared by many threads, each calling the
    verbs, ``request``, ``send``, ``mount``, ``get_adapter`` and ``close`` at any time.

    * cookies: the Session's jar is a :class:`ThreadSafeCookieJar`; cookies set by responses
      on any thread all reach it. Assign another jar to ``cookies`` and its safety is its own.
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
        # (name, value) pairs already checked by check_header_validity: a pure function
        self._valid_headers: dict[tuple[str, str], bool] = {}
        # The session headers' pairs -> their merged, checked store (requests without headers)
        self._session_headers: dict[tuple[Any, ...], OrderedDict[str, tuple[str, Any]]] = {}

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
        if (
            _RequestsSession.request is not _STOCK_REQUEST  # patched or wrapped: honour that
            # replaced on the class or on this instance (self.__dict__ is not read: that would
            # turn the instance's attribute storage into a dict, slower on every access)
            or getattr(self.prepare_request, "__func__", None) is not _OWN_STEPS[0]
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
        prep = self._prepare(
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

    def prepare_request(self, request: Request) -> PreparedRequest:
        """Build the :class:`~requests.PreparedRequest` requests would build for ``request``."""
        return self._prepare(
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

    def _prepare(
        self,
        method: Any,
        url: Any,
        request_headers: Any,
        files: Any,
        data: Any,
        request_params: Any,
        auth: Any,
        request_cookies: Any,
        request_hooks: Any,
        json: Any,
    ) -> PreparedRequest:
        # cookies (requests: merge the request's cookies into a copy of the session's jar)
        if not request_cookies and _jar_is_empty(self.cookies):
            merged_cookies: CookieJar | None = None
        else:
            cookies = request_cookies or {}
            if not isinstance(cookies, CookieJar):
                cookies = cookiejar_from_dict(cookies)
            session_copy: CookieJar | None = _copy_jar(self.cookies)
            if session_copy is None:
                session_copy = merge_cookies(RequestsCookieJar(), self.cookies)
            merged_cookies = merge_cookies(session_copy, cookies)

        if self.trust_env and not auth and not self.auth:
            auth = self.environment().netrc_auth(url)

        method = method.upper()
        session_key = None
        headers = None
        if type(request_headers) is dict and not request_headers:
            session_key, headers = self._checked_session_headers()
        checked = headers is not None
        if headers is None:
            headers, fresh_headers = self._merge_headers(request_headers)
        else:
            fresh_headers = True
        params = _merge_dicts(request_params, self.params)
        auth = _merge_scalar(auth, self.auth)
        hooks = merge_hooks(request_hooks, self.hooks)

        p = PreparedRequest()
        p.prepare_method(method)

        fast_url = None
        if type(url) is str and type(params) is OrderedDict:
            enc_params = RequestEncodingMixin._encode_params(params) if params else ""
            if not enc_params or _PLAIN_PARAMS.match(enc_params):
                fast_url = _fast_url(url, enc_params)
        if fast_url is not None:
            p.url = fast_url
        else:
            p.prepare_url(url, params)

        if checked:
            p.headers = headers
        elif fresh_headers:
            self._prepare_headers(p, headers)
            if session_key is not None:
                self._remember_session_headers(session_key, headers)
        else:
            p.prepare_headers(headers)

        if merged_cookies is None:
            p._cookies = RequestsCookieJar()
        else:
            _prepare_cookies(p, merged_cookies)  # type: ignore[arg-type]

        if not files and json is None and type(data) in _EMPTY_BODY_TYPES and not data:
            # prepare_body with nothing to send: no body, Content-Length: 0 where one may be
            if p.method not in _NO_BODY_METHODS and p.headers.get("Content-Length") is None:
                p.headers["Content-Length"] = "0"
        else:
            p.prepare_body(data, files, json)

        # A fast URL has no userinfo, so without auth prepare_auth would do nothing.
        if auth is not None or fast_url is None:
            p.prepare_auth(auth, url)
        if type(hooks) is not dict or hooks != _NO_HOOKS:  # nothing to register otherwise
            p.prepare_hooks(hooks)
        return p

    def _checked_session_headers(self) -> tuple[Any, CaseInsensitiveDict[Any] | None]:
        """For a request without headers of its own: (the session headers' pairs, or None when
        they cannot be a key; a new copy of their merged and checked form, if remembered)."""
        session_headers = self.headers
        if type(session_headers) is not CaseInsensitiveDict:
            return None, None
        key = tuple(session_headers._store.values())
        try:
            store = self._session_headers.get(key)
        except TypeError:  # an unhashable value: requests' own checks will report it
            return None, None
        if store is None:
            return key, None
        headers: CaseInsensitiveDict[Any] = CaseInsensitiveDict.__new__(CaseInsensitiveDict)
        headers._store = store.copy()
        return key, headers

    def _remember_session_headers(self, key: Any, headers: CaseInsensitiveDict[Any]) -> None:
        # Remember only what the pairs themselves give (str names and values, None dropped): a
        # thread changing the session headers meanwhile cannot file a wrong answer under key.
        if not all(type(name) is str and type(value) in (str, type(None)) for name, value in key):
            return
        expected = OrderedDict(
            (name.lower(), (name, value)) for name, value in key if value is not None
        )
        if expected != headers._store:
            return
        if len(self._session_headers) >= _SESSION_HEADERS_CACHE_SIZE:
            self._session_headers.clear()
        self._session_headers[key] = expected

    def _merge_headers(self, request_headers: Any) -> tuple[Any, bool]:
        """merge_setting for headers; True with a new CaseInsensitiveDict made here."""
        session_headers = self.headers
        if type(session_headers) is CaseInsensitiveDict and isinstance(
            request_headers, (dict, CaseInsensitiveDict)
        ):
            # merge_setting(request_headers, session_headers, dict_class=CaseInsensitiveDict)
            # CaseInsensitiveDict() then its store (__init__ goes through MutableMapping.update)
            merged: CaseInsensitiveDict[Any] = CaseInsensitiveDict.__new__(CaseInsensitiveDict)
            merged._store = session_headers._store.copy()
            for name, value in request_headers.items():
                merged[name] = value
            store = merged._store
            for key in [k for k, (_, v) in store.items() if v is None]:
                del store[key]
            return merged, True
        return merge_setting(
            request_headers, session_headers, dict_class=CaseInsensitiveDict
        ), False

    def _prepare_headers(self, p: PreparedRequest, headers: CaseInsensitiveDict[Any]) -> None:
        # prepare_headers checks every header and copies them into a new CaseInsensitiveDict;
        # ours is new already. Checks of str pairs are remembered.
        valid = self._valid_headers
        for pair in headers._store.values():
            if type(pair[0]) is not str:
                p.prepare_headers(headers)  # bytes names are converted: requests' way
                return
            if type(pair[1]) is not str:
                check_header_validity(pair)  # InvalidHeader for a list or dict: not hashable
                continue
            if pair not in valid:
                check_header_validity(pair)
                if len(valid) >= _HEADER_CACHE_SIZE:
                    valid.clear()
                valid[pair] = True
        p.headers = headers

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
            "proxies": _merge_dicts(proxies, self.proxies),
            "stream": _merge_scalar(stream, self.stream),
            "verify": _merge_scalar(verify, self.verify),
            "cert": _merge_scalar(cert, self.cert),
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
        adapter = self.get_adapter(url=request.url)  # type: ignore[arg-type]
        start = preferred_clock()
        r = adapter.send(request, **kwargs)
        r.elapsed = timedelta(seconds=preferred_clock() - start)
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
        if not allow_redirects:
            try:
                r._next = next(self.resolve_redirects(r, request, yield_requests=True, **kwargs))  # type: ignore[assignment]
            except StopIteration:
                pass
        if not stream:
            _read_content(r)
        return r

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
        if getattr(self.get_adapter, "__func__", None) is not _RequestsSession.get_adapter:
            return
        mocker = sys.modules.get("requests_mock.mocker")
        lock = getattr(mocker, "_send_lock", None)
        if lock is None:
            return
        with lock:
            left = self.__dict__.get("get_adapter")
            if (
                getattr(left, "__self__", None) is self
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
        original = getattr(raw, "_original_response", None)
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
            headers["Proxy-Authorization"] = _basic_auth_str(username, password)
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
