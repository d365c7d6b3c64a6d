"""The Python face of a repository: the :class:`Repository` class, its lifecycle, lock
retries and events, and what each public operation does in which order.

The argument checks live in :mod:`._args`, the feeding of ingest sources in :mod:`._sources`,
restore streaming in :mod:`._streams`, progress accounting in :mod:`._progress`, the user's
own paths in :mod:`._files` and signal deferral during a commit in :mod:`._signals`; none of
them imports this module.
"""

from __future__ import annotations

import io
import json
import os
import socket
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from time import monotonic, sleep
from typing import Any, Literal, TypeVar, overload

from . import _native
from . import metrics as _metrics
from ._args import SnapshotRef as SnapshotRef
from ._args import StrPath as StrPath
from ._args import TimeLike as TimeLike
from ._args import (
    _count,
    _filter_text,
    _group_by,
    _host,
    _iso,
    _keep_tags,
    _now,
    _passphrase,
    _ref,
    _refs,
    _seconds,
    _span,
    _stale_after_ms,
    _storage_options,
    _tags,
    _where,
    _who,
)
from ._args import parse_duration as parse_duration
from ._files import _check_init_target, _not_a_directory, _unusable
from ._format import repository_html, titled
from ._progress import _collect_progress, _IngestProgress
from ._signals import _signals_deferred
from ._signals import defer_signal as defer_signal
from ._sources import Source as Source
from ._sources import _checked_items, _feed_item
from ._streams import _Restore
from .errors import (
    ContainerArchiveError,
    InvalidArgumentError,
    LockedError,
    RepositoryNotFoundError,
    SnapshotNotFoundError,
    UnreadableSnapshotWarning,
)
from .events import Emitter, IngestComplete, Progress, ProgressEvent, Subscription, Throttle
from .types import (
    KeyInfo,
    PruneResult,
    ReindexResult,
    RepairResult,
    RepoStats,
    RestorePlan,
    Snapshot,
    SnapshotScan,
    UnlockResult,
    VerifyError,
    VerifyResult,
)

_T = TypeVar("_T")


class Repository:
    """A containerarchive repository in a local directory or in S3-compatible object storage
    (``s3://bucket/prefix``; credentials and endpoint from the standard ``AWS_*`` variables).

    Create one with :meth:`init`, open one with :meth:`open`; use it as a context manager or
    call :meth:`close` when done.
    """

    def __init__(
        self,
        native: _native.NativeRepository,
        path: Path | str,
        retry_lock: float | None = None,
    ):
        self._native: _native.NativeRepository | None = native
        self._path = path
        self._events = Emitter()
        self._retry_lock = retry_lock
        #: Called once with the :class:`LockedError` when an operation starts waiting for a
        #: lock (``retry_lock``); the CLI prints it.
        self.on_lock_wait: Callable[[LockedError], object] | None = None

    # -- events ----------------------------------------------------------------------------

    @overload
    def on(self, event: ProgressEvent, callback: Callable[[Progress], object]) -> Subscription: ...
    @overload
    def on(
        self, event: Literal["ingest:complete"], callback: Callable[[IngestComplete], object]
    ) -> Subscription: ...
    @overload
    def on(
        self, event: Literal["verify:error"], callback: Callable[[VerifyError], object]
    ) -> Subscription: ...
    def on(self, event: str, callback: Callable[[Any], object]) -> Subscription:
        """Call ``callback`` with each ``event`` of this repository's operations; returns a
        :class:`Subscription` (``.unsubscribe()``). Events and their payloads:

        - ``ingest:progress``, ``verify:progress``, ``prune:progress``, ``restore:progress``:
          :class:`~containerarchive.events.Progress` (operation, bytes_processed, total_bytes,
          percentage, message), at most every 0.1 s and once at the end;
        - ``ingest:complete``: :class:`~containerarchive.events.IngestComplete`;
        - ``verify:error``: :class:`VerifyError` (kind, pack, chunk, snapshot, message).

        Callbacks run on the calling thread. An exception a callback raises propagates out of
        the operation: an ingest then commits nothing; verify and prune finish first.
        """
        return self._events.on(event, callback)

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        path: StrPath,
        passphrase: str | bytes | None = None,
        compression: str = "zstd",
        *,
        compression_level: int | None = None,
        kdf_memory_kib: int | None = None,
        kdf_iterations: int | None = None,
        pack_size: int | None = None,
        retry_lock: timedelta | float | str | None = None,
        lock_stale_after: timedelta | float | str | None = None,
        retry_storage: timedelta | float | str | None = None,
        delta: bool = True,
    ) -> Repository:
        """Create a repository at ``path``; with a passphrase it is encrypted.

        ``compression`` is ``"zstd"`` (default, level 3), ``"gzip"`` (DEFLATE, level 1) or
        ``"none"``. ``kdf_memory_kib``/``kdf_iterations`` tune Argon2id (default 64 MiB, 3);
        ``pack_size`` is the target pack size in bytes (default 8 MiB, at least 1 MiB).
        ``delta`` (default on): a new chunk similar to one stored before (tomorrow's dump of a
        table) may be stored as the difference to it; the repository then needs a
        containerarchive that knows the ``delta`` feature to be opened at all (see
        docs/FORMAT.md). ``delta=False`` keeps it readable by older versions;
        :meth:`enable_delta` turns it on later.
        ``retry_lock``, ``lock_stale_after`` and ``retry_storage`` are as for :meth:`open`.

        A local ``path`` must be missing or an empty directory: raises
        :class:`RepositoryExistsError` where a repository is, and :class:`UnusableFileError`
        for a file or a directory holding other files. Files are created 0600 and directories
        0700, whatever the umask.
        """
        p = _where(path)
        if isinstance(p, Path):
            try:
                _check_init_target(p)
                if p.is_dir():
                    os.chmod(p, 0o700)  # an empty directory given to hold the repository
            except OSError as e:
                if isinstance(e, ContainerArchiveError):
                    raise
                raise _unusable(p, f"cannot be used: {e.strerror}") from None
        wait = _seconds(retry_lock, "retry_lock")
        native = _native.NativeRepository.init(
            p,
            _passphrase(passphrase),
            compression,
            compression_level,
            kdf_memory_kib,
            kdf_iterations,
            _now(),
            _who(),
            socket.gethostname(),
            pack_size,
            _stale_after_ms(lock_stale_after),
            _storage_options(p, retry_storage),
            delta=bool(delta),
        )
        return cls(native, p, wait)

    @classmethod
    def open(
        cls,
        path: StrPath,
        passphrase: str | bytes | None = None,
        *,
        retry_lock: timedelta | float | str | None = None,
        lock_stale_after: timedelta | float | str | None = None,
        retry_storage: timedelta | float | str | None = None,
    ) -> Repository:
        """Open the repository at ``path`` (a directory or ``s3://bucket/prefix``).

        ``retry_lock`` (a :class:`~datetime.timedelta`, seconds, or a Go-style duration such as
        ``"5m"``): an operation that finds a conflicting lock waits up to that long for it to go
        away instead of raising :class:`LockedError` at once (restic's ``--retry-lock``).
        ``lock_stale_after`` (default ``CONTAINERARCHIVE_LOCK_STALE_AFTER`` or 30 minutes): how
        long, on the storage's own clock, another process's lock may go without renewal before
        it counts as stale. Every host sharing a repository must use the same value; this
        process renews its own locks six times per that period, in the background.
        ``retry_storage`` (default ``CONTAINERARCHIVE_RETRY_STORAGE`` or 3 minutes): how long
        object storage requests that fail with throttling (503 SlowDown, 429), server errors,
        timeouts or dropped connections are retried, with backoff, before the operation raises
        :class:`StorageError`; waits longer than 2 s are reported on stderr. Credentials,
        region and endpoint of ``s3://`` locations are read as the AWS tools read them
        (environment, then ``AWS_PROFILE`` in ``~/.aws/credentials`` and ``~/.aws/config``).
        """
        p = _where(path)
        if isinstance(p, Path):
            why = _not_a_directory(p)
            if why:
                failure = RepositoryNotFoundError(f"no repository at {p}: {why}")
                failure.location = str(p)
                raise failure
        wait = _seconds(retry_lock, "retry_lock")
        native = _native.NativeRepository.open(
            p,
            _passphrase(passphrase),
            socket.gethostname(),
            _stale_after_ms(lock_stale_after),
            _storage_options(p, retry_storage),
        )
        return cls(native, p, wait)

    def _locking(self, take: Callable[[], _T]) -> _T:
        """``take()`` (an operation that takes a lock), retried while the repository is
        locked by someone else for up to ``retry_lock`` seconds, with growing pauses."""
        deadline = None if self._retry_lock is None else monotonic() + self._retry_lock
        pause, told = 0.5, False
        while True:
            try:
                return take()
            except LockedError as e:
                if deadline is None or monotonic() >= deadline:
                    raise
                if not told and self.on_lock_wait is not None:
                    self.on_lock_wait(e)
                    told = True
                sleep(max(0.0, min(pause, deadline - monotonic())))
                pause = min(pause * 2, 10.0)

    def close(self) -> None:
        """Release the repository; further calls raise :class:`InvalidArgumentError`."""
        self._native = None

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._native is None else ("encrypted" if self.encrypted else "plain")
        return f"Repository({str(self._path)!r}, {state})"

    @property
    def _n(self) -> _native.NativeRepository:
        if self._native is None:
            raise InvalidArgumentError(f"repository {self._path} is closed")
        return self._native

    @property
    def path(self) -> Path:
        """The repository's directory (:attr:`location` for one in object storage)."""
        if not isinstance(self._path, Path):
            raise InvalidArgumentError(
                f"the repository at {self._path} is in object storage: it has no local path"
            )
        return self._path

    @property
    def location(self) -> str:
        """Where the repository is: a directory or an ``s3://bucket/prefix`` URL."""
        return str(self._path)

    @property
    def config(self) -> dict[str, Any]:
        """The repository settings (``config.json``)."""
        return dict(json.loads(self._n.config_json()))

    @property
    def encrypted(self) -> bool:
        """Whether data and metadata are encrypted."""
        return bool(self.config["encryption"] != "none")

    @property
    def delta(self) -> bool:
        """Whether new chunks may be stored as deltas against similar stored chunks."""
        return self._n.delta

    def enable_delta(self) -> None:
        """Turn delta encoding on for this repository (``config.json`` gains the ``delta``
        feature, so versions that do not know it can no longer open it). Does nothing when it
        is on. Chunks stored before carry no resemblance features, so the next backup is
        stored as before and serves as the base of the ones after it. Raises
        :class:`UnsupportedFormatError` when this build cannot write here."""
        self._n.enable_delta()

    # -- ingest ----------------------------------------------------------------------------

    def ingest(
        self,
        source: Source,
        name: str = "data",
        type: str = "raw",
        tags: Mapping[str, str] | None = None,
        time: TimeLike | None = None,
        host: str | None = None,
        allow_empty: bool = False,
    ) -> Snapshot:
        """Store one stream as a new snapshot with one item.

        ``source`` is a path, a bytes-like object or a binary file-like object (a pipe, or
        ``sys.stdin.buffer``); it is streamed, never read whole. ``time`` sets the snapshot's
        creation time (default: now); ``host`` the host it records (default: this machine's
        hostname; retention groups snapshots by it).

        A stream (standard input, a pipe, a FIFO, any file object) that delivers no data
        raises :class:`EmptyInputError` and commits nothing — its producer most likely failed
        — unless ``allow_empty``; an empty regular file (a path) or ``b""`` is stored.
        """
        return self.ingest_multi(
            [{"source": source, "name": name, "type": type}],
            tags=tags,
            time=time,
            host=host,
            allow_empty=allow_empty,
        )

    def ingest_multi(
        self,
        items: Iterable[Mapping[str, Any]],
        tags: Mapping[str, str] | None = None,
        time: TimeLike | None = None,
        host: str | None = None,
        allow_empty: bool = False,
    ) -> Snapshot:
        """Store several named streams as one snapshot.

        Each item is a mapping with ``name``, optionally ``type``, and either ``source`` (see
        :meth:`ingest`) or ``command`` (an argument list whose standard output is the item;
        see :meth:`ingest_command`). ``host`` and ``allow_empty``: see :meth:`ingest`; one
        empty stream fails the whole snapshot.
        """
        tag_map = _tags(tags)
        created = _iso(time, "time") if time is not None else None
        specs, total = _checked_items(items)
        progress = _IngestProgress(Throttle(self._events, "ingest:progress", "ingest"), total)
        host = _host(host)
        ingest = self._locking(lambda: self._n.begin_ingest(os.getpid(), _now(), host))
        snap: Snapshot | None = None
        try:
            for spec in specs:
                _feed_item(ingest, spec, progress, allow_empty)
            progress.report(final=True)
            with _signals_deferred():
                snap = Snapshot._from_json(ingest.commit(created or _now(), tag_map))
        except BaseException as failure:
            if snap is not None:
                # A signal that arrived during the commit: the snapshot is saved.
                failure.snapshot = snap.id  # type: ignore[attr-defined]
                raise
            try:
                ingest.abort()
            except ContainerArchiveError as e:
                note = (
                    f"the ingest's lock could not be removed ({e}); it blocks prune until it is "
                    "stale, or remove it with `containerarchive unlock`"
                )
                failure.__notes__ = [*getattr(failure, "__notes__", []), note]
            raise
        self._events.emit(
            "ingest:complete",
            IngestComplete(
                snap.id,
                snap.new_chunks,
                snap.reused_chunks,
                snap.original_size,
                snap.stored_size,
                snap.delta_chunks,
                snap.delta_original_size,
                snap.delta_stored_size,
            ),
        )
        return snap

    def ingest_command(
        self,
        command: Sequence[str] | str,
        name: str,
        type: str = "raw",
        tags: Mapping[str, str] | None = None,
        time: TimeLike | None = None,
        host: str | None = None,
        allow_empty: bool = False,
    ) -> Snapshot:
        """Run ``command`` (an argument list, or a string split like a shell would, without
        running a shell) and store its standard output as a snapshot with one item.

        The item records the command and its exit status. If the command exits with a non-zero
        status or is killed, nothing is committed and :class:`CommandFailedError` is raised
        with the tail of its standard error: a truncated dump never becomes a backup.
        For a pipeline use ``["bash", "-o", "pipefail", "-c", "pg_dump db | gzip"]``.
        A command that succeeds without output raises :class:`EmptyInputError` unless
        ``allow_empty``.
        """
        return self.ingest_multi(
            [{"command": command, "name": name, "type": type}],
            tags=tags,
            time=time,
            host=host,
            allow_empty=allow_empty,
        )

    # -- snapshots -------------------------------------------------------------------------

    def list_snapshots(
        self,
        tags: Mapping[str, str] | None = None,
        after: TimeLike | None = None,
        before: TimeLike | None = None,
        host: str | None = None,
    ) -> list[Snapshot]:
        """Snapshots, oldest first, with all ``tags``, ``after <= created_at <= before`` and,
        if given, made by ``host`` (snapshots of unknown host never match one).

        A snapshot whose manifest cannot be read (damaged, truncated) hides nothing else: it is
        left out and named in an :class:`UnreadableSnapshotWarning` (``warnings`` module; make
        it an error with ``warnings.simplefilter("error", UnreadableSnapshotWarning)``), and
        :meth:`scan_snapshots` returns both lists. Raises :class:`StorageError` when the
        listing itself fails."""
        scan = self.scan_snapshots(tags=tags, after=after, before=before, host=host)
        if scan.unreadable:
            warnings.warn(
                UnreadableSnapshotWarning(
                    f"{len(scan.unreadable)} snapshot(s) cannot be read and are not listed: "
                    + "; ".join(f"{u.id}: {u.reason}" for u in scan.unreadable)
                    + " (`containerarchive repair` restores a manifest from its copy)",
                    scan.unreadable,
                ),
                stacklevel=2,
            )
        return scan.snapshots

    def scan_snapshots(
        self,
        tags: Mapping[str, str] | None = None,
        after: TimeLike | None = None,
        before: TimeLike | None = None,
        host: str | None = None,
    ) -> SnapshotScan:
        """The snapshots :meth:`list_snapshots` lists, and every snapshot whose manifest cannot
        be read (:class:`UnreadableSnapshot`: its ``id`` and the ``reason``), in one pass."""
        return SnapshotScan._from_json(
            self._n.scan_snapshots(
                _tags(tags),
                _iso(after, "after") if after is not None else None,
                _iso(before, "before") if before is not None else None,
                _host(host),
            )
        )

    def get_snapshot(
        self,
        id_or_prefix: SnapshotRef,
        tags: Mapping[str, str] | None = None,
        host: str | None = None,
    ) -> Snapshot:
        """A snapshot by id, unique id prefix, or ``"latest"`` (a :class:`Snapshot` works too).

        With ``"latest"``, ``tags`` and ``host`` choose the newest snapshot having them; with an
        id they must match the snapshot. Raises :class:`SnapshotNotFoundError` when none does,
        and for ``"latest"`` :class:`CorruptionError` naming every snapshot whose manifest
        cannot be read (it may be the newest: the answer would not be reliable).
        """
        ref = _ref(id_or_prefix)
        if not tags and host is None:
            return Snapshot._from_json(self._n.get_snapshot(ref))
        wanted = _tags(tags)
        if ref.strip().lower() == "latest":
            try:
                return Snapshot._from_json(self._n.latest_snapshot(wanted, _host(host)))
            except SnapshotNotFoundError:
                raise SnapshotNotFoundError(f"no snapshot {_filter_text(wanted, host)}") from None
        snap = Snapshot._from_json(self._n.get_snapshot(ref))
        if any(snap.tags.get(k) != v for k, v in wanted.items()) or (
            host is not None and snap.host != host
        ):
            raise SnapshotNotFoundError(
                f"snapshot {snap.id} is not one {_filter_text(wanted, host)}"
            )
        return snap

    # -- restore ---------------------------------------------------------------------------

    def _restores(self) -> _Restore:
        return _Restore(lambda: self._n, self._events)

    def restore(self, snapshot_id: SnapshotRef, item: str | None = None) -> io.BufferedReader:
        """A readable binary stream of one item, every chunk verified as it is read.

        Without ``item``, a one-item snapshot yields that item and a multi-item snapshot a
        tar stream of all its items.
        """
        return self._restores().stream(self.get_snapshot(snapshot_id), item)

    def restore_to_fd(self, snapshot_id: SnapshotRef, fd: int, item: str | None = None) -> int:
        """Write one item (or the only item) to the open file descriptor ``fd`` — stdout, a
        pipe, a socket — decoding the next batch while the previous one is written. Returns
        the bytes written; ``fd`` stays open."""
        return self._restores().to_fd(self.get_snapshot(snapshot_id), fd, item)

    def restore_to(
        self,
        snapshot_id: SnapshotRef,
        path: StrPath,
        item: str | None = None,
        overwrite: bool = False,
    ) -> Path:
        """Restore into ``path``, as Unix tools write their output:

        - a path ending in ``/``, or an existing directory, receives the item (``item``) or
          every item as files under their own names (the directory is created if missing);
        - otherwise one item (``item``, or the snapshot's only item) is written to the file
          ``path``, and a multi-item snapshot as a tar stream of all its items;
        - an existing file is replaced only with ``overwrite=True``;
        - output goes to a temporary file beside its final name and is renamed into place, so
          partial output is never left under the final name.

        Returns the file or directory written. Raises :class:`UnusableFileError` (CLI exit 6)
        for an existing output without ``overwrite``, a missing parent directory, a trailing
        ``/`` on a file, or an output that cannot be written; nothing is written then.
        """
        raw = os.fspath(path)
        if not raw:
            raise InvalidArgumentError("the output path is empty: give a file or a directory/")
        snap = self.get_snapshot(snapshot_id)
        items = [snap.item(item)] if item is not None else list(snap.items)
        try:
            return self._restores().to_path(snap, items, raw, overwrite)
        except OSError as e:
            if isinstance(e, ContainerArchiveError) or e.errno is None:
                raise
            raise _unusable(raw, f"cannot be used: {e.strerror}") from None

    def restore_plan(self, snapshot_id: SnapshotRef, item: str | None = None) -> RestorePlan:
        """Exactly the files restoring ``item`` (or every item) needs: config, key files, the
        snapshot, the index files and the packs, with their sizes, so that a script can fetch
        only those from object storage."""
        return RestorePlan._from_json(self._n.restore_plan(_ref(snapshot_id), item))

    # -- keys ------------------------------------------------------------------------------

    def list_keys(self) -> list[KeyInfo]:
        """The key files of an encrypted repository (``current``: the one it was opened with)."""
        return [KeyInfo._from_dict(d) for d in json.loads(self._n.list_keys())]

    def add_key(
        self,
        passphrase: str | bytes,
        *,
        kdf_memory_kib: int | None = None,
        kdf_iterations: int | None = None,
    ) -> str:
        """Add a key file so that ``passphrase`` opens the repository too; returns its id."""
        pw = _passphrase(passphrase)
        assert pw is not None
        return self._n.add_key(pw, kdf_memory_kib, kdf_iterations, _who())

    def change_passphrase(
        self,
        new_passphrase: str | bytes,
        *,
        kdf_memory_kib: int | None = None,
        kdf_iterations: int | None = None,
    ) -> str:
        """Replace the key file in use by one for ``new_passphrase``; returns the new key id."""
        pw = _passphrase(new_passphrase)
        assert pw is not None
        return self._n.change_passphrase(pw, kdf_memory_kib, kdf_iterations, _who())

    def remove_key(self, key_id: str) -> None:
        """Remove a key file (by id or unique prefix). The last key and the key in use are
        refused with :class:`InvalidArgumentError` (to replace the key in use, call
        :meth:`change_passphrase`)."""
        self._n.remove_key(key_id)

    # -- locks -----------------------------------------------------------------------------

    @contextmanager
    def lock(self, exclusive: bool = True, operation: str = "lock") -> Iterator[None]:
        """Hold a lock on the repository for the ``with`` block.

        An exclusive lock keeps every ingest (and other exclusive holders) out; raises
        :class:`LockedError` if another process holds a conflicting lock.
        """
        held = self._locking(lambda: self._n.lock(exclusive, operation, os.getpid()))
        try:
            yield
        finally:
            held.release()

    # -- maintenance -----------------------------------------------------------------------

    def verify(
        self,
        level: str = "standard",
        on_error: Callable[[VerifyError], object] | None = None,
        *,
        metrics: StrPath | None = None,
    ) -> VerifyResult:
        """Check the repository: ``"quick"`` (metadata and presence), ``"standard"`` (plus
        pack checksums and headers) or ``"full"`` (plus every chunk decoded and re-hashed and
        every parity shard recomputed). ``on_error`` is called with each error as found.

        With ``metrics`` (a file path), the run's outcome is written there for node_exporter's
        textfile collector (:mod:`containerarchive.metrics`, docs/METRICS.md): success, duration,
        findings; also when the verify raises."""
        with _metrics.record(
            "verify", metrics, {"repository": self.location, "level": str(level)}
        ) as m:
            result = self._verify(level, on_error)
            if m is not None:
                m.verified(result)
            return result

    def _verify(self, level: str, on_error: Callable[[VerifyError], object] | None) -> VerifyResult:
        throttle = Throttle(self._events, "verify:progress", "verify")
        listening = self._events.listening("verify:error")
        callback = None
        if on_error is not None or listening:

            def callback(text: str) -> None:
                error = VerifyError._from_dict(json.loads(text))
                if on_error is not None:
                    on_error(error)
                self._events.emit("verify:error", error)

        def progress(fraction: float, bytes_read: int) -> None:
            throttle.report(
                bytes_read,
                None,
                f"verifying ({level})",
                fraction=fraction,
                final=fraction >= 1.0,
            )

        text = self._n.verify(level, callback, progress if throttle.active else None)
        return VerifyResult._from_json(text, level=level)

    def repair(self) -> RepairResult:
        """Remove stale locks, rebuild lost or damaged packs from parity, rebuild the index,
        and report what could not be saved (with the snapshots that need it)."""
        return RepairResult._from_json(self._locking(lambda: self._n.repair(os.getpid())))

    def reindex(self) -> ReindexResult:
        """Rebuild the global index from the ``.idx`` files and, where one is missing or
        damaged, from the packs themselves."""
        return ReindexResult._from_json(self._locking(lambda: self._n.reindex(os.getpid())))

    def prune(
        self,
        keep_last: int | None = None,
        keep_hourly: int | None = None,
        keep_daily: int | None = None,
        keep_weekly: int | None = None,
        keep_monthly: int | None = None,
        keep_yearly: int | None = None,
        tags: Mapping[str, str] | None = None,
        dry_run: bool = False,
        *,
        keep_within: str | timedelta | None = None,
        keep_within_hourly: str | timedelta | None = None,
        keep_within_daily: str | timedelta | None = None,
        keep_within_weekly: str | timedelta | None = None,
        keep_within_monthly: str | timedelta | None = None,
        keep_within_yearly: str | timedelta | None = None,
        keep_tag: str | Mapping[str, str] | Iterable[str | Mapping[str, str]] | None = None,
        group_by: str | Iterable[str] | None = ("host", "items"),
        host: str | None = None,
        keep_days: int | None = None,
        keep_weeks: int | None = None,
        keep_months: int | None = None,
        metrics: StrPath | None = None,
    ) -> PruneResult:
        """Forget the snapshots a retention policy does not keep, then collect garbage.

        The policy is restic's ``forget`` policy, applied to each group of snapshots on its
        own: ``group_by`` is any of ``"host"``, ``"items"`` (the set of item names), ``"tags"``
        (default host and items; ``None`` or ``()`` = one pool). Only snapshots with all
        ``tags`` (and made by ``host``, if given) are considered; the others are kept.

        Counts (``keep_last`` … ``keep_yearly``): how many of the newest snapshots / buckets
        to keep, ``-1`` (or ``"unlimited"``) for all. Durations (``keep_within``,
        ``keep_within_hourly`` … ``_yearly``) as restic writes them — ``"30d"``, ``"1y6m"``,
        ``"2d12h"`` (``m`` is months) — measured back from the group's newest snapshot.
        ``keep_tag``: entries ``"k=v"`` or ``"k=v,k2=v2"`` (all must match; any entry keeps).
        ``keep_days``/``keep_weeks``/``keep_months`` are aliases of the daily, weekly and
        monthly counts. With ``dry_run`` nothing changes and the result is what would happen.

        Raises :class:`InvalidArgumentError` for no rule, a bad value, or a policy that would
        keep none of a group's snapshots (nothing is changed then).

        With ``metrics`` (a file path), the run's outcome is written there for node_exporter's
        textfile collector (docs/METRICS.md): success, duration, snapshots and bytes removed;
        also when the prune raises."""
        with _metrics.record("prune", metrics, {"repository": self.location}) as m:
            counts = [
                _count("keep_last", keep_last),
                _count("keep_hourly", keep_hourly),
                _count("keep_daily", keep_daily if keep_daily is not None else keep_days),
                _count("keep_weekly", keep_weekly if keep_weekly is not None else keep_weeks),
                _count("keep_monthly", keep_monthly if keep_monthly is not None else keep_months),
                _count("keep_yearly", keep_yearly),
            ]
            spans = [
                _span("keep_within", keep_within),
                _span("keep_within_hourly", keep_within_hourly),
                _span("keep_within_daily", keep_within_daily),
                _span("keep_within_weekly", keep_within_weekly),
                _span("keep_within_monthly", keep_within_monthly),
                _span("keep_within_yearly", keep_within_yearly),
            ]
            keep_tags = _keep_tags(keep_tag)
            groups = _group_by(group_by)
            filter_tags = _tags(tags)
            progress = _collect_progress(self._events, "prune")
            text = self._locking(
                lambda: self._n.prune(
                    os.getpid(),
                    filter_tags,
                    bool(dry_run),
                    counts,
                    spans,
                    keep_tags,
                    groups,
                    _now(),
                    host=_host(host),
                    progress=progress,
                )
            )
            result = PruneResult._from_json(text)
            if m is not None:
                m.pruned(result)
            return result

    def forget(
        self, ids: SnapshotRef | Iterable[SnapshotRef], dry_run: bool = False
    ) -> PruneResult:
        """Remove exactly the snapshots ``ids`` names (full ids or unique prefixes, or
        :class:`Snapshot` objects; ``"latest"`` is refused: name the snapshot) and free the data
        only they used, in prune's crash-safe order. With ``dry_run`` nothing changes.

        Raises :class:`SnapshotNotFoundError` / :class:`AmbiguousSnapshotIdError` for a bad
        reference and :class:`InvalidArgumentError` for ``"latest"`` or no id; nothing is
        removed then."""
        refs = _refs(ids)
        progress = _collect_progress(self._events, "forget")
        text = self._locking(
            lambda: self._n.forget(
                os.getpid(),
                refs,
                bool(dry_run),
                progress=progress,
            )
        )
        return PruneResult._from_json(text)

    def unlock(self, force: bool = False) -> UnlockResult:
        """Remove stale locks: those whose process on this machine is gone, and those the
        storage has not seen renewed for the stale age (``lock_stale_after``, 30 minutes by
        default; measured on the storage's clock, so no host's clock matters). With ``force``,
        every lock — check first that their processes are not running.

        Returns the lock files removed (a list of keys) whose ``reasons`` say why each could
        go, and ``kept``: ``(key, description)`` of each lock left in place, with its holder
        and when it becomes stale."""
        report = json.loads(self._n.remove_locks(bool(force), os.getpid()))
        return UnlockResult(
            [key for key, _ in report["removed"]],
            reasons={key: why for key, why in report["removed"]},
            kept=[(key, why) for key, why in report["kept"]],
        )

    # -- totals and notebooks --------------------------------------------------------------

    def stats(self) -> RepoStats:
        """Repository totals: snapshots, packs, unique chunks, stored and original bytes,
        deduplication and compression ratios. Reads the index and every snapshot manifest,
        no pack. A manifest that cannot be read is named in ``unreadable_snapshots`` (and left
        out of the totals), not raised; :class:`CorruptionError` when the index cannot be
        read, :class:`StorageError` when the storage fails."""
        return RepoStats._from_json(self._n.stats())

    def write_metrics(self, path: StrPath) -> RepoStats:
        """Write the repository's metrics to ``path`` in the Prometheus text format that
        node_exporter's textfile collector reads, replacing the file atomically (docs/METRICS.md
        lists the metrics and example alert rules): per backup series (host and item names, as
        prune groups snapshots) the newest snapshot's time (Unix seconds), bytes in and added,
        share of chunks already stored, and the snapshot count; the repository's totals.
        Returns the totals written. Raises as :meth:`stats`, and :class:`UnusableFileError`
        naming ``path`` when it cannot be written (a directory, no such directory, no
        permission)."""
        stats = self.stats()
        scan = self.scan_snapshots()
        _metrics.write_repository_metrics(path, self.location, stats, scan.snapshots)
        return stats

    def snapshots_frame(
        self,
        tags: Mapping[str, str] | None = None,
        after: TimeLike | None = None,
        before: TimeLike | None = None,
        host: str | None = None,
    ) -> Any:
        """The snapshots (as :meth:`list_snapshots` selects them) as a pandas DataFrame, one
        row per snapshot. Needs pandas (imported only here)."""
        from .frames import to_dataframe

        return to_dataframe(self.list_snapshots(tags=tags, after=after, before=before, host=host))

    def _repr_html_(self) -> str:
        if self._native is None:
            return titled(f"Repository {self._path} (closed)")
        # Damage hides nothing else here either: totals name unreadable manifests.
        return repository_html(
            str(self._path), self.config, self.stats(), self.scan_snapshots().snapshots[-10:]
        )
