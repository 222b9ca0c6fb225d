"""Checks of the peer benchmark's own machinery: ``pytest bench/peers``.

Every in-process client fetches real bodies from nginx (bench/conftest.py's ``nginx``) over
HTTP and HTTPS with the bench CA; the measuring loop honours its bounds, and counts a wrong
body length and a hung worker as failures.
"""

from __future__ import annotations

import threading
import time

import pytest
from clients import RawSocketFloor, VenvClient, all_clients
from measure import HUNG, run_threads
from nginx_server import RUN_ROOT

IN_PROCESS = [c for c in all_clients(RUN_ROOT) if not isinstance(c, VenvClient)]


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("client", IN_PROCESS, ids=lambda c: c.key)
def test_client_gets_whole_bodies_over_kept_connections(nginx, client, scheme):
    base = nginx.https_url if scheme == "https" else nginx.http_url
    client.open(nginx.ca_bundle, 5.0)
    try:
        client.run([base + "/64k"], 1, 1, 5.0, 65536)  # connect
        before = nginx.connections()
        alone = client.run([base + "/64k"], 1, 20, 10.0, 65536)
        opened = nginx.connections() - before
        threaded = client.run([base + "/100b"], 3, 60, 10.0, 100)
    finally:
        client.close()
    assert (alone.done, alone.failures, alone.error) == (20, 0, "")
    assert opened == 0  # one thread keeps its connection
    assert (threaded.done, threaded.failures, threaded.error) == (60, 0, "")


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory):
    """A CA that did not sign nginx's certificate."""
    import trustme

    path = tmp_path_factory.mktemp("ca") / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


@pytest.mark.parametrize("client", IN_PROCESS, ids=lambda c: c.key)
def test_every_client_verifies_against_the_given_ca(nginx, other_ca, client):
    client.open(other_ca, 5.0)
    try:
        result = client.run([nginx.https_url + "/100b"], 1, 2, 5.0, 100)
    finally:
        client.close()
    assert (result.done, result.failures) == (0, 2)
    assert "certificate" in result.error.lower() or "ssl" in result.error.lower(), result.error


def test_wrong_body_length_is_a_failure(nginx):
    client = RawSocketFloor()
    client.open(nginx.ca_bundle, 5.0)
    try:
        result = client.run([nginx.http_url + "/64k"], 1, 5, 5.0, 100)
    finally:
        client.close()
    assert (result.done, result.failures) == (0, 5)
    assert result.error == "BodyLengthError: got 65536 bytes, expected 100"


def test_count_bound_and_round_robin():
    seen: list[str] = []
    lock = threading.Lock()

    def fetch(url: str) -> int:
        with lock:
            seen.append(url)
        return 7

    result = run_threads([fetch] * 4, ["a", "b", "c"], 30, 10.0, 7, 1.0)
    assert (result.done, result.failures) == (30, 0)
    assert sorted(seen) == ["a"] * 10 + ["b"] * 10 + ["c"] * 10


def test_time_bound():
    def fetch(url: str) -> int:
        time.sleep(0.01)
        return 1

    result = run_threads([fetch, fetch], ["x"], 10**6, 0.2, 1, 1.0)
    assert 0 < result.done < 200
    assert 0.2 <= result.elapsed < 1.0


def test_hung_worker_is_a_failure():
    release = threading.Event()

    def fetch(url: str) -> int:
        release.wait(5)  # far longer than the run's grace of 0.15 s
        return 1

    try:
        result = run_threads([fetch, fetch], ["x"], 10, 0.05, 1, 0.1)
    finally:
        release.set()
    assert result.failures == 2
    assert result.error.startswith(HUNG)
