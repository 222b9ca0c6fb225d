"""pytest-benchmark: what observability costs a request, on nginx over loopback.

Run ``pytest bench/test_bench_stats.py --benchmark-enable``. Group "trace": one
``fastpool.PoolManager.request`` (HTTP, 100 B, keep-alive, body read) with tracing off
(``trace=None``, the default), with an empty :class:`~fastpool.trace.Trace` and with a no-op
hook on every event. ``test_trace_ratios`` measures the three interleaved in one run and
records the medians and ratios in ``extra_info`` (and prints them). The counters behind
``stats()`` are always on (they are the HostQueue's and the pool's own ints), so tracing off
is the request's cost with stats. Group "snapshot": :func:`fastpool.stats.snapshot` of a
manager with 100 warm pools, and :func:`~fastpool.stats.advise` on it. No assert on speed.
"""

from __future__ import annotations

import statistics
from typing import Any

import pytest
from engine import client_get, per_request

import fastpool
from fastpool.stats import advise, snapshot
from fastpool.trace import ALL, Trace, TraceEvent

MODES = ["off", "empty", "hook"]


def _noop(event: TraceEvent) -> None:
    pass


def traced_manager(mode: str) -> Any:
    """A PoolManager with tracing ``off`` (None), an ``empty`` Trace, or a no-op ``hook``."""
    if mode == "off":
        return fastpool.PoolManager()
    trace = Trace()
    if mode == "hook":
        trace.add(ALL, _noop)
    return fastpool.PoolManager(trace=trace)


@pytest.mark.parametrize("mode", MODES)
def test_request(benchmark: Any, nginx: Any, mode: str) -> None:
    benchmark.group = "trace: PoolManager.request GET HTTP /100b"
    manager = traced_manager(mode)
    run = client_get(manager, nginx.http_url + "/100b")
    run()
    benchmark(run)
    manager.clear()


def test_trace_ratios(benchmark: Any, nginx: Any) -> None:
    """The three modes interleaved (5 rounds of 1,000 requests each), medians and ratios."""
    benchmark.group = "trace: ratios (interleaved)"
    url = nginx.http_url + "/100b"
    runs = {mode: client_get(traced_manager(mode), url) for mode in MODES}
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for run in runs.values():
        per_request(run, 200)  # warm-up: connection, caches
    for _ in range(5):
        for mode, run in runs.items():
            times[mode].append(per_request(run, 1000))
    medians = {mode: statistics.median(values) for mode, values in times.items()}
    for mode in MODES:
        benchmark.extra_info[f"{mode}_median_us"] = round(medians[mode] * 1e6, 2)
        benchmark.extra_info[f"{mode}/off"] = round(medians[mode] / medians["off"], 3)
    print(
        "\ntrace cost per request (medians, one run: indicative): "
        + ", ".join(
            f"{m} {medians[m] * 1e6:.1f} us (x{medians[m] / medians['off']:.3f})" for m in MODES
        )
    )
    benchmark(runs["off"])


@pytest.fixture(scope="module")
def warm_manager(nginx: Any) -> Any:
    """A PoolManager with 100 pools (nginx on 127.0.0.2 ... 127.0.0.101), one idle connection
    each."""
    manager = fastpool.PoolManager(num_pools=100)
    for url in nginx.http_urls()[:100]:
        manager.request("GET", url + "/100b").data  # noqa: B018 - read: the connection goes back
    yield manager
    manager.clear()


def test_snapshot_100_pools(benchmark: Any, warm_manager: Any) -> None:
    benchmark.group = "snapshot"
    stats = benchmark(snapshot, warm_manager)
    assert len(stats.hosts) == 100


def test_advise_100_pools(benchmark: Any, warm_manager: Any) -> None:
    benchmark.group = "snapshot"
    stats = snapshot(warm_manager)
    benchmark(advise, stats, threads=8, hosts=100)
