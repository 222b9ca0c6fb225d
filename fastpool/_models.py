"""Cheap constructors for requests' per-request objects, equal to what their constructors give.

Every request builds two empty cookie jars (``PreparedRequest._cookies`` and
``Response.cookies``) and a ``PreparedRequest``. Their ``__init__`` methods set a fixed set of
attributes, most of them constants (a jar's ``DefaultCookiePolicy`` alone sets thirteen). Here
each object is made with ``__new__`` and its ``__dict__`` filled from a template taken from a
real instance at import time: the same attributes and values, fresh mutable parts, in a fraction
of the time.

The templates are checked at import: should a requests or Python release add state that is not a
plain constant, the constructors here fall back to calling the real ``__init__``.
"""

from __future__ import annotations

import threading
from http.cookiejar import DefaultCookiePolicy
from typing import Any

from requests.cookies import RequestsCookieJar
from requests.models import PreparedRequest

__all__ = ("new_cookie_jar", "new_prepared_request")

_CONSTANT_TYPES = (bool, int, str, type(None))


def _constant(value: object) -> bool:
    if isinstance(value, tuple):
        return all(_constant(item) for item in value)
    return isinstance(value, _CONSTANT_TYPES)


_POLICY_STATE: dict[str, Any] = dict(vars(DefaultCookiePolicy()))
_JAR_KEYS = {"_policy", "_cookies_lock", "_cookies"}
_FAST_JAR = (
    set(vars(RequestsCookieJar())) == _JAR_KEYS
    and type(RequestsCookieJar()._policy) is DefaultCookiePolicy
    and all(_constant(value) for value in _POLICY_STATE.values())
)

_PREPARED_STATE: dict[str, Any] = dict(vars(PreparedRequest()))
_PREPARED_KEYS = {"method", "url", "headers", "_cookies", "body", "hooks", "_body_position"}
_FAST_PREPARED = (
    set(_PREPARED_STATE) == _PREPARED_KEYS
    and _PREPARED_STATE["hooks"] == {"response": []}
    and all(_constant(v) for k, v in _PREPARED_STATE.items() if k != "hooks")
)


def new_cookie_jar() -> RequestsCookieJar:
    """``RequestsCookieJar()``: an empty jar with its own lock and default policy."""
    if not _FAST_JAR:
        return RequestsCookieJar()
    policy = DefaultCookiePolicy.__new__(DefaultCookiePolicy)
    policy.__dict__.update(_POLICY_STATE)
    jar = RequestsCookieJar.__new__(RequestsCookieJar)
    jar.__dict__.update(_policy=policy, _cookies_lock=threading.RLock(), _cookies={})
    return jar


def new_prepared_request() -> PreparedRequest:
    """``PreparedRequest()``: every attribute None but ``hooks``, a new ``{"response": []}``."""
    if not _FAST_PREPARED:
        return PreparedRequest()
    prepared = PreparedRequest.__new__(PreparedRequest)
    prepared.__dict__.update(_PREPARED_STATE)
    prepared.hooks = {"response": []}
    return prepared
