"""Fork safety of ``map()``: a forked child that finishes exchanges its parent began (on the
light lane, or through ``urlopen``) closes their connections and leaves its own (new) pool
alone, as a response from the parent's world does (see test_fork.py)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

import pytest
from dummyserver import AppServer

import fastpool
from fastpool.poolmanager import PoolManager

pytestmark = pytest.mark.skipif(
    not hasattr(os, "register_at_fork") or sys.platform == "win32", reason="needs os.fork"
)


def _in_child(work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``work()`` run in a forked child; what it returned (or the error it raised, which
    fails the test) back in the parent."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read_end)
            os.write(write_end, json.dumps(work()).encode())
            code = 0
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            os.write(write_end, json.dumps({"error": repr(e)}).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    outcome: dict[str, Any] = json.loads(report)
    assert os.waitstatus_to_exitcode(status) == 0, outcome
    return outcome


def _finish_in_child(results: Any, manager: PoolManager, url: str) -> dict[str, Any]:
    pool = manager.connection_from_url(url)
    before = [pool.pool.idle, pool.pool.in_use]
    seen = []
    for result in results:  # the exchanges the parent began, finished here
        response = result.response
        seen.append(
            repr(result.error)
            if result.error is not None
            else [type(response).__name__, response.status, response.data.decode()]
        )
    after = [pool.pool.idle, pool.pool.in_use]
    again = manager.request("GET", url + "/bytes/4").data.decode()
    return {
        "before": before,
        "seen": seen,
        "after": after,
        "again": again,
        "end": [pool.pool.idle, pool.pool.in_use],
    }


@pytest.mark.parametrize("light", [True, False], ids=["light", "urlopen"])
def test_child_finishing_parent_exchanges_closes_their_connections(
    app_server: AppServer, light: bool
) -> None:
    url = app_server.url
    manager = PoolManager()
    try:
        # One fast answer, then three the server holds back: in flight when the parent forks.
        items = [url + "/bytes/4"] + [url + "/slow?delay=0.3"] * 3
        results = manager.map(items, concurrency=4, light=light)
        first = next(results)
        assert first.error is None and first.response.data == b"abcd"
        outcome = _in_child(lambda: _finish_in_child(results, manager, url))

        # The child read the answers, closed the parent's connections, and its new pool never
        # saw them: no slot given back to it, nothing idle in it.
        kind = "LightResponse" if light else "HTTPResponse"
        assert outcome["before"] == [0, 0]
        assert outcome["seen"] == [[kind, 200, "slow"]] * 3
        assert outcome["after"] == [0, 0]
        assert outcome["again"] == "abcd" and outcome["end"] == [1, 0]

        # The parent gives its slots back when it leaves the map (the sockets are spent).
        results.close()
        pool = manager.connection_from_url(url)
        assert pool.pool.in_use == 0
        assert manager.request("GET", url + "/bytes/4").data == b"abcd"
    finally:
        manager.clear()


def _leave_in_child(results: Any, manager: PoolManager, url: str) -> dict[str, Any]:
    pool = manager.connection_from_url(url)
    results.close()  # leaves the map: the parent's exchanges in flight are abandoned here
    return {"after": [pool.pool.idle, pool.pool.in_use]}


def test_child_leaving_the_parents_map_gives_no_slot_to_its_own_pool(
    app_server: AppServer,
) -> None:
    """A child that leaves the map with the parent's exchanges in flight closes their
    connections; it must not give their slots to its own new pool (which never lent them:
    ``ValueError: checkin without a matching checkout``)."""
    url = app_server.url
    manager = PoolManager()
    try:
        items = [url + "/bytes/4"] + [url + "/slow?delay=0.3"] * 3
        results = manager.map(items, concurrency=4, light=True)
        assert next(results).error is None
        outcome = _in_child(lambda: _leave_in_child(results, manager, url))
        assert outcome["after"] == [0, 0]
        results.close()
        assert manager.connection_from_url(url).pool.in_use == 0
    finally:
        manager.clear()


def test_light_lane_is_the_one_taken(app_server: AppServer) -> None:
    """The exchanges above finish on the light lane (else the test proves nothing of it)."""
    with PoolManager() as manager:
        (result,) = manager.map([app_server.url + "/slow?delay=0.01"], light=True)
    assert type(result.response) is fastpool.LightResponse


@pytest.mark.parametrize("leave", [False, True], ids=["finish", "leave"])
@pytest.mark.parametrize("light", [True, False], ids=["light", "urlopen"])
def test_a_child_keeps_its_own_global_cap_whole(
    app_server: AppServer, light: bool, leave: bool
) -> None:
    """Under a global cap, the parent's connections a child closes (finishing or leaving the
    parent's map) hold the parent's tokens: given to the child's own, reset, cap they made its
    count of open connections negative (-3), so the child could open more than the cap."""
    url = app_server.url
    manager = PoolManager(max_connections=8)
    try:
        items = [url + "/bytes/4"] + [url + "/slow?delay=0.3"] * 3
        results = manager.map(items, concurrency=4, light=light)
        assert next(results).error is None

        def work() -> dict[str, Any]:
            if leave:
                results.close()
            else:
                for result in results:
                    assert result.error is None, result.error
            return {"open": manager.limit.open}

        assert _in_child(work) == {"open": 0}
        results.close()
    finally:
        manager.clear()
