"""``fastpool.install()``: requests' own entry points use :class:`fastpool.Session`.

requests has two names for its Session class: ``requests.Session``, which programs name, and
``requests.sessions.Session``, which ``requests.get`` and the other module-level functions,
and ``requests.session()``, look up on every call. :func:`install` replaces both, and
:func:`uninstall` puts back what it replaced.

Tools keep working whichever comes first:

* tools that patch requests' classes (responses patches ``requests.adapters.HTTPAdapter.send``,
  requests-mock and OpenTelemetry ``requests.Session.send``) are noticed by fastpool's adapter
  and Session, which then take the patched route; a tool that patches after :func:`install`,
  through the name ``requests.Session``, patches fastpool's class itself;
* a tool that had already replaced the Session class with a subclass of requests' own
  (requests-cache's ``install_cache()``) keeps its class: :func:`install` installs a class
  made of that one and :class:`fastpool.Session` (the tool's methods first, then fastpool's in
  place of requests').
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any, final

__all__ = ("Installation", "install", "installed", "uninstall")

_lock = threading.RLock()
# (requests.Session, requests.sessions.Session) as install() found them, and what it set
_saved: tuple[Any, Any] | None = None
_installed: type | None = None


@final
class Installation:
    """What :func:`install` returns. As a context manager, its exit undoes that install
    (nothing, when fastpool was installed already): ``with fastpool.install(): ...``."""

    __slots__ = ("_owner",)

    def __init__(self, owner: bool) -> None:
        self._owner = owner

    def __enter__(self) -> Installation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._owner:
            self._owner = False
            uninstall()

    def __repr__(self) -> str:
        return f"<fastpool.Installation session_class={installed()!r}>"


def _session_class(current: type) -> type:
    """The class to install in place of ``current``."""
    from .sessions import Session, _RequestsSession

    if current is _RequestsSession or issubclass(current, Session):
        return Session if current is _RequestsSession else current
    if not issubclass(current, _RequestsSession):
        raise TypeError(
            f"requests.sessions.Session is {current!r}, not a subclass of requests' Session: "
            "fastpool.install() cannot put fastpool.Session in its place"
        )
    # Another tool's subclass of requests' Session (requests-cache's install_cache): keep it,
    # with fastpool.Session in place of requests' Session in its bases.
    name = current.__name__
    mixed = type(
        name,
        (current, Session),
        {
            "__module__": current.__module__,
            "__qualname__": f"{getattr(current, '__qualname__', name)}+fastpool.Session",
            "__doc__": current.__doc__,
        },
    )
    return mixed


def install() -> Installation:
    """Make ``requests.Session()``, ``requests.session()`` and ``requests.get`` (and every
    other module-level function of requests) use :class:`fastpool.Session`.

    Replaces ``requests.Session`` and ``requests.sessions.Session``. Sessions that exist
    already, classes that subclassed ``requests.Session`` before, and adapters mounted
    explicitly (``requests.adapters.HTTPAdapter``) are not changed. Calling it again while
    installed does nothing. Returns an :class:`Installation`, a context manager that
    uninstalls on exit::

        with fastpool.install():
            requests.get(url)  # through fastpool.Session

    Not meant to be called while other threads create sessions.
    """
    global _saved, _installed
    import requests
    import requests.sessions

    with _lock:
        current = requests.sessions.Session
        if _installed is not None and current is _installed:
            return Installation(False)
        cls = _session_class(current)
        _saved = (requests.Session, current)
        requests.Session = requests.sessions.Session = cls  # type: ignore[misc,assignment]
        _installed = cls
        return Installation(True)


def uninstall() -> None:
    """Undo :func:`install`: put back the Session classes it replaced.

    A name that something else has replaced since (requests-cache's ``install_cache()`` or
    ``uninstall_cache()``) is left as that tool set it. Does nothing when not installed.
    """
    global _saved, _installed
    import requests
    import requests.sessions

    with _lock:
        if _saved is None:
            return
        top, module = _saved
        if requests.sessions.Session is _installed:
            requests.sessions.Session = module  # type: ignore[misc]
        if requests.Session is _installed:
            requests.Session = top  # type: ignore[misc]
        _saved = None
        _installed = None


def installed() -> type | None:
    """The Session class :func:`install` put in place, while it is installed; else None."""
    return _installed
