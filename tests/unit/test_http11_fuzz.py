"""Differential fuzzing of the _http11 core against llhttp (httptools) and h11, and C against Python.

The oracles are test-only. Where both accept a response, fastpool must accept it with the same
status, headers (names compared case-insensitively, values without surrounding whitespace),
body bytes and trailers; where both reject it, fastpool must reject it too. Compiled and pure
backends must always agree exactly: the same result, or the same exception type and message.

Deliberate differences, skipped below with the reason (see ``fastpool._http11_py``):

* versions other than HTTP/1.0 and HTTP/1.1 (both oracles accept ``HTTP/2.0``) are rejected;
* Content-Length values of 2**63 and above are rejected (llhttp and h11 allow up to 2**64-1);
* 101 Switching Protocols: fastpool ends the HTTP exchange there (framing ``"none"``), h11 wants
  an upgrade proposal and llhttp reports an upgrade error;
* responses with 1xx interim heads: llhttp reports interim and final heads as one message;
* a status line split by runs of SP/HT (RFC 9112 4 lets a recipient parse on whitespace, and
  http.client, so stock requests, does); both oracles want single spaces;
* whitespace after a chunk size (RFC 9112 7.1.1's BWS before an extension, and what
  http.client, so stock requests, accepts) is accepted; both oracles reject it;
* where both oracles reject, but one of them for a reason fastpool deliberately does not share
  (llhttp: obs-fold, bare LF, chunked with Content-Length; h11: a Transfer-Encoding other than
  chunked), fastpool may accept (see ``DELIBERATE_LLHTTP`` and ``DELIBERATE_H11``).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import h11
import httptools
import pytest
from http_strategies import (
    INTERESTING,
    TOKEN_ALPHABET,
    chunked_body,
    mutated,
    responses,
)
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fastpool.exceptions import InvalidChunkError, InvalidRequestError, InvalidResponseError

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
OWS = " \t"
MAX_SIZE = 2**63 - 1


# --- oracles -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a parser made of one response: ``head_error``/``body_error`` or the parts."""

    head_error: bool = False
    body_error: bool = False
    status: int | None = None
    interim: bool = False
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    complete: bool = False
    error: str = ""

    @property
    def head_ok(self) -> bool:
        return self.status is not None and not self.head_error


def _normal(name: str, value: str) -> tuple[str, str]:
    name = name.lower()
    value = value.strip(OWS)
    # h11 lowercases Transfer-Encoding values
    return name, value.lower() if name == "transfer-encoding" else value


def _pair(name: bytes, value: bytes) -> tuple[str, str]:
    return _normal(name.decode("latin-1"), value.decode("latin-1"))


class _Callbacks:
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.in_body = False
        self.messages = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        target = self.outcome.trailers if self.in_body else self.outcome.headers
        target.append(_pair(name, value))

    def on_headers_complete(self) -> None:
        self.in_body = True

    def on_body(self, body: bytes) -> None:
        self.outcome.body += body

    def on_message_complete(self) -> None:
        self.messages += 1


def llhttp(data: bytes) -> Outcome:
    outcome = Outcome()
    callbacks = _Callbacks(outcome)
    parser = httptools.HttpResponseParser(callbacks)
    try:
        parser.feed_data(data)
    except httptools.HttpParserUpgrade:
        outcome.status = parser.get_status_code()
        outcome.interim = True  # treat like interim: not comparable
        return outcome
    except httptools.HttpParserError as exc:
        outcome.error = str(exc)
        if callbacks.in_body:
            outcome.status = parser.get_status_code()
            outcome.body_error = True
        else:
            outcome.head_error = True
        return outcome
    if callbacks.in_body:
        outcome.status = parser.get_status_code()
        outcome.interim = outcome.status < 200
    outcome.complete = callbacks.messages > 0
    return outcome


def h11_client(data: bytes) -> Outcome:
    outcome = Outcome()
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "example.com")]))
    conn.send(h11.EndOfMessage())
    try:
        conn.receive_data(data)
        conn.receive_data(b"")  # the server closed: ends a read-to-close body
        for _ in range(1000):  # bounded: each event consumes input
            event = conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                break
            if isinstance(event, h11.InformationalResponse):
                outcome.interim = True
            elif isinstance(event, h11.Response):
                outcome.status = event.status_code
                outcome.headers = [_pair(n, v) for n, v in event.headers.raw_items()]
            elif isinstance(event, h11.Data):
                outcome.body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                outcome.trailers = [_pair(n, v) for n, v in event.headers.raw_items()]
                outcome.complete = True
                break
            elif isinstance(event, h11.ConnectionClosed):
                break
    except h11.RemoteProtocolError as exc:
        outcome.error = str(exc)
        if outcome.status is None:
            outcome.head_error = True
        else:
            outcome.body_error = True
    return outcome


def fastpool_outcome(http11: ModuleType, data: bytes) -> Outcome:
    """Parse head and body the way the engine will, as an :class:`Outcome`."""
    outcome = Outcome()
    try:
        result = http11.parse_response_head(data)
    except InvalidResponseError:
        outcome.head_error = True
        return outcome
    if result is None:
        return outcome
    head, consumed = result
    outcome.status = head.status
    outcome.interim = data.startswith((b"HTTP/1.1 1", b"HTTP/1.0 1"))
    outcome.headers = [_normal(n, v) for n, v in head.headers]
    rest = data[consumed:]
    if head.framing == "none":
        outcome.complete = True
    elif head.framing == "length":
        outcome.body = rest[: head.content_length]
        outcome.complete = len(outcome.body) == head.content_length
    elif head.framing == "close":
        outcome.body = rest
        outcome.complete = True
    else:
        decoder = http11.ChunkedDecoder()
        try:
            outcome.body = decoder.feed(rest)
        except InvalidChunkError:
            outcome.body_error = True
            return outcome
        outcome.trailers = [_normal(n, v) for n, v in decoder.trailers]
        outcome.complete = decoder.done
    return outcome


# A chunk-size line with whitespace after the size: accepted, as http.client does.
_CHUNK_SIZE_BWS = re.compile(rb"\n[0-9A-Fa-f]+[ \t]+[;\r]")
# A status line with a run of SP/HT, or an HT, between its parts: accepted, as http.client does.
_STATUS_WHITESPACE = re.compile(
    rb"HTTP/1\.[0-9](?: [ \t]|\t)|HTTP/1\.[0-9][ \t]+[0-9]{3}(?: [ \t]|\t)"
)


def _deliberately_different(data: bytes, ours: Outcome, oracles: list[Outcome]) -> bool:
    if not data.startswith((b"HTTP/1.0 ", b"HTTP/1.1 ")):
        return True  # other versions (oracles take HTTP/2.0, 1.2 ...)
    if _CHUNK_SIZE_BWS.search(data) or _STATUS_WHITESPACE.match(data):
        return True
    if any(o.interim for o in (ours, *oracles)) or any(o.status == 101 for o in oracles):
        return True
    for name, value in oracles[0].headers + oracles[1].headers:
        if name == "content-length":
            digits = value.split(",")[0].strip(OWS)
            if digits.isdigit() and digits.isascii() and int(digits) > MAX_SIZE:
                return True
    return False


# Oracle rejections that stem from a deliberate difference: the rejection of the other oracle
# alone does not oblige fastpool to reject.
DELIBERATE_LLHTTP = (
    "Unexpected whitespace after header value",  # obs-fold: fastpool joins it
    "Missing expected CR",  # bare LF line ends in the head: fastpool accepts them
    "Transfer-Encoding can't be present with Content-Length",  # chunked wins, no reuse
)
DELIBERATE_H11 = (
    "Only Transfer-Encoding: chunked is supported",  # others: read to close
    "multiple Transfer-Encoding headers",  # combined as one list (RFC 9110 5.3)
)


def _deliberate_rejection(first: Outcome, second: Outcome) -> bool:
    return any(reason in first.error for reason in DELIBERATE_LLHTTP) or any(
        reason in second.error for reason in DELIBERATE_H11
    )


def check_against_oracles(http11: ModuleType, data: bytes) -> None:
    ours = fastpool_outcome(http11, data)
    first, second = llhttp(data), h11_client(data)
    if _deliberately_different(data, ours, [first, second]):
        return
    if first.head_ok and second.head_ok:
        assert ours.head_ok, (data, first, second)
        assert ours.status == first.status == second.status
        assert ours.headers == first.headers == second.headers, (data, ours, first, second)
        if not first.body_error and not second.body_error:
            if first.complete and second.complete:
                assert ours.complete and not ours.body_error, (data, ours, first, second)
                assert ours.body == first.body == second.body, (data, ours, first, second)
                assert ours.trailers == first.trailers == second.trailers
        elif first.body_error and second.body_error and not _deliberate_rejection(first, second):
            assert ours.body_error or not ours.complete, (data, ours, first, second)
    elif first.head_error and second.head_error and not _deliberate_rejection(first, second):
        # An incomplete head is a rejection too: the parser never sees the end of the stream.
        # (The connection ends a head cut by EOF as http.client does: tests/test_faults.py.)
        assert ours.head_error or ours.status is None, (data, ours, first, second)


# --- generated responses (the strategies live in http_strategies.py) --------------------------


@FUZZ
@given(data=responses())
def test_generated_responses_match_oracles(http11: ModuleType, data: bytes) -> None:
    check_against_oracles(http11, data)


@FUZZ
@given(data=mutated())
def test_mutated_responses_match_oracles(http11: ModuleType, data: bytes) -> None:
    check_against_oracles(http11, data)


# --- compiled against pure ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def both(request: pytest.FixtureRequest) -> tuple[ModuleType, ModuleType]:
    if request.config.getoption("--no-c-extensions"):
        pytest.skip("--no-c-extensions given")
    return (
        importlib.import_module("fastpool._http11_c"),
        importlib.import_module("fastpool._http11_py"),
    )


def outcome_of(func: Any, *args: Any, **kwargs: Any) -> Any:
    """A comparable result: the value (heads as tuples), or the exception type and message."""
    try:
        result = func(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the point is comparing any exception
        return type(exc), str(exc)
    if isinstance(result, tuple) and len(result) == 2 and hasattr(result[0], "framing"):
        head = result[0]
        # what the framing scan notes for the response, as a scan of the pairs finds it
        names = [name.lower() for name, _ in head.headers]
        encodings = [v for n, v in head.headers if n.lower() == "content-encoding"]
        assert head.content_encoding == ", ".join(encodings)
        assert head.sets_cookies == ("set-cookie" in names or "set-cookie2" in names)
        return (
            (
                head.version,
                head.status,
                head.reason,
                head.headers,
                head.keep_alive,
                head.framing,
                head.content_length,
                head.content_encoding,
                head.sets_cookies,
                repr(head),
            ),
            result[1],
        )
    return result


def decode_outcome(http11: ModuleType, pieces: list[bytes], **kwargs: Any) -> Any:
    decoder = http11.ChunkedDecoder(**kwargs)
    out = []
    for piece in pieces:
        try:
            out.append(decoder.feed(piece))
        except Exception as exc:  # noqa: BLE001
            out.append((type(exc), str(exc)))
            break
    return out, decoder.done, decoder.trailers, decoder.unused


@pytest.mark.c_extension
@FUZZ
@given(
    data=st.one_of(responses(), mutated()),
    cut=st.integers(0, 400),
    method=st.sampled_from(["GET", "HEAD", "CONNECT", "POST"]),
    max_head_bytes=st.sampled_from([65536, 1, 20, 40, 64]),
    max_headers=st.sampled_from([100, 1, 2, 3]),
)
def test_compiled_and_pure_parse_alike(
    both: tuple[ModuleType, ModuleType],
    data: bytes,
    cut: int,
    method: str,
    max_head_bytes: int,
    max_headers: int,
) -> None:
    compiled, pure = both
    kwargs = {
        "request_method": method,
        "max_head_bytes": max_head_bytes,
        "max_headers": max_headers,
    }
    for piece in (data, data[:cut], bytearray(data), memoryview(data)[:cut]):
        assert outcome_of(compiled.parse_response_head, piece, **kwargs) == outcome_of(
            pure.parse_response_head, piece, **kwargs
        )


@st.composite
def chunked_streams(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(chunked_body(draw(st.binary(max_size=60)))) + draw(st.binary(max_size=4)))
    for _ in range(draw(st.integers(0, 3))):
        pos = draw(st.integers(0, len(data) - 1))
        byte = draw(st.sampled_from(INTERESTING))
        if draw(st.booleans()):
            data[pos] = byte
        else:
            data.insert(pos, byte)
    return bytes(data)


@pytest.mark.c_extension
@FUZZ
@given(
    data=chunked_streams(),
    cuts=st.lists(st.integers(0, 200), max_size=4),
    max_line_bytes=st.sampled_from([65536, 1, 3, 8]),
    max_trailer_bytes=st.sampled_from([65536, 1, 2, 10]),
)
def test_compiled_and_pure_decode_alike(
    both: tuple[ModuleType, ModuleType],
    data: bytes,
    cuts: list[int],
    max_line_bytes: int,
    max_trailer_bytes: int,
) -> None:
    compiled, pure = both
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    pieces = [data[a:b] for a, b in zip(bounds, bounds[1:])]
    kwargs = {"max_line_bytes": max_line_bytes, "max_trailer_bytes": max_trailer_bytes}
    assert decode_outcome(compiled, pieces, **kwargs) == decode_outcome(pure, pieces, **kwargs)


@FUZZ
@given(data=chunked_streams())
def test_chunked_decoder_matches_oracles(http11: ModuleType, data: bytes) -> None:
    check_against_oracles(http11, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + data)


# --- the request writer ------------------------------------------------------------------------

header_parts = st.one_of(
    st.text(TOKEN_ALPHABET, min_size=1, max_size=8),
    st.text(st.characters(min_codepoint=0, max_codepoint=0x20AC), max_size=8),
    st.binary(max_size=8),
)


@pytest.mark.c_extension
@FUZZ
@given(
    method=st.one_of(st.sampled_from(["GET", "POST", "M-SEARCH"]), header_parts),
    target=st.one_of(st.sampled_from(["/", "*", "/a?b=c#d"]), header_parts),
    headers=st.lists(st.tuples(header_parts, header_parts), max_size=4),
)
def test_compiled_and_pure_write_alike(
    both: tuple[ModuleType, ModuleType], method: Any, target: Any, headers: Any
) -> None:
    compiled, pure = both
    assert outcome_of(compiled.write_request_head, method, target, headers) == outcome_of(
        pure.write_request_head, method, target, headers
    )


def _origin_form(target: str | bytes) -> str | bytes:
    """llhttp wants a target starting with "/" (or "*", or a scheme)."""
    return "/" + target if isinstance(target, str) else b"/" + target


class _RequestCallbacks:
    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append(_pair(name, value))

    def on_message_complete(self) -> None:
        self.complete = True


@FUZZ
@given(
    method=st.one_of(st.sampled_from(["GET", "POST", "PUT", "DELETE", "CONNECT"]), header_parts),
    target=st.one_of(st.sampled_from(["/", "/a?b=c"]), header_parts.map(_origin_form)),
    headers=st.lists(st.tuples(header_parts, header_parts), max_size=4),
)
def test_written_heads_parse_back_in_llhttp(
    http11: ModuleType, method: Any, target: Any, headers: Any
) -> None:
    try:
        head = http11.write_request_head(method, target, headers)
    except (InvalidRequestError, TypeError):
        return
    # llhttp also rejects other control characters in values and methods it does not know.
    raw_values = [v if isinstance(v, bytes) else v.encode("latin-1") for _, v in headers]
    assume(all(b >= 0x20 or b == 0x09 for v in raw_values for b in v))
    assume(not any(b == 0x7F for v in raw_values for b in v))
    callbacks = _RequestCallbacks()
    parser = httptools.HttpRequestParser(callbacks)
    upgraded = False
    try:
        parser.feed_data(head)
    except httptools.HttpParserInvalidMethodError:
        return  # llhttp knows a fixed list of methods
    except httptools.HttpParserUpgrade:
        upgraded = True  # CONNECT, or an Upgrade header: llhttp hands over after the head
    assert callbacks.complete or upgraded
    assert parser.get_method().decode() == (method if isinstance(method, str) else method.decode())
    assert callbacks.url == (target if isinstance(target, bytes) else target.encode())
    expected = [
        (
            (n if isinstance(n, str) else n.decode("latin-1")).lower(),
            (v if isinstance(v, str) else v.decode("latin-1")).strip(OWS),
        )
        for n, v in headers
    ]
    assert callbacks.headers == expected


# --- the header helpers ------------------------------------------------------------------------

header_names = st.one_of(
    st.sampled_from(["Host", "HOST", "host", "User-Agent", "user-AGENT", "Content-Length"]),
    st.sampled_from(["Transfer-Encoding", "transfer-encoding", "Accept-Encoding", "X-A", "x-a"]),
    st.text(TOKEN_ALPHABET, min_size=1, max_size=70),  # past the compiled 64-byte buffer too
    st.text(st.characters(min_codepoint=0, max_codepoint=0x212B), max_size=8),  # Kelvin sign
    st.binary(max_size=8),
)


@pytest.mark.c_extension
@FUZZ
@given(
    items=st.lists(
        st.one_of(
            st.tuples(header_names, st.one_of(st.just("@@@SKIP_HEADER@@@"), header_parts)),
            st.tuples(header_names),  # not a pair
            st.lists(header_names, min_size=2, max_size=2),
        ),
        max_size=6,
    )
)
def test_compiled_and_pure_collect_request_headers_alike(
    both: tuple[ModuleType, ModuleType], items: list[tuple[Any, Any]]
) -> None:
    compiled, pure = both
    skippable = frozenset({"accept-encoding", "host", "user-agent"})
    args = (items, "@@@SKIP_HEADER@@@", skippable)
    assert outcome_of(compiled.collect_request_headers, *args) == outcome_of(
        pure.collect_request_headers, *args
    )


@pytest.mark.c_extension
@FUZZ
@given(
    headers=st.lists(
        st.tuples(
            st.one_of(header_names.filter(lambda name: isinstance(name, str)), st.just("ÀB")),
            st.text(max_size=6),
        ),
        max_size=8,
    )
)
def test_compiled_and_pure_header_store_alike(
    both: tuple[ModuleType, ModuleType], headers: list[tuple[str, str]]
) -> None:
    compiled, pure = both
    store = compiled.header_store(headers)
    assert type(store) is type(pure.header_store(headers))
    assert list(store.items()) == list(pure.header_store(headers).items())
