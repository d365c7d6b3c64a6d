"""A private PostgreSQL cluster for the benchmark's real dump series and for tests/test_postgres.

The server (Debian's `postgresql`) runs as the `postgres` user, since initdb refuses root, on a
unix socket in a directory of its own: no TCP port is opened. Clients connect over the socket
with trust authentication, so they need no password. `private_cluster` starts it and always
stops it (`pg_ctl -m immediate`) and removes its files.

    with private_cluster(scale=30) as c:     # pgbench_* tables at pgbench scale 30
        c.night(1, Path("n1.sql"))           # first night: dump as it is
        c.night(2, Path("n2.sql"))           # a day of OLTP traffic, then the dump
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BINS = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
#: The newest installed server's programs, or None when PostgreSQL (or runuser) is missing.
PG: Path | None = Path(BINS[-1]) if BINS and shutil.which("runuser") else None
TABLES = [
    "pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history", "events",
]  # fmt: skip


class Cluster:
    def __init__(self, root: Path, pg: Path):
        self.root, self.pg = root, pg
        self.data, self.sock = root / "data", root / "sock"

    def as_postgres(self, *cmd: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True)

    def client(self, tool: str, *args: str, db: str = "bench", **kw) -> subprocess.CompletedProcess:
        """Run `psql` or `pgbench` against database `db` over the socket."""
        cmd = [str(self.pg / tool), "-h", str(self.sock), "-U", "postgres", *args]
        cmd += ["-d", db] if tool == "psql" else [db]
        return subprocess.run(cmd, check=True, capture_output=True, **kw)

    def query(self, sql: str, db: str = "bench") -> str:
        return self.client("psql", "-At", "-c", sql, db=db, text=True).stdout.strip()

    def dump_command(self, db: str = "bench") -> str:
        """The shell command that writes database `db` as a plain SQL dump to stdout."""
        return f"{self.pg / 'pg_dump'} -h {self.sock} -U postgres -d {db}"

    def checksums(self, db: str) -> dict[str, str]:
        """Row count and an order-independent digest of every table of `db`."""
        return {
            t: self.query(f"SELECT count(*) || ':' || md5(string_agg(x::text, '|' ORDER BY "
                          f"x::text)) FROM {t} x", db=db)
            for t in TABLES
        }  # fmt: skip

    def day(self, n: int, transactions: int = 6000, events: int = 20_000) -> None:
        """The traffic before night `n`'s dump. Every night after the first begins with a day:
        `transactions` pgbench transactions on two clients (balances updated all over the
        tables, which moves their rows in the heap; history appended) and `events` rows
        appended to an insert-only `events` table, as an audit log would be."""
        if n == 1:
            self.client(
                "psql", "-q", "-c",
                "CREATE TABLE events (id bigserial PRIMARY KEY, at timestamptz NOT NULL, "
                "account int NOT NULL, kind text NOT NULL, detail text NOT NULL)",
            )  # fmt: skip
        else:
            self.client("pgbench", "-n", "-c", "2", "-t", str(transactions // 2))
        if events:
            self.client(
                "psql", "-q", "-c",
                "INSERT INTO events (at, account, kind, detail) SELECT now() - random() * "
                "interval '1 day', (random() * 1e6)::int, (ARRAY['login','payment','refund',"
                f"'logout'])[1 + (g % 4)], md5(g::text || '{n}') "
                f"FROM generate_series(1, {events}) g",
            )  # fmt: skip

    def night(self, n: int, out: Path, transactions: int = 6000, events: int = 20_000) -> Path:
        """Night `n`: its day of traffic (`day`), then the dump, written to `out`."""
        self.day(n, transactions, events)
        with open(out, "wb") as f:
            subprocess.run(self.dump_command().split(), stdout=f, check=True)
        return out


@contextmanager
def private_cluster(scale: int) -> Iterator[Cluster]:
    """A started cluster holding database `bench` with pgbench's tables at `scale` (100 000
    accounts per unit of scale). Raises RuntimeError when PostgreSQL is not installed."""
    if PG is None:
        raise RuntimeError("PostgreSQL is not installed (Debian package postgresql)")
    # Under /tmp: the server's user must be able to reach it.
    root = Path(tempfile.mkdtemp(prefix="ca-pg-"))
    os.chmod(root, 0o755)
    c = Cluster(root, PG)
    for d in (c.sock, c.data):
        d.mkdir()
        shutil.chown(d, "postgres")
    try:
        c.as_postgres(str(PG / "initdb"), "-D", str(c.data), "--auth=trust", "-U", "postgres")
        c.as_postgres(
            str(PG / "pg_ctl"), "-D", str(c.data), "-w", "-l", str(c.data / "log"), "-o",
            f"-c listen_addresses='' -k {c.sock} -c fsync=off", "start",
        )  # fmt: skip
        c.client("psql", "-q", "-c", "CREATE DATABASE bench", db="postgres")
        c.client("pgbench", "-i", "-q", "-s", str(scale))
        yield c
    finally:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG / "pg_ctl"), "-D", str(c.data), "-m",
             "immediate", "stop"],
            capture_output=True,
        )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
