"""Smoke test of bench/scale.py's machinery: ``pytest bench/test_scale.py``.

``--quick`` runs every part on every backend and API (its own server process, a client process
each) at tiny counts: every request completes, every table is printed and the JSON line holds
every number. Nothing here depends on timing: the targets' verdicts are reported by the
script, not asserted (a loaded machine may not start 200 requests within the quick delay).
It measures nothing. A hard descriptor limit too low for ``--connections`` fails clearly.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / "scale.py"

pytest.importorskip("dnslib", reason="the DNS part needs dnslib (tests/dummyserver/dns.py)")
pytest.importorskip("pycares", reason='the DNS part needs pycares (Resolver(backend="cares"))')


def _run(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=180,  # the script's own watchdogs fire well before this
        check=False,
        **kw,  # type: ignore[arg-type]
    )


def test_quick_run_is_clean() -> None:
    done = _run("--quick")
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "SMOKE RUN" in out
    report = json.loads(out.strip().splitlines()[-1])["scale"]
    assert report["quick"] is True
    conns = report["connections"]
    assert set(conns) == {
        f"{b} / {a}" for b in ("cython", "python") for a in ("session", "poolmanager")
    }
    for key, r in conns.items():
        n = r["connections"]
        assert r["backend"] == key.split(" / ")[0], key  # the child ran the backend asked for
        plain, traced = r["plain"], r["traced"]
        assert (plain["ok"], plain["failed"], traced["ok"], traced["failed"]) == (n, 0, n, 0), r
        assert plain["stopped"] == traced["stopped"] == "", r
        server = plain["server"]
        assert server["answered"] == n and server["dropped"] == 0 and server["bad"] == 0, r
        assert 1 <= server["peak_open"] <= n and 1 <= server["peak_in_flight"] <= n, r
        assert plain["open_after_close"] == 0, r  # closing the client closed every connection
        assert plain["rss_per_conn"] >= 0 and traced["heap_peak_per_conn"] > 0, r
        assert traced["top_sites_at_end"], r
        assert f"| {key} |" in out
    names = report["names"]
    assert set(names) == {"cython / cares", "python / cares"}
    for key, r in names.items():
        assert (r["ok"], r["failed"], r["stopped"]) == (r["names"], 0, ""), (key, r)
        assert [t["tenth"] for t in r["tenths"]] == list(range(1, 11)), key
        assert r["server"]["dns_queries"] >= r["names"], key  # every name went to the server
        assert r["resolver"]["misses"] >= r["names"], key
        assert 0 < r["fds_max"], key
        assert f"**{key}**" in out
    assert "threads backend**: not measured" in out


def test_too_low_a_descriptor_limit_fails_clearly() -> None:
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))

    done = _run("--connections", "1000", "--parts", "connections", preexec_fn=low_limit)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "RLIMIT_NOFILE hard limit 200 is below the 1256 descriptors needed" in done.stderr
