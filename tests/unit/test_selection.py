"""Backend selection: ``FASTPOOL_NO_EXTENSIONS``, ``fastpool.implementation()`` and the facades.

Fresh interpreters (subprocesses) check what a user gets at import time; one in-process test
re-imports fastpool with the env var set, as frozenlist's suite does. The facades are checked
generically: every name in a facade's ``__all__`` must be the very object of the chosen backend.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastpool
from fastpool import _compat
from fastpool._compat import CORES, env_flag

#: The directory that holds the ``fastpool`` package under test, so subprocesses import it too.
PACKAGE_ROOT = str(Path(fastpool.__file__).resolve().parent.parent)

# Run in a fresh interpreter: which backend, and where each facade name comes from.
PROBE = """
import importlib, json, sys
{prelude}
import fastpool
from fastpool._compat import CORES
origins = {{}}
for core in CORES:
    facade = importlib.import_module("fastpool." + core)
    for name in facade.__all__:
        value = getattr(facade, name)
        found = [
            suffix
            for suffix in ("_c", "_py")
            if getattr(sys.modules.get("fastpool." + core + suffix), name, None) is value
        ]
        # a small int both twins define is one object: it names no backend
        origins[core + "." + name] = found[0] if len(found) == 1 else ("both" if found else "?")
print(json.dumps({{"implementation": fastpool.implementation(), "origins": origins}}))
"""


def probe(env_value: str | None, prelude: str = "") -> dict[str, object]:
    """Import fastpool in a fresh interpreter with FASTPOOL_NO_EXTENSIONS set to ``env_value``
    (unset for None) and report the implementation and the origin of every facade name.
    """
    env = {k: v for k, v in os.environ.items() if k != "FASTPOOL_NO_EXTENSIONS"}
    if env_value is not None:
        env["FASTPOOL_NO_EXTENSIONS"] = env_value
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(prelude=prelude)],
        cwd=PACKAGE_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def compiled_cores_present() -> bool:
    """Whether every core has a compiled extension module next to the package."""
    for core in CORES:
        spec = importlib.util.find_spec(f"fastpool.{core}_c")
        if spec is None or not isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            return False
    return True


def assert_all_from(report: dict[str, object], implementation: str, suffix: str) -> None:
    origins = report["origins"]
    assert isinstance(origins, dict)
    # every core contributes at least one public name
    assert {key.split(".")[0] for key in origins} == set(CORES)
    assert report["implementation"] == implementation
    assert set(origins.values()) - {"both"} == {suffix}, origins


# --- the env var's truth table -----------------------------------------------------------------
@pytest.mark.parametrize(
    "value", [None, "", " ", "0", "false", "False", "FALSE", "no", "No", "off", "OFF", " 0 "]
)
def test_env_flag_false(value):
    assert env_flag(value) is False


@pytest.mark.parametrize("value", ["1", "true", "True", "yes", "on", "2", "pure", " 1 ", "y"])
def test_env_flag_true(value):
    assert env_flag(value) is True


# --- fresh interpreters ------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_env_var_selects_pure_twins(value):
    assert_all_from(probe(value), "python", "_py")


@pytest.mark.parametrize("value", [None, "0", "off", ""])
def test_default_uses_compiled_core_when_built(value):
    if compiled_cores_present():
        assert_all_from(probe(value), "cython", "_c")
    else:  # an uncompiled checkout or a pure install: all twins
        assert_all_from(probe(value), "python", "_py")


@pytest.mark.parametrize("missing", CORES)
def test_one_missing_compiled_core_means_all_pure(missing):
    # sys.modules[name] = None makes that import raise ImportError, as a missing .so would.
    report = probe(None, prelude=f"sys.modules['fastpool.{missing}_c'] = None")
    assert_all_from(report, "python", "_py")


def test_other_interpreters_are_pure():
    # urllib3 and requests are imported before the fake: fastpool reads sys.implementation
    # when it is imported, and older urllib3 (2.0) reads it too and cannot import as "pypy".
    prelude = (
        "import types, urllib3, requests\n"
        "fake = types.SimpleNamespace(**vars(sys.implementation))\n"
        "fake.name = 'pypy'\n"
        "sys.implementation = fake"
    )
    assert_all_from(probe(None, prelude=prelude), "python", "_py")


# --- in-process re-import (frozenlist style) ---------------------------------------------------
@pytest.fixture
def fresh_fastpool(monkeypatch: pytest.MonkeyPatch):
    """Forget every fastpool module; restore the originals after the test."""
    saved = {name: mod for name, mod in sys.modules.items() if name.partition(".")[0] == "fastpool"}
    for name in saved:
        monkeypatch.delitem(sys.modules, name)
    yield
    for name in [n for n in sys.modules if n.partition(".")[0] == "fastpool"]:
        del sys.modules[name]
    sys.modules.update(saved)


def test_reimport_with_env_var_is_pure(monkeypatch, fresh_fastpool):
    monkeypatch.setenv("FASTPOOL_NO_EXTENSIONS", "1")
    fresh = importlib.import_module("fastpool")
    assert fresh is not fastpool
    assert fresh.implementation() == "python"
    assert importlib.import_module("fastpool._compat").NO_EXTENSIONS is True
    for core in CORES:
        facade = importlib.import_module(f"fastpool.{core}")
        twin = importlib.import_module(f"fastpool.{core}_py")
        assert facade.__all__
        for name in facade.__all__:
            assert getattr(facade, name) is getattr(twin, name), (core, name)


def test_reimport_leaves_the_session_backend_alone():
    # After the re-import test above, this process still sees its original modules.
    assert sys.modules["fastpool"] is fastpool
    assert sys.modules["fastpool._compat"] is _compat
    assert fastpool.implementation() == _compat.IMPLEMENTATION
