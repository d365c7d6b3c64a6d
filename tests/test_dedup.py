"""Deduplication across snapshots, as an ops person would check it."""

from __future__ import annotations

from pathlib import Path

import containerarchive as ca
from conftest import sql_dump


def test_the_same_stream_twice_stores_no_new_chunk(repo):
    data = sql_dump(60_000)
    first = repo.ingest(data)
    second = repo.ingest(data)
    assert first.new_chunks > 0 and first.reused_chunks == 0
    assert second.new_chunks == 0
    assert second.reused_chunks == second.chunk_count == first.chunk_count
    assert second.stored_size == 0


def _next_version(v1: bytes) -> bytes:
    """20 runs of 200 consecutive rows updated, 2000 rows inserted mid-file, 2000 appended."""
    lines = v1.splitlines(keepends=True)
    n = len(lines)
    out = []
    for i, line in enumerate(lines):
        if i == n // 2:
            out += [
                f"INSERT INTO orders VALUES ({n + j}, 'inserted');\n".encode() for j in range(2000)
            ]
        if i % (n // 20) < 200:
            out.append(f"INSERT INTO orders VALUES ({i}, 'updated row', 1.00);\n".encode())
        else:
            out.append(line)
    out += [f"INSERT INTO orders VALUES ({2 * n + j}, 'appended');\n".encode() for j in range(2000)]
    return b"".join(out)


def test_a_new_version_of_a_200MB_dump_reuses_most_chunks(tmp_path: Path, repo):
    v1 = sql_dump(2_600_000, marker="v1")
    assert len(v1) > 200_000_000
    v2 = _next_version(v1)
    (tmp_path / "v2.sql").write_bytes(v2)
    first = repo.ingest(v1, name="db.sql", type="database-dump")
    del v1
    second = repo.ingest(tmp_path / "v2.sql", name="db.sql", type="database-dump")
    assert second.reused_chunks / second.chunk_count >= 0.9, second
    assert second.stored_size < first.stored_size * 0.10, (first, second)
    repo.restore_to(second.id, tmp_path / "out.sql")
    assert (tmp_path / "out.sql").read_bytes() == v2
    with ca.Repository.open(repo.path, "correct horse battery staple") as again:
        assert again.restore(first.id).read() == sql_dump(2_600_000, marker="v1")
