"""The CLI's commands: each ``cmd_*`` function takes the parsed arguments, runs one operation
through the :class:`~containerarchive.Repository` API and prints its result; it returns the
exit code of a result that is not ok, and raises for an error (``main`` reports it). Also the
reading of the options they share: the repository, its passphrase, tags, times, durations.

Must not build the parser, install signal handlers or turn errors into exit codes.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re
import shlex
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .. import errors, metrics
from .._args import _iso, _where, parse_duration
from .._fields import key_before
from .._format import human_size
from ..repository import Repository
from ..types import PlanFile, PruneResult, Snapshot, VerifyResult
from . import terminal
from .exits import EXIT_ARCHIVED, EXIT_ERROR, UsageError
from .terminal import (
    _CURRENT,
    _NEW,
    _Bars,
    _collect_text,
    _emit,
    _foreign_lines,
    _read_passphrase,
    _snapshot_text,
    _stdout_unusable,
)


def _parse_tags(pairs: Sequence[str] | None) -> dict[str, str]:
    tags = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--tag {pair!r}: expected KEY=VALUE")
        tags[key] = value
    return tags


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
        passphrase = _read_passphrase(args, _CURRENT, creating=False)
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


def _time_flag(value: str | None, flag: str) -> str | None:
    """A time given on the command line, checked here so that an error names the flag."""
    if value is None:
        return None
    try:
        return _iso(value, flag)
    except errors.InvalidArgumentError as e:
        raise UsageError(str(e)) from None


def _resolve(repo: Repository, ref: str, args: argparse.Namespace) -> Snapshot:
    """The snapshot ``ref`` names; with ``latest``, the newest with ``--tag``/``--host``."""
    return repo.get_snapshot(
        ref, tags=_parse_tags(getattr(args, "tag", None)), host=getattr(args, "host", None)
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


def _by_id(repo: Repository) -> dict[str, Snapshot]:
    """Every readable snapshot by id, for the text report (read before snapshots go; the
    operation itself reports one it cannot read)."""
    return {s.id: s for s in repo.scan_snapshots().snapshots}


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
        passphrase = _read_passphrase(args, _CURRENT, creating=True)
    with (
        _empty_passphrase_words(init=True),
        Repository.init(
            path,
            passphrase,
            compression=args.compression,
            retry_storage=_duration(args, "retry_storage"),
            delta=args.delta,
        ) as repo,
    ):
        cfg = repo.config
    _emit(
        args,
        {"repository": path, "config": cfg},
        f"created {'encrypted' if passphrase is not None else 'UNENCRYPTED'} repository at "
        f"{path} (compression {cfg['compression']['algorithm']}, "
        f"delta {'on' if args.delta else 'off'})",
    )
    return 0


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
            + (f"\n  {snap.delta_text}" if snap.delta_chunks else "")
        )
    _emit(args, snap.to_dict(), f"snapshot {snap.id} saved\n{summary}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    to_stdout = args.output in (None, "-")
    if to_stdout and getattr(args, "json", False):
        raise UsageError("--json needs -o FILE: standard output carries the restored data")
    if to_stdout and terminal._STDOUT_CLOSED:
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
    doc = key_before(plan.to_dict(), "damaged", before="complete")

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
        scan = repo.scan_snapshots(
            tags=_parse_tags(args.tag),
            after=_time_flag(args.after, "--after"),
            before=_time_flag(args.before, "--before"),
            host=args.host,
        )
    snaps = scan.snapshots
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
    # Damage hides nothing else: the readable snapshots are listed (the JSON array keeps its
    # shape), each unreadable one is named on stderr, and the exit code says not ok.
    for u in scan.unreadable:
        print(
            f"containerarchive snapshots: snapshot {u.id} cannot be read, not listed: {u.reason}",
            file=sys.stderr,
        )
    if scan.unreadable:
        print(
            f"containerarchive snapshots: {len(scan.unreadable)} snapshot(s) cannot be read; "
            "`containerarchive verify` checks every file, `containerarchive repair` restores "
            "what it can",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with _open(args) as repo:
        snap = _resolve(repo, args.snapshot, args)
    _emit(args, snap.to_dict(), _snapshot_text(snap))
    return 0


def _location(args: argparse.Namespace) -> str:
    """The repository's location as :attr:`Repository.location` spells it (the metrics'
    ``repository`` label), also when it cannot be opened."""
    where = _where(_repo_path(args))
    return str(where)


def cmd_verify(args: argparse.Namespace) -> int:
    labels = {"repository": _location(args), "level": args.level}
    with metrics.record("verify", args.metrics, labels) as m:
        result = _verify(args)
        if m is not None:
            m.verified(result)
    return 0 if result.ok else EXIT_ERROR


def _verify(args: argparse.Namespace) -> VerifyResult:
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
        key_before(result.to_dict(), "level", before="errors"),
        f"verify ({args.level}): {'ok' if result.ok else f'{len(result.errors)} errors'}; "
        f"{st.snapshots_checked} snapshots, {st.packs_checked} packs, {st.chunks_checked} "
        f"chunks, {st.groups_checked} parity groups checked, {human_size(st.bytes_read)} read"
        + (
            f"; {st.unindexed_packs} unindexed packs (in no index file: if a snapshot needs "
            "them, repair indexes them again; if not, prune removes them)"
            if st.unindexed_packs
            else ""
        )
        + (
            f"; {st.missing_copies} metadata files without their copy (an interrupted "
            "writer, or a deleted copy: repair writes them)"
            if st.missing_copies
            else ""
        ),
    )
    return result


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
    lines += [f"restored {k} from its copy" for k in r.metadata_restored]
    if r.copies_added:
        lines.append(f"{r.copies_added} metadata copies written (copies/)")
    lines += _foreign_lines(r.foreign_files)
    for u in r.unrecoverable:
        lines.append(f"UNRECOVERABLE pack {u.pack}: {u.reason}")
        lines += [f"  affects snapshot {s}" for s in u.snapshots]
    for s in r.lost_snapshots:
        lines.append(f"LOST snapshot {s.snapshot}: {s.reason}")
    for k in r.lost_key_files:
        lines.append(
            f"LOST key file {k}: it and its copy are damaged (its passphrase no longer opens)"
        )
    doc = key_before({"ok": r.ok, **r.to_dict()}, "groups_written", before="unrecoverable")
    _emit(args, doc, "\n".join(lines))
    return 0 if r.ok else EXIT_ERROR


def cmd_reindex(args: argparse.Namespace) -> int:
    with _open(args) as repo:
        r = repo.reindex()
    _emit(
        args,
        r.to_dict(),
        f"indexed {r.packs_indexed} packs into {r.index_files_written} index files "
        f"({len(r.idx_rebuilt)} .idx rebuilt from packs, {len(r.unreadable_packs)} unreadable)",
    )
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    with metrics.record("prune", args.metrics, {"repository": _location(args)}) as m:
        r, snaps = _prune(args)
        if m is not None:
            m.pruned(r)
    _emit(args, r.to_dict(), _collect_text(r, snaps))
    return 0


def _prune(args: argparse.Namespace) -> tuple[PruneResult, dict[str, Snapshot]]:
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
    return r, snaps


def cmd_forget(args: argparse.Namespace) -> int:
    with _open(args) as repo, _Bars(args, repo, "prune:progress"):
        snaps = {} if getattr(args, "json", False) else _by_id(repo)
        r = repo.forget(args.ids, dry_run=args.dry_run)
    _emit(args, r.to_dict(), _collect_text(r, snaps))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    with _open(args) as repo:
        st = repo.write_metrics(args.prometheus) if args.prometheus else repo.stats()
        location = repo.location
    doc = {"repository": location, **st.to_dict()}
    width = max(len(k) for k, _ in st._rows())
    text = "\n".join([f"repository {location}"] + [f"  {k:<{width}}  {v}" for k, v in st._rows()])
    _emit(args, doc, text)
    # Totals that leave snapshots out are not ok: each is named, as `snapshots` does.
    for u in st.unreadable_snapshots:
        print(
            f"containerarchive stats: snapshot {u.id} cannot be read, not counted: {u.reason}",
            file=sys.stderr,
        )
    return EXIT_ERROR if st.unreadable_snapshots else 0


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


def cmd_key(args: argparse.Namespace) -> int:
    with _open(args) as repo, _empty_passphrase_words():
        if args.key_command == "list":
            keys = repo.list_keys()
            _emit(
                args,
                [k.to_dict() for k in keys],
                "\n".join(
                    f"{'*' if k.current else ' '} {k.id[:12]}  {k.created_at}  {k.comment}  "
                    f"(argon2id {k.kdf_memory_kib // 1024} MiB, {k.kdf_iterations} passes)"
                    for k in keys
                ),
            )
        elif args.key_command == "add":
            key_id = repo.add_key(_read_passphrase(args, _NEW, creating=True))
            _emit(args, {"added": key_id}, f"added key {key_id}")
        elif args.key_command == "passwd":
            key_id = repo.change_passphrase(_read_passphrase(args, _NEW, creating=True))
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
