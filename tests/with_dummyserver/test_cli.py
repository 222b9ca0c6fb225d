"""The ``fastpool`` command (``fastpool.cli.command``), the demo (``fastpool.cli.demo``) and the
embedded server (``fastpool.cli.localserver``), in-process and as ``python -m fastpool``
subprocesses, against real servers on loopback."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import pytest
import requests
import requests.adapters

import fastpool
from fastpool.cli import command as cli
from fastpool.cli import demo
from fastpool.cli import localserver as _localserver
from fastpool.cli.localserver import MAX_HOLD_SECONDS, LocalServer, LocalServers, ServerProcess
from fastpool.schedule import HostScheduler

# The directory fastpool was imported from (source tree or site-packages), for subprocesses.
_IMPORT_ROOT = str(Path(fastpool.__file__).resolve().parent.parent)
_SUBPROCESS_TIMEOUT = 120


def run_module(
    *args: str, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """``python -m fastpool ARGS`` with stdout/stderr captured (no TTY: no colour, no bar)."""
    environ = dict(os.environ, PYTHONPATH=_IMPORT_ROOT, **env)
    environ.pop("FASTPOOL_TRACEBACK", None)
    return subprocess.run(
        [sys.executable, "-m", "fastpool", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environ,
        timeout=_SUBPROCESS_TIMEOUT,
        check=False,
    )


def run_main(*args: str) -> tuple[int, str, str]:
    """``cli.main(args)`` in-process; returns ``(status, stdout, stderr)``."""
    out, err = io.StringIO(), io.StringIO()
    status = cli.main(list(args), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


class TTYBuffer(io.StringIO):
    """A text buffer that says it is a terminal, to see what a user's terminal would get."""

    def isatty(self) -> bool:
        return True


# --- the parser ------------------------------------------------------------------------------


def test_version_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    out = capsys.readouterr().out
    assert f"fastpool {fastpool.__version__}" in out
    assert f"backend: {fastpool.implementation()}" in out


def test_version_as_module() -> None:
    result = run_module("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"fastpool {fastpool.__version__} (backend: ")


@pytest.mark.parametrize("command", [[], ["demo"], ["get"], ["crawl"], ["bench"]])
def test_help_on_every_command(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fastpool")
    if command:
        assert f"fastpool {command[0]}" in out


def test_no_command_is_a_usage_error() -> None:
    result = run_module()
    assert result.returncode == 2
    assert "required: COMMAND" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["get", "--threads", "0", "http://127.0.0.1/"], "--threads"),
        (["get", "--timeout", "-1", "http://127.0.0.1/"], "--timeout"),
        (["get", "--pool-maxsize", "x", "http://127.0.0.1/"], "--pool-maxsize"),
        (["get", "--max-retries", "-2", "http://127.0.0.1/"], "--max-retries"),
        (["bench", "--threads", "1,0"], "--threads"),
        (["get"], "URL"),
    ],
)
def test_bad_arguments_name_the_option(
    args: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(args) == 2
    captured = capsys.readouterr()
    assert named in captured.err
    assert captured.out == ""


# --- get and crawl ---------------------------------------------------------------------------


def test_get_reports_each_failed_url_and_carries_on(app_server: Any) -> None:
    refused = closed_port_url()
    good = [f"{app_server.url}/bytes/{n}" for n in (10, 20, 30)]
    bad = [refused, "not-a-url", "http://", "ftp://example.invalid/"]
    status, out, err = run_main("get", "--threads", "2", good[0], *bad, *good[1:])
    assert status == 1
    error_lines = [line for line in err.splitlines() if line.startswith("error ")]
    assert sorted(line.split(" ")[1].rstrip(":") for line in error_lines) == sorted(bad)
    assert f"error {refused}: ConnectionError: Connection refused" in err
    assert "error not-a-url: MissingSchema" in err
    assert "error http://: InvalidURL" in err
    assert "error ftp://example.invalid/: InvalidSchema" in err
    assert "fetched 7 URLs" in out
    assert "status       200 x 3" in out
    assert "1 x ConnectionError (Connection refused)" in out
    for kind in ("MissingSchema", "InvalidURL", "InvalidSchema"):
        assert f"1 x {kind}" in out
    assert "60 B received" in out
    assert app_server.requests == 3


def test_get_all_good_exits_zero_and_verbose_lists_each(app_server: Any) -> None:
    urls = [f"{app_server.url}/bytes/{n}" for n in (1, 2048)] + [f"{app_server.url}/status/404"]
    status, out, err = run_main("get", "-v", "--threads", "1", *urls)
    assert status == 0, err
    assert err == ""
    assert f"200        1 B  {urls[0]}" in out
    assert f"200    2.0 KiB  {urls[1]}" in out
    assert f"404        0 B  {urls[2]}" in out
    assert "status       200 x 2, 404 x 1" in out
    assert "errors       none" in out
    # One thread, one host: one connection, and the summary counts it as the server saw it.
    assert app_server.connections == 1
    assert "1 started for 1 host (3.0 responses per connection)" in out
    assert f"               1 x 127.0.0.1:{app_server.port}\n" in out


def test_get_as_module(app_server: Any) -> None:
    refused = closed_port_url()
    result = run_module("get", f"{app_server.url}/bytes/5", refused)
    assert result.returncode == 1
    assert f"error {refused}: ConnectionError: Connection refused" in result.stderr
    assert "fetched 2 URLs" in result.stdout
    assert "Traceback" not in result.stderr
    assert "\r" not in result.stderr  # no progress bar when stderr is not a terminal
    assert "\033[" not in result.stdout


def flat(text: str) -> str:
    """``text`` with runs of whitespace as one space (advice is wrapped to the terminal)."""
    return " ".join(text.split())


def pool_rows(out: str) -> dict[str, list[str]]:
    """The summary's pool table: first cell (origin, or "total") -> the other cells."""
    lines = out.split("  pools        ", 1)[1].splitlines()
    rows = {}
    for line in lines[1:]:
        if not line.startswith(" " * 15):
            break
        cells = line.split()
        key = "total" if cells[0] == "total" else cells[0]
        rows[key] = cells[-13:]
    return rows


_COLUMNS = ["open", "idle", "in use", "waiting", "created", "reused", "full", "expired",
            "stale", "retried", "waits", "waited", "max"]  # fmt: skip


def column(row: list[str], name: str) -> str:
    return row[_COLUMNS.index(name)]


def test_connection_counts_and_pool_connections_advice(server_factory: Callable[..., Any]) -> None:
    servers = [server_factory(f"127.0.0.{n}") for n in (2, 3, 4)]
    urls = [f"{server.url}/bytes/3" for _ in range(3) for server in servers]
    status, out, err = run_main("get", "--threads", "1", "--pool-connections", "2", *urls)
    assert status == 0, err
    # An LRU of two pools cycled over three hosts evicts every time: one connection per request.
    opened = sum(server.connections for server in servers)
    assert opened == 9
    assert f"{opened} started for 3 hosts" in out
    # The pool stats agree with the server: 9 created, 7 pools evicted (all but the last two).
    assert "total (2 pools of 2+2, 7 evicted)" in out  # two adapters (http, https) of 2 pools
    assert column(pool_rows(out)["total"], "created") == "9"
    assert "advice - pool_connections=2 but 3 hosts were used: 7 pools were evicted" in flat(out)
    assert "set pool_connections >= 3." in flat(out)

    for server in servers:
        server.reset_counts()
    status, out, err = run_main("get", "--threads", "1", "--pool-connections", "3", *urls)
    assert status == 0, err
    assert sum(server.connections for server in servers) == 3
    assert "3 started for 3 hosts (3.0 responses per connection)" in out
    rows = pool_rows(out)
    assert {origin: column(row, "reused") for origin, row in rows.items()} == {
        **{f"{server.url}": "2" for server in servers},
        "total": "6",
    }
    assert "advice" not in out


def test_requests_client_advice_from_the_pool_log(server_factory: Callable[..., Any]) -> None:
    # requests' pools keep no counters: no table, the advice comes from their log lines.
    servers = [server_factory(f"127.0.0.{n}") for n in (2, 3, 4)]
    urls = [f"{server.url}/bytes/3" for _ in range(3) for server in servers]
    status, out, err = run_main(
        "get", "--client", "requests", "--threads", "1", "--pool-connections", "2", *urls
    )
    assert status == 0, err
    assert sum(server.connections for server in servers) == 9
    assert "  pools  " not in out
    assert "3 hosts but --pool-connections 2" in out
    assert "try --pool-connections 3" in flat(out)


def test_pool_maxsize_advice_when_connections_are_discarded(app_server: Any) -> None:
    # Four requests held together need four connections; a pool of one keeps one of them.
    urls = [f"{app_server.url}/hold?key=maxsize&n=4"] * 4
    status, out, err = run_main("get", "--threads", "4", "--pool-maxsize", "1", *urls)
    assert status == 0, err
    assert app_server.connections == 4
    assert "4 started for 1 host" in out
    assert "3 discarded because the pool was full" in out
    row = pool_rows(out)[app_server.url]
    assert [column(row, name) for name in ("created", "full", "idle", "max")] == [
        "4",
        "3",
        "1",
        "1",
    ]
    assert (
        "3 connections were discarded because 4 threads shared pool_maxsize=1 (3 at 127.0.0.1)"
        in flat(out)
    )
    assert "set pool_maxsize >= 4." in flat(out)


def test_pool_block_caps_connections(app_server: Any) -> None:
    urls = [f"{app_server.url}/bytes/100"] * 12
    status, out, err = run_main(
        "get", "--threads", "4", "--pool-maxsize", "1", "--pool-block", *urls
    )
    assert status == 0, err
    assert app_server.connections == 1
    assert "status       200 x 12" in out
    assert "0 discarded" in out
    row = pool_rows(out)[app_server.url]
    assert [column(row, name) for name in ("created", "reused", "max")] == ["1", "11", "1b"]
    # Whether a thread had to wait depends on scheduling; when one did, the advice says so.
    if column(row, "waits") != "0":
        assert "pool_block=True caps each host at pool_maxsize=1" in flat(out)


def test_timeouts_are_reported_per_url_with_advice(app_server: Any) -> None:
    slow = f"{app_server.url}/slow?delay=3"
    status, out, err = run_main("get", "--timeout", "0.3", slow, f"{app_server.url}/bytes/1")
    assert status == 1
    assert f"error {slow}: ReadTimeout: read timed out" in err
    assert "1 x ReadTimeout (read timed out)" in out
    assert "timed out after 0.3 s" in out


def test_https_with_the_environment_ca_bundle(https_server: Any, ca_bundle: str) -> None:
    url = f"{https_server.url}/bytes/7"
    result = run_module("get", url, REQUESTS_CA_BUNDLE=ca_bundle)
    assert result.returncode == 0, result.stderr
    assert "status       200 x 1" in result.stdout
    # Verification stays on: without the CA the same URL fails, per URL, as SSLError.
    result = run_module("get", url, REQUESTS_CA_BUNDLE="", CURL_CA_BUNDLE="")
    assert result.returncode == 1
    assert f"error {url}: SSLError" in result.stderr


@pytest.mark.parametrize("client", ["fastpool", "requests"])
def test_client_choice_is_named_in_the_summary(app_server: Any, client: str) -> None:
    status, out, err = run_main("get", "--client", client, f"{app_server.url}/bytes/1")
    assert status == 0, err
    if client == "requests" or demo._fastpool_name("Session") is None:
        assert "(requests.sessions.Session + " in out
    else:
        assert "(fastpool.Session + " in out
    if client == "requests" or demo._fastpool_name("HTTPAdapter") is None:
        assert "+ requests.adapters.HTTPAdapter)" in out
    else:
        assert "+ fastpool.HTTPAdapter)" in out


def test_progress_bar_only_on_a_terminal(app_server: Any) -> None:
    urls = [f"{app_server.url}/bytes/1"] * 5 + [closed_port_url()]
    out, err = io.StringIO(), TTYBuffer()
    assert cli.main(["get", "--threads", "1", *urls], out=out, err=err) == 1
    text = err.getvalue()
    assert "\r[" in text and "] 6/6" in text and "1 error\033[K" in text
    assert text.endswith("\r\033[K")  # the bar is erased at the end
    assert "ConnectionError: Connection refused" in text

    err = TTYBuffer()
    assert cli.main(["get", "--no-progress", *urls], out=io.StringIO(), err=err) == 1
    assert "\r" not in err.getvalue()


def test_crawl_reads_a_file_skipping_blanks_and_comments(app_server: Any, tmp_path: Path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text(
        f"# a comment\n\n  {app_server.url}/bytes/1  \n   # indented comment\n"
        f"{app_server.url}/bytes/2\n\n{app_server.url}/status/500\n",
        encoding="utf-8",
    )
    status, out, err = run_main("crawl", str(listing))
    assert status == 0, err
    assert "fetched 3 URLs" in out
    assert "status       200 x 2, 500 x 1" in out
    assert app_server.requests == 3


def test_crawl_from_stdin_as_module(app_server: Any) -> None:
    text = f"{app_server.url}/bytes/1\n# skip\nhttp://\n{app_server.url}/bytes/3\n"
    result = run_module("crawl", "-", stdin=text)
    assert result.returncode == 1
    assert "error http://: InvalidURL" in result.stderr
    assert "fetched 3 URLs" in result.stdout
    assert "status       200 x 2" in result.stdout


def test_crawl_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    status, out, err = run_main("crawl", str(missing))
    assert status == 2
    assert f"cannot read {missing}" in err
    assert out == ""


def test_crawl_empty_file(tmp_path: Path) -> None:
    listing = tmp_path / "empty.txt"
    listing.write_text("# nothing here\n\n", encoding="utf-8")
    status, _, err = run_main("crawl", str(listing))
    assert status == 2
    assert "no URLs to fetch" in err


def test_read_url_file() -> None:
    text = "a\n\n#b\n  c  \n\t# d\n"
    assert cli.read_url_file(io.StringIO(text)) == ["a", "c"]


def test_count_hosts() -> None:
    urls = [
        "http://a/x",
        "http://A:80/y",
        "https://a/",
        "https://a:443/z",
        "http://a:8080/",
        "not-a-url",
        "http://",
        "http://[::1",
    ]
    assert cli.count_hosts(urls) == 3


def test_make_session_rejects_an_unknown_client() -> None:
    with pytest.raises(ValueError, match="client must be"):
        cli.make_session("urllib3")


# --- crawl: crawler-grade defaults, politeness flags, --output (issue 16) ----------------------


@pytest.fixture(scope="module")
def twenty_hosts() -> Any:
    with LocalServers(20) as servers:
        yield servers


def _listing(tmp_path: Path, urls: list[str]) -> str:
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(urls) + "\n", encoding="utf-8")
    return str(listing)


def test_default_pools_reuse_connections_over_many_hosts(
    twenty_hosts: LocalServers, tmp_path: Path
) -> None:
    # Five rounds over 20 hosts, 8 threads, 2 per host: with pools sized to the hosts, every
    # host keeps its connections between rounds.
    hosts, per_host = 20, 2
    urls = [f"{base}/bytes/10" for _ in range(5) for base in twenty_hosts.urls]
    listing = _listing(tmp_path, urls)
    twenty_hosts.reset_counts()
    status, out, err = run_main("crawl", "--per-host", str(per_host), listing)
    assert status == 0, err
    assert "status       200 x 100" in out
    created = int(column(pool_rows(out)["total"], "created"))
    assert 0 < created <= hosts * per_host
    assert twenty_hosts.connections() == created  # the servers agree with fastpool's stats
    assert f"{created} started for {hosts} hosts" in out
    assert "(20 pools of 20+20)" in out  # pool_connections=20, in each of the two adapters
    assert "evicted" not in out and "advice" not in out
    assert "politeness   2 in flight per host" in out

    # requests' old default, asked for explicitly: the LRU of 10 pools evicts at every turn.
    twenty_hosts.reset_counts()
    args = ("crawl", "--per-host", str(per_host), "--pool-connections", "10", listing)
    status, out, err = run_main(*args)
    assert status == 0, err
    assert int(column(pool_rows(out)["total"], "created")) > hosts * per_host
    assert "set pool_connections >= 20" in flat(out)


def test_more_hosts_than_pools_take_turns_without_evictions() -> None:
    # What the command does past MAX_POOL_CONNECTIONS hosts, in small: 20 hosts, 8 pools,
    # 4 hosts taking turns at a time: every host is dialed once. Servers of its own: the
    # shared ones may still be accepting connections an earlier test closed, and count them.
    # Up to 3 runs: a thread descheduled mid-request on a loaded machine (a CI leg running
    # beside another) lets the other three finish enough hosts to push its pool out of the
    # LRU of 8, and its host is dialed again. That is the LRU doing its job, not a missed turn.
    dialed = []
    for _ in range(3):
        with LocalServers(20) as twenty_hosts:
            urls = [f"{base}/bytes/10" for _ in range(3) for base in twenty_hosts.urls]
            session, _ = cli.make_session(pool_connections=8, pool_maxsize=1)
            with session:
                report = cli.fetch_urls(session, urls, threads=4, per_host=1, max_hosts=4)
            assert report.statuses == {200: 60}
            dialed.append((report.connections_started, twenty_hosts.connections()))
        if dialed[-1] == (20, 20):
            break
    assert dialed[-1] == (20, 20), dialed


def test_pool_sizes() -> None:
    assert cli.pool_sizes(1, 8) == (10, 10)
    assert cli.pool_sizes(200, 8) == (200, 10)
    assert cli.pool_sizes(50_000, 8) == (cli.MAX_POOL_CONNECTIONS, 10)
    assert cli.pool_sizes(200, 64) == (200, 64)
    assert cli.pool_sizes(200, 64, per_host=4) == (200, 10)
    assert cli.pool_sizes(200, 64, per_host=32) == (200, 32)
    assert cli.pool_sizes(200, 64, 32, pool_connections=3, pool_maxsize=2) == (3, 2)


def test_per_host_caps_connections_to_a_host(app_server: Any) -> None:
    urls = [f"{app_server.url}/slow?delay=0.05"] * 8
    status, out, err = run_main("get", "--threads", "4", "--per-host", "1", *urls)
    assert status == 0, err
    assert app_server.connections == 1  # one request at a time: one connection
    assert "status       200 x 8" in out


def test_delay_spaces_the_starts_to_a_host(server_factory: Callable[..., Any]) -> None:
    polite, other = server_factory("127.0.0.2"), server_factory("127.0.0.3")
    urls = [f"{polite.url}/bytes/1"] * 4 + [f"{other.url}/bytes/1"]
    session, _ = cli.make_session()
    seen: list[cli.FetchResult] = []
    with session:
        report = cli.fetch_urls(session, urls, threads=4, delay=0.1, on_result=seen.append)
    assert report.statuses == {200: 5}
    assert report.seconds >= 0.3  # three waits of 0.1 s between four starts to one host
    # The other host did not wait behind the polite one's queue: its URL was among the first.
    assert [r.position for r in seen].index(4) <= 1


def test_rate_caps_starts_overall(twenty_hosts: LocalServers) -> None:
    urls = [f"{base}/bytes/1" for base in twenty_hosts.urls[:6]]
    status, out, err = run_main("get", "--threads", "6", "--rate", "20", *urls)
    assert status == 0, err
    assert "politeness   at most 20 requests/s" in out
    match = re.search(r"fetched 6 URLs in ([\d.]+) (ms|s)", out)
    assert match is not None
    seconds = float(match[1]) / (1000 if match[2] == "ms" else 1)
    assert seconds >= 0.25 - 0.01  # five waits of 1/20 s after the first start


def _records(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize("engine", ["map", "threads"])
def test_output_json_lines_to_a_file(app_server: Any, tmp_path: Path, engine: str) -> None:
    refused = closed_port_url()
    urls = [f"{app_server.url}/bytes/5", f"{app_server.url}/redirect/2", refused, "not-a-url"]
    output = tmp_path / "results.jsonl"
    status, out, _err = run_main(
        "get", "--threads", "2", "--engine", engine, "--output", str(output), *urls
    )
    assert status == 1
    assert "fetched 4 URLs" in out  # the summary is where it always was
    records = {record["url"]: record for record in _records(output.read_text("utf-8"))}
    assert sorted(records) == sorted(urls)
    for record in records.values():
        assert list(record) == ["url", "status", "headers", "size", "elapsed", "error", "final_url"]
        if engine == "map" and record["error"] is not None:
            assert record["elapsed"] is None  # map does not time a failed request
        else:
            assert isinstance(record["elapsed"], float) and record["elapsed"] >= 0
    good = records[urls[0]]
    assert (good["status"], good["size"], good["error"], good["final_url"]) == (200, 5, None, None)
    assert {k.lower(): v for k, v in good["headers"].items()}["content-length"] == "5"
    moved = records[urls[1]]
    assert moved["status"] == 200 and moved["final_url"] == f"{app_server.url}/echo"
    assert records[refused]["status"] is None
    assert records[refused]["error"] == "ConnectionError: Connection refused"
    assert records[refused]["headers"] == {} and records[refused]["size"] == 0
    assert records["not-a-url"]["error"].startswith("MissingSchema: ")


def test_output_to_stdout_keeps_the_stream_clean(app_server: Any) -> None:
    urls = [f"{app_server.url}/bytes/{n}" for n in range(1, 6)] + [closed_port_url()]
    out, err = io.StringIO(), TTYBuffer()
    status = cli.main(["get", "-v", "--threads", "2", "-o", "-", *urls], out=out, err=err)
    assert status == 1
    records = _records(out.getvalue())  # every stdout line is a record, nothing else
    assert len(records) == 6
    assert sum(record["error"] is not None for record in records) == 1
    text = err.getvalue()
    assert "fetched 6 URLs" in text and "] 6/6" in text  # summary and bar on stderr
    assert "ConnectionError: Connection refused" in text
    assert f"200        3 B  {app_server.url}/bytes/3" in text  # --verbose lines too


def test_crawl_output_as_module(app_server: Any) -> None:
    text = f"{app_server.url}/bytes/1\n{app_server.url}/bytes/2\n"
    result = run_module("crawl", "--output", "-", "--per-host", "1", "--delay", "0.01", "-",
                        stdin=text)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sorted(record["size"] for record in _records(result.stdout)) == [1, 2]
    assert "fetched 2 URLs" in result.stderr


def test_output_that_cannot_be_written(app_server: Any, tmp_path: Path) -> None:
    target = tmp_path / "missing-directory" / "out.jsonl"
    status, _out, err = run_main("get", "--output", str(target), f"{app_server.url}/")
    assert status == 2
    assert f"cannot write {target}" in err
    assert app_server.requests == 0


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--per-host", "0"], "--per-host"),
        (["--per-host", "x"], "--per-host"),
        (["--delay", "-1"], "--delay"),
        (["--delay", "nan"], "--delay"),
        (["--delay", "inf"], "--delay"),
        (["--rate", "0"], "--rate"),
        (["--rate", "fast"], "--rate"),
        (["--output", ""], "--output"),
    ],
)
def test_bad_politeness_arguments(
    args: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["crawl", *args, "urls.txt"]) == 2
    captured = capsys.readouterr()
    assert named in captured.err
    assert captured.out == ""


def test_dask_refuses_delay_and_rate(tmp_path: Path) -> None:
    listing = _listing(tmp_path, ["http://127.0.0.1:1/"])
    for flag in (["--delay", "1"], ["--rate", "5"]):
        status, _out, err = run_main("crawl", "--dask", "local:1", *flag, listing)
        assert status == 2
        assert "--delay and --rate are not supported with --dask" in err


def test_crawl_in_threads_stops_when_closed(app_server: Any) -> None:
    scheduler = cli.schedule_urls([f"{app_server.url}/bytes/1"] * 50, HostScheduler(delay=0.05))
    session, _ = cli.make_session()
    with session:
        results = cli.crawl_in_threads(session, scheduler, threads=4)
        first = next(results)
        results.close()  # the threads stop after their current request
    assert first.status == 200
    assert len(scheduler) >= 40 and scheduler.in_flight == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("fastpool-crawl-")]


# --- the demo ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_hosts() -> Any:
    with LocalServers(2) as servers:
        yield servers


def _adapter(label: str) -> type:
    """requests' stock adapter, or fastpool's (a visible skip while it cannot be imported)."""
    if label == "requests":
        return requests.adapters.HTTPAdapter
    try:
        return fastpool.HTTPAdapter  # type: ignore[no-any-return]
    except Exception as exc:  # noqa: BLE001 - any import failure is a reason to skip, shown
        pytest.skip(f"fastpool.HTTPAdapter is not available: {type(exc).__name__}: {exc}")


@pytest.mark.parametrize("label", ["requests", "fastpool"])
@pytest.mark.parametrize("experiment", demo.EXPERIMENTS, ids=lambda e: e.title.split(":")[0])
def test_experiments_give_the_articles_counts(
    experiment: demo.Experiment, label: str, two_hosts: LocalServers
) -> None:
    adapter = _adapter(label)
    outcome = demo.run_experiment(experiment, adapter, two_hosts, label)
    assert outcome.errors == []
    assert (outcome.opened, outcome.reused, outcome.discarded) == experiment.expected
    # What the pool logged agrees with what the servers saw.
    starts = sum(1 for line in outcome.log_lines if "Starting new HTTP connection" in line)
    assert starts == outcome.opened
    if label == "requests":
        assert outcome.stats is None
    else:
        # fastpool's own counters agree with the servers and the log.
        assert outcome.stats is not None
        total = outcome.stats.total
        assert (total.created, total.reused, total.discarded_full) == experiment.expected


def test_demo_quick_as_module() -> None:
    result = run_module("demo", "--quick", NO_COLOR="1")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"backend: {fastpool.implementation()}" in out
    for number, experiment in enumerate(demo.EXPERIMENTS, 1):
        assert f"{number}. {experiment.title}" in out
    assert "Connection pool is full, discarding connection" in out
    assert "adapter   opened  reused  discarded" in out
    assert "Throughput" in out and "requests.Session" in out and "x1.00" in out
    assert "note:" not in out
    if demo._fastpool_name("HTTPAdapter") is not None:
        assert out.count("fastpool pool stats (fastpool.stats):") == len(demo.EXPERIMENTS)
        assert "advice: pool_connections=1 but 2 hosts were used: 2 pools were evicted" in out
        assert "set pool_maxsize >= 2." in flat(out)
    if demo._fastpool_name("HTTPAdapter") is not None:
        assert out.count("(requests and fastpool wrote the same log lines)") == len(
            demo.EXPERIMENTS
        )
    assert "\033[" not in out
    assert result.stderr == ""


def test_demo_colour_and_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    out = TTYBuffer()
    assert cli.main(["demo", "--no-throughput"], out=out, err=io.StringIO()) == 0
    assert "\033[2m     DEBUG   Starting new HTTP connection" not in out.getvalue()
    assert "     \033[2mDEBUG   Starting new HTTP connection (1)" in out.getvalue()

    monkeypatch.setenv("NO_COLOR", "1")
    out = TTYBuffer()
    assert cli.main(["demo", "--no-throughput"], out=out, err=io.StringIO()) == 0
    assert "\033[" not in out.getvalue()
    assert "     DEBUG   Starting new HTTP connection (1)" in out.getvalue()


def test_bench_as_module() -> None:
    result = run_module("bench", "--requests", "40", "--seconds", "0.5", "--threads", "1,2")
    assert result.returncode == 0, result.stderr
    rows = [line.strip() for line in result.stdout.splitlines() if line.startswith("   ")]
    for label, _ in demo.session_factories():
        for threads in (1, 2):
            assert any(re.match(rf"{re.escape(label)}\s+{threads}\s+\d+", row) for row in rows)
    assert re.search(r"requests\.Session\s+1\s+40\s+[\d,]+\s+x1\.00", result.stdout)
    assert re.search(r"requests\.Session\s+2\s+40\s+[\d,]+\s+x1\.00", result.stdout)


def test_a_client_that_fails_is_reported_in_its_row(two_hosts: LocalServers) -> None:
    def broken() -> requests.Session:
        raise RuntimeError("no such client")

    url = two_hosts.urls[0] + "/"
    result = demo.measure(broken, url, threads=2, total=5, max_seconds=5, label="broken")
    assert (result.requests, result.failure) == (0, "failed: RuntimeError: no such client")


def test_measure_is_bounded_in_count(two_hosts: LocalServers) -> None:
    url = two_hosts.urls[0] + "/bytes/10"
    result = demo.measure(requests.Session, url, threads=3, total=25, max_seconds=30)
    assert (result.requests, result.errors, result.threads) == (25, 0, 3)
    assert result.per_second > 0


def test_pool_log_restores_the_loggers() -> None:
    logger = logging.getLogger("urllib3")
    before = (logger.level, logger.propagate, list(logger.handlers))
    with demo.PoolLog() as log:
        logging.getLogger("urllib3.connectionpool").debug(
            "Starting new HTTP connection (%d): %s:%s", 1, "h", 80
        )
        logging.getLogger("fastpool.connectionpool").warning(
            "Connection pool is full, discarding connection: h"
        )
    assert (logger.level, logger.propagate, list(logger.handlers)) == before
    assert (log.started, log.discarded) == (1, 1)
    assert log.started_per_host() == {"h:80": 1}


def test_format_table_aligns() -> None:
    lines = demo.format_table(["name", "n"], [["a", "1"], ["long name", "100"]], indent="")
    assert lines == ["name         n", "a            1", "long name  100"]


# --- the embedded server ----------------------------------------------------------------------


def test_local_server_routes_and_counts() -> None:
    with LocalServer() as server, requests.Session() as session:
        assert session.get(server.url + "/").text == "fastpool local server\n"
        assert session.get(server.url + "/bytes/5").content == b"xxxxx"
        head = session.head(server.url + "/bytes/5")
        assert (head.status_code, head.headers["Content-Length"], head.content) == (200, "5", b"")
        assert session.get(server.url + "/status/418").status_code == 418
        assert session.get(server.url + "/bytes/x").status_code == 400
        assert session.get(server.url + "/nope").status_code == 404
        assert session.post(server.url + "/", data=b"ignored body").status_code == 200
        assert session.get(server.url + "/stats").json() == {"connections": 1, "requests": 7}
        assert server.connections == 1
        requests.get(server.url + "/", headers={"Connection": "close"})
        assert server.connections == 2
        server.reset_counts()
        assert (server.connections, server.requests) == (0, 0)


def test_local_server_hold_is_a_barrier() -> None:
    results: list[str] = []
    with LocalServer() as server:
        url = server.url + "/hold?key=b&n=3"
        threads = [
            threading.Thread(target=lambda: results.append(requests.get(url).text))
            for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=MAX_HOLD_SECONDS + 5)
        assert results == ["released\n"] * 3
        assert server.connections == 3
        assert requests.get(server.url + "/hold?key=b&n=0").status_code == 400


def test_local_servers_are_distinct_hosts() -> None:
    with LocalServers(3) as servers:
        hosts = {url.rsplit(":", 1)[0] for url in servers.urls}
        assert len(hosts) == (1 if servers.fallback else 3)
        assert len(set(servers.urls)) == 3
        for url in servers.urls:
            requests.get(url + "/")
        assert servers.connections() == 3


def test_local_servers_fall_back_to_ports_on_127_0_0_1(monkeypatch: pytest.MonkeyPatch) -> None:
    # As on macOS, where only 127.0.0.1 is configured: binding 127.0.0.3 fails.
    real = _localserver.LocalServer

    def only_some_addresses(host: str = "127.0.0.1", port: int = 0) -> LocalServer:
        if host not in ("127.0.0.1", "127.0.0.2"):
            raise OSError(99, "Cannot assign requested address")
        return real(host, port)

    monkeypatch.setattr(_localserver, "LocalServer", only_some_addresses)
    with LocalServers(3) as servers:
        assert servers.fallback
        assert all(url.startswith("http://127.0.0.1:") for url in servers.urls)
        assert len(set(servers.urls)) == 3
        for url in servers.urls:
            assert requests.get(url + "/").status_code == 200
        assert [server.connections for server in servers.servers] == [1, 1, 1]


@pytest.mark.parametrize(("count", "error"), [(0, ValueError), (251, ValueError), ("2", TypeError)])
def test_local_servers_validate_count(count: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="count"):
        LocalServers(count)


def test_server_process_serves_until_closed() -> None:
    with ServerProcess(2) as proc:
        assert len(proc.urls) == 2
        assert requests.get(proc.urls[1] + "/bytes/3").content == b"xxx"
        url = proc.urls[0]
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/", timeout=2)


def test_engine_map_needs_the_fastpool_client(app_server: Any) -> None:
    status, _out, err = run_main(
        "get", "--engine", "map", "--client", "requests", f"{app_server.url}/bytes/1"
    )
    assert status == 2
    assert "--engine map needs the fastpool client" in err
    status, _out, err = run_main(
        "get", "--engine", "threads", "--client", "requests", f"{app_server.url}/bytes/1"
    )
    assert status == 0, err
