"""containerarchive: content-addressed, encrypted, deduplicating backups.

>>> import containerarchive as ca
>>> with ca.Repository.init("/backups/repo", passphrase="s3cret") as repo:
...     snap = repo.ingest("dump.sql", name="db.sql", tags={"db": "main"})
"""

from ._native import __version__
from .errors import (
    AmbiguousSnapshotIdError,
    CommandFailedError,
    ConcurrentModificationError,
    ContainerArchiveError,
    CorruptionError,
    EmptyInputError,
    Interrupted,
    InvalidArgumentError,
    ItemNotFoundError,
    LockedError,
    RepositoryExistsError,
    RepositoryNotFoundError,
    SnapshotNotFoundError,
    StorageError,
    UnsupportedFormatError,
    WrongPassphraseError,
)
from .events import IngestComplete, Progress, Subscription
from .frames import to_dataframe
from .repository import Repository, parse_duration
from .types import (
    Item,
    KeptSnapshot,
    KeyInfo,
    PlanFile,
    PruneGroup,
    PruneResult,
    ReindexResult,
    RepairResult,
    RepoStats,
    RestorePlan,
    Snapshot,
    UnlockResult,
    UnrecoverablePack,
    VerifyError,
    VerifyResult,
    VerifyStats,
)

__all__ = [
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
    "KeyInfo",
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
