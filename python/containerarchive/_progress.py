"""Progress accounting of long operations: bytes done against a known total, item by item,
turned into throttled progress events (:class:`~containerarchive.events.Throttle`), and the
native progress callbacks that feed them (None when nobody listens, so that the engine skips
the calls).

Must not decide what an operation does, and must not import :mod:`.repository`.
"""

from __future__ import annotations

from collections.abc import Callable

from .events import Emitter, Throttle


class _Counter:
    """Bytes done of one operation with a known total, reported through a :class:`Throttle`."""

    def __init__(self, throttle: Throttle, total: int | None):
        self._throttle = throttle
        self._total = total
        self._base = 0  # bytes of earlier items
        self._done = 0

    def add(self, n: int, message: str) -> None:
        self._done += n
        self._throttle.report(self._base + self._done, self._total, message)

    def callback(self, message: str) -> Callable[[int], None] | None:
        """A native progress callback (bytes done in the current call), or None when nobody
        listens (the engine then skips the calls)."""
        if not self._throttle.active:
            return None

        def report(done_in_call: int) -> None:
            self._done = done_in_call
            self._throttle.report(self._base + self._done, self._total, message)

        return report

    def next_item(self) -> None:
        self._base += self._done
        self._done = 0

    def done(self, message: str) -> None:
        self.next_item()
        self._throttle.report(self._base, self._total, message, final=True)


class _IngestProgress(_Counter):
    def __init__(self, throttle: Throttle, total: int | None):
        super().__init__(throttle, total)
        self.item = ""

    def advance(self, n: int) -> None:
        self.add(n, f"ingesting {self.item}")

    def callback(self, message: str | None = None) -> Callable[[int], None] | None:
        # Native calls count from 0 each time: bytes already taken from a Python buffer first
        # (write + write_fd of one item) are kept apart.
        self.next_item()
        return super().callback(message or f"ingesting {self.item}")

    def finish_item(self) -> None:
        self.next_item()

    def report(self, *, final: bool = False) -> None:
        self._throttle.report(self._base, self._total, "ingested", final=final)


def _collect_progress(events: Emitter, operation: str) -> Callable[[int, int, str], None] | None:
    """The native progress callback of prune or forget (None when nobody listens)."""
    throttle = Throttle(events, "prune:progress", operation)
    if not throttle.active:
        return None

    def progress(done: int, total: int, message: str) -> None:
        throttle.report(done, total or None, message, final=message == "done")

    return progress


def _restore_progress(events: Emitter, total: int) -> _Counter:
    """The byte counter of a restore of ``total`` bytes (``restore:progress`` events)."""
    return _Counter(Throttle(events, "restore:progress", "restore"), total)
