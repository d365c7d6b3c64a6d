"""Listing and finding snapshots."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import containerarchive as ca


def test_snapshot_fields(repo):
    snap = repo.ingest(b"hello world", name="greeting.txt", type="text", tags={"env": "prod"})
    assert isinstance(snap, ca.Snapshot)
    assert len(snap.id) == 64 and all(c in "0123456789abcdef" for c in snap.id)
    assert snap.version == 1
    assert snap.tags == {"env": "prod"}
    assert (snap.original_size, snap.chunk_count, snap.new_chunks, snap.reused_chunks) == (
        11,
        1,
        1,
        0,
    )
    assert snap.stored_size > 11  # the encrypted chunk, its chunk list and the pack header
    assert snap.items == [ca.Item(name="greeting.txt", type="text", size=11, chunk_count=1)]
    assert snap.created_at.tzinfo is not None
    assert abs(snap.created_at - datetime.now(timezone.utc)) < timedelta(minutes=5)
    assert snap.id[:8] in repr(snap) and "greeting.txt" in repr(snap)
    assert repo.get_snapshot(snap.id) == snap


def test_an_explicit_time_is_kept_exactly(repo):
    tz = timezone(timedelta(hours=5, minutes=30))
    when = datetime(2026, 3, 1, 12, 34, 56, 123456, tzinfo=tz)
    snap = repo.ingest(b"x", time=when)
    again = repo.get_snapshot(snap.id)
    assert again.created_at == when
    assert again.created_at.utcoffset() == timedelta(hours=5, minutes=30)
    assert again.created_at.microsecond == 123456
    assert repo.ingest(b"y", time="2026-03-02T00:00:00Z").created_at == datetime(
        2026, 3, 2, tzinfo=timezone.utc
    )


def test_listing_filters_by_tags_and_time_range(repo):
    utc = timezone.utc
    a = repo.ingest(
        b"a", tags={"db": "main", "kind": "full"}, time=datetime(2026, 1, 1, tzinfo=utc)
    )
    b = repo.ingest(b"b", tags={"db": "main"}, time=datetime(2026, 2, 1, tzinfo=utc))
    c = repo.ingest(b"c", tags={"db": "logs"}, time=datetime(2026, 3, 1, tzinfo=utc))

    def ids(**kw):
        return [s.id for s in repo.list_snapshots(**kw)]

    assert ids() == [a.id, b.id, c.id]
    assert ids(tags={"db": "main"}) == [a.id, b.id]
    assert ids(tags={"db": "main", "kind": "full"}) == [a.id]
    assert ids(tags={"db": "none"}) == []
    assert ids(after=datetime(2026, 1, 15, tzinfo=utc)) == [b.id, c.id]
    assert ids(before="2026-02-15T00:00:00+00:00") == [a.id, b.id]
    assert ids(after="2026-01-15T00:00:00Z", before="2026-02-15T00:00:00Z") == [b.id]
    assert ids(after=b.created_at, before=b.created_at) == [b.id]
    assert repo.get_snapshot("latest").id == c.id


def test_prefixes_find_snapshots(repo):
    snap = repo.ingest(b"abc")
    assert repo.get_snapshot(snap.id[:6]).id == snap.id
    assert repo.get_snapshot(snap.id.upper()).id == snap.id
    with pytest.raises(ca.SnapshotNotFoundError):
        repo.get_snapshot("")
    with pytest.raises(ca.SnapshotNotFoundError):
        repo.get_snapshot("not-hex")


def test_listing_reads_no_pack(repo, monkeypatch):
    for i in range(3):
        repo.ingest(f"snapshot {i}".encode() * 1000)
    packs = list((repo.path / "packs").rglob("*.pack"))
    for p in packs:
        p.chmod(0o000)
        p.rename(p.with_suffix(".pack.hidden"))
    try:
        with ca.Repository.open(repo.path, "correct horse battery staple") as again:
            assert len(again.list_snapshots()) == 3
    finally:
        for p in packs:
            p.with_suffix(".pack.hidden").rename(p)


def test_snapshot_objects_and_dates_are_accepted_where_ids_and_times_are(repo):
    from datetime import date

    snap = repo.ingest(b"by object", time=datetime(2026, 4, 2, 12, tzinfo=timezone.utc))
    assert repo.get_snapshot(snap) == snap
    assert repo.restore(snap).read() == b"by object"
    assert [s.id for s in repo.list_snapshots(after=date(2026, 4, 1), before=date(2026, 4, 3))] == [
        snap.id
    ]
