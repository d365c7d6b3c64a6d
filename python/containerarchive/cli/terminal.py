"""What the CLI says and asks on the terminal: results on standard output (:func:`_emit`,
text or one JSON document), the JSON error document, progress bars on standard error
(:class:`_Bars`), passphrases read from a file, the environment or a prompt
(:func:`_read_passphrase`), and the text renderings of snapshots and prune results.

Must not open a repository or decide an exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import getpass
import json
import os
import shlex
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, overload

from .. import errors
from .._format import human_size
from ..events import Progress, ProgressEvent, Subscription
from ..types import PruneResult, Snapshot
from .exits import UsageError

if TYPE_CHECKING:
    from ..repository import Repository


def _write_json_error(doc: dict[str, Any]) -> None:
    """The --json error document on stdout; if its reader is gone, only the stderr line."""
    try:
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
        sys.stdout.flush()
    except (OSError, ValueError):  # the reader is gone, the disk is full, stdout is closed
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


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


@dataclass(frozen=True)
class _PassphraseSource:
    """Where a passphrase comes from, in order: the file option ``option`` (an attribute of
    the parsed arguments), the variable ``env`` (used even when empty), the file the variable
    ``env_file`` names (ignored when empty), a prompt on a terminal."""

    option: str
    file_what: str
    env: str
    env_file: str | None
    prompt: str
    repeat: str
    missing: str


#: The passphrase of the repository to open or create.
_CURRENT = _PassphraseSource(
    option="password_file",
    file_what="password file",
    env="CONTAINERARCHIVE_PASSWORD",
    env_file="CONTAINERARCHIVE_PASSWORD_FILE",
    prompt="repository passphrase: ",
    repeat="repeat passphrase: ",
    missing="no passphrase: give --password-file or CONTAINERARCHIVE_PASSWORD, "
    "or --no-encryption for an unencrypted repository",
)

#: The new passphrase of ``key add`` and ``key passwd``.
_NEW = _PassphraseSource(
    option="new_password_file",
    file_what="new password file",
    env="CONTAINERARCHIVE_NEW_PASSWORD",
    env_file=None,
    prompt="new passphrase: ",
    repeat="repeat new passphrase: ",
    missing="no new passphrase: give --new-password-file or CONTAINERARCHIVE_NEW_PASSWORD",
)


@overload
def _read_passphrase(
    args: argparse.Namespace, source: _PassphraseSource, *, creating: Literal[True]
) -> str: ...
@overload
def _read_passphrase(
    args: argparse.Namespace, source: _PassphraseSource, *, creating: bool
) -> str | None: ...
def _read_passphrase(
    args: argparse.Namespace, source: _PassphraseSource, *, creating: bool
) -> str | None:
    """The passphrase from ``source``. ``creating`` (a new repository or a new key): a prompt
    asks twice, and no passphrase at all raises WrongPassphraseError (exit 12); otherwise no
    passphrase is None."""
    path = getattr(args, source.option, None)
    if path:
        return _read_password_file(path, source.file_what)
    env = os.environ.get(source.env)
    if env is not None:
        return env
    env_file = os.environ.get(source.env_file) if source.env_file else None
    if env_file:
        return _read_password_file(env_file, source.file_what)
    if sys.stdin.isatty() and sys.stderr.isatty():
        first = getpass.getpass(source.prompt)
        if creating and getpass.getpass(source.repeat) != first:
            raise UsageError("the passphrases differ")
        return first
    if creating:
        raise errors.WrongPassphraseError(source.missing)
    return None


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


#: Whether this process started with no standard output (`>&-`): results are then lost, and
#: a restore to standard output is refused.
_STDOUT_CLOSED = False


def _stdout_unusable(why: str) -> errors.UnusableFileError:
    e = errors.UnusableFileError(f"standard output {why}")
    e.path = "-"
    return e


def _snapshot_text(s: Snapshot) -> str:
    lines = [
        f"snapshot {s.id}",
        f"  created   {s.created_at.isoformat()}",
        f"  host      {s.host or '(unknown: made before hosts were recorded)'}",
        f"  tags      {', '.join(f'{k}={v}' for k, v in sorted(s.tags.items())) or '-'}",
        f"  size      {human_size(s.original_size)} in {s.chunk_count} chunks",
        f"  stored    {human_size(s.stored_size)} new ({s.new_chunks} new chunks, "
        f"{s.reused_chunks} reused)",
        *([f"  delta     {s.delta_text}"] if s.delta_chunks else []),
        "  items",
    ]
    for i in s.items:
        lines.append(f"    {i.name}  ({i.type}, {human_size(i.size)}, {i.chunk_count} chunks)")
        if i.command:
            lines.append(f"      from  {shlex.join(i.command)}  (exit status {i.exit_status})")
    return "\n".join(lines)


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


def _collect_text(r: PruneResult, snaps: dict[str, Snapshot]) -> str:
    """restic-like: per group, the snapshots kept (with why) and removed; then the packs."""

    def row(sid: str, why: str = "") -> str:
        s = snaps.get(sid)
        if s is None and not why:
            why = "(its manifest cannot be read)"
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
