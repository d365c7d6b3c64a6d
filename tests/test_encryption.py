"""What an encrypted repository reveals: nothing but sizes, config and key files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import containerarchive as ca
from conftest import FAST_KDF, PASSPHRASE, sql_dump

MARKER = "zq-PLAINTEXT-MARKER-4417"


def test_no_plaintext_reaches_any_file(tmp_path: Path):
    repo_path = tmp_path / "repo"
    data = sql_dump(50_000, marker=MARKER)
    with ca.Repository.init(repo_path, PASSPHRASE, **FAST_KDF) as repo:
        repo.ingest_multi(
            [
                {"source": data, "name": f"{MARKER}-item.sql", "type": f"{MARKER}-type"},
                {"source": MARKER.encode() * 10, "name": "small"},
            ],
            tags={f"{MARKER}-key": f"{MARKER}-value"},
        )
    needles = [MARKER.encode(), b"INSERT INTO", b"customer-", b"small"]
    files = [p for p in repo_path.rglob("*") if p.is_file()]
    assert len(files) >= 6
    for f in files:
        content = f.read_bytes()
        for needle in needles:
            assert needle not in content, f"{f} contains {needle!r}"


def test_key_file_holds_argon2id_parameters_and_no_key_in_clear(repo_path: Path):
    ca.Repository.init(repo_path, PASSPHRASE).close()
    (key_file,) = (repo_path / "keys").iterdir()
    doc = json.loads(key_file.read_text())
    assert doc["kdf"] == "argon2id"
    assert doc["kdf_params"]["memory_kib"] >= 64 * 1024
    assert len(bytes.fromhex(doc["wrapped_key"])) == 12 + 32 + 16
    cfg = json.loads((repo_path / "config.json").read_text())
    assert cfg["encryption"] == "aes-256-gcm" and cfg["chunk_id"] == "hmac-sha256"


def test_chunk_ids_are_keyed_so_two_repositories_differ(tmp_path: Path):
    data = sql_dump(5_000)
    ids = []
    for name in ("a", "b"):
        with ca.Repository.init(tmp_path / name, PASSPHRASE, **FAST_KDF) as repo:
            repo.ingest(data)
        ids.append(sorted(p.name for p in (tmp_path / name / "packs").rglob("*.pack")))
    assert ids[0] != ids[1]


def test_keys_can_be_added_changed_and_removed_but_not_the_last(repo_path: Path):
    with ca.Repository.init(repo_path, PASSPHRASE, **FAST_KDF) as repo:
        snap = repo.ingest(b"payload")
        (first,) = repo.list_keys()
        assert first.current and first.kdf_memory_kib == FAST_KDF["kdf_memory_kib"]
        with pytest.raises(ca.InvalidArgumentError, match="last key"):
            repo.remove_key(first.id)
        second = repo.add_key("second", kdf_memory_kib=1024, kdf_iterations=1)
    with ca.Repository.open(repo_path, "second") as repo:
        assert repo.restore(snap.id).read() == b"payload"
        with pytest.raises(ca.InvalidArgumentError, match="opened with"):
            repo.remove_key(second)
        repo.remove_key(first.id[:8])
        new = repo.change_passphrase("third", kdf_memory_kib=1024, kdf_iterations=1)
        assert [k.id for k in repo.list_keys()] == [new]
    for old in (PASSPHRASE, "second"):
        with pytest.raises(ca.WrongPassphraseError):
            ca.Repository.open(repo_path, old)
    with ca.Repository.open(repo_path, "third") as repo:
        assert repo.restore(snap.id).read() == b"payload"


def test_cli_key_commands(repo_path: Path):
    import os
    import subprocess
    import sys

    ca.Repository.init(repo_path, PASSPHRASE, **FAST_KDF).close()
    env = {
        **os.environ,
        "CONTAINERARCHIVE_REPOSITORY": str(repo_path),
        "CONTAINERARCHIVE_PASSWORD": PASSPHRASE,
        "CONTAINERARCHIVE_NEW_PASSWORD": "rotated",
    }

    def cli(*args):
        p = subprocess.run(
            [sys.executable, "-m", "containerarchive", *args, "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    added = cli("key", "add")["added"]
    assert {k["id"] for k in cli("key", "list")} >= {added}
    env["CONTAINERARCHIVE_PASSWORD"] = "rotated"
    current = cli("key", "passwd")["current"]
    listed = cli("key", "list")
    assert len(listed) == 2 and any(k["id"] == current and k["current"] for k in listed)
    other = next(k["id"] for k in listed if k["id"] != current)
    assert cli("key", "remove", other[:10]) == {"removed": other[:10]}
    assert [k["id"] for k in cli("key", "list")] == [current]
