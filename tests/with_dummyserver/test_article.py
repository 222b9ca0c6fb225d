"""The scenarios of "Requests' secret: pool_connections and pool_maxsize"
(/work/shared/reference/requests-pooling-article.txt), run on local servers.

Each test runs the same scenario once with the stock ``requests.adapters.HTTPAdapter`` and once
with ``fastpool.HTTPAdapter`` and asserts that both open the same connections (counted by the
servers) and log the same texts (both under ``urllib3.connectionpool``, where fastpool logs
by default). The article's numbers are asserted too, so that the comparison
cannot pass by both sides doing nothing. Threaded steps meet at the server's ``/hold`` barrier,
so two requests are really in flight together and the counts are deterministic.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import pytest
import requests
import requests.adapters
from dummyserver import AppServer

import fastpool

_LOGGERS = {
    requests.adapters.HTTPAdapter: "urllib3.connectionpool",
    fastpool.HTTPAdapter: "urllib3.connectionpool",  # fastpool logs as urllib3 by default
}
_THREAD_JOIN_SECONDS = 10.0


@dataclass
class Outcome:
    """What a scenario did: log records (level, text) and connections accepted per host."""

    logs: list[tuple[str, str]]
    connections: list[int]

    def texts(self, level: str) -> list[str]:
        return [text for lvl, text in self.logs if lvl == level]


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock2:
            self.records.append(record)


@dataclass
class Hosts:
    """Two AppServers on 127.0.0.2 and 127.0.0.3: two "hosts" for the article's examples."""

    servers: list[AppServer]

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    def reset_counts(self) -> None:
        for server in self.servers:
            server.reset_counts()


@pytest.fixture
def two_hosts(server_factory: Callable[..., AppServer]) -> Hosts:
    """Two plain-HTTP hosts."""
    return Hosts([server_factory("127.0.0.2"), server_factory("127.0.0.3")])


@pytest.fixture
def two_tls_hosts(
    server_factory: Callable[..., AppServer], monkeypatch: pytest.MonkeyPatch
) -> Hosts:
    """Two HTTPS hosts with certificates from the test CA (pass ``verify=ca_bundle``)."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # would override verify
        monkeypatch.delenv(name, raising=False)
    return Hosts([server_factory("127.0.0.2", tls=True), server_factory("127.0.0.3", tls=True)])


def _key(adapter_cls: type, name: str) -> str:
    # The server counts /hold arrivals per key forever: each run needs its own keys
    # (run() takes the suffix out of the log texts again, so the two runs compare equal).
    return name + _run_suffix(adapter_cls)


def _run_suffix(adapter_cls: type) -> str:
    return f"-{adapter_cls.__module__}"


def run(adapter_cls: type, servers: Any, scenario: Callable[[type, Any], None]) -> Outcome:
    """Run ``scenario(adapter_cls, servers)``; return its connection logs and counts."""
    servers.reset_counts()
    name = _LOGGERS[adapter_cls]
    logger = logging.getLogger(name)
    handler = _Capture()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        scenario(adapter_cls, servers)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    suffix = _run_suffix(adapter_cls)
    logs = [
        (r.levelname, r.getMessage().replace(suffix, "")) for r in handler.records if r.name == name
    ]
    return Outcome(logs, [server.connections for server in servers.servers])


def both(servers: Any, scenario: Callable[[type, Any], None]) -> Outcome:
    """Run a scenario with both adapters; assert equal logs (as multisets) and counts."""
    stock = run(requests.adapters.HTTPAdapter, servers, scenario)
    ours = run(fastpool.HTTPAdapter, servers, scenario)
    assert ours.connections == stock.connections
    assert Counter(ours.logs) == Counter(stock.logs)
    return stock


def _threaded_gets(session: requests.Session, urls: list[str], **kwargs: Any) -> None:
    """GET every URL from its own thread, all at once; re-raise the first failure."""
    errors: list[BaseException] = []

    def get(url: str) -> None:
        try:
            response = session.get(url, timeout=10, **kwargs)
            assert response.status_code == 200, response.text
        except Exception as exc:  # noqa: BLE001 - reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=get, args=(url,)) for url in urls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(_THREAD_JOIN_SECONDS)
        assert not thread.is_alive(), "a request thread did not finish"
    if errors:
        raise errors[0]


def _starting(outcome: Outcome) -> list[str]:
    return [text for text in outcome.texts("DEBUG") if text.startswith("Starting new")]


def _full(outcome: Outcome) -> list[str]:
    return [text for text in outcome.texts("WARNING") if "pool is full" in text]


# --- pool_connections ----------------------------------------------------------------------------


@pytest.mark.parametrize(("pool_connections", "expected"), [(1, [2, 1]), (2, [1, 1])])
def test_pool_connections_over_two_hosts(
    two_hosts: Hosts, pool_connections: int, expected: list[int]
) -> None:
    """Three GETs: host A, host B, host A. One cached pool forgets A; two remember it."""
    a, b = two_hosts.urls

    def scenario(adapter_cls: type, servers: Any) -> None:
        with requests.Session() as session:
            session.mount("http://", adapter_cls(pool_connections=pool_connections))
            for url in (a, b, a):
                assert session.get(url + "/bytes/10", timeout=10).status_code == 200

    outcome = both(two_hosts, scenario)
    assert outcome.connections == expected
    assert len(_starting(outcome)) == sum(expected)
    assert len([t for t in outcome.texts("DEBUG") if '"GET /bytes/10 HTTP/1.1" 200' in t]) == 3


# --- pool_maxsize with threads -------------------------------------------------------------------


def _two_rounds(maxsize: int, key: str) -> Callable[[type, Any], None]:
    def scenario(adapter_cls: type, servers: Any) -> None:
        host = servers.urls[1]
        with requests.Session() as session:
            session.mount("https://", adapter_cls())  # the article's unused default mount
            session.mount("http://", adapter_cls(pool_connections=1, pool_maxsize=maxsize))
            # Two requests in flight together, twice: the barrier releases both at once.
            for round_ in (1, 2):
                hold = f"{host}/hold?key={_key(adapter_cls, f'{key}-{round_}')}&n=2"
                _threaded_gets(session, [hold] * 2)

    return scenario


def test_pool_maxsize_two_keeps_both_connections(two_hosts: Hosts) -> None:
    """pool_maxsize=2: two threads open two connections, the next two threads reuse them."""
    outcome = both(two_hosts, _two_rounds(2, "max2"))
    assert outcome.connections == [0, 2]
    assert len(_starting(outcome)) == 2
    assert _full(outcome) == []


def test_pool_maxsize_one_discards_with_warning(two_hosts: Hosts) -> None:
    """pool_maxsize=1: the second connection is discarded ("Connection pool is full"), so the
    second round opens a new one and discards again."""
    outcome = both(two_hosts, _two_rounds(1, "max1"))
    assert outcome.connections == [0, 3]
    assert len(_starting(outcome)) == 3
    host = two_hosts.servers[1].host
    assert (
        _full(outcome)
        == [f"Connection pool is full, discarding connection: {host}. Connection pool size: 1"] * 2
    )


# --- adapters mounted on different prefixes are independent --------------------------------------


def test_longer_prefix_gets_its_own_adapter(two_tls_hosts: Hosts, ca_bundle: str) -> None:
    """The article's last example, over HTTPS with the test CA: ``https://`` has
    pool_maxsize=2, a longer ``https://host-b`` prefix has pool_maxsize=1.

    Host A through the short prefix keeps both connections; host B through the long prefix
    discards one each round, exactly as if it were alone.
    """
    a, b = two_tls_hosts.urls

    def scenario(adapter_cls: type, servers: Any) -> None:
        with requests.Session() as session:
            session.mount("https://", adapter_cls(pool_connections=1, pool_maxsize=2))
            session.mount(b, adapter_cls(pool_connections=1, pool_maxsize=1))
            assert session.get_adapter(b + "/") is not session.get_adapter(a + "/")
            for round_ in (1, 2):
                for host, name in ((a, "a"), (b, "b")):
                    hold = f"{host}/hold?key={_key(adapter_cls, f'{name}{round_}')}&n=2"
                    _threaded_gets(session, [hold] * 2, verify=ca_bundle)

    outcome = both(two_tls_hosts, scenario)
    assert outcome.connections == [2, 3]
    assert all(text.startswith("Starting new HTTPS") for text in _starting(outcome))
    host_b = two_tls_hosts.servers[1].host
    full = f"Connection pool is full, discarding connection: {host_b}. Connection pool size: 1"
    assert _full(outcome) == [full] * 2
