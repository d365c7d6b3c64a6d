"""The ``containerarchive`` command line.

Exit codes: see :data:`.exits.EXIT_TABLE` (the one table; ``--help`` and the README show
it). With ``--json`` every command prints exactly one JSON document on standard output,
errors included (``{"error": {"type", "message", "exit_code"}}``).

The package: ``main`` (here: error reporting, exit codes, signals), the parser
(:mod:`.parser`), the commands (:mod:`.commands`), what is said and asked on the terminal
(:mod:`.terminal`) and the exit codes (:mod:`.exits`). This module must not hold a command or
an option.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from collections.abc import Sequence

from .. import errors
from .._signals import defer_signal
from . import terminal
from .commands import cmd_forget as cmd_forget
from .commands import cmd_ingest as cmd_ingest
from .commands import cmd_init as cmd_init
from .commands import cmd_key as cmd_key
from .commands import cmd_prune as cmd_prune
from .commands import cmd_reindex as cmd_reindex
from .commands import cmd_repair as cmd_repair
from .commands import cmd_restore as cmd_restore
from .commands import cmd_restore_plan as cmd_restore_plan
from .commands import cmd_show as cmd_show
from .commands import cmd_snapshots as cmd_snapshots
from .commands import cmd_stats as cmd_stats
from .commands import cmd_unlock as cmd_unlock
from .commands import cmd_verify as cmd_verify
from .exits import _EXIT_CODES as _EXIT_CODES
from .exits import EXIT_ARCHIVED as EXIT_ARCHIVED
from .exits import EXIT_BROKEN_PIPE as EXIT_BROKEN_PIPE
from .exits import EXIT_COMMAND_FAILED as EXIT_COMMAND_FAILED
from .exits import EXIT_CONCURRENT as EXIT_CONCURRENT
from .exits import EXIT_EMPTY_INPUT as EXIT_EMPTY_INPUT
from .exits import EXIT_ERROR as EXIT_ERROR
from .exits import EXIT_FILE as EXIT_FILE
from .exits import EXIT_LOCKED as EXIT_LOCKED
from .exits import EXIT_NO_REPOSITORY as EXIT_NO_REPOSITORY
from .exits import EXIT_NOT_FOUND as EXIT_NOT_FOUND
from .exits import EXIT_PASSPHRASE as EXIT_PASSPHRASE
from .exits import EXIT_TABLE as EXIT_TABLE
from .exits import EXIT_USAGE as EXIT_USAGE
from .exits import UsageError as UsageError
from .parser import build_parser as build_parser
from .terminal import _collect_text as _collect_text
from .terminal import _write_json_error

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
    if sys.stdout is None:  # started with standard output closed
        terminal._STDOUT_CLOSED = True
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
