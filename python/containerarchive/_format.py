"""Formatting shared by the CLI and the notebook views: human sizes, small HTML tables and
the notebook view of a repository."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .types import RepoStats, Snapshot


def human_size(n: int) -> str:
    """``1536`` → ``"1.5 KiB"``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def ratio(x: float) -> str:
    """``2.345`` → ``"2.35×"``."""
    return f"{x:.2f}×"


def tags_text(tags: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(tags.items())) or "–"


_STYLE = "border-collapse:collapse;font-family:var(--jp-code-font-family,monospace);font-size:12px"
_CELL = "padding:2px 8px;border-bottom:1px solid #ddd;text-align:left"


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """An HTML table; every cell is escaped."""
    head = "".join(f'<th style="{_CELL}">{html.escape(h)}</th>' for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td style="{_CELL}">{html.escape(str(c))}</td>' for c in row) + "</tr>"
        for row in rows
    )
    return f'<table style="{_STYLE}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def titled(title: str, *parts: str, ok: bool | None = None) -> str:
    """A bold title (green or red when ``ok`` is given) above some HTML parts."""
    color = "" if ok is None else (";color:#1a7f37" if ok else ";color:#cf222e")
    return (
        f'<div><b style="font-family:sans-serif{color}">{html.escape(title)}</b>'
        + "".join(parts)
        + "</div>"
    )


def repository_html(
    location: str, cfg: dict[str, Any], st: RepoStats, latest: list[Snapshot]
) -> str:
    """A repository in a notebook: its settings ``cfg``, its totals ``st`` and its ``latest``
    snapshots (oldest first; shown newest first)."""
    about = table(
        ["path", "encryption", "compression", "chunking (min/avg/max)"],
        [
            (
                location,
                cfg["encryption"],
                f"{cfg['compression']['algorithm']} {cfg['compression']['level']}",
                "/".join(
                    human_size(cfg["chunker"][k]) for k in ("min_size", "avg_size", "max_size")
                ),
            )
        ],
    )
    totals = table(
        ["snapshots", "content", "stored", "deduplication", "compression"],
        [
            (
                st.snapshots,
                human_size(st.original_bytes),
                human_size(st.repository_bytes),
                ratio(st.dedup_ratio),
                ratio(st.compression_ratio),
            )
        ],
    )
    recent = table(
        ["latest snapshots", "created", "host", "size", "added", "items", "tags"],
        [
            (
                s.short_id,
                s.created_at.isoformat(timespec="seconds"),
                s.host or "(unknown)",
                human_size(s.original_size),
                human_size(s.stored_size),
                ", ".join(i.name for i in s.items),
                ", ".join(f"{k}={v}" for k, v in sorted(s.tags.items())),
            )
            for s in reversed(latest)
        ],
    )
    parts = [about, totals, recent]
    if st.unreadable_snapshots:
        parts.append(
            table(
                ["unreadable snapshots", "why (repair restores a manifest from its copy)"],
                [(u.id[:8], u.reason) for u in st.unreadable_snapshots],
            )
        )
    return titled(f"Repository {location}", *parts)
