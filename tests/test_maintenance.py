"""Parity, verify, repair, reindex, prune and locks on a real on-disk repository."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import containerarchive as ca
from conftest import FAST_KDF, PASSPHRASE, die_holding_a_lock, random_bytes

MiB = 1 << 20


def packs(repo_path: Path) -> dict[str, Path]:
    return {p.stem: p for p in (repo_path / "packs" / "data").rglob("*.pack")}


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and "locks" not in p.parts)


@pytest.fixture
def big_repo(tmp_path: Path):
    """An encrypted repository of >= 25 data packs (two parity groups) and two snapshots."""
    path = tmp_path / "repo"
    repo = ca.Repository.init(path, PASSPHRASE, pack_size=MiB, **FAST_KDF)
    big = random_bytes(26 * MiB, 1)
    small = random_bytes(4 * MiB, 2)
    a = repo.ingest(big, name="big")
    b = repo.ingest(small, name="small")
    assert len(packs(path)) >= 25
    yield repo, path, (a, big), (b, small)
    repo.close()


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_a_new_repository_verifies_at_every_level(big_repo):
    repo, path, _, _ = big_repo
    for level in ("quick", "standard", "full"):
        result = repo.verify(level)
        assert result.ok, result.errors
        assert result.errors == []
        assert result.stats.snapshots_checked == 2
        assert result.stats.packs_checked == len(packs(path))
        assert result.stats.chunks_checked > 0 and result.stats.bytes_read > 0
        assert result.stats.groups_checked == 2
    with pytest.raises(ca.InvalidArgumentError):
        repo.verify("thorough")


@pytest.mark.parametrize("which", ["first", "last"])
def test_any_deleted_pack_is_reported_and_rebuilt_byte_identical(big_repo, which):
    repo, path, (a, big), (b, small) = big_repo
    names = sorted(packs(path), key=lambda n: packs(path)[n].stat().st_mtime_ns)
    victim = names[0] if which == "first" else names[-1]
    file = packs(path)[victim]
    digest = sha(file)
    file.unlink()
    seen = []
    result = repo.verify("quick", on_error=seen.append)
    assert not result.ok
    assert {e.pack for e in result.errors} == {victim}
    assert seen == result.errors
    assert any(e.kind == "pack_missing" for e in result.errors)
    report = repo.repair()
    assert report.packs_repaired == [victim]
    assert report.unrecoverable == [] and report.ok and report.index_rebuilt
    assert sha(file) == digest
    assert repo.verify("full").ok
    assert repo.restore(a.id).read() == big
    assert repo.restore(b.id).read() == small


def test_a_flipped_byte_is_named_and_repaired(big_repo):
    repo, path, (a, big), _ = big_repo
    file = path / repo.restore_plan(a).packs[5]
    victim = file.stem
    raw = bytearray(file.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    file.write_bytes(bytes(raw))
    standard = repo.verify("standard")
    assert {e.pack for e in standard.errors} == {victim}
    assert any(e.kind == "pack_checksum" for e in standard.errors)
    full = repo.verify("full")
    corrupt = [e for e in full.errors if e.kind == "chunk_corrupt"]
    assert len(corrupt) == 1 and corrupt[0].pack == victim and corrupt[0].chunk
    with pytest.raises(ca.CorruptionError):
        repo.restore(a.id).read()
    assert repo.repair().packs_repaired == [victim]
    assert repo.verify("full").ok
    assert repo.restore(a.id).read() == big


def test_two_losses_in_a_group_are_unrecoverable_and_name_the_snapshots(big_repo):
    repo, path, (a, _), (b, small) = big_repo
    first_two = sorted(packs(path).values(), key=lambda p: p.stat().st_mtime_ns)[:2]
    for p in first_two:
        p.unlink()
    report = repo.repair()
    assert not report.ok
    assert {u.pack for u in report.unrecoverable} == {p.stem for p in first_two}
    assert all(u.snapshots == [a.id] for u in report.unrecoverable)
    assert repo.restore(b.id).read() == small
    with pytest.raises(ca.CorruptionError):
        repo.restore(a.id).read()


def test_reindex_after_losing_every_index_and_idx_file(big_repo):
    repo, path, (a, big), (b, small) = big_repo
    for p in list((path / "index").iterdir()) + list((path / "packs").rglob("*.idx")):
        p.unlink()
    with ca.Repository.open(path, PASSPHRASE) as fresh:
        result = fresh.reindex()
        assert result.packs_indexed == len(packs(path))
        assert len(result.idx_rebuilt) == len(packs(path))
        assert fresh.restore(a.id).read() == big
        assert fresh.restore(b.id).read() == small
        assert fresh.verify("full").ok


def _days(repo, n: int, start: datetime):
    out = []
    shared = random_bytes(2 * MiB, 100)
    for i in range(n):
        data = shared + random_bytes(MiB + i * 1000, 200 + i)
        out.append((repo.ingest(data, name="db", time=start + timedelta(days=i)), data))
    return out


def test_prune_dry_run_matches_the_real_run_and_frees_what_it_says(tmp_path: Path):
    path = tmp_path / "repo"
    with ca.Repository.init(path, PASSPHRASE, pack_size=MiB, **FAST_KDF) as repo:
        snaps = _days(repo, 8, datetime(2026, 1, 1, 12, tzinfo=timezone.utc))
        before = du(path)
        dry = repo.prune(keep_last=2, keep_weekly=2, dry_run=True)
        assert du(path) == before
        real = repo.prune(keep_last=2, keep_weekly=2)
        assert (dry.kept, dry.removed, dry.removed_packs, dry.freed_bytes) == (
            real.kept,
            real.removed,
            real.removed_packs,
            real.freed_bytes,
        )
        assert dry.dry_run and not real.dry_run
        # Newest two, plus the newest of each of the two newest ISO weeks
        # (W02: the 8th, W01: the 4th).
        assert real.kept == [snaps[7][0].id, snaps[6][0].id, snaps[3][0].id]
        assert real.removed_snapshots == 5 == len(real.removed)
        assert real.freed_bytes == before - du(path) > 0
        for snap, data in (snaps[7], snaps[6], snaps[3]):
            assert repo.restore(snap.id).read() == data
        assert repo.verify("full").ok
        assert {s.id for s in repo.list_snapshots()} == set(real.kept)


def test_prune_needs_a_rule_and_accepts_the_mission_aliases(repo):
    repo.ingest(b"only")
    with pytest.raises(ca.InvalidArgumentError, match="retention rule"):
        repo.prune()
    for bad in (-2, 1.5, "3", True):
        with pytest.raises(ca.InvalidArgumentError, match="keep_last"):
            repo.prune(keep_last=bad)
    with pytest.raises(ca.InvalidArgumentError, match="duration"):
        repo.prune(keep_within="30")
    with pytest.raises(ca.InvalidArgumentError, match="group"):
        repo.prune(keep_last=1, group_by="hostname")
    with pytest.raises(ca.InvalidArgumentError, match="keep-tag"):
        repo.prune(keep_tag="db")
    assert len(repo.list_snapshots()) == 1
    assert repo.prune(keep_days=1, dry_run=True).kept == [repo.list_snapshots()[0].id]


class _Reader:
    """A source whose first read runs `during`: something happens mid-ingest."""

    def __init__(self, data: bytes, during):
        self.data, self.during, self.done = data, during, False

    def read(self, n: int) -> bytes:
        if not self.done:
            self.done = True
            self.during()
        chunk, self.data = self.data[:n], self.data[n:]
        return chunk


def test_prune_while_an_ingest_holds_its_lock_is_refused(repo_path: Path):
    ca.Repository.init(repo_path, PASSPHRASE, **FAST_KDF).close()
    ingester = ca.Repository.open(repo_path, PASSPHRASE)
    pruner = ca.Repository.open(repo_path, PASSPHRASE)
    ingester.ingest(b"old", name="db")
    errors = []

    def prune_now():
        try:
            pruner.prune(keep_last=1)
        except ca.LockedError as e:
            errors.append(e)

    snap = ingester.ingest(_Reader(b"new data", prune_now), name="db")
    assert len(errors) == 1 and "ingest" in str(errors[0])
    assert ingester.restore(snap.id).read() == b"new data"
    assert len(pruner.prune(keep_last=1).removed) == 1


def test_a_lock_of_a_killed_process_is_stale_and_unlock_removes_it(repo_path: Path):
    ca.Repository.init(repo_path, PASSPHRASE, **FAST_KDF).close()
    assert die_holding_a_lock(repo_path, "os.kill(os.getpid(), 9)") == -9
    (lock,) = (repo_path / "locks").iterdir()
    with ca.Repository.open(repo_path, PASSPHRASE) as repo:
        assert repo.unlock() == [f"locks/{lock.name}"]
        assert list((repo_path / "locks").iterdir()) == []
        with repo.lock(exclusive=False):
            assert repo.unlock() == []
            assert len(repo.unlock(force=True)) == 1


def test_two_processes_ingesting_at_once_both_succeed(repo_path: Path):
    ca.Repository.init(repo_path, PASSPHRASE, pack_size=MiB, **FAST_KDF).close()
    code = (
        "import containerarchive as ca, random, sys\n"
        f"r = ca.Repository.open(sys.argv[1], {PASSPHRASE!r})\n"
        "data = random.Random(int(sys.argv[2])).randbytes(6 << 20)\n"
        "s = r.ingest(data, name='part')\n"
        "print(s.id)\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(repo_path), str(seed)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    ids = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    with ca.Repository.open(repo_path, PASSPHRASE) as repo:
        for seed, snap_id in zip((1, 2), ids):
            import random

            assert repo.restore(snap_id).read() == random.Random(seed).randbytes(6 << 20)
        result = repo.verify("full")
        assert result.ok, result.errors


def test_cli_verify_repair_prune_unlock(tmp_path: Path, big_repo):
    repo, path, (a, big), _ = big_repo
    env = {
        **os.environ,
        "CONTAINERARCHIVE_REPOSITORY": str(path),
        "CONTAINERARCHIVE_PASSWORD": PASSPHRASE,
    }

    def cli(*args, check=True):
        p = subprocess.run(
            [sys.executable, "-m", "containerarchive", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check:
            assert p.returncode == 0, p.stderr
        return p

    out = json.loads(cli("verify", "--level", "full", "--json").stdout)
    assert out["ok"] and out["stats"]["packs_checked"] >= 25
    victim = sorted(packs(path).values())[0]
    victim.unlink()
    bad = cli("verify", "--level", "quick", "--json", check=False)
    assert bad.returncode == 1
    assert {e["pack"] for e in json.loads(bad.stdout)["errors"]} == {victim.stem}
    rep = json.loads(cli("repair", "--json").stdout)
    assert rep["packs_repaired"] == [victim.stem] and rep["ok"]
    assert cli("verify").returncode == 0
    pool = ("--group-by", "")  # the two snapshots have different items: one pool
    dry = json.loads(cli("prune", "--keep-last", "1", *pool, "--dry-run", "--json").stdout)
    assert dry["dry_run"] and len(dry["removed"]) == 1
    assert "removed 1 snapshots" in cli("prune", "--keep-last", "1", *pool).stdout
    assert json.loads(cli("unlock", "--json").stdout) == {"removed": [], "reasons": {}, "kept": []}
    assert cli("reindex").returncode == 0


def test_restore_plan_lists_exactly_what_an_item_needs(tmp_path: Path):
    path = tmp_path / "repo"
    with ca.Repository.init(path, PASSPHRASE, pack_size=MiB, **FAST_KDF) as repo:
        a, b = random_bytes(3 * MiB, 1), random_bytes(3 * MiB, 2)
        snap = repo.ingest_multi([{"source": a, "name": "a"}, {"source": b, "name": "b"}])
        plan = repo.restore_plan(snap, item="b")
        assert plan.complete and plan.missing == []
        assert plan.files[0].path == "config.json"
        assert 0 < len(plan.packs) < len(packs(path))
        assert plan.total_bytes == sum((path / f.path).stat().st_size for f in plan.files)
        # A copy holding only those files restores the item.
        copy = tmp_path / "copy"
        for f in plan.files:
            (copy / f.path).parent.mkdir(parents=True, exist_ok=True)
            (copy / f.path).write_bytes((path / f.path).read_bytes())
        with ca.Repository.open(copy, PASSPHRASE) as partial:
            assert partial.restore(snap.id, item="b").read() == b
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "containerarchive",
            "restore-plan",
            snap.id[:8],
            "--item",
            "b",
            "--json",
            "--repo",
            str(path),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "CONTAINERARCHIVE_PASSWORD": PASSPHRASE},
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["total_bytes"] == plan.total_bytes
