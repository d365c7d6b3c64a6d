"""A real PostgreSQL round trip with delta encoding (issue 17): a private cluster on a unix
socket, pgbench data, three nightly `ingest --exec "pg_dump …"` runs with pgbench transactions
between them, and the last night restored into a fresh database whose tables must equal the
source's, row for row.

The server runs as the `postgres` user (initdb refuses root), started and stopped by the test;
clients connect over the socket with trust authentication, so they need no password."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from pg import PG, Cluster, private_cluster  # noqa: E402

if PG is None:
    if os.environ.get("CI"):
        raise RuntimeError("PostgreSQL is missing: the test command installs Debian's postgresql")
    pytest.skip("PostgreSQL (Debian's postgresql) is not installed", allow_module_level=True)
CLI = [sys.executable, "-m", "containerarchive"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with private_cluster(scale=2) as c:
        yield c


def test_three_nights_of_pg_dump_are_deltas_and_the_last_loads_into_an_equal_database(
    cluster: Cluster, tmp_path: Path
):
    env = {
        **os.environ,
        "CONTAINERARCHIVE_REPOSITORY": str(tmp_path / "repo"),
        "CONTAINERARCHIVE_PASSWORD": "pg nights",
    }
    subprocess.run([*CLI, "init"], env=env, check=True, capture_output=True)
    nights = []
    for night in (1, 2, 3):
        # After night 1, a day of OLTP traffic first: balances updated all over the tables,
        # history and events appended.
        cluster.day(night, transactions=3000, events=1000)
        r = subprocess.run(
            [*CLI, "ingest", "--exec", cluster.dump_command(), "--name", "bench.sql",
             "--tag", f"night={night}", "--json"],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        nights.append(json.loads(r.stdout))
    assert all(n["delta_chunks"] > 0 for n in nights[1:]), nights
    # Without deltas each night adds more than the first stored (pgbench's updates move rows
    # all over the heap); with them, less (0.54-0.69x of night 1 measured over three runs;
    # pgbench picks its rows at random, so only the direction is asserted).
    sizes = [(n["stored_size"], n["delta_chunks"], n["delta_stored_size"]) for n in nights]
    assert all(n["stored_size"] < nights[0]["stored_size"] for n in nights[1:]), sizes
    source = cluster.checksums("bench")
    cluster.client("psql", "-q", "-c", "CREATE DATABASE restored", db="postgres")
    restore = subprocess.Popen(
        [*CLI, "restore", "latest", "--tag", "night=3"], env=env, stdout=subprocess.PIPE
    )
    load = subprocess.run(
        [str(cluster.pg / "psql"), "-h", str(cluster.sock), "-U", "postgres", "-d", "restored",
         "-q", "-v", "ON_ERROR_STOP=1"],
        stdin=restore.stdout, capture_output=True, text=True,
    )  # fmt: skip
    assert restore.wait() == 0 and load.returncode == 0, load.stderr
    assert cluster.checksums("restored") == source
    verify = subprocess.run([*CLI, "verify", "--level", "full"], env=env, capture_output=True)
    assert verify.returncode == 0, verify.stdout
