"""Hypothesis strategies for HTTP/1.1 responses: generated heads and framings, and mutations of
them. Shared by the parser fuzz (``unit/test_http11_fuzz.py``) and the differential fuzz against
stock requests (``socketlevel/test_stock_tolerance.py``)."""

from __future__ import annotations

from hypothesis import strategies as st

TOKEN_ALPHABET = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
NAMES = [
    "Content-Length",
    "content-length",
    "Transfer-Encoding",
    "TRANSFER-ENCODING",
    "Connection",
    "Content-Type",
    "Set-Cookie",
    "Keep-Alive",
    "Trailer",
    "X-Foo",
]
VALUES = [
    "",
    "0",
    "5",
    "007",
    "5, 5",
    "5,6",
    "+5",
    "-1",
    "18446744073709551615",
    "chunked",
    "Chunked",
    "gzip, chunked",
    "chunked, gzip",
    "gzip",
    "close",
    "keep-alive",
    "Keep-Alive, close",
    "upgrade",
    " padded\t",
    "caf\xe9",
    "a\x7fb",
    "a\x01b",
]
LINE_ENDS = st.sampled_from(["\r\n"] * 8 + ["\n"])
names = st.one_of(st.sampled_from(NAMES), st.text(TOKEN_ALPHABET, min_size=1, max_size=8))
values = st.one_of(
    st.sampled_from(VALUES),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=12),
)


@st.composite
def chunked_body(draw: st.DrawFn, payload: bytes) -> bytes:
    out = b""
    pos = 0
    while pos < len(payload):
        size = draw(st.integers(1, max(1, len(payload) - pos)))
        ext = draw(st.sampled_from([b"", b";a=b", b";x", b';q="1"']))
        hexsize = draw(st.sampled_from(["%x", "%X", "00%x"])) % size
        out += hexsize.encode() + ext + b"\r\n" + payload[pos : pos + size] + b"\r\n"
        pos += size
    out += b"0\r\n"
    for name, value in draw(st.lists(st.tuples(names, values), max_size=2)):
        out += f"{name}: {value}\r\n".encode("latin-1")
    return out + b"\r\n"


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    version = draw(st.sampled_from(["1.1"] * 6 + ["1.0"] * 2 + ["2.0", "1.2"]))
    status = draw(
        st.one_of(
            st.sampled_from([200, 200, 201, 204, 206, 301, 304, 404, 500, 100, 103]),
            st.integers(100, 999),
        )
    )
    reason = draw(st.sampled_from(["OK", "", " ", "Not Found", "D\xe9j\xe0", "a\tb"]))
    end = draw(LINE_ENDS)
    status_line = f"HTTP/{version} {status}" + (
        f" {reason}" if reason or draw(st.booleans()) else ""
    )
    payload = draw(st.binary(max_size=40))
    framing = draw(st.sampled_from(["length", "chunked", "close", "none"]))
    headers = draw(st.lists(st.tuples(names, values), max_size=5))
    if framing == "length":
        headers.insert(draw(st.integers(0, len(headers))), ("Content-Length", str(len(payload))))
    elif framing == "chunked":
        headers.insert(draw(st.integers(0, len(headers))), ("Transfer-Encoding", "chunked"))
    lines = [status_line]
    for name, value in headers:
        lines.append(f"{name}:{draw(st.sampled_from(['', ' ', '  ', chr(9)]))}{value}")
        if draw(st.integers(0, 20)) == 0:
            lines.append(" folded")
    head = "".join(line + draw(LINE_ENDS) for line in lines) + end
    body = draw(chunked_body(payload)) if framing == "chunked" else payload
    return head.encode("latin-1") + body


INTERESTING = b"\r\n\x00 \t:,;0159aAfF\x7f\x80\xff-+"


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(responses()))
    for _ in range(draw(st.integers(1, 3))):
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["delete", "insert", "replace", "duplicate"]))
        byte = draw(st.sampled_from(INTERESTING))
        if kind == "delete":
            del data[pos]
        elif kind == "insert":
            data.insert(pos, byte)
        elif kind == "replace":
            data[pos] = byte
        else:
            end = min(len(data), pos + draw(st.integers(1, 8)))
            data[pos:pos] = data[pos:end]
    return bytes(data)
