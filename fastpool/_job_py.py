"""A map item's job and its politeness key, the pure-Python twin of ``_job_c.pyx``.

``PoolManager.map`` makes one :class:`ManagerJob` a request: what the runner and the driver
carry from its first hop to its result. :func:`host_of` is the key the scheduler takes turns
by (``Session.map`` keys its own jobs with it too). Both run once for each item of a crawl,
so they are a compiled core; the two twins are held alike by ``tests/unit/test_job.py``,
with ``urllib.parse.urlsplit`` as the oracle for :func:`host_of`.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

__all__ = ("ENCODED", "URL_METHODS", "ManagerJob", "PlainJobs", "host_of", "plain_job")

#: urllib3's ``RequestMethods.request`` sends these methods' fields in the URL, no body to
#: encode (its ``_encode_url_methods``; a test holds the two equal) ...
URL_METHODS = frozenset(("DELETE", "GET", "HEAD", "OPTIONS"))
#: ... and encodes these arguments: a request with none of them is passed on as it is
ENCODED = frozenset(("body", "fields", "headers", "json", "encode_multipart", "multipart_boundary"))

#: authority ("Host:port") -> host name: a crawl's URLs are many, its hosts far fewer. Clear
#: it, never rebind it (the compiled twin keeps its own reference).
_HOST_OF_AUTHORITY: dict[str, str] = {}
_HOST_CACHE_SIZE = 4096
#: a longer authority is parsed each time, not kept: no host name is that long (a DNS name
#: has 253 characters at most), and a hostile redirect's Location could fill the cache
_CACHED_AUTHORITY_MAX = 300
#: what urlsplit raises for what is not a URL (host_of answers ""); anything else (a
#: RecursionError, a signal handler's exception) is not about the URL: raised, not kept
_NOT_A_URL = (ValueError, TypeError, AttributeError)
#: a URL whose authority is the cache's key as it stands: an alphanumeric scheme, and no
#: userinfo, brackets, tabs or newlines in the authority
_PLAIN_AUTHORITY = re.compile(r"[A-Za-z][A-Za-z0-9]*://([^/?#@\[\]\t\r\n]*)(?:[/?#]|\Z)")


def host_of(url: Any) -> str:
    """The politeness key: the host name, lower-cased; every port and scheme of a host share
    it (as ``fastpool crawl`` and ``fastpool.dask``). The same as ``urlsplit(url).hostname``
    (or ``""``), without parsing the whole URL of every request."""
    if type(url) is str:
        # the common URL, one match: an alphanumeric scheme, an authority with no userinfo,
        # brackets, tabs or newlines (each of those takes the careful way below)
        plain = _PLAIN_AUTHORITY.match(url) if url.isascii() else None
        if plain is not None:
            host = _HOST_OF_AUTHORITY.get(plain.group(1))
            if host is not None:
                return host
        start = url.find("://")
        if start > 0 and url[0].isalpha() and url[:start].isalnum() and url.isascii():
            authority = url[start + 3 :]
            for stop in "/?#":
                end = authority.find(stop)
                if end >= 0:
                    authority = authority[:end]
            # without the userinfo, as urlsplit finds the host: no credentials in the cache
            # (urlsplit refuses brackets there, so such a URL takes the long way)
            userinfo, _, authority = authority.rpartition("@")
            if not (
                "\t" in authority
                or "\r" in authority
                or "\n" in authority
                or "[" in userinfo
                or "]" in userinfo
            ):
                host = _HOST_OF_AUTHORITY.get(authority)
                if host is None:
                    host = _hostname("//" + authority)
                    if len(authority) <= _CACHED_AUTHORITY_MAX:
                        if len(_HOST_OF_AUTHORITY) >= _HOST_CACHE_SIZE:
                            _HOST_OF_AUTHORITY.clear()
                        _HOST_OF_AUTHORITY[authority] = host
                return host
    return _hostname(url)


def _hostname(url: Any) -> str:
    try:
        return urlsplit(url).hostname or ""
    except _NOT_A_URL:  # not a URL: preparing the request says why
        return ""


class ManagerJob:
    """One item of ``PoolManager.map``: its request (``method``, ``url``, the ``urlopen``
    arguments ``kw``, whether to follow ``redirect``s), its politeness key ``host``, and as it
    goes, the pool of its hop (``conn``) and that hop's ``target``; ``given`` is the item as the
    caller gave it."""

    __slots__ = ("conn", "given", "host", "kw", "method", "redirect", "target", "url", "whole")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # final, as the compiled twin's C struct is
        raise TypeError("type 'ManagerJob' is not an acceptable base type")

    def __reduce__(self) -> Any:
        # a job holds a pool and a caller's request: never pickled or copied (as compiled)
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    def __init__(self, given: Any, method: str, url: str, kw: dict[str, Any]) -> None:
        self.given = given
        self.method = method
        self.url = url
        self.redirect = kw.pop("redirect", True)
        self.kw = kw
        self.host = host_of(url)
        self.conn: Any = None
        self.target = url
        #: (method, url, kwargs) for a manager whose request() a tool or a subclass replaced:
        #: the item goes whole through it
        self.whole: tuple[str, str, dict[str, Any]] | None = None


def plain_job(given: Any, headers: Any) -> ManagerJob | None:
    """The job ``PoolManager.request``'s steps make of a ``PoolManager.map`` item whose
    request has nothing to encode: a URL (a GET), or ``(method, url[, kwargs])`` with ``str``
    method and URL, a method that sends no body (``URL_METHODS``, any case), and a ``dict``
    of ``kwargs`` whose names are ``str``, none of them ``ENCODED`` or ``preload_content``. Its
    ``urlopen`` arguments are the manager's ``headers``, then ``kwargs``. None: any other
    item, which takes the general steps (``fastpool.multi``)."""
    if type(given) is str:
        return ManagerJob(given, "GET", given, {"headers": headers})
    if type(given) is not tuple:  # (a subclass may index otherwise: the general steps)
        return None
    size = len(given)
    if size == 2:
        kwargs: Any = {}
    elif size == 3:
        kwargs = given[2]
        if type(kwargs) is not dict:
            return None
    else:
        return None
    method = given[0]
    url = given[1]
    if type(method) is not str or type(url) is not str:
        return None
    method = method.upper()
    if method not in URL_METHODS or not ENCODED.isdisjoint(kwargs) or "preload_content" in kwargs:
        return None
    for name in kwargs:
        if type(name) is not str:
            return None  # (not a keyword: request() refuses it with a TypeError)
    return ManagerJob(given, method, url, {"headers": headers, **kwargs})


class PlainJobs:
    """``PlainJobs(manager, own)(given)``: :func:`plain_job` of ``given`` with the manager's
    headers, while ``manager.request`` is ``own`` (fastpool's own ``PoolManager.request``,
    asked at each item: a patch or a subclass's must see the request); None otherwise, or for
    an item the general steps take (``fastpool.multi``'s ``ManagerDriver.new``)."""

    __slots__ = ("manager", "own")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # final, as the compiled twin is
        raise TypeError("type 'PlainJobs' is not an acceptable base type")

    def __reduce__(self) -> Any:
        # it holds a manager: never pickled or copied (as compiled)
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    def __init__(self, manager: Any, own: Any) -> None:
        self.manager = manager
        self.own = own

    def __call__(self, given: Any) -> ManagerJob | None:
        manager: Any = self.manager
        request = manager.request
        if (
            getattr(request, "__func__", None) is not self.own
            # (another manager's own request, set on this one, sends as that one)
            or getattr(request, "__self__", request) is not manager
        ):
            return None
        return plain_job(given, manager.headers)
