"""The ``containerarchive`` command line.

Exit codes: 0 success; 1 error (corruption, storage, anything else); 2 usage error;
3 snapshot or item not found; 10 no repository; 11 locked; 12 wrong or missing passphrase.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import errors
from .repository import Repository
from .types import Snapshot

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_NO_REPOSITORY = 10
EXIT_LOCKED = 11
EXIT_PASSPHRASE = 12

_EXIT_CODES: list[tuple[type[BaseException], int]] = [
    (errors.RepositoryNotFoundError, EXIT_NO_REPOSITORY),
    (errors.LockedError, EXIT_LOCKED),
    (errors.WrongPassphraseError, EXIT_PASSPHRASE),
    (errors.SnapshotNotFoundError, EXIT_NOT_FOUND),
    (errors.AmbiguousSnapshotIdError, EXIT_NOT_FOUND),
    (errors.ItemNotFoundError, EXIT_NOT_FOUND),
    (errors.InvalidArgumentError, EXIT_USAGE),
]


class UsageError(Exception):
    """A problem with how the command was called."""


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _parse_tags(pairs: Sequence[str] | None) -> dict[str, str]:
    tags = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--tag {pair!r}: expected KEY=VALUE")
        tags[key] = value
    return tags


def _passphrase(args: argparse.Namespace, *, creating: bool) -> str | None:
    if getattr(args, "password_file", None):
        try:
            text = Path(args.password_file).read_text(encoding="utf-8")
        except OSError as e:
            raise UsageError(f"cannot read password file {args.password_file}: {e}") from e
        return text.rstrip("\r\n")
    env = os.environ.get("CONTAINERARCHIVE_PASSWORD")
    if env is not None:
        return env
    env_file = os.environ.get("CONTAINERARCHIVE_PASSWORD_FILE")
    if env_file:
        args.password_file = env_file
        return _passphrase(args, creating=creating)
    if creating and getattr(args, "no_encryption", False):
        return None
    if sys.stdin.isatty() and sys.stderr.isatty():
        first = getpass.getpass("repository passphrase: ")
        if creating and getpass.getpass("repeat passphrase: ") != first:
            raise UsageError("the passphrases differ")
        return first
    if creating:
        raise UsageError(
            "no passphrase: give --password-file or CONTAINERARCHIVE_PASSWORD, "
            "or --no-encryption for an unencrypted repository"
        )
    return None


def _repo_path(args: argparse.Namespace) -> str:
    path = getattr(args, "repo", None) or os.environ.get("CONTAINERARCHIVE_REPOSITORY")
    if not path:
        raise UsageError("no repository: give --repo or set CONTAINERARCHIVE_REPOSITORY")
    return str(path)


def _open(args: argparse.Namespace) -> Repository:
    path = _repo_path(args)
    try:
        return Repository.open(path, None)
    except errors.WrongPassphraseError:
        pass
    passphrase = _passphrase(args, creating=False)
    if passphrase is None:
        raise errors.WrongPassphraseError(
            f"the repository at {path} is encrypted: give --password-file or "
            "CONTAINERARCHIVE_PASSWORD"
        )
    return Repository.open(path, passphrase)


def _emit(args: argparse.Namespace, doc: Any, text: str) -> None:
    if getattr(args, "json", False):
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(text)


def _snapshot_text(s: Snapshot) -> str:
    lines = [
        f"snapshot {s.id}",
        f"  created   {s.created_at.isoformat()}",
        f"  tags      {', '.join(f'{k}={v}' for k, v in sorted(s.tags.items())) or '-'}",
        f"  size      {_size(s.original_size)} in {s.chunk_count} chunks",
        f"  stored    {_size(s.stored_size)} new ({s.new_chunks} new chunks, "
        f"{s.reused_chunks} reused)",
        "  items",
    ]
    lines += [f"    {i.name}  ({i.type}, {_size(i.size)}, {i.chunk_count} chunks)" for i in s.items]
    return "\n".join(lines)


# -- commands ------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    path = _repo_path(args)
    passphrase = _passphrase(args, creating=True)
    with Repository.init(path, passphrase, compression=args.compression) as repo:
        cfg = repo.config
    _emit(
        args,
        {"repository": path, "config": cfg},
        f"created {'encrypted' if passphrase is not None else 'UNENCRYPTED'} repository at "
        f"{path} (compression {cfg['compression']['algorithm']})",
    )
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    sources: list[str] = args.sources
    if args.name and len(sources) > 1:
        raise UsageError(
            "--name names a single source; several sources are named after their files"
        )
    items = []
    for src in sources:
        if src == "-":
            items.append(
                {"source": sys.stdin.buffer, "name": args.name or "stdin", "type": args.type}
            )
        else:
            items.append({"source": src, "name": args.name or Path(src).name, "type": args.type})
    with _open(args) as repo:
        snap = repo.ingest_multi(items, tags=_parse_tags(args.tag), time=args.time)
    ratio = (snap.reused_chunks / snap.chunk_count * 100) if snap.chunk_count else 100.0
    _emit(
        args,
        snap.to_dict(),
        f"snapshot {snap.id} saved\n"
        f"  {_size(snap.original_size)} in {snap.chunk_count} chunks: {snap.new_chunks} new, "
        f"{snap.reused_chunks} reused ({ratio:.1f}% deduplicated), "
        f"{_size(snap.stored_size)} added to the repository",
    )
    return 0


def _resolve(repo: Repository, ref: str, tags: dict[str, str]) -> Snapshot:
    if ref == "latest" and tags:
        found = repo.list_snapshots(tags=tags)
        if not found:
            raise errors.SnapshotNotFoundError(f"no snapshot has the tags {tags}")
        return found[-1]
    return repo.get_snapshot(ref)


def cmd_restore(args: argparse.Namespace) -> int:
    with _open(args) as repo:
        snap = _resolve(repo, args.snapshot, _parse_tags(args.tag))
        if args.output in (None, "-"):
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
            return 0
        target = repo.restore_to(snap.id, args.output, args.item)
    print(f"restored snapshot {snap.id} to {target}", file=sys.stderr)
    return 0


def cmd_restore_plan(args: argparse.Namespace) -> int:
    with _open(args) as repo:
        snap = _resolve(repo, args.snapshot, _parse_tags(args.tag))
        plan = repo.restore_plan(snap.id, args.item)
    doc = {
        "snapshot": plan.snapshot,
        "items": plan.items,
        "files": [vars(f) for f in plan.files],
        "total_bytes": plan.total_bytes,
        "missing": plan.missing,
        "complete": plan.complete,
    }
    lines = [f"{f.path}  {_size(f.size) if f.size is not None else '?'}" for f in plan.files]
    lines.append(f"{len(plan.files)} files, {_size(plan.total_bytes)}")
    _emit(args, doc, "\n".join(lines))
    return 0


def cmd_snapshots(args: argparse.Namespace) -> int:
    with _open(args) as repo:
        snaps = repo.list_snapshots(
            tags=_parse_tags(args.tag), after=args.after, before=args.before
        )
    rows = [
        f"{s.short_id}  {s.created_at.isoformat(timespec='seconds')}  "
        f"{_size(s.original_size):>10}  {_size(s.stored_size):>10}  "
        f"{','.join(i.name for i in s.items)}  "
        f"{' '.join(f'{k}={v}' for k, v in sorted(s.tags.items()))}"
        for s in snaps
    ]
    header = f"{'ID':8}  {'TIME':25}  {'SIZE':>10}  {'ADDED':>10}  ITEMS  TAGS"
    _emit(args, [s.to_dict() for s in snaps], "\n".join([header, *rows, f"{len(snaps)} snapshots"]))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with _open(args) as repo:
        snap = _resolve(repo, args.snapshot, {})
    _emit(args, snap.to_dict(), _snapshot_text(snap))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    with _open(args) as repo:
        printed = []

        def show(e: Any) -> None:
            if not getattr(args, "json", False):
                print(f"error: {e.kind}: {e.message}", file=sys.stderr)
                printed.append(e)

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
        f"chunks, {st.groups_checked} parity groups checked, {_size(st.bytes_read)} read"
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
    }
    _emit(args, doc, "\n".join(lines))
    return 0 if r.ok else EXIT_ERROR


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


def cmd_prune(args: argparse.Namespace) -> int:
    with _open(args) as repo:
        r = repo.prune(
            keep_last=args.keep_last,
            keep_hourly=args.keep_hourly,
            keep_daily=args.keep_daily,
            keep_weekly=args.keep_weekly,
            keep_monthly=args.keep_monthly,
            keep_yearly=args.keep_yearly,
            tags=_parse_tags(args.tag),
            dry_run=args.dry_run,
        )
    verb = "would remove" if r.dry_run else "removed"
    text = (
        f"keep {len(r.kept)} snapshots, {verb} {r.removed_snapshots}"
        + "".join(f"\n  {verb} {s}" for s in r.removed)
        + f"\n{verb} {r.removed_packs} packs ({r.rewritten_packs} rewritten into {r.new_packs}),"
        f" {'would free' if r.dry_run else 'freed'} {_size(max(r.freed_bytes, 0))}"
    )
    _emit(args, vars(r), text)
    return 0


def cmd_unlock(args: argparse.Namespace) -> int:
    with _open(args) as repo:
        removed = repo.unlock(force=args.force)
    _emit(
        args,
        {"removed": removed},
        f"removed {len(removed)} locks" + "".join(f"\n  {k}" for k in removed),
    )
    return 0


def _new_passphrase(args: argparse.Namespace) -> str:
    if args.new_password_file:
        try:
            return Path(args.new_password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as e:
            raise UsageError(f"cannot read {args.new_password_file}: {e}") from e
    env = os.environ.get("CONTAINERARCHIVE_NEW_PASSWORD")
    if env:
        return env
    if sys.stdin.isatty() and sys.stderr.isatty():
        first = getpass.getpass("new passphrase: ")
        if getpass.getpass("repeat new passphrase: ") != first:
            raise UsageError("the passphrases differ")
        return first
    raise UsageError("no new passphrase: give --new-password-file or CONTAINERARCHIVE_NEW_PASSWORD")


def cmd_key(args: argparse.Namespace) -> int:
    with _open(args) as repo:
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
            repo.remove_key(args.id)
            _emit(args, {"removed": args.id}, f"removed key {args.id}")
    return 0


# -- parser --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-r",
        "--repo",
        default=argparse.SUPPRESS,
        help="repository path (default: $CONTAINERARCHIVE_REPOSITORY)",
    )
    common.add_argument(
        "-p",
        "--password-file",
        default=argparse.SUPPRESS,
        help="file holding the passphrase (default: $CONTAINERARCHIVE_PASSWORD)",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print one JSON document",
    )

    parser = argparse.ArgumentParser(
        prog="containerarchive",
        description="Encrypted, deduplicated backups of database dumps, volumes and configs.",
        parents=[common],
        epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 snapshot/item not found, "
        "10 no repository, 11 locked, 12 wrong passphrase.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("init", parents=[common], help="create a repository")
    p.add_argument("--compression", choices=["zstd", "gzip", "none"], default="zstd")
    p.add_argument("--no-encryption", action="store_true", help="create an unencrypted repository")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser(
        "ingest",
        parents=[common],
        help="back up files or stdin as one snapshot",
        epilog="example: pg_dump mydb | containerarchive ingest - --name db.sql --tag db=mydb",
    )
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="file to back up, or - for stdin")
    p.add_argument("--name", help="item name (default: the file name, or 'stdin')")
    p.add_argument("--type", default="raw", help="item type, e.g. database-dump (default: raw)")
    p.add_argument("--tag", action="append", metavar="KEY=VALUE", help="tag the snapshot")
    p.add_argument("--time", help="creation time, ISO 8601 (default: now)")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser(
        "restore",
        parents=[common],
        help="restore a snapshot or one item",
        epilog="example: containerarchive restore latest --tag db=mydb | psql mydb",
    )
    p.add_argument("snapshot", metavar="ID", help="snapshot id, unique prefix, or latest")
    p.add_argument("-o", "--output", help="file (or directory for several items); default stdout")
    p.add_argument("--item", help="restore only this item")
    p.add_argument("--tag", action="append", metavar="KEY=VALUE", help="with latest: filter by tag")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser(
        "restore-plan",
        parents=[common],
        help="list exactly the files restoring a snapshot or item needs",
        epilog="example: containerarchive restore-plan latest --item db.sql --json",
    )
    p.add_argument("snapshot", metavar="ID", help="snapshot id, unique prefix, or latest")
    p.add_argument("--item", help="only this item")
    p.add_argument("--tag", action="append", metavar="KEY=VALUE", help="with latest: filter by tag")
    p.set_defaults(func=cmd_restore_plan)

    p = sub.add_parser("snapshots", parents=[common], help="list snapshots")
    p.add_argument("--tag", action="append", metavar="KEY=VALUE", help="only with this tag")
    p.add_argument("--after", help="only created at or after this ISO 8601 time")
    p.add_argument("--before", help="only created at or before this ISO 8601 time")
    p.set_defaults(func=cmd_snapshots)

    p = sub.add_parser("show", parents=[common], help="show one snapshot")
    p.add_argument("snapshot", metavar="ID", help="snapshot id, unique prefix, or latest")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser(
        "verify",
        parents=[common],
        help="check the repository for damage",
        epilog="quick: metadata and presence; standard: plus pack checksums; full: plus every "
        "chunk and parity shard. Exit code 1 when anything is wrong.",
    )
    p.add_argument("--level", choices=["quick", "standard", "full"], default="standard")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "repair",
        parents=[common],
        help="rebuild lost or damaged packs from parity, rebuild the index",
    )
    p.set_defaults(func=cmd_repair)

    p = sub.add_parser("reindex", parents=[common], help="rebuild the index from the packs")
    p.set_defaults(func=cmd_reindex)

    p = sub.add_parser(
        "prune",
        parents=[common],
        help="forget snapshots by retention policy, free space",
        epilog="example: containerarchive prune --keep-daily 7 --keep-weekly 4 --dry-run",
    )
    for rule in ("last", "hourly", "daily", "weekly", "monthly", "yearly"):
        p.add_argument(f"--keep-{rule}", type=int, metavar="N", dest=f"keep_{rule}")
    p.add_argument(
        "--tag",
        action="append",
        metavar="KEY=VALUE",
        help="apply the policy only to snapshots with this tag",
    )
    p.add_argument("--dry-run", action="store_true", help="show what would happen, change nothing")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("key", parents=[common], help="manage the passphrases (key files)")
    keys = p.add_subparsers(dest="key_command", metavar="KEY_COMMAND", required=True)
    for name, text in (
        ("list", "list key files"),
        ("add", "add a passphrase"),
        ("passwd", "change the passphrase in use"),
        ("remove", "remove a key file"),
    ):
        kp = keys.add_parser(name, parents=[common], help=text)
        if name in ("add", "passwd"):
            kp.add_argument(
                "--new-password-file",
                help="file holding the new passphrase "
                "(default: $CONTAINERARCHIVE_NEW_PASSWORD, or a prompt)",
            )
        if name == "remove":
            kp.add_argument("id", help="key id or unique prefix (see key list)")
        kp.set_defaults(func=cmd_key)

    p = sub.add_parser("unlock", parents=[common], help="remove stale locks")
    p.add_argument("--force", action="store_true", help="remove every lock, stale or not")
    p.set_defaults(func=cmd_unlock)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as e:
        print(f"containerarchive {args.command}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except errors.ContainerArchiveError as e:
        print(f"containerarchive {args.command}: {e}", file=sys.stderr)
        for cls, code in _EXIT_CODES:
            if isinstance(e, cls):
                return code
        return EXIT_ERROR
    except FileNotFoundError as e:
        print(f"containerarchive {args.command}: {e.filename}: {e.strerror}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): not our failure to report.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"containerarchive {args.command}: interrupted", file=sys.stderr)
        return 130
