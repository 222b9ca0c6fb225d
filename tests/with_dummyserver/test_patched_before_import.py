"""A patch made before fastpool's modules are first imported is a patch all the same.

fastpool imports its modules lazily, so a test may patch ``fastpool.connection``'s or
urllib3's steps (``mock.patch`` as a decorator, a conftest at start-up) before ``fastpool.pool``
is ever imported. The map compares each step with fastpool's or urllib3's own to know whether
it may take a request past it: those must be the functions the modules define, not whatever was
in place when ``fastpool.pool`` was imported. Each case runs in a fresh interpreter (this one
imported everything long ago), on the backend this suite runs on, against a real server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from dummyserver import AppServer

_CASES = {
    # a tool's wrapper on the connection's request, installed before fastpool.pool exists
    "connection-request": """
        import fastpool.connection as connection
        from unittest import mock
        calls = []
        own = connection.HTTPConnection.request
        def request(self, *args, **kwargs):
            calls.append(1)
            return own(self, *args, **kwargs)
        with mock.patch.object(connection.HTTPConnection, "request", request):
            import fastpool
            with fastpool.PoolManager() as manager:
                urls = [URL + "/bytes/3"] * 6
                for light in (True, False):
                    results = list(manager.map(urls, concurrency=2, light=light))
                    assert [r.error for r in results] == [None] * 6, results
        assert len(calls) == 12, calls
    """,
    # a test that skips urllib3's backoffs by patching time.sleep, before fastpool is imported
    "time-sleep": """
        import time
        from unittest import mock
        from urllib3.util.retry import Retry
        with mock.patch("time.sleep") as sleep:
            import fastpool
            retries = Retry(total=2, backoff_factor=30, status_forcelist=[503])
            with fastpool.PoolManager() as manager:
                item = ("GET", URL + "/status/503", {"retries": retries})
                (result,) = list(manager.map([item], deadline=10))
        assert sleep.call_args_list == [mock.call(60)], sleep.call_args_list
        assert type(result.error).__name__ == "MaxRetryError", result
    """,
    # a resolver patch made before fastpool.connection is imported
    "resolver-resolve": """
        import fastpool.resolver as resolver
        from unittest import mock
        calls = []
        own = resolver.Resolver.resolve
        def resolve(self, *args, **kwargs):
            calls.append(args[0])
            return own(self, *args, **kwargs)
        with mock.patch.object(resolver.Resolver, "resolve", resolve):
            import fastpool
            with fastpool.PoolManager(resolver=resolver.Resolver()) as manager:
                url = URL.replace("127.0.0.1", "localhost") + "/bytes/3"
                (result,) = list(manager.map([url]))
                assert result.error is None, result
        assert "localhost" in calls, calls
    """,
}


@pytest.mark.parametrize("case", sorted(_CASES))
def test_a_patch_made_before_import_is_seen_by_the_map(app_server: AppServer, case: str) -> None:
    code = f"URL = {app_server.url!r}\n" + textwrap.dedent(_CASES[case])
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
