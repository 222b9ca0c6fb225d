"""bench/awake.py: the busy loops run at SCHED_IDLE, one per CPU, and are gone afterwards."""

from __future__ import annotations

import os

import pytest
from awake import available, cpus_kept_awake


@pytest.mark.skipif(not available(), reason="SCHED_IDLE is Linux-only")
def test_one_idle_class_spinner_per_cpu() -> None:
    with cpus_kept_awake() as pids:
        assert len(pids) == len(os.sched_getaffinity(0))
        # set before the interpreter starts: at once, no waiting
        assert all(os.sched_getscheduler(pid) == os.SCHED_IDLE for pid in pids)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.sched_getscheduler(pid)  # killed and reaped


def test_disabled_starts_nothing() -> None:
    with cpus_kept_awake(enabled=False) as pids:
        assert pids == []
