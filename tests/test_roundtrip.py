"""Ingest and restore: every kind of source and size comes back byte-identical."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import containerarchive as ca
from conftest import FAST_KDF, PASSPHRASE, random_bytes, sql_dump


@pytest.mark.parametrize(
    "data",
    [b"", b"x", b"tiny input\n", sql_dump(40_000), random_bytes(5 << 20, 1)],
    ids=["empty", "one-byte", "tiny", "sql-3MB", "random-5MB"],
)
@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_every_size_round_trips_in_every_compression(tmp_path: Path, data: bytes, compression):
    with ca.Repository.init(tmp_path / "r", PASSPHRASE, compression, **FAST_KDF) as repo:
        snap = repo.ingest(data, name="blob")
        assert snap.original_size == len(data)
        assert snap.items[0].size == len(data)
        with repo.restore(snap.id) as stream:
            assert isinstance(stream, io.BufferedIOBase)
            assert stream.read() == data


def test_sources_can_be_paths_file_objects_and_pipes(repo, tmp_path: Path):
    data = sql_dump(20_000, seed=4)
    src = tmp_path / "dump.sql"
    src.write_bytes(data)
    by_path = repo.ingest(src, name="db.sql")
    by_str = repo.ingest(str(src), name="db.sql")
    with open(src, "rb") as f:
        by_file = repo.ingest(f, name="db.sql")
    by_buffer = repo.ingest(bytearray(data), name="db.sql")
    proc = subprocess.Popen(["cat", str(src)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    by_pipe = repo.ingest(proc.stdout, name="db.sql")
    proc.wait()
    for snap in (by_path, by_str, by_file, by_buffer, by_pipe):
        assert repo.restore(snap.id).read() == data
    assert by_path.new_chunks > 0
    assert all(s.new_chunks == 0 for s in (by_str, by_file, by_buffer, by_pipe))


def test_restore_streams_in_small_reads(repo):
    data = random_bytes(3 << 20, 2)
    snap = repo.ingest(data)
    out = bytearray()
    with repo.restore(snap.id) as stream:
        while block := stream.read(10_007):
            out += block
    assert out == data


def test_restore_to_writes_a_file_and_replaces_it_whole(repo, tmp_path: Path):
    data = sql_dump(10_000)
    snap = repo.ingest(data, name="db.sql")
    target = tmp_path / "restored.sql"
    target.write_bytes(b"old content")
    with pytest.raises(ca.UnusableFileError, match="exists"):
        repo.restore_to(snap.id, target)
    assert target.read_bytes() == b"old content"
    assert repo.restore_to(snap.id, target, overwrite=True) == target
    assert target.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir() if ".partial" in p.name] == []


def test_a_multi_item_snapshot_restores_each_item_separately(repo, tmp_path: Path):
    db, conf = sql_dump(30_000, seed=1), random_bytes(200_000, 3)
    snap = repo.ingest_multi(
        [
            {"source": db, "name": "database.sql", "type": "database-dump"},
            {"source": io.BytesIO(conf), "name": "config.tar", "type": "tar"},
        ],
        tags={"host": "db1"},
    )
    assert [(i.name, i.type, i.size) for i in snap.items] == [
        ("database.sql", "database-dump", len(db)),
        ("config.tar", "tar", len(conf)),
    ]
    assert snap.original_size == len(db) + len(conf)
    assert repo.restore(snap.id, item="database.sql").read() == db
    assert repo.restore(snap.id, item="config.tar").read() == conf
    repo.restore_to(snap.id, tmp_path / "one.tar", item="config.tar")
    assert (tmp_path / "one.tar").read_bytes() == conf
    # Without an item: a directory with every item (a path ending in /), or a tar stream of
    # them (to a file, or as a stream).
    out = repo.restore_to(snap.id, f"{tmp_path}/all/")
    assert (out / "database.sql").read_bytes() == db
    assert (out / "config.tar").read_bytes() == conf
    tar_file = repo.restore_to(snap.id, tmp_path / "all.tar")
    with tarfile.open(tar_file) as tar:
        assert sorted(tar.getnames()) == ["config.tar", "database.sql"]
    with tarfile.open(fileobj=repo.restore(snap.id), mode="r|") as tar:
        got = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]
    assert got == {"database.sql": db, "config.tar": conf}


def test_an_unencrypted_repository_round_trips_too(plain_repo):
    data = sql_dump(5_000)
    snap = plain_repo.ingest(data)
    assert not plain_repo.encrypted
    assert plain_repo.restore(snap.id).read() == data


def test_repository_reopens_and_reads_what_another_process_wrote(repo_path: Path):
    code = (
        "import containerarchive as ca, sys\n"
        f"r = ca.Repository.init(sys.argv[1], {PASSPHRASE!r}, kdf_memory_kib=1024)\n"
        "print(r.ingest(b'from another process', name='x').id)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(repo_path)], check=True, capture_output=True, text=True
    )
    snap_id = out.stdout.strip()
    with ca.Repository.open(repo_path, PASSPHRASE) as repo:
        assert repo.restore(snap_id).read() == b"from another process"


def test_closed_repository_refuses_work(repo_path: Path):
    repo = ca.Repository.init(repo_path, **FAST_KDF)
    repo.close()
    with pytest.raises(ca.InvalidArgumentError, match="closed"):
        repo.list_snapshots()


def test_ingest_of_a_missing_file_names_it(repo, tmp_path: Path):
    missing = tmp_path / "nope.sql"
    with pytest.raises(ca.UnusableFileError) as e:
        repo.ingest(missing)
    assert str(missing) in str(e.value)
    assert repo.list_snapshots() == []
    # Checked before anything is written: not even a lock was taken.
    assert not (repo.path / "locks").exists() or not any((repo.path / "locks").iterdir())
    assert os.path.isdir(repo.path / "snapshots") is False or not any(
        (repo.path / "snapshots").iterdir()
    )


def test_file_objects_read_partly_before_ingest_keep_their_position(repo, tmp_path: Path):
    data = random_bytes(20 << 20, 8)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    with open(src, "rb") as f:
        assert f.read(1000) == data[:1000]  # the buffer now holds more than was read
        snap = repo.ingest(f, name="rest")
    assert repo.restore(snap.id).read() == data[1000:]
    with open(src, "rb", buffering=0) as raw:
        raw.seek(5)
        assert repo.restore(repo.ingest(raw).id).read() == data[5:]


def test_restore_to_a_file_descriptor(repo, tmp_path: Path):
    data = sql_dump(200_000, seed=2)
    snap = repo.ingest(data, name="db.sql")
    out = tmp_path / "out.sql"
    with open(out, "wb") as f:
        assert repo.restore_to_fd(snap.id, f.fileno()) == len(data)
    assert out.read_bytes() == data
    r, w = os.pipe()
    with open(r, "rb") as reader:
        import threading

        got = bytearray()
        t = threading.Thread(target=lambda: got.extend(reader.read()))
        t.start()
        repo.restore_to_fd(snap, w, item="db.sql")
        os.close(w)
        t.join()
    assert bytes(got) == data


def test_a_relative_repository_path_works_and_survives_a_change_of_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with ca.Repository.init("relative-repo", passphrase="pw", kdf_memory_kib=1024) as repo:
        snap = repo.ingest(b"relative", name="r")
        monkeypatch.chdir("/")
        with repo.restore(snap.id) as f:
            assert f.read() == b"relative"
        repo.ingest(b"again", name="r2")
    assert (tmp_path / "relative-repo" / "config.json").exists()
