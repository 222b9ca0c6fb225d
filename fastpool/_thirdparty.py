"""The private names of other libraries that fastpool uses, all in one place.

fastpool mirrors urllib3's pools and requests' adapter closely enough that a few of their private
names have no public spelling. Every import of one is here, named without its underscore and
with the versions it is known for, so a release that moves one fails here, at import, naming
it (requests' at first use; ``.ci/matrix`` runs the oldest versions pyproject allows). Where a public spelling
exists the modules use it directly: ``urllib3.HTTPHeaderDict`` (not ``urllib3._collections``),
``urllib3.util.Timeout.DEFAULT_TIMEOUT`` (not ``urllib3.util.timeout._DEFAULT_TIMEOUT``).

(``fastpool._compat`` is another idea: which backend, compiled or pure, fastpool runs.)

requests' names are imported inside the functions that need them: the engine (``pool.py``,
``connection.py``) imports this module and must not import requests.

Imported here (known for the versions fastpool runs with: urllib3 2.3.0-2.8.0, requests
2.32.3-2.34.2), under the name after the arrow, and used by:

* ``urllib3._request_methods.RequestMethods`` -> ``RequestMethods``: pool, poolmanager
  (urllib3 1.x spelled it ``urllib3.request.RequestMethods``; 2.x has no public one);
* ``urllib3._base_connection.ProxyConfig`` -> ``ProxyConfig``: connection;
* ``urllib3.connectionpool._normalize_host`` -> ``normalize_host``: pool;
* ``urllib3.util.url._encode_target`` -> ``encode_target``: pool;
* ``urllib3.poolmanager._default_key_normalizer`` -> ``default_key_normalizer``: poolmanager;
* ``HTTPHeaderDict._prepare_for_method_change`` -> :func:`headers_for_method_change`: pool,
  poolmanager (a 303 redirect);
* ``requests.auth._basic_auth_str`` -> :func:`basic_auth_str`: sessions (proxy credentials);
* ``requests.adapters._preloaded_ssl_context`` -> :func:`preloaded_ssl_context`: adapters
  (requests 2.32.3 and 2.32.4 only; gone since 2.32.5, then None);
* ``requests_mock.mocker._send_lock`` -> :func:`requests_mock_send_lock`: sessions
  (requests-mock 1.11-1.12).

Read or written in place, on objects of other libraries, where a helper call would cost
instructions on every request; each place is marked ``# private: fastpool._thirdparty``:

* requests' ``CaseInsensitiveDict._store`` (lower name -> (name, value); requests 2.x):
  connection (``PAIR_STORE_TYPES``), adapters (``_fast_response``), _prepare (merging and
  checking headers);
* urllib3's ``HTTPHeaderDict._container`` (lower name -> [name, value, ...]; urllib3
  1.26-2.8): response (``headers``, ``_requests_store``);
* requests' ``Response._content``, ``_content_consumed`` and ``_next`` (requests 2.x):
  adapters (``_fast_response``), sessions (``_read_content``, ``Session.send``);
* requests' ``PreparedRequest._cookies`` (requests 2.x): _prepare, cookies;
* requests' ``RequestEncodingMixin._encode_params`` (requests 2.x): _prepare (query
  parameters);
* urllib3's ``HTTPResponse._original_response`` (what requests reads for cookies): sessions;
* the standard library's ``http.cookiejar.CookieJar._cookies``, ``_cookies_lock``, ``_now``
  and ``_policy._now``: cookies.

fastpool's own response also offers urllib3's private ``_fp`` and ``_original_response``, which
requests and caching tools read.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from urllib3 import HTTPHeaderDict
from urllib3._base_connection import ProxyConfig
from urllib3._request_methods import RequestMethods
from urllib3.connectionpool import _normalize_host as normalize_host
from urllib3.poolmanager import _default_key_normalizer as default_key_normalizer
from urllib3.util.url import _encode_target as encode_target

__all__ = (
    "ProxyConfig",
    "RequestMethods",
    "basic_auth_str",
    "default_key_normalizer",
    "encode_target",
    "headers_for_method_change",
    "normalize_host",
    "preloaded_ssl_context",
    "requests_mock_send_lock",
)


def headers_for_method_change(headers: Mapping[str, str] | None) -> HTTPHeaderDict:
    """``headers`` without those describing a body, for a redirect that turns the method into
    GET (a 303): urllib3's ``HTTPHeaderDict._prepare_for_method_change``."""
    return HTTPHeaderDict(headers)._prepare_for_method_change()


def basic_auth_str(username: str | bytes, password: str | bytes) -> str:
    """requests' ``_basic_auth_str``: ``"Basic <base64 of username:password>"``, with
    requests' encoding rules (latin-1 for str) and its warnings for non-str arguments."""
    from requests.auth import _basic_auth_str

    return _basic_auth_str(username, password)


def preloaded_ssl_context() -> Any:
    """The SSLContext requests 2.32.3 and 2.32.4 give every ``verify=True`` pool, or None."""
    import requests.adapters

    return getattr(requests.adapters, "_preloaded_ssl_context", None)


def requests_mock_send_lock() -> Any:
    """The lock requests-mock's ``Mocker`` holds while it patches a Session, or None (not
    imported: fastpool never imports it)."""
    return getattr(sys.modules.get("requests_mock.mocker"), "_send_lock", None)
