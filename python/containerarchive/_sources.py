"""Sources of an ingest: checking the items before anything is written, and feeding each one
to the native ingest — a path (a regular file read natively, a FIFO or device streamed), bytes,
a binary file object (its descriptor read natively where it has one), or the standard output of
a command run in its own process group (stopped on failure, its standard error's tail kept for
:class:`CommandFailedError`).

Owns :class:`EmptyInputError` and :class:`CommandFailedError`. Must not begin, commit or abort
an ingest (the caller does), and must not import :mod:`.repository`.
"""

from __future__ import annotations

import collections
import errno
import io
import os
import shlex
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Union

from . import _native
from ._args import StrPath
from ._files import _file_errors, _unusable
from ._progress import _IngestProgress
from .errors import CommandFailedError, EmptyInputError, InvalidArgumentError

Source = Union[StrPath, bytes, bytearray, memoryview, IO[bytes]]

_READ_SIZE = 4 << 20
#: Lines of a failed command's standard error shown in :class:`CommandFailedError`.
_STDERR_TAIL_LINES = 20


def _checked_items(
    items: Iterable[Mapping[str, Any]],
) -> tuple[list[Mapping[str, Any]], int | None]:
    """The items of an ingest, each with a ``name`` and either a ``source`` or a ``command``,
    every file among them checked before anything is written (a bad one writes nothing); and
    the bytes they hold, when that is known before reading them (else None)."""
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
    return specs, total


def _feed_item(
    ingest: _native.NativeIngest,
    spec: Mapping[str, Any],
    progress: _IngestProgress,
    allow_empty: bool,
) -> None:
    """Add the item ``spec`` (see :func:`_checked_items`) to ``ingest``, from start to finish.
    A stream that delivers no data raises :class:`EmptyInputError` unless ``allow_empty``."""
    name = str(spec["name"])
    ingest.start_item(name, str(spec.get("type", "raw")))
    progress.item = name
    stream: str | None
    if "command" in spec:
        argv = _argv(spec["command"])
        fed = _feed_command(ingest, argv, progress)
        stream = f"the output of {shlex.join(argv)}"
    else:
        fed = _feed(ingest, spec["source"], progress)
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


def _feed_command(ingest: _native.NativeIngest, argv: list[str], progress: _IngestProgress) -> int:
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
            fed = _feed(ingest, proc.stdout, progress)
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
                f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
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


def _feed(ingest: _native.NativeIngest, source: Source, progress: _IngestProgress) -> int:
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
            return _feed(ingest, f, progress)
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source).cast("B")
        for i in range(0, len(view), _READ_SIZE):
            block = bytes(view[i : i + _READ_SIZE])
            ingest.write(block)
            progress.advance(len(block))
        return len(view)
    fd = _real_fd(source)
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


def _real_fd(source: Any) -> int | None:
    """The OS file descriptor behind a binary file object read from the start of its
    unread data, or None (BytesIO, wrappers, text files, objects without one)."""
    if not isinstance(source, (io.BufferedReader, io.FileIO)):
        return None
    try:
        return int(source.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return None


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
