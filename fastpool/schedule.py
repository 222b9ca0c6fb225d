"""A sans-IO crawl scheduler: which queued request may start now, fairly across hosts.

:class:`HostScheduler` holds the requests waiting to start and decides which one may start
*now* under four controls: a cap on requests in flight per host (``per_host``), a minimum time
between two starts to one host (``delay``, politeness), a global rate (``rate`` requests a
second, a token bucket of ``burst``) and a cap on requests in flight overall
(``max_in_flight``, backpressure). Hosts take turns (round robin), so a host with 10,000 URLs
does not starve the others, and ``max_hosts`` can bound how many hosts take turns at once (the
others wait their turn, first come first served), to keep a crawl within as many connection
pools as it keeps.

It does no I/O, never blocks and never sleeps: the caller asks :meth:`HostScheduler.pop` for
the next request, reports each one finished with :meth:`HostScheduler.done`, and when ``pop()``
has nothing, :meth:`HostScheduler.next_ready` tells until when to wait (or that only a
``done()`` or ``push()`` can change things). Time comes from the ``clock`` it is given
(``time.monotonic`` by default), so one scheduler serves threads (under one lock) and a
single-thread event loop alike, and tests run on a fake clock. It is not thread-safe itself.

:meth:`HostScheduler.push_first` queues a request to start before those ``push()`` queued (the
map's next hop of a redirect, or a retry whose wait is over): it goes ahead of its host's
requests queued with ``push()``, behind those of its host pushed first before it, and a host
holding requests pushed first takes its turns before the hosts holding none, in the order they
became ready (one already waiting in the round robin moves over). Every limit still holds: such
a host at its cap goes first once ``done()`` frees it, one waiting out its delay once the delay
ends, and under ``max_hosts`` such hosts waiting for a turn are let in first. Once its requests
pushed first have all started, the host takes its turns in the round robin again, at its back.

Every operation is O(1) or O(log hosts), but for ``push_first()`` moving a host already waiting
in the round robin or for a turn, O(hosts waiting there): hosts that can start now wait in a
round-robin deque (those holding requests pushed first in a deque of their own, served first),
hosts waiting for their delay in a heap ordered by the time it ends, hosts at their cap or with
nothing queued are in neither, and are put back by ``done()`` or ``push()``.

The class is a compiled core with a pure-Python twin, as the other hot cores are
(``fastpool._schedule``); both behave the same, down to each call to the clock.
"""

from ._schedule import HostScheduler

__all__ = ("HostScheduler",)
