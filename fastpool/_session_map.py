"""``Session.map``'s driver (see :mod:`fastpool.multi`): ``Session.request``'s steps, hop by hop.

An item is prepared as ``Session.request`` prepares it (``prepare_request`` and
``merge_environment_settings``); a PreparedRequest as ``Session.send`` takes it. Where a tool
or a subclass replaced ``Session.request`` (or ``Session.get``, for a URL, or
``resolve_redirects``), the item goes whole through that entry point, in this thread. Each
other hop runs ``Session.send`` with ``allow_redirects=False``:
through the loop (``Session._loop_begin`` then ``Session._send_hop`` with the exchange), or
whole in this thread where the loop cannot take it (a patched ``send``, a foreign adapter).
A redirect is followed as ``send`` follows it: requests' own ``resolve_redirects`` builds the
next request (``Response.next``: method, auth, cookies, body rewound, proxies), and the history
and the redirect limit are kept as requests keeps them. The plainest answer of a hop the lane
began is finished in one call (:meth:`SessionDriver.plain_result`), with ``Session.send``'s
own steps for it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from requests.auth import AuthBase
from requests.exceptions import (
    ChunkedEncodingError,
    ConnectionError,
    ContentDecodingError,
    Timeout,
    TooManyRedirects,
)
from requests.exceptions import SSLError as RequestsSSLError
from requests.models import PreparedRequest, Request, Response
from requests.sessions import Session as _RequestsSession
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError, SSLError
from urllib3.util.retry import Retry

from . import exceptions
from ._lane import hand_back, lane_target, plain_answer
from ._loop import Exchange, Loop
from .multi import Result, host_of, narrow_timeout
from .response import HTTPResponse as EngineResponse

__all__ = ("DeadlineExceeded", "SessionDriver")

#: requests' Response.iter_content turns these urllib3 errors of a body read into its own
_BODY_ERRORS = (
    (ProtocolError, ChunkedEncodingError),
    (DecodeError, ContentDecodingError),
    (ReadTimeoutError, ConnectionError),
    (SSLError, RequestsSSLError),
)


class DeadlineExceeded(exceptions.DeadlineExceeded, Timeout):
    """:class:`fastpool.DeadlineExceeded` as ``Session.map`` yields it: a
    :class:`requests.exceptions.Timeout` too, with its ``request``."""


def _auth_round_trip(prep: PreparedRequest) -> bool:
    """Whether an auth handler registered a response hook on ``prep`` (to answer a 401)."""
    hooks = prep.hooks.get("response") if prep.hooks else None
    if not hooks:  # (most requests: no generator to make)
        return False
    return any(isinstance(getattr(h, "__self__", None), AuthBase) for h in hooks)


class _Job:
    """One item of the map: its hops so far and the keyword arguments of ``send``."""

    __slots__ = ("given", "hist", "host", "kwargs", "prep", "retries", "whole")

    def __init__(self, given: Any, url: Any) -> None:
        self.given = given
        #: "request", "get" or "send": the Session's entry point it goes whole through (a
        #: replaced one, or one whose redirects a replaced resolve_redirects follows)
        self.whole: str | None = None
        #: prepared when it starts, as Session.request prepares it when called (the jar's
        #: cookies, the auth and the hooks of that moment)
        self.prep: PreparedRequest | None = None
        self.kwargs: dict[str, Any] = {}
        #: the responses so far, as resolve_redirects keeps them; None: redirects not followed
        self.hist: list[Response] | None = []
        self.host = host_of(url)
        self.retries: Any = None  # urllib3's Retry state once a hop is sent again


class SessionDriver:
    """:class:`fastpool.multi.Driver` for a :class:`fastpool.Session`."""

    def __init__(
        self, session: Any, timeout: Any, stream: bool | None, allow_redirects: bool
    ) -> None:
        self.session = session
        self.timeout = timeout
        self.stream = stream
        self.allow_redirects = allow_redirects

    def new(self, given: Any) -> _Job:
        url = given.url if isinstance(given, (Request, PreparedRequest)) else given
        job = _Job(given, url)
        job.whole = self.session._map_entry(given)
        if not self.allow_redirects:
            job.hist = None
        return job

    def _prepare(self, job: _Job) -> PreparedRequest:
        session = self.session
        given = job.given
        if isinstance(given, PreparedRequest):
            # sent as send(prepared) sends it: the Session's stream, verify, cert and proxies
            # (the environment's only through trust_env's proxy resolution), not request()'s
            # merge of the environment's settings
            job.kwargs = {"timeout": self.timeout}
            if self.stream is not None:
                job.kwargs["stream"] = self.stream
            job.prep = given
            return given
        prep: PreparedRequest
        if type(given) is str:
            prep = session._prepare_get(given)
        else:
            request = given if isinstance(given, Request) else Request("GET", given)
            prep = session.prepare_request(request)
        settings = session.merge_environment_settings(prep.url, {}, self.stream, None, None)
        job.kwargs = {"timeout": self.timeout, **settings}
        job.prep = prep
        return prep

    def begin(
        self, job: _Job, loop: Loop, wait: bool = False, limit: float | None = None
    ) -> Exchange | bool | None:
        if job.whole is not None:
            return False  # through the replaced request() or get(), whole (send)
        prep = job.prep if job.prep is not None else self._prepare(job)
        if _auth_round_trip(prep):
            # An auth handler that answers a 401 from a response hook (digest, NTLM, Kerberos)
            # keeps its state per thread, from its call at preparation to its hook: hops
            # prepared and answered interleaved in this one thread would break each other's.
            # Such a hop is sent whole (send), once nothing else is in flight, and nothing
            # else starts meanwhile: prepared, then answered, before the next is prepared.
            return False
        exchange = self.session._loop_begin(prep, job.kwargs, wait, limit, loop)
        if isinstance(exchange, Exchange):
            exchange.retries = job.retries  # None: the adapter's max_retries
        return exchange  # type: ignore[no-any-return]

    def retry(self, job: _Job, retries: Any) -> None:
        job.retries = retries

    def send(self, job: _Job, exchange: Exchange | None, remaining: float | None = None) -> Any:
        try:
            if job.whole is not None:
                return self._whole(job, remaining)
            prep = job.prep if job.prep is not None else self._prepare(job)
            kwargs = dict(job.kwargs, allow_redirects=False)
            if remaining is not None:
                kwargs["timeout"] = narrow_timeout(kwargs.get("timeout"), remaining)
            if exchange is None:
                return self.session.send(prep, **kwargs)  # a patched send sees it
            return self.session._send_hop(prep, kwargs, exchange)
        except Exception as e:  # noqa: BLE001 - the request's outcome, yielded
            return e

    def _whole(self, job: _Job, remaining: float | None) -> Any:
        """The item through the Session's replaced ``get`` or ``request``, as one request
        would call it (its redirects followed there)."""
        timeout = self.timeout
        if remaining is not None:
            timeout = narrow_timeout(timeout, remaining)
        settings: dict[str, Any] = {"timeout": timeout, "allow_redirects": self.allow_redirects}
        if self.stream is not None:  # (None: each entry point's default, the Session's)
            settings["stream"] = self.stream
        given = job.given
        if job.whole == "send":
            return self.session.send(given, **settings)
        if job.whole == "get":
            return self.session.get(given, **settings)
        if not isinstance(given, Request):
            return self.session.request("GET", given, **settings)
        return self.session.request(
            given.method,
            given.url,
            params=given.params,
            data=given.data,
            headers=given.headers,
            cookies=given.cookies,
            files=given.files,
            auth=given.auth,
            hooks=given.hooks,
            json=given.json,
            **settings,
        )

    def plain_result(self, job: _Job, exchange: Exchange) -> Result | None:
        """The job's result for the plainest answer the loop read (:meth:`send` then
        :meth:`after` for a hop begun on the adapter's fast route), in one call: the answer
        taken as ``fastpool._lane.plain_answer`` finds it, the raw response as it stands once
        read, ``Session.send``'s own steps for a response nobody hooked (``_fast_response``,
        elapsed, the jar's cookies), then the connection handed back (``hand_back``) and the
        content set. None: nothing was done, :meth:`send` finishes it (a streamed hop, a
        response hook, a target the pool would rewrite, a Retry that is not one yet or has a
        history, a Session whose redirect steps are not requests' own, and every answer
        ``plain_answer`` leaves: a redirect, a Content-Encoding, a status to retry, a step a
        tool patched...). Never raises: an error is the result, as :meth:`send` makes it
        (the connection then left to the map, which closes it, as the dropped response of the
        general steps would)."""
        caller = exchange.caller
        prep = job.prep
        if caller is None or not caller[3] or prep is None or job.whole is not None:
            return None  # (caller[3]: the adapter's fast route, _fast_response's)
        target = caller[1]
        hooks = prep.hooks
        session = self.session
        cls = type(session)
        if (
            not lane_target(target)  # (as the pool's _target leaves it: raw.url)
            or (hooks and hooks.get("response"))
            or job.kwargs.get("stream", session.stream)
            or cls.resolve_redirects is not _RequestsSession.resolve_redirects
            or cls.get_redirect_target is not _RequestsSession.get_redirect_target
        ):
            return None
        adapter = caller[0]
        retries = adapter.max_retries if exchange.retries is None else exchange.retries
        conn = exchange.conn
        if conn is None or type(retries) is not Retry:
            return None
        answer = None
        try:
            answer = plain_answer(exchange, retries)
            if answer is None:
                return None
            head, body = answer
            raw = EngineResponse._read_to_its_end(
                head, exchange.tag, conn._loop_queue, prep.method, target, retries, len(body)
            )
            # Session._send_hop's steps for this response, in their order; the connection
            # goes back after them, as the content's read gives it back after them
            response = adapter._fast_response(prep, raw)
            response.elapsed = timedelta(seconds=exchange.head_at - exchange.started)
            session._extract_cookies(prep, raw)
            hand_back(exchange, head)
        except Exception as e:  # noqa: BLE001 - the request's outcome, as send's would be
            if answer is not None and exchange.conn is not None:
                exchange.tag.num_requests += 1  # (urlopen counted it before this step)
            return self.after(job, e)
        response._content = body or b""  # private (and the next): fastpool._thirdparty
        response._content_consumed = True
        result = self.after(job, response)
        # (never a next hop: a redirect status is not taken, and nothing set .next; None
        # would tell the map that nothing was done, and send would finish it again)
        assert result is not None
        return result

    decode_body: bool | None = True  # as iter_content reads: decoded
    plain_begin = None  # every hop begins through the Session's own steps (_loop_begin)
    plain_new = None  # every item is prepared through the Session's own steps (new)

    def body_of(self, response: Response) -> Any:
        """``Response.raw``: iter_content reads it too."""
        return response.raw

    def body_failed(self, error: Exception) -> Exception:
        """iter_content's exception for a urllib3 error of a body read."""
        for urllib3_error, requests_error in _BODY_ERRORS:
            if isinstance(error, urllib3_error):
                return requests_error(error)
        return error

    def body_read(self, response: Response) -> None:
        """The content was consumed: ``.content`` raises, as after ``iter_content``."""
        response._content_consumed = True

    def expired(self, job: _Job, deadline: float) -> Result:
        prep = job.prep
        what = f"{prep.method} {prep.url}" if prep is not None else repr(job.given)
        error = DeadlineExceeded(
            f"{what}: not done within its deadline of {deadline:g} s", request=prep
        )
        return Result(job.given, None, error)

    def after(self, job: _Job, outcome: Any) -> Result | None:
        if isinstance(outcome, BaseException):
            return Result(job.given, None, outcome)
        if job.whole is not None:
            return Result(job.given, outcome, None)  # its redirects were followed there
        job.retries = None  # a redirect's hop starts afresh, as send's does
        response: Response = outcome
        hist = job.hist
        if hist is None or response.next is None:
            if hist:
                # send's ending: the first response first, the last one returned
                hist.append(response)
                response = hist.pop()
                response.history = hist
            return Result(job.given, response, None)
        # resolve_redirects' bookkeeping, hop by hop: the history as it keeps it, its limit,
        # and the next request it built (Response.next).
        session = self.session
        nxt = response.next
        if not hist:
            # send(allow_redirects=True) sets no .next on the first response (resolve_redirects'
            # hops, sent with allow_redirects=False, keep theirs)
            response._next = None
        hist.append(response)
        response.history = hist[1:]
        if len(response.history) >= session.max_redirects:
            error = TooManyRedirects(
                f"Exceeded {session.max_redirects} redirects.", response=response
            )
            return Result(job.given, None, error)
        assert nxt is not None
        job.kwargs["proxies"] = session.rebuild_proxies(nxt, job.kwargs.get("proxies"))
        job.prep = nxt
        job.host = host_of(nxt.url)
        return None
