"""fastpool: fast, observable, thread-safe HTTP connection pooling for requests users and crawlers."""

from __future__ import annotations

from ._compat import IMPLEMENTATION

__version__ = "0.1.0"
__all__ = ("__version__", "implementation")


def implementation() -> str:
    """Return the active core backend: ``"cython"`` (compiled) or ``"python"`` (pure twins)."""
    return IMPLEMENTATION
