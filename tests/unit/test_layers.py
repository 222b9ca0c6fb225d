"""The package's floors: the engine (``PoolManager`` and what it uses) never imports requests, and
no module of the library imports the tooling subpackage :mod:`fastpool.cli`, which sits on top."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import fastpool

PACKAGE = Path(fastpool.__file__).resolve().parent
# ``python -m fastpool`` is the command's own entry point: tooling, though it sits at the top.
_TOOLING = ("cli", "__main__.py")


def _imported_modules(path: Path) -> set[str]:
    """The absolute names of the modules ``path`` imports (relative imports resolved)."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = parts if parts[-1] == "__init__" else parts[:-1]
    if package[-1] == "__init__":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_the_library_never_imports_the_tooling() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] in _TOOLING:
            continue
        names = _imported_modules(path)
        if any(name == "fastpool.cli" or name.startswith("fastpool.cli.") for name in names):
            offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []


def test_the_engine_never_imports_requests() -> None:
    code = (
        "import sys, fastpool, fastpool.poolmanager, fastpool.cli\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'requests'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=str(PACKAGE.parent),
    )
    assert result.stdout.strip() == "[]"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_import_cycle_between_the_modules() -> None:
    # Arrows point down: no module imports, even for type checking only, one that imports it
    # back (directly or through others). The package's own __init__ is the lazy front door.
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {
        name: {m for m in _imported_modules(path) if m in modules and m not in (name, "fastpool")}
        for name, path in modules.items()
    }
    cycles = []

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt == start:
                cycles.append(" -> ".join([*path, start]))
            elif nxt > start and nxt not in path:  # each cycle once, from its smallest name
                walk(start, nxt, [*path, nxt])

    for name in sorted(graph):
        walk(name, name, [name])
    assert cycles == []
