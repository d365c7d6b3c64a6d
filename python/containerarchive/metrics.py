"""Backup metrics for alerting, in the Prometheus text format that node_exporter's textfile
collector reads (``--collector.textfile.directory``; docs/METRICS.md has the metric list and
example alert rules).

Three writers, each to a file of its own so that one never erases another's metrics:

- :func:`write_repository_metrics` (``containerarchive stats --prometheus FILE``,
  :meth:`Repository.write_metrics`): per backup series (snapshots grouped by host and item
  names, as ``prune`` groups them) the newest snapshot's time, sizes and deduplication, and
  the series' snapshot count; the repository's totals.
- :class:`OperationMetrics` (``verify --metrics FILE``, ``prune --metrics FILE``, and the
  ``metrics=`` argument of :meth:`Repository.verify` / :meth:`Repository.prune`): whether the
  run succeeded, how long it took, what it found or removed, and the time of the last
  successful run (carried over from the file a failed run replaces).

Files are written with ``prometheus_client.write_to_textfile``: to a temporary file beside the
target, then renamed over it, so a scrape never reads half a file. Times are Unix seconds,
sizes bytes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._files import _unusable

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Gauge

    from .types import PruneResult, RepoStats, Snapshot, VerifyResult

# prometheus_client is imported where a file is written or read, not with the package: it
# takes ~70 ms and ~10 MB to import, which every command would otherwise pay.

PREFIX = "containerarchive"


def _series_key(s: Snapshot) -> tuple[str, str]:
    """(host, items) of a snapshot: its host ("" when none was recorded) and its item names,
    sorted and joined with commas, as prune's default grouping sees them."""
    return (s.host or "", ",".join(sorted(i.name for i in s.items)))


def _registry() -> CollectorRegistry:
    from prometheus_client import CollectorRegistry

    return CollectorRegistry()


def _gauge(registry: CollectorRegistry, name: str, doc: str, labels: list[str]) -> Gauge:
    from prometheus_client import Gauge

    return Gauge(f"{PREFIX}_{name}", doc, labels, registry=registry)


def _write(path: str | os.PathLike[str], registry: CollectorRegistry) -> None:
    """Write ``registry`` to ``path`` through a temporary file renamed over it. Raises
    :class:`UnusableFileError` (CLI exit 6) naming ``path`` when it cannot be written."""
    target = Path(path)
    if target.is_dir():
        raise _unusable(target, "is a directory: give the metrics file's name")
    from prometheus_client import write_to_textfile

    try:
        write_to_textfile(str(target), registry)
    except OSError as e:
        raise _unusable(target, f"cannot be written as a metrics file: {e.strerror or e}") from e


def write_repository_metrics(
    path: str | os.PathLike[str],
    location: str,
    stats: RepoStats,
    snapshots: list[Snapshot],
    now: float | None = None,
) -> None:
    """Write the repository's metrics to ``path`` (replaced atomically).

    ``snapshots`` are the readable snapshots (as :meth:`Repository.scan_snapshots` returns
    them), ``stats`` the totals of :meth:`Repository.stats`; ``location`` labels every metric
    (``repository``). Raises :class:`UnusableFileError` when ``path`` cannot be written (a
    directory, a missing directory, no permission)."""
    reg = _registry()
    series = ["repository", "host", "items"]
    last_time = _gauge(
        reg,
        "last_snapshot_timestamp_seconds",
        "Creation time of the newest snapshot of the series (Unix seconds).",
        series,
    )
    last_in = _gauge(
        reg,
        "last_snapshot_original_bytes",
        "Bytes the newest snapshot of the series holds (its items' sizes).",
        series,
    )
    last_added = _gauge(
        reg,
        "last_snapshot_added_bytes",
        "Bytes the newest snapshot of the series added to the repository (after deduplication, "
        "delta encoding, compression and encryption).",
        series,
    )
    last_dedup = _gauge(
        reg,
        "last_snapshot_dedup_ratio",
        "Share of the newest snapshot's chunks that were already stored (0 to 1).",
        series,
    )
    last_chunks = _gauge(
        reg,
        "last_snapshot_chunks",
        "Chunks of the newest snapshot of the series.",
        series,
    )
    count = _gauge(reg, "snapshots", "Snapshots of the series.", series)
    newest: dict[tuple[str, str], Snapshot] = {}
    counts: dict[tuple[str, str], int] = {}
    for s in snapshots:
        key = _series_key(s)
        counts[key] = counts.get(key, 0) + 1
        if key not in newest or s.created_at >= newest[key].created_at:
            newest[key] = s
    for key, s in newest.items():
        labels = (location, *key)
        last_time.labels(*labels).set(s.created_at.timestamp())
        last_in.labels(*labels).set(s.original_size)
        last_added.labels(*labels).set(s.stored_size)
        last_dedup.labels(*labels).set(s.reused_chunks / s.chunk_count if s.chunk_count else 0)
        last_chunks.labels(*labels).set(s.chunk_count)
        count.labels(*labels).set(counts[key])
    totals: list[tuple[str, str, float]] = [
        ("snapshots", "Readable snapshots.", stats.snapshots),
        (
            "unreadable_snapshots",
            "Snapshots whose manifest cannot be read (run verify, then repair).",
            len(stats.unreadable_snapshots),
        ),
        ("packs", "Pack files.", stats.packs),
        ("pack_bytes", "Bytes of all pack files.", stats.pack_bytes),
        ("parity_bytes", "Bytes of all parity files.", stats.parity_bytes),
        ("unique_chunks", "Unique chunks stored.", stats.unique_chunks),
        ("unique_bytes", "Unique chunks' bytes before encoding.", stats.unique_bytes),
        ("original_bytes", "Bytes over all snapshots, before deduplication.", stats.original_bytes),
        ("stored_bytes", "Bytes the snapshots' data takes as stored.", stats.stored_bytes),
        ("delta_chunks", "Unique chunks stored as deltas.", stats.delta_chunks),
        (
            "dedup_ratio",
            "original_bytes over unique_bytes (a factor, 1 or more).",
            stats.dedup_ratio,
        ),
        (
            "reduction_ratio",
            "original_bytes over the data's stored bytes: deduplication, delta encoding and "
            "compression together (a factor).",
            stats.reduction_ratio,
        ),
    ]
    for name, doc, value in totals:
        _gauge(reg, f"repository_{name}", doc, ["repository"]).labels(location).set(value)
    _gauge(
        reg,
        "stats_timestamp_seconds",
        "When these metrics were written (Unix seconds).",
        ["repository"],
    ).labels(location).set(time.time() if now is None else now)
    _write(path, reg)


def _previous_value(path: Path, name: str) -> float | None:
    """The value of metric ``name`` in the metrics file at ``path``, if it has one."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = path.read_text(encoding="utf-8")
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name:
                    return float(sample.value)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return None


class OperationMetrics:
    """Records one run of ``verify`` or ``prune`` and writes its metrics file on exit
    (see :func:`record`): ``<operation>_success`` (1 or 0), ``_duration_seconds``,
    ``_last_run_timestamp_seconds``, ``_last_success_timestamp_seconds`` (carried over from the
    file when this run failed; absent until a run succeeds) and what :meth:`verified` or
    :meth:`pruned` set."""

    def __init__(self, operation: str, path: str | os.PathLike[str], labels: Mapping[str, str]):
        self.operation = operation
        self.path = Path(path)
        self.labels = dict(labels)
        self.ok = False
        self.values: list[tuple[str, str, float]] = []

    def verified(self, result: VerifyResult) -> None:
        """Take a verify's result: success when it found nothing."""
        st = result.stats
        self.ok = result.ok
        self.values += [
            (
                "findings",
                "Errors the verify found (damage, missing or unreadable files).",
                len(result.errors),
            ),
            ("snapshots_checked", "Snapshots checked.", st.snapshots_checked),
            ("packs_checked", "Packs checked.", st.packs_checked),
            ("bytes_read", "Bytes read.", st.bytes_read),
            ("missing_copies", "Metadata files without their copy.", st.missing_copies),
        ]

    def pruned(self, result: PruneResult) -> None:
        """Take a prune's result (it ran to the end: success)."""
        self.ok = True
        self.values += [
            ("removed_snapshots", "Snapshots removed.", result.removed_snapshots),
            ("kept_snapshots", "Snapshots kept.", len(result.kept)),
            ("removed_packs", "Packs deleted.", result.removed_packs),
            ("rewritten_packs", "Packs rewritten.", result.rewritten_packs),
            ("freed_bytes", "Bytes freed.", result.freed_bytes),
            (
                "findings",
                "Files prune does not recognise, left in place.",
                len(result.foreign_files),
            ),
            ("dry_run", "1 for a dry run (nothing was changed).", 1 if result.dry_run else 0),
        ]

    def write(self, started: float, ended: float) -> None:
        op = self.operation
        names = sorted(self.labels)
        values = [self.labels[n] for n in names]
        reg = _registry()

        def put(name: str, doc: str, value: float) -> None:
            _gauge(reg, f"{op}_{name}", doc, names).labels(*values).set(value)

        put("success", f"1 when the last {op} succeeded, else 0.", 1 if self.ok else 0)
        put("duration_seconds", f"How long the last {op} took.", ended - started)
        put("last_run_timestamp_seconds", f"When the last {op} ended (Unix seconds).", ended)
        last_ok = (
            ended
            if self.ok
            else _previous_value(self.path, f"{PREFIX}_{op}_last_success_timestamp_seconds")
        )
        if last_ok is not None:
            put(
                "last_success_timestamp_seconds",
                f"When the last successful {op} ended (Unix seconds).",
                last_ok,
            )
        for name, doc, value in self.values:
            put(name, doc, value)
        _write(self.path, reg)


@contextmanager
def record(
    operation: str, path: str | os.PathLike[str] | None, labels: Mapping[str, str]
) -> Iterator[OperationMetrics | None]:
    """Time the ``with`` block and write ``operation``'s metrics to ``path`` when it ends, also
    when it raises (then ``success`` is 0). ``None`` records nothing. The block reports its
    result through :meth:`OperationMetrics.verified` / :meth:`OperationMetrics.pruned`."""
    if path is None:
        yield None
        return
    m = OperationMetrics(operation, path, labels)
    started = time.time()
    try:
        yield m
    except BaseException:
        m.ok = False
        m.values = []
        m.write(started, time.time())
        raise
    m.write(started, time.time())


def metric_families(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{sample name with labels: value}`` of a metrics file (for tests and scripts)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, Any] = {}
    for family in text_string_to_metric_families(Path(path).read_text(encoding="utf-8")):
        for s in family.samples:
            key = s.name + (
                "{" + ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items())) + "}"
                if s.labels
                else ""
            )
            out[key] = s.value
    return out
