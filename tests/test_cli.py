"""The command line, driven as a shell user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import sql_dump

CLI = [sys.executable, "-m", "containerarchive"]


def run(args, *, env=None, input=None, check=True):
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [*CLI, *args], input=input, capture_output=True, env=full_env, timeout=300
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr.decode()}")
    return proc


def test_console_script_is_installed():
    bindir = Path(sys.executable).parent
    proc = subprocess.run([bindir / "containerarchive", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert "ingest" in proc.stdout and "restore" in proc.stdout


def test_pg_dump_style_pipe_round_trip(cli_env, tmp_path: Path):
    run(["init"], env=cli_env)
    dump = sql_dump(30_000)
    out = run(
        [
            "ingest",
            "-",
            "--name",
            "db.sql",
            "--type",
            "database-dump",
            "--tag",
            "db=main",
            "--json",
        ],
        env=cli_env,
        input=dump,
    )
    snap = json.loads(out.stdout)
    assert snap["items"][0]["name"] == "db.sql" and snap["original_size"] == len(dump)
    assert snap["tags"] == {"db": "main"}
    assert run(["restore", snap["id"][:10]], env=cli_env).stdout == dump
    assert run(["restore", "latest", "--tag", "db=main"], env=cli_env).stdout == dump
    run(["restore", "latest", "-o", str(tmp_path / "out.sql")], env=cli_env)
    assert (tmp_path / "out.sql").read_bytes() == dump
    again = json.loads(
        run(["ingest", "-", "--name", "db.sql", "--json"], env=cli_env, input=dump).stdout
    )
    assert again["new_chunks"] == 0


def test_flags_instead_of_environment(tmp_path: Path):
    repo = tmp_path / "r"
    pw = tmp_path / "pw"
    pw.write_text("from a file\n")
    run(["init", "--repo", str(repo), "--password-file", str(pw), "--compression", "gzip"])
    src = tmp_path / "config.tar"
    src.write_bytes(b"config bundle" * 1000)
    out = run(
        [
            "--repo",
            str(repo),
            "-p",
            str(pw),
            "ingest",
            str(src),
            "--time",
            "2026-05-01T10:00:00+02:00",
        ]
    )
    assert "saved" in out.stdout.decode()
    shown = json.loads(run(["show", "latest", "--repo", str(repo), "-p", str(pw), "--json"]).stdout)
    assert shown["created_at"] == "2026-05-01T10:00:00+02:00"
    assert shown["items"][0]["name"] == "config.tar"
    assert run(["restore", shown["id"], "--repo", str(repo), "-p", str(pw)]).stdout == (
        b"config bundle" * 1000
    )
    # The passphrase file really is used: a wrong one fails.
    pw.write_text("wrong\n")
    assert run(["snapshots", "--repo", str(repo), "-p", str(pw)], check=False).returncode == 12


def test_snapshots_listing_and_filters(cli_env):
    run(["init"], env=cli_env)
    run(["ingest", "-", "--tag", "db=a", "--time", "2026-01-01T00:00:00Z"], env=cli_env, input=b"1")
    run(["ingest", "-", "--tag", "db=b", "--time", "2026-02-01T00:00:00Z"], env=cli_env, input=b"2")
    rows = json.loads(run(["snapshots", "--json"], env=cli_env).stdout)
    assert [r["tags"]["db"] for r in rows] == ["a", "b"]
    assert len(json.loads(run(["snapshots", "--json", "--tag", "db=b"], env=cli_env).stdout)) == 1
    after = json.loads(run(["snapshots", "--json", "--after", "2026-01-15"], env=cli_env).stdout)
    assert [r["tags"]["db"] for r in after] == ["b"]
    text = run(["snapshots"], env=cli_env).stdout.decode()
    assert rows[0]["id"][:8] in text and "2 snapshots" in text


def test_multiple_sources_make_one_multi_item_snapshot(cli_env, tmp_path: Path):
    run(["init"], env=cli_env)
    (tmp_path / "database.sql").write_bytes(b"SELECT 1;\n" * 5000)
    (tmp_path / "config.tar").write_bytes(b"cfg" * 3000)
    snap = json.loads(
        run(
            ["ingest", str(tmp_path / "database.sql"), str(tmp_path / "config.tar"), "--json"],
            env=cli_env,
        ).stdout
    )
    assert [i["name"] for i in snap["items"]] == ["database.sql", "config.tar"]
    got = run(["restore", snap["id"], "--item", "config.tar"], env=cli_env).stdout
    assert got == b"cfg" * 3000
    run(["restore", snap["id"], "-o", str(tmp_path / "out") + "/"], env=cli_env)
    assert (tmp_path / "out" / "database.sql").read_bytes() == b"SELECT 1;\n" * 5000


@pytest.mark.parametrize(
    ("args", "env_extra", "code", "message"),
    [
        (["snapshots"], {"CONTAINERARCHIVE_REPOSITORY": "/nonexistent/repo"}, 10, "no repository"),
        (["snapshots"], {"CONTAINERARCHIVE_PASSWORD": "wrong"}, 12, "wrong passphrase"),
        (["restore", "ffffffff"], {}, 3, "ffffffff"),
        (["restore", "latest", "--item", "nope"], {}, 3, "nope"),
        (["ingest", "-", "--tag", "novalue"], {}, 2, "KEY=VALUE"),
        (["ingest", "-", "--name", "../x"], {}, 2, "item name"),
        (["init"], {}, 6, "already exists"),
    ],
)
def test_failures_have_meaningful_exit_codes_and_one_line_errors(
    cli_env, args, env_extra, code, message
):
    run(["init"], env=cli_env)
    run(["ingest", "-"], env=cli_env, input=b"something")
    proc = run(args, env={**cli_env, **env_extra}, input=b"data", check=False)
    assert proc.returncode == code, proc.stderr
    err = proc.stderr.decode()
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_init_without_a_passphrase_needs_an_explicit_choice(tmp_path: Path):
    proc = run(["init", "--repo", str(tmp_path / "r")], check=False)
    assert proc.returncode == 12 and b"--no-encryption" in proc.stderr
    run(["init", "--repo", str(tmp_path / "r"), "--no-encryption"])
    assert json.loads((tmp_path / "r" / "config.json").read_text())["encryption"] == "none"
    run(["ingest", "-", "--repo", str(tmp_path / "r")], input=b"plain")
    assert run(["restore", "latest", "--repo", str(tmp_path / "r")]).stdout == b"plain"


COMMANDS = [
    "init",
    "ingest",
    "restore",
    "restore-plan",
    "snapshots",
    "show",
    "verify",
    "repair",
    "reindex",
    "prune",
    "key",
    "unlock",
    "stats",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples_and_exit_codes(command):
    proc = run([command, "--help"])
    text = proc.stdout.decode()
    assert "examples:" in text and f"containerarchive {command}" in text
    assert "exit codes:" in text and "12 wrong or missing passphrase" in text


@pytest.mark.parametrize("command", ["list", "add", "passwd", "remove"])
def test_key_subcommands_have_help_with_examples(command):
    text = run(["key", command, "--help"]).stdout.decode()
    assert "examples:" in text and f"containerarchive key {command}" in text


def test_every_command_prints_one_json_document(cli_env, tmp_path: Path):
    def doc(args, **kw):
        proc = run([*args, "--json"], env=cli_env, **kw)
        return json.loads(proc.stdout)

    assert doc(["init"])["config"]["encryption"] == "aes-256-gcm"
    snap = doc(["ingest", "-", "--name", "a.sql"], input=sql_dump(2000, 1))
    assert doc(["snapshots"])[0]["id"] == snap["id"]
    assert doc(["show", "latest"])["items"][0]["name"] == "a.sql"
    restored = doc(["restore", "latest", "-o", str(tmp_path / "a.sql")])
    assert restored["bytes"] == len(sql_dump(2000, 1)) and restored["items"] == ["a.sql"]
    assert doc(["restore-plan", "latest"])["complete"] is True
    assert doc(["verify", "--level", "full"])["ok"] is True
    assert doc(["repair"])["ok"] is True
    assert doc(["reindex"])["packs_indexed"] >= 1
    assert doc(["prune", "--keep-last", "1", "--dry-run"])["dry_run"] is True
    assert len(doc(["key", "list"])) == 1
    assert doc(["unlock"])["removed"] == []
    stats = doc(["stats"])
    assert stats["snapshots"] == 1 and stats["unique_chunks"] >= 1
    assert stats["original_bytes"] == len(sql_dump(2000, 1))
    assert stats["compression_ratio"] > 2  # SQL text compresses
    # Errors are one JSON document too, with the documented exit code.
    proc = run(["show", "ffffffff", "--json"], env=cli_env, check=False)
    assert proc.returncode == 3
    assert json.loads(proc.stdout)["error"]["type"] == "SnapshotNotFoundError"


def test_stats_text_shows_dedup_and_compression(cli_env):
    run(["init"], env=cli_env)
    dump = sql_dump(20_000, 4)
    run(["ingest", "-", "--name", "a.sql"], env=cli_env, input=dump)
    run(["ingest", "-", "--name", "a.sql"], env=cli_env, input=dump)
    text = run(["stats"], env=cli_env).stdout.decode()
    assert "snapshots                   2" in text
    assert "deduplication               2.00×" in text


def _on_a_terminal(args, env):
    """Run the CLI with standard error on a pseudo-terminal; returns (exit code, stderr)."""
    import pty
    import threading

    leader, follower = pty.openpty()
    out = bytearray()

    def read():
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:
                return
            if not data:
                return
            out.extend(data)

    reader = threading.Thread(target=read)
    reader.start()
    proc = subprocess.run(
        [*CLI, *args],
        stderr=follower,
        stdout=subprocess.PIPE,
        env={**os.environ, **env},
        timeout=300,
    )
    os.close(follower)
    reader.join(timeout=10)
    os.close(leader)
    return proc.returncode, bytes(out).decode(errors="replace")


def test_progress_bars_on_a_terminal_and_none_otherwise(cli_env, tmp_path: Path):
    run(["init"], env=cli_env)
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(24 << 20))
    code, err = _on_a_terminal(["ingest", str(src)], cli_env)
    assert code == 0
    assert "ingest:" in err and "100%" in err and "█" in err
    code, err = _on_a_terminal(["verify", "--level", "full"], cli_env)
    assert code == 0 and "verify:" in err and "100%" in err
    # Not a terminal: no bar, however long the operation.
    proc = run(["ingest", str(src), "--name", "again"], env=cli_env)
    assert b"\r" not in proc.stderr and b"%|" not in proc.stderr
    # --no-progress and --json turn bars off on a terminal too.
    code, err = _on_a_terminal(["verify", "--no-progress"], cli_env)
    assert code == 0 and "%|" not in err
    code, err = _on_a_terminal(["restore", "latest", "-o", str(tmp_path / "o"), "--json"], cli_env)
    assert code == 0 and "%|" not in err
