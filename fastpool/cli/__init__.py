"""The tooling around the library: the ``fastpool`` command (:mod:`fastpool.cli.command`), its
demo (:mod:`fastpool.cli.demo`) and the loopback servers both measure against
(:mod:`fastpool.cli.localserver`).

This subpackage sits above the library: it may import requests and any fastpool module, and no
module of the library imports it. The command is imported on the first call of :func:`main`, so
``python -m fastpool.cli.localserver`` (the server's child process) loads neither requests nor
the command.
"""

from __future__ import annotations

from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ("main",)


def main(
    argv: Sequence[str] | None = None, out: IO[str] | None = None, err: IO[str] | None = None
) -> int:
    """Run the ``fastpool`` command (the console script and ``python -m fastpool``); returns the
    exit status. See :func:`fastpool.cli.command.main`."""
    # Imported here, not at the top: see the module docstring.
    from .command import main as run

    return run(argv, out, err)
