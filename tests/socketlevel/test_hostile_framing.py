"""Attack suite (issue 12), response side: framing and smuggling (CL+TE, duplicate and
malformed Content-Length, chunk sizes, bare LF/CR, obs-fold, NUL, odd status lines, 1xx floods)
and resource limits (huge heads, many headers, trickling and stalling servers, decompression
bombs, encoding chains).

Each response is sent by the server on the first connection; every later request (on that
connection or a new one) gets ``own``. The same conversation runs through fastpool and stock:
the first outcome must be stock's (``SAME``), or a clean refusal where fastpool is deliberately
stricter (``REFUSE``, each with its reason), or either (``STOCK_OR_REFUSE``); and the second
request always gets its own answer, never the rest of a hostile response.
"""

from __future__ import annotations

import gzip
import re
import time
import tracemalloc
import zlib
from typing import Callable

import pytest
import urllib3
from dummyserver.hostile import HostileConn, answer_each, response
from hostile_clients import FASTPOOL_KINDS, GET, PAIRS, Call, both, converse

OWN = response(b"own")
REFUSALS = {("error", "protocol"), ("error", "body"), ("error", "header")}


def _chain(n: int) -> bytes:
    data = b"abc"
    for _ in range(n):
        data = gzip.compress(data)
    encodings = ", ".join(["gzip"] * n)
    return response(data, headers=[f"Content-Encoding: {encodings}"])


def _head(*lines: str, body: str = "abc") -> bytes:
    """A raw response: ``lines`` (status line first) joined with CRLF, a blank line, ``body``."""
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode("latin-1")


CL3 = "Content-Length: 3"
TE = "Transfer-Encoding: chunked"
CHUNKED_ABC = "3\r\nabc\r\n0\r\n\r\n"
# "abc" gzip-coded, then chunked: the framing "Transfer-Encoding: gzip, chunked" announces
_GZIP_ABC = gzip.compress(b"abc", mtime=0)
_GZIPPED_CHUNKED = (b"%x\r\n%s\r\n0\r\n\r\n" % (len(_GZIP_ABC), _GZIP_ABC)).decode("latin-1")
S200 = "HTTP/1.1 200 OK"

# name -> raw response: fastpool's outcome is stock's (the same status, headers and body, or
# the same kind of error)
SAME: dict[str, bytes] = {
    # CL and TE together: chunked wins (RFC 9112 section 6.3), as in http.client
    "cl-then-te": _head(S200, "Content-Length: 5", TE, body=CHUNKED_ABC),
    "te-then-cl": _head(S200, TE, "Content-Length: 5", body=CHUNKED_ABC),
    "te-twice": _head(S200, TE, TE, body=CHUNKED_ABC),
    "cl-twice-same": _head(S200, CL3, CL3),
    "cl-twice-conflicting": _head(S200, CL3, "Content-Length: 4", body="abcd"),
    "cl-list-same": _head(S200, "Content-Length: 3, 3"),
    "cl-list-conflicting": _head(S200, "Content-Length: 3, 4", body="abcd"),
    "cl-padded": _head(S200, "Content-Length:   3  "),
    "chunk-extension": _head(S200, TE, body="3;x=1\r\nabc\r\n0\r\n\r\n"),
    # issue 12 (4): whitespace before a chunk extension is BWS (RFC 9112 section 7.1.1)
    "chunk-extension-bws": _head(S200, TE, body="3 ;x=1\r\nabc\r\n0\r\n\r\n"),
    "chunk-bare-lf": _head(S200, TE, body="3\nabc\n0\n\n"),
    "chunk-trailers": _head(S200, TE, body="3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"),
    "chunk-longer-than-size": _head(S200, TE, body="2\r\nabc\r\n0\r\n\r\n"),
    "bare-lf-head": b"HTTP/1.1 200 OK\nContent-Length: 3\nX-A: b\n\nabc",
    "bare-lf-end": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\nabc",
    "obs-fold": _head(S200, "X-A: a", " b", CL3),
    "obs-fold-content-length": _head(S200, "Content-Length:", " 3"),
    "latin1-value": _head(S200, "X-A: caf\xe9", CL3),
    "http-1.0": _head("HTTP/1.0 200 OK", CL3),
    "http-1.0-keep-alive": _head("HTTP/1.0 200 OK", "Connection: keep-alive", CL3),
    # issue 12 (4): another HTTP/1 minor version is HTTP/1.1 (RFC 9112 section 2.3)
    "http-1.2": _head("HTTP/1.2 200 OK", CL3),
    "http-2": _head("HTTP/2 200 OK", CL3),
    "http-2.0": _head("HTTP/2.0 200 OK", CL3),
    "lowercase-http": _head("http/1.1 200 OK", CL3),
    "icy": _head("ICY 200 OK", CL3),
    "crlf-before-status": _head("\r\nHTTP/1.1 200 OK", CL3),
    "no-reason": _head("HTTP/1.1 200", CL3),
    "empty-reason": _head("HTTP/1.1 200 ", CL3),
    "reason-control": _head("HTTP/1.1 200 O\x01K", CL3),
    "reason-utf8": _head("HTTP/1.1 200 \xc3\xa9t\xc3\xa9", CL3),
    "status-4-digits": _head("HTTP/1.1 2000 OK", CL3),
    "status-2-digits": _head("HTTP/1.1 099 X", CL3),
    "status-600": _head("HTTP/1.1 600 Weird", CL3),
    "status-999": _head("HTTP/1.1 999 Weird", CL3),
    "interim-100-x5": b"HTTP/1.1 100 Continue\r\n\r\n" * 5 + _head(S200, CL3),
    "interim-100-headers": _head("HTTP/1.1 100 Continue", "X-I: 1", "", S200, CL3),
    "switching-protocols": _head("HTTP/1.1 101 Switching Protocols", "Upgrade: x", body=""),
    "encoding-chain-5": _chain(5),
    "encoding-chain-6": _chain(6),  # urllib3's limit: DecodeError
    "encoding-unknown": _head(S200, "Content-Encoding: foo", CL3),
    "encoding-bad-gzip": _head(S200, "Content-Encoding: gzip", CL3),
    # resource limits: http.client's 64 KiB a line and 100 headers
    "line-60k": _head(S200, "X-Big: " + "a" * 60_000, CL3),
    "line-70k": _head(S200, "X-Big: " + "a" * 70_000, CL3),
    "status-line-70k": _head("HTTP/1.1 200 " + "O" * 70_000, CL3),
    # issue 12 (4): 70 KB of head in 70 headers: stock takes it, fastpool refuses at 64 KiB
    "head-70-headers-of-1k": _head(S200, *[f"X-H{i}: {'a' * 1000}" for i in range(70)], CL3),
    "head-99-headers": _head(S200, *[f"X-H{i}: v" for i in range(98)], CL3),
    "head-101-headers": _head(S200, *[f"X-H{i}: v" for i in range(100)], CL3),
    "head-1000-headers": _head(S200, *[f"X-H{i}: v" for i in range(1000)], CL3),
    "trailers-2000": _head(S200, TE, body="3\r\nabc\r\n0\r\n" + "X-T: v\r\n" * 2000 + "\r\n"),
    "trailer-line-70k": _head(S200, TE, body="3\r\nabc\r\n0\r\nX-T: " + "a" * 70_000 + "\r\n\r\n"),
    "chunk-extension-70k": _head(S200, TE, body="3;x=" + "a" * 70_000 + "\r\nabc\r\n0\r\n\r\n"),
    "chunk-extension-5k": _head(S200, TE, body="3;x=" + "a" * 5_000 + "\r\nabc\r\n0\r\n\r\n"),
    "20000-chunks-of-1-byte": _head(S200, TE, body="1\r\na\r\n" * 20_000 + "0\r\n\r\n"),
    "cl-leading-zeros": _head(S200, "Content-Length: 003"),
    "cl-tabs": _head(S200, "Content-Length:\t3\t"),
    "te-uppercase": _head(S200, "Transfer-Encoding: CHUNKED", body=CHUNKED_ABC),
    "te-tab": _head(S200, "Transfer-Encoding:\tchunked", body=CHUNKED_ABC),
    "interim-with-a-body": _head(
        "HTTP/1.1 100 Continue", CL3, body="abc" + _head(S200, CL3).decode()
    ),
    "status-line-trailing-space": _head("HTTP/1.1 200 OK ", CL3),
    "connection-close-twice-framed": _head(
        S200, "Connection: close", "Connection: keep-alive", CL3
    ),
}

URLLIB3_VERSION = tuple(int(part) for part in urllib3.__version__.split(".")[:2])
# urllib3's fold pattern (2.8's connection._OBSOLETE_FOLD_RE): the fold and the OWS before it.
_FOLD = re.compile(r"(?:(?<![ \t])[ \t]+)?\r\n[ \t]+")


Outcome = tuple  # type: ignore[type-arg]


def _unfolded(outcome: Outcome) -> Outcome:
    status, headers, body = outcome
    # and stripped, as hostile_clients strips every value
    unfolded = tuple((name, _FOLD.sub(" ", value).strip(" \t")) for name, value in headers)
    return status, unfolded, body


def _refused(kind: str) -> Callable[[Outcome], Outcome]:
    """Stock's refusal where it refused already, else ``kind`` (what requests raises then)."""
    return lambda outcome: outcome if outcome[0] == "error" else ("error", kind)


# SAME cases where a newer urllib3 changed stock's answer to the one fastpool gives with any
# urllib3: case -> (that release, what turns an older stock's answer into the newer one).
# With an older urllib3 installed, the oracle is its answer, corrected as that release does.
STOCK_CHANGED_IN: dict[str, tuple[tuple[int, int], Callable[[Outcome], Outcome]]] = {
    # 2.6.0, CVE-2025-66418: at most 5 links in a Content-Encoding chain, then a DecodeError
    "encoding-chain-6": ((2, 6), _refused("decode")),
    # 2.8.0, urllib3 #1362: an obs-fold in a header value is replaced by a space
    "obs-fold": ((2, 8), _unfolded),
    "obs-fold-content-length": ((2, 8), _unfolded),
    # 2.8.0, GHSA-vxq7-64xx-v4gw: a chunk-size or trailer line over 64 KiB is a ProtocolError
    # in read_chunked() too, requests' path (urllib3's PoolManager refused it already)
    "trailer-line-70k": ((2, 8), _refused("body")),
    "chunk-extension-70k": ((2, 8), _refused("body")),
}

# Responses framed by the end of the connection: the server closes after them.
SAME_THEN_CLOSE: dict[str, bytes] = {
    "no-framing": _head(S200),
    "te-not-chunked": _head(S200, "Transfer-Encoding: gzip"),
    "http-1.0-no-length": _head("HTTP/1.0 200 OK"),
}

# Deliberately stricter than stock: each is a framing ambiguity a smuggling attack lives on,
# or bytes RFC 9110/9112 tell a recipient to reject. fastpool refuses the response (a
# ProtocolError, requests' ConnectionError/ChunkedEncodingError/InvalidHeader) and drops the
# connection; stock guesses.
REFUSE: dict[str, tuple[bytes, str]] = {
    "te-identity-with-cl": (
        _head(S200, "Transfer-Encoding: identity", CL3),
        "TE and CL together where TE does not end in chunked (RFC 9112 6.3 item 3)",
    ),
    "te-space-before-colon": (
        _head(S200, "Transfer-Encoding : chunked", body=CHUNKED_ABC),
        "whitespace before the colon (RFC 9112 5.1): stock reads a body that others dechunk",
    ),
    "cl-space-before-colon": (_head("HTTP/1.1 200 OK", "Content-Length : 3"), "RFC 9112 5.1"),
    "cl-negative": (_head(S200, "Content-Length: -1"), "invalid CL (RFC 9112 6.3 item 5)"),
    "cl-plus": (_head(S200, "Content-Length: +3"), "invalid CL (RFC 9112 6.3 item 5)"),
    "cl-hex": (_head(S200, "Content-Length: 0x3"), "invalid CL (RFC 9112 6.3 item 5)"),
    "cl-empty": (_head(S200, "Content-Length: "), "invalid CL (RFC 9112 6.3 item 5)"),
    "cl-trailing-junk": (_head(S200, "Content-Length: 3a"), "invalid CL (RFC 9112 6.3 item 5)"),
    # stock: an OverflowError escapes urllib3
    "cl-overflow": (_head(S200, "Content-Length: " + "9" * 26), "invalid CL"),
    "chunk-size-overflow": (_head(S200, TE, body="F" * 24 + "\r\nabc\r\n0\r\n\r\n"), "overflow"),
    "chunk-size-65-bits": (_head(S200, TE, body="10000000000000003\r\nabc\r\n"), "overflow"),
    "chunk-size-negative": (_head(S200, TE, body="-3\r\nabc\r\n0\r\n\r\n"), "not HEXDIG"),
    "chunk-size-0x": (_head(S200, TE, body="0x3\r\nabc\r\n0\r\n\r\n"), "not HEXDIG"),
    "chunk-without-crlf": (_head(S200, TE, body="3\r\nabcXX0\r\n\r\n"), "framing desync"),
    "bare-cr-in-head": (
        _head(S200, "X-A: b\rX-B: c", CL3),
        "a bare CR must be rejected or replaced (RFC 9112 2.2)",
    ),
    "nul-in-value": (_head(S200, "X-A: a\x00b", CL3), "NUL: reject (RFC 9110 5.5)"),
    "nul-in-name": (_head(S200, "X-\x00A: ab", CL3), "NUL: reject (RFC 9110 5.5)"),
    "space-first-header": (
        _head(S200, " X-A: b", CL3),
        "whitespace before the first header (RFC 9112 2.2: reject or consume)",
    ),
    "bare-cr-in-reason": (_head("HTTP/1.1 200 OK\rX-Evil: 1", CL3), "bare CR (RFC 9112 2.2)"),
    "tab-before-colon": (_head(S200, "Content-Length\t: 3"), "RFC 9112 5.1"),
    "te-gzip-then-chunked": (
        _head(S200, "Transfer-Encoding: gzip, chunked", body=_GZIPPED_CHUNKED),
        "a coding before chunked is not decoded: the body would be gzip's bytes",
    ),
    "te-gzip-line-then-chunked-line": (
        _head(S200, "Transfer-Encoding: gzip", TE, body=_GZIPPED_CHUNKED),
        "the same in two header lines (stock reads the first: no chunked framing)",
    ),
    "interim-100-x200": (
        b"HTTP/1.1 100 Continue\r\n\r\n" * 200 + _head(S200, CL3),
        "a flood of interim responses: at most 100 (MAX_INTERIM_RESPONSES)",
    ),
}

# Stock takes these, fastpool may take them as stock does or refuse them: malformed bytes
# without framing meaning, which RFC 9110/9112 let a recipient reject.
STOCK_OR_REFUSE: dict[str, bytes] = {
    "control-in-value": _head(S200, "X-A: a\x01b", CL3),
    "del-in-value": _head(S200, "X-A: a\x7fb", CL3),
    "empty-header-name": _head(S200, ": b", CL3),
    "header-without-colon": _head(S200, "X-A", CL3),
    "http-0.9-status-line": _head("HTTP/0.9 200 OK", CL3),
    "double-space-status-line": _head("HTTP/1.1  200 OK", CL3),
    "tab-in-status-line": _head("HTTP/1.1\t200 OK", CL3),
}


def _first_then_own(raw: bytes, close: bool = False):  # type: ignore[no-untyped-def]
    """Connection 1 answers its first request with ``raw`` (then closes, with ``close``);
    every other request gets ``own``."""

    def script(conn: HostileConn) -> None:
        if conn.read_request() is None:
            return
        conn.send(raw if conn.number == 1 else OWN)
        if close and conn.number == 1:
            return
        while conn.read_request() is not None:
            conn.send(OWN)

    return script


def _two(hostile, kind, raw, close=False, stock_closes=False):  # type: ignore[no-untyped-def]
    """The first outcomes of stock and of fastpool for ``/first`` answered with ``raw``; both
    clients' ``/second`` must get its own answer. ``stock_closes``: stock's server closes after
    ``raw`` (stock would read to the end of a keep-alive connection and wait for it), while
    fastpool's keeps the connection open, tempting it to reuse it."""
    outcomes = []
    for client, closing in ((PAIRS[kind], close or stock_closes), (kind, close)):
        server = hostile(_first_then_own(raw, closing))
        verdict = converse(client, server, [GET("/first"), GET("/second")])
        # the hostile bytes never reach the next request (after a close, stock may fail on the
        # stale connection: it does not send a GET again as fastpool does)
        if client == kind or not closing:
            assert verdict.outcomes[1][::2] == (200, b"own"), (client, verdict)
        assert verdict.connections <= 2
        outcomes.append(verdict.outcomes[0])
    return tuple(outcomes)


@pytest.mark.parametrize("kind", FASTPOOL_KINDS)
@pytest.mark.parametrize("case", list(SAME))
def test_same_as_stock(hostile, kind: str, case: str) -> None:
    # http.client reads "3, 3" as no length and waits for the end of the connection
    stock, ours = _two(hostile, kind, SAME[case], stock_closes=case == "cl-list-same")
    if case in STOCK_CHANGED_IN and URLLIB3_VERSION < STOCK_CHANGED_IN[case][0]:
        stock = STOCK_CHANGED_IN[case][1](stock)
    assert ours == stock


@pytest.mark.parametrize("kind", FASTPOOL_KINDS)
@pytest.mark.parametrize("case", list(SAME_THEN_CLOSE))
def test_read_to_close_same_as_stock(hostile, kind: str, case: str) -> None:
    stock, ours = _two(hostile, kind, SAME_THEN_CLOSE[case], close=True)
    assert ours == stock
    assert ours[::2] == (200, b"abc")


@pytest.mark.parametrize("kind", FASTPOOL_KINDS)
@pytest.mark.parametrize("case", list(REFUSE))
def test_refused_where_stock_guesses(hostile, kind: str, case: str) -> None:
    raw, _why = REFUSE[case]
    _stock, ours = _two(hostile, kind, raw, stock_closes=True)
    assert ours in REFUSALS, ours


@pytest.mark.parametrize("kind", FASTPOOL_KINDS)
@pytest.mark.parametrize("case", list(STOCK_OR_REFUSE))
def test_stock_or_refused(hostile, kind: str, case: str) -> None:
    stock, ours = _two(hostile, kind, STOCK_OR_REFUSE[case], stock_closes=True)
    assert ours == stock or ours in REFUSALS, (stock, ours)


@pytest.mark.parametrize("kind", FASTPOOL_KINDS)
@pytest.mark.parametrize("interim", ["103 Early Hints", "102 Processing", "199 Odd"])
def test_early_hints_are_skipped_unlike_stock(hostile, kind: str, interim: str) -> None:
    """A deliberate difference: stock returns a 1xx other than 100 as if it were the final
    response and leaves the real one on the connection; fastpool skips every interim response
    (all of 1xx but 101, an unassigned one too) and returns the 200 (RFC 9110 15.2)."""
    raw = _head(f"HTTP/1.1 {interim}", "Link: </s>", "", S200, CL3)
    stock, ours = _two(hostile, kind, raw)
    assert stock[0] == int(interim[:3])
    assert ours[::2] == (200, b"abc")


@pytest.mark.parametrize("kind", FASTPOOL_KINDS)
@pytest.mark.parametrize("coding", ["gzip, identity", "identity, gzip", "gzip, foo", "foo, gzip"])
def test_unknown_coding_in_a_chain_hands_the_body_over_as_it_came(hostile, kind, coding) -> None:
    """A deliberate difference: urllib3 decodes an unknown coding in a chain as deflate, so
    it raises DecodeError or, for "identity, gzip", returns an empty body; fastpool hands
    the body over undecoded, as for a single unknown coding (both agree on that)."""
    body = gzip.compress(b"abc")
    raw = response(body, headers=[f"Content-Encoding: {coding}"])
    stock, ours = _two(hostile, kind, raw)
    assert stock[2:] in {(b"",), ()} or stock[1] == "decode", stock
    assert ours[::2] == (200, body)


# --- slow, stalling and failing servers (step scripts) -------------------------------------


@pytest.mark.parametrize("kind", FASTPOOL_KINDS)
def test_trickling_server_within_the_read_timeout(hostile, kind: str) -> None:
    """One byte every 5 ms with a 1 s read timeout: the timeout bounds each wait, not the
    response, in both clients (urllib3's semantics)."""
    server = hostile([("read",), ("send", response(b"slow"), 1, 0.005)])
    stock, ours = both(kind, server, [GET("/", timeout=1.0)])
    assert ours.outcomes == stock.outcomes
    assert ours.outcomes[0][::2] == (200, b"slow")


@pytest.mark.parametrize("kind", FASTPOOL_KINDS)
@pytest.mark.parametrize("where", ["head", "body"])
def test_stall_beyond_the_read_timeout(hostile, kind: str, where: str) -> None:
    raw = response(b"0123456789")
    cut = 10 if where == "head" else len(raw) - 5
    server = hostile([("read",), ("send", raw[:cut]), ("sleep", 2)])
    start = time.monotonic()
    stock, ours = both(kind, server, [GET("/", timeout=0.3)])
    assert time.monotonic() - start < 4
    assert ours.outcomes == stock.outcomes
    # requests turns a timeout while reading the body into ConnectionError
    assert ours.outcomes[0] in {("error", "timeout"), ("error", "protocol")}


OK_RAW = response(b"fine")
# name -> steps of the one connection; each pause lets the client read what came before a
# reset (a RST can make the kernel drop bytes not read yet)
FAULTS: dict[str, list[tuple[object, ...]]] = {
    "close-before-the-request": [("close",)],
    "reset-before-the-request": [("reset",)],
    "close-after-the-request": [("read",), ("close",)],
    "reset-after-the-request": [("read",), ("reset",)],
    "close-mid-status-line": [("read",), ("send", b"HTTP/1.1 20"), ("close",)],
    "reset-mid-head": [("read",), ("send", OK_RAW[:20]), ("sleep", 0.1), ("reset",)],
    "close-mid-body": [("read",), ("send", OK_RAW[:-2]), ("close",)],
    "reset-mid-body": [("read",), ("send", OK_RAW[:-2]), ("sleep", 0.1), ("reset",)],
    "reset-after-the-response": [("read",), ("send", OK_RAW), ("sleep", 0.1), ("reset",)],
    "half-close-after-the-response": [("read",), ("send", OK_RAW), ("shut_wr",), ("sleep", 0.1)],
    "one-byte-writes": [("read",), ("send", OK_RAW, 1)],
    "chunked-in-3-byte-writes": [
        ("read",),
        ("send", _head(S200, TE, body="4\r\nfine\r\n0\r\n\r\n"), 3, 0.001),
    ],
}


@pytest.mark.parametrize("kind", FASTPOOL_KINDS)
@pytest.mark.parametrize("case", list(FAULTS))
def test_server_faults_fail_as_in_stock(hostile, kind: str, case: str) -> None:
    """Closes and resets at each point of the exchange, and answers cut into pieces: the
    same outcome as stock (a success, or the same kind of error)."""
    server = hostile(FAULTS[case])
    stock, ours = both(kind, server, [GET("/")])
    if case.endswith("-before-the-request"):
        # a race in both clients: the RST can reach connect() itself (NewConnectionError)
        racy = {("error", "protocol"), ("error", "connect")}
        assert {*stock.outcomes, *ours.outcomes} <= racy
    else:
        assert ours.outcomes == stock.outcomes
    assert ours.connections == stock.connections == 1


@pytest.mark.parametrize("kind", FASTPOOL_KINDS)
def test_a_failed_connection_does_not_poison_the_next(hostile, kind: str) -> None:
    """Per-connection scripts: the first connection is reset after the request, the second
    answers. The first GET fails in both clients, the second succeeds on a new connection."""
    server = hostile([[("read",), ("reset",)], [("read",), ("send", OK_RAW), ("read",)]])
    stock, ours = both(kind, server, [GET("/1"), GET("/2")])
    assert ours.outcomes == stock.outcomes
    assert ours.outcomes[0] == ("error", "protocol")
    assert ours.outcomes[1][::2] == (200, b"fine")


@pytest.mark.parametrize("kind", FASTPOOL_KINDS)
def test_stale_keep_alive_connection_is_retried_unlike_stock(hostile, kind: str) -> None:
    """A deliberate difference (docs/differences.md, "Deliberate differences"): the server
    answers one request, then closes the connection on reading the next. Stock fails that GET;
    fastpool sends a body-less idempotent request that met a stale pooled connection once more."""
    server = hostile([[("read",), ("send", OK_RAW), ("read",), ("close",)], answer_each(OK_RAW)])
    stock, ours = both(kind, server, [GET("/1"), GET("/2")])
    assert stock.outcomes[1] == ("error", "protocol")
    assert [o[::2] for o in ours.outcomes] == [(200, b"fine")] * 2
    assert ours.connections == 2


# --- decompression bombs --------------------------------------------------------------------

BOMB_SIZE = 64 * 1024 * 1024  # 64 MB of zeros: about 64 KB compressed


def _bomb(encoding: str) -> bytes:
    zeros = bytes(BOMB_SIZE)
    if encoding == "gzip":
        data = gzip.compress(zeros, 9)
    else:
        data = zlib.compress(zeros, 9)
    return response(data, headers=[f"Content-Encoding: {encoding}"])


@pytest.mark.parametrize("kind", FASTPOOL_KINDS)
@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_decompression_bomb_read_in_bounded_pieces(hostile, kind: str, encoding: str) -> None:
    """Reading 1 KiB of a streamed 64 MB bomb gives 1 KiB and never inflates the rest: the
    memory fastpool allocates stays far below the bomb (stock, urllib3 2.x, is bounded too).
    The unread response is then dropped and the next request gets its own answer."""
    bomb = _bomb(encoding)
    server = hostile(_first_then_own(bomb))
    calls = [Call("GET", "/bomb", {}, read=1024), GET("/after")]
    stock = converse({"pm": "urllib3"}.get(kind, "requests"), server, calls)
    tracemalloc.start()
    try:
        ours = converse(kind, server, calls)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ours.outcomes == stock.outcomes
    assert ours.outcomes[0][::2] == (200, bytes(1024))
    assert ours.outcomes[1][::2] == (200, b"own")
    assert peak < 16 * 1024 * 1024, peak
