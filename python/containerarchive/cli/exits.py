"""The CLI's exit codes: their numbers, what each means (:data:`EXIT_TABLE`, the one place
they are written: ``--help`` and the README's table come from, or are checked against, it),
which error class leads to which (:data:`_EXIT_CODES`), and :class:`UsageError`.

Must not print anything or read the command line.
"""

from __future__ import annotations

from .. import errors

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_COMMAND_FAILED = 4
EXIT_EMPTY_INPUT = 5
EXIT_FILE = 6
EXIT_NO_REPOSITORY = 10
EXIT_LOCKED = 11
EXIT_PASSPHRASE = 12
EXIT_CONCURRENT = 13
EXIT_ARCHIVED = 14
#: The reader of standard output closed the pipe early (128 + SIGPIPE, as the shell reports).
EXIT_BROKEN_PIPE = 141

_EXIT_CODES: list[tuple[type[BaseException], int]] = [
    (errors.CommandFailedError, EXIT_COMMAND_FAILED),
    (errors.EmptyInputError, EXIT_EMPTY_INPUT),
    (errors.UnusableFileError, EXIT_FILE),
    (errors.RepositoryExistsError, EXIT_FILE),
    (errors.KeyNotFoundError, EXIT_NOT_FOUND),
    (errors.RepositoryNotFoundError, EXIT_NO_REPOSITORY),
    (errors.LockedError, EXIT_LOCKED),
    (errors.ConcurrentModificationError, EXIT_CONCURRENT),
    (errors.WrongPassphraseError, EXIT_PASSPHRASE),
    (errors.SnapshotNotFoundError, EXIT_NOT_FOUND),
    (errors.AmbiguousSnapshotIdError, EXIT_NOT_FOUND),
    (errors.ItemNotFoundError, EXIT_NOT_FOUND),
    (errors.InvalidArgumentError, EXIT_USAGE),
    (errors.ArchivedObjectError, EXIT_ARCHIVED),
]


#: Every exit code and what it means: the one place they are written (``--help`` and the
#: README's table come from, or are checked against, this list).
EXIT_TABLE: list[tuple[str, str]] = [
    ("0", "ok"),
    (
        "1",
        "not ok: verify found damage, repair left packs unrecoverable, a restore plan is "
        "incomplete; or another error (corruption, storage)",
    ),
    ("2", "usage error: an unknown or malformed option, argument or value"),
    ("3", "snapshot, item or key not found (or an ambiguous id prefix)"),
    ("4", "a command given with --exec failed: nothing committed"),
    (
        "5",
        "a stream (stdin, pipe, FIFO, --exec output) delivered no data: nothing committed "
        "(--allow-empty stores it)",
    ),
    (
        "6",
        "a source or output file cannot be used: missing, a directory where a file is needed "
        "(or the reverse), unreadable, an output that exists without --overwrite, standard "
        "output a terminal, init into a non-empty directory; nothing written",
    ),
    ("10", "no repository at the location"),
    ("11", "locked by another process (the message says who holds the lock, and until when)"),
    (
        "12",
        "wrong or missing passphrase, an empty new passphrase, or a password file that is "
        "missing, unreadable or not text",
    ),
    (
        "13",
        "another process changed the repository under the operation: nothing committed or "
        "deleted, run it again",
    ),
    (
        "14",
        "an object the command must read is in an archive storage class (S3 Glacier…): "
        "restore it from the archive first; nothing changed",
    ),
    ("129/130/143", "interrupted by SIGHUP/SIGINT/SIGTERM: nothing committed"),
    ("141", "the reader of the output closed the pipe early (piped into head): quietly"),
]


class UsageError(Exception):
    """A problem with how the command was called."""
