"""Typed results: snapshots and their items."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ._fields import Fields, key_before, source
from ._format import human_size, ratio, table, tags_text, titled


@dataclass(frozen=True)
class Item(Fields):
    """One named stream of a snapshot."""

    name: str
    type: str
    size: int
    chunk_count: int
    #: The command whose standard output this item is (``ingest --exec``), else None.
    command: list[str] | None = field(default=None, hash=False, metadata=source("command", "argv"))
    #: That command's exit status (0: a failed command commits nothing).
    exit_status: int | None = field(default=None, metadata=source("command", "exit_status"))


@dataclass(frozen=True)
class Snapshot(Fields):
    """An immutable snapshot of one or more items."""

    id: str
    version: int
    created_at: datetime = field(metadata=source(read=datetime.fromisoformat))
    tags: dict[str, str] = field(hash=False)
    original_size: int
    stored_size: int
    chunk_count: int
    new_chunks: int
    reused_chunks: int
    items: list[Item] = field(hash=False, metadata=source(nested=Item))
    #: New chunks stored as deltas against a similar stored chunk (0 without delta encoding).
    delta_chunks: int = 0
    #: Bytes of content in those chunks.
    delta_original_size: int = 0
    #: Bytes those chunks take stored (part of ``stored_size``).
    delta_stored_size: int = 0
    #: The host that made the snapshot (its hostname, or ``host=`` / ``--host``); None for
    #: snapshots written before hosts were recorded.
    host: str | None = None

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
        """A JSON-ready dictionary (``host`` after ``created_at``, as documents have always
        had it, although the field comes last: it has a default)."""
        return key_before(super().to_dict(), "host", before="tags")

    def __repr__(self) -> str:
        items = ", ".join(i.name for i in self.items)
        return (
            f"Snapshot(id={self.short_id}…, created_at={self.created_at.isoformat()}, "
            f"host={self.host!r}, "
            f"items=[{items}], original_size={self.original_size}, "
            f"stored_size={self.stored_size}, new_chunks={self.new_chunks}, "
            f"reused_chunks={self.reused_chunks}, tags={self.tags})"
        )

    @property
    def delta_text(self) -> str:
        """How the new chunks stored as deltas fared, in words ("" when none was)."""
        if not self.delta_chunks:
            return ""
        return (
            f"{self.delta_chunks} as deltas: {human_size(self.delta_original_size)} stored in "
            f"{human_size(self.delta_stored_size)}"
        )

    @property
    def dedup_percent(self) -> float:
        """Share of this snapshot's chunks that were already stored, in percent (0 for an
        empty snapshot: nothing was deduplicated)."""
        return 100.0 * self.reused_chunks / self.chunk_count if self.chunk_count else 0.0

    def _repr_html_(self) -> str:
        rows = [
            (
                i.name,
                i.type,
                human_size(i.size),
                i.chunk_count,
                " ".join(i.command) if i.command else "–",
            )
            for i in self.items
        ]
        summary = table(
            ["created", "host", "tags", "size", "added to repository", "deduplicated"],
            [
                (
                    self.created_at.isoformat(timespec="seconds"),
                    self.host or "(unknown)",
                    tags_text(self.tags),
                    human_size(self.original_size),
                    f"{human_size(self.stored_size)} ({self.new_chunks} new chunks"
                    + (f", {self.delta_text})" if self.delta_chunks else ")"),
                    f"{self.dedup_percent:.1f}% "
                    f"({self.reused_chunks} of {self.chunk_count} chunks)",
                )
            ],
        )
        items = table(["item", "type", "size", "chunks", "command"], rows)
        return titled(f"Snapshot {self.id}", summary, items)


@dataclass(frozen=True)
class UnreadableSnapshot(Fields):
    """A snapshot whose manifest cannot be read: ``id`` (its file name) and ``reason``."""

    id: str
    reason: str


@dataclass(frozen=True)
class SnapshotScan(Fields):
    """What :meth:`Repository.scan_snapshots` found: the readable snapshots passing the
    filter (oldest first) and every snapshot whose manifest cannot be read (a filter cannot be
    applied to those)."""

    snapshots: list[Snapshot] = field(metadata=source(nested=Snapshot))
    unreadable: list[UnreadableSnapshot] = field(metadata=source(nested=UnreadableSnapshot))


@dataclass(frozen=True)
class VerifyError(Fields):
    """One problem verify found; ``pack``, ``chunk`` and ``snapshot`` name its objects."""

    kind: str
    pack: str | None
    chunk: str | None
    snapshot: str | None
    message: str


@dataclass(frozen=True)
class VerifyStats(Fields):
    """What verify looked at."""

    packs_checked: int
    chunks_checked: int
    snapshots_checked: int
    bytes_read: int
    groups_checked: int
    unindexed_packs: int
    #: Snapshots whose manifest is intact but has no copy (an interrupted ingest or prune, or
    #: a deleted copy): not damage; ``repair`` writes the copies.
    missing_copies: int = 0


@dataclass(frozen=True)
class VerifyResult(Fields):
    """The outcome of :meth:`Repository.verify`."""

    ok: bool
    errors: list[VerifyError] = field(metadata=source(nested=VerifyError))
    stats: VerifyStats = field(metadata=source(nested=VerifyStats))
    #: The level verify ran at (not in the native module's report: set by Python).
    level: str = "standard"

    def __bool__(self) -> bool:
        return self.ok

    def _repr_html_(self) -> str:
        st = self.stats
        stats = table(
            ["snapshots", "packs", "chunks", "parity groups", "read", "unindexed packs"],
            [
                (
                    st.snapshots_checked,
                    st.packs_checked,
                    st.chunks_checked,
                    st.groups_checked,
                    human_size(st.bytes_read),
                    st.unindexed_packs,
                )
            ],
        )
        shown = self.errors[:100]
        errors = (
            table(
                ["kind", "pack", "chunk", "snapshot", "message"],
                [
                    (e.kind, e.pack or "–", e.chunk or "–", e.snapshot or "–", e.message)
                    for e in shown
                ],
            )
            if shown
            else ""
        )
        more = (
            f"<p>… and {len(self.errors) - len(shown)} more</p>" if len(self.errors) > 100 else ""
        )
        state = "ok" if self.ok else f"{len(self.errors)} errors"
        return titled(f"Verify ({self.level}): {state}", stats, errors, more, ok=self.ok)


@dataclass(frozen=True)
class ReindexResult(Fields):
    """What :meth:`Repository.reindex` did."""

    packs_indexed: int
    idx_rebuilt: list[str]
    unreadable_packs: list[str]
    index_files_written: int
    index_files_removed: int


@dataclass(frozen=True)
class UnrecoverablePack(Fields):
    """A pack repair could not rebuild, and the snapshots that need it."""

    pack: str
    reason: str
    snapshots: list[str]


@dataclass(frozen=True)
class LostSnapshot(Fields):
    """A snapshot whose manifest and its copy both cannot be read (``forget`` removes it)."""

    snapshot: str
    reason: str


@dataclass(frozen=True)
class RepairResult(Fields):
    """What :meth:`Repository.repair` did."""

    index_rebuilt: bool
    packs_repaired: list[str]
    locks_removed: list[str]
    unrecoverable: list[UnrecoverablePack] = field(metadata=source(nested=UnrecoverablePack))
    groups_written: int
    reindex: ReindexResult = field(metadata=source(nested=ReindexResult))
    #: Parity groups moved from ``packs/parity/`` to ``parity/`` (older repositories).
    parity_groups_moved: int = 0
    #: Files at the location this repository did not write: never read, changed or deleted.
    foreign_files: list[str] = field(default_factory=list, hash=False)
    #: Metadata files (snapshot manifests, key files, their copies) that were missing or
    #: damaged and were written again from their intact copy.
    metadata_restored: list[str] = field(default_factory=list, hash=False)
    #: Copies written for metadata files that had none (a repository made before metadata
    #: copies, which repair turns on).
    copies_added: int = 0
    #: Snapshots whose manifest and copy both cannot be read.
    lost_snapshots: list[LostSnapshot] = field(
        default_factory=list, hash=False, metadata=source(nested=LostSnapshot)
    )
    #: Key files whose every copy is damaged: that passphrase no longer opens the repository.
    lost_key_files: list[str] = field(default_factory=list, hash=False)

    @property
    def ok(self) -> bool:
        """Whether everything damaged could be saved."""
        return not self.unrecoverable and not self.lost_snapshots and not self.lost_key_files

    def _repr_html_(self) -> str:
        done = table(
            ["packs rebuilt", "index rebuilt", "stale locks removed", "parity groups written"],
            [
                (
                    len(self.packs_repaired),
                    f"from {self.reindex.packs_indexed} packs" if self.index_rebuilt else "no",
                    len(self.locks_removed),
                    self.groups_written,
                )
            ],
        )
        lost = (
            table(
                ["unrecoverable pack", "reason", "snapshots affected"],
                [
                    (u.pack, u.reason, ", ".join(s[:8] for s in u.snapshots))
                    for u in self.unrecoverable
                ],
            )
            if self.unrecoverable
            else ""
        ) + (
            table(
                ["lost snapshot", "reason"],
                [(s.snapshot, s.reason) for s in self.lost_snapshots],
            )
            if self.lost_snapshots
            else ""
        )
        title = "Repair: everything saved" if self.ok else "Repair: data lost"
        return titled(title, done, lost, ok=self.ok)


@dataclass(frozen=True)
class KeptSnapshot(Fields):
    """A snapshot a retention policy keeps, and every rule that keeps it (restic's wording:
    ``"daily snapshot"``, ``"within 30d"``, ``"has tags db=shop"``, ``"oldest yearly
    snapshot"``…)."""

    id: str
    reasons: list[str] = field(hash=False)


@dataclass(frozen=True)
class PruneGroup(Fields):
    """One group of snapshots the policy was applied to on its own.

    ``key`` holds what the group's snapshots share, only for what they are grouped by:
    ``host`` (a name, or None for snapshots from before hosts were recorded), ``items`` (the
    sorted item names), ``tags`` (a dict); an empty dict when not grouped."""

    key: dict[str, Any] = field(hash=False)
    #: Kept snapshots, newest first, with their reasons.
    kept: list[KeptSnapshot] = field(hash=False, metadata=source(nested=KeptSnapshot))
    #: Removed snapshot ids, newest first.
    removed: list[str] = field(hash=False)

    @property
    def description(self) -> str:
        """E.g. ``host db1, items [shop.sql]``; ``all snapshots`` when not grouped."""
        parts = []
        if "host" in self.key:
            parts.append(f"host {self.key['host'] or '(unknown)'}")
        if "items" in self.key:
            parts.append(f"items [{', '.join(self.key['items'])}]")
        if "tags" in self.key:
            parts.append(f"tags [{tags_text(self.key['tags']) or '-'}]")
        return ", ".join(parts) or "all snapshots"


@dataclass(frozen=True)
class PruneResult(Fields):
    """What :meth:`Repository.prune` or :meth:`Repository.forget` did (or, with ``dry_run``,
    would do). Snapshot ids are full hex ids; ``freed_bytes`` is what the repository shrank by
    (negative if it grew)."""

    kept: list[str]
    removed: list[str]
    removed_snapshots: int = field(metadata=source("removed", read=len))
    removed_packs: int
    #: Packs whose live blobs were copied into new packs (garbage, or merged small packs).
    rewritten_packs: int
    new_packs: int
    freed_bytes: int
    dry_run: bool
    #: Of the rewritten packs, small ones merged into full-size packs (many small ingests).
    merged_packs: int = 0
    #: Per group, what the policy kept (and why) and removed; empty for forget.
    groups: list[PruneGroup] = field(
        default_factory=list, hash=False, metadata=source(nested=PruneGroup)
    )
    #: Files at the location this repository did not write: never read, changed or deleted.
    foreign_files: list[str] = field(default_factory=list, hash=False)

    def _repr_html_(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        body = table(
            ["snapshots kept", f"snapshots {verb}", f"packs {verb}", "packs rewritten", "freed"],
            [
                (
                    len(self.kept),
                    self.removed_snapshots,
                    self.removed_packs,
                    f"{self.rewritten_packs} → {self.new_packs}",
                    human_size(max(self.freed_bytes, 0)),
                )
            ],
        )
        groups = table(
            ["group", "kept", "why", f"{verb}"],
            [
                (
                    g.description,
                    len(g.kept),
                    "; ".join(f"{k.id[:8]}: {', '.join(k.reasons)}" for k in g.kept),
                    len(g.removed),
                )
                for g in self.groups
            ],
        )
        return titled("Prune (dry run)" if self.dry_run else "Prune", body, groups)


@dataclass(frozen=True)
class PlanFile(Fields):
    """A file a restore needs: its repository path, size and whether it is present."""

    path: str
    size: int | None
    present: bool
    #: Present but not the size the index gives (truncated or replaced); ``size`` is then the
    #: expected size.
    damaged: bool = False


@dataclass(frozen=True)
class RestorePlan(Fields):
    """What :meth:`Repository.restore_plan` found: the files a restore needs."""

    snapshot: str
    items: list[str]
    files: list[PlanFile] = field(metadata=source(nested=PlanFile))
    total_bytes: int
    missing: list[str]
    #: Whether the plan is final and every file in it is present and whole.
    complete: bool
    #: Files present but of the wrong size (truncated or replaced).
    damaged: list[str] = field(default_factory=list)
    #: Packs holding the restore's chunk lists that are in an archive storage class (S3
    #: Glacier…): restore them from the archive, then plan again to learn the data packs.
    archived: list[str] = field(default_factory=list)

    @property
    def packs(self) -> list[str]:
        """The pack files among :attr:`files`."""
        return [f.path for f in self.files if f.path.endswith(".pack")]


@dataclass(frozen=True)
class KeyInfo(Fields):
    """A key file of an encrypted repository."""

    id: str
    created_at: str
    comment: str
    kdf_memory_kib: int = field(metadata=source("kdf", "memory_kib"))
    kdf_iterations: int = field(metadata=source("kdf", "iterations"))
    current: bool


@dataclass(frozen=True)
class RepoStats(Fields):
    """Repository totals (:meth:`Repository.stats`)."""

    snapshots: int
    packs: int
    pack_bytes: int
    parity_files: int
    parity_bytes: int
    unique_chunks: int
    unique_bytes: int
    chunk_lists: int
    stored_bytes: int
    original_bytes: int
    #: ``original_bytes / unique_bytes``: how many times over deduplication stores the data.
    #: ``unique_bytes`` counts every indexed chunk at full size, those of forgotten snapshots
    #: not yet pruned and those kept only as delta bases included, so after a forget this can
    #: fall below 1; ``reduction_ratio`` is the figure that stays meaningful.
    dedup_ratio: float
    #: ``unique_bytes`` over the stored bytes of data chunks: what compression saves.
    compression_ratio: float
    #: Unique chunks stored as deltas against similar chunks (counted in ``unique_chunks``).
    delta_chunks: int = 0
    #: Their bytes before encoding (counted in ``unique_bytes``).
    delta_original_bytes: int = 0
    #: Their bytes as stored.
    delta_stored_bytes: int = 0
    #: ``original_bytes`` over the stored bytes of data chunks: deduplication, delta encoding
    #: and compression together (parity aside).
    reduction_ratio: float = 1.0
    #: Snapshots whose manifest cannot be read (``id`` and ``reason``): not counted in
    #: ``snapshots`` nor ``original_bytes``; ``verify`` names the damage, ``repair`` restores a
    #: manifest from its copy.
    unreadable_snapshots: list[UnreadableSnapshot] = field(
        default_factory=list, metadata=source(nested=UnreadableSnapshot)
    )

    @property
    def repository_bytes(self) -> int:
        """Packs and parity together: about what the repository takes on disk."""
        return self.pack_bytes + self.parity_bytes

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        d = dict(vars(self))
        d["unreadable_snapshots"] = [u.to_dict() for u in self.unreadable_snapshots]
        d["repository_bytes"] = self.repository_bytes
        return d

    def __getitem__(self, name: str) -> Any:
        return self.repository_bytes if name == "repository_bytes" else super().__getitem__(name)

    def _rows(self) -> list[tuple[str, str]]:
        return [
            ("snapshots", str(self.snapshots)),
            ("content over all snapshots", human_size(self.original_bytes)),
            ("unique chunks", f"{self.unique_chunks} ({human_size(self.unique_bytes)})"),
            ("stored", human_size(self.stored_bytes)),
            ("packs", f"{self.packs} ({human_size(self.pack_bytes)})"),
            ("parity", f"{self.parity_files} files ({human_size(self.parity_bytes)})"),
            ("deduplication", ratio(self.dedup_ratio)),
            ("compression", ratio(self.compression_ratio)),
            ("data reduction", ratio(self.reduction_ratio)),
            (
                "delta",
                f"{self.delta_chunks} chunks, {human_size(self.delta_original_bytes)} stored in "
                f"{human_size(self.delta_stored_bytes)}"
                if self.delta_chunks
                else "none",
            ),
        ] + [("unreadable snapshot", f"{u.id[:8]} ({u.reason})") for u in self.unreadable_snapshots]

    def _repr_html_(self) -> str:
        return titled("Repository totals", table(["", ""], self._rows()))


class UnlockResult(list[str]):
    """What :meth:`Repository.unlock` did: the lock files removed (it is a list of their keys),
    ``reasons`` (key → why it could go: its process is gone, not renewed for the stale age by
    the storage's clock, or ``--force``) and ``kept`` (``(key, description)`` of each lock left
    in place: who holds it, since when, and when it becomes stale)."""

    def __init__(
        self,
        removed: list[str],
        *,
        reasons: dict[str, str] | None = None,
        kept: list[tuple[str, str]] | None = None,
    ):
        super().__init__(removed)
        self.reasons: dict[str, str] = dict(reasons or {})
        self.kept: list[tuple[str, str]] = list(kept or [])

    def to_dict(self) -> dict[str, Any]:
        """The CLI's ``unlock --json`` document."""
        return {
            "removed": list(self),
            "reasons": {k: self.reasons.get(k, "") for k in self},
            "kept": [{"lock": k, "holder": why} for k, why in self.kept],
        }
