"""PrefixRouter benchmarks: compiled and pure backends beside requests' Session.get_adapter.

Run ``pytest bench/test_bench_prefix.py --benchmark-enable``. Targets (medians, same run): with
20 mounts the compiled match at least 10x faster than ``get_adapter``; the match time flat from
2 to 10,000 mounts. ``python bench/cores_lru_prefix.py`` prints the ratio table.
"""

from __future__ import annotations

from typing import Any

import pytest
from cores_lru_prefix import DEFAULT_URL, HOST_URL, backends, router_env, session_env, unrolled

OPS = 100  # matches per benchmarked call (1 for requests with 10,000 mounts)

IMPLEMENTATIONS: dict[str, Any] = dict(backends("_prefix", "PrefixRouter"))


@pytest.mark.parametrize("url", [HOST_URL, DEFAULT_URL], ids=["host-url", "default-url"])
@pytest.mark.parametrize("mounts", [2, 20, 100, 10_000])
@pytest.mark.parametrize("impl", ["cython", "python", "requests"])
def test_match(benchmark: Any, impl: str, mounts: int, url: str) -> None:
    if impl == "requests":
        env = session_env(mounts, url)
    elif impl in IMPLEMENTATIONS:
        env = router_env(IMPLEMENTATIONS[impl], mounts, url)
    else:
        pytest.skip(f"{impl} backend not built")
    benchmark.group = (
        f"match x{OPS}, {mounts} mounts, {'host' if url == HOST_URL else 'default'} URL"
    )
    # requests needs milliseconds per call with 10,000 mounts: fewer calls per round there.
    benchmark(unrolled("match(url)", env, OPS if impl != "requests" or mounts < 1000 else 1))
    # Every implementation picks what requests picks.
    assert env["match"](url) == session_env(mounts, url)["match"](url)
