"""Keep every CPU awake while a benchmark runs: one ``SCHED_IDLE`` busy loop per CPU.

Why: on this project's machines (virtual, 2 vCPUs) an idle vCPU halts, and waking it for the
next packet costs the hypervisor tens of microseconds. A keep-alive GET on loopback wakes
nginx's CPU and then the client's once each, so every client pays the same fixed wait on top
of its own work: measured with a raw socket, 70 µs a request with idle CPUs against 41 µs with
them kept awake. That wait is no property of any client and shrinks every ratio between
clients; the day's ratios moved with it (whatever else the machine was doing set it).

A ``SCHED_IDLE`` task runs only when nothing else wants the CPU, and any other task preempts it
at once, so the client and nginx run as before; only the halts are gone (what the
``idle=poll`` kernel parameter or disabling deep C-states does on real hardware). Linux only.

    with cpus_kept_awake():
        ...  # measure
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator

# The child puts itself in the idle class first; the loop checks now and then that its parent
# lives: a benchmark killed outright (no finally) must not leave busy loops behind to turn
# every later run into an awake one.
_SPIN = (
    "import os, sys\n"
    "os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\n"
    "parent = int(sys.argv[1])\n"
    "while os.getppid() == parent:\n"
    "    for _ in range(1_000_000):\n"
    "        pass\n"
)
_START_SECONDS = 10.0


def available() -> bool:
    """Whether this platform has ``SCHED_IDLE`` (Linux)."""
    return hasattr(os, "SCHED_IDLE") and hasattr(os, "sched_setscheduler")


def _cpus() -> int:
    """The CPUs this process may run on (its affinity), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@contextlib.contextmanager
def cpus_kept_awake(enabled: bool = True) -> Iterator[list[int]]:
    """Run one ``SCHED_IDLE`` busy loop per CPU for the ``with`` block, which gets their pids
    (none if not ``enabled``); raises RuntimeError where SCHED_IDLE does not exist."""
    if not enabled:
        yield []
        return
    if not available():
        raise RuntimeError("keeping CPUs awake needs SCHED_IDLE (Linux)")
    spinners: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(_cpus()):
            spinners.append(subprocess.Popen([sys.executable, "-c", _SPIN, str(os.getpid())]))
        # Measure only once every loop runs in the idle class (its interpreter starts at
        # normal priority, briefly).
        deadline = time.monotonic() + _START_SECONDS
        while not all(os.sched_getscheduler(s.pid) == os.SCHED_IDLE for s in spinners):
            if time.monotonic() > deadline or any(s.poll() is not None for s in spinners):
                raise RuntimeError("the SCHED_IDLE busy loops did not start")
            time.sleep(0.01)
        yield [spinner.pid for spinner in spinners]
    finally:
        for spinner in spinners:
            spinner.kill()
        for spinner in spinners:
            spinner.wait()
