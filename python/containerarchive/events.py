"""Events: progress and outcomes of long operations, delivered to callbacks.

``repo.on("ingest:progress", callback)`` returns a :class:`Subscription`; callbacks run on the
thread that called the operation, between blocks of work (at most every
:data:`PROGRESS_INTERVAL` seconds for progress events, plus once at the end), so a slow
callback delays the operation only by its own run time. An exception raised by a callback is
not swallowed: it propagates out of the operation. Ingest then commits nothing; verify and
prune finish their work first (a repository is never left half-maintained) and raise it after.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ._fields import Fields
from .errors import InvalidArgumentError

#: Every event name, with the type of its payload.
EVENTS: dict[str, str] = {
    "ingest:progress": "Progress",
    "ingest:complete": "IngestComplete",
    "verify:progress": "Progress",
    "verify:error": "VerifyError",
    "prune:progress": "Progress",
    "restore:progress": "Progress",
}

#: The events whose payload is a :class:`Progress`.
ProgressEvent = Literal["ingest:progress", "verify:progress", "prune:progress", "restore:progress"]

#: Seconds between two progress events of one operation (the last one always comes).
PROGRESS_INTERVAL = 0.1


@dataclass(frozen=True)
class Progress(Fields):
    """How far an operation is.

    ``total_bytes`` and ``percentage`` are None when the total is unknown (a pipe being
    ingested); ``message`` says what is being done.
    """

    operation: str
    bytes_processed: int
    total_bytes: int | None
    percentage: float | None
    message: str

    @classmethod
    def of(
        cls,
        operation: str,
        done: int,
        total: int | None,
        message: str,
        *,
        fraction: float | None = None,
    ) -> Progress:
        if fraction is None and total:
            fraction = min(done / total, 1.0)
        elif fraction is None and total == 0:
            fraction = 1.0
        pct = None if fraction is None else round(fraction * 100, 2)
        return cls(operation, done, total, pct, message)


@dataclass(frozen=True)
class IngestComplete(Fields):
    """A snapshot was committed. Sizes in bytes, as in :class:`~containerarchive.Snapshot`:
    ``delta_chunks`` of the new chunks were stored as deltas, ``delta_original_size`` bytes
    of them in ``delta_stored_size`` (0 without delta encoding)."""

    snapshot_id: str
    new_chunks: int
    reused_chunks: int
    original_size: int
    stored_size: int
    delta_chunks: int = 0
    delta_original_size: int = 0
    delta_stored_size: int = 0


class Subscription:
    """A callback registered with :meth:`Repository.on`; :meth:`unsubscribe` removes it.
    Usable as a context manager that unsubscribes on exit."""

    def __init__(self, emitter: Emitter, event: str, callback: Callable[[Any], object]):
        self._emitter: Emitter | None = emitter
        self.event = event
        self.callback = callback

    @property
    def active(self) -> bool:
        """Whether the callback still receives events."""
        return self._emitter is not None

    def unsubscribe(self) -> None:
        """Stop receiving events (calling it again does nothing)."""
        if self._emitter is not None:
            self._emitter._remove(self)
            self._emitter = None

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unsubscribe()

    def __repr__(self) -> str:
        name = getattr(self.callback, "__qualname__", repr(self.callback))
        state = "active" if self.active else "unsubscribed"
        return f"Subscription({self.event!r}, {name}, {state})"


class Emitter:
    """Subscriptions by event name, in the order they were made."""

    def __init__(self) -> None:
        self._subs: dict[str, list[Subscription]] = {}

    def on(self, event: str, callback: Callable[[Any], object]) -> Subscription:
        if event not in EVENTS:
            raise InvalidArgumentError(
                f"unknown event {event!r}: one of {', '.join(sorted(EVENTS))}"
            )
        if not callable(callback):
            raise InvalidArgumentError(f"the callback for {event!r} is not callable")
        sub = Subscription(self, event, callback)
        self._subs.setdefault(event, []).append(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.event, [])
        if sub in subs:
            subs.remove(sub)

    def listening(self, event: str) -> bool:
        return bool(self._subs.get(event))

    def emit(self, event: str, payload: object) -> None:
        # A copy: a callback may unsubscribe itself (or others) while being called.
        for sub in list(self._subs.get(event, ())):
            if sub.active:
                sub.callback(payload)


class Throttle:
    """Progress reports of one operation, at most every :data:`PROGRESS_INTERVAL` seconds
    (the first and the final report always pass)."""

    def __init__(self, emitter: Emitter, event: str, operation: str):
        self._clock = time.monotonic
        self._emitter = emitter
        self._event = event
        self._operation = operation
        self._last = -1.0
        self.active = emitter.listening(event)

    def report(
        self,
        done: int,
        total: int | None,
        message: str,
        *,
        fraction: float | None = None,
        final: bool = False,
    ) -> None:
        if not self.active:
            return
        now = self._clock()
        if not final and self._last >= 0 and now - self._last < PROGRESS_INTERVAL:
            return
        self._last = now
        self._emitter.emit(
            self._event, Progress.of(self._operation, done, total, message, fraction=fraction)
        )
