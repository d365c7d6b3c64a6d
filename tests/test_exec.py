"""Backing up a command's output: a failed or killed command never becomes a snapshot."""

from __future__ import annotations

import hashlib
import json
import sys

import pytest
from test_cli import run

import containerarchive as ca

PY = sys.executable


def _gen(n: int, seed: int) -> list[str]:
    """A command printing n deterministic bytes (a stand-in for pg_dump)."""
    code = (
        f"import random,sys; r=random.Random({seed}); "
        f"sys.stdout.buffer.write(bytes(r.getrandbits(8) for _ in range({n})))"
    )
    return [PY, "-c", code]


def _expected(n: int, seed: int) -> bytes:
    import random

    r = random.Random(seed)
    return bytes(r.getrandbits(8) for _ in range(n))


def test_a_commands_output_is_stored_with_the_command_and_its_status(repo, tmp_path):
    argv = _gen(300_000, 1)
    snap = repo.ingest_command(argv, name="db.dump", type="database-dump", tags={"db": "x"})
    item = snap.item("db.dump")
    assert item.command == argv and item.exit_status == 0 and item.type == "database-dump"
    assert item.size == 300_000
    with repo.restore(snap.id) as f:
        assert f.read() == _expected(300_000, 1)
    # The record survives reopening (it is in the manifest).
    again = repo.get_snapshot(snap.id).item("db.dump")
    assert again.command == argv


def test_a_failing_command_commits_nothing_and_shows_its_stderr(repo, repo_path):
    before = repo.list_snapshots()
    script = (
        "import sys; sys.stdout.write('partial dump'); "
        "sys.stderr.write('pg_dump: error: connection refused\\n'); sys.exit(3)"
    )
    with pytest.raises(ca.CommandFailedError) as info:
        repo.ingest_command([PY, "-c", script], name="db.dump")
    e = info.value
    assert e.exit_status == 3 and e.argv[0] == PY
    assert "connection refused" in e.stderr_tail and "connection refused" in str(e)
    assert "nothing was committed" in str(e)
    assert repo.list_snapshots() == before
    assert not list((repo_path / "locks").glob("*"))
    assert repo.ingest_command(_gen(10, 2), name="ok").items[0].exit_status == 0


def test_a_killed_command_is_a_failure_too(repo):
    with pytest.raises(ca.CommandFailedError, match="killed by signal 9") as info:
        repo.ingest_command(
            ["bash", "-c", "head -c 3000000 /dev/urandom; kill -9 $$"], name="x.dump"
        )
    assert info.value.exit_status == -9
    assert repo.list_snapshots() == []


def test_a_missing_program_is_a_clear_error(repo):
    with pytest.raises(ca.CommandFailedError, match="no-such-dump-tool"):
        repo.ingest_command(["no-such-dump-tool", "--all"], name="x")


def test_a_command_writing_much_to_stderr_does_not_stall(repo):
    # 2 MiB of stderr while streaming stdout: a pipe left unread would block the command.
    script = (
        "import sys; sys.stderr.write('w' * (2 << 20)); sys.stderr.flush(); "
        "sys.stdout.buffer.write(b'x' * (5 << 20))"
    )
    snap = repo.ingest_command([PY, "-c", script], name="noisy")
    assert snap.original_size == 5 << 20


def test_a_string_command_is_split_like_a_shell_without_running_one(repo):
    snap = repo.ingest_command(f"{PY} -c \"print('a b')\"", name="echo.out")
    assert snap.items[0].command == [PY, "-c", "print('a b')"]
    with repo.restore(snap.id) as f:
        assert f.read() == b"a b\n"


def test_cli_exec_items_go_into_one_snapshot(cli_env):
    env = cli_env
    run(["init"], env=env)
    cmd_a = f'{PY} -c "{_gen(200_000, 5)[2]}"'
    cmd_b = f'{PY} -c "{_gen(100_000, 6)[2]}"'
    out = run(
        [
            "ingest",
            "--exec",
            cmd_a,
            "--name",
            "a.dump",
            "--exec",
            cmd_b,
            "--name",
            "b.dump",
            "--tag",
            "db=both",
            "--json",
        ],
        env=env,
    ).stdout
    snap = json.loads(out)
    assert [i["name"] for i in snap["items"]] == ["a.dump", "b.dump"]
    assert snap["items"][0]["command"][0] == PY and snap["items"][0]["exit_status"] == 0
    got = run(["restore", snap["id"], "--item", "b.dump"], env=env).stdout
    assert hashlib.sha256(got).digest() == hashlib.sha256(_expected(100_000, 6)).digest()


def test_cli_exec_failure_exits_4_with_the_stderr_tail(cli_env):
    env = cli_env
    run(["init"], env=env)
    fail = f"{PY} -c \"import sys; print('half'); sys.exit('dump aborted: disk full')\""
    proc = run(["ingest", "--exec", fail, "--name", "db.dump"], env=env, check=False)
    assert proc.returncode == 4
    assert b"dump aborted: disk full" in proc.stderr and b"nothing was committed" in proc.stderr
    proc = run(["ingest", "--exec", fail, "--json"], env=env, check=False)
    doc = json.loads(proc.stdout)
    assert doc["error"]["type"] == "CommandFailedError" and doc["error"]["exit_status"] == 1
    assert doc["error"]["exit_code"] == 4
    assert json.loads(run(["snapshots", "--json"], env=env).stdout) == []
