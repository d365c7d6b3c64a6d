"""S3-compatible storage, against a real S3 API server on 127.0.0.1 (moto)."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

import containerarchive as ca
from conftest import FAST_KDF, sql_dump

s3server = pytest.importorskip("s3server")
pytest.importorskip("moto.server", reason="moto[server] is a test dependency")
pytest.importorskip("boto3", reason="boto3 is a test dependency")

BUCKET = "backups"
PASS = "s3 passphrase"


@pytest.fixture(scope="module")
def s3_env():
    with s3server.moto_server() as env:
        s3server.make_bucket(env, BUCKET)
        yield env


@pytest.fixture
def s3(s3_env, monkeypatch):
    """A fresh repository location in the bucket, with this process pointed at the server."""
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}"


def _keys(env, prefix: str) -> dict[str, int]:
    c = s3server.client(env)
    out: dict[str, int] = {}
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/"):
        for o in page.get("Contents", []):
            out[o["Key"][len(prefix) + 1 :]] = o["Size"]
    return out


def test_init_ingest_restore_and_verify_in_a_bucket(s3, s3_env, tmp_path):
    dump = sql_dump(120_000, seed=7)
    with ca.Repository.init(s3, PASS, pack_size=1 << 20, **FAST_KDF) as repo:
        assert repo.location == s3
        with pytest.raises(ca.InvalidArgumentError, match="object storage"):
            _ = repo.path
        first = repo.ingest(dump, name="shop-primary-db.sql", tags={"db": "shop-primary-cluster"})
        second = repo.ingest(dump + b"-- one more line\n", name="shop-primary-db.sql")
        assert second.reused_chunks > 0
    prefix = s3.split("/", 3)[3]
    objects = _keys(s3_env, prefix)
    assert "config.json" in objects and any(k.startswith("keys/") for k in objects)
    packs = [k for k in objects if k.endswith(".pack")]
    assert len(packs) >= 2, "a 1 MiB pack size spreads the dump over several packs"
    assert any(k.startswith("parity/") for k in objects)
    with ca.Repository.open(s3, PASS) as repo:
        with repo.restore(first.id) as f:
            assert f.read() == dump
        repo.restore_to(second.id, tmp_path / "second.sql")
        assert (tmp_path / "second.sql").read_bytes() == dump + b"-- one more line\n"
        result = repo.verify("full")
        assert result.ok, result.errors
        assert result.stats.packs_checked == len(packs)
        assert repo.stats().snapshots == 2
    # Encrypted at rest: no plaintext in any object. The markers are long enough that random
    # ciphertext never holds one by chance (a 4-byte marker did once in a few MB of packs).
    c = s3server.client(s3_env)
    for key in objects:
        body = c.get_object(Bucket=BUCKET, Key=f"{prefix}/{key}")["Body"].read()
        for marker in (b"INSERT INTO orders", b"shop-primary-cluster", b"shop-primary-db.sql"):
            assert marker not in body, f"{key} holds {marker!r} in plaintext"


def test_two_processes_ingest_into_one_bucket_at_once(s3, s3_env):
    with ca.Repository.init(s3, PASS, pack_size=1 << 20, **FAST_KDF):
        pass
    env = {**os.environ, **s3_env, "CONTAINERARCHIVE_PASSWORD": PASS}
    streams = [os.urandom(6 << 20) + sql_dump(30_000, seed=i) for i in range(2)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "containerarchive",
                "--repo",
                s3,
                "ingest",
                "-",
                "--name",
                f"stream{i}",
                "--json",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for i in range(2)
    ]
    outs = [p.communicate(input=data, timeout=300) for p, data in zip(procs, streams)]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err.decode()
    ids = [json.loads(out)["id"] for out, _ in outs]
    with ca.Repository.open(s3, PASS) as repo:
        assert {s.id for s in repo.list_snapshots()} == set(ids)
        for sid, data in zip(ids, streams):
            with repo.restore(sid) as f:
                assert hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest()
        assert repo.verify("full").ok
    prefix = s3.split("/", 3)[3]
    assert not [k for k in _keys(s3_env, prefix) if k.startswith("locks/")]


def test_prune_and_repair_of_a_deleted_pack_in_a_bucket(s3, s3_env):
    versions = [os.urandom(3 << 20) for _ in range(3)]
    with ca.Repository.init(s3, PASS, pack_size=1 << 20, **FAST_KDF) as repo:
        snaps = [repo.ingest(v, name="vol.img") for v in versions]
        result = repo.prune(keep_last=2)
        assert result.removed == [snaps[0].id] and result.removed_packs >= 1
        assert repo.verify("full").ok
    prefix = s3.split("/", 3)[3]
    pack = sorted(k for k in _keys(s3_env, prefix) if k.endswith(".pack"))[0]
    s3server.client(s3_env).delete_object(Bucket=BUCKET, Key=f"{prefix}/{pack}")
    with ca.Repository.open(s3, PASS) as repo:
        broken = repo.verify("quick")
        assert not broken.ok and any(e.pack and e.pack in pack for e in broken.errors)
        report = repo.repair()
        assert report.ok and len(report.packs_repaired) == 1
        assert repo.verify("full").ok
        for snap, data in zip(snaps[1:], versions[1:]):
            with repo.restore(snap.id) as f:
                assert f.read() == data
    assert pack in _keys(s3_env, prefix), "the pack is back, byte for byte (verify full)"


def test_concurrent_inits_never_overwrite_each_other(s3, s3_env):
    # Every init reads config.json (absent), derives its key, then creates config.json with a
    # conditional put: exactly one wins, the others see RepositoryExistsError, and the winner's
    # repository opens with its passphrase only.
    n = 6
    barrier = threading.Barrier(n)
    outcomes: list[object] = [None] * n

    def init(i: int) -> None:
        barrier.wait()
        try:
            ca.Repository.init(s3, f"pass {i}", **FAST_KDF).close()
            outcomes[i] = "ok"
        except ca.RepositoryExistsError as e:
            outcomes[i] = e

    threads = [threading.Thread(target=init, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, o in enumerate(outcomes) if o == "ok"]
    assert len(winners) == 1, outcomes
    assert all(isinstance(o, ca.RepositoryExistsError) for o in outcomes if o != "ok")
    with ca.Repository.open(s3, f"pass {winners[0]}") as repo:
        assert len(repo.list_keys()) == 1, "losers withdrew their key files"
    loser = next(i for i in range(n) if i != winners[0])
    with pytest.raises(ca.WrongPassphraseError):
        ca.Repository.open(s3, f"pass {loser}")
    # And the server really enforces create-only puts (what the engine relies on).
    c = s3server.client(s3_env)
    prefix = s3.split("/", 3)[3]
    with pytest.raises(c.exceptions.ClientError, match="PreconditionFailed"):
        c.put_object(Bucket=BUCKET, Key=f"{prefix}/config.json", Body=b"{}", IfNoneMatch="*")


def test_a_missing_bucket_is_named_on_open_and_created_by_init(s3_env, monkeypatch):
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    bucket = f"fresh-{uuid.uuid4().hex[:8]}"
    with pytest.raises(
        ca.RepositoryNotFoundError, match=f"the bucket of s3://{bucket}/repo does not exist"
    ):
        ca.Repository.open(f"s3://{bucket}/repo", PASS)
    with pytest.raises(ca.RepositoryNotFoundError, match="config.json is missing") as info:
        ca.Repository.open(f"s3://{BUCKET}/never-created", PASS)
    assert "bucket" not in str(info.value), "the bucket exists: only the repository is missing"
    # Like `restic init`, init creates a missing bucket.
    with ca.Repository.init(f"s3://{bucket}/repo", PASS, **FAST_KDF) as repo:
        repo.ingest(b"into a new bucket", name="x")
    names = [b["Name"] for b in s3server.client(s3_env).list_buckets()["Buckets"]]
    assert bucket in names
    with ca.Repository.open(f"s3://{bucket}/repo", PASS) as repo:
        assert repo.restore(repo.list_snapshots()[0].id).read() == b"into a new bucket"
    with pytest.raises(ca.InvalidArgumentError, match="gs://"):
        ca.Repository.open("gs://bucket/repo", PASS)


def test_the_cli_works_against_a_bucket(s3, s3_env, tmp_path):
    env = {**os.environ, **s3_env, "CONTAINERARCHIVE_PASSWORD": PASS}

    def cli(*args: str, data: bytes | None = None) -> bytes:
        proc = subprocess.run(
            [sys.executable, "-m", "containerarchive", "--repo", s3, *args],
            input=data,
            capture_output=True,
            env=env,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr.decode()
        return proc.stdout

    cli("init")
    cli("ingest", "-", "--name", "db.sql", data=sql_dump(5_000, 1))
    assert cli("restore", "latest") == sql_dump(5_000, 1)
    assert json.loads(cli("verify", "--level", "full", "--json"))["ok"]
    assert json.loads(cli("stats", "--json"))["repository"] == s3


def test_large_reads_are_split_into_concurrent_parts_and_reassembled(s3):
    # 16 MiB packs: a restore batch reads more than 8 MiB of one pack in one range, which the
    # S3 storage fetches as several parts at once and puts back together in order.
    data = os.urandom(20 << 20)
    with ca.Repository.init(s3, PASS, pack_size=16 << 20, **FAST_KDF) as repo:
        snap = repo.ingest(data, name="big.bin")
    with ca.Repository.open(s3, PASS) as repo:
        with repo.restore(snap.id) as f:
            assert hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest()
        assert repo.verify("full").ok


# -- concurrency in a bucket (docs/RELIABILITY.md §4) ----------------------------------------


def _cli(s3: str, env: dict[str, str], *args: str, data: bytes | None = None):
    return subprocess.run(
        [sys.executable, "-m", "containerarchive", "--repo", s3, *args],
        input=data,
        capture_output=True,
        env=env,
        timeout=300,
    )


def test_a_long_lived_repository_in_a_bucket_sees_another_process_prune(s3, s3_env):
    env = {**os.environ, **s3_env, "CONTAINERARCHIVE_PASSWORD": PASS}
    x, y = os.urandom(5 << 20), os.urandom(5 << 20)
    with ca.Repository.init(s3, PASS, pack_size=1 << 20, **FAST_KDF) as service:
        first = service.ingest(x, name="d")
        service.ingest(y, name="d")
        assert service.restore(first.id).read() == x
        pruned = _cli(s3, env, "prune", "--keep-last", "1")
        assert pruned.returncode == 0, pruned.stderr.decode()
        again = service.ingest(x, name="d")
        assert again.new_chunks > 0, "chunks of deleted packs are stored again"
        assert service.restore(again.id).read() == x
        assert service.verify("standard").ok


def test_a_stopped_ingest_into_a_bucket_commits_nothing_once_prune_took_its_data(
    s3, s3_env, tmp_path
):
    # S3's Last-Modified has whole seconds: a 4 s stale age, a 9 s pause.
    env = {
        **os.environ,
        **s3_env,
        "CONTAINERARCHIVE_PASSWORD": PASS,
        "CONTAINERARCHIVE_LOCK_STALE_AFTER": "4s",
    }
    x, y = os.urandom(12 << 20), os.urandom(4 << 20)
    with ca.Repository.init(s3, PASS, pack_size=1 << 20, **FAST_KDF) as repo:
        repo.ingest(x, name="d", tags={"data": "x"})
        repo.ingest(y, name="d", tags={"data": "y"})
    (tmp_path / "x").write_bytes(x)
    marker = tmp_path / "read-all"
    a = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "containerarchive",
            "--repo",
            s3,
            "ingest",
            "--exec",
            "sh -c " + shlex.quote(f"cat {tmp_path / 'x'}; touch {marker}; sleep 2"),
            "--name",
            "d",
            "--tag",
            "data=x",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1)
        os.kill(a.pid, signal.SIGSTOP)
        time.sleep(9)
        pruned = _cli(s3, env, "prune", "--keep-last", "1")
        assert pruned.returncode == 0, pruned.stderr.decode()
        os.kill(a.pid, signal.SIGCONT)
        _, err = a.communicate(timeout=120)
    finally:
        a.kill()
    assert a.returncode == 13, err.decode()
    with ca.Repository.open(s3, PASS) as repo:
        for snap in repo.list_snapshots():
            assert repo.restore(snap.id).read() == {"x": x, "y": y}[snap.tags["data"]]
        assert repo.verify("standard").ok


def test_a_restore_from_a_bucket_completes_while_prune_rewrites_its_packs(s3, s3_env):
    env = {**os.environ, **s3_env, "CONTAINERARCHIVE_PASSWORD": PASS}
    x = os.urandom(16 << 20)
    z = os.urandom(24 << 20) + b"".join(x[i : i + (1 << 19)] for i in range(0, len(x), 1 << 20))
    with ca.Repository.init(s3, PASS, pack_size=1 << 20, **FAST_KDF) as repo:
        repo.ingest(x, name="d")
        repo.ingest(z, name="d")
    restore = subprocess.Popen(
        [sys.executable, "-m", "containerarchive", "--repo", s3, "restore", "latest"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert restore.stdout is not None
    got = bytearray(restore.stdout.read(1 << 20))
    pruned = _cli(s3, env, "prune", "--keep-last", "1")
    assert pruned.returncode == 0, pruned.stderr.decode()
    while block := restore.stdout.read(1 << 20):
        got += block
    assert restore.wait(timeout=120) == 0
    assert bytes(got) == z


def test_delta_nights_in_a_bucket_restore_byte_identical(s3, tmp_path):
    """Delta encoding on object storage: bases are read with the chunks (ranged GETs), and the
    last night restores exactly, also to a file."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from gen import oltp_night

    nights = [b"".join(oltp_night(40_000, n)) for n in (1, 2, 3)]
    with ca.Repository.init(s3, PASS, pack_size=1 << 20, **FAST_KDF) as repo:
        snaps = [repo.ingest(data, name="db.sql") for data in nights]
        assert snaps[1].delta_chunks > 0 and snaps[2].delta_chunks > 0
    with ca.Repository.open(s3, PASS) as repo:
        assert repo.restore(snaps[2].id).read() == nights[2]
        repo.restore_to(snaps[1].id, tmp_path / "out", item="db.sql")
        assert (tmp_path / "out").read_bytes() == nights[1]
        assert repo.verify(level="full").ok
