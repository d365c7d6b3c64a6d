"""Retention per series (hosts, item sets, tags), restic's whole forget policy, forget by id,
and refusing inputs that would make a backup worthless (empty streams, empty passphrases)."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

import containerarchive as ca
from conftest import FAST_KDF, PASSPHRASE

CLI = [sys.executable, "-m", "containerarchive"]


def run(repo_path: Path, *args: str, stdin: bytes | None = None, env: dict | None = None):
    full = {**os.environ, "CONTAINERARCHIVE_PASSWORD": PASSPHRASE, **(env or {})}
    return subprocess.run(
        [*CLI, *args, "-r", str(repo_path)],
        input=stdin,
        capture_output=True,
        env=full,
        timeout=120,
    )


def two_series(repo: ca.Repository, nights: int = 10) -> None:
    """db=shop at 02:00 and db=crm at 02:05, one snapshot a night."""
    for d in range(1, nights + 1):
        repo.ingest(
            f"shop night {d}".encode(),
            name="shop.sql",
            tags={"db": "shop"},
            time=f"2026-03-{d:02}T02:00:00+00:00",
        )
        repo.ingest(
            f"crm night {d}".encode(),
            name="crm.sql",
            tags={"db": "crm"},
            time=f"2026-03-{d:02}T02:05:00+00:00",
        )


def test_two_nightly_series_are_retained_each_on_its_own(repo):
    two_series(repo)
    result = repo.prune(keep_daily=7, keep_weekly=4)
    per_db = {}
    for s in repo.list_snapshots():
        per_db[s.tags["db"]] = per_db.get(s.tags["db"], 0) + 1
    assert per_db == {"shop": 8, "crm": 8}
    assert len(result.groups) == 2
    for g in result.groups:
        assert g.key["host"] == socket.gethostname()
        assert g.key["items"] in (["shop.sql"], ["crm.sql"])
        assert len(g.kept) == 8 and len(g.removed) == 2
        assert g.kept[0].reasons == ["daily snapshot", "weekly snapshot"]
        assert g.kept[-1].reasons == ["weekly snapshot"]
    latest = repo.get_snapshot("latest", tags={"db": "shop"})
    assert repo.restore(latest).read() == b"shop night 10"
    # A second prune with the same policy changes nothing.
    again = repo.prune(keep_daily=7, keep_weekly=4)
    assert again.removed == []


def test_one_pool_is_the_old_behaviour_and_other_groupings(repo):
    two_series(repo)
    pooled = repo.prune(keep_daily=7, keep_weekly=4, group_by=None, dry_run=True)
    assert len(pooled.groups) == 1 and pooled.groups[0].key == {}
    assert pooled.groups[0].description == "all snapshots"
    by_tags = repo.prune(keep_last=1, group_by="tags", dry_run=True)
    assert sorted(g.key["tags"]["db"] for g in by_tags.groups) == ["crm", "shop"]
    by_host = repo.prune(keep_last=1, group_by=["host"], dry_run=True)
    assert len(by_host.groups) == 1 and len(by_host.kept) == 1
    with pytest.raises(ca.InvalidArgumentError, match="group by"):
        repo.prune(keep_last=1, group_by="paths,color")


def test_hosts_are_recorded_shown_and_filtered(repo):
    a = repo.ingest(b"a", name="db.sql")
    b = repo.ingest(b"b", name="db.sql", host="node-b")
    assert a.host == socket.gethostname() and b.host == "node-b"
    assert repo.get_snapshot(b.id).host == "node-b"
    assert [s.id for s in repo.list_snapshots(host="node-b")] == [b.id]
    assert repo.get_snapshot("latest", host=a.host).id == a.id
    with pytest.raises(ca.SnapshotNotFoundError, match="node-c"):
        repo.get_snapshot("latest", host="node-c")
    assert a.to_dict()["host"] == a.host and "host=" in repr(a)
    assert "node-b" in b._repr_html_()
    for bad in ("", " padded", "a\nb", "x" * 256):
        with pytest.raises(ca.InvalidArgumentError, match="host"):
            repo.ingest(b"x", host=bad)
    # The policy applies per host; a host filter leaves every other host's snapshots alone.
    for i in range(3):
        repo.ingest(f"b{i}".encode(), name="db.sql", host="node-b")
    r = repo.prune(keep_last=1, host="node-b")
    assert len(r.removed) == 3
    assert {s.host for s in repo.list_snapshots()} == {a.host, "node-b"}
    assert len(repo.list_snapshots(host=a.host)) == 1


def test_within_tags_and_unlimited(repo):
    for d in range(1, 11):
        repo.ingest(
            f"n{d}".encode(),
            name="db.sql",
            tags={"db": "shop", **({"release": "v1"} if d == 2 else {})},
            time=f"2026-03-{d:02}T02:00:00+00:00",
        )
    r = repo.prune(keep_within="3d", keep_tag="release=v1,db=shop", dry_run=True)
    reasons = {k.id: k.reasons for k in r.groups[0].kept}
    assert len(reasons) == 4
    assert sorted(map(tuple, reasons.values())) == sorted(
        [("within 3d",)] * 3 + [("has tags db=shop,release=v1",)]
    )
    assert repo.prune(keep_within=timedelta(days=3), dry_run=True).kept == r.kept[:3]
    r = repo.prune(keep_within_daily="1m", dry_run=True)
    assert len(r.kept) == 10
    assert r.groups[0].kept[-1].reasons == ["daily within 1m"]
    assert len(repo.prune(keep_monthly="unlimited", dry_run=True).kept) == 2
    assert len(repo.prune(keep_last=-1, dry_run=True).kept) == 10
    with pytest.raises(ca.InvalidArgumentError, match="keeps none"):
        repo.prune(keep_tag={"release": "v2"})
    assert len(repo.list_snapshots()) == 10


def test_forget_removes_exactly_the_named_snapshots(repo):
    snaps = [repo.ingest(os.urandom(200_000), name="db") for _ in range(4)]
    with pytest.raises(ca.InvalidArgumentError, match="latest"):
        repo.forget("latest")
    with pytest.raises(ca.SnapshotNotFoundError):
        repo.forget(["00000000"])
    dry = repo.forget([snaps[1].id[:12], snaps[2]], dry_run=True)
    assert set(dry.removed) == {snaps[1].id, snaps[2].id} and dry.dry_run
    assert len(repo.list_snapshots()) == 4
    r = repo.forget([snaps[1].id[:12], snaps[2]])
    assert r.freed_bytes > 0 and r.groups == []
    assert [s.id for s in repo.list_snapshots()] == [snaps[0].id, snaps[3].id]
    assert repo.verify("full").ok


def test_the_cli_prunes_per_group_and_forgets(repo_path):
    ca.Repository.init(repo_path, PASSPHRASE, **FAST_KDF).close()
    for d in range(1, 6):
        for db, minute in (("shop", "00"), ("crm", "05")):
            p = run(
                repo_path,
                "ingest",
                "-",
                "--name",
                f"{db}.sql",
                "--tag",
                f"db={db}",
                "--host",
                "pghost1",
                "--time",
                f"2026-03-{d:02}T02:{minute}:00Z",
                stdin=f"{db} {d}".encode(),
            )
            assert p.returncode == 0, p.stderr
    p = run(repo_path, "snapshots", "--host", "pghost1")
    assert p.stdout.decode().count("pghost1") == 10 and "HOST" in p.stdout.decode()
    assert "host      pghost1" in run(repo_path, "show", "latest").stdout.decode()
    p = run(repo_path, "prune", "--keep-last", "2", "--dry-run")
    text = p.stdout.decode()
    assert p.returncode == 0, p.stderr
    assert "snapshots of host pghost1, items [crm.sql]:" in text
    assert "snapshots of host pghost1, items [shop.sql]:" in text
    assert text.count("last snapshot") == 4 and "dry run: would keep 4 snapshots" in text
    doc = json.loads(run(repo_path, "prune", "--keep-last", "2", "--dry-run", "--json").stdout)
    assert [g["key"] for g in doc["groups"]] == [
        {"host": "pghost1", "items": ["crm.sql"]},
        {"host": "pghost1", "items": ["shop.sql"]},
    ]
    assert doc["groups"][0]["kept"][0]["reasons"] == ["last snapshot"]
    for args, message in (
        (["--keep-last", "-2"], "unlimited"),
        (["--keep-within", "30"], "not a duration"),
        (["--keep-within", "1w"], "not a duration"),
        (["--keep-last", "1", "--group-by", "color"], "group by"),
        (["--keep-tag", "nope"], "KEY=VALUE"),
        ([], "no retention rule"),
        (["--keep-tag", "db=none"], "keeps none"),
    ):
        p = run(repo_path, "prune", *args)
        assert p.returncode == 2, (args, p.stderr)
        assert message in p.stderr.decode() and "Traceback" not in p.stderr.decode()
    p = run(repo_path, "prune", "--keep-within", "2d", "--keep-monthly", "unlimited")
    assert p.returncode == 0, p.stderr
    # Per series: the 4th and 5th (within 2 days of the 5th), March, and the oldest.
    assert len(ca.Repository.open(repo_path, PASSPHRASE).list_snapshots()) == 6
    first = ca.Repository.open(repo_path, PASSPHRASE).list_snapshots()[0]
    p = run(repo_path, "forget", "latest")
    assert p.returncode == 2 and "latest" in p.stderr.decode()
    p = run(repo_path, "forget", "ffffffff")
    assert p.returncode == 3
    p = run(repo_path, "forget", first.id[:10])
    assert p.returncode == 0 and first.id[:8] in p.stdout.decode()
    assert len(ca.Repository.open(repo_path, PASSPHRASE).list_snapshots()) == 5


# -- inputs that would make a backup worthless --------------------------------------------


def test_an_empty_stream_is_refused_and_commits_nothing(repo, tmp_path):
    before = len(repo.list_snapshots())
    with pytest.raises(ca.EmptyInputError, match="'db.sql'") as e:
        repo.ingest(io.BytesIO(b""), name="db.sql")
    assert e.value.item == "db.sql"
    with pytest.raises(ca.EmptyInputError):
        repo.ingest_command([sys.executable, "-c", "pass"], name="dump.sql")
    with pytest.raises(ca.EmptyInputError, match="'b'"):
        repo.ingest_multi([{"source": b"data", "name": "a"}, {"source": io.BytesIO(), "name": "b"}])
    r, w = os.pipe()
    os.close(w)
    with open(r, "rb") as pipe, pytest.raises(ca.EmptyInputError):
        repo.ingest(pipe, name="pipe")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"exec 3>{fifo}; exit 1"])
    with pytest.raises(ca.EmptyInputError, match="not a regular file"):
        repo.ingest(fifo, name="fifo")
    writer.wait()
    assert len(repo.list_snapshots()) == before
    # Given outright, or allowed, an empty item is stored.
    empty = tmp_path / "empty.sql"
    empty.write_bytes(b"")
    for snap in (
        repo.ingest(empty, name="empty.sql"),
        repo.ingest(b"", name="nothing"),
        repo.ingest(io.BytesIO(), name="allowed", allow_empty=True),
    ):
        assert snap.original_size == 0 and snap.dedup_percent == 0.0
        assert repo.restore(snap).read() == b""


def test_the_cli_refuses_a_failed_producer_with_exit_5(repo_path, tmp_path):
    ca.Repository.init(repo_path, PASSPHRASE, **FAST_KDF).close()
    env = {**os.environ, "CONTAINERARCHIVE_PASSWORD": PASSPHRASE}
    cmd = " ".join(CLI)
    for shell in (
        f"sh -c 'exit 1' | {cmd} ingest - --name db.sql -r {repo_path}",
        f"{cmd} ingest --exec true --name db.sql -r {repo_path}",
        f"echo data > {tmp_path}/f; {cmd} ingest {tmp_path}/f - -r {repo_path} < /dev/null",
    ):
        p = subprocess.run(["bash", "-c", shell], capture_output=True, env=env, timeout=60)
        assert p.returncode == 5, (shell, p.stderr)
        err = p.stderr.decode()
        assert "no data" in err and "--allow-empty" in err and "Traceback" not in err
    p = run(repo_path, "ingest", "-", "--json", stdin=b"")
    assert p.returncode == 5
    assert json.loads(p.stdout)["error"]["type"] == "EmptyInputError"
    assert ca.Repository.open(repo_path, PASSPHRASE).list_snapshots() == []
    p = run(repo_path, "ingest", "-", "--allow-empty", stdin=b"")
    assert p.returncode == 0 and "deduplicated" not in p.stdout.decode()
    (tmp_path / "empty").write_bytes(b"")
    p = run(repo_path, "ingest", str(tmp_path / "empty"))
    assert p.returncode == 0 and "empty" in p.stdout.decode()
    assert len(ca.Repository.open(repo_path, PASSPHRASE).list_snapshots()) == 2


@pytest.mark.parametrize("how", ["file", "newline-file", "env"])
def test_an_empty_passphrase_is_refused_wherever_one_is_chosen(tmp_path, how):
    target = tmp_path / "repo"
    pw = tmp_path / "pw"
    pw.write_text({"file": "", "newline-file": "\n", "env": ""}[how])
    env = {**os.environ}
    env.pop("CONTAINERARCHIVE_PASSWORD", None)
    args = [*CLI, "init", "-r", str(target)]
    if how == "env":
        env["CONTAINERARCHIVE_PASSWORD"] = ""
    else:
        args += ["--password-file", str(pw)]
    p = subprocess.run(args, capture_output=True, env=env, timeout=60)
    assert p.returncode == 12, p.stderr
    assert "passphrase is empty" in p.stderr.decode()
    assert not (target / "config.json").exists()
    # The same refusal for key add and key passwd, and in the Python API.
    ca.Repository.init(target, PASSPHRASE, **FAST_KDF).close()
    for sub in ("add", "passwd"):
        p = subprocess.run(
            [*CLI, "key", sub, "-r", str(target), "--new-password-file", str(pw)],
            capture_output=True,
            env={**env, "CONTAINERARCHIVE_PASSWORD": PASSPHRASE},
            timeout=60,
        )
        assert p.returncode == 12 and "passphrase is empty" in p.stderr.decode(), p.stderr
    with ca.Repository.open(target, PASSPHRASE) as repo:
        for bad in ("", b"", "  "):
            with pytest.raises(ca.InvalidArgumentError, match="passphrase is empty"):
                repo.add_key(bad)
            with pytest.raises(ca.InvalidArgumentError, match="passphrase is empty"):
                repo.change_passphrase(bad)
        assert len(repo.list_keys()) == 1
    with pytest.raises(ca.InvalidArgumentError, match="passphrase is empty"):
        ca.Repository.init(tmp_path / "other", "")


def test_bad_values_are_one_line_errors_never_tracebacks(repo, repo_path, tmp_path):
    repo.ingest(b"x", name="db.sql")
    for kwargs in (
        {"keep_daily": 10**30},
        {"keep_last": 1, "keep_tag": 5},
        {"keep_last": 1, "group_by": 5},
    ):
        with pytest.raises(ca.InvalidArgumentError):
            repo.prune(**kwargs)
    for ids in (None, [5], 5):
        with pytest.raises(ca.InvalidArgumentError):
            repo.forget(ids)
    for args, code in (
        (["prune", "--keep-daily", "9223372036854775808"], 2),
        (["prune", "--keep-last", "abc"], 2),
        (["forget"], 2),
        (["ingest", str(tmp_path)], 6),
    ):
        p = run(repo_path, *args, "--json")
        err = p.stderr.decode()
        assert p.returncode == code, (args, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (args, err)
        assert json.loads(p.stdout)["error"]["exit_code"] == code
    p = subprocess.run(
        ["bash", "-c", f"{' '.join(CLI)} ingest - -r {repo_path} <&-"],
        capture_output=True,
        env={**os.environ, "CONTAINERARCHIVE_PASSWORD": PASSPHRASE},
        timeout=60,
    )
    assert p.returncode == 2 and b"standard input" in p.stderr and b"Traceback" not in p.stderr


def test_no_encryption_is_the_explicit_choice(tmp_path):
    env = {**os.environ, "CONTAINERARCHIVE_PASSWORD": "from-the-environment"}
    p = subprocess.run(
        [*CLI, "init", "-r", str(tmp_path / "a"), "--no-encryption"], capture_output=True, env=env
    )
    assert p.returncode == 0 and b"UNENCRYPTED" in p.stdout
    assert json.loads((tmp_path / "a" / "config.json").read_text())["encryption"] == "none"
    (tmp_path / "pw").write_text("secret\n")
    p = subprocess.run(
        [*CLI, "init", "-r", str(tmp_path / "b"), "--no-encryption", "-p", str(tmp_path / "pw")],
        capture_output=True,
        env=env,
    )
    assert p.returncode == 2 and b"contradict" in p.stderr


def test_prune_points_out_series_told_apart_only_by_tags(repo_path):
    ca.Repository.init(repo_path, PASSPHRASE, **FAST_KDF).close()
    with ca.Repository.open(repo_path, PASSPHRASE) as repo:
        for d in range(1, 4):
            for db in ("shop", "crm"):
                repo.ingest(db.encode(), name="db.sql", tags={"db": db}, time=f"2026-03-0{d}")
    p = run(repo_path, "prune", "--keep-last", "1", "--dry-run")
    assert "--group-by host,items,tags" in p.stdout.decode()
    p = run(repo_path, "prune", "--keep-last", "1", "--group-by", "host,items,tags", "--dry-run")
    assert "note:" not in p.stdout.decode() and p.stdout.decode().count("last snapshot") == 2
