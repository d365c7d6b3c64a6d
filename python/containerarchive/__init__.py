"""containerarchive: content-addressed, encrypted, deduplicating backups.

>>> import containerarchive as ca
>>> with ca.Repository.init("/backups/repo", passphrase="s3cret") as repo:
...     snap = repo.ingest("dump.sql", name="db.sql", tags={"db": "main"})
"""

import os as _os

from . import _native
from ._native import __version__
from .errors import (
    AmbiguousSnapshotIdError,
    ArchivedObjectError,
    CommandFailedError,
    ConcurrentModificationError,
    ContainerArchiveError,
    CorruptionError,
    EmptyInputError,
    Interrupted,
    InvalidArgumentError,
    ItemNotFoundError,
    KeyNotFoundError,
    LockedError,
    PasswordFileError,
    RepositoryExistsError,
    RepositoryNotFoundError,
    SnapshotNotFoundError,
    StorageError,
    UnreadableSnapshotWarning,
    UnsupportedFormatError,
    UnusableFileError,
    WrongPassphraseError,
)
from .events import IngestComplete, Progress, Subscription
from .frames import to_dataframe
from .repository import Repository, parse_duration
from .types import (
    Item,
    KeptSnapshot,
    KeyInfo,
    LostSnapshot,
    PlanFile,
    PruneGroup,
    PruneResult,
    ReindexResult,
    RepairResult,
    RepoStats,
    RestorePlan,
    Snapshot,
    SnapshotScan,
    UnlockResult,
    UnreadableSnapshot,
    UnrecoverablePack,
    VerifyError,
    VerifyResult,
    VerifyStats,
)

__all__ = [
    "ArchivedObjectError",
    "AmbiguousSnapshotIdError",
    "CommandFailedError",
    "ConcurrentModificationError",
    "Interrupted",
    "UnlockResult",
    "parse_duration",
    "IngestComplete",
    "Progress",
    "RepoStats",
    "Subscription",
    "to_dataframe",
    "ContainerArchiveError",
    "CorruptionError",
    "EmptyInputError",
    "InvalidArgumentError",
    "Item",
    "ItemNotFoundError",
    "KeyNotFoundError",
    "PasswordFileError",
    "UnusableFileError",
    "KeyInfo",
    "LostSnapshot",
    "PlanFile",
    "LockedError",
    "Repository",
    "RepositoryExistsError",
    "RepositoryNotFoundError",
    "RestorePlan",
    "PruneResult",
    "PruneGroup",
    "KeptSnapshot",
    "ReindexResult",
    "RepairResult",
    "Snapshot",
    "SnapshotScan",
    "UnreadableSnapshot",
    "UnreadableSnapshotWarning",
    "SnapshotNotFoundError",
    "UnrecoverablePack",
    "VerifyError",
    "VerifyResult",
    "VerifyStats",
    "StorageError",
    "UnsupportedFormatError",
    "WrongPassphraseError",
    "__version__",
]

# A process forked after parallel work (gunicorn --preload, celery prefork, multiprocessing
# with "fork") has the parent's worker pool in memory but none of its threads: the child's
# first ingest or restore would wait on them forever. The child starts its own instead.
_os.register_at_fork(after_in_child=_native._after_fork_in_child)
