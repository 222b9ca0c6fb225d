"""The fast preparation route of :class:`fastpool.Session`: requests' ``prepare_request``, part by
part, without building what the common request shapes do not need.

requests merges every setting through generic helpers and prepares every part of a
:class:`~requests.PreparedRequest` the general way. :class:`Preparer` takes a fast route for the
common shape of each part (a plain http(s) URL, dict headers and params, no body, an empty
cookie jar), with answers made by requests' own code once and remembered, and calls requests'
own code, in requests' order, for every part it cannot be sure of. The differential tests
(tests/with_dummyserver/test_session_diff.py) hold the result to requests'.
"""

from __future__ import annotations

import functools
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from requests.cookies import RequestsCookieJar
from requests.models import PreparedRequest, RequestEncodingMixin
from requests.sessions import merge_hooks, merge_setting
from requests.structures import CaseInsensitiveDict
from requests.utils import check_header_validity

from .cookies import _merged_cookies, _prepare_cookies

if TYPE_CHECKING:
    from ._environment import Environment

__all__ = ("NO_HOOKS", "Preparer", "SessionSettings", "merge_dicts", "merge_scalar")


class SessionSettings(Protocol):
    """What preparing a request reads from its Session: requests' settings and the snapshot of
    the environment (:meth:`fastpool.Session.environment`)."""

    headers: Any
    params: Any
    auth: Any
    hooks: Any
    cookies: Any
    trust_env: bool

    def environment(self) -> Environment:
        """The environment snapshot in use."""
        ...


# --- URLs ----------------------------------------------------------------------------------------
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
#: merge_hooks of no hooks (what default_hooks() makes): prepare_hooks would register nothing.
#: Shared: read, never stored or changed.
NO_HOOKS: dict[str, list[Any]] = {"response": []}
_NO_BODY_METHODS = ("GET", "HEAD")


# --- settings ------------------------------------------------------------------------------------
def merge_scalar(request_setting: Any, session_setting: Any) -> Any:
    """``merge_setting`` for values that are not both mappings, without its generic helpers."""
    if session_setting is None:
        return request_setting
    if request_setting is None:
        return session_setting
    if isinstance(request_setting, Mapping) and isinstance(session_setting, Mapping):
        return merge_setting(request_setting, session_setting)
    return request_setting


def merge_dicts(request_setting: Any, session_setting: Any) -> Any:
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


def _merge_headers(request_headers: Any, session_headers: Any) -> tuple[Any, bool]:
    """merge_setting for headers; True with a new CaseInsensitiveDict made here."""
    if type(session_headers) is CaseInsensitiveDict and isinstance(
        request_headers, (dict, CaseInsensitiveDict)
    ):
        # merge_setting(request_headers, session_headers, dict_class=CaseInsensitiveDict)
        # CaseInsensitiveDict() then its store (__init__ goes through MutableMapping.update)
        merged: CaseInsensitiveDict[Any] = CaseInsensitiveDict.__new__(CaseInsensitiveDict)
        merged._store = session_headers._store.copy()  # private: fastpool._thirdparty
        for name, value in request_headers.items():
            merged[name] = value
        store = merged._store
        for key in [k for k, (_, v) in store.items() if v is None]:
            del store[key]
        return merged, True
    return merge_setting(request_headers, session_headers, dict_class=CaseInsensitiveDict), False


# --- the request ---------------------------------------------------------------------------------
class Preparer:
    """Prepares the requests of one Session as requests' ``Session.prepare_request`` would.

    It keeps that Session's caches of answers requests' code gave: header pairs that passed
    ``check_header_validity``, and the merged, checked form of the session headers for requests
    without headers of their own. A Session has one Preparer; threads share it without a lock
    (a cache entry is written whole, and a lost one is computed again).
    """

    __slots__ = ("_session_headers", "_valid_headers")

    def __init__(self) -> None:
        # (name, value) pairs already checked by check_header_validity: a pure function
        self._valid_headers: dict[tuple[str, str], bool] = {}
        # The session headers' pairs -> their merged, checked store (requests without headers)
        self._session_headers: dict[tuple[Any, ...], OrderedDict[str, tuple[str, Any]]] = {}

    def prepare(
        self,
        session: SessionSettings,
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
        """The :class:`~requests.PreparedRequest` ``session.prepare_request`` of requests would
        build for a ``requests.Request`` holding these parts."""
        # cookies (requests: merge the request's cookies into a copy of the session's jar)
        merged_cookies = _merged_cookies(session.cookies, request_cookies)

        if session.trust_env and not auth and not session.auth:
            auth = session.environment().netrc_auth(url)

        method = method.upper()
        session_key = None
        headers = None
        if type(request_headers) is dict and not request_headers:
            session_key, headers = self._checked_session_headers(session)
        checked = headers is not None
        if headers is None:
            headers, fresh_headers = _merge_headers(request_headers, session.headers)
        else:
            fresh_headers = True
        params = merge_dicts(request_params, session.params)
        auth = merge_scalar(auth, session.auth)
        hooks = merge_hooks(request_hooks, session.hooks)

        p = PreparedRequest()
        p.prepare_method(method)

        fast_url = None
        if type(url) is str and type(params) is OrderedDict:
            # private: fastpool._thirdparty
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
            p._cookies = RequestsCookieJar()  # private: fastpool._thirdparty
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
        if type(hooks) is not dict or hooks != NO_HOOKS:  # nothing to register otherwise
            p.prepare_hooks(hooks)
        return p

    def _checked_session_headers(
        self, session: SessionSettings
    ) -> tuple[Any, CaseInsensitiveDict[Any] | None]:
        """For a request without headers of its own: (the session headers' pairs, or None when
        they cannot be a key; a new copy of their merged and checked form, if remembered)."""
        session_headers = session.headers
        if type(session_headers) is not CaseInsensitiveDict:
            return None, None
        key = tuple(session_headers._store.values())  # private: fastpool._thirdparty
        try:
            store = self._session_headers.get(key)
        except TypeError:  # an unhashable value: requests' own checks will report it
            return None, None
        if store is None:
            return key, None
        headers: CaseInsensitiveDict[Any] = CaseInsensitiveDict.__new__(CaseInsensitiveDict)
        headers._store = store.copy()  # private: fastpool._thirdparty
        return key, headers

    def _remember_session_headers(self, key: Any, headers: CaseInsensitiveDict[Any]) -> None:
        # Remember only what the pairs themselves give (str names and values, None dropped): a
        # thread changing the session headers meanwhile cannot file a wrong answer under key.
        if not all(type(name) is str and type(value) in (str, type(None)) for name, value in key):
            return
        expected = OrderedDict(
            (name.lower(), (name, value)) for name, value in key if value is not None
        )
        if expected != headers._store:  # private: fastpool._thirdparty
            return
        if len(self._session_headers) >= _SESSION_HEADERS_CACHE_SIZE:
            self._session_headers.clear()
        self._session_headers[key] = expected

    def _prepare_headers(self, p: PreparedRequest, headers: CaseInsensitiveDict[Any]) -> None:
        # prepare_headers checks every header and copies them into a new CaseInsensitiveDict;
        # ours is new already. Checks of str pairs are remembered.
        valid = self._valid_headers
        for pair in headers._store.values():  # private: fastpool._thirdparty
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
