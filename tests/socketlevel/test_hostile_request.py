"""Attack suite (issue 12), request side: CR, LF and NUL smuggled into a header name or value,
the URL or the method. Whatever the client does, the server must never see a request split in
two or a header line the caller did not ask for; fastpool refuses before sending wherever stock
refuses, and also where stock sends bytes that no server should have to parse (NUL in a value,
a space in a name)."""

from __future__ import annotations

import pytest
from dummyserver.hostile import answer_each, response
from hostile_clients import FASTPOOL_KINDS, GET, PAIRS, Call, both, converse

OK = response(b"ok")
REFUSED = {("error", "invalid-request"), ("error", "header")}


def _calls_header(name: str | bytes, value: str | bytes) -> Call:
    return Call("GET", "/", {"headers": {name: value}})


# name -> (the call, what fastpool does: "refuse" before sending, or "encode" and send)
CASES: dict[str, tuple[Call, str]] = {
    "value-crlf": (_calls_header("X-A", "a\r\nX-Injected: 1"), "refuse"),
    "value-lf": (_calls_header("X-A", "a\nX-Injected: 1"), "refuse"),
    "value-cr": (_calls_header("X-A", "a\rX-Injected: 1"), "refuse"),
    "value-trailing-crlf": (_calls_header("X-A", "a\r\n"), "refuse"),
    "value-bytes-crlf": (_calls_header("X-A", b"a\r\nX-Injected: 1"), "refuse"),
    # obs-fold in a request: urllib3 sends it; requests and fastpool refuse it
    "value-fold": (_calls_header("X-A", "a\r\n X-Injected: 1"), "refuse"),
    # stock sends a NUL byte in a value (http.client only checks CR/LF); fastpool refuses it,
    # as RFC 9110 section 5.5 says a recipient must reject or replace it
    "value-nul": (_calls_header("X-A", "a\x00X-Injected: 1"), "refuse"),
    "name-crlf": (_calls_header("X-A\r\nX-Injected", "1"), "refuse"),
    "name-lf": (_calls_header("X-A\nX-Injected", "1"), "refuse"),
    "name-colon-crlf": (_calls_header("X-A: 1\r\nX-Injected", "1"), "refuse"),
    # stock sends "X A: 1", a header no server parses the same way; fastpool refuses it
    "name-space": (_calls_header("X A", "1"), "refuse"),
    "name-nul": (_calls_header("X\x00A", "1"), "refuse"),
    "method-crlf": (Call("GET / HTTP/1.1\r\nX-Injected: 1\r\n\r\nGET", "/"), "refuse"),
    "method-space": (Call("GET /admin", "/"), "refuse"),
    "method-nul": (Call("GE\x00T", "/"), "refuse"),
    "method-lf": (Call("GET\n", "/"), "refuse"),
    # in the URL, every client percent-encodes: one request, no extra header line
    "url-crlf-path": (GET("/a\r\nX-Injected: 1\r\n"), "encode"),
    "url-request-in-path": (GET("/a HTTP/1.1\r\nX-Injected: 1\r\n\r\nGET /b"), "encode"),
    "url-lf-query": (GET("/?q=1\nX-Injected: 1"), "encode"),
    "url-nul": (GET("/a\x00b"), "encode"),
}


def _request_heads(raw: bytes) -> list[list[bytes]]:
    """The request heads in what one connection received, each as its lines."""
    heads = []
    for block in raw.split(b"\r\n\r\n"):
        lines = block.split(b"\r\n")
        if lines and lines[0].split(b" ")[-1].startswith(b"HTTP/1"):
            heads.append(lines)
    return heads


def _assert_no_split(server, verdict, nul_free: bool) -> None:  # type: ignore[no-untyped-def]
    """The server saw exactly one request per request answered, and no injected line (and,
    with ``nul_free``, no NUL byte: stock sends one in a value, fastpool never does)."""
    heads = [head for raw in server.received for head in _request_heads(bytes(raw))]
    answered = sum(1 for outcome in verdict.outcomes if outcome[0] != "error")
    assert len(heads) == answered == len(server.requests), heads
    for lines in heads:
        assert not any(line.lower().startswith(b"x-injected") for line in lines), lines
        assert not nul_free or all(b"\x00" not in line for line in lines), lines


@pytest.mark.parametrize("kind", FASTPOOL_KINDS)
@pytest.mark.parametrize("case", list(CASES))
def test_injection_never_splits_a_request(hostile, kind: str, case: str) -> None:
    call, expected = CASES[case]
    server = hostile(answer_each(OK))
    calls = [call, GET("/next")]
    stock = converse(PAIRS[kind], server, calls)
    _assert_no_split(server, stock, nul_free=False)
    ours = converse(kind, server, calls)
    _assert_no_split(server, ours, nul_free=True)
    # the client is still good for an honest request afterwards
    assert ours.outcomes[1][::2] == stock.outcomes[1][::2] == (200, b"ok")
    if expected == "refuse":
        assert ours.outcomes[0] in REFUSED, ours.outcomes[0]
        assert [head.split(b" ")[1] for head in server.requests] == [b"/next"]
    else:
        assert ours.outcomes[0][0] == stock.outcomes[0][0] == 200
        target = server.requests[0].split(b" ")[1]
        assert all(32 < byte < 127 for byte in target), target  # encoded, as stock does
    if stock.outcomes[0] in REFUSED:  # never laxer than stock
        assert ours.outcomes[0] in REFUSED


@pytest.mark.parametrize("kind", FASTPOOL_KINDS)
@pytest.mark.parametrize("case", ["value-crlf", "value-nul", "name-space", "method-nul"])
def test_a_request_refused_before_sending_costs_no_connection(hostile, kind, case) -> None:
    """A request refused before a byte is written leaves the pool as it was: stock validates
    before it dials (or keeps the connection), so the next request reuses one connection.
    fastpool today dials, refuses to write, then throws the unused connection away: the
    next request dials again (found by this suite; not a leak, a wasted dial)."""
    call, _ = CASES[case]
    server = hostile(answer_each(OK))
    stock, ours = both(kind, server, [call, GET("/next")])
    assert stock.connections == 1
    assert ours.connections <= stock.connections
