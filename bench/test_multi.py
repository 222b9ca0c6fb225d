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


def test_wrong_body_length_fails_every_client_kind(nginx, no_ca_env):
    pytest.importorskip("pycurl", reason="pycurl is not installed")
    urls = [nginx.http_url + "/64k"]
    for client in (multi.Threads(2), multi.Map(4), multi.PycurlMulti(4)):
        client.open(nginx.ca_bundle)
        try:
            result = client.run(urls, 6, 5.0, 100)
        finally:
            client.close()
        assert (result.done, result.failures) == (0, 6), client.key
        assert "65536" in result.error, (client.key, result.error)


def test_pycurl_multi_verifies_against_the_given_ca(nginx, tmp_path):
    pytest.importorskip("pycurl", reason="pycurl is not installed")
    trustme = pytest.importorskip("trustme")
    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    client = multi.PycurlMulti(2)
    client.open(str(other))
    try:
        result = client.run([nginx.https_url + "/100b"], 2, 5.0, 100)
    finally:
        client.close()
    assert (result.done, result.failures) == (0, 2)
    assert "certificate" in result.error.lower() or "ssl" in result.error.lower(), result.error


def test_count_and_time_bounds(nginx, no_ca_env):
    pytest.importorskip("pycurl", reason="pycurl is not installed")
    for client in (multi.Map(8), multi.PycurlMulti(8)):
        client.open(nginx.ca_bundle)
        try:
            counted = client.run([nginx.http_url + "/100b"], 37, 10.0, 100)
            timed = client.run([nginx.http_url + "/100b"], 10**7, 0.2, 100)
        finally:
            client.close()
        assert (counted.done, counted.failures) == (37, 0), client.key
        assert timed.failures == 0 and timed.done > 0, client.key
        assert 0.2 <= timed.elapsed < 5.0, (client.key, timed.elapsed)


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
def _server(answer):
    """A local server that reads each request and sends ``answer`` (None: nothing), then closes
    (or, for None, holds the connection until the test ends)."""
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
                conn.recv(65536)
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
