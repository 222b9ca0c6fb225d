"""The clients of the attack suite, side by side: fastpool and stock on the same conversation.

A *conversation* is a list of requests sent one after another through one fresh client to a
:class:`~dummyserver.hostile.HostileServer`. Each request's outcome is reduced to something that
compares across clients: ``(status, headers, body)`` or ``("error", category)``, where the
category names the kind of failure (``protocol``, ``body``, ``header``, ``timeout``, ...)
rather than a class, since fastpool's classes subclass urllib3's but are not the same.

Kinds of client: ``urllib3`` and ``pm`` (urllib3's and fastpool's PoolManager), ``requests``
(a plain ``requests.Session``), ``adapter`` (a ``requests.Session`` with fastpool's adapter
mounted) and ``session`` (``fastpool.Session``). :data:`PAIRS` says which stock client each
fastpool client is compared with.
"""

from __future__ import annotations

import http.client
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
import requests.adapters
import urllib3
import urllib3.exceptions as u3

import fastpool

#: fastpool client kind -> the stock client it is compared with.
PAIRS = {"pm": "urllib3", "adapter": "requests", "session": "requests"}
FASTPOOL_KINDS = tuple(PAIRS)

# Most specific first: fastpool's exceptions subclass urllib3's (and several of them at once).
_URLLIB3_CATEGORIES: list[tuple[type[BaseException], str]] = [
    (u3.SSLError, "tls"),
    (u3.NewConnectionError, "connect"),  # a subclass of ConnectTimeoutError, but no timeout
    (u3.ReadTimeoutError, "timeout"),
    (u3.ConnectTimeoutError, "timeout"),
    (u3.DecodeError, "decode"),
    (u3.InvalidHeader, "header"),
    (u3.ProtocolError, "protocol"),
    (u3.EmptyPoolError, "pool-timeout"),
    (u3.LocationValueError, "invalid-request"),
    (http.client.InvalidURL, "invalid-request"),
    (ValueError, "invalid-request"),
]
_REQUESTS_CATEGORIES: list[tuple[type[BaseException], str]] = [
    (requests.exceptions.SSLError, "tls"),
    (requests.exceptions.ReadTimeout, "timeout"),
    (requests.exceptions.ConnectTimeout, "timeout"),
    (requests.exceptions.ContentDecodingError, "decode"),
    (requests.exceptions.ChunkedEncodingError, "body"),
    (requests.exceptions.InvalidHeader, "header"),
    (requests.exceptions.InvalidURL, "invalid-request"),
    (requests.exceptions.ConnectionError, "protocol"),
    (ValueError, "invalid-request"),
]


def category(exc: BaseException) -> str:
    """The comparable kind of a failure (a MaxRetryError counts as its reason)."""
    if isinstance(exc, u3.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    for table in (_REQUESTS_CATEGORIES, _URLLIB3_CATEGORIES):
        if table is _REQUESTS_CATEGORIES and not isinstance(exc, requests.RequestException):
            continue
        for cls, name in table:
            if isinstance(exc, cls):
                return name
    return f"unexpected {type(exc).__module__}.{type(exc).__name__}: {exc}"


@dataclass
class Call:
    """One request of a conversation: ``method``, ``path`` (joined to the server's URL, or an
    absolute URL) and keyword arguments for the client. ``read`` bounds how much of the body is
    read (streamed), ``None`` reads it all."""

    method: str = "GET"
    path: str = "/"
    kwargs: dict[str, Any] = field(default_factory=dict)
    read: int | None = None


def GET(path: str = "/", **kwargs: Any) -> Call:
    return Call("GET", path, kwargs)


def _headers(items: Any) -> tuple[tuple[str, str], ...]:
    # Values without surrounding whitespace: RFC 9110 5.5 excludes it from the value, and
    # http.client keeps the spaces of a padded or folded line where fastpool strips them.
    return tuple(sorted((k.lower(), v.strip(" \t")) for k, v in items if k.lower() != "date"))


class Client:
    """One fresh client of a kind; :meth:`send` runs a :class:`Call`, :meth:`close` ends it."""

    def __init__(self, kind: str, ca: str | None = None, **options: Any) -> None:
        self.kind = kind
        if ca is not None and kind in ("urllib3", "pm"):
            options.setdefault("ca_certs", ca)
        if kind == "urllib3":
            self.obj: Any = urllib3.PoolManager(retries=False, **options)
        elif kind == "pm":
            self.obj = fastpool.PoolManager(retries=False, **options)
        elif kind == "requests":
            self.obj = requests.Session()
        elif kind == "adapter":
            self.obj = requests.Session()
            adapter = fastpool.HTTPAdapter(**options)
            self.obj.mount("http://", adapter)
            self.obj.mount("https://", adapter)
        elif kind == "session":
            self.obj = fastpool.Session(**options)
        else:
            raise ValueError(kind)
        if isinstance(self.obj, requests.Session):
            self.obj.trust_env = False  # no proxy or CA variables from the environment
            if ca is not None:
                self.obj.verify = ca

    @property
    def is_fastpool(self) -> bool:
        return self.kind in PAIRS

    def send(self, base: str, call: Call) -> tuple[Any, ...]:
        """``(status, headers, body)`` or ``("error", category)``."""
        url = call.path if "://" in call.path else base + call.path
        stream = call.read is not None
        try:
            if self.kind in ("urllib3", "pm"):
                kw = dict(call.kwargs)
                kw.setdefault("timeout", 5.0)
                r = self.obj.request(call.method, url, preload_content=not stream, **kw)
                body = r.read(call.read) if stream else r.data
                if stream:
                    r.release_conn()
                return (r.status, _headers(r.headers.items()), body)
            kw = dict(call.kwargs)
            kw.setdefault("timeout", 5.0)
            r = self.obj.request(call.method, url, stream=stream, **kw)
            body = r.raw.read(call.read, decode_content=True) if stream else r.content
            if stream:
                r.close()
            return (r.status_code, _headers(r.headers.items()), body)
        except Exception as exc:  # noqa: BLE001 - the outcome is the comparison
            return ("error", category(exc))

    def pool_managers(self) -> list[Any]:
        """fastpool's PoolManagers behind this client (for accounting checks)."""
        if self.kind == "pm":
            return [self.obj]
        if self.kind in ("adapter", "session"):
            adapters = {id(a): a for a in self.obj.adapters.values()}.values()
            return [
                pm
                for a in adapters
                if isinstance(a, fastpool.HTTPAdapter)
                for pm in [a.poolmanager, *a.proxy_manager.values()]
            ]
        return []

    def in_use(self) -> int:
        """Connections fastpool still counts as in use (0 once every response is done)."""
        return sum(pm.stats().total.in_use for pm in self.pool_managers())

    def close(self) -> None:
        if self.kind in ("urllib3", "pm"):
            self.obj.clear()
        else:
            self.obj.close()


@dataclass
class Verdict:
    """What a conversation came to: one outcome per call, and what the server saw."""

    outcomes: list[tuple[Any, ...]]
    connections: int
    requests: int


def converse(kind: str, server: Any, calls: Sequence[Call], **options: Any) -> Verdict:
    """Run ``calls`` through a fresh client of ``kind`` against ``server`` (reset first).

    For a fastpool client, also asserts that nothing is left in use afterwards.
    """
    server.reset()
    client = Client(kind, **options)
    try:
        outcomes = [client.send(server.url, call) for call in calls]
        if client.is_fastpool:
            assert client.in_use() == 0, f"{kind}: a connection is still counted in use"
    finally:
        client.close()
    return Verdict(outcomes, server.connections, len(server.requests))


def both(kind: str, server: Any, calls: Sequence[Call], **options: Any) -> tuple[Verdict, Verdict]:
    """``(stock, ours)``: the conversation through ``kind``'s stock twin and through ``kind``."""
    return converse(PAIRS[kind], server, calls, **options), converse(kind, server, calls, **options)
