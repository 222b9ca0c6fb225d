"""fastpool.Session against requests.Session: the same PreparedRequest, the same send arguments.

Both sessions get a recording adapter mounted for every URL; it records what the Session hands
it (the PreparedRequest and the send keyword arguments) and answers 200 without sending, so the
environment may name proxies that do not exist. The environment (proxy variables, no_proxy, a
netrc file through ``$NETRC``, the CA-bundle variables) is set before both sessions are made.
Redirect handling (rebuild_proxies, rebuild_auth) is compared on a real local server.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from http.cookiejar import CookieJar
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from requests.adapters import BaseAdapter, HTTPAdapter
from requests.models import PreparedRequest, Response
from requests.structures import CaseInsensitiveDict

import fastpool
from fastpool._environment import Environment

# fastpool.Session reads no_proxy and netrc by the rules of requests 2.34, whatever requests is
# installed. 2.34 fixed two things: a no_proxy entry matches a host only whole or at a dot
# ("example.com" no longer bypasses the proxy for "notexample.com"), and netrc is looked up by
# the URL's hostname (so bytes URLs, URLs with user info, without a host, and entries without a
# login or password get 2.34's answers). On an older requests the tests below take 2.34's
# answers as expected (netrc_auth_2_34; the installed should_bypass_proxies without the entries
# that match only as a bare suffix), and the environment matrix leaves those cases out.
OLD_ENVIRONMENT_RULES = tuple(int(part) for part in requests.__version__.split(".")[:2]) < (2, 34)


def bare_suffix(url: str, entry: str) -> bool:
    """Whether the no_proxy ``entry`` matches ``url``'s host (or host:port) only as a bare
    suffix, which requests before 2.34 took for a match (IPv4 hosts were never matched so)."""
    from urllib.parse import urlparse

    parsed = urlparse(url)
    host, entry = parsed.hostname, entry.lstrip(".")
    if host is None or not entry or requests.utils.is_ipv4_address(host):
        return False
    names = [host] + ([f"{host}:{parsed.port}"] if parsed.port else [])
    return any(
        name.endswith(entry) and name != entry and not name.endswith("." + entry) for name in names
    )


def without_bare_suffixes(url: str, no_proxy: str | None) -> str | None:
    """``no_proxy`` with each bare-suffix entry replaced by one that matches nothing (removing
    it could leave "*" alone, which matches everything)."""
    if no_proxy is None:
        return None
    entries = no_proxy.replace(" ", "").split(",")
    return ",".join("matches-nothing.invalid" if bare_suffix(url, e) else e for e in entries)


def fixed_by_2_34_no_proxy(url: str, no_proxy: str | None) -> bool:
    """Whether an entry of ``no_proxy`` or of the environment's is a bare suffix of the host."""
    values = [no_proxy, os.environ.get("no_proxy"), os.environ.get("NO_PROXY")]
    return any(without_bare_suffixes(url, v) != v.replace(" ", "") for v in values if v)


def netrc_auth_2_34(url: str | bytes) -> tuple[str, str] | None:
    """requests 2.34's get_netrc_auth for a $NETRC file: by the URL's hostname, "" for a
    missing login or password."""
    import netrc
    from urllib.parse import urlparse

    host = urlparse(url.decode() if isinstance(url, bytes) else url).hostname
    if host is None:
        return None
    try:
        entry = netrc.netrc(os.environ["NETRC"]).authenticators(host)
    except (netrc.NetrcParseError, OSError):
        return None
    if not entry or not any(entry):
        return None
    return (entry[0 if entry[0] else 1] or "", entry[2] or "")


# Every variable a Session reads; cleared around each case so the machine's own do not leak in.
ENV_NAMES = (
    "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
    "no_proxy", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NETRC", "REQUEST_METHOD",
)  # fmt: skip

NETRC_TEXT = """\
machine example.com login alice password s3cret
machine 127.0.0.1 login local password pw1
machine only-account.test account acct password pw2
default login anon password anonpw
"""


@contextlib.contextmanager
def environment(env: dict[str, str], netrc_text: str | None, tmp_dir: str) -> Iterator[None]:
    """Set exactly ``env`` (and a netrc file through $NETRC when given), restore afterwards."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ENV_NAMES:
            mp.delenv(name, raising=False)
        mp.setenv("HOME", tmp_dir)  # no ~/.netrc of the machine's
        for name, value in env.items():
            mp.setenv(name, value)
        if netrc_text is not None:
            path = os.path.join(tmp_dir, "netrc")
            with open(path, "w") as f:
                f.write(netrc_text)
            mp.setenv("NETRC", path)
        yield


class Recorder(BaseAdapter):
    """Records ``send`` calls and answers an empty 200 without touching the network."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[PreparedRequest, dict[str, Any]]] = []

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:  # type: ignore[override]
        self.calls.append((request, kwargs))
        response = Response()
        response.status_code = 200
        response.headers = CaseInsensitiveDict()
        response._content = b""
        response.url = request.url  # type: ignore[assignment]
        response.request = request
        return response

    def close(self) -> None:
        pass


class RecordingHTTPAdapter(HTTPAdapter):
    """The stock adapter, recording what each ``send`` was given (real sockets)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[PreparedRequest, dict[str, Any]]] = []

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:  # type: ignore[override]
        self.calls.append((request.copy(), dict(kwargs)))
        return super().send(request, **kwargs)


def cookie_list(jar: Any) -> Any:
    if jar is None:
        return None
    return (
        type(jar).__name__,
        sorted((c.name, c.value, c.domain, c.path) for c in jar),
    )


def prepared_view(p: PreparedRequest) -> tuple[Any, ...]:
    """What the contract compares: method, URL, headers in order, body, cookies, hooks."""
    return (
        p.method,
        p.url,
        list(p.headers.items()),
        p.body,
        cookie_list(p._cookies),
        {k: len(v) for k, v in p.hooks.items()},
        type(p.headers).__name__,
    )


def outcome(func: Any) -> tuple[str, Any]:
    try:
        return ("ok", func())
    except Exception as exc:  # noqa: BLE001 - the same exception type and text is the expected outcome
        return ("raised", (type(exc).__name__, str(exc)))


def session_pair(configure: Any = None) -> tuple[requests.Session, fastpool.Session]:
    ours, theirs = fastpool.Session(), requests.Session()
    for session in (theirs, ours):
        session.adapters.clear()
        session.mount("", Recorder())  # every URL, even "mailto:"
        if configure is not None:
            configure(session)
    return theirs, ours


def sent(session: requests.Session) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    recorder = session.get_adapter("http://x")
    return [(prepared_view(p), kwargs) for p, kwargs in recorder.calls]  # type: ignore[attr-defined]


def run_both(
    kwargs: dict[str, Any], configure: Any = None, method: str = "GET", url: str = ""
) -> tuple[Any, Any]:
    theirs, ours = session_pair(configure)
    results = []
    for session in (theirs, ours):
        result = outcome(lambda s=session: s.request(method, url, **kwargs))
        status = result[1].status_code if result[0] == "ok" else result[1]
        results.append((status, sent(session)))
    return results[0], results[1]


# --- the environment matrix -------------------------------------------------------------------
ENVIRONMENTS: list[dict[str, str]] = [
    {},
    {"http_proxy": "http://proxy.test:3128", "https_proxy": "http://user:pw@proxy.test:3129"},
    {"HTTP_PROXY": "http://upper.test:1", "http_proxy": "http://lower.test:2"},
    {"ALL_PROXY": "socks5://all.test:1080"},
    {"http_proxy": "http://p.test:1", "no_proxy": "localhost,.example.com,127.0.0.1"},
    {"https_proxy": "http://p.test:1", "NO_PROXY": "10.0.0.0/8, 192.168.1.0/24"},
    {"http_proxy": "http://p.test:1", "https_proxy": "http://p.test:2", "no_proxy": "*"},
    {"http_proxy": "http://p.test:1", "no_proxy": "example.com:8080,sub.example.org"},
    {"http_proxy": "http://p.test:1", "no_proxy": "", "NO_PROXY": "example.com"},
    {"http_proxy": "http://p.test:1", "REQUEST_METHOD": "GET"},  # CGI: HTTP_PROXY ignored
    {"HTTP_PROXY": "http://cgi.test:1", "REQUEST_METHOD": "GET"},
    {"REQUESTS_CA_BUNDLE": "/tmp/requests-ca.pem"},
    {"CURL_CA_BUNDLE": "/tmp/curl-ca.pem"},
    {"REQUESTS_CA_BUNDLE": "", "CURL_CA_BUNDLE": "/tmp/curl-ca.pem"},
]

URLS = [
    "http://example.com/",
    "https://example.com/path?q=1",
    "http://example.com:8080/x",
    "http://sub.example.com/",
    "https://sub.example.org/a",
    "http://127.0.0.1:5000/",
    "http://10.1.2.3/",
    "http://192.168.1.77:81/",
    "http://localhost/",
    "http://[::1]:8080/",
    "http://only-account.test/",
    "http://alice:pw@example.com/",
    "mailto:someone@example.com",
]

REQUEST_KWARGS: list[dict[str, Any]] = [
    {},
    {"proxies": {"http": "http://explicit.test:9"}},
    {"proxies": {"no_proxy": "example.com"}},
    {"proxies": {"no_proxy": ""}},
    {"proxies": {"http://example.com": "http://per-host.test:1", "all": "http://all.test:2"}},
    {"verify": False},
    {"verify": "/tmp/explicit-ca.pem"},
    {"verify": True, "cert": ("/tmp/c.pem", "/tmp/k.pem")},
    {"auth": ("explicit", "auth")},
    {"stream": True, "timeout": 3},
    {"allow_redirects": False},
]


def configure_session(kind: str) -> Any:
    def configure(session: requests.Session) -> None:
        if kind == "trust_env_off":
            session.trust_env = False
        elif kind == "session_proxies":
            session.proxies = {"https": "http://session.test:1", "no_proxy": "localhost"}
        elif kind == "session_auth":
            session.auth = ("session", "auth")
        elif kind == "session_verify":
            session.verify = "/tmp/session-ca.pem"

    return configure


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    env=st.sampled_from(ENVIRONMENTS),
    netrc=st.sampled_from([None, NETRC_TEXT, "machine broken login", ""]),
    url=st.sampled_from(URLS),
    kwargs=st.sampled_from(REQUEST_KWARGS),
    session_kind=st.sampled_from(
        ["plain", "trust_env_off", "session_proxies", "session_auth", "session_verify"]
    ),
)
def test_environment_matrix_matches_requests(
    tmp_path_factory: pytest.TempPathFactory,
    env: dict[str, str],
    netrc: str | None,
    url: str,
    kwargs: dict[str, Any],
    session_kind: str,
) -> None:
    tmp_dir = str(tmp_path_factory.mktemp("env"))
    with environment(env, netrc, tmp_dir):
        if OLD_ENVIRONMENT_RULES:
            # Leave out what requests 2.34 changed (checked by the two tests further down).
            no_proxies = [kwargs.get("proxies", {}).get("no_proxy"), "localhost"]
            assume(not any(fixed_by_2_34_no_proxy(url, value) for value in no_proxies))
            assume(netrc is None or requests.utils.get_netrc_auth(url) == netrc_auth_2_34(url))
        theirs, ours = run_both(dict(kwargs), configure_session(session_kind), url=url)
    assert ours == theirs


def test_send_without_proxies_resolves_them_like_requests(tmp_path: Any) -> None:
    env = {"http_proxy": "http://p.test:1", "no_proxy": "skip.test"}
    with environment(env, None, str(tmp_path)):
        theirs, ours = session_pair()
        for session in (theirs, ours):
            for url in ("http://a.test/", "http://skip.test/"):
                session.send(session.prepare_request(requests.Request("GET", url)))
        assert sent(ours) == sent(theirs)
        assert sent(ours)[0][1]["proxies"] == {"http": "http://p.test:1"}


def test_environment_is_read_once_and_refreshed_on_request(tmp_path: Any) -> None:
    with environment({"http_proxy": "http://first.test:1"}, None, str(tmp_path)):
        _, ours = session_pair()
        ours.get("http://a.test/")
        os.environ["http_proxy"] = "http://second.test:2"
        ours.get("http://a.test/")
        ours.refresh_environment()
        ours.get("http://a.test/")
        proxies = [kwargs["proxies"]["http"] for _, kwargs in sent(ours)]
    assert proxies == ["http://first.test:1", "http://first.test:1", "http://second.test:2"]


def test_netrc_file_is_parsed_once(tmp_path: Any) -> None:
    with environment({}, NETRC_TEXT, str(tmp_path)):
        _, ours = session_pair()
        ours.get("http://example.com/")
        os.remove(os.environ["NETRC"])  # the snapshot holds the parsed file
        ours.get("http://example.com/")
        headers = [dict(view[2]).get("Authorization") for view, _ in sent(ours)]
    assert headers[0] == headers[1] == requests.auth._basic_auth_str("alice", "s3cret")


# --- request preparation over a broad corpus ----------------------------------------------------
HOSTS = st.sampled_from([
    "example.com", "EXAMPLE.com", "127.0.0.1", "[::1]", "bücher.example", "xn--bcher-kva.example",
    "*bad.example", ".dot.example", "a..b", "host_name.test", "", "user:pw@example.com",
    "例え.テスト", "localhost.",
])  # fmt: skip
PORTS = st.sampled_from(["", ":80", ":8080", ":080", ":65535", ":65536", ":", ":0", ":x"])
SEGMENT = st.text(
    alphabet=st.sampled_from(list("aZ09-._~!$&'()*+,;=:@%2f /?#\\\"<>^`{|}é€\t")),
    max_size=6,
)
PATHS = st.lists(
    st.one_of(SEGMENT, st.sampled_from([".", "..", "%41", "%2F", "%zz", "%", "a%20b"])),
    max_size=4,
).map(lambda parts: "/" + "/".join(parts) if parts else "")
QUERIES = st.one_of(st.just(""), st.builds(lambda s: "?" + s, SEGMENT))
FRAGMENTS = st.one_of(st.just(""), st.builds(lambda s: "#" + s, SEGMENT))
SCHEMES = st.sampled_from(["http://", "https://", "HTTP://", "HtTpS://", "ftp://", "", "  http://"])
URL_TEXT = st.builds(
    lambda *parts: "".join(parts), SCHEMES, HOSTS, PORTS, PATHS, QUERIES, FRAGMENTS
)

PARAMS = st.one_of(
    st.none(),
    st.just({}),
    st.dictionaries(st.sampled_from(["a", "b", "é", "x y", "k&v"]), st.one_of(
        st.none(), st.sampled_from(["1", "two words", "ü", "", "=&?"]),
        st.lists(st.sampled_from(["1", "2", "ß"]), max_size=2)), max_size=3),
    st.sampled_from(["raw=1&x", b"bytes=1", [("l", "1"), ("l", "2")]]),
)  # fmt: skip
HEADER_VALUES = st.one_of(
    st.none(),
    st.sampled_from(["v", "text/html", " lead", "trail ", "a\r\nb", "é", "", b"bytes"]),
)
HEADERS = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(["X-A", "x-a", "Accept", "user-agent", "Content-Type", "Content-Length",
                         "Cookie", "Authorization", "Bad Name", b"X-Bytes"]),
        HEADER_VALUES, max_size=4),
    st.builds(CaseInsensitiveDict, st.dictionaries(st.sampled_from(["X-C", "Accept"]),
                                                   st.sampled_from(["1", "2"]), max_size=2)),
)  # fmt: skip
DATA = st.sampled_from([
    None, {}, [], "", b"", {"f": "1", "g": ["a", "b"]}, [("k", "v")], "raw text", b"raw bytes",
    "ü-text",
])  # fmt: skip
JSON = st.sampled_from([None, {"j": [1, 2]}, [], "s", 0])
COOKIES = st.sampled_from([None, {}, {"c1": "v1"}, {"c1": "v1", "c2": "v2"}])
AUTH = st.sampled_from([None, ("u", "p"), ("ü", "p"), ("", "")])
METHODS = st.sampled_from(["GET", "get", "POST", "HEAD", "PUT", "delete", "OPTIONS", "PATCH"])


def session_config(session_headers: Any, session_params: Any, session_cookie: bool) -> Any:
    def configure(session: requests.Session) -> None:
        if session_headers is not None:
            session.headers.update(session_headers)
        if session_params is not None:
            session.params = session_params
        if session_cookie:
            session.cookies.set("sess", "1", domain="example.com")
            session.cookies.set("everywhere", "2")

    return configure


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=METHODS,
    url=URL_TEXT,
    params=PARAMS,
    headers=HEADERS,
    data=DATA,
    json=JSON,
    cookies=COOKIES,
    auth=AUTH,
    session_headers=st.sampled_from([None, {"X-Session": "s"}, {"Accept": None}]),
    session_params=st.sampled_from([None, {"sp": "1"}]),
    session_cookie=st.booleans(),
)
def test_prepared_requests_match_requests(
    tmp_path_factory: pytest.TempPathFactory,
    method: str,
    url: str,
    params: Any,
    headers: Any,
    data: Any,
    json: Any,
    cookies: Any,
    auth: Any,
    session_headers: Any,
    session_params: Any,
    session_cookie: bool,
) -> None:
    kwargs = {"params": params, "headers": headers, "data": data, "json": json,
              "cookies": cookies, "auth": auth}  # fmt: skip
    configure = session_config(session_headers, session_params, session_cookie)
    with environment({}, None, str(tmp_path_factory.mktemp("prep"))):
        theirs, ours = run_both(kwargs, configure, method=method, url=url)
    assert ours == theirs


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com",
        "http://example.com/a/b?c=d",
        "https://example.com:8443/a;b/c,d@e?f=g/h?i",
        "http://example.com/a/./b/../c",
        "http://example.com/.well-known/x",
        "http://Example.COM/A",
        "http://example.com/%7Euser?%41=%2f",
        "http://example.com/?",
        "http://example.com/p?q#frag",
        "http://example.com:0/",
        "http://example.com:00080/",
        "http://example.com/ü?ä=ö",
        "http://bücher.example/",
        "https://example.com?x=1",
        b"http://example.com/bytes",
    ],
)
@pytest.mark.parametrize("params", [None, {"a": "1", "b": ["x", "y z"]}, "s=1"])
def test_url_normalisation_matches_requests(tmp_path: Any, url: Any, params: Any) -> None:
    with environment({}, None, str(tmp_path)):
        theirs, ours = run_both({"params": params}, url=url)
    assert ours == theirs


def test_hooks_and_request_objects_match_requests(tmp_path: Any) -> None:
    def hook(r: Any, **kwargs: Any) -> Any:
        return r

    with environment({}, None, str(tmp_path)):
        theirs, ours = session_pair(lambda s: s.hooks["response"].append(hook))
        for session in (theirs, ours):
            request = requests.Request("POST", "http://example.com/", hooks={"response": [hook]})
            session.send(session.prepare_request(request))
        assert sent(ours) == sent(theirs)


@pytest.mark.parametrize(
    "hooks",
    [
        None,
        {},
        {"response": []},
        {"response": "not callable"},
        {"response": [print, "not callable"]},
        {"response": print},
        {"not-an-event": []},
    ],
)
def test_request_hooks_argument_matches_requests(tmp_path: Any, hooks: Any) -> None:
    # fastpool.Session.request builds no Request object: the hooks argument must still be
    # checked and registered as Request(hooks=...) does.
    with environment({}, None, str(tmp_path)):
        theirs, ours = run_both({"hooks": hooks}, url="http://example.com/")
    assert ours == theirs


def test_a_subclass_overriding_a_step_gets_requests_sequence(tmp_path: Any) -> None:
    seen: list[str] = []

    class Traced(fastpool.Session):
        def prepare_request(self, request: requests.Request) -> PreparedRequest:
            seen.append(f"prepare {request.method} {request.url}")
            return super().prepare_request(request)

        def merge_environment_settings(self, *args: Any) -> dict[str, Any]:
            seen.append("merge")
            return super().merge_environment_settings(*args)

    with environment({}, None, str(tmp_path)):
        session = Traced()
        session.adapters.clear()
        session.mount("", Recorder())
        theirs = requests.Session()
        theirs.adapters.clear()
        theirs.mount("", Recorder())
        for s in (session, theirs):
            s.request("get", "http://example.com/a", params={"q": "1"}, timeout=3)
        assert seen == ["prepare GET http://example.com/a", "merge"]
        assert sent(session) == sent(theirs)


# --- adapters: the same answer as requests for every mount set and URL ---------------------------
PREFIX = st.text(alphabet=st.sampled_from(list("hHtTpPsS:/aA.İ")), max_size=9)


@settings(max_examples=600, deadline=None)
@given(
    mounts=st.lists(st.tuples(PREFIX, st.integers(0, 5)), max_size=8),
    edits=st.lists(st.tuples(st.sampled_from(["set", "del", "move"]), PREFIX), max_size=3),
    urls=st.lists(st.text(alphabet=st.sampled_from(list("hHtTpPsS:/aA.İi̇")), max_size=12),
                  min_size=1, max_size=6),
)  # fmt: skip
def test_get_adapter_matches_requests(
    mounts: list[tuple[str, int]], edits: list[tuple[str, str]], urls: list[str]
) -> None:
    theirs, ours = requests.Session(), fastpool.Session()
    for session in (theirs, ours):
        session.adapters.clear()
        for prefix, value in mounts:
            session.mount(prefix, value)  # type: ignore[arg-type]
        # direct changes to the OrderedDict, behind mount's back, as users do
        for action, prefix in edits:
            if action == "set":
                session.adapters[prefix] = 9  # type: ignore[assignment]
            elif action == "del":
                session.adapters.pop(prefix, None)
            elif prefix in session.adapters:
                session.adapters.move_to_end(prefix, last=False)  # type: ignore[attr-defined]
    assert list(ours.adapters.items()) == list(theirs.adapters.items())
    for url in urls:
        assert outcome(lambda u=url: ours.get_adapter(u)) == outcome(
            lambda u=url: theirs.get_adapter(u)
        )


# --- redirects on a real server: rebuild_auth, rebuild_proxies, cookies --------------------------
@pytest.mark.parametrize(
    "env",
    [
        {},
        # a proxy the local hosts bypass (a CIDR no_proxy entry)
        {"http_proxy": "http://127.0.0.9:9", "no_proxy": "127.0.0.0/8"},
    ],
)
@pytest.mark.parametrize("netrc", [None, NETRC_TEXT])
def test_redirects_match_requests(
    server_factory: Any, tmp_path: Any, env: dict[str, str], netrc: str | None
) -> None:
    first, second = server_factory("127.0.0.1"), server_factory("127.0.0.2")
    urls = [
        f"{first.url}/redirect/3",
        f"{first.url}/redirect-to?url={second.url}/echo",
        f"{first.url}/cookies/set?a=1&b=2",
        f"{first.url}/redirect-to?url=/echo&status_code=307",
    ]
    with environment(env, netrc, str(tmp_path)):
        sessions = (requests.Session(), fastpool.Session())
        results = []
        for session in sessions:
            recorder = RecordingHTTPAdapter()
            session.mount("http://", recorder)
            bodies = []
            for url in urls:
                response = session.post(url, data=b"payload", headers={"Authorization": "x"})
                bodies.append((response.status_code, response.url, len(response.history)))
            views = [(prepared_view(p), sorted(k.items())) for p, k in recorder.calls]
            results.append((bodies, views, cookie_list(session.cookies)[1]))
            session.close()
    assert results[1] == results[0]


# --- send: cookies from plain responses, hooks, the Request guard ------------------------------
def test_cookies_hooks_and_send_guard_match_requests(app_server: Any) -> None:
    set_cookie = f"{app_server.url}/response-headers?Set-Cookie=plain%3D1%3B%20Path%3D/"

    def hook(response: Any, **kwargs: Any) -> Any:
        response.hooked = True
        return response

    results = []
    for make in (requests.Session, fastpool.Session):
        with make() as session:
            plain = session.get(set_cookie)
            hooked = session.get(f"{app_server.url}/redirect/2", hooks={"response": hook})
            not_followed = session.get(f"{app_server.url}/redirect/1", allow_redirects=False)
            custom = make()
            custom.cookies = CookieJar()  # not a jar fastpool knows: requests' own extraction
            custom.get(set_cookie)
            custom.close()
            guard = outcome(lambda s=session: s.send(requests.Request("GET", app_server.url)))
            results.append((
                plain.status_code, cookie_list(session.cookies)[1], cookie_list(custom.cookies)[1],
                [r.status_code for r in hooked.history], getattr(hooked, "hooked", False),
                not_followed.next.url if not_followed.next else None, guard,
            ))  # fmt: skip
    assert results[1] == results[0]
    assert results[0][1] == [("plain", "1", "127.0.0.1", "/")]


def test_redirects_through_an_authenticating_proxy_match_requests(
    server_factory: Any, proxy_server_factory: Any, tmp_path: Any
) -> None:
    """rebuild_proxies on each hop: the proxy from the environment, its credentials sent."""
    first, second = server_factory("127.0.0.1"), server_factory("127.0.0.2")
    proxy = proxy_server_factory(auth=("user", "pw"))
    env = {"http_proxy": f"http://user:pw@{proxy.host}:{proxy.port}", "no_proxy": "127.0.0.2"}
    urls = [f"{first.url}/redirect/2", f"{first.url}/redirect-to?url={second.url}/echo"]
    results = []
    with environment(env, None, str(tmp_path)):
        for session in (requests.Session(), fastpool.Session()):
            recorder = RecordingHTTPAdapter()
            session.mount("http://", recorder)
            statuses = [session.get(url).status_code for url in urls]
            views = [(prepared_view(p), sorted(k.items())) for p, k in recorder.calls]
            results.append((statuses, views))
            session.close()
    assert results[1] == results[0]
    assert results[0][0] == [200, 200]
    # 3 requests for /redirect/2 and 2 for redirect-to, per session: as in requests, a proxy
    # chosen for the first URL stays for the hops, even to a no_proxy host
    assert len(proxy.request_lines) == 2 * 5


# --- cookies: a crawler's jar, many domains, every kind of cookie --------------------------------
COOKIE_SPECS: list[dict[str, Any]] = [
    {"name": "super", "value": "s", "domain": ""},
    {"name": "host", "value": "h", "domain": "example.com"},
    {"name": "dot", "value": "d", "domain": ".example.com"},
    {"name": "sub", "value": "u", "domain": "sub.example.com", "path": "/a"},
    {"name": "deep", "value": "p", "domain": ".example.com", "path": "/a/b"},
    {"name": "secure", "value": "x", "domain": "example.com", "secure": True},
    {"name": "expired", "value": "e", "domain": "example.com", "expires": 1},
    {"name": "future", "value": "f", "domain": "example.com", "expires": 4102444800},
    {"name": "port", "value": "o", "domain": "example.com", "port": "8080"},
    {"name": "local", "value": "l", "domain": "localhost.local"},
    {"name": "ip", "value": "i", "domain": "127.0.0.1"},
    {"name": "other", "value": "z", "domain": "other.test"},
    {"name": "dup", "value": "1", "domain": "example.com"},
    {"name": "dup", "value": "2", "domain": ".example.com"},
    {"name": "quoted", "value": '"a\\"b"', "domain": "example.com"},
    {"name": "plainquote", "value": '"ok"', "domain": "example.com"},
]
COOKIE_URLS = [
    "http://example.com/", "https://example.com/a/b/c", "http://sub.example.com/a",
    "http://example.com:8080/", "http://localhost/", "http://127.0.0.1:5000/",
    "http://nothing.test/", "https://other.test/x",
]  # fmt: skip


def add_cookies(specs: list[dict[str, Any]], many_domains: int) -> Any:
    def configure(session: requests.Session) -> None:
        for spec in specs:
            session.cookies.set_cookie(requests.cookies.create_cookie(**spec))
        for i in range(many_domains):  # a crawler's jar: hundreds of unrelated domains
            session.cookies.set(f"c{i}", str(i), domain=f"d{i % 97}.crawl.test", path=f"/{i % 3}")

    return configure


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=st.lists(st.sampled_from(COOKIE_SPECS), unique_by=lambda s: (s["name"], s["domain"])),
    many_domains=st.sampled_from([0, 300]),
    url=st.sampled_from(COOKIE_URLS),
    cookies=st.sampled_from([None, {"dup": "req"}, {"new": "n", "host": "override"}]),
    headers=st.sampled_from([None, {"Cookie": "user=1"}, {"Host": "sub.example.com"}]),
)
def test_cookie_jars_match_requests(
    tmp_path_factory: pytest.TempPathFactory,
    specs: list[dict[str, Any]],
    many_domains: int,
    url: str,
    cookies: Any,
    headers: Any,
) -> None:
    configure = add_cookies(specs, many_domains)
    with environment({}, None, str(tmp_path_factory.mktemp("jar"))):
        theirs, ours = session_pair(configure)
        results = []
        for session in (theirs, ours):
            result = outcome(lambda s=session: s.get(url, cookies=cookies, headers=headers))
            results.append((result[0], sent(session), cookie_list(session.cookies)[1]))
    assert results[1] == results[0]


# --- the environment snapshot against requests' own functions ------------------------------------
NO_PROXY_ENTRIES = st.sampled_from([
    "example.com", ".example.com", "sub.example.com", "example.com:8080", "*", "localhost",
    "127.0.0.1", "127.0.0.0/8", "10.0.0.0/8", "10.1.2.0/24", "192.168.0.0/33", "10.0.0.0/x",
    "::1", "[::1]", " spaced.test ", "EXAMPLE.COM", "",
])  # fmt: skip
NO_PROXY_VALUES = st.lists(NO_PROXY_ENTRIES, max_size=4).map(",".join)
BYPASS_URLS = st.sampled_from([
    "http://example.com/", "http://sub.example.com:8080/", "http://example.com:8080/x",
    "https://EXAMPLE.com/", "http://10.1.2.3/", "http://10.9.9.9:81/", "http://127.0.0.1:5000/",
    "http://192.168.1.1/", "http://localhost/", "http://[::1]:8080/", "http://notexample.com/",
    "file:///etc/hosts", "http://user:pw@example.com/",
])  # fmt: skip


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    env_no_proxy=st.one_of(st.none(), NO_PROXY_VALUES),
    upper=st.booleans(),
    arg=st.one_of(st.none(), NO_PROXY_VALUES),
    url=BYPASS_URLS,
)
def test_should_bypass_proxies_matches_requests(
    tmp_path_factory: pytest.TempPathFactory,
    env_no_proxy: str | None,
    upper: bool,
    arg: str | None,
    url: str,
) -> None:
    env = {"http_proxy": "http://p.test:1"}
    if env_no_proxy is not None:
        env["NO_PROXY" if upper else "no_proxy"] = env_no_proxy
    with environment(env, None, str(tmp_path_factory.mktemp("bypass"))):
        snapshot = Environment()
        ours = outcome(lambda: snapshot.should_bypass_proxies(url, arg))
        assert outcome(lambda: snapshot.should_bypass_proxies(url, arg)) == ours  # cached
        ours_proxies = outcome(lambda: snapshot.environ_proxies(url, arg))
        expected_proxies = outcome(lambda: requests.utils.get_environ_proxies(url, no_proxy=arg))
        with pytest.MonkeyPatch.context() as mp:
            if OLD_ENVIRONMENT_RULES:
                # requests 2.34's answer: the older rules, without the entries that match only
                # as a bare suffix (in the argument and in the environment).
                arg = without_bare_suffixes(url, arg)
                for name in ("no_proxy", "NO_PROXY"):
                    if name in os.environ:
                        mp.setenv(name, without_bare_suffixes(url, os.environ[name]) or "")
            expected = outcome(lambda: requests.utils.should_bypass_proxies(url, no_proxy=arg))
        if OLD_ENVIRONMENT_RULES and expected == ("ok", False) and expected_proxies == ("ok", {}):
            expected_proxies = ("ok", requests.utils.getproxies())  # 2.34 no longer bypasses
        assert ours == expected
        assert ours_proxies == expected_proxies


@pytest.mark.parametrize(
    "netrc_text",
    [NETRC_TEXT, "machine example.com login only\n", "default password p\n", "garbage garbage"],
)
def test_netrc_answers_match_requests(tmp_path: Any, netrc_text: str) -> None:
    urls = ["http://example.com/", "https://EXAMPLE.com:8443/x", "http://127.0.0.1:1/",
            "http://only-account.test/", "http://other.test/", "mailto:x@example.com", "relative"]  # fmt: skip
    with environment({}, netrc_text, str(tmp_path)):
        snapshot = Environment()
        for url in urls:
            for given_url in (url, url.encode()):
                expected = requests.utils.get_netrc_auth(given_url)
                if OLD_ENVIRONMENT_RULES:
                    expected = netrc_auth_2_34(given_url)
                else:  # the reference agrees with the real requests 2.34 and later
                    assert netrc_auth_2_34(given_url) == expected, given_url
                assert snapshot.netrc_auth(given_url) == expected, given_url


# --- reading the body of a response that is not streamed -----------------------------------------
# fastpool.Session reads it in one call (requests: iter_content's generator); the errors must be
# requests' own, mapped as iter_content maps them.


def _raw(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + body


def _stall_after(data: bytes) -> Any:
    from dummyserver import Conn

    def handler(conn: Conn) -> None:
        if conn.read_request() is None:
            return
        conn.send(data)
        conn.read_request()  # waits, body unfinished, until the client gives up and closes

    return handler


@pytest.mark.parametrize(
    ("data", "stall", "error"),
    [
        (
            _raw("HTTP/1.1 200 OK\nContent-Length: 100\n", b"only ten b"),
            False,
            requests.exceptions.ChunkedEncodingError,
        ),
        (
            _raw("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n", b"zz\r\nabc\r\n"),
            False,
            requests.exceptions.ChunkedEncodingError,
        ),
        (
            _raw("HTTP/1.1 200 OK\nContent-Encoding: gzip\nContent-Length: 12\n", b"not gzipped!"),
            False,
            requests.exceptions.ContentDecodingError,
        ),
        (
            _raw("HTTP/1.1 200 OK\nContent-Length: 100\n", b"only ten b"),
            True,
            requests.exceptions.ConnectionError,
        ),
    ],
    ids=["truncated", "bad-chunk", "bad-gzip", "read-timeout-in-body"],
)
def test_body_errors_match_requests(
    fault_server_factory: Any, data: bytes, stall: bool, error: type
) -> None:
    from dummyserver import send_raw

    outcomes = []
    for session_cls in (requests.Session, fastpool.Session):
        server = fault_server_factory(_stall_after(data) if stall else send_raw(data))
        with session_cls() as session:
            with pytest.raises(requests.RequestException) as info:
                session.get(server.url + "/", timeout=(5, 0.3))
            outcomes.append((type(info.value), info.value.response is None))
        if isinstance(session, fastpool.Session):
            total = session.pool_stats().total
            assert total.in_use == 0 and total.open == 0  # the connection closed, slot back
    assert outcomes[0] == outcomes[1] == (error, True)


def test_session_headers_remembered_per_content_match_requests(tmp_path: Any) -> None:
    # fastpool remembers the merged, checked session headers of requests without headers of
    # their own, keyed by their content: every change must show in the next request.
    def steps(session: requests.Session) -> None:
        session.get("http://example.com/1")
        session.get("http://example.com/2")  # the remembered form
        session.headers["X-Added"] = "1"
        session.get("http://example.com/3")
        session.headers["Accept"] = None  # dropped from the request
        session.get("http://example.com/4")
        session.headers["User-Agent"] = "changed"
        session.get("http://example.com/5")
        prepared = session.prepare_request(requests.Request("GET", "http://example.com/6"))
        prepared.headers["X-Mutated"] = "only this one"
        session.send(prepared)
        session.get("http://example.com/7")  # unaffected by the mutation above
        session.headers = CaseInsensitiveDict({"X-Only": "v"})
        session.get("http://example.com/8")
        session.headers["X-Bad"] = "a\r\nb"
        for _ in range(2):  # rejected every time, never remembered
            with pytest.raises(requests.exceptions.InvalidHeader):
                session.get("http://example.com/9")
        del session.headers["X-Bad"]
        session.headers["X-Bytes"] = b"bytes value"
        session.get("http://example.com/10")
        session.get("http://example.com/11")

    with environment({}, None, str(tmp_path)):
        theirs, ours = session_pair()
        for session in (theirs, ours):
            steps(session)
        assert sent(ours) == sent(theirs)
        assert len(sent(ours)) == 10  # the two bad ones were never sent


def test_patched_or_instance_prepare_request_is_honoured(tmp_path: Any) -> None:
    # The direct route of Session.request must not hide the ways users hook into requests.
    from unittest import mock

    calls: list[str] = []

    def mine(request: requests.Request) -> PreparedRequest:
        calls.append("instance")
        prepared = fastpool.Session.prepare_request(session, request)
        prepared.headers["X-Mine"] = "1"
        return prepared

    with environment({}, None, str(tmp_path)):
        session = fastpool.Session()
        session.adapters.clear()
        recorder = Recorder()
        session.mount("", recorder)
        session.prepare_request = mine  # type: ignore[method-assign]
        session.get("http://example.com/")
        assert calls == ["instance"]
        assert recorder.calls[-1][0].headers["X-Mine"] == "1"
        del session.prepare_request

        original = fastpool.Session.prepare_request
        with mock.patch.object(fastpool.Session, "prepare_request", autospec=True) as patched:
            patched.side_effect = original
            session.get("http://example.com/")
            assert patched.call_count == 1

        with mock.patch("requests.Session.request", return_value="stubbed") as stub:
            assert session.get("http://example.com/") == "stubbed"
            assert stub.call_count == 1

        session.get("http://example.com/")  # the direct route again
        assert len(recorder.calls) == 3


def test_a_retry_with_is_retry_replaced_on_the_instance_is_asked(app_server: Any) -> None:
    from urllib3.util.retry import Retry

    asked: list[int] = []
    retries = Retry(total=1)

    def is_retry(method: str, status: int, has_retry_after: bool = False) -> bool:
        asked.append(status)
        return False

    retries.is_retry = is_retry  # type: ignore[method-assign]
    with fastpool.PoolManager() as pm:
        assert pm.request("GET", app_server.url + "/bytes/3", retries=retries).status == 200
    assert asked == [200]


# --- found by running requests' own test suite with fastpool.Session in place -------------------


@pytest.mark.parametrize("value", [["a"], {"k": "v"}])
def test_unhashable_header_values_are_invalid_headers_as_in_requests(
    tmp_path: Any, value: Any
) -> None:
    # requests' test_header_value_not_str: the check must come before the remembered checks
    with environment({}, None, str(tmp_path)):
        for session in session_pair():
            with pytest.raises(requests.exceptions.InvalidHeader):
                session.get("http://example.com/", headers={"X-Value": value})
            session.headers["X-Value"] = value
            with pytest.raises(requests.exceptions.InvalidHeader):
                session.get("http://example.com/")


def test_a_replaced_get_netrc_auth_is_called_as_by_requests(tmp_path: Any) -> None:
    # requests' test_basicauth_with_netrc replaces requests.sessions.get_netrc_auth
    from unittest import mock

    with environment({}, None, str(tmp_path)):
        theirs, ours = session_pair()
        with mock.patch("requests.sessions.get_netrc_auth", return_value=("user", "pass")):
            for session in (theirs, ours):
                session.get("http://example.com/")
        assert sent(ours) == sent(theirs)
        assert ("Authorization", "Basic dXNlcjpwYXNz") in sent(ours)[-1][0][2]
        for session in (theirs, ours):  # and the real one again afterwards
            session.get("http://example.com/")
        assert sent(ours) == sent(theirs)
        assert "Authorization" not in dict(sent(ours)[-1][0][2])


def test_close_closes_each_adapter_once() -> None:
    # requests' test_session_close_proxy_clear: its two default adapters are closed once each;
    # fastpool's one default adapter serves both schemes
    from unittest import mock

    session = fastpool.Session()
    adapter = session.get_adapter("http://example.com/")
    assert adapter is session.get_adapter("https://example.com/")
    with mock.patch.object(adapter, "close") as close:
        session.close()
    assert close.call_count == 1


def test_requests_session_swapped_for_fastpool_keeps_the_direct_route(tmp_path: Any) -> None:
    # A program may set requests.Session = fastpool.Session for the libraries it uses: the
    # direct route compares with requests' own class, not with the name.
    from unittest import mock

    with environment({}, None, str(tmp_path)):
        session = fastpool.Session()
        session.adapters.clear()
        recorder = Recorder()
        session.mount("", recorder)
        with mock.patch.object(requests.Session, "request", autospec=True) as stock:
            session.get("http://example.com/")  # requests.Session patched: honoured
            assert stock.call_count == 1
        # requests' own request builds a requests.Request; the direct route never does
        with (
            mock.patch("requests.Session", fastpool.Session),
            mock.patch(
                "requests.sessions.Request", side_effect=AssertionError("requests' route taken")
            ),
        ):
            session.get("http://example.com/")  # the name swapped: the direct route
        assert len(recorder.calls) == 1
