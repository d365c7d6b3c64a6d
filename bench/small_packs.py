"""Many tiny ingests, then prune: does prune merge the small packs and then stop changing
anything? (default: 10 000 snapshots of a few hundred bytes each)

Ingests N tiny snapshots (one pack each, as every ingest closes its pack), then runs
`prune --keep-last N` three times (nothing is removed: only merging and fixed point are
measured) and reports for each: packs before/after, bytes written (files created or replaced,
from the directory's contents before and after, locks aside), packs read for rewriting and the
time taken.

    python bench/small_packs.py [--snapshots 10000] [--out bench/SMALL-PACKS.md]

A benchmark, not a test: it asserts nothing about time. The repository goes in a temporary
directory (or --dir) and is removed afterwards.
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import shutil
import tempfile
import time
from pathlib import Path

import containerarchive as ca


def _state(path: Path) -> dict[str, tuple[int, str]]:
    """Every file but locks: size and content hash."""
    out = {}
    for f in path.rglob("*"):
        if f.is_file() and "locks" not in f.parts:
            data = f.read_bytes()
            out[str(f.relative_to(path))] = (len(data), hashlib.sha256(data).hexdigest())
    return out


def _packs(state: dict[str, tuple[int, str]]) -> tuple[int, int]:
    sizes = [s for k, (s, _) in state.items() if k.endswith(".pack")]
    return len(sizes), sum(sizes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--snapshots", type=int, default=10_000)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("SMALL-PACKS.md"))
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(dir=args.dir, prefix="ca-small-"))
    path = root / "repo"
    try:
        repo = ca.Repository.init(path, "bench", kdf_memory_kib=1024, kdf_iterations=1)
        t0 = time.perf_counter()
        for i in range(args.snapshots):
            # A config file that changes a little every time: ~300 bytes, mostly new.
            body = f"# config {i}\nreplicas = {i % 7}\nversion = {i}\n" + "x = 1\n" * 40
            repo.ingest(body.encode(), name="app.conf", tags={"n": str(i)})
        build = time.perf_counter() - t0
        rows = []
        state = _state(path)
        for run in (1, 2, 3):
            before = state
            t = time.perf_counter()
            r = repo.prune(keep_last=args.snapshots)
            took = time.perf_counter() - t
            state = _state(path)
            written = sum(s for k, (s, h) in state.items() if before.get(k) != (s, h))
            deleted = sum(1 for k in before if k not in state)
            rows.append(
                (
                    run,
                    _packs(before),
                    _packs(state),
                    r.rewritten_packs,
                    r.merged_packs,
                    written,
                    deleted,
                    took,
                )
            )
        repo.close()
        lines = [
            "# Many small ingests, then prune",
            "",
            "Measured by `python bench/small_packs.py` on "
            f"{platform.machine()} / {platform.python_version()}: {args.snapshots} snapshots "
            f"of one ~300-byte item each (built in {build:.0f} s, one pack per ingest), then "
            f"`prune(keep_last={args.snapshots})` three times (nothing removed). Bytes written "
            "= files created or changed, locks aside.",
            "",
            "| prune | packs before (bytes) | packs after (bytes) | packs read and rewritten "
            "| of which small packs merged | bytes written | files deleted | time |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for run, (nb, bb), (na, ba), rw, mg, wr, dl, took in rows:
            lines.append(
                f"| {run} | {nb} ({bb:,}) | {na} ({ba:,}) | {rw} | {mg} | {wr:,} | {dl} "
                f"| {took:.2f} s |"
            )
        lines += [
            "",
            "The first prune merges every small pack (under a quarter of the 8 MiB target) "
            "into full-size packs, rewrites their parity groups and consolidates the index "
            "files (one per ingest before); the second and third copy no pack (they read only "
            "the chunk lists) and write nothing: the fixed point.",
        ]
        args.out.write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
