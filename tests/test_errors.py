"""Every failure is its own exception class, names its object, and damages nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

import containerarchive as ca
from conftest import FAST_KDF, PASSPHRASE, die_holding_a_lock, random_bytes, tree_digest

ALL_ERRORS = [
    ca.WrongPassphraseError,
    ca.RepositoryNotFoundError,
    ca.RepositoryExistsError,
    ca.SnapshotNotFoundError,
    ca.AmbiguousSnapshotIdError,
    ca.ItemNotFoundError,
    ca.CorruptionError,
    ca.LockedError,
    ca.InvalidArgumentError,
    ca.StorageError,
    ca.UnsupportedFormatError,
]


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda c: c.__name__)
def test_every_error_is_a_containerarchive_error(cls):
    assert issubclass(cls, ca.ContainerArchiveError)


def test_opening_a_missing_repository_names_the_path(tmp_path: Path):
    with pytest.raises(ca.RepositoryNotFoundError, match=str(tmp_path / "none")) as e:
        ca.Repository.open(tmp_path / "none")
    assert e.value.location == str(tmp_path / "none")
    assert not (tmp_path / "none").exists()


def test_init_over_an_existing_repository_is_refused_and_changes_nothing(repo, repo_path: Path):
    before = tree_digest(repo_path)
    with pytest.raises(ca.RepositoryExistsError, match=str(repo_path)):
        ca.Repository.init(repo_path, "other", **FAST_KDF)
    assert tree_digest(repo_path) == before


def test_a_wrong_passphrase_is_refused_and_changes_nothing(repo, repo_path: Path):
    repo.ingest(b"data")
    before = tree_digest(repo_path)
    with pytest.raises(ca.WrongPassphraseError, match="wrong passphrase"):
        ca.Repository.open(repo_path, "not the passphrase")
    with pytest.raises(ca.WrongPassphraseError, match="passphrase is needed"):
        ca.Repository.open(repo_path)
    assert tree_digest(repo_path) == before


def test_an_unknown_snapshot_is_named(repo):
    repo.ingest(b"x")
    with pytest.raises(ca.SnapshotNotFoundError, match="0000000000") as e:
        repo.get_snapshot("0000000000")
    assert e.value.snapshot == "0000000000"
    with pytest.raises(ca.SnapshotNotFoundError):
        repo.restore("0000000000")


def test_an_ambiguous_prefix_lists_the_candidates(plain_repo):
    snaps = [plain_repo.ingest(str(i).encode()) for i in range(40)]
    first_digits = [s.id[0] for s in snaps]
    shared = next(d for d in first_digits if first_digits.count(d) > 1)
    with pytest.raises(ca.AmbiguousSnapshotIdError) as e:
        plain_repo.get_snapshot(shared)
    expected = sorted(s.id for s in snaps if s.id.startswith(shared))
    assert e.value.matches == expected
    assert all(m in str(e.value) for m in expected)
    # A longer, unique prefix works.
    assert plain_repo.get_snapshot(snaps[0].id[:12]).id == snaps[0].id


def test_an_unknown_item_names_item_snapshot_and_the_items_there(repo):
    snap = repo.ingest_multi([{"source": b"a", "name": "a.sql"}, {"source": b"b", "name": "b.tar"}])
    with pytest.raises(ca.ItemNotFoundError) as e:
        repo.restore(snap.id, item="c.sql")
    msg = str(e.value)
    assert "c.sql" in msg and snap.id in msg and "a.sql" in msg and "b.tar" in msg
    assert (e.value.item, e.value.snapshot, e.value.available) == (
        "c.sql",
        snap.id,
        ["a.sql", "b.tar"],
    )


def _packs(repo_path: Path) -> list[Path]:
    return sorted((repo_path / "packs" / "data").rglob("*.pack"))


def test_a_corrupted_pack_is_reported_naming_pack_and_chunk(repo, repo_path: Path):
    snap = repo.ingest(random_bytes(2 << 20, 9))
    pack = _packs(repo_path)[0]
    raw = bytearray(pack.read_bytes())
    raw[1000] ^= 0x10
    pack.chmod(0o644)
    pack.write_bytes(bytes(raw))
    with pytest.raises(ca.CorruptionError) as e:
        repo.restore(snap.id).read()
    assert pack.stem in str(e.value) and "chunk" in str(e.value)
    assert pack.stem in e.value.object


def test_a_missing_pack_is_reported_naming_it(repo, repo_path: Path):
    snap = repo.ingest(random_bytes(1 << 20, 5))
    pack = _packs(repo_path)[0]
    pack.unlink()
    with pytest.raises(ca.CorruptionError, match=f"{pack.stem}.*missing"):
        repo.restore_to(snap.id, repo_path.parent / "out.bin")
    assert not (repo_path.parent / "out.bin").exists()


def test_a_damaged_snapshot_manifest_is_reported_naming_it(repo, repo_path: Path):
    snap = repo.ingest(b"payload")
    f = repo_path / "snapshots" / f"{snap.id}.snapshot"
    f.write_bytes(f.read_bytes()[:-3])
    assert repo.get_snapshot(snap.id) == snap  # read from its copy
    copy = repo_path / "copies" / "snapshots" / f"{snap.id}.snapshot"
    copy.write_bytes(copy.read_bytes()[:-3])
    with pytest.raises(ca.CorruptionError, match=snap.id):
        repo.get_snapshot(snap.id)


def test_a_lock_held_elsewhere_blocks_ingest_and_names_its_holder(repo_path: Path):
    ca.Repository.init(repo_path, PASSPHRASE, **FAST_KDF).close()
    holder = ca.Repository.open(repo_path, PASSPHRASE)
    other = ca.Repository.open(repo_path, PASSPHRASE)
    with holder.lock(exclusive=True, operation="prune"):
        with pytest.raises(ca.LockedError, match="prune") as e:
            other.ingest(b"blocked")
        assert e.value.lock.startswith("locks/")
        assert "exclusive" in e.value.holder
        with pytest.raises(ca.LockedError):
            with other.lock(exclusive=False):
                pass
    snap = other.ingest(b"now it works")
    assert other.restore(snap.id).read() == b"now it works"
    assert list((repo_path / "locks").iterdir()) == []


def test_a_lock_left_by_a_dead_process_on_this_host_is_stale(repo_path: Path):
    ca.Repository.init(repo_path, PASSPHRASE, **FAST_KDF).close()
    assert die_holding_a_lock(repo_path) == 0
    assert len(list((repo_path / "locks").iterdir())) == 1
    with ca.Repository.open(repo_path, PASSPHRASE) as repo:
        assert repo.restore(repo.ingest(b"ok").id).read() == b"ok"


@pytest.mark.parametrize(
    "name", ["", "../escape", "/etc/passwd", "a/../../b", "nul\0byte", "a//b", "x" * 2000]
)
def test_unsafe_item_names_are_refused(repo, name: str):
    with pytest.raises(ca.InvalidArgumentError):
        repo.ingest(b"data", name=name)
    assert repo.list_snapshots() == []


def test_bad_tags_and_times_are_refused(repo):
    with pytest.raises(ca.InvalidArgumentError):
        repo.ingest(b"x", tags={"k": "bad\0value"})
    with pytest.raises(ca.InvalidArgumentError):
        repo.ingest(b"x", tags={"k": 1})  # type: ignore[dict-item]
    with pytest.raises(ca.InvalidArgumentError, match="ISO 8601"):
        repo.ingest(b"x", time="yesterday")
    with pytest.raises(ca.InvalidArgumentError, match="compression"):
        ca.Repository.init(repo.path.parent / "other", compression="lz5")
    with pytest.raises(TypeError):
        repo.ingest(12345)  # type: ignore[arg-type]
    assert repo.list_snapshots() == []


def test_an_unsupported_format_version_is_named(repo_path: Path):
    import json

    ca.Repository.init(repo_path, **FAST_KDF).close()
    cfg = repo_path / "config.json"
    doc = json.loads(cfg.read_text())
    doc["version"] = 99
    cfg.write_text(json.dumps(doc))
    # As a newer version would leave it (its sealed copy holds the same settings; the copy of
    # an older version's settings would win).
    (repo_path / "copies" / "config").unlink()
    with pytest.raises(ca.UnsupportedFormatError, match="99"):
        ca.Repository.open(repo_path)


def test_storage_failures_are_storage_errors_naming_the_file(repo, repo_path: Path):
    # A file where the snapshots directory belongs: every write there fails, even for root.
    (repo_path / "snapshots").write_bytes(b"in the way")
    with pytest.raises(ca.StorageError, match="snapshots/") as e:
        repo.ingest(b"cannot be committed")
    assert e.value.key.startswith("snapshots/")
    assert list((repo_path / "locks").iterdir()) == []


def test_every_error_name_the_core_gives_is_a_python_class():
    # core/src/error.rs `Error::name()` is the one table of class names (the Python binding and
    # the browser module both use it): each must be an exception of containerarchive.errors.
    import re
    from pathlib import Path

    import containerarchive.errors as errors

    source = (Path(__file__).resolve().parent.parent / "core" / "src" / "error.rs").read_text()
    table = source[source.index("pub fn name(&self)") :]
    table = table[: table.index("\n    }\n")]
    names = set(re.findall(r'=> "(\w+)"', table))
    assert len(names) >= 14
    for name in names:
        cls = getattr(errors, name, None)
        assert isinstance(cls, type) and issubclass(cls, errors.ContainerArchiveError), name
