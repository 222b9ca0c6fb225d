"""httpie's ``http`` command on fastpool: the transport plugins of ``fastpool.contrib.httpie`` (#13).

The plugins are registered as a user registers them (docs, "Works with" > httpie): a plugin
distribution whose entry points (group ``httpie.plugins.transport.v1``) name
``FastpoolHTTPTransport`` and ``FastpoolHTTPSTransport``. Here it is a bare ``.dist-info``
directory put on ``sys.path`` (``PYTHONPATH`` for the real ``http`` script), which is all
``importlib.metadata`` needs.

Most commands run in-process through ``httpie.core.main`` (what the ``http`` script calls) with
an ``Environment`` of their own (a temporary config directory, no update check, no stdin).
That fastpool carried a request is observed through fastpool's process-wide trace
(``fastpool.pool.set_process_trace``): every fastpool pool reports its connections there, and
urllib3's pools (httpie's stock route) report nothing. The control,
``test_without_the_plugin_the_stock_route_is_taken``, runs the same commands without the plugin:
they succeed and fastpool sees nothing, so every "through fastpool" assertion here fails when
the plugin is not registered. TLS facts (protocol version, cipher) are observed by the server.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import textwrap
import warnings
from http import client as http_client
from pathlib import Path
from typing import Any

import pytest
from requests.exceptions import InvalidSchema

pytest.importorskip("httpie", reason="httpie is not installed (pip install fastpool[ecosystem])")

import httpie.core
from dummyserver import AppServer
from httpie.context import Environment
from httpie.plugins.registry import plugin_manager

from fastpool.contrib import httpie as fp_httpie
from fastpool.pool import set_process_trace
from fastpool.trace import ALL, Trace

ENTRY_POINTS = """\
[httpie.plugins.transport.v1]
fastpool_http = fastpool.contrib.httpie:FastpoolHTTPTransport
fastpool_https = fastpool.contrib.httpie:FastpoolHTTPSTransport
"""

#: TLS 1.2 suites with forward secrecy, by the server key they need; --ciphers picks one.
TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-CHACHA20-POLY1305",
)

PROXY_VARIABLES = (
    "http_proxy", "https_proxy", "all_proxy", "no_proxy",
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
    "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR",
)  # fmt: skip


# --- plugin registration, environment, observation ---------------------------------------------
@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the plugin distribution's metadata (what ``pip install`` of the
    recipe's package leaves in site-packages, minus the files it does not need)."""
    site = tmp_path_factory.mktemp("plugin-site")
    info = site / "httpie_fastpool-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: httpie-fastpool\nVersion: 1.0\nRequires-Dist: fastpool\n"
    )
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return site


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", os.devnull)


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """httpie's config directory for one test: no update check, no default options."""
    directory = tmp_path / "httpie-config"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"disable_update_warnings": True}))
    return directory


class Events:
    """fastpool's trace events of every pool, as ``(name, host, port, info)``."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int, dict[str, Any]]] = []

    def __call__(self, event: Any) -> None:
        self.seen.append((event.name, event["host"], event["port"], dict(event.info)))

    def of(self, server: AppServer, name: str | None = None) -> list[dict[str, Any]]:
        return [
            info
            for event, host, port, info in self.seen
            if host == server.host and port == server.port and name in (None, event)
        ]


@pytest.fixture
def events() -> Any:
    trace = Trace()
    recorder = Events()
    trace.add(ALL, recorder)
    old = set_process_trace(trace)
    yield recorder
    set_process_trace(old)


class Run:
    def __init__(self, status: int, stdout: bytes, stderr: str) -> None:
        self.status = status
        self.stdout = stdout
        self.stderr = stderr

    @property
    def text(self) -> str:
        return self.stdout.decode()

    def __repr__(self) -> str:
        return f"<Run status={self.status} stderr={self.stderr!r} stdout={self.stdout[:300]!r}>"


@pytest.fixture
def http(plugin_site: Path, config_dir: Path) -> Any:
    """``http(*args, plugin=True)``: run the ``http`` command in-process, the fastpool plugin
    distribution on ``sys.path`` (or not), and return its exit status and output."""

    def run(*args: str, plugin: bool = True) -> Run:
        registered = list(plugin_manager)  # main() registers what it finds, each call
        if plugin:
            sys.path.insert(0, str(plugin_site))
        importlib.invalidate_caches()
        with tempfile.TemporaryFile("w+b") as stdout, tempfile.TemporaryFile("w+t") as stderr:
            env = Environment(
                stdin=None,
                stdin_isatty=True,
                stdout=stdout,
                stdout_isatty=False,
                stderr=stderr,
                stderr_isatty=False,
                colors=0,
                config_dir=config_dir,
                show_displays=False,
            )
            try:
                status = httpie.core.main(["http", "--ignore-stdin", *args], env)
            finally:
                plugin_manager[:] = registered
                if plugin:
                    sys.path.remove(str(plugin_site))
                importlib.invalidate_caches()
            stdout.seek(0)
            stderr.seek(0)
            return Run(int(status), stdout.read(), stderr.read())

    return run


class TLSServer(AppServer):
    """The test application over TLS, noting each connection's protocol version and cipher."""

    def __init__(self, host: str, tls: ssl.SSLContext) -> None:
        super().__init__(host, tls)
        self.handshakes: list[tuple[str | None, str | None]] = []

    def handle(self, conn: Any) -> None:
        cipher = conn.sock.cipher()
        self.handshakes.append((conn.sock.version(), cipher[0] if cipher else None))
        super().handle(conn)


@pytest.fixture
def tls_server(_servers: Any, server_ssl_context: ssl.SSLContext) -> TLSServer:
    return _servers.start(TLSServer("127.0.0.1", server_ssl_context))  # type: ignore[no-any-return]


def through_fastpool(events: Events, server: AppServer) -> bool:
    """Whether a fastpool pool got a connection to ``server`` (the stock route: never)."""
    return bool(events.of(server, "got_conn"))


# --- http:// ---------------------------------------------------------------------------------
def test_http_request_goes_through_fastpool(
    http: Any, app_server: AppServer, events: Events
) -> None:
    run = http("--print=hb", f"{app_server.url}/echo", "X-Probe:1")
    assert run.status == 0, run
    assert run.text.startswith("HTTP/1.1 200 OK"), run
    assert json.loads(run.text.split("\r\n\r\n", 1)[1].strip())["method"] == "GET"
    assert through_fastpool(events, app_server)
    assert events.of(app_server, "connect_start")
    assert app_server.requests == 1


def test_without_the_plugin_the_stock_route_is_taken(
    http: Any, app_server: AppServer, tls_server: TLSServer, ca_bundle: str, events: Events
) -> None:
    # The control: the same commands, the plugin not installed, succeed on urllib3's pools
    # and leave fastpool's trace empty; so the assertions above and below can fail.
    assert http(f"{app_server.url}/echo", plugin=False).status == 0
    run = http(f"--verify={ca_bundle}", f"{tls_server.url}/echo", plugin=False)
    assert run.status == 0, run
    assert app_server.requests == 1
    assert tls_server.requests == 1
    assert events.seen == []


def test_output_matches_the_stock_route(http: Any, app_server: AppServer, events: Events) -> None:
    # /headers repeats X-Dup and Set-Cookie: httpie's adapter keeps them apart on both routes.
    stock = http("--print=hb", f"{app_server.url}/headers", plugin=False)
    assert events.seen == []
    fast = http("--print=hb", f"{app_server.url}/headers")
    assert through_fastpool(events, app_server)
    assert fast.status == stock.status == 0
    assert fast.stdout == stock.stdout
    assert "X-Dup: a\r\nX-Dup: b" in fast.text


def _normalized(text: str) -> str:
    """Output with what differs between two runs on one server blanked out (the server's
    connection number, a multipart boundary)."""
    text = re.sub(r'"connection": \d+', '"connection": N', text)
    return re.sub(r"[0-9a-f]{32}", "BOUNDARY", text)


@pytest.mark.parametrize(
    "args",
    [
        ("POST", "/echo", "a=b", "n:=1"),
        ("--chunked", "POST", "/echo", "a=b"),
        ("--multipart", "POST", "/echo", "a=b"),
        ("--form", "PUT", "/echo", "a=b"),
        ("--auth=user:pass", "/basic-auth/user/pass"),
        ("--follow", "--all", "/redirect/2"),
        ("--follow", "/cookies/set?a=1&b=2"),
        ("--stream", "/stream/3"),
        ("HEAD", "/bytes/10"),
        ("--path-as-is", "/echo/../echo"),
        ("/gzip",),
        ("/chunked/20",),
        ("/no-length?n=5",),
        ("/status/418",),
    ],
    ids=lambda args: " ".join(args),
)
def test_commands_match_the_stock_route(
    http: Any, app_server: AppServer, events: Events, args: tuple[str, ...]
) -> None:
    argv = [f"{app_server.url}{arg}" if arg.startswith("/") else arg for arg in args]
    stock = http("--print=HBhb", *argv, plugin=False)
    fast = http("--print=HBhb", *argv)
    assert fast.status == stock.status, (stock, fast)
    assert re.search(r"\nHTTP/1\.1 \d{3} ", stock.text)  # the request, then the response
    assert _normalized(fast.text) == _normalized(stock.text)
    assert through_fastpool(events, app_server)


def test_redirects_reuse_one_pooled_connection(
    http: Any, app_server: AppServer, events: Events
) -> None:
    run = http("--follow", "--print=h", f"{app_server.url}/redirect/3")
    assert run.status == 0, run
    got = events.of(app_server, "got_conn")
    assert [info["reused"] for info in got] == [False, True, True, True]
    assert app_server.connections == 1
    assert app_server.requests == 4


def test_max_headers_keeps_its_meaning(http: Any, app_server: AppServer, events: Events) -> None:
    # httpie's default --max-headers=0 is "no limit" (fastpool's own default is 100 fields).
    many = "&".join(f"X-H{i}={i}" for i in range(150))
    run = http("--print=h", f"{app_server.url}/response-headers?{many}")
    assert run.status == 0, run
    assert "X-H149: 149" in run.text
    # --max-headers=N refuses a head of N fields or more, as on the stock route (http.client
    # counts the blank line ending the head): Server, Content-Type and Content-Length come
    # with the 17 fields asked for, 20 in all.
    url = f"{app_server.url}/response-headers?" + "&".join(f"X-H{i}={i}" for i in range(17))
    for plugin in (True, False):
        assert http("--max-headers=21", "--print=h", url, plugin=plugin).status == 0
        refused = http("--max-headers=20", "--print=h", url, plugin=plugin)
        assert refused.status != 0
        assert "ConnectionError" in refused.stderr, refused
        if plugin:
            assert "max_headers=19" in refused.stderr, refused
    assert len(events.of(app_server, "got_conn")) == 3  # the plugin's three runs


def test_http10_status_line(http: Any, app_server: AppServer) -> None:
    stock = http("--print=h", f"{app_server.url}/http10", plugin=False)
    assert stock.text.startswith("HTTP/1.0 200 OK")
    run = http("--print=h", f"{app_server.url}/http10")
    assert run.status == 0, run
    assert run.text.startswith("HTTP/1.0 200 OK"), run


# --- https:// --------------------------------------------------------------------------------
def test_https_with_a_ca_file(
    http: Any, tls_server: TLSServer, ca_bundle: str, events: Events
) -> None:
    run = http(f"--verify={ca_bundle}", "--print=hb", f"{tls_server.url}/echo")
    assert run.status == 0, run
    assert through_fastpool(events, tls_server)
    assert [info["error"] for info in events.of(tls_server, "tls_done")] == [None]


def test_verify_keeps_its_meaning(
    http: Any, tls_server: TLSServer, ca_bundle: str, events: Events
) -> None:
    # Default verification: the system's CAs, which do not trust the test CA.
    run = http(f"{tls_server.url}/echo")
    assert run.status != 0
    assert "SSLError" in run.stderr and "CERTIFICATE_VERIFY_FAILED" in run.stderr, run
    assert [type(info["error"]) for info in events.of(tls_server, "tls_done")] == [
        ssl.SSLCertVerificationError
    ]
    # --verify=no: accepted, still through fastpool.
    run = http("--verify=no", f"{tls_server.url}/echo")
    assert run.status == 0, run
    assert events.of(tls_server, "tls_done")[-1]["error"] is None
    assert tls_server.requests == 1


@pytest.mark.skipif(not ssl.HAS_TLSv1_3, reason="OpenSSL without TLS 1.3: no default to tell apart")
def test_ssl_option_sets_the_protocol(
    http: Any, tls_server: TLSServer, ca_bundle: str, events: Events
) -> None:
    assert http(f"--verify={ca_bundle}", f"{tls_server.url}/echo").status == 0
    run = http(f"--verify={ca_bundle}", "--ssl=tls1.2", f"{tls_server.url}/echo")
    assert run.status == 0, run
    assert [version for version, _ in tls_server.handshakes] == ["TLSv1.3", "TLSv1.2"]
    assert len(events.of(tls_server, "tls_done")) == 2


def test_ciphers_option_restricts_the_cipher(
    http: Any, tls_server: TLSServer, ca_bundle: str, events: Events
) -> None:
    base = (f"--verify={ca_bundle}", "--ssl=tls1.2")
    assert http(*base, f"{tls_server.url}/echo").status == 0
    default = tls_server.handshakes[0][1]
    assert default is not None
    key = "ECDSA" if "ECDSA" in default else "RSA"
    wanted = next(name for name in TLS12_CIPHERS if f"-{key}-" in name and name != default)
    run = http(*base, f"--ciphers={wanted}", f"{tls_server.url}/echo")
    assert run.status == 0, run
    assert tls_server.handshakes == [("TLSv1.2", default), ("TLSv1.2", wanted)]
    assert len(events.of(tls_server, "tls_done")) == 2
    # A cipher the server cannot use: the handshake fails, loudly.
    other = next(name for name in TLS12_CIPHERS if f"-{key}-" not in name)
    run = http(*base, f"--ciphers={other}", f"{tls_server.url}/echo")
    assert run.status != 0
    assert "SSLError" in run.stderr, run
    assert events.of(tls_server, "tls_done")[-1]["error"] is not None


def test_tls_options_hold_through_a_proxy(
    http: Any, tls_server: TLSServer, proxy_server: Any, ca_bundle: str, events: Events
) -> None:
    # The proxy pools (proxy_manager_for) get httpie's SSLContext too.
    run = http(
        f"--proxy=https:{proxy_server.url}",
        f"--verify={ca_bundle}",
        "--ssl=tls1.2",
        f"{tls_server.url}/echo",
    )
    assert run.status == 0, run
    assert proxy_server.request_lines == [f"CONNECT {tls_server.host}:{tls_server.port} HTTP/1.1"]
    assert tls_server.handshakes[0][0] == "TLSv1.2"
    # (a tunnelled connection reports no connect_start/tls_done: the pool opens the tunnel
    # outside its traced connect; got_conn is there)
    assert through_fastpool(events, tls_server)


def test_client_certificate(
    http: Any,
    _servers: Any,
    mtls_ssl_context: ssl.SSLContext,
    tls_ca: Any,
    client_cert: str,
    ca_bundle: str,
    tmp_path: Path,
    events: Events,
) -> None:
    from cryptography.hazmat.primitives import serialization

    server = _servers.start(AppServer("127.0.0.1", tls=mtls_ssl_context))
    url = f"{server.url}/echo"
    run = http(f"--verify={ca_bundle}", url)
    assert run.status != 0  # the server wants a client certificate
    run = http(f"--verify={ca_bundle}", f"--cert={client_cert}", url)
    assert run.status == 0, run
    # --cert-key with --cert-key-pass: httpie's HTTPieCertificate carries the password to the
    # pool (httpie's cert_verify), where fastpool loads the encrypted key with it.
    issued = tls_ca.issue_cert("client@fastpool.test")
    cert_file = tmp_path / "client.crt"
    cert_file.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    key = serialization.load_pem_private_key(issued.private_key_pem.bytes(), password=None)
    key_file = tmp_path / "client.key"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret"),
        )
    )
    cert_args = (f"--verify={ca_bundle}", f"--cert={cert_file}", f"--cert-key={key_file}")
    run = http(*cert_args, "--cert-key-pass=s3cret", url)
    assert run.status == 0, run
    run = http(*cert_args, "--cert-key-pass=wrong", url)
    assert run.status != 0
    errors = [info["error"] for info in events.of(server, "tls_done")]
    assert errors[1:3] == [None, None]
    assert server.requests == 2


# --- the plugin's own contract -----------------------------------------------------------------
def test_https_plugin_refuses_to_guess_outside_httpie() -> None:
    # Not called by httpie's build_requests_session: the command's TLS options are unknown,
    # and an adapter ignoring them is never handed out.
    with pytest.raises(fp_httpie.HTTPieIntegrationError, match="--ssl, --ciphers and --verify"):
        fp_httpie.FastpoolHTTPSTransport().get_adapter()


def test_an_unknown_httpie_fails_the_command_loudly(
    http: Any, tls_server: TLSServer, ca_bundle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As under an httpie whose build_requests_session changed: no https:// request is sent
    # with settings the plugin could not read.
    monkeypatch.setattr(fp_httpie, "_is_build_requests_session", lambda code: False)
    run = http(f"--verify={ca_bundle}", "--ssl=tls1.2", f"{tls_server.url}/echo")
    assert run.status != 0
    assert "HTTPieIntegrationError" in run.stderr and "--ssl, --ciphers and --verify" in run.stderr
    assert tls_server.connections == 0


def test_socks_proxy_is_a_visible_fallback() -> None:
    adapter = fp_httpie.FastpoolHTTPieHTTPSAdapter(verify=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with contextlib.suppress(InvalidSchema):  # without PySocks
            adapter.proxy_manager_for("socks5://user:pw@127.0.0.1:9")
    adapter.close()
    [warning] = [w for w in caught if w.category is fp_httpie.FastpoolHTTPieWarning]
    assert "socks5://127.0.0.1:9 use urllib3's SOCKSProxyManager" in str(warning.message)
    assert "pw" not in str(warning.message)


def test_header_limit_follows_httpie(monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = fp_httpie.FastpoolHTTPieHTTPAdapter()
    first = adapter.poolmanager
    monkeypatch.setattr(http_client, "_MAXHEADERS", 101)  # --max-headers=101: 100 fields
    adapter._follow_header_limit()
    assert adapter.poolmanager is first  # fastpool's default already
    monkeypatch.setattr(http_client, "_MAXHEADERS", float("inf"))  # --max-headers=0
    adapter._follow_header_limit()
    assert adapter.poolmanager is not first
    assert adapter.poolmanager._pool_options["max_headers"] == sys.maxsize
    second = adapter.poolmanager
    monkeypatch.setattr(http_client, "_MAXHEADERS", 1)  # no field allowed: fastpool cannot
    for _ in range(2):  # refused each time, never left half-done
        with pytest.raises(ValueError, match="max_headers"):
            adapter._follow_header_limit()
        assert adapter.poolmanager is second
    adapter.close()


def test_installing_fastpool_registers_no_httpie_plugin() -> None:
    # Opt-in only: fastpool's own distribution has no httpie entry point, and importing
    # fastpool (or its adapter) does not import httpie.
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        groups = {ep.group for ep in distribution("fastpool").entry_points}
    except PackageNotFoundError:  # pragma: no cover - run from a tree without metadata
        groups = set()
    assert not any(group.startswith("httpie.") for group in groups)
    code = (
        "import sys, fastpool, fastpool.adapters, fastpool.sessions; print('httpie' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


# --- the real `http` script --------------------------------------------------------------------
SITECUSTOMIZE = textwrap.dedent(
    """
    # Test-only: record fastpool's trace events of this process into FASTPOOL_TEST_EVENTS.
    import atexit, json, os
    from fastpool.pool import set_process_trace
    from fastpool.trace import ALL, Trace

    _seen = []
    _trace = Trace()
    _trace.add(ALL, lambda event: _seen.append([event.name, event["host"], event["port"]]))
    set_process_trace(_trace)

    @atexit.register
    def _dump():
        with open(os.environ["FASTPOOL_TEST_EVENTS"], "w") as f:
            json.dump(_seen, f)
    """
)


def test_the_http_script_with_the_plugin_on_pythonpath(
    plugin_site: Path, config_dir: Path, tls_server: TLSServer, ca_bundle: str, tmp_path: Path
) -> None:
    script = Path(sys.executable).with_name("http")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "httpie"]
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    record = tmp_path / "events.json"
    env = {key: value for key, value in os.environ.items() if key not in PROXY_VARIABLES}
    env.update(
        PYTHONPATH=os.pathsep.join([str(plugin_site), str(hooks)]),
        HTTPIE_CONFIG_DIR=str(config_dir),
        FASTPOOL_TEST_EVENTS=str(record),
    )
    done = subprocess.run(
        [*command, "--ignore-stdin", f"--verify={ca_bundle}", "--ssl=tls1.2",
         "--print=h", f"{tls_server.url}/echo"],
        capture_output=True, text=True, env=env, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("HTTP/1.1 200 OK")
    seen = json.loads(record.read_text())
    assert ["tls_done", tls_server.host, tls_server.port] in seen
    assert tls_server.handshakes[0][0] == "TLSv1.2"
