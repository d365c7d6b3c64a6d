"""Object storage as it behaves in the field, replayed on 127.0.0.1: moto's S3 server behind a
fault-injecting proxy (tests/faultproxy.py) for throttling and lost replies, a bucket shared
with another program's files, objects moved to an archive storage class, and the mistakes of
configuration users make (a closed port, http against https, the bucket in the endpoint URL,
credentials only in ~/.aws/credentials)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid

import pytest

from conftest import sql_dump

s3server = pytest.importorskip("s3server")
faultproxy = pytest.importorskip("faultproxy")
pytest.importorskip("moto.server", reason="moto[server] is a test dependency")
pytest.importorskip("boto3", reason="boto3 is a test dependency")

BUCKET = "shared"
CLI = [sys.executable, "-m", "containerarchive"]
PASS = "object store pass"


@pytest.fixture(scope="module")
def upstream():
    with s3server.moto_server() as env:
        s3server.make_bucket(env, BUCKET)
        yield env


@pytest.fixture(scope="module")
def proxied(upstream):
    with faultproxy.proxy(upstream) as (env, faults):
        yield env, faults


@pytest.fixture
def faults(proxied):
    _, f = proxied
    f.clear()
    yield f
    f.clear()


def _env(env: dict[str, str], **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    base.pop("CONTAINERARCHIVE_RETRY_STORAGE", None)
    return {**base, **env, "CONTAINERARCHIVE_PASSWORD": PASS, **extra}


def ca(env: dict[str, str], *args: str, input: bytes | None = None, timeout: float = 240):
    return subprocess.run([*CLI, *args], env=env, input=input, capture_output=True, timeout=timeout)


def _location() -> str:
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}"


def _objects(upstream, location: str) -> dict[str, bytes]:
    """Every object under the location's prefix, by key relative to it."""
    prefix = location.split("/", 3)[3]
    c = s3server.client(upstream)
    out = {}
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/"):
        for o in page.get("Contents", []):
            out[o["Key"][len(prefix) + 1 :]] = o
    return out


def _body(upstream, location: str, key: str) -> bytes:
    prefix = location.split("/", 3)[3]
    got = s3server.client(upstream).get_object(Bucket=BUCKET, Key=f"{prefix}/{key}")
    return got["Body"].read()


def _put(upstream, location: str, key: str, body: bytes) -> None:
    prefix = location.split("/", 3)[3]
    s3server.client(upstream).put_object(Bucket=BUCKET, Key=f"{prefix}/{key}", Body=body)


# -- throttling ---------------------------------------------------------------------------


def test_a_slowdown_episode_is_waited_out_and_reported(proxied, faults):
    env = _env(proxied[0])
    loc = _location()
    assert ca(env, "-r", loc, "init").returncode == 0
    faults.throttle(seconds=6)
    start = time.monotonic()
    r = ca(env, "-r", loc, "ingest", "-", "--name", "db.sql", input=sql_dump(20_000, seed=1))
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - start >= 5
    err = r.stderr.decode()
    assert "waiting for" in err and "503 SlowDown" in err and "answers again" in err
    assert faults.count(match=lambda m, p, h: True) > 0
    r = ca(env, "-r", loc, "restore", "latest")
    assert r.returncode == 0 and r.stdout == sql_dump(20_000, seed=1)


@pytest.mark.parametrize("how", ["flag", "env"])
def test_the_retry_budget_is_settable_and_named_when_exhausted(proxied, faults, how):
    env = _env(proxied[0])
    loc = _location()
    assert ca(env, "-r", loc, "init").returncode == 0
    faults.throttle(seconds=30, status=500, code="InternalError")
    start = time.monotonic()
    if how == "flag":
        r = ca(env, "-r", loc, "--retry-storage", "3s", "snapshots")
    else:
        r = ca({**env, "CONTAINERARCHIVE_RETRY_STORAGE": "3s"}, "-r", loc, "snapshots")
    took = time.monotonic() - start
    faults.clear()
    assert r.returncode == 1 and 2.5 < took < 25, (took, r.stderr)
    line = r.stderr.decode().strip().splitlines()[-1]
    assert "500 InternalError" in line and "--retry-storage" in line and "Traceback" not in line


def test_the_budget_counts_the_outage_not_each_request(proxied, faults):
    # The store fails for good partway through an ingest of many packs: the command gives up
    # one budget after the first failure (not one budget per request), naming the cause.
    env = _env(proxied[0])
    loc = _location()
    assert ca(env, "-r", loc, "init").returncode == 0
    faults.refuse(count=10_000, match=r"^PUT .*/packs/")
    start = time.monotonic()
    r = ca(
        env,
        "-r",
        loc,
        "--retry-storage",
        "4s",
        "ingest",
        "-",
        "--name",
        "big.sql",
        input=sql_dump(200_000, seed=5),
    )
    took = time.monotonic() - start
    faults.clear()
    assert r.returncode == 1 and took < 40, (took, r.stderr)
    line = r.stderr.decode().strip().splitlines()[-1]
    assert "kept failing" in line and "--retry-storage" in line, line
    assert "TLS" not in line and "https://" not in line, "it answered before: no setup hint"


def test_init_creates_its_bucket_through_throttling(proxied, faults):
    env = _env(proxied[0])
    bucket = f"new-{uuid.uuid4().hex[:8]}"
    faults.throttle(seconds=4)
    r = ca(env, "-r", f"s3://{bucket}/repo", "init")
    assert r.returncode == 0, r.stderr
    assert "waiting for" in r.stderr.decode()
    assert ca(env, "-r", f"s3://{bucket}/repo", "snapshots").returncode == 0


# -- lost replies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "what", ["config.json", "keys/", "locks/", "index/", "snapshots/", "parity/"]
)
def test_a_write_whose_reply_is_lost_counts_as_done(proxied, faults, upstream, what):
    env = _env(proxied[0])
    loc = _location()
    prefix = loc.split("/", 3)[3]
    dump = sql_dump(5_000, seed=3)
    if what in ("config.json", "keys/"):
        faults.lose_reply(count=1, match=rf"^PUT /{BUCKET}/{prefix}/{what}")
        r = ca(env, "-r", loc, "init")
        assert r.returncode == 0, r.stderr
        assert faults.count(match=rf"^PUT /{BUCKET}/{prefix}/{what}") == 2  # the retry saw 412
    else:
        assert ca(env, "-r", loc, "init").returncode == 0
        faults.lose_reply(count=1, match=rf"^PUT /{BUCKET}/{prefix}/{what}")
        r = ca(env, "-r", loc, "ingest", "-", "--name", "db.sql", input=dump)
        assert r.returncode == 0, r.stderr
        assert any(f[3] == "lose_reply" for f in faults.log), "the fault was reached"
    faults.clear()
    assert not any(k.startswith("locks/") for k in _objects(upstream, loc)), "no stranded lock"
    assert ca(env, "-r", loc, "ingest", "-", "--name", "db.sql", input=dump).returncode == 0
    r = ca(env, "-r", loc, "restore", "latest")
    assert r.returncode == 0 and r.stdout == dump
    assert ca(env, "-r", loc, "verify").returncode == 0


# -- a location shared with another program -----------------------------------------------

RESTIC_LIKE = {
    "config": b"restic config",
    "keys/" + "1" * 64: b'{"kdf": "scrypt"}',
    "index/" + "2" * 64: b"restic index",
    "data/ab/" + "ab" * 32: b"restic pack",
    "snapshots/" + "3" * 64: b"restic snapshot",
    "locks/" + "4" * 64: b"restic lock",
}


def test_init_refuses_a_prefix_that_holds_another_programs_repository(proxied, upstream):
    env = _env(proxied[0])
    loc = _location()
    for key, body in RESTIC_LIKE.items():
        _put(upstream, loc, key, body)
    r = ca(env, "-r", loc, "init")
    assert r.returncode == 6, r.stderr
    line = r.stderr.decode().strip()
    assert "did not write" in line and "config" in line and len(line.splitlines()) == 1
    assert {k: _body(upstream, loc, k) for k in RESTIC_LIKE} == RESTIC_LIKE


def test_cleanups_never_touch_foreign_files_and_name_them(proxied, upstream, tmp_path):
    env = _env(proxied[0])
    loc = _location()
    assert ca(env, "-r", loc, "init").returncode == 0
    for night in range(3):
        dump = sql_dump(8_000, seed=night)
        assert ca(env, "-r", loc, "ingest", "-", "--name", "db.sql", input=dump).returncode == 0
    # Another program's files everywhere, some in our folders, some with our extensions but
    # not our names, one with our name pattern but not our content.
    foreign = {
        **RESTIC_LIKE,
        "index/notes.txt": b"hello",
        "locks/" + "5" * 64: b"not a lock of ours",
        "deleting/x.notice": b"?",
        "packs/data/ab/readme": b"?",
        "parity/" + "6" * 64 + ".parity": b"not a shard of ours",
        "snapshots/pending/" + "7" * 64 + ".snapshot": b"junk",
    }
    for key, body in foreign.items():
        _put(upstream, loc, key, body)
    r = ca(env, "-r", loc, "snapshots")
    assert r.returncode == 0 and r.stdout.count(b"db.sql") == 3
    r = ca(env, "-r", loc, "ingest", "-", "--name", "db.sql", input=sql_dump(8_000, seed=9))
    assert r.returncode == 0, r.stderr
    r = ca(env, "-r", loc, "repair")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "left alone" in out and "index/notes.txt" in out
    r = ca(env, "-r", loc, "prune", "--keep-last", "1")
    assert r.returncode == 0, r.stderr
    assert "left alone" in r.stdout.decode()
    assert ca(env, "-r", loc, "unlock", "--force").returncode == 0
    assert {k: _body(upstream, loc, k) for k in foreign} == foreign
    r = ca(env, "-r", loc, "verify", "--level", "full")
    assert r.returncode == 0, r.stdout
    r = ca(env, "-r", loc, "restore", "latest")
    assert r.stdout == sql_dump(8_000, seed=9)


def test_an_interrupted_init_is_resumed_and_anything_else_refused(tmp_path):
    # An init that died after writing its key file, before config.json: init again works.
    done = tmp_path / "done"
    ca(_env({}), "-r", str(done), "init")
    half = tmp_path / "half"
    shutil.copytree(done / "keys", half / "keys")
    r = ca(_env({}), "-r", str(half), "init")
    assert r.returncode == 0, r.stderr
    assert ca(_env({}), "-r", str(half), "snapshots").returncode == 0
    # A keys/ folder holding anything else is not an interrupted init of ours.
    odd = tmp_path / "odd"
    (odd / "keys").mkdir(parents=True)
    (odd / "keys" / ("1" * 64)).write_text("restic key")
    r = ca(_env({}), "-r", str(odd), "init")
    assert r.returncode == 6 and b"did not write" in r.stderr
    assert (odd / "keys" / ("1" * 64)).read_text() == "restic key"


def test_init_refuses_a_directory_with_a_restic_repository(tmp_path):
    repo = tmp_path / "repo"
    for key, body in RESTIC_LIKE.items():
        (repo / key).parent.mkdir(parents=True, exist_ok=True)
        (repo / key).write_bytes(body)
    r = ca(_env({}), "-r", str(repo), "init")
    assert r.returncode == 6 and b"Traceback" not in r.stderr
    assert {k: (repo / k).read_bytes() for k in RESTIC_LIKE} == RESTIC_LIKE


# -- archive storage classes ----------------------------------------------------------------


def test_packs_in_glacier_keep_backups_running_and_are_never_called_corrupt(
    proxied, upstream, tmp_path
):
    env = _env(proxied[0])
    loc = _location()
    prefix = loc.split("/", 3)[3]
    assert ca(env, "-r", loc, "init").returncode == 0
    first = sql_dump(30_000, seed=11)
    assert ca(env, "-r", loc, "ingest", "-", "--name", "db.sql", input=first).returncode == 0
    moved = faultproxy.set_storage_class(upstream, BUCKET, f"{prefix}/packs/", "GLACIER")
    assert moved >= 2
    # What needs no pack data still works: list, show, restore plans, and new backups.
    assert ca(env, "-r", loc, "snapshots").returncode == 0
    # A restore plan names the pack holding the chunk lists: restore it first, then ask again;
    # it lists key files, never another program's file in keys/.
    _put(upstream, loc, "keys/" + "1" * 64, b"restic key")
    r = ca(env, "-r", loc, "restore-plan", "latest", "--json")
    assert r.returncode == 14, r.stderr
    plan = json.loads(r.stdout)
    assert plan["archived"] and all(p.startswith("packs/data/") for p in plan["archived"])
    assert "keys/" + "1" * 64 not in [f["path"] for f in plan["files"]]
    for night in (12, 13):
        r = ca(
            env, "-r", loc, "ingest", "-", "--name", "db.sql", input=sql_dump(30_000, seed=night)
        )
        assert r.returncode == 0, r.stderr
    # What needs cold pack data says what to do, never "corrupted".
    oldest = json.loads(ca(env, "-r", loc, "snapshots", "--json").stdout)[0]["id"]
    for args in (
        ["restore", oldest, "-o", str(tmp_path / "out.sql")],
        ["verify", "--level", "standard"],
        ["prune", "--keep-last", "3"],  # keeps the oldest: must read its chunk lists
    ):
        r = ca(env, "-r", loc, *args)
        text = r.stderr.decode() + r.stdout.decode()
        assert r.returncode == 14, (args, text)
        assert "archive storage class GLACIER" in text and "restore it" in text
        assert "corrupt" not in text.lower() and "Traceback" not in text, text
    assert not (tmp_path / "out.sql").exists()
    # The newest snapshot's packs are still in the standard class.
    r = ca(env, "-r", loc, "restore", "latest")
    assert r.returncode == 0 and r.stdout == sql_dump(30_000, seed=13)
    # A prune that only deletes cold packs (never reads them) works.
    r = ca(env, "-r", loc, "prune", "--keep-last", "1")
    assert r.returncode == 0, r.stderr
    assert ca(env, "-r", loc, "verify", "--level", "full").returncode == 0
    # A key file in an archive class: its copy (copies/keys/) opens the repository; with the
    # copy archived too, the error names the archive class.
    key = next(k for k in _objects(upstream, loc) if k.startswith("keys/") and k.endswith(".key"))
    faultproxy.set_storage_class(upstream, BUCKET, f"{prefix}/{key}", "GLACIER")
    assert ca(env, "-r", loc, "snapshots").returncode == 0
    faultproxy.set_storage_class(upstream, BUCKET, f"{prefix}/copies/{key}", "GLACIER")
    r = ca(env, "-r", loc, "snapshots")
    assert r.returncode == 14 and b"GLACIER" in r.stderr, r.stderr
    # Parity lives outside packs/: the new ingests extended groups they could read.
    assert any(k.startswith("parity/") for k in _objects(upstream, loc))


# -- messages that find the real cause -----------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_configuration_mistakes_are_named(upstream, tmp_path):
    base = _env(upstream)
    loc = _location()
    assert ca(base, "-r", loc, "init").returncode == 0
    endpoint = upstream["AWS_ENDPOINT_URL"]

    def last_line(r) -> str:
        assert b"Traceback" not in r.stderr
        return r.stderr.decode().strip().splitlines()[-1]

    r = ca(
        {**base, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{_closed_port()}"}, "-r", loc, "snapshots"
    )
    assert r.returncode == 1 and "connection refused" in last_line(r)
    r = ca(
        {**base, "AWS_ENDPOINT_URL": endpoint.replace("http://", "https://")},
        "-r",
        loc,
        "snapshots",
    )
    assert r.returncode == 1 and "TLS" in last_line(r) and "http://" in last_line(r)
    r = ca({**base, "AWS_ENDPOINT_URL": f"{endpoint}/{BUCKET}"}, "-r", loc, "snapshots")
    assert r.returncode == 1 and "bucket name" in last_line(r) and "config.json" not in last_line(r)

    # Credentials only where `aws configure` writes them.
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    no_keys = {
        k: v for k, v in base.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    no_keys["HOME"] = str(home)
    (home / ".aws" / "credentials").write_text(
        f"[default]\naws_access_key_id = {upstream['AWS_ACCESS_KEY_ID']}\n"
        f"aws_secret_access_key = {upstream['AWS_SECRET_ACCESS_KEY']}\n"
        f"[ops]\naws_access_key_id = {upstream['AWS_ACCESS_KEY_ID']}\n"
        f"aws_secret_access_key = {upstream['AWS_SECRET_ACCESS_KEY']}\n"
    )
    (home / ".aws" / "config").write_text(
        "[profile ops]\nregion = us-east-1\n"
        "[profile assumed]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = ops\n"
    )
    assert ca(no_keys, "-r", loc, "snapshots").returncode == 0
    assert ca({**no_keys, "AWS_PROFILE": "ops"}, "-r", loc, "snapshots").returncode == 0
    r = ca({**no_keys, "AWS_PROFILE": "nope"}, "-r", loc, "snapshots")
    assert r.returncode == 1 and "'nope'" in last_line(r) and "credentials" in last_line(r)
    r = ca({**no_keys, "AWS_PROFILE": "assumed"}, "-r", loc, "snapshots")
    assert r.returncode == 1 and "role_arn" in last_line(r) and "not support" in last_line(r)
    (home / ".aws" / "credentials").unlink()
    r = ca(no_keys, "-r", loc, "snapshots")
    line = last_line(r)
    assert r.returncode == 1 and "no AWS credentials found" in line and ".aws/credentials" in line


# -- verify while another host backs up -------------------------------------------------------


def test_verify_during_an_ingest_reports_no_damage_that_is_not_there(upstream):
    # verify lists packs, reads the index and the parity groups at different instants; what an
    # ingest uploads, indexes and groups in between must not be reported as missing,
    # unindexed or unprotected.
    env = _env(upstream)
    loc = _location()
    assert ca(env, "-r", loc, "init").returncode == 0
    assert (
        ca(env, "-r", loc, "ingest", "-", "--name", "a", input=sql_dump(5_000, seed=1)).returncode
        == 0
    )
    script = (
        "import sys, os, containerarchive as ca\n"
        "with ca.Repository.open(sys.argv[1], os.environ['CONTAINERARCHIVE_PASSWORD']) as r:\n"
        "    for n in range(30):\n"
        "        r.ingest(os.urandom(1 << 20), name=f'b{n}')\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", script, loc], env=env, stderr=subprocess.PIPE)
    runs = []
    try:
        while writer.poll() is None:
            r = ca(env, "-r", loc, "verify", "--json")
            runs.append((r.returncode, r.stdout.decode()[-600:]))
    finally:
        writer.wait(timeout=300)
    assert writer.returncode == 0, writer.stderr.read()
    assert len(runs) >= 3, "verify ran while the ingests ran"
    assert [code for code, _ in runs] == [0] * len(runs), [out for code, out in runs if code]
    assert ca(env, "-r", loc, "verify", "--level", "full").returncode == 0
