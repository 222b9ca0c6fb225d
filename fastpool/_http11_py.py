"""HTTP/1.1 wire format, pure-Python twin of ``_http11_c``: request heads, response heads, chunks.

Three jobs, no I/O:

* :func:`write_request_head` validates and serialises ``METHOD target HTTP/1.1`` plus headers.
* :func:`parse_response_head` parses a response head from the start of a buffer and decides how
  the body is framed (RFC 9112 section 6.3) and whether the connection may be reused.
* :class:`ChunkedDecoder` decodes a ``Transfer-Encoding: chunked`` body fed in pieces.

Choices where the RFCs leave room, or where http.client, llhttp (httptools) and h11 differ:

* Request header values with CR, LF or NUL are rejected (http.client allows obs-fold there);
  request targets must be visible ASCII (http.client also refuses non-ASCII ones).
* Response heads may end their lines with a bare LF as well as CRLF (http.client and h11 accept
  it; llhttp in its default strict mode does not). A bare CR is an error.
* A response header line starting with SP/HT (obs-fold) is joined to the previous value with
  one space (RFC 9112 5.2: a user agent MUST replace obs-fold with SP; h11 does the same,
  llhttp rejects it). Before the first header it is an error.
* Header names must be tokens; whitespace before the colon is an error. Header values may hold
  HT and obs-text (0x80-0xFF) but no other control character and no DEL (llhttp rejects them,
  h11 lets them through). The SP/HT around a value is not part of it (RFC 9110 5.5; http.client
  keeps the trailing whitespace). The reason phrase may hold anything but NUL and CR.
* Only ``HTTP/1.x`` is accepted (both oracles let ``HTTP/2.0`` through); a minor version other
  than 0 is read as 1.1 (RFC 9112 2.3, as http.client does), and the status must be 100..999.
  Runs of SP/HT may split version, status and reason (RFC 9112 4 allows parsing on whitespace,
  and http.client does); the reason is kept without SP/HT around it (llhttp accepts 0xx). Empty lines before the status line are an
  error (llhttp skips them). A buffer that cannot start with ``HTTP/1.`` fails at once, without
  waiting for the whole head.
* 1xx interim responses other than 101 are parsed, then skipped. ``max_head_bytes`` bounds the
  bytes of all heads together (interim and final), so a stream of 1xx cannot grow the buffer.
  ``max_line_bytes`` (default 65536, http.client's) bounds each line with its line ending, and
  ``max_headers`` (default 100, http.client's) each head's header fields (obs-fold lines do
  not count); ``max_head_bytes`` (default 1 MiB) keeps a total bound that http.client lacks. More than
  100 interim responses (``MAX_INTERIM_RESPONSES``) raise ResponseHeadTooLarge: the caller
  parses from the start on each call, so a trickle of 1xx heads would cost quadratic time.
* 101 Switching Protocols is final with framing ``"none"`` and ``keep_alive`` False: there is
  no HTTP body (http.client reads none either) and the socket now speaks another protocol.
  A 2xx to CONNECT is framing ``"none"`` with ``keep_alive`` True: the tunnel takes the socket.
  ``request_method`` is compared as given (methods are case-sensitive): only ``"HEAD"`` and
  ``"CONNECT"`` are special.
* Content-Length: every value of every Content-Length header, comma lists included, must be a
  decimal integer below 2**63 and all must be the same digits (``"5, 5"`` is 5, ``"05"`` is 5,
  ``"05, 5"`` is an error; h11 agrees, llhttp rejects all lists and repeats). It is checked in
  every response, also where framing ignores it (HEAD, 204, 304, with Transfer-Encoding), as
  both oracles do.
* Transfer-Encoding ending in ``chunked`` (case-insensitive, empty list elements ignored) wins
  over Content-Length, but then the connection is not reused (smuggling guard; llhttp rejects the
  pair, h11 accepts it). The same holds for chunked in an HTTP/1.0 response (RFC 9112 6.1).
  Another coding before chunked (``gzip, chunked``) is an error: only chunked is decoded, and
  the body would be that coding's bytes (h11 and Go's net/http refuse it too; http.client
  reads it raw, chunk lines included). Repeated chunked is read once (as http.client reads it
  from two header lines).
  Other codings mean read-to-close (h11 rejects them), but with a Content-Length as well they
  are an error (both oracles reject that). A Transfer-Encoding with no coding at all, or a
  coding that is not a token (parameters included), is an error.
* Chunked bodies are strict, as both oracles are: every line ends in CRLF, the size is hex
  digits with nothing but SP/HT (RFC 9112 7.1.1's BWS) between them and ``;`` or CRLF (no sign,
  ``0x`` or leading space, which http.client's ``int()`` would take: a framing that two
  parsers may read differently is a smuggling risk), sizes must be below 2**63, trailers may
  not use obs-fold, and a Content-Length trailer must be valid (it is otherwise ignored).
  Chunk extensions are skipped unread (any bytes but CR).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Final, Union

from .exceptions import (
    MSG_HTTP_BAD_CHAR,
    MSG_HTTP_BAD_CHUNK_SIZE,
    MSG_HTTP_BAD_CONTENT_LENGTH,
    MSG_HTTP_BAD_HEADER_LINE,
    MSG_HTTP_BAD_HEADER_NAME,
    MSG_HTTP_BAD_HEADER_VALUE,
    MSG_HTTP_BAD_METHOD,
    MSG_HTTP_BAD_STATUS_LINE,
    MSG_HTTP_BAD_TARGET,
    MSG_HTTP_BAD_TRAILER,
    MSG_HTTP_BAD_TRANSFER_ENCODING,
    MSG_HTTP_CHUNK_LINE_TOO_LONG,
    MSG_HTTP_CHUNK_NO_CRLF,
    MSG_HTTP_EMPTY_TARGET,
    MSG_HTTP_HEAD_TOO_LARGE,
    MSG_HTTP_HEADER_NAME_SPACE,
    MSG_HTTP_HEADER_NOT_LATIN1,
    MSG_HTTP_LINE_TOO_LONG,
    MSG_HTTP_NOT_BUFFER,
    MSG_HTTP_NOT_PAIR,
    MSG_HTTP_NOT_POSITIVE,
    MSG_HTTP_NOT_STR_OR_BYTES,
    MSG_HTTP_SKIP_HEADER,
    MSG_HTTP_TE_WITH_LENGTH,
    MSG_HTTP_TOO_MANY_HEADERS,
    MSG_HTTP_TOO_MANY_INTERIM,
    MSG_HTTP_TRAILERS_TOO_LARGE,
    MSG_HTTP_TRANSFER_CODING,
    MSG_NOT_INT,
    MSG_NOT_STR,
    InvalidChunkError,
    InvalidContentLengthError,
    InvalidRequestError,
    InvalidResponseError,
    ResponseHeadTooLarge,
)

__all__ = (
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

Buffer = Union[bytes, bytearray, memoryview]
HeaderPart = Union[str, bytes]

#: Error messages show at most this many bytes of the offending line.
SHOW_BYTES: Final = 80
#: Content-Length and chunk sizes must stay below this (what a C ``int64`` holds).
MAX_SIZE: Final = 2**63 - 1
#: The default bound on a response head's bytes, interim heads included (a hostile server's
#: endless head; http.client's own bounds are per line and per header count only).
MAX_HEAD_BYTES: Final = 1048576
#: http.client's bounds: a line's bytes (its line ending included) and a head's header fields.
MAX_LINE_BYTES: Final = 65536
MAX_HEADERS: Final = 100
#: At most this many 1xx interim responses before the final one: every call parses them all
#: again, so a server trickling 1xx heads could otherwise make the caller's work quadratic.
MAX_INTERIM_RESPONSES: Final = 100

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET_BAD = re.compile(r"[^\x21-\x7e]")
_VALUE_BAD = re.compile(r"[\r\n\x00]")
# In a response header line: every control character but HT, and DEL (CR here is a bare CR).
_LINE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# The same over a whole head, whose lines end in LF (after CRLF became LF).
_HEAD_BAD = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_STATUS_BAD = re.compile(r"[\x00\r]")
_DIGITS = frozenset("0123456789")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]+(?=[ \t]*(?:;|\Z))")
_STATUS_PREFIX: Final = b"HTTP/1."

#: collect_request_headers' bits: which of these header names a request holds.
HAS_HOST: Final = 1
HAS_USER_AGENT: Final = 2
HAS_CONTENT_LENGTH: Final = 4
HAS_TRANSFER_ENCODING: Final = 8
HAS_ACCEPT_ENCODING: Final = 16
_REQUEST_HEADER_BITS: Final = {
    "host": HAS_HOST,
    "user-agent": HAS_USER_AGENT,
    "content-length": HAS_CONTENT_LENGTH,
    "transfer-encoding": HAS_TRANSFER_ENCODING,
    "accept-encoding": HAS_ACCEPT_ENCODING,
}


def _show(line: str) -> bytes:
    """The offending line as received, cut short, for an error message."""
    return line[:SHOW_BYTES].encode("latin-1")


def _check_limit(name: str, value: object) -> int:
    if type(value) is not int:
        raise TypeError(MSG_NOT_INT.format(name=name, type=type(value).__name__))
    if value <= 0:
        raise ValueError(MSG_HTTP_NOT_POSITIVE.format(name=name, value=value))
    return value


# --- request head ------------------------------------------------------------------------------


def _as_str(name: str, value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("latin-1")
    raise TypeError(MSG_HTTP_NOT_STR_OR_BYTES.format(name=name, type=type(value).__name__))


def write_request_head(
    method: HeaderPart, target: HeaderPart, headers: Iterable[tuple[HeaderPart, HeaderPart]]
) -> bytes:
    """Return the request head ``b"METHOD target HTTP/1.1\\r\\nName: value\\r\\n...\\r\\n\\r\\n"``.

    ``headers`` is an iterable of ``(name, value)`` pairs (a list of tuples, a dict's
    ``.items()``); order and duplicates are kept. Names and values may be str (encoded latin-1,
    as http.client does) or bytes. Raises :class:`~fastpool.exceptions.InvalidRequestError`,
    naming the field, for a method that is not a token, an empty target or one with a control
    character, space or DEL, a header name that is not a token, a header value with CR, LF or
    NUL (stricter than http.client, which lets obs-fold through) or one not encodable in
    latin-1; ``TypeError`` for a part that is neither str nor bytes. Nothing is returned then.
    """
    method_s = _as_str("method", method)
    target_s = _as_str("target", target)
    if _TOKEN.fullmatch(method_s) is None:
        raise InvalidRequestError(MSG_HTTP_BAD_METHOD.format(method=method_s))
    if not target_s:
        raise InvalidRequestError(MSG_HTTP_EMPTY_TARGET)
    if _TARGET_BAD.search(target_s) is not None:
        raise InvalidRequestError(MSG_HTTP_BAD_TARGET.format(target=target_s))
    parts = [method_s, " ", target_s, " HTTP/1.1\r\n"]
    for pair in headers:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(MSG_HTTP_NOT_PAIR.format(type=type(pair).__name__))
        name = _as_str("header name", pair[0])
        if _TOKEN.fullmatch(name) is None:
            raise InvalidRequestError(MSG_HTTP_BAD_HEADER_NAME.format(name=name))
        value = _as_str(f"header {name!r} value", pair[1])
        if _VALUE_BAD.search(value) is not None:
            raise InvalidRequestError(MSG_HTTP_BAD_HEADER_VALUE.format(name=name))
        parts += (name, ": ", value, "\r\n")
    parts.append("\r\n")
    text = "".join(parts)
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        pass
    # Name the culprit: method, target and header names are ASCII, so it is a value.
    for i in range(4, len(parts) - 1, 4):
        try:
            parts[i + 2].encode("latin-1")
        except UnicodeEncodeError:
            raise InvalidRequestError(MSG_HTTP_HEADER_NOT_LATIN1.format(name=parts[i])) from None
    raise AssertionError(
        "unreachable: a part failed to encode but none is found"
    )  # pragma: no cover


def collect_request_headers(
    items: Iterable[tuple[HeaderPart, HeaderPart]], skip: str, skippable: frozenset[str]
) -> tuple[list[tuple[HeaderPart, HeaderPart]], int]:
    """One pass over a request's ``(name, value)`` pairs, for the caller's defaults (urllib3's
    rules).

    Returns the pairs to send (those whose value is the str ``skip`` left out) and a bit set of
    the header names present, compared case-insensitively, str or bytes: ``HAS_HOST``,
    ``HAS_USER_AGENT``, ``HAS_CONTENT_LENGTH``, ``HAS_TRANSFER_ENCODING``,
    ``HAS_ACCEPT_ENCODING``. A ``skip`` value on
    a name outside ``skippable`` (lower-case names) raises ValueError; an item that is not a
    pair raises TypeError. Nothing is validated for the wire here: :func:`write_request_head`
    does that.
    """
    pairs = []
    present = 0
    for pair in items:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(MSG_HTTP_NOT_PAIR.format(type=type(pair).__name__))
        name, value = pair
        key = _lower_key(name)
        present |= _REQUEST_HEADER_BITS.get(key, 0)
        if isinstance(value, str) and value == skip:
            if key not in skippable:
                names = "', '".join(name.title() for name in sorted(skippable))
                raise ValueError(MSG_HTTP_SKIP_HEADER.format(names=names))
            continue
        pairs.append((name, value))
    return pairs, present


def _lower_key(name: Any) -> Any:
    """``name.lower()``, a bytes name as str (urllib3 compares ``to_str(name.lower())``)."""
    key = name.lower()
    if isinstance(key, bytes):
        return key.decode("latin-1")
    return key


def header_store(headers: list[tuple[str, str]]) -> OrderedDict[str, tuple[str, str]]:
    """``lower name -> (name as first seen, the values joined with ", ")`` in first-seen order.

    The combination of repeated fields RFC 9110 (5.3) allows, and the store requests'
    ``CaseInsensitiveDict`` keeps; ``headers`` is a :attr:`ResponseHead.headers` list.
    """
    store: OrderedDict[str, tuple[str, str]] = OrderedDict()
    for pair in headers:
        name, value = pair
        key = name.lower()
        seen = store.get(key)
        if seen is None:
            # the parser's pair itself (a tuple: nothing can change it), not a copy
            store[key] = pair if type(pair) is tuple else (name, value)
        else:
            store[key] = (seen[0], f"{seen[1]}, {value}")
    return store


# --- response head -----------------------------------------------------------------------------


class ResponseHead:
    """A parsed response head (read-only).

    ``version`` is 10 or 11; ``status`` an int; ``reason`` a str (maybe ``""``); ``headers`` a
    list of ``(name, value)`` str pairs, latin-1 decoded, in order with duplicates, names as
    received and values without surrounding whitespace; ``keep_alive`` tells whether the
    connection may be reused after this response's body; ``framing`` is ``"none"``,
    ``"length"``, ``"chunked"`` or ``"close"`` (read until the server closes);
    ``content_length`` is the body length when framing is ``"length"``, else None;
    ``content_encoding`` the Content-Encoding values joined with ``", "`` (``""``: none);
    ``sets_cookies`` whether a Set-Cookie or Set-Cookie2 header came (found in the framing
    scan, so a response needs no scan of its own).
    """

    __slots__ = (
        "_content_encoding",
        "_content_length",
        "_framing",
        "_headers",
        "_keep_alive",
        "_reason",
        "_sets_cookies",
        "_status",
        "_version",
    )

    def __init__(
        self,
        version: int,
        status: int,
        reason: str,
        headers: list[tuple[str, str]],
        keep_alive: bool,
        framing: str,
        content_length: int | None,
    ) -> None:
        self._version = version
        self._status = status
        self._reason = reason
        self._headers = headers
        self._keep_alive = keep_alive
        self._framing = framing
        self._content_length = content_length
        # made by hand: scanned here (the parser's _frame sets what its own scan found)
        encodings = [v for n, v in headers if n.lower() == "content-encoding"]
        self._content_encoding = ", ".join(encodings)
        self._sets_cookies = any(n.lower() in ("set-cookie", "set-cookie2") for n, _ in headers)

    @property
    def version(self) -> int:
        """10 for HTTP/1.0, 11 for HTTP/1.1."""
        return self._version

    @property
    def status(self) -> int:
        """The status code, 100..999."""
        return self._status

    @property
    def reason(self) -> str:
        """The reason phrase, maybe ``""``."""
        return self._reason

    @property
    def headers(self) -> list[tuple[str, str]]:
        """``(name, value)`` pairs in order, duplicates kept."""
        return self._headers

    @property
    def keep_alive(self) -> bool:
        """Whether the connection may be reused after this response's body."""
        return self._keep_alive

    @property
    def framing(self) -> str:
        """``"none"``, ``"length"``, ``"chunked"`` or ``"close"``."""
        return self._framing

    @property
    def content_length(self) -> int | None:
        """The body length when ``framing == "length"``, else None."""
        return self._content_length

    @property
    def content_encoding(self) -> str:
        """The Content-Encoding values joined with ``", "`` (``""``: none)."""
        return self._content_encoding

    @property
    def sets_cookies(self) -> bool:
        """Whether a Set-Cookie or Set-Cookie2 header came."""
        return self._sets_cookies

    def __repr__(self) -> str:
        return (
            f"<ResponseHead HTTP/{self._version // 10}.{self._version % 10} {self._status} "
            f"{self._reason!r} framing={self._framing!r} "
            f"content_length={self._content_length!r} keep_alive={self._keep_alive!r} "
            f"headers={len(self._headers)}>"
        )


def _find_head_end(data: bytes, start: int, limit: int) -> int:
    """The index just past the blank line ending the head at ``start``, or -1 (within limit)."""
    crlf = data.find(b"\n\r\n", start, limit)
    lf = data.find(b"\n\n", start, limit if crlf < 0 else crlf + 1)
    if lf >= 0:
        return lf + 2
    return -1 if crlf < 0 else crlf + 3


def _check_lines(data: bytes, start: int, stop: int, complete: bool, max_line: int) -> None:
    """Raise when a line of ``data[start:stop]`` (with its LF) is longer than ``max_line``;
    the last piece counts too when the head is not ``complete`` (it can only grow)."""
    if stop - start <= max_line:
        return
    line = start
    while True:
        lf = data.find(b"\n", line, stop)
        end = stop if lf < 0 else lf + 1
        if end - line > max_line and (lf >= 0 or not complete):
            raise ResponseHeadTooLarge(MSG_HTTP_LINE_TOO_LONG.format(limit=max_line))
        if lf < 0:
            return
        line = lf + 1


def _first_line(data: bytes, start: int, stop: int) -> str:
    end = data.find(b"\n", start, stop)
    line = data[start : stop if end < 0 else end]
    if line.endswith(b"\r"):
        line = line[:-1]
    return line.decode("latin-1")


def _parse_status_line(line: str) -> tuple[int, int, str]:
    # HTTP/1.<digit>, then status and reason split by runs of SP/HT (RFC 9112 4 lets a
    # recipient parse on whitespace, as http.client does); the reason without SP/HT around it.
    i = 8
    while i < len(line) and line[i] in " \t":
        i += 1
    if (
        i == 8
        or len(line) < i + 3
        or not line.startswith("HTTP/1.")
        or line[7] not in _DIGITS
        or line[i] not in "123456789"
        or line[i + 1] not in _DIGITS
        or line[i + 2] not in _DIGITS
        or (len(line) > i + 3 and line[i + 3] not in " \t")
    ):
        raise InvalidResponseError(MSG_HTTP_BAD_STATUS_LINE.format(line=_show(line)))
    version = 10 if line[7] == "0" else 11
    return version, int(line[i : i + 3]), line[i + 3 :].strip(" \t")


def _connection_tokens(value: str) -> tuple[bool, bool]:
    close = keep_alive = False
    for token in value.split(","):
        token = token.strip(" \t").lower()
        if token == "close":
            close = True
        elif token == "keep-alive":
            keep_alive = True
    return close, keep_alive


def _content_length(values: list[str]) -> int:
    # Every comma-separated element of every value must be the same digit string (as h11
    # demands; "05" and "5" differ), below 2**63.
    first = ""
    for value in values:
        for element in value.split(","):
            element = element.strip(" \t")
            if (
                not element
                or not _DIGITS.issuperset(element)
                or len(element.lstrip("0")) > 19
                or (first and element != first)
            ):
                first = ""
                break
            first = element
        if not first:
            break
    else:
        number = int(first.lstrip("0") or "0")
        if number <= MAX_SIZE:
            return number
    raise InvalidContentLengthError(MSG_HTTP_BAD_CONTENT_LENGTH.format(value=", ".join(values)))


def _parse_head(text: str, request_method: str, max_headers: int) -> ResponseHead:
    """Parse one complete head: ``text`` is latin-1, ends with its blank line."""
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    del lines[-2:]  # the blank line's two empty pieces
    # One regex over the whole head; only a head with a suspicious byte is checked line by line.
    suspicious = _HEAD_BAD.search(text) is not None
    status_line = lines[0]
    if suspicious:
        bad = _STATUS_BAD.search(status_line)
        if bad is not None:
            raise InvalidResponseError(
                MSG_HTTP_BAD_CHAR.format(char=bad.group(), line=_show(status_line))
            )
    version, status, reason = _parse_status_line(status_line)
    headers: list[tuple[str, str]] = []
    folds: list[str] = []  # obs-fold pieces of the last header, joined when it ends
    for i in range(1, len(lines)):
        line = lines[i]
        if suspicious:
            bad = _LINE_BAD.search(line)
            if bad is not None:
                raise InvalidResponseError(
                    MSG_HTTP_BAD_CHAR.format(char=bad.group(), line=_show(line))
                )
        if line[0] in " \t":  # obs-fold
            if not headers:
                raise InvalidResponseError(MSG_HTTP_BAD_HEADER_LINE.format(line=_show(line)))
            piece = line.strip(" \t")
            if piece:
                folds.append(piece)
            continue
        if folds:
            _join_folds(headers, folds)
            folds = []
        colon = line.find(":")
        if colon <= 0:
            raise InvalidResponseError(MSG_HTTP_BAD_HEADER_LINE.format(line=_show(line)))
        if line[colon - 1] in " \t":
            raise InvalidResponseError(MSG_HTTP_HEADER_NAME_SPACE.format(line=_show(line)))
        if _TOKEN.fullmatch(line, 0, colon) is None:
            raise InvalidResponseError(MSG_HTTP_BAD_HEADER_LINE.format(line=_show(line)))
        if len(headers) == max_headers:
            raise ResponseHeadTooLarge(MSG_HTTP_TOO_MANY_HEADERS.format(limit=max_headers))
        headers.append((line[:colon], line[colon + 1 :].strip(" \t")))
    if folds:
        _join_folds(headers, folds)
    return _frame(version, status, reason, headers, request_method)


def _join_folds(headers: list[tuple[str, str]], folds: list[str]) -> None:
    """Join the obs-fold pieces onto the last header, one SP between non-empty parts: once,
    not a string concatenation per fold line (quadratic in a hostile head of fold lines)."""
    name, value = headers[-1]
    headers[-1] = (name, " ".join([value, *folds]) if value else " ".join(folds))


#: the lengths of connection, set-cookie, set-cookie2, content-length, content-encoding and
#: transfer-encoding
_FRAMING_NAME_SIZES = frozenset((10, 11, 14, 16, 17))


def _frame(
    version: int, status: int, reason: str, headers: list[tuple[str, str]], request_method: str
) -> ResponseHead:
    """Decide keep-alive and body framing (RFC 9112 sections 6.3 and 9.3)."""
    close = keep_alive_token = sets_cookies = False
    lengths: list[str] = []
    codings: list[str] = []
    encodings: list[str] = []
    for name, value in headers:
        if len(name) not in _FRAMING_NAME_SIZES:
            continue  # lower() only the names of a length that may match
        lower = name.lower()
        if lower == "connection":
            c, k = _connection_tokens(value)
            close |= c
            keep_alive_token |= k
        elif lower == "content-length":
            lengths.append(value)
        elif lower == "transfer-encoding":
            codings.append(value)
        elif lower == "content-encoding":
            encodings.append(value)
        elif lower == "set-cookie" or lower == "set-cookie2":
            sets_cookies = True
    keep_alive = not close and (version == 11 or keep_alive_token)
    # Checked even where framing ignores it: both oracles reject a bad one anywhere.
    length = _content_length(lengths) if lengths else None
    content_length: int | None = None
    if status == 101:
        framing = "none"
        keep_alive = False
    elif request_method == "HEAD" or status < 200 or status == 204 or status == 304:
        framing = "none"
    elif request_method == "CONNECT" and status < 300:
        framing = "none"
        keep_alive = True  # the tunnel takes over the socket
    elif codings:
        last = ""
        other = False  # a coding other than chunked among them
        for value in codings:
            for coding in value.split(","):
                coding = coding.strip(" \t")
                if coding:
                    if _TOKEN.fullmatch(coding) is None:
                        last = ""
                        break
                    last = coding
                    other = other or coding.lower() != "chunked"
            if not last:
                break
        if not last:
            raise InvalidResponseError(
                MSG_HTTP_BAD_TRANSFER_ENCODING.format(value=", ".join(codings))
            )
        if last.lower() == "chunked":
            if other:  # (gzip, chunked): the body would be gzip's bytes, silently
                raise InvalidResponseError(
                    MSG_HTTP_TRANSFER_CODING.format(value=", ".join(codings))
                )
            framing = "chunked"
            if lengths or version == 10:
                keep_alive = False  # framing the server may not mean: never reuse
        elif lengths:
            raise InvalidResponseError(MSG_HTTP_TE_WITH_LENGTH.format(value=", ".join(codings)))
        else:
            framing = "close"
    elif lengths:
        framing = "length"
        content_length = length
    else:
        framing = "close"
    if framing == "close":
        keep_alive = False
    head = ResponseHead.__new__(ResponseHead)
    head._version = version
    head._status = status
    head._reason = reason
    head._headers = headers
    head._keep_alive = keep_alive
    head._framing = framing
    head._content_length = content_length
    head._content_encoding = ", ".join(encodings)
    head._sets_cookies = sets_cookies
    return head


def parse_response_head(
    data: Buffer,
    request_method: str = "GET",
    max_head_bytes: int = MAX_HEAD_BYTES,
    max_headers: int = MAX_HEADERS,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> tuple[ResponseHead, int] | None:
    """Parse the response head at the start of ``data``; None if it is not complete yet.

    Returns ``(head, consumed)``: ``consumed`` counts the bytes up to and including the head's
    blank line. 1xx interim responses (but 101) are skipped, their bytes counted in
    ``consumed``. ``request_method`` (default ``"GET"``) matters for HEAD and CONNECT.
    Raises :class:`~fastpool.exceptions.ResponseHeadTooLarge` when the heads do not end within
    ``max_head_bytes`` (default 1048576) bytes, a line (with its line ending) is longer than
    ``max_line_bytes`` (default 65536) or a head has more than ``max_headers`` (default 100)
    header lines, and :class:`~fastpool.exceptions.InvalidResponseError` for a malformed head.
    """
    max_head_bytes = _check_limit("max_head_bytes", max_head_bytes)
    max_headers = _check_limit("max_headers", max_headers)
    max_line_bytes = _check_limit("max_line_bytes", max_line_bytes)
    if not isinstance(request_method, str):
        raise TypeError(
            MSG_NOT_STR.format(name="request_method", type=type(request_method).__name__)
        )
    if type(data) is not bytes:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(MSG_HTTP_NOT_BUFFER.format(name="data", type=type(data).__name__))
        data = bytes(data[:max_head_bytes])
    size = len(data)
    stop = min(size, max_head_bytes)
    start = 0
    interim = 0
    while True:
        # Fail fast on what cannot become a status line (HTTP/0.9, another protocol).
        seen = min(stop - start, len(_STATUS_PREFIX))
        if data[start : start + seen] != _STATUS_PREFIX[:seen]:
            line = _first_line(data, start, stop)
            raise InvalidResponseError(MSG_HTTP_BAD_STATUS_LINE.format(line=_show(line)))
        end = _find_head_end(data, start, stop)
        if end < 0:
            _check_lines(data, start, stop, False, max_line_bytes)
            if size >= max_head_bytes:
                raise ResponseHeadTooLarge(MSG_HTTP_HEAD_TOO_LARGE.format(limit=max_head_bytes))
            return None
        _check_lines(data, start, end, True, max_line_bytes)
        head = _parse_head(data[start:end].decode("latin-1"), request_method, max_headers)
        if head._status >= 200 or head._status == 101:
            return head, end
        interim += 1
        if interim > MAX_INTERIM_RESPONSES:
            raise ResponseHeadTooLarge(
                MSG_HTTP_TOO_MANY_INTERIM.format(limit=MAX_INTERIM_RESPONSES)
            )
        start = end


# --- chunked body ------------------------------------------------------------------------------

_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


class ChunkedDecoder:
    """Decode a ``Transfer-Encoding: chunked`` body fed in pieces of any size.

    :meth:`feed` returns the body bytes found in each piece. ``done`` turns True after the
    last chunk and the trailers' blank line; ``trailers`` holds the trailer fields as
    ``(name, value)`` str pairs; ``unused`` the bytes fed after the end. Chunk extensions are
    ignored. A chunk-size line may be at most ``max_line_bytes`` (default 65536) bytes, the
    trailer section at most ``max_trailer_bytes`` (default 65536) bytes; beyond that, and for a
    malformed size, a missing CRLF after chunk data or a bad trailer line,
    :class:`~fastpool.exceptions.InvalidChunkError` is raised.

    :meth:`feed_chunk` decodes one piece of one chunk at a time instead (the pieces urllib3's
    ``read_chunked`` yields); the input after that piece is held back (``held``) and decoded
    first by the next call of either method.
    """

    __slots__ = (
        "_held",
        "_held_pos",
        "_max_line",
        "_max_trailer",
        "_partial",
        "_remaining",
        "_state",
        "_trailer_bytes",
        "_trailers",
        "_unused",
    )

    def __init__(self, max_line_bytes: int = 65536, max_trailer_bytes: int = 65536) -> None:
        self._max_line = _check_limit("max_line_bytes", max_line_bytes)
        self._max_trailer = _check_limit("max_trailer_bytes", max_trailer_bytes)
        self._state = _SIZE
        self._remaining = 0  # body bytes left in this chunk, or CRLF bytes left after it
        self._partial = b""  # an incomplete size or trailer line
        self._trailer_bytes = 0
        self._trailers: list[tuple[str, str]] = []
        self._unused = b""
        self._held = b""  # input feed_chunk() stopped before, from _held_pos on
        self._held_pos = 0

    @property
    def done(self) -> bool:
        """True once the last chunk and the trailer section have been read."""
        return self._state == _DONE

    @property
    def trailers(self) -> list[tuple[str, str]]:
        """The trailer fields, ``(name, value)`` str pairs in order."""
        return self._trailers

    @property
    def unused(self) -> bytes:
        """Bytes fed after the end of the body (the next response, or garbage)."""
        return self._unused

    @property
    def chunk_left(self) -> int:
        """Body bytes of the current chunk still to come; 0 between chunks (after a chunk's
        data, before the next chunk's data begins)."""
        return self._remaining if self._state == _DATA else 0

    @property
    def crlf_left(self) -> int:
        """Bytes of the CRLF after the current chunk's data still to come (2 or 1), else 0."""
        return self._remaining if self._state == _DATA_END else 0

    @property
    def held(self) -> int:
        """How many input bytes :meth:`feed_chunk` held back (not decoded yet)."""
        return len(self._held) - self._held_pos

    def _line(self, data: bytes, pos: int, limit: int) -> tuple[bytes, int]:
        """Take one CRLF line from ``data[pos:]`` (joined with a held partial one).

        Returns ``(line without CRLF, next pos)``, or ``(b"", -1)`` if the line is not complete.
        ``limit`` bounds the line with its CRLF.
        """
        lf = data.find(b"\n", pos, pos + limit - len(self._partial))
        if lf < 0:
            if len(self._partial) + len(data) - pos >= limit:
                if self._state == _SIZE:
                    message = MSG_HTTP_CHUNK_LINE_TOO_LONG.format(limit=self._max_line)
                else:
                    message = MSG_HTTP_TRAILERS_TOO_LARGE.format(limit=self._max_trailer)
                raise InvalidChunkError(message)
            self._partial += data[pos:]
            return b"", -1
        line = data[pos:lf]
        if self._partial:
            line = self._partial + line
            self._partial = b""
        if not line.endswith(b"\r") or b"\r" in line[:-1]:
            raise InvalidChunkError(
                (MSG_HTTP_BAD_CHUNK_SIZE if self._state == _SIZE else MSG_HTTP_BAD_TRAILER).format(
                    line=line[:SHOW_BYTES]
                )
            )
        return line[:-1], lf + 1

    def _chunk_size(self, line: bytes) -> int:
        match = _CHUNK_SIZE.match(line)  # hex digits, then ";" or the end
        if match is None or len(match.group().lstrip(b"0")) > 16:
            raise InvalidChunkError(MSG_HTTP_BAD_CHUNK_SIZE.format(line=line[:SHOW_BYTES]))
        size = int(match.group(), 16)
        if size > MAX_SIZE:
            raise InvalidChunkError(MSG_HTTP_BAD_CHUNK_SIZE.format(line=line[:SHOW_BYTES]))
        return size

    def _trailer(self, line: bytes) -> None:
        text = line.decode("latin-1")
        colon = text.find(":")
        if (
            colon <= 0
            or _TOKEN.fullmatch(text, 0, colon) is None
            or _LINE_BAD.search(text) is not None
        ):
            raise InvalidChunkError(MSG_HTTP_BAD_TRAILER.format(line=line[:SHOW_BYTES]))
        name = text[:colon]
        value = text[colon + 1 :].strip(" \t")
        if colon == 14 and name.lower() == "content-length":
            # a bad one, or one that conflicts with an earlier one, is an error here too (both
            # oracles agree)
            values = [v for n, v in self._trailers if n.lower() == "content-length"]
            try:
                _content_length([*values, value])
            except InvalidResponseError:
                raise InvalidChunkError(
                    MSG_HTTP_BAD_TRAILER.format(line=line[:SHOW_BYTES])
                ) from None
        self._trailers.append((name, value))

    def feed(self, data: Buffer) -> bytes:
        """Decode the next piece of the body; return the body bytes it holds (maybe ``b""``)."""
        if type(data) is not bytes:
            if not isinstance(data, (bytearray, memoryview)):
                raise TypeError(MSG_HTTP_NOT_BUFFER.format(name="data", type=type(data).__name__))
            data = bytes(data)
        if self._held:  # left by feed_chunk(): it comes first
            data = self._held[self._held_pos :] + data
            self._held, self._held_pos = b"", 0
        if self._state == _DONE:
            self._unused += data
            return b""
        out: list[bytes] = []
        pos = 0
        size = len(data)
        while pos < size:
            state = self._state
            if state == _DATA:
                take = min(self._remaining, size - pos)
                out.append(data[pos : pos + take])
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    if data[pos : pos + 2] == b"\r\n":  # the usual case, in one step
                        pos += 2
                        self._state = _SIZE
                    else:
                        self._state = _DATA_END
                        self._remaining = 2
            elif state == _SIZE:
                lf = -1 if self._partial else data.find(b"\n", pos, pos + self._max_line)
                if lf > pos and data[lf - 1] == 0x0D and data.find(b"\r", pos, lf - 1) < 0:
                    line = data[pos : lf - 1]  # the usual case: a whole line, no bare CR
                    pos = lf + 1
                    chunk = self._chunk_size(line)
                    if chunk:
                        self._state = _DATA
                        self._remaining = chunk
                    else:
                        self._state = _TRAILER
                else:
                    pos = self._step(data, pos)
                    if pos < 0:
                        break
            elif state == _DATA_END and self._remaining == 2 and data[pos : pos + 2] == b"\r\n":
                pos += 2  # the usual case, in one step
                self._state = _SIZE
            else:
                pos = self._step(data, pos)
                if pos < 0:
                    break
        if len(out) == 1:
            return out[0]
        return b"".join(out)

    def _step(self, data: bytes, pos: int) -> int:
        """One step through the framing at ``data[pos:]`` (a size line, the CRLF after chunk
        data, a trailer line); returns the next pos, or -1 if ``data`` ends inside a line (held
        in ``_partial``). At the end of the body the rest of ``data`` becomes ``unused``."""
        state = self._state
        if state == _SIZE:
            line, pos = self._line(data, pos, self._max_line)
            if pos < 0:
                return pos
            chunk = self._chunk_size(line)
            if chunk:
                self._state = _DATA
                self._remaining = chunk
            else:
                self._state = _TRAILER
        elif state == _DATA_END:
            if data[pos] != (0x0D if self._remaining == 2 else 0x0A):  # CR, then LF
                raise InvalidChunkError(MSG_HTTP_CHUNK_NO_CRLF.format(got=data[pos : pos + 1]))
            pos += 1
            self._remaining -= 1
            if self._remaining == 0:
                self._state = _SIZE
        else:  # _TRAILER
            start = pos - len(self._partial)
            line, pos = self._line(data, pos, self._max_trailer - self._trailer_bytes)
            if pos < 0:
                return pos
            self._trailer_bytes += pos - start
            if not line:
                self._state = _DONE
                self._unused = data[pos:]
                return len(data)
            self._trailer(line)
        return pos

    def feed_chunk(self, data: Buffer = b"", limit: int = -1) -> bytes:
        """Decode the body up to the end of the current chunk, or ``limit`` bytes of it (-1: no
        bound), whichever comes first; return them (``b""`` if the input, held back and
        ``data``, ends before any body byte, or the body ends).

        The pieces of urllib3's ``read_chunked``: one chunk, or ``limit`` bytes of one, a piece.
        The input after the piece is held back for the next call of this or :meth:`feed`.
        A piece shorter than ``limit`` with ``chunk_left`` above 0 ends where the input did: the
        rest of its chunk is still to come.
        """
        if type(data) is not bytes:
            if not isinstance(data, (bytearray, memoryview)):
                raise TypeError(MSG_HTTP_NOT_BUFFER.format(name="data", type=type(data).__name__))
            data = bytes(data)
        pos = 0
        if self._held:
            pos = self._held_pos
            data = self._held + data if data else self._held
            self._held, self._held_pos = b"", 0
        size = len(data)
        if self._state == _DONE:
            self._unused += data[pos:]
            return b""
        piece = b""
        while pos < size:
            if self._state == _DATA:
                take = min(self._remaining, size - pos)
                if 0 <= limit < take:
                    take = limit
                piece = data[pos : pos + take]
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = _DATA_END
                    self._remaining = 2
                break  # one piece of one chunk a call
            pos = self._step(data, pos)
            if pos < 0:
                return b""
        if pos < size:
            self._held, self._held_pos = data, pos
        return piece
