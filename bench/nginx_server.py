"""Run Debian's nginx on loopback for fastpool's benchmarks.

``NginxServer`` renders ``bench/nginx/nginx.conf.in`` into a private run dir (``bench/.run/``,
git-ignored), writes the static files (``/100b``: 100 bytes, ``/64k``: 65536 bytes) and a trustme
certificate, starts nginx as a daemon with a pid file and stops it by that pid. It listens on
127.0.0.1 and the crawl hosts 127.0.0.2 ... 127.0.0.(hosts+1), HTTP on one port and HTTPS on
another, with keep-alive that never closes a benchmark connection and the access log off.

``connections()`` reads stub_status's ``accepts`` counter over one kept-alive socket of its own
and leaves that socket out of the count.

Command line (what ``bench/nginx/run.sh`` calls)::

    python bench/nginx_server.py start|stop|status [--hosts N] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import string
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
TEMPLATE = BENCH_DIR / "nginx" / "nginx.conf.in"
RUN_ROOT = BENCH_DIR / ".run"
#: The run dir the command line uses (a fixture uses its own, so both can run together).
CLI_RUN_DIR = RUN_ROOT / "nginx"
#: Files served, by URL path.
FILES = {"100b": 100, "64k": 64 * 1024}
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def find_nginx() -> str | None:
    """The nginx binary: on PATH or in /usr/sbin (root's PATH may lack sbin)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NginxError(RuntimeError):
    """nginx could not be started or stopped (the message includes its error log)."""


class NginxServer:
    """nginx on loopback, as a context manager (``start()``/``stop()`` also work).

    ``NginxServer(run_dir=CLI_RUN_DIR, hosts=200, workers=1)``: ``hosts`` crawl addresses
    besides 127.0.0.1 (at most 253), ``workers`` nginx worker processes (1 leaves the other
    core of a 2-core machine to the client).
    """

    def __init__(self, run_dir: Path = CLI_RUN_DIR, hosts: int = 200, workers: int = 1) -> None:
        if not isinstance(hosts, int) or not 0 <= hosts <= 253:
            raise ValueError(f"hosts must be an int in 0..253, got {hosts!r}")
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an int >= 1, got {workers!r}")
        self.run_dir = Path(run_dir).resolve()
        self.hosts = hosts
        self.workers = workers
        self.http_port = self.https_port = self.status_port = 0
        self._status_sock: socket.socket | None = None
        self._status_connections = 0  # our own status connections, left out of connections()

    # --- addresses ---
    @property
    def crawl_hosts(self) -> list[str]:
        """The crawl addresses: 127.0.0.2, 127.0.0.3, ..."""
        return [f"127.0.0.{i}" for i in range(2, self.hosts + 2)]

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def https_url(self) -> str:
        """``https://127.0.0.1:PORT`` (verify with ``ca_bundle``)."""
        return f"https://127.0.0.1:{self.https_port}"

    def http_urls(self) -> list[str]:
        """Base URLs of the crawl hosts over HTTP."""
        return [f"http://{host}:{self.http_port}" for host in self.crawl_hosts]

    def https_urls(self) -> list[str]:
        """Base URLs of the crawl hosts over HTTPS."""
        return [f"https://{host}:{self.https_port}" for host in self.crawl_hosts]

    @property
    def ca_bundle(self) -> str:
        """Path of the PEM file of the CA that signed nginx's certificate."""
        return str(self.run_dir / "ca.pem")

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "nginx.pid"

    def info(self) -> dict[str, object]:
        """What a client needs, as JSON-able data (also saved as ``info.json`` in the run dir)."""
        return {
            "pid": self.pid(),
            "run_dir": str(self.run_dir),
            "http_url": self.http_url,
            "https_url": self.https_url,
            "status_url": f"http://127.0.0.1:{self.status_port}/status",
            "ca_bundle": self.ca_bundle,
            "hosts": self.hosts,
            "http_port": self.http_port,
            "https_port": self.https_port,
            "status_port": self.status_port,
            "files": {f"/{name}": size for name, size in FILES.items()},
        }

    # --- life cycle ---
    def start(self) -> NginxServer:
        """Write the run dir and start nginx; NginxError (with its log) if it does not come up."""
        nginx = find_nginx()
        if nginx is None:
            raise NginxError("nginx is not installed (bench/nginx/run.sh start installs it)")
        if self.pid() is not None:
            raise NginxError(f"nginx already runs from {self.run_dir} (pid {self.pid()})")
        self._prepare()
        for _attempt in range(3):  # a port picked as free may be taken meanwhile
            self.http_port, self.https_port, self.status_port = (_free_port() for _ in range(3))
            self._render()
            log = self.run_dir / "error.log"
            log.write_text("")
            result = os.spawnv(os.P_WAIT, nginx, [nginx, "-q", "-e", str(log),
                                                  "-p", str(self.run_dir),
                                                  "-c", str(self.run_dir / "nginx.conf")])  # fmt: skip
            if result == 0 and self._wait_until_up():
                (self.run_dir / "info.json").write_text(json.dumps(self.info(), indent=2))
                return self
            self.stop()
            if "Address already in use" not in log.read_text():
                break
        raise NginxError(f"nginx did not start; {log}:\n{log.read_text()[-2000:]}")

    def stop(self) -> None:
        """Stop nginx by the pid in its pid file (SIGTERM, then SIGKILL after 5 s)."""
        self._close_status()
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)

    def __enter__(self) -> NginxServer:  # noqa: PYI034 - bench helper, not subclassed
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def pid(self) -> int | None:
        """The master's pid if nginx runs from this run dir, else None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    @classmethod
    def attach(cls, run_dir: Path = CLI_RUN_DIR) -> NginxServer:
        """An object for an nginx started earlier (by the command line) from ``run_dir``."""
        info = json.loads((Path(run_dir) / "info.json").read_text())
        server = cls(run_dir, hosts=info["hosts"])
        server.http_port = info["http_port"]
        server.https_port = info["https_port"]
        server.status_port = info["status_port"]
        return server

    # --- the connection counter ---
    def connections(self) -> int:
        """TCP connections nginx has accepted since this object started it, not counting the
        connections this object opened to read the counter (exact for a started server).
        """
        return self.accepts() - self._status_connections

    def accepts(self) -> int:
        """stub_status's raw ``accepts``: every connection accepted, status reads included."""
        for _attempt in range(2):
            if self._status_sock is None:
                self._status_sock = socket.create_connection(("127.0.0.1", self.status_port), 5)
                self._status_connections += 1
            try:
                return self._read_accepts(self._status_sock)
            except (OSError, ValueError):
                self._close_status()  # nginx closed it: open another, and count that too
        raise NginxError("cannot read nginx's stub_status")

    def _read_accepts(self, sock: socket.socket) -> int:
        sock.sendall(b"GET /status HTTP/1.1\r\nHost: status\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionAbortedError("status connection closed")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(body) < length:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionAbortedError("status connection closed")
            body += chunk
        # "Active connections: 1 \nserver accepts handled requests\n 10 10 20 \n..."
        return int(body.split(b"\n")[2].split()[0])

    def _close_status(self) -> None:
        if self._status_sock is not None:
            self._status_sock.close()
            self._status_sock = None

    # --- the run dir ---
    def _prepare(self) -> None:
        import trustme  # a test extra; only needed to start nginx

        for sub in ("www", "tmp"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        for name, size in FILES.items():
            (self.run_dir / "www" / name).write_bytes(b"x" * size)
        ca = trustme.CA()
        cert = ca.issue_cert("localhost", "127.0.0.1", *self.crawl_hosts)
        ca.cert_pem.write_to_path(self.ca_bundle)
        cert.private_key_pem.write_to_path(str(self.run_dir / "server.key"))
        cert.cert_chain_pems[0].write_to_path(str(self.run_dir / "server.pem"))
        for pem in cert.cert_chain_pems[1:]:
            pem.write_to_path(str(self.run_dir / "server.pem"), append=True)

    def _render(self) -> None:
        addresses = ["127.0.0.1", *self.crawl_hosts]
        indent = " " * 8
        config = string.Template(TEMPLATE.read_text()).substitute(
            # As root, nginx's workers would run as nobody and could not read the run dir.
            user_line="user root;" if os.geteuid() == 0 else "",
            workers=self.workers,
            run_dir=self.run_dir,
            status_port=self.status_port,
            http_listens="\n".join(f"{indent}listen {a}:{self.http_port};" for a in addresses),
            https_listens="\n".join(
                f"{indent}listen {a}:{self.https_port} ssl;" for a in addresses
            ),
        )
        (self.run_dir / "nginx.conf").write_text(config)

    def _wait_until_up(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.pid() is not None:
                try:
                    socket.create_connection(("127.0.0.1", self.status_port), 1).close()
                except OSError:
                    pass
                else:
                    self._status_connections += 1  # that probe was accepted too
                    return True
            time.sleep(0.02)
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child (we started it with spawnv) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument("--hosts", type=int, default=200, help="crawl hosts (default 200)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--run-dir", type=Path, default=CLI_RUN_DIR)
    args = parser.parse_args(argv)
    server = NginxServer(args.run_dir, hosts=args.hosts, workers=args.workers)
    if args.command == "start":
        try:
            server.start()
        except NginxError as exc:
            print(exc, file=sys.stderr)
            return 1
        print(json.dumps(server.info(), indent=2))
    elif args.command == "stop":
        pid = server.pid()
        server.stop()
        print(f"stopped pid {pid}" if pid else "not running")
    else:
        if server.pid() is None:
            print("not running")
            return 3
        attached = NginxServer.attach(args.run_dir)
        print(json.dumps({**attached.info(), "accepts": attached.accepts()}, indent=2))
        attached._close_status()
    return 0


if __name__ == "__main__":
    sys.exit(main())
