"""pytest plugin for urllib3's own test suite: its public pools are fastpool's.

Loaded with ``-p fastpool_urllib3_swap`` (``compat/`` on ``PYTHONPATH``, see
``urllib3_suite.py``), in both passes the script runs. It does three things:

- Keeps every test on loopback, swapped or not: name lookups other than ``localhost`` and
  connections to addresses outside 127.0.0.0/8 and ::1 fail on the spot (``ENETUNREACH``, or
  ``EAI_NONAME`` for a name), and the test that tried is recorded, so a deselection list that
  misses one is caught without a packet leaving the machine.
- Writes each test's outcome to the JSON file named by ``FASTPOOL_U3_OUTCOMES``, for the
  test-by-test comparison of the stock and swapped passes.
- With ``FASTPOOL_U3_SWAP=1``, at import time (before urllib3's tests are collected) puts
  fastpool's ``PoolManager``, ``ProxyManager``, ``proxy_from_url``, ``HTTPConnectionPool``,
  ``HTTPSConnectionPool``, ``connection_from_url`` in place of urllib3's, in ``urllib3``,
  ``urllib3.poolmanager`` and ``urllib3.connectionpool``, and ``urllib3.request`` on a fastpool
  ``PoolManager``. It counts the requests that went through fastpool's pools and fails the run
  when there were fewer than ``FASTPOOL_U3_MIN_REQUESTS`` (default 500): a run that never
  reached fastpool must not pass as a compatibility check.
"""

from __future__ import annotations

import errno
import functools
import gc
import ipaddress
import json
import os
import socket
import sys
import warnings
from typing import Any

import pytest
import urllib3
import urllib3.connectionpool
import urllib3.poolmanager

import fastpool

# urllib3's own subclasses of its pools (SOCKS, pyOpenSSL, HTTP/2) are not part of the swap: a
# user importing them gets urllib3's. Import them before swapping so they keep their bases.
for _name in ("urllib3.contrib.socks", "urllib3.contrib.pyopenssl", "urllib3.http2"):
    try:
        __import__(_name)
    except ImportError:  # an optional dependency (PySocks, pyOpenSSL, h2) is missing
        pass

# --- loopback guard -------------------------------------------------------------------------

_LOCAL_NAMES = {"localhost", "localhost.", "ip6-localhost", "ip6-loopback"}
_current_test = "<collection>"
_off_loopback: dict[str, list[str]] = {}


def _local(host: Any) -> bool:
    """Whether ``host`` (a name, an address, or None for a wildcard) stays on this machine."""
    if host is None or host == "":  # a wildcard, for bind()
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host).strip("[]").split("%", 1)[0]
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name other than localhost: resolving it would be a DNS query
    return address.is_loopback or address.is_unspecified


def _refuse(what: str) -> None:
    _off_loopback.setdefault(_current_test, []).append(what)


_stock_getaddrinfo = socket.getaddrinfo
_stock_gethostbyname = socket.gethostbyname
_stock_gethostbyname_ex = socket.gethostbyname_ex
_stock_connect = socket.socket.connect
_stock_connect_ex = socket.socket.connect_ex
_stock_bind = socket.socket.bind


def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if not _local(host):
        try:  # an address literal is no lookup: let connect() judge it
            ipaddress.ip_address(str(host).strip("[]").split("%", 1)[0])
        except ValueError:
            _refuse(f"getaddrinfo({host!r})")
            # not an address literal: the ValueError is no part of the story
            raise socket.gaierror(
                socket.EAI_NONAME, f"{host!r}: off loopback (fastpool compat)"
            ) from None
    if host == "localhost.":  # the resolver might ask DNS for the rooted name
        host = "localhost"
    return _stock_getaddrinfo(host, *args, **kwargs)


def _by_name(stock: Any) -> Any:
    @functools.wraps(stock)
    def lookup(host: str) -> Any:
        if not _local(host):
            _refuse(f"{stock.__name__}({host!r})")
            raise socket.gaierror(socket.EAI_NONAME, f"{host!r}: off loopback (fastpool compat)")
        return stock(host)

    return lookup


def _check_address(sock: socket.socket, address: Any) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
        _refuse(f"connect({address!r})")
        raise OSError(errno.ENETUNREACH, f"{address[0]!r}: off loopback (fastpool compat)")


def _bind(self: socket.socket, address: Any) -> None:
    # A source address off loopback: nothing may be sent from it, even to loopback.
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
        _refuse(f"bind({address!r})")
        raise OSError(errno.EADDRNOTAVAIL, f"{address[0]!r}: off loopback (fastpool compat)")
    return _stock_bind(self, address)


def _connect(self: socket.socket, address: Any) -> None:
    _check_address(self, address)
    return _stock_connect(self, address)


def _connect_ex(self: socket.socket, address: Any) -> int:
    _check_address(self, address)
    return _stock_connect_ex(self, address)


socket.getaddrinfo = _getaddrinfo
socket.gethostbyname = _by_name(_stock_gethostbyname)
socket.gethostbyname_ex = _by_name(_stock_gethostbyname_ex)
socket.socket.connect = _connect  # type: ignore[method-assign]
socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign]
socket.socket.bind = _bind  # type: ignore[method-assign]

# --- the swap -------------------------------------------------------------------------------

SWAP = os.environ.get("FASTPOOL_U3_SWAP", "0") == "1"
_requests = 0


def _counting(urlopen: Any) -> Any:
    @functools.wraps(urlopen)
    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        global _requests
        _requests += 1
        return urlopen(self, *args, **kwargs)

    return counted


if SWAP:
    from fastpool.pool import HTTPConnectionPool as _FastPool

    _FastPool.urlopen = _counting(_FastPool.urlopen)  # type: ignore[method-assign]
    _DEFAULT_POOL = fastpool.PoolManager()

    def request(
        method: str,
        url: str,
        *,
        body: Any = None,
        fields: Any = None,
        headers: Any = None,
        preload_content: bool | None = True,
        decode_content: bool | None = True,
        redirect: bool | None = True,
        retries: Any = None,
        timeout: Any = 3,
        json: Any = None,
    ) -> Any:
        """``urllib3.request`` on a module-global fastpool ``PoolManager``."""
        return _DEFAULT_POOL.request(
            method,
            url,
            body=body,
            fields=fields,
            headers=headers,
            preload_content=preload_content,
            decode_content=decode_content,
            redirect=redirect,
            retries=retries,
            timeout=timeout,
            json=json,
        )

    _SWAPPED = {
        "PoolManager": fastpool.PoolManager,
        "ProxyManager": fastpool.ProxyManager,
        "proxy_from_url": fastpool.proxy_from_url,
        "HTTPConnectionPool": fastpool.HTTPConnectionPool,
        "HTTPSConnectionPool": fastpool.HTTPSConnectionPool,
        "connection_from_url": fastpool.connection_from_url,
    }
    for _module in (urllib3, urllib3.poolmanager, urllib3.connectionpool):
        for _name, _value in _SWAPPED.items():
            if hasattr(_module, _name):
                setattr(_module, _name, _value)
    urllib3.request = request  # type: ignore[assignment]
    urllib3._DEFAULT_POOL = _DEFAULT_POOL  # type: ignore[attr-defined]
    assert urllib3.PoolManager is fastpool.PoolManager

# --- isolation ------------------------------------------------------------------------------

# Tests patch the classes they import: urllib3.http2's inject/extract and the h2 fixture set
# ``HTTPSConnectionPool.ConnectionCls`` and ``HTTPConnectionPool.ConnectionCls`` to urllib3's
# connection classes when they are done, which on fastpool's pools would spill into every later
# test. ``withPyOpenSSL`` leaves pyOpenSSL injected when its test fails. Undo both after each
# test, so a test's outcome is its own.
# Tests whose call failed (see pytest_runtest_teardown).
_failed_calls: set[str] = set()

_connection_classes = {
    pool: pool.__dict__.get("ConnectionCls")
    for pool in (fastpool.HTTPConnectionPool, fastpool.HTTPSConnectionPool)
}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Any:
    """Put back what a test changed on the swapped classes and in urllib3's TLS layer.

    After a test that failed (with the swap: one listed for urllib3's internals, say), collect
    its garbage now, quietly: a socket it left open when it stopped half-way would otherwise
    raise its ResourceWarning in whichever test the collector next runs in, and fail that one.
    A test that passes gets no such help, so its leaks still show.
    """
    yield
    if item.nodeid in _failed_calls:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
    for pool, cls in _connection_classes.items():
        if pool.__dict__.get("ConnectionCls") is not cls:
            if cls is None:
                delattr(pool, "ConnectionCls")
            else:
                pool.ConnectionCls = cls
    ssl_ = sys.modules.get("urllib3.util.ssl_")
    pyopenssl = sys.modules.get("urllib3.contrib.pyopenssl")
    if ssl_ is not None and pyopenssl is not None and getattr(ssl_, "IS_PYOPENSSL", False):
        pyopenssl.extract_from_urllib3()


# --- outcomes -------------------------------------------------------------------------------

_outcomes: dict[str, dict[str, Any]] = {}


def pytest_report_header(config: pytest.Config) -> str:
    """Say what the pass runs."""
    what = (
        f"fastpool {fastpool.__version__} ({fastpool.implementation()} core) in place of its pools"
        if SWAP
        else "stock (no swap)"
    )
    return f"fastpool_urllib3_swap: urllib3 {urllib3.__version__}, {what}; loopback guard on"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_logstart(nodeid: str, location: Any) -> None:
    """Note the running test, for the loopback guard's record."""
    global _current_test
    _current_test = nodeid


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Fold the setup/call/teardown reports of each test into one outcome."""
    entry = _outcomes.setdefault(report.nodeid, {"outcome": "passed", "message": ""})
    if report.failed and report.when == "call":
        _failed_calls.add(report.nodeid)
    if report.failed:
        if entry["outcome"] != "failed":
            entry["outcome"] = "failed"
            crash = getattr(report.longrepr, "reprcrash", None)
            message = crash.message if crash is not None else str(report.longrepr)
            entry["message"] = f"{report.when}: {message.splitlines()[0] if message else ''}"
    elif report.skipped and entry["outcome"] == "passed":
        entry["outcome"] = "xfailed" if hasattr(report, "wasxfail") else "skipped"
        if isinstance(report.longrepr, tuple):  # (file, line, "Skipped: reason")
            entry["message"] = str(report.longrepr[2])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the outcomes; fail a swapped run in which too few requests reached fastpool."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    path = os.environ.get("FASTPOOL_U3_OUTCOMES")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "swap": SWAP,
                    "requests": _requests,
                    "tests": _outcomes,
                    "off_loopback": _off_loopback,
                },
                f,
                indent=1,
            )
    for test, attempts in _off_loopback.items():
        if reporter is not None:
            reporter.write_line(
                f"fastpool_urllib3_swap: {test} tried to leave loopback: {attempts}"
            )
    if not SWAP:
        return
    minimum = int(os.environ.get("FASTPOOL_U3_MIN_REQUESTS", "500"))
    if reporter is not None:
        reporter.write_line(f"fastpool_urllib3_swap: {_requests} requests went through fastpool")
    if _requests < minimum:
        if reporter is not None:
            reporter.write_line(
                f"fastpool_urllib3_swap: FAILED, fewer than {minimum} requests", red=True
            )
        session.exitstatus = 1
