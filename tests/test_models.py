"""fastpool._models: the cheap constructors give what requests' constructors give."""

from __future__ import annotations

import threading

import pytest
from requests.cookies import RequestsCookieJar
from requests.models import PreparedRequest

from fastpool import _models


def _jar_state(jar: RequestsCookieJar) -> tuple[object, ...]:
    return (
        type(jar),
        sorted(vars(jar)),
        type(jar._policy),
        vars(jar._policy),
        type(jar._cookies_lock),
        jar._cookies,
    )


def test_cookie_jar_equals_the_constructed_one() -> None:
    assert _models._FAST_JAR  # the fast route is in use with this requests and Python
    assert _jar_state(_models.new_cookie_jar()) == _jar_state(RequestsCookieJar())


def test_cookie_jars_share_nothing_mutable() -> None:
    a, b = _models.new_cookie_jar(), _models.new_cookie_jar()
    assert a._policy is not b._policy
    assert a._cookies is not b._cookies
    assert a._cookies_lock is not b._cookies_lock
    a._policy.set_blocked_domains(["blocked.example"])
    a.set("k", "v", domain="example.com")
    assert b._policy.blocked_domains() == () and not b._cookies
    assert _models.new_cookie_jar()._policy.blocked_domains() == ()
    assert isinstance(a._cookies_lock, type(threading.RLock()))


def test_prepared_request_equals_the_constructed_one() -> None:
    assert _models._FAST_PREPARED
    a, b = _models.new_prepared_request(), _models.new_prepared_request()
    assert vars(a) == vars(PreparedRequest())
    assert a.hooks is not b.hooks and a.hooks["response"] is not b.hooks["response"]
    a.hooks["response"].append(print)
    assert b.hooks == {"response": []}


def test_fallback_calls_the_constructors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_models, "_FAST_JAR", False)
    monkeypatch.setattr(_models, "_FAST_PREPARED", False)
    assert _jar_state(_models.new_cookie_jar()) == _jar_state(RequestsCookieJar())
    assert vars(_models.new_prepared_request()) == vars(PreparedRequest())


def test_templates_refuse_mutable_state() -> None:
    assert _models._constant((1, ("a", None), True))
    assert not _models._constant([])
    assert not _models._constant(("a", {}))
