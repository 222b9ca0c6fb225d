"""Backend fixtures: every core test runs once on the compiled module (id ``c``) and once on its
pure-Python twin (id ``py``).

The compiled modules are imported directly, so a build that lacks one fails loudly instead of
quietly testing the twin twice. ``--no-c-extensions`` skips the ``c`` leg, for pure installs.
With ``FASTPOOL_NO_EXTENSIONS`` set, the ``c_extension`` tests are deselected: the compiled pass
ran them already, and the variable does not change what they import.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest
from hypothesis import settings

# CI runs the same examples every time (a failure there names its reproducer and does not
# depend on luck); a developer's run explores new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--no-c-extensions",
        action="store_true",
        default=False,
        help="skip the compiled backend (for a pure-Python install)",
    )


def pytest_report_header(config: pytest.Config) -> str:
    import fastpool

    return f"fastpool backend in use by the facades: {fastpool.implementation()}"


@pytest.fixture(
    scope="session",
    params=[pytest.param("c", marks=pytest.mark.c_extension), "py"],
)
def backend(request: pytest.FixtureRequest) -> str:
    """``"c"`` or ``"py"``: the backend a core test runs on."""
    if request.param == "c" and request.config.getoption("--no-c-extensions"):
        pytest.skip("--no-c-extensions given")
    return str(request.param)


def _core(name: str, backend: str) -> ModuleType:
    return importlib.import_module(f"fastpool.{name}_{backend}")


@pytest.fixture(scope="session")
def lru_module(backend: str) -> ModuleType:
    return _core("_lru", backend)


@pytest.fixture(scope="session")
def lru_cls(lru_module: ModuleType) -> type:
    return lru_module.LRUMap  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def hostqueue_module(backend: str) -> ModuleType:
    return _core("_hostqueue", backend)


@pytest.fixture(scope="session")
def hostqueue_cls(hostqueue_module: ModuleType) -> type:
    return hostqueue_module.HostQueue  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def schedule_module(backend: str) -> ModuleType:
    return _core("_schedule", backend)


@pytest.fixture(scope="session")
def scheduler_cls(schedule_module: ModuleType) -> type:
    return schedule_module.HostScheduler  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def prefix_module(backend: str) -> ModuleType:
    return _core("_prefix", backend)


@pytest.fixture(scope="session")
def router_cls(prefix_module: ModuleType) -> type:
    return prefix_module.PrefixRouter  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def http11(backend: str) -> ModuleType:
    """The ``_http11`` core module of the backend under test."""
    return _core("_http11", backend)


#: How many compiled-backend tests the FASTPOOL_NO_EXTENSIONS pass left out (for the header).
_DESELECTED = pytest.StashKey[int]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With ``FASTPOOL_NO_EXTENSIONS`` set, leave out the compiled-backend variants (marker
    ``c_extension``): they import the compiled modules directly, so the variable does not change
    what they run, and the compiled pass already ran them."""
    from fastpool._compat import env_flag

    if not env_flag(os.environ.get("FASTPOOL_NO_EXTENSIONS")):
        return
    compiled = [item for item in items if item.get_closest_marker("c_extension") is not None]
    if compiled:
        items[:] = [item for item in items if item.get_closest_marker("c_extension") is None]
        config.hook.pytest_deselected(items=compiled)
        config.stash[_DESELECTED] = len(compiled)


def pytest_report_collectionfinish(config: pytest.Config) -> str | None:
    count = config.stash.get(_DESELECTED, 0)
    if not count:
        return None
    return (
        f"FASTPOOL_NO_EXTENSIONS: {count} compiled-backend (c_extension) tests deselected:"
        " the compiled pass runs them, and the variable does not change them"
    )
