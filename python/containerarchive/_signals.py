"""Signal deferral while an ingest commits (see :data:`_deferred`): the API opens the window
with :func:`_signals_deferred`, a signal handler (the CLI's) asks :func:`defer_signal`.

Must not install signal handlers, and must not import :mod:`.repository`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

#: Set while an ingest commits: a signal handler that honours it (the CLI's) records the
#: signal instead of raising, and it is raised once the commit is done — so that a signal
#: never makes the CLI report "nothing was committed" about a snapshot that was.
_deferred: list[int] | None = None


@contextmanager
def _signals_deferred() -> Iterator[None]:
    global _deferred
    _deferred = []
    try:
        yield
    finally:
        pending, _deferred = _deferred, None
    if pending:
        from .errors import Interrupted

        raise Interrupted(pending[0])


def defer_signal(signum: int) -> bool:
    """For signal handlers: whether `signum` was recorded to be raised after the commit under
    way (True), or must be acted on now (False)."""
    if _deferred is None:
        return False
    _deferred.append(signum)
    return True
