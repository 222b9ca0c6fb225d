"""Lanes for the map tests: one that records what it took, one that takes nothing."""

from __future__ import annotations

from typing import Any

import pytest

import fastpool._lane
import fastpool.poolmanager


class Counted(fastpool._lane.Lane):  # type: ignore[misc, valid-type]
    """The map's Lane, recording whether each begin and each result (its finish) took its
    hop (True) or left it to the general steps (False)."""

    begun: list[bool]
    finished: list[bool]

    def begin(self, job: Any, loop: Any = None) -> Any:
        outcome = super().begin(job, loop)
        self.begun.append(outcome is not None)
        return outcome

    def result(self, job: Any, exchange: Any) -> Any:
        outcome = super().result(job, exchange)
        self.finished.append(outcome is not None)
        return outcome


class Off(fastpool._lane.Lane):  # type: ignore[misc, valid-type]
    """A Lane that takes nothing: every hop takes the general steps."""

    def begin(self, job: Any, loop: Any = None) -> Any:
        return None

    def result(self, job: Any, exchange: Any) -> Any:
        return None


def count_lanes(monkeypatch: pytest.MonkeyPatch) -> type[Counted]:
    """Every map's Lane a Counted from now on, its records on the class (empty)."""
    monkeypatch.setattr(Counted, "begun", [], raising=False)
    monkeypatch.setattr(Counted, "finished", [], raising=False)
    monkeypatch.setattr(fastpool.poolmanager, "Lane", Counted)
    return Counted
