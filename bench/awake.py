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
from collections.abc import Iterator

_SPIN = (
    "import os\nos.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\nwhile True:\n    pass\n"
)


def available() -> bool:
    """Whether this platform has ``SCHED_IDLE`` (Linux)."""
    return hasattr(os, "SCHED_IDLE") and hasattr(os, "sched_setscheduler")


@contextlib.contextmanager
def cpus_kept_awake(enabled: bool = True) -> Iterator[list[int]]:
    """Run one ``SCHED_IDLE`` busy loop per CPU for the ``with`` block, which gets their pids
    (none if not ``enabled``); raises RuntimeError where SCHED_IDLE does not exist."""
    if not enabled:
        yield []
        return
    if not available():
        raise RuntimeError("keeping CPUs awake needs SCHED_IDLE (Linux)")
    spinners = [subprocess.Popen([sys.executable, "-c", _SPIN]) for _ in range(os.cpu_count() or 1)]
    try:
        yield [spinner.pid for spinner in spinners]
    finally:
        for spinner in spinners:
            spinner.kill()
        for spinner in spinners:
            spinner.wait()
