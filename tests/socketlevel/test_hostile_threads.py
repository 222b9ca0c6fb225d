"""Attack suite (issue 12), threads with faults: several threads share one client while the
server answers, truncates, resets, stalls or sends garbage at random (seeded, bounded in count
and time). Every failure is a clean error of the client's family, no thread ever reads another
request's answer, and at the end nothing is counted in use: the pools' accounting is back to
zero. And fairness at the global cap (issue 12 (3)): waiters are served first in first out and
the dials never exceed the cap."""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Any

import pytest
import requests
from dummyserver.hostile import HostileConn, answer_each, response
from hostile_clients import FASTPOOL_KINDS, GET, Client

import fastpool

#: Stress and soak runs: `-m "not slow"` leaves them out of a quick run.
pytestmark = pytest.mark.slow

THREADS = 6
REQUESTS_PER_THREAD = 20


def _chaos(seed: int):  # type: ignore[no-untyped-def]
    """Per request (seeded): answer with the request's own path as the body (half the time),
    or truncate, reset, stall past the client's read timeout, send garbage, or close."""
    rng = random.Random(seed)
    lock = threading.Lock()

    def script(conn: HostileConn) -> None:
        while (request := conn.read_request()) is not None:
            path = request.split(b" ")[1]
            with lock:
                pick = rng.random()
            if pick < 0.5:
                conn.send(response(path))
                continue
            if pick < 0.6:
                conn.send(response(path)[:-2])  # two bytes short, then FIN
            elif pick < 0.7:
                conn.reset()
            elif pick < 0.8:
                conn.send(b"HTTP/1.1 2x0 what\r\n\r\n")
            elif pick < 0.9:
                conn.sleep(0.4)  # past the 0.2 s read timeout
            return  # else: FIN without an answer

    return script


def _settled(client: Client) -> None:
    """Nothing in use or waiting anywhere; the global cap counts exactly the idle ones."""
    for pm in client.pool_managers():
        stats = pm.stats()
        assert (stats.total.in_use, stats.total.waiters) == (0, 0)
        if pm.limit is not None:
            assert pm.limit.open == stats.total.idle


@pytest.mark.parametrize("kind", FASTPOOL_KINDS)
@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_threads_against_a_chaotic_server(hostile, ca_bundle: str, kind: str, tls: bool) -> None:
    server = hostile(_chaos(seed=12), tls=tls)
    options: dict[str, Any] = {"max_connections": 4, "ca": ca_bundle if tls else None}
    if kind == "pm":
        options.update(maxsize=2, timeout=0.2, pool_timeout=5)
    else:
        options.update(pool_timeout=5)
    client = Client(kind, **options)
    outcomes: Counter[str] = Counter()
    wrong: list[Any] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        for i in range(REQUESTS_PER_THREAD):
            path = f"/t{t}/r{i}"
            kw = {"timeout": 0.2}
            result = client.send(server.url, GET(path, **kw))
            with lock:
                if result[0] == "error":
                    outcomes[result[1]] += 1
                else:
                    outcomes["ok"] += 1
                    if result[::2] != (200, path.encode()):
                        wrong.append((path, result))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)  # a hang guard
    try:
        assert not any(thread.is_alive() for thread in threads)
        assert not wrong, wrong[:3]  # never another request's answer
        assert sum(outcomes.values()) == THREADS * REQUESTS_PER_THREAD
        assert outcomes["ok"] > 0 and len(outcomes) > 2, outcomes
        assert set(outcomes) <= {"ok", "protocol", "timeout", "body"}, outcomes
        _settled(client)
        # and the client still works against a healthy server
        healthy = hostile(answer_each(response(b"fine")))
        assert client.send(healthy.url, GET("/"))[::2] == (200, b"fine")
        _settled(client)
    finally:
        client.close()


# --- fairness at the global cap (issue 12 (3)) ----------------------------------------------

FAIR_THREADS = 32
FAIR_REQUESTS = 4  # each: 128 requests of 25 ms on 8 connections, about 0.4 s at best


def _slow_answers(conn: HostileConn) -> None:
    while conn.read_request() is not None:
        conn.sleep(0.025)
        conn.send(response(b"ok"))


def _hammer(session: requests.Session, url: str) -> Counter[str]:
    """FAIR_THREADS threads, FAIR_REQUESTS requests each; their outcomes."""
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def work() -> None:
        for _ in range(FAIR_REQUESTS):
            try:
                r = session.get(url, timeout=10)
                name = "ok" if r.content == b"ok" else "wrong"
            except requests.RequestException as exc:
                name = type(exc).__name__
            with lock:
                outcomes[name] += 1

    threads = [threading.Thread(target=work) for _ in range(FAIR_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


def test_stock_pool_block_is_fair_at_the_cap(hostile) -> None:
    """The reference: stock with pool_block=True and 8 connections serves every request."""
    server = hostile(_slow_answers)
    with requests.Session() as session:
        session.trust_env = False
        session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=8, pool_block=True))
        outcomes = _hammer(session, server.url + "/")
    assert outcomes == Counter(ok=FAIR_THREADS * FAIR_REQUESTS)
    assert server.connections <= 8


@pytest.mark.parametrize("limit", ["max_connections", "max_connections_per_host"])
def test_waiters_at_the_cap_are_served_fairly(hostile, limit: str) -> None:
    """Issue 12 (3): 32 threads on one healthy host behind a cap of 8 with pool_timeout=3.
    No request may time out (the fair wait is about 0.1 s), and the server sees no more dials
    than the cap: a connection coming back goes to the longest waiter, not to a new dial."""
    server = hostile(_slow_answers)
    with fastpool.Session(**{limit: 8}, pool_timeout=3) as session:
        session.trust_env = False
        outcomes = _hammer(session, server.url + "/")
        stats = session.pool_stats()
    assert outcomes == Counter(ok=FAIR_THREADS * FAIR_REQUESTS), outcomes
    assert server.connections <= 8
    assert (stats.total.in_use, stats.total.waiters) == (0, 0)
