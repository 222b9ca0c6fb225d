"""Smoke test of bench/multi.py's machinery: ``pytest bench/test_multi.py``.

Every client runs a handful of requests on every shape against a real nginx (bench/conftest.py's
``nginx``, skipped with the reason when it cannot start), warmed up and measured as the
benchmark does, at tiny counts: no failures, every client in each table, the JSON line strict.
It measures nothing. pycurl missing is a skip; aiohttp missing leaves its rows "skipped".
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time

import multi
import pytest

SMOKE = multi.Budget(repeats=2, seconds=5.0, requests=50, warmup_seconds=20.0)


@pytest.fixture
def no_ca_env(monkeypatch):
    for name in multi.CA_ENV:  # they would override session.verify (bench/multi.py's docstring)
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("shape", multi.SHAPES, ids=lambda s: s.key)
def test_every_client_runs_clean(nginx, no_ca_env, shape):
    pytest.importorskip("pycurl", reason="pycurl is not installed (bench/requirements-peers.txt)")
    if shape.hosts > nginx.hosts:
        pytest.skip(f"nginx serves {nginx.hosts} crawl hosts, the shape wants {shape.hosts}")
    clients = multi.all_clients()
    raw = multi.measure_shape(shape, clients, nginx, SMOKE)
    summary = multi.summarize(raw)
    table = multi.markdown(shape, summary)
    for client in clients:
        s = summary[client.key]
        if client.key.startswith("aiohttp") and s["status"] == "skipped":
            continue
        assert s["status"] == "ok", (client.key, s)
        assert (s["failures"], s["runs"]) == (0, SMOKE.repeats), (client.key, s)
        assert s["requests"] == SMOKE.repeats * SMOKE.requests, (client.key, s)
        assert s["warmup_connections"] >= 1, (client.key, s)  # each client has its own pools
        assert f"| {client.key} |" in table
    assert summary[multi.BASELINE]["ratio"] == pytest.approx(1.0)
    json.dumps(multi._finite({"summary": summary, "raw": raw}), allow_nan=False)


def _run_once(client, ca_bundle, urls, n, expected):
    """One run of ``client``, opened for it and closed after."""
    client.open(ca_bundle)
    try:
        return client.run(urls, n, 5.0, expected)
    finally:
        client.close()


def test_wrong_body_length_fails_every_client_kind(nginx, no_ca_env):
    pytest.importorskip("pycurl", reason="pycurl is not installed")
    urls = [nginx.http_url + "/64k"]
    for client in (multi.Threads(2), multi.Map(4), multi.PycurlMulti(4), multi.PycurlPerform(4)):
        result = _run_once(client, nginx.ca_bundle, urls, 6, 100)
        assert (result.done, result.failures) == (0, 6), client.key
        assert "65536" in result.error, (client.key, result.error)


@pytest.mark.parametrize("make", [multi.PycurlMulti, multi.PycurlPerform])
def test_pycurl_verifies_against_the_given_ca(nginx, tmp_path, make):
    pytest.importorskip("pycurl", reason="pycurl is not installed")
    trustme = pytest.importorskip("trustme")
    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    client = make(2)
    client.open(str(other))
    try:
        result = client.run([nginx.https_url + "/100b"], 2, 5.0, 100)
    finally:
        client.close()
    assert (result.done, result.failures) == (0, 2)
    assert "certificate" in result.error.lower() or "ssl" in result.error.lower(), result.error


def test_count_and_time_bounds(nginx, no_ca_env):
    pytest.importorskip("pycurl", reason="pycurl is not installed")
    for client in (multi.Map(8), multi.PycurlMulti(8), multi.PycurlPerform(8)):
        client.open(nginx.ca_bundle)
        try:
            counted = client.run([nginx.http_url + "/100b"], 37, 10.0, 100)
            timed = client.run([nginx.http_url + "/100b"], 10**7, 0.2, 100)
        finally:
            client.close()
        assert (counted.done, counted.failures) == (37, 0), client.key
        assert timed.failures == 0 and timed.done > 0, client.key
        assert 0.2 <= timed.elapsed < 5.0, (client.key, timed.elapsed)


def test_pycurl_perform_reports_its_child_s_cpu(nginx):
    # Its runs happen in the child: the CPU reported is the child's, not this process's.
    pytest.importorskip("pycurl", reason="pycurl is not installed")
    client = multi.PycurlPerform(8)
    client.open(nginx.ca_bundle)
    try:
        ours = time.process_time()
        result = client.run([nginx.http_url + "/100b"], 3000, 30.0, 100)
        ours = time.process_time() - ours
    finally:
        client.close()
    assert (result.done, result.failures) == (3000, 0), result.error
    assert result.cpu > ours, (result.cpu, ours)
    assert client.child is None


def test_pycurl_perform_s_child_opens_no_descriptor_select_cannot_see(nginx):
    # select() sees no descriptor >= FD_SETSIZE: the child's limit on open files stops there
    pytest.importorskip("pycurl", reason="pycurl is not installed")
    client = multi.PycurlPerform(2)
    client.open(nginx.ca_bundle)
    try:
        assert client.open_files == multi.FD_SETSIZE
    finally:
        client.close()


def test_pycurl_perform_stops_its_child_when_open_fails():
    pytest.importorskip("pycurl", reason="pycurl is not installed")
    client = multi.PycurlPerform(2)
    with pytest.raises(RuntimeError, match="child"):
        client.open(12345)  # the child's setopt(CAINFO, 12345) raises TypeError
    assert client.child is None


def test_a_new_url_shape_gives_each_request_a_url_of_its_own(nginx):
    shape = next(s for s in multi.SHAPES if s.key == "crawl200-http-new")
    if shape.hosts > nginx.hosts:
        pytest.skip(f"nginx serves {nginx.hosts} crawl hosts, the shape wants {shape.hosts}")
    urls = shape.urls(nginx, 450)
    assert len(set(urls)) == len(urls) == 450
    bases = [base + "/100b" for base in nginx.http_urls()[: shape.hosts]]
    # round-robin over the hosts, as the repeating shape, each with its own query
    assert urls[:3] == [f"{bases[0]}?n=0", f"{bases[1]}?n=1", f"{bases[2]}?n=2"]
    assert urls[201] == f"{bases[1]}?n=201"
    assert shape.urls(nginx, 5) == shape.urls(nginx, shape.hosts)  # one round at least
    repeating = next(s for s in multi.SHAPES if s.key == "crawl200-http")
    assert repeating.urls(nginx, 450) == bases


@pytest.mark.parametrize(
    "make",
    [
        multi.Threads,
        multi.Map,
        multi.PoolManagerMap,
        multi.RawEpoll,
        multi.PycurlMulti,
        multi.PycurlPerform,
    ],
)
def test_each_kind_of_client_sends_the_url_each_request_is_given(nginx, no_ca_env, make):
    if make in (multi.PycurlMulti, multi.PycurlPerform):
        pytest.importorskip("pycurl", reason="pycurl is not installed")
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
    heard: list[str] = []
    with _server(answer, heard) as url:
        urls = [f"{url}?n={i}" for i in range(7)]
        result = _run_once(make(2), nginx.ca_bundle, urls, 7, 5)
    assert (result.done, result.failures) == (7, 0), result.error
    assert sorted(heard) == sorted(f"GET /x?n={i} HTTP/1.1" for i in range(7))


def test_each_run_of_a_new_url_shape_goes_on_where_the_last_stopped():
    urls = [f"u{i}" for i in range(10)]
    cursor = multi._Cursor(urls, rotate=True)
    assert cursor.next() == urls
    cursor.used({"done": 5, "failures": 1})
    assert cursor.next() == urls[6:] + urls[:6]
    cursor.used(None)  # a warm-up that never ran sent nothing
    cursor.used({"done": 7, "failures": 0})
    assert cursor.next()[0] == "u3"  # round the end of the list
    repeating = multi._Cursor(urls, rotate=False)
    repeating.used({"done": 5, "failures": 0})
    assert repeating.next() is urls


# --- raw-epoll, the floor: it needs neither pycurl nor aiohttp --------------------------------------
def _raw(urls, n, seconds, expected, ca="", concurrency=4):
    client = multi.RawEpoll(concurrency)
    client.open(ca or None)
    try:
        return client.run(urls, n, seconds, expected)
    finally:
        client.close()


def test_raw_epoll_counts_bounds_and_wrong_lengths(nginx):
    counted = _raw(
        [nginx.http_url + "/100b", nginx.https_url + "/100b"], 37, 10.0, 100, nginx.ca_bundle
    )
    assert (counted.done, counted.failures) == (37, 0), counted.error
    timed = _raw([nginx.http_url + "/100b"], 10**7, 0.2, 100)
    assert timed.failures == 0 and timed.done > 0
    assert 0.2 <= timed.elapsed < 5.0, timed.elapsed
    wrong = _raw([nginx.http_url + "/64k"], 6, 5.0, 100)
    assert (wrong.done, wrong.failures) == (0, 6)
    assert "65536" in wrong.error, wrong.error


@contextlib.contextmanager
def _server(answer, heard=None):
    """A local server that reads each request and sends ``answer`` (None: nothing), then closes
    (or, for None, holds the connection until the test ends); each request line read goes to
    ``heard`` when given."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    held, stop = [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conn.settimeout(5)
            with contextlib.suppress(OSError):
                request = conn.recv(65536)
                if heard is not None:
                    heard.append(request.split(b"\r\n", 1)[0].decode())
                if answer is None:
                    held.append(conn)
                    continue
                conn.sendall(answer)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/x"
    finally:
        stop.set()
        thread.join(5)
        listener.close()
        for conn in held:
            conn.close()


def test_raw_epoll_takes_an_answer_that_closes_the_connection():
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
    with _server(answer) as url:
        result = _raw([url], 6, 5.0, 5, concurrency=2)
    assert (result.done, result.failures) == (6, 0), result.error


def test_raw_epoll_ends_a_request_nobody_answers(monkeypatch):
    monkeypatch.setattr(multi, "TIMEOUT", 0.5)
    with _server(None) as url:
        started = time.monotonic()
        result = _raw([url], 2, 5.0, 5, concurrency=2)
    assert (result.done, result.failures) == (0, 2)
    assert "timed out" in result.error
    assert time.monotonic() - started < 3.0
