"""Run requests' own test suite with fastpool's adapter (or Session) in place of requests'.

The external compatibility check: the tests requests' maintainers wrote for their adapter and
Session, against ours. It downloads the sdist of the installed requests version from PyPI (its
tests/ folder), then runs ``pytest`` there with the ``fastpool_swap`` plugin on each backend
asked for. ``--swap adapter`` (the default) puts ``fastpool.HTTPAdapter`` in place of
``requests.adapters.HTTPAdapter``; ``--swap session`` also puts ``fastpool.Session`` in place of
``requests.Session``. Needs the ``compat`` extra (``pip install -e .[test,compat]``:
pytest-httpbin, httpbin, pytest-mock, pytest-timeout, PySocks).

    python compat/requests_suite.py [--backend both|c|py] [--swap adapter|session]
                                    [--cache DIR] [pytest args ...]
    python compat/requests_suite.py --run c:adapter --run py:adapter --run c:session [--jobs 3]

``--run BACKEND:SWAP`` (repeatable) names each run instead of ``--backend``/``--swap``. With
``--jobs N``, the runs go N at a time, each in its own process, its output held and printed
whole when it ends, in the order asked (so a run's output shows only once it has ended): the suite waits on its servers and its timeouts far
more than it computes (about 6 s of CPU in 80 s), so three runs at once take the time of one.

Deselected, because they would send traffic off loopback (which fastpool's machines must not):
the two ``TestTimeout`` connect tests, which dial 10.255.255.1, and the two tests that look up
names that do not exist (a DNS query). Exit status: pytest's, for the first backend that fails.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from sdist import fetch_sdist

HERE = Path(__file__).resolve().parent
DEFAULT_CACHE = HERE / ".cache"
# Off loopback: a non-routable address dialled for a connect timeout, and DNS lookups of
# names that do not exist.
DESELECT = (
    "tests/test_requests.py::TestTimeout::test_connect_timeout",
    "tests/test_requests.py::TestTimeout::test_total_timeout_connect",
    "tests/test_requests.py::TestRequests::test_errors[http://doesnotexist.google.com-ConnectionError]",
    "tests/test_requests.py::TestRequests::test_proxy_error",
)
PER_TEST_TIMEOUT = 60


def fetch(version: str, cache: Path) -> Path:
    """The unpacked sdist of requests ``version`` (downloaded once into ``cache``)."""
    return fetch_sdist("requests", version, cache, ("tests",))


def command_of(
    source: Path, backend: str, extra: list[str], swap: str = "adapter"
) -> tuple[list[str], dict[str, str]]:
    """The pytest command (and its environment) of requests' suite in ``source`` with
    fastpool's adapter (``swap="session"``: and Session) on ``backend`` ("c" or "py")."""
    env = dict(os.environ)
    env["FASTPOOL_SWAP"] = swap
    # compat/ for the plugin, and this checkout's fastpool (as the bench/ scripts import it)
    paths = [str(HERE), str(HERE.parent), env.get("PYTHONPATH")]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    env.pop("FASTPOOL_NO_EXTENSIONS", None)
    if backend == "py":
        env["FASTPOOL_NO_EXTENSIONS"] = "1"
    command = [
        sys.executable, "-m", "pytest", "-p", "fastpool_swap", "-p", "no:cacheprovider",
        "-q", "-rfE", f"--timeout={PER_TEST_TIMEOUT}",
        *(arg for test in DESELECT for arg in ("--deselect", test)),
        *extra, "tests",
    ]  # fmt: skip
    return command, env


def run(source: Path, backend: str, extra: list[str], swap: str = "adapter") -> int:
    """requests' suite in ``source`` with fastpool's ``swap`` on ``backend``, its output here."""
    command, env = command_of(source, backend, extra, swap)
    print(_title(backend, swap, command), flush=True)
    return subprocess.run(command, cwd=source, env=env, check=False).returncode


def _title(backend: str, swap: str, command: list[str]) -> str:
    return f"=== requests' suite, fastpool {swap}, {backend} backend: {' '.join(command)}"


def run_at_once(source: Path, runs: list[tuple[str, str]], extra: list[str], jobs: int) -> int:
    """Each ``(backend, swap)`` of ``runs``, in batches of ``jobs`` at once; each run's output
    printed whole, in order, once it has ended. Pytest's status of the first run that failed.
    Interrupted, it stops the runs it started (and their test servers) before it returns."""
    first_failure = 0
    with tempfile.TemporaryDirectory(prefix="requests-suite-") as logs:
        for start in range(0, len(runs), jobs):
            batch: list[tuple[str, str, list[str], subprocess.Popen[bytes], Any]] = []
            try:
                for index, (backend, swap) in enumerate(runs[start : start + jobs], start):
                    command, env = command_of(source, backend, extra, swap)
                    log = open(Path(logs, f"{index}.log"), "w+b")  # noqa: SIM115 - closed below
                    try:
                        process = subprocess.Popen(
                            command, cwd=source, env=env, stdout=log, stderr=subprocess.STDOUT
                        )
                    except BaseException:
                        log.close()
                        raise
                    batch.append((backend, swap, command, process, log))
                for backend, swap, command, process, log in batch:
                    status = process.wait()
                    print(_title(backend, swap, command), flush=True)
                    log.seek(0)
                    sys.stdout.buffer.write(log.read())
                    print(f"=== exit status {status}", flush=True)
                    if status and not first_failure:
                        first_failure = status
            finally:
                for *_, process, log in batch:
                    if process.poll() is None:  # interrupted: not left running
                        process.terminate()
                        try:
                            process.wait(10)
                        except subprocess.TimeoutExpired:
                            process.kill()
                            process.wait()
                    log.close()
    return first_failure


def _run_spec(text: str) -> tuple[str, str]:
    backend, _, swap = text.partition(":")
    if backend not in ("c", "py") or swap not in ("adapter", "session"):
        raise argparse.ArgumentTypeError(
            f"--run takes BACKEND:SWAP, BACKEND c or py, SWAP adapter or session; got {text!r}"
        )
    return backend, swap


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("both", "c", "py"))
    parser.add_argument("--swap", choices=("adapter", "session"))
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument(
        "--run", type=_run_spec, action="append", metavar="BACKEND:SWAP", dest="runs",
        help="a run (repeatable): c:adapter, py:adapter, c:session, py:session",
    )  # fmt: skip
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (1)")
    args, extra = parser.parse_known_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    if args.runs and (args.backend or args.swap):
        parser.error("--run names each run's backend and swap: give it without --backend/--swap")
    backends = ("c", "py") if args.backend in (None, "both") else (args.backend,)
    swap = args.swap or "adapter"
    import requests

    source = fetch(requests.__version__, args.cache)
    if args.runs or args.jobs > 1:
        runs = args.runs or [(backend, swap) for backend in backends]
        return run_at_once(source, runs, extra, args.jobs)
    for backend in backends:
        status = run(source, backend, extra, swap)
        if status != 0:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
