"""The ``containerarchive`` command line.

Exit codes: 0 success; 1 not ok (verify or repair found damage) or any other error; 2 usage
error; 3 snapshot or item not found; 4 a command given with ``--exec`` failed (nothing was
committed); 10 no repository; 11 locked; 12 wrong or missing passphrase; 13 another process
changed the repository under the operation (nothing was committed or deleted: run it again);
130 / 143 / 129 interrupted by SIGINT / SIGTERM / SIGHUP (nothing was committed).
With ``--json`` every command prints exactly one JSON document on standard output, errors
included (``{"error": {"type", "message", "exit_code"}}``).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import getpass
import json
import os
import re
import shlex
import signal
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import errors
from ._args import _iso, parse_duration
from ._format import human_size
from ._native import __version__
from ._signals import defer_signal
from .events import Progress, ProgressEvent, Subscription
from .repository import Repository
from .types import PlanFile, PruneResult, Snapshot

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


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line gets one line (and with --json, the JSON error
    document) instead of the usage block, like every other error."""

    def error(self, message: str) -> NoReturn:
        text = f"{message} (see {self.prog} --help)"
        if any(len(a) >= 3 and "--json".startswith(a) for a in sys.argv[1:]):
            doc = {"error": {"type": "UsageError", "message": text, "exit_code": EXIT_USAGE}}
            _write_json_error(doc)
        print(f"{self.prog}: {text}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _parse_tags(pairs: Sequence[str] | None) -> dict[str, str]:
    tags = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--tag {pair!r}: expected KEY=VALUE")
        tags[key] = value
    return tags


_PASSWORD_FILE_MAX = 4096


def _read_password_file(path: str, what: str = "password file") -> str:
    """The passphrase in ``path`` (its first line's end stripped). Raises PasswordFileError
    (exit 12) for a file that is missing, unreadable, a directory, too large or not text."""

    def fail(why: str) -> errors.PasswordFileError:
        e = errors.PasswordFileError(f"{what} {path} {why}")
        e.path = path
        return e

    try:
        with open(path, "rb") as f:
            data = f.read(_PASSWORD_FILE_MAX + 1)
    except FileNotFoundError:
        raise fail("does not exist") from None
    except IsADirectoryError:
        raise fail("is a directory") from None
    except OSError as e:
        raise fail(f"cannot be read: {e.strerror}") from None
    if len(data) > _PASSWORD_FILE_MAX:
        raise fail(f"is larger than {_PASSWORD_FILE_MAX} bytes: it should hold one passphrase")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise fail("is not UTF-8 text") from None
    if "\0" in text:
        raise fail("is not text (it holds NUL bytes)")
    return text.rstrip("\r\n")


def _passphrase(args: argparse.Namespace, *, creating: bool) -> str | None:
    if getattr(args, "password_file", None):
        return _read_password_file(args.password_file)
    env = os.environ.get("CONTAINERARCHIVE_PASSWORD")
    if env is not None:
        return env
    env_file = os.environ.get("CONTAINERARCHIVE_PASSWORD_FILE")
    if env_file:
        args.password_file = env_file
        return _passphrase(args, creating=creating)
    if sys.stdin.isatty() and sys.stderr.isatty():
        first = getpass.getpass("repository passphrase: ")
        if creating and getpass.getpass("repeat passphrase: ") != first:
            raise UsageError("the passphrases differ")
        return first
    if creating:
        raise errors.WrongPassphraseError(
            "no passphrase: give --password-file or CONTAINERARCHIVE_PASSWORD, "
            "or --no-encryption for an unencrypted repository"
        )
    return None


def _repo_path(args: argparse.Namespace) -> str:
    path = getattr(args, "repo", None) or os.environ.get("CONTAINERARCHIVE_REPOSITORY")
    if not path:
        raise UsageError("no repository: give --repo or set CONTAINERARCHIVE_REPOSITORY")
    return str(path)


def _duration(args: argparse.Namespace, name: str) -> float | None:
    """Seconds of the duration option ``name`` (``retry_lock`` → ``--retry-lock``), if given."""
    text = getattr(args, name, None)
    if text is None:
        return None
    try:
        return parse_duration(text).total_seconds()
    except errors.InvalidArgumentError as e:
        raise UsageError(f"--{name.replace('_', '-')}: {e}") from e


def _open(args: argparse.Namespace) -> Repository:
    path = _repo_path(args)
    wait = _duration(args, "retry_lock")
    storage_wait = _duration(args, "retry_storage")
    try:
        repo = Repository.open(path, None, retry_lock=wait, retry_storage=storage_wait)
    except errors.WrongPassphraseError:
        passphrase = _passphrase(args, creating=False)
        if passphrase is None:
            raise errors.WrongPassphraseError(
                f"the repository at {path} is encrypted: give --password-file or "
                "CONTAINERARCHIVE_PASSWORD"
            ) from None
        repo = Repository.open(path, passphrase, retry_lock=wait, retry_storage=storage_wait)

    def waiting(e: errors.LockedError) -> None:
        print(
            f"containerarchive {args.command}: waiting up to {args.retry_lock} for the lock "
            f"{e.lock} held by {e.holder.split('. If')[0]}",
            file=sys.stderr,
        )

    repo.on_lock_wait = waiting
    return repo


def _terminal_size() -> tuple[int, int]:
    """Standard error's columns and rows; 100×24 where the terminal does not say (a pty
    nobody sized says 0×0, and tqdm hides every bar on a terminal of 0 rows)."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
        return size.columns or 100, size.lines or 24
    except (OSError, ValueError):
        return 100, 24


class _Bars:
    """tqdm progress bars on standard error for a repository's progress events — only on a
    terminal, and never with ``--json`` or ``--no-progress``."""

    def __init__(self, args: argparse.Namespace, repo: Repository, *events: ProgressEvent):
        self._bar: Any = None
        self._subs: list[Subscription] = []
        wanted = (
            sys.stderr.isatty()
            and not getattr(args, "json", False)
            and not getattr(args, "no_progress", False)
        )
        if wanted:
            for event in events:
                self._subs.append(repo.on(event, self._update))

    def _update(self, p: Progress) -> None:
        from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

        percent_only = p.total_bytes is None and p.percentage is not None
        if self._bar is None:
            self._bar = tqdm(
                total=100 if percent_only else p.total_bytes,
                unit="%" if percent_only else "B",
                unit_scale=not percent_only,
                unit_divisor=1024,
                desc=p.operation,
                file=sys.stderr,
                bar_format=(
                    "{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}"
                    if percent_only
                    else None
                ),
                ncols=_terminal_size()[0],
                nrows=_terminal_size()[1],
                leave=True,
            )
        bar = self._bar
        if bar.unit == "B" and p.total_bytes is not None and bar.total != p.total_bytes:
            bar.total = p.total_bytes  # prune learns its total after planning
        bar.n = p.percentage if percent_only else p.bytes_processed
        if percent_only:
            bar.set_postfix_str(f"{human_size(p.bytes_processed)} read, {p.message}", refresh=False)
        else:
            bar.set_postfix_str(p.message, refresh=False)
        bar.refresh()

    def __enter__(self) -> _Bars:
        return self

    def __exit__(self, *exc: object) -> None:
        for sub in self._subs:
            sub.unsubscribe()
        if self._bar is not None:
            self._bar.close()


def _emit(args: argparse.Namespace, doc: Any, text: str) -> None:
    try:
        if getattr(args, "json", False):
            json.dump(doc, sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            print(text)
        sys.stdout.flush()
    except OSError as e:
        if e.errno is None or e.errno == errno.EPIPE:
            raise
        raise _stdout_unusable(
            f"cannot be written: {os.strerror(e.errno)} (the command itself completed)"
        ) from None


def _snapshot_text(s: Snapshot) -> str:
    lines = [
        f"snapshot {s.id}",
        f"  created   {s.created_at.isoformat()}",
        f"  host      {s.host or '(unknown: made before hosts were recorded)'}",
        f"  tags      {', '.join(f'{k}={v}' for k, v in sorted(s.tags.items())) or '-'}",
        f"  size      {human_size(s.original_size)} in {s.chunk_count} chunks",
        f"  stored    {human_size(s.stored_size)} new ({s.new_chunks} new chunks, "
        f"{s.reused_chunks} reused)",
        "  items",
    ]
    for i in s.items:
        lines.append(f"    {i.name}  ({i.type}, {human_size(i.size)}, {i.chunk_count} chunks)")
        if i.command:
            lines.append(f"      from  {shlex.join(i.command)}  (exit status {i.exit_status})")
    return "\n".join(lines)


# -- commands ------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    path = _repo_path(args)
    if args.no_encryption:
        # The explicit choice wins over a passphrase in the environment; a password file given
        # on the same command line contradicts it.
        if getattr(args, "password_file", None):
            raise UsageError("--no-encryption and --password-file contradict each other")
        passphrase = None
    else:
        passphrase = _passphrase(args, creating=True)
    with (
        _empty_passphrase_words(init=True),
        Repository.init(
            path,
            passphrase,
            compression=args.compression,
            retry_storage=_duration(args, "retry_storage"),
        ) as repo,
    ):
        cfg = repo.config
    _emit(
        args,
        {"repository": path, "config": cfg},
        f"created {'encrypted' if passphrase is not None else 'UNENCRYPTED'} repository at "
        f"{path} (compression {cfg['compression']['algorithm']})",
    )
    return 0


def _ingest_items(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Sources first, then ``--exec`` commands, in the order given; ``--name`` values name
    them in that same order."""
    sources: list[str] = args.sources or []
    commands: list[str] = args.exec or []
    names: list[str] = args.name or []
    if not sources and not commands:
        raise UsageError("nothing to back up: give a file, - for stdin, or --exec COMMAND")
    if len(names) > len(sources) + len(commands):
        raise UsageError(
            f"{len(names)} --name given for {len(sources) + len(commands)} items "
            "(names apply to the sources, then to the --exec commands, in order)"
        )
    if sources.count("-") > 1:
        raise UsageError("standard input (-) can be given once")
    items: list[dict[str, Any]] = []
    for i, src in enumerate(sources):
        if not src:
            raise UsageError("an empty source name: give a file, or - for standard input")
        given = names[i] if i < len(names) else None
        if src == "-":
            if sys.stdin is None:
                raise UsageError(
                    "- reads standard input, which is closed: pipe the data in, or give a file"
                )
            items.append({"source": sys.stdin.buffer, "name": given or "stdin"})
        else:
            items.append({"source": src, "name": given or Path(src).name})
    for j, command in enumerate(commands):
        i = len(sources) + j
        try:
            argv = shlex.split(command)
        except ValueError as e:
            raise UsageError(f"--exec {command!r}: {e}") from e
        if not argv:
            raise UsageError("--exec needs a command")
        given = names[i] if i < len(names) else None
        items.append({"command": argv, "name": given or f"{Path(argv[0]).name}.out"})
    for item in items:
        item["type"] = args.type
    return items


#: Whether this process started with no standard output (`>&-`): results are then lost, and
#: a restore to standard output is refused.
_STDOUT_CLOSED = False


def _stdout_unusable(why: str) -> errors.UnusableFileError:
    e = errors.UnusableFileError(f"standard output {why}")
    e.path = "-"
    return e


def _time_flag(value: str | None, flag: str) -> str | None:
    """A time given on the command line, checked here so that an error names the flag."""
    if value is None:
        return None
    try:
        return _iso(value, flag)
    except errors.InvalidArgumentError as e:
        raise UsageError(str(e)) from None


def cmd_ingest(args: argparse.Namespace) -> int:
    items = _ingest_items(args)
    args.time = _time_flag(args.time, "--time")
    with _open(args) as repo, _Bars(args, repo, "ingest:progress"):
        snap = repo.ingest_multi(
            items,
            tags=_parse_tags(args.tag),
            time=args.time,
            host=args.host,
            allow_empty=args.allow_empty,
        )
    if snap.original_size == 0:
        summary = (
            f"  empty: {len(snap.items)} item(s) of 0 bytes, "
            f"{human_size(snap.stored_size)} added to the repository"
        )
    else:
        summary = (
            f"  {human_size(snap.original_size)} in {snap.chunk_count} chunks: "
            f"{snap.new_chunks} new, {snap.reused_chunks} reused "
            f"({snap.dedup_percent:.1f}% deduplicated), "
            f"{human_size(snap.stored_size)} added to the repository"
        )
    _emit(args, snap.to_dict(), f"snapshot {snap.id} saved\n{summary}")
    return 0


def _resolve(repo: Repository, ref: str, args: argparse.Namespace) -> Snapshot:
    """The snapshot ``ref`` names; with ``latest``, the newest with ``--tag``/``--host``."""
    return repo.get_snapshot(
        ref, tags=_parse_tags(getattr(args, "tag", None)), host=getattr(args, "host", None)
    )


def cmd_restore(args: argparse.Namespace) -> int:
    to_stdout = args.output in (None, "-")
    if to_stdout and getattr(args, "json", False):
        raise UsageError("--json needs -o FILE: standard output carries the restored data")
    if to_stdout and _STDOUT_CLOSED:
        raise _stdout_unusable("is closed: give -o FILE")
    if args.output is None and sys.stdout.isatty():
        raise _stdout_unusable(
            "is a terminal: give -o FILE (or DIR/), pipe it, or -o - to write the data to the "
            "terminal anyway"
        )
    with _open(args) as repo, _Bars(args, repo, "restore:progress"):
        snap = _resolve(repo, args.snapshot, args)
        if to_stdout:
            try:
                if args.item is not None or len(snap.items) == 1:
                    sys.stdout.flush()
                    repo.restore_to_fd(snap.id, sys.stdout.fileno(), args.item)
                    return 0
                with repo.restore(snap.id, args.item) as stream:
                    out = sys.stdout.buffer
                    while True:
                        block = stream.read1(1 << 20)
                        if not block:
                            break
                        out.write(block)
                    out.flush()
            except OSError as e:
                if e.errno is None or e.errno == errno.EPIPE:
                    raise
                raise _stdout_unusable(f"cannot be written: {os.strerror(e.errno)}") from None
            return 0
        target = repo.restore_to(snap.id, args.output, args.item, overwrite=args.overwrite)
    items = [args.item] if args.item else [i.name for i in snap.items]
    size = sum(snap.item(name).size for name in items)
    if getattr(args, "json", False):
        _emit(
            args,
            {"snapshot": snap.id, "target": str(target), "items": items, "bytes": size},
            "",
        )
    else:
        print(f"restored snapshot {snap.id} to {target} ({human_size(size)})", file=sys.stderr)
    return 0


def cmd_restore_plan(args: argparse.Namespace) -> int:
    with _open(args) as repo:
        snap = _resolve(repo, args.snapshot, args)
        plan = repo.restore_plan(snap.id, args.item)
    doc = {
        "snapshot": plan.snapshot,
        "items": plan.items,
        "files": [vars(f) for f in plan.files],
        "total_bytes": plan.total_bytes,
        "missing": plan.missing,
        "damaged": plan.damaged,
        "complete": plan.complete,
        "archived": plan.archived,
    }

    def mark(f: PlanFile) -> str:
        if not f.present:
            return "  MISSING (not in the repository)"
        if f.damaged:
            return "  DAMAGED (not the size the index gives: truncated or replaced)"
        return ""

    lines = [
        f"{f.path}  {human_size(f.size) if f.size is not None else '?'}{mark(f)}"
        for f in plan.files
    ]
    lines.append(f"{len(plan.files)} files, {human_size(plan.total_bytes)}")
    if plan.archived:
        lines.append(
            f"the plan is INCOMPLETE: {len(plan.archived)} pack(s) holding the chunk lists of "
            "this restore are in an archive storage class; restore them from the archive "
            "(aws s3api restore-object), then run restore-plan again to learn the data packs:"
        )
        lines += [f"  {p}" for p in plan.archived]
        _emit(args, doc, "\n".join(lines))
        return EXIT_ARCHIVED
    if not plan.complete:
        bad = len(plan.missing) + len(plan.damaged)
        what = (
            f"{bad} {'file is' if bad == 1 else 'files are'} missing or damaged"
            if bad
            else "a chunk list could not be read"
        )
        lines.append(
            f"the plan is INCOMPLETE: {what}, so this restore would fail; "
            "`containerarchive repair` rebuilds one lost or damaged pack per parity group"
        )
    _emit(args, doc, "\n".join(lines))
    return 0 if plan.complete else EXIT_ERROR


def cmd_snapshots(args: argparse.Namespace) -> int:
    with _open(args) as repo:
        snaps = repo.list_snapshots(
            tags=_parse_tags(args.tag),
            after=_time_flag(args.after, "--after"),
            before=_time_flag(args.before, "--before"),
            host=args.host,
        )
    width = max([4, *(len(s.host or "-") for s in snaps)])
    rows = [
        f"{s.short_id}  {s.created_at.isoformat(timespec='seconds')}  "
        f"{s.host or '-':{width}}  "
        f"{human_size(s.original_size):>10}  {human_size(s.stored_size):>10}  "
        f"{','.join(i.name for i in s.items)}  "
        f"{' '.join(f'{k}={v}' for k, v in sorted(s.tags.items()))}"
        for s in snaps
    ]
    header = f"{'ID':8}  {'TIME':25}  {'HOST':{width}}  {'SIZE':>10}  {'ADDED':>10}  ITEMS  TAGS"
    _emit(args, [s.to_dict() for s in snaps], "\n".join([header, *rows, f"{len(snaps)} snapshots"]))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with _open(args) as repo:
        snap = _resolve(repo, args.snapshot, args)
    _emit(args, snap.to_dict(), _snapshot_text(snap))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    with _open(args) as repo:
        printed = []

        def show(e: Any) -> None:
            if not getattr(args, "json", False):
                where = f"snapshot {e.snapshot}: " if e.snapshot else ""
                print(f"error: {e.kind}: {where}{e.message}", file=sys.stderr)
                printed.append(e)

        with _Bars(args, repo, "verify:progress"):
            result = repo.verify(args.level, on_error=show)
    st = result.stats
    _emit(
        args,
        {
            "ok": result.ok,
            "level": args.level,
            "errors": [vars(e) for e in result.errors],
            "stats": vars(st),
        },
        f"verify ({args.level}): {'ok' if result.ok else f'{len(result.errors)} errors'}; "
        f"{st.snapshots_checked} snapshots, {st.packs_checked} packs, {st.chunks_checked} "
        f"chunks, {st.groups_checked} parity groups checked, {human_size(st.bytes_read)} read"
        + (
            f"; {st.unindexed_packs} unindexed packs (garbage: prune removes them)"
            if st.unindexed_packs
            else ""
        ),
    )
    return 0 if result.ok else EXIT_ERROR


def cmd_repair(args: argparse.Namespace) -> int:
    with _open(args) as repo:
        r = repo.repair()
    lines = [
        f"repaired {len(r.packs_repaired)} packs from parity"
        + "".join(f"\n  rebuilt {p}" for p in r.packs_repaired),
        f"index rebuilt from {r.reindex.packs_indexed} packs "
        f"({len(r.reindex.idx_rebuilt)} .idx files rewritten)",
        f"{len(r.locks_removed)} stale locks removed, {r.groups_written} parity groups written",
    ]
    if r.parity_groups_moved:
        lines.append(f"{r.parity_groups_moved} parity groups moved from packs/parity/ to parity/")
    lines += _foreign_lines(r.foreign_files)
    for u in r.unrecoverable:
        lines.append(f"UNRECOVERABLE pack {u.pack}: {u.reason}")
        lines += [f"  affects snapshot {s}" for s in u.snapshots]
    doc = {
        "ok": r.ok,
        "index_rebuilt": r.index_rebuilt,
        "packs_repaired": r.packs_repaired,
        "locks_removed": r.locks_removed,
        "groups_written": r.groups_written,
        "unrecoverable": [vars(u) for u in r.unrecoverable],
        "reindex": vars(r.reindex),
        "parity_groups_moved": r.parity_groups_moved,
        "foreign_files": r.foreign_files,
    }
    _emit(args, doc, "\n".join(lines))
    return 0 if r.ok else EXIT_ERROR


def _foreign_lines(foreign: list[str]) -> list[str]:
    """What a cleanup saw but left alone: files this repository did not write."""
    if not foreign:
        return []
    shown = [f"  {k}" for k in foreign[:10]]
    if len(foreign) > 10:
        shown.append(f"  … and {len(foreign) - 10} more (--json lists them all)")
    return [
        f"left alone {len(foreign)} file(s) that containerarchive did not write "
        "(another program's data in the same location?):",
        *shown,
    ]


def cmd_reindex(args: argparse.Namespace) -> int:
    with _open(args) as repo:
        r = repo.reindex()
    _emit(
        args,
        vars(r),
        f"indexed {r.packs_indexed} packs into {r.index_files_written} index files "
        f"({len(r.idx_rebuilt)} .idx rebuilt from packs, {len(r.unreadable_packs)} unreadable)",
    )
    return 0


def _collect_text(r: PruneResult, snaps: dict[str, Snapshot]) -> str:
    """restic-like: per group, the snapshots kept (with why) and removed; then the packs."""

    def row(sid: str, why: str = "") -> str:
        s = snaps.get(sid)
        when = s.created_at.isoformat(timespec="seconds") if s else ""
        items = ",".join(i.name for i in s.items) if s else ""
        return f"    {sid[:8]}  {when:25}  {items:20}  {why}".rstrip()

    verb = "would remove" if r.dry_run else "remove"
    lines: list[str] = []
    for g in r.groups:
        lines.append(f"snapshots of {g.description}:" if g.key else "all snapshots, as one pool:")
        members = [snaps[i] for i in [k.id for k in g.kept] + g.removed if i in snaps]
        tag_sets = {tuple(sorted(s.tags.items())) for s in members}
        if "tags" not in g.key and len(tag_sets) > 1:
            shown = "; ".join(
                ",".join(f"{k}={v}" for k, v in t) or "(no tags)" for t in sorted(tag_sets)[:4]
            )
            lines.append(
                f"  note: this group mixes snapshots with different tags ({shown}); if they "
                "are separate series, retain each on its own with --group-by host,items,tags"
            )
        if g.kept:
            lines.append(f"  keep {len(g.kept)} snapshots:")
            lines += [row(k.id, ", ".join(k.reasons)) for k in g.kept]
        if g.removed:
            lines.append(f"  {verb} {len(g.removed)} snapshots:")
            lines += [row(sid) for sid in g.removed]
    if not r.groups:
        lines.append(f"{verb} {len(r.removed)} snapshots:")
        lines += [row(sid) for sid in r.removed]
    merged = f", {r.merged_packs} small ones merged" if r.merged_packs else ""
    packs = f"{r.removed_packs} packs ({r.rewritten_packs} rewritten into {r.new_packs}{merged})"
    if r.freed_bytes >= 0:
        freed = f"{'freeing' if r.dry_run else 'freed'} {human_size(r.freed_bytes)}"
    else:  # merged packs' parity can outweigh what was deleted
        grew = human_size(-r.freed_bytes)
        freed = f"the repository {'would grow' if r.dry_run else 'grew'} by {grew}"
    kept = f"keep {len(r.kept)} snapshots, " if r.groups else ""
    if r.dry_run:
        lines.append(
            f"dry run: would {kept}remove {r.removed_snapshots} snapshots and {packs}, {freed}"
        )
    else:
        lines.append(
            f"{'kept ' + str(len(r.kept)) + ' snapshots, ' if r.groups else ''}removed "
            f"{r.removed_snapshots} snapshots and {packs}, {freed}"
        )
    lines += _foreign_lines(r.foreign_files)
    return "\n".join(lines)


def _count_arg(text: str) -> int:
    """A --keep-* count: N, or -1 / unlimited for every bucket."""
    if text.strip().lower() == "unlimited":
        return -1
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count (N, or unlimited)") from None
    if n < -1 or n > _MAX_COUNT:
        raise argparse.ArgumentTypeError(
            f"{n}: give a count from 0 to {_MAX_COUNT}, or -1 / unlimited for all"
        )
    return n


_MAX_COUNT = 2**31 - 1


def _duration_arg(text: str) -> str:
    """A --keep-within* duration as restic writes it: 30d, 1y6m, 2d12h."""
    if not re.fullmatch(r"(\d{1,9}[ymdh])+", text.strip()):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: numbers each followed by y (years), m (months), "
            "d (days) or h (hours), e.g. 30d, 1y6m, 2d12h"
        )
    return text.strip()


def _tag_set_arg(text: str) -> str:
    """A --keep-tag entry: KEY=VALUE, or several joined by commas."""
    for part in text.split(","):
        key, sep, _ = part.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(
                f"{text!r}: {part!r} is not KEY=VALUE (several are joined by commas)"
            )
    return text


def cmd_prune(args: argparse.Namespace) -> int:
    rules = [
        k
        for k, v in vars(args).items()
        if k.startswith("keep_")
        and v not in (None, 0, [], "")
        and not (isinstance(v, str) and re.fullmatch(r"(0+[ymdh])+", v))
    ]
    if not rules:
        raise UsageError(
            "no retention rule given: prune would remove every snapshot; give --keep-last, "
            "--keep-hourly/--keep-daily/--keep-weekly/--keep-monthly/--keep-yearly, "
            "--keep-within[-hourly|-daily|-weekly|-monthly|-yearly] or --keep-tag"
        )
    with _open(args) as repo, _Bars(args, repo, "prune:progress"):
        snaps = {} if getattr(args, "json", False) else _by_id(repo)
        r = repo.prune(
            keep_last=args.keep_last,
            keep_hourly=args.keep_hourly,
            keep_daily=args.keep_daily,
            keep_weekly=args.keep_weekly,
            keep_monthly=args.keep_monthly,
            keep_yearly=args.keep_yearly,
            keep_within=args.keep_within,
            keep_within_hourly=args.keep_within_hourly,
            keep_within_daily=args.keep_within_daily,
            keep_within_weekly=args.keep_within_weekly,
            keep_within_monthly=args.keep_within_monthly,
            keep_within_yearly=args.keep_within_yearly,
            keep_tag=args.keep_tag,
            group_by=args.group_by,
            host=args.host,
            tags=_parse_tags(args.tag),
            dry_run=args.dry_run,
        )
    _emit(args, r.to_dict(), _collect_text(r, snaps))
    return 0


def _by_id(repo: Repository) -> dict[str, Snapshot]:
    """Every snapshot by id, for the text report (read before snapshots go)."""
    return {s.id: s for s in repo.list_snapshots()}


def cmd_forget(args: argparse.Namespace) -> int:
    with _open(args) as repo, _Bars(args, repo, "prune:progress"):
        snaps = {} if getattr(args, "json", False) else _by_id(repo)
        r = repo.forget(args.ids, dry_run=args.dry_run)
    _emit(args, r.to_dict(), _collect_text(r, snaps))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    with _open(args) as repo:
        st = repo.stats()
        location = repo.location
    doc = {"repository": location, **st.to_dict()}
    width = max(len(k) for k, _ in st._rows())
    text = "\n".join([f"repository {location}"] + [f"  {k:<{width}}  {v}" for k, v in st._rows()])
    _emit(args, doc, text)
    return 0


def cmd_unlock(args: argparse.Namespace) -> int:
    with _open(args) as repo:
        result = repo.unlock(force=args.force)
    lines = [f"removed {len(result)} lock(s)"]
    lines += [f"  {k}: {result.reasons.get(k, '')}" for k in result]
    if result.kept:
        lines.append(f"left {len(result.kept)} lock(s) in place (not stale yet)")
        lines += [f"  {k}: {why}" for k, why in result.kept]
        lines.append(
            "  a live lock goes stale by itself once its holder stops renewing it; if you are "
            "sure its process is not running, `containerarchive unlock --force` removes it"
        )
    _emit(args, result.to_dict(), "\n".join(lines))
    return 0


def _new_passphrase(args: argparse.Namespace) -> str:
    if args.new_password_file:
        return _read_password_file(args.new_password_file, "new password file")
    env = os.environ.get("CONTAINERARCHIVE_NEW_PASSWORD")
    if env is not None:
        return env
    if sys.stdin.isatty() and sys.stderr.isatty():
        first = getpass.getpass("new passphrase: ")
        if getpass.getpass("repeat new passphrase: ") != first:
            raise UsageError("the passphrases differ")
        return first
    raise errors.WrongPassphraseError(
        "no new passphrase: give --new-password-file or CONTAINERARCHIVE_NEW_PASSWORD"
    )


@contextlib.contextmanager
def _empty_passphrase_words(init: bool = False) -> Iterator[None]:
    """An empty new passphrase is a passphrase problem (exit 12), said in the CLI's words."""
    try:
        yield
    except errors.InvalidArgumentError as e:
        if "passphrase is empty" not in str(e):
            raise
        hint = "; or create an unencrypted repository with --no-encryption" if init else ""
        raise errors.WrongPassphraseError(
            str(e).removeprefix("invalid argument: ").split("; choose")[0]
            + "; choose a passphrase"
            + hint
        ) from None


def cmd_key(args: argparse.Namespace) -> int:
    with _open(args) as repo, _empty_passphrase_words():
        if args.key_command == "list":
            keys = repo.list_keys()
            _emit(
                args,
                [vars(k) for k in keys],
                "\n".join(
                    f"{'*' if k.current else ' '} {k.id[:12]}  {k.created_at}  {k.comment}  "
                    f"(argon2id {k.kdf_memory_kib // 1024} MiB, {k.kdf_iterations} passes)"
                    for k in keys
                ),
            )
        elif args.key_command == "add":
            key_id = repo.add_key(_new_passphrase(args))
            _emit(args, {"added": key_id}, f"added key {key_id}")
        elif args.key_command == "passwd":
            key_id = repo.change_passphrase(_new_passphrase(args))
            _emit(
                args, {"current": key_id}, f"passphrase changed: key {key_id} replaces the old one"
            )
        else:
            try:
                repo.remove_key(args.id)
            except errors.InvalidArgumentError as e:
                if "opened with" not in str(e):
                    raise
                raise errors.InvalidArgumentError(f"{e} with `containerarchive key passwd`") from e
            _emit(args, {"removed": args.id}, f"removed key {args.id}")
    return 0


# -- parser --------------------------------------------------------------------------------

_EXIT_HELP = "exit codes: " + "; ".join(f"{code} {what}" for code, what in EXIT_TABLE)

_EXAMPLES = {
    "init": """
        containerarchive init -r /backups/repo                 # asks for a passphrase
        CONTAINERARCHIVE_PASSWORD_FILE=/etc/ca.pw containerarchive init -r /backups/repo
        containerarchive init -r /tmp/scratch --no-encryption --compression none""",
    "ingest": """
        pg_dump -Fc mydb | containerarchive ingest - --name db.dump --tag db=mydb
        containerarchive ingest --exec "pg_dump -Fc mydb" --name db.dump --tag db=mydb
        containerarchive ingest --exec "pg_dump -Fc a" --name a.dump \\
                                --exec "pg_dump -Fc b" --name b.dump      # one snapshot
        containerarchive ingest volume.tar config.tgz --type volume --json""",
    "restore": """
        containerarchive restore latest --tag db=mydb | pg_restore -d mydb
        containerarchive restore 3f9a2c1b -o /restore/          # every item into a directory
        containerarchive restore latest --item db.dump -o db.dump --json""",
    "restore-plan": """
        containerarchive restore-plan latest --item db.dump --json""",
    "snapshots": """
        containerarchive snapshots --tag db=mydb --after 2026-11-01
        containerarchive snapshots --json | jq '.[].id'""",
    "show": """
        containerarchive show latest
        containerarchive show 3f9a2c1b --json""",
    "verify": """
        containerarchive verify                   # standard: metadata and pack checksums
        containerarchive verify --level full      # every chunk decoded, every parity shard
        containerarchive verify --level quick --json""",
    "repair": """
        containerarchive repair && containerarchive verify --level full""",
    "reindex": """
        containerarchive reindex""",
    "prune": """
        containerarchive prune --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --dry-run
        containerarchive prune --keep-within 30d --keep-monthly unlimited
        containerarchive prune --keep-last 3 --keep-tag release=v1,db=mydb --host db1
        containerarchive prune --keep-daily 7 --group-by host,tags --json""",
    "forget": """
        containerarchive forget 3f9a2c1b 77aa01de --dry-run
        containerarchive forget 3f9a2c1b""",
    "key": """
        containerarchive key list
        containerarchive key add --new-password-file second.pw
        containerarchive key passwd
        containerarchive key remove 1a2b3c""",
    "unlock": """
        containerarchive unlock            # remove locks of processes that are gone
        containerarchive unlock --force    # every lock: only when no other process runs""",
    "stats": """
        containerarchive stats
        containerarchive stats --json | jq .dedup_ratio""",
}


_KEY_EXAMPLES = {
    "list": "containerarchive key list\ncontainerarchive key list --json",
    "add": "containerarchive key add                           # prompts for the new passphrase\n"
    "containerarchive key add --new-password-file ops.pw",
    "passwd": "containerarchive key passwd\n"
    "CONTAINERARCHIVE_NEW_PASSWORD=… containerarchive key passwd",
    "remove": "containerarchive key remove 1a2b3c      # an id prefix from `key list`",
}


def _add(sub: Any, name: str, common: argparse.ArgumentParser, help: str, **kw: Any) -> Any:
    examples = textwrap.indent(textwrap.dedent(_EXAMPLES[name]).strip("\n"), "  ")
    epilog = f"examples:\n{examples}\n\n{textwrap.fill(_EXIT_HELP, 88)}"
    return sub.add_parser(
        name,
        parents=[common],
        help=help,
        description=kw.pop("description", help[0].upper() + help[1:] + "."),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kw,
    )


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-r",
        "--repo",
        default=argparse.SUPPRESS,
        help="repository directory or s3://bucket/prefix (default: $CONTAINERARCHIVE_REPOSITORY)",
    )
    common.add_argument(
        "-p",
        "--password-file",
        default=argparse.SUPPRESS,
        help="file holding the passphrase (default: $CONTAINERARCHIVE_PASSWORD, "
        "$CONTAINERARCHIVE_PASSWORD_FILE, or a prompt on a terminal)",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print one JSON document on standard output (errors too)",
    )
    common.add_argument(
        "--retry-lock",
        metavar="DURATION",
        default=argparse.SUPPRESS,
        help="if the repository is locked, wait up to DURATION (30s, 5m, 1h) for the lock to "
        "go away instead of failing at once",
    )
    common.add_argument(
        "--retry-storage",
        metavar="DURATION",
        default=argparse.SUPPRESS,
        help="keep retrying object storage that throttles (503 SlowDown, 429), fails (5xx), "
        "times out or drops connections for up to DURATION (default 3m, or "
        "$CONTAINERARCHIVE_RETRY_STORAGE); waits are reported on stderr",
    )
    common.add_argument(
        "--no-progress",
        action="store_true",
        default=argparse.SUPPRESS,
        help="no progress bar (there is none anyway when standard error is not a terminal)",
    )

    parser = _Parser(
        prog="containerarchive",
        description="Encrypted, deduplicated backups of database dumps, volumes and configs.",
        parents=[common],
        epilog=_EXIT_HELP,
    )
    parser.add_argument("--version", action="version", version=f"containerarchive {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = _add(sub, "init", common, "create a repository")
    p.add_argument(
        "--compression",
        choices=["zstd", "gzip", "none"],
        default="zstd",
        help="how chunks are compressed: zstd (default, level 3), gzip (DEFLATE, level 1) or none",
    )
    p.add_argument("--no-encryption", action="store_true", help="create an unencrypted repository")
    p.set_defaults(func=cmd_init)

    p = _add(
        sub,
        "ingest",
        common,
        "back up files, stdin or commands' output as one snapshot",
        description="Back up files, standard input (-) or the standard output of commands "
        "(--exec) as one snapshot with one item each. A command that exits non-zero or is "
        "killed commits nothing (exit code 4) and its standard error is shown.",
    )
    p.add_argument("sources", nargs="*", metavar="SOURCE", help="file to back up, or - for stdin")
    p.add_argument(
        "--exec",
        action="append",
        metavar="COMMAND",
        help="run COMMAND (split like a shell would, no shell run) and back up its standard "
        "output; repeat for several items",
    )
    p.add_argument(
        "--name",
        action="append",
        help="item name; repeat to name several items, sources first then --exec commands "
        "(default: the file name, 'stdin', or the program name + .out)",
    )
    p.add_argument("--type", default="raw", help="item type, e.g. database-dump (default: raw)")
    p.add_argument("--tag", action="append", metavar="KEY=VALUE", help="tag the snapshot")
    p.add_argument("--time", help="creation time, ISO 8601 (default: now)")
    p.add_argument(
        "--host",
        metavar="NAME",
        help="host name the snapshot records (default: this machine's hostname); prune "
        "applies its policy per host",
    )
    p.add_argument(
        "--allow-empty",
        action="store_true",
        help="store an item even if its stream (stdin, pipe, FIFO, --exec output) delivers no "
        "data (by default that fails with exit code 5: the producer most likely failed)",
    )
    p.set_defaults(func=cmd_ingest)

    p = _add(sub, "restore", common, "restore a snapshot or one item")
    p.add_argument("snapshot", metavar="ID", help="snapshot id, unique prefix, or latest")
    p.add_argument(
        "-o",
        "--output",
        help="file to write (a snapshot of several items as a tar stream); a directory (an "
        "existing one, or a path ending in /, created) gets the item(s) as files under their "
        "own names; - or nothing: standard output (refused on a terminal unless -o -)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output file (by default that is refused, exit code 6)",
    )
    p.add_argument("--item", help="restore only this item")
    p.add_argument("--tag", action="append", metavar="KEY=VALUE", help="with latest: filter by tag")
    p.add_argument("--host", metavar="NAME", help="with latest: only snapshots made by this host")
    p.set_defaults(func=cmd_restore)

    p = _add(sub, "restore-plan", common, "list exactly the files restoring a snapshot needs")
    p.add_argument("snapshot", metavar="ID", help="snapshot id, unique prefix, or latest")
    p.add_argument("--item", help="only this item")
    p.add_argument("--tag", action="append", metavar="KEY=VALUE", help="with latest: filter by tag")
    p.add_argument("--host", metavar="NAME", help="with latest: only snapshots made by this host")
    p.set_defaults(func=cmd_restore_plan)

    p = _add(sub, "snapshots", common, "list snapshots")
    p.add_argument("--tag", action="append", metavar="KEY=VALUE", help="only with this tag")
    p.add_argument("--after", help="only created at or after this ISO 8601 time")
    p.add_argument("--before", help="only created at or before this ISO 8601 time")
    p.add_argument("--host", metavar="NAME", help="only snapshots made by this host")
    p.set_defaults(func=cmd_snapshots)

    p = _add(sub, "show", common, "show one snapshot")
    p.add_argument("snapshot", metavar="ID", help="snapshot id, unique prefix, or latest")
    p.add_argument("--tag", action="append", metavar="KEY=VALUE", help="with latest: filter by tag")
    p.add_argument("--host", metavar="NAME", help="with latest: only snapshots made by this host")
    p.set_defaults(func=cmd_show)

    p = _add(
        sub,
        "verify",
        common,
        "check the repository for damage",
        description="Check the repository. quick: metadata and presence; standard: plus pack "
        "checksums and headers; full: plus every chunk decoded and re-hashed and every parity "
        "shard recomputed. Exit code 1 when anything is wrong.",
    )
    p.add_argument(
        "--level",
        choices=["quick", "standard", "full"],
        default="standard",
        help="quick: metadata and presence; standard (default): plus pack checksums; full: "
        "plus every chunk decoded and every parity shard recomputed",
    )
    p.set_defaults(func=cmd_verify)

    p = _add(sub, "repair", common, "rebuild lost or damaged packs from parity, rebuild the index")
    p.set_defaults(func=cmd_repair)

    p = _add(sub, "reindex", common, "rebuild the index from the packs")
    p.set_defaults(func=cmd_reindex)

    p = _add(
        sub,
        "prune",
        common,
        "forget snapshots by retention policy, free space",
        description="Apply a retention policy (restic's forget rules) to each group of "
        "snapshots on its own (default: same host and same item names), remove the snapshots "
        "it does not keep and free the space only they used. Counts take N, or -1 / unlimited "
        "for all; durations are restic's: 30d, 1y6m, 2d12h (y years, m months, d days, h "
        "hours), measured back from the group's newest snapshot. A snapshot kept by any rule "
        "is kept; a policy that would keep none of a group's snapshots is refused.",
    )
    for rule, what in (
        ("last", "the N newest snapshots"),
        ("hourly", "the newest snapshot of each of the last N hours with snapshots"),
        ("daily", "… of each of the last N days"),
        ("weekly", "… of each of the last N ISO weeks"),
        ("monthly", "… of each of the last N months"),
        ("yearly", "… of each of the last N years"),
    ):
        p.add_argument(
            f"--keep-{rule}", type=_count_arg, metavar="N", dest=f"keep_{rule}", help=f"keep {what}"
        )
    p.add_argument(
        "--keep-within",
        type=_duration_arg,
        metavar="DURATION",
        help="keep every snapshot newer than DURATION before the group's newest",
    )
    for rule, unit in (
        ("hourly", "hour"),
        ("daily", "day"),
        ("weekly", "ISO week"),
        ("monthly", "month"),
        ("yearly", "year"),
    ):
        p.add_argument(
            f"--keep-within-{rule}",
            type=_duration_arg,
            metavar="DURATION",
            dest=f"keep_within_{rule}",
            help=f"keep the newest snapshot of each {unit} within DURATION of the newest",
        )
    p.add_argument(
        "--keep-tag",
        type=_tag_set_arg,
        action="append",
        metavar="K=V[,K=V…]",
        help="keep every snapshot with all these tags; repeat for alternatives",
    )
    p.add_argument(
        "--group-by",
        default="host,items",
        metavar="FIELDS",
        help="group snapshots by any of host, items, tags (comma-separated; '' for one pool; "
        "default host,items)",
    )
    p.add_argument("--host", metavar="NAME", help="apply the policy only to this host's snapshots")
    p.add_argument(
        "--tag",
        action="append",
        metavar="KEY=VALUE",
        help="apply the policy only to snapshots with this tag",
    )
    p.add_argument("--dry-run", action="store_true", help="show what would happen, change nothing")
    p.set_defaults(func=cmd_prune)

    p = _add(
        sub,
        "forget",
        common,
        "remove chosen snapshots, free the space only they used",
        description="Remove exactly the snapshots named (ids or unique prefixes; latest is "
        "refused) and free the space only they used, in prune's crash-safe order.",
    )
    p.add_argument("ids", nargs="+", metavar="ID", help="snapshot id or unique prefix")
    p.add_argument("--dry-run", action="store_true", help="show what would happen, change nothing")
    p.set_defaults(func=cmd_forget)

    p = _add(sub, "key", common, "manage the passphrases (key files)")
    keys = p.add_subparsers(dest="key_command", metavar="KEY_COMMAND", required=True)
    for name, text in (
        ("list", "list key files"),
        ("add", "add a passphrase"),
        ("passwd", "change the passphrase in use"),
        ("remove", "remove a key file"),
    ):
        kp = keys.add_parser(
            name,
            parents=[common],
            help=text,
            description=text[0].upper() + text[1:] + ".",
            epilog=f"examples:\n{textwrap.indent(_KEY_EXAMPLES[name], '  ')}\n\n"
            + textwrap.fill(_EXIT_HELP, 88),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if name in ("add", "passwd"):
            kp.add_argument(
                "--new-password-file",
                help="file holding the new passphrase "
                "(default: $CONTAINERARCHIVE_NEW_PASSWORD, or a prompt)",
            )
        if name == "remove":
            kp.add_argument("id", help="key id or unique prefix (see key list)")
        kp.set_defaults(func=cmd_key)

    p = _add(sub, "unlock", common, "remove stale locks")
    p.add_argument("--force", action="store_true", help="remove every lock, stale or not")
    p.set_defaults(func=cmd_unlock)

    p = _add(sub, "stats", common, "show repository totals: sizes, deduplication, compression")
    p.set_defaults(func=cmd_stats)
    return parser


#: Python argument names in library messages, and the CLI flags that mean the same.
_CLI_WORDS = {
    "pass overwrite=True": "pass --overwrite",
    "pass allow_empty=True": "pass --allow-empty",
    "retry_lock": "--retry-lock",
    "retry_storage": "--retry-storage",
}


def _fail(args: argparse.Namespace, error: BaseException, message: str, code: int) -> int:
    notes = getattr(error, "__notes__", None)
    if notes:
        message = "; ".join([message, *notes])
    for python, cli in _CLI_WORDS.items():
        message = message.replace(python, cli)
    message = message.removeprefix("invalid argument: ")
    if getattr(args, "json", False):
        doc = {"error": {"type": type(error).__name__, "message": message, "exit_code": code}}
        for attr in (
            "snapshot",
            "item",
            "source",
            "object",
            "lock",
            "argv",
            "exit_status",
            "stderr_tail",
        ):
            if hasattr(error, attr):
                doc["error"][attr] = getattr(error, attr)
        _write_json_error(doc)
    print(f"containerarchive {args.command}: {message}", file=sys.stderr)
    return code


def _write_json_error(doc: dict[str, Any]) -> None:
    """The --json error document on stdout; if its reader is gone, only the stderr line."""
    try:
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
        sys.stdout.flush()
    except (OSError, ValueError):  # the reader is gone, the disk is full, stdout is closed
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _interrupt(signum: int, frame: object) -> None:
    if not defer_signal(signum):
        raise errors.Interrupted(signum)


def _handle_signals() -> None:
    """SIGTERM (``docker stop``, a pod shutdown) and SIGHUP stop an operation like SIGINT:
    whatever it was doing is abandoned cleanly (its lock released, an ``--exec`` producer
    killed, nothing committed) within a second, and the exit code is 128 + the signal. The
    handlers also make the signals work when this process is PID 1 of a container, where the
    kernel drops signals that have no handler."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)


def main(argv: Sequence[str] | None = None) -> int:
    global _STDOUT_CLOSED
    if sys.stdout is None:  # started with standard output closed
        _STDOUT_CLOSED = True
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115
    parser = build_parser()
    args = parser.parse_args(argv)
    _handle_signals()
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # here, so that a reader gone early is handled below
        return code
    except UsageError as e:
        return _fail(args, e, str(e), EXIT_USAGE)
    except errors.ContainerArchiveError as e:
        if isinstance(e, OSError) and e.errno == errno.EPIPE:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return EXIT_BROKEN_PIPE
        code = next((c for cls, c in _EXIT_CODES if isinstance(e, cls)), EXIT_ERROR)
        return _fail(args, e, str(e), code)
    except FileNotFoundError as e:
        return _fail(args, e, f"{e.filename}: {e.strerror}", EXIT_ERROR)
    except OSError as e:
        if e.errno != errno.EPIPE:
            return _fail(args, e, str(e), EXIT_ERROR)
        # The reader went away (`restore … | head -c 100`, `snapshots | head`): not a failure
        # to report; exit quietly as a process killed by SIGPIPE would (the shell's 141).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except UnicodeError as e:
        e.__notes__ = []  # the native layer's internal field name
        return _fail(
            args,
            e,
            "a value given on the command line is not valid UTF-8: names, ids, tags, paths of "
            "commands and other values must be UTF-8 text (an item from a file whose name is "
            "not UTF-8 needs --name)",
            EXIT_USAGE,
        )
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        what = {
            "ingest": "nothing was committed",
            "restore": "the output is incomplete",
            "prune": "nothing more is deleted; the repository stays consistent",
        }.get(args.command, "stopped")
        saved = getattr(e, "snapshot", None)
        if saved:
            what = f"it came after snapshot {saved} was saved"
        message = f"interrupted by {signal.Signals(signum).name}: {what}"
        return _fail(args, e, message, 128 + int(signum))
    except Exception as e:  # noqa: BLE001 - one line, never a traceback
        return _fail(
            args,
            e,
            f"unexpected error ({type(e).__name__}: {e}); this is a bug, please report it",
            EXIT_ERROR,
        )
