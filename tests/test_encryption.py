"""What an encrypted repository reveals: nothing but sizes, config and key files."""

from __future__ import annotations

import json
from pathlib import Path

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
