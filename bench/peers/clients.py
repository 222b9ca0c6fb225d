"""The HTTP clients compared by bench/peers/run.py, each behind one small interface.

A :class:`Client` is opened once per shape (``open(ca_bundle, timeout)``: TLS is verified
against the bench CA, never switched off; ``timeout`` bounds each request), runs bounded
measuring runs (``run(...)``, through bench/peers/measure.py) while keeping its connections
between runs, and is closed at the end of the shape. Every client uses its library's defaults (pool sizes, limits) apart from the CA, the
request timeout, and what thread safety needs (pycurl: ``NOSIGNAL``, one handle per thread).

Standard library only at the top: the niquests child process imports this module in a venv that
has neither fastpool nor requests; each client imports its library when opened.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import selectors
import socket
import ssl
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

from floor import exchange
from measure import Fetch, RunResult, run_tasks, run_threads

HERE = Path(__file__).resolve().parent


def version_of(distribution: str) -> str:
    """The installed version of a PyPI distribution (fastpool: this checkout's, with its core)."""
    if distribution == "fastpool":  # run from this checkout, maybe not installed
        import fastpool

        return f"{fastpool.__version__} ({fastpool.implementation()} core)"
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


class ClientUnavailable(RuntimeError):
    """The client cannot run here (not installed, or its venv could not be built)."""


class Client:
    """One HTTP client under test. Subclasses set the class attributes and the hooks."""

    key = ""  #: name on the command line
    name = ""  #: name in the tables
    note = ""  #: footnote in the report
    distributions: tuple[str, ...] = ()  #: PyPI names whose versions the report shows

    timeout = 10.0  #: seconds per request (connect and read); set by open()

    def open(self, ca_bundle: str, timeout: float) -> None:
        """Create the client (its pools start empty)."""
        self.timeout = timeout

    def run(
        self, urls: list[str], threads: int, max_requests: int, max_seconds: float, expected: int
    ) -> RunResult:
        """One bounded run (see bench/peers/measure.py)."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the client and its connections."""

    def versions(self) -> dict[str, str]:
        """Versions of what this client runs on, for the report."""
        return {name: version_of(name) for name in self.distributions}


class ThreadedClient(Client):
    """A blocking client: ``threads`` threads, each with the fetcher ``fetcher(index)`` gives."""

    def fetcher(self, index: int) -> Fetch:
        """The fetch function for worker thread ``index`` (most clients share one object)."""
        raise NotImplementedError

    def run(
        self, urls: list[str], threads: int, max_requests: int, max_seconds: float, expected: int
    ) -> RunResult:
        fetchers = [self.fetcher(index) for index in range(threads)]
        return run_threads(fetchers, urls, max_requests, max_seconds, expected, self.timeout)


# --- requests-like sessions --------------------------------------------------------------------
class SessionClient(ThreadedClient):
    """A Session object shared by all threads: ``session.get(url, timeout=..., verify=CA)``,
    then ``status_code`` and ``content``.

    ``verify`` goes with each request, as a requests user with a private CA writes it: with
    ``trust_env`` requests lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` override
    ``session.verify`` (psf/requests#4726, #3829), and this machine sets both.
    """

    verify_per_request = True

    def make_session(self, ca_bundle: str) -> Any:
        raise NotImplementedError

    def open(self, ca_bundle: str, timeout: float) -> None:
        super().open(ca_bundle, timeout)
        self.session = self.make_session(ca_bundle)
        self.options: dict[str, Any] = {"timeout": timeout}
        if self.verify_per_request:
            self.options["verify"] = ca_bundle

    def fetcher(self, index: int) -> Fetch:
        get, options = self.session.get, self.options

        def fetch(url: str) -> int:
            response = get(url, **options)
            if response.status_code != 200:
                raise RuntimeError(f"status {response.status_code}")
            return len(response.content)

        return fetch

    def close(self) -> None:
        self.session.close()


class FastpoolSession(SessionClient):
    key, name = "fastpool-session", "fastpool.Session"
    note = "defaults: 256 host pools, 64 connections kept per host; environment read once"
    distributions = ("fastpool",)

    def make_session(self, ca_bundle: str) -> Any:
        import fastpool

        session = fastpool.Session()
        return session


class FastpoolAdapter(SessionClient):
    key, name = "fastpool-adapter", "requests.Session + fastpool.HTTPAdapter"
    note = "requests' Session with `fastpool.HTTPAdapter()` (stock defaults: 10 pools x 10) mounted"
    distributions = ("fastpool", "requests")

    def make_session(self, ca_bundle: str) -> Any:
        import requests

        import fastpool

        session = requests.Session()
        session.mount("http://", fastpool.HTTPAdapter())
        session.mount("https://", fastpool.HTTPAdapter())
        return session


class RequestsSession(SessionClient):
    key, name = "requests", "requests.Session"
    note = "the baseline of every ratio: stock adapter, 10 pools x 10 connections"
    distributions = ("requests", "urllib3")

    def make_session(self, ca_bundle: str) -> Any:
        import requests

        session = requests.Session()
        return session


class RequestsNoEnv(RequestsSession):
    key, name = "requests-no-env", "requests.Session(trust_env=False)"
    note = "requests without reading proxies/netrc from the environment on every request"

    def make_session(self, ca_bundle: str) -> Any:
        session = super().make_session(ca_bundle)
        session.trust_env = False
        return session


class HttpxClient(SessionClient):
    key, name = "httpx", "httpx.Client (sync)"
    note = "the synchronous Client; defaults: 100 connections, 20 kept alive"
    distributions = ("httpx", "httpcore")
    verify_per_request = False  # httpx takes it on the Client only (and ignores the env vars)

    def make_session(self, ca_bundle: str) -> Any:
        import httpx

        return httpx.Client(verify=ssl.create_default_context(cafile=ca_bundle))


class NiquestsClient(SessionClient):
    key, name = "niquests", "niquests.Session (own venv)"
    note = (
        "runs in a child process from its own venv (bench/.run/venv-niquests): niquests needs "
        "urllib3-future, which replaces urllib3; nginx here speaks HTTP/1.1 only"
    )
    distributions = ("niquests", "urllib3-future")

    def make_session(self, ca_bundle: str) -> Any:
        import niquests

        session = niquests.Session()
        return session


# --- urllib3-style pool managers ---------------------------------------------------------------
class PoolManagerClient(ThreadedClient):
    """``manager.request("GET", url)``, then ``status`` and ``data``."""

    def make_manager(self, ca_bundle: str) -> Any:
        raise NotImplementedError

    def open(self, ca_bundle: str, timeout: float) -> None:
        super().open(ca_bundle, timeout)
        self.manager = self.make_manager(ca_bundle)

    def fetcher(self, index: int) -> Fetch:
        request = self.manager.request

        def fetch(url: str) -> int:
            response = request("GET", url)
            if response.status != 200:
                raise RuntimeError(f"status {response.status}")
            return len(response.data)

        return fetch

    def close(self) -> None:
        self.manager.clear()


class FastpoolPoolManager(PoolManagerClient):
    key, name = "fastpool-poolmanager", "fastpool.PoolManager"
    note = "urllib3's defaults: 10 pools, 1 connection kept per host"
    distributions = ("fastpool",)

    def make_manager(self, ca_bundle: str) -> Any:
        import fastpool

        return fastpool.PoolManager(ca_certs=ca_bundle, timeout=self.timeout)


class Urllib3PoolManager(PoolManagerClient):
    key, name = "urllib3", "urllib3.PoolManager"
    note = "defaults: 10 pools, 1 connection kept per host"
    distributions = ("urllib3",)

    def make_manager(self, ca_bundle: str) -> Any:
        import urllib3

        return urllib3.PoolManager(ca_certs=ca_bundle, timeout=self.timeout)


# --- pycurl ------------------------------------------------------------------------------------
class PycurlClient(ThreadedClient):
    key, name = "pycurl", "pycurl (one Curl per thread)"
    note = (
        "one reused `pycurl.Curl` handle per thread (libcurl keeps its connections, default "
        "cache of 5 per handle); body written to a BytesIO"
    )
    distributions = ("pycurl",)

    def open(self, ca_bundle: str, timeout: float) -> None:
        import pycurl

        super().open(ca_bundle, timeout)
        self.ca_bundle = ca_bundle
        self.handles: dict[int, Any] = {}
        self.pycurl = pycurl

    def fetcher(self, index: int) -> Fetch:
        import io

        pycurl = self.pycurl
        if index not in self.handles:  # a handle lives as long as the shape: keep-alive
            curl = pycurl.Curl()
            curl.setopt(pycurl.NOSIGNAL, 1)  # required when libcurl is used from threads
            curl.setopt(pycurl.CAINFO, self.ca_bundle)
            curl.setopt(pycurl.TIMEOUT_MS, int(self.timeout * 1000))
            self.handles[index] = (curl, io.BytesIO())
        curl, body = self.handles[index]
        curl.setopt(pycurl.WRITEDATA, body)

        def fetch(url: str) -> int:
            body.seek(0)
            body.truncate()
            curl.setopt(pycurl.URL, url)
            curl.perform()
            status = curl.getinfo(pycurl.RESPONSE_CODE)
            if status != 200:
                raise RuntimeError(f"status {status}")
            return body.tell()

        return fetch

    def close(self) -> None:
        for curl, _body in self.handles.values():
            curl.close()
        self.handles.clear()

    def versions(self) -> dict[str, str]:
        import pycurl

        return {"pycurl": f"{version_of('pycurl')} ({pycurl.version})"}


# --- aiohttp -----------------------------------------------------------------------------------
class AiohttpClient(Client):
    key, name = "aiohttp", "aiohttp (async)"
    note = (
        "asyncio: one event loop in one thread; the N-thread shapes run N concurrent tasks "
        "instead of threads; one ClientSession, default connector (100 connections)"
    )
    distributions = ("aiohttp",)

    def open(self, ca_bundle: str, timeout: float) -> None:
        import asyncio

        import aiohttp

        super().open(ca_bundle, timeout)
        context = ssl.create_default_context(cafile=ca_bundle)

        async def make() -> Any:
            return aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=context),
                timeout=aiohttp.ClientTimeout(total=timeout),
            )

        self.loop = asyncio.new_event_loop()
        self.session = self.loop.run_until_complete(make())

    def run(
        self, urls: list[str], threads: int, max_requests: int, max_seconds: float, expected: int
    ) -> RunResult:
        get = self.session.get

        async def fetch(url: str) -> int:
            async with get(url) as response:
                body = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"status {response.status}")
                return len(body)

        return self.loop.run_until_complete(
            run_tasks(fetch, urls, threads, max_requests, max_seconds, expected, self.timeout)
        )

    def close(self) -> None:
        self.loop.run_until_complete(self.session.close())
        self.loop.close()


# --- the floor ---------------------------------------------------------------------------------
class RawSocketFloor(ThreadedClient):
    key, name = "floor", "raw-socket floor"
    note = (
        "the least a keep-alive GET costs: a fixed request on a raw (TLS) socket, Content-Length "
        "read, no parsing; a bare idle stack per host shared by the threads (no limits)"
    )

    def open(self, ca_bundle: str, timeout: float) -> None:
        super().open(ca_bundle, timeout)
        self.context = ssl.create_default_context(cafile=ca_bundle)
        # url -> (idle stack of its host, host, port, tls, request bytes)
        self.targets: dict[str, tuple[list[Any], str, int, bool, bytes]] = {}
        self.idle: dict[tuple[str, int, bool], list[Any]] = {}

    def fetcher(self, index: int) -> Fetch:
        return self.fetch

    def fetch(self, url: str) -> int:
        target = self.targets.get(url) or self._target(url)
        idle, host, port, tls, request = target
        try:
            sock, buf = idle.pop()  # list.pop/append are atomic: a lock-free idle stack
        except IndexError:
            sock, buf = self._dial(host, port, tls), bytearray()
        try:
            length = exchange(sock, request, buf)
        except BaseException:
            sock.close()
            raise
        idle.append((sock, buf))
        return length

    def _target(self, url: str) -> tuple[list[Any], str, int, bool, bytes]:
        parts = urllib.parse.urlsplit(url)
        host, port, tls = parts.hostname or "", parts.port or 0, parts.scheme == "https"
        request = f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode()
        idle = self.idle.setdefault((host, port, tls), [])
        return self.targets.setdefault(url, (idle, host, port, tls, request))

    def _dial(self, host: str, port: int, tls: bool) -> socket.socket:
        sock = socket.create_connection((host, port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            return self.context.wrap_socket(sock, server_hostname=host)
        return sock

    def close(self) -> None:
        for idle in self.idle.values():
            while idle:
                idle.pop()[0].close()

    def versions(self) -> dict[str, str]:
        return {}


# --- a client in its own venv ------------------------------------------------------------------
class VenvClient(Client):
    """Runs ``local`` (a Client class) in a child process of its own venv, driven over pipes
    (JSON lines: bench/peers/child.py), so its dependencies cannot replace ours. The child stays
    up for the whole shape, so its connections live between runs as in-process clients' do."""

    PREPARE_TIMEOUT = 600.0
    REPLY_TIMEOUT = 120.0

    def __init__(self, local: type[Client], venv: Path, requirements: Path) -> None:
        self.local = local
        self.key, self.name, self.note = local.key, local.name, local.note
        self.venv = venv
        self.requirements = requirements
        self.child: subprocess.Popen[str] | None = None
        self._versions: dict[str, str] = {}

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def prepare(self) -> None:
        """Create the venv and install the requirements unless it already works (bounded)."""
        probe = [str(self.python), "-c", f"import {self.local.distributions[0]}"]
        if (
            self.python.exists()
            and subprocess.run(probe, capture_output=True, check=False).returncode == 0
        ):
            return
        steps = [
            [sys.executable, "-m", "venv", "--clear", str(self.venv)],
            [str(self.python), "-m", "pip", "install", "-q", "-r", str(self.requirements)],
        ]
        for step in steps:
            print(f"peers: {' '.join(step)}", file=sys.stderr)
            try:
                done = subprocess.run(
                    step, capture_output=True, text=True, timeout=self.PREPARE_TIMEOUT, check=False
                )
            except subprocess.TimeoutExpired as exc:
                raise ClientUnavailable(f"{step[2]} timed out") from exc
            if done.returncode != 0:
                raise ClientUnavailable(f"{' '.join(step[:4])} failed: {done.stderr[-500:]}")

    def open(self, ca_bundle: str, timeout: float) -> None:
        super().open(ca_bundle, timeout)
        self.prepare()
        self.child = subprocess.Popen(
            [str(self.python), str(HERE / "child.py"), self.key],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": ""},
        )
        self._versions = self._call({"cmd": "open", "ca_bundle": ca_bundle, "timeout": timeout})[
            "versions"
        ]

    def run(
        self, urls: list[str], threads: int, max_requests: int, max_seconds: float, expected: int
    ) -> RunResult:
        reply = self._call(
            {
                "cmd": "run",
                "urls": urls,
                "threads": threads,
                "max_requests": max_requests,
                "max_seconds": max_seconds,
                "expected": expected,
            }
        )
        return RunResult(**reply["result"])

    def close(self) -> None:
        child, self.child = self.child, None
        if child is None:
            return
        stop_child(child, self.name, self.REPLY_TIMEOUT)

    def versions(self) -> dict[str, str]:
        return self._versions

    def _call(self, message: dict[str, Any]) -> dict[str, Any]:
        if self.child is None:
            raise RuntimeError(f"{self.name}: the child process is not running")
        return self._call_on(self.child, message)

    def _call_on(self, child: subprocess.Popen[str], message: dict[str, Any]) -> dict[str, Any]:
        return call_child(child, message, self.REPLY_TIMEOUT, self.name)


def stop_child(child: subprocess.Popen[str], name: str, timeout: float) -> None:
    """Ask a JSON-lines child to close and wait 10 s for it to exit; else kill it (our own
    child, by its handle)."""
    try:
        if child.poll() is None:
            call_child(child, {"cmd": "close"}, timeout, name)
        child.wait(10)
    except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired):
        child.kill()
        child.wait()


def call_child(
    child: subprocess.Popen[str], message: dict[str, Any], timeout: float, name: str
) -> dict[str, Any]:
    """Send ``message`` to a JSON-lines child and return its answer; TimeoutError when none
    came within ``timeout`` seconds, RuntimeError when it exited or answered an error."""
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(json.dumps(message) + "\n")
    child.stdin.flush()
    with selectors.DefaultSelector() as selector:
        selector.register(child.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise TimeoutError(f"{name}: no answer from the child in {timeout:g} s")
    line = child.stdout.readline()
    if not line:
        raise RuntimeError(f"{name}: the child process exited ({child.poll()})")
    reply: dict[str, Any] = json.loads(line)
    if "error" in reply:
        raise RuntimeError(f"{name} (child): {reply['error']}")
    return reply


#: Every client, in table order. ``requests`` is the baseline of the ratios.
BASELINE = "requests"


def all_clients(run_root: Path) -> list[Client]:
    """A fresh instance of every client (the niquests one runs from ``run_root``'s venv)."""
    return [
        FastpoolSession(),
        FastpoolAdapter(),
        FastpoolPoolManager(),
        RequestsSession(),
        RequestsNoEnv(),
        Urllib3PoolManager(),
        HttpxClient(),
        AiohttpClient(),
        PycurlClient(),
        VenvClient(NiquestsClient, run_root / "venv-niquests", HERE / "requirements-niquests.txt"),
        RawSocketFloor(),
    ]


LOCAL_CLIENTS: dict[str, type[Client]] = {NiquestsClient.key: NiquestsClient}
