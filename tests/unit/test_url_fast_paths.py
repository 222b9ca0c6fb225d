"""The fast paths that spare a crawl urllib3's URL machinery for each new URL, held to it:
``PoolManager._split_url`` (``parse_url``), ``HTTPConnectionPool._target`` (urllib3's
``encode_target``) and ``HTTPConnection.render_request`` (the bytes ``request`` writes)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from urllib3.util.url import _encode_target, parse_url

import fastpool
import fastpool.poolmanager
from fastpool.connection import HTTPConnection

ODD = "%./?#@:[]\\ \t\n~!$&'()*+,;=-_ü\x7f"
schemes = st.sampled_from(["http", "HTTP", "hTtPs", "https", "ftp", "http+unix", ""])
hosts = st.one_of(
    st.sampled_from(["Example.COM", "127.0.0.1", "a..b", "host.", "xn--bcher-kva.example"]),
    st.text("aZ09.-_%[]:ü@", min_size=0, max_size=12),
)
ports = st.one_of(st.none(), st.text("0123456789", min_size=0, max_size=7))
paths = st.text("aZ09/" + ODD, max_size=16)
queries = st.one_of(st.none(), st.text("aZ09=&/" + ODD, max_size=12))
fragments = st.one_of(st.none(), st.text("aZ09/?#" + ODD, max_size=8))


@st.composite
def urls(draw: st.DrawFn) -> str:
    scheme, host, port = draw(schemes), draw(hosts), draw(ports)
    path, query, fragment = draw(paths), draw(queries), draw(fragments)
    url = f"{scheme}://{host}" if scheme else f"//{host}"
    if port is not None:
        url += ":" + port
    if path:
        url += path if path.startswith("/") else "/" + path
    if query is not None:
        url += "?" + query
    if fragment is not None:
        url += "#" + fragment
    return url


def oracle_split(url: str) -> Any:
    """What _split_url answers through parse_url (its general path), or the error."""
    try:
        u = parse_url(url)
    except Exception as e:  # noqa: BLE001 - compared as the outcome
        return type(e)
    if not u.host:
        return "no host"
    return (u.scheme or "http", u.host, u.port, u.request_uri)


def fast_split(url: str, manager: Any = None) -> Any:
    """``_split_url``'s answer or error; by default from a fresh manager (a fresh cache: the
    answer is the fast path's or parse_url's)."""
    if manager is None:
        manager = fastpool.PoolManager()
    try:
        return manager._split_url(url)
    except Exception as e:  # noqa: BLE001 - compared as the outcome
        if "No host" in str(e):
            return "no host"
        return type(e)


@pytest.mark.parametrize(
    "url",
    [
        "http://Example.COM:8080/a/b?c=d#frag",
        "HTTPS://h/",
        "http://h",
        "http://h?",
        "http://h/p?",
        "http://h:0/",
        "http://h:00080/x",
        "http://h:65535/",
        "http://h:65536/",  # parse_url refuses it
        "http://h/a/./b",  # a dot segment: parse_url removes it
        "http://h/a/../b",
        "http://h/.well-known/x",
        "http://h/%7euser",  # parse_url upper-cases the escape
        "http://h/a b",
        "http://h/#x y",
        "http://h:/x",
        "http://u@h/",
        "http://[::1]:80/",
    ],
)
def test_split_url_corpus(url: str) -> None:
    assert fast_split(url) == oracle_split(url)


#: one manager for every example: the origins of all earlier URLs are known to it, and a
#: mistake in their keys (the scheme or the port left out) meets a URL it would answer wrongly
SHARED = fastpool.PoolManager()


def split_after_its_origin(url: str) -> Any:
    """``fast_split`` with the URL's would-be origin (all before the first "/" after the
    scheme and one host byte) made known first by a plain URL of it: the origin's way."""
    slash = url.find("/", 8)
    if slash > 0:
        fast_split(url[:slash] + "/seed", SHARED)  # (not a URL of an origin: nothing known)
    return fast_split(url, SHARED)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # a URL without a scheme
@pytest.mark.parametrize("split", [fast_split, split_after_its_origin])
@settings(max_examples=600, deadline=None)
@given(url=urls())
def test_split_url_answers_as_parse_url(split: Any, url: str) -> None:
    """Through a fresh manager (the regular expression's way, or parse_url's), and through
    one that knew the URL's origin before (the origin's way)."""
    assert split(url) == oracle_split(url)


@pytest.mark.parametrize(
    "rest",
    ["/a?b=c", "/", "/a/./b", "/a/../b", "/.x", "/%7e", "/a b", "/a#f", "/?q/./r", "/a?b#c"],
)
@pytest.mark.parametrize("origin", ["http://Example.COM:8080", "HTTPS://h", "http://h:65535"])
def test_split_url_corpus_of_a_known_origin(origin: str, rest: str) -> None:
    manager = fastpool.PoolManager()
    manager._split_url(origin + "/seed")
    assert manager._origins  # the origin's way is taken below
    assert manager._split_url(origin + rest) == oracle_split(origin + rest)
    assert manager._split_url(origin + rest) == oracle_split(origin + rest)  # cached


ORIGINS = [
    "http://h",
    "http://h:8080",
    "https://h",
    "https://h:8080",
    "HTTP://h",
    "http://H",
    "http://h.",
    "http://h:080",
    "http://hh",
]


def test_only_the_origins_way_answers_known_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Origins that share a prefix are told apart by scheme, host and port: once each is
    known, its URLs are split by the origin's way alone (the other two ways switched off)."""
    manager = fastpool.PoolManager()
    for origin in ORIGINS:
        manager._split_url(origin + "/seed")
    urls = [origin + rest for origin in ORIGINS for rest in ("/x", "/a?b=c", "/", "/p/q?r")]
    expected = {url: oracle_split(url) for url in urls}

    def refuse(url: str) -> Any:
        raise AssertionError(f"{url} left the origin's way")

    monkeypatch.setattr(fastpool.poolmanager, "_PLAIN_URL", re.compile(r"(?!)"))
    monkeypatch.setattr(fastpool.poolmanager, "parse_url", refuse)
    for url in urls:
        assert manager._split_url(url) == expected[url], url


def test_what_parse_url_split_stays_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    """A crawl's new URLs do not churn the URL cache, and what only parse_url splits (an
    escape) is not pushed out by them: 200 such URLs polled in turn are parsed once each."""
    parsed: list[str] = []

    def counting(url: str) -> Any:
        parsed.append(url)
        return parse_url(url)

    monkeypatch.setattr(fastpool.poolmanager, "parse_url", counting)
    manager = fastpool.PoolManager()
    escaped = [f"http://h{i % 7}/%7e{i}" for i in range(200)]
    for round_ in range(3):
        for i, url in enumerate(escaped):
            assert manager._split_url(url) == oracle_split(url)
            manager._split_url(f"http://h{i % 7}/new-{round_}-{i}")  # a crawl's URL between
    assert sorted(parsed) == sorted(escaped)
    assert len(manager._url_cache) <= 1024


def test_a_pool_keeps_what_it_encoded_and_a_few_plain_targets() -> None:
    pool = fastpool.HTTPConnectionPool("127.0.0.1", 1)
    for i in range(500):
        assert pool._target(f"/new-{i}") == (f"/new-{i}", None)
    assert len(pool._target_cache) == 32  # the first plain ones only: no churn
    for i in range(100):
        assert pool._target(f"/a b{i}") == (_encode_target(f"/a b{i}"), None)
    assert len(pool._target_cache) == 132


def test_a_forwarding_proxy_still_gets_the_absolute_form() -> None:
    proxy = fastpool.ProxyManager("http://127.0.0.1:3128")
    for _ in range(2):  # and again: no origin is taken for the origin-form target
        assert proxy._split_url("http://Example.com/a?b#c") == (
            "http",
            "example.com",
            None,
            "http://example.com/a?b",
        )
        assert proxy._split_url("http://Example.com/d") == (
            "http",
            "example.com",
            None,
            "http://example.com/d",
        )


targets = st.text("aZ09/?#" + ODD, max_size=20).map(lambda text: "/" + text)


@settings(max_examples=600, deadline=None)
@given(targets)
def test_target_answers_as_encode_target(target: str) -> None:
    def outcome(function: Any) -> Any:
        try:
            return function(target)
        except Exception as e:  # noqa: BLE001 - compared as the outcome
            return type(e), str(e)

    pool = fastpool.HTTPConnectionPool("127.0.0.1", 1)
    expected = outcome(lambda url: (_encode_target(url), None))
    assert outcome(pool._target) == expected
    assert outcome(pool._target) == expected  # from its cache too


class _Sink:
    def __init__(self) -> None:
        self.sent = b""

    def sendall(self, data: Any) -> None:
        self.sent += bytes(data)


def written(conn: HTTPConnection, method: str, target: str) -> Any:
    """The bytes request() writes on a socket, or its error."""
    sink = _Sink()
    conn.sock = sink  # type: ignore[assignment]
    try:
        conn.request(method, target)
    except Exception as e:  # noqa: BLE001 - compared as the outcome
        return type(e), str(e)
    finally:
        conn.sock = None
    return sink.sent


def rendered(conn: HTTPConnection, method: str, target: str) -> Any:
    try:
        return conn.render_request(method, target)
    except Exception as e:  # noqa: BLE001 - compared as the outcome
        return type(e), str(e)


@settings(max_examples=400, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "get", "HEAD", "BAD METHOD", "DELETE"]),
    target=st.one_of(targets, st.text("aZ/" + ODD, max_size=10)),
    port=st.sampled_from([80, 8080]),
)
def test_render_request_writes_what_request_writes(method: str, target: str, port: int) -> None:
    conn = HTTPConnection("Example.com", port)
    # twice: the first fills the template, the second is made from it
    assert rendered(conn, method, target) == written(conn, method, target)
    assert rendered(conn, method, target) == written(conn, method, target)
    assert rendered(conn, method, target + "x") == written(conn, method, target + "x")
