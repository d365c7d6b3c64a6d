"""Snapshots as a pandas DataFrame (pandas is optional: imported only when asked for)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .types import Snapshot

#: The columns of :func:`to_dataframe`, in order.
COLUMNS = [
    "id",
    "created_at",
    "host",
    "items",
    "original_size",
    "stored_size",
    "chunk_count",
    "new_chunks",
    "reused_chunks",
    "dedup_percent",
    "delta_chunks",
    "delta_original_size",
    "delta_stored_size",
    "tags",
]


def to_dataframe(snapshots: Iterable[Snapshot]) -> Any:
    """One row per snapshot, indexed by snapshot id, with a timezone-aware ``created_at``,
    sizes in bytes, the item names (comma-separated), the tags (a dict) and, for each tag key,
    a ``tag:<key>`` column. Raises ImportError with a hint when pandas is missing."""
    try:
        import pandas as pd  # type: ignore[import-untyped,unused-ignore]
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "to_dataframe needs pandas: pip install pandas (or containerarchive[notebook])"
        ) from e
    snaps = list(snapshots)
    rows = [
        {
            "id": s.id,
            "created_at": s.created_at,
            "host": s.host,
            "items": ", ".join(i.name for i in s.items),
            "original_size": s.original_size,
            "stored_size": s.stored_size,
            "chunk_count": s.chunk_count,
            "new_chunks": s.new_chunks,
            "reused_chunks": s.reused_chunks,
            "dedup_percent": round(s.dedup_percent, 2),
            "delta_chunks": s.delta_chunks,
            "delta_original_size": s.delta_original_size,
            "delta_stored_size": s.delta_stored_size,
            "tags": dict(s.tags),
        }
        for s in snaps
    ]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if snaps:
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    for key in sorted({k for s in snaps for k in s.tags}):
        frame[f"tag:{key}"] = [s.tags.get(key) for s in snaps]
    return frame.set_index("id")
