"""What the concurrency protocol costs on a large repository (default: 10 000 packs).

Builds a repository of N packs (N/100 snapshots of 100 MiB in 1 MiB packs; N MiB of disk),
then measures, on this machine:
- an ingest of 1 KiB (lock, index refresh, notice read, pack, index file, pending manifest,
  the commit check that lists every pack, the final manifest), median of several;
- the listing the commit check makes (`deleting/` and `packs/data/`), alone;
- `prune --keep-last N/2` (plan, deletion notice, last look, deletions, regrouping).

    python bench/locking.py [--packs 10000] [--out bench/LOCKING.md]

A benchmark, not a test: it asserts nothing about time. The repository goes in a temporary
directory (or --dir) and is removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import containerarchive as ca


def _listing(repo: Path) -> tuple[float, int]:
    """Walk `deleting/` and `packs/data/` as the commit check does; seconds and keys seen."""
    t = time.perf_counter()
    n = 0
    for sub in ("deleting", "packs/data"):
        for _, _, files in os.walk(repo / sub):
            n += len(files)
    return time.perf_counter() - t, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packs", type=int, default=10_000)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("LOCKING.md"))
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(dir=args.dir, prefix="ca-locking-"))
    path = root / "repo"
    try:
        # Packs of ~1.2 MiB (1 MiB target) of incompressible data: 120 nights of 100 MiB.
        repo = ca.Repository.init(
            path, "bench", kdf_memory_kib=1024, kdf_iterations=1, pack_size=1 << 20
        )
        nights = max(2, -(-args.packs // 84))  # a 1 MiB-target pack holds ~1.2 MiB
        t0 = time.perf_counter()
        for i in range(nights):
            repo.ingest(os.urandom(100 << 20), name="d", tags={"n": str(i)})
        build = time.perf_counter() - t0
        packs = sum(1 for p in (path / "packs" / "data").rglob("*.pack"))

        lists = [_listing(path)[0] for _ in range(5)]
        ingests = []
        for _ in range(7):
            t = time.perf_counter()
            repo.ingest(os.urandom(1024), name="d", tags={"n": "probe"})
            ingests.append(time.perf_counter() - t)
        repo.close()

        repo = ca.Repository.open(path, "bench")
        repo_bytes = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        t = time.perf_counter()
        dry = repo.prune(keep_last=nights // 2, dry_run=True)
        dry_s = time.perf_counter() - t
        t = time.perf_counter()
        pruned = repo.prune(keep_last=nights // 2)
        prune_s = time.perf_counter() - t
        t = time.perf_counter()
        ok = repo.verify("quick").ok
        verify_s = time.perf_counter() - t
        repo.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    rows = [
        ("packs in the repository", f"{packs} ({repo_bytes / 2**30:.1f} GiB)"),
        ("building it (ingests of 100 MiB of random data)", f"{build:.0f} s for {nights} ingests"),
        (
            "listing `deleting/` + `packs/data/` (the commit check's listing, alone)",
            f"{statistics.median(lists) * 1000:.1f} ms",
        ),
        (
            "ingest of 1 KiB, end to end, median of 7 (includes that listing)",
            f"{statistics.median(ingests) * 1000:.1f} ms",
        ),
        ("prune dry run, keep half", f"{dry_s:.2f} s"),
        (
            "prune, keep half (notice, last look, deletions, regrouping)",
            f"{prune_s:.2f} s: {pruned.removed_snapshots} snapshots, "
            f"{pruned.removed_packs} packs deleted ({dry.removed_packs} planned by the dry run)",
        ),
        ("quick verify afterwards", f"{verify_s:.2f} s, {'ok' if ok else 'NOT OK'}"),
    ]
    text = [
        "# Cost of the concurrency protocol on a large repository",
        "",
        f"`python bench/locking.py --packs {args.packs}` on {platform.node()} "
        f"({os.cpu_count()} cores), local filesystem, encrypted; one run "
        f"({time.strftime('%Y-%m-%d')}).",
        "",
        "| what | measured |",
        "|---|---:|",
        *[f"| {k} | {v} |" for k, v in rows],
        "",
    ]
    args.out.write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
