"""Deterministic test data, streamed to stdout (never held whole in memory).

    python bench/gen.py sql --rows 3000000 --version 2 > v2.sql   # pg_dump-like SQL text
    python bench/gen.py random --size 2G --seed 7 | containerarchive ingest -
    python bench/gen.py oltp --rows 1500000 --night 3 > night3.sql   # OLTP tables, night 3

Version k of the SQL dump differs from version 1 as a new night's dump would: 20 runs of
200 consecutive rows updated, 2000 rows inserted mid-file and 2000 appended (per version).
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
from collections.abc import Iterator

_BLOCK = 1 << 20


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def sql_rows(rows: int, version: int = 1, seed: int = 0) -> Iterator[bytes]:
    """Blocks of a pg_dump-like SQL dump, version ``version``."""
    rnd = random.Random(seed)
    names = [f"customer-{rnd.randrange(10**6):06d}" for _ in range(997)]
    changed: set[int] = set()
    for k in range(2, version + 1):
        r = random.Random(seed * 1000 + k)
        for _ in range(20):
            start = r.randrange(rows)
            changed.update(range(start, start + 200))
    header = (
        "--\n-- PostgreSQL database dump\n--\n\n"
        "CREATE TABLE orders (id bigint, customer text, amount numeric, day date, note text);\n"
    )
    out = [header]
    size = len(header)
    extra = 2000 * (version - 1)
    for i in range(rows):
        if i == rows // 2:
            out.extend(
                f"INSERT INTO orders VALUES ({rows + j}, 'inserted-v{version}', 1.00, "
                f"'2026-06-01', 'mid');\n"
                for j in range(extra)
            )
        note = f"updated-v{version}" if i in changed else "-"
        line = (
            f"INSERT INTO orders VALUES ({i}, '{names[i % 997]}', {i * 37 % 100000 / 100:.2f}, "
            f"'2026-{i % 12 + 1:02d}-{i % 28 + 1:02d}', '{note}');\n"
        )
        out.append(line)
        size += len(line)
        if size >= _BLOCK:
            yield "".join(out).encode()
            out, size = [], 0
    out.extend(
        f"INSERT INTO orders VALUES ({2 * rows + j}, 'appended-v{version}', 2.00, "
        f"'2026-06-02', 'end');\n"
        for j in range(extra)
    )
    out.append("--\n-- PostgreSQL database dump complete\n--\n")
    yield "".join(out).encode()


def _h(*parts: int) -> int:
    """A deterministic 64-bit hash of integers (splitmix64 over them)."""
    z = 0x9E3779B97F4A7C15
    for p in parts:
        z = (z ^ (p & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        z ^= z >> 31
    return z


#: OLTP tables: (name, share of rows, percent of rows updated per night, percent deleted per
#: night, percent inserted per night, row maker). Row shapes differ in width and
#: compressibility: random tokens and e-mail-like strings, timestamps, short text.
_FIRST = ["anna", "ben", "chloe", "dev", "emil", "fatima", "goran", "hana", "ivan", "jana"]
_STATUS = ["new", "paid", "shipped", "delivered", "returned", "cancelled"]


def _account(i: int, v: int, t: int) -> str:
    return (
        f"{i}\t{_h(t, i):016x}{_h(t, i, 1):016x}\t{_FIRST[i % 10]}.{_h(t, i, 2) % 99991}"
        f"@mail{i % 37}.example\t2025-{_h(t, i, 3) % 12 + 1:02d}-{_h(t, i, 4) % 28 + 1:02d} "
        f"{_h(t, i, 5) % 24:02d}:{_h(t, i, 6) % 60:02d}:00+00\t{_h(t, i, v, 7) % 1000000 / 100:.2f}"
        f"\t2026-11-{v % 28 + 1:02d} {_h(t, i, v, 8) % 24:02d}:{_h(t, i, v, 9) % 60:02d}:"
        f"{_h(t, i, v, 10) % 60:02d}.{_h(t, i, v, 11) % 1000000:06d}+00\n"
    )


def _order(i: int, v: int, t: int) -> str:
    return (
        f"{i}\t{_h(t, i) % 1000000}\t{_h(t, i, 1) % 500000 / 100:.2f}\tEUR\t"
        f"{_STATUS[(_h(t, i, 2) + v) % 6]}\t{_h(t, i, v, 3):08x}\t"
        f"2026-{_h(t, i, 4) % 12 + 1:02d}-{_h(t, i, 5) % 28 + 1:02d}\n"
    )


def _event(i: int, v: int, t: int) -> str:
    kind = ["login", "view", "click", "purchase"][_h(t, i) % 4]
    return (
        f'{i}\t{kind}\t{{"session": "{_h(t, i, 1):012x}", "page": "/p/{_h(t, i, 2) % 5000}", '
        f'"ms": {_h(t, i, 3) % 3000}}}\t2026-11-{_h(t, i, 4) % 28 + 1:02d}\n'
    )


_TABLES = [
    ("accounts", 0.4, 3.0, 0.3, 1.0, _account),
    ("orders", 0.4, 3.0, 0.2, 1.0, _order),
    ("events", 0.2, 0.0, 0.0, 2.0, _event),
]


def _updated(t: int, i: int, night: int, pct: float) -> bool:
    return night >= 2 and _h(t, i, night, 99) % 10000 < pct * 100


def _last_update(t: int, i: int, night: int, pct: float) -> int:
    for k in range(night, 1, -1):
        if _updated(t, i, k, pct):
            return k
    return 1


def oltp_night(rows: int, night: int, changed_only: bool = False) -> Iterator[bytes]:
    """Night ``night`` (1, 2, …) of an OLTP database's text dump (``COPY`` blocks, as pg_dump
    writes them): three tables of different row shapes (about 2.4:1 under zstd). Each night
    updates ~3 % of the rows of two tables, scattered, deletes a few and inserts ~1 %; as in
    PostgreSQL's heap, an updated row's new version moves to the end of its table (after the
    versions of earlier nights), then the night's inserts follow. ``changed_only``: only the
    rows that night updated or inserted (what really changed, for comparing stored bytes)."""
    out: list[str] = []
    size = 0
    for t, (name, share, upd, dele, ins, make) in enumerate(_TABLES):
        n = int(rows * share)
        if not changed_only:
            out.append(f"\nCOPY public.{name} FROM stdin;\n")
        # Rows alive tonight, grouped by the night of their last update (1: never updated).
        groups: dict[int, list[int]] = {}
        for i in range(n):
            if any(_h(t, i, k, 98) % 10000 < dele * 100 for k in range(2, night + 1)):
                continue
            groups.setdefault(_last_update(t, i, night, upd), []).append(i)
        inserted = int(n * ins / 100)
        # (row, version) in heap order: untouched rows, each night's new versions, then each
        # night's inserts.
        order = itertools.chain(
            ((i, k) for k in sorted(groups) for i in groups[k]),
            ((n + (k - 2) * inserted + j, k) for k in range(2, night + 1) for j in range(inserted)),
        )
        for i, k in order:
            if changed_only and k != night:
                continue
            line = make(i, k, t)
            out.append(line)
            size += len(line)
            if size >= _BLOCK:
                yield "".join(out).encode()
                out, size = [], 0
        if not changed_only:
            out.append("\\.\n")
    yield "".join(out).encode()


def random_blocks(size: int, seed: int) -> Iterator[bytes]:
    """``size`` pseudo-random (incompressible) bytes."""
    rnd = random.Random(seed)
    left = size
    while left > 0:
        n = min(_BLOCK, left)
        yield rnd.randbytes(n)
        left -= n


def sql_bytes(size: int, seed: int = 0) -> Iterator[bytes]:
    """About ``size`` bytes of SQL dump (rows repeat with new ids past the first pass)."""
    left = size
    rows_per_pass = 1_000_000
    p = 0
    while left > 0:
        for block in sql_rows(rows_per_pass, 1, seed + p):
            block = block[:left]
            yield block
            left -= len(block)
            if left <= 0:
                return
        p += 1


def sql_fast(size: int, seed: int = 0) -> Iterator[bytes]:
    """``size`` bytes of SQL text at memory speed: a 16 MiB base dump repeated, with a unique
    comment line every 32 KiB so that no chunk repeats (nothing deduplicates)."""
    base = b"".join(sql_rows(200_000, 1, seed))[: 16 << 20]
    step = 32 << 10
    left, n = size, 0
    while left > 0:
        parts = []
        for off in range(0, len(base), step):
            parts.append(f"-- {seed}:{n}\n".encode())
            parts.append(base[off : off + step])
            n += 1
        block = b"".join(parts)[:left]
        yield block
        left -= len(block)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="kind", required=True)
    s = sub.add_parser("sql", help="a pg_dump-like SQL dump")
    s.add_argument("--rows", type=int, default=3_000_000)
    s.add_argument("--version", type=int, default=1)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--size", type=parse_size, help="instead of --rows: this many bytes")
    f = sub.add_parser("sql-fast", help="SQL text at memory speed, no repeated chunk")
    f.add_argument("--size", type=parse_size, required=True)
    f.add_argument("--seed", type=int, default=0)
    o = sub.add_parser("oltp", help="an OLTP database's nightly dump (see oltp_night)")
    o.add_argument("--rows", type=int, default=1_500_000)
    o.add_argument("--night", type=int, default=1)
    o.add_argument("--changed-only", action="store_true", help="only that night's changed rows")
    r = sub.add_parser("random", help="incompressible bytes")
    r.add_argument("--size", type=parse_size, required=True)
    r.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.kind == "sql":
        blocks = (
            sql_bytes(args.size, args.seed)
            if args.size
            else sql_rows(args.rows, args.version, args.seed)
        )
    elif args.kind == "sql-fast":
        blocks = sql_fast(args.size, args.seed)
    elif args.kind == "oltp":
        blocks = oltp_night(args.rows, args.night, args.changed_only)
    else:
        blocks = random_blocks(args.size, args.seed)
    out = sys.stdout.buffer
    try:
        for block in blocks:
            out.write(block)
        out.flush()
    except BrokenPipeError:
        sys.exit(1)


if __name__ == "__main__":
    main()
