"""Attack suite for ``fastpool.Session.map``: the hostile scenarios of the one-request suite
(``test_hostile_framing.py``, ``test_hostile_reuse.py``) run through ``map`` and through
``Session.get`` on fresh Sessions must end the same (same Response, or the same exception
class), and the next request on the Session must get its own answer. Then attacks only a
multiplexed loop meets: many exchanges at once where some misbehave, answers before the
request is written, trickled heads (counted, not timed), deadlines, streamed results left
unread, and leaving the iterator early mid-dial and mid-read (every slot and socket back).
"""

from __future__ import annotations

import gc
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import map_clients
import pytest
import requests
import test_hostile_framing as framing
import test_hostile_reuse as reuse
from dummyserver.hostile import HostileConn, answer_each, response
from map_clients import TIMEOUT, fresh_session, in_use, mapped, of, open_fds, outcome, single
from urllib3.util.timeout import Timeout

import fastpool
import fastpool._loop_py as loop_module

OWN = response(b"own")


def _first_then_own(raw: bytes, close: bool = False):  # type: ignore[no-untyped-def]
    """Connection 1 answers its first request with ``raw`` (then closes, with ``close``);
    every other request, on any connection, gets ``own``."""

    def script(conn: HostileConn) -> None:
        if conn.read_request() is None:
            return
        conn.send(raw if conn.number == 1 else OWN)
        if close and conn.number == 1:
            return
        while conn.read_request() is not None:
            conn.send(OWN)

    return script


def _differential(server: Any, paths: list[str], **kwargs: Any) -> list[Any]:
    """The conversation one request at a time, then through map (one map per request), then
    through map with the last request a plain ``get``: all three the same."""
    server.reset()
    want = single(server.url, paths, **kwargs)
    server.reset()
    got = mapped(server.url, paths, **kwargs)
    assert got == want
    server.reset()
    got = mapped(server.url, paths, then_get=True, **kwargs)
    assert got == want
    return want


# --- the one-request suite's responses, through map ------------------------------------------

RESPONSES: dict[str, tuple[bytes, bool]] = {
    **{f"same-{k}": (v, False) for k, v in framing.SAME.items()},
    **{f"close-{k}": (v, True) for k, v in framing.SAME_THEN_CLOSE.items()},
    **{f"refuse-{k}": (v[0], False) for k, v in framing.REFUSE.items()},
    **{f"stock-or-refuse-{k}": (v, False) for k, v in framing.STOCK_OR_REFUSE.items()},
    "early-hints": (
        framing._head("HTTP/1.1 103 Early Hints", "Link: </s>", "", framing.S200, framing.CL3),
        False,
    ),
}


@pytest.mark.parametrize("case", list(RESPONSES))
def test_hostile_response_then_own_answer(hostile, case: str) -> None:
    raw, close = RESPONSES[case]
    server = hostile(_first_then_own(raw, close))
    outcomes = _differential(server, ["/first", "/second"])
    assert outcomes[1][::3] == (200, b"own"), outcomes[1]


@pytest.mark.parametrize("case", list(framing.FAULTS))
def test_server_faults_as_one_request(hostile, case: str) -> None:
    steps = framing.FAULTS[case]
    server = hostile([steps, answer_each(OWN)])
    if case.endswith("-before-the-request"):
        # racy in every client: the RST may reach connect() itself; and map replays it (the
        # defect pinned by the -after-the-request cases)
        server.reset()
        got = mapped(server.url, ["/", "/again"])
        assert got[0][0] == "error" or got[0][::3] == (200, b"own")
        assert got[1][::3] == (200, b"own")
        return
    outcomes = _differential(server, ["/", "/again"])
    assert outcomes[1][::3] == (200, b"own")


@pytest.mark.parametrize("extra", list(reuse.EXTRAS))
@pytest.mark.parametrize("size", [100, 40_000, 1_000_000])
@pytest.mark.parametrize("framing_", ["length", "chunked"])
@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_bytes_after_the_body_never_answer_the_next_request(
    hostile,
    ca_bundle: str,
    monkeypatch: pytest.MonkeyPatch,
    extra: str,
    size: int,
    framing_: str,
    tls: bool,
) -> None:
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    first = response(body) if framing_ == "length" else reuse._chunked(body)
    server = hostile(_first_then_own(first + reuse.EXTRAS[extra]), tls=tls)
    monkeypatch.setitem(map_clients.VERIFY, "verify", ca_bundle)
    outcomes = _differential(server, ["/first", "/second", "/third"])
    assert outcomes[0][3] == body
    assert [o[::3] for o in outcomes[1:]] == [(200, b"own")] * 2


@pytest.mark.parametrize("case", list(reuse.NO_BODY))
def test_a_body_where_none_may_be_never_answers_the_next(hostile, case: str) -> None:
    method, raw = reuse.NO_BODY[case]
    server = hostile(_first_then_own(raw))
    want, got = [], []
    for results, use_map in ((want, False), (got, True)):
        server.reset()
        with fresh_session() as session:
            request = requests.Request(method, server.url + "/first")
            if use_map:
                (result,) = list(session.map([request], timeout=TIMEOUT))
                results.append(of(result))
                (result,) = list(session.map([server.url + "/second"], timeout=TIMEOUT))
                results.append(of(result))
            else:
                prep = session.prepare_request(request)
                results.append(outcome(session.send(prep, timeout=TIMEOUT)))
                results.append(outcome(session.get(server.url + "/second", timeout=TIMEOUT)))
            assert in_use(session) == 0
    assert got == want
    assert got[1][::3] == (200, b"own")


# --- many exchanges at once, some misbehaving -------------------------------------------------

INJECTED = response(b"INJECTED")


def _by_path(conn: HostileConn) -> None:
    """Keep-alive: ``/ok/N`` answers ``ok-N``; ``/bad/KIND/N`` misbehaves as KIND says."""
    while (req := conn.read_request()) is not None:
        path = req.split(b" ", 2)[1].decode()
        parts = path.strip("/").split("/")
        if parts[0] == "ok":
            conn.send(response(f"ok-{parts[1]}".encode()))
            continue
        kind = parts[1]
        if kind == "reset":
            conn.reset()
        elif kind == "close":
            conn.close()
        elif kind == "cut-body":
            conn.send(response(b"0123456789")[:-4])
            conn.close()
        elif kind == "inject":  # an extra response after the framed one, same write
            conn.send(response(b"bad") + INJECTED)
        elif kind == "garbage":
            conn.send(b"NOT HTTP AT ALL\r\n\r\n")
        elif kind == "stall":
            conn.sleep(3)
        elif kind == "trickle":
            conn.send(response(b"trickled"), 1, 0.002)
        elif kind == "smuggle":
            conn.send(
                framing._head(
                    framing.S200,
                    "Content-Length: 3",
                    "Content-Length: 40",
                    body="abc" + INJECTED.decode(),
                )
            )
        else:
            raise AssertionError(kind)
        if conn.closed:
            return


BAD_KINDS = ["reset", "close", "cut-body", "inject", "garbage", "stall", "trickle", "smuggle"]


def test_misbehaving_exchanges_do_not_touch_the_others(hostile) -> None:
    server = hostile(_by_path)
    paths = [f"/ok/{i}" for i in range(60)]
    for n, kind in enumerate(BAD_KINDS * 2):
        paths.insert(3 + n * 4, f"/bad/{kind}/{n}")
    # One at a time: each bad path's own outcome (each on a fresh Session of its own; the
    # sessions side by side, so that the stalled ones wait out their timeouts together).
    bad = sorted({p for p in paths if p.startswith("/bad/")})
    with ThreadPoolExecutor(len(bad)) as pool:
        want = dict(zip(bad, pool.map(lambda p: single(server.url, [p], timeout=0.5)[0], bad)))
    with fresh_session() as session:
        got = {}
        for result in session.map(
            [server.url + p for p in paths], concurrency=32, timeout=0.5, dial_workers=4
        ):
            got[result.request[len(server.url) :]] = of(result)
        assert in_use(session) == 0
        # the Session still answers each request with its own answer afterwards
        again = [of(r) for r in session.map([server.url + f"/ok/x{i}" for i in range(20)])]
        assert sorted(o[3] for o in again) == sorted(f"ok-x{i}".encode() for i in range(20))
    for path in paths:
        if path.startswith("/ok/"):
            assert got[path][::3] == (200, f"ok-{path[4:]}".encode()), (path, got[path])
        else:
            assert got[path] == want[path], path


def test_keep_alive_exchanges_through_one_connection_each_get_their_own(hostile) -> None:
    # per_host=1: every request on the one kept connection, with injected leftovers between
    server = hostile(_by_path)
    paths = []
    for i in range(20):
        paths.append(f"/ok/{i}")
        if i % 4 == 0:
            paths.append(f"/bad/inject/{i}")
    with fresh_session() as session:
        results = list(session.map([server.url + p for p in paths], per_host=1, timeout=2))
        for result in results:
            path = result.request[len(server.url) :]
            if path.startswith("/ok/"):
                assert of(result)[::3] == (200, f"ok-{path[4:]}".encode())
            else:
                assert of(result)[::3] == (200, b"bad")
        assert in_use(session) == 0


# --- writing: answered early, reset mid-upload -----------------------------------------------

BIG = b"x" * (8 * 1024 * 1024)


def _answer_early(then: str):  # type: ignore[no-untyped-def]
    def script(conn: HostileConn) -> None:
        if conn.number > 1:
            answer_each(OWN)(conn)
            return
        if conn.read_head() is None:
            return
        if then == "reset":
            conn.sleep(0.05)
            conn.reset()
            return
        conn.send(response(b"early", "413 Payload Too Large", ["Connection: close"]))
        if then == "close":
            conn.close()
        elif then == "stall":
            conn.sleep(2)

    return script


def _short(o: tuple[Any, ...]) -> tuple[Any, ...]:
    return o if o[0] == "error" else (o[0], o[3])


@pytest.mark.parametrize("then", ["close", "reset", "stall"])
def test_answer_or_reset_before_the_upload_is_written(hostile, then: str) -> None:
    # "stall" ends at the timeout (the server stops reading the upload): a short one; the
    # others end when the server acts, within a timeout loose for a loaded machine.
    timeout = 0.5 if then == "stall" else 1
    server = hostile(_answer_early(then))
    outcomes: dict[str, list[Any]] = {}
    for use_map in (False, True):
        server.reset()
        out = outcomes.setdefault("map" if use_map else "get", [])
        with fresh_session() as session:
            start = time.monotonic()
            request = requests.Request("POST", server.url + "/up", data=BIG)
            if use_map:
                (result,) = list(session.map([request], timeout=timeout))
                out.append(_short(of(result)))
            else:
                try:
                    r = session.send(session.prepare_request(request), timeout=timeout)
                    out.append(_short(outcome(r)))
                except Exception as e:  # noqa: BLE001
                    out.append(outcome(e))
            assert time.monotonic() - start < 5
            out.append(outcome(session.get(server.url + "/next", timeout=2))[::3])
            assert in_use(session) == 0
    assert outcomes["map"] == outcomes["get"]
    assert outcomes["map"][1] == (200, b"own")


# --- trickled heads: work bounded by the bytes, not their number of segments -----------------


class _CountingBuffer(bytearray):
    """An exchange's read buffer that counts the bytes its searches may scan."""

    scanned = 0

    def find(self, sub: Any, start: Any = None, *args: Any) -> int:
        _CountingBuffer.scanned += len(self) - (start or 0)
        return super().find(sub, *(() if start is None else (start,)), *args)

    def rfind(self, sub: Any, start: Any = None, *args: Any) -> int:
        found = super().rfind(sub, *(() if start is None else (start,)), *args)
        # from the end back to what it found (or to start)
        _CountingBuffer.scanned += len(self) - max(found, start or 0, 0)
        return found


def _use_pure_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run maps on the loop's pure-Python twin, whatever the build."""
    import fastpool._lane_py
    import fastpool._loop
    import fastpool._session_map
    import fastpool.adapters
    import fastpool.multi

    for module in (fastpool._loop, fastpool.multi, fastpool.adapters, fastpool._session_map):
        monkeypatch.setattr(module, "Exchange", loop_module.Exchange)
    monkeypatch.setattr(fastpool._loop, "Loop", loop_module.Loop)
    monkeypatch.setattr(fastpool.multi, "Loop", loop_module.Loop)
    # the lane's finish of a Session's answer reads the exchange: the twin of its loop's
    monkeypatch.setattr(fastpool._session_map, "plain_answer", fastpool._lane_py.plain_answer)
    monkeypatch.setattr(fastpool._session_map, "hand_back", fastpool._lane_py.hand_back)


@pytest.mark.parametrize(
    "shape",
    [
        "many-lines",
        "one-long-line",
    ],
)
def test_a_head_trickled_byte_by_byte_is_parsed_in_linear_work(
    hostile, monkeypatch: pytest.MonkeyPatch, shape: str
) -> None:
    if shape == "many-lines":
        head_lines = [f"X-H{i}: {'v' * 20}" for i in range(30)]
    else:
        head_lines = ["X-Long: " + "v" * 750]
    raw = response(b"body", headers=head_lines)
    server = hostile([("read",), ("send", raw, 1, 0.0003)])
    parses = []
    real_parse = loop_module.parse_response_head
    real_init = loop_module.Exchange.__init__

    def counting_parse(*args: Any) -> Any:
        parses.append(len(args[0]))
        return real_parse(*args)

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        self.buf = _CountingBuffer()

    # Counted on the pure twin (a compiled class cannot be patched); the compiled loop mirrors
    # its _may_end_head line by line.
    _use_pure_loop(monkeypatch)
    monkeypatch.setattr(loop_module, "parse_response_head", counting_parse)
    monkeypatch.setattr(loop_module.Exchange, "__init__", init)
    _CountingBuffer.scanned = 0
    with fresh_session() as session:
        (result,) = list(session.map([server.url + "/"], timeout=TIMEOUT))
    assert of(result)[::3] == (200, b"body")
    assert len(parses) <= 3, parses  # once the blank line is there, not once per byte
    assert _CountingBuffer.scanned <= 32 * len(raw), (_CountingBuffer.scanned, len(raw))


def test_a_trickled_chunked_body_is_not_rescanned(hostile, monkeypatch: pytest.MonkeyPatch) -> None:
    body = "".join(f"1\r\n{chr(97 + i % 26)}\r\n" for i in range(100)) + "0\r\n\r\n"
    raw = framing._head(framing.S200, framing.TE, body=body)
    server = hostile([("read",), ("send", raw, 1, 0.0002), ("read",)])
    outcomes = _differential(server, ["/"])
    assert outcomes[0][3] == bytes(97 + i % 26 for i in range(100))

    # Counted on the pure twin (the compiled loop mirrors it): the chunk decoder is fed each
    # byte once, not the whole body again at each byte that arrives.
    fed = []

    class CountingDecoder(loop_module.ChunkedDecoder):  # type: ignore[misc, name-defined]
        def feed(self, data: bytes) -> Any:
            fed.append(len(data))
            return super().feed(data)

    _use_pure_loop(monkeypatch)
    monkeypatch.setattr(loop_module, "ChunkedDecoder", CountingDecoder)
    server.reset()
    with fresh_session() as session:
        (result,) = list(session.map([server.url + "/"], timeout=TIMEOUT))
    assert of(result)[::3] == (200, bytes(97 + i % 26 for i in range(100)))
    assert fed and sum(fed) <= len(raw), (sum(fed), len(raw))


# --- heads over the limits, endless bodies, deadlines ----------------------------------------


def _endless(  # type: ignore[no-untyped-def]
    head: bytes, piece: bytes, pause: float, seconds: float = 3.0, stall: float = 0.0
):
    """Send ``head``, then ``piece`` every ``pause`` s for ``seconds``, then stay silent
    ``stall`` s with the connection open."""

    def script(conn: HostileConn) -> None:
        if conn.read_request() is None:
            return
        conn.send(head)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            conn.send(piece)
            if pause:
                conn.sleep(pause)
        conn.sleep(stall)

    return script


def test_an_endless_head_is_refused_at_the_limit(hostile) -> None:
    server = hostile(_endless(b"HTTP/1.1 200 OK\r\n", b"X-A: b\r\n" * 512, 0.0, 2.0))
    start = time.monotonic()
    with fresh_session() as session:
        (result,) = list(session.map([server.url + "/"], timeout=TIMEOUT))
        assert in_use(session) == 0
    assert time.monotonic() - start < 1.5
    want = single(server.url, ["/"])
    assert [of(result)] == want
    assert want[0][0] == "error"


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\n\r\n",  # close-delimited
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    ],
    ids=["close-delimited", "chunked"],
)
def test_an_endless_body_stalls_into_the_read_timeout(hostile, head: bytes) -> None:
    piece = b"5\r\nabcde\r\n" if b"chunked" in head else b"abcde"
    server = hostile(_endless(head, piece, 0.02, 0.2, 2.0))  # then silence, the connection open
    want = single(server.url, ["/"], timeout=0.3)
    start = time.monotonic()
    got = mapped(server.url, ["/"], timeout=0.3)
    assert time.monotonic() - start < 3
    assert got == want
    assert want[0][0] == "error"


@pytest.mark.parametrize("stream", [False, True])
def test_an_endless_chunked_body_while_others_complete(hostile, stream: bool) -> None:
    endless = hostile(
        _endless(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"400\r\n" + b"z" * 1024 + b"\r\n",
            0.001,
            1.0,
        )
    )
    ok = hostile(answer_each(OWN))
    urls = [endless.url + "/"] + [ok.url + f"/{i}" for i in range(20)]
    with fresh_session() as session:
        it = session.map(urls, concurrency=8, timeout=Timeout(total=0.6), stream=stream)
        results = list(it)
        seen = {result.request: result for result in results}
        assert len(seen) == 21
        for url in urls[1:]:
            assert of(seen[url])[::3] == (200, b"own")
        if not stream:
            # not held up by the endless one: every other answer came before its end
            assert results[-1].request == urls[0]
        first = seen[urls[0]]
        if stream:
            assert first.response is not None
            assert len(first.response.raw.read(5000)) == 5000
            first.response.close()
        else:
            # As one request: Timeout(total=...) bounds each receive (urllib3's), not the
            # whole answer, so the body ends when the server stops sending (after 1 s), cut
            # short in the middle of its chunks.
            assert isinstance(first.error, requests.exceptions.ChunkedEncodingError), first
        assert in_use(session) == 0


def _trickle(raw: bytes, piece: int, pause: float):  # type: ignore[no-untyped-def]
    return [("read",), ("send", raw, piece, pause), ("read",)]


def test_a_total_deadline_against_a_trickling_server_as_one_request(hostile) -> None:
    """``Timeout(total=...)``: one request at a time meets it as urllib3 does (what the
    connect left, per receive); map must end the same."""
    raw = response(b"t" * 40)
    server = hostile(_trickle(raw, 4, 0.03))  # about 0.6 s in all, never 0.2 s without a byte
    want = single(server.url, ["/"], timeout=Timeout(total=0.4))
    got = mapped(server.url, ["/"], timeout=Timeout(total=0.4))
    assert got == want


def test_a_total_deadline_against_a_stalled_server(hostile) -> None:
    raw = response(b"t" * 40)
    server = hostile([("read",), ("send", raw[:10]), ("sleep", 2)])
    start = time.monotonic()
    got = mapped(server.url, ["/"], timeout=Timeout(total=0.2))
    assert time.monotonic() - start < 1.5
    want = single(server.url, ["/"], timeout=Timeout(total=0.2))
    assert got == want


# --- streamed results left unread -------------------------------------------------------------


def test_streamed_results_left_unread_while_the_map_goes_on(hostile) -> None:
    bodies = {i: bytes([65 + i % 26]) * (300_000 + i) for i in range(8)}

    def script(conn: HostileConn) -> None:
        while (req := conn.read_request()) is not None:
            i = int(req.split(b" ", 2)[1].strip(b"/"))
            conn.send(response(bodies[i]) if i in bodies else OWN)

    server = hostile(script)
    with fresh_session() as session:
        held = [r for r in session.map([server.url + f"/{i}" for i in bodies], stream=True)]
        assert all(r.error is None for r in held), held
        # more requests while those wait unread, on other connections
        more = [of(r)[::3] for r in session.map([server.url + f"/{i}" for i in range(100, 110)])]
        assert more == [(200, b"own")] * 10
        for result in held:
            i = int(result.request.rsplit("/", 1)[1])
            assert result.response.content == bodies[i]  # type: ignore[union-attr]
        assert in_use(session) == 0
        # a streamed result closed unread: its connection is not handed to the next request
        (r,) = list(session.map([server.url + "/3"], stream=True))
        assert r.response is not None
        r.response.raw.read(10)
        r.response.close()
        assert of(next(iter(session.map([server.url + "/200"]))))[::3] == (200, b"own")
        assert session.get(server.url + "/201").content == b"own"
        assert in_use(session) == 0


def test_a_streamed_redirect_hop_gives_its_connection_back(hostile) -> None:
    redirect = response(b"moved", "302 Found", ["Location: /final"])
    server = hostile(answer_each(redirect, OWN, then=OWN))
    with fresh_session(max_connections_per_host=1, pool_timeout=1) as session:
        (result,) = list(session.map([server.url + "/start"], stream=True, timeout=2))
        assert of(result)[::3] == (200, b"own")
        assert [r.status_code for r in result.response.history] == [302]  # type: ignore[union-attr]
        assert in_use(session) == 0


# --- leaving early: every slot and socket comes back ------------------------------------------


def _stall_after_request(conn: HostileConn) -> None:
    if conn.read_request() is not None:
        conn.sleep(3)


def _silent(conn: HostileConn) -> None:
    conn.sleep(3)  # accepts, never speaks: a TLS handshake waits


def _prove_slots_free(session: fastpool.Session, url: str, n: int) -> None:
    """``n`` requests that must all hold a connection at once (the server answers only when
    ``n`` have arrived): a leaked slot makes one wait for pool_timeout and fail."""
    results: list[Any] = []

    def get() -> None:
        try:
            results.append(session.get(url, timeout=5).content)
        except Exception as e:  # noqa: BLE001
            results.append(e)

    threads = [threading.Thread(target=get) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [b"own"] * n, results


def _gate_server(hostile, n: int):  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(n, timeout=5)

    def gate(conn: HostileConn) -> None:
        if conn.read_request() is None:
            return
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return
        conn.send(OWN)
        answer_each(OWN)(conn)

    return hostile(gate)


@pytest.mark.parametrize("how", ["close", "raise", "break"])
def test_leaving_mid_read_gives_every_slot_and_socket_back(hostile, how: str) -> None:
    fast = hostile(answer_each(OWN))
    slow = hostile(_stall_after_request)
    n = 4
    gate = _gate_server(hostile, n)
    fds = open_fds()
    session = fresh_session(max_connections_per_host=n, pool_timeout=2)
    urls = [fast.url + "/a"] + [slow.url + f"/{i}" for i in range(n)] + [fast.url + "/b"] * 30
    it = session.map(urls, concurrency=n + 1, timeout=TIMEOUT)
    start = time.monotonic()
    if how == "close":
        assert of(next(it))[::3] == (200, b"own")
        time.sleep(0.1)  # the slow ones are read from now
        it.close()
    elif how == "raise":
        del it

        def consume() -> None:
            for _ in session.map(urls, concurrency=n + 1, timeout=TIMEOUT):
                time.sleep(0.1)
                raise KeyError("caller")

        with pytest.raises(KeyError):
            consume()
    else:
        for _ in it:
            time.sleep(0.1)
            break
        del it
    assert time.monotonic() - start < 1.5
    assert in_use(session) == 0
    _prove_slots_free(session, gate.url + "/", n)
    session.close()
    slow.stop()
    gate.stop()
    fast.stop()
    assert open_fds() <= fds, "a socket was left open"


def _leave_mid_dial(hostile, ca_bundle: str) -> float:  # type: ignore[no-untyped-def]
    """Two requests dialing TLS to a server that never answers the handshake, one answered:
    take that one, close the iterator. Returns how long close() took; checks slots and fds."""
    silent = hostile(_silent)  # plain TCP that never answers the TLS handshake
    fast = hostile(answer_each(OWN))
    tls_url = silent.url.replace("http://", "https://")
    fds = open_fds()
    session = fresh_session(max_connections_per_host=2, pool_timeout=2)
    session.verify = ca_bundle
    urls = [fast.url + "/a", tls_url + "/1", tls_url + "/2"]
    it = session.map(urls, timeout=TIMEOUT, dial_workers=4)
    assert of(next(it))[::3] == (200, b"own")
    start = time.monotonic()
    it.close()
    took = time.monotonic() - start
    assert in_use(session) == 0
    _prove_slots_free(session, _gate_server(hostile, 2).url + "/", 2)
    session.close()
    silent.stop()
    fast.stop()
    gc.collect()
    assert open_fds() <= fds + 1, "a socket was left open"  # +1: the gate's listener
    return took


def test_leaving_mid_dial_gives_every_slot_and_socket_back(hostile, ca_bundle: str) -> None:
    _leave_mid_dial(hostile, ca_bundle)


def test_leaving_mid_dial_is_prompt(hostile, ca_bundle: str) -> None:
    took = _leave_mid_dial(hostile, ca_bundle)
    assert took < 1.0, f"it.close() waited {took:.1f} s for dials in progress"


def test_leaving_with_streamed_results_not_yet_yielded(hostile) -> None:
    # Several streamed answers end in the same poll; the caller takes one and leaves: the
    # ones never yielded hold connections nobody will read.
    server = hostile(answer_each(response(b"s" * 100_000)))
    n = 6
    session = fresh_session(max_connections_per_host=n, pool_timeout=1)
    it = session.map([server.url + f"/{i}" for i in range(n)], concurrency=n, stream=True)
    first = next(it)
    time.sleep(0.2)
    it.close()
    assert first.response is not None
    first.response.close()
    del first
    leaked = in_use(session)
    gc.collect()
    assert in_use(session) == 0
    assert leaked == 0, f"{leaked} connections in use until the GC ran"
    session.close()


def test_a_dial_error_and_a_read_error_leave_nothing_behind(hostile) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/"
    resetting = hostile([("read",), ("reset",)])
    fds = open_fds()
    with fresh_session() as session:
        results = list(session.map([dead, resetting.url + "/"] * 5, concurrency=10))
        kinds = sorted({type(r.error).__name__ for r in results})
        assert in_use(session) == 0
    resetting.stop()
    want = sorted({single(dead, [""])[0][1], single(resetting.url, ["/"])[0][1]})
    assert kinds == want
    assert open_fds() <= fds
