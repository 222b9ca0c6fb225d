"""The lane's plain-target check (``fastpool._lane``), each twin against the regular expression
it stands for: the compiled twin scans the characters itself, the pure one asks the pattern.

The lane's decisions themselves are held to the general steps with real servers in
``tests/with_dummyserver/test_map_lane.py``.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastpool.pool import PLAIN_ORIGIN_FORM

#: every character the pattern takes, and neighbours it must refuse
_NEAR = "/?#%. -_~!$&'()*+,;=:@[]\\^`{|}\"<>\t\r\n\x00\x7f\x80éあ\U0001f600aZ09"


@pytest.fixture(scope="module", params=["python", "cython"])
def twin(request: pytest.FixtureRequest) -> Any:
    name = "fastpool._lane_py" if request.param == "python" else "fastpool._lane_c"
    try:
        return importlib.import_module(name)
    except ImportError:
        pytest.skip("no compiled lane in this build")


def expected(target: str) -> bool:
    return PLAIN_ORIGIN_FORM.fullmatch(target) is not None


@given(st.text(alphabet=st.sampled_from(_NEAR), max_size=12))
def test_the_check_is_the_pattern_near_its_edges(twin: Any, target: str) -> None:
    assert twin.plain_origin_form(target) is expected(target)
    assert twin.plain_origin_form("/" + target) is expected("/" + target)


@given(st.text(max_size=20))
def test_the_check_is_the_pattern_for_any_text(twin: Any, target: str) -> None:
    assert twin.plain_origin_form("/" + target) is expected("/" + target)


@pytest.mark.parametrize(
    ("target", "plain"),
    [
        ("/", True),
        ("/a/b?c=d&e=f?g", True),
        ("/~user/it's(1)*+,;=:@!$", True),
        ("", False),
        ("a/b", False),
        ("?a", False),
        ("/a b", False),
        ("/%41", False),
        ("/a#b", False),
        ("/\x7f", False),
        ("/é", False),
    ],
)
def test_the_check_on_a_corpus(twin: Any, target: str, plain: bool) -> None:
    assert twin.plain_origin_form(target) is plain is expected(target)


@pytest.mark.parametrize("other", [None, b"/a", 1, ["/a"]])
def test_anything_but_a_str_is_not_plain(twin: Any, other: Any) -> None:
    assert twin.plain_origin_form(other) is False


@pytest.mark.parametrize(
    ("target", "taken"),
    [
        ("/a/b?c", True),
        ("/a.b/c.d", True),
        ("/a/./b", False),
        ("/a/../b", False),
        ("/.hidden", False),
        ("/a?b=/.", False),  # (urllib3 leaves the query alone; the lane is simply cautious)
        ("/a b", False),
        (None, False),
        (b"/a", False),
    ],
)
def test_the_lane_takes_a_plain_target_without_dot_segments(
    twin: Any, target: Any, taken: bool
) -> None:
    assert twin.lane_target(target) is taken
