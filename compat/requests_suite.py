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

Deselected, because they would send traffic off loopback (which fastpool's machines must not):
the two ``TestTimeout`` connect tests, which dial 10.255.255.1, and the two tests that look up
names that do not exist (a DNS query). Exit status: pytest's, for the first backend that fails.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

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


def run(source: Path, backend: str, extra: list[str], swap: str = "adapter") -> int:
    """requests' suite in ``source`` with fastpool's adapter (``swap="session"``: and Session)
    on ``backend`` ("c" or "py")."""
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
    print(
        f"=== requests' suite, fastpool {swap}, {backend} backend: {' '.join(command)}", flush=True
    )
    return subprocess.run(command, cwd=source, env=env, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("both", "c", "py"), default="both")
    parser.add_argument("--swap", choices=("adapter", "session"), default="adapter")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args, extra = parser.parse_known_args(argv)
    import requests

    source = fetch(requests.__version__, args.cache)
    for backend in ("c", "py") if args.backend == "both" else (args.backend,):
        status = run(source, backend, extra, args.swap)
        if status != 0:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
