"""Deterministic test data, streamed to stdout (never held whole in memory).

    python bench/gen.py sql --rows 3000000 --version 2 > v2.sql   # pg_dump-like SQL text
    python bench/gen.py random --size 2G --seed 7 | containerarchive ingest -

Version k of the SQL dump differs from version 1 as a new night's dump would: 20 runs of
200 consecutive rows updated, 2000 rows inserted mid-file and 2000 appended (per version).
"""

from __future__ import annotations

import argparse
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
