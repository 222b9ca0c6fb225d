"""A parsed head's header pairs on both backends, against the pure twin's.

The compiled parser keeps a head's bytes and each header's offsets, and makes the ``(name,
value)`` strings when ``headers`` is first read: the offsets sit in a stack array of 32 headers
while parsing, and spill to the heap (doubling) beyond it; an obs-fold line makes the list at
once. These cases cross each of those edges and compare every attribute with the pure parser
(which builds the list as it goes), and pin what the pairs must not depend on: the caller's
buffer after the parse, pickling, and when they are first read.
"""

from __future__ import annotations

import pickle
from types import ModuleType
from typing import Any

import pytest
from test_http11_fuzz import outcome_of

from fastpool import _http11_py, light
from fastpool.exceptions import ResponseHeadTooLarge

#: header counts around the stack array (32) and its doublings (64, 128)
COUNTS = [0, 1, 31, 32, 33, 63, 64, 65, 127, 128, 129, 1000]


def head_bytes(count: int, fold_after: int | None = None, value: bytes = b"  v%d \t") -> bytes:
    lines = [b"HTTP/1.1 200 OK"]
    for i in range(count):
        lines.append(b"H-%d:" % i + value % i if b"%d" in value else b"H-%d:" % i + value)
        if fold_after is not None and i == fold_after:
            lines.append(b"   folded %d  " % i)
    lines.append(b"Content-Length: 0")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def outcome(http11: ModuleType, data: Any, **limits: Any) -> Any:
    """The parse as the fuzz tests compare it: every attribute (and the framing scan's notes
    checked against the pairs), or the error."""
    return outcome_of(http11.parse_response_head, data, **limits)


@pytest.mark.parametrize("count", COUNTS)
@pytest.mark.parametrize("limit", ["exact", "one-short", "default", "large"])
def test_header_pairs_match_the_pure_twin_at_every_count(
    http11: ModuleType, count: int, limit: str
) -> None:
    data = head_bytes(count)
    max_headers = {"exact": count + 1, "one-short": count, "default": 100, "large": 10**6}[limit]
    if max_headers < 1:
        pytest.skip("max_headers must be at least 1")
    expected = outcome(_http11_py, data, max_headers=max_headers)
    assert outcome(http11, data, max_headers=max_headers) == expected
    if count + 1 > max_headers:  # (the Content-Length line too)
        assert expected[0] is ResponseHeadTooLarge
    else:
        pairs = expected[0][3]
        assert [name for name, _ in pairs] == [f"H-{i}" for i in range(count)] + ["Content-Length"]
        assert pairs[:count] == [(f"H-{i}", f"v{i}") for i in range(count)]


@pytest.mark.parametrize("fold_after", [0, 1, 30, 31, 32, 40, 64, 99])
def test_an_obs_fold_anywhere_joins_the_value_as_the_pure_twin(
    http11: ModuleType, fold_after: int
) -> None:
    data = head_bytes(100, fold_after=fold_after)
    expected = outcome(_http11_py, data, max_headers=1000)
    got = outcome(http11, data, max_headers=1000)
    assert got == expected
    name, value = got[0][3][fold_after]
    assert (name, value) == (f"H-{fold_after}", f"v{fold_after} folded {fold_after}")
    # and the header limit counts the headers past the fold as before it
    assert outcome(http11, data, max_headers=101) == outcome(_http11_py, data, max_headers=101)
    assert outcome(http11, data, max_headers=100) == outcome(_http11_py, data, max_headers=100)


def test_framing_headers_among_many_are_found_from_the_offsets(http11: ModuleType) -> None:
    # Connection, Transfer-Encoding, Content-Encoding and Set-Cookie past the stack array
    filler = [b"X-%d: y" % i for i in range(40)]
    data = b"\r\n".join(
        [b"HTTP/1.1 200 OK", *filler]
        + [b"connection: Close", b"Transfer-Encoding: Chunked , chunked", b"content-encoding: br"]
        + [b"Set-Cookie: a=1", b"Content-Encoding:  gzip "]
    )
    data += b"\r\n\r\n"
    got = outcome(http11, data)
    assert got == outcome(_http11_py, data)
    assert got[0][4:9] == (False, "chunked", None, "br, gzip", True)


def test_the_pairs_do_not_depend_on_the_callers_buffer_after_the_parse(
    http11: ModuleType,
) -> None:
    for count in (3, 40):  # on the stack, and spilled
        data = bytearray(head_bytes(count) + b"body")
        head, used = http11.parse_response_head(data)
        expected = _http11_py.parse_response_head(bytes(data))[0].headers
        data[:used] = b"\0" * used  # the connection's buffer reused for the next answer
        view = memoryview(bytearray(head_bytes(count)))
        head2, _ = http11.parse_response_head(view)
        view[:] = b"x" * len(view)
        assert head.headers == expected
        assert head2.headers == expected


def test_the_pairs_are_one_list_read_once(http11: ModuleType) -> None:
    head, _ = http11.parse_response_head(head_bytes(5))
    first = head.headers
    assert head.headers is first  # made once, then kept
    assert first == _http11_py.parse_response_head(head_bytes(5))[0].headers


@pytest.mark.parametrize("read_first", [False, True], ids=["unread", "read"])
def test_a_head_pickles_with_its_pairs(http11: ModuleType, read_first: bool) -> None:
    data = head_bytes(40)
    head, _ = http11.parse_response_head(data)
    if read_first:
        head.headers  # noqa: B018 - the list made before pickling
    copy = pickle.loads(pickle.dumps(head))
    assert attributes(copy) == attributes(head)
    assert copy.headers == _http11_py.parse_response_head(data)[0].headers


@pytest.mark.c_extension
def test_a_compiled_heads_pickle_holds_its_pairs_not_its_offsets() -> None:
    # (offsets are native words: a pickle read on another machine, or altered, must not be
    # trusted to index the head's bytes)
    _http11_c = pytest.importorskip("fastpool._http11_c")
    data = head_bytes(40)
    head, _ = _http11_c.parse_response_head(data)
    rebuild, arguments = head.__reduce__()
    assert rebuild is _http11_c.ResponseHead
    assert arguments[3] == _http11_py.parse_response_head(data)[0].headers
    assert attributes(pickle.loads(pickle.dumps(head))) == attributes(head)


@pytest.mark.parametrize("read_first", [False, True], ids=["unread", "read"])
def test_a_head_made_again_keeps_nothing_of_the_parse(http11: ModuleType, read_first: bool) -> None:
    head, _ = http11.parse_response_head(head_bytes(40))
    if read_first:
        head.headers  # noqa: B018 - the list made first
    head.__init__(11, 204, "No Content", [("A", "1")], True, "none", None)
    assert head.headers == [("A", "1")]
    with pytest.raises(TypeError):
        head.__init__(11, 200, "OK", None, True, "none", None)
    assert head.headers is None  # (as the pure twin: the list it was given)


def attributes(head: Any) -> tuple[Any, ...]:
    return (head.version, head.status, head.reason, head.headers, head.framing)


@pytest.mark.parametrize("count", [0, 8, 40])
def test_a_light_response_reads_the_heads_pairs_when_asked(http11: ModuleType, count: int) -> None:
    data = head_bytes(count)
    head, _ = http11.parse_response_head(bytearray(data))
    response = light.LightResponse(head.status, head.reason, head.version, head, b"", "http://h/")
    pairs = _http11_py.parse_response_head(data)[0].headers
    assert list(response.headers.items()) == pairs
    assert response.headers is response.headers
    # given as a list or a dict, as before
    assert list(light.LightResponse(200, "OK", 11, pairs, b"", "u").headers.items()) == pairs
    made = light.LightResponse(200, "OK", 11, pairs, b"", "u").headers
    assert light.LightResponse(200, "OK", 11, made, b"", "u").headers is made
