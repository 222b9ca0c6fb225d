"""pytest plugin for requests' own test suite: every ``HTTPAdapter`` it makes is fastpool's.

Loaded with ``-p fastpool_swap`` (``compat/`` on ``PYTHONPATH``, see ``requests_suite.py``). At
import time, before requests' tests are collected, ``requests.adapters.HTTPAdapter`` and the
name ``requests.sessions`` imported from it become :class:`fastpool.HTTPAdapter`, so every
``requests.Session()`` mounts fastpool's adapter. With ``FASTPOOL_SWAP=session``,
``requests.Session``, ``requests.sessions.Session`` and ``requests.session`` become
:class:`fastpool.Session` too (``requests.get`` and friends use it). The plugin counts the sends
that went through fastpool's adapter and fails the run when there were fewer than
``FASTPOOL_SWAP_MIN_SENDS`` (default 100): a run that never reached fastpool must not pass as a
compatibility check.
"""

from __future__ import annotations

import os
from typing import Any

import requests
import requests.adapters
import requests.sessions

import fastpool

_sends = 0
_stock_send = fastpool.HTTPAdapter.send


def _counting_send(self: fastpool.HTTPAdapter, *args: Any, **kwargs: Any) -> Any:
    global _sends
    _sends += 1
    return _stock_send(self, *args, **kwargs)


fastpool.HTTPAdapter.send = _counting_send  # type: ignore[method-assign]
requests.adapters.HTTPAdapter = fastpool.HTTPAdapter  # type: ignore[misc]
requests.sessions.HTTPAdapter = fastpool.HTTPAdapter  # type: ignore[misc]
SWAP = os.environ.get("FASTPOOL_SWAP", "adapter")
if SWAP == "session":
    requests.Session = fastpool.Session  # type: ignore[misc]
    requests.sessions.Session = fastpool.Session  # type: ignore[misc]
    requests.session = requests.sessions.session = fastpool.Session  # type: ignore[assignment]
    assert type(requests.session()) is fastpool.Session
elif SWAP != "adapter":
    raise ValueError(f"FASTPOOL_SWAP must be 'adapter' or 'session', got {SWAP!r}")
with requests.Session() as _session:
    assert all(isinstance(a, fastpool.HTTPAdapter) for a in _session.adapters.values())


def pytest_report_header(config: Any) -> str:
    """Say which adapter and core the run uses."""
    swapped = "HTTPAdapter and Session" if SWAP == "session" else "HTTPAdapter"
    return (
        f"fastpool_swap: requests {requests.__version__} with fastpool {fastpool.__version__} "
        f"({fastpool.implementation()} core) in place of requests' {swapped}"
    )


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    """Fail a run in which too few requests went through fastpool's adapter."""
    minimum = int(os.environ.get("FASTPOOL_SWAP_MIN_SENDS", "100"))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"fastpool_swap: {_sends} requests went through fastpool.HTTPAdapter")
    if _sends < minimum and exitstatus == 0:
        if reporter is not None:
            reporter.write_line(f"fastpool_swap: FAILED, fewer than {minimum} sends", red=True)
        session.exitstatus = 1
