"""Helpers for the map attack suite (``test_hostile_map.py``): the same conversation with a
:class:`~dummyserver.hostile.HostileServer` through ``fastpool.Session.get`` one request at a
time and through ``fastpool.Session.map``, each on a fresh Session, reduced to outcomes that
compare exactly: ``(status, reason, headers, body, url, history)`` or ``("error", class)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import fastpool

#: Every request carries a timeout, so a client that waits for a stalled server ends.
TIMEOUT = 5.0


#: The CA bundle of TLS servers, for every Session made here (set by a test, reset after).
VERIFY: dict[str, Any] = {"verify": True}


def fresh_session(**options: Any) -> fastpool.Session:
    session = fastpool.Session(**options)
    session.trust_env = False  # no proxy or CA variables from the environment
    session.verify = VERIFY["verify"]
    return session


def outcome(result: Any) -> tuple[Any, ...]:
    """What a caller sees of a Response or an exception, comparably."""
    if isinstance(result, BaseException):
        return ("error", type(result).__name__)
    headers = tuple(sorted((k.lower(), v) for k, v in result.headers.items() if k != "Date"))
    return (
        result.status_code,
        result.reason,
        headers,
        result.content,
        result.url,
        tuple((r.status_code, r.url) for r in result.history),
    )


def of(result: Any) -> tuple[Any, ...]:
    """The outcome of a map Result (exactly one of response and error is set)."""
    assert (result.response is None) != (result.error is None), result
    return outcome(result.error if result.error is not None else result.response)


def in_use(session: fastpool.Session) -> int:
    """Connections the Session's pools count as checked out."""
    return int(session.pool_stats().total.in_use)


def single(base: str, paths: Sequence[str], **kwargs: Any) -> list[tuple[Any, ...]]:
    """``paths`` through ``Session.get``, one after another on one fresh Session."""
    kwargs.setdefault("timeout", TIMEOUT)
    out = []
    with fresh_session() as session:
        for path in paths:
            try:
                out.append(outcome(session.get(base + path, **kwargs)))
            except Exception as e:  # noqa: BLE001 - the outcome is the comparison
                out.append(outcome(e))
        assert in_use(session) == 0
    return out


def mapped(
    base: str, paths: Sequence[str], then_get: bool = False, **kwargs: Any
) -> list[tuple[Any, ...]]:
    """``paths`` through ``Session.map``, one map per path on one fresh Session (the same
    conversation on the same kept-alive connections); ``then_get``: the last path through
    ``Session.get`` instead (a connection map gave back serves a plain request)."""
    kwargs.setdefault("timeout", TIMEOUT)
    out = []
    with fresh_session() as session:
        for i, path in enumerate(paths):
            if then_get and i == len(paths) - 1:
                try:
                    out.append(outcome(session.get(base + path, **kwargs)))
                except Exception as e:  # noqa: BLE001
                    out.append(outcome(e))
                continue
            (result,) = list(session.map([base + path], **kwargs))
            out.append(of(result))
        assert in_use(session) == 0
    return out


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))
