"""LRUMap benchmarks: compiled and pure backends beside urllib3's RecentlyUsedContainer.

Run ``pytest bench/test_bench_lru.py --benchmark-enable``. Targets (medians, same run): the
compiled LRUMap at least 5x faster than RecentlyUsedContainer on both operations, the pure twin no
slower. ``python bench/cores_lru_prefix.py`` prints the same comparison as a ratio table.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
from cores_lru_prefix import EVICT_KEYS, backends, lru_evict_env, lru_get_env
from urllib3._collections import RecentlyUsedContainer

IMPLEMENTATIONS = {"urllib3": RecentlyUsedContainer, **dict(backends("_lru", "LRUMap"))}


@pytest.fixture(params=["cython", "python", "urllib3"])
def lru_impl(request: pytest.FixtureRequest) -> type:
    """An LRU map class: our compiled or pure LRUMap, or urllib3's RecentlyUsedContainer."""
    if request.param not in IMPLEMENTATIONS:
        pytest.skip(f"{request.param} backend not built")
    return IMPLEMENTATIONS[request.param]


def test_get_hit(benchmark: Any, lru_impl: type) -> None:
    env = lru_get_env(lru_impl)
    get: Callable[[Any], Any] = env["m"].__getitem__
    value = benchmark(get, env["key"])
    assert value is get(env["key"])


def test_put_evicts(benchmark: Any, lru_impl: type) -> None:
    env = lru_evict_env(lru_impl)
    m, value = env["m"], env["v"]
    keys = [env[f"k{i}"] for i in range(EVICT_KEYS)]

    def put_cycle() -> None:
        # maxsize + 1 keys in order: every put inserts a new key and evicts the oldest.
        for key in keys:
            m[key] = value

    benchmark(put_cycle)
    assert len(m) == 10
