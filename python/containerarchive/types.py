"""Typed results: snapshots and their items."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Item:
    """One named stream of a snapshot."""

    name: str
    type: str
    size: int
    chunk_count: int


@dataclass(frozen=True)
class Snapshot:
    """An immutable snapshot of one or more items."""

    id: str
    version: int
    created_at: datetime
    tags: dict[str, str] = field(hash=False)
    original_size: int
    stored_size: int
    chunk_count: int
    new_chunks: int
    reused_chunks: int
    items: list[Item] = field(hash=False)

    @property
    def short_id(self) -> str:
        """The first 8 hex digits of the id, as shown in listings."""
        return self.id[:8]

    def item(self, name: str) -> Item:
        """The item called ``name``."""
        for it in self.items:
            if it.name == name:
                return it
        from .errors import ItemNotFoundError

        available = [i.name for i in self.items]
        err = ItemNotFoundError(
            f"item {name!r} not found in snapshot {self.id} (items: {', '.join(available)})"
        )
        err.snapshot, err.item, err.available = self.id, name, available
        raise err

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {
            "id": self.id,
            "version": self.version,
            "created_at": self.created_at.isoformat(),
            "tags": dict(self.tags),
            "original_size": self.original_size,
            "stored_size": self.stored_size,
            "chunk_count": self.chunk_count,
            "new_chunks": self.new_chunks,
            "reused_chunks": self.reused_chunks,
            "items": [vars(i).copy() for i in self.items],
        }

    def __repr__(self) -> str:
        items = ", ".join(i.name for i in self.items)
        return (
            f"Snapshot(id={self.short_id}…, created_at={self.created_at.isoformat()}, "
            f"items=[{items}], original_size={self.original_size}, "
            f"stored_size={self.stored_size}, new_chunks={self.new_chunks}, "
            f"reused_chunks={self.reused_chunks}, tags={self.tags})"
        )

    @classmethod
    def _from_json(cls, text: str) -> Snapshot:
        d = json.loads(text)
        return cls(
            id=d["id"],
            version=d["version"],
            created_at=datetime.fromisoformat(d["created_at"]),
            tags=dict(d["tags"]),
            original_size=d["original_size"],
            stored_size=d["stored_size"],
            chunk_count=d["chunk_count"],
            new_chunks=d["new_chunks"],
            reused_chunks=d["reused_chunks"],
            items=[
                Item(name=i["name"], type=i["type"], size=i["size"], chunk_count=i["chunk_count"])
                for i in d["items"]
            ],
        )
