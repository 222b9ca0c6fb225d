"""pytest-benchmark: fastpool.Session vs requests.Session on nginx (loopback).

Run ``pytest bench/test_bench_session.py --benchmark-enable``; each group holds the requests and
the fastpool timing of one scenario, measured in the same run, so compare their medians.
``test_session_ratio_table`` prints the ratios, the raw-socket floor, connections, discards and
the idle memory of 1,000 warm pools (``python bench/session.py`` too). Targets: ``get`` >= 4x
requests and within 2.2x of the floor; 32 threads >= 3x, zero discards, connections <=
threads; a crawl of 200 hosts opens one connection per host; memory within 2x of requests'. No assert on speed: a shared machine makes timings
indicative. The counts (discards, connections) are asserted: they do not depend on timing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from session import (
    SESSIONS,
    THREADS,
    DiscardCounter,
    format_table,
    get_call,
    measure,
    measure_memory,
    threaded,
)

NAMES = list(SESSIONS)


@pytest.fixture(params=NAMES)
def session(request: pytest.FixtureRequest) -> Iterator[requests.Session]:
    instance = SESSIONS[request.param]()
    yield instance
    instance.close()


@pytest.mark.benchmark(group="Session().get 100 B keep-alive, trust_env on")
def test_session_get(benchmark: Any, nginx: Any, session: requests.Session) -> None:
    run = get_call(session, nginx.http_url + "/100b")
    run()
    benchmark(run)


@pytest.mark.benchmark(group="raw-socket floor 100 B")
def test_floor(benchmark: Any, floor: Any) -> None:
    benchmark.pedantic(floor, kwargs={"n": 500}, rounds=5)


@pytest.mark.benchmark(group=f"{THREADS} threads, one Session, one host")
def test_threads(benchmark: Any, nginx: Any, session: requests.Session) -> None:
    before = nginx.connections()
    with DiscardCounter() as discards:
        benchmark.pedantic(threaded, args=(session, nginx.http_url + "/100b", 20), rounds=5)
    connections = nginx.connections() - before
    benchmark.extra_info.update(connections=connections, discards=discards.count)
    if isinstance(session, SESSIONS["fastpool"]):
        assert discards.count == 0
        assert connections <= THREADS


def test_session_ratio_table(nginx: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """All scenarios interleaved, as ratios (printed; counts asserted, no speed assert)."""
    rows = measure(nginx, n=500, repeats=3)
    rows.append(measure_memory(hosts=250, ports=4))
    assert [row["scenario"] for row in rows][:2] == [
        "get 100 B, 1 thread",
        f"{THREADS} threads, 1 host",
    ]
    assert rows[1]["discards"]["fastpool"] == 0
    assert rows[1]["connections"]["fastpool"] <= THREADS
    crawl = next(row for row in rows if row["scenario"].startswith("crawl"))
    assert crawl["connections"]["fastpool"] == len(nginx.http_urls())  # one per host, kept
    with capsys.disabled():
        print("\n" + format_table(rows))
