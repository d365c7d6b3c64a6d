"""Delta encoding (issue 17), as a user meets it: nightly dumps of an OLTP database whose rows
change a little each night are stored as deltas, and every way of reading them back (Python,
the CLI to stdout, object storage, the browser) gives the night's bytes exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import containerarchive as ca
from conftest import FAST_KDF, PASSPHRASE

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from gen import oltp_night  # noqa: E402

ROWS = 60_000
try:
    import pandas  # noqa: F401

    FRAMES = True
except ImportError:
    FRAMES = False
CLI = [sys.executable, "-m", "containerarchive"]


@pytest.fixture(scope="module")
def nights() -> list[bytes]:
    return [b"".join(oltp_night(ROWS, n)) for n in (1, 2, 3, 4)]


def stored(repo: ca.Repository, nights: list[bytes]) -> list[ca.Snapshot]:
    return [
        repo.ingest(data, name="db.sql", time=f"2026-11-0{i}T02:00:00+00:00")
        for i, data in enumerate(nights, 1)
    ]


def test_nights_after_the_first_are_stored_as_deltas_far_smaller_than_copies(tmp_path, nights):
    with (
        ca.Repository.init(tmp_path / "delta", PASSPHRASE, **FAST_KDF) as on,
        ca.Repository.init(tmp_path / "copies", PASSPHRASE, delta=False, **FAST_KDF) as off,
    ):
        assert on.delta and not off.delta
        assert "delta" in on.config["features"]["read"]
        assert "delta" not in off.config.get("features", {}).get("read", [])
        completed: list[ca.IngestComplete] = []
        on.on("ingest:complete", completed.append)
        with_delta, without = stored(on, nights), stored(off, nights)
        # The event and the notebook frame carry the delta figures of the snapshot.
        assert [(e.delta_chunks, e.delta_stored_size) for e in completed] == [
            (s.delta_chunks, s.delta_stored_size) for s in with_delta
        ]
        if FRAMES:
            frame = on.snapshots_frame()
            assert frame["delta_chunks"].tolist() == [s.delta_chunks for s in with_delta]
        for a, b, data in zip(with_delta[1:], without[1:], nights[1:]):
            assert a.delta_chunks > 0 and b.delta_chunks == 0
            assert a.delta_stored_size < a.delta_original_size / 10
            assert a.stored_size * 4 < b.stored_size, (a.stored_size, b.stored_size)
            assert on.restore(a.id).read() == data
        assert on.verify(level="full").ok
        st = on.stats()
        assert st.delta_chunks == sum(s.delta_chunks for s in with_delta) > 0
        assert st.delta_stored_bytes == sum(s.delta_stored_size for s in with_delta)
        assert off.stats().delta_chunks == 0


def test_the_cli_restores_a_delta_night_to_stdout_and_plans_its_bases(tmp_path, nights, cli_env):
    env = {**os.environ, **cli_env}
    run = subprocess.run
    assert run([*CLI, "init"], env=env, capture_output=True).returncode == 0
    for i, data in enumerate(nights[:3], 1):
        r = run(
            [*CLI, "ingest", "-", "--name", "db.sql", "--tag", f"night={i}", "--json"],
            input=data,
            env=env,
            capture_output=True,
        )
        assert r.returncode == 0, r.stderr
    snap = json.loads(r.stdout)
    assert snap["delta_chunks"] > 0 and snap["delta_stored_size"] > 0
    out = run([*CLI, "restore", "latest"], env=env, capture_output=True)
    assert out.returncode == 0 and out.stdout == nights[2]
    plan = json.loads(
        run([*CLI, "restore-plan", "latest", "--json"], env=env, capture_output=True).stdout
    )
    assert plan["complete"] is True
    repo = Path(cli_env["CONTAINERARCHIVE_REPOSITORY"])
    with ca.Repository.open(repo, cli_env["CONTAINERARCHIVE_PASSWORD"]) as r:
        first = r.list_snapshots(tags={"night": "1"})[0]
        first_packs = set(r.restore_plan(first.id).packs)
    # Bases live in night 1's packs: restoring night 3 needs some of them.
    assert first_packs & {f["path"] for f in plan["files"]}
    shown = run([*CLI, "show", "latest"], env=env, capture_output=True, text=True).stdout
    assert "delta" in shown


def test_init_without_delta_stays_readable_by_older_versions_and_can_turn_it_on(
    tmp_path, nights, cli_env
):
    env = {**os.environ, **cli_env}
    r = subprocess.run([*CLI, "init", "--no-delta"], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "delta off" in r.stdout
    repo = Path(cli_env["CONTAINERARCHIVE_REPOSITORY"])
    config = json.loads((repo / "config.json").read_text())
    assert config["features"].get("read", []) == []
    with ca.Repository.open(repo, cli_env["CONTAINERARCHIVE_PASSWORD"]) as r:
        first = r.ingest(nights[0], name="db.sql")
        r.enable_delta()
        assert r.delta
        # Night 1's chunks carry no features: night 2 is stored whole, night 3 against it.
        second = r.ingest(nights[1], name="db.sql")
        third = r.ingest(nights[2], name="db.sql")
        assert second.delta_chunks == 0 and third.delta_chunks > 0
        assert [r.restore(s.id).read() for s in (first, second, third)] == nights[:3]
    assert "delta" in json.loads((repo / "config.json").read_text())["features"]["read"]


def test_forgetting_the_night_holding_the_bases_keeps_later_nights(repo_path, nights):
    with ca.Repository.init(repo_path, PASSPHRASE, pack_size=1 << 20, **FAST_KDF) as r:
        snaps = stored(r, nights)
        r.forget([snaps[0].id])
        for s, data in zip(snaps[1:], nights[1:]):
            assert r.restore(s.id).read() == data
        assert r.verify(level="full").ok


def test_a_lost_base_names_every_night_that_needs_it_and_repair_brings_it_back(repo_path, nights):
    with ca.Repository.init(repo_path, PASSPHRASE, pack_size=1 << 20, **FAST_KDF) as r:
        snaps = stored(r, nights[:3])
        first_packs = set(r.restore_plan(snaps[0].id).packs)
        later_packs = set(r.restore_plan(snaps[2].id).packs)
        victim = sorted(first_packs & later_packs)[0]
        (repo_path / victim).unlink()
        result = r.verify(level="standard")
        assert not result.ok
        named = " ".join(f"{e.snapshot} {e.message}" for e in result.errors)
        assert snaps[0].id[:8] in named and snaps[2].id[:8] in named
        with pytest.raises(ca.ContainerArchiveError):
            r.restore(snaps[2].id).read()
        repaired = r.repair()
        assert repaired.packs_repaired and not repaired.unrecoverable
        assert r.restore(snaps[2].id).read() == nights[2]
        assert r.verify(level="full").ok


def test_a_damaged_delta_or_base_is_an_error_never_wrong_bytes(repo_path, nights):
    with ca.Repository.init(repo_path, None, pack_size=1 << 20) as r:
        snaps = stored(r, nights[:2])
        plan = r.restore_plan(snaps[1].id)
    for pack in plan.packs:
        original = (repo_path / pack).read_bytes()
        damaged = bytearray(original)
        damaged[len(damaged) // 3] ^= 0x20
        (repo_path / pack).write_bytes(bytes(damaged))
        with ca.Repository.open(repo_path) as r:
            try:
                restored = r.restore(snaps[1].id).read()
            except ca.ContainerArchiveError:
                pass
            else:
                assert restored == nights[1], f"wrong bytes with {pack} damaged"
        (repo_path / pack).write_bytes(original)
