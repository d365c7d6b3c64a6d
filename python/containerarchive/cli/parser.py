"""The CLI's command line: the options every command shares, one ``_add_*`` function per
command (its options, help text and examples), and the checks of option values argparse can
make (counts, retention durations, tag sets). A bad command line gets one line, or with
``--json`` the JSON error document, and exit code 2.

Must not run a command or read the environment.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from typing import Any, NoReturn

from .._native import __version__
from .commands import (
    cmd_forget,
    cmd_ingest,
    cmd_init,
    cmd_key,
    cmd_prune,
    cmd_reindex,
    cmd_repair,
    cmd_restore,
    cmd_restore_plan,
    cmd_show,
    cmd_snapshots,
    cmd_stats,
    cmd_unlock,
    cmd_verify,
)
from .exits import EXIT_TABLE, EXIT_USAGE
from .terminal import _write_json_error


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


_EXIT_HELP = "exit codes: " + "; ".join(f"{code} {what}" for code, what in EXIT_TABLE)

_EXAMPLES = {
    "init": """
        containerarchive init -r /backups/repo                 # asks for a passphrase
        CONTAINERARCHIVE_PASSWORD_FILE=/etc/ca.pw containerarchive init -r /backups/repo
        containerarchive init -r /tmp/scratch --no-encryption --compression none
        containerarchive init -r /backups/shared --no-delta   # readable by older versions""",
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
        containerarchive stats --json | jq .dedup_ratio
        containerarchive stats --prometheus /var/lib/node_exporter/textfile/backup.prom""",
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
    common = _common_options()
    parser = _Parser(
        prog="containerarchive",
        description="Encrypted, deduplicated backups of database dumps, volumes and configs.",
        parents=[common],
        epilog=_EXIT_HELP,
    )
    parser.add_argument("--version", action="version", version=f"containerarchive {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in _COMMANDS:
        add(sub, common)
    return parser


def _common_options() -> argparse.ArgumentParser:
    """The options every command takes (before or after the command's name)."""
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
    return common


def _add_init(sub: Any, common: argparse.ArgumentParser) -> None:
    p = _add(sub, "init", common, "create a repository")
    p.add_argument(
        "--compression",
        choices=["zstd", "gzip", "none"],
        default="zstd",
        help="how chunks are compressed: zstd (default, level 3), gzip (DEFLATE, level 1) or none",
    )
    p.add_argument("--no-encryption", action="store_true", help="create an unencrypted repository")
    p.add_argument(
        "--delta",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="store a new chunk similar to a stored one as the difference to it (default on; "
        "--no-delta keeps the repository readable by versions without the delta feature)",
    )
    p.set_defaults(func=cmd_init)


def _add_ingest(sub: Any, common: argparse.ArgumentParser) -> None:
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


def _add_restore(sub: Any, common: argparse.ArgumentParser) -> None:
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


def _add_restore_plan(sub: Any, common: argparse.ArgumentParser) -> None:
    p = _add(sub, "restore-plan", common, "list exactly the files restoring a snapshot needs")
    p.add_argument("snapshot", metavar="ID", help="snapshot id, unique prefix, or latest")
    p.add_argument("--item", help="only this item")
    p.add_argument("--tag", action="append", metavar="KEY=VALUE", help="with latest: filter by tag")
    p.add_argument("--host", metavar="NAME", help="with latest: only snapshots made by this host")
    p.set_defaults(func=cmd_restore_plan)


def _add_snapshots(sub: Any, common: argparse.ArgumentParser) -> None:
    p = _add(sub, "snapshots", common, "list snapshots")
    p.add_argument("--tag", action="append", metavar="KEY=VALUE", help="only with this tag")
    p.add_argument("--after", help="only created at or after this ISO 8601 time")
    p.add_argument("--before", help="only created at or before this ISO 8601 time")
    p.add_argument("--host", metavar="NAME", help="only snapshots made by this host")
    p.set_defaults(func=cmd_snapshots)


def _add_show(sub: Any, common: argparse.ArgumentParser) -> None:
    p = _add(sub, "show", common, "show one snapshot")
    p.add_argument("snapshot", metavar="ID", help="snapshot id, unique prefix, or latest")
    p.add_argument("--tag", action="append", metavar="KEY=VALUE", help="with latest: filter by tag")
    p.add_argument("--host", metavar="NAME", help="with latest: only snapshots made by this host")
    p.set_defaults(func=cmd_show)


def _add_verify(sub: Any, common: argparse.ArgumentParser) -> None:
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
    _metrics_option(p, "verify")
    p.set_defaults(func=cmd_verify)


def _add_repair(sub: Any, common: argparse.ArgumentParser) -> None:
    p = _add(sub, "repair", common, "rebuild lost or damaged packs from parity, rebuild the index")
    p.set_defaults(func=cmd_repair)


def _add_reindex(sub: Any, common: argparse.ArgumentParser) -> None:
    p = _add(sub, "reindex", common, "rebuild the index from the packs")
    p.set_defaults(func=cmd_reindex)


def _add_prune(sub: Any, common: argparse.ArgumentParser) -> None:
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
    _metrics_option(p, "prune")
    p.set_defaults(func=cmd_prune)


def _add_forget(sub: Any, common: argparse.ArgumentParser) -> None:
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


def _add_key(sub: Any, common: argparse.ArgumentParser) -> None:
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


def _add_unlock(sub: Any, common: argparse.ArgumentParser) -> None:
    p = _add(sub, "unlock", common, "remove stale locks")
    p.add_argument("--force", action="store_true", help="remove every lock, stale or not")
    p.set_defaults(func=cmd_unlock)


def _add_stats(sub: Any, common: argparse.ArgumentParser) -> None:
    p = _add(sub, "stats", common, "show repository totals: sizes, deduplication, compression")
    p.add_argument(
        "--prometheus",
        metavar="FILE",
        help="also write the repository's metrics to FILE (node_exporter textfile format, "
        "replaced atomically): per backup series (host + items) the last snapshot's time, "
        "size in and added, dedup ratio and snapshot count; repository totals (docs/METRICS.md)",
    )
    p.set_defaults(func=cmd_stats)


def _metrics_option(p: Any, command: str) -> None:
    p.add_argument(
        "--metrics",
        metavar="FILE",
        help=f"write this {command}'s outcome to FILE (node_exporter textfile format, replaced "
        "atomically): success 1/0, duration, findings, time of the last success; written also "
        "when the command fails (docs/METRICS.md)",
    )


#: Every command, in the order ``--help`` lists them.
_COMMANDS = (
    _add_init,
    _add_ingest,
    _add_restore,
    _add_restore_plan,
    _add_snapshots,
    _add_show,
    _add_verify,
    _add_repair,
    _add_reindex,
    _add_prune,
    _add_forget,
    _add_key,
    _add_unlock,
    _add_stats,
)
