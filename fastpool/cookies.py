"""Cookies for :class:`fastpool.Session`: a jar many threads may share, and requests' cookie steps
done faster on the jars this module knows.

requests merges the session's jar into a new one (copying every cookie) and asks the cookie
policy about every domain in it, for every request. For a :class:`ThreadSafeCookieJar` or a
plain :class:`~requests.cookies.RequestsCookieJar`, :func:`_merged_cookies` and
:func:`_prepare_cookies` reach the same jar and the same ``Cookie`` header without that
repetition; any other jar goes through requests' own functions.
"""

from __future__ import annotations

import http.cookiejar
import time
from collections.abc import Callable, Iterable, Iterator
from http.cookiejar import CookieJar
from typing import Any

from requests.cookies import (
    MockRequest,
    RequestsCookieJar,
    cookiejar_from_dict,
    get_cookie_header,
    merge_cookies,
)
from requests.models import PreparedRequest

__all__ = ("ThreadSafeCookieJar",)


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


#: The jar classes whose inside (``_cookies``, the default policy) the fast steps rely on; an
#: exact type test, so a subclass that changes how cookies are stored takes requests' way.
#: (http.cookiejar's private names read here are listed in fastpool._thirdparty.)
_KNOWN_JARS = (ThreadSafeCookieJar, RequestsCookieJar)

# http.cookiejar's own helpers (not in typeshed): the iteration order and request host it uses
_deepvalues = http.cookiejar.deepvalues  # type: ignore[attr-defined]
# deepvalues walks a jar in insertion order (Python >= 3.10) or sorted by key (older ones)
_jar_keys: Callable[[dict[str, Any]], Iterable[str]] = (
    sorted if list(_deepvalues({"b": {"x": 1}, "a": {"y": 2}})) == [2, 1] else list
)
_eff_request_host = http.cookiejar.eff_request_host  # type: ignore[attr-defined]


def _merged_cookies(session_jar: Any, request_cookies: Any) -> CookieJar | None:
    """The jar requests' ``prepare_request`` builds: the request's cookies merged into a copy of
    the session's jar. None when both are empty (a jar we know), so there is no cookie to send.
    """
    # An empty jar of a known type holds nothing to merge; anything else takes requests' merge.
    if not request_cookies and type(session_jar) in _KNOWN_JARS and not session_jar._cookies:
        return None
    cookies = request_cookies or {}
    if not isinstance(cookies, CookieJar):
        cookies = cookiejar_from_dict(cookies)
    session_copy: CookieJar | None = _copy_jar(session_jar)
    if session_copy is None:
        session_copy = merge_cookies(RequestsCookieJar(), session_jar)
    return merge_cookies(session_copy, cookies)


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
    p._cookies = jar  # private: fastpool._thirdparty
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
