"""Breaking things on purpose with real processes and a real filesystem: kill -9 during ingest,
a full disk, several writers at once, and what an encrypted repository lets an onlooker see.
(The crash-at-every-change sweep and the corruption table run in core/tests/.)"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import containerarchive as ca
from conftest import FAST_KDF, PASSPHRASE, random_bytes, sql_dump


def cli_env(repo_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CONTAINERARCHIVE_REPOSITORY": str(repo_path),
        "CONTAINERARCHIVE_PASSWORD": PASSPHRASE,
    }


def leftovers(repo_path: Path) -> list[str]:
    """Temporary files of interrupted writes and lock files."""
    return sorted(
        str(p.relative_to(repo_path))
        for p in repo_path.rglob("*")
        if p.is_file() and (p.name.startswith(".tmp-") or p.parent.name == "locks")
    )


def check_everything(repo_path: Path, expected: dict[str, bytes]) -> None:
    """Full verify is clean and every snapshot (by id) restores to exactly its bytes."""
    with ca.Repository.open(repo_path, PASSPHRASE) as r:
        result = r.verify("full")
        assert result.ok, result.errors
        for snap_id, data in expected.items():
            assert r.restore(snap_id).read() == data, f"snapshot {snap_id}"


def test_an_ingest_killed_with_sigkill_at_random_moments_never_damages_the_repository(
    repo_path: Path,
):
    rnd = random.Random(2026)
    with ca.Repository.init(repo_path, PASSPHRASE, pack_size=1 << 20, **FAST_KDF) as r:
        first = sql_dump(20_000, seed=1)
        expected = {r.ingest(first, name="db.sql").id: first}
    killed = completed = 0
    for trial in range(20):
        data = random_bytes(3 << 20, seed=trial) + sql_dump(5_000, seed=trial)
        proc = subprocess.Popen(
            [sys.executable, "-m", "containerarchive", "ingest", "-", "--name", f"t{trial}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=cli_env(repo_path),
        )

        def feed(proc: subprocess.Popen[bytes] = proc, data: bytes = data) -> None:
            assert proc.stdin is not None
            try:
                for i in range(0, len(data), 256 << 10):
                    proc.stdin.write(data[i : i + (256 << 10)])
                    time.sleep(0.04)
                proc.stdin.close()
            except (BrokenPipeError, ValueError):
                pass

        feeder = threading.Thread(target=feed)
        feeder.start()
        # Anywhere from interpreter start-up to after the commit.
        time.sleep(rnd.uniform(0.05, 0.95))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        feeder.join()
        if proc.returncode == -signal.SIGKILL:
            killed += 1
        else:
            assert proc.returncode == 0
            completed += 1
        with ca.Repository.open(repo_path, PASSPHRASE) as r:
            for snap in r.list_snapshots():
                if snap.id not in expected:
                    # The kill came after the commit: that snapshot must be whole.
                    assert snap.items[0].name == f"t{trial}"
                    expected[snap.id] = data
        check_everything(repo_path, expected)
    assert killed >= 10, f"only {killed} of 20 trials were killed mid-way"
    # The next ingest succeeds, and prune clears what the dead processes left behind.
    with ca.Repository.open(repo_path, PASSPHRASE) as r:
        last = sql_dump(3_000, seed=99)
        expected[r.ingest(last, name="after").id] = last
        r.prune(keep_last=100)
    assert leftovers(repo_path) == []
    check_everything(repo_path, expected)


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 24 MiB tmpfs mounted for the test (needs root and mount rights)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_fails_the_ingest_clearly_and_damages_nothing(small_disk: Path):
    repo_path = small_disk / "repo"
    with ca.Repository.init(repo_path, PASSPHRASE, pack_size=1 << 20, **FAST_KDF) as r:
        first = random_bytes(4 << 20, seed=1)
        expected = {r.ingest(first, name="vol.tar").id: first}
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (8 << 20))
    with ca.Repository.open(repo_path, PASSPHRASE) as r:
        with pytest.raises(ca.StorageError) as exc:
            r.ingest(random_bytes(20 << 20, seed=2), name="too-big")
        assert "No space left" in str(exc.value)
        assert [s.id for s in r.list_snapshots()] == list(expected)
    check_everything(repo_path, expected)
    # Space freed: the next ingest succeeds, and prune reclaims what the failed one wrote.
    filler.unlink()
    with ca.Repository.open(repo_path, PASSPHRASE) as r:
        second = random_bytes(3 << 20, seed=3)
        expected[r.ingest(second, name="vol.tar").id] = second
        r.prune(keep_last=10)
    assert leftovers(repo_path) == []
    check_everything(repo_path, expected)


def test_four_processes_ingesting_at_once_then_a_prune_lose_nothing(tmp_path: Path):
    repo_path = tmp_path / "repo"
    ca.Repository.init(repo_path, PASSPHRASE, pack_size=1 << 20, **FAST_KDF).close()
    streams: dict[str, bytes] = {}
    for round_ in range(3):
        procs = []
        for w in range(4):
            name = f"r{round_}-w{w}"
            data = random_bytes(2 << 20, seed=round_ * 10 + w) + sql_dump(4_000, seed=w)
            streams[name] = data
            src = tmp_path / f"{name}.bin"
            src.write_bytes(data)
            with src.open("rb") as f:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "containerarchive", "ingest", "-", "--name", name],
                        stdin=f,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                        env=cli_env(repo_path),
                    )
                )
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err.decode()
    with ca.Repository.open(repo_path, PASSPHRASE) as r:
        snaps = r.list_snapshots()
        assert sorted(s.items[0].name for s in snaps) == sorted(streams)
        result = r.prune(keep_last=8, group_by=())  # one pool: every stream has its own item
        assert len(result.removed) == 4
        kept = {s.id: streams[s.items[0].name] for s in r.list_snapshots()}
    assert len(kept) == 8
    check_everything(repo_path, kept)
    assert leftovers(repo_path) == []


def test_nothing_readable_appears_in_any_file_of_an_encrypted_repository(repo_path: Path):
    marker = b"PLAINTEXT-MARKER-7f3a"
    data = (marker + b" some row of a table\n") * 20_000
    with ca.Repository.init(repo_path, PASSPHRASE, compression="none", **FAST_KDF) as r:
        r.ingest(
            data,
            name="SECRET-ITEM-NAME-4411.sql",
            tags={"SECRET-TAG-KEY-9c": "SECRET-TAG-VALUE-2b"},
        )
        with r.lock(exclusive=False, operation="SECRET-OPERATION-5e"):
            files = [p for p in repo_path.rglob("*") if p.is_file()]
            seen = b"".join(p.read_bytes() for p in files)
    for needle in (
        marker,
        b"SECRET-ITEM-NAME",
        b"SECRET-TAG-KEY",
        b"SECRET-TAG-VALUE",
        b"SECRET-OPERATION",
        b"some row of a table",
    ):
        assert needle not in seen, needle


def test_argon2id_defaults_are_at_least_64_mib_and_configurable(tmp_path: Path):
    with ca.Repository.init(tmp_path / "default", PASSPHRASE) as r:
        (key,) = r.list_keys()
        assert key.kdf_memory_kib >= 64 * 1024 and key.kdf_iterations >= 3
    with ca.Repository.init(
        tmp_path / "tuned", PASSPHRASE, kdf_memory_kib=128 * 1024, kdf_iterations=4
    ) as r:
        (key,) = r.list_keys()
        assert (key.kdf_memory_kib, key.kdf_iterations) == (128 * 1024, 4)


def test_a_wrong_passphrase_changes_nothing_on_disk(repo_path: Path):
    with ca.Repository.init(repo_path, PASSPHRASE, **FAST_KDF) as r:
        r.ingest(b"x" * 1000, name="a")
    before = {p: p.stat().st_mtime_ns for p in repo_path.rglob("*")}
    with pytest.raises(ca.WrongPassphraseError) as exc:
        ca.Repository.open(repo_path, "not the passphrase")
    assert "keys/" in str(exc.value)
    assert {p: p.stat().st_mtime_ns for p in repo_path.rglob("*")} == before
