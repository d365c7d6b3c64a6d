"""Restore streaming: the verified blocks of an item as the native reader yields them, a tar
stream of several items, a readable stream over either (:class:`_ChunkStream`), and a restore
into a file, a device or FIFO, or a directory (where no item may lead outside it). A damaged or
missing pack or chunk is reported naming the snapshot and the item (:func:`_naming`).

Takes the native repository (a function giving it when a read starts) and the event emitter
as arguments; must not resolve snapshot references or import :mod:`.repository`.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from . import _native
from ._files import _file_errors, _unusable, _write_atomically
from ._progress import _Counter, _restore_progress
from .errors import CorruptionError, InvalidArgumentError, StorageError
from .events import Emitter
from .types import Item, Snapshot


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
            or getattr(e, "item", None)
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


class _Restore:
    """The restores of one repository. ``native`` gives its native handle each time a read
    starts (so that a repository closed in the meantime refuses it); ``events`` hears the
    ``restore:progress`` reports."""

    def __init__(self, native: Callable[[], _native.NativeRepository], events: Emitter):
        self._native = native
        self._events = events

    def item_blocks(
        self, snapshot_id: str, item: str, progress: _Counter | None = None
    ) -> Iterator[bytes]:
        with _naming(snapshot_id, item):
            reader = self._native().reader(snapshot_id, item)
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
        return _restore_progress(self._events, total)

    def tar_blocks(self, snap: Snapshot) -> Iterator[bytes]:
        progress = self._restore_progress(snap.original_size)
        for it in snap.items:
            info = tarfile.TarInfo(it.name)
            info.size = it.size
            info.mtime = int(snap.created_at.timestamp())
            info.mode = 0o600
            yield info.tobuf(format=tarfile.PAX_FORMAT)
            yield from self.item_blocks(snap.id, it.name, progress)
            if it.size % tarfile.BLOCKSIZE:
                yield bytes(tarfile.BLOCKSIZE - it.size % tarfile.BLOCKSIZE)
        yield bytes(2 * tarfile.BLOCKSIZE)

    def stream(self, snap: Snapshot, item: str | None) -> io.BufferedReader:
        """See :meth:`Repository.restore`: one item, the only item, or a tar stream."""
        if item is not None or len(snap.items) == 1:
            it = snap.item(item) if item is not None else snap.items[0]
            blocks = self.item_blocks(snap.id, it.name, self._restore_progress(it.size))
        else:
            blocks = self.tar_blocks(snap)
        return io.BufferedReader(_ChunkStream(blocks), buffer_size=1 << 20)

    def to_fd(self, snap: Snapshot, fd: int, item: str | None) -> int:
        """See :meth:`Repository.restore_to_fd`: the bytes written to ``fd``."""
        if item is None:
            if len(snap.items) != 1:
                raise InvalidArgumentError(
                    f"snapshot {snap.id} has {len(snap.items)} items: name one of them"
                )
            item = snap.items[0].name
        progress = self._restore_progress(snap.item(item).size)
        with _naming(snap.id, item):
            n = int(
                self._native().restore_to_fd(
                    snap.id, item, fd, progress.callback(f"restoring {item}")
                )
            )
        progress.done(f"restored {item}")
        return n

    def to_path(self, snap: Snapshot, items: list[Item], raw: str, overwrite: bool) -> Path:
        target = Path(raw)
        trailing = raw.endswith(("/", os.sep))
        if target.is_symlink() and not target.exists():
            raise _unusable(raw, "is a symbolic link that leads nowhere (dangling, or a loop)")
        if trailing and target.exists() and not target.is_dir():
            raise _unusable(raw, "is not a directory, but the trailing / names one")
        if trailing or target.is_dir():
            return self._into_dir(snap, items, target, overwrite)
        if target.exists() and not stat.S_ISREG(target.stat().st_mode):
            # A device, FIFO or socket (/dev/null, a tty, >(gzip)): written into, never
            # replaced, as the shell's `>` does.
            with open(target, "wb") as out, _file_errors(target, "written"):
                self._write_stream(snap, items, out)
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
                self._native().restore_to(
                    snap.id, it.name, real, progress.callback(f"restoring {it.name}")
                )
            progress.done(f"restored {it.name}")
            return target
        with _file_errors(real, "written"):
            _write_atomically(real, self.tar_blocks(snap))
        return target

    def _write_stream(self, snap: Snapshot, items: list[Item], out: IO[bytes]) -> None:
        """One item, or a tar stream of several, written to the open file ``out``."""
        if len(items) == 1:
            out.flush()
            self.to_fd(snap, out.fileno(), items[0].name)
            return
        for block in self.tar_blocks(snap):
            out.write(block)
        out.flush()

    def _into_dir(self, snap: Snapshot, items: list[Item], target: Path, overwrite: bool) -> Path:
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
                    self._write_stream(snap, [it], out)
                progress.next_item()
                continue
            with _file_errors(dest, "written"):
                dest.parent.mkdir(parents=True, exist_ok=True)
            with _file_errors(dest, "written"), _naming(snap.id, it.name):
                self._native().restore_to(
                    snap.id, it.name, dest, progress.callback(f"restoring {it.name}")
                )
            progress.next_item()
        progress.done(f"restored {len(items)} items")
        return target
