"""Session.map: many requests in flight from one thread, with one-request semantics.

The differential test runs one corpus through ``Session.map`` and through ``Session.request``
(a fresh Session each, same settings, same servers) and compares everything observable: the
outcome's type, status, reason, headers, body, URL, history, the final request, the cookies
the Session kept, and for errors the exception's class.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
import urllib3
from dummyserver import AppServer, FaultServer, send_raw

import fastpool
from fastpool.multi import Result

pytestmark = [pytest.mark.filterwarnings("error"), pytest.mark.usefixtures("clean_environment")]


def closed_port() -> int:
    """A port on 127.0.0.1 that refuses connections."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def observe(outcome: Any, session: requests.Session) -> dict[str, Any]:
    """What a caller can see of one outcome (a Response or an exception)."""
    cookies = sorted((c.domain, c.path, c.name, c.value) for c in session.cookies)
    if isinstance(outcome, BaseException):
        return {"error": type(outcome).__name__, "cookies": cookies}
    body = outcome.content
    skip = {"date"}
    with contextlib.suppress(ValueError):
        data = json.loads(body)
        if isinstance(data, dict) and "connection" in data:
            del data["connection"]  # the server's connection counter differs, and its length
            skip.add("content-length")
            body = data
    headers = [(k, v) for k, v in outcome.headers.items() if k.lower() not in skip]
    return {
        "status": outcome.status_code,
        "reason": outcome.reason,
        "headers": headers,
        "body": body,
        "url": outcome.url,
        "encoding": outcome.encoding,
        "history": [(r.status_code, r.url) for r in outcome.history],
        "request": (
            outcome.request.method,
            outcome.request.url,
            sorted(outcome.request.headers.items()),
            outcome.request.body,
        ),
        "next": outcome.next.url if outcome.next is not None else None,
        "cookies": cookies,
        # each hop's time to its answer: a duration of this run (not the same, but sane)
        "elapsed": [0.0 <= r.elapsed.total_seconds() < 60.0 for r in (*outcome.history, outcome)],
        "raw": (outcome.raw.status, outcome.raw.version, outcome.raw.reason, outcome.raw.read()),
    }


def corpus(http: str, https: str) -> list[tuple[Any, dict[str, Any]]]:
    """(request, options) pairs: requests' shapes, the server's routes, and failures."""
    dead = f"http://127.0.0.1:{closed_port()}/"
    return [
        (f"{http}/bytes/100", {}),
        (f"{http}/bytes/200000", {}),
        (f"{https}/bytes/70000", {}),
        (f"{http}/chunked/5000?chunk=7", {}),
        (f"{https}/chunked/300", {}),
        (f"{http}/stream/5", {}),
        (f"{http}/gzip", {}),
        (f"{https}/deflate", {}),
        (f"{http}/echo?x=1&y=2", {}),
        (requests.Request("POST", f"{http}/echo", data={"a": "1"}), {}),
        (requests.Request("PUT", f"{https}/echo", json={"k": [1, 2]}), {}),
        (requests.Request("HEAD", f"{http}/bytes/10"), {}),
        (requests.Request("GET", f"{http}/echo", headers={"X-Custom": "v"}), {}),
        (f"{http}/status/404", {}),
        (f"{http}/status/204", {}),
        (f"{http}/status/304", {}),
        (f"{http}/redirect/3", {}),
        (f"{https}/redirect/2?absolute=1", {}),
        (f"{http}/redirect-to?url={https}/echo", {}),
        (
            requests.Request(
                "POST", f"{http}/redirect-to?url=/echo&status_code=303", data=b"secret"
            ),
            {},
        ),
        (
            requests.Request("POST", f"{http}/redirect-to?url=/echo&status_code=307", data=b"kept"),
            {},
        ),
        (f"{http}/redirect/3", {"allow_redirects": False}),
        (f"{http}/cookies/set?a=1&b=2", {}),
        (requests.Request("GET", f"{http}/basic-auth/u/p", auth=("u", "p")), {}),
        (f"{http}/basic-auth/u/p", {}),
        (f"{http}/no-length?n=5000", {}),
        (f"{http}/http10", {}),
        (f"{http}/close", {}),
        (f"{http}/headers", {}),
        (f"{http}/response-headers?X-A=1&X-A=2", {}),
        (f"{http}/redirect/5", {"max_redirects": 2}),
        (f"{http}/slow?delay=2", {"timeout": 0.2}),
        (f"{http}/bytes/10", {"timeout": (1, 1)}),
        (dead, {}),
        ("http://fastpool-test.invalid/", {}),
        ("ftp://127.0.0.1/x", {}),
        ("not a url", {}),
    ]


def run_single(
    given: Any, options: dict[str, Any], make: Callable[[], fastpool.Session]
) -> dict[str, Any]:
    session = make()
    session.max_redirects = options.get("max_redirects", 30)
    kwargs = {k: v for k, v in options.items() if k != "max_redirects"}
    try:
        if isinstance(given, requests.Request):
            prep = session.prepare_request(given)
            settings = session.merge_environment_settings(prep.url, {}, None, None, None)
            outcome: Any = session.send(prep, **settings, **kwargs)
        else:
            outcome = session.get(given, **kwargs)
    except Exception as e:  # noqa: BLE001 - the outcome compared
        outcome = e
    with session:
        return observe(outcome, session)


def run_mapped(
    given: Any, options: dict[str, Any], make: Callable[[], fastpool.Session]
) -> dict[str, Any]:
    session = make()
    session.max_redirects = options.get("max_redirects", 30)
    kwargs = {k: v for k, v in options.items() if k != "max_redirects"}
    (result,) = list(session.map([given], **kwargs))
    assert result.request is given
    assert (result.response is None) != (result.error is None)
    with session:
        return observe(result.error or result.response, session)


@pytest.fixture
def make_session(ca_bundle: str) -> Callable[[], fastpool.Session]:
    def make() -> fastpool.Session:
        session = fastpool.Session()
        session.verify = ca_bundle
        return session

    return make


def test_map_answers_as_one_request_at_a_time(
    app_server: AppServer, https_server: AppServer, make_session: Callable[[], fastpool.Session]
) -> None:
    for given, options in corpus(app_server.url, https_server.url):
        expected = run_single(given, options, make_session)
        got = run_mapped(given, options, make_session)
        assert got == expected, (given, options)


def test_map_of_the_whole_corpus_at_once_matches(
    app_server: AppServer, https_server: AppServer, make_session: Callable[[], fastpool.Session]
) -> None:
    # Every request in flight together, on one Session: each outcome as one request gives.
    # (Not the routes that set cookies: on one Session they reach the other requests.)
    items = [
        (given, options)
        for given, options in corpus(app_server.url, https_server.url)
        if not options
        and not any(r in str(getattr(given, "url", given)) for r in ("/cookies", "/headers"))
    ]
    expected = {id(given): run_single(given, {}, make_session) for given, _ in items}
    session = make_session()
    with session:
        results = list(session.map([given for given, _ in items], concurrency=16))
    assert len(results) == len(items)
    for result in results:
        got = observe(result.error or result.response, session)
        want = expected[id(result.request)]
        got["cookies"] = want["cookies"] = None  # one jar for all here
        assert got == want, result.request


def test_requests_are_in_flight_together_from_one_thread(app_server: AppServer) -> None:
    # /hold answers only when n requests with its key have arrived: one at a time would wait
    # 5 s for each and report released=False.
    n = 12
    urls = [f"{app_server.url}/hold?key=map-together&n={n}"] * n
    before = set(threading.enumerate())
    with fastpool.Session() as session:
        results = list(session.map(urls, concurrency=n, dial_workers=2))
        assert all(r.error is None for r in results), [r.error for r in results]
        assert [r.response.json()["released"] for r in results] == [True] * n  # type: ignore[union-attr]
    # Besides the server's threads, only the dial workers were started: the exchanges ran here.
    started = {t.name for t in set(threading.enumerate()) - before}
    client = {name for name in started if not name.startswith("AppServer-")}
    assert all(name.startswith("fastpool-dial") for name in client), client


def test_per_host_limit_and_connection_reuse(app_server: AppServer) -> None:
    urls = [f"{app_server.url}/echo?i={i}" for i in range(10)]
    with fastpool.Session() as session:
        results = list(session.map(urls, per_host=1))
        connections = {r.response.json()["connection"] for r in results}  # type: ignore[union-attr]
        assert len(connections) == 1  # one request at a time to the host, one kept connection
        stats = session.pool_stats()
    assert stats.total.created == 1


def test_stream_leaves_the_body_to_the_caller(app_server: AppServer) -> None:
    with fastpool.Session() as session:
        (result,) = list(session.map([f"{app_server.url}/bytes/50000"], stream=True))
        response = result.response
        assert response is not None
        assert not response.raw.closed
        assert len(response.content) == 50000
        again = session.get(f"{app_server.url}/echo").json()
        assert again["connection"] >= 1


def test_leaving_early_cancels_and_gives_every_slot_back(app_server: AppServer) -> None:
    session = fastpool.Session(max_connections_per_host=4, pool_timeout=3)
    with session:
        urls = [f"{app_server.url}/slow?delay=0.3"] * 3 + [f"{app_server.url}/bytes/1"] * 20
        it = session.map(urls, concurrency=8)
        first = next(it)
        assert first.error is None
        it.close()
        # Four requests that must all hold a connection at once: a leaked slot would make one
        # of them wait for pool_timeout and fail.
        key = "map-after-cancel"
        out: list[Any] = []

        def get() -> None:
            out.append(session.get(f"{app_server.url}/hold?key={key}&n=4").json()["released"])

        threads = [threading.Thread(target=get) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert out == [True] * 4


def test_an_exception_in_the_callers_loop_cancels(app_server: AppServer) -> None:
    session = fastpool.Session(max_connections_per_host=2, pool_timeout=3)
    with session:
        urls = [f"{app_server.url}/slow?delay=0.2"] * 6

        def consume() -> None:
            for _ in session.map(urls, concurrency=2):
                raise KeyError("caller")

        with pytest.raises(KeyError):
            consume()
        for _ in range(3):
            assert len(session.get(f"{app_server.url}/bytes/3").content) == 3


def test_a_patched_path_sees_every_request(app_server: AppServer) -> None:
    responses = pytest.importorskip("responses")
    url = f"{app_server.url}/mocked"
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, url, body=b"from the mock")
        with fastpool.Session() as session:
            results = list(session.map([url] * 3))
        assert [r.response.content for r in results] == [b"from the mock"] * 3  # type: ignore[union-attr]
        assert len(mock.calls) == 3


def test_a_server_that_cuts_the_body_fails_as_one_request(
    fault_server_factory: Callable[..., FaultServer],
) -> None:
    server = fault_server_factory(
        send_raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", then="close")
    )
    with fastpool.Session() as session:
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            session.get(f"{server.url}/")
        (result,) = list(session.map([f"{server.url}/"]))
    assert isinstance(result.error, requests.exceptions.ChunkedEncodingError)


def test_a_reset_fails_as_one_request(fault_server_factory: Callable[..., FaultServer]) -> None:
    server = fault_server_factory(send_raw(b"HTTP/1.1 200 OK\r\nContent-Le", then="reset"))
    with fastpool.Session() as session:
        try:
            session.get(f"{server.url}/")
        except Exception as e:  # noqa: BLE001 - whatever it is, map must give the same
            expected: Any = type(e)
        (result,) = list(session.map([f"{server.url}/"]))
    assert type(result.error) is expected


def test_results_are_results() -> None:
    result = Result("u", None, ValueError("x"))
    request, response, error = result
    assert (request, response, type(error)) == ("u", None, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"per_host": 0}, "per_host"),
        ({"concurrency": 1.5}, "concurrency"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, Any], message: str) -> None:
    with fastpool.Session() as session, pytest.raises(ValueError, match=message):
        list(session.map(["http://127.0.0.1:1/"], **kwargs))


def compare_both_ways(
    items: list[tuple[Any, dict[str, Any]]], make: Callable[[], fastpool.Session]
) -> None:
    for given, options in items:
        expected = run_single(given, options, make)
        got = run_mapped(given, options, make)
        assert got == expected, (given, options)


def test_through_a_proxy_as_one_request(
    app_server: AppServer,
    https_server: AppServer,
    proxy_server: Any,
    ca_bundle: str,
) -> None:
    # Forwarding for http://, a CONNECT tunnel for https://, with proxy credentials in the URL.
    def make() -> fastpool.Session:
        session = fastpool.Session()
        session.verify = ca_bundle
        session.proxies = {"http": proxy_server.url, "https": proxy_server.url}
        return session

    compare_both_ways(
        [
            (f"{app_server.url}/echo", {}),
            (f"{https_server.url}/echo", {}),
            (f"{app_server.url}/redirect-to?url={https_server.url}/bytes/5", {}),
            (requests.Request("POST", f"{https_server.url}/echo", data=b"x" * 5000), {}),
        ],
        make,
    )


def test_tls_failures_as_one_request(
    untrusted_https_server: AppServer, https_server: AppServer, ca_bundle: str
) -> None:
    def make() -> fastpool.Session:
        session = fastpool.Session()
        session.verify = ca_bundle
        return session

    compare_both_ways(
        [
            (f"{untrusted_https_server.url}/bytes/1", {}),
            # The same host under two names: only one matches the certificate.
            (f"https://localhost:{https_server.port}/bytes/1", {}),
        ],
        make,
    )


def test_a_kept_connection_the_server_closed_is_replayed_as_one_request(
    fault_server_factory: Callable[..., FaultServer],
) -> None:
    # Each connection answers once, then closes without answering the next request: the
    # second request meets a kept-alive connection the server closed (Go's replay rule).
    from dummyserver import close_after

    server = fault_server_factory(close_after(1, body=b"answer", how="wait"))
    urls = [f"{server.url}/a", f"{server.url}/b", f"{server.url}/c"]
    with fastpool.Session() as session:
        single = [session.get(url).content for url in urls]
        single_retried = session.pool_stats().total.retried
    with fastpool.Session() as session:
        events: list[str] = []
        session.add_trace_hook("retry", lambda event: events.append(event["url"]))
        mapped = [r.response.content for r in session.map(urls, concurrency=1)]  # type: ignore[union-attr]
        mapped_retried = session.pool_stats().total.retried
    assert mapped == single == [b"answer"] * 3
    # The loop replayed them itself (no blocking redial): counted and traced as one request.
    assert mapped_retried == single_retried == 2
    assert events == ["/b", "/c"]


def test_hooks_and_retries_as_one_request(
    app_server: AppServer, fault_server_factory: Callable[..., FaultServer]
) -> None:
    from urllib3.util.retry import Retry

    calls: list[tuple[str, int]] = []

    def hook(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        calls.append((response.url, response.status_code))

    def make() -> fastpool.Session:
        session = fastpool.Session()
        session.hooks["response"].append(hook)
        session.mount(
            f"{app_server.url}/status/503",
            fastpool.HTTPAdapter(max_retries=Retry(2, status_forcelist=[503], backoff_factor=0)),
        )
        return session

    items: list[tuple[Any, dict[str, Any]]] = [
        (f"{app_server.url}/redirect/2", {}),
        (f"{app_server.url}/status/503", {}),
    ]
    for given, options in items:
        del calls[:]
        expected = run_single(given, options, make)
        single_calls = list(calls)
        del calls[:]
        got = run_mapped(given, options, make)
        assert got == expected, given
        assert calls == single_calls, given


def test_a_total_deadline_ends_a_slow_answer(app_server: AppServer) -> None:
    from urllib3.util.timeout import Timeout

    with fastpool.Session() as session:
        (result,) = list(
            session.map([f"{app_server.url}/slow?delay=3"], timeout=Timeout(total=0.3))
        )
        assert isinstance(result.error, requests.exceptions.ReadTimeout)
        with pytest.raises(requests.exceptions.ReadTimeout):
            session.get(f"{app_server.url}/slow?delay=3", timeout=Timeout(total=0.3))


def test_a_retry_waits_its_backoff_without_holding_up_the_others(
    app_server: AppServer, fault_server_factory: Callable[..., FaultServer]
) -> None:
    # urllib3's Retry honours Retry-After: 1 s. One request at a time sleeps it; in map the
    # runner waits it out while the loop goes on, so the answers that come meanwhile are
    # yielded first, and the retried request ends last, as one request would end it.
    from urllib3.util.retry import Retry

    answered: list[int] = []

    def handler(conn: Any) -> None:
        while conn.read_request() is not None:
            answered.append(1)
            if len(answered) == 1:
                conn.respond(503, b"later", [("Retry-After", "1")])
            else:
                conn.respond(200, b"done")

    flaky = fault_server_factory(handler)
    retry = Retry(total=2, status_forcelist=[503], backoff_factor=0)
    with fastpool.Session() as session:
        session.mount(flaky.url, fastpool.HTTPAdapter(max_retries=retry))
        urls = [f"{flaky.url}/x"] + [f"{app_server.url}/slow?delay=0.2"] * 3
        results = list(session.map(urls, concurrency=4))
        assert [r.error for r in results] == [None] * 4
        assert results[-1].request == f"{flaky.url}/x"
        last = results[-1].response
        assert last is not None and (last.status_code, last.content) == (200, b"done")
        assert [h.status for h in last.raw.retries.history] == [503]
    assert len(answered) == 2


def test_a_file_body_goes_through_urlopen_as_one_request(app_server: AppServer) -> None:
    import io

    def request() -> requests.Request:
        return requests.Request("POST", f"{app_server.url}/echo", data=io.BytesIO(b"from a file"))

    with fastpool.Session() as session:
        single = session.send(session.prepare_request(request())).json()
        (result,) = list(session.map([request()]))
    mapped = result.response.json()  # type: ignore[union-attr]
    for echo in (single, mapped):
        del echo["connection"]
    assert mapped == single
    assert mapped["body"] == "from a file"


# --- review findings, pinned ---------------------------------------------------------------------
class SlowResolver:
    """A duck-typed resolver that answers while ``answering`` is set, and otherwise waits for
    it (5 s at most): a dial that is still running until the test lets it go on."""

    def __init__(self) -> None:
        self.answering = threading.Event()

    def resolve(self, host: str, port: int, family: int = socket.AF_UNSPEC) -> list[Any]:
        self.answering.wait(5)
        return socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)


def test_leaving_while_a_dial_succeeds_closes_it_and_frees_the_cap(app_server: AppServer) -> None:
    import time

    resolver = SlowResolver()
    session = fastpool.Session(max_connections=2, pool_timeout=2, resolver=resolver)
    with session:
        fast = f"http://127.0.0.1:{app_server.port}/bytes/1"
        slow = f"http://localhost:{app_server.port}/bytes/2"
        resolver.answering.set()
        assert session.get(fast).status_code == 200  # a kept connection: no dial for it
        resolver.answering.clear()
        it = session.map([fast, slow], concurrency=2)
        try:
            first = next(it)
            assert first.request == fast
            it.close()  # the dial to localhost is still resolving
        finally:
            resolver.answering.set()  # it goes on to connect now
        deadline = time.monotonic() + 5
        while session.pool_stats().total.open > 1 and time.monotonic() < deadline:
            time.sleep(0.05)  # its worker closes what it opened when the dial ends
        stats = session.pool_stats()
        assert (stats.total.open, stats.total.in_use) == (1, 0)
        # Both tokens of the cap are usable: two requests that must hold one each at once.
        out: list[Any] = []
        key = "after-mid-dial"
        threads = [
            threading.Thread(
                target=lambda u=u: out.append(session.get(f"{u}/hold?key={key}&n=2").json())
            )
            for u in (f"http://127.0.0.1:{app_server.port}", f"http://localhost:{app_server.port}")
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert [o["released"] for o in out] == [True, True]


def test_a_patch_on_the_instance_sees_every_request(app_server: AppServer) -> None:
    from unittest import mock

    urls = [f"{app_server.url}/bytes/{n}" for n in (1, 2, 3)]
    with fastpool.Session(max_connections_per_host=1, pool_timeout=2) as session:
        with mock.patch.object(session, "send", wraps=session.send) as spy:
            results = list(session.map(urls))
        assert spy.call_count == 3
        assert sorted(len(r.response.content) for r in results) == [1, 2, 3]  # type: ignore[union-attr]
        adapter = session.get_adapter(app_server.url)
        with mock.patch.object(adapter, "send", wraps=adapter.send) as adapter_spy:
            results = list(session.map(urls))
        assert adapter_spy.call_count == 3
        assert [r.error for r in results] == [None] * 3
        assert session.get(urls[0]).status_code == 200  # and no slot was kept


def test_a_pool_class_that_checks_the_dial_sees_it_before_the_request(
    fault_server_factory: Callable[..., FaultServer],
) -> None:
    from fastpool.pool import HTTPConnectionPool

    seen: list[str] = []

    def handler(conn: Any) -> None:
        request = conn.read_request()
        if request is not None:
            seen.append(request.path)
            conn.respond(200, b"ok")

    server = fault_server_factory(handler)

    class Vetoing(HTTPConnectionPool):
        def _validate_conn(self, conn: Any) -> None:
            super()._validate_conn(conn)
            raise ValueError("this peer is not the one pinned")

    session = fastpool.Session()
    with session:
        adapter = session.get_adapter(server.url)
        adapter.poolmanager.pool_classes_by_scheme = {"http": Vetoing, "https": Vetoing}
        (result,) = list(session.map([f"{server.url}/transfer?token=SECRET"]))
        assert isinstance(result.error, ValueError)
    assert seen == []


def test_a_traced_pool_reports_the_loops_dials(app_server: AppServer) -> None:
    def events_of(run: Callable[[fastpool.Session], None]) -> list[str]:
        names: list[str] = []
        with fastpool.Session() as session:
            session.add_trace_hook("*", lambda event: names.append(event.name))
            run(session)
        return names

    url = f"{app_server.url}/bytes/3"
    single = events_of(lambda s: s.get(url).content)
    mapped = events_of(lambda s: [r.response.content for r in s.map([url])])  # type: ignore[union-attr]
    assert "connect_start" in single and "connect_done" in single
    assert sorted(mapped) == sorted(single)


def test_each_request_is_prepared_when_it_starts(app_server: AppServer) -> None:
    # One at a time, the second request carries the cookie the first one set: map prepares
    # each request when it starts, not when it reads it from the iterable.
    urls = [f"{app_server.url}/cookies/set?k=v", f"{app_server.url}/cookies"]
    with fastpool.Session() as session:
        expected = [session.get(u).json() for u in urls]
    with fastpool.Session() as session:
        got = [r.response.json() for r in session.map(urls, concurrency=1)]  # type: ignore[union-attr]
    assert got == expected
    assert got[1]["cookies"] == {"k": "v"}


def test_a_file_body_is_sent_whole_again_by_a_retry(
    fault_server_factory: Callable[..., FaultServer],
) -> None:
    import io

    from urllib3.util.retry import Retry

    bodies: list[bytes] = []

    def handler(conn: Any) -> None:
        while (request := conn.read_request()) is not None:
            bodies.append(request.body)
            conn.respond(503 if len(bodies) == 1 else 200, b"x")

    server = fault_server_factory(handler)
    with fastpool.Session() as session:
        session.mount(
            server.url,
            fastpool.HTTPAdapter(max_retries=Retry(2, status_forcelist=[503], backoff_factor=0)),
        )
        request = requests.Request("PUT", f"{server.url}/up", data=io.BytesIO(b"z" * 1000))
        (result,) = list(session.map([request]))
    assert result.error is None and result.response.status_code == 200  # type: ignore[union-attr]
    assert bodies == [b"z" * 1000, b"z" * 1000]


def test_an_interrupt_in_a_hook_gives_the_slot_back_once(app_server: AppServer) -> None:
    def interrupt(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    with fastpool.Session(max_connections_per_host=1, pool_timeout=2) as session:
        session.hooks["response"].append(interrupt)
        with pytest.raises(KeyboardInterrupt):
            list(session.map([f"{app_server.url}/bytes/5"]))
        session.hooks["response"].remove(interrupt)
        import gc

        gc.collect()  # the abandoned response's finalizer runs now
        assert session.pool_stats().total.in_use == 0
        assert session.get(f"{app_server.url}/bytes/5").status_code == 200


def test_a_retry_that_must_wait_at_the_cap_keeps_its_count(
    fault_server_factory: Callable[..., FaultServer],
) -> None:
    # The retry of a 503 waits out Retry-After in the runner; meanwhile another thread takes
    # the host's only connection. The retry then waits at the cap (as one request would) and
    # goes on in the loop with its Retry state: the second 503 exhausts total=1, as it does for
    # one request (RetryError), rather than starting the count afresh and succeeding.
    from urllib3.util.retry import Retry

    def server_and_log() -> tuple[FaultServer, list[str], threading.Event]:
        seen: list[str] = []
        first = threading.Event()

        def handler(conn: Any) -> None:
            while (request := conn.read_request()) is not None:
                seen.append(request.path)
                if request.path == "/hold":
                    time.sleep(1.5)
                    conn.respond(200, b"held")
                elif seen.count("/x") <= 2:
                    first.set()
                    conn.respond(503, b"later", [("Retry-After", "1")])
                else:
                    conn.respond(200, b"third")

        return fault_server_factory(handler), seen, first

    def session() -> fastpool.Session:
        s = fastpool.Session()
        retry = Retry(total=1, status_forcelist=[503])
        adapter = fastpool.HTTPAdapter(
            max_retries=retry, max_connections_per_host=1, pool_timeout=10
        )
        s.mount("http://", adapter)
        return s

    # The oracle, one request at a time, on a server of its own, alongside (it waits out its
    # own Retry-After meanwhile).
    one, _, _ = server_and_log()
    oracle: list[BaseException] = []

    def one_request() -> None:
        with session() as s:
            try:
                s.get(f"{one.url}/x")
            except BaseException as e:  # noqa: BLE001 - checked below
                oracle.append(e)

    alongside = threading.Thread(target=one_request)
    alongside.start()

    server, seen, first = server_and_log()
    with session() as s:
        holder = threading.Thread(target=lambda: first.wait(5) and s.get(f"{server.url}/hold"))
        holder.start()
        (result,) = list(s.map([f"{server.url}/x"]))
        holder.join(10)
        assert isinstance(result.error, requests.exceptions.RetryError), result
        assert seen == ["/x", "/hold", "/x"]
        assert s.pool_stats().total.in_use == 0
    alongside.join(10)
    assert len(oracle) == 1 and isinstance(oracle[0], requests.exceptions.RetryError), oracle


def test_a_host_with_no_free_connection_does_not_hold_up_the_others(app_server: AppServer) -> None:
    # One connection a host at most (max_connections_per_host=1, waiting up to 2 s), and this
    # thread holds the one to 127.0.0.1 (a streamed response not yet read). The map's request
    # to 127.0.0.1 waits for it; its requests to localhost (another host, another pool) go on.
    # Only once the caller has their results does it give the connection back.
    a = f"http://127.0.0.1:{app_server.port}"
    b = f"http://localhost:{app_server.port}"
    with fastpool.Session() as session:
        session.mount("http://", fastpool.HTTPAdapter(max_connections_per_host=1, pool_timeout=2))
        held = session.get(f"{a}/bytes/3", stream=True)
        order = []
        began = time.monotonic()
        urls = [f"{a}/bytes/1", f"{b}/bytes/2", f"{b}/bytes/3", f"{b}/bytes/4"]
        for result in session.map(urls, concurrency=4, timeout=10):
            assert result.error is None, result
            order.append(result.request)
            if len(order) == 3:
                held.close()  # the caller lets 127.0.0.1's connection go
        assert set(order[:3]) == {f"{b}/bytes/2", f"{b}/bytes/3", f"{b}/bytes/4"}
        assert order[3] == f"{a}/bytes/1"
        assert time.monotonic() - began < 1.5  # no pool_timeout was waited out
        assert session.pool_stats().total.in_use == 0


def test_each_result_taken_lets_the_next_request_start(
    app_server: AppServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A poll may hand back every request in flight at once. The first result taken from such
    # a batch makes room under the results' bound, so new requests start before the caller
    # gets the rest of the batch: the network is not left idle while results are yielded.
    from fastpool import multi

    in_flight = 0
    seen: list[int] = []  # requests in flight as each result reaches the caller

    class WholeBatchLoop(multi.Loop):  # type: ignore[misc,valid-type]
        def start(self, ex: Any) -> None:
            nonlocal in_flight
            in_flight += 1
            super().start(ex)

        def poll(self, timeout: float | None = None) -> list[Any]:
            nonlocal in_flight
            done: list[Any] = []
            while len(self):  # everything in flight ends in the same poll
                done += super().poll(timeout)
            in_flight -= len(done)
            return done

    monkeypatch.setattr(multi, "Loop", WholeBatchLoop)
    urls = [f"{app_server.url}/bytes/1"] * 12
    with fastpool.Session() as session:
        for result in session.map(urls, concurrency=3, timeout=10):
            assert result.error is None, result
            seen.append(in_flight)
    # Batches of 3: the 2nd and 3rd results of each of the first three batches are taken with
    # the next batch in flight (draining first, every result would see none).
    assert len(seen) == 12
    assert sum(1 for n in seen[:9] if n > 0) == 6, seen


def test_at_the_concurrency_limit_the_loop_waits_rather_than_spins(
    app_server: AppServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Requests queued and ready to start, none allowed to (the limit): only an exchange's end
    # can change that, so the loop must sleep in the poller until one ends, not poll with no
    # wait over and over (which burnt a core and the GIL).
    from fastpool import multi

    timeouts: list[float | None] = []

    class CountingLoop(multi.Loop):  # type: ignore[misc,valid-type]
        def poll(self, timeout: float | None = None) -> list[Any]:
            timeouts.append(timeout)
            return super().poll(timeout)  # type: ignore[no-any-return]

    monkeypatch.setattr(multi, "Loop", CountingLoop)
    urls = [f"{app_server.url}/slow?delay=0.02"] * 20
    with fastpool.Session() as session:
        results = list(session.map(urls, concurrency=2))
    assert [r.error for r in results] == [None] * 20
    assert len(timeouts) <= 3 * len(urls), (len(timeouts), timeouts[:10])


def test_a_prepare_request_of_ones_own_sees_each_url(app_server: AppServer) -> None:
    # map prepares a URL without the intermediate requests.Request only when prepare_request
    # is fastpool's own; one set on the instance or a subclass's gets each Request.
    urls = [f"{app_server.url}/bytes/{n}" for n in (1, 2, 3)]
    seen: list[tuple[str, str]] = []

    class Mine(fastpool.Session):
        def prepare_request(self, request: requests.Request) -> Any:
            seen.append((request.method, request.url))
            return super().prepare_request(request)

    with Mine() as session:
        results = list(session.map(urls, concurrency=1))
    assert [len(r.response.content) for r in results] == [1, 2, 3]
    assert seen == [("GET", u) for u in urls]

    seen.clear()
    with fastpool.Session() as session:
        own = session.prepare_request

        def mine(request: requests.Request) -> Any:
            seen.append((request.method, request.url))
            return own(request)

        session.prepare_request = mine  # type: ignore[method-assign]
        results = list(session.map(urls, concurrency=1))
    assert [len(r.response.content) for r in results] == [1, 2, 3]
    assert seen == [("GET", u) for u in urls]


def test_a_url_is_prepared_as_prepare_request_prepares_it(app_server: AppServer) -> None:
    url = f"{app_server.url}/headers?q=1"
    with fastpool.Session() as session:
        session.headers["X-Mine"] = "1"
        session.cookies.set("c", "v")
        session.hooks["response"].append(lambda r, **kw: r)
        expected = session.prepare_request(requests.Request("GET", url))
        got = session._prepare_get(url)
    assert got is not expected
    for name in ("method", "url", "body", "hooks"):
        assert getattr(got, name) == getattr(expected, name), name
    assert dict(got.headers) == dict(expected.headers)
    assert got._cookies.get_dict() == expected._cookies.get_dict()


# --- a read timeout shorter than the connect timeout --------------------------------------------
@pytest.mark.parametrize("backend", ["map", "one request"])
def test_pool_manager_read_timeout_shorter_than_connect_ends_at_the_read_timeout(
    mute_listener: int, backend: str
) -> None:
    # The loop dials, bounded by the connect timeout, then reads, bounded by the read timeout.
    # Its timer entry stayed at the dial's: the read waited out the connect timeout (5 s).
    # (one request at a time: the control, never broken)
    url = f"http://127.0.0.1:{mute_listener}/"
    timeout = urllib3.Timeout(connect=5, read=0.2)
    with fastpool.PoolManager(retries=False, timeout=timeout) as pm:
        started = time.monotonic()
        if backend == "map":
            errors = [result.error for result in pm.map([url] * 3)]
        else:
            errors = []
            for _ in range(3):
                with pytest.raises(urllib3.exceptions.ReadTimeoutError) as caught:
                    pm.request("GET", url)
                errors.append(caught.value)
        assert time.monotonic() - started < 2.5  # 3 x 0.2 s one at a time; not 5 s
    assert [type(error) for error in errors] == [urllib3.exceptions.ReadTimeoutError] * 3
    assert all("read timeout=0.2" in str(error) for error in errors)


def test_session_map_read_timeout_shorter_than_connect_as_get(mute_listener: int) -> None:
    url = f"http://127.0.0.1:{mute_listener}/"
    with fastpool.Session() as session:
        started = time.monotonic()
        with pytest.raises(requests.exceptions.ReadTimeout):
            session.get(url, timeout=(5, 0.2))
        one = time.monotonic() - started
        started = time.monotonic()
        results = list(session.map([url] * 3, timeout=(5, 0.2)))
        many = time.monotonic() - started
    assert one < 2 and many < 2
    assert [type(result.error) for result in results] == [requests.exceptions.ReadTimeout] * 3


def test_a_pool_timeout_set_after_the_pool_was_made_applies_in_map(mute_listener: int) -> None:
    url = f"http://127.0.0.1:{mute_listener}/"
    with fastpool.PoolManager(retries=False) as pm:
        pm.connection_from_url(url).timeout = urllib3.Timeout(connect=5, read=0.2)
        started = time.monotonic()
        errors = [result.error for result in pm.map([url] * 2)]
        assert time.monotonic() - started < 2.5
    assert [type(error) for error in errors] == [urllib3.exceptions.ReadTimeoutError] * 2
