"""pytest-benchmark: fastpool.HTTPAdapter vs requests' stock adapter on nginx (loopback).

Run ``pytest bench/test_bench_adapter.py --benchmark-enable``; each group holds the stock and
the fastpool timing of one scenario, measured in the same run, so compare their medians.
``test_ratio_table`` prints the stock/fastpool ratios (``python bench/adapter.py`` too).
Targets: ``session.get`` >= 1.35x, ``adapter.send`` >= 3x, 32 threads no slower and the same
number of connections. No assert on speed: a shared machine makes timings indicative.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from adapter import ADAPTERS, THREADS, adapter_send, format_table, make_session, measure, threaded
from adapter import session_get as session_get_call

NAMES = list(ADAPTERS)


@pytest.fixture
def quiet_pools() -> Iterator[None]:
    """32 threads over pool_maxsize=10 discard connections, one warning each: not news here."""
    loggers = [logging.getLogger(name) for name in ("urllib3", "fastpool")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    yield
    for logger, level in zip(loggers, levels):
        logger.setLevel(level)


@pytest.fixture(params=NAMES)
def adapter(request: pytest.FixtureRequest) -> Iterator[requests.adapters.HTTPAdapter]:
    instance = ADAPTERS[request.param]()
    yield instance
    instance.close()


@pytest.mark.benchmark(group="session.get 100 B keep-alive")
def test_session_get(benchmark: Any, nginx: Any, adapter: Any) -> None:
    session = make_session(adapter)
    run = session_get_call(session, nginx.http_url + "/100b")
    run()
    benchmark(run)


@pytest.mark.benchmark(group="adapter.send(prepared) 100 B")
def test_adapter_send(benchmark: Any, nginx: Any, adapter: Any) -> None:
    run = adapter_send(adapter, nginx.http_url + "/100b")
    run()
    benchmark(run)


@pytest.mark.benchmark(group=f"{THREADS} threads, one Session, default sizes")
def test_threads(benchmark: Any, nginx: Any, adapter: Any, quiet_pools: None) -> None:
    session = make_session(adapter)
    before = nginx.connections()
    benchmark.pedantic(threaded, args=(session, nginx.http_url + "/100b", 20), rounds=5)
    benchmark.extra_info["connections"] = nginx.connections() - before


def test_ratio_table(nginx: Any, quiet_pools: None, capsys: pytest.CaptureFixture[str]) -> None:
    """The same scenarios interleaved, as ratios (printed; no speed assert)."""
    rows = measure(nginx, n=500, repeats=3)
    assert [row["scenario"] for row in rows] == [
        "raw-socket floor",
        "session.get",
        "adapter.send",
        f"{THREADS} threads",
    ]
    assert all(0 < seconds < 1 for seconds in rows[0]["floor"])
    with capsys.disabled():
        print("\n" + format_table(rows))
