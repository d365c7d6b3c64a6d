"""Nightly database backup: dump, keep 7 daily and 4 weekly, verify, report. (README example.)"""

import sys

import containerarchive as ca

try:
    with ca.Repository.open(sys.argv[1], passphrase=open(sys.argv[2]).read().strip()) as repo:
        snap = repo.ingest_command(sys.argv[3:], name="db.dump", tags={"job": "nightly"})
        pruned = repo.prune(keep_daily=7, keep_weekly=4, tags={"job": "nightly"})
        result = repo.verify("standard")
except (ca.ContainerArchiveError, OSError) as e:  # the dump failed: nothing was committed
    sys.exit(f"backup failed: {e}")
print(f"{snap.short_id}: {snap.original_size >> 20} MiB, {snap.dedup_percent:.0f}% deduplicated")
print(f"pruned {pruned.removed_snapshots}, verify {'ok' if result.ok else result.errors}")
sys.exit(0 if result.ok else 1)
