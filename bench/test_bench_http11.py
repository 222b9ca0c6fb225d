"""_http11 benchmarks: both backends beside http.client and httptools (llhttp).

Run ``pytest bench/test_bench_http11.py --benchmark-enable`` (groups: parse a head, write a
head, parse a head and decode a chunked body), or ``python bench/test_bench_http11.py`` for the
ratio table alone; ``test_ratio_table`` prints it too. Target: the compiled parser well under
2 us for the nginx head below. No assert on speed: the machine is shared, timings are indicative.

The references do the same work the way their libraries do:

* http.client: the status line read and split as ``HTTPResponse._read_status`` does, then
  ``http.client.parse_headers`` on a ``BytesIO``; for writing, a real ``HTTPConnection``'s
  ``putrequest``/``putheader``/``endheaders`` into an in-memory socket; for chunked bodies a real
  ``HTTPResponse`` over an in-memory socket: ``begin()`` and ``read()``.
* httptools: a new ``HttpResponseParser`` per head (parsers are per connection), collecting the
  headers into a list of ``(name, value)`` bytes pairs as a client would.
"""

from __future__ import annotations

import http.client
import importlib
import io
import statistics
import timeit
from collections.abc import Callable
from types import ModuleType
from typing import Any

import httptools
import pytest

NGINX_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Server: nginx/1.22.1\r\n"
    b"Date: Wed, 25 Nov 2026 15:30:00 GMT\r\n"
    b"Content-Type: text/html\r\n"
    b"Content-Length: 615\r\n"
    b"Connection: keep-alive\r\n"
    b'ETag: "6543a1b2-267"\r\n'
    b"Accept-Ranges: bytes\r\n"
    b"\r\n"
)
# What requests sends by default, plus the Host header urllib3 adds.
REQUEST_HEADERS = [
    ("Host", "127.0.0.1:8080"),
    ("User-Agent", "python-requests/2.34.2"),
    ("Accept-Encoding", "gzip, deflate, br, zstd"),
    ("Accept", "*/*"),
    ("Connection", "keep-alive"),
]
CHUNK = bytes(range(256)) * 16  # 4 KiB
CHUNKED_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nContent-Type: application/octet-stream\r\n"
    b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
    + b"".join(b"1000\r\n" + CHUNK + b"\r\n" for _ in range(16))
    + b"0\r\n\r\n"
)
CHUNKED_BODY = CHUNK * 16


def backends() -> dict[str, ModuleType]:
    """The built backends: ``cython`` (if compiled) and ``python``."""
    found = {}
    for name, module in (("cython", "fastpool._http11_c"), ("python", "fastpool._http11_py")):
        try:
            found[name] = importlib.import_module(module)
        except ImportError:
            pass
    return found


BACKENDS = backends()


# --- the work, as zero-argument callables ------------------------------------------------------


def fastpool_parse(module: ModuleType) -> Callable[[], Any]:
    parse = module.parse_response_head
    return lambda: parse(NGINX_HEAD)


def http_client_parse() -> Any:
    fp = io.BytesIO(NGINX_HEAD)
    line = str(fp.readline(65537), "iso-8859-1")
    version, status, reason = line.split(None, 2)
    return version, int(status), reason.strip(), http.client.parse_headers(fp)


class _Collect:
    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))


def httptools_parse() -> Any:
    callbacks = _Collect()
    parser = httptools.HttpResponseParser(callbacks)
    parser.feed_data(NGINX_HEAD)
    return parser.get_status_code(), callbacks.headers


def fastpool_write(module: ModuleType) -> Callable[[], bytes]:
    write = module.write_request_head
    return lambda: write("GET", "/index.html", REQUEST_HEADERS)


class _MemorySocket:
    """Stands in for a socket: keeps what is sent, or serves a fixed response."""

    def __init__(self, response: bytes = b"") -> None:
        self.response = response
        self.sent = b""

    def sendall(self, data: bytes) -> None:
        self.sent = data

    def makefile(self, mode: str) -> io.BytesIO:
        return io.BytesIO(self.response)


def http_client_write() -> Callable[[], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", 8080)
    sock = _MemorySocket()
    conn.sock = sock  # type: ignore[assignment]

    def run() -> bytes:
        conn._HTTPConnection__state = "Idle"  # type: ignore[attr-defined]  # as after a response
        conn.putrequest("GET", "/index.html", skip_host=True, skip_accept_encoding=True)
        for name, value in REQUEST_HEADERS:
            conn.putheader(name, value)
        conn.endheaders()
        return sock.sent

    return run


def fastpool_chunked(module: ModuleType) -> Callable[[], bytes]:
    parse = module.parse_response_head
    decoder_class = module.ChunkedDecoder

    def run() -> bytes:
        _, used = parse(CHUNKED_RESPONSE)
        decoder = decoder_class()
        # as the engine reads: 16 KiB pieces from the socket
        view = memoryview(CHUNKED_RESPONSE)
        out = [decoder.feed(view[i : i + 16384]) for i in range(used, len(view), 16384)]
        return b"".join(out)

    return run


def http_client_chunked() -> bytes:
    response = http.client.HTTPResponse(_MemorySocket(CHUNKED_RESPONSE))  # type: ignore[arg-type]
    response.begin()
    return response.read()


def cases() -> dict[str, dict[str, Callable[[], Any]]]:
    """group -> implementation -> callable, for the table and the benchmarks."""
    parse = {name: fastpool_parse(module) for name, module in BACKENDS.items()}
    parse.update({"http.client": http_client_parse, "httptools": httptools_parse})
    write = {name: fastpool_write(module) for name, module in BACKENDS.items()}
    write["http.client"] = http_client_write()
    chunked = {name: fastpool_chunked(module) for name, module in BACKENDS.items()}
    chunked["http.client"] = http_client_chunked
    return {
        "parse nginx 200 head (7 headers)": parse,
        "write GET head (5 headers)": write,
        "parse head + decode chunked 64 KiB": chunked,
    }


CASES = cases()


def check_results() -> None:
    """Every implementation does the whole job (the timings are of real work)."""
    parse = CASES["parse nginx 200 head (7 headers)"]
    for name in BACKENDS:
        head, used = parse[name]()
        assert (head.status, len(head.headers), used) == (200, 7, len(NGINX_HEAD))
    assert len(parse["http.client"]()[3]) == 7
    assert len(parse["httptools"]()[1]) == 7
    written = {name: run() for name, run in CASES["write GET head (5 headers)"].items()}
    assert len(set(written.values())) == 1, written
    for name, run in CASES["parse head + decode chunked 64 KiB"].items():
        assert run() == CHUNKED_BODY, name


def ns_per_call(run: Callable[[], Any], repeat: int = 7, seconds: float = 0.05) -> float:
    """Median nanoseconds per call over ``repeat`` rounds of about ``seconds`` each."""
    timer = timeit.Timer(run)
    number = max(1, int(seconds / max(timer.timeit(10) / 10, 1e-9)))
    return statistics.median(timer.repeat(repeat, number)) / number * 1e9


def ratio_table(repeat: int = 7) -> str:
    lines = [f"{'case':36} {'implementation':14} {'ns/call':>10} {'x (vs cython)':>14}"]
    for group, implementations in CASES.items():
        times = {name: ns_per_call(run, repeat) for name, run in implementations.items()}
        base = times.get("cython", times["python"])
        for name, ns in times.items():
            lines.append(f"{group:36} {name:14} {ns:10.0f} {ns / base:14.2f}")
    return "\n".join(lines)


# --- pytest-benchmark --------------------------------------------------------------------------


def _implementation(group: str, name: str) -> Callable[[], Any]:
    if name not in CASES[group]:
        pytest.skip(f"{name} backend not built")
    return CASES[group][name]


@pytest.mark.parametrize("name", ["cython", "python", "http.client", "httptools"])
def test_parse_head(benchmark: Any, name: str) -> None:
    group = "parse nginx 200 head (7 headers)"
    benchmark.group = group
    benchmark(_implementation(group, name))


@pytest.mark.parametrize("name", ["cython", "python", "http.client"])
def test_write_head(benchmark: Any, name: str) -> None:
    group = "write GET head (5 headers)"
    benchmark.group = group
    benchmark(_implementation(group, name))


@pytest.mark.parametrize("name", ["cython", "python", "http.client"])
def test_chunked(benchmark: Any, name: str) -> None:
    group = "parse head + decode chunked 64 KiB"
    benchmark.group = group
    benchmark(_implementation(group, name))


def test_results_are_real() -> None:
    check_results()


def test_ratio_table(capsys: pytest.CaptureFixture[str]) -> None:
    """All cases interleaved in one run, as ratios (printed; no speed assert)."""
    table = ratio_table(repeat=5)
    with capsys.disabled():
        print("\n" + table)


if __name__ == "__main__":
    check_results()
    print(ratio_table())
