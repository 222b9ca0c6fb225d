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
