"""The user's own local paths: a source read, an output written, a directory given to hold
a repository. A problem with one is about that path — :class:`UnusableFileError` naming it
(CLI exit 6) — never a storage error: the repository is not involved.

Owns those path checks and the atomic write of an output file. Must not open or read a
repository, and must not import :mod:`.repository`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ._args import StrPath
from .errors import (
    ContainerArchiveError,
    RepositoryExistsError,
    StorageError,
    UnusableFileError,
)


def _unusable(path: StrPath, why: str) -> UnusableFileError:
    failure = UnusableFileError(f"{os.fspath(path)} {why}")
    failure.path = os.fspath(path)
    return failure


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
