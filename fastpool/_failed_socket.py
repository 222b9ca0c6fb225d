"""A socket stand-in for a connection whose read failed in the multiplexed loop."""

from __future__ import annotations

from typing import Any

__all__ = ("FailedSocket",)


class FailedSocket:
    """Stands in for a connection's socket after the loop met an error reading from it: the
    next receive raises that error (a timeout, a reset) where the blocking code would have met
    it, and closing closes the real socket. The connection is never reused after it."""

    __slots__ = ("_error", "_sock")

    def __init__(self, sock: Any, error: BaseException) -> None:
        self._sock = sock
        self._error = error

    def _raise(self, *args: Any) -> Any:
        raise self._error

    recv = recv_into = send = sendall = _raise

    def settimeout(self, timeout: float | None) -> None:
        """Nothing to wait for: the next receive fails at once."""

    def gettimeout(self) -> float | None:
        """The real socket's timeout."""
        return self._sock.gettimeout()  # type: ignore[no-any-return]

    def pending(self) -> int:
        """No bytes are buffered."""
        return 0

    def fileno(self) -> int:
        """The real socket's descriptor (until closed)."""
        return self._sock.fileno()  # type: ignore[no-any-return]

    def shutdown(self, how: int) -> None:
        """Shut the real socket down."""
        self._sock.shutdown(how)

    def close(self) -> None:
        """Close the real socket."""
        self._sock.close()
