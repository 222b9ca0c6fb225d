"""fastpool.dask (issue 18): a crawl on a Dask LocalCluster of worker processes against the test
servers on several loopback hosts. Host affinity (each host's connections come from one worker
process, matched by the ports the server saw), every result exactly once, a worker killed with
SIGKILL mid-crawl loses nothing, the merged stats are the sum of the workers', teardown and
shutdown close every connection. The cluster tests are skipped without the ``dask`` extra; the
import tests always run."""

from __future__ import annotations

import importlib.util
import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from dummyserver import AppServer, pattern_bytes

HAVE_DISTRIBUTED = importlib.util.find_spec("distributed") is not None
needs_distributed = pytest.mark.skipif(
    not HAVE_DISTRIBUTED,
    reason="needs Dask's distributed scheduler: pip install 'fastpool[dask]'",
)

#: Bounds for a loaded 2-core machine: nothing here should come near them.
DEADLINE = 60.0


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    import fastpool

    root = str(Path(fastpool.__file__).resolve().parent.parent)
    environ = dict(os.environ, PYTHONPATH=root, **env)
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        check=False,
    )


# --- the extra stays optional ----------------------------------------------------------------


def test_import_fastpool_does_not_import_dask() -> None:
    result = _run_python(
        "import sys, fastpool, fastpool.stats, fastpool.cli.command\n"
        "fastpool.Session; fastpool.PoolManager; fastpool.HTTPAdapter\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed'))\n"
        "assert not bad, bad\n"
    )
    assert result.returncode == 0, result.stderr


def test_fastpool_dask_without_distributed_names_the_extra() -> None:
    result = _run_python(
        "import sys\nsys.modules['distributed'] = None\n"
        "try:\n    import fastpool.dask\nexcept ImportError as exc:\n    print(exc)\n"
        "else:\n    raise SystemExit('imported')\n"
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'fastpool[dask]'" in result.stdout


def test_crawl_dask_without_distributed_is_a_usage_error(tmp_path: Path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text("http://127.0.0.1:1/\n")
    result = _run_python(
        "import sys\nsys.modules['distributed'] = None\n"
        "from fastpool.cli import main\n"
        f"raise SystemExit(main(['crawl', '--dask', 'local:1', {str(listing)!r}]))\n"
    )
    assert result.returncode == 2
    assert "fastpool[dask]" in result.stderr


# --- affinity, without a cluster --------------------------------------------------------------


@needs_distributed
def test_host_workers_is_stable_balanced_and_moves_only_a_lost_workers_hosts() -> None:
    from fastpool.dask import host_key, host_workers

    workers = [f"tcp://10.0.0.{i}:8786" for i in range(1, 5)]
    hosts = [f"host{i}.example" for i in range(2000)]
    owner = {host: host_workers(host, workers)[0] for host in hosts}
    counts = Counter(owner.values())
    assert set(counts) == set(workers) and min(counts.values()) > 350  # 500 each expected
    # Another process with another hash seed agrees (BLAKE2b, not the salted hash()).
    code = (
        "from fastpool.dask import host_workers\n"
        f"w = {workers!r}\n"
        "print(','.join(host_workers(f'host{i}.example', w)[0] for i in range(50)))\n"
    )
    other = _run_python(code, PYTHONHASHSEED="12345")
    assert other.returncode == 0, other.stderr
    assert other.stdout.strip().split(",") == [owner[h] for h in hosts[:50]]
    # A worker leaves: its hosts move, every other host stays where it was.
    survivors = workers[1:]
    for host in hosts:
        moved = host_workers(host, survivors)[0]
        if owner[host] != workers[0]:
            assert moved == owner[host]
    # A split host: k distinct workers, the first being its single owner.
    assert host_workers("hot.example", workers, 3)[0] == host_workers("hot.example", workers)[0]
    assert len(set(host_workers("hot.example", workers, 3))) == 3
    assert host_key("HTTP://Example.COM:8080/x") == "example.com" == host_key("https://example.com")
    assert host_key("http://[::1") == ""


@needs_distributed
def test_session_plugin_pickles_its_settings_never_a_session() -> None:
    import pickle

    from fastpool.dask import SessionPlugin

    plugin = SessionPlugin({"pool_maxsize": 3, "headers": {"X-Crawl": "1"}}, threads=2)
    plugin.setup(worker=type("FakeWorker", (), {"address": "tcp://fake:1"})())  # type: ignore[arg-type]
    try:
        assert plugin.session is not None and plugin.session.headers["X-Crawl"] == "1"
        clone = pickle.loads(pickle.dumps(plugin))
        assert clone.session is None and clone.executor is None
        assert clone.settings == plugin.settings and clone.name == plugin.name
        assert b"Session" not in pickle.dumps(plugin).replace(b"SessionPlugin", b"")
    finally:
        plugin.teardown(worker=None)  # type: ignore[arg-type]
    assert plugin.session is None
    # The same settings give the same plugin name (one Session per worker), others another.
    assert SessionPlugin({"headers": {"X-Crawl": "1"}, "pool_maxsize": 3}, 2).name == plugin.name
    assert SessionPlugin({"pool_maxsize": 4}, 2).name != plugin.name
    with pytest.raises(ValueError, match="threads"):
        SessionPlugin(threads=0)


# --- the cluster -----------------------------------------------------------------------------


class PeerServer(AppServer):
    """An AppServer that remembers each connection's client port (to tell the workers apart)."""

    def __init__(self, host: str) -> None:
        super().__init__(host)
        self.peer_ports: list[int] = []

    def _spawn(self, sock: socket.socket) -> None:
        self.peer_ports.append(sock.getpeername()[1])
        super()._spawn(sock)

    def live(self) -> int:
        with self._lock:
            return len(self._live)


def _local_ports(remotes: list[tuple[str, int]]) -> dict[str, list[int]]:
    """On a worker: the local ports of its TCP connections, for each of ``remotes``.

    Keyed by remote because a local port number is only unique per remote: two workers may
    each hold port P, one towards each of two servers.
    """
    import psutil

    wanted = {tuple(r) for r in remotes}
    ports: dict[str, list[int]] = {}
    for c in psutil.Process().net_connections(kind="tcp"):
        if c.raddr and (c.raddr.ip, c.raddr.port) in wanted:
            ports.setdefault(f"{c.raddr.ip}:{c.raddr.port}", []).append(c.laddr.port)
    return ports


def _session_started(name: str, dask_worker: Any = None) -> float | None:
    plugin = dask_worker.plugins.get(name)
    return None if plugin is None or plugin.session is None else plugin.started


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    if not HAVE_DISTRIBUTED:
        pytest.skip("needs Dask's distributed scheduler: pip install 'fastpool[dask]'")
    import cloudpickle

    from fastpool.dask import local_cluster

    # The helpers above run on the workers, which cannot import this test module.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with local_cluster(2) as cluster:
        from distributed import Client

        with Client(cluster, direct_to_workers=True) as client:
            client.wait_for_workers(2, timeout=DEADLINE)
            yield client


@pytest.fixture
def hosts(_servers: Any) -> list[PeerServer]:
    """Six servers on 127.0.0.2 ... 127.0.0.7, stopped (and checked) after the test."""
    return [_servers.start(PeerServer(f"127.0.0.{i}")) for i in range(2, 8)]


def _urls(servers: list[PeerServer], per_host: int, path: str = "/bytes/100") -> list[str]:
    # Interleaved, as a crawl list usually is.
    join = "&" if "?" in path else "?"
    return [f"{s.url}{path}{join}n={n}" for n in range(per_host) for s in servers]


def _exactly_once(results: list[Any], urls: list[str]) -> None:
    positions = Counter(r.position for r in results)
    assert sorted(positions) == list(range(len(urls))), "a URL's result is missing"
    assert max(positions.values()) == 1, "a URL's result came twice"
    assert all(r.url == urls[r.position] for r in results)


def _until(condition: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@needs_distributed
def test_crawl_is_host_affine_and_complete(
    dask_client: Any, hosts: list[PeerServer], tmp_path: Path
) -> None:
    from fastpool.dask import cluster_stats, crawl, host_key

    urls: list[Any] = _urls(hosts, 25)
    # Some bodies are written by the worker to a path given with the URL.
    urls[:6] = [(url, str(tmp_path / "bodies" / f"{i}.bin")) for i, url in enumerate(urls[:6])]
    plain = [u if isinstance(u, str) else u[0] for u in urls]
    job = crawl(dask_client, urls, settings={"pool_maxsize": 4}, threads=4, batch_size=16)
    results = list(job)

    _exactly_once(results, plain)
    assert {r.status for r in results} == {200} and {r.error for r in results} == {None}
    assert {r.size for r in results} == {100}
    assert all(r.headers["Content-Length"] == "100" and r.elapsed > 0 for r in results)
    for r in results[:]:
        if r.path is not None:
            assert Path(r.path).read_bytes() == pattern_bytes(100)
    assert len([r for r in results if r.path]) == 6
    assert sum(s.requests for s in hosts) == len(urls)  # nothing fetched twice either

    # Affinity, from the results: every URL of a host was fetched by one worker.
    by_host: dict[str, set[str | None]] = {}
    for r in results:
        by_host.setdefault(host_key(r.url), set()).add(r.worker)
    assert all(len(workers) == 1 for workers in by_host.values()), by_host

    # Affinity, counted at the server: every connection a host accepted came from the one
    # worker process whose open sockets have those client ports (the pools keep them open).
    remotes = [(s.host, s.port) for s in hosts]
    ports = dask_client.run(_local_ports, remotes)
    for server in hosts:
        remote = f"{server.host}:{server.port}"
        owners = {
            w for w, local in ports.items() if set(server.peer_ports) & set(local.get(remote, ()))
        }
        assert len(owners) == 1, (server, owners)
        (owner,) = owners
        assert set(server.peer_ports) <= set(ports[owner][remote])
        assert by_host[server.host] == {owner}
        # ... and that worker's pool stats count the same connections.
        origin = server.url
        stats = cluster_stats(dask_client, job.name)
        created = {
            w: sum(h.created for h in st.hosts if h.origin == origin) for w, st in stats.items()
        }
        assert created[owner] == server.connections > 0
        assert sum(created.values()) == server.connections


@needs_distributed
def test_merged_stats_are_the_sum_of_the_workers(dask_client: Any, hosts: list[PeerServer]) -> None:
    from fastpool.dask import cluster_stats, crawl
    from fastpool.stats import COUNTERS

    job = crawl(dask_client, _urls(hosts, 10), threads=3, batch_size=8)
    assert len(list(job)) == 60
    per_worker = cluster_stats(dask_client, job.name)
    merged = job.stats()
    assert set(per_worker) == set(dask_client.nthreads())
    for field in (*COUNTERS, "open", "idle", "in_use", "maxsize"):
        expected = sum(getattr(st.total, field) for st in per_worker.values())
        assert getattr(merged.total, field) == pytest.approx(expected), field
    assert len(merged.hosts) == sum(len(st.hosts) for st in per_worker.values())
    assert merged.num_pools == sum(st.num_pools for st in per_worker.values())
    # This crawl's own hosts, against the servers' counts.
    ours = [h for h in merged.hosts if h.origin in {s.url for s in hosts}]
    assert sum(h.created for h in ours) == sum(s.connections for s in hosts)
    assert sum(h.created + h.reused for h in ours) == sum(s.requests for s in hosts) == 60
    assert isinstance(job.advice(merged), list)


@needs_distributed
def test_a_split_hot_host_uses_n_workers_with_the_limit_divided(
    dask_client: Any, hosts: list[PeerServer]
) -> None:
    from fastpool.dask import crawl, host_key

    hot = hosts[0]
    urls = [f"{hot.url}/slow?delay=0.01&n={n}" for n in range(40)] + _urls(hosts[1:], 4)
    job = crawl(
        dask_client, urls, threads=4, batch_size=8, per_host=2, split={hot.host: 2},
        settings={"pool_maxsize": 8},
    )  # fmt: skip
    results = list(job)
    _exactly_once(results, urls)
    assert all(r.status == 200 for r in results)
    hot_workers = Counter(r.worker for r in results if host_key(r.url) == hot.host)
    assert len(hot_workers) == 2 and min(hot_workers.values()) >= 10
    # per_host=2 over 2 workers: one request at a time on each, so one connection each.
    assert hot.connections == 2
    for server in hosts[1:]:
        assert len({r.worker for r in results if host_key(r.url) == server.host}) == 1


@needs_distributed
def test_a_worker_killed_mid_crawl_loses_nothing(dask_client: Any, hosts: list[PeerServer]) -> None:
    from fastpool.dask import crawl, host_key

    urls = _urls(hosts, 30, "/slow?delay=0.03")  # 180 URLs of 30 ms, 2 threads a worker
    events: list[str] = []
    job = crawl(
        dask_client, urls, threads=2, batch_size=6, poll_interval=0.2, on_event=events.append
    )
    results = []
    victim = None
    started = time.monotonic()
    for result in job:
        results.append(result)
        if victim is None and len(results) == 12:
            # Kill the worker with the most batches in flight, mid-batch, as the OOM killer would.
            inflight = Counter(batch.worker for batch in job._inflight.values())
            victim = inflight.most_common(1)[0][0]
            pid = dask_client.run(os.getpid, workers=[victim])[victim]
            killed_at = time.time()
            os.kill(pid, signal.SIGKILL)
        assert time.monotonic() - started < DEADLINE
    assert victim is not None
    _exactly_once(results, urls)
    assert [r for r in results if r.status != 200] == []
    assert job.workers_lost == [victim] and job.resubmitted > 0
    assert any(victim in text for text in events)
    # The victim's hosts moved as a whole: still one worker per host after the move.
    after_kill = [r for r in results[12:] if r.worker != victim]
    by_host: dict[str, set[str | None]] = {}
    for r in after_kill:
        by_host.setdefault(host_key(r.url), set()).add(r.worker)
    assert all(len(workers) == 1 for workers in by_host.values()), by_host
    # Fetches may repeat (at-least-once on the wire: the victim's batches in flight), results
    # not (exactly once above).
    assert sum(s.requests for s in hosts) >= len(urls)

    # The nanny restarts the worker: it gets the plugin again and a fresh Session.
    dask_client.wait_for_workers(2, timeout=DEADLINE)
    assert _until(lambda: len(dask_client.run(_session_started, job.name)) == 2)
    started_at = dask_client.run(_session_started, job.name)
    assert victim not in started_at
    assert sum(1 for t in started_at.values() if t is not None and t > killed_at) == 1


def _set_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


@needs_distributed
def test_settings_verify_wins_over_the_workers_environment(
    dask_client: Any, server_factory: Any, ca_bundle: str
) -> None:
    from fastpool.dask import crawl

    servers = [server_factory(f"127.0.0.{i}", tls=True) for i in (8, 9)]
    urls = [f"{s.url}/bytes/10?n={n}" for n in range(5) for s in servers]
    saved = dask_client.run(os.environ.get, "REQUESTS_CA_BUNDLE")
    # requests would let this override a Session's verify; the crawl's settings must win.
    dask_client.run(_set_env, "REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")
    try:
        results = list(crawl(dask_client, urls, settings={"verify": ca_bundle}, threads=2))
    finally:
        for worker, value in saved.items():
            dask_client.run(_set_env, "REQUESTS_CA_BUNDLE", value, workers=[worker])
    _exactly_once(results, urls)
    assert [r.error for r in results if r.status != 200] == []


@needs_distributed
def test_unregistering_the_plugin_closes_the_workers_sessions(
    dask_client: Any, hosts: list[PeerServer]
) -> None:
    from fastpool.dask import crawl

    job = crawl(dask_client, _urls(hosts, 5), settings={"idle_timeout": 300.0}, threads=2)
    assert len(list(job)) == 30
    assert sum(s.live() for s in hosts) > 0  # kept alive in the workers' pools
    dask_client.unregister_worker_plugin(job.name)
    assert _until(lambda: sum(s.live() for s in hosts) == 0), [s.live() for s in hosts]
    assert dask_client.run(_session_started, job.name) == dict.fromkeys(dask_client.nthreads())


@needs_distributed
def test_command_crawl_dask_local_and_clean_shutdown(
    hosts: list[PeerServer], tmp_path: Path
) -> None:
    from fastpool.cli import command as cli

    listing = tmp_path / "urls.txt"
    urls = _urls(hosts, 5)
    listing.write_text("# hosts\n" + "\n".join(urls) + "\nhttp://127.0.0.1:1/refused\n")
    out, err = io.StringIO(), io.StringIO()
    status = cli.main(["crawl", "--dask", "local:2", "-t", "2", str(listing)], out=out, err=err)
    text = out.getvalue()
    assert status == 1, err.getvalue()  # the refused URL
    assert "fetched 31 URLs" in text and "with 2 threads" in text
    assert "status       200 x 30" in text
    assert "errors       1 x ConnectionError (Connection refused)" in text
    assert "LocalCluster of 2 worker processes" in text
    assert f"connections  {sum(s.connections for s in hosts) + 1} started for 7 hosts" in text
    assert "error http://127.0.0.1:1/refused: ConnectionError" in err.getvalue()
    # The cluster is gone and so is every connection its workers had open.
    assert _until(lambda: sum(s.live() for s in hosts) == 0), [s.live() for s in hosts]

    bad = io.StringIO()
    assert cli.main(["crawl", "--dask", "local:0", str(listing)], err=bad) == 2
    bad = io.StringIO()
    args = ["crawl", "--dask", "local:1", "--client", "requests", str(listing)]
    assert cli.main(args, out=io.StringIO(), err=bad) == 2
    assert "--client requests" in bad.getvalue()


def _crawl_tasks(prefix: str, dask_scheduler: Any = None) -> list[str]:
    return [str(key) for key in dask_scheduler.tasks if str(key).startswith(prefix)]


@needs_distributed
def test_leaving_the_loop_early_cancels_the_batches_in_flight(
    dask_client: Any, hosts: list[PeerServer]
) -> None:
    from fastpool.dask import crawl

    job = crawl(dask_client, _urls(hosts, 40, "/slow?delay=0.02"), threads=2, batch_size=5)
    taken = []
    for result in job:
        taken.append(result)
        if len(taken) == 5:
            break
    assert job._inflight == {}
    prefix = f"fastpool-crawl-{job._id}-"
    assert _until(lambda: dask_client.run_on_scheduler(_crawl_tasks, prefix) == [])
    # A batch already running finishes its URLs on the worker (its results are dropped); then
    # nothing more is fetched: far fewer requests than URLs.
    counts = [sum(s.requests for s in hosts)]

    def settled() -> bool:
        time.sleep(0.25)
        counts.append(sum(s.requests for s in hosts))
        return counts[-1] == counts[-2]

    assert _until(settled)
    assert job.submitted < 240 // 5 and counts[-1] < 240 // 2
