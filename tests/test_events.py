"""Events: progress and outcomes delivered to subscribed callbacks."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import pytest

import containerarchive as ca
from conftest import sql_dump


def _subscribe(repo: ca.Repository, event: str) -> list:
    seen: list = []
    repo.on(event, seen.append)
    return seen


def _flip_byte_in_a_pack(repo_path: Path) -> Path:
    pack = next((repo_path / "packs" / "data").rglob("*.pack"))
    data = bytearray(pack.read_bytes())
    data[len(data) // 3] ^= 0x40
    pack.write_bytes(bytes(data))
    return pack


def test_subscribing_to_an_unknown_event_names_the_known_ones(repo):
    with pytest.raises(ca.InvalidArgumentError, match="ingest:progress"):
        repo.on("ingest:progres", print)
    with pytest.raises(ca.InvalidArgumentError, match="not callable"):
        repo.on("ingest:progress", 42)


def test_ingest_of_a_file_reports_progress_to_100_percent_and_completion(repo, tmp_path):
    src = tmp_path / "dump.sql"
    src.write_bytes(sql_dump(300_000, seed=1))
    progress = _subscribe(repo, "ingest:progress")
    complete = _subscribe(repo, "ingest:complete")
    snap = repo.ingest(src, name="dump.sql")
    assert progress, "no ingest:progress event"
    assert all(p.operation == "ingest" for p in progress)
    assert all(p.total_bytes == src.stat().st_size for p in progress)
    done = [p.bytes_processed for p in progress]
    assert done == sorted(done), "progress never goes back"
    assert progress[-1].bytes_processed == src.stat().st_size
    assert progress[-1].percentage == 100.0
    assert complete == [
        ca.IngestComplete(
            snap.id,
            snap.new_chunks,
            snap.reused_chunks,
            snap.original_size,
            snap.stored_size,
            snap.delta_chunks,
            snap.delta_original_size,
            snap.delta_stored_size,
        )
    ]


def test_a_pipe_of_unknown_length_reports_bytes_without_a_total(repo):
    r, w = os.pipe()
    data = os.urandom(6 << 20)

    def writer():
        with os.fdopen(w, "wb") as f:
            f.write(data)

    t = threading.Thread(target=writer)
    t.start()
    progress = _subscribe(repo, "ingest:progress")
    with os.fdopen(r, "rb") as f:
        repo.ingest(f, name="pipe")
    t.join()
    assert progress and all(p.total_bytes is None and p.percentage is None for p in progress)
    assert progress[-1].bytes_processed == len(data)


def test_several_items_add_up_and_bytes_or_readers_report_too(repo):
    progress = _subscribe(repo, "ingest:progress")
    a, b = os.urandom(5 << 20), os.urandom(3 << 20)
    repo.ingest_multi(
        [{"source": a, "name": "a"}, {"source": io.BytesIO(b), "name": "b"}],
    )
    assert progress[-1].bytes_processed == len(a) + len(b)
    assert progress[-1].total_bytes is None  # a BytesIO has no known length up front
    assert {p.message for p in progress} >= {"ingested"}


def test_callbacks_run_on_the_calling_thread(repo):
    threads = set()
    repo.on("ingest:progress", lambda p: threads.add(threading.get_ident()))
    repo.on("verify:progress", lambda p: threads.add(threading.get_ident()))
    repo.ingest(os.urandom(9 << 20), name="x")
    repo.verify("full")
    assert threads == {threading.get_ident()}


def test_an_exception_in_an_ingest_callback_commits_nothing_and_propagates(repo, repo_path):
    repo.ingest(b"first", name="first")

    class Boom(Exception):
        pass

    def explode(p):
        if p.bytes_processed > (4 << 20):
            raise Boom("progress bar broke")

    sub = repo.on("ingest:progress", explode)
    with pytest.raises(Boom, match="progress bar broke"):
        repo.ingest(os.urandom(20 << 20), name="second")
    sub.unsubscribe()
    assert [s.items[0].name for s in repo.list_snapshots()] == ["first"]
    assert not list((repo_path / "locks").glob("*")), "the aborted ingest left its lock"
    assert repo.ingest(b"third", name="third").items[0].name == "third"
    assert repo.verify("full").ok


def test_unsubscribe_stops_delivery_and_works_as_a_context_manager(repo):
    seen: list = []
    sub = repo.on("ingest:complete", seen.append)
    assert sub.active and "ingest:complete" in repr(sub)
    repo.ingest(b"one", name="one")
    sub.unsubscribe()
    sub.unsubscribe()  # twice is fine
    repo.ingest(b"two", name="two")
    assert len(seen) == 1 and not sub.active
    with repo.on("ingest:complete", seen.append):
        repo.ingest(b"three", name="three")
    repo.ingest(b"four", name="four")
    assert len(seen) == 2


def test_a_callback_may_unsubscribe_itself_while_being_called(repo):
    calls: list = []
    holder: dict = {}

    def once(event):
        calls.append(event)
        holder["sub"].unsubscribe()

    holder["sub"] = repo.on("ingest:complete", once)
    repo.ingest(b"a", name="a")
    repo.ingest(b"b", name="b")
    assert len(calls) == 1


def test_verify_reports_progress_and_each_error_with_the_pack(repo, repo_path):
    repo.ingest(sql_dump(100_000, seed=3), name="db.sql")
    progress = _subscribe(repo, "verify:progress")
    assert repo.verify("full").ok
    assert progress[-1].percentage == 100.0
    assert progress[-1].bytes_processed > 0 and progress[-1].total_bytes is None
    pack = _flip_byte_in_a_pack(repo_path)
    errors = _subscribe(repo, "verify:error")
    result = repo.verify("standard")
    assert not result.ok
    assert errors == result.errors
    assert any(e.pack and e.pack in pack.name for e in errors)


def test_an_exception_in_a_verify_callback_is_raised_after_verify_finished(repo):
    repo.ingest(os.urandom(1 << 20), name="x")
    calls = []

    def bad(p):
        calls.append(p)
        raise RuntimeError("callback failed")

    repo.on("verify:progress", bad)
    with pytest.raises(RuntimeError, match="callback failed"):
        repo.verify("full")
    assert calls[-1].percentage == 100.0, "verify ran to the end before raising"


def test_prune_reports_progress_with_messages(repo):
    for i in range(3):
        repo.ingest(os.urandom(3 << 20), name=f"v{i}")
    progress = _subscribe(repo, "prune:progress")
    result = repo.prune(keep_last=1, group_by=None)  # one pool: the items differ
    assert result.removed_snapshots == 2
    assert progress[0].message == "reading snapshots and index"
    assert progress[-1].message == "done" and progress[-1].percentage == 100.0
    assert progress[-1].bytes_processed == progress[-1].total_bytes > 0


def test_restore_reports_progress_for_files_descriptors_and_streams(repo, tmp_path):
    data = os.urandom(9 << 20)
    snap = repo.ingest(data, name="blob")
    progress = _subscribe(repo, "restore:progress")
    repo.restore_to(snap.id, tmp_path / "out")
    assert progress[-1].bytes_processed == len(data) and progress[-1].percentage == 100.0
    progress.clear()
    with open(tmp_path / "out2", "wb") as f:
        repo.restore_to_fd(snap.id, f.fileno())
    assert progress[-1].bytes_processed == len(data)
    progress.clear()
    with repo.restore(snap.id) as stream:
        assert stream.read() == data
    assert progress[-1].bytes_processed == len(data) and progress[-1].total_bytes == len(data)


def test_payloads_read_as_attributes_or_as_keys(repo):
    progress = _subscribe(repo, "ingest:progress")
    complete = _subscribe(repo, "ingest:complete")
    snap = repo.ingest(b"x" * 1000, name="k")
    p = progress[-1]
    assert p["bytes_processed"] == p.bytes_processed == 1000
    assert dict(p) == p.to_dict() and set(p.keys()) == {
        "operation",
        "bytes_processed",
        "total_bytes",
        "percentage",
        "message",
    }
    assert complete[0]["snapshot_id"] == snap.id and "new_chunks" in complete[0]
    with pytest.raises(KeyError):
        p["nope"]
    stats = repo.stats()
    assert stats["snapshots"] == 1 and stats["repository_bytes"] == stats.repository_bytes
    assert snap["id"] == snap.id and snap.items[0]["name"] == "k"
