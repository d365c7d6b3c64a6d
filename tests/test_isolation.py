"""One damaged file affects only what depends on it (issue 18): a damaged snapshot manifest
hides no other snapshot, `latest` is never a stale answer, prune deletes nothing it cannot
judge, and forget can remove the damaged snapshot itself."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import containerarchive as ca
from conftest import FAST_KDF, random_bytes

CLI = [sys.executable, "-m", "containerarchive"]


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=300
    )


def damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0x10
    elif how == "truncate":
        del data[len(data) // 3 :]
    elif how == "zero":
        data[8:] = bytes(len(data) - 8)
    path.write_bytes(bytes(data))


@pytest.fixture
def three_nights(tmp_path: Path, cli_env: dict[str, str]) -> list[tuple[str, bytes]]:
    """Three snapshots of item db.sql, one a day; returns (id, content), oldest first."""
    assert run(["init"], cli_env).returncode == 0
    nights = []
    for day in (1, 2, 3):
        src = tmp_path / f"night{day}.sql"
        src.write_bytes(random_bytes(300_000, day))
        proc = run(
            [
                "ingest",
                str(src),
                "--name",
                "db.sql",
                "--time",
                f"2026-11-0{day}T02:00:00Z",
                "--json",
            ],
            cli_env,
        )
        assert proc.returncode == 0, proc.stderr
        nights.append((json.loads(proc.stdout)["id"], src.read_bytes()))
    return nights


def manifest(cli_env: dict[str, str], snapshot_id: str, copy: bool = False) -> Path:
    root = Path(cli_env["CONTAINERARCHIVE_REPOSITORY"])
    where = root / "copies" / "snapshots" if copy else root / "snapshots"
    return where / f"{snapshot_id}.snapshot"


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize(("victim", "how"), [(1, "flip"), (2, "truncate"), (0, "zero")])
def test_the_cli_lists_every_readable_snapshot_and_names_the_damaged_one(
    tmp_path: Path,
    cli_env: dict[str, str],
    three_nights: list[tuple[str, bytes]],
    victim: int,
    how: str,
) -> None:
    bad = three_nights[victim][0]
    good = [sid for i, (sid, _) in enumerate(three_nights) if i != victim]
    # The manifest and its copy both: nothing of that snapshot can be read.
    damage(manifest(cli_env, bad), how)
    damage(manifest(cli_env, bad, copy=True), how)

    listing = run(["snapshots"], cli_env)
    assert listing.returncode == 1
    for sid in good:
        assert sid[:8] in listing.stdout
    assert bad[:8] not in listing.stdout
    assert f"snapshot {bad} cannot be read" in listing.stderr
    assert "Traceback" not in listing.stderr

    as_json = run(["snapshots", "--json"], cli_env)
    assert as_json.returncode == 1
    rows = json.loads(as_json.stdout)
    assert isinstance(rows, list)
    assert [r["id"] for r in rows] == good
    assert bad in as_json.stderr

    # `latest` cannot know whether the unreadable snapshot is newer: it says so, naming it.
    for cmd in (["restore", "latest", "-o", str(tmp_path / "x.sql")], ["show", "latest"]):
        proc = run(cmd, cli_env)
        assert proc.returncode == 1, (cmd, proc.stderr)
        assert bad in proc.stderr and "latest" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x.sql").exists()

    # An intact snapshot restores by id.
    for i, (sid, content) in enumerate(three_nights):
        if i == victim:
            continue
        out = tmp_path / f"restored-{i}.sql"
        proc = run(["restore", sid[:12], "-o", str(out)], cli_env)
        assert proc.returncode == 0, proc.stderr
        assert out.read_bytes() == content

    # Prune cannot know what the damaged snapshot references: it refuses, changing nothing.
    repo_dir = Path(cli_env["CONTAINERARCHIVE_REPOSITORY"])
    before = tree(repo_dir)
    proc = run(["prune", "--keep-last", "1"], cli_env)
    assert proc.returncode == 1
    assert bad in proc.stderr and "forget" in proc.stderr
    assert tree(repo_dir) == before

    # Totals count the readable snapshots and name the other, exiting 1 as the listing does.
    stats = run(["stats", "--json"], cli_env)
    assert stats.returncode == 1, stats.stderr
    doc = json.loads(stats.stdout)
    assert doc["snapshots"] == 2
    assert [u["id"] for u in doc["unreadable_snapshots"]] == [bad]
    assert f"snapshot {bad} cannot be read" in stats.stderr
    assert "Traceback" not in stats.stderr

    # Forgetting the damaged snapshot itself works; then everything is clean again.
    proc = run(["forget", bad], cli_env)
    assert proc.returncode == 0, proc.stderr
    listing = run(["snapshots", "--json"], cli_env)
    assert listing.returncode == 0, listing.stderr
    assert [r["id"] for r in json.loads(listing.stdout)] == good
    assert run(["verify", "--level", "full"], cli_env).returncode == 0
    proc = run(["restore", "latest", "-o", str(tmp_path / "latest.sql")], cli_env)
    assert proc.returncode == 0, proc.stderr
    newest = max(i for i in range(3) if i != victim)
    assert (tmp_path / "latest.sql").read_bytes() == three_nights[newest][1]


def test_python_lists_readable_snapshots_with_a_warning_naming_the_damaged_one(
    repo_path: Path,
) -> None:
    with ca.Repository.init(repo_path, passphrase="pw", **FAST_KDF) as repo:
        a = repo.ingest(b"first" * 1000, name="a", time="2026-11-01T00:00:00Z", host="h1")
        b = repo.ingest(b"second" * 1000, name="a", time="2026-11-02T00:00:00Z", host="h1")
    damage(repo_path / "snapshots" / f"{b.id}.snapshot", "flip")
    damage(repo_path / "copies" / "snapshots" / f"{b.id}.snapshot", "truncate")
    with ca.Repository.open(repo_path, passphrase="pw") as repo:
        with pytest.warns(ca.UnreadableSnapshotWarning) as caught:
            listed = repo.list_snapshots()
        assert [s.id for s in listed] == [a.id]
        warning = caught[0].message
        assert isinstance(warning, ca.UnreadableSnapshotWarning)
        assert [u.id for u in warning.snapshots] == [b.id]
        assert b.id in str(warning)

        scan = repo.scan_snapshots()
        assert isinstance(scan, ca.SnapshotScan)
        assert [s.id for s in scan.snapshots] == [a.id]
        assert [u.id for u in scan.unreadable] == [b.id]
        assert isinstance(scan.unreadable[0], ca.UnreadableSnapshot)
        assert scan.unreadable[0].reason

        for kwargs in ({}, {"host": "h1"}, {"tags": {"x": "y"}}):
            with pytest.raises(ca.CorruptionError, match=b.id) as caught_error:
                repo.get_snapshot("latest", **kwargs)
            assert caught_error.value.snapshot == b.id
            assert caught_error.value.snapshots == [b.id]
        with pytest.raises(ca.CorruptionError) as caught_error:
            repo.get_snapshot(b.id)
        assert caught_error.value.snapshot == b.id
        assert repo.get_snapshot(a.id).id == a.id
        assert repo.restore(a.id, "a").read() == b"first" * 1000

        with warnings.catch_warnings():
            warnings.simplefilter("error", ca.UnreadableSnapshotWarning)
            with pytest.raises(ca.UnreadableSnapshotWarning):
                repo.list_snapshots()
            # Totals and the notebook view name it and show the rest, without a warning.
            st = repo.stats()
            assert st.snapshots == 1 and st.original_bytes == 5000
            assert [u.id for u in st.unreadable_snapshots] == [b.id]
            assert st.to_dict()["unreadable_snapshots"][0]["id"] == b.id
            page = repo._repr_html_()
            assert a.id[:8] in page and b.id[:8] in page


@pytest.mark.parametrize("victim", ["config", "key", "manifest"])
@pytest.mark.parametrize("how", ["delete", "flip"])
def test_restore_plan_names_the_copy_that_serves_and_a_restore_from_those_files_works(
    tmp_path: Path,
    cli_env: dict[str, str],
    three_nights: list[tuple[str, bytes]],
    victim: str,
    how: str,
) -> None:
    root = Path(cli_env["CONTAINERARCHIVE_REPOSITORY"])
    sid, content = three_nights[1]
    file = {
        "config": root / "config.json",
        "key": next((root / "keys").iterdir()),
        "manifest": manifest(cli_env, sid),
    }[victim]
    copy = root / "copies" / ("config" if victim == "config" else file.relative_to(root))
    if how == "delete":
        file.unlink()
    else:
        damage(file, how)

    proc = run(["restore-plan", sid, "--json"], cli_env)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["complete"] and not plan["missing"] and not plan["damaged"], plan
    paths = [f["path"] for f in plan["files"]]
    assert str(file.relative_to(root)) not in paths
    assert str(copy.relative_to(root)) in paths

    # The files it names, and nothing else, open and restore the snapshot.
    partial = tmp_path / "partial"
    for p in paths:
        (partial / p).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / p, partial / p)
    out = tmp_path / "out.sql"
    proc = run(
        ["-r", str(partial), "restore", sid, "-o", str(out)],
        {"CONTAINERARCHIVE_PASSWORD": cli_env["CONTAINERARCHIVE_PASSWORD"]},
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == content

    # With the copy damaged too, nothing of that snapshot can be read: one line naming it.
    damage(copy, "truncate")
    proc = run(["restore-plan", sid, "--json"], cli_env)
    if victim == "manifest":
        assert proc.returncode == 1
        assert sid in json.loads(proc.stdout)["error"]["message"]
        assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("how", ["flip", "truncate", "zero", "delete", "swap"])
def test_a_damaged_manifest_is_read_from_its_copy_reported_by_verify_and_repaired(
    tmp_path: Path,
    cli_env: dict[str, str],
    three_nights: list[tuple[str, bytes]],
    how: str,
) -> None:
    bad = three_nights[1][0]
    target = manifest(cli_env, bad)
    if how == "delete":
        target.unlink()
    elif how == "swap":  # another valid manifest put in its place
        target.write_bytes(manifest(cli_env, three_nights[0][0]).read_bytes())
    else:
        damage(target, how)

    # Nothing is lost: everything lists and restores as before.
    listing = run(["snapshots", "--json"], cli_env)
    assert listing.returncode == 0, listing.stderr
    assert [r["id"] for r in json.loads(listing.stdout)] == [sid for sid, _ in three_nights]
    out = tmp_path / "restored-night2.sql"
    assert run(["restore", bad, "-o", str(out)], cli_env).returncode == 0
    assert out.read_bytes() == three_nights[1][1]

    # Verify names the damaged file; repair writes it again from its copy.
    check = run(["verify", "--json"], cli_env)
    assert check.returncode == 1
    assert bad in check.stdout and "repair restores" in check.stdout
    fixed = run(["repair", "--json"], cli_env)
    assert fixed.returncode == 0, fixed.stderr
    report = json.loads(fixed.stdout)
    assert report["metadata_restored"] == [f"snapshots/{bad}.snapshot"]
    assert report["lost_snapshots"] == []
    assert manifest(cli_env, bad).read_bytes() == manifest(cli_env, bad, copy=True).read_bytes()
    assert run(["verify", "--level", "full"], cli_env).returncode == 0


def test_repair_adds_copies_to_a_repository_made_without_them(
    tmp_path: Path,
    cli_env: dict[str, str],
    three_nights: list[tuple[str, bytes]],
) -> None:
    root = Path(cli_env["CONTAINERARCHIVE_REPOSITORY"])
    # As a repository made before metadata copies: no copies/, no feature.
    config = json.loads((root / "config.json").read_text())
    config["features"]["write"].remove("metadata-copies")
    (root / "config.json").write_text(json.dumps(config))
    shutil.rmtree(root / "copies")
    assert run(["verify"], cli_env).returncode == 0  # nothing is missing without the feature

    fixed = run(["repair", "--json"], cli_env)
    assert fixed.returncode == 0, fixed.stderr
    # 3 manifests, the key file and the config.
    assert json.loads(fixed.stdout)["copies_added"] == 5
    assert "metadata-copies" in json.loads((root / "config.json").read_text())["features"]["write"]
    for sid, _ in three_nights:
        assert manifest(cli_env, sid, copy=True).read_bytes() == manifest(cli_env, sid).read_bytes()
    assert run(["verify", "--level", "full"], cli_env).returncode == 0
    # From now on a lost manifest is read from its copy.
    manifest(cli_env, three_nights[2][0]).unlink()
    proc = run(["restore", "latest", "-o", str(tmp_path / "latest.sql")], cli_env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "latest.sql").read_bytes() == three_nights[2][1]


@pytest.mark.parametrize("how", ["flip", "truncate", "delete", "swap"])
def test_a_damaged_key_file_is_opened_from_its_copy_and_repaired(
    tmp_path: Path, cli_env: dict[str, str], three_nights: list[tuple[str, bytes]], how: str
) -> None:
    root = Path(cli_env["CONTAINERARCHIVE_REPOSITORY"])
    (key,) = (root / "keys").iterdir()
    copy = root / "copies" / "keys" / key.name
    assert copy.read_bytes() == key.read_bytes()
    if how == "delete":
        key.unlink()
    elif how == "swap":  # another valid key file of another repository put in its place
        other = tmp_path / "other"
        env = {**cli_env, "CONTAINERARCHIVE_REPOSITORY": str(other)}
        assert run(["init"], env).returncode == 0
        key.write_bytes(next((other / "keys").iterdir()).read_bytes())
    else:
        damage(key, how)

    out = tmp_path / "latest.sql"
    proc = run(["restore", "latest", "-o", str(out)], cli_env)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == three_nights[2][1]
    check = run(["verify", "--json"], cli_env)
    assert check.returncode == 1 and "key_file" in check.stdout and key.name[:16] in check.stdout
    fixed = run(["repair", "--json"], cli_env)
    assert fixed.returncode == 0, fixed.stderr
    assert json.loads(fixed.stdout)["metadata_restored"] == [f"keys/{key.name}"]
    assert key.read_bytes() == copy.read_bytes()
    assert run(["verify", "--level", "full"], cli_env).returncode == 0


def test_a_damaged_key_file_without_a_copy_is_reported_as_damaged_not_as_a_wrong_passphrase(
    cli_env: dict[str, str], three_nights: list[tuple[str, bytes]]
) -> None:
    root = Path(cli_env["CONTAINERARCHIVE_REPOSITORY"])
    (key,) = (root / "keys").iterdir()
    (root / "copies" / "keys" / key.name).unlink()
    damage(key, "flip")
    proc = run(["snapshots"], cli_env)
    assert proc.returncode == 1, proc.stderr  # damage, not exit 12 (wrong passphrase)
    assert "damaged" in proc.stderr and key.name in proc.stderr
    assert "wrong passphrase" not in proc.stderr
    # Whatever the passphrase: the damage is certain, the passphrase may be the damaged key's.
    proc = run(["snapshots"], {**cli_env, "CONTAINERARCHIVE_PASSWORD": "not it"})
    assert proc.returncode == 1 and "damaged" in proc.stderr


@pytest.mark.parametrize("how", ["id", "flip", "truncate", "delete", "swap"])
def test_a_damaged_config_is_read_from_its_sealed_copy_and_repaired(
    tmp_path: Path, cli_env: dict[str, str], three_nights: list[tuple[str, bytes]], how: str
) -> None:
    root = Path(cli_env["CONTAINERARCHIVE_REPOSITORY"])
    config = root / "config.json"
    original = config.read_bytes()
    if how == "id":  # one character of the repository id changed: still a valid config
        doc = json.loads(original)
        doc["id"] = ("0" if doc["id"][0] != "0" else "1") + doc["id"][1:]
        config.write_text(json.dumps(doc, indent=2))
    elif how == "delete":
        config.unlink()
    elif how == "swap":  # another repository's valid config.json
        other = tmp_path / "other"
        assert run(["init"], {**cli_env, "CONTAINERARCHIVE_REPOSITORY": str(other)}).returncode == 0
        config.write_bytes((other / "config.json").read_bytes())
    else:
        damage(config, how)

    # Nothing is lost, and nothing says "wrong passphrase".
    out = tmp_path / "latest.sql"
    proc = run(["restore", "latest", "-o", str(out)], cli_env)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == three_nights[2][1]
    check = run(["verify", "--json"], cli_env)
    assert check.returncode == 1 and '"config"' in check.stdout, check.stdout
    fixed = run(["repair", "--json"], cli_env)
    assert fixed.returncode == 0, fixed.stderr
    assert "config.json" in json.loads(fixed.stdout)["metadata_restored"]
    assert json.loads(config.read_bytes()) == json.loads(original)
    assert run(["verify", "--level", "full"], cli_env).returncode == 0
    # A wrong passphrase is still told as such (exit 12).
    proc = run(["snapshots"], {**cli_env, "CONTAINERARCHIVE_PASSWORD": "not the passphrase"})
    assert proc.returncode == 12, proc.stderr


def test_a_lost_key_file_can_be_removed_and_a_passphrase_changed_when_its_file_is_gone(
    tmp_path: Path, cli_env: dict[str, str], three_nights: list[tuple[str, bytes]]
) -> None:
    root = Path(cli_env["CONTAINERARCHIVE_REPOSITORY"])
    (first,) = (root / "keys").iterdir()
    add = run(["key", "add"], {**cli_env, "CONTAINERARCHIVE_NEW_PASSWORD": "second pw"})
    assert add.returncode == 0, add.stderr
    second = next(p for p in (root / "keys").iterdir() if p != first)
    # The second key file and its copy both damaged: lost; repair says so.
    damage(second, "flip")
    damage(root / "copies" / "keys" / second.name, "flip")
    lost = run(["repair", "--json"], cli_env)
    assert lost.returncode == 1 and json.loads(lost.stdout)["lost_key_files"] == [
        f"keys/{second.name}"
    ]
    # It can be removed, after which repair and verify are clean again.
    removed = run(["key", "remove", second.name[:8]], cli_env)
    assert removed.returncode == 0, removed.stderr
    assert run(["repair"], cli_env).returncode == 0
    assert run(["verify"], cli_env).returncode == 0
    # The passphrase in use changed while its key file is lost (its copy opens): it works.
    first.unlink()
    changed = run(["key", "passwd"], {**cli_env, "CONTAINERARCHIVE_NEW_PASSWORD": "third pw"})
    assert changed.returncode == 0, changed.stderr
    env3 = {**cli_env, "CONTAINERARCHIVE_PASSWORD": "third pw"}
    assert run(["snapshots"], env3).returncode == 0
    assert run(["snapshots"], cli_env).returncode == 12
    assert run(["verify", "--level", "full"], env3).returncode == 0


def test_turning_copies_on_drops_copies_an_older_program_left_behind(
    tmp_path: Path, cli_env: dict[str, str], three_nights: list[tuple[str, bytes]]
) -> None:
    root = Path(cli_env["CONTAINERARCHIVE_REPOSITORY"])
    config = json.loads((root / "config.json").read_text())
    config["features"]["write"].remove("metadata-copies")
    (root / "config.json").write_text(json.dumps(config))
    (root / "copies" / "config").unlink()
    # An older program's forget: the manifest goes, its copy stays (and its data is pruned).
    gone = three_nights[2][0]
    hidden = tmp_path / "hidden-copies"
    shutil.move(root / "copies", hidden)
    assert run(["forget", gone], cli_env).returncode == 0
    shutil.move(hidden, root / "copies")
    fixed = run(["repair", "--json"], cli_env)
    assert fixed.returncode == 0, fixed.stderr
    listing = run(["snapshots", "--json"], cli_env)
    assert listing.returncode == 0, listing.stderr
    assert [r["id"] for r in json.loads(listing.stdout)] == [sid for sid, _ in three_nights[:2]]
    assert not (root / "copies" / "snapshots" / f"{gone}.snapshot").exists()
    assert run(["verify", "--level", "full"], cli_env).returncode == 0


@pytest.mark.parametrize("what", ["fifo", "directory"])
@pytest.mark.parametrize("victim", ["manifest", "config-copy", "key"])
def test_something_other_than_a_file_in_place_of_one_is_damage_never_a_hang(
    tmp_path: Path,
    cli_env: dict[str, str],
    three_nights: list[tuple[str, bytes]],
    what: str,
    victim: str,
) -> None:
    root = Path(cli_env["CONTAINERARCHIVE_REPOSITORY"])
    path = {
        "manifest": manifest(cli_env, three_nights[2][0]),
        "config-copy": root / "copies" / "config",
        "key": next((root / "keys").iterdir()),
    }[victim]
    good = path.read_bytes()
    path.unlink()
    if what == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    # Every command answers (no read blocks on a FIFO without a writer) and the snapshots
    # still list and restore from the other version.
    listing = run(["snapshots", "--json"], cli_env)
    assert [r["id"] for r in json.loads(listing.stdout)] == [s for s, _ in three_nights]
    out = tmp_path / "latest.sql"
    proc = run(["restore", "latest", "-o", str(out)], cli_env)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == three_nights[2][1]
    assert run(["verify", "--level", "full"], cli_env).returncode == 1
    # Repair puts the file back in place of what was there.
    proc = run(["repair"], cli_env)
    assert proc.returncode == 0, proc.stderr
    assert path.is_file() and path.read_bytes() == good
    proc = run(["verify", "--level", "full"], cli_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_full_verify_of_an_emptied_pack_reports_it_and_repair_rebuilds_it(
    cli_env: dict[str, str], three_nights: list[tuple[str, bytes]]
) -> None:
    root = Path(cli_env["CONTAINERARCHIVE_REPOSITORY"])
    pack = next(root.glob("packs/data/*/*.pack"))
    good = pack.read_bytes()
    pack.write_bytes(b"")
    proc = run(["verify", "--level", "full", "--json"], cli_env)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "panicked" not in proc.stderr
    assert pack.stem in proc.stdout
    assert run(["repair"], cli_env).returncode == 0
    assert pack.read_bytes() == good


@pytest.mark.parametrize("what", ["fifo", "directory"])
def test_a_manifest_replaced_by_a_non_file_without_a_copy_is_named_and_forget_removes_it(
    tmp_path: Path,
    cli_env: dict[str, str],
    three_nights: list[tuple[str, bytes]],
    what: str,
) -> None:
    bad = three_nights[2][0]
    path = manifest(cli_env, bad)
    path.unlink()
    manifest(cli_env, bad, copy=True).unlink()
    if what == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    # Never overlooked: named as unreadable, `latest` refused, prune refuses.
    listing = run(["snapshots"], cli_env)
    assert listing.returncode == 1 and bad in listing.stderr, listing.stderr
    proc = run(["restore", "latest", "-o", str(tmp_path / "x")], cli_env)
    assert proc.returncode == 1 and bad in proc.stderr
    repo_dir = Path(cli_env["CONTAINERARCHIVE_REPOSITORY"])
    proc = run(["prune", "--keep-last", "1"], cli_env)
    assert proc.returncode == 1 and bad in proc.stderr, proc.stderr
    # `forget` of that snapshot removes it; then all is clean.
    proc = run(["forget", bad], cli_env)
    assert proc.returncode == 0, proc.stderr
    assert not path.exists()
    assert run(["verify", "--level", "full"], cli_env).returncode == 0
    assert (repo_dir / "config.json").exists()


def test_a_lock_file_replaced_by_a_fifo_blocks_like_a_held_lock_and_unlock_force_removes_it(
    tmp_path: Path, cli_env: dict[str, str], three_nights: list[tuple[str, bytes]]
) -> None:
    locks = Path(cli_env["CONTAINERARCHIVE_REPOSITORY"]) / "locks"
    locks.mkdir(exist_ok=True)
    fifo = locks / ("ab" * 32 + ".lock")
    os.mkfifo(fifo)
    src = tmp_path / "more.sql"
    src.write_bytes(random_bytes(50_000, 9))
    proc = run(["prune", "--keep-last", "1"], cli_env)
    assert proc.returncode == 11, proc.stderr  # locked, never a hang or a storage error
    assert fifo.name in proc.stderr
    proc = run(["unlock", "--force"], cli_env)
    assert proc.returncode == 0, proc.stderr
    assert not fifo.exists()
    assert run(["ingest", str(src), "--name", "more.sql"], cli_env).returncode == 0
