"""A map item's job and its politeness key (``fastpool._job``), each twin against the oracle:
``host_of(url)`` is ``urlsplit(url).hostname or ""`` (the compiled twin scans a plain URL's
characters, the pure one asks a regular expression), asked twice (a miss, then the cache), and
``ManagerJob`` holds what it is given the same way on both.
"""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st


@pytest.fixture(scope="module", params=["python", "cython"])
def twin(request: pytest.FixtureRequest) -> Any:
    name = "fastpool._job_py" if request.param == "python" else "fastpool._job_c"
    try:
        return importlib.import_module(name)
    except ImportError:
        pytest.skip("no compiled job core in this build")


def oracle(url: Any) -> Any:
    try:
        return urlsplit(url).hostname or ""
    except Exception:  # noqa: BLE001 - not a URL: host_of answers ""
        return ""


_SCHEMES = ["http", "HTTPS", "h2c", "x1", "1x", "", "ht-tp", "ht tp", " http", "é"]
_JOINS = ["://", ":/", "//", ":", "://", "://"]
_NEAR = "aZ09.-_~%:@[]\t\r\n /?#é\x00\x7f"
_HOSTS = [
    "example.com", "Example.COM", "127.0.0.1", "[::1]", "[::1", "xn--bcher-kva.example",
    "user:pw@host", "us[er@host", "a@b@c", "host:8080", "host:abc", "HOST.", "", "bücher.de",
]  # fmt: skip
_TAILS = ["", "/", "/path?q=1#f", "?q", "#frag", "/a@b", "/x\ty", ":80/"]


@given(
    st.sampled_from(_SCHEMES),
    st.sampled_from(_JOINS),
    st.one_of(st.sampled_from(_HOSTS), st.text(alphabet=st.sampled_from(_NEAR), max_size=10)),
    st.sampled_from(_TAILS),
)
def test_host_of_is_urlsplit_s_hostname(
    twin: Any, scheme: str, join: str, host: str, tail: str
) -> None:
    url = scheme + join + host + tail
    assert twin.host_of(url) == oracle(url), url
    assert twin.host_of(url) == oracle(url), url  # (the second from the cache, when kept)


@given(st.text(max_size=30))
def test_host_of_any_text(twin: Any, url: str) -> None:
    assert twin.host_of(url) == oracle(url)


@pytest.mark.parametrize("url", [b"http://example.com/", None, 42, bytearray(b"http://h/")])
def test_host_of_what_is_not_a_str(twin: Any, url: Any) -> None:
    # bytes come back as urlsplit gives them (a Session takes a bytes URL); anything else is ""
    assert twin.host_of(url) == oracle(url)


def test_the_cache_is_bounded_and_stays_right(twin: Any) -> None:
    for i in range(5000):
        url = f"http://h{i}.Example:80/x"
        assert twin.host_of(url) == f"h{i}.example"
    assert twin.host_of("http://h1.Example:80/") == "h1.example"


def test_a_job_holds_its_request(twin: Any) -> None:
    kw = {"headers": {"a": "b"}, "redirect": False, "timeout": 3}
    job = twin.ManagerJob(("GET", "u"), "GET", "http://Host:1/p", kw)
    assert (job.given, job.method, job.url, job.target) == (
        ("GET", "u"),
        "GET",
        "http://Host:1/p",
        "http://Host:1/p",
    )
    assert job.redirect is False and job.kw is kw and kw == {"headers": {"a": "b"}, "timeout": 3}
    assert (job.host, job.conn, job.whole) == ("host", None, None)
    assert twin.ManagerJob("x", "GET", "http://h/", {}).redirect is True
    job.conn, job.target, job.whole, job.kw = "pool", "/p", ("GET", "u", {}), None
    assert (job.conn, job.target, job.whole, job.kw) == ("pool", "/p", ("GET", "u", {}), None)
    with pytest.raises(AttributeError):
        job.other = 1  # (no attribute beyond its own, on either twin)
    assert hash(job) == hash(job) and job != twin.ManagerJob("x", "GET", "http://h/", {})


def test_every_url_of_the_small_grammar_twice(twin: Any) -> None:
    # Every scheme, join, host and tail above, in two passes: the first fills the cache with
    # the authorities the plain URLs have, the second asks every URL again, so a URL that only
    # looks plain (a scheme starting with a digit, a join of one slash) meets a cached
    # authority and must not take its answer.
    urls = [s + j + h + t for s in _SCHEMES for j in _JOINS for h in _HOSTS for t in _TAILS]
    for _ in range(2):
        for url in urls:
            assert twin.host_of(url) == oracle(url), url
