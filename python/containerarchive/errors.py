"""Exceptions raised by containerarchive, one class per kind of failure.

Every exception is a :class:`ContainerArchiveError`; most also carry the object they are
about as attributes (``snapshot``, ``item``, ``lock``, ``object``, ``key``, ``location``).
"""

from __future__ import annotations

from typing import Any


class ContainerArchiveError(Exception):
    """Base class of every containerarchive error."""


class RepositoryNotFoundError(ContainerArchiveError, FileNotFoundError):
    """No repository at the given location (``config.json`` is missing)."""

    location: str


class RepositoryExistsError(ContainerArchiveError, FileExistsError):
    """``init`` found a repository (or a file) already at the location."""

    location: str


class WrongPassphraseError(ContainerArchiveError):
    """The passphrase opens no key file of the repository, or none was given."""


class SnapshotNotFoundError(ContainerArchiveError, LookupError):
    """No snapshot has this id or id prefix."""

    snapshot: str


class AmbiguousSnapshotIdError(ContainerArchiveError, LookupError):
    """The id prefix matches several snapshots (listed in ``matches``)."""

    snapshot: str
    matches: list[str]


class KeyNotFoundError(ContainerArchiveError, LookupError):
    """No key file has this id or id prefix (``key``)."""

    key: str


class PasswordFileError(WrongPassphraseError):
    """The password file cannot be used: missing, unreadable, not UTF-8 text, or too large
    (``path``). A kind of :class:`WrongPassphraseError` (CLI exit code 12)."""

    path: str


class UnusableFileError(ContainerArchiveError):
    """A file given to back up or to restore into cannot be used (``path``): missing, a
    directory where a file is needed (or the reverse), unreadable, not a regular file or
    stream, an output that exists (and may not be overwritten), or a terminal. CLI exit
    code 6; nothing was written to the repository."""

    path: str


class ItemNotFoundError(ContainerArchiveError, LookupError):
    """The snapshot has no item of this name (its items are in ``available``)."""

    snapshot: str
    item: str
    available: list[str]


class CorruptionError(ContainerArchiveError):
    """Stored data is damaged or missing; ``object`` names the pack, chunk, index or snapshot.
    ``snapshot`` is the id of the snapshot it concerns (its manifest, or an item of it being
    restored), ``None`` when it concerns none; ``snapshots`` lists every snapshot it names
    (``latest`` failing on several unreadable manifests names them all)."""

    object: str
    snapshot: str | None = None
    snapshots: list[str]


class LockedError(ContainerArchiveError):
    """Another process holds a conflicting lock (``lock``, held by ``holder``)."""

    lock: str
    holder: str


class ConcurrentModificationError(ContainerArchiveError):
    """Another process changed the repository under this operation so that its result would be
    wrong (a prune on another host deleted packs an ingest reuses; a snapshot appeared while a
    prune was about to delete data it needs). Nothing was committed or deleted; running the
    operation again is safe. ``object`` names the pack, snapshot or lock concerned."""

    object: str


class Interrupted(KeyboardInterrupt):
    """The process received SIGTERM or SIGHUP (``signum``) during an operation, which stopped
    without committing anything. Raised only where the CLI installed its handlers (the Python
    API raises :class:`KeyboardInterrupt` for SIGINT as usual)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class InvalidArgumentError(ContainerArchiveError, ValueError):
    """An argument is out of range: an unsafe item name, a bad tag, an unknown option."""


class UnsupportedFormatError(ContainerArchiveError):
    """The repository was written in a format version this version cannot read."""


class CommandFailedError(ContainerArchiveError):
    """A command whose output was being backed up (``ingest --exec``,
    :meth:`Repository.ingest_command`) exited with a non-zero status or was killed: nothing was
    committed. ``argv``, ``exit_status`` (negative: killed by that signal) and ``stderr_tail``
    (its last lines of standard error) say what happened."""

    argv: list[str]
    exit_status: int
    stderr_tail: str


class EmptyInputError(ContainerArchiveError):
    """An item read from a stream whose producer can fail (standard input, a pipe, a FIFO, a
    Python file object, a command's output) delivered no data: most likely the producer failed
    before writing anything, so nothing was committed (for a multi-item snapshot, the whole
    snapshot). ``item`` names the item and ``source`` describes the stream. Pass
    ``allow_empty=True`` (CLI: ``--allow-empty``, otherwise exit code 5) when an empty item is
    expected; an empty regular file or ``b""`` given explicitly is always stored."""

    item: str
    source: str


class StorageError(ContainerArchiveError, OSError):
    """The storage failed (I/O error, disk full, permission denied); ``key`` names the file."""

    key: str


class UnreadableSnapshotWarning(UserWarning):
    """:meth:`Repository.list_snapshots` left out snapshots whose manifest cannot be read
    (damaged or truncated); ``snapshots`` lists them (:class:`UnreadableSnapshot`). The
    listing holds every other snapshot. ``repair`` restores a manifest from its copy."""

    def __init__(self, message: str, snapshots: list[Any]) -> None:
        super().__init__(message)
        self.snapshots = snapshots


class ArchivedObjectError(StorageError):
    """An object the operation must read is in an archive storage class of the object store
    (S3 Glacier Flexible Retrieval, Glacier Deep Archive…): it is intact, but has to be restored
    from the archive before it can be read (``aws s3api restore-object``). ``key`` names the
    object and ``storage_class`` the class. Never a sign of damage. CLI exit code 14."""

    storage_class: str


__all__ = [
    "ArchivedObjectError",
    "AmbiguousSnapshotIdError",
    "CommandFailedError",
    "ConcurrentModificationError",
    "ContainerArchiveError",
    "CorruptionError",
    "EmptyInputError",
    "Interrupted",
    "InvalidArgumentError",
    "ItemNotFoundError",
    "KeyNotFoundError",
    "PasswordFileError",
    "UnusableFileError",
    "LockedError",
    "RepositoryExistsError",
    "RepositoryNotFoundError",
    "SnapshotNotFoundError",
    "StorageError",
    "UnreadableSnapshotWarning",
    "UnsupportedFormatError",
    "WrongPassphraseError",
]
