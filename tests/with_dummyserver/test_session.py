"""fastpool.Session: requests' API on real local servers, defaults, mounts, environment, pickling."""

from __future__ import annotations

import json
import os
import pickle
from collections import OrderedDict
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter

import fastpool
from fastpool import sessions
from fastpool.cookies import ThreadSafeCookieJar
from fastpool.sessions import (
    DEFAULT_ADAPTER,
    DEFAULT_POOL_CONNECTIONS,
    DEFAULT_POOL_MAXSIZE,
    Session,
)

ENV_NAMES = (
    "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
    "no_proxy", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NETRC",
)  # fmt: skip


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No proxy, CA-bundle or netrc settings of the machine's leak into a test."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


def echo(response: requests.Response) -> dict[str, Any]:
    data: dict[str, Any] = response.json()
    return data


# --- the class and its defaults ----------------------------------------------------------------
def test_is_a_requests_session_and_public_name() -> None:
    assert fastpool.Session is Session
    assert issubclass(Session, requests.Session)
    assert sessions.DEFAULT_ADAPTER is DEFAULT_ADAPTER


def test_default_adapters_are_sized_for_threads_and_crawlers() -> None:
    session = Session()
    assert list(session.adapters) == ["https://", "http://"]
    assert isinstance(session.adapters, OrderedDict)
    for adapter in session.adapters.values():
        assert type(adapter) is DEFAULT_ADAPTER
        assert adapter._pool_connections == DEFAULT_POOL_CONNECTIONS == 256
        assert adapter._pool_maxsize == DEFAULT_POOL_MAXSIZE == 64
    # One adapter for both schemes, so that max_connections caps the whole Session.
    assert session.adapters["https://"] is session.adapters["http://"]
    assert isinstance(session.cookies, ThreadSafeCookieJar)


def test_max_connections_caps_the_whole_session(
    server_factory: Any, https_server: Any, ca_bundle: str
) -> None:
    """max_connections counts every host and both schemes; at the cap the oldest idle
    connection is closed to make room, so a sequential crawl never waits."""
    hosts = [server_factory("127.0.0.2"), server_factory("127.0.0.3"), server_factory("127.0.0.4")]
    with Session(max_connections=2, pool_timeout=2) as session:
        session.verify = ca_bundle
        for _ in range(2):
            for server in hosts:
                assert len(session.get(server.url + "/bytes/10").content) == 10
            assert len(session.get(https_server.url + "/bytes/10").content) == 10
        stats = session.pool_stats()
        assert len(stats.hosts) == 4  # four origins, two schemes, one cap
        assert stats.total.open <= 2  # without the cap all four would be idle now
        assert stats.total.in_use == 0


def test_settings_start_as_requests_sets_them() -> None:
    """Session.__init__ sets requests' attributes itself: this keeps them in step."""
    ours, theirs = vars(Session()), vars(requests.Session())
    assert set(theirs) - {"adapters"} <= set(ours)
    for name, value in theirs.items():
        if name == "cookies":
            assert type(ours[name]) is ThreadSafeCookieJar and len(ours[name]) == len(value) == 0
        elif name != "adapters":
            assert ours[name] == value, name
    assert set(requests.Session.__attrs__) <= set(ours) | {"adapters"}


def test_pool_sizes_are_keyword_options() -> None:
    session = Session(pool_connections=3, pool_maxsize=5)
    for adapter in session.adapters.values():
        assert (adapter._pool_connections, adapter._pool_maxsize) == (3, 5)
    with pytest.raises(TypeError):
        Session(3)  # type: ignore[misc]


# --- the verbs on a real server ----------------------------------------------------------------
def test_verbs_reach_the_server(app_server: Any) -> None:
    url = f"{app_server.url}/echo"
    with Session() as session:
        assert echo(session.get(url, params={"a": "1", "b": ["x", "y"]}))["query"] == "a=1&b=x&b=y"
        assert echo(session.post(url, data={"k": "v"}))["body"] == "k=v"
        assert json.loads(echo(session.post(url, json={"j": 1}))["body"]) == {"j": 1}
        assert echo(session.put(url, data=b"put"))["body"] == "put"
        assert echo(session.patch(url, data="patch"))["body"] == "patch"
        assert echo(session.delete(url))["method"] == "DELETE"
        assert echo(session.options(url))["method"] == "OPTIONS"
        head = session.head(url)
        assert head.status_code == 200 and head.content == b""
        assert echo(session.request("GET", url.encode()))["method"] == "GET"
    # one keep-alive connection served them all
    assert app_server.connections == 1


def test_session_settings_are_applied(app_server: Any) -> None:
    with Session() as session:
        session.headers["X-Session"] = "yes"
        session.params = {"sp": "1"}
        response = session.get(f"{app_server.url}/echo", headers={"X-Request": "r"})
        data = echo(response)
    headers = {name.lower(): value for name, value in data["headers"]}
    assert headers["x-session"] == "yes" and headers["x-request"] == "r"
    assert headers["user-agent"].startswith("python-requests/")
    assert data["query"] == "sp=1"


def test_cookies_persist_across_requests_and_redirects(app_server: Any) -> None:
    with Session() as session:
        response = session.get(f"{app_server.url}/cookies/set?a=1&b=2")
        assert [r.status_code for r in response.history] == [302]
        assert response.json()["cookies"] == {"a": "1", "b": "2"}
        assert session.cookies.get_dict() == {"a": "1", "b": "2"}
        again = session.get(f"{app_server.url}/cookies", cookies={"c": "3"})
        assert again.json()["cookies"] == {"a": "1", "b": "2", "c": "3"}
        assert "c" not in session.cookies


def test_redirects_history_and_limit(app_server: Any) -> None:
    with Session() as session:
        response = session.get(f"{app_server.url}/redirect/3")
        assert len(response.history) == 3 and response.json()["path"] == "/echo"
        not_followed = session.get(f"{app_server.url}/redirect/2", allow_redirects=False)
        assert not_followed.status_code == 302 and not_followed.next is not None
        session.max_redirects = 2
        with pytest.raises(requests.TooManyRedirects, match="Exceeded 2 redirects"):
            session.get(f"{app_server.url}/redirect/5")


def test_basic_auth_from_session_and_from_netrc(
    app_server: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{app_server.url}/basic-auth/user/pw"
    with Session() as session:
        assert session.get(url).status_code == 401
        session.auth = ("user", "pw")
        assert session.get(url).json()["authenticated"] is True
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine {app_server.host} login user password pw\n")
    monkeypatch.setenv("NETRC", str(netrc))
    with Session() as session:
        assert session.get(url).status_code == 200
        session.trust_env = False
        assert session.get(url).status_code == 401


def test_streaming_and_closing_responses(app_server: Any) -> None:
    with Session() as session:
        response = session.get(f"{app_server.url}/bytes/5000", stream=True)
        assert len(b"".join(response.iter_content(1000))) == 5000
        response.close()
        assert len(session.get(f"{app_server.url}/bytes/10").content) == 10
    assert app_server.connections == 1  # the closed stream gave its connection back


# --- mount / get_adapter ---------------------------------------------------------------------
class Named(BaseAdapter):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.closed = 0

    def send(self, request: Any, **kwargs: Any) -> Any:  # pragma: no cover - never sent
        raise NotImplementedError

    def close(self) -> None:
        self.closed += 1


def test_mount_orders_like_requests_and_matches_longest_prefix() -> None:
    ours, theirs = Session(), requests.Session()
    adapters = {name: Named(name) for name in ("a", "b", "c")}
    for session in (ours, theirs):
        session.adapters.clear()
        session.mount("http://example.com/api", adapters["a"])
        session.mount("HTTP://EXAMPLE.com", adapters["b"])
        session.mount("h", adapters["c"])
    assert list(ours.adapters) == list(theirs.adapters)
    for url in ("http://example.com/api/v1", "http://EXAMPLE.com/x", "hTTps://other", "hx:"):
        assert ours.get_adapter(url) is theirs.get_adapter(url)


def test_no_match_raises_invalid_schema_with_requests_message() -> None:
    session = Session()
    with pytest.raises(requests.exceptions.InvalidSchema) as info:
        session.get_adapter("ftp://example.com/")
    assert str(info.value) == "No connection adapters were found for 'ftp://example.com/'"
    with pytest.raises(requests.exceptions.InvalidSchema):
        session.get("ftp://example.com/")


def test_direct_changes_to_adapters_are_seen() -> None:
    session = Session()
    special = Named("special")
    session.adapters["http://special"] = special  # appended last, behind mount's back
    assert session.get_adapter("http://special/x") is session.adapters["http://"]  # requests too
    session.adapters.move_to_end("http://special", last=False)
    assert session.get_adapter("http://special/x") is special
    del session.adapters["http://special"]
    session.adapters.clear()
    with pytest.raises(requests.exceptions.InvalidSchema):
        session.get_adapter("http://special/x")
    session.adapters = {"http://": special}  # type: ignore[assignment]
    assert isinstance(session.adapters, OrderedDict)
    assert session.get_adapter("http://x") is special


def test_a_prefix_that_is_not_a_str_behaves_as_in_requests() -> None:
    ours, theirs = Session(), requests.Session()
    special = Named("bytes")
    for session in (ours, theirs):
        session.mount(b"http://bytes", special)  # type: ignore[arg-type]
    for session in (ours, theirs):  # longer than "http://": tried first, and str vs bytes fails
        with pytest.raises(TypeError):
            session.get_adapter("http://bytes/")
    for session in (ours, theirs):
        session.adapters.move_to_end(b"http://bytes")  # type: ignore[arg-type]
        assert session.get_adapter("http://bytes/") is session.adapters["http://"]


def test_close_closes_every_adapter_and_context_manager_closes() -> None:
    adapters = [Named("one"), Named("two")]
    with Session() as session:
        session.mount("http://one", adapters[0])
        session.mount("http://two", adapters[1])
    assert [a.closed for a in adapters] == [1, 1]


# --- pickling ------------------------------------------------------------------------------------
def test_pickle_round_trip_keeps_settings_and_works(app_server: Any) -> None:
    session = Session()
    session.headers["X-Kept"] = "1"
    session.get(f"{app_server.url}/cookies/set?k=v")
    session.mount("http://mounted.example", DEFAULT_ADAPTER())
    clone = pickle.loads(pickle.dumps(session))
    assert type(clone) is Session
    assert list(clone.adapters) == list(session.adapters)
    assert clone.headers["X-Kept"] == "1"
    assert isinstance(clone.cookies, ThreadSafeCookieJar)
    assert clone.cookies.get_dict() == {"k": "v"}
    assert clone.get(f"{app_server.url}/cookies").json()["cookies"] == {"k": "v"}
    session.close()
    clone.close()


def test_thread_safe_jar_copies_and_pickles_as_itself() -> None:
    jar = ThreadSafeCookieJar()
    jar.set("a", "1", domain="example.com")
    jar.set("b", "2")
    copied = jar.copy()
    assert type(copied) is ThreadSafeCookieJar and copied.get_dict() == jar.get_dict()
    clone = pickle.loads(pickle.dumps(jar))
    assert type(clone) is ThreadSafeCookieJar and clone.get_dict() == {"a": "1", "b": "2"}
    clone.set("c", "3")  # the lock came back
    assert len(clone) == 3 and len(jar) == 2


# --- the environment: read once, refreshed on request ----------------------------------------
def test_ca_bundle_variable_is_read_once_then_refreshed(
    https_server: Any, ca_bundle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{https_server.url}/echo"
    with Session() as session:
        with pytest.raises(requests.exceptions.SSLError):
            session.get(url)  # the system CAs do not know the test CA
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_bundle)
        with pytest.raises(requests.exceptions.SSLError):
            session.get(url)  # the snapshot still says: no CA bundle
        session.refresh_environment()
        assert session.get(url).status_code == 200
        assert session.environment().ca_bundle == ca_bundle


def test_proxy_from_environment_and_no_proxy(
    app_server: Any, proxy_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", proxy_server.url)
    url = f"{app_server.url}/echo"
    with Session() as session:
        assert session.get(url).status_code == 200
        assert proxy_server.request_lines == [f"GET {url} HTTP/1.1"]
        monkeypatch.setenv("no_proxy", "127.0.0.0/8")
        session.refresh_environment()
        assert session.get(url).status_code == 200
        assert len(proxy_server.request_lines) == 1  # bypassed this time
    assert app_server.requests == 2


def test_environment_snapshot_repr_and_lazy_read(monkeypatch: pytest.MonkeyPatch) -> None:
    session = Session()
    assert session._environment is None  # nothing read until needed
    monkeypatch.setenv("http_proxy", "http://p.test:1")
    env = session.environment()
    assert session.environment() is env
    assert env.proxies == {"http": "http://p.test:1"}
    assert "p.test" not in repr(env) and "http" in repr(env)  # proxy URLs may hold passwords
    assert os.environ["http_proxy"] == "http://p.test:1"
