"""The two short ways of ``Session.map`` switched on or off, for the differential tests that
run the same maps both ways (``test_session_map_lane.py``: the hop begun at its pool in one
call; ``test_session_map_finish.py``: the plainest answer finished in one call)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import fastpool
import fastpool._lane
import fastpool.adapters
from fastpool._session_map import SessionDriver

_PLAIN_RESULT = SessionDriver.plain_result

#: the connection's steps a request runs, from its dial to its answer's end, written out here
#: (not read from ``fastpool.connection.REQUEST_STEPS``, which the map's short ways check: a
#: step left out there fails the tests that patch each of these on a connection)
CONNECTION_STEPS = (
    "request", "render_request", "connect", "read_response_head", "take_head_ahead",
    "answer_is_whole", "take_rest",
)  # fmt: skip


@contextlib.contextmanager
def lane(on: bool, taken: list[bool] | None = None) -> Iterator[None]:
    """``begin_on`` as it is (each outcome recorded in ``taken``: True when it took the hop),
    or switched off (every hop takes the general steps)."""
    real = fastpool._lane.begin_on

    def counted(*args: Any) -> Any:
        outcome = real(*args)
        if taken is not None:
            taken.append(outcome is not None)
        return outcome

    saved = fastpool.adapters._begin_on
    fastpool.adapters._begin_on = counted if on else (lambda *args: None)
    try:
        yield
    finally:
        fastpool.adapters._begin_on = saved


@contextlib.contextmanager
def finishing(on: bool, taken: list[bool] | None = None) -> Iterator[None]:
    """``SessionDriver.plain_result`` as it is (each outcome in ``taken``: True when it
    finished the hop), or switched off (every answer takes the general steps)."""

    def counted(self: SessionDriver, job: Any, exchange: Any) -> Any:
        outcome = _PLAIN_RESULT(self, job, exchange)
        if taken is not None:
            taken.append(outcome is not None)
        return outcome

    SessionDriver.plain_result = counted if on else (lambda self, job, exchange: None)  # type: ignore[method-assign]
    try:
        yield
    finally:
        SessionDriver.plain_result = _PLAIN_RESULT  # type: ignore[method-assign]


def comparable_body(body: Any) -> tuple[Any, set[str]]:
    """The body to compare, and the header names not to: a JSON body without the server's
    connection counter (which differs from run to run, and with its digits the length)."""
    skip = {"date"}
    with contextlib.suppress(ValueError, TypeError):
        data = json.loads(body)
        if isinstance(data, dict) and "connection" in data:
            del data["connection"]
            skip.add("content-length")
            return data, skip
    return body, skip


def counters(session: fastpool.Session) -> list[tuple[Any, ...]]:
    """Each pool's origin and counters: requests, connections, idle and in use, dropped."""
    return sorted(
        (
            pool.scheme,
            pool.host,
            pool.port,
            pool.num_requests,
            pool.num_connections,
            pool.pool.idle,
            pool.pool.in_use,
            pool.dropped_stale,
            pool.expired_idle,
        )
        for adapter in {id(a): a for a in session.adapters.values()}.values()
        for pool in adapter.poolmanager.pools.values()
    )


def run_maps(
    make: Callable[[], fastpool.Session],
    rounds: list[list[Any]],
    seen: Callable[[Any], Any],
    pause: float = 0.0,
    **options: Any,
) -> tuple[list[list[Any]], list[Any], list[Any]]:
    """A map of each round on one Session from ``make`` (``pause`` seconds between them):
    what ``seen`` makes of each result (sorted), the Session's cookies, its pools' counters."""
    outcomes = []
    with make() as session:
        for n, round_items in enumerate(rounds):
            if n:
                time.sleep(pause)
            results = list(session.map(round_items, **options))
            outcomes.append(sorted((seen(r) for r in results), key=repr))
        cookies = sorted((c.domain, c.path, c.name, c.value) for c in session.cookies)
        return outcomes, cookies, counters(session)
