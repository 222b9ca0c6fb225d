"""Fork safety: a forked child never speaks on a socket inherited from its parent."""

from __future__ import annotations

import multiprocessing
import os
import sys

import pytest

from fastpool.poolmanager import PoolManager

pytestmark = pytest.mark.skipif(
    not hasattr(os, "register_at_fork") or sys.platform == "win32", reason="needs os.fork"
)

_manager: PoolManager | None = None


def _child(url: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    assert _manager is not None
    pool = _manager.connection_from_url(url)
    before = (pool.pool.idle, pool.pool.in_use)
    response = _manager.request("GET", url + "/bytes/4")
    queue.put((before, response.data, pool.pool.created, pool.pool.idle, pool.pool.in_use))


def test_child_starts_with_empty_pools_and_parent_is_unaffected(app_server):
    global _manager
    _manager = PoolManager()
    try:
        assert _manager.request("GET", app_server.url + "/bytes/4").data == b"abcd"
        pool = _manager.connection_from_url(app_server.url)
        parent_conn = pool.pool.checkout(0)
        parent_sock = parent_conn.sock
        pool.pool.checkin(parent_conn)
        assert app_server.connections == 1

        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_child, args=(app_server.url, queue))
        child.start()
        before, data, created, idle, in_use = queue.get(timeout=30)
        child.join(30)
        assert child.exitcode == 0
        # the child inherited no idle connection, dialled its own, and accounted for it
        assert before == (0, 0)
        assert data == b"abcd" and created == 1 and (idle, in_use) == (1, 0)
        assert app_server.connections == 2

        # the parent still has its connection, its socket open and reusable
        assert pool.pool.idle == 1
        conn = pool.pool.checkout(0)
        assert conn.sock is parent_sock and conn.is_connected
        pool.pool.checkin(conn)
        assert _manager.request("GET", app_server.url + "/bytes/4").data == b"abcd"
        assert app_server.connections == 2
    finally:
        _manager.clear()
        _manager = None


# --- a forked child finishing a response from its parent's world ---------------------------------
_manager = None


def _child_finishes_parent_response(url: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    assert _manager is not None and _in_flight is not None
    try:
        data = _in_flight.read()  # a response from the parent's world
        _in_flight.release_conn()
        pool = _manager.connection_from_url(url)
        state = (pool.pool.idle, pool.pool.in_use)
        again = _manager.request("GET", url + "/bytes/4").data
        queue.put(("ok", len(data), state, again, pool.pool.idle, pool.pool.in_use))
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        queue.put(("error", repr(e)))


_in_flight = None


@pytest.mark.skipif(not hasattr(os, "register_at_fork"), reason="needs os.fork")
def test_child_finishing_a_parent_response_closes_its_connection_quietly(app_server):
    global _manager, _in_flight
    _manager = PoolManager()
    try:
        _in_flight = _manager.request("GET", app_server.url + "/bytes/50000", preload_content=False)
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(
            target=_child_finishes_parent_response, args=(app_server.url, queue)
        )
        child.start()
        result = queue.get(timeout=30)
        child.join(30)
        assert result[0] == "ok", result
        _, size, state, again, idle, in_use = result
        # read in full, its connection closed, never checked in to the child's new pool
        assert size == 50000 and state == (0, 0)
        assert again == b"abcd" and (idle, in_use) == (1, 0)
        _in_flight.close()  # the parent's slot is given back in the parent
        pool = _manager.connection_from_url(app_server.url)
        assert pool.pool.in_use == 0
    finally:
        _in_flight = None
        _manager.clear()
        _manager = None
