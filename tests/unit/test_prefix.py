"""PrefixRouter on both backends: unit tests and a state machine against requests.Session."""

from __future__ import annotations

import gc
import importlib
import random
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from fastpool.exceptions import MSG_NO_MATCH, MSG_NOT_STR, FastpoolError, NoMatchError


def requests_pick(mounts: list[tuple[str, Any]], url: str) -> Any:
    """requests' answer for ``url`` after mounting ``mounts`` in order on a bare Session."""
    session = requests.Session()
    session.adapters.clear()
    for prefix, value in mounts:
        session.mount(prefix, value)  # type: ignore[arg-type]
    try:
        return session.get_adapter(url)
    except requests.exceptions.InvalidSchema:
        return None


def router_with(router_cls: type, mounts: list[tuple[str, Any]]) -> Any:
    router = router_cls()
    for prefix, value in mounts:
        router.mount(prefix, value)
    return router


# --- basics and bad input -----------------------------------------------------------------------


def test_empty_router_matches_nothing(router_cls: type) -> None:
    router = router_cls()
    with pytest.raises(NoMatchError) as info:
        router.match("http://example.com/")
    assert str(info.value) == MSG_NO_MATCH.format(url="http://example.com/")
    assert str(info.value) == "No connection adapters were found for 'http://example.com/'"
    assert isinstance(info.value, LookupError)
    assert isinstance(info.value, FastpoolError)
    assert len(router) == 0
    assert router.prefixes() == []
    assert repr(router) == "<PrefixRouter len=0>"


@pytest.mark.parametrize("bad", [b"http://", None, 3, ["http://"]])
def test_prefix_must_be_str(router_cls: type, bad: object) -> None:
    router = router_cls()
    message = MSG_NOT_STR.format(name="prefix", type=type(bad).__name__)
    with pytest.raises(TypeError) as info:
        router.mount(bad, "x")
    assert str(info.value) == message
    with pytest.raises(TypeError) as info:
        router.unmount(bad)
    assert str(info.value) == message
    assert len(router) == 0


@pytest.mark.parametrize("bad", [b"http://x", None, 3])
def test_url_must_be_str(router_cls: type, bad: object) -> None:
    router = router_with(router_cls, [("", "all")])
    with pytest.raises(TypeError) as info:
        router.match(bad)
    assert str(info.value) == MSG_NOT_STR.format(name="url", type=type(bad).__name__)


def test_longest_prefix_wins_case_insensitively(router_cls: type) -> None:
    mounts = [
        ("http://", "plain"),
        ("https://", "tls"),
        ("https://API.example.com/", "api"),
        ("https://api.example.com/v2/", "v2"),
    ]
    router = router_with(router_cls, mounts)
    cases = {
        "http://x/": "plain",
        "HTTPS://x/": "tls",
        "https://api.EXAMPLE.com/v1/": "api",
        "https://api.example.com/V2/things": "v2",
        "https://api.example.com": "tls",  # the URL ends inside an edge
    }
    for url, expected in cases.items():
        assert router.match(url) == expected == requests_pick(mounts, url)
    with pytest.raises(NoMatchError):
        router.match("ftp://x/")


def test_ties_go_to_the_first_mounted_and_remount_keeps_place(router_cls: type) -> None:
    mounts = [("HTTP://", "upper"), ("http://", "lower"), ("Http://", "mixed")]
    router = router_with(router_cls, mounts)
    assert router.match("http://x") == "upper"
    router.mount("HTTP://", "upper-2")  # replace the value, keep the place
    assert router.match("http://x") == "upper-2"
    assert router.prefixes() == ["HTTP://", "http://", "Http://"]
    assert router.unmount("HTTP://") == "upper-2"
    assert router.match("http://x") == "lower"
    router.mount("HTTP://", "back")  # a new mount goes behind its equals
    assert router.prefixes() == ["http://", "Http://", "HTTP://"]
    assert router.match("hTTp://x") == "lower"


def test_order_is_requests_adapters_order(router_cls: type) -> None:
    mounts = [("a", 1), ("bbb", 2), ("cc", 3), ("ddd", 4), ("", 5), ("e", 6)]
    router = router_with(router_cls, mounts)
    session = requests.Session()
    session.adapters.clear()
    for prefix, value in mounts:
        session.mount(prefix, value)  # type: ignore[arg-type]
    assert router.prefixes() == list(session.adapters) == ["bbb", "ddd", "cc", "a", "e", ""]
    assert router.items() == list(session.adapters.items())


def test_empty_prefix_matches_everything(router_cls: type) -> None:
    router = router_with(router_cls, [("", "any"), ("x", "x")])
    assert router.match("") == "any"
    assert router.match("anything") == "any"
    assert router.match("X-ray") == "x"


def test_exact_prefix_lookups_are_case_sensitive(router_cls: type) -> None:
    router = router_with(router_cls, [("http://", "plain")])
    assert "http://" in router
    assert "HTTP://" not in router
    assert 3 not in router
    assert router.get("http://") == "plain"
    assert router.get("HTTP://") is None
    assert router.get("HTTP://", "dflt") == "dflt"
    with pytest.raises(KeyError) as info:
        router.unmount("HTTP://")
    assert info.value.args == ("HTTP://",)
    assert router.match("HTTP://x") == "plain"


def test_unmount_prunes_the_tree(router_cls: type) -> None:
    mounts = [("https://a.example/", 1), ("https://a.example/x/", 2), ("https://b.example/", 3)]
    router = router_with(router_cls, mounts)
    assert router.unmount("https://a.example/") == 1
    assert router.match("https://a.example/x/y") == 2
    with pytest.raises(NoMatchError):
        router.match("https://a.example/y")
    for prefix in ("https://a.example/x/", "https://b.example/"):
        router.unmount(prefix)
    assert len(router) == 0
    with pytest.raises(NoMatchError):
        router.match("https://b.example/")
    router.mount("https://", "again")
    assert router.match("https://b.example/") == "again"


def test_clear(router_cls: type) -> None:
    router = router_with(router_cls, [("http://", 1), ("https://", 2)])
    router.clear()
    assert len(router) == 0
    assert router.prefixes() == []
    with pytest.raises(NoMatchError):
        router.match("http://x")
    router.mount("http://", 3)
    assert router.match("http://x") == 3


def test_repr_and_generic_alias(router_cls: type) -> None:
    router = router_with(router_cls, [("http://", 1), ("https://", 2)])
    assert repr(router) == "<PrefixRouter len=2>"
    assert router_cls[int] is not None


class _Tracked:
    """A value a weak reference can watch."""


def test_no_reference_cycles(router_cls: type) -> None:
    # With the cyclic GC off, unmounting or dropping the router frees the values at once.
    gc.disable()
    try:
        router = router_cls()
        values = [_Tracked() for _ in range(4)]
        refs = [weakref.ref(value) for value in values]
        for prefix, value in zip(["http://", "https://", "https://a/", "https://a/b/"], values):
            router.mount(prefix, value)
        del value, values
        router.unmount("https://a/")
        assert refs[2]() is None
        del router
        assert all(ref() is None for ref in refs)
    finally:
        gc.enable()


# --- Unicode: lower() changes lengths and depends on context -------------------------------------


@pytest.mark.parametrize(
    ("mounts", "url"),
    [
        # "İ".lower() is "i̇" (two characters): the deeper node has the SHORTER original prefix,
        # and requests ranks by the original length.
        ([("İİ", "dotted-I x2"), ("i\u0307i", "i-dot-i")], "İİx"),
        ([("i\u0307i", "i-dot-i"), ("İİ", "dotted-I x2")], "i\u0307i\u0307"),
        ([("İ", "dotted-I"), ("i\u0307", "i-dot")], "İ/"),
        # The Kelvin sign lowers to ASCII "k".
        ([("\u212a", "kelvin"), ("k", "k")], "Kx"),
        ([("\u212aa", "kelvin-a")], "ka"),
        # A final sigma lowers to "ς" at the end of a word but to "σ" inside one.
        ([("ΑΣ", "alpha-sigma")], "ΑΣ"),
        ([("ΑΣ", "alpha-sigma")], "ΑΣΑ"),
        ([("ΑΣ", "alpha-sigma"), ("ασ", "lower")], "ΑΣΑ"),
        ([("ας", "final")], "ΑΣ"),
        ([("ß", "eszett")], "SS"),  # lower() of "ß" is itself; no case folding
    ],
)
def test_unicode_like_requests(router_cls: type, mounts: list[tuple[str, Any]], url: str) -> None:
    router = router_with(router_cls, mounts)
    expected = requests_pick(mounts, url)
    try:
        got = router.match(url)
    except NoMatchError:
        got = None
    assert got == expected


def test_dotted_capital_i_ranks_by_original_length(router_cls: type) -> None:
    router = router_with(router_cls, [("İİ", "short"), ("i\u0307i", "long")])
    assert router.match("İİx") == "long"


# --- many mounts --------------------------------------------------------------------------------


def test_ten_thousand_mounts_match_like_a_linear_scan(router_cls: type) -> None:
    rng = random.Random(1234)
    hosts = [f"h{rng.randrange(10**6)}.Example.com" for _ in range(10_000)]
    mounts = [("https://", "tls"), ("http://", "plain")]
    mounts += [(f"https://{host}/{rng.choice(['', 'api/'])}", host) for host in hosts]
    router = router_with(router_cls, mounts)
    ranked = router.prefixes()
    for _ in range(300):
        url = f"https://{rng.choice(hosts).lower()}/{rng.choice(['', 'api/v1', 'x'])}"
        if rng.random() < 0.2:
            url = "HTTPS://nowhere.example/"
        first = next(p for p in ranked if url.lower().startswith(p.lower()))
        assert router.match(url) == router.get(first)


# --- threads ------------------------------------------------------------------------------------


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads far more often than the default 5 ms, to shake out races."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(interval)


def test_matches_stay_right_while_another_thread_remounts(
    router_cls: type, fast_switching: None
) -> None:
    # The churn prefixes split and fold the edges on the stable prefixes' paths but never beat
    # them, so every match must keep returning the stable answer.
    stable = [("https://", "tls"), ("https://api.example.com/", "api"), ("http://", "plain")]
    churn = ["https://api.ex", "https://api.exz", "https://b", "HTTPS://API.EXAMPLE.COM/V", "h"]
    expected = {
        "https://api.example.com/x": "api",
        "HTTPS://API.EXAMPLE.COM/": "api",
        "https://api.eq": "tls",
        "http://x": "plain",
    }
    router = router_with(router_cls, stable)
    stop = threading.Event()
    errors: list[BaseException] = []
    deadline = time.monotonic() + 10

    def remount() -> None:
        try:
            for i in range(20_000):
                if stop.is_set() or time.monotonic() > deadline:
                    break
                prefix = churn[i % len(churn)]
                if prefix in router:
                    router.unmount(prefix)
                else:
                    router.mount(prefix, "churn")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def read() -> None:
        try:
            for _ in range(5_000):
                if stop.is_set() or time.monotonic() > deadline:
                    break
                for url, value in expected.items():
                    got = router.match(url)
                    assert got == value, (url, got)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            stop.set()

    workers = [threading.Thread(target=remount)] + [threading.Thread(target=read) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers[1:]:
        worker.join(30)
    stop.set()
    workers[0].join(30)
    assert not any(worker.is_alive() for worker in workers)
    assert errors == []
    for url, value in expected.items():
        assert router.match(url) == value


# --- state machine: compiled vs pure vs requests.Session ---------------------------------------

ALPHABET = [
    "h",
    "H",
    "t",
    "p",
    ":",
    "/",
    "a",
    "A",
    "İ",
    "i",
    "\u0307",
    "Σ",
    "σ",
    "ς",
    "\u212a",
    "k",
]
TEXT = st.text(alphabet=st.sampled_from(ALPHABET), max_size=5)


class PrefixComparison(RuleBasedStateMachine):
    """Drive compiled, pure and requests routers with the same mounts and URLs."""

    mounted = Bundle("mounted")

    @initialize()
    def setup(self) -> None:
        self.c = importlib.import_module("fastpool._prefix_c").PrefixRouter()
        self.py = importlib.import_module("fastpool._prefix_py").PrefixRouter()
        self.session = requests.Session()
        self.session.adapters.clear()
        self.counter = 0

    @rule(target=mounted, prefix=TEXT)
    def mount(self, prefix: str) -> str:
        self.counter += 1
        value = f"v{self.counter}"
        self.c.mount(prefix, value)
        self.py.mount(prefix, value)
        self.session.mount(prefix, value)  # type: ignore[arg-type]
        return prefix

    @rule(prefix=mounted)
    def remount(self, prefix: str) -> None:
        self.mount(prefix)

    @rule(prefix=mounted)
    def unmount(self, prefix: str) -> None:
        expected = self.session.adapters.pop(prefix, None)
        for router in (self.c, self.py):
            if expected is None:
                with pytest.raises(KeyError):
                    router.unmount(prefix)
            else:
                assert router.unmount(prefix) == expected

    def _check(self, url: str) -> None:
        try:
            expected = self.session.get_adapter(url)
        except requests.exceptions.InvalidSchema as exc:
            for router in (self.c, self.py):
                with pytest.raises(NoMatchError) as info:
                    router.match(url)
                assert str(info.value) == str(exc)
        else:
            assert self.c.match(url) == self.py.match(url) == expected

    @rule(url=TEXT)
    def match(self, url: str) -> None:
        self._check(url)

    @rule(prefix=mounted, suffix=TEXT, upper=st.booleans())
    def match_extension(self, prefix: str, suffix: str, upper: bool) -> None:
        url = prefix + suffix
        self._check(url.upper() if upper else url)

    @invariant()
    def same_order(self) -> None:
        expected = list(self.session.adapters.items())
        assert self.c.items() == self.py.items() == expected
        assert len(self.c) == len(self.py) == len(expected)


@pytest.mark.c_extension
def test_state_machine_against_requests(request: pytest.FixtureRequest) -> None:
    if request.config.getoption("--no-c-extensions"):
        pytest.skip("--no-c-extensions given")
    run = settings(max_examples=300, stateful_step_count=40, deadline=None)(PrefixComparison)
    run.TestCase().runTest()


@pytest.mark.c_extension
@pytest.mark.parametrize("small", [0, 1000], ids=["always-tree", "always-scan"])
def test_state_machine_pure_paths(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, small: int
) -> None:
    """The pure twin scans a few mounts and walks its tree past ``_SMALL``: each path alone
    must give requests' answers, whatever the number of mounts."""
    if request.config.getoption("--no-c-extensions"):
        pytest.skip("--no-c-extensions given")
    monkeypatch.setattr(importlib.import_module("fastpool._prefix_py"), "_SMALL", small)
    run_state_machine_as_test(
        PrefixComparison,
        settings=settings(max_examples=150, stateful_step_count=40, deadline=None),
    )
