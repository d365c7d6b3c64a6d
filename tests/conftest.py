from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest

import containerarchive as ca

PASSPHRASE = "correct horse battery staple"
# Argon2id at its documented default costs 64 MiB per open; tests use small costs for speed.
FAST_KDF = {"kdf_memory_kib": 1024, "kdf_iterations": 1}


def sql_dump(rows: int, seed: int = 0, marker: str = "") -> bytes:
    """A pg_dump-like SQL text: one INSERT per row, deterministic for a seed."""
    rnd = random.Random(seed)
    names = [f"customer-{rnd.randrange(10**6):06d}" for _ in range(997)]
    lines = [
        f"INSERT INTO orders VALUES ({i}, '{names[i % 997]}', {i * 37 % 100000 / 100:.2f}, "
        f"'2026-{i % 12 + 1:02d}-{i % 28 + 1:02d}', '{marker}');\n"
        for i in range(rows)
    ]
    return "".join(lines).encode()


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under root with the SHA-256 of its content."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment for running the CLI against a repository in this test's directory."""
    return {
        "CONTAINERARCHIVE_REPOSITORY": str(tmp_path / "repo"),
        "CONTAINERARCHIVE_PASSWORD": "pw for the cli",
    }


@pytest.fixture
def repo_path(tmp_path: Path) -> Path:
    return tmp_path / "repo"


@pytest.fixture
def repo(repo_path: Path):
    with ca.Repository.init(repo_path, passphrase=PASSPHRASE, **FAST_KDF) as r:
        yield r


@pytest.fixture
def plain_repo(repo_path: Path):
    with ca.Repository.init(repo_path) as r:
        yield r


def random_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def die_holding_a_lock(repo_path: Path, how: str = "os._exit(0)") -> int:
    """Run a process that takes an exclusive lock on the repository and dies without releasing
    it (``how``: the Python statement that ends it). Returns its exit code."""
    import subprocess
    import sys

    code = (
        "import containerarchive as ca, os, sys\n"
        f"r = ca.Repository.open(sys.argv[1], {PASSPHRASE!r})\n"
        "held = r.lock(exclusive=True, operation='prune')\n"
        "held.__enter__()\n"
        f"{how}\n"
    )
    return subprocess.run([sys.executable, "-c", code, str(repo_path)]).returncode


@pytest.fixture(autouse=True)
def _no_user_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        "CONTAINERARCHIVE_REPOSITORY",
        "CONTAINERARCHIVE_PASSWORD",
        "CONTAINERARCHIVE_PASSWORD_FILE",
    ):
        monkeypatch.delenv(var, raising=False)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
