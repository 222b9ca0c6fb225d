"""The _http11 core on both backends: request-head writer, response-head parser, chunked decoder."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from fastpool.exceptions import (
    InvalidChunkError,
    InvalidContentLengthError,
    InvalidRequestError,
    InvalidResponseError,
    ResponseHeadTooLarge,
)

NGINX_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Server: nginx/1.22.1\r\n"
    b"Date: Wed, 25 Nov 2026 15:30:00 GMT\r\n"
    b"Content-Type: text/html\r\n"
    b"Content-Length: 615\r\n"
    b"Connection: keep-alive\r\n"
    b'ETag: "6543a1b2-267"\r\n'
    b"Accept-Ranges: bytes\r\n"
    b"\r\n"
)


def as_tuple(head: Any) -> tuple[Any, ...]:
    return (
        head.version,
        head.status,
        head.reason,
        head.headers,
        head.keep_alive,
        head.framing,
        head.content_length,
    )


def parse(http11: ModuleType, data: bytes, **kwargs: Any) -> tuple[Any, ...]:
    result = http11.parse_response_head(data, **kwargs)
    assert result is not None, "head unexpectedly incomplete"
    head, consumed = result
    return (*as_tuple(head), consumed)


def response(*header_lines: str, status: str = "HTTP/1.1 200 OK") -> bytes:
    return "".join(f"{line}\r\n" for line in (status, *header_lines)).encode("latin-1") + b"\r\n"


# --- write_request_head ------------------------------------------------------------------------


def test_write_basic(http11: ModuleType) -> None:
    head = http11.write_request_head("GET", "/index.html?q=1", [("Host", "example.com")])
    assert head == b"GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"


def test_write_no_headers(http11: ModuleType) -> None:
    assert http11.write_request_head("OPTIONS", "*", []) == b"OPTIONS * HTTP/1.1\r\n\r\n"


def test_write_keeps_order_and_duplicates(http11: ModuleType) -> None:
    headers = [("B", "2"), ("a", "1"), ("B", "3"), ("Set-Thing", ""), ("b", "4")]
    assert http11.write_request_head("POST", "/", headers) == (
        b"POST / HTTP/1.1\r\nB: 2\r\na: 1\r\nB: 3\r\nSet-Thing: \r\nb: 4\r\n\r\n"
    )


def test_write_accepts_items_generators_lists_and_bytes(http11: ModuleType) -> None:
    expected = b"PUT /x HTTP/1.1\r\nA: 1\r\nB: \xe9\xff\r\n\r\n"
    assert http11.write_request_head("PUT", "/x", {"A": "1", "B": "\xe9\xff"}.items()) == expected
    assert http11.write_request_head(b"PUT", b"/x", [(b"A", b"1"), ["B", b"\xe9\xff"]]) == expected
    assert http11.write_request_head("PUT", "/x", (p for p in [("A", "1"), (b"B", "é\xff")])) == (
        expected
    )


def test_write_value_whitespace_is_kept(http11: ModuleType) -> None:
    # The writer sends values as given (http.client does too); only CR, LF and NUL are refused.
    head = http11.write_request_head("GET", "/", [("X", " a\tb ")])
    assert head == b"GET / HTTP/1.1\r\nX:  a\tb \r\n\r\n"


@pytest.mark.parametrize(
    ("method", "target", "headers", "message"),
    [
        ("GET\r", "/", [], "method 'GET\\r' is not an HTTP token"),
        ("GET\n", "/", [], "method 'GET\\n' is not an HTTP token"),
        ("G\x00T", "/", [], "is not an HTTP token"),
        ("G T", "/", [], "method 'G T' is not an HTTP token"),
        ("", "/", [], "method '' is not an HTTP token"),
        ("GET(", "/", [], "is not an HTTP token"),
        ("GÉT", "/", [], "is not an HTTP token"),
        ("G€T", "/", [], "is not an HTTP token"),
        ("GET", "", [], "request target must not be empty"),
        ("GET", "/a b", [], "request target '/a b' contains"),
        ("GET", "/a\r", [], "request target '/a\\r' contains"),
        ("GET", "/a\nb", [], "contains"),
        ("GET", "/a\x00", [], "contains"),
        ("GET", "/a\x7f", [], "contains"),
        ("GET", "/a\tb", [], "contains"),
        ("GET", "/\xe9", [], "contains"),
        ("GET", "/€", [], "contains"),
        ("GET", "/", [("X-Foo", "a\rb")], "header 'X-Foo' value contains CR/LF/NUL"),
        ("GET", "/", [("X-Foo", "a\nb")], "header 'X-Foo' value contains CR/LF/NUL"),
        ("GET", "/", [("X-Foo", "a\x00b")], "header 'X-Foo' value contains CR/LF/NUL"),
        ("GET", "/", [("X-Foo", b"a\r\n b")], "header 'X-Foo' value contains CR/LF/NUL"),
        ("GET", "/", [("X-Foo", "€\n")], "header 'X-Foo' value contains CR/LF/NUL"),
        ("GET", "/", [("X-Foo\r", "a")], "header name 'X-Foo\\r' is not an HTTP token"),
        ("GET", "/", [("X-Foo\n", "a")], "is not an HTTP token"),
        ("GET", "/", [("X\x00", "a")], "is not an HTTP token"),
        ("GET", "/", [("X Foo", "a")], "header name 'X Foo' is not an HTTP token"),
        ("GET", "/", [("X:", "a")], "header name 'X:' is not an HTTP token"),
        ("GET", "/", [("", "a")], "header name '' is not an HTTP token"),
        ("GET", "/", [("Ünicode", "a")], "is not an HTTP token"),
        ("GET", "/", [("X", "€")], "header 'X' value is not encodable in latin-1"),
        # a later CR/LF is found before an earlier non-latin-1 value
        ("GET", "/", [("A", "€"), ("B", "\n")], "header 'B' value contains CR/LF/NUL"),
        ("GET", "/", [("A", "€"), ("B", "€")], "header 'A' value is not encodable"),
    ],
)
def test_write_rejects(
    http11: ModuleType, method: str, target: str, headers: list[Any], message: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        http11.write_request_head(method, target, [("Host", "h"), *headers])
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("method", "target", "headers", "message"),
    [
        (None, "/", [], "method must be str or bytes, got NoneType"),
        ("GET", 5, [], "target must be str or bytes, got int"),
        ("GET", "/", [("X", 5)], "header 'X' value must be str or bytes, got int"),
        ("GET", "/", [(5, "x")], "header name must be str or bytes, got int"),
        (
            "GET",
            "/",
            [("X", bytearray(b"x"))],
            "header 'X' value must be str or bytes, got bytearray",
        ),
        ("GET", "/", ["ab"], "headers must be (name, value) pairs, got str"),
        ("GET", "/", [("a", "b", "c")], "headers must be (name, value) pairs, got tuple"),
        ("GET", "/", [None], "headers must be (name, value) pairs, got NoneType"),
    ],
)
def test_write_type_errors(
    http11: ModuleType, method: Any, target: Any, headers: list[Any], message: str
) -> None:
    with pytest.raises(TypeError) as info:
        http11.write_request_head(method, target, headers)
    assert str(info.value) == message


def test_write_late_bad_header_returns_nothing(http11: ModuleType) -> None:
    produced = []

    def headers() -> Any:
        yield ("A", "1")
        produced.append(1)
        yield ("B", "x\r\nEvil: 1")

    with pytest.raises(InvalidRequestError, match="header 'B'"):
        http11.write_request_head("GET", "/", headers())
    assert produced == [1]


class _ShiftyPair(list):  # type: ignore[type-arg]
    """A pair whose items grow on every read: each part must be read once."""

    reads = 0

    def __getitem__(self, index: Any) -> Any:
        self.reads += 1
        return "v" * self.reads


def test_write_reads_each_part_once(http11: ModuleType) -> None:
    pair = _ShiftyPair(["X", "v"])
    head = http11.write_request_head("GET", "/", [("A", "1"), pair])
    assert head == b"GET / HTTP/1.1\r\nA: 1\r\nv: vv\r\n\r\n"


def test_write_error_is_value_error(http11: ModuleType) -> None:
    # requests/urllib3 callers catch ValueError for bad header input.
    with pytest.raises(ValueError, match="CR/LF/NUL"):
        http11.write_request_head("GET", "/", [("X", "\r")])


# --- parse_response_head: basics ---------------------------------------------------------------


def test_parse_nginx_head(http11: ModuleType) -> None:
    head, consumed = http11.parse_response_head(NGINX_HEAD + b"<html>")
    assert consumed == len(NGINX_HEAD)
    assert (head.version, head.status, head.reason) == (11, 200, "OK")
    assert head.headers == [
        ("Server", "nginx/1.22.1"),
        ("Date", "Wed, 25 Nov 2026 15:30:00 GMT"),
        ("Content-Type", "text/html"),
        ("Content-Length", "615"),
        ("Connection", "keep-alive"),
        ("ETag", '"6543a1b2-267"'),
        ("Accept-Ranges", "bytes"),
    ]
    assert (head.keep_alive, head.framing, head.content_length) == (True, "length", 615)
    assert repr(head) == (
        "<ResponseHead HTTP/1.1 200 'OK' framing='length' content_length=615 "
        "keep_alive=True headers=7>"
    )


def test_response_head_constructor(http11: ModuleType) -> None:
    head = http11.ResponseHead(10, 404, "Not Found", [("A", "1")], False, "close", None)
    assert as_tuple(head) == (10, 404, "Not Found", [("A", "1")], False, "close", None)
    assert repr(head) == (
        "<ResponseHead HTTP/1.0 404 'Not Found' framing='close' content_length=None "
        "keep_alive=False headers=1>"
    )


@pytest.mark.parametrize(
    ("lines", "encoding", "cookies"),
    [
        ((), "", False),
        (("Content-Encoding: gzip",), "gzip", False),
        (
            ("content-ENCODING: gzip", "X-Content-Encoding: br", "Content-Encoding: br"),
            "gzip, br",
            False,
        ),
        (("Content-Encoding:",), "", False),  # present but empty: nothing to decode
        (("Set-Cookie: a=1",), "", True),
        (("SET-COOKIE2: a=1",), "", True),
        (("Set-Cookies: a=1", "Set-Cookie3: b", "X-Set-Cookie: c"), "", False),
        (("Connection: close", "Set-Cookie: a", "Content-Encoding: deflate"), "deflate", True),
    ],
)
def test_the_head_notes_content_encoding_and_cookies(
    http11: ModuleType, lines: tuple[str, ...], encoding: str, cookies: bool
) -> None:
    # Found in the framing scan: a response decodes and stores cookies without a scan of its own.
    head, _ = http11.parse_response_head(response(*lines, "Content-Length: 0"))
    assert (head.content_encoding, head.sets_cookies) == (encoding, cookies)
    # and a head made by hand finds the same
    made = http11.ResponseHead(11, 200, "OK", head.headers, True, "length", 0)
    assert (made.content_encoding, made.sets_cookies) == (encoding, cookies)


def test_parse_accepts_bytearray_and_memoryview(http11: ModuleType) -> None:
    expected = parse(http11, NGINX_HEAD)
    assert parse(http11, bytearray(NGINX_HEAD)) == expected
    assert parse(http11, memoryview(NGINX_HEAD + b"body")) == expected
    assert parse(http11, memoryview(b"xx" + NGINX_HEAD)[2:]) == expected


def test_parse_head_attributes_are_read_only(http11: ModuleType) -> None:
    head, _ = http11.parse_response_head(NGINX_HEAD)
    for name in ("version", "status", "reason", "headers", "keep_alive", "framing"):
        with pytest.raises(AttributeError):
            setattr(head, name, 1)
    with pytest.raises(AttributeError):
        head.content_length = 1


def test_parse_keeps_names_duplicates_and_strips_values(http11: ModuleType) -> None:
    data = response("set-COOKIE: a=1", "Set-Cookie:b=2 \t", "X-Empty:", "X-Sp:   ", "X:\t v  w \t")
    assert parse(http11, data)[3] == [
        ("set-COOKIE", "a=1"),
        ("Set-Cookie", "b=2"),
        ("X-Empty", ""),
        ("X-Sp", ""),
        ("X", "v  w"),
    ]


def test_parse_latin1_values_and_reason(http11: ModuleType) -> None:
    data = b"HTTP/1.1 200 D\xe9j\xe0 vu\r\nX: caf\xe9 \xff\r\n\r\n"
    result = parse(http11, data)
    assert result[2] == "Déjà vu"
    assert result[3] == [("X", "café \xff")]


@pytest.mark.parametrize(
    "data",
    [
        NGINX_HEAD,
        response("Transfer-Encoding: chunked"),
        b"HTTP/1.0 200 OK\nContent-Length: 3\n\n",
        b"HTTP/1.1 204\r\nX: a\n \t b\r\n\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + NGINX_HEAD,
    ],
)
def test_parse_split_at_every_offset(http11: ModuleType, data: bytes) -> None:
    expected = parse(http11, data)
    assert expected[-1] == len(data)
    for cut in range(len(data)):
        assert http11.parse_response_head(data[:cut]) is None, cut
        assert http11.parse_response_head(bytearray(data[:cut])) is None, cut
    assert parse(http11, data + b"trailing body bytes\r\n\r\n") == expected


# --- status line -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "version", "status", "reason"),
    [
        (b"HTTP/1.1 200 OK", 11, 200, "OK"),
        (b"HTTP/1.0 404 Not Found", 10, 404, "Not Found"),
        (b"HTTP/1.1 200", 11, 200, ""),
        (b"HTTP/1.1 200 ", 11, 200, ""),
        (b"HTTP/1.1 200  two  spaces ", 11, 200, "two  spaces"),
        # RFC 9112 4: a recipient may split the status line on whitespace (http.client does)
        (b"HTTP/1.1  200 OK", 11, 200, "OK"),
        (b"HTTP/1.1\t200\tOK", 11, 200, "OK"),
        (b"HTTP/1.0 \t 301 \t Moved \t", 10, 301, "Moved"),
        (b"HTTP/1.1\t200", 11, 200, ""),
        (b"HTTP/1.1 999 x", 11, 999, "x"),
        # RFC 9112 2.3: another minor version of HTTP/1 is read as 1.1 (http.client does too)
        (b"HTTP/1.2 200 OK", 11, 200, "OK"),
        (b"HTTP/1.9 204 No", 11, 204, "No"),
        (b"HTTP/1.1 599 \x01\x7f\t", 11, 599, "\x01\x7f"),  # both oracles accept CTLs here
    ],
)
def test_status_line_valid(
    http11: ModuleType, line: bytes, version: int, status: int, reason: str
) -> None:
    result = parse(http11, line + b"\r\nContent-Length: 0\r\n\r\n")
    assert result[:3] == (version, status, reason)


@pytest.mark.parametrize(
    "line",
    [
        b"HTTP/1.1 20 OK",
        b"HTTP/1.1 2000 OK",
        b"HTTP/1.1 200OK",
        b"HTTP/1.1200 OK",
        b"HTTP/1.1 200\x0bOK",
        b"HTTP/1.1 099 Low",
        b"HTTP/1.1 -20 OK",
        b"HTTP/1.1 2x0 OK",
        b"HTTP/1.x 200 OK",
        b"HTTP/1.1",
        b"HTTP/1.1 ",
        b"HTTP/1.10 200 OK",
        b"HTTP/1.1 \xb200 OK",
    ],
)
def test_status_line_invalid_after_prefix(http11: ModuleType, line: bytes) -> None:
    with pytest.raises(InvalidResponseError) as info:
        http11.parse_response_head(line + b"\r\n\r\n")
    assert str(info.value) == f"invalid HTTP/1.x status line: {line!r}"


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/2.0 200 OK\r\n",
        b"HTTP/2 200\r\n",
        b"HTTP/0.9 200 OK\r\n",
        b"http/1.1 200 OK\r\n",
        b" HTTP/1.1 200 OK\r\n",
        b"\r\nHTTP/1.1 200 OK\r\n",
        b"SSH-2.0-OpenSSH_9.2\r\n",
        b"<html>",
        b"\x16\x03\x01",  # a TLS record
        b"HTTX",
    ],
)
def test_status_line_garbage_fails_before_head_is_complete(http11: ModuleType, data: bytes) -> None:
    with pytest.raises(InvalidResponseError, match="invalid HTTP/1.x status line"):
        http11.parse_response_head(data)


def test_status_line_error_truncates_line(http11: ModuleType) -> None:
    line = b"HTTP/1.1 200x" + b"y" * 200
    with pytest.raises(InvalidResponseError) as info:
        http11.parse_response_head(line + b"\r\n\r\n")
    assert str(info.value) == f"invalid HTTP/1.x status line: {line[:80]!r}"


@pytest.mark.parametrize("data", [b"", b"H", b"HTTP/", b"HTTP/1.", b"HTTP/1.1 200 OK\r\n"])
def test_prefixes_are_incomplete(http11: ModuleType, data: bytes) -> None:
    assert http11.parse_response_head(data) is None


def test_status_line_nul_and_bare_cr(http11: ModuleType) -> None:
    with pytest.raises(InvalidResponseError) as info:
        http11.parse_response_head(b"HTTP/1.1 200 O\x00K\r\n\r\n")
    assert str(info.value) == (
        "forbidden character '\\x00' in response head line: b'HTTP/1.1 200 O\\x00K'"
    )
    with pytest.raises(InvalidResponseError, match="forbidden character '\\\\r'"):
        http11.parse_response_head(b"HTTP/1.1 200 O\rK\r\n\r\n")


# --- header lines ------------------------------------------------------------------------------


def test_bare_lf_and_mixed_line_endings(http11: ModuleType) -> None:
    crlf = parse(http11, b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n")
    assert parse(http11, b"HTTP/1.1 200 OK\nA: 1\nB: 2\n\n")[:-1] == crlf[:-1]
    assert parse(http11, b"HTTP/1.1 200 OK\nA: 1\r\nB: 2\n\r\n")[:-1] == crlf[:-1]
    assert parse(http11, b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\n")[:-1] == crlf[:-1]


def test_obs_fold_is_joined_with_one_space(http11: ModuleType) -> None:
    data = response("X: a", "  b", "\tc  ", "Y: 1", " ", "Z:", " z")
    assert parse(http11, data)[3] == [("X", "a b c"), ("Y", "1"), ("Z", "z")]


def test_obs_fold_does_not_count_as_header(http11: ModuleType) -> None:
    data = response("X: a", " b", " c", "Y: 1")
    assert len(parse(http11, data, max_headers=2)[3]) == 2


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b" X: a", "invalid response header line: b' X: a'"),
        (b"X a", "invalid response header line: b'X a'"),
        (b": a", "invalid response header line: b': a'"),
        (b"X-A : a", "whitespace between header name and colon: b'X-A : a'"),
        (b"X-A\t: a", "whitespace between header name and colon: b'X-A\\t: a'"),
        (b"X A: a", "invalid response header line: b'X A: a'"),
        (b"X\xe9: a", "invalid response header line: b'X\\xe9: a'"),
        (b"X(: a", "invalid response header line: b'X(: a'"),
        (b"X: a\x00b", "forbidden character '\\x00' in response head line: b'X: a\\x00b'"),
        (b"X: a\x01b", "forbidden character '\\x01' in response head line: b'X: a\\x01b'"),
        (b"X: a\x1fb", "forbidden character '\\x1f'"),
        (b"X: a\x7fb", "forbidden character '\\x7f'"),
        (b"X: a\rb", "forbidden character '\\r' in response head line: b'X: a\\rb'"),
        (b"X: a\r", "forbidden character '\\r' in response head line: b'X: a\\r'"),
        (b"X\x0b: a", "forbidden character '\\x0b'"),
    ],
)
def test_header_line_invalid(http11: ModuleType, line: bytes, message: str) -> None:
    data = b"HTTP/1.1 200 OK\r\nA: 1\r\n" if not line.startswith(b" ") else b"HTTP/1.1 200 OK\r\n"
    with pytest.raises(InvalidResponseError) as info:
        http11.parse_response_head(data + line + b"\r\nB: 2\r\n\r\n")
    assert message in str(info.value)


def test_first_bad_line_is_reported(http11: ModuleType) -> None:
    data = b"HTTP/1.1 200 OK\r\nbad line\r\nX: \x01\r\n\r\n"
    with pytest.raises(InvalidResponseError, match="invalid response header line: b'bad line'"):
        http11.parse_response_head(data)


def test_header_value_allows_tab_and_obs_text(http11: ModuleType) -> None:
    assert parse(http11, b"HTTP/1.1 200 OK\r\nX: a\tb\x80\xff\r\n\r\n")[3] == [
        ("X", "a\tb\x80\xff")
    ]


# --- interim responses -------------------------------------------------------------------------


def test_interim_responses_are_skipped(http11: ModuleType) -> None:
    interim = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 102 Processing\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
    )
    result = parse(http11, interim + NGINX_HEAD + b"body")
    assert result[:2] == (11, 200)
    assert result[-1] == len(interim) + len(NGINX_HEAD)
    assert http11.parse_response_head(interim) is None
    assert http11.parse_response_head(interim + NGINX_HEAD[:-1]) is None


def test_interim_response_errors_are_raised(http11: ModuleType) -> None:
    with pytest.raises(InvalidResponseError, match="invalid response header line"):
        http11.parse_response_head(b"HTTP/1.1 100 Continue\r\nbad\r\n\r\n")
    with pytest.raises(InvalidResponseError, match="status line: b'garbage'"):
        http11.parse_response_head(b"HTTP/1.1 100 Continue\r\n\r\ngarbage\r\n")


def test_101_is_final(http11: ModuleType) -> None:
    data = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    result = parse(http11, data + b"\x81\x05hello")
    assert result[1] == 101
    assert result[4:] == (False, "none", None, len(data))


# --- limits ------------------------------------------------------------------------------------


def test_max_head_bytes_boundary(http11: ModuleType) -> None:
    size = len(NGINX_HEAD)
    assert parse(http11, NGINX_HEAD, max_head_bytes=size)[-1] == size
    assert parse(http11, NGINX_HEAD + b"x" * 100, max_head_bytes=size)[-1] == size
    with pytest.raises(ResponseHeadTooLarge) as info:
        http11.parse_response_head(NGINX_HEAD, max_head_bytes=size - 1)
    assert str(info.value) == f"response head larger than max_head_bytes={size - 1} bytes"
    # Incomplete: None below the limit, an error once the buffer reaches it.
    assert http11.parse_response_head(NGINX_HEAD[: size - 2], max_head_bytes=size - 1) is None
    with pytest.raises(ResponseHeadTooLarge):
        http11.parse_response_head(NGINX_HEAD[: size - 1], max_head_bytes=size - 1)
    with pytest.raises(ResponseHeadTooLarge):
        http11.parse_response_head(bytearray(NGINX_HEAD[: size - 1]), max_head_bytes=size - 1)


def test_max_head_bytes_bare_lf_boundary(http11: ModuleType) -> None:
    data = b"HTTP/1.1 200 OK\nA: 1\n\n"
    assert parse(http11, data, max_head_bytes=len(data))[-1] == len(data)
    with pytest.raises(ResponseHeadTooLarge):
        http11.parse_response_head(data, max_head_bytes=len(data) - 1)


def test_max_head_bytes_counts_interim_heads(http11: ModuleType) -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    data = interim + NGINX_HEAD
    assert parse(http11, data, max_head_bytes=len(data))[-1] == len(data)
    with pytest.raises(ResponseHeadTooLarge):
        http11.parse_response_head(data, max_head_bytes=len(data) - 1)
    # an endless stream of 1xx ends at the limit
    with pytest.raises(ResponseHeadTooLarge):
        http11.parse_response_head(interim * 3000)


def test_interim_response_count_limit(http11: ModuleType) -> None:
    interim = b"HTTP/1.1 102 Processing\r\n\r\n"
    assert parse(http11, interim * 100 + NGINX_HEAD)[-1] == 100 * len(interim) + len(NGINX_HEAD)
    assert http11.parse_response_head(interim * 100) is None
    with pytest.raises(ResponseHeadTooLarge) as info:
        http11.parse_response_head(interim * 101)
    assert str(info.value) == "more than 100 interim (1xx) responses before the final one"


def test_default_limits_are_http_clients(http11: ModuleType) -> None:
    # http.client's bounds: 65536 bytes a line (its CRLF included) and 100 header fields.
    seventy_kb = response(*(f"X-{i}: {'a' * 1000}" for i in range(70)))
    assert len(seventy_kb) > 70000
    assert len(parse(http11, seventy_kb)[3]) == 70
    line = b"X: " + b"a" * (65536 - 5)  # + CRLF = 65536
    assert parse(http11, b"HTTP/1.1 200 OK\r\n" + line + b"\r\n\r\n")[1] == 200
    big = b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000
    assert http11.parse_response_head(big[:65537]) is None  # the line may still end in time
    with pytest.raises(ResponseHeadTooLarge, match="max_line_bytes=65536"):
        http11.parse_response_head(big[:65560])  # past the bound before its end: fail at once
    with pytest.raises(ResponseHeadTooLarge, match="max_line_bytes=65536"):
        http11.parse_response_head(big + b"\r\n\r\n")
    assert len(parse(http11, response(*(f"X-{i}: {i}" for i in range(100))))[3]) == 100
    with pytest.raises(ResponseHeadTooLarge, match="max_headers=100"):
        http11.parse_response_head(response(*(f"X-{i}: {i}" for i in range(101))))


def test_default_max_head_bytes_bounds_the_whole_head(http11: ModuleType) -> None:
    # 100 lines of 60 KB each pass http.client's bounds: the total bound (1 MiB) stops them.
    lines = [f"X-{i}: {'a' * 60000}" for i in range(20)]
    data = response(*lines)
    assert len(data) > 1048576
    assert http11.parse_response_head(data[:1048575]) is None
    with pytest.raises(ResponseHeadTooLarge, match="max_head_bytes=1048576"):
        http11.parse_response_head(data)
    assert len(parse(http11, data, max_head_bytes=2**21)[3]) == 20


@pytest.mark.parametrize("max_line_bytes", [20, 21, 22])
def test_max_line_bytes_boundary(http11: ModuleType, max_line_bytes: int) -> None:
    data = b"HTTP/1.1 200 OK\r\nX-Long: 1234567890\r\n\r\n"  # the X-Long line: 20 bytes
    if max_line_bytes >= 20:
        assert parse(http11, data, max_line_bytes=max_line_bytes)[1] == 200
    with pytest.raises(ResponseHeadTooLarge) as info:
        http11.parse_response_head(data, max_line_bytes=19)
    assert str(info.value) == "response head line longer than max_line_bytes=19 bytes"


def test_max_headers_boundary(http11: ModuleType) -> None:
    data = response(*(f"X-{i}: {i}" for i in range(5)))
    assert len(parse(http11, data, max_headers=5)[3]) == 5
    with pytest.raises(ResponseHeadTooLarge) as info:
        http11.parse_response_head(data, max_headers=4)
    assert str(info.value) == "response head has more than max_headers=4 header lines"
    many = response(*(f"X: {i}" for i in range(101)))
    assert len(parse(http11, many[: many.index(b"X: 100")] + b"\r\n")[3]) == 100
    with pytest.raises(ResponseHeadTooLarge, match="max_headers=100"):
        http11.parse_response_head(many)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_head_bytes": 0}, ValueError, "max_head_bytes must be > 0, got 0"),
        ({"max_head_bytes": -1}, ValueError, "max_head_bytes must be > 0, got -1"),
        ({"max_head_bytes": 1.5}, TypeError, "max_head_bytes must be an int, got float"),
        ({"max_head_bytes": True}, TypeError, "max_head_bytes must be an int, got bool"),
        ({"max_headers": 0}, ValueError, "max_headers must be > 0, got 0"),
        ({"max_headers": "5"}, TypeError, "max_headers must be an int, got str"),
        ({"request_method": b"GET"}, TypeError, "request_method must be a str, got bytes"),
    ],
)
def test_parse_bad_arguments(
    http11: ModuleType, kwargs: dict[str, Any], error: type, message: str
) -> None:
    with pytest.raises(error) as info:
        http11.parse_response_head(NGINX_HEAD, **kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize("data", ["HTTP/1.1 200 OK\r\n\r\n", None, [1, 2]])
def test_parse_bad_data_type(http11: ModuleType, data: Any) -> None:
    with pytest.raises(TypeError, match="data must be bytes, bytearray or memoryview, got"):
        http11.parse_response_head(data)


def test_huge_limits_are_accepted(http11: ModuleType) -> None:
    assert parse(http11, NGINX_HEAD, max_head_bytes=2**80, max_headers=2**70)[1] == 200


# --- framing and keep-alive --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "status_line", "headers", "framing", "keep_alive", "length"),
    [
        ("GET", "HTTP/1.1 200 OK", ["Content-Length: 5"], "length", True, 5),
        ("GET", "HTTP/1.1 200 OK", ["Content-Length: 0"], "length", True, 0),
        ("GET", "HTTP/1.1 200 OK", [], "close", False, None),
        ("GET", "HTTP/1.1 200 OK", ["Transfer-Encoding: chunked"], "chunked", True, None),
        ("GET", "HTTP/1.1 200 OK", ["Transfer-Encoding: Chunked"], "chunked", True, None),
        ("GET", "HTTP/1.1 200 OK", ["Transfer-Encoding: chunked, chunked"], "chunked", True, None),
        (
            "GET",
            "HTTP/1.1 200 OK",
            ["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
            "chunked",
            True,
            None,
        ),
        # where no body is read, a coding before chunked is not asked about
        ("HEAD", "HTTP/1.1 200 OK", ["Transfer-Encoding: gzip, chunked"], "none", True, None),
        (
            "GET",
            "HTTP/1.1 304 Not Modified",
            ["Transfer-Encoding: gzip, chunked"],
            "none",
            True,
            None,
        ),
        ("GET", "HTTP/1.1 200 OK", ["Transfer-Encoding: chunked ,"], "chunked", True, None),
        ("GET", "HTTP/1.1 200 OK", ["Transfer-Encoding: chunked, gzip"], "close", False, None),
        ("GET", "HTTP/1.1 200 OK", ["Transfer-Encoding: gzip"], "close", False, None),
        (
            "GET",
            "HTTP/1.1 200 OK",
            ["Transfer-Encoding: chunked", "Content-Length: 5"],
            "chunked",
            False,
            None,
        ),
        (
            "GET",
            "HTTP/1.0 200 OK",
            ["Transfer-Encoding: chunked", "Connection: keep-alive"],
            "chunked",
            False,
            None,
        ),
        ("HEAD", "HTTP/1.1 200 OK", ["Content-Length: 615"], "none", True, None),
        ("HEAD", "HTTP/1.1 200 OK", ["Transfer-Encoding: chunked"], "none", True, None),
        ("HEAD", "HTTP/1.1 200 OK", [], "none", True, None),
        ("HEAD", "HTTP/1.0 200 OK", [], "none", False, None),
        ("GET", "HTTP/1.1 204 No Content", ["Content-Length: 5"], "none", True, None),
        ("GET", "HTTP/1.1 304 Not Modified", ["Content-Length: 5"], "none", True, None),
        ("GET", "HTTP/1.1 205 Reset", [], "close", False, None),
        ("POST", "HTTP/1.1 201 Created", ["Content-Length: 2"], "length", True, 2),
        ("CONNECT", "HTTP/1.1 200 Connection established", [], "none", True, None),
        ("CONNECT", "HTTP/1.0 200 Connection established", [], "none", True, None),
        ("CONNECT", "HTTP/1.1 200 OK", ["Connection: close"], "none", True, None),
        ("CONNECT", "HTTP/1.1 407 Proxy Auth", ["Content-Length: 3"], "length", True, 3),
        ("CONNECT", "HTTP/1.1 300 Multiple", [], "close", False, None),
        ("head", "HTTP/1.1 200 OK", ["Content-Length: 3"], "length", True, 3),
        ("GET", "HTTP/1.1 101 Switching", ["Content-Length: 3"], "none", False, None),
    ],
)
def test_framing_table(
    http11: ModuleType,
    method: str,
    status_line: str,
    headers: list[str],
    framing: str,
    keep_alive: bool,
    length: int | None,
) -> None:
    result = parse(http11, response(*headers, status=status_line), request_method=method)
    assert result[4:7] == (keep_alive, framing, length)


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        ("1.1", [], True),
        ("1.1", ["Connection: close"], False),
        ("1.1", ["Connection: CLOSE"], False),
        ("1.1", ["Connection: keep-alive"], True),
        ("1.1", ["Connection: Upgrade, Close"], False),
        ("1.1", ["Connection: upgrade", "Connection: close"], False),
        ("1.1", ["Connection: closed"], True),
        ("1.1", ["Connection: x-close"], True),
        ("1.1", ["Connection: ,, close ,"], False),
        ("1.1", ["connection:\tclose\t"], False),
        ("1.1", ["Proxy-Connection: close"], True),
        ("1.0", [], False),
        ("1.0", ["Connection: keep-alive"], True),
        ("1.0", ["Connection: Keep-Alive"], True),
        ("1.0", ["Connection: foo, keep-alive"], True),
        ("1.0", ["Connection: keep-alive, close"], False),
        ("1.0", ["Connection: keep-alive", "Connection: close"], False),
        ("1.0", ["Connection: keepalive"], False),
        ("1.0", ["Keep-Alive: timeout=5"], False),
    ],
)
def test_keep_alive_table(
    http11: ModuleType, version: str, connection: list[str], keep_alive: bool
) -> None:
    data = response("Content-Length: 0", *connection, status=f"HTTP/{version} 200 OK")
    assert parse(http11, data)[4] is keep_alive


@pytest.mark.parametrize(
    ("values", "length"),
    [
        (["0"], 0),
        (["007"], 7),
        (["000000000000000000000000000000000000000005"], 5),
        (["5, 5"], 5),
        (["5,5,5"], 5),
        (["5", "5"], 5),
        (["05", "05"], 5),
        ([" 5\t"], 5),
        (["9223372036854775807"], 2**63 - 1),
    ],
)
def test_content_length_valid(http11: ModuleType, values: list[str], length: int) -> None:
    data = response(*(f"Content-Length: {v}" for v in values))
    assert parse(http11, data)[4:7] == (True, "length", length)


@pytest.mark.parametrize(
    "values",
    [
        [""],
        ["+5"],
        ["-1"],
        ["5, 6"],
        ["5", "6"],
        ["5", "05"],
        ["5, 05"],
        ["0", "00"],
        ["5,"],
        [",5"],
        ["5,,5"],
        ["5 5"],
        ["0x5"],
        ["5.0"],
        ["1e3"],
        ["\xb2"],
        ["9223372036854775808"],
        ["18446744073709551616"],
        ["99999999999999999999999999999"],
        ["1" * 5000],
    ],
)
def test_content_length_invalid(http11: ModuleType, values: list[str]) -> None:
    data = response(*(f"Content-Length: {v}" for v in values))
    with pytest.raises(InvalidResponseError) as info:
        http11.parse_response_head(data)
    expected = ", ".join(v.strip(" \t") for v in values)
    assert str(info.value) == f"invalid Content-Length: {expected!r}"
    # its own class, which the pool raises unwrapped (urllib3's InvalidHeader, as urllib3 does)
    assert type(info.value) is InvalidContentLengthError


def test_transfer_encoding_not_chunked_with_content_length(http11: ModuleType) -> None:
    data = response("Transfer-Encoding: gzip", "Content-Length: 5", "Transfer-Encoding: br")
    with pytest.raises(InvalidResponseError) as info:
        http11.parse_response_head(data)
    assert str(info.value) == (
        "Transfer-Encoding 'gzip, br' does not end in chunked, yet a Content-Length is present"
    )


@pytest.mark.parametrize(
    ("headers", "value"),
    [
        (["Transfer-Encoding: gzip, chunked"], "gzip, chunked"),
        (["Transfer-Encoding: gzip", "Transfer-Encoding: chunked"], "gzip, chunked"),
        (["Transfer-Encoding: chunked, gzip, chunked"], "chunked, gzip, chunked"),
        (["Transfer-Encoding: x-custom ,, Chunked"], "x-custom ,, Chunked"),
        (["Transfer-Encoding: gzip, chunked", "Content-Length: 5"], "gzip, chunked"),
    ],
)
def test_a_coding_before_chunked_is_refused(
    http11: ModuleType, headers: list[str], value: str
) -> None:
    # Only chunked is decoded: read, the body would be gzip's (or another coding's) bytes,
    # handed on as if they were the body. http.client reads them raw, chunk lines included;
    # h11 and Go's net/http refuse them.
    with pytest.raises(InvalidResponseError) as info:
        http11.parse_response_head(response(*headers))
    assert str(info.value) == (
        f"Transfer-Encoding {value!r} applies a coding other than chunked, which is not decoded"
    )


@pytest.mark.parametrize(
    ("method", "status_line", "headers"),
    [
        ("GET", "HTTP/1.1 200 OK", ["Content-Length: x", "Transfer-Encoding: chunked"]),
        ("GET", "HTTP/1.1 304 Not Modified", ["Content-Length: bad"]),
        ("HEAD", "HTTP/1.1 200 OK", ["Content-Length: -1"]),
        ("CONNECT", "HTTP/1.1 200 OK", ["Content-Length: 1, 2"]),
        ("GET", "HTTP/1.1 100 Continue", ["Content-Length: +0"]),
    ],
)
def test_content_length_is_checked_where_framing_ignores_it(
    http11: ModuleType, method: str, status_line: str, headers: list[str]
) -> None:
    data = response(*headers, status=status_line)
    with pytest.raises(InvalidResponseError, match="invalid Content-Length"):
        http11.parse_response_head(data, request_method=method)


@pytest.mark.parametrize(
    "values",
    [[""], [" , "], ["", ","], ["chunked folded"], ["gzip;q=1, chunked"], ["chunked", "a b"]],
)
def test_transfer_encoding_without_coding(http11: ModuleType, values: list[str]) -> None:
    data = response(*(f"Transfer-Encoding: {v}" for v in values))
    with pytest.raises(InvalidResponseError, match="invalid Transfer-Encoding"):
        http11.parse_response_head(data)


# --- ChunkedDecoder ----------------------------------------------------------------------------

CHUNKED = (
    b"5\r\nhello\r\n"
    b"1;name=value;x\r\n \r\n"
    b"0000010\r\n0123456789abcdef\r\n"
    b"A\r\n0123456789\r\n"
    b"0;last\r\n"
    b"Expires: never\r\n"
    b"X-Sum:\t 1 2 \r\n"
    b"\r\n"
)
CHUNKED_BODY = b"hello 0123456789abcdef0123456789"
CHUNKED_TRAILERS = [("Expires", "never"), ("X-Sum", "1 2")]


def decode(http11: ModuleType, pieces: list[bytes], **kwargs: Any) -> tuple[bytes, Any]:
    decoder = http11.ChunkedDecoder(**kwargs)
    body = b""
    for piece in pieces:
        out = decoder.feed(piece)
        assert type(out) is bytes
        body += out
    return body, decoder


def test_chunked_whole(http11: ModuleType) -> None:
    body, decoder = decode(http11, [CHUNKED + b"HTTP/1.1 200 OK\r\n"])
    assert body == CHUNKED_BODY
    assert decoder.done is True
    assert decoder.trailers == CHUNKED_TRAILERS
    assert decoder.unused == b"HTTP/1.1 200 OK\r\n"


def test_chunked_state_before_done(http11: ModuleType) -> None:
    decoder = http11.ChunkedDecoder()
    assert (decoder.done, decoder.trailers, decoder.unused) == (False, [], b"")
    assert decoder.feed(b"") == b""
    assert decoder.feed(b"3\r\nab") == b"ab"
    assert decoder.done is False


def test_chunked_split_at_every_offset(http11: ModuleType) -> None:
    data = CHUNKED + b"NEXT"
    for cut in range(len(data) + 1):
        for convert in (bytes, bytearray, memoryview):
            body, decoder = decode(http11, [convert(data[:cut]), convert(data[cut:])])
            assert body == CHUNKED_BODY, cut
            assert (decoder.done, decoder.trailers, decoder.unused) == (
                True,
                CHUNKED_TRAILERS,
                b"NEXT",
            ), cut


def test_chunked_byte_by_byte(http11: ModuleType) -> None:
    data = CHUNKED + b"NEXT"
    body, decoder = decode(http11, [data[i : i + 1] for i in range(len(data))])
    assert body == CHUNKED_BODY
    assert decoder.trailers == CHUNKED_TRAILERS
    assert decoder.unused == b"NEXT"


def test_chunked_feed_after_done_goes_to_unused(http11: ModuleType) -> None:
    decoder = http11.ChunkedDecoder()
    assert decoder.feed(b"0\r\n\r\nab") == b""
    assert decoder.feed(b"cd") == b""
    assert decoder.feed(bytearray(b"e")) == b""
    assert decoder.unused == b"abcde"
    assert decoder.done


def test_chunked_valid_content_length_trailer_is_kept(http11: ModuleType) -> None:
    _, decoder = decode(http11, [b"0\r\nContent-Length: 5\r\n\r\n"])
    assert decoder.trailers == [("Content-Length", "5")]


def test_chunked_empty_body(http11: ModuleType) -> None:
    body, decoder = decode(http11, [b"0\r\n\r\n"])
    assert (body, decoder.done, decoder.trailers, decoder.unused) == (b"", True, [], b"")


def test_chunked_large_chunk_in_many_feeds(http11: ModuleType) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    data = b"%x\r\n" % len(payload) + payload + b"\r\n0\r\n\r\n"
    pieces = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    body, decoder = decode(http11, pieces)
    assert body == payload
    assert decoder.done


@pytest.mark.parametrize("line", [b"5 ", b"5\t", b"5 ;a=b", b"5\t \t;a=b", b"5; a=b"])
def test_chunked_whitespace_before_extension_is_accepted(http11: ModuleType, line: bytes) -> None:
    # RFC 9112 7.1.1: BWS before ";"; http.client (so stock requests) accepts it, and also
    # trailing whitespace with no extension.
    data = line + b"\r\nhello\r\n0\r\n\r\n"
    for pieces in ([data], [data[i : i + 1] for i in range(len(data))]):
        assert decode(http11, pieces)[0] == b"hello"


def test_chunked_biggest_size_is_accepted(http11: ModuleType) -> None:
    decoder = http11.ChunkedDecoder()
    assert decoder.feed(b"7fffffffffffffff\r\nabc") == b"abc"
    decoder = http11.ChunkedDecoder()
    assert decoder.feed(b"00000000000000007FFFFFFFFFFFFFFF;x\r\nabc") == b"abc"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"x\r\n", "invalid chunk size line: b'x'"),
        (b"\r\n", "invalid chunk size line: b''"),
        (b"0x5\r\nhello\r\n", "invalid chunk size line: b'0x5'"),
        (b" 5\r\nhello\r\n", "invalid chunk size line: b' 5'"),
        (b"5 x\r\nhello\r\n", "invalid chunk size line: b'5 x'"),
        (b"5_0\r\nhello\r\n", "invalid chunk size line: b'5_0'"),
        (b"-5\r\n", "invalid chunk size line: b'-5'"),
        (b"+5\r\n", "invalid chunk size line: b'+5'"),
        (b"5\nhello\r\n", "invalid chunk size line: b'5'"),
        (b"5\r\r\nhello\r\n", "invalid chunk size line: b'5\\r\\r'"),
        (b"5;a\rb\r\nhello\r\n", "invalid chunk size line: b'5;a\\rb\\r'"),
        (b"8000000000000000\r\n", "invalid chunk size line: b'8000000000000000'"),
        (b"10000000000000000\r\n", "invalid chunk size line: b'10000000000000000'"),
        (b"fffffffffffffffffffff\r\n", "invalid chunk size line"),
        (b"5\r\nhellox\r\n", "chunk data not followed by CRLF: got b'x'"),
        (b"5\r\nhello\n0\r\n\r\n", "chunk data not followed by CRLF: got b'\\n'"),
        (b"5\r\nhello\rx", "chunk data not followed by CRLF: got b'x'"),
        (b"5\r\nhello\r\r", "chunk data not followed by CRLF: got b'\\r'"),
        (b"5\r\nhello\r\nz\r\n", "invalid chunk size line: b'z'"),
        (b"0\r\nX: 1\n\r\n", "invalid chunked trailer line: b'X: 1'"),
        (b"0\r\nX: 1\r\n 2\r\n\r\n", "invalid chunked trailer line: b' 2'"),
        (b"0\r\nX : 1\r\n\r\n", "invalid chunked trailer line: b'X : 1'"),
        (b"0\r\nno colon\r\n\r\n", "invalid chunked trailer line: b'no colon'"),
        (b"0\r\n: v\r\n\r\n", "invalid chunked trailer line: b': v'"),
        (b"0\r\nX: a\x00\r\n\r\n", "invalid chunked trailer line: b'X: a\\x00'"),
        (b"0\r\nX: a\x7f\r\n\r\n", "invalid chunked trailer line"),
        (b"0\r\n\n", "invalid chunked trailer line: b''"),
        (b"0\r\nContent-Length: \r\n\r\n", "invalid chunked trailer line: b'Content-Length: '"),
        (b"0\r\ncontent-length: +1\r\n\r\n", "invalid chunked trailer line"),
    ],
)
def test_chunked_errors(http11: ModuleType, data: bytes, message: str) -> None:
    for pieces in ([data], [data[i : i + 1] for i in range(len(data))]):
        with pytest.raises(InvalidChunkError) as info:
            decode(http11, pieces)
        assert message in str(info.value)


def test_chunked_error_is_invalid_response_error(http11: ModuleType) -> None:
    with pytest.raises(InvalidResponseError):
        http11.ChunkedDecoder().feed(b"zz\r\n")


def test_chunked_size_line_limit(http11: ModuleType) -> None:
    line = b"5;" + b"e" * 14 + b"\r\n"  # 18 bytes with CRLF
    body, decoder = decode(http11, [line + b"hello\r\n0\r\n\r\n"], max_line_bytes=18)
    assert body == b"hello" and decoder.done
    for pieces in ([line], [line[:9], line[9:]], [line[i : i + 1] for i in range(len(line))]):
        with pytest.raises(InvalidChunkError) as info:
            decode(http11, pieces, max_line_bytes=17)
        assert (
            str(info.value)
            == "chunk size line exceeded maximum allowed length (max_line_bytes=17 bytes)"
        )
    # an endless size line fails once the limit is reached, without waiting for the LF
    with pytest.raises(InvalidChunkError, match="max_line_bytes=65536"):
        decode(http11, [b"1" * 40000, b"1" * 40000])


def test_chunked_trailer_limit(http11: ModuleType) -> None:
    trailers = b"A: 1\r\nBB: 22\r\n\r\n"  # 16 bytes with the blank line
    data = b"0\r\n" + trailers + b"rest"
    _, decoder = decode(http11, [data], max_trailer_bytes=16)
    assert decoder.trailers == [("A", "1"), ("BB", "22")]
    assert decoder.unused == b"rest"
    for pieces in ([data], [data[i : i + 1] for i in range(len(data))]):
        with pytest.raises(InvalidChunkError) as info:
            decode(http11, pieces, max_trailer_bytes=15)
        assert str(info.value) == "chunked trailers larger than max_trailer_bytes=15 bytes"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_line_bytes": 0}, ValueError, "max_line_bytes must be > 0, got 0"),
        ({"max_trailer_bytes": -5}, ValueError, "max_trailer_bytes must be > 0, got -5"),
        ({"max_line_bytes": None}, TypeError, "max_line_bytes must be an int, got NoneType"),
    ],
)
def test_chunked_bad_arguments(
    http11: ModuleType, kwargs: dict[str, Any], error: type, message: str
) -> None:
    with pytest.raises(error) as info:
        http11.ChunkedDecoder(**kwargs)
    assert str(info.value) == message


def test_chunked_bad_feed_type(http11: ModuleType) -> None:
    with pytest.raises(TypeError, match="data must be bytes, bytearray or memoryview, got str"):
        http11.ChunkedDecoder().feed("0\r\n\r\n")


def test_chunked_attributes_are_read_only(http11: ModuleType) -> None:
    decoder = http11.ChunkedDecoder()
    for name in ("done", "trailers", "unused"):
        with pytest.raises(AttributeError):
            setattr(decoder, name, 1)


# --- the facade --------------------------------------------------------------------------------


def test_facade_exports_the_active_backend() -> None:
    from fastpool import _compat, _http11, _http11_py

    names = (
        "HAS_ACCEPT_ENCODING",
        "HAS_CONTENT_LENGTH",
        "HAS_HOST",
        "HAS_TRANSFER_ENCODING",
        "HAS_USER_AGENT",
        "ChunkedDecoder",
        "ResponseHead",
        "collect_request_headers",
        "header_store",
        "parse_response_head",
        "write_request_head",
    )
    assert _http11.__all__ == names
    assert _http11_py.__all__ == names
    if _compat.IMPLEMENTATION == "python":
        expected: ModuleType = _http11_py
    else:
        from fastpool import _http11_c

        expected = _http11_c
    for name in names:
        assert getattr(_http11, name) is getattr(expected, name)


def test_chunked_conflicting_content_length_trailers_are_an_error(http11: ModuleType) -> None:
    """Two Content-Length trailers that disagree are refused, as llhttp and h11 refuse them;
    equal ones are kept."""
    with pytest.raises(InvalidChunkError):
        http11.ChunkedDecoder().feed(b"0\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n")
    decoder = http11.ChunkedDecoder()
    decoder.feed(b"0\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n")
    assert decoder.done
    assert decoder.trailers == [("Content-Length", "5"), ("content-length", "5")]


# --- collect_request_headers and header_store --------------------------------------------------

SKIP = "@@@SKIP_HEADER@@@"
SKIPPABLE = frozenset({"accept-encoding", "host", "user-agent"})


def test_collect_request_headers_reports_the_names_present(http11: ModuleType) -> None:
    items = [("HOST", "a"), ("user-Agent", "b"), ("X-Other", "c"), ("content-length", "3")]
    pairs, present = http11.collect_request_headers(items, SKIP, SKIPPABLE)
    assert pairs == items
    assert present == http11.HAS_HOST | http11.HAS_USER_AGENT | http11.HAS_CONTENT_LENGTH
    _, present = http11.collect_request_headers([("Transfer-Encoding", "chunked")], SKIP, SKIPPABLE)
    assert present == http11.HAS_TRANSFER_ENCODING
    # bytes names count too, as urllib3 compares to_str(name.lower())
    items = [(b"HOST", b"x"), (b"user-agent", b"me")]
    pairs, present = http11.collect_request_headers(items, SKIP, SKIPPABLE)
    assert (pairs, present) == (items, http11.HAS_HOST | http11.HAS_USER_AGENT)
    assert http11.collect_request_headers(iter([]), SKIP, SKIPPABLE) == ([], 0)

    class Odd(str):  # a str subclass is asked for its own lower()
        def lower(self) -> str:
            return "host"

    assert http11.collect_request_headers([(Odd("X-A"), "1")], SKIP, SKIPPABLE)[1] == 1
    with pytest.raises(TypeError, match="pair"):
        http11.collect_request_headers([("Host",)], SKIP, SKIPPABLE)


def test_collect_request_headers_drops_skipped_values(http11: ModuleType) -> None:
    items = [("Accept-Encoding", SKIP), ("User-Agent", SKIP), ("Accept", "*/*")]
    pairs, present = http11.collect_request_headers(items, SKIP, SKIPPABLE)
    assert pairs == [("Accept", "*/*")]
    # skipped, but present: no default is added
    assert present == http11.HAS_USER_AGENT | http11.HAS_ACCEPT_ENCODING
    # urllib3's message, word for word
    message = "urllib3.util.SKIP_HEADER only supports 'Accept-Encoding', 'Host', 'User-Agent'"
    with pytest.raises(ValueError) as info:
        http11.collect_request_headers([("X-Custom", SKIP)], SKIP, SKIPPABLE)
    assert str(info.value) == message
    # a bytes name may be skipped; only a str value is the skip marker
    skipped = http11.collect_request_headers([(b"Accept-Encoding", SKIP)], SKIP, SKIPPABLE)
    assert skipped == ([], http11.HAS_ACCEPT_ENCODING)
    kept = [("X-Custom", SKIP.encode())]
    assert http11.collect_request_headers(kept, SKIP, SKIPPABLE) == (kept, 0)


def test_header_store_joins_repeats_under_the_first_seen_name(http11: ModuleType) -> None:
    from collections import OrderedDict

    from requests.structures import CaseInsensitiveDict
    from urllib3 import HTTPHeaderDict

    headers = [
        ("Set-Cookie", "a=1"),
        ("Content-Type", "text/plain"),
        ("set-cookie", "b=2"),
        ("X-LONG-" + "N" * 70, "v"),
        ("ÀB", "latin-1"),
    ]
    store = http11.header_store(headers)
    assert type(store) is OrderedDict
    assert list(http11.header_store(iter(headers)).items()) == list(store.items())
    assert list(store.items()) == [
        ("set-cookie", ("Set-Cookie", "a=1, b=2")),
        ("content-type", ("Content-Type", "text/plain")),
        ("x-long-" + "n" * 70, ("X-LONG-" + "N" * 70, "v")),
        ("àb", ("ÀB", "latin-1")),
    ]
    # What requests builds from urllib3's headers, CaseInsensitiveDict(HTTPHeaderDict(...)).
    expected = CaseInsensitiveDict(HTTPHeaderDict(headers))._store
    assert list(store.items()) == list(expected.items())
