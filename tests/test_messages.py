"""Messages that point at the truth, and a prune that stops changing things: restore-plan and
restore errors on a damaged repository, readers that close the pipe early, `-o dir/`, CLI
wording, small packs merged and the fixed point."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import containerarchive as ca
from conftest import FAST_KDF, PASSPHRASE

CLI = [sys.executable, "-m", "containerarchive"]


def env_for(repo_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CONTAINERARCHIVE_PASSWORD": PASSPHRASE,
        "CONTAINERARCHIVE_REPOSITORY": str(repo_path),
    }


def cli(repo_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=env_for(repo_path), timeout=120
    )


def state(path: Path) -> dict[str, str]:
    return {
        str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in path.rglob("*")
        if f.is_file() and "locks" not in f.parts
    }


def pack_files(path: Path) -> list[Path]:
    return sorted((path / "packs" / "data").rglob("*.pack"))


@pytest.fixture
def damaged(tmp_path: Path) -> tuple[Path, ca.Snapshot]:
    """A repository whose only snapshot lost its one data pack."""
    path = tmp_path / "repo"
    with ca.Repository.init(path, PASSPHRASE, **FAST_KDF) as repo:
        snap = repo.ingest(os.urandom(300_000), name="db.sql")
    (victim,) = pack_files(path)
    victim.unlink()
    return path, snap


def test_restore_plan_marks_missing_files_and_fails(damaged):
    path, snap = damaged
    p = cli(path, "restore-plan", "latest")
    assert p.returncode == 1, p.stderr
    missing = [line for line in p.stdout.splitlines() if "MISSING" in line]
    assert len(missing) == 1 and missing[0].startswith("packs/data/")
    assert "INCOMPLETE" in p.stdout and "repair" in p.stdout
    p = cli(path, "restore-plan", "latest", "--json")
    assert p.returncode == 1 and '"complete": false' in p.stdout


def test_a_restore_error_names_snapshot_item_and_the_fix(damaged, tmp_path):
    path, snap = damaged
    p = cli(path, "restore", "latest", "-o", str(tmp_path / "out.sql"))
    assert p.returncode == 1
    err = p.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert snap.id in err and "'db.sql'" in err and "repair" in err
    with ca.Repository.open(path, PASSPHRASE) as repo:
        with pytest.raises(ca.ContainerArchiveError) as e:
            repo.restore(snap.id).read()
        assert e.value.snapshot == snap.id and e.value.item == "db.sql"
        assert "rebuilds one lost" in str(e.value)
    p = cli(path, "verify", "--level", "quick")
    assert p.returncode == 1
    assert f"snapshot {snap.id}" in p.stderr


def test_a_reader_closing_the_pipe_early_ends_quietly_with_141(tmp_path):
    path = tmp_path / "repo"
    with ca.Repository.init(path, PASSPHRASE, **FAST_KDF) as repo:
        one = repo.ingest(os.urandom(4 << 20), name="a")
        two = repo.ingest_multi([{"source": os.urandom(2 << 20), "name": n} for n in "bc"])
        for i in range(300):
            repo.ingest(f"{i}".encode(), name="n", time=f"2026-01-01T00:00:{i % 60:02}Z")
    cmd = " ".join(CLI)
    for pipeline in (
        f"{cmd} restore {one.id} | head -c 100 > /dev/null",  # one item: straight to the fd
        f"{cmd} restore {two.id} --item b | head -c 100 > /dev/null",
        f"{cmd} restore {two.id} | head -c 100 > /dev/null",  # several items: a tar stream
        f"{cmd} snapshots | true",  # the reader is gone before anything is written
        f"{cmd} show {two.id} | true",
        f"{cmd} snapshots --json | head -c 10 > /dev/null",
    ):
        p = subprocess.run(
            ["bash", "-c", f"{pipeline}; exit ${{PIPESTATUS[0]}}"],
            capture_output=True,
            text=True,
            env=env_for(path),
            timeout=120,
        )
        assert p.returncode == 141, (pipeline, p.returncode, p.stderr)
        assert p.stderr == "", (pipeline, p.stderr)


def test_an_output_path_with_a_trailing_slash_is_a_directory(tmp_path):
    path = tmp_path / "repo"
    with ca.Repository.init(path, PASSPHRASE, **FAST_KDF) as repo:
        snap = repo.ingest(b"dump", name="db.sql")
        got = repo.restore_to(snap.id, f"{tmp_path}/api/")
        assert got == tmp_path / "api" and (got / "db.sql").read_bytes() == b"dump"
    p = cli(path, "restore", "latest", "-o", f"{tmp_path}/newdir/")
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "newdir").is_dir()
    assert (tmp_path / "newdir" / "db.sql").read_bytes() == b"dump"
    p = cli(path, "restore", "latest", "-o", str(tmp_path / "plainfile"))
    assert p.returncode == 0 and (tmp_path / "plainfile").read_bytes() == b"dump"


def test_cli_messages_name_cli_commands(tmp_path):
    path = tmp_path / "repo"
    ca.Repository.init(path, PASSPHRASE, **FAST_KDF).close()
    with ca.Repository.open(path, PASSPHRASE) as repo:
        repo.add_key("second passphrase")
        current = next(k.id for k in repo.list_keys() if k.current)
    p = cli(path, "key", "remove", current[:12])
    assert p.returncode == 2
    assert "key passwd" in p.stderr and "change_passphrase" not in p.stderr


def test_prune_merges_small_packs_and_then_changes_nothing(tmp_path):
    path = tmp_path / "repo"
    with ca.Repository.init(path, PASSPHRASE, **FAST_KDF) as repo:
        snaps = [repo.ingest(f"setting = {i}\n".encode() * 20, name="app.conf") for i in range(30)]
        assert len(pack_files(path)) == 30
        first = repo.prune(keep_last=100)
        assert first.merged_packs == 30 and first.removed == []
        assert len(pack_files(path)) == 1
        for i, s in enumerate(snaps):
            assert repo.restore(s).read() == f"setting = {i}\n".encode() * 20
        assert repo.verify("full").ok
        for _ in range(2):
            before = state(path)
            again = repo.prune(keep_last=100)
            assert (again.rewritten_packs, again.new_packs, again.removed_packs) == (0, 0, 0)
            assert state(path) == before
    p = cli(path, "prune", "--keep-last", "100")
    assert p.returncode == 0 and "removed 0 snapshots and 0 packs" in p.stdout


def test_a_truncated_pack_is_damaged_in_the_plan_and_named_by_verify(tmp_path):
    path = tmp_path / "repo"
    with ca.Repository.init(path, PASSPHRASE, **FAST_KDF) as repo:
        snap = repo.ingest(os.urandom(300_000), name="db.sql")
    (victim,) = pack_files(path)
    size = victim.stat().st_size
    with open(victim, "r+b") as f:
        f.truncate(size // 2)
    p = cli(path, "restore-plan", "latest")
    assert p.returncode == 1
    damaged = [line for line in p.stdout.splitlines() if "DAMAGED" in line]
    assert len(damaged) == 1 and "1 file is missing or damaged" in p.stdout
    with ca.Repository.open(path, PASSPHRASE) as repo:
        plan = repo.restore_plan(snap.id)
        assert not plan.complete and plan.missing == [] and len(plan.damaged) == 1
        assert next(f for f in plan.files if f.damaged).size == size
        result = repo.verify("standard")
    assert not result.ok
    assert all(e.snapshot == snap.id for e in result.errors if e.pack), result.errors
    p = cli(path, "verify")
    assert p.returncode == 1 and f"snapshot {snap.id}" in p.stderr


def test_errors_name_the_cli_flag_and_survive_a_closed_pipe(tmp_path):
    path = tmp_path / "repo"
    ca.Repository.init(path, PASSPHRASE, **FAST_KDF).close()
    p = cli(path, "ingest", "--time", "yesterday-ish", "-", "--allow-empty")
    assert p.returncode == 2 and "--time" in p.stderr
    p = cli(path, "snapshots", "--after", "x")
    assert p.returncode == 2 and "--after" in p.stderr
    p = subprocess.run(
        [*CLI, "snapshots"],
        capture_output=True,
        text=True,
        env={**env_for(path), "CONTAINERARCHIVE_LOCK_STALE_AFTER": "0"},
    )
    assert p.returncode == 2 and "CONTAINERARCHIVE_LOCK_STALE_AFTER" in p.stderr
    for args in (["--json", "show", "nonexist"], ["--json", "nosuchcommand"]):
        p = subprocess.run(
            ["bash", "-c", f"{' '.join(CLI)} {' '.join(args)} | true; exit ${{PIPESTATUS[0]}}"],
            capture_output=True,
            text=True,
            env=env_for(path),
        )
        assert p.returncode in (2, 3) and "Traceback" not in p.stderr, (args, p.stderr)


def test_a_trailing_slash_on_an_existing_file_and_clashing_item_names(tmp_path):
    path = tmp_path / "repo"
    with ca.Repository.init(path, PASSPHRASE, **FAST_KDF) as repo:
        repo.ingest(b"dump", name="db.sql")
        with pytest.raises(ca.InvalidArgumentError, match="clash"):
            repo.ingest_multi([{"source": b"1", "name": "x"}, {"source": b"2", "name": "x/y"}])
    (tmp_path / "existing").write_text("keep me")
    p = cli(path, "restore", "latest", "-o", f"{tmp_path}/existing/")
    assert p.returncode == 6 and "is not a directory" in p.stderr
    assert (tmp_path / "existing").read_text() == "keep me"


def test_the_prune_text_says_when_the_repository_grew():
    from containerarchive.cli import _collect_text

    r = ca.PruneResult([], [], 0, 12, 12, 1, -5000, False, merged_packs=12)
    text = _collect_text(r, {})
    assert "grew by 4.9 KiB" in text and "12 small ones merged" in text
