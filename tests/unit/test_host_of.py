"""``fastpool.multi.host_of``, the politeness key of ``map``: the same answer as
``urlsplit(url).hostname`` for any input, though it parses only the authority (and caches it)."""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpool.multi import host_of


def oracle(url: Any) -> str:
    try:
        return urlsplit(url).hostname or ""
    except Exception:  # noqa: BLE001 - not a URL: the key is ""
        return ""


CORPUS = [
    "http://Example.COM/path",
    "https://user:pw@Host.example:8443/a?b#c",
    "http://127.0.0.1:8080",
    "http://[::1]:80/x",
    "http://[::1/x",  # unbalanced bracket: urlsplit refuses it
    "http://host?query",
    "http://host#frag",
    "http://Host:8080",  # the authority to the end
    "http://host/pa\tth\n",  # a tab or newline past the authority
    "http://host\n",
    "http://ho\rst:1/",
    "http://h.example:8080#x",
    "http://ho\tst/",  # urlsplit drops tabs and newlines anywhere
    "http://ho\nst/",
    " http://leading.space/",
    "svn+ssh://host/repo",
    "1http://not.a.scheme/",
    "http:/one.slash/",
    "HTTP://UPPER/",
    "http://ünïcode.example/",
    "http://@/",
    "http://us[er@host/",  # urlsplit refuses a bracket in the userinfo
    "http://user:p@ss@Host:1/",
    "http://:80/",
    "",
    "no-scheme",
    "mailto:someone@example.com",
    b"http://bytes.example/",
    None,
    42,
]


@pytest.mark.parametrize("url", CORPUS)
def test_the_corpus_matches_urlsplit(url: Any) -> None:
    assert host_of(url) == oracle(url)
    assert host_of(url) == oracle(url)  # from the cache too


@settings(max_examples=400, deadline=None)
@given(
    st.text(alphabet="hHtTpPs:/?#@[]\t\n\r .aA1-+%\\ü", max_size=40),
    st.sampled_from(["", "http://", "https://", "HTTP://", "h2://", "x+y://"]),
)
def test_any_text_matches_urlsplit(rest: str, prefix: str) -> None:
    url = prefix + rest
    assert host_of(url) == oracle(url)
    assert host_of(url) == oracle(url)


@pytest.mark.parametrize("name", ["fastpool._job_py", "fastpool._job_c"])
def test_no_credentials_stay_in_the_cache(name: str) -> None:
    try:
        twin = importlib.import_module(name)
    except ImportError:
        pytest.skip("no compiled job core in this build")
    assert twin.host_of("https://alice:s3cret@Cached.example:8443/x") == "cached.example"
    assert "Cached.example:8443" in twin._HOST_OF_AUTHORITY  # (the cache the twin reads)
    assert not [key for key in twin._HOST_OF_AUTHORITY if "s3cret" in key]
