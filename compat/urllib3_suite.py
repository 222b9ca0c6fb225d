"""Run urllib3's own test suite with fastpool's pools in place of urllib3's, and compare.

The external compatibility check of the pool layer: the tests urllib3's maintainers wrote for
their pools and pool managers, against ``fastpool.PoolManager`` and friends. It downloads the
sdist of the installed urllib3 (it holds ``test/`` and ``dummyserver/``) into a cache, then runs
the pool-level part of the suite (``SCOPE``) twice in one invocation: stock, once (fastpool is not
used, so the backend does not matter), and swapped on each backend asked for, with the
``fastpool_urllib3_swap`` plugin (which also keeps both passes on loopback and records each
test's outcome). Both passes also load ``hypercorn_transport``, which gives PyPI's hypercorn the
``_transport`` extension of urllib3's fork, so the dummyserver proxy's CONNECT tunnels work. Needs
the ``compat`` extra (``pip install -e .[test,compat]``).

    python compat/urllib3_suite.py [--backend both|c|py] [--cache DIR] [--outcomes DIR]
                                   [pytest args ...]

The comparison is test by test: a test that does not pass with stock on this machine does not
count. A test that passes with stock and not swapped is a regression, unless a checked-in list
names it:

- ``urllib3_deselected.txt``: tests of urllib3's internals (its connection class, ``pool.pool``
  as a queue, private methods and names) and HTTP/2-only tests, which fastpool's engine is not
  meant to pass; the ``off-loopback`` tests, which are not run at all (nor are those urllib3
  marks ``requires_network``); and ``not-run-swapped`` ones, which would only wait for their
  timeout with the swap.
- ``urllib3_known.txt``: the differences fastpool still has to fix (issue 14), by category.

Both lists are sections headed ``[category] one-line reason`` followed by test ids (a file or
class id, or a function id without its parameters, covers the tests under it); a line
``message: TEXT`` names the tests whose failure message holds TEXT. The run fails on a regression
that no list names, on a test that tried to leave loopback, and when fewer than
``FASTPOOL_U3_MIN_REQUESTS`` (default 500) requests went through fastpool in a swapped pass;
list entries whose tests all pass now are reported, so the lists can shrink.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sdist import fetch_sdist

HERE = Path(__file__).resolve().parent
DEFAULT_CACHE = HERE / ".cache"
DESELECTED = HERE / "urllib3_deselected.txt"
KNOWN = HERE / "urllib3_known.txt"
# The part of urllib3's suite that drives its pools and pool managers. The rest (test_util,
# test_response, test_retry, test_ssl, the connection class, contrib) never makes a pool, so the
# swap cannot change its outcome.
SCOPE = (
    "test/test_connectionpool.py",
    "test/test_poolmanager.py",
    "test/test_proxymanager.py",
    "test/test_queue_monkeypatch.py",
    "test/test_exceptions.py",
    "test/with_dummyserver",
)
# Tests urllib3 marks as needing the Internet (they dial 240.0.0.0 to find out).
OFF_LOOPBACK_MARKER = "not requires_network"
PER_TEST_TIMEOUT = 30
MIN_REQUESTS = 500


@dataclass
class Section:
    """One ``[category] reason`` block of a list file and the test ids under it."""

    category: str
    reason: str
    tests: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def names(self, test: str, message: str = "") -> bool:
        """Whether the section names ``test`` (or the failure ``message`` it had)."""
        return any(covers(entry, test) for entry in self.tests) or any(
            text in message for text in self.messages
        )


def read_list(path: Path) -> list[Section]:
    """Parse a list file: ``[category] reason`` headers, one test id a line, ``#`` comments."""
    sections: list[Section] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        header = re.fullmatch(r"\[([\w-]+)\]\s+(.+)", line)
        if header:
            sections.append(Section(header[1], header[2]))
        elif not sections:
            raise SystemExit(f"{path}:{number}: a test id before any [category] header")
        elif line.startswith("message:"):
            sections[-1].messages.append(line[len("message:") :].strip())
        else:
            sections[-1].tests.append(line)
    return sections


def covers(entry: str, test: str) -> bool:
    """Whether a list entry (a test id, or the id of a file or class) names ``test``."""
    return test == entry or test.startswith((entry + "::", entry + "["))


def section_of(sections: list[Section], test: str, message: str = "") -> Section | None:
    """The first section that names ``test``."""
    for section in sections:
        if section.names(test, message):
            return section
    return None


def fetch(version: str, cache: Path) -> Path:
    """The unpacked sdist of urllib3 ``version`` (downloaded once into ``cache``)."""
    return fetch_sdist("urllib3", version, cache, ("test", "dummyserver"))


def run(
    source: Path, swap: bool, backend: str, deselect: list[str], extra: list[str], keep: Path | None
) -> dict:
    """One pass of the suite in ``source``; the outcomes the plugin recorded (also copied into
    ``keep``, when given)."""
    env = dict(os.environ)
    # compat/ for the plugin, and this checkout's fastpool (as the bench/ scripts import it)
    paths = [str(HERE), str(HERE.parent), env.get("PYTHONPATH")]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    env["FASTPOOL_U3_SWAP"] = "1" if swap else "0"
    # Only the plugins urllib3's suite needs: others (requests-mock, pytest-httpbin, ...) would
    # import requests after the swap, and make pools of their own at load time.
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env.pop("FASTPOOL_NO_EXTENSIONS", None)
    if backend == "py":
        env["FASTPOOL_NO_EXTENSIONS"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        outcomes = Path(tmp) / "outcomes.json"
        env["FASTPOOL_U3_OUTCOMES"] = str(outcomes)
        command = [
            sys.executable, "-m", "pytest", "-p", "pytest_timeout", "-p", "fastpool_urllib3_swap",
            "-p", "hypercorn_transport", "-p", "no:cacheprovider", "-q", "--tb=no", "-rN",
            "-o", "console_output_style=classic",
            f"--timeout={PER_TEST_TIMEOUT}", "-m", OFF_LOOPBACK_MARKER,
            *(arg for test in deselect for arg in ("--deselect", test)),
            *extra, *SCOPE,
        ]  # fmt: skip
        label = f"fastpool's pools, {backend} backend" if swap else "stock urllib3"
        shown = " ".join(arg for arg in command if arg != "--deselect" and arg not in deselect)
        print(
            f"\n=== urllib3's suite, {label} ({len(deselect)} ids deselected): {shown}", flush=True
        )
        started = time.monotonic()
        status = subprocess.run(command, cwd=source, env=env, check=False).returncode
        if not outcomes.exists():
            raise SystemExit(f"the {label} pass wrote no outcomes (pytest exited {status})")
        result = json.loads(outcomes.read_text(encoding="utf-8"))
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            name = f"swapped-{backend}.json" if swap else "stock.json"
            (keep / name).write_text(outcomes.read_text(encoding="utf-8"), encoding="utf-8")
    result["seconds"] = time.monotonic() - started
    result["label"] = label
    return result


def compare(stock: dict, swapped: dict, deselected: list[Section], known: list[Section]) -> dict:
    """Sort the tests that pass with stock by what the swapped pass made of them."""
    baseline = sorted(t for t, o in stock["tests"].items() if o["outcome"] == "passed")
    outcome = {t: o["outcome"] for t, o in swapped["tests"].items()}
    found: dict = {"passed": [], "listed": {}, "known": {}, "regressions": [], "fixed": []}
    for test in baseline:
        if outcome.get(test) == "passed":
            found["passed"].append(test)
            continue
        message = swapped["tests"].get(test, {}).get("message") or "not run"
        listed = section_of(deselected, test, message) or section_of(known, test, message)
        if listed is None:
            found["regressions"].append((test, outcome.get(test, "not run"), message))
        else:
            group = "listed" if listed in deselected else "known"
            found[group].setdefault(listed.category, []).append(test)
    # An entry whose tests (those that pass with stock) all pass swapped can go.
    for section in deselected + known:
        if section.category in ("off-loopback", "not-run-swapped"):
            continue  # not run swapped: nothing to learn
        for entry in section.tests:
            covered = [t for t in baseline if covers(entry, t)]
            if covered and all(outcome.get(t) == "passed" for t in covered):
                found["fixed"].append((entry, section))
    return found


def stale(stock: dict, sections: list[Section]) -> list[str]:
    """List entries that name no test the stock pass ran (renamed, or gone from urllib3)."""
    tests = list(stock["tests"])
    return [
        entry
        for section in sections
        if section.category not in ("off-loopback",)
        for entry in section.tests
        if not any(covers(entry, t) for t in tests)
    ]


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("both", "c", "py"), default="both")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--outcomes", type=Path, help="keep each pass's outcomes (JSON) here")
    args, extra = parser.parse_known_args(argv)
    import urllib3

    deselected, known = read_list(DESELECTED), read_list(KNOWN)
    off_loopback = [t for s in deselected if s.category == "off-loopback" for t in s.tests]
    not_swapped = [t for s in deselected if s.category == "not-run-swapped" for t in s.tests]
    source = fetch(urllib3.__version__, args.cache)
    minimum = int(os.environ.get("FASTPOOL_U3_MIN_REQUESTS", MIN_REQUESTS))

    stock = run(source, False, "any", off_loopback, extra, args.outcomes)
    passes = [
        run(source, True, backend, off_loopback + not_swapped, extra, args.outcomes)
        for backend in (("c", "py") if args.backend == "both" else (args.backend,))
    ]

    failed = False
    counts = Counter(o["outcome"] for o in stock["tests"].values())
    baseline = counts["passed"]
    print(f"\n=== urllib3 {urllib3.__version__}'s suite with fastpool's pools: summary")
    print(
        f"stock: {baseline} passed, {counts['failed']} failed, {counts['skipped']} skipped, "
        f"{counts['xfailed']} xfailed ({stock['seconds']:.0f}s); only the {baseline} tests "
        "that pass with stock count below"
    )
    for swapped in passes:
        found = compare(stock, swapped, deselected, known)
        listed = sum(len(v) for v in found["listed"].values())
        known_n = sum(len(v) for v in found["known"].values())
        print(
            f"\n{swapped['label']}: {len(found['passed'])} of {baseline} passed "
            f"({swapped['seconds']:.0f}s, {swapped['requests']} requests through fastpool); "
            f"{listed} internals (urllib3_deselected.txt), {known_n} known differences "
            f"(urllib3_known.txt), {len(found['regressions'])} regressions"
        )
        for category, tests in sorted(found["listed"].items()) + sorted(found["known"].items()):
            print(f"  {len(tests):4d} {category}")
        for test, outcome, message in found["regressions"]:
            print(f"  REGRESSION ({outcome}) {test}\n      {message[:200]}")
        for entry, section in found["fixed"]:
            print(f"  now passes, take it off the [{section.category}] list: {entry}")
        if found["regressions"]:
            failed = True
        if swapped["requests"] < minimum:
            print(f"  FAILED: fewer than {minimum} requests went through fastpool (no swap?)")
            failed = True
    for result in (stock, *passes):
        for test, attempts in result["off_loopback"].items():
            print(f"  OFF LOOPBACK ({result['label']}): {test}: {', '.join(attempts[:3])}")
            failed = True

    for entry in stale(stock, deselected + known):
        print(f"  listed but not in urllib3's suite (stale entry): {entry}")

    print("\ndeselected by reason (urllib3_deselected.txt):")
    for section in deselected:
        print(f"  {len(section.tests):4d} [{section.category}] {section.reason}")
    print(f"         and the tests marked requires_network (-m '{OFF_LOOPBACK_MARKER}')")
    print("known differences still to fix (urllib3_known.txt):")
    for section in known:
        size = f"{len(section.tests):4d}" if section.tests else "   *"
        print(f"  {size} [{section.category}] {section.reason}")
    print("\nurllib3_suite: " + ("FAILED" if failed else "passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
