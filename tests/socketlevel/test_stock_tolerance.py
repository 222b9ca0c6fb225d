"""What stock accepts, fastpool accepts (issue 12): a differential fuzz against requests.

Generated response heads and framings (the parser fuzz's generator, its mutations, and the
tolerances RFC 9112 grants) are served by a real server on 127.0.0.1, once to stock requests
(over urllib3 and http.client) and once to ``requests.Session`` with ``fastpool.HTTPAdapter``
mounted. Whenever stock turns the bytes into a successful ``Response``, fastpool must give the
same status, headers and body, unless the response falls under a deliberate difference below,
each a security choice documented in ``fastpool._http11_py``:

* a 1xx head: interim, and the final response is read after it (RFC 9110 15.2); http.client
  skips only ``100 Continue`` and returns a 102 or 103 as if it were final;
* a head of 1 MiB or more (``max_head_bytes``: http.client bounds only each line and the
  number of headers, so a stock client holds up to 6.4 MB of head per connection);
* control characters (other than HT) in a header line or value: RFC 9110 5.5 calls them
  invalid; a response splitter's tool, refused as llhttp and h11 refuse them;
* a version other than ``HTTP/1.<digit>`` in the status line, parts split by anything but
  SP/HT, or a NUL in it;
* a body on a 204 or 304 (RFC 9110 15.3.5 and 15.4.5: none; http.client reads a chunked one,
  which would desynchronise the connection);
* number forms that only Python's ``int()`` reads (signs, ``0x``, ``_``, surrounding space in a
  chunk size or Content-Length): two parsers that frame a body differently are a smuggling
  risk;
* whitespace before a header's colon (RFC 9112 5.1: MUST reject), and a header line without a
  colon or with an empty name (http.client skips or keeps them as continuation);
* ``Transfer-Encoding`` with a coding after ``chunked``, with Content-Length and not ending in
  chunked, or not a token list (framing ambiguity: RFC 9112 6.3);
* chunk extensions or trailers that are malformed, and chunked bodies whose lines do not end in
  CRLF (http.client reads lines up to LF alone).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import requests
from dummyserver.oneshot import OneShotServer
from http_strategies import mutated, responses
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import fastpool

TOLERANCES = st.one_of(
    # RFC 9112 2.3: another minor version of HTTP/1
    st.sampled_from([b"HTTP/1.2 200 OK\r\nContent-Length: 2\r\n\r\nok"]),
    # RFC 9112 7.1.1: BWS before a chunk extension, and trailing whitespace
    st.builds(
        lambda ws, ext: (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2"
            + ws
            + ext
            + b"\r\nok\r\n0\r\n\r\n"
        ),
        st.sampled_from([b" ", b"\t", b" \t "]),
        st.sampled_from([b"", b";x=1", b"; x"]),
    ),
    # http.client's bounds: up to 100 headers, up to 64 KiB a line
    st.builds(
        lambda count, size: (
            b"HTTP/1.1 200 OK\r\n"
            + b"".join(b"X-%d: %s\r\n" % (i, b"a" * size) for i in range(count))
            + b"Content-Length: 2\r\n\r\nok"
        ),
        st.integers(0, 99),
        st.sampled_from([1, 1000]),
    ),
    st.builds(
        lambda count: (
            b"HTTP/1.1 200 OK\r\n"
            + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 65000) for i in range(count))
            + b"Content-Length: 2\r\n\r\nok"
        ),
        st.integers(1, 17),  # 17 lines pass 1 MiB: the total bound (a deliberate difference)
    ),
)

_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_STATUS = re.compile(rb"HTTP/1\.[0-9][ \t]+[1-9][0-9][0-9]([ \t][^\r\n\x00]*)?\Z")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_DIGITS = re.compile(rb"[0-9]+")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]+)[ \t]*(;[^\r\n]*)?")


@pytest.fixture(scope="module")
def one_shot() -> Iterator[OneShotServer]:
    server = OneShotServer()
    yield server
    server.close()


def _outcome(session: requests.Session, url: str) -> tuple[object, ...]:
    try:
        r = session.get(url, timeout=5)
        content = r.content
    except (requests.RequestException, ValueError) as e:
        # (stock lets a bare ValueError out for some framings, a negative chunk size: a
        # refusal all the same)
        return ("error", type(e).__name__)
    # Values compared with runs of whitespace as one space and none around a value or a list
    # element: an obs-fold becomes SP (RFC 9112 5.2), and OWS is not part of a value, but stock
    # keeps both where a repeated header's values are joined.
    headers = {
        name: ", ".join(" ".join(part.split()) for part in value.split(","))
        for name, value in r.headers.lower_items()
    }
    return ("ok", r.status_code, headers, content)


def deliberate_difference(data: bytes) -> str | None:
    """The module docstring's reason why fastpool may refuse ``data`` where stock accepts it,
    or None: then fastpool must give stock's result."""
    head, sep, _ = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, _ = data.partition(b"\n\n")
    if len(head) >= 1048576:
        return "head over max_head_bytes"
    lines = re.split(rb"\r?\n", head)
    if not _STATUS.match(lines[0]):
        return "status line"
    status = int(lines[0].split()[1])
    if status < 200:
        return "1xx interim"
    if status in (204, 304) and re.search(rb"(?im)^transfer-encoding:", head):
        return "body on 204/304"
    fields: list[list[bytes]] = []
    for line in lines[1:]:
        if _CTL.search(line):
            return "control character in a header line"
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1][1] += b" " + line.strip(b" \t")  # obs-fold: joined, as both do
            continue
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            return "header line without a token name and colon"
        fields.append([name.lower(), value.strip(b" \t")])
    for name, value in fields:
        if name == b"content-length" and not all(
            _DIGITS.fullmatch(v.strip(b" \t")) for v in value.split(b",")
        ):
            return "Content-Length not decimal digits"
        if name == b"transfer-encoding" and not (value.lower() == b"chunked" and _chunked_ok(data)):
            return "Transfer-Encoding or chunked framing read differently"
    return None


def _chunked_ok(data: bytes) -> bool:
    """A chunked body that both readings frame alike: hex sizes (BWS and an extension after
    them allowed), CRLF line ends, no trailers. Anything else is compared elsewhere (the
    parser fuzz) or is a deliberate difference (module docstring)."""
    _, _, rest = data.partition(b"\r\n\r\n")
    while True:
        line, crlf, rest = rest.partition(b"\r\n")
        size = _CHUNK_SIZE.fullmatch(line)
        if not crlf or size is None:
            return False
        n = int(size.group(1), 16)
        if n == 0:
            return rest == b"\r\n"
        if rest[n : n + 2] != b"\r\n":
            return False
        rest = rest[n + 2 :]


FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(data=st.one_of(responses(), mutated(), TOLERANCES))
# The three that fastpool refused before (issue 12), always tried:
@example(data=b"HTTP/1.2 200 OK\r\nContent-Length: 2\r\n\r\nok")
@example(data=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2 ;x=1\r\nok\r\n0\r\n\r\n")
@example(
    data=b"HTTP/1.1 200 OK\r\n"
    + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 1000) for i in range(70))
    + b"Content-Length: 2\r\n\r\nok"
)
def test_what_stock_accepts_fastpool_accepts(one_shot: OneShotServer, data: bytes) -> None:
    one_shot.payload = data
    with requests.Session() as stock_session:
        stock = _outcome(stock_session, one_shot.url)
    with requests.Session() as session:
        session.mount("http://", fastpool.HTTPAdapter())
        ours = _outcome(session, one_shot.url)
    if stock[0] != "ok" or ours == stock:
        return
    if deliberate_difference(data) is not None:
        return
    assert ours == stock, data
