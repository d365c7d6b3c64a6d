"""The Python face of a repository."""

from __future__ import annotations

import collections
import contextlib
import errno
import io
import json
import math
import os
import re
import shlex
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from time import monotonic, sleep
from typing import IO, Any, Literal, TypeVar, Union, overload

from . import _aws, _native
from ._format import human_size, ratio, table, titled
from .errors import (
    CommandFailedError,
    ContainerArchiveError,
    CorruptionError,
    EmptyInputError,
    InvalidArgumentError,
    LockedError,
    RepositoryExistsError,
    RepositoryNotFoundError,
    SnapshotNotFoundError,
    StorageError,
    UnusableFileError,
)
from .events import Emitter, IngestComplete, Progress, ProgressEvent, Subscription, Throttle
from .types import (
    Item,
    KeyInfo,
    PruneResult,
    ReindexResult,
    RepairResult,
    RepoStats,
    RestorePlan,
    Snapshot,
    UnlockResult,
    VerifyError,
    VerifyResult,
)

StrPath = Union[str, "os.PathLike[str]"]
Source = Union[StrPath, bytes, bytearray, memoryview, IO[bytes]]
TimeLike = Union[datetime, date, str]
SnapshotRef = Union[str, Snapshot]
_T = TypeVar("_T")

_READ_SIZE = 4 << 20
#: Lines of a failed command's standard error shown in :class:`CommandFailedError`.
_STDERR_TAIL_LINES = 20


def _iso(value: TimeLike, what: str) -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as e:
            raise InvalidArgumentError(f"{what}: {value!r} is not an ISO 8601 time") from e
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)  # midnight, local time
    if not isinstance(value, datetime):
        raise InvalidArgumentError(f"{what} must be a datetime or an ISO 8601 string")
    if value.tzinfo is None:
        value = value.astimezone()  # a naive time means local time
    return value.isoformat(timespec="microseconds")


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_duration(text: str) -> timedelta:
    """A Go-style duration (restic's ``--retry-lock``): ``"30s"``, ``"5m"`` (minutes),
    ``"1h30m"``, ``"250ms"``, ``"0"``. Raises :class:`InvalidArgumentError` otherwise."""
    t = text.strip()
    if t == "0":
        return timedelta(0)
    pos, seconds = 0, 0.0
    for m in _DURATION_PART.finditer(t):
        if m.start() != pos:
            break
        seconds += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(t) or not t:
        raise InvalidArgumentError(
            f"{text!r} is not a duration: use a number with a unit, e.g. 30s, 5m, 1h, 1h30m"
        )
    return timedelta(seconds=seconds)


def _seconds(value: timedelta | float | int | str | None, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = parse_duration(value)
        except InvalidArgumentError as e:
            raise InvalidArgumentError(f"{what}: {e}") from None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise InvalidArgumentError(f"{what} must be a non-negative timedelta, got {value!r}")
    return float(value)


def _stale_after_ms(value: timedelta | float | int | str | None) -> int | None:
    """The lock stale age: the argument, else ``CONTAINERARCHIVE_LOCK_STALE_AFTER``, else the
    engine's default (30 minutes)."""
    what = "lock_stale_after"
    if value is None:
        value = os.environ.get("CONTAINERARCHIVE_LOCK_STALE_AFTER") or None
        what = "CONTAINERARCHIVE_LOCK_STALE_AFTER"
    seconds = _seconds(value, what)
    if seconds is None:
        return None
    if seconds <= 0:
        raise InvalidArgumentError(f"{what} must be longer than 0")
    return max(1, int(seconds * 1000))


def _storage_options(
    where: Path | str, retry_storage: timedelta | float | str | None
) -> str | None:
    """The native storage options of ``where``: None for a directory."""
    if isinstance(where, Path):
        return None
    return _aws.settings(where, _aws.retry_seconds(_seconds(retry_storage, "retry_storage")))


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="microseconds")


def _who() -> str:
    return f"{os.environ.get('USER', 'unknown')}@{socket.gethostname()}"


def _ref(snapshot: SnapshotRef) -> str:
    return snapshot.id if isinstance(snapshot, Snapshot) else str(snapshot)


def _passphrase(p: str | bytes | None) -> bytes | None:
    if p is None:
        return None
    return p.encode("utf-8") if isinstance(p, str) else bytes(p)


def _host(host: str | None) -> str | None:
    if host is not None and not isinstance(host, str):
        raise InvalidArgumentError(f"host must be a string, got {host!r}")
    return host


def _filter_text(tags: Mapping[str, str], host: str | None) -> str:
    parts = [f"with the tags {', '.join(f'{k}={v}' for k, v in tags.items())}"] if tags else []
    if host is not None:
        parts.append(f"made by host {host!r}")
    return " and ".join(parts)


_COUNT_RULES = ("last", "hourly", "daily", "weekly", "monthly", "yearly")


def _count(name: str, value: int | str | None) -> int:
    """A retention count: None/0 off, -1 (or "unlimited") every bucket."""
    if value is None:
        return 0
    if isinstance(value, str) and value.strip().lower() == "unlimited":
        return -1
    if isinstance(value, bool) or not isinstance(value, int) or not -1 <= value < 2**31:
        raise InvalidArgumentError(
            f"{name} must be a count from 0 to {2**31 - 1}, or -1 / 'unlimited' for all; "
            f"got {value!r}"
        )
    return value


def _span(name: str, value: str | timedelta | None) -> str:
    """A retention duration in restic's syntax (``30d``, ``1y6m``, ``2d12h``)."""
    if value is None:
        return ""
    if isinstance(value, timedelta):
        if value < timedelta(0) or value % timedelta(hours=1):
            raise InvalidArgumentError(f"{name} must be whole hours, not negative; got {value}")
        return f"{value.days}d{value.seconds // 3600}h"
    if not isinstance(value, str):
        raise InvalidArgumentError(
            f"{name} must be a duration such as '30d' or '1y6m', got {value!r}"
        )
    return value


def _keep_tags(
    value: str | Mapping[str, str] | Iterable[str | Mapping[str, str]] | None,
) -> list[str]:
    """keep_tag entries as restic writes them: ``k=v`` or ``k=v,k2=v2`` (all must match)."""
    if value is None:
        return []
    if isinstance(value, (str, Mapping)):
        entries: list[Any] = [value]
    elif isinstance(value, Iterable):
        entries = list(value)
    else:
        raise InvalidArgumentError(
            f"keep_tag takes 'k=v[,k=v…]' strings (or a list of them), got {value!r}"
        )
    out = []
    for e in entries:
        if isinstance(e, Mapping):
            e = ",".join(f"{k}={v}" for k, v in e.items())
        if not isinstance(e, str):
            raise InvalidArgumentError(f"keep_tag entries are 'k=v[,k=v…]' strings, got {e!r}")
        out.append(e)
    return out


def _group_by(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        fields: list[Any] = value.split(",")
    elif isinstance(value, Iterable):
        fields = list(value)
    else:
        raise InvalidArgumentError(f"group_by takes host, items and tags; got {value!r}")
    for f in fields:
        if not isinstance(f, str):
            raise InvalidArgumentError(f"group_by takes host, items and tags; got {f!r}")
    return [f.strip() for f in fields if f.strip()]


@contextmanager
def _naming(snapshot_id: str, item: str) -> Iterator[None]:
    """Name the snapshot and item in a restore's damage error (a missing, truncated or
    corrupted pack or chunk), and say what can fix it."""
    try:
        yield
    except (CorruptionError, StorageError) as e:
        text = str(e)
        if (
            (isinstance(e, OSError) and e.errno is not None)
            or (
                isinstance(e, StorageError)
                and "does not exist" not in text
                and "not found" not in text.lower()
            )
            or getattr(e, "snapshot", None)
        ):
            raise  # a local I/O error (disk full, closed pipe), an outage, or already named
        failure = type(e)(
            f"restoring item {item!r} of snapshot {snapshot_id}: {text}; repair rebuilds one "
            "lost or damaged pack per parity group (verify shows what is damaged)"
        )
        for k, v in vars(e).items():
            setattr(failure, k, v)
        setattr(failure, "snapshot", snapshot_id)  # noqa: B010 - not every class declares it
        setattr(failure, "item", item)  # noqa: B010
        raise failure from e


def _source_mode(source: StrPath, preflight: bool = False) -> int:
    """The file type of the path ``source`` to back up; UnusableFileError (exit 6) for one
    that cannot be: missing, a directory, a socket, unreadable (checked ahead only with
    ``preflight``, as reading it reports it anyway)."""
    text = os.fspath(source)
    path = Path(text)
    if text.endswith("/") and not path.is_dir():
        raise _unusable(text, "is not a directory, but the trailing / names one")
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise _unusable(path, "does not exist: nothing to back up") from None
    except OSError as e:
        raise _unusable(path, f"cannot be read: {e.strerror}") from None
    if stat.S_ISDIR(mode):
        raise _unusable(
            path,
            "is a directory: give a file, or stream it as one item "
            f"(tar -C {path} -c . | containerarchive ingest - --name {path.name}.tar)",
        )
    if stat.S_ISSOCK(mode):
        raise _unusable(path, "is a socket: give a file, a FIFO or - (standard input)")
    if preflight and not os.access(path, os.R_OK):
        raise _unusable(path, f"cannot be read: {os.strerror(errno.EACCES)}")
    return mode


@contextmanager
def _file_errors(path: Path, verb: str, *, key: Path | None = None) -> Iterator[None]:
    """An OS error on the user's own file ``path`` (a source read, an output written) is about
    that file — UnusableFileError, CLI exit 6 — never a "storage error": the repository is not
    involved. With ``key``, a StorageError counts only if it names that file; errors without
    an errno, and the engine's closed-pipe StorageError (left for the caller), stay as they
    are."""
    try:
        yield
    except OSError as e:
        if e.errno is None:
            raise
        if isinstance(e, StorageError):
            if e.errno == errno.EPIPE or (
                key is not None and getattr(e, "key", str(key)) != str(key)
            ):
                raise
        elif isinstance(e, ContainerArchiveError):
            raise
        raise _unusable(path, f"cannot be {verb}: {os.strerror(e.errno)}") from None


def _write_atomically(target: Path, blocks: Iterator[bytes]) -> None:
    """``blocks`` into a temporary file beside ``target`` (0600), renamed into place once
    complete and on disk; removed on any failure."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for block in blocks:
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _stream_name(source: object) -> str | None:
    """How to name ``source`` if it is a stream whose producer can fail (standard input, a
    pipe, a FIFO, a file object); None for a path to a regular file or bytes given outright."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return None
    if isinstance(source, (str, os.PathLike)):
        path = Path(os.fspath(source))
        return None if path.is_file() else f"{path} (not a regular file)"
    try:
        if source is sys.stdin.buffer or source is sys.stdin:
            return "standard input"
    except AttributeError:  # pragma: no cover - no stdin at all
        pass
    name = getattr(source, "name", None)
    return (
        f"the stream {name!r}" if isinstance(name, str) else f"the {type(source).__name__} stream"
    )


def _tags(tags: Mapping[str, str] | None) -> dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise InvalidArgumentError("tags must be a mapping of str to str")
    out = {}
    for k, v in tags.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise InvalidArgumentError(f"tag {k!r}: keys and values must be str")
        out[k] = v
    return out


class _ChunkStream(io.RawIOBase):
    """A readable raw stream over an iterator of byte blocks."""

    def __init__(self, blocks: Iterator[bytes]):
        self._blocks = blocks
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._buf = memoryview(block)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        close = getattr(self._blocks, "close", None)
        if close is not None:
            close()
        super().close()


def _not_a_directory(p: Path) -> str | None:
    """Why the local path ``p`` cannot be (or hold) a repository directory, or None."""
    try:
        if p.is_symlink() and not p.exists():
            return "it is a symbolic link that leads nowhere (dangling, or a loop)"
        if p.exists():
            return None if p.is_dir() else "it is a file, not a directory"
        for parent in p.absolute().parents:
            if parent.is_symlink() and not parent.exists():
                return f"{parent} is a symbolic link that leads nowhere (dangling, or a loop)"
            if parent.exists():
                return None if parent.is_dir() else f"{parent} is a file, not a directory"
    except OSError as e:
        return f"it cannot be reached ({e.strerror})"
    return None


def _check_init_target(p: Path) -> None:
    """A new repository goes into a missing or empty directory, never among other files."""
    why = _not_a_directory(p)
    if why:
        raise _unusable(p, f"cannot hold a repository: {why.removeprefix('it ')}")
    nearest = next((a for a in [p, *p.absolute().parents] if a.exists()), None)
    if nearest is not None and not os.access(nearest, os.W_OK | os.X_OK):
        raise _unusable(p, f"cannot hold a repository: {nearest} is not writable")
    if p.is_dir():
        try:
            entries = sorted(e.name for e in p.iterdir())
        except OSError as e:
            raise _unusable(p, f"cannot be read ({e.strerror})") from None
        if "config.json" in entries:
            failure = RepositoryExistsError(f"a repository already exists at {p}")
            failure.location = str(p)
            raise failure
        # keys/ alone may be what an interrupted init left: the engine looks inside (it
        # resumes when every file there is one of its key files).
        if entries and entries != ["keys"]:
            shown = ", ".join(entries[:3]) + (", …" if len(entries) > 3 else "")
            raise _unusable(
                p, f"is not empty ({shown}): a repository is created in an empty directory"
            )


def _unusable(path: StrPath, why: str) -> UnusableFileError:
    failure = UnusableFileError(f"{os.fspath(path)} {why}")
    failure.path = os.fspath(path)
    return failure


def _where(location: StrPath) -> Path | str:
    """A local path, or an ``s3://bucket/prefix`` URL kept as it is."""
    text = os.fspath(location)
    if not text:
        raise InvalidArgumentError("the repository location is empty")
    if text.startswith("s3://"):
        if not text[len("s3://") :].split("/", 1)[0]:
            raise InvalidArgumentError(
                f"repository location {text!r} names no bucket: write s3://bucket[/prefix]"
            )
        return text
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise InvalidArgumentError(
            f"unsupported repository location {text!r}: a directory or s3://bucket/prefix "
            f"(no {scheme}:// storage)"
        )
    return Path(text)


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
    ) -> Repository:
        """Create a repository at ``path``; with a passphrase it is encrypted.

        ``compression`` is ``"zstd"`` (default, level 3), ``"gzip"`` (DEFLATE, level 1) or
        ``"none"``. ``kdf_memory_kib``/``kdf_iterations`` tune Argon2id (default 64 MiB, 3);
        ``pack_size`` is the target pack size in bytes (default 8 MiB, at least 1 MiB).
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
        specs = list(items)
        for spec in specs:
            if "name" not in spec or ("source" in spec) == ("command" in spec):
                raise InvalidArgumentError(
                    "each item needs a 'name' and either a 'source' or a 'command'"
                )
        for spec in specs:
            # Every file is checked before anything is written: a bad one writes nothing.
            if isinstance(spec.get("source"), (str, os.PathLike)):
                _source_mode(spec["source"], preflight=True)
        sizes = [_known_size(spec.get("source")) for spec in specs]
        total = None if any(n is None for n in sizes) else sum(n or 0 for n in sizes)
        progress = _IngestProgress(Throttle(self._events, "ingest:progress", "ingest"), total)
        if host is not None and not isinstance(host, str):
            raise InvalidArgumentError(f"host must be a string, got {host!r}")
        ingest = self._locking(lambda: self._n.begin_ingest(os.getpid(), _now(), host))
        snap: Snapshot | None = None
        try:
            for spec in specs:
                name = str(spec["name"])
                ingest.start_item(name, str(spec.get("type", "raw")))
                progress.item = name
                stream: str | None
                if "command" in spec:
                    argv = _argv(spec["command"])
                    fed = self._feed_command(ingest, argv, progress)
                    stream = f"the output of {shlex.join(argv)}"
                else:
                    fed = self._feed(ingest, spec["source"], progress)
                    stream = _stream_name(spec["source"])
                if fed == 0 and stream is not None and not allow_empty:
                    failure = EmptyInputError(
                        f"item {name!r}: {stream} delivered no data (0 bytes) — its producer "
                        "most likely failed — so nothing was committed; if an empty item is "
                        "expected, pass allow_empty=True"
                    )
                    failure.item, failure.source = name, stream
                    raise failure
                progress.finish_item()
                ingest.finish_item()
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
                snap.id, snap.new_chunks, snap.reused_chunks, snap.original_size, snap.stored_size
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

    def _feed_command(
        self, ingest: _native.NativeIngest, argv: list[str], progress: _IngestProgress
    ) -> int:
        """Run ``argv`` and add its standard output to the current item; the bytes added."""
        with tempfile.TemporaryFile() as err:
            try:
                # Its own process group: on failure or a signal the whole producer (a shell
                # and its pipeline) is stopped, and a terminal's Ctrl-C reaches only us.
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
            except OSError as e:
                raise CommandFailedError(f"cannot run {argv[0]!r}: {e.strerror or e}") from e
            assert proc.stdout is not None
            try:
                fed = self._feed(ingest, proc.stdout, progress)
                status = proc.wait()
            except BaseException:
                # Also when a signal arrives while waiting for the producer to exit.
                _stop_group(proc)
                raise
            finally:
                proc.stdout.close()
            if status != 0:
                err.seek(0)
                tail = collections.deque(
                    err.read().decode("utf-8", "replace").splitlines(), _STDERR_TAIL_LINES
                )
                how = (
                    f"was killed by signal {-status}"
                    if status < 0
                    else f"exited with status {status}"
                )
                failure = CommandFailedError(
                    f"command {shlex.join(argv)} {how}: nothing was committed"
                    + ("; its standard error ends with:\n" + "\n".join(tail) if tail else "")
                )
                failure.argv, failure.exit_status = argv, status
                failure.stderr_tail = "\n".join(tail)
                raise failure
        ingest.set_item_command(argv, 0)
        return fed

    def _feed(self, ingest: _native.NativeIngest, source: Source, progress: _IngestProgress) -> int:
        """Add ``source`` to the current item; the bytes added."""
        if isinstance(source, (str, os.PathLike)):
            path = Path(os.fspath(source))
            mode = _source_mode(source)
            if stat.S_ISREG(mode):
                with _file_errors(path, "read", key=path):
                    return int(ingest.write_file(path, progress.callback()))
            with _file_errors(path, "read", key=path):
                f = open(path, "rb")  # a FIFO or device: stream it
            with f:
                return self._feed(ingest, f, progress)
        if isinstance(source, (bytes, bytearray, memoryview)):
            view = memoryview(source).cast("B")
            for i in range(0, len(view), _READ_SIZE):
                block = bytes(view[i : i + _READ_SIZE])
                ingest.write(block)
                progress.advance(len(block))
            return len(view)
        fd = self._real_fd(source)
        if fd is not None:
            # Bytes the Python buffer already holds first, then the rest straight from the
            # descriptor, read in a native thread while the engine works on the previous block.
            fed = 0
            if isinstance(source, io.BufferedReader):
                head = source.read(len(source.peek(1)))
                if head:
                    ingest.write(bytes(head))
                    progress.advance(len(head))
                    fed = len(head)
            return fed + int(ingest.write_fd(fd, progress.callback()))
        read = getattr(source, "read", None)
        if read is None:
            raise TypeError(
                f"cannot ingest {type(source).__name__}: give a path, bytes or a binary file"
            )
        fed = 0
        while True:
            block = read(_READ_SIZE)
            if not block:
                return fed
            if isinstance(block, str):
                raise TypeError("the source is a text stream: open it in binary mode")
            ingest.write(bytes(block))
            progress.advance(len(block))
            fed += len(block)

    @staticmethod
    def _real_fd(source: Any) -> int | None:
        """The OS file descriptor behind a binary file object read from the start of its
        unread data, or None (BytesIO, wrappers, text files, objects without one)."""
        if not isinstance(source, (io.BufferedReader, io.FileIO)):
            return None
        try:
            return int(source.fileno())
        except (OSError, ValueError, io.UnsupportedOperation):
            return None

    # -- snapshots -------------------------------------------------------------------------

    def list_snapshots(
        self,
        tags: Mapping[str, str] | None = None,
        after: TimeLike | None = None,
        before: TimeLike | None = None,
        host: str | None = None,
    ) -> list[Snapshot]:
        """Snapshots, oldest first, with all ``tags``, ``after <= created_at <= before`` and,
        if given, made by ``host`` (snapshots of unknown host never match one)."""
        rows = self._n.list_snapshots(
            _tags(tags),
            _iso(after, "after") if after is not None else None,
            _iso(before, "before") if before is not None else None,
            _host(host),
        )
        return [Snapshot._from_json(r) for r in rows]

    def get_snapshot(
        self,
        id_or_prefix: SnapshotRef,
        tags: Mapping[str, str] | None = None,
        host: str | None = None,
    ) -> Snapshot:
        """A snapshot by id, unique id prefix, or ``"latest"`` (a :class:`Snapshot` works too).

        With ``"latest"``, ``tags`` and ``host`` choose the newest snapshot having them; with an
        id they must match the snapshot. Raises :class:`SnapshotNotFoundError` when none does.
        """
        ref = _ref(id_or_prefix)
        if not tags and host is None:
            return Snapshot._from_json(self._n.get_snapshot(ref))
        wanted = _tags(tags)
        if ref.strip().lower() == "latest":
            found = self.list_snapshots(tags=wanted, host=host)
            if not found:
                raise SnapshotNotFoundError(f"no snapshot {_filter_text(wanted, host)}")
            return found[-1]
        snap = Snapshot._from_json(self._n.get_snapshot(ref))
        if any(snap.tags.get(k) != v for k, v in wanted.items()) or (
            host is not None and snap.host != host
        ):
            raise SnapshotNotFoundError(
                f"snapshot {snap.id} is not one {_filter_text(wanted, host)}"
            )
        return snap

    # -- restore ---------------------------------------------------------------------------

    def _item_blocks(
        self, snapshot_id: str, item: str, progress: _Counter | None = None
    ) -> Iterator[bytes]:
        with _naming(snapshot_id, item):
            reader = self._n.reader(snapshot_id, item)
        while True:
            with _naming(snapshot_id, item):
                block = reader.read_batch()
            if block is None:
                if progress is not None:
                    progress.done(f"restored {item}")
                return
            if progress is not None:
                progress.add(len(block), f"restoring {item}")
            yield block

    def _restore_progress(self, total: int) -> _Counter:
        return _Counter(Throttle(self._events, "restore:progress", "restore"), total)

    def _tar_blocks(self, snap: Snapshot) -> Iterator[bytes]:
        progress = self._restore_progress(snap.original_size)
        for it in snap.items:
            info = tarfile.TarInfo(it.name)
            info.size = it.size
            info.mtime = int(snap.created_at.timestamp())
            info.mode = 0o600
            yield info.tobuf(format=tarfile.PAX_FORMAT)
            yield from self._item_blocks(snap.id, it.name, progress)
            if it.size % tarfile.BLOCKSIZE:
                yield bytes(tarfile.BLOCKSIZE - it.size % tarfile.BLOCKSIZE)
        yield bytes(2 * tarfile.BLOCKSIZE)

    def restore(self, snapshot_id: SnapshotRef, item: str | None = None) -> io.BufferedReader:
        """A readable binary stream of one item, every chunk verified as it is read.

        Without ``item``, a one-item snapshot yields that item and a multi-item snapshot a
        tar stream of all its items.
        """
        snap = self.get_snapshot(snapshot_id)
        if item is not None or len(snap.items) == 1:
            it = snap.item(item) if item is not None else snap.items[0]
            blocks = self._item_blocks(snap.id, it.name, self._restore_progress(it.size))
        else:
            blocks = self._tar_blocks(snap)
        return io.BufferedReader(_ChunkStream(blocks), buffer_size=1 << 20)

    def restore_to_fd(self, snapshot_id: SnapshotRef, fd: int, item: str | None = None) -> int:
        """Write one item (or the only item) to the open file descriptor ``fd`` — stdout, a
        pipe, a socket — decoding the next batch while the previous one is written. Returns
        the bytes written; ``fd`` stays open."""
        snap = self.get_snapshot(snapshot_id)
        if item is None:
            if len(snap.items) != 1:
                raise InvalidArgumentError(
                    f"snapshot {snap.id} has {len(snap.items)} items: name one of them"
                )
            item = snap.items[0].name
        progress = self._restore_progress(snap.item(item).size)
        with _naming(snap.id, item):
            n = int(
                self._n.restore_to_fd(snap.id, item, fd, progress.callback(f"restoring {item}"))
            )
        progress.done(f"restored {item}")
        return n

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
            return self._restore_to_path(snap, items, raw, overwrite)
        except OSError as e:
            if isinstance(e, ContainerArchiveError) or e.errno is None:
                raise
            raise _unusable(raw, f"cannot be used: {e.strerror}") from None

    def _restore_to_path(
        self, snap: Snapshot, items: list[Item], raw: str, overwrite: bool
    ) -> Path:
        target = Path(raw)
        trailing = raw.endswith(("/", os.sep))
        if target.is_symlink() and not target.exists():
            raise _unusable(raw, "is a symbolic link that leads nowhere (dangling, or a loop)")
        if trailing and target.exists() and not target.is_dir():
            raise _unusable(raw, "is not a directory, but the trailing / names one")
        if trailing or target.is_dir():
            return self._restore_into_dir(snap, items, target, overwrite)
        if target.exists() and not stat.S_ISREG(target.stat().st_mode):
            # A device, FIFO or socket (/dev/null, a tty, >(gzip)): written into, never
            # replaced, as the shell's `>` does.
            with open(target, "wb") as out, _file_errors(target, "written"):
                self._restore_stream(snap, items, out)
            return target
        # Through a symbolic link to the file it names: the link stays.
        real = Path(os.path.realpath(target)) if target.is_symlink() else target
        parent = real.parent
        if parent.exists() and not parent.is_dir():
            raise _unusable(raw, f"cannot be written: {parent} is not a directory")
        if not parent.is_dir():
            raise _unusable(raw, f"cannot be written: the directory {parent} does not exist")
        if real.exists() and not overwrite:
            raise _unusable(
                raw, "exists: pass overwrite=True to replace it, or choose another name"
            )
        if len(items) == 1:
            it = items[0]
            progress = self._restore_progress(it.size)
            with _file_errors(real, "written"), _naming(snap.id, it.name):
                self._n.restore_to(
                    snap.id, it.name, real, progress.callback(f"restoring {it.name}")
                )
            progress.done(f"restored {it.name}")
            return target
        with _file_errors(real, "written"):
            _write_atomically(real, self._tar_blocks(snap))
        return target

    def _restore_stream(self, snap: Snapshot, items: list[Item], out: IO[bytes]) -> None:
        """One item, or a tar stream of several, written to the open file ``out``."""
        if len(items) == 1:
            out.flush()
            self.restore_to_fd(snap.id, out.fileno(), items[0].name)
            return
        for block in self._tar_blocks(snap):
            out.write(block)
        out.flush()

    def _restore_into_dir(
        self, snap: Snapshot, items: list[Item], target: Path, overwrite: bool
    ) -> Path:
        """Every item in ``items`` as a file under its own name below ``target``."""
        with _file_errors(target, "written"):
            target.mkdir(parents=True, exist_ok=True)
        root = target.resolve()
        dests = []
        for it in items:
            dest = (root / it.name).resolve()
            if root not in dest.parents:
                raise _unusable(
                    root / it.name,
                    f"leads outside {root} (a symbolic link?): item {it.name!r} is not "
                    "written there",
                )
            if dest.is_dir():
                raise _unusable(dest, f"is a directory: item {it.name!r} cannot be written there")
            special = dest.exists() and not stat.S_ISREG(dest.stat().st_mode)
            if (dest.exists() or dest.is_symlink()) and not overwrite and not special:
                raise _unusable(
                    dest,
                    "exists: pass overwrite=True to replace it, or choose another directory",
                )
            dests.append((it, dest))
        progress = self._restore_progress(sum(it.size for it in items))
        for it, dest in dests:
            if dest.exists() and not stat.S_ISREG(dest.stat().st_mode):
                # A FIFO or device where the item goes: written into, never replaced.
                with open(dest, "wb") as out, _file_errors(dest, "written"):
                    self._restore_stream(snap, [it], out)
                progress.next_item()
                continue
            with _file_errors(dest, "written"):
                dest.parent.mkdir(parents=True, exist_ok=True)
            with _file_errors(dest, "written"), _naming(snap.id, it.name):
                self._n.restore_to(
                    snap.id, it.name, dest, progress.callback(f"restoring {it.name}")
                )
            progress.next_item()
        progress.done(f"restored {len(items)} items")
        return target

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
    ) -> VerifyResult:
        """Check the repository: ``"quick"`` (metadata and presence), ``"standard"`` (plus
        pack checksums and headers) or ``"full"`` (plus every chunk decoded and re-hashed and
        every parity shard recomputed). ``on_error`` is called with each error as found."""
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
        return VerifyResult._from_json(text, level)

    def repair(self) -> RepairResult:
        """Remove stale locks, rebuild lost or damaged packs from parity, rebuild the index,
        and report what could not be saved (with the snapshots that need it)."""
        return RepairResult._from_json(self._locking(lambda: self._n.repair(os.getpid())))

    def reindex(self) -> ReindexResult:
        """Rebuild the global index from the ``.idx`` files and, where one is missing or
        damaged, from the packs themselves."""
        return ReindexResult(**json.loads(self._locking(lambda: self._n.reindex(os.getpid()))))

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
        keep none of a group's snapshots (nothing is changed then)."""
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
        progress = self._collect_progress("prune")
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
        return PruneResult._from_json(text)

    def _collect_progress(self, operation: str) -> Callable[[int, int, str], None] | None:
        """The native progress callback of prune or forget (None when nobody listens)."""
        throttle = Throttle(self._events, "prune:progress", operation)
        if not throttle.active:
            return None

        def progress(done: int, total: int, message: str) -> None:
            throttle.report(done, total or None, message, final=message == "done")

        return progress

    def forget(
        self, ids: SnapshotRef | Iterable[SnapshotRef], dry_run: bool = False
    ) -> PruneResult:
        """Remove exactly the snapshots ``ids`` names (full ids or unique prefixes, or
        :class:`Snapshot` objects; ``"latest"`` is refused: name the snapshot) and free the data
        only they used, in prune's crash-safe order. With ``dry_run`` nothing changes.

        Raises :class:`SnapshotNotFoundError` / :class:`AmbiguousSnapshotIdError` for a bad
        reference and :class:`InvalidArgumentError` for ``"latest"`` or no id; nothing is
        removed then."""
        if isinstance(ids, (str, Snapshot)):
            refs: list[Any] = [ids]
        elif isinstance(ids, Iterable):
            refs = list(ids)
        else:
            raise InvalidArgumentError(f"forget takes snapshot ids, got {ids!r}")
        for r in refs:
            if not isinstance(r, (str, Snapshot)):
                raise InvalidArgumentError(
                    f"forget takes snapshot ids (strings) or Snapshot objects, got {r!r}"
                )
        progress = self._collect_progress("forget")
        text = self._locking(
            lambda: self._n.forget(
                os.getpid(),
                [_ref(r) for r in refs],
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
        no pack."""
        return RepoStats._from_json(self._n.stats())

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
        cfg = self.config
        st = self.stats()
        about = table(
            ["path", "encryption", "compression", "chunking (min/avg/max)"],
            [
                (
                    str(self._path),
                    cfg["encryption"],
                    f"{cfg['compression']['algorithm']} {cfg['compression']['level']}",
                    "/".join(
                        human_size(cfg["chunker"][k]) for k in ("min_size", "avg_size", "max_size")
                    ),
                )
            ],
        )
        totals = table(
            ["snapshots", "content", "stored", "deduplication", "compression"],
            [
                (
                    st.snapshots,
                    human_size(st.original_bytes),
                    human_size(st.repository_bytes),
                    ratio(st.dedup_ratio),
                    ratio(st.compression_ratio),
                )
            ],
        )
        latest = self.list_snapshots()[-10:]
        recent = table(
            ["latest snapshots", "created", "host", "size", "added", "items", "tags"],
            [
                (
                    s.short_id,
                    s.created_at.isoformat(timespec="seconds"),
                    s.host or "(unknown)",
                    human_size(s.original_size),
                    human_size(s.stored_size),
                    ", ".join(i.name for i in s.items),
                    ", ".join(f"{k}={v}" for k, v in sorted(s.tags.items())),
                )
                for s in reversed(latest)
            ],
        )
        return titled(f"Repository {self._path}", about, totals, recent)


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


def _die_with_parent() -> None:
    """In the producer, before exec: be killed if this process dies (even by SIGKILL), so that
    a backup killed outright never leaves its producer running (Linux; elsewhere a no-op)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a producer's process group: SIGTERM, then, after at most half a second,
    SIGKILL to whatever of the group is left."""
    for sig, grace in ((signal.SIGTERM, 0.5), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass


def _argv(command: Sequence[str] | str) -> list[str]:
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    if not argv:
        raise InvalidArgumentError("the command is empty")
    return argv


def _known_size(source: object) -> int | None:
    """Bytes a source will yield, when that is known before reading it."""
    if isinstance(source, (bytes, bytearray)):
        return len(source)
    if isinstance(source, memoryview):
        return source.nbytes
    try:
        if isinstance(source, (str, os.PathLike)):
            st = os.stat(source)
            return st.st_size if stat.S_ISREG(st.st_mode) else None
        fileno = getattr(source, "fileno", None)
        if fileno is not None:
            st = os.fstat(fileno())
            if stat.S_ISREG(st.st_mode):
                return max(st.st_size - int(source.tell()), 0)  # type: ignore[attr-defined]
    except (OSError, ValueError, io.UnsupportedOperation):
        pass
    return None


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
