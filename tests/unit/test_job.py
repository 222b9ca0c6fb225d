"""A map item's job and its politeness key (``fastpool._job``), each twin against the oracle:
``host_of(url)`` is ``urlsplit(url).hostname or ""`` (the compiled twin scans a plain URL's
characters, the pure one asks a regular expression), asked twice (a miss, then the cache), and
``ManagerJob`` holds what it is given the same way on both.
"""

from __future__ import annotations

import copy
import importlib
import pickle
import subprocess
import sys
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
    except (ValueError, TypeError, AttributeError):  # not a URL: host_of answers ""
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


def test_an_error_that_is_not_about_the_url_is_raised_and_not_kept(
    twin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (a hostile review: a RecursionError deep in a caller's stack, or a signal handler's
    # exception, was swallowed and "" kept as the host's key for the rest of the crawl)
    def interrupted(url: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    url = "http://Poisoned.example:8080/page"
    monkeypatch.setattr(twin, "urlsplit", interrupted)
    with pytest.raises(RecursionError):
        twin.host_of(url)
    monkeypatch.undo()
    assert "Poisoned.example:8080" not in twin._HOST_OF_AUTHORITY
    assert twin.host_of(url) == twin.host_of(url) == "poisoned.example"


def test_a_long_authority_is_answered_and_not_kept(twin: Any) -> None:
    # no host name is that long: a hostile redirect's Location must not fill the cache
    longest = "h" * (twin._CACHED_AUTHORITY_MAX - 5) + ":8080"
    for host in (longest, "h" * 60000, "H" * 60000 + ":1"):
        url = f"http://{host}/x"
        assert twin.host_of(url) == twin.host_of(url) == oracle(url)
        assert (host in twin._HOST_OF_AUTHORITY) == (host == longest)


def test_a_job_is_neither_pickled_copied_nor_subclassed(twin: Any) -> None:
    job = twin.ManagerJob("x", "GET", "http://h/", {})
    for refused in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError):
            refused(job)
    with pytest.raises(TypeError):
        type("Sub", (twin.ManagerJob,), {})


def test_a_long_chain_of_jobs_is_freed(twin: Any) -> None:
    # in a child (a crash would end the test run): 300,000 jobs linked through .conn, freed
    # in a thread with a 1 MiB stack (the compiled struct recursed in C without a trashcan)
    code = f"""
import threading, {twin.__name__} as twin
def free():
    head = None
    for _ in range(300_000):
        job = twin.ManagerJob(None, "GET", "http://h/", {{}})
        job.conn = head
        head = job
    del job
    head = None
threading.stack_size(1 << 20)
thread = threading.Thread(target=free)
thread.start()
thread.join()
print("freed")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert (done.returncode, done.stdout.strip()) == (0, "freed"), done.stderr[-500:]


def test_the_plain_ways_are_urllib3_s(twin: Any) -> None:
    # the methods RequestMethods.request sends without a body, and the arguments it encodes
    import inspect

    from urllib3._request_methods import RequestMethods

    assert twin.URL_METHODS == RequestMethods._encode_url_methods
    encoded = set(inspect.signature(RequestMethods.request).parameters) - {
        "self", "method", "url", "urlopen_kw",
    }  # fmt: skip
    assert encoded <= twin.ENCODED  # (and the two request_encode_body adds)


_HEADERS = {"X-Default": "1"}
_KWARG_NAMES = [
    "timeout", "retries", "redirect", "pool_timeout", "headers", "fields", "body", "json",
    "preload_content", "encode_multipart",
]  # fmt: skip
_ITEMS = st.one_of(
    st.sampled_from(["http://h/", "HTTP://H:1/x?y"]),
    st.tuples(
        st.sampled_from(["GET", "get", "Head", "DELETE", "options", "POST", "PUT", "", b"GET"]),
        st.sampled_from(["http://h/p", b"http://h/", None]),
    ),
    st.tuples(
        st.sampled_from(["GET", "head", "POST"]),
        st.sampled_from(["http://h/p", "https://h:8443/"]),
        st.one_of(
            st.dictionaries(
                st.sampled_from(_KWARG_NAMES),
                st.sampled_from([None, False, True, 2.0, {"a": "1"}]),
                max_size=3,
            ),
            st.just([("timeout", 1)]),
            st.just({1: "x", "timeout": 2.0}),  # (not a keyword: request() refuses it)
        ),
    ),
    st.sampled_from([(), ("GET",), ("GET", "http://h/", {}, None), ["GET", "http://h/"], 7]),
)


@given(_ITEMS)
def test_plain_job_takes_what_has_nothing_to_encode_alike_on_both_twins(item: Any) -> None:
    # the oracle: the rule as the docstring states it; both twins answer alike, and the job
    # holds what ManagerJob holds given the same parts
    from fastpool import _job_py

    twins = [_job_py]
    try:
        twins.append(importlib.import_module("fastpool._job_c"))
    except ImportError:
        pass
    if type(item) is str:
        expected: Any = ("GET", item, {"headers": _HEADERS})
    elif (
        type(item) is tuple
        and len(item) in (2, 3)
        and type(item[0]) is str
        and type(item[1]) is str
        and item[0].upper() in ("GET", "HEAD", "DELETE", "OPTIONS")
        and (len(item) == 2 or type(item[2]) is dict)
        and all(type(name) is str for name in (item[2] if len(item) == 3 else {}))
        and not (dict(item[2]) if len(item) == 3 else {}).keys()
        & {"headers", "fields", "body", "json", "preload_content", "encode_multipart",
           "multipart_boundary"}
    ):  # fmt: skip
        kwargs = dict(item[2]) if len(item) == 3 else {}
        expected = (item[0].upper(), item[1], {"headers": _HEADERS, **kwargs})
    else:
        expected = None
    for module in twins:
        job = module.plain_job(item, _HEADERS)
        if expected is None:
            assert job is None, module
            continue
        method, url, kw = expected
        made = module.ManagerJob(item, method, url, dict(kw))
        assert (job.given, job.method, job.url, job.kw, job.redirect, job.host) == (
            made.given, made.method, made.url, made.kw, made.redirect, made.host,
        ), module  # fmt: skip
        assert job.kw["headers"] is _HEADERS
        if len(item) == 3 if type(item) is tuple else False:
            assert job.kw is not item[2]  # (the caller's dict is never the job's)


def test_plain_jobs_step_aside_for_a_request_of_another(twin: Any) -> None:
    # PlainJobs asks at every item whether the manager's request is still fastpool's own: a
    # patch (on the object or its class) must see the request, so the general steps take it
    class Manager:
        headers = _HEADERS

        def request(self) -> None:
            pass

    manager = Manager()
    jobs = twin.PlainJobs(manager, Manager.request)
    assert jobs("http://h/").kw == {"headers": _HEADERS}
    assert jobs(("POST", "http://h/")) is None
    manager.request = lambda: None  # type: ignore[method-assign]
    assert jobs("http://h/") is None
    del manager.request
    assert jobs("http://h/") is not None
    original = Manager.request
    Manager.request = lambda self: None  # type: ignore[method-assign]
    assert jobs("http://h/") is None
    Manager.request = original  # type: ignore[method-assign]
    assert jobs("http://h/") is not None
